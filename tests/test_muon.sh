#!/usr/bin/env bash
# Muon tests (section 18 of tests/run_tests.sh; alone: bash tests/test_muon.sh): test_gpt2 checks 10
# Muon steps against scripts/train_gpt2.py --optimizer muon (two GPT-2 shapes and a llama with GQA
# and QK-norm, non-default settings, weight decay, clipping), and fails on a reference with a
# planted bug (a 1% error in the quintic's a, no Nesterov term); train_gpt2 --optimizer muon on
# shards reproduces the reference's losses (warmup, cosine, accumulation), a 5% Muon learning-rate
# error does not; resume continues bit for bit and is refused with the other optimizer; 1 and 2
# threads agree bit for bit; bad flags and fields; the emulated CUDA trainer: test_gpt2cu (fp32,
# bf16) against the same references and the planted bug, train_gpt2cu on the shards, 2 ranks
# (ZeRO-0) against 1, 2 ranks with -z 1 (each Muon matrix on one rank) == -z 0 bit for bit (fp32,
# bf16, a bf16 llama), a planted skipped broadcast, -z 1 resume bit for bit and refused with 1 rank
# or -z 0; 4 ranks with -z 1 == -z 0 where a rank's range is empty or holds no Muon matrix (fp32,
# bf16, a planted skipped broadcast, resume). Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
WORK=${LLMC_MUON_TEST_DIR:-$ROOT/build/muon_test}
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"

CU=./build/cuda/emu-fp32/train_gpt2cu
CU_TEST=./build/cuda/emu-fp32/test_gpt2cu
CU16=./build/cuda/emu-bf16/train_gpt2cu
CU16_TEST=./build/cuda/emu-bf16/test_gpt2cu
make --no-print-directory -s "$BIN/train_gpt2" "$BIN/test_gpt2" "$CU" "$CU16" "$CU_TEST" "$CU16_TEST" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
PY=""
for candidate in "${PYTHON:-}" /usr/bin/python3 python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1; then PY=$candidate; break; fi
done
[ -n "$PY" ] || { echo "error: no python with torch"; echo "0 passed, 1 failed"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=passive # spinning OpenMP threads cost more than these small models' work
REF="$PY scripts/train_gpt2.py --threads 1" # a second thread slows torch down at these sizes
SMALL="L=2,C=64,NH=4,V=1000,maxT=64" # qkvw and fcw are tall (transposed), fcprojw wide
MUON_WD="-c 0.1 -l 1e-3 --muon-lr 0.01 --muon-momentum 0.9 --muon-ns-steps 4"

# ---------------------------------------------------------------------------------------------
# 1. 10 Muon steps on one batch against PyTorch (tolerance: test_gpt2.c, muon_step_tol)
#    name | descriptor | seed | B | T | extra reference flags
CONFIGS=(
    "small_wd_clip|$SMALL|3|3|24|$MUON_WD --grad-clip 0.5"
    "l3c96_defaults|L=3,C=96,NH=3,V=1000,maxT=64|2|1|37|"
    "llama_gqa_qknorm|arch=llama,L=2,C=64,NH=4,KV=2,V=300,maxT=64,qknorm=1|5|2|21|"
)
for config in "${CONFIGS[@]}"; do
    IFS='|' read -r name descriptor seed B T extra <<<"$config"
    # shellcheck disable=SC2086
    if ! run "ref_$name" $REF --model "$descriptor" --seed "$seed" -b "$B" -t "$T" --steps 10 \
        --optimizer muon $extra --write-model "$WORK/$name.bin" --write-state "$WORK/${name}_state.bin"; then
        not_ok "reference Muon dump $name (see $WORK/ref_$name.log)"
        continue
    fi
    if run "test_$name" $BIN/test_gpt2 -e "$WORK/$name.bin" -s "$WORK/${name}_state.bin" &&
        grep -q "with Muon" "$WORK/test_$name.log"; then
        ok "test_gpt2 $name: 10 Muon steps match PyTorch ($(grep -c 'step .* ok$' "$WORK/test_$name.log") step losses)"
    else
        not_ok "test_gpt2 $name (see $WORK/test_$name.log)"
    fi
done

# planted: a reference with a bug in Muon must fail test_gpt2's step losses
for plant in coef no-nesterov; do
    name=planted_$plant
    # shellcheck disable=SC2086
    if ! run "ref_$name" $REF --model "$SMALL" --seed 3 -b 3 -t 24 --steps 10 --optimizer muon \
        $MUON_WD --grad-clip 0.5 --muon-plant "$plant" --write-state "$WORK/${name}_state.bin"; then
        not_ok "reference dump $name (see $WORK/ref_$name.log)"
        continue
    fi
    run "test_$name" $BIN/test_gpt2 -e "$WORK/small_wd_clip.bin" -s "$WORK/${name}_state.bin"
    status=$?
    bad=$(grep -c 'step .* FAIL$' "$WORK/test_$name.log")
    if [ "$status" -eq 1 ] && [ "$bad" -gt 0 ]; then
        ok "(planted) Muon with $plant fails test_gpt2: $bad of 10 step losses out of tolerance"
    else
        not_ok "a reference Muon with $plant passes test_gpt2 (exit $status, see $WORK/test_$name.log)"
    fi
done

# ---------------------------------------------------------------------------------------------
# 2. train_gpt2 --optimizer muon on shards reproduces the reference's losses
$PY - "$WORK" <<'EOF'
import random, struct, sys
work = sys.argv[1]
def shard(path, tokens):
    header = [0] * 256
    header[0:3] = [20240520, 1, len(tokens)]
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack("<%dH" % len(tokens), *tokens))
rng = random.Random(4321)
ids = [rng.randrange(1000) for _ in range(200)]  # skewed, text-like unigrams
def draw(n):
    return [ids[min(int(rng.expovariate(0.05)), 199)] for _ in range(n)]
