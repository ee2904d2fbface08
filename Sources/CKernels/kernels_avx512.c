/* AVX-512 (F/BW/VL/DQ, 16 lanes) versions of the transformer kernels in attention.c: the same algorithms, the same
   polynomials and the same per-element operations, so results differ from the AVX2 and portable paths only by
   the order of summations. Dispatched from attention.c when cpu.c finds AVX-512. */
#include "CKernels.h"
#include "cpu.h"
#include "tile.h"
#include <math.h>
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))

/* Same constants as attention.c's exp (Cephes range reduction, degree-5 polynomial). */
#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3365478515625f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f

static inline float exp_tail(float x) {
    if (x > EXP_HI) return INFINITY;
    if (x < EXP_LO) return 0.0f;
    float n = floorf(x * LOG2E + 0.5f);
    float r = x - n * LN2_HI - n * LN2_LO;
    float p = ((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r + 4.1665795894E-2f) * r
               + 1.6666665459E-1f) * r + 5.0000001201E-1f;
    p = p * (r * r) + r + 1.0f;
    return ldexpf(p, (int)n);
}

AVX512 static inline __m512 exp512(__m512 x) {
    const __m512 hi = _mm512_set1_ps(EXP_HI), lo = _mm512_set1_ps(EXP_LO);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
    x = _mm512_max_ps(_mm512_min_ps(x, hi), lo);
    __m512 n = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5f)),
                                    _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i ni = _mm512_cvtps_epi32(n);
    __m512i half = _mm512_srai_epi32(ni, 1);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, _mm512_set1_epi32(127)), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, half),
                                                                         _mm512_set1_epi32(127)), 23));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
    y = _mm512_maskz_mov_ps((__mmask16)~under, y);
    return _mm512_mask_mov_ps(y, over, _mm512_set1_ps(INFINITY));
}

/* Lanes 0 ..< n set (n <= 16). */
static inline __mmask16 tail_mask(size_t n) { return (__mmask16)(n >= 16 ? 0xFFFFu : ((1u << n) - 1u)); }

AVX512 void ck512_exp(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp512(_mm512_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = exp_tail(x[i]);
}

AVX512 float ck512_row_max(const float *s, size_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(s + i));
    if (i < n) m = _mm512_mask_max_ps(m, tail_mask(n - i), m, _mm512_maskz_loadu_ps(tail_mask(n - i), s + i));
    return _mm512_reduce_max_ps(m);
}

AVX512 float ck512_exp_sub_sum(float *s, size_t n, float mx) {
    __m512 acc = _mm512_setzero_ps(), vm = _mm512_set1_ps(mx);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + i), vm));
        _mm512_storeu_ps(s + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < n; i++) { float e = exp_tail(s[i] - mx); s[i] = e; sum += e; }
    return sum;
}

AVX512 void ck512_silu_mul(float *g, const float *u, size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(g + i);
        __m512 y = _mm512_div_ps(x, _mm512_add_ps(one, exp512(_mm512_sub_ps(zero, x))));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(y, _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + exp_tail(-g[i])) * u[i];
}

AVX512 void ck512_rmsnorm_row(const float *x, const float *w, float *y, size_t n, float eps) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
        a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        a0 = _mm512_fmadd_ps(v, v, a0);
    }
    float ss = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    __m512 inv = _mm512_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
    for (i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i), v));
    }
}

