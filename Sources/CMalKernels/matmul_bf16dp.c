/* Prompt processing of BF16 and FP8 weights in the "fast" precision, in packed 32-row panels, two
   ways. On CPUs where it pays: Y[t, r] = W[r] . X[t] with the activations rounded to BF16
   inside the products and AVX-512 BF16 dot products (vdpbf16ps: 16 lanes, each adding the
   products of one pair of BF16 values to a float32 sum), as llama.cpp multiplies BF16 weights.

   Weights: BF16 as stored; FP8 E4M3 decoded exactly to BF16 (4 significant bits, exponents well
   inside BF16's normal range: vdpbf16ps flushes subnormal inputs, the E4M3 subnormals are BF16
   normals). A block's scale multiplies the activations of its column block before they are rounded
   (x * s rounded once, where the exact path rounds the product w * x * s in float32), so a 32-row
   panel needs one scale per column block: the dispatcher asks for 32 | block rows.

   Outer-product form (a GEMM micro-kernel): a panel of 32 weight rows is packed so that one 64-byte
   load holds the column pair (2p, 2p + 1) of 16 rows, each 32-bit lane one row's pair; an input
   pair is one 32-bit broadcast. 2 x 12 accumulators hold 32 rows of 12 tokens, so each weight load
   serves 12 dot products and each broadcast 2, and the sums leave as Y's own rows (no horizontal
   reductions). The inputs are packed once per call (per row block for E4M3) in groups of 12 tokens,
   pair-interleaved, so every broadcast is a constant offset from one pointer. Elsewhere the same
   panels through float32 FMAs (mal_matmul_panels, below). */
#include "mal_kernels.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simd_x86.h"

/* Per-thread buffers (pool threads are long-lived), grown as needed. */
static _Thread_local void *inputs_buf, *rows_buf, *panel_buf;
static _Thread_local size_t inputs_cap, rows_cap, panel_cap;

static void *grow(void **buf, size_t *cap, size_t bytes) {
    if (bytes > *cap) {
        free(*buf);
        size_t c = (bytes + 4095) & ~(size_t)4095;
        *buf = aligned_alloc(64, c);
        *cap = *buf ? c : 0;
    }
    return *buf;
}

enum { GROUP = 12, PANEL = 32 };

#ifdef MAL_X86
static int dp_level = -1;

static int has_bf16_dot(void) {
    int level = __atomic_load_n(&dp_level, __ATOMIC_RELAXED);
    if (level < 0) {
        __builtin_cpu_init();
        level = mal_simd_level() >= 1 && __builtin_cpu_supports("avx512bf16");
        __atomic_store_n(&dp_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Issue rates of vdpbf16ps and vfmadd231ps (zmm, 12 independent chains each), in instructions
   per second: `slices` alternations of `iters` rounds of each, the best slice of each. Alternating
   short slices keeps one preemption or a clock still ramping up from judging one instruction alone,
   as whole timings of one instruction after the other did on a VM (Docs/PERFORMANCE.md). */
AVX512BF16 static void issue_rates(long iters, int slices, double *dot, double *fma) {
    __m512 a[12];
    const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3F80);
    const __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(0.0f);
    *dot = *fma = 0;
    for (int i = 0; i < 12; i++) a[i] = _mm512_setzero_ps();
    for (int rep = 0; rep < slices; rep++) {
        double t0 = seconds();
        for (long k = 0; k < iters; k++) {
            for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], one, one);
            __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]), "+v"(a[6]), "+v"(a[7]),
                             "+v"(a[8]), "+v"(a[9]), "+v"(a[10]), "+v"(a[11]));
        }
        double t1 = seconds();
        for (long k = 0; k < iters; k++) {
            for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
            __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]), "+v"(a[6]), "+v"(a[7]),
                             "+v"(a[8]), "+v"(a[9]), "+v"(a[10]), "+v"(a[11]));
        }
        double t2 = seconds(), n = 12.0 * (double)iters;
        if (t1 > t0 && n / (t1 - t0) > *dot) *dot = n / (t1 - t0);
        if (t2 > t1 && n / (t2 - t1) > *fma) *fma = n / (t2 - t1);
    }
}

static int pays_level = -1;

