// Matrix products of the CUDA trainer, through cuBLASLt, in cuBLAS's column-major convention:
// D (m,n) (+)= op(A) (m,k) * op(B) (k,n), optionally batched with strides, with fused epilogues
// (bias add; GELU backward, DGELU: the product times GELU'(the stored pre-activation)). The
// forward's GELU is our own kernel, never cuBLASLt's epilogue: `-r 1` recomputes it with the same
// kernel on the same stored input, so both modes get the same bits (docs/gpu_performance.md,
// "GELU and -r 1"). The weight gradient accumulates in place (beta = 1). The bias gradient is our
// own deterministic column-sum kernel.
// With LLMC_CUDA_EMU the same products run on the CPU through llmc/matmul.h's sgemm, on floats
// converted from floatX, with the same layouts and epilogues and outputs rounded to floatX.
// Accumulation is fp32 in both builds (CUBLAS_COMPUTE_32F: no TF32, so FP32 builds stay tight).
// matmul_gemm_typed also takes fp32 operands in BF16 builds (Muon's Newton-Schulz, llmc/muon.cuh),
// so that those products share the algorithm cache below.
#ifndef LLMC_MATMUL_CUH
#define LLMC_MATMUL_CUH

#include "cuda_common.cuh"
#include "gelu.cuh"
#include "layernorm.cuh" // reduce_num_chunks

#ifdef LLMC_CUDA_EMU
// g++ 12 in C++ mode warns inside its own AVX-512 intrinsics (_mm512_undefined_* "used
// uninitialized", a known false positive); the same header compiles cleanly as C.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "matmul.h"
#pragma GCC diagnostic pop
#else
#include <cublasLt.h>
#endif

#ifndef LLMC_CUDA_EMU
static cublasLtHandle_t cublaslt_handle;
static void *cublaslt_workspace = NULL;
static const size_t cublaslt_workspace_size = 32 << 20;

static inline void cublas_check_at(cublasStatus_t status, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fatal("cuBLAS error at %s:%d: status %d", file, line, (int)status);
    }
}
#define cublas_check(call) cublas_check_at((call), __FILE__, __LINE__)
#endif

// The element type of a product's operands and result: the model's floatX, or fp32 in either
// build (Muon's Newton-Schulz iterations). In FP32 builds both are the same type, and share
// entries.
typedef enum { MATMUL_DATA_FP32, MATMUL_DATA_BF16 } MatmulDataType;
#ifdef ENABLE_FP32
#define MATMUL_DATA_FLOATX MATMUL_DATA_FP32
#else
#define MATMUL_DATA_FLOATX MATMUL_DATA_BF16
#endif

static inline size_t matmul_data_size(MatmulDataType type) {
    return type == MATMUL_DATA_FP32 ? sizeof(float) : sizeof(floatX);
}

// The cache of cuBLASLt's algorithm choices, by everything the choice depends on. A training step
// repeats the same few dozen shapes, but sampling adds new ones as its context grows (one per
// length without cuDNN), so the cache is bounded and evicts the least recently used entry; entries
// chosen by timing (--gemm-autotune 1) go last, as they cost the most to redo. The emulation has
// one algorithm, but keeps the same cache so that its bookkeeping runs in CI.
typedef struct {
    int data_type, m, n, k, trans_a, trans_b, batch, accumulate, epilogue;
    size_t stride_a, stride_b, stride_d;
    uint32_t alignments[3];
    uint32_t aux_alignment; // DGELU's input: the heuristic reads its pointer from the descriptor
} MatmulAlgoKey;

#ifdef LLMC_CUDA_EMU
typedef struct {
    int index;
} MatmulAlgo;
#else
typedef cublasLtMatmulAlgo_t MatmulAlgo;
#endif

typedef struct {
    MatmulAlgoKey key;
    MatmulAlgo algo;
    unsigned long long last_use; // the cache's clock at the last lookup that found it
    int tuned;                   // chosen by timing
    int refused;                 // cuBLASLt had no algorithm (DGELU only: the caller falls back)
} MatmulAlgoEntry;

