#!/usr/bin/env bash
# The prepared GPU check (issue 17): one script for a short GPU window (about 8 minutes on an H100
# with 16 cores), every stage under its own `timeout`, none stopping the rest. One line per stage
# ("ok", "FAIL", "skip", "info") goes to the terminal and to OUT/summary.txt as it finishes; raw
# logs to OUT/logs/. Stages, in order: info; build (sm_90 only, -j$(nproc), no MPI/NCCL when mpicc
# is absent), with the PyTorch 2.x baseline (bench/torch_gpu_step.py: bf16 autocast, SDPA flash
# attention, torch.compile, fused AdamW; d12, T=1024, B=16 and 32) compiling beside it; torch (the
# baseline timed on the idle GPU); test (test_gpt2cu FP32, BF16 with cuDNN, BF16 on our kernels, on
# every small-vocabulary reference dump in REFS); matmul (the algorithm cache on cuBLASLt:
# eviction, --gemm-autotune); dev (every dev/cuda program, check + timing, and the 12-layer
# attention time at d12); generate (test_generate_cu and the d12 decode benchmark); train
# (train_gpt2cu d12 T=1024 at B=16, 32, 64: tokens/s, MFU, peak memory; B=32 with --gemm-autotune
# 1); ncu (per-kernel GPU time of one d12 step, top 15); sanitizer (compute-sanitizer memcheck and
# racecheck on the attention dev programs with LLMC_DEV_CHECK_ONLY=1, memcheck on test_gpt2cu);
# mpi (data parallelism and its scaling estimate, when mpirun is there); ttq (issue 20's time-to-
# quality benchmark, bench/time_to_quality.sh, with train_gpt2cu on the shards carried in REFS,
# in what is left of the budget); last, our tokens/s over PyTorch's.
#
#   bash bench/gpu_check.sh --make-refs DIR   here (torch, network): the reference dumps (~13 MB),
#                                             json-c's .debs (DIR/debs, for an image without
#                                             libjson-c-dev), the time-to-quality shards
#                                             (DIR/ttq_data, ~4 MB) and cudnn-frontend's headers
#                                             (build/cudnn-frontend)
#   bash bench/gpu_check.sh [--refs DIR] [--only STAGES] [--pack]   on the GPU machine
#
# REFS defaults to build/gpu_refs. Carry REFS and build/cudnn-frontend to a machine without
# network (the device tool: carry ["build/gpu_refs", "build/cudnn-frontend"], command
# `bash bench/gpu_check.sh --pack`, timeout_s about 560). --only runs the named stages (comma-
# separated names from the list above; name build too unless the binaries are there). --pack ends
# by packing OUT/logs into OUT/logs.tar.gz (the device tool brings back at most 8 files).
# Environment: OUT (default bench/results/gpu_<date>), JOBS (default nproc), GPU_CHECK_BUDGET
# (seconds for the whole script, default 480; a stage that would not end in time is skipped,
# saying so), EMU=1: the same script end to end on the CPU emulation (g++ builds, a tiny model; a
# stage that needs a GPU tool prints a skip line): `make test` runs it (tests/test_gpu_check.sh).
# Exit status: 0 when no stage failed.
set -u
cd "$(dirname "$0")/.." || exit 1
EMU=${EMU:-0}
REFS=build/gpu_refs
ONLY=""
PACK=0
MAKE_REFS=""
while [ $# -gt 0 ]; do
    case $1 in
    --make-refs) MAKE_REFS=${2:?--make-refs needs a directory}; shift 2 ;;
    --refs) REFS=${2:?--refs needs a directory}; shift 2 ;;
    --only) ONLY=",${2:?--only needs stage names},"; shift 2 ;;
    --pack) PACK=1; shift ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 1 ;;
    esac
done

