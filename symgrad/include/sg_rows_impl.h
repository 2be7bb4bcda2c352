/* sg_rows_impl.h: the bodies of sg_rows.h's functions that evaluate exp and
 * log (softmax, log_softmax, cross_entropy, logsumexp), compiled once per
 * instruction set: sg_rows.c includes this file for the baseline, sg_rows_v3.c
 * and sg_rows_v4.c under `#pragma GCC target`, so that sg_math.h's exp uses
 * FMA exactly where a kernel compiled with -march=native does. Each defines
 * SG_ISA, the suffix of its variants' names (sg_softmax_f32_v3, ...);
 * sg_rows.c calls the one the CPU runs.
 *
 * Rows: the operands are viewed with the op's axes last, so a row is one
 * softmax (or one output element of a reduction). When every view is
 * C-contiguous (or the rows are empty) the rows are walked flat and each pass
 * over a row is an `omp simd` loop; otherwise the rows are walked in C order
 * through their strides (broadcast and negative ones included) with plain
 * loops, whose sums run in order. These are the two paths, and the passes,
 * the generated loops had.
 */
#include "sg_support.h"
#include "sg_rows.h"

#define SG_R__(name, isa) name##_##isa
#define SG_R_(name, isa) SG_R__(name, isa)
#define SG_R(name) SG_R_(name, SG_ISA)

/* `x` (ndim nd) with `axis` moved last. */
static inline sg_arr SG_R(sg__axis_last)(const sg_arr *x, int nd, int axis)
{
    int order[SG_MAXDIM], n = 0;
    for (int k = 0; k < nd; k++)
        if (k != axis)
            order[n++] = k;
    order[n] = axis;
    return sg_permuted(x, nd, order);
}

/* The row's maximum into `m`: pass 1 of every row op (`m = v > m ? v : m`). */
#define SG_ROW_MAX_FLAT(T, XP, N)                                                          \
    T m = -INFINITY;                                                                       \
    _Pragma("omp simd reduction(max:m)")                                                   \
    for (int64_t j = 0; j < (N); j++)                                                      \
        m = (T)(XP)[j] > m ? (T)(XP)[j] : m;
#define SG_ROW_MAX_STRIDED(T, XP, N, S)                                                    \
    T m = -INFINITY;                                                                       \
    for (int64_t j = 0; j < (N); j++)                                                      \
        m = (T)(XP)[j * (S)] > m ? (T)(XP)[j * (S)] : m;

/* ---- softmax and log_softmax ---- */

