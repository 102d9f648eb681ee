// The matmul algorithm cache (llmc/matmul.cuh): many more product shapes than it holds (as
// sampling makes when its context grows) all run and stay correct, the least recently used entry
// is the one evicted, autotuned entries (--gemm-autotune 1) go last, and autotuning leaves every
// result as it was, accumulating products included; and the DGELU epilogue against a double
// reference, and its refusals; Muon's fp32 Newton-Schulz products (llmc/muon.cuh) served by the
// same cache, one entry per product. FP32 build (-DENABLE_FP32). The same source runs on a GPU
// against cuBLASLt (bench/gpu_check.sh), where the autotune really times candidates.
#include "emu_check.cuh"

#include "../../llmc/matmul.cuh"
#include "../../llmc/muon.cuh"

#include <math.h>

#include <vector>

static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;
static float random_float(void) { // uniform in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

typedef struct {
    int m, n, k, trans_a, trans_b, batch, accumulate, bias;
} Shape;

// The i-th shape of a sequence of distinct ones: m, n, k in [1, 40] and every layout flag vary.
static Shape shape_number(int i) {
    Shape s;
    s.m = 1 + i % 40;
    s.n = 1 + (i / 40) % 40;
    s.k = 1 + (i * 7) % 40;
    s.trans_a = (i / 3) % 2, s.trans_b = (i / 5) % 2;
    s.batch = 1 + (i / 11) % 2;
    s.accumulate = (i / 2) % 2;
    s.bias = s.batch == 1 && !s.accumulate && i % 4 == 1;
    return s;
}

// Runs one product on fresh random operands and compares D with a double-precision reference.
// An fp32 dot product of length k with fp32 accumulation is off by at most ~k * 2^-24 *
// sum|a*b| (plus the accumulated D's own rounding): limit 2 * (k + 2) * 2^-24 * (sum|a*b| + |c|).
// planted_error, added to one reference element, must make the comparison fail.
static bool run_product(const Shape &s, double planted_error) {
    size_t a_elems = (size_t)s.m * s.k, b_elems = (size_t)s.k * s.n, d_elems = (size_t)s.m * s.n;
    std::vector<float> a(a_elems * s.batch), b(b_elems * s.batch), d(d_elems * s.batch), bias(s.m),
        out(d_elems * s.batch);
    for (float &x : a) x = random_float();
    for (float &x : b) x = random_float();
    for (float &x : d) x = random_float();
    for (float &x : bias) x = random_float();
    float *d_a = to_device(a.data(), a.size()), *d_b = to_device(b.data(), b.size());
    float *d_d = to_device(d.data(), d.size()), *d_bias = to_device(bias.data(), bias.size());
    matmul_gemm(d_d, d_a, d_b, s.bias ? d_bias : NULL, NULL, s.bias ? EPILOGUE_BIAS : EPILOGUE_NONE,
                s.m, s.n, s.k, s.trans_a, s.trans_b, s.batch, a_elems, b_elems, d_elems,
                s.accumulate, 0);
    cuda_check(cudaGetLastError());
    to_host(out.data(), d_d, out.size());
    bool good = true;
    for (int batch = 0; batch < s.batch; batch++) {
        const float *ab = a.data() + batch * a_elems, *bb = b.data() + batch * b_elems;
        for (int j = 0; j < s.n; j++) {
            for (int i = 0; i < s.m; i++) {
                double sum = 0.0, magnitude = 0.0;
                for (int p = 0; p < s.k; p++) {
                    double x = s.trans_a ? ab[(size_t)i * s.k + p] : ab[(size_t)p * s.m + i];
                    double y = s.trans_b ? bb[(size_t)p * s.n + j] : bb[(size_t)j * s.k + p];
                    sum += x * y, magnitude += fabs(x * y);
                }
                size_t at = batch * d_elems + (size_t)j * s.m + i;
                if (s.accumulate) sum += d[at], magnitude += fabs(d[at]);
                if (s.bias) sum += bias[i], magnitude += fabs(bias[i]);
                if (at == 0) sum += planted_error;
                double limit = 2.0 * (s.k + 2) * ldexp(1.0, -24) * magnitude;
                if (!(fabs(out[at] - sum) <= limit)) good = false;
            }
        }
    }
    cuda_check(cudaFree(d_a));
    cuda_check(cudaFree(d_b));
    cuda_check(cudaFree(d_d));
    cuda_check(cudaFree(d_bias));
    return good;
}

// The DGELU epilogue (matmul_backward's GELU backward): D (m,n) = (A B) times GELU'(aux), aux
// (m,n) the stored pre-activation, with A (m,k) and B (k,n) laid out as matmul_backward's dinp
// product has them. Reference in double on the same inputs. Limit per element: the product's own
// (above: 2 (k + 2) u sum|a b|) times |GELU'| <= 1.13, plus |A B| times the error of GELU' in
// fp32 for |aux| <= 3: tanhf's 2 ulp and its argument's ~4 roundings put <= 16u on tanh, which
// the derivative's terms (<= 2.64 at |x| = 3) carry to <= ~111u: 128u; plus D's rounding, u. On a
// GPU GELU' is cuBLASLt's, whose accuracy NVIDIA does not state (tanh.approx: 2^-11 relative):
// 1e-3 there (dev/cuda/matmul_forward.cu keeps the same for the forward GELU). planted_error,
// added to one reference element, must fail. Returns 0 = wrong, 1 = right, 2 = refused.
static int run_dgelu(int m, int n, int k, int aux_offset, double planted_error) {
    size_t d_elems = (size_t)m * n;
    std::vector<float> a((size_t)m * k), b((size_t)k * n), aux(d_elems + aux_offset), out(d_elems);
    for (float &x : a) x = random_float();
    for (float &x : b) x = random_float();
    for (float &x : aux) x = 3.0f * random_float();
    float *d_a = to_device(a.data(), a.size()), *d_b = to_device(b.data(), b.size());
    float *d_aux = to_device(aux.data(), aux.size()), *d_d = to_device(out.data(), out.size());
    int done = matmul_gemm(d_d, d_a, d_b, NULL, d_aux + aux_offset, EPILOGUE_DGELU, m, n, k, 0, 0,
                           1, 0, 0, 0, 0, 0);
    cuda_check(cudaGetLastError());
    to_host(out.data(), d_d, out.size());
    cuda_check(cudaFree(d_a));
    cuda_check(cudaFree(d_b));
    cuda_check(cudaFree(d_aux));
    cuda_check(cudaFree(d_d));
    if (!done) return 2;
    const double u = ldexp(1.0, -24), s = 0.7978845608028654;
#ifdef LLMC_CUDA_EMU
    const double gelu_error = 128 * u;
#else
    const double gelu_error = 1e-3;
#endif
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            double sum = 0.0, magnitude = 0.0;
            for (int p = 0; p < k; p++) {
                double term = (double)a[(size_t)p * m + i] * b[(size_t)j * k + p];
                sum += term, magnitude += fabs(term);
            }
            double x = aux[aux_offset + (size_t)j * m + i];
            double t = tanh(s * (x + 0.044715 * x * x * x));
            double slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * s * (1 + 3 * 0.044715 * x * x);
            double ref = sum * slope + (i == 0 && j == 0 ? planted_error : 0.0);
            double limit =
                1.13 * 2.0 * (k + 2) * u * magnitude + fabs(sum) * gelu_error + u * fabs(ref);
            if (!(fabs(out[(size_t)j * m + i] - ref) <= limit)) return 0;
        }
    }
    return 1;
}

