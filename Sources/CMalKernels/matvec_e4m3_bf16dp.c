/* FP8 E4M3 matrix-vector products in the "fast" precision: one token, or up to four tokens of a
   verify step with the one-token bits per row, through AVX-512 BF16 dot products (vdpbf16ps).

   Why: the float32 kernels (linear_avx512.c, matvec_e4m3_wide_avx512.c) spend 9 shifts and masks
   and 4 FMAs on every 64 weights, and on Zen 4 the shifts share a pipe with the FMAs: in cache they
   decode about 27 GB/s on one core, where a plain read reaches 75-80, so wherever the weights come
   from cache (short matrices, MoE experts, the repeated reads of a verify step) the decoding bounds
   the step; streamed from DRAM both kernels reach this host's read ceiling. A dot product multiplies 32 weights per instruction at the FMA's
   issue rate (where mal_bf16dp_pays says it pays), and E4M3 turns into BF16 with fewer operations
   than into float32, because both halves of a 16-bit word are decoded at once:

     d = 64 weight bytes as 32 words, word i = w[2i] | w[2i+1] << 8
     odd  = sra16(d, 4) & 0x87F0          (w[2i+1] as BF16 sign | eeee mmm at bits 15, 10..4)
     even = sra16(d << 8, 4) & 0x87F0     (w[2i] the same way)       5 ops + 2 dot products

   Each BF16 is the E4M3 value times 2^-120 (the float32 kernels' trick at BF16's width); E4M3's
   normal numbers land on BF16 normals (exponent fields 1..15). Its subnormals (exponent 0, about
   1e-4 of a quantised checkpoint's weights, each under 2^-6 of a unit of its block's scale) land
   on BF16 subnormals, which vdpbf16ps reads as zero: that, and the activations, are what `fast`
   rounds here.

   Activations: x times its column block's scale times 2^60, rounded to BF16 (nearest, ties to
   even), as the panels of matmul_bf16dp.c round them; built once per row block of scales, per
   64-column group as 32 even columns then 32 odd ones (the order of `even` and `odd` above). The
   other 2^60 multiplies the result. Per row and input: four float32 accumulators take two groups
   at a time (even, odd, even, odd); ((a0 + a1) + (a2 + a3)) goes through a transposing reduction
   (mal_red4) shared by the tokens of a verify step (each sum takes the same steps in any of its
   four positions); the columns past the last whole group are added one by one as float32
   products (subnormals as zero again); then the 2^60. So every input gets the same arithmetic on
   the same decoded weights, and a verify step's rows equal a one-token step's bit for bit,
   whatever the batch or the thread split. Measurements: Docs/PERFORMANCE.md, "FP8 decoding
   through BF16 dot products". */
#include "mal_kernels.h"
#include <string.h>

#include "simd_x86.h"

#ifdef MAL_X86

enum { DP_MAX_INPUTS = 4, DP_PREFETCH = 16384 };

/* Per thread: each input's BF16 groups, then its float tail columns. */
static _Thread_local float *dp_buf;
static _Thread_local size_t dp_cap;

/* xb (full / 2 floats' room: full BF16 values) and xt (cols - full floats) for one input and one
   row block of scales. */
AVX512BF16 static void pack_input(uint16_t *xb, float *xt, const float *x, const float *srow, size_t full, size_t cols, size_t bc) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (size_t g = 0; g < full; g += 64) {
        __m512 s = _mm512_set1_ps(srow[g / bc] * MAL_TWO_60);
        __m512 v0 = _mm512_mul_ps(_mm512_loadu_ps(x + g), s), v1 = _mm512_mul_ps(_mm512_loadu_ps(x + g + 16), s);
        __m512 v2 = _mm512_mul_ps(_mm512_loadu_ps(x + g + 32), s), v3 = _mm512_mul_ps(_mm512_loadu_ps(x + g + 48), s);
        /* cvtne2ps_pbh(a, b): b's 16 values, then a's */
        __m512bh e = _mm512_cvtne2ps_pbh(_mm512_permutex2var_ps(v2, even, v3), _mm512_permutex2var_ps(v0, even, v1));
        __m512bh o = _mm512_cvtne2ps_pbh(_mm512_permutex2var_ps(v2, odd, v3), _mm512_permutex2var_ps(v0, odd, v1));
        _mm512_store_si512(xb + g, (__m512i)e);
        _mm512_store_si512(xb + g + 32, (__m512i)o);
    }
    for (size_t c = full; c < cols; c++) {
        /* the same rounding, one value at a time */
        __m128 v = _mm_set_ss(x[c] * (srow[c / bc] * MAL_TWO_60));
        __m128bh b = _mm_cvtneps_pbh(v);
        uint32_t u = (uint32_t)(uint16_t)_mm_extract_epi16((__m128i)b, 0) << 16;
        xt[c - full] = mal_u2f(u);
    }
}

