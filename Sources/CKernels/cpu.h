/* CPU feature checks shared by the kernels (private to CKernels). */
#pragma once

/* 1 when the CPU has AVX2 and FMA (checked once), else 0. */
int ck_cpu_avx2_fma(void);
