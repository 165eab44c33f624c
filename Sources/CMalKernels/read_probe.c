/* The plain read that the decoding kernels are measured against (malbench read): n bytes streamed
   through 64-byte loads into two XOR accumulators, with a software prefetch into L2 of every line
   `prefetch` bytes ahead (0: none), as the kernels do. Returns a value that depends on every byte,
   so the compiler keeps the loads. */
#include "mal_kernels.h"
#include <string.h>

#include "simd_x86.h"

#ifdef MAL_X86
AVX512 static uint64_t read_avx512(const uint8_t *p, size_t n, size_t prefetch) {
    __m512i a = _mm512_setzero_si512(), b = a;
    size_t i = 0;
    if (prefetch)
        for (; i + 128 <= n; i += 128) {
            _mm_prefetch((const char *)p + i + prefetch, _MM_HINT_T1);
            _mm_prefetch((const char *)p + i + prefetch + 64, _MM_HINT_T1);
            a = _mm512_xor_si512(a, _mm512_loadu_si512(p + i));
            b = _mm512_xor_si512(b, _mm512_loadu_si512(p + i + 64));
        }
    for (; i + 128 <= n; i += 128) {
        a = _mm512_xor_si512(a, _mm512_loadu_si512(p + i));
        b = _mm512_xor_si512(b, _mm512_loadu_si512(p + i + 64));
    }
    uint64_t lanes[8], s = 0;
    _mm512_storeu_si512(lanes, _mm512_xor_si512(a, b));
    for (int k = 0; k < 8; k++) s ^= lanes[k];
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

uint64_t mal_read_probe(const void *p, size_t n, size_t prefetch) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1) return read_avx512((const uint8_t *)p, n, prefetch);
#endif
    (void)prefetch;
    uint64_t s = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { memcpy(&w, (const uint8_t *)p + i, 8); s ^= w; }
    for (; i < n; i++) s += ((const uint8_t *)p)[i];
    return s;
}
