/* Transformer kernels: exp, online-softmax block update, SiLU gate, RMSNorm, RoPE, the fused attention tile.
   Each has a portable C version (the tile: none, callers use BLAS tiles) and an AVX2+FMA version here, and an
   AVX-512 version in kernels_avx512.c; the un-suffixed entry points run the active path (cpu.c). */
#include "CKernels.h"
#include "cpu.h"
#include "tile.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>


/* ---- exp ---- */
#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3365478515625f   /* below this exp underflows to a subnormal; result flushed to 0 */
#define LOG2E 1.44269504088896341f
#define LN2 0.693147180559945309f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define P0 1.9875691500E-4f
#define P1 1.3981999507E-3f
#define P2 8.3334519073E-3f
#define P3 4.1665795894E-2f
#define P4 1.6666665459E-1f
#define P5 5.0000001201E-1f

static inline float exp_scalar(float x) {
    if (x > EXP_HI) return INFINITY;
    if (x < EXP_LO) return 0.0f;
    float n = floorf(x * LOG2E + 0.5f);
    float r = x - n * LN2_HI - n * LN2_LO;
    float r2 = r * r;
    float p = ((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5;
    p = p * r2 + r + 1.0f;
    return ldexpf(p, (int)n);
}

__attribute__((target("avx2,fma")))
static inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(EXP_HI), lo = _mm256_set1_ps(EXP_LO);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n: n in [-126, 128]; split so that n = 128 does not overflow the exponent field. */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i half = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    y = _mm256_andnot_ps(under, y);
    return _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), over);
}

__attribute__((target("avx2,fma")))
static void exp_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp256(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = exp_scalar(x[i]);
}

void ck_exp_on(int path, const float *x, float *y, size_t n) {
    if (path == CK_PATH_AVX512) { ck512_exp(x, y, n); return; }
    if (path == CK_PATH_AVX2) { exp_avx2(x, y, n); return; }
    for (size_t i = 0; i < n; i++) y[i] = exp_scalar(x[i]);
}

void ck_exp(const float *x, float *y, size_t n) { ck_exp_on(ck_path_current(), x, y, n); }

/* ---- online softmax block ---- */
static inline void clamp_range(int32_t lo, int32_t hi, size_t cols, size_t *a, size_t *b) {
    if (lo < 0) lo = 0;
    if (lo > (int32_t)cols) lo = (int32_t)cols;
    if (hi > (int32_t)cols) hi = (int32_t)cols;
    if (hi < lo) hi = lo;
    *a = (size_t)lo; *b = (size_t)hi;
}

__attribute__((target("avx2,fma")))
static float row_max_avx2(const float *s, size_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + i));
    float buf[8]; _mm256_storeu_ps(buf, m);
    float r = buf[0];
    for (int k = 1; k < 8; k++) r = buf[k] > r ? buf[k] : r;
    for (; i < n; i++) r = s[i] > r ? s[i] : r;
    return r;
}

__attribute__((target("avx2,fma")))
static float exp_sub_sum_avx2(float *s, size_t n, float mx) {
    __m256 acc = _mm256_setzero_ps(), vm = _mm256_set1_ps(mx);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float buf[8]; _mm256_storeu_ps(buf, acc);
    float sum = ((buf[0] + buf[1]) + (buf[2] + buf[3])) + ((buf[4] + buf[5]) + (buf[6] + buf[7]));
    for (; i < n; i++) { float e = exp_scalar(s[i] - mx); s[i] = e; sum += e; }
    return sum;
}

static float row_max_c(const float *s, size_t n) {
    float r = -INFINITY;
    for (size_t i = 0; i < n; i++) r = s[i] > r ? s[i] : r;
    return r;
}

static float exp_sub_sum_c(float *s, size_t n, float mx) {
    float sum = 0;
    for (size_t i = 0; i < n; i++) { float e = exp_scalar(s[i] - mx); s[i] = e; sum += e; }
    return sum;
}

