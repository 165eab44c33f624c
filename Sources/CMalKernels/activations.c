/* Element-wise activations of the feed-forward layers, written so the compiler vectorises them:
   libm's expf/tanhf are scalar calls, which took 10-13% of GPT-2's prompt time. */
#include "mal_kernels.h"
#include "simd_x86.h"
#include <math.h>
#include <string.h>

static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* e^x for x in [-87, 88] (clamped outside, where the callers' results no longer change; NaN stays
   NaN through r, while its exponent part is taken as 0, since converting NaN to int is undefined):
   x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact product), e^r by the Cephes
   degree-7 polynomial (relative error about 1e-7, like expf), 2^n built in the exponent bits. */
static inline float exp_poly(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p * r, r, r) + 1.0f;
    int32_t ni = n == n ? (int32_t)n : 0;
    return p * u2f((uint32_t)(ni + 127) << 23);
}

/* tanh GELU (GPT-2's gelu_new, gelu_pytorch_tanh), 0.5 x (1 + tanh(u)) with
   u = sqrt(2/pi) (x + 0.044715 x^3), computed as the identical x / (1 + e^(-2u)), which has no
   cancellation for small u. */
static inline float gelu_tanh(float v) {
    float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    return v / (1.0f + exp_poly(-2.0f * u));
}

/* erfc(z) for z >= 0 with a relative error below 1.2e-7 everywhere (Numerical Recipes' erfcc, a
   Chebyshev fit of t e^(-z^2 + P(t)), t = 1 / (1 + z/2)): relative, so the far negative tail of
   the exact GELU below keeps its digits instead of cancelling in 1 + erf. */
static inline float erfc_pos(float z) {
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = fmaf(p, t, -0.82215223f);
    p = fmaf(p, t, 1.48851587f);
    p = fmaf(p, t, -1.13520398f);
    p = fmaf(p, t, 0.27886807f);
    p = fmaf(p, t, -0.18628806f);
    p = fmaf(p, t, 0.09678418f);
    p = fmaf(p, t, 0.37409196f);
    p = fmaf(p, t, 1.00002368f);
    p = fmaf(p, t, -1.26551223f);
    return t * exp_poly(p - z * z);
}

/* Exact GELU (torch's default, HF "gelu"): x Phi(x) = x (1 - erfc(x/sqrt2)/2) for x >= 0 and
   x erfc(-x/sqrt2)/2 below. */
static inline float gelu_erf(float v) {
    float z = v * 0.7071067811865476f;
    float c = 0.5f * erfc_pos(z < 0 ? -z : z);
    return v * (z < 0 ? c : 1.0f - c);
}

static inline float silu(float v) { return v / (1.0f + exp_poly(-v)); }
static inline float quick_gelu(float v) { return v / (1.0f + exp_poly(-1.702f * v)); }
static inline float relu(float v) { return v < 0 ? 0.0f : v; } /* NaN passes, as in torch */

/* One loop per kind, so that each is vectorised with its function inlined. */
#define ACT_LOOPS(BODY)                                                              \
    switch (kind) {                                                                  \
    case MAL_ACT_GELU_ERF: for (size_t i = 0; i < n; i++) BODY(gelu_erf); break;     \
    case MAL_ACT_SILU: for (size_t i = 0; i < n; i++) BODY(silu); break;             \
    case MAL_ACT_RELU: for (size_t i = 0; i < n; i++) BODY(relu); break;             \
    case MAL_ACT_QUICK_GELU: for (size_t i = 0; i < n; i++) BODY(quick_gelu); break; \
    default: for (size_t i = 0; i < n; i++) BODY(gelu_tanh); break;                  \
    }

MAL_CLONES void mal_activate(int kind, float *x, size_t n) {
#define APPLY(f) x[i] = f(x[i])
    ACT_LOOPS(APPLY)
#undef APPLY
}

MAL_CLONES void mal_activate_mul(int kind, float *g, const float *u, size_t n) {
#define GATE(f) g[i] = f(g[i]) * u[i]
    ACT_LOOPS(GATE)
#undef GATE
}

/* Sampling weights: out[i] = e^((x[i] - shift) * scale), vectorised (libm's expf is a scalar call:
   0.8 ms for a 128K vocabulary against ~0.1). Below e^-87 the result stays at ~1.6e-38. */
MAL_CLONES void mal_exp_scaled(float *out, const float *x, size_t n, float shift, float scale) {
    for (size_t i = 0; i < n; i++) out[i] = exp_poly((x[i] - shift) * scale);
}

/* Largest of n > 0 finite values (the sampler's logits; vectorised, unlike a generic max). */
MAL_CLONES float mal_max_f32(const float *x, size_t n) {
    float m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
