// RMSNorm (llama's norm, /work/notes/llama_spec.md): y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) +
// 1e-5) in fp32, over rows of D values, with a learnable weight (D) and no bias.
//
// One kernel pair serves both uses: the block's norms (rows of C, one per token) and QK-norm
// (rows of HS inside the qkv activation: the q heads, or the k heads, of each token, one weight
// shared by the heads). Row r of N * rows_per_token starts at (r / rows_per_token) * token_stride +
// (r % rows_per_token) * D; out/dinp use the same offsets as inp, and rstd has one float per row.
//   block norm: rows_per_token = 1, D = C, token_stride = C
//   q norm:     rows_per_token = NH, D = HS, token_stride = (NH + 2 KV) HS, pointers at qkv
//   k norm:     rows_per_token = KV, D = HS, token_stride = (NH + 2 KV) HS, pointers at qkv + NH HS
// Rows are read in 16-byte packs (Packed128) when D and token_stride are multiples of the pack and
// every pointer is 16-byte aligned, else element by element (the same arithmetic either way).
// Backward follows llmc/layernorm.cuh: one kernel (a warp per row for dinp, then column sums of
// the weight gradient over the block's rows in a fixed order) and a finalize adding the blocks'
// partials in block order: no floating-point atomics, the same bits in every run.
#ifndef LLMC_RMSNORM_CUH
#define LLMC_RMSNORM_CUH

#include "cuda_common.cuh"
#include "layernorm.cuh" // layernorm_backward_num_blocks/groups: the same partition of rows

#define RMSNORM_EPS 1e-5f

// Where row r starts (see the header).
__host__ __device__ __forceinline__ size_t rmsnorm_row_offset(int row, int rows_per_token, int D,
                                                              size_t token_stride) {
    return (size_t)(row / rows_per_token) * token_stride + (size_t)(row % rows_per_token) * D;
}

// out (rows as inp) = rmsnorm(inp); rstd (N * rows_per_token) may be NULL (inference). One warp
// per row. out may equal inp (then backward cannot run: it needs inp).
__global__ void rmsnorm_forward_kernel(floatX *out, float *rstd, const floatX *inp,
                                       const floatX *weight, int num_rows, int rows_per_token,
                                       int D, size_t token_stride, int packed) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= num_rows) return;
    int lane = threadIdx.x % 32;
    size_t offset = rmsnorm_row_offset(row, rows_per_token, D, token_stride);
    const floatX *x = inp + offset;
    floatX *y = out + offset;
    float sum_squares = 0.0f;
    if (packed) {
        for (int i = lane * x128::size; i < D; i += 32 * x128::size) {
            x128 pack = load128(x + i);
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++)
                sum_squares += to_float(pack[k]) * to_float(pack[k]);
        }
    } else {
        for (int i = lane; i < D; i += 32) sum_squares += to_float(x[i]) * to_float(x[i]);
    }
    float s = rsqrtf(warp_reduce_sum(sum_squares) / D + RMSNORM_EPS);
    if (packed) {
        for (int i = lane * x128::size; i < D; i += 32 * x128::size) {
            x128 pack = load128(x + i), w = load128(weight + i), result;
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) {
                result[k] = from_float<floatX>(to_float(pack[k]) * s * to_float(w[k]));
            }
            store128(y + i, result); // the next matmul (or RoPE) reads it
        }
    } else {
        for (int i = lane; i < D; i += 32) {
            y[i] = from_float<floatX>(to_float(x[i]) * s * to_float(weight[i]));
        }
    }
    if (lane == 0 && rstd != NULL) rstd[row] = s;
}

// Whether rows at these pointers, D and token_stride can be read in 16-byte packs.
static inline int rmsnorm_packed(int D, size_t token_stride, const void *a, const void *b,
                                 const void *c, const void *d) {
    return D % x128::size == 0 && token_stride % x128::size == 0 && is_aligned16(a) &&
           is_aligned16(b) && is_aligned16(c) && (d == NULL || is_aligned16(d));
}

// N tokens of rows_per_token rows each (see the header for the layouts).
static inline void rmsnorm_forward(floatX *out, float *rstd, const floatX *inp,
                                   const floatX *weight, int N, int rows_per_token, int D,
                                   size_t token_stride, cudaStream_t stream) {
    const int block = 256;
    int num_rows = N * rows_per_token;
    int packed = rmsnorm_packed(D, token_stride, out, inp, weight, NULL);
    LLMC_LAUNCH(rmsnorm_forward_kernel, ceil_div(num_rows, block / 32), block, 0, stream)
    (out, rstd, inp, weight, num_rows, rows_per_token, D, token_stride, packed);
    cuda_check(cudaGetLastError());
}

