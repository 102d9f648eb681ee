// Data parallelism for train_gpt2cu: one process per GPU, NCCL for the collectives, and three ways
// for the processes to meet (docs/multi_gpu.md):
//   mpi: launched by mpirun or srun --mpi=pmix; MPI gives rank, size, the ranks on this host, and
//        carries the NCCL id from rank 0 to the others;
//   tcp: rank 0 listens on --init-server HOST:PORT and hands the id to every rank that connects;
//   fs:  rank 0 writes the id into --init-dir (a filesystem all nodes share), the others wait for
//   it.
// With tcp and fs, rank and size come from --process-rank / --num-processes or the launcher's
// environment (Slurm, OpenMPI), so no MPI library is used at run time.
// Every wait on a collective has a deadline (--nccl-timeout) and checks NCCL's asynchronous errors:
// a rank that dies or hangs ends the job with a line naming this rank and what it waited for.
// Builds without MPI/NCCL (no LLMC_MULTI_GPU) run one process and refuse more.
#ifndef LLMC_MULTI_GPU_CUH
#define LLMC_MULTI_GPU_CUH

#include "cuda_common.cuh"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "utils.h"

#ifdef LLMC_MULTI_GPU
#include <mpi.h>
#include <nccl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#endif

typedef struct {
    const char *init_method; // mpi, tcp, fs
    const char *init_server; // tcp: HOST:PORT of rank 0
    const char *init_dir;    // fs: shared directory for the NCCL id
    int num_processes;       // tcp/fs: -1 = from the environment
    int process_rank;        // tcp/fs: -1 = from the environment
    int gpus_per_node;       // -1 = the visible device count
    int timeout_seconds;     // deadline of every wait on a collective
    int zero_stage;          // 0: replicated optimizer state; 1: sharded (ZeRO-1)
} MultiGpuOptions;

typedef struct {
    int process_rank, num_processes, local_device;
    int zero_stage;
    // ZeRO-1's ranges cut only between Muon's matrices (--optimizer muon; llmc/zero_shards.h), set
    // by the trainer before it builds the model
    int whole_matrix_shards;
    int use_nccl; // 0: one process, nothing to communicate
    int use_mpi;  // MPI_Init was called here (MPI_Finalize at the end)
    double timeout_seconds;
    char method[8];
#ifdef LLMC_MULTI_GPU
    ncclComm_t comm;
#endif
    cudaStream_t stream;    // collectives, so they overlap with the compute stream
    cudaEvent_t ready;      // recorded on the compute stream before a collective reads its data
    double *scratch;        // device, MULTI_GPU_SCRATCH doubles for host-value sums
    unsigned char id_check; // a byte of the NCCL id, printed so runs can see all ranks agree
} MultiGpu;

#define MULTI_GPU_SCRATCH 16

static inline void multi_gpu_options_defaults(MultiGpuOptions *o) {
    o->init_method = "mpi";
    o->init_server = "";
    o->init_dir = "";
    o->num_processes = -1;
    o->process_rank = -1;
    o->gpus_per_node = -1;
    o->timeout_seconds = 600;
    o->zero_stage = 0;
}

// Appends the multi-GPU options to a CLI table; returns how many.
static inline int multi_gpu_options_table(MultiGpuOptions *o, CliOption *table) {
    const CliOption options[] = {
        {'z', "zero", OPTION_INT, &o->zero_stage,
         "0: every rank keeps all optimizer state; 1: ZeRO-1, optimizer state and master weights "
         "sharded across ranks (with --optimizer muon each matrix whole on one rank)"},
        {0, "init-method", OPTION_STRING, &o->init_method,
         "how ranks meet: mpi (mpirun, srun --mpi=pmix), tcp (--init-server), fs (--init-dir)"},
        {0, "init-server", OPTION_STRING, &o->init_server, "tcp: HOST:PORT where rank 0 listens"},
        {0, "init-dir", OPTION_STRING, &o->init_dir,
         "fs: directory shared by all nodes, one per job"},
        {0, "num-processes", OPTION_INT, &o->num_processes,
         "tcp/fs: number of ranks (-1: SLURM_NTASKS, OMPI_COMM_WORLD_SIZE, WORLD_SIZE)"},
        {0, "process-rank", OPTION_INT, &o->process_rank,
         "tcp/fs: this rank (-1: SLURM_PROCID, OMPI_COMM_WORLD_RANK, RANK)"},
        {0, "gpus-per-node", OPTION_INT, &o->gpus_per_node,
         "tcp/fs: GPUs per node when no local rank is in the environment (-1: all visible)"},
        {0, "nccl-timeout", OPTION_INT, &o->timeout_seconds,
         "seconds a collective may take before the job ends naming the rank"},
    };
    int count = (int)(sizeof(options) / sizeof(options[0]));
    for (int i = 0; i < count; i++) table[i] = options[i];
    return count;
}

