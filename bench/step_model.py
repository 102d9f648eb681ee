"""Step-time model of train_gpt2cu on one H100 SXM (docs/gpu_performance.md prints its output):
per kernel of one d12 training step at T=1024, its FLOPs and the fewest bytes it moves through
device memory, the floor max(FLOPs / 989 TFLOP/s, bytes / 3.35 TB/s), and an expected time from
stated efficiencies, for three versions of the trainer:
  before16  attention materialising (B,NH,T,T) scores and probabilities (before issue 16)
  now       cuDNN flash attention (BF16), scalar loads everywhere (the trainer today)
  after17   issue 17 done: 128-bit loads, fused LayerNorm backward, DGELU/BGRADB epilogues (with
            the forward's GELU as our own kernel, for -r 1's bits), an asynchronous host pipeline
No GPU has measured any of this: these are predictions to compare bench/gpu_check.sh's numbers
(ncu per-kernel times, tokens/s) against.

    python3 bench/step_model.py            # markdown tables for B=16 and B=32
"""

import sys

PEAK_FLOPS = 989e12  # dense bf16 tensor cores, H100 SXM
PEAK_BYTES = 3.35e12  # HBM3
L, C, NH, V, VP, T = 12, 768, 12, 50257, 50304, 1024
N_PARAMS = VP * C + 1024 * C + L * (12 * C * C + 13 * C) + 2 * C  # 124,475,904
X = 2  # bytes of a bf16 activation

# Efficiencies (fractions of the peaks above), the model's assumptions:
# - cuBLASLt bf16 GEMMs with K or N = 768..3072: 70% of peak (the 8192^3 product ran at 798
#   TFLOP/s = 81% on this workplace's H100; smaller K and N run lower). LM head (N = 50304): 75%.
# - cuDNN flash attention at HS=64, causal: forward 40%, backward 30% (the shape of FlashAttention-2
#   class kernels at head size 64 on Hopper).
# - Memory-bound kernels, by Little's law: HBM needs ~3.0 TB/s x ~600 ns = 1.8 MB in flight, 13.6 KB
#   per SM. A thread with one scalar 2-byte load outstanding, 2048 threads per SM, has 4 KB in
#   flight: ~27% of peak; two independent streams ~54%; fp32 streams count double. 128-bit loads
#   with two or more in flight per thread reach the ~90% a device copy reaches (3.0 TB/s measured).
MM, MM_HEAD, ATT_FWD, ATT_BWD = 0.70, 0.75, 0.40, 0.30
SCALAR1, SCALAR2, SCALAR_FP32, VEC = 0.27, 0.54, 0.75, 0.90


# A version of the trainer is a set of features: "flash" (issue 16), and issue 17's "vec" (128-bit
# loads), "fused_ln" (LayerNorm backward in one kernel), "bgradb" (bias gradient in the matmul's
# epilogue), "dgelu" (GELU backward in the matmul's epilogue; the forward's GELU then runs as our
# own kernel on the stored pre-activation instead of in the fc matmul's epilogue, so that -r 1
# recomputes the same bits: docs/gpu_performance.md, "GELU and -r 1"), "host" (asynchronous host
# pipeline).
ISSUE17 = ("vec", "fused_ln", "bgradb", "dgelu", "host")
VERSIONS = {"before16": set(), "now": {"flash"}, "after17": {"flash", *ISSUE17}}


