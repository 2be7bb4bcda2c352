/* sg_rows.h: the loops of the row-wise and data-moving ops, as functions of
 * the support library (bodies in sg_rows.c and sg_rows_impl.h).
 *
 * An op whose lowering would otherwise write its own loops into sg_main --
 * softmax, log_softmax, cross_entropy, logsumexp, one_hot, arange's fill,
 * the dtype conversions of concatenate, matmul and a subtensor update --
 * calls one of these in one line. Each takes its operands as sg_arr of any
 * strides and keeps both paths the generated loops had: a flat walk when
 * every view is C-contiguous (its passes `omp simd`, which the compiler
 * vectorises) and a strided walk in C order for any other layout, so the
 * values are those the generated loops gave, bit for bit.
 *
 * The functions that evaluate sg_math.h's exp and log are compiled once per
 * instruction set (x86-64-v4, v3 and the baseline; sg_rows_v4.c, sg_rows_v3.c)
 * and the one matching the CPU is picked when the library loads: a kernel,
 * compiled with -march=native, evaluates exp with FMA where the CPU has it,
 * and so must these, to give the same bits.
 *
 * `where` starts every error message (the failure site, see sg_ops.h); a
 * function that can fail returns 0 or the code it stored in `err`.
 */
#ifndef SG_ROWS_H
#define SG_ROWS_H

#include "sg_abi.h"

/* softmax and log_softmax of `x` along `axis` into `out` (x's shape, ndim nd). */
#define SG_DECLARE_SOFTMAX(S)                                                              \
    void sg_softmax_##S(const sg_arr *out, const sg_arr *x, int nd, int axis);             \
    void sg_log_softmax_##S(const sg_arr *out, const sg_arr *x, int nd, int axis);
SG_DECLARE_SOFTMAX(f32)
SG_DECLARE_SOFTMAX(f64)
/* The same with the rows shared among `ws`'s threads (sg_run_units, sg_ops.h): each row
 * is one thread's, computed as above, so the result is the same bits. */
#define SG_DECLARE_SOFTMAX_ON(S)                                                           \
    void sg_softmax_on_##S(sg_ws *ws, const sg_arr *out, const sg_arr *x, int nd, int axis); \
    void sg_log_softmax_on_##S(sg_ws *ws, const sg_arr *out, const sg_arr *x, int nd,        \
                               int axis);
SG_DECLARE_SOFTMAX_ON(f32)
SG_DECLARE_SOFTMAX_ON(f64)

/* cross_entropy: logits `z` (N, C), labels `y` (N,). The check runs before the
 * result is allocated; the loss then fails on the first label outside [0, C). */
int sg_cross_entropy_check(sg_err *err, const char *where, const sg_arr *z, const sg_arr *y);
#define SG_DECLARE_CROSS_ENTROPY(S, L)                                                     \
    int sg_cross_entropy_##S##_##L(sg_err *err, const char *where, const sg_arr *out,      \
                                   const sg_arr *z, const sg_arr *y);
SG_DECLARE_CROSS_ENTROPY(f32, i32)
SG_DECLARE_CROSS_ENTROPY(f32, i64)
SG_DECLARE_CROSS_ENTROPY(f64, i32)
SG_DECLARE_CROSS_ENTROPY(f64, i64)
/* The same with the rows shared among `ws`'s threads; a bad label is reported as above
 * (the first one, found again on one thread). */
#define SG_DECLARE_CROSS_ENTROPY_ON(S, L)                                                  \
    int sg_cross_entropy_on_##S##_##L(sg_err *err, const char *where, sg_ws *ws,          \
                                      const sg_arr *out, const sg_arr *z, const sg_arr *y);
SG_DECLARE_CROSS_ENTROPY_ON(f32, i32)
SG_DECLARE_CROSS_ENTROPY_ON(f32, i64)
SG_DECLARE_CROSS_ENTROPY_ON(f64, i32)
SG_DECLARE_CROSS_ENTROPY_ON(f64, i64)

/* logsumexp of `x` (ndim nd) viewed with its axes in `order`, the last nr
 * folded: output element r (C order) of the contiguous `out` folds row r. */
#define SG_DECLARE_LOGSUMEXP(SI, SO)                                                       \
    void sg_logsumexp_##SI##_##SO(const sg_arr *out, const sg_arr *x, int nd,              \
                                  const int *order, int nr);
