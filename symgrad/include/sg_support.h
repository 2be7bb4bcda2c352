/* sg_support.h: what sg_kernel.c and sg_ops.c, the support library's
 * sources, share. Kernels do not include it.
 *
 * The library is built once, at install time, for whatever x86-64 CPU the
 * package may run on (a wheel moves between machines), so it cannot use
 * -march=native as kernels do. SG_VEC marks its loop-heavy functions (copies,
 * sums, extremes, ...): gcc compiles each of them for AVX-512 (x86-64-v4),
 * AVX2 (x86-64-v3) and the baseline, and the dynamic loader picks the best
 * one the CPU has when the library is loaded (an ifunc). Elsewhere, and with
 * SG_NO_CLONES (the copy built with a sanitizer's flags, and -march=native,
 * for kernels built with them: symgrad/compiler.py), SG_VEC is empty.
 */
#ifndef SG_SUPPORT_H
#define SG_SUPPORT_H

/* Kernels' static helpers of the headers (sg_loops.h's loop drivers) are not all used here. */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#endif

#include "sg_kernel.h"

#define SG_VEC
#if defined(__x86_64__) && defined(__GNUC__) && !defined(SG_NO_CLONES) && defined(__has_attribute)
#if __has_attribute(target_clones)
#undef SG_VEC
#if defined(__clang__)
#define SG_VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SG_VEC __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#endif

#endif
