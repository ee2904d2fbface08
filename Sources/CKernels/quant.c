/* Block-quantized weights for decoding: Q8_0, Q4_0 and Q4_1 matrix-vector products on integer dot products.
   Layout (ours, split for vector loads): a matrix of `rows` x `k` (k a multiple of 32) is
     Q8_0: qs int8 [rows][k], d float [rows][k/32]          value = qs * d
     Q4_0: qs uint8 [rows][k/2], d float [rows][k/32]       block b of row r: byte i of its 16 holds elements
           i (low nibble) and i + 16 (high nibble), value = (nibble - 8) * d (GGUF Q4_0's element order)
     Q4_1: as Q4_0 plus m float [rows][k/32]: value = nibble * d + m (GGUF Q4_1)
   Activations are quantized per block of 32 to int8 (Q8_0 rule: d = max|x|/127, q = round(x/d), so |q| <= 127),
   and each block's product is an exact integer dot product scaled by d_w·d_x in f32.
   Paths: portable C; AVX2 (maddubs: |w| as u8 times x·sign(w) as s8, pairs summed with madd); AVX-512 with VNNI
   (vpdpbusd; without VNNI the AVX-512 path runs the AVX2 kernel). */
#include "CKernels.h"
#include "cpu.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

/* x rounded to the nearest IEEE half (ties to even), as GGUF stores every block scale and minimum
   (ggml's GGML_FP32_TO_FP16): quantizing here and in llama.cpp then gives the same dequantized values. */
static inline float round_to_f16(float x) { return (float)(_Float16)x; }

void ck_q8_quantize(const float *x, size_t n, int8_t *q, float *d) {
    for (size_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
        float db = amax / 127.0f, inv = db > 0 ? 1.0f / db : 0.0f;
        d[b] = round_to_f16(db);
        for (int i = 0; i < 32; i++) q[b * 32 + i] = (int8_t)lrintf(xb[i] * inv);
    }
}

/* The first of the 32 values with the largest magnitude, sign kept (GGUF Q4_0's and Q5_0's scale: d = v / -8, -16). */
static float largest_magnitude(const float *xb) {
    float amax = 0, mx = 0;
    for (int i = 0; i < 32; i++) if (fabsf(xb[i]) > amax) { amax = fabsf(xb[i]); mx = xb[i]; }
    return mx;
}

