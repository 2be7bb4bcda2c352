/* sg_drivers.c: the bodies of sg_drivers.h's functions (see there), compiled
 * once into the support library. */
#include "sg_support.h"
#include "sg_drivers.h"


typedef struct {
    sg_row_fn row;
    const void *aux;
    char *out;
    size_t out_item;
    char *const *base;
    const size_t *item;  /* element sizes (flags cleared) */
    const char *index;   /* index carriers of a dense loop (SG_EW_INDEX) */
    const char *flat;    /* operands with the result's strides (sg_ew_across) */
    int m, cnd;
    int64_t n, inner;
    const int64_t *sh;
    int64_t (*st)[SG_MAXDIM];
    int bad, dense, across;
    int64_t blk; /* elements a block (SG_BLOCK, less for a short loop on threads) */
} sg_ew_job;

/* Row `row`'s index over the axes 0..nd-2 of `shape` into `idx`, and the element
 * offset of its first element for each of the nops operands into `off`. */
static inline void sg_row_start(int64_t row, int nd, const int64_t *shape, int nops,
                                int64_t (*st)[SG_MAXDIM], int64_t *idx, int64_t *off)
{
    for (int p = 0; p < nops; p++)
        off[p] = 0;
    for (int k = nd - 2; k >= 0; k--) {
        idx[k] = row % shape[k];
        row /= shape[k];
        for (int p = 0; p < nops; p++)
            off[p] += idx[k] * st[p][k];
    }
}

/* The next row: `idx` and `off` stepped by one row (no division: a loop of short
 * rows, such as pooling windows, pays a few adds per row). */
static inline void sg_row_next(int nd, const int64_t *shape, int nops, int64_t (*st)[SG_MAXDIM],
                               int64_t *idx, int64_t *off)
{
    for (int k = nd - 2; k >= 0; k--) {
        idx[k]++;
        for (int p = 0; p < nops; p++)
            off[p] += st[p][k];
        if (idx[k] < shape[k])
            return;
        idx[k] = 0;
        for (int p = 0; p < nops; p++)
            off[p] -= st[p][k] * shape[k];
    }
}

/* Elements of `size` bytes: n of them from `src` (element stride `s`) to `dst`, packed;
 * s = 0 repeats the one value. */
static void sg_ew_gather(char *dst, const char *src, int64_t s, int64_t n, size_t size)
{
    switch (size) {
#define SG__GATHER(T)                                                                       \
    {                                                                                       \
        T *d = (T *)dst;                                                                    \
        const T *a = (const T *)src;                                                        \
        if (s == 0) {                                                                       \
            const T v = a[0];                                                               \
            _Pragma("omp simd") for (int64_t j = 0; j < n; j++)                             \
                d[j] = v;                                                                   \
        } else                                                                              \
            for (int64_t j = 0; j < n; j++)                                                 \
                d[j] = a[j * s];                                                            \
        return;                                                                             \
    }
    case 1: SG__GATHER(uint8_t)
    case 2: SG__GATHER(uint16_t)
    case 4: SG__GATHER(uint32_t)
    case 8: SG__GATHER(uint64_t)
#undef SG__GATHER
    default:
        for (int64_t j = 0; j < n; j++)
            memcpy(dst + (size_t)j * size, src + j * s * (int64_t)size, size);
    }
}

/* The packed elements of `src` to `dst` (element stride `s`). */
static void sg_ew_scatter(char *dst, const char *src, int64_t s, int64_t n, size_t size)
{
    switch (size) {
#define SG__SCATTER(T)                                                                      \
    {                                                                                       \
        T *d = (T *)dst;                                                                    \
        const T *a = (const T *)src;                                                        \
        for (int64_t j = 0; j < n; j++)                                                     \
            d[j * s] = a[j];                                                                \
        return;                                                                             \
    }
    case 1: SG__SCATTER(uint8_t)
    case 2: SG__SCATTER(uint16_t)
    case 4: SG__SCATTER(uint32_t)
    case 8: SG__SCATTER(uint64_t)
#undef SG__SCATTER
    default:
        for (int64_t j = 0; j < n; j++)
            memcpy(dst + j * s * (int64_t)size, src + (size_t)j * size, size);
    }
}

static int64_t sg_ew_chunk(int m);