/* Whether the dot-product kernel beats the float32 kernel here. A vdpbf16ps does twice an FMA's
   arithmetic (two products per lane), so it pays where it issues at more than 3/4 of the FMA's
   rate: Zen 4 issues both at one rate (2x the arithmetic, prompts 2x faster), the Zen 5 parts
   this project has also run on issue it at half the rate (the same arithmetic: no gain, and FP8
   prompts 5-15% slower; Docs/PERFORMANCE.md). Measured once per process (about 1 ms);
   MAL_BF16_DOT=1 or 0 overrides the measurement. */
static int bf16_dot_pays(void) {
    int level = __atomic_load_n(&pays_level, __ATOMIC_RELAXED);
    if (level < 0) {
        const char *env = getenv("MAL_BF16_DOT");
        if (!has_bf16_dot()) level = 0;
        else if (env && (env[0] == '0' || env[0] == '1') && env[1] == 0) level = env[0] == '1';
        else {
            double dot, fma;
            issue_rates(20000, 4, &dot, &fma); /* a warm-up (~0.5 ms): clocks and 512-bit units settle */
            issue_rates(4000, 24, &dot, &fma);
            level = dot > 0.75 * fma;
        }
        __atomic_store_n(&pays_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

/* Rows [r, r + nr) of an E4M3 W decoded exactly to row-major BF16, `cp` columns each (zeros past
   `cols` and past nr). */
AVX512 static void decode_rows(uint16_t *out, const uint8_t *W, size_t r, size_t nr, size_t cols, size_t cp) {
    for (size_t i = 0; i < PANEL; i++) {
        uint16_t *o = out + i * cp;
        if (i >= nr) { memset(o, 0, cp * 2); continue; }
        /* E4M3 -> float32 (sign | eeee mmm at bits 31, 26..20: the value times 2^-120) -> BF16, exact. */
        const uint8_t *w = W + (r + i) * cols;
        const __m512i m7 = _mm512_set1_epi32(0x7F), m8 = _mm512_set1_epi32(0x80);
        const __m512 two120 = _mm512_set1_ps(1.329227995784916e36f);
        for (size_t c = 0; c < cols; c += 16) {
            __mmask16 k = c + 16 <= cols ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
            __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, w + c));
            __m512i bits = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(b, m8), 24), _mm512_slli_epi32(_mm512_and_si512(b, m7), 20));
            __m512 f = _mm512_mul_ps(_mm512_castsi512_ps(bits), two120);
            /* the float's top half is its BF16 (the value has 4 significant bits) */
            _mm256_mask_storeu_epi16(o + c, k, _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(f), 16)));
        }
        memset(o + cols, 0, (cp - cols) * 2);
    }
}

/* 16 x 16 transpose of 32-bit lanes: in r[i] = row i, out r[k] = column k. */
AVX512 static inline void transpose16(__m512i r[16]) {
    __m512i a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* b[4i + k], 128-bit lane L: column 4L + k of rows 4i..4i+3 */
        b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    for (int k = 0; k < 4; k++) {
        __m512i u = _mm512_shuffle_i32x4(b[k], b[4 + k], 0x88), v = _mm512_shuffle_i32x4(b[k], b[4 + k], 0xDD);
        __m512i u2 = _mm512_shuffle_i32x4(b[8 + k], b[12 + k], 0x88), v2 = _mm512_shuffle_i32x4(b[8 + k], b[12 + k], 0xDD);
        r[k] = _mm512_shuffle_i32x4(u, u2, 0x88);
        r[8 + k] = _mm512_shuffle_i32x4(u, u2, 0xDD);
        r[4 + k] = _mm512_shuffle_i32x4(v, v2, 0x88);
        r[12 + k] = _mm512_shuffle_i32x4(v, v2, 0xDD);
    }
}

