/* AVX-512 kernels for the linear layers: matrix-vector products for F32, BF16 and FP8 E4M3 weights
   (decoding, one token at a time) and the matrix-matrix product of prompt processing.

   Decoding is memory-bound only if the core issues few enough instructions per weight byte that
   its out-of-order window keeps many cache lines in flight. The portable loops widen each 16-bit
   or 8-bit weight to its own 32-bit lane (zero-extend, shift, mask, or: 3-6 operations per 16
   weights); these kernels decode a whole 64-byte load in place with 32-bit and 16-bit shifts and
   masks, which leaves the weights in a fixed interleaved order. The input vector is permuted into
   that order once per call (a few hundred floats: free next to rows x cols weights), so the products
   are the same float32 products as the portable kernels', summed in a different order.

   BF16, one 32-bit lane holding weights 2j (low half) and 2j+1 (high half):
     w[2j]   = lane << 16            w[2j+1] = lane & 0xFFFF0000          (2 ops per 32 weights)
   E4M3, one 32-bit lane holding bytes b0..b3 = weights 4j..4j+3. An arithmetic 16-bit shift by 4
   puts a byte that sits in the top of a 16-bit half at bits 4..11 of it with its sign copied above;
   masking 0x87F0 in the half (0x87F00000 once it is in the upper half) leaves sign | eeee mmm at the
   bit positions of a float32's sign and bits 20..26: the E4M3 value times 2^-120, subnormals
   included (a float32 exponent field of 0..15 covers every E4M3 exponent).
     t = sra16(lane, 4):            b3 = t & M,  b1 = (t << 16) & M
     t = sra16(lane << 8 (16-bit), 4): b2 = t & M,  b0 = (t << 16) & M      (9 ops per 64 weights)
   The block scale and 2^60 of the 2^120 are folded into the permuted input (once per 128-row
   block), the other 2^60 into the result, so no product comes near float32's range limits.

   Software prefetch into L2 (prefetcht1) a fixed distance ahead of the weight stream lifts every
   dtype to the plain-read ceiling; the distances (F32 4 KiB, BF16 8 KiB, FP8 16 KiB) were tuned
   per dtype, and prefetcht0 or short distances were slower than none (Docs/PERFORMANCE.md, the
   kernel table). Prefetching past a matrix's end is harmless (a hint, never a fault). */
#include "mal_kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "simd_x86.h"

static int simd_level = -1; /* -1 unknown, 0 portable, 1 AVX-512 (F, BW, VL) */

int mal_simd_level(void) {
    int level = __atomic_load_n(&simd_level, __ATOMIC_RELAXED);
    if (level < 0) {
#ifdef MAL_X86
        const char *off = getenv("MAL_NO_AVX512");
        __builtin_cpu_init();
        level = (!off || !*off || *off == '0') && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl");
#else
        level = 0;
#endif
        __atomic_store_n(&simd_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

/* Per-thread scratch for the permuted input (grows, kept for the thread's life: pool threads and
   the main thread are long-lived). */
static _Thread_local float *scratch_buf;
static _Thread_local size_t scratch_cap;

static _Thread_local float *rows_buf;
static _Thread_local size_t rows_cap;

static float *scratch(size_t n) { return mal_grow_scratch(&scratch_buf, &scratch_cap, n); }

#ifdef MAL_X86

AVX512 static inline float hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

#define PREFETCH_L2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)

AVX512 static void matvec_f32_avx512(float *y, const float *W, const float *x, size_t cols, size_t r0, size_t r1) {
    size_t full = cols & ~(size_t)63;
    for (size_t r = r0; r < r1; r++) {
        const float *w = W + r * cols;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t c = 0;
        for (; c < full; c += 64) {
            const char *p = (const char *)(w + c) + 4096;
            PREFETCH_L2(p); PREFETCH_L2(p + 64); PREFETCH_L2(p + 128); PREFETCH_L2(p + 192);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 16), _mm512_loadu_ps(x + c + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 32), _mm512_loadu_ps(x + c + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 48), _mm512_loadu_ps(x + c + 48), a3);
        }
        for (; c + 16 <= cols; c += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), a0);
        if (c < cols) {
            __mmask16 k = (__mmask16)((1u << (cols - c)) - 1);
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, w + c), _mm512_maskz_loadu_ps(k, x + c), a1);
        }
        y[r] = hsum4(a0, a1, a2, a3);
    }
}

/* The input in the BF16 kernels' order: per 32-group, the 16 even-indexed values, then the odd. */
static void permute_pairs(float *restrict xp, const float *restrict x, size_t full) {
    for (size_t g = 0; g < full; g += 32)
        for (size_t j = 0; j < 16; j++) { xp[g + j] = x[g + 2 * j]; xp[g + 16 + j] = x[g + 2 * j + 1]; }
}

