/*
RMSNorm forward and backward (llmc/rmsnorm.cuh): the block norms (rows of C, one per token) and
QK-norm (rows of HS inside the qkv activation: the NH q heads, or the KV k heads, of each token).
Each layout runs through rmsnorm_forward/rmsnorm_backward (16-byte packs when the shapes and
pointers allow) and through the kernels element by element (packed = 0); a layout with pointers
one element off 16-byte alignment checks the wrappers' fallback. Checked against a CPU reference in
double on random floatX inputs over the whole buffer: the elements outside the rows (the v part
of qkv, the other heads) must keep their values.

  make build/cuda_emu/dev/rmsnorm   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/rmsnorm   (on a GPU)
  LLMC_DEV_CHECK_ONLY=1: the checks without the timed runs

Tolerances (u = 2^-24, U_store the unit roundoff of floatX; any summation order, FMA or not):
  forward: sum x^2 of D positive terms, each square within u: (D - 1) u + u relative; / D, + eps
      (positive): 2u; rsqrtf within 2 ulp (CUDA's documented bound; <= 4u relative) and the square
      root halves the argument's error: rstd within E_s = ((D + 2) / 2 + 4) u relative. y = x s w:
      2u more, then the store: y within (E_s + 2u + U_store + u) |y| (u for the reference's own
      rounding to float); 1% slack.
  backward: the reference and the kernels take the same fp32 rstd. norm = x s within u, w dy
      within u, their product 2u more: each term of b = sum(w dy norm) / D within 4u, the sum
      (D - 1) u of sum|terms|, the division u: |d b| <= (D + 4) u B, B = sum|w dy norm| / D.
      dx = s (w dy - norm b): |d dx| <= s (3u |w dy| + |norm| ((D + 6) u B + u |b|)) + u |dx|
      (the subtraction and the product by s); dinp + dx rounds once more (u of |dinp| in fp32,
      U_store relative at the store).
  dweight: a sum over all rows of terms x s dy computed within 3u: (rows + 2) u sum|terms|, + the
      old value, + the store (U_store relative).
The magnitudes are this run's largest. Results with known bugs must fail the same tolerances (the
planted-error lines): the forward with each weight taken from the next column, dx without the
norm b term, dweight without the last row.
*/
#include "dev_common.cuh"

#include "../../llmc/rmsnorm.cuh"

#ifdef ENABLE_FP32
#define U_STORE U_FP32
#else
#define U_STORE U_BF16
#endif

// One layout: N tokens of rows_per_token rows of D values, token_stride apart, starting offset
// elements into a buffer of N * token_stride + offset elements.
typedef struct {
    const char *name;
    int N, rows_per_token, D;
    size_t token_stride, offset;
} NormLayout;

static size_t layout_elements(const NormLayout *l) {
    return (size_t)l->N * l->token_stride + l->offset;
}

// Runs forward (backward = 0) or backward on the device buffers, through the wrapper (packed =
// -1: it decides) or the kernels with the given packed flag.
static void run_norm(const NormLayout *l, int backward, int packed, floatX *out, float *rstd,
                     floatX *dinp, floatX *dweight, float *scratch, const floatX *dout,
                     const floatX *inp, const floatX *weight) {
    size_t at = l->offset;
    int num_rows = l->N * l->rows_per_token;
    if (!backward && packed < 0) {
        rmsnorm_forward(out + at, rstd, inp + at, weight, l->N, l->rows_per_token, l->D,
                        l->token_stride, 0);
    } else if (!backward) {
        LLMC_LAUNCH(rmsnorm_forward_kernel, ceil_div(num_rows, 8), 256, 0, 0)
        (out + at, rstd, inp + at, weight, num_rows, l->rows_per_token, l->D, l->token_stride,
         packed);
    } else if (packed < 0) {
        rmsnorm_backward(dinp + at, dweight, scratch, dout + at, inp + at, weight, rstd, l->N,
                         l->rows_per_token, l->D, l->token_stride, 0);
    } else {
        int blocks = layernorm_backward_num_blocks(num_rows);
        size_t shared =
            (size_t)layernorm_backward_groups(l->D, packed, LAYERNORM_BACKWARD_THREADS) * l->D *
            sizeof(float);
        LLMC_LAUNCH(rmsnorm_backward_kernel, blocks, LAYERNORM_BACKWARD_THREADS, shared, 0)
        (dinp + at, scratch, dout + at, inp + at, weight, rstd, num_rows, l->rows_per_token, l->D,
         l->token_stride, packed);
        LLMC_LAUNCH(rmsnorm_backward_finalize_kernel, ceil_div(l->D, 256), 256, 0, 0)
        (dweight, scratch, l->D, blocks);
    }
    cuda_check(cudaGetLastError());
}

