// Runs a kernel launch on the CPU. Blocks are handed out to worker threads (the launching thread
// and LLMC_EMU_THREADS - 1 helpers); a block runs entirely on one worker, each of its CUDA
// threads a fiber. A fiber runs until it finishes or reaches a barrier or warp collective;
// then the next runnable fiber runs, in the order LLMC_EMU_ORDER names. Because
// threads run one after another between barriers, a missing __syncthreads shows up as a
// different result in forward and reverse order; a barrier nobody can complete is a deadlock,
// reported in one line with the kernel's name.
#ifndef LLMC_CUDA_EMU_SCHEDULER_H
#define LLMC_CUDA_EMU_SCHEDULER_H

#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "emu_fiber.h"

// The built-in variables: per OS thread, set before each switch to a fiber.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace llmc_emu {

struct LaunchInfo {
    const char *kernel_name;
    const char *file; // where LLMC_LAUNCH is
    int line;
    dim3 grid, block;
    size_t shared_bytes;
    int threads_per_block;
    unsigned long long launch_id;
    void (*run_thread)(const void *args); // calls the kernel with a copy of the arguments
    const void *args;
};

enum class FiberState : unsigned char { not_started, runnable, at_block_barrier, at_warp_op, done };

enum class WarpOp : unsigned char {
    syncwarp,
    shfl,
    shfl_up,
    shfl_down,
    shfl_xor,
    ballot,
    any,
    all
};
inline const char *warp_op_name(WarpOp op) {
    static const char *names[] = {"__syncwarp",       "__shfl_sync",     "__shfl_up_sync",
                                  "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
                                  "__any_sync",       "__all_sync"};
    return names[(int)op];
}

enum class BlockReduce : unsigned char { count, all, any };

struct Fiber {
    Context context;
    int stack = -1; // index into Worker::stacks while started
    FiberState state = FiberState::not_started;
    uint3 thread_idx;
    const char *file = nullptr; // the barrier or collective it waits at
    int line = 0;
    int predicate = 0; // __syncthreads_count/and/or, votes
    int result = 0;    // their result
    BlockReduce reduce = BlockReduce::count;
    WarpOp op = WarpOp::syncwarp;
    unsigned mask = 0;
    int source_lane = -1; // shuffles: the lane read (-1: keep own value)
    unsigned long long value = 0, shuffled = 0;
#ifdef __SANITIZE_ADDRESS__
    void *fake_stack = nullptr;
#endif
};

// Per OS thread: the block it is running and the fibers' stacks, reused from block to block.
struct Worker {
    const LaunchInfo *launch = nullptr;
    std::vector<Fiber> fibers;
    std::vector<int> queue; // runnable fibers, a ring of capacity fibers.size() + 1
    size_t queue_head = 0, queue_tail = 0;
    std::vector<Stack> stacks;
    std::vector<int> free_stacks;
    std::vector<int> released; // scratch for barrier releases
    // per warp: lanes that exist and have not exited, and lanes waiting at a warp collective
    std::vector<unsigned> warp_live, warp_arrived;
    Context scheduler;
    int current = -1;
    int live = 0, exited = 0, at_block_barrier = 0;
    unsigned long long indexed_launch = ~0ull; // the launch whose thread indices fibers hold
    unsigned long long rng = 0;
    std::vector<unsigned char> dynamic_shared;
    size_t dynamic_shared_bytes = 0;
#ifdef __SANITIZE_ADDRESS__
    void *scheduler_fake_stack = nullptr;
    bool from_scheduler = false;
    const void *scheduler_stack_bottom = nullptr;
    size_t scheduler_stack_size = 0;
#endif
};

inline Worker *&current_worker() {
    static thread_local Worker *worker = nullptr;
    return worker;
}
inline void install_crash_reporter();

inline Worker &this_worker() {
    Worker *&w = current_worker();
    if (w == nullptr) {
        w = new Worker; // one per OS thread, kept for the process's life
        install_crash_reporter();
    }
    return *w;
}

inline unsigned long long mix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
inline unsigned random_below(unsigned long long &state, unsigned n) {
    state = mix64(state);
    return (unsigned)(state % n);
}

inline std::string kernel_label(const LaunchInfo &launch) {
    std::string name = launch.kernel_name;
    if (name.size() >= 2 && name.front() == '(' && name.back() == ')') {
        name = name.substr(1, name.size() - 2);
    }
    return name;
}