shard(work + "/train_000.bin", draw(3000))
shard(work + "/train_001.bin", draw(2000))
shard(work + "/val_000.bin", draw(1000))
EOF
# compare_losses C_LOG(main.log) PY_LOSSES RELATIVE_TOLERANCE
compare_losses() {
    $PY - "$1" "$2" "$3" <<'EOF'
import sys
c = {}
for line in open(sys.argv[1]):
    if " trl:" in line:
        c[int(line.split()[0][2:])] = float(line.split()[1][4:])
ref = {int(s): float(v) for s, v in (l.split() for l in open(sys.argv[2]) if l.strip())}
tol = float(sys.argv[3])
worst = max(abs(c[s] - ref[s]) / abs(ref[s]) for s in ref)
print("steps %d, max relative |diff| %.2e (tolerance %g)" % (len(ref), worst, tol))
sys.exit(0 if len(c) == len(ref) and worst <= tol else 1)
EOF
}
# test_gpt2.c's muon_step_tol, for the same reason (2e-4 relative: the Newton-Schulz worst case
# over 10 steps); main.log's 6 decimals add 1e-7 relative. A 5% error in --muon-lr moves these
# losses by 5e-4 relative (planted below).
MUON_PARITY_TOL=2e-4
TRAIN_FLAGS="-b 2 -t 24 -d 96 -u 2 -q 0.1 -k cosine $MUON_WD"
MODEL=$WORK/small_wd_clip.bin
# shellcheck disable=SC2086
if run train_shards $BIN/train_gpt2 -e "$MODEL" -i "$WORK/train_00*.bin" -v 0 -s 0 -o "$WORK/shards" \
    -x 10 --optimizer muon $TRAIN_FLAGS &&
    run ref_shards $REF --mode train --model "$MODEL" --input "$WORK/train_00*.bin" --steps 10 \
        --optimizer muon $TRAIN_FLAGS --losses "$WORK/shards.ref"; then
    if summary=$(compare_losses "$WORK/shards/main.log" "$WORK/shards.ref" "$MUON_PARITY_TOL"); then
        ok "train_gpt2 --optimizer muon on shards (warmup, cosine, 2 micro-steps) matches PyTorch: $summary"
    else
        not_ok "train_gpt2 --optimizer muon on shards vs PyTorch: $summary"
    fi
    # shellcheck disable=SC2086
    if ! run train_planted $BIN/train_gpt2 -e "$MODEL" -i "$WORK/train_00*.bin" -v 0 -s 0 -x 10 \
        --optimizer muon $TRAIN_FLAGS --muon-lr 0.0105 -o "$WORK/planted_lr"; then
        not_ok "train_gpt2 with a 5% Muon lr error did not run (see $WORK/train_planted.log)"
    elif summary=$(compare_losses "$WORK/planted_lr/main.log" "$WORK/shards.ref" "$MUON_PARITY_TOL"); then
        not_ok "a 5% Muon learning-rate error passes the comparison: $summary"
    else
        ok "(planted) a 5% Muon learning-rate error fails the comparison: $summary"
    fi
