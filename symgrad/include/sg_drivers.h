/* sg_drivers.h: the parts of a kernel every fused loop shares.
 *
 * The code generator (codegen/render_c.py) writes, per fused loop, only what
 * is its own: a row function evaluating the loop's scalar expressions along
 * one run of the innermost axis. Broadcasting, collapsing axes (sg_loops.h),
 * blocks and threads are the drivers' below, written once. Kernels include
 * this header after sg_kernel.h.
 */
#ifndef SG_DRIVERS_H
#define SG_DRIVERS_H

#include "sg_kernel.h"
#include "sg_loops.h"

/* One row of an elementwise loop: `n` elements; p[0] is the result (unit
 * stride), p[1 + q] loaded operand q, whose element stride along the row is
 * s[1 + q]. `aux` holds the loop's hoisted scalars. Returns nonzero when an
 * element is a value error (an integer to a negative integer power). */
typedef int (*sg_row_fn)(int64_t n, void *const *p, const int64_t *s, const void *aux);

typedef struct {
    sg_row_fn row;
    const void *aux;
    char *out;
    size_t out_item;
    char *const *base;
    const size_t *item;
    int m, cnd;
    int64_t n, inner;
    const int64_t *sh;
    int64_t (*st)[SG_MAXDIM];
    int bad;
} sg_ew_job;

static void sg_ew_blocks(void *arg, int64_t b0, int64_t b1)
{
    sg_ew_job *g = (sg_ew_job *)arg;
    const int m = g->m;
    int64_t off[m + 1], s[m + 1];
    void *p[m + 1];
    int bad = 0;
    s[0] = 1;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t e = blk * SG_BLOCK, end = g->n - e < SG_BLOCK ? g->n : e + SG_BLOCK;
        while (e < end) {
            int64_t row = e / g->inner, j0 = e - row * g->inner;
            int64_t cnt = g->inner - j0 < end - e ? g->inner - j0 : end - e;
            sg_row_offsets(row, g->cnd, g->sh, m, g->st, off);
            p[0] = g->out + (size_t)e * g->out_item;
            for (int q = 0; q < m; q++) {
                s[q + 1] = g->st[q][g->cnd - 1];
                p[q + 1] = g->base[q] + (off[q] + j0 * s[q + 1]) * (int64_t)g->item[q];
            }
            bad |= g->row(cnt, p, s, g->aux);
            e += cnt;
        }
    }
    if (bad)
        __atomic_store_n(&g->bad, 1, __ATOMIC_RELAXED);
}

/* An elementwise loop writing the C-contiguous `out` of shape `shape` (ndim
 * nd, already allocated) from the m operands `ops` (descriptors of ndim
 * nds[q], elements of item[q] bytes), broadcast to `shape`, on `threads`
 * threads (the kernel passes 1 for loops too short to repay waking the
 * pool: sg_loops.h's SG_PAR_WORK). Sets *bad when an element is a value
 * error. */
static void sg_ew_loop(sg_ws *ws, int threads, int nd, const int64_t *shape, void *out,
                       size_t out_item, int m, const sg_arr *const *ops, const int *nds,
                       const size_t *item, sg_row_fn row, const void *aux, int *bad)
{
    int64_t n = 1;
    for (int k = 0; k < nd; k++)
        n *= shape[k];
    if (n == 0)
        return;
    int64_t sh[SG_MAXDIM], st[m > 0 ? m : 1][SG_MAXDIM];
    char *base[m > 0 ? m : 1];
    for (int k = 0; k < nd; k++)
        sh[k] = shape[k];
    for (int q = 0; q < m; q++) {
        sg_broadcast_strides(st[q], ops[q], nds[q], shape, nd);
        base[q] = (char *)ops[q]->data;
    }
    int cnd = sg_collapse(nd, sh, m, st);
    sg_ew_job g = {row, aux, (char *)out, out_item, base, item, m, cnd, n, sh[cnd - 1], sh, st, 0};
    int64_t nb = (n + SG_BLOCK - 1) / SG_BLOCK;
    if (threads > 1)
        ws->parallel_for(nb, threads, sg_ew_blocks, &g);
    else
        sg_ew_blocks(&g, 0, nb);
    *bad = g.bad;
}

/* One row of an accumulating loop: the values of its `n` elements (operand
 * q at p[q], element stride s[q]) added into the double accumulators `o`,
 * of stride `so` along the row (0: all into o[0], a horizontal sum).
 * Returns nonzero when an element is a value error. */
typedef int (*sg_acc_fn)(int64_t n, void *const *p, const int64_t *s, const void *aux,
                         double *o, int64_t so);

/* An accumulating loop over the broadcast shape `xs` (ndim nd) of its value,
 * computed from the m operands `ops`: each element is added into
 * acc[its offset under the strides `ost`] (0 along the axes summed away).
 * Rows run along the innermost collapsed axis, in order. Sets *bad when an
 * element is a value error. The caller checked that the elements can be
 * counted (sg_loop_count). */
static void sg_acc_loop(int nd, const int64_t *xs, int64_t n, double *acc, const int64_t *ost,
                        int m, const sg_arr *const *ops, const int *nds, const size_t *item,
                        sg_acc_fn row, const void *aux, int *bad)
{
    if (n <= 0)
        return;
    int64_t sh[SG_MAXDIM], st[m + 1][SG_MAXDIM], off[m + 1], s[m > 0 ? m : 1];
    void *p[m > 0 ? m : 1];
    for (int k = 0; k < nd; k++) {
        sh[k] = xs[k];
        st[m][k] = ost[k];
    }
    for (int q = 0; q < m; q++)
        sg_broadcast_strides(st[q], ops[q], nds[q], xs, nd);
    int cnd = sg_collapse(nd, sh, m + 1, st);
    const int64_t inner = sh[cnd - 1], so = st[m][cnd - 1];
    for (int q = 0; q < m; q++)
        s[q] = st[q][cnd - 1];
    int flag = 0;
    for (int64_t e = 0; e < n; e += inner) {
        sg_row_offsets(e / inner, cnd, sh, m + 1, st, off);
        for (int q = 0; q < m; q++)
            p[q] = (char *)ops[q]->data + off[q] * (int64_t)item[q];
        flag |= row(inner, p, s, aux, acc + off[m], so);
    }
    *bad = flag;
}

/* Updates written over their variable's memory (codegen/render_c.py): clear
 * don[q], and so write update q into fresh memory, when one of the nr values
 * the updates read overlaps the memory W[q] of update q's variable. */
static void sg_drop_overlapping(int nr, const sg_arr *const *r, const int *rn, const size_t *ri,
                                int nw, const sg_arr *const *w, const int *wn, const size_t *wi,
                                int *don)
{
    for (int k = 0; k < nr; k++)
        for (int q = 0; q < nw; q++)
            if (don[q] && sg_overlaps(r[k], rn[k], ri[k], w[q], wn[q], wi[q]))
                don[q] = 0;
}

#endif
