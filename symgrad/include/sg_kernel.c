/* sg_kernel.c: the bodies of the helpers sg_kernel.h declares.
 *
 * Compiled once, with sg_ops.c, into the support library libsg_support.so
 * (setup.py) that generated kernels link against; kernels built with a
 * sanitizer link a copy built with their flags (symgrad/compiler.py), so the
 * sanitizer sees the helpers too. See sg_support.h for SG_VEC.
 */
#include "sg_support.h"

int sg_support_abi(void) { return SG_ABI_VERSION; }

int sg_fail(sg_err *err, int code, const char *fmt, ...)
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
void *sg_ws_alloc(sg_ws *ws, size_t n)
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

void sg_ws_release(sg_ws *ws)
{
    for (size_t i = 0; i < ws->n_extra; i++)
        free(ws->extra[i]);
    ws->n_extra = 0;
    ws->used = 0;
}

/* Contiguous C-order strides for `shape`; returns the element count, or -1 on overflow. */
int64_t sg_contiguous(sg_arr *a, int ndim)
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
int sg_sum_lengths(int64_t *sum, const int64_t *len, int n)
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
int sg_shape_fits(const int64_t *shape, int ndim, size_t item)
{
    int64_t n = (int64_t)item;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0 || (shape[k] && n > INT64_MAX / shape[k]))
            return 0;
        n *= shape[k] ? shape[k] : 1;
    }
    return 1;
}

int64_t sg_size(const sg_arr *a, int ndim)
{
    int64_t n = 1;
    for (int k = 0; k < ndim; k++)
        n *= a->shape[k];
    return n;
}

int sg_is_contiguous(const sg_arr *a, int ndim)
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
int sg_broadcast_into(int64_t *out, int on, const int64_t *s, int sn)
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
void sg_broadcast_strides(int64_t *st, const sg_arr *a, int an, const int64_t *shape, int on)
{
    for (int k = 0; k < on; k++) {
        int j = k - (on - an);
        st[k] = (j < 0 || (a->shape[j] == 1 && shape[k] != 1)) ? 0 : a->strides[j];
    }
}

/* Shape as text for error messages: "(2, 3)". */
const char *sg_shape_str(char *buf, size_t n, const int64_t *shape, int ndim)
{
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int k = 0; k < ndim && used < n; k++)
        used += (size_t)snprintf(buf + used, n - used, k ? ", %lld" : "%lld", (long long)shape[k]);
    if (used < n)
        snprintf(buf + used, n - used, ndim == 1 ? ",)" : ")");
    return buf;
}

/* Copy `src` (any strides) into `dst` (any strides) of the same shape, element by element. */
SG_VEC void sg_copy(sg_arr *dst, const sg_arr *src, int ndim, size_t itemsize)
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