// One Muon step of a rows x cols matrix from inputs drawn with the given seed; out: the updated
// parameters.
static void run_muon_step(int rows, int cols, unsigned long long seed, std::vector<float> &out,
                          MuonDeviceScratch *scratch) {
    size_t n = (size_t)rows * cols;
    std::vector<float> params(n), grads(n), momentum(n);
    rng_state = seed;
    for (float &x : params) x = random_float();
    for (float &x : grads) x = random_float();
    for (float &x : momentum) x = random_float();
    float *d_params = to_device(params.data(), n), *d_grads = to_device(grads.data(), n);
    float *d_momentum = to_device(momentum.data(), n);
    const MuonConfig config = {0.02f, 0.95f, 0.01f, 5};
    muon_update_matrix_device(d_params, NULL, d_grads, d_momentum, rows, cols, 1.0f, NULL, &config,
                              1u, 0, scratch, 0);
    cuda_check(cudaGetLastError());
    out.resize(n);
    to_host(out.data(), d_params, n);
    cuda_check(cudaFree(d_params));
    cuda_check(cudaFree(d_grads));
    cuda_check(cudaFree(d_momentum));
}

// Pairs of cache entries for the same product (data type, shape, layout, epilogue) that differ
// only in the operands' alignment: Muon's buffers all come from cudaMalloc (256 bytes), so any
// such pair would be a product asking the heuristic twice.
static int duplicate_products(const MatmulAlgoCache *cache) {
    int duplicates = 0;
    for (int i = 0; i < cache->count; i++) {
        for (int j = i + 1; j < cache->count; j++) {
            MatmulAlgoKey a = cache->entries[i].key, b = cache->entries[j].key;
            memset(a.alignments, 0, sizeof(a.alignments));
            memset(b.alignments, 0, sizeof(b.alignments));
            duplicates += memcmp(&a, &b, sizeof(a)) == 0;
        }
    }
    return duplicates;
}

