/* AVX-512 attention of one query row over a head-major KV cache (`mal_attention` in mal_kernels.h
   has the contract): the heads of one KV group, up to 4 at a time, share each key and value load,
   and the weighted sum of values stays in registers. The portable form is in linalg.c; the tests
   compare both with float64. */
#include "mal_kernels.h"
#include "simd_x86.h"
#include <math.h>
#include <string.h>

#ifdef MAL_X86
/* e^x for 16 lanes: the portable exp_poly of activations.c (Cephes degree 7 after x = n ln2 + r),
   with 2^n applied by vscalefps. The clamp's operand order lets NaN through (vmaxps/vminps return
   the second operand when one is NaN), so a NaN score still poisons its head's output. */
AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Attention as "items": query vectors of one KV group (heads of one row, or one head of several
   rows of a prompt), up to 4 at a time, share each key and value load, and each item's output
   accumulates in registers (64 value columns per pass over the positions). Item j attends to
   n[j] positions; every item does the same operations in the same order whatever it is grouped
   with, so a row computed beside others is bit for bit the row computed alone. The helpers are
   instantiated for constant item and column counts, so their accumulators stay in registers. */
typedef struct {
    const float *q[4];
    float *att[4], *out[4];
    size_t n[4];
} items4;

/* Scores q_j . k_p * scale of NI items for NP (<= 4) positions from kp: the dot products in
   registers, then one transposing reduction per item for the NP scores, instead of a horizontal
   sum per score (which cost more than the products at 64-96 dimensions). Positions at or past an
   item's n[j] are scored (their keys are cached: a prompt writes all its rows first) but do not
   enter its maximum. */
AVX512 static inline __attribute__((always_inline)) void scores4(const items4 *it, float *mx, const float *kp, size_t p, size_t dk,
                                                                size_t ks, float scale, const int NI, const int NP) {
    __m512 a[4][4];
    for (int j = 0; j < NI; j++) for (int u = 0; u < 4; u++) a[j][u] = _mm512_setzero_ps();
    for (size_t i = 0; i < dk; i += 16) {
        __m512 k[4];
        for (int u = 0; u < NP; u++) k[u] = _mm512_loadu_ps(kp + u * ks + i);
        for (int j = 0; j < NI; j++) {
            __m512 qj = _mm512_loadu_ps(it->q[j] + i);
            for (int u = 0; u < NP; u++) a[j][u] = _mm512_fmadd_ps(qj, k[u], a[j][u]);
        }
    }
    for (int j = 0; j < NI; j++) {
        float sc[4];
        _mm_storeu_ps(sc, _mm_mul_ps(mal_red4(a[j][0], a[j][1], a[j][2], a[j][3]), _mm_set1_ps(scale)));
        for (int u = 0; u < NP; u++) {
            it->att[j][p + u] = sc[u];
            if (p + u < it->n[j]) mx[j] = sc[u] > mx[j] ? sc[u] : mx[j];
        }
    }
}

/* Scores of NI items for positions [0, n_max), four at a time; returns each item's maximum. */
AVX512 static inline __attribute__((always_inline)) void attention_scores(const items4 *it, float *mx, const float *kg, size_t n_max,
                                                                          size_t dk, size_t ks, float scale, const int NI) {
    for (int j = 0; j < NI; j++) mx[j] = -INFINITY;
    size_t p = 0;
    for (; p + 4 <= n_max; p += 4) scores4(it, mx, kg + p * ks, p, dk, ks, scale, NI, 4);
    switch (n_max - p) {
    case 3: scores4(it, mx, kg + p * ks, p, dk, ks, scale, NI, 3); break;
    case 2: scores4(it, mx, kg + p * ks, p, dk, ks, scale, NI, 2); break;
    case 1: scores4(it, mx, kg + p * ks, p, dk, ks, scale, NI, 1); break;
    default: break;
    }
}

/* out_j[c0 .. c0 + 16 NV) = inv_j * sum_{p < n[j]} att_j[p] v_p[c0 ..] for NI items: the positions
   all items attend to in one loop, the few that only later rows attend to after it, each item's
   sum still in position order. */
