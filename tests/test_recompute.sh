#!/usr/bin/env bash
# -r 1 (GELU outputs redone in backward) gives the same bits as -r 0 (issue 17; the argument for a
# GPU is in docs/gpu_performance.md, "GELU and -r 1"). On the CPU emulation, FP32 and BF16 builds:
#   1. train_gpt2cu with -r 0 and with -r 1, a few steps with gradient accumulation: identical
#      main.log, step lines and val losses, and byte-identical model and optimizer checkpoints
#      after every step (the forward is one code path in both modes, so the losses could only
#      differ through the weights: the checkpoints after each step check every gradient bit);
#   2. the same at C = 63, where cuBLASLt's DGELU epilogue refuses the GELU input (leading
#      dimension 4C not a multiple of 8) and the product + gelu_backward_inplace fallback runs;
#   3. planted: a copy of the trainer whose forward takes GELU from the matmul's fp32 accumulator
#      by another formula, equal in exact arithmetic (x * sigmoid(2u) for 0.5 x (1 + tanh u)) but
#      rounded differently, as the old forward did through cuBLASLt's GELU epilogue on a GPU, while
#      -r 1 recomputes it with our kernel from the stored pre-activation: the same comparison must
#      see a difference (FP32: the formula; BF16: the formula and the unrounded input).
# One "ok - " or "FAIL - " line per check, last line "N passed, N failed".
# usage: tests/test_recompute.sh [WORK_DIR]   (after make CUDA_EMU=1 of the emu-fp32 and
#        emu-bf16 train_gpt2cu builds)
set -u
cd "$(dirname "$0")/.." || exit 1
WORK=${1:-build/test_recompute}
WORK=$WORK/recompute
rm -rf "$WORK"
mkdir -p "$WORK"
export OMP_WAIT_POLICY=passive
PY=${PYTHON:-/usr/bin/python3}
JSONC_LIBS=$(pkg-config --libs json-c 2>/dev/null || echo -ljson-c)
passed=0
failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "FAIL - $1"; failed=$((failed + 1)); }

# text-like token shards over a 1000-token vocabulary
"$PY" - "$WORK" <<'EOF' || { echo "FAIL - token shards"; echo "0 passed, 1 failed"; exit 1; }
import random, sys
sys.path.insert(0, "tests")
from token_shards import write_shard, text_like
rng = random.Random(17)
ids = [rng.randrange(1000) for _ in range(300)]
write_shard(sys.argv[1] + "/train_000.bin", text_like(rng, ids, 4000))
write_shard(sys.argv[1] + "/val_000.bin", text_like(rng, ids, 1000))
EOF

# same_bits LABEL BINARY MODEL: runs -r 0 and -r 1 for 4 steps (2 micro-steps each, a checkpoint
# after every step) and returns 0 when logs and checkpoints are identical; prints what differs.
same_bits() {
    local label=$1 binary=$2 model=$3 r dir
    for r in 0 1; do
        dir=$WORK/${label}_r$r
        rm -rf "$dir"
        "$binary" -e "$model" --seed 5 -i "$WORK/train_000.bin" -j "$WORK/val_000.bin" -b 2 -t 32 \
            -d 128 -x 4 -l 2e-3 -v 2 -m 2 -s 0 -n 1 -nk 0 -r $r -o "$dir" \
            >"$WORK/${label}_r$r.log" 2>&1 || { echo "run -r $r failed (see $WORK/${label}_r$r.log)"; return 2; }
        grep -E '^step ' "$WORK/${label}_r$r.log" | sed 's/ | [0-9.]* ms | .*//' >"$dir.steps"
    done
    local a=$WORK/${label}_r0 b=$WORK/${label}_r1 differ="" files=0 f
    cmp -s "$a/main.log" "$b/main.log" || differ="$differ main.log"
    cmp -s "$a.steps" "$b.steps" || differ="$differ step-lines"
    for f in "$a"/model_*.bin "$a"/state_*.bin; do
        [ -e "$f" ] || continue
        files=$((files + 1))
        cmp -s "$f" "$b/$(basename "$f")" || differ="$differ $(basename "$f")"
    done
    [ "$files" -ge 8 ] || { echo "only $files checkpoints written"; return 2; }
    if [ -n "$differ" ]; then
        echo "differ:$differ"
        return 1
    fi
    echo "$files checkpoints, $(grep -c trl "$a/main.log") train and $(grep -c tel "$a/main.log") val losses identical"
}

