#!/usr/bin/env bash
# llm.c, exactly (issue 18; part of `make test`; alone: bash tests/test_llmc_exact.sh [DIR]):
# the shuffled loader's order, draw for draw, and its state files against
# tests/llmc_loader_reference.py (llm.c's mt19937, random_permutation and save_state re-implemented):
# batches over four epochs, our state's loader part byte for byte, resumes of llm.c-layout files
# (2,520-byte mt19937 state) and of our older ones (2,516 bytes, run record version 1) in the loader
# and in train_gpt2 (losses equal an uninterrupted run's); tinyshakespeare's --llmc-split shards
# (dev/data/tinyshakespeare.sh and .py) against tests/llmc_tinyshakespeare.py (llm.c's script with
# tiktoken: $TOKENIZER_PYTHON, build/venv-tiktoken, $PYTHON or python3). Ends with
# "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${1:+$1/llmc_exact}
WORK=${WORK:-$ROOT/build/llmc_exact_test}
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source tests/lib_checks.sh
make --no-print-directory -s "$BIN/train_gpt2" "$BIN/tokenizer" build/loader_order >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
REF=("$PY" tests/llmc_loader_reference.py)
ORDER=build/loader_order
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

check "the reference mt19937 gives llm.c's documented draws for seed 137" "${REF[@]}" selftest

# Three shards of random tokens; with B=2 T=8 (16 tokens a sample) they hold 7, 5 and 9 samples.
$PY - "$WORK" <<'PYEOF'
import random, struct, sys
rng = random.Random(18)
for name, samples, extra in (("a", 7, 1), ("b", 5, 3), ("c", 9, 12)):
    tokens = [rng.randrange(512) for _ in range(16 * samples + extra)]
    header = [20240520, 1, len(tokens)] + [0] * 253
    with open("%s/shard_%s.bin" % (sys.argv[1], name), "wb") as f:
        f.write(struct.pack("<256i", *header) + struct.pack("<%dH" % len(tokens), *tokens))
PYEOF
SHARDS="$WORK/shard_*.bin"
SAMPLES=7,5,9 # 21 batches an epoch

# 1. Four epochs and a bit (shard orders composed across epochs, samples reshuffled per shard).
$ORDER "$SHARDS" 2 8 42 90 >"$WORK/order.txt" 2>&1
"${REF[@]}" order $SAMPLES 42 0 90 >"$WORK/order_llmc.txt"
check "90 shuffled batches (4 epochs) are llm.c's, seed 42" cmp "$WORK/order.txt" "$WORK/order_llmc.txt"
"${REF[@]}" order $SAMPLES 43 0 90 >"$WORK/order_planted.txt"
if cmp -s "$WORK/order.txt" "$WORK/order_planted.txt"; then
    not_ok "planted error: llm.c's order for seed 43 equals ours for seed 42"
else
    ok "planted error: llm.c's order for seed 43 differs from ours for seed 42"
fi
# rank 1 of llm.c seeds 42 + 1: the loader of rank 0 with seed 43 gives its order
if "${REF[@]}" order $SAMPLES 42 1 90 | cmp -s - "$WORK/order_planted.txt"; then
    ok "llm.c's rank 1 (seed 42 + 1) is our seed 43's order"
else
    not_ok "llm.c's rank 1 (seed 42 + 1) differs from our seed 43's order"
fi

# 2. Our state file after 30 batches (second epoch, second shard) holds llm.c's loader state.
P=40
$ORDER "$SHARDS" 2 8 42 30 --write "$WORK/ours_30.bin" $P >"$WORK/write.log" 2>&1 ||
    not_ok "loader_order --write failed: $(tail -c 300 "$WORK/write.log")"
check "our state after 30 batches: position, orders and 2,520-byte mt19937 state are llm.c's" \
    "${REF[@]}" check $SAMPLES 42 0 30 "$WORK/ours_30.bin"
if "${REF[@]}" check $SAMPLES 42 0 31 "$WORK/ours_30.bin" >/dev/null; then
    not_ok "planted error: the reference takes our state after 30 batches for llm.c's after 31"
else
    ok "planted error: the reference tells our state after 30 batches from llm.c's after 31"
fi