void ck_q4_quantize(const float *x, size_t n, uint8_t *q, float *d) {
    for (size_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        /* GGUF Q4_0's rule: the value of largest magnitude maps to -8, d = max / -8. */
        float mx = largest_magnitude(xb);
        float db = mx / -8.0f, inv = db != 0 ? 1.0f / db : 0.0f;
        d[b] = round_to_f16(db);
        for (int i = 0; i < 16; i++) {
            int lo = (int)(xb[i] * inv + 8.5f), hi = (int)(xb[i + 16] * inv + 8.5f);
            lo = lo > 15 ? 15 : lo; hi = hi > 15 ? 15 : hi;
            q[b * 16 + i] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void ck_q4_1_quantize(const float *x, size_t n, uint8_t *q, float *d, float *m) {
    for (size_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float lo = xb[0], hi = xb[0];
        for (int i = 1; i < 32; i++) { lo = fminf(lo, xb[i]); hi = fmaxf(hi, xb[i]); }
        float db = (hi - lo) / 15.0f, inv = db != 0 ? 1.0f / db : 0.0f;
        d[b] = round_to_f16(db);
        m[b] = round_to_f16(lo);
        for (int i = 0; i < 16; i++) {
            int a = (int)((xb[i] - lo) * inv + 0.5f), c = (int)((xb[i + 16] - lo) * inv + 0.5f);
            a = a > 15 ? 15 : a; c = c > 15 ? 15 : c;
            q[b * 16 + i] = (uint8_t)(a | (c << 4));
        }
    }
}

/* ---- portable ---- */
static void q8_matvec_c(const int8_t *wq, const float *wd, size_t rows, size_t k, const int8_t *xq,
                        const float *xd, float *y) {
    size_t nb = k / 32;
    for (size_t r = 0; r < rows; r++) {
        const int8_t *w = wq + r * k;
        float acc = 0;
        for (size_t b = 0; b < nb; b++) {
            int32_t s = 0;
            for (int i = 0; i < 32; i++) s += (int32_t)w[b * 32 + i] * (int32_t)xq[b * 32 + i];
            acc += (float)s * (wd[r * nb + b] * xd[b]);
        }
        y[r] = acc;
    }
}

/* Q4_0 (wm NULL): nibbles offset by 8 in the integer dot; Q4_1: nibble dot, plus m·x_d·Σx per block. */
static void q4_matvec_c(const uint8_t *wq, const float *wd, const float *wm, size_t rows, size_t k,
                        const int8_t *xq, const float *xd, const int32_t *xs, float *y) {
    size_t nb = k / 32;
    int32_t off = wm ? 0 : 8;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *w = wq + r * k / 2;
        float acc = 0;
        for (size_t b = 0; b < nb; b++) {
            int32_t s = 0;
            for (int i = 0; i < 16; i++) {
                s += ((int32_t)(w[b * 16 + i] & 15) - off) * (int32_t)xq[b * 32 + i];
                s += ((int32_t)(w[b * 16 + i] >> 4) - off) * (int32_t)xq[b * 32 + i + 16];
            }
            acc += (float)s * (wd[r * nb + b] * xd[b]);
            if (wm) acc += wm[r * nb + b] * (xd[b] * (float)xs[b]);
        }
        y[r] = acc;
    }
}

/* ---- AVX2 ---- */
/* Sum of the 8 lanes. */
__attribute__((target("avx2,fma"), always_inline))
static inline float hsum256(__m256 a) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Sum of products of 32 u8 x 32 s8 as 8 int32 lanes. */
__attribute__((target("avx2,fma"), always_inline))
static inline __m256i dot_u8s8_avx2(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

__attribute__((target("avx2,fma")))
static void q8_matvec_avx2(const int8_t *wq, const float *wd, size_t rows, size_t k, const int8_t *xq,
                           const float *xd, float *y) {
    size_t nb = k / 32;
    for (size_t r = 0; r < rows; r++) {
        const int8_t *w = wq + r * k;
        const float *d = wd + r * nb;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        size_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + b * 32));
            __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + b * 32 + 32));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + b * 32));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + b * 32 + 32));
            __m256i p0 = dot_u8s8_avx2(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0));
            __m256i p1 = dot_u8s8_avx2(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1));
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d[b] * xd[b]), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d[b + 1] * xd[b + 1]), acc1);
        }
        for (; b < nb; b++) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + b * 32));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + b * 32));
            __m256i p0 = dot_u8s8_avx2(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0));
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d[b] * xd[b]), acc0);
        }
        y[r] = hsum256(_mm256_add_ps(acc0, acc1));
    }
}

/* Q4_0 block as 32 u8 nibbles in element order (low nibbles = elements 0..15, high = 16..31). */
__attribute__((target("avx2,fma"), always_inline))
static inline __m256i q4_unpack_avx2(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

/* Σ (nib − 8)·x = Σ nib·x − 8·Σ x: the activation block sums are taken once per call (xs). */
__attribute__((target("avx2,fma")))
static void q4_matvec_avx2(const uint8_t *wq, const float *wd, const float *wm, size_t rows, size_t k,
                           const int8_t *xq, const float *xd, const int32_t *xs, float *y) {
    size_t nb = k / 32;
    /* Q4_0: −8·Σx folded into lane 0 of the integer sums; Q4_1: m·x_d·Σx added per block in f32. */
    int32_t off = wm ? 0 : 8;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *w = wq + r * k / 2;
        const float *d = wd + r * nb;
        float extra = 0;
        if (wm) for (size_t b = 0; b < nb; b++) extra += wm[r * nb + b] * (xd[b] * (float)xs[b]);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        size_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            __m256i p0 = dot_u8s8_avx2(q4_unpack_avx2(w + b * 16), _mm256_loadu_si256((const __m256i *)(xq + b * 32)));
            __m256i p1 = dot_u8s8_avx2(q4_unpack_avx2(w + b * 16 + 16),
                                       _mm256_loadu_si256((const __m256i *)(xq + b * 32 + 32)));
            /* Lane 0 carries the −8·Σx correction, so the lane sum is the block's dot product. */
            p0 = _mm256_sub_epi32(p0, _mm256_setr_epi32(off * xs[b], 0, 0, 0, 0, 0, 0, 0));
            p1 = _mm256_sub_epi32(p1, _mm256_setr_epi32(off * xs[b + 1], 0, 0, 0, 0, 0, 0, 0));
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d[b] * xd[b]), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d[b + 1] * xd[b + 1]), acc1);
        }
        for (; b < nb; b++) {
            __m256i p0 = dot_u8s8_avx2(q4_unpack_avx2(w + b * 16), _mm256_loadu_si256((const __m256i *)(xq + b * 32)));
            p0 = _mm256_sub_epi32(p0, _mm256_setr_epi32(off * xs[b], 0, 0, 0, 0, 0, 0, 0));
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d[b] * xd[b]), acc0);
        }
        y[r] = hsum256(_mm256_add_ps(acc0, acc1)) + extra;
    }
}

