/* sg_pool.c: 2-d pooling and its gradients (sg_pool.h), PyTorch's windows.
 *
 * Window of output o along an axis of input length n: taps start + i * d for
 * i < k, start = o * s - pad, the taps outside [0, n) skipped (max) or
 * counted as zeros (average, count_include_pad, up to n + pad). Adaptive
 * pooling: [floor(o * n / m), ceil((o + 1) * n / m)) for m outputs.
 *
 * Max pooling picks, in each window, the first tap (row-major) holding the
 * maximum, or a NaN (the last one), as PyTorch's CPU kernels do, and stores
 * where (ih * W + iw); its gradient adds g at those positions, "select"
 * reads h there (the gradient of the gradient).
 *
 * Every call shares its planes (n, c) among the runtime's threads (sg_run_units):
 * each plane's outputs are computed by one thread in the same order as on one, so
 * the bits do not depend on the thread count.
 *
 * Index arithmetic: sg_pool2d_shape checks the derived lengths for overflow;
 * every offset after it is bounded by the arrays' sizes and fits in int64.
 */
#include "sg_support.h"

/* Whether a 4-d array has no element: then no loop runs, not even over a batch of
 * 2^60 empty planes (which would take years doing nothing). */
static int empty(const sg_arr *a)
{
    return !a->shape[0] || !a->shape[1] || !a->shape[2] || !a->shape[3];
}

static int mul_ok(int64_t a, int64_t b, int64_t *r) { return !__builtin_mul_overflow(a, b, r); }

/* Output length along one axis (-1 with err filled when there is none). */
static int64_t pool_len(sg_err *err, const char *where, const char *axis, int64_t n, int64_t k,
                        int64_t s, int64_t pad, int64_t d, int ceil_mode)
{
    int64_t span;
    /* PyTorch's bound: half the kernel itself, not the dilated one (with more, a window of
     * a dilated kernel can have no tap inside the input) */
    if (2 * pad > k) {
        sg_fail(err, SG_ESHAPE, "%sthe padding %lld should be at most half of the kernel's %s "
                "%lld", where, (long long)pad, axis, (long long)k);
        return -1;
    }
    span = (k - 1) * d + 1; /* k, d < 2**31 */
    int64_t room = n + 2 * pad - span; /* n < 2**62 (an array), pad < 2**31 */
    /* ceil_mode keeps one window that starts inside and overhangs the input (room in
     * [1 - s, 0)), as PyTorch's; room + s - 1 >= 0 there, so the division rounds down */
    int64_t o = -1;
    if (room >= 0 || (ceil_mode && room + s - 1 >= 0))
        o = (ceil_mode ? (room + s - 1) / s : room / s) + 1;
    /* the last window must start inside the input or its left padding */
    if (ceil_mode && o > 0 && (o - 1) * s >= n + pad)
        o--;
    if (o < 1) {
        sg_fail(err, SG_ESHAPE, "%sthe kernel's %s %lld (dilated: %lld) is larger than the "
                "padded input's %s %lld", where, axis, (long long)k, (long long)span, axis,
                (long long)(n + 2 * pad));
        return -1;
    }
    return o;
}

int sg_pool2d_shape(sg_err *err, const char *where, const int64_t *xs, const int *p,
                    int64_t *os)
{
    int64_t oh, ow, t;
    os[0] = xs[0], os[1] = xs[1];
    if (p[10]) {
        /* adaptive: o * n must not overflow for o < m */
        if (!mul_ok(xs[2], p[11], &t) || !mul_ok(xs[3], p[12], &t))
            return sg_fail(err, SG_ESHAPE, "%sthe pooling's sizes overflow", where);
        if ((xs[2] == 0 && p[11]) || (xs[3] == 0 && p[12]))
            return sg_fail(err, SG_ESHAPE, "%san input of height or width 0 has no windows "
                           "to average", where);
        os[2] = p[11], os[3] = p[12];
        return 0;
    }
    if ((oh = pool_len(err, where, "height", xs[2], p[0], p[2], p[4], p[6], p[8])) < 0 ||
        (ow = pool_len(err, where, "width", xs[3], p[1], p[3], p[5], p[7], p[8])) < 0)
        return err->code;
    if (!mul_ok(oh, ow, &t))
        return sg_fail(err, SG_ESHAPE, "%sthe pooling's sizes overflow", where);
    os[2] = oh, os[3] = ow;
    return 0;
}

