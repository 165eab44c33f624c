/* What the AVX-512 kernel files share: whether this is an x86-64 build that can compile them, and
   the target attribute of a function that runs only after `mal_simd_level()` said the CPU has
   AVX-512 F, BW and VL (the rest of the build stays portable). Internal: not part of the module's
   public header. */
#ifndef MAL_SIMD_X86_H
#define MAL_SIMD_X86_H

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define MAL_X86 1
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#endif

#endif
