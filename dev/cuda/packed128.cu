/*
The elementwise kernels that read and write 16-byte packs (Packed128, llmc/cuda_common.cuh):
encoder forward, GELU forward and backward, the residual add of the fused residual + layernorm
forward, and AdamW. Each runs twice: packed = 1 (what llmc launches when every pointer is 16-byte
aligned) and packed = 0 (element by element: the arithmetic of these kernels before the packs).
Each element's arithmetic is the same in both, so the results must be the same bits (an exact
check, on the emulation and on a GPU). Both are also checked against a CPU reference, and the host
wrappers are called once more on pointers one element past a 16-byte boundary, where they must
fall back to the element path and still give the same bits. The sizes are not multiples of the
pack width, so the last pack is partial. Timed in GB/s (memory-bound: a few FLOPs per byte).

  make build/cuda_emu/dev/packed128   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/packed128 [N]   (on a GPU)

The CPU reference evaluates the kernels' formulas in float in the same order (u = 2^-24). On the
emulation (g++ -ffp-contract=off, the C library's tanhf) it matches to the bit; a GPU may contract
a product and an add into one FMA (each contraction moves a result by at most one rounding of the
product, u |product|) and its tanhf is within 2 ulp. Tolerances, fp32 values before the final
rounding to floatX (bf16 adds 2^-8 |ref|, one rounding):
  encoder, residual: one add, the same on every device: exact (0).
  GELU forward, x in [-4, 4]: z = 0.79788 (x + 0.044715 x^3) within 3u |z| (+ FMA u), tanh(z)
        moves by at most that plus tanhf's 2 ulp (4u): dt <= (3 |z| + 5) u; 0.5 x (1 + t) then
        within 0.5 |x| dt + 3u |y|. With |x| <= 4, |z| <= 5.5, |y| <= 4: (2 * 21.5 + 12) u = 55u.
  GELU backward: gelu' = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 0.134 x^2), k = 0.79788: the first
        term within 0.5 dt, (1 - t^2) within 2 dt + 2u, times 0.5 |x| k (1 + 0.134 x^2) <= 5.0,
        and 6 roundings of terms <= 1.2: (10.5 * 21.5 + 10 + 8) u = 244u, times |dy| <= 1, plus
        the product's u.
  AdamW: m, v: one multiply-add each, u |product| per possible contraction: 2u (|m| + |g|) and
        2u (|v| + g^2); the update param - step * m / (sqrt(v) / bc2 + eps): m / denom carries
        m's and denom's errors (relative 2u (|m| + |g|) / |m| can be large when m is small, so
        the bound is absolute: step * (dm / denom_min + |m| / denom_min * 4u)) plus 2u |param|.
A result computed with a known bug (GELU without the cube term, AdamW without the bias
correction of v) must fail the same tolerances: the planted-error lines.
*/
#include "dev_common.cuh"

#include "../../llmc/adamw.cuh"
#include "../../llmc/encoder.cuh"
#include "../../llmc/gelu.cuh"
#include "../../llmc/layernorm.cuh"

// Exact comparison of two device results of n floatX (bits, not values).
static int check_same_bits(const char *name, const floatX *a, const floatX *b, size_t n) {
    size_t bytes = n * sizeof(floatX);
    char *ha = (char *)malloc_check(bytes, "bits"), *hb = (char *)malloc_check(bytes, "bits");
    cuda_check(cudaMemcpy(ha, a, bytes, cudaMemcpyDeviceToHost));
    cuda_check(cudaMemcpy(hb, b, bytes, cudaMemcpyDeviceToHost));
    size_t first = (size_t)-1;
    for (size_t i = 0; i < bytes && first == (size_t)-1; i++) {
        if (ha[i] != hb[i]) first = i / sizeof(floatX);
    }
    printf("  %-44s %s", name, first == (size_t)-1 ? "same bits ok\n" : "FAIL");
    if (first != (size_t)-1) printf(": first different element [%zu]\n", first);
    free(ha);
    free(hb);
    return first == (size_t)-1;
}

