// User-space fibers for the CPU emulation: one per CUDA thread, switched only at barriers and
// warp collectives. On x86-64 the switch is six pushes, a stack swap and six pops (callee-saved
// registers only, as at a function call); elsewhere, or with -DLLMC_EMU_UCONTEXT, it is
// swapcontext, which also saves the signal mask with a system call and is several times slower
// (docs/cuda_emu.md has both measured).
#ifndef LLMC_CUDA_EMU_FIBER_H
#define LLMC_CUDA_EMU_FIBER_H

#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__) && !defined(LLMC_EMU_UCONTEXT)
#define LLMC_EMU_UCONTEXT 1
#endif
#ifdef LLMC_EMU_UCONTEXT
#include <ucontext.h>
#endif
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#include "emu_runtime.h"

namespace llmc_emu {

// A fiber stack: [base, base + bytes), with an inaccessible guard page below base so that an
// overflow faults instead of corrupting the neighbouring stack.
struct Stack {
    char *base = nullptr;
    size_t bytes = 0;
};

// `color` staggers where stacks start: equally sized stacks would otherwise all begin at the
// same offset modulo the cache's set stride, and switching between a block's 1024 fibers would
// thrash a few cache sets (measured: a 1024-thread block reduction ran 2x slower).
inline Stack stack_create(size_t bytes, unsigned color) {
    size_t page = (size_t)sysconf(_SC_PAGE_SIZE);
    bytes = (bytes + page - 1) / page * page;
    void *memory = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) fatal("cannot map a %zu KiB fiber stack", bytes >> 10);
    mprotect(memory, page, PROT_NONE);
    size_t stagger = (color * 64u * 5u) % 4096u;
    return Stack{(char *)memory + page, bytes - stagger};
}

#ifdef LLMC_EMU_UCONTEXT

struct Context {
    ucontext_t context;
};
inline void context_start(Context *c, const Stack &stack, void (*entry)()) {
    getcontext(&c->context);
    c->context.uc_stack.ss_sp = stack.base;
    c->context.uc_stack.ss_size = stack.bytes;
    c->context.uc_link = nullptr;
    makecontext(&c->context, entry, 0);
}
inline void context_switch(Context *from, Context *to) {
    swapcontext(&from->context, &to->context);
}

#else

struct Context {
    void *stack_pointer;
};

// switch_stack(save, load): saves the callee-saved registers on the current stack, stores the
// stack pointer in *save, and resumes the context whose stack pointer is load.
__attribute__((naked, noinline)) inline void switch_stack(void **, void *) {
    __asm__ volatile("pushq %rbp\n\t"
                     "pushq %rbx\n\t"
                     "pushq %r12\n\t"
                     "pushq %r13\n\t"
                     "pushq %r14\n\t"
                     "pushq %r15\n\t"
                     "movq %rsp, (%rdi)\n\t"
                     "movq %rsi, %rsp\n\t"
                     "popq %r15\n\t"
                     "popq %r14\n\t"
                     "popq %r13\n\t"
                     "popq %r12\n\t"
                     "popq %rbx\n\t"
                     "popq %rbp\n\t"
                     "ret\n\t");
}

// A fresh fiber's first switch "returns" here with the entry function in r12 and a 16-byte
// aligned stack; the entry never returns.
__attribute__((naked, noinline)) inline void fiber_trampoline() {
    __asm__ volatile("callq *%r12\n\t"
                     "ud2\n\t");
}

inline void context_start(Context *c, const Stack &stack, void (*entry)()) {
    uintptr_t top = ((uintptr_t)(stack.base + stack.bytes)) & ~(uintptr_t)15;
    void **frame = (void **)(top - 7 * sizeof(void *));
    frame[0] = nullptr;                   // r15
    frame[1] = nullptr;                   // r14
    frame[2] = nullptr;                   // r13
    frame[3] = (void *)entry;             // r12
    frame[4] = nullptr;                   // rbx
    frame[5] = nullptr;                   // rbp
    frame[6] = (void *)&fiber_trampoline; // return address; afterwards rsp == top
    c->stack_pointer = frame;
}
inline void context_switch(Context *from, Context *to) {
    switch_stack(&from->stack_pointer, to->stack_pointer);
}

#endif

} // namespace llmc_emu

#endif // LLMC_CUDA_EMU_FIBER_H
