"""PyTorch 2.x GPU baseline for train_gpt2cu (bench/gpu_check.sh runs it): the same GPT-2 (tied
embeddings, tanh GELU, padded vocabulary as ours), trained the way a fast PyTorch script does it:
bf16 autocast over fp32 weights, scaled_dot_product_attention (causal: flash attention),
torch.compile, fused AdamW (betas 0.9/0.95), gradient clipping at 1.0. Random tokens (speed does
not depend on the text). For each -b, one line:
    RESULT torch B=<b> T=<t> step_ms=<median> tokens_per_s=<n> mfu=<percent or n/a> torch=<version>

    python3 bench/torch_gpu_step.py -e d12 -t 1024 -b 16 32 -n 20

--ready-file / --go-file: compile and warm up every -b first, then create the ready file and wait
for the go file before timing, so that a caller can overlap the compilation with its own build and
still time on an idle GPU. --device cpu --no-compile: a check that this script runs (bench/gpu_check.sh
with EMU=1), not a baseline.
"""

import argparse
import math
import os
import statistics
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-e", "--model", default="d12", help="model descriptor (default d12)")
    parser.add_argument("-b", "--batch-sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("-t", "--seq-len", type=int, default=1024)
    parser.add_argument("-n", "--steps", type=int, default=20, help="timed steps after 3 warm-up steps")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-compile", action="store_true", help="eager mode (no torch.compile)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak for the MFU (H100 SXM: 989)")
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--go-file", default="")
    parser.add_argument("--go-timeout", type=float, default=900.0, help="seconds to wait for --go-file")
    args = parser.parse_args()

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from train_gpt2 import fail, parse_descriptor

    cfg = parse_descriptor(args.model)
    if cfg is None or cfg.arch != "gpt2":
        fail(f"--model {args.model}: expected a GPT-2 descriptor such as d12 (llama is not benchmarked here yet)")
    if args.seq_len > cfg.maxT:
        fail(f"-t {args.seq_len}: the model's maxT is {cfg.maxT}")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        fail("--device cuda: torch sees no GPU")

    sdpa = getattr(F, "scaled_dot_product_attention", None)
    if cuda and (sdpa is None or not hasattr(torch, "compile")):
        fail(f"torch {torch.__version__}: a baseline needs PyTorch 2.x (SDPA, torch.compile)")

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            C = cfg.C
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.c_fc_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, cfg.NH, C // cfg.NH).transpose(1, 2) for t in (q, k, v))
            if sdpa is not None:
                y = sdpa(q, k, v, is_causal=True)
            else:  # torch 1.x, CPU check only
                scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
                causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                y = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1) @ v
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.c_fc_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(cfg.Vp, cfg.C), nn.Embedding(cfg.maxT, cfg.C)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.L))
            self.ln_f = nn.LayerNorm(cfg.C)
            for p in self.parameters():
                nn.init.normal_(p, std=0.02) if p.dim() > 1 else nn.init.zeros_(p)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
            for block in self.blocks:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # tied, like GPT-2
            return F.cross_entropy(logits.float().view(-1, cfg.Vp), targets.view(-1))

    torch.manual_seed(0)
    model = GPT().to(device)
    num_parameters = sum(p.numel() for p in model.parameters())
    fused = {"fused": True} if cuda else {}  # (torch 1.x, a CPU check, has no fused AdamW)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
                                  weight_decay=0.0, **fused)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # one static graph per batch size (as a training run has), not a dynamic-shape one
    forward = model if args.no_compile else torch.compile(model, dynamic=False)
    autocast_type = torch.bfloat16
    T = args.seq_len

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=autocast_type):
            loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize()

    generator = torch.Generator(device="cpu").manual_seed(1)
    batches = {}
    for B in args.batch_sizes:
        tokens = torch.randint(0, cfg.V, (B, T + 1), generator=generator).to(device)
        batches[B] = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
        start = time.perf_counter()
        for _ in range(3):  # compilation (per shape) and warm-up
            step(*batches[B])
        sync()
        print(f"warm-up B={B}: {time.perf_counter() - start:.1f} s (compile included)", flush=True)
    if args.ready_file:
        open(args.ready_file, "w").close()
    if args.go_file:
        deadline = time.time() + args.go_timeout
        while not os.path.exists(args.go_file):
            if time.time() > deadline:
                fail(f"--go-file {args.go_file}: not created within {args.go_timeout:.0f} s")
            time.sleep(0.2)
    flops_per_token = 6 * num_parameters + 6 * cfg.L * cfg.C * T
    for B, (x, y) in batches.items():
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.steps):
            sync()
            start = time.perf_counter()
            loss = step(x, y)
            sync()
            times.append(time.perf_counter() - start)
        step_s = statistics.median(times)
        tokens_per_s = B * T / step_s
        mfu = "%.1f%%" % (100 * tokens_per_s * flops_per_token / (args.peak_tflops * 1e12)) if cuda else "n/a"
        memory = " peak_memory_gib=%.2f" % (torch.cuda.max_memory_allocated() / 2**30) if cuda else ""
        if not math.isfinite(loss.item()):
            fail(f"B={B}: the loss is not finite")
        print(f"RESULT torch B={B} T={T} step_ms={1e3 * step_s:.1f} tokens_per_s={tokens_per_s:.0f} "
              f"mfu={mfu}{memory} compiled={not args.no_compile} torch={torch.__version__}", flush=True)


if __name__ == "__main__":
    main()
