// Causal self-attention, our own path (no cuDNN): permute qkv (B,T,3C) into q, k, v
// (B,NH,T,HS), scores = q k^T as a batched matmul, a causal softmax kernel (scaled by 1/sqrt(HS),
// in place), y = att v as a batched matmul, and unpermute back to (B,T,C). att (B,NH,T,T) is kept
// for backward, which runs the same steps in reverse. Masked entries of att are stored as 0.
#ifndef LLMC_ATTENTION_CUH
#define LLMC_ATTENTION_CUH

#include "cuda_common.cuh"
#include "matmul.cuh"

// qkv (B,T,3,NH,HS) -> q, k, v each (B,NH,T,HS)
__global__ void permute_kernel(floatX *q, floatX *k, floatX *v, const floatX *qkv, int B, int T,
                               int NH, int HS) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T * HS) return;
    int h_s = (int)(idx % HS);
    int t = (int)((idx / HS) % T);
    int nh = (int)((idx / ((size_t)HS * T)) % NH);
    int b = (int)(idx / ((size_t)HS * T * NH));
    size_t C = (size_t)NH * HS;
    size_t from = ((size_t)b * T + t) * 3 * C + (size_t)nh * HS + h_s;
    q[idx] = qkv[from];
    k[idx] = qkv[from + C];
    v[idx] = qkv[from + 2 * C];
}

// backward of permute_kernel: dqkv (B,T,3C) = interleave of dq, dk, dv
__global__ void permute_backward_kernel(floatX *dqkv, const floatX *dq, const floatX *dk,
                                        const floatX *dv, int B, int T, int NH, int HS) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T * HS) return;
    int h_s = (int)(idx % HS);
    int t = (int)((idx / HS) % T);
    int nh = (int)((idx / ((size_t)HS * T)) % NH);
    int b = (int)(idx / ((size_t)HS * T * NH));
    size_t C = (size_t)NH * HS;
    size_t to = ((size_t)b * T + t) * 3 * C + (size_t)nh * HS + h_s;
    dqkv[to] = dq[idx];
    dqkv[to + C] = dk[idx];
    dqkv[to + 2 * C] = dv[idx];
}

// y (B,NH,T,HS) -> out (B,T,NH,HS); with backward = 1 the reverse copy (dout -> dy).
__global__ void unpermute_kernel(floatX *out, const floatX *y, int B, int T, int NH, int HS,
                                 int backward) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T * HS) return;
    int h_s = (int)(idx % HS);
    int t = (int)((idx / HS) % T);
    int nh = (int)((idx / ((size_t)HS * T)) % NH);
    int b = (int)(idx / ((size_t)HS * T * NH));
    size_t other = ((size_t)b * T + t) * NH * HS + (size_t)nh * HS + h_s;
    if (backward) {
        out[idx] = y[other]; // out is dy (B,NH,T,HS), y is dout (B,T,C)
    } else {
        out[other] = y[idx];
    }
}

// In place over att (B*NH, T, T): row t becomes softmax(scale * row[0..t]), zeros after t.
// One warp per row.
__global__ void softmax_forward_kernel(floatX *att, float scale, int num_rows, int T) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= num_rows) return;
    int lane = threadIdx.x % 32;
    int t = row % T;
    floatX *x = att + (size_t)row * T;
    float maxval = -INFINITY;
    for (int i = lane; i <= t; i += 32) maxval = fmaxf(maxval, to_float(x[i]) * scale);
    maxval = warp_reduce_max(maxval);
    float sum = 0.0f;
    for (int i = lane; i <= t; i += 32) sum += expf(to_float(x[i]) * scale - maxval);
    float inv = 1.0f / warp_reduce_sum(sum);
    for (int i = lane; i < T; i += 32) {
        float p = i <= t ? expf(to_float(x[i]) * scale - maxval) * inv : 0.0f;
        x[i] = from_float<floatX>(p);
    }
}

// In place over datt: dpreatt = scale * att * (datt - sum(att * datt)) on row[0..t], zeros after.
__global__ void softmax_backward_kernel(floatX *datt, const floatX *att, float scale, int num_rows,
                                        int T) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= num_rows) return;
    int lane = threadIdx.x % 32;
    int t = row % T;
    floatX *d = datt + (size_t)row * T;
    const floatX *p = att + (size_t)row * T;
    float weighted = 0.0f;
    for (int i = lane; i <= t; i += 32) weighted += to_float(p[i]) * to_float(d[i]);
    weighted = warp_reduce_sum(weighted);
    for (int i = lane; i < T; i += 32) {
        float value = i <= t ? scale * to_float(p[i]) * (to_float(d[i]) - weighted) : 0.0f;
        d[i] = from_float<floatX>(value);
    }
}

