/* sg_index.c: the bodies of sg_index.h's functions (see there), compiled once
 * into the support library. The loops themselves (a gather's, a scatter's, a
 * region update's, the conversions) are sg_rows.c's and sg_ops.c's; what is
 * here resolves an index, places its dims, and picks those loops. */
#include "sg_support.h"

enum { SG_IX_NEW, SG_IX_SLICE, SG_IX_REST };

/* ---- resolving an index ---- */

void sg_index_begin(sg_index *ix, const sg_arr *x, int xnd)
{
    ix->xnd = xnd;
    ix->axis = ix->nent = ix->nbasic = ix->nint = ix->narr = ix->nadv = 0;
    ix->nb = ix->nd = 0;
    memcpy(ix->xshape, x->shape, (size_t)xnd * sizeof(int64_t));
}

static int sg__ix_basic(sg_index *ix, int kind, int axis, int64_t start, int64_t step,
                        int64_t len)
{
    int k = ix->nbasic++;
    ix->bkind[k] = kind, ix->bax[k] = axis;
    ix->bstart[k] = start, ix->bstep[k] = step, ix->blen[k] = len;
    return k;
}

/* An entry that joins the advanced group once an index array is present. */
static void sg__ix_advanced(sg_index *ix)
{
    ix->adv_entry[ix->nadv] = ix->nent;
    ix->adv_before[ix->nadv++] = ix->nbasic;
}

int sg_index_int(sg_err *err, const char *where, sg_index *ix, int64_t i)
{
    int axis = ix->axis++;
    int64_t wrapped;
    int rc = sg_wrap_index(err, where, i, axis, ix->xshape[axis], &wrapped);
    if (rc)
        return rc;
    ix->iax[ix->nint] = axis;
    ix->ival[ix->nint++] = wrapped;
    sg__ix_advanced(ix);
    ix->nent++;
    return 0;
}

int sg_index_slice(sg_err *err, const char *where, sg_index *ix, int given, int64_t start,
                   int64_t stop, int64_t step)
{
    int axis = ix->axis++;
    int64_t s[3];
    int rc = sg_slice(err, where, ix->xshape[axis], given, start, stop, step, s);
    if (rc)
        return rc;
    sg__ix_basic(ix, SG_IX_SLICE, axis, s[0], s[1], s[2]);
    ix->nent++;
    return 0;
}

void sg_index_new(sg_index *ix)
{
    sg__ix_basic(ix, SG_IX_NEW, -1, 0, 0, 1);
    ix->nent++;
}

void sg_index_ellipsis(sg_index *ix) { ix->nent++; }

int sg_index_array(sg_err *err, const char *where, sg_index *ix, const sg_arr *v, int nd,
                   size_t item)
{
    int axis = ix->axis++;
    int rc = sg_check_indices(err, where, v, nd, item, axis, ix->xshape[axis]);
    if (rc)
        return rc;
    int a = ix->narr++;
    ix->arr[a] = v, ix->arrnd[a] = nd, ix->aax[a] = axis, ix->aitem[a] = item;
    sg__ix_advanced(ix);
    ix->nent++;
    return 0;
}

/* The index arrays' broadcast shape and their strides over it; a ShapeError
 * naming every array's shape when they do not broadcast together. */
static int sg__ix_broadcast(sg_err *err, const char *where, sg_index *ix)
{
    int nb = 0;
    for (int a = 0; a < ix->narr; a++)
        nb = ix->arrnd[a] > nb ? ix->arrnd[a] : nb;
    ix->nb = nb;
    for (int j = 0; j < nb; j++)
        ix->bshape[j] = 1;
    for (int a = 0; a < ix->narr; a++) {
        if (sg_broadcast_into(ix->bshape, nb, ix->arr[a]->shape, ix->arrnd[a]) < 0)
            continue;
        char all[1024], one[96];
        size_t used = 0;
        all[0] = 0;
        for (int b = 0; b < ix->narr && used < sizeof all; b++)
            used += (size_t)snprintf(all + used, sizeof all - used, b ? " and %s" : "%s",
                                     sg_shape_str(one, sizeof one, ix->arr[b]->shape,
                                                  ix->arrnd[b]));
        return sg_fail(err, SG_ESHAPE, "%sindex arrays of shapes %s cannot be broadcast together",
                       where, all);
    }
    for (int a = 0; a < ix->narr; a++)
        sg_broadcast_strides(ix->ast[a], ix->arr[a], ix->arrnd[a], ix->bshape, nb);
    return 0;
}