# Small-vocabulary PyTorch reference dumps: name | descriptor | seed | B | T | extra flags. V=1000
# with HS=16, odd T=37 with 3 heads of 32, and HS=64 (GPT-2's head size) at V=1024; llama (issue
# 20): grouped-query attention with QK-norm at odd T (our kernels), and KV = NH at HS=64 (cuDNN).
REF_CONFIGS=(
    "v1000_b3_t24_wd|L=2,C=64,NH=4,V=1000,maxT=64|3|3|24|-c 0.1 -l 1e-3"
    "v1000_l3c96_b1_t37|L=3,C=96,NH=3,V=1000,maxT=128|2|1|37|"
    "v1024_c128_b2_t64|L=2,C=128,NH=2,V=1024,maxT=128|5|2|64|--grad-clip 0.5"
    "llama_gqa_qknorm_v1000_b2_t37|arch=llama,L=2,C=128,NH=4,KV=2,V=1000,maxT=128,qknorm=1|3|2|37|"
    "llama_hs64_v1024_b2_t64|arch=llama,L=2,C=128,NH=2,KV=2,V=1024,maxT=128|5|2|64|--grad-clip 0.5"
)
if [ -n "$MAKE_REFS" ]; then
    PY=${PYTHON:-/usr/bin/python3}
    "$PY" -c "import torch" 2>/dev/null || PY=python3
    mkdir -p "$MAKE_REFS" || exit 1
    for config in "${REF_CONFIGS[@]}"; do
        IFS='|' read -r name descriptor seed B T extra <<<"$config"
        # shellcheck disable=SC2086
        "$PY" scripts/train_gpt2.py --model "$descriptor" --seed "$seed" -b "$B" -t "$T" --steps 10 \
            $extra --write-model "$MAKE_REFS/$name.bin" --write-model-bf16 "$MAKE_REFS/${name}_bf16.bin" \
            --write-state "$MAKE_REFS/${name}_state.bin" >"$MAKE_REFS/$name.log" 2>&1 ||
            { echo "error: reference dump $name failed (see $MAKE_REFS/$name.log)" >&2; exit 1; }
    done
    if [ "$EMU" != 1 ]; then # the emulation has its own stand-in for cudnn-frontend
        bash scripts/fetch_cudnn_frontend.sh || exit 1
        # every program with a model reads HuggingFace's config.json through json-c; the GPU
        # image may lack libjson-c-dev and cannot download it: carry Debian's packages
        mkdir -p "$MAKE_REFS/debs" && (cd "$MAKE_REFS/debs" && apt-get download libjson-c5 libjson-c-dev) \
            >"$MAKE_REFS/debs.log" 2>&1 ||
            { echo "error: apt-get download libjson-c5 libjson-c-dev failed (see $MAKE_REFS/debs.log)" >&2; exit 1; }
        bash bench/ttq_data.sh --out "$MAKE_REFS/ttq_data" >"$MAKE_REFS/ttq_data.log" 2>&1 ||
            { echo "error: bench/ttq_data.sh failed (see $MAKE_REFS/ttq_data.log)" >&2; exit 1; }
        rm -f "$MAKE_REFS"/ttq_data/*.jsonl # the tokenizer's input: the carry limit is 64 MiB in all
    fi
    echo "reference dumps in $MAKE_REFS ($(du -sh "$MAKE_REFS" | cut -f1)); carry it and build/cudnn-frontend"
    exit 0
fi

fail() {
    echo "error: gpu_check.sh: $1" >&2
    exit 1
}
STAGES=",info,build,torch,test,matmul,dev,generate,train,ncu,sanitizer,mpi,ttq,"
for stage in ${ONLY//,/ }; do
    [[ $STAGES == *",$stage,"* ]] || fail "--only: unknown stage '$stage' (stages: ${STAGES:1:-1})"
done
BUDGET=${GPU_CHECK_BUDGET:-480}
JOBS=${JOBS:-$(nproc)}
[[ $BUDGET =~ ^[0-9]+$ ]] || fail "GPU_CHECK_BUDGET=$BUDGET: expected whole seconds"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || fail "JOBS=$JOBS: expected a positive whole number"
OUT=${OUT:-bench/results/gpu_$(date -u +%Y-%m-%d_%H%M%S)}
LOGS=$OUT/logs
SUMMARY=$OUT/summary.txt
[ -e "$SUMMARY" ] && fail "$SUMMARY already exists: set OUT to another directory (or remove it)"
mkdir -p "$LOGS" || fail "cannot create $LOGS"
START=$SECONDS
FAILURES=0
note() { echo "$1" | tee -a "$SUMMARY"; }
wanted() { [ -z "$ONLY" ] || [[ $ONLY == *",$1,"* ]]; }
# limit_for WANT: a stage's timeout, WANT or what is left of the budget (10 s kept for the end);
# fails when under 5 s are left
limit_for() {
    local left=$((BUDGET - (SECONDS - START) - 10))
    [ "$left" -ge 5 ] || return 1
    echo $(($1 < left ? $1 : left))
}
# run_stage NAME WANT LOG CMD...: CMD under `timeout`, output in LOGS/LOG; sets STAGE_SECONDS and
# returns CMD's status (124: timed out, 125: not run for lack of time, noted here)
run_stage() {
    local name=$1 want=$2 log=$3 limit status start=$SECONDS
    shift 3
    if ! limit=$(limit_for "$want"); then
        note "skip $name: out of time (GPU_CHECK_BUDGET=$BUDGET s)"
        return 125
    fi
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$log" 2>&1
    status=$?
    STAGE_SECONDS=$((SECONDS - start))
    [ "$status" -eq 124 ] && echo "gpu_check: timed out after $limit s" >>"$LOGS/$log"
    return "$status"
}
# report NAME STATUS LOG [DETAIL]: the stage's ok/FAIL line (nothing for 125: already noted)
report() {
    local name=$1 status=$2 log=$3 detail=${4:-}
    [ "$status" -eq 125 ] && return
    if [ "$status" -eq 0 ]; then
        note "ok   $name (${STAGE_SECONDS} s)${detail:+: $detail}"
    else
        FAILURES=$((FAILURES + 1))
        note "FAIL $name (exit $status$([ "$status" -eq 124 ] && echo ", timed out"), ${STAGE_SECONDS} s): see logs/$log"
    fi
}
skip() { note "skip $1"; }
# the first number after WORD on the last line of FILE that has it
number_after() { grep -o "$2 *[0-9.]*" "$1" 2>/dev/null | tail -1 | grep -o '[0-9.]*$'; }

# What to build and run: nvcc for sm_90 (H100/H200) only, or the emulation (EMU=1) on a tiny model
if [ "$EMU" = 1 ]; then
    V16=build/cuda/emu-bf16 V32=build/cuda/emu-fp32 V16N=build/cuda/emu-bf16-nocudnn
    DEV=build/cuda_emu/dev MATMUL_TEST=build/cuda_emu/test_matmul_cache
    MODEL="L=2,C=64,NH=4,V=1000,maxT=64" T=32 BATCHES="2 4 8" STEPS=3 SHARD_TOKENS=100000
    GEN_MODEL="L=2,C=64,NH=4,V=1000,maxT=128" GEN_TOKENS=16 TORCH_BATCHES="2 4"
    MAKE_FLAGS=(-k -j"$JOBS")
    export OMP_WAIT_POLICY=passive # idle OpenMP threads would starve the emulation's workers
else
    V16=build/cuda/nvcc-bf16 V32=build/cuda/nvcc-fp32 V16N=build/cuda/nvcc-bf16-nocudnn
    DEV=build/cuda/nvcc-dev MATMUL_TEST=build/cuda/nvcc-fp32/test_matmul_cache
    MODEL=d12 T=1024 BATCHES="16 32 64" STEPS=20 SHARD_TOKENS=4000000
    GEN_MODEL=d12 GEN_TOKENS=256 TORCH_BATCHES="16 32"
    MULTI_GPU=0
    command -v mpicc >/dev/null && MULTI_GPU=auto
    MAKE_FLAGS=(-k -j"$JOBS" "CUDA_ARCH_FLAGS=-gencode arch=compute_90,code=sm_90" "MULTI_GPU=$MULTI_GPU")
fi
DEV_NAMES=()
for source in dev/cuda/*.cu; do
    name=$(basename "$source" .cu)
    [ "$name" = nccl_all_reduce ] || DEV_NAMES+=("$name") # under mpirun, in the mpi stage
done
TARGETS=("$V16/train_gpt2cu" "$V16/test_gpt2cu" "$V16/test_generate_cu" "$V32/test_gpt2cu"
    "$V16N/test_gpt2cu" "$MATMUL_TEST" "${DEV_NAMES[@]/#/$DEV/}")
HAVE_GPU_TOOLS=1
[ "$EMU" = 1 ] && HAVE_GPU_TOOLS=0

note "gpu_check $(date -u '+%Y-%m-%d %H:%M UTC') | commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) | $([ "$EMU" = 1 ] && echo "EMU=1: CPU emulation, model $MODEL (no GPU numbers)" || echo "nvcc sm_90") | budget $BUDGET s | logs: $LOGS"

# a python3 with torch: $PYTHON, python3, else Debian's (python3-torch)
TORCH_PY=""
for candidate in "${PYTHON:-}" python3 /usr/bin/python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1; then
        TORCH_PY=$candidate
        break
    fi
done

# ---------------------------------------------------------------------------------------------
# info: the machine and its tools
if wanted info; then
    {
        nvidia-smi 2>&1 || echo "nvidia-smi: not available"
        nvcc --version 2>&1 || echo "nvcc: not found"
        for tool in ncu compute-sanitizer mpicc mpirun; do echo "$tool: $(command -v $tool || echo absent)"; done
        echo "cores: $(nproc)"
        [ -n "$TORCH_PY" ] && "$TORCH_PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
    } >"$LOGS/info.txt" 2>&1
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
    note "info $(nproc) cores | GPU: ${gpu:-none} | $(grep -o 'release [0-9.]*' "$LOGS/info.txt" | head -1 | sed 's/release/nvcc/') | $(grep '^torch' "$LOGS/info.txt" || echo 'no torch')"
fi

# ---------------------------------------------------------------------------------------------
# torch (first half): the PyTorch baseline compiles and warms up while we build, then waits
TORCH_PID=""
READY=$LOGS/torch.ready GO=$LOGS/torch.go
rm -f "$READY" "$GO"
if wanted torch; then
    read -ra torch_batches <<<"$TORCH_BATCHES"
    TORCH_ARGS=(-e "$MODEL" -t "$T" -b "${torch_batches[@]}" -n 20 --ready-file "$READY" --go-file "$GO")
    [ "$EMU" = 1 ] && TORCH_ARGS+=(--device cpu --no-compile -n 3)
    if [ -z "$TORCH_PY" ]; then
        skip "torch: import torch failed here: no PyTorch baseline and no ratio (python3: $(command -v python3 || echo none))"
    elif [ "$EMU" != 1 ] && ! "$TORCH_PY" -c "import torch, sys; sys.exit(not (torch.cuda.is_available() and hasattr(torch, 'compile')))" >/dev/null 2>&1; then
        skip "torch: PyTorch here has no GPU or no torch.compile: no baseline ($("$TORCH_PY" -c 'import torch; print(torch.__version__)' 2>&1 | tail -1))"
    elif limit=$(limit_for 420); then
        timeout --kill-after=10 "$limit" "$TORCH_PY" bench/torch_gpu_step.py "${TORCH_ARGS[@]}" \
            >"$LOGS/torch.log" 2>&1 &
        TORCH_PID=$!
    else
        skip "torch: out of time"
    fi
fi

# ---------------------------------------------------------------------------------------------
# build: every target, keep going past failures (-k); each later stage checks its binaries
if wanted build; then
    if [ "$EMU" != 1 ] && [ ! -f build/cudnn-frontend/include/cudnn_frontend.h ]; then
        note "info build/cudnn-frontend is missing: the BF16 (cuDNN) builds fetch it from PyPI and fail without network (carry it: --make-refs fetches it)"
    fi
    if [ "$EMU" != 1 ] && ! printf '#include <json-c/json.h>\n' | ${CC:-cc} -E -x c - >/dev/null 2>&1; then
        debs=("$REFS"/debs/*.deb)
        if [ -e "${debs[0]}" ]; then
            rm -rf build/jsonc && mkdir -p build/jsonc
            for deb in "${debs[@]}"; do
                dpkg -x "$deb" build/jsonc 2>>"$LOGS/build.log" || note "info dpkg -x $deb failed (see logs/build.log)"
            done
            MAKE_FLAGS+=("JSONC_HOME=build/jsonc/usr")
            note "info no json-c headers here: using the carried $(basename -a "${debs[@]}" | paste -sd ' ') (JSONC_HOME=build/jsonc/usr)"
        else
            note "info no json-c headers here and none carried in $REFS/debs (--make-refs downloads them): the build will fail"
        fi
    fi
    run_stage build 330 build.log make "${MAKE_FLAGS[@]}" "${TARGETS[@]}"
    status=$?
    missing=()
    for target in "${TARGETS[@]}"; do [ -x "$target" ] || missing+=("$target"); done
    [ "$status" -eq 0 ] && [ ${#missing[@]} -gt 0 ] && status=1
    report build "$status" build.log "${#TARGETS[@]} programs ($([ "$EMU" = 1 ] && echo g++ emulation || echo "nvcc sm_90, -j$JOBS, MULTI_GPU=$MULTI_GPU"))"
    [ ${#missing[@]} -gt 0 ] && note "     not built: ${missing[*]}"
fi
# need BINARY...: true when every one was built; otherwise one skip line for STAGE_NAME
need() {
    local binary
    for binary in "$@"; do
        [ -x "$binary" ] || { skip "$STAGE_NAME: $binary was not built"; return 1; }
    done
}

# ---------------------------------------------------------------------------------------------
# torch (second half): time on an idle GPU, before anything of ours runs
declare -A TORCH_TOKENS
if [ -n "$TORCH_PID" ]; then
    start=$SECONDS
    while kill -0 "$TORCH_PID" 2>/dev/null && [ ! -e "$READY" ]; do sleep 1; done
    touch "$GO"
    wait "$TORCH_PID"
    status=$?
    STAGE_SECONDS=$((SECONDS - start))
    results=$(grep '^RESULT torch' "$LOGS/torch.log" | sed 's/^RESULT torch //')
    for B in $TORCH_BATCHES; do
        TORCH_TOKENS[$B]=$(grep "^RESULT torch B=$B " "$LOGS/torch.log" | grep -o 'tokens_per_s=[0-9]*' | cut -d= -f2)
    done
    [ "$status" -eq 0 ] && [ -z "$results" ] && status=1
    report "torch baseline $MODEL T=$T$([ "$EMU" = 1 ] && echo ' (CPU, eager: a check of the script, not a baseline)')" \
        "$status" torch.log "$(echo "$results" | sed 's/ torch=.*//' | paste -sd ';' | sed 's/;/; /g') | $(grep -m1 -o 'torch=.*' <<<"$results")"
