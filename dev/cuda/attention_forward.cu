/*
Causal self-attention forward, from the materialising version (version 1: permute q, k, v out of
the qkv projection's (B,T,3,NH,HS) layout, scores q k^T as a batched matmul into a (B,NH,T,T)
matrix, a softmax kernel, att v as a second batched matmul, unpermute to (B,T,C)) to flash
attention (version 2, llmc/attention.cuh's own kernels; version 3, cuDNN's fused attention through
llmc/cudnn_att.cpp, built when dev/cuda is built with cuDNN): one kernel reading q, k, v in place,
an online softmax over key tiles in shared memory, the tiles above the diagonal skipped, only the
output and the log-sum-exp of each row (B,NH,T) written. Version 1 moves the T x T matrix through
memory about five times (written by the matmul, read and written by the softmax, read by the second
matmul) and computes its masked half; version 2's traffic is its inputs and outputs.

  make build/cuda_emu/dev/attention_forward   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/attention_forward   (on a GPU)

Both versions are checked against a CPU reference in double (on the floatX-rounded inputs) at
T = 1, 37, 64 and 1024 (under the emulation T = 1024 at B = NH = 1), with the bounds derived in
dev/cuda/attention_common.cuh (attention_forward_bounds). A reference with a known bug (each query
also sees the next key: the causal mask off by one) must fall outside the same bounds: the
planted-error lines (at T = 1 the bug changes nothing, so from T = 37 on).
*/
#include "attention_common.cuh"

// Checks both versions at one shape; returns 1 when everything passed.
static int check_shape(AttentionShape shape) {
    int B = shape.B, T = shape.T, NH = shape.NH, HS = shape.HS, C = NH * HS;
    size_t BT = (size_t)B * T, BTC = BT * C, BNHT = BT * NH;
    printf("B=%d T=%d NH=%d HS=%d:\n", B, T, NH, HS);
    float *qkv = (float *)malloc_check(3 * BTC * sizeof(float), "qkv");
    fill_uniform(qkv, 3 * BTC, -1.0f, 1.0f, 11 + T);
    round_to_floatX(qkv, 3 * BTC);
    float *out_ref = (float *)malloc_check(BTC * sizeof(float), "out_ref");
    float *lse_ref = (float *)malloc_check(BNHT * sizeof(float), "lse_ref");
    attention_forward_cpu(out_ref, lse_ref, qkv, B, T, C, NH, 0);

    AttentionBuffers d = attention_buffers_alloc(shape, 0);
    copy_to_floatX(d.qkv, qkv, 3 * BTC);
    int all_ok = 1;
    for (int version = 1; version <= ATTENTION_VERSIONS; version++) {
        if (!attention_version_runs(version, HS)) continue;
        // cuDNN (version 3) rounds the probabilities to bf16 for its tensor-core products, as
        // version 1 stores them: version 1's bounds
        ForwardBounds bounds = attention_forward_bounds(T, HS, version != 2);
        printf(" version %d%s:\n", version, attention_version_name(version));
        if (version == 1) {
            attention_forward_materialised(d.out, d.qkvr, d.att, d.scratch, d.qkv, B, T, C, NH, 0);
        } else if (version == 2) {
            attention_forward_flash(d.out, d.lse, d.qkv, B, T, C, NH, 0);
        } else {
            attention_forward_version3(d.out, d.lse, d.qkv, B, T, NH, HS);
        }
        cuda_check(cudaDeviceSynchronize());
        float *out = download_to_floats(d.out, BTC);
        all_ok &=
            check_close("out", out, out_ref, BTC, (float)bounds.out_atol, (float)bounds.out_rtol);
        free(out);
        if (version >= 2) {
            float *lse = (float *)malloc_check(BNHT * sizeof(float), "lse");
            cuda_check(cudaMemcpy(lse, d.lse, BNHT * sizeof(float), cudaMemcpyDeviceToHost));
            all_ok &= check_close("lse", lse, lse_ref, BNHT, (float)bounds.lse_atol, 0.0f);
            free(lse);
        }
        if (T > 1) {
            // the same bounds against the off-by-one mask, stored as the kernels store it
            float *out_bug = (float *)malloc_check(BTC * sizeof(float), "out_bug");
            float *lse_bug = (float *)malloc_check(BNHT * sizeof(float), "lse_bug");
            attention_forward_cpu(out_bug, lse_bug, qkv, B, T, C, NH, 1);
            round_to_floatX(out_bug, BTC);
            all_ok &= check_catches("out, mask off by one", out_bug, out_ref, BTC,
                                    (float)bounds.out_atol, (float)bounds.out_rtol);
            if (version >= 2) {
                all_ok &= check_catches("lse, mask off by one", lse_bug, lse_ref, BNHT,
                                        (float)bounds.lse_atol, 0.0f);
            }
            free(out_bug);
            free(lse_bug);
        }
    }
    attention_buffers_free(&d);
    free(qkv);
    free(out_ref);
    free(lse_ref);
    return all_ok;
}