/* 32 BF16 weights (one 64-byte lane group `d`) times the permuted input at xt: even weights into
   a0, odd into a1. */
AVX512 static inline void bf16_fma32(__m512i d, const float *xt, __m512 *a0, __m512 *a1) {
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    *a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(d, 16)), _mm512_load_ps(xt), *a0);
    *a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(d, hi)), _mm512_load_ps(xt + 16), *a1);
}

AVX512 static int matvec_bf16_avx512(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1) {
    size_t full = cols & ~(size_t)31; /* columns in whole 32-weight groups */
    float *xp = scratch(full);
    if (!xp) return 0;
    permute_pairs(xp, x, full);
    /* 128 weights per iteration into 8 accumulators, two prefetches: faster than 64 into 4 (Docs/PERFORMANCE.md). */
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *w = W + r * cols;
        __m512 a[8];
        for (int i = 0; i < 8; i++) a[i] = _mm512_setzero_ps();
        size_t c = 0;
        for (; c + 128 <= full; c += 128) {
            PREFETCH_L2((const char *)(w + c) + 8192);
            PREFETCH_L2((const char *)(w + c) + 8192 + 128);
            for (int q = 0; q < 4; q++) {
                __m512i d = _mm512_loadu_si512(w + c + 32 * q);
                bf16_fma32(d, xp + c + 32 * q, &a[2 * q], &a[2 * q + 1]);
            }
        }
        for (; c < full; c += 32) {
            __m512i d = _mm512_loadu_si512(w + c);
            bf16_fma32(d, xp + c, &a[0], &a[1]);
        }
        float s = hsum4(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[2], a[6]), _mm512_add_ps(a[3], a[7]));
        for (c = full; c < cols; c++) s += mal_u2f((uint32_t)w[c] << 16) * x[c];
        y[r] = s;
    }
    return 1;
}

/* The row-major kernel for NT inputs at once: the same accumulators and order per input, each
   weight vector loaded and decoded once. */
AVX512 static inline __attribute__((always_inline)) void bf16_rows_multi(float *Y, size_t ys, const uint16_t *W, float *const *xp,
                                                                        const float *X, size_t xs, size_t cols, size_t full,
                                                                        size_t r0, size_t r1, const int NT) {
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *w = W + r * cols;
        __m512 a[4][8];
        for (int t = 0; t < NT; t++) for (int i = 0; i < 8; i++) a[t][i] = _mm512_setzero_ps();
        size_t c = 0;
        for (; c + 128 <= full; c += 128) {
            PREFETCH_L2((const char *)(w + c) + 8192);
            PREFETCH_L2((const char *)(w + c) + 8192 + 128);
            for (int q = 0; q < 4; q++) {
                __m512i d = _mm512_loadu_si512(w + c + 32 * q);
                for (int t = 0; t < NT; t++) bf16_fma32(d, xp[t] + c + 32 * q, &a[t][2 * q], &a[t][2 * q + 1]);
            }
        }
        for (; c < full; c += 32) {
            __m512i d = _mm512_loadu_si512(w + c);
            for (int t = 0; t < NT; t++) bf16_fma32(d, xp[t] + c, &a[t][0], &a[t][1]);
        }
        for (int t = 0; t < NT; t++) {
            float s = hsum4(_mm512_add_ps(a[t][0], a[t][4]), _mm512_add_ps(a[t][1], a[t][5]), _mm512_add_ps(a[t][2], a[t][6]),
                            _mm512_add_ps(a[t][3], a[t][7]));
            for (size_t k = full; k < cols; k++) s += mal_u2f((uint32_t)w[k] << 16) * X[t * xs + k];
            Y[t * ys + r] = s;
        }
    }
}

AVX512 static int matvec_bf16_multi_avx512(float *Y, size_t ys, const uint16_t *W, const float *X, size_t xs, size_t T, size_t cols,
                                           size_t r0, size_t r1) {
    size_t full = cols & ~(size_t)31;
    float *buf = scratch(4 * (full + 16));
    if (!buf || T > 4) return 0;
    float *xp[4];
    for (size_t t = 0; t < T; t++) {
        xp[t] = (float *)(((uintptr_t)(buf + t * (full + 16)) + 63) & ~(uintptr_t)63);
        permute_pairs(xp[t], X + t * xs, full);
    }
    switch (T) {
    case 2: bf16_rows_multi(Y, ys, W, xp, X, xs, cols, full, r0, r1, 2); break;
    case 3: bf16_rows_multi(Y, ys, W, xp, X, xs, cols, full, r0, r1, 3); break;
    case 4: bf16_rows_multi(Y, ys, W, xp, X, xs, cols, full, r0, r1, 4); break;
    default: bf16_rows_multi(Y, ys, W, xp, X, xs, cols, full, r0, r1, 1);
    }
    return 1;
}

