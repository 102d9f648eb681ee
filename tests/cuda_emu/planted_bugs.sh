#!/usr/bin/env bash
# Shows that the emulation catches bugs planted in the real kernels (issue 3's demonstration):
#   1. block_reduce_sum (llmc/cuda_common.cuh) without the __syncthreads between writing the warp
#      sums to shared memory and reading them: test_gpt2cu must fail in every scheduling order;
#   2. adamw_kernel (llmc/adamw.cuh) with `i > n` for `i >= n`: one thread reads one element past
#      the parameters: the AddressSanitizer build must report a heap-buffer-overflow there;
#   3. attention_forward_kernel (llmc/attention.cuh) storing log-sum-exps 1e-3 too large: the FP32
#      layer-by-layer check must name att_lse (relative L2 ~4e-4 against its limit 1e-5), and the
#      gradients, whose probabilities backward recomputes from it, fail too;
#   4. attention_forward_kernel without the __syncthreads before loading the next key tile: a
#      thread that finished a tile overwrites it while others still read it, so
#      dev/cuda/attention_forward.cu must fail in every scheduling order.
# The plants go into a copy of the sources under build/cuda_emu/planted/; the checkout is untouched.
# usage: tests/cuda_emu/planted_bugs.sh   (after make test-cuda-emu, which makes the reference dump)
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
WORK=$ROOT/build/cuda_emu/planted
REF=$ROOT/build/cuda_emu/reference/v1000_b3_t24_wd
rm -rf "$WORK"
mkdir -p "$WORK"
cp -r llmc dev ./*.c ./*.cu "$WORK/" # the .cu files include train_gpt2.c (CPU reference) too
export OMP_WAIT_POLICY=passive
passed=0
failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "FAIL - $1"; failed=$((failed + 1)); }
[ -e "${REF}_state.bin" ] || { echo "error: ${REF}_state.bin missing: run make test-cuda-emu first"; exit 1; }

# plant FILE OLD NEW: replaces the first OLD (a python string literal) in the copy of FILE
plant() {
    python3 - "$WORK/$1" "$2" "$3" <<'PY'
import sys
path, old, new = sys.argv[1], eval(sys.argv[2]), eval(sys.argv[3])
text = open(path).read()
if old not in text:
    sys.exit("planted_bugs.sh: %s no longer contains %r: update the plant" % (path, old))
open(path, "w").write(text.replace(old, new, 1))
PY
}
FLAGS="-std=c++17 -O2 -DLLMC_CUDA_EMU -fopenmp -pthread -DENABLE_FP32 -x c++"

plant llmc/cuda_common.cuh '"if (lane == 0) shared[warp] = value;\n    __syncthreads();\n"' \
    '"if (lane == 0) shared[warp] = value;\n"' || exit 1
(cd "$WORK" && g++ $FLAGS -o test_nosync test_gpt2.cu -ljson-c -lm) || exit 1
for order in forward reverse random; do
    if LLMC_EMU_ORDER=$order "$WORK/test_nosync" -e "$REF.bin" -s "${REF}_state.bin" -o "$WORK/ckpt" \
        >"$WORK/nosync_$order.log" 2>&1; then
        not_ok "[$order] missing __syncthreads in block_reduce_sum went unnoticed"
    else
        ok "[$order] missing __syncthreads in block_reduce_sum: test_gpt2cu fails ($(grep -c 'FAIL$' "$WORK/nosync_$order.log") tensors off, e.g.$(grep -m1 'FAIL$' "$WORK/nosync_$order.log" | tr -s ' '))"
    fi
done

cp llmc/cuda_common.cuh "$WORK/llmc/cuda_common.cuh"
plant llmc/adamw.cuh '"if (i >= n) return;"' '"if (i > n) return;"' || exit 1
(cd "$WORK" && g++ $FLAGS -fsanitize=address -fno-omit-frame-pointer -g -o test_oob test_gpt2.cu -ljson-c -lm) || exit 1
"$WORK/test_oob" -e "$REF.bin" -s "${REF}_state.bin" -o "$WORK/ckpt" >"$WORK/oob.log" 2>&1
if grep -q "heap-buffer-overflow" "$WORK/oob.log" && grep -q "in adamw_kernel" "$WORK/oob.log"; then
    ok "index one past the end in adamw_kernel: AddressSanitizer reports $(grep -m1 -o 'heap-buffer-overflow.*' "$WORK/oob.log" | cut -c1-40)... $(grep -m1 -o 'in adamw_kernel.*adamw.cuh:[0-9]*' "$WORK/oob.log" | sed 's/(.*)//'); $(grep -m1 '^llmc_emu:' "$WORK/oob.log")"
else
    not_ok "index one past the end in adamw_kernel went unnoticed (see $WORK/oob.log)"
fi
cp llmc/adamw.cuh "$WORK/llmc/adamw.cuh"
plant llmc/attention.cuh '"running_max + logf(running_sum);"' '"running_max + logf(running_sum) + 1e-3f;"' ||
    exit 1
(cd "$WORK" && g++ $FLAGS -o test_lse test_gpt2.cu -ljson-c -lm) || exit 1
if "$WORK/test_lse" -e "$REF.bin" -s "${REF}_state.bin" -o "$WORK/ckpt" >"$WORK/lse.log" 2>&1; then
    not_ok "log-sum-exp 1e-3 off in attention_forward_kernel went unnoticed (see $WORK/lse.log)"
elif grep -q "att_lse .*FAIL$" "$WORK/lse.log"; then
    ok "log-sum-exp 1e-3 off in attention_forward_kernel: test_gpt2cu fails ($(grep -c 'FAIL$' "$WORK/lse.log") tensors off, e.g.$(grep -m1 'att_lse .*FAIL$' "$WORK/lse.log" | tr -s ' '))"
else
    not_ok "log-sum-exp 1e-3 off: test_gpt2cu failed without naming att_lse (see $WORK/lse.log)"
fi
cp llmc/attention.cuh "$WORK/llmc/attention.cuh"
plant llmc/attention.cuh '"__syncthreads(); // the previous tile has been read by every thread\n"' '""' ||
    exit 1
(cd "$WORK" && g++ $FLAGS -o attention_race dev/cuda/attention_forward.cu -lm) || exit 1
for order in forward reverse random; do
    if LLMC_EMU_ORDER=$order "$WORK/attention_race" >"$WORK/race_$order.log" 2>&1; then
        not_ok "[$order] missing __syncthreads in attention_forward_kernel went unnoticed"
    else
        ok "[$order] missing __syncthreads in attention_forward_kernel: dev/cuda/attention_forward.cu fails ($(grep -c 'FAIL$' "$WORK/race_$order.log") checks, e.g.$(grep -m1 'FAIL$' "$WORK/race_$order.log" | tr -s ' ' | cut -c1-60)...)"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
