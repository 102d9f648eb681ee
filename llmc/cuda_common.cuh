// What every CUDA source of llmc includes first: the CUDA headers (or, with LLMC_CUDA_EMU, the
// CPU emulation of the subset we use: /work/notes/emu_contract.md lists it), error checking, the
// precision of activations and weights (floatX), warp and block reductions, and rounding helpers.
#ifndef LLMC_CUDA_COMMON_CUH
#define LLMC_CUDA_COMMON_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LLMC_CUDA_EMU
#include "cuda_emu/cuda_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
// The launch syntax the emulation can also provide (it has no <<< >>>).
#define LLMC_LAUNCH(kernel, grid, block, shared_bytes, stream)                                     \
    kernel<<<(grid), (block), (shared_bytes), (stream)>>>
#define LLMC_EXTERN_SHARED(type, name) extern __shared__ type name[]
#endif

// Full unrolling of a loop with a compile-time trip count, so that the per-thread arrays it indexes
// stay in registers. g++ (the emulation) has no `#pragma unroll` and -Wall rejects unknown pragmas.
#ifdef LLMC_CUDA_EMU
#define LLMC_UNROLL
#else
#define LLMC_UNROLL _Pragma("unroll")
#endif

#include "utils.h"

// ----------------------------------------------------------------------------
// Errors: one line with where it happened, then exit 1 (as fatal() does).

static inline void cuda_check_at(cudaError_t status, const char *file, int line) {
    if (status != cudaSuccess) {
        fatal("CUDA error at %s:%d: %s", file, line, cudaGetErrorString(status));
    }
}
#define cuda_check(call) cuda_check_at((call), __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// Precision. BF16 (default): activations, weights and gradients in bf16, fp32 master weights and
// AdamW state. PRECISION=FP32 (-DENABLE_FP32): everything fp32, for tight checks.

#ifdef ENABLE_FP32
typedef float floatX;
#define PRECISION_NAME "fp32"
#else
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "bf16"
#endif

__host__ __device__ __forceinline__ float to_float(float x) {
    return x;
}
__host__ __device__ __forceinline__ float to_float(__nv_bfloat16 x) {
    return __bfloat162float(x);
}

// Round-to-nearest-even conversion to the storage type.
template <typename T> __host__ __device__ __forceinline__ T from_float(float x);
template <> __host__ __device__ __forceinline__ float from_float<float>(float x) {
    return x;
}
template <> __host__ __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// Host-side conversions without CUDA intrinsics (same bits as __float2bfloat16_rn).
static inline void floats_to_floatX(floatX *out, const float *in, size_t n) {
#ifdef ENABLE_FP32
    memcpy(out, in, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint16_t bits = float_to_bf16(in[i]);
        memcpy((void *)&out[i], &bits, sizeof(bits));
    }
#endif
}

static inline void floatX_to_floats(float *out, const floatX *in, size_t n) {
#ifdef ENABLE_FP32
    memcpy(out, in, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint16_t bits;
        memcpy(&bits, (const void *)&in[i], sizeof(bits));
        out[i] = bf16_to_float(bits);
    }
#endif
}

// ----------------------------------------------------------------------------
// 128-bit memory access. A thread moves 16 bytes per load or store instruction (LDG.128/STG.128)
// instead of 2 or 4: a quarter to an eighth of the instructions, and more bytes in flight per
// thread, which memory-bound kernels need to approach DRAM bandwidth. Packed128<T> holds the 16
// bytes as T values (x128: 8 bf16 or 4 fp32). Addresses must be 16-byte aligned: callers check
// with is_aligned16 (or the shapes guarantee it) and fall back to scalar code otherwise; the
// emulation reports a misaligned address instead of faulting later or not at all.
// The _cs variants are streaming accesses (__ldcs/__stcs, "evict first"): for data read or written
// once, so it does not push reused data (weights, the next kernel's inputs) out of L2.

template <typename T> struct alignas(16) Packed128 {
    static constexpr int size = 16 / (int)sizeof(T);
    T payload[size];
    __host__ __device__ __forceinline__ T &operator[](int i) { return payload[i]; }
    __host__ __device__ __forceinline__ const T &operator[](int i) const { return payload[i]; }
};
static_assert(sizeof(Packed128<float>) == 16 && sizeof(Packed128<__nv_bfloat16>) == 16,
              "Packed128 is 16 bytes");
typedef Packed128<floatX> x128;
typedef Packed128<float> f128;

__host__ __device__ __forceinline__ bool is_aligned16(const void *address) {
    return ((uintptr_t)address & 15u) == 0;
}

__device__ __forceinline__ void check_aligned16(const void *address, const char *what) {
#ifdef LLMC_CUDA_EMU
    if (!is_aligned16(address))
        llmc_emu::fatal("%s: address %p is not 16-byte aligned", what, address);
#else
    (void)address;
    (void)what;
#endif
}