else
    not_ok "train_gpt2 / reference on shards did not run (see $WORK/train_shards.log, ref_shards.log)"
fi

# ---------------------------------------------------------------------------------------------
# 3. Checkpoints: resume bit for bit; the other optimizer is refused; threads
COMMON=(-e "$SMALL" --seed 7 -i "$WORK/train_00*.bin" -j "$WORK/val_000.bin" -b 2 -t 24 -x 6 -n 3 -u 2 -v 3 -m 2 -s 0)
A=$WORK/resume_a
B=$WORK/resume_b
if run resume_a $BIN/train_gpt2 "${COMMON[@]}" --optimizer muon -o "$A"; then
    mkdir -p "$B"
    cp "$A/model_00000003.bin" "$A/state_00000003_00000.bin" "$A/DONE_00000003" "$B/"
    if run resume_b $BIN/train_gpt2 "${COMMON[@]}" --optimizer muon -o "$B" -y 1 &&
        cmp -s "$A/model_00000006.bin" "$B/model_00000006.bin" &&
        cmp -s "$A/state_00000006_00000.bin" "$B/state_00000006_00000.bin" &&
        grep -q "resume: from step 3" "$WORK/resume_b.log"; then
        ok "muon: 6 straight steps == 3 steps + resume + 3 steps (model and state bit-identical)"
    else
        not_ok "muon: resumed run differs (see $WORK/resume_a.log, resume_b.log)"
    fi
    rm -rf "$B"
    mkdir -p "$B"
    cp "$A/model_00000003.bin" "$A/state_00000003_00000.bin" "$A/DONE_00000003" "$B/"
    expect_error "resume a Muon checkpoint with AdamW" "state_00000003_00000.bin: optimizer (header\[105\]).*muon.*adamw" \
        $BIN/train_gpt2 "${COMMON[@]}" -o "$B" -y 1
    # a record naming no optimizer we know (slot 105 = 7) is refused before anything is read
    rm -rf "$B"
    mkdir -p "$B"
    cp "$A/model_00000003.bin" "$A/DONE_00000003" "$B/"
    $PY -c "
import struct, sys
data = bytearray(open(sys.argv[1], 'rb').read())
struct.pack_into('<i', data, 105 * 4, 7)
open(sys.argv[2], 'wb').write(data)" "$A/state_00000003_00000.bin" "$B/state_00000003_00000.bin"
    expect_error "state file with optimizer 7" "state_00000003_00000.bin: optimizer 7 in header\[105\]" \
        $BIN/train_gpt2 "${COMMON[@]}" --optimizer muon -o "$B" -y 1
else
    not_ok "muon: straight run (see $WORK/resume_a.log)"
fi
ADAMW_DIR=$WORK/adamw
if run adamw_run $BIN/train_gpt2 "${COMMON[@]}" -x 3 -o "$ADAMW_DIR"; then
    expect_error "resume an AdamW checkpoint with Muon" "state_00000003_00000.bin: optimizer (header\[105\]).*adamw.*muon" \
        $BIN/train_gpt2 "${COMMON[@]}" --optimizer muon -o "$ADAMW_DIR" -y 1
else
    not_ok "adamw run for the resume check (see $WORK/adamw_run.log)"
fi
OMP_NUM_THREADS=1 run threads1 $BIN/train_gpt2 "${COMMON[@]}" -n 0 -x 2 -v 0 --optimizer muon -o "$WORK/threads1"
OMP_NUM_THREADS=2 run threads2 $BIN/train_gpt2 "${COMMON[@]}" -n 0 -x 2 -v 0 --optimizer muon -o "$WORK/threads2"
if [ -f "$WORK/threads1/model_00000002.bin" ] &&
    cmp -s "$WORK/threads1/model_00000002.bin" "$WORK/threads2/model_00000002.bin"; then
    ok "muon: 1 and 2 threads give bit-identical weights after 2 steps"
else
    not_ok "muon: the thread count changes results (see $WORK/threads1.log, threads2.log)"
fi

