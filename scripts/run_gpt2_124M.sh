#!/usr/bin/env bash
# GPT-2 124M (d12) from scratch on FineWeb: 18865 steps x 524288 tokens = ~10B tokens.
# Usage: [NUM_GPUS=8] [DATA=dir] [OUT=dir] [STEPS=n] scripts/run_gpt2_124M.sh [extra trainer flags]
# Reruns with -y 1 until the final checkpoint exists (see scripts/lib_run.sh). Micro-batch 64
# suits an 80GB GPU; -d 524288 needs B*T*NUM_GPUS to divide it (NUM_GPUS 1, 2, 4 or 8).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory train_gpt2cu
source scripts/lib_run.sh
OUT=${OUT:-out/gpt2_124M}
STEPS=${STEPS:-18865}
run_until_done "$OUT" "$STEPS" "${LAUNCH[@]}" "${COMMON[@]}" -o "$OUT" -x "$STEPS" \
    -e d12 -b 64 -t 1024 -d 524288 -l 6e-4 -u 700 -q 0.0 -c 0.1 "$@"