fi

# ---------------------------------------------------------------------------------------------
# test: test_gpt2cu against each reference dump (FP32 model file for FP32, bf16 file for BF16)
STAGE_NAME=test_gpt2cu
if wanted test && need "$V32/test_gpt2cu" "$V16/test_gpt2cu" "$V16N/test_gpt2cu"; then
    found=0
    for state in "$REFS"/*_state.bin; do
        [ -e "$state" ] || break
        name=$(basename "$state" _state.bin)
        found=1
        for variant in fp32 bf16 bf16-nocudnn; do
            case $variant in fp32) dir=$V32 model=$REFS/$name.bin ;; bf16) dir=$V16 model=$REFS/${name}_bf16.bin ;;
            *) dir=$V16N model=$REFS/${name}_bf16.bin ;; esac
            run_stage "test_gpt2cu $variant $name" 120 "test_${variant}_$name.log" \
                "$dir/test_gpt2cu" -e "$model" -s "$state" -o "$LOGS/work_$variant"
            report "test_gpt2cu $variant $name" $? "test_${variant}_$name.log"
        done
    done
    rm -rf "$LOGS"/work_*
    [ "$found" = 1 ] || skip "test_gpt2cu: no reference dumps in $REFS (make them with --make-refs $REFS where torch is, and carry them)"
fi

# ---------------------------------------------------------------------------------------------
# matmul: the algorithm cache on many shapes, eviction order, --gemm-autotune's results
STAGE_NAME="matmul cache"
if wanted matmul && need "$MATMUL_TEST"; then
    run_stage "matmul cache" 90 matmul_cache.log "$MATMUL_TEST"
    report "matmul algorithm cache (tests/cuda_emu/test_matmul_cache.cu)" $? matmul_cache.log \
        "$(tail -1 "$LOGS/matmul_cache.log"); $(grep '^matmul algorithm cache' "$LOGS/matmul_cache.log" | tail -1)"
fi

# ---------------------------------------------------------------------------------------------
# dev: every dev/cuda program (its check, then its timings); attention's 12 layers at d12
STAGE_NAME=dev
if wanted dev; then
    for name in "${DEV_NAMES[@]}"; do
        STAGE_NAME="dev/cuda/$name.cu"
        need "$DEV/$name" || continue
        run_stage "dev/cuda/$name.cu" 90 "dev_$name.log" "$DEV/$name"
        report "dev/cuda/$name.cu" $? "dev_$name.log" "$(grep -E 'ms \|' "$LOGS/dev_$name.log" | tail -1 | sed 's/  */ /g')"
    done
    # the dev programs' timed shape is d12, B=16, T=1024, one layer: 12 layers of forward +
    # backward, for our kernels (version 2) and cuDNN (version 3)
    if [ "$EMU" = 1 ]; then
        skip "attention d12 12-layer time: emulation (no GPU timings)"
    else
        for version in 2 3; do
            fwd=$(grep "version $version (" "$LOGS/dev_attention_forward.log" 2>/dev/null | grep -o '[0-9.]* ms' | head -1 | grep -o '[0-9.]*')
            bwd=$(grep "version $version (" "$LOGS/dev_attention_backward.log" 2>/dev/null | grep -o '[0-9.]* ms' | head -1 | grep -o '[0-9.]*')
            if [ -n "$fwd" ] && [ -n "$bwd" ]; then
                note "info attention d12 B=16 T=1024, 12 layers forward+backward, version $version: $(python3 -c "print('%.2f ms' % (12 * ($fwd + $bwd)))") (target < 4 ms)"
            else
                skip "attention d12 12-layer time, version $version: no timing in the dev logs"
            fi
        done
    fi
