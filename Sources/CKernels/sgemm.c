/* Single-precision GEMM for the training shapes: C[m × n] ← α·op(A)·op(B) + β·C, row-major, every transpose case.

   Blocking (GotoBLAS/BLIS order): the product runs as blocks (n block j0 ..< j0+nb) × (k block p0 ..< p0+kb), k
   blocks in increasing order inside each n block. Per block the caller runs two phases, each split over its workers:
   1. ck_sgemm_pack: op(B)[p0 ..< p0+kb, j0 ..< j0+nb] is packed ONCE into panels of NR columns
      (packed[q·kb·NR + kk·NR + c] = op(B)[p0+kk][j0+q·NR+c], zero past n), shared by all workers;
   2. ck_sgemm_compute: the workers split the rows of C (in whole MR tiles); each packs its own rows of op(A) in
      MC-row slices into panels of MR rows (ap[i·kb·MR + kk·MR + r] = op(A)[row0+i·MR+r][p0+kk], zero past m) and
      runs the register tile MR × NR over every B panel (the kb × NR panel stays in L1, the A slice in L2).
   Every C element is summed by one thread: the tile's accumulator runs k in increasing order within a k block, then
   C = α·acc + β·C (first k block; C is not read when β = 0) or C += α·acc (later blocks). The blocking depends on
   (path, m, n, k) only, never on the worker count, so the result is the same bits for any number of workers.

   Register tiles: AVX-512 14 × 32 (28 zmm accumulators), AVX2+FMA 6 × 16 (12 ymm accumulators); CK_SGEMM_AMX runs
   32 × 32 AMX tiles on bf16x3 splits (sgemm_amx.c) through the same blocks and phases. There is no portable path:
   callers use BLAS where ck_sgemm_begin returns -1. */
#include "CKernels.h"
#include "cpu.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define AVX2 __attribute__((target("avx2,fma")))

/* Blocking per path: tile rows, tile columns, largest k block, A slice (in tiles), largest n block. */
typedef struct { size_t mr, nr, kc, mc_tiles, nc; } blocking;
static const blocking blocking_avx512 = {14, 32, 320, 24, 2048};
static const blocking blocking_avx2 = {6, 16, 256, 40, 2048};
/* AMX (sgemm_amx.c): 32 × 32 tiles, k blocks a multiple of 32, 128-row A slices (442 KB at k 576: the two workers of
   a 2-vCPU machine share one core's L2). The best of the blockings measured (BENCHMARKS.md, all within noise). */
static blocking blocking_amx = {32, 32, 576, 4, 1024};

void ck_sgemm_amx_blocking(size_t kc, size_t mc_tiles, size_t nc) {
    if (kc) blocking_amx.kc = (kc + 31) / 32 * 32;
    if (mc_tiles) blocking_amx.mc_tiles = mc_tiles;
    if (nc) blocking_amx.nc = (nc + 31) / 32 * 32;
}

/* ---- Per-thread scratch (grown as needed, freed at thread exit) ---- */

static pthread_key_t scratch_key[2];
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
typedef struct { float *p; size_t n; } scratch;
static void scratch_free(void *s) {
    if (!s) return;
    free(((scratch *)s)->p);
    free(s);
}
static void scratch_init(void) {
    pthread_key_create(&scratch_key[0], scratch_free);
    pthread_key_create(&scratch_key[1], scratch_free);
}
/* A 64-byte-aligned buffer of at least n floats owned by this thread (slot 0: packed B, 1: packed A); NULL on OOM. */
static float *scratch_get(int slot, size_t n) {
    pthread_once(&scratch_once, scratch_init);
    scratch *s = pthread_getspecific(scratch_key[slot]);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        pthread_setspecific(scratch_key[slot], s);
    }
    if (s->n < n) {
        free(s->p);
        s->p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        s->n = s->p ? n : 0;
    }
    return s->p;
}

/* ---- Packing ---- */

/* The strided packing cases with AVX-512 gathers (one kk step of up to 16 rows/columns per gather); the same
   values as the scalar loops. Index vectors are int32: callers check that 16·stride fits. */
