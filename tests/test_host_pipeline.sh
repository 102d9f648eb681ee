#!/usr/bin/env bash
# The training step's host pipeline (llmc/host_pipeline.cuh, docs/gpu_performance.md) on the CPU
# emulation: (a) the pipelined trainer (pinned slots, async uploads, losses summed and the clip
# scale computed on the device, one read-back per step) writes the same bits as the host path
# (LLMC_SYNC_PIPELINE=1: blocking read-backs, host sums, host clip scale), fp32 and bf16, with
# gradient accumulation, validation and an active clip, and with SFT loss masks; (b) a training
# step waits for the GPU at most once (the emulation counts host waits, LLMC_EMU_WAITS=1) and
# never with a blocking cudaMemcpy; (c) planted pipeline bugs (LLMC_PLANT_PIPELINE) are caught:
# an extra sync and a too-small slot ring by the wait count, a pinned slot overwritten before its
# upload was known done by the emulation's pending-copy check, the loss read before the wait (the
# emulation's pinned read-back holds NaN until then), a clip threshold one ulp off by (a).
# usage: bash tests/test_host_pipeline.sh [WORK]. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
WORK=${1:-$ROOT/build/test}/host_pipeline
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source tests/lib_checks.sh
CU32=./build/cuda/emu-fp32/train_gpt2cu
CU16=./build/cuda/emu-bf16/train_gpt2cu
make --no-print-directory -s "$CU32" "$CU16" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} LLMC_EMU_THREADS=${LLMC_EMU_THREADS:-2}
export OMP_WAIT_POLICY=passive # idle OpenMP threads would otherwise starve the emulation's workers
unset LLMC_SYNC_PIPELINE LLMC_PLANT_PIPELINE LLMC_EMU_WAITS
PY=/usr/bin/python3

# A small model (V=512) on text-like shards of ids < 512; an SFT shard with a loss mask that
# trains about half of the targets (and none of one whole micro-batch-sized stretch)
PYTHONPATH=tests $PY - "$WORK" <<'PYEOF'
import random, struct, sys
from token_shards import text_like, write_shard
work = sys.argv[1]
rng = random.Random(4321)
ids = rng.sample(range(512), 300)
write_shard(work + "/train_000.bin", text_like(rng, ids, 3000))
write_shard(work + "/val_000.bin", text_like(rng, ids, 1000))
# SFT: 40 rows of T+1 = 33 tokens; a row's first token is never a target; rows 2-3 (the second
# micro-batch of step 1) train nothing, so the pipeline also skips a micro-batch
rows, T = 40, 32
write_shard(work + "/sft_000.bin", text_like(rng, ids, rows * (T + 1)))
mask = bytearray()
for r in range(rows):
    mask += bytes([0] + [0 if r in (2, 3) else int(rng.random() < 0.5) for _ in range(T)])
header = [20240610, 1, len(mask), T, 512, sum(mask), 0] + [0] * 249
with open(work + "/sft_000.mask", "wb") as f:
    f.write(struct.pack("<256i", *header) + bytes(mask))
PYEOF
MODEL="L=2,C=64,NH=4,V=512,maxT=32"
# accumulation over 2 micro-batches, validation at steps 0, 2, 4, the clip active (norms > 0.2)
FLAGS=(-e "$MODEL" --seed 7 -i "$WORK/train_000.bin" -j "$WORK/val_000.bin" -b 2 -t 32 -d 128
    -x 4 -l 3e-3 --grad-clip 0.2 -v 2 -m 2 -s 0)

# same_run NAME BINARY [ENV...]: a run with ENV against the host path's run of BINARY, bit for bit
same_run() {
    local name=$1 bin=$2
    shift 2
    local FLAGS=("${FLAGS[@]}")
    [ "$name" = sft ] && FLAGS=("${SFT_FLAGS[@]}")
    [ "$name" = judged ] && FLAGS+=(--outlier-window 2)
    local a=$WORK/${name}_pipe b=$WORK/${name}_host
    env "$@" "$bin" "${FLAGS[@]}" -o "$a" >"$a.log" 2>&1 || { echo "run failed (see $a.log)"; return 1; }
    if [ ! -e "$b/main.log" ]; then
        LLMC_SYNC_PIPELINE=1 "$bin" "${FLAGS[@]}" -o "$b" >"$b.log" 2>&1 ||
            { echo "host-path run failed (see $b.log)"; return 1; }
    fi
    # the state file holds the outlier detector's window: every step's loss and norm, in full
    for f in main.log model_00000004.bin state_00000004_00000.bin; do
        cmp -s "$a/$f" "$b/$f" || { echo "$f differs"; return 1; }
    done
    grep -q "trl:" "$a/main.log"
}
SFT_FLAGS=(-e "$MODEL" --seed 7 -i "$WORK/sft_000.bin" -j "" -b 2 -t 32 -d 128 -x 4 -l 3e-3
    --grad-clip 0.2 -s 0 --mask 1)