int sg_index_done(sg_err *err, const char *where, sg_index *ix)
{
    for (int a = ix->axis; a < ix->xnd; a++) /* the axes no entry indexed, whole */
        sg__ix_basic(ix, SG_IX_REST, a, 0, 1, ix->xshape[a]);
    int before = ix->nbasic, nb = 0;
    if (ix->narr) {
        int rc = sg__ix_broadcast(err, where, ix);
        if (rc)
            return rc;
        nb = ix->nb;
        /* NumPy: adjacent advanced entries leave their dims in place, else they go first */
        int adjacent = ix->adv_entry[ix->nadv - 1] - ix->adv_entry[0] + 1 == ix->nadv;
        before = adjacent ? ix->adv_before[0] : 0;
    }
    int nd = 0;
    for (int k = 0; k < before; k++)
        ix->dim[nd++] = k;
    for (int j = 0; j < nb; j++)
        ix->dim[nd++] = -1 - j;
    for (int k = before; k < ix->nbasic; k++)
        ix->dim[nd++] = k;
    ix->nd = nd;
    for (int k = 0; k < nd; k++) {
        int d = ix->dim[k];
        ix->shape[k] = d >= 0 ? ix->blen[d] : ix->bshape[-1 - d];
    }
    return 0;
}

int64_t sg_index_dim(const sg_index *ix, int k) { return ix->shape[k]; }

/* ---- applying it ---- */

/* The sg_index_plan (sg_rows.h) of ix over the array a: x, or a copy of x. */
static void sg__ix_plan(const sg_index *ix, const sg_arr *a, sg_index_plan *p)
{
    p->nd = ix->nd, p->narr = ix->narr, p->base = 0;
    for (int i = 0; i < ix->nint; i++)
        p->base += ix->ival[i] * a->strides[ix->iax[i]];
    for (int k = 0; k < ix->nd; k++) {
        int d = ix->dim[k];
        p->shape[k] = ix->shape[k], p->bdim[k] = -1, p->step[k] = 0;
        if (d < 0) {
            p->bdim[k] = -1 - d;
        } else if (ix->bkind[d] == SG_IX_SLICE) {
            p->base += ix->bstart[d] * a->strides[ix->bax[d]];
            p->step[k] = ix->bstep[d] * a->strides[ix->bax[d]];
        } else if (ix->bkind[d] == SG_IX_REST) {
            p->step[k] = a->strides[ix->bax[d]];
        }
    }
    for (int j = 0; j < ix->narr; j++) {
        int axis = ix->aax[j];
        p->arr[j] = ix->arr[j]->data, p->wide[j] = ix->aitem[j] == 8, p->ast[j] = ix->ast[j];
        p->len[j] = a->shape[axis], p->xst[j] = a->strides[axis];
    }
}

void sg_index_view(sg_arr *v, const sg_index *ix, const sg_arr *x, size_t item)
{
    sg_index_plan p;
    sg__ix_plan(ix, x, &p);
    v->data = (char *)x->data + p.base * (int64_t)item;
    for (int k = 0; k < p.nd; k++)
        v->shape[k] = p.shape[k], v->strides[k] = p.step[k];
}

void sg_index_gather(const sg_arr *out, const sg_index *ix, const sg_arr *x, size_t item)
{
    if (sg_size(out, ix->nd) == 0) /* (2**60, 0) must not walk 2**60 empty rows */
        return;
    /* E[ids]: whole rows, copied as blocks when they are contiguous in E */
    if (ix->nent == 1 && ix->narr == 1 && ix->xnd > 1 &&
        sg_gather_rows(out->data, x, ix->xnd, ix->arr[0], ix->arrnd[0], ix->aitem[0], item))
        return;
    sg_index_plan p;
    sg__ix_plan(ix, x, &p);
    sg_gather(&p, out->data, x->data, item);
}

