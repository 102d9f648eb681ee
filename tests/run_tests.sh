#!/usr/bin/env bash
# The test suite behind `make test`: regenerates the PyTorch reference dumps (so they can never go
# stale) and checks the CPU trainer against them, plus file-format, resume and bad-input checks.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
# LLMC_TEST_START: when `make test` started (its builds count too), else now
TEST_START=${LLMC_TEST_START:-$(date +%s)}
ROOT=$(pwd)
WORK=${LLMC_TEST_DIR:-$ROOT/build/test}
rm -rf "$WORK"
mkdir -p "$WORK"
# ok, not_ok, run, check, expect_error, checks_summary
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"

# A Python with torch: $PYTHON, else Debian's system python3 (python3-torch), else python3.
find_python() {
    for candidate in "${PYTHON:-}" /usr/bin/python3 python3; do
        if [ -n "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
PY=$(find_python) || { echo "error: no python with torch found (apt-get install python3-torch)"; exit 1; }
REF="$PY $ROOT/scripts/train_gpt2.py"
echo "reference: $PY (torch $($PY -c 'import torch; print(torch.__version__)'))"
# The sanitized pass (section 15 runs it: LLMC_SANITIZE=1, tests/lib_checks.sh): sections 0-7,
# 11-13 and 16 again with the CPU binaries built with AddressSanitizer and UBSan, on the PyTorch outputs of
# the normal run in LLMC_REFERENCE_DIR. A sanitizer's report goes to a file in $WORK/sanitizer
# (checked at the end of the pass) and ends its program with exit 86, never 1, the exit of an
# expected error.
if [ "${LLMC_SANITIZE:-0}" = 1 ]; then
    mkdir -p "$WORK/sanitizer"
    export ASAN_OPTIONS="detect_leaks=1:exitcode=86:log_path=$WORK/sanitizer/report"
    export UBSAN_OPTIONS="print_stacktrace=1:exitcode=86:log_path=$WORK/sanitizer/report"
    [ -n "${LLMC_REFERENCE_DIR:-}" ] && REF=reused_reference
fi

# sub_suite LABEL LOG CMD...: runs a test script whose "ok - " and "FAIL - " lines count here as
# "LABEL: ..." (its output also in LOG); a script that does not end with "N passed, N failed" for
# as many checks as it printed fails here.
sub_suite() {
    local label=$1 log=$2 seen=0 line total
    shift 2
    while IFS= read -r line; do
        case "$line" in
        "ok - "*) ok "$label: ${line#ok - }" && seen=$((seen + 1)) ;;
        "FAIL - "*) not_ok "$label: ${line#FAIL - }" && seen=$((seen + 1)) ;;
        esac
    done < <("$@" 2>&1 | tee "$log")
    total=$(tail -1 "$log" | awk '/passed,.*failed$/ {print $1 + $3}')
    [ "${total:-x}" = "$seen" ] || not_ok "$label: $* did not finish (see $log)"
}

# section_mark NAME: the time since the previous mark goes to the last section (printed at the end,
# to see where the suite's minutes go; informational, never a check).
SECTION_NAME=setup
SECTION_START=$(date +%s)
SECTION_TIMES=""
section_mark() {
    local now
    now=$(date +%s)
    SECTION_TIMES="$SECTION_TIMES $SECTION_NAME=$((now - SECTION_START))s"
    SECTION_NAME=$1
    SECTION_START=$now
}

section_mark "0"
# ---------------------------------------------------------------------------------------------
# 0. Unit tests of the llmc/ headers: each of their checks counts as one here.
$UNIT_BIN/test_units "$WORK" >"$WORK/units.log" 2>&1
units_status=$?
while IFS= read -r line; do
    case $line in
    "ok - "*) ok "unit: ${line#ok - }" ;;
    "FAIL - "*) not_ok "unit: ${line#FAIL - }" ;;
    esac
done <"$WORK/units.log"
if [ "$units_status" -ne 0 ] && ! grep -q '^FAIL - ' "$WORK/units.log"; then
    not_ok "unit tests stopped early (exit $units_status, see $WORK/units.log)"
fi