// "kernel NAME (launched at FILE:LINE), block (x,y,z)" for messages
inline void describe(char *text, size_t size, const Worker &w) {
    const char *name = w.launch->kernel_name;
    int length = (int)strlen(name);
    if (length >= 2 && name[0] == '(' && name[length - 1] == ')') {
        name++;
        length -= 2;
    }
    snprintf(text, size, "kernel %.*s (launched at %s:%d), block (%u,%u,%u)", length, name,
             w.launch->file, w.launch->line, blockIdx.x, blockIdx.y, blockIdx.z);
}
inline std::string where(const Worker &w) {
    char text[512];
    describe(text, sizeof(text), w);
    return text;
}
inline std::string thread_name(const Fiber &f) {
    char text[64];
    snprintf(text, sizeof(text), "thread (%u,%u,%u)", f.thread_idx.x, f.thread_idx.y,
             f.thread_idx.z);
    return text;
}

// ----------------------------------------------------------------------------
// A crash inside a kernel (a wild pointer, a fiber stack overflowing into its guard page) first
// names the kernel, block and thread, then dies as it would have. Under AddressSanitizer, which
// reports the access itself, the same line follows its report.

inline void report_crash_location(const char *what) {
    Worker *w = current_worker();
    if (w == nullptr || w->launch == nullptr || w->current < 0) return;
    const Fiber &f = w->fibers[w->current];
    char text[1024], location[512];
    describe(location, sizeof(location), *w);
    int length = snprintf(text, sizeof(text), "llmc_emu: %s in %s, thread (%u,%u,%u)\n", what,
                          location, f.thread_idx.x, f.thread_idx.y, f.thread_idx.z);
    if (length > 0) {
        ssize_t ignored =
            write(2, text, (size_t)length < sizeof(text) ? (size_t)length : sizeof(text));
        (void)ignored;
    }
}

#ifdef __SANITIZE_ADDRESS__
inline void install_crash_reporter() {
    static std::once_flag once;
    std::call_once(once, [] {
        __sanitizer_set_death_callback([] { report_crash_location("AddressSanitizer error"); });
    });
}
#else
inline void on_crash_signal(int signal_number, siginfo_t *info, void *) {
    const char *what = signal_number == SIGBUS ? "bus error" : "segmentation fault";
    Worker *w = current_worker();
    if (w != nullptr && w->launch != nullptr && w->current >= 0) {
        const Fiber &f = w->fibers[w->current];
        char *address = (char *)info->si_addr;
        if (f.stack >= 0) {
            const Stack &s = w->stacks[f.stack];
            long page = sysconf(_SC_PAGE_SIZE);
            char *guard = (char *)(((uintptr_t)s.base) & ~(uintptr_t)(page - 1)) - page;
            if (address >= guard && address < s.base) {
                what = "fiber stack overflow (raise LLMC_EMU_STACK_KB)";
            }
        }
    }
    report_crash_location(what);
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}
inline void install_crash_reporter() {
    // every OS thread that runs blocks needs its own alternate stack: the fault may be an
    // overflowing fiber stack, where the handler cannot run
    stack_t alternate;
    alternate.ss_size = 64 << 10;
    alternate.ss_sp = malloc(alternate.ss_size);
    alternate.ss_flags = 0;
    if (alternate.ss_sp != nullptr) sigaltstack(&alternate, nullptr);
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction action;
        memset(&action, 0, sizeof(action));
        action.sa_sigaction = on_crash_signal;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&action.sa_mask);
        sigaction(SIGSEGV, &action, nullptr);
        sigaction(SIGBUS, &action, nullptr);
    });
}
#endif

// the run queue's next slot (a compare, not a 40-cycle division: this runs once per thread)
inline size_t ring_next(const Worker &w, size_t position) {
    return position + 1 == w.queue.size() ? 0 : position + 1;
}

// ----------------------------------------------------------------------------
// The run queue.

inline void queue_push(Worker &w, int fiber) {
    w.queue[w.queue_tail] = fiber;
    w.queue_tail = ring_next(w, w.queue_tail);
    w.fibers[fiber].state = FiberState::runnable;
}

// Puts the released fibers back in the run queue in the configured order.
inline void queue_release(Worker &w, std::vector<int> &fibers) {
    Order order = config().order;
    if (order == Order::reverse) {
        for (size_t i = fibers.size(); i-- > 0;) queue_push(w, fibers[i]);
        return;
    }
    if (order == Order::random) {
        for (size_t i = fibers.size(); i > 1; i--) {
            std::swap(fibers[i - 1], fibers[random_below(w.rng, (unsigned)i)]);
        }
    }
    for (int f : fibers) queue_push(w, f);
}

