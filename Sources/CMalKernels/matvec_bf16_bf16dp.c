/* BF16 matrix-vector products in the "fast" precision: one token, or up to four tokens of a
   verify step with the one-token bits per row, through AVX-512 BF16 dot products (vdpbf16ps), for
   both BF16 layouts (row-major, and the tiled layout of mal_kernels.h).

   Why: the float32 kernels (linear_avx512.c) widen every 32 weights with two shifts or unpacks and
   multiply them with two FMAs per input. Reading from DRAM one token keeps up, but a verify step
   of two tokens spends twice the FMAs on the same bytes and cost 1.5-2.1x a one-token step on a
   32000 x 768 head in a C harness (Docs/PERFORMANCE.md, "BF16 decoding through dot products"). A
   dot product takes 32 weights as they are stored, against the activations rounded to BF16 (the
   rounding the fast prompts' panels already make): one instruction per 32 weights and input.

   Arithmetic, the same for every input count and thread split, so a verify step's rows equal a
   one-token step's bit for bit: a row is taken in groups of 32 columns in order (in the tiled
   layout, its segment of each tile, the tiles in order); row-major rows alternate the groups
   between two float32 accumulators and reduce a0 + a1, tiled rows keep one accumulator (a block's
   rows run side by side there) and reduce it; then the columns past the last whole group of 32
   are added one by one as float32 products. vdpbf16ps reads BF16 subnormals as zero, so the
   tail does too. */
#include "mal_kernels.h"
#include <string.h>

#include "simd_x86.h"

#ifdef MAL_X86

enum { BD_MAX_INPUTS = 4 };

/* Per thread: each input's BF16 groups, then its float tail columns. */
static _Thread_local float *bd_buf;
static _Thread_local size_t bd_cap;

/* A BF16 bit pattern as float32, subnormals (and zero) as +-0. */
static inline float bf16_daz(uint16_t b) { return (b & 0x7F80u) ? mal_u2f((uint32_t)b << 16) : 0.0f; }

/* xb: the first `full` values rounded to BF16 (nearest, ties to even); xt: the rest rounded the
   same way, as float32 with subnormals as zero. */
AVX512BF16 static void pack_input(uint16_t *xb, float *xt, const float *x, size_t full, size_t cols) {
    for (size_t c = 0; c < full; c += 32) {
        __m512bh b = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(x + c));
        _mm512_store_si512(xb + c, (__m512i)b);
    }
    for (size_t c = full; c < cols; c++) {
        __m128bh b = _mm_cvtneps_pbh(_mm_set_ss(x[c]));
        xt[c - full] = bf16_daz((uint16_t)_mm_extract_epi16((__m128i)b, 0));
    }
}

/* n (a multiple of 32) weights at w against each input's BF16 values at xb[t] + off. */
AVX512BF16 static inline __attribute__((always_inline)) void dp_segment(const uint16_t *w, uint16_t *const *xb, size_t off,
                                                                       size_t n, __m512 (*a)[2], const int NT) {
    size_t c = 0;
    for (; c + 64 <= n; c += 64) {
        _mm_prefetch((const char *)(w + c) + 4096, _MM_HINT_T1);
        __m512bh d0 = (__m512bh)_mm512_loadu_si512(w + c), d1 = (__m512bh)_mm512_loadu_si512(w + c + 32);
        for (int t = 0; t < NT; t++) {
            a[t][0] = _mm512_dpbf16_ps(a[t][0], d0, (__m512bh)_mm512_load_si512(xb[t] + off + c));
            a[t][1] = _mm512_dpbf16_ps(a[t][1], d1, (__m512bh)_mm512_load_si512(xb[t] + off + c + 32));
        }
    }
    if (c < n) {
        __m512bh d0 = (__m512bh)_mm512_loadu_si512(w + c);
        for (int t = 0; t < NT; t++) a[t][0] = _mm512_dpbf16_ps(a[t][0], d0, (__m512bh)_mm512_load_si512(xb[t] + off + c));
    }
}

/* Row-major rows [r0, r1), one at a time, two accumulators per input. (Four rows sharing one
   transposing reduction, their loads interleaved, ran at half speed from DRAM in a C harness;
   read one after another they gained nothing.) */
AVX512BF16 static inline __attribute__((always_inline)) void rows_dp(float *Y, size_t ys, const uint16_t *W, uint16_t *const *xb,
                                                                    float *const *xt, size_t cols, size_t full, size_t r0,
                                                                    size_t r1, const int NT) {
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *w = W + r * cols;
        __m512 a[BD_MAX_INPUTS][2];
        for (int t = 0; t < NT; t++) a[t][0] = a[t][1] = _mm512_setzero_ps();
        dp_segment(w, xb, 0, full, a, NT);
        for (int t = 0; t < NT; t++) {
            float sum = _mm512_reduce_add_ps(_mm512_add_ps(a[t][0], a[t][1]));
            for (size_t c = full; c < cols; c++) sum += bf16_daz(w[c]) * xt[t][c - full];
            Y[t * ys + r] = sum;
        }
    }
}