// The first of the environment variables names[] that is set, as an int; fallback otherwise.
static inline int multi_gpu_env_int(const char *const *names, int count, int fallback) {
    for (int i = 0; i < count; i++) {
        const char *value = getenv(names[i]);
        if (value != NULL && value[0] != '\0') {
            char *end = NULL;
            long parsed = strtol(value, &end, 10);
            if (*end != '\0' || parsed < 0 || parsed > 1000000) {
                fatal("bad value '%s' in environment variable %s: expected a count", value,
                      names[i]);
            }
            return (int)parsed;
        }
    }
    return fallback;
}

#define MULTI_GPU_ENV_INT(names, fallback)                                                         \
    multi_gpu_env_int((names), (int)(sizeof(names) / sizeof((names)[0])), (fallback))

// set by mpirun (OpenMPI, MPICH) and srun --mpi=pmix: MPI can be initialised
static const char *const multi_gpu_launcher_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                                                      "PMIX_RANK"};
static const char *const multi_gpu_srun_tasks_vars[] = {"SLURM_STEP_NUM_TASKS"};
static const char *const multi_gpu_size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                                                  "SLURM_NTASKS", "WORLD_SIZE"};
#ifndef LLMC_MULTI_GPU
static const char multi_gpu_not_built[] =
    "this train_gpt2cu was built without MPI and NCCL (see the Makefile: MULTI_GPU): it runs one "
    "process";
#endif
static const char *const multi_gpu_rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK",
                                                  "SLURM_PROCID", "RANK"};
static const char *const multi_gpu_local_vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                                   "SLURM_LOCALID", "LOCAL_RANK"};

#ifdef LLMC_MULTI_GPU
static inline void nccl_check_at(ncclResult_t status, const MultiGpu *mg, const char *file,
                                 int line) {
    if (status != ncclSuccess) {
        fatal("rank %d: NCCL error at %s:%d: %s", mg->process_rank, file, line,
              ncclGetErrorString(status));
    }
}
#define nccl_check(mg, call) nccl_check_at((call), (mg), __FILE__, __LINE__)

static inline ncclDataType_t nccl_floatX(void) {
#ifdef ENABLE_FP32
    return ncclFloat;
#else
    return ncclBfloat16;
#endif
}

// HOST:PORT into its parts; fatal with the flag's name otherwise.
static inline void multi_gpu_parse_server(const char *server, char *host, size_t size, char *port) {
    const char *colon = strrchr(server, ':');
    if (server[0] == '\0' || colon == NULL || colon == server || colon[1] == '\0' ||
        (size_t)(colon - server) >= size || strlen(colon + 1) > 5) {
        fatal("bad value '%s' for --init-server: expected HOST:PORT (rank 0's address)", server);
    }
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = '\0';
    strcpy(port, colon + 1);
    char *end = NULL;
    long p = strtol(port, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535) {
        fatal("bad value '%s' for --init-server: port must be 1..65535", server);
    }
}

// Sends or receives exactly bytes on a socket before the deadline; returns 0 on failure.
static inline int multi_gpu_socket_io(int fd, void *data, size_t bytes, int sending,
                                      double deadline) {
    unsigned char *p = (unsigned char *)data;
    while (bytes > 0) {
        int wait_ms = (int)((deadline - now_seconds()) * 1e3);
        if (wait_ms <= 0) return 0;
        struct pollfd pfd = {fd, (short)(sending ? POLLOUT : POLLIN), 0};
        if (poll(&pfd, 1, wait_ms) <= 0) return 0;
        ssize_t n = sending ? send(fd, p, bytes, MSG_NOSIGNAL) : recv(fd, p, bytes, 0);
        if (n <= 0) return 0;
        p += n;
        bytes -= (size_t)n;
    }
    return 1;
}

// What rank 0 sends each rank that connects: a magic, the job's size, then the NCCL id. A rank
// of another job (other size) is refused rather than joined.
typedef struct {
    uint32_t magic;
    int32_t num_processes;
    ncclUniqueId id;
} MultiGpuHello;
#define MULTI_GPU_HELLO_MAGIC 0x6c6c6d63u

