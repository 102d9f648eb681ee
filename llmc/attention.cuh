// Causal self-attention as flash attention (our own kernels; BF16 builds with USE_CUDNN=1 call
// cuDNN's fused attention instead, llmc/cudnn_att.h, with the same layouts): the (B,NH,T,T) score
// matrix is never stored. Forward keeps only the output (B,T,C) and the log-sum-exp of each score
// row, lse (B,NH,T) in fp32; backward recomputes the probabilities tile by tile from it
// (FlashAttention-2's structure). Q, K and V are read in place from the qkv projection's rows
// and dq, dk, dv written into the same layout, so no permute kernels.
//
// Grouped-query attention (llama, /work/notes/llama_spec.md): NH query heads share KV key/value
// heads (NH % KV == 0), query head h using kv head h / (NH / KV); a qkv row is [NH*HS q | KV*HS k |
// KV*HS v]. GPT-2 is KV == NH, the (B,T,3,NH,HS) layout, on the same code with the same bits.
//
// Parallelisation: one thread owns one row (a query in forward and for dq, a key for dk/dv);
// a block of TILE threads owns TILE consecutive rows of one (b, head) and walks the other side in
// tiles of TILE rows held in shared memory as fp32. All sums are fp32, each in a fixed order
// (ascending position), and every output element has exactly one writer: no atomics, so results
// are bit-identical across runs and the emulation's thread orders. The price of having no
// atomics is that backward computes the scores twice (once for dq, once for dk/dv).
//
// This is a scalar-FMA kernel (no tensor cores): its correctness is tested under the emulation;
// its speed on a GPU has not been measured (dev/cuda/attention_*.cu time it).
#ifndef LLMC_ATTENTION_CUH
#define LLMC_ATTENTION_CUH

#include <type_traits>

#include "cuda_common.cuh"
#ifdef LLMC_USE_CUDNN
#ifdef ENABLE_FP32
#error "USE_CUDNN=1 needs a BF16 build: cuDNN's fused attention has no fp32 inputs"
#endif
#include "cudnn_att.h" // BF16 builds: cuDNN for head sizes it supports, our kernels otherwise
#endif

// Head sizes up to this are supported; the kernels are instantiated for HS_MAX = 16, 32, 64, 128
// and smaller heads are zero-padded to the next of those.
#define ATTENTION_MAX_HEAD_SIZE 128

// Rows per block and per tile: 32 (one warp); 16 at HS_MAX = 128 so that the static shared memory
// of the backward kernels (four tiles of HS_MAX floats) stays under 48 KiB.
__host__ __device__ constexpr int attention_tile(int hs_max) {
    return hs_max > 64 ? 16 : 32;
}

// Copies rows [row0, row0 + TILE) of one head (base points at row 0, element 0; rows row_stride
// apart) into tile as floats; rows at or past T and columns at or past HS become 0.
template <int TILE, int PITCH>
__device__ __forceinline__ void attention_load_rows(float (*tile)[PITCH], const floatX *base,
                                                    size_t row_stride, int row0, int T, int HS) {
    for (int i = threadIdx.x; i < TILE * PITCH; i += blockDim.x) {
        int r = i / PITCH, d = i % PITCH, t = row0 + r;
        tile[r][d] = t < T && d < HS ? to_float(base[(size_t)t * row_stride + d]) : 0.0f;
    }
}

// Where batch row b's head starts in qkv (rows (NH + 2 KV) HS apart): query head h, and key head
// g (its values follow KV * HS further on).
__device__ __forceinline__ size_t attention_q_offset(int b, int h, int T, int NH, int KV, int HS) {
    return (size_t)b * T * (NH + 2 * KV) * HS + (size_t)h * HS;
}
__device__ __forceinline__ size_t attention_k_offset(int b, int g, int T, int NH, int KV, int HS) {
    return (size_t)b * T * (NH + 2 * KV) * HS + (size_t)(NH + g) * HS;
}

