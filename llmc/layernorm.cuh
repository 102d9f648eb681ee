// LayerNorm over the last dimension C of N rows, and its fusion with the residual add that
// precedes it. One warp per row; mean and rstd (fp32, N each) are kept for backward.
// Backward (one kernel, then a small finalize) adds into dinp (the residual stream's gradient);
// the weight and bias gradients are column sums over rows in a fixed order: no atomics.
// Rows are read in 16-byte packs (Packed128) when C is a multiple of the pack and the pointers are
// 16-byte aligned, else element by element.
#ifndef LLMC_LAYERNORM_CUH
#define LLMC_LAYERNORM_CUH

#include "cuda_common.cuh"

#define LAYERNORM_EPS 1e-5f
// matmul_backward's bias gradient splits rows into at most this many chunks (scratch: this * OC).
#define REDUCE_MAX_CHUNKS 64

static inline int reduce_num_chunks(int N) {
    int chunks = ceil_div(N, 64);
    return chunks < REDUCE_MAX_CHUNKS ? chunks : REDUCE_MAX_CHUNKS;
}

// Normalises row x (C values, already in global memory) and writes out, mean, rstd. packed (C a
// multiple of x128::size, every row and weight 16-byte aligned): lane l reads packs l, l + 32, ...
// of the row, three times (the second and third reads hit L1); otherwise element by element.
__device__ __forceinline__ void layernorm_row(floatX *out, float *mean, float *rstd,
                                              const floatX *x, const floatX *weight,
                                              const floatX *bias, int row, int C, int lane,
                                              int packed) {
    float sum = 0.0f, var = 0.0f, m, s;
    if (packed) {
        for (int i = lane * x128::size; i < C; i += 32 * x128::size) {
            x128 pack = load128(x + i);
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) sum += to_float(pack[k]);
        }
        m = warp_reduce_sum(sum) / C;
        for (int i = lane * x128::size; i < C; i += 32 * x128::size) {
            x128 pack = load128(x + i);
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) {
                float diff = to_float(pack[k]) - m;
                var += diff * diff;
            }
        }
        s = rsqrtf(warp_reduce_sum(var) / C + LAYERNORM_EPS);
        for (int i = lane * x128::size; i < C; i += 32 * x128::size) {
            x128 pack = load128cs(x + i); // the row's last read in this kernel
            x128 w = load128(weight + i), b = load128(bias + i);
            x128 result;
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) {
                float norm = (to_float(pack[k]) - m) * s;
                result[k] = from_float<floatX>(norm * to_float(w[k]) + to_float(b[k]));
            }
            store128(out + i, result); // the next matmul reads it
        }
    } else {
        for (int i = lane; i < C; i += 32) sum += to_float(x[i]);
        m = warp_reduce_sum(sum) / C;
        for (int i = lane; i < C; i += 32) {
            float diff = to_float(x[i]) - m;
            var += diff * diff;
        }
        s = rsqrtf(warp_reduce_sum(var) / C + LAYERNORM_EPS);
        for (int i = lane; i < C; i += 32) {
            float norm = (to_float(x[i]) - m) * s;
            out[i] = from_float<floatX>(norm * to_float(weight[i]) + to_float(bias[i]));
        }
    }
    if (lane == 0) {
        if (mean != NULL) mean[row] = m;
        if (rstd != NULL) rstd[row] = s;
    }
}

// out (N,C) = layernorm(inp); mean, rstd (N) may be NULL (inference).
__global__ void layernorm_forward_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                         const floatX *weight, const floatX *bias, int N, int C,
                                         int packed) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    size_t offset = (size_t)row * C;
    layernorm_row(out + offset, mean, rstd, inp + offset, weight, bias, row, C, threadIdx.x % 32,
                  packed);
}

// residual (N,C) = inp1 + inp2 (rounded to floatX), then out = layernorm(residual): the
// normalisation sees exactly the stored residual, as the unfused pair would.
__global__ void fused_residual_layernorm_forward_kernel(floatX *residual, floatX *out, float *mean,
                                                        float *rstd, const floatX *inp1,
                                                        const floatX *inp2, const floatX *weight,
                                                        const floatX *bias, int N, int C,
                                                        int packed) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    int lane = threadIdx.x % 32;
    size_t offset = (size_t)row * C;
    if (packed) {
        for (int i = lane * x128::size; i < C; i += 32 * x128::size) {
            // both inputs are read only here (backward needs the residual, not its parts)
            x128 a = load128cs(inp1 + offset + i), b = load128cs(inp2 + offset + i), sum;
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) {
                sum[k] = from_float<floatX>(to_float(a[k]) + to_float(b[k]));
            }
            store128(residual + offset + i, sum);
        }
    } else {
        for (int i = lane; i < C; i += 32) {
            residual[offset + i] =
                from_float<floatX>(to_float(inp1[offset + i]) + to_float(inp2[offset + i]));
        }
    }
    // no barrier needed: each lane rereads only the elements it wrote itself (the same packs)
    layernorm_row(out + offset, mean, rstd, residual + offset, weight, bias, row, C, lane, packed);
}