#define MATMUL_ALGO_CACHE_CAPACITY 256
// Autotuning times up to this many of the heuristic's candidates, for products of at least
// matmul_autotune_min_macs multiply-adds (below ~1e9, a product lasts microseconds on a modern GPU
// and its launch, not the algorithm, sets the time).
#define MATMUL_AUTOTUNE_CANDIDATES 8

typedef struct {
    MatmulAlgoEntry entries[MATMUL_ALGO_CACHE_CAPACITY];
    int count;
    unsigned long long clock, hits, misses, evictions;
    int autotune; // --gemm-autotune
    unsigned long long autotune_min_macs;
    unsigned long long tuned_shapes;  // shapes whose candidates were timed
    unsigned long long tuned_changed; // ... where the fastest was not the heuristic's first
} MatmulAlgoCache;

static MatmulAlgoCache matmul_algo_cache = {{}, 0, 0, 0, 0, 0, 0, 1ull << 30, 0, 0};

// --gemm-autotune 1: time the top heuristics once per shape and keep the fastest. Off by default:
// the fastest can differ between runs (timing noise), and with it the rounding of the results.
static inline void matmul_set_autotune(int on) {
    matmul_algo_cache.autotune = on;
}

static inline MatmulAlgoEntry *matmul_algo_cache_find(const MatmulAlgoKey *key) {
    MatmulAlgoCache *cache = &matmul_algo_cache;
    for (int i = 0; i < cache->count; i++) {
        if (memcmp(&cache->entries[i].key, key, sizeof(*key)) == 0) {
            cache->entries[i].last_use = ++cache->clock;
            cache->hits++;
            return &cache->entries[i];
        }
    }
    cache->misses++;
    return NULL;
}

// Stores a choice; when full, replaces the least recently used untuned entry (tuned ones only
// once every entry is tuned).
static inline MatmulAlgoEntry *matmul_algo_cache_add(const MatmulAlgoKey *key,
                                                     const MatmulAlgo *algo, int tuned) {
    MatmulAlgoCache *cache = &matmul_algo_cache;
    int slot = cache->count;
    if (slot == MATMUL_ALGO_CACHE_CAPACITY) {
        slot = -1;
        for (int pass = 0; pass < 2 && slot < 0; pass++) {
            for (int i = 0; i < cache->count; i++) {
                if (pass == 0 && cache->entries[i].tuned) continue;
                if (slot < 0 || cache->entries[i].last_use < cache->entries[slot].last_use)
                    slot = i;
            }
        }
        cache->evictions++;
    } else {
        cache->count++;
    }
    MatmulAlgoEntry *entry = &cache->entries[slot];
    entry->key = *key;
    entry->algo = *algo;
    entry->last_use = ++cache->clock;
    entry->tuned = tuned;
    entry->refused = 0;
    return entry;
}

// One line on the cache for the end of a run.
static inline void matmul_algo_cache_report(void) {
    const MatmulAlgoCache *cache = &matmul_algo_cache;
    printf("matmul algorithm cache: %d of %d shapes held, %llu hits, %llu misses, %llu evictions",
           cache->count, MATMUL_ALGO_CACHE_CAPACITY, cache->hits, cache->misses, cache->evictions);
    if (cache->autotune) {
#ifdef LLMC_CUDA_EMU
        printf(" | autotune: %llu shapes (emulation: one algorithm, nothing timed)",
               cache->tuned_shapes);
#else
        printf(" | autotune: %llu shapes timed, %llu faster than the heuristic's first choice",
               cache->tuned_shapes, cache->tuned_changed);
#endif
    }
    printf("\n");
}

