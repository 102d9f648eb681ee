// Tests of the CUDA emulation (llmc/cuda_emu/): block and warp primitives, atomics, shared
// memory, bf16, the host runtime, and that the emulation's strictness catches planted bugs
// (missing __syncthreads, divergent barriers, shuffles naming absent lanes, host pointers passed
// to kernels). The same source compiles with nvcc; the checks that only the emulation can make
// (poisoned memory, deadlock reports, scheduling orders) are under LLMC_CUDA_EMU.
// Usage: test_cuda_emu            runs every check
//        test_cuda_emu CASE       runs one planted-bug case (the parent runs these as children)
#include "emu_check.cuh"

#include <math.h>
#include <time.h>

#include <string>
#include <vector>

#ifdef LLMC_CUDA_EMU
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
extern char **environ;
#endif

// ----------------------------------------------------------------------------
// Block reduction: a tree in static shared memory, __syncthreads between levels.

__global__ void block_sum_kernel(float *out, const float *inp, int n,
                                 unsigned long long *worker_ids) {
    __shared__ float partial[256];
    int t = threadIdx.x;
    float sum = 0.0f;
    for (int i = t; i < n; i += blockDim.x) sum += inp[(size_t)blockIdx.x * n + i];
    partial[t] = sum;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
#ifdef LLMC_CUDA_EMU
    if (t == 0) worker_ids[blockIdx.x] = (unsigned long long)pthread_self();
#else
    (void)worker_ids;
#endif
}

static void test_block_reduction(void) {
    const int blocks = 96, n = 1000;
    std::vector<float> inp((size_t)blocks * n), out(blocks);
    for (size_t i = 0; i < inp.size(); i++) inp[i] = (float)((i * 2654435761u) % 17) - 8.0f;
    float *d_inp = to_device(inp.data(), inp.size());
    float *d_out = (float *)cuda_malloc_check(blocks * sizeof(float), "out");
    unsigned long long *d_ids =
        (unsigned long long *)cuda_malloc_check(blocks * sizeof(unsigned long long), "ids");
    LLMC_LAUNCH(block_sum_kernel, blocks, 256, 0, 0)(d_out, d_inp, n, d_ids);
    cuda_check(cudaGetLastError());
    to_host(out.data(), d_out, blocks);
    int wrong = 0;
    for (int b = 0; b < blocks; b++) {
        float expected = 0.0f; // integers, |partial sums| <= 8000 < 2^24: exact in any order
        for (int i = 0; i < n; i++) expected += inp[(size_t)b * n + i];
        wrong += out[b] != expected;
    }
    check(wrong == 0,
          "block reduction in static __shared__ memory with __syncthreads: %d of %d "
          "blocks wrong",
          wrong, blocks);
#ifdef LLMC_CUDA_EMU
    std::vector<unsigned long long> ids(blocks);
    to_host(ids.data(), d_ids, blocks);
    int distinct = 0;
    for (int b = 0; b < blocks; b++) {
        bool seen = false;
        for (int c = 0; c < b; c++) seen |= ids[c] == ids[b];
        distinct += !seen;
    }
    int workers = llmc_emu::config().workers;
    check(workers == 1 || distinct > 1, "blocks ran on %d OS threads (LLMC_EMU_THREADS=%d)",
          distinct, workers);
#endif
    cuda_check(cudaFree(d_inp));
    cuda_check(cudaFree(d_out));
    cuda_check(cudaFree(d_ids));
}

// ----------------------------------------------------------------------------
// 3D grids and blocks: threadIdx.x varies fastest, and warps are made of consecutive linear ids.

__global__ void indexing_kernel(int *out) {
    int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int threads = blockDim.x * blockDim.y * blockDim.z;
    int *slot = out + 3 * (block * threads + thread);
    slot[0] = (int)(threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16);
    slot[1] = (int)(blockIdx.x | blockIdx.y << 8 | blockIdx.z << 16);
    slot[2] = __shfl_down_sync(0xffffffffu, thread, 1);
}

template <typename T, int N> __global__ void fill_kernel(T *out, T value) {
    for (int i = threadIdx.x; i < N; i += blockDim.x) out[blockIdx.x * N + i] = value;
}

static void test_indexing(void) {
    dim3 grid(3, 2, 2), block(8, 4, 2); // 64 threads: two full warps
    int blocks = 12, threads = 64;
    std::vector<int> out(3 * blocks * threads);
    int *d_out = (int *)cuda_malloc_check(out.size() * sizeof(int), "out");
    LLMC_LAUNCH(indexing_kernel, grid, block, 0, 0)(d_out);
    cuda_check(cudaGetLastError());
    to_host(out.data(), d_out, out.size());
    int wrong = 0;
    for (int b = 0; b < blocks; b++) {
        int bx = b % 3, by = b / 3 % 2, bz = b / 6;
        for (int t = 0; t < threads; t++) {
            int tx = t % 8, ty = t / 8 % 4, tz = t / 32;
            const int *slot = &out[3 * (b * threads + t)];
            wrong += slot[0] != (tx | ty << 8 | tz << 16);
            wrong += slot[1] != (bx | by << 8 | bz << 16);
            wrong += slot[2] != (t % 32 == 31 ? t : t + 1);
        }
    }
    check(
        wrong == 0,
        "3D grid (3,2,2) of 3D blocks (8,4,2): threadIdx/blockIdx and warp lanes "
        "follow the linear thread id; a template kernel launched as (fill_kernel<double, 100>): %d "
        "wrong values",
        wrong);
    cuda_check(cudaFree(d_out));
}

// ----------------------------------------------------------------------------
// Warp shuffles against a model of CUDA's documented semantics.

enum ShuffleMode { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR };

