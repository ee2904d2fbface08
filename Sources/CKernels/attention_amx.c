/* Prefill attention for the engine's bf16 compute mode on Intel AMX (flash-attention style): per 16-row tile of
   query rows (query i, head j of a GQA group at row i·group + j) and per block of 64 keys,
     S  = Q̄·K̄ᵀ                 on tdpbf16ps (Q̄, K̄: bf16-rounded, f32 accumulation), 16 × 64 f32
     online softmax             on S with AVX-512 in base 2 (running max m, per-row sum vectors l, corr = 2^(m_old − m))
     P̄  = bf16(2^(S·scale·log2e − m))
     O  = O·corr + P̄·V̄         on tdpbf16ps (V̄ bf16-rounded), f32.
   The normaliser l sums the f32 probabilities before their rounding, so lse = ln(Σ exp(s·scale)) of the same scores.

   Packed layout of one key/value head (ck_attention_amx_pack), blocks of 64 keys, block b at
   packed + (b − b0)·128·hd (uint16): first K̄ as B operands of S = Q̄·K̄ᵀ, for key tile t (16 keys), d chunk c (32 values)
     kblk[(t·DC + c)·512 + 32·p + 2·key + e] = K̄[64b + 16t + key][32c + 2p + e]          (DC = hd/32)
   then V̄ as B operands of O = P̄·V̄, for key chunk kc (32 keys), channel tile ct (16 channels)
     vblk[(kc·CT + ct)·512 + 32·p + 2·ch + e] = V̄[64b + 32kc + 2p + e][16ct + ch]          (CT = hd/16)
   keys past the count are zero. Tiles: 0–3 f32 accumulators, 4–5 A operands (Q̄ or P̄), 6–7 B operands. */
#include "CKernels.h"
#include "cpu.h"
#include "tile.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#define KB CK_ATTENTION_AMX_KEY_BLOCK
#define LOG2E 1.44269504088896341f
#define LN2 0.693147180559945309f
#define AMXA __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

int ck_attention_amx_available(size_t hd) { return hd > 0 && hd % 32 == 0 && hd <= 256 && ck_cpu_amx(); }

size_t ck_attention_amx_packed_count(size_t blocks, size_t hd) { return blocks * 2 * KB * hd; }

void ck_attention_amx_pack(const float *k, const float *v, size_t keys, size_t hd, size_t b0, size_t b1,
                           uint16_t *packed) {
    size_t dc = hd / 32, ct = hd / 16;
    uint16_t row[2][256];
    uint32_t krow[16][128];
    for (size_t b = b0; b < b1; b++) {
        uint16_t *kblk = packed + (b - b0) * 2 * KB * hd, *vblk = kblk + KB * hd;
        uint32_t *k32 = (uint32_t *)kblk;
        for (size_t t = 0; t < KB / 16; t++) {
            /* 16 keys rounded to bf16, read as pairs (32-bit words), transposed into pair rows. */
            for (size_t key = 0; key < 16; key++) {
                size_t j = b * KB + 16 * t + key;
                if (j < keys) ck_f32_to_bf16(k + j * hd, (uint16_t *)krow[key], hd);
                else memset(krow[key], 0, hd * sizeof(uint16_t));
            }
            for (size_t c = 0; c < dc; c++)
                for (size_t p = 0; p < 16; p++)
                    for (size_t key = 0; key < 16; key++)
                        k32[(t * dc + c) * 256 + 16 * p + key] = krow[key][16 * c + p];
        }
        for (size_t j = 0; j < KB; j += 2) {
            for (size_t e = 0; e < 2; e++) {
                size_t jj = b * KB + j + e;
                if (jj < keys) ck_f32_to_bf16(v + jj * hd, row[e], hd);
                else memset(row[e], 0, hd * sizeof(uint16_t));
            }
            size_t kc = j / 32, p = (j % 32) / 2;
            for (size_t c = 0; c < ct; c++) {
                uint16_t *dst = vblk + (kc * ct + c) * 512 + 32 * p;
                for (size_t ch = 0; ch < 16; ch++) {
                    dst[2 * ch] = row[0][16 * c + ch];
                    dst[2 * ch + 1] = row[1][16 * c + ch];
                }
            }
        }
    }
}