fi

# ---------------------------------------------------------------------------------------------
# generate: the key/value-cache generation against the full forward, and decode speed
STAGE_NAME=test_generate_cu
if wanted generate && need "$V16/test_generate_cu"; then
    run_stage test_generate_cu 90 generate.log "$V16/test_generate_cu"
    report "test_generate_cu (bf16)" $? generate.log "$(tail -1 "$LOGS/generate.log")"
    run_stage "test_generate_cu $GEN_MODEL --bench $GEN_TOKENS" 120 generate_bench.log \
        "$V16/test_generate_cu" "$GEN_MODEL" --bench "$GEN_TOKENS"
    report "test_generate_cu $GEN_MODEL --bench $GEN_TOKENS" $? generate_bench.log \
        "$(grep '^decode benchmark' "$LOGS/generate_bench.log")"
fi

# ---------------------------------------------------------------------------------------------
# train: train_gpt2cu at T on synthetic tokens (the speed does not depend on the text)
SHARD=$LOGS/bench_train.bin
declare -A OUR_TOKENS
train_note() { # train_note LOG: tokens/s, MFU, peak memory of a finished run
    local log=$LOGS/$1
    local mfu
    mfu=$(number_after "$log" 'MFU')
    echo "$(grep '^done:' "$log" | sed 's/^done: //'); ${mfu:+MFU (last step) $mfu%; }$(grep '^device memory' "$log" | sed 's/ (all processes.*//')"
}
STAGE_NAME=train_gpt2cu
if { wanted train || wanted ncu || wanted mpi; } && need "$V16/train_gpt2cu"; then
    python3 - "$SHARD" "$SHARD_TOKENS" "$([ "$EMU" = 1 ] && echo 1000 || echo 50257)" <<'PY'
