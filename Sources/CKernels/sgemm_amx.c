/* The AMX path of ck_sgemm (CK_SGEMM_AMX): f32 products as three-term bf16 splits on AMX tiles ("bf16x3").

   Each f32 value x is split into three bf16 values x = x₁ + x₂ + x₃ (x₁ = bf16(x) rounded to nearest even,
   x₂ = bf16(x − x₁), x₃ = bf16(x − x₁ − x₂); the differences are exact in f32). A product a·b is taken as the six
   significant cross terms a₁b₁ + a₁b₂ + a₂b₁ + a₂b₂ + a₁b₃ + a₃b₁ (the three dropped ones are below 2⁻²⁴·|ab|),
   each exact in f32, accumulated in f32 by TDPBF16PS (round to nearest even). The error is that of an f32 dot
   product of 6·k terms: f32-level, not bf16-level (measured in BENCHMARKS.md, bounded in PackedGemmTests).

   Blocking: the job's blocks, phases and row split are sgemm.c's (MR = NR = 32, k blocks a multiple of 32), so each
   C element is summed by one thread in a fixed order and the bits do not depend on the worker count.
   Packed layouts (uint16 bf16), per k chunk ch of 32 k values (zero past the block's k, past m, past n):
   - A, per 32-row panel: tile ((ch·3 + s)·2 + h) = rows 16h ..< 16h+16 of split s, each row 32 k values
     (tile element [i][e] = split s of op(A)[16h+i][32ch+e]);
   - B, per 32-column panel: tile ((ch·3 + s)·2 + h) = columns 16h ..< 16h+16 of split s in the pair layout
     TDPBF16PS takes (tile element [r][2c + t] = split s of op(B)[32ch+2r+t][16h+c]).
   The 32 × 32 C tile is four accumulator tiles (tmm0..3), A in tmm4/5, B in tmm6/7. */
#include "CKernels.h"
#include "cpu.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))
#define TILE 512 /* bf16 values in one 16 × 32 tile */

/* ---- Splitting ---- */

/* The three bf16 splits of 16 floats (round to nearest even each), as 16-bit lanes. */
AMX static inline void split3(__m512 x, __m256i out[3]) {
    for (int s = 0; s < 3; s++) {
        __m256i h = (__m256i)_mm512_cvtneps_pbh(x);
        out[s] = h;
        if (s < 2) x = _mm512_sub_ps(x, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
}

/* 16 values of op(X) along one line: element e at src[e·stride], lanes past `valid` zero. stride 1 loads,
   otherwise a gather (the caller checks 16·stride < 2³¹). */
AMX static inline __m512 load16(const float *src, size_t stride, size_t valid) {
    __mmask16 m = valid >= 16 ? 0xFFFF : (__mmask16)((1u << valid) - 1);
    if (stride == 1) return _mm512_maskz_loadu_ps(m, src);
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32((int)stride));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, src, 4);
}

/* ---- Packing ---- */

/* Rows r0 ..< r0+rows of op(A) (rows ≤ MC), k block of the job, into 32-row panels at ap. */
AMX void ck_amx_pack_a(const ck_sgemm_job *j, size_t r0, size_t rows, uint16_t *ap) {
    size_t chunks = (j->kb + 31) / 32;
    /* op(A)[i][p]: row-major A: a[i·lda + p] (k contiguous); transposed: a[p·lda + i] (k strided). */
    size_t kstep = j->trans_a ? j->lda : 1, istep = j->trans_a ? 1 : j->lda;
    for (size_t i0 = 0; i0 < rows; i0 += 32) {
        uint16_t *panel = ap + (i0 / 32) * chunks * 6 * TILE;
        for (size_t i = 0; i < 32; i++) {
            size_t h = i / 16, row = i % 16;
            int live = i0 + i < rows;
            const float *src = j->a + (r0 + i0 + i) * istep + j->p0 * kstep;
            for (size_t ch = 0; ch < chunks; ch++) {
                for (size_t e0 = 0; e0 < 32; e0 += 16) {
                    size_t p = ch * 32 + e0, valid = !live || p >= j->kb ? 0 : j->kb - p;
                    __m256i sp[3];
                    split3(valid ? load16(src + p * kstep, kstep, valid) : _mm512_setzero_ps(), sp);
                    for (int s = 0; s < 3; s++)
                        _mm256_storeu_si256((__m256i *)(panel + ((ch * 3 + s) * 2 + h) * TILE + row * 32 + e0), sp[s]);
                }
            }
        }
    }
}

