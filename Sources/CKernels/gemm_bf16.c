/* bf16 matrix products with f32 accumulation for the engine's bf16 compute mode: C (+)= A · Wᵀ with A (activations,
   [m × k]) and W (a PyTorch Linear weight, [n × k]) in bf16. Products of two bf16 values are exact in f32; sums are
   f32. The AVX-512 BF16 path uses vdpbf16ps (two products per lane per instruction, f32 accumulators, round to
   nearest even, denormals flushed); the portable path is the same arithmetic one product at a time, in k order.

   Packed layout of W (ck_bf16_pack): panels of 16 output features; panel p holds, for each k pair j
   (k indices 2j and 2j+1), 32 bf16 values  packed[(p·kp + j)·32 + 2c + e] = W[16p + c][2j + e]
   (kp = ceil(k/2)); rows past n and the odd k column are zero. One pair row of a panel is one 512-bit vector,
   which vdpbf16ps multiplies against a broadcast activation pair (a[2j], a[2j+1]). */
#include "CKernels.h"
#include "cpu.h"
#include <string.h>
#include <immintrin.h>

size_t ck_bf16_packed_count(size_t n, size_t k) { return ((n + 15) / 16) * ((k + 1) / 2) * 32; }

void ck_bf16_pack(const uint16_t *w, size_t n, size_t k, uint16_t *packed) {
    size_t kp = (k + 1) / 2, panels = (n + 15) / 16;
    memset(packed, 0, ck_bf16_packed_count(n, k) * sizeof(uint16_t));
    for (size_t p = 0; p < panels; p++)
        for (size_t c = 0; c < 16 && 16 * p + c < n; c++) {
            const uint16_t *row = w + (16 * p + c) * k;
            uint16_t *dst = packed + p * kp * 32 + 2 * c;
            for (size_t i = 0; i < k; i++) dst[(i >> 1) * 32 + (i & 1)] = row[i];
        }
}

static inline float widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void gemm_portable(const uint16_t *a, size_t lda, size_t m, size_t k, const uint16_t *packed, size_t n,
                          size_t p0, size_t p1, float *c, size_t ldc, int accumulate) {
    size_t kp = (k + 1) / 2;
    for (size_t r = 0; r < m; r++)
        for (size_t p = p0; p < p1; p++)
            for (size_t col = 0; col < 16 && 16 * p + col < n; col++) {
                const uint16_t *b = packed + p * kp * 32 + 2 * col;
                float s = 0;
                for (size_t i = 0; i < k; i++) s += widen(a[r * lda + i]) * widen(b[(i >> 1) * 32 + (i & 1)]);
                float *dst = c + r * ldc + 16 * p + col;
                *dst = accumulate ? *dst + s : s;
            }
}

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define MR 6
#define NP 4

/* One register tile: `mr` (≤ MR) rows of A × `np` (≤ NP) panels, over all of k. Inlined with constant sizes. */
BF16 static inline __attribute__((always_inline)) void tile(const uint16_t *a, size_t lda, size_t mr, size_t kp,
                                                            const uint16_t *b, size_t np, size_t cols, float *c,
                                                            size_t ldc, int accumulate) {
    __m512 acc[MR][NP];
    for (size_t r = 0; r < mr; r++)
        for (size_t q = 0; q < np; q++) acc[r][q] = _mm512_setzero_ps();
    for (size_t j = 0; j < kp; j++) {
        __m512i bv[NP];
        for (size_t q = 0; q < np; q++) bv[q] = _mm512_loadu_si512((const void *)(b + (q * kp + j) * 32));
        for (size_t r = 0; r < mr; r++) {
            int32_t pair;
            memcpy(&pair, a + r * lda + 2 * j, 4);
            __m512i av = _mm512_set1_epi32(pair);
            for (size_t q = 0; q < np; q++)
                acc[r][q] = _mm512_dpbf16_ps(acc[r][q], (__m512bh)av, (__m512bh)bv[q]);
        }
    }
    for (size_t q = 0; q < np; q++) {
        size_t left = cols > 16 * q ? cols - 16 * q : 0;
        __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        for (size_t r = 0; r < mr; r++) {
            float *dst = c + r * ldc + 16 * q;
            __m512 v = acc[r][q];
            if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
            _mm512_mask_storeu_ps(dst, mask, v);
        }
    }
}

#define TILE_ROWS(MRV)                                                                                             \
    switch (np) {                                                                                                  \
    case 4: tile(ar, lda, MRV, kp, b, 4, cols, cr, ldc, accumulate); break;                                        \
    case 3: tile(ar, lda, MRV, kp, b, 3, cols, cr, ldc, accumulate); break;                                        \
    case 2: tile(ar, lda, MRV, kp, b, 2, cols, cr, ldc, accumulate); break;                                        \
    default: tile(ar, lda, MRV, kp, b, 1, cols, cr, ldc, accumulate); break;                                       \
    }

BF16 static void gemm_avx512(const uint16_t *a, size_t lda, size_t m, size_t k, const uint16_t *packed, size_t n,
                             size_t p0, size_t p1, float *c, size_t ldc, int accumulate) {
    size_t kp = (k + 1) / 2;
    for (size_t p = p0; p < p1; p += NP) {
        size_t np = p1 - p < NP ? p1 - p : NP;
        size_t end = 16 * (p + np) < n ? 16 * (p + np) : n, cols = end - 16 * p;
        const uint16_t *b = packed + p * kp * 32;
        for (size_t r = 0; r < m; r += MR) {
            size_t mr = m - r < MR ? m - r : MR;
            const uint16_t *ar = a + r * lda;
            float *cr = c + r * ldc + 16 * p;
            switch (mr) {
            case 6: TILE_ROWS(6) break;
            case 5: TILE_ROWS(5) break;
            case 4: TILE_ROWS(4) break;
            case 3: TILE_ROWS(3) break;
            case 2: TILE_ROWS(2) break;
            default: TILE_ROWS(1) break;
            }
        }
    }
}

int ck_bf16_gemm(const uint16_t *a, size_t lda, size_t m, size_t k, const uint16_t *packed, size_t n, size_t p0,
                 size_t p1, float *c, size_t ldc, int accumulate, int path) {
    if (path == CK_BF16_AVX512) {
        if (!ck_cpu_avx512_bf16()) return -1;
        gemm_avx512(a, lda, m, k, packed, n, p0, p1, c, ldc, accumulate);
    } else {
        gemm_portable(a, lda, m, k, packed, n, p0, p1, c, ldc, accumulate);
    }
    return 0;
}