__global__ void shuffle_kernel(int *out, float *out_float, int mode, int operand, int width) {
    int t = threadIdx.x;
    int value = t * 7 + 3;
    int result = 0;
    float as_float = 0.0f;
    switch (mode) {
    case SHFL_IDX:
        result = __shfl_sync(0xffffffffu, value, operand, width);
        as_float = __shfl_sync(0xffffffffu, (float)value + 0.5f, operand, width);
        break;
    case SHFL_UP:
        result = __shfl_up_sync(0xffffffffu, value, (unsigned)operand, width);
        as_float = __shfl_up_sync(0xffffffffu, (float)value + 0.5f, (unsigned)operand, width);
        break;
    case SHFL_DOWN:
        result = __shfl_down_sync(0xffffffffu, value, (unsigned)operand, width);
        as_float = __shfl_down_sync(0xffffffffu, (float)value + 0.5f, (unsigned)operand, width);
        break;
    default:
        result = __shfl_xor_sync(0xffffffffu, value, operand, width);
        as_float = __shfl_xor_sync(0xffffffffu, (float)value + 0.5f, operand, width);
        break;
    }
    out[t] = result;
    out_float[t] = as_float;
}

// The lane whose value lane `lane` receives (the CUDA programming guide's rules).
static int expected_source(int mode, int lane, int operand, int width) {
    int group = lane / width * width;
    switch (mode) {
    case SHFL_IDX: return group + ((operand % width) + width) % width;
    case SHFL_UP: return lane - group - operand < 0 ? lane : lane - operand;
    case SHFL_DOWN: return lane - group + operand >= width ? lane : lane + operand;
    default: {
        int source = lane ^ operand;
        return source >= group + width ? lane : source;
    }
    }
}

__global__ void warp_sum_kernel(float *out, const float *inp) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    float sum = warp_reduce_sum(inp[t]);
    float largest = warp_reduce_max(inp[t]);
    if (threadIdx.x % 32 == 0) {
        out[2 * (t / 32)] = sum;
        out[2 * (t / 32) + 1] = largest;
    }
}

static void test_shuffles(void) {
    const int threads = 64; // two warps
    int *d_out = (int *)cuda_malloc_check(threads * sizeof(int), "out");
    float *d_out_float = (float *)cuda_malloc_check(threads * sizeof(float), "out");
    const char *names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
    const int operands[] = {0, 1, 3, 5, 17, 31, -1};
    for (int mode = 0; mode < 4; mode++) {
        int cases = 0, wrong = 0;
        for (int width = 1; width <= 32; width *= 2) {
            for (int operand : operands) {
                if (mode != SHFL_IDX && operand < 0) continue;
                LLMC_LAUNCH(shuffle_kernel, 1, threads, 0, 0)
                (d_out, d_out_float, mode, operand, width);
                cuda_check(cudaGetLastError());
                int out[threads];
                float out_float[threads];
                to_host(out, d_out, threads);
                to_host(out_float, d_out_float, threads);
                for (int t = 0; t < threads; t++) {
                    int source = t / 32 * 32 + expected_source(mode, t % 32, operand, width);
                    wrong += out[t] != source * 7 + 3;
                    wrong += out_float[t] != (float)(source * 7 + 3) + 0.5f;
                }
                cases++;
            }
        }
        check(wrong == 0,
              "%s (int and float) matches CUDA's rules over %d width/lane cases: %d "
              "lanes wrong",
              names[mode], cases, wrong);
    }
    cuda_check(cudaFree(d_out));
    cuda_check(cudaFree(d_out_float));

    const int n = 256;
    std::vector<float> inp(n), out(2 * n / 32);
    for (int i = 0; i < n; i++) inp[i] = (float)((i * 37) % 101);
    float *d_inp = to_device(inp.data(), n);
    float *d_sums = (float *)cuda_malloc_check(out.size() * sizeof(float), "sums");
    LLMC_LAUNCH(warp_sum_kernel, 2, n / 2, 0, 0)(d_sums, d_inp);
    cuda_check(cudaGetLastError());
    to_host(out.data(), d_sums, out.size());
    int wrong = 0;
    for (int w = 0; w < n / 32; w++) {
        float sum = 0.0f, largest = -INFINITY; // integers <= 32 * 100 < 2^24: exact in any order
        for (int i = 0; i < 32; i++) {
            sum += inp[w * 32 + i];
            largest = fmaxf(largest, inp[w * 32 + i]);
        }
        wrong += out[2 * w] != sum || out[2 * w + 1] != largest;
    }
    check(wrong == 0, "warp_reduce_sum / warp_reduce_max (xor butterflies): %d of %d warps wrong",
          wrong, n / 32);
    cuda_check(cudaFree(d_inp));
    cuda_check(cudaFree(d_sums));
}

// ----------------------------------------------------------------------------
// Votes and __syncthreads_count, with partial masks.

__global__ void vote_kernel(unsigned *out, const int *predicate, unsigned mask, int *block_count) {
    int t = threadIdx.x, lane = t % 32;
    out[3 * t] = out[3 * t + 1] = out[3 * t + 2] = 0xdeadbeefu;
    if (mask >> lane & 1u) {
        int p = predicate[t];
        out[3 * t] = __ballot_sync(mask, p);
        out[3 * t + 1] = (unsigned)__any_sync(mask, p);
        out[3 * t + 2] = (unsigned)__all_sync(mask, p);
    }
    __syncwarp();
    int count = __syncthreads_count(predicate[t]);
    if (t == 0) *block_count = count;
}

