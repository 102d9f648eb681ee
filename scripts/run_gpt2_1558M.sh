#!/usr/bin/env bash
# GPT-2 1.5B (d48) from scratch on FineWeb: 32000 steps x 1048576 tokens = ~33B tokens (FineWeb
# 10B is then read about three times; point DATA at a bigger sample for fewer repeats).
# Usage: [NUM_GPUS=8] [DATA=dir] [OUT=dir] [STEPS=n] scripts/run_gpt2_1558M.sh [extra trainer flags]
# Micro-batch 8 with GELU recompute (-r 1) is meant to fit an 80GB GPU; pass e.g. -b 16 to try
# more. -d must be a multiple of B*T*NUM_GPUS.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory train_gpt2cu
source scripts/lib_run.sh
OUT=${OUT:-out/gpt2_1558M}
STEPS=${STEPS:-32000}
run_until_done "$OUT" "$STEPS" "${LAUNCH[@]}" "${COMMON[@]}" -o "$OUT" -x "$STEPS" \
    -e d48 -b 8 -t 1024 -r 1 -d 1048576 -l 2e-4 -u 700 -q 0.0 -c 0.1 "$@"
