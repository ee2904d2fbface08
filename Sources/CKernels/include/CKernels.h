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
