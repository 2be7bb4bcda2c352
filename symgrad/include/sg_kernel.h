/* sg_kernel.h: helpers every generated kernel includes (static, inlined).
 *
 * Allocation from the workspace arena, output allocation, error reporting,
 * strided copies, and the arithmetic whose NumPy semantics C does not give
 * for free (floor division and remainder signs, integer division by zero,
 * float-to-int casts of NaN, integer powers).
 */
#ifndef SG_KERNEL_H
#define SG_KERNEL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* posix_memalign under -std=c99 */
#endif
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg_abi.h"

#define SG_ALIGN 64

static int sg_fail(sg_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

/* A block of n bytes from the arena; when the arena is too small, a malloc'ed
 * block remembered in ws->extra (freed at the end of the call) and the size
 * the arena should have next time in ws->need. */
static void *sg_ws_alloc(sg_ws *ws, size_t n)
{
    size_t start = (ws->used + SG_ALIGN - 1) & ~(size_t)(SG_ALIGN - 1);
    size_t end = start + (n ? n : 1);
    if (end > ws->need)
        ws->need = end;
    ws->used = end;
    if (end <= ws->cap)
        return ws->base + start;
    if (ws->n_extra == ws->cap_extra) {
        size_t cap = ws->cap_extra ? 2 * ws->cap_extra : 16;
        void **grown = (void **)realloc(ws->extra, cap * sizeof(void *));
        if (!grown)
            return NULL;
        ws->extra = grown;
        ws->cap_extra = cap;
    }
    void *p = NULL;
    if (posix_memalign(&p, SG_ALIGN, n ? n : 1) != 0)
        return NULL;
    ws->extra[ws->n_extra++] = p;
    return p;
}

static void sg_ws_release(sg_ws *ws)
{
    for (size_t i = 0; i < ws->n_extra; i++)
        free(ws->extra[i]);
    ws->n_extra = 0;
    ws->used = 0;
}

/* Contiguous C-order strides for `shape`; returns the element count, or -1 on overflow. */
static int64_t sg_contiguous(sg_arr *a, int ndim)
{
    int64_t n = 1;
    for (int k = ndim - 1; k >= 0; k--) {
        a->strides[k] = n;
        if (a->shape[k] < 0)
            return -1;
        if (a->shape[k] && n > INT64_MAX / a->shape[k])
            return -1;
        n *= a->shape[k];
    }
    return n;
}

/* The sum of n lengths into *sum; 1 (and *sum untouched) when one is negative
 * or the sum does not fit in int64: concatenate's result length (issue #11). */
static int sg_sum_lengths(int64_t *sum, const int64_t *len, int n)
{
    int64_t s = 0;
    for (int k = 0; k < n; k++) {
        if (len[k] < 0 || len[k] > INT64_MAX - s)
            return 1;
        s += len[k];
    }
    *sum = s;
    return 0;
}

/* Whether NumPy can hold an array of this shape: the product of its nonzero
 * lengths times `item` must fit in int64, even when another length is 0 (a
 * (2**61, 0) float64 array is refused). Results must be holdable: they are
 * handed to NumPy, and mode "py" makes each of them a NumPy array. */
static int sg_shape_fits(const int64_t *shape, int ndim, size_t item)
{
    int64_t n = (int64_t)item;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0 || (shape[k] && n > INT64_MAX / shape[k]))
            return 0;
        n *= shape[k] ? shape[k] : 1;
    }
    return 1;
}

static int64_t sg_size(const sg_arr *a, int ndim)
{
    int64_t n = 1;
    for (int k = 0; k < ndim; k++)
        n *= a->shape[k];
    return n;
}

static int sg_is_contiguous(const sg_arr *a, int ndim)
{
    int64_t n = 1;
    for (int k = ndim - 1; k >= 0; k--) {
        if (a->shape[k] != 1 && a->strides[k] != n)
            return 0;
        n *= a->shape[k];
    }
    return 1;
}

/* Fold shape `s` (ndim sn) into the broadcast shape `out` (ndim on >= sn).
 * Returns the first incompatible output axis, or -1 when compatible. */
static int sg_broadcast_into(int64_t *out, int on, const int64_t *s, int sn)
{
    for (int k = 0; k < sn; k++) {
        int64_t *o = &out[on - sn + k];
        if (s[k] == *o || s[k] == 1)
            continue;
        if (*o == 1) {
            *o = s[k];
            continue;
        }
        return on - sn + k;
    }
    return -1;
}

