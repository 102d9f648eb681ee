// The NCCL subset llmc needs, for the CPU emulation, over MPI: each MPI rank is one emulated GPU
// (`mpirun -np 2` runs two). An emulated build that adds -Illmc/cuda_emu/include and MPI's
// compile and link flags gets this from `#include <nccl.h>` (include/nccl.h forwards here), so
// the same source builds against the real NCCL with nvcc. Collectives are blocking and
// deterministic: every rank gathers all contributions and reduces them in rank order (bf16 in
// float), so all ranks get identical bits. Buffers must be device memory (cudaMalloc), as NCCL
// requires; anything else is ncclInvalidArgument.
#ifndef LLMC_CUDA_EMU_NCCL_H
#define LLMC_CUDA_EMU_NCCL_H

#include <mpi.h>

#include <vector>

#include "emu_bf16.h"
#include "emu_runtime.h"

typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
    ncclNumResults = 8
} ncclResult_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;

typedef enum {
    ncclInt8 = 0,
    ncclChar = 0,
    ncclUint8 = 1,
    ncclInt32 = 2,
    ncclInt = 2,
    ncclUint32 = 3,
    ncclInt64 = 4,
    ncclUint64 = 5,
    ncclFloat16 = 6,
    ncclHalf = 6,
    ncclFloat32 = 7,
    ncclFloat = 7,
    ncclFloat64 = 8,
    ncclDouble = 8,
    ncclBfloat16 = 9,
} ncclDataType_t;

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
    char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

struct llmc_emu_nccl_comm {
    MPI_Comm mpi;
    int rank, nranks;
};
typedef llmc_emu_nccl_comm *ncclComm_t;

namespace llmc_emu {

inline size_t nccl_type_size(ncclDataType_t type) {
    switch (type) {
    case ncclInt8:
    case ncclUint8: return 1;
    case ncclFloat16:
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32: return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64: return 8;
    default: return 0;
    }
}

template <typename T> inline T nccl_combine(T a, T b, ncclRedOp_t op) {
    switch (op) {
    case ncclProd: return a * b;
    case ncclMax: return a < b ? b : a;
    case ncclMin: return b < a ? b : a;
    default: return a + b; // ncclSum, ncclAvg (divided afterwards)
    }
}

// out[i] = op over ranks r (in rank order) of in[r * stride + i], for i < count
template <typename T, typename Acc>
inline void nccl_reduce_as(void *out, const void *in, size_t count, size_t stride, int nranks,
                           ncclRedOp_t op) {
    const T *src = static_cast<const T *>(in);
    T *dst = static_cast<T *>(out);
    for (size_t i = 0; i < count; i++) {
        Acc acc = (Acc)src[i];
        for (int r = 1; r < nranks; r++) acc = nccl_combine<Acc>(acc, (Acc)src[r * stride + i], op);
        if (op == ncclAvg) acc = acc / (Acc)nranks;
        dst[i] = (T)acc;
    }
}

inline ncclResult_t nccl_reduce(void *out, const void *in, size_t count, size_t stride, int nranks,
                                ncclDataType_t type, ncclRedOp_t op) {
    switch (type) {
    case ncclInt8: nccl_reduce_as<int8_t, int8_t>(out, in, count, stride, nranks, op); break;
    case ncclUint8: nccl_reduce_as<uint8_t, uint8_t>(out, in, count, stride, nranks, op); break;
    case ncclInt32: nccl_reduce_as<int32_t, int32_t>(out, in, count, stride, nranks, op); break;
    case ncclUint32: nccl_reduce_as<uint32_t, uint32_t>(out, in, count, stride, nranks, op); break;
    case ncclInt64: nccl_reduce_as<int64_t, int64_t>(out, in, count, stride, nranks, op); break;
    case ncclUint64: nccl_reduce_as<uint64_t, uint64_t>(out, in, count, stride, nranks, op); break;
    case ncclFloat32: nccl_reduce_as<float, float>(out, in, count, stride, nranks, op); break;
    case ncclFloat64: nccl_reduce_as<double, double>(out, in, count, stride, nranks, op); break;
    case ncclBfloat16:
        nccl_reduce_as<__nv_bfloat16, float>(out, in, count, stride, nranks, op);
        break;
    default: return ncclInvalidArgument; // half: not needed by llmc
    }
    return ncclSuccess;
}

inline bool nccl_device_buffer(const void *p, size_t bytes) {
    return bytes == 0 || is_device_range(p, bytes);
}

inline bool nccl_valid(ncclComm_t comm, ncclDataType_t type, ncclRedOp_t op = ncclSum) {
    return comm != nullptr && nccl_type_size(type) != 0 && (int)op >= 0 && (int)op <= ncclAvg;
}

} // namespace llmc_emu