/* Row r for NT inputs: each 128-byte step decodes the weights once for all inputs. */
AVX512BF16 static inline __attribute__((always_inline)) void dp_row(float *Y, size_t ys, const uint8_t *w, size_t r, uint16_t *const *xb,
                                                                   float *const *xt, size_t cols, size_t full, const int NT) {
    const __m512i m = _mm512_set1_epi16((short)0x87F0);
    __m512 a[DP_MAX_INPUTS][4];
    for (int t = 0; t < NT; t++) a[t][0] = a[t][1] = a[t][2] = a[t][3] = _mm512_setzero_ps();
    size_t c = 0;
    for (; c + 128 <= full; c += 128) {
        _mm_prefetch((const char *)(w + c + DP_PREFETCH), _MM_HINT_T1);
        _mm_prefetch((const char *)(w + c + DP_PREFETCH + 64), _MM_HINT_T1);
        __m512i d0 = _mm512_loadu_si512(w + c), d1 = _mm512_loadu_si512(w + c + 64);
        __m512bh o0 = (__m512bh)_mm512_and_si512(_mm512_srai_epi16(d0, 4), m);
        __m512bh e0 = (__m512bh)_mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(d0, 8), 4), m);
        __m512bh o1 = (__m512bh)_mm512_and_si512(_mm512_srai_epi16(d1, 4), m);
        __m512bh e1 = (__m512bh)_mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(d1, 8), 4), m);
        for (int t = 0; t < NT; t++) {
            const uint16_t *x = xb[t] + c;
            a[t][0] = _mm512_dpbf16_ps(a[t][0], e0, (__m512bh)_mm512_load_si512(x));
            a[t][1] = _mm512_dpbf16_ps(a[t][1], o0, (__m512bh)_mm512_load_si512(x + 32));
            a[t][2] = _mm512_dpbf16_ps(a[t][2], e1, (__m512bh)_mm512_load_si512(x + 64));
            a[t][3] = _mm512_dpbf16_ps(a[t][3], o1, (__m512bh)_mm512_load_si512(x + 96));
        }
    }
    if (c < full) { /* an odd last group */
        __m512i d0 = _mm512_loadu_si512(w + c);
        __m512bh o0 = (__m512bh)_mm512_and_si512(_mm512_srai_epi16(d0, 4), m);
        __m512bh e0 = (__m512bh)_mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(d0, 8), 4), m);
        for (int t = 0; t < NT; t++) {
            a[t][0] = _mm512_dpbf16_ps(a[t][0], e0, (__m512bh)_mm512_load_si512(xb[t] + c));
            a[t][1] = _mm512_dpbf16_ps(a[t][1], o0, (__m512bh)_mm512_load_si512(xb[t] + c + 32));
        }
    }
    const __m512 z = _mm512_setzero_ps();
    __m512 s[4];
    for (int t = 0; t < 4; t++) s[t] = t < NT ? _mm512_add_ps(_mm512_add_ps(a[t][0], a[t][1]), _mm512_add_ps(a[t][2], a[t][3])) : z;
    float out[4];
    _mm_storeu_ps(out, mal_red4(s[0], s[1], s[2], s[3]));
    for (int t = 0; t < NT; t++) {
        float sum = out[t];
        for (size_t k = full; k < cols; k++) {
            uint32_t b = w[k];
            if (b & 0x78u) sum += mal_e4m3_x2m120(b) * xt[t][k - full]; /* subnormals as zero, as above */
        }
        Y[t * ys + r] = sum * MAL_TWO_60;
    }
}

/* Rows [r0, r1) of one scale block, one row at a time. (Four rows of one token sharing the
   activation loads and one reduction ran at 0.4-0.5x on 256-column rows in a C harness: the
   accumulators no longer stayed in registers.) */
AVX512BF16 static void dp_block(float *Y, size_t ys, const uint8_t *W, uint16_t *const *xb, float *const *xt, size_t cols,
                                size_t full, size_t r0, size_t r1, size_t T) {
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *w = W + r * cols;
        switch (T) {
        case 2: dp_row(Y, ys, w, r, xb, xt, cols, full, 2); break;
        case 3: dp_row(Y, ys, w, r, xb, xt, cols, full, 3); break;
        case 4: dp_row(Y, ys, w, r, xb, xt, cols, full, 4); break;
        default: dp_row(Y, ys, w, r, xb, xt, cols, full, 1);
        }
    }
}

AVX512BF16 static int e4m3_dp(float *Y, size_t ys, const uint8_t *W, const float *scales, const float *X, size_t xs, size_t T,
                              size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
    size_t nb = (cols + bc - 1) / bc, full = cols & ~(size_t)63;
    size_t stride = (full / 2 + (cols - full) + 15) & ~(size_t)15; /* floats per input, a multiple of 64 bytes */
    float *buf = mal_grow_scratch(&dp_buf, &dp_cap, T * stride);
    if (!buf) return 0;
    uint16_t *xb[DP_MAX_INPUTS];
    float *xt[DP_MAX_INPUTS];
    for (size_t t = 0; t < T; t++) {
        xb[t] = (uint16_t *)(buf + t * stride);
        xt[t] = buf + t * stride + full / 2;
    }
    for (size_t r = r0; r < r1;) {
        size_t end = (r / br + 1) * br < r1 ? (r / br + 1) * br : r1; /* this scale block's rows */
        for (size_t t = 0; t < T; t++) pack_input(xb[t], xt[t], X + t * xs, scales + (r / br) * nb, full, cols, bc);
        dp_block(Y, ys, W, xb, xt, cols, full, r, end, T);
        r = end;
    }
    return 1;
}
#endif

int mal_matvec_e4m3_bf16dp(float *Y, size_t ys, const uint8_t *W, const float *scales, const float *X, size_t xs, size_t T,
                           size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
#ifdef MAL_X86
    if (mal_bf16dp_available() && T >= 1 && T <= DP_MAX_INPUTS && cols >= 64 && br > 0 && bc > 0 && bc % 64 == 0)
        return e4m3_dp(Y, ys, W, scales, X, xs, T, cols, br, bc, r0, r1);
#endif
    (void)Y; (void)ys; (void)W; (void)scales; (void)X; (void)xs; (void)T; (void)cols; (void)br; (void)bc; (void)r0; (void)r1;
    return 0;
}
