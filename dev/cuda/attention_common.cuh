// Shared by dev/cuda/attention_forward.cu and attention_backward.cu: the CPU reference of causal
// self-attention (in double), version 1 of the kernels (the materialising attention that
// llmc/attention.cuh had before flash attention: permute, scores as a batched matmul into a
// (B,NH,T,T) matrix, softmax, att v, unpermute) and the error bounds both files check with.
#ifndef DEV_CUDA_ATTENTION_COMMON_CUH
#define DEV_CUDA_ATTENTION_COMMON_CUH

#include "dev_common.cuh"

#include "../../llmc/attention.cuh"
#include "../../llmc/matmul.cuh"

// Unit roundoff of floatX, the storage of every kernel output.
#ifdef ENABLE_FP32
#define U_STORE U_FP32
#else
#define U_STORE U_BF16
#endif

// One query row of (b, h): p[0..t] = softmax of the scaled scores over the keys it sees (keys
// 0..t; planted bug: extra_keys = 1 lets it see t + 1 too). Returns the log-sum-exp. In double.
static inline double attention_row_cpu(double *p, const float *qkv, int b, int h, int t, int T,
                                       int C, int NH, int extra_keys) {
    int HS = C / NH, last = t + extra_keys < T ? t + extra_keys : T - 1;
    double scale = 1.0 / sqrt((double)HS), maxval = -INFINITY, sum = 0.0;
    const float *q = qkv + ((size_t)b * T + t) * 3 * C + (size_t)h * HS;
    for (int j = 0; j <= last; j++) {
        const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * HS;
        double dot = 0.0;
        for (int d = 0; d < HS; d++) dot += (double)q[d] * k[d];
        p[j] = dot * scale;
        maxval = fmax(maxval, p[j]);
    }
    for (int j = 0; j <= last; j++) sum += p[j] = exp(p[j] - maxval);
    for (int j = 0; j <= last; j++) p[j] /= sum;
    for (int j = last + 1; j < T; j++) p[j] = 0.0;
    return maxval + log(sum);
}

// out (B,T,C), lse (B,NH,T) from qkv (B,T,3,NH,HS).
static inline void attention_forward_cpu(float *out, float *lse, const float *qkv, int B, int T,
                                         int C, int NH, int extra_keys) {
    int HS = C / NH;
    double *p = (double *)malloc_check((size_t)T * sizeof(double), "attention row");
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                lse[((size_t)b * NH + h) * T + t] =
                    (float)attention_row_cpu(p, qkv, b, h, t, T, C, NH, extra_keys);
                for (int d = 0; d < HS; d++) {
                    double y = 0.0;
                    for (int j = 0; j < T; j++) {
                        y += p[j] * qkv[((size_t)b * T + j) * 3 * C + 2 * C + (size_t)h * HS + d];
                    }
                    out[((size_t)b * T + t) * C + (size_t)h * HS + d] = (float)y;
                }
            }
        }
    }
    free(p);
}

// The error bounds (u = U_FP32; inputs q, k, v, dout in [-1, 1], so |out| <= 1). A score
// s = scale * q.k (|q.k| <= HS, scale = 1/sqrt(HS), |s| <= sqrt(HS)): an fp32 dot of HS terms is
// within HS u sum|q_d k_d| <= HS^2 u in any order, the scaling adds u |s|:
//   score_error = (HS + 1) sqrt(HS) u
// Softmax weights: a change of every score by <= e changes each normalised weight by a factor
// within exp(+-2e); exp(s - max) adds its argument's rounding (<= 2 sqrt(HS) u) and expf's 2 ulp
// (4u); so each weight is within a relative
//   weight_error = 2 (score_error + (2 sqrt(HS) + 4) u) (+ 1% for the exp(2e) - 1 > 2e slack)
// The normaliser and out = sum p v / sum p sum at most T positive (resp. |v| <= 1) terms, each
// within T u (+ u for the products p v); the online softmax rescales both by the same factor once
// per key tile, rounding each product (2u per tile); 1 / sum and the multiply by it, 2u. With
// |v| <= 1 and sum p |v| <= sum p, out is within
//   out_atol = weight_error + (2T + 2 tiles + 3) u
// and storing it in floatX adds U_store |out| (the rtol; it also covers the reference's rounding).
// lse = max + log(sum): the scores' error once (log-sum-exp is 1-Lipschitz), the normaliser's
// relative error, logf's 1 ulp of |log sum| <= ln T and the final add, u |lse| <= u (sqrt(HS) + ln
// T):
//   lse_atol = score_error + (2 sqrt(HS) + 4 + T + 2 tiles) u + 3 u ln(T + 1) + u sqrt(HS) + u
// Version 1 stores the unscaled scores (|q.k| <= HS) and the probabilities in floatX: each score
// moves by sqrt(HS) U_store more, each probability by U_store relative, out by U_store |out|.
typedef struct {
    double out_atol, out_rtol, lse_atol;
} ForwardBounds;