static int check_same_bits_f(const char *name, const float *a, const float *b, size_t n) {
    size_t bytes = n * sizeof(float);
    char *ha = (char *)malloc_check(bytes, "bits"), *hb = (char *)malloc_check(bytes, "bits");
    cuda_check(cudaMemcpy(ha, a, bytes, cudaMemcpyDeviceToHost));
    cuda_check(cudaMemcpy(hb, b, bytes, cudaMemcpyDeviceToHost));
    int same = memcmp(ha, hb, bytes) == 0;
    printf("  %-44s %s\n", name, same ? "same bits ok" : "FAIL");
    free(ha);
    free(hb);
    return same;
}

static float *download_floats(const float *device, size_t n) {
    float *host = (float *)malloc_check(n * sizeof(float), "download");
    cuda_check(cudaMemcpy(host, device, n * sizeof(float), cudaMemcpyDeviceToHost));
    return host;
}

static float *upload_floats(const float *host, size_t n) {
    float *device = (float *)cuda_malloc_check(n * sizeof(float), "dev input");
    cuda_check(cudaMemcpy(device, host, n * sizeof(float), cudaMemcpyHostToDevice));
    return device;
}

#ifdef ENABLE_FP32
#define FINAL_RTOL 0.0
#else
#define FINAL_RTOL U_BF16
#endif

static int grid_for(size_t n) {
    return ceil_div(ceil_div((long long)n, x128::size), 256);
}

// ---------------------------------------------------------------------------------------------
static int test_gelu(size_t N, int repeats) {
    printf("GELU forward and backward, N=%zu (%zu elements in a partial last pack)\n", N,
           N % x128::size);
    float *x = (float *)malloc_check(N * sizeof(float), "x");
    float *dy = (float *)malloc_check(N * sizeof(float), "dy");
    fill_uniform(x, N, -4.0f, 4.0f, 21);
    fill_uniform(dy, N, -1.0f, 1.0f, 22);
    round_to_floatX(x, N);
    round_to_floatX(dy, N);
    float *y_ref = (float *)malloc_check(N * sizeof(float), "y_ref");
    float *dx_ref = (float *)malloc_check(N * sizeof(float), "dx_ref");
    float *bug = (float *)malloc_check(N * sizeof(float), "bug");
    for (size_t i = 0; i < N; i++) {
        y_ref[i] = gelu_value(x[i]);
        dx_ref[i] = gelu_derivative(x[i]) * dy[i];
        bug[i] = 0.5f * x[i] * (1.0f + tanhf(GELU_SCALING_FACTOR * x[i])); // no cube term
    }
    floatX *d_x = upload_floatX(x, N), *d_dy = upload_floatX(dy, N);
    floatX *d_y[2], *d_dx[2];
    int all_ok = 1;
    for (int packed = 0; packed <= 1; packed++) {
        d_y[packed] = (floatX *)cuda_malloc_check(N * sizeof(floatX), "y");
        d_dx[packed] = upload_floatX(dy, N);
        LLMC_LAUNCH(gelu_forward_kernel, grid_for(N), 256, 0, 0)(d_y[packed], d_x, N, packed);
        cuda_check(cudaGetLastError());
        LLMC_LAUNCH(gelu_backward_inplace_kernel, grid_for(N), 256, 0, 0)
        (d_dx[packed], d_x, N, packed);
        cuda_check(cudaGetLastError());
    }
    const double u = U_FP32;
    const float fwd_atol = (float)(55 * u * (1 + FINAL_RTOL)), bwd_atol = (float)(245 * u);
    for (int packed = 0; packed <= 1; packed++) {
        float *y = download_to_floats(d_y[packed], N), *dx = download_to_floats(d_dx[packed], N);
        printf(" %s:\n", packed ? "packed" : "element by element");
        all_ok &= check_close("forward", y, y_ref, N, fwd_atol, (float)FINAL_RTOL);
        all_ok &= check_close("backward", dx, dx_ref, N, bwd_atol, (float)FINAL_RTOL);
        free(y);
        free(dx);
    }
    all_ok &= check_same_bits("forward: packed = element by element", d_y[0], d_y[1], N);
    all_ok &= check_same_bits("backward: packed = element by element", d_dx[0], d_dx[1], N);
    // the wrappers on pointers one element off alignment fall back to the element path
    gelu_forward(d_y[1] + 1, d_x + 1, N - 1, 0);
    all_ok &= check_same_bits("forward, misaligned pointers: same bits", d_y[0], d_y[1], N);
    copy_to_floatX(d_dx[1], dy, N);
    gelu_backward_inplace(d_dx[1], d_x, 1, 0); // element 0 alone, then the misaligned rest
    gelu_backward_inplace(d_dx[1] + 1, d_x + 1, N - 1, 0);
    all_ok &= check_same_bits("backward, misaligned pointers: same bits", d_dx[0], d_dx[1], N);
    round_to_floatX(bug, N);
    all_ok &=
        check_catches("forward without the cube term", bug, y_ref, N, fwd_atol, (float)FINAL_RTOL);
    double bytes = 2.0 * N * sizeof(floatX);
    for (int packed = 1; packed >= 0; packed--) {
        float ms = time_ms(
            [&]() {
                LLMC_LAUNCH(gelu_forward_kernel, grid_for(N), 256, 0, 0)(d_y[0], d_x, N, packed);
            },
            repeats);
        report_bandwidth(packed ? "forward, packed" : "forward, element by element", ms, bytes);
    }
    for (int packed = 1; packed >= 0; packed--) {
        float ms = time_ms(
            [&]() {
                LLMC_LAUNCH(gelu_backward_inplace_kernel, grid_for(N), 256, 0, 0)
                (d_dx[0], d_x, N, packed);
            },
            repeats);
        report_bandwidth(packed ? "backward, packed" : "backward, element by element", ms,
                         1.5 * bytes);
    }
    for (int packed = 0; packed <= 1; packed++) {
        cuda_check(cudaFree(d_y[packed]));
        cuda_check(cudaFree(d_dx[packed]));
    }
    cuda_check(cudaFree(d_x));
    cuda_check(cudaFree(d_dy));
    free(x);
    free(dy);
    free(y_ref);
    free(dx_ref);
    free(bug);
    return all_ok;
}