int sg_pool2d_check(sg_err *err, const char *where, const int64_t *xs, const int *p,
                    const int64_t *gs)
{
    int64_t os[4];
    char a[160], b[160];
    if (sg_pool2d_shape(err, where, xs, p, os))
        return err->code;
    for (int i = 0; i < 4; i++)
        if (os[i] != gs[i])
            return sg_fail(err, SG_ESHAPE, "%sthe output gradient has shape %s but the "
                           "pooling's output has shape %s", where,
                           sg_shape_str(a, sizeof a, gs, 4), sg_shape_str(b, sizeof b, os, 4));
    return 0;
}

/* Whether some of the n indices v lies outside [-1, plane): one pass of vector compares,
 * with no branch per index (callgrind, 5 LeNet steps: 4.8M instructions, where the loop
 * over four axes with a branch and an offset per index took 23M). */
SG_VEC static int indices_bad(const int64_t *v, int64_t n, int64_t plane)
{
    int64_t bad = 0;
    _Pragma("omp simd reduction(|:bad)")
    for (int64_t i = 0; i < n; i++)
        bad |= (v[i] < -1) | (v[i] >= plane);
    return bad != 0;
}

/* g and idx of one shape, whose leading two axes are those of the input (shape xs),
 * and every index in [-1, H * W): what max pooling's gradient ops read. */
int sg_pool2d_indices_check(sg_err *err, const char *where, const sg_arr *g, const sg_arr *idx,
                            const int64_t *xs)
{
    char a[160], b[160], c[160];
    int64_t plane;
    for (int i = 0; i < 4; i++)
        if (g->shape[i] != idx->shape[i] || (i < 2 && g->shape[i] != xs[i]))
            return sg_fail(err, SG_ESHAPE, "%sthe gradient of shape %s, the indices of shape %s "
                           "and the input of shape %s do not match", where,
                           sg_shape_str(a, sizeof a, g->shape, 4),
                           sg_shape_str(b, sizeof b, idx->shape, 4), sg_shape_str(c, sizeof c, xs, 4));
    if (__builtin_mul_overflow(xs[2], xs[3], &plane))
        return sg_fail(err, SG_ESHAPE, "%sthe input's plane is too large", where);
    const int64_t *is = idx->strides;
    if (empty(idx))  /* nothing to read: a huge batch of empty planes is no loop */
        return 0;
    if (sg_is_contiguous(idx, 4)) {
        if (indices_bad(idx->data, sg_size(idx, 4), plane))
            return sg_fail(err, SG_EINDEX, "%san index is outside the input's plane of %lld "
                           "elements", where, (long long)plane);
        return 0;
    }
    for (int64_t n = 0; n < idx->shape[0]; n++)
        for (int64_t ch = 0; ch < idx->shape[1]; ch++)
            for (int64_t r = 0; r < idx->shape[2]; r++)
                for (int64_t q = 0; q < idx->shape[3]; q++) {
                    int64_t v = ((const int64_t *)idx->data)[n * is[0] + ch * is[1] + r * is[2] +
                                                             q * is[3]];
                    if (v < -1 || v >= plane)
                        return sg_fail(err, SG_EINDEX, "%san index is outside the input's plane "
                                       "of %lld elements", where, (long long)plane);
                }
    return 0;
}

/* Average pooling's window along one axis: [lo, hi) inside the input, and the
 * length the divisor counts. */
static void avg_win(const int *p, int ax, int64_t o, int64_t n, int64_t m, int64_t *lo,
                    int64_t *hi, int64_t *count)
{
    if (p[10]) {
        *lo = o * n / m;
        *hi = ((o + 1) * n + m - 1) / m;
        *count = *hi - *lo;
        return;
    }
    int64_t k = p[ax], s = p[2 + ax], pad = p[4 + ax];
    int64_t start = o * s - pad, end = start + k;
    if (end > n + pad)
        end = n + pad;
    int64_t full = end - start;
    *lo = start < 0 ? 0 : start;
    *hi = end > n ? n : end;
    *count = p[9] ? full : *hi - *lo;
}