AVX512 static void pack_strided_avx512(const float *src, size_t stride, size_t w, size_t width, size_t kb,
                                       float *dst) {
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32((int)stride));
    __mmask16 lo = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
    __mmask16 hi = w <= 16 ? 0 : w >= 32 ? 0xFFFF : (__mmask16)((1u << (w - 16)) - 1);
    __mmask16 keep_lo = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    __mmask16 keep_hi = width <= 16 ? 0 : (__mmask16)((1u << (width - 16)) - 1);
    const float *src_hi = src + 16 * stride;
    for (size_t kk = 0; kk < kb; kk++, dst += width) {
        __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lo, idx, src + kk, 4);
        _mm512_mask_storeu_ps(dst, keep_lo, v);
        if (width > 16) {
            __m512 u = hi ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), hi, idx, src_hi + kk, 4) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(dst + 16, keep_hi, u);
        }
    }
}


/* The contiguous packing cases with AVX-512 masked moves: kb rows of w ≤ 32 floats (stride `stride`) into rows of
   `width` (14 or 32) floats, zero past w. */
AVX512 static void pack_rows_avx512(const float *src, size_t stride, size_t w, size_t width, size_t kb, float *dst) {
    __mmask16 lo = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
    __mmask16 hi = w <= 16 ? 0 : w >= 32 ? 0xFFFF : (__mmask16)((1u << (w - 16)) - 1);
    __mmask16 keep_lo = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    __mmask16 keep_hi = width <= 16 ? 0 : (__mmask16)((1u << (width - 16)) - 1);
    for (size_t kk = 0; kk < kb; kk++, src += stride, dst += width) {
        _mm512_mask_storeu_ps(dst, keep_lo, _mm512_maskz_loadu_ps(lo, src));
        if (width > 16) _mm512_mask_storeu_ps(dst + 16, keep_hi, _mm512_maskz_loadu_ps(hi, src + 16));
    }
}

/* Rows r0 ..< r0+rows of op(A), k block of the job, into MR-row panels at ap. */
static void pack_a(const ck_sgemm_job *j, size_t r0, size_t rows, float *ap) {
    size_t mr = j->mr, kb = j->kb;
    for (size_t i = 0; i < rows; i += mr) {
        size_t h = rows - i < mr ? rows - i : mr;
        float *dst = ap + (i / mr) * kb * mr;
        if (j->trans_a && j->path == CK_PATH_AVX512) {
            pack_rows_avx512(j->a + j->p0 * j->lda + r0 + i, j->lda, h, mr, kb, dst);
        } else if (j->trans_a) {
            const float *src = j->a + j->p0 * j->lda + r0 + i;
            for (size_t kk = 0; kk < kb; kk++, src += j->lda, dst += mr) {
                size_t r = 0;
                for (; r < h; r++) dst[r] = src[r];
                for (; r < mr; r++) dst[r] = 0;
            }
        } else if (j->path == CK_PATH_AVX512 && j->lda < (1u << 26)) {
            pack_strided_avx512(j->a + (r0 + i) * j->lda + j->p0, j->lda, h, mr, kb, dst);
        } else {
            const float *src = j->a + (r0 + i) * j->lda + j->p0;
            for (size_t r = 0; r < h; r++)
                for (size_t kk = 0; kk < kb; kk++) dst[kk * mr + r] = src[r * j->lda + kk];
            for (size_t r = h; r < mr; r++)
                for (size_t kk = 0; kk < kb; kk++) dst[kk * mr + r] = 0;
        }
    }
}