/* panel[p * 32 + i] = pair p of row i (rows: 32 x cp BF16). */
AVX512 static void pack_panel(uint32_t *panel, const uint16_t *rows, size_t cp) {
    size_t np = cp / 2;
    for (size_t h = 0; h < 2; h++)
        for (size_t p0 = 0; p0 < np; p0 += 16) {
            __m512i r[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512((const uint32_t *)(rows + (h * 16 + i) * cp) + p0);
            transpose16(r);
            for (int k = 0; k < 16; k++) _mm512_store_si512(panel + (p0 + k) * PANEL + h * 16, r[k]);
        }
}

/* pack_panel for rows [r, r + nr) of a BF16 W (row-major or tiled), read in place: each 64-byte
   load takes 32 columns of one row (masked at the end of a row, zeros past nr), so the weights go
   from memory to the panel without the intermediate row copy. A 32-column group never straddles
   two tiles (tile widths are multiples of 32). */
AVX512 static void pack_panel_bf16(uint32_t *panel, const uint16_t *W, int tiled, size_t r, size_t nr, size_t rows, size_t cols,
                                   size_t cp) {
    /* Element (r, c) of a tiled W: base + t * K * block_rows + (r % R) * kt + c % K, for tile t = c / K
       of width kt (mal_bf16_tiled_index with its divisions hoisted out of the loops). */
    size_t np = cp / 2, R = tiled ? mal_bf16_tile_rows(cols) : 1, K = tiled ? mal_bf16_tile_cols(cols) : cols;
    size_t base[PANEL], block_rows[PANEL], within[PANEL];
    for (size_t i = 0; i < nr; i++) {
        size_t rb = (r + i) / R;
        base[i] = rb * R * cols;
        block_rows[i] = rows - rb * R < R ? rows - rb * R : R;
        within[i] = (r + i) % R;
    }
    for (size_t p0 = 0; p0 < np; p0 += 16) {
        size_t c = 2 * p0, t = c / K, kt = cols - t * K < K ? cols - t * K : K, off = c - t * K;
        __mmask32 k = c + 32 <= cols ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1ull << (cols - c)) - 1);
        for (size_t h = 0; h < 2; h++) {
            __m512i v[16];
            for (size_t i = 0; i < 16; i++) {
                size_t row = h * 16 + i;
                v[i] = row < nr ? _mm512_maskz_loadu_epi16(k, W + base[row] + t * K * block_rows[row] + within[row] * kt + off)
                                : _mm512_setzero_si512();
            }
            transpose16(v);
            for (int j = 0; j < 16; j++) _mm512_store_si512(panel + (p0 + j) * PANEL + h * 16, v[j]);
        }
    }
}

/* Rows [r, r + 32) of W (fewer at r1) packed into `panel` (E4M3 decoded to BF16 in `rowsb` first),
   the store masks of rows 0-15 / 16-31, and the next panel's weights for the tiles to prefetch:
   its first line and how many lines it has (32 consecutive rows, contiguous in both BF16 layouts
   and in E4M3). */
typedef struct { __mmask16 m0, m1; const char *pf; size_t left; } panel_step;

AVX512 static panel_step pack_weights(uint32_t *panel, uint16_t *rowsb, const void *W, int dtype, size_t r, size_t r1, size_t rows,
                                      size_t cols, size_t cp) {
    size_t nr = r1 - r < PANEL ? r1 - r : PANEL;
    if (dtype == MAL_W_E4M3) {
        decode_rows(rowsb, W, r, nr, cols, cp);
        pack_panel(panel, rowsb, cp);
    } else pack_panel_bf16(panel, W, dtype == MAL_W_BF16_TILED, r, nr, rows, cols, cp);
    panel_step st;
    st.m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    st.m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    size_t esize = dtype == MAL_W_E4M3 ? 1 : 2, next = r + PANEL < r1 ? r + PANEL : r1;
    st.left = (r1 - next < PANEL ? r1 - next : PANEL) * cols * esize / 64;
    st.pf = (const char *)W + next * cols * esize;
    return st;
}

/* The inputs as BF16 pairs, token t's pair p at xg[(t / 12) * 12 * np + p * 12 + t % 12];
   columns past `cols` are zero. `srow` (E4M3) scales each column by its block's scale first. Per
   12 tokens and 32 columns: 12 rows of 16 pairs, one 16 x 16 transpose, 16 stores of 12 pairs. */
