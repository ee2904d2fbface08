/* CPU feature checks and the AVX-512 kernel entry points shared by the kernel files (private to CKernels). */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "CKernels.h"

/* 1 when the CPU has AVX2 and FMA (checked once), else 0. */
int ck_cpu_avx2_fma(void);
/* 1 when the CPU has AVX-512 F/BW/VL/DQ besides AVX2+FMA (checked once), else 0. */
int ck_cpu_avx512(void);
/* The path the un-suffixed kernels use (ck_path_active, read once). */
int ck_path_current(void);

/* ---- AVX-512 variants (kernels_avx512.c); call only when ck_cpu_avx512() ---- */
void ck512_exp(const float *x, float *y, size_t n);
float ck512_row_max(const float *s, size_t n);
float ck512_exp_sub_sum(float *s, size_t n, float mx);
void ck512_silu_mul(float *g, const float *u, size_t n);
void ck512_rmsnorm_row(const float *x, const float *w, float *y, size_t n, float eps);
void ck512_rope_row(float *v, size_t heads, size_t hd, const float *c, const float *s, size_t rd, float sin_sign);
/* Keys ahead whose cache rows the decode steps prefetch (the hardware prefetcher alone left the cache read at about
   half the memory bandwidth). */
#define DECODE_PREFETCH_KEYS 32
/* Prefetches the line holding base[offset]; offset may lie past the array (prefetches never fault, and the address
   is formed as an integer, so no out-of-range pointer is made). */
static inline void prefetch_ahead(const float *base, size_t offset) {
    __builtin_prefetch((const void *)((uintptr_t)base + offset * sizeof(float)), 0, 3);
}
/* The two steps of ck_attention_decode's key blocks (hd a multiple of 16, g <= 4 heads; layout in attention_decode.c). */
void ck512_decode_scores(const float *q, size_t g, size_t hd, float scale, const float *k, size_t nb, float *s);
void ck512_decode_pv(const float *p, size_t g, size_t nb, const float *v, size_t hd, float *acc);

/* The three steps of one key block of the fused attention tile (layout in attention.c), per instruction set. */
typedef struct {
    /* ST (nb rounded up to 6 rows) = K_block · Q^T. */
    void (*qk)(const float *kp, size_t hd, size_t nb, const float *qt, size_t rp, size_t ld, float *st);
    /* Online softmax down the key axis of ST, base 2; updates m, l, writes corr, ST becomes P. */
    void (*softmax)(float *st, size_t nb, size_t rp, size_t ld, const int32_t *lo, const int32_t *hi, float *m,
                    float *l, float *corr);
    /* O = O·corr + P·V. */
    void (*pv)(const float *pt, size_t ld, size_t rows, const float *vp, size_t strip_stride, size_t hd, size_t nb,
               const float *corr, float *o);
} ck_tile_ops;

extern const ck_tile_ops ck_tile_ops_avx2;
extern const ck_tile_ops ck_tile_ops_avx512;

/* ---- AMX (sgemm_amx.c); call only when ck_cpu_amx() ---- */
/* 1 when the CPU has AMX-TILE, AMX-BF16 and AVX512-BF16 besides AVX-512 and the kernel granted this process the
   tile data state (arch_prctl ARCH_REQ_XCOMP_PERM; checked once), else 0. */
int ck_cpu_amx(void);
void ck_amx_pack_a(const ck_sgemm_job *j, size_t r0, size_t rows, uint16_t *ap);
void ck_amx_pack_b(const ck_sgemm_job *j, size_t q0, size_t q1);
/* Tile configuration for ck_amx_tile on the calling thread, and its release. */
void ck_amx_begin(void);
void ck_amx_end(void);
/* Loads tile configuration palette 1 with all eight tiles 16 rows × 64 bytes on the calling thread (gemm_bf16.c; the
   bf16 GEMM and attention_amx.c); release with _tile_release. */
void ck_amx_config_16x64(void);
void ck_amx_tile(size_t chunks, const uint16_t *ap, const uint16_t *bp, float *c, size_t ldc, size_t rows,
                 size_t cols, int load_c);
