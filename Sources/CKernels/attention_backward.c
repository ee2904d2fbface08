/* Fused attention backward (FlashAttention-2 style) for one (key/value head, query tile), AVX2+FMA or AVX-512.
   The S/dP and dQ products reuse the forward's register tiles for the instruction set (ck_tile_ops: qk, pv); the
   dK/dV product has its own tiles here.

   Per key block, with rows r = (query i, head j) = i*group + j and keys t of the block:
     S^T = K·Q^T·scale·log2(e)            (ops->qk: 6 keys x 16/32 rows per register tile, K in panels)
     P^T = exp2(S^T - lse·log2(e))         (0 outside each row's visible keys)
     dP^T = V·dO^T                         (ops->qk again, V in panels of 6)
     dS^T = P^T ⊙ (dP^T - D),  D = rowsum(dO ⊙ O)
     dV += P^T·dO,  dK += dS^T·Q·scale     (6 keys x 16 channels per register tile, dO and Q in strips of 16)
     dQ += dS·K·scale                      (6 rows x 16 channels per register tile, K in strips of 16: the forward's
                                            O·corr + P·V tile with corr = 1)
   Scratch layout (f32): Q^T and dO^T (hd x ld, Q^T pre-scaled), Q and dO in strips ([strip][rp][16]), P^T and
   dS^T (kb6 x ld), the dQ accumulator (rows x hd), base-2 lse and D per row, int32 key ranges per row. */
#include "CKernels.h"
#include "cpu.h"
#include "tile.h"
#include <math.h>
#include <string.h>

#define BWD_LOG2E 1.44269504088896341f

/* Packed block: ck_attention_pack's block of (K, V) — K panels and V strips — then its block of (V, K) — V panels
   and K strips. The V strips are not used. */
static size_t bwd_block_floats(size_t hd, size_t kb) { return 2 * ck_attention_packed_size(1, hd, kb); }

static size_t strips(size_t hd) { return (hd + 15) / 16; }

int ck_attention_backward_level(size_t hd) {
    if (hd % 8 != 0 || hd == 0 || !ck_cpu_avx2_fma()) return 0;
    return ck_cpu_avx512() ? 2 : 1;
}

size_t ck_attention_backward_packed_size(size_t blocks, size_t hd, size_t kb) {
    return blocks * bwd_block_floats(hd, kb);
}

void ck_attention_backward_pack(const float *k, const float *v, size_t keys, size_t hd, size_t kb, size_t b0,
                                size_t b1, float *packed) {
    size_t fb = ck_attention_packed_size(1, hd, kb);
    for (size_t b = b0; b < b1; b++) {
        float *dst = packed + (b - b0) * 2 * fb;
        ck_attention_pack(k, v, keys, hd, kb, b, b + 1, dst);
        ck_attention_pack(v, k, keys, hd, kb, b, b + 1, dst + fb);
    }
}

size_t ck_attention_backward_scratch(size_t rows, size_t hd, size_t kb) {
    size_t rp = (rows + 15) / 16 * 16, ld = padded_stride(rp), kb6 = round6(kb);
    return 2 * hd * ld + 2 * strips(hd) * rp * 16 + 2 * kb6 * ld + rows * hd + 3 * rp + 2 * rp /* int32 */ + 64;
}

/* P^T = exp2(S^T - l2[c]) for keys j < nb visible to column c (lo[c] <= j < hi[c]), else 0; in place. */
__attribute__((target("avx2,fma")))
static void probabilities_t(float *st, size_t nb, size_t rp, size_t ld, const int32_t *lo, const int32_t *hi,
                            const float *l2) {
    for (size_t c = 0; c < rp; c += 8) {
        __m256i vlo = _mm256_loadu_si256((const __m256i *)(lo + c));
        __m256i vhi = _mm256_loadu_si256((const __m256i *)(hi + c));
        int full = block_visible8(lo, hi, c, nb);
        __m256 l = _mm256_loadu_ps(l2 + c);
        if (full) {
            for (size_t j = 0; j < nb; j++) {
                float *s = st + j * ld + c;
                _mm256_storeu_ps(s, exp2_nonpos(_mm256_sub_ps(_mm256_loadu_ps(s), l)));
            }
        } else {
            for (size_t j = 0; j < nb; j++) {
                float *s = st + j * ld + c;
                __m256i jv = _mm256_set1_epi32((int32_t)j);
                __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi32(vlo, jv),
                                              _mm256_cmpgt_epi32(_mm256_add_epi32(jv, _mm256_set1_epi32(1)), vhi));
                __m256 e = exp2_nonpos(_mm256_sub_ps(_mm256_loadu_ps(s), l));
                _mm256_storeu_ps(s, _mm256_andnot_ps(_mm256_castsi256_ps(bad), e));
            }
        }
    }
}