/* One row of a dense loop (SG_EW_DENSE) that is not all unit strides: blocks of at most
 * `chunk` elements, each strided operand copied into its block of `buf` ((m + 1) blocks of
 * `chunk` 8-byte elements), each broadcast one's value repeated there (once a row), the
 * result computed into its block and written back when strided. The operands are read
 * before the result is written, as an elementwise loop may do in place. */
static int sg_ew_copied(sg_row_fn row, const void *aux, int64_t n, void *const *p,
                        const int64_t *s, int m, size_t out_item, const size_t *item,
                        const char *index, char *buf, int64_t chunk)
{
    void *q[m + 1];
    int64_t u[m + 1];
    int bad = 0;
    for (int k = 0; k <= m; k++)
        u[k] = 1;
    for (int64_t jb = 0; jb < n; jb += chunk) {
        const int64_t c = n - jb < chunk ? n - jb : chunk;
        for (int k = 1; k <= m; k++) {
            const size_t it = item[k - 1];
            char *blk = buf + (size_t)k * (size_t)chunk * 8;
            if (index && index[k - 1]) {
                q[k] = (char *)p[k] + jb * s[k] * 8;
                u[k] = s[k];
            } else if (s[k] == 1) {
                q[k] = (char *)p[k] + jb * (int64_t)it;
            } else {
                if (s[k] != 0 || jb == 0)
                    sg_ew_gather(blk, (const char *)p[k] + jb * s[k] * (int64_t)it, s[k],
                                 s[k] ? c : (n < chunk ? n : chunk), it);
                q[k] = blk;
            }
        }
        q[0] = s[0] == 1 ? (void *)((char *)p[0] + jb * (int64_t)out_item) : (void *)buf;
        bad |= row(c, q, u, aux);
        if (s[0] != 1)
            sg_ew_scatter((char *)p[0] + jb * s[0] * (int64_t)out_item, buf, s[0], c, out_item);
    }
    return bad;
}

int sg_ew_row(sg_row_fn row, const void *aux, int64_t n, void *const *p, const int64_t *s,
              int m, size_t out_item, const size_t *item)
{
    int unit = s[0] == 1;
    for (int k = 1; k <= m; k++)
        unit &= s[k] == 1;
    if (unit)
        return row(n, p, s, aux);
    const int64_t chunk = sg_ew_chunk(m);
    _Alignas(64) char buf[(m + 1) * chunk * 8];
    return sg_ew_copied(row, aux, n, p, s, m, out_item, item, NULL, buf, chunk);
}

/* Elements a block of sg_ew_copied and sg_ew_across: (m + 1) blocks of 8-byte elements
 * take 32 KB of the stack at most (up to 1024 elements a block for 3 operands, 256 for 15). */
static int64_t sg_ew_chunk(int m)
{
    int64_t chunk = 256;
    while (chunk > 1 && (m + 1) * chunk * 8 > 32768)
        chunk /= 2;
    return chunk;
}

/* The elements [e, e + c) of an operand of a dense loop of short rows, in the result's
 * order, packed into `dst`: from row index `idx` (over the axes before the last, cnd - 1
 * of them), element `j` of the row, whose element offset at the row's start is `o`
 * (`sh`, `st`: the collapsed shape and the operand's strides). Whole rows along the
 * axis before the last go in a loop of its own (rows of 2 are 2 copies apart). */
#define SG__ACROSS(T)                                                                       \
    {                                                                                       \
        T *d = (T *)dst;                                                                    \
        const T *a = (const T *)src;                                                        \
        for (int64_t pos = 0; pos < c;) {                                                   \
            int64_t rows = j ? 0 : (c - pos) / inner;                                       \
            if (rows > sh[cnd - 2] - ix[cnd - 2])                                           \
                rows = sh[cnd - 2] - ix[cnd - 2];                                           \
            if (rows > 0) {                                                                 \
                for (int64_t r = 0; r < rows; r++)                                          \
                    for (int64_t i = 0; i < inner; i++)                                     \
                        d[pos + r * inner + i] = a[o + r * s1 + i * s];                     \
                pos += rows * inner;                                                        \
                o += rows * s1;                                                             \
                ix[cnd - 2] += rows;                                                        \
            } else {                                                                        \
                const int64_t cnt = inner - j < c - pos ? inner - j : c - pos;              \
                for (int64_t i = 0; i < cnt; i++)                                           \
                    d[pos + i] = a[o + (j + i) * s];                                        \
                pos += cnt;                                                                 \
                j += cnt;                                                                   \
                if (j < inner)                                                              \
                    continue;                                                               \
                j = 0;                                                                      \
                o += s1;                                                                    \
                ix[cnd - 2]++;                                                              \
            }                                                                               \
            if (ix[cnd - 2] < sh[cnd - 2])                                                  \
                continue;                                                                   \
            ix[cnd - 2] = 0; /* the carry into the axes before */                         \
            o -= s1 * sh[cnd - 2];                                                          \
            for (int t = cnd - 3; t >= 0; t--) {                                            \
                o += st[t];                                                                 \
                if (++ix[t] < sh[t])                                                        \
                    break;                                                                  \
                ix[t] = 0;                                                                  \
                o -= st[t] * sh[t];                                                         \
            }                                                                               \
        }                                                                                   \
        return;                                                                             \
    }

