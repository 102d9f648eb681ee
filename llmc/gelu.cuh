// GELU, tanh approximation (GPT-2's): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// The forward kernel runs after the fc matmul and again for `-r 1`'s recompute (matmul.cuh: the
// same kernel on the same input, so the same bits). The backward usually runs as the DGELU
// epilogue of the fc-proj matmul; the kernel here, which multiplies the incoming gradient in
// place, is its fallback (-DLLMC_UNFUSED_GELU, or shapes cuBLASLt refuses).
#ifndef LLMC_GELU_CUH
#define LLMC_GELU_CUH

#include "cuda_common.cuh"

#define GELU_SCALING_FACTOR 0.7978845608028654f // sqrt(2 / pi)

__host__ __device__ __forceinline__ float gelu_value(float x) {
    float cube = 0.044715f * x * x * x;
    return 0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + cube)));
}

__host__ __device__ __forceinline__ float gelu_derivative(float x) {
    float cube = 0.044715f * x * x * x;
    float tanh_out = tanhf(GELU_SCALING_FACTOR * (x + cube));
    float sech2 = 1.0f - tanh_out * tanh_out;
    return 0.5f * (1.0f + tanh_out) +
           x * 0.5f * sech2 * GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
}

// Thread k handles elements [k * x128::size, (k + 1) * x128::size): one 16-byte load per input and
// one 16-byte store. The last pack may be partial (N not a multiple of the pack) and, with packed =
// 0 (an address not 16-byte aligned), every pack is done element by element; the arithmetic per
// element is the same either way, so the bits are too.
__global__ void gelu_forward_kernel(floatX *out, const floatX *inp, size_t N, int packed) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (i >= N) return;
    if (packed && i + x128::size <= N) {
        x128 x = load128cs(inp + i); // read once here (backward rereads it much later)
        x128 y;
        LLMC_UNROLL
        for (int k = 0; k < x128::size; k++) y[k] = from_float<floatX>(gelu_value(to_float(x[k])));
        store128(out + i, y); // kept in L2: the next matmul reads it
        return;
    }
    size_t end = i + x128::size < N ? i + x128::size : N;
    for (; i < end; i++) out[i] = from_float<floatX>(gelu_value(to_float(inp[i])));
}

// d (N) holds dL/d gelu(x) on entry and dL/dx on return. Packs as in gelu_forward_kernel.
__global__ void gelu_backward_inplace_kernel(floatX *d, const floatX *inp, size_t N, int packed) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (i >= N) return;
    if (packed && i + x128::size <= N) {
        x128 x = load128cs(inp + i); // the last use of the pre-activation
        x128 dy = load128(d + i);
        x128 dx;
        LLMC_UNROLL
        for (int k = 0; k < x128::size; k++) {
            dx[k] = from_float<floatX>(gelu_derivative(to_float(x[k])) * to_float(dy[k]));
        }
        store128(d + i, dx); // the next matmul backward reads it
        return;
    }
    size_t end = i + x128::size < N ? i + x128::size : N;
    for (; i < end; i++)
        d[i] = from_float<floatX>(gelu_derivative(to_float(inp[i])) * to_float(d[i]));
}

static inline void gelu_forward(floatX *out, const floatX *inp, size_t N, cudaStream_t stream) {
    const int block = 256;
    int packed = is_aligned16(out) && is_aligned16(inp);
    LLMC_LAUNCH(gelu_forward_kernel, ceil_div(ceil_div((long long)N, x128::size), block), block, 0,
                stream)
    (out, inp, N, packed);
    cuda_check(cudaGetLastError());
}

static inline void gelu_backward_inplace(floatX *d, const floatX *inp, size_t N,
                                         cudaStream_t stream) {
    const int block = 256;
    int packed = is_aligned16(d) && is_aligned16(inp);
    LLMC_LAUNCH(gelu_backward_inplace_kernel, ceil_div(ceil_div((long long)N, x128::size), block),
                block, 0, stream)
    (d, inp, N, packed);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_GELU_CUH