// ---------------------------------------------------------------------------------------------
// Encoder forward and the residual add (through fused_residual_layernorm_forward_kernel, whose
// residual output is the elementwise part; its layernorm is dev/cuda/layernorm_forward.cu's).
static int test_encoder_residual(int B, int T, int C, int V, int repeats) {
    printf("encoder forward and residual add, B=%d T=%d C=%d V=%d\n", B, T, C, V);
    size_t BTC = (size_t)B * T * C;
    float *wte = (float *)malloc_check((size_t)V * C * sizeof(float), "wte");
    float *wpe = (float *)malloc_check((size_t)T * C * sizeof(float), "wpe");
    float *a = (float *)malloc_check(BTC * sizeof(float), "a");
    fill_uniform(wte, (size_t)V * C, -1.0f, 1.0f, 31);
    fill_uniform(wpe, (size_t)T * C, -1.0f, 1.0f, 32);
    fill_uniform(a, BTC, -2.0f, 2.0f, 33);
    round_to_floatX(wte, (size_t)V * C);
    round_to_floatX(wpe, (size_t)T * C);
    round_to_floatX(a, BTC);
    int *tokens = (int *)malloc_check((size_t)B * T * sizeof(int), "tokens");
    for (int i = 0; i < B * T; i++) tokens[i] = (int)(((unsigned)i * 2654435761u) % (unsigned)V);
    float *enc_ref = (float *)malloc_check(BTC * sizeof(float), "enc_ref");
    float *res_ref = (float *)malloc_check(BTC * sizeof(float), "res_ref");
    for (size_t i = 0; i < BTC; i++) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        enc_ref[i] = wte[(size_t)tokens[bt] * C + c] + wpe[(size_t)t * C + c];
    }
    round_to_floatX(enc_ref, BTC);
    for (size_t i = 0; i < BTC; i++) res_ref[i] = enc_ref[i] + a[i];
    round_to_floatX(res_ref, BTC);
    floatX *d_wte = upload_floatX(wte, (size_t)V * C), *d_wpe = upload_floatX(wpe, (size_t)T * C);
    floatX *d_a = upload_floatX(a, BTC);
    float *ones = (float *)malloc_check((size_t)C * sizeof(float), "ones");
    for (int i = 0; i < C; i++) ones[i] = 1.0f;
    floatX *d_w = upload_floatX(ones, (size_t)C), *d_b = upload_floatX(ones, (size_t)C);
    int *d_tokens = (int *)cuda_malloc_check((size_t)B * T * sizeof(int), "tokens");
    cuda_check(cudaMemcpy(d_tokens, tokens, (size_t)B * T * sizeof(int), cudaMemcpyHostToDevice));
    floatX *d_enc[2], *d_res[2], *d_ln = (floatX *)cuda_malloc_check(BTC * sizeof(floatX), "ln");
    int all_ok = 1;
    for (int packed = 0; packed <= 1; packed++) {
        d_enc[packed] = (floatX *)cuda_malloc_check(BTC * sizeof(floatX), "enc");
        d_res[packed] = (floatX *)cuda_malloc_check(BTC * sizeof(floatX), "res");
        LLMC_LAUNCH(encoder_forward_kernel, grid_for(BTC), 256, 0, 0)
        (d_enc[packed], d_tokens, d_wte, d_wpe, B, T, C, packed);
        cuda_check(cudaGetLastError());
        LLMC_LAUNCH(fused_residual_layernorm_forward_kernel, ceil_div(B * T, 8), 256, 0, 0)
        (d_res[packed], d_ln, NULL, NULL, d_enc[packed], d_a, d_w, d_b, B * T, C, packed);
        cuda_check(cudaGetLastError());
        float *enc = download_to_floats(d_enc[packed], BTC);
        float *res = download_to_floats(d_res[packed], BTC);
        printf(" %s:\n", packed ? "packed" : "element by element");
        all_ok &= check_close("encoder", enc, enc_ref, BTC, 0.0f, 0.0f);
        all_ok &= check_close("residual", res, res_ref, BTC, 0.0f, 0.0f);
        free(enc);
        free(res);
    }
    all_ok &= check_same_bits("encoder: packed = element by element", d_enc[0], d_enc[1], BTC);
    all_ok &= check_same_bits("residual: packed = element by element", d_res[0], d_res[1], BTC);
    {
        // a planted error: position t + 1's embedding added instead of t's
        float *bug = (float *)malloc_check(BTC * sizeof(float), "bug");
        for (size_t i = 0; i < BTC; i++) {
            size_t bt = i / C;
            int c = (int)(i % C), t = (int)((bt + 1) % T);
            bug[i] = wte[(size_t)tokens[bt] * C + c] + wpe[(size_t)t * C + c];
        }
        round_to_floatX(bug, BTC);
        all_ok &= check_catches("encoder with the next position's embedding", bug, enc_ref, BTC,
                                0.0f, 0.0f);
        free(bug);
    }
    double bytes = 3.0 * BTC * sizeof(floatX); // wte rows, wpe rows (cached or not), out
    for (int packed = 1; packed >= 0; packed--) {
        float ms = time_ms(
            [&]() {
                LLMC_LAUNCH(encoder_forward_kernel, grid_for(BTC), 256, 0, 0)
                (d_enc[0], d_tokens, d_wte, d_wpe, B, T, C, packed);
            },
            repeats);
        report_bandwidth(packed ? "encoder, packed" : "encoder, element by element", ms, bytes);
    }
    for (int packed = 0; packed <= 1; packed++) {
        cuda_check(cudaFree(d_enc[packed]));
        cuda_check(cudaFree(d_res[packed]));
    }
    cuda_check(cudaFree(d_ln));
    cuda_check(cudaFree(d_wte));
    cuda_check(cudaFree(d_wpe));
    cuda_check(cudaFree(d_a));
    cuda_check(cudaFree(d_w));
    cuda_check(cudaFree(d_b));
    cuda_check(cudaFree(d_tokens));
    free(wte);
    free(wpe);
    free(a);
    free(tokens);
    free(enc_ref);
    free(res_ref);
    free(ones);
    return all_ok;
}

