// NCCL collectives on the emulation's MPI stand-in (llmc/cuda_emu/emu_nccl.h); also compiles
// against the real NCCL with nvcc. Run with `mpirun -np 2` (or more ranks): every check is
// evaluated on all ranks, rank 0 prints one "ok - " / "FAIL - " line per check.
#include "emu_check.cuh"

#include <mpi.h>
#include <nccl.h>

#include <vector>

static void nccl_check_at(ncclResult_t result, const char *file, int line) {
    if (result != ncclSuccess)
        fatal("NCCL error at %s:%d: %s", file, line, ncclGetErrorString(result));
}
#define nccl_check(call) nccl_check_at((call), __FILE__, __LINE__)

static int rank = 0, nranks = 1;

// A check passes when it passes on every rank; rank 0 reports it.
static void check_all_ranks(bool condition, const char *what) {
    int mine = condition ? 1 : 0, everyone = 0;
    MPI_Allreduce(&mine, &everyone, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rank == 0) check(everyone == 1, "%d ranks: %s", nranks, what);
}

template <typename T> static std::vector<T> run_collective_result(T *device, size_t n) {
    std::vector<T> host(n);
    to_host(host.data(), device, n);
    return host;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    int devices = 0;
    cuda_check(cudaGetDeviceCount(&devices));
    cuda_check(cudaSetDevice(rank % devices));
    ncclUniqueId id;
    if (rank == 0) nccl_check(ncclGetUniqueId(&id));
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    ncclComm_t comm;
    nccl_check(ncclCommInitRank(&comm, nranks, id, rank));
    const size_t n = 1000; // small integers: every sum is exact in float and in bf16

    std::vector<float> values(n);
    for (size_t i = 0; i < n; i++) values[i] = (float)((rank + 1) * (int)(i % 37));
    float *d_values = to_device(values.data(), n);
    float *d_sum = (float *)cuda_malloc_check(n * sizeof(float), "sum");
    nccl_check(ncclAllReduce(d_values, d_sum, n, ncclFloat, ncclSum, comm, 0));
    std::vector<float> sum = run_collective_result(d_sum, n);
    int wrong = 0;
    int rank_sum = nranks * (nranks + 1) / 2; // sum of (r + 1)
    // exact: integers <= 36 * nranks (nranks + 1) / 2 < 2^24, so every partial sum is exact
    for (size_t i = 0; i < n; i++) wrong += sum[i] != (float)(rank_sum * (int)(i % 37));
    check_all_ranks(wrong == 0, "ncclAllReduce sum (fp32) is exact");

    nccl_check(ncclAllReduce(d_values, d_values, n, ncclFloat, ncclMax, comm, 0)); // in place
    std::vector<float> largest = run_collective_result(d_values, n);
    wrong = 0;
    for (size_t i = 0; i < n; i++) wrong += largest[i] != (float)(nranks * (int)(i % 37));
    check_all_ranks(wrong == 0, "ncclAllReduce max (fp32, in place)");

    std::vector<__nv_bfloat16> halves(n);
    for (size_t i = 0; i < n; i++) halves[i] = __float2bfloat16((float)(rank + (int)(i % 50)));
    __nv_bfloat16 *d_halves = to_device(halves.data(), n);
    nccl_check(ncclAllReduce(d_halves, d_halves, n, ncclBfloat16, ncclSum, comm, 0));
    std::vector<__nv_bfloat16> half_sum = run_collective_result(d_halves, n);
    wrong = 0;
    int rank_index_sum = nranks * (nranks - 1) / 2;
    // exact for up to 5 ranks: partial sums are integers <= 51 * nranks <= 256 = 2^8 (bf16 holds
    // every integer up to 2^8; above it only even ones)
    for (size_t i = 0; i < n; i++) {
        wrong += __bfloat162float(half_sum[i]) != (float)(rank_index_sum + nranks * (int)(i % 50));
    }
    check_all_ranks(wrong == 0, "ncclAllReduce sum (bf16, in place)");

    // every rank must hold the same bits after an average with rounding
    for (size_t i = 0; i < n; i++) values[i] = 1.0f / (float)(rank + 3) + (float)i * 1e-3f;
    cuda_check(cudaMemcpy(d_values, values.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    nccl_check(ncclAllReduce(d_values, d_sum, n, ncclFloat, ncclAvg, comm, 0));
    std::vector<float> average = run_collective_result(d_sum, n);
    std::vector<float> rank0_average(average);
    MPI_Bcast(rank0_average.data(), (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    wrong = 0;
    for (size_t i = 0; i < n; i++) {
        float expected = 0.0f;
        for (int r = 0; r < nranks; r++) expected += 1.0f / (float)(r + 3) + (float)i * 1e-3f;
        expected /= (float)nranks;
        // both sides sum nranks positive terms (each rounded <= 2u when formed, FMA or not) in
        // their own order ((nranks - 1)u) and divide (u), or (real NCCL) pre-multiply by a
        // rounded 1 / nranks (2u): each within (nranks + 3)u of the exact mean, u = 2^-24; one u
        // more for second-order terms
        float tolerance = (float)(2 * nranks + 7) * 0x1p-24f * fabsf(expected);
        wrong += fabsf(average[i] - expected) > tolerance;
    }
    check_all_ranks(wrong == 0 &&
                        memcmp(average.data(), rank0_average.data(), n * sizeof(float)) == 0,
                    "ncclAllReduce avg is the mean, and every rank gets the same bits");

    // reduce-scatter: rank r gets the sum of block r of every rank's buffer
    const size_t block = 64;
    std::vector<float> blocks(block * nranks);
    for (size_t i = 0; i < blocks.size(); i++) blocks[i] = (float)(rank * 1000 + (int)i);
    float *d_blocks = to_device(blocks.data(), blocks.size());
    float *d_scattered = (float *)cuda_malloc_check(block * sizeof(float), "scattered");
    nccl_check(ncclReduceScatter(d_blocks, d_scattered, block, ncclFloat, ncclSum, comm, 0));
    std::vector<float> scattered = run_collective_result(d_scattered, block);
    wrong = 0;
    for (size_t i = 0; i < block; i++) {
        float expected = 0.0f; // exact: integers below 2^24
        for (int r = 0; r < nranks; r++) expected += (float)(r * 1000 + (int)(rank * block + i));
        wrong += scattered[i] != expected;
    }
    check_all_ranks(wrong == 0, "ncclReduceScatter sum: each rank gets the sum of its block");

    // all-gather, in place: rank r's block sits at offset r * block of the output
    for (size_t i = 0; i < block; i++) blocks[rank * block + i] = (float)(rank * 7 + (int)i);
    cuda_check(
        cudaMemcpy(d_blocks, blocks.data(), blocks.size() * sizeof(float), cudaMemcpyHostToDevice));
    nccl_check(ncclAllGather(d_blocks + rank * block, d_blocks, block, ncclFloat, comm, 0));
    std::vector<float> gathered = run_collective_result(d_blocks, blocks.size());
    wrong = 0;
    for (int r = 0; r < nranks; r++) {
        for (size_t i = 0; i < block; i++)
            wrong += gathered[r * block + i] != (float)(r * 7 + (int)i);
    }
    check_all_ranks(wrong == 0, "ncclAllGather (in place) puts rank r's block at r * count");

    int root = nranks - 1;
    int token[4] = {rank, rank + 1, rank + 2, rank + 3};
    int *d_token = to_device(token, 4);
    nccl_check(ncclBroadcast(d_token, d_token, 4, ncclInt, root, comm, 0));
    to_host(token, d_token, 4);
    check_all_ranks(token[0] == root && token[3] == root + 3, "ncclBroadcast from the last rank");

    // reduce, in place, to the last rank (ZeRO-1 with Muon: each range to its owner): the root
    // gets the sum, the others keep their own values
    int sums[3] = {rank, 10 * rank, 100 + rank};
    int *d_sums = to_device(sums, 3);
    nccl_check(ncclReduce(d_sums, d_sums, 3, ncclInt, ncclSum, root, comm, 0));
    to_host(sums, d_sums, 3);
    int rank_total = nranks * (nranks - 1) / 2;
    int reduced_ok = rank == root ? sums[0] == rank_total && sums[1] == 10 * rank_total &&
                                        sums[2] == 100 * nranks + rank_total
                                  : sums[0] == rank && sums[1] == 10 * rank;
    check_all_ranks(reduced_ok, "ncclReduce (in place) to the last rank: only the root sums");

#ifdef LLMC_CUDA_EMU
    std::vector<float> host(n, 1.0f);
    ncclResult_t refused = ncclAllReduce(host.data(), d_sum, n, ncclFloat, ncclSum, comm, 0);
    check_all_ranks(refused == ncclInvalidArgument,
                    "a host buffer given to ncclAllReduce is refused (ncclInvalidArgument)");
#endif

    nccl_check(ncclCommDestroy(comm));
    cuda_check(cudaFree(d_values));
    cuda_check(cudaFree(d_sum));
    cuda_check(cudaFree(d_halves));
    cuda_check(cudaFree(d_blocks));
    cuda_check(cudaFree(d_scattered));
    cuda_check(cudaFree(d_token));
    int failed_anywhere = checks_failed;
    MPI_Bcast(&failed_anywhere, 1, MPI_INT, 0, MPI_COMM_WORLD);
    int status = rank == 0 ? check_summary() : (failed_anywhere != 0);
    MPI_Finalize();
    return status;
}
