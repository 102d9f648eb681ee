#!/usr/bin/env bash
# CPU training speed, side by side in one run: the Foundation issue's first landed trainer
# (BASELINE, default a7da96f), the current trainer, the layer-by-layer benchmark (bench_cpu: matmul
# GFLOP/s against the measured FMA peak) and PyPI PyTorch's step on the same model, batch and threads.
#
#   bash bench/bench_cpu.sh                     (d12, B=4, T=64, all cores)
#   MODEL=d4 THREADS=1 STEPS=5 bash bench/bench_cpu.sh
#
# TORCH_PYTHON: a python with PyPI torch (default /opt/torchbench/bin/python; skipped if absent).
# Not part of `make test`: timings are printed as ratios, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODEL=${MODEL:-d12}
B=${B:-4}
T=${T:-64}
STEPS=${STEPS:-4}
THREADS=${THREADS:-$(nproc)}
BASELINE=${BASELINE:-a7da96f}
TORCH_PYTHON=${TORCH_PYTHON:-/opt/torchbench/bin/python}
WORK=$ROOT/build/bench_cpu_run
mkdir -p "$WORK"
export OMP_NUM_THREADS=$THREADS

echo "# bench/bench_cpu.sh: $MODEL B=$B T=$T, $THREADS threads, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (+ local changes)'), baseline $BASELINE"
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores online"
echo "# gcc: $(gcc --version | head -1)"

make -s train_gpt2 tokenizer build/bench_cpu
[ -f dev/data/tinyshakespeare/tiny_shakespeare_train.bin ] || bash dev/data/tinyshakespeare.sh >/dev/null
SHARD=$ROOT/dev/data/tinyshakespeare/tiny_shakespeare_train.bin

# the baseline, built from its own commit in a worktree under build/
BASE_DIR=$ROOT/build/baseline-$BASELINE
if [ ! -x "$BASE_DIR/train_gpt2" ]; then
    rm -rf "$BASE_DIR"
    git worktree prune
    git worktree add --detach "$BASE_DIR" "$BASELINE" >/dev/null 2>&1
    make -s -C "$BASE_DIR" train_gpt2
fi

# train_steps NAME BINARY: mean ms/step of STEPS steps (the first, with allocation, is excluded)
train_steps() {
    local name=$1 binary=$2
    (cd "$(dirname "$binary")" && "$binary" -e "$MODEL" -b "$B" -t "$T" -x "$STEPS" -i "$SHARD" -j "" \
        -v 0 -s 0) >"$WORK/$name.log" 2>&1 || { echo "error: $name failed, see $WORK/$name.log" >&2; exit 1; }
    grep -o 'mean [0-9.]* ms/step' "$WORK/$name.log" | awk '{print $2}'
}

echo
echo "== baseline trainer ($BASELINE)"
base_ms=$(train_steps baseline "$BASE_DIR/train_gpt2")
echo "mean step: $base_ms ms"

echo
echo "== current trainer"
cur_ms=$(train_steps current "$ROOT/train_gpt2")
echo "mean step: $cur_ms ms"

echo
echo "== bench_cpu (layer by layer)"
./build/bench_cpu -e "$MODEL" -b "$B" -t "$T" -n "$STEPS" | tee "$WORK/bench_cpu.log"
result=$(grep '^RESULT' "$WORK/bench_cpu.log")
fraction=$(echo "$result" | sed 's/.*matmul_fraction=\([0-9.]*\).*/\1/')

torch_ms=""
echo
if "$TORCH_PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "== PyTorch (PyPI) step, same model, batch and threads"
    "$TORCH_PYTHON" bench/torch_step.py -e "$MODEL" -b "$B" -t "$T" -n "$STEPS" --threads "$THREADS" |
        tee "$WORK/torch.log"
    torch_ms=$(grep '^RESULT' "$WORK/torch.log" | sed 's/.*torch_step_ms=\([0-9.]*\).*/\1/')
else
    echo "== PyTorch: skipped ($TORCH_PYTHON has no torch; pip install torch into a venv and set TORCH_PYTHON)"
fi

echo
echo "== summary ($MODEL B=$B T=$T, $THREADS threads)"
printf 'baseline %s: %8.1f ms/step\n' "$BASELINE" "$base_ms"
printf 'current:          %8.1f ms/step   %.2fx faster than the baseline\n' "$cur_ms" \
    "$(echo "$base_ms / $cur_ms" | bc -l)"
if [ -n "$torch_ms" ]; then
    printf 'PyTorch CPU:      %8.1f ms/step   current is %.2fx PyTorch speed\n' "$torch_ms" \
        "$(echo "$torch_ms / $cur_ms" | bc -l)"
fi
printf 'matmuls:          %.0f%% of the measured fp32 FMA peak\n' "$(echo "100 * $fraction" | bc -l)"