SG_DECLARE_LOGSUMEXP(f32, f32)
SG_DECLARE_LOGSUMEXP(f64, f64)
SG_DECLARE_LOGSUMEXP(i32, f64)
SG_DECLARE_LOGSUMEXP(i64, f64)
SG_DECLARE_LOGSUMEXP(b8, f64)

/* one_hot: `out` (contiguous, labels' shape + (k,), `item`-byte elements)
 * zeroed, then `one` (item bytes) at each label; labels (ndim nd) are int32 or
 * int64 (`label_item` 4 or 8), the first outside [0, k) fails. */
int sg_one_hot(sg_err *err, const char *where, const sg_arr *out, const sg_arr *labels, int nd,
               size_t label_item, int64_t k, const void *one, size_t item);

/* embedding: `out` (contiguous, ids' shape + (d,), `item`-byte elements) = the rows
 * ids[...] of the (v, d) table `w` (any strides); ids (ndim nd) int32 or int64
 * (`id_item` 4 or 8); the first id outside [0, v) -- a negative one too, as PyTorch
 * refuses it -- fails naming its index. */
int sg_embedding(sg_err *err, const char *where, const sg_arr *out, const sg_arr *ids, int nd,
                 size_t id_item, const sg_arr *w, size_t item);

/* embedding's gradient: `out` (contiguous (v, d)) = the sum of g's rows (g: ids' shape +
 * (d,), any strides) at each id, ids equal to `pad` left out (-1: none), each row summed
 * in double in the ids' C order and rounded once; the ids checked as sg_embedding does. */
int sg_embedding_grad_f32(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,
                          const sg_arr *ids, int nd, size_t id_item, const sg_arr *g, int64_t pad);
int sg_embedding_grad_f64(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,
                          const sg_arr *ids, int nd, size_t id_item, const sg_arr *g, int64_t pad);

/* arange's fill of the contiguous p[0..n): p[0] = a0, p[1] = a1, then NumPy's
 * p[i] = a0 + i * (a1 - a0) in the element type (wrapping for integers). */
void sg_arange_fill_f32(float *p, int64_t n, float a0, float a1);
void sg_arange_fill_f64(double *p, int64_t n, double a0, double a1);
void sg_arange_fill_i32(int32_t *p, int64_t n, int32_t a0, int32_t a1);
void sg_arange_fill_i64(int64_t *p, int64_t n, int64_t a0, int64_t a1);

/* arange's length for start, stop, step (NumPy's): in exact integer arithmetic
 * (_i64, no overflow for any arguments), or ceil((stop - start) / step) in
 * doubles, 1 when that underflows to 0 (_f64). A zero step, a length past
 * int64 or none at all (NaN, infinite) fails. */
int sg_arange_length_i64(sg_err *err, const char *where, int64_t start, int64_t stop,
                         int64_t step, int64_t *n);
int sg_arange_length_f64(sg_err *err, const char *where, double start, double stop,
                         double step, int64_t *n);

/* arange's values into the contiguous p[0..n) of dtype S: p[0] = start and
 * p[1] = start + step, each converted as NumPy's setitem does (int64 wrapping
 * for _i64_S, doubles for _f64_S; a float to an integer without undefined
 * behaviour, to bool != 0), then sg_arange_fill_S; a bool result holds at
 * most the first two (its length is checked to be <= 2). */
#define SG_DECLARE_ARANGE(S)                                                               \
    void sg_arange_i64_##S(void *p, int64_t n, int64_t start, int64_t step);               \
    void sg_arange_f64_##S(void *p, int64_t n, double start, double step);
SG_DECLARE_ARANGE(f32)
SG_DECLARE_ARANGE(f64)
SG_DECLARE_ARANGE(i32)
SG_DECLARE_ARANGE(i64)
SG_DECLARE_ARANGE(b8)

/* sg_cast_<to>_<from>(dst, src, nd): src converted element by element into dst
 * (same shape, any strides, separate memory), as a C cast (to bool: != 0). */