/* ---- updates: the loops per dtype, picked by code ---- */

enum { SG_F32, SG_F64, SG_I32, SG_I64, SG_B8 };
static const size_t sg__item[] = {4, 8, 4, 8, 1};
typedef void (*sg__cast_fn)(const sg_arr *, const sg_arr *, int);
#define SG_CASTS_FROM(TO)                                                                  \
    {sg_cast_##TO##_f32, sg_cast_##TO##_f64, sg_cast_##TO##_i32, sg_cast_##TO##_i64,        \
     sg_cast_##TO##_b8}
static const sg__cast_fn sg__cast[5][5] = {SG_CASTS_FROM(f32), SG_CASTS_FROM(f64),
                                           SG_CASTS_FROM(i32), SG_CASTS_FROM(i64),
                                           SG_CASTS_FROM(b8)};
static void (*const sg__put[5])(const sg_arr *, int, const sg_arr *, const int64_t *, int) = {
    sg_put_f32, sg_put_f64, sg_put_i32, sg_put_i64, sg_put_b8};
static void (*const sg__scatter[5])(const sg_index_plan *, void *, const sg_arr *,
                                    const int64_t *, int) = {
    sg_scatter_f32, sg_scatter_f64, sg_scatter_i32, sg_scatter_i64, sg_scatter_b8};

/* y converted (a C-contiguous copy in dtype `to`, from the workspace) when its
 * dtype `from` differs, and its strides seen through the broadcast to `shape`
 * recomputed for the copy (it fits: checked before). */
static int sg__ix_convert(sg_err *err, const char *where, sg_ws *ws, const int64_t *shape,
                          int rnd, const sg_arr **y, int yn, int from, int to, sg_arr *conv,
                          int64_t *yst)
{
    if (from == to)
        return 0;
    int rc = sg_cast_copy(err, where, ws, conv, *y, yn, sg__item[to], sg__cast[to][from]);
    if (rc)
        return rc;
    *y = conv;
    sg_broadcast_strides(yst, conv, yn, shape, rnd);
    return 0;
}

static int sg__ix_put(sg_err *err, const char *where, sg_ws *ws, const sg_index *ix,
                      const sg_arr *out, int to, const sg_arr *y, int from, int yn, int set)
{
    sg_arr region, conv;
    int64_t yst[SG_MAXDIM];
    sg_index_view(&region, ix, out, sg__item[to]);
    int rc = sg_value_strides(err, where, y, yn, region.shape, ix->nd, yst);
    if (!rc)
        rc = sg__ix_convert(err, where, ws, region.shape, ix->nd, &y, yn, from, to, &conv, yst);
    if (rc)
        return rc;
    sg__put[to](&region, ix->nd, y, yst, set);
    return 0;
}

static int sg__ix_scatter(sg_err *err, const char *where, sg_ws *ws, const sg_index *ix,
                          const sg_arr *out, int to, const sg_arr *y, int from, int yn, int set)
{
    int64_t yst[SG_MAXDIM];
    int rc = sg_value_strides(err, where, y, yn, ix->shape, ix->nd, yst);
    if (rc)
        return rc;
    for (int k = 0; k < ix->nd; k++)
        if (ix->shape[k] == 0) /* no empty loops over a huge leading length */
            return 0;
    sg_index_plan p;
    sg__ix_plan(ix, out, &p);
    /* a float32 scatter-add sums in float64 and rounds once, as mode "py" */
    int wide = to == SG_F32 && !set;
    sg_arr conv;
    if (!(wide && from == SG_F32)) {
        rc = sg__ix_convert(err, where, ws, ix->shape, ix->nd, &y, yn, from, wide ? SG_F64 : to,
                            &conv, yst);
        if (rc)
            return rc;
    }
    if (!wide) {
        sg__scatter[to](&p, out->data, y, yst, set);
        return 0;
    }
    int64_t n = sg_size(out, ix->xnd);
    double *acc = sg_widen_f32(ws, (const float *)out->data, n);
    if (!acc)
        return sg_fail(err, SG_ENOMEM,
                       "%sno memory for the float64 sums of a float32 scatter-add", where);
    if (from == SG_F32)
        sg_scatter_add_f64_f32(&p, acc, y, yst);
    else
        sg_scatter_f64(&p, acc, y, yst, 0);
    sg_narrow_f64((float *)out->data, acc, n);
    return 0;
}

/* M(TO, CTO, FROM, CFROM) for every (to, from) pair of the five dtypes: the
 * instantiations of the converting updates and of concatenate's casts. */
#define SG__FROM_EACH(M, TO, CTO)                                                          \
    M(TO, CTO, f32, SG_F32) M(TO, CTO, f64, SG_F64) M(TO, CTO, i32, SG_I32)                \
    M(TO, CTO, i64, SG_I64) M(TO, CTO, b8, SG_B8)
#define SG_EACH_PAIR(M)                                                                    \
    SG__FROM_EACH(M, f32, SG_F32) SG__FROM_EACH(M, f64, SG_F64)                            \
    SG__FROM_EACH(M, i32, SG_I32) SG__FROM_EACH(M, i64, SG_I64)                            \
    SG__FROM_EACH(M, b8, SG_B8)

#define SG_INDEX_UPDATE(TO, CTO, FROM, CFROM)                                              \
    int sg_index_put_##TO##_##FROM(sg_err *err, const char *where, sg_ws *ws,              \
                                   const sg_index *ix, const sg_arr *out, const sg_arr *y,  \
                                   int yn, int set)                                        \
    {                                                                                      \
        return sg__ix_put(err, where, ws, ix, out, CTO, y, CFROM, yn, set);                \
    }                                                                                      \
    int sg_index_scatter_##TO##_##FROM(sg_err *err, const char *where, sg_ws *ws,          \
                                       const sg_index *ix, const sg_arr *out,              \
                                       const sg_arr *y, int yn, int set)                   \
    {                                                                                      \
        return sg__ix_scatter(err, where, ws, ix, out, CTO, y, CFROM, yn, set);            \
    }
