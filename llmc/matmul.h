// Single-precision matrix multiply for the CPU trainer: C (+)= A * B.
//
// matmul_reference is the plain triple loop: the definition every other version must match.
// sgemm is the fast one, in the classic Goto/BLIS shape: A and B are copied ("packed") into
// panels that a register-blocked micro-kernel streams through, so every loaded value feeds many
// fused multiply-adds. The micro-kernel is picked at run time: AVX-512 (6x64 tile), AVX2 + FMA
// (6x16 tile), or a portable C one. OpenMP splits C into tiles; each element of C is computed by
// one thread with the same order of additions whatever the thread count, so results do not
// depend on the number of threads.
//
// Matrices are described by strides, so one routine covers the three products of a linear
// layer (out = x W^T, dx = dout W, dW = dout^T x) without transposing anything:
// A(i, k) = a[i * a_row + k * a_col], B(k, j) = b[k * b_row + j * b_col], C(i, j) = c[i * ldc + j].
#ifndef LLMC_MATMUL_H
#define LLMC_MATMUL_H

#include <stddef.h>
#include <string.h>
#ifdef __x86_64__
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "utils.h"

// C (M,N) = A (M,K) * B (K,N), plus C's old value if accumulate: the documented reference.
static inline void matmul_reference(float *c, size_t ldc, const float *a, size_t a_row,
                                    size_t a_col, const float *b, size_t b_row, size_t b_col, int M,
                                    int N, int K, int accumulate) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float sum = accumulate ? c[(size_t)i * ldc + j] : 0.0f;
            for (int k = 0; k < K; k++) {
                sum += a[(size_t)i * a_row + (size_t)k * a_col] *
                       b[(size_t)k * b_row + (size_t)j * b_col];
            }
            c[(size_t)i * ldc + j] = sum;
        }
    }
}

// Blocking. MR x NR is the micro-kernel's tile of C held in registers; KC is the depth of one
// packed panel; a packed A block is MC x KC and a packed B block KC x (at most) NC, both in L2.
// A deep KC means C is read and written fewer times, which matters for the classifier's weight
// gradient (C is 50304 x C there); KC = 384 measured best of 128/192/256/384 on our shapes.
// -DSGEMM_KC=... (and _MC, _NC) override them for tuning runs; results do not change with them.
#define SGEMM_MR 6
#ifndef SGEMM_KC
#define SGEMM_KC 384
#endif
#ifndef SGEMM_MC
#define SGEMM_MC 96
#endif
#ifndef SGEMM_NC
#define SGEMM_NC 512
#endif
#define SGEMM_MAX_NR 64

typedef void (*sgemm_kernel_fn)(int kc, const float *a_panel, const float *b_panel, float *c,
                                size_t ldc, int accumulate);

// Portable micro-kernel (any NR): c (MR x nr) (+)= a_panel (MR x kc) * b_panel (kc x nr).
#define SGEMM_PORTABLE_NR 16
static inline void sgemm_kernel_portable(int kc, const float *a_panel, const float *b_panel,
                                         float *c, size_t ldc, int accumulate) {
    float acc[SGEMM_MR][SGEMM_PORTABLE_NR];
    for (int i = 0; i < SGEMM_MR; i++) {
        for (int j = 0; j < SGEMM_PORTABLE_NR; j++) {
            acc[i][j] = accumulate ? c[(size_t)i * ldc + j] : 0.0f;
        }
    }
    for (int k = 0; k < kc; k++) {
        const float *a_k = a_panel + (size_t)k * SGEMM_MR;
        const float *b_k = b_panel + (size_t)k * SGEMM_PORTABLE_NR;
        for (int i = 0; i < SGEMM_MR; i++) {
            for (int j = 0; j < SGEMM_PORTABLE_NR; j++) acc[i][j] += a_k[i] * b_k[j];
        }
    }
    for (int i = 0; i < SGEMM_MR; i++) {
        memcpy(c + (size_t)i * ldc, acc[i], sizeof(acc[i]));
    }
}

