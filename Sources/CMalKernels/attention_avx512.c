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

/* Attention of one query row (mal_kernels.h), heads taken up to 4 at a time from one KV group so
   each key and value row is loaded once for all of them, and the output accumulates in registers
   (64 value columns per pass over the positions). The helpers are instantiated for constant head
   and column counts, so their accumulators stay in registers. */

/* Scores q_j . k_p * scale of NH heads for NP (<= 4) positions from kp: the dot products in
   registers, then one transposing reduction per head for the NP scores, instead of a horizontal
   sum per score (which cost more than the products at 64-96 dimensions). */
AVX512 static inline __attribute__((always_inline)) void scores4(float **att, float *mx, const float *q, const float *kp, size_t p,
                                                                size_t dk, size_t ks, float scale, const int NH, const int NP) {
    __m512 a[4][4];
    for (int j = 0; j < NH; j++) for (int u = 0; u < 4; u++) a[j][u] = _mm512_setzero_ps();
    for (size_t i = 0; i < dk; i += 16) {
        __m512 k[4];
        for (int u = 0; u < NP; u++) k[u] = _mm512_loadu_ps(kp + u * ks + i);
        for (int j = 0; j < NH; j++) {
            __m512 qj = _mm512_loadu_ps(q + j * dk + i);
            for (int u = 0; u < NP; u++) a[j][u] = _mm512_fmadd_ps(qj, k[u], a[j][u]);
        }
    }
    for (int j = 0; j < NH; j++) {
        float sc[4];
        _mm_storeu_ps(sc, _mm_mul_ps(mal_red4(a[j][0], a[j][1], a[j][2], a[j][3]), _mm_set1_ps(scale)));
        for (int u = 0; u < NP; u++) {
            att[j][p + u] = sc[u];
            mx[j] = sc[u] > mx[j] ? sc[u] : mx[j];
        }
    }
}

/* Scores of NH heads for every position, four positions at a time; returns the maxima in mx. */
AVX512 static inline __attribute__((always_inline)) void attention_scores(float **att, float *mx, const float *q, const float *kg,
                                                                          size_t n_pos, size_t dk, size_t ks, float scale,
                                                                          const int NH) {
    for (int j = 0; j < NH; j++) mx[j] = -INFINITY;
    size_t p = 0;
    for (; p + 4 <= n_pos; p += 4) scores4(att, mx, q, kg + p * ks, p, dk, ks, scale, NH, 4);
    switch (n_pos - p) {
    case 3: scores4(att, mx, q, kg + p * ks, p, dk, ks, scale, NH, 3); break;
    case 2: scores4(att, mx, q, kg + p * ks, p, dk, ks, scale, NH, 2); break;
    case 1: scores4(att, mx, q, kg + p * ks, p, dk, ks, scale, NH, 1); break;
    default: break;
    }
}

/* out_j[c0 .. c0 + 16 NV) = inv_j * sum_p att_j[p] v_p[c0 ..] for NH heads. */
AVX512 static inline __attribute__((always_inline)) void attention_values(float *out, float **att, const float *inv, const float *vg,
                                                                          size_t n_pos, size_t vs, size_t dv, size_t c0,
                                                                          const int NH, const int NV) {
    __m512 acc[4][4];
    for (int j = 0; j < NH; j++) for (int u = 0; u < NV; u++) acc[j][u] = _mm512_setzero_ps();
    for (size_t p = 0; p < n_pos; p++) {
        const float *vp = vg + p * vs + c0;
        __m512 v[4];
        for (int u = 0; u < NV; u++) v[u] = _mm512_loadu_ps(vp + 16 * u);
        for (int j = 0; j < NH; j++) {
            __m512 w = _mm512_set1_ps(att[j][p]);
            for (int u = 0; u < NV; u++) acc[j][u] = _mm512_fmadd_ps(w, v[u], acc[j][u]);
        }
    }
    for (int j = 0; j < NH; j++) {
        __m512 iv = _mm512_set1_ps(inv[j]);
        for (int u = 0; u < NV; u++) _mm512_storeu_ps(out + j * dv + c0 + 16 * u, _mm512_mul_ps(acc[j][u], iv));
    }
}

