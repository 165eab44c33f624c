/* What the kernel files share about the CPU: whether this is an x86-64 build, the target
   attribute of a function that runs only after `mal_simd_level()` said the CPU has AVX-512 F, BW
   and VL (the rest of the build stays portable), the clones of element-wise loops, and what two
   kernel files share (scratch buffers, a transposing reduction, the wide-row FP8 kernels). Internal: not part of
   the module's public header. */
#ifndef MAL_SIMD_X86_H
#define MAL_SIMD_X86_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float mal_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The E4M3 kernels' decoding of one byte (the vector forms do the same with shifts and masks):
   sign | eeee mmm at float32 bits 31 and 26..20, the E4M3 value times 2^-120, subnormals included.
   The kernels fold 2^60 into the scaled input and 2^60 into the result. */
static inline float mal_e4m3_x2m120(uint32_t b) { return mal_u2f(((b & 0x80u) << 24) | ((b & 0x7Fu) << 20)); }
static const float MAL_TWO_60 = 1.152921504606846976e18f; /* 2^60 */

/* A per-thread scratch buffer of at least n floats, 64-byte aligned, grown (never shrunk) in
   *buf / *cap and kept for the thread's life (pool threads and the main thread are long-lived);
   NULL if the allocation fails. */
static inline float *mal_grow_scratch(float **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        free(*buf);
        size_t c = (n + 1023) & ~(size_t)1023;
        *buf = aligned_alloc(64, c * sizeof(float));
        *cap = *buf ? c : 0;
    }
    return *buf;
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define MAL_X86 1
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
/* The same and AVX-512 BF16 (vdpbf16ps, vcvtne2ps2bf16): only after mal_bf16dp_available() said yes. */
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
/* An element-wise loop compiled three times (AVX-512, AVX2 + FMA, baseline x86-64) and chosen at
   load time by the CPU (an ifunc), so a plain `swift build -c release` runs it as fast as a
   `-march=native` build. Only for loops whose every element is computed alone: the clones give
   the same bits (`fmaf` is fused in all three), so results do not depend on the CPU. */
#define MAL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
/* The four lane sums of a, b, c, d in one vector. Each sum takes the same steps in any position
   of the four, so a result never depends on what it was reduced beside. */
AVX512 static inline __m128 mal_red4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
    __m512 s = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)), _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* FP8 E4M3 matrix-vector products for rows of MAL_E4M3_WIDE_COLS columns or more
   (matvec_e4m3_wide_avx512.c; linear_avx512.c dispatches to them). */
enum { MAL_E4M3_WIDE_COLS = 2048 };
#include <stddef.h>
#include <stdint.h>
AVX512 int mal_e4m3_wide_avx512(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br, size_t bc,
                                size_t r0, size_t r1);
AVX512 int mal_e4m3_wide_multi_avx512(float *Y, size_t ys, const uint8_t *W, const float *scales, const float *X, size_t xs,
                                      size_t T, size_t cols, size_t br, size_t bc, size_t r0, size_t r1);
#else
#define MAL_CLONES
#endif

#endif