// ----------------------------------------------------------------------------
// Barriers. Both are completed by the scheduler when the last participant arrives.

inline void complete_block_barrier(Worker &w) {
    bool strict = config().strict;
    const Fiber *first = nullptr;
    int count = 0, all = 1, any = 0;
    w.released.clear();
    for (int i = 0; i < (int)w.fibers.size(); i++) {
        Fiber &f = w.fibers[i];
        if (f.state != FiberState::at_block_barrier) continue;
        if (first == nullptr) first = &f;
        if (strict && (f.line != first->line || strcmp(f.file, first->file) != 0)) {
            fatal("deadlock in %s: divergent __syncthreads: %s waits at %s:%d, %s at %s:%d",
                  where(w).c_str(), thread_name(*first).c_str(), first->file, first->line,
                  thread_name(f).c_str(), f.file, f.line);
        }
        count += f.predicate != 0;
        all &= f.predicate != 0;
        any |= f.predicate != 0;
        w.released.push_back(i);
    }
    for (int i : w.released) {
        Fiber &f = w.fibers[i];
        f.result = f.reduce == BlockReduce::all ? all : f.reduce == BlockReduce::any ? any : count;
    }
    w.at_block_barrier = 0;
    queue_release(w, w.released);
}

inline int lanes_present(const Worker &w, int warp_base) {
    int n = (int)w.fibers.size() - warp_base;
    return n < 32 ? n : 32;
}

// Called when fiber `index` has arrived at a warp collective: completes it if every lane named
// in its mask (that has not exited) is waiting at a collective with the same mask.
inline void try_complete_warp_op(Worker &w, int index) {
    const Fiber &arriving = w.fibers[index];
    unsigned mask = arriving.mask;
    int base = index & ~31;
    int present = lanes_present(w, base);
    unsigned needed = mask & w.warp_live[base >> 5];
    if ((w.warp_arrived[base >> 5] & needed) != needed) return;
    bool strict = config().strict;
    for (unsigned pending = needed; pending != 0; pending &= pending - 1) {
        const Fiber &f = w.fibers[base + __builtin_ctz(pending)];
        if (f.mask != mask) return; // waiting at another collective, which may complete first
        if (strict && f.op != arriving.op) {
            fatal("deadlock in %s: divergent warp collectives under mask 0x%08x: %s is at %s "
                  "(%s:%d), %s at %s (%s:%d)",
                  where(w).c_str(), mask, thread_name(arriving).c_str(), warp_op_name(arriving.op),
                  arriving.file, arriving.line, thread_name(f).c_str(), warp_op_name(f.op), f.file,
                  f.line);
        }
    }
    unsigned ballot = 0, participants = 0;
    for (int lane = 0; lane < present; lane++) {
        const Fiber &f = w.fibers[base + lane];
        if ((mask >> lane & 1u) && f.state == FiberState::at_warp_op) {
            participants |= 1u << lane;
            if (f.predicate) ballot |= 1u << lane;
        }
    }
    w.released.clear();
    for (int lane = 0; lane < present; lane++) {
        if (!(mask >> lane & 1u)) continue;
        Fiber &f = w.fibers[base + lane];
        if (f.state != FiberState::at_warp_op) continue;
        switch (f.op) {
        case WarpOp::shfl:
        case WarpOp::shfl_up:
        case WarpOp::shfl_down:
        case WarpOp::shfl_xor: {
            int source = f.source_lane;
            if (source < 0) {
                f.shuffled = f.value;
            } else if (source < present && (mask >> source & 1u) &&
                       w.fibers[base + source].state == FiberState::at_warp_op) {
                f.shuffled = w.fibers[base + source].value;
            } else if (strict) {
                fatal("%s: %s at %s:%d in %s reads lane %d, which %s (mask 0x%08x)",
                      where(w).c_str(), warp_op_name(f.op), f.file, f.line, thread_name(f).c_str(),
                      source, source >= present ? "is absent" : "is not in the mask", mask);
            } else {
                f.shuffled = ~0ull; // undefined on the GPU: NaN here
            }
            break;
        }
        case WarpOp::ballot: f.result = (int)ballot; break;
        case WarpOp::any: f.result = ballot != 0; break;
        case WarpOp::all: f.result = ballot == participants; break;
        case WarpOp::syncwarp: break;
        }
        w.released.push_back(base + lane);
    }
    w.warp_arrived[base >> 5] &= ~participants;
    queue_release(w, w.released);
}