/* ---- AVX-512 VNNI ---- */
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))

/* Per-lane scales for a 64-byte step covering blocks b and b+1: lanes 0..7 get s0, 8..15 get s1. */
VNNI static inline __m512 two_scales(float s0, float s1) {
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

VNNI static void q8_matvec_vnni(const int8_t *wq, const float *wd, size_t rows, size_t k, const int8_t *xq,
                                const float *xd, float *y) {
    size_t nb = k / 32;
    const __m512i zero = _mm512_setzero_si512();
    for (size_t r = 0; r < rows; r++) {
        const int8_t *w = wq + r * k;
        const float *d = wd + r * nb;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        size_t b = 0;
        for (; b + 4 <= nb; b += 4) {
            __m512i w0 = _mm512_loadu_si512(w + b * 32), w1 = _mm512_loadu_si512(w + b * 32 + 64);
            __m512i x0 = _mm512_loadu_si512(xq + b * 32), x1 = _mm512_loadu_si512(xq + b * 32 + 64);
            __m512i s0 = _mm512_mask_sub_epi8(x0, _mm512_movepi8_mask(w0), zero, x0);
            __m512i s1 = _mm512_mask_sub_epi8(x1, _mm512_movepi8_mask(w1), zero, x1);
            __m512i p0 = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(w0), s0);
            __m512i p1 = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(w1), s1);
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), two_scales(d[b] * xd[b], d[b + 1] * xd[b + 1]), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), two_scales(d[b + 2] * xd[b + 2], d[b + 3] * xd[b + 3]), acc1);
        }
        float tail = 0;
        for (; b < nb; b++) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + b * 32));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + b * 32));
            __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w0), _mm256_sign_epi8(x0, w0));
            tail += hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d[b] * xd[b])));
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + tail;
    }
}

/* Q4 on VNNI. The activations come permuted per pair of blocks (b, b+1) to [x_b 0..15, x_b+1 0..15, x_b 16..31,
   x_b+1 16..31] (q4_permute_pairs), so the 32 weight bytes of the pair unpack with one broadcast, one shift of the
   upper half by 4 and a mask; lanes 0-3 and 8-11 of vpdpbusd then hold block b, lanes 4-7 and 12-15 block b+1.
   The offset term (Q4_1's m, Q4_0's -8·d) is added per block as m·x_d·Σx in f32. A last odd block runs scalar on
   the unpermuted activations. */
static void q4_permute_pairs(const int8_t *xq, size_t k, int8_t *xp) {
    size_t nb = k / 32, b = 0;
    for (; b + 2 <= nb; b += 2)
        for (int i = 0; i < 16; i++) {
            xp[b * 32 + i] = xq[b * 32 + i];
            xp[b * 32 + 16 + i] = xq[(b + 1) * 32 + i];
            xp[b * 32 + 32 + i] = xq[b * 32 + 16 + i];
            xp[b * 32 + 48 + i] = xq[(b + 1) * 32 + 16 + i];
        }
    for (size_t i = b * 32; i < k; i++) xp[i] = xq[i];
}

VNNI static inline __m512i q4_pair_vnni(const uint8_t *p, __m512i shift, __m512i low4) {
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_and_si512(_mm512_srlv_epi64(v, shift), low4);
}

