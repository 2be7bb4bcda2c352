/* sg_ops.c: the bodies of the functions sg_ops.h declares: the generic
 * parts of generated kernels (matrix products, the adjoint of broadcasting,
 * reshapes, copies, reductions, index checks), compiled once into the
 * support library (see sg_kernel.c). SG_VEC (sg_support.h) marks the
 * loop-heavy ones, compiled for several instruction sets. */
#include "sg_support.h"

/* ---- results ---- */

/* A result's memory: C-contiguous strides for the shape of `a` (ndim nd), and
 * room for its `item`-byte elements from the workspace or, with `own` (a
 * kernel output, which the caller hands over or releases), from ws->out_alloc. */
int sg_alloc(sg_err *err, const char *where, sg_ws *ws, sg_arr *a, int nd,
                        size_t item, void **own)
{
    int64_t n = sg_contiguous(a, nd);
    if (n < 0 || n > INT64_MAX / (int64_t)item || !sg_shape_fits(a->shape, nd, item)) {
        char s[160];
        return sg_fail(err, SG_ESHAPE, "%sthe result of %d-d shape %s is too large", where, nd,
                       sg_shape_str(s, sizeof s, a->shape, nd));
    }
    size_t size = (size_t)n * item;
    if (own) {
        *own = ws->out_alloc(size);
        a->data = *own;
    } else {
        a->data = sg_ws_alloc(ws, size);
    }
    if (!a->data)
        return sg_fail(err, SG_ENOMEM, "%sout of memory", where);
    return 0;
}

/* The broadcast shape `s` (ndim nd) of a node's n operands (shapes[i] of
 * ndim ndims[i]); when they do not broadcast, the error lists them all. */
int sg_broadcast_shapes(sg_err *err, const char *where, int64_t *s, int nd, int n,
                                   const int64_t *const *shapes, const int *ndims)
{
    for (int k = 0; k < nd; k++)
        s[k] = 1;
    for (int i = 0; i < n; i++) {
        if (sg_broadcast_into(s, nd, shapes[i], ndims[i]) < 0)
            continue;
        char all[480], one[96];
        size_t used = 0;
        all[0] = 0;
        for (int j = 0; j < n && used < sizeof all; j++)
            used += (size_t)snprintf(all + used, sizeof all - used, j ? " and %s" : "%s",
                                     sg_shape_str(one, sizeof one, shapes[j], ndims[j]));
        return sg_fail(err, SG_ESHAPE, "%sshapes %s cannot be broadcast together", where, all);
    }
    return 0;
}

/* ---- iteration ---- */

/* ---- copies ---- */

#define SG_COPY_ROW(T)                                                      \
    {                                                                       \
        T *d = (T *)dst->data + od;                                         \
        const T *s = (const T *)src->data + os;                             \
        if (ds == 1 && ss == 1)                                             \
            memcpy(d, s, (size_t)inner * sizeof(T));                        \
        else if (ds == 1)                                                   \
            for (int64_t j = 0; j < inner; j++)                             \
                d[j] = s[j * ss];                                           \
        else                                                                \
            for (int64_t j = 0; j < inner; j++)                             \
                d[j * ds] = s[j * ss];                                      \
    }

/* Copy `src` into `dst` (same shape, ndim nd, any strides, separate memory),
 * row by row. The axes along which both step uniformly are merged first (a
 * contiguous copy is one memcpy, a transposed one has rows as long as the
 * layouts allow); when the innermost of them is a couple of elements long and
 * the one before is longer (the two within 4096 elements, as sg_ew_loop's
 * rows), rows run along that one (strided) instead: the copy of a pooling
 * gradient computed with its window axes first had rows of 2 elements, a
 * loop's set-up per pair. Order does not matter to a copy. */
SG_VEC void sg_copy_nd(const sg_arr *dst, const sg_arr *src, int nd, size_t item)
{
    int64_t n = sg_size(src, nd);
    if (n == 0)
        return;
    if (nd == 0) {
        memcpy(dst->data, src->data, item);
        return;
    }
    int64_t sh[SG_MAXDIM], st[2][SG_MAXDIM];
    for (int k = 0; k < nd; k++) {
        sh[k] = src->shape[k];
        st[0][k] = dst->strides[k];
        st[1][k] = src->strides[k];
    }
    int cnd = sg_collapse(nd, sh, 2, st);
    if (cnd >= 2 && sh[cnd - 1] <= 4 && sh[cnd - 2] > sh[cnd - 1] &&
        sh[cnd - 2] * sh[cnd - 1] <= 4096) {
        for (int q = -1; q < 2; q++) {
            int64_t *v = q < 0 ? sh : st[q], t = v[cnd - 1];
            v[cnd - 1] = v[cnd - 2];
            v[cnd - 2] = t;
        }
    }
    int64_t inner = sh[cnd - 1], ds = st[0][cnd - 1], ss = st[1][cnd - 1];
    int64_t idx[SG_MAXDIM] = {0}, od = 0, os = 0;
    for (int64_t r = 0; r < n / inner; r++) {
        switch (item) {
        case 8: SG_COPY_ROW(uint64_t) break;
        case 4: SG_COPY_ROW(uint32_t) break;
        default: SG_COPY_ROW(uint8_t) break;
        }
        sg_step2(idx, sh, cnd - 1, st[0], &od, st[1], &os);
    }
}

/* `src` copied into `dst`, a C-contiguous buffer of its size. */
void sg_pack(void *dst, const sg_arr *src, int nd, size_t item)
{
    if (sg_is_contiguous(src, nd)) {
        int64_t n = sg_size(src, nd);
        if (n)
            memcpy(dst, src->data, (size_t)n * item);
        return;
    }
    sg_arr d = *src;
    d.data = dst;
    sg_contiguous(&d, nd);
    sg_copy_nd(&d, src, nd, item);
}

/* concatenate: `x` copied into the block of `out` that starts at `at` along `axis`. */
void sg_copy_block(const sg_arr *out, int nd, int axis, int64_t at, const sg_arr *x,
                          size_t item)
{
    sg_arr d = *out;
    d.data = (char *)out->data + at * out->strides[axis] * (int64_t)item;
    int there = d.data == x->data; /* made in its place already (codegen/render_c.py) */
    for (int k = 0; k < nd; k++) {
        d.shape[k] = x->shape[k];
        there &= x->shape[k] == 1 || x->strides[k] == d.strides[k];
    }
    if (!there)
        sg_copy_nd(&d, x, nd, item);
}

/* ---- shapes: broadcast_to, reshape, sum_to ---- */

/* Whether the nd lengths a and b are equal (a sum_to that sums nothing is a view). */
int sg_same_lengths(const int64_t *a, const int64_t *b, int nd)
{
    for (int k = 0; k < nd; k++)
        if (a[k] != b[k])
            return 0;
    return 1;
}

/* An int64 shape vector (1-d, any stride) as a C array of n lengths. */
void sg_read_shape(int64_t *t, const sg_arr *v, int n)
{
    for (int k = 0; k < n; k++)
        t[k] = ((const int64_t *)v->data)[k * v->strides[0]];
}

/* broadcast_to as a view: `v` (ndim nd) sees x's memory, stride 0 along broadcast axes. */
int sg_broadcast_view(sg_err *err, const char *where, sg_arr *v, int nd,
                                 const sg_arr *x, int xnd, const int64_t *t)
{
    for (int k = 0; k < nd; k++) {
        int j = k - (nd - xnd);
        int64_t s = j < 0 ? 1 : x->shape[j];
        if (t[k] < 0 || (s != t[k] && s != 1)) {
            char a[96], b[96];
            return sg_fail(err, SG_ESHAPE, "%scannot broadcast shape %s to %s", where,
                           sg_shape_str(a, sizeof a, x->shape, xnd),
                           sg_shape_str(b, sizeof b, t, nd));
        }
        v->shape[k] = t[k];
        v->strides[k] = (j < 0 || s != t[k]) ? 0 : x->strides[j];
    }
    sg_arr count = *v; /* a view of more elements than int64 counts would wrap every loop over it */
    if (sg_contiguous(&count, nd) < 0) {
        char b[96];
        return sg_fail(err, SG_ESHAPE, "%sthe broadcast shape %s is too large", where,
                       sg_shape_str(b, sizeof b, t, nd));
    }
    v->data = x->data;
    return 0;
}