import random, struct, sys
rng = random.Random(0)
n, vocab = int(sys.argv[2]), int(sys.argv[3])
header = [0] * 256
header[0:3] = [20240520, 1, n]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(struct.pack("<%dH" % n, *[rng.randrange(vocab) for _ in range(n)]))
PY
    TRAIN=("$V16/train_gpt2cu" -e "$MODEL" -t "$T" -x "$STEPS" -v 0 -s 0 -i "$SHARD" -j "")
    if wanted train; then
        for B in $BATCHES; do
            run_stage "train_gpt2cu $MODEL B=$B T=$T" 120 "train_b$B.log" "${TRAIN[@]}" -b "$B"
            status=$?
            if [ "$status" -ne 0 ] && grep -q "not enough GPU memory" "$LOGS/train_b$B.log"; then
                skip "train_gpt2cu $MODEL B=$B T=$T: does not fit ($(grep -o 'needs .*' "$LOGS/train_b$B.log" | head -1))"
                continue
            fi
            report "train_gpt2cu $MODEL B=$B T=$T" "$status" "train_b$B.log" "$(train_note "train_b$B.log")"
            OUR_TOKENS[$B]=$(grep '^done:' "$LOGS/train_b$B.log" | grep -o '[0-9]* tok/s' | grep -o '[0-9]*')
        done
        # --gemm-autotune 1: cuBLASLt's top candidates timed once per shape. The emulation has one
        # algorithm: there the losses must equal the plain run's
        B=$(echo "$BATCHES" | cut -d' ' -f2)
        run_stage "train_gpt2cu $MODEL B=$B --gemm-autotune 1" 150 "train_b${B}_autotune.log" "${TRAIN[@]}" -b "$B" --gemm-autotune 1
        status=$?
        detail="$(train_note "train_b${B}_autotune.log") | $(grep -o 'autotune: .*' "$LOGS/train_b${B}_autotune.log")"
        if [ "$EMU" = 1 ] && [ "$status" -eq 0 ] &&
            ! cmp -s <(grep -o 'loss [0-9.]*' "$LOGS/train_b$B.log") <(grep -o 'loss [0-9.]*' "$LOGS/train_b${B}_autotune.log"); then
            echo "gpu_check: the losses differ from train_b$B.log's" >>"$LOGS/train_b${B}_autotune.log"
            status=1
        fi
        report "train_gpt2cu $MODEL B=$B T=$T --gemm-autotune 1$([ "$EMU" = 1 ] && echo ' (same losses as without)')" \
            "$status" "train_b${B}_autotune.log" "$detail"
    fi
