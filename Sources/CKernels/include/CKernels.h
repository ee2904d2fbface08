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
