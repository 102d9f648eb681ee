/*
The column-sum kernels of the backward pass: LayerNorm backward, the bias gradient of
matmul_backward and the global gradient norm, each as llmc runs it (16-byte packs) and element by
element (packed = 0), plus, for LayerNorm, the three-kernel version it replaced (a warp per row
for dx, then 64 row chunks x ceil(C / 256) blocks with one thread per column for the weight and
bias partials: 3 x 64 blocks at C = 768). Checked against a CPU reference in double on random
inputs and timed in GB/s (memory-bound).

  make build/cuda_emu/dev/layernorm_backward   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/layernorm_backward [N C]   (on a GPU)

Tolerances, from the arithmetic (u = 2^-24; any summation order, FMA or not; the reference is
double from the same floatX inputs and the same fp32 mean and rstd, rounded once to float):
  dx = s (w dy - a - norm b), a = sum(w dy) / C, b = sum(w dy norm) / C over the row: norm =
        (x - m) s within 2u; w dy within u; a within (C + 1) u A, A = sum|w dy| / C; b within
        (C + 3) u B, B = sum|w dy norm| / C; the subtractions and the product by s add 4u of
        |w dy| + |a| + |norm b|: |d dx| <= s ((C + 1) u A + |norm| (C + 3) u B + 4u (|w dy| +
        A + |norm| B)) + u |dx|; dinp + dx rounds once more (u in fp32, 2^-8 relative in bf16).
  dweight, dbias: a sum over N rows of terms computed within 3u (dy norm) or exactly (dy): within
        (N + 2) u sum|terms|; + the old value and the rounding to floatX as above.
  bias: a sum over N rows: (N - 1) u sum|dy|, then the same final rounding.
  global norm: the kernels' own order (a worst case over every order, (n - 1) u, would be too
        loose at n = 124 M to catch anything): k = n / threads terms per thread then 21 levels of
        reductions, each square within u, the square root halves that: ((k + 22) / 2 + 1) u.
The magnitudes are this run's largest. Results with known bugs (the mean of w dy left out of dx;
the bias summed over one row too few) must fail the same tolerances: the planted-error lines.
*/
#include "dev_common.cuh"

#include "../../llmc/global_norm.cuh"
#include "../../llmc/layernorm.cuh"
#include "../../llmc/matmul.cuh"

// Version 1 (before the fused kernel), step 1: dinp += dx, one warp per row.
__global__ void layernorm_backward_dx_kernel1(floatX *dinp, const floatX *dout, const floatX *inp,
                                              const floatX *weight, const float *mean,
                                              const float *rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    int lane = threadIdx.x % 32;
    size_t offset = (size_t)row * C;
    float m = mean[row], s = rstd[row];
    float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float norm = (to_float(inp[offset + i]) - m) * s;
        float dnorm = to_float(weight[i]) * to_float(dout[offset + i]);
        dnorm_sum += dnorm;
        dnorm_norm_sum += dnorm * norm;
    }
    float a = warp_reduce_sum(dnorm_sum) / C;
    float b = warp_reduce_sum(dnorm_norm_sum) / C;
    for (int i = lane; i < C; i += 32) {
        float norm = (to_float(inp[offset + i]) - m) * s;
        float dnorm = to_float(weight[i]) * to_float(dout[offset + i]);
        float dx = (dnorm - a - norm * b) * s;
        dinp[offset + i] = from_float<floatX>(to_float(dinp[offset + i]) + dx);
    }
}

