/*
LayerNorm forward kernels, from naive to the one in llmc/layernorm.cuh (version 2, 16-byte
loads; version 4 is the same kernel element by element, as it was before them), checked against a
CPU reference on random inputs and timed (GB/s and the fraction of the device's DRAM bandwidth:
layernorm moves N*C values in and out and does little arithmetic, so bandwidth is its roofline).

  make build/cuda_emu/dev/layernorm_forward   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/layernorm_forward [N C]   (on a GPU)

Tolerances, from the arithmetic (u = 2^-24; worst case over every summation order, FMA or not, so
they hold for each version, the emulation's scheduling orders and a GPU; the reference is double
on the same floatX-rounded inputs, so its only error is its final rounding to float, u |ref|):
  mean: a C-term fp32 sum, (C-1) u sum|x|, divided by C (+ u |mean|)
  rstd, relative: var sums C non-negative terms ((C-1) u), each (x - m)^2 within 3u, then / C and
        + eps (2u); the square root halves that; rsqrtf is within 2 ulp (4u): ((C + 4) / 2 + 4) u
        (m's own error changes var only by C dm^2: negligible)
  out before its rounding to floatX: |w| (rstd |d mean| + |norm| d rstd) plus the roundings of
        x - m, * rstd, * w (each <= u |norm w|) and + b (u |out|)
  floatX: FP32 stores that; bf16 rounds it once more, <= 2^-8 |out| (8 significant bits)
The magnitudes (sum|x|/C, rstd, |norm|, |w|, |out|) are the largest in this run's reference. A
result computed with a known bug (the mean missing the row's last element, the variance divided by
C - 1) must fail the same tolerances: the planted-error lines.
*/
#include "dev_common.cuh"

#include "../../llmc/layernorm.cuh"

// CPU reference in double, on the same (floatX-rounded) inputs. planted = 1: a bug, the mean's sum
// misses the row's last element; planted = 2: a bug, the variance is divided by C - 1.
static void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp,
                                  const float *weight, const float *bias, int N, int C,
                                  int planted) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double sum = 0.0, var = 0.0;
        for (int i = 0; i < (planted == 1 ? C - 1 : C); i++) sum += x[i];
        double m = sum / C;
        for (int i = 0; i < C; i++) var += (x[i] - m) * (x[i] - m);
        double s = 1.0 / sqrt(var / (planted == 2 ? C - 1 : C) + 1e-5);
        for (int i = 0; i < C; i++) {
            out[(size_t)n * C + i] = (float)((x[i] - m) * s * weight[i] + bias[i]);
        }
        mean[n] = (float)m;
        rstd[n] = (float)s;
    }
}

// Version 1: one thread per row, three passes over the row. Simple, but a warp reads 32 rows
// C apart, so no load is coalesced.
__global__ void layernorm_forward_kernel1(floatX *out, float *mean, float *rstd, const floatX *inp,
                                          const floatX *weight, const floatX *bias, int N, int C) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= N) return;
    const floatX *x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = 0; i < C; i++) sum += to_float(x[i]);
    float m = sum / C;
    float var = 0.0f;
    for (int i = 0; i < C; i++) {
        float diff = to_float(x[i]) - m;
        var += diff * diff;
    }
    float s = rsqrtf(var / C + LAYERNORM_EPS);
    for (int i = 0; i < C; i++) {
        float norm = (to_float(x[i]) - m) * s;
        out[(size_t)row * C + i] =
            from_float<floatX>(norm * to_float(weight[i]) + to_float(bias[i]));
    }
    mean[row] = m;
    rstd[row] = s;
}

