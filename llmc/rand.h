// Random numbers.
// 1. A Mersenne Twister that reproduces PyTorch's CPU generator bit for bit: torch.manual_seed(s)
//    followed by tensor.uniform_() / tensor.normal_() gives the same floats here, so a model
//    initialised in C equals the one our PyTorch reference initialises with the same seed.
// 2. A xorshift generator for sampling (cheap, state is one uint64 saved in checkpoints).
#ifndef LLMC_RAND_H
#define LLMC_RAND_H

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

// Matching PyTorch to the bit needs the exact float operations it performs: no fused multiply-add.
// GCC in ISO C mode (-std=c11, our Makefile) does not contract; clang needs the pragma.
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define MT_STATE_SIZE 624
#define MT_SHIFT 397

// Layout matches llm.c's mt19937_state (2,520 bytes), which its state files store verbatim. Its
// seed is 8 bytes; llm.c never sets it (its files hold whatever was there), so readers ignore it.
typedef struct {
    uint64_t seed;
    int32_t left;
    uint32_t next;
    uint32_t state[MT_STATE_SIZE];
    uint32_t matrix_a[2];
} mt19937_state;
static_assert(sizeof(mt19937_state) == 2520 && offsetof(mt19937_state, left) == 8,
              "mt19937_state must have llm.c's layout: state files store it verbatim");

// Why a saved state cannot be used (NULL if it can): the next draws read state[next] onward
// until left runs out (left draws are left before the table is refilled), so next + left - 1 must
// stay within the table. A fresh generator has left 1, next 0; after any draw left + next = 625.
// matrix_a holds the twister's two constants.
static inline const char *mt19937_state_problem(const mt19937_state *s) {
    if (s->left < 1 || s->left > MT_STATE_SIZE) return "'left' must be in 1..624";
    if ((uint64_t)s->next + (uint64_t)s->left > MT_STATE_SIZE + 1) {
        return "position 'next' plus 'left' must be <= 625 (the draws stay in the 624-word table)";
    }
    if (s->matrix_a[0] != 0x0u || s->matrix_a[1] != 0x9908b0dfu) {
        return "'matrix_a' must be {0, 0x9908b0df}";
    }
    return NULL;
}

// PyTorch keeps one cached normal from the double-precision Box-Muller path (tensors < 16
// elements); manual_seed clears it. llm.c's struct has no room for it, so it lives beside it.
typedef struct {
    mt19937_state mt;
    int has_next_normal;
    double next_normal;
} TorchGenerator;

static inline void torch_manual_seed(TorchGenerator *gen, uint32_t seed) {
    mt19937_state *s = &gen->mt;
    s->seed = seed;
    s->matrix_a[0] = 0x0u;
    s->matrix_a[1] = 0x9908b0dfu;
    s->state[0] = seed;
    for (uint32_t j = 1; j < MT_STATE_SIZE; j++) {
        uint32_t prev = s->state[j - 1];
        s->state[j] = 1812433253u * (prev ^ (prev >> 30)) + j;
    }
    s->left = 1;
    s->next = 0;
    gen->has_next_normal = 0;
    gen->next_normal = 0.0;
}

static inline void mt19937_next_state(mt19937_state *s) {
    s->left = MT_STATE_SIZE;
    s->next = 0;
    for (int j = 0; j < MT_STATE_SIZE; j++) {
        uint32_t y =
            (s->state[j] & 0x80000000u) | (s->state[(j + 1) % MT_STATE_SIZE] & 0x7fffffffu);
        s->state[j] = s->state[(j + MT_SHIFT) % MT_STATE_SIZE] ^ (y >> 1) ^ s->matrix_a[y & 1u];
    }
}

static inline uint32_t mt19937_u32(mt19937_state *s) {
    if (--(s->left) <= 0) {
        mt19937_next_state(s);
    }
    uint32_t y = s->state[s->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

// PyTorch builds 64 random bits from two draws, the first one high.
static inline uint64_t mt19937_u64(mt19937_state *s) {
    uint64_t hi = mt19937_u32(s);
    uint64_t lo = mt19937_u32(s);
    return (hi << 32) | lo;
}

// Uniform in [0, 1) from 24 random bits (torch's float path) or 53 bits (its double path).
static inline float torch_uniform_float(mt19937_state *s) {
    return (float)(mt19937_u32(s) & ((1u << 24) - 1)) * (1.0f / 16777216.0f);
}

static inline double torch_uniform_double(mt19937_state *s) {
    return (double)(mt19937_u64(s) & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Box-Muller on 16 uniforms in place: the first 8 give the radii, the last 8 the angles.
static inline void torch_normal_fill_16(float *data, float mean, float std) {
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - data[j]; // (0, 1] so the log is finite
        float u2 = data[j + 8];
        float radius = sqrtf(-2.0f * logf(u1));
        float theta = (float)(2.0 * 3.14159265358979323846 * (double)u2);
        data[j] = radius * cosf(theta) * std + mean;
        data[j + 8] = radius * sinf(theta) * std + mean;
    }
}

// tensor.normal_(mean, std) on a contiguous float tensor of n elements, as PyTorch's CPU
// kernel does it: n >= 16 draws all uniforms first, transforms blocks of 16, and redraws the
// last 16 when n is not a multiple of 16; smaller tensors use the double-precision path.
static inline void torch_normal_(TorchGenerator *gen, float *data, size_t n, double mean,
                                 double std) {
    mt19937_state *s = &gen->mt;
    if (n >= 16) {
        for (size_t i = 0; i < n; i++) {
            data[i] = torch_uniform_float(s);
        }
        for (size_t i = 0; i + 16 <= n; i += 16) {
            torch_normal_fill_16(data + i, (float)mean, (float)std);
        }
        if (n % 16 != 0) {
            float *tail = data + n - 16;
            for (int i = 0; i < 16; i++) {
                tail[i] = torch_uniform_float(s);
            }
            torch_normal_fill_16(tail, (float)mean, (float)std);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double normal;
        if (gen->has_next_normal) {
            normal = gen->next_normal;
            gen->has_next_normal = 0;
        } else {
            double u1 = torch_uniform_double(s);
            double u2 = torch_uniform_double(s);
            double radius = sqrt(-2.0 * log1p(-u2));
            double theta = 2.0 * 3.14159265358979323846 * u1;
            gen->next_normal = radius * sin(theta);
            gen->has_next_normal = 1;
            normal = radius * cos(theta);
        }
        data[i] = (float)(normal * std + mean);
    }
}

static inline void identity_permutation(int *out, int n) {
    for (int i = 0; i < n; i++) {
        out[i] = i;
    }
}

// Fisher-Yates shuffle of data[0..n-1] in place, as llm.c's random_permutation: one 32-bit draw
// per swap, reduced modulo i+1 (the data loader's shuffling, so our data order is llm.c's). The
// result is composed with what data held before.
static inline void mt19937_shuffle(mt19937_state *s, int *data, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(mt19937_u32(s) % (uint32_t)(i + 1));
        int tmp = data[i];
        data[i] = data[j];
        data[j] = tmp;
    }
}

// xorshift* for sampling: one uint64 of state, never zero.
static inline uint32_t xorshift_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

// Uniform in [0, 1) with 24 bits.
static inline float xorshift_f32(uint64_t *state) {
    return (float)(xorshift_u32(state) >> 8) / 16777216.0f;
}

#endif // LLMC_RAND_H