inline const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    default: return "unknown result code";
    }
}

inline ncclResult_t ncclGetVersion(int *version) {
    if (version == nullptr) return ncclInvalidArgument;
    *version = 0; // not NCCL
    return ncclSuccess;
}

// Ranks meet through MPI_COMM_WORLD; the id carries a random nonce after its tag, and
// ncclCommInitRank checks that every rank was handed the same id (so a program's own exchange of
// the id, over TCP or a file, is tested too).
inline ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (id == nullptr) return ncclInvalidArgument;
    memset(id, 0, sizeof(*id));
    memcpy(id->internal, "llmc-emu-mpi", 12);
    FILE *urandom = fopen("/dev/urandom", "rb");
    if (urandom == nullptr || fread(id->internal + 16, 1, 16, urandom) != 16) {
        if (urandom != nullptr) fclose(urandom);
        return ncclSystemError;
    }
    fclose(urandom);
    return ncclSuccess;
}

// NCCL rank r is MPI rank r of MPI_COMM_WORLD (MPI_Init is called here if the program has not).
inline ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    if (comm == nullptr || memcmp(id.internal, "llmc-emu-mpi", 12) != 0) return ncclInvalidArgument;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        MPI_Init(nullptr, nullptr);
        atexit([] { // MPI_Finalize at exit, unless the program did (it owns MPI then)
            int finalized = 0;
            MPI_Finalized(&finalized);
            if (!finalized) MPI_Finalize();
        });
    }
    int world_rank = 0, world_size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (nranks != world_size || rank != world_rank) return ncclInvalidUsage;
    std::vector<char> ids((size_t)world_size * NCCL_UNIQUE_ID_BYTES);
    MPI_Allgather(id.internal, NCCL_UNIQUE_ID_BYTES, MPI_BYTE, ids.data(), NCCL_UNIQUE_ID_BYTES,
                  MPI_BYTE, MPI_COMM_WORLD);
    for (int r = 0; r < world_size; r++) {
        if (memcmp(ids.data() + (size_t)r * NCCL_UNIQUE_ID_BYTES, id.internal,
                   NCCL_UNIQUE_ID_BYTES) != 0) {
            return ncclInvalidUsage; // ranks were handed different ids
        }
    }
    llmc_emu_nccl_comm *c = new llmc_emu_nccl_comm;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi) != MPI_SUCCESS) {
        delete c;
        return ncclSystemError;
    }
    c->rank = rank;
    c->nranks = nranks;
    *comm = c;
    return ncclSuccess;
}

inline ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (comm == nullptr) return ncclInvalidArgument;
    MPI_Comm_free(&comm->mpi);
    delete comm;
    return ncclSuccess;
}
// Collectives are blocking here, so there is never an asynchronous error to report.
inline ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error) {
    if (comm == nullptr || async_error == nullptr) return ncclInvalidArgument;
    *async_error = ncclSuccess;
    return ncclSuccess;
}
inline ncclResult_t ncclCommAbort(ncclComm_t comm) {
    if (comm == nullptr) return ncclInvalidArgument;
    MPI_Abort(comm->mpi, 1);
    return ncclSuccess;
}
inline ncclResult_t ncclCommFinalize(ncclComm_t comm) {
    return comm == nullptr ? ncclInvalidArgument : ncclSuccess;
}
inline ncclResult_t ncclCommCount(const ncclComm_t comm, int *count) {
    if (comm == nullptr || count == nullptr) return ncclInvalidArgument;
    *count = comm->nranks;
    return ncclSuccess;
}
inline ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank) {
    if (comm == nullptr || rank == nullptr) return ncclInvalidArgument;
    *rank = comm->rank;
    return ncclSuccess;
}
// Collectives complete before they return, so grouping changes nothing.
inline ncclResult_t ncclGroupStart() {
    return ncclSuccess;
}
inline ncclResult_t ncclGroupEnd() {
    return ncclSuccess;
}

inline ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                                  ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                                  cudaStream_t stream) {
    using namespace llmc_emu;
    size_t bytes = count * nccl_type_size(type);
    if (!nccl_valid(comm, type, op) || !valid_stream(stream)) return ncclInvalidArgument;
    if (!nccl_device_buffer(sendbuff, bytes) || !nccl_device_buffer(recvbuff, bytes)) {
        return ncclInvalidArgument;
    }
    std::vector<unsigned char> all(bytes * comm->nranks);
    if (MPI_Allgather(sendbuff, (int)bytes, MPI_BYTE, all.data(), (int)bytes, MPI_BYTE,
                      comm->mpi) != MPI_SUCCESS) {
        return ncclSystemError;
    }
    return nccl_reduce(recvbuff, all.data(), count, count, comm->nranks, type, op);
}

