# llmc build. `make` builds the CPU trainer and test; `make test` runs every check (README).
# NO_OMP=1 builds without OpenMP; ARCH=... overrides -march=native.
CC ?= gcc
ARCH ?= -march=native
CFLAGS ?= -O3 $(ARCH)
# C11 in ISO mode: GCC then does not fuse a*b+c into FMA, keeping float results as written
# (our random init must match PyTorch's bit for bit).
# -fno-math-errno lets sqrtf compile to one instruction (and vectorise); -fno-trapping-math lets
# loops with selects (GELU's tanh, softmax's max) vectorise. Neither changes a computed value.
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -fno-math-errno -fno-trapping-math -Wall -Wextra -Werror
LDLIBS = -lm

ifeq ($(NO_OMP),1)
  $(info OpenMP: off (NO_OMP=1))
  CFLAGS += -Wno-unknown-pragmas
else
  CFLAGS += -fopenmp
  LDLIBS += -fopenmp
endif

HEADERS := $(wildcard llmc/*.h)
# json-c (Debian: libjson-c-dev) reads encoder.json and JSONL for the tokenizer, and HuggingFace's
# config.json and safetensors header for -e DIR (llmc/safetensors.h: every program with a model)
JSONC_LIBS := $(shell pkg-config --libs json-c 2>/dev/null || echo -ljson-c)
# JSONC_HOME=PREFIX: json-c unpacked under PREFIX (include/, lib/ or lib/<triplet>/), on a machine
# without libjson-c-dev and without a network: bench/gpu_check.sh unpacks the .debs it carries.
JSONC_HOME ?=
ifneq ($(JSONC_HOME),)
  JSONC_LIBDIR := $(firstword $(wildcard $(JSONC_HOME)/lib/*-linux-gnu/libjson-c.so) $(JSONC_HOME)/lib/libjson-c.so)
  JSONC_LIBDIR := $(abspath $(dir $(JSONC_LIBDIR)))
  JSONC_LIBS := -L$(JSONC_LIBDIR) -Xlinker -rpath=$(JSONC_LIBDIR) -ljson-c
  JSONC_CFLAGS := -isystem $(abspath $(JSONC_HOME))/include
  CFLAGS += $(JSONC_CFLAGS)
endif

.PHONY: all test clean format bench_cpu

# SANITIZE=1 builds the CPU binaries with sanitizers into build/sanitize/ instead (below)
SANITIZE ?= 0
SAN_DIR = build/sanitize
SAN_BINARIES := $(SAN_DIR)/train_gpt2 $(SAN_DIR)/test_gpt2 $(SAN_DIR)/tokenizer $(SAN_DIR)/chat \
	$(SAN_DIR)/test_units $(SAN_DIR)/test_tokenizer_units $(SAN_DIR)/test_sft
ifeq ($(SANITIZE),1)
all: $(SAN_BINARIES)
else
all: train_gpt2 test_gpt2 tokenizer chat
endif

train_gpt2: train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

test_gpt2: test_gpt2.c train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

# Unit tests of the llmc/ headers (run by `make test`; ./build/test_units [WORKDIR] alone also works).
build/test_units: tests/test_units.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# The shuffled loader's order and state files, against llm.c's (tests/test_llmc_exact.sh).
build/loader_order: tests/loader_order.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Layer-by-layer CPU benchmark (bench/bench_cpu.sh runs it beside PyTorch).
build/bench_cpu: bench/bench_cpu.c train_gpt2.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

bench_cpu: build/bench_cpu

# Time to quality (bench/time_to_quality.sh): val loss vs tokens of several runs, one SVG.
build/ttq_plot: bench/ttq_plot.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# DRAM read bandwidth: the floor of batch-1 decoding (bench/bench_decode.sh).
build/bench_membw: bench/bench_membw.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Tokenizer: encode, decode, prepare, train (tokenizer.c); its unit checks; PCRE2 vs our
# pre-tokenizer (needs libpcre2-dev; bench/bench_pretokenize.c).
tokenizer: tokenizer.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

# SFT: chat with a fine-tuned checkpoint (KV-cache generation, GSM8K exact match); unit checks of
# masked training and the KV cache (tests/test_sft.sh runs them).
chat: chat.c train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

build/test_sft: tests/test_sft.c train_gpt2.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

build/test_tokenizer_units: tests/test_tokenizer_units.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

build/bench_pretokenize: bench/bench_pretokenize.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< -lpcre2-8 $(LDLIBS)

# ---------------------------------------------------------------------------------------------
# SANITIZE=1: the CPU binaries with AddressSanitizer and UndefinedBehaviorSanitizer (any report
# ends the program; leaks are checked at exit) in build/sanitize/, beside the normal ones, which it
# leaves alone. The tests run them with LLMC_SANITIZE=1 (tests/lib_checks.sh; run_tests.sh's
# section 15 does, in make test).
SAN_FLAGS = -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
$(SAN_DIR)/train_gpt2: train_gpt2.c $(HEADERS)
$(SAN_DIR)/test_gpt2: test_gpt2.c train_gpt2.c $(HEADERS)
$(SAN_DIR)/tokenizer: tokenizer.c $(HEADERS)
$(SAN_DIR)/chat: chat.c train_gpt2.c $(HEADERS)
$(SAN_DIR)/test_units: tests/test_units.c $(HEADERS)
$(SAN_DIR)/test_tokenizer_units: tests/test_tokenizer_units.c $(HEADERS)
$(SAN_DIR)/test_sft: tests/test_sft.c train_gpt2.c $(HEADERS)
$(SAN_BINARIES):
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

# ---------------------------------------------------------------------------------------------
# Fuzzing (tests/fuzz/README.md): a libFuzzer harness for each loader of a user's file, built
# with clang -fsanitize=fuzzer,address,undefined into build/fuzz/ (Debian: clang libclang-rt-dev).
# `make fuzz` runs each for FUZZ_SECONDS (default 60), two at a time; make test, 20 s each.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES := model state shard mask tokenizer gpt2_vocab tiktoken sft safetensors eval
FUZZ_BINARIES := $(FUZZ_HARNESSES:%=build/fuzz/fuzz_%)
FUZZ_FLAGS = -std=c11 -D_DEFAULT_SOURCE -DLLMC_FUZZ -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra -Werror \
	-Wno-unknown-pragmas
# tests/fuzz/fuzz.h tracks what a loader allocates, opens and maps, to release it after a
# rejected input: these calls go through its wrappers
FUZZ_WRAPPED := malloc calloc realloc free fopen fclose mmap munmap glob globfree \
	json_tokener_new json_tokener_free json_tokener_parse_ex json_object_put
.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BINARIES)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/fuzz_vocab.h $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(foreach f,$(FUZZ_WRAPPED),-Wl,--wrap=$(f)) $(JSONC_LIBS) -lm

# ---------------------------------------------------------------------------------------------
# CUDA trainer (train_gpt2.cu, test_gpt2.cu, llmc/*.cuh). nvcc comes from PATH, else from
# $(CUDA_HOME)/bin; nothing else is guessed. PRECISION=BF16 (default) or FP32.
# CUDA_EMU=1 builds the same sources with g++ against the CPU emulation (llmc/cuda_emu/), which
# is how CI runs them. Each variant builds into its own directory, build/cuda/<variant>/, and
# ./train_gpt2cu, ./test_gpt2cu link to the variant built last.
PRECISION ?= BF16
CUDA_EMU ?= 0
# USE_CUDNN=1 (default): BF16 builds run attention on cuDNN's fused flash attention
# (llmc/cudnn_att.cpp, cudnn-frontend); USE_CUDNN=0 keeps our own kernels (build/cuda/*-nocudnn).
# FP32 builds always use our kernels (cuDNN's fused attention has no fp32 inputs).
USE_CUDNN ?= 1
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(if $(CUDA_HOME),$(wildcard $(CUDA_HOME)/bin/nvcc)))
CUDA_ARCH_FLAGS ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCC_FLAGS = -O3 -std=c++17 $(CUDA_ARCH_FLAGS) -Xcompiler -Wall,-Wextra,-Werror --Werror all-warnings
NVCC_FLAGS += $(JSONC_CFLAGS)
NVCC_LDLIBS = -lcublas -lcublasLt
# test_gpt2cu also compiles the CPU trainer (train_gpt2.c, OpenMP) for its layer-by-layer check
NVCC_TEST_FLAGS = -Xcompiler -fopenmp
NVCC_TEST_LDLIBS = -lgomp
# the emulation: C++17 with the same warnings; OpenMP for llmc/matmul.h's sgemm
EMU_CXX ?= g++
# -ffp-contract=off: in C++ g++ fuses a*b+c into FMA by default, and whether it does depends on
# -march=native's tuning (it avoids FMA chains on AMD Zen), so emulated results would change from
# machine to machine; without it they round as written, as the C11 builds do
EMU_FLAGS = -std=c++17 -O2 $(ARCH) -ffp-contract=off -DLLMC_CUDA_EMU -Wall -Wextra -Werror -fopenmp -pthread
EMU_FLAGS += $(JSONC_CFLAGS)
# EMU_ASAN=1 (with CUDA_EMU=1): AddressSanitizer, which reports out-of-bounds accesses to device
# memory and to dynamic shared memory (build/cuda/emu-<precision>-asan/)
EMU_ASAN ?= 0
EMU_ASAN_FLAGS = -fsanitize=address -fno-omit-frame-pointer -g
ifneq ($(filter-out BF16 FP32,$(PRECISION)),)
  $(error PRECISION=$(PRECISION): expected BF16 or FP32)
endif
ifneq ($(filter-out 0 1,$(USE_CUDNN)),)
  $(error USE_CUDNN=$(USE_CUDNN): expected 0 or 1)
endif
PRECISION_LOWER = $(if $(filter FP32,$(PRECISION)),fp32,bf16)
# Data parallelism in train_gpt2cu (llmc/multi_gpu.cuh): MPI (Debian: libopenmpi-dev openmpi-bin)
# and NCCL (with the CUDA toolkit; the emulation maps it onto MPI). MULTI_GPU=auto builds it in
# when mpicc is found; MULTI_GPU=0 builds a one-process trainer without either.
MULTI_GPU ?= auto
MPI_COMPILE_FLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LINK_FLAGS := $(shell mpicc --showme:link 2>/dev/null)
ifeq ($(MULTI_GPU),auto)
  MULTI_GPU_ON := $(if $(MPI_COMPILE_FLAGS),1,0)
else
  MULTI_GPU_ON := $(MULTI_GPU)
endif
ifeq ($(MULTI_GPU_ON),1)
  ifeq ($(MPI_COMPILE_FLAGS),)
    $(error MULTI_GPU=1 needs MPI: mpicc not found (Debian: apt-get install libopenmpi-dev openmpi-bin))
  endif
  NVCC_MULTI_GPU_FLAGS = -DLLMC_MULTI_GPU -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1 $(MPI_COMPILE_FLAGS)
  NVCC_MULTI_GPU_LIBS = -lnccl $(MPI_LINK_FLAGS)
  EMU_MULTI_GPU_FLAGS = -DLLMC_MULTI_GPU -Illmc/cuda_emu/include -DOMPI_SKIP_MPICXX=1 \
	-DMPICH_SKIP_MPICXX=1 $(MPI_COMPILE_FLAGS)
  EMU_MULTI_GPU_LIBS = $(MPI_LINK_FLAGS)
endif
CUDA_HEADERS := $(wildcard llmc/*.cuh) $(wildcard llmc/cuda_emu/*.h) $(HEADERS)
CUDNN_SUFFIX = $(if $(and $(filter BF16,$(PRECISION)),$(filter 0,$(USE_CUDNN))),-nocudnn)
ifeq ($(CUDA_EMU),1)
  CUDA_VARIANT = emu-$(PRECISION_LOWER)$(CUDNN_SUFFIX)$(if $(filter 1,$(EMU_ASAN)),-asan)
else
  CUDA_VARIANT = nvcc-$(PRECISION_LOWER)$(CUDNN_SUFFIX)
endif
# A variant's name says its build: fp32 (-DENABLE_FP32), bf16 with cuDNN attention unless
# -nocudnn, -asan. cudnn_att_object: the cuDNN glue object a variant links ($1: emu-bf16, ...).
variant_flags = $(if $(findstring fp32,$1),-DENABLE_FP32,$(if $(findstring nocudnn,$1),,-DLLMC_USE_CUDNN))
cudnn_att_object = $(if $(or $(findstring fp32,$1),$(findstring nocudnn,$1)),,build/cuda/$1/cudnn_att.o)
# cudnn-frontend's headers (C++, header-only, not in the toolkit): PyPI's nvidia-cudnn-frontend
# wheel, pinned, unpacked here by scripts/fetch_cudnn_frontend.sh on first use.
CUDNN_FRONTEND_DIR = build/cudnn-frontend
# cuDNN itself: with the CUDA toolkit (cudnn.h beside nvcc's headers), else CUDNN_HOME, else the
# nvidia-cudnn wheel in python3's site-packages (whose library has only its versioned name).
CUDNN_HOME ?= $(if $(wildcard $(dir $(NVCC))../include/cudnn.h),,$(shell python3 -c \
	'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null))
CUDNN_INCLUDES = -isystem $(CUDNN_FRONTEND_DIR)/include $(if $(CUDNN_HOME),-isystem $(CUDNN_HOME)/include)
CUDNN_LDLIBS = $(if $(CUDNN_HOME),-L$(CUDNN_HOME)/lib -Xlinker -rpath=$(CUDNN_HOME)/lib \
	$(if $(wildcard $(CUDNN_HOME)/lib/libcudnn.so),-lcudnn,-l:libcudnn.so.9),-lcudnn)
CUDA_DIR = build/cuda/$(CUDA_VARIANT)

.PHONY: train_gpt2cu test_gpt2cu cuda_compile_check check_nvcc

check_nvcc:
	@test -n "$(NVCC)" || { echo "error: nvcc not found: put it on PATH or set CUDA_HOME"; exit 1; }

train_gpt2cu: $(CUDA_DIR)/train_gpt2cu
	ln -sf $< $@

test_gpt2cu: $(CUDA_DIR)/test_gpt2cu
	ln -sf $< $@

.SECONDEXPANSION:
build/cuda/nvcc-%/train_gpt2cu: train_gpt2.cu $(CUDA_HEADERS) $$(call cudnn_att_object,nvcc-$$*) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_MULTI_GPU_FLAGS) $(call variant_flags,$*) -o $@ $< \
		$(call cudnn_att_object,nvcc-$*) $(NVCC_LDLIBS) $(NVCC_MULTI_GPU_LIBS) \
		$(if $(call cudnn_att_object,nvcc-$*),$(CUDNN_LDLIBS)) $(JSONC_LIBS)

build/cuda/nvcc-%/test_gpt2cu: test_gpt2.cu train_gpt2.cu train_gpt2.c $(CUDA_HEADERS) $$(call cudnn_att_object,nvcc-$$*) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_TEST_FLAGS) $(call variant_flags,$*) -o $@ $< \
		$(call cudnn_att_object,nvcc-$*) $(NVCC_LDLIBS) $(NVCC_TEST_LDLIBS) \
		$(if $(call cudnn_att_object,nvcc-$*),$(CUDNN_LDLIBS)) $(JSONC_LIBS)

# The cuDNN glue, compiled once per variant (cudnn-frontend's templates take minutes to compile;
# kept, not deleted as an intermediate file).
.SECONDARY: $(foreach v,emu-bf16 emu-bf16-asan nvcc-bf16,build/cuda/$(v)/cudnn_att.o)
build/cuda/nvcc-%/cudnn_att.o: llmc/cudnn_att.cpp llmc/cudnn_att.h $(CUDA_HEADERS) \
	$(CUDNN_FRONTEND_DIR)/include/cudnn_frontend.h | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(call variant_flags,$*) $(CUDNN_INCLUDES) -x cu -c -o $@ $<

$(CUDNN_FRONTEND_DIR)/include/cudnn_frontend.h:
	bash scripts/fetch_cudnn_frontend.sh $(CUDNN_FRONTEND_DIR)

# the emulation: the same glue against its CPU stand-in of cudnn-frontend
build/cuda/emu-%/cudnn_att.o: llmc/cudnn_att.cpp llmc/cudnn_att.h $(CUDA_HEADERS) \
	llmc/cuda_emu/include/cudnn_frontend.h
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -Illmc/cuda_emu/include $(call variant_flags,$*) $(if $(findstring asan,$*),$(EMU_ASAN_FLAGS),) -x c++ -c -o $@ $<

build/cuda/emu-%/train_gpt2cu: train_gpt2.cu $(CUDA_HEADERS) $$(call cudnn_att_object,emu-$$*)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) $(EMU_MULTI_GPU_FLAGS) $(call variant_flags,$*) $(if $(findstring asan,$*),$(EMU_ASAN_FLAGS),) -x c++ -o $@ $< -x none $(call cudnn_att_object,emu-$*) $(EMU_MULTI_GPU_LIBS) $(JSONC_LIBS) -lm

build/cuda/emu-%/test_gpt2cu: test_gpt2.cu train_gpt2.cu train_gpt2.c $(CUDA_HEADERS) $$(call cudnn_att_object,emu-$$*)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) $(call variant_flags,$*) $(if $(findstring asan,$*),$(EMU_ASAN_FLAGS),) -x c++ -o $@ $< -x none $(call cudnn_att_object,emu-$*) $(JSONC_LIBS) -lm

# chat on the GPU (chat.cu = chat.c on train_gpt2.cu's forward and llmc/kv_cache.cuh): `make
# chatcu` links ./chatcu to the variant of PRECISION / CUDA_EMU / USE_CUDNN, as train_gpt2cu does
.PHONY: chatcu
chatcu: $(CUDA_DIR)/chatcu
	ln -sf $< $@

build/cuda/emu-%/chatcu: chat.cu chat.c train_gpt2.cu $(CUDA_HEADERS) $$(call cudnn_att_object,emu-$$*)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) $(call variant_flags,$*) $(if $(findstring asan,$*),$(EMU_ASAN_FLAGS),) -x c++ -o $@ $< -x none $(call cudnn_att_object,emu-$*) $(JSONC_LIBS) -lm

build/cuda/nvcc-%/chatcu: chat.cu chat.c train_gpt2.cu $(CUDA_HEADERS) $$(call cudnn_att_object,nvcc-$$*) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(call variant_flags,$*) -o $@ $< $(call cudnn_att_object,nvcc-$*) \
		$(NVCC_LDLIBS) $(if $(call cudnn_att_object,nvcc-$*),$(CUDNN_LDLIBS)) $(JSONC_LIBS)

# GPU generation with a key/value cache (llmc/kv_cache.cuh) against the full forward
build/cuda/emu-%/test_generate_cu: tests/test_generate_cu.cu train_gpt2.cu $(CUDA_HEADERS) $$(call cudnn_att_object,emu-$$*)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -I. $(call variant_flags,$*) $(if $(findstring asan,$*),$(EMU_ASAN_FLAGS),) -x c++ -o $@ $< -x none $(call cudnn_att_object,emu-$*) $(JSONC_LIBS) -lm

build/cuda/nvcc-%/test_generate_cu: tests/test_generate_cu.cu train_gpt2.cu $(CUDA_HEADERS) $$(call cudnn_att_object,nvcc-$$*) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -I. $(call variant_flags,$*) -o $@ $< $(call cudnn_att_object,nvcc-$*) \
		$(NVCC_LDLIBS) $(if $(call cudnn_att_object,nvcc-$*),$(CUDNN_LDLIBS)) $(JSONC_LIBS)

# CI: nvcc builds both binaries (BF16, with cuDNN attention) and the trainer on our own attention
# kernels (USE_CUDNN=0), linked against cuBLAS/cuBLASLt and cuDNN; no GPU is needed to build, and
# `--help` runs without one. The llama kernels' dev/cuda programs (rmsnorm, rope, swiglu: a few
# seconds each) are built too; attention_gqa's kernels are the trainer's, compiled above.
cuda_compile_check: build/cuda/nvcc-bf16/train_gpt2cu build/cuda/nvcc-bf16/test_gpt2cu \
	build/cuda/nvcc-bf16-nocudnn/train_gpt2cu build/cuda/nvcc-bf16/test_generate_cu \
	build/cuda/nvcc-bf16/chatcu build/cuda/nvcc-dev/rmsnorm build/cuda/nvcc-dev/rope \
	build/cuda/nvcc-dev/swiglu \
	$(if $(MPI_COMPILE_FLAGS),build/cuda/nvcc-dev/nccl_all_reduce)
	./build/cuda/nvcc-bf16/train_gpt2cu --help >/dev/null

# dev/cuda kernel experiments built with nvcc, for a GPU (the emulated builds are below).
# dev/cuda/nccl_all_reduce.cu times NCCL's collectives: built with MPI and NCCL, run under mpirun.
.PHONY: dev_cuda
dev_cuda: $(patsubst dev/cuda/%.cu,build/cuda/nvcc-dev/%,$(if $(MPI_COMPILE_FLAGS),$(wildcard \
	dev/cuda/*.cu),$(filter-out dev/cuda/nccl_all_reduce.cu,$(wildcard dev/cuda/*.cu))))

build/cuda/nvcc-dev/nccl_all_reduce: dev/cuda/nccl_all_reduce.cu dev/cuda/dev_common.cuh $(CUDA_HEADERS) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1 $(MPI_COMPILE_FLAGS) -o $@ $< \
		$(NVCC_LDLIBS) -lnccl $(MPI_LINK_FLAGS)

build/cuda/nvcc-dev/%: dev/cuda/%.cu $(wildcard dev/cuda/*.cuh) $(CUDA_HEADERS) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LDLIBS)

# the attention programs also time cuDNN's fused attention (version 3) through the BF16 glue
# (USE_CUDNN=0: without it)
DEV_CUDNN_VARIANT = $(if $(filter 1,$(USE_CUDNN)),bf16)
build/cuda/nvcc-dev/attention_%: dev/cuda/attention_%.cu $(wildcard dev/cuda/*.cuh) $(CUDA_HEADERS) \
	$(if $(DEV_CUDNN_VARIANT),build/cuda/nvcc-bf16/cudnn_att.o) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(if $(DEV_CUDNN_VARIANT),-DLLMC_USE_CUDNN) -o $@ $< \
		$(if $(DEV_CUDNN_VARIANT),build/cuda/nvcc-bf16/cudnn_att.o $(CUDNN_LDLIBS)) $(NVCC_LDLIBS)

# ---------------------------------------------------------------------------------------------
# The CUDA sources on the CPU emulation (issue 3, docs/cuda_emu.md): the emulation's own tests
# (tests/cuda_emu/), every dev/cuda/*.cu kernel check and test_gpt2cu (FP32, BF16), each run in
# forward, reverse and random scheduling order, plus AddressSanitizer builds (tests/cuda_emu/run.sh).
DEV_CUDA_SOURCES := $(filter-out dev/cuda/nccl_all_reduce.cu,$(wildcard dev/cuda/*.cu))
EMU_TEST_BINARIES := build/cuda_emu/test_cuda_emu build/cuda_emu/test_cuda_emu_asan \
	build/cuda_emu/test_matmul_cache \
	$(patsubst dev/cuda/%.cu,build/cuda_emu/dev/%,$(DEV_CUDA_SOURCES)) \
	$(if $(wildcard test_gpt2.cu),build/cuda/emu-fp32/test_gpt2cu build/cuda/emu-bf16/test_gpt2cu \
	build/cuda/emu-bf16-nocudnn/test_gpt2cu build/cuda/emu-fp32-asan/test_gpt2cu \
	build/cuda/emu-bf16-asan/test_gpt2cu build/cuda_emu/test_gpt2cu_unfused_gelu \
	build/cuda/emu-fp32/test_generate_cu build/cuda/emu-bf16/test_generate_cu \
	build/cuda/emu-bf16-nocudnn/test_generate_cu build/cuda/emu-fp32/train_gpt2cu)
.PHONY: test-cuda-emu test-cuda-emu-planted
# NCCL over MPI for the emulation (llmc/cuda_emu/emu_nccl.h; `mpirun -np 2` = two emulated GPUs),
# tested when OpenMPI is installed (Debian: libopenmpi-dev openmpi-bin)
EMU_MPI_FLAGS = -Illmc/cuda_emu/include -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1 $(MPI_COMPILE_FLAGS)
ifneq ($(MPI_COMPILE_FLAGS),)
  EMU_TEST_BINARIES += build/cuda_emu/test_nccl_emu build/cuda_emu/dev/nccl_all_reduce
endif

build/cuda_emu/test_nccl_emu: tests/cuda_emu/test_nccl_emu.cu tests/cuda_emu/emu_check.cuh $(CUDA_HEADERS) llmc/cuda_emu/include/nccl.h
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) $(EMU_MPI_FLAGS) -x c++ -o $@ $< $(MPI_LINK_FLAGS) -lm

build/cuda_emu/test_cuda_emu: tests/cuda_emu/test_cuda_emu.cu tests/cuda_emu/emu_check.cuh $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -x c++ -o $@ $< -lm

# (without OpenMP: this build also covers the emulation's own thread pool)
build/cuda_emu/test_cuda_emu_asan: tests/cuda_emu/test_cuda_emu.cu tests/cuda_emu/emu_check.cuh $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(filter-out -fopenmp,$(EMU_FLAGS)) $(EMU_ASAN_FLAGS) -x c++ -o $@ $< -lm

# The matmul algorithm cache (llmc/matmul.cuh): eviction and --gemm-autotune, FP32; the nvcc
# build runs on a GPU in bench/gpu_check.sh
build/cuda_emu/test_matmul_cache: tests/cuda_emu/test_matmul_cache.cu tests/cuda_emu/emu_check.cuh $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -DENABLE_FP32 -x c++ -o $@ $< -lm

build/cuda/nvcc-fp32/test_matmul_cache: tests/cuda_emu/test_matmul_cache.cu tests/cuda_emu/emu_check.cuh $(CUDA_HEADERS) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -DENABLE_FP32 -o $@ $< $(NVCC_LDLIBS)

# FP32 test_gpt2cu with GELU as its own kernel (llmc/gelu.cuh) instead of the matmul epilogue, so
# that every kernel in llmc/*.cuh runs in CI
build/cuda_emu/test_gpt2cu_unfused_gelu: test_gpt2.cu train_gpt2.cu train_gpt2.c $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -DENABLE_FP32 -DLLMC_UNFUSED_GELU -x c++ -o $@ $< $(JSONC_LIBS) -lm

build/cuda_emu/dev/nccl_all_reduce: dev/cuda/nccl_all_reduce.cu dev/cuda/dev_common.cuh $(CUDA_HEADERS) llmc/cuda_emu/include/nccl.h
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) $(EMU_MPI_FLAGS) -x c++ -o $@ $< $(MPI_LINK_FLAGS) -lm

build/cuda_emu/dev/%: dev/cuda/%.cu $(wildcard dev/cuda/*.cuh) $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -x c++ -o $@ $< -lm

build/cuda_emu/dev/attention_%: dev/cuda/attention_%.cu $(wildcard dev/cuda/*.cuh) $(CUDA_HEADERS) \
	build/cuda/emu-bf16/cudnn_att.o
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -DLLMC_USE_CUDNN -x c++ -o $@ $< -x none build/cuda/emu-bf16/cudnn_att.o -lm

test-cuda-emu: $(EMU_TEST_BINARIES)
	bash tests/cuda_emu/run.sh

# Plants a missing __syncthreads and an out-of-bounds index in copies of the real kernels and
# shows the emulation catching both (not part of make test: two extra builds).
test-cuda-emu-planted: test-cuda-emu
	bash tests/cuda_emu/planted_bugs.sh

# Regenerates the PyTorch reference dumps (build/test) and runs every test; last line: N passed, N failed.
# The binaries are built first (a sub-make, so `make -j test` builds in parallel and the timer the
# suite prints includes the build); with nvcc the CUDA trainer's nvcc build is checked too.
TEST_BINARIES := train_gpt2 test_gpt2 build/test_units tokenizer build/test_tokenizer_units build/ttq_plot \
	$(EMU_TEST_BINARIES) build/cuda/emu-fp32/train_gpt2cu build/cuda/emu-bf16/train_gpt2cu \
	build/cuda/emu-fp32/chatcu build/cuda/emu-bf16/chatcu \
	$(SAN_BINARIES) $(FUZZ_BINARIES)
test:
	@start=$$(date +%s); \
	$(if $(NVCC),,echo "note: no nvcc on PATH or in CUDA_HOME: the nvcc build of the CUDA trainer is not checked (the emulated builds are);";) \
	$(MAKE) --no-print-directory $(TEST_BINARIES) $(if $(NVCC),cuda_compile_check) && \
	LLMC_TEST_START=$$start bash tests/run_tests.sh

format:
	clang-format -i train_gpt2.c test_gpt2.c tokenizer.c llmc/*.h train_gpt2.cu test_gpt2.cu llmc/*.cuh \
		dev/cuda/*.cu dev/cuda/*.cuh
	clang-format -i llmc/cudnn_att.cpp llmc/cuda_emu/include/cudnn_frontend.h
	clang-format -i llmc/cuda_emu/*.h tests/cuda_emu/*.cu tests/cuda_emu/*.cuh tests/fuzz/*.c tests/fuzz/*.h

clean:
	rm -f train_gpt2 test_gpt2 tokenizer chat train_gpt2cu test_gpt2cu
	rm -rf build
