/* One-query attention read straight from the key/value cache (decoding): the driver (its online softmax is
   ck_softmax_block_on, the blockwise path's), and the two steps per key block (scores, probability-weighted values) in portable C and AVX2+FMA; the AVX-512
   steps are in kernels_avx512.c. See ck_attention_decode in CKernels.h. */
#include "CKernels.h"
#include "cpu.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

/* Heads of one group handled together (the steps keep 4 heads' accumulators in registers). */
#define DECODE_HEADS 4

/* ---- portable steps ---- */

/* s[j·CK_DECODE_BLOCK + i] = scale · q_j · k_i for j < g, i < nb. */
static void scores_c(const float *q, size_t g, size_t hd, float scale, const float *k, size_t nb, float *s) {
    for (size_t j = 0; j < g; j++) {
        const float *qj = q + j * hd;
        for (size_t i = 0; i < nb; i++) {
            const float *ki = k + i * hd;
            float acc = 0;
            for (size_t c = 0; c < hd; c++) acc += qj[c] * ki[c];
            s[j * CK_DECODE_BLOCK + i] = acc * scale;
        }
    }
}

/* acc[j·hd + c] += Σ_i p[j·CK_DECODE_BLOCK + i] · v[i·hd + c] for j < g. */
static void pv_c(const float *p, size_t g, size_t nb, const float *v, size_t hd, float *acc) {
    for (size_t i = 0; i < nb; i++) {
        const float *vi = v + i * hd;
        for (size_t j = 0; j < g; j++) {
            float pj = p[j * CK_DECODE_BLOCK + i];
            float *a = acc + j * hd;
            for (size_t c = 0; c < hd; c++) a[c] += pj * vi[c];
        }
    }
}

/* ---- AVX2 steps (hd a multiple of 8) ---- */
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))

/* The eight lane sums of v[0..7], in order. */
AVX2 static INLINE __m256 sum8x8(const __m256 *v) {
    __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
    __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
    t0 = _mm256_hadd_ps(t0, t1);
    t2 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t2, 0x20), _mm256_permute2f128_ps(t0, t2, 0x31));
}

AVX2 static INLINE float sum8(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

AVX2 static void scores_avx2(const float *q, size_t g, size_t hd, float scale, const float *k, size_t nb, float *s) {
    const __m256 vs = _mm256_set1_ps(scale);
    for (size_t j = 0; j < g; j++) {
        const float *qj = q + j * hd;
        float *sj = s + j * CK_DECODE_BLOCK;
        size_t i = 0;
        for (; i + 8 <= nb; i += 8) {
            __m256 acc[8];
            /* The first head streams the keys from memory: fetch ahead (past the block: the next one's). */
            if (j == 0)
                for (size_t b = 0; b < 8 * hd; b += 16)
                    prefetch_ahead(k, (i + DECODE_PREFETCH_KEYS) * hd + b);
            for (int u = 0; u < 8; u++) acc[u] = _mm256_setzero_ps();
            for (size_t c = 0; c < hd; c += 8) {
                __m256 qc = _mm256_loadu_ps(qj + c);
                for (int u = 0; u < 8; u++) acc[u] = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k + (i + u) * hd + c), acc[u]);
            }
            _mm256_storeu_ps(sj + i, _mm256_mul_ps(sum8x8(acc), vs));
        }
        for (; i < nb; i++) {
            __m256 acc = _mm256_setzero_ps();
            for (size_t c = 0; c < hd; c += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qj + c), _mm256_loadu_ps(k + i * hd + c), acc);
            sj[i] = sum8(acc) * scale;
        }
    }
}

/* acc rows of G heads over 16 channels from c: Σ_i p·v. */
AVX2 static INLINE void pv_avx2_g(const int G, const float *p, size_t nb, const float *v, size_t hd, size_t c,
                                  float *acc) {
    __m256 a0[DECODE_HEADS], a1[DECODE_HEADS];
    for (int j = 0; j < G; j++) {
        a0[j] = _mm256_loadu_ps(acc + j * hd + c);
        a1[j] = _mm256_loadu_ps(acc + j * hd + c + 8);
    }
    for (size_t i = 0; i < nb; i++) {
        if (c == 0)
            for (size_t b = 0; b < hd; b += 16)
                prefetch_ahead(v, (i + DECODE_PREFETCH_KEYS) * hd + b);
        __m256 v0 = _mm256_loadu_ps(v + i * hd + c), v1 = _mm256_loadu_ps(v + i * hd + c + 8);
        for (int j = 0; j < G; j++) {
            __m256 pj = _mm256_broadcast_ss(p + j * CK_DECODE_BLOCK + i);
            a0[j] = _mm256_fmadd_ps(pj, v0, a0[j]);
            a1[j] = _mm256_fmadd_ps(pj, v1, a1[j]);
        }
    }
    for (int j = 0; j < G; j++) {
        _mm256_storeu_ps(acc + j * hd + c, a0[j]);
        _mm256_storeu_ps(acc + j * hd + c + 8, a1[j]);
    }
}

