#!/usr/bin/env bash
# The SFT pipeline end to end at toy size (a few CPU minutes): a 4k BPE vocabulary trained on GSM8K
# text, a 4-layer model pretrained briefly on that text, fine-tuned on GSM8K train with loss
# masks, then scored on the first N problems of GSM8K test by exact match of "#### <number>".
# No Python. Usage: bash scripts/sft_gsm8k_demo.sh [OUT_DIR] (default build/sft_demo).
# PRETRAIN_STEPS, SFT_STEPS and EVAL_COUNT override the sizes; OMP_NUM_THREADS the threads.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/sft_demo}
DATA=${LLMC_DATA_DIR:-../shared/data}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-80}
SFT_STEPS=${SFT_STEPS:-60}
EVAL_COUNT=${EVAL_COUNT:-50}
MODEL="L=4,C=128,NH=4,V=4090,maxT=256"
rm -rf "$OUT/pretrain_run" "$OUT/sft_run"
mkdir -p "$OUT"
make --no-print-directory -s tokenizer train_gpt2 chat

# 1. a 4,090-token vocabulary trained on the GSM8K train text (V rounds up to Vp = 4096: the six
#    chat tokens go to ids 4090..4095, the padded rows)
./tokenizer prepare -i "$DATA/gsm8k/train.jsonl" --field question,answer --name text -o "$OUT/gpt2_text"
./tokenizer decode -v "$OUT/gpt2_text/tokenizer.bin" -i "$OUT/gpt2_text/text_train_000000.bin" >"$OUT/train.txt"
./tokenizer train -i "$OUT/train.txt" --vocab-size 4090 -o "$OUT/vocab4k.bin"

# 2. pretraining shards (question + answer as plain text) and SFT shards (chat template + masks)
./tokenizer prepare -v "$OUT/vocab4k.bin" -i "$DATA/gsm8k/train.jsonl" --field question,answer \
    --name gsm8k_text -o "$OUT/pretrain"
./tokenizer prepare -v "$OUT/vocab4k.bin" --sft gsm8k --seq-len 256 -i "$DATA/gsm8k/train.jsonl" \
    --name gsm8k_sft -o "$OUT/sft"
./tokenizer show -v "$OUT/sft/tokenizer.bin" -i "$OUT/sft/gsm8k_sft_val_000000.bin" -n 1

# 3. pretrain (plain next-token loss on every token)
./train_gpt2 -e "$MODEL" -i "$OUT/pretrain/gsm8k_text_train_*.bin" -j "$OUT/pretrain/gsm8k_text_val_*.bin" \
    -b 8 -t 256 -x "$PRETRAIN_STEPS" -l 2e-3 -u 5 -q 0.1 -v 20 -m 8 -s 0 -o "$OUT/pretrain_run"

# 4. fine-tune: the .mask files beside the shards switch the masked loss on; V grows 4090 -> 4096
#    and the chat-token rows start at the mean embedding
BASE=$(ls "$OUT"/pretrain_run/model_*.bin | tail -1)
./train_gpt2 -e "$BASE" -i "$OUT/sft/gsm8k_sft_train_*.bin" -j "$OUT/sft/gsm8k_sft_val_*.bin" \
    -b 8 -t 256 -x "$SFT_STEPS" -l 1e-3 -u 5 -q 0.1 -v 10 -m 16 -s 0 -o "$OUT/sft_run"

# 5. exact match on the first EVAL_COUNT GSM8K test problems, greedy and sampled, for the base
#    model (chat tokens at the mean embedding) and the fine-tuned one; then one sampled answer
SFT=$(ls "$OUT"/sft_run/model_*.bin | tail -1)
for model in "$BASE" "$SFT"; do
    for temperature in 0 0.7; do
        echo "$model, temperature $temperature:"
        OMP_NUM_THREADS=1 ./chat -e "$model" -v "$OUT/sft/tokenizer.bin" --eval-gsm8k "$DATA/gsm8k/test.jsonl" \
            --eval-count "$EVAL_COUNT" --temperature "$temperature" --max-tokens 200
    done
done
OMP_NUM_THREADS=1 ./chat -e "$SFT" -v "$OUT/sft/tokenizer.bin" --temperature 0.7 --max-tokens 150 \
    --prompt "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?"