/* BF16 in the tiled layout (mal_kernels.h): per block of rows, per tile of columns, the block's
   row segments follow each other, so the weights are one forward stream and each input tile
   serves every row of the block. Same in-place decode as above. */

/* One whole block of R rows, tiles of K columns (R, K constants at each call, so the compiler keeps
   the 2R accumulators in registers and unrolls whole tiles). Every other line is prefetched 4 KiB
   ahead: both lines, or 8 KiB, were slower (Docs/PERFORMANCE.md, the tiled layout). */
AVX512 static inline __attribute__((always_inline)) void tiled_block(float *y, const uint16_t *block, const float *xp,
                                                                    const float *x, size_t cols, size_t full, const int R,
                                                                    const size_t K) {
    __m512 a[MAL_TILE_MAX_ROWS][2];
    float tail[MAL_TILE_MAX_ROWS] = {0};
    for (int i = 0; i < R; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
    for (size_t c0 = 0; c0 < cols; c0 += K) {
        size_t kt = cols - c0 < K ? cols - c0 : K;
        size_t kfull = c0 + kt <= full ? kt : full - c0; /* columns in whole 32-groups */
        const uint16_t *w = block + c0 * R;
        const float *xt = xp + c0;
        if (kfull == K) {
            for (int i = 0; i < R; i++, w += K) {
                for (size_t c = 0; c < K; c += 64) {
                    PREFETCH_L2((const char *)(w + c) + 4096);
                    __m512i d0 = _mm512_loadu_si512(w + c), d1 = _mm512_loadu_si512(w + c + 32);
                    bf16_fma32(d0, xt + c, &a[i][0], &a[i][1]);
                    bf16_fma32(d1, xt + c + 32, &a[i][0], &a[i][1]);
                }
            }
            continue;
        }
        for (int i = 0; i < R; i++, w += kt) { /* the last, narrower tile */
            size_t c = 0;
            for (; c + 32 <= kfull; c += 32) {
                __m512i d0 = _mm512_loadu_si512(w + c);
                bf16_fma32(d0, xt + c, &a[i][0], &a[i][1]);
            }
            for (c = kfull; c < kt; c++) tail[i] += mal_u2f((uint32_t)w[c] << 16) * x[c0 + c];
        }
    }
    for (int i = 0; i < R; i++) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(a[i][0], a[i][1])) + tail[i];
}

/* Rows [i0, i1) of a block of nr rows (a thread's range starts or ends inside it, or the last
   block): each row summed tile by tile, the order both tiled kernels use for partial blocks. */
AVX512 static void tiled_partial(float *y, const uint16_t *block, const float *xp, const float *x, size_t cols, size_t full,
                                 size_t nr, size_t K, size_t i0, size_t i1) {
    __m512 acc[MAL_TILE_MAX_ROWS];
    float tail[MAL_TILE_MAX_ROWS] = {0};
    for (size_t i = 0; i < MAL_TILE_MAX_ROWS; i++) acc[i] = _mm512_setzero_ps();
    for (size_t c0 = 0; c0 < cols; c0 += K) {
        size_t kt = cols - c0 < K ? cols - c0 : K;
        size_t kfull = c0 + kt <= full ? kt : full - c0;
        const uint16_t *tile = block + c0 * nr;
        for (size_t i = i0; i < i1; i++) {
            const uint16_t *w = tile + i * kt;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0;
            size_t c = 0;
            for (; c + 32 <= kfull; c += 32) bf16_fma32(_mm512_loadu_si512(w + c), xp + c0 + c, &a0, &a1);
            acc[i] = _mm512_add_ps(acc[i], _mm512_add_ps(a0, a1));
            for (c = kfull; c < kt; c++) tail[i] += mal_u2f((uint32_t)w[c] << 16) * x[c0 + c];
        }
    }
    for (size_t i = i0; i < i1; i++) y[i] = _mm512_reduce_add_ps(acc[i]) + tail[i];
}

/* The tiled kernel for NT inputs at once (speculative decoding's verify steps): each weight vector
   is loaded and decoded once and multiplied into every input's accumulators, which follow exactly
   the one-input kernel's order, so each input's result is bit for bit that of the kernel above. */
