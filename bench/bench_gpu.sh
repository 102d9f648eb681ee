#!/usr/bin/env bash
# For a session that has a GPU: builds the CUDA trainer (BF16 and FP32, nvcc), runs test_gpt2cu on
# every PyTorch reference dump in REF_DIR (made beforehand on a machine with torch, e.g. by
# `make test`, which leaves them in build/test), every dev/cuda check, then the GPT-2 124M (d12)
# benchmark at T=1024 with the largest B that fits: tokens/s, MFU and device memory; then the same
# run through NCCL with one rank (-z 0, -z 1), dev/cuda/nccl_all_reduce on every GPU here and the
# data-parallel scaling estimate from the two (docs/multi_gpu.md). Raw logs go
# to bench/results/gpu_<date>/; the last lines summarise.
# Attention (issue 16): test_gpt2cu also in the BF16 build on our kernels (USE_CUDNN=0), the
# attention dev programs under compute-sanitizer (memcheck, racecheck) when it is installed, and
# forward + backward of 12 layers at d12, B=16, T=1024 from their timings (target: under 4 ms).
#   bash bench/bench_gpu.sh [REF_DIR]      (default build/test)
# A GPU machine without network needs the cudnn-frontend headers carried along: run
# `bash scripts/fetch_cudnn_frontend.sh` here first and carry build/cudnn-frontend.
set -u
cd "$(dirname "$0")/.."
REF_DIR=${1:-build/test}
OUT=bench/results/gpu_$(date -u +%Y-%m-%d_%H%M)
mkdir -p "$OUT"
summary=()
note() { echo "$1"; summary+=("$1"); }

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
make -j2 train_gpt2cu test_gpt2cu >"$OUT/build_bf16.log" 2>&1 || { note "FAIL build (BF16): see $OUT/build_bf16.log"; exit 1; }
make -j2 build/cuda/nvcc-fp32/test_gpt2cu build/cuda/nvcc-bf16-nocudnn/test_gpt2cu dev_cuda >"$OUT/build_fp32.log" 2>&1 || { note "FAIL build (FP32, BF16 without cuDNN, dev_cuda): see $OUT/build_fp32.log"; exit 1; }

for state in "$REF_DIR"/*_state.bin; do
    [ -e "$state" ] || { note "no reference dumps in $REF_DIR: test_gpt2cu not run"; break; }
    name=$(basename "$state" _state.bin)
    [ -e "$REF_DIR/$name.bin" ] || continue
    for variant in nvcc-fp32 nvcc-bf16 nvcc-bf16-nocudnn; do
        log="$OUT/test_${variant}_$name.log"
        if ./build/cuda/$variant/test_gpt2cu -e "$REF_DIR/$name.bin" -s "$state" -o "$OUT/work" >"$log" 2>&1; then
            note "ok   test_gpt2cu $variant $name"
        else
            note "FAIL test_gpt2cu $variant $name (see $log)"
        fi
    done
done
for binary in build/cuda/nvcc-dev/*; do
    name=$(basename "$binary")
    [ "$name" = nccl_all_reduce ] && continue # under mpirun, below
    if "$binary" >"$OUT/dev_$name.log" 2>&1; then
        note "ok   dev/cuda/$name.cu: $(grep -E 'ms \|' "$OUT/dev_$name.log" | tail -1 | sed 's/  */ /g')"
    else
        note "FAIL dev/cuda/$name.cu (see $OUT/dev_$name.log)"
    fi
done

# Attention at d12, B=16, T=1024 (the dev programs' timed shape, one layer): 12 layers of forward
# + backward, for our kernels (version 2) and cuDNN (version 3)
for version in 2 3; do
    fwd=$(grep "version $version (" "$OUT/dev_attention_forward.log" 2>/dev/null | grep -o '[0-9.]* ms' | head -1 | grep -o '[0-9.]*')
    bwd=$(grep "version $version (" "$OUT/dev_attention_backward.log" 2>/dev/null | grep -o '[0-9.]* ms' | head -1 | grep -o '[0-9.]*')
    [ -n "$fwd" ] && [ -n "$bwd" ] &&
        note "attention d12 B=16 T=1024, 12 layers forward+backward, version $version: $(python3 -c "print('%.2f ms' % (12 * ($fwd + $bwd)))") (target < 4 ms)"
done
if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        for name in attention_forward attention_backward; do
            log="$OUT/sanitizer_${tool}_$name.log"
            if LLMC_DEV_CHECK_ONLY=1 timeout 300 compute-sanitizer --tool "$tool" \
                --error-exitcode 99 "./build/cuda/nvcc-dev/$name" >"$log" 2>&1; then
                note "ok   compute-sanitizer --tool $tool dev/cuda/$name.cu: $(grep -m1 'ERROR SUMMARY' "$log")"
            else
                note "FAIL compute-sanitizer --tool $tool dev/cuda/$name.cu (exit $?, see $log)"
            fi
        done
    done
