"""PyTorch CPU peer of the C trainer's step: the reference GPT class of scripts/train_gpt2.py, same
model, batch and thread count, forward + backward + clip + AdamW. Prints one line:
    RESULT torch_step_ms=<mean> torch_version=<v> capability=<isa> threads=<n>

    python bench/torch_step.py -e d12 -b 4 -t 64 -n 5 --threads 2

Use PyPI's torch (its own oneDNN/MKL kernels), not Debian's python3-torch: bench/bench_cpu.sh does.
"""

import argparse
import os
import sys
import time


def best_capability():
    """The widest ISA torch may dispatch to here; the reference script pins "default" for bit-exact
    init, which a speed comparison must not inherit."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    if " avx512f" in flags and " avx512bw" in flags:
        return "avx512"
    if " avx2" in flags:
        return "avx2"
    return "default"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-e", "--model", default="d12", help="model descriptor (default d12)")
    parser.add_argument("-b", "--batch-size", type=int, default=4)
    parser.add_argument("-t", "--seq-len", type=int, default=64)
    parser.add_argument("-n", "--steps", type=int, default=5, help="timed steps after 2 warm-up steps")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    os.environ["ATEN_CPU_CAPABILITY"] = os.environ.get("TORCH_CPU_CAPABILITY", best_capability())
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
    import torch
    import train_gpt2 as ref

    torch.set_num_threads(args.threads)
    cfg = ref.parse_descriptor(args.model)
    if cfg is None or cfg.arch != "gpt2":
        ref.fail(f"--model {args.model}: expected a GPT-2 descriptor such as d12 (llama is not benchmarked here yet)")
    model = ref.GPT(cfg)
    model.init_random(42)
    # the C trainer's AdamW: betas (0.9, 0.95), eps 1e-8; torch's fastest CPU variant (fused)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
                                  weight_decay=0.0, fused=True)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.V, (args.batch_size, args.seq_len + 1), generator=generator)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    for _ in range(2):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    mean_ms = 1e3 * sum(times) / len(times)
    print(f"torch steps (ms): {' '.join(f'{1e3 * t:.1f}' for t in times)}")
    print(f"RESULT torch_step_ms={mean_ms:.1f} torch_version={torch.__version__} "
          f"capability={torch.backends.cpu.get_cpu_capability()} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
