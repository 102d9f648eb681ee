// exp and tanh for float, accurate to a few ulp, written in plain arithmetic so that loops calling
// them vectorise (libm's expf/tanhf are scalar calls). Used by GELU, softmax and attention, whose
// outputs must stay within our 1e-5 parity budget against PyTorch: these are ~1e-7 relative.
#ifndef LLMC_FASTMATH_H
#define LLMC_FASTMATH_H

#include <stdint.h>
#include <string.h>

// e^x: x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor series to degree 7 (error < 1e-8
// relative), 2^n assembled in the exponent bits. Inputs below -87 give 0-ish, above 88 clamp;
// NaN gives NaN. n is read from the bits of the rounded sum in unsigned arithmetic, never by a
// float-to-int cast, which would be undefined behaviour for NaN.
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float round_magic = 12582912.0f; // 1.5 * 2^23: adding it rounds to an integer
    const uint32_t round_magic_bits = 0x4b400000u;
    float shifted = x * 1.44269504088896341f + round_magic; // round_magic + n, exactly
    float n = shifted - round_magic;
    float r = x - n * 0.693145751953125f; // ln2, high part (exact in float times n)
    r = r - n * 1.42860682030941723e-6f;  // ln2, low part
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t shifted_bits;
    memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
    uint32_t bits = (shifted_bits - round_magic_bits + 127u) << 23; // n + 127 in the exponent
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

// tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)); absolute error ~1e-7 (what GELU needs).
static inline float tanh_approx(float x) {
    float ax = x < 0.0f ? -x : x;
    float t = 1.0f - 2.0f / (exp_approx(2.0f * ax) + 1.0f);
    return x < 0.0f ? -t : t;
}

#endif // LLMC_FASTMATH_H