/* The last 8 channels when hd is an odd multiple of 8. */
AVX2 static void pv_avx2_tail(const float *p, size_t g, size_t nb, const float *v, size_t hd, size_t c, float *acc) {
    for (size_t j = 0; j < g; j++) {
        __m256 a = _mm256_loadu_ps(acc + j * hd + c);
        for (size_t i = 0; i < nb; i++)
            a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j * CK_DECODE_BLOCK + i), _mm256_loadu_ps(v + i * hd + c), a);
        _mm256_storeu_ps(acc + j * hd + c, a);
    }
}

AVX2 static void pv_avx2(const float *p, size_t g, size_t nb, const float *v, size_t hd, float *acc) {
    size_t c = 0;
    for (; c + 16 <= hd; c += 16) {
        switch (g) {
        case 1: pv_avx2_g(1, p, nb, v, hd, c, acc); break;
        case 2: pv_avx2_g(2, p, nb, v, hd, c, acc); break;
        case 3: pv_avx2_g(3, p, nb, v, hd, c, acc); break;
        default: pv_avx2_g(4, p, nb, v, hd, c, acc); break;
        }
    }
    if (c < hd) pv_avx2_tail(p, g, nb, v, hd, c, acc);
}

/* ---- driver ---- */

typedef void (*scores_step)(const float *, size_t, size_t, float, const float *, size_t, float *);
typedef void (*pv_step)(const float *, size_t, size_t, const float *, size_t, float *);

void ck_attention_decode_on(int path, const float *q, size_t group, size_t hd, float scale, const float *k,
                            const float *v, size_t lo, size_t hi, float *out, float *lse) {
    if (path == CK_PATH_AVX512 && hd % 16 != 0) path = CK_PATH_AVX2;
    if (path == CK_PATH_AVX2 && hd % 8 != 0) path = CK_PATH_PORTABLE;
    scores_step scores = path == CK_PATH_AVX512 ? ck512_decode_scores : path == CK_PATH_AVX2 ? scores_avx2 : scores_c;
    pv_step pv = path == CK_PATH_AVX512 ? ck512_decode_pv : path == CK_PATH_AVX2 ? pv_avx2 : pv_c;
    float s[DECODE_HEADS * CK_DECODE_BLOCK];
    for (size_t g0 = 0; g0 < group; g0 += DECODE_HEADS) {
        size_t g = group - g0 < DECODE_HEADS ? group - g0 : DECODE_HEADS;
        float m[DECODE_HEADS], l[DECODE_HEADS], corr[DECODE_HEADS];
        int32_t first[DECODE_HEADS] = { 0 }, past[DECODE_HEADS];
        float *acc = out + g0 * hd;
        memset(acc, 0, g * hd * sizeof(float));
        for (size_t j = 0; j < g; j++) { m[j] = -INFINITY; l[j] = 0; }
        for (size_t k0 = lo; k0 < hi; k0 += CK_DECODE_BLOCK) {
            size_t nb = hi - k0 < CK_DECODE_BLOCK ? hi - k0 : CK_DECODE_BLOCK;
            scores(q + g0 * hd, g, hd, scale, k + k0 * hd, nb, s);
            /* Every key of the block is visible to every head: the blockwise path's online-softmax step. */
            for (size_t j = 0; j < g; j++) past[j] = (int32_t)nb;
            ck_softmax_block_on(path, s, g, nb, CK_DECODE_BLOCK, first, past, m, l, corr);
            for (size_t j = 0; j < g; j++) {
                if (corr[j] == 1.0f) continue;
                float *a = acc + j * hd;
                for (size_t c = 0; c < hd; c++) a[c] *= corr[j];
            }
            pv(s, g, nb, v + k0 * hd, hd, acc);
        }
        for (size_t j = 0; j < g; j++) {
            float inv = l[j] > 0 ? 1.0f / l[j] : 0.0f, *a = acc + j * hd;
            for (size_t c = 0; c < hd; c++) a[c] *= inv;
            if (lse) lse[g0 + j] = l[j] > 0 ? m[j] + logf(l[j]) : -INFINITY;
        }
    }
}

void ck_attention_decode(const float *q, size_t group, size_t hd, float scale, const float *k, const float *v,
                         size_t lo, size_t hi, float *out, float *lse) {
    ck_attention_decode_on(ck_path_current(), q, group, hd, scale, k, v, lo, hi, out, lse);
}