// Backward. Block b owns rows [b R, (b + 1) R), R = ceil(num_rows / gridDim.x).
// Phase 1, a warp per row: dinp += dx, dx = rstd (w dy - norm mean(w dy norm)), norm = x rstd.
// Phase 2, the same rows: partials[b][c] = sum over them of dy norm, each thread summing its
// columns over its group's rows in row order, the groups added in group order through shared
// memory (groups * D floats). rmsnorm_backward_finalize_kernel adds the blocks in block order.
// dinp must not alias dout or inp (phase 2 rereads both).
__global__ void rmsnorm_backward_kernel(floatX *dinp, float *partials, const floatX *dout,
                                        const floatX *inp, const floatX *weight, const float *rstd,
                                        int num_rows, int rows_per_token, int D,
                                        size_t token_stride, int packed) {
    LLMC_EXTERN_SHARED(float, group_sums);
    int rows_per_block = ceil_div(num_rows, gridDim.x);
    int start = blockIdx.x * rows_per_block;
    int end = min(num_rows, start + rows_per_block);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, num_warps = blockDim.x / 32;
    for (int row = start + warp; row < end; row += num_warps) {
        size_t offset = rmsnorm_row_offset(row, rows_per_token, D, token_stride);
        float s = rstd[row];
        float dnorm_norm_sum = 0.0f;
        if (packed) {
            for (int i = lane * x128::size; i < D; i += 32 * x128::size) {
                x128 x = load128(inp + offset + i), dy = load128(dout + offset + i);
                x128 w = load128(weight + i);
                LLMC_UNROLL
                for (int k = 0; k < x128::size; k++) {
                    dnorm_norm_sum += to_float(w[k]) * to_float(dy[k]) * (to_float(x[k]) * s);
                }
            }
        } else {
            for (int i = lane; i < D; i += 32) {
                float norm = to_float(inp[offset + i]) * s;
                dnorm_norm_sum += to_float(weight[i]) * to_float(dout[offset + i]) * norm;
            }
        }
        float b = warp_reduce_sum(dnorm_norm_sum) / D;
        if (packed) {
            for (int i = lane * x128::size; i < D; i += 32 * x128::size) {
                x128 x = load128(inp + offset + i), dy = load128(dout + offset + i);
                x128 w = load128(weight + i), d = load128(dinp + offset + i);
                LLMC_UNROLL
                for (int k = 0; k < x128::size; k++) {
                    float norm = to_float(x[k]) * s;
                    float dx = (to_float(w[k]) * to_float(dy[k]) - norm * b) * s;
                    d[k] = from_float<floatX>(to_float(d[k]) + dx);
                }
                store128(dinp + offset + i, d);
            }
        } else {
            for (int i = lane; i < D; i += 32) {
                float norm = to_float(inp[offset + i]) * s;
                float dx = (to_float(weight[i]) * to_float(dout[offset + i]) - norm * b) * s;
                dinp[offset + i] = from_float<floatX>(to_float(dinp[offset + i]) + dx);
            }
        }
    }
    // phase 2 reads only dout, inp and rstd, which phase 1 did not write: no barrier before it
    const int width = packed ? x128::size : 1;
    int units = D / width;
    int units_per_pass = units < (int)blockDim.x ? units : (int)blockDim.x;
    int groups = layernorm_backward_groups(D, packed, blockDim.x);
    int group = threadIdx.x / units_per_pass;
    if (group < groups) {
        for (int u = threadIdx.x % units_per_pass; u < units; u += units_per_pass) {
            int c = u * width;
            float dw[x128::size]; // indexed by unrolled loops only: registers
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) dw[k] = 0.0f;
            for (int row = start + group; row < end; row += groups) {
                size_t at = rmsnorm_row_offset(row, rows_per_token, D, token_stride) + c;
                float s = rstd[row];
                if (packed) {
                    x128 x = load128cs(inp + at), dy = load128cs(dout + at); // their last use
                    LLMC_UNROLL
                    for (int k = 0; k < x128::size; k++) {
                        dw[k] += to_float(x[k]) * s * to_float(dy[k]);
                    }
                } else {
                    dw[0] += to_float(inp[at]) * s * to_float(dout[at]);
                }
            }
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) {
                if (k < width) group_sums[(size_t)group * D + c + k] = dw[k];
            }
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float dw = 0.0f;
        for (int g = 0; g < groups; g++) dw += group_sums[(size_t)g * D + c];
        partials[(size_t)blockIdx.x * D + c] = dw;
    }
}

__global__ void rmsnorm_backward_finalize_kernel(floatX *dweight, const float *partials, int D,
                                                 int num_blocks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= D) return;
    float dw = 0.0f;
    for (int k = 0; k < num_blocks; k++) dw += partials[(size_t)k * D + c];
    dweight[c] = from_float<floatX>(to_float(dweight[c]) + dw);
}

// Floats of scratch rmsnorm_backward needs for rows of D.
static inline size_t rmsnorm_backward_scratch_floats(int D) {
    return (size_t)LAYERNORM_BACKWARD_MAX_BLOCKS * D;
}

// dinp += dL/dinp and dweight += dL/dweight from dout and forward's inp and rstd; layouts as in
// rmsnorm_forward. scratch: rmsnorm_backward_scratch_floats(D) floats.
static inline void rmsnorm_backward(floatX *dinp, floatX *dweight, float *scratch,
                                    const floatX *dout, const floatX *inp, const floatX *weight,
                                    const float *rstd, int N, int rows_per_token, int D,
                                    size_t token_stride, cudaStream_t stream) {
    const int block = LAYERNORM_BACKWARD_THREADS;
    int num_rows = N * rows_per_token;
    int packed = rmsnorm_packed(D, token_stride, dinp, dout, inp, weight);
    int blocks = layernorm_backward_num_blocks(num_rows);
    size_t shared_bytes = (size_t)layernorm_backward_groups(D, packed, block) * D * sizeof(float);
    if (shared_bytes > 48 * 1024) {
        cuda_check(cudaFuncSetAttribute(rmsnorm_backward_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)shared_bytes));
    }
    LLMC_LAUNCH(rmsnorm_backward_kernel, blocks, block, shared_bytes, stream)
    (dinp, scratch, dout, inp, weight, rstd, num_rows, rows_per_token, D, token_stride, packed);
    cuda_check(cudaGetLastError());
    LLMC_LAUNCH(rmsnorm_backward_finalize_kernel, ceil_div(D, 256), 256, 0, stream)
    (dweight, scratch, D, blocks);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_RMSNORM_CUH
