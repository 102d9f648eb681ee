// CPU emulation of the CUDA subset llmc's kernels use (/work/notes/emu_contract.md lists it;
// docs/cuda_emu.md explains the design). Compiling a .cu file as C++17 with -DLLMC_CUDA_EMU
// (llmc/cuda_common.cuh then includes this header instead of the CUDA headers) gives a program
// that runs every kernel on the CPU: each CUDA thread a fiber, barriers and warp shuffles
// completed by a scheduler, shared memory per block, real atomics, bit-exact bf16, and the host
// runtime (cudaMalloc, copies, streams, events) done synchronously.
#ifndef LLMC_CUDA_EMU_H
#define LLMC_CUDA_EMU_H

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "the CUDA emulation is C++17: compile with g++ -std=c++17 -x c++ -DLLMC_CUDA_EMU"
#endif

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_bf16.h"
#include "emu_device.h"
#include "emu_runtime.h"
#include "emu_scheduler.h"
#include "emu_types.h"

// Qualifiers: every function is an ordinary C++ function here.
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// Static shared memory: one copy per OS thread, and a block runs on one OS thread from start to
// finish, so all the block's threads (fibers) see the same copy and no other block does.
#define __shared__ static thread_local

#define LLMC_LAUNCH(kernel, grid, block, shared_bytes, stream)                                     \
    ::llmc_emu::make_launcher(kernel, #kernel, __FILE__, __LINE__, (grid), (block),                \
                              (shared_bytes), (stream))
// Dynamic shared memory: the block's buffer of shared_bytes, NaN-filled when the block starts.
#define LLMC_EXTERN_SHARED(type, name)                                                             \
    type *const name = static_cast<type *>(::llmc_emu::dynamic_shared_memory())

#endif // LLMC_CUDA_EMU_H
