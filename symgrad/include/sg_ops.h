/* sg_ops.h: the generic parts of generated kernels, as functions.
 *
 * A node whose lowering would otherwise spell out loops over run-time shapes
 * and strides (matrix products, the adjoint of broadcasting, reshapes,
 * copies, concatenation, index checks) calls one of these in one line:
 *
 *     if (sg_matmul_f32(err, "matmul at net.py:12: ", ws, &v3, 2, &in_0, 2, &in_1, 2)) goto fail;
 *
 * `where` starts every error message, so errors still name the op and the
 * user's line; a function that can fail returns 0 or the code it stored in
 * `err`. Shapes are C arrays of int64_t, strides in elements.
 *
 * Only declarations: the bodies, each documented there, are in sg_ops.c,
 * compiled once into the support library every kernel links against (see
 * sg_kernel.h), so a kernel's compile time goes to its own code.
 */
#ifndef SG_OPS_H
#define SG_OPS_H

#include "cblas.h"
#include "sg_abi.h"

/* ---- results ---- */

int sg_alloc(sg_err *err, const char *where, sg_ws *ws, sg_arr *a, int nd, size_t item,
             void **own);
int sg_broadcast_shapes(sg_err *err, const char *where, int64_t *s, int nd, int n,
                        const int64_t *const *shapes, const int *ndims);

/* ---- iteration ---- */

/* Step the C-order odometer `idx` over `shape` (ndim nd), moving two element
 * offsets along with it (strides s1, s2). */
static inline void sg_step2(int64_t *idx, const int64_t *shape, int nd,
                            const int64_t *s1, int64_t *o1, const int64_t *s2, int64_t *o2)
{
    for (int k = nd - 1; k >= 0; k--) {
        *o1 += s1[k];
        *o2 += s2[k];
        if (++idx[k] < shape[k])
            return;
        *o1 -= idx[k] * s1[k];
        *o2 -= idx[k] * s2[k];
        idx[k] = 0;
    }
}

/* ---- copies ---- */

void sg_copy_nd(const sg_arr *dst, const sg_arr *src, int nd, size_t item);
void sg_pack(void *dst, const sg_arr *src, int nd, size_t item);
void sg_copy_block(const sg_arr *out, int nd, int axis, int64_t at, const sg_arr *x, size_t item);

/* ---- shapes: broadcast_to, reshape, sum_to ---- */

void sg_read_shape(int64_t *t, const sg_arr *v, int n);
int sg_broadcast_view(sg_err *err, const char *where, sg_arr *v, int nd, const sg_arr *x, int xnd,
                      const int64_t *t);
int sg_reshape_shape(sg_err *err, const char *where, int64_t *t, int nd, const sg_arr *x,
                     int xnd);
void sg_pack_into(sg_arr *v, const sg_arr *x, int xnd, size_t item);
int sg_reshape(sg_err *err, const char *where, sg_ws *ws, sg_arr *v, int nd, const sg_arr *x,
               int xnd, int64_t *t, size_t item);
int sg_same_lengths(const int64_t *a, const int64_t *b, int nd);
int sg_sum_to_check(sg_err *err, const char *where, const sg_arr *g, int gd, const int64_t *t,
                    int nd);

/* ---- accumulations: sum_to, and float sum and mean ---- */

#define SG_SUM_BLOCK 4096

int sg_loop_count(sg_err *err, const char *where, const int64_t *shape, int nd, int64_t *count);
void sg_memory_order(int nd, int64_t *sh, int64_t (*st)[SG_MAXDIM]);

/* T: the element type, A: the accumulator's (double for float and double). */
#define SG_DECLARE_ACCUMULATE(T, A, SUF)                                                   \
    int sg_accumulate_##SUF(sg_err *err, const char *where, A *out, const int64_t *ost,    \
                            const sg_arr *x, int nd);                                      \
    A *sg_acc_start_##SUF(sg_err *err, const char *where, void *out, int64_t n);           \
    void sg_acc_done_##SUF(A *acc, void *out, int64_t n, int64_t count);                   \
    int sg_sum_to_##SUF(sg_err *err, const char *where, const sg_arr *out, int nd,         \
                        const sg_arr *g, int gd);