// Checked when a fiber arrives at a warp collective: the mask must name it, and in strict mode
// only lanes that exist and have not exited.
inline void check_warp_mask(Worker &w, int index) {
    const Fiber &f = w.fibers[index];
    int base = index & ~31, lane = index - base;
    int present = lanes_present(w, base);
    if (!(f.mask >> lane & 1u)) {
        fatal("%s: %s at %s:%d in %s (lane %d) has mask 0x%08x, which does not name its own lane",
              where(w).c_str(), warp_op_name(f.op), f.file, f.line, thread_name(f).c_str(), lane,
              f.mask);
    }
    if (!config().strict) return;
    if (present < 32 && (f.mask >> present) != 0) {
        fatal("%s: %s at %s:%d in %s has mask 0x%08x naming absent lanes (the warp has %d lanes)",
              where(w).c_str(), warp_op_name(f.op), f.file, f.line, thread_name(f).c_str(), f.mask,
              present);
    }
    unsigned exited = f.mask & ~w.warp_live[base >> 5];
    if (exited != 0) {
        fatal("%s: %s at %s:%d in %s has mask 0x%08x naming lane %d, which has exited",
              where(w).c_str(), warp_op_name(f.op), f.file, f.line, thread_name(f).c_str(), f.mask,
              __builtin_ctz(exited));
    }
}

// A fiber has exited: in strict mode no one may be waiting for it; otherwise the barriers that
// were waiting for it may now be complete.
inline void on_fiber_exit(Worker &w, int index) {
    bool strict = config().strict;
    int base = index & ~31, lane = index - base;
    w.warp_live[base >> 5] &= ~(1u << lane);
    for (unsigned waiting = w.warp_arrived[base >> 5]; waiting != 0; waiting &= waiting - 1) {
        int other = __builtin_ctz(waiting);
        const Fiber &f = w.fibers[base + other];
        if (f.state == FiberState::at_warp_op && (f.mask >> lane & 1u)) {
            if (strict) {
                fatal("%s: %s at %s:%d in %s has mask 0x%08x naming lane %d, which has exited",
                      where(w).c_str(), warp_op_name(f.op), f.file, f.line, thread_name(f).c_str(),
                      f.mask, lane);
            }
            try_complete_warp_op(w, base + other);
        }
    }
    if (w.at_block_barrier > 0) {
        if (strict) {
            const Fiber *waiting = nullptr;
            for (const Fiber &f : w.fibers) {
                if (f.state == FiberState::at_block_barrier) waiting = &f;
            }
            fatal("deadlock in %s: %s waits at __syncthreads (%s:%d) for %s, which has exited "
                  "(undefined in CUDA C++; LLMC_EMU_STRICT=0 lets exited threads count as "
                  "arrived, as PTX does)",
                  where(w).c_str(), thread_name(*waiting).c_str(), waiting->file, waiting->line,
                  thread_name(w.fibers[index]).c_str());
        }
        if (w.at_block_barrier == w.live) complete_block_barrier(w);
    }
}

[[noreturn]] inline void report_deadlock(Worker &w) {
    // group the waiting fibers by where they wait
    struct Site {
        const char *what, *file;
        int line, count;
        unsigned mask;
    };
    std::vector<Site> sites;
    for (const Fiber &f : w.fibers) {
        const char *what = f.state == FiberState::at_block_barrier ? "__syncthreads"
                           : f.state == FiberState::at_warp_op     ? warp_op_name(f.op)
                                                                   : nullptr;
        if (what == nullptr) continue;
        bool found = false;
        for (Site &s : sites) {
            if (s.what == what && s.line == f.line && strcmp(s.file, f.file) == 0 &&
                s.mask == f.mask) {
                s.count++;
                found = true;
            }
        }
        if (!found) sites.push_back(Site{what, f.file, f.line, 1, f.mask});
    }
    std::string text;
    for (size_t i = 0; i < sites.size() && i < 4; i++) {
        char part[256];
        if (strcmp(sites[i].what, "__syncthreads") == 0) {
            snprintf(part, sizeof(part), "%s%d threads wait at __syncthreads (%s:%d)",
                     i ? ", " : "", sites[i].count, sites[i].file, sites[i].line);
        } else {
            snprintf(part, sizeof(part), "%s%d threads wait at %s mask 0x%08x (%s:%d)",
                     i ? ", " : "", sites[i].count, sites[i].what, sites[i].mask, sites[i].file,
                     sites[i].line);
        }
        text += part;
    }
    if (sites.size() > 4) text += ", ...";
    fatal("deadlock in %s: %s; %d of %zu threads have exited", where(w).c_str(), text.c_str(),
          w.exited, w.fibers.size());
}

