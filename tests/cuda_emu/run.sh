#!/usr/bin/env bash
# `make test-cuda-emu`: the CUDA sources run on the CPU emulation (llmc/cuda_emu/, docs/cuda_emu.md).
# In each scheduling order (forward, reverse, random): the emulation's own tests, every dev/cuda
# kernel check, and test_gpt2cu (FP32 and BF16 builds) against a PyTorch reference dump of a small
# model; then the AddressSanitizer builds once. One "ok - " or "FAIL - " line per check, last line
# "N passed, N failed"; exits non-zero if anything failed. make builds the binaries first.
# usage: tests/cuda_emu/run.sh [REFERENCE_DIR]
#   REFERENCE_DIR holds v1000_b3_t24_wd{,_bf16,_state}.bin (tests/run_tests.sh writes them to
#   build/test); without it they are made here with scripts/train_gpt2.py.
set -u
cd "$(dirname "$0")/../.." || exit 1
WORK=build/cuda_emu/run
rm -rf "$WORK"
mkdir -p "$WORK"
ORDERS="forward reverse random"
# OpenMP's idle threads spin by default; between kernels that starves the emulation's workers
# (passive: test_gpt2cu 2.7 s instead of 9 s on 2 busy cores)
export OMP_WAIT_POLICY=passive
passed=0
failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "FAIL - $1"; failed=$((failed + 1)); }

# run_suite LABEL LOG CMD...: runs a program that prints ok/FAIL lines; each counts here.
run_suite() {
    local label=$1 log=$2 seen=0 status
    shift 2
    "$@" >"$log" 2>&1
    status=$?
    while IFS= read -r line; do
        case $line in
        "ok - "*) ok "$label ${line#ok - }" && seen=$((seen + 1)) ;;
        "FAIL - "*) not_ok "$label ${line#FAIL - }" && seen=$((seen + 1)) ;;
        esac
    done <"$log"
    if [ "$status" -ne 0 ] && ! grep -q '^FAIL - ' "$log"; then
        not_ok "$label stopped (exit $status, see $log)"
    elif [ "$seen" -eq 0 ]; then
        not_ok "$label printed no checks (see $log)"
    fi
}

# run_check LABEL LOG CMD...: one check, passed when CMD exits 0.
run_check() {
    local label=$1 log=$2
    shift 2
    local start=$SECONDS
    if "$@" >"$log" 2>&1; then
        ok "$label ($((SECONDS - start)) s)"
    else
        not_ok "$label (exit $?, see $log)"
    fi
}

# cudnn_glue_plants REF: the BF16 test_gpt2cu rebuilt with one mistake planted in a copy of the
# cuDNN glue (llmc/cudnn_att.cpp) must fail against the reference REF_bf16.bin: the tolerances
# that pass the real glue catch each of these.
cudnn_glue_plants() {
    local ref=$1 plant_dir=$WORK/cudnn_plants name old new
    mkdir -p "$plant_dir"
    while IFS='|' read -r name old new; do
        python3 - llmc/cudnn_att.cpp "$plant_dir/$name.cpp" "$old" "$new" <<'PY' || {
import sys
source, target, old, new = sys.argv[1:]
text = open(source).read()
if old not in text:
    sys.exit("llmc/cudnn_att.cpp no longer contains %r: update the plant" % old)
open(target, "w").write(text.replace(old, new, 1))
PY
            not_ok "planted cuDNN glue mistake '$name': could not plant"
            continue
        }
        # shellcheck disable=SC2086
        if ! { g++ $EMU_PLANT_FLAGS -Illmc -Illmc/cuda_emu/include -x c++ -c \
            -o "$plant_dir/$name.o" "$plant_dir/$name.cpp" &&
            g++ $EMU_PLANT_FLAGS -x c++ -o "$plant_dir/test_$name" test_gpt2.cu -x none \
                "$plant_dir/$name.o" $JSONC_LIBS -lm; } </dev/null >"$plant_dir/$name.build.log" 2>&1; then
            not_ok "planted cuDNN glue mistake '$name': build failed (see $plant_dir/$name.build.log)"
        elif "$plant_dir/test_$name" -e "${ref}_bf16.bin" -s "${ref}_state.bin" \
            -o "$plant_dir/ckpt_$name" </dev/null >"$plant_dir/$name.log" 2>&1; then
            not_ok "planted cuDNN glue mistake '$name' went unnoticed by test_gpt2cu (bf16)"
        else
            ok "planted cuDNN glue mistake '$name': test_gpt2cu (bf16) fails ($(grep -c 'FAIL$' "$plant_dir/$name.log") checks off, e.g.$(grep -m1 'FAIL$' "$plant_dir/$name.log" | tr -s ' '))"
        fi
    done <<'PLANTS'
k_v_swapped|{K_ID, (void *)(qkv + C)}, {V_ID, (void *)(qkv + C + KVC)}|{K_ID, (void *)(qkv + C + KVC)}, {V_ID, (void *)(qkv + C)}
out_as_bnth|tensor.set_dim({B, NH, T, HS}).set_stride({T * C, HS, C, 1});|tensor.set_dim({B, NH, T, HS}).set_stride({T * C, T * HS, HS, 1});
dk_at_dv|{DK_ID, (void *)(dqkv + C)},|{DK_ID, (void *)(dqkv + C + KVC)},
PLANTS
}
EMU_PLANT_FLAGS="-std=c++17 -O2 -DLLMC_CUDA_EMU -DLLMC_USE_CUDNN -fopenmp -pthread"
JSONC_LIBS=$(pkg-config --libs json-c 2>/dev/null || echo -ljson-c)