/* B panels q0 ..< q1 of the job's current block into j->packed_b (as uint16). */
AMX void ck_amx_pack_b(const ck_sgemm_job *j, size_t q0, size_t q1) {
    size_t chunks = (j->kb + 31) / 32;
    size_t kpad = (j->kc + 31) / 32;
    /* op(B)[p][c]: row-major B: b[p·ldb + c] (columns contiguous); transposed: b[c·ldb + p] (columns strided). */
    size_t kstep = j->trans_b ? 1 : j->ldb, cstep = j->trans_b ? j->ldb : 1;
    uint16_t *base = (uint16_t *)j->packed_b;
    for (size_t q = q0; q < q1; q++) {
        size_t c0 = j->j0 + q * 32, w = j->j0 + j->nb - c0 < 32 ? j->j0 + j->nb - c0 : 32;
        uint16_t *panel = base + q * kpad * 6 * TILE;
        for (size_t ch = 0; ch < chunks; ch++) {
            for (size_t h = 0; h < 2; h++) {
                size_t valid = w > 16 * h ? w - 16 * h : 0;
                const float *src = j->b + (j->p0 + ch * 32) * kstep + (c0 + 16 * h) * cstep;
                for (size_t r = 0; r < 16; r++) {
                    size_t p = ch * 32 + 2 * r;
                    if (j->trans_b && p + 1 < j->kb) {
                        /* Column c's pair (p, p+1) is adjacent in memory: 8 columns per 64-bit gather, already in
                           the pair layout. */
                        __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                         _mm256_set1_epi32((int)j->ldb));
                        __mmask8 m0 = valid >= 8 ? 0xFF : (__mmask8)((1u << valid) - 1);
                        __mmask8 m1 = valid >= 16 ? 0xFF : valid <= 8 ? 0 : (__mmask8)((1u << (valid - 8)) - 1);
                        __m256i lo[3], hi[3];
                        split3(_mm512_castpd_ps(_mm512_mask_i32gather_pd(_mm512_setzero_pd(), m0, idx, src + 2 * r, 4)),
                               lo);
                        split3(m1 ? _mm512_castpd_ps(_mm512_mask_i32gather_pd(_mm512_setzero_pd(), m1, idx,
                                                                              src + 8 * j->ldb + 2 * r, 4))
                                  : _mm512_setzero_ps(),
                               hi);
                        for (int s = 0; s < 3; s++) {
                            uint16_t *row = panel + ((ch * 3 + s) * 2 + h) * TILE + r * 32;
                            _mm256_storeu_si256((__m256i *)row, lo[s]);
                            _mm256_storeu_si256((__m256i *)(row + 16), hi[s]);
                        }
                        continue;
                    }
                    __m256i even[3], odd[3];
                    split3(valid && p < j->kb ? load16(src + 2 * r * kstep, cstep, valid) : _mm512_setzero_ps(), even);
                    split3(valid && p + 1 < j->kb ? load16(src + (2 * r + 1) * kstep, cstep, valid) : _mm512_setzero_ps(),
                           odd);
                    for (int s = 0; s < 3; s++) {
                        __m512i pair = _mm512_or_si512(_mm512_cvtepu16_epi32(even[s]),
                                                       _mm512_slli_epi32(_mm512_cvtepu16_epi32(odd[s]), 16));
                        _mm512_storeu_si512(panel + ((ch * 3 + s) * 2 + h) * TILE + r * 32, pair);
                    }
                }
            }
        }
    }
}

/* ---- The 32 × 32 tile ---- */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Configures tmm0..7 as 16 rows × 64 bytes on the calling thread. */
AMX void ck_amx_begin(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
}

AMX void ck_amx_end(void) { _tile_release(); }

#define DP4()                                                                                                          \
    do {                                                                                                               \
        _tile_dpbf16ps(0, 4, 6);                                                                                       \
        _tile_dpbf16ps(1, 4, 7);                                                                                       \
        _tile_dpbf16ps(2, 5, 6);                                                                                       \
        _tile_dpbf16ps(3, 5, 7);                                                                                       \
    } while (0)
/* Prefetch of the next chunk's operands into L1 (6 KB each of A and B, 96 lines each), a sixth per product group. */
#define PREFETCH(g)                                                                                                    \
    do {                                                                                                               \
        for (int l = 0; l < 16; l++) {                                                                                 \
            _mm_prefetch((const char *)(at + 6 * TILE) + ((g) * 16 + l) * 64, _MM_HINT_T0);                            \
            _mm_prefetch((const char *)(bt + 6 * TILE) + ((g) * 16 + l) * 64, _MM_HINT_T0);                            \
        }                                                                                                              \
    } while (0)
