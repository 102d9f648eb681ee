// The CUDA host runtime for the CPU emulation: device memory is host memory that is tracked
// (so copies, memsets and kernel pointer arguments are checked against what was allocated) and
// poisoned with 0xFF bytes (a NaN in fp32 and in bf16) when fresh; streams and events run
// synchronously, with events stamped by the host clock, except the host side of async copies
// with pinned memory, settled at the next host wait; host waits are counted; errors as CUDA
// returns them.
#ifndef LLMC_CUDA_EMU_RUNTIME_H
#define LLMC_CUDA_EMU_RUNTIME_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <vector>

#include "emu_types.h"

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrL2CacheSize = 38,
    cudaDevAttrMaxThreadsPerMultiProcessor = 39,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

#define cudaStreamDefault 0x00u
#define cudaStreamNonBlocking 0x01u
#define cudaEventDefault 0x00u
#define cudaEventBlockingSync 0x01u
#define cudaEventDisableTiming 0x02u
#define cudaHostAllocDefault 0x00u
#define cudaMemAttachGlobal 0x01u

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    size_t sharedMemPerMultiprocessor;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int major;
    int minor;
    int multiProcessorCount;
    int maxThreadsPerMultiProcessor;
    int l2CacheSize;
};

struct llmc_emu_stream {
    unsigned magic;
    unsigned flags;
};
struct llmc_emu_event {
    unsigned magic;
    unsigned flags;
    bool recorded;
    std::chrono::steady_clock::time_point when;
    unsigned long long copies_before; // pinned async copies issued before its record
};
typedef llmc_emu_stream *cudaStream_t;
typedef llmc_emu_event *cudaEvent_t;

