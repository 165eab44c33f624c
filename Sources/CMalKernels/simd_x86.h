/* What the kernel files share about the CPU: whether this is an x86-64 build, the target
   attribute of a function that runs only after `mal_simd_level()` said the CPU has AVX-512 F, BW
   and VL (the rest of the build stays portable), and the clones of element-wise loops. Internal:
   not part of the module's public header. */
#ifndef MAL_SIMD_X86_H
#define MAL_SIMD_X86_H

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define MAL_X86 1
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
/* An element-wise loop compiled three times (AVX-512, AVX2 + FMA, baseline x86-64) and chosen at
   load time by the CPU (an ifunc), so a plain `swift build -c release` runs it as fast as a
   `-march=native` build. Only for loops whose every element is computed alone: the clones give
   the same bits (`fmaf` is fused in all three), so results do not depend on the CPU. */
#define MAL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
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