// ----------------------------------------------------------------------------
// Switching. The scheduler (on the worker's own stack) starts a block's first thread; from then
// on a thread that has to wait does the scheduler's bookkeeping itself and switches straight to
// the next runnable thread (one switch instead of two; none when it is itself next, as the last
// thread to reach a barrier often is). Control returns to the scheduler only when nothing is
// runnable: the block is done, or deadlocked.

inline void fiber_entry();

inline void take_stack(Worker &w, Fiber &f) {
    if (w.free_stacks.empty()) {
        w.stacks.push_back(stack_create(config().stack_bytes, (unsigned)w.stacks.size()));
        w.free_stacks.push_back((int)w.stacks.size() - 1);
    }
    f.stack = w.free_stacks.back();
    w.free_stacks.pop_back();
    context_start(&f.context, w.stacks[f.stack], &fiber_entry);
}

inline int queue_pop(Worker &w) {
    int index = w.queue[w.queue_head];
    w.queue_head = ring_next(w, w.queue_head);
    return index;
}

// From the scheduler to fiber `index` (started here if new); returns when a fiber switches back.
inline void switch_from_scheduler(Worker &w, int index) {
    Fiber &f = w.fibers[index];
    if (f.stack < 0) take_stack(w, f);
    w.current = index;
    threadIdx = f.thread_idx;
#ifdef __SANITIZE_ADDRESS__
    const Stack &s = w.stacks[f.stack];
    w.from_scheduler = true;
    __sanitizer_start_switch_fiber(&w.scheduler_fake_stack, s.base, s.bytes);
#endif
    context_switch(&w.scheduler, &f.context);
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(w.scheduler_fake_stack, nullptr, nullptr);
#endif
}

// From the running fiber `from` to fiber `index`, or to the scheduler when `index` is -1.
// Returns when `from` is resumed (never, once it is done).
inline void switch_from_fiber(Worker &w, Fiber &from, int index) {
    Context *target = &w.scheduler;
#ifdef __SANITIZE_ADDRESS__
    const void *bottom = w.scheduler_stack_bottom;
    size_t size = w.scheduler_stack_size;
#endif
    if (index >= 0) {
        Fiber &f = w.fibers[index];
        if (f.stack < 0) take_stack(w, f);
        w.current = index;
        threadIdx = f.thread_idx;
        target = &f.context;
#ifdef __SANITIZE_ADDRESS__
        bottom = w.stacks[f.stack].base;
        size = w.stacks[f.stack].bytes;
        w.from_scheduler = false;
#endif
    }
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_start_switch_fiber(from.state == FiberState::done ? nullptr : &from.fake_stack,
                                   bottom, size);
#endif
    context_switch(&from.context, target);
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(from.fake_stack, nullptr, nullptr);
#endif
}

// Called on a fiber that has just stopped at a barrier or warp collective (its state, place and
// operands set): records the arrival, completes the barrier if it was the last one, and runs
// whatever is runnable next. Returns when the barrier has completed for this fiber.
inline void wait_at_barrier(Worker &w, Fiber &f) {
    int index = w.current;
    if (f.state == FiberState::at_block_barrier) {
        w.at_block_barrier++;
        if (config().strict && w.exited > 0) {
            for (int i = 0; i < (int)w.fibers.size(); i++) {
                const Fiber &gone = w.fibers[i];
                if (gone.state == FiberState::done) {
                    fatal("deadlock in %s: %s waits at __syncthreads (%s:%d) for %s, which has "
                          "exited (undefined in CUDA C++; LLMC_EMU_STRICT=0 lets exited threads "
                          "count as arrived, as PTX does)",
                          where(w).c_str(), thread_name(f).c_str(), f.file, f.line,
                          thread_name(gone).c_str());
                }
            }
        }
        if (w.at_block_barrier == w.live) complete_block_barrier(w);
    } else {
        w.warp_arrived[index >> 5] |= 1u << (index & 31);
        check_warp_mask(w, index);
        try_complete_warp_op(w, index);
    }
    int next = w.queue_head == w.queue_tail ? -1 : queue_pop(w);
    if (next == index) return; // released and first in line: no switch at all
    switch_from_fiber(w, f, next);
}