// Whether the rows of these (N,C) tensors can be read in 16-byte packs.
static inline int layernorm_packed(int C, const void *a, const void *b, const void *c,
                                   const void *d, const void *e) {
    return C % x128::size == 0 && is_aligned16(a) && is_aligned16(b) && is_aligned16(c) &&
           is_aligned16(d) && (e == NULL || is_aligned16(e));
}

static inline void layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp,
                                     const floatX *weight, const floatX *bias, int N, int C,
                                     cudaStream_t stream) {
    const int block = 256;
    int packed = layernorm_packed(C, out, inp, weight, bias, NULL);
    LLMC_LAUNCH(layernorm_forward_kernel, ceil_div(N, block / 32), block, 0, stream)
    (out, mean, rstd, inp, weight, bias, N, C, packed);
    cuda_check(cudaGetLastError());
}

static inline void fused_residual_layernorm_forward(floatX *residual, floatX *out, float *mean,
                                                    float *rstd, const floatX *inp1,
                                                    const floatX *inp2, const floatX *weight,
                                                    const floatX *bias, int N, int C,
                                                    cudaStream_t stream) {
    const int block = 256;
    int packed = layernorm_packed(C, residual, out, inp1, inp2, weight) && is_aligned16(bias);
    LLMC_LAUNCH(fused_residual_layernorm_forward_kernel, ceil_div(N, block / 32), block, 0, stream)
    (residual, out, mean, rstd, inp1, inp2, weight, bias, N, C, packed);
    cuda_check(cudaGetLastError());
}

// Blocks of the fused backward: at most this many (scratch needs 2 * this * C floats), each with
// at least LAYERNORM_BACKWARD_MIN_ROWS rows, so that at GPT-2 sizes (N = B*T = 16384) 256 blocks of
// 512 threads fill the GPU (the former column-partials kernel had 3 x 64 blocks at C = 768).
#define LAYERNORM_BACKWARD_MAX_BLOCKS 256
#define LAYERNORM_BACKWARD_MIN_ROWS 32
#define LAYERNORM_BACKWARD_THREADS 512

static inline int layernorm_backward_num_blocks(int N) {
    int blocks = ceil_div(N, LAYERNORM_BACKWARD_MIN_ROWS);
    return blocks < LAYERNORM_BACKWARD_MAX_BLOCKS ? blocks : LAYERNORM_BACKWARD_MAX_BLOCKS;
}

// Column sums in phase 2 of the kernel below: units of x128::size columns (packed) or 1, and the
// block's threads split into groups that each take every groups-th row of the block.
__host__ __device__ __forceinline__ int layernorm_backward_groups(int C, int packed, int threads) {
    int units = packed ? C / x128::size : C;
    int units_per_pass = units < threads ? units : threads;
    return threads / units_per_pass;
}