/* B panels q0 ..< q1 of the job's current block. */
static void pack_b(const ck_sgemm_job *j, size_t q0, size_t q1) {
    size_t nr = j->nr, kb = j->kb;
    for (size_t q = q0; q < q1; q++) {
        size_t c0 = j->j0 + q * nr, w = j->j0 + j->nb - c0 < nr ? j->j0 + j->nb - c0 : nr;
        float *dst = j->packed_b + q * kb * nr;
        if (j->trans_b && j->path == CK_PATH_AVX512 && j->ldb < (1u << 26)) {
            pack_strided_avx512(j->b + c0 * j->ldb + j->p0, j->ldb, w, nr, kb, dst);
        } else if (j->trans_b) {
            const float *src = j->b + c0 * j->ldb + j->p0;
            for (size_t c = 0; c < w; c++)
                for (size_t kk = 0; kk < kb; kk++) dst[kk * nr + c] = src[c * j->ldb + kk];
            for (size_t c = w; c < nr; c++)
                for (size_t kk = 0; kk < kb; kk++) dst[kk * nr + c] = 0;
        } else if (j->path == CK_PATH_AVX512) {
            pack_rows_avx512(j->b + j->p0 * j->ldb + c0, j->ldb, w, nr, kb, dst);
        } else {
            const float *src = j->b + j->p0 * j->ldb + c0;
            for (size_t kk = 0; kk < kb; kk++, src += j->ldb, dst += nr) {
                size_t c = 0;
                for (; c < w; c++) dst[c] = src[c];
                for (; c < nr; c++) dst[c] = 0;
            }
        }
    }
}

/* ---- Register tiles ----
   acc = Σ_kk ap[kk·MR + r] · bp[kk·NR + c] in kk order; then, for r < rows, c < cols:
   first: C = α·acc (+ β·C when β ≠ 0); else C = C + α·acc. */

#define T512_MR 14
AVX512 static void tile_avx512(size_t kb, const float *ap, const float *bp, float *c, size_t ldc, size_t rows,
                               size_t cols, float alpha, float beta, int first) {
    __m512 acc[T512_MR][2];
#pragma unroll
    for (int r = 0; r < T512_MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    /* The C tile is read (or written) after the k loop: fetch it during the loop, one row every 8 steps (all at
       once would stall on the line-fill buffers). */
    size_t pf = rows < T512_MR ? rows : T512_MR;
    const char *pc = (const char *)c;
    for (size_t kk = 0; kk < kb; kk++, ap += T512_MR, bp += 32) {
        if ((kk & 7) == 0 && (kk >> 3) < pf) {
            _mm_prefetch(pc + (kk >> 3) * ldc * sizeof(float), _MM_HINT_T0);
            _mm_prefetch(pc + (kk >> 3) * ldc * sizeof(float) + 64, _MM_HINT_T0);
        }
        _mm_prefetch((const char *)(bp + 32 * 6), _MM_HINT_T0);
        _mm_prefetch((const char *)(bp + 32 * 6 + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(ap + 14 * 8), _MM_HINT_T0);
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma unroll
        for (int r = 0; r < T512_MR; r++) {
            __m512 av = _mm512_set1_ps(ap[r]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma unroll
    for (int r = 0; r < T512_MR; r++, c += ldc) {
        if ((size_t)r >= rows) break;
        __m512 v0 = _mm512_mul_ps(va, acc[r][0]), v1 = _mm512_mul_ps(va, acc[r][1]);
        if (!first) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), v1);
        } else if (beta != 0) {
            v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), v0);
            v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), v1);
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

#define T256_MR 6
/* Lanes 0 ..< n of a ymm: a mask vector for maskload/maskstore. */
AVX2 static inline __m256i lanes256(size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 8 ? 8 : n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
AVX2 static void tile_avx2(size_t kb, const float *ap, const float *bp, float *c, size_t ldc, size_t rows,
                           size_t cols, float alpha, float beta, int first) {
    __m256 acc[T256_MR][2];
    for (size_t r = 0; r < rows && r < T256_MR; r++) _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
#pragma unroll
    for (int r = 0; r < T256_MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t kk = 0; kk < kb; kk++, ap += T256_MR, bp += 16) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma unroll
        for (int r = 0; r < T256_MR; r++) {
            __m256 av = _mm256_broadcast_ss(ap + r);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    __m256i m0 = lanes256(cols), m1 = lanes256(cols > 8 ? cols - 8 : 0);
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma unroll
    for (int r = 0; r < T256_MR; r++, c += ldc) {
        if ((size_t)r >= rows) break;
        __m256 v0 = _mm256_mul_ps(va, acc[r][0]), v1 = _mm256_mul_ps(va, acc[r][1]);
        if (!first) {
            v0 = _mm256_add_ps(_mm256_maskload_ps(c, m0), v0);
            v1 = _mm256_add_ps(_mm256_maskload_ps(c + 8, m1), v1);
        } else if (beta != 0) {
            v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c, m0), v0);
            v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8, m1), v1);
        }
        _mm256_maskstore_ps(c, m0, v0);
        _mm256_maskstore_ps(c + 8, m1, v1);
    }
}