// The key of a product: its shape, layout, epilogue and the alignment each operand really has
// (the heuristic assumes 256 bytes unless told otherwise; per-layer slices and batch strides of
// odd shapes such as T=37 have less).
static inline MatmulAlgoKey matmul_algo_key(MatmulDataType data_type, const void *a, const void *b,
                                            const void *d, const void *aux, int epilogue, int m,
                                            int n, int k, int trans_a, int trans_b, int batch,
                                            size_t stride_a, size_t stride_b, size_t stride_d,
                                            int accumulate) {
    MatmulAlgoKey key;
    memset(&key, 0, sizeof(key)); // padding bytes too: keys are compared with memcmp
    key.data_type = (int)data_type;
    key.m = m, key.n = n, key.k = k, key.trans_a = trans_a, key.trans_b = trans_b;
    key.batch = batch, key.accumulate = accumulate, key.epilogue = epilogue;
    key.stride_a = stride_a, key.stride_b = stride_b, key.stride_d = stride_d;
    const void *operands[3] = {a, b, d};
    size_t strides[3] = {stride_a, stride_b, stride_d};
    for (int i = 0; i < 3; i++) {
        uint64_t bits = (uint64_t)(uintptr_t)operands[i] | 256u;
        if (batch > 1) bits |= (uint64_t)strides[i] * matmul_data_size(data_type);
        key.alignments[i] = (uint32_t)(bits & (~bits + 1)); // lowest set bit
    }
    if (aux != NULL) {
        uint64_t bits = (uint64_t)(uintptr_t)aux | 256u;
        key.aux_alignment = (uint32_t)(bits & (~bits + 1));
    }
    return key;
}

static inline void matmul_init(void) {
#ifndef LLMC_CUDA_EMU
    cublas_check(cublasLtCreate(&cublaslt_handle));
    cublaslt_workspace = cuda_malloc_check(cublaslt_workspace_size, "cuBLASLt workspace");
#endif
}

static inline void matmul_free(void) {
#ifndef LLMC_CUDA_EMU
    cuda_check(cudaFree(cublaslt_workspace));
    cublas_check(cublasLtDestroy(cublaslt_handle));
#endif
}

typedef enum { EPILOGUE_NONE, EPILOGUE_BIAS, EPILOGUE_DGELU } MatmulEpilogue;

// What cuBLASLt documents for the GELU input of its DGELU epilogue (EPILOGUE_AUX_LD "divisible by
// 8 and no less than the number of rows" of D); 16-byte alignment of the pointer is our own
// margin (the vector loads of its kernels). The emulation refuses what these refuse, so the
// fallback (the product, then gelu_backward_inplace) runs wherever it would on a GPU.
static inline int matmul_dgelu_aux_ok(const void *aux, int m) {
    return m % 8 == 0 && (uintptr_t)aux % 16 == 0;
}

#ifdef LLMC_CUDA_EMU
// The emulation computes in fp32: an operand of n elements of data_type as floats.
static inline void matmul_emu_load(float *out, const void *in, MatmulDataType data_type, size_t n) {
    if (data_type == MATMUL_DATA_FP32) {
        memcpy(out, in, n * sizeof(float));
    } else {
        floatX_to_floats(out, (const floatX *)in, n);
    }
}
#else
// A product's operands for timing: element counts cover every batch.
typedef struct {
    const void *a, *b;
    void *d;
    size_t a_bytes, b_bytes, d_bytes;
    int accumulate;
} MatmulOperands;

static inline int ranges_overlap(const void *p, size_t p_bytes, const void *q, size_t q_bytes) {
    uintptr_t p0 = (uintptr_t)p, q0 = (uintptr_t)q;
    return p0 < q0 + q_bytes && q0 < p0 + p_bytes;
}