/* Scratch (bytes, 64-aligned inside): Q̄ rows (rows rounded to 16) × hd bf16, S 16 × 64 f32, P̄ 16 × 64 bf16,
   two 16 × hd f32 (O and one block's P̄·V̄), l 16 × 16 f32, and per-row m, corr, lo, hi. */
size_t ck_attention_amx_scratch(size_t rows, size_t hd) {
    size_t rp = (rows + 15) / 16 * 16;
    return rp * hd * 2 + 16 * KB * 4 + 16 * KB * 2 + 2 * 16 * hd * 4 + 16 * 16 * 4 + 4 * 16 * 4 + 128;
}

/* Four products into accumulators 0–3 sharing the A tile `ta`, B tiles alternating between 6 and 7 (tiles are not
   renamed: a load into the tile the previous product reads would wait for it). */
#define FOUR(ta, b0, b1, b2, b3, ldb)                                                                               \
    do {                                                                                                           \
        _tile_loadd(6, b0, ldb);                                                                                   \
        _tile_dpbf16ps(0, ta, 6);                                                                                  \
        _tile_loadd(7, b1, ldb);                                                                                   \
        _tile_dpbf16ps(1, ta, 7);                                                                                  \
        _tile_loadd(6, b2, ldb);                                                                                   \
        _tile_dpbf16ps(2, ta, 6);                                                                                  \
        _tile_loadd(7, b3, ldb);                                                                                   \
        _tile_dpbf16ps(3, ta, 7);                                                                                  \
    } while (0)

/* S (16 × 64 f32, row stride 64) = Q̄ tile (16 rows × hd, row stride hd) · K̄ block ᵀ; Q̄'s d chunks alternate
   between A tiles 4 and 5. */
AMXA static void scores(const uint16_t *q, size_t hd, const uint16_t *kblk, float *s) {
    size_t dc = hd / 32;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (size_t c = 0; c < dc; c++) {
        const uint16_t *k = kblk + c * 512;
        if (c % 2 == 0) {
            _tile_loadd(4, q + 32 * c, hd * 2);
            FOUR(4, k, k + dc * 512, k + 2 * dc * 512, k + 3 * dc * 512, 64);
        } else {
            _tile_loadd(5, q + 32 * c, hd * 2);
            FOUR(5, k, k + dc * 512, k + 2 * dc * 512, k + 3 * dc * 512, 64);
        }
    }
    _tile_stored(0, s, KB * 4);
    _tile_stored(1, s + 16, KB * 4);
    _tile_stored(2, s + 32, KB * 4);
    _tile_stored(3, s + 48, KB * 4);
}

/* ob (16 × hd f32, row stride hd) = P̄ (16 × 64 bf16, row stride 64) · V̄ block, channel tiles in groups of 4
   (then 2: hd is a multiple of 32); P̄'s two key chunks in A tiles 4 and 5. */