static void sg_ew_pack(char *dst, const char *src, size_t size, int64_t c, int cnd,
                       const int64_t *sh, const int64_t *st, const int64_t *idx, int64_t o,
                       int64_t j)
{
    const int64_t inner = sh[cnd - 1], s = st[cnd - 1], s1 = st[cnd - 2];
    int64_t ix[SG_MAXDIM];
    for (int t = 0; t < cnd - 1; t++)
        ix[t] = idx[t];
    switch (size) {
    case 1: SG__ACROSS(uint8_t)
    case 2: SG__ACROSS(uint16_t)
    case 4: SG__ACROSS(uint32_t)
    case 8: SG__ACROSS(uint64_t)
    default: /* complex numbers: element by element */
        for (int64_t pos = 0; pos < c; pos++) {
            memcpy(dst + (size_t)pos * size, src + (o + j * s) * (int64_t)size, size);
            if (++j == inner) {
                j = 0;
                for (int t = cnd - 2; t >= 0; t--) {
                    o += st[t];
                    if (++ix[t] < sh[t])
                        break;
                    ix[t] = 0;
                    o -= st[t] * sh[t];
                }
            }
        }
    }
}
#undef SG__ACROSS

/* Elements [b0, b1) * g->blk of a dense loop of short rows (sg_ew_loop's `across`): in
 * blocks of up to SG_EW_CHUNK elements in the result's order, across rows. An operand
 * laid out as the result (`flat`: the same strides; random index carriers are) is read
 * in place, the others packed into the block (sg_ew_pack); the result, which is
 * C-contiguous, is written in place. One call of the row function per block instead
 * of one per row of a few elements. */
static void sg_ew_across(sg_ew_job *g, int64_t b0, int64_t b1)
{
    const int m = g->m;
    int64_t off[m + 1], u[m + 1], idx[SG_MAXDIM];
    void *q[m + 1];
    int bad = 0;
    for (int k = 0; k <= m; k++)
        u[k] = 1;
    int64_t e = b0 * g->blk, end = g->n - e < (b1 - b0) * g->blk ? g->n : b1 * g->blk;
    const int64_t chunk = sg_ew_chunk(m);
    _Alignas(64) char buf[(m + 1) * chunk * 8];
    for (; e < end; e += chunk) {
        const int64_t c = end - e < chunk ? end - e : chunk, row = e / g->inner;
        sg_row_start(row, g->cnd, g->sh, m + 1, g->st, idx, off);
        q[0] = g->out + e * (int64_t)g->out_item;
        for (int k = 0; k < m; k++) {
            if (g->flat[k]) {
                q[k + 1] = g->base[k] + e * (int64_t)g->item[k];
                continue;
            }
            q[k + 1] = buf + (size_t)(k + 1) * (size_t)chunk * 8;
            sg_ew_pack((char *)q[k + 1], g->base[k], g->item[k], c, g->cnd, g->sh, g->st[k],
                       idx, off[k], e - row * g->inner);
        }
        bad |= g->row(c, q, u, g->aux);
    }
    if (bad)
        __atomic_store_n(&g->bad, 1, __ATOMIC_RELAXED);
}