template <int HS_MAX>
__device__ __forceinline__ float attention_dot(const float *a, const float *b) {
    float sum = 0.0f;
    LLMC_UNROLL
    for (int d = 0; d < HS_MAX; d++) sum += a[d] * b[d];
    return sum;
}

// Grid (ceil(T / TILE), NH, B), block TILE. out (B,T,NH*HS), lse (B,NH,T), qkv rows as above.
// Online softmax: a running maximum and sum per row, the output rescaled when the maximum grows.
// Key tiles wholly above the diagonal are skipped: a block stops at its own diagonal tile.
template <int HS_MAX>
__global__ void attention_forward_kernel(floatX *out, float *lse, const floatX *qkv, int T, int NH,
                                         int KV, int HS, float scale) {
    constexpr int TILE = attention_tile(HS_MAX);
    __shared__ float k_tile[TILE][HS_MAX];
    __shared__ float v_tile[TILE][HS_MAX];
    int h = blockIdx.y, b = blockIdx.z, g = h / (NH / KV);
    int q_start = blockIdx.x * TILE, t = q_start + threadIdx.x;
    size_t C = (size_t)NH * HS, qkv_stride = (size_t)(NH + 2 * KV) * HS, kv_width = (size_t)KV * HS;
    const floatX *q_base = qkv + attention_q_offset(b, h, T, NH, KV, HS);
    const floatX *k_base = qkv + attention_k_offset(b, g, T, NH, KV, HS);
    float q[HS_MAX], o[HS_MAX];
    LLMC_UNROLL
    for (int d = 0; d < HS_MAX; d++) {
        q[d] = t < T && d < HS ? to_float(q_base[(size_t)t * qkv_stride + d]) : 0.0f;
        o[d] = 0.0f;
    }
    float running_max = -INFINITY, running_sum = 0.0f;
    // every tile up to the diagonal holds a key <= t (tiles and query blocks have one size), so
    // each processed tile has a finite maximum and the first correction is expf(-inf) = 0
    for (int tile = 0; tile <= (int)blockIdx.x; tile++) {
        int k_start = tile * TILE;
        __syncthreads(); // the previous tile has been read by every thread
        attention_load_rows<TILE, HS_MAX>(k_tile, k_base, qkv_stride, k_start, T, HS);
        attention_load_rows<TILE, HS_MAX>(v_tile, k_base + kv_width, qkv_stride, k_start, T, HS);
        __syncthreads();
        if (t >= T) continue;
        float s[TILE], tile_max = -INFINITY;
        LLMC_UNROLL
        for (int j = 0; j < TILE; j++) {
            s[j] = k_start + j <= t ? attention_dot<HS_MAX>(q, k_tile[j]) * scale : -INFINITY;
            tile_max = fmaxf(tile_max, s[j]);
        }
        float new_max = fmaxf(running_max, tile_max);
        float correction = expf(running_max - new_max);
        running_sum *= correction;
        LLMC_UNROLL
        for (int d = 0; d < HS_MAX; d++) o[d] *= correction;
        LLMC_UNROLL
        for (int j = 0; j < TILE; j++) {
            float p = expf(s[j] - new_max); // masked keys: expf(-inf) = 0
            running_sum += p;
            LLMC_UNROLL
            for (int d = 0; d < HS_MAX; d++) o[d] += p * v_tile[j][d];
        }
        running_max = new_max;
    }
    if (t >= T) return;
    floatX *y = out + ((size_t)b * T + t) * C + (size_t)h * HS;
    float inv = 1.0f / running_sum;
    LLMC_UNROLL
    for (int d = 0; d < HS_MAX; d++) {
        if (d < HS) y[d] = from_float<floatX>(o[d] * inv);
    }
    lse[((size_t)b * NH + h) * T + t] = running_max + logf(running_sum);
}

