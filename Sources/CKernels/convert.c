#include "CKernels.h"
#include <string.h>
#include <immintrin.h>

static inline uint32_t f32_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float bits_f32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

uint16_t ck_f32_to_bf16_scalar(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0xFFFFu; /* NaN: torch's vectorised CPU cast writes 0xFFFF */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE half -> single, exact. */
float ck_f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t out;
    if (exp == 0) {
        if (man == 0) { out = sign; }
        else { /* subnormal: value = man * 2^-24 */
            float v = (float)man * 5.9604644775390625e-8f;
            out = sign | f32_bits(v);
        }
    } else if (exp == 0x1F) {
        out = sign | 0x7F800000u | (man << 13);
    } else {
        out = sign | ((exp + 112u) << 23) | (man << 13);
    }
    return bits_f32(out);
}

/* IEEE single -> half, round to nearest even. */
uint16_t ck_f32_to_f16_scalar(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu)); /* NaN, quiet */
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);    /* rounds to >= 65520 -> inf */
    if (a < 0x38800000u) {                                       /* below 2^-14: subnormal or zero */
        if (a < 0x33000000u) return sign;                         /* < 2^-25: rounds to 0 */
        uint32_t e = a >> 23;                                     /* 102..112 */
        uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
        uint32_t shift = 126u - e;                                /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xFFFu + ((a >> 13) & 1u) - 0x38000000u;   /* rebias 127 -> 15 and round */
    return (uint16_t)(sign | (r >> 13));
}

/* ---- portable loops ---- */
static void bf16_to_f32_generic(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = bits_f32((uint32_t)s[i] << 16);
}
static void f32_to_bf16_generic(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ck_f32_to_bf16_scalar(s[i]);
}
static void f16_to_f32_generic(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ck_f16_to_f32_scalar(s[i]);
}
static void f32_to_f16_generic(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ck_f32_to_f16_scalar(s[i]);
}

/* ---- AVX2 / F16C ---- */
__attribute__((target("avx2")))
static void bf16_to_f32_avx2(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(d + i, _mm256_castsi256_ps(w));
    }
    bf16_to_f32_generic(s + i, d + i, n - i);
}

__attribute__((target("avx2")))
static void f32_to_bf16_avx2(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    const __m256i bias = _mm256_set1_epi32(0x7FFF), one = _mm256_set1_epi32(1);
    const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    const __m256i nanbits = _mm256_set1_epi32((int)0xFFFF0000u);
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(s + i));
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, lsb));
        __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
        __m256i nanv = nanbits;
        r = _mm256_blendv_epi8(r, nanv, isnan);
        r = _mm256_srli_epi32(r, 16);
        __m256i packed = _mm256_packus_epi32(r, r);                   /* lanes: [0..3,0..3 | 4..7,4..7] */
        packed = _mm256_permute4x64_epi64(packed, 0x08);              /* take qwords 0 and 2 */
        _mm_storeu_si128((__m128i *)(d + i), _mm256_castsi256_si128(packed));
    }
    f32_to_bf16_generic(s + i, d + i, n - i);
}

__attribute__((target("avx2,f16c")))
static void f16_to_f32_f16c(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    f16_to_f32_generic(s + i, d + i, n - i);
}

__attribute__((target("avx2,f16c")))
static void f32_to_f16_f16c(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(s + i);
        /* NaN lanes: F16C keeps NaN but may differ in payload; use the scalar rule for exactness. */
        __m256 nanmask = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
        if (_mm256_movemask_ps(nanmask)) { f32_to_f16_generic(s + i, d + i, 8); continue; }
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    f32_to_f16_generic(s + i, d + i, n - i);
}

static int cpu_level = -1; /* 0 generic, 1 avx2, 2 avx2+f16c */
static int level(void) {
    if (cpu_level < 0) {
        __builtin_cpu_init();
        int l = 0;
        if (__builtin_cpu_supports("avx2")) l = 1;
        if (l == 1 && __builtin_cpu_supports("f16c")) l = 2;
        cpu_level = l;
    }
    return cpu_level;
}

void ck_bf16_to_f32(const uint16_t *s, float *d, size_t n) {
    if (level() >= 1) bf16_to_f32_avx2(s, d, n); else bf16_to_f32_generic(s, d, n);
}
void ck_f32_to_bf16(const float *s, uint16_t *d, size_t n) {
    if (level() >= 1) f32_to_bf16_avx2(s, d, n); else f32_to_bf16_generic(s, d, n);
}
void ck_f16_to_f32(const uint16_t *s, float *d, size_t n) {
    if (level() >= 2) f16_to_f32_f16c(s, d, n); else f16_to_f32_generic(s, d, n);
}
void ck_f32_to_f16(const float *s, uint16_t *d, size_t n) {
    if (level() >= 2) f32_to_f16_f16c(s, d, n); else f32_to_f16_generic(s, d, n);
}
