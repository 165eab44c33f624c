/* AVX-512 matrix-vector products for FP8 E4M3 weights of wide rows (MAL_E4M3_WIDE_COLS columns and
   more: DeepSeek-V3's 7168, Llama's 4096-column down projections), one token and up to four tokens
   of a verify step with the same bits per row. linear_avx512.c has the kernel for narrower rows.

   Why a second kernel: the one-row kernel reads its scaled float32 input (4 bytes per weight byte)
   again for every row. At 768 columns that input stays in L1; at 7168 it is 28 KB, and four input
   loads from L2 per 64 weight bytes held the kernel to 62-64% of a plain read of the weights
   (C harness, 16384 x 7168, one thread). Here four rows of one scale block run together, so each
   64-column group of the input is loaded once for the four, and one transposing reduction (mal_red4, simd_x86.h)
   ends four rows: 81-84% in the same harness. On narrow rows the four weight streams per thread
   were slower with two threads, so they stay with the one-row kernel (Docs/PERFORMANCE.md, "FP8
   decoding against the read ceiling").

   Decoding is the one-row kernel's (linear_avx512.c): per 64-byte load, lane j holds weights
   4j..4j+3; t = sra16(d, 4) gives b3 = t & M and b1 = (t << 16) & M, and the same on d shifted
   left by one byte gives b2 and b0 (M = 0x87F00000: sign | eeee mmm at float32 bits 31, 20..26, the
   E4M3 value times 2^-120). The left shifts are written as byte shifts within 128-bit lanes
   (vpslldq): the mask keeps only upper-half bits, so what a byte shift drags in never counts. The input is permuted into that order once per call and scaled per
   128-row block (block scale times 2^60); the other 2^60 goes into the result.

   Per row: accumulator 0 takes the products of b0 then b2, accumulator 1 those of b1 then b3,
   group after group; their sum goes through mal_red4, the columns past the last whole group are added
   one by one, then the 2^60. Rows of other blocks and range ends run alone through the same
   arithmetic, so a row's bits never depend on its neighbours, the thread split or the batch.
   Prefetch into L2 64 KiB ahead of each row's stream, stopping at the range's last line. */
#include "mal_kernels.h"
#include <string.h>

#include "simd_x86.h"

#ifdef MAL_X86

enum { E4M3_PREFETCH = 65536, E4M3_MAX_INPUTS = 4 };

/* Per-thread scratch: the permuted input and the scaled copy for each of up to four inputs. */
static _Thread_local float *e4m3_buf;
static _Thread_local size_t e4m3_cap;

static float *e4m3_scratch(size_t n) { return mal_grow_scratch(&e4m3_buf, &e4m3_cap, n); }

/* xp[g + 16k + j] = x[g + 4j + k] for each whole 64-column group g, x[c] past them. */
static void permute_quads(float *restrict xp, const float *restrict x, size_t full, size_t cols) {
    for (size_t g = 0; g < full; g += 64)
        for (size_t k = 0; k < 4; k++)
            for (size_t j = 0; j < 16; j++) xp[g + 16 * k + j] = x[g + 4 * j + k];
    for (size_t c = full; c < cols; c++) xp[c] = x[c];
}

/* xq = xp times the row block's column-block scales times 2^60 (bc % 64 == 0: one scale per group). */
AVX512 static void scale_input(float *xq, const float *xp, const float *srow, size_t full, size_t cols, size_t bc) {
    for (size_t g = 0; g < full; g += 64) {
        __m512 s = _mm512_set1_ps(srow[g / bc] * MAL_TWO_60);
        for (size_t k = 0; k < 64; k += 16) _mm512_store_ps(xq + g + k, _mm512_mul_ps(_mm512_load_ps(xp + g + k), s));
    }
    for (size_t c = full; c < cols; c++) xq[c] = xp[c] * srow[c / bc] * MAL_TWO_60;
}