# ---------------------------------------------------------------------------------------------
# 4. Bad flags, and the CUDA trainer (emulated) refuses Muon for now
expect_error "--optimizer sgd" "--optimizer.*adamw or muon" $BIN/train_gpt2 --optimizer sgd
expect_error "--muon-momentum 1" "--muon-momentum" $BIN/train_gpt2 --optimizer muon --muon-momentum 1
expect_error "--muon-ns-steps 0" "--muon-ns-steps" $BIN/train_gpt2 --optimizer muon --muon-ns-steps 0
expect_error "--muon-lr -1" "--muon-lr" $BIN/train_gpt2 --optimizer muon --muon-lr -1
# debug states with a bad optimizer field or Muon settings
patch_debug_state() { # patch_debug_state OUT SLOT VALUE: the small reference with one slot changed
    $PY -c "
import struct, sys
data = bytearray(open(sys.argv[1], 'rb').read())
struct.pack_into('<i', data, int(sys.argv[3]) * 4, int(sys.argv[4]))
open(sys.argv[2], 'wb').write(data)" "$WORK/small_wd_clip_state.bin" "$1" "$2" "$3"
}
patch_debug_state "$WORK/bad_optimizer.bin" 12 5
expect_error "debug state with optimizer 5" "bad_optimizer.bin: bad optimizer 5 in header\[12\]" \
    $BIN/test_gpt2 -e "$WORK/small_wd_clip.bin" -s "$WORK/bad_optimizer.bin"
patch_debug_state "$WORK/bad_ns_steps.bin" 15 0
expect_error "debug state with 0 Newton-Schulz steps" "bad_ns_steps.bin: bad Muon settings in header\[13..15\]" \
    $BIN/test_gpt2 -e "$WORK/small_wd_clip.bin" -s "$WORK/bad_ns_steps.bin"

# ---------------------------------------------------------------------------------------------
# 5. The CUDA trainer (emulated): test_gpt2cu's Muon steps against PyTorch (FP32 at test_gpt2's
#    2e-4, BF16 at its AdamW step tolerance 2e-3: bf16 weights and activations dominate), the
#    planted bug, train_gpt2cu on the shards, 2 ranks (ZeRO-0) == 1 rank, and ZeRO-1 with Muon.
# (--layers 0: the per-layer comparison with train_gpt2.c is section 8's; here only the steps)
if run cu_test "$CU_TEST" -e "$WORK/small_wd_clip.bin" -s "$WORK/small_wd_clip_state.bin" -o "$WORK/cu" \
    --layers 0 && grep -q "^Muon for" "$WORK/cu_test.log"; then
    ok "test_gpt2cu (fp32, emulated) small_wd_clip: 10 Muon steps match PyTorch, save + reload bit for bit"
else
    not_ok "test_gpt2cu (fp32, emulated) small_wd_clip (see $WORK/cu_test.log)"
fi
if run cu16_test "$CU16_TEST" -e "$WORK/small_wd_clip.bin" -s "$WORK/small_wd_clip_state.bin" -o "$WORK/cu16" \
    --layers 0 &&
    grep -q "^Muon for" "$WORK/cu16_test.log"; then
    ok "test_gpt2cu (bf16, emulated) small_wd_clip: 10 Muon steps match PyTorch"
else
    not_ok "test_gpt2cu (bf16, emulated) small_wd_clip (see $WORK/cu16_test.log)"
fi
run cu_test_planted "$CU_TEST" -e "$WORK/small_wd_clip.bin" -s "$WORK/planted_coef_state.bin" -o "$WORK/cu_planted" \
    --layers 0
status=$?
bad=$(grep -c 'step .* FAIL$' "$WORK/cu_test_planted.log")
if [ "$status" -eq 1 ] && [ "$bad" -gt 0 ]; then
    ok "(planted) test_gpt2cu (fp32, emulated) fails the coef-planted Muon: $bad step losses out of tolerance"
else
    not_ok "test_gpt2cu passes a reference Muon with a wrong coefficient (exit $status, see $WORK/cu_test_planted.log)"
fi
# shellcheck disable=SC2086
if run cu_shards "$CU" -e "$MODEL" -i "$WORK/train_00*.bin" -v 0 -s 0 -o "$WORK/cu_shards" -x 10 \
    --optimizer muon $TRAIN_FLAGS &&
    summary=$(compare_losses "$WORK/cu_shards/main.log" "$WORK/shards.ref" "$MUON_PARITY_TOL"); then
    ok "train_gpt2cu (fp32, emulated) --optimizer muon on shards matches PyTorch: $summary"