// Backward, first kernel: dq, and D = rowsum(dout * out) for the second. Grid (ceil(T / TILE),
// NH, B), block TILE; thread = query row t. With p = exp(s - lse) recomputed,
// ds = p * (dout . v - D) * scale, dq = sum over keys <= t of ds k.
template <int HS_MAX>
__global__ void attention_backward_dq_kernel(floatX *dqkv, float *dsum, const floatX *dout,
                                             const floatX *out, const floatX *qkv, const float *lse,
                                             int T, int NH, int KV, int HS, float scale) {
    constexpr int TILE = attention_tile(HS_MAX);
    // own rows with one float of padding, so that thread i reading row i column d hits bank
    // (i + d) % 32; tiles are read by all threads at one address (a broadcast)
    __shared__ float q_rows[TILE][HS_MAX + 1];
    __shared__ float dout_rows[TILE][HS_MAX + 1];
    __shared__ float k_tile[TILE][HS_MAX];
    __shared__ float v_tile[TILE][HS_MAX];
    int h = blockIdx.y, b = blockIdx.z, g = h / (NH / KV);
    int q_start = blockIdx.x * TILE, t = q_start + threadIdx.x;
    size_t C = (size_t)NH * HS, qkv_stride = (size_t)(NH + 2 * KV) * HS, kv_width = (size_t)KV * HS;
    const floatX *q_base = qkv + attention_q_offset(b, h, T, NH, KV, HS);
    const floatX *k_base = qkv + attention_k_offset(b, g, T, NH, KV, HS);
    const floatX *dout_base = dout + (size_t)b * T * C + (size_t)h * HS;
    attention_load_rows<TILE, HS_MAX + 1>(q_rows, q_base, qkv_stride, q_start, T, HS);
    attention_load_rows<TILE, HS_MAX + 1>(dout_rows, dout_base, C, q_start, T, HS);
    __syncthreads();
    const float *q = q_rows[threadIdx.x], *dy = dout_rows[threadIdx.x];
    float row_dsum = 0.0f, row_lse = 0.0f;
    size_t row = ((size_t)b * NH + h) * T + t;
    if (t < T) {
        const floatX *y = out + ((size_t)b * T + t) * C + (size_t)h * HS;
        for (int d = 0; d < HS; d++) row_dsum += dy[d] * to_float(y[d]);
        dsum[row] = row_dsum;
        row_lse = lse[row];
    }
    float dq[HS_MAX];
    LLMC_UNROLL
    for (int d = 0; d < HS_MAX; d++) dq[d] = 0.0f;
    for (int tile = 0; tile <= (int)blockIdx.x; tile++) {
        int k_start = tile * TILE;
        __syncthreads();
        attention_load_rows<TILE, HS_MAX>(k_tile, k_base, qkv_stride, k_start, T, HS);
        attention_load_rows<TILE, HS_MAX>(v_tile, k_base + kv_width, qkv_stride, k_start, T, HS);
        __syncthreads();
        if (t >= T) continue;
        int keys = min(TILE, t - k_start + 1); // causal: keys k_start .. t of this tile
        for (int j = 0; j < keys; j++) {
            float p = expf(attention_dot<HS_MAX>(q, k_tile[j]) * scale - row_lse);
            float ds = p * (attention_dot<HS_MAX>(dy, v_tile[j]) - row_dsum) * scale;
            LLMC_UNROLL
            for (int d = 0; d < HS_MAX; d++) dq[d] += ds * k_tile[j][d];
        }
    }
    if (t >= T) return;
    floatX *dq_out = dqkv + ((size_t)b * T + t) * qkv_stride + (size_t)h * HS;
    LLMC_UNROLL
    for (int d = 0; d < HS_MAX; d++) {
        if (d < HS) dq_out[d] = from_float<floatX>(dq[d]);
    }
}

