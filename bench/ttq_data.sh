#!/usr/bin/env bash
# Train/val token shards for the time-to-quality benchmark (issue 20; bench/time_to_quality.sh
# calls it): tinyshakespeare + GSM8K train and test (question, answer) + Code Alpaca 2k
# (instruction, input, output) from ../shared/data, the last 5% of the documents of each source to
# val (bench/ttq.py corpus says how exactly), tokenized with GPT-2's BPE by our ./tokenizer into
# llm.c shards OUT/ttq_train_000000.bin and OUT/ttq_val_000000.bin (each document after an
# <|endoftext|>). Prints the token counts and writes them to OUT/tokens.txt.
#
# usage: bench/ttq_data.sh [--data DIR] [--out DIR] [--val-fraction F] [--max-docs N] [--compact-vocab]
#   --data DIR         the shared data directory (default ../shared/data)
#   --out DIR          output directory (default build/ttq/data; its shards are replaced)
#   --val-fraction F   last fraction of each source's documents that goes to val (default 0.05)
#   --max-docs N       only the first N documents of each source (0: all; the smoke test's tiny data)
#   --compact-vocab    renumber the tokens densely over the ids that occur (bench/ttq.py compact;
#                      "vocab V" in OUT/tokens.txt, the map in OUT/vocab_map.tsv)
set -eu
cd "$(dirname "$0")/.." || exit 1
DATA=../shared/data
OUT=build/ttq/data
VAL_FRACTION=0.05
MAX_DOCS=0
COMPACT=0
while [ $# -gt 0 ]; do
    case "$1" in
    --data) DATA=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --val-fraction) VAL_FRACTION=$2; shift 2 ;;
    --max-docs) MAX_DOCS=$2; shift 2 ;;
    --compact-vocab) COMPACT=1; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option '$1' (see --help)" >&2; exit 1 ;;
    esac
done
PYTHON=${PYTHON:-python3}
[ -x ./tokenizer ] || make --no-print-directory -s tokenizer
mkdir -p "$OUT"
rm -f "$OUT"/ttq_train_*.bin "$OUT"/ttq_val_*.bin "$OUT"/tokenizer.bin "$OUT"/vocab_map.tsv
"$PYTHON" bench/ttq.py corpus --data "$DATA" --out "$OUT" --val-fraction "$VAL_FRACTION" \
    --max-docs "$MAX_DOCS"
THREADS=${OMP_NUM_THREADS:-1}
./tokenizer prepare -v "$DATA/gpt2" -i "$OUT/train.jsonl" -o "$OUT" --name ttq --val-tokens 0 \
    -t "$THREADS" 2>"$OUT/prepare.err" | tail -n +2 | grep -v tokenizer.bin >"$OUT/prepare.log" || true
# (prepare removes the other shards of its --name as stale: val goes through a directory of its own)
rm -rf "$OUT/val_prepare"
./tokenizer prepare -v "$DATA/gpt2" -i "$OUT/val.jsonl" -o "$OUT/val_prepare" --name ttq \
    --val-tokens 2000000000 --tokenizer-name "" -t "$THREADS" 2>>"$OUT/prepare.err" | tail -n +2 >>"$OUT/prepare.log" || true
mv "$OUT"/val_prepare/ttq_val_*.bin "$OUT"/ 2>/dev/null || true
rm -rf "$OUT/val_prepare"
for split in train val; do
    [ -s "$OUT/ttq_${split}_000000.bin" ] || {
        echo "error: $OUT/ttq_${split}_000000.bin: not written by ./tokenizer prepare ($(grep -a "error" "$OUT/prepare.err" | tail -1))" >&2
        exit 1
    }
done
# shard header: 256 int32, the token count in slot 2 (docs/formats.md)
count() { od -An -t d4 -j 8 -N 4 "$1" | tr -d ' '; }
TRAIN_TOKENS=0
for f in "$OUT"/ttq_train_*.bin; do TRAIN_TOKENS=$((TRAIN_TOKENS + $(count "$f"))); done
VAL_TOKENS=0
for f in "$OUT"/ttq_val_*.bin; do VAL_TOKENS=$((VAL_TOKENS + $(count "$f"))); done
{
    echo "train_tokens $TRAIN_TOKENS"
    echo "val_tokens $VAL_TOKENS"
    echo "val_fraction $VAL_FRACTION"
    echo "max_docs $MAX_DOCS"
} >"$OUT/tokens.txt"
if [ "$COMPACT" = 1 ]; then
    "$PYTHON" bench/ttq.py compact --dir "$OUT"
    rm -f "$OUT/tokenizer.bin" # GPT-2's ids: it would decode the renumbered tokens wrongly
fi
echo "ttq data: $TRAIN_TOKENS train / $VAL_TOKENS val tokens (eot included) in $OUT"
column -t -s $'\t' "$OUT/sources.tsv" 2>/dev/null || cat "$OUT/sources.tsv"