def kernels(B, features):
    """(name, calls per step, FLOPs per call, bytes per call, efficiency of the bound that binds)."""
    N = B * T  # tokens
    rows = []

    def add(name, calls, flops, nbytes, eff):
        rows.append((name, calls, flops, nbytes, eff))

    vec = "vec" in features
    mem1 = VEC if vec else SCALAR1  # one bf16 stream
    mem2 = VEC if vec else SCALAR2  # two or more bf16 streams
    # forward
    add("encoder forward", 1, 0, 2 * N * C * X, mem2)
    # layer 0's ln1 (one input) counted as the fused kind, like the 2L others
    add("layernorm forward (fused residual)", 2 * L + 1, 0, 4 * N * C * X + 8 * N, mem2)
    dgelu = "dgelu" in features
    fc = "fc" if dgelu else "fc (+GELU epilogue)"
    for name, cin, cout in (("qkv", C, 3 * C), ("attn proj", C, C), (fc, C, 4 * C), ("fc proj", 4 * C, C)):
        out_bytes = N * cout * X * (2 if "GELU" in name else 1)
        add("matmul fwd " + name, L, 2 * N * cin * cout, N * cin * X + cin * cout * X + out_bytes, MM)
    if dgelu:  # reads the pre-activation the fc matmul stored, writes the GELU output
        add("GELU forward (own kernel)", L, 0, 2 * N * 4 * C * X, mem2)
    add("matmul fwd LM head", 1, 2 * N * C * VP, N * C * X + VP * C * X + N * VP * X, MM_HEAD)
    # the classifier reads each row twice (max/sum, then gradient) and writes it once; a 100 KB
    # row's second read is likely an L2 hit (rows in flight << 50 MB), counted once here
    add("fused classifier", 1, 0, 2 * N * VP * X, mem1)
    if "flash" not in features:
        att = B * NH * T * T * X  # one (B,NH,T,T) bf16 tensor
        add("attn fwd: permute q,k,v / unpermute", L, 0, 4 * N * C * X * 2, mem1)
        add("attn fwd: QK^T, PV batched GEMMs", L, 4 * N * T * C, 2 * att + 4 * N * C * X, MM)
        add("attn fwd: softmax in place", L, 0, 2 * att, mem1)
        add("attn bwd: 4 batched GEMMs", L, 8 * N * T * C, 4 * att + 8 * N * C * X, MM)
        add("attn bwd: softmax backward", L, 0, 3 * att, mem1)
        add("attn bwd: permutes", L, 0, 8 * N * C * X, mem1)
    else:
        # causal: half the scores; backward 5 products of the forward's 2 (FlashAttention-2)
        add("attention fwd (cuDNN flash)", L, 2 * N * T * C, 4 * N * C * X + N * NH * 4, ATT_FWD)
        add("attention bwd (cuDNN flash)", L, 5 * N * T * C, 8 * N * C * X + 2 * N * NH * 4, ATT_BWD)
    # backward
    add("matmul bwd LM head (dx + dW)", 1, 4 * N * C * VP, 2 * N * VP * X + 2 * N * C * X + 3 * VP * C * X,
        MM_HEAD)
    for name, cin, cout in (("qkv", C, 3 * C), ("attn proj", C, C), ("fc", C, 4 * C), ("fc proj", 4 * C, C)):
        aux = N * cin * X if dgelu and name == "fc proj" else 0  # DGELU reads the pre-activation
        add("matmul bwd %s (dx + dW)" % name + (" + DGELU" if aux else ""), L, 4 * N * cin * cout,
            2 * N * cout * X + 2 * N * cin * X + 3 * cin * cout * X + aux, MM)
        if "bgradb" not in features:  # else cuBLASLt's BGRADB epilogue sums the bias gradient
            # 3 x 64 blocks at OC=768 (18% occupancy): a third of the scalar rate there
            eff = SCALAR1 / 3 if cout == C else SCALAR1
            add("bias backward partials (%s)" % name, L, 0, N * cout * X, eff)
    if not dgelu:  # else the DGELU epilogue of the fc-proj dx product
        add("GELU backward", L, 0, 3 * N * 4 * C * X, mem2)
    if "fused_ln" in features:
        add("layernorm backward (one fused kernel)", 2 * L + 1, 0, 4 * N * C * X + 8 * N, mem2)
    else:
        add("layernorm backward dx", 2 * L + 1, 0, 4 * N * C * X + 8 * N, SCALAR2)
        add("layernorm backward partials (192 blocks)", 2 * L + 1, 0, 2 * N * C * X, SCALAR2 / 5.5)
    add("encoder backward", 1, 0, 2 * N * C * X, mem1)
    add("zero grads + global norm", 1, 0, 2 * N_PARAMS * X, VEC if vec else SCALAR1)
    # AdamW reads bf16 params and grads, fp32 master, m, v; writes params, master, m, v
    add("AdamW", 1, 0, N_PARAMS * (2 + 2 + 4 + 4 + 4 + 2 + 4 + 4 + 4), VEC if vec else SCALAR_FP32)
    return rows


