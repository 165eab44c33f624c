/* Linear-layer and attention kernels. Plain C loops the compiler vectorises: the reductions are
   marked reassociable (strict IEEE order would forbid SIMD dot products), accumulation is float32. */
#include "mal_kernels.h"
#include <math.h>
#include <string.h>

static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float dot_f32(const float *restrict a, const float *restrict b, size_t n) {
#pragma clang fp reassociate(on)
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float dot_bf16(const uint16_t *restrict w, const float *restrict x, size_t n) {
#pragma clang fp reassociate(on)
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += u2f((uint32_t)w[i] << 16) * x[i];
    return s;
}

static inline float dot_f16(const uint16_t *restrict w, const float *restrict x, size_t n) {
#pragma clang fp reassociate(on)
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) { _Float16 h; memcpy(&h, &w[i], 2); s += (float)h * x[i]; }
    return s;
}

/* E4M3 by bit arithmetic: ((b & 0x80) << 24) | ((b & 0x7F) << 20) is the value times 2^-120
   (subnormals included); the 2^120 is applied once per block. */
static inline float dot_e4m3_scaled(const uint8_t *restrict w, const float *restrict x, size_t n) {
#pragma clang fp reassociate(on)
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = w[i];
        s += u2f(((b & 0x80u) << 24) | ((b & 0x7Fu) << 20)) * x[i];
    }
    return s;
}

static const float TWO_120 = 1.329227995784916e36f;   /* 2^120 */

/* Portable matrix-vector kernels: one row at a time, a single sequential stream (a 4-rows-at-once
   variant was slower here, Docs/PERFORMANCE.md). Where the CPU has AVX-512 the forms in linear_avx512.c run
   instead; these remain the reference the tests compare them with. */
void mal_matvec_f32_portable(float *y, const float *W, const float *x, size_t cols, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) y[r] = dot_f32(W + r * cols, x, cols);
}
void mal_matvec_bf16_portable(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) y[r] = dot_bf16(W + r * cols, x, cols);
}

void mal_matvec_f16(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) y[r] = dot_f16(W + r * cols, x, cols);
}

void mal_matvec_e4m3_portable(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br,
                              size_t bc, size_t r0, size_t r1) {
    /* Per block an auto-vectorised dot product, scaled once per block. */
    size_t nb = (cols + bc - 1) / bc;
    for (size_t r = r0; r < r1; r++) {
        const float *srow = scales + (r / br) * nb;
        const uint8_t *w = W + r * cols;
        float acc = 0.0f;
        for (size_t b = 0; b < nb; b++) {
            size_t c0 = b * bc, n = c0 + bc < cols ? bc : cols - c0;
            acc += dot_e4m3_scaled(w + c0, x + c0, n) * TWO_120 * srow[b];
        }
        y[r] = acc;
    }
}

void mal_matvec_f32(float *y, const float *W, const float *x, size_t cols, size_t r0, size_t r1) {
    if (!mal_matvec_f32_fast(y, W, x, cols, r0, r1)) mal_matvec_f32_portable(y, W, x, cols, r0, r1);
}
void mal_matvec_bf16(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1) {
    if (!mal_matvec_bf16_fast(y, W, x, cols, r0, r1)) mal_matvec_bf16_portable(y, W, x, cols, r0, r1);
}
void mal_matvec_e4m3(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br, size_t bc,
                     size_t r0, size_t r1) {
    if (!mal_matvec_e4m3_fast(y, W, scales, x, cols, br, bc, r0, r1))
        mal_matvec_e4m3_portable(y, W, scales, x, cols, br, bc, r0, r1);
}

void mal_bf16_tile(uint16_t *dst, const uint16_t *src, size_t rows, size_t cols) {
    size_t K = mal_bf16_tile_cols(cols);
    for (size_t r = 0; r < rows; r++)
        for (size_t c0 = 0; c0 < cols; c0 += K) {
            size_t kt = cols - c0 < K ? cols - c0 : K;
            memcpy(dst + mal_bf16_tiled_index(r, c0, rows, cols), src + r * cols + c0, kt * sizeof(uint16_t));
        }
}

void mal_matvec_bf16_tiled_portable(float *y, const uint16_t *W, const float *x, size_t rows, size_t cols, size_t r0,
                                    size_t r1) {
    size_t K = mal_bf16_tile_cols(cols);
    for (size_t r = r0; r < r1; r++) {
        float s = 0.0f;
        for (size_t c0 = 0; c0 < cols; c0 += K) {
            size_t kt = cols - c0 < K ? cols - c0 : K;
            s += dot_bf16(W + mal_bf16_tiled_index(r, c0, rows, cols), x + c0, kt);
        }
        y[r] = s;
    }
}

