#!/usr/bin/env bash
# Quick start: install what is missing, tokenize tinyshakespeare, train a small GPT-2 (d4, 16M
# parameters) for 150 steps, sample from it and print the ./chat command that samples more. Uses
# the GPU (train_gpt2cu, bf16) when nvidia-smi sees one and nvcc builds it, else the CPU (train_gpt2).
#
#   bash scripts/quickstart.sh [TRAINER FLAGS...]     e.g.  -x 50 -e d2
#
# Set-up: scripts/install_deps.sh quickstart (gcc, make, pkg-config, json-c from Debian's packages;
# curl if ../shared/data is absent). Each run writes a new directory out/quickstart/YYYYmmdd-HHMMSS/
# (main.log, the final checkpoint): earlier runs are never touched. Extra flags go to the trainer and
# override the defaults below (--help lists them: ./train_gpt2 --help).
set -euo pipefail
cd "$(dirname "$0")/.."

# --help here, or -h alone (trainer flags may use -h with a value, as llm.c's HellaSwag flag does);
# a -o among the trainer flags names the output directory instead of the dated one
USER_OUT=""
previous=""
for arg in "$@"; do
    if [ "$arg" = --help ] || { [ "$arg" = -h ] && [ $# -eq 1 ]; }; then
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
    fi
    [ "$previous" = -o ] && USER_OUT=$arg
    previous=$arg
done

bash scripts/install_deps.sh quickstart

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
make --no-print-directory chat # to sample from the checkpoint afterwards

OUT=out/quickstart/$(date +%Y%m%d-%H%M%S)
while [ -e "$OUT" ]; do OUT="$OUT-$RANDOM"; done # two runs in one second
# (the trainer takes the last -o; it refuses a directory that already holds checkpoints)
[ -n "$USER_OUT" ] && OUT=$USER_OUT
echo "trainer: $TRAINER, output: $OUT"
# d4: 4 layers, 256 channels (16M parameters with GPT-2's 50,257-token vocabulary)
$TRAINER -e d4 -i "$DATA/tiny_shakespeare_train.bin" -j "$DATA/tiny_shakespeare_val.bin" \
    -b 4 -t 64 -x 150 -l 1e-3 -u 10 -q 0.1 -c 0.1 -v 50 -m 10 -s 150 -g 96 -o "$OUT" "$@"

# the last checkpoint's name (model_%08d.bin of the last step, whatever -x was)
LAST_MODEL=$(cd "$OUT" && ls model_*.bin 2>/dev/null | tail -n 1)
cat <<EOF

done: $OUT/main.log holds the losses, $OUT/$LAST_MODEL the trained weights
(and tokenizer.bin beside them).
sample from it (continue a text; -n tokens, --temp, --seed; ./chat --help):
  ./chat -e $OUT/$LAST_MODEL --complete "ROMEO:" -n 100
next:
  bash scripts/test.sh                  # run every test (the README's second command)
  bash scripts/quickstart.sh -x 1000    # train longer; each run gets a new directory
  README.md                             # bigger models, the GPU trainer, fine-tuning (SFT) and chat
EOF