AMXA static void values(const uint16_t *p, const uint16_t *vblk, size_t hd, float *ob) {
    size_t ct = hd / 16;
    for (size_t g = 0; g < ct; g += 4) {
        const uint16_t *v0 = vblk + g * 512, *v1 = vblk + (ct + g) * 512;
        _tile_zero(0);
        _tile_zero(1);
        _tile_loadd(4, p, KB * 2);
        _tile_loadd(5, p + 32, KB * 2);
        if (g + 4 <= ct) {
            _tile_zero(2);
            _tile_zero(3);
            FOUR(4, v0, v0 + 512, v0 + 1024, v0 + 1536, 64);
            FOUR(5, v1, v1 + 512, v1 + 1024, v1 + 1536, 64);
        } else {
            _tile_loadd(6, v0, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, v0 + 512, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(6, v1, 64);
            _tile_dpbf16ps(0, 5, 6);
            _tile_loadd(7, v1 + 512, 64);
            _tile_dpbf16ps(1, 5, 7);
        }
        _tile_stored(0, ob + 16 * g, hd * 4);
        _tile_stored(1, ob + 16 * (g + 1), hd * 4);
        if (g + 4 <= ct) {
            _tile_stored(2, ob + 16 * (g + 2), hd * 4);
            _tile_stored(3, ob + 16 * (g + 3), hd * 4);
        }
    }
}

/* One online-softmax step for row r of S against keys kb0 ..< kb0 + 64: lo ≤ key < hi visible. Writes the row of P̄,
   updates m, l (a vector of partial sums), returns corr. */
AMXA static float softmax_row(const float *s, uint16_t *p, int32_t kb0, int32_t lo, int32_t hi, float c, float *m,
                              __m512 *l) {
    if (hi <= kb0 || lo >= kb0 + KB || hi <= lo) {
        _mm512_storeu_si512((void *)p, _mm512_setzero_si512());
        _mm512_storeu_si512((void *)(p + 32), _mm512_setzero_si512());
        return 1.0f;
    }
    __m512 v[4];
    __mmask16 mk[4];
    int full = lo <= kb0 && hi >= kb0 + KB;
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < 4; i++) {
        v[i] = _mm512_loadu_ps(s + 16 * i);
        if (full) mk[i] = 0xFFFF;
        else {
            __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(kb0 + 16 * i));
            mk[i] = _mm512_cmpge_epi32_mask(idx, _mm512_set1_epi32(lo)) & _mm512_cmplt_epi32_mask(idx, _mm512_set1_epi32(hi));
            v[i] = _mm512_mask_mov_ps(ninf, mk[i], v[i]);
        }
    }
    float bmax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(v[0], v[1]), _mm512_max_ps(v[2], v[3]))) * c;
    float mold = *m, mnew = bmax > mold ? bmax : mold;
    float corr = mold == -INFINITY ? 0.0f : _mm512_cvtss_f32(exp2_nonpos512(_mm512_set1_ps(mold - mnew)));
    __m512 vm = _mm512_set1_ps(mnew), vc = _mm512_set1_ps(c);
    for (int i = 0; i < 4; i++) v[i] = _mm512_maskz_mov_ps(mk[i], exp2_nonpos512(_mm512_fmsub_ps(v[i], vc, vm)));
    __m512 sum = _mm512_add_ps(_mm512_add_ps(v[0], v[1]), _mm512_add_ps(v[2], v[3]));
    *l = _mm512_fmadd_ps(*l, _mm512_set1_ps(corr), sum);
    *m = mnew;
    _mm512_storeu_si512((void *)p, (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0]));
    _mm512_storeu_si512((void *)(p + 32), (__m512i)_mm512_cvtne2ps_pbh(v[3], v[2]));
    return corr;
}