AVX512 static inline __attribute__((always_inline)) void tiled_block_multi(float *y, size_t ys, const uint16_t *block,
                                                                          float *const *xp, const float *x, size_t xs,
                                                                          size_t cols, size_t full, const int R, const size_t K,
                                                                          const int NT) {
    __m512 a[4][MAL_TILE_MAX_ROWS][2];
    float tail[4][MAL_TILE_MAX_ROWS] = {{0}};
    for (int t = 0; t < NT; t++) for (int i = 0; i < R; i++) a[t][i][0] = a[t][i][1] = _mm512_setzero_ps();
    for (size_t c0 = 0; c0 < cols; c0 += K) {
        size_t kt = cols - c0 < K ? cols - c0 : K;
        size_t kfull = c0 + kt <= full ? kt : full - c0;
        const uint16_t *w = block + c0 * R;
        if (kfull == K) {
            for (int i = 0; i < R; i++, w += K) {
                for (size_t c = 0; c < K; c += 64) {
                    PREFETCH_L2((const char *)(w + c) + 4096);
                    __m512i d0 = _mm512_loadu_si512(w + c), d1 = _mm512_loadu_si512(w + c + 32);
                    for (int t = 0; t < NT; t++) {
                        bf16_fma32(d0, xp[t] + c0 + c, &a[t][i][0], &a[t][i][1]);
                        bf16_fma32(d1, xp[t] + c0 + c + 32, &a[t][i][0], &a[t][i][1]);
                    }
                }
            }
            continue;
        }
        for (int i = 0; i < R; i++, w += kt) {
            size_t c = 0;
            for (; c + 32 <= kfull; c += 32) {
                __m512i d0 = _mm512_loadu_si512(w + c);
                for (int t = 0; t < NT; t++) bf16_fma32(d0, xp[t] + c0 + c, &a[t][i][0], &a[t][i][1]);
            }
            for (c = kfull; c < kt; c++)
                for (int t = 0; t < NT; t++) tail[t][i] += mal_u2f((uint32_t)w[c] << 16) * x[t * xs + c0 + c];
        }
    }
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < R; i++) y[t * ys + i] = _mm512_reduce_add_ps(_mm512_add_ps(a[t][i][0], a[t][i][1])) + tail[t][i];
}

AVX512 static int matvec_bf16_tiled_multi_avx512(float *Y, size_t ys, const uint16_t *W, const float *X, size_t xs, size_t T,
                                                 size_t rows, size_t cols, size_t r0, size_t r1) {
    size_t full = cols & ~(size_t)31;
    float *buf = scratch(4 * (full + 16));
    if (!buf || T > 4) return 0;
    float *xp[4];
    for (size_t t = 0; t < T; t++) {
        xp[t] = (float *)(((uintptr_t)(buf + t * (full + 16)) + 63) & ~(uintptr_t)63);
        permute_pairs(xp[t], X + t * xs, full);
    }
    const size_t R = mal_bf16_tile_rows(cols), K = mal_bf16_tile_cols(cols);
    for (size_t base = r0 - r0 % R; base < r1; base += R) {
        size_t nr = rows - base < R ? rows - base : R;
        size_t i0 = r0 > base ? r0 - base : 0, i1 = r1 - base < nr ? r1 - base : nr;
        const uint16_t *block = W + base * cols;
        if (i0 == 0 && i1 == R) {
#define TILED_MULTI(NT) \
            if (R == 8) tiled_block_multi(Y + base, ys, block, xp, X, xs, cols, full, 8, 256, NT); \
            else tiled_block_multi(Y + base, ys, block, xp, X, xs, cols, full, 4, 512, NT);
            if (T == 2) { TILED_MULTI(2) } else if (T == 3) { TILED_MULTI(3) } else if (T == 4) { TILED_MULTI(4) } else { TILED_MULTI(1) }
#undef TILED_MULTI
            continue;
        }
        /* A partial block, input by input with the one-input kernel's code. */
        for (size_t t = 0; t < T; t++) tiled_partial(Y + t * ys + base, block, xp[t], X + t * xs, cols, full, nr, K, i0, i1);
    }
    return 1;
}

AVX512 static int matvec_bf16_tiled_avx512(float *y, const uint16_t *W, const float *x, size_t rows, size_t cols, size_t r0,
                                           size_t r1) {
    size_t full = cols & ~(size_t)31;
    float *xp = scratch(full);
    if (!xp) return 0;
    permute_pairs(xp, x, full);
    const size_t R = mal_bf16_tile_rows(cols), K = mal_bf16_tile_cols(cols);
    for (size_t base = r0 - r0 % R; base < r1; base += R) {
        size_t nr = rows - base < R ? rows - base : R;
        size_t i0 = r0 > base ? r0 - base : 0, i1 = r1 - base < nr ? r1 - base : nr;
        const uint16_t *block = W + base * cols;
        if (i0 == 0 && i1 == R) { /* a whole block: the common case */
            if (R == 8) tiled_block(y + base, block, xp, x, cols, full, 8, 256);
            else tiled_block(y + base, block, xp, x, cols, full, 4, 512);
            continue;
        }
        /* A partial block (a thread's range starts or ends inside it, or the last block). */
        tiled_partial(y + base, block, xp, x, cols, full, nr, K, i0, i1);
    }
    return 1;
}