void mal_matvec_bf16_tiled(float *y, const uint16_t *W, const float *x, size_t rows, size_t cols, size_t r0, size_t r1) {
    if (!mal_matvec_bf16_tiled_fast(y, W, x, rows, cols, r0, r1)) mal_matvec_bf16_tiled_portable(y, W, x, rows, cols, r0, r1);
}

/* Decodes one weight row to float32. */
static void decode_row(float *restrict out, const void *W, int dtype, const float *scales, size_t r, size_t rows, size_t cols,
                       size_t br, size_t bc) {
    switch (dtype) {
    case MAL_W_BF16_TILED:
        for (size_t c0 = 0, K = mal_bf16_tile_cols(cols); c0 < cols; c0 += K) {
            size_t kt = cols - c0 < K ? cols - c0 : K;
            const uint16_t *w = (const uint16_t *)W + mal_bf16_tiled_index(r, c0, rows, cols);
            for (size_t c = 0; c < kt; c++) out[c0 + c] = u2f((uint32_t)w[c] << 16);
        }
        break;
    case MAL_W_BF16: {
        const uint16_t *w = (const uint16_t *)W + r * cols;
        for (size_t c = 0; c < cols; c++) out[c] = u2f((uint32_t)w[c] << 16);
        break;
    }
    case MAL_W_F16: {
        const uint16_t *w = (const uint16_t *)W + r * cols;
        for (size_t c = 0; c < cols; c++) { _Float16 h; memcpy(&h, &w[c], 2); out[c] = (float)h; }
        break;
    }
    case MAL_W_E4M3: {
        const uint8_t *w = (const uint8_t *)W + r * cols;
        size_t nb = (cols + bc - 1) / bc;
        const float *srow = scales + (r / br) * nb;
        for (size_t b = 0; b < nb; b++) {
            size_t c0 = b * bc, c1 = c0 + bc < cols ? c0 + bc : cols;
            float s = srow[b] * TWO_120;
            for (size_t c = c0; c < c1; c++) {
                uint32_t v = w[c];
                out[c] = u2f(((v & 0x80u) << 24) | ((v & 0x7Fu) << 20)) * s;
            }
        }
        break;
    }
    default: memcpy(out, (const float *)W + r * cols, cols * sizeof(float));
    }
}

void mal_decode_row(float *out, const void *W, int dtype, const float *scales, size_t r, size_t rows, size_t cols, size_t br,
                    size_t bc) {
    decode_row(out, W, dtype, scales, r, rows, cols, br, bc);
}

void mal_matmul(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows, size_t cols,
                size_t br, size_t bc, size_t r0, size_t r1) {
    if (!mal_matmul_fast(Y, W, dtype, scales, X, T, rows, cols, br, bc, r0, r1))
        mal_matmul_portable(Y, W, dtype, scales, X, T, rows, cols, br, bc, r0, r1);
}

void mal_matmul_portable(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows,
                         size_t cols, size_t br, size_t bc, size_t r0, size_t r1) {
    float buf[4][8192];
    if (cols > 8192) {
        /* Very wide rows: fall back to per-input matvecs. */
        for (size_t t = 0; t < T; t++) {
            float *y = Y + t * rows;
            const float *x = X + t * cols;
            switch (dtype) {
            case MAL_W_BF16: mal_matvec_bf16(y, (const uint16_t *)W, x, cols, r0, r1); break;
            case MAL_W_BF16_TILED: mal_matvec_bf16_tiled_portable(y, (const uint16_t *)W, x, rows, cols, r0, r1); break;
            case MAL_W_F16: mal_matvec_f16(y, (const uint16_t *)W, x, cols, r0, r1); break;
            case MAL_W_E4M3: mal_matvec_e4m3(y, (const uint8_t *)W, scales, x, cols, br, bc, r0, r1); break;
            default: mal_matvec_f32(y, (const float *)W, x, cols, r0, r1);
            }
        }
        return;
    }
    /* 4 weight rows at a time against every input: each decoded row is reused T times from L1. */
    for (size_t r = r0; r < r1; r += 4) {
        size_t nr = r + 4 <= r1 ? 4 : r1 - r;
        const float *rowp[4];
        for (size_t k = 0; k < nr; k++) {
            if (dtype == MAL_W_F32) rowp[k] = (const float *)W + (r + k) * cols;
            else { decode_row(buf[k], W, dtype, scales, r + k, rows, cols, br, bc); rowp[k] = buf[k]; }
        }
        for (size_t t = 0; t < T; t++) {
            const float *x = X + t * cols;
            float *y = Y + t * rows + r;
            if (nr == 4) {
#pragma clang fp reassociate(on)
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                const float *a0 = rowp[0], *a1 = rowp[1], *a2 = rowp[2], *a3 = rowp[3];
                for (size_t c = 0; c < cols; c++) {
                    float xv = x[c];
                    s0 += a0[c] * xv; s1 += a1[c] * xv; s2 += a2[c] * xv; s3 += a3[c] * xv;
                }
                y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;
            } else {
                for (size_t k = 0; k < nr; k++) y[k] = dot_f32(rowp[k], x, cols);
            }
        }
    }
}