// Backward, second kernel: dk and dv. Grid (ceil(T / TILE), KV, B), block TILE; thread = key row
// j of kv head g, walking, for each query head of g's group in order (one head when KV == NH), the
// query tiles from its own diagonal tile to the end (queries >= j): dv = sum of p dout, dk = sum
// of ds q, summed over the group's heads in registers (one writer per element: no atomics).
// dsum is the first kernel's D.
template <int HS_MAX>
__global__ void attention_backward_dkdv_kernel(floatX *dqkv, const floatX *dout, const floatX *qkv,
                                               const float *lse, const float *dsum, int T, int NH,
                                               int KV, int HS, float scale) {
    constexpr int TILE = attention_tile(HS_MAX);
    __shared__ float k_rows[TILE][HS_MAX + 1];
    __shared__ float v_rows[TILE][HS_MAX + 1];
    __shared__ float q_tile[TILE][HS_MAX];
    __shared__ float dout_tile[TILE][HS_MAX];
    __shared__ float lse_tile[TILE], dsum_tile[TILE];
    int g = blockIdx.y, b = blockIdx.z, group = NH / KV;
    int k_start = blockIdx.x * TILE, j = k_start + threadIdx.x;
    size_t C = (size_t)NH * HS, qkv_stride = (size_t)(NH + 2 * KV) * HS, kv_width = (size_t)KV * HS;
    const floatX *k_base = qkv + attention_k_offset(b, g, T, NH, KV, HS);
    attention_load_rows<TILE, HS_MAX + 1>(k_rows, k_base, qkv_stride, k_start, T, HS);
    attention_load_rows<TILE, HS_MAX + 1>(v_rows, k_base + kv_width, qkv_stride, k_start, T, HS);
    const float *k = k_rows[threadIdx.x], *v = v_rows[threadIdx.x];
    float dk[HS_MAX], dv[HS_MAX];
    LLMC_UNROLL
    for (int d = 0; d < HS_MAX; d++) {
        dk[d] = 0.0f;
        dv[d] = 0.0f;
    }
    int num_tiles = ceil_div(T, TILE);
    for (int h = g * group; h < (g + 1) * group; h++) {
        const floatX *q_base = qkv + attention_q_offset(b, h, T, NH, KV, HS);
        const floatX *dout_base = dout + (size_t)b * T * C + (size_t)h * HS;
        const float *lse_row = lse + ((size_t)b * NH + h) * T,
                    *dsum_row = dsum + ((size_t)b * NH + h) * T;
        for (int tile = blockIdx.x; tile < num_tiles; tile++) {
            int q_start = tile * TILE;
            __syncthreads(); // the previous tile (or, first, k_rows and v_rows) is
                             // complete/consumed
            attention_load_rows<TILE, HS_MAX>(q_tile, q_base, qkv_stride, q_start, T, HS);
            attention_load_rows<TILE, HS_MAX>(dout_tile, dout_base, C, q_start, T, HS);
            for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
                int t = q_start + i;
                lse_tile[i] = t < T ? lse_row[t] : 0.0f;
                dsum_tile[i] = t < T ? dsum_row[t] : 0.0f;
            }
            __syncthreads();
            if (j >= T) continue;
            // causal: queries max(j, q_start) .. min(T, q_start + TILE) - 1
            int first = max(j - q_start, 0), end = min(TILE, T - q_start);
            for (int i = first; i < end; i++) {
                float p = expf(attention_dot<HS_MAX>(q_tile[i], k) * scale - lse_tile[i]);
                float ds = p * (attention_dot<HS_MAX>(dout_tile[i], v) - dsum_tile[i]) * scale;
                LLMC_UNROLL
                for (int d = 0; d < HS_MAX; d++) {
                    dv[d] += p * dout_tile[i][d];
                    dk[d] += ds * q_tile[i][d];
                }
            }
        }
    }
    if (j >= T) return;
    floatX *dk_out = dqkv + attention_k_offset(b, g, T, NH, KV, HS) + (size_t)j * qkv_stride;
    LLMC_UNROLL
    for (int d = 0; d < HS_MAX; d++) {
        if (d < HS) {
            dk_out[d] = from_float<floatX>(dk[d]);
            dk_out[kv_width + d] = from_float<floatX>(dv[d]);
        }
    }
}