// Version 1, step 2: partials[chunk][c] of dy * norm and partials[chunks + chunk][c] of dy, one
// thread per column walking the chunk's rows (then layernorm_backward_finalize_kernel).
__global__ void layernorm_backward_partials_kernel1(float *partials, const floatX *dout,
                                                    const floatX *inp, const float *mean,
                                                    const float *rstd, int N, int C,
                                                    int num_chunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int chunk = blockIdx.y;
    if (c >= C) return;
    int rows_per_chunk = ceil_div(N, num_chunks);
    int start = chunk * rows_per_chunk;
    int end = min(N, start + rows_per_chunk);
    float dw = 0.0f, db = 0.0f;
    for (int n = start; n < end; n++) {
        float dy = to_float(dout[(size_t)n * C + c]);
        dw += (to_float(inp[(size_t)n * C + c]) - mean[n]) * rstd[n] * dy;
        db += dy;
    }
    partials[(size_t)chunk * C + c] = dw;
    partials[(size_t)(num_chunks + chunk) * C + c] = db;
}

#ifdef ENABLE_FP32
#define FINAL_RTOL U_FP32
#else
#define FINAL_RTOL U_BF16
#endif

static void layernorm_backward_version(int version, floatX *dinp, floatX *dweight, floatX *dbias,
                                       float *scratch, const floatX *dout, const floatX *inp,
                                       const floatX *weight, const float *mean, const float *rstd,
                                       int N, int C) {
    if (version == 1) {
        LLMC_LAUNCH(layernorm_backward_dx_kernel1, ceil_div(N, 8), 256, 0, 0)
        (dinp, dout, inp, weight, mean, rstd, N, C);
        int chunks = reduce_num_chunks(N);
        LLMC_LAUNCH(layernorm_backward_partials_kernel1, dim3(ceil_div(C, 256), chunks), 256, 0, 0)
        (scratch, dout, inp, mean, rstd, N, C, chunks);
        LLMC_LAUNCH(layernorm_backward_finalize_kernel, ceil_div(C, 256), 256, 0, 0)
        (dweight, dbias, scratch, C, chunks);
    } else if (version == 2) {
        layernorm_backward(dinp, dweight, dbias, scratch, dout, inp, weight, mean, rstd, N, C, 0);
    } else { // the fused kernel element by element
        int blocks = layernorm_backward_num_blocks(N);
        size_t shared = (size_t)layernorm_backward_groups(C, 0, LAYERNORM_BACKWARD_THREADS) * 2 *
                        C * sizeof(float);
        LLMC_LAUNCH(layernorm_backward_kernel, blocks, LAYERNORM_BACKWARD_THREADS, shared, 0)
        (dinp, scratch, dout, inp, weight, mean, rstd, N, C, 0);
        LLMC_LAUNCH(layernorm_backward_finalize_kernel, ceil_div(C, 256), 256, 0, 0)
        (dweight, dbias, scratch, C, blocks);
    }
    cuda_check(cudaGetLastError());
}

