#!/usr/bin/env bash
# Tokenize tinyshakespeare with GPT-2's BPE into llm.c data shards, in C (./tokenizer prepare), with
# no Python: the same shards as tinyshakespeare.py, byte for byte (tests/test_tokenizer.sh checks).
#
#   bash dev/data/tinyshakespeare.sh [--llmc-split] [OUT_DIR]   (default dev/data/tinyshakespeare)
#
# Writes OUT_DIR/tiny_shakespeare_train.bin, tiny_shakespeare_val.bin (uint16 shards) and
# gpt2_tokenizer.bin (our tokenizer file: llm.c's, plus the merges). By default documents are cut
# after each blank-line run, each preceded by <|endoftext|>; train is the first 90% of the tokens,
# val the rest. --llmc-split: llm.c's shards byte for byte instead (its dev/data/tinyshakespeare.py:
# a document after each "\n\n", val the first 32,768 tokens, train the rest). dev/data/README.md. Inputs: ../shared/data beside the checkout, else $LLMC_DATA_DIR, else
# dev/data/cache/, else downloaded from the canonical URLs and checked against pinned sha256s.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SPLIT=(--docs blank-lines --val-fraction 0.1)
if [ "${1:-}" = --llmc-split ]; then
    SPLIT=(--docs double-newline --val-tokens 32768)
    shift
fi
OUT=$(realpath -m "${1:-$HERE/tinyshakespeare}")

# find_data RELPATH URL SHA256: prints the path of a data file, downloading it if needed
find_data() {
    local relpath=$1 url=$2 sha=$3 candidate
    for candidate in "$ROOT/../shared/data/$relpath" "${LLMC_DATA_DIR:+$LLMC_DATA_DIR/$relpath}"; do
        if [ -n "$candidate" ] && [ -f "$candidate" ]; then
            echo "$candidate"
            return
        fi
    done
    local cached=$HERE/cache/$relpath
    if [ -f "$cached" ] && echo "$sha  $cached" | sha256sum -c --status; then
        echo "$cached"
        return
    fi
    mkdir -p "$(dirname "$cached")"
    echo "downloading $url -> $cached" >&2
    curl -fsSL "$url" -o "$cached.tmp$$" || { rm -f "$cached.tmp$$"; echo "error: cannot download $url" >&2; exit 1; }
    if ! echo "$sha  $cached.tmp$$" | sha256sum -c --status; then
        rm -f "$cached.tmp$$"
        echo "error: $url: sha256 differs from $sha" >&2
        exit 1
    fi
    mv "$cached.tmp$$" "$cached"
    echo "$cached"
}
GPT2_URL=https://openaipublic.blob.core.windows.net/gpt-2/encodings/main
TEXT=$(find_data tinyshakespeare.txt \
    https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt \
    86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed)
ENCODER=$(find_data gpt2/encoder.json $GPT2_URL/encoder.json \
    196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783)
find_data gpt2/vocab.bpe $GPT2_URL/vocab.bpe \
    1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5 >/dev/null

make -C "$ROOT" --no-print-directory -s tokenizer
"$ROOT/tokenizer" prepare -v "$(dirname "$ENCODER")" -i "$TEXT" -o "$OUT" --name tiny_shakespeare \
    "${SPLIT[@]}" --tokenizer-name gpt2_tokenizer.bin
# one shard per split: the names the trainer and llm.c use
mv -f "$OUT/tiny_shakespeare_train_000000.bin" "$OUT/tiny_shakespeare_train.bin"
mv -f "$OUT/tiny_shakespeare_val_000000.bin" "$OUT/tiny_shakespeare_val.bin"
echo "wrote $OUT/tiny_shakespeare_train.bin, $OUT/tiny_shakespeare_val.bin, $OUT/gpt2_tokenizer.bin"