namespace llmc_emu {

// Emulation errors (deadlocks, bad masks, bad arguments): one line on stderr, then abort. When
// several worker threads fail at once, only the first one reports.
[[noreturn]] inline void fatal(const char *format, ...) {
    static std::atomic<int> reporting{0};
    if (reporting.exchange(1) != 0) {
        for (;;) pause();
    }
    char message[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    fprintf(stderr, "llmc_emu: %s\n", message);
    fflush(stderr);
    abort();
}

enum class Order { forward, reverse, random };

struct Config {
    Order order = Order::forward;
    unsigned long long seed = 1;
    bool strict = true;
    int workers = 1;
    size_t stack_bytes = 64 << 10;
    int multiprocessors = 4;
    bool stats = false;
    bool waits = false;
};

inline long env_long(const char *name, long fallback, long lo, long hi) {
    const char *text = getenv(name);
    if (text == nullptr || *text == '\0') return fallback;
    char *end = nullptr;
    long value = strtol(text, &end, 10);
    if (*end != '\0' || value < lo || value > hi) {
        fatal("environment variable %s: expected an integer in [%ld, %ld], found '%s'", name, lo,
              hi, text);
    }
    return value;
}

// Read once from the environment: LLMC_EMU_ORDER, LLMC_EMU_SEED, LLMC_EMU_STRICT,
// LLMC_EMU_THREADS, LLMC_EMU_STACK_KB, LLMC_EMU_SMS, LLMC_EMU_STATS, LLMC_EMU_WAITS
// (docs/cuda_emu.md).
inline const Config &config() {
    static const Config parsed = [] {
        Config c;
        const char *order = getenv("LLMC_EMU_ORDER");
        if (order != nullptr && *order != '\0') {
            if (strcmp(order, "forward") == 0)
                c.order = Order::forward;
            else if (strcmp(order, "reverse") == 0)
                c.order = Order::reverse;
            else if (strcmp(order, "random") == 0)
                c.order = Order::random;
            else
                fatal("environment variable LLMC_EMU_ORDER: expected forward, reverse or random, "
                      "found '%s'",
                      order);
        }
        c.seed = (unsigned long long)env_long("LLMC_EMU_SEED", 1, 0, 0x7fffffffffffffffL);
        c.strict = env_long("LLMC_EMU_STRICT", 1, 0, 1) != 0;
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (cores < 1) cores = 1;
        c.workers = (int)env_long("LLMC_EMU_THREADS", cores < 16 ? cores : 16, 1, 256);
#ifdef __SANITIZE_ADDRESS__
        long default_stack_kb = 512; // ASan's redzones make frames several times larger
#else
        long default_stack_kb = 64;
#endif
        c.stack_bytes = (size_t)env_long("LLMC_EMU_STACK_KB", default_stack_kb, 16, 1 << 20) << 10;
        c.multiprocessors = (int)env_long("LLMC_EMU_SMS", 4, 1, 1024);
        c.stats = env_long("LLMC_EMU_STATS", 0, 0, 1) != 0;
        c.waits = env_long("LLMC_EMU_WAITS", 0, 0, 1) != 0;
        return c;
    }();
    return parsed;
}

inline const char *order_name(Order order) {
    return order == Order::forward ? "forward" : order == Order::reverse ? "reverse" : "random";
}

// The emulated device's limits (an sm_80-like part with few multiprocessors: grids sized from
// multiProcessorCount stay small, which keeps emulation fast).
constexpr size_t default_shared_per_block = 48 << 10;
constexpr size_t optin_shared_per_block = 227 << 10;
constexpr int max_threads_per_block = 1024;

inline cudaError_t &last_error() {
    static thread_local cudaError_t error = cudaSuccess;
    return error;
}
// CUDA records every failing call's error as the last error, too.
inline cudaError_t fail(cudaError_t error) {
    if (error != cudaSuccess) last_error() = error;
    return error;
}

// Device allocations, by start address, so that copies and kernel arguments can be checked.
enum class MemoryKind { device, host_pinned, managed };
struct Allocation {
    size_t bytes;
    MemoryKind kind;
};
struct Registry {
    std::mutex mutex;
    std::map<uintptr_t, Allocation> allocations;
    size_t device_bytes = 0;
};
inline Registry &registry() {
    static Registry *r = new Registry; // never destroyed: worker threads may outlive main
    return *r;
}

// The allocation holding [p, p + bytes), or nullptr. A pointer one past the end counts as
// inside (a kernel argument may legitimately point there when its count is zero).
// Takes the address as a number: GCC 12 warns (maybe-uninitialized) when a pointer to freshly
// malloc'ed, unwritten host memory is passed as a const void * it cannot see is never read.
inline const Allocation *find_allocation_at(uintptr_t address, size_t bytes, uintptr_t *start_out) {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.allocations.upper_bound(address);
    if (it == r.allocations.begin()) return nullptr;
    --it;
    if (address + bytes > it->first + it->second.bytes) return nullptr;
    if (start_out) *start_out = it->first;
    return &it->second;
}
inline const Allocation *find_allocation(const void *p, size_t bytes, uintptr_t *start_out) {
    return find_allocation_at((uintptr_t)p, bytes, start_out);
}
inline bool is_device_range(const void *p, size_t bytes) {
    const Allocation *a = find_allocation_at((uintptr_t)p, bytes, nullptr);
    return a != nullptr && a->kind != MemoryKind::host_pinned;
}
// cudaMalloc memory (not managed memory, which the host may also use as a copy's host side)
inline bool is_device_only_pointer(const void *p) {
    const Allocation *a = find_allocation_at((uintptr_t)p, 0, nullptr);
    return a != nullptr && a->kind == MemoryKind::device;
}

inline cudaError_t allocate(void **p, size_t bytes, MemoryKind kind) {
    if (p == nullptr) return fail(cudaErrorInvalidValue);
    *p = nullptr;
    if (bytes == 0) return cudaSuccess;
    void *memory = nullptr;
    // exactly `bytes`: under AddressSanitizer an access one past the end is reported
    if (posix_memalign(&memory, 256, bytes) != 0) return fail(cudaErrorMemoryAllocation);
    memset(memory, 0xFF, bytes);
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.allocations[(uintptr_t)memory] = Allocation{bytes, kind};
    if (kind != MemoryKind::host_pinned) r.device_bytes += bytes;
    *p = memory;
    return cudaSuccess;
}

inline void complete_pending_copies();
inline cudaError_t release(void *p, bool pinned) {
    if (p == nullptr) return cudaSuccess;
    if (pinned) complete_pending_copies(); // cudaFreeHost synchronizes the device
    Registry &r = registry();
    std::unique_lock<std::mutex> lock(r.mutex);
    auto it = r.allocations.find((uintptr_t)p);
    if (it == r.allocations.end() || (it->second.kind == MemoryKind::host_pinned) != pinned) {
        return fail(cudaErrorInvalidValue);
    }
    if (!pinned) r.device_bytes -= it->second.bytes;
    // poison before freeing, so a stale pointer reads NaN when the memory is not reused
    memset(p, 0xFF, it->second.bytes);
    r.allocations.erase(it);
    lock.unlock();
    free(p);
    return cudaSuccess;
}

inline bool valid_stream(cudaStream_t stream) {
    return stream == nullptr || stream->magic == 0x57524541u;
}
inline bool valid_event(cudaEvent_t event) {
    return event != nullptr && event->magic == 0x45564e54u;
}

inline size_t physical_memory() {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : (size_t)16 << 30;
}

// Host waits: the calls that block the host until the GPU has caught up (LLMC_EMU_WAITS=1 prints
// them at exit, so a test can count what a training step waits for).
enum class Wait { device_sync, stream_sync, event_sync, blocking_copy, pageable_async_copy, count };
struct WaitCounters {
    std::atomic<unsigned long long> calls[(int)Wait::count] = {};
};
inline WaitCounters &wait_counters() {
    static WaitCounters *w = new WaitCounters;
    return *w;
}
inline void print_waits() {
    WaitCounters &w = wait_counters();
    unsigned long long n[(int)Wait::count], total = 0;
    for (int i = 0; i < (int)Wait::count; i++) total += n[i] = w.calls[i].load();
    fprintf(stderr,
            "llmc_emu: host waits: %llu (cudaDeviceSynchronize %llu, cudaStreamSynchronize %llu, "
            "cudaEventSynchronize %llu, blocking cudaMemcpy %llu, cudaMemcpyAsync with pageable "
            "memory %llu)\n",
            total, n[0], n[1], n[2], n[3], n[4]);
}

// Async copies with pinned host memory. Streams run synchronously here, but on a GPU such a copy
// happens later, when its stream reaches it; so that a pipeline bug shows, the host side is
// settled only at the next host wait (any wait completes everything, as if the GPU were fast):
// an upload's pinned source must be unchanged by then (else the GPU could have read the new
// bytes: the host reused a buffer too early), and a download's pinned destination holds 0xFF
// bytes (NaN) until then (reading it before the wait reads poison).
struct PendingCopy {
    void *host;
    std::vector<unsigned char> bytes; // upload: the source as given; download: the data
    bool upload;
};
struct PendingCopies {
    std::mutex mutex;
    std::vector<PendingCopy> copies;
    unsigned long long issued = 0, completed = 0; // copies issued, and settled by a wait
};
inline PendingCopies &pending_copies() {
    static PendingCopies *p = new PendingCopies;
    return *p;
}
inline void complete_pending_copies() {
    PendingCopies &p = pending_copies();
    std::lock_guard<std::mutex> lock(p.mutex);
    for (PendingCopy &c : p.copies) {
        if (!c.upload) {
            memcpy(c.host, c.bytes.data(), c.bytes.size());
        } else if (memcmp(c.host, c.bytes.data(), c.bytes.size()) != 0) {
            fatal("pinned host memory %p (%zu bytes), the source of a cudaMemcpyAsync, changed "
                  "before any host wait showed the copy complete: on a GPU the copy may read the "
                  "new bytes (a buffer reused too early)",
                  c.host, c.bytes.size());
        }
    }
    p.copies.clear();
    p.completed = p.issued;
}
inline unsigned long long pending_copies_issued() {
    PendingCopies &p = pending_copies();
    std::lock_guard<std::mutex> lock(p.mutex);
    return p.issued;
}
// Queries see a slow GPU: work recorded after a pinned async copy that no wait has settled yet is
// not ready, so code that waits only when a query says so waits here, and the wait is counted.
// The GPU then gets there (the copies are settled), so a loop polling a query ends.
inline bool copies_settled(unsigned long long copies_before) {
    {
        PendingCopies &p = pending_copies();
        std::lock_guard<std::mutex> lock(p.mutex);
        if (copies_before <= p.completed) return true;
    }
    complete_pending_copies();
    return false;
}
// The host blocks until the GPU is done: everything issued is complete.
inline void host_wait(Wait kind) {
    WaitCounters &w = wait_counters();
    if (config().waits) {
        static std::atomic<int> registered{0};
        if (registered.exchange(1) == 0) atexit(print_waits);
    }
    w.calls[(int)kind]++;
    complete_pending_copies();
}
inline bool is_pinned_range(const void *p, size_t bytes) {
    const Allocation *a = find_allocation(p, bytes, nullptr);
    return a != nullptr && a->kind == MemoryKind::host_pinned;
}

// Function attributes set with cudaFuncSetAttribute, by kernel address.
struct KernelAttributes {
    std::mutex mutex;
    std::map<const void *, size_t> max_dynamic_shared;
};
inline KernelAttributes &kernel_attributes() {
    static KernelAttributes *k = new KernelAttributes;
    return *k;
}
inline size_t max_dynamic_shared(const void *kernel) {
    KernelAttributes &k = kernel_attributes();
    std::lock_guard<std::mutex> lock(k.mutex);
    auto it = k.max_dynamic_shared.find(kernel);
    return it == k.max_dynamic_shared.end() ? default_shared_per_block : it->second;
}

} // namespace llmc_emu

// ----------------------------------------------------------------------------
// The runtime API.

inline const char *cudaGetErrorName(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
    }
}