static inline void multi_gpu_tcp_exchange(MultiGpu *mg, const char *server, ncclUniqueId *id) {
    char host[256], port[8];
    multi_gpu_parse_server(server, host, sizeof(host), port);
    double deadline = now_seconds() + mg->timeout_seconds;
    struct addrinfo hints, *addresses = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (mg->process_rank == 0) {
        hints.ai_flags = AI_PASSIVE;
        int status = getaddrinfo(host, port, &hints, &addresses);
        if (status != 0) fatal("rank 0: --init-server %s: %s", server, gai_strerror(status));
        int listener = socket(addresses->ai_family, addresses->ai_socktype, 0);
        int one = 1;
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (listener < 0 || bind(listener, addresses->ai_addr, addresses->ai_addrlen) != 0 ||
            listen(listener, mg->num_processes) != 0) {
            fatal("rank 0: cannot listen on %s (--init-server): %s", server, strerror(errno));
        }
        freeaddrinfo(addresses);
        MultiGpuHello hello = {MULTI_GPU_HELLO_MAGIC, mg->num_processes, *id};
        for (int joined = 1; joined < mg->num_processes; joined++) {
            int wait_ms = (int)((deadline - now_seconds()) * 1e3);
            struct pollfd pfd = {listener, POLLIN, 0};
            if (wait_ms <= 0 || poll(&pfd, 1, wait_ms) <= 0) {
                fatal("rank 0: only %d of %d ranks connected to %s within %d s (--nccl-timeout)",
                      joined, mg->num_processes, server, (int)mg->timeout_seconds);
            }
            int peer = accept(listener, NULL, NULL);
            if (peer < 0 || !multi_gpu_socket_io(peer, &hello, sizeof(hello), 1, deadline)) {
                fatal("rank 0: sending the NCCL id to a rank on %s failed: %s", server,
                      strerror(errno));
            }
            close(peer);
        }
        close(listener);
        return;
    }
    // the other ranks: rank 0 may start later, so retry until the deadline
    for (;;) {
        int fd = -1;
        if (getaddrinfo(host, port, &hints, &addresses) == 0) {
            fd = socket(addresses->ai_family, addresses->ai_socktype, 0);
            if (fd >= 0 && connect(fd, addresses->ai_addr, addresses->ai_addrlen) != 0) {
                close(fd);
                fd = -1;
            }
            freeaddrinfo(addresses);
        }
        if (fd >= 0) {
            MultiGpuHello hello;
            int received = multi_gpu_socket_io(fd, &hello, sizeof(hello), 0, deadline);
            close(fd);
            if (!received || hello.magic != MULTI_GPU_HELLO_MAGIC) {
                fatal("rank %d: %s answered but sent no NCCL id (another service on that port?)",
                      mg->process_rank, server);
            }
            if (hello.num_processes != mg->num_processes) {
                fatal("rank %d: rank 0 at %s runs %d processes, this rank was told %d",
                      mg->process_rank, server, hello.num_processes, mg->num_processes);
            }
            *id = hello.id;
            return;
        }
        if (now_seconds() > deadline) {
            fatal("rank %d: cannot reach rank 0 at %s within %d s (--init-server, --nccl-timeout)",
                  mg->process_rank, server, (int)mg->timeout_seconds);
        }
        usleep(200 * 1000);
    }
}

// The id file of this job in dir: a Slurm job id keeps runs that share a directory apart.
static inline void multi_gpu_id_path(char *out, size_t size, const char *dir) {
    const char *job = getenv("SLURM_JOB_ID");
    snprintf(out, size, "%s/ncclUniqueId%s%s.bin", dir, job != NULL ? "_" : "",
             job != NULL ? job : "");
}

static inline void multi_gpu_fs_exchange(MultiGpu *mg, const char *dir, ncclUniqueId *id) {
    if (dir[0] == '\0') fatal("--init-method fs needs --init-dir DIR (shared by all nodes)");
    char path[4096];
    multi_gpu_id_path(path, sizeof(path), dir);
    if (mg->process_rank == 0) {
        make_dir_check(dir);
        AtomicFile out; // the others see the file only when it is whole
        atomic_open(&out, path);
        fwrite_check(id, sizeof(*id), 1, out.file, path);
        atomic_commit(&out);
        return;
    }
    double deadline = now_seconds() + mg->timeout_seconds;
    for (;;) {
        FILE *file = fopen(path, "rb");
        if (file != NULL) {
            size_t got = fread(id, sizeof(*id), 1, file);
            fclose(file);
            if (got != 1) fatal("rank %d: %s is not an NCCL id file", mg->process_rank, path);
            return;
        }
        if (now_seconds() > deadline) {
            fatal("rank %d: %s did not appear within %d s (is --init-dir shared, and rank 0 up?)",
                  mg->process_rank, path, (int)mg->timeout_seconds);
        }
        usleep(100 * 1000);
    }
}