static void test_votes(void) {
    const int threads = 64;
    const unsigned masks[] = {0xffffffffu, 0x0000ffffu, 0xaaaaaaaau, 0x00000001u};
    int *d_pred = (int *)cuda_malloc_check(threads * sizeof(int), "predicate");
    unsigned *d_out = (unsigned *)cuda_malloc_check(3 * threads * sizeof(unsigned), "out");
    int *d_count = (int *)cuda_malloc_check(sizeof(int), "count");
    int cases = 0, wrong = 0;
    for (int pattern = 0; pattern < 4; pattern++) {
        int pred[threads];
        for (int t = 0; t < threads; t++) {
            pred[t] = pattern == 0 ? 1 : pattern == 1 ? 0 : pattern == 2 ? (t % 3 == 0) : (t != 40);
        }
        cuda_check(cudaMemcpy(d_pred, pred, sizeof(pred), cudaMemcpyHostToDevice));
        for (unsigned mask : masks) {
            LLMC_LAUNCH(vote_kernel, 1, threads, 0, 0)(d_out, d_pred, mask, d_count);
            cuda_check(cudaGetLastError());
            unsigned out[3 * threads];
            int count;
            to_host(out, d_out, 3 * threads);
            to_host(&count, d_count, 1);
            int expected_count = 0;
            for (int t = 0; t < threads; t++) expected_count += pred[t] != 0;
            wrong += count != expected_count;
            for (int t = 0; t < threads; t++) {
                int lane = t % 32, base = t - lane;
                if (!(mask >> lane & 1u)) {
                    wrong += out[3 * t] != 0xdeadbeefu;
                    continue;
                }
                unsigned ballot = 0;
                for (int l = 0; l < 32; l++) {
                    if ((mask >> l & 1u) && pred[base + l]) ballot |= 1u << l;
                }
                wrong += out[3 * t] != ballot;
                wrong += out[3 * t + 1] != (unsigned)(ballot != 0);
                wrong += out[3 * t + 2] != (unsigned)(ballot == mask);
            }
            cases++;
        }
    }
    check(wrong == 0,
          "__ballot_sync/__any_sync/__all_sync with full and partial masks, "
          "__syncthreads_count: %d cases, %d wrong values",
          cases, wrong);
    cuda_check(cudaFree(d_pred));
    cuda_check(cudaFree(d_out));
    cuda_check(cudaFree(d_count));
}

// ----------------------------------------------------------------------------
// Atomics from many blocks (which run on several OS threads in the emulation).

struct AtomicTotals {
    int count;
    unsigned tid_mod_7;
    unsigned long long shifted;
    float ones;
    int largest;
    unsigned cas_count;
    int block_counts_ok;
};

__global__ void atomics_kernel(AtomicTotals *totals) {
    __shared__ int block_count;
    unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
    if (threadIdx.x == 0) block_count = 0;
    __syncthreads();
    atomicAdd(&block_count, 1);
    atomicAdd(&totals->count, 1);
    atomicAdd(&totals->tid_mod_7, t % 7);
    atomicAdd(&totals->shifted, (unsigned long long)t << 20);
    atomicAdd(&totals->ones, 1.0f);
    atomicMax(&totals->largest, (int)((t * 7919u) % 100003u));
    unsigned old = totals->cas_count, seen;
    while ((seen = atomicCAS(&totals->cas_count, old, old + 1)) != old) old = seen;
    __syncthreads();
    if (threadIdx.x == 0 && block_count == (int)blockDim.x) atomicAdd(&totals->block_counts_ok, 1);
}

static void test_atomics(void) {
    const int blocks = 64, threads = 256, n = blocks * threads;
    AtomicTotals zero;
    memset(&zero, 0, sizeof(zero));
    AtomicTotals *d_totals = to_device(&zero, 1);
    LLMC_LAUNCH(atomics_kernel, blocks, threads, 0, 0)(d_totals);
    cuda_check(cudaGetLastError());
    AtomicTotals got;
    to_host(&got, d_totals, 1);
    AtomicTotals want;
    memset(&want, 0, sizeof(want));
    for (unsigned t = 0; t < (unsigned)n; t++) {
        want.tid_mod_7 += t % 7;
        want.shifted += (unsigned long long)t << 20;
        want.largest = max(want.largest, (int)((t * 7919u) % 100003u));
    }
    // the float sum of n = 16384 ones is exact in any order: every partial sum is an integer < 2^24
    check(got.count == n && got.tid_mod_7 == want.tid_mod_7 && got.shifted == want.shifted &&
              got.ones == (float)n && got.largest == want.largest && got.cas_count == (unsigned)n,
          "atomicAdd (int, unsigned, unsigned long long, float), atomicMax, atomicCAS loop from %d "
          "threads in %d blocks: count %d, float sum %.0f, max %d (want %d), CAS %u",
          n, blocks, got.count, got.ones, got.largest, want.largest, got.cas_count);
    check(got.block_counts_ok == blocks,
          "atomicAdd on __shared__ memory: %d of %d blocks counted "
          "their threads exactly",
          got.block_counts_ok, blocks);
    cuda_check(cudaFree(d_totals));
}

// ----------------------------------------------------------------------------
// Dynamic shared memory.

__global__ void dynamic_shared_kernel(float *out, int n, int *fresh_nan) {
    LLMC_EXTERN_SHARED(float, buffer);
    int nan_seen = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        nan_seen += isnan(buffer[i]) ? 1 : 0;
        buffer[i] = (float)(i + blockIdx.x * n);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[blockIdx.x * n + i] = buffer[n - 1 - i];
    atomicAdd(fresh_nan, nan_seen);
}