static inline ForwardBounds attention_forward_bounds(int T, int HS, int materialised) {
    const double u = U_FP32, root = sqrt((double)HS), tiles = ceil_div(T, 16);
    double score_error = (HS + 1) * root * u;
    // version 1 stores the unscaled scores and the probabilities in floatX
    double stored_score = materialised ? root * U_STORE : 0.0;
    double stored_weight = materialised ? U_STORE : 0.0;
    double weight_error = 2.02 * (score_error + stored_score + (2 * root + 4) * u) + stored_weight;
    ForwardBounds bounds;
    bounds.out_atol = weight_error + (2.0 * T + 2 * tiles + 3) * u;
    bounds.out_rtol = U_STORE;
    bounds.lse_atol =
        score_error + (2 * root + 4 + T + 2 * tiles) * u + 3 * u * log(T + 1.0) + u * root + u;
    return bounds;
}

// Magnitudes of the exact backward, from which the bounds are built (derived in
// dev/cuda/attention_backward.cu's header).
typedef struct {
    double colsum; // max over keys j of sum_i p_ij
    double dp;     // max |dp_ij| = |dout_i . v_j|
    double dp_d;   // max |dp_ij - D_i|
} BackwardMagnitudes;

typedef struct {
    double dq_atol, dk_atol, dv_atol, rtol;
} BackwardBounds;

// The backward bounds derived in dev/cuda/attention_backward.cu's header (also used by
// dev/cuda/attention_gqa.cu).
static inline BackwardBounds attention_backward_bounds(int T, int HS, const BackwardMagnitudes *m,
                                                       int materialised) {
    const double u = U_FP32, root = sqrt((double)HS), scale = 1.0 / root;
    double score_error = (HS + 1) * root * u;
    double weight_error = score_error + (3 * root + 2 * log(T + 1.0) + 4) * u;
    double dp_error = HS * HS * u, dsum_error = HS * HS * u, stored_ds = 0.0;
    if (materialised) {
        ForwardBounds forward = attention_forward_bounds(T, HS, 1);
        // forward's out bound (less the output sums it also holds) covers its weights; + the
        // normaliser's T u
        weight_error = forward.out_atol + T * u;
        dp_error += m->dp * U_STORE;
        dsum_error = weight_error * m->dp + dp_error + T * u * m->dp + HS * U_STORE;
        stored_ds = U_STORE;
    }
    double dp_d = m->dp_d + dp_error + dsum_error; // |dp - D| as computed
    double e_ds = (weight_error + 3 * u + stored_ds) * dp_d + dp_error + dsum_error;
    BackwardBounds bounds;
    bounds.dq_atol = 1.01 * scale * (e_ds + T * u * dp_d);
    bounds.dk_atol = bounds.dq_atol * m->colsum;
    bounds.dv_atol = 1.01 * (weight_error + T * u) * m->colsum;
    bounds.rtol = U_STORE;
    return bounds;
}

typedef struct {
    int B, T, NH, HS;
} AttentionShape;

// Prints the program's header line and runs check (AttentionShape -> 1 when passed) at T = 1, 37,
// 64 and 1024: small heads under the emulation (HS = 16, as the test models; T = 1024 at B = NH
// = 1 to stay quick), GPT-2's NH = 12, HS = 64 on a GPU. Returns 1 when every shape passed.
template <typename Check> static int attention_check_shapes(const char *program, Check check) {
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("%s: %s, device %s\n", program, PRECISION_NAME, props.name);
    matmul_init();
    int NH = DEV_EMULATED ? 2 : 12, HS = DEV_EMULATED ? 16 : 64;
    AttentionShape shapes[] = {{2, 1, NH, HS},
                               {2, 37, NH, HS},
                               {2, 64, NH, HS},
                               {DEV_EMULATED ? 1 : 2, 1024, DEV_EMULATED ? 1 : NH, HS}};
    int all_ok = 1;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) all_ok &= check(shapes[i]);
    return all_ok;
}

// The timed shape: one layer of GPT-2 124M at B = 16, T = 1024 on a GPU, a small one emulated.
static inline AttentionShape attention_timed_shape(void) {
    AttentionShape gpu = {16, 1024, 12, 64}, emulated = {1, 256, 2, 16};
    return DEV_EMULATED ? emulated : gpu;
}

// The device buffers of both versions for one shape. Flash: qkv, out, lse (forward), dout, dsum,
// dqkv (backward). Version 1 (materialising): y, its permuted q, k, v (qkvr), its probabilities
// (att, B NH T T) and scratch (forward); dqkvr and datt (backward). Backward-only buffers are
// NULL when backward is 0. qkv and dout start zeroed (the timed runs read them as they are).
typedef struct {
    floatX *qkv, *out, *dout, *dqkv, *y, *qkvr, *att, *scratch, *dqkvr, *datt;
    float *lse, *dsum;
} AttentionBuffers;