fi

# ---------------------------------------------------------------------------------------------
# ncu: per-kernel GPU time of one training step at the first B, top 15
STAGE_NAME=ncu
if wanted ncu; then
    B=$(echo "$BATCHES" | cut -d' ' -f1)
    if [ "$HAVE_GPU_TOOLS" = 0 ]; then
        skip "ncu: emulation (no GPU kernels to profile)"
    elif ! command -v ncu >/dev/null; then
        skip "ncu: not installed"
    elif need "$V16/train_gpt2cu" && [ -e "$SHARD" ]; then
        # one step (-x 1): every kernel of a forward, backward and AdamW, plus the few of the set-up
        run_stage "ncu $MODEL B=$B one step" 200 ncu_run.log ncu --metrics gpu__time_duration.sum \
            --clock-control none --csv --print-units base --print-kernel-base function \
            --log-file "$LOGS/ncu.csv" "$V16/train_gpt2cu" -e "$MODEL" -t "$T" -b "$B" -x 1 -v 0 -s 0 \
            -i "$SHARD" -j ""
        status=$?
        python3 - "$LOGS/ncu.csv" >"$LOGS/ncu_top15.txt" 2>&1 <<'PY'
import collections, csv, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
header = next(i for i, r in enumerate(rows) if "Kernel Name" in r and "Metric Value" in r)
h = rows[header]
name_i, metric_i, unit_i, value_i = (h.index(k) for k in ("Kernel Name", "Metric Name", "Metric Unit", "Metric Value"))
scale = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0, "s": 1e3, "second": 1e3}
total, count = collections.Counter(), collections.Counter()
for r in rows[header + 1:]:
    if len(r) != len(h) or r[metric_i] != "gpu__time_duration.sum":
        continue
    ms = float(r[value_i].replace(",", "")) * scale.get(r[unit_i], 1e-6)
    total[r[name_i]] += ms
    count[r[name_i]] += 1