static int test_layernorm_backward(int N, int C, int repeats) {
    printf("layernorm backward: N=%d C=%d\n", N, C);
    size_t NC = (size_t)N * C;
    float *dout = (float *)malloc_check(NC * sizeof(float), "dout");
    float *inp = (float *)malloc_check(NC * sizeof(float), "inp");
    float *dinp0 = (float *)malloc_check(NC * sizeof(float), "dinp0");
    float *weight = (float *)malloc_check((size_t)C * sizeof(float), "weight");
    float *dw0 = (float *)malloc_check((size_t)C * sizeof(float), "dw0");
    float *db0 = (float *)malloc_check((size_t)C * sizeof(float), "db0");
    fill_uniform(dout, NC, -1.0f, 1.0f, 51);
    fill_uniform(inp, NC, -2.0f, 3.0f, 52);
    fill_uniform(dinp0, NC, -0.5f, 0.5f, 53);
    fill_uniform(weight, (size_t)C, 0.5f, 1.5f, 54);
    fill_uniform(dw0, (size_t)C, -0.5f, 0.5f, 55);
    fill_uniform(db0, (size_t)C, -0.5f, 0.5f, 56);
    round_to_floatX(dout, NC);
    round_to_floatX(inp, NC);
    round_to_floatX(dinp0, NC);
    round_to_floatX(weight, (size_t)C);
    round_to_floatX(dw0, (size_t)C);
    round_to_floatX(db0, (size_t)C);
    float *mean = (float *)malloc_check((size_t)N * sizeof(float), "mean");
    float *rstd = (float *)malloc_check((size_t)N * sizeof(float), "rstd");
    for (int n = 0; n < N; n++) {
        double sum = 0.0, var = 0.0;
        for (int i = 0; i < C; i++) sum += inp[(size_t)n * C + i];
        double m = sum / C;
        for (int i = 0; i < C; i++)
            var += (inp[(size_t)n * C + i] - m) * (inp[(size_t)n * C + i] - m);
        mean[n] = (float)m;
        rstd[n] = (float)(1.0 / sqrt(var / C + 1e-5));
    }
    // reference (planted = 1: dx without a, the mean of w dy) and the bounds' magnitudes
    float *dinp_ref = (float *)malloc_check(NC * sizeof(float), "dinp_ref");
    float *dinp_bug = (float *)malloc_check(NC * sizeof(float), "dinp_bug");
    double *dw = (double *)calloc((size_t)C, sizeof(double));
    double *db = (double *)calloc((size_t)C, sizeof(double));
    double *dw_abs = (double *)calloc((size_t)C, sizeof(double));
    double *db_abs = (double *)calloc((size_t)C, sizeof(double));
    if (dw == NULL || db == NULL || dw_abs == NULL || db_abs == NULL) fatal("out of memory");
    double dx_atol = 0.0, dinp_max = 0.0;
    const double u = U_FP32;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        double m = mean[n], s = rstd[n], a = 0.0, b = 0.0, A = 0.0, Bm = 0.0, norm_max = 0.0,
               dnorm_max = 0.0;
        for (int i = 0; i < C; i++) {
            double norm = (x[i] - m) * s, dnorm = (double)weight[i] * dy[i];
            a += dnorm;
            b += dnorm * norm;
            A += fabs(dnorm);
            Bm += fabs(dnorm * norm);
            norm_max = fmax(norm_max, fabs(norm));
            dnorm_max = fmax(dnorm_max, fabs(dnorm));
            dw[i] += norm * dy[i];
            db[i] += dy[i];
            dw_abs[i] += fabs(norm * dy[i]);
            db_abs[i] += fabs(dy[i]);
        }
        a /= C;
        b /= C;
        A /= C;
        Bm /= C;
        double dx_max = 0.0;
        for (int i = 0; i < C; i++) {
            double norm = (x[i] - m) * s, dnorm = (double)weight[i] * dy[i];
            double dx = (dnorm - a - norm * b) * s;
            dx_max = fmax(dx_max, fabs(dx));
            dinp_ref[(size_t)n * C + i] = (float)(dinp0[(size_t)n * C + i] + dx);
            dinp_bug[(size_t)n * C + i] =
                (float)(dinp0[(size_t)n * C + i] + (dnorm - norm * b) * s);
            dinp_max = fmax(dinp_max, fabs(dinp_ref[(size_t)n * C + i]));
        }
        double row_atol = s * ((C + 1) * u * A + norm_max * (C + 3) * u * Bm +
                               4 * u * (dnorm_max + A + norm_max * Bm)) +
                          u * dx_max;
        dx_atol = fmax(dx_atol, row_atol);
    }
    float *dw_ref = (float *)malloc_check((size_t)C * sizeof(float), "dw_ref");
    float *db_ref = (float *)malloc_check((size_t)C * sizeof(float), "db_ref");
    double dw_atol = 0.0, db_atol = 0.0;
    for (int i = 0; i < C; i++) {
        dw_ref[i] = (float)(dw0[i] + dw[i]);
        db_ref[i] = (float)(db0[i] + db[i]);
        dw_atol = fmax(dw_atol, (N + 2) * u * dw_abs[i] + u * fabs(dw_ref[i]));
        db_atol = fmax(db_atol, (N + 2) * u * db_abs[i] + u * fabs(db_ref[i]));
    }
    const float dinp_atol = (float)(dx_atol + u * dinp_max) * (float)(1 + FINAL_RTOL);
    floatX *d_dout = upload_floatX(dout, NC), *d_inp = upload_floatX(inp, NC);
    floatX *d_dinp = upload_floatX(dinp0, NC), *d_weight = upload_floatX(weight, (size_t)C);
    floatX *d_dw = upload_floatX(dw0, (size_t)C), *d_db = upload_floatX(db0, (size_t)C);
    float *d_mean = (float *)cuda_malloc_check((size_t)N * sizeof(float), "mean");
    float *d_rstd = (float *)cuda_malloc_check((size_t)N * sizeof(float), "rstd");
    cuda_check(cudaMemcpy(d_mean, mean, (size_t)N * sizeof(float), cudaMemcpyHostToDevice));
    cuda_check(cudaMemcpy(d_rstd, rstd, (size_t)N * sizeof(float), cudaMemcpyHostToDevice));
    float *d_scratch = (float *)cuda_malloc_check(
        (size_t)2 * LAYERNORM_BACKWARD_MAX_BLOCKS * C * sizeof(float), "scratch");
    int all_ok = 1;
    for (int version = 1; version <= 3; version++) {
        printf(" version %d%s:\n", version,
               version == 1   ? " (three kernels, one thread per column)"
               : version == 2 ? " (llmc: one fused kernel, 16-byte packs)"
                              : " (the fused kernel element by element)");
        copy_to_floatX(d_dinp, dinp0, NC);
        copy_to_floatX(d_dw, dw0, (size_t)C);
        copy_to_floatX(d_db, db0, (size_t)C);
        layernorm_backward_version(version, d_dinp, d_dw, d_db, d_scratch, d_dout, d_inp, d_weight,
                                   d_mean, d_rstd, N, C);
        cuda_check(cudaDeviceSynchronize());
        float *got_dinp = download_to_floats(d_dinp, NC);
        float *got_dw = download_to_floats(d_dw, (size_t)C);
        float *got_db = download_to_floats(d_db, (size_t)C);
        all_ok &= check_close("dinp", got_dinp, dinp_ref, NC, dinp_atol, (float)FINAL_RTOL);
        all_ok &=
            check_close("dweight", got_dw, dw_ref, (size_t)C, (float)dw_atol, (float)FINAL_RTOL);
        all_ok &=
            check_close("dbias", got_db, db_ref, (size_t)C, (float)db_atol, (float)FINAL_RTOL);
        free(got_dinp);
        free(got_dw);
        free(got_db);
    }
    round_to_floatX(dinp_bug, NC);
    all_ok &= check_catches("dinp without the mean of w dy", dinp_bug, dinp_ref, NC, dinp_atol,
                            (float)FINAL_RTOL);
    // bytes: dout and inp read once (the fused kernel's second reading hits L2), dinp read and
    // written, weight, mean and rstd; the partials are small
    double bytes = 4.0 * NC * sizeof(floatX) + 2.0 * N * sizeof(float);
    for (int version = 1; version <= 3; version++) {
        float ms = time_ms(
            [&]() {
                layernorm_backward_version(version, d_dinp, d_dw, d_db, d_scratch, d_dout, d_inp,
                                           d_weight, d_mean, d_rstd, N, C);
            },
            repeats);
        char label[32];
        snprintf(label, sizeof(label), "version %d", version);
        report_bandwidth(label, ms, bytes);
    }
    cuda_check(cudaFree(d_dout));
    cuda_check(cudaFree(d_inp));
    cuda_check(cudaFree(d_dinp));
    cuda_check(cudaFree(d_weight));
    cuda_check(cudaFree(d_dw));
    cuda_check(cudaFree(d_db));
    cuda_check(cudaFree(d_mean));
    cuda_check(cudaFree(d_rstd));
    cuda_check(cudaFree(d_scratch));
    free(dout);
    free(inp);
    free(dinp0);
    free(weight);
    free(dw0);
    free(db0);
    free(mean);
    free(rstd);
    free(dinp_ref);
    free(dinp_bug);
    free(dw);
    free(db);
    free(dw_abs);
    free(db_abs);
    free(dw_ref);
    free(db_ref);
    return all_ok;
}