#ifdef __x86_64__
// AVX2 + FMA: 6 rows x 16 columns = 12 ymm accumulators, named one by one: with an array GCC
// spilled them to the stack in the out-of-line copy we call through a pointer (24 -> 82 GFLOP/s
// on one Zen core once they stayed in registers).
#define SGEMM_AVX2_NR 16
#define SGEMM_AVX2_ROW(i)                                                                          \
    __m256 c##i##0 = accumulate ? _mm256_loadu_ps(c + (size_t)(i)*ldc) : _mm256_setzero_ps();      \
    __m256 c##i##1 = accumulate ? _mm256_loadu_ps(c + (size_t)(i)*ldc + 8) : _mm256_setzero_ps()
#define SGEMM_AVX2_FMA(i)                                                                          \
    a = _mm256_broadcast_ss(a_panel + (i));                                                        \
    c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);                                                     \
    c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1)
#define SGEMM_AVX2_STORE(i)                                                                        \
    _mm256_storeu_ps(c + (size_t)(i)*ldc, c##i##0);                                                \
    _mm256_storeu_ps(c + (size_t)(i)*ldc + 8, c##i##1)
__attribute__((target("avx2,fma"))) static void sgemm_kernel_avx2(int kc, const float *a_panel,
                                                                  const float *b_panel, float *c,
                                                                  size_t ldc, int accumulate) {
    SGEMM_AVX2_ROW(0);
    SGEMM_AVX2_ROW(1);
    SGEMM_AVX2_ROW(2);
    SGEMM_AVX2_ROW(3);
    SGEMM_AVX2_ROW(4);
    SGEMM_AVX2_ROW(5);
    for (int k = 0; k < kc; k++, a_panel += SGEMM_MR, b_panel += SGEMM_AVX2_NR) {
        __m256 b0 = _mm256_loadu_ps(b_panel), b1 = _mm256_loadu_ps(b_panel + 8), a;
        SGEMM_AVX2_FMA(0);
        SGEMM_AVX2_FMA(1);
        SGEMM_AVX2_FMA(2);
        SGEMM_AVX2_FMA(3);
        SGEMM_AVX2_FMA(4);
        SGEMM_AVX2_FMA(5);
    }
    SGEMM_AVX2_STORE(0);
    SGEMM_AVX2_STORE(1);
    SGEMM_AVX2_STORE(2);
    SGEMM_AVX2_STORE(3);
    SGEMM_AVX2_STORE(4);
    SGEMM_AVX2_STORE(5);
}

// AVX-512: 6 rows x 64 columns = 24 zmm accumulators; per k, 4 loads of B and 6 broadcasts of
// A feed 24 FMAs, enough to keep both FMA units busy.
#define SGEMM_AVX512_NR 64
__attribute__((target("avx512f"))) static inline void
sgemm_kernel_avx512(int kc, const float *a_panel, const float *b_panel, float *c, size_t ldc,
                    int accumulate) {
    __m512 acc[SGEMM_MR][4];
    for (int i = 0; i < SGEMM_MR; i++) {
        for (int j = 0; j < 4; j++) {
            acc[i][j] =
                accumulate ? _mm512_loadu_ps(c + (size_t)i * ldc + 16 * j) : _mm512_setzero_ps();
        }
    }
#pragma GCC unroll 4 // measured ~7% faster: less loop overhead between the 24-FMA bodies
    for (int k = 0; k < kc; k++) {
        const float *b_k = b_panel + (size_t)k * SGEMM_AVX512_NR;
        __m512 b0 = _mm512_loadu_ps(b_k);
        __m512 b1 = _mm512_loadu_ps(b_k + 16);
        __m512 b2 = _mm512_loadu_ps(b_k + 32);
        __m512 b3 = _mm512_loadu_ps(b_k + 48);
        for (int i = 0; i < SGEMM_MR; i++) {
            __m512 a = _mm512_set1_ps(a_panel[(size_t)k * SGEMM_MR + i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(a, b3, acc[i][3]);
        }
    }
    for (int i = 0; i < SGEMM_MR; i++) {
        for (int j = 0; j < 4; j++) _mm512_storeu_ps(c + (size_t)i * ldc + 16 * j, acc[i][j]);
    }
}
#endif

typedef struct {
    sgemm_kernel_fn kernel;
    int nr;
    const char *name;
} SgemmKernel;

// Every kernel this CPU can run, narrowest first (the portable one is always there); returns how
// many. Tests run them all; sgemm uses the widest.
static inline int sgemm_available_kernels(SgemmKernel out[3]) {
    int count = 0;
    out[count++] = (SgemmKernel){sgemm_kernel_portable, SGEMM_PORTABLE_NR, "portable"};
#ifdef __x86_64__
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        out[count++] = (SgemmKernel){sgemm_kernel_avx2, SGEMM_AVX2_NR, "avx2"};
    if (__builtin_cpu_supports("avx512f"))
        out[count++] = (SgemmKernel){sgemm_kernel_avx512, SGEMM_AVX512_NR, "avx512"};
#endif
    return count;
}

// The best micro-kernel this CPU runs. LLMC_SGEMM=portable|avx2|avx512 forces one (for tests).
static inline SgemmKernel sgemm_select_kernel(void) {
    static SgemmKernel chosen = {NULL, 0, NULL};
    if (chosen.kernel != NULL) return chosen;
    SgemmKernel available[3];
    int count = sgemm_available_kernels(available);
    chosen = available[count - 1];
    const char *force = getenv("LLMC_SGEMM");
    if (force != NULL && (strcmp(force, "portable") == 0 || strcmp(force, "avx2") == 0 ||
                          strcmp(force, "avx512") == 0)) {
        int found = 0;
        for (int i = 0; i < count; i++) {
            if (strcmp(available[i].name, force) == 0) chosen = available[i], found = 1;
        }
        if (!found) fatal("LLMC_SGEMM=%s but this CPU cannot run that kernel", force);
    }
    return chosen;
}

// Packs rows [i0, i0+mc) x depth [p0, p0+kc) of A into MR-row panels, k-major inside a panel
// (a_panel[k * MR + i]); rows past M are zero.
static inline void sgemm_pack_a(float *dst, const float *a, size_t a_row, size_t a_col, int M,
                                int i0, int mc, int p0, int kc) {
    for (int ir = 0; ir < mc; ir += SGEMM_MR) {
        for (int k = 0; k < kc; k++) {
            for (int i = 0; i < SGEMM_MR; i++) {
                int row = i0 + ir + i;
                *dst++ = row < M ? a[(size_t)row * a_row + (size_t)(p0 + k) * a_col] : 0.0f;
            }
        }
    }
}

#ifdef __x86_64__
// dst[c * dst_stride + r] = src[r * src_stride + c] for a 16 x 16 block, in registers: four
// rounds of interleaves (32-bit, 64-bit, then 128-bit lanes twice).
__attribute__((target("avx512f"))) static inline void
transpose_16x16_avx512(const float *src, size_t src_stride, float *dst, size_t dst_stride) {
    __m512 r[16], t[16], u[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (size_t)i * src_stride);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    // u[4q + m] holds, in 128-bit lane L, column 4L + m of rows 4q .. 4q+3
    for (int q = 0; q < 4; q++) {
        __m512d lo0 = _mm512_castps_pd(t[4 * q]), lo1 = _mm512_castps_pd(t[4 * q + 2]);
        __m512d hi0 = _mm512_castps_pd(t[4 * q + 1]), hi1 = _mm512_castps_pd(t[4 * q + 3]);
        u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo0, lo1));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo0, lo1));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi0, hi1));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi0, hi1));
    }
    for (int m = 0; m < 4; m++) {
        __m512 v_even = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88); // lanes 0, 2
        __m512 v_odd = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);  // lanes 1, 3
        __m512 w_even = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
        __m512 w_odd = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
        _mm512_storeu_ps(dst + (size_t)(m)*dst_stride, _mm512_shuffle_f32x4(v_even, w_even, 0x88));
        _mm512_storeu_ps(dst + (size_t)(8 + m) * dst_stride,
                         _mm512_shuffle_f32x4(v_even, w_even, 0xDD));
        _mm512_storeu_ps(dst + (size_t)(4 + m) * dst_stride,
                         _mm512_shuffle_f32x4(v_odd, w_odd, 0x88));
        _mm512_storeu_ps(dst + (size_t)(12 + m) * dst_stride,
                         _mm512_shuffle_f32x4(v_odd, w_odd, 0xDD));
    }
}
#endif

