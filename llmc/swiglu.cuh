// SwiGLU, llama's MLP activation (/work/notes/llama_spec.md): the fc matmul writes (N, 2F) rows
// [gate (F) | up (F)]; h = silu(gate) * up, silu(g) = g sigmoid(g) = g / (1 + exp(-g)), in fp32.
// Backward writes both halves of dinp (it is overwritten, as the next matmul backward's input):
//   dgate = dout up silu'(g), silu'(g) = sig (1 + g (1 - sig)); dup = dout silu(g).
// Thread k handles x128::size consecutive columns of one row: 16-byte loads and stores when F is a
// multiple of the pack and the pointers are 16-byte aligned, else element by element (the same
// arithmetic either way).
#ifndef LLMC_SWIGLU_CUH
#define LLMC_SWIGLU_CUH

#include "cuda_common.cuh"

__device__ __forceinline__ float swiglu_sigmoid(float g) {
    return 1.0f / (1.0f + expf(-g));
}

// out (N, F) from inp (N, 2F).
__global__ void swiglu_forward_kernel(floatX *out, const floatX *inp, int N, int F, int packed) {
    int units_per_row = ceil_div(F, x128::size);
    size_t unit = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (unit >= (size_t)N * units_per_row) return;
    size_t row = unit / units_per_row;
    int f0 = (int)(unit % units_per_row) * x128::size;
    const floatX *gate = inp + row * 2 * F, *up = gate + F;
    floatX *y = out + row * F;
    if (packed) {
        x128 g = load128cs(gate + f0), u = load128cs(up + f0), result;
        LLMC_UNROLL
        for (int k = 0; k < x128::size; k++) {
            float gk = to_float(g[k]);
            result[k] = from_float<floatX>(gk * swiglu_sigmoid(gk) * to_float(u[k]));
        }
        store128(y + f0, result); // the next matmul reads it
        return;
    }
    int end = f0 + x128::size < F ? f0 + x128::size : F;
    for (int f = f0; f < end; f++) {
        float gk = to_float(gate[f]);
        y[f] = from_float<floatX>(gk * swiglu_sigmoid(gk) * to_float(up[f]));
    }
}

// dinp (N, 2F) from inp (N, 2F) and dout (N, F).
__global__ void swiglu_backward_kernel(floatX *dinp, const floatX *inp, const floatX *dout, int N,
                                       int F, int packed) {
    int units_per_row = ceil_div(F, x128::size);
    size_t unit = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (unit >= (size_t)N * units_per_row) return;
    size_t row = unit / units_per_row;
    int f0 = (int)(unit % units_per_row) * x128::size;
    const floatX *gate = inp + row * 2 * F, *up = gate + F, *dy = dout + row * F;
    floatX *dgate = dinp + row * 2 * F, *dup = dgate + F;
    if (packed) {
        x128 g = load128cs(gate + f0), u = load128cs(up + f0), d = load128cs(dy + f0);
        x128 dg, du;
        LLMC_UNROLL
        for (int k = 0; k < x128::size; k++) {
            float gk = to_float(g[k]), sig = swiglu_sigmoid(gk), dk = to_float(d[k]);
            dg[k] = from_float<floatX>(dk * to_float(u[k]) * (sig * (1.0f + gk * (1.0f - sig))));
            du[k] = from_float<floatX>(dk * (gk * sig));
        }
        store128(dgate + f0, dg);
        store128(dup + f0, du);
        return;
    }
    int end = f0 + x128::size < F ? f0 + x128::size : F;
    for (int f = f0; f < end; f++) {
        float gk = to_float(gate[f]), sig = swiglu_sigmoid(gk), dk = to_float(dy[f]);
        dgate[f] = from_float<floatX>(dk * to_float(up[f]) * (sig * (1.0f + gk * (1.0f - sig))));
        dup[f] = from_float<floatX>(dk * (gk * sig));
    }
}

static inline int swiglu_packed(int F, const void *a, const void *b, const void *c) {
    return F % x128::size == 0 && is_aligned16(a) && is_aligned16(b) &&
           (c == NULL || is_aligned16(c));
}

static inline void swiglu_forward(floatX *out, const floatX *inp, int N, int F,
                                  cudaStream_t stream) {
    const int block = 256;
    size_t units = (size_t)N * ceil_div(F, x128::size);
    LLMC_LAUNCH(swiglu_forward_kernel, ceil_div((long long)units, block), block, 0, stream)
    (out, inp, N, F, swiglu_packed(F, out, inp, NULL));
    cuda_check(cudaGetLastError());
}

static inline void swiglu_backward(floatX *dinp, const floatX *inp, const floatX *dout, int N,
                                   int F, cudaStream_t stream) {
    const int block = 256;
    size_t units = (size_t)N * ceil_div(F, x128::size);
    LLMC_LAUNCH(swiglu_backward_kernel, ceil_div((long long)units, block), block, 0, stream)
    (dinp, inp, dout, N, F, swiglu_packed(F, dinp, inp, dout));
    cuda_check(cudaGetLastError());
}

#endif // LLMC_SWIGLU_CUH