/* The shape `t` of a reshape of `x`, checked: one entry may be -1, resolved in place. */
int sg_reshape_shape(sg_err *err, const char *where, int64_t *t, int nd, const sg_arr *x,
                     int xnd)
{
    /* `nonzero`: the product of the lengths but 0s and the -1, which the result's
     * strides are made of: past INT64_MAX no array has the shape, empty or not */
    int64_t size = sg_size(x, xnd), nonzero = 1, known;
    int fill = -1, zero = 0, bad = 0;
    char a[96], b[160];
    sg_shape_str(b, sizeof b, t, nd); /* as requested, a -1 included */
    for (int k = 0; k < nd && !bad; k++) {
        if (t[k] == -1 && fill < 0)
            fill = k;
        else if (t[k] < 0 || (t[k] && nonzero > INT64_MAX / t[k]))
            bad = 1;
        else if (t[k] == 0)
            zero = 1;
        else
            nonzero *= t[k];
    }
    known = bad ? -1 : zero ? 0 : nonzero;
    if (fill >= 0 && known > 0 && size % known == 0)
        t[fill] = size / known;
    else if (fill >= 0)
        known = -1; /* beside a 0 any length would do: NumPy refuses it too */
    if (known < 0 || (fill < 0 && known != size))
        return sg_fail(err, SG_ESHAPE, "%scannot reshape an array of shape %s to %s", where,
                       sg_shape_str(a, sizeof a, x->shape, xnd), b);
    return 0;
}

/* reshape to `t` (one entry may be -1, resolved in place): a view of a
 * contiguous `x`, else a C-order copy in the workspace. (Kernels lower a
 * reshape to sg_reshape_shape and a view or a block the renderer releases.) */
int sg_reshape(sg_err *err, const char *where, sg_ws *ws, sg_arr *v, int nd,
                          const sg_arr *x, int xnd, int64_t *t, size_t item)
{
    int64_t size = sg_size(x, xnd);
    if (sg_reshape_shape(err, where, t, nd, x, xnd))
        return 1;
    for (int k = 0; k < nd; k++)
        v->shape[k] = t[k];
    sg_contiguous(v, nd);
    if (sg_is_contiguous(x, xnd)) {
        v->data = x->data;
        return 0;
    }
    v->data = sg_ws_alloc(ws, (size_t)(size ? size : 1) * item);
    if (!v->data)
        return sg_fail(err, SG_ENOMEM, "%sout of memory", where);
    sg_pack(v->data, x, xnd, item);
    return 0;
}

/* `v`, allocated C-order with `x`'s element count, filled with `x`'s elements in C order */
void sg_pack_into(sg_arr *v, const sg_arr *x, int xnd, size_t item)
{
    sg_pack(v->data, x, xnd, item);
}

/* sum_to: `g` (ndim gd) must be a broadcast of the shape `t` (ndim nd <= gd). */
int sg_sum_to_check(sg_err *err, const char *where, const sg_arr *g, int gd,
                               const int64_t *t, int nd)
{
    for (int k = 0; k < nd; k++) {
        int64_t s = g->shape[k + gd - nd];
        if (t[k] < 0 || (t[k] != s && t[k] != 1)) {
            char a[96], b[96];
            return sg_fail(err, SG_ESHAPE, "%sshape %s is not a broadcast of %s", where,
                           sg_shape_str(a, sizeof a, g->shape, gd),
                           sg_shape_str(b, sizeof b, t, nd));
        }
    }
    return 0;
}

/* ---- accumulations: sum_to, and float sum and mean ---- */

/* The number of elements of `shape` (ndim nd); an error when int64_t cannot
 * count them (a broadcast view may stand for more than memory could hold). */
int sg_loop_count(sg_err *err, const char *where, const int64_t *shape, int nd,
                         int64_t *count)
{
    int64_t n = 1;
    for (int k = 0; k < nd && n != 0; k++) {
        if (shape[k] == 0) {
            n = 0;
        } else if (n > INT64_MAX / shape[k]) {
            char s[160];
            return sg_fail(err, SG_ESHAPE, "%sa loop over the %d-d shape %s is too large", where,
                           nd, sg_shape_str(s, sizeof s, shape, nd));
        } else {
            n *= shape[k];
        }
    }
    *count = n;
    return 0;
}

/* Every element of `x` (ndim nd, any strides) added into the element of
 * `out` at the offset its index has under the strides `ost` (0 along the
 * axes summed away). `out` holds accumulators of type A: double for float
 * and double data, so a float32 sum keeps its digits however long it is
 * (issue #11: a serial float32 sum of 3e7 values, or of 2**24 ones, loses
 * them all). The axes are collapsed (sg_loops.h) and walked in rows of the
 * last one: a row along a summed axis is a horizontal sum into one element
 * (vectorised in blocks of SG_SUM_BLOCK, so the error of a double sum grows
 * with the block, not the row; a stride-0 row of a float is its one value
 * times the length), a row along a kept axis an add into a row of `out` (a
 * sum over the leading axis, as a bias gradient, reads memory in order; the
 * axes are first put in the input's memory order, sg_memory_order); both are
 * vectorised where OpenMP simd is on. As the fused accumulations
 * of codegen.fusion, which these are when no elementwise producer is fused. */

/* Axes (shape `sh`, strides st[0] of the input, st[1] of the result) sorted by
 * the input's |stride|, largest first, so a sum reads memory in order (a sum
 * of x.T walks x row by row); the order of additions is the sum's own. */
void sg_memory_order(int nd, int64_t *sh, int64_t (*st)[SG_MAXDIM])
{
    for (int k = 1; k < nd; k++)
        for (int j = k; j > 0 && llabs(st[0][j - 1]) < llabs(st[0][j]); j--) {
            int64_t t = sh[j];
            sh[j] = sh[j - 1], sh[j - 1] = t;
            for (int p = 0; p < 2; p++)
                t = st[p][j], st[p][j] = st[p][j - 1], st[p][j - 1] = t;
        }
}
#define SG_ACCUMULATE(T, A, SUF, FLT)                                                    \
    SG_VEC int sg_accumulate_##SUF(sg_err *err, const char *where, A *out,               \
                                       const int64_t *ost, const sg_arr *x, int nd)      \
    {                                                                                    \
        int64_t n, sh[SG_MAXDIM], st[2][SG_MAXDIM], off[2];                              \
        if (sg_loop_count(err, where, x->shape, nd, &n))                                 \
            return err->code;                                                            \
        if (n == 0)                                                                      \
            return 0;                                                                    \
        for (int k = 0; k < nd; k++) {                                                   \
            sh[k] = x->shape[k];                                                         \
            st[0][k] = x->strides[k];                                                    \
            st[1][k] = ost[k];                                                           \
        }                                                                                \
        sg_memory_order(nd, sh, st);                                                     \
        int c = sg_collapse(nd, sh, 2, st);                                              \
        int64_t inner = sh[c - 1], sa = st[0][c - 1], so = st[1][c - 1];                 \
        for (int64_t row = 0; row < n / inner; row++) {                                  \
            sg_row_offsets(row, c, sh, 2, st, off);                                      \
            const T *a = (const T *)x->data + off[0];                                    \
            A *o = out + off[1];                                                         \
            if (so == 0) {                                                               \
                A acc = 0;                                                               \
                if (sa == 1) {                                                           \
                    for (int64_t j0 = 0; j0 < inner; j0 += SG_SUM_BLOCK) {               \
                        int64_t e = inner - j0 < SG_SUM_BLOCK ? inner : j0 + SG_SUM_BLOCK; \
                        A part = 0;                                                      \
                        _Pragma("omp simd reduction(+:part) simdlen(16)")                \
                        for (int64_t j = j0; j < e; j++)                                 \
                            part += (A)a[j];                                             \
                        acc += part;                                                     \
                    }                                                                    \
                } else if (sa == 0 && FLT) {                                             \
                    acc = (A)a[0] * (A)inner;                                            \
                } else {                                                                 \
                    for (int64_t j = 0; j < inner; j++)                                  \
                        acc += (A)a[j * sa];                                             \
                }                                                                        \
                o[0] += acc;                                                             \
            } else if (sa == 1 && so == 1 && c > 1 && st[1][c - 2] == 0 &&               \
                       sh[c - 2] - row % sh[c - 2] >= 4) {                               \
                /* four rows into the same result row (a sum over a leading axis):       \
                 * added in T first, so the accumulators are read and written once */    \
                const int64_t s2 = st[0][c - 2];                                         \
                _Pragma("omp simd")                                                      \
                for (int64_t j = 0; j < inner; j++)                                      \
                    o[j] += (A)((a[j] + a[j + s2]) + (a[j + 2 * s2] + a[j + 3 * s2]));   \
                row += 3;                                                                \
            } else if (sa == 1 && so == 1) {                                             \
                _Pragma("omp simd")                                                      \
                for (int64_t j = 0; j < inner; j++)                                      \
                    o[j] += (A)a[j];                                                     \
            } else {                                                                     \
                for (int64_t j = 0; j < inner; j++)                                      \
                    o[j * so] += (A)a[j * sa];                                           \
            }                                                                            \
        }                                                                                \
        return 0;                                                                        \
    }                                                                                    \
                                                                                         \
    /* The n accumulators for the fresh T `out`: out itself when A is T, else zeroed     \
     * memory the caller frees with sg_acc_done. */                                      \
    A *sg_acc_start_##SUF(sg_err *err, const char *where, void *out, int64_t n)          \
    {                                                                                    \
        A *acc = sizeof(A) == sizeof(T) ? (A *)out : (A *)malloc((size_t)(n ? n : 1) * sizeof(A)); \
        if (!acc)                                                                        \
            sg_fail(err, SG_ENOMEM, "%sout of memory", where);                           \
        else                                                                             \
            memset(acc, 0, (size_t)n * sizeof(A));                                       \
        return acc;                                                                      \
    }                                                                                    \
                                                                                         \
    /* The accumulators divided by `count` (mean; 1 for a sum) stored as T into out. */  \
    SG_VEC void sg_acc_done_##SUF(A *acc, void *out, int64_t n, int64_t count)           \
    {                                                                                    \
        T *o = (T *)out;                                                                 \
        if ((void *)acc == out) {                                                        \
            for (int64_t i = 0; count != 1 && i < n; i++)                                \
                o[i] = (T)(acc[i] / (A)count);                                           \
            return;                                                                      \
        }                                                                                \
        for (int64_t i = 0; i < n; i++)                                                  \
            o[i] = (T)(count == 1 ? acc[i] : acc[i] / (A)count);                         \
        free(acc);                                                                       \
    }                                                                                    \
                                                                                         \
    /* sum_to into the fresh `out` (ndim nd) from `g` (ndim gd >= nd). When nothing is   \
     * summed (as many elements: g's extra axes and out's have length 1), a copy: a      \
     * gradient whose shape the graph could not prove equal to its target's at build    \
     * time, e.g. a weight's from a batch of one, no longer goes through accumulators.   \
     * The same values: one element in A rounded back to T is itself. */                 \
    int sg_sum_to_##SUF(sg_err *err, const char *where, const sg_arr *out,               \
                                   int nd, const sg_arr *g, int gd)                      \
    {                                                                                    \
        int64_t ost[SG_MAXDIM], n_out = sg_size(out, nd);                                \
        if (sg_size(g, gd) == n_out) {                                                   \
            sg_arr v = *out;                                                             \
            v.data = g->data;                                                            \
            for (int k = 0; k < nd; k++)                                                 \
                v.strides[k] = g->strides[k + gd - nd];                                  \
            sg_copy_nd(out, &v, nd, sizeof(T));                                          \
            return 0;                                                                    \
        }                                                                                \
        for (int k = 0; k < gd; k++)                                                     \
            ost[k] = k < gd - nd || out->shape[k - (gd - nd)] == 1                       \
                ? 0 : out->strides[k - (gd - nd)];                                       \
        A *acc = sg_acc_start_##SUF(err, where, out->data, n_out);                       \
        if (!acc)                                                                        \
            return err->code;                                                            \
        int rc = sg_accumulate_##SUF(err, where, acc, ost, g, gd);                       \
        sg_acc_done_##SUF(acc, out->data, n_out, 1);                                     \
        return rc;                                                                       \
    }