// A fiber's life: it runs CUDA threads until one has to wait. When a thread finishes and the
// next one in the run queue has not started, that one runs right here, on the same stack,
// without a switch: a kernel without barriers costs one call per thread (adamw, kernel work
// included: 54 -> 32 ns per thread).
inline void fiber_entry() {
    Worker *w = current_worker();
#ifdef __SANITIZE_ADDRESS__
    // the first fiber started from the scheduler learns the scheduler's stack
    if (w->from_scheduler && w->scheduler_stack_size == 0) {
        __sanitizer_finish_switch_fiber(nullptr, &w->scheduler_stack_bottom,
                                        &w->scheduler_stack_size);
    } else {
        __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
    }
#endif
    for (;;) {
        w->launch->run_thread(w->launch->args);
        w = current_worker();
        int index = w->current;
        Fiber &finished = w->fibers[index];
        finished.state = FiberState::done;
        w->live--;
        w->exited++;
        on_fiber_exit(*w, index);
        int next = w->queue_head == w->queue_tail ? -1 : w->queue[w->queue_head];
        if (next >= 0 && w->fibers[next].stack < 0) {
            queue_pop(*w);
            w->fibers[next].stack = finished.stack;
            finished.stack = -1;
            w->current = next;
            threadIdx = w->fibers[next].thread_idx;
            continue;
        }
        // leave this stack for good: hand it back, then switch to the next thread (suspended,
        // so it needs no stack) or to the scheduler
        if (next >= 0) queue_pop(*w);
        w->free_stacks.push_back(finished.stack);
        finished.stack = -1;
        switch_from_fiber(*w, finished, next);
        fatal("a finished fiber was resumed"); // unreachable
    }
}

// ----------------------------------------------------------------------------
// One block, start to finish, on this worker.

inline void run_block(Worker &w, const LaunchInfo &launch, unsigned block_linear) {
    const Config &c = config();
    w.launch = &launch;
    blockIdx = uint3{block_linear % launch.grid.x, block_linear / launch.grid.x % launch.grid.y,
                     block_linear / (launch.grid.x * launch.grid.y)};
    blockDim = launch.block;
    gridDim = launch.grid;
    int n = launch.threads_per_block;
    // no reset needed between blocks: a finished block leaves every fiber done, without a stack,
    // and every other field is written before it is read (assigning Fiber{} to each cost ~10%)
    w.fibers.resize(n);
    if (w.indexed_launch != launch.launch_id) { // once per launch: three divisions per thread
        w.indexed_launch = launch.launch_id;
        for (int i = 0; i < n; i++) {
            w.fibers[i].thread_idx = uint3{i % launch.block.x, i / launch.block.x % launch.block.y,
                                           i / (launch.block.x * launch.block.y)};
        }
    }
    w.warp_live.assign((n + 31) / 32, ~0u);
    if (n % 32 != 0) w.warp_live.back() = (1u << (n % 32)) - 1;
    w.warp_arrived.assign((n + 31) / 32, 0u);
    w.queue.assign(n + 1, 0);
    w.queue_head = w.queue_tail = 0;
    w.rng = mix64(c.seed ^ mix64(launch.launch_id * 0x10001ull + block_linear));
    w.released.clear();
    for (int i = 0; i < n; i++) w.released.push_back(i);
    queue_release(w, w.released);
    w.live = n;
    w.exited = 0;
    w.at_block_barrier = 0;
    // dynamic shared memory starts as NaN; under ASan, bytes past the launch's size are poison
    // (at least 16 bytes so that data() is never null; 16-byte aligned like CUDA's)
    if (w.dynamic_shared.size() < launch.shared_bytes + 16) {
        w.dynamic_shared.resize(launch.shared_bytes + 16);
    }
    memset(w.dynamic_shared.data(), 0xFF, launch.shared_bytes);
    w.dynamic_shared_bytes = launch.shared_bytes;
#ifdef __SANITIZE_ADDRESS__
    ASAN_POISON_MEMORY_REGION(w.dynamic_shared.data() + launch.shared_bytes,
                              w.dynamic_shared.size() - launch.shared_bytes);
#endif
    // back here only when nothing is runnable: the block is done, or deadlocked
    while (w.queue_head != w.queue_tail) switch_from_scheduler(w, queue_pop(w));
    if (w.live > 0) report_deadlock(w);
#ifdef __SANITIZE_ADDRESS__
    ASAN_UNPOISON_MEMORY_REGION(w.dynamic_shared.data(), w.dynamic_shared.size());
#endif
    w.launch = nullptr;
    w.current = -1;
}

// ----------------------------------------------------------------------------
// The grid: blocks claimed from a shared counter by the launching thread and the helpers.

struct Pool {
    std::mutex mutex;
    std::condition_variable wake, finished;
    std::vector<std::thread> threads;
    unsigned long long generation = 0;
    const LaunchInfo *launch = nullptr;
    const std::vector<unsigned> *order = nullptr;
    unsigned total = 0;
    std::atomic<unsigned> next{0};
    int helpers_wanted = 0, helpers_busy = 0;
};