SG_DECLARE_ACCUMULATE(float, double, f32)
SG_DECLARE_ACCUMULATE(double, double, f64)
SG_DECLARE_ACCUMULATE(int32_t, int32_t, i32)
SG_DECLARE_ACCUMULATE(int64_t, int64_t, i64)
SG_DECLARE_ACCUMULATE(uint8_t, uint8_t, b8)

int sg_sum_into_f32(sg_err *err, const char *where, const sg_arr *out, int on, const sg_arr *x,
                    int nd, const int *reduced, int keepdims, int mean);
int sg_sum_into_f64(sg_err *err, const char *where, const sg_arr *out, int on, const sg_arr *x,
                    int nd, const int *reduced, int keepdims, int mean);

/* ---- reductions ---- */

sg_arr sg_permuted(const sg_arr *a, int nd, const int *order);
int sg_row_axes(const sg_arr *x, int nd, int nr, int64_t *sh, int64_t *st);

/* sg_<fold>_<in>_<out>(out, x, nd, nr): x's last nr axes folded into out. */
#define SG_DECLARE_REDUCE(NAME) void NAME(const sg_arr *out, const sg_arr *x, int nd, int nr);
SG_DECLARE_REDUCE(sg_sum_i32_i64)
SG_DECLARE_REDUCE(sg_sum_i64_i64)
SG_DECLARE_REDUCE(sg_sum_b8_i64)
SG_DECLARE_REDUCE(sg_prod_f32_f32)
SG_DECLARE_REDUCE(sg_prod_f64_f64)
SG_DECLARE_REDUCE(sg_prod_i32_i64)
SG_DECLARE_REDUCE(sg_prod_i64_i64)
SG_DECLARE_REDUCE(sg_prod_b8_i64)
SG_DECLARE_REDUCE(sg_mean_i32_f64)
SG_DECLARE_REDUCE(sg_mean_i64_f64)
SG_DECLARE_REDUCE(sg_mean_b8_f64)

#define SG_DECLARE_EXTREME(T, S, NAME)                                                     \
    T sg_seg_##NAME##_##S(const T *p, int64_t n, int64_t s, int *nan);                     \
    int64_t sg_seg_find_##NAME##_##S(const T *p, int64_t n, int64_t s, T want, int nan);   \
    T sg_row_##NAME##_##S(const T *xp, int64_t base, int m, const int64_t *sh,             \
                          const int64_t *st, int64_t count, int *nan);                     \
    void sg_##NAME##_##S##_##S(const sg_arr *out, const sg_arr *x, int nd, int nr);        \
    void sg_arg##NAME##_##S##_i64(const sg_arr *out, const sg_arr *x, int nd, int nr);
#define SG_DECLARE_EXTREMES(T, S)                                                          \
    T sg_last_zero_##S(const T *xp, int64_t base, int m, const int64_t *sh,                \
                       const int64_t *st, int64_t count);                                  \
    SG_DECLARE_EXTREME(T, S, max)                                                          \
    SG_DECLARE_EXTREME(T, S, min)
SG_DECLARE_EXTREMES(float, f32)
SG_DECLARE_EXTREMES(double, f64)
SG_DECLARE_EXTREMES(int32_t, i32)
SG_DECLARE_EXTREMES(int64_t, i64)
SG_DECLARE_EXTREMES(uint8_t, b8)

/* ---- matrix products ---- */

int sg_matmul_shape(sg_err *err, const char *where, const sg_arr *a, int an, const sg_arr *b,
                    int bn, int64_t *shape, int on, int vec);
int sg_gemm_operand(sg_err *err, const char *where, sg_ws *ws, sg_arr *u, int nd, size_t item,
                    enum CBLAS_TRANSPOSE *t, int64_t *ld);
int sg_blas_sizes(sg_err *err, const char *where, int64_t m, int64_t k, int64_t n);
/* BLAS's gemm (row-major) with the same bits on any number of threads: the
 * product cut into blocks by its shape alone, shared among `ws`'s threads
 * (sg_blas_set_threads says how many); OpenBLAS itself on one thread. */
