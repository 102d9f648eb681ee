/*
The linear layer's forward, out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias, from a naive kernel
(one thread per output, fp32 sums, no reuse of loaded values) to cuBLASLt as llmc/matmul.cuh
calls it, with the bias epilogue and with GELU after it (the product stores the pre-GELU values,
then llmc/gelu.cuh's kernel reads them: the same computation `-r 1` redoes in backward). Checked
against a CPU reference in double; timed in TFLOP/s (2*N*C*OC per call) and as a fraction of the
device's dense bf16 tensor peak (matmuls are compute-bound).

  make build/cuda_emu/dev/matmul_forward   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/matmul_forward [N C OC]   (on a GPU)

Tolerances, from the arithmetic (u = 2^-24; the reference is double on the same floatX-rounded
inputs, so its only error is its final rounding to float, u |ref|):
  pre-GELU before its rounding to floatX: C products (exact in fp32 for bf16 inputs, else rounded)
        and the bias summed in fp32 in an order the reference does not share (sgemm's, cuBLASLt's
        tensor cores, split-K): the probabilistic bound sqrt(C + 1) u sum|terms|, with
        sum|terms| <= C max|inp| max|w| + max|bias| = 0.5 C + 0.5 for these inputs. The worst case,
        C u sum|terms|, is 0.035 at C = 768 and would hide real bugs. For random-sign products the
        error is the sum of the partial sums' roundings, spread about 0.1 C u, so the bound is
        ~50 of those spreads at C = 96 (the emulation) and ~140 at C = 768.
  GELU out: checked against GELU, in double, of the pre-GELU values as stored (what the kernel
        reads; their own error is the check above): gelu_value's fp32 roundings (tanhf 2 ulp and
        6 more roundings) stay below 7u |pre|, so 7u max|pre|, the same on a GPU (our kernel).
  floatX: FP32 stores the fp32 value; bf16 rounds it once more, <= 2^-8 relative (8 significant
        bits).
A result computed with a known bug (the sum missing the last product, an off-by-one in the K
loop; GELU without its cubic term) must fail the same tolerances: the planted-error lines.
*/
#include "dev_common.cuh"

#include "../../llmc/matmul.cuh"

// CPU reference in double: terms = C; a planted bug: terms = C - 1, the last product left out.
static void matmul_forward_cpu(float *out, float *pre_gelu, const float *inp, const float *weight,
                               const float *bias, int N, int C, int OC, int terms) {
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double sum = bias[o];
            for (int i = 0; i < terms; i++) {
                sum += (double)inp[(size_t)n * C + i] * weight[(size_t)o * C + i];
            }
            pre_gelu[(size_t)n * OC + o] = (float)sum;
            out[(size_t)n * OC + o] = gelu_value((float)sum);
        }
    }
}

// GELU in double of the given pre-activations; cube = GELU_CUBE, or 0: a planted bug.
#define GELU_CUBE 0.044715
static void gelu_reference(float *out, const float *pre, size_t n, double cube) {
    for (size_t i = 0; i < n; i++) {
        double x = pre[i];
        out[i] = (float)(0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + cube * x * x * x))));
    }
}

// Version 1: one thread per output element; every thread streams a row of inp and of weight.
__global__ void matmul_forward_kernel1(floatX *out, const floatX *inp, const floatX *weight,
                                       const floatX *bias, int N, int C, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    int n = blockIdx.y;
    if (o >= OC || n >= N) return;
    float sum = to_float(bias[o]);
    for (int i = 0; i < C; i++) {
        sum += to_float(inp[(size_t)n * C + i]) * to_float(weight[(size_t)o * C + i]);
    }
    out[(size_t)n * OC + o] = from_float<floatX>(sum);
}

