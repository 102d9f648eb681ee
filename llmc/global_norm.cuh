// Global L2 norm of the gradients, deterministic: a fixed grid (from n only, never from the
// device) of per-block sums of squares in a fixed order, then one block adds the partials in
// order. The result stays on the device (norm_out[0]).
#ifndef LLMC_GLOBAL_NORM_CUH
#define LLMC_GLOBAL_NORM_CUH

#include "cuda_common.cuh"

#define GLOBAL_NORM_MAX_BLOCKS 1024

static inline int global_norm_num_blocks(size_t n) {
    int blocks = ceil_div((long long)n, 256 * 16);
    return blocks < GLOBAL_NORM_MAX_BLOCKS ? blocks : GLOBAL_NORM_MAX_BLOCKS;
}

// packed (grads 16-byte aligned): each thread walks 16-byte packs (streaming loads: the gradients
// are read once here), then the elements after the last whole pack one by one; otherwise every
// element one by one. The order of each thread's sum is fixed by n and the grid: deterministic.
__global__ void global_norm_partials_kernel(float *partials, const floatX *grads, size_t n,
                                            int packed) {
    __shared__ float shared[32];
    float sum = 0.0f;
    size_t thread = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t packs = packed ? n / x128::size : 0;
    for (size_t p = thread; p < packs; p += stride) {
        x128 g = load128cs(grads + p * x128::size);
        LLMC_UNROLL
        for (int k = 0; k < x128::size; k++) sum += to_float(g[k]) * to_float(g[k]);
    }
    for (size_t i = packs * x128::size + thread; i < n; i += stride) {
        float g = to_float(grads[i]);
        sum += g * g;
    }
    sum = block_reduce_sum(sum, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// take_sqrt = 0 leaves the sum of squares (a shard's part, for processes to add up).
__global__ void global_norm_finalize_kernel(float *norm_out, const float *partials,
                                            int num_partials, int take_sqrt) {
    __shared__ float shared[32];
    float sum = 0.0f;
    for (int i = threadIdx.x; i < num_partials; i += blockDim.x) sum += partials[i];
    sum = block_reduce_sum(sum, shared);
    if (threadIdx.x == 0) norm_out[0] = take_sqrt ? sqrtf(sum) : sum;
}

static inline void global_norm_launch(float *out, float *scratch, const floatX *grads, size_t n,
                                      int take_sqrt, cudaStream_t stream) {
    const int block = 256;
    int blocks = global_norm_num_blocks(n);
    LLMC_LAUNCH(global_norm_partials_kernel, blocks, block, 0, stream)
    (scratch, grads, n, is_aligned16(grads));
    cuda_check(cudaGetLastError());
    LLMC_LAUNCH(global_norm_finalize_kernel, 1, 1024, 0, stream)(out, scratch, blocks, take_sqrt);
    cuda_check(cudaGetLastError());
}

// scratch: GLOBAL_NORM_MAX_BLOCKS floats.
static inline void global_norm(float *norm_out, float *scratch, const floatX *grads, size_t n,
                               cudaStream_t stream) {
    global_norm_launch(norm_out, scratch, grads, n, 1, stream);
}

// The sum of squares instead of its root.
static inline void global_norm_squared(float *out, float *scratch, const floatX *grads, size_t n,
                                       cudaStream_t stream) {
    global_norm_launch(out, scratch, grads, n, 0, stream);
}

#endif // LLMC_GLOBAL_NORM_CUH
