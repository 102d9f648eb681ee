#!/usr/bin/env bash
# SFT tests (part of `make test`; alone: bash tests/test_sft.sh): the chat template and packing of
# `tokenizer prepare --sft` on the fixtures of every format (tokenizer show output checked exactly,
# mask semantics checked token by token), bad inputs, the masked loader, masked loss and gradients
# against PyTorch (scripts/train_gpt2.py --loss-mask, a fully masked row included), the unit checks
# of tests/test_sft.c (KV cache, zero gradient of masked rows), and train -> chat end to end.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${LLMC_SFT_TEST_DIR:-$ROOT/build/sft_test}
FIX=$ROOT/tests/fixtures/sft
DATA=${LLMC_DATA_DIR:-$ROOT/../shared/data}
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"

make --no-print-directory -s "$BIN/tokenizer" "$BIN/train_gpt2" "$BIN/test_gpt2" "$BIN/chat" "$UNIT_BIN/test_sft" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
PY3=python3
TORCH_PY=""
for candidate in "${PYTHON:-}" /usr/bin/python3 python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1; then TORCH_PY=$candidate; break; fi
done
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# the PyTorch references: with LLMC_REFERENCE_DIR, those an earlier run wrote (tests/lib_checks.sh)
TORCH_REF="$TORCH_PY scripts/train_gpt2.py"
[ -n "${LLMC_REFERENCE_DIR:-}" ] && [ -n "$TORCH_PY" ] && TORCH_REF=reused_reference

# ---------------------------------------------------------------------------------------------
# 1. unit checks (tests/test_sft.c): each line counts
$UNIT_BIN/test_sft >"$WORK/units.log" 2>&1
units_status=$?
while IFS= read -r line; do
    case $line in
    "ok - "*) ok "unit: ${line#ok - }" ;;
    "FAIL - "*) not_ok "unit: ${line#FAIL - }" ;;
    esac
done <"$WORK/units.log"
if [ "$units_status" -ne 0 ] && ! grep -q '^FAIL - ' "$WORK/units.log"; then
    not_ok "build/test_sft stopped early (exit $units_status, see $WORK/units.log)"
fi