// Version 3: one block of C/8-ish threads per row with the row cached in shared memory, so the
// second and third passes read shared memory instead of DRAM/L2. Dynamic shared memory: C floats.
__global__ void layernorm_forward_kernel3(floatX *out, float *mean, float *rstd, const floatX *inp,
                                          const floatX *weight, const floatX *bias, int N, int C) {
    LLMC_EXTERN_SHARED(float, row_cache);
    __shared__ float reduce[32];
    int row = blockIdx.x;
    if (row >= N) return;
    const floatX *x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float value = to_float(x[i]);
        row_cache[i] = value;
        sum += value;
    }
    float m = block_reduce_sum(sum, reduce) / C;
    float var = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float diff = row_cache[i] - m;
        var += diff * diff;
    }
    float s = rsqrtf(block_reduce_sum(var, reduce) / C + LAYERNORM_EPS);
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float norm = (row_cache[i] - m) * s;
        out[(size_t)row * C + i] =
            from_float<floatX>(norm * to_float(weight[i]) + to_float(bias[i]));
    }
    if (threadIdx.x == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

static void run_version(int version, floatX *out, float *mean, float *rstd, const floatX *inp,
                        const floatX *weight, const floatX *bias, int N, int C) {
    switch (version) {
    case 1:
        LLMC_LAUNCH(layernorm_forward_kernel1, ceil_div(N, 128), 128, 0, 0)
        (out, mean, rstd, inp, weight, bias, N, C);
        break;
    case 2: // llmc/layernorm.cuh: one warp per row, 16-byte loads, shuffles only
        layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, 0);
        break;
    case 3:
        LLMC_LAUNCH(layernorm_forward_kernel3, N, 128, (size_t)C * sizeof(float), 0)
        (out, mean, rstd, inp, weight, bias, N, C);
        break;
    case 4: // llmc's kernel element by element (packed = 0), as before the 16-byte loads
        LLMC_LAUNCH(layernorm_forward_kernel, ceil_div(N, 256 / 32), 256, 0, 0)
        (out, mean, rstd, inp, weight, bias, N, C, 0);
        break;
    }
    cuda_check(cudaGetLastError());
}