#define SG_SOFTMAX(T, S, EXP)                                                              \
    static inline void SG_R(sg__softmax_row_##S)(T *o, const T *x, int64_t n)              \
    {                                                                                      \
        SG_ROW_MAX_FLAT(T, x, n)                                                        \
        double s = 0;                                                                      \
        /* the exponentials stored, then normalised in place */                            \
        _Pragma("omp simd reduction(+:s)")                                                 \
        for (int64_t j = 0; j < n; j++) {                                                  \
            o[j] = EXP(x[j] - m);                                                          \
            s += o[j];                                                                     \
        }                                                                                  \
        _Pragma("omp simd")                                                                \
        for (int64_t j = 0; j < n; j++)                                                    \
            o[j] = (T)(o[j] / s);                                                          \
    }                                                                                      \
    static inline void SG_R(sg__softmax_row_strided_##S)(T *o, int64_t so, const T *x,     \
                                                         int64_t sx, int64_t n)            \
    {                                                                                      \
        SG_ROW_MAX_STRIDED(T, x, n, sx)                                                 \
        double s = 0;                                                                      \
        for (int64_t j = 0; j < n; j++) {                                                  \
            o[j * so] = EXP(x[j * sx] - m);                                                \
            s += o[j * so];                                                                \
        }                                                                                  \
        for (int64_t j = 0; j < n; j++)                                                    \
            o[j * so] = (T)(o[j * so] / s);                                                \
    }                                                                                      \
    static inline void SG_R(sg__log_softmax_row_##S)(T *o, const T *x, int64_t n)          \
    {                                                                                      \
        SG_ROW_MAX_FLAT(T, x, n)                                                        \
        double s = 0;                                                                      \
        _Pragma("omp simd reduction(+:s)")                                                 \
        for (int64_t j = 0; j < n; j++)                                                    \
            s += EXP(x[j] - m);                                                            \
        T ls = (T)sg_log(s);                                                               \
        _Pragma("omp simd")                                                                \
        for (int64_t j = 0; j < n; j++)                                                    \
            o[j] = (x[j] - m) - ls;                                                        \
    }                                                                                      \
    static inline void SG_R(sg__log_softmax_row_strided_##S)(T *o, int64_t so,             \
                                                             const T *x, int64_t sx,       \
                                                             int64_t n)                    \
    {                                                                                      \
        SG_ROW_MAX_STRIDED(T, x, n, sx)                                                 \
        double s = 0;                                                                      \
        for (int64_t j = 0; j < n; j++)                                                    \
            s += EXP(x[j * sx] - m);                                                       \
        T ls = (T)sg_log(s);                                                               \
        for (int64_t j = 0; j < n; j++)                                                    \
            o[j * so] = (x[j * sx] - m) - ls;                                              \
    }                                                                                      \
    SG_SOFTMAX_WALK(T, S, softmax)                                                         \
    SG_SOFTMAX_WALK(T, S, log_softmax)

/* The rows of x and out along `axis`: flat when both are C-contiguous, else in
 * C order through the strides. An empty result has no rows to walk. */
#define SG_SOFTMAX_WALK(T, S, NAME)                                                        \
    void SG_R(sg_##NAME##_##S)(const sg_arr *out, const sg_arr *x, int nd, int axis)       \
    {                                                                                      \
        if (sg_size(out, nd) == 0)                                                         \
            return;                                                                        \
        sg_arr xv = SG_R(sg__axis_last)(x, nd, axis), ov = SG_R(sg__axis_last)(out, nd, axis); \
        int nk = nd - 1;                                                                   \
        int64_t outer = sg_size(&xv, nk), inner = xv.shape[nk];                            \
        T *op = (T *)out->data;                                                            \
        const T *xp = (const T *)x->data;                                                  \
        if (sg_is_contiguous(&xv, nd) && sg_is_contiguous(&ov, nd)) {                      \
            for (int64_t o = 0; o < outer; o++)                                            \
                SG_R(sg__##NAME##_row_##S)(op + o * inner, xp + o * inner, inner);         \
            return;                                                                        \
        }                                                                                  \
        int64_t idx[SG_MAXDIM] = {0}, ox = 0, oo = 0;                                      \
        for (int64_t o = 0; o < outer; o++) {                                              \
            SG_R(sg__##NAME##_row_strided_##S)(op + oo, ov.strides[nk], xp + ox,           \
                                               xv.strides[nk], inner);                     \
            sg_step2(idx, xv.shape, nk, xv.strides, &ox, ov.strides, &oo);                 \
        }                                                                                  \
    }

SG_SOFTMAX(float, f32, sg_expf)
SG_SOFTMAX(double, f64, sg_exp)

/* ---- cross_entropy ---- */

/* Row o's loss, `lab` checked: log(sum(exp(z - m))) - (z[lab] - m), m the
 * row's maximum (0 when not finite, so a +inf logit gives an infinite loss). */
#define SG_CROSS_ENTROPY(T, S, L, LS, EXP)                                                 \
    int SG_R(sg_cross_entropy_##S##_##LS)(sg_err *err, const char *where,                  \
                                          const sg_arr *out, const sg_arr *z,              \
                                          const sg_arr *y)                                 \
    {                                                                                      \
        int64_t rows = z->shape[0], n = z->shape[1];                                       \
        int64_t s0 = z->strides[0], s1 = z->strides[1], ys = y->strides[0];                \
        int flat = n == 0 || sg_is_contiguous(z, 2);                                       \
        const T *zp = (const T *)z->data;                                                  \
        const L *yp = (const L *)y->data;                                                  \
        T *op = (T *)out->data;                                                            \
        for (int64_t o = 0; o < rows; o++) {                                               \
            /* labels checked row by row, in order: the first bad one is reported */      \
            int64_t lab = (int64_t)yp[o * ys];                                             \
            if (lab < 0 || lab >= n)                                                       \
                return sg_fail(err, SG_EINDEX,                                             \
                               "%slabel %lld at index (%lld,) is out of range [0, %lld) "  \
                               "(%lld classes)", where, (long long)lab, (long long)o,      \
                               (long long)n, (long long)n);                                \
            if (flat) {                                                                    \
                const T *r = zp + o * n;                                                   \
                SG_ROW_MAX_FLAT(T, r, n)                                                   \
                if (!isfinite(m))                                                          \
                    m = 0;                                                                 \
                double s = 0;                                                              \
                _Pragma("omp simd reduction(+:s)")                                         \
                for (int64_t j = 0; j < n; j++)                                            \
                    s += EXP(r[j] - m);                                                    \
                op[o] = (T)sg_log(s) - (zp[o * s0 + lab * s1] - m);                        \
            } else {                                                                       \
                const T *r = zp + o * s0;                                                  \
                SG_ROW_MAX_STRIDED(T, r, n, s1)                                            \
                if (!isfinite(m))                                                          \
                    m = 0;                                                                 \
                double s = 0;                                                              \
                for (int64_t j = 0; j < n; j++)                                            \
                    s += EXP(r[j * s1] - m);                                               \
                op[o] = (T)sg_log(s) - (zp[o * s0 + lab * s1] - m);                        \
            }                                                                              \
        }                                                                                  \
        return 0;                                                                          \
    }

SG_CROSS_ENTROPY(float, f32, int32_t, i32, sg_expf)
SG_CROSS_ENTROPY(float, f32, int64_t, i64, sg_expf)
SG_CROSS_ENTROPY(double, f64, int32_t, i32, sg_exp)
SG_CROSS_ENTROPY(double, f64, int64_t, i64, sg_exp)

/* ---- logsumexp ---- */

/* Two passes over each row, in the result's type TO: the maximum (0 when not
 * finite), then log of the sum of the shifted exponentials (in double) plus it. */
#define SG_LOGSUMEXP(TI, SI, TO, SO, EXP)                                                  \
    void SG_R(sg_logsumexp_##SI##_##SO)(const sg_arr *out, const sg_arr *x, int nd,        \
                                        const int *order, int nr)                          \
    {                                                                                      \
        sg_arr v = sg_permuted(x, nd, order);                                              \
        int nk = nd - nr;                                                                  \
        int64_t outer = sg_size(&v, nk), inner = 1;                                        \
        for (int k = nk; k < nd; k++)                                                      \
            inner *= v.shape[k];                                                           \
        const TI *xp = (const TI *)x->data;                                                \
        TO *op = (TO *)out->data;                                                          \
        if (inner == 0 || sg_is_contiguous(&v, nd)) {                                      \
            for (int64_t o = 0; o < outer; o++) {                                          \
                const TI *r = xp + o * inner;                                              \
                SG_ROW_MAX_FLAT(TO, r, inner)                                           \
                if (!isfinite(m))                                                          \
                    m = 0;                                                                 \
                double s = 0;                                                              \
                _Pragma("omp simd reduction(+:s)")                                         \
                for (int64_t j = 0; j < inner; j++)                                        \
                    s += EXP((TO)r[j] - m);                                                \
                op[o] = (TO)(sg_log(s) + m);                                               \
            }                                                                              \
            return;                                                                        \
        }                                                                                  \
        /* C order: the outer axes by an odometer, the row's axes by another */           \
        int64_t idx[SG_MAXDIM] = {0}, base = 0, none = 0;                                  \
        const int64_t *rsh = v.shape + nk, *rst = v.strides + nk;                          \
        int64_t last = nr ? rsh[nr - 1] : 1, ls = nr ? rst[nr - 1] : 0;                    \
        int inr = nr ? nr - 1 : 0;                                                         \
        for (int64_t o = 0; o < outer; o++) {                                              \
            TO m = -INFINITY;                                                              \
            double s = 0;                                                                  \
            for (int pass = 0; pass < 2; pass++) {                                         \
                int64_t ridx[SG_MAXDIM] = {0}, off = base;                                 \
                for (int64_t e = 0; e < inner / last; e++) {                               \
                    const TI *r = xp + off;                                                \
                    if (pass == 0)                                                         \
                        for (int64_t j = 0; j < last; j++)                                 \
                            m = (TO)r[j * ls] > m ? (TO)r[j * ls] : m;                     \
                    else                                                                   \
                        for (int64_t j = 0; j < last; j++)                                 \
                            s += EXP((TO)r[j * ls] - m);                                   \
                    sg_step2(ridx, rsh, inr, rst, &off, rst, &none);                       \
                }                                                                          \
                if (pass == 0 && !isfinite(m))                                             \
                    m = 0;                                                                 \
            }                                                                              \
            op[o] = (TO)(sg_log(s) + m);                                                   \
            sg_step2(idx, v.shape, nk, v.strides, &base, v.strides, &none);                \
        }                                                                                  \
    }

SG_LOGSUMEXP(float, f32, float, f32, sg_expf)
SG_LOGSUMEXP(double, f64, double, f64, sg_exp)
SG_LOGSUMEXP(int32_t, i32, double, f64, sg_exp)
SG_LOGSUMEXP(int64_t, i64, double, f64, sg_exp)
SG_LOGSUMEXP(uint8_t, b8, double, f64, sg_exp)