int main(void) {
    matmul_init();
    MatmulAlgoCache *cache = &matmul_algo_cache;
    const int capacity = MATMUL_ALGO_CACHE_CAPACITY, shapes = 5 * capacity / 2;

    int wrong = 0;
    for (int i = 0; i < shapes; i++) wrong += !run_product(shape_number(i), 0.0);
    check(wrong == 0, "%d distinct product shapes through a %d-entry cache: %d results off", shapes,
          capacity, wrong);
    check(cache->count == capacity && cache->misses == (unsigned long long)shapes &&
              cache->evictions == (unsigned long long)(shapes - capacity),
          "the cache holds %d (expected %d), %llu misses (%d), %llu evictions (%d)", cache->count,
          capacity, cache->misses, shapes, cache->evictions, shapes - capacity);
    check(!run_product(shape_number(shapes - 1), 1e-3),
          "planted: a reference element 1e-3 off fails the comparison");

    unsigned long long misses = cache->misses;
    run_product(shape_number(shapes - 1), 0.0);
    check(cache->misses == misses, "the most recent shape is still cached (a hit)");
    run_product(shape_number(0), 0.0);
    check(cache->misses == misses + 1, "the oldest shape was evicted (a miss)");
    // the least recently used entry goes next: shape 0 was just used, shape shapes-capacity+1 not
    run_product(shape_number(shapes), 0.0);
    misses = cache->misses;
    run_product(shape_number(0), 0.0);
    check(cache->misses == misses, "a shape used again is kept while older ones are evicted");

    // --gemm-autotune 1 on every size: results unchanged, accumulating products included
    matmul_set_autotune(1);
    unsigned long long min_macs = cache->autotune_min_macs;
    cache->autotune_min_macs = 0;
    const int tuned = 24;
    wrong = 0;
    for (int i = 0; i < tuned; i++) wrong += !run_product(shape_number(700 + i), 0.0);
    check(wrong == 0 && cache->tuned_shapes == (unsigned long long)tuned,
          "autotune: %d new shapes (half of them accumulating) timed and correct (%d off, %llu "
          "timed, %llu faster than the heuristic's first)",
          tuned, wrong, cache->tuned_shapes, cache->tuned_changed);
    matmul_set_autotune(0);
    cache->autotune_min_macs = min_macs;
    for (int i = 0; i < capacity; i++) run_product(shape_number(800 + i), 0.0);
    misses = cache->misses;
    for (int i = 0; i < tuned; i++) run_product(shape_number(700 + i), 0.0);
    check(cache->misses == misses && cache->tuned_shapes == (unsigned long long)tuned,
          "autotuned shapes outlive %d newer untuned ones (%llu misses, %llu timings)", capacity,
          cache->misses - misses, cache->tuned_shapes);
    // the DGELU epilogue, at shapes as the fc-proj backward has them (m = 4C, n = B*T, k = C). A
    // GPU's cuBLASLt may have no FP32 DGELU kernel (the trainer's is BF16): refusals count there
    // as a note, as matmul_backward then runs the fallback; the emulation must not refuse.
    int dgelu_wrong = 0, dgelu_refused = 0;
    const int dgelu_shapes[4][3] = {{256, 48, 64}, {384, 37, 96}, {64, 5, 16}, {8, 1, 3}};
    for (int i = 0; i < 4; i++) {
        int result = run_dgelu(dgelu_shapes[i][0], dgelu_shapes[i][1], dgelu_shapes[i][2], 0, 0.0);
        dgelu_wrong += result == 0, dgelu_refused += result == 2;
    }
#ifdef LLMC_CUDA_EMU
    const bool refusals_allowed = false;
#else
    const bool refusals_allowed = true;
#endif
    check(dgelu_wrong == 0 && (dgelu_refused == 0 || refusals_allowed),
          "DGELU epilogue: (A B) * GELU'(aux) within its limits at 4 shapes (%d off, %d refused)",
          dgelu_wrong, dgelu_refused);
    if (dgelu_refused < 4) {
        check(run_dgelu(256, 48, 64, 0, 1e-2) == 0,
              "planted: a DGELU reference element 1e-2 off fails the comparison");
    }
    // cuBLASLt's documented refusals, mirrored by the emulation: the caller falls back
    check(run_dgelu(252, 4, 16, 0, 0.0) == 2 && run_dgelu(256, 4, 16, 2, 0.0) == 2,
          "DGELU refused for m = 252 (not a multiple of 8) and an aux 8 bytes off 16-byte "
          "alignment");

    // Muon (fp32 products in either build): a tall 48 x 16 and a wide 16 x 40 matrix, each stepped
    // twice from the same inputs, 5 Newton-Schulz iterations of 3 products: 60 products of 5
    // distinct ones (each case's X X^T and its update, and the 16 x 16 square A A, the same
    // product in both), so 5 misses and 55 hits on an emptied cache, and the repeated steps,
    // served from the cache, give the same bits.
    cache->count = 0;
    cache->hits = cache->misses = cache->evictions = 0;
    MuonDeviceScratch muon_scratch;
    memset(&muon_scratch, 0, sizeof(muon_scratch));
    std::vector<float> tall_first, wide_first, tall_again, wide_again;
    run_muon_step(48, 16, 11, tall_first, &muon_scratch);
    run_muon_step(16, 40, 12, wide_first, &muon_scratch);
    run_muon_step(48, 16, 11, tall_again, &muon_scratch);
    run_muon_step(16, 40, 12, wide_again, &muon_scratch);
    muon_device_scratch_free(&muon_scratch);
    int fp32_entries = 0;
    for (int i = 0; i < cache->count; i++) {
        fp32_entries += cache->entries[i].key.data_type == MATMUL_DATA_FP32;
    }
    check(cache->count == 5 && fp32_entries == 5 && cache->misses == 5 && cache->hits == 55,
          "Muon: 60 fp32 Newton-Schulz products through the cache: %d entries (5 expected), %d of "
          "them fp32, %llu misses (5), %llu hits (55)",
          cache->count, fp32_entries, cache->misses, cache->hits);
    check(duplicate_products(cache) == 0 &&
              memcmp(tall_first.data(), tall_again.data(), tall_first.size() * sizeof(float)) ==
                  0 &&
              memcmp(wide_first.data(), wide_again.data(), wide_first.size() * sizeof(float)) == 0,
          "Muon: no product cached twice; the steps served from the cache repeat the first ones "
          "bit for bit");
    // planted: the same product again under another alignment must count as a duplicate
    MatmulAlgoKey planted_key = cache->entries[0].key;
    planted_key.alignments[0] = 16;
    matmul_algo_cache_add(&planted_key, &cache->entries[0].algo, 0);
    check(duplicate_products(cache) == 1, "planted: a second entry for one Muon product is found");
    cache->count--; // the planted entry is the last one

    matmul_set_autotune(1); // so that the report counts the timings (bench/gpu_check.sh shows it)
    matmul_algo_cache_report();
    matmul_free();
    return check_summary();
}
