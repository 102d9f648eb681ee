/*
The collectives of data-parallel training (llmc/multi_gpu.cuh), timed and checked: the in-place
all-reduce of bf16 gradients (ZeRO-0) and the in-place reduce-scatter + all-gather pair (ZeRO-1),
at sizes up to GPT-2 124M's gradients. Each rank fills its buffer with small integers
((rank % 2 + 1) * (i % 7)) whose sums, and every partial sum, bf16 holds exactly up to 21 ranks,
so the check is exact. Prints, per size, the
time and NCCL's bus bandwidth (algorithm bandwidth x 2(P-1)/P for all-reduce, x (P-1)/P for
each half of the pair), the number that predicts how a step scales (docs/multi_gpu.md).

  make build/cuda_emu/dev/nccl_all_reduce && mpirun -np 2 ./build/cuda_emu/dev/nccl_all_reduce
  make build/cuda/nvcc-dev/nccl_all_reduce && mpirun -np 8 ./build/cuda/nvcc-dev/nccl_all_reduce

With one rank NCCL copies nothing: the times then show NCCL's fixed cost, not a bandwidth.
*/
#include "dev_common.cuh"

#include <mpi.h>
#include <nccl.h>

static int rank = 0, nranks = 1;

static ncclDataType_t nccl_type(void) {
#ifdef ENABLE_FP32
    return ncclFloat;
#else
    return ncclBfloat16;
#endif
}

static void nccl_ok(ncclResult_t status, const char *what) {
    if (status != ncclSuccess) fatal("rank %d: %s: %s", rank, what, ncclGetErrorString(status));
}

static void fill(floatX *device, size_t n) {
    float *host = (float *)malloc_check(n * sizeof(float), "values");
    for (size_t i = 0; i < n; i++) host[i] = (float)((rank % 2 + 1) * (int)(i % 7));
    floatX *converted = (floatX *)malloc_check(n * sizeof(floatX), "values");
    floats_to_floatX(converted, host, n);
    cuda_check(cudaMemcpy(device, converted, n * sizeof(floatX), cudaMemcpyHostToDevice));
    free(host);
    free(converted);
}

// Every element must be the sum over ranks r of (r % 2 + 1) * (i % 7).
static int check_sums(const char *what, const floatX *device, size_t n) {
    float *got = download_to_floats(device, n);
    float factor = 0.0f;
    for (int r = 0; r < nranks; r++) factor += (float)(r % 2 + 1);
    size_t bad = 0;
    // exact, any reduction order: each partial sum is an integer <= 6 * (sum of factors) <= 256
    // (bf16's 8 significant bits hold every integer up to 2^8) for up to 28 ranks
    for (size_t i = 0; i < n; i++) bad += got[i] != factor * (float)(i % 7);
    free(got);
    if (bad > 0) printf("  rank %d: %s: %zu of %zu sums wrong\n", rank, what, bad, n);
    return bad == 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    MPI_Comm host_comm;
    int local = 0, devices = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &host_comm);
    MPI_Comm_rank(host_comm, &local);
    MPI_Comm_free(&host_comm);
    cuda_check(cudaGetDeviceCount(&devices));
    cuda_check(cudaSetDevice(local % devices));
    ncclUniqueId id;
    if (rank == 0) nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    ncclComm_t comm;
    nccl_ok(ncclCommInitRank(&comm, nranks, id, rank), "ncclCommInitRank");
    cudaStream_t stream;
    cuda_check(cudaStreamCreate(&stream));
    if (rank == 0) {
        printf("%d rank(s), %s collectives of %s values\n", nranks,
               DEV_EMULATED ? "emulated (MPI)" : "NCCL", PRECISION_NAME);
    }
    // up to 124M parameters' gradients; the emulation checks small sizes only
    const size_t sizes[] = {1 << 12, 1 << 16, 1 << 20, 1 << 24, 124475904};
    int num_sizes = DEV_EMULATED ? 2 : 5, repeats = DEV_EMULATED ? 1 : 20;
    size_t largest = sizes[num_sizes - 1];
    size_t padded = (largest + nranks - 1) / nranks * nranks;
    floatX *buffer = (floatX *)cuda_malloc_check(padded * sizeof(floatX), "buffer");
    int ok = 1;
    for (int s = 0; s < num_sizes; s++) {
        size_t n = (sizes[s] + nranks - 1) / nranks * nranks, shard = n / nranks;
        double bytes = (double)n * sizeof(floatX);
        fill(buffer, n);
        nccl_ok(ncclAllReduce(buffer, buffer, n, nccl_type(), ncclSum, comm, stream),
                "ncclAllReduce");
        cuda_check(cudaStreamSynchronize(stream));
        ok &= check_sums("all-reduce", buffer, n);
        fill(buffer, n);
        nccl_ok(ncclReduceScatter(buffer, buffer + rank * shard, shard, nccl_type(), ncclSum, comm,
                                  stream),
                "ncclReduceScatter");
        nccl_ok(ncclAllGather(buffer + rank * shard, buffer, shard, nccl_type(), comm, stream),
                "ncclAllGather");
        cuda_check(cudaStreamSynchronize(stream));
        ok &= check_sums("reduce-scatter + all-gather", buffer, n);
        float all_reduce_ms = time_ms(
            [&] {
                nccl_ok(ncclAllReduce(buffer, buffer, n, nccl_type(), ncclSum, comm, stream),
                        "ncclAllReduce");
                cuda_check(cudaStreamSynchronize(stream));
            },
            repeats);
        float pair_ms = time_ms(
            [&] {
                nccl_ok(ncclReduceScatter(buffer, buffer + rank * shard, shard, nccl_type(),
                                          ncclSum, comm, stream),
                        "ncclReduceScatter");
                nccl_ok(
                    ncclAllGather(buffer + rank * shard, buffer, shard, nccl_type(), comm, stream),
                    "ncclAllGather");
                cuda_check(cudaStreamSynchronize(stream));
            },
            repeats);
        double factor = nranks > 1 ? 2.0 * (nranks - 1) / nranks : 0.0;
        if (rank == 0) {
            printf("  %10zu values (%7.1f MB) | all-reduce %9.3f ms, busbw %7.1f GB/s | "
                   "reduce-scatter + all-gather %9.3f ms, busbw %7.1f GB/s%s\n",
                   n, bytes / 1e6, all_reduce_ms, factor * bytes / (all_reduce_ms * 1e-3) / 1e9,
                   pair_ms, factor * bytes / (pair_ms * 1e-3) / 1e9,
                   DEV_EMULATED ? " (emulated: not a GPU time)" : "");
        }
    }
    int all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rank == 0) printf("%s: every sum exact on every rank\n", all_ok ? "ok" : "FAIL");
    cuda_check(cudaFree(buffer));
    cuda_check(cudaStreamDestroy(stream));
    nccl_ok(ncclCommDestroy(comm), "ncclCommDestroy");
    MPI_Finalize();
    return all_ok ? 0 : 1;
}
