#pragma once
#include <stddef.h>
#include <stdint.h>

/* Element-wise dtype conversions with runtime CPU dispatch (AVX-512/AVX2/F16C where present,
   portable C otherwise). All are exact or round-to-nearest-even, matching torch's CPU casts:
   - bf16 -> f32: exact (bits << 16).
   - f32 -> bf16: round to nearest, ties to even; every NaN becomes 0xFFFF (a NaN), as torch's vectorised cast does.
   - f16 -> f32: exact, subnormals included.
   - f32 -> f16: round to nearest, ties to even; overflow to +-inf; NaN stays NaN (sign and top payload bits
     kept, quiet bit set), as F16C and torch do. */
void ck_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void ck_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void ck_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void ck_f32_to_f16(const float *src, uint16_t *dst, size_t n);

/* Scalar helpers (same rounding as the bulk routines). */
uint16_t ck_f32_to_bf16_scalar(float x);
float ck_f16_to_f32_scalar(uint16_t h);
uint16_t ck_f32_to_f16_scalar(float x);

/* ---- Optimizer kernels (optimizer.c) ---- */

/* The per-step scalars of an AdamW update, each already rounded to f32 as torch passes them to its f32 ops. */
typedef struct {
    float decay;                  /* 1 - lr*wd */
    float lerp_weight;            /* w = 1 - beta1, or w - 1 when lerp_from_end (torch's lerp for |w| >= 0.5) */
    int lerp_from_end;
    float beta2, one_minus_beta2;
    float bias_correction2_sqrt;  /* sqrt(1 - beta2^t) */
    float eps;
    float negative_step_size;     /* -lr / (1 - beta1^t) */
} ck_adamw_step;

/* AdamW on n elements in one pass, as torch's single-tensor path (apply_decay: p *= decay first):
   m = fma(w, g - m, from_end ? g : m); v = fma((1-b2)*g, g, v*b2); p += (step*m) / (sqrt(v)/bc2 + eps). */
void ck_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const ck_adamw_step *k,
                     int apply_decay);

/* Sum of x[i]^2 in f64 (sixteen lanes, fixed order: the same result on every CPU). */
double ck_sum_squares(const float *x, size_t n);

/* ---- Kernel paths (cpu.c) ----
   Every transformer kernel below exists as portable C, AVX2+FMA (8 lanes) and AVX-512 F/BW/VL/DQ (16 lanes). The
   un-suffixed functions run the active path: the best the CPU supports, or a lower one named by the environment
   variable LONGCTX_KERNELS=portable|avx2|avx512 (read once; a path the CPU lacks is ignored). The `_on` variants
   take the path explicitly (tests run each one the CPU supports); passing an unsupported path is undefined. */
#define CK_PATH_PORTABLE 0
#define CK_PATH_AVX2 1
#define CK_PATH_AVX512 2
int ck_path_supported(int path);
int ck_path_active(void);
const char *ck_path_name(int path);
/* 1 when the CPU has AVX-512 (as above) and AVX512-VNNI / AVX512-BF16 respectively. */
int ck_cpu_avx512_vnni(void);
int ck_cpu_avx512_bf16(void);
/* The CPU's flags that matter to these kernels, space-separated ("avx2 fma f16c avx512f ..."), NUL-terminated. */
void ck_cpu_flags(char *buf, size_t n);

/* ---- Fork-join pool for short parallel regions (parallel.c) ----
   ck_parallel_run calls fn(ctx, i) once for every i in 0 ..< n, on the calling thread and on up to threads - 1
   helper threads (no more than the CPUs the process may run on, in all; started on first use, kept; idle helpers
   spin about 0.4 ms, then sleep, as does a caller waiting that long for the last index), and returns when all
   calls have returned: 1. Returns 0 without calling anything when the pool is running another job (a nested or
   concurrent call: run the work some other way) or n does not fit in 32 bits. Which thread runs which index is
   not fixed: results must not depend on it. */
typedef void (*ck_parallel_fn)(void *ctx, size_t index);
int ck_parallel_run(size_t n, size_t threads, ck_parallel_fn fn, void *ctx);

