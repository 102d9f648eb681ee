#!/usr/bin/env bash
# Guards against a diverging run (llmc/divergence.h), in train_gpt2 and in train_gpt2cu on the CPU
# emulation (fp32 and bf16): a NaN loss stops the run before its update with one error line and no
# non-finite value in any file written; a checkpoint with a non-finite value is refused and resume
# picks the previous one; the outlier detector skips a planted spike, logs it and resumes bit for
# bit; fastmath.h's exp/tanh take NaN without undefined behaviour (UBSan).
# usage: bash tests/test_divergence.sh [WORK]   (part of `make test`, which passes its $WORK; its
# train_000.bin is reused when present). Ends with "N passed, N failed"; exits non-zero on a failure.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${1:-$ROOT/build/test}/divergence
rm -rf "$WORK"
mkdir -p "$WORK"
# ok, not_ok, run, check, expect_error, checks_summary
# shellcheck source=tests/lib_checks.sh
source tests/lib_checks.sh

CPU=$BIN/train_gpt2
CU32=./build/cuda/emu-fp32/train_gpt2cu
CU16=./build/cuda/emu-bf16/train_gpt2cu
make --no-print-directory -s "$CPU" "$CU32" "$CU16" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=passive # idle OpenMP threads would otherwise starve the emulation's workers
PY=/usr/bin/python3            # has numpy (Debian's python3-numpy)

# Data: run_tests.sh's text-like shard when there is one; spike.bin for the outlier detector: 16
# token ids drawn uniformly (the loss settles at ln 16), except the window of step 21 (0-based 20:
# 64 tokens of ids 500..999, never seen before); nospike.bin is the same without that window.
SHARD=${1:-$ROOT/build/test}/train_000.bin
[ -e "$SHARD" ] || SHARD=$WORK/train_000.bin
PYTHONPATH=tests $PY - "$WORK" "$SHARD" <<'EOF'
import os, random, sys
from token_shards import text_like, vocabulary_sample, write_shard
work, shard = sys.argv[1], sys.argv[2]
rng = random.Random(1234)
if not os.path.exists(shard):
    write_shard(shard, text_like(rng, vocabulary_sample(rng), 6000))
ids = rng.sample(range(500), 16)
before = [rng.choice(ids) for _ in range(20 * 64)]
spike = [rng.randrange(500, 1000) for _ in range(64)]
after = [rng.choice(ids) for _ in range(40 * 64)]
write_shard(work + "/spike.bin", before + spike + after)
write_shard(work + "/nospike.bin", before + after[:64] + after)
EOF