# 3. Resume from llm.c's layout and from our older one: the next 60 batches are llm.c's.
"${REF[@]}" order $SAMPLES 42 0 90 | tail -n 60 >"$WORK/after_30.txt"
for layout in llmc short; do
    flag=""
    [ $layout = short ] && flag=--short
    "${REF[@]}" state $SAMPLES 42 0 30 "$WORK/${layout}_30.bin" $flag --from "$WORK/ours_30.bin"
    $ORDER "$SHARDS" 2 8 7 60 --resume "$WORK/${layout}_30.bin" $P >"$WORK/resumed_$layout.txt" 2>&1
    check "resume from a $layout-layout state (seed 7 at start): the next 60 batches are llm.c's" \
        cmp "$WORK/resumed_$layout.txt" "$WORK/after_30.txt"
done
size_llmc=$(stat -c %s "$WORK/llmc_30.bin")
size_short=$(stat -c %s "$WORK/short_30.bin")
if [ $((size_llmc - size_short)) = 4 ]; then
    ok "the two layouts differ by the mt19937 seed's 4 bytes"
else
    not_ok "llm.c layout $size_llmc bytes, short $size_short: expected 4 apart"
fi
# a short file that does not say so (run record version 2) is refused, naming the field
cp "$WORK/short_30.bin" "$WORK/short_v2.bin"
$PY -c 'import struct, sys
data = bytearray(open(sys.argv[1], "rb").read()); struct.pack_into("<i", data, 400, 2)
open(sys.argv[1], "wb").write(data)' "$WORK/short_v2.bin"
expect_error "a 2,516-byte loader rng under run record version 2 is refused" \
    "short_v2.bin: .* bytes after the loader sample count, expected .* loader rng" \
    $ORDER "$SHARDS" 2 8 7 60 --resume "$WORK/short_v2.bin" $P

# 4. train_gpt2: a shuffled run checkpointed at step 3, resumed from its step-3 state rewritten in
#    llm.c's layout and in our older one (the loader part recomputed by the reference): the
#    resumed steps' losses equal the uninterrupted run's.
MODEL="L=1,C=32,NH=2,V=512,maxT=16"
FLAGS=(-e "$MODEL" --seed 5 -i "$SHARDS" -j "" -b 2 -t 8 -d 32 -l 1e-3 -v 0 -s 0 --shuffle 1)
run full $BIN/train_gpt2 "${FLAGS[@]}" -x 6 -n 3 -o "$WORK/full" || not_ok "shuffled run failed (see $WORK/full.log)"
# -d 32 = 2 micro-batches a step: step 3's state follows 6 batches
check "train_gpt2's step-3 state holds llm.c's loader state after 6 batches" \
    "${REF[@]}" check $SAMPLES 5 0 6 "$WORK/full/state_00000003_00000.bin"
losses() { grep -E '^step +[456]/6 ' "$1" | cut -d '|' -f 1-4; } # step, loss, lr, norm
losses "$WORK/full.log" >"$WORK/full_losses.txt"
[ "$(wc -l <"$WORK/full_losses.txt")" = 3 ] || not_ok "no step 4..6 losses in $WORK/full.log"
for layout in llmc short; do
    dir=$WORK/resume_$layout
    mkdir -p "$dir"
    cp "$WORK/full/model_00000003.bin" "$WORK/full/DONE_00000003" "$dir/"
    flag=""
    [ $layout = short ] && flag=--short
    "${REF[@]}" state $SAMPLES 5 0 6 "$dir/state_00000003_00000.bin" $flag \
        --from "$WORK/full/state_00000003_00000.bin"
    run resume_$layout $BIN/train_gpt2 "${FLAGS[@]}" -x 6 -n 3 -o "$dir" -y 1 ||
        not_ok "resume from the $layout layout failed (see $WORK/resume_$layout.log)"
    losses "$WORK/resume_$layout.log" >"$WORK/resume_${layout}_losses.txt"
    check "train_gpt2 resumed from a $layout-layout state: steps 4-6 losses equal the full run's" \
        cmp "$WORK/resume_${layout}_losses.txt" "$WORK/full_losses.txt"
done
# planted error: the loader state of another seed (other batches) must change the losses
dir=$WORK/resume_planted
mkdir -p "$dir"
cp "$WORK/full/model_00000003.bin" "$WORK/full/DONE_00000003" "$dir/"
"${REF[@]}" state $SAMPLES 6 0 6 "$dir/state_00000003_00000.bin" --from "$WORK/full/state_00000003_00000.bin"
run resume_planted $BIN/train_gpt2 "${FLAGS[@]}" -x 6 -n 3 -o "$dir" -y 1 ||
    not_ok "resume from the planted state failed (see $WORK/resume_planted.log)"