/* ---- Transformer kernels (attention.c, kernels_avx512.c) ----
   All f32, row-major. */

/* y[i] = exp(x[i]) for n values (Cephes-style range reduction + degree-5 polynomial, < 2 ulp). */
void ck_exp(const float *x, float *y, size_t n);
void ck_exp_on(int path, const float *x, float *y, size_t n);

/* One online-softmax step of blockwise attention (flash-attention style) over a score block.
   S: rows x cols scores (already scaled), row stride ld, overwritten with P = exp(S - m_new) (0 outside the
   valid range). Row r may use columns [lo[r], hi[r]) only. m, l: running max and sum per row (start -inf, 0),
   updated. corr[r] receives exp(m_old - m_new), the factor by which the row's running output must be scaled
   (1 when the row has seen no valid score yet). */
void ck_softmax_block(float *S, size_t rows, size_t cols, size_t ld, const int32_t *lo, const int32_t *hi,
                      float *m, float *l, float *corr);
void ck_softmax_block_on(int path, float *S, size_t rows, size_t cols, size_t ld, const int32_t *lo,
                         const int32_t *hi, float *m, float *l, float *corr);

/* gate[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up. */
void ck_silu_mul(float *gate, const float *up, size_t n);
void ck_silu_mul_on(int path, float *gate, const float *up, size_t n);

/* RMSNorm per row: y = w * (x / sqrt(mean(x^2) + eps)); x, y: rows x n (may alias). */
void ck_rmsnorm(const float *x, const float *w, float *y, size_t rows, size_t n, float eps);
void ck_rmsnorm_on(int path, const float *x, const float *w, float *y, size_t rows, size_t n, float eps);

/* RoPE in place (transformers' half-split `x·cos + rotate_half(x)·sin`): row t's `heads` head vectors (head h at
   base + t*stride + h*hd, hd floats) are rotated by row t of cos/sin (rows x rd, rd <= hd even): for j < rd/2,
   x1 = v[j], x2 = v[j + rd/2]: v[j] = x1*cos[j] - x2*(sign*sin[j]), v[j+rd/2] = x2*cos[j+rd/2] + x1*(sign*sin[j+rd/2])
   (products rounded, then the difference/sum: the same on every path); channels rd..<hd pass through.
   sin_sign -1 applies the transpose (the backward of RoPE). */
void ck_rope(float *base, size_t rows, size_t stride, size_t heads, size_t hd, const float *cos, const float *sin,
             size_t rd, float sin_sign);
void ck_rope_on(int path, float *base, size_t rows, size_t stride, size_t heads, size_t hd, const float *cos,
                const float *sin, size_t rd, float sin_sign);

/* ---- Fused attention tile (attention.c; AVX-512 steps in kernels_avx512.c) ----
   True when ck_attention_tile can run here: the active path is AVX2 or AVX-512 and the head dimension is a
   multiple of 8. The `_on` form asks for a given path (the portable path has no fused tile: 0). */
int ck_attention_fused_available(size_t hd);
int ck_attention_fused_available_on(int path, size_t hd);

/* Floats of workspace ck_attention_tile needs for `rows` = queries x group query rows and key blocks of `kb`. */
size_t ck_attention_scratch(size_t rows, size_t hd, size_t kb);

/* Floats needed by ck_attention_pack for `blocks` key blocks of `kb` keys. */
size_t ck_attention_packed_size(size_t blocks, size_t hd, size_t kb);

/* Packs key blocks b0 ..< b1 (block b = keys b*kb ..< min(keys, (b+1)*kb)) of one key/value head for
   ck_attention_tile: keys in panels of 6 ([d][6]), values in strips of 16 channels ([key][16]), zero-padded.
   k, v: key/value index t at k + t*hd, v + t*hd; `keys` of them are valid. Block b lands at
   packed + (b - b0) * (ck_attention_packed_size(1, hd, kb)). */
