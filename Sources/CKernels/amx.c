/* Intel AMX (Advanced Matrix Extensions) availability: the CPU's AMX-TILE and AMX-BF16 bits (CPUID leaf 7) and the
   Linux kernel's permission to use the tile data state, requested once per process (arch_prctl
   ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA; the permission is process-wide, so every thread may then use tiles).
   Without that permission the first tile instruction raises SIGILL, so every AMX kernel asks ck_cpu_amx_bf16()
   first. LONGCTX_AMX=0 in the environment turns AMX off (read once). */
#include "CKernels.h"
#include "cpu.h"
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define CK_ARCH_REQ_XCOMP_PERM 0x1023
#define CK_XFEATURE_XTILEDATA 18
#endif

static int amx_cpuid(void) {
#if defined(__x86_64__) && defined(__linux__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return ((d >> 24) & 1) && ((d >> 22) & 1); /* AMX-TILE, AMX-BF16 */
#else
    return 0;
#endif
}

int ck_cpu_amx_bf16_present(void) { return amx_cpuid(); }

int ck_cpu_amx_bf16(void) {
    static int state = -1;
    if (state < 0) {
        int ok = amx_cpuid() && ck_cpu_avx512();
        const char *env = getenv("LONGCTX_AMX");
        if (env && strcmp(env, "0") == 0) ok = 0;
#if defined(__x86_64__) && defined(__linux__)
        if (ok) ok = syscall(SYS_arch_prctl, CK_ARCH_REQ_XCOMP_PERM, CK_XFEATURE_XTILEDATA) == 0;
#endif
        state = ok;
    }
    return state;
}