all_ms = sum(total.values())
print("%d kernel launches, %.2f ms of GPU time in all" % (sum(count.values()), all_ms))
print("%9s %6s %7s  %s" % ("ms", "%", "calls", "kernel"))
for name, ms in total.most_common(15):
    print("%9.3f %5.1f%% %7d  %s" % (ms, 100 * ms / all_ms, count[name], name[:100]))
PY
        [ "$status" -eq 0 ] && [ ! -s "$LOGS/ncu_top15.txt" ] && status=1
        grep -q '^ *ms ' "$LOGS/ncu_top15.txt" || { [ "$status" -eq 0 ] && status=1; }
        report "ncu $MODEL B=$B T=$T, one step" "$status" ncu_run.log "$(head -1 "$LOGS/ncu_top15.txt")"
        [ "$status" -eq 0 ] && sed 's/^/     /' "$LOGS/ncu_top15.txt" | tail -n +2 | tee -a "$SUMMARY"
    fi
fi

# ---------------------------------------------------------------------------------------------
# sanitizer: compute-sanitizer on the attention dev programs (checks only) and one test_gpt2cu;
# after the timings, as the slowest stage: the budget cuts it first
STAGE_NAME=sanitizer
if wanted sanitizer; then
    if [ "$HAVE_GPU_TOOLS" = 0 ]; then
        skip "compute-sanitizer: emulation (its strict checks and the AddressSanitizer builds cover this in make test)"
    elif ! command -v compute-sanitizer >/dev/null; then
        skip "compute-sanitizer: not installed"
    else
        for tool in memcheck racecheck; do
            for name in attention_forward attention_backward; do
                STAGE_NAME="compute-sanitizer $tool dev/cuda/$name.cu"
                need "$DEV/$name" || continue
                log="sanitizer_${tool}_$name.log"
                run_stage "$STAGE_NAME" 90 "$log" env LLMC_DEV_CHECK_ONLY=1 compute-sanitizer \
                    --tool "$tool" --error-exitcode 99 "$DEV/$name"
                report "$STAGE_NAME" $? "$log" "$(grep -m1 'ERROR SUMMARY' "$LOGS/$log")"
            done
        done
        STAGE_NAME="compute-sanitizer memcheck test_gpt2cu bf16"
        ref=$(ls "$REFS"/*_state.bin 2>/dev/null | head -1)
        if [ -z "$ref" ]; then
            skip "$STAGE_NAME: no reference dump in $REFS"
        elif need "$V16/test_gpt2cu"; then
            name=$(basename "$ref" _state.bin)
            run_stage "$STAGE_NAME" 120 sanitizer_memcheck_test_gpt2cu.log compute-sanitizer \
                --tool memcheck --error-exitcode 99 "$V16/test_gpt2cu" -e "$REFS/${name}_bf16.bin" \
                -s "$ref" -o "$LOGS/work_sanitizer"
            report "$STAGE_NAME $name" $? sanitizer_memcheck_test_gpt2cu.log \
                "$(grep -m1 'ERROR SUMMARY' "$LOGS/sanitizer_memcheck_test_gpt2cu.log")"
            rm -rf "$LOGS/work_sanitizer"
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------
# mpi: data parallelism through NCCL with one rank, and the collectives (docs/multi_gpu.md)
STAGE_NAME=mpi
if wanted mpi; then
    if [ "$HAVE_GPU_TOOLS" = 0 ]; then
        skip "mpi: emulation (make test's section 10 runs data parallelism on the emulation)"
    elif ! command -v mpirun >/dev/null || [ "$MULTI_GPU" = 0 ]; then
        skip "mpi: no mpirun/mpicc here: the trainer was built without MPI and NCCL (MULTI_GPU=0)"
    elif need "$V16/train_gpt2cu" && [ -e "$SHARD" ]; then
        MPI=(mpirun --allow-run-as-root --oversubscribe)
        B=$(echo "$BATCHES" | cut -d' ' -f2)
        for zero in 0 1; do
            run_stage "mpirun -np 1 -z $zero" 120 "train_np1_z$zero.log" "${MPI[@]}" -np 1 \
                "${TRAIN[@]}" -b "$B" -z "$zero"
            report "train_gpt2cu $MODEL B=$B mpirun -np 1 -z $zero (NCCL, one rank)" $? \
                "train_np1_z$zero.log" "$(grep '^done:' "$LOGS/train_np1_z$zero.log")"
        done
        if make "${MAKE_FLAGS[@]}" build/cuda/nvcc-dev/nccl_all_reduce >>"$LOGS/build.log" 2>&1; then
            gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
            run_stage nccl_all_reduce 120 nccl_all_reduce.log "${MPI[@]}" -np "$gpus" \
                ./build/cuda/nvcc-dev/nccl_all_reduce
            report "nccl_all_reduce on $gpus GPU(s)" $? nccl_all_reduce.log \
                "$(grep '124475904' "$LOGS/nccl_all_reduce.log" | sed 's/  */ /g')"
            # compute ms per step (the plain run) against the all-reduce of 124M bf16 gradients
            # on P GPUs at the measured bus bandwidth (300 GB/s, NVLink-class, with one GPU)
            step_ms=$(grep '^done:' "$LOGS/train_b$B.log" 2>/dev/null | grep -o 'mean [0-9.]*' | grep -o '[0-9.]*')
            busbw=$(grep '124475904' "$LOGS/nccl_all_reduce.log" | grep -o 'busbw *[0-9.]*' | head -1 | grep -o '[0-9.]*$')
            if [ -n "$step_ms" ]; then
                python3 - "$step_ms" "${busbw:-0}" "$gpus" <<'PY' | while read -r line; do note "info $line"; done
import sys
step_ms, busbw, gpus = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
source = "measured on %d GPUs" % gpus
if gpus < 2 or busbw <= 0:
    busbw, source = 300.0, "assumed (one GPU: nothing to measure)"
for p in (2, 8, 16):
    comm_ms = 2 * (p - 1) / p * 2 * 124475904 / (busbw * 1e9) * 1e3
    print("scaling estimate P=%d: compute %.1f ms/step, all-reduce %.1f ms at %.0f GB/s busbw (%s): "
          "efficiency >= %.1f%% without overlap" % (p, step_ms, comm_ms, busbw, source,
                                                    100 * step_ms / (step_ms + comm_ms)))
PY
            fi
        else
            skip "nccl_all_reduce: did not build (see logs/build.log)"
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------
# ttq: issue 20's time-to-quality benchmark on the carried shards, with what is left of the budget
# (runs that finish are kept; the analysis covers those)
STAGE_NAME=ttq
if wanted ttq; then
    if [ "$EMU" = 1 ]; then
        skip "ttq: emulation (make test's section 7c runs bench/time_to_quality.sh --smoke)"
    elif [ ! -f "$REFS/ttq_data/ttq_train_000000.bin" ]; then
        skip "ttq: no shards in $REFS/ttq_data (--make-refs makes them)"
    elif need "$V16/train_gpt2cu"; then
        run_stage ttq 600 ttq.log bash bench/time_to_quality.sh --trainer "$V16/train_gpt2cu" \
            --prepared-data "$REFS/ttq_data" --work build/ttq_gpu --out "$LOGS/ttq"
        status=$?
        report "time to quality (bench/time_to_quality.sh, train_gpt2cu)" "$status" ttq.log \
            "tokens to (a)'s final val loss: $(sed -n '/^### Tokens to reach/,$p' "$LOGS/ttq/sweep.md" 2>/dev/null | grep '^| [abc] ' | tr -s ' ' | paste -sd ';' | cut -c1-400)"
    fi
fi

# ---------------------------------------------------------------------------------------------
# ratio: our tokens/s over PyTorch's at the same B
for B in $TORCH_BATCHES; do
    ours=${OUR_TOKENS[$B]:-} theirs=${TORCH_TOKENS[$B]:-}
    if [ -n "$ours" ] && [ -n "$theirs" ] && [ "$theirs" -gt 0 ]; then
        note "info ratio B=$B T=$T: train_gpt2cu $ours tok/s / PyTorch $theirs tok/s = $(python3 -c "print('%.2f' % ($ours / $theirs))")$([ "$EMU" = 1 ] && echo ' (emulation vs CPU eager: meaningless, a check of the arithmetic)')"
    elif wanted torch && wanted train; then
        skip "ratio B=$B: $([ -z "$theirs" ] && echo 'no PyTorch number' || echo 'no train_gpt2cu number')"
    fi
done

if [ -n "$TORCH_PID" ] && kill -0 "$TORCH_PID" 2>/dev/null; then kill "$TORCH_PID"; fi
rm -f "$SHARD" "$READY" "$GO"
note "done in $((SECONDS - START)) s: $FAILURES failed stage(s)"
if [ "$PACK" = 1 ]; then
    tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$LOGS"
fi
[ "$FAILURES" -eq 0 ]
