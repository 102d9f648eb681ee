// CUDA built-in types, math and bit intrinsics for the CPU emulation (see cuda_emu.h).
// Vector types are aggregates with CUDA's alignment, so __shared__ arrays of them stay trivially
// initialised thread_locals and reinterpret_casts between them and scalars behave as on the GPU.
#ifndef LLMC_CUDA_EMU_TYPES_H
#define LLMC_CUDA_EMU_TYPES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned int x, y;
};
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};

inline float2 make_float2(float x, float y) {
    return float2{x, y};
}
inline float4 make_float4(float x, float y, float z, float w) {
    return float4{x, y, z, w};
}
inline int2 make_int2(int x, int y) {
    return int2{x, y};
}
inline int4 make_int4(int x, int y, int z, int w) {
    return int4{x, y, z, w};
}
inline uint2 make_uint2(unsigned x, unsigned y) {
    return uint2{x, y};
}
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
    return uint4{x, y, z, w};
}

constexpr int warpSize = 32;

// ----------------------------------------------------------------------------
// Math. The C float functions come from <math.h>; the fast-math intrinsics are the accurate
// functions here (the GPU's approximations are not reproduced: docs/cuda_emu.md).

inline float rsqrtf(float x) {
    return 1.0f / sqrtf(x);
}
inline float __expf(float x) {
    return expf(x);
}
inline float __logf(float x) {
    return logf(x);
}
inline float __sinf(float x) {
    return sinf(x);
}
inline float __cosf(float x) {
    return cosf(x);
}
inline float __tanhf(float x) {
    return tanhf(x);
}
inline float __powf(float x, float y) {
    return powf(x, y);
}
inline float __fdividef(float x, float y) {
    return x / y;
}
inline float __frcp_rn(float x) {
    return 1.0f / x;
}
inline float __fsqrt_rn(float x) {
    return sqrtf(x);
}
inline float __fadd_rn(float x, float y) {
    return x + y;
}
inline float __fmul_rn(float x, float y) {
    return x * y;
}
inline float __fmaf_rn(float x, float y, float z) {
    return fmaf(x, y, z);
}
inline float __saturatef(float x) {
    return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0));
}
inline int __float2int_rn(float x) {
    return (int)nearbyintf(x);
}
inline int __float2int_rz(float x) {
    return (int)x;
}

// CUDA's global min/max accept any mix of arithmetic types (usual arithmetic conversions).
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
inline std::common_type_t<A, B> min(A a, B b) {
    using R = std::common_type_t<A, B>;
    return (R)b < (R)a ? (R)b : (R)a;
}
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
inline std::common_type_t<A, B> max(A a, B b) {
    using R = std::common_type_t<A, B>;
    return (R)a < (R)b ? (R)b : (R)a;
}

// ----------------------------------------------------------------------------
// Bits and cache-hinted loads/stores (the hints mean nothing on the CPU).

inline unsigned int __float_as_uint(float x) {
    unsigned int u;
    memcpy(&u, &x, 4);
    return u;
}
inline float __uint_as_float(unsigned int u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}
inline int __float_as_int(float x) {
    return (int)__float_as_uint(x);
}
inline float __int_as_float(int i) {
    return __uint_as_float((unsigned int)i);
}
inline int __popc(unsigned int x) {
    return __builtin_popcount(x);
}
inline int __popcll(unsigned long long x) {
    return __builtin_popcountll(x);
}
inline int __clz(int x) {
    return x == 0 ? 32 : __builtin_clz((unsigned int)x);
}
inline int __clzll(long long x) {
    return x == 0 ? 64 : __builtin_clzll((unsigned long long)x);
}
inline int __ffs(int x) {
    return __builtin_ffs(x);
}
inline unsigned int __brev(unsigned int x) {
    unsigned int r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}

template <typename T> inline T __ldcs(const T *p) {
    return *p;
}
template <typename T> inline T __ldcg(const T *p) {
    return *p;
}
template <typename T> inline T __ldg(const T *p) {
    return *p;
}
template <typename T> inline T __ldlu(const T *p) {
    return *p;
}
template <typename T> inline void __stcs(T *p, T v) {
    *p = v;
}
template <typename T> inline void __stcg(T *p, T v) {
    *p = v;
}
template <typename T> inline void __stwt(T *p, T v) {
    *p = v;
}

#endif // LLMC_CUDA_EMU_TYPES_H