AVX512BF16 static void pack_inputs(uint32_t *xg, const float *X, size_t T, size_t cols, size_t np, const float *srow, size_t bc) {
    for (size_t g = 0; g * GROUP < T; g++) {
        size_t n = T - g * GROUP < GROUP ? T - g * GROUP : GROUP;
        for (size_t p0 = 0; p0 < np; p0 += 16) {
            size_t c = 2 * p0;
            __mmask16 k0 = c + 16 <= cols ? (__mmask16)0xFFFF : c < cols ? (__mmask16)((1u << (cols - c)) - 1) : 0;
            __mmask16 k1 = c + 32 <= cols ? (__mmask16)0xFFFF : c + 16 < cols ? (__mmask16)((1u << (cols - c - 16)) - 1) : 0;
            __m512 s0 = _mm512_set1_ps(srow && c < cols ? srow[c / bc] : 1.0f);
            __m512 s1 = _mm512_set1_ps(srow && c + 16 < cols ? srow[(c + 16) / bc] : 1.0f);
            __m512i v[16];
            for (size_t j = 0; j < 16; j++) {
                if (j >= n) { v[j] = _mm512_setzero_si512(); continue; }
                const float *x = X + (g * GROUP + j) * cols + c;
                __m512 lo = _mm512_maskz_loadu_ps(k0, x), hi = _mm512_maskz_loadu_ps(k1, x + 16);
                if (srow) { lo = _mm512_mul_ps(lo, s0); hi = _mm512_mul_ps(hi, s1); }
                v[j] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            }
            transpose16(v);
            uint32_t *out = xg + g * GROUP * np + p0 * GROUP;
            for (size_t q = 0; q < 16; q++) _mm512_mask_storeu_epi32(out + q * GROUP, (__mmask16)((1u << GROUP) - 1), v[q]);
        }
    }
}

/* 32 rows x NT tokens of Y (token j's rows at Y + j * ys, masks m0 / m1 for rows 0-15 / 16-31).
   Each of the first `nf` steps also prefetches one line at `pf` (the next panel's weights) into
   L2, so the next packing reads from cache while this panel's dot products run. */
#define DP_TILE(NT)                                                                                                    \
    AVX512BF16 __attribute__((noinline)) static void dp_tile##NT(float *Y, size_t ys, const uint32_t *panel, const uint32_t *xg, \
                                                                 size_t np, __mmask16 m0, __mmask16 m1, const char *pf, \
                                                                 size_t nf) {                                          \
        __m512 a0[NT], a1[NT];                                                                                         \
        for (int j = 0; j < NT; j++) a0[j] = a1[j] = _mm512_setzero_ps();                                              \
        for (size_t p = 0; p < np; p++) {                                                                              \
            if (p < nf) _mm_prefetch(pf + p * 64, _MM_HINT_T1);                                                        \
            __m512bh w0 = (__m512bh)_mm512_load_si512(panel + p * PANEL);                                              \
            __m512bh w1 = (__m512bh)_mm512_load_si512(panel + p * PANEL + 16);                                         \
            const uint32_t *x = xg + p * GROUP;                                                                        \
            for (int j = 0; j < NT; j++) {                                                                             \
                __m512bh xv = (__m512bh)_mm512_set1_epi32((int)x[j]);                                                  \
                a0[j] = _mm512_dpbf16_ps(a0[j], w0, xv);                                                               \
                a1[j] = _mm512_dpbf16_ps(a1[j], w1, xv);                                                               \
            }                                                                                                          \
        }                                                                                                              \
        for (int j = 0; j < NT; j++) {                                                                                 \
            _mm512_mask_storeu_ps(Y + j * ys, m0, a0[j]);                                                              \
            _mm512_mask_storeu_ps(Y + j * ys + 16, m1, a1[j]);                                                         \
        }                                                                                                              \
    }
DP_TILE(1) DP_TILE(2) DP_TILE(3) DP_TILE(4) DP_TILE(5) DP_TILE(6)
DP_TILE(7) DP_TILE(8) DP_TILE(9) DP_TILE(10) DP_TILE(11) DP_TILE(12)

typedef void (*dp_tile_fn)(float *, size_t, const uint32_t *, const uint32_t *, size_t, __mmask16, __mmask16, const char *, size_t);
static const dp_tile_fn dp_tiles[GROUP + 1] = {0, dp_tile1, dp_tile2, dp_tile3, dp_tile4, dp_tile5, dp_tile6,
                                               dp_tile7, dp_tile8, dp_tile9, dp_tile10, dp_tile11, dp_tile12};