int main(int argc, char **argv) {
    int N = DEV_EMULATED ? 64 : 8 * 1024, C = DEV_EMULATED ? 96 : 768;
    int OC = DEV_EMULATED ? 160 : 3072;
    if (argc == 4) {
        N = atoi(argv[1]);
        C = atoi(argv[2]);
        OC = atoi(argv[3]);
    }
    if (N <= 0 || C <= 0 || OC <= 0 || OC % 8 != 0) {
        fatal("usage: matmul_forward [N C OC] (OC a multiple of 8: cuBLASLt's GELU output)");
    }
    int repeats = DEV_EMULATED ? 1 : 20;
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("matmul_forward: N=%d C=%d OC=%d, %s, device %s\n", N, C, OC, PRECISION_NAME,
           props.name);
    matmul_init();
    size_t NC = (size_t)N * C, OCC = (size_t)OC * C, NOC = (size_t)N * OC;
    float *inp = (float *)malloc_check(NC * sizeof(float), "inp");
    float *weight = (float *)malloc_check(OCC * sizeof(float), "weight");
    float *bias = (float *)malloc_check((size_t)OC * sizeof(float), "bias");
    fill_uniform(inp, NC, -1.0f, 1.0f, 11);
    fill_uniform(weight, OCC, -0.5f, 0.5f, 12);
    fill_uniform(bias, (size_t)OC, -0.5f, 0.5f, 13);
    round_to_floatX(inp, NC);
    round_to_floatX(weight, OCC);
    round_to_floatX(bias, (size_t)OC);
    float *out_ref = (float *)malloc_check(NOC * sizeof(float), "out_ref");
    float *pre_ref = (float *)malloc_check(NOC * sizeof(float), "pre_ref");
    matmul_forward_cpu(out_ref, pre_ref, inp, weight, bias, N, C, OC, C);

    floatX *d_inp = upload_floatX(inp, NC), *d_weight = upload_floatX(weight, OCC);
    floatX *d_bias = upload_floatX(bias, (size_t)OC);
    floatX *d_out = (floatX *)cuda_malloc_check(NOC * sizeof(floatX), "out");
    floatX *d_pre = (floatX *)cuda_malloc_check(NOC * sizeof(floatX), "pre_gelu");
    // the bounds of the file header (inputs from the fill ranges: |inp| <= 1, |w|, |bias| <= 0.5)
    const double u = U_FP32, sum_abs = 0.5 * C + 0.5;
    double pre_max = 0.0;
    for (size_t i = 0; i < NOC; i++) pre_max = fmax(pre_max, fabs(pre_ref[i]));
    const double pre_fp32 = sqrt(C + 1.0) * u * sum_abs;
    double gelu_fp32 = 7 * u * pre_max;
#ifdef ENABLE_FP32
    const float atol = (float)pre_fp32, gelu_atol = (float)gelu_fp32, rtol = (float)u;
#else
    const float atol = (float)(pre_fp32 * (1 + U_BF16)),
                gelu_atol = (float)(gelu_fp32 * (1 + U_BF16));
    const float rtol = (float)(U_BF16 + 2 * u);
#endif
    auto run_version = [&](int version) {
        if (version == 1) {
            dim3 grid(ceil_div(OC, 128), N);
            LLMC_LAUNCH(matmul_forward_kernel1, grid, 128, 0, 0)
            (d_pre, d_inp, d_weight, d_bias, N, C, OC);
            cuda_check(cudaGetLastError());
        } else if (version == 2) {
            matmul_forward(d_pre, NULL, d_inp, d_weight, d_bias, N, C, OC, 0);
        } else {
            matmul_forward(d_out, d_pre, d_inp, d_weight, d_bias, N, C, OC, 0);
        }
    };
    const char *names[4] = {"", "version 1 (naive)", "version 2 (cuBLASLt + bias)",
                            "version 3 (+ GELU kernel)"};
    int all_ok = 1;
    for (int version = 1; version <= 3; version++) {
        printf("%s:\n", names[version]);
        run_version(version);
        cuda_check(cudaDeviceSynchronize());
        float *pre = download_to_floats(d_pre, NOC);
        all_ok &= check_close("pre-GELU", pre, pre_ref, NOC, atol, rtol);
        if (version == 3) {
            float *out = download_to_floats(d_out, NOC);
            float *gelu_of_pre = (float *)malloc_check(NOC * sizeof(float), "gelu_of_pre");
            gelu_reference(gelu_of_pre, pre, NOC, GELU_CUBE);
            all_ok &= check_close("GELU out", out, gelu_of_pre, NOC, gelu_atol, rtol);
            // the same tolerance against GELU without its cubic term
            gelu_reference(out, pre, NOC, 0.0);
            round_to_floatX(out, NOC);
            all_ok &= check_catches("GELU without x^3", out, gelu_of_pre, NOC, gelu_atol, rtol);
            free(gelu_of_pre);
            free(out);
        }
        free(pre);
    }
    {
        // the same tolerances against a result with a known bug, stored as the kernels store it
        // (the first 64 rows at most: the GPU's sizes would double the reference's time)
        int rows = N < 64 ? N : 64;
        size_t rows_OC = (size_t)rows * OC;
        float *out_bug = (float *)malloc_check(rows_OC * sizeof(float), "out_bug");
        float *pre_bug = (float *)malloc_check(rows_OC * sizeof(float), "pre_bug");
        matmul_forward_cpu(out_bug, pre_bug, inp, weight, bias, rows, C, OC, C - 1);
        round_to_floatX(pre_bug, rows_OC);
        all_ok &= check_catches("pre-GELU without the last product", pre_bug, pre_ref, rows_OC,
                                atol, rtol);
        free(out_bug);
        free(pre_bug);
    }
    double bandwidth, peak;
    device_roofline(props.name, &bandwidth, &peak);
    printf("timing (%d repeats):\n", repeats);
    for (int version = 1; version <= 3; version++) {
        float ms = time_ms([&]() { run_version(version); }, repeats);
        double tflops = 2.0 * N * C * OC / (ms * 1e-3) / 1e12;
        char roofline[64] = "";
        if (peak > 0.0 && !DEV_EMULATED) {
            snprintf(roofline, sizeof(roofline), " | %.0f%% of %.0f TFLOP/s (bf16 dense)",
                     100.0 * tflops * 1e12 / peak, peak / 1e12);
        }
        printf("  %-28s %9.4f ms | %8.2f TFLOP/s%s%s\n", names[version], ms, tflops, roofline,
               DEV_EMULATED ? " (emulated: not a GPU time)" : "");
    }
    cuda_check(cudaFree(d_inp));
    cuda_check(cudaFree(d_weight));
    cuda_check(cudaFree(d_bias));
    cuda_check(cudaFree(d_out));
    cuda_check(cudaFree(d_pre));
    matmul_free();
    free(inp);
    free(weight);
    free(bias);
    free(out_ref);
    free(pre_ref);
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
