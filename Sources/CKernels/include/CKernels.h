#pragma once
#include <stddef.h>
#include <stdint.h>

/* Element-wise dtype conversions with runtime CPU dispatch (AVX-512/AVX2/F16C where present,
   portable C otherwise). All are exact or round-to-nearest-even, matching torch's CPU casts:
   - bf16 -> f32: exact (bits << 16).
   - f32 -> bf16: round to nearest, ties to even; every NaN becomes 0xFFFF (a NaN), as torch's vectorised cast does.
   - f16 -> f32: exact, subnormals included.
   - f32 -> f16: round to nearest, ties to even; overflow to +-inf; NaN stays NaN (sign and top payload bits
     kept, quiet bit set), as F16C and torch do. */
void ck_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void ck_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void ck_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void ck_f32_to_f16(const float *src, uint16_t *dst, size_t n);

/* Scalar helpers (same rounding as the bulk routines). */
uint16_t ck_f32_to_bf16_scalar(float x);
float ck_f16_to_f32_scalar(uint16_t h);
uint16_t ck_f32_to_f16_scalar(float x);

/* ---- Optimizer kernels (optimizer.c) ---- */

/* The per-step scalars of an AdamW update, each already rounded to f32 as torch passes them to its f32 ops. */
typedef struct {
    float decay;                  /* 1 - lr*wd */
    float lerp_weight;            /* w = 1 - beta1, or w - 1 when lerp_from_end (torch's lerp for |w| >= 0.5) */
    int lerp_from_end;
    float beta2, one_minus_beta2;
    float bias_correction2_sqrt;  /* sqrt(1 - beta2^t) */
    float eps;
    float negative_step_size;     /* -lr / (1 - beta1^t) */
} ck_adamw_step;

/* AdamW on n elements in one pass, as torch's single-tensor path (apply_decay: p *= decay first):
   m = fma(w, g - m, from_end ? g : m); v = fma((1-b2)*g, g, v*b2); p += (step*m) / (sqrt(v)/bc2 + eps). */
void ck_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const ck_adamw_step *k,
                     int apply_decay);

/* Sum of x[i]^2 in f64 (sixteen lanes, fixed order: the same result on every CPU). */
double ck_sum_squares(const float *x, size_t n);

/* ---- Transformer kernels (attention.c) ----
   All f32, row-major, runtime-dispatched to AVX2+FMA where present. */

/* y[i] = exp(x[i]) for n values (Cephes-style range reduction + degree-5 polynomial, < 2 ulp). */
void ck_exp(const float *x, float *y, size_t n);

/* One online-softmax step of blockwise attention (flash-attention style) over a score block.
   S: rows x cols scores (already scaled), row stride ld, overwritten with P = exp(S - m_new) (0 outside the
   valid range). Row r may use columns [lo[r], hi[r]) only. m, l: running max and sum per row (start -inf, 0),
   updated. corr[r] receives exp(m_old - m_new), the factor by which the row's running output must be scaled
   (1 when the row has seen no valid score yet). */
void ck_softmax_block(float *S, size_t rows, size_t cols, size_t ld, const int32_t *lo, const int32_t *hi,
                      float *m, float *l, float *corr);

/* gate[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up. */
void ck_silu_mul(float *gate, const float *up, size_t n);

/* RMSNorm per row: y = w * (x / sqrt(mean(x^2) + eps)); x, y: rows x n (may alias). */
void ck_rmsnorm(const float *x, const float *w, float *y, size_t rows, size_t n, float eps);

/* ---- Fused attention tile (attention.c) ----
   True when ck_attention_tile can run here: AVX2+FMA and a head dimension that is a multiple of 8. */
int ck_attention_fused_available(size_t hd);

/* Floats of workspace ck_attention_tile needs for `rows` = queries x group query rows and key blocks of `kb`. */
size_t ck_attention_scratch(size_t rows, size_t hd, size_t kb);

/* Floats needed by ck_attention_pack for `blocks` key blocks of `kb` keys. */
size_t ck_attention_packed_size(size_t blocks, size_t hd, size_t kb);

/* Packs key blocks b0 ..< b1 (block b = keys b*kb ..< min(keys, (b+1)*kb)) of one key/value head for
   ck_attention_tile: keys in panels of 6 ([d][6]), values in strips of 16 channels ([key][16]), zero-padded.
   k, v: key/value index t at k + t*hd, v + t*hd; `keys` of them are valid. Block b lands at
   packed + (b - b0) * (ck_attention_packed_size(1, hd, kb)). */
void ck_attention_pack(const float *k, const float *v, size_t keys, size_t hd, size_t kb, size_t b0, size_t b1,
                       float *packed);

/* Attention of `queries` consecutive query positions, each with `group` heads sharing one key/value head, against
   that head's keys and values, blockwise with an online softmax (flash-attention style), fused in registers:
   S^T = K·Q^T·scale (6 keys x 16 query rows per register tile), the running max/sum down the key axis (base 2),
   and O = O·corr + P·V (6 rows x 16 channels per register tile).
   - q: query i, head j at q + i*q_stride + j*hd (hd floats).
   - packed: the head's keys/values from ck_attention_pack, starting at block first_block.
   - key_lo[i] <= t < key_hi[i]: the keys query i may see (causal limit, sliding window); all inside the packed
     blocks.
   - kb: keys per block (as packed).
   - out: query i, head j written (normalised) at out + i*out_stride + j*hd; a query that sees no key gets 0.
   - lse (may be NULL): natural log-sum-exp of the scaled scores of query i, head j at lse[i*lse_stride + j]
     (row order, as the outputs); -inf when no key.
   - scratch: ck_attention_scratch(queries*group, hd, kb) floats.
   Matches softmax(QK^T·scale + mask)·V to f32 rounding (exp2: Cephes polynomial, relative error < 2e-7). */
void ck_attention_tile(const float *q, size_t q_stride, size_t queries, size_t group, size_t hd, float scale,
                       const float *packed, size_t first_block, const int32_t *key_lo, const int32_t *key_hi,
                       size_t kb, float *out, size_t out_stride, float *lse, size_t lse_stride, float *scratch);