# Host time the GPU waits per step (not a kernel): before issue 17, a blocking loss copy per
# micro-step, the encoder-backward plan built on the host (~N tokens counted and sorted) and
# uploaded from pageable memory while the GPU idles, the norm copied back, cudaDeviceSynchronize
# at the end of the step and the next batch uploaded after it: ~0.5 ms + ~40 ns per token.
# With the host pipeline (llmc/host_pipeline.cuh): the step's one read-back of loss and norm and
# the host's work between steps (~0.05 ms idle), plus the loss sum, a one-thread kernel (the
# host's summation order, for the same bits): ~6 cycles per token at ~1.75 GHz, 3.5 ns/token.
def host_gap_ms(B, features):
    return 0.05 + 3.5e-9 * B * T * 1e3 if "host" in features else 0.5 + 40e-9 * B * T * 1e3


def step(B, features):
    rows = []
    for name, calls, flops, nbytes, eff in kernels(B, features):
        floor = max(flops / PEAK_FLOPS, nbytes / PEAK_BYTES)
        expected = max(flops / (PEAK_FLOPS * eff), nbytes / (PEAK_BYTES * eff)) if flops else nbytes / (PEAK_BYTES * eff)
        rows.append((name, calls, calls * flops, calls * nbytes, calls * floor * 1e3, calls * expected * 1e3))
    return rows


def mfu(B, ms):
    flops_per_token = 6 * N_PARAMS + 6 * L * C * T
    return 100 * B * T / (ms / 1e3) * flops_per_token / PEAK_FLOPS


def main():
    batches = [int(b) for b in sys.argv[1:]] or [16, 32]
    print("6N + 6LCT = %.1f MFLOP per token (N = %d)\n" % ((6 * N_PARAMS + 6 * L * C * T) / 1e6, N_PARAMS))
    for B in batches:
        totals = {}
        for version in ("before16", "now", "after17"):
            features = VERSIONS[version]
            rows = step(B, features)
            totals[version] = (sum(r[4] for r in rows), sum(r[5] for r in rows) + host_gap_ms(B, features))
            if version == "before16":
                continue
            print("#### B=%d, T=1024: %s\n" % (B, "today (cuDNN attention, scalar loads)" if version == "now"
                                               else "after issue 17"))
            print("| kernel | calls | GFLOP | GB moved | floor ms | expected ms |")
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            for name, calls, flops, nbytes, floor, expected in sorted(rows, key=lambda r: -r[5]):
                print("| %s | %d | %.1f | %.2f | %.3f | %.3f |" % (name, calls, flops / 1e9, nbytes / 1e9, floor, expected))
            print("| host gaps (GPU idle) | | | | | %.3f |" % host_gap_ms(B, features))
            print("| **step** | | %.0f | %.1f | %.2f | %.2f |\n" % (sum(r[2] for r in rows) / 1e9, sum(r[3] for r in rows) / 1e9,
                                                                totals[version][0], totals[version][1]))
        print("#### B=%d summary\n" % B)
        print("| version | floor ms | expected ms | tokens/s | MFU (6N + 6LCT) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for version, label in (("before16", "before issue 16 (materialised attention)"),
                               ("now", "today (issue 16: cuDNN flash attention)"),
                               ("after17", "after issue 17")):
            floor, expected = totals[version]
            print("| %s | %.2f | %.2f | %.0f | %.1f%% |" % (label, floor, expected, B * T / (expected / 1e3), mfu(B, expected)))
        print()
        print("#### B=%d: each item of issue 17 alone, added to today's trainer\n" % B)
        print("| item | expected ms saved | step ms | MFU |")
        print("| --- | ---: | ---: | ---: |")
        for item, label in (("vec", "128-bit loads (elementwise, LayerNorm, classifier, AdamW, norm)"),
                            ("fused_ln", "LayerNorm backward fused, full occupancy"),
                            ("bgradb", "bias gradient in the matmul (BGRADB)"),
                            ("dgelu", "GELU backward in the matmul (DGELU), GELU forward own kernel"),
                            ("host", "asynchronous host pipeline")):
            features = VERSIONS["now"] | {item}
            ms = sum(r[5] for r in step(B, features)) + host_gap_ms(B, features)
            print("| %s | %.2f | %.2f | %.1f%% |" % (label, totals["now"][1] - ms, ms, mfu(B, ms)))
        print()


if __name__ == "__main__":
    main()
