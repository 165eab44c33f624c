#ifndef MAL_KERNELS_H
#define MAL_KERNELS_H
/* Hot byte-level kernels of malconv/malrun, in C for speed (see Docs/ARCHITECTURE.md). */
#include <stddef.h>
#include <stdint.h>

/* XXH64 (xxHash, 64-bit variant, spec: github.com/Cyan4973/xxHash doc/xxhash_spec.md). */
uint64_t mal_xxh64(const void *data, size_t length, uint64_t seed);

typedef struct {
    uint64_t total_len;
    uint64_t v[4];
    uint8_t mem[32];
    uint32_t memsize;
    uint64_t seed;
} mal_xxh64_state;

void mal_xxh64_reset(mal_xxh64_state *s, uint64_t seed);
void mal_xxh64_update(mal_xxh64_state *s, const void *data, size_t length);
uint64_t mal_xxh64_digest(const mal_xxh64_state *s);

/* Byte-plane filter: element i's byte j goes to dst[j * n + i] (n = count of elements), so
   plane j holds byte j of every element; zstd then sees the exponent bytes together. */
void mal_shuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t elem_size);
void mal_unshuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t elem_size);
/* FP8 E4M3 nibble planes (codec 4): n bytes to plane E (exponents) then plane S (sign, mantissa),
   each ceil(n / 2) bytes of two nibbles; join is the inverse. */
void mal_e4m3_split(uint8_t *planes, const uint8_t *src, size_t n);
void mal_e4m3_join(uint8_t *dst, const uint8_t *planes, size_t n);

/* float32 -> bfloat16 / float16, round to nearest even; NaN stays NaN (quiet). */
void mal_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
void mal_f32_to_f16(uint16_t *dst, const float *src, size_t n);
void mal_bf16_to_f32(float *dst, const uint16_t *src, size_t n);
void mal_f16_to_f32(float *dst, const uint16_t *src, size_t n);
/* Index of the first NaN or infinity among n values, or -1: float32, 16-bit floats with the given
   exponent mask (0x7F80 bfloat16, 0x7C00 float16), 8-bit floats whose NaN/inf codes have all `mask`
   bits set (0x7F E4M3 fn: NaN only; 0x7C E5M2). */
int64_t mal_first_nonfinite_f32(const float *p, size_t n);
int64_t mal_first_nonfinite_16(const uint16_t *p, size_t n, uint16_t exp_mask);
int64_t mal_first_nonfinite_8(const uint8_t *p, size_t n, uint8_t mask);

/* FP8 codecs (OCP FP8: E4M3 "fn" = bias 7, no inf, NaN S.1111.111, max 448; E5M2 = bias 15, IEEE-like).
   Encoding rounds to nearest even. e4m3 "satfinite" clamps to +-448 first (what a quantiser emits:
   torch's cast); the non-saturating form gives NaN beyond 464 (ml_dtypes). NaN stays NaN (0x7f/0xff). */
void mal_f32_to_e4m3(uint8_t *dst, const float *src, size_t n, int saturate);
void mal_e4m3_to_f32(float *dst, const uint8_t *src, size_t n);
void mal_f32_to_e5m2(uint8_t *dst, const float *src, size_t n, int saturate);
void mal_e5m2_to_f32(float *dst, const uint8_t *src, size_t n);

/* DeepSeek-V3 block quantisation of one band of rows: `rows` x `cols` float32 values (row stride
   `cols`), blocks of `rows` x `bc` columns (the band is one block high). For each block:
   amax = max(|x|, 1e-4); s = amax / 448 (float32); if pow2: s = 2^ceil(log2 s) (UE8M0);
   q = e4m3_satfinite(x / s). Writes q (row stride cols) and one scale per block (scales[b]).
   Returns -1, or the index (row * cols + col) of the first NaN/inf value. */
long mal_quantize_band_e4m3(uint8_t *q, float *scales, const float *x, size_t rows, size_t cols, size_t bc, int pow2);

/* q (rows x cols, e4m3) times per-block scale -> float32: y = float32(q) * s (one rounding). */
void mal_dequantize_band_e4m3(float *y, const uint8_t *q, const float *scales, size_t rows, size_t cols, size_t bc);

