// Shared by the dev/cuda kernel experiments: random inputs, comparison against a CPU reference
// with a stated tolerance, event timing, and the device's roofline (memory bandwidth and bf16
// tensor peak) for the devices we know. Under the CPU emulation (LLMC_CUDA_EMU) the same code
// runs with small sizes and one timed repetition: its times measure the emulator, not a GPU.
#ifndef DEV_CUDA_COMMON_CUH
#define DEV_CUDA_COMMON_CUH

#include "../../llmc/cuda_common.cuh"

#include "../../llmc/rand.h"

#ifdef LLMC_CUDA_EMU
#define DEV_EMULATED 1
#else
#define DEV_EMULATED 0
#endif

// Uniform floats in [lo, hi) from a fixed seed (mt19937, as the rest of llmc).
static inline void fill_uniform(float *out, size_t n, float lo, float hi, uint32_t seed) {
    TorchGenerator gen;
    torch_manual_seed(&gen, seed);
    for (size_t i = 0; i < n; i++) out[i] = lo + (hi - lo) * torch_uniform_float(&gen.mt);
}

// Rounds host floats to what floatX holds, so the CPU reference sees the GPU's inputs.
static inline void round_to_floatX(float *values, size_t n) {
    floatX *tmp = (floatX *)malloc_check(n * sizeof(floatX), "rounding");
    floats_to_floatX(tmp, values, n);
    floatX_to_floats(values, tmp, n);
    free(tmp);
}

// Host floats into n floatX of device memory that is already there.
static inline void copy_to_floatX(floatX *device, const float *host, size_t n) {
    floatX *tmp = (floatX *)malloc_check(n * sizeof(floatX), "upload");
    floats_to_floatX(tmp, host, n);
    cuda_check(cudaMemcpy(device, tmp, n * sizeof(floatX), cudaMemcpyHostToDevice));
    free(tmp);
}

static inline floatX *upload_floatX(const float *host, size_t n) {
    floatX *device = (floatX *)cuda_malloc_check(n * sizeof(floatX), "dev input");
    copy_to_floatX(device, host, n);
    return device;
}

static inline float *download_to_floats(const floatX *device, size_t n) {
    floatX *tmp = (floatX *)malloc_check(n * sizeof(floatX), "download");
    cuda_check(cudaMemcpy(tmp, device, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    float *host = (float *)malloc_check(n * sizeof(float), "download");
    floatX_to_floats(host, tmp, n);
    free(tmp);
    return host;
}

// Unit roundoff of fp32 (round to nearest: |fl(x) - x| <= U_FP32 |x|) and of bf16 (8 significant
// bits: 2^-8, e.g. 1 + 2^-8 lies halfway between 1 and the next bf16, 1 + 2^-7). The dev/cuda
// tolerances are built from these (each file's header derives its own).
#define U_FP32 0x1p-24
#define U_BF16 0x1p-8

// Every element within atol + rtol * |want|; prints the worst error, the largest fraction of its
// tolerance any element used, and the first bad element.
static inline int check_close(const char *name, const float *got, const float *want, size_t n,
                              float atol, float rtol) {
    double worst = 0.0, worst_fraction = 0.0;
    size_t first_bad = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        double error = fabs((double)got[i] - (double)want[i]);
        double tolerance = atol + rtol * fabs((double)want[i]);
        if (!(error <= tolerance) && first_bad == (size_t)-1) first_bad = i;
        if (!(error <= worst)) worst = error;
        double fraction = tolerance > 0.0 ? error / tolerance : error > 0.0 ? INFINITY : 0.0;
        if (!(fraction <= worst_fraction)) worst_fraction = fraction;
    }
    printf("  %-12s max|diff| %.3e (tolerance %.2e + %.2e * |ref|, worst element at %.3f of it) "
           "%s\n",
           name, worst, atol, rtol, worst_fraction, first_bad == (size_t)-1 ? "ok" : "FAIL");
    if (first_bad != (size_t)-1) {
        printf("    first bad [%zu]: got %.8g want %.8g\n", first_bad, got[first_bad],
               want[first_bad]);
    }
    return first_bad == (size_t)-1;
}

// The other direction: a result computed with a known bug (planted) must fall outside the same
// tolerance somewhere, which shows the tolerance can fail. One line; returns 1 when caught.
static inline int check_catches(const char *name, const float *planted, const float *want, size_t n,
                                float atol, float rtol) {
    size_t outside = 0;
    for (size_t i = 0; i < n; i++) {
        double error = fabs((double)planted[i] - (double)want[i]);
        outside += !(error <= atol + rtol * fabs((double)want[i]));
    }
    printf("  planted error, %s: %zu of %zu outside the tolerance %s\n", name, outside, n,
           outside > 0 ? "ok" : "FAIL (the tolerance cannot catch it)");
    return outside > 0;
}

// Peak DRAM bandwidth (bytes/s) and dense bf16 tensor FLOP/s of known devices; 0 if unknown.
static inline void device_roofline(const char *name, double *bandwidth, double *bf16_flops) {
    *bandwidth = 0.0;
    *bf16_flops = 0.0;
    if (strstr(name, "H200") != NULL) {
        *bandwidth = 4.8e12;
        *bf16_flops = 989e12;
    } else if (strstr(name, "H100") != NULL) {
        int pcie = strstr(name, "PCIe") != NULL;
        *bandwidth = pcie ? 2.0e12 : 3.35e12;
        *bf16_flops = pcie ? 756e12 : 989e12;
    } else if (strstr(name, "A100") != NULL) {
        *bandwidth = 2.0e12;
        *bf16_flops = 312e12;
    }
}

// Mean milliseconds per call of launch() over repeats (after one warm-up call).
template <typename Launch> static inline float time_ms(Launch launch, int repeats) {
    launch();
    cudaEvent_t start, stop;
    cuda_check(cudaEventCreate(&start));
    cuda_check(cudaEventCreate(&stop));
    cuda_check(cudaEventRecord(start, 0));
    for (int i = 0; i < repeats; i++) launch();
    cuda_check(cudaEventRecord(stop, 0));
    cuda_check(cudaEventSynchronize(stop));
    float ms = 0.0f;
    cuda_check(cudaEventElapsedTime(&ms, start, stop));
    cuda_check(cudaEventDestroy(start));
    cuda_check(cudaEventDestroy(stop));
    return ms / repeats;
}

// Prints one timing line: ms, GB/s and the fraction of the device's bandwidth.
static inline void report_bandwidth(const char *version, float ms, double bytes) {
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    double bandwidth, flops;
    device_roofline(props.name, &bandwidth, &flops);
    double achieved = bytes / (ms * 1e-3);
    char roofline[64] = "";
    if (bandwidth > 0.0 && !DEV_EMULATED) {
        snprintf(roofline, sizeof(roofline), " | %.0f%% of %.2f TB/s", 100.0 * achieved / bandwidth,
                 bandwidth / 1e12);
    }
    printf("  %-28s %9.4f ms | %8.1f GB/s%s%s\n", version, ms, achieved / 1e9, roofline,
           DEV_EMULATED ? " (emulated: not a GPU time)" : "");
}

#endif // DEV_CUDA_COMMON_CUH