#ifdef __x86_64__
// dst rows 0..7 (stride dst_stride) = columns 0..7 of the 8 x 8 block at src (stride src_stride).
__attribute__((target("avx2"))) static inline void
transpose_8x8_avx2(const float *src, size_t src_stride, float *dst, size_t dst_stride) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * src_stride);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    // u[4q + m] holds, in 128-bit lane L, column 4L + m of rows 4q .. 4q+3
    for (int q = 0; q < 2; q++) {
        __m256d lo0 = _mm256_castps_pd(t[4 * q]), lo1 = _mm256_castps_pd(t[4 * q + 2]);
        __m256d hi0 = _mm256_castps_pd(t[4 * q + 1]), hi1 = _mm256_castps_pd(t[4 * q + 3]);
        u[4 * q + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(lo0, lo1));
        u[4 * q + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(lo0, lo1));
        u[4 * q + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(hi0, hi1));
        u[4 * q + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(hi0, hi1));
    }
    for (int m = 0; m < 4; m++) {
        _mm256_storeu_ps(dst + (size_t)m * dst_stride,
                         _mm256_permute2f128_ps(u[m], u[4 + m], 0x20));
        _mm256_storeu_ps(dst + (size_t)(4 + m) * dst_stride,
                         _mm256_permute2f128_ps(u[m], u[4 + m], 0x31));
    }
}
#endif

