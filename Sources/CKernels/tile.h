/* Small pieces shared by the fused attention forward (attention.c) and backward (attention_backward.c); private to
   CKernels. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <immintrin.h>

/* Keys per block rounded up to whole 6-key panels. */
static inline size_t round6(size_t kb) { return (kb + 5) / 6 * 6; }

/* Row stride of Q^T and S^T: an odd number of 64-byte lines, so that walking down a column touches every L1 set. */
static inline size_t padded_stride(size_t rp) { return (rp / 16) % 2 ? rp : rp + 16; }

/* 2^t for t <= 0 (Cephes exp2f's polynomial on [-1/2, 1/2], relative error < 2e-7). t is clamped at -125, so
   t = -inf gives 2^-125 (callers zero masked entries themselves); n is added straight into p's exponent field. */
__attribute__((target("avx2,fma")))
static inline __m256 exp2_nonpos(__m256 t) {
    t = _mm256_max_ps(t, _mm256_set1_ps(-125.0f));
    __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(1.535336188319500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

/* The same on 16 lanes (AVX-512; the fused tile's AVX-512 steps and the bf16 AMX attention). */
__attribute__((target("avx512f")))
static inline __m512 exp2_nonpos512(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-125.0f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
}

/* Whether keys 0 ..< nb are all visible to columns c ..< c+8, i.e. lo[c+i] <= 0 and hi[c+i] >= nb for each
   (block-relative bounds of the keys a column may use). */
__attribute__((target("avx2,fma")))
static inline int block_visible8(const int32_t *lo, const int32_t *hi, size_t c, size_t nb) {
    __m256i vlo = _mm256_loadu_si256((const __m256i *)(lo + c));
    __m256i vhi = _mm256_loadu_si256((const __m256i *)(hi + c));
    __m256i nbv = _mm256_set1_epi32((int32_t)nb);
    return _mm256_testz_si256(_mm256_or_si256(_mm256_cmpgt_epi32(vlo, _mm256_setzero_si256()),
                                              _mm256_cmpgt_epi32(nbv, vhi)), _mm256_set1_epi32(-1));
}
