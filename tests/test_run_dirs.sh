#!/usr/bin/env bash
# Output directories (part of `make test`; alone: bash tests/test_run_dirs.sh [DIR]): two trainers
# on one -o (the second stops at once naming the first's PID; the first finishes with the
# checkpoints of a run alone), resume with a changed -e, -b, -t or -d (refused or stated, the loader
# moved to the same token), stale *.tmpPID files removed at start (trainers, tokenizer prepare) and
# a failed write's as it ends, main.log after a resume equal to an uninterrupted run's, a stray DONE
# marker passed over with a warning, main.log write errors, checkpoint housekeeping (-nk, -nm).
# Both trainers (train_gpt2cu on the CPU emulation). DIR holds train_000.bin, train_001.bin and
# val_000.bin (tests/run_tests.sh passes its work directory); without it the script writes its own.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
SHARDS=${1:-}
WORK=${SHARDS:+$SHARDS/run_dirs}
WORK=${WORK:-$ROOT/build/run_dirs_test}
rm -rf "$WORK"
mkdir -p "$WORK"
# ok, not_ok, run, check, expect_error, checks_summary
# shellcheck source=tests/lib_checks.sh
source tests/lib_checks.sh
slot() { # slot FILE N: header slot N (int32) of FILE
    python3 -c 'import struct, sys
print(struct.unpack_from("<i", open(sys.argv[1], "rb").read(1024), 4 * int(sys.argv[2]))[0])' "$1" "$2"
}
# copy_checkpoint FROM STEP TO: only step STEP's model, state and DONE files, into a new TO
copy_checkpoint() {
    local name
    name=$(printf '%08d' "$2")
    rm -rf "$3"
    mkdir -p "$3"
    cp "$1/model_$name.bin" "$1/state_${name}_00000.bin" "$1/DONE_$name" "$3/"
}

make --no-print-directory -s "$BIN/train_gpt2" "$BIN/tokenizer" build/cuda/emu-bf16/train_gpt2cu >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
CPU=$BIN/train_gpt2
CU=./build/cuda/emu-bf16/train_gpt2cu
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=passive # idle OpenMP threads would otherwise starve the emulation's workers
MPI_RUN=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun --oversubscribe)

if [ -z "$SHARDS" ]; then
    SHARDS=$WORK
    PYTHONPATH=tests python3 - "$SHARDS" <<'EOF'
import random, sys
from token_shards import text_like, vocabulary_sample, write_shard
rng = random.Random(1234)
ids = vocabulary_sample(rng)
def shard(path, count):
    write_shard(path, text_like(rng, ids, count))
shard(sys.argv[1] + "/train_000.bin", 6000)
shard(sys.argv[1] + "/train_001.bin", 3000)
shard(sys.argv[1] + "/val_000.bin", 2000)
EOF
fi
TRAIN="$SHARDS/train_00*.bin"
FLAGS=(-e d2 --seed 7 -i "$TRAIN" -j "$SHARDS/val_000.bin" -b 2 -t 32 -l 1e-3 -v 3 -m 2 -s 0)

# ---------------------------------------------------------------------------------------------
# 1. Two trainers on one directory. The first is stopped (SIGSTOP) once it holds the lock, so the
#    others surely meet it; then it goes on and must end with a lone run's checkpoints.
SOLO=$WORK/solo
SHARED=$WORK/shared
run solo $CPU "${FLAGS[@]}" -x 8 -n 2 -o "$SOLO" || not_ok "a lone run failed (see $WORK/solo.log)"
$CPU "${FLAGS[@]}" -x 8 -n 2 -o "$SHARED" >"$WORK/first.log" 2>&1 &
first=$!
for _ in $(seq 1 600); do
    grep -q "^$first " "$SHARED/.lock" 2>/dev/null && break
    sleep 0.05
done
kill -STOP "$first" 2>/dev/null
if ! grep -q "^$first " "$SHARED/.lock" 2>/dev/null || ! kill -0 "$first" 2>/dev/null; then
    not_ok "two trainers: the first (PID $first) did not write its PID into $SHARED/.lock while running"