SG_EACH_PAIR(SG_INDEX_UPDATE)

/* ---- concatenate and split ---- */

int sg_concat_starts(sg_err *err, const char *where, int64_t *at, int n,
                     const sg_arr *const *xs, int nd, int axis)
{
    if (n > 1) {
        int rc = sg_concat_check(err, where, n, xs, nd, axis);
        if (rc)
            return rc;
    }
    int64_t total, run = 0;
    for (int k = 0; k < n; k++)
        at[k] = xs[k]->shape[axis];
    if (sg_sum_lengths(&total, at, n)) {
        char lens[160];
        return sg_fail(err, SG_ESHAPE, "%sthe lengths %s on axis %d add up to more than "
                       "2**63 - 1: no array is that long",
                       where, sg_shape_str(lens, sizeof lens, at, n), axis);
    }
    for (int k = 0; k < n; k++) {
        int64_t len = at[k];
        at[k] = run, run += len;
    }
    at[n] = total;
    return 0;
}

static void sg__concat_cast(const sg_arr *out, int nd, int axis, int64_t at, const sg_arr *x,
                            int to, int from)
{
    sg_arr block = *out;
    block.data = (char *)out->data + at * out->strides[axis] * (int64_t)sg__item[to];
    memcpy(block.shape, x->shape, sizeof x->shape);
    sg__cast[to][from](&block, x, nd);
}

#define SG_CONCAT_CAST(TO, CTO, FROM, CFROM)                                               \
    void sg_concat_cast_##TO##_##FROM(const sg_arr *out, int nd, int axis, int64_t at,     \
                                      const sg_arr *x)                                     \
    {                                                                                      \
        sg__concat_cast(out, nd, axis, at, x, CTO, CFROM);                                 \
    }
SG_EACH_PAIR(SG_CONCAT_CAST)

int sg_split_at(sg_err *err, const char *where, int64_t *len, int64_t *at, int n,
                const sg_arr *lengths, const sg_arr *x, int nd, int axis)
{
    int rc = sg_split_lengths(err, where, len, n, lengths, x, nd, axis);
    if (rc)
        return rc;
    for (int64_t k = 0, run = 0; k < n; run += len[k], k++)
        at[k] = run;
    return 0;
}