void ck_attention_pack(const float *k, const float *v, size_t keys, size_t hd, size_t kb, size_t b0, size_t b1,
                       float *packed);

/* Attention of `queries` consecutive query positions, each with `group` heads sharing one key/value head, against
   that head's keys and values, blockwise with an online softmax (flash-attention style), fused in registers:
   S^T = K·Q^T·scale (6 keys x 16 query rows per register tile), the running max/sum down the key axis (base 2),
   and O = O·corr + P·V (6 rows x 16 channels per register tile).
   - q: query i, head j at q + i*q_stride + j*hd (hd floats).
   - packed: the head's keys/values from ck_attention_pack, starting at block first_block.
   - key_lo[i] <= t < key_hi[i]: the keys query i may see (causal limit, sliding window); all inside the packed
     blocks.
   - kb: keys per block (as packed).
   - out: query i, head j written (normalised) at out + i*out_stride + j*hd; a query that sees no key gets 0.
   - lse (may be NULL): natural log-sum-exp of the scaled scores of query i, head j at lse[i*lse_stride + j]
     (row order, as the outputs); -inf when no key.
   - scratch: ck_attention_scratch(queries*group, hd, kb) floats.
   Matches softmax(QK^T·scale + mask)·V to f32 rounding (exp2: Cephes polynomial, relative error < 2e-7). */
void ck_attention_tile(const float *q, size_t q_stride, size_t queries, size_t group, size_t hd, float scale,
                       const float *packed, size_t first_block, const int32_t *key_lo, const int32_t *key_hi,
                       size_t kb, float *out, size_t out_stride, float *lse, size_t lse_stride, float *scratch);
void ck_attention_tile_on(int path, const float *q, size_t q_stride, size_t queries, size_t group, size_t hd,
                          float scale, const float *packed, size_t first_block, const int32_t *key_lo,
                          const int32_t *key_hi, size_t kb, float *out, size_t out_stride, float *lse,
                          size_t lse_stride, float *scratch);

/* ---- One-query attention straight from the cache (attention_decode.c; AVX-512 steps in kernels_avx512.c) ----
   Attention of one query position's `group` heads (rows of hd floats at q + j*hd) that share one key/value head,
   against that head's keys and values k, v (key i at k + i*hd, v + i*hd) for keys lo ..< hi, without packing
   them (decoding): blocks of CK_DECODE_BLOCK keys, scores q·k·scale, an online softmax, out += p·v with each key and
   value row read once per four heads of the group (larger groups run in chunks of four). Writes out (group rows of
   hd floats at out + j*hd; must not overlap q) = the softmax-
   weighted values, and lse[j] (when lse is not NULL) = the natural-log normaliser, the layout
   BlockwiseAttention.mergePartial takes; an empty range gives zeros and -INFINITY. Portable C on any hd; AVX2
   when hd is a multiple of 8, AVX-512 when a multiple of 16 (else the next lower path). Matches softmax(q·Kᵀ·scale)·V
   (transformers' eager attention over the visible keys) to f32 rounding. */
#define CK_DECODE_BLOCK 128
void ck_attention_decode(const float *q, size_t group, size_t hd, float scale, const float *k, const float *v,
                         size_t lo, size_t hi, float *out, float *lse);
void ck_attention_decode_on(int path, const float *q, size_t group, size_t hd, float scale, const float *k,
                            const float *v, size_t lo, size_t hi, float *out, float *lse);

/* ---- Quantized matrix-vector products for decoding (quant.c) ----
   A rows x k matrix (k a multiple of 32) in blocks of 32 along k, stored split for vector loads:
     Q8_0: wq int8 [rows][k], wd float [rows][k/32]; element = wq * wd.
     Q4_0: wq uint8 [rows][k/2], wd float [rows][k/32]; byte i (0..15) of block b holds element b*32+i in its low
           nibble and b*32+16+i in its high nibble; element = (nibble - 8) * wd (GGUF Q4_0's order and offset).
     Q4_1: as Q4_0 plus wm float [rows][k/32]; element = nibble * wd + wm.
   Activations x (k floats) are quantized with ck_q8_quantize (per block: d = max|x|/127, q = round(x/d)).
   Every quantizer here stores its block scales (and Q4_1's minimums) rounded to f16, as GGUF and ggml do; the
   integer codes are computed with the unrounded f32 scale, as in ggml's reference quantizers.
   y[r] = sum_b wd[r][b] * xd[b] * (exact integer dot product of block b): the integer part is exact on every path,
   so paths differ only in the f32 summation order of the scaled block products.
   Paths: portable C; AVX2 (vpmaddubsw/vpmaddwd); AVX-512 with VNNI (vpdpbusd), or AVX2's kernel when the CPU has
   AVX-512 without VNNI. */