VNNI static void q4_matvec_vnni(const uint8_t *wq, const float *wd, const float *wm, size_t rows, size_t k,
                                const int8_t *xq, const int8_t *xp, const float *xd, const float *xsum, float *y) {
    size_t nb = k / 32;
    const __m512i zero = _mm512_setzero_si512(), low4 = _mm512_set1_epi8(15);
    const __m512i shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    const __m512i idx0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
    const __m512i idx1 = _mm512_add_epi32(idx0, _mm512_set1_epi32(2));
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *w = wq + r * k / 2;
        const float *d = wd + r * nb;
        /* xsum[b] = x_d·Σx of block b. */
        float extra = 0;
        if (wm) { for (size_t b = 0; b < nb; b++) extra += wm[r * nb + b] * xsum[b]; }
        else { for (size_t b = 0; b < nb; b++) extra += d[b] * xsum[b]; extra *= -8.0f; }
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        size_t b = 0;
        for (; b + 4 <= nb; b += 4) {
            __m512i p0 = _mm512_dpbusd_epi32(zero, q4_pair_vnni(w + b * 16, shift, low4), _mm512_loadu_si512(xp + b * 32));
            __m512i p1 = _mm512_dpbusd_epi32(zero, q4_pair_vnni(w + b * 16 + 32, shift, low4),
                                             _mm512_loadu_si512(xp + b * 32 + 64));
            __m512 s = _mm512_castps128_ps512(_mm_mul_ps(_mm_loadu_ps(d + b), _mm_loadu_ps(xd + b)));
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(idx0, s), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_permutexvar_ps(idx1, s), acc1);
        }
        for (; b + 2 <= nb; b += 2) {
            __m512i p0 = _mm512_dpbusd_epi32(zero, q4_pair_vnni(w + b * 16, shift, low4), _mm512_loadu_si512(xp + b * 32));
            __m512 s = _mm512_castps128_ps512(_mm_setr_ps(d[b] * xd[b], d[b + 1] * xd[b + 1], 0, 0));
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(idx0, s), acc0);
        }
        float total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + extra;
        for (; b < nb; b++) {
            int32_t s = 0;
            for (int i = 0; i < 16; i++)
                s += (int32_t)(w[b * 16 + i] & 15) * xq[b * 32 + i] + (int32_t)(w[b * 16 + i] >> 4) * xq[b * 32 + i + 16];
            total += (float)s * (d[b] * xd[b]);
        }
        y[r] = total;
    }
}

static void block_sums(const int8_t *xq, size_t k, int32_t *xs) {
    for (size_t b = 0; b < k / 32; b++) {
        int32_t s = 0;
        for (int i = 0; i < 32; i++) s += xq[b * 32 + i];
        xs[b] = s;
    }
}

void ck_q8_matvec_on(int path, const int8_t *wq, const float *wd, size_t rows, size_t k, const int8_t *xq,
                     const float *xd, float *y) {
    if (path == CK_PATH_AVX512 && ck_cpu_avx512_vnni()) q8_matvec_vnni(wq, wd, rows, k, xq, xd, y);
    else if (path >= CK_PATH_AVX2) q8_matvec_avx2(wq, wd, rows, k, xq, xd, y);
    else q8_matvec_c(wq, wd, rows, k, xq, xd, y);
}

void ck_q8_matvec(const int8_t *wq, const float *wd, size_t rows, size_t k, const int8_t *xq, const float *xd,
                  float *y) {
    ck_q8_matvec_on(ck_path_current(), wq, wd, rows, k, xq, xd, y);
}

void ck_q4_matvec_on(int path, const uint8_t *wq, const float *wd, const float *wm, size_t rows, size_t k,
                     const int8_t *xq, const float *xd, float *y) {
    int32_t sums[1024], *xs = sums;
    int32_t *heap = NULL;
    if (k / 32 > 1024) { heap = (int32_t *)malloc(k / 32 * sizeof(int32_t)); xs = heap; }
    block_sums(xq, k, xs);
    if (path == CK_PATH_AVX512 && ck_cpu_avx512_vnni()) {
        int8_t local[8192], *xp = k <= sizeof local ? local : (int8_t *)malloc(k);
        float fsum[256], *xsum = k / 32 <= 256 ? fsum : (float *)malloc(k / 32 * sizeof(float));
        q4_permute_pairs(xq, k, xp);
        for (size_t b = 0; b < k / 32; b++) xsum[b] = xd[b] * (float)xs[b];
        q4_matvec_vnni(wq, wd, wm, rows, k, xq, xp, xd, xsum, y);
        if (xp != local) free(xp);
        if (xsum != fsum) free(xsum);
    } else if (path >= CK_PATH_AVX2) q4_matvec_avx2(wq, wd, wm, rows, k, xq, xd, xs, y);
    else q4_matvec_c(wq, wd, wm, rows, k, xq, xd, xs, y);
    free(heap);
}

void ck_q4_matvec(const uint8_t *wq, const float *wd, const float *wm, size_t rows, size_t k, const int8_t *xq,
                  const float *xd, float *y) {
    ck_q4_matvec_on(ck_path_current(), wq, wd, wm, rows, k, xq, xd, y);
}