# ---------------------------------------------------------------------------------------------
# 2. every format: prepare, show output exactly as expected, tokens and masks checked one by one
for spec in alpaca:alpaca.json messages:messages.jsonl sharegpt:sharegpt.json gsm8k:gsm8k.jsonl; do
    format=${spec%%:*}
    file=${spec#*:}
    out=$WORK/$format
    if ! $BIN/tokenizer prepare --sft "$format" --seq-len 40 --val-fraction 0 -i "$FIX/$file" -o "$out" \
        >"$WORK/prepare_$format.log" 2>&1; then
        not_ok "prepare --sft $format (see $WORK/prepare_$format.log)"
        continue
    fi
    ok "prepare --sft $format: $(head -1 "$WORK/prepare_$format.log")"
    $BIN/tokenizer show -v "$out/tokenizer.bin" -i "$out/data_train_000000.bin" >"$out/show.txt" 2>&1
    if cmp -s "$out/show.txt" "$FIX/$format.show.txt"; then
        ok "show $format: rows, [[trained spans]] and special tokens exactly as in $format.show.txt"
    else
        not_ok "show $format differs from tests/fixtures/sft/$format.show.txt: $(diff "$out/show.txt" "$FIX/$format.show.txt" | head -c 400)"
    fi
    # mask 1 exactly on assistant content and <|assistant_end|>; header T, V; rows of T+1 start
    # with <|endoftext|>; chat tokens at 50257..50262
    if $PY3 - "$out/data_train_000000.bin" "$out/data_train_000000.mask" >"$WORK/mask_$format.log" 2>&1 <<'EOF'; then
import struct, sys
tokens_path, mask_path = sys.argv[1], sys.argv[2]
t = open(tokens_path, "rb").read()
m = open(mask_path, "rb").read()
th = struct.unpack_from("<256i", t)
mh = struct.unpack_from("<256i", m)
assert th[0] == 20240520 and mh[0] == 20240610 and mh[1] == 1, (th[:3], mh[:3])
n = th[2]
assert mh[2] == n and mh[3] == 40 and mh[4] == 50263 and n % 41 == 0, mh[:5]
ids = struct.unpack_from(f"<{n}H", t, 1024)
mask = m[1024:]
assert len(mask) == n and mh[5] == sum(mask), (len(mask), mh[5], sum(mask))
EOT, US, UE, AS, AE, SS, SE = 50256, 50257, 50258, 50259, 50260, 50261, 50262
for r in range(n // 41):
    assert ids[r * 41] == EOT and mask[r * 41] == 0
in_assistant = False
for i, (tok, bit) in enumerate(zip(ids, mask)):
    if tok == AS:
        assert bit == 0, f"assistant start trained at {i}"
        in_assistant = True
        continue
    want = 1 if in_assistant else 0
    assert bit == want, f"token {i} ({tok}): mask {bit}, want {want}"
    if tok == AE:
        in_assistant = False
    assert not (in_assistant and tok in (EOT, US, UE, SS, SE)), f"special {tok} inside an answer at {i}"
print("ok")
EOF
        ok "masks $format: 1 exactly on assistant content and <|assistant_end|>, headers T=40 V=50263"
    else
        not_ok "masks $format: $(tail -c 300 "$WORK/mask_$format.log")"
    fi
done

# truncation: a conversation longer than T+1 is cut and counted; one left with nothing to train
# (the system one: its answer is past the cut) is dropped
$BIN/tokenizer prepare --sft messages --seq-len 12 --val-fraction 0 -i "$FIX/messages.jsonl" -o "$WORK/trunc" \
    >"$WORK/trunc.log" 2>&1
if grep -q "1 packed, 2 truncated to T+1 = 13 tokens, 1 dropped" "$WORK/trunc.log" &&
    $BIN/tokenizer show -v "$WORK/trunc/tokenizer.bin" -i "$WORK/trunc/data_train_000000.bin" >"$WORK/trunc.txt" &&
    [ "$(grep -c '^=== row' "$WORK/trunc.txt")" -eq 1 ] &&
    grep -q '^<|endoftext|><|user_start|>1+1?<|user_end|><|assistant_start|>\[\[2<|assistant_end|>\]\]' "$WORK/trunc.txt"; then
    ok "truncation: both conversations cut to T+1 = 13 and counted; the one with no answer left dropped"
else
    not_ok "truncation (see $WORK/trunc.log, $WORK/trunc.txt)"
fi
# best fit: the longest conversation that fits goes first, shorter ones fill the gaps
if head -2 "$FIX/alpaca.show.txt" | tail -1 | grep -q '^<|endoftext|><|user_start|>Say hi to'; then
    ok "packing is best fit: the longer alpaca record opens the row"
else
    not_ok "packing order (tests/fixtures/sft/alpaca.show.txt)"
fi
# the real data sets parse: gsm8k train (JSONL) and code_alpaca (a JSON array)
if [ -f "$DATA/gsm8k/train.jsonl" ]; then
    check "prepare --sft gsm8k on the 7,473 GSM8K train problems" \
        $BIN/tokenizer prepare --sft gsm8k --seq-len 256 -i "$DATA/gsm8k/train.jsonl" -o "$WORK/gsm8k_full"
    grep -q "7473 conversations" "$WORK/check.log" && ok "gsm8k: all 7473 conversations read" ||
        not_ok "gsm8k conversation count: $(head -1 "$WORK/check.log")"
fi
if [ -f "$DATA/sft/code_alpaca_2k.json" ]; then
    check "prepare --sft alpaca on code_alpaca_2k.json (a JSON array)" \
        $BIN/tokenizer prepare --sft alpaca --seq-len 256 -i "$DATA/sft/code_alpaca_2k.json" -o "$WORK/alpaca_full"
fi

# ---------------------------------------------------------------------------------------------
# 3. bad inputs: one line naming the file, line and field; exit 1; nothing written
expect_error "missing field" "bad_missing_field.jsonl: line 2: missing field 'answer'" \
    $BIN/tokenizer prepare --sft gsm8k --seq-len 40 -i "$FIX/bad_missing_field.jsonl" -o "$WORK/bad1"
expect_error "malformed JSONL" "bad_json.jsonl: line 2: not valid JSON" \
    $BIN/tokenizer prepare --sft gsm8k --seq-len 40 -i "$FIX/bad_json.jsonl" -o "$WORK/bad2"
expect_error "unknown role" "bad_role.jsonl: line 1: field 'messages\[1\].role' is 'robot'" \
    $BIN/tokenizer prepare --sft messages --seq-len 40 -i "$FIX/bad_role.jsonl" -o "$WORK/bad3"
expect_error "wrong format for the file" "gsm8k.jsonl: line 1: missing field 'instruction'" \
    $BIN/tokenizer prepare --sft alpaca --seq-len 40 -i "$FIX/gsm8k.jsonl" -o "$WORK/bad4"
expect_error "turn order" "field 'conversations': user and assistant messages must alternate" \
    $BIN/tokenizer prepare --sft sharegpt --seq-len 40 -i "$FIX/bad_order.json" -o "$WORK/bad5"
expect_error "malformed JSON array" "bad_array.json: line 3: expected ',' or ']'" \
    $BIN/tokenizer prepare --sft alpaca --seq-len 40 -i "$FIX/bad_array.json" -o "$WORK/bad6"
expect_error "unknown --sft format" "bad value 'chatml' for --sft" \
    $BIN/tokenizer prepare --sft chatml -i "$FIX/gsm8k.jsonl" -o "$WORK/bad7"
written=$(ls -d "$WORK"/bad* 2>/dev/null | wc -l)
[ "$written" -eq 0 ] && ok "failed prepares wrote nothing (no output directory)" ||
    not_ok "failed prepares left $written output directories"
# an earlier good output is left as it was by a failing run into the same directory
before=$(sha256sum "$WORK/gsm8k/data_train_000000.mask" | cut -c1-64)
$BIN/tokenizer prepare --sft gsm8k --seq-len 40 --val-fraction 0 -i "$FIX/gsm8k.jsonl" "$FIX/bad_json.jsonl" \
    -o "$WORK/gsm8k" >/dev/null 2>&1
after=$(sha256sum "$WORK/gsm8k/data_train_000000.mask" | cut -c1-64)
[ "$before" = "$after" ] && [ -z "$(ls -A "$WORK/gsm8k" | grep tmp)" ] &&
    ok "a failing prepare leaves the earlier shards and no temporary files" ||
    not_ok "a failing prepare changed $WORK/gsm8k"
# a plain (unmasked) shard and a tokenizer file without the chat tokens
$BIN/tokenizer prepare -i "$FIX/gsm8k.jsonl" --field question,answer --val-fraction 0 -o "$WORK/plain" >/dev/null 2>&1
expect_error "T of the mask shard is checked" "made for rows of T=40 (header\[3\]), but the sequence length is T=32" \
    $BIN/train_gpt2 -e d2 -i "$WORK/gsm8k/data_train_000000.bin" -j "" -b 1 -t 32 -x 1 -s 0
expect_error "--mask 1 without masks" "no mask shard beside it" \
    $BIN/train_gpt2 -e d2 -i "$WORK/plain/data_train_000000.bin" -j "" -b 1 -t 16 -x 1 -s 0 --mask 1
expect_error "show without a mask" "no mask shard" \
    $BIN/tokenizer show -i "$WORK/plain/data_train_000000.bin"

# ---------------------------------------------------------------------------------------------
# 4. masked loss and gradients against PyTorch, with a row that has no trained target
if [ -z "$TORCH_PY" ]; then
    not_ok "no python with torch: the masked reference checks are skipped"
else
    for config in "d2_b3_t32|d2|5|3|32|0.4|1" "v1000_b4_t19|L=2,C=64,NH=4,V=1000,maxT=64|6|4|19|0.7|0"; do
        IFS='|' read -r name descriptor seed B T fraction row <<<"$config"
        if $TORCH_REF --model "$descriptor" --seed "$seed" -b "$B" -t "$T" --steps 8 \
            --loss-mask "$fraction" --masked-row "$row" --write-model "$WORK/$name.bin" \
            --write-state "$WORK/${name}_state.bin" >"$WORK/ref_$name.log" 2>&1; then
            ok "masked reference dump $name ($(grep -m 1 -E 'loss mask|reused' "$WORK/ref_$name.log"), row $row all masked)"
        else
            not_ok "masked reference dump $name (see $WORK/ref_$name.log)"
            continue
        fi
        if $BIN/test_gpt2 -e "$WORK/$name.bin" -s "$WORK/${name}_state.bin" >"$WORK/test_$name.log" 2>&1; then
            ok "test_gpt2 $name: masked loss, 16 gradients and 8 AdamW steps match PyTorch"
        else
            not_ok "test_gpt2 $name (see $WORK/test_$name.log)"
        fi
    done
    # training on SFT shards with gradient accumulation (3 micro-batches a step, their trained
    # targets counted together) follows PyTorch step for step. Tolerance: tests/run_tests.sh's
    # PARITY_TOL and its model: a mean of n <= 384 targets, u*sqrt(2n/3)*10.8 + 1e-6 printed =
    # 1.1e-5, 10x that (measured <= 1e-6)
    if [ -f "$DATA/gsm8k/test.jsonl" ]; then
        head -300 "$DATA/gsm8k/test.jsonl" >"$WORK/parity.jsonl"
        $BIN/tokenizer prepare --sft gsm8k --seq-len 64 --val-fraction 0 -i "$WORK/parity.jsonl" -o "$WORK/parity" \
            >"$WORK/parity_prepare.log" 2>&1
        $TORCH_REF --model "L=2,C=64,NH=4,V=50263,maxT=64" --seed 3 \
            --write-model "$WORK/parity_model.bin" --mode none >"$WORK/parity_model.log" 2>&1
        $BIN/train_gpt2 -e "$WORK/parity_model.bin" -i "$WORK/parity/data_train_*.bin" -j "" -b 2 -t 64 -d 384 \
            -l 1e-3 -c 0.1 -x 8 -u 2 -q 0.1 -s 0 -o "$WORK/parity_c" >"$WORK/parity_c.log" 2>&1
        $TORCH_REF --mode train --model "$WORK/parity_model.bin" \
            --input "$WORK/parity/data_train_*.bin" -b 2 -t 64 -d 384 -l 1e-3 -c 0.1 --steps 8 -u 2 -q 0.1 \
            --losses "$WORK/parity_ref.txt" >"$WORK/parity_ref.log" 2>&1
        if summary=$($PY3 - "$WORK/parity_c/main.log" "$WORK/parity_ref.txt" <<'EOF'
import sys
c = {int(l.split()[0][2:]): float(l.split()[1][4:]) for l in open(sys.argv[1]) if " trl:" in l}
ref = {int(a): float(b) for a, b in (l.split() for l in open(sys.argv[2]) if l.strip())}
worst = max(abs(c[s] - ref[s]) for s in ref)
print("8 steps, max |diff| %.2e (tolerance 1e-4)" % worst)
sys.exit(0 if len(c) == len(ref) == 8 and worst <= 1e-4 else 1)
EOF
        ); then
            ok "masked training with accumulation over SFT shards matches PyTorch: $summary"
        else
            not_ok "masked training vs PyTorch: $summary (see $WORK/parity_c.log, $WORK/parity_ref.log)"
        fi
    fi
    # the check can fail: train one more target in the state's mask and the loss no longer matches
    $PY3 - "$WORK/d2_b3_t32_state.bin" "$WORK/flipped_state.bin" <<'EOF'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
B, T = struct.unpack_from("<2i", data, 8)
offset = len(data) - 4 * B * T
mask = list(struct.unpack_from(f"<{B*T}i", data, offset))
i = mask.index(0)
struct.pack_into("<i", data, offset + 4 * i, 1)
open(sys.argv[2], "wb").write(data)
EOF
    if $BIN/test_gpt2 -e "$WORK/d2_b3_t32.bin" -s "$WORK/flipped_state.bin" >"$WORK/flipped.log" 2>&1; then
        not_ok "a state whose mask trains one more target still passed (the mask is not checked)"
    else
        ok "(control) one more trained target in the mask: test_gpt2 fails ($(grep -c FAIL "$WORK/flipped.log") failed lines)"
    fi
fi

# ---------------------------------------------------------------------------------------------
# 5. end to end: masked training lowers the masked loss; the checkpoint chats and scores GSM8K
$BIN/tokenizer prepare --sft gsm8k --seq-len 64 --val-fraction 0 -i "$FIX/gsm8k.jsonl" -o "$WORK/e2e" >/dev/null 2>&1
$BIN/train_gpt2 -e d2 -i "$WORK/e2e/data_train_000000.bin" -j "$WORK/e2e/data_train_000000.bin" -b 1 -t 64 \
    -x 6 -l 3e-3 -v 6 -s 0 -o "$WORK/e2e_run" >"$WORK/e2e_train.log" 2>&1
first=$(grep -m1 'val loss' "$WORK/e2e_train.log" | awk '{print $5}')
last=$(grep 'val loss' "$WORK/e2e_train.log" | tail -1 | awk '{print $5}')
if grep -q "loss masks: on" "$WORK/e2e_train.log" && grep -q "V 50257 -> 50263" "$WORK/e2e_train.log" &&
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1) }'; then
    ok "train_gpt2 on SFT shards: masks on, V grown to 50263, masked loss $first -> $last in 6 steps"