// --gemm-autotune: times each of the heuristic's candidates on the real inputs (one warm-up run,
// then the mean of three) and returns the index of the fastest. The timing runs write into D,
// which the real run then overwrites; when the product accumulates into D (or D overlaps an
// input), into a zeroed scratch copy instead, so that no result changes. Without memory for the
// scratch, or inside a stream capture (no synchronisation allowed), it keeps the first.
static inline int matmul_autotune_pick(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t layout_a,
                                       cublasLtMatrixLayout_t layout_b,
                                       cublasLtMatrixLayout_t layout_d,
                                       const cublasLtMatmulHeuristicResult_t *candidates, int count,
                                       const MatmulOperands *ops, cudaStream_t stream) {
    if (count < 2) return 0;
    cudaStreamCaptureStatus capture;
    cuda_check(cudaStreamIsCapturing(stream, &capture));
    if (capture != cudaStreamCaptureStatusNone) return 0;
    size_t d_bytes = ops->d_bytes;
    void *target = ops->d, *scratch = NULL;
    if (ops->accumulate || ranges_overlap(ops->d, d_bytes, ops->a, ops->a_bytes) ||
        ranges_overlap(ops->d, d_bytes, ops->b, ops->b_bytes)) {
        if (cudaMalloc(&scratch, d_bytes) != cudaSuccess) {
            (void)cudaGetLastError(); // out of memory only skips the timing
            return 0;
        }
        cuda_check(cudaMemsetAsync(scratch, 0, d_bytes, stream));
        target = scratch;
    }
    cudaEvent_t start, stop;
    cuda_check(cudaEventCreate(&start));
    cuda_check(cudaEventCreate(&stop));
    const float alpha = 1.0f, beta = ops->accumulate ? 1.0f : 0.0f;
    const int repeats = 3;
    int best = 0;
    float best_ms = -1.0f;
    for (int i = 0; i < count; i++) {
        if (candidates[i].state != CUBLAS_STATUS_SUCCESS) continue;
        cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
        cuda_check(cudaEventRecord(start, stream));
        for (int r = 0; r <= repeats && status == CUBLAS_STATUS_SUCCESS; r++) {
            if (r == 1) cuda_check(cudaEventRecord(start, stream)); // after the warm-up run
            status =
                cublasLtMatmul(cublaslt_handle, desc, &alpha, ops->a, layout_a, ops->b, layout_b,
                               &beta, target, layout_d, target, layout_d, &candidates[i].algo,
                               cublaslt_workspace, cublaslt_workspace_size, stream);
        }
        cuda_check(cudaEventRecord(stop, stream));
        cuda_check(cudaEventSynchronize(stop));
        if (status != CUBLAS_STATUS_SUCCESS) continue; // a candidate that refuses is skipped
        float ms = 0.0f;
        cuda_check(cudaEventElapsedTime(&ms, start, stop));
        if (best_ms < 0.0f || ms < best_ms) best_ms = ms, best = i;
    }
    cuda_check(cudaEventDestroy(start));
    cuda_check(cudaEventDestroy(stop));
    if (scratch != NULL) cuda_check(cudaFree(scratch));
    return best;
}
#endif