/* ---- Q5_0 values in Q8_0 storage ---- */
/* GGUF Q5_0's quantization (ggml's reference rule: d = v/-16 for the v of largest magnitude, code =
   min(31, trunc(x/d + 16.5))), each code stored as the int8 (code - 16) of a Q8_0 block with scale d: the same
   values as Q5_0, and Q8_0's integer kernels compute with them exactly. */
void ck_q5_0_quantize(const float *x, size_t n, int8_t *q, float *d) {
    for (size_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float mx = largest_magnitude(xb);
        float db = mx / -16.0f, inv = db != 0 ? 1.0f / db : 0.0f;
        d[b] = round_to_f16(db);
        for (int i = 0; i < 32; i++) {
            int c = (int)(xb[i] * inv + 16.5f);
            q[b * 32 + i] = (int8_t)((c > 31 ? 31 : c) - 16);
        }
    }
}

/* ---- Q4_K ---- */
/* Σ (s·q − m − x)² over one sub-block for codes chosen against scale s and offset m (value = s·q − m). */
static float q4k_codes(const float *x, float s, float m, uint8_t *q) {
    float inv = s > 0 ? 1.0f / s : 0.0f, err = 0;
    for (int i = 0; i < 32; i++) {
        int c = (int)lrintf((x[i] + m) * inv);
        c = c < 0 ? 0 : c > 15 ? 15 : c;
        q[i] = (uint8_t)c;
        float e = s * (float)c - m - x[i];
        err += e * e;
    }
    return err;
}

/* One sub-block's scale s ≥ 0 and offset m ≥ 0 (value = s·q − m, q in 0..15): start from the min/max fit
   (m = −min(0, min x), s = (max x + m)/15), then up to 4 least-squares refits of (s, m) given the codes, each
   kept only when it lowers the squared error. */
static void q4k_fit(const float *x, float *scale, float *offset) {
    float lo = 0, hi = x[0];
    for (int i = 0; i < 32; i++) { lo = fminf(lo, x[i]); hi = fmaxf(hi, x[i]); }
    float s = (hi - lo) / 15.0f, m = -lo;
    uint8_t q[32];
    float best = q4k_codes(x, s, m, q);
    for (int it = 0; it < 4 && s > 0; it++) {
        /* minimise Σ (s·q − m − x)² over s, m: normal equations of the 2×2 system. */
        double sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int i = 0; i < 32; i++) { sq += q[i]; sqq += (double)q[i] * q[i]; sx += x[i]; sqx += (double)q[i] * x[i]; }
        double det = 32 * sqq - sq * sq;
        if (det <= 0) break;
        double ns = (32 * sqx - sq * sx) / det, nm = (sq * sqx - sqq * sx) / det;
        if (ns <= 0) break;
        if (nm < 0) { nm = 0; ns = sqq > 0 ? sqx / sqq : 0; }
        uint8_t nq[32];
        float err = q4k_codes(x, (float)ns, (float)nm, nq);
        if (err >= best) break;
        best = err; s = (float)ns; m = (float)nm;
        memcpy(q, nq, sizeof q);
    }
    *scale = s; *offset = m;
}

void ck_q4k_quantize(const float *x, size_t n, uint8_t *qs, uint8_t *sm, float *dm) {
    for (size_t sb = 0; sb < n / 256; sb++) {
        const float *xs = x + sb * 256;
        float s[8], m[8], smax = 0, mmax = 0;
        for (int j = 0; j < 8; j++) {
            q4k_fit(xs + j * 32, &s[j], &m[j]);
            smax = fmaxf(smax, s[j]); mmax = fmaxf(mmax, m[j]);
        }
        float d = round_to_f16(smax / 63.0f), dmin = round_to_f16(mmax / 63.0f);
        dm[sb * 2] = d; dm[sb * 2 + 1] = dmin;
        uint8_t *sc = sm + sb * 16;
        for (int j = 0; j < 8; j++) {
            long a = d > 0 ? lrintf(s[j] / d) : 0, c = dmin > 0 ? lrintf(m[j] / dmin) : 0;
            sc[j] = (uint8_t)(a < 0 ? 0 : a > 63 ? 63 : a);
            sc[8 + j] = (uint8_t)(c < 0 ? 0 : c > 63 ? 63 : c);
            /* Codes against the scale and offset as stored (f32 products, as the kernels and ggml use them). */
            uint8_t q[32];
            q4k_codes(xs + j * 32, d * (float)sc[j], dmin * (float)sc[8 + j], q);
            uint8_t *out = qs + sb * 128 + j * 16;
            for (int i = 0; i < 16; i++) out[i] = (uint8_t)(q[i] | (q[i + 16] << 4));
        }
    }
}