void ck_softmax_block(float *S, size_t rows, size_t cols, size_t ld, const int32_t *lo, const int32_t *hi,
                      float *m, float *l, float *corr) {
    ck_softmax_block_on(ck_path_current(), S, rows, cols, ld, lo, hi, m, l, corr);
}

void ck_softmax_block_on(int path, float *S, size_t rows, size_t cols, size_t ld, const int32_t *lo,
                         const int32_t *hi, float *m, float *l, float *corr) {
    for (size_t r = 0; r < rows; r++) {
        float *s = S + r * ld;
        size_t a, b;
        clamp_range(lo[r], hi[r], cols, &a, &b);
        for (size_t j = 0; j < a; j++) s[j] = 0;
        for (size_t j = b; j < cols; j++) s[j] = 0;
        if (b == a) { corr[r] = 1.0f; continue; }
        float bmax = path == CK_PATH_AVX512 ? ck512_row_max(s + a, b - a)
                   : path == CK_PATH_AVX2 ? row_max_avx2(s + a, b - a) : row_max_c(s + a, b - a);
        float mold = m[r];
        float mnew = bmax > mold ? bmax : mold;
        if (mnew == -INFINITY) { /* every score -inf: contributes nothing */
            for (size_t j = a; j < b; j++) s[j] = 0;
            corr[r] = 1.0f;
            continue;
        }
        float c = (mold == -INFINITY) ? 0.0f : exp_scalar(mold - mnew);
        float sum = path == CK_PATH_AVX512 ? ck512_exp_sub_sum(s + a, b - a, mnew)
                  : path == CK_PATH_AVX2 ? exp_sub_sum_avx2(s + a, b - a, mnew) : exp_sub_sum_c(s + a, b - a, mnew);
        l[r] = l[r] * c + sum;
        m[r] = mnew;
        corr[r] = (mold == -INFINITY) ? 0.0f : c;
    }
}

/* ---- SiLU gate ---- */
__attribute__((target("avx2,fma")))
static void silu_mul_avx2(float *g, const float *u, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp256(_mm256_sub_ps(zero, x));
        __m256 y = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(y, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + exp_scalar(-g[i])) * u[i];
}

void ck_silu_mul(float *gate, const float *up, size_t n) { ck_silu_mul_on(ck_path_current(), gate, up, n); }

void ck_silu_mul_on(int path, float *gate, const float *up, size_t n) {
    if (path == CK_PATH_AVX512) { ck512_silu_mul(gate, up, n); return; }
    if (path == CK_PATH_AVX2) { silu_mul_avx2(gate, up, n); return; }
    for (size_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + exp_scalar(-gate[i])) * up[i];
}

/* ---- RMSNorm ---- */
__attribute__((target("avx2,fma")))
static float sumsq_avx2(const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    a0 = _mm256_add_ps(a0, a1);
    float buf[8]; _mm256_storeu_ps(buf, a0);
    float s = ((buf[0] + buf[1]) + (buf[2] + buf[3])) + ((buf[4] + buf[5]) + (buf[6] + buf[7]));
    for (; i < n; i++) s += x[i] * x[i];
    return s;
}

void ck_rmsnorm(const float *x, const float *w, float *y, size_t rows, size_t n, float eps) {
    ck_rmsnorm_on(ck_path_current(), x, w, y, rows, n, eps);
}