void sg_blas_set_threads(int n);
/* The support library's own loops (convolutions' im2col and col2im, pooling,
 * normalisation) share their work among as many threads as products do:
 * fn(ctx, u0, u1) for consecutive ranges of the n units [0, n), each range on
 * one thread. Units must be independent (each writes memory no other unit
 * touches), so the result is the same whatever the split; `unit_work` (about
 * the elements a unit moves) decides whether waking threads is worth it. */
int sg_blas_threads(void);
void sg_run_units(sg_ws *ws, int64_t n, int64_t unit_work,
                  void (*fn)(void *ctx, int64_t u0, int64_t u1), void *ctx);
void sg_blas_sgemm(sg_ws *ws, enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                   enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
                   const float *a, blasint lda, const float *b, blasint ldb, float beta,
                   float *c, blasint ldc);
void sg_blas_dgemm(sg_ws *ws, enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                   enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha,
                   const double *a, blasint lda, const double *b, blasint ldb, double beta,
                   double *c, blasint ldc);
int sg_matmul_blas(sg_err *err, const char *where, sg_ws *ws, sg_arr *c, int cn, const sg_arr *a,
                   int an, const sg_arr *b, int bn, int dbl);
sg_arr sg_gemm_view(const sg_arr *v, int t);
int sg_gemm_shape(sg_err *err, const char *pwhere, const char *where, const sg_arr *a, int ta,
                  const sg_arr *b, int tb, const sg_arr *c, int cn, int64_t *shape, int vec);
#define SG_DECLARE_GEMM(SUF)                                                               \
    int sg_gemm_##SUF(sg_err *err, const char *pwhere, const char *where, sg_ws *ws,       \
                      sg_arr *out, const sg_arr *a, int ta, const sg_arr *b, int tb,       \
                      double alpha, const sg_arr *c, int cn, double beta);
SG_DECLARE_GEMM(f32)
SG_DECLARE_GEMM(f64)
int sg_gemm_ready(sg_err *err, const char *pwhere, sg_ws *ws, size_t item, sg_arr *a, int ta,
                  sg_arr *b, int tb);
int sg_overlaps(const sg_arr *x, int xn, size_t xi, const sg_arr *y, int yn, size_t yi);
/* float and double through BLAS; integer and bool products in plain loops */
#define SG_DECLARE_MATMUL(SUF)                                                             \
    int sg_matmul_##SUF(sg_err *err, const char *where, sg_ws *ws, sg_arr *c, int cn,      \
                        const sg_arr *a, int an, const sg_arr *b, int bn);
SG_DECLARE_MATMUL(f32)
SG_DECLARE_MATMUL(f64)
SG_DECLARE_MATMUL(i32)
SG_DECLARE_MATMUL(i64)
SG_DECLARE_MATMUL(b8)

/* ---- indexing ---- */

int sg_wrap_index(sg_err *err, const char *where, int64_t i, int axis, int64_t n, int64_t *out);
int sg_slice(sg_err *err, const char *where, int64_t n, int given, int64_t start, int64_t stop,
             int64_t step, int64_t *out);
int sg_value_strides(sg_err *err, const char *where, const sg_arr *y, int yn, const int64_t *r,
                     int rn, int64_t *st);
#define SG_DECLARE_PUT(SUF)                                                                \
    void sg_put_##SUF(const sg_arr *r, int rn, const sg_arr *y, const int64_t *yst, int set);
SG_DECLARE_PUT(f32)
SG_DECLARE_PUT(f64)
SG_DECLARE_PUT(i32)
SG_DECLARE_PUT(i64)
SG_DECLARE_PUT(b8)
int sg_check_indices(sg_err *err, const char *where, const sg_arr *v, int nd, size_t item,
                     int axis, int64_t n);

#include "sg_rows.h" /* softmax, cross_entropy, logsumexp, one_hot, conversions, ... */
#include "sg_index.h" /* indexing, gathers and scatters, concatenate and split */
#include "sg_conv.h" /* conv2d and its gradients: im2col + gemm */
#include "sg_panels.h" /* products by a weight packed once (sg.scan loops) */
#include "sg_pool.h" /* max and average pooling and their gradients */
#include "sg_norm.h" /* batch and layer normalisation and their gradients */

/* Last: the loop drivers call the functions above (sg_overlaps, ...). */
#include "sg_loops.h"

#endif