# all_finite DIR: every value in every file a trainer wrote into DIR is finite: model files (fp32
# v3, bf16 v5), state files (m, v, master weights, the outlier detector's history), main.log's
# numbers; DONE markers are empty, .lock holds the trainer's PID; anything else is unexpected.
# Prints what it checked.
all_finite() {
    $PY - "$1" <<'EOF'
import os, sys
import numpy as np
folder = sys.argv[1]
bad, checked = [], 0
for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    raw = open(path, "rb").read()
    if name.startswith("model_"):
        header = np.frombuffer(raw[:1024], dtype=np.int32)
        if header[1] == 5:
            values = (np.frombuffer(raw[1024:], dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            values = np.frombuffer(raw[1024:], dtype=np.float32)
    elif name.startswith("state_"):
        header = np.frombuffer(raw[:1024], dtype=np.int32)
        n = int(header[40]) | (int(header[41]) << 32)
        arrays = 3 if header[4] else 2
        values = [np.frombuffer(raw[1024:1024 + 4 * n * arrays], dtype=np.float32)]
        offset = 1024 + 4 * n * arrays
        if header[5]:  # the loader's shuffle state: counts, permutations, mt19937
            shards = int(np.frombuffer(raw[offset:offset + 8], dtype=np.uint64)[0])
            offset += 8 + 4 * shards
            samples = int(np.frombuffer(raw[offset:offset + 8], dtype=np.uint64)[0])
            offset += 8 + 4 * samples + 2520  # count, order, llm.c's 2,520-byte mt19937_state
        count = int(header[50])
        values.append(np.frombuffer(raw[offset:offset + 8 * count], dtype=np.float32))
        if offset + 8 * count != len(raw):
            bad.append("%s: %d bytes, layout gives %d" % (name, len(raw), offset + 8 * count))
        values = np.concatenate(values)
    elif name == "main.log":
        values = np.array([float(field.split(":", 1)[1]) for line in raw.decode().splitlines()
                           for field in line.split()], dtype=np.float64)
    elif (name.startswith("DONE_") and not raw) or name == ".lock":  # (the lock holds a PID)
        continue
    elif name in ("report.md", "loss.svg", "tokenizer.bin"):  # end-of-run report, kept tokenizer
        continue
    else:
        bad.append(name + ": unexpected file")
        continue
    checked += 1
    where = np.flatnonzero(~np.isfinite(values))
    if where.size:
        bad.append("%s: %d non-finite values, first at %d" % (name, where.size, where[0]))
print("%d files checked%s" % (checked, "; " + "; ".join(bad) if bad else ""))
sys.exit(1 if bad or checked == 0 else 0)
EOF
}

# ---------------------------------------------------------------------------------------------
# 1. The finite check itself catches a planted NaN (else the checks below could not fail).
mkdir -p "$WORK/planted"
$PY -c "
import numpy as np, struct
header = [0] * 256; header[0:2] = [20240326, 3]
values = np.random.default_rng(1).standard_normal(1000).astype(np.float32); values[617] = np.nan
open('$WORK/planted/model_00000001.bin', 'wb').write(struct.pack('<256i', *header) + values.tobytes())"
if summary=$(all_finite "$WORK/planted"); then
    not_ok "the finite-file check passes a model file with a planted NaN: $summary"
else
    ok "(planted) the finite-file check flags a model file with one NaN: $summary"
fi

# ---------------------------------------------------------------------------------------------
# 2. -l 1e30 --grad-clip 0: the loss goes NaN at step 2. Each trainer stops before the update with
#    one error line, exit 1; the checkpoint of step 1 (-n 1) and main.log hold no NaN.
TRAINERS=("train_gpt2|$CPU|cpu" "train_gpt2cu fp32|$CU32|cu32" "train_gpt2cu bf16|$CU16|cu16")
NAN_FLAGS=(-e d2 -i "$SHARD" -j "" -b 2 -t 32 -x 6 -n 1 -l 1e30 --grad-clip 0 -s 0)
for spec in "${TRAINERS[@]}"; do
    IFS='|' read -r name binary tag <<<"$spec"
    expect_error "$name, -l 1e30 --grad-clip 0: stops before the update" \
        'step [0-9]*: \(loss\|gradient norm\): expected a finite value, found .*lower -l or enable --grad-clip' \
        "$binary" "${NAN_FLAGS[@]}" -o "$WORK/nan_$tag"
    if [ -e "$WORK/nan_$tag/DONE_00000001" ] && summary=$(all_finite "$WORK/nan_$tag"); then
        ok "$name: no non-finite value in any file written ($summary)"
    else
        not_ok "$name: non-finite values written, or no checkpoint ($(all_finite "$WORK/nan_$tag"))"
    fi
done

# ---------------------------------------------------------------------------------------------
# 3. A checkpoint with a non-finite value is never written: resumed at step 2 with -l 1e38 (the
#    first update's step, 10 lr, overflows to inf) the weights of step 3 are infinite with a
#    finite loss; the checkpoint of step 3 is refused, 2 stays the newest and resumes.
REFUSE_FLAGS=(-e d2 -i "$SHARD" -j "" -b 2 -t 32 -s 0 -n 1 --grad-clip 0)
for spec in "${TRAINERS[@]}"; do
    IFS='|' read -r name binary tag <<<"$spec"
    dir=$WORK/refuse_$tag
    "$binary" "${REFUSE_FLAGS[@]}" -x 2 -o "$dir" >"$WORK/refuse_$tag.log" 2>&1 ||
        not_ok "$name: the first 2 steps failed (see $WORK/refuse_$tag.log)"
    expect_error "$name: a checkpoint with infinite weights is refused" \
        'model_00000003.bin: \(weights\|master weights\|AdamW [mv]\)\[[0-9]*\]: expected a finite value, found .*not written' \
        "$binary" "${REFUSE_FLAGS[@]}" -x 4 -y 1 -l 1e38 -o "$dir"
    if [ ! -e "$dir/DONE_00000003" ] && [ ! -e "$dir/model_00000003.bin" ] &&
        [ ! -e "$dir/state_00000003_00000.bin" ] && summary=$(all_finite "$dir") &&
        "$binary" "${REFUSE_FLAGS[@]}" -x 4 -y 1 -o "$dir" >"$WORK/refuse_${tag}_resume.log" 2>&1 &&
        grep -q "resume: from step 2" "$WORK/refuse_${tag}_resume.log"; then
        ok "$name: nothing of step 3 written, all files finite ($summary); -y 1 resumes from step 2"
    else
        not_ok "$name: after the refused checkpoint (see $dir, $WORK/refuse_${tag}_resume.log)"
    fi
done

# ---------------------------------------------------------------------------------------------
# 4. The outlier detector: spike.bin's step 21 (0-based 20) is skipped and logged; with the
#    detector off it is not, and without the spike no step is. A window of 8 keeps runs short
#    (the spike's loss z-score is 18).
SPIKE_FLAGS=(-e "L=2,C=64,NH=4,V=1000,maxT=64" -j "" -b 2 -t 32 -l 3e-3 -s 0 --outlier-window 8)
OFF=(--skip-update-loss 0 --skip-update-norm 0)
# same_payload A B: two model files' weights are bit-identical
same_payload() {
    $PY -c "import sys; sys.exit(open(sys.argv[1], 'rb').read()[1024:] != open(sys.argv[2], 'rb').read()[1024:])" "$1" "$2"
}
# same_moments A B: two state files' m, v (and master weights) are bit-identical
same_moments() {
    $PY -c "
import sys
a, b = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
n = int.from_bytes(a[160:168], 'little')
end = 1024 + 4 * n * (3 if a[16] else 2)
sys.exit(a[1024:end] != b[1024:end])" "$1" "$2"
}
DETECTOR_TRAINERS=("train_gpt2|$CPU|cpu" "train_gpt2cu bf16|$CU16|cu16")
for spec in "${DETECTOR_TRAINERS[@]}"; do
    IFS='|' read -r name binary tag <<<"$spec"
    on=$WORK/spike_${tag}_on
    off=$WORK/spike_${tag}_off
    "$binary" "${SPIKE_FLAGS[@]}" -i "$WORK/spike.bin" -x 21 -n 20 -o "$on" >"$on.log" 2>&1
    "$binary" "${SPIKE_FLAGS[@]}" "${OFF[@]}" -i "$WORK/spike.bin" -x 21 -n 20 -o "$off" >"$off.log" 2>&1
    if grep -q "^s:20 trl:.* skipped:1 zloss:[0-9.]* znorm:" "$on/main.log" &&
        [ "$(grep -c skipped "$on/main.log")" -eq 1 ] &&
        grep -q "^step    21/21 .*| update skipped: loss z-score" "$on.log" &&
        same_payload "$on/model_00000020.bin" "$on/model_00000021.bin" &&
        same_moments "$on/state_00000020_00000.bin" "$on/state_00000021_00000.bin"; then
        ok "$name: the planted spike (step 21) is skipped -- weights and AdamW state unchanged -- and logged: $(grep '^s:20 trl' "$on/main.log")"
    else
        not_ok "$name: the planted spike was not skipped or not logged (see $on.log)"
    fi
    if [ -s "$off/main.log" ] && ! grep -q "skipped" "$off/main.log" &&
        ! same_payload "$off/model_00000020.bin" "$off/model_00000021.bin"; then
        ok "$name (control): with --skip-update-loss 0 --skip-update-norm 0 the spike step updates the weights"
    else
        not_ok "$name (control): skipped with thresholds 0, or the spike step changes nothing anyway (see $off.log)"
    fi
done
"$CPU" "${SPIKE_FLAGS[@]}" -i "$WORK/nospike.bin" -x 40 -o "$WORK/nospike" >"$WORK/nospike.log" 2>&1
if [ "$(grep -c "^s:.* trl:" "$WORK/nospike/main.log" 2>/dev/null)" = 40 ] && ! grep -q "skipped" "$WORK/nospike/main.log"; then
    ok "train_gpt2: no step skipped in 40 steps of the same data without the spike window"
else
    not_ok "train_gpt2: steps skipped without a spike (see $WORK/nospike/main.log)"
fi

# ---------------------------------------------------------------------------------------------
# 5. Resume with the detector on: 24 straight steps == 14 + resume + 10, bit for bit (model, state,
#    main.log from step 14 on). The spike at step 21 is judged against a window that holds steps
#    before the resume, so a resume that lost the detector's history does not skip it (planted).
RESUME_FLAGS=("${SPIKE_FLAGS[@]}" -i "$WORK/spike.bin" -x 24 -n 14)
for spec in "${DETECTOR_TRAINERS[@]}"; do
    IFS='|' read -r name binary tag <<<"$spec"
    A=$WORK/resume_${tag}_a
    B=$WORK/resume_${tag}_b
    C=$WORK/resume_${tag}_planted
    "$binary" "${RESUME_FLAGS[@]}" -o "$A" >"$A.log" 2>&1
    mkdir -p "$B" "$C"
    cp "$A/model_00000014.bin" "$A/state_00000014_00000.bin" "$A/DONE_00000014" "$B/"
    "$binary" "${RESUME_FLAGS[@]}" -y 1 -o "$B" >"$B.log" 2>&1
    awk -F'[: ]' '$2 >= 14' "$A/main.log" >"$A.tail"
    if grep -q "resume: from step 14" "$B.log" && grep -q "^s:20 .*skipped:1" "$B/main.log" &&
        cmp -s "$A/model_00000024.bin" "$B/model_00000024.bin" &&
        cmp -s "$A/state_00000024_00000.bin" "$B/state_00000024_00000.bin" &&
        cmp -s "$A.tail" "$B/main.log"; then
        ok "$name: 24 straight steps == 14 + resume + 10 with the detector on (model, state, main.log bit-identical; the spike skipped in both)"
    else
        not_ok "$name: resume with the detector on differs (see $A.log, $B.log)"
    fi
    # planted: step 14's state file without the history (header[50..52] = 0, the block cut off,
    # and without its checksum, header[254..255] = 0, as a file from llm.c has none)
    cp "$A/model_00000014.bin" "$A/DONE_00000014" "$C/"
    $PY -c "
import sys
raw = bytearray(open(sys.argv[1], 'rb').read())
count = int.from_bytes(raw[200:204], 'little')
raw[200:212] = bytes(12)
raw[1016:1024] = bytes(8)
open(sys.argv[2], 'wb').write(raw[:len(raw) - 8 * count])" "$A/state_00000014_00000.bin" "$C/state_00000014_00000.bin"
    "$binary" "${RESUME_FLAGS[@]}" -y 1 -o "$C" >"$C.log" 2>&1
    if grep -q "resume: from step 14" "$C.log" && [ -s "$C/main.log" ] && ! grep -q "skipped" "$C/main.log" &&
        ! cmp -s "$A/model_00000024.bin" "$C/model_00000024.bin"; then
        ok "$name (planted): resumed without the detector's history, the spike is not skipped and the weights differ"
    else
        not_ok "$name (planted): a resume without the detector's history still matches: the test cannot fail"
    fi
done
# The history follows llm.c's layout (no shuffle: header, m, v), which llm.c's reader stops
# after; a count beyond OUTLIER_WINDOW_MAX is refused naming its slot.
A=$WORK/resume_cpu_a
if $PY -c "
import sys
raw = open(sys.argv[1], 'rb').read()
n, count = int.from_bytes(raw[160:168], 'little'), int.from_bytes(raw[200:204], 'little')
sys.exit(not (count == 8 and len(raw) == 1024 + 8 * n + 8 * count))" "$A/state_00000014_00000.bin"; then
    ok "state file: 8 values per signal in header[50], after llm.c's layout (header, m, v)"
else
    not_ok "state file layout with the detector's history (see $A/state_00000014_00000.bin)"
fi
mkdir -p "$WORK/bad_history"
cp "$A/model_00000014.bin" "$A/DONE_00000014" "$WORK/bad_history/"
$PY -c "
import sys
raw = bytearray(open(sys.argv[1], 'rb').read())
raw[200:204] = (5000).to_bytes(4, 'little')
open(sys.argv[2], 'wb').write(raw)" "$A/state_00000014_00000.bin" "$WORK/bad_history/state_00000014_00000.bin"
expect_error "a state file with a bad outlier-history count is refused" \
    'state_00000014_00000.bin: header\[50\]: expected 0..1024 outlier-detector values, found 5000' \
    "$CPU" "${RESUME_FLAGS[@]}" -y 1 -o "$WORK/bad_history"

# ---------------------------------------------------------------------------------------------
# 6. Flags, and fastmath.h under UBSan (the float-to-int cast of NaN was undefined behaviour).
expect_error "--skip-update-loss < 0 is refused" "bad value -1 for --skip-update-loss" $CPU --skip-update-loss -1
expect_error "--outlier-window 1 is refused" "bad value 1 for --outlier-window: must be in 2..1024" $CPU --outlier-window 1
if $CPU --help | grep -q -- "--skip-update-loss FLOAT .*(default 5)" &&
    $CPU --help | grep -q -- "--skip-update-norm FLOAT .*(default 5)" &&
    $CU16 --help | grep -q -- "--outlier-window INT .*(default 128)"; then
    ok "--help of both trainers lists the detector's flags with their defaults (5, 5, 128)"
else
    not_ok "--help does not list --skip-update-loss/--skip-update-norm/--outlier-window with their defaults"
fi
UBSAN="-std=c11 -O1 -fsanitize=undefined,float-cast-overflow -fno-sanitize-recover=all"
cat >"$WORK/nan_fastmath.c" <<'EOF'
#include <math.h>
#include <stdio.h>
#include "llmc/fastmath.h"
int main(void) {
    volatile float nan_in = NAN;
#ifdef PLANTED
    printf("%d\n", (int)nan_in); // the cast the old exp_approx made
#endif
    float e = exp_approx(nan_in), t = tanh_approx(nan_in);
    return !(isnan(e) && isnan(t));
}
EOF
# shellcheck disable=SC2086
if ! cc $UBSAN -I. -o "$WORK/nan_fastmath" "$WORK/nan_fastmath.c" -lm 2>"$WORK/ubsan_build.log" ||
    ! cc $UBSAN -I. -DPLANTED -o "$WORK/nan_planted" "$WORK/nan_fastmath.c" -lm 2>>"$WORK/ubsan_build.log"; then
    not_ok "fastmath under UBSan: the sanitizer build failed (see $WORK/ubsan_build.log)"
# (its own report on stderr, not in the sanitized pass's report files: env -u UBSAN_OPTIONS)
elif env -u UBSAN_OPTIONS "$WORK/nan_planted" >/dev/null 2>"$WORK/ubsan_planted.log" ||
    ! grep -q "runtime error: nan is outside the range" "$WORK/ubsan_planted.log"; then
    not_ok "fastmath under UBSan: a planted float-to-int cast of NaN is not caught: the check cannot fail"
elif env -u UBSAN_OPTIONS "$WORK/nan_fastmath" 2>"$WORK/ubsan.log"; then
    ok "exp_approx/tanh_approx(NaN) = NaN with no UBSan report (a planted cast of NaN is caught)"
else
    not_ok "exp_approx/tanh_approx on NaN under UBSan: $(head -c 300 "$WORK/ubsan.log")"
fi

checks_summary
