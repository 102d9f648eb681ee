#!/usr/bin/env bash
# The llama family (issue 20; part of `make test`; alone: bash tests/test_llama.sh): train_gpt2.c's
# llama layers (RMSNorm, RoPE, SwiGLU, grouped-query attention, QK-norm, untied head) against the
# PyTorch reference (scripts/train_gpt2.py): random init bit for bit, logits, loss, every gradient,
# 10 AdamW steps, for QK-norm off and on, KV < NH (and KV = 1), T not a multiple of 8, small
# vocabularies; the bf16 file (version 7); corrupted references that must fail; train_gpt2's losses
# on a llama model against PyTorch's (and a planted learning-rate error that must fail); sampling;
# bad descriptors and model headers; the CUDA trainer (emulated): test_gpt2cu parity, train_gpt2cu's
# losses (AdamW, Muon), resume, data parallel; chat's and chatcu's greedy completions equal PyTorch's.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
WORK=${LLMC_LLAMA_TEST_DIR:-$ROOT/build/llama_test}
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"

make --no-print-directory -s "$BIN/train_gpt2" "$BIN/test_gpt2" "$BIN/chat" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
PY=""
for candidate in "${PYTHON:-}" /usr/bin/python3 python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1; then PY=$candidate; break; fi
done
[ -n "$PY" ] || { echo "error: no python with torch"; echo "0 passed, 1 failed"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# the models are tiny: threads that spin at OpenMP's barriers on a busy machine made runs 25x
# slower (2 s instead of 0.09 s for a test_gpt2 run); waiting passively keeps two threads cheap
export OMP_WAIT_POLICY=passive
# the PyTorch references: with LLMC_REFERENCE_DIR, those an earlier run wrote (tests/lib_checks.sh)
REF="$PY scripts/train_gpt2.py"
[ -n "${LLMC_REFERENCE_DIR:-}" ] && REF=reused_reference

# ---------------------------------------------------------------------------------------------
# Reference dumps. name | descriptor | seed | B | T | extra reference flags
# The tolerances are test_gpt2's defaults, derived there for GPT-2: the llama block has the same
# kinds of sums (matmuls of K <= 2*ffn, softmax rows, RMSNorm's mean of squares in double like
# layernorm's), so the same rounding budget holds (measured: logits 4e-7, gradients <= 1e-7 abs).
CONFIGS=(
    "kv2_b2_t21|arch=llama,L=2,C=64,NH=4,KV=2,V=300,maxT=64|5|2|21|-l 1e-3"
    "qk_kv2_b3_t19_wd|arch=llama,L=3,C=96,NH=6,KV=2,V=1000,maxT=64,qknorm=1,rope_theta=500000,ffn=160|6|3|19|-l 1e-3 -c 0.1"
    "qk_mqa_b1_t13|arch=llama,L=1,C=32,NH=4,KV=1,V=200,maxT=32,qknorm=1|7|1|13|--grad-clip 0.5"
)
for config in "${CONFIGS[@]}"; do
    IFS='|' read -r name descriptor seed B T extra <<<"$config"
    # shellcheck disable=SC2086
    if run "ref_$name" $REF --model "$descriptor" --seed "$seed" -b "$B" -t "$T" --steps 10 $extra \
        --write-model "$WORK/$name.bin" --write-model-bf16 "$WORK/${name}_bf16.bin" \
        --write-state "$WORK/${name}_state.bin"; then
        ok "reference dump $name"
    else
        not_ok "reference dump $name (see $WORK/ref_$name.log)"
        continue
    fi
    if run "test_$name" $BIN/test_gpt2 -e "$WORK/$name.bin" -s "$WORK/${name}_state.bin"; then
        ok "test_gpt2 llama $name: logits, loss, 11 gradients, 10 AdamW steps match PyTorch"
    else
        not_ok "test_gpt2 llama $name (see $WORK/test_$name.log)"
    fi
    if run "init_$name" $BIN/test_gpt2 -e "$WORK/$name.bin" --init "$descriptor" --seed "$seed"; then
        ok "random init $descriptor seed $seed is bit-identical to PyTorch's"
    else
        not_ok "random init $descriptor seed $seed (see $WORK/init_$name.log)"
    fi
done
cat "$WORK/test_qk_kv2_b3_t19_wd.log" 2>/dev/null

# The bf16 file (version 7): the bound of run_tests.sh section 1's bf16 check (each weight rounded
# by <= 2^-8 of itself; a logit by <= 2^-8 per weight matrix on its path, 2L+2 = 8 here, of
# 1 + |logit|: 3.1e-2, limit 5e-2), measured 7e-4 relative on the step losses.
if run bf16_load $BIN/test_gpt2 -e "$WORK/qk_kv2_b3_t19_wd_bf16.bin" -s "$WORK/qk_kv2_b3_t19_wd_state.bin" \
    --logits-tol 5e-2 --loss-tol 1e-3 --grad-tol 1e9 --step-tol 1e-3; then
    ok "llama bf16 model file (version 7) loads; loss within 1e-3 of fp32"
else
    not_ok "llama bf16 model file (see $WORK/bf16_load.log)"
fi

# ---------------------------------------------------------------------------------------------
# Corrupted references must fail, naming what is wrong: a median element of a tensor x1.01.
corrupt_llama() { # corrupt_llama MODEL STATE DST WHAT: WHAT is logits, loss, step3 or a tensor name
    $PY - "$@" <<'EOF'
import struct, sys
model, state, dst, what = sys.argv[1:5]
h = struct.unpack_from("<256i", open(model, "rb").read(1024))
maxT, V, L, NH, C, Vp, arch, KV, F, qknorm = h[2:12]
HS = C // NH
sizes = [("wte", Vp * C), ("rms1w", L * C), ("qkvw", L * (NH + 2 * KV) * HS * C),
         ("qnormw", L * HS * qknorm), ("knormw", L * HS * qknorm), ("attprojw", L * C * C),
         ("rms2w", L * C), ("fcw", L * 2 * F * C), ("fcprojw", L * C * F), ("rmsfw", C),
         ("lm_head", Vp * C)]
data = bytearray(open(state, "rb").read())
s = struct.unpack_from("<256i", data)
BT = s[2] * s[3]
logits = 1024 + 8 * BT
grads = logits + 4 * BT * V + 4
if what == "logits":
    offset, count = logits, BT * V
elif what == "loss":
    offset, count = grads - 4, 1
elif what == "step3":
    offset, count = grads + 4 * sum(n for _, n in sizes) + 12, 1
else:
    offset = grads + 4 * sum(n for name, n in sizes[: [k for k, _ in sizes].index(what)])
    count = dict(sizes)[what]
    if what in ("wte", "lm_head"):
        count = V * C  # the real rows
values = struct.unpack_from("<%df" % count, data, offset)
# among the non-zero values: wte's gradient is zero outside the rows of the batch's tokens
nonzero = sorted((i for i in range(count) if values[i] != 0.0), key=lambda i: abs(values[i]))
pick = nonzero[len(nonzero) // 2]
struct.pack_into("<f", data, offset + 4 * pick, values[pick] * 1.01)
open(dst, "wb").write(data)
EOF
}
M=$WORK/qk_kv2_b3_t19_wd.bin
S=$WORK/qk_kv2_b3_t19_wd_state.bin
if [ -f "$S" ]; then
    for spec in "logits|logits" "loss|loss" "wte|wte" "qkvw|qkvw" "qnormw|qnormw" "knormw|knormw" \
        "fcw|fcw" "lm_head|lm_head" "step3|step  3"; do
        IFS='|' read -r what expect <<<"$spec"
        corrupt_llama "$M" "$S" "$WORK/corrupt_$what.bin" "$what"
        if $BIN/test_gpt2 -e "$M" -s "$WORK/corrupt_$what.bin" >"$WORK/corrupt_$what.log" 2>&1; then
            not_ok "corrupted llama reference ($what: a median element x1.01) passed: the test cannot fail"
        elif grep -q "${expect}[: ].*FAIL" "$WORK/corrupt_$what.log"; then
            ok "corrupted llama reference ($what: a median element x1.01) fails and names $expect"
        else
            not_ok "corrupted llama reference ($what) failed without naming $expect (see $WORK/corrupt_$what.log)"
        fi
    done
fi

# ---------------------------------------------------------------------------------------------
# train_gpt2 on a llama model file and an unshuffled shard reproduces PyTorch's losses
# (run_tests.sh section 3's comparison and tolerance, PARITY_TOL derived there).
$PY - "$WORK" <<'EOF'
import random, struct, sys
rng = random.Random(99)
ids = [rng.randrange(1000) for _ in range(200)]  # a skewed unigram distribution over V = 1000
tokens = [ids[min(int(rng.expovariate(0.05)), 199)] for _ in range(4000)]
with open(sys.argv[1] + "/train_000.bin", "wb") as f:
    f.write(struct.pack("<256i", *([20240520, 1, len(tokens)] + [0] * 253)))
    f.write(struct.pack("<%dH" % len(tokens), *tokens))
EOF
PARITY_TOL=1e-4
llama_parity() { # llama_parity NAME "C flags" "reference flags"
    local name=$1 cflags=$2 pyflags=$3 summary
    # shellcheck disable=SC2086
    if ! run "train_$name" $BIN/train_gpt2 -e "$M" -i "$WORK/train_000.bin" -v 0 -s 0 -o "$WORK/$name" $cflags; then
        not_ok "train_gpt2 llama $name (see $WORK/train_$name.log)"
        return
    fi
    # shellcheck disable=SC2086
    if ! run "ref_train_$name" $REF --mode train --model "$M" --input "$WORK/train_000.bin" \
        --losses "$WORK/$name.ref" $pyflags; then
        not_ok "reference train llama $name (see $WORK/ref_train_$name.log)"
        return
    fi
    if summary=$(compare_losses "$name" "$WORK/$name/main.log" "$WORK/$name.ref" "$PARITY_TOL"); then
        ok "train_gpt2 llama $name matches PyTorch: $summary"
    else
        not_ok "train_gpt2 llama $name vs PyTorch: $summary"
    fi
}
llama_parity "train_accum_cosine_wd" "-b 2 -t 32 -d 128 -l 2e-3 -c 0.1 -x 8 -u 2 -q 0.1 -k cosine" \
    "-b 2 -t 32 -d 128 -l 2e-3 -c 0.1 --steps 8 -u 2 -q 0.1 -k cosine"
if ! run train_planted_lr $BIN/train_gpt2 -e "$M" -i "$WORK/train_000.bin" -v 0 -s 0 -o "$WORK/planted_lr" \
    -b 2 -t 32 -d 128 -l 2.02e-3 -c 0.1 -x 8 -u 2 -q 0.1 -k cosine; then
    not_ok "train_gpt2 llama with a 1% learning-rate error did not run (see $WORK/train_planted_lr.log)"
elif summary=$(compare_losses planted "$WORK/planted_lr/main.log" "$WORK/train_accum_cosine_wd.ref" "$PARITY_TOL"); then
    not_ok "llama: a 1% learning-rate error passes the comparison with PyTorch's losses: $summary"
else
    ok "(planted) llama: a 1% learning-rate error fails the comparison with PyTorch's losses: $summary"
fi
# the checkpoint it wrote is a version 6 file that PyTorch and train_gpt2 load again
CKPT=$(find "$WORK/train_accum_cosine_wd" -name "model_*.bin" 2>/dev/null | sort | tail -1)
version=$([ -n "$CKPT" ] && od -An -tu4 -j4 -N4 "$CKPT" | tr -d ' ')
if [ "$version" = 6 ] && run reload_ref $PY scripts/train_gpt2.py --model "$CKPT" --mode none --write-model "$WORK/reloaded.bin" &&
    run reload_c $BIN/train_gpt2 -e "$WORK/reloaded.bin" -i "$WORK/train_000.bin" -b 2 -t 32 -x 0 -v 0 -s 0; then
    ok "train_gpt2's llama checkpoint is a version 6 file; PyTorch and train_gpt2 load it"
else
    not_ok "llama checkpoint ${CKPT:-none} (version ${version:-?}; see $WORK/reload_ref.log, $WORK/reload_c.log)"
fi
# a checkpoint of a llama model resumes bit for bit (run_tests.sh section 4's check): 6 straight
# steps equal 3 steps, resume (-y 1), 3 steps
common="-e arch=llama,L=2,C=64,NH=4,KV=2,V=1000,maxT=64,qknorm=1 --seed 7 -b 2 -t 32 -x 6 -n 3 -l 1e-3 -u 2 -v 0 -s 0"
mkdir -p "$WORK/resume_b"
# shellcheck disable=SC2086
if run resume_a $BIN/train_gpt2 $common -i "$WORK/train_000.bin" -o "$WORK/resume_a" &&
    cp "$WORK/resume_a/model_00000003.bin" "$WORK/resume_a/state_00000003_00000.bin" "$WORK/resume_a/DONE_00000003" "$WORK/resume_b/" &&
    run resume_b $BIN/train_gpt2 $common -i "$WORK/train_000.bin" -o "$WORK/resume_b" -y 1 &&
    cmp -s "$WORK/resume_a/model_00000006.bin" "$WORK/resume_b/model_00000006.bin" &&
    cmp -s "$WORK/resume_a/state_00000006_00000.bin" "$WORK/resume_b/state_00000006_00000.bin" &&
    grep -q "resume: from step 3" "$WORK/resume_b.log"; then
    ok "llama: 6 straight steps == 3 steps + resume + 3 steps (model and state bit-identical)"
else
    not_ok "llama resume (see $WORK/resume_a.log, $WORK/resume_b.log)"
fi
# no reduction depends on the thread count: 1 thread gives the same bits as 2 (GQA's backward sums a
# group's query heads into the shared key/value gradients in a fixed order)
# shellcheck disable=SC2086
if run threads1 env OMP_NUM_THREADS=1 $BIN/train_gpt2 $common -i "$WORK/train_000.bin" -o "$WORK/threads1" &&
    cmp -s "$WORK/resume_a/model_00000006.bin" "$WORK/threads1/model_00000006.bin" &&
    cmp -s "$WORK/resume_a/state_00000006_00000.bin" "$WORK/threads1/state_00000006_00000.bin"; then
    ok "llama: 6 steps on 1 thread give the same model and state bits as on $OMP_NUM_THREADS"
else
    not_ok "llama: 1 thread differs from $OMP_NUM_THREADS (see $WORK/threads1.log)"
fi
# sampling during training (token ids: no tokenizer of this vocabulary)
if run sample $BIN/train_gpt2 -e "$M" -i "$WORK/train_000.bin" -b 2 -t 32 -x 2 -v 0 -s 1 -g 6 &&
    grep -q "generating" "$WORK/sample.log"; then
    ok "train_gpt2 samples from a llama model: $(grep -m1 -A2 generating "$WORK/sample.log" | tail -1 | head -c 80)"
else
    not_ok "train_gpt2 sampling from a llama model (see $WORK/sample.log)"
fi

# ---------------------------------------------------------------------------------------------
# Bad descriptors: one error line naming the field, exit 1.
D="arch=llama,L=2,C=64,NH=4"
expect_error "descriptor: NH not a multiple of KV" "NH must be divisible by KV" $BIN/test_gpt2 -e "$D,KV=3"
expect_error "descriptor: KV above NH" "KV must be in 1..NH" $BIN/test_gpt2 -e "$D,KV=8"
expect_error "descriptor: odd head size" "head size C/NH must be even" $BIN/test_gpt2 -e "arch=llama,L=2,C=60,NH=4"
expect_error "descriptor: C not a multiple of NH" "C must be divisible by NH" $BIN/test_gpt2 -e "arch=llama,L=2,C=66,NH=4"
expect_error "descriptor: qknorm=2" "bad value '2' for qknorm" $BIN/test_gpt2 -e "$D,qknorm=2"
expect_error "descriptor: rope_theta not a number" "rope_theta: expected a number" $BIN/test_gpt2 -e "$D,rope_theta=abc"
expect_error "descriptor: rope_theta below 1" "rope_theta: expected a number in 1..1e9" $BIN/test_gpt2 -e "$D,rope_theta=0.5"
expect_error "descriptor: ffn too large" "ffn must be in 1..262144" $BIN/test_gpt2 -e "$D,ffn=300000"
expect_error "descriptor: KV without arch=llama" "llama fields" $BIN/test_gpt2 -e "L=2,C=64,NH=4,KV=2"
expect_error "descriptor: unknown arch" "arch: expected gpt2 or llama" $BIN/test_gpt2 -e "arch=mamba,L=2,C=64,NH=4"
expect_error "descriptor: unknown key" "unknown key 'heads'" $BIN/test_gpt2 -e "$D,heads=2"
# at the caps no size overflows 64 bits (llmc/model_config.h): the largest shape is refused by the
# allocation, still with one line (not under AddressSanitizer, which reports a 290 TB malloc itself)
if [ "${LLMC_SANITIZE:-0}" != 1 ]; then
    expect_error "descriptor: the largest shape" "out of memory allocating .* bytes for parameters" \
        $BIN/test_gpt2 -e "arch=llama,L=1024,C=65536,NH=1024,ffn=262144,V=16777216,maxT=16"
fi

# Bad model headers (version 6): one error line naming the file and the field, exit 1.
M1=$WORK/kv2_b2_t21.bin
patch_header() { # patch_header SRC DST SLOT VALUE(int, or f:FLOAT for float bits)
    $PY - "$@" <<'EOF'
import struct, sys
src, dst, slot, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = bytearray(open(src, "rb").read())
if value.startswith("f:"):
    struct.pack_into("<f", data, 4 * slot, float(value[2:]))
else:
    struct.pack_into("<i", data, 4 * slot, int(value))
open(dst, "wb").write(data)
EOF
}
if [ -f "$M1" ]; then
    for spec in "arch_gpt2|8|0|header\[8\] (arch): expected 1" "kv_3|9|3|NH must be divisible by KV" \
        "kv_0|9|0|KV must be in 1..NH" "ffn_huge|10|2147483647|ffn must be in" \
        "qknorm_2|11|2|qknorm must be 0 or 1" "theta_nan|12|f:nan|rope_theta must be" \
        "ffn_other|10|128|file is .* bytes, expected" "version_8|1|8|unsupported model version 8"; do
        IFS='|' read -r what slot value pattern <<<"$spec"
        patch_header "$M1" "$WORK/bad_$what.bin" "$slot" "$value"
        expect_error "llama header: $what" "bad_$what.bin.*$pattern" $BIN/test_gpt2 -e "$WORK/bad_$what.bin" -s "$WORK/kv2_b2_t21_state.bin"
    done
    head -c 5000 "$M1" >"$WORK/truncated.bin"
    expect_error "llama header: truncated file" "truncated.bin: file is 5000 bytes, expected" \
        $BIN/test_gpt2 -e "$WORK/truncated.bin" -s "$WORK/kv2_b2_t21_state.bin"
    expect_error "llama header (PyTorch reference): KV" "bad_kv_3.bin.*KV" $PY scripts/train_gpt2.py \
        --model "$WORK/bad_kv_3.bin" --mode none --write-model "$WORK/never.bin"
fi

# ---------------------------------------------------------------------------------------------
# The CUDA trainer on the CPU emulation (train_gpt2.cu's llama path): test_gpt2cu (FP32, BF16) on
# the dumps above at test_gpt2.cu's GPT-2 tolerances (derived there, the llama tensors too) in the
# emulation's forward, reverse and random scheduling orders; corrupted references that must fail;
# train_gpt2cu's losses on the shard against PyTorch's (AdamW and Muon); resume bit for bit with
# -r 1; data parallel. (chatcu and the GPU KV cache: after chat's check below.)
CU_BINS="build/cuda/emu-fp32/test_gpt2cu build/cuda/emu-bf16/test_gpt2cu build/cuda/emu-fp32/train_gpt2cu build/cuda/emu-fp32/chatcu
    build/cuda/emu-fp32/test_generate_cu build/cuda/emu-bf16/test_generate_cu"
# the sanitized pass (run_tests.sh section 15) skips these: the emulated binaries are not its
# sanitized builds (section 8 runs those), so it would only repeat this pass's runs
CU_CHECKS=0
[ "${LLMC_SANITIZE:-0}" = 1 ] || CU_CHECKS=1
# shellcheck disable=SC2086
if [ "$CU_CHECKS" = 0 ]; then
    :
elif make --no-print-directory -s CUDA_EMU=1 $CU_BINS >"$WORK/build_cu.log" 2>&1; then
    export OMP_WAIT_POLICY=passive LLMC_EMU_THREADS=${LLMC_EMU_THREADS:-2}
    CU=build/cuda/emu-fp32/train_gpt2cu
    for spec in "fp32|kv2_b2_t21|forward" "bf16|kv2_b2_t21|random" "fp32|qk_kv2_b3_t19_wd|forward" \
        "fp32|qk_kv2_b3_t19_wd|reverse" "fp32|qk_kv2_b3_t19_wd|random" "bf16|qk_kv2_b3_t19_wd|forward" \
        "bf16|qk_kv2_b3_t19_wd|reverse" "bf16|qk_kv2_b3_t19_wd|random"; do
        IFS='|' read -r precision name order <<<"$spec"
        if [ ! -f "$WORK/${name}_state.bin" ]; then
            not_ok "test_gpt2cu llama $name: no reference dump"
        elif run "cu_${precision}_${name}_$order" env LLMC_EMU_ORDER="$order" ./build/cuda/emu-$precision/test_gpt2cu \
            -e "$WORK/$name.bin" -s "$WORK/${name}_state.bin" -o "$WORK/cu_work"; then
            ok "test_gpt2cu ($precision, emulated, $order order) llama $name: logits, loss, 11 gradients, 10 AdamW steps match PyTorch; every layer matches train_gpt2.c; repeat and save/reload bit-identical"
        else
            not_ok "test_gpt2cu ($precision) llama $name, $order order (see $WORK/cu_${precision}_${name}_$order.log)"
        fi
    done
    # KV = NH: the BF16 build's attention is cuDNN's (its emulated stand-in) for such a llama, as
    # for GPT-2 (attention_uses_cudnn); the same tolerances
    if run ref_mha $REF --model "arch=llama,L=2,C=64,NH=4,KV=4,V=500,maxT=32,qknorm=1" --seed 9 -b 2 -t 17 \
        --steps 10 --write-model "$WORK/mha.bin" --write-state "$WORK/mha_state.bin" &&
        run cu_bf16_mha ./build/cuda/emu-bf16/test_gpt2cu -e "$WORK/mha.bin" -s "$WORK/mha_state.bin" -o "$WORK/cu_work"; then
        ok "test_gpt2cu (bf16, emulated) llama with KV = NH (cuDNN's attention): logits, loss, 11 gradients, 10 AdamW steps match PyTorch"
    else
        not_ok "test_gpt2cu (bf16) llama with KV = NH (see $WORK/ref_mha.log, $WORK/cu_bf16_mha.log)"
    fi
    # the corrupted references of above (a median element x1.01) fail FP32's element-wise limits;
    # BF16's relative L2 limits are 2x the bf16 noise, so it gets a whole tensor x1.05 (as
    # run_tests.sh section 9 plants for GPT-2)
    M=$WORK/qk_kv2_b3_t19_wd.bin
    for spec in "logits|logits" "qnormw|qnormw" "knormw|knormw" "lm_head|lm_head" "step3|step  3"; do
        IFS='|' read -r what expect <<<"$spec"
        [ -f "$WORK/corrupt_$what.bin" ] || { not_ok "no corrupted reference $what"; continue; }
        if ./build/cuda/emu-fp32/test_gpt2cu -e "$M" -s "$WORK/corrupt_$what.bin" --layers 0 -o "$WORK/cu_work" \
            >"$WORK/cu_corrupt_$what.log" 2>&1; then
            not_ok "test_gpt2cu (fp32) passed a corrupted llama reference ($what x1.01): it cannot fail"
        elif grep -q "${expect}[: ].*FAIL" "$WORK/cu_corrupt_$what.log"; then
            ok "(planted) test_gpt2cu (fp32, emulated) fails a llama reference with $what off by 1% and names it"
        else
            not_ok "test_gpt2cu (fp32) failed on corrupted $what without naming it (see $WORK/cu_corrupt_$what.log)"
        fi
    done
    $PY - "$WORK/qk_kv2_b3_t19_wd_state.bin" "$WORK/cu_bf16_qnormw.bin" "$M" <<'PYEOF'
import struct, sys
state, dst, model = sys.argv[1:4]
h = struct.unpack_from("<256i", open(model, "rb").read(1024))
maxT, V, L, NH, C, Vp, arch, KV, F, qknorm = h[2:12]
HS = C // NH
data = bytearray(open(state, "rb").read())
s = struct.unpack_from("<256i", data)
BT = s[2] * s[3]
grads = 1024 + 8 * BT + 4 * BT * V + 4
offset = grads + 4 * (Vp * C + L * C + L * (NH + 2 * KV) * HS * C)  # qnormw's gradient
n = L * HS
values = struct.unpack_from("<%df" % n, data, offset)
struct.pack_into("<%df" % n, data, offset, *[v * 1.05 for v in values])
open(dst, "wb").write(data)
PYEOF
    if ./build/cuda/emu-bf16/test_gpt2cu -e "$M" -s "$WORK/cu_bf16_qnormw.bin" --layers 0 -o "$WORK/cu_work" \
        >"$WORK/cu_bf16_qnormw.log" 2>&1; then
        not_ok "test_gpt2cu (bf16) passed a llama reference with qnormw's gradient x1.05: it cannot fail"
    elif grep -q "qnormw[: ].*FAIL" "$WORK/cu_bf16_qnormw.log"; then
        ok "(planted) test_gpt2cu (bf16, emulated) fails a llama reference with qnormw's gradient x1.05 and names it"
    else
        not_ok "test_gpt2cu (bf16) failed on qnormw x1.05 without naming it (see $WORK/cu_bf16_qnormw.log)"
    fi
    # train_gpt2cu (fp32) on the shard with train_gpt2's flags of above: PyTorch's losses, PARITY_TOL
    # shellcheck disable=SC2086
    if [ -f "$WORK/train_accum_cosine_wd.ref" ] &&
        run cu_train $CU -e "$M" -i "$WORK/train_000.bin" -v 0 -s 0 -o "$WORK/cu_train" \
            -b 2 -t 32 -d 128 -l 2e-3 -c 0.1 -x 8 -u 2 -q 0.1 -k cosine &&
        summary=$(compare_losses cu_train "$WORK/cu_train/main.log" "$WORK/train_accum_cosine_wd.ref" "$PARITY_TOL"); then
        ok "train_gpt2cu (fp32, emulated) llama on the shard matches PyTorch: $summary"
    else
        not_ok "train_gpt2cu llama on the shard vs PyTorch: ${summary:-} (see $WORK/cu_train.log)"
    fi
    # the host pipeline (the default above: device clip scale, one wait per step) and the host path
    # (LLMC_SYNC_PIPELINE=1) write the same bits
    # shellcheck disable=SC2086
    if run cu_train_sync env LLMC_SYNC_PIPELINE=1 $CU -e "$M" -i "$WORK/train_000.bin" -v 0 -s 0 -o "$WORK/cu_train_sync" \
        -b 2 -t 32 -d 128 -l 2e-3 -c 0.1 -x 8 -u 2 -q 0.1 -k cosine &&
        cmp -s "$WORK/cu_train/model_00000008.bin" "$WORK/cu_train_sync/model_00000008.bin" &&
        cmp -s "$WORK/cu_train/state_00000008_00000.bin" "$WORK/cu_train_sync/state_00000008_00000.bin"; then
        ok "train_gpt2cu llama: the host pipeline and the host path (LLMC_SYNC_PIPELINE=1) write the same model and state bits"
    else
        not_ok "train_gpt2cu llama: host pipeline vs host path (see $WORK/cu_train_sync.log)"
    fi
    # --optimizer muon (GQA, QK-norm): test_muon.sh's tolerance for train_gpt2cu (2e-4 relative,
    # the Newton-Schulz worst case, derived there)
    MUON_FLAGS="-b 2 -t 24 -d 96 -l 1e-3 -u 2 -q 0.1 -k cosine" # -l: the two programs' defaults differ
    # shellcheck disable=SC2086
    if run cu_muon $CU -e "$M" -i "$WORK/train_000.bin" -v 0 -s 0 -o "$WORK/cu_muon" --optimizer muon $MUON_FLAGS -x 6 &&
        run ref_cu_muon $REF --mode train --model "$M" --input "$WORK/train_000.bin" --optimizer muon \
            $MUON_FLAGS --steps 6 --losses "$WORK/cu_muon.ref" &&
        summary=$(compare_losses cu_muon "$WORK/cu_muon/main.log" "$WORK/cu_muon.ref" 2e-4); then
        ok "train_gpt2cu (fp32, emulated) --optimizer muon on a llama (GQA) matches PyTorch: $summary"
    else
        not_ok "train_gpt2cu --optimizer muon llama vs PyTorch: ${summary:-} (see $WORK/cu_muon.log, $WORK/ref_cu_muon.log)"
    fi
    # resume: 6 straight steps == 3 steps + resume + 3 steps, model and state bit-identical
    # (QK-norm, GQA, -r 1 recomputing SwiGLU in the backward)
    common_cu="-e arch=llama,L=2,C=64,NH=4,KV=2,V=1000,maxT=64,qknorm=1 --seed 7 -b 2 -t 32 -x 6 -n 3 -l 1e-3 -u 2 -v 0 -s 0"
    mkdir -p "$WORK/cu_resume_b"
    # shellcheck disable=SC2086
    if run cu_resume_a $CU $common_cu -r 1 -i "$WORK/train_000.bin" -o "$WORK/cu_resume_a" &&
        cp "$WORK/cu_resume_a/model_00000003.bin" "$WORK/cu_resume_a/state_00000003_00000.bin" \
            "$WORK/cu_resume_a/DONE_00000003" "$WORK/cu_resume_b/" &&
        run cu_resume_b $CU $common_cu -r 1 -i "$WORK/train_000.bin" -o "$WORK/cu_resume_b" -y 1 &&
        cmp -s "$WORK/cu_resume_a/model_00000006.bin" "$WORK/cu_resume_b/model_00000006.bin" &&
        cmp -s "$WORK/cu_resume_a/state_00000006_00000.bin" "$WORK/cu_resume_b/state_00000006_00000.bin" &&
        grep -q "resume: from step 3" "$WORK/cu_resume_b.log"; then
        ok "train_gpt2cu llama (-r 1): 6 straight steps == 3 steps + resume + 3 steps (bit-identical)"
    else
        not_ok "train_gpt2cu llama resume (see $WORK/cu_resume_a.log, $WORK/cu_resume_b.log)"
    fi
    # data parallel (two emulated GPUs, mpirun): ZeRO-1 writes the same bits as ZeRO-0 (the
    # per-layer all-reduce lists llama's tensors), and the losses equal one process's with 2B to
    # run_tests.sh section 12's loss tolerance (2e-5, derived there)
    if command -v mpirun >/dev/null; then
        MPI_RUN=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun --oversubscribe)
        dp="-e arch=llama,L=2,C=64,NH=4,KV=2,V=1000,maxT=64,qknorm=1 --seed 7 -i $WORK/train_000.bin -t 32 -d 128 -x 4 -n 4 -l 1e-3 -v 0 -s 0"
        # shellcheck disable=SC2086
        if run cu_dp0 "${MPI_RUN[@]}" -np 2 $CU $dp -b 2 -z 0 -o "$WORK/cu_dp0" &&
            run cu_dp1 "${MPI_RUN[@]}" -np 2 $CU $dp -b 2 -z 1 -o "$WORK/cu_dp1" &&
            run cu_dp_single $CU $dp -b 4 -o "$WORK/cu_dp_single" &&
            cmp -s "$WORK/cu_dp0/model_00000004.bin" "$WORK/cu_dp1/model_00000004.bin" &&
            summary=$(compare_losses cu_dp "$WORK/cu_dp0/main.log" <(sed -n 's/^s:\([0-9]*\) trl:\([^ ]*\).*/\1 \2/p' "$WORK/cu_dp_single/main.log") 2e-5); then
            ok "train_gpt2cu llama on 2 emulated GPUs: -z 1 == -z 0 bit for bit; losses = 1 process x 2B: $summary"
        else
            not_ok "train_gpt2cu llama data parallel: ${summary:-} (see $WORK/cu_dp0.log, $WORK/cu_dp1.log, $WORK/cu_dp_single.log)"
        fi
    fi
    # -r 1 redoes the same SwiGLU kernel on the same input: the same bits as keeping it
    # shellcheck disable=SC2086
    if run cu_r0 $CU $common_cu -r 0 -i "$WORK/train_000.bin" -o "$WORK/cu_r0" &&
        cmp -s "$WORK/cu_resume_a/model_00000006.bin" "$WORK/cu_r0/model_00000006.bin"; then
        ok "train_gpt2cu llama: -r 1 and -r 0 give the same model bits after 6 steps"
    else
        not_ok "train_gpt2cu llama: -r 1 differs from -r 0 (see $WORK/cu_r0.log)"
    fi
else
    not_ok "building $CU_BINS (see $WORK/build_cu.log)"
fi

# ---------------------------------------------------------------------------------------------
# chat on a llama model (llmc/kv_cache.h's llama_forward_step, with KV heads): a base model trained
# on text of the GPT-2 tokenizer; its greedy completion equals PyTorch's greedy continuation
# (tests/greedy_reference.py, with a planted one-token change that must fail). tests/test_sft.c
# checks the cache's logits against the full forward's.
FIX=$ROOT/tests/fixtures/sft
make --no-print-directory -s "$BIN/tokenizer" >>"$WORK/build.log" 2>&1
PROMPT="Natalia sold clips to 48 of her friends"
if $BIN/tokenizer prepare -i "$FIX/gsm8k.jsonl" --field question,answer --val-fraction 0 -o "$WORK/plain" \
    >"$WORK/prepare_plain.log" 2>&1 &&
    run train_chat env OMP_NUM_THREADS=1 $BIN/train_gpt2 -e "arch=llama,L=2,C=64,NH=4,KV=2,maxT=128,qknorm=1" \
        -i "$WORK/plain/data_train_000000.bin" -j "" -b 1 -t 32 -x 8 -l 3e-3 -s 0 --tokenizer "" -o "$WORK/chat_model" &&
    greedy=$(OMP_NUM_THREADS=1 $BIN/chat -e "$WORK/chat_model/model_00000008.bin" --ids 1 --complete "$PROMPT" \
        --temperature 0 -n 20 2>"$WORK/chat.err") && [ "$(echo "$greedy" | wc -w)" -eq 20 ]; then
    printf '%s' "$PROMPT" | $BIN/tokenizer encode -v "$WORK/plain/tokenizer.bin" -i - -o - >"$WORK/prompt.ids"
    echo "$greedy" >"$WORK/greedy_c.ids"
    if summary=$($PY tests/greedy_reference.py "$WORK/chat_model/model_00000008.bin" "$WORK/prompt.ids" \
        "$WORK/greedy_c.ids" 2>&1); then
        ok "chat: a llama model's greedy completion = PyTorch's greedy continuation: $summary"
    else
        not_ok "chat: llama greedy completion vs PyTorch: $summary"
    fi
else
    not_ok "chat on a llama model (see $WORK/train_chat.log, $WORK/chat.err)"
fi
# chatcu (llmc/kv_cache.cuh's llama_forward_step, FP32 emulated build): the same check
if [ "$CU_CHECKS" = 0 ]; then
    :
elif [ -x build/cuda/emu-fp32/chatcu ] && [ -f "$WORK/prompt.ids" ] &&
    greedy_cu=$(build/cuda/emu-fp32/chatcu -e "$WORK/chat_model/model_00000008.bin" --ids 1 --complete "$PROMPT" \
        --temperature 0 -n 20 2>"$WORK/chatcu.err") && echo "$greedy_cu" >"$WORK/greedy_cu.ids" &&
    summary=$($PY tests/greedy_reference.py "$WORK/chat_model/model_00000008.bin" "$WORK/prompt.ids" \
        "$WORK/greedy_cu.ids" 2>&1); then
    ok "chatcu (fp32, emulated): a llama model's greedy completion = PyTorch's greedy continuation: $summary"
else
    not_ok "chatcu on a llama model: ${summary:-} (see $WORK/chatcu.err)"
fi
# the GPU KV cache against the CUDA trainer's full forward (tests/test_generate_cu.cu: its bounds
# and planted off-by-one), GQA with QK-norm and multi-query (KV = 1), FP32 and BF16
[ "$CU_CHECKS" = 1 ] && for spec in "fp32|arch=llama,L=2,C=64,NH=4,KV=2,V=1000,maxT=64,qknorm=1" \
    "fp32|arch=llama,L=2,C=64,NH=4,KV=1,V=300,maxT=64" "bf16|arch=llama,L=2,C=64,NH=4,KV=2,V=1000,maxT=64,qknorm=1"; do
    IFS='|' read -r precision descriptor <<<"$spec"
    if [ -x build/cuda/emu-$precision/test_generate_cu ] &&
        run "generate_cu_$precision" build/cuda/emu-$precision/test_generate_cu "$descriptor"; then
        ok "test_generate_cu ($precision, emulated) $descriptor: KV-cache logits = full forward's, planted off-by-one fails, reset repeats bit for bit"
    else
        not_ok "test_generate_cu ($precision) $descriptor (see $WORK/generate_cu_$precision.log)"
    fi
done

# ---------------------------------------------------------------------------------------------
checks_summary
