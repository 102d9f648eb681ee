/*
The linear layer's forward, out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias, from a naive kernel
(one thread per output, fp32 sums, no reuse of loaded values) to cuBLASLt as llmc/matmul.cuh
calls it, with the bias epilogue and with the bias + GELU epilogue (which also stores the
pre-GELU values). Checked against a CPU reference in double; timed in TFLOP/s (2*N*C*OC per call)
and as a fraction of the device's dense bf16 tensor peak (matmuls are compute-bound).

  make build/cuda_emu/dev/matmul_forward   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/matmul_forward [N C OC]   (on a GPU)

Tolerance: fp32 accumulation over C products, then one rounding to floatX: bf16 |diff| <=
1e-2 |ref| + 1e-3 (inputs are O(1), outputs O(sqrt(C) / 4)); FP32 1e-4 |ref| + 1e-5.
*/
#include "dev_common.cuh"

#include "../../llmc/matmul.cuh"

static void matmul_forward_cpu(float *out, float *pre_gelu, const float *inp, const float *weight,
                               const float *bias, int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double sum = bias[o];
            for (int i = 0; i < C; i++) {
                sum += (double)inp[(size_t)n * C + i] * weight[(size_t)o * C + i];
            }
            pre_gelu[(size_t)n * OC + o] = (float)sum;
            out[(size_t)n * OC + o] = gelu_value((float)sum);
        }
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
    matmul_forward_cpu(out_ref, pre_ref, inp, weight, bias, N, C, OC);

    floatX *d_inp = upload_floatX(inp, NC), *d_weight = upload_floatX(weight, OCC);
    floatX *d_bias = upload_floatX(bias, (size_t)OC);
    floatX *d_out = (floatX *)cuda_malloc_check(NOC * sizeof(floatX), "out");
    floatX *d_pre = (floatX *)cuda_malloc_check(NOC * sizeof(floatX), "pre_gelu");
#ifdef ENABLE_FP32
    const float atol = 1e-5f, rtol = 1e-4f;
#else
    const float atol = 1e-3f, rtol = 1e-2f;
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
                            "version 3 (+ GELU epilogue)"};
    int all_ok = 1;
    for (int version = 1; version <= 3; version++) {
        printf("%s:\n", names[version]);
        run_version(version);
        cuda_check(cudaDeviceSynchronize());
        float *pre = download_to_floats(d_pre, NOC);
        all_ok &= check_close("pre-GELU", pre, pre_ref, NOC, atol, rtol);
        free(pre);
        if (version == 3) {
            float *out = download_to_floats(d_out, NOC);
            all_ok &= check_close("GELU out", out, out_ref, NOC, atol, rtol);
            free(out);
        }
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