losses "$WORK/resume_planted.log" >"$WORK/resume_planted_losses.txt"
if [ "$(wc -l <"$WORK/resume_planted_losses.txt")" = 3 ] &&
    ! cmp -s "$WORK/resume_planted_losses.txt" "$WORK/full_losses.txt"; then
    ok "planted error: resumed with another seed's loader state, the losses differ"
else
    not_ok "planted error: resumed with another seed's loader state, the losses are the full run's"
fi

# 4b. llm.c's descriptors the trainer refuses: its 13B's 5140 channels (not a multiple of its heads
#     of 128, which llm.c's assert refuses too) and a channel count not in its table.
expect_error "-e gpt3:c5140 is refused as llm.c refuses it" \
    "gpt3:c5140: 5140 channels are not a multiple of the head size 128" $BIN/train_gpt2 -e gpt3:c5140 -i "$SHARDS" -x 1
expect_error "-e gpt3:c999 is refused, naming the channels llm.c knows" \
    "unsupported GPT-3 channels 999 (use gpt3:c384" $BIN/train_gpt2 -e gpt3:c999 -i "$SHARDS" -x 1
expect_error "-e d66 is refused, naming the depths" "unsupported depth 66 (use d2, .* d84" \
    $BIN/train_gpt2 -e d66 -i "$SHARDS" -x 1

# 5. tinyshakespeare --llmc-split: the shell (./tokenizer) and Python preparations write llm.c's
#    shards byte for byte (tests/llmc_tinyshakespeare.py, tiktoken); the default split differs.
DATA=${LLMC_DATA_DIR:-$ROOT/../shared/data}
TIKTOKEN_PY=""
for candidate in "${TOKENIZER_PYTHON:-}" "$ROOT/build/venv-tiktoken/bin/python" "${PYTHON:-}" python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import tiktoken" >/dev/null 2>&1; then
        TIKTOKEN_PY=$candidate
        break
    fi
done
if [ -z "$TIKTOKEN_PY" ]; then
    not_ok "no python with tiktoken (bash scripts/install_deps.sh test makes build/venv-tiktoken): tinyshakespeare --llmc-split not compared"
elif [ ! -f "$DATA/tinyshakespeare.txt" ]; then
    not_ok "no $DATA/tinyshakespeare.txt: tinyshakespeare --llmc-split not compared"
else
    run ts_llmc "$TIKTOKEN_PY" tests/llmc_tinyshakespeare.py "$DATA/tinyshakespeare.txt" "$DATA/gpt2" "$WORK/ts_llmc" ||
        not_ok "the llm.c reference failed (see $WORK/ts_llmc.log)"
    run ts_sh env LLMC_DATA_DIR="$DATA" bash dev/data/tinyshakespeare.sh --llmc-split "$WORK/ts_sh" ||
        not_ok "tinyshakespeare.sh --llmc-split failed (see $WORK/ts_sh.log)"
    run ts_py "$TIKTOKEN_PY" dev/data/tinyshakespeare.py -i "$DATA/tinyshakespeare.txt" -v "$DATA/gpt2" \
        -o "$WORK/ts_py" --llmc-split || not_ok "tinyshakespeare.py --llmc-split failed (see $WORK/ts_py.log)"
    run ts_default "$TIKTOKEN_PY" dev/data/tinyshakespeare.py -i "$DATA/tinyshakespeare.txt" -v "$DATA/gpt2" \
        -o "$WORK/ts_default" || not_ok "tinyshakespeare.py failed (see $WORK/ts_default.log)"
    for split in val train; do
        file=tiny_shakespeare_$split.bin
        check "tinyshakespeare.sh --llmc-split: $file is llm.c's byte for byte" cmp "$WORK/ts_sh/$file" "$WORK/ts_llmc/$file"
        check "tinyshakespeare.py --llmc-split: $file is llm.c's byte for byte" cmp "$WORK/ts_py/$file" "$WORK/ts_llmc/$file"
    done
    # planted error: the default cut and split give other shards (the comparison can fail)
    if cmp -s "$WORK/ts_default/tiny_shakespeare_train.bin" "$WORK/ts_llmc/tiny_shakespeare_train.bin"; then
        not_ok "planted error: the default (90/10, blank-line runs) train shard equals llm.c's"
    else
        ok "planted error: the default (90/10, blank-line runs) train shard differs from llm.c's"
    fi
fi

checks_summary
