// GELU, tanh approximation (GPT-2's): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// The forward usually runs as the epilogue of the fc matmul (matmul.cuh); these kernels are the
// stand-alone forward and the backward, which multiplies the incoming gradient in place.
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

__global__ void gelu_forward_kernel(floatX *out, const floatX *inp, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) out[i] = from_float<floatX>(gelu_value(to_float(inp[i])));
}

// d (N) holds dL/d gelu(x) on entry and dL/dx on return.
__global__ void gelu_backward_inplace_kernel(floatX *d, const floatX *inp, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) d[i] = from_float<floatX>(gelu_derivative(to_float(inp[i])) * to_float(d[i]));
}

static inline void gelu_forward(floatX *out, const floatX *inp, size_t N, cudaStream_t stream) {
    const int block = 256;
    LLMC_LAUNCH(gelu_forward_kernel, ceil_div((long long)N, block), block, 0, stream)(out, inp, N);
    cuda_check(cudaGetLastError());
}

static inline void gelu_backward_inplace(floatX *d, const floatX *inp, size_t N,
                                         cudaStream_t stream) {
    const int block = 256;
    LLMC_LAUNCH(gelu_backward_inplace_kernel, ceil_div((long long)N, block), block, 0, stream)
    (d, inp, N);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_GELU_CUH