/* Linear layers, y = W x, with W [rows, cols] row-major in its stored dtype, converted on the fly
   inside the dot products; rows [r0, r1) only (threads split the rows). float32 accumulation.
   E4M3 weights use per-block scales `scales[(r / br) * ceil(cols / bc) + c / bc]`. */
void mal_matvec_f32(float *y, const float *W, const float *x, size_t cols, size_t r0, size_t r1);
void mal_matvec_bf16(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1);
void mal_matvec_f16(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1);
void mal_matvec_e4m3(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br, size_t bc,
                     size_t r0, size_t r1);

/* The two implementations behind each of the three above: `_portable` (plain loops, any CPU) and
   `_fast` (linear_avx512.c), which returns 0 without doing anything when the CPU (AVX-512 F, BW, VL) or
   the shape does not allow it. mal_simd_level() is 1 when the AVX-512 forms are used, 0 when not
   (also when the environment sets MAL_NO_AVX512=1, for comparisons). Tests check both forms. */
void mal_matvec_f32_portable(float *y, const float *W, const float *x, size_t cols, size_t r0, size_t r1);
void mal_matvec_bf16_portable(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1);
void mal_matvec_e4m3_portable(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br,
                              size_t bc, size_t r0, size_t r1);
int mal_matvec_f32_fast(float *y, const float *W, const float *x, size_t cols, size_t r0, size_t r1);
int mal_matvec_bf16_fast(float *y, const uint16_t *W, const float *x, size_t cols, size_t r0, size_t r1);
int mal_matvec_e4m3_fast(float *y, const uint8_t *W, const float *scales, const float *x, size_t cols, size_t br, size_t bc,
                         size_t r0, size_t r1);
int mal_simd_level(void);

/* A plain read of n bytes with a software prefetch `prefetch` bytes ahead (0: none): the ceiling
   the decoding kernels are compared with (malbench read). Returns a value of every byte. */
uint64_t mal_read_probe(const void *p, size_t n, size_t prefetch);

/* Batched form for prompt processing: Y[t, r] = W[r] . X[t] for t < T, rows [r0, r1).
   Each weight row is read (and decoded) once for all T inputs. */
void mal_matmul(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows, size_t cols,
                size_t br, size_t bc, size_t r0, size_t r1);
enum { MAL_W_F32 = 0, MAL_W_BF16 = 1, MAL_W_F16 = 2, MAL_W_E4M3 = 3, MAL_W_BF16_TILED = 4 };

/* Tiled BF16 layout, chosen at load time for rows of 768+ columns, where the row-major kernel can
   drop to 17-23 GB/s (its per-row re-read of a 3+ KB float32 input competes with the weight stream)
   while this layout holds 24-30: one forward stream in which a 2 KB input tile serves a block of
   rows. Blocks of R rows (the last may be shorter); within a block, tiles of K columns (the last
   may be narrower), each holding the block's row segments one after another.
   mal_bf16_tiled_index gives the position of element (r, c). */
/* Block shape by width: 4 rows x 512 columns, or 8 x 256 from 2048 columns, where a taller,
   narrower block (the same 4 KB of weights per input tile, a 1 KB input tile) read 15% faster. */
enum { MAL_TILE_MAX_ROWS = 8 };
static inline size_t mal_bf16_tile_rows(size_t cols) { return cols >= 2048 ? 8 : 4; }
static inline size_t mal_bf16_tile_cols(size_t cols) { return cols >= 2048 ? 256 : 512; }
static inline size_t mal_bf16_tiled_index(size_t r, size_t c, size_t rows, size_t cols) {
    size_t R = mal_bf16_tile_rows(cols), K = mal_bf16_tile_cols(cols);
    size_t rb = r / R, nr = rows - rb * R < R ? rows - rb * R : R;
    size_t t = c / K, kt = cols - t * K < K ? cols - t * K : K;
    return rb * R * cols + t * K * nr + (r % R) * kt + (c - t * K);
}
/* Whether the runtime's loader tiles a BF16 matrix of `cols` columns: cols >= 768 on CPUs with the
   AVX-512 kernels (at 256-512 columns the row-major kernel is the faster one). The environment
   variable MAL_BF16_TILE=0 turns it off (comparisons); mal_set_bf16_tile_all(1) tiles every BF16
   matrix (tests, to run the tiny fixtures through the tiled paths). */
