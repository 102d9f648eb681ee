# llmc build. `make` builds the CPU trainer and test; `make test` runs every check (README).
# NO_OMP=1 builds without OpenMP; ARCH=... overrides -march=native.
CC ?= gcc
ARCH ?= -march=native
CFLAGS ?= -O3 $(ARCH)
# C11 in ISO mode: GCC then does not fuse a*b+c into FMA, keeping float results as written
# (our random init must match PyTorch's bit for bit).
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror
LDLIBS = -lm

ifeq ($(NO_OMP),1)
  $(info OpenMP: off (NO_OMP=1))
  CFLAGS += -Wno-unknown-pragmas
else
  CFLAGS += -fopenmp
  LDLIBS += -fopenmp
endif

HEADERS := $(wildcard llmc/*.h)

.PHONY: all test clean format

all: train_gpt2 test_gpt2

train_gpt2: train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test_gpt2: test_gpt2.c train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Unit tests of the llmc/ headers (run by `make test`; ./build/test_units [WORKDIR] alone also works).
build/test_units: tests/test_units.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Regenerates the PyTorch reference dumps (build/test) and runs every test; last line: N passed, N failed.
test: train_gpt2 test_gpt2 build/test_units
	bash tests/run_tests.sh

format:
	clang-format -i train_gpt2.c test_gpt2.c llmc/*.h

clean:
	rm -f train_gpt2 test_gpt2
	rm -rf build