void ck_q8_quantize(const float *x, size_t n, int8_t *q, float *d);
/* GGUF Q4_0's quantization of n floats (per block: d = v/-8 for the v of largest magnitude, nibble =
   min(15, trunc(x/d + 8.5))). */
void ck_q4_quantize(const float *x, size_t n, uint8_t *q, float *d);
void ck_q8_matvec(const int8_t *wq, const float *wd, size_t rows, size_t k, const int8_t *xq, const float *xd,
                  float *y);
void ck_q8_matvec_on(int path, const int8_t *wq, const float *wd, size_t rows, size_t k, const int8_t *xq,
                     const float *xd, float *y);
/* GGUF Q4_1's quantization (per block: m = min, d = (max - min)/15, nibble = min(15, trunc((x - m)/d + 0.5))).
   Re-quantizing weights dequantized from Q4_1 gives back the same nibbles, d and m. */
void ck_q4_1_quantize(const float *x, size_t n, uint8_t *q, float *d, float *m);
/* Q4_0 when wm is NULL; Q4_1 (element = nibble * wd + wm) otherwise. The offset term (Q4_1's m; Q4_0's -8·wd on
   the AVX-512 path, where the portable and AVX2 paths subtract 8 inside the integer dot) is added as
   m·x_d·Σ x_q per block in f32. */
void ck_q4_matvec(const uint8_t *wq, const float *wd, const float *wm, size_t rows, size_t k, const int8_t *xq,
                  const float *xd, float *y);
void ck_q4_matvec_on(int path, const uint8_t *wq, const float *wd, const float *wm, size_t rows, size_t k,
                     const int8_t *xq, const float *xd, float *y);
/* GGUF Q5_0's quantization (d = v/-16 for the v of largest magnitude, code = min(31, trunc(x/d + 16.5))), each
   code stored as the int8 (code - 16) in Q8_0 layout (q int8 [n], d float [n/32]): Q5_0's values, run by the Q8_0
   kernels. The engine's fallback where a row is not a multiple of 256 for Q4_K, as llama.cpp falls back to Q5_0. */
void ck_q5_0_quantize(const float *x, size_t n, int8_t *q, float *d);
/* Q4_K (ours, split for vector loads): a rows x k matrix, k a multiple of 256 (super-blocks of 8 sub-blocks of 32):
     qs uint8 [rows][k/2]        sub-block j's 16 bytes as Q4_0's (element i low nibble, element i+16 high nibble),
     sm uint8 [rows][k/256][16]  the 6-bit scales sc[0..7], then the 6-bit offsets m[0..7] (unpacked),
     dm float [rows][k/256][2]   d, dmin (f16 values, as GGUF stores them);
   element = (d·sc_j)·nibble − dmin·m_j, the f32 products rounded as ggml's and gguf-py's dequantization round them.
   ck_q4k_quantize: our quantizer (per sub-block: min/max fit of scale and offset with offset >= 0, refined by up
   to 4 least-squares refits of (scale, offset) given the codes; then d = max scale/63 and dmin = max offset/63
   rounded to f16, 6-bit sc and m rounded to nearest, codes chosen against the stored d·sc and dmin·m).
   ck_q4k_from_ggml: nblocks GGUF Q4_K blocks (144 bytes: f16 d, f16 dmin, 12 bytes of packed 6-bit scales/mins,
   128 bytes of nibbles, element 64i + 32s + l = nibble s of byte 32i + l) into this layout, values unchanged.
   ck_q4k_matvec: y = W·x on Q8_0 activations; per row the sub-blocks' d·sc and −dmin·m are expanded and the row
   runs the Q4_1 kernel of the path (so the integer dots are exact and paths differ in f32 summation order only). */