// ---------------------------------------------------------------------------------------------
// AdamW with fp32 master weights (the BF16 trainer's case; FP32 builds pass master = NULL and
// take the same per-element path with params as the master copy).
static int test_adamw(size_t n, int repeats) {
    printf("AdamW, n=%zu (%zu elements in a partial last pack)\n", n, n % x128::size);
    float *param = (float *)malloc_check(n * sizeof(float), "param");
    float *grad = (float *)malloc_check(n * sizeof(float), "grad");
    float *m = (float *)malloc_check(n * sizeof(float), "m");
    float *v = (float *)malloc_check(n * sizeof(float), "v");
    fill_uniform(param, n, -1.0f, 1.0f, 41);
    fill_uniform(grad, n, -1.0f, 1.0f, 42);
    fill_uniform(m, n, -0.1f, 0.1f, 43);
    fill_uniform(v, n, 1e-4f, 1e-2f, 44);
    round_to_floatX(grad, n);
    AdamWConfig opt = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    const int t = 3;
    const float grad_scale = 0.5f;
    float bc1 = (float)(1.0 - pow(opt.beta1, t)), bc2 = (float)(1.0 - pow(opt.beta2, t));
    float step_size = (float)(opt.learning_rate / (1.0 - pow(opt.beta1, t)));
    float bc2_sqrt = (float)sqrt(1.0 - pow(opt.beta2, t));
    float decay = 1.0f - opt.learning_rate * opt.weight_decay;
    (void)bc1;
    (void)bc2;
    float *m_ref = (float *)malloc_check(n * sizeof(float), "m_ref");
    float *v_ref = (float *)malloc_check(n * sizeof(float), "v_ref");
    float *p_ref = (float *)malloc_check(n * sizeof(float), "p_ref");
    float *p_bug = (float *)malloc_check(n * sizeof(float), "p_bug");
    double m_max = 0, v_max = 0, g_max = 0, p_max = 0, denom_min = INFINITY;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale, mi = m[i], vi = v[i];
        mi += (g - mi) * (1.0f - opt.beta1);
        vi = vi * opt.beta2 + (1.0f - opt.beta2) * g * g;
        float denom = sqrtf(vi) / bc2_sqrt + opt.eps;
        p_ref[i] = param[i] * decay - step_size * (mi / denom);
        p_bug[i] = param[i] * decay - step_size * (mi / (sqrtf(vi) + opt.eps)); // no bc2
        m_ref[i] = mi;
        v_ref[i] = vi;
        m_max = fmax(m_max, fabs(mi));
        v_max = fmax(v_max, vi);
        g_max = fmax(g_max, fabs(g));
        p_max = fmax(p_max, fabs(p_ref[i]));
        denom_min = fmin(denom_min, denom);
    }
    const double u = U_FP32;
    const double m_atol = 2 * u * (m_max + g_max), v_atol = 2 * u * (v_max + g_max * g_max);
    const double p_atol =
        step_size * (m_atol / denom_min + m_max / denom_min * 4 * u) + 2 * u * p_max;
    floatX *d_grad = upload_floatX(grad, n);
    floatX *d_param[2];
    float *d_master[2], *d_m[2], *d_v[2];
    int all_ok = 1;
    for (int packed = 0; packed <= 1; packed++) {
        d_param[packed] = upload_floatX(param, n);
        d_master[packed] = upload_floats(param, n);
        d_m[packed] = upload_floats(m, n);
        d_v[packed] = upload_floats(v, n);
        LLMC_LAUNCH(adamw_kernel, grid_for(n), 256, 0, 0)
        (d_param[packed], d_master[packed], d_grad, d_m[packed], d_v[packed], n, opt.beta1,
         opt.beta2, opt.eps, step_size, bc2_sqrt, decay, grad_scale, NULL, 1234u, 0u, packed);
        cuda_check(cudaGetLastError());
        float *master = download_floats(d_master[packed], n);
        float *mm = download_floats(d_m[packed], n), *vv = download_floats(d_v[packed], n);
        float *p = download_to_floats(d_param[packed], n);
        printf(" %s:\n", packed ? "packed" : "element by element");
        all_ok &= check_close("m", mm, m_ref, n, (float)m_atol, 0.0f);
        all_ok &= check_close("v", vv, v_ref, n, (float)v_atol, 0.0f);
        all_ok &= check_close("master", master, p_ref, n, (float)p_atol, 0.0f);
        // stochastic rounding picks one of the two floatX neighbours of the master value
        all_ok &= check_close("params", p, master, n, 0.0f, (float)(2 * FINAL_RTOL));
        free(master);
        free(mm);
        free(vv);
        free(p);
    }
    all_ok &= check_same_bits("params: packed = element by element", d_param[0], d_param[1], n);
    all_ok &= check_same_bits_f("master: packed = element by element", d_master[0], d_master[1], n);
    all_ok &= check_same_bits_f("m: packed = element by element", d_m[0], d_m[1], n);
    all_ok &= check_same_bits_f("v: packed = element by element", d_v[0], d_v[1], n);
    {
        // the host wrapper on a slice one element off alignment (element 0 done separately):
        // the fallback, with the same rounding index per element, gives the same bits
        copy_to_floatX(d_param[1], param, n);
        cuda_check(cudaMemcpy(d_master[1], param, n * sizeof(float), cudaMemcpyHostToDevice));
        cuda_check(cudaMemcpy(d_m[1], m, n * sizeof(float), cudaMemcpyHostToDevice));
        cuda_check(cudaMemcpy(d_v[1], v, n * sizeof(float), cudaMemcpyHostToDevice));
        for (size_t begin = 0; begin < 2; begin++) {
            size_t count = begin == 0 ? 1 : n - 1;
            adamw_update(d_param[1] + begin, d_master[1] + begin, d_grad + begin, d_m[1] + begin,
                         d_v[1] + begin, count, &opt, t, 1, grad_scale, NULL, 1234u, begin, 0);
        }
        all_ok &=
            check_same_bits("params, misaligned slices: same bits", d_param[0], d_param[1], n);
        all_ok &=
            check_same_bits_f("master, misaligned slices: same bits", d_master[0], d_master[1], n);
    }
    all_ok &=
        check_catches("master without v's bias correction", p_bug, p_ref, n, (float)p_atol, 0.0f);
    // bytes: grads read, params written (not read: the master copy is), m, v, master read and
    // written
    double bytes = 2.0 * n * sizeof(floatX) + 6.0 * n * sizeof(float);
    for (int packed = 1; packed >= 0; packed--) {
        float ms = time_ms(
            [&]() {
                LLMC_LAUNCH(adamw_kernel, grid_for(n), 256, 0, 0)
                (d_param[0], d_master[0], d_grad, d_m[0], d_v[0], n, opt.beta1, opt.beta2, opt.eps,
                 step_size, bc2_sqrt, decay, grad_scale, NULL, 1234u, 0u, packed);
            },
            repeats);
        report_bandwidth(packed ? "adamw, packed" : "adamw, element by element", ms, bytes);
    }
    for (int packed = 0; packed <= 1; packed++) {
        cuda_check(cudaFree(d_param[packed]));
        cuda_check(cudaFree(d_master[packed]));
        cuda_check(cudaFree(d_m[packed]));
        cuda_check(cudaFree(d_v[packed]));
    }
    cuda_check(cudaFree(d_grad));
    free(param);
    free(grad);
    free(m);
    free(v);
    free(m_ref);
    free(v_ref);
    free(p_ref);
    free(p_bug);
    return all_ok;
}

int main(int argc, char **argv) {
    // not multiples of any pack width (8 bf16, 4 fp32): every kernel has a partial last pack
    size_t N = DEV_EMULATED ? 4099 : (size_t)64 * 1024 * 1024 + 3;
    if (argc == 2) N = (size_t)atoll(argv[1]);
    if (N < 2 || N > ((size_t)1 << 31)) fatal("usage: packed128 [N] (2 <= N <= 2^31)");
    int repeats = DEV_EMULATED ? 1 : 20;
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("packed128: %s, %d bytes per pack (%d floatX), device %s\n", PRECISION_NAME,
           (int)sizeof(x128), x128::size, props.name);
    int all_ok = 1;
    all_ok &= test_gelu(N, repeats);
    // C = 72: a multiple of the pack but not of 32 packs (lanes without a pack in a row)
    all_ok &= test_encoder_residual(DEV_EMULATED ? 2 : 16, DEV_EMULATED ? 13 : 1024,
                                    DEV_EMULATED ? 72 : 768, DEV_EMULATED ? 100 : 50257, repeats);
    all_ok &= test_adamw(N, repeats);
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