#define VALUES_NV(NH)                                                                                              \
    switch (nv) {                                                                                                  \
    case 4: attention_values(o, att, inv, vg, n_pos, vs, dv, c0, NH, 4); break;                                   \
    case 3: attention_values(o, att, inv, vg, n_pos, vs, dv, c0, NH, 3); break;                                   \
    case 2: attention_values(o, att, inv, vg, n_pos, vs, dv, c0, NH, 2); break;                                   \
    default: attention_values(o, att, inv, vg, n_pos, vs, dv, c0, NH, 1); break;                                  \
    }

AVX512 static void attention_avx512(float *out, const float *q, const float *K, const float *V, size_t n_pos, size_t dk, size_t dv,
                                    size_t n_heads, size_t n_kv, size_t ks, size_t vs, size_t khs, size_t vhs, float scale,
                                    float *scratch, size_t h0, size_t h1) {
    const size_t G = n_heads / n_kv;
    for (size_t hs = h0; hs < h1;) {
        const size_t g = hs / G, group_end = (g + 1) * G < h1 ? (g + 1) * G : h1;
        const int nh = group_end - hs < 4 ? (int)(group_end - hs) : 4;
        float *att[4];
        float mx[4], inv[4];
        for (int j = 0; j < nh; j++) att[j] = scratch + (hs + j - h0) * n_pos;
        const float *qs = q + hs * dk, *kg = K + g * khs;
        switch (nh) {
        case 4: attention_scores(att, mx, qs, kg, n_pos, dk, ks, scale, 4); break;
        case 3: attention_scores(att, mx, qs, kg, n_pos, dk, ks, scale, 3); break;
        case 2: attention_scores(att, mx, qs, kg, n_pos, dk, ks, scale, 2); break;
        default: attention_scores(att, mx, qs, kg, n_pos, dk, ks, scale, 1); break;
        }
        for (int j = 0; j < nh; j++) {   /* softmax numerators in place, and 1 / their sum */
            __m512 m = _mm512_set1_ps(mx[j]), sum = _mm512_setzero_ps();
            size_t p = 0;
            for (; p + 16 <= n_pos; p += 16) {
                __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(att[j] + p), m));
                _mm512_storeu_ps(att[j] + p, e);
                sum = _mm512_add_ps(sum, e);
            }
            if (p < n_pos) {
                __mmask16 k = (__mmask16)((1u << (n_pos - p)) - 1);
                __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, att[j] + p), m));
                _mm512_mask_storeu_ps(att[j] + p, k, e);
                sum = _mm512_mask_add_ps(sum, k, sum, e);
            }
            inv[j] = 1.0f / _mm512_reduce_add_ps(sum);
        }
        const float *vg = V + g * vhs;
        float *o = out + hs * dv;
        for (size_t c0 = 0; c0 < dv; c0 += 64) {
            const size_t nv = (dv - c0 < 64 ? dv - c0 : 64) / 16;
            switch (nh) {
            case 4: VALUES_NV(4); break;
            case 3: VALUES_NV(3); break;
            case 2: VALUES_NV(2); break;
            default: VALUES_NV(1); break;
            }
        }
        hs += (size_t)nh;
    }
}
#endif

int mal_attention_fast(float *out, const float *q, const float *K, const float *V, size_t n_pos, size_t dk, size_t dv, size_t n_heads,
                       size_t n_kv, size_t k_stride, size_t v_stride, size_t k_head_stride, size_t v_head_stride, float scale,
                       float *scratch, size_t h0, size_t h1) {
#ifdef MAL_X86
    if (mal_simd_level() >= 1 && dk % 16 == 0 && dv % 16 == 0 && n_pos > 0) {
        attention_avx512(out, q, K, V, n_pos, dk, dv, n_heads, n_kv, k_stride, v_stride, k_head_stride, v_head_stride, scale, scratch,
                         h0, h1);
        return 1;
    }
#endif
    (void)out; (void)q; (void)K; (void)V; (void)n_pos; (void)dk; (void)dv; (void)n_heads; (void)n_kv; (void)k_stride;
    (void)v_stride; (void)k_head_stride; (void)v_head_stride; (void)scale; (void)scratch; (void)h0; (void)h1;
    return 0;
}
