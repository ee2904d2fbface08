/* bf16 matrix products with f32 accumulation for the engine's bf16 compute mode: C (+)= A · Wᵀ with A (activations,
   [m × k]) and W (a PyTorch Linear weight, [n × k]) in bf16. Products of two bf16 values are exact in f32; sums are
   f32. The AVX-512 BF16 path uses vdpbf16ps (two products per lane per instruction, f32 accumulators, round to
   nearest even, denormals flushed); the portable path is the same arithmetic one product at a time, in k order.

   The AMX path (Sapphire Rapids and later) multiplies 16 × 32 bf16 tiles of A by 32 × 16 tiles of Wᵀ into 16 × 16
   f32 tiles with tdpbf16ps (each f32 lane accumulates 32 products in pairs, round to nearest even, denormals
   flushed: the same contract).

   Packed layout of W (ck_bf16_pack): panels of 16 output features; panel p holds, for each k pair j
   (k indices 2j and 2j+1), 32 bf16 values  packed[(p·kpp + j)·32 + 2c + e] = W[16p + c][2j + e]
   (kpp = ceil(k/2) rounded up to a multiple of 16); rows past n and k columns past k are zero. One pair row of a
   panel is one 512-bit vector, which vdpbf16ps multiplies against a broadcast activation pair (a[2j], a[2j+1]);
   16 consecutive pair rows (64 bytes each) are exactly the B operand tile tdpbf16ps takes (16 output features ×
   32 k values, k in pairs). */
#include "CKernels.h"
#include "cpu.h"
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

/* Pair rows per panel: ceil(k/2) rounded up to whole AMX tiles (16 pairs = 32 k values). */
static size_t panel_pairs(size_t k) { return ((k + 1) / 2 + 15) / 16 * 16; }

size_t ck_bf16_packed_count(size_t n, size_t k) { return ((n + 15) / 16) * panel_pairs(k) * 32; }