/* A float sum (mean: divided by the count, in double, then rounded to T)
 * over the axes of `x` (ndim nd) flagged in `reduced`, into the fresh `out`
 * (ndim on). */
#define SG_SUM_INTO(T, SUF)                                                              \
    int sg_sum_into_##SUF(sg_err *err, const char *where, const sg_arr *out,             \
                                     int on, const sg_arr *x, int nd, const int *reduced, \
                                     int keepdims, int mean)                             \
    {                                                                                    \
        int64_t ost[SG_MAXDIM], count = 1, n_out = sg_size(out, on);                     \
        for (int k = 0, j = 0; k < nd; k++) {                                            \
            ost[k] = reduced[k] ? 0 : out->strides[j];                                   \
            j += !reduced[k] || keepdims;                                                \
            count *= reduced[k] ? x->shape[k] : 1;                                       \
        }                                                                                \
        double *acc = sg_acc_start_##SUF(err, where, out->data, n_out);                  \
        if (!acc)                                                                        \
            return err->code;                                                            \
        int rc = sg_accumulate_##SUF(err, where, acc, ost, x, nd);                       \
        /* an empty mean is 0 / 0: NaN, as in NumPy */                                   \
        sg_acc_done_##SUF(acc, out->data, n_out, mean ? count : 1);                      \
        return rc;                                                                       \
    }

SG_ACCUMULATE(float, double, f32, 1)
SG_ACCUMULATE(double, double, f64, 1)
SG_ACCUMULATE(int32_t, int32_t, i32, 0)
SG_ACCUMULATE(int64_t, int64_t, i64, 0)
SG_ACCUMULATE(uint8_t, uint8_t, b8, 0)
SG_SUM_INTO(float, f32)
SG_SUM_INTO(double, f64)

/* ---- reductions ---- */

/* A view of `a` (ndim nd) with its axes in the order `order`. */
sg_arr sg_permuted(const sg_arr *a, int nd, const int *order)
{
    sg_arr p;
    p.data = a->data;
    for (int k = 0; k < nd; k++) {
        p.shape[k] = a->shape[order[k]];
        p.strides[k] = a->strides[order[k]];
    }
    return p;
}

/* The row axes of `x` (its last nr of nd), adjacent ones merged where the
 * stride allows, so a contiguous row is one axis: shape `sh` and strides
 * `st` of the merged axes (at least one); returns their number. */
int sg_row_axes(const sg_arr *x, int nd, int nr, int64_t *sh, int64_t *st)
{
    int m = 0;
    sh[0] = 1, st[0] = 0;
    for (int k = nd - nr; k < nd; k++) {
        if (m > 0 && st[m - 1] == x->strides[k] * x->shape[k]) {
            sh[m - 1] *= x->shape[k];
            st[m - 1] = x->strides[k];
        } else {
            sh[m] = x->shape[k], st[m] = x->strides[k];
            m++;
        }
    }
    return m ? m : 1;
}

/* A reduction: `x` is viewed with the kept axes first and the nr reduced
 * axes last, so output element r (C order) folds row r. The row is walked in
 * C order (`pos` counts its elements); the last row axis runs as a plain
 * loop. DECL opens a row, STEP folds the element `v`, RESULT closes it. */
#define SG_REDUCE(NAME, TI, TO, DECL, STEP, RESULT)                                      \
    SG_VEC void NAME(const sg_arr *out, const sg_arr *x, int nd, int nr)                 \
    {                                                                                    \
        const TI *xp = (const TI *)x->data;                                              \
        TO *o = (TO *)out->data;                                                         \
        int nk = nd - nr;                                                                \
        int64_t sh[SG_MAXDIM], st[SG_MAXDIM];                                            \
        int m = sg_row_axes(x, nd, nr, sh, st);                                          \
        int64_t outer = sg_size(x, nk), count = 1, none = 0;                             \
        for (int k = 0; k < m; k++)                                                      \
            count *= sh[k];                                                              \
        int64_t last = sh[m - 1], ls = st[m - 1], ik[SG_MAXDIM] = {0}, base = 0;         \
        for (int64_t r = 0; r < outer; r++) {                                            \
            DECL;                                                                        \
            int64_t ir[SG_MAXDIM] = {0}, off = base, pos = 0;                            \
            for (int64_t q = 0; count && q < count / last; q++) {                        \
                for (int64_t j = 0; j < last; j++, pos++) {                              \
                    TI v = xp[off + j * ls];                                             \
                    STEP;                                                                \
                }                                                                        \
                sg_step2(ir, sh, m - 1, st, &off, st, &none);                            \
            }                                                                            \
            (void)pos;                                                                   \
            o[r] = RESULT;                                                               \
            sg_step2(ik, x->shape, nk, x->strides, &base, x->strides, &none);            \
        }                                                                                \
    }

/* Integer sums and means accumulate in wrapping uint64_t and double (float
 * sums and means are sg_sum_into); float products multiply in double (a
 * float32 product keeps its digits, and overflows only where its result
 * does; mode py's reference does the same). */