int mal_bf16_use_tiled(size_t cols);
void mal_set_bf16_tile_all(int all);
/* Copies a row-major BF16 matrix into the tiled layout (same size). */
void mal_bf16_tile(uint16_t *dst, const uint16_t *src, size_t rows, size_t cols);
/* y = W x for a tiled BF16 W, rows [r0, r1): AVX-512 where available, else portable. */
void mal_matvec_bf16_tiled(float *y, const uint16_t *W, const float *x, size_t rows, size_t cols, size_t r0, size_t r1);
int mal_matvec_bf16_tiled_fast(float *y, const uint16_t *W, const float *x, size_t rows, size_t cols, size_t r0, size_t r1);
/* The tiled product for T <= 4 inputs at once (X[t] at t * xs, Y[t] at t * ys), each weight read
   once; every result equals mal_matvec_bf16_tiled's bit for bit. 0 when the CPU lacks AVX-512
   (the caller then runs the inputs one by one). */
int mal_matvec_bf16_tiled_multi(float *Y, size_t ys, const uint16_t *W, const float *X, size_t xs, size_t T, size_t rows,
                                size_t cols, size_t r0, size_t r1);
/* The same for FP8 E4M3 with block scales (results equal mal_matvec_e4m3's bit for bit). */
int mal_matvec_e4m3_multi(float *Y, size_t ys, const uint8_t *W, const float *scales, const float *X, size_t xs, size_t T,
                          size_t cols, size_t br, size_t bc, size_t r0, size_t r1);
/* The same for a row-major BF16 W (results equal mal_matvec_bf16's bit for bit). */
int mal_matvec_bf16_multi(float *Y, size_t ys, const uint16_t *W, const float *X, size_t xs, size_t T, size_t cols, size_t r0,
                          size_t r1);
void mal_matvec_bf16_tiled_portable(float *y, const uint16_t *W, const float *x, size_t rows, size_t cols, size_t r0, size_t r1);
/* Row r of W (any of the dtypes above, tiled BF16 included) as float32; for E4M3 the dequantised
   float32(q) * s. The runtime reads token embeddings through it when the head is tied. */
void mal_decode_row(float *out, const void *W, int dtype, const float *scales, size_t r, size_t rows, size_t cols, size_t br,
                    size_t bc);
/* Its two implementations, as for the matrix-vector kernels. */
void mal_matmul_portable(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows,
                         size_t cols, size_t br, size_t bc, size_t r0, size_t r1);
int mal_matmul_fast(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows, size_t cols,
                    size_t br, size_t bc, size_t r0, size_t r1);
/* The "fast" precision of prompt processing (matmul_bf16dp.c): for BF16 and E4M3 weights the
   activations are rounded to BF16 inside the products (for E4M3, each activation times its block's
   scale); F32 and F16 weights take mal_matmul. AVX-512 BF16 dot products where they pay
   (mal_bf16dp_pays), else the rounded inputs through mal_matmul. For E4M3, rows [r0, r1) start at a multiple of 32. */
void mal_matmul_bf16_inputs(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows,
                            size_t cols, size_t br, size_t bc, size_t r0, size_t r1);
/* Its AVX-512 BF16 kernel alone: 0 (nothing written) when the CPU lacks AVX512_BF16 or the weights
   do not suit it (E4M3 needs 32 | block rows, 16 | block columns, 32 | r0). */
int mal_matmul_bf16dp(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows, size_t cols,
                      size_t br, size_t bc, size_t r0, size_t r1);
/* The same packed panels through float32 FMAs (AVX-512 F, BW, VL), inputs rounded to BF16 when
   `round` (the runtime's fast precision where the BF16 dot product does not pay) or as they are.
   The exact precision keeps mal_matmul: its 16-lane partial sums are more accurate than the
   panels' one float32 sum per output (3-5x smaller errors in the float64 check of
   Tests/Reference/numpy_forward.py). 0 (nothing written) without AVX-512 or for unsuited E4M3 weights (32 | block rows,
   2 | block columns, 32 | r0). */