else
    note "compute-sanitizer not found: memcheck/racecheck not run"
fi

# Generation on the GPU (llmc/kv_cache.cuh): its check against the full forward, and d12 decode
# speed (256 new tokens after a 64-token prompt) against the weights-read-once floor
make build/cuda/nvcc-bf16/test_generate_cu >>"$OUT/build_bf16.log" 2>&1
log="$OUT/generate_d12.log"
if ./build/cuda/nvcc-bf16/test_generate_cu >"$OUT/generate.log" 2>&1 &&
    ./build/cuda/nvcc-bf16/test_generate_cu d12 --bench 256 >"$log" 2>&1; then
    note "ok   test_generate_cu; $(grep '^decode benchmark' "$log")"
else
    note "FAIL test_generate_cu (see $OUT/generate.log, $log)"
fi

# d12 at T=1024 on synthetic tokens (the speed does not depend on the text): the largest B that fits
python3 - "$OUT/bench_train.bin" <<'PY'
import random, struct, sys
rng = random.Random(0)
n = 4_000_000
header = [0] * 256
header[0:3] = [20240520, 1, n]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(struct.pack("<%dH" % n, *[rng.randrange(50257) for _ in range(n)]))
PY
for B in 64 48 32 24 16 8 4; do
    log="$OUT/d12_b${B}.log"
    ./train_gpt2cu -e d12 -b "$B" -t 1024 -x 30 -v 0 -s 0 -i "$OUT/bench_train.bin" -j "" >"$log" 2>&1
    if grep -q "not enough GPU memory" "$log"; then continue; fi
    if grep -q '^done:' "$log"; then
        note "d12 B=$B T=1024: $(grep '^done:' "$log"); $(grep '^step ' "$log" | tail -1 | grep -o 'MFU [0-9.]*%'); $(grep '^device memory' "$log")"
        BEST_B=$B
    else
        note "FAIL d12 B=$B (see $log)"
    fi
    break
done

# Data parallelism (docs/multi_gpu.md): the same d12 run through NCCL with one rank (ZeRO-0 and
# ZeRO-1), the collectives' bus bandwidth on every GPU here, and the scaling estimate from both.
if command -v mpirun >/dev/null && [ -n "${BEST_B:-}" ]; then
    MPI=(mpirun --allow-run-as-root --oversubscribe)
    for zero in 0 1; do
        log="$OUT/d12_b${BEST_B}_np1_z$zero.log"
        "${MPI[@]}" -np 1 ./train_gpt2cu -e d12 -b "$BEST_B" -t 1024 -x 30 -v 0 -s 0 -z "$zero" \
            -i "$OUT/bench_train.bin" -j "" >"$log" 2>&1
        if grep -q '^done:' "$log"; then
            note "d12 B=$BEST_B mpirun -np 1 -z $zero (NCCL, one rank): $(grep '^done:' "$log")"
        else
            note "FAIL d12 mpirun -np 1 -z $zero (see $log)"
        fi
    done
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
    log="$OUT/nccl_all_reduce_np$gpus.log"
    if "${MPI[@]}" -np "$gpus" ./build/cuda/nvcc-dev/nccl_all_reduce >"$log" 2>&1; then
        note "nccl_all_reduce on $gpus GPU(s), 124M values: $(grep '124475904' "$log" | sed 's/  */ /g')"
    else
        note "FAIL nccl_all_reduce (see $log)"
    fi
    # compute ms per step (the plain run) against the all-reduce of 124M bf16 gradients on P GPUs
    # at the measured bus bandwidth (or 300 GB/s, NVLink-class, when only one GPU was measured)
    step_ms=$(grep '^done:' "$OUT/d12_b${BEST_B}.log" | grep -o 'mean [0-9.]*' | grep -o '[0-9.]*')
    busbw=$(grep '124475904' "$log" 2>/dev/null | grep -o 'busbw *[0-9.]*' | head -1 | grep -o '[0-9.]*$')
    python3 - "$step_ms" "${busbw:-0}" "$gpus" <<'PY' | while read -r line; do note "$line"; done
import sys
step_ms, busbw, gpus = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
source = "measured on %d GPUs" % gpus
if gpus < 2 or busbw <= 0:
    busbw, source = 300.0, "assumed (one GPU: nothing to measure)"
grad_bytes = 2 * 124475904
for p in (2, 8, 16):
    comm_ms = 2 * (p - 1) / p * grad_bytes / (busbw * 1e9) * 1e3
    print("scaling estimate P=%d: compute %.1f ms/step, all-reduce %.1f ms at %.0f GB/s busbw (%s): "
          "efficiency >= %.1f%% without overlap" % (p, step_ms, comm_ms, busbw, source,
                                                    100 * step_ms / (step_ms + comm_ms)))
PY
fi
printf '%s\n' "${summary[@]}" >"$OUT/summary.txt"
echo "logs: $OUT"