static float *random_floatX(size_t n, float lo, float hi, uint32_t seed) {
    float *values = (float *)malloc_check(n * sizeof(float), "random");
    fill_uniform(values, n, lo, hi, seed);
    round_to_floatX(values, n);
    return values;
}

static int test_layout(const NormLayout *l, int repeats) {
    int D = l->D, rows = l->N * l->rows_per_token;
    size_t n = layout_elements(l);
    printf("%s: N=%d rows/token=%d D=%d token_stride=%zu offset=%zu\n", l->name, l->N,
           l->rows_per_token, D, l->token_stride, l->offset);
    float *inp = random_floatX(n, -2.0f, 3.0f, 81 + D);
    float *out0 = random_floatX(n, -1.0f, 1.0f, 82 + D); // what out holds before forward
    float *dout = random_floatX(n, -1.0f, 1.0f, 83 + D);
    float *dinp0 = random_floatX(n, -0.5f, 0.5f, 84 + D);
    float *weight = random_floatX((size_t)D, 0.5f, 1.5f, 85 + D);
    float *dw0 = random_floatX((size_t)D, -0.5f, 0.5f, 86 + D);
    const double u = U_FP32;
    // reference: every element not in a row keeps its value
    float *out_ref = (float *)malloc_check(n * sizeof(float), "out_ref");
    float *out_bug = (float *)malloc_check(n * sizeof(float), "out_bug");
    float *dinp_ref = (float *)malloc_check(n * sizeof(float), "dinp_ref");
    float *dinp_bug = (float *)malloc_check(n * sizeof(float), "dinp_bug");
    float *rstd = (float *)malloc_check((size_t)rows * sizeof(float), "rstd");
    memcpy(out_ref, out0, n * sizeof(float));
    memcpy(out_bug, out0, n * sizeof(float));
    memcpy(dinp_ref, dinp0, n * sizeof(float));
    memcpy(dinp_bug, dinp0, n * sizeof(float));
    double *dw = (double *)calloc((size_t)D, sizeof(double));
    double *dw_abs = (double *)calloc((size_t)D, sizeof(double));
    double *dw_last = (double *)calloc((size_t)D, sizeof(double)); // the last row's terms
    if (dw == NULL || dw_abs == NULL || dw_last == NULL) fatal("out of memory");
    double dx_atol = 0.0, dinp_max = 0.0;
    double rstd_rtol = ((D + 2) / 2.0 + 4) * u + u;
    for (int r = 0; r < rows; r++) {
        size_t at = l->offset + rmsnorm_row_offset(r, l->rows_per_token, D, l->token_stride);
        const float *x = inp + at, *dy = dout + at;
        double squares = 0.0;
        for (int i = 0; i < D; i++) squares += (double)x[i] * x[i];
        double s_exact = 1.0 / sqrt(squares / D + (double)RMSNORM_EPS);
        rstd[r] = (float)s_exact;
        for (int i = 0; i < D; i++) {
            out_ref[at + i] = (float)(x[i] * s_exact * weight[i]);
            out_bug[at + i] = (float)(x[i] * s_exact * weight[(i + 1) % D]);
        }
        // backward from the fp32 rstd the kernels get
        double s = rstd[r], b = 0.0, Bm = 0.0, norm_max = 0.0, dnorm_max = 0.0;
        for (int i = 0; i < D; i++) {
            double norm = x[i] * s, dnorm = (double)weight[i] * dy[i];
            b += dnorm * norm;
            Bm += fabs(dnorm * norm);
            norm_max = fmax(norm_max, fabs(norm));
            dnorm_max = fmax(dnorm_max, fabs(dnorm));
            dw[i] += norm * dy[i];
            dw_abs[i] += fabs(norm * dy[i]);
            if (r == rows - 1) dw_last[i] = norm * dy[i];
        }
        b /= D;
        Bm /= D;
        double dx_max = 0.0;
        for (int i = 0; i < D; i++) {
            double norm = x[i] * s, dnorm = (double)weight[i] * dy[i];
            double dx = (dnorm - norm * b) * s;
            dx_max = fmax(dx_max, fabs(dx));
            dinp_ref[at + i] = (float)(dinp0[at + i] + dx);
            dinp_bug[at + i] = (float)(dinp0[at + i] + dnorm * s);
            dinp_max = fmax(dinp_max, fabs(dinp_ref[at + i]));
        }
        double row_atol =
            s * (3 * u * dnorm_max + norm_max * ((D + 6) * u * Bm + u * fabs(b))) + u * dx_max;
        dx_atol = fmax(dx_atol, row_atol);
    }
    float *dw_ref = (float *)malloc_check((size_t)D * sizeof(float), "dw_ref");
    float *dw_bug = (float *)malloc_check((size_t)D * sizeof(float), "dw_bug");
    double dw_atol = 0.0;
    for (int i = 0; i < D; i++) {
        dw_ref[i] = (float)(dw0[i] + dw[i]);
        dw_bug[i] = (float)(dw0[i] + dw[i] - dw_last[i]);
        dw_atol = fmax(dw_atol, (rows + 2) * u * dw_abs[i] + u * fabs(dw_ref[i]));
    }
    const float out_rtol = (float)(1.01 * (rstd_rtol + 2 * u + U_STORE + u));
    const float dinp_atol = (float)((dx_atol + u * dinp_max) * (1 + U_STORE));
    const float store_rtol = (float)U_STORE;

    floatX *d_inp = upload_floatX(inp, n), *d_out = upload_floatX(out0, n);
    floatX *d_dout = upload_floatX(dout, n), *d_dinp = upload_floatX(dinp0, n);
    floatX *d_weight = upload_floatX(weight, (size_t)D), *d_dw = upload_floatX(dw0, (size_t)D);
    float *d_rstd = (float *)cuda_malloc_check((size_t)rows * sizeof(float), "rstd");
    float *d_scratch = (float *)cuda_malloc_check(rmsnorm_backward_scratch_floats(D) * 4, "s");
    int wrapper_packed =
        rmsnorm_packed(D, l->token_stride, d_out + l->offset, d_inp + l->offset, d_weight, NULL);
    int all_ok = 1;
    // version -1: the wrappers; 0: element by element (only when the wrapper used packs)
    for (int packed = -1; packed <= (wrapper_packed ? 0 : -1); packed++) {
        printf(" %s:\n", packed < 0 ? (wrapper_packed ? "rmsnorm_forward/backward (16-byte packs)"
                                                      : "rmsnorm_forward/backward (element by "
                                                        "element: shapes or alignment)")
                                    : "the kernels element by element");
        copy_to_floatX(d_out, out0, n);
        copy_to_floatX(d_dinp, dinp0, n);
        copy_to_floatX(d_dw, dw0, (size_t)D);
        run_norm(l, 0, packed, d_out, d_rstd, d_dinp, d_dw, d_scratch, d_dout, d_inp, d_weight);
        cuda_check(cudaDeviceSynchronize());
        float *got_out = download_to_floats(d_out, n);
        float *got_rstd = (float *)malloc_check((size_t)rows * sizeof(float), "rstd");
        cuda_check(
            cudaMemcpy(got_rstd, d_rstd, (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
        all_ok &= check_close("out", got_out, out_ref, n, 0.0f, out_rtol);
        all_ok &= check_close("rstd", got_rstd, rstd, (size_t)rows, 0.0f, (float)rstd_rtol);
        // backward takes the reference's rstd, as its bounds assume
        cuda_check(cudaMemcpy(d_rstd, rstd, (size_t)rows * sizeof(float), cudaMemcpyHostToDevice));
        run_norm(l, 1, packed, d_out, d_rstd, d_dinp, d_dw, d_scratch, d_dout, d_inp, d_weight);
        cuda_check(cudaDeviceSynchronize());
        float *got_dinp = download_to_floats(d_dinp, n);
        float *got_dw = download_to_floats(d_dw, (size_t)D);
        all_ok &= check_close("dinp", got_dinp, dinp_ref, n, dinp_atol, store_rtol);
        all_ok &= check_close("dweight", got_dw, dw_ref, (size_t)D, (float)dw_atol, store_rtol);
        free(got_out);
        free(got_rstd);
        free(got_dinp);
        free(got_dw);
    }
    round_to_floatX(out_bug, n);
    round_to_floatX(dinp_bug, n);
    round_to_floatX(dw_bug, (size_t)D);
    all_ok &=
        check_catches("out with the next column's weight", out_bug, out_ref, n, 0.0f, out_rtol);
    all_ok &= check_catches("dinp without norm b", dinp_bug, dinp_ref, n, dinp_atol, store_rtol);
    all_ok &= check_catches("dweight without the last row", dw_bug, dw_ref, (size_t)D,
                            (float)dw_atol, store_rtol);
    if (repeats > 0) {
        // forward: inp read, out written, rstd; backward: dout and inp read (twice: the second
        // from L2), dinp read and written, rstd
        double X = sizeof(floatX), bytes_fwd = 2.0 * rows * D * X + rows * 4.0,
               bytes_bwd = 4.0 * rows * D * X + rows * 4.0;
        float ms = time_ms(
            [&]() {
                run_norm(l, 0, -1, d_out, d_rstd, d_dinp, d_dw, d_scratch, d_dout, d_inp, d_weight);
            },
            repeats);
        report_bandwidth("forward", ms, bytes_fwd);
        ms = time_ms(
            [&]() {
                run_norm(l, 1, -1, d_out, d_rstd, d_dinp, d_dw, d_scratch, d_dout, d_inp, d_weight);
            },
            repeats);
        report_bandwidth("backward", ms, bytes_bwd);
    }
    void *device[] = {d_inp, d_out, d_dout, d_dinp, d_weight, d_dw, d_rstd, d_scratch};
    for (size_t i = 0; i < sizeof(device) / sizeof(device[0]); i++) cuda_check(cudaFree(device[i]));
    void *host[] = {inp,      out0,     dout, dinp0, weight, dw0,     out_ref, out_bug,
                    dinp_ref, dinp_bug, rstd, dw,    dw_abs, dw_last, dw_ref,  dw_bug};
    for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++) free(host[i]);
    return all_ok;
}

int main(void) {
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("rmsnorm: %s, device %s\n", PRECISION_NAME, props.name);
    int timed = getenv("LLMC_DEV_CHECK_ONLY") == NULL;
    int repeats = DEV_EMULATED ? 1 : 50;
    // emulated: an odd token count, C = 72 (9 bf16 packs: lanes without a pack), C = 100 (not a
    // multiple of the bf16 pack), QK-norm at NH = 4, KV = 2, HS = 16 (and 18: never packed);
    // on a GPU the sizes of a d12 llama at B*T = 16384
    int N = DEV_EMULATED ? 67 : 16 * 1024, C = DEV_EMULATED ? 72 : 768;
    int NH = DEV_EMULATED ? 4 : 12, KV = DEV_EMULATED ? 2 : 4, HS = DEV_EMULATED ? 16 : 64;
    size_t qkv = (size_t)(NH + 2 * KV) * HS, qkv_odd = (size_t)(NH + 2 * KV) * 18;
    NormLayout layouts[] = {
        {"block norm", N, 1, C, (size_t)C, 0},
        {"block norm, C not a pack multiple", N, 1, C + 28, (size_t)C + 28, 0},
        {"block norm, pointers off 16-byte alignment", N, 1, C, (size_t)C, 1},
        {"q norm", N, NH, HS, qkv, 0},
        {"k norm", N, KV, HS, qkv, (size_t)NH * HS},
        {"q norm, HS = 18", 37, NH, 18, qkv_odd, 0},
        {"k norm, HS = 18", 37, KV, 18, qkv_odd, (size_t)NH * 18},
    };
    int all_ok = 1;
    for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
        // timed: the block norm and the q norm at the trainer's shapes
        all_ok &= test_layout(&layouts[i], timed && (i == 0 || i == 3) ? repeats : 0);
    }
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