static void sg_ew_blocks(void *arg, int64_t b0, int64_t b1)
{
    sg_ew_job *g = (sg_ew_job *)arg;
    if (g->across) {
        sg_ew_across(g, b0, b1);
        return;
    }
    const int m = g->m;
    int64_t off[m + 1], s[m + 1], idx[SG_MAXDIM];
    void *p[m + 1];
    int bad = 0;
    /* the result is operand m of the strides (C order, unless the last two axes
     * were swapped: then its rows are strided too) */
    s[0] = g->st[m][g->cnd - 1];
    for (int q = 0; q < m; q++)
        s[q + 1] = g->st[q][g->cnd - 1];
    int64_t e = b0 * g->blk, end = g->n - e < (b1 - b0) * g->blk ? g->n : b1 * g->blk;
    if (e >= end)
        return;
    /* a dense loop's rows that are not all unit strides go through blocks of copies: the
     * same for every row (the strides along rows are the loop's) */
    int copied = 0;
    if (g->dense) {
        copied = s[0] != 1;
        for (int q = 0; q < m; q++)
            copied |= !g->index[q] && s[q + 1] != 1;
    }
    const int64_t chunk = sg_ew_chunk(m);
    _Alignas(64) char buf[copied ? (m + 1) * chunk * 8 : 1];
    /* the first row by division, the others by stepping */
    int64_t row = e / g->inner, j0 = e - row * g->inner;
    sg_row_start(row, g->cnd, g->sh, m + 1, g->st, idx, off);
    while (e < end) {
        int64_t cnt = g->inner - j0 < end - e ? g->inner - j0 : end - e;
        p[0] = g->out + (off[m] + j0 * s[0]) * (int64_t)g->out_item;
        for (int q = 0; q < m; q++)
            p[q + 1] = g->base[q] + (off[q] + j0 * s[q + 1]) * (int64_t)g->item[q];
        bad |= copied ? sg_ew_copied(g->row, g->aux, cnt, p, s, m, g->out_item, g->item,
                                     g->index, buf, chunk)
                      : g->row(cnt, p, s, g->aux);
        e += cnt;
        j0 += cnt;
        if (j0 == g->inner) {
            j0 = 0;
            sg_row_next(g->cnd, g->sh, m + 1, g->st, idx, off);
        }
    }
    if (bad)
        __atomic_store_n(&g->bad, 1, __ATOMIC_RELAXED);
}

/* A thread's share of a short loop: whole vectors (64 bytes of 4-byte elements: the
 * row function's vector loop, and cache lines of the result, not split among threads),
 * at least SG_EW_MIN_BLOCK elements. */
#define SG_EW_VEC 16
#define SG_EW_MIN_BLOCK 1024

/* Rows of at most SG_SHORT_ROW elements are short: sg_ew_loop runs along the
 * axis before, when it is longer and the two axes together hold at most
 * SG_SHORT_TILE elements (so the passes along it, one per element of the short
 * axis, find the same cache lines: a (10^7, 4) array keeps its rows of 4). */
#define SG_SHORT_ROW 4
#define SG_SHORT_TILE 4096
/* A dense loop's rows shorter than this run across rows in blocks (sg_ew_across). */
#define SG_EW_SHORT 64

/* An elementwise loop writing the C-contiguous `out` of shape `shape` (ndim
 * nd, already allocated) from the m operands `ops` (descriptors of ndim
 * nds[q], elements of item[q] bytes), broadcast to `shape`, on `threads`
 * threads (the kernel passes 1 for loops too short to repay waking the
 * pool: sg_loops.h's SG_PAR_WORK). Sets *bad when an element is a value
 * error. When the innermost collapsed axis is short (a pooling window's last
 * axis, 2 long, with the kept axes broadcast across it), every row would cost
 * a call and the loop's set-up for a couple of elements: the last two axes are
 * then swapped, so rows run along the longer axis, strided (the result too);
 * each element's value is the same in any order. A dense loop (SG_EW_DENSE, the
 * generated kernels') runs short rows across rows in blocks instead (sg_ew_across),
 * and copies what is not at unit stride along long ones (sg_ew_copied). */
void sg_ew_loop(sg_ws *ws, int threads, int nd, const int64_t *shape, void *out,
                       size_t out_item, int m, const sg_arr *const *ops, const int *nds,
                       const size_t *item, sg_row_fn row, const void *aux, int *bad)
{
    sg_ew_loop_to(ws, threads, nd, shape, out, NULL, out_item, m, ops, nds, item, row, aux,
                  bad);
}

