/* FP8 codecs and the block quantiser (see mal_kernels.h). Written as straight-line code with
   selects so the compiler vectorises the loops at -O3. */
#include "mal_kernels.h"
#include "simd_x86.h"
#include <math.h>
#include <string.h>

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Generic RNE encoder for a float with `mbits` mantissa bits and exponent bias `bias` (E4M3: 3, 7;
   E5M2: 2, 15), for |x| below the format's overflow point; subnormals and ties to even included. */
static inline uint8_t encode_mag(uint32_t a, int mbits, int bias) {
    /* a: |x| bits, finite. Normal if exponent >= 1 - bias. */
    const uint32_t min_normal = (uint32_t)(127 + 1 - bias) << 23;
    if (a >= min_normal) {
        int shift = 23 - mbits;
        uint32_t r = a + ((1u << (shift - 1)) - 1) + ((a >> shift) & 1);   /* RNE */
        return (uint8_t)((r >> shift) - ((uint32_t)(127 - bias) << mbits));
    }
    /* Subnormal: value / 2^(1 - bias - mbits), rounded to nearest even integer. */
    float f = u2f(a) * u2f((uint32_t)(127 + bias - 1 + mbits) << 23);
    float r = (f + 8388608.0f) - 8388608.0f;   /* RNE to integer for f < 2^23 */
    return (uint8_t)(int)r;
}

/* Branch-free E4M3 encoder: both the normal and the subnormal paths are computed and selected,
   so loops over it vectorise. */
static inline uint8_t enc_e4m3(float x, int saturate) {
    uint32_t u = f2u(x);
    uint32_t sign = (u >> 24) & 0x80u;
    uint32_t a = u & 0x7FFFFFFFu;
    /* normal: round the mantissa to 3 bits (RNE), rebias 127 -> 7 */
    uint32_t r = a + 0x7FFFFu + ((a >> 20) & 1u);
    uint32_t vn = (r >> 20) - (120u << 3);
    /* subnormal: |x| / 2^-9 rounded to an even integer (only used below 2^-6, where f < 8) */
    float f = u2f(a) * 512.0f;
    f = f < 16.0f ? f : 16.0f;
    float rr = (f + 8388608.0f) - 8388608.0f;
    uint32_t vs = (uint32_t)(int32_t)rr;
    uint32_t v = a >= 0x3C800000u ? vn : vs;
    uint32_t big = saturate ? 0x7Eu : (a <= 0x43E80000u ? 0x7Eu : 0x7Fu);   /* >= 448 */
    v = a >= 0x43E00000u ? big : v;
    v = a > 0x7F800000u ? 0x7Fu : v;                                         /* NaN */
    return (uint8_t)(v | sign);
}

MAL_CLONES void mal_f32_to_e4m3(uint8_t *restrict dst, const float *restrict src, size_t n, int saturate) {
    if (saturate) { for (size_t i = 0; i < n; i++) dst[i] = enc_e4m3(src[i], 1); }
    else { for (size_t i = 0; i < n; i++) dst[i] = enc_e4m3(src[i], 0); }
}

MAL_CLONES void mal_e4m3_to_f32(float *restrict dst, const uint8_t *restrict src, size_t n) {
    /* (b & 0x7F) << 20 is the value times 2^-120 as float32 bits, subnormals included. */
    const float k = u2f((uint32_t)(127 + 120) << 23);
    for (size_t i = 0; i < n; i++) {
        uint8_t b = src[i];
        float m = u2f((uint32_t)(b & 0x7F) << 20) * k;
        m = (b & 0x7F) == 0x7F ? NAN : m;
        dst[i] = (b & 0x80) ? -m : m;
    }
}