/* Rows [i0, i1) of one tiled block of nr rows at `block`, tiles of K columns, read in the layout's
   order (tile by tile, the block's row segments in turn). One accumulator per row and input: the
   rows' chains of dot products are independent, so R of them hide each other's latency. R (rows
   held in registers) is a constant at the whole-block calls; partial blocks pass their own. */
AVX512BF16 static inline __attribute__((always_inline)) void tiled_dp(float *Y, size_t ys, const uint16_t *block,
                                                                     uint16_t *const *xb, float *const *xt, size_t cols,
                                                                     size_t full, size_t nr, size_t K, size_t i0, size_t i1,
                                                                     const int NT) {
    __m512 a[BD_MAX_INPUTS][MAL_TILE_MAX_ROWS];
    float tail[BD_MAX_INPUTS][MAL_TILE_MAX_ROWS] = {{0}};
    for (int t = 0; t < NT; t++)
        for (size_t i = i0; i < i1; i++) a[t][i] = _mm512_setzero_ps();
    for (size_t c0 = 0; c0 < cols; c0 += K) {
        size_t kt = cols - c0 < K ? cols - c0 : K;
        size_t kfull = c0 + kt <= full ? kt : full - c0; /* columns in whole groups of 32 */
        for (size_t i = i0; i < i1; i++) {
            const uint16_t *w = block + c0 * nr + i * kt;
            for (size_t c = 0; c < kfull; c += 32) {
                if ((c & 63) == 0) _mm_prefetch((const char *)(w + c) + 4096, _MM_HINT_T1);
                __m512bh d = (__m512bh)_mm512_loadu_si512(w + c);
                for (int t = 0; t < NT; t++) a[t][i] = _mm512_dpbf16_ps(a[t][i], d, (__m512bh)_mm512_load_si512(xb[t] + c0 + c));
            }
            for (size_t c = kfull; c < kt; c++)
                for (int t = 0; t < NT; t++) tail[t][i] += bf16_daz(w[c]) * xt[t][c0 + c - full];
        }
    }
    for (int t = 0; t < NT; t++)
        for (size_t i = i0; i < i1; i++) Y[t * ys + i] = _mm512_reduce_add_ps(a[t][i]) + tail[t][i];
}

AVX512BF16 static int bf16_dp(float *Y, size_t ys, const uint16_t *W, int tiled, const float *X, size_t xs, size_t T, size_t rows,
                              size_t cols, size_t r0, size_t r1) {
    size_t full = cols & ~(size_t)31;
    size_t stride = (full / 2 + (cols - full) + 15) & ~(size_t)15; /* floats per input, a multiple of 64 bytes */
    float *buf = mal_grow_scratch(&bd_buf, &bd_cap, T * stride);
    if (!buf) return 0;
    uint16_t *xb[BD_MAX_INPUTS];
    float *xt[BD_MAX_INPUTS];
    for (size_t t = 0; t < T; t++) {
        xb[t] = (uint16_t *)(buf + t * stride);
        xt[t] = buf + t * stride + full / 2;
        pack_input(xb[t], xt[t], X + t * xs, full, cols);
    }
#define BD_SWITCH(CALL)                                                                                                            \
    switch (T) {                                                                                                                   \
    case 2: CALL(2); break;                                                                                                        \
    case 3: CALL(3); break;                                                                                                        \
    case 4: CALL(4); break;                                                                                                        \
    default: CALL(1);                                                                                                              \
    }
    if (!tiled) {
#define BD_ROWS(NT) rows_dp(Y, ys, W, xb, xt, cols, full, r0, r1, NT)
        BD_SWITCH(BD_ROWS)
#undef BD_ROWS
        return 1;
    }
    const size_t R = mal_bf16_tile_rows(cols), K = mal_bf16_tile_cols(cols);
    for (size_t base = r0 - r0 % R; base < r1; base += R) {
        size_t nr = rows - base < R ? rows - base : R;
        size_t i0 = r0 > base ? r0 - base : 0, i1 = r1 - base < nr ? r1 - base : nr;
        const uint16_t *block = W + base * cols;
#define BD_TILED(NT)                                                                                                               \
    if (i0 == 0 && i1 == R && R == 8) tiled_dp(Y + base, ys, block, xb, xt, cols, full, 8, K, 0, 8, NT);                       \
    else if (i0 == 0 && i1 == R) tiled_dp(Y + base, ys, block, xb, xt, cols, full, 4, K, 0, 4, NT);                              \
    else tiled_dp(Y + base, ys, block, xb, xt, cols, full, nr, K, i0, i1, NT)
        BD_SWITCH(BD_TILED)
#undef BD_TILED
    }
#undef BD_SWITCH
    return 1;
}
#endif

int mal_matvec_bf16_bf16dp(float *Y, size_t ys, const uint16_t *W, int tiled, const float *X, size_t xs, size_t T, size_t rows,
                           size_t cols, size_t r0, size_t r1) {
#ifdef MAL_X86
    if (mal_bf16dp_available() && T >= 1 && T <= BD_MAX_INPUTS && cols >= 32)
        return bf16_dp(Y, ys, W, tiled, X, xs, T, rows, cols, r0, r1);
#endif
    (void)Y; (void)ys; (void)W; (void)tiled; (void)X; (void)xs; (void)T; (void)rows; (void)cols; (void)r0; (void)r1;
    return 0;
}