// Packs depth [p0, p0+kc) x columns [j0, j0+nc) of B into NR-column panels, k-major inside a
// panel (b_panel[k * NR + j]); columns past N are zero.
static inline void sgemm_pack_b(float *dst, const float *b, size_t b_row, size_t b_col, int N,
                                int j0, int nc, int p0, int kc, SgemmKernel kernel) {
    int nr = kernel.nr;
    for (int jr = 0; jr < nc; jr += nr, dst += (size_t)kc * nr) {
        int valid = N - (j0 + jr) < nr ? N - (j0 + jr) : nr;
        if (valid < 0) valid = 0;
        if (b_row == 1) {
            // B is a transposed row-major matrix (a weight W with B = W^T): transpose 16 x 16
            // blocks in registers where the CPU can, the rest element by element
            int k_done = 0;
#ifdef __x86_64__
            if (valid == nr && nr % 16 == 0 && kernel.kernel == sgemm_kernel_avx512) {
                k_done = kc / 16 * 16;
                for (int k = 0; k < k_done; k += 16) {
                    for (int j = 0; j < nr; j += 16) {
                        transpose_16x16_avx512(b + (size_t)(j0 + jr + j) * b_col + p0 + k, b_col,
                                               dst + (size_t)k * nr + j, (size_t)nr);
                    }
                }
            } else if (valid == nr && nr % 8 == 0 && kernel.kernel == sgemm_kernel_avx2) {
                k_done = kc / 8 * 8;
                for (int k = 0; k < k_done; k += 8) {
                    for (int j = 0; j < nr; j += 8) {
                        transpose_8x8_avx2(b + (size_t)(j0 + jr + j) * b_col + p0 + k, b_col,
                                           dst + (size_t)k * nr + j, (size_t)nr);
                    }
                }
            }
#endif
            for (int j = 0; j < valid; j++) {
                const float *src = b + (size_t)(j0 + jr + j) * b_col + p0;
                for (int k = k_done; k < kc; k++) dst[(size_t)k * nr + j] = src[k];
            }
            for (int k = 0; k < kc; k++) {
                for (int j = valid; j < nr; j++) dst[(size_t)k * nr + j] = 0.0f;
            }
            continue;
        }
        for (int k = 0; k < kc; k++) {
            const float *src = b + (size_t)(p0 + k) * b_row + (size_t)(j0 + jr) * b_col;
            float *out = dst + (size_t)k * nr;
            if (b_col == 1 && valid == nr) {
                for (int j = 0; j < nr; j++)
                    out[j] = src[j]; // inlined: a memcpy call per row cost 4%
            } else if (b_col == 1) {
                memcpy(out, src, (size_t)valid * sizeof(float));
            } else {
                for (int j = 0; j < valid; j++) out[j] = src[(size_t)j * b_col];
            }
            for (int j = valid; j < nr; j++) out[j] = 0.0f;
        }
    }
}

// Packed panels are 64-byte aligned so each 64-byte vector load touches one cache line.
static inline float *sgemm_alloc_aligned(size_t floats) {
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    float *ptr = (float *)aligned_alloc(64, bytes > 0 ? bytes : 64);
    if (ptr == NULL) fatal("out of memory allocating %zu bytes for sgemm panels", bytes);
    return ptr;
}