/* Requires bc % 64 == 0 so that no 64-weight group straddles two scale blocks. */
AVX512 static int matvec_e4m3_avx512(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br,
                                     size_t bc, size_t r0, size_t r1) {
    size_t nb = (cols + bc - 1) / bc, full = cols & ~(size_t)63;
    float *xq = scratch(cols);
    if (!xq) return 0;
    const __m512i m = _mm512_set1_epi32((int)0x87F00000u);
    size_t have = (size_t)-1; /* the row block xq was built for */
    for (size_t r = r0; r < r1; r++) {
        size_t rb = r / br;
        if (rb != have) {
            /* xq = permuted x times the row block's column-block scales times 2^60 */
            const float *srow = scales + rb * nb;
            for (size_t g = 0; g < full; g += 64) {
                float s = srow[g / bc] * MAL_TWO_60;
                for (size_t k = 0; k < 4; k++)
                    for (size_t j = 0; j < 16; j++) xq[g + k * 16 + j] = x[g + 4 * j + k] * s;
            }
            for (size_t c = full; c < cols; c++) xq[c] = x[c] * srow[c / bc] * MAL_TWO_60;
            have = rb;
        }
        const uint8_t *w = W + r * cols;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t c = 0; c < full; c += 64) {
            PREFETCH_L2(w + c + 16384);
            __m512i d = _mm512_loadu_si512(w + c);
            __m512i t = _mm512_srai_epi16(d, 4);
            __m512i e = _mm512_srai_epi16(_mm512_slli_epi16(d, 8), 4);
            a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(t, m)), _mm512_load_ps(xq + c + 48), a3);
            a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(t, 16), m)), _mm512_load_ps(xq + c + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(e, m)), _mm512_load_ps(xq + c + 32), a2);
            a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(e, 16), m)), _mm512_load_ps(xq + c), a0);
        }
        float s = hsum4(a0, a1, a2, a3);
        for (size_t c = full; c < cols; c++) {
            uint32_t b = w[c];
            s += mal_e4m3_x2m120(b) * xq[c];
        }
        y[r] = s * MAL_TWO_60;
    }
    return 1;
}

/* The E4M3 kernel for NT inputs at once: each 64-weight group is loaded and decoded once and
   multiplied into every input's accumulators in the one-input order (bit for bit its results). */
AVX512 static inline __attribute__((always_inline)) void e4m3_rows_multi(float *Y, size_t ys, const uint8_t *W, const float *scales,
                                                                        const float *X, size_t xs, float *const *xq, size_t cols,
                                                                        size_t br, size_t bc, size_t r0, size_t r1, const int NT) {
    size_t nb = (cols + bc - 1) / bc, full = cols & ~(size_t)63;
    const __m512i m = _mm512_set1_epi32((int)0x87F00000u);
    size_t have = (size_t)-1;
    for (size_t r = r0; r < r1; r++) {
        size_t rb = r / br;
        if (rb != have) {
            const float *srow = scales + rb * nb;
            for (int t = 0; t < NT; t++) {
                const float *x = X + t * xs;
                for (size_t g = 0; g < full; g += 64) {
                    float sc = srow[g / bc] * MAL_TWO_60;
                    for (size_t k = 0; k < 4; k++)
                        for (size_t q = 0; q < 16; q++) xq[t][g + k * 16 + q] = x[g + 4 * q + k] * sc;
                }
                for (size_t c = full; c < cols; c++) xq[t][c] = x[c] * srow[c / bc] * MAL_TWO_60;
            }
            have = rb;
        }
        const uint8_t *w = W + r * cols;
        __m512 a[4][4];
        for (int t = 0; t < NT; t++) for (int k = 0; k < 4; k++) a[t][k] = _mm512_setzero_ps();
        for (size_t c = 0; c < full; c += 64) {
            PREFETCH_L2(w + c + 16384);
            __m512i d = _mm512_loadu_si512(w + c);
            __m512i tt = _mm512_srai_epi16(d, 4);
            __m512i e = _mm512_srai_epi16(_mm512_slli_epi16(d, 8), 4);
            __m512 v3 = _mm512_castsi512_ps(_mm512_and_si512(tt, m));
            __m512 v1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(tt, 16), m));
            __m512 v2 = _mm512_castsi512_ps(_mm512_and_si512(e, m));
            __m512 v0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(e, 16), m));
            for (int t = 0; t < NT; t++) {
                a[t][3] = _mm512_fmadd_ps(v3, _mm512_load_ps(xq[t] + c + 48), a[t][3]);
                a[t][1] = _mm512_fmadd_ps(v1, _mm512_load_ps(xq[t] + c + 16), a[t][1]);
                a[t][2] = _mm512_fmadd_ps(v2, _mm512_load_ps(xq[t] + c + 32), a[t][2]);
                a[t][0] = _mm512_fmadd_ps(v0, _mm512_load_ps(xq[t] + c), a[t][0]);
            }
        }
        for (int t = 0; t < NT; t++) {
            float sum = hsum4(a[t][0], a[t][1], a[t][2], a[t][3]);
            for (size_t c = full; c < cols; c++) {
                uint32_t b = w[c];
                sum += mal_e4m3_x2m120(b) * xq[t][c];
            }
            Y[t * ys + r] = sum * MAL_TWO_60;
        }
    }
}