fi
expect_error "a second train_gpt2 on the same -o stops, naming the first's PID" \
    "$SHARED/.lock: the output directory .* is in use by another trainer, PID $first on " \
    $CPU "${FLAGS[@]}" -x 8 -n 2 -o "$SHARED"
if [ -s "$EXPECT_ERROR_LOG.out" ]; then
    not_ok "the second trainer did something before it stopped: $(head -c 200 "$EXPECT_ERROR_LOG.out")"
else
    ok "the second trainer stopped at once (nothing on stdout: no model built, no file read)"
fi
expect_error "a second train_gpt2 resuming (-y 1) on the same -o stops, naming the first's PID" \
    "in use by another trainer, PID $first on " $CPU "${FLAGS[@]}" -x 8 -n 2 -o "$SHARED" -y 1
expect_error "a second train_gpt2cu (emulated) on the same -o stops, naming the first's PID" \
    "in use by another trainer, PID $first on " $CU "${FLAGS[@]}" -x 8 -n 2 -o "$SHARED"
if command -v mpirun >/dev/null; then
    # rank 0 alone takes the lock: one error line, and the job ends
    if run second_mpi "${MPI_RUN[@]}" -np 2 $CU "${FLAGS[@]}" -x 8 -n 2 -o "$SHARED"; then
        not_ok "a second train_gpt2cu on 2 ranks ran on a locked -o"
    elif [ "$(grep -c "^error: .*in use by another trainer, PID $first on " "$WORK/second_mpi.log")" -eq 1 ]; then
        ok "a second train_gpt2cu on 2 ranks (mpirun, emulated) ends: its rank 0 names PID $first, once"
    else
        not_ok "a second 2-rank run on a locked -o: no single error line naming PID $first (see $WORK/second_mpi.log)"
    fi
else
    not_ok "mpirun not found: the 2-rank lock is not checked (Debian: openmpi-bin)"