static void test_dynamic_shared(void) {
    const int blocks = 3, threads = 128;
    for (int n : {1024, 16384}) { // 4 KiB, and 64 KiB (more than the default 48 KiB)
        size_t bytes = n * sizeof(float);
        float *d_out = (float *)cuda_malloc_check(blocks * bytes, "out");
        int *d_nan = (int *)cuda_malloc_check(sizeof(int), "nan count");
        cuda_check(cudaMemset(d_nan, 0, sizeof(int)));
        if (bytes > 48 * 1024) {
            LLMC_LAUNCH(dynamic_shared_kernel, blocks, threads, bytes, 0)(d_out, n, d_nan);
            cudaError_t refused = cudaGetLastError();
            check(refused != cudaSuccess,
                  "%zu bytes of dynamic shared memory without "
                  "cudaFuncSetAttribute: the launch fails (%s)",
                  bytes, cudaGetErrorString(refused));
            cuda_check(cudaFuncSetAttribute(
                dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
        }
        LLMC_LAUNCH(dynamic_shared_kernel, blocks, threads, bytes, 0)(d_out, n, d_nan);
        cuda_check(cudaGetLastError());
        std::vector<float> out((size_t)blocks * n);
        int nan_count;
        to_host(out.data(), d_out, out.size());
        to_host(&nan_count, d_nan, 1);
        int wrong = 0;
        for (int b = 0; b < blocks; b++) {
            for (int i = 0; i < n; i++)
                wrong += out[(size_t)b * n + i] != (float)(n - 1 - i + b * n);
        }
        check(wrong == 0, "LLMC_EXTERN_SHARED, %zu bytes per block: %d of %d values wrong", bytes,
              wrong, blocks * n);
#ifdef LLMC_CUDA_EMU
        check(nan_count == blocks * n, "dynamic shared memory starts NaN in every block: %d of %d",
              nan_count, blocks * n);
#endif
        cuda_check(cudaFree(d_out));
        cuda_check(cudaFree(d_nan));
    }
}

// ----------------------------------------------------------------------------
// bf16: conversions bit-exact against a reference written from the definition (the nearest
// bf16 value, ties to the even one), over special, tie, denormal, boundary and random values.

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t reference_bf16(float f) {
    if (isnan(f)) return 0x7fff;
    uint32_t u = float_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint16_t below = (uint16_t)((u & 0x7fffffffu) >> 16); // magnitude truncated: at or below |f|
    double magnitude = fabs((double)f);
    double below_value = (double)bits_float((uint32_t)below << 16);
    if (magnitude == below_value) return sign | below;
    uint16_t above = (uint16_t)(below + 1);
    // the step past the largest finite bf16 is 2^128 (which rounds to infinity)
    double above_value =
        above == 0x7f80 ? ldexp(1.0, 128) : (double)bits_float((uint32_t)above << 16);
    double to_below = magnitude - below_value, to_above = above_value - magnitude;
    uint16_t nearest = to_below < to_above   ? below
                       : to_above < to_below ? above
                                             : (below % 2 == 0 ? below : above);
    return sign | nearest;
}

__global__ void bf16_kernel(unsigned short *out, const float *inp, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(inp[i]));
}

static void test_bf16(void) {
    std::vector<float> values;
    const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                 0xffc00000u, 0x7f800001u, 0x7fbfffffu, 0xff800001u, 0x7f7fffffu,
                                 0x7f7f8000u, 0x7f7f7fffu, 0x7f7f8001u, 0xff7f8000u, 0x00000001u,
                                 0x00008000u, 0x00018000u, 0x007fffffu, 0x00800000u, 0x807fffffu,
                                 0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u};
    for (uint32_t s : specials) values.push_back(bits_float(s));
    uint64_t state = 0x12345678u;
    auto next = [&state]() {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return (uint32_t)(state >> 32);
    };
    for (int i = 0; i < 1000000; i++) values.push_back(bits_float(next())); // any
    for (int i = 0; i < 200000; i++)
        values.push_back(bits_float((next() & 0xffff0000u) | 0x8000u)); // ties
    for (int i = 0; i < 200000; i++)
        values.push_back(bits_float(next() & 0x807fffffu)); // denormals
    for (int i = 0; i < 200000; i++) { // near ties: within a few ulps of the midpoint
        uint32_t u = (next() & 0xffff0000u) | 0x8000u;
        values.push_back(bits_float(u + (next() % 7) - 3));
    }
    size_t n = values.size();
    int host_wrong = 0;
    uint32_t first_bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t got = __bfloat16_as_ushort(__float2bfloat16_rn(values[i]));
        uint16_t want = reference_bf16(values[i]);
        if (got != want && host_wrong++ == 0) first_bad = float_bits(values[i]);
    }
    check(host_wrong == 0,
          "__float2bfloat16_rn (host) bit-exact vs the nearest-even reference over "
          "%zu values (NaN, inf, overflow, ties, denormals, random): %d wrong (first 0x%08x)",
          n, host_wrong, first_bad);

    float *d_values = to_device(values.data(), n);
    unsigned short *d_bits =
        (unsigned short *)cuda_malloc_check(n * sizeof(unsigned short), "bits");
    LLMC_LAUNCH(bf16_kernel, ceil_div((long long)n, 256), 256, 0, 0)(d_bits, d_values, (int)n);
    cuda_check(cudaGetLastError());
    std::vector<unsigned short> bits(n);
    to_host(bits.data(), d_bits, n);
    int device_wrong = 0;
    for (size_t i = 0; i < n; i++) device_wrong += bits[i] != reference_bf16(values[i]);
    check(device_wrong == 0, "__float2bfloat16_rn in a kernel: %d of %zu wrong", device_wrong, n);
    cuda_check(cudaFree(d_values));
    cuda_check(cudaFree(d_bits));

    int widen_wrong = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = __bfloat162float(__ushort_as_bfloat16((unsigned short)b));
        widen_wrong += float_bits(f) != b << 16;
    }
    check(widen_wrong == 0, "__bfloat162float is exact for all 65536 bf16 patterns: %d wrong",
          widen_wrong);

    int arithmetic_wrong = 0, pairs = 0;
    for (int i = 0; i < 200000; i++) {
        __nv_bfloat16 a = __ushort_as_bfloat16((unsigned short)next());
        __nv_bfloat16 b = __ushort_as_bfloat16((unsigned short)next());
        float fa = __bfloat162float(a), fb = __bfloat162float(b);
        arithmetic_wrong += __bfloat16_as_ushort(a + b) != reference_bf16(fa + fb);
        arithmetic_wrong += __bfloat16_as_ushort(a * b) != reference_bf16(fa * fb);
        arithmetic_wrong += __bfloat16_as_ushort(a - b) != reference_bf16(fa - fb);
        pairs++;
    }
    float2 two = make_float2(1.00390625f, -3.0e-39f);
    __nv_bfloat162 packed = __float22bfloat162_rn(two);
    float2 back = __bfloat1622float2(packed);
    check(arithmetic_wrong == 0 && back.x == bits_float((uint32_t)reference_bf16(two.x) << 16) &&
              float_bits(back.y) == (uint32_t)reference_bf16(two.y) << 16,
          "bf16 + - * (in float, rounded) over %d random pairs, __float22bfloat162_rn / "
          "__bfloat1622float2: %d wrong",
          pairs, arithmetic_wrong);
}

