/* CPU features and the choice of kernel path, made once per process. */
#include "CKernels.h"
#include "cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

int ck_cpu_avx2_fma(void) {
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        level = (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
    }
    return level;
}

int ck_cpu_avx512(void) {
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        level = (ck_cpu_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                 && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) ? 1 : 0;
    }
    return level;
}

int ck_cpu_avx512_vnni(void) {
    __builtin_cpu_init();
    return ck_cpu_avx512() && __builtin_cpu_supports("avx512vnni");
}

int ck_cpu_avx512_bf16(void) {
    __builtin_cpu_init();
    return ck_cpu_avx512() && __builtin_cpu_supports("avx512bf16");
}

int ck_cpu_amx(void) {
    static int level = -1;
    if (level < 0) {
        unsigned a = 0, b = 0, c = 0, d = 0;
        /* CPUID.(7,0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE. */
        int ok = ck_cpu_avx512() && __builtin_cpu_supports("avx512bf16") && __get_cpuid_count(7, 0, &a, &b, &c, &d)
                 && (d >> 22 & 1) && (d >> 24 & 1);
        /* Linux grants the tile data state (XFEATURE_XTILEDATA = 18) per process on request
           (ARCH_REQ_XCOMP_PERM = 0x1023); without it the first tile instruction faults. */
        if (ok) ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
        level = ok;
    }
    return level;
}

int ck_gemm_amx_available(void) { return ck_cpu_amx(); }

int ck_path_supported(int path) {
    switch (path) {
    case CK_PATH_PORTABLE: return 1;
    case CK_PATH_AVX2: return ck_cpu_avx2_fma();
    case CK_PATH_AVX512: return ck_cpu_avx512();
    default: return 0;
    }
}

const char *ck_path_name(int path) {
    switch (path) {
    case CK_PATH_PORTABLE: return "portable";
    case CK_PATH_AVX2: return "avx2";
    case CK_PATH_AVX512: return "avx512";
    default: return "unknown";
    }
}

int ck_path_current(void) {
    static int path = -1;
    if (path < 0) {
        int best = ck_cpu_avx512() ? CK_PATH_AVX512 : ck_cpu_avx2_fma() ? CK_PATH_AVX2 : CK_PATH_PORTABLE;
        const char *want = getenv("LONGCTX_KERNELS");
        if (want && *want) {
            for (int p = CK_PATH_PORTABLE; p <= CK_PATH_AVX512; p++)
                if (strcmp(want, ck_path_name(p)) == 0 && p < best) best = p;
        }
        path = best;
    }
    return path;
}

int ck_path_active(void) { return ck_path_current(); }

void ck_cpu_flags(char *buf, size_t n) {
    if (n == 0) return;
    buf[0] = 0;
    __builtin_cpu_init();
    struct { const char *name; int on; } flags[] = {
        {"avx2", __builtin_cpu_supports("avx2")}, {"fma", __builtin_cpu_supports("fma")},
        {"f16c", __builtin_cpu_supports("f16c")}, {"avx512f", __builtin_cpu_supports("avx512f")},
        {"avx512bw", __builtin_cpu_supports("avx512bw")}, {"avx512vl", __builtin_cpu_supports("avx512vl")},
        {"avx512dq", __builtin_cpu_supports("avx512dq")}, {"avx512_vnni", __builtin_cpu_supports("avx512vnni")},
        {"avx512_bf16", __builtin_cpu_supports("avx512bf16")}, {"amx_bf16", ck_cpu_amx()},
    };
    size_t used = 0;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (!flags[i].on) continue;
        int w = snprintf(buf + used, n - used, "%s%s", used ? " " : "", flags[i].name);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
}
