/* Element-wise activations of the feed-forward layers, written so the compiler vectorises them:
   libm's expf/tanhf are scalar calls, which took 10-13% of GPT-2's prompt time. */
#include "mal_kernels.h"
#include <math.h>
#include <string.h>

static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* e^x for x in [-87, 88] (clamped outside, where the callers' results no longer change):
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
    return p * u2f((uint32_t)((int32_t)n + 127) << 23);
}

/* GPT-2's gelu_new, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), computed as the
   identical x / (1 + e^(-2u)), which has no cancellation for small u. */
void mal_gelu_tanh(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        x[i] = v / (1.0f + exp_poly(-2.0f * u));
    }
}

/* SwiGLU's gate: g = silu(g) * u = g / (1 + e^-g) * u. */
void mal_silu_mul(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float a = g[i];
        g[i] = a / (1.0f + exp_poly(-a)) * u[i];
    }
}
