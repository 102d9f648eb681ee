# llmc build. `make` builds the CPU trainer and test; `make test` runs every check (README).
# NO_OMP=1 builds without OpenMP; ARCH=... overrides -march=native.
CC ?= gcc
ARCH ?= -march=native
CFLAGS ?= -O3 $(ARCH)
# C11 in ISO mode: GCC then does not fuse a*b+c into FMA, keeping float results as written
# (our random init must match PyTorch's bit for bit).
# -fno-math-errno lets sqrtf compile to one instruction (and vectorise); results are unchanged.
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -fno-math-errno -Wall -Wextra -Werror
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

all: train_gpt2 test_gpt2 tokenizer

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

build/test_tokenizer_units: tests/test_tokenizer_units.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(JSONC_LIBS) $(LDLIBS)

build/bench_pretokenize: bench/bench_pretokenize.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< -lpcre2-8 $(LDLIBS)

# Regenerates the PyTorch reference dumps (build/test) and runs every test; last line: N passed, N failed.
test: train_gpt2 test_gpt2 build/test_units tokenizer build/test_tokenizer_units
	bash tests/run_tests.sh

format:
	clang-format -i train_gpt2.c test_gpt2.c tokenizer.c llmc/*.h

clean:
	rm -f train_gpt2 test_gpt2 tokenizer
	rm -rf build
