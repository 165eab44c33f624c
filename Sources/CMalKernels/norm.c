/* Normalisation rows and bias rows, written so the compiler vectorises them: the runtime's scalar
   Swift loops summed one element after another (a chain of dependent adds), 3.5% of a GPT-2
   prompt. Sums run in 16 lanes with fused multiply-adds, then the lanes are added in one fixed
   order, so every clone (MAL_CLONES) and every CPU gives the same bits. */
#include "mal_kernels.h"
#include "simd_x86.h"
#include <math.h>

enum { LANES = 16 };

/* The lane sums folded in a fixed pairwise order. The helpers are always inlined: a call from a
   clone would run one baseline x86-64 body, where fmaf is a libm call per element. */
__attribute__((always_inline)) static inline float fold(float *s) {
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++) s[l] += s[l + w];
    return s[0];
}

/* sum of (x[i] - shift)^2, or of x[i] when square == 0. */
__attribute__((always_inline)) static inline float lane_sum(const float *x, size_t n, float shift, int square) {
    float s[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            float d = x[i + l] - shift;
            s[l] = square ? fmaf(d, d, s[l]) : s[l] + x[i + l];
        }
    for (int l = 0; i + (size_t)l < n; l++) {
        float d = x[i + l] - shift;
        s[l] = square ? fmaf(d, d, s[l]) : s[l] + x[i + l];
    }
    return fold(s);
}

MAL_CLONES void mal_rms_norm(float *y, const float *x, const float *w, size_t n, float eps) {
    float inv = 1.0f / sqrtf(lane_sum(x, n, 0.0f, 1) / (float)n + eps);
    for (size_t i = 0; i < n; i++) y[i] = w[i] * (x[i] * inv);
}

MAL_CLONES void mal_layer_norm(float *y, const float *x, const float *w, const float *b, size_t n, float eps) {
    float mean = lane_sum(x, n, 0.0f, 0) / (float)n;
    float inv = 1.0f / sqrtf(lane_sum(x, n, mean, 1) / (float)n + eps);
    if (b)
        for (size_t i = 0; i < n; i++) y[i] = fmaf((x[i] - mean) * inv, w[i], b[i]);
    else
        for (size_t i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * w[i];
}

MAL_CLONES void mal_add_bias(float *y, const float *bias, size_t rows, size_t count) {
    for (size_t t = 0; t < count; t++)
        for (size_t r = 0; r < rows; r++) y[t * rows + r] += bias[r];
}
