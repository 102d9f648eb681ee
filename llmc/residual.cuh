// Small element-wise kernels of the llama family's block (train_gpt2.cu): the residual add that
// GPT-2 fuses into its layernorm (llama's RMSNorm keeps its own kernel), and the strided copy of
// some columns of every row (the v part of the qkv rows around QK-norm). Sums are fp32, each
// element has one writer: the same bits in every run.
#ifndef LLMC_RESIDUAL_CUH
#define LLMC_RESIDUAL_CUH

#include "cuda_common.cuh"

__global__ void residual_forward_kernel(floatX *out, const floatX *a, const floatX *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = from_float<floatX>(to_float(a[i]) + to_float(b[i]));
}

// out (n) = a + b.
static inline void residual_forward(floatX *out, const floatX *a, const floatX *b, size_t n,
                                    cudaStream_t stream) {
    const int block = 256;
    LLMC_LAUNCH(residual_forward_kernel, ceil_div((long long)n, block), block, 0, stream)
    (out, a, b, n);
    cuda_check(cudaGetLastError());
}

__global__ void copy_columns_kernel(floatX *dst, const floatX *src, int rows, int width,
                                    size_t stride) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * width) return;
    size_t at = i / (size_t)width * stride + i % (size_t)width;
    dst[at] = src[at];
}

// For each of rows rows (stride elements apart), dst[0, width) = src[0, width); pointers at the
// first column copied.
static inline void copy_columns(floatX *dst, const floatX *src, int rows, int width, size_t stride,
                                cudaStream_t stream) {
    const int block = 256;
    LLMC_LAUNCH(copy_columns_kernel, ceil_div((long long)rows * width, block), block, 0, stream)
    (dst, src, rows, width, stride);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_RESIDUAL_CUH
