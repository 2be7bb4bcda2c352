/* sg_rows_v4.c: sg_rows_impl.h compiled for x86-64-v4 (AVX-512, FMA; 256-bit
 * vectors preferred, as gcc's -march=native does on the AVX-512 CPUs it
 * knows), as a kernel built with -march=native on such a CPU compiles its
 * loops; sg_rows.c calls these there. Empty where sg_rows.c keeps only the
 * baseline (see there). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SG_NO_CLONES)
#pragma GCC target("arch=x86-64-v4,prefer-vector-width=256")
#define SG_ISA v4
#include "sg_rows_impl.h"
#else
typedef int sg_rows_v4_unused;
#endif