/* One 16-row tile: rows r0 ..< r0 + nr of the stacked queries, over the key blocks its rows see. */
AMXA static void row_tile(const uint16_t *qbar, size_t r0, size_t nr, size_t group, size_t hd, float c,
                          const uint16_t *packed, size_t first_block, const int32_t *key_lo, const int32_t *key_hi,
                          float *out, size_t out_stride, float *lse, size_t lse_stride, float *s, uint16_t *p,
                          float *o, float *ob, __m512 *l, float *m, float *corr, int32_t *lo, int32_t *hi) {
    int32_t kmin = INT32_MAX, kmax = 0;
    for (size_t r = 0; r < 16; r++) {
        lo[r] = hi[r] = 0;
        if (r < nr) {
            size_t i = (r0 + r) / group;
            lo[r] = key_lo[i];
            hi[r] = key_hi[i] > key_lo[i] ? key_hi[i] : key_lo[i];
            if (hi[r] > lo[r]) { kmin = lo[r] < kmin ? lo[r] : kmin; kmax = hi[r] > kmax ? hi[r] : kmax; }
        }
        m[r] = -INFINITY;
        l[r] = _mm512_setzero_ps();
    }
    memset(o, 0, 16 * hd * sizeof(float));
    if (kmin == INT32_MAX) kmin = kmax;
    for (int32_t kb0 = kmin / KB * KB; kb0 < kmax; kb0 += KB) {
        const uint16_t *kblk = packed + ((size_t)kb0 / KB - first_block) * 2 * KB * hd, *vblk = kblk + KB * hd;
        scores(qbar + r0 * hd, hd, kblk, s);
        for (size_t r = 0; r < 16; r++) corr[r] = softmax_row(s + r * KB, p + r * KB, kb0, lo[r], hi[r], c, m + r, l + r);
        values(p, vblk, hd, ob);
        for (size_t r = 0; r < nr; r++) {
            __m512 cr = _mm512_set1_ps(corr[r]);
            for (size_t d = 0; d < hd; d += 16)
                _mm512_storeu_ps(o + r * hd + d, _mm512_fmadd_ps(_mm512_loadu_ps(o + r * hd + d), cr,
                                                                   _mm512_loadu_ps(ob + r * hd + d)));
        }
    }
    for (size_t r = 0; r < nr; r++) {
        size_t i = (r0 + r) / group, j = (r0 + r) % group;
        float sum = _mm512_reduce_add_ps(l[r]);
        float inv = sum > 0 ? 1.0f / sum : 0.0f;
        float *dst = out + i * out_stride + j * hd;
        for (size_t d = 0; d < hd; d++) dst[d] = o[r * hd + d] * inv;
        if (lse) lse[i * lse_stride + j] = sum > 0 ? m[r] * LN2 + logf(sum) : -INFINITY;
    }
}

AMXA static void attention_amx(const float *q, size_t q_stride, size_t queries, size_t group, size_t hd, float scale,
                               const uint16_t *packed, size_t first_block, const int32_t *key_lo,
                               const int32_t *key_hi, float *out, size_t out_stride, float *lse, size_t lse_stride,
                               void *scratch) {
    size_t rows = queries * group, rp = (rows + 15) / 16 * 16;
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint16_t *qbar = (uint16_t *)base;
    float *s = (float *)(base + rp * hd * 2);
    uint16_t *p = (uint16_t *)(s + 16 * KB);
    float *o = (float *)(p + 16 * KB), *ob = o + 16 * hd;
    __m512 *l = (__m512 *)(ob + 16 * hd);
    float *m = (float *)(l + 16), *corr = m + 16;
    int32_t *lo = (int32_t *)(corr + 16), *hi = lo + 16;
    for (size_t i = 0; i < queries; i++)
        for (size_t j = 0; j < group; j++) ck_f32_to_bf16(q + i * q_stride + j * hd, qbar + (i * group + j) * hd, hd);
    memset(qbar + rows * hd, 0, (rp - rows) * hd * sizeof(uint16_t));
    ck_amx_config_16x64();
    float c = scale * LOG2E;
    for (size_t r0 = 0; r0 < rows; r0 += 16)
        row_tile(qbar, r0, rows - r0 < 16 ? rows - r0 : 16, group, hd, c, packed, first_block, key_lo, key_hi, out,
                 out_stride, lse, lse_stride, s, p, o, ob, l, m, corr, lo, hi);
    _tile_release();
}

int ck_attention_amx_tile(const float *q, size_t q_stride, size_t queries, size_t group, size_t hd, float scale,
                          const uint16_t *packed, size_t first_block, const int32_t *key_lo, const int32_t *key_hi,
                          float *out, size_t out_stride, float *lse, size_t lse_stride, void *scratch) {
    if (!ck_attention_amx_available(hd)) return -1;
    attention_amx(q, q_stride, queries, group, hd, scale, packed, first_block, key_lo, key_hi, out, out_stride, lse,
                  lse_stride, scratch);
    return 0;
}