// ----------------------------------------------------------------------------
// The host runtime.

#ifdef LLMC_CUDA_EMU
// Async copies with pinned memory (the emulation settles their host side at the next host wait,
// and counts host waits): a download's destination is NaN until a wait, a query before it says
// not ready (and is no wait), the stream sync is one.
static void test_pinned_async_copies(void) {
    const int n = 64;
    std::vector<float> values(n);
    for (int i = 0; i < n; i++) values[i] = 0.25f * (float)(i + 1);
    float *d = to_device(values.data(), n);
    float *pinned = NULL;
    cuda_check(cudaMallocHost((void **)&pinned, n * sizeof(float)));
    cudaStream_t stream;
    cudaEvent_t copied;
    cuda_check(cudaStreamCreate(&stream));
    cuda_check(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
    llmc_emu::WaitCounters &w = llmc_emu::wait_counters();
    unsigned long long syncs = w.calls[(int)llmc_emu::Wait::stream_sync].load();
    unsigned long long events = w.calls[(int)llmc_emu::Wait::event_sync].load();
    cuda_check(cudaMemcpyAsync(pinned, d, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
    cuda_check(cudaEventRecord(copied, stream));
    int poisoned = 0;
    for (int i = 0; i < n; i++) poisoned += isnan(pinned[i]);
    cudaError_t event_before = cudaEventQuery(copied);
    cuda_check(cudaStreamSynchronize(stream));
    int right = 0;
    for (int i = 0; i < n; i++) right += pinned[i] == values[i];
    cudaError_t event_after = cudaEventQuery(copied);
    unsigned long long sync_waits = w.calls[(int)llmc_emu::Wait::stream_sync].load() - syncs;
    unsigned long long event_waits = w.calls[(int)llmc_emu::Wait::event_sync].load() - events;
    check(poisoned == n && event_before == cudaErrorNotReady && right == n &&
              event_after == cudaSuccess && sync_waits == 1 && event_waits == 0,
          "pinned download: %d of %d NaN before a wait, event query %s, after the stream sync %d "
          "right and %s; counted %llu stream sync(s), %llu event wait(s) (want 1, 0)",
          poisoned, n, cudaGetErrorName(event_before), right, cudaGetErrorName(event_after),
          sync_waits, event_waits);
    // a query polled in a loop (llmc/multi_gpu.cuh's multi_gpu_wait) sees the GPU get there
    cuda_check(cudaMemcpyAsync(pinned, d, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
    cudaError_t first = cudaStreamQuery(stream), second = cudaStreamQuery(stream);
    check(first == cudaErrorNotReady && second == cudaSuccess && pinned[n - 1] == values[n - 1],
          "stream queries after a pinned download: %s, then %s with the data in place",
          cudaGetErrorName(first), cudaGetErrorName(second));
    // an upload whose source stays as it was until the wait passes the check
    cuda_check(cudaMemcpyAsync(d, pinned, n * sizeof(float), cudaMemcpyHostToDevice, stream));
    cuda_check(cudaEventSynchronize(copied));
    cuda_check(cudaEventDestroy(copied));
    cuda_check(cudaStreamDestroy(stream));
    cuda_check(cudaFreeHost(pinned));
    cuda_check(cudaFree(d));
}
#endif

static void test_runtime(void) {
    float *d = NULL;
    cuda_check(cudaMalloc(&d, 1000 * sizeof(float)));
#ifdef LLMC_CUDA_EMU
    std::vector<float> fresh(1000);
    to_host(fresh.data(), d, 1000);
    int not_poisoned = 0;
    for (float f : fresh) not_poisoned += float_bits(f) != 0xffffffffu;
    check(not_poisoned == 0, "fresh cudaMalloc memory is 0xFF bytes (NaN): %d of 1000 floats not",
          not_poisoned);
    std::vector<float> host(1001, 1.0f);
    cudaError_t past_end = cudaMemcpy(d, host.data(), 1001 * sizeof(float), cudaMemcpyHostToDevice);
    cudaError_t swapped = cudaMemcpy(host.data(), d, 4, cudaMemcpyHostToDevice);
    cudaError_t memset_past_end = cudaMemset(d + 500, 0, 501 * sizeof(float));
    check(past_end == cudaErrorInvalidValue && swapped == cudaErrorInvalidValue &&
              memset_past_end == cudaErrorInvalidValue,
          "cudaMemcpy past the end / with the direction swapped, cudaMemset past the end: "
          "cudaErrorInvalidValue (%s, %s, %s)",
          cudaGetErrorName(past_end), cudaGetErrorName(swapped), cudaGetErrorName(memset_past_end));
    (void)cudaGetLastError();
#endif
    cuda_check(cudaMemset(d, 0, 1000 * sizeof(float)));
    float zeros[1000];
    to_host(zeros, d, 1000);
    int nonzero = 0;
    for (float f : zeros) nonzero += f != 0.0f;
    check(nonzero == 0, "cudaMemset to 0 then copy back: %d nonzero", nonzero);

    int stack_variable = 0;
    cudaError_t bad_free = cudaFree(&stack_variable);
    cudaError_t last = cudaGetLastError();
    cudaError_t cleared = cudaGetLastError();
    check(
        bad_free == cudaErrorInvalidValue && last == cudaErrorInvalidValue &&
            cleared == cudaSuccess,
        "cudaFree of a pointer cudaMalloc did not return: %s, recorded as last error, then cleared",
        cudaGetErrorString(bad_free));
    cuda_check(cudaFree(d));

    LLMC_LAUNCH(bf16_kernel, 1, 2048, 0, 0)(NULL, NULL, 0);
    cudaError_t too_many = cudaGetLastError();
    LLMC_LAUNCH(bf16_kernel, 0, 32, 0, 0)(NULL, NULL, 0);
    cudaError_t empty_grid = cudaGetLastError();
    check(too_many == cudaErrorInvalidConfiguration && empty_grid == cudaErrorInvalidConfiguration,
          "launches with 2048 threads per block or an empty grid fail: %s, %s",
          cudaGetErrorName(too_many), cudaGetErrorName(empty_grid));

    cudaStream_t stream;
    cudaEvent_t start, end, untimed;
    cuda_check(cudaStreamCreate(&stream));
    cuda_check(cudaEventCreate(&start));
    cuda_check(cudaEventCreate(&end));
    cuda_check(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming));
    cuda_check(cudaEventRecord(start, stream));
    struct timespec pause = {0, 30 * 1000 * 1000};
    nanosleep(&pause, NULL);
    cuda_check(cudaEventRecord(end, stream));
    cuda_check(cudaEventRecord(untimed, stream));
    cuda_check(cudaEventSynchronize(end));
    float ms = -1.0f, ms_untimed = -1.0f;
    cuda_check(cudaEventElapsedTime(&ms, start, end));
    cudaError_t no_timing = cudaEventElapsedTime(&ms_untimed, start, untimed);
    (void)cudaGetLastError();
    // nanosleep sleeps >= 30 ms; 1 ms below for the clocks' (microsecond) resolution, 2 s above
    // for a loaded machine: a timing bound, not a rounding one
    check(ms >= 29.0f && ms < 2000.0f && no_timing == cudaErrorInvalidResourceHandle,
          "events around a 30 ms pause measure %.2f ms; with cudaEventDisableTiming: %s", ms,
          cudaGetErrorName(no_timing));
    cuda_check(cudaEventDestroy(start));
    cuda_check(cudaEventDestroy(end));
    cuda_check(cudaEventDestroy(untimed));
    cuda_check(cudaStreamDestroy(stream));

#ifdef LLMC_CUDA_EMU
    test_pinned_async_copies();
#endif

    cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, 0));
    check(prop.warpSize == 32 && prop.maxThreadsPerBlock == 1024 && prop.multiProcessorCount > 0,
          "cudaGetDeviceProperties: \"%s\", %d multiprocessors, compute %d.%d", prop.name,
          prop.multiProcessorCount, prop.major, prop.minor);
}

// ----------------------------------------------------------------------------
// Planted bugs: each runs in a child process; the emulation must report it.

// Reverses each block's 256 values through shared memory; without the barrier a thread reads a
// slot that another thread may not have written yet.
__global__ void reverse_kernel(float *out, const float *inp, int use_barrier) {
    __shared__ float slots[256];
    int t = threadIdx.x;
    slots[t] = inp[blockIdx.x * 256 + t];
    if (use_barrier) __syncthreads();
    out[blockIdx.x * 256 + t] = slots[255 - t];
}

__global__ void divergent_barrier_kernel(int *out) {
    if (threadIdx.x % 2 == 0) {
        __syncthreads();
        out[threadIdx.x] = 1;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2;
    }
}

__global__ void early_exit_barrier_kernel(int *out) {
    if (threadIdx.x >= 16) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

// Lanes 0-15 wait at a full-warp shuffle for lanes 16-31, which wait at __syncthreads.
__global__ void shuffle_barrier_deadlock_kernel(float *out) {
    float value = (float)threadIdx.x;
    if (threadIdx.x % 32 < 16)
        value = __shfl_xor_sync(0xffffffffu, value, 1);
    else
        __syncthreads();
    out[threadIdx.x] = value;
}

// 48 threads: the second warp has 16 lanes, but the mask names all 32.
__global__ void absent_lanes_kernel(float *out) {
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (float)threadIdx.x, 1);
}

__global__ void scale_kernel(float *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= 2.0f;
}

// Each thread reads its element and the next one: the last thread reads one past the end.
__global__ void shift_sum_kernel(float *out, const float *inp, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = inp[i] + inp[i + 1];
}

__global__ void shared_overrun_kernel(float *out, int n) {
    LLMC_EXTERN_SHARED(float, buffer);
    buffer[threadIdx.x + 1] = (float)threadIdx.x; // the last thread writes buffer[n]
    __syncthreads();
    if (threadIdx.x + 1 < (unsigned)n) out[threadIdx.x] = buffer[threadIdx.x + 1];
}

__global__ void wild_pointer_kernel(float *out, long long address) {
    float *wild = (float *)(uintptr_t)address; // an address nobody allocated
    out[threadIdx.x] = wild[threadIdx.x];
}

// About 1 KiB of stack per level: 256 levels overflow the emulation's 64 KiB fiber stacks.
__device__ __noinline__ int deep_recursion(int depth) {
    volatile char frame[1024];
    frame[depth % 1024] = (char)depth;
    return depth == 0 ? 0 : deep_recursion(depth - 1) + frame[depth % 1024];
}

__global__ void deep_recursion_kernel(int *out, int depth) {
    out[threadIdx.x] = deep_recursion(depth);
}

// Runs one case in this process; returns the exit status.
static int run_case(const char *name) {
    float *d_out = (float *)cuda_malloc_check(1024 * sizeof(float), "out");
    if (strcmp(name, "reverse") == 0 || strcmp(name, "reverse_no_barrier") == 0) {
        const int blocks = 8;
        std::vector<float> inp(blocks * 256), out(blocks * 256);
        for (size_t i = 0; i < inp.size(); i++) inp[i] = (float)(i + 1); // never the stale 0
        float *d_inp = to_device(inp.data(), inp.size());
        float *d_rev = (float *)cuda_malloc_check(inp.size() * sizeof(float), "reversed");
        LLMC_LAUNCH(reverse_kernel, blocks, 256, 0, 0)(d_rev, d_inp, strcmp(name, "reverse") == 0);
        cuda_check(cudaGetLastError());
        to_host(out.data(), d_rev, out.size());
        // threads 0-127 read slots of threads 128-255 and the other way round: without the
        // barrier, forward order gets the first half wrong, reverse order the second
        int wrong_first = 0, wrong_second = 0;
        for (int b = 0; b < blocks; b++) {
            for (int t = 0; t < 256; t++) {
                int bad = out[b * 256 + t] != inp[b * 256 + 255 - t];
                if (t < 128)
                    wrong_first += bad;
                else
                    wrong_second += bad;
            }
        }
        printf("wrong %d in threads 0-127, %d in threads 128-255\n", wrong_first, wrong_second);
        return 0;
    }
    if (strcmp(name, "divergent") == 0) {
        LLMC_LAUNCH(divergent_barrier_kernel, 1, 64, 0, 0)((int *)d_out);
    } else if (strcmp(name, "early_exit") == 0) {
        LLMC_LAUNCH(early_exit_barrier_kernel, 1, 32, 0, 0)((int *)d_out);
    } else if (strcmp(name, "shuffle_deadlock") == 0) {
        LLMC_LAUNCH(shuffle_barrier_deadlock_kernel, 1, 32, 0, 0)(d_out);
    } else if (strcmp(name, "absent_lanes") == 0) {
        LLMC_LAUNCH(absent_lanes_kernel, 1, 48, 0, 0)(d_out);
    } else if (strcmp(name, "host_pointer") == 0) {
        std::vector<float> host(64, 1.0f);
        LLMC_LAUNCH(scale_kernel, 1, 64, 0, 0)(host.data(), 64);
    } else if (strcmp(name, "freed_pointer") == 0) {
        float *gone = (float *)cuda_malloc_check(64 * sizeof(float), "soon freed");
        cuda_check(cudaFree(gone));
        LLMC_LAUNCH(scale_kernel, 1, 64, 0, 0)(gone, 64);
    } else if (strcmp(name, "out_of_bounds") == 0) {
        float *d_inp = (float *)cuda_malloc_check(100 * sizeof(float), "100 floats");
        cuda_check(cudaMemset(d_inp, 0, 100 * sizeof(float)));
        LLMC_LAUNCH(shift_sum_kernel, 1, 128, 0, 0)(d_out, d_inp, 100);
    } else if (strcmp(name, "shared_out_of_bounds") == 0) {
        LLMC_LAUNCH(shared_overrun_kernel, 1, 64, 64 * sizeof(float), 0)(d_out, 64);
    } else if (strcmp(name, "wild_pointer") == 0) {
        LLMC_LAUNCH(wild_pointer_kernel, 1, 32, 0, 0)(d_out, 64);
    } else if (strcmp(name, "pinned_reuse") == 0) {
        float *pinned = NULL;
        cuda_check(cudaMallocHost((void **)&pinned, 64 * sizeof(float)));
        for (int i = 0; i < 64; i++) pinned[i] = (float)i;
        cuda_check(cudaMemcpyAsync(d_out, pinned, 64 * sizeof(float), cudaMemcpyHostToDevice, 0));
        pinned[7] = -1.0f; // the next micro-batch, written before the copy is known done
    } else if (strcmp(name, "stack_overflow") == 0) {
        LLMC_LAUNCH(deep_recursion_kernel, 1, 32, 0, 0)((int *)d_out, 256);
    } else {
        fprintf(stderr, "unknown case '%s'\n", name);
        return 2;
    }
    cuda_check(cudaGetLastError());
    cuda_check(cudaDeviceSynchronize());
    printf("finished\n");
    return 0;
}

#ifdef LLMC_CUDA_EMU
struct ChildResult {
    int status; // exit code, or 128 + signal
    std::string out, err;
};

static std::string read_file_text(const std::string &path) {
    std::string text;
    FILE *f = fopen(path.c_str(), "rb");
    if (f == NULL) return text;
    char buffer[4096];
    size_t got;
    while ((got = fread(buffer, 1, sizeof(buffer), f)) > 0) text.append(buffer, got);
    fclose(f);
    return text;
}

// Runs this program on one case with extra environment settings ("NAME=value", ...).
static ChildResult run_child(const char *name, std::vector<std::string> settings) {
    static int serial = 0;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "/tmp/llmc_emu_test_%d_%d", (int)getpid(), serial++);
    std::string out_path = std::string(prefix) + ".out", err_path = std::string(prefix) + ".err";
    std::vector<std::string> environment;
    for (char **e = environ; *e != NULL; e++) {
        bool replaced = false;
        for (const std::string &s : settings) {
            replaced |= strncmp(*e, s.c_str(), s.find('=') + 1) == 0;
        }
        if (!replaced) environment.push_back(*e);
    }
    for (const std::string &s : settings) environment.push_back(s);
    std::vector<char *> envp;
    for (std::string &s : environment) envp.push_back(&s[0]);
    envp.push_back(NULL);
    char self[4096];
    ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (length <= 0) fatal("cannot find this executable (/proc/self/exe)");
    self[length] = '\0';
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *out = freopen(out_path.c_str(), "w", stdout);
        FILE *err = freopen(err_path.c_str(), "w", stderr);
        if (out == NULL || err == NULL) _exit(125);
        char *argv[] = {self, (char *)name, NULL};
        execve(self, argv, envp.data());
        _exit(126);
    }
    int raw = 0;
    waitpid(pid, &raw, 0);
    ChildResult r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    r.out = read_file_text(out_path);
    r.err = read_file_text(err_path);
    unlink(out_path.c_str());
    unlink(err_path.c_str());
    return r;
}