// Packed A lives in one buffer kept between calls: sizes repeat every step, and a fresh
// allocation of tens of MB would be page-faulted in on every call. Not thread-safe: sgemm is
// called from one thread (it parallelises inside).
static inline float *sgemm_workspace(size_t floats) {
    static float *buffer = NULL;
    static size_t capacity = 0;
    if (floats > capacity) {
        free(buffer);
        buffer = sgemm_alloc_aligned(floats);
        capacity = floats;
    }
    return buffer;
}

// Each thread's packed B block, also kept between calls.
#define SGEMM_MAX_THREADS 256
static inline float *sgemm_thread_panel(void) {
    static float *panels[SGEMM_MAX_THREADS];
    int thread = 0;
#ifdef _OPENMP
    thread = omp_get_thread_num();
#endif
    if (thread >= SGEMM_MAX_THREADS) fatal("sgemm: more than %d threads", SGEMM_MAX_THREADS);
    if (panels[thread] == NULL) panels[thread] = sgemm_alloc_aligned((size_t)SGEMM_NC * SGEMM_KC);
    return panels[thread];
}

// How the threads split C: a grid of grid_rows x grid_cols blocks, one per thread, in whole
// micro-panels. Each thread re-reads its rows of packed A once per NC-wide slice of its columns
// and packs its columns of B once, so the grid is the one that moves the least data: column
// blocks when M is small (the forward and dx products, M = B*T), row blocks when M is large
// (dW = dout^T x, M = OC up to 50304, where column tiles would each stream all of A again).
// The split only decides which thread computes an element, never the order of its additions,
// so results do not depend on the thread count.
typedef struct {
    int grid_rows, grid_cols; // threads along M and along N
    int rows_each, cols_each; // per block, multiples of MR and NR
} SgemmGrid;

static inline SgemmGrid sgemm_choose_grid(int M, int N, int K, int nr, int threads) {
    int m_panels = (M + SGEMM_MR - 1) / SGEMM_MR, n_panels = (N + nr - 1) / nr;
    SgemmGrid best = {1, 1, m_panels * SGEMM_MR, n_panels * nr};
    double best_cost = -1.0;
    for (int gr = 1; gr <= threads; gr++) {
        if (threads % gr != 0) continue;
        int gc = threads / gr;
        if (gr > m_panels || gc > n_panels) continue;
        int rows = (m_panels + gr - 1) / gr * SGEMM_MR, cols = (n_panels + gc - 1) / gc * nr;
        // floats moved per thread: A's rows read per NC slice, B's columns read and written
        double cost = (double)rows * K * ((cols + SGEMM_NC - 1) / SGEMM_NC) + 2.0 * K * cols;
        if (best_cost < 0 || cost < best_cost) {
            best_cost = cost;
            best = (SgemmGrid){gr, gc, rows, cols};
        }
    }
    return best;
}

// C (M,N) = A (M,K) * B (K,N), plus C's old value if accumulate, with a given micro-kernel
// (tests run every kernel the CPU has; the trainer calls sgemm below).
static inline void sgemm_with_kernel(SgemmKernel kernel, float *c, size_t ldc, const float *a,
                                     size_t a_row, size_t a_col, const float *b, size_t b_row,
                                     size_t b_col, int M, int N, int K, int accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate) {
            for (int i = 0; i < M; i++) memset(c + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
        }
        return;
    }
    int nr = kernel.nr;
    // A is packed once, shared by all threads: K-blocks of MR-row panels, block p0 at
    // a_pack + p0 * M_padded (row panel ir of it at + ir * kc)
    int m_padded = (M + SGEMM_MR - 1) / SGEMM_MR * SGEMM_MR;
    float *a_pack = sgemm_workspace((size_t)m_padded * K);
    int k_blocks = (K + SGEMM_KC - 1) / SGEMM_KC;
    int m_blocks = (m_padded + SGEMM_MC - 1) / SGEMM_MC;