#define LOAD_A(s) (_tile_loadd(4, at + (s) * 2 * TILE, 64), _tile_loadd(5, at + ((s) * 2 + 1) * TILE, 64))
#define LOAD_B(s) (_tile_loadd(6, bt + (s) * 2 * TILE, 64), _tile_loadd(7, bt + ((s) * 2 + 1) * TILE, 64))

/* C[rows × cols] (rows, cols ≤ 32) ← C + Σ over the block's k chunks (load_c) or that sum alone (!load_c), terms in
   the order a₁b₃, a₁b₂, a₂b₂, a₂b₁, a₁b₁, a₃b₁ per chunk. */
AMX void ck_amx_tile(size_t chunks, const uint16_t *ap, const uint16_t *bp, float *c, size_t ldc, size_t rows,
                     size_t cols, int load_c) {
    _Alignas(64) float edge[32 * 32];
    int full = rows == 32 && cols == 32;
    float *cc = full ? c : edge;
    size_t ld = (full ? ldc : 32) * sizeof(float);
    if (!full) {
        memset(edge, 0, sizeof edge);
        if (load_c)
            for (size_t r = 0; r < rows; r++) memcpy(edge + r * 32, c + r * ldc, cols * sizeof(float));
    }
    if (load_c) {
        _tile_loadd(0, cc, ld);
        _tile_loadd(1, cc + 16, ld);
        _tile_loadd(2, (char *)cc + 16 * ld, ld);
        _tile_loadd(3, (char *)cc + 16 * ld + 64, ld);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (size_t ch = 0; ch < chunks; ch++) {
        const uint16_t *at = ap + ch * 6 * TILE, *bt = bp + ch * 6 * TILE;
        /* 14 tile loads for 24 products: each step changes A or B only. */
        LOAD_A(0);
        LOAD_B(2);
        DP4(); /* a₁b₃ */
        PREFETCH(0);
        LOAD_B(1);
        DP4(); /* a₁b₂ */
        PREFETCH(1);
        LOAD_A(1);
        DP4(); /* a₂b₂ */
        PREFETCH(2);
        LOAD_B(0);
        DP4(); /* a₂b₁ */
        PREFETCH(3);
        LOAD_A(0);
        DP4(); /* a₁b₁ */
        PREFETCH(4);
        LOAD_A(2);
        DP4(); /* a₃b₁ */
        PREFETCH(5);
    }
    _tile_stored(0, cc, ld);
    _tile_stored(1, cc + 16, ld);
    _tile_stored(2, (char *)cc + 16 * ld, ld);
    _tile_stored(3, (char *)cc + 16 * ld + 64, ld);
    if (!full)
        for (size_t r = 0; r < rows; r++) memcpy(c + r * ldc, edge + r * 32, cols * sizeof(float));
}

/* ---- Throughput probe (longctx-bench amx-tile) ---- */

/* Seconds for `iterations` × 4 TDPBF16PS (16 × 16 × 32 each) on tiles loaded once (no memory traffic): the peak of
   the tile unit. -1 without AMX. */
AMX double ck_amx_probe_dp(size_t iterations) {
    if (!ck_cpu_amx()) return -1;
    static _Alignas(64) uint16_t ones[4 * TILE];
    for (size_t i = 0; i < 4 * TILE; i++) ones[i] = 0x3f80;
    ck_amx_begin();
    _tile_zero(0), _tile_zero(1), _tile_zero(2), _tile_zero(3);
    _tile_loadd(4, ones, 64), _tile_loadd(5, ones + TILE, 64), _tile_loadd(6, ones + 2 * TILE, 64);
    _tile_loadd(7, ones + 3 * TILE, 64);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < iterations; i++) DP4();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_amx_end();
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
}

/* Seconds for `reps` calls of the bf16x3 32 × 32 tile over `chunks` k chunks of packed operands (zeros) that stay in
   L1/L2 when chunks ≤ 64: the kernel's rate with its tile loads but without packing. -1 without AMX or memory. */
AMX double ck_amx_probe_tile(size_t chunks, size_t reps) {
    if (!ck_cpu_amx()) return -1;
    uint16_t *a = aligned_alloc(64, chunks * 6 * TILE * 2), *b = aligned_alloc(64, chunks * 6 * TILE * 2);
    if (!a || !b) return free(a), free(b), -1;
    memset(a, 0, chunks * 6 * TILE * 2), memset(b, 0, chunks * 6 * TILE * 2);
    _Alignas(64) float c[32 * 32];
    ck_amx_begin();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t r = 0; r < reps; r++) ck_amx_tile(chunks, a, b, c, 32, 32, 32, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_amx_end();
    free(a), free(b);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
}