void ck_bf16_pack(const uint16_t *w, size_t n, size_t k, uint16_t *packed) {
    size_t kp = panel_pairs(k), panels = (n + 15) / 16;
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
    size_t kp = panel_pairs(k);
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
                                                            size_t kpp, const uint16_t *b, size_t np, size_t cols,
                                                            float *c, size_t ldc, int accumulate) {
    __m512 acc[MR][NP];
    for (size_t r = 0; r < mr; r++)
        for (size_t q = 0; q < np; q++) acc[r][q] = _mm512_setzero_ps();
    for (size_t j = 0; j < kp; j++) {
        __m512i bv[NP];
        for (size_t q = 0; q < np; q++) bv[q] = _mm512_loadu_si512((const void *)(b + (q * kpp + j) * 32));
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
    case 4: tile(ar, lda, MRV, kp, kpp, b, 4, cols, cr, ldc, accumulate); break;                                   \
    case 3: tile(ar, lda, MRV, kp, kpp, b, 3, cols, cr, ldc, accumulate); break;                                   \
    case 2: tile(ar, lda, MRV, kp, kpp, b, 2, cols, cr, ldc, accumulate); break;                                   \
    default: tile(ar, lda, MRV, kp, kpp, b, 1, cols, cr, ldc, accumulate); break;                                  \
    }

BF16 static void gemm_avx512(const uint16_t *a, size_t lda, size_t m, size_t k, const uint16_t *packed, size_t n,
                             size_t p0, size_t p1, float *c, size_t ldc, int accumulate) {
    size_t kp = (k + 1) / 2, kpp = panel_pairs(k);
    for (size_t p = p0; p < p1; p += NP) {
        size_t np = p1 - p < NP ? p1 - p : NP;
        size_t end = 16 * (p + np) < n ? 16 * (p + np) : n, cols = end - 16 * p;
        const uint16_t *b = packed + p * kpp * 32;
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

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq")))
#define AMX_MB 256             /* rows of A copied per block (256 × k bf16 stay in L2) */
#define AMX_NB_BYTES (640 << 10) /* bytes of packed weights per panel chunk (stay in L2 beside the A block) */

/* The tile configuration (palette 1): tiles 0–3 the 2 × 2 f32 accumulators, 4–5 two A tiles (16 rows × 32 bf16),
   6–7 two B tiles (16 pair rows × 16 features); all 16 rows × 64 bytes. */
typedef struct __attribute__((packed, aligned(64))) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

AMX void ck_amx_config_16x64(void) {
    amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
}

/* Adds (or stores) the valid part of a 32 × 32 f32 block (row stride 32) into C. */
AMX static void amx_flush(const float *blk, size_t rows, size_t cols, float *c, size_t ldc, int accumulate) {
    for (size_t q = 0; q < 2 && 16 * q < cols; q++) {
        size_t left = cols - 16 * q;
        __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        for (size_t r = 0; r < rows; r++) {
            float *dst = c + r * ldc + 16 * q;
            __m512 v = _mm512_loadu_ps(blk + r * 32 + 16 * q);
            if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
            _mm512_mask_storeu_ps(dst, mask, v);
        }
    }
}

/* 32 rows of A (a: two 16-row groups of kb tiles, 16 rows × 32 bf16 each, the second group at a + kb·512) × one
   or two panels (b, b + panel) over kb k blocks of 32, into blk (32 × 32 f32). */
AMX static inline void amx_block(const uint16_t *a, const uint16_t *b, size_t panel, int two, size_t kb, float *blk) {
    const uint16_t *a1 = a + kb * 512;
    _tile_zero(0);
    _tile_zero(1);
    if (two) {
        _tile_zero(2);
        _tile_zero(3);
        for (size_t j = 0; j < kb; j++) {
            _tile_loadd(4, a + 512 * j, 64);
            _tile_loadd(6, b + 512 * j, 64);
            _tile_loadd(5, a1 + 512 * j, 64);
            _tile_loadd(7, b + panel + 512 * j, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 5, 6);
            _tile_dpbf16ps(2, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(2, blk + 16, 128);
        _tile_stored(3, blk + 16 * 32 + 16, 128);
    } else {
        for (size_t j = 0; j < kb; j++) {
            _tile_loadd(4, a + 512 * j, 64);
            _tile_loadd(6, b + 512 * j, 64);
            _tile_loadd(5, a1 + 512 * j, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 5, 6);
        }
    }
    _tile_stored(0, blk, 128);
    _tile_stored(1, blk + 16 * 32, 128);
}

/* Copies rows r0 ..< r0 + rows of A into 16-row groups of contiguous tiles (16 rows × 32 bf16, zero-padded to
   whole tiles and to an even number of groups): abuf[(g·kb + j)·512 + 32·r + e] = A[r0 + 16g + r][32j + e]. */
AMX static void amx_pack_a(const uint16_t *a, size_t lda, size_t r0, size_t rows, size_t k, size_t kb,
                           uint16_t *abuf) {
    size_t groups = (rows + 31) / 32 * 2;
    for (size_t g = 0; g < groups; g++)
        for (size_t r = 0; r < 16; r++) {
            size_t row = 16 * g + r, have = row < rows ? k : 0;
            const uint16_t *src = a + (r0 + row) * lda;
            for (size_t j = 0; j < kb; j++) {
                uint16_t *dst = abuf + (g * kb + j) * 512 + 32 * r;
                size_t lo = 32 * j, n = have > lo ? (have - lo < 32 ? have - lo : 32) : 0;
                if (n) memcpy(dst, src + lo, n * sizeof(uint16_t));
                if (n < 32) memset(dst + n, 0, (32 - n) * sizeof(uint16_t));
            }
        }
}

/* Blocks of AMX_MB rows of A are copied into tiles (amx_pack_a); the panels p0 ..< p1 are taken in chunks of
   about AMX_NB_BYTES (which stay in L2 beside the A block); for each 32-row group of A (which stays in L1) every
   panel pair of the chunk streams past it. */
AMX static int gemm_amx(const uint16_t *a, size_t lda, size_t m, size_t k, const uint16_t *packed, size_t n,
                        size_t p0, size_t p1, float *c, size_t ldc, int accumulate) {
    size_t kpp = panel_pairs(k), kb = kpp / 16, kpad = 2 * kpp, panel = kpp * 32;
    size_t chunk = AMX_NB_BYTES / (panel * sizeof(uint16_t)) / 2 * 2;
    if (chunk < 2) chunk = 2;
    uint16_t *abuf = aligned_alloc(64, AMX_MB * kpad * sizeof(uint16_t));
    if (!abuf) return -1;
    float blk[32 * 32] __attribute__((aligned(64)));
    ck_amx_config_16x64();
    for (size_t r0 = 0; r0 < m; r0 += AMX_MB) {
        size_t rows = m - r0 < AMX_MB ? m - r0 : AMX_MB;
        amx_pack_a(a, lda, r0, rows, k, kb, abuf);
        for (size_t q0 = p0; q0 < p1; q0 += chunk) {
            size_t q1 = q0 + chunk < p1 ? q0 + chunk : p1;
            for (size_t rr = 0; rr < rows; rr += 32)
                for (size_t p = q0; p < q1; p += 2) {
                    int two = p + 1 < q1;
                    size_t end = 16 * (p + 2) < n ? 16 * (p + 2) : n, cols = end - 16 * p;
                    amx_block(abuf + rr * kpad, packed + p * panel, panel, two, kb, blk);
                    size_t valid = rows - rr < 32 ? rows - rr : 32;
                    amx_flush(blk, valid, two ? cols : (cols < 16 ? cols : 16), c + (r0 + rr) * ldc + 16 * p, ldc,
                              accumulate);
                }
        }
    }
    _tile_release();
    free(abuf);
    return 0;
}

int ck_bf16_gemm(const uint16_t *a, size_t lda, size_t m, size_t k, const uint16_t *packed, size_t n, size_t p0,
                 size_t p1, float *c, size_t ldc, int accumulate, int path) {
    switch (path) {
    case CK_BF16_AMX:
        if (!ck_cpu_amx()) return -1;
        return gemm_amx(a, lda, m, k, packed, n, p0, p1, c, ldc, accumulate);
    case CK_BF16_AVX512:
        if (!ck_cpu_avx512_bf16()) return -1;
        gemm_avx512(a, lda, m, k, packed, n, p0, p1, c, ldc, accumulate);
        return 0;
    default:
        gemm_portable(a, lda, m, k, packed, n, p0, p1, c, ldc, accumulate);
        return 0;
    }
}