check "pipelined step == host path (fp32, SFT loss masks, a micro-batch without trained targets)" \
    same_run sft "$CU32"
check "pipelined step == host path (fp32, --outlier-window 2: from step 3 the host judges before the update is queued)" \
    same_run judged "$CU32"
for precision in fp32 bf16; do
    bin=./build/cuda/emu-$precision/train_gpt2cu
    check "pipelined step == host path ($precision: main.log, model, state with every loss and norm bit for bit; 2 micro-batches, val, clip)" \
        same_run "$precision" "$bin"
done
if same_run clip_ulp "$CU32" LLMC_PLANT_PIPELINE=clip-ulp >"$WORK/clip_ulp.out" 2>&1; then
    not_ok "planted clip threshold one ulp low went unnoticed by the bit comparison"
else
    ok "planted clip threshold one ulp low on the device: the comparison fails ($(cat "$WORK/clip_ulp.out"))"
fi

# waits NAME STEPS [ENV...]: total host waits and blocking copies of a run without validation,
# sampling or checkpoints (what is left is start-up, the same at any -x)
waits() {
    local name=$1 steps=$2
    shift 2
    env LLMC_EMU_WAITS=1 "$@" "$CU32" -e "$MODEL" --seed 7 -i "$WORK/train_000.bin" -j "" -b 2 \
        -t 32 -d 128 -x "$steps" -s 0 >"$WORK/waits_$name.log" 2>&1 || return 1
    grep -o "host waits: [0-9]* (cudaDeviceSynchronize [0-9]*, .*blocking cudaMemcpy [0-9]*" \
        "$WORK/waits_$name.log" | tr -cs '0-9' ' '
}
# per_step NAME [ENV...]: the waits two more steps add, per step: "waits device_syncs copies"
per_step() {
    local name=$1
    shift
    local w2 w4
    if ! w2=$(waits "${name}_2" 2 "$@") || ! w4=$(waits "${name}_4" 4 "$@"); then
        echo "run failed"
        return 1
    fi
    read -r a2 d2 _ _ c2 <<<"$w2"
    read -r a4 d4 _ _ c4 <<<"$w4"
    echo "$(((a4 - a2) / 2)) $(((d4 - d2) / 2)) $(((c4 - c2) / 2))"
}
at_most_one_wait() { # per_step's output: at most 1 wait a step, no device sync, no blocking copy
    read -r w d c <<<"$1"
    [ "$w" -le 1 ] && [ "$d" -eq 0 ] && [ "$c" -eq 0 ]
}
result=$(per_step pipe)
if at_most_one_wait "$result"; then
    ok "a training step waits for the GPU $(cut -d' ' -f1 <<<"$result") time(s), with no cudaDeviceSynchronize and no blocking cudaMemcpy (per step: waits, device syncs, copies = $result)"
else
    not_ok "a training step waits more than once (per step: waits, device syncs, blocking copies = $result; see $WORK/waits_pipe_4.log)"
fi
result=$(per_step host LLMC_SYNC_PIPELINE=1)
if ! [[ $result =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]]; then
    not_ok "the host path's runs failed ($result; see $WORK/waits_host_2.log)"
elif at_most_one_wait "$result"; then
    not_ok "the host path (LLMC_SYNC_PIPELINE=1) passes the wait count: it cannot fail ($result)"
else
    ok "the host path (blocking read-backs) fails the wait count (per step: waits, device syncs, copies = $result)"
fi
for plant in sync one-slot; do
    result=$(per_step "$plant" LLMC_PLANT_PIPELINE=$plant)
    if ! [[ $result =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]]; then
        not_ok "planted $plant: the runs failed ($result; see $WORK/waits_${plant}_2.log)"
    elif at_most_one_wait "$result"; then
        not_ok "planted $plant passes the wait count ($result)"
    else
        ok "planted $plant (LLMC_PLANT_PIPELINE) fails the wait count (per step: waits, device syncs, copies = $result)"
    fi
done
if { waits early_overwrite 2 LLMC_PLANT_PIPELINE=early-overwrite >/dev/null; } 2>/dev/null; then
    not_ok "planted early-overwrite (one pinned slot, not waited for) went unnoticed"
elif grep -q "^llmc_emu: pinned host memory .* changed before any host wait" "$WORK/waits_early_overwrite.log"; then
    ok "planted early-overwrite: the emulation reports the pinned slot rewritten before its upload was known done"
else
    not_ok "planted early-overwrite failed without the emulation's report (see $WORK/waits_early_overwrite.log)"
fi
if waits early_read 2 LLMC_PLANT_PIPELINE=early-read >/dev/null; then
    not_ok "planted early-read (loss read before the wait) went unnoticed"
elif grep -q "^error: step 1: loss: expected a finite value, found nan" "$WORK/waits_early_read.log"; then
    ok "planted early-read: the loss read before the wait is the emulation's NaN poison, and the run stops"
else
    not_ok "planted early-read failed otherwise (see $WORK/waits_early_read.log)"
fi
checks_summary
