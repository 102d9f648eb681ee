// Check helpers for the emulation tests (tests/cuda_emu/*.cu): each check prints one
// "ok - ..." or "FAIL - ..." line, the way tests/run_tests.sh counts them; check_summary() ends
// with "N passed, N failed" and the exit status.
#ifndef LLMC_TESTS_EMU_CHECK_CUH
#define LLMC_TESTS_EMU_CHECK_CUH

#include "../../llmc/cuda_common.cuh"

static int checks_passed = 0, checks_failed = 0;

static void check(bool condition, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void check(bool condition, const char *format, ...) {
    va_list args;
    va_start(args, format);
    printf(condition ? "ok - " : "FAIL - ");
    vprintf(format, args);
    printf("\n");
    va_end(args);
    fflush(stdout);
    if (condition)
        checks_passed++;
    else
        checks_failed++;
}

static int check_summary(void) {
    printf("%d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed == 0 ? 0 : 1;
}

// Device buffer of n T, filled from host, and back.
template <typename T> static T *to_device(const T *host, size_t n) {
    T *device = (T *)cuda_malloc_check(n * sizeof(T), "test buffer");
    cuda_check(cudaMemcpy(device, host, n * sizeof(T), cudaMemcpyHostToDevice));
    return device;
}
template <typename T> static void to_host(T *host, const T *device, size_t n) {
    cuda_check(cudaMemcpy(host, device, n * sizeof(T), cudaMemcpyDeviceToHost));
}

#endif // LLMC_TESTS_EMU_CHECK_CUH