static inline AttentionBuffers attention_buffers_alloc(AttentionShape shape, int backward) {
    size_t BTC = (size_t)shape.B * shape.T * shape.NH * shape.HS;
    size_t BNHT = (size_t)shape.B * shape.NH * shape.T, X = sizeof(floatX);
    AttentionBuffers a = {};
    a.qkv = (floatX *)cuda_malloc_check(3 * BTC * X, "qkv");
    cuda_check(cudaMemset(a.qkv, 0, 3 * BTC * X));
    a.out = (floatX *)cuda_malloc_check(BTC * X, "out");
    a.lse = (float *)cuda_malloc_check(BNHT * sizeof(float), "lse");
    a.y = (floatX *)cuda_malloc_check(BTC * X, "y");
    a.qkvr = (floatX *)cuda_malloc_check(3 * BTC * X, "qkvr");
    a.att = (floatX *)cuda_malloc_check(BNHT * shape.T * X, "att");
    a.scratch = (floatX *)cuda_malloc_check(BTC * X, "scratch");
    if (backward) {
        a.dout = (floatX *)cuda_malloc_check(BTC * X, "dout");
        cuda_check(cudaMemset(a.dout, 0, BTC * X));
        a.dsum = (float *)cuda_malloc_check(BNHT * sizeof(float), "dsum");
        a.dqkv = (floatX *)cuda_malloc_check(3 * BTC * X, "dqkv");
        a.dqkvr = (floatX *)cuda_malloc_check(3 * BTC * X, "dqkvr");
        a.datt = (floatX *)cuda_malloc_check(BNHT * shape.T * X, "datt");
    }
    return a;
}

static inline void attention_buffers_free(AttentionBuffers *a) {
    void *all[] = {a->qkv, a->out,     a->dout,  a->dqkv, a->y,   a->qkvr,
                   a->att, a->scratch, a->dqkvr, a->datt, a->lse, a->dsum};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (all[i] != NULL) cuda_check(cudaFree(all[i]));
    }
}

// Version 1 of the kernels: the materialising attention (llmc/attention.cuh before flash
// attention), kept to compare against. Its (B,NH,T,T) matrices are what flash attention removes.

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
static inline void attention_forward_materialised(floatX *out, floatX *qkvr, floatX *att,
                                                  floatX *scratch, const floatX *qkv, int B, int T,
                                                  int C, int NH, cudaStream_t stream) {
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
static inline void attention_backward_materialised(floatX *dqkv, floatX *scratch_qkvr,
                                                   floatX *scratch_att, floatX *scratch_btc,
                                                   const floatX *dout, const floatX *qkvr,
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

// Versions: 1 materialising (above), 2 our flash kernels (llmc/attention.cuh), 3 cuDNN's fused
// attention (llmc/cudnn_att.cpp) when built with LLMC_USE_CUDNN (BF16; the Makefile's dev builds
// of these two files link the glue: on a GPU the real cuDNN, under the emulation its stand-in).
#ifdef LLMC_USE_CUDNN
#define ATTENTION_VERSIONS 3
#else
#define ATTENTION_VERSIONS 2
#endif

static inline const char *attention_version_name(int version) {
    return version == 1   ? " (materialising)"
           : version == 2 ? " (flash, llmc/attention.cuh)"
                          : " (cuDNN fused attention, llmc/cudnn_att.cpp)";
}

// Whether version runs at head size HS (cuDNN's head sizes are multiples of 8 up to 128).
static inline int attention_version_runs(int version, int HS) {
#ifdef LLMC_USE_CUDNN
    if (version == 3 && !attention_cudnn_supports(HS)) {
        printf(" version 3: head size %d is not one cuDNN's fused attention takes: skipped\n", HS);
        return 0;
    }
#endif
    (void)HS;
    return version <= ATTENTION_VERSIONS;
}

static inline void attention_forward_version3(floatX *out, float *lse, const floatX *qkv, int B,
                                              int T, int NH, int HS) {
#ifdef LLMC_USE_CUDNN
    attention_forward_cudnn(out, lse, qkv, B, T, NH, NH, HS, 0);
#else
    (void)out, (void)lse, (void)qkv, (void)B, (void)T, (void)NH, (void)HS;
    fatal("attention version 3 needs a build with cuDNN (LLMC_USE_CUDNN)");
#endif
}

static inline void attention_backward_version3(floatX *dqkv, const floatX *dout, const floatX *out,
                                               const floatX *qkv, const float *lse, int B, int T,
                                               int NH, int HS) {
#ifdef LLMC_USE_CUDNN
    attention_backward_cudnn(dqkv, dout, out, qkv, lse, B, T, NH, NH, HS, 0);
#else
    (void)dqkv, (void)dout, (void)out, (void)qkv, (void)lse, (void)B, (void)T, (void)NH, (void)HS;
    fatal("attention version 3 needs a build with cuDNN (LLMC_USE_CUDNN)");
#endif
}

#endif // DEV_CUDA_ATTENTION_COMMON_CUH
