// __nv_bfloat16 for the CPU emulation: 2 bytes, the same bits as CUDA's. Conversion from float
// rounds to nearest even; NaN becomes the canonical 0x7FFF (as CUDA's conversion does); arithmetic
// is done in float and rounded back, as the contract in cuda_emu.h states.
#ifndef LLMC_CUDA_EMU_BF16_H
#define LLMC_CUDA_EMU_BF16_H

#include <stdint.h>
#include <string.h>

#include "emu_types.h"

namespace llmc_emu {
inline unsigned short float_to_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    u += 0x7fffu + ((u >> 16) & 1u); // round to nearest, ties to the even upper half
    return (unsigned short)(u >> 16);
}
inline float bf16_bits_to_float(unsigned short bits) {
    uint32_t u = (uint32_t)bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
} // namespace llmc_emu

struct __nv_bfloat16_raw {
    unsigned short x;
};

struct alignas(2) __nv_bfloat16 {
    unsigned short __x;

    __nv_bfloat16() = default;
    constexpr __nv_bfloat16(__nv_bfloat16_raw raw) : __x(raw.x) {}
    __nv_bfloat16(float f) : __x(llmc_emu::float_to_bf16_bits(f)) {}
    __nv_bfloat16(double f) : __x(llmc_emu::float_to_bf16_bits((float)f)) {}
    __nv_bfloat16(int v) : __x(llmc_emu::float_to_bf16_bits((float)v)) {}
    __nv_bfloat16(unsigned int v) : __x(llmc_emu::float_to_bf16_bits((float)v)) {}
    __nv_bfloat16(short v) : __x(llmc_emu::float_to_bf16_bits((float)v)) {}
    __nv_bfloat16(unsigned short v) : __x(llmc_emu::float_to_bf16_bits((float)v)) {}
    __nv_bfloat16(long long v) : __x(llmc_emu::float_to_bf16_bits((float)v)) {}
    __nv_bfloat16(unsigned long long v) : __x(llmc_emu::float_to_bf16_bits((float)v)) {}
    operator float() const { return llmc_emu::bf16_bits_to_float(__x); }
    operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
    __nv_bfloat16 &operator=(float f) {
        __x = llmc_emu::float_to_bf16_bits(f);
        return *this;
    }
    __nv_bfloat16 &operator=(double f) {
        __x = llmc_emu::float_to_bf16_bits((float)f);
        return *this;
    }
};

struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) {
    return __nv_bfloat16(__nv_bfloat16_raw{bits});
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) {
    return h.__x;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
    return __nv_bfloat16(f);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    return __nv_bfloat16(f);
}
inline __nv_bfloat16 __double2bfloat16(double f) {
    return __nv_bfloat16((float)f);
}
inline float __bfloat162float(__nv_bfloat16 h) {
    return llmc_emu::bf16_bits_to_float(h.__x);
}
inline __nv_bfloat162 __float22bfloat162_rn(float2 f) {
    return __nv_bfloat162{__nv_bfloat16(f.x), __nv_bfloat16(f.y)};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162{__nv_bfloat16(a), __nv_bfloat16(b)};
}
inline float2 __bfloat1622float2(__nv_bfloat162 h) {
    return float2{__bfloat162float(h.x), __bfloat162float(h.y)};
}
inline float __low2float(__nv_bfloat162 h) {
    return __bfloat162float(h.x);
}
inline float __high2float(__nv_bfloat162 h) {
    return __bfloat162float(h.y);
}

#define LLMC_EMU_BF16_BINARY(op)                                                                   \
    inline __nv_bfloat16 operator op(const __nv_bfloat16 &a, const __nv_bfloat16 &b) {             \
        return __nv_bfloat16(__bfloat162float(a) op __bfloat162float(b));                          \
    }                                                                                              \
    inline __nv_bfloat16 &operator op##=(__nv_bfloat16 &a, const __nv_bfloat16 &b) {               \
        a = a op b;                                                                                \
        return a;                                                                                  \
    }
LLMC_EMU_BF16_BINARY(+)
LLMC_EMU_BF16_BINARY(-)
LLMC_EMU_BF16_BINARY(*)
LLMC_EMU_BF16_BINARY(/)
#undef LLMC_EMU_BF16_BINARY

#define LLMC_EMU_BF16_COMPARE(op)                                                                  \
    inline bool operator op(const __nv_bfloat16 &a, const __nv_bfloat16 &b) {                      \
        return __bfloat162float(a) op __bfloat162float(b);                                         \
    }
LLMC_EMU_BF16_COMPARE(==)
LLMC_EMU_BF16_COMPARE(!=)
LLMC_EMU_BF16_COMPARE(<)
LLMC_EMU_BF16_COMPARE(<=)
LLMC_EMU_BF16_COMPARE(>)
LLMC_EMU_BF16_COMPARE(>=)
#undef LLMC_EMU_BF16_COMPARE

inline __nv_bfloat16 operator-(const __nv_bfloat16 &a) {
    return __ushort_as_bfloat16((unsigned short)(a.__x ^ 0x8000u));
}
inline __nv_bfloat16 operator+(const __nv_bfloat16 &a) {
    return a;
}
inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) {
    return a + b;
}
inline __nv_bfloat16 __hsub(__nv_bfloat16 a, __nv_bfloat16 b) {
    return a - b;
}
inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) {
    return a * b;
}
inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return __nv_bfloat16(fmaf(__bfloat162float(a), __bfloat162float(b), __bfloat162float(c)));
}
inline bool __hisnan(__nv_bfloat16 a) {
    return (a.__x & 0x7fffu) > 0x7f80u;
}

#endif // LLMC_CUDA_EMU_BF16_H