/* ---- Jobs ---- */

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

int ck_sgemm_begin(ck_sgemm_job *j, int path, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                   const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    const blocking *bl;
    if (path == CK_PATH_AVX512 && ck_cpu_avx512()) bl = &blocking_avx512;
    else if (path == CK_PATH_AVX2 && ck_cpu_avx2_fma()) bl = &blocking_avx2;
    else if (path == CK_SGEMM_AMX && ck_cpu_amx() && alpha == 1 && (beta == 0 || beta == 1) && lda < (1u << 26)
             && ldb < (1u << 26))
        bl = &blocking_amx;  /* the strides bound the 32-bit gather indices of its packing */
    else return -1;
    memset(j, 0, sizeof *j);
    j->path = path;
    j->trans_a = trans_a;
    j->trans_b = trans_b;
    j->m = m, j->n = n, j->k = k;
    j->alpha = alpha, j->beta = beta;
    j->a = a, j->lda = lda, j->b = b, j->ldb = ldb, j->c = c, j->ldc = ldc;
    j->mr = bl->mr, j->nr = bl->nr, j->mc = bl->mc_tiles * bl->mr;
    if (m == 0 || n == 0) return 0;
    /* Equal k blocks of at most kc; equal n blocks of at most nc, each a multiple of NR. */
    j->k_blocks = k == 0 ? 1 : ceil_div(k, bl->kc);
    j->kc = k == 0 ? 0 : ceil_div(k, j->k_blocks);
    if (path == CK_SGEMM_AMX) {  /* whole chunks of 32 k values; the last block may be short */
        j->kc = ceil_div(j->kc, 32) * 32;
        j->k_blocks = k == 0 ? 1 : ceil_div(k, j->kc);
    }
    j->n_blocks = ceil_div(n, bl->nc);
    j->nc = ceil_div(ceil_div(n, j->n_blocks), j->nr) * j->nr;
    /* AMX: 3 bf16 per value, k rounded up to 32 (as floats: 1.5 per value, rounded up to 2). */
    j->packed_b = scratch_get(0, (path == CK_SGEMM_AMX ? 2 * ceil_div(j->kc, 32) * 32 : j->kc) * j->nc + 16);
    if (!j->packed_b) return -2;
    return (int)(j->k_blocks * j->n_blocks);
}

void ck_sgemm_block(ck_sgemm_job *j, size_t block) {
    size_t jb = block / j->k_blocks, pb = block % j->k_blocks;
    j->j0 = jb * j->nc;
    j->nb = j->n - j->j0 < j->nc ? j->n - j->j0 : j->nc;
    j->p0 = pb * j->kc;
    j->kb = j->k - j->p0 < j->kc ? j->k - j->p0 : j->kc;
    j->first = pb == 0;
}

size_t ck_sgemm_pack_parts(const ck_sgemm_job *j) { return ceil_div(j->nb, j->nr); }
size_t ck_sgemm_compute_parts(const ck_sgemm_job *j) {
    size_t tiles = ceil_div(j->m, j->mr), panels = ceil_div(j->nb, j->nr);
    return tiles > panels / 2 ? tiles : panels / 2;
}

void ck_sgemm_pack(const ck_sgemm_job *j, size_t part, size_t parts) {
    size_t panels = ceil_div(j->nb, j->nr), per = ceil_div(panels, parts);
    size_t q0 = part * per, q1 = q0 + per < panels ? q0 + per : panels;
    if (q0 < q1 && j->path == CK_SGEMM_AMX) ck_amx_pack_b(j, q0, q1);
    else if (q0 < q1) pack_b(j, q0, q1);
}

/* Rows r0 ..< r1 of C against B panels q0 ..< q1 of the current block, A packed in MC-row slices. */
/* The AMX form of compute_range: per A slice, its 32-row panels packed as bf16x3, then the 32 × 32 tiles over the
   block's k chunks (C loaded when β = 1 or after the first k block, else the tiles start at zero). */
