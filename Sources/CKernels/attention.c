/* Transformer kernels: exp, online-softmax block update, SiLU gate, RMSNorm.
   Each has a portable C version and an AVX2+FMA version chosen once at run time. */
#include "CKernels.h"
#include <math.h>
#include <immintrin.h>

static int have_avx2_fma(void) {
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        level = (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
    }
    return level;
}

/* ---- exp ---- */
#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3365478515625f   /* below this exp underflows to a subnormal; result flushed to 0 */
#define LOG2E 1.44269504088896341f
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

void ck_exp(const float *x, float *y, size_t n) {
    if (have_avx2_fma()) { exp_avx2(x, y, n); return; }
    for (size_t i = 0; i < n; i++) y[i] = exp_scalar(x[i]);
}

/* ---- online softmax block ---- */
static inline void clamp_range(int32_t lo, int32_t hi, size_t cols, size_t *a, size_t *b) {
    if (lo < 0) lo = 0;
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
    int fast = have_avx2_fma();
    for (size_t r = 0; r < rows; r++) {
        float *s = S + r * ld;
        size_t a, b;
        clamp_range(lo[r], hi[r], cols, &a, &b);
        for (size_t j = 0; j < a; j++) s[j] = 0;
        for (size_t j = b; j < cols; j++) s[j] = 0;
        if (b == a) { corr[r] = 1.0f; continue; }
        float bmax = fast ? row_max_avx2(s + a, b - a) : row_max_c(s + a, b - a);
        float mold = m[r];
        float mnew = bmax > mold ? bmax : mold;
        if (mnew == -INFINITY) { /* every score -inf: contributes nothing */
            for (size_t j = a; j < b; j++) s[j] = 0;
            corr[r] = 1.0f;
            continue;
        }
        float c = (mold == -INFINITY) ? 0.0f : exp_scalar(mold - mnew);
        float sum = fast ? exp_sub_sum_avx2(s + a, b - a, mnew) : exp_sub_sum_c(s + a, b - a, mnew);
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

void ck_silu_mul(float *gate, const float *up, size_t n) {
    if (have_avx2_fma()) { silu_mul_avx2(gate, up, n); return; }
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
    int fast = have_avx2_fma();
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float ss;
        if (fast) ss = sumsq_avx2(xr, n);
        else { ss = 0; for (size_t i = 0; i < n; i++) ss += xr[i] * xr[i]; }
        float inv = 1.0f / sqrtf(ss / (float)n + eps);
        for (size_t i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}
