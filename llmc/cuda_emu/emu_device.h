// Device-side intrinsics of the CPU emulation: barriers and warp collectives (suspend the fiber
// until the scheduler completes them), atomics (real ones: blocks run on several OS threads),
// fences and clocks.
#ifndef LLMC_CUDA_EMU_DEVICE_H
#define LLMC_CUDA_EMU_DEVICE_H

#include <time.h>

#include "emu_scheduler.h"

namespace llmc_emu {

inline Fiber &fiber_in_kernel(Worker *&w, const char *what, const char *file, int line) {
    w = current_worker();
    if (w == nullptr || w->launch == nullptr) {
        fatal("%s at %s:%d called outside a kernel", what, file, line);
    }
    return w->fibers[w->current];
}

inline int block_barrier(const char *file, int line, int predicate, BlockReduce reduce) {
    Worker *w;
    Fiber &f = fiber_in_kernel(w, "__syncthreads", file, line);
    f.state = FiberState::at_block_barrier;
    f.file = file;
    f.line = line;
    f.predicate = predicate;
    f.reduce = reduce;
    wait_at_barrier(*w, f);
    return f.result;
}

inline Fiber &arrive_at_warp_op(Worker *&w, WarpOp op, const char *file, int line, unsigned mask) {
    Fiber &f = fiber_in_kernel(w, warp_op_name(op), file, line);
    f.state = FiberState::at_warp_op;
    f.op = op;
    f.file = file;
    f.line = line;
    f.mask = mask;
    f.predicate = 0;
    f.source_lane = -1;
    f.value = 0;
    return f;
}

inline void warp_sync(const char *file, int line, unsigned mask = 0xffffffffu) {
    Worker *w;
    Fiber &f = arrive_at_warp_op(w, WarpOp::syncwarp, file, line, mask);
    wait_at_barrier(*w, f);
}

struct WarpSyncAt {
    const char *file;
    int line;
    void operator()(unsigned mask = 0xffffffffu) const { warp_sync(file, line, mask); }
};

inline int warp_vote(WarpOp op, const char *file, int line, unsigned mask, int predicate) {
    Worker *w;
    Fiber &f = arrive_at_warp_op(w, op, file, line, mask);
    f.predicate = predicate != 0;
    wait_at_barrier(*w, f);
    return f.result;
}

// The lane a shuffle reads, or -1 where CUDA returns the caller's own value.
inline int shuffle_source(const Worker &w, WarpOp op, int lane, int operand, int width) {
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        fatal("%s: %s with width %d (must be a power of 2 from 1 to 32)", where(w).c_str(),
              warp_op_name(op), width);
    }
    int group = lane & ~(width - 1), offset = lane & (width - 1);
    switch (op) {
    case WarpOp::shfl: return group + (operand & (width - 1));
    case WarpOp::shfl_up: return offset - (operand & 31) < 0 ? -1 : lane - (operand & 31);
    case WarpOp::shfl_down: return offset + (operand & 31) >= width ? -1 : lane + (operand & 31);
    case WarpOp::shfl_xor: {
        int source = lane ^ (operand & 31);
        return source >= group + width ? -1 : source; // later groups cannot be read
    }
    default: return -1;
    }
}

template <typename T>
inline T warp_shuffle(WarpOp op, const char *file, int line, unsigned mask, T value, int operand,
                      int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move values of at most 8 bytes");
    Worker *w;
    Fiber &f = arrive_at_warp_op(w, op, file, line, mask);
    memcpy(&f.value, &value, sizeof(T));
    f.source_lane = shuffle_source(*w, op, w->current & 31, operand, width);
    wait_at_barrier(*w, f);
    T result;
    memcpy(&result, &f.shuffled, sizeof(T));
    return result;
}

inline unsigned active_mask() {
    Worker *w;
    fiber_in_kernel(w, "__activemask", "", 0);
    int base = w->current & ~31;
    int present = lanes_present(*w, base);
    unsigned mask = 0;
    for (int lane = 0; lane < present; lane++) {
        if (w->fibers[base + lane].state != FiberState::done) mask |= 1u << lane;
    }
    return mask;
}

template <typename T> inline T atomic_update(T *address, T (*update)(T, T), T operand) {
    T old = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(address, &old, update(old, operand), true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
    return old;
}

// float and double atomics through their bits: a compare-and-swap loop
template <typename F, typename U> inline F atomic_float_add(F *address, F operand) {
    static_assert(sizeof(F) == sizeof(U), "float/bits size");
    U *bits = reinterpret_cast<U *>(address);
    U old = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        F old_value, new_value;
        memcpy(&old_value, &old, sizeof(F));
        new_value = old_value + operand;
        U desired;
        memcpy(&desired, &new_value, sizeof(F));
        if (__atomic_compare_exchange_n(bits, &old, desired, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            return old_value;
        }
    }
}

} // namespace llmc_emu

#define __syncthreads()                                                                            \
    ((void)::llmc_emu::block_barrier(__FILE__, __LINE__, 1, ::llmc_emu::BlockReduce::count))
#define __syncthreads_count(predicate)                                                             \
    ::llmc_emu::block_barrier(__FILE__, __LINE__, (predicate), ::llmc_emu::BlockReduce::count)
#define __syncthreads_and(predicate)                                                               \
    ::llmc_emu::block_barrier(__FILE__, __LINE__, (predicate), ::llmc_emu::BlockReduce::all)