// Waits for stream while watching the communicator: an NCCL error or the deadline ends the job
// (after aborting the communicator, so no rank stays blocked in it).
static inline void multi_gpu_wait(MultiGpu *mg, cudaStream_t stream, const char *what) {
    double deadline = now_seconds() + mg->timeout_seconds;
    for (;;) {
        cudaError_t status = cudaStreamQuery(stream);
        if (status == cudaSuccess) return;
        if (status != cudaErrorNotReady) cuda_check(status);
        ncclResult_t async_status = ncclSuccess;
        nccl_check(mg, ncclCommGetAsyncError(mg->comm, &async_status));
        if (async_status != ncclSuccess) {
            ncclCommAbort(mg->comm);
            fatal("rank %d: NCCL failed during %s: %s (did another rank die?)", mg->process_rank,
                  what, ncclGetErrorString(async_status));
        }
        if (now_seconds() > deadline) {
            ncclCommAbort(mg->comm);
            fatal("rank %d: %s did not finish within %d s (--nccl-timeout): another rank died or "
                  "hangs",
                  mg->process_rank, what, (int)mg->timeout_seconds);
        }
        usleep(50);
    }
}
#endif // LLMC_MULTI_GPU

// Sets up this process: rank, size, its GPU (cudaSetDevice) and, with more than one rank or a
// launcher, the NCCL communicator. Prints nothing; the trainer reports multi_gpu_describe.
static inline void multi_gpu_init(MultiGpu *mg, const MultiGpuOptions *o, int *argc, char ***argv) {
    memset(mg, 0, sizeof(*mg));
    mg->num_processes = 1;
    mg->zero_stage = o->zero_stage;
    mg->timeout_seconds = o->timeout_seconds;
    if (o->zero_stage != 0 && o->zero_stage != 1) {
        fatal("bad value %d for -z: expected 0 or 1 (ZeRO stage)", o->zero_stage);
    }
    if (o->timeout_seconds < 1)
        fatal("bad value %d for --nccl-timeout: must be >= 1", o->timeout_seconds);
    int is_mpi = strcmp(o->init_method, "mpi") == 0, is_tcp = strcmp(o->init_method, "tcp") == 0;
    int is_fs = strcmp(o->init_method, "fs") == 0;
    if (!is_mpi && !is_tcp && !is_fs) {
        fatal("bad value '%s' for --init-method: expected mpi, tcp or fs", o->init_method);
    }
    snprintf(mg->method, sizeof(mg->method), "%s", o->init_method);
    int device_count = 0;
    cuda_check(cudaGetDeviceCount(&device_count));
    if (device_count < 1) fatal("no CUDA device found");
    int local = 0;
    // launched by mpirun / srun? (a plain ./train_gpt2cu runs alone without touching MPI)
    int launched = MULTI_GPU_ENV_INT(multi_gpu_launcher_vars, -1) >= 0;
    if (is_mpi && !launched && MULTI_GPU_ENV_INT(multi_gpu_srun_tasks_vars, 1) > 1) {
        fatal("srun started %s tasks without MPI: launch with srun --mpi=pmix, or use "
              "--init-method tcp or fs",
              getenv("SLURM_STEP_NUM_TASKS"));
    }
    if (is_mpi && launched) {
#ifdef LLMC_MULTI_GPU
        MPI_Init(argc, argv);
        mg->use_mpi = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &mg->process_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &mg->num_processes);
        MPI_Comm host_comm; // the ranks on this host pick GPUs 0, 1, ... in rank order
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, mg->process_rank, MPI_INFO_NULL,
                            &host_comm);
        MPI_Comm_rank(host_comm, &local);
        MPI_Comm_free(&host_comm);
        mg->use_nccl = 1;
#else
        (void)argc;
        (void)argv;
        fatal("%s", multi_gpu_not_built);