else
    not_ok "SFT training (see $WORK/e2e_train.log)"
fi
# resume with masks: 2 steps, then resumed to 4 = 4 steps at once (the loader's position is in
# the state file; the lr is constant: -q 1)
$BIN/tokenizer prepare --sft alpaca --seq-len 24 --val-fraction 0 -i "$FIX/alpaca.json" -o "$WORK/resume_data" \
    >"$WORK/resume_prepare.log" 2>&1
resume_args=(-e d2 -i "$WORK/resume_data/data_train_000000.bin" -j "" -b 1 -t 24 -s 0 -l 1e-3)
$BIN/train_gpt2 "${resume_args[@]}" -x 4 -o "$WORK/resume_full" >"$WORK/resume_full.log" 2>&1
$BIN/train_gpt2 "${resume_args[@]}" -x 2 -o "$WORK/resume_part" >"$WORK/resume_part.log" 2>&1
$BIN/train_gpt2 "${resume_args[@]}" -x 4 -y 1 -o "$WORK/resume_part" >"$WORK/resume_again.log" 2>&1
if [ "$(grep -c trl "$WORK/resume_full/main.log" 2>/dev/null)" = 4 ] &&
    diff <(grep trl "$WORK/resume_full/main.log") <(grep trl "$WORK/resume_part/main.log") >/dev/null; then
    ok "masked training resumed after step 2 reproduces the 4-step run's losses exactly"
