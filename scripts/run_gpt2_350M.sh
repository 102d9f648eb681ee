#!/usr/bin/env bash
# GPT-2 350M (d24) from scratch on FineWeb: 60000 steps x 524288 tokens = ~31B tokens (FineWeb
# 10B is then read about three times; point DATA at a bigger sample for fewer repeats).
# Usage: [NUM_GPUS=8] [DATA=dir] [OUT=dir] [STEPS=n] scripts/run_gpt2_350M.sh [extra trainer flags]
# Micro-batch 32 with GELU recompute (-r 1) is meant to fit an 80GB GPU; pass e.g. -b 64 to try
# more. -d must be a multiple of B*T*NUM_GPUS.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory train_gpt2cu
source scripts/lib_run.sh
OUT=${OUT:-out/gpt2_350M}
STEPS=${STEPS:-60000}
run_until_done "$OUT" "$STEPS" "${LAUNCH[@]}" "${COMMON[@]}" -o "$OUT" -x "$STEPS" \
    -e d24 -b 32 -t 1024 -r 1 -d 524288 -l 3e-4 -u 700 -q 0.0 -c 0.1 "$@"