void mal_attention(float *out, const float *q, const float *K, const float *V, size_t n_pos, size_t dk, size_t dv,
                   size_t n_heads, size_t n_kv, size_t k_stride, size_t v_stride, size_t k_head_stride, size_t v_head_stride,
                   float scale, float *scratch, size_t h0, size_t h1) {
    if (!mal_attention_fast(out, q, K, V, n_pos, dk, dv, n_heads, n_kv, k_stride, v_stride, k_head_stride, v_head_stride, scale,
                            scratch, h0, h1))
        mal_attention_portable(out, q, K, V, n_pos, dk, dv, n_heads, n_kv, k_stride, v_stride, k_head_stride, v_head_stride, scale,
                               scratch, h0, h1);
}

void mal_attention_rows(float *out, size_t out_stride, const float *q, size_t q_stride, size_t T, size_t start, const float *K,
                        const float *V, size_t dk, size_t dv, size_t n_heads, size_t n_kv, size_t k_stride, size_t v_stride,
                        size_t k_head_stride, size_t v_head_stride, float scale, float *scratch, size_t h0, size_t h1) {
    if (mal_attention_rows_fast(out, out_stride, q, q_stride, T, start, K, V, dk, dv, n_heads, n_kv, k_stride, v_stride, k_head_stride,
                                v_head_stride, scale, scratch, h0, h1))
        return;
    for (size_t t = 0; t < T; t++)
        mal_attention_portable(out + t * out_stride, q + t * q_stride, K, V, start + t + 1, dk, dv, n_heads, n_kv, k_stride, v_stride,
                               k_head_stride, v_head_stride, scale, scratch, h0, h1);
}

void mal_attention_portable(float *out, const float *q, const float *K, const float *V, size_t n_pos, size_t dk, size_t dv,
                            size_t n_heads, size_t n_kv, size_t k_stride, size_t v_stride, size_t k_head_stride,
                            size_t v_head_stride, float scale, float *scratch, size_t h0, size_t h1) {
    size_t group = n_heads / n_kv;
    for (size_t h = h0; h < h1; h++) {
        size_t g = h / group;
        const float *qh = q + h * dk;
        float *att = scratch + (h - h0) * n_pos;
        float mx = -INFINITY;
        for (size_t p = 0; p < n_pos; p++) {
            float s = dot_f32(qh, K + g * k_head_stride + p * k_stride, dk) * scale;
            att[p] = s;
            mx = s > mx ? s : mx;
        }
        float sum = 0.0f;
        for (size_t p = 0; p < n_pos; p++) { float e = expf(att[p] - mx); att[p] = e; sum += e; }
        float inv = 1.0f / sum;
        float *oh = out + h * dv;
        for (size_t i = 0; i < dv; i++) oh[i] = 0.0f;
        for (size_t p = 0; p < n_pos; p++) {
            float w = att[p] * inv;
            const float *vp = V + g * v_head_stride + p * v_stride;
            for (size_t i = 0; i < dv; i++) oh[i] += w * vp[i];
        }
    }
}

void mal_compare_logits(const float *a, const float *b, size_t V, size_t target, double *nll_a, double *nll_b, double *kl,
                        size_t *argmax_a, size_t *argmax_b, double *dmax, double *dsum) {
    size_t ia = 0, ib = 0;
    for (size_t i = 1; i < V; i++) { if (a[i] > a[ia]) ia = i; if (b[i] > b[ib]) ib = i; }
    double ma = a[ia], mb = b[ib], sa = 0, sb = 0;
    for (size_t i = 0; i < V; i++) { sa += exp((double)a[i] - ma); sb += exp((double)b[i] - mb); }
    double la = ma + log(sa), lb = mb + log(sb);
    double k = 0, dm = 0, ds = 0;
    for (size_t i = 0; i < V; i++) {
        double pa = (double)a[i] - la, pb = (double)b[i] - lb;
        k += exp(pa) * (pa - pb);
        double d = fabs((double)a[i] - (double)b[i]);
        dm = d > dm ? d : dm;
        ds += d;
    }
    *nll_a = la - a[target]; *nll_b = lb - b[target];
    *kl = k > 0 ? k : 0;
    *argmax_a = ia; *argmax_b = ib; *dmax = dm; *dsum = ds;
}