else
    not_ok "masked resume (see $WORK/resume_full.log, $WORK/resume_again.log)"
fi
model=$WORK/e2e_run/model_00000006.bin
if $BIN/chat -e "$model" -v "$WORK/e2e/tokenizer.bin" --prompt "What is 10 - 4?" --max-tokens 16 --temperature 0 \
    >"$WORK/chat.log" 2>&1 && [ -s "$WORK/chat.log" ]; then
    ok "chat --prompt answers and exits: $(head -c 80 "$WORK/chat.log" | tr '\n' ' ')"
else
    not_ok "chat --prompt (see $WORK/chat.log)"
fi
printf 'What is 10 - 4?\n/reset\nTom has 3 apples and buys 2 more. How many apples?\n' |
    $BIN/chat -e "$model" -v "$WORK/e2e/tokenizer.bin" --max-tokens 8 >"$WORK/chat_multi.log" 2>&1 &&
    ok "chat keeps a conversation over stdin turns and /reset" || not_ok "chat over stdin (see $WORK/chat_multi.log)"
if $BIN/chat -e "$model" -v "$WORK/e2e/tokenizer.bin" --eval-gsm8k "$FIX/gsm8k.jsonl" --temperature 0 --max-tokens 32 \
    >"$WORK/eval.log" 2>&1 && grep -q "gsm8k exact match: [0-2] / 2" "$WORK/eval.log"; then
    ok "chat --eval-gsm8k scores exact match: $(tail -1 "$WORK/eval.log")"
else
    not_ok "chat --eval-gsm8k (see $WORK/eval.log)"
fi
expect_error "chat needs the chat tokens" "no special token <|user_start|>" \
    $BIN/chat -e "$model" -v "$WORK/plain/tokenizer.bin"

# ---------------------------------------------------------------------------------------------
checks_summary
