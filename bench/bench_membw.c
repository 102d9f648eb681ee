// DRAM read bandwidth, for the memory-bandwidth floor of decoding (bench/bench_decode.sh): one
// token of batch-1 generation reads every weight once, so no CPU decoder can run faster than
// bandwidth / weight bytes tokens per second. Reads a buffer far larger than the caches with
// OMP_NUM_THREADS threads (a sum, as a matrix-vector product reads its matrix) and prints the best
// of several passes in GB/s.
//
//   build/bench_membw [MIB]        (default 1024 MiB)
#include <stdio.h>
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
#pragma omp parallel for schedule(static) reduction(+ : total)
        for (size_t block = 0; block < n / 64; block++) {
            // 16 independent sums: the adds keep up with the loads (vectorised by -O3)
            float sums[16] = {0};
            const float *p = data + block * 64;
            for (int k = 0; k < 64; k += 16) {
                for (int j = 0; j < 16; j++) sums[j] += p[k + j];
            }
            float s = 0.0f;
            for (int j = 0; j < 16; j++) s += sums[j];
            total += s;
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