static int compute_range_amx(const ck_sgemm_job *j, size_t r0, size_t r1, size_t q0, size_t q1) {
    size_t chunks = ceil_div(j->kb, 32), kpad = ceil_div(j->kc, 32);
    uint16_t *ap = (uint16_t *)scratch_get(1, j->mc * kpad * 32 * 2 + 16);
    if (!ap) return -2;
    int load_c = !j->first || j->beta != 0;
    ck_amx_begin();
    for (size_t ic = r0; ic < r1; ic += j->mc) {
        size_t rows = r1 - ic < j->mc ? r1 - ic : j->mc;
        ck_amx_pack_a(j, ic, rows, ap);
        for (size_t q = q0; q < q1; q++) {
            size_t col = j->j0 + q * 32, cols = j->j0 + j->nb - col;
            const uint16_t *bp = (const uint16_t *)j->packed_b + q * kpad * 6 * 512;
            for (size_t i = 0; i < rows; i += 32)
                ck_amx_tile(chunks, ap + (i / 32) * chunks * 6 * 512, bp, j->c + (ic + i) * j->ldc + col, j->ldc,
                            rows - i < 32 ? rows - i : 32, cols < 32 ? cols : 32, load_c);
        }
    }
    ck_amx_end();
    return 0;
}

static int compute_range(const ck_sgemm_job *j, size_t r0, size_t r1, size_t q0, size_t q1) {
    if (j->path == CK_SGEMM_AMX) return compute_range_amx(j, r0, r1, q0, q1);
    float *ap = scratch_get(1, j->mc * (j->kb ? j->kb : 1));
    if (!ap) return -2;
    for (size_t ic = r0; ic < r1; ic += j->mc) {
        size_t rows = r1 - ic < j->mc ? r1 - ic : j->mc;
        pack_a(j, ic, rows, ap);
        for (size_t q = q0; q < q1; q++) {
            size_t col = j->j0 + q * j->nr, cols = j->j0 + j->nb - col;
            const float *bp = j->packed_b + q * j->kb * j->nr;
            for (size_t i = 0; i < rows; i += j->mr) {
                float *ct = j->c + (ic + i) * j->ldc + col;
                const float *at = ap + (i / j->mr) * j->kb * j->mr;
                if (j->path == CK_PATH_AVX512)
                    tile_avx512(j->kb, at, bp, ct, j->ldc, rows - i, cols, j->alpha, j->beta, j->first);
                else
                    tile_avx2(j->kb, at, bp, ct, j->ldc, rows - i, cols, j->alpha, j->beta, j->first);
            }
        }
    }
    return 0;
}

/* Workers split the rows of C in whole tiles; with few row tiles (fewer than 4 per worker) and enough B panels they
   split the panels instead (each packs all of op(A)'s rows). Either way each C element has one owner. */
int ck_sgemm_compute(const ck_sgemm_job *j, size_t part, size_t parts) {
    size_t tiles = ceil_div(j->m, j->mr), panels = ceil_div(j->nb, j->nr);
    if (parts > 1 && tiles < 4 * parts && panels >= 2 * parts) {
        size_t per = ceil_div(panels, parts), q0 = part * per, q1 = q0 + per < panels ? q0 + per : panels;
        return q0 < q1 ? compute_range(j, 0, j->m, q0, q1) : 0;
    }
    size_t per = ceil_div(tiles, parts), r0 = part * per * j->mr, r1 = (part + 1) * per * j->mr;
    if (r1 > j->m) r1 = j->m;
    return r0 < r1 ? compute_range(j, r0, r1, 0, panels) : 0;
}

int ck_sgemm(int path, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
             size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    ck_sgemm_job j;
    int blocks = ck_sgemm_begin(&j, path, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (blocks < 0) return blocks;
    for (int blk = 0; blk < blocks; blk++) {
        ck_sgemm_block(&j, (size_t)blk);
        ck_sgemm_pack(&j, 0, 1);
        int rc = ck_sgemm_compute(&j, 0, 1);
        if (rc) return rc;
    }
    return 0;
}