#endif
    } else if (is_tcp || is_fs) {
        mg->num_processes =
            o->num_processes >= 0 ? o->num_processes : MULTI_GPU_ENV_INT(multi_gpu_size_vars, 1);
        mg->process_rank =
            o->process_rank >= 0 ? o->process_rank : MULTI_GPU_ENV_INT(multi_gpu_rank_vars, 0);
        if (mg->num_processes < 1 || mg->process_rank >= mg->num_processes) {
            fatal("rank %d of %d processes: the rank must be below the count (--process-rank, "
                  "--num-processes)",
                  mg->process_rank, mg->num_processes);
        }
        int per_node = o->gpus_per_node > 0 ? o->gpus_per_node : device_count;
        local = MULTI_GPU_ENV_INT(multi_gpu_local_vars, mg->process_rank % per_node);
#ifdef LLMC_MULTI_GPU
        mg->use_nccl = 1;
#else
        if (mg->num_processes > 1) {
            fatal("%s", multi_gpu_not_built);
        }
#endif
    }
#ifdef LLMC_CUDA_EMU
    local = 0; // every process emulates a GPU of its own
#endif
    if (local >= device_count) {
        fatal("rank %d: local rank %d but only %d GPU(s) visible on this node", mg->process_rank,
              local, device_count);
    }
    mg->local_device = local;
    cuda_check(cudaSetDevice(local));
#ifdef LLMC_MULTI_GPU
    if (mg->use_nccl) {
        ncclUniqueId id;
        if (mg->process_rank == 0) nccl_check(mg, ncclGetUniqueId(&id));
        if (mg->use_mpi) {
            MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
        } else if (is_tcp) {
            multi_gpu_tcp_exchange(mg, o->init_server, &id);
        } else {
            multi_gpu_fs_exchange(mg, o->init_dir, &id);
        }
        unsigned char sum = 0;
        for (size_t i = 0; i < sizeof(id.internal); i++) sum ^= (unsigned char)id.internal[i];
        mg->id_check = sum;
        nccl_check(mg, ncclCommInitRank(&mg->comm, mg->num_processes, id, mg->process_rank));
        cuda_check(cudaStreamCreate(&mg->stream));
        cuda_check(cudaEventCreateWithFlags(&mg->ready, cudaEventDisableTiming));
        mg->scratch =
            (double *)cuda_malloc_check(MULTI_GPU_SCRATCH * sizeof(double), "multi-GPU scratch");
    }
#endif
    (void)argc;
    (void)argv;
}

// Sums count (<= MULTI_GPU_SCRATCH) host values over all ranks, in place; every rank gets the same
// bits. A no-op for one process.
static inline void multi_gpu_sum(MultiGpu *mg, double *values, int count, const char *what) {
#ifdef LLMC_MULTI_GPU
    if (!mg->use_nccl) return;
    if (count > MULTI_GPU_SCRATCH) fatal("internal: multi_gpu_sum of %d values", count);
    size_t bytes = (size_t)count * sizeof(double);
    cuda_check(cudaMemcpy(mg->scratch, values, bytes, cudaMemcpyHostToDevice));
    nccl_check(mg, ncclAllReduce(mg->scratch, mg->scratch, (size_t)count, ncclDouble, ncclSum,
                                 mg->comm, mg->stream));
    multi_gpu_wait(mg, mg->stream, what);
    cuda_check(cudaMemcpy(values, mg->scratch, bytes, cudaMemcpyDeviceToHost));
#else
    (void)mg;
    (void)values;
    (void)count;
    (void)what;
#endif
}

// Every rank has reached this point (what names it in a timeout).
static inline void multi_gpu_barrier(MultiGpu *mg, const char *what) {
    double unused = 0.0;
    multi_gpu_sum(mg, &unused, 1, what);
}

// The fs method's id file is removed once every rank has joined (a later job must not read it).
static inline void multi_gpu_after_init(MultiGpu *mg, const MultiGpuOptions *o) {
    if (!mg->use_nccl) return;
    multi_gpu_barrier(mg, "the first barrier after NCCL init");
    if (strcmp(o->init_method, "fs") == 0 && mg->process_rank == 0) {
#ifdef LLMC_MULTI_GPU
        char path[4096];
        multi_gpu_id_path(path, sizeof(path), o->init_dir);
        unlink(path);
#endif
    }
}

static inline void multi_gpu_free(MultiGpu *mg) {
#ifdef LLMC_MULTI_GPU
    if (mg->use_nccl) {
        nccl_check(mg, ncclCommDestroy(mg->comm));
        cuda_check(cudaStreamDestroy(mg->stream));
        cuda_check(cudaEventDestroy(mg->ready));
        cuda_check(cudaFree(mg->scratch));
    }
    if (mg->use_mpi) MPI_Finalize();
#else
    (void)mg;
#endif
}

#endif // LLMC_MULTI_GPU_CUH