void ck_q4k_quantize(const float *x, size_t n, uint8_t *qs, uint8_t *sm, float *dm);
void ck_q4k_from_ggml(const uint8_t *blocks, size_t nblocks, uint8_t *qs, uint8_t *sm, float *dm);
void ck_q4k_matvec(const uint8_t *qs, const uint8_t *sm, const float *dm, size_t rows, size_t k, const int8_t *xq,
                   const float *xd, float *y);
void ck_q4k_matvec_on(int path, const uint8_t *qs, const uint8_t *sm, const float *dm, size_t rows, size_t k,
                      const int8_t *xq, const float *xd, float *y);

/* ---- Prefill attention on AMX tiles for the bf16 compute mode (attention_amx.c) ----
   The same function as ck_attention_tile (causal/sliding-window/document ranges per query, GQA groups, lse) with
   bf16 inputs and f32 accumulation: Q, K, V rounded to nearest-even bf16, S = Q·Kᵀ and O += P·V on tdpbf16ps,
   the online softmax on the f32 scores with AVX-512 (base 2), P rounded to bf16 before P·V; the normaliser sums the
   unrounded f32 probabilities. Keys in blocks of CK_ATTENTION_AMX_KEY_BLOCK. */
#define CK_ATTENTION_AMX_KEY_BLOCK 64
/* 1 when the AMX kernel runs here: ck_gemm_amx_available() and hd a multiple of 32, at most 256. */
int ck_attention_amx_available(size_t hd);
/* uint16 values of ck_attention_amx_pack's output for `blocks` key blocks (2 · 64 · hd per block). */
size_t ck_attention_amx_packed_count(size_t blocks, size_t hd);
/* Packs key blocks b0 ..< b1 (block b = keys 64b ..< 64b + 64, zero past `keys`) of one key/value head, rounded to
   bf16, as the kernel's B operands (layout in attention_amx.c); block b at packed + (b − b0)·128·hd.
   k, v: key/value index t at k + t·hd, v + t·hd. */
void ck_attention_amx_pack(const float *k, const float *v, size_t keys, size_t hd, size_t b0, size_t b1,
                           uint16_t *packed);
/* Bytes of workspace ck_attention_amx_tile needs for `rows` = queries × group query rows. */
size_t ck_attention_amx_scratch(size_t rows, size_t hd);
/* Arguments as ck_attention_tile's (packed from ck_attention_amx_pack, blocks of 64 keys from first_block, scratch
   ck_attention_amx_scratch bytes). Returns -1 (nothing written) where ck_attention_amx_available(hd) is 0. */
int ck_attention_amx_tile(const float *q, size_t q_stride, size_t queries, size_t group, size_t hd, float scale,
                          const uint16_t *packed, size_t first_block, const int32_t *key_lo, const int32_t *key_hi,
                          float *out, size_t out_stride, float *lse, size_t lse_stride, void *scratch);

/* ---- bf16 matrix products, f32 accumulation (gemm_bf16.c) ----
   C[m × n] (+)= A[m × k] · Wᵀ with W a PyTorch Linear weight [n × k] (row-major) packed by ck_bf16_pack into panels
   of 16 output features (layout in gemm_bf16.c); A row-major bf16 with row stride lda and ceil(k/2)·2 readable
   columns per row (an odd k needs a zero pad column). Products of bf16 values are exact in f32 and summed in f32,
   so |C − A·Wᵀ| ≤ k·2⁻²³·Σ|a·w| against the exact product of the bf16 inputs. Only output panels p0 ..< p1 (columns
   16·p0 ..< min(n, 16·p1)) are written, so disjoint panel ranges can run on separate threads. path:
   CK_BF16_AMX (tdpbf16ps on 2 × 2 tiles of 16 × 16; returns -1 without ck_gemm_amx_available() or out of memory;
   copies A in blocks of 256 rows, so any lda and m work), CK_BF16_AVX512 (vdpbf16ps; returns -1 without
   avx512_bf16) or CK_BF16_PORTABLE (one product at a time). Every path sums each output in its own order, so
   results differ between paths by f32 rounding only. */
