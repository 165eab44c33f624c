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
#else
#define MAL_CLONES
#endif

#endif