/* dS^T = P^T ⊙ (dP^T - D[c]) for keys j < nb, in place over dP^T. */
__attribute__((target("avx2,fma")))
static void score_gradient_t(const float *pt, float *dst, size_t nb, size_t rp, size_t ld, const float *delta) {
    for (size_t j = 0; j < nb; j++) {
        const float *p = pt + j * ld;
        float *d = dst + j * ld;
        for (size_t c = 0; c < rp; c += 8)
            _mm256_storeu_ps(d + c, _mm256_mul_ps(_mm256_loadu_ps(p + c),
                                                  _mm256_sub_ps(_mm256_loadu_ps(d + c), _mm256_loadu_ps(delta + c))));
    }
}

/* out[i][c..c+8*NV] += alpha * sum_r AT[i][r] * B[r][c..] for 6 key rows i (the first `valid` stored), AT key-major
   (row stride ld), B one strip [r][16]. */
__attribute__((target("avx2,fma"), always_inline))
static inline void key_tile(int nv, const float *at, size_t ld, const float *b, size_t rows, float alpha,
                            float *out, size_t hd, int valid) {
    __m256 c0[6], c1[6];
    for (int i = 0; i < 6; i++) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (size_t r = 0; r < rows; r++) {
        __m256 b0 = _mm256_loadu_ps(b + r * 16);
        __m256 b1 = nv > 1 ? _mm256_loadu_ps(b + r * 16 + 8) : _mm256_setzero_ps();
        for (int i = 0; i < 6; i++) {
            __m256 a = _mm256_broadcast_ss(at + i * ld + r);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            if (nv > 1) c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
    __m256 s = _mm256_set1_ps(alpha);
    for (int i = 0; i < valid; i++) {
        float *o = out + i * hd;
        _mm256_storeu_ps(o, _mm256_fmadd_ps(c0[i], s, _mm256_loadu_ps(o)));
        if (nv > 1) _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(c1[i], s, _mm256_loadu_ps(o + 8)));
    }
}

/* out (keys 0 ..< nb, row stride hd) += alpha * AT·B: AT key-major (kb6 x ld), B in strips ([strip][rp][16]). */
__attribute__((target("avx2,fma")))
static void key_block(const float *at, size_t ld, size_t rows, size_t rp, const float *b, size_t nb, size_t hd,
                      float alpha, float *out) {
    for (size_t c = 0; c < hd; c += 16, b += rp * 16)
        for (size_t j = 0; j < nb; j += 6) {
            int valid = nb - j < 6 ? (int)(nb - j) : 6;
            if (c + 16 <= hd) key_tile(2, at + j * ld, ld, b, rows, alpha, out + j * hd + c, hd, valid);
            else key_tile(1, at + j * ld, ld, b, rows, alpha, out + j * hd + c, hd, valid);
        }
}

/* ---- AVX-512 variant of the key-gradient product: the same layouts, NZ = 4 (or 2) 16-float vectors per
   register-tile row — 64 (32) channels, four (two) strips — with 6 x NZ accumulators; a 16-wide remainder runs the
   AVX2 tile. Each output element sees the same sequence of fused multiply-adds as in the AVX2 kernel. ---- */
#define AVX512 __attribute__((target("avx512f,avx2,fma")))

/* out[i][0..16*NZ] += alpha * sum_r AT[i][r] * B[r] for 6 key rows (the first `valid` stored); B is NZ strips
   ([r][16] each, `sstride` floats apart). */
AVX512 __attribute__((always_inline))
static inline void key_tile512(int nz, const float *at, size_t ld, const float *b, size_t sstride, size_t rows,
                               float alpha, float *out, size_t hd, int valid) {
    __m512 c[6][4], v[4];
    for (int i = 0; i < 6; i++) for (int z = 0; z < 4; z++) c[i][z] = _mm512_setzero_ps();
    for (size_t r = 0; r < rows; r++) {
        for (int z = 0; z < nz; z++) v[z] = _mm512_loadu_ps(b + z * sstride + r * 16);
        for (int i = 0; i < 6; i++) {
            __m512 a = _mm512_set1_ps(at[i * ld + r]);
            for (int z = 0; z < nz; z++) c[i][z] = _mm512_fmadd_ps(a, v[z], c[i][z]);
        }
    }
    __m512 s = _mm512_set1_ps(alpha);
    for (int i = 0; i < valid; i++)
        for (int z = 0; z < nz; z++) {
            float *o = out + i * hd + 16 * z;
            _mm512_storeu_ps(o, _mm512_fmadd_ps(c[i][z], s, _mm512_loadu_ps(o)));
        }
}

AVX512 static void key_block512(const float *at, size_t ld, size_t rows, size_t rp, const float *b, size_t nb,
                                size_t hd, float alpha, float *out) {
    size_t c = 0, ss = rp * 16;
    for (; c + 64 <= hd; c += 64, b += 4 * ss)
        for (size_t j = 0; j < nb; j += 6)
            key_tile512(4, at + j * ld, ld, b, ss, rows, alpha, out + j * hd + c, hd, nb - j < 6 ? (int)(nb - j) : 6);
    for (; c + 32 <= hd; c += 32, b += 2 * ss)
        for (size_t j = 0; j < nb; j += 6)
            key_tile512(2, at + j * ld, ld, b, ss, rows, alpha, out + j * hd + c, hd, nb - j < 6 ? (int)(nb - j) : 6);
    for (; c < hd; c += 16, b += ss)
        for (size_t j = 0; j < nb; j += 6) {
            int valid = nb - j < 6 ? (int)(nb - j) : 6;
            if (c + 16 <= hd) key_tile(2, at + j * ld, ld, b, rows, alpha, out + j * hd + c, hd, valid);
            else key_tile(1, at + j * ld, ld, b, rows, alpha, out + j * hd + c, hd, valid);
        }
}

/* Row r of src (r < rows; row r at src + (r / group) * stride + (r % group) * hd) into the transposed hd x ld
   matrix (times `mul`) and the strips [strip][rp][16]; padding columns/rows zero. */
static void load_rows(const float *src, size_t stride, size_t rows, size_t group, size_t hd, size_t rp, size_t ld,
                      float mul, float *t, float *s) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = src + (r / group) * stride + (r % group) * hd;
        for (size_t d = 0; d < hd; d++) t[d * ld + r] = row[d] * mul;
        for (size_t c = 0; c < hd; c += 16) {
            float *dst = s + (c / 16) * rp * 16 + r * 16;
            for (size_t e = 0; e < 16; e++) dst[e] = c + e < hd ? row[c + e] : 0;
        }
    }
    for (size_t r = rows; r < rp; r++) {
        for (size_t d = 0; d < hd; d++) t[d * ld + r] = 0;
        for (size_t c = 0; c < hd; c += 16) memset(s + (c / 16) * rp * 16 + r * 16, 0, 16 * sizeof(float));
    }
}