#pragma omp parallel for collapse(2) schedule(static)
    for (int kb = 0; kb < k_blocks; kb++) {
        for (int mb = 0; mb < m_blocks; mb++) {
            int p0 = kb * SGEMM_KC, i0 = mb * SGEMM_MC;
            int kc = K - p0 < SGEMM_KC ? K - p0 : SGEMM_KC;
            int mc = m_padded - i0 < SGEMM_MC ? m_padded - i0 : SGEMM_MC;
            sgemm_pack_a(a_pack + (size_t)p0 * m_padded + (size_t)i0 * kc, a, a_row, a_col, M, i0,
                         mc, p0, kc);
        }
    }
    int threads = max_threads();
    SgemmGrid grid = sgemm_choose_grid(M, N, K, nr, threads);
#pragma omp parallel num_threads(threads)
    {
        int thread = 0;
#ifdef _OPENMP
        thread = omp_get_thread_num();
#endif
        float *b_pack = sgemm_thread_panel();
        float edge[SGEMM_MR * SGEMM_MAX_NR]; // C tile at the bottom/right edges
        int row_start = thread / grid.grid_cols * grid.rows_each;
        int col_start = thread % grid.grid_cols * grid.cols_each;
        int row_end = row_start + grid.rows_each < M ? row_start + grid.rows_each : M;
        int col_end = col_start + grid.cols_each < N ? col_start + grid.cols_each : N;
        // a thread past the grid, or a block past the last row, has nothing to pack or multiply
        if (thread >= grid.grid_rows * grid.grid_cols || row_start >= row_end) col_end = col_start;
        for (int j0 = col_start; j0 < col_end; j0 += SGEMM_NC) {
            int nc = col_end - j0 < SGEMM_NC ? col_end - j0 : SGEMM_NC;
            int nc_padded = (nc + nr - 1) / nr * nr;
            for (int p0 = 0; p0 < K; p0 += SGEMM_KC) {
                int kc = K - p0 < SGEMM_KC ? K - p0 : SGEMM_KC;
                int add = accumulate || p0 > 0;
                sgemm_pack_b(b_pack, b, b_row, b_col, N, j0, nc_padded, p0, kc, kernel);
                const float *a_block_k = a_pack + (size_t)p0 * m_padded;
                for (int i0 = row_start; i0 < row_end; i0 += SGEMM_MC) {
                    int mc = row_end - i0 < SGEMM_MC ? row_end - i0 : SGEMM_MC;
                    const float *a_block = a_block_k + (size_t)i0 * kc;
                    for (int jr = 0; jr < nc; jr += nr) {
                        const float *b_panel = b_pack + (size_t)jr * kc;
                        int cols = nc - jr < nr ? nc - jr : nr;
                        for (int ir = 0; ir < mc; ir += SGEMM_MR) {
                            const float *a_panel = a_block + (size_t)ir * kc;
                            float *c_tile = c + (size_t)(i0 + ir) * ldc + j0 + jr;
                            int rows = mc - ir < SGEMM_MR ? mc - ir : SGEMM_MR;
                            if (rows == SGEMM_MR && cols == nr) {
                                kernel.kernel(kc, a_panel, b_panel, c_tile, ldc, add);
                                continue;
                            }
                            // partial tile: run the kernel on a full scratch tile
                            for (int i = 0; i < SGEMM_MR; i++) {
                                for (int j = 0; j < nr; j++) {
                                    edge[i * nr + j] = add && i < rows && j < cols
                                                           ? c_tile[(size_t)i * ldc + j]
                                                           : 0.0f;
                                }
                            }
                            kernel.kernel(kc, a_panel, b_panel, edge, (size_t)nr, 1);
                            for (int i = 0; i < rows; i++) {
                                memcpy(c_tile + (size_t)i * ldc, edge + i * nr,
                                       (size_t)cols * sizeof(float));
                            }
                        }
                    }
                }
            }
        }
    }
}

// C (M,N) = A (M,K) * B (K,N), plus C's old value if accumulate, on the best kernel here.
static inline void sgemm(float *c, size_t ldc, const float *a, size_t a_row, size_t a_col,
                         const float *b, size_t b_row, size_t b_col, int M, int N, int K,
                         int accumulate) {
    sgemm_with_kernel(sgemm_select_kernel(), c, ldc, a, a_row, a_col, b, b_row, b_col, M, N, K,
                      accumulate);
}

#endif // LLMC_MATMUL_H
