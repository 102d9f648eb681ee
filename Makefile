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
# json-c (Debian: libjson-c-dev) reads encoder.json and JSONL for the tokenizer
JSONC_LIBS := $(shell pkg-config --libs json-c 2>/dev/null || echo -ljson-c)

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
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test_gpt2: test_gpt2.c train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Unit tests of the llmc/ headers (run by `make test`; ./build/test_units [WORKDIR] alone also works).
build/test_units: tests/test_units.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Layer-by-layer CPU benchmark (bench/bench_cpu.sh runs it beside PyTorch).
build/bench_cpu: bench/bench_cpu.c train_gpt2.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

bench_cpu: build/bench_cpu

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
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

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
FUZZ_HARNESSES := model state shard mask tokenizer gpt2_vocab tiktoken sft eval
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
USE_CUDNN ?= 0
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(if $(CUDA_HOME),$(wildcard $(CUDA_HOME)/bin/nvcc)))
CUDA_ARCH_FLAGS ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCC_FLAGS = -O3 -std=c++17 $(CUDA_ARCH_FLAGS) -Xcompiler -Wall,-Wextra,-Werror --Werror all-warnings
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
# EMU_ASAN=1 (with CUDA_EMU=1): AddressSanitizer, which reports out-of-bounds accesses to device
# memory and to dynamic shared memory (build/cuda/emu-<precision>-asan/)
EMU_ASAN ?= 0
EMU_ASAN_FLAGS = -fsanitize=address -fno-omit-frame-pointer -g
ifneq ($(filter-out BF16 FP32,$(PRECISION)),)
  $(error PRECISION=$(PRECISION): expected BF16 or FP32)
endif
ifneq ($(USE_CUDNN),0)
  $(error USE_CUDNN=$(USE_CUDNN): the cuDNN attention path is not written yet; use USE_CUDNN=0)
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
ifeq ($(CUDA_EMU),1)
  CUDA_VARIANT = emu-$(PRECISION_LOWER)$(if $(filter 1,$(EMU_ASAN)),-asan)
else
  CUDA_VARIANT = nvcc-$(PRECISION_LOWER)
endif
CUDA_DIR = build/cuda/$(CUDA_VARIANT)

.PHONY: train_gpt2cu test_gpt2cu cuda_compile_check check_nvcc

check_nvcc:
	@test -n "$(NVCC)" || { echo "error: nvcc not found: put it on PATH or set CUDA_HOME"; exit 1; }

train_gpt2cu: $(CUDA_DIR)/train_gpt2cu
	ln -sf $< $@

test_gpt2cu: $(CUDA_DIR)/test_gpt2cu
	ln -sf $< $@

build/cuda/nvcc-%/train_gpt2cu: train_gpt2.cu $(CUDA_HEADERS) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_MULTI_GPU_FLAGS) $(if $(filter fp32,$*),-DENABLE_FP32,) -o $@ $< \
		$(NVCC_LDLIBS) $(NVCC_MULTI_GPU_LIBS)

build/cuda/nvcc-%/test_gpt2cu: test_gpt2.cu train_gpt2.cu train_gpt2.c $(CUDA_HEADERS) | check_nvcc
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_TEST_FLAGS) $(if $(filter fp32,$*),-DENABLE_FP32,) -o $@ $< \
		$(NVCC_LDLIBS) $(NVCC_TEST_LDLIBS)

build/cuda/emu-%/train_gpt2cu: train_gpt2.cu $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) $(EMU_MULTI_GPU_FLAGS) $(if $(findstring fp32,$*),-DENABLE_FP32,) $(if $(findstring asan,$*),$(EMU_ASAN_FLAGS),) -x c++ -o $@ $< $(EMU_MULTI_GPU_LIBS) -lm

build/cuda/emu-%/test_gpt2cu: test_gpt2.cu train_gpt2.cu train_gpt2.c $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) $(if $(findstring fp32,$*),-DENABLE_FP32,) $(if $(findstring asan,$*),$(EMU_ASAN_FLAGS),) -x c++ -o $@ $< -lm

