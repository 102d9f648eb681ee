#!/usr/bin/env bash
# GPT-2 774M (d36) from scratch on FineWeb: 286102 steps x 524288 tokens = ~150B tokens. That is
# 15 passes over FineWeb 10B, so set DATA to a larger sample (e.g. llm.c's 100B one), or run a
# practical shorter schedule such as STEPS=38147 (~20B tokens).
# Usage: [NUM_GPUS=8] [DATA=dir] [OUT=dir] [STEPS=n] scripts/run_gpt2_774M.sh [extra trainer flags]
# Micro-batch 16 with GELU recompute (-r 1) is meant to fit an 80GB GPU; -d must be a multiple
# of B*T*NUM_GPUS.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory train_gpt2cu
source scripts/lib_run.sh
OUT=${OUT:-out/gpt2_774M}
STEPS=${STEPS:-286102}
run_until_done "$OUT" "$STEPS" "${LAUNCH[@]}" "${COMMON[@]}" -o "$OUT" -x "$STEPS" \
    -e d36 -b 16 -t 1024 -r 1 -d 524288 -l 2.5e-4 -u 700 -q 0.0 -c 0.1 "$@"
