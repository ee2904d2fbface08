/* Optimizer kernels: the AdamW element update and sums of squares for gradient clipping.
   Each has a portable C version and an AVX2+FMA version chosen once at run time; both give identical results
   (the same fused multiply-adds, correctly rounded sqrt and division, the same summation order). */
#include "CKernels.h"
#include "cpu.h"
#include <math.h>
#include <immintrin.h>

static int optimizer_avx2(void) { return ck_cpu_avx2_fma(); }

/* One element of the update (also the vector loop's tail). */
static inline void adamw_one(float *p, const float *g, float *m, float *v, size_t i, const ck_adamw_step *k,
                             int apply_decay) {
    float gi = g[i], mi = m[i];
    float pi = apply_decay ? p[i] * k->decay : p[i];
    float diff = gi - mi;
    float mn = fmaf(k->lerp_weight, diff, k->lerp_from_end ? gi : mi);
    float scaled = v[i] * k->beta2;
    float vn = fmaf(k->one_minus_beta2 * gi, gi, scaled);
    float denom = sqrtf(vn) / k->bias_correction2_sqrt + k->eps;
    float update = (k->negative_step_size * mn) / denom;
    p[i] = pi + update;
    m[i] = mn;
    v[i] = vn;
}

static void adamw_generic(float *p, const float *g, float *m, float *v, size_t n, const ck_adamw_step *k,
                          int apply_decay) {
    for (size_t i = 0; i < n; i++) adamw_one(p, g, m, v, i, k, apply_decay);
}

__attribute__((target("avx2,fma")))
static void adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, const ck_adamw_step *k,
                       int apply_decay) {
    const __m256 decay = _mm256_set1_ps(k->decay), w = _mm256_set1_ps(k->lerp_weight);
    const __m256 b2 = _mm256_set1_ps(k->beta2), c2 = _mm256_set1_ps(k->one_minus_beta2);
    const __m256 bc2 = _mm256_set1_ps(k->bias_correction2_sqrt), eps = _mm256_set1_ps(k->eps);
    const __m256 step = _mm256_set1_ps(k->negative_step_size);
    const int from_end = k->lerp_from_end;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i), mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
        __m256 pi = _mm256_loadu_ps(p + i);
        if (apply_decay) pi = _mm256_mul_ps(pi, decay);
        __m256 mn = _mm256_fmadd_ps(w, _mm256_sub_ps(gi, mi), from_end ? gi : mi);
        __m256 vn = _mm256_fmadd_ps(_mm256_mul_ps(c2, gi), gi, _mm256_mul_ps(vi, b2));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vn), bc2), eps);
        pi = _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(step, mn), denom));
        _mm256_storeu_ps(p + i, pi);
        _mm256_storeu_ps(m + i, mn);
        _mm256_storeu_ps(v + i, vn);
    }
    for (; i < n; i++) adamw_one(p, g, m, v, i, k, apply_decay);
}

void ck_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const ck_adamw_step *k,
                     int apply_decay) {
    if (optimizer_avx2()) adamw_avx2(p, g, m, v, n, k, apply_decay);
    else adamw_generic(p, g, m, v, n, k, apply_decay);
}

/* Sixteen f64 lanes: element i goes to lane i % 16 (x·x of an f32 is exact in f64, so fma and mul+add agree);
   lanes are added pairwise at the end, then the tail in order. */
static double finish_lanes(const double *lane, const float *x, size_t i, size_t n) {
    double s8[8], s4[4];
    for (int j = 0; j < 8; j++) s8[j] = lane[j] + lane[j + 8];
    for (int j = 0; j < 4; j++) s4[j] = s8[j] + s8[j + 4];
    double s = (s4[0] + s4[2]) + (s4[1] + s4[3]);
    for (; i < n; i++) { double a = x[i]; s += a * a; }
    return s;
}

static double sum_squares_generic(const float *x, size_t n) {
    double lane[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) { double a = x[i + j]; lane[j] += a * a; }
    return finish_lanes(lane, x, i, n);
}

__attribute__((target("avx2,fma")))
static double sum_squares_avx2(const float *x, size_t n) {
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 4; j++) {
            __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * j));
            acc[j] = _mm256_fmadd_pd(a, a, acc[j]);
        }
    double lane[16];
    for (int j = 0; j < 4; j++) _mm256_storeu_pd(lane + 4 * j, acc[j]);
    return finish_lanes(lane, x, i, n);
}

double ck_sum_squares(const float *x, size_t n) {
    return optimizer_avx2() ? sum_squares_avx2(x, n) : sum_squares_generic(x, n);
}