# ---------------------------------------------------------------------------------------------
# 1. The emulation's own tests.
for order in $ORDERS; do
    run_suite "[$order]" "$WORK/test_cuda_emu_$order.log" \
        env LLMC_EMU_ORDER="$order" LLMC_EMU_SEED=11 ./build/cuda_emu/test_cuda_emu
done
if [ -x build/cuda_emu/test_cuda_emu_asan ]; then
    run_suite "[asan]" "$WORK/test_cuda_emu_asan.log" ./build/cuda_emu/test_cuda_emu_asan
fi
# the matmul algorithm cache: eviction, LRU order, --gemm-autotune (llmc/matmul.cuh)
run_suite "[matmul cache]" "$WORK/test_matmul_cache.log" ./build/cuda_emu/test_matmul_cache
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ -x "$NVCC" ]; then
    run_check "nvcc compiles tests/cuda_emu/test_cuda_emu.cu (-Werror all-warnings)" "$WORK/nvcc.log" \
        "$NVCC" -std=c++17 -arch=sm_80 -Xcompiler -Wall,-Wextra,-Werror --Werror all-warnings -c \
        -o "$WORK/test_cuda_emu.o" tests/cuda_emu/test_cuda_emu.cu
    if command -v mpicc >/dev/null; then
        # shellcheck disable=SC2046
        run_check "nvcc compiles tests/cuda_emu/test_nccl_emu.cu against the real NCCL and MPI" \
            "$WORK/nvcc_nccl.log" "$NVCC" -std=c++17 -arch=sm_80 -Xcompiler -Wall,-Wextra,-Werror \
            --Werror all-warnings -DOMPI_SKIP_MPICXX=1 $(mpicc --showme:compile) -c \
            -o "$WORK/test_nccl_emu.o" tests/cuda_emu/test_nccl_emu.cu
    fi
else
    echo "# nvcc not found: the nvcc compile check of tests/cuda_emu/test_cuda_emu.cu is skipped"
fi

# NCCL over MPI: two and three emulated GPUs (built when OpenMPI is installed)
if [ -x build/cuda_emu/test_nccl_emu ] && command -v mpirun >/dev/null; then
    for ranks in 2 3; do
        # OpenMPI refuses root without these (CI containers often run as root)
        run_suite "[mpi]" "$WORK/test_nccl_emu_$ranks.log" env OMPI_ALLOW_RUN_AS_ROOT=1 \
            OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np "$ranks" --oversubscribe \
            ./build/cuda_emu/test_nccl_emu
        run_check "[mpi] dev/cuda/nccl_all_reduce.cu on $ranks ranks: all-reduce, reduce-scatter + all-gather exact" \
            "$WORK/dev_nccl_all_reduce_$ranks.log" env OMPI_ALLOW_RUN_AS_ROOT=1 \
            OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np "$ranks" --oversubscribe \
            ./build/cuda_emu/dev/nccl_all_reduce
    done