AVX512 void ck512_rope_row(float *v, size_t heads, size_t hd, const float *c, const float *s, size_t rd,
                           float sign) {
    size_t half = rd / 2;
    __m512 sg = _mm512_set1_ps(sign);
    for (size_t h = 0; h < heads; h++, v += hd) {
        for (size_t j = 0; j < half; j += 16) {
            __mmask16 k = tail_mask(half - j);
            __m512 x1 = _mm512_maskz_loadu_ps(k, v + j), x2 = _mm512_maskz_loadu_ps(k, v + j + half);
            __m512 s1 = _mm512_mul_ps(sg, _mm512_maskz_loadu_ps(k, s + j));
            __m512 s2 = _mm512_mul_ps(sg, _mm512_maskz_loadu_ps(k, s + j + half));
            __m512 a = _mm512_mul_ps(x1, _mm512_maskz_loadu_ps(k, c + j)), b = _mm512_mul_ps(x2, s1);
            __m512 e = _mm512_mul_ps(x2, _mm512_maskz_loadu_ps(k, c + j + half)), f = _mm512_mul_ps(x1, s2);
            _mm512_mask_storeu_ps(v + j, k, _mm512_sub_ps(a, b));
            _mm512_mask_storeu_ps(v + j + half, k, _mm512_add_ps(e, f));
        }
    }
}

/* ---- fused attention tile steps (layout and packing: attention.c) ---- */