// Calls launch(std::integral_constant<int, HS_MAX>()) with the smallest instantiated HS_MAX >= HS.
template <typename Launch> static inline void attention_dispatch(int HS, Launch launch) {
    if (HS <= 16) {
        launch(std::integral_constant<int, 16>());
    } else if (HS <= 32) {
        launch(std::integral_constant<int, 32>());
    } else if (HS <= 64) {
        launch(std::integral_constant<int, 64>());
    } else if (HS <= ATTENTION_MAX_HEAD_SIZE) {
        launch(std::integral_constant<int, 128>());
    } else {
        fatal("attention: head size %d (C/NH) exceeds the supported %d", HS,
              ATTENTION_MAX_HEAD_SIZE);
    }
}

// Our kernels (attention_forward_gqa below chooses between them and cuDNN).
// out (B,T,NH*HS) and lse (B,NH,T) are written; qkv (B,T,(NH + 2 KV) HS), the qkv projection's
// output, is read and must be kept for backward together with out and lse.
static inline void attention_forward_flash_gqa(floatX *out, float *lse, const floatX *qkv, int B,
                                               int T, int NH, int KV, int HS, cudaStream_t stream) {
    if (KV <= 0 || NH % KV != 0)
        fatal("attention: %d query heads do not split into %d kv heads", NH, KV);
    float scale = 1.0f / sqrtf((float)HS);
    attention_dispatch(HS, [&](auto hs_max) {
        constexpr int HS_MAX = decltype(hs_max)::value;
        dim3 grid(ceil_div(T, attention_tile(HS_MAX)), NH, B);
        LLMC_LAUNCH(attention_forward_kernel<HS_MAX>, grid, attention_tile(HS_MAX), 0, stream)
        (out, lse, qkv, T, NH, KV, HS, scale);
        cuda_check(cudaGetLastError());
    });
}

// dqkv (B,T,(NH + 2 KV) HS) is overwritten from dout (B,T,NH*HS) and forward's out, lse and qkv.
// dsum: (B,NH,T) floats of scratch (D = rowsum(dout * out)).
static inline void attention_backward_flash_gqa(floatX *dqkv, float *dsum, const floatX *dout,
                                                const floatX *out, const floatX *qkv,
                                                const float *lse, int B, int T, int NH, int KV,
                                                int HS, cudaStream_t stream) {
    if (KV <= 0 || NH % KV != 0)
        fatal("attention: %d query heads do not split into %d kv heads", NH, KV);
    float scale = 1.0f / sqrtf((float)HS);
    attention_dispatch(HS, [&](auto hs_max) {
        constexpr int HS_MAX = decltype(hs_max)::value;
        dim3 grid(ceil_div(T, attention_tile(HS_MAX)), NH, B);
        LLMC_LAUNCH(attention_backward_dq_kernel<HS_MAX>, grid, attention_tile(HS_MAX), 0, stream)
        (dqkv, dsum, dout, out, qkv, lse, T, NH, KV, HS, scale);
        cuda_check(cudaGetLastError());
        dim3 kv_grid(ceil_div(T, attention_tile(HS_MAX)), KV, B);
        LLMC_LAUNCH(attention_backward_dkdv_kernel<HS_MAX>, kv_grid, attention_tile(HS_MAX), 0,
                    stream)
        (dqkv, dout, qkv, lse, dsum, T, NH, KV, HS, scale);
        cuda_check(cudaGetLastError());
    });
}

// GPT-2's multi-head attention (KV == NH, qkv (B,T,3C)).
static inline void attention_forward_flash(floatX *out, float *lse, const floatX *qkv, int B, int T,
                                           int C, int NH, cudaStream_t stream) {
    attention_forward_flash_gqa(out, lse, qkv, B, T, NH, NH, C / NH, stream);
}

static inline void attention_backward_flash(floatX *dqkv, float *dsum, const floatX *dout,
                                            const floatX *out, const floatX *qkv, const float *lse,
                                            int B, int T, int C, int NH, cudaStream_t stream) {
    attention_backward_flash_gqa(dqkv, dsum, dout, out, qkv, lse, B, T, NH, NH, C / NH, stream);
}