// D (m,n, leading dimension m) (+)= op(A) op(B). A is (m,k) stored with leading dimension m, or
// with trans_a (k,m) with leading dimension k; likewise B is (k,n) ld k, or with trans_b (n,k) ld
// n. EPILOGUE_BIAS: bias (m) is added to every column. EPILOGUE_DGELU: each element of the fp32
// product is multiplied by GELU'(aux) before D's rounding, aux (m,n, ld m) being the GELU's input
// (the pre-activation the forward stored). batch > 1 repeats over matrices at the given element
// strides. Returns 1, or 0 (nothing done) when cuBLASLt has no DGELU algorithm for these operands
// (matmul_dgelu_aux_ok): the caller then runs the product and the GELU backward apart.
// data_type: that of every operand, bias and aux included (matmul_gemm: floatX).
static inline int matmul_gemm_typed(void *d, const void *a, const void *b, const void *bias,
                                    const void *aux, MatmulDataType data_type,
                                    MatmulEpilogue epilogue, int m, int n, int k, int trans_a,
                                    int trans_b, int batch, size_t stride_a, size_t stride_b,
                                    size_t stride_d, int accumulate, cudaStream_t stream) {
    if (data_type != MATMUL_DATA_FP32 && data_type != MATMUL_DATA_FLOATX) {
        fatal("internal: matmul data type %d in a build whose floatX is another", (int)data_type);
    }
    if (epilogue != EPILOGUE_NONE && (accumulate || batch != 1)) {
        fatal("internal: matmul epilogue on an accumulated or batched product");
    }
    if ((epilogue == EPILOGUE_BIAS) != (bias != NULL) ||
        (epilogue == EPILOGUE_DGELU) != (aux != NULL)) {
        fatal("internal: matmul epilogue %d with bias %p, aux %p", (int)epilogue,
              (const void *)bias, (const void *)aux);
    }
    if (epilogue == EPILOGUE_DGELU && !matmul_dgelu_aux_ok(aux, m)) return 0;
    MatmulAlgoKey key = matmul_algo_key(data_type, a, b, d, aux, (int)epilogue, m, n, k, trans_a,
                                        trans_b, batch, stride_a, stride_b, stride_d, accumulate);
    const size_t elem_size = matmul_data_size(data_type);
    MatmulAlgoEntry *cached = matmul_algo_cache_find(&key);
    if (cached != NULL && cached->refused) return 0;
    int tune = cached == NULL && matmul_algo_cache.autotune &&
               (unsigned long long)m * n * k * batch >= matmul_algo_cache.autotune_min_macs;
#ifdef LLMC_CUDA_EMU
    (void)stream;
    if (cached == NULL) {
        MatmulAlgo only = {0};
        matmul_algo_cache.tuned_shapes += tune;
        matmul_algo_cache_add(&key, &only, tune);
    }
    // Column-major D (m,n) is row-major D^T (n,m) = op(B)^T op(A)^T: sgemm's A is op(B)^T and its
    // B is op(A)^T, both described by strides.
    size_t a_elems = (size_t)m * k, b_elems = (size_t)k * n, d_elems = (size_t)m * n;
    float *af = (float *)malloc_check(a_elems * sizeof(float), "emulated matmul A");
    float *bf = (float *)malloc_check(b_elems * sizeof(float), "emulated matmul B");
    float *df = (float *)malloc_check(d_elems * sizeof(float), "emulated matmul D");
    size_t lda = trans_a ? (size_t)k : (size_t)m, ldb = trans_b ? (size_t)n : (size_t)k;
    for (int batch_index = 0; batch_index < batch; batch_index++) {
        matmul_emu_load(af, (const char *)a + batch_index * stride_a * elem_size, data_type,
                        a_elems);
        matmul_emu_load(bf, (const char *)b + batch_index * stride_b * elem_size, data_type,
                        b_elems);
        char *dx = (char *)d + batch_index * stride_d * elem_size;
        if (accumulate) matmul_emu_load(df, dx, data_type, d_elems);
        // sgemm A(j, kk) = op(B)(kk, j); sgemm B(kk, i) = op(A)(i, kk)
        size_t sa_row = trans_b ? 1 : ldb, sa_col = trans_b ? ldb : 1;
        size_t sb_row = trans_a ? 1 : lda, sb_col = trans_a ? lda : 1;
        sgemm(df, (size_t)m, bf, sa_row, sa_col, af, sb_row, sb_col, n, m, k, accumulate);
        if (epilogue == EPILOGUE_BIAS) {
            float *biasf = (float *)malloc_check((size_t)m * sizeof(float), "emulated bias");
            matmul_emu_load(biasf, bias, data_type, (size_t)m);
            for (int j = 0; j < n; j++) {
                for (int i = 0; i < m; i++) df[(size_t)j * m + i] += biasf[i];
            }
            free(biasf);
        }
        if (epilogue == EPILOGUE_DGELU) { // fp32 product times GELU'(aux), rounded once below
            float *auxf = (float *)malloc_check(d_elems * sizeof(float), "emulated DGELU input");
            matmul_emu_load(auxf, aux, data_type, d_elems);
            for (size_t i = 0; i < d_elems; i++) df[i] *= gelu_derivative(auxf[i]);
            free(auxf);
        }
        if (data_type == MATMUL_DATA_FP32) {
            memcpy(dx, df, d_elems * sizeof(float));
        } else {
            floats_to_floatX((floatX *)dx, df, d_elems);
        }
    }
    free(af);
    free(bf);
    free(df);
    return 1;
#else
    const cudaDataType_t lt_type = data_type == MATMUL_DATA_FP32 ? CUDA_R_32F : CUDA_R_16BF;
    cublasLtMatmulDesc_t desc;
    cublas_check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublas_check(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
    cublas_check(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
    cublasLtEpilogue_t lt_epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    if (epilogue == EPILOGUE_BIAS) lt_epilogue = CUBLASLT_EPILOGUE_BIAS;
    if (epilogue == EPILOGUE_DGELU) lt_epilogue = CUBLASLT_EPILOGUE_DGELU;
    cublas_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &lt_epilogue,
                                                sizeof(lt_epilogue)));
    if (epilogue == EPILOGUE_BIAS) {
        cublas_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &lt_type, sizeof(lt_type)));
        cublas_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                    sizeof(bias)));
    }
    if (epilogue == EPILOGUE_DGELU) {
        // aux: D's shape and type (the default aux type for non-fp8 products), ld = D's;
        // set before the heuristic, which reads the pointer's alignment from the descriptor
        int64_t aux_ld = m;
        cublas_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                    &aux, sizeof(aux)));
        cublas_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                    &aux_ld, sizeof(aux_ld)));
    }
    cublasLtMatrixLayout_t layout_a, layout_b, layout_d;
    cublas_check(cublasLtMatrixLayoutCreate(&layout_a, lt_type, trans_a ? k : m, trans_a ? m : k,
                                            trans_a ? k : m));
    cublas_check(cublasLtMatrixLayoutCreate(&layout_b, lt_type, trans_b ? n : k, trans_b ? k : n,
                                            trans_b ? n : k));
    cublas_check(cublasLtMatrixLayoutCreate(&layout_d, lt_type, m, n, m));
    if (batch > 1) {
        int32_t count = batch;
        int64_t strides[3] = {(int64_t)stride_a, (int64_t)stride_b, (int64_t)stride_d};
        cublasLtMatrixLayout_t layouts[3] = {layout_a, layout_b, layout_d};
        for (int i = 0; i < 3; i++) {
            cublas_check(cublasLtMatrixLayoutSetAttribute(
                layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
            cublas_check(cublasLtMatrixLayoutSetAttribute(
                layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i],
                sizeof(strides[i])));
        }
    }
    // The heuristic query costs tens of microseconds; a training step repeats the same few dozen
    // shapes, so its answer is kept per shape (an unchanging choice also keeps runs repeatable).
    const cublasLtMatmulAlgo_t *algo = cached != NULL ? &cached->algo : NULL;
    cublasLtMatmulHeuristicResult_t heuristics[MATMUL_AUTOTUNE_CANDIDATES];
    if (algo == NULL) {
        cublasLtMatmulPreference_t preference;
        cublas_check(cublasLtMatmulPreferenceCreate(&preference));
        cublas_check(cublasLtMatmulPreferenceSetAttribute(
            preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &cublaslt_workspace_size,
            sizeof(cublaslt_workspace_size)));
        const cublasLtMatmulPreferenceAttributes_t alignment_attributes[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES};
        for (int i = 0; i < 4; i++) {
            uint32_t alignment = key.alignments[i < 3 ? i : 2]; // C is D
            cublas_check(cublasLtMatmulPreferenceSetAttribute(preference, alignment_attributes[i],
                                                              &alignment, sizeof(alignment)));
        }
        int found = 0;
        cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
            cublaslt_handle, desc, layout_a, layout_b, layout_d, layout_d, preference,
            tune ? MATMUL_AUTOTUNE_CANDIDATES : 1, heuristics, &found);
        cublas_check(cublasLtMatmulPreferenceDestroy(preference));
        // "no algorithm" comes back as NOT_SUPPORTED or as found = 0
        if (status == CUBLAS_STATUS_NOT_SUPPORTED)
            found = 0;
        else
            cublas_check(status);
        if (found == 0 && epilogue == EPILOGUE_DGELU) {
            cublas_check(cublasLtMatrixLayoutDestroy(layout_a));
            cublas_check(cublasLtMatrixLayoutDestroy(layout_b));
            cublas_check(cublasLtMatrixLayoutDestroy(layout_d));
            cublas_check(cublasLtMatmulDescDestroy(desc));
            MatmulAlgo none;
            memset(&none, 0, sizeof(none));
            matmul_algo_cache_add(&key, &none, 0)->refused = 1; // asked once per shape
            return 0; // the caller falls back to the product and gelu_backward_inplace
        }
        if (found == 0) {
            fatal("cuBLASLt has no algorithm for m=%d n=%d k=%d trans=%d%d batch=%d epilogue=%d", m,
                  n, k, trans_a, trans_b, batch, (int)epilogue);
        }
        int pick = 0;
        if (tune) {
            size_t a_elems = (size_t)(batch - 1) * stride_a + (size_t)m * k;
            size_t b_elems = (size_t)(batch - 1) * stride_b + (size_t)k * n;
            size_t d_elems = (size_t)(batch - 1) * stride_d + (size_t)m * n;
            MatmulOperands operands = {
                a, b, d, a_elems * elem_size, b_elems * elem_size, d_elems * elem_size, accumulate};
            pick = matmul_autotune_pick(desc, layout_a, layout_b, layout_d, heuristics, found,
                                        &operands, stream);
            matmul_algo_cache.tuned_shapes++;
            matmul_algo_cache.tuned_changed += pick != 0;
        }
        matmul_algo_cache_add(&key, &heuristics[pick].algo, tune);
        algo = &heuristics[pick].algo;
    }
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublas_check(cublasLtMatmul(cublaslt_handle, desc, &alpha, a, layout_a, b, layout_b, &beta, d,
                                layout_d, d, layout_d, algo, cublaslt_workspace,
                                cublaslt_workspace_size, stream));
    cublas_check(cublasLtMatrixLayoutDestroy(layout_a));
    cublas_check(cublasLtMatrixLayoutDestroy(layout_b));
    cublas_check(cublasLtMatrixLayoutDestroy(layout_d));
    cublas_check(cublasLtMatmulDescDestroy(desc));
    return 1;