section_mark "1"
# ---------------------------------------------------------------------------------------------
# 1. Reference dumps: several shapes and seeds, B=1, T not a multiple of 8, a small vocabulary.
#    name | descriptor | seed | B | T | extra reference flags
CONFIGS=(
    "d2_b4_t64|d2|1|4|64|"
    "l3c96_b1_t37|L=3,C=96,NH=3,V=50257,maxT=128|2|1|37|"
    "v1000_b3_t24_wd|L=2,C=64,NH=4,V=1000,maxT=64|3|3|24|-c 0.1 -l 1e-3"
    "d4_b2_t19|d4|4|2|19|--grad-clip 0.5"
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
        ok "test_gpt2 $name: logits, loss, 16 gradients, 10 AdamW steps match PyTorch"
    else
        not_ok "test_gpt2 $name (see $WORK/test_$name.log)"
    fi
    if run "init_$name" $BIN/test_gpt2 -e "$WORK/$name.bin" --init "$descriptor" --seed "$seed"; then
        ok "random init $descriptor seed $seed is bit-identical to PyTorch's"
    else
        not_ok "random init $descriptor seed $seed (see $WORK/init_$name.log)"
    fi
done
cat "$WORK/test_d2_b4_t64.log" 2>/dev/null

# The bf16 checkpoint (v5) loads and gives a loss close to fp32's. Each weight is rounded by at most
# u = 2^-8 of itself, so to first order |dloss| <= u * sum|w * dloss/dw| = 3.7e-3 relative for this
# model, and as the roundings' signs are independent of the gradient's, ~0.41u * ||w * grad|| =
# 4e-6 relative in practice (measured 9e-6, and 1.2e-5 over the 10 steps): 1e-3, 100x that. A logit
# moves by <= u per weight matrix on its path (2L+2 = 6) of 1 + |logit|: 2.3e-2, limit 5e-2
# (measured 1.9e-3). The gradients of rounded weights are other gradients: not checked (--grad-tol 1e9).
if run bf16_load $BIN/test_gpt2 -e "$WORK/d2_b4_t64_bf16.bin" -s "$WORK/d2_b4_t64_state.bin" \
    --logits-tol 5e-2 --loss-tol 1e-3 --grad-tol 1e9 --step-tol 1e-3; then
    ok "bf16 model file (version 5) loads; loss within 1e-3 of fp32"
else
    not_ok "bf16 model file (see $WORK/bf16_load.log)"
fi

section_mark "2"
# ---------------------------------------------------------------------------------------------
# 2. A corrupted reference must fail, naming what is wrong.
corrupt() { # corrupt SRC DST OFFSET [COUNT]: multiplies one float by 1.01; with COUNT, the float of
    # median magnitude among COUNT floats from OFFSET (a typical element, not an outlier)
    $PY - "$@" <<'EOF'
import struct, sys
src, dst, offset = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
data = bytearray(open(src, "rb").read())
values = struct.unpack_from("<%df" % count, data, offset)
order = sorted(range(count), key=lambda i: abs(values[i]))
pick = order[count // 2]
struct.pack_into("<f", data, offset + 4 * pick, values[pick] * 1.01)
open(dst, "wb").write(data)
EOF
}
scale_floats() { # scale_floats SRC DST OFFSET COUNT FACTOR: multiplies COUNT floats from OFFSET
    $PY - "$@" <<'EOF'
import struct, sys
src, dst, offset, count, factor = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
data = bytearray(open(src, "rb").read())
values = struct.unpack_from("<%df" % count, data, offset)
struct.pack_into("<%df" % count, data, offset, *[v * factor for v in values])
open(dst, "wb").write(data)
EOF
}
S=$WORK/d2_b4_t64_state.bin
BT=256
V=50257
LOGITS=$((1024 + 2 * 4 * BT))
LOSS=$((LOGITS + 4 * BT * V))
GRADS=$((LOSS + 4))
# d2: wte (50304x128), wpe (1024x128), ln1w, ln1b (2x128 each), then qkvw (2x384x128)
QKVW=$((GRADS + 4 * (50304 * 128 + 1024 * 128 + 4 * 128)))
NPARAMS=$(( (50304 + 1024) * 128 + 2 * (12 * 128 * 128 + 13 * 128) + 256 ))
STEP3=$((GRADS + 4 * NPARAMS + 4 * 3))
for spec in "logits|$LOGITS|$V|logits" "loss|$LOSS|1|loss" \
    "wte_grad|$GRADS|$((50257 * 128))|wte" "qkvw_grad|$QKVW|$((2 * 384 * 128))|qkvw" \
    "step_loss|$STEP3|1|step  3"; do
    IFS='|' read -r what offset count expect <<<"$spec"
    corrupt "$S" "$WORK/corrupt_$what.bin" "$offset" "$count"
    if $BIN/test_gpt2 -e "$WORK/d2_b4_t64.bin" -s "$WORK/corrupt_$what.bin" >"$WORK/corrupt_$what.log" 2>&1; then
        not_ok "corrupted reference ($what: a median element x1.01) passed: the test cannot fail"
    elif grep -q "$expect.*FAIL" "$WORK/corrupt_$what.log"; then
        ok "corrupted reference ($what: a median element x1.01) fails and names $expect"
    else
        not_ok "corrupted reference ($what) failed without naming $expect (see $WORK/corrupt_$what.log)"
    fi
done

section_mark "2b"
# ---------------------------------------------------------------------------------------------
# 2b. The llama family (tests/test_llama.sh, issue 20): sections 1-3's checks for arch=llama models
#     (QK-norm off/on, KV < NH, small vocabularies), corrupted references, bad descriptors and
#     headers, the emulated CUDA trainer (test_gpt2cu FP32/BF16 in every scheduling order,
#     train_gpt2cu against PyTorch with AdamW and Muon, resume, -r 1, the host pipeline, -z 0/1),
#     chat's and chatcu's greedy completions, the GPU KV cache. Each check counts here.
sub_suite llama "$WORK/llama.log" env LLMC_LLAMA_TEST_DIR="$WORK/llama" \
    ${LLMC_REFERENCE_DIR:+LLMC_REFERENCE_DIR="$LLMC_REFERENCE_DIR/llama"} bash tests/test_llama.sh

section_mark "3"
# ---------------------------------------------------------------------------------------------
# 3. train_gpt2 on a model file and unshuffled shards reproduces PyTorch's losses.
$PY - "$WORK" <<'EOF'
import random, struct, sys
work = sys.argv[1]
def shard(path, tokens, magic=20240520, version=1, fmt="H"):
    header = [0] * 256
    header[0:3] = [magic, version, len(tokens)]
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack("<%d%s" % (len(tokens), fmt), *tokens))
rng = random.Random(1234)
# text-like: a skewed unigram distribution so the model has something to learn
ids = [rng.randrange(50257) for _ in range(500)]
def draw(n):
    return [ids[min(int(rng.expovariate(0.05)), 499)] for _ in range(n)]
shard(work + "/train_000.bin", draw(6000))
shard(work + "/train_001.bin", draw(3000))
shard(work + "/val_000.bin", draw(2000))
shard(work + "/train_u32.bin", draw(3000), 20240801, 7, "I")
shard(work + "/bad_token.bin", draw(1000) + [60000] + draw(1000))
EOF
MODEL=$WORK/d2_b4_t64.bin
# Losses of two fp32 runs that sum in other orders (here: against PyTorch). A step's loss is the
# fp32 mean of n = B*T losses of ~10.8; summing them rounds by ~u*sqrt(n/3)*10.8 (u = 6e-8,
# random-walk model of a running sum), so two runs differ by ~u*sqrt(2n/3)*10.8 (8.5e-6 at n = 256),
# plus 1e-6 as main.log prints 6 decimals. AdamW (eps 1e-8) may move a weight whose gradient is
# rounding noise by up to lr the other way, but the loss is first-order insensitive to it (its
# gradient is that noise). PARITY_TOL is 10x the rounding (measured <= 6e-6 with every sgemm kernel
# and 1 or 2 threads), while a 1% learning-rate error moves these losses by 1.4e-2 (planted below).
PARITY_TOL=1e-4
parity() { # parity NAME "C flags" "reference flags"
    local name=$1 cflags=$2 pyflags=$3
    rm -rf "$WORK/$name"
    # shellcheck disable=SC2086
    if ! run "train_$name" $BIN/train_gpt2 -e "$MODEL" -i "$WORK/train_00*.bin" -j "$WORK/val_000.bin" \
        -v 0 -s 0 -o "$WORK/$name" $cflags; then
        not_ok "train $name (see $WORK/train_$name.log)"
        return
    fi
    # shellcheck disable=SC2086
    if ! run "ref_train_$name" $REF --mode train --model "$MODEL" --input "$WORK/train_00*.bin" \
        --losses "$WORK/$name.ref" $pyflags; then
        not_ok "reference train $name (see $WORK/ref_train_$name.log)"
        return
    fi
    local summary
    if summary=$(compare_losses "$name" "$WORK/$name/main.log" "$WORK/$name.ref" "$PARITY_TOL"); then
        ok "train_gpt2 $name matches PyTorch: $summary"
    else
        not_ok "train_gpt2 $name vs PyTorch: $summary"
    fi
}
parity "plain" "-b 4 -t 64 -l 1e-4 -c 0 -x 10 -u 0 -q 1.0" \
    "-b 4 -t 64 -l 1e-4 -c 0 --steps 10 -u 0 -q 1.0"
parity "accum_cosine_wd" "-b 2 -t 32 -d 256 -l 1e-3 -c 0.1 -x 12 -u 3 -q 0.1 -k cosine" \
    "-b 2 -t 32 -d 256 -l 1e-3 -c 0.1 --steps 12 -u 3 -q 0.1 -k cosine"
parity "wsd_noclip" "-b 3 -t 40 -l 2e-3 -x 10 -u 2 -q 0.0 -k wsd --grad-clip 0" \
    "-b 3 -t 40 -l 2e-3 --steps 10 -u 2 -q 0.0 -k wsd --grad-clip 0"
parity "linear" "-b 4 -t 16 -l 1e-3 -x 8 -u 0 -q 0.2 -k linear" \
    "-b 4 -t 16 -l 1e-3 --steps 8 -u 0 -q 0.2 -k linear"
# planted: a 1% error in the learning rate fails the same comparison
rm -rf "$WORK/planted_lr"
if ! run train_planted_lr $BIN/train_gpt2 -e "$MODEL" -i "$WORK/train_00*.bin" -j "$WORK/val_000.bin" -v 0 \
    -s 0 -o "$WORK/planted_lr" -b 2 -t 32 -d 256 -l 1.01e-3 -c 0.1 -x 12 -u 3 -q 0.1 -k cosine; then
    not_ok "train_gpt2 with a 1% learning-rate error did not run (see $WORK/train_planted_lr.log)"
elif summary=$(compare_losses planted "$WORK/planted_lr/main.log" "$WORK/accum_cosine_wd.ref" "$PARITY_TOL"); then
    not_ok "a 1% learning-rate error passes the comparison with PyTorch's losses: $summary"
else
    ok "(planted) a 1% learning-rate error fails the comparison with PyTorch's losses: $summary"
fi

section_mark "4"
# ---------------------------------------------------------------------------------------------
# 4. Checkpoints: resume continues bit for bit; the thread count does not change results.
resume_test() { # resume_test NAME EXTRA_FLAGS
    local name=$1 extra=$2
    local A=$WORK/${name}_a B=$WORK/${name}_b
    rm -rf "$A" "$B"
    local common="-e d2 --seed 7 -j $WORK/val_000.bin -b 2 -t 32 -x 6 -n 3 -l 1e-3 -u 2 -v 3 -m 2 -s 3 -g 4 $extra"
    # shellcheck disable=SC2086
    run "${name}_a" $BIN/train_gpt2 $common -i "$WORK/train_00*.bin" -o "$A" || { not_ok "$name: straight run"; return; }
    mkdir -p "$B"
    cp "$A/model_00000003.bin" "$A/state_00000003_00000.bin" "$A/DONE_00000003" "$B/"
    # shellcheck disable=SC2086
    run "${name}_b" $BIN/train_gpt2 $common -i "$WORK/train_00*.bin" -o "$B" -y 1 || { not_ok "$name: resumed run"; return; }
    if cmp -s "$A/model_00000006.bin" "$B/model_00000006.bin" &&
        cmp -s "$A/state_00000006_00000.bin" "$B/state_00000006_00000.bin" &&
        grep -q "resume: from step 3" "$WORK/${name}_b.log"; then
        ok "$name: 6 straight steps == 3 steps + resume + 3 steps (model and state bit-identical)"
    else
        not_ok "$name: resumed run differs (see $WORK/${name}_a.log, ${name}_b.log)"
    fi
}
resume_test "resume" ""
resume_test "resume_shuffled" "--shuffle 1 -d 128"

rm -rf "$WORK/threads1" "$WORK/threads2"
OMP_NUM_THREADS=1 run threads1 $BIN/train_gpt2 -e d2 -i "$WORK/train_00*.bin" -b 2 -t 32 -x 2 -v 0 -s 0 -o "$WORK/threads1"
OMP_NUM_THREADS=2 run threads2 $BIN/train_gpt2 -e d2 -i "$WORK/train_00*.bin" -b 2 -t 32 -x 2 -v 0 -s 0 -o "$WORK/threads2"
if cmp -s "$WORK/threads1/model_00000002.bin" "$WORK/threads2/model_00000002.bin"; then
    ok "1 and 2 threads give bit-identical weights after 2 steps"
else
    not_ok "thread count changes results"
fi

# uint32 shards (llm.c's version-7 format) train too
if run u32 $BIN/train_gpt2 -e d2 -i "$WORK/train_u32.bin" -b 2 -t 32 -x 2 -v 0 -s 0; then
    ok "uint32 token shards (magic 20240801) load"
else
    not_ok "uint32 token shards (see $WORK/u32.log)"
fi

section_mark "5"
# ---------------------------------------------------------------------------------------------
# 5. Bad input: one clear line naming the file or field, exit 1, nothing overwritten.
head -c 5000 "$MODEL" >"$WORK/truncated_model.bin"
$PY -c "
import sys; d = bytearray(open('$MODEL','rb').read()); d[0] ^= 0xff; open('$WORK/bad_magic.bin','wb').write(d)
d = bytearray(open('$MODEL','rb').read()); d[4] = 4; open('$WORK/bad_version.bin','wb').write(d)
d = bytearray(open('$MODEL','rb').read()); d[20] = 7; open('$WORK/bad_heads.bin','wb').write(d)
d = bytearray(open('$WORK/train_000.bin','rb').read()); open('$WORK/truncated_shard.bin','wb').write(d[:-7])
"
T_FLAGS="-i $WORK/train_000.bin -v 0 -s 0 -x 1"
expect_error "truncated model" "truncated_model.bin.*expected" $BIN/train_gpt2 -e "$WORK/truncated_model.bin" $T_FLAGS
expect_error "wrong magic" "bad_magic.bin.*magic" $BIN/train_gpt2 -e "$WORK/bad_magic.bin" $T_FLAGS
expect_error "wrong version" "bad_version.bin.*version" $BIN/train_gpt2 -e "$WORK/bad_version.bin" $T_FLAGS
expect_error "C not divisible by NH" "bad_heads.bin.*NH" $BIN/train_gpt2 -e "$WORK/bad_heads.bin" $T_FLAGS
expect_error "token id >= V" "bad_token.bin.*60000.*V=50257" $BIN/train_gpt2 -e d2 -i "$WORK/bad_token.bin" -b 4 -t 64 -v 0 -s 0 -x 20
expect_error "missing shard" "no data files match .*nonexistent" $BIN/train_gpt2 -e d2 -i "$WORK/nonexistent_*.bin" -v 0 -s 0
expect_error "truncated shard" "truncated_shard.bin.*bytes" $BIN/train_gpt2 -e d2 -i "$WORK/truncated_shard.bin" -v 0 -s 0
expect_error "T > maxT" "-t.*maxT=64" $BIN/train_gpt2 -e "$WORK/v1000_b3_t24_wd.bin" -i "$WORK/train_000.bin" -t 128 -v 0 -s 0
expect_error "unknown flag" "unknown flag '-Z'" $BIN/train_gpt2 -Z 1
expect_error "bad flag value" "bad value 'abc' for -b" $BIN/train_gpt2 -b abc
expect_error "flag without value" "needs a value" $BIN/train_gpt2 -x
expect_error "bad schedule" "-k" $BIN/train_gpt2 -k cosinus
expect_error "bad total batch" "-d" $BIN/train_gpt2 -b 4 -t 64 -d 1000
expect_error "bad descriptor" "descriptor" $BIN/train_gpt2 -e d7
expect_error "missing model file" "nothing.bin" $BIN/train_gpt2 -e "$WORK/nothing.bin"
head -c 100000 "$S" >"$WORK/truncated_state.bin"
expect_error "truncated debug state" "truncated_state.bin.*expected" $BIN/test_gpt2 -e "$MODEL" -s "$WORK/truncated_state.bin"
expect_error "debug state for another model" "d2_b4_t64_state.bin.*expected" \
    $BIN/test_gpt2 -e "$WORK/v1000_b3_t24_wd.bin" -s "$S"
before=$(sha256sum "$WORK/resume_a/model_00000006.bin" | cut -c1-64)
expect_error "existing checkpoints are not overwritten" "already holds checkpoints" \
    $BIN/train_gpt2 -e d2 -i "$WORK/train_000.bin" -v 0 -s 0 -x 1 -o "$WORK/resume_a"
after=$(sha256sum "$WORK/resume_a/model_00000006.bin" | cut -c1-64)
[ "$before" = "$after" ] && ok "checkpoint left untouched" || not_ok "checkpoint was modified"

section_mark "6"
# ---------------------------------------------------------------------------------------------
# 6. Tokenizer (tests/test_tokenizer.sh, against tiktoken): each of its checks counts here.
sub_suite tokenizer "$WORK/tokenizer.log" bash tests/test_tokenizer.sh

section_mark "7"
# ---------------------------------------------------------------------------------------------
# 7. SFT (tests/test_sft.sh): chat template, prepare --sft / show, masked loss and gradients vs
#    PyTorch, KV cache, chat. Each of its checks counts here.
sub_suite sft "$WORK/sft.log" env LLMC_SFT_TEST_DIR="$WORK/sft" \
    ${LLMC_REFERENCE_DIR:+LLMC_REFERENCE_DIR="$LLMC_REFERENCE_DIR/sft"} bash tests/test_sft.sh
# Generation and chat (tests/test_chat.sh): --complete against PyTorch's greedy continuation,
# the tokenizer kept beside checkpoints, context overflow, Ctrl-C by a signal, flags.
sub_suite chat "$WORK/chat.log" env LLMC_CHAT_TEST_DIR="$WORK/chat" bash tests/test_chat.sh

section_mark "7b"
# ---------------------------------------------------------------------------------------------
# 7b. llm.c, exactly (tests/test_llmc_exact.sh, issue 18): the shuffled loader's batches and state
#     files against a re-implementation of llm.c's, resumes of llm.c-layout and older state files,
#     tinyshakespeare's --llmc-split shards against llm.c's script (tiktoken). Each check counts here.
sub_suite "llm.c exact" "$WORK/llmc_exact.log" bash tests/test_llmc_exact.sh "$WORK"
section_mark "7c"
# 7c. Time to quality (tests/test_ttq.sh, issue 20): bench/ttq.py's log parser and analysis on
#     hand-written logs with known answers, build/ttq_plot, and bench/time_to_quality.sh --smoke
#     end to end (data, lr sweep, analysis, plot, summary) in under a minute.
sub_suite ttq "$WORK/ttq.log" bash tests/test_ttq.sh "$WORK"

# Sections 11-13 (issue 15) as one function: the sanitized pass runs them right after section 7
# with its CPU programs sanitized (the emulated CUDA trainer in them runs as built), the normal
# pass after section 10.
hostile_input_sections() {
    # 11. Hostile inputs (tests/test_hostile_inputs.sh): crafted state files, model headers,
    #     descriptors, -b/-t and tokenizer files whose sizes overflow, one flipped bit in a model or
    #     state file (the CRC-32C), names that are not file names, directories where files are
    #     expected; both trainers, one error line and exit 1 each. It reuses section 3's shards.
    sub_suite hostile "$WORK/hostile.log" env LLMC_HOSTILE_TEST_DIR="$WORK/hostile" \
        LLMC_HOSTILE_DATA_DIR="$WORK" bash tests/test_hostile_inputs.sh

    # ---------------------------------------------------------------------------------------------
    # 12. Output directories (tests/test_run_dirs.sh, on section 3's shards): two trainers on one -o,
    #     resume with changed -e/-b/-t/-d, stale temporary files, main.log after a resume, a stray
    #     DONE marker, main.log write errors, -nk/-nm housekeeping. Each of its checks counts here.
    sub_suite "run dirs" "$WORK/run_dirs.log" bash tests/test_run_dirs.sh "$WORK"
    # 12b. A run's report.md and loss.svg (tests/test_report.sh): their contents against main.log
    #      (xmllint, tests/check_loss_svg.py), --plot on hand-written logs, both trainers.
    sub_suite report "$WORK/report.log" bash tests/test_report.sh "$WORK"

    # ---------------------------------------------------------------------------------------------
    # 13. Divergence (tests/test_divergence.sh): NaN runs of train_gpt2 and the emulated train_gpt2cu
    #     (fp32, bf16), refused non-finite checkpoints, the outlier detector on a planted spike and
    #     across resume, fastmath.h under UBSan. Reuses section 3's shard; each of its checks counts here.
    sub_suite divergence "$WORK/divergence.log" bash tests/test_divergence.sh "$WORK"
}

# ---------------------------------------------------------------------------------------------
# The sanitized pass ends here, after sections 11-13 and 16: every report is a failure. Sections 8-10
# run the CUDA trainer (the emulation has its own AddressSanitizer builds, section 8).
if [ "${LLMC_SANITIZE:-0}" = 1 ]; then
    section_mark "11-13"
    hostile_input_sections
    section_mark "16"
    sub_suite hf "$WORK/hf.log" bash tests/test_hf.sh "$WORK" # section 16
    section_mark end
    echo "section times:$SECTION_TIMES"
    reports=$(find "$WORK/sanitizer" -type f | sort)
    if [ -z "$reports" ]; then
        ok "no AddressSanitizer, LeakSanitizer or UBSan report from any program of sections 0-7, 11-13 and 16"
    else
        for report in $reports; do
            not_ok "sanitizer report $report: $(grep -m 1 -E "ERROR|runtime error|SUMMARY" "$report" | head -c 300)"
        done
    fi
    elapsed=$(($(date +%s) - TEST_START))
    echo "elapsed: $((elapsed / 60))m$(printf '%02d' $((elapsed % 60)))s (sanitized pass)"
    checks_summary
    exit
fi

section_mark "8"
# ---------------------------------------------------------------------------------------------
# 8. CUDA on the CPU emulation (tests/cuda_emu/run.sh, docs/cuda_emu.md): the emulation's tests,
#    dev/cuda kernel checks and test_gpt2cu (FP32, BF16) in forward/reverse/random scheduling
#    order, AddressSanitizer builds; test_gpt2cu uses section 1's v1000_b3_t24_wd dumps.
sub_suite cuda-emu "$WORK/cuda_emu.log" bash tests/cuda_emu/run.sh "$WORK"

section_mark "9"
# ---------------------------------------------------------------------------------------------
# 9. The CUDA trainer on the CPU emulation, beyond section 8's small-vocabulary check: the full
#    GPT-2 vocabulary (d2), B=1 with an odd T and 3 heads, d4 with clipping (bf16's worst case
#    measured), a corrupted reference that must fail,
#    train_gpt2cu's losses against PyTorch's (section 3's run), and bit-exact resume (section 4's).
export OMP_WAIT_POLICY=passive # idle OpenMP threads would otherwise starve the emulation's workers
for spec in "fp32|d2_b4_t64" "bf16|d2_b4_t64" "fp32|l3c96_b1_t37" "bf16|d4_b2_t19"; do
    IFS='|' read -r precision name <<<"$spec"
    if run "cu_${precision}_$name" ./build/cuda/emu-$precision/test_gpt2cu -e "$WORK/$name.bin" \
        -s "$WORK/${name}_state.bin" -o "$WORK/cu_work"; then
        ok "test_gpt2cu ($precision, emulated) $name: logits, loss, 16 gradients, 10 AdamW steps match PyTorch; every layer matches train_gpt2.c; repeat and save/reload bit-identical"
    else
        not_ok "test_gpt2cu ($precision, emulated) $name (see $WORK/cu_${precision}_$name.log)"
    fi
done
# Planted errors test_gpt2cu must fail, naming the tensor: FP32's element-wise limits a median qkvw
# gradient element 1% off (section 2's file); BF16's relative L2 limits (test_gpt2.cu: 2x the
# sqrt(R) * 1.6e-3 rounding model) a whole tensor 5% (gradients, limit 3%) or 4% (logits, 2.5%) off
scale_floats "$S" "$WORK/scaled_qkvw_grad.bin" "$QKVW" $((2 * 384 * 128)) 1.05
scale_floats "$S" "$WORK/scaled_logits.bin" "$LOGITS" $((BT * V)) 1.04
for spec in "fp32|corrupt_qkvw_grad|qkvw|a median element x1.01" \
    "bf16|scaled_qkvw_grad|qkvw|the whole tensor x1.05" "bf16|scaled_logits|logits|the whole tensor x1.04"; do
    IFS='|' read -r precision file expect what <<<"$spec"
    if ./build/cuda/emu-$precision/test_gpt2cu -e "$WORK/d2_b4_t64.bin" -s "$WORK/$file.bin" \
        -o "$WORK/cu_work" >"$WORK/cu_$file.log" 2>&1; then
        not_ok "test_gpt2cu ($precision) passed a reference with $expect off ($what): it cannot fail"
    elif grep -q "^  $expect .*FAIL" "$WORK/cu_$file.log"; then
        ok "test_gpt2cu ($precision, emulated) fails on a reference with $expect off ($what) and names it"
    else
        not_ok "test_gpt2cu ($precision) failed on $file without naming $expect (see $WORK/cu_$file.log)"
    fi
done
for spec in "plain|-b 4 -t 64 -l 1e-4 -c 0 -x 10 -u 0 -q 1.0" \
    "accum_cosine_wd|-b 2 -t 32 -d 256 -l 1e-3 -c 0.1 -x 12 -u 3 -q 0.1 -k cosine"; do
    IFS='|' read -r name flags <<<"$spec"
    rm -rf "$WORK/cu_$name"
    summary=""
    # shellcheck disable=SC2086
    if run "cu_train_$name" ./build/cuda/emu-fp32/train_gpt2cu -e "$MODEL" -i "$WORK/train_00*.bin" \
        -j "$WORK/val_000.bin" -v 0 -s 0 -o "$WORK/cu_$name" $flags &&
        summary=$(compare_losses "cu_$name" "$WORK/cu_$name/main.log" "$WORK/$name.ref" "$PARITY_TOL"); then
        ok "train_gpt2cu (fp32, emulated) $name matches PyTorch's losses: $summary"
    else
        not_ok "train_gpt2cu (fp32, emulated) $name vs PyTorch: $summary (see $WORK/cu_train_$name.log)"
    fi
done
A=$WORK/cu_resume_a
B=$WORK/cu_resume_b
rm -rf "$A" "$B"
CU_COMMON="-e d2 --seed 7 -j $WORK/val_000.bin -b 2 -t 32 -x 6 -n 3 -l 1e-3 -u 2 -v 3 -m 2 -s 3 -g 4"
# shellcheck disable=SC2086
if run cu_resume_a ./build/cuda/emu-bf16/train_gpt2cu $CU_COMMON -i "$WORK/train_00*.bin" -o "$A" &&
    mkdir -p "$B" && cp "$A/model_00000003.bin" "$A/state_00000003_00000.bin" "$A/DONE_00000003" "$B/" &&
    run cu_resume_b ./build/cuda/emu-bf16/train_gpt2cu $CU_COMMON -i "$WORK/train_00*.bin" -o "$B" -y 1 &&
    cmp -s "$A/model_00000006.bin" "$B/model_00000006.bin" &&
    cmp -s "$A/state_00000006_00000.bin" "$B/state_00000006_00000.bin"; then
    ok "train_gpt2cu (bf16, emulated): 6 straight steps == 3 steps + resume + 3 steps (bf16 model, master weights, AdamW state bit-identical)"
else
    not_ok "train_gpt2cu resume (see $WORK/cu_resume_a.log, cu_resume_b.log)"
fi
# -r 1 (GELU redone in backward) == -r 0 bit for bit, FP32 and BF16, the DGELU epilogue and its
# fallback, and a planted forward GELU from the fp32 accumulator that must break it
# (tests/test_recompute.sh, ~25 s); each of its checks counts here
sub_suite recompute "$WORK/recompute.log" bash tests/test_recompute.sh "$WORK"
# SFT loss masks (section 7's data): the masked reference dump, and masked training with
# accumulation equal to train_gpt2's losses: a mean of n <= 512 trained targets, so by the model
# above PARITY_TOL's u*sqrt(2n/3)*10.8 = 1.2e-5 + 1e-6 printed: 2e-5 (measured 0)
SFT=$WORK/sft
for precision in fp32 bf16; do
    if [ ! -e "$SFT/v1000_b4_t19_state.bin" ]; then
        not_ok "test_gpt2cu masked: no masked reference from section 7 ($SFT/v1000_b4_t19_state.bin)"
        break
    fi
    if run "cu_masked_$precision" ./build/cuda/emu-$precision/test_gpt2cu -e "$SFT/v1000_b4_t19.bin" \
        -s "$SFT/v1000_b4_t19_state.bin" -o "$WORK/cu_work"; then
        ok "test_gpt2cu ($precision, emulated): masked loss (a fully masked row), gradients, steps match PyTorch"
    else
        not_ok "test_gpt2cu ($precision, emulated) masked (see $WORK/cu_masked_$precision.log)"
    fi
done
if ls "$SFT"/alpaca_full/data_train_*.mask >/dev/null 2>&1; then
    rm -rf "$WORK/sft_cpu" "$WORK/sft_cu"
    SFT_FLAGS="-e d2 -t 256 -b 1 -d 512 -x 3 -v 3 -m 2 -s 0 -l 1e-3"
    SFT_TRAIN="$SFT/alpaca_full/data_train_*.bin"
    SFT_VAL="$SFT/alpaca_full/data_val_*.bin"
    summary=""
    # shellcheck disable=SC2086
    if run sft_cpu $BIN/train_gpt2 $SFT_FLAGS -i "$SFT_TRAIN" -j "$SFT_VAL" -o "$WORK/sft_cpu" &&
        run sft_cu ./build/cuda/emu-fp32/train_gpt2cu $SFT_FLAGS -i "$SFT_TRAIN" -j "$SFT_VAL" \
            -o "$WORK/sft_cu" &&
        summary=$($PY -c '
import sys
def read(path):
    return {l.split()[0] + l.split()[1][:4]: float(l.split()[1][4:]) for l in open(path)}
a, b = read(sys.argv[1]), read(sys.argv[2])
worst = max(abs(a[k] - b[k]) for k in a)
print("%d values, max |diff| %.1e" % (len(a), worst))
sys.exit(0 if a.keys() == b.keys() and worst <= 2e-5 else 1)' "$WORK/sft_cpu/main.log" "$WORK/sft_cu/main.log"); then
        ok "train_gpt2cu (fp32, emulated) SFT with loss masks and accumulation equals train_gpt2: $summary"
    else
        not_ok "train_gpt2cu SFT vs train_gpt2: $summary (see $WORK/sft_cpu.log, sft_cu.log)"
    fi
else
    not_ok "train_gpt2cu SFT: no masked shards from section 7 in $SFT/alpaca_full"
fi
expect_error "train_gpt2cu: --gemm-autotune 2" "bad value 2 for --gemm-autotune" \
    ./build/cuda/emu-bf16/train_gpt2cu --gemm-autotune 2 -e d2 -x 1
expect_error "train_gpt2cu: not enough GPU memory" "not enough GPU memory.*needs .* GiB" \
    ./build/cuda/emu-bf16/train_gpt2cu -e d12 -b 512 -t 1024 -x 1 -v 0 -s 0

section_mark "9b"
# ---------------------------------------------------------------------------------------------
# 9b. The prepared GPU check, bench/gpu_check.sh, end to end on the emulation (EMU=1, tests/
#     test_gpu_check.sh): --make-refs, every stage on a tiny model, a planted bad dump, the time
#     budget. Each of its checks counts here.
sub_suite "gpu_check" "$WORK/gpu_check.log" bash tests/test_gpu_check.sh "$WORK/gpu_check"

section_mark "10"
# ---------------------------------------------------------------------------------------------
# 9c. The training step's host pipeline (tests/test_host_pipeline.sh, docs/gpu_performance.md):
#     bit-identical to the host path (LLMC_SYNC_PIPELINE=1), at most one host wait per step,
#     planted pipeline bugs caught. Each of its checks counts here.
sub_suite "host_pipeline" "$WORK/host_pipeline.log" bash tests/test_host_pipeline.sh "$WORK"

# ---------------------------------------------------------------------------------------------
# 10. Data parallelism (docs/multi_gpu.md) on the CPU emulation, NCCL mapped onto MPI:
#     `mpirun -np 2` = two emulated GPUs. (a) 2 ranks x B = 1 rank x 2B, (b) ZeRO-1 = ZeRO-0,
#     (c) save on 2 ranks + resume on 2 = straight run, bit for bit; tcp and fs init, refusals,
#     a killed rank, SFT's loss normaliser over ranks.
MPI_RUN=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun --oversubscribe)
CU32=./build/cuda/emu-fp32/train_gpt2cu
CU16=./build/cuda/emu-bf16/train_gpt2cu
# model_diff A B TOL: max |difference| of two model files (fp32 v3 or bf16 v5)
model_diff() {
    $PY - "$1" "$2" "$3" <<'EOF'
import sys, numpy as np
def load(path):
    raw = open(path, "rb").read()
    version = np.frombuffer(raw[:1024], dtype=np.int32)[1]
    if version == 5:
        bits = np.frombuffer(raw[1024:], dtype=np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32)
    return np.frombuffer(raw[1024:], dtype=np.float32)
a, b = load(sys.argv[1]), load(sys.argv[2])
worst = float(np.abs(a - b).max()) if a.size == b.size else float("inf")
print("%d params, max |diff| %.2e (tolerance %g)" % (a.size, worst, float(sys.argv[3])))
sys.exit(0 if worst <= float(sys.argv[3]) else 1)
EOF
}
# log_diff A B TOL: max |difference| of the train and val losses of two main.log files
log_diff() {
    $PY - "$1" "$2" "$3" <<'EOF'
import sys
def read(path):
    return {l.split()[0] + l.split()[1][:4]: float(l.split()[1][4:]) for l in open(path)}
a, b = read(sys.argv[1]), read(sys.argv[2])
worst = max(abs(a[k] - b[k]) for k in a) if a and a.keys() == b.keys() else float("inf")
print("%d losses, max |diff| %.1e (tolerance %g)" % (len(a), worst, float(sys.argv[3])))
sys.exit(0 if worst <= float(sys.argv[3]) else 1)
EOF
}
if ! command -v mpirun >/dev/null; then
    not_ok "data parallelism: mpirun not found (Debian: apt-get install libopenmpi-dev openmpi-bin)"
else
    DP=$WORK/dp
    rm -rf "$DP"
    mkdir -p "$DP"
    # (a) accumulation (2 micro-steps), clipping, weight decay, cosine: the same data, split by rank.
    # The two sum each gradient over a step's 256 positions in other orders: |dg| ~ sqrt(256)*u*
    # sum|terms| = 9.6e-7 (u = 6e-8; a position's term of the mean loss's gradient is 1/256 of an
    # O(1) product, so sum|terms| <= 1). With AdamW's default eps (1e-8) lr*m/(sqrt(v)+eps) would
    # turn the sign noise of a near-zero gradient into a +-lr move of its weight; eps = 1e-2 keeps
    # its slope in g below lr/eps = 0.1, so 4 steps move a weight by < 4 * 2 * 0.1 * 9.6e-7 = 7.7e-7,
    # plus the last bit of each step's rounding of a weight up to ~1 (the layernorm gains), 4 * 1.2e-7:
    # weights to 2e-6 (measured 1.2e-7; a 1% lr error gives 2.7e-5, checked below). Losses: a mean of
    # n = 256, u*sqrt(2n/3)*10.8 + 1e-6 printed = 9.5e-6 (PARITY_TOL's model): 2e-5 (measured 1e-6).
    DP_FLAGS="-e d2 -j $WORK/val_000.bin -t 32 -d 256 -x 4 -v 4 -m 2 -s 0 -l 1e-3 -c 0.1 -u 1 -q 0.1 --eps 1e-2"
    summary=""
    wsummary=""
    # shellcheck disable=SC2086
    if run dp_1x4 $CU32 $DP_FLAGS -i "$WORK/train_00*.bin" -b 4 -o "$DP/1x4" &&
        run dp_2x2 "${MPI_RUN[@]}" -np 2 $CU32 $DP_FLAGS -i "$WORK/train_00*.bin" -b 2 -o "$DP/2x2" &&
        summary=$(log_diff "$DP/1x4/main.log" "$DP/2x2/main.log" 2e-5) &&
        wsummary=$(model_diff "$DP/1x4/model_00000004.bin" "$DP/2x2/model_00000004.bin" 2e-6); then
        ok "data parallel (fp32, emulated): 2 ranks x B=2 == 1 rank x B=4: $summary; weights $wsummary"
    else
        not_ok "data parallel 2x2 vs 1x4: $summary $wsummary (see $WORK/dp_1x4.log, dp_2x2.log)"
    fi
    # planted: the same comparison fails a 1% error in the learning rate
    # shellcheck disable=SC2086
    if ! run dp_1x4_lr $CU32 $DP_FLAGS -l 1.01e-3 -i "$WORK/train_00*.bin" -b 4 -o "$DP/1x4_lr"; then
        not_ok "data parallel (planted): the run with a 1% learning-rate error failed (see $WORK/dp_1x4_lr.log)"
    elif wsummary=$(model_diff "$DP/1x4_lr/model_00000004.bin" "$DP/2x2/model_00000004.bin" 2e-6); then
        not_ok "data parallel: a 1% learning-rate error passes the weights comparison ($wsummary)"
    else
        ok "data parallel (planted): a 1% learning-rate error fails the weights comparison: $wsummary"
    fi
    # NCCL with one rank changes nothing
    # shellcheck disable=SC2086
    if run dp_np1 "${MPI_RUN[@]}" -np 1 $CU32 $DP_FLAGS -i "$WORK/train_00*.bin" -b 4 -o "$DP/np1" &&
        grep -q "data parallel: 1 process(es) via mpi" "$WORK/dp_np1.log" &&
        cmp -s "$DP/1x4/model_00000004.bin" "$DP/np1/model_00000004.bin"; then
        ok "data parallel (fp32, emulated): mpirun -np 1 (NCCL, one rank) is bit-identical to a plain run"
    else
        not_ok "mpirun -np 1 differs from a plain run (see $WORK/dp_np1.log)"
    fi
    # (b) ZeRO-1 = ZeRO-0, bit for bit: reduce-scatter and all-reduce make the same sums, AdamW rounds
    # each element by its index and step, and with clipping both sum the norm per 1/processes slice
    ZB="-e d2 -j $WORK/val_000.bin -b 2 -t 32 -d 256 -x 4 -v 4 -m 2 -s 0 -l 1e-3 -c 0.1"
    # shellcheck disable=SC2086
    if run dp_z0 "${MPI_RUN[@]}" -np 2 $CU16 $ZB -i "$WORK/train_00*.bin" --grad-clip 0 -z 0 -o "$DP/z0" &&
        run dp_z1 "${MPI_RUN[@]}" -np 2 $CU16 $ZB -i "$WORK/train_00*.bin" --grad-clip 0 -z 1 -o "$DP/z1" &&
        grep -q "ZeRO-1" "$WORK/dp_z1.log" &&
        cmp -s "$DP/z0/model_00000004.bin" "$DP/z1/model_00000004.bin" &&
        cmp -s "$DP/z0/main.log" "$DP/z1/main.log"; then
        ok "ZeRO-1 (bf16, emulated, 2 ranks, sharded master weights and AdamW state): model and losses bit-identical to ZeRO-0"
    else
        not_ok "ZeRO-1 differs from ZeRO-0 (see $WORK/dp_z0.log, dp_z1.log)"
    fi
    # shellcheck disable=SC2086
    if run dp_z1_clip "${MPI_RUN[@]}" -np 2 $CU32 $DP_FLAGS -i "$WORK/train_00*.bin" -b 2 -z 1 -o "$DP/z1clip" &&
        cmp -s "$DP/2x2/main.log" "$DP/z1clip/main.log" &&
        cmp -s "$DP/2x2/model_00000004.bin" "$DP/z1clip/model_00000004.bin"; then
        ok "ZeRO-1 with clipping (fp32, emulated, 2 ranks): losses and model bit-identical to ZeRO-0"
    else
        not_ok "ZeRO-1 with clipping differs from ZeRO-0 (see $WORK/dp_2x2.log, dp_z1_clip.log)"
    fi
    # (c) save on 2 ranks, resume on 2 ranks: bit-identical (ZeRO-1, bf16, shuffled, accumulating)
    RA=$DP/resume_a
    RB=$DP/resume_b
    RES="-e d2 --seed 7 -j $WORK/val_000.bin -b 2 -t 32 -d 256 -x 6 -n 3 -l 1e-3 -u 2 -v 3 -m 2 -s 3 -g 4 -z 1 --shuffle 1"
    # shellcheck disable=SC2086
    if run dp_resume_a "${MPI_RUN[@]}" -np 2 $CU16 $RES -i "$WORK/train_00*.bin" -o "$RA" &&
        mkdir -p "$RB" && cp "$RA/model_00000003.bin" "$RA"/state_00000003_*.bin "$RA/DONE_00000003" "$RB/" &&
        run dp_resume_b "${MPI_RUN[@]}" -np 2 $CU16 $RES -i "$WORK/train_00*.bin" -o "$RB" -y 1 &&
        cmp -s "$RA/model_00000006.bin" "$RB/model_00000006.bin" &&
        cmp -s "$RA/state_00000006_00000.bin" "$RB/state_00000006_00000.bin" &&
        cmp -s "$RA/state_00000006_00001.bin" "$RB/state_00000006_00001.bin" &&
        grep -q "resume: from step 3" "$WORK/dp_resume_b.log"; then
        ok "ZeRO-1 (bf16, emulated): 2 ranks x 6 steps == 3 steps + resume on 2 ranks + 3 steps (model, both state shards bit-identical)"
    else
        not_ok "2-rank resume (see $WORK/dp_resume_a.log, dp_resume_b.log)"
    fi
    # shellcheck disable=SC2086
    expect_error "resume of a 2-rank checkpoint on 1 process is refused" \
        "written by 2 processes (header\[2\]), this run has 1" \
        $CU16 $RES -i "$WORK/train_00*.bin" -o "$RB" -y 1 -x 9
    # shellcheck disable=SC2086
    if run dp_wrong_zero "${MPI_RUN[@]}" -np 2 $CU16 $RES -i "$WORK/train_00*.bin" -o "$RB" -y 1 -x 9 -z 0; then
        not_ok "a ZeRO-1 checkpoint resumed with -z 0"
    elif grep -q "written with ZeRO stage 1 (header\[6\]), this run has -z 0" "$WORK/dp_wrong_zero.log"; then
        ok "resume of a ZeRO-1 checkpoint with -z 0 is refused, naming header[6]"
    else
        not_ok "-z mismatch on resume: no clear error (see $WORK/dp_wrong_zero.log)"
    fi
    if run dp_bad_d "${MPI_RUN[@]}" -np 2 $CU16 -e d2 -b 4 -t 64 -d 192 -x 1; then
        not_ok "-d 192 with 2 ranks x 4 x 64 accepted"
    elif grep -q "bad value 192 for -d: must be a positive multiple of B\*T\*processes = 4\*64\*2" \
        "$WORK/dp_bad_d.log"; then
        ok "-d that is not a multiple of B*T*processes is refused"
    else
        not_ok "-d check with 2 ranks (see $WORK/dp_bad_d.log)"
    fi
    # tcp and fs init give the same run as mpi (the emulated NCCL checks all ranks got one id)
    for method in "tcp|--init-server 127.0.0.1:$((29000 + RANDOM % 2000))" "fs|--init-dir $DP/fs_init"; do
        IFS='|' read -r name flags <<<"$method"
        # shellcheck disable=SC2086
        if run "dp_$name" "${MPI_RUN[@]}" -np 2 $CU32 $DP_FLAGS -i "$WORK/train_00*.bin" -b 2 \
            -o "$DP/$name" --init-method $name $flags &&
            grep -q "data parallel: 2 process(es) via $name" "$WORK/dp_$name.log" &&
            cmp -s "$DP/2x2/model_00000004.bin" "$DP/$name/model_00000004.bin"; then
            ok "init via $name (emulated, 2 ranks): the same model as via mpi"
        else
            not_ok "init via $name (see $WORK/dp_$name.log)"
        fi
    done
    if [ -d "$DP/fs_init" ] && [ -z "$(ls -A "$DP/fs_init")" ]; then
        ok "init via fs: rank 0 removes the NCCL id file once every rank has joined"
    else
        not_ok "init via fs: $DP/fs_init missing or not emptied"
    fi
    expect_error "tcp init: rank 0 unreachable ends with a timeout naming the rank" \
        "rank 1: cannot reach rank 0 at 127.0.0.1:9 within 2 s" \
        $CU16 -e d2 -x 1 --init-method tcp --init-server 127.0.0.1:9 --num-processes 2 \
        --process-rank 1 --nccl-timeout 2
    expect_error "fs init: no id file ends with a timeout naming the rank" \
        "rank 1: .*ncclUniqueId.bin did not appear within 1 s" \
        $CU16 -e d2 -x 1 --init-method fs --init-dir "$DP/empty" --num-processes 2 \
        --process-rank 1 --nccl-timeout 1
    expect_error "bad --init-server" "bad value 'localhost' for --init-server: expected HOST:PORT" \
        $CU16 --init-method tcp --init-server localhost --num-processes 2 --process-rank 1
    expect_error "bad --init-method" "bad value 'nfs' for --init-method" $CU16 --init-method nfs
    expect_error "bad -z" "bad value 2 for -z" $CU16 -z 2
    # a rank killed mid-run: mpirun ends the job naming it; the last checkpoint resumes and
    # finishes with the straight run's weights
    KA=$DP/kill_straight
    KB=$DP/kill
    KFLAGS="-e d2 -b 2 -t 32 -x 5 -n 2 -s 0 -v 0 -l 1e-3"
    # shellcheck disable=SC2086
    run dp_kill_straight "${MPI_RUN[@]}" -np 2 $CU16 $KFLAGS -i "$WORK/train_00*.bin" -o "$KA"
    command -v pgrep >/dev/null ||
        not_ok "killed rank: pgrep not found, no rank can be killed (Debian: procps; scripts/install_deps.sh test installs it)"
    # shellcheck disable=SC2086
    "${MPI_RUN[@]}" -np 2 $CU16 $KFLAGS -i "$WORK/train_00*.bin" -o "$KB" >"$WORK/dp_kill.log" 2>&1 &
    mpirun_pid=$!
    for _ in $(seq 1 600); do [ -e "$KB/DONE_00000002" ] && break; sleep 0.1; done
    for pid in $(pgrep -f "emu-bf16/train_gpt2cu.*$KB"); do
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then
            kill -9 "$pid"
        fi
    done
    wait "$mpirun_pid"
    kill_status=$?
    # shellcheck disable=SC2086
    if [ "$kill_status" -ne 0 ] && grep -q "process rank 1 .*exited on signal 9" "$WORK/dp_kill.log" &&
        [ ! -e "$KB/DONE_00000005" ] &&
        run dp_kill_resume "${MPI_RUN[@]}" -np 2 $CU16 $KFLAGS -i "$WORK/train_00*.bin" -o "$KB" -y 1 &&
        grep -q "resume: from step [24]" "$WORK/dp_kill_resume.log" &&
        cmp -s "$KA/model_00000005.bin" "$KB/model_00000005.bin"; then
        ok "a rank killed mid-run ends the job naming rank 1 (exit $kill_status); resuming from the last checkpoint gives the straight run's weights"
    else
        not_ok "killed rank (exit $kill_status; see $WORK/dp_kill.log, dp_kill_resume.log)"
    fi
    # SFT: the step's trained targets are counted over all ranks (the loss normaliser); a mean of
    # n <= 512 targets: u*sqrt(2n/3)*10.8 + 1e-6 printed = 1.3e-5 (PARITY_TOL's model): 2e-5 (measured 0)
    if ls "$SFT"/alpaca_full/data_train_*.mask >/dev/null 2>&1; then
        summary=""
        SFT_DP="-e d2 -t 256 -d 512 -x 3 -v 3 -m 2 -s 0 -l 1e-3"
        # shellcheck disable=SC2086
        if run dp_sft_1 $CU32 $SFT_DP -b 2 -i "$SFT/alpaca_full/data_train_*.bin" \
            -j "$SFT/alpaca_full/data_val_*.bin" -o "$DP/sft1" &&
            run dp_sft_2 "${MPI_RUN[@]}" -np 2 $CU32 $SFT_DP -b 1 -i "$SFT/alpaca_full/data_train_*.bin" \
                -j "$SFT/alpaca_full/data_val_*.bin" -o "$DP/sft2" &&
            summary=$(log_diff "$DP/sft1/main.log" "$DP/sft2/main.log" 2e-5); then
            ok "data parallel SFT (fp32, emulated): masked loss on 2 ranks x B=1 == 1 rank x B=2: $summary"
        else
            not_ok "data parallel SFT: $summary (see $WORK/dp_sft_1.log, dp_sft_2.log)"
        fi
    else
        not_ok "data parallel SFT: no masked shards from section 7 in $SFT/alpaca_full"
    fi
fi

section_mark "17"
# ---------------------------------------------------------------------------------------------
# 17. HellaSwag (tests/test_hellaswag.sh): tokenizer eval-file byte-identical to llm.c's writer,
#     bad JSONL lines, hostile eval files, -h of train_gpt2 and the emulated train_gpt2cu (fp32) on
#     a trained d2 against scripts/eval_hellaswag.py (PyTorch), -x 0. Each of its checks counts here.
sub_suite hellaswag "$WORK/hellaswag.log" env LLMC_HELLASWAG_TEST_DIR="$WORK/hellaswag" \
    bash tests/test_hellaswag.sh

section_mark "11-13"
# ---------------------------------------------------------------------------------------------
# 18. Muon (tests/test_muon.sh, issue 20): test_gpt2 against scripts/train_gpt2.py --optimizer
#     muon (10 steps, two shapes) and against two planted Muon bugs; train_gpt2 --optimizer muon on
#     shards against PyTorch's losses (and a planted lr error); resume bit for bit and refused with
#     the other optimizer; threads; bad flags; the emulated CUDA trainer: test_gpt2cu (fp32, bf16)
#     against the same references, train_gpt2cu on shards, the host pipeline == the host path,
#     2 ranks == 1, and 2 ranks with -z 1 (each Muon matrix on one rank) == -z 0 bit for bit
#     (fp32, bf16), a planted skipped broadcast, -z 1 resume. Each check counts here.
sub_suite muon "$WORK/muon.log" env LLMC_MUON_TEST_DIR="$WORK/muon" bash tests/test_muon.sh

# ---------------------------------------------------------------------------------------------
# 11-13: hostile inputs, output directories, divergence (hostile_input_sections, defined after
#        section 7, where the sanitized pass runs them).
hostile_input_sections

section_mark "14"
# ---------------------------------------------------------------------------------------------
# 14. Fuzzing (tests/fuzz/, issue 15): each libFuzzer harness of a loader of user files (model,
#     state, shard, mask, tokenizer, encoder.json + vocab.bpe, .tiktoken, SFT data, HuggingFace
#     config.json + model.safetensors, eval file) for
#     LLMC_FUZZ_SECONDS (default 20) from seeds our writers make; a crash, a leak or an error
#     that does not name the file fails, with the reproducer's path.
sub_suite fuzz "$WORK/fuzz.log" env FUZZ_SECONDS="${LLMC_FUZZ_SECONDS:-20}" FUZZ_WORK="$WORK/fuzz" \
    bash tests/fuzz/run.sh

section_mark "15"
# ---------------------------------------------------------------------------------------------
# 15. Sanitizers (make SANITIZE=1, issue 15): sections 0-7, 11-13 and 16 again with the CPU binaries
#     built with AddressSanitizer, LeakSanitizer and UBSan (build/sanitize/), on this run's PyTorch
#     outputs; every check counts here, and any sanitizer report fails.
sub_suite sanitized "$WORK/sanitized.log" env LLMC_SANITIZE=1 LLMC_TEST_START= \
    LLMC_TEST_DIR="$WORK/sanitized" LLMC_REFERENCE_DIR="$WORK" bash tests/run_tests.sh
grep "^section times:" "$WORK/sanitized.log" | sed 's/^/sanitized pass: /'

section_mark "16"
# ---------------------------------------------------------------------------------------------
# 16. HuggingFace (tests/test_hf.sh, with transformers from build/venv-hf): random GPT-2s made by
#     transformers (F32, BF16, F16, without the transformer. prefix) read with -e DIR by
#     test_gpt2 and both trainers, against transformers' loss; scripts/export_hf.py's directories
#     against from_pretrained's logits; hostile directories; planted errors. Each check counts here.
#     The sanitized pass runs it too (after sections 11-13).
sub_suite hf "$WORK/hf.log" bash tests/test_hf.sh "$WORK"

# ---------------------------------------------------------------------------------------------
section_mark end
echo "section times:$SECTION_TIMES"
elapsed=$(($(date +%s) - TEST_START))
echo "elapsed: $((elapsed / 60))m$(printf '%02d' $((elapsed % 60)))s (${LLMC_TEST_START:+build and }tests, $(nproc) cores)"
checks_summary