void sg_ew_loop_to(sg_ws *ws, int threads, int nd, const int64_t *shape, void *out,
                   const int64_t *ost, size_t out_item, int m, const sg_arr *const *ops,
                   const int *nds, const size_t *item, sg_row_fn row, const void *aux,
                   int *bad)
{
    int64_t n = 1;
    for (int k = 0; k < nd; k++)
        n *= shape[k];
    if (n == 0)
        return;
    int64_t sh[SG_MAXDIM], st[m + 1][SG_MAXDIM];
    char *base[m > 0 ? m : 1], index[m > 0 ? m : 1];
    size_t size[m > 0 ? m : 1];
    const int dense = (out_item & SG_EW_DENSE) != 0;
    out_item &= ~(SG_EW_DENSE | SG_EW_INDEX);
    for (int k = 0; k < nd; k++)
        sh[k] = shape[k];
    for (int q = 0; q < m; q++) {
        sg_broadcast_strides(st[q], ops[q], nds[q], shape, nd);
        base[q] = (char *)ops[q]->data;
        index[q] = (item[q] & SG_EW_INDEX) != 0;
        size[q] = item[q] & ~(SG_EW_DENSE | SG_EW_INDEX);
    }
    /* the result's strides: C order, unless given (then rows across rows are not in
     * order in memory: no sg_ew_across) */
    int c_order = 1;
    for (int k = nd - 1, c = 1; k >= 0; k--) {
        st[m][k] = ost ? ost[k] : c;
        c_order &= st[m][k] == c || shape[k] == 1;
        c *= shape[k];
    }
    int cnd = sg_collapse(nd, sh, m + 1, st);
    /* A dense loop whose rows are short and read an operand not laid out as the result
     * runs across rows in blocks (sg_ew_across), unless a random index carrier is not
     * laid out as the result either: its elements' indices are not consecutive then. */
    char flat[m > 0 ? m : 1];
    int across = 0;
    if (dense && c_order && cnd >= 2 && sh[cnd - 1] < SG_EW_SHORT) {
        int index_flat = 1;
        for (int q = 0; q < m; q++) {
            flat[q] = 1;
            for (int k = 0; k < cnd; k++)
                flat[q] &= st[q][k] == st[m][k];
            across |= !flat[q];
            index_flat &= flat[q] || !index[q];
        }
        across &= index_flat;
    }
    if (!dense && cnd >= 2 && sh[cnd - 1] <= SG_SHORT_ROW && sh[cnd - 2] > sh[cnd - 1] &&
        sh[cnd - 2] * sh[cnd - 1] <= SG_SHORT_TILE) {
        int64_t t = sh[cnd - 1];
        sh[cnd - 1] = sh[cnd - 2];
        sh[cnd - 2] = t;
        for (int q = 0; q <= m; q++) {
            t = st[q][cnd - 1];
            st[q][cnd - 1] = st[q][cnd - 2];
            st[q][cnd - 2] = t;
        }
    }
    /* Blocks of SG_BLOCK elements; a loop of fewer than `threads` of them (a step of a
     * loop, sg.scan: the kernel passes threads for less work there, sg_loops.h) in one
     * block a thread, of whole vectors. Each element's value is the same either way. */
    int64_t blk = SG_BLOCK;
    if (threads > 1 && n < threads * blk) {
        blk = ((n + threads - 1) / threads + SG_EW_VEC - 1) / SG_EW_VEC * SG_EW_VEC;
        if (blk < SG_EW_MIN_BLOCK)
            blk = SG_EW_MIN_BLOCK;
    }
    sg_ew_job g = {row, aux, (char *)out, out_item, base, size, index, flat, m, cnd, n,
                   sh[cnd - 1], sh, st, 0, dense, across, blk};
    int64_t nb = (n + blk - 1) / blk;
    if (threads > 1)
        ws->parallel_for(nb, threads, sg_ew_blocks, &g);
    else
        sg_ew_blocks(&g, 0, nb);
    *bad = g.bad;
}


typedef struct {
    sg_acc_fn row;
    const void *aux;
    double *acc;
    const sg_arr *const *ops;
    const size_t *item;
    int m, cnd;
    int64_t inner, so, rows, per;
    const int64_t *sh, *s;
    int64_t (*st)[SG_MAXDIM];
    int bad;
} sg_acc_job;

/* Elements [b0, b1) * per of an accumulating loop (per = n: the whole loop, row by
 * row). A row is cut only where nothing is summed (so != 0): then each element is
 * its own accumulator's one value, wherever the row is cut. */