#define __syncthreads_or(predicate)                                                                \
    ::llmc_emu::block_barrier(__FILE__, __LINE__, (predicate), ::llmc_emu::BlockReduce::any)
// __syncwarp() or __syncwarp(mask): a call object keeps the mask optional without ##__VA_ARGS__
#define __syncwarp(...) ::llmc_emu::WarpSyncAt{__FILE__, __LINE__}(__VA_ARGS__)
#define __ballot_sync(mask, predicate)                                                             \
    ((unsigned)::llmc_emu::warp_vote(::llmc_emu::WarpOp::ballot, __FILE__, __LINE__, (mask),       \
                                     (predicate)))
#define __any_sync(mask, predicate)                                                                \
    ::llmc_emu::warp_vote(::llmc_emu::WarpOp::any, __FILE__, __LINE__, (mask), (predicate))
#define __all_sync(mask, predicate)                                                                \
    ::llmc_emu::warp_vote(::llmc_emu::WarpOp::all, __FILE__, __LINE__, (mask), (predicate))

// __shfl_*_sync(mask, value, lane or delta[, width])
namespace llmc_emu {
template <typename T>
inline T shfl(const char *file, int line, unsigned mask, T value, int lane, int width = 32) {
    return warp_shuffle(WarpOp::shfl, file, line, mask, value, lane, width);
}
template <typename T>
inline T shfl_up(const char *file, int line, unsigned mask, T value, unsigned delta,
                 int width = 32) {
    return warp_shuffle(WarpOp::shfl_up, file, line, mask, value, (int)(delta & 31u), width);
}
template <typename T>
inline T shfl_down(const char *file, int line, unsigned mask, T value, unsigned delta,
                   int width = 32) {
    return warp_shuffle(WarpOp::shfl_down, file, line, mask, value, (int)(delta & 31u), width);
}
template <typename T>
inline T shfl_xor(const char *file, int line, unsigned mask, T value, int lane_mask,
                  int width = 32) {
    return warp_shuffle(WarpOp::shfl_xor, file, line, mask, value, lane_mask, width);
}
} // namespace llmc_emu
#define __shfl_sync(...) ::llmc_emu::shfl(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::llmc_emu::shfl_up(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::llmc_emu::shfl_down(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::llmc_emu::shfl_xor(__FILE__, __LINE__, __VA_ARGS__)

inline unsigned __activemask() {
    return llmc_emu::active_mask();
}
inline unsigned __lanemask_lt() {
    llmc_emu::Worker *w;
    llmc_emu::fiber_in_kernel(w, "__lanemask_lt", "", 0);
    return (1u << (w->current & 31)) - 1u;
}

inline void __threadfence() {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
inline void __threadfence_block() {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
inline void __threadfence_system() {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
inline long long clock64() {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000ll + now.tv_nsec;
}

// ----------------------------------------------------------------------------
// Atomics: relaxed, like CUDA's plain atomic functions.

inline float atomicAdd(float *address, float value) {
    return llmc_emu::atomic_float_add<float, unsigned int>(address, value);
}
inline double atomicAdd(double *address, double value) {
    return llmc_emu::atomic_float_add<double, unsigned long long>(address, value);
}
#define LLMC_EMU_INTEGER_ATOMICS(T)                                                                \
    inline T atomicAdd(T *address, T value) {                                                      \
        return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);                               \
    }                                                                                              \
    inline T atomicSub(T *address, T value) {                                                      \
        return __atomic_fetch_sub(address, value, __ATOMIC_RELAXED);                               \
    }                                                                                              \
    inline T atomicExch(T *address, T value) {                                                     \
        return __atomic_exchange_n(address, value, __ATOMIC_RELAXED);                              \
    }                                                                                              \
    inline T atomicAnd(T *address, T value) {                                                      \
        return __atomic_fetch_and(address, value, __ATOMIC_RELAXED);                               \
    }                                                                                              \
    inline T atomicOr(T *address, T value) {                                                       \
        return __atomic_fetch_or(address, value, __ATOMIC_RELAXED);                                \
    }                                                                                              \
    inline T atomicXor(T *address, T value) {                                                      \
        return __atomic_fetch_xor(address, value, __ATOMIC_RELAXED);                               \
    }                                                                                              \
    inline T atomicMax(T *address, T value) {                                                      \
        return llmc_emu::atomic_update<T>(                                                         \
            address, [](T a, T b) { return a < b ? b : a; }, value);                               \
    }                                                                                              \
    inline T atomicMin(T *address, T value) {                                                      \
        return llmc_emu::atomic_update<T>(                                                         \
            address, [](T a, T b) { return b < a ? b : a; }, value);                               \
    }                                                                                              \
    inline T atomicCAS(T *address, T compare, T value) {                                           \
        __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED,             \
                                    __ATOMIC_RELAXED);                                             \
        return compare;                                                                            \
    }
LLMC_EMU_INTEGER_ATOMICS(int)
LLMC_EMU_INTEGER_ATOMICS(unsigned int)
LLMC_EMU_INTEGER_ATOMICS(unsigned long long)
#undef LLMC_EMU_INTEGER_ATOMICS
inline float atomicExch(float *address, float value) {
    return __uint_as_float(
        atomicExch(reinterpret_cast<unsigned int *>(address), __float_as_uint(value)));
}

#endif // LLMC_CUDA_EMU_DEVICE_H