// One kernel for all of LayerNorm's backward. Block b owns rows [b * R, (b + 1) * R), R =
// ceil(N / gridDim.x).
// Phase 1, one warp per row: dinp += dx, dx = rstd * (w*dy - mean(w*dy) - norm * mean(w*dy*norm)).
// Phase 2, the same rows again (now in L2, so DRAM sees dout and inp once): partials[b][c] = sum
// over the rows of dy * norm, partials[gridDim.x + b][c] of dy, each thread summing its columns
// over its group's rows in row order, then the groups added in group order through shared memory
// (groups * 2 * C floats): no atomics, the same bits in every run and thread order.
// layernorm_backward_finalize_kernel then adds the blocks' partials in block order.
__global__ void layernorm_backward_kernel(floatX *dinp, float *partials, const floatX *dout,
                                          const floatX *inp, const floatX *weight,
                                          const float *mean, const float *rstd, int N, int C,
                                          int packed) {
    LLMC_EXTERN_SHARED(float, group_sums);
    int rows_per_block = ceil_div(N, gridDim.x);
    int start = blockIdx.x * rows_per_block;
    int end = min(N, start + rows_per_block);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, num_warps = blockDim.x / 32;
    for (int row = start + warp; row < end; row += num_warps) {
        size_t offset = (size_t)row * C;
        float m = mean[row], s = rstd[row];
        float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
        if (packed) {
            for (int i = lane * x128::size; i < C; i += 32 * x128::size) {
                x128 x = load128(inp + offset + i), dy = load128(dout + offset + i);
                x128 w = load128(weight + i);
                LLMC_UNROLL
                for (int k = 0; k < x128::size; k++) {
                    float norm = (to_float(x[k]) - m) * s;
                    float dnorm = to_float(w[k]) * to_float(dy[k]);
                    dnorm_sum += dnorm;
                    dnorm_norm_sum += dnorm * norm;
                }
            }
        } else {
            for (int i = lane; i < C; i += 32) {
                float norm = (to_float(inp[offset + i]) - m) * s;
                float dnorm = to_float(weight[i]) * to_float(dout[offset + i]);
                dnorm_sum += dnorm;
                dnorm_norm_sum += dnorm * norm;
            }
        }
        float a = warp_reduce_sum(dnorm_sum) / C;
        float b = warp_reduce_sum(dnorm_norm_sum) / C;
        if (packed) {
            for (int i = lane * x128::size; i < C; i += 32 * x128::size) {
                x128 x = load128(inp + offset + i), dy = load128(dout + offset + i);
                x128 w = load128(weight + i), d = load128(dinp + offset + i);
                LLMC_UNROLL
                for (int k = 0; k < x128::size; k++) {
                    float norm = (to_float(x[k]) - m) * s;
                    float dnorm = to_float(w[k]) * to_float(dy[k]);
                    float dx = (dnorm - a - norm * b) * s;
                    d[k] = from_float<floatX>(to_float(d[k]) + dx);
                }
                store128(dinp + offset + i, d);
            }
        } else {
            for (int i = lane; i < C; i += 32) {
                float norm = (to_float(inp[offset + i]) - m) * s;
                float dnorm = to_float(weight[i]) * to_float(dout[offset + i]);
                float dx = (dnorm - a - norm * b) * s;
                dinp[offset + i] = from_float<floatX>(to_float(dinp[offset + i]) + dx);
            }
        }
    }
    // phase 2 reads only dout, inp, mean, rstd, which phase 1 did not write: no barrier before it
    const int width = packed ? x128::size : 1;
    int units = C / width;
    int units_per_pass = units < (int)blockDim.x ? units : (int)blockDim.x;
    int groups = layernorm_backward_groups(C, packed, blockDim.x);
    int group = threadIdx.x / units_per_pass;
    if (group < groups) {
        for (int u = threadIdx.x % units_per_pass; u < units; u += units_per_pass) {
            int c = u * width;
            // indexed only by unrolled loops (compile-time indices): registers, not local memory
            float dw[x128::size], db[x128::size];
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) dw[k] = db[k] = 0.0f;
            for (int row = start + group; row < end; row += groups) {
                size_t at = (size_t)row * C + c;
                float m = mean[row], s = rstd[row];
                if (packed) {
                    x128 x = load128cs(inp + at), dy = load128cs(dout + at); // their last use
                    LLMC_UNROLL
                    for (int k = 0; k < x128::size; k++) {
                        dw[k] += (to_float(x[k]) - m) * s * to_float(dy[k]);
                        db[k] += to_float(dy[k]);
                    }
                } else {
                    float dy = to_float(dout[at]);
                    dw[0] += (to_float(inp[at]) - m) * s * dy;
                    db[0] += dy;
                }
            }
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) {
                if (k < width) {
                    group_sums[(size_t)group * 2 * C + c + k] = dw[k];
                    group_sums[(size_t)group * 2 * C + C + c + k] = db[k];
                }
            }
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float dw = 0.0f, db = 0.0f;
        for (int g = 0; g < groups; g++) {
            dw += group_sums[(size_t)g * 2 * C + c];
            db += group_sums[(size_t)g * 2 * C + C + c];
        }
        partials[(size_t)blockIdx.x * C + c] = dw;
        partials[(size_t)(gridDim.x + blockIdx.x) * C + c] = db;
    }
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

// scratch: at least 2 * LAYERNORM_BACKWARD_MAX_BLOCKS * C floats.
static inline void layernorm_backward(floatX *dinp, floatX *dweight, floatX *dbias, float *scratch,
                                      const floatX *dout, const floatX *inp, const floatX *weight,
                                      const float *mean, const float *rstd, int N, int C,
                                      cudaStream_t stream) {
    const int block = LAYERNORM_BACKWARD_THREADS;
    int packed = layernorm_packed(C, dinp, dout, inp, weight, NULL);
    int blocks = layernorm_backward_num_blocks(N);
    size_t shared_bytes =
        (size_t)layernorm_backward_groups(C, packed, block) * 2 * C * sizeof(float);
    if (shared_bytes > 48 * 1024) {
        cuda_check(cudaFuncSetAttribute(layernorm_backward_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)shared_bytes));
    }
    LLMC_LAUNCH(layernorm_backward_kernel, blocks, block, shared_bytes, stream)
    (dinp, scratch, dout, inp, weight, mean, rstd, N, C, packed);
    cuda_check(cudaGetLastError());
    LLMC_LAUNCH(layernorm_backward_finalize_kernel, ceil_div(C, 256), 256, 0, stream)
    (dweight, dbias, scratch, C, blocks);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_LAYERNORM_CUH
