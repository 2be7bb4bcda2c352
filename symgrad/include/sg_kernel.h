/* sg_kernel.h: what every generated kernel includes.
 *
 * The helpers a kernel calls once per node or per row -- allocation from the
 * workspace arena, error reporting, shapes, strided copies, and every
 * function of sg_ops.h -- are only DECLARED here: their bodies (sg_kernel.c,
 * sg_ops.c next to this header) are compiled once, when symgrad is
 * installed, into the support library libsg_support.so that every kernel
 * links against (symgrad/compiler.py), so no kernel compiles them again.
 * What stays here, static inline, is the arithmetic evaluated per element
 * inside fused loops, which must inline to vectorise: NumPy's floor division
 * and remainder signs, integer division by zero, float-to-int casts of NaN,
 * integer powers, and sg_math.h's exp, log, tanh, ...
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

/* ---- in the support library (sg_kernel.c) ---- */

/* SG_ABI_VERSION as the support library was built with it; the runtime
 * compares it with its own when it loads a kernel (csrc/sg_runtime.c). */
int sg_support_abi(void);

/* Format a message into err->msg, set err->code = code and return it. */
int sg_fail(sg_err *err, int code, const char *fmt, ...);

/* A block of n bytes (64-byte aligned) from the arena, reusing released ones;
 * when the arena is too small, a malloc'ed block remembered in ws->extra (freed
 * at the end of the call), and the size the arena should have next time in
 * ws->need. NULL when out of memory. */
void *sg_ws_alloc(sg_ws *ws, size_t n);

/* Give back a block of sg_ws_alloc after its value's last use, for later
 * requests of the same call. A block released already, or NULL, is ignored. */
void sg_ws_free(sg_ws *ws, void *data);

/* Free the blocks of ws->extra and empty the arena. */
void sg_ws_release(sg_ws *ws);

/* Contiguous C-order strides for `shape`; returns the element count, or -1 on overflow. */
int64_t sg_contiguous(sg_arr *a, int ndim);

/* The sum of n lengths into *sum; 1 (and *sum untouched) when one is negative
 * or the sum does not fit in int64: concatenate's result length (issue #11). */
int sg_sum_lengths(int64_t *sum, const int64_t *len, int n);

/* Whether NumPy can hold an array of this shape: the product of its nonzero
 * lengths times `item` must fit in int64, even when another length is 0 (a
 * (2**61, 0) float64 array is refused). Results must be holdable: they are
 * handed to NumPy, and mode "py" makes each of them a NumPy array. */
int sg_shape_fits(const int64_t *shape, int ndim, size_t item);

/* The element count of `a` (ndim ndim). */
int64_t sg_size(const sg_arr *a, int ndim);

/* Whether `a` is C-contiguous (axes of length 1 may have any stride). */
int sg_is_contiguous(const sg_arr *a, int ndim);

/* Fold shape `s` (ndim sn) into the broadcast shape `out` (ndim on >= sn).
 * Returns the first incompatible output axis, or -1 when compatible. */
int sg_broadcast_into(int64_t *out, int on, const int64_t *s, int sn);

/* Strides of `a` (ndim an) seen through the broadcast to `shape` (ndim on). */
void sg_broadcast_strides(int64_t *st, const sg_arr *a, int an, const int64_t *shape, int on);

/* Shape as text for error messages: "(2, 3)". */
const char *sg_shape_str(char *buf, size_t n, const int64_t *shape, int ndim);

/* Copy `src` (any strides) into `dst` (any strides) of the same shape, element by element. */
void sg_copy(sg_arr *dst, const sg_arr *src, int ndim, size_t itemsize);

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

#include "sg_math.h" /* exp, log, tanh, sigmoid, ... that vectorise */

/* Float to integer without undefined behaviour: NaN and out-of-range values
 * give the minimum, as x86 (and so NumPy there) does. An int64 through
 * sg_math.h's sg_f64_to_i64: AVX2 has no vector conversion to int64. */
static inline int64_t sg_f2i64(double x)
{
    return (x != x || x >= 9223372036854775808.0 || x < -9223372036854775808.0)
        ? INT64_MIN : sg_f64_to_i64(x);
}

static inline int32_t sg_f2i32(double x)
{
    return (x != x || x >= 2147483648.0 || x < -2147483648.0) ? INT32_MIN : (int32_t)x;
}

#include "sg_ops.h" /* the generic ops, as functions */

#endif