inline const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
    }
}

inline cudaError_t cudaGetLastError() {
    cudaError_t error = llmc_emu::last_error();
    llmc_emu::last_error() = cudaSuccess;
    return error;
}
inline cudaError_t cudaPeekAtLastError() {
    return llmc_emu::last_error();
}

inline cudaError_t cudaGetDeviceCount(int *count) {
    if (count == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : llmc_emu::fail(cudaErrorInvalidDevice);
}
inline cudaError_t cudaGetDevice(int *device) {
    if (device == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
    llmc_emu::host_wait(llmc_emu::Wait::device_sync);
    return cudaSuccess;
}
inline cudaError_t cudaDeviceReset() {
    return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int *version) {
    if (version == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    *version = 0; // not a CUDA runtime
    return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int *version) {
    return cudaRuntimeGetVersion(version);
}

inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (prop == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    if (device != 0) return llmc_emu::fail(cudaErrorInvalidDevice);
    const llmc_emu::Config &c = llmc_emu::config();
    memset(prop, 0, sizeof(*prop));
    snprintf(prop->name, sizeof(prop->name), "llmc CPU emulation (%d worker threads)", c.workers);
    prop->totalGlobalMem = llmc_emu::physical_memory();
    prop->sharedMemPerBlock = llmc_emu::default_shared_per_block;
    prop->sharedMemPerBlockOptin = llmc_emu::optin_shared_per_block;
    prop->sharedMemPerMultiprocessor = 228 << 10;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = llmc_emu::max_threads_per_block;
    prop->maxThreadsDim[0] = 1024;
    prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff;
    prop->maxGridSize[1] = 65535;
    prop->maxGridSize[2] = 65535;
    prop->major = 8;
    prop->minor = 0;
    prop->multiProcessorCount = c.multiprocessors;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->l2CacheSize = 40 << 20;
    return cudaSuccess;
}

inline cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    cudaDeviceProp prop;
    if (value == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    cudaError_t status = cudaGetDeviceProperties(&prop, device);
    if (status != cudaSuccess) return status;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = prop.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)prop.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *value = prop.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = prop.multiProcessorCount; break;
    case cudaDevAttrL2CacheSize: *value = prop.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = prop.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrComputeCapabilityMajor: *value = prop.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = prop.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)prop.sharedMemPerBlockOptin; break;
    default: return llmc_emu::fail(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

inline cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    if (free_bytes == nullptr || total_bytes == nullptr)
        return llmc_emu::fail(cudaErrorInvalidValue);
    llmc_emu::Registry &r = llmc_emu::registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    *total_bytes = llmc_emu::physical_memory();
    *free_bytes = r.device_bytes < *total_bytes ? *total_bytes - r.device_bytes : 0;
    return cudaSuccess;
}

inline cudaError_t cudaMalloc(void **p, size_t bytes) {
    return llmc_emu::allocate(p, bytes, llmc_emu::MemoryKind::device);
}
inline cudaError_t cudaMallocManaged(void **p, size_t bytes, unsigned = cudaMemAttachGlobal) {
    return llmc_emu::allocate(p, bytes, llmc_emu::MemoryKind::managed);
}
inline cudaError_t cudaMallocHost(void **p, size_t bytes) {
    return llmc_emu::allocate(p, bytes, llmc_emu::MemoryKind::host_pinned);
}
inline cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned) {
    return cudaMallocHost(p, bytes);
}
template <typename T> inline cudaError_t cudaMalloc(T **p, size_t bytes) {
    return cudaMalloc((void **)p, bytes);
}
template <typename T>
inline cudaError_t cudaMallocManaged(T **p, size_t bytes, unsigned flags = cudaMemAttachGlobal) {
    return cudaMallocManaged((void **)p, bytes, flags);
}
template <typename T> inline cudaError_t cudaMallocHost(T **p, size_t bytes) {
    return cudaMallocHost((void **)p, bytes);
}
inline cudaError_t cudaFree(void *p) {
    return llmc_emu::release(p, false);
}
inline cudaError_t cudaFreeHost(void *p) {
    return llmc_emu::release(p, true);
}

namespace llmc_emu {
// Copies check direction and bounds against the allocations: a copy that would run past the end
// of a device buffer, or a host pointer given where a device one is due, fails as on the GPU.
inline cudaError_t copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    using llmc_emu::is_device_only_pointer;
    using llmc_emu::is_device_range;
    if (bytes == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    bool ok = true;
    switch (kind) {
    case cudaMemcpyHostToDevice:
        ok = is_device_range(dst, bytes) && !is_device_only_pointer(src);
        break;
    case cudaMemcpyDeviceToHost:
        ok = is_device_range(src, bytes) && !is_device_only_pointer(dst);
        break;
    case cudaMemcpyDeviceToDevice:
        ok = is_device_range(dst, bytes) && is_device_range(src, bytes);
        break;
    case cudaMemcpyHostToHost:
    case cudaMemcpyDefault: break;
    default: return llmc_emu::fail(cudaErrorInvalidMemcpyDirection);
    }
    if (!ok) return llmc_emu::fail(cudaErrorInvalidValue);
    memmove(dst, src, bytes);
    return cudaSuccess;
}
} // namespace llmc_emu

// A copy between the host and the device blocks the host until the GPU is done with it (a
// device-to-device copy does not: the GPU orders it).
inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    cudaError_t status = llmc_emu::copy(dst, src, bytes, kind);
    if (status == cudaSuccess && bytes > 0 && kind != cudaMemcpyDeviceToDevice &&
        kind != cudaMemcpyHostToHost) {
        llmc_emu::host_wait(llmc_emu::Wait::blocking_copy);
    }
    return status;
}
// With pageable host memory the copy is as good as blocking (CUDA stages it synchronously); with
// pinned memory it is asynchronous, and the host side is settled at the next wait (see
// PendingCopy).
inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
    if (!llmc_emu::valid_stream(stream)) return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    cudaError_t status = llmc_emu::copy(dst, src, bytes, kind);
    if (status != cudaSuccess || bytes == 0) return status;
    bool upload = kind == cudaMemcpyHostToDevice, download = kind == cudaMemcpyDeviceToHost;
    if (!upload && !download) return status;
    void *host = upload ? (void *)src : dst;
    if (!llmc_emu::is_pinned_range(host, bytes)) {
        llmc_emu::host_wait(llmc_emu::Wait::pageable_async_copy);
        return status;
    }
    llmc_emu::PendingCopy pending{host, std::vector<unsigned char>(bytes), upload};
    memcpy(pending.bytes.data(), host, bytes);
    if (download) memset(dst, 0xFF, bytes); // NaN until a wait
    llmc_emu::PendingCopies &p = llmc_emu::pending_copies();
    std::lock_guard<std::mutex> lock(p.mutex);
    p.copies.push_back(std::move(pending));
    p.issued++;
    return status;
}
inline cudaError_t cudaMemset(void *dst, int value, size_t bytes) {
    if (bytes == 0) return cudaSuccess;
    if (!llmc_emu::is_device_range(dst, bytes)) return llmc_emu::fail(cudaErrorInvalidValue);
    memset(dst, value, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes,
                                   cudaStream_t stream = nullptr) {
    if (!llmc_emu::valid_stream(stream)) return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    return cudaMemset(dst, value, bytes);
}

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags) {
    if (stream == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    *stream = new llmc_emu_stream{0x57524541u, flags};
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t *stream) {
    return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}
inline cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (stream == nullptr || !llmc_emu::valid_stream(stream)) {
        return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    }
    stream->magic = 0;
    delete stream;
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    if (!llmc_emu::valid_stream(stream)) return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    llmc_emu::host_wait(llmc_emu::Wait::stream_sync);
    return cudaSuccess;
}
// Not a wait: not ready while a pinned async copy is pending (see copies_settled).
inline cudaError_t cudaStreamQuery(cudaStream_t stream) {
    if (!llmc_emu::valid_stream(stream)) return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    return llmc_emu::copies_settled(llmc_emu::pending_copies_issued()) ? cudaSuccess
                                                                       : cudaErrorNotReady;
}

inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags) {
    if (event == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    *event = new llmc_emu_event{0x45564e54u, flags, false, {}, 0};
    return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t *event) {
    return cudaEventCreateWithFlags(event, cudaEventDefault);
}
inline cudaError_t cudaEventDestroy(cudaEvent_t event) {
    if (!llmc_emu::valid_event(event)) return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    event->magic = 0;
    delete event;
    return cudaSuccess;
}
// Work is done when it is issued, so an event records the time at which it is issued.
inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr) {
    if (!llmc_emu::valid_event(event) || !llmc_emu::valid_stream(stream)) {
        return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    }
    event->recorded = true;
    event->when = std::chrono::steady_clock::now();
    llmc_emu::PendingCopies &p = llmc_emu::pending_copies();
    std::lock_guard<std::mutex> lock(p.mutex);
    event->copies_before = p.issued;
    return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    if (!llmc_emu::valid_event(event)) return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    llmc_emu::host_wait(llmc_emu::Wait::event_sync);
    return cudaSuccess;
}
inline cudaError_t cudaEventQuery(cudaEvent_t event) { // not a wait (as cudaStreamQuery)
    if (!llmc_emu::valid_event(event)) return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    return llmc_emu::copies_settled(event->copies_before) ? cudaSuccess : cudaErrorNotReady;
}
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (ms == nullptr) return llmc_emu::fail(cudaErrorInvalidValue);
    if (!llmc_emu::valid_event(start) || !llmc_emu::valid_event(end) || !start->recorded ||
        !end->recorded || ((start->flags | end->flags) & cudaEventDisableTiming)) {
        return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    }
    *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
    return cudaSuccess;
}
inline cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned = 0) {
    if (!llmc_emu::valid_stream(stream) || !llmc_emu::valid_event(event)) {
        return llmc_emu::fail(cudaErrorInvalidResourceHandle);
    }
    return cudaSuccess;
}

template <typename T>
inline cudaError_t cudaFuncSetAttribute(T *kernel, cudaFuncAttribute attr, int value) {
    if (kernel == nullptr) return llmc_emu::fail(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        (size_t)value > llmc_emu::optin_shared_per_block) {
        return llmc_emu::fail(cudaErrorInvalidValue);
    }
    llmc_emu::KernelAttributes &k = llmc_emu::kernel_attributes();
    std::lock_guard<std::mutex> lock(k.mutex);
    k.max_dynamic_shared[(const void *)kernel] = (size_t)value;
    return cudaSuccess;
}

#endif // LLMC_CUDA_EMU_RUNTIME_H