// out (B,T,C). qkvr (3*B*T*C): the permuted q, k, v, kept for backward. att (B,NH,T,T) kept.
// qkv (B,T,3C) is the input. scratch: B*T*C.
static inline void attention_forward(floatX *out, floatX *qkvr, floatX *att, floatX *scratch,
                                     const floatX *qkv, int B, int T, int C, int NH,
                                     cudaStream_t stream) {
    const int block = 256;
    int HS = C / NH;
    size_t BTC = (size_t)B * T * C;
    floatX *q = qkvr, *k = qkvr + BTC, *v = qkvr + 2 * BTC;
    LLMC_LAUNCH(permute_kernel, ceil_div((long long)BTC, block), block, 0, stream)
    (q, k, v, qkv, B, T, NH, HS);
    cuda_check(cudaGetLastError());
    size_t head = (size_t)T * HS, square = (size_t)T * T;
    matmul_gemm(att, k, q, NULL, NULL, EPILOGUE_NONE, T, T, HS, 1, 0, B * NH, head, head, square, 0,
                stream);
    int num_rows = B * NH * T;
    float scale = 1.0f / sqrtf((float)HS);
    LLMC_LAUNCH(softmax_forward_kernel, ceil_div(num_rows, block / 32), block, 0, stream)
    (att, scale, num_rows, T);
    cuda_check(cudaGetLastError());
    matmul_gemm(scratch, v, att, NULL, NULL, EPILOGUE_NONE, HS, T, T, 0, 0, B * NH, head, square,
                head, 0, stream);
    LLMC_LAUNCH(unpermute_kernel, ceil_div((long long)BTC, block), block, 0, stream)
    (out, scratch, B, T, NH, HS, 0);
    cuda_check(cudaGetLastError());
}

// dqkv (B,T,3C) is written. scratch_qkvr: 3*B*T*C; scratch_att: B*NH*T*T; scratch_btc: B*T*C.
static inline void attention_backward(floatX *dqkv, floatX *scratch_qkvr, floatX *scratch_att,
                                      floatX *scratch_btc, const floatX *dout, const floatX *qkvr,
                                      const floatX *att, int B, int T, int C, int NH,
                                      cudaStream_t stream) {
    const int block = 256;
    int HS = C / NH;
    size_t BTC = (size_t)B * T * C;
    const floatX *q = qkvr, *k = qkvr + BTC, *v = qkvr + 2 * BTC;
    floatX *dq = scratch_qkvr, *dk = scratch_qkvr + BTC, *dv = scratch_qkvr + 2 * BTC;
    floatX *dy = scratch_btc, *datt = scratch_att;
    LLMC_LAUNCH(unpermute_kernel, ceil_div((long long)BTC, block), block, 0, stream)
    (dy, dout, B, T, NH, HS, 1);
    cuda_check(cudaGetLastError());
    size_t head = (size_t)T * HS, square = (size_t)T * T;
    int batch = B * NH;
    // datt = dy v^T; dv = att^T dy
    matmul_gemm(datt, v, dy, NULL, NULL, EPILOGUE_NONE, T, T, HS, 1, 0, batch, head, head, square,
                0, stream);
    matmul_gemm(dv, dy, att, NULL, NULL, EPILOGUE_NONE, HS, T, T, 0, 1, batch, head, square, head,
                0, stream);
    int num_rows = B * NH * T;
    float scale = 1.0f / sqrtf((float)HS);
    LLMC_LAUNCH(softmax_backward_kernel, ceil_div(num_rows, block / 32), block, 0, stream)
    (datt, att, scale, num_rows, T);
    cuda_check(cudaGetLastError());
    // dq = dpreatt k; dk = dpreatt^T q
    matmul_gemm(dq, k, datt, NULL, NULL, EPILOGUE_NONE, HS, T, T, 0, 0, batch, head, square, head,
                0, stream);
    matmul_gemm(dk, q, datt, NULL, NULL, EPILOGUE_NONE, HS, T, T, 0, 1, batch, head, square, head,
                0, stream);
    LLMC_LAUNCH(permute_backward_kernel, ceil_div((long long)BTC, block), block, 0, stream)
    (dqkv, dq, dk, dv, B, T, NH, HS);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_ATTENTION_CUH