// Whether cuDNN's fused attention runs this shape: BF16 builds with USE_CUDNN=1, head sizes it
// supports, and (for now) KV == NH. The glue builds grouped-query graphs too (checked on the
// emulation's stand-in by dev/cuda/attention_gqa.cu), but real cuDNN has not run them on a GPU
// yet (docs/attention.md): until then grouped-query attention runs on our kernels.
static inline int attention_uses_cudnn(int NH, int KV, int HS) {
#ifdef LLMC_USE_CUDNN
    return KV == NH && attention_cudnn_supports(HS);
#else
    (void)NH, (void)KV, (void)HS;
    return 0;
#endif
}

// The trainer's attention: cuDNN's where attention_uses_cudnn, else our kernels. Same arguments,
// layouts and lse either way.
static inline void attention_forward_gqa(floatX *out, float *lse, const floatX *qkv, int B, int T,
                                         int NH, int KV, int HS, cudaStream_t stream) {
#ifdef LLMC_USE_CUDNN
    if (attention_uses_cudnn(NH, KV, HS)) {
        attention_forward_cudnn(out, lse, qkv, B, T, NH, KV, HS, stream);
        return;
    }
#endif
    attention_forward_flash_gqa(out, lse, qkv, B, T, NH, KV, HS, stream);
}

static inline void attention_backward_gqa(floatX *dqkv, float *dsum, const floatX *dout,
                                          const floatX *out, const floatX *qkv, const float *lse,
                                          int B, int T, int NH, int KV, int HS,
                                          cudaStream_t stream) {
#ifdef LLMC_USE_CUDNN
    if (attention_uses_cudnn(NH, KV, HS)) {
        attention_backward_cudnn(dqkv, dout, out, qkv, lse, B, T, NH, KV, HS, stream);
        return;
    }
#endif
    attention_backward_flash_gqa(dqkv, dsum, dout, out, qkv, lse, B, T, NH, KV, HS, stream);
}

// GPT-2 (KV == NH, C = NH * HS).
static inline void attention_forward(floatX *out, float *lse, const floatX *qkv, int B, int T,
                                     int C, int NH, cudaStream_t stream) {
    attention_forward_gqa(out, lse, qkv, B, T, NH, NH, C / NH, stream);
}

static inline void attention_backward(floatX *dqkv, float *dsum, const floatX *dout,
                                      const floatX *out, const floatX *qkv, const float *lse, int B,
                                      int T, int C, int NH, cudaStream_t stream) {
    attention_backward_gqa(dqkv, dsum, dout, out, qkv, lse, B, T, NH, NH, C / NH, stream);
}

// Which implementation runs for this shape (the trainer prints it).
static inline const char *attention_implementation_gqa(int NH, int KV, int HS) {
    return attention_uses_cudnn(NH, KV, HS) ? "cuDNN fused flash attention"
                                            : "llmc flash attention kernels";
}

// GPT-2 (KV == NH).
static inline const char *attention_implementation(int HS) {
    return attention_implementation_gqa(1, 1, HS);
}

// Device memory the attention needs beyond its tensors: cuDNN's workspace for this shape (its
// graphs are built here, so an unsupported shape fails at start-up), 0 for our kernels.
static inline size_t attention_workspace_bytes_gqa(int B, int T, int NH, int KV, int HS) {
#ifdef LLMC_USE_CUDNN
    if (attention_uses_cudnn(NH, KV, HS)) return attention_cudnn_workspace_bytes(B, T, NH, KV, HS);
#endif
    (void)B, (void)T, (void)NH, (void)KV, (void)HS;
    return 0;
}

static inline size_t attention_workspace_bytes(int B, int T, int C, int NH) {
    return attention_workspace_bytes_gqa(B, T, NH, NH, C / NH);
}

static inline void attention_free(void) {
#ifdef LLMC_USE_CUDNN
    attention_cudnn_free();
#endif
}

#endif // LLMC_ATTENTION_CUH
