// Muon on the GPU for the blocks' 2-D matrices: the definition of llmc/optimizer.h (and
// llmc/muon.h, the CPU trainer's), in fp32 on the momentum buffer (the AdamW m slot) and the fp32
// master weights (BF16 builds; FP32 builds update the parameters), the bf16 parameters stored by
// stochastic rounding as AdamW does. The Newton-Schulz products go through cuBLASLt in fp32
// (CUBLAS_COMPUTE_32F, no TF32), with the model's products' algorithm cache (matmul_gemm_typed);
// the emulation runs them through llmc/matmul.h's sgemm.
// No transposes: a row-major R x Cc matrix is column-major Cc x R, which is X^T for a wide matrix
// (R <= Cc) and X itself for a tall one (X = U^T), so each case picks the operands' orientation
// and the result lands in the weights' layout.
#ifndef LLMC_MUON_CUH
#define LLMC_MUON_CUH

#include "cuda_common.cuh"
#include "matmul.cuh"
#include "optimizer.h"

#define MUON_NORM_BLOCKS 256

typedef struct {
    float *x, *x_next, *gram, *poly; // device: the largest matrix, its short side squared
    float *norm_scratch;             // MUON_NORM_BLOCKS partial sums, then 1 / (norm + eps)
    size_t matrix_capacity, gram_capacity;
} MuonDeviceScratch;

static inline void muon_device_scratch_reserve(MuonDeviceScratch *s, size_t elements,
                                               size_t short_side) {
    if (s->norm_scratch == NULL) {
        s->norm_scratch =
            (float *)cuda_malloc_check((MUON_NORM_BLOCKS + 1) * sizeof(float), "Muon norm");
    }
    if (elements > s->matrix_capacity) {
        if (s->x != NULL) cuda_check(cudaFree(s->x));
        if (s->x_next != NULL) cuda_check(cudaFree(s->x_next));
        s->x = (float *)cuda_malloc_check(elements * sizeof(float), "Muon X");
        s->x_next = (float *)cuda_malloc_check(elements * sizeof(float), "Muon X next");
        s->matrix_capacity = elements;
    }
    if (short_side * short_side > s->gram_capacity) {
        if (s->gram != NULL) cuda_check(cudaFree(s->gram));
        if (s->poly != NULL) cuda_check(cudaFree(s->poly));
        s->gram = (float *)cuda_malloc_check(short_side * short_side * sizeof(float), "Muon A");
        s->poly = (float *)cuda_malloc_check(short_side * short_side * sizeof(float), "Muon B");
        s->gram_capacity = short_side * short_side;
    }
}

static inline void muon_device_scratch_free(MuonDeviceScratch *s) {
    float *buffers[5] = {s->x, s->x_next, s->gram, s->poly, s->norm_scratch};
    for (int i = 0; i < 5; i++) {
        if (buffers[i] != NULL) cuda_check(cudaFree(buffers[i]));
    }
    memset(s, 0, sizeof(*s));
}

// fp32 D (m,n, leading dimension m) (+)= op(A) op(B), column-major as matmul_gemm: A is (m,k) ld m,
// or with trans_a (k,m) ld k; B is (k,n) ld k, or with trans_b (n,k) ld n. Through matmul.cuh's
// algorithm cache: ~700 products a step at d12 repeat a handful of shapes, and asking cuBLASLt's
// heuristic each time would cost tens of microseconds each.
static inline void muon_gemm(float *d, const float *a, const float *b, int m, int n, int k,
                             int trans_a, int trans_b, int accumulate, cudaStream_t stream) {
    matmul_gemm_typed(d, a, b, NULL, NULL, MATMUL_DATA_FP32, EPILOGUE_NONE, m, n, k, trans_a,
                      trans_b, 1, 0, 0, 0, accumulate, stream);
}

// buf = momentum * buf + g; u = g + momentum * buf (Nesterov), g the clipped gradient: grads times
// *device_scale when that is not NULL (NaN there skips the update, as adamw_kernel), else times
// grad_scale.
__global__ void muon_momentum_kernel(float *u, float *buf, const floatX *grads, size_t n,
                                     float momentum, float grad_scale, const float *device_scale) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (device_scale != NULL) {
        grad_scale = *device_scale;
        if (isnan(grad_scale)) return;
    }
    float g = to_float(grads[i]) * grad_scale;
    float b = momentum * buf[i] + g;
    buf[i] = b;
    u[i] = g + momentum * b;
}

// Fixed grid and order: the same sum on every run.
__global__ void muon_sum_squares_kernel(float *partials, const float *x, size_t n) {
    __shared__ float shared[32];
    float sum = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        sum += x[i] * x[i];
    }
    sum = block_reduce_sum(sum, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void muon_inverse_norm_kernel(float *partials, int count) {
    __shared__ float shared[32];
    float sum = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
    sum = block_reduce_sum(sum, shared);
    if (threadIdx.x == 0) partials[count] = 1.0f / (sqrtf(sum) + MUON_NORM_EPS);
}

__global__ void muon_scale_kernel(float *x, size_t n, const float *scale) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= *scale;
}

