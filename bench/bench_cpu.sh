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

# Shared virtual machines are noisy (neighbours come and go within seconds): ROUNDS rounds, each
# running every contender once, interleaved; the summary uses each contender's median.
ROUNDS=${ROUNDS:-3}
have_torch=0
"$TORCH_PYTHON" -c "import torch" >/dev/null 2>&1 && have_torch=1
base_all=() cur_all=() torch_all=() peak_all=() gflops_all=() fraction_all=()
for round in $(seq 1 "$ROUNDS"); do
    echo
    echo "== round $round/$ROUNDS"
    base_all+=("$(train_steps baseline "$BASE_DIR/train_gpt2")")
    cur_all+=("$(train_steps current "$ROOT/train_gpt2")")
    ./build/bench_cpu -e "$MODEL" -b "$B" -t "$T" -n "$STEPS" >"$WORK/bench_cpu_$round.log"
    result=$(grep '^RESULT' "$WORK/bench_cpu_$round.log")
    peak_all+=("$(echo "$result" | sed 's/.*peak_gflops=\([0-9.]*\).*/\1/')")
    gflops_all+=("$(echo "$result" | sed 's/.*matmul_gflops=\([0-9.]*\).*/\1/')")
    fraction_all+=("$(echo "$result" | sed 's/.*matmul_fraction=\([0-9.]*\).*/\1/')")
    line="baseline ${base_all[-1]} ms, current ${cur_all[-1]} ms, matmuls ${gflops_all[-1]} GFLOP/s ($result)"
    if [ "$have_torch" = 1 ]; then
        "$TORCH_PYTHON" bench/torch_step.py -e "$MODEL" -b "$B" -t "$T" -n "$STEPS" \
            --threads "$THREADS" >"$WORK/torch_$round.log"
        torch_all+=("$(grep '^RESULT' "$WORK/torch_$round.log" | sed 's/.*torch_step_ms=\([0-9.]*\).*/\1/')")
        line="$line, PyTorch ${torch_all[-1]} ms"
    fi
    echo "$line"
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Two fractions of peak. Per round: the layers' best times against the best of 15 peak runs
# spread over the same bench_cpu run, so both see the same neighbours; the median of the rounds.
# Across rounds: the median matmul GFLOP/s against the best peak of any round, the stricter one,
# since a quiet moment in one round's peak loop then counts against every round.
best_peak=$(printf '%s\n' "${peak_all[@]}" | sort -g | tail -1)
median_gflops=$(median "${gflops_all[@]}")
median_fraction=$(echo "$median_gflops / $best_peak" | bc -l)
median_round_fraction=$(median "${fraction_all[@]}")
for round in $(seq 1 "$ROUNDS"); do
    if [ "${gflops_all[$((round - 1))]}" = "$median_gflops" ]; then
        echo
        echo "== bench_cpu, layer by layer (round $round: the median matmul GFLOP/s)"
        cat "$WORK/bench_cpu_$round.log"
        break
    fi
done
if [ "$have_torch" = 1 ]; then
    echo
    echo "== PyTorch: $(grep '^RESULT' "$WORK/torch_1.log")"
else
    echo
    echo "== PyTorch: skipped ($TORCH_PYTHON has no torch; pip install torch into a venv and set TORCH_PYTHON)"
fi

base_ms=$(median "${base_all[@]}")
cur_ms=$(median "${cur_all[@]}")
echo
echo "== summary ($MODEL B=$B T=$T, $THREADS threads, medians of $ROUNDS rounds)"
printf 'baseline %s: %8.1f ms/step\n' "$BASELINE" "$base_ms"
printf 'current:          %8.1f ms/step   %.2fx faster than the baseline\n' "$cur_ms" \
    "$(echo "$base_ms / $cur_ms" | bc -l)"
if [ "$have_torch" = 1 ]; then
    torch_ms=$(median "${torch_all[@]}")
    printf 'PyTorch CPU:      %8.1f ms/step   current is %.2fx PyTorch speed\n' "$torch_ms" \
        "$(echo "$torch_ms / $cur_ms" | bc -l)"
fi
printf 'matmuls:          %.0f%% of the fp32 FMA peak measured in the same run (median of rounds: %s)\n' \
    "$(echo "100 * $median_round_fraction" | bc -l)" "${fraction_all[*]}"
printf '                  %.1f GFLOP/s (median; rounds: %s) = %.0f%% of the best peak of all rounds, %.1f GFLOP/s (rounds: %s)\n' \
    "$median_gflops" "${gflops_all[*]}" "$(echo "100 * $median_fraction" | bc -l)" "$best_peak" "${peak_all[*]}"