/* ST[j][c ..< c+16·NQ] for the 6 keys of one packed panel kp[d][6], NQ in {1, 2} vectors of query rows. */
AVX512 __attribute__((always_inline))
static inline void qk_tile512(int nq, const float *kp, size_t hd, const float *qt, size_t ld, float *st) {
    __m512 c0[6], c1[6];
    for (int i = 0; i < 6; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (size_t d = 0; d < hd; d++, kp += 6, qt += ld) {
        __m512 b0 = _mm512_loadu_ps(qt), b1 = nq > 1 ? _mm512_loadu_ps(qt + 16) : _mm512_setzero_ps();
        for (int i = 0; i < 6; i++) {
            __m512 a = _mm512_set1_ps(kp[i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            if (nq > 1) c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    for (int i = 0; i < 6; i++) {
        _mm512_storeu_ps(st + i * ld, c0[i]);
        if (nq > 1) _mm512_storeu_ps(st + i * ld + 16, c1[i]);
    }
}

/* ST (nb rounded up to 6 rows) = K_block · Q^T in 6-key x 32-row register tiles (a 6 x 16 tile for the rest). */
AVX512 static void qk_block512(const float *kp, size_t hd, size_t nb, const float *qt, size_t rp, size_t ld,
                               float *st) {
    size_t panels = (nb + 5) / 6;
    for (size_t p = 0; p < panels; p++) {
        const float *panel = kp + p * hd * 6;
        float *dst = st + p * 6 * ld;
        size_t c = 0;
        for (; c + 32 <= rp; c += 32) qk_tile512(2, panel, hd, qt + c, ld, dst + c);
        if (c < rp) qk_tile512(1, panel, hd, qt + c, ld, dst + c);
    }
}

/* Online softmax down the key axis, 16 columns at a time (as attention.c's softmax_block_t). */
AVX512 static void softmax_block512(float *st, size_t nb, size_t rp, size_t ld, const int32_t *lo,
                                    const int32_t *hi, float *m, float *l, float *corr) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY), zero = _mm512_setzero_ps();
    for (size_t c = 0; c < rp; c += 16) {
        __m512i vlo = _mm512_loadu_si512(lo + c), vhi = _mm512_loadu_si512(hi + c);
        int full = (_mm512_cmpgt_epi32_mask(vlo, _mm512_setzero_si512())
                    | _mm512_cmpgt_epi32_mask(_mm512_set1_epi32((int32_t)nb), vhi)) == 0;
        __m512 mx = ninf, mx1 = ninf;
        size_t j = 0;
        if (full) {
            for (; j + 2 <= nb; j += 2) {
                mx = _mm512_max_ps(mx, _mm512_loadu_ps(st + j * ld + c));
                mx1 = _mm512_max_ps(mx1, _mm512_loadu_ps(st + (j + 1) * ld + c));
            }
            if (j < nb) mx = _mm512_max_ps(mx, _mm512_loadu_ps(st + j * ld + c));
            mx = _mm512_max_ps(mx, mx1);
        } else {
            for (; j < nb; j++) {
                __m512i jv = _mm512_set1_epi32((int32_t)j);
                __mmask16 bad = _mm512_cmpgt_epi32_mask(vlo, jv) | _mm512_cmpge_epi32_mask(jv, vhi);
                __m512 s = _mm512_mask_mov_ps(_mm512_loadu_ps(st + j * ld + c), bad, ninf);
                _mm512_storeu_ps(st + j * ld + c, s);
                mx = _mm512_max_ps(mx, s);
            }
        }
        __m512 mold = _mm512_loadu_ps(m + c);
        __m512 mnew = _mm512_max_ps(mold, mx);
        __mmask16 none = _mm512_cmp_ps_mask(mnew, ninf, _CMP_EQ_OQ);
        __m512 msafe = _mm512_mask_mov_ps(mnew, none, zero);
        __m512 cr = _mm512_mask_mov_ps(exp2_nonpos512(_mm512_sub_ps(mold, msafe)),
                                       _mm512_cmp_ps_mask(mold, ninf, _CMP_EQ_OQ), zero);
        cr = _mm512_mask_mov_ps(cr, none, _mm512_set1_ps(1.0f));
        __m512 sum0 = zero, sum1 = zero;
        j = 0;
        if (full) {
            for (; j + 2 <= nb; j += 2) {
                __m512 e0 = exp2_nonpos512(_mm512_sub_ps(_mm512_loadu_ps(st + j * ld + c), msafe));
                __m512 e1 = exp2_nonpos512(_mm512_sub_ps(_mm512_loadu_ps(st + (j + 1) * ld + c), msafe));
                _mm512_storeu_ps(st + j * ld + c, e0);
                _mm512_storeu_ps(st + (j + 1) * ld + c, e1);
                sum0 = _mm512_add_ps(sum0, e0);
                sum1 = _mm512_add_ps(sum1, e1);
            }
        }
        for (; j < nb; j++) {
            __m512 s = _mm512_loadu_ps(st + j * ld + c);
            __mmask16 masked = _mm512_cmp_ps_mask(s, ninf, _CMP_EQ_OQ);
            __m512 e0 = _mm512_maskz_mov_ps((__mmask16)~masked, exp2_nonpos512(_mm512_sub_ps(s, msafe)));
            _mm512_storeu_ps(st + j * ld + c, e0);
            sum0 = _mm512_add_ps(sum0, e0);
        }
        _mm512_storeu_ps(l + c, _mm512_fmadd_ps(_mm512_loadu_ps(l + c), cr, _mm512_add_ps(sum0, sum1)));
        _mm512_storeu_ps(m + c, mnew);
        _mm512_storeu_ps(corr + c, cr);
    }
}

/* O[r][c ..< c + 16·NS] = O·corr + sum_j P[j][r]·V[j][..] for MR <= 6 rows and NS in {1, 2} channel strips (packed
   [j][16], the second `strip_stride` floats after the first); the last strip's lanes are cut to `k1` (hd not a
   multiple of 16). */
AVX512 __attribute__((always_inline))
static inline void pv_tile512(int mr, int ns, __mmask16 k0, __mmask16 k1, const float *pt, size_t ld,
                              const float *v0, const float *v1, size_t hd, size_t nb, const float *corr, float *o) {
    __m512 c0[6], c1[6];
    for (int i = 0; i < 6; i++) {
        if (i < mr) {
            __m512 s = _mm512_set1_ps(corr[i]);
            c0[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(k0, o + i * hd), s);
            c1[i] = ns > 1 ? _mm512_mul_ps(_mm512_maskz_loadu_ps(k1, o + i * hd + 16), s) : _mm512_setzero_ps();
        } else { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    }
    for (size_t j = 0; j < nb; j++) {
        __m512 b0 = _mm512_loadu_ps(v0 + j * 16);
        __m512 b1 = ns > 1 ? _mm512_loadu_ps(v1 + j * 16) : _mm512_setzero_ps();
        for (int i = 0; i < 6; i++) {
            if (i < mr) {
                __m512 a = _mm512_set1_ps(pt[j * ld + i]);
                c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
                if (ns > 1) c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
            }
        }
    }
    for (int i = 0; i < 6; i++) {
        if (i < mr) {
            _mm512_mask_storeu_ps(o + i * hd, k0, c0[i]);
            if (ns > 1) _mm512_mask_storeu_ps(o + i * hd + 16, k1, c1[i]);
        }
    }
}

AVX512 __attribute__((always_inline))
static inline void pv_strip512(int ns, __mmask16 k0, __mmask16 k1, const float *pt, size_t ld, size_t rows,
                               const float *v0, const float *v1, size_t hd, size_t nb, const float *corr, float *o) {
    size_t r = 0;
    for (; r + 6 <= rows; r += 6) pv_tile512(6, ns, k0, k1, pt + r, ld, v0, v1, hd, nb, corr + r, o + r * hd);
    switch (rows - r) {
    case 5: pv_tile512(5, ns, k0, k1, pt + r, ld, v0, v1, hd, nb, corr + r, o + r * hd); break;
    case 4: pv_tile512(4, ns, k0, k1, pt + r, ld, v0, v1, hd, nb, corr + r, o + r * hd); break;
    case 3: pv_tile512(3, ns, k0, k1, pt + r, ld, v0, v1, hd, nb, corr + r, o + r * hd); break;
    case 2: pv_tile512(2, ns, k0, k1, pt + r, ld, v0, v1, hd, nb, corr + r, o + r * hd); break;
    case 1: pv_tile512(1, ns, k0, k1, pt + r, ld, v0, v1, hd, nb, corr + r, o + r * hd); break;
    default: break;
    }
}

/* O (rows x hd) = O·corr + P·V for one key block: pairs of 16-channel strips (6 rows x 32 channels per register
   tile), then a single strip; the last strip masked to the channels that exist. */
AVX512 static void pv_block512(const float *pt, size_t ld, size_t rows, const float *vp, size_t strip_stride,
                               size_t hd, size_t nb, const float *corr, float *o) {
    size_t c = 0;
    for (; c + 16 < hd; c += 32, vp += 2 * strip_stride)
        pv_strip512(2, 0xFFFF, tail_mask(hd - c - 16), pt, ld, rows, vp, vp + strip_stride, hd, nb, corr, o + c);
    if (c < hd) pv_strip512(1, tail_mask(hd - c), 0, pt, ld, rows, vp, vp, hd, nb, corr, o + c);
}

const ck_tile_ops ck_tile_ops_avx512 = {qk_block512, softmax_block512, pv_block512};

/* ---- one-query attention steps (attention_decode.c's driver; hd a multiple of 16) ---- */

/* The sixteen lane sums of v[0..15], in order. */
AVX512 static inline __m512 sum16x16(const __m512 *v) {
    __m256 y[16];
    for (int u = 0; u < 16; u++)
        y[u] = _mm256_add_ps(_mm512_castps512_ps256(v[u]), _mm512_extractf32x8_ps(v[u], 1));
    __m256 r[2];
    for (int h = 0; h < 2; h++) {
        const __m256 *w = y + 8 * h;
        __m256 t0 = _mm256_hadd_ps(w[0], w[1]), t1 = _mm256_hadd_ps(w[2], w[3]);
        __m256 t2 = _mm256_hadd_ps(w[4], w[5]), t3 = _mm256_hadd_ps(w[6], w[7]);
        t0 = _mm256_hadd_ps(t0, t1);
        t2 = _mm256_hadd_ps(t2, t3);
        r[h] = _mm256_add_ps(_mm256_permute2f128_ps(t0, t2, 0x20), _mm256_permute2f128_ps(t0, t2, 0x31));
    }
    return _mm512_insertf32x8(_mm512_castps256_ps512(r[0]), r[1], 1);
}

AVX512 void ck512_decode_scores(const float *q, size_t g, size_t hd, float scale, const float *k, size_t nb,
                                float *s) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (size_t j = 0; j < g; j++) {
        const float *qj = q + j * hd;
        float *sj = s + j * CK_DECODE_BLOCK;
        size_t i = 0;
        for (; i + 16 <= nb; i += 16) {
            __m512 acc[16];
            /* The first head streams the keys from memory: fetch 32 keys ahead (past the block: the next one's). */
            if (j == 0)
                for (size_t b = 0; b < 16 * hd; b += 16)
                    prefetch_ahead(k, (i + DECODE_PREFETCH_KEYS) * hd + b);
            for (int u = 0; u < 16; u++) acc[u] = _mm512_setzero_ps();
            for (size_t c = 0; c < hd; c += 16) {
                __m512 qc = _mm512_loadu_ps(qj + c);
                for (int u = 0; u < 16; u++) acc[u] = _mm512_fmadd_ps(qc, _mm512_loadu_ps(k + (i + u) * hd + c), acc[u]);
            }
            _mm512_storeu_ps(sj + i, _mm512_mul_ps(sum16x16(acc), vs));
        }
        for (; i < nb; i++) {
            __m512 acc = _mm512_setzero_ps();
            for (size_t c = 0; c < hd; c += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qj + c), _mm512_loadu_ps(k + i * hd + c), acc);
            sj[i] = _mm512_reduce_add_ps(acc) * scale;
        }
    }
}

/* acc rows of G heads over NV·16 channels from c: Σ_i p·v. */
AVX512 static inline __attribute__((always_inline)) void decode_pv512(const int G, const int NV, const float *p,
                                                                     size_t nb, const float *v, size_t hd, size_t c,
                                                                     float *acc) {
    __m512 a[4][4];
    for (int j = 0; j < G; j++)
        for (int u = 0; u < NV; u++) a[j][u] = _mm512_loadu_ps(acc + j * hd + c + 16 * u);
    for (size_t i = 0; i < nb; i++) {
        __m512 vv[4];
        if (c == 0)
            for (size_t b = 0; b < hd; b += 16)
                prefetch_ahead(v, (i + DECODE_PREFETCH_KEYS) * hd + b);
        for (int u = 0; u < NV; u++) vv[u] = _mm512_loadu_ps(v + i * hd + c + 16 * u);
        for (int j = 0; j < G; j++) {
            __m512 pj = _mm512_set1_ps(p[j * CK_DECODE_BLOCK + i]);
            for (int u = 0; u < NV; u++) a[j][u] = _mm512_fmadd_ps(pj, vv[u], a[j][u]);
        }
    }
    for (int j = 0; j < G; j++)
        for (int u = 0; u < NV; u++) _mm512_storeu_ps(acc + j * hd + c + 16 * u, a[j][u]);
}

#define DECODE_PV_G(NV)                                                          \
    switch (g) {                                                                 \
    case 1: decode_pv512(1, NV, p, nb, v, hd, c, acc); break;                    \
    case 2: decode_pv512(2, NV, p, nb, v, hd, c, acc); break;                    \
    case 3: decode_pv512(3, NV, p, nb, v, hd, c, acc); break;                    \
    default: decode_pv512(4, NV, p, nb, v, hd, c, acc); break;                   \
    }

AVX512 void ck512_decode_pv(const float *p, size_t g, size_t nb, const float *v, size_t hd, float *acc) {
    for (size_t c = 0; c < hd; c += 64) {
        switch ((hd - c) >= 64 ? 4 : (hd - c) / 16) {
        case 4: DECODE_PV_G(4) break;
        case 3: DECODE_PV_G(3) break;
        case 2: DECODE_PV_G(2) break;
        default: DECODE_PV_G(1) break;
        }
    }
}