__attribute__((target("avx2,fma")))
void ck_attention_backward_tile(const float *q, size_t q_stride, const float *o, size_t o_stride, const float *dout,
                                size_t dout_stride, const float *lse, size_t lse_stride, size_t queries, size_t group,
                                size_t hd, float scale, const float *packed, size_t first_block,
                                const int32_t *key_lo, const int32_t *key_hi, size_t kb, float *dq, size_t dq_stride,
                                float *dk, float *dv, float *scratch, int level) {
    int wide = level >= 2;
    const ck_tile_ops *ops = wide ? &ck_tile_ops_avx512 : &ck_tile_ops_avx2;
    size_t rows = queries * group, rp = (rows + 15) / 16 * 16, ld = padded_stride(rp);
    size_t kb6 = round6(kb), bs = bwd_block_floats(hd, kb), ns = strips(hd);
    float *qt = scratch, *dot = qt + hd * ld, *qs = dot + hd * ld, *dos = qs + ns * rp * 16;
    float *pt = dos + ns * rp * 16, *dst = pt + kb6 * ld, *dqa = dst + kb6 * ld;
    float *l2 = dqa + rows * hd, *delta = l2 + rp, *ones = delta + rp;
    int32_t *lo = (int32_t *)(ones + rp), *hi = lo + rp;
    load_rows(q, q_stride, rows, group, hd, rp, ld, scale * BWD_LOG2E, qt, qs);
    load_rows(dout, dout_stride, rows, group, hd, rp, ld, 1.0f, dot, dos);
    memset(dqa, 0, rows * hd * sizeof(float));
    int32_t kmin = INT32_MAX, kmax = 0;
    for (size_t r = 0; r < rp; r++) {
        l2[r] = 0; delta[r] = 0; ones[r] = 1; lo[r] = 0; hi[r] = 0;
        if (r >= rows) continue;
        size_t i = r / group, j = r % group;
        float L = lse[i * lse_stride + j];
        int32_t a = key_lo[i], b = key_hi[i];
        if (b < a || L == -INFINITY) b = a;  /* a row that saw no key has no gradient */
        if (b <= a) continue;
        const float *go = dout + i * dout_stride + j * hd, *oo = o + i * o_stride + j * hd;
        float d = 0;
        for (size_t e = 0; e < hd; e++) d += go[e] * oo[e];
        l2[r] = L * BWD_LOG2E; delta[r] = d; lo[r] = a; hi[r] = b;
        if (a < kmin) kmin = a;
        if (b > kmax) kmax = b;
    }
    if (kmin >= kmax) return;
    /* lo/hi hold absolute key indices; each block shifts them to block-relative and back. */
    int32_t kstart = kmin / (int32_t)kb * (int32_t)kb;
    for (int32_t k0 = kstart; k0 < kmax; k0 += (int32_t)kb) {
        size_t nb = (size_t)(kmax - k0) < kb ? (size_t)(kmax - k0) : kb;
        const float *kp = packed + ((size_t)k0 / kb - first_block) * bs, *vp = kp + bs / 2, *ks = vp + kb6 * hd;
        for (size_t r = 0; r < rp; r++) { lo[r] -= k0; hi[r] -= k0; }
        ops->qk(kp, hd, nb, qt, rp, ld, pt);
        probabilities_t(pt, nb, rp, ld, lo, hi, l2);
        ops->qk(vp, hd, nb, dot, rp, ld, dst);
        score_gradient_t(pt, dst, nb, rp, ld, delta);
        if (wide) {
            key_block512(pt, ld, rows, rp, dos, nb, hd, 1.0f, dv + (size_t)k0 * hd);
            key_block512(dst, ld, rows, rp, qs, nb, hd, scale, dk + (size_t)k0 * hd);
        } else {
            key_block(pt, ld, rows, rp, dos, nb, hd, 1.0f, dv + (size_t)k0 * hd);
            key_block(dst, ld, rows, rp, qs, nb, hd, scale, dk + (size_t)k0 * hd);
        }
        ops->pv(dst, ld, rows, ks, kb6 * 16, hd, nb, ones, dqa);  /* dQ += dS·K: O·corr + P·V with corr 1 */
        for (size_t r = 0; r < rp; r++) { lo[r] += k0; hi[r] += k0; }
    }
    for (size_t r = 0; r < rows; r++) {
        float *d = dq + (r / group) * dq_stride + (r % group) * hd;
        const float *a = dqa + r * hd;
        for (size_t e = 0; e < hd; e++) d[e] += a[e] * scale;
    }
}