int mal_matmul_panels(float *Y, const void *W, int dtype, const float *scales, const float *X, size_t T, size_t rows, size_t cols,
                      size_t br, size_t bc, size_t r0, size_t r1, int round);
/* Whether that kernel runs here (AVX-512 F, BW, VL and BF16; not under MAL_NO_AVX512=1). */
int mal_bf16dp_available(void);
/* Whether it is also faster here than the float32 kernel on rounded inputs (the CPU issues its BF16
   dot product at more than 3/4 of its FMA rate, measured once; MAL_BF16_DOT=1|0 overrides), so
   that mal_matmul_bf16_inputs uses it. */
int mal_bf16dp_pays(void);
/* Makes glibc map every allocation of `bytes` or more on its own and return it when freed,
   instead of raising that threshold to the size of each large block freed (its default), after
   which large buffers come from the heap, whose freed holes it keeps. No-op elsewhere. */
void mal_fixed_mmap_threshold(size_t bytes);
/* FP8 E4M3 decoding in the "fast" precision (matvec_e4m3_bf16dp.c): Y[t, r] = W[r] . X[t] for
   T = 1..4 inputs (X[t] at t * xs, Y[t] at t * ys), rows [r0, r1), with each activation times its
   block's scale rounded to BF16 and E4M3 subnormal weights read as zero, through BF16 dot
   products; every input's rows equal the T = 1 call's bit for bit. 0 (nothing done) where
   mal_bf16dp_available() is 0, or for T > 4, cols < 64 or bc % 64 != 0. */
int mal_matvec_e4m3_bf16dp(float *Y, size_t ys, const uint8_t *W, const float *scales, const float *X, size_t xs, size_t T,
                           size_t cols, size_t br, size_t bc, size_t r0, size_t r1);
/* BF16 decoding in the "fast" precision (matvec_bf16_bf16dp.c): the same for a BF16 W, row-major
   (tiled = 0) or in the tiled layout (tiled = 1, `rows` its row count), with the activations
   rounded to BF16 and BF16 subnormals read as zero. 0 (nothing done) where mal_bf16dp_available()
   is 0, or for T > 4 or cols < 32. */
int mal_matvec_bf16_bf16dp(float *Y, size_t ys, const uint16_t *W, int tiled, const float *X, size_t xs, size_t T, size_t rows,
                           size_t cols, size_t r0, size_t r1);

/* Feed-forward activations in place (activations.c): x = act(x), and the gated form
   g = act(g) * u of SwiGLU (act = SiLU) and GeGLU. Kinds by their transformers names:
   tanh GELU (gelu_new, gelu_pytorch_tanh, gelu_fast, gelu_accurate), exact GELU (gelu), SiLU
   (silu, swish), ReLU (relu), quick_gelu (x sigmoid(1.702 x)). */
enum { MAL_ACT_GELU_TANH = 0, MAL_ACT_GELU_ERF = 1, MAL_ACT_SILU = 2, MAL_ACT_RELU = 3, MAL_ACT_QUICK_GELU = 4 };
void mal_activate(int kind, float *x, size_t n);
void mal_activate_mul(int kind, float *g, const float *u, size_t n);
/* out[i] = e^((x[i] - shift) * scale): the sampler's weights (relative error ~1e-7). */
void mal_exp_scaled(float *out, const float *x, size_t n, float shift, float scale);
float mal_max_f32(const float *x, size_t n);

/* Normalisation of one row (norm.c), y may be x: RMSNorm y = w * (x / sqrt(mean(x^2) + eps)) and
   LayerNorm y = (x - mean) / sqrt(var + eps) * w + b (b may be NULL); and y[t * rows + r] +=
   bias[r] for `count` rows. The same bits on every CPU. */
void mal_rms_norm(float *y, const float *x, const float *w, size_t n, float eps);
void mal_layer_norm(float *y, const float *x, const float *w, const float *b, size_t n, float eps);
void mal_add_bias(float *y, const float *bias, size_t rows, size_t count);

/* One query against a KV cache: out[h] = softmax(q_h . K_g * scale) V_g for heads [h0, h1),
   where g = h / (n_heads / n_kv) (grouped-query attention). Query and key heads have dk
   dimensions, value and output heads dv (they differ in MLA). Position p of key head g starts at
   K + g * k_head_stride + p * k_stride (values alike): the runtime keeps each head's positions
   contiguous ([head][position][dim]), which reads 4x faster than position-major rows at 1024+
   positions. `n_pos` positions are attended; `scratch` holds (h1 - h0) * n_pos floats. */