#endif
}

// The model's products: operands, bias and aux in floatX.
static inline int matmul_gemm(floatX *d, const floatX *a, const floatX *b, const floatX *bias,
                              const floatX *aux, MatmulEpilogue epilogue, int m, int n, int k,
                              int trans_a, int trans_b, int batch, size_t stride_a, size_t stride_b,
                              size_t stride_d, int accumulate, cudaStream_t stream) {
    return matmul_gemm_typed(d, a, b, bias, aux, MATMUL_DATA_FLOATX, epilogue, m, n, k, trans_a,
                             trans_b, batch, stride_a, stride_b, stride_d, accumulate, stream);
}

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias; with pre_gelu != NULL, pre_gelu gets that and
// out its GELU. bias may be NULL (no epilogue then; GELU needs a bias). The GELU is our kernel on
// the stored (floatX) pre-activation, not cuBLASLt's GELU epilogue on the fp32 accumulator, which
// `-r 1`'s recompute could not reproduce bit for bit (NVIDIA's formula, on the unrounded value).
// It costs one more read and write of (N,OC) per layer: ~0.8 ms a step for d12 at B=16
// (docs/gpu_performance.md, "GELU and -r 1").
static inline void matmul_forward(floatX *out, floatX *pre_gelu, const floatX *inp,
                                  const floatX *weight, const floatX *bias, int N, int C, int OC,
                                  cudaStream_t stream) {
    if (pre_gelu != NULL) {
        if (bias == NULL) fatal("internal: matmul_forward with GELU needs a bias");
        matmul_gemm(pre_gelu, weight, inp, bias, NULL, EPILOGUE_BIAS, OC, N, C, 1, 0, 1, 0, 0, 0, 0,
                    stream);
        gelu_forward(out, pre_gelu, (size_t)N * OC, stream);
        return;
    }
    matmul_gemm(out, weight, inp, bias, NULL, bias == NULL ? EPILOGUE_NONE : EPILOGUE_BIAS, OC, N,
                C, 1, 0, 1, 0, 0, 0, 0, stream);
}