else
    not_ok "train_gpt2cu --optimizer muon on shards vs PyTorch: ${summary:-} (see $WORK/cu_shards.log)"
fi
# the host pipeline (device clip scale, the default) and the host path write the same bits
# shellcheck disable=SC2086
if run cu_pipelined "$CU" -e "$MODEL" -i "$WORK/train_00*.bin" -v 0 -s 0 -o "$WORK/cu_pipelined" -x 3 \
    --optimizer muon $TRAIN_FLAGS --grad-clip 0.05 -n 3 &&
    run cu_sync env LLMC_SYNC_PIPELINE=1 "$CU" -e "$MODEL" -i "$WORK/train_00*.bin" -v 0 -s 0 \
        -o "$WORK/cu_sync" -x 3 --optimizer muon $TRAIN_FLAGS --grad-clip 0.05 -n 3 &&
    cmp -s "$WORK/cu_pipelined/model_00000003.bin" "$WORK/cu_sync/model_00000003.bin" &&
    cmp -s "$WORK/cu_pipelined/state_00000003_00000.bin" "$WORK/cu_sync/state_00000003_00000.bin"; then
    ok "train_gpt2cu (emulated) Muon: the host pipeline (device clip scale) == the host path, bit for bit"
else
    not_ok "train_gpt2cu Muon: pipelined and LLMC_SYNC_PIPELINE=1 differ (see $WORK/cu_pipelined.log, cu_sync.log)"