// B = b A + c (A A), in place in poly (which holds A A).
__global__ void muon_poly_kernel(float *poly, const float *gram, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) poly[i] = MUON_NS_B * gram[i] + MUON_NS_C * poly[i];
}

__global__ void muon_scaled_copy_kernel(float *out, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = MUON_NS_A * x[i];
}

// W = W (1 - lr wd) - step_size X, on the master weights (or the fp32 parameters).
__global__ void muon_apply_kernel(floatX *params, float *master, const float *x, size_t n,
                                  float decay, float step_size, const float *device_scale,
                                  uint32_t seed, uint32_t index_offset) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (device_scale != NULL && isnan(*device_scale)) return; // a skipped update
    float param = master != NULL ? master[i] : to_float(params[i]);
    param = param * decay - step_size * x[i];
    if (master != NULL) master[i] = param;
    stochastic_round(param, &params[i], index_offset + (uint32_t)i, seed);
}

// One Muon step of the row-major rows x cols matrix params (master: its fp32 copy or NULL) with
// gradient grads * grad_scale (or * *device_scale, see muon_momentum_kernel) and momentum buffer
// buf. index_offset: the matrix's first element
// in the parameter vector (the stochastic rounding's index, as AdamW's).
static inline void muon_update_matrix_device(floatX *params, float *master, const floatX *grads,
                                             float *buf, int rows, int cols, float grad_scale,
                                             const float *device_scale, const MuonConfig *config,
                                             uint32_t seed, size_t index_offset,
                                             MuonDeviceScratch *s, cudaStream_t stream) {
    size_t n = (size_t)rows * cols;
    int tall = rows > cols;
    int r = tall ? cols : rows, c = tall ? rows : cols; // X is r x c, r <= c
    muon_device_scratch_reserve(s, n, (size_t)r);
    const int block = 256;
    int grid = ceil_div((long long)n, block), gram_grid = ceil_div((long long)r * r, block);
    LLMC_LAUNCH(muon_momentum_kernel, grid, block, 0, stream)
    (s->x, buf, grads, n, config->momentum, grad_scale, device_scale);
    cuda_check(cudaGetLastError());
    LLMC_LAUNCH(muon_sum_squares_kernel, MUON_NORM_BLOCKS, block, 0, stream)
    (s->norm_scratch, s->x, n);
    cuda_check(cudaGetLastError());
    LLMC_LAUNCH(muon_inverse_norm_kernel, 1, block, 0, stream)
    (s->norm_scratch, MUON_NORM_BLOCKS);
    cuda_check(cudaGetLastError());
    LLMC_LAUNCH(muon_scale_kernel, grid, block, 0, stream)
    (s->x, n, s->norm_scratch + MUON_NORM_BLOCKS);
    cuda_check(cudaGetLastError());
    for (int step = 0; step < config->ns_steps; step++) {
        // column-major memory: Y = X^T (c x r, ld c) when wide, X (r x c, ld r) when tall
        if (tall) {
            muon_gemm(s->gram, s->x, s->x, r, r, c, 0, 1, 0, stream); // X X^T
        } else {
            muon_gemm(s->gram, s->x, s->x, r, r, c, 1, 0, 0, stream); // Y^T Y = X X^T
        }
        muon_gemm(s->poly, s->gram, s->gram, r, r, r, 0, 0, 0, stream); // A A
        LLMC_LAUNCH(muon_poly_kernel, gram_grid, block, 0, stream)(s->poly, s->gram, (size_t)r * r);
        cuda_check(cudaGetLastError());
        LLMC_LAUNCH(muon_scaled_copy_kernel, grid, block, 0, stream)(s->x_next, s->x, n);
        cuda_check(cudaGetLastError());
        if (tall) {
            muon_gemm(s->x_next, s->poly, s->x, r, c, r, 0, 0, 1, stream); // + B X
        } else {
            muon_gemm(s->x_next, s->x, s->poly, c, r, r, 0, 1, 1, stream); // Y' = aY + Y B^T
        }
        float *swap = s->x;
        s->x = s->x_next;
        s->x_next = swap;
    }
    float decay = 1.0f - config->learning_rate * config->weight_decay;
    float aspect = (float)rows / (float)cols;
    float step_size = config->learning_rate * sqrtf(aspect > 1.0f ? aspect : 1.0f);
    LLMC_LAUNCH(muon_apply_kernel, grid, block, 0, stream)
    (params, master, s->x, n, decay, step_size, device_scale, seed, (uint32_t)index_offset);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_MUON_CUH