#define CK_BF16_PORTABLE 0
#define CK_BF16_AVX512 1
#define CK_BF16_AMX 2
size_t ck_bf16_packed_count(size_t n, size_t k);
void ck_bf16_pack(const uint16_t *w, size_t n, size_t k, uint16_t *packed);
int ck_bf16_gemm(const uint16_t *a, size_t lda, size_t m, size_t k, const uint16_t *packed, size_t n, size_t p0,
                 size_t p1, float *c, size_t ldc, int accumulate, int path);

/* ---- Fused attention backward (attention_backward.c) ----
   The best level of ck_attention_backward_tile this CPU runs for head dimension hd: 0 none (no AVX2+FMA, or hd not
   a multiple of 8), 1 AVX2+FMA, 2 AVX-512F product kernels (same results to f32 rounding). */
int ck_attention_backward_level(size_t hd);

/* Floats needed by ck_attention_backward_pack for `blocks` key blocks of `kb` keys. */
size_t ck_attention_backward_packed_size(size_t blocks, size_t hd, size_t kb);

/* Packs key blocks b0 ..< b1 (block b = keys b*kb ..< min(keys, (b+1)*kb)) of one key/value head for
   ck_attention_backward_tile: keys in panels of 6 ([d][6]) and in strips of 16 channels ([key][16]), values in
   panels of 6, zero-padded. k, v: key/value index t at k + t*hd, v + t*hd. Block b lands at
   packed + (b - b0) * ck_attention_backward_packed_size(1, hd, kb). */
void ck_attention_backward_pack(const float *k, const float *v, size_t keys, size_t hd, size_t kb, size_t b0,
                                size_t b1, float *packed);

/* Floats of workspace ck_attention_backward_tile needs for `rows` = queries x group query rows, key blocks of kb. */
size_t ck_attention_backward_scratch(size_t rows, size_t hd, size_t kb);

/* The gradients of attention (softmax(QK^T·scale + mask)·V) for `queries` consecutive query positions, each with
   `group` heads sharing one key/value head, against that head's keys/values, FlashAttention-2 style: per key block
   P = exp(S - lse) is recomputed from the forward's final log-sum-exp, dS = P ⊙ (dO·V^T - rowsum(dO ⊙ O)), and
   dQ += dS·K·scale, dK += dS^T·Q·scale, dV += P^T·dO, all in register tiles (no score matrix beyond one block).
   - q, o, dout: query i, head j at q + i*q_stride + j*hd (likewise o, dout): the forward's queries (after RoPE),
     its output and the output gradient.
   - lse: the forward's natural log-sum-exp of query i, head j at lse[i*lse_stride + j] (-inf: the row saw no key
     and gets no gradient).
   - packed: the head's keys/values from ck_attention_backward_pack, starting at block first_block.
   - key_lo[i] <= t < key_hi[i]: the key indices query i sees (causal limit, window, document start), all inside
     the packed blocks.
   - dq: added to at dq + i*dq_stride + j*hd; dk, dv: key index t's gradient added to at dk + t*hd, dv + t*hd.
   - scratch: ck_attention_backward_scratch(queries*group, hd, kb) floats.
   - level: 1 (AVX2+FMA) or 2 (AVX-512F), at most ck_attention_backward_level(hd).
   Matches torch autograd of that function to f32 rounding (exp2: relative error < 2e-7). */
void ck_attention_backward_tile(const float *q, size_t q_stride, const float *o, size_t o_stride, const float *dout,
                                size_t dout_stride, const float *lse, size_t lse_stride, size_t queries, size_t group,
                                size_t hd, float scale, const float *packed, size_t first_block,
                                const int32_t *key_lo, const int32_t *key_hi, size_t kb, float *dq, size_t dq_stride,
                                float *dk, float *dv, float *scratch, int level);

