/* Byte planes and float conversions: simple loops the compiler vectorises at -O3. */
#include "mal_kernels.h"
#include "simd_x86.h"
#include <string.h>

MAL_CLONES void mal_shuffle(uint8_t *restrict dst, const uint8_t *restrict src, size_t n, size_t es) {
    if (es == 2) {
        for (size_t i = 0; i < n; i++) { dst[i] = src[2 * i]; dst[n + i] = src[2 * i + 1]; }
    } else if (es == 4) {
        for (size_t i = 0; i < n; i++) {
            dst[i] = src[4 * i]; dst[n + i] = src[4 * i + 1]; dst[2 * n + i] = src[4 * i + 2]; dst[3 * n + i] = src[4 * i + 3];
        }
    } else {
        for (size_t i = 0; i < n; i++) for (size_t j = 0; j < es; j++) dst[j * n + i] = src[i * es + j];
    }
}

MAL_CLONES void mal_unshuffle(uint8_t *restrict dst, const uint8_t *restrict src, size_t n, size_t es) {
    if (es == 2) {
        for (size_t i = 0; i < n; i++) { dst[2 * i] = src[i]; dst[2 * i + 1] = src[n + i]; }
    } else if (es == 4) {
        for (size_t i = 0; i < n; i++) {
            dst[4 * i] = src[i]; dst[4 * i + 1] = src[n + i]; dst[4 * i + 2] = src[2 * n + i]; dst[4 * i + 3] = src[3 * n + i];
        }
    } else {
        for (size_t i = 0; i < n; i++) for (size_t j = 0; j < es; j++) dst[i * es + j] = src[j * n + i];
    }
}

/* E4M3 nibble planes (codec 4, Formats/MAL.md §6): plane E packs the 4 exponent bits (6..3) of
   two bytes per byte, plane S the sign and mantissa bits (7, 2..0) likewise; byte 2k goes to the low
   nibble, 2k + 1 to the high one (zero past an odd n). Both planes are h = ceil(n / 2) bytes, E first. */
MAL_CLONES void mal_e4m3_split(uint8_t *restrict planes, const uint8_t *restrict src, size_t n) {
    size_t h = (n + 1) / 2, pairs = n / 2;
    uint8_t *e = planes, *s = planes + h;
    for (size_t k = 0; k < pairs; k++) {
        uint8_t a = src[2 * k], b = src[2 * k + 1];
        e[k] = (uint8_t)(((a >> 3) & 0x0F) | ((b << 1) & 0xF0));
        s[k] = (uint8_t)(((a >> 4) & 0x08) | (a & 0x07) | (b & 0x80) | ((b << 4) & 0x70));
    }
    if (n & 1) {
        uint8_t a = src[n - 1];
        e[pairs] = (uint8_t)((a >> 3) & 0x0F);
        s[pairs] = (uint8_t)(((a >> 4) & 0x08) | (a & 0x07));
    }
}

MAL_CLONES void mal_e4m3_join(uint8_t *restrict dst, const uint8_t *restrict planes, size_t n) {
    size_t h = (n + 1) / 2, pairs = n / 2;
    const uint8_t *e = planes, *s = planes + h;
    for (size_t k = 0; k < pairs; k++) {
        uint8_t ek = e[k], sk = s[k];
        dst[2 * k] = (uint8_t)(((sk & 0x08) << 4) | ((ek & 0x0F) << 3) | (sk & 0x07));
        dst[2 * k + 1] = (uint8_t)((sk & 0x80) | ((ek >> 1) & 0x78) | ((sk >> 4) & 0x07));
    }
    if (n & 1) dst[n - 1] = (uint8_t)(((s[pairs] & 0x08) << 4) | ((e[pairs] & 0x0F) << 3) | (s[pairs] & 0x07));
}

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

MAL_CLONES void mal_f32_to_bf16(uint16_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f2u(src[i]);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) { dst[i] = (uint16_t)(((u >> 16) & 0x8000u) | 0x7FC0u); continue; }
        u += 0x7FFFu + ((u >> 16) & 1u);   /* round to nearest even; overflow rounds to inf */
        dst[i] = (uint16_t)(u >> 16);
    }
}

MAL_CLONES void mal_bf16_to_f32(float *restrict dst, const uint16_t *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = u2f((uint32_t)src[i] << 16);
}

MAL_CLONES void mal_f32_to_f16(uint16_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        _Float16 h = (_Float16)src[i];   /* IEEE conversion: round to nearest even */
        uint16_t b; memcpy(&b, &h, 2);
        dst[i] = b;
    }
}

MAL_CLONES void mal_f16_to_f32(float *restrict dst, const uint16_t *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) { _Float16 h; memcpy(&h, &src[i], 2); dst[i] = (float)h; }
}

/* First NaN or infinity: all exponent bits (`mask`) set. Blocks of 1024 are tested with a
   branch-free reduction the compiler vectorises; only a block that has one is searched element by
   element. */
#define FIRST_WITH_MASK(NAME, T)                                                              \
    static int64_t NAME(const T *p, size_t n, T mask) {                                        \
        for (size_t b = 0; b < n; b += 1024) {                                                 \
            size_t e = n - b < 1024 ? n : b + 1024;                                            \
            T any = 0;                                                                         \
            for (size_t i = b; i < e; i++) any |= (T)((p[i] & mask) == mask);                  \
            if (any)                                                                           \
                for (size_t i = b; i < e; i++)                                                 \
                    if ((p[i] & mask) == mask) return (int64_t)i;                              \
        }                                                                                      \
        return -1;                                                                             \
    }
FIRST_WITH_MASK(first_with_mask32, uint32_t)
FIRST_WITH_MASK(first_with_mask16, uint16_t)
FIRST_WITH_MASK(first_with_mask8, uint8_t)

MAL_CLONES int64_t mal_first_nonfinite_f32(const float *p, size_t n) { return first_with_mask32((const uint32_t *)p, n, 0x7F800000u); }
MAL_CLONES int64_t mal_first_nonfinite_16(const uint16_t *p, size_t n, uint16_t exp_mask) { return first_with_mask16(p, n, exp_mask); }
MAL_CLONES int64_t mal_first_nonfinite_8(const uint8_t *p, size_t n, uint8_t mask) { return first_with_mask8(p, n, mask); }