void ck_rmsnorm_on(int path, const float *x, const float *w, float *y, size_t rows, size_t n, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        if (path == CK_PATH_AVX512) { ck512_rmsnorm_row(xr, w, yr, n, eps); continue; }
        float ss;
        if (path == CK_PATH_AVX2) ss = sumsq_avx2(xr, n);
        else { ss = 0; for (size_t i = 0; i < n; i++) ss += xr[i] * xr[i]; }
        float inv = 1.0f / sqrtf(ss / (float)n + eps);
        for (size_t i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}

/* ---- RoPE ---- */
static void rope_row_c(float *v, size_t heads, size_t hd, const float *c, const float *s, size_t rd, float sign) {
    size_t half = rd / 2;
    for (size_t h = 0; h < heads; h++, v += hd)
        for (size_t j = 0; j < half; j++) {
            float x1 = v[j], x2 = v[j + half];
            float a = x1 * c[j], b = x2 * (sign * s[j]);
            float e = x2 * c[j + half], f = x1 * (sign * s[j + half]);
            v[j] = a - b;
            v[j + half] = e + f;
        }
}

__attribute__((target("avx2,fma")))
static void rope_row_avx2(float *v, size_t heads, size_t hd, const float *c, const float *s, size_t rd, float sign) {
    size_t half = rd / 2, j0 = half / 8 * 8;
    __m256 sg = _mm256_set1_ps(sign);
    for (size_t h = 0; h < heads; h++, v += hd) {
        for (size_t j = 0; j < j0; j += 8) {
            __m256 x1 = _mm256_loadu_ps(v + j), x2 = _mm256_loadu_ps(v + j + half);
            __m256 s1 = _mm256_mul_ps(sg, _mm256_loadu_ps(s + j)), s2 = _mm256_mul_ps(sg, _mm256_loadu_ps(s + j + half));
            __m256 a = _mm256_mul_ps(x1, _mm256_loadu_ps(c + j)), b = _mm256_mul_ps(x2, s1);
            __m256 e = _mm256_mul_ps(x2, _mm256_loadu_ps(c + j + half)), f = _mm256_mul_ps(x1, s2);
            _mm256_storeu_ps(v + j, _mm256_sub_ps(a, b));
            _mm256_storeu_ps(v + j + half, _mm256_add_ps(e, f));
        }
        for (size_t j = j0; j < half; j++) {
            float x1 = v[j], x2 = v[j + half];
            float a = x1 * c[j], b = x2 * (sign * s[j]);
            float e = x2 * c[j + half], f = x1 * (sign * s[j + half]);
            v[j] = a - b;
            v[j + half] = e + f;
        }
    }
}

void ck_rope_on(int path, float *base, size_t rows, size_t stride, size_t heads, size_t hd, const float *cos,
                const float *sin, size_t rd, float sin_sign) {
    for (size_t t = 0; t < rows; t++) {
        float *v = base + t * stride;
        const float *c = cos + t * rd, *s = sin + t * rd;
        if (path == CK_PATH_AVX512) ck512_rope_row(v, heads, hd, c, s, rd, sin_sign);
        else if (path == CK_PATH_AVX2) rope_row_avx2(v, heads, hd, c, s, rd, sin_sign);
        else rope_row_c(v, heads, hd, c, s, rd, sin_sign);
    }
}

void ck_rope(float *base, size_t rows, size_t stride, size_t heads, size_t hd, const float *cos, const float *sin,
             size_t rd, float sin_sign) {
    ck_rope_on(ck_path_current(), base, rows, stride, heads, hd, cos, sin, rd, sin_sign);
}

/* ---- fused attention tile ----
   Layout (all f32):
     QT  hd x Rp   queries transposed and pre-scaled, Rp = rows rounded up to 16 (padding columns 0)
     ST  kb x Rp   scores of one key block, transposed (key-major), overwritten with P
     O   rows x hd running output (unnormalised)
   Keys and values come packed (ck_attention_pack, once per head and call): keys in panels of 6 ([d][6]), values
   in strips of 16 channels ([key][16]). S^T = K_block · Q^T uses a 6-key x 16-query register tile (K broadcast
   from its panel, Q^T loaded as vectors); the online softmax runs down the key axis, so every max/sum is a
   vertical vector operation; O += P·V uses a 6-query x 16-channel register tile (P broadcast from ST, V loaded
   from its strip). */



size_t ck_attention_scratch(size_t rows, size_t hd, size_t kb) {
    size_t rp = (rows + 15) / 16 * 16, ld = padded_stride(rp);
    return hd * ld + round6(kb) * ld + rows * hd + 3 * rp + 2 * rp /* int32 ranges */ + 64;
}

int ck_attention_fused_available_on(int path, size_t hd) {
    return (path == CK_PATH_AVX2 || path == CK_PATH_AVX512) && ck_path_supported(path) && hd % 8 == 0 && hd > 0;
}

int ck_attention_fused_available(size_t hd) { return ck_attention_fused_available_on(ck_path_current(), hd); }


/* ST[j][c..c+16] = sum_d K[j][d] * QT[d][c..c+16] for the 6 keys of one packed panel kp[d][6]. */
__attribute__((target("avx2,fma"), always_inline))
static inline void qk_tile(const float *kp, size_t hd, const float *qt, size_t ld, float *st) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (size_t d = 0; d < hd; d++, kp += 6, qt += ld) {
        __m256 b0 = _mm256_loadu_ps(qt), b1 = _mm256_loadu_ps(qt + 8), a;
        a = _mm256_broadcast_ss(kp + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(kp + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(kp + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(kp + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(kp + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(kp + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    _mm256_storeu_ps(st + 0 * ld, c00); _mm256_storeu_ps(st + 0 * ld + 8, c01);
    _mm256_storeu_ps(st + 1 * ld, c10); _mm256_storeu_ps(st + 1 * ld + 8, c11);
    _mm256_storeu_ps(st + 2 * ld, c20); _mm256_storeu_ps(st + 2 * ld + 8, c21);
    _mm256_storeu_ps(st + 3 * ld, c30); _mm256_storeu_ps(st + 3 * ld + 8, c31);
    _mm256_storeu_ps(st + 4 * ld, c40); _mm256_storeu_ps(st + 4 * ld + 8, c41);
    _mm256_storeu_ps(st + 5 * ld, c50); _mm256_storeu_ps(st + 5 * ld + 8, c51);
}

/* O[r][c..c+8*NV] = O[r][..] * corr[r] + sum_j P[j][r] * V[j][c..] for MR rows r (MR <= 6), NV in {1, 2}. */
__attribute__((target("avx2,fma"), always_inline))
static inline void pv_tile(int mr, int nv, const float *pt, size_t ld, const float *v, size_t hd, size_t nb,
                           const float *corr, float *o) {
    __m256 c0[6], c1[6];
    for (int i = 0; i < 6; i++) {
        if (i < mr) {
            __m256 s = _mm256_broadcast_ss(corr + i);
            c0[i] = _mm256_mul_ps(_mm256_loadu_ps(o + i * hd), s);
            c1[i] = nv > 1 ? _mm256_mul_ps(_mm256_loadu_ps(o + i * hd + 8), s) : _mm256_setzero_ps();
        } else { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    }
    for (size_t j = 0; j < nb; j++) {
        __m256 b0 = _mm256_loadu_ps(v + j * 16);
        __m256 b1 = nv > 1 ? _mm256_loadu_ps(v + j * 16 + 8) : _mm256_setzero_ps();
        for (int i = 0; i < 6; i++) {
            if (i < mr) {
                __m256 a = _mm256_broadcast_ss(pt + j * ld + i);
                c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
                if (nv > 1) c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
            }
        }
    }
    for (int i = 0; i < 6; i++) {
        if (i < mr) {
            _mm256_storeu_ps(o + i * hd, c0[i]);
            if (nv > 1) _mm256_storeu_ps(o + i * hd + 8, c1[i]);
        }
    }
}

/* ST (nb rounded up to 6 rows) = K_block · Q^T, K_block packed in panels of 6 keys, kp[panel][d][6] (zero keys
   past the packed count), so the register tile reads its 6 broadcasts from one running pointer. */
__attribute__((target("avx2,fma")))
static void qk_block(const float *kp, size_t hd, size_t nb, const float *qt, size_t rp, size_t ld, float *st) {
    size_t panels = (nb + 5) / 6;
    for (size_t p = 0; p < panels; p++)
        for (size_t c = 0; c < rp; c += 16) qk_tile(kp + p * hd * 6, hd, qt + c, ld, st + p * 6 * ld + c);
}

/* One channel strip (NV vectors wide) for all rows, in 6-row register tiles plus the remainder. */
__attribute__((target("avx2,fma"), always_inline))
static inline void pv_strip(int nv, const float *pt, size_t ld, size_t rows, const float *vp, size_t hd, size_t nb,
                            const float *corr, float *o) {
    size_t r = 0;
    for (; r + 6 <= rows; r += 6) pv_tile(6, nv, pt + r, ld, vp, hd, nb, corr + r, o + r * hd);
    switch (rows - r) {
    case 5: pv_tile(5, nv, pt + r, ld, vp, hd, nb, corr + r, o + r * hd); break;
    case 4: pv_tile(4, nv, pt + r, ld, vp, hd, nb, corr + r, o + r * hd); break;
    case 3: pv_tile(3, nv, pt + r, ld, vp, hd, nb, corr + r, o + r * hd); break;
    case 2: pv_tile(2, nv, pt + r, ld, vp, hd, nb, corr + r, o + r * hd); break;
    case 1: pv_tile(1, nv, pt + r, ld, vp, hd, nb, corr + r, o + r * hd); break;
    default: break;
    }
}

/* O (rows x hd) = O·corr + P·V for one key block: channel strips of 16 outside, each a packed nb x 16 panel
   vp[strip][j][16] (V's own rows are 4·hd bytes apart, which maps a strip onto few L1 sets), register tiles of
   6 rows inside. */
__attribute__((target("avx2,fma")))
static void pv_block(const float *pt, size_t ld, size_t rows, const float *vp, size_t strip_stride, size_t hd,
                     size_t nb, const float *corr, float *o) {
    for (size_t c = 0; c < hd; c += 16, vp += strip_stride) {
        if (c + 16 <= hd) pv_strip(2, pt, ld, rows, vp, hd, nb, corr, o + c);
        else pv_strip(1, pt, ld, rows, vp, hd, nb, corr, o + c);
    }
}

/* Packed block: K panels (kb6 x hd floats), then ceil(hd/16) V strips of kb6 x 16 floats. */
static size_t block_floats(size_t hd, size_t kb) { return round6(kb) * hd + (hd + 15) / 16 * round6(kb) * 16; }

size_t ck_attention_packed_size(size_t blocks, size_t hd, size_t kb) { return blocks * block_floats(hd, kb); }

void ck_attention_pack(const float *k, const float *v, size_t keys, size_t hd, size_t kb, size_t b0, size_t b1,
                       float *packed) {
    size_t kb6 = round6(kb), bs = block_floats(hd, kb);
    for (size_t b = b0; b < b1; b++) {
        float *kp = packed + (b - b0) * bs, *vp = kp + kb6 * hd;
        size_t first = b * kb, nb = first >= keys ? 0 : (keys - first < kb ? keys - first : kb);
        const float *kb_ = k + first * hd, *vb = v + first * hd;
        for (size_t p = 0; p < kb6 / 6; p++) {
            float *dst = kp + p * hd * 6;
            for (size_t i = 0; i < 6; i++) {
                size_t j = p * 6 + i;
                if (j < nb) { const float *src = kb_ + j * hd; for (size_t d = 0; d < hd; d++) dst[d * 6 + i] = src[d]; }
                else for (size_t d = 0; d < hd; d++) dst[d * 6 + i] = 0;
            }
        }
        for (size_t c = 0; c < hd; c += 16, vp += kb6 * 16) {
            size_t w = hd - c < 16 ? hd - c : 16;
            for (size_t j = 0; j < kb6; j++)
                for (size_t e = 0; e < 16; e++) vp[j * 16 + e] = (j < nb && e < w) ? vb[j * hd + c + e] : 0;
        }
    }
}

/* Online-softmax step down the key axis of ST (nb keys x rp columns), in base 2 (scores carry a log2(e) factor).
   Column r may use keys j with lo[r] <= j < hi[r] (block-relative). Updates m, l; writes corr; overwrites ST
   with P (exactly 0 where masked). */
__attribute__((target("avx2,fma")))
static void softmax_block_t(float *st, size_t nb, size_t rp, size_t ld, const int32_t *lo, const int32_t *hi,
                            float *m, float *l, float *corr) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (size_t c = 0; c < rp; c += 8) {
        __m256i vlo = _mm256_loadu_si256((const __m256i *)(lo + c));
        __m256i vhi = _mm256_loadu_si256((const __m256i *)(hi + c));
        int full = block_visible8(lo, hi, c, nb);
        __m256 mx = ninf, mx1 = ninf;
        size_t j = 0;
        if (full) {
            for (; j + 2 <= nb; j += 2) {
                mx = _mm256_max_ps(mx, _mm256_loadu_ps(st + j * ld + c));
                mx1 = _mm256_max_ps(mx1, _mm256_loadu_ps(st + (j + 1) * ld + c));
            }
            if (j < nb) mx = _mm256_max_ps(mx, _mm256_loadu_ps(st + j * ld + c));
            mx = _mm256_max_ps(mx, mx1);
        } else {
            for (; j < nb; j++) {
                __m256i jv = _mm256_set1_epi32((int32_t)j);
                /* invalid: j < lo or j >= hi */
                __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi32(vlo, jv), _mm256_cmpgt_epi32(_mm256_add_epi32(jv, _mm256_set1_epi32(1)), vhi));
                __m256 s = _mm256_blendv_ps(_mm256_loadu_ps(st + j * ld + c), ninf, _mm256_castsi256_ps(bad));
                _mm256_storeu_ps(st + j * ld + c, s);
                mx = _mm256_max_ps(mx, s);
            }
        }
        __m256 mold = _mm256_loadu_ps(m + c);
        __m256 mnew = _mm256_max_ps(mold, mx);
        /* Columns that have seen no visible key yet: keep corr 1 and subtract 0 (all their P are 0). */
        __m256 none = _mm256_cmp_ps(mnew, ninf, _CMP_EQ_OQ);
        __m256 msafe = _mm256_blendv_ps(mnew, _mm256_setzero_ps(), none);
        __m256 cr = _mm256_blendv_ps(exp2_nonpos(_mm256_sub_ps(mold, msafe)), _mm256_setzero_ps(),
                                     _mm256_cmp_ps(mold, ninf, _CMP_EQ_OQ));
        cr = _mm256_blendv_ps(cr, _mm256_set1_ps(1.0f), none);
        __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
        j = 0;
        if (full) {
            for (; j + 2 <= nb; j += 2) {
                __m256 e0 = exp2_nonpos(_mm256_sub_ps(_mm256_loadu_ps(st + j * ld + c), msafe));
                __m256 e1 = exp2_nonpos(_mm256_sub_ps(_mm256_loadu_ps(st + (j + 1) * ld + c), msafe));
                _mm256_storeu_ps(st + j * ld + c, e0);
                _mm256_storeu_ps(st + (j + 1) * ld + c, e1);
                sum0 = _mm256_add_ps(sum0, e0);
                sum1 = _mm256_add_ps(sum1, e1);
            }
        }
        for (; j < nb; j++) {
            __m256 s = _mm256_loadu_ps(st + j * ld + c);
            __m256 e0 = _mm256_andnot_ps(_mm256_cmp_ps(s, ninf, _CMP_EQ_OQ), exp2_nonpos(_mm256_sub_ps(s, msafe)));
            _mm256_storeu_ps(st + j * ld + c, e0);
            sum0 = _mm256_add_ps(sum0, e0);
        }
        _mm256_storeu_ps(l + c, _mm256_fmadd_ps(_mm256_loadu_ps(l + c), cr, _mm256_add_ps(sum0, sum1)));
        _mm256_storeu_ps(m + c, mnew);
        _mm256_storeu_ps(corr + c, cr);
    }
}

const ck_tile_ops ck_tile_ops_avx2 = {qk_block, softmax_block_t, pv_block};

void ck_attention_tile(const float *q, size_t q_stride, size_t queries, size_t group, size_t hd, float scale,
                       const float *packed, size_t first_block, const int32_t *key_lo, const int32_t *key_hi,
                       size_t kb, float *out, size_t out_stride, float *lse, size_t lse_stride, float *scratch) {
    ck_attention_tile_on(ck_path_current(), q, q_stride, queries, group, hd, scale, packed, first_block, key_lo,
                         key_hi, kb, out, out_stride, lse, lse_stride, scratch);
}

/* The tile driver (plain C): transposes and scales the queries, walks the key blocks through the path's steps,
   normalises. */
void ck_attention_tile_on(int path, const float *q, size_t q_stride, size_t queries, size_t group, size_t hd,
                          float scale, const float *packed, size_t first_block, const int32_t *key_lo,
                          const int32_t *key_hi, size_t kb, float *out, size_t out_stride, float *lse,
                          size_t lse_stride, float *scratch) {
    const ck_tile_ops *ops = path == CK_PATH_AVX512 ? &ck_tile_ops_avx512 : &ck_tile_ops_avx2;
    size_t rows = queries * group, rp = (rows + 15) / 16 * 16, ld = padded_stride(rp);
    size_t kb6 = round6(kb), bs = block_floats(hd, kb);
    float *qt = scratch, *st = qt + hd * ld, *o = st + kb6 * ld;
    float *m = o + rows * hd, *l = m + rp, *corr = l + rp;
    int32_t *lo = (int32_t *)(corr + rp), *hi = lo + rp;
    /* Q^T, pre-scaled by scale·log2(e) (scores in base 2); row r = (query i, head j) = i * group + j. */
    const float qscale = scale * LOG2E;
    for (size_t i = 0; i < queries; i++)
        for (size_t j = 0; j < group; j++) {
            const float *src = q + i * q_stride + j * hd;
            size_t r = i * group + j;
            for (size_t d = 0; d < hd; d++) qt[d * ld + r] = src[d] * qscale;
        }
    for (size_t d = 0; d < hd; d++)
        for (size_t r = rows; r < rp; r++) qt[d * ld + r] = 0;
    memset(o, 0, rows * hd * sizeof(float));
    int32_t kmin = INT32_MAX, kmax = 0;
    for (size_t i = 0; i < queries; i++) {
        int32_t a = key_lo[i], b = key_hi[i];
        if (b < a) b = a;
        if (b > a) { if (a < kmin) kmin = a; if (b > kmax) kmax = b; }
    }
    for (size_t r = 0; r < rp; r++) { m[r] = -INFINITY; l[r] = 0; }
    for (size_t r = rows; r < rp; r++) { lo[r] = 0; hi[r] = 0; }  /* padding columns see no key */
    int32_t kstart = kmin == INT32_MAX ? kmax : kmin / (int32_t)kb * (int32_t)kb;
    for (int32_t k0 = kstart; k0 < kmax; k0 += (int32_t)kb) {
        size_t nb = (size_t)(kmax - k0) < kb ? (size_t)(kmax - k0) : kb;
        const float *kp = packed + ((size_t)k0 / kb - first_block) * bs, *vp = kp + kb6 * hd;
        for (size_t i = 0; i < queries; i++) {
            int32_t a = key_lo[i] - k0, b = key_hi[i] - k0;
            if (b < a) b = a;
            for (size_t j = 0; j < group; j++) { lo[i * group + j] = a; hi[i * group + j] = b; }
        }
        ops->qk(kp, hd, nb, qt, rp, ld, st);
        ops->softmax(st, nb, rp, ld, lo, hi, m, l, corr);
        ops->pv(st, ld, rows, vp, kb6 * 16, hd, nb, corr, o);
    }
    for (size_t i = 0; i < queries; i++)
        for (size_t j = 0; j < group; j++) {
            size_t r = i * group + j;
            float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
            float *dst = out + i * out_stride + j * hd;
            for (size_t d = 0; d < hd; d++) dst[d] = o[r * hd + d] * inv;
            if (lse) lse[i * lse_stride + j] = l[r] > 0 ? m[r] * LN2 + logf(l[r]) : -INFINITY;
        }
}
