/* sg_index.h: the run-time work of the indexing ops (subtensor, inc/set_subtensor
 * and their advanced forms: gathers and scatters) and of concatenate and split,
 * as functions of the support library (bodies in sg_index.c), so that each op
 * lowers to a few straight-line calls.
 *
 * An index is resolved into an sg_index entry by entry, in the order of the
 * op's index (the order NumPy checks them in), each entry indexing the next
 * axis of x -- for x[1:, ids]:
 *
 *     sg_index ix;
 *     sg_index_begin(&ix, &x, 2);
 *     if (sg_index_slice(err, where, &ix, 1, INT64_C(1), 0, 1)) goto fail;
 *     if (sg_index_array(err, where, &ix, &ids, 1, 8)) goto fail;
 *     if (sg_index_done(err, where, &ix)) goto fail;
 *
 * (its dims' lengths are then sg_index_dim(&ix, k)) and is then applied: as a view of x (sg_index_view), a gather from x
 * (sg_index_gather), or an update of a fresh copy of x (sg_index_put_<to>_<from>,
 * sg_index_scatter_<to>_<from>). A resolved index holds no strides, so it
 * applies to x and to a contiguous copy of x alike.
 *
 * `where` starts every error message (the failure site, see sg_ops.h); a
 * function that can fail returns 0 or the code it stored in `err`. The
 * messages and error kinds are mode "py"'s.
 */
#ifndef SG_INDEX_H
#define SG_INDEX_H

#include "sg_abi.h"

/* A resolved index of x (see above). Its dims, once placed by sg_index_done,
 * are the result's (a gather's) or the region's (an update's), in NumPy's
 * order: the index arrays' broadcast dims replace the advanced entries when
 * these are adjacent, else come first. */
typedef struct {
    int xnd, axis, nent;         /* x's rank, the next axis an entry indexes, entries so far */
    int64_t xshape[SG_MAXDIM];
    /* the dims of the basic entries (slices, new axes, then the axes no entry
     * indexed), in order: kind, axis of x, start, step, length */
    int nbasic, bkind[SG_MAXDIM], bax[SG_MAXDIM];
    int64_t bstart[SG_MAXDIM], bstep[SG_MAXDIM], blen[SG_MAXDIM];
    /* the integer indices (wrapped), the index arrays, and where the advanced
     * entries (both kinds, once an array is present) stand: entry number,
     * basic dims before it */
    int nint, iax[SG_MAXDIM];
    int64_t ival[SG_MAXDIM];
    int narr, arrnd[SG_MAXDIM], aax[SG_MAXDIM];
    const sg_arr *arr[SG_MAXDIM];
    size_t aitem[SG_MAXDIM];
    int nadv, adv_entry[SG_MAXDIM], adv_before[SG_MAXDIM];
    /* set by sg_index_done: the arrays' broadcast shape (rank nb) and each
     * array's strides over it; the placed dims (rank nd): each a basic dim's
     * number, or -1 - j for broadcast dim j; their lengths */
    int nb, nd, dim[SG_MAXDIM];
    int64_t bshape[SG_MAXDIM], ast[SG_MAXDIM][SG_MAXDIM], shape[SG_MAXDIM];
} sg_index;

/* Start resolving an index of x (ndim xnd). */
void sg_index_begin(sg_index *ix, const sg_arr *x, int xnd);
/* The next entry: an integer index i (out of [-n, n): an IndexError); a slice
 * (`given` as sg_slice's); None, a new axis; an Ellipsis that covers no axis
 * (it still separates advanced indices); an integer array v (ndim nd, int32 or
 * int64 by `item`), every position checked. */
int sg_index_int(sg_err *err, const char *where, sg_index *ix, int64_t i);
int sg_index_slice(sg_err *err, const char *where, sg_index *ix, int given, int64_t start,
                   int64_t stop, int64_t step);
void sg_index_new(sg_index *ix);
void sg_index_ellipsis(sg_index *ix);
int sg_index_array(sg_err *err, const char *where, sg_index *ix, const sg_arr *v, int nd,
                   size_t item);
/* The entries are all there: the index arrays must broadcast together (else a
 * ShapeError naming their shapes); the dims placed. */
int sg_index_done(sg_err *err, const char *where, sg_index *ix);
/* The length of dim k (< ix->nd) of the result (or region) of a resolved index. */
int64_t sg_index_dim(const sg_index *ix, int k);