AVX512BF16 static int matmul_bf16dp(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows,
                                    size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
    size_t cp = (cols + 31) & ~(size_t)31, np = cp / 2, groups = (T + GROUP - 1) / GROUP;
    uint32_t *xg = grow(&inputs_buf, &inputs_cap, groups * GROUP * np * 4);
    uint16_t *rowsb = dtype == MAL_W_E4M3 ? grow(&rows_buf, &rows_cap, PANEL * cp * 2) : NULL;
    uint32_t *panel = grow(&panel_buf, &panel_cap, PANEL * np * 4);
    if (!xg || (dtype == MAL_W_E4M3 && !rowsb) || !panel) return 0;
    size_t packed_block = (size_t)-1, scale_cols = bc ? (cols + bc - 1) / bc : 0;
    for (size_t r = r0; r < r1; r += PANEL) {
        size_t block = dtype == MAL_W_E4M3 ? r / br : 0;
        if (block != packed_block) {
            pack_inputs(xg, X, T, cols, np, dtype == MAL_W_E4M3 ? scales + block * scale_cols : NULL, bc);
            packed_block = block;
        }
        panel_step st = pack_weights(panel, rowsb, W, dtype, r, r1, rows, cols, cp);
        for (size_t g = 0; g < groups; g++) {
            size_t n = T - g * GROUP < GROUP ? T - g * GROUP : GROUP, nf = st.left < np ? st.left : np;
            dp_tiles[n](Y + g * GROUP * rows + r, rows, panel, xg + g * GROUP * np, np, st.m0, st.m1, st.pf, nf);
            st.pf += nf * 64;
            st.left -= nf;
        }
    }
    return 1;
}

/* The same panels multiplied with float32 FMAs, for CPUs whose vdpbf16ps issues at half the FMA
   rate (Intel's cores: the same FLOPs). A panel lane's pair is two
   BF16 weights, one shift or mask each from float32; the inputs are float32 (rounded to BF16 when
   `round`), packed once per call as xf[group][column][12], so each FMA takes its input as a
   broadcast from memory. Per column pair: 2 panel loads, 4 integer operations and 48 FMAs for 32
   rows of 12 tokens. Each output sums its columns in order in one float32 accumulator. E4M3
   weights (exact BF16 values) have their block scale applied to each column block's partial sum
   (y += s * sum of q x over the block), so the inputs need no rescaling per row block. */
AVX512 static void pack_inputs_f32(float *xf, const float *X, size_t T, size_t cols, size_t cp, int round) {
    const __m512i lsb = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7FFF), top = _mm512_set1_epi32((int)0xFFFF0000u);
    for (size_t g = 0; g * GROUP < T; g++) {
        size_t n = T - g * GROUP < GROUP ? T - g * GROUP : GROUP;
        for (size_t c = 0; c < cp; c += 16) {
            __mmask16 k = c + 16 <= cols ? (__mmask16)0xFFFF : c < cols ? (__mmask16)((1u << (cols - c)) - 1) : 0;
            __m512i v[16];
            for (size_t j = 0; j < 16; j++) {
                if (j >= n) { v[j] = _mm512_setzero_si512(); continue; }
                __m512 x = _mm512_maskz_loadu_ps(k, X + (g * GROUP + j) * cols + c);
                __m512i u = _mm512_castps_si512(x);
                if (round) { /* to nearest BF16, ties to even; NaN stays NaN (quietened) */
                    __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u, 16), lsb))), top);
                    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
                    u = _mm512_mask_or_epi32(r, nan, _mm512_and_si512(u, top), _mm512_set1_epi32(0x00400000));
                }
                v[j] = u;
            }
            transpose16(v);
            float *out = xf + (g * cp + c) * GROUP;
            for (size_t q = 0; q < 16; q++) _mm512_mask_storeu_epi32(out + q * GROUP, (__mmask16)((1u << GROUP) - 1), v[q]);
        }
    }
}