/* Max pooling's geometry as locals: the input plane's size and strides, the window
 * (kh x kw), stride, top/left padding and dilation. */
typedef struct {
    int64_t H, W, s2, s3, kh, kw, sh, sw, pt, pl, dh, dw;
} sg_pool_k;

static sg_pool_k pool_k(const sg_arr *x, const int *p)
{
    sg_pool_k k = {x->shape[2], x->shape[3], x->strides[2], x->strides[3],
                   p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
    return k;
}

/* The first tap i (of a window starting at a, taps a + i * d) at or after 0, and the end
 * of those before n (at most k): the taps inside the input are [tap_from, tap_to). */
static inline int64_t tap_from(int64_t a, int64_t d)
{
    return a >= 0 ? 0 : (-a + d - 1) / d;
}

static inline int64_t tap_to(int64_t a, int64_t d, int64_t k, int64_t n)
{
    int64_t t = n <= a ? 0 : (n - a + d - 1) / d;
    return t < k ? t : k;
}

/* Shuffle masks picking lanes 0, 2, 4, ... of t[0..V) and t[V - 1..2V - 1) (load_*), for
 * vectors of 32 bytes and of 16. */
#define SG_EVENS_f32 {0, 2, 4, 6, 9, 11, 13, 15}
#define SG_EVENS_f64 {0, 2, 5, 7}
#define SG_EVENS16_f32 {0, 2, 5, 7}
#define SG_EVENS16_f64 {0, 3}

/* What a pooling call's threads share: each takes whole planes (sg_run_units). */
typedef struct {
    const sg_arr *out, *idx, *x;
    const int *p;
    const sg_conv_epi_plan *ep; /* max pooling's epilogue, or NULL */
} sg_pool_job;

/* Max pooling's vector passes over the interior of a row, for vectors of BYTES bytes        \
 * (NAME: the functions' suffix; EVENS: the shuffle picking every other lane). */            \
#define SG_DEFINE_POOL_VEC(T, IT, NAME, BYTES, EVENS)                                        \
    typedef T vT_##NAME __attribute__((vector_size(BYTES)));                                 \
    typedef IT vI_##NAME __attribute__((vector_size(BYTES)));                                \
                                                                                             \
    /* *out = V values t[l * step]: for step 1 one vector move, for step 2 two and a         \
     * shuffle (the second from t[V - 1], so the last element read is the last one           \
     * needed). */                                                                           \
    static inline __attribute__((always_inline)) void                                        \
    load_##NAME(vT_##NAME *out, const T *t, int64_t step)                                    \
    {                                                                                        \
        enum { V = BYTES / sizeof(T) };                                                      \
        vT_##NAME v, u;                                                                      \
        if (step == 1) {                                                                     \
            __builtin_memcpy(&v, t, BYTES);                                                  \
        } else if (step == 2) {                                                              \
            __builtin_memcpy(&v, t, BYTES);                                                  \
            __builtin_memcpy(&u, t + V - 1, BYTES);                                          \
            v = __builtin_shuffle(v, u, (vI_##NAME)EVENS);                                   \
        } else {                                                                             \
            for (int l = 0; l < V; l++)                                                      \
                v[l] = t[l * step];                                                          \
        }                                                                                    \
        *out = v;                                                                            \
    }                                                                                        \
                                                                                             \
    /* The maxima of the V outputs c0.. of a row whose windows lie inside the input (output  \
     * c's first tap at src + c * step and at ih * W + iw = base + c * sw in the plane; its  \
     * tap (i, j) i * dh * W + j * dw further, an IT), in vector values: each tap of all V   \
     * windows is one compare and two selects without a branch, where a branch per element   \
     * ran 5x slower (a compare of data is a coin toss the branch predictor loses). Ties     \
     * keep the first tap, a NaN wins, as argmax. Running it again gives the same. */        \
    static inline __attribute__((always_inline)) void                                        \
    pool_vec_##NAME(T *restrict o, int64_t *restrict ix, const T *restrict src, int64_t c0,  \
               int64_t step, const sg_pool_k *k, int64_t base)                               \
    {                                                                                        \
        enum { V = BYTES / sizeof(T) };                                                      \
        const T *s = src + c0 * step;                                                        \
        vT_##NAME m, v;                                                                      \
        load_##NAME(&m, s, step);                                                            \
        vI_##NAME at = {0};                                                                  \
        for (int64_t i = 0; i < k->kh; i++)                                                  \
            for (int64_t j = i == 0; j < k->kw; j++) {                                       \
                load_##NAME(&v, s + i * k->dh * k->s2 + j * k->dw * k->s3, step);            \
                vI_##NAME take = (v > m) | (v != v);                                         \
                m = (vT_##NAME)(((vI_##NAME)m & ~take) | ((vI_##NAME)v & take));             \
                at = (at & ~take) | ((IT)(i * k->dh * k->W + j * k->dw) & take);             \
            }                                                                                \
        __builtin_memcpy(o + c0, &m, BYTES);                                                 \
        for (int l = 0; l < V; l++)                                                          \
            ix[c0 + l] = base + (c0 + l) * k->sw + at[l];                                    \
    }                                                                                        \
                                                                                             \
    /* Outputs [a, b) of such a row, V at a time, the last V overlapping the ones before. */ \
    static inline __attribute__((always_inline)) void                                        \
    pool_row_##NAME(T *restrict o, int64_t *restrict ix, const T *restrict src, int64_t a,   \
               int64_t b, int64_t step, const sg_pool_k *k, int64_t base)                    \
    {                                                                                        \
        enum { V = BYTES / sizeof(T) };                                                      \
        int64_t c = a;                                                                       \
        for (; c + V <= b; c += V)                                                           \
            pool_vec_##NAME(o, ix, src, c, step, k, base);                                   \
        if (c < b)                                                                           \
            pool_vec_##NAME(o, ix, src, b - V, step, k, base);                               \
    }

#define SG_DEFINE_POOL(T, IT, SUF)                                                           \
    /* full vectors (V outputs) and half ones (V / 2: LeNet's second pool, 4 a row) */       \
    SG_DEFINE_POOL_VEC(T, IT, SUF, 32, SG_EVENS_##SUF)                                       \
    SG_DEFINE_POOL_VEC(T, IT, SUF##_h, 16, SG_EVENS16_##SUF)                                 \
    /* The tap holding the maximum of the window of output (r, c), as ih * W + iw, or        \
     * -1 for a window with no tap inside the input; the maximum in *mx. The geometry        \
     * comes in a local copy (`k`), which the outputs' stores cannot alias: read from        \
     * `p` itself, every parameter was loaded again after each store (5x slower). */         \
    static inline int64_t argmax_##SUF(const T *xp, const sg_pool_k *k, int64_t r, int64_t c, \
                                       T *mx)                                                \
    {                                                                                        \
        int64_t best = -1, h0 = r * k->sh - k->pt, w0 = c * k->sw - k->pl;                   \
        T m = 0;                                                                             \
        if (h0 >= 0 && w0 >= 0 && h0 + (k->kh - 1) * k->dh < k->H &&                         \
            w0 + (k->kw - 1) * k->dw < k->W) { /* inside: no bounds to check */              \
            m = xp[h0 * k->s2 + w0 * k->s3];                                                 \
            best = h0 * k->W + w0;                                                           \
            for (int64_t i = 0, ih = h0; i < k->kh; i++, ih += k->dh)                        \
                for (int64_t j = 0, iw = w0; j < k->kw; j++, iw += k->dw) {                  \
                    T v = xp[ih * k->s2 + iw * k->s3];                                       \
                    if (v > m || v != v) {                                                   \
                        m = v;                                                               \
                        best = ih * k->W + iw;                                               \
                    }                                                                        \
                }                                                                            \
            *mx = m;                                                                         \
            return best;                                                                     \
        }                                                                                    \
        /* only the taps inside the input: a kernel far larger than it (with the padding  \
         * it allows) would otherwise take kh * kw steps a window, most of them skipped */   \
        int64_t i0 = tap_from(h0, k->dh), i1 = tap_to(h0, k->dh, k->kh, k->H);               \
        int64_t j0 = tap_from(w0, k->dw), j1 = tap_to(w0, k->dw, k->kw, k->W);               \
        for (int64_t i = i0; i < i1; i++) {                                                  \
            int64_t ih = h0 + i * k->dh;                                                     \
            for (int64_t j = j0; j < j1; j++) {                                              \
                int64_t iw = w0 + j * k->dw;                                                 \
                T v = xp[ih * k->s2 + iw * k->s3];                                           \
                if (best < 0 || v > m || v != v) {                                           \
                    m = v;                                                                   \
                    best = ih * k->W + iw;                                                   \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        *mx = best < 0 ? (T)-INFINITY : m;                                                   \
        return best;                                                                         \
    }                                                                                        \
                                                                                             \
    /* The maxima of outputs [a, b) of a row whose windows lie inside the input, fewer than a \
     * vector's (LeNet's second pool: 4 a row): a pass over them per tap, in argmax's order, \
     * with no bounds to check and nothing to divide. */                                     \
    static inline void pool_passes_##SUF(T *o, int64_t *ix, const T *xp, const sg_pool_k *k, \
                                     int64_t h0, int64_t a, int64_t b)                       \
    {                                                                                        \
        const int64_t step = k->sw * k->s3;                                                  \
        for (int64_t i = 0, ih = h0; i < k->kh; i++, ih += k->dh)                            \
            for (int64_t j = 0; j < k->kw; j++) {                                            \
                const T *src = xp + ih * k->s2 + (j * k->dw - k->pl) * k->s3;                \
                int64_t base = ih * k->W + j * k->dw - k->pl;                                \
                for (int64_t c = a; c < b; c++) {                                            \
                    T v = src[c * step];                                                     \
                    if ((i == 0 && j == 0) || v > o[c] || v != v) {                          \
                        o[c] = v;                                                            \
                        ix[c] = base + c * k->sw;                                            \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
    }                                                                                        \
                                                                                             \
    /* Planes [u0, u1) (n * C + ch) of max pooling: the maxima and their positions (ih * W   \
     * + iw in the plane, -1 if none), out and idx C-contiguous. */                          \
    SG_VEC static void max_pool_units_##SUF(void *ctx, int64_t u0, int64_t u1)               \
    {                                                                                        \
        const sg_pool_job *jb = ctx;                                                         \
        const sg_arr *out = jb->out, *idx = jb->idx, *x = jb->x;                             \
        const sg_pool_k k = pool_k(x, jb->p);                                                \
        int64_t OH = out->shape[2], OW = out->shape[3], C = x->shape[1];                     \
        T *o = (T *)out->data + u0 * OH * OW;                                                \
        int64_t *ix = (int64_t *)idx->data + u0 * OH * OW;                                   \
        /* the output columns whose windows lie inside the input's width: [c0, c1) */        \
        int64_t span = (k.kw - 1) * k.dw, c0 = (k.pl + k.sw - 1) / k.sw;                     \
        int64_t c1 = k.W - 1 - span + k.pl >= 0 ? (k.W - 1 - span + k.pl) / k.sw + 1 : 0;    \
        c1 = c1 < OW ? c1 : OW;                                                              \
        c0 = c0 < c1 ? c0 : c1;                                                              \
        const int64_t step = k.sw * k.s3;                                                    \
        /* a tap's offset in its window, an IT in the vectors, must fit */                   \
        enum { V = 32 / sizeof(T) };                                                         \
        int64_t span2, span3;                                                                \
        const int vec = !__builtin_mul_overflow((k.kh - 1) * k.dh, k.W, &span2) &&           \
                        !__builtin_add_overflow(span2, (k.kw - 1) * k.dw, &span3) &&         \
                        span3 <= (sizeof(IT) == 4 ? INT32_MAX : INT64_MAX);                  \
        for (int64_t u = u0; u < u1; u++) {                                                  \
            int64_t n = u / C, ch = u % C;                                                   \
            const T *xp = (const T *)x->data + n * x->strides[0] + ch * x->strides[1];       \
            for (int64_t r = 0; r < OH; r++, o += OW, ix += OW) {                            \
                int64_t h0 = r * k.sh - k.pt, a = OW, b = OW; /* a row at an edge: all */    \
                if (h0 >= 0 && h0 + (k.kh - 1) * k.dh < k.H) {                               \
                    a = c0;                                                                  \
                    b = c1;                                                                  \
                }                                                                            \
                for (int64_t c = 0; c < a; c++)                                              \
                    ix[c] = argmax_##SUF(xp, &k, r, c, o + c);                               \
                /* inside: no bounds to check, V outputs at a time when there are as         \
                 * many, else V / 2 (else a scalar pass per tap); step 2 and 1 as            \
                 * constants make loads the compiler can turn into vector moves and          \
                 * shuffles */                                                               \
                const T *src = xp + h0 * k.s2 - k.pl * k.s3;                                 \
                int64_t base = h0 * k.W - k.pl;                                              \
                if (vec && b - a < V && b - a >= V / 2) {                                    \
                    if (step == 2)                                                           \
                        pool_row_##SUF##_h(o, ix, src, a, b, 2, &k, base);                   \
                    else if (step == 1)                                                      \
                        pool_row_##SUF##_h(o, ix, src, a, b, 1, &k, base);                   \
                    else                                                                     \
                        pool_row_##SUF##_h(o, ix, src, a, b, step, &k, base);                \
                    a = b;                                                                   \
                }                                                                            \
                if (b - a < V || !vec) { /* fewer: passes over the row (none: no pass over \
                                          * the taps of a kernel that may be huge) */         \
                    if (a < b)                                                               \
                        pool_passes_##SUF(o, ix, xp, &k, h0, a, b);                          \
                    a = b;                                                                   \
                }                                                                            \
                if (step == 2)                                                               \
                    pool_row_##SUF(o, ix, src, a, b, 2, &k, base);                           \
                else if (step == 1)                                                          \
                    pool_row_##SUF(o, ix, src, a, b, 1, &k, base);                           \
                else                                                                         \
                    pool_row_##SUF(o, ix, src, a, b, step, &k, base);                        \
                for (int64_t c = b; c < OW; c++)                                             \
                    ix[c] = argmax_##SUF(xp, &k, r, c, o + c);                               \
            }                                                                                \
            if (jb->ep) /* the plane's epilogue, in place, while it is in cache */           \
                sg_epi_rows(jb->ep, OW, n, ch, 0, OH, (char *)(o - OH * OW),                 \
                            (const char *)(o - OH * OW), sizeof(T));                         \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    void sg_max_pool2d_##SUF(sg_ws *ws, const sg_arr *out, const sg_arr *idx,                \
                             const sg_arr *x, const int *p)                                  \
    {                                                                                        \
        sg_max_pool2d_epi_##SUF(ws, out, idx, x, p, NULL);                                   \
    }                                                                                        \
                                                                                             \
    void sg_max_pool2d_epi_##SUF(sg_ws *ws, const sg_arr *out, const sg_arr *idx,            \
                                 const sg_arr *x, const int *p, const sg_conv_epi *epi)      \
    {                                                                                        \
        sg_conv_epi_plan plan_e;                                                             \
        if (empty(out))                                                                      \
            return;                                                                          \
        if (epi)                                                                             \
            sg_epi_plan(&plan_e, epi, out);                                                  \
        sg_pool_job jb = {out, idx, x, p, epi ? &plan_e : NULL};                             \
        sg_run_units(ws, out->shape[0] * out->shape[1],                                      \
                     out->shape[2] * out->shape[3] * (int64_t)p[0] * p[1],                   \
                     max_pool_units_##SUF, &jb);                                             \
    }                                                                                        \
                                                                                             \
    /* Planes [u0, u1) of max pooling's gradient: zeros plus g at the positions idx names    \
     * (checked beforehand), into gx (C-contiguous). */                                      \
    static void max_grad_units_##SUF(void *ctx, int64_t u0, int64_t u1)                      \
    {                                                                                        \
        const sg_pool_job *jb = ctx;                                                         \
        const sg_arr *gx = jb->out, *g = jb->x, *idx = jb->idx;                              \
        const int64_t *gs = g->strides, *is = idx->strides;                                  \
        int64_t C = g->shape[1], OH = g->shape[2], OW = g->shape[3];                         \
        int64_t plane = gx->shape[2] * gx->shape[3];                                         \
        /* strides as locals: the stores into gx could alias them otherwise */               \
        const int64_t g2 = gs[2], g3 = gs[3], i2 = is[2], i3 = is[3];                        \
        for (int64_t u = u0; u < u1; u++) {                                                  \
            int64_t n = u / C, ch = u % C;                                                   \
            const T *gp = (const T *)g->data + n * gs[0] + ch * gs[1];                       \
            const int64_t *ip = (const int64_t *)idx->data + n * is[0] + ch * is[1];         \
            T *dp = (T *)gx->data + u * plane;                                               \
            memset(dp, 0, (size_t)plane * sizeof(T));                                        \
            for (int64_t r = 0; r < OH; r++)                                                 \
                for (int64_t c = 0; c < OW; c++) {                                           \
                    int64_t a = ip[r * i2 + c * i3];                                         \
                    if (a >= 0)                                                              \
                        dp[a] += gp[r * g2 + c * g3];                                        \
                }                                                                            \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    void sg_max_pool2d_grad_##SUF(sg_ws *ws, const sg_arr *gx, const sg_arr *g,              \
                                  const sg_arr *idx)                                         \
    {                                                                                        \
        if (empty(g)) {                                                                      \
            memset(gx->data, 0, (size_t)sg_size(gx, 4) * sizeof(T));                         \
            return;                                                                          \
        }                                                                                    \
        sg_pool_job jb = {gx, idx, g, NULL, NULL};                                           \
        sg_run_units(ws, g->shape[0] * g->shape[1],                                          \
                     gx->shape[2] * gx->shape[3] + g->shape[2] * g->shape[3],                \
                     max_grad_units_##SUF, &jb);                                             \
    }                                                                                        \
                                                                                             \
    /* Planes [u0, u1) of h read at the positions idx names (0 where -1). */                 \
    static void select_units_##SUF(void *ctx, int64_t u0, int64_t u1)                        \
    {                                                                                        \
        const sg_pool_job *jb = ctx;                                                         \
        const sg_arr *h = jb->x, *idx = jb->idx;                                             \
        const int64_t *hs = h->strides, *is = idx->strides;                                  \
        int64_t C = idx->shape[1], OH = idx->shape[2], OW = idx->shape[3];                   \
        int64_t W = h->shape[3];                                                             \
        T *o = (T *)jb->out->data + u0 * OH * OW;                                            \
        for (int64_t u = u0; u < u1; u++) {                                                  \
            int64_t n = u / C, ch = u % C;                                                   \
            const T *hp = (const T *)h->data + n * hs[0] + ch * hs[1];                       \
            const int64_t *ip = (const int64_t *)idx->data + n * is[0] + ch * is[1];         \
            for (int64_t r = 0; r < OH; r++)                                                 \
                for (int64_t c = 0; c < OW; c++) {                                           \
                    int64_t a = ip[r * is[2] + c * is[3]];                                   \
                    *o++ = a < 0 ? (T)0 : hp[a / W * hs[2] + a % W * hs[3]];                 \
                }                                                                            \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    void sg_max_pool2d_select_##SUF(sg_ws *ws, const sg_arr *out, const sg_arr *h,           \
                                    const sg_arr *idx)                                       \
    {                                                                                        \
        if (empty(out))                                                                      \
            return;                                                                          \
        sg_pool_job jb = {out, idx, h, NULL, NULL};                                          \
        sg_run_units(ws, idx->shape[0] * idx->shape[1], idx->shape[2] * idx->shape[3],       \
                     select_units_##SUF, &jb);                                               \
    }                                                                                        \
                                                                                             \
    /* Planes [u0, u1) of average pooling. */                                                \
    static void avg_units_##SUF(void *ctx, int64_t u0, int64_t u1)                           \
    {                                                                                        \
        const sg_pool_job *jb = ctx;                                                         \
        const sg_arr *x = jb->x;                                                             \
        const int *p = jb->p;                                                                \
        const int64_t *xs = x->shape, *st = x->strides;                                      \
        int64_t OH = jb->out->shape[2], OW = jb->out->shape[3];                              \
        T *o = (T *)jb->out->data + u0 * OH * OW;                                            \
        for (int64_t u = u0; u < u1; u++) {                                                  \
            const T *xp = (const T *)x->data + u / xs[1] * st[0] + u % xs[1] * st[1];        \
            for (int64_t r = 0; r < OH; r++) {                                               \
                int64_t h0, h1, hc;                                                          \
                avg_win(p, 0, r, xs[2], OH, &h0, &h1, &hc);                                  \
                for (int64_t c = 0; c < OW; c++) {                                           \
                    int64_t w0, w1, wc;                                                      \
                    avg_win(p, 1, c, xs[3], OW, &w0, &w1, &wc);                              \
                    double s = 0;                                                            \
                    for (int64_t i = h0; i < h1; i++)                                        \
                        for (int64_t j = w0; j < w1; j++)                                    \
                            s += xp[i * st[2] + j * st[3]];                                  \
                    *o++ = (T)(s / (double)(hc * wc));                                       \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    void sg_avg_pool2d_##SUF(sg_ws *ws, const sg_arr *out, const sg_arr *x, const int *p)    \
    {                                                                                        \
        if (empty(out))  /* a huge batch of empty planes is no loop */                       \
            return;                                                                          \
        sg_pool_job jb = {out, NULL, x, p, NULL};                                            \
        sg_run_units(ws, out->shape[0] * out->shape[1],                                      \
                     out->shape[2] * out->shape[3] * 4, avg_units_##SUF, &jb);               \
    }                                                                                        \
                                                                                             \
    /* Planes [u0, u1) of average pooling's gradient, into gx (C-contiguous). */             \
    static void avg_grad_units_##SUF(void *ctx, int64_t u0, int64_t u1)                      \
    {                                                                                        \
        const sg_pool_job *jb = ctx;                                                         \
        const sg_arr *gx = jb->out, *g = jb->x;                                              \
        const int *p = jb->p;                                                                \
        const int64_t *xs = gx->shape, *gs = g->strides;                                     \
        int64_t OH = g->shape[2], OW = g->shape[3], plane = xs[2] * xs[3];                   \
        for (int64_t u = u0; u < u1; u++) {                                                  \
            const T *gp = (const T *)g->data + u / xs[1] * gs[0] + u % xs[1] * gs[1];        \
            T *dp = (T *)gx->data + u * plane;                                               \
            memset(dp, 0, (size_t)plane * sizeof(T));                                        \
            for (int64_t r = 0; r < OH; r++) {                                               \
                int64_t h0, h1, hc;                                                          \
                avg_win(p, 0, r, xs[2], OH, &h0, &h1, &hc);                                  \
                for (int64_t c = 0; c < OW; c++) {                                           \
                    int64_t w0, w1, wc;                                                      \
                    avg_win(p, 1, c, xs[3], OW, &w0, &w1, &wc);                              \
                    T v = (T)(gp[r * gs[2] + c * gs[3]] / (double)(hc * wc));                \
                    for (int64_t i = h0; i < h1; i++)                                        \
                        for (int64_t j = w0; j < w1; j++)                                    \
                            dp[i * xs[3] + j] += v;                                          \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    void sg_avg_pool2d_grad_##SUF(sg_ws *ws, const sg_arr *gx, const sg_arr *g,              \
                                  const int *p)                                              \
    {                                                                                        \
        if (empty(g)) {                                                                      \
            memset(gx->data, 0, (size_t)sg_size(gx, 4) * sizeof(T));                         \
            return;                                                                          \
        }                                                                                    \
        sg_pool_job jb = {gx, NULL, g, p, NULL};                                             \
        sg_run_units(ws, gx->shape[0] * gx->shape[1],                                        \
                     gx->shape[2] * gx->shape[3] + g->shape[2] * g->shape[3] * 4,            \
                     avg_grad_units_##SUF, &jb);                                             \
    }

SG_DEFINE_POOL(float, int32_t, f32)
SG_DEFINE_POOL(double, int64_t, f64)