// partials[chunk][o] = sum of dout[n][o] over the chunk's rows. Block (x, chunk) owns 32 column
// units (a unit: x128::size columns when packed, else 1) and the chunk's rows; its warps split the
// rows (warp w takes every BIAS_BACKWARD_WARPS-th row from w), lane l sums unit l in row order with
// one 16-byte load per row, then the warps' sums are added in warp order through shared memory:
// deterministic. At OC = 768, 3 x 64 blocks of 16 warps (before: 3 x 64 blocks of 8 warps with one
// thread per column walking up to 256 rows one element at a time).
#define BIAS_BACKWARD_WARPS 16
__global__ void bias_backward_partials_kernel(float *partials, const floatX *dout, int N, int OC,
                                              int num_chunks, int packed) {
    __shared__ float warp_sums[BIAS_BACKWARD_WARPS][32 * x128::size];
    const int width = packed ? x128::size : 1;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int o = (blockIdx.x * 32 + lane) * width;
    int chunk = blockIdx.y;
    int rows_per_chunk = ceil_div(N, num_chunks);
    int start = chunk * rows_per_chunk, end = min(N, start + rows_per_chunk);
    // sum[] is indexed only by unrolled loops (compile-time indices): it stays in registers
    float sum[x128::size];
    LLMC_UNROLL
    for (int k = 0; k < x128::size; k++) sum[k] = 0.0f;
    if (o < OC) {
        for (int n = start + warp; n < end; n += BIAS_BACKWARD_WARPS) {
            if (packed) {
                // a plain load: the weight gradient GEMM reads dout too
                x128 dy = load128(dout + (size_t)n * OC + o);
                LLMC_UNROLL
                for (int k = 0; k < x128::size; k++) sum[k] += to_float(dy[k]);
            } else {
                sum[0] += to_float(dout[(size_t)n * OC + o]);
            }
        }
    }
    LLMC_UNROLL
    for (int k = 0; k < x128::size; k++) {
        if (k < width) warp_sums[warp][lane * width + k] = sum[k];
    }
    __syncthreads();
    for (int j = threadIdx.x; j < 32 * width; j += blockDim.x) {
        int column = blockIdx.x * 32 * width + j;
        if (column >= OC) continue;
        float total = 0.0f;
        for (int w = 0; w < BIAS_BACKWARD_WARPS; w++) total += warp_sums[w][j];
        partials[(size_t)chunk * OC + column] = total;
    }
}