/* Strides of `a` (ndim an) seen through the broadcast to `shape` (ndim on). */
static void sg_broadcast_strides(int64_t *st, const sg_arr *a, int an, const int64_t *shape, int on)
{
    for (int k = 0; k < on; k++) {
        int j = k - (on - an);
        st[k] = (j < 0 || (a->shape[j] == 1 && shape[k] != 1)) ? 0 : a->strides[j];
    }
}

/* Shape as text for error messages: "(2, 3)". */
static const char *sg_shape_str(char *buf, size_t n, const int64_t *shape, int ndim)
{
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int k = 0; k < ndim && used < n; k++)
        used += (size_t)snprintf(buf + used, n - used, k ? ", %lld" : "%lld", (long long)shape[k]);
    if (used < n)
        snprintf(buf + used, n - used, ndim == 1 ? ",)" : ")");
    return buf;
}

/* Copy `src` (any strides) into `dst` (any strides) of the same shape, element by element. */
static void sg_copy(sg_arr *dst, const sg_arr *src, int ndim, size_t itemsize)
{
    int64_t n = sg_size(src, ndim);
    if (n == 0)
        return;
    int64_t idx[SG_MAXDIM] = {0};
    char *d = (char *)dst->data;
    const char *s = (const char *)src->data;
    for (int64_t i = 0; i < n; i++) {
        int64_t od = 0, os = 0;
        for (int k = 0; k < ndim; k++) {
            od += idx[k] * dst->strides[k];
            os += idx[k] * src->strides[k];
        }
        memcpy(d + od * (int64_t)itemsize, s + os * (int64_t)itemsize, itemsize);
        for (int k = ndim - 1; k >= 0; k--) {
            if (++idx[k] < src->shape[k])
                break;
            idx[k] = 0;
        }
    }
}

/* ---- arithmetic with NumPy's semantics ---- */

static inline double sg_floordiv_f64(double a, double b)
{
    if (b == 0.0)
        return a / b;
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0.0 && ((b < 0) != (mod < 0)))
        div -= 1.0;
    if (div == 0.0)
        return copysign(0.0, a / b);
    double fl = floor(div);
    return (div - fl > 0.5) ? fl + 1.0 : fl;
}

static inline double sg_mod_f64(double a, double b)
{
    if (b == 0.0)
        return fmod(a, b);
    double mod = fmod(a, b);
    if (mod != 0.0) {
        if ((b < 0) != (mod < 0))
            mod += b;
    } else {
        mod = copysign(0.0, b);
    }
    return mod;
}

static inline float sg_floordiv_f32(float a, float b) { return (float)sg_floordiv_f64(a, b); }
static inline float sg_mod_f32(float a, float b) { return (float)sg_mod_f64(a, b); }

#define SG_INT_DIVMOD(T, SUF, MINV)                                              \
    static inline T sg_floordiv_##SUF(T a, T b)                                  \
    {                                                                            \
        if (b == 0) return 0;                                                    \
        if (b == -1 && a == MINV) return MINV;                                   \
        T q = a / b;                                                             \
        if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;                        \
        return q;                                                                \
    }                                                                            \
    static inline T sg_mod_##SUF(T a, T b)                                       \
    {                                                                            \
        if (b == 0 || b == -1) return 0;                                         \
        T r = a % b;                                                             \
        if (r != 0 && ((r < 0) != (b < 0))) r += b;                              \
        return r;                                                                \
    }                                                                            \
    /* Integer power; a negative exponent sets *bad (NumPy refuses it). */      \
    static inline T sg_pow_##SUF(T a, T b, int *bad)                             \
    {                                                                            \
        if (b < 0) { *bad = 1; return 0; }                                       \
        uint64_t r = 1, base = (uint64_t)a;                                      \
        while (b) { if (b & 1) r *= base; base *= base; b >>= 1; }              \
        return (T)r;                                                             \
    }

SG_INT_DIVMOD(int32_t, i32, INT32_MIN)
SG_INT_DIVMOD(int64_t, i64, INT64_MIN)

/* Float to integer without undefined behaviour: NaN and out-of-range values
 * give the minimum, as x86 (and so NumPy there) does. */
static inline int64_t sg_f2i64(double x)
{
    return (x != x || x >= 9223372036854775808.0 || x < -9223372036854775808.0)
        ? INT64_MIN : (int64_t)x;
}

static inline int32_t sg_f2i32(double x)
{
    return (x != x || x >= 2147483648.0 || x < -2147483648.0) ? INT32_MIN : (int32_t)x;
}

#include "sg_math.h" /* exp, log, tanh, sigmoid, ... that vectorise */
#include "sg_ops.h" /* the generic ops, as functions */

#endif