AVX512 static inline __attribute__((always_inline)) void attention_values(const items4 *it, const float *inv, const float *vg,
                                                                          size_t vs, size_t c0, const int NI, const int NV) {
    __m512 acc[4][4];
    size_t n_min = it->n[0], n_max = it->n[0];
    for (int j = 1; j < NI; j++) {
        n_min = it->n[j] < n_min ? it->n[j] : n_min;
        n_max = it->n[j] > n_max ? it->n[j] : n_max;
    }
    for (int j = 0; j < NI; j++) for (int u = 0; u < NV; u++) acc[j][u] = _mm512_setzero_ps();
    for (size_t p = 0; p < n_min; p++) {
        const float *vp = vg + p * vs + c0;
        __m512 v[4];
        for (int u = 0; u < NV; u++) v[u] = _mm512_loadu_ps(vp + 16 * u);
        for (int j = 0; j < NI; j++) {
            __m512 w = _mm512_set1_ps(it->att[j][p]);
            for (int u = 0; u < NV; u++) acc[j][u] = _mm512_fmadd_ps(w, v[u], acc[j][u]);
        }
    }
    for (size_t p = n_min; p < n_max; p++) {
        const float *vp = vg + p * vs + c0;
        for (int j = 0; j < NI; j++) {
            if (p >= it->n[j]) continue;
            __m512 w = _mm512_set1_ps(it->att[j][p]);
            for (int u = 0; u < NV; u++) acc[j][u] = _mm512_fmadd_ps(w, _mm512_loadu_ps(vp + 16 * u), acc[j][u]);
        }
    }
    for (int j = 0; j < NI; j++) {
        __m512 iv = _mm512_set1_ps(inv[j]);
        for (int u = 0; u < NV; u++) _mm512_storeu_ps(it->out[j] + c0 + 16 * u, _mm512_mul_ps(acc[j][u], iv));
    }
}

#define VALUES_NV(NI)                                                                                              \
    switch (nv) {                                                                                                  \
    case 4: attention_values(it, inv, vg, vs, c0, NI, 4); break;                                                   \
    case 3: attention_values(it, inv, vg, vs, c0, NI, 3); break;                                                   \
    case 2: attention_values(it, inv, vg, vs, c0, NI, 2); break;                                                   \
    default: attention_values(it, inv, vg, vs, c0, NI, 1); break;                                                  \
    }

/* Softmax numerators in place over an item's n positions; returns 1 / their sum. */
AVX512 static float softmax_numerators(float *att, size_t n, float mx) {
    __m512 m = _mm512_set1_ps(mx), sum = _mm512_setzero_ps();
    size_t p = 0;
    for (; p + 16 <= n; p += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(att + p), m));
        _mm512_storeu_ps(att + p, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (p < n) {
        __mmask16 k = (__mmask16)((1u << (n - p)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, att + p), m));
        _mm512_mask_storeu_ps(att + p, k, e);
        sum = _mm512_mask_add_ps(sum, k, sum, e);
    }
    return 1.0f / _mm512_reduce_add_ps(sum);
}

/* The attention of ni (1-4) items over one KV group's keys kg and values vg. */
AVX512 static void attend_items(const items4 *it, int ni, const float *kg, const float *vg, size_t dk, size_t dv, size_t ks,
                                size_t vs, float scale) {
    float mx[4], inv[4];
    size_t n_max = 0;
    for (int j = 0; j < ni; j++) n_max = it->n[j] > n_max ? it->n[j] : n_max;
    switch (ni) {
    case 4: attention_scores(it, mx, kg, n_max, dk, ks, scale, 4); break;
    case 3: attention_scores(it, mx, kg, n_max, dk, ks, scale, 3); break;
    case 2: attention_scores(it, mx, kg, n_max, dk, ks, scale, 2); break;
    default: attention_scores(it, mx, kg, n_max, dk, ks, scale, 1); break;
    }
    for (int j = 0; j < ni; j++) inv[j] = softmax_numerators(it->att[j], it->n[j], mx[j]);
    for (size_t c0 = 0; c0 < dv; c0 += 64) {
        const size_t nv = (dv - c0 < 64 ? dv - c0 : 64) / 16;
        switch (ni) {
        case 4: VALUES_NV(4); break;
        case 3: VALUES_NV(3); break;
        case 2: VALUES_NV(2); break;
        default: VALUES_NV(1); break;
        }
    }
}

