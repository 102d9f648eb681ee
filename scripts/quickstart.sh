#!/usr/bin/env bash
# Quick start: prepare tinyshakespeare, then train a small GPT-2 and sample from it.
# Uses the CUDA trainer (train_gpt2cu, bf16) when there is a GPU and nvcc to build it, else the CPU.
# Extra arguments go to the trainer and override the defaults below, e.g.  -x 50 -e d2
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=dev/data/tinyshakespeare
if [ ! -f "$DATA/tiny_shakespeare_train.bin" ] || [ ! -f "$DATA/gpt2_tokenizer.bin" ]; then
    bash dev/data/tinyshakespeare.sh # ./tokenizer prepare: GPT-2 BPE in C, no Python
fi

TRAINER=./train_gpt2
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    if make --no-print-directory train_gpt2cu; then
        TRAINER=./train_gpt2cu
    else
        echo "note: a GPU is present but train_gpt2cu did not build (nvcc?): training on the CPU"
    fi
fi
if [ "$TRAINER" = ./train_gpt2 ]; then
    make --no-print-directory train_gpt2
fi
echo "trainer: $TRAINER"

OUT=out/quickstart
rm -rf "$OUT"
# d4: 4 layers, 256 channels (16M parameters with GPT-2's 50,257-token vocabulary)
exec $TRAINER -e d4 -i "$DATA/tiny_shakespeare_train.bin" -j "$DATA/tiny_shakespeare_val.bin" \
    -b 4 -t 64 -x 150 -l 1e-3 -u 10 -q 0.1 -c 0.1 -v 50 -m 10 -s 150 -g 96 -o "$OUT" "$@"