AVX512 static int matvec_e4m3_multi_avx512(float *Y, size_t ys, const uint8_t *W, const float *scales, const float *X, size_t xs,
                                           size_t T, size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
    float *buf = scratch(4 * (cols + 16));
    if (!buf || T > 4) return 0;
    float *xq[4];
    for (size_t t = 0; t < T; t++) xq[t] = (float *)(((uintptr_t)(buf + t * (cols + 16)) + 63) & ~(uintptr_t)63);
    switch (T) {
    case 2: e4m3_rows_multi(Y, ys, W, scales, X, xs, xq, cols, br, bc, r0, r1, 2); break;
    case 3: e4m3_rows_multi(Y, ys, W, scales, X, xs, xq, cols, br, bc, r0, r1, 3); break;
    case 4: e4m3_rows_multi(Y, ys, W, scales, X, xs, xq, cols, br, bc, r0, r1, 4); break;
    default: e4m3_rows_multi(Y, ys, W, scales, X, xs, xq, cols, br, bc, r0, r1, 1);
    }
    return 1;
}
/* Prompt processing: Y[t, r] = W[r] . X[t] for T inputs, in the exact precision (the fast one
   multiplies BF16 and FP8 prompts in the packed panels of matmul_bf16dp.c, which are 1.2-1.6x
   faster but sum each output in one accumulator). Four weight rows are decoded to float32
   (once, reused by every input) and multiplied with NT inputs at a time in dot-product form:
   4 x NT accumulators of 16 lanes, 4 + NT loads per 4 * NT FMAs (the former 4 x 1 loop issued
   5 loads per 4 FMAs and was load-bound at about half the FMA peak). The four row sums of one input
   are reduced together by a transpose-and-add tree and stored as one 4-float vector. */
AVX512 static inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 u = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(u), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

#define MATMUL_TILE(NAME, NT)                                                                                          \
    AVX512 __attribute__((noinline)) static void NAME(float *y, size_t ys, const float *w, size_t ws, const float *x,   \
                                                      size_t cols, __mmask8 store) {                                   \
        __m512 a[4][NT];                                                                                               \
        for (int i = 0; i < 4; i++)                                                                                    \
            for (int j = 0; j < NT; j++) a[i][j] = _mm512_setzero_ps();                                                \
        size_t c = 0;                                                                                                  \
        for (; c + 16 <= cols; c += 16) {                                                                              \
            __m512 wv[4];                                                                                              \
            for (int i = 0; i < 4; i++) wv[i] = _mm512_loadu_ps(w + i * ws + c);                                       \
            for (int j = 0; j < NT; j++) {                                                                             \
                __m512 xv = _mm512_loadu_ps(x + j * cols + c);                                                         \
                for (int i = 0; i < 4; i++) a[i][j] = _mm512_fmadd_ps(wv[i], xv, a[i][j]);                             \
            }                                                                                                          \
        }                                                                                                              \
        if (c < cols) {                                                                                                \
            __mmask16 k = (__mmask16)((1u << (cols - c)) - 1);                                                         \
            __m512 wv[4];                                                                                              \
            for (int i = 0; i < 4; i++) wv[i] = _mm512_maskz_loadu_ps(k, w + i * ws + c);                              \
            for (int j = 0; j < NT; j++) {                                                                             \
                __m512 xv = _mm512_maskz_loadu_ps(k, x + j * cols + c);                                                \
                for (int i = 0; i < 4; i++) a[i][j] = _mm512_fmadd_ps(wv[i], xv, a[i][j]);                             \
            }                                                                                                          \
        }                                                                                                              \
        for (int j = 0; j < NT; j++) _mm_mask_storeu_ps(y + j * ys, store, reduce4(a[0][j], a[1][j], a[2][j], a[3][j])); \
    }