# CI: nvcc builds both binaries (BF16) and links them against cuBLAS/cuBLASLt; no GPU is needed
# to build, and `--help` runs without one.
cuda_compile_check: build/cuda/nvcc-bf16/train_gpt2cu build/cuda/nvcc-bf16/test_gpt2cu \
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

# ---------------------------------------------------------------------------------------------
# The CUDA sources on the CPU emulation (issue 3, docs/cuda_emu.md): the emulation's own tests
# (tests/cuda_emu/), every dev/cuda/*.cu kernel check and test_gpt2cu (FP32, BF16), each run in
# forward, reverse and random scheduling order, plus AddressSanitizer builds (tests/cuda_emu/run.sh).
DEV_CUDA_SOURCES := $(filter-out dev/cuda/nccl_all_reduce.cu,$(wildcard dev/cuda/*.cu))
EMU_TEST_BINARIES := build/cuda_emu/test_cuda_emu build/cuda_emu/test_cuda_emu_asan \
	$(patsubst dev/cuda/%.cu,build/cuda_emu/dev/%,$(DEV_CUDA_SOURCES)) \
	$(if $(wildcard test_gpt2.cu),build/cuda/emu-fp32/test_gpt2cu build/cuda/emu-bf16/test_gpt2cu \
	build/cuda/emu-fp32-asan/test_gpt2cu build/cuda_emu/test_gpt2cu_unfused_gelu)
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

# FP32 test_gpt2cu with GELU as its own kernel (llmc/gelu.cuh) instead of the matmul epilogue, so
# that every kernel in llmc/*.cuh runs in CI
build/cuda_emu/test_gpt2cu_unfused_gelu: test_gpt2.cu train_gpt2.cu train_gpt2.c $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -DENABLE_FP32 -DLLMC_UNFUSED_GELU -x c++ -o $@ $< -lm

build/cuda_emu/dev/nccl_all_reduce: dev/cuda/nccl_all_reduce.cu dev/cuda/dev_common.cuh $(CUDA_HEADERS) llmc/cuda_emu/include/nccl.h
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) $(EMU_MPI_FLAGS) -x c++ -o $@ $< $(MPI_LINK_FLAGS) -lm

build/cuda_emu/dev/%: dev/cuda/%.cu $(wildcard dev/cuda/*.cuh) $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_FLAGS) -x c++ -o $@ $< -lm

test-cuda-emu: $(EMU_TEST_BINARIES)
	bash tests/cuda_emu/run.sh

# Plants a missing __syncthreads and an out-of-bounds index in copies of the real kernels and
# shows the emulation catching both (not part of make test: two extra builds).
test-cuda-emu-planted: test-cuda-emu
	bash tests/cuda_emu/planted_bugs.sh

# Regenerates the PyTorch reference dumps (build/test) and runs every test; last line: N passed, N failed.
# The binaries are built first (a sub-make, so `make -j test` builds in parallel and the timer the
# suite prints includes the build); with nvcc the CUDA trainer's nvcc build is checked too.
TEST_BINARIES := train_gpt2 test_gpt2 build/test_units tokenizer build/test_tokenizer_units \
	$(EMU_TEST_BINARIES) build/cuda/emu-fp32/train_gpt2cu build/cuda/emu-bf16/train_gpt2cu \
	$(SAN_BINARIES) $(FUZZ_BINARIES)
test:
	@start=$$(date +%s); \
	$(if $(NVCC),,echo "note: no nvcc on PATH or in CUDA_HOME: the nvcc build of the CUDA trainer is not checked (the emulated builds are);";) \
	$(MAKE) --no-print-directory $(TEST_BINARIES) $(if $(NVCC),cuda_compile_check) && \
	LLMC_TEST_START=$$start bash tests/run_tests.sh

format:
	clang-format -i train_gpt2.c test_gpt2.c tokenizer.c llmc/*.h train_gpt2.cu test_gpt2.cu llmc/*.cuh \
		dev/cuda/*.cu dev/cuda/*.cuh
	clang-format -i llmc/cuda_emu/*.h tests/cuda_emu/*.cu tests/cuda_emu/*.cuh tests/fuzz/*.c tests/fuzz/*.h

clean:
	rm -f train_gpt2 test_gpt2 tokenizer chat train_gpt2cu test_gpt2cu
	rm -rf build
