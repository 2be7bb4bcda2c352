/* sg_rows_v3.c: sg_rows_impl.h compiled for x86-64-v3 (AVX2, FMA), as a kernel
 * built with -march=native on such a CPU compiles its loops; sg_rows.c calls
 * these there. Empty where sg_rows.c keeps only the baseline (see there). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SG_NO_CLONES)
#pragma GCC target("arch=x86-64-v3")
#define SG_ISA v3
#include "sg_rows_impl.h"
#else
typedef int sg_rows_v3_unused;
#endif
