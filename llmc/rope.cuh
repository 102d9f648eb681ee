// Rotary position embeddings (RoPE) on the q and k heads of the qkv activation, in place, with
// the half-split layout of /work/notes/llama_spec.md: for a head vector x (HS values) and the
// pairs (i, i + HS/2), x_i' = x_i cos - x_{i+HS/2} sin, x_{i+HS/2}' = x_{i+HS/2} cos + x_i sin, the
// angle pos f_i at position pos = t. Backward rotates the gradient back (sin negated, exactly).
// qkv rows (B*T of them) are [NH*HS q | KV*HS k | KV*HS v]: the NH + KV heads rotated are the first
// (NH + KV) * HS values of a row; v is not touched. cos and sin come from a table built on the
// host (llmc/rope_table.h: maxT rows of HS floats) and uploaded once, so the CPU and the GPU
// rotate by the same fp32 values; the arithmetic is fp32.
// A thread rotates x128::size pairs of one head, reading both halves in 16-byte packs when HS/2 is
// a multiple of the pack and qkv is 16-byte aligned, else element by element (the same
// arithmetic either way).
#ifndef LLMC_ROPE_CUH
#define LLMC_ROPE_CUH

#include "cuda_common.cuh"
#include "rope_table.h"

// sign = 1: forward rotation; -1: the inverse (backward). N = B*T rows, position t = row % T.
__global__ void rope_kernel(floatX *qkv, const float *table, int N, int T, int NH, int KV, int HS,
                            float sign, int packed) {
    int half = HS / 2;
    int units_per_head = ceil_div(half, x128::size), heads = NH + KV;
    size_t unit = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (unit >= (size_t)N * heads * units_per_head) return;
    int i0 = (int)(unit % units_per_head) * x128::size;
    int head = (int)((unit / units_per_head) % heads);
    int row = (int)(unit / ((size_t)units_per_head * heads));
    floatX *x = qkv + (size_t)row * (NH + 2 * KV) * HS + (size_t)head * HS;
    const float *cos_row = table + (size_t)(row % T) * HS, *sin_row = cos_row + half;
    if (packed) {
        x128 first = load128(x + i0), second = load128(x + half + i0);
        x128 first_out, second_out;
        LLMC_UNROLL
        for (int k = 0; k < x128::size; k++) {
            float c = cos_row[i0 + k], s = sign * sin_row[i0 + k];
            float a = to_float(first[k]), b = to_float(second[k]);
            first_out[k] = from_float<floatX>(a * c - b * s);
            second_out[k] = from_float<floatX>(b * c + a * s);
        }
        store128(x + i0, first_out);
        store128(x + half + i0, second_out);
        return;
    }
    int end = i0 + x128::size < half ? i0 + x128::size : half;
    for (int i = i0; i < end; i++) {
        float c = cos_row[i], s = sign * sin_row[i];
        float a = to_float(x[i]), b = to_float(x[half + i]);
        x[i] = from_float<floatX>(a * c - b * s);
        x[half + i] = from_float<floatX>(b * c + a * s);
    }
}

static inline void rope_launch(floatX *qkv, const float *table, int B, int T, int NH, int KV,
                               int HS, float sign, cudaStream_t stream) {
    const int block = 256;
    if (HS % 2 != 0) fatal("rope: head size %d is odd", HS);
    int half = HS / 2;
    int packed = half % x128::size == 0 && is_aligned16(qkv);
    size_t units = (size_t)B * T * (NH + KV) * ceil_div(half, x128::size);
    LLMC_LAUNCH(rope_kernel, ceil_div((long long)units, block), block, 0, stream)
    (qkv, table, B * T, T, NH, KV, HS, sign, packed);
    cuda_check(cudaGetLastError());
}

// qkv (B, T, (NH + 2 KV) HS): q and k rotated in place. table: device copy of rope_table_init's
// (at least T rows of HS floats).
static inline void rope_forward(floatX *qkv, const float *table, int B, int T, int NH, int KV,
                                int HS, cudaStream_t stream) {
    rope_launch(qkv, table, B, T, NH, KV, HS, 1.0f, stream);
}

// dqkv (same layout): the q and k gradients rotated back in place (v's untouched).
static inline void rope_backward(floatX *dqkv, const float *table, int B, int T, int NH, int KV,
                                 int HS, cudaStream_t stream) {
    rope_launch(dqkv, table, B, T, NH, KV, HS, -1.0f, stream);
}

// The device table for positions 0..maxT-1 (cudaFree it).
static inline float *rope_table_upload(int maxT, int HS, double theta) {
    size_t n = (size_t)maxT * HS;
    float *host = (float *)malloc_check(n * sizeof(float), "rope table");
    rope_table_init(host, maxT, HS, theta);
    float *device = (float *)cuda_malloc_check(n * sizeof(float), "rope table");
    cuda_check(cudaMemcpy(device, host, n * sizeof(float), cudaMemcpyHostToDevice));
    free(host);
    return device;
}

#endif // LLMC_ROPE_CUH