// matmul_backward's bias gradient (its partials and finalize kernels), packed and not.
static int test_bias_backward(int N, int OC, int repeats) {
    printf("bias backward: N=%d OC=%d\n", N, OC);
    size_t NOC = (size_t)N * OC;
    float *dout = (float *)malloc_check(NOC * sizeof(float), "dout");
    float *db0 = (float *)malloc_check((size_t)OC * sizeof(float), "db0");
    fill_uniform(dout, NOC, -1.0f, 1.0f, 61);
    fill_uniform(db0, (size_t)OC, -0.5f, 0.5f, 62);
    round_to_floatX(dout, NOC);
    round_to_floatX(db0, (size_t)OC);
    float *ref = (float *)malloc_check((size_t)OC * sizeof(float), "ref");
    float *bug = (float *)malloc_check((size_t)OC * sizeof(float), "bug");
    double atol = 0.0;
    for (int o = 0; o < OC; o++) {
        double sum = 0.0, abs_sum = 0.0, last = 0.0;
        for (int n = 0; n < N; n++) {
            sum += dout[(size_t)n * OC + o];
            abs_sum += fabs(dout[(size_t)n * OC + o]);
            last = dout[(size_t)n * OC + o];
        }
        ref[o] = (float)(db0[o] + sum);
        bug[o] = (float)(db0[o] + sum - last); // a planted bug: the last row left out
        atol = fmax(atol, (N - 1) * U_FP32 * abs_sum + U_FP32 * fabs(ref[o]));
    }
    round_to_floatX(bug, (size_t)OC);
    floatX *d_dout = upload_floatX(dout, NOC), *d_db = upload_floatX(db0, (size_t)OC);
    float *d_scratch =
        (float *)cuda_malloc_check((size_t)REDUCE_MAX_CHUNKS * OC * sizeof(float), "scratch");
    int chunks = reduce_num_chunks(N);
    auto run = [&](int packed) {
        dim3 grid(ceil_div(OC, 32 * (packed ? x128::size : 1)), chunks);
        LLMC_LAUNCH(bias_backward_partials_kernel, grid, 32 * BIAS_BACKWARD_WARPS, 0, 0)
        (d_scratch, d_dout, N, OC, chunks, packed);
        LLMC_LAUNCH(bias_backward_finalize_kernel, ceil_div(OC, 256), 256, 0, 0)
        (d_db, d_scratch, OC, chunks);
        cuda_check(cudaGetLastError());
    };
    int all_ok = 1;
    for (int packed = 1; packed >= 0; packed--) {
        if (packed && OC % x128::size != 0) continue;
        copy_to_floatX(d_db, db0, (size_t)OC);
        run(packed);
        float *got = download_to_floats(d_db, (size_t)OC);
        printf(" %s:\n", packed ? "16-byte packs" : "element by element");
        all_ok &= check_close("dbias", got, ref, (size_t)OC, (float)atol, (float)FINAL_RTOL);
        free(got);
    }
    all_ok &= check_catches("dbias without the last row", bug, ref, (size_t)OC, (float)atol,
                            (float)FINAL_RTOL);
    double bytes = (double)NOC * sizeof(floatX);
    for (int packed = 1; packed >= 0; packed--) {
        if (packed && OC % x128::size != 0) continue;
        float ms = time_ms([&]() { run(packed); }, repeats);
        report_bandwidth(packed ? "bias, packed" : "bias, element by element", ms, bytes);
    }
    cuda_check(cudaFree(d_dout));
    cuda_check(cudaFree(d_db));
    cuda_check(cudaFree(d_scratch));
    free(dout);
    free(db0);
    free(ref);
    free(bug);
    return all_ok;
}