MATMUL_TILE(matmul_tile6, 6)
MATMUL_TILE(matmul_tile4, 4)
MATMUL_TILE(matmul_tile1, 1)

/* Decodes weight row r to float32 (for E4M3: float32(q) * s, the dequantised value). */
AVX512 static void decode_row_avx512(float *out, const void *W, int dtype, const float *scales, size_t r, size_t rows,
                                     size_t cols, size_t br, size_t bc) {
    size_t c = 0;
    switch (dtype) {
    case MAL_W_BF16_TILED:
        for (size_t c0 = 0, K = mal_bf16_tile_cols(cols); c0 < cols; c0 += K) {
            size_t kt = cols - c0 < K ? cols - c0 : K, k = 0;
            const uint16_t *w = (const uint16_t *)W + mal_bf16_tiled_index(r, c0, rows, cols);
            for (; k + 16 <= kt; k += 16)
                _mm512_storeu_ps(out + c0 + k, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + k))), 16)));
            for (; k < kt; k++) out[c0 + k] = mal_u2f((uint32_t)w[k] << 16);
        }
        break;
    case MAL_W_BF16: {
        const uint16_t *w = (const uint16_t *)W + r * cols;
        for (; c + 16 <= cols; c += 16)
            _mm512_storeu_ps(out + c, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + c))), 16)));
        for (; c < cols; c++) out[c] = mal_u2f((uint32_t)w[c] << 16);
        break;
    }
    case MAL_W_F16: {
        const uint16_t *w = (const uint16_t *)W + r * cols;
        for (; c + 16 <= cols; c += 16) _mm512_storeu_ps(out + c, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + c))));
        for (; c < cols; c++) { _Float16 h; memcpy(&h, &w[c], 2); out[c] = (float)h; }
        break;
    }
    case MAL_W_E4M3: {
        const uint8_t *w = (const uint8_t *)W + r * cols;
        const float *srow = scales + (r / br) * ((cols + bc - 1) / bc);
        const __m512i m7 = _mm512_set1_epi32(0x7F), m8 = _mm512_set1_epi32(0x80);
        const __m512 two120 = _mm512_set1_ps(1.329227995784916e36f);
        for (; c < cols; c++) {
            if (c % 16 == 0 && c + 16 <= cols && c / bc == (c + 15) / bc) {
                __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + c)));
                __m512i bits = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(b, m8), 24), _mm512_slli_epi32(_mm512_and_si512(b, m7), 20));
                _mm512_storeu_ps(out + c, _mm512_mul_ps(_mm512_mul_ps(_mm512_castsi512_ps(bits), two120), _mm512_set1_ps(srow[c / bc])));
                c += 15;
                continue;
            }
            uint32_t v = w[c];
            out[c] = mal_e4m3_x2m120(v) * 1.329227995784916e36f * srow[c / bc];
        }
        break;
    }
    default: memcpy(out, (const float *)W + r * cols, cols * sizeof(float));
    }
}

AVX512 static int matmul_avx512(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows,
                                size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
    float *buf = mal_grow_scratch(&rows_buf, &rows_cap, 4 * cols);
    if (!buf) return 0;
    for (size_t r = r0; r < r1; r += 4) {
        size_t nr = r1 - r < 4 ? r1 - r : 4;
        const float *w = buf;
        if (dtype == MAL_W_F32 && nr == 4) w = (const float *)W + r * cols;
        else {
            for (size_t i = 0; i < 4; i++) {
                if (i < nr) decode_row_avx512(buf + i * cols, W, dtype, scales, r + i, rows, cols, br, bc);
                else memset(buf + i * cols, 0, cols * sizeof(float));
            }
        }
        __mmask8 store = (__mmask8)((1u << nr) - 1);
        size_t t = 0;
        for (; t + 6 <= T; t += 6) matmul_tile6(Y + t * rows + r, rows, w, cols, X + t * cols, cols, store);
        for (; t + 4 <= T; t += 4) matmul_tile4(Y + t * rows + r, rows, w, cols, X + t * cols, cols, store);
        for (; t < T; t++) matmul_tile1(Y + t * rows + r, rows, w, cols, X + t * cols, cols, store);
    }
    return 1;
}
#endif

int mal_matmul_fast(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows, size_t cols,
                    size_t br, size_t bc, size_t r0, size_t r1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1 && (dtype != MAL_W_E4M3 || (br > 0 && bc > 0)))
        return matmul_avx512(Y, W, dtype, scales, X, T, rows, cols, br, bc, r0, r1);