__global__ void bias_backward_finalize_kernel(floatX *dbias, const float *partials, int OC,
                                              int num_chunks) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    float sum = 0.0f;
    for (int k = 0; k < num_chunks; k++) sum += partials[(size_t)k * OC + o];
    dbias[o] = from_float<floatX>(to_float(dbias[o]) + sum);
}

// dinp (N,C) = dout (N,OC) @ weight (written, not accumulated: it is a fresh activation
// gradient); dweight (OC,C) += dout^T @ inp; dbias (OC) += column sums of dout (if not NULL).
// With gelu_inp (N,C) != NULL, inp was GELU(gelu_inp) and dinp is the gradient of gelu_inp
// instead: the product times GELU'(gelu_inp), through cuBLASLt's DGELU epilogue (no
// gelu_backward kernel; -DLLMC_UNFUSED_GELU or a refusal: the product, then that kernel).
// scratch: REDUCE_MAX_CHUNKS * OC floats.
static inline void matmul_backward(floatX *dinp, floatX *dweight, floatX *dbias, float *scratch,
                                   const floatX *dout, const floatX *inp, const floatX *weight,
                                   const floatX *gelu_inp, int N, int C, int OC,
                                   cudaStream_t stream) {
    int fused = 0;
#ifndef LLMC_UNFUSED_GELU
    if (gelu_inp != NULL) {
        fused = matmul_gemm(dinp, weight, dout, NULL, gelu_inp, EPILOGUE_DGELU, C, N, OC, 0, 0, 1,
                            0, 0, 0, 0, stream);
    }
#endif
    if (!fused) {
        matmul_gemm(dinp, weight, dout, NULL, NULL, EPILOGUE_NONE, C, N, OC, 0, 0, 1, 0, 0, 0, 0,
                    stream);
        if (gelu_inp != NULL) gelu_backward_inplace(dinp, gelu_inp, (size_t)N * C, stream);
    }
    matmul_gemm(dweight, inp, dout, NULL, NULL, EPILOGUE_NONE, C, OC, N, 0, 1, 1, 0, 0, 0, 1,
                stream);
    if (dbias != NULL) {
        const int block = 256;
        int num_chunks = reduce_num_chunks(N);
        int packed = OC % x128::size == 0 && is_aligned16(dout);
        dim3 grid(ceil_div(OC, 32 * (packed ? x128::size : 1)), num_chunks);
        LLMC_LAUNCH(bias_backward_partials_kernel, grid, 32 * BIAS_BACKWARD_WARPS, 0, stream)
        (scratch, dout, N, OC, num_chunks, packed);
        cuda_check(cudaGetLastError());
        LLMC_LAUNCH(bias_backward_finalize_kernel, ceil_div(OC, block), block, 0, stream)
        (dbias, scratch, OC, num_chunks);
        cuda_check(cudaGetLastError());
    }
}

#endif // LLMC_MATMUL_CUH