// Only root's recvbuff receives the reduction (in rank order, as ncclAllReduce's).
inline ncclResult_t ncclReduce(const void *sendbuff, void *recvbuff, size_t count,
                               ncclDataType_t type, ncclRedOp_t op, int root, ncclComm_t comm,
                               cudaStream_t stream) {
    using namespace llmc_emu;
    size_t bytes = count * nccl_type_size(type);
    if (!nccl_valid(comm, type, op) || !valid_stream(stream) || root < 0 || root >= comm->nranks) {
        return ncclInvalidArgument;
    }
    if (!nccl_device_buffer(sendbuff, bytes) ||
        (comm->rank == root && !nccl_device_buffer(recvbuff, bytes))) {
        return ncclInvalidArgument;
    }
    std::vector<unsigned char> all(comm->rank == root ? bytes * comm->nranks : 0);
    if (MPI_Gather(sendbuff, (int)bytes, MPI_BYTE, all.data(), (int)bytes, MPI_BYTE, root,
                   comm->mpi) != MPI_SUCCESS) {
        return ncclSystemError;
    }
    if (comm->rank != root) return ncclSuccess;
    return nccl_reduce(recvbuff, all.data(), count, count, comm->nranks, type, op);
}

// sendbuff holds nranks blocks of recvcount; rank r receives the reduction of block r.
inline ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount,
                                      ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                                      cudaStream_t stream) {
    using namespace llmc_emu;
    size_t bytes = recvcount * nccl_type_size(type);
    if (!nccl_valid(comm, type, op) || !valid_stream(stream)) return ncclInvalidArgument;
    if (!nccl_device_buffer(sendbuff, bytes * comm->nranks) ||
        !nccl_device_buffer(recvbuff, bytes)) {
        return ncclInvalidArgument;
    }
    std::vector<unsigned char> mine(bytes * comm->nranks); // block `rank` from every rank
    if (MPI_Alltoall(sendbuff, (int)bytes, MPI_BYTE, mine.data(), (int)bytes, MPI_BYTE,
                     comm->mpi) != MPI_SUCCESS) {
        return ncclSystemError;
    }
    return nccl_reduce(recvbuff, mine.data(), recvcount, recvcount, comm->nranks, type, op);
}

inline ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount,
                                  ncclDataType_t type, ncclComm_t comm, cudaStream_t stream) {
    using namespace llmc_emu;
    size_t bytes = sendcount * nccl_type_size(type);
    if (!nccl_valid(comm, type) || !valid_stream(stream)) return ncclInvalidArgument;
    if (!nccl_device_buffer(sendbuff, bytes) ||
        !nccl_device_buffer(recvbuff, bytes * comm->nranks)) {
        return ncclInvalidArgument;
    }
    std::vector<unsigned char> all(bytes * comm->nranks); // sendbuff may lie inside recvbuff
    if (MPI_Allgather(sendbuff, (int)bytes, MPI_BYTE, all.data(), (int)bytes, MPI_BYTE,
                      comm->mpi) != MPI_SUCCESS) {
        return ncclSystemError;
    }
    memcpy(recvbuff, all.data(), all.size());
    return ncclSuccess;
}

inline ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count,
                                  ncclDataType_t type, int root, ncclComm_t comm,
                                  cudaStream_t stream) {
    using namespace llmc_emu;
    size_t bytes = count * nccl_type_size(type);
    if (!nccl_valid(comm, type) || !valid_stream(stream) || root < 0 || root >= comm->nranks) {
        return ncclInvalidArgument;
    }
    if ((comm->rank == root && !nccl_device_buffer(sendbuff, bytes)) ||
        !nccl_device_buffer(recvbuff, bytes)) {
        return ncclInvalidArgument;
    }
    if (comm->rank == root && sendbuff != recvbuff) memmove(recvbuff, sendbuff, bytes);
    return MPI_Bcast(recvbuff, (int)bytes, MPI_BYTE, root, comm->mpi) == MPI_SUCCESS
               ? ncclSuccess
               : ncclSystemError;
}
inline ncclResult_t ncclBcast(void *buff, size_t count, ncclDataType_t type, int root,
                              ncclComm_t comm, cudaStream_t stream) {
    return ncclBroadcast(buff, buff, count, type, root, comm, stream);
}

#endif // LLMC_CUDA_EMU_NCCL_H