/* Rows [0, T) of a prompt (row t at position start + t attends to start + t + 1 positions), heads
   [h0, h1): the heads of one KV group, up to 4, are items together; where a group has fewer than
   4 heads in the range (multi-head attention: 1), 4 / heads consecutive rows join them, so each
   key and value load serves up to 4 query vectors. `scratch`: 4 * (start + T) floats. */
AVX512 static void attention_rows_avx512(float *out, size_t os, const float *q, size_t qs, size_t T, size_t start, const float *K,
                                         const float *V, size_t dk, size_t dv, size_t n_heads, size_t n_kv, size_t ks, size_t vs,
                                         size_t khs, size_t vhs, float scale, float *scratch, size_t h0, size_t h1) {
    const size_t G = n_heads / n_kv, cap = start + T;
    for (size_t hs = h0; hs < h1;) {
        const size_t g = hs / G, group_end = (g + 1) * G < h1 ? (g + 1) * G : h1;
        const int nh = group_end - hs < 4 ? (int)(group_end - hs) : 4, rows = 4 / nh;
        for (size_t t0 = 0; t0 < T; t0 += (size_t)rows) {
            items4 it;
            int ni = 0;
            for (size_t t = t0; t < T && t < t0 + (size_t)rows; t++) {
                for (int j = 0; j < nh; j++, ni++) {
                    it.q[ni] = q + t * qs + (hs + (size_t)j) * dk;
                    it.out[ni] = out + t * os + (hs + (size_t)j) * dv;
                    it.att[ni] = scratch + (size_t)ni * cap;
                    it.n[ni] = start + t + 1;
                }
            }
            attend_items(&it, ni, K + g * khs, V + g * vhs, dk, dv, ks, vs, scale);
        }
        hs += (size_t)nh;
    }
}
#endif

int mal_attention_rows_fast(float *out, size_t out_stride, const float *q, size_t q_stride, size_t T, size_t start, const float *K,
                            const float *V, size_t dk, size_t dv, size_t n_heads, size_t n_kv, size_t k_stride, size_t v_stride,
                            size_t k_head_stride, size_t v_head_stride, float scale, float *scratch, size_t h0, size_t h1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1 && dk % 16 == 0 && dv % 16 == 0 && T > 0) {
        attention_rows_avx512(out, out_stride, q, q_stride, T, start, K, V, dk, dv, n_heads, n_kv, k_stride, v_stride, k_head_stride,
                              v_head_stride, scale, scratch, h0, h1);
        return 1;
    }
#endif
    (void)out; (void)out_stride; (void)q; (void)q_stride; (void)T; (void)start; (void)K; (void)V; (void)dk; (void)dv; (void)n_heads;
    (void)n_kv; (void)k_stride; (void)v_stride; (void)k_head_stride; (void)v_head_stride; (void)scale; (void)scratch; (void)h0; (void)h1;
    return 0;
}

int mal_attention_fast(float *out, const float *q, const float *K, const float *V, size_t n_pos, size_t dk, size_t dv, size_t n_heads,
                       size_t n_kv, size_t k_stride, size_t v_stride, size_t k_head_stride, size_t v_head_stride, float scale,
                       float *scratch, size_t h0, size_t h1) {
    if (n_pos == 0) return 0;
    return mal_attention_rows_fast(out, 0, q, 0, 1, n_pos - 1, K, V, dk, dv, n_heads, n_kv, k_stride, v_stride, k_head_stride,
                                   v_head_stride, scale, scratch, h0, h1);
}