static void sg_acc_rows(void *arg, int64_t b0, int64_t b1)
{
    sg_acc_job *g = (sg_acc_job *)arg;
    const int m = g->m;
    int64_t off[m + 1], idx[SG_MAXDIM], n = g->rows * g->inner;
    void *p[m > 0 ? m : 1];
    int64_t e = b0 * g->per, end = b1 * g->per < n ? b1 * g->per : n;
    int flag = 0;
    if (e >= end)
        return;
    int64_t row = e / g->inner, j0 = e - row * g->inner;
    sg_row_start(row, g->cnd, g->sh, m + 1, g->st, idx, off);
    while (e < end) {
        int64_t cnt = g->inner - j0 < end - e ? g->inner - j0 : end - e;
        for (int q = 0; q < m; q++)
            p[q] = (char *)g->ops[q]->data + (off[q] + j0 * g->s[q]) * (int64_t)g->item[q];
        flag |= g->row(cnt, p, g->s, g->aux, g->acc + off[m] + j0 * g->so, g->so);
        e += cnt;
        j0 += cnt;
        if (j0 == g->inner) {
            j0 = 0;
            sg_row_next(g->cnd, g->sh, m + 1, g->st, idx, off);
        }
    }
    if (flag)
        __atomic_fetch_or(&g->bad, flag, __ATOMIC_RELAXED);
}

/* sg_acc_loop, its elements shared among `ws`'s threads when nothing is summed: every
 * collapsed axis of the value reaches the accumulators (a sum_to whose target turns
 * out to have the value's shape, which the graph could not prove: bench_cnn's
 * residual block's gradient, 2M elements, about 15 ms a step on one thread of two,
 * perf on the loaded machine). Each accumulator then receives one value, so the split
 * cannot change a bit; a real sum keeps its rows whole and in order on one thread. */
static void sg_acc_loop_on(sg_ws *ws, int nd, const int64_t *xs, int64_t n, double *acc,
                           const int64_t *ost, int m, const sg_arr *const *ops, const int *nds,
                           const size_t *item, sg_acc_fn row, const void *aux, int *bad)
{
    if (n <= 0)
        return;
    int64_t sh[SG_MAXDIM], st[m + 1][SG_MAXDIM], s[m > 0 ? m : 1];
    for (int k = 0; k < nd; k++) {
        sh[k] = xs[k];
        st[m][k] = ost[k];
    }
    for (int q = 0; q < m; q++)
        sg_broadcast_strides(st[q], ops[q], nds[q], xs, nd);
    int cnd = sg_collapse(nd, sh, m + 1, st);
    const int64_t inner = sh[cnd - 1];
    for (int q = 0; q < m; q++)
        s[q] = st[q][cnd - 1];
    sg_acc_job g = {row, aux, acc, ops, item, m, cnd, inner, st[m][cnd - 1], n / inner, n,
                    sh, s, st, 0};
    int summed = 0;
    for (int k = 0; k < cnd; k++)
        summed |= sh[k] > 1 && st[m][k] == 0;
    int threads = ws && ws->parallel_for && !summed && n >= SG_PAR_WORK / 8
                      ? sg_blas_threads() : 1;
    if (threads > 1) {
        g.per = SG_BLOCK;
        int64_t nb = (n + SG_BLOCK - 1) / SG_BLOCK;
        ws->parallel_for(nb, threads < nb ? threads : (int)nb, sg_acc_rows, &g);
    } else
        sg_acc_rows(&g, 0, 1);
    *bad = g.bad;
}

/* An accumulating loop over the broadcast shape `xs` (ndim nd) of its value,
 * computed from the m operands `ops`: each element is added into
 * acc[its offset under the strides `ost`] (0 along the axes summed away).
 * Rows run along the innermost collapsed axis, in order. Sets *bad when an
 * element is a value error. The caller checked that the elements can be
 * counted (sg_loop_count). */
void sg_acc_loop(int nd, const int64_t *xs, int64_t n, double *acc, const int64_t *ost,
                        int m, const sg_arr *const *ops, const int *nds, const size_t *item,
                        sg_acc_fn row, const void *aux, int *bad)
{
    sg_acc_loop_on(NULL, nd, xs, n, acc, ost, m, ops, nds, item, row, aux, bad);
}

/* Updates written over their variable's memory (codegen/render_c.py): clear
 * don[q], and so write update q into fresh memory, when one of the nr values
 * the updates read overlaps the memory W[q] of update q's variable. */