inline unsigned block_at(const LaunchInfo &launch, const std::vector<unsigned> *order, unsigned k,
                         unsigned total) {
    (void)launch;
    if (order != nullptr) return (*order)[k];
    return config().order == Order::reverse ? total - 1 - k : k;
}

inline void claim_blocks(Pool &pool, Worker &w) {
    for (;;) {
        unsigned k = pool.next.fetch_add(1);
        if (k >= pool.total) return;
        run_block(w, *pool.launch, block_at(*pool.launch, pool.order, k, pool.total));
    }
}

inline void helper_main(Pool *pool, int id) {
    Worker &w = this_worker();
    unsigned long long seen = 0;
    std::unique_lock<std::mutex> lock(pool->mutex);
    for (;;) {
        pool->wake.wait(lock,
                        [&] { return pool->generation != seen && id < pool->helpers_wanted; });
        seen = pool->generation;
        lock.unlock();
        claim_blocks(*pool, w);
        lock.lock();
        if (--pool->helpers_busy == 0) pool->finished.notify_all();
    }
}

inline Pool &pool() {
    static Pool *p = new Pool; // never destroyed: its threads wait until the process exits
    return *p;
}

inline void run_grid(const LaunchInfo &launch) {
    const Config &c = config();
    unsigned total = launch.grid.x * launch.grid.y * launch.grid.z;
    std::vector<unsigned> shuffled;
    const std::vector<unsigned> *order = nullptr;
    if (c.order == Order::random) {
        shuffled.resize(total);
        for (unsigned i = 0; i < total; i++) shuffled[i] = i;
        unsigned long long state = mix64(c.seed ^ launch.launch_id);
        for (unsigned i = total; i > 1; i--)
            std::swap(shuffled[i - 1], shuffled[random_below(state, i)]);
        order = &shuffled;
    }
    Worker &self = this_worker();
    if (self.launch != nullptr)
        fatal("kernel %s launched from inside a kernel", launch.kernel_name);
    int helpers = (int)(total < (unsigned)c.workers ? total : (unsigned)c.workers) - 1;
    if (helpers <= 0) {
        for (unsigned k = 0; k < total; k++)
            run_block(self, launch, block_at(launch, order, k, total));
        return;
    }
#ifdef _OPENMP
    // Built with OpenMP (as the trainers are, for the CPU GEMM): blocks run on OpenMP's threads,
    // so the two never compete for cores (OpenMP's idle threads spin; a second pool of threads
    // made test_gpt2cu 20x slower on 2 cores).
    std::atomic<unsigned> next{0};
#pragma omp parallel num_threads(helpers + 1)
    {
        Worker &w = this_worker();
        for (unsigned k; (k = next.fetch_add(1)) < total;) {
            run_block(w, launch, block_at(launch, order, k, total));
        }
    }
#else
    Pool &p = pool();
    {
        std::lock_guard<std::mutex> lock(p.mutex);
        while ((int)p.threads.size() < helpers) {
            p.threads.emplace_back(helper_main, &p, (int)p.threads.size());
        }
        p.launch = &launch;
        p.order = order;
        p.total = total;
        p.next = 0;
        p.helpers_wanted = helpers;
        p.helpers_busy = helpers;
        p.generation++;
    }
    p.wake.notify_all();
    claim_blocks(p, self);
    std::unique_lock<std::mutex> lock(p.mutex);
    p.finished.wait(lock, [&] { return p.helpers_busy == 0; });
#endif
}

// ----------------------------------------------------------------------------
// LLMC_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...)