fi
MPI_RUN=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun --oversubscribe)
if command -v mpirun >/dev/null; then
    # 2 ranks x B=1 against 1 rank x B=2: the gradient sums differ in order only (~1e-6), which
    # Muon carries as test_gpt2.c derives: the losses within MUON_PARITY_TOL
    # shellcheck disable=SC2086
    if run cu_1x2 "$CU" -e "$MODEL" -i "$WORK/train_00*.bin" -v 0 -s 0 -o "$WORK/cu_1x2" -x 4 \
        --optimizer muon $TRAIN_FLAGS &&
        run cu_2x1 "${MPI_RUN[@]}" -np 2 "$CU" -e "$MODEL" -i "$WORK/train_00*.bin" -v 0 -s 0 \
            -o "$WORK/cu_2x1" -x 4 --optimizer muon $TRAIN_FLAGS -b 1 &&
        summary=$(compare_losses "$WORK/cu_2x1/main.log" <(awk '/ trl:/ {sub("s:", "", $1); sub("trl:", "", $2); print $1, $2}' "$WORK/cu_1x2/main.log") "$MUON_PARITY_TOL"); then
        ok "train_gpt2cu (emulated) Muon data parallel: 2 ranks x B=1 == 1 rank x B=2: $summary"
    else
        not_ok "train_gpt2cu Muon data parallel 2x1 vs 1x2: ${summary:-} (see $WORK/cu_1x2.log, cu_2x1.log)"
    fi
    # ZeRO-1 with Muon (docs/multi_gpu.md): the ranges are cut between Muon's matrices, each range's
    # gradients reduced to its owner, which alone keeps the momentum and runs Newton-Schulz, then
    # broadcasts its range. The same sums in the same order as ZeRO-0's all-reduce, and the norm
    # over the same per-rank ranges (clipping active: norms ~3 > --grad-clip 1), so the model and
    # main.log equal ZeRO-0's bit for bit, fp32 and bf16 (master weights sharded too).
    # A llama (GQA, QK-norm; random init from the descriptor) too: its matrices are cut by the
    # same table (gpt2_block_matrix_shape).
    Z_FLAGS=(-v 0 -s 0 -x 4 -n 4 --optimizer muon -b 1)
    for variant in "fp32|$CU|$MODEL" "bf16|$CU16|$MODEL" \
        "llama-bf16|$CU16|arch=llama,L=2,C=64,NH=4,KV=2,V=1000,maxT=64,qknorm=1"; do
        IFS='|' read -r prec bin model <<<"$variant"
        # shellcheck disable=SC2086
        if run "cu_${prec}_z0" "${MPI_RUN[@]}" -np 2 "$bin" -e "$model" "${Z_FLAGS[@]}" -i "$WORK/train_00*.bin" \
            $TRAIN_FLAGS -b 1 -z 0 -o "$WORK/${prec}_z0" &&
            run "cu_${prec}_z1" "${MPI_RUN[@]}" -np 2 "$bin" -e "$model" "${Z_FLAGS[@]}" -i "$WORK/train_00*.bin" \
                $TRAIN_FLAGS -b 1 -z 1 -o "$WORK/${prec}_z1" &&
            grep -q "each Muon matrix whole on one rank" "$WORK/cu_${prec}_z1.log" &&
            cmp -s "$WORK/${prec}_z0/model_00000004.bin" "$WORK/${prec}_z1/model_00000004.bin" &&
            cmp -s "$WORK/${prec}_z0/main.log" "$WORK/${prec}_z1/main.log"; then
            ok "train_gpt2cu ($prec, emulated) Muon with -z 1 on 2 ranks == -z 0: model and main.log bit-identical"
        else
            not_ok "train_gpt2cu ($prec) Muon -z 1 differs from -z 0 (see $WORK/cu_${prec}_z0.log, cu_${prec}_z1.log)"
        fi
    done
    # every Muon matrix has exactly one owner, the ranges tile [0, padded) (the memory plan's lines)
    if ownership=$(awk 'BEGIN { end = 0 } /memory plan, ZeRO-1 with Muon: rank/ {
            gsub(/[\[,)]/, " "); for (i = 1; i <= NF; i++) { if ($i == "owns") { b = $(i + 2); e = $(i + 3) } if ($i == "whole") m += $(i - 1) }
            if (b != end) bad = 1; end = e; ranks++ }
            END { printf "%d ranks, %d matrices, end %d", ranks, m, end; exit !(ranks == 2 && m == 8 && !bad) }' \
        "$WORK/cu_fp32_z1.log"); then
        ok "ZeRO-1 with Muon: the 2 ranks' ranges are contiguous and own the 8 matrices once each ($ownership)"
    else
        not_ok "ZeRO-1 with Muon: ownership in the memory plan: ${ownership:-none} (see $WORK/cu_fp32_z1.log)"
    fi
    # against 1 rank x B=2 (the sums differ in order only): as the ZeRO-0 check above
    if summary=$(compare_losses "$WORK/fp32_z1/main.log" <(awk '/ trl:/ {sub("s:", "", $1); sub("trl:", "", $2); print $1, $2}' "$WORK/cu_1x2/main.log") "$MUON_PARITY_TOL"); then
        ok "train_gpt2cu (emulated) Muon -z 1: 2 ranks x B=1 == 1 rank x B=2: $summary"
    else
        not_ok "train_gpt2cu Muon -z 1 vs 1 rank x B=2: ${summary:-}"
    fi
    # planted: every rank skips the broadcast of rank 1's range; the model must differ from -z 0's
    # shellcheck disable=SC2086
    if run cu_z1_planted "${MPI_RUN[@]}" -np 2 -x LLMC_PLANT_ZERO_MUON=skip-broadcast "$CU" -e "$MODEL" "${Z_FLAGS[@]}" \
        -i "$WORK/train_00*.bin" $TRAIN_FLAGS -b 1 -z 1 -o "$WORK/fp32_z1_planted" &&
        [ -f "$WORK/fp32_z1_planted/model_00000004.bin" ]; then
        if cmp -s "$WORK/fp32_z0/model_00000004.bin" "$WORK/fp32_z1_planted/model_00000004.bin"; then
            not_ok "a ZeRO-1 Muon step without rank 1's broadcast still equals -z 0"
        else
            ok "(planted) ZeRO-1 Muon without rank 1's broadcast: the model differs from -z 0's"
        fi
    else
        not_ok "planted skip-broadcast run (see $WORK/cu_z1_planted.log)"
    fi
    # checkpoints: each rank's state file holds its range, the owned matrices' momentum included;
    # 6 straight steps == 3 + resume + 3 (bf16: master weights too), model and both states
    ZA=$WORK/z1_resume_a
    ZB=$WORK/z1_resume_b
    Z_RESUME=(-e "$MODEL" -v 0 -s 0 -x 6 -n 3 --optimizer muon -z 1)
    # shellcheck disable=SC2086
    if run z1_resume_a "${MPI_RUN[@]}" -np 2 "$CU16" "${Z_RESUME[@]}" -i "$WORK/train_00*.bin" \
        $TRAIN_FLAGS -b 1 -o "$ZA" &&
        mkdir -p "$ZB" && cp "$ZA/model_00000003.bin" "$ZA"/state_00000003_*.bin "$ZA/DONE_00000003" "$ZB/" &&
        run z1_resume_b "${MPI_RUN[@]}" -np 2 "$CU16" "${Z_RESUME[@]}" -i "$WORK/train_00*.bin" \
            $TRAIN_FLAGS -b 1 -o "$ZB" -y 1 &&
        grep -q "resume: from step 3" "$WORK/z1_resume_b.log" &&
        cmp -s "$ZA/model_00000006.bin" "$ZB/model_00000006.bin" &&
        cmp -s "$ZA/state_00000006_00000.bin" "$ZB/state_00000006_00000.bin" &&
        cmp -s "$ZA/state_00000006_00001.bin" "$ZB/state_00000006_00001.bin"; then
        ok "train_gpt2cu (bf16, emulated) Muon -z 1: 2 ranks x 6 steps == 3 + resume + 3 (model, both state files bit-identical)"
    else
        not_ok "Muon -z 1 resume (see $WORK/z1_resume_a.log, z1_resume_b.log)"
    fi
    # shellcheck disable=SC2086
    expect_error "resume of a 2-rank Muon -z 1 checkpoint on 1 process" \
        "written by 2 processes (header\[2\]), this run has 1" \
        "$CU16" "${Z_RESUME[@]}" -i "$WORK/train_00*.bin" $TRAIN_FLAGS -b 1 -o "$ZB" -y 1 -x 9
    # shellcheck disable=SC2086
    if run z1_as_z0 "${MPI_RUN[@]}" -np 2 "$CU16" "${Z_RESUME[@]}" -i "$WORK/train_00*.bin" $TRAIN_FLAGS \
        -b 1 -o "$ZB" -y 1 -x 9 -z 0; then
        not_ok "a Muon -z 1 checkpoint resumed with -z 0"
    elif grep -q "written with ZeRO stage 1 (header\[6\]), this run has -z 0" "$WORK/z1_as_z0.log"; then
        ok "resume of a Muon -z 1 checkpoint with -z 0 is refused, naming header[6]"
    else
        not_ok "Muon -z mismatch on resume: no clear error (see $WORK/z1_as_z0.log)"
    fi
    # 4 ranks, where the cuts leave a rank nothing (tests/test_units.c checks these ranges): the
    # llama's fcw (131072) is over twice S=66328, so the cuts 2S and 3S both move to its end and
    # rank 2's range is empty; the GPT-2's wte+wpe hold ranks 0 and 1, which own no Muon matrix
    # (AdamW only). Each with -z 1 == -z 0 bit for bit, clipping active (norms ~0.9 and ~2 >
    # --grad-clip 0.5), fp32 and bf16; the empty rank's state file (a header only) resumes too.
    EMPTY_RANGE_MODEL="arch=llama,L=1,C=32,NH=4,KV=2,V=1000,maxT=64,ffn=2048"
    NO_MATRIX_MODEL="L=1,C=64,NH=4,V=1000,maxT=64"
    P4_FLAGS=(-v 0 -s 0 -x 4 -n 2 --optimizer muon)
    for variant in "empty-fp32|$CU|$EMPTY_RANGE_MODEL" "empty-bf16|$CU16|$EMPTY_RANGE_MODEL" \
        "nomatrix-fp32|$CU|$NO_MATRIX_MODEL" "nomatrix-bf16|$CU16|$NO_MATRIX_MODEL"; do
        IFS='|' read -r name bin model <<<"$variant"
        # shellcheck disable=SC2086
        if run "p4_${name}_z0" "${MPI_RUN[@]}" -np 4 "$bin" -e "$model" "${P4_FLAGS[@]}" -i "$WORK/train_00*.bin" \
            $TRAIN_FLAGS -b 1 --grad-clip 0.5 -z 0 -o "$WORK/p4_${name}_z0" &&
            run "p4_${name}_z1" "${MPI_RUN[@]}" -np 4 "$bin" -e "$model" "${P4_FLAGS[@]}" -i "$WORK/train_00*.bin" \
                $TRAIN_FLAGS -b 1 --grad-clip 0.5 -z 1 -o "$WORK/p4_${name}_z1" &&
            cmp -s "$WORK/p4_${name}_z0/model_00000004.bin" "$WORK/p4_${name}_z1/model_00000004.bin" &&
            cmp -s "$WORK/p4_${name}_z0/main.log" "$WORK/p4_${name}_z1/main.log"; then
            ok "train_gpt2cu (${name#*-}, emulated) Muon -z 1 on 4 ranks, ${name%-*} case: == -z 0, model and main.log bit-identical"
        else
            not_ok "train_gpt2cu Muon -z 1 on 4 ranks, $name: differs from -z 0 or failed (see $WORK/p4_${name}_z0.log, p4_${name}_z1.log)"
        fi
    done
    # the memory plan shows the cases the checks above are meant to cover
    if grep -q "rank 2 owns parameters \[166976, 166976): .* 0 whole Muon matrices" "$WORK/p4_empty-fp32_z1.log" &&
        [ "$(grep -c "rank [01] owns parameters \[[0-9]*, [1-9][0-9]*): .* 0 whole Muon matrices" \
            "$WORK/p4_nomatrix-fp32_z1.log")" -eq 2 ]; then
        ok "ZeRO-1 with Muon on 4 ranks: the memory plans show an empty range (llama) and 2 ranges without a Muon matrix (GPT-2)"
    else
        not_ok "ZeRO-1 with Muon on 4 ranks: the ranges are not the edge cases meant (see $WORK/p4_empty-fp32_z1.log, p4_nomatrix-fp32_z1.log)"
    fi
    # planted: skipping rank 3's broadcast (it owns the llama's fcprojw) must change the model
    # shellcheck disable=SC2086
    if run p4_planted "${MPI_RUN[@]}" -np 4 -x LLMC_PLANT_ZERO_MUON=skip-broadcast "$CU" -e "$EMPTY_RANGE_MODEL" \
        "${P4_FLAGS[@]}" -i "$WORK/train_00*.bin" $TRAIN_FLAGS -b 1 --grad-clip 0.5 -z 1 -o "$WORK/p4_planted" &&
        [ -f "$WORK/p4_planted/model_00000004.bin" ]; then
        if cmp -s "$WORK/p4_empty-fp32_z0/model_00000004.bin" "$WORK/p4_planted/model_00000004.bin"; then
            not_ok "a 4-rank ZeRO-1 Muon step without rank 3's broadcast still equals -z 0"
        else
            ok "(planted) 4-rank ZeRO-1 Muon without rank 3's broadcast: the model differs from -z 0's"
        fi
    else
        not_ok "planted 4-rank skip-broadcast run (see $WORK/p4_planted.log)"
    fi
    # resume (bf16, the empty rank's header-only state file included): 4 steps == 2 + resume + 2
    PA=$WORK/p4_empty-bf16_z1
    PB=$WORK/p4_resume
    # shellcheck disable=SC2086
    if [ -f "$PA/model_00000004.bin" ] && mkdir -p "$PB" &&
        cp "$PA/model_00000002.bin" "$PA"/state_00000002_*.bin "$PA/DONE_00000002" "$PB/" &&
        run p4_resume "${MPI_RUN[@]}" -np 4 "$CU16" -e "$EMPTY_RANGE_MODEL" "${P4_FLAGS[@]}" -i "$WORK/train_00*.bin" \
            $TRAIN_FLAGS -b 1 --grad-clip 0.5 -z 1 -o "$PB" -y 1; then
        differing=""
        for r in 0 1 2 3; do
            cmp -s "$PA/state_00000004_0000$r.bin" "$PB/state_00000004_0000$r.bin" || differing="$differing $r"
        done
        if grep -q "resume: from step 2" "$WORK/p4_resume.log" &&
            cmp -s "$PA/model_00000004.bin" "$PB/model_00000004.bin" && [ -z "$differing" ]; then
            ok "train_gpt2cu (bf16, emulated) Muon -z 1 on 4 ranks with an empty range: 4 steps == 2 + resume + 2 (model, 4 state files bit-identical)"
        else
            not_ok "Muon -z 1 resume on 4 ranks with an empty range: differs (state files of ranks:${differing:- none}; see $WORK/p4_resume.log)"
        fi
    else
        not_ok "Muon -z 1 resume on 4 ranks with an empty range did not run (see $WORK/p4_empty-bf16_z1.log, p4_resume.log)"
    fi
else
    not_ok "mpirun not found: Muon's data parallel checks not run"
fi

checks_summary