/* 32 rows x NT tokens; `bp` column pairs per scale block (all of them without scales). */
#define FMA_TILE(NT)                                                                                                   \
    AVX512 __attribute__((noinline)) static void fma_tile##NT(float *Y, size_t ys, const uint32_t *panel, const float *xf,      \
                                                              size_t np, size_t cols, size_t bp, const float *srow,     \
                                                              __mmask16 m0,                                             \
                                                              __mmask16 m1, const char *pf, size_t nf) {                \
        const __m512i top = _mm512_set1_epi32((int)0xFFFF0000u);                                                       \
        for (size_t p0 = 0; p0 < np && (!srow || 2 * p0 < cols); p0 += bp) {                                         \
            size_t p1 = p0 + bp < np ? p0 + bp : np;                                                                   \
            __m512 a0[NT], a1[NT];                                                                                     \
            for (int j = 0; j < NT; j++) a0[j] = a1[j] = _mm512_setzero_ps();                                          \
            for (size_t p = p0; p < p1; p++) {                                                                         \
                if (p < nf) _mm_prefetch(pf + p * 64, _MM_HINT_T1);                                                    \
                __m512i w0 = _mm512_load_si512(panel + p * PANEL), w1 = _mm512_load_si512(panel + p * PANEL + 16);     \
                __m512 w0e = _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), w0o = _mm512_castsi512_ps(_mm512_and_si512(w0, top)); \
                __m512 w1e = _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), w1o = _mm512_castsi512_ps(_mm512_and_si512(w1, top)); \
                const float *x = xf + p * 2 * GROUP;                                                                   \
                for (int j = 0; j < NT; j++) {                                                                         \
                    __m512 xe = _mm512_set1_ps(x[j]), xo = _mm512_set1_ps(x[GROUP + j]);                               \
                    a0[j] = _mm512_fmadd_ps(w0e, xe, a0[j]);                                                           \
                    a1[j] = _mm512_fmadd_ps(w1e, xe, a1[j]);                                                           \
                    a0[j] = _mm512_fmadd_ps(w0o, xo, a0[j]);                                                           \
                    a1[j] = _mm512_fmadd_ps(w1o, xo, a1[j]);                                                           \
                }                                                                                                      \
            }                                                                                                          \
            if (!srow) {                                                                                               \
                for (int j = 0; j < NT; j++) {                                                                         \
                    _mm512_mask_storeu_ps(Y + j * ys, m0, a0[j]);                                                      \
                    _mm512_mask_storeu_ps(Y + j * ys + 16, m1, a1[j]);                                                 \
                }                                                                                                      \
                continue;                                                                                              \
            }                                                                                                          \
            __m512 sv = _mm512_set1_ps(srow[p0 / bp]);                                                                 \
            for (int j = 0; j < NT; j++) {                                                                             \
                __m512 y0 = p0 ? _mm512_maskz_loadu_ps(m0, Y + j * ys) : _mm512_setzero_ps();                          \
                __m512 y1 = p0 ? _mm512_maskz_loadu_ps(m1, Y + j * ys + 16) : _mm512_setzero_ps();                     \
                _mm512_mask_storeu_ps(Y + j * ys, m0, _mm512_fmadd_ps(a0[j], sv, y0));                                 \
                _mm512_mask_storeu_ps(Y + j * ys + 16, m1, _mm512_fmadd_ps(a1[j], sv, y1));                            \
            }                                                                                                          \
        }                                                                                                              \
    }
FMA_TILE(1) FMA_TILE(2) FMA_TILE(3) FMA_TILE(4) FMA_TILE(5) FMA_TILE(6)
FMA_TILE(7) FMA_TILE(8) FMA_TILE(9) FMA_TILE(10) FMA_TILE(11) FMA_TILE(12)

typedef void (*fma_tile_fn)(float *, size_t, const uint32_t *, const float *, size_t, size_t, size_t, const float *, __mmask16,
                            __mmask16, const char *, size_t);
static const fma_tile_fn fma_tiles[GROUP + 1] = {0, fma_tile1, fma_tile2, fma_tile3, fma_tile4, fma_tile5, fma_tile6,
                                                 fma_tile7, fma_tile8, fma_tile9, fma_tile10, fma_tile11, fma_tile12};

