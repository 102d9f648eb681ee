// DRAM read bandwidth, for the memory-bandwidth floor of decoding (bench/bench_decode.sh): one
// token of batch-1 generation reads every weight once, so no CPU decoder can run faster than
// bandwidth / weight bytes tokens per second. Reads a buffer far larger than the caches with
// OMP_NUM_THREADS threads (a sum, as a matrix-vector product reads its matrix) and prints the best
// of several passes in GB/s.
//
//   build/bench_membw [MIB]        (default 1024 MiB)
#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>

#include "../llmc/utils.h"

int main(int argc, char **argv) {
    long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 1024;
    if (mib < 64 || mib > 65536) fatal("bad size %s MiB: expected 64..65536", argv[1]);
    size_t n = (size_t)mib * 1024 * 1024 / sizeof(float);
    float *data = (float *)malloc_check(n * sizeof(float), "bandwidth buffer");
    // first touch by the threads that read it later (pages land on their memory node)
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) data[i] = (float)(i % 1000) * 1e-3f;
    double best = 0.0, checksum = 0.0;
    for (int pass = 0; pass < 8; pass++) {
        double start = now_seconds(), total = 0.0;
#pragma omp parallel reduction(+ : total)
        {
            // each thread sums its own contiguous part into 64 independent lanes (four AVX-512 or
            // eight AVX2 registers: the adds keep up with the loads) and reduces them once at the
            // end
            int threads = max_threads(), me = 0;
#ifdef _OPENMP
            threads = omp_get_num_threads();
            me = omp_get_thread_num();
#endif
            size_t blocks = n / 64, from = blocks * (size_t)me / (size_t)threads;
            size_t to = blocks * (size_t)(me + 1) / (size_t)threads;
            float sums[64] = {0};
            for (size_t block = from; block < to; block++) {
                const float *p = data + block * 64;
                for (int j = 0; j < 64; j++) sums[j] += p[j];
            }
            for (int j = 0; j < 64; j++) total += sums[j];
        }
        double seconds = now_seconds() - start;
        double gb_per_s = (double)(n / 64 * 64) * sizeof(float) / seconds / 1e9;
        if (gb_per_s > best) best = gb_per_s;
        checksum += total;
    }
    printf("read bandwidth: %.2f GB/s (best of 8 passes over %ld MiB, %d threads; checksum %.3g)\n",
           best, mib, max_threads(), checksum);
    free(data);
    return 0;
}