int main(void) {
    int all_ok = attention_check_shapes("attention_forward", check_shape);
    // LLMC_DEV_CHECK_ONLY=1 (under compute-sanitizer): the checks without the timed runs
    if (getenv("LLMC_DEV_CHECK_ONLY") != NULL) {
        printf("%s\n", all_ok ? "PASS" : "FAIL");
        return all_ok ? 0 : 1;
    }
    AttentionShape timed = attention_timed_shape();
    int B = timed.B, T = timed.T, NH = timed.NH, HS = timed.HS, C = NH * HS;
    int repeats = DEV_EMULATED ? 1 : 20;
    size_t BTC = (size_t)B * T * C, BNHT = (size_t)B * NH * T;
    AttentionBuffers d = attention_buffers_alloc(timed, 0);
    printf("timing, B=%d T=%d NH=%d HS=%d (%d repeats; GB/s of each version's own traffic; causal "
           "FLOPs 2 B NH T^2 HS, %.1f GFLOP):\n",
           B, T, NH, HS, repeats, 2.0 * BNHT * T * HS / 1e9);
    double X = sizeof(floatX);
    // version 1: permute (r+w 3BTC), att written by the matmul, read+written by the softmax,
    // read by the second matmul (4 B NH T^2), q k v read, y written and unpermuted
    double bytes_v1 = (6.0 * BTC + 4.0 * BNHT * T + 3.0 * BTC + 2.0 * BTC) * X;
    double bytes_v2 = 4.0 * BTC * X + BNHT * sizeof(float);
    float ms1 = time_ms(
        [&]() {
            attention_forward_materialised(d.out, d.qkvr, d.att, d.scratch, d.qkv, B, T, C, NH, 0);
        },
        repeats);
    report_bandwidth("version 1 (materialising)", ms1, bytes_v1);
    float ms2 =
        time_ms([&]() { attention_forward_flash(d.out, d.lse, d.qkv, B, T, C, NH, 0); }, repeats);
    report_bandwidth("version 2 (flash)", ms2, bytes_v2);
    printf("  version 2: %.1f TFLOP/s (causal FLOPs)%s\n",
           2.0 * BNHT * T * HS / (ms2 * 1e-3) / 1e12,
           DEV_EMULATED ? " (emulated: not a GPU time)" : "");
    if (attention_version_runs(3, HS)) {
        float ms3 = time_ms(
            [&]() { attention_forward_version3(d.out, d.lse, d.qkv, B, T, NH, HS); }, repeats);
        report_bandwidth("version 3 (cuDNN)", ms3, bytes_v2);
        printf("  version 3: %.1f TFLOP/s (causal FLOPs)%s\n",
               2.0 * BNHT * T * HS / (ms3 * 1e-3) / 1e12,
               DEV_EMULATED ? " (emulated: the stand-in on the CPU, not cuDNN)" : "");
    }
    attention_buffers_free(&d);
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