AVX512 static int matmul_panels(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows,
                                size_t cols, size_t br, size_t bc, size_t r0, size_t r1, int round) {
    size_t cp = (cols + 31) & ~(size_t)31, np = cp / 2, groups = (T + GROUP - 1) / GROUP;
    float *xf = grow(&inputs_buf, &inputs_cap, groups * GROUP * cp * 4);
    uint16_t *rowsb = dtype == MAL_W_E4M3 ? grow(&rows_buf, &rows_cap, PANEL * cp * 2) : NULL;
    uint32_t *panel = grow(&panel_buf, &panel_cap, PANEL * np * 4);
    if (!xf || (dtype == MAL_W_E4M3 && !rowsb) || !panel) return 0;
    pack_inputs_f32(xf, X, T, cols, cp, round);
    size_t scale_cols = dtype == MAL_W_E4M3 ? (cols + bc - 1) / bc : 0, bp = dtype == MAL_W_E4M3 ? bc / 2 : np;
    for (size_t r = r0; r < r1; r += PANEL) {
        const float *srow = dtype == MAL_W_E4M3 ? scales + (r / br) * scale_cols : NULL;
        panel_step st = pack_weights(panel, rowsb, W, dtype, r, r1, rows, cols, cp);
        for (size_t g = 0; g < groups; g++) {
            size_t n = T - g * GROUP < GROUP ? T - g * GROUP : GROUP, nf = st.left < np ? st.left : np;
            fma_tiles[n](Y + g * GROUP * rows + r, rows, panel, xf + g * GROUP * cp, np, cols, bp, srow, st.m0, st.m1, st.pf, nf);
            st.pf += nf * 64;
            st.left -= nf;
        }
    }
    return 1;
}
#endif

int mal_bf16dp_available(void) {
#ifdef MAL_X86
    return has_bf16_dot();
#else
    return 0;
#endif
}

int mal_bf16dp_pays(void) {
#ifdef MAL_X86
    return bf16_dot_pays();
#else
    return 0;
#endif
}

int mal_matmul_bf16dp(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows, size_t cols,
                      size_t br, size_t bc, size_t r0, size_t r1) {
#ifdef MAL_X86
    int weights = dtype == MAL_W_BF16 || dtype == MAL_W_BF16_TILED ||
                  (dtype == MAL_W_E4M3 && scales && br % PANEL == 0 && br > 0 && bc % 16 == 0 && bc > 0 && r0 % PANEL == 0);
    if (weights && has_bf16_dot()) return matmul_bf16dp(Y, W, dtype, scales, X, T, rows, cols, br, bc, r0, r1);
#endif
    (void)Y; (void)W; (void)dtype; (void)scales; (void)X; (void)T; (void)rows; (void)cols; (void)br; (void)bc; (void)r0; (void)r1;
    return 0;
}

int mal_matmul_panels(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows, size_t cols,
                      size_t br, size_t bc, size_t r0, size_t r1, int round) {
#ifdef MAL_X86
    int weights = dtype == MAL_W_BF16 || dtype == MAL_W_BF16_TILED ||
                  (dtype == MAL_W_E4M3 && scales && br % PANEL == 0 && br > 0 && bc % 2 == 0 && bc > 0 && r0 % PANEL == 0);
    if (weights && mal_simd_level() >= 1) return matmul_panels(Y, W, dtype, scales, X, T, rows, cols, br, bc, r0, r1, round);
#endif
    (void)Y; (void)W; (void)dtype; (void)scales; (void)X; (void)T; (void)rows; (void)cols; (void)br; (void)bc; (void)r0; (void)r1;
    (void)round;
    return 0;
}

/* Portable "fast": the inputs rounded to BF16 (nearest, ties to even), then the float32 product. */
static uint16_t round_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1)) >> 16);
}

void mal_matmul_bf16_inputs(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows,
                            size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
    if (dtype != MAL_W_BF16 && dtype != MAL_W_BF16_TILED && dtype != MAL_W_E4M3) {
        mal_matmul(Y, W, dtype, scales, X, T, rows, cols, br, bc, r0, r1);
        return;
    }
    if (mal_bf16dp_pays() && mal_matmul_bf16dp(Y, W, dtype, scales, X, T, rows, cols, br, bc, r0, r1)) return;
    float *xr = grow(&inputs_buf, &inputs_cap, T * cols * sizeof(float));
    if (!xr) { mal_matmul(Y, W, dtype, scales, X, T, rows, cols, br, bc, r0, r1); return; }
    for (size_t i = 0; i < T * cols; i++) {
        uint32_t u = (uint32_t)round_bf16(X[i]) << 16;
        memcpy(&xr[i], &u, 4);
    }
    mal_matmul(Y, W, dtype, scales, xr, T, rows, cols, br, bc, r0, r1);
}