int main(int argc, char **argv) {
    int N = DEV_EMULATED ? 64 : 8 * 1024,
        C = DEV_EMULATED ? 200 : 768; // C=200: not a multiple of 32
    if (argc == 3) {
        N = atoi(argv[1]);
        C = atoi(argv[2]);
    }
    if (N <= 0 || C <= 0 || C > 12000) fatal("usage: layernorm_forward [N C] (C <= 12000)");
    int repeats = DEV_EMULATED ? 1 : 100;
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("layernorm_forward: N=%d C=%d, %s, device %s\n", N, C, PRECISION_NAME, props.name);

    size_t NC = (size_t)N * C;
    float *inp = (float *)malloc_check(NC * sizeof(float), "inp");
    float *weight = (float *)malloc_check((size_t)C * sizeof(float), "weight");
    float *bias = (float *)malloc_check((size_t)C * sizeof(float), "bias");
    fill_uniform(inp, NC, -2.0f, 3.0f, 1);
    fill_uniform(weight, (size_t)C, 0.5f, 1.5f, 2);
    fill_uniform(bias, (size_t)C, -0.5f, 0.5f, 3);
    round_to_floatX(inp, NC);
    round_to_floatX(weight, (size_t)C);
    round_to_floatX(bias, (size_t)C);
    float *out_ref = (float *)malloc_check(NC * sizeof(float), "out_ref");
    float *mean_ref = (float *)malloc_check((size_t)N * sizeof(float), "mean_ref");
    float *rstd_ref = (float *)malloc_check((size_t)N * sizeof(float), "rstd_ref");
    layernorm_forward_cpu(out_ref, mean_ref, rstd_ref, inp, weight, bias, N, C, 0);

    floatX *d_inp = upload_floatX(inp, NC), *d_weight = upload_floatX(weight, (size_t)C);
    floatX *d_bias = upload_floatX(bias, (size_t)C);
    floatX *d_out = (floatX *)cuda_malloc_check(NC * sizeof(floatX), "out");
    float *d_mean = (float *)cuda_malloc_check((size_t)N * sizeof(float), "mean");
    float *d_rstd = (float *)cuda_malloc_check((size_t)N * sizeof(float), "rstd");
    // the magnitudes in the bounds (file header), the largest of this run
    double abs_x = 0.0, mean_max = 0.0, rstd_max = 0.0, norm_max = 0.0, w_max = 0.0, out_max = 0.0;
    for (int i = 0; i < C; i++) w_max = fmax(w_max, fabs(weight[i]));
    for (int n = 0; n < N; n++) {
        double row_abs = 0.0;
        for (int i = 0; i < C; i++) {
            size_t k = (size_t)n * C + i;
            row_abs += fabs(inp[k]);
            norm_max = fmax(norm_max, fabs((inp[k] - (double)mean_ref[n]) * rstd_ref[n]));
            out_max = fmax(out_max, fabs(out_ref[k]));
        }
        abs_x = fmax(abs_x, row_abs / C);
        mean_max = fmax(mean_max, fabs(mean_ref[n]));
        rstd_max = fmax(rstd_max, rstd_ref[n]);
    }
    const double u = U_FP32;
    const double mean_atol = (C - 1) * u * abs_x + 2 * u * mean_max; // sum, / C; reference u
    const double rstd_rtol = ((C + 4) / 2.0 + 4) * u + u;            // + the reference's rounding
    const double out_fp32 =
        w_max * (rstd_max * mean_atol + norm_max * (rstd_rtol + 3 * u)) + u * out_max;
#ifdef ENABLE_FP32
    const float out_atol = (float)out_fp32, out_rtol = (float)u; // reference rounding
#else
    const float out_atol = (float)(out_fp32 * (1 + U_BF16)), out_rtol = (float)(U_BF16 + 2 * u);
#endif
    int all_ok = 1;
    for (int version = 1; version <= 4; version++) {
        printf("version %d:\n", version);
        cuda_check(cudaMemset(d_out, 0, NC * sizeof(floatX)));
        run_version(version, d_out, d_mean, d_rstd, d_inp, d_weight, d_bias, N, C);
        cuda_check(cudaDeviceSynchronize());
        float *out = download_to_floats(d_out, NC);
        float *mean = (float *)malloc_check((size_t)N * sizeof(float), "mean");
        float *rstd = (float *)malloc_check((size_t)N * sizeof(float), "rstd");
        cuda_check(cudaMemcpy(mean, d_mean, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost));
        cuda_check(cudaMemcpy(rstd, d_rstd, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost));
        all_ok &= check_close("out", out, out_ref, NC, out_atol, out_rtol);
        all_ok &= check_close("mean", mean, mean_ref, (size_t)N, (float)mean_atol, 0.0f);
        all_ok &= check_close("rstd", rstd, rstd_ref, (size_t)N, 0.0f, (float)rstd_rtol);
        free(out);
        free(mean);
        free(rstd);
    }
    {
        // the same tolerances against results with a known bug, stored as the kernels store them
        float *out_bug = (float *)malloc_check(NC * sizeof(float), "out_bug");
        float *mean_bug = (float *)malloc_check((size_t)N * sizeof(float), "mean_bug");
        float *rstd_bug = (float *)malloc_check((size_t)N * sizeof(float), "rstd_bug");
        layernorm_forward_cpu(out_bug, mean_bug, rstd_bug, inp, weight, bias, N, C, 1);
        all_ok &= check_catches("mean without the row's last element", mean_bug, mean_ref,
                                (size_t)N, (float)mean_atol, 0.0f);
        layernorm_forward_cpu(out_bug, mean_bug, rstd_bug, inp, weight, bias, N, C, 2);
        round_to_floatX(out_bug, NC);
        all_ok &= check_catches("out with the variance divided by C - 1", out_bug, out_ref, NC,
                                out_atol, out_rtol);
        all_ok &= check_catches("rstd with the variance divided by C - 1", rstd_bug, rstd_ref,
                                (size_t)N, 0.0f, (float)rstd_rtol);
        free(out_bug);
        free(mean_bug);
        free(rstd_bug);
    }
    printf("timing (%d repeats):\n", repeats);
    // bytes: input and output rows, weight and bias, mean and rstd
    double bytes = 2.0 * NC * sizeof(floatX) + 2.0 * C * sizeof(floatX) + 2.0 * N * sizeof(float);
    for (int version = 1; version <= 4; version++) {
        float ms = time_ms(
            [&]() { run_version(version, d_out, d_mean, d_rstd, d_inp, d_weight, d_bias, N, C); },
            repeats);
        char label[32];
        snprintf(label, sizeof(label), "version %d", version);
        report_bandwidth(label, ms, bytes);
    }
    cuda_check(cudaFree(d_inp));
    cuda_check(cudaFree(d_weight));
    cuda_check(cudaFree(d_bias));
    cuda_check(cudaFree(d_out));
    cuda_check(cudaFree(d_mean));
    cuda_check(cudaFree(d_rstd));
    free(inp);
    free(weight);
    free(bias);
    free(out_ref);
    free(mean_ref);
    free(rstd_ref);
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