template <typename T> __device__ __forceinline__ Packed128<T> load128(const T *address) {
    check_aligned16(address, "load128");
    int4 bits = *reinterpret_cast<const int4 *>(address);
    Packed128<T> result;
    memcpy(&result, &bits, sizeof(result));
    return result;
}

template <typename T> __device__ __forceinline__ Packed128<T> load128cs(const T *address) {
    check_aligned16(address, "load128cs");
    int4 bits = __ldcs(reinterpret_cast<const int4 *>(address));
    Packed128<T> result;
    memcpy(&result, &bits, sizeof(result));
    return result;
}

template <typename T> __device__ __forceinline__ void store128(T *address, Packed128<T> value) {
    check_aligned16(address, "store128");
    int4 bits;
    memcpy(&bits, &value, sizeof(bits));
    *reinterpret_cast<int4 *>(address) = bits;
}

template <typename T> __device__ __forceinline__ void store128cs(T *address, Packed128<T> value) {
    check_aligned16(address, "store128cs");
    int4 bits;
    memcpy(&bits, &value, sizeof(bits));
    __stcs(reinterpret_cast<int4 *>(address), bits);
}

// ----------------------------------------------------------------------------
// Stochastic rounding: fp32 -> bf16 rounding up with probability equal to the dropped fraction,
// so small AdamW updates survive on average. The random bits are a hash of (index, seed): the
// result depends only on the data, never on scheduling, so runs are bit-reproducible.

__host__ __device__ __forceinline__ uint32_t hash_u32(uint32_t index, uint32_t seed) {
    // a few rounds of a multiply-xorshift mixer (murmur3's finaliser) over index ^ seed
    uint32_t h = index * 0x9E3779B1u ^ seed;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

__device__ __forceinline__ void stochastic_round(float value, float *out, uint32_t, uint32_t) {
    *out = value;
}

__device__ __forceinline__ void stochastic_round(float value, __nv_bfloat16 *out, uint32_t index,
                                                 uint32_t seed) {
    uint32_t bits = __float_as_uint(value);
    if ((bits & 0x7f800000u) == 0x7f800000u) { // inf and NaN: nothing to round
        *out = __float2bfloat16_rn(value);
        return;
    }
    uint32_t noise = hash_u32(index, seed) & 0xFFFFu;
    uint32_t rounded = (bits + noise) & 0xFFFF0000u; // may carry into the exponent: correct
    *out = __ushort_as_bfloat16((unsigned short)(rounded >> 16));
}

// ----------------------------------------------------------------------------
// Reductions. Every reduction here has a fixed order (butterfly in a warp, then warp results in
// order), so results do not depend on timing: the trainer is bit-reproducible.

__device__ __forceinline__ float warp_reduce_sum(float value) {
    for (int offset = 16; offset > 0; offset /= 2) {
        value += __shfl_xor_sync(0xFFFFFFFFu, value, offset);
    }
    return value;
}

__device__ __forceinline__ float warp_reduce_max(float value) {
    for (int offset = 16; offset > 0; offset /= 2) {
        value = fmaxf(value, __shfl_xor_sync(0xFFFFFFFFu, value, offset));
    }
    return value;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// shared: 32 floats of the caller's shared memory, reusable after the call returns.
__device__ __forceinline__ float block_reduce_sum(float value, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, num_warps = blockDim.x / 32;
    value = warp_reduce_sum(value);
    __syncthreads(); // shared may still be read by a previous call
    if (lane == 0) shared[warp] = value;
    __syncthreads();
    value = lane < num_warps ? shared[lane] : 0.0f;
    return warp_reduce_sum(value);
}

__device__ __forceinline__ float block_reduce_max(float value, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, num_warps = blockDim.x / 32;
    value = warp_reduce_max(value);
    __syncthreads();
    if (lane == 0) shared[warp] = value;
    __syncthreads();
    value = lane < num_warps ? shared[lane] : -INFINITY;
    return warp_reduce_max(value);
}

__host__ __device__ __forceinline__ int ceil_div(long long a, long long b) {
    return (int)((a + b - 1) / b);
}

// ----------------------------------------------------------------------------
// Device memory with a name for the error message.

static inline void *cuda_malloc_check(size_t bytes, const char *what) {
    void *ptr = NULL;
    cudaError_t status = cudaMalloc(&ptr, bytes > 0 ? bytes : 1);
    if (status != cudaSuccess) {
        fatal("cudaMalloc of %zu bytes (%.2f GiB) for %s failed: %s", bytes,
              (double)bytes / (1 << 30), what, cudaGetErrorString(status));
    }
    return ptr;
}

#endif // LLMC_CUDA_COMMON_CUH
