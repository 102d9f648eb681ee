// LayerNorm over the last dimension C of N rows, and its fusion with the residual add that
// precedes it. One warp per row; mean and rstd (fp32, N each) are kept for backward.
// Backward adds into dinp (the residual stream's gradient); the weight and bias gradients are
// column sums over rows, done in a fixed order (column_partials + finalize): no atomics.
#ifndef LLMC_LAYERNORM_CUH
#define LLMC_LAYERNORM_CUH

#include "cuda_common.cuh"

#define LAYERNORM_EPS 1e-5f
// Rows are split into at most this many chunks for column sums; scratch needs 2 * this * C floats.
#define REDUCE_MAX_CHUNKS 64

static inline int reduce_num_chunks(int N) {
    int chunks = ceil_div(N, 64);
    return chunks < REDUCE_MAX_CHUNKS ? chunks : REDUCE_MAX_CHUNKS;
}

// Normalises row x (C values, already in global memory) and writes out, mean, rstd.
__device__ __forceinline__ void layernorm_row(floatX *out, float *mean, float *rstd,
                                              const floatX *x, const floatX *weight,
                                              const floatX *bias, int row, int C, int lane) {
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) sum += to_float(x[i]);
    float m = warp_reduce_sum(sum) / C;
    float var = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float diff = to_float(x[i]) - m;
        var += diff * diff;
    }
    float s = rsqrtf(warp_reduce_sum(var) / C + LAYERNORM_EPS);
    for (int i = lane; i < C; i += 32) {
        float norm = (to_float(x[i]) - m) * s;
        out[i] = from_float<floatX>(norm * to_float(weight[i]) + to_float(bias[i]));
    }
    if (lane == 0) {
        if (mean != NULL) mean[row] = m;
        if (rstd != NULL) rstd[row] = s;
    }
}

// out (N,C) = layernorm(inp); mean, rstd (N) may be NULL (inference).
__global__ void layernorm_forward_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                         const floatX *weight, const floatX *bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    size_t offset = (size_t)row * C;
    layernorm_row(out + offset, mean, rstd, inp + offset, weight, bias, row, C, threadIdx.x % 32);
}

// residual (N,C) = inp1 + inp2 (rounded to floatX), then out = layernorm(residual): the
// normalisation sees exactly the stored residual, as the unfused pair would.
__global__ void fused_residual_layernorm_forward_kernel(floatX *residual, floatX *out, float *mean,
                                                        float *rstd, const floatX *inp1,
                                                        const floatX *inp2, const floatX *weight,
                                                        const floatX *bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    int lane = threadIdx.x % 32;
    size_t offset = (size_t)row * C;
    for (int i = lane; i < C; i += 32) {
        residual[offset + i] =
            from_float<floatX>(to_float(inp1[offset + i]) + to_float(inp2[offset + i]));
    }
    // no barrier needed: each lane rereads only the elements it wrote itself
    layernorm_row(out + offset, mean, rstd, residual + offset, weight, bias, row, C, lane);
}

static inline void layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp,
                                     const floatX *weight, const floatX *bias, int N, int C,
                                     cudaStream_t stream) {
    const int block = 256;
    LLMC_LAUNCH(layernorm_forward_kernel, ceil_div(N, block / 32), block, 0, stream)
    (out, mean, rstd, inp, weight, bias, N, C);
    cuda_check(cudaGetLastError());
}

static inline void fused_residual_layernorm_forward(floatX *residual, floatX *out, float *mean,
                                                    float *rstd, const floatX *inp1,
                                                    const floatX *inp2, const floatX *weight,
                                                    const floatX *bias, int N, int C,
                                                    cudaStream_t stream) {
    const int block = 256;
    LLMC_LAUNCH(fused_residual_layernorm_forward_kernel, ceil_div(N, block / 32), block, 0, stream)
    (residual, out, mean, rstd, inp1, inp2, weight, bias, N, C);
    cuda_check(cudaGetLastError());
}

