/* sg_random_v3.c: sg_random.h's sg_rand_blocks compiled for x86-64-v3 (AVX2, FMA), as a
 * kernel built with -march=native on such a CPU compiled it when it was inline; sg_random.c
 * calls it there. Empty where sg_random.c keeps only the baseline (see there). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SG_NO_CLONES)
#pragma GCC target("arch=x86-64-v3")
#include "sg_support.h"
#define SG_RAND_BLOCKS_BODY
#define SG_RAND_BLOCKS sg_rand_blocks_v3
#define SG_RAND_BLOCKS_DECL
#include "sg_random.h"
#else
typedef int sg_random_v3_unused;
#endif