static int count_lines(const std::string &text) {
    int lines = 0;
    for (char c : text) lines += c == '\n';
    return lines;
}

// The case must abort (SIGABRT) with exactly one stderr line that starts with `expected`.
static void expect_abort(const char *name, const char *expected, const char *what) {
    ChildResult r = run_child(name, {});
    std::string first = r.err.substr(0, r.err.find('\n'));
    bool ok = r.status == 128 + SIGABRT && count_lines(r.err) == 1 &&
              r.err.compare(0, strlen(expected), expected) == 0;
    check(ok, "%s: aborts with one line: %s (exit %d, %d stderr lines)", what, first.c_str(),
          r.status, count_lines(r.err));
}

static void test_planted_bugs(void) {
    ChildResult forward = run_child("reverse_no_barrier", {"LLMC_EMU_ORDER=forward"});
    ChildResult reverse = run_child("reverse_no_barrier", {"LLMC_EMU_ORDER=reverse"});
    ChildResult fixed_forward = run_child("reverse", {"LLMC_EMU_ORDER=forward"});
    ChildResult fixed_reverse = run_child("reverse", {"LLMC_EMU_ORDER=reverse"});
    ChildResult fixed_random = run_child("reverse", {"LLMC_EMU_ORDER=random", "LLMC_EMU_SEED=7"});
    const char *all_right = "wrong 0 in threads 0-127, 0 in threads 128-255\n";
    bool fixed_ok = fixed_forward.out == all_right && fixed_reverse.out == all_right &&
                    fixed_random.out == all_right;
    check(fixed_ok, "shared-memory reversal with __syncthreads: right in forward, reverse and "
                    "random order");
    int forward_first = -1, forward_second = -1, reverse_first = -1, reverse_second = -1;
    sscanf(forward.out.c_str(), "wrong %d in threads 0-127, %d", &forward_first, &forward_second);
    sscanf(reverse.out.c_str(), "wrong %d in threads 0-127, %d", &reverse_first, &reverse_second);
    bool detected = forward_first == 8 * 128 && forward_second == 0 && reverse_first == 0 &&
                    reverse_second == 8 * 128;
    std::string f = forward.out.substr(0, forward.out.find('\n'));
    std::string b = reverse.out.substr(0, reverse.out.find('\n'));
    check(detected,
          "planted missing __syncthreads: forward order breaks the threads that read "
          "ahead, reverse order the others (forward: %s; reverse: %s)",
          f.c_str(), b.c_str());

    expect_abort("divergent", "llmc_emu: deadlock in kernel divergent_barrier_kernel",
                 "__syncthreads in both branches of a divergent if");
    expect_abort("early_exit", "llmc_emu: deadlock in kernel early_exit_barrier_kernel",
                 "__syncthreads after half the block returned");
    expect_abort("shuffle_deadlock", "llmc_emu: deadlock in kernel shuffle_barrier_deadlock_kernel",
                 "half a warp at a shuffle, half at __syncthreads");
    expect_abort("absent_lanes", "llmc_emu: kernel absent_lanes_kernel",
                 "full-mask shuffle in a 16-lane warp (strict mode)");
    expect_abort("host_pointer", "llmc_emu: kernel scale_kernel",
                 "a host pointer passed as a kernel argument");
    expect_abort("freed_pointer", "llmc_emu: kernel scale_kernel",
                 "a freed device pointer passed as a kernel argument");
    expect_abort("pinned_reuse", "llmc_emu: pinned host memory",
                 "pinned memory rewritten after a cudaMemcpyAsync from it, before any host wait");
    ChildResult lenient = run_child("absent_lanes", {"LLMC_EMU_STRICT=0"});
    ChildResult lenient_exit = run_child("early_exit", {"LLMC_EMU_STRICT=0"});
    check(lenient.status == 0 && lenient_exit.status == 0,
          "with LLMC_EMU_STRICT=0 the absent-lane shuffle and the barrier after an early exit run "
          "(exit %d, %d)",
          lenient.status, lenient_exit.status);
#ifndef __SANITIZE_ADDRESS__
    ChildResult wild = run_child("wild_pointer", {});
    check(wild.status == 128 + SIGSEGV &&
              wild.err.find("llmc_emu: segmentation fault in kernel wild_pointer_kernel") == 0,
          "a wild pointer in a kernel: SIGSEGV, naming kernel, block and thread: %s",
          wild.err.substr(0, wild.err.find('\n')).c_str());
    ChildResult overflow = run_child("stack_overflow", {});
    check(overflow.status == 128 + SIGSEGV &&
              overflow.err.find("llmc_emu: fiber stack overflow") == 0,
          "a fiber stack overflow is reported as one: %s",
          overflow.err.substr(0, overflow.err.find('\n')).c_str());
    ChildResult big_stack = run_child("stack_overflow", {"LLMC_EMU_STACK_KB=1024"});
    check(big_stack.status == 0, "the same kernel runs with LLMC_EMU_STACK_KB=1024 (exit %d)",
          big_stack.status);
#endif
#ifdef __SANITIZE_ADDRESS__
    ChildResult overrun = run_child("out_of_bounds", {});
    check(overrun.status != 0 && overrun.err.find("heap-buffer-overflow") != std::string::npos &&
              overrun.err.find("shift_sum_kernel") != std::string::npos,
          "AddressSanitizer build: a kernel reading one past a cudaMalloc buffer is reported as a "
          "heap-buffer-overflow in shift_sum_kernel (exit %d)",
          overrun.status);
    ChildResult shared_overrun = run_child("shared_out_of_bounds", {});
    check(shared_overrun.status != 0 &&
              shared_overrun.err.find("use-after-poison") != std::string::npos,
          "AddressSanitizer build: writing one past the block's dynamic shared memory is reported "
          "(exit %d)",
          shared_overrun.status);
#endif
    ChildResult bad_order = run_child("reverse", {"LLMC_EMU_ORDER=sideways"});
    check(bad_order.status != 0 && bad_order.err.find("LLMC_EMU_ORDER") != std::string::npos,
          "a bad LLMC_EMU_ORDER is refused naming the variable: %s",
          bad_order.err.substr(0, bad_order.err.find('\n')).c_str());
}
#endif

int main(int argc, char **argv) {
    if (argc > 1) return run_case(argv[1]);
#ifdef LLMC_CUDA_EMU
    const llmc_emu::Config &c = llmc_emu::config();
    printf("emulation: order %s, seed %llu, strict %d, %d worker threads\n",
           llmc_emu::order_name(c.order), c.seed, (int)c.strict, c.workers);
#endif
    test_block_reduction();
    test_indexing();
    test_shuffles();
    test_votes();
    test_atomics();
    test_dynamic_shared();
    test_bf16();
    test_runtime();
#ifdef LLMC_CUDA_EMU
    test_planted_bugs();
#endif
    return check_summary();
}