// LLMC_EMU_STATS=1: per kernel, launches, blocks, threads and time, printed at exit (which
// kernels a test reaches, and where emulated time goes).
struct KernelStats {
    unsigned long long launches = 0, blocks = 0, threads = 0;
    double seconds = 0.0;
};
struct StatsTable {
    std::mutex mutex;
    std::map<std::string, KernelStats> kernels;
};
inline StatsTable &stats_table() {
    static StatsTable *table = new StatsTable;
    return *table;
}
inline void print_stats() {
    // stdout's buffered tail first: with both streams in one file, a stats line would otherwise
    // land inside a half-flushed stdout line (and tests/cuda_emu/run.sh's scan of launched
    // kernels would miss it)
    fflush(stdout);
    StatsTable &table = stats_table();
    std::lock_guard<std::mutex> lock(table.mutex);
    std::vector<std::pair<std::string, KernelStats>> rows(table.kernels.begin(),
                                                          table.kernels.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto &a, const auto &b) { return a.second.seconds > b.second.seconds; });
    for (const auto &row : rows) {
        fprintf(stderr, "llmc_emu: %-44s %8llu launches %10llu blocks %12llu threads %10.1f ms\n",
                row.first.c_str(), row.second.launches, row.second.blocks, row.second.threads,
                row.second.seconds * 1e3);
    }
}
inline void record_stats(const LaunchInfo &launch, double seconds) {
    StatsTable &table = stats_table();
    std::lock_guard<std::mutex> lock(table.mutex);
    if (table.kernels.empty()) atexit(print_stats);
    KernelStats &k = table.kernels[kernel_label(launch)];
    unsigned long long blocks = (unsigned long long)launch.grid.x * launch.grid.y * launch.grid.z;
    k.launches++;
    k.blocks += blocks;
    k.threads += blocks * (unsigned long long)launch.threads_per_block;
    k.seconds += seconds;
}

inline unsigned long long next_launch_id() {
    static std::atomic<unsigned long long> id{0};
    return id.fetch_add(1);
}

template <typename T>
inline void check_pointer_argument(const LaunchInfo &launch, int position, const T &) {
    (void)launch;
    (void)position;
}
template <typename T>
inline void check_pointer_argument(const LaunchInfo &launch, int position, T *const &p) {
    // data pointers only: a function pointer is never inside an allocation
    if (std::is_function<T>::value || p == nullptr || !config().strict) return;
    if (find_allocation((const void *)p, 0, nullptr) == nullptr) {
        fatal("kernel %s (launched at %s:%d): argument %d is %p, which is not inside any "
              "cudaMalloc/cudaMallocHost allocation (a host pointer, or freed memory?)",
              kernel_label(launch).c_str(), launch.file, launch.line, position, (const void *)p);
    }
}

template <typename... Params> struct Launcher {
    void (*kernel)(Params...);
    const char *name;
    const char *file;
    int line;
    dim3 grid, block;
    size_t shared_bytes;
    cudaStream_t stream;

    using Arguments = std::tuple<std::decay_t<Params>...>;
    struct Bound {
        void (*kernel)(Params...);
        Arguments arguments;
    };
    static void run_thread(const void *bound) {
        const Bound &b = *static_cast<const Bound *>(bound);
        std::apply(b.kernel, b.arguments); // each thread gets its own copy of the parameters
    }

    // Arguments convert to the kernel's parameter types as in a call (NULL, 0, narrowing...).
    void operator()(Params... args) const {
        Bound bound{kernel, Arguments(args...)};
        LaunchInfo launch{name, file, line, grid, block, shared_bytes, 0, 0, &run_thread, &bound};
        unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
        if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
            block.z > 64 || threads > (unsigned long long)max_threads_per_block || grid.x == 0 ||
            grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
            grid.z > 65535) {
            fail(cudaErrorInvalidConfiguration);
            return;
        }
        if (!valid_stream(stream)) {
            fail(cudaErrorInvalidResourceHandle);
            return;
        }
        if (shared_bytes > max_dynamic_shared((const void *)kernel)) {
            fail(cudaErrorInvalidValue);
            return;
        }
        launch.threads_per_block = (int)threads;
        launch.launch_id = next_launch_id();
        check_arguments(launch, bound.arguments, std::index_sequence_for<Params...>{});
        if (!config().stats) {
            run_grid(launch);
            return;
        }
        auto start = std::chrono::steady_clock::now();
        run_grid(launch);
        record_stats(
            launch,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }

    template <size_t... I>
    static void check_arguments(const LaunchInfo &launch, const Arguments &arguments,
                                std::index_sequence<I...>) {
        (check_pointer_argument(launch, (int)I + 1, std::get<I>(arguments)), ...);
    }
};

template <typename... Params>
inline Launcher<Params...> make_launcher(void (*kernel)(Params...), const char *name,
                                         const char *file, int line, dim3 grid, dim3 block,
                                         size_t shared_bytes = 0, cudaStream_t stream = nullptr) {
    return Launcher<Params...>{kernel, name, file, line, grid, block, shared_bytes, stream};
}

// The block's dynamic shared memory (LLMC_EXTERN_SHARED).
inline void *dynamic_shared_memory() {
    Worker *w = current_worker();
    if (w == nullptr || w->launch == nullptr) fatal("dynamic shared memory used outside a kernel");
    return w->dynamic_shared.data();
}

} // namespace llmc_emu

#endif // LLMC_CUDA_EMU_SCHEDULER_H