void ck_q4k_from_ggml(const uint8_t *blocks, size_t nblocks, uint8_t *qs, uint8_t *sm, float *dm) {
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *p = blocks + b * 144, *s = p + 4, *q = p + 16;
        uint16_t hd, hm;
        memcpy(&hd, p, 2); memcpy(&hm, p + 2, 2);
        _Float16 fd, fm;
        memcpy(&fd, &hd, 2); memcpy(&fm, &hm, 2);
        dm[b * 2] = (float)fd; dm[b * 2 + 1] = (float)fm;
        uint8_t *sc = sm + b * 16;
        for (int j = 0; j < 8; j++) {
            if (j < 4) { sc[j] = s[j] & 63; sc[8 + j] = s[j + 4] & 63; }
            else {
                sc[j] = (uint8_t)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
                sc[8 + j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
            }
            /* ggml: sub-block j's element l is nibble (j & 1) of byte 32·(j/2) + l. */
            const uint8_t *src = q + (j >> 1) * 32;
            int shift = (j & 1) * 4;
            uint8_t *out = qs + b * 128 + j * 16;
            for (int i = 0; i < 16; i++)
                out[i] = (uint8_t)(((src[i] >> shift) & 15) | (((src[i + 16] >> shift) & 15) << 4));
        }
    }
}

/* Row r's per-sub-block scale d·sc and offset −dmin·m: a Q4_1 row (element = nibble·wd + wm) with the same values. */
static void q4k_expand_row(const uint8_t *sm, const float *dm, size_t nsb, float *wd, float *wm) {
    for (size_t sb = 0; sb < nsb; sb++) {
        float d = dm[sb * 2], dmin = dm[sb * 2 + 1];
        for (int j = 0; j < 8; j++) {
            wd[sb * 8 + j] = d * (float)sm[sb * 16 + j];
            wm[sb * 8 + j] = -(dmin * (float)sm[sb * 16 + 8 + j]);
        }
    }
}

void ck_q4k_matvec_on(int path, const uint8_t *qs, const uint8_t *sm, const float *dm, size_t rows, size_t k,
                      const int8_t *xq, const float *xd, float *y) {
    size_t nsb = k / 256, nb = k / 32;
    float dloc[512], mloc[512];
    float *wd = nb <= 512 ? dloc : (float *)malloc(nb * sizeof(float));
    float *wm = nb <= 512 ? mloc : (float *)malloc(nb * sizeof(float));
    int32_t sums[1024], *xs = nb <= 1024 ? sums : (int32_t *)malloc(nb * sizeof(int32_t));
    block_sums(xq, k, xs);
    int vnni = path == CK_PATH_AVX512 && ck_cpu_avx512_vnni();
    int8_t local[8192], *xp = NULL;
    float fsum[256], *xsum = NULL;
    if (vnni) {
        xp = k <= sizeof local ? local : (int8_t *)malloc(k);
        xsum = nb <= 256 ? fsum : (float *)malloc(nb * sizeof(float));
        q4_permute_pairs(xq, k, xp);
        for (size_t b = 0; b < nb; b++) xsum[b] = xd[b] * (float)xs[b];
    }
    for (size_t r = 0; r < rows; r++) {
        q4k_expand_row(sm + r * nsb * 16, dm + r * nsb * 2, nsb, wd, wm);
        const uint8_t *w = qs + r * (k / 2);
        if (vnni) q4_matvec_vnni(w, wd, wm, 1, k, xq, xp, xd, xsum, y + r);
        else if (path >= CK_PATH_AVX2) q4_matvec_avx2(w, wd, wm, 1, k, xq, xd, xs, y + r);
        else q4_matvec_c(w, wd, wm, 1, k, xq, xd, xs, y + r);
    }
    if (wd != dloc) { free(wd); free(wm); }
    if (xs != sums) free(xs);
    if (xp && xp != local) free(xp);
    if (xsum && xsum != fsum) free(xsum);
}

void ck_q4k_matvec(const uint8_t *qs, const uint8_t *sm, const float *dm, size_t rows, size_t k, const int8_t *xq,
                   const float *xd, float *y) {
    ck_q4k_matvec_on(ck_path_current(), qs, sm, dm, rows, k, xq, xd, y);
}