static int test_global_norm(size_t n, int repeats) {
    printf("global norm: n=%zu\n", n);
    float *g = (float *)malloc_check(n * sizeof(float), "g");
    fill_uniform(g, n, -1.0f, 1.0f, 71);
    round_to_floatX(g, n);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)g[i] * g[i];
    float ref = (float)sqrt(sum);
    // this kernel's order: k = ceil(n / threads) terms per thread, 10 levels of the block's
    // reduction (warp butterfly, then the warps), one partial per thread and 10 levels in the
    // finalize: a sum through k + 21 additions, each term within u, then the square root
    int blocks = global_norm_num_blocks(n);
    double k = ceil((double)n / ((double)blocks * 256)) + 21;
    const float rtol = (float)(((k + 1) / 2.0 + 1) * U_FP32 + U_FP32);
    floatX *d_g = upload_floatX(g, n);
    float *d_scratch =
        (float *)cuda_malloc_check((GLOBAL_NORM_MAX_BLOCKS + 1) * sizeof(float), "s");
    auto run = [&](int packed) {
        LLMC_LAUNCH(global_norm_partials_kernel, blocks, 256, 0, 0)(d_scratch, d_g, n, packed);
        LLMC_LAUNCH(global_norm_finalize_kernel, 1, 1024, 0, 0)
        (d_scratch + GLOBAL_NORM_MAX_BLOCKS, d_scratch, blocks, 1);
        cuda_check(cudaGetLastError());
    };
    int all_ok = 1;
    for (int packed = 1; packed >= 0; packed--) {
        run(packed);
        float got;
        cuda_check(cudaMemcpy(&got, d_scratch + GLOBAL_NORM_MAX_BLOCKS, sizeof(float),
                              cudaMemcpyDeviceToHost));
        printf(" %s:\n", packed ? "16-byte packs" : "element by element");
        all_ok &= check_close("norm", &got, &ref, 1, 0.0f, rtol);
    }
    double partial = 0.0; // a planted bug: the last n / 1024 elements left out
    for (size_t i = 0; i < n - n / 1024; i++) partial += (double)g[i] * g[i];
    float bug = (float)sqrt(partial);
    all_ok &= check_catches("norm without the last n / 1024 elements", &bug, &ref, 1, 0.0f, rtol);
    for (int packed = 1; packed >= 0; packed--) {
        float ms = time_ms([&]() { run(packed); }, repeats);
        report_bandwidth(packed ? "norm, packed" : "norm, element by element", ms,
                         (double)n * sizeof(floatX));
    }
    cuda_check(cudaFree(d_g));
    cuda_check(cudaFree(d_scratch));
    free(g);
    return all_ok;
}

int main(int argc, char **argv) {
    // emulated: 200 rows (7 blocks of the fused kernel, 4 row chunks), C = 72 (9 packs of bf16:
    // lanes without a pack) and OC = 200 (bias: a partial column block)
    int N = DEV_EMULATED ? 200 : 16 * 1024, C = DEV_EMULATED ? 72 : 768;
    if (argc == 3) {
        N = atoi(argv[1]);
        C = atoi(argv[2]);
    }
    if (N <= 0 || C <= 0 || C > 12000) fatal("usage: layernorm_backward [N C] (C <= 12000)");
    int repeats = DEV_EMULATED ? 1 : 50;
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("layernorm_backward: %s, device %s\n", PRECISION_NAME, props.name);
    int all_ok = test_layernorm_backward(N, C, repeats);
    all_ok &= test_bias_backward(N, DEV_EMULATED ? 200 : 4 * C, repeats);
    all_ok &= test_bias_backward(N, DEV_EMULATED ? 100 : 4 * C + 4, repeats); // OC % 8 != 0
    all_ok &= test_global_norm(DEV_EMULATED ? 4099 : (size_t)124 * 1000 * 1000 + 3, repeats);
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