void mal_attention(float *out, const float *q, const float *K, const float *V, size_t n_pos, size_t dk, size_t dv,
                   size_t n_heads, size_t n_kv, size_t k_stride, size_t v_stride, size_t k_head_stride, size_t v_head_stride,
                   float scale, float *scratch, size_t h0, size_t h1);
/* The T query rows of a prompt step at once: row t (query q + t * q_stride, output out + t *
   out_stride) is at position start + t and attends to its start + t + 1 positions, the cache
   already holding all T rows' keys and values. Each row's output is bit for bit mal_attention's
   for it; the AVX-512 kernel shares every key and value load among up to 4 query vectors (heads
   of a group, or rows where a group has fewer heads). `scratch` holds max(4, h1 - h0) * (start + T)
   floats. */
void mal_attention_rows(float *out, size_t out_stride, const float *q, size_t q_stride, size_t T, size_t start, const float *K,
                        const float *V, size_t dk, size_t dv, size_t n_heads, size_t n_kv, size_t k_stride, size_t v_stride,
                        size_t k_head_stride, size_t v_head_stride, float scale, float *scratch, size_t h0, size_t h1);
int mal_attention_rows_fast(float *out, size_t out_stride, const float *q, size_t q_stride, size_t T, size_t start, const float *K,
                            const float *V, size_t dk, size_t dv, size_t n_heads, size_t n_kv, size_t k_stride, size_t v_stride,
                            size_t k_head_stride, size_t v_head_stride, float scale, float *scratch, size_t h0, size_t h1);
/* Its two implementations, as for the linear kernels: `_fast` (AVX-512, dk and dv multiples of 16;
   returns 0 otherwise) and `_portable`. */
void mal_attention_portable(float *out, const float *q, const float *K, const float *V, size_t n_pos, size_t dk, size_t dv,
                            size_t n_heads, size_t n_kv, size_t k_stride, size_t v_stride, size_t k_head_stride,
                            size_t v_head_stride, float scale, float *scratch, size_t h0, size_t h1);
int mal_attention_fast(float *out, const float *q, const float *K, const float *V, size_t n_pos, size_t dk, size_t dv, size_t n_heads,
                       size_t n_kv, size_t k_stride, size_t v_stride, size_t k_head_stride, size_t v_head_stride, float scale,
                       float *scratch, size_t h0, size_t h1);

/* Compares two rows of logits over a vocabulary of V: negative log-likelihoods of `target`,
   KL(softmax(a) || softmax(b)), argmax of each, max and sum of |a - b| (double precision). */
void mal_compare_logits(const float *a, const float *b, size_t V, size_t target, double *nll_a, double *nll_b, double *kl,
                        size_t *argmax_a, size_t *argmax_b, double *dmax, double *dsum);

/* Persistent worker pool: mal_pool_init(T) starts T-1 workers (once; grows, never shrinks);
   mal_pool_run runs fn(ctx, i) for i < n on the pool and the caller, returning when all are done.
   One job at a time: a call made while another thread's job runs executes inline. */
typedef void (*mal_task_fn)(void *ctx, size_t i);
void mal_pool_init(int threads);
void mal_pool_run(mal_task_fn fn, void *ctx, size_t n, int threads);

/* Temporary outputs removed on SIGINT/SIGTERM/SIGHUP (and by mal_cleanup_temps): a failed or
   interrupted command leaves nothing behind. Directories are removed after the files in them. */
void mal_install_cleanup_handlers(void);
void mal_register_temp(const char *path);
void mal_unregister_temp(const char *path);
void mal_cleanup_temps(void);
/* rename(2) that fails with EEXIST instead of replacing `to` (renameat2 RENAME_NOREPLACE, or a
   hard link where the filesystem lacks it), and an atomic swap of two paths (RENAME_EXCHANGE;
   -1 with errno EINVAL/ENOSYS where unsupported). */
int mal_rename_noreplace(const char *from, const char *to);
int mal_rename_exchange(const char *a, const char *b);

#endif
