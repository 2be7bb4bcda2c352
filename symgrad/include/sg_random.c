/* sg_random.c: the bodies of sg_random.h's library functions (see there). */
#include <stdlib.h>

#include "sg_support.h"
/* sg_rand_blocks: the baseline's here, x86-64-v3's and v4's in sg_random_v3.c and
 * sg_random_v4.c (as sg_rows.c does for its functions: the same instructions a kernel
 * compiled with -march=native on that CPU ran when the function was inline in kernels;
 * the words are the same on any of them). Elsewhere, and in a sanitizer build
 * (SG_NO_CLONES, compiled with the kernels' -march=native), one variant. */
#define SG_RAND_BLOCKS_BODY
#define SG_RAND_BLOCKS sg_rand_blocks_base
#define SG_RAND_BLOCKS_DECL
#include "sg_random.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SG_NO_CLONES)
void sg_rand_blocks_v3(uint64_t, uint64_t, uint64_t, int64_t, uint32_t *restrict);
void sg_rand_blocks_v4(uint64_t, uint64_t, uint64_t, int64_t, uint32_t *restrict);

static void (*sg__rand_blocks_fn)(uint64_t, uint64_t, uint64_t, int64_t, uint32_t *restrict) =
    sg_rand_blocks_base;

__attribute__((constructor)) static void sg__rand_pick(void)
{
    __builtin_cpu_init();
    sg__rand_blocks_fn = __builtin_cpu_supports("x86-64-v4")   ? sg_rand_blocks_v4
                         : __builtin_cpu_supports("x86-64-v3") ? sg_rand_blocks_v3
                                                               : sg_rand_blocks_base;
}

void sg_rand_blocks(uint64_t key, uint64_t pos, uint64_t c0, int64_t m, uint32_t *restrict w)
{
    sg__rand_blocks_fn(key, pos, c0, m, w);
}
#else
void sg_rand_blocks(uint64_t key, uint64_t pos, uint64_t c0, int64_t m, uint32_t *restrict w)
{
    sg_rand_blocks_base(key, pos, c0, m, w);
}
#endif

typedef struct {
    uint64_t word;
    int64_t index;
} sg__rand_pair;

static int sg__rand_cmp(const void *a, const void *b)
{
    const sg__rand_pair *x = (const sg__rand_pair *)a, *y = (const sg__rand_pair *)b;
    if (x->word != y->word)
        return x->word < y->word ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

int sg_rand_permutation(sg_err *err, const char *where, int64_t *out, int64_t n, int64_t key,
                        int64_t ctr, int64_t slot)
{
    if (n <= 0)
        return 0;
    sg__rand_pair *pairs = (size_t)n > SIZE_MAX / sizeof *pairs ? NULL : malloc((size_t)n * sizeof *pairs);
    if (pairs == NULL)
        return sg_fail(err, SG_ENOMEM, "%sout of memory for a permutation of %lld", where,
                       (long long)n);
    for (int64_t i = 0; i < n; i++) {
        sg_rand4 w = sg_rand_words((uint64_t)key, (uint64_t)ctr + (uint64_t)slot, (uint64_t)i);
        pairs[i].word = (uint64_t)w.w1 << 32 | w.w0;
        pairs[i].index = i;
    }
    qsort(pairs, (size_t)n, sizeof *pairs, sg__rand_cmp);
    for (int64_t i = 0; i < n; i++)
        out[i] = pairs[i].index;
    free(pairs);
    return 0;
}

void sg_rand_index(sg_arr *v, int nd, const int64_t *shape)
{
    int64_t c = 1;
    for (int k = nd - 1; k >= 0; k--) {
        v->shape[k] = shape[k];
        v->strides[k] = c;
        c *= shape[k];
    }
    v->data = (void *)SG_RAND_BASE;
}

void sg_rand_index_from(sg_arr *v, int nd, const int64_t *shape, int64_t start)
{
    sg_rand_index(v, nd, shape);
    v->data = (void *)(SG_RAND_BASE + (uintptr_t)start * 8u);
}