void sg_drop_overlapping(int nr, const sg_arr *const *r, const int *rn, const size_t *ri,
                                int nw, const sg_arr *const *w, const int *wn, const size_t *wi,
                                int *don)
{
    for (int k = 0; k < nr; k++)
        for (int q = 0; q < nw; q++)
            if (don[q] && sg_overlaps(r[k], rn[k], ri[k], w[q], wn[q], wi[q]))
                don[q] = 0;
}

/* An accumulation's result, from its value's broadcast shape `xs` (ndim nd):
 * kind 0 sums and 1 averages over the axes flagged in `reduced` (kept as
 * length 1 with `keepdims`), kind 2 sums down to the shape `target` of ndim
 * `on` (sum_to: it must be a broadcast of the last axes of `xs`). Allocates
 * `out` (ndim on, elements of `item` bytes: 4 for float, 8 for double; `own`
 * as for sg_alloc), adds every value into double accumulators -- `out` itself
 * for a double result, else workspace memory rounded into `out` once at the
 * end -- through sg_acc_loop, and divides a mean by its count (0/0 is NaN,
 * as in NumPy). Sets *bad when an element is a value error. */
int sg_acc_run(sg_err *err, const char *where, sg_ws *ws, int kind, int nd,
                      const int64_t *xs, const int *reduced, int keepdims, const int64_t *target,
                      int on, sg_arr *out, size_t item, void **own, int m,
                      const sg_arr *const *ops, const int *nds, const size_t *items,
                      sg_acc_fn row, const void *aux, int *bad)
{
    int64_t ost[SG_MAXDIM], count = 1, n = 1;
    if (kind == 2) {
        const int lead = nd - on;
        for (int k = 0; k < on; k++)
            if (target[k] != xs[lead + k] && target[k] != 1) {
                char a[96], b[96];
                return sg_fail(err, SG_ESHAPE, "%sshape %s is not a broadcast of %s", where,
                               sg_shape_str(a, sizeof a, &xs[lead], on),
                               sg_shape_str(b, sizeof b, target, on));
            }
        for (int k = 0; k < on; k++)
            out->shape[k] = target[k];
    } else {
        for (int k = 0, j = 0; k < nd; k++)
            if (!reduced[k])
                out->shape[j++] = xs[k];
            else if (keepdims)
                out->shape[j++] = 1;
    }
    if (sg_alloc(err, where, ws, out, on, item, own))
        return err->code;
    if (kind == 2) {
        const int lead = nd - on;
        for (int k = 0; k < lead; k++)
            ost[k] = 0;
        for (int k = 0; k < on; k++)
            ost[lead + k] = (target[k] == 1 && xs[lead + k] != 1) ? 0 : out->strides[k];
    } else {
        for (int k = 0, j = 0; k < nd; k++) {
            ost[k] = reduced[k] ? 0 : out->strides[j];
            j += !reduced[k] || keepdims;
            count *= kind == 1 && reduced[k] ? xs[k] : 1;
        }
    }
    const int64_t n_out = sg_size(out, on);
    double *acc = item == sizeof(double) ? (double *)out->data
                                         : (double *)sg_ws_alloc(ws, (size_t)n_out * sizeof(double));
    if (!acc)
        return sg_fail(err, SG_ENOMEM, "%sout of memory", where);
    memset(acc, 0, (size_t)n_out * sizeof(double));
    /* The value may be a broadcast of more elements than int64 counts: refuse it
     * rather than let the count wrap. */
    for (int k = 0; k < nd && n != 0; k++) {
        if (xs[k] == 0)
            n = 0;
        else if (n > INT64_MAX / xs[k]) {
            char s[160];
            return sg_fail(err, SG_ESHAPE, "%sa loop over the %d-d shape %s is too large", where,
                           nd, sg_shape_str(s, sizeof s, xs, nd));
        } else
            n *= xs[k];
    }
    sg_acc_loop_on(ws, nd, xs, n, acc, ost, m, ops, nds, items, row, aux, bad);
    if (item != sizeof(double)) {
        float *o = (float *)out->data;
        for (int64_t i = 0; i < n_out; i++)
            o[i] = (float)(count == 1 ? acc[i] : acc[i] / (double)count);
    } else if (kind == 1) {
        for (int64_t i = 0; i < n_out; i++)
            acc[i] /= (double)count;
    }
    return 0;
}