#define SG_DECLARE_CAST(TO)                                                                \
    void sg_cast_##TO##_f32(const sg_arr *dst, const sg_arr *src, int nd);                 \
    void sg_cast_##TO##_f64(const sg_arr *dst, const sg_arr *src, int nd);                 \
    void sg_cast_##TO##_i32(const sg_arr *dst, const sg_arr *src, int nd);                 \
    void sg_cast_##TO##_i64(const sg_arr *dst, const sg_arr *src, int nd);                 \
    void sg_cast_##TO##_b8(const sg_arr *dst, const sg_arr *src, int nd);
SG_DECLARE_CAST(f32)
SG_DECLARE_CAST(f64)
SG_DECLARE_CAST(i32)
SG_DECLARE_CAST(i64)
SG_DECLARE_CAST(b8)

/* A C-contiguous copy of `src` (ndim nd) converted by `cast` (an sg_cast_<to>_<from>),
 * in `item`-byte elements from the workspace, described by `dst`. */
int sg_cast_copy(sg_err *err, const char *where, sg_ws *ws, sg_arr *dst, const sg_arr *src,
                 int nd, size_t item, void (*cast)(const sg_arr *, const sg_arr *, int));

/* ---- gathers and scatters through integer index arrays (advanced indexing) ---- */

/* Where each element of an indexing result (its region of x) lies in x, in x's
 * elements: `base` (the fixed integer indices and the slices' starts) plus,
 * per result dim k, idx[k] * step[k] (a slice's or a whole axis's stride, 0
 * for a new axis), plus, once the index arrays' broadcast dims are known (the
 * result dims k with bdim[k] >= 0), each array's position there, wrapped once
 * by len (the arrays are checked already: sg_check_indices), times xst. */
typedef struct {
    int nd, narr;
    int64_t shape[SG_MAXDIM], step[SG_MAXDIM], base;
    int bdim[SG_MAXDIM];
    const void *arr[SG_MAXDIM];   /* int32 or int64 positions (wide: int64) */
    int wide[SG_MAXDIM];
    const int64_t *ast[SG_MAXDIM]; /* the array's strides over the broadcast dims */
    int64_t len[SG_MAXDIM], xst[SG_MAXDIM];
} sg_index_plan;

/* out (C-contiguous, the plan's shape) = the plan's elements of x, in C order. */
void sg_gather(const sg_index_plan *p, void *out, const void *x, size_t item);
/* x[ids] as whole rows when x's rows (axes 1...) are contiguous: one memcpy per
 * index (positions checked already); 0, doing nothing, when they are not. */
int sg_gather_rows(void *out, const sg_arr *x, int xnd, const sg_arr *ids, int ind,
                   size_t ids_item, size_t item);
/* The plan's elements of dst (in C order) set to, or added (a bool: or-ed) with,
 * y's elements of the same type seen through the strides `yst` over the plan's
 * dims: a repeated position adds every value, a set keeps the last. */
#define SG_DECLARE_SCATTER(S)                                                              \
    void sg_scatter_##S(const sg_index_plan *p, void *dst, const sg_arr *y,                \
                        const int64_t *yst, int set);
SG_DECLARE_SCATTER(f32)
SG_DECLARE_SCATTER(f64)
SG_DECLARE_SCATTER(i32)
SG_DECLARE_SCATTER(i64)
SG_DECLARE_SCATTER(b8)
/* float32 values added into float64 sums (a float32 scatter-add, widened) */
void sg_scatter_add_f64_f32(const sg_index_plan *p, void *dst, const sg_arr *y,
                            const int64_t *yst);
/* The n float32 of p as float64 sums from the workspace (NULL when out of
 * memory or too many), and back, each rounded once. */
double *sg_widen_f32(sg_ws *ws, const float *p, int64_t n);
void sg_narrow_f64(float *p, const double *acc, int64_t n);

/* ---- concatenate and split: their lengths ---- */

/* Every one of the n inputs must match the first on every axis but `axis`. */
int sg_concat_check(sg_err *err, const char *where, int n, const sg_arr *const *xs, int nd,
                    int axis);
/* split: the n int64 lengths of `lengths` (1-d, any stride) into cuts; they must
 * be >= 0 and add up to x's length on `axis`. */
int sg_split_lengths(sg_err *err, const char *where, int64_t *cuts, int n, const sg_arr *lengths,
                     const sg_arr *x, int nd, int axis);

#endif