#endif
    (void)Y; (void)W; (void)dtype; (void)scales; (void)X; (void)T; (void)rows; (void)cols; (void)br; (void)bc; (void)r0; (void)r1;
    return 0;
}


int mal_matvec_f32_fast(float *y, const float *W, const float *x, size_t cols, size_t r0, size_t r1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1) { matvec_f32_avx512(y, W, x, cols, r0, r1); return 1; }
#endif
    (void)y; (void)W; (void)x; (void)cols; (void)r0; (void)r1;
    return 0;
}

int mal_matvec_bf16_tiled_fast(float *y, const uint16_t *W, const float *x, size_t rows, size_t cols, size_t r0, size_t r1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1) return matvec_bf16_tiled_avx512(y, W, x, rows, cols, r0, r1);
#endif
    (void)y; (void)W; (void)x; (void)rows; (void)cols; (void)r0; (void)r1;
    return 0;
}

int mal_matvec_e4m3_multi(float *Y, size_t ys, const uint8_t *W, const float *scales, const float *X, size_t xs, size_t T,
                          size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
#ifdef MAL_X86
    /* It runs exactly where the one-input kernel does, so a verify step's rows keep the one-token
       bits: bc % 64 == 0 (no 64-weight group may straddle two scale blocks; a 1x32 block read 64
       columns with one scale before this check) and cols >= 64 (narrower rows take the portable
       loop, input by input). */
    if (mal_simd_level() >= 1 && cols >= 64 && br > 0 && bc > 0 && bc % 64 == 0) {
        if (cols >= MAL_E4M3_WIDE_COLS) return mal_e4m3_wide_multi_avx512(Y, ys, W, scales, X, xs, T, cols, br, bc, r0, r1);
        return matvec_e4m3_multi_avx512(Y, ys, W, scales, X, xs, T, cols, br, bc, r0, r1);
    }
#endif
    (void)Y; (void)ys; (void)W; (void)scales; (void)X; (void)xs; (void)T; (void)cols; (void)br; (void)bc; (void)r0; (void)r1;
    return 0;
}

int mal_matvec_bf16_multi(float *Y, size_t ys, const uint16_t *W, const float *X, size_t xs, size_t T, size_t cols, size_t r0,
                          size_t r1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1 && cols >= 32) return matvec_bf16_multi_avx512(Y, ys, W, X, xs, T, cols, r0, r1);
#endif
    (void)Y; (void)ys; (void)W; (void)X; (void)xs; (void)T; (void)cols; (void)r0; (void)r1;
    return 0;
}

int mal_matvec_bf16_tiled_multi(float *Y, size_t ys, const uint16_t *W, const float *X, size_t xs, size_t T, size_t rows,
                                size_t cols, size_t r0, size_t r1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1) return matvec_bf16_tiled_multi_avx512(Y, ys, W, X, xs, T, rows, cols, r0, r1);
#endif
    (void)Y; (void)ys; (void)W; (void)X; (void)xs; (void)T; (void)rows; (void)cols; (void)r0; (void)r1;
    return 0;
}

static int tile_all = 0, tile_off = -1;

void mal_set_bf16_tile_all(int all) { __atomic_store_n(&tile_all, all, __ATOMIC_RELAXED); }

int mal_bf16_use_tiled(size_t cols) {
    int off = __atomic_load_n(&tile_off, __ATOMIC_RELAXED);
    if (off < 0) {
        const char *env = getenv("MAL_BF16_TILE");
        off = env && *env == '0';
        __atomic_store_n(&tile_off, off, __ATOMIC_RELAXED);
    }
    if (off || mal_simd_level() < 1) return 0;
    return __atomic_load_n(&tile_all, __ATOMIC_RELAXED) || cols >= 768;
}

int mal_matvec_bf16_fast(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1 && cols >= 32) return matvec_bf16_avx512(y, W, x, cols, r0, r1);
#endif
    (void)y; (void)W; (void)x; (void)cols; (void)r0; (void)r1;
    return 0;
}

int mal_matvec_e4m3_fast(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br, size_t bc,
                         size_t r0, size_t r1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1 && cols >= 64 && bc % 64 == 0 && br > 0) {
        if (cols >= MAL_E4M3_WIDE_COLS) return mal_e4m3_wide_avx512(y, W, scales, x, cols, br, bc, r0, r1);
        return matvec_e4m3_avx512(y, W, scales, x, cols, br, bc, r0, r1);
    }
#endif
    (void)y; (void)W; (void)scales; (void)x; (void)cols; (void)br; (void)bc; (void)r0; (void)r1;
    return 0;
}