SMALL="L=2,C=64,NH=4,V=1000,maxT=64"
for precision in fp32 bf16; do
    binary=./build/cuda/emu-$precision/train_gpt2cu
    if summary=$(same_bits "$precision" "$binary" "$SMALL"); then
        ok "train_gpt2cu ($precision, emulated, DGELU epilogue): -r 1 == -r 0 bit for bit: $summary"
    else
        not_ok "train_gpt2cu ($precision, emulated): -r 1 differs from -r 0: $summary"
    fi
done
# C = 63: 4C = 252 is no multiple of 8, so the DGELU epilogue refuses and the fallback runs
if summary=$(same_bits fp32_c63 ./build/cuda/emu-fp32/train_gpt2cu "L=2,C=63,NH=3,V=1000,maxT=64") &&
    grep -q "gelu_backward_inplace_kernel" <(LLMC_EMU_STATS=1 ./build/cuda/emu-fp32/train_gpt2cu \
        -e "L=2,C=63,NH=3,V=1000,maxT=64" -i "$WORK/train_000.bin" -b 1 -t 16 -x 1 -v 0 -s 0 \
        -o "$WORK/c63_stats" 2>&1); then
    ok "train_gpt2cu (fp32, emulated, C=63: DGELU refused, GELU backward kernel): -r 1 == -r 0 bit for bit: $summary"
else
    not_ok "train_gpt2cu (fp32, C=63 fallback): -r 1 vs -r 0: $summary (or gelu_backward_inplace_kernel never ran)"
fi

# planted: the forward GELU from the fp32 accumulator, other formula (see the header), in a copy of the sources
PLANT=$WORK/planted
mkdir -p "$PLANT"
cp -r llmc ./*.c ./*.cu "$PLANT/"
if ! "$PY" - "$PLANT" <<'EOF'; then
import sys
root = sys.argv[1]
def plant(name, old, new):
    path = root + "/" + name
    text = open(path).read()
    if old not in text:
        sys.exit("test_recompute.sh: %s no longer contains %r: update the plant" % (name, old))
    open(path, "w").write(text.replace(old, new, 1))
# the forward's GELU from the fp32 accumulator, by its own formula, as the old forward had it
plant("llmc/matmul.cuh", "static inline int matmul_gemm_typed(", """static floatX *planted_gelu_out = NULL;
static inline int matmul_gemm_typed(""")
plant("llmc/matmul.cuh", "        if (data_type == MATMUL_DATA_FP32) {\n            memcpy(dx, df,", """        if (planted_gelu_out != NULL) {
            float *g = (float *)malloc_check(d_elems * sizeof(float), "planted GELU");
            for (size_t i = 0; i < d_elems; i++) {
                float x = df[i], u = GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x);
                g[i] = x / (1.0f + expf(-2.0f * u));
            }
            floats_to_floatX(planted_gelu_out, g, d_elems);
            free(g);
        }
        if (data_type == MATMUL_DATA_FP32) {
            memcpy(dx, df,""")
plant("llmc/matmul.cuh", "        gelu_forward(out, pre_gelu, (size_t)N * OC, stream);", "")
plant("llmc/matmul.cuh", "        matmul_gemm(pre_gelu, weight, inp, bias, NULL, EPILOGUE_BIAS,",
      "        planted_gelu_out = out;\n        matmul_gemm(pre_gelu, weight, inp, bias, NULL, EPILOGUE_BIAS,")
plant("llmc/matmul.cuh", "        return;\n    }\n    matmul_gemm(out,", "        planted_gelu_out = NULL;\n        return;\n    }\n    matmul_gemm(out,")
EOF
    not_ok "planted epilogue GELU: could not plant"
else
    for precision in fp32 bf16; do
        flags="-std=c++17 -O1 -ffp-contract=off -DLLMC_CUDA_EMU -fopenmp -pthread"
        [ "$precision" = fp32 ] && flags="$flags -DENABLE_FP32"
        # shellcheck disable=SC2086
        if ! (cd "$PLANT" && g++ $flags -x c++ -o "train_gpt2cu_$precision" train_gpt2.cu $JSONC_LIBS -lm) \
            >"$PLANT/build_$precision.log" 2>&1; then
            not_ok "planted epilogue GELU ($precision): build failed (see $PLANT/build_$precision.log)"
            continue
        fi
        summary=$(same_bits "planted_$precision" "$PLANT/train_gpt2cu_$precision" "$SMALL")
        status=$?
        if [ "$status" -eq 1 ]; then
            ok "planted ($precision): forward GELU from the fp32 accumulator, other formula, -r 1 vs -r 0 caught: $summary"
        else
            not_ok "planted ($precision): forward GELU from the fp32 accumulator, other formula went unnoticed: $summary"
        fi
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