fi
kill -CONT "$first" 2>/dev/null
wait "$first"
first_status=$?
consistent=1
for done_file in "$SHARED"/DONE_*; do
    name=${done_file##*/DONE_}
    for file in "model_$name.bin" "state_${name}_00000.bin"; do
        cmp -s "$SOLO/$file" "$SHARED/$file" || consistent=0
    done
done
if [ "$first_status" -eq 0 ] && [ "$consistent" -eq 1 ] && [ -e "$SHARED/DONE_00000008" ] &&
    cmp -s "$SOLO/main.log" "$SHARED/main.log"; then
    ok "the first trainer finished (exit 0): each DONE step's model and state, and main.log, equal a lone run's"
else
    not_ok "the first trainer after the others tried its -o: exit $first_status, checkpoints equal to a lone run's: $consistent (see $WORK/first.log)"
fi
if run after_first $CPU "${FLAGS[@]}" -x 9 -n 2 -o "$SHARED" -y 1 && grep -q "resume: from step 8" "$WORK/after_first.log"; then
    ok "the lock ends with its holder: a trainer on the same -o afterwards resumes from step 8"
else
    not_ok "a trainer after the first one ended (see $WORK/after_first.log)"
fi

# ---------------------------------------------------------------------------------------------
# 2. Resume with changed flags. BASE has checkpoints at step 2 (the loader at token 128: a
#    multiple of 64 and 128) and step 3 (token 192: not a multiple of 128).
BASE=$WORK/base
run base $CPU "${FLAGS[@]}" -x 3 -n 2 -o "$BASE" || not_ok "base run (see $WORK/base.log)"
for trainer in CPU CU; do
    copy_checkpoint "$BASE" 2 "$WORK/e_$trainer"
    expect_error "$trainer: resume with another -e is refused, naming both" \
        "state_00000002_00000.bin: -e (header\[128..\]): expected 'd2', the model this run started from, found 'd4'" \
        ${!trainer} "${FLAGS[@]}" -e d4 -x 4 -o "$WORK/e_$trainer" -y 1
done
# resume_note NAME TRAINER WHAT NOTE SLOT VALUE FLAGS...: TRAINER resumes a copy of BASE's step-2
# checkpoint for one step with FLAGS; ok if it prints a line NOTE (a grep pattern) and its step-3
# state holds VALUE in header slot SLOT.
resume_note() {
    local name=$1 trainer=$2 what=$3 note=$4 slot_index=$5 value=$6
    shift 6
    copy_checkpoint "$BASE" 2 "$WORK/$name"
    if run "$name" ${!trainer} "${FLAGS[@]}" "$@" -x 3 -o "$WORK/$name" -y 1 &&
        grep -q "^$note" "$WORK/$name.log" &&
        [ "$(slot "$WORK/$name/state_00000003_00000.bin" "$slot_index")" = "$value" ]; then
        ok "$trainer: $what"
    else
        not_ok "$trainer: $what (see $WORK/$name.log)"
    fi
}
# -b 2 -> 4 with the same -d: the loader moves from sample 2 of 64 tokens to sample 1 of 128 (the
# same token), so the state after one more step holds sample 2 (slot 32; a reread of "2" in the
# new units would give 3); the losses equal those of the same data as -b 2 x 2 micro-steps
for trainer in CPU CU; do
    resume_note "b4_$trainer" $trainer "resume with -b 4 (was 2) moves the loader to the same token and says so; the next state holds sample 2" \
        "resume: -b changed from 2 (header\[101\]) to 4: the loader continues exactly where it stopped, at token 128 of .*train_000.bin (sample 1 of 128 tokens, was 2 of 64)" \
        32 2 -b 4 -d 128
done
copy_checkpoint "$BASE" 2 "$WORK/b2d128"
copy_checkpoint "$BASE" 2 "$WORK/b4d128"
summary=""
if run b2d128 $CPU "${FLAGS[@]}" -b 2 -d 128 -x 5 -o "$WORK/b2d128" -y 1 &&
    run b4d128 $CPU "${FLAGS[@]}" -b 4 -d 128 -x 5 -o "$WORK/b4d128" -y 1 &&
    summary=$(python3 - "$WORK/b2d128/main.log" "$WORK/b4d128/main.log" <<'EOF'
import sys
def read(path):
    return {l.split()[0]: float(l.split()[1][4:]) for l in open(path) if " trl:" in l}
a, b = read(sys.argv[1]), read(sys.argv[2])
# means of 128 losses summed in other orders, 3 steps on: within tests/run_tests.sh's PARITY_TOL
worst = max(abs(a[k] - b[k]) for k in a) if a and a.keys() == b.keys() else float("inf")
print("%d steps, max |diff| %.1e (tolerance 1e-4)" % (len(a), worst))
sys.exit(0 if worst <= 1e-4 else 1)
EOF
); then
    ok "resumed with -b 4 -d 128, the losses equal -b 2 -d 128's (the same tokens per step): $summary"
else
    not_ok "resumed with -b 4 -d 128 vs -b 2 -d 128: $summary (see $WORK/b2d128.log, b4d128.log)"
fi
resume_note t16 CPU "resume with -t 16 (was 32) moves the loader to the same token (sample 4 of 32 tokens) and says so" \
    "resume: -t changed from 32 (header\[102\]) to 16: the loader continues exactly where it stopped, at token 128 of .*(sample 4 of 32 tokens, was 2 of 64)" \
    32 5 -t 16
copy_checkpoint "$BASE" 3 "$WORK/b4_inexact"
expect_error "resume with -b 4 where the position is not a multiple of 4*32 is refused, naming -b and both values" \
    "state_00000003_00000.bin: -b changed from 2 (header\[101\]) to 4: the loader stopped at token 192 of .*not a multiple of this run's 128 tokens per sample (processes\*B\*T): resume with -b 2 -t 32" \
    $CPU "${FLAGS[@]}" -b 4 -x 4 -o "$WORK/b4_inexact" -y 1
run base_shuffled $CPU "${FLAGS[@]}" --shuffle 1 -x 2 -n 2 -o "$WORK/base_shuffled" ||
    not_ok "shuffled base run (see $WORK/base_shuffled.log)"
expect_error "resume of a shuffled run with -t 16 is refused, naming -t and both values" \
    "-t changed from 32 (header\[102\]) to 16: the shuffled order .* resume with -b 2 -t 32" \
    $CPU "${FLAGS[@]}" --shuffle 1 -t 16 -x 3 -o "$WORK/base_shuffled" -y 1
resume_note d128 CPU "resume with -d 128 (was 64) states what changes; the next state records -d 128" \
    "resume: -d 128, the checkpoint's was 64 (header\[103\]): from step 2 on each step takes 128 tokens (2 micro-step(s) of processes\*B\*T = 64) instead of 64" \
    103 128 -d 128
copy_checkpoint "$BASE" 2 "$WORK/same"
if run same $CPU "${FLAGS[@]}" -x 3 -o "$WORK/same" -y 1 && ! grep -q "^resume: -" "$WORK/same.log" &&
    [ "$(slot "$WORK/same/state_00000003_00000.bin" 100)" = 2 ]; then
    ok "resume with the same flags: no note about any flag; the state holds the run record (slot 100 = 2)"
else
    not_ok "resume with the same flags (see $WORK/same.log)"
fi

# ---------------------------------------------------------------------------------------------
# 3. Temporary files: a dead process's are removed at start, a live one's kept; a failed write
#    removes its own (a file size limit makes the model write fail: EFBIG, SIGXFSZ ignored).
dead=999999
while kill -0 "$dead" 2>/dev/null; do dead=$((dead - 1)); done
copy_checkpoint "$BASE" 2 "$WORK/stale"
head -c 100000 /dev/urandom >"$WORK/stale/model_00000001.bin.tmp$dead"
head -c 100 /dev/urandom >"$WORK/stale/state_00000001_00000.bin.tmp$$"
head -c 100 /dev/urandom >"$WORK/stale/notes.tmpfile"
if run stale $CPU "${FLAGS[@]}" -x 3 -o "$WORK/stale" -y 1 &&
    [ ! -e "$WORK/stale/model_00000001.bin.tmp$dead" ] &&
    [ -e "$WORK/stale/state_00000001_00000.bin.tmp$$" ] && [ -e "$WORK/stale/notes.tmpfile" ] &&
    grep -q "removed 1 temporary file(s) of writes whose process died (0.1 MB)" "$WORK/stale.log"; then
    ok "stale model_00000001.bin.tmp$dead (dead PID) removed at start and reported; a live PID's and notes.tmpfile kept"
else
    not_ok "stale temporary files (see $WORK/stale.log; left: $(cd "$WORK/stale" && echo *))"
fi
# tokenizer prepare cleans its output directory the same way
PREP=$WORK/prepare
mkdir -p "$PREP"
head -c 100000 /dev/urandom >"$PREP/.data_train_000000.bin.tmp$dead"
head -c 100 /dev/urandom >"$PREP/.data_val_000000.bin.tmp$$"
for i in $(seq 1 200); do echo "Line $i of a small text to prepare, with $((i * 7919 % 1000)) in it."; done >"$WORK/text.txt"
if run prepare "$BIN/tokenizer" prepare -i "$WORK/text.txt" -o "$PREP" --val-fraction 0 &&
    [ ! -e "$PREP/.data_train_000000.bin.tmp$dead" ] && [ -e "$PREP/.data_val_000000.bin.tmp$$" ] &&
    [ -e "$PREP/data_train_000000.bin" ] && grep -q "removed 1 temporary file(s)" "$WORK/prepare.log"; then
    ok "tokenizer prepare removes a dead PID's temporary file in -o, keeps a live one's"
else
    not_ok "tokenizer prepare and stale temporary files (see $WORK/prepare.log; left: $(cd "$PREP" && echo .* *))"
fi
for trainer in CPU CU; do
    rm -rf "$WORK/efbig_$trainer"
    expect_error "$trainer: a checkpoint write that fails (file size limit) ends the run naming the file" \
        "efbig_$trainer/model_00000001.bin.*: write failed: File too large" \
        bash -c 'trap "" XFSZ; ulimit -f 2000; exec "$@"' _ ${!trainer} "${FLAGS[@]}" -x 1 -o "$WORK/efbig_$trainer"
    left=$(find "$WORK/efbig_$trainer" -name "*.tmp*")
    if [ -z "$left" ]; then
        ok "$trainer: the failed write's temporary file is removed as the run ends"
    else
        not_ok "$trainer: a failed write left $left"
    fi
done

# ---------------------------------------------------------------------------------------------
# 4. main.log after a resume: the steps run again are logged once, as in an uninterrupted run.
#    LOGDIR is the lone run stopped after its step-6 checkpoint (its step-8 files gone, main.log
#    through step 8, and an unfinished line as a kill leaves it).
for trainer in CPU CU; do
    straight=$SOLO
    if [ "$trainer" = CU ]; then
        straight=$WORK/solo_cu
        run solo_cu $CU "${FLAGS[@]}" -x 8 -n 2 -o "$straight" || not_ok "CU: a lone run (see $WORK/solo_cu.log)"
    fi
    logdir=$WORK/log_$trainer
    rm -rf "$logdir"
    cp -r "$straight" "$logdir"
    rm "$logdir/DONE_00000008" "$logdir/model_00000008.bin" "$logdir/state_00000008_00000.bin"
    printf 's:8 trl:10.4' >>"$logdir/main.log"
    if run "log_$trainer" ${!trainer} "${FLAGS[@]}" -x 8 -n 2 -o "$logdir" -y 1 &&
        grep -q "resume: from step 6" "$WORK/log_$trainer.log" &&
        [ -z "$(awk '{print $1, substr($2, 1, 3)}' "$logdir/main.log" | sort | uniq -d)" ] &&
        cmp -s "$straight/main.log" "$logdir/main.log"; then
        ok "$trainer: main.log after a resume from step 6 has no step twice and equals the uninterrupted run's"
    else
        not_ok "$trainer: main.log after a resume differs from the uninterrupted run's (see $WORK/log_$trainer.log)"
    fi
done

# ---------------------------------------------------------------------------------------------
# 5. A stray DONE marker (no model or state file beside it) is passed over with a warning.
STRAY=$WORK/stray
rm -rf "$STRAY"
cp -r "$SOLO" "$STRAY"
rm "$STRAY/model_00000008.bin" "$STRAY/state_00000006_00000.bin"
touch "$STRAY/DONE_00000010"
if run stray $CPU "${FLAGS[@]}" -x 8 -n 2 -o "$STRAY" -y 1 &&
    grep -q "^warning: .*DONE_00000010 marks step 10 complete, but .*model_00000010.bin is missing: falling back" "$WORK/stray.log" &&
    grep -q "^warning: .*DONE_00000008 marks step 8 complete, but .*model_00000008.bin is missing: falling back" "$WORK/stray.log" &&
    grep -q "^warning: .*DONE_00000006 marks step 6 complete, but .*state_00000006_00000.bin is missing: falling back" "$WORK/stray.log" &&
    grep -q "resume: from step 4" "$WORK/stray.log" &&
    cmp -s "$SOLO/model_00000008.bin" "$STRAY/model_00000008.bin"; then
    ok "stray DONE_10, DONE_8 without its model, DONE_6 without its state: each warned, resumed from step 4 to the lone run's weights"
else
    not_ok "stray DONE markers (see $WORK/stray.log)"
fi

# ---------------------------------------------------------------------------------------------
# 6. main.log that cannot be written (/dev/full): one error line, exit 1.
for trainer in CPU CU; do
    rm -rf "$WORK/full_$trainer"
    mkdir -p "$WORK/full_$trainer"
    ln -s /dev/full "$WORK/full_$trainer/main.log"
    expect_error "$trainer: a main.log write error ends the run naming it" \
        "full_$trainer/main.log: write failed: No space left on device" \
        ${!trainer} "${FLAGS[@]}" -x 2 -o "$WORK/full_$trainer"
done

# ---------------------------------------------------------------------------------------------
# 7. Checkpoint housekeeping (llm.c's -nk, -nm): after each checkpoint only the newest -nk complete
#    ones stay, and every step that is a multiple of -nm; what is not our checkpoint file (near-miss
#    names, a directory with a checkpoint's name) is never touched. llm.c's arithmetic
#    (delete step - nk*n unless a multiple of nm) leaves the same steps on these runs.
# listing DIR: the file names of DIR, sorted, on one line; the end-of-run report.md and loss.svg
# (tests/test_report.sh checks them) and tokenizer.bin (kept when the default --tokenizer exists,
# as after scripts/quickstart.sh; tests/test_chat.sh checks it) are left out: not pruning business
listing() {
    (cd "$1" && find . -mindepth 1 -maxdepth 1 ! -name report.md ! -name loss.svg ! -name tokenizer.bin \
        -printf '%f\n' |
        LC_ALL=C sort | tr '\n' ' ')
}
# checkpoint_names STEP...: the file names of those steps' checkpoints (one process)
checkpoint_names() {
    local step
    for step in "$@"; do
        printf 'DONE_%08d\nmodel_%08d.bin\nstate_%08d_00000.bin\n' "$step" "$step" "$step"
    done
}
DECOYS=(notes.txt model_2.bin DONE_00000002x model_00000002.bin.bak state_00000002_0.bin
    state_00000002_00000.bin.old DONE_00000002.txt)
for trainer in CPU CU; do
    dir=$WORK/keep_$trainer
    rm -rf "$dir"
    mkdir -p "$dir"
    for decoy in "${DECOYS[@]}"; do echo "$decoy" >"$dir/$decoy"; done
    if [ $trainer = CPU ]; then steps=10 kept="4 8 9 10"; else steps=5 kept="2 4 5"; fi
    major=$([ $trainer = CPU ] && echo 4 || echo 2)
    run keep_$trainer ${!trainer} "${FLAGS[@]}" -x $steps -n 1 -nk 2 -nm $major -o "$dir" ||
        not_ok "$trainer: -nk run failed (see $WORK/keep_$trainer.log)"
    # shellcheck disable=SC2086 # kept is a list of steps
    want=$( (checkpoint_names $kept; printf '%s\n' "${DECOYS[@]}" .lock main.log) |
        LC_ALL=C sort | tr '\n' ' ')
    got=$(listing "$dir")
    if [ "$got" = "$want" ]; then
        ok "$trainer: -x $steps -n 1 -nk 2 -nm $major keeps steps $kept and every other file"
    else
        not_ok "$trainer: -nk 2 -nm $major left [$got], expected [$want]"
    fi
done
# a resumed run goes on deleting; the first run's checkpoints count among the newest. A directory
# with a checkpoint file's name (rank 1's state of step 9, which goes) is not a file of ours.
mkdir -p "$WORK/keep_CPU/state_00000009_00001.bin"
run keep_resume $CPU "${FLAGS[@]}" -x 12 -n 1 -nk 2 -nm 4 -o "$WORK/keep_CPU" -y 1 ||
    not_ok "resume with -nk failed (see $WORK/keep_resume.log)"
want=$( (checkpoint_names 4 8 11 12; printf '%s\n' "${DECOYS[@]}" .lock main.log state_00000009_00001.bin) |
    LC_ALL=C sort | tr '\n' ' ')
got=$(listing "$WORK/keep_CPU")
[ "$got" = "$want" ] && ok "resumed to step 12 with -nk 2 -nm 4: steps 4 8 11 12 remain" ||
    not_ok "resumed with -nk 2 -nm 4: left [$got], expected [$want]"
# without -nk nothing is deleted, -nm alone included
run keep_all $CPU "${FLAGS[@]}" -x 3 -n 1 -nm 2 -o "$WORK/keep_all" ||
    not_ok "run without -nk failed (see $WORK/keep_all.log)"
want=$( (checkpoint_names 1 2 3; printf '%s\n' .lock main.log) | LC_ALL=C sort | tr '\n' ' ')
[ "$(listing "$WORK/keep_all")" = "$want" ] && ok "without -nk every checkpoint stays" ||
    not_ok "without -nk: left [$(listing "$WORK/keep_all")]"
expect_error "-nk -1 is refused" "bad value -1 for -nk: must be >= 0" \
    $CPU "${FLAGS[@]}" -x 2 -nk -1 -o "$WORK/keep_bad"
expect_error "-nk without -o is refused" "-nk needs -o DIR" $CPU "${FLAGS[@]}" -x 2 -nk 2

# ---------------------------------------------------------------------------------------------
checks_summary