#define SG_SUM(TI, SI, TO, SO, W)                                                            \
    SG_REDUCE(sg_sum_##SI##_##SO, TI, TO, W acc = 0, acc += (W)v, (TO)acc)
#define SG_PROD(TI, SI, TO, SO, W)                                                           \
    SG_REDUCE(sg_prod_##SI##_##SO, TI, TO, W acc = 1, acc *= (W)v, (TO)acc)
#define SG_MEAN(TI, SI, TO, SO)                                                              \
    SG_REDUCE(sg_mean_##SI##_##SO, TI, TO, double acc = 0, acc += (double)v,                 \
              (TO)(acc / (double)count))
/* max, min: a NaN wins and stays; among equal extremes the last one is the
 * result, so a maximum of +0 and -0 has the sign of the row's last zero (as
 * NumPy's scalar and strided loops; its SIMD loops may pick another). The
 * vectorised passes cannot say which zero they kept: for float types (FLT)
 * a zero extreme takes the sign of the last zero, found by a second scan
 * (sg_last_zero), only in rows whose extreme is 0. argmax, argmin: the first
 * extreme, or the first NaN once one is seen (as NumPy). ISNAN(v) is 0 for
 * integers. A row is
 * walked as segments along its last axis (sg_row_axes): where that axis is
 * contiguous, the extreme of a segment is one vectorised pass (a max/min
 * reduction plus a NaN flag), and an arg-reduction finds the first position
 * of the row's extreme in a second vectorised pass (a min reduction over
 * positions). */
#define SG_STR(x) #x
/* oo[j] folded with the element ELEM (of j) for j < len: the later of equal values and the
 * first NaN win, as in a row's pass */
#define SG_FOLD_ROW(T, CMP, ISNAN, ELEM)                                                     \
    {                                                                                        \
        _Pragma("omp simd")                                                                  \
        for (int64_t j = 0; j < len; j++) {                                                  \
            T v = ELEM, a = oo[j];                                                           \
            oo[j] = v CMP a || v == a || (ISNAN(v) && !ISNAN(a)) ? v : a;                    \
        }                                                                                    \
    }
#define SG_EXTREME(T, S, NAME, CMP, INIT, ISNAN, NANV, FLT)                                  \
    SG_VEC T sg_seg_##NAME##_##S(const T *p, int64_t n, int64_t s, int *nan)                 \
    {                                                                                        \
        T acc = INIT;                                                                        \
        int bad = 0;                                                                         \
        if (s == 1) {                                                                        \
            _Pragma(SG_STR(omp simd reduction(NAME:acc) reduction(|:bad)))                   \
            for (int64_t j = 0; j < n; j++) {                                                \
                T v = p[j];                                                                  \
                acc = v CMP acc ? v : acc;                                                   \
                bad |= ISNAN(v);                                                             \
            }                                                                                \
        } else {                                                                             \
            for (int64_t j = 0; j < n; j++) {                                                \
                T v = p[j * s];                                                              \
                acc = v CMP acc ? v : acc;                                                   \
                bad |= ISNAN(v);                                                             \
            }                                                                                \
        }                                                                                    \
        *nan |= bad;                                                                         \
        return acc;                                                                          \
    }                                                                                        \
    /* the first of n elements at stride s equal to `want` (a NaN with nan), or n:           \
     * contiguous, blocks of 64 are tested in one vectorised pass each */                    \
    SG_VEC int64_t sg_seg_find_##NAME##_##S(const T *p, int64_t n, int64_t s, T want,        \
                                                int nan)                                     \
    {                                                                                        \
        if (s == 1) {                                                                        \
            for (int64_t j0 = 0; j0 < n; j0 += 64) {                                         \
                int64_t e = n - j0 < 64 ? n : j0 + 64;                                       \
                int hit = 0;                                                                 \
                if (nan) {                                                                   \
                    _Pragma("omp simd reduction(|:hit)")                                     \
                    for (int64_t j = j0; j < e; j++)                                         \
                        hit |= ISNAN(p[j]);                                                  \
                } else {                                                                     \
                    _Pragma("omp simd reduction(|:hit)")                                     \
                    for (int64_t j = j0; j < e; j++)                                         \
                        hit |= p[j] == want;                                                 \
                }                                                                            \
                for (int64_t j = j0; hit && j < e; j++)                                      \
                    if (nan ? ISNAN(p[j]) : p[j] == want)                                    \
                        return j;                                                            \
            }                                                                                \
            return n;                                                                        \
        }                                                                                    \
        for (int64_t j = 0; j < n; j++) {                                                    \
            T v = p[j * s];                                                                  \
            if (nan ? ISNAN(v) : v == want)                                                  \
                return j;                                                                    \
        }                                                                                    \
        return n;                                                                            \
    }                                                                                        \
    /* the row's extreme (NaN flag in *nan); `off` of each segment from sg_step2 */          \
    T sg_row_##NAME##_##S(const T *xp, int64_t base, int m, const int64_t *sh,               \
                                 const int64_t *st, int64_t count, int *nan)                 \
    {                                                                                        \
        int64_t last = sh[m - 1], ir[SG_MAXDIM] = {0}, off = base, none = 0;                 \
        T acc = INIT;                                                                        \
        for (int64_t q = 0; q < count / last; q++) {                                         \
            T a = sg_seg_##NAME##_##S(xp + off, last, st[m - 1], nan);                       \
            acc = a CMP acc ? a : acc;                                                       \
            sg_step2(ir, sh, m - 1, st, &off, st, &none);                                    \
        }                                                                                    \
        return acc;                                                                          \
    }                                                                                        \
    SG_VEC void sg_##NAME##_##S##_##S(const sg_arr *out, const sg_arr *x, int nd, int nr)    \
    {                                                                                        \
        const T *xp = (const T *)x->data;                                                    \
        T *o = (T *)out->data;                                                               \
        int nk = nd - nr;                                                                    \
        int64_t sh[SG_MAXDIM], st[SG_MAXDIM];                                                \
        int m = sg_row_axes(x, nd, nr, sh, st);                                              \
        int64_t outer = sg_size(x, nk), count = 1, none = 0, ik[SG_MAXDIM] = {0}, base = 0;  \
        for (int k = 0; k < m; k++)                                                          \
            count *= sh[k];                                                                  \
        if (nk == 1 && m == 1 && x->strides[0] == 1 && outer > 1) {                          \
            /* one kept axis, contiguous (a max over axis 0 of a matrix): fold each row of   \
             * the reduced axis into all the results at once, a vectorised pass each */      \
            for (int64_t r = 0; r < outer; r++)                                              \
                o[r] = count ? xp[r] : INIT;                                                 \
            for (int64_t q = 1; q < count; q++) {                                            \
                const T *row = xp + q * st[0];                                               \
                _Pragma("omp simd")                                                          \
                for (int64_t r = 0; r < outer; r++) {                                        \
                    T v = row[r], a = o[r];                                                  \
                    o[r] = v CMP a || v == a || (ISNAN(v) && !ISNAN(a)) ? v : a;             \
                }                                                                            \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        if (nk >= 1 && count > 1 && count <= 16 && x->shape[nk - 1] >= 8) {                  \
            /* small windows along long kept axes (pooling by reshape): fold each position   \
             * of the window, in C order, into all the results at once; a row of the last    \
             * kept axis is a vectorised pass (its stride 2 a constant, for gcc) */           \
            int64_t len = x->shape[nk - 1], ls = x->strides[nk - 1], rows = outer / len;    \
            for (int64_t q = 0; q < count; q++) {                                            \
                int64_t roff = 0, rest = q, iq[SG_MAXDIM] = {0}, b = 0;                      \
                for (int k = nd - 1; k >= nk; k--) {                                         \
                    roff += (rest % x->shape[k]) * x->strides[k];                            \
                    rest /= x->shape[k];                                                     \
                }                                                                            \
                for (int64_t row = 0; row < rows; row++) {                                   \
                    const T *p = xp + b + roff;                                              \
                    T *oo = o + row * len;                                                   \
                    if (q == 0)                                                              \
                        for (int64_t j = 0; j < len; j++)                                    \
                            oo[j] = p[j * ls];                                               \
                    else if (ls == 1)                                                        \
                        SG_FOLD_ROW(T, CMP, ISNAN, p[j])                                     \
                    else if (ls == 2)                                                        \
                        SG_FOLD_ROW(T, CMP, ISNAN, p[2 * j])                                 \
                    else                                                                     \
                        SG_FOLD_ROW(T, CMP, ISNAN, p[j * ls])                                \
                    sg_step2(iq, x->shape, nk - 1, x->strides, &b, x->strides, &none);       \
                }                                                                            \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        for (int64_t r = 0; r < outer; r++) {                                                \
            int nan = 0;                                                                     \
            T acc = count ? sg_row_##NAME##_##S(xp, base, m, sh, st, count, &nan) : INIT;    \
            if (FLT && !nan && acc == 0)                                                     \
                acc = sg_last_zero_##S(xp, base, m, sh, st, count);                          \
            o[r] = nan ? NANV : acc;                                                         \
            sg_step2(ik, x->shape, nk, x->strides, &base, x->strides, &none);                \
        }                                                                                    \
    }                                                                                        \
    SG_VEC void sg_arg##NAME##_##S##_i64(const sg_arr *out, const sg_arr *x, int nd, int nr) \
    {                                                                                        \
        const T *xp = (const T *)x->data;                                                    \
        int64_t *o = (int64_t *)out->data;                                                   \
        int nk = nd - nr;                                                                    \
        int64_t sh[SG_MAXDIM], st[SG_MAXDIM];                                                \
        int m = sg_row_axes(x, nd, nr, sh, st);                                              \
        int64_t outer = sg_size(x, nk), count = 1, none = 0, ik[SG_MAXDIM] = {0}, base = 0;  \
        for (int k = 0; k < m; k++)                                                          \
            count *= sh[k];                                                                  \
        int64_t last = sh[m - 1];                                                            \
        if (st[m - 1] != 1) { /* strided: one pass, the first extreme (or NaN) kept */       \
            for (int64_t r = 0; r < outer; r++) {                                            \
                int64_t ir[SG_MAXDIM] = {0}, off = base, pos = 0, at = 0;                    \
                T best = INIT;                                                               \
                for (int64_t q = 0; q < count / last; q++) {                                 \
                    for (int64_t j = 0; j < last; j++, pos++) {                              \
                        T v = xp[off + j * st[m - 1]];                                       \
                        if (pos == 0 || v CMP best || (ISNAN(v) && !ISNAN(best))) {          \
                            best = v;                                                        \
                            at = pos;                                                        \
                        }                                                                    \
                    }                                                                        \
                    sg_step2(ir, sh, m - 1, st, &off, st, &none);                            \
                }                                                                            \
                o[r] = at;                                                                   \
                sg_step2(ik, x->shape, nk, x->strides, &base, x->strides, &none);            \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        for (int64_t r = 0; r < outer; r++) {                                                \
            int nan = 0;                                                                     \
            T best = count ? sg_row_##NAME##_##S(xp, base, m, sh, st, count, &nan) : INIT;   \
            int64_t ir[SG_MAXDIM] = {0}, off = base, at = 0;                                 \
            for (int64_t q = 0; q < count / last; q++) {                                     \
                int64_t j = sg_seg_find_##NAME##_##S(xp + off, last, st[m - 1], best, nan);  \
                if (j < last) {                                                              \
                    at = q * last + j;                                                       \
                    break;                                                                   \
                }                                                                            \
                sg_step2(ir, sh, m - 1, st, &off, st, &none);                                \
            }                                                                                \
            o[r] = at;                                                                       \
            sg_step2(ik, x->shape, nk, x->strides, &base, x->strides, &none);                \
        }                                                                                    \
    }
/* The last zero (+0 or -0) of a row that holds one, in segments as sg_row_*: each
 * segment is scanned from its end, and a later segment's zero replaces an earlier's. */
#define SG_LAST_ZERO(T, S)                                                                   \
    SG_VEC T sg_last_zero_##S(const T *xp, int64_t base, int m, const int64_t *sh,           \
                                     const int64_t *st, int64_t count)                       \
    {                                                                                        \
        int64_t last = sh[m - 1], s = st[m - 1], ir[SG_MAXDIM] = {0}, off = base, none = 0;  \
        T z = 0;                                                                             \
        for (int64_t q = 0; q < count / last; q++) {                                         \
            for (int64_t j = last - 1; j >= 0; j--)                                          \
                if (xp[off + j * s] == 0) {                                                  \
                    z = xp[off + j * s];                                                     \
                    break;                                                                   \
                }                                                                            \
            sg_step2(ir, sh, m - 1, st, &off, st, &none);                                    \
        }                                                                                    \
        return z;                                                                            \
    }
#define SG_EXTREMES(T, S, LOWEST, HIGHEST, ISNAN, NANV, FLT)                                 \
    SG_EXTREME(T, S, max, >, LOWEST, ISNAN, NANV, FLT)                                       \
    SG_EXTREME(T, S, min, <, HIGHEST, ISNAN, NANV, FLT)
#define SG_ISNAN(v) ((v) != (v))
#define SG_NOTNAN(v) 0

SG_SUM(int32_t, i32, int64_t, i64, uint64_t)
SG_SUM(int64_t, i64, int64_t, i64, uint64_t)
SG_SUM(uint8_t, b8, int64_t, i64, uint64_t)
SG_PROD(float, f32, float, f32, double)
SG_PROD(double, f64, double, f64, double)
SG_PROD(int32_t, i32, int64_t, i64, uint64_t)
SG_PROD(int64_t, i64, int64_t, i64, uint64_t)
SG_PROD(uint8_t, b8, int64_t, i64, uint64_t)
SG_MEAN(int32_t, i32, double, f64)
SG_MEAN(int64_t, i64, double, f64)
SG_MEAN(uint8_t, b8, double, f64)
SG_LAST_ZERO(float, f32)
SG_LAST_ZERO(double, f64)
SG_LAST_ZERO(int32_t, i32)
SG_LAST_ZERO(int64_t, i64)
SG_LAST_ZERO(uint8_t, b8)
SG_EXTREMES(float, f32, -INFINITY, INFINITY, SG_ISNAN, NAN, 1)
SG_EXTREMES(double, f64, -INFINITY, INFINITY, SG_ISNAN, NAN, 1)
SG_EXTREMES(int32_t, i32, INT32_MIN, INT32_MAX, SG_NOTNAN, 0, 0)
SG_EXTREMES(int64_t, i64, INT64_MIN, INT64_MAX, SG_NOTNAN, 0, 0)
SG_EXTREMES(uint8_t, b8, 0, 1, SG_NOTNAN, 0, 0)

/* ---- matrix products ---- */

/* The shape of operand `u` as the user wrote it: without the axis `drop` (the length-1
 * axis matmul gave a vector), or as it is (drop < 0). */
static const char *sg_operand_str(char *buf, size_t n, const sg_arr *u, int nd, int drop)
{
    int64_t shape[SG_MAXDIM];
    int m = 0;
    for (int d = 0; d < nd; d++)
        if (d != drop)
            shape[m++] = u->shape[d];
    return sg_shape_str(buf, n, shape, m);
}

/* The shape of a @ b (ndim on = max(an, bn) >= 2): batch axes broadcast, then M, N.
 * `vec` says which operands the user gave as vectors (1: a, a row here; 2: b, a column):
 * messages show those as the vectors they were. */
int sg_matmul_shape(sg_err *err, const char *where, const sg_arr *a, int an,
                               const sg_arr *b, int bn, int64_t *shape, int on, int vec)
{
    char sa[96], sb[96];
    int64_t k = a->shape[an - 1], k2 = b->shape[bn - 2];
    int da = vec & 1 ? an - 2 : -1, db = vec & 2 ? bn - 1 : -1;
    if (k != k2)
        return sg_fail(err, SG_ESHAPE, "%sshapes %s and %s cannot be multiplied (contracted "
                       "lengths %lld and %lld)", where, sg_operand_str(sa, sizeof sa, a, an, da),
                       sg_operand_str(sb, sizeof sb, b, bn, db), (long long)k, (long long)k2);
    for (int d = 0; d < on - 2; d++)
        shape[d] = 1;
    if (sg_broadcast_into(shape, on - 2, a->shape, an - 2) >= 0 ||
        sg_broadcast_into(shape, on - 2, b->shape, bn - 2) >= 0)
        return sg_fail(err, SG_ESHAPE, "%sshapes %s and %s cannot be multiplied (their batch "
                       "shapes do not broadcast)", where,
                       sg_operand_str(sa, sizeof sa, a, an, da),
                       sg_operand_str(sb, sizeof sb, b, bn, db));
    shape[on - 2] = a->shape[an - 2];
    shape[on - 1] = b->shape[bn - 1];
    return 0;
}

/* How gemm reads the matrices of operand `u` (its last two axes): as they
 * are, or transposed (a .T view has stride 1 along axis -2); any other
 * layout (stride 0, negative, both > 1) from a C-contiguous copy in the
 * workspace, which then replaces u's data and strides. */
int sg_gemm_operand(sg_err *err, const char *where, sg_ws *ws, sg_arr *u, int nd,
                           size_t item, enum CBLAS_TRANSPOSE *t, int64_t *ld)
{
    int64_t r = u->shape[nd - 2], c = u->shape[nd - 1];
    int64_t sr = u->strides[nd - 2], sc = u->strides[nd - 1];
    /* The stride of a length-1 axis is never used: pick the one that avoids a copy. */
    if (r <= 1)
        sr = sc == 1 ? (c > 1 ? c : 1) : 1;
    if (c <= 1)
        sc = 1;
    *t = CblasNoTrans;
    if (sc == 1 && sr >= (c > 1 ? c : 1) && sr <= INT32_MAX) {
        *ld = sr;
        return 0;
    }
    if (sr == 1 && sc >= (r > 1 ? r : 1) && sc <= INT32_MAX) {
        *t = CblasTrans;
        *ld = sc;
        return 0;
    }
    void *p = sg_ws_alloc(ws, (size_t)sg_size(u, nd) * item);
    if (!p)
        return sg_fail(err, SG_ENOMEM, "%sout of memory", where);
    sg_pack(p, u, nd, item);
    u->data = p;
    sg_contiguous(u, nd);
    *ld = c > 1 ? c : 1;
    return 0;
}

int sg_blas_sizes(sg_err *err, const char *where, int64_t m, int64_t k, int64_t n)
{
    if (m <= INT32_MAX && k <= INT32_MAX && n <= INT32_MAX)
        return 0;
    return sg_fail(err, SG_ESHAPE, "%sa product of %lld x %lld and %lld x %lld matrices "
                   "exceeds the 32-bit sizes of BLAS", where, (long long)m, (long long)k,
                   (long long)k, (long long)n);
}

/* ---- products whose bits do not depend on the thread count ----
 *
 * OpenBLAS's own threads change a product's bits: its threaded driver cuts
 * the inner dimension into other blocks than its one-thread driver (seen on
 * AMD Zen 3: 40 x 300 by 300 x 64 in double), and its single-precision
 * kernels round an element differently by where its row or column falls in
 * the call. So OpenBLAS runs on one thread, and a large product is cut into
 * blocks of rows (or columns) of C chosen from the shape alone: each block one
 * single-threaded call, the blocks shared among the runtime's threads. One
 * thread makes the same calls in turn, so the bits are the same whatever
 * SYMGRAD_NUM_THREADS says.
 *
 * A block re-packs the operand it shares with the others (the whole B for a
 * block of rows), about 8/size of the block's time for `size` rows: blocks
 * have at least SG_GEMM_MIN_ROWS rows (or columns) and SG_GEMM_MIN_WORK
 * flops, and the cut is along C's longer side, so that the shared operand
 * is the smaller one. */
#define SG_GEMM_MIN_ROWS 128
#define SG_GEMM_MIN_WORK (INT64_C(1) << 23)
#define SG_GEMM_MAX_BLOCKS 16

static int sg_blas_nthreads = 1;

void sg_blas_set_threads(int n)
{
    static int single;
    if (!__atomic_exchange_n(&single, 1, __ATOMIC_RELAXED))
        scipy_openblas_set_num_threads(1);
    __atomic_store_n(&sg_blas_nthreads, n > 0 ? n : 1, __ATOMIC_RELAXED);
}

int sg_blas_threads(void)
{
    return __atomic_load_n(&sg_blas_nthreads, __ATOMIC_RELAXED);
}

/* Units are handed out in ranges of about SG_UNITS_CHUNK elements' work, a few
 * per thread at least (a thread descheduled by another process then holds back
 * a small part); below SG_UNITS_MIN elements in all, one thread does it all:
 * waking another costs more. */
#define SG_UNITS_MIN (INT64_C(1) << 15)
#define SG_UNITS_CHUNK (INT64_C(1) << 14)

typedef struct {
    void (*fn)(void *ctx, int64_t u0, int64_t u1);
    void *ctx;
    int64_t n, per;
} sg_units_job;

static void sg_units_blocks(void *ctx, int64_t b0, int64_t b1)
{
    const sg_units_job *j = ctx;
    int64_t u0 = b0 * j->per, u1 = b1 * j->per < j->n ? b1 * j->per : j->n;
    if (u0 < u1)
        j->fn(j->ctx, u0, u1);
}

void sg_run_units(sg_ws *ws, int64_t n, int64_t unit_work,
                  void (*fn)(void *ctx, int64_t u0, int64_t u1), void *ctx)
{
    if (n <= 0)
        return;
    int threads = sg_blas_threads();
    double work = (double)n * (double)(unit_work > 0 ? unit_work : 1);
    if (threads < 2 || n < 2 || work < (double)SG_UNITS_MIN || !ws || !ws->parallel_for) {
        fn(ctx, 0, n);
        return;
    }
    int64_t per = unit_work >= SG_UNITS_CHUNK ? 1 : SG_UNITS_CHUNK / (unit_work > 0 ? unit_work : 1);
    if (per > n / (4 * (int64_t)threads))  /* at least 4 ranges a thread */
        per = n / (4 * (int64_t)threads);
    if (per < 1)
        per = 1;
    sg_units_job j = {fn, ctx, n, per};
    int64_t blocks = (n + per - 1) / per;
    ws->parallel_for(blocks, threads < blocks ? threads : (int)blocks, sg_units_blocks, &j);
}

typedef struct {
    int dbl, rows;
    enum CBLAS_TRANSPOSE ta, tb;
    int64_t m, n, k, size, lda, ldb, ldc;
    double alpha, beta;
    const void *a, *b;
    void *c;
} sg_gemm_job;

/* c = alpha (a b) for a product over one term (k = 1: an outer product, as each example's
 * weight gradient in a per-example Jacobian) with beta = 0. BLAS would first write zeros
 * over c and then add the products: two passes over what may be hundreds of MB, where one
 * does: 2.5x faster on a 2048 x 2048 result in memory already mapped. Each element is
 * what BLAS makes of it: the product accumulated onto zero, then scaled and added to the
 * zeroed result (the same roundings; a product of -0 gives +0). `sa`, `sb`: the strides
 * of a's column and b's row. */
#define SG_OUTER(NAME, T)                                                                  \
    static SG_VEC void NAME(int64_t m, int64_t n, T alpha, const T *restrict a,            \
                            int64_t sa, const T *restrict b, int64_t sb, T *restrict c,    \
                            int64_t ldc)                                                   \
    {                                                                                      \
        for (int64_t r = 0; r < m; r++) {                                                  \
            const T x = a[r * sa];                                                         \
            T *restrict row = c + r * ldc;                                                 \
            if (sb == 1)                                                                   \
                _Pragma("omp simd") for (int64_t q = 0; q < n; q++)                        \
                    row[q] = alpha * (x * b[q] + 0) + 0;                                   \
            else                                                                           \
                for (int64_t q = 0; q < n; q++)                                            \
                    row[q] = alpha * (x * b[q * sb] + 0) + 0;                              \
        }                                                                                  \
    }
SG_OUTER(sg_outer_f32, float)
SG_OUTER(sg_outer_f64, double)
#undef SG_OUTER

static void sg_gemm_blocks(void *ctx, int64_t b0, int64_t b1)
{
    const sg_gemm_job *j = ctx;
    size_t item = j->dbl ? sizeof(double) : sizeof(float);
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t i = blk * j->size, m = j->m, n = j->n;
        const char *a = j->a, *b = j->b;
        char *c = j->c;
        if (j->rows) {
            m = j->m - i < j->size ? j->m - i : j->size;
            a += (size_t)(i * (j->ta == CblasNoTrans ? j->lda : 1)) * item;
            c += (size_t)(i * j->ldc) * item;
        } else {
            n = j->n - i < j->size ? j->n - i : j->size;
            b += (size_t)(i * (j->tb == CblasNoTrans ? 1 : j->ldb)) * item;
            c += (size_t)i * item;
        }
        if (j->k == 1 && j->beta == 0) {
            const int64_t sa = j->ta == CblasNoTrans ? j->lda : 1;
            const int64_t sb = j->tb == CblasNoTrans ? 1 : j->ldb;
            if (j->dbl)
                sg_outer_f64(m, n, j->alpha, (const double *)a, sa, (const double *)b, sb,
                             (double *)c, j->ldc);
            else
                sg_outer_f32(m, n, (float)j->alpha, (const float *)a, sa, (const float *)b, sb,
                             (float *)c, j->ldc);
        } else if (j->dbl)
            scipy_cblas_dgemm(CblasRowMajor, j->ta, j->tb, (blasint)m, (blasint)n, (blasint)j->k,
                              j->alpha, (const double *)a, (blasint)j->lda, (const double *)b,
                              (blasint)j->ldb, j->beta, (double *)c, (blasint)j->ldc);
        else
            scipy_cblas_sgemm(CblasRowMajor, j->ta, j->tb, (blasint)m, (blasint)n, (blasint)j->k,
                              (float)j->alpha, (const float *)a, (blasint)j->lda,
                              (const float *)b, (blasint)j->ldb, (float)j->beta, (float *)c,
                              (blasint)j->ldc);
    }
}

static void sg_blas_gemm(sg_ws *ws, int dbl, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
                         int64_t m, int64_t n, int64_t k, double alpha, const void *a,
                         int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                         int64_t ldc)
{
    sg_gemm_job j = {dbl, m >= n, ta, tb, m, n, k, 0, lda, ldb, ldc, alpha, beta, a, b, c};
    int64_t side = j.rows ? m : n;
    double work = 2.0 * (double)m * (double)n * (double)k;
    int64_t count = side / SG_GEMM_MIN_ROWS;
    if ((double)count * (double)SG_GEMM_MIN_WORK > work)
        count = (int64_t)(work / (double)SG_GEMM_MIN_WORK);
    if (count > SG_GEMM_MAX_BLOCKS)
        count = SG_GEMM_MAX_BLOCKS;
    if (count < 1)
        count = 1;
    j.size = (side + count - 1) / count;
    count = (side + j.size - 1) / j.size;
    int threads = __atomic_load_n(&sg_blas_nthreads, __ATOMIC_RELAXED);
    if (count > 1 && threads > 1 && ws && ws->parallel_for)
        ws->parallel_for(count, threads < count ? threads : (int)count, sg_gemm_blocks, &j);
    else
        sg_gemm_blocks(&j, 0, count);
}

void sg_blas_sgemm(sg_ws *ws, enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                   enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
                   const float *a, blasint lda, const float *b, blasint ldb, float beta,
                   float *c, blasint ldc)
{
    (void)order; /* row-major, as every caller */
    sg_blas_gemm(ws, 0, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sg_blas_dgemm(sg_ws *ws, enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                   enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha,
                   const double *a, blasint lda, const double *b, blasint ldb, double beta,
                   double *c, blasint ldc)
{
    (void)order;
    sg_blas_gemm(ws, 1, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* c = a @ b for float (dbl = 0) or double (dbl = 1) operands of c's dtype,
 * `c` allocated with the shape sg_matmul_shape gave: BLAS gemm once per
 * (broadcast) batch matrix, or once for a contiguous stack times a matrix. */
int sg_matmul_blas(sg_err *err, const char *where, sg_ws *ws, sg_arr *c, int cn,
                              const sg_arr *a, int an, const sg_arr *b, int bn, int dbl)
{
    size_t item = dbl ? sizeof(double) : sizeof(float);
    sg_arr ua = *a, ub = *b;
    enum CBLAS_TRANSPOSE ta, tb;
    int64_t lda, ldb;
    if (sg_gemm_operand(err, where, ws, &ua, an, item, &ta, &lda) ||
        sg_gemm_operand(err, where, ws, &ub, bn, item, &tb, &ldb))
        return err->code;
    int64_t m = a->shape[an - 2], k = a->shape[an - 1], n = b->shape[bn - 1];
    if (k == 0) {
        memset(c->data, 0, (size_t)sg_size(c, cn) * item);
        return 0;
    }
    if (m <= 0 || n <= 0)
        return 0;
    int nb = cn - 2, tall = bn == 2 && an > 2 && ta == CblasNoTrans && sg_is_contiguous(&ua, an);
    int64_t rows = tall ? sg_size(&ua, an) / k : m, count = tall ? 1 : sg_size(c, nb);
    int64_t sta[SG_MAXDIM], stb[SG_MAXDIM], idx[SG_MAXDIM] = {0}, oa = 0, ob = 0;
    sg_broadcast_strides(sta, &ua, an - 2, c->shape, nb);
    sg_broadcast_strides(stb, &ub, bn - 2, c->shape, nb);
    for (int64_t p = 0; p < count; p++) {
        if (sg_blas_sizes(err, where, rows, k, n))
            return err->code;
        sg_blas_gemm(ws, dbl, ta, tb, rows, n, k, 1, (char *)ua.data + (size_t)oa * item, lda,
                     (char *)ub.data + (size_t)ob * item, ldb, 0,
                     (char *)c->data + (size_t)(p * m * n) * item, n);
        sg_step2(idx, c->shape, nb, sta, &oa, stb, &ob);
    }
    return 0;
}

int sg_matmul_f32(sg_err *err, const char *where, sg_ws *ws, sg_arr *c, int cn,
                         const sg_arr *a, int an, const sg_arr *b, int bn)
{
    return sg_matmul_blas(err, where, ws, c, cn, a, an, b, bn, 0);
}

int sg_matmul_f64(sg_err *err, const char *where, sg_ws *ws, sg_arr *c, int cn,
                         const sg_arr *a, int an, const sg_arr *b, int bn)
{
    return sg_matmul_blas(err, where, ws, c, cn, a, an, b, bn, 1);
}

/* gemm{a.T, b.T}: `a`, `b` (2-d) as op(a), op(b): views with their axes swapped
 * where `ta`, `tb` say so; sg_gemm_operand then folds that into BLAS's flags. */
sg_arr sg_gemm_view(const sg_arr *v, int t)
{
    sg_arr u = *v;
    if (t) {
        u.shape[0] = v->shape[1], u.shape[1] = v->shape[0];
        u.strides[0] = v->strides[1], u.strides[1] = v->strides[0];
    }
    return u;
}

/* The shape of alpha * op(a) @ op(b) + beta * c into `shape` (c, of ndim cn
 * <= 2, may be NULL and may stretch the product). Errors of the product name
 * `pwhere` (the product the user wrote), those of c `where`; `vec` as sg_matmul_shape's, of
 * op(a) and op(b). */
int sg_gemm_shape(sg_err *err, const char *pwhere, const char *where, const sg_arr *a,
                             int ta, const sg_arr *b, int tb, const sg_arr *c, int cn,
                             int64_t *shape, int vec)
{
    sg_arr ua = sg_gemm_view(a, ta), ub = sg_gemm_view(b, tb);
    int64_t p[2];
    if (sg_matmul_shape(err, pwhere, &ua, 2, &ub, 2, p, 2, vec))
        return err->code;
    shape[0] = p[0], shape[1] = p[1];
    if (c && sg_broadcast_into(shape, 2, c->shape, cn) >= 0) {
        char sa[96], sb[96];
        return sg_fail(err, SG_ESHAPE, "%sshapes %s and %s cannot be broadcast together", where,
                       sg_shape_str(sa, sizeof sa, p, 2), sg_shape_str(sb, sizeof sb, c->shape, cn));
    }
    return 0;
}

/* out = alpha * op(a) @ op(b) + beta * c, `out` allocated with sg_gemm_shape's
 * shape: out first holds beta * c and BLAS adds the product into it; only
 * when c stretches the product (one row or column) is the product made apart
 * and added. Without c, a plain product (beta unused). Every check and
 * allocation comes before the first write to `out`, and `out` may be c
 * itself (an update in place: same shape, no operand overlapping it). */
#define SG_GEMM(T, SUF, GEMM)                                                              \
    SG_VEC int sg_gemm_##SUF(sg_err *err, const char *pwhere, const char *where,           \
                                 sg_ws *ws, sg_arr *out, const sg_arr *a, int ta,          \
                                 const sg_arr *b, int tb, double alpha, const sg_arr *c,   \
                                 int cn, double beta)                                      \
    {                                                                                      \
        sg_arr ua = sg_gemm_view(a, ta), ub = sg_gemm_view(b, tb);                         \
        int64_t m = ua.shape[0], k = ua.shape[1], n = ub.shape[1], lda, ldb;               \
        int64_t r = out->shape[0], q = out->shape[1];                                      \
        T *o = (T *)out->data;                                                             \
        enum CBLAS_TRANSPOSE xa, xb;                                                       \
        if (sg_gemm_operand(err, pwhere, ws, &ua, 2, sizeof(T), &xa, &lda) ||              \
            sg_gemm_operand(err, pwhere, ws, &ub, 2, sizeof(T), &xb, &ldb))                \
            return err->code;                                                              \
        int run = k > 0 && m > 0 && n > 0;                                                 \
        if (run && sg_blas_sizes(err, pwhere, m, k, n))                                    \
            return err->code;                                                              \
        T *dst = o;                                                                        \
        int stretched = c && (r != m || q != n);                                           \
        if (run && stretched && !(dst = (T *)sg_ws_alloc(ws, (size_t)(m * n) * sizeof(T)))) \
            return sg_fail(err, SG_ENOMEM, "%sout of memory", where);                      \
        /* nothing below fails */                                                          \
        if (c && !(c->data == out->data && beta == 1)) {                                   \
            /* a row at a time: a bias row or a matrix copies as plain loops; in place,    \
             * each element is read before it is written */                                \
            int64_t st[2];                                                                 \
            const T *cv = (const T *)c->data;                                              \
            const T bt = (T)beta;                                                          \
            sg_broadcast_strides(st, c, cn, out->shape, 2);                                \
            for (int64_t i = 0; i < r; i++) {                                              \
                const T *src = cv + i * st[0];                                             \
                T *row = o + i * q;                                                        \
                if (st[1] == 1 && beta == 1)                                               \
                    memcpy(row, src, (size_t)q * sizeof(T));                               \
                else if (st[1] == 1)                                                       \
                    for (int64_t j = 0; j < q; j++)                                        \
                        row[j] = bt * src[j];                                              \
                else                                                                       \
                    for (int64_t j = 0; j < q; j++)                                        \
                        row[j] = beta == 1 ? src[j * st[1]] : bt * src[j * st[1]];         \
            }                                                                              \
        }                                                                                  \
        if (!c && k == 0) {                                                                \
            memset(o, 0, (size_t)(m * n) * sizeof(T));                                     \
            return 0;                                                                      \
        }                                                                                  \
        if (!run)                                                                          \
            return 0;                                                                      \
        GEMM(ws, CblasRowMajor, xa, xb, (blasint)m, (blasint)n, (blasint)k, (T)alpha,      \
             (T *)ua.data, (blasint)lda, (T *)ub.data, (blasint)ldb, c && !stretched,      \
             dst, (blasint)n);                                                             \
        for (int64_t i = 0; stretched && i < r; i++)                                       \
            for (int64_t j = 0; j < q; j++)                                                \
                o[i * q + j] += dst[(m == 1 ? 0 : i) * n + (n == 1 ? 0 : j)];              \
        return 0;                                                                          \
    }

/* For an update written in place over its variable (see sg_abi.h, donate):
 * turn op(a), op(b) into operands BLAS takes as they are (packed into the
 * workspace when their strides do not fit) and check the sizes, so that the
 * sg_gemm call that later writes over the variable cannot fail. The
 * operands become plain ones: pass them with ta = tb = 0. */
int sg_gemm_ready(sg_err *err, const char *pwhere, sg_ws *ws, size_t item,
                             sg_arr *a, int ta, sg_arr *b, int tb)
{
    sg_arr ua = sg_gemm_view(a, ta), ub = sg_gemm_view(b, tb);
    enum CBLAS_TRANSPOSE x;
    int64_t ld;
    if (sg_gemm_operand(err, pwhere, ws, &ua, 2, item, &x, &ld) ||
        sg_gemm_operand(err, pwhere, ws, &ub, 2, item, &x, &ld))
        return err->code;
    if (sg_blas_sizes(err, pwhere, ua.shape[0], ua.shape[1], ub.shape[1]))
        return err->code;
    *a = ua;
    *b = ub;
    return 0;
}

/* Whether the memory `x` (ndim xn, items of xi bytes) spans can share a byte
 * with the C-contiguous `y` (ndim yn, yi-byte items). Conservative: the whole
 * range from the lowest to the highest element of x counts. */
int sg_overlaps(const sg_arr *x, int xn, size_t xi, const sg_arr *y, int yn, size_t yi)
{
    int64_t lo = 0, hi = 0;
    for (int k = 0; k < xn; k++) {
        if (x->shape[k] == 0)
            return 0;
        int64_t span = (x->shape[k] - 1) * x->strides[k];
        if (span < 0)
            lo += span;
        else
            hi += span;
    }
    int64_t ny = sg_size(y, yn);
    if (ny == 0)
        return 0;
    const char *x0 = (const char *)x->data + lo * (int64_t)xi;
    const char *x1 = (const char *)x->data + (hi + 1) * (int64_t)xi;
    const char *y0 = (const char *)y->data, *y1 = y0 + ny * (int64_t)yi;
    return x0 < y1 && y0 < x1;
}

SG_GEMM(float, f32, sg_blas_sgemm)
SG_GEMM(double, f64, sg_blas_dgemm)

/* Integer and bool products (BLAS has none) of operands of c's dtype:
 * wrapping sums of products, or for bool a logical or of ands. */
#define SG_INT_MATMUL(T, SUF, STEP)                                                      \
    SG_VEC int sg_matmul_##SUF(sg_err *err, const char *where, sg_ws *ws, sg_arr *c,     \
                                   int cn, const sg_arr *a, int an, const sg_arr *b, int bn) \
    {                                                                                    \
        (void)err, (void)where, (void)ws;                                                \
        int64_t m = a->shape[an - 2], k = a->shape[an - 1], n = b->shape[bn - 1];        \
        int64_t a0 = a->strides[an - 2], a1 = a->strides[an - 1];                        \
        int64_t b0 = b->strides[bn - 2], b1 = b->strides[bn - 1];                        \
        int nb = cn - 2;                                                                 \
        int64_t sta[SG_MAXDIM], stb[SG_MAXDIM], idx[SG_MAXDIM] = {0}, oa = 0, ob = 0;    \
        sg_broadcast_strides(sta, a, an - 2, c->shape, nb);                              \
        sg_broadcast_strides(stb, b, bn - 2, c->shape, nb);                              \
        int64_t count = sg_size(c, nb);                                                  \
        for (int64_t p = 0; p < count; p++) {                                            \
            const T *x = (const T *)a->data + oa, *y = (const T *)b->data + ob;          \
            T *z = (T *)c->data + p * m * n;                                             \
            for (int64_t i = 0; i < m; i++)                                              \
                for (int64_t j = 0; j < n; j++) {                                        \
                    uint64_t acc = 0;                                                    \
                    for (int64_t q = 0; q < k; q++) {                                    \
                        T u = x[i * a0 + q * a1], v = y[q * b0 + j * b1];                \
                        STEP;                                                            \
                    }                                                                    \
                    z[i * n + j] = (T)acc;                                               \
                }                                                                        \
            sg_step2(idx, c->shape, nb, sta, &oa, stb, &ob);                             \
        }                                                                                \
        return 0;                                                                        \
    }

SG_INT_MATMUL(int32_t, i32, acc += (uint64_t)u * (uint64_t)v)
SG_INT_MATMUL(int64_t, i64, acc += (uint64_t)u * (uint64_t)v)
SG_INT_MATMUL(uint8_t, b8, if (u && v) { acc = 1; break; })

/* ---- indexing ---- */

/* An integer index `i` along `axis` (length n), wrapped into [0, n) as NumPy. */
int sg_wrap_index(sg_err *err, const char *where, int64_t i, int axis, int64_t n,
                             int64_t *out)
{
    if (i < -n || i >= n)
        return sg_fail(err, SG_EINDEX, "%sindex %lld is out of range for axis %d with size %lld",
                       where, (long long)i, axis, (long long)n);
    *out = i < 0 ? i + n : i;
    return 0;
}

/* slice(start, stop, step).indices(n) as Python computes it, then the
 * length: out = {start, step, length}. `given` has bit 0 set when a start is
 * given, bit 1 for a stop; an empty slice starts at 0 (inside the buffer). */
int sg_slice(sg_err *err, const char *where, int64_t n, int given, int64_t start,
                        int64_t stop, int64_t step, int64_t *out)
{
    if (step == 0)
        return sg_fail(err, SG_EVALUE, "%sslice step cannot be zero", where);
    int64_t lo = step < 0 ? -1 : 0, hi = step < 0 ? n - 1 : n, len;
    int64_t *ends[2] = {&start, &stop};
    for (int e = 0; e < 2; e++) {
        int64_t *p = ends[e];
        if (!(given >> e & 1)) {
            *p = (step < 0) == (e == 0) ? hi : lo;
        } else if (*p < 0) {
            *p += n;
            if (*p < lo)
                *p = lo;
        } else if (*p > hi) {
            *p = hi;
        }
    }
    /* Unsigned division: no overflow for any step, INT64_MIN included. */
    if (step > 0)
        len = stop > start ? (int64_t)((uint64_t)(stop - start - 1) / (uint64_t)step) + 1 : 0;
    else
        len = start > stop ? (int64_t)((uint64_t)(start - stop - 1) / (0 - (uint64_t)step)) + 1 : 0;
    out[0] = len == 0 ? 0 : start, out[1] = step, out[2] = len;
    return 0;
}

/* The strides of the value `y` (ndim yn) broadcast to a region of shape `r`
 * (ndim rn >= yn), into `st`; a value that does not fit fails. */
int sg_value_strides(sg_err *err, const char *where, const sg_arr *y, int yn,
                                const int64_t *r, int rn, int64_t *st)
{
    for (int j = 0; j < yn; j++) {
        if (y->shape[j] != 1 && y->shape[j] != r[rn - yn + j]) {
            char ya[96], ra[96];
            return sg_fail(err, SG_ESHAPE, "%sa value of shape %s does not fit the region of "
                           "shape %s", where, sg_shape_str(ya, sizeof ya, y->shape, yn),
                           sg_shape_str(ra, sizeof ra, r, rn));
        }
    }
    sg_broadcast_strides(st, y, yn, r, rn);
    return 0;
}

/* inc_subtensor / set_subtensor: the value `y` (of the region's dtype, seen
 * through the broadcast strides `yst`) added into, or with `set` written to,
 * the region `r` (ndim rn), row by row of the last axis. */
#define SG_PUT(T, SUF, INC)                                                              \
    SG_VEC void sg_put_##SUF(const sg_arr *r, int rn, const sg_arr *y,                   \
                                 const int64_t *yst, int set)                            \
    {                                                                                    \
        int64_t n = sg_size(r, rn), idx[SG_MAXDIM] = {0}, od = 0, oy = 0;                \
        int64_t inner = rn ? r->shape[rn - 1] : 1;                                       \
        int64_t rs = rn ? r->strides[rn - 1] : 0, ys = rn ? yst[rn - 1] : 0;             \
        for (int64_t e = 0; n && e < n / inner; e++) {                                   \
            T *d = (T *)r->data + od;                                                    \
            const T *s = (const T *)y->data + oy;                                        \
            if (set)                                                                     \
                for (int64_t j = 0; j < inner; j++)                                      \
                    d[j * rs] = s[j * ys];                                               \
            else                                                                         \
                for (int64_t j = 0; j < inner; j++)                                      \
                    INC(d[j * rs], s[j * ys]);                                           \
            sg_step2(idx, r->shape, rn - 1, r->strides, &od, yst, &oy);                  \
        }                                                                                \
    }
#define SG_ADD_TO(d, v) ((d) += (v))
#define SG_OR_TO(d, v) ((d) = (uint8_t)((d) || (v)))

SG_PUT(float, f32, SG_ADD_TO)
SG_PUT(double, f64, SG_ADD_TO)
SG_PUT(int32_t, i32, SG_ADD_TO)
SG_PUT(int64_t, i64, SG_ADD_TO)
SG_PUT(uint8_t, b8, SG_OR_TO)

/* Every position in the integer index array `v` (int32 or int64, by `item`)
 * must lie in [-n, n); the first that does not is reported. */
int sg_check_indices(sg_err *err, const char *where, const sg_arr *v, int nd,
                                size_t item, int axis, int64_t n)
{
    int64_t count = sg_size(v, nd), idx[SG_MAXDIM] = {0}, off = 0, none = 0;
    for (int64_t e = 0; e < count; e++) {
        int64_t i = item == 8 ? ((const int64_t *)v->data)[off] : ((const int32_t *)v->data)[off];
        if (i < -n || i >= n)
            return sg_fail(err, SG_EINDEX, "%sindex %lld is out of range for axis %d with size "
                           "%lld", where, (long long)i, axis, (long long)n);
        sg_step2(idx, v->shape, nd, v->strides, &off, v->strides, &none);
    }
    return 0;
}