MAL_CLONES void mal_f32_to_e5m2(uint8_t *restrict dst, const float *restrict src, size_t n, int saturate) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f2u(src[i]);
        uint8_t sign = (uint8_t)((u >> 24) & 0x80);
        uint32_t a = u & 0x7FFFFFFFu;
        uint8_t v;
        if (a > 0x7F800000u) v = 0x7E;                          /* NaN (quiet) */
        else if (a >= 0x47700000u) {                           /* >= 61440 = 1.875 * 2^15, beyond max 57344's tie */
            v = saturate ? 0x7B : 0x7C;                        /* max finite, or inf */
        } else {
            v = encode_mag(a, 2, 15);                          /* rounds to inf (0x7C) above 57344 + half step */
            if (saturate && v == 0x7C) v = 0x7B;
        }
        dst[i] = v | sign;
    }
}

MAL_CLONES void mal_e5m2_to_f32(float *restrict dst, const uint8_t *restrict src, size_t n) {
    /* E5M2 is the top byte of an IEEE half. */
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)src[i] << 8;
        _Float16 f; memcpy(&f, &h, 2);
        dst[i] = (float)f;
    }
}

MAL_CLONES long mal_quantize_band_e4m3(uint8_t *restrict q, float *restrict scales, const float *restrict x, size_t rows, size_t cols,
                            size_t bc, int pow2) {
    size_t nb = (cols + bc - 1) / bc;
    for (size_t b = 0; b < nb; b++) {
        size_t c0 = b * bc, c1 = c0 + bc < cols ? c0 + bc : cols;
        /* amax over the block as an integer max of |x|'s bits (same order as the floats for
           non-negative values; vectorises where a float max reduction does not). Bits above
           0x7F7FFFFF mean inf or NaN. */
        uint32_t m = 0;
        for (size_t r = 0; r < rows; r++) {
            const float *row = x + r * cols;
            for (size_t c = c0; c < c1; c++) {
                uint32_t a = f2u(row[c]) & 0x7FFFFFFFu;
                m = a > m ? a : m;
            }
        }
        if (m > 0x7F7FFFFFu) {
            for (size_t r = 0; r < rows; r++)
                for (size_t c = c0; c < c1; c++)
                    if (!(fabsf(x[r * cols + c]) <= 3.402823466e38f)) return (long)(r * cols + c);
        }
        float amax = u2f(m);
        amax = amax > 1e-4f ? amax : 1e-4f;
        float s = amax / 448.0f;
        if (pow2) {
            /* 2^ceil(log2 s), exactly: round the float up to a power of two. */
            uint32_t u = f2u(s);
            if (u & 0x007FFFFFu) u = (u & 0x7F800000u) + 0x00800000u;
            s = u2f(u);
        }
        scales[b] = s;
        for (size_t r = 0; r < rows; r++) {
            const float *row = x + r * cols;
            uint8_t *qr = q + r * cols;
            for (size_t c = c0; c < c1; c++) qr[c] = enc_e4m3(row[c] / s, 1);   /* division, as the reference */
        }
    }
    return -1;
}

MAL_CLONES void mal_dequantize_band_e4m3(float *restrict y, const uint8_t *restrict q, const float *restrict scales, size_t rows,
                              size_t cols, size_t bc) {
    const float k = u2f((uint32_t)(127 + 120) << 23);
    size_t nb = (cols + bc - 1) / bc;
    for (size_t r = 0; r < rows; r++) {
        for (size_t b = 0; b < nb; b++) {
            size_t c0 = b * bc, c1 = c0 + bc < cols ? c0 + bc : cols;
            float s = scales[b];
            const uint8_t *qr = q + r * cols;
            float *yr = y + r * cols;
            for (size_t c = c0; c < c1; c++) {
                uint8_t v = qr[c];
                float m = u2f((uint32_t)(v & 0x7F) << 20) * k;     /* exact value of the code */
                m = (v & 0x7F) == 0x7F ? NAN : m;
                m = (v & 0x80) ? -m : m;
                yr[c] = m * s;                                     /* float32(q) * s: one rounding */
            }
        }
    }
}