else
    echo "# OpenMPI not installed: the NCCL-over-MPI checks are skipped"
fi

# ---------------------------------------------------------------------------------------------
# 2. Kernel checks in dev/cuda (each compares its kernels with its CPU reference; exit 0 = pass).
for source in dev/cuda/*.cu; do
    [ -e "$source" ] || continue
    name=$(basename "$source" .cu)
    [ "$name" = nccl_all_reduce ] && continue # runs under mpirun, above
    for order in $ORDERS; do
        run_check "[$order] dev/cuda/$name.cu" "$WORK/dev_${name}_$order.log" \
            env LLMC_EMU_ORDER="$order" LLMC_EMU_SEED=11 LLMC_EMU_STATS=1 "./build/cuda_emu/dev/$name"
    done
done

# ---------------------------------------------------------------------------------------------
# 3. test_gpt2cu, FP32 and BF16 builds, against the PyTorch reference (L=2, C=64, V=1000).
if [ -e test_gpt2.cu ]; then
    NAME=v1000_b3_t24_wd
    REF_DIR=${1:-}
    if [ -z "$REF_DIR" ] || [ ! -e "$REF_DIR/${NAME}_state.bin" ]; then
        REF_DIR=build/cuda_emu/reference
        PY=${PYTHON:-/usr/bin/python3}
        if [ ! -e "$REF_DIR/${NAME}_state.bin" ]; then
            mkdir -p "$REF_DIR"
            "$PY" scripts/train_gpt2.py --model "L=2,C=64,NH=4,V=1000,maxT=64" --seed 3 -b 3 -t 24 \
                --steps 10 -c 0.1 -l 1e-3 --write-model "$REF_DIR/$NAME.bin" \
                --write-model-bf16 "$REF_DIR/${NAME}_bf16.bin" \
                --write-state "$REF_DIR/${NAME}_state.bin" >"$WORK/reference.log" 2>&1 ||
                not_ok "reference dump for test_gpt2cu (see $WORK/reference.log)"
        fi
    fi
    # bf16 runs attention through the cuDNN glue (llmc/cudnn_att.cpp) on the emulation's
    # stand-in for cudnn-frontend; bf16-nocudnn (USE_CUDNN=0) on our own kernels, as fp32 does
    for precision in fp32 bf16 bf16-nocudnn; do
        model="$REF_DIR/$NAME.bin"
        [ "$precision" != fp32 ] && model="$REF_DIR/${NAME}_bf16.bin"
        for order in $ORDERS; do
            run_check "[$order] test_gpt2cu ($precision build, emulated) matches PyTorch" \
                "$WORK/test_gpt2cu_${precision}_$order.log" \
                env LLMC_EMU_ORDER="$order" LLMC_EMU_SEED=11 LLMC_EMU_STATS=1 \
                "./build/cuda/emu-$precision/test_gpt2cu" \
                -e "$model" -s "$REF_DIR/${NAME}_state.bin" -o "$WORK/ckpt_${precision}_$order"
        done
    done
    run_check "test_gpt2cu (fp32, emulated, -DLLMC_UNFUSED_GELU: GELU backward as its own kernel, no DGELU epilogue) matches PyTorch" \
        "$WORK/test_gpt2cu_unfused_gelu.log" env LLMC_EMU_STATS=1 ./build/cuda_emu/test_gpt2cu_unfused_gelu \
        -e "$REF_DIR/$NAME.bin" -s "$REF_DIR/${NAME}_state.bin" -o "$WORK/ckpt_unfused"
    if [ -x build/cuda/emu-fp32-asan/test_gpt2cu ]; then
        run_check "[asan] test_gpt2cu (fp32 build, emulated, AddressSanitizer) matches PyTorch" \
            "$WORK/test_gpt2cu_fp32_asan.log" ./build/cuda/emu-fp32-asan/test_gpt2cu \
            -e "$REF_DIR/$NAME.bin" -s "$REF_DIR/${NAME}_state.bin" -o "$WORK/ckpt_fp32_asan"
    fi
    # ASan over the cuDNN glue: every stride it gives the stand-in addresses memory there
    if [ -x build/cuda/emu-bf16-asan/test_gpt2cu ]; then
        run_check "[asan] test_gpt2cu (bf16 build with the cuDNN glue, emulated, AddressSanitizer) matches PyTorch" \
            "$WORK/test_gpt2cu_bf16_asan.log" ./build/cuda/emu-bf16-asan/test_gpt2cu \
            -e "$REF_DIR/${NAME}_bf16.bin" -s "$REF_DIR/${NAME}_state.bin" -o "$WORK/ckpt_bf16_asan"
    fi
    cudnn_glue_plants "$REF_DIR/$NAME"
    # GPU generation with the key/value cache (llmc/kv_cache.cuh) = the full forward
    for precision in fp32 bf16 bf16-nocudnn; do
        for order in forward random; do
            run_suite "[$order] test_generate_cu ($precision build, emulated):" \
                "$WORK/test_generate_cu_${precision}_$order.log" \
                env LLMC_EMU_ORDER="$order" LLMC_EMU_SEED=11 LLMC_EMU_STATS=1 \
                "./build/cuda/emu-$precision/test_generate_cu"
        done
    done
    # a llama (GQA, QK-norm: train_gpt2.cu's llama forward and llama_forward_step); test_llama.sh
    # checks the llama path against PyTorch
    run_suite "[random] test_generate_cu (fp32 build, emulated, llama):" \
        "$WORK/test_generate_cu_llama.log" env LLMC_EMU_ORDER=random LLMC_EMU_SEED=11 LLMC_EMU_STATS=1 \
        ./build/cuda/emu-fp32/test_generate_cu "arch=llama,L=2,C=64,NH=4,KV=2,V=1000,maxT=64,qknorm=1"
    # the trainer's own step: the host pipeline's kernels (llmc/host_pipeline.cuh) and Muon's
    # (llmc/muon.cuh) run only there (tests/test_host_pipeline.sh and tests/test_muon.sh check
    # their results); here two steps launch them for the coverage check below
    if PYTHONPATH=tests "${PYTHON:-/usr/bin/python3}" -c "
import random, sys
from token_shards import text_like, write_shard
rng = random.Random(5)
write_shard(sys.argv[1], text_like(rng, rng.sample(range(512), 300), 2000))" "$WORK/muon_shard_000.bin"; then
        run_check "train_gpt2cu (fp32 build, emulated): 2 steps of Muon through the pipelined step" \
            "$WORK/train_gpt2cu_muon.log" env LLMC_EMU_STATS=1 ./build/cuda/emu-fp32/train_gpt2cu \
            -e "L=2,C=64,NH=4,V=512,maxT=32" --seed 7 -i "$WORK/muon_shard_000.bin" -j "" -b 2 -t 32 \
            -x 2 -l 3e-3 --grad-clip 0.2 -s 0 --optimizer muon
    else
        not_ok "a token shard for train_gpt2cu (tests/token_shards.py)"
    fi
fi

# ---------------------------------------------------------------------------------------------
# 4. Every kernel in llmc/*.cuh ran above (LLMC_EMU_STATS=1 lists each launched kernel at exit).
defined=$(grep -ho '__global__ void [A-Za-z_0-9]*' llmc/*.cuh | awk '{print $3}' | sort -u)
launched=$(cat "$WORK"/*.log | sed -n 's/^llmc_emu: \([A-Za-z_0-9]*\).* launches .*/\1/p' | sort -u)
never=$(comm -23 <(echo "$defined") <(echo "$launched") | tr '\n' ' ')
if [ -z "$defined" ]; then
    echo "# no kernels in llmc/*.cuh"
elif [ -z "$never" ]; then
    ok "every kernel in llmc/*.cuh ran under the emulation ($(echo "$defined" | wc -l) kernels)"
else
    not_ok "kernels in llmc/*.cuh that no emulated test launched: $never"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