typedef struct { __m512 v[4]; } e4m3_group;

AVX512 static inline __attribute__((always_inline)) e4m3_group decode64(const uint8_t *w) {
    const __m512i m = _mm512_set1_epi32((int)0x87F00000u);
    __m512i d = _mm512_loadu_si512(w);
    __m512i t = _mm512_srai_epi16(d, 4), u = _mm512_srai_epi16(_mm512_bslli_epi128(d, 1), 4);
    e4m3_group g;
    g.v[0] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_bslli_epi128(u, 2), m));
    g.v[1] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_bslli_epi128(t, 2), m));
    g.v[2] = _mm512_castsi512_ps(_mm512_and_si512(u, m));
    g.v[3] = _mm512_castsi512_ps(_mm512_and_si512(t, m));
    return g;
}

/* The columns past the last whole group, one by one, after the vector sum. */
static inline float tail_sum(float s, const uint8_t *w, const float *xq, size_t full, size_t cols) {
    for (size_t c = full; c < cols; c++) {
        uint32_t b = w[c];
        s += mal_e4m3_x2m120(b) * xq[c];
    }
    return s;
}

/* R (4 or 1) consecutive rows from row pointer w (row stride cols) into y[0..R). */
AVX512 static inline __attribute__((always_inline)) void e4m3_rows(float *y, const uint8_t *w, const float *xq, size_t cols,
                                                                  size_t full, const uint8_t *last, const int R) {
    __m512 a[4][2];
    for (int i = 0; i < R; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
    for (size_t c = 0; c < full; c += 64) {
        __m512 x0 = _mm512_load_ps(xq + c), x1 = _mm512_load_ps(xq + c + 16);
        __m512 x2 = _mm512_load_ps(xq + c + 32), x3 = _mm512_load_ps(xq + c + 48);
        for (int i = 0; i < R; i++) {
            const uint8_t *pf = w + i * cols + c + E4M3_PREFETCH;
            _mm_prefetch((const char *)(pf < last ? pf : last), _MM_HINT_T1);
            e4m3_group g = decode64(w + i * cols + c);
            a[i][0] = _mm512_fmadd_ps(g.v[0], x0, a[i][0]);
            a[i][1] = _mm512_fmadd_ps(g.v[1], x1, a[i][1]);
            a[i][0] = _mm512_fmadd_ps(g.v[2], x2, a[i][0]);
            a[i][1] = _mm512_fmadd_ps(g.v[3], x3, a[i][1]);
        }
    }
    const __m512 z = _mm512_setzero_ps();
    __m512 s[4];
    for (int i = 0; i < 4; i++) s[i] = i < R ? _mm512_add_ps(a[i][0], a[i][1]) : z;
    float out[4];
    _mm_storeu_ps(out, mal_red4(s[0], s[1], s[2], s[3]));
    for (int i = 0; i < R; i++) y[i] = tail_sum(out[i], w + i * cols, xq, full, cols) * MAL_TWO_60;
}

/* Requires cols >= 64 and bc % 64 == 0 (no 64-weight group straddles two scale blocks); the caller checks. */
AVX512 int mal_e4m3_wide_avx512(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br,
                                     size_t bc, size_t r0, size_t r1) {
    size_t nb = (cols + bc - 1) / bc, full = cols & ~(size_t)63, stride = (cols + 15) & ~(size_t)15;
    float *xp = e4m3_scratch(2 * stride);
    if (!xp) return 0;
    float *xq = xp + stride;
    permute_quads(xp, x, full, cols);
    const uint8_t *last = W + r1 * cols - 64; /* prefetches stop at the range's last line */
    for (size_t r = r0; r < r1;) {
        size_t end = (r / br + 1) * br < r1 ? (r / br + 1) * br : r1; /* this scale block's rows */
        scale_input(xq, xp, scales + (r / br) * nb, full, cols, bc);
        for (; r + 4 <= end; r += 4) e4m3_rows(y + r, W + r * cols, xq, cols, full, last, 4);
        for (; r < end; r++) e4m3_rows(y + r, W + r * cols, xq, cols, full, last, 1);
    }
    return 1;
}

/* NT inputs, one row at a time: each group is loaded and decoded once for all inputs, and every
   input's row gets the one-input kernel's arithmetic (so its bits). */
AVX512 static inline __attribute__((always_inline)) void e4m3_row_multi(float *Y, size_t ys, const uint8_t *w, float *const *xq,
                                                                       size_t cols, size_t full, const uint8_t *last, const int NT) {
    __m512 a[E4M3_MAX_INPUTS][2];
    for (int t = 0; t < NT; t++) a[t][0] = a[t][1] = _mm512_setzero_ps();
    for (size_t c = 0; c < full; c += 64) {
        const uint8_t *pf = w + c + E4M3_PREFETCH;
        _mm_prefetch((const char *)(pf < last ? pf : last), _MM_HINT_T1);
        e4m3_group g = decode64(w + c);
        for (int t = 0; t < NT; t++) {
            a[t][0] = _mm512_fmadd_ps(g.v[0], _mm512_load_ps(xq[t] + c), a[t][0]);
            a[t][1] = _mm512_fmadd_ps(g.v[1], _mm512_load_ps(xq[t] + c + 16), a[t][1]);
            a[t][0] = _mm512_fmadd_ps(g.v[2], _mm512_load_ps(xq[t] + c + 32), a[t][0]);
            a[t][1] = _mm512_fmadd_ps(g.v[3], _mm512_load_ps(xq[t] + c + 48), a[t][1]);
        }
    }
    const __m512 z = _mm512_setzero_ps();
    __m512 s[4];
    for (int t = 0; t < 4; t++) s[t] = t < NT ? _mm512_add_ps(a[t][0], a[t][1]) : z;
    float out[4];
    _mm_storeu_ps(out, mal_red4(s[0], s[1], s[2], s[3]));
    for (int t = 0; t < NT; t++) Y[t * ys] = tail_sum(out[t], w, xq[t], full, cols) * MAL_TWO_60;
}

AVX512 int mal_e4m3_wide_multi_avx512(float *Y, size_t ys, const uint8_t *W, const float *scales, const float *X, size_t xs,
                                           size_t T, size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
    size_t nb = (cols + bc - 1) / bc, full = cols & ~(size_t)63, stride = (cols + 15) & ~(size_t)15;
    float *buf = e4m3_scratch(2 * E4M3_MAX_INPUTS * stride);
    if (!buf || T > E4M3_MAX_INPUTS) return 0;
    float *xp[E4M3_MAX_INPUTS], *xq[E4M3_MAX_INPUTS];
    for (size_t t = 0; t < T; t++) {
        xp[t] = buf + 2 * t * stride;
        xq[t] = xp[t] + stride;
        permute_quads(xp[t], X + t * xs, full, cols);
    }
    const uint8_t *last = W + r1 * cols - 64;
    for (size_t r = r0; r < r1;) {
        size_t end = (r / br + 1) * br < r1 ? (r / br + 1) * br : r1;
        for (size_t t = 0; t < T; t++) scale_input(xq[t], xp[t], scales + (r / br) * nb, full, cols, bc);
        for (; r < end; r++) {
            const uint8_t *w = W + r * cols;
            switch (T) {
            case 2: e4m3_row_multi(Y + r, ys, w, xq, cols, full, last, 2); break;
            case 3: e4m3_row_multi(Y + r, ys, w, xq, cols, full, last, 3); break;
            case 4: e4m3_row_multi(Y + r, ys, w, xq, cols, full, last, 4); break;
            default: e4m3_row_multi(Y + r, ys, w, xq, cols, full, last, 1);
            }
        }
    }
    return 1;
}
#endif