/* subtensor: `v` made the view of x (`item`-byte elements) that a basic index selects. */
void sg_index_view(sg_arr *v, const sg_index *ix, const sg_arr *x, size_t item);
/* advanced_subtensor: `out` (C-contiguous, the index's shape) = the elements of x it selects. */
void sg_index_gather(const sg_arr *out, const sg_index *ix, const sg_arr *x, size_t item);

/* inc_subtensor / set_subtensor (a basic index) and their advanced forms: the
 * value y (ndim yn, dtype <from>) broadcast to the index's region of `out` (a
 * fresh C-contiguous copy of x, dtype <to>) and added there (a bool: or-ed)
 * or, with `set`, written there; a value that does not fit the region fails.
 * A scatter runs in C order, so a repeated position adds every value, or for
 * a set keeps the last one (as NumPy); a float32 scatter-add sums in float64
 * and rounds once. */
#define SG_DECLARE_INDEX_UPDATE(TO, FROM)                                                  \
    int sg_index_put_##TO##_##FROM(sg_err *err, const char *where, sg_ws *ws,              \
                                   const sg_index *ix, const sg_arr *out, const sg_arr *y,  \
                                   int yn, int set);                                       \
    int sg_index_scatter_##TO##_##FROM(sg_err *err, const char *where, sg_ws *ws,          \
                                       const sg_index *ix, const sg_arr *out,              \
                                       const sg_arr *y, int yn, int set);
#define SG_DECLARE_INDEX_UPDATES(TO)                                                       \
    SG_DECLARE_INDEX_UPDATE(TO, f32)                                                       \
    SG_DECLARE_INDEX_UPDATE(TO, f64)                                                       \
    SG_DECLARE_INDEX_UPDATE(TO, i32)                                                       \
    SG_DECLARE_INDEX_UPDATE(TO, i64)                                                       \
    SG_DECLARE_INDEX_UPDATE(TO, b8)
SG_DECLARE_INDEX_UPDATES(f32)
SG_DECLARE_INDEX_UPDATES(f64)
SG_DECLARE_INDEX_UPDATES(i32)
SG_DECLARE_INDEX_UPDATES(i64)
SG_DECLARE_INDEX_UPDATES(b8)

/* ---- concatenate and split ---- */

/* concatenate of the n inputs xs (ndim nd) along `axis`: they must agree on
 * every other axis; at[k] is where input k starts along `axis`, at[n] the
 * result's length (lengths adding up past int64 fail). */
int sg_concat_starts(sg_err *err, const char *where, int64_t *at, int n,
                     const sg_arr *const *xs, int nd, int axis);
/* Input x (dtype <from>) converted into the block of `out` (dtype <to>) that
 * starts at `at` along `axis`. */
#define SG_DECLARE_CONCAT_CAST(TO)                                                         \
    void sg_concat_cast_##TO##_f32(const sg_arr *out, int nd, int axis, int64_t at,        \
                                   const sg_arr *x);                                       \
    void sg_concat_cast_##TO##_f64(const sg_arr *out, int nd, int axis, int64_t at,        \
                                   const sg_arr *x);                                       \
    void sg_concat_cast_##TO##_i32(const sg_arr *out, int nd, int axis, int64_t at,        \
                                   const sg_arr *x);                                       \
    void sg_concat_cast_##TO##_i64(const sg_arr *out, int nd, int axis, int64_t at,        \
                                   const sg_arr *x);                                       \
    void sg_concat_cast_##TO##_b8(const sg_arr *out, int nd, int axis, int64_t at,         \
                                  const sg_arr *x);
SG_DECLARE_CONCAT_CAST(f32)
SG_DECLARE_CONCAT_CAST(f64)
SG_DECLARE_CONCAT_CAST(i32)
SG_DECLARE_CONCAT_CAST(i64)
SG_DECLARE_CONCAT_CAST(b8)
/* split of x (ndim nd) along `axis` by the n int64 `lengths` (1-d, any
 * stride): len[k] and at[k], each piece's length and start; the lengths must
 * be >= 0 and add up to x's length on `axis`. */
int sg_split_at(sg_err *err, const char *where, int64_t *len, int64_t *at, int n,
                const sg_arr *lengths, const sg_arr *x, int nd, int axis);

#endif