// dinp (N,C) += dx of one row per warp:
// dx = rstd * (w*dy - mean(w*dy) - norm * mean(w*dy*norm)).
__global__ void layernorm_backward_dx_kernel(floatX *dinp, const floatX *dout, const floatX *inp,
                                             const floatX *weight, const float *mean,
                                             const float *rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    int lane = threadIdx.x % 32;
    size_t offset = (size_t)row * C;
    float m = mean[row], s = rstd[row];
    float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float norm = (to_float(inp[offset + i]) - m) * s;
        float dnorm = to_float(weight[i]) * to_float(dout[offset + i]);
        dnorm_sum += dnorm;
        dnorm_norm_sum += dnorm * norm;
    }
    float a = warp_reduce_sum(dnorm_sum) / C;
    float b = warp_reduce_sum(dnorm_norm_sum) / C;
    for (int i = lane; i < C; i += 32) {
        float norm = (to_float(inp[offset + i]) - m) * s;
        float dnorm = to_float(weight[i]) * to_float(dout[offset + i]);
        float dx = (dnorm - a - norm * b) * s;
        dinp[offset + i] = from_float<floatX>(to_float(dinp[offset + i]) + dx);
    }
}

// partials[chunk][c] = sum over the chunk's rows of dy * norm; partials[chunks + chunk][c] of dy.
__global__ void layernorm_backward_partials_kernel(float *partials, const floatX *dout,
                                                   const floatX *inp, const float *mean,
                                                   const float *rstd, int N, int C,
                                                   int num_chunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int chunk = blockIdx.y;
    if (c >= C) return;
    int rows_per_chunk = ceil_div(N, num_chunks);
    int start = chunk * rows_per_chunk;
    int end = min(N, start + rows_per_chunk);
    float dw = 0.0f, db = 0.0f;
    for (int n = start; n < end; n++) {
        float dy = to_float(dout[(size_t)n * C + c]);
        dw += (to_float(inp[(size_t)n * C + c]) - mean[n]) * rstd[n] * dy;
        db += dy;
    }
    partials[(size_t)chunk * C + c] = dw;
    partials[(size_t)(num_chunks + chunk) * C + c] = db;
}

__global__ void layernorm_backward_finalize_kernel(floatX *dweight, floatX *dbias,
                                                   const float *partials, int C, int num_chunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float dw = 0.0f, db = 0.0f;
    for (int k = 0; k < num_chunks; k++) {
        dw += partials[(size_t)k * C + c];
        db += partials[(size_t)(num_chunks + k) * C + c];
    }
    dweight[c] = from_float<floatX>(to_float(dweight[c]) + dw);
    dbias[c] = from_float<floatX>(to_float(dbias[c]) + db);
}

// scratch: at least 2 * REDUCE_MAX_CHUNKS * C floats.
static inline void layernorm_backward(floatX *dinp, floatX *dweight, floatX *dbias, float *scratch,
                                      const floatX *dout, const floatX *inp, const floatX *weight,
                                      const float *mean, const float *rstd, int N, int C,
                                      cudaStream_t stream) {
    const int block = 256;
    LLMC_LAUNCH(layernorm_backward_dx_kernel, ceil_div(N, block / 32), block, 0, stream)
    (dinp, dout, inp, weight, mean, rstd, N, C);
    cuda_check(cudaGetLastError());
    int num_chunks = reduce_num_chunks(N);
    dim3 grid(ceil_div(C, block), num_chunks);
    LLMC_LAUNCH(layernorm_backward_partials_kernel, grid, block, 0, stream)
    (scratch, dout, inp, mean, rstd, N, C, num_chunks);
    cuda_check(cudaGetLastError());
    LLMC_LAUNCH(layernorm_backward_finalize_kernel, ceil_div(C, block), block, 0, stream)
    (dweight, dbias, scratch, C, num_chunks);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_LAYERNORM_CUH