/* ---- Single-precision GEMM (sgemm.c) ----
   C[m × n] ← α·op(A)·op(B) + β·C, row-major; op(A) is m × k (A stored k × m with row stride lda when trans_a), op(B)
   is k × n (stored n × k when trans_b). C is not read when β = 0. Packed-panel blocking with AVX-512 (14 × 32 tiles)
   or AVX2+FMA (6 × 16) register tiles; no portable path (use BLAS). Each C element is summed by one thread in a
   fixed k order, so the bits do not depend on the number of workers.
   Threaded use, workers given by the caller: blocks = ck_sgemm_begin(...); for each block b in 0 ..< blocks:
   ck_sgemm_block(&job, b) on the calling thread, then ck_sgemm_pack(&job, p, P) for p in 0 ..< P (concurrently,
   P ≤ ck_sgemm_pack_parts), then, after all of them, ck_sgemm_compute(&job, p, P) for p in 0 ..< P (concurrently,
   P ≤ ck_sgemm_compute_parts). The packed B lives in the calling thread's scratch until its next ck_sgemm_begin. */
/* ck_sgemm's AMX path (a gemm path, not a KernelPath): f32 products as bf16x3 on AMX tiles (sgemm_amx.c), α = 1 and
   β ∈ {0, 1} only (ck_sgemm_begin returns -1 otherwise, as on a CPU without AMX or without the kernel's permission). */
#define CK_SGEMM_AMX 3
/* Overrides the AMX path's blocking for later jobs (benchmarks only; 0 keeps a value): largest k block (rounded up to
   32), A slice in 32-row tiles, largest n block (rounded up to 32). Not thread-safe against running jobs. */
void ck_sgemm_amx_blocking(size_t kc, size_t mc_tiles, size_t nc);
/* 1 when the AMX path can run here (AMX-TILE, AMX-BF16, AVX512-BF16 and the tile state granted), else 0. */
int ck_gemm_amx_available(void);
/* Benchmark probes (sgemm_amx.c), seconds or -1 without AMX: `iterations` × 4 TDPBF16PS on resident tiles (the tile
   unit's peak); `reps` bf16x3 32 × 32 tiles over `chunks` chunks of 32 k values (packed operands in cache). */
double ck_amx_probe_dp(size_t iterations);
double ck_amx_probe_tile(size_t chunks, size_t reps);
typedef struct {
    int path, trans_a, trans_b, first;
    size_t m, n, k;
    float alpha, beta;
    const float *a;
    size_t lda;
    const float *b;
    size_t ldb;
    float *c;
    size_t ldc;
    size_t mr, nr, mc, kc, nc, k_blocks, n_blocks;
    size_t j0, nb, p0, kb;  /* the current block */
    float *packed_b;
} ck_sgemm_job;
/* Sets up the job; returns the number of blocks (0 when m or n is 0), -1 when the CPU lacks `path` (or it is
   CK_PATH_PORTABLE), -2 when out of memory. */
int ck_sgemm_begin(ck_sgemm_job *job, int path, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                   const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc);
/* Makes `block` (n block major, k blocks in increasing order) the current one. */
void ck_sgemm_block(ck_sgemm_job *job, size_t block);
/* Most useful worker counts for the two phases of the current block (B panels; MR-row tiles of C). */
size_t ck_sgemm_pack_parts(const ck_sgemm_job *job);
size_t ck_sgemm_compute_parts(const ck_sgemm_job *job);  /* row tiles, or half the B panels if more */
void ck_sgemm_pack(const ck_sgemm_job *job, size_t part, size_t parts);
/* 0, or -2 when out of memory. */
int ck_sgemm_compute(const ck_sgemm_job *job, size_t part, size_t parts);
/* The whole product on the calling thread; 0, -1 or -2 as ck_sgemm_begin. */
int ck_sgemm(int path, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
             size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc);
