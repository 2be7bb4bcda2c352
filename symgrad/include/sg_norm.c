/* sg_norm.c: batch and layer normalisation and their gradients (sg_norm.h).
 *
 * Each array is seen as three merged groups of axes: batch norm's (N, C, S)
 * -- the batch, the channel, the rest -- and layer norm's (R, D, 1) -- the
 * rows and the normalised axes. An array whose groups do not merge through
 * its strides (a transposed or sliced input) is first packed into the
 * workspace. Work goes a channel (a row) at a time: its statistics, then its
 * results, while its values are still in cache -- except batch norm of (N, C)
 * values (no spatial axes), whose passes go row by row into per-channel sums.
 *
 * Sums are double; along contiguous rows they are `omp simd` reductions (the
 * compiler vectorises them, adding in its lanes' order); the variance is the mean of squared deviations from
 * the mean found first (two passes), never E[x^2] - E[x]^2, which loses every
 * digit of a float32 channel far from zero.
 *
 *   batch norm     xhat = (x - mean) / sqrt(var + eps), out = xhat * w + b
 *                  (mean, var: over N and S; var returned unbiased, * M / (M - 1))
 *   its gradient   gb = sum g, gw = sum g * xhat,
 *                  gx = w / sqrt(var + eps) * (g - gb / M - xhat * gw / M)
 *   layer norm     the same per row over its D values, w and b of D values;
 *                  returns the mean and rstd = 1 / sqrt(var + eps) of each row
 *   its gradient   gxhat = g * w, gx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)),
 *                  gw = sum over rows of g * xhat, gb = sum over rows of g
 */
#include "sg_support.h"

typedef struct {
    char *p;          /* first element */
    int64_t n[3], s[3]; /* lengths and strides (elements) of the three groups */
    void *own;        /* a packed copy in the workspace, or NULL */
} nview;

/* Merge axes [0, c1), [c1, c2), [c2, nd) of `a`; 1 when some group does not merge. */
static int merge3(const sg_arr *a, int nd, int c1, int c2, nview *v)
{
    int cut[4] = {0, c1, c2, nd};
    v->p = a->data;
    v->own = NULL;
    for (int g = 0; g < 3; g++) {
        int64_t len = 1, st = 0;
        int have = 0;
        for (int k = cut[g + 1] - 1; k >= cut[g]; k--) {
            if (a->shape[k] == 1)
                continue;
            if (have && a->strides[k] != st * len)
                return 1;
            if (!have)
                st = a->strides[k], have = 1;
            len *= a->shape[k];
        }
        v->n[g] = len;
        v->s[g] = st;
    }
    return 0;
}

/* The three-group view of a non-empty `a`, packing it when its axes do not merge. */
static int view3(sg_err *err, const char *where, sg_ws *ws, const sg_arr *a, int nd, int c1,
                 int c2, size_t item, nview *v)
{
    if (!merge3(a, nd, c1, c2, v))
        return 0;
    sg_arr t = *a;
    int64_t n = sg_contiguous(&t, nd);
    t.data = sg_ws_alloc(ws, (size_t)n * item);
    if (!t.data)
        return sg_fail(err, SG_ENOMEM, "%sout of memory", where);
    sg_pack(t.data, a, nd, item);
    merge3(&t, nd, c1, c2, v);
    v->own = t.data;
    return 0;
}

/* The product of a's lengths on axes [lo, hi), or -1 on overflow. */
static int64_t count(const sg_arr *a, int lo, int hi)
{
    int64_t n = 1;
    for (int k = lo; k < hi; k++)
        if (__builtin_mul_overflow(n, a->shape[k], &n))
            return -1;
    return n;
}

static int same_shape(const sg_arr *a, const sg_arr *b, int nd)
{
    for (int k = 0; k < nd; k++)
        if (a->shape[k] != b->shape[k])
            return 0;
    return 1;
}

static int bad_grad(sg_err *err, const char *where, const sg_arr *g, const sg_arr *x, int nd)
{
    char a[160], b[160];
    return sg_fail(err, SG_ESHAPE, "%sthe output gradient has shape %s but the input has shape %s",
                   where, sg_shape_str(a, sizeof a, g->shape, nd),
                   sg_shape_str(b, sizeof b, x->shape, nd));
}

/* What a normalisation call's threads share (sg_run_units): batch norm's take whole
 * channels, layer norm's whole rows, so every sum runs in one thread in the order it
 * had on one: the same bits on any thread count. `M`: values per channel (per row). */
typedef struct {
    const nview *xv, *gv, *ov, *wv, *bv;
    const sg_arr *w, *b, *mean, *var, *gw, *gb;
    int64_t M;
    double eps;
} sg_norm_job;

#define SG_DEFINE_NORM(T, SUF)                                                                  \
    /* sum of p[i * s], i < n */                                                                \
    static inline double sum_##SUF(const T *p, int64_t n, int64_t s)                            \
    {                                                                                           \
        double t = 0;                                                                           \
        if (s == 1) {                                                                           \
            _Pragma("omp simd reduction(+:t)")                                                  \
            for (int64_t i = 0; i < n; i++)                                                     \
                t += p[i];                                                                      \
        } else                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                     \
                t += p[i * s];                                                                  \
        return t;                                                                               \
    }                                                                                           \
                                                                                                \
    /* sum of (p[i * s] - m)^2 */                                                               \
    static inline double sqdev_##SUF(const T *p, int64_t n, int64_t s, double m)                \
    {                                                                                           \
        double t = 0;                                                                           \
        if (s == 1) {                                                                           \
            _Pragma("omp simd reduction(+:t)")                                                  \
            for (int64_t i = 0; i < n; i++)                                                     \
                t += (p[i] - m) * (p[i] - m);                                                   \
        } else                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                     \
                t += (p[i * s] - m) * (p[i * s] - m);                                           \
        return t;                                                                               \
    }                                                                                           \
                                                                                                \
    /* o[i] = (x[i] - m) * sc + sh */                                                           \
    static inline void affine_##SUF(T *o, int64_t os, const T *x, int64_t xs, int64_t n,        \
                                    double m, double sc, double sh)                             \
    {                                                                                           \
        if (os == 1 && xs == 1) {                                                               \
            _Pragma("omp simd")                                                                 \
            for (int64_t i = 0; i < n; i++)                                                     \
                o[i] = (T)((x[i] - m) * sc + sh);                                               \
        } else                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                     \
                o[i * os] = (T)((x[i * xs] - m) * sc + sh);                                     \
    }                                                                                           \
                                                                                                \
    /* sums of g and of g * (x - m) */                                                          \
    static inline void gsums_##SUF(const T *g, int64_t gs, const T *x, int64_t xs, int64_t n,   \
                                   double m, double *sg, double *sgx)                           \
    {                                                                                           \
        double t = 0, u = 0;                                                                    \
        if (gs == 1 && xs == 1) {                                                               \
            _Pragma("omp simd reduction(+:t, u)")                                               \
            for (int64_t i = 0; i < n; i++) {                                                   \
                t += g[i];                                                                      \
                u += g[i] * (x[i] - m);                                                         \
            }                                                                                   \
        } else                                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                   \
                t += g[i * gs];                                                                 \
                u += g[i * gs] * (x[i * xs] - m);                                               \
            }                                                                                   \
        *sg += t;                                                                               \
        *sgx += u;                                                                              \
    }                                                                                           \
                                                                                                \
    /* o[i] = a * g[i] + bx * (x[i] - m) + k */                                                 \
    static inline void gx_##SUF(T *o, int64_t os, const T *g, int64_t gs, const T *x,           \
                                int64_t xs, int64_t n, double a, double bx, double m,           \
                                double k)                                                       \
    {                                                                                           \
        if (os == 1 && gs == 1 && xs == 1) {                                                    \
            _Pragma("omp simd")                                                                 \
            for (int64_t i = 0; i < n; i++)                                                     \
                o[i] = (T)(a * g[i] + bx * (x[i] - m) + k);                                     \
        } else                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                     \
                o[i * os] = (T)(a * g[i * gs] + bx * (x[i * xs] - m) + k);                      \
    }                                                                                           \
                                                                                                \
    /* Batch norm of an (N, C) view (S == 1): a pass over the rows per sum, each row adding     \
     * into per-channel accumulators `a` (C doubles each) -- not a strided walk per channel. */ \
    static void bn_rows_##SUF(const nview *xv, const nview *ov, double *a, const T *wp,         \
                              int64_t ws0, const T *bp, int64_t bs0, T *mp, T *vp, int64_t M,   \
                              double eps)                                                       \
    {                                                                                           \
        int64_t C = xv->n[1], xs = xv->s[1], os = ov->s[1];                                     \
        double *m = a, *q = a + C, *sc = a + 2 * C;                                             \
        for (int64_t n = 0; n < xv->n[0]; n++) {                                                \
            const T *xr = (const T *)xv->p + n * xv->s[0];                                      \
            if (xs == 1) {                                                                      \
                _Pragma("omp simd")                                                             \
                for (int64_t c = 0; c < C; c++)                                                 \
                    m[c] += xr[c];                                                              \
            } else                                                                              \
                for (int64_t c = 0; c < C; c++)                                                 \
                    m[c] += xr[c * xs];                                                         \
        }                                                                                       \
        for (int64_t c = 0; c < C; c++)                                                         \
            m[c] /= M;                                                                          \
        for (int64_t n = 0; n < xv->n[0]; n++) {                                                \
            const T *xr = (const T *)xv->p + n * xv->s[0];                                      \
            if (xs == 1) {                                                                      \
                _Pragma("omp simd")                                                             \
                for (int64_t c = 0; c < C; c++)                                                 \
                    q[c] += (xr[c] - m[c]) * (xr[c] - m[c]);                                    \
            } else                                                                              \
                for (int64_t c = 0; c < C; c++)                                                 \
                    q[c] += (xr[c * xs] - m[c]) * (xr[c * xs] - m[c]);                          \
        }                                                                                       \
        for (int64_t c = 0; c < C; c++) {                                                       \
            sc[c] = wp[c * ws0] / sqrt(q[c] / M + eps);                                         \
            mp[c] = (T)m[c];                                                                    \
            vp[c] = (T)(q[c] / (M - 1));                                                        \
            q[c] = bp[c * bs0];                                                                 \
        }                                                                                       \
        for (int64_t n = 0; n < xv->n[0]; n++) {                                                \
            const T *xr = (const T *)xv->p + n * xv->s[0];                                      \
            T *orow = (T *)ov->p + n * ov->s[0];                                                \
            if (xs == 1 && os == 1) {                                                           \
                _Pragma("omp simd")                                                             \
                for (int64_t c = 0; c < C; c++)                                                 \
                    orow[c] = (T)((xr[c] - m[c]) * sc[c] + q[c]);                               \
            } else                                                                              \
                for (int64_t c = 0; c < C; c++)                                                 \
                    orow[c * os] = (T)((xr[c * xs] - m[c]) * sc[c] + q[c]);                     \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* Its gradient: the sums of g and g * (x - mean) per channel, then gx row by row. */       \
    static void bn_grad_rows_##SUF(const nview *xv, const nview *gv, const nview *ov,           \
                                   double *a, const T *wp, int64_t ws0, const T *mp,            \
                                   int64_t ms0, const T *vp, int64_t vs0, T *gwp, T *gbp,       \
                                   int64_t M, double eps)                                       \
    {                                                                                           \
        int64_t C = xv->n[1], xs = xv->s[1], gs = gv->s[1], os = ov->s[1];                      \
        double *m = a, *sg = a + C, *sgx = a + 2 * C, *k = a + 3 * C;                           \
        for (int64_t c = 0; c < C; c++)                                                         \
            m[c] = mp[c * ms0];                                                                 \
        for (int64_t n = 0; n < xv->n[0]; n++) {                                                \
            const T *xr = (const T *)xv->p + n * xv->s[0], *gr = (const T *)gv->p + n * gv->s[0]; \
            if (xs == 1 && gs == 1) {                                                           \
                _Pragma("omp simd")                                                             \
                for (int64_t c = 0; c < C; c++) {                                               \
                    sg[c] += gr[c];                                                             \
                    sgx[c] += gr[c] * (xr[c] - m[c]);                                           \
                }                                                                               \
            } else                                                                              \
                for (int64_t c = 0; c < C; c++) {                                               \
                    sg[c] += gr[c * gs];                                                        \
                    sgx[c] += gr[c * gs] * (xr[c * xs] - m[c]);                                 \
                }                                                                               \
        }                                                                                       \
        for (int64_t c = 0; c < C; c++) {                                                       \
            double inv = 1.0 / sqrt((double)vp[c * vs0] * (M - 1) / M + eps);                   \
            double gw = sgx[c] * inv, w = wp[c * ws0] * inv;                                    \
            gwp[c] = (T)gw;                                                                     \
            gbp[c] = (T)sg[c];                                                                  \
            k[c] = -w * sg[c] / M;                                                              \
            sgx[c] = -w * inv * gw / M;                                                         \
            sg[c] = w;                                                                          \
        }                                                                                       \
        for (int64_t n = 0; n < xv->n[0]; n++) {                                                \
            const T *xr = (const T *)xv->p + n * xv->s[0], *gr = (const T *)gv->p + n * gv->s[0]; \
            T *orow = (T *)ov->p + n * ov->s[0];                                                \
            if (xs == 1 && gs == 1 && os == 1) {                                                \
                _Pragma("omp simd")                                                             \
                for (int64_t c = 0; c < C; c++)                                                 \
                    orow[c] = (T)(sg[c] * gr[c] + sgx[c] * (xr[c] - m[c]) + k[c]);              \
            } else                                                                              \
                for (int64_t c = 0; c < C; c++)                                                 \
                    orow[c * os] = (T)(sg[c] * gr[c * gs] + sgx[c] * (xr[c * xs] - m[c]) + k[c]); \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* Channels [c0, c1) of batch norm of an (N, C, S) view: each channel's statistics,         \
     * then its results, while its values are still in cache. */                                \
    SG_VEC static void bn_units_##SUF(void *ctx, int64_t c0, int64_t c1)                        \
    {                                                                                           \
        const sg_norm_job *jb = ctx;                                                            \
        const nview *xv = jb->xv, *ov = jb->ov;                                                 \
        const T *wp = jb->w->data, *bp = jb->b->data;                                           \
        T *mp = jb->mean->data, *vp = jb->var->data;                                            \
        int64_t M = jb->M;                                                                      \
        for (int64_t c = c0; c < c1; c++) {                                                     \
            const T *xc = (const T *)xv->p + c * xv->s[1];                                      \
            T *oc = (T *)ov->p + c * ov->s[1];                                                  \
            double s = 0, q = 0;                                                                \
            for (int64_t n = 0; n < xv->n[0]; n++)                                              \
                s += sum_##SUF(xc + n * xv->s[0], xv->n[2], xv->s[2]);                          \
            double m = s / M;                                                                   \
            for (int64_t n = 0; n < xv->n[0]; n++)                                              \
                q += sqdev_##SUF(xc + n * xv->s[0], xv->n[2], xv->s[2], m);                     \
            double sc = wp[c * jb->w->strides[0]] / sqrt(q / M + jb->eps);                      \
            double sh = bp[c * jb->b->strides[0]];                                              \
            for (int64_t n = 0; n < xv->n[0]; n++)                                              \
                affine_##SUF(oc + n * ov->s[0], ov->s[2], xc + n * xv->s[0], xv->s[2],          \
                             xv->n[2], m, sc, sh);                                              \
            mp[c] = (T)m;                                                                       \
            vp[c] = (T)(q / (M - 1));                                                           \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* Channels [c0, c1) of its gradient: the sums of g and g * (x - mean), then gx. */         \
    SG_VEC static void bn_grad_units_##SUF(void *ctx, int64_t c0, int64_t c1)                   \
    {                                                                                           \
        const sg_norm_job *jb = ctx;                                                            \
        const nview *xv = jb->xv, *gv = jb->gv, *ov = jb->ov;                                   \
        const T *wp = jb->w->data, *mp = jb->mean->data, *vp = jb->var->data;                   \
        T *gwp = jb->gw->data, *gbp = jb->gb->data;                                             \
        int64_t M = jb->M;                                                                      \
        for (int64_t c = c0; c < c1; c++) {                                                     \
            const T *xc = (const T *)xv->p + c * xv->s[1];                                      \
            const T *gc = (const T *)gv->p + c * gv->s[1];                                      \
            T *oc = (T *)ov->p + c * ov->s[1];                                                  \
            double m = mp[c * jb->mean->strides[0]], sgs = 0, sgx = 0;                          \
            double v = vp[c * jb->var->strides[0]];                                             \
            double inv = 1.0 / sqrt(v * (M - 1) / M + jb->eps);                                 \
            double wc = wp[c * jb->w->strides[0]];                                              \
            for (int64_t n = 0; n < xv->n[0]; n++)                                              \
                gsums_##SUF(gc + n * gv->s[0], gv->s[2], xc + n * xv->s[0], xv->s[2], xv->n[2], \
                            m, &sgs, &sgx);                                                     \
            double gwc = sgx * inv, a = wc * inv;                                               \
            for (int64_t n = 0; n < xv->n[0]; n++)                                              \
                gx_##SUF(oc + n * ov->s[0], ov->s[2], gc + n * gv->s[0], gv->s[2],              \
                         xc + n * xv->s[0], xv->s[2], xv->n[2], a, -a * inv * gwc / M, m,       \
                         -a * sgs / M);                                                         \
            gwp[c] = (T)gwc;                                                                    \
            gbp[c] = (T)sgs;                                                                    \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    SG_VEC int sg_batch_norm_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out, \
                                   const sg_arr *mean, const sg_arr *var, const sg_arr *x,      \
                                   int nd, const sg_arr *w, const sg_arr *b, double eps)        \
    {                                                                                           \
        int64_t C = x->shape[1], M;                                                             \
        char s1[160];                                                                           \
        if (w->shape[0] != C || b->shape[0] != C)                                               \
            return sg_fail(err, SG_ESHAPE, "%sthe weight and the bias must have one entry per " \
                           "channel (%lld), got %lld and %lld", where, (long long)C,            \
                           (long long)w->shape[0], (long long)b->shape[0]);                     \
        M = count(x, 0, 1);                                                                     \
        if (M >= 0 && __builtin_mul_overflow(M, count(x, 2, nd), &M))                           \
            M = -1;                                                                             \
        if (M < 0 || count(x, 2, nd) < 0)                                                       \
            return sg_fail(err, SG_ESHAPE, "%sthe input's size overflows", where);              \
        if (M == 1)                                                                             \
            return sg_fail(err, SG_ESHAPE, "%sexpected more than 1 value per channel when "     \
                           "training, got an input of shape %s", where,                         \
                           sg_shape_str(s1, sizeof s1, x->shape, nd));                          \
        if (M == 0) {                                                                           \
            /* an empty batch: an empty result, as PyTorch's; statistics 0, which the           \
             * running-statistic updates leave unread (ops/norm.py) */                          \
            for (int64_t c = 0; c < C; c++)                                                     \
                ((T *)mean->data)[c] = ((T *)var->data)[c] = 0;                                 \
            return 0;                                                                           \
        }                                                                                       \
        if (C == 0)                                                                             \
            return 0;                                                                           \
        nview xv, ov;                                                                           \
        if (view3(err, where, ws, x, nd, 1, 2, sizeof(T), &xv))                                 \
            return err->code;                                                                   \
        merge3(out, nd, 1, 2, &ov);                                                             \
        const T *wp = w->data, *bp = b->data;                                                   \
        T *mp = mean->data, *vp = var->data;                                                    \
        if (xv.n[2] == 1) {                                                                     \
            double *acc = sg_ws_alloc(ws, 3 * (size_t)C * sizeof(double));                      \
            if (!acc)                                                                           \
                return sg_fail(err, SG_ENOMEM, "%sout of memory", where);                       \
            memset(acc, 0, 3 * (size_t)C * sizeof(double));                                     \
            bn_rows_##SUF(&xv, &ov, acc, wp, w->strides[0], bp, b->strides[0], mp, vp, M, eps); \
            sg_ws_free(ws, acc);                                                                \
            sg_ws_free(ws, xv.own);                                                             \
            return 0;                                                                           \
        }                                                                                       \
        sg_norm_job jb = {.xv = &xv, .ov = &ov, .w = w, .b = b, .mean = mean, .var = var,       \
                          .M = M, .eps = eps};                                                  \
        sg_run_units(ws, C, 3 * M, bn_units_##SUF, &jb);                                        \
        sg_ws_free(ws, xv.own);                                                                 \
        return 0;                                                                               \
    }                                                                                           \
                                                                                                \
    SG_VEC int sg_batch_norm_grad_##SUF(sg_err *err, const char *where, sg_ws *ws,              \
                                        const sg_arr *gx, const sg_arr *gw, const sg_arr *gb,   \
                                        const sg_arr *g, const sg_arr *x, int nd,               \
                                        const sg_arr *w, const sg_arr *mean, const sg_arr *var, \
                                        double eps)                                             \
    {                                                                                           \
        int64_t C = x->shape[1], M;                                                             \
        char s1[160];                                                                           \
        if (!same_shape(g, x, nd))                                                              \
            return bad_grad(err, where, g, x, nd);                                              \
        if (w->shape[0] != C || mean->shape[0] != C || var->shape[0] != C)                      \
            return sg_fail(err, SG_ESHAPE, "%sthe weight and the statistics must have one "     \
                           "entry per channel (%lld)", where, (long long)C);                    \
        M = count(x, 0, 1);                                                                     \
        if (M >= 0 && __builtin_mul_overflow(M, count(x, 2, nd), &M))                           \
            M = -1;                                                                             \
        if (M == 1 || M < 0 || count(x, 2, nd) < 0)                                             \
            return sg_fail(err, SG_ESHAPE, "%sexpected more than 1 value per channel when "     \
                           "training, got an input of shape %s", where,                         \
                           sg_shape_str(s1, sizeof s1, x->shape, nd));                          \
        if (M == 0) {                                                                           \
            /* an empty batch: sums over nothing */                                             \
            for (int64_t c = 0; c < C; c++)                                                     \
                ((T *)gw->data)[c] = ((T *)gb->data)[c] = 0;                                    \
            return 0;                                                                           \
        }                                                                                       \
        if (C == 0)                                                                             \
            return 0;                                                                           \
        nview xv, gv, ov;                                                                       \
        if (view3(err, where, ws, x, nd, 1, 2, sizeof(T), &xv) ||                               \
            view3(err, where, ws, g, nd, 1, 2, sizeof(T), &gv))                                 \
            return err->code;                                                                   \
        merge3(gx, nd, 1, 2, &ov);                                                              \
        const T *wp = w->data, *mp = mean->data, *vp = var->data;                               \
        T *gwp = gw->data, *gbp = gb->data;                                                     \
        if (xv.n[2] == 1) {                                                                     \
            double *acc = sg_ws_alloc(ws, 4 * (size_t)C * sizeof(double));                      \
            if (!acc)                                                                           \
                return sg_fail(err, SG_ENOMEM, "%sout of memory", where);                       \
            memset(acc, 0, 4 * (size_t)C * sizeof(double));                                     \
            bn_grad_rows_##SUF(&xv, &gv, &ov, acc, wp, w->strides[0], mp, mean->strides[0], vp, \
                               var->strides[0], gwp, gbp, M, eps);                              \
            sg_ws_free(ws, acc);                                                                \
            sg_ws_free(ws, gv.own);                                                             \
            sg_ws_free(ws, xv.own);                                                             \
            return 0;                                                                           \
        }                                                                                       \
        sg_norm_job jb = {.xv = &xv, .gv = &gv, .ov = &ov, .w = w, .mean = mean, .var = var,    \
                          .gw = gw, .gb = gb, .M = M, .eps = eps};                              \
        sg_run_units(ws, C, 4 * M, bn_grad_units_##SUF, &jb);                                   \
        sg_ws_free(ws, gv.own);                                                                 \
        sg_ws_free(ws, xv.own);                                                                 \
        return 0;                                                                               \
    }                                                                                           \
                                                                                                \
    /* Rows [r0, r1) of layer norm: each row's mean and rstd, then its results. */              \
    SG_VEC static void ln_units_##SUF(void *ctx, int64_t r0, int64_t r1)                        \
    {                                                                                           \
        const sg_norm_job *jb = ctx;                                                            \
        const nview *xv = jb->xv, *ov = jb->ov;                                                 \
        const T *wp = (const T *)jb->wv->p, *bp = (const T *)jb->bv->p;                         \
        T *mp = jb->mean->data, *rp = jb->var->data;                                            \
        int64_t D = jb->M, ws1 = jb->wv->s[1], bs1 = jb->bv->s[1], xs = xv->s[1];               \
        int64_t os = ov->s[1];                                                                  \
        for (int64_t r = r0; r < r1; r++) {                                                     \
            const T *xr = (const T *)xv->p + r * xv->s[0];                                      \
            T *orow = (T *)ov->p + r * ov->s[0];                                                \
            double m = sum_##SUF(xr, D, xs) / D;                                                \
            double rs = 1.0 / sqrt(sqdev_##SUF(xr, D, xs, m) / D + jb->eps);                    \
            if (os == 1 && xs == 1 && ws1 == 1 && bs1 == 1) {                                   \
                _Pragma("omp simd")                                                             \
                for (int64_t i = 0; i < D; i++)                                                 \
                    orow[i] = (T)((xr[i] - m) * rs * wp[i] + bp[i]);                            \
            } else                                                                              \
                for (int64_t i = 0; i < D; i++)                                                 \
                    orow[i * os] = (T)((xr[i * xs] - m) * rs * wp[i * ws1] + bp[i * bs1]);      \
            mp[r] = (T)m;                                                                       \
            rp[r] = (T)rs;                                                                      \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    SG_VEC int sg_layer_norm_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out, \
                                   const sg_arr *mean, const sg_arr *rstd, const sg_arr *x,     \
                                   int nd, int k, const sg_arr *w, const sg_arr *b, double eps) \
    {                                                                                           \
        char s1[160], s2[160];                                                                  \
        for (int j = 0; j < k; j++)                                                             \
            if (w->shape[j] != x->shape[nd - k + j] || b->shape[j] != x->shape[nd - k + j])     \
                return sg_fail(err, SG_ESHAPE, "%sthe weight and the bias must have the "       \
                               "normalised shape %s, got %s", where,                            \
                               sg_shape_str(s1, sizeof s1, x->shape + nd - k, k),               \
                               sg_shape_str(s2, sizeof s2, w->shape, k));                       \
        int64_t R = count(x, 0, nd - k), D = count(x, nd - k, nd);                              \
        if (R < 0 || D < 0)                                                                     \
            return sg_fail(err, SG_ESHAPE, "%sthe input's size overflows", where);              \
        T *mp = mean->data, *rp = rstd->data;                                                   \
        if (R == 0)                                                                             \
            return 0;                                                                           \
        if (D == 0) {                                                                           \
            for (int64_t r = 0; r < R; r++)                                                     \
                mp[r] = rp[r] = (T)NAN;                                                         \
            return 0;                                                                           \
        }                                                                                       \
        nview xv, ov, wv, bv;                                                                   \
        if (view3(err, where, ws, x, nd, nd - k, nd, sizeof(T), &xv) ||                         \
            view3(err, where, ws, w, k, 0, k, sizeof(T), &wv) ||                                \
            view3(err, where, ws, b, k, 0, k, sizeof(T), &bv))                                  \
            return err->code;                                                                   \
        merge3(out, nd, nd - k, nd, &ov);                                                       \
        sg_norm_job jb = {.xv = &xv, .ov = &ov, .wv = &wv, .bv = &bv, .mean = mean,             \
                          .var = rstd, .M = D, .eps = eps};                                     \
        sg_run_units(ws, R, 3 * D, ln_units_##SUF, &jb);                                        \
        sg_ws_free(ws, bv.own);                                                                 \
        sg_ws_free(ws, wv.own);                                                                 \
        sg_ws_free(ws, xv.own);                                                                 \
        return 0;                                                                               \
    }                                                                                           \
                                                                                                \
    SG_VEC int sg_layer_norm_grad_##SUF(sg_err *err, const char *where, sg_ws *ws,              \
                                        const sg_arr *gx, const sg_arr *gw, const sg_arr *gb,   \
                                        const sg_arr *g, const sg_arr *x, int nd, int k,        \
                                        const sg_arr *w, const sg_arr *mean,                    \
                                        const sg_arr *rstd)                                     \
    {                                                                                           \
        char s1[160], s2[160];                                                                  \
        if (!same_shape(g, x, nd))                                                              \
            return bad_grad(err, where, g, x, nd);                                              \
        for (int j = 0; j < k; j++)                                                             \
            if (w->shape[j] != x->shape[nd - k + j])                                            \
                return sg_fail(err, SG_ESHAPE, "%sthe weight must have the normalised shape "   \
                               "%s, got %s", where,                                             \
                               sg_shape_str(s1, sizeof s1, x->shape + nd - k, k),               \
                               sg_shape_str(s2, sizeof s2, w->shape, k));                       \
        for (int j = 0; j < nd - k; j++)                                                        \
            if (mean->shape[j] != x->shape[j] || rstd->shape[j] != x->shape[j])                 \
                return sg_fail(err, SG_ESHAPE, "%sthe statistics must have the shape %s of "    \
                               "the rows", where, sg_shape_str(s1, sizeof s1, x->shape, nd - k)); \
        int64_t R = count(x, 0, nd - k), D = count(x, nd - k, nd);                              \
        if (R < 0 || D < 0)                                                                     \
            return sg_fail(err, SG_ESHAPE, "%sthe input's size overflows", where);              \
        T *gwp = gw->data, *gbp = gb->data;                                                     \
        for (int64_t i = 0; i < D; i++)                                                         \
            gwp[i] = gbp[i] = 0;                                                                \
        if (R == 0 || D == 0)                                                                   \
            return 0;                                                                           \
        double *acc = sg_ws_alloc(ws, 2 * (size_t)D * sizeof(double));                          \
        if (!acc)                                                                               \
            return sg_fail(err, SG_ENOMEM, "%sout of memory", where);                           \
        memset(acc, 0, 2 * (size_t)D * sizeof(double));                                         \
        nview xv, gv, ov, wv, mv, rv;                                                           \
        if (view3(err, where, ws, x, nd, nd - k, nd, sizeof(T), &xv) ||                         \
            view3(err, where, ws, g, nd, nd - k, nd, sizeof(T), &gv) ||                         \
            view3(err, where, ws, w, k, 0, k, sizeof(T), &wv) ||                                \
            view3(err, where, ws, mean, nd - k, nd - k, nd - k, sizeof(T), &mv) ||              \
            view3(err, where, ws, rstd, nd - k, nd - k, nd - k, sizeof(T), &rv))                \
            return err->code;                                                                   \
        merge3(gx, nd, nd - k, nd, &ov);                                                        \
        const T *wp = (const T *)wv.p;                                                          \
        int64_t ws1 = wv.s[1], xs = xv.s[1], gs = gv.s[1], os = ov.s[1];                        \
        double *aw = acc, *ab = acc + D;                                                        \
        for (int64_t r = 0; r < R; r++) {                                                       \
            const T *xr = (const T *)xv.p + r * xv.s[0], *gr = (const T *)gv.p + r * gv.s[0];   \
            T *orow = (T *)ov.p + r * ov.s[0];                                                  \
            double m = ((const T *)mv.p)[r * mv.s[0]], rs = ((const T *)rv.p)[r * rv.s[0]];     \
            double sa = 0, sb = 0;                                                              \
            _Pragma("omp simd reduction(+:sa, sb)")                                             \
            for (int64_t i = 0; i < D; i++) {                                                   \
                double gi = gr[i * gs], xh = (xr[i * xs] - m) * rs, gh = gi * wp[i * ws1];      \
                sa += gh;                                                                       \
                sb += gh * xh;                                                                  \
                aw[i] += gi * xh;                                                               \
                ab[i] += gi;                                                                    \
            }                                                                                   \
            sa /= D, sb /= D;                                                                   \
            _Pragma("omp simd")                                                                 \
            for (int64_t i = 0; i < D; i++) {                                                   \
                double xh = (xr[i * xs] - m) * rs, gh = (double)gr[i * gs] * wp[i * ws1];       \
                orow[i * os] = (T)(rs * (gh - sa - xh * sb));                                   \
            }                                                                                   \
        }                                                                                       \
        for (int64_t i = 0; i < D; i++) {                                                       \
            gwp[i] = (T)aw[i];                                                                  \
            gbp[i] = (T)ab[i];                                                                  \
        }                                                                                       \
        sg_ws_free(ws, rv.own);                                                                 \
        sg_ws_free(ws, mv.own);                                                                 \
        sg_ws_free(ws, wv.own);                                                                 \
        sg_ws_free(ws, gv.own);                                                                 \
        sg_ws_free(ws, xv.own);                                                                 \
        sg_ws_free(ws, acc);                                                                    \
        return 0;                                                                               \
    }

SG_DEFINE_NORM(float, f32)
SG_DEFINE_NORM(double, f64)

/* ------------------------------------------------------------------------------------------
 * Batch norm synchronised across the ranks of a data-parallel train step (ops/norm.py's
 * BatchNorm(sync=True), symgrad/distributed.py). The statistics are those of the global
 * batch: each sum over this rank's values goes through `sg_allreduce`, which calls the hook
 * the data-parallel step installed (sg_norm_set_allreduce), so the mean, the variance, the
 * normalisation and the running statistics are one process's, up to the order of the sums.
 * Every call makes the same collectives whatever its data (two in the forward, one in the
 * gradient; a rank with no examples adds zeros), so the ranks' collectives always match.
 * ---------------------------------------------------------------------------------------- */

/* Sums buf[0..n) over the ranks in place and returns 0; else fills `msg` and returns
 * nonzero. */
typedef int (*sg_allreduce_hook)(double *buf, int64_t n, char *msg, int64_t cap);
static sg_allreduce_hook allreduce_hook = NULL;

void sg_norm_set_allreduce(sg_allreduce_hook hook)
{
    allreduce_hook = hook;
}

static int sg_allreduce(sg_err *err, const char *where, double *buf, int64_t n)
{
    char msg[600] = "";
    if (!allreduce_hook)
        return sg_fail(err, SG_EVALUE, "%sa batch norm synchronised across ranks ran outside a "
                       "data-parallel train step (sg.train_step(..., comm=...))", where);
    if (allreduce_hook(buf, n, msg, (int64_t)sizeof msg)) {
        msg[sizeof msg - 1] = 0;
        return sg_fail(err, SG_EVALUE, "%s%s", where, msg);
    }
    return 0;
}

#define SG_DEFINE_SYNC_NORM(T, SUF)                                                             \
    SG_VEC int sg_batch_norm_sync_##SUF(sg_err *err, const char *where, sg_ws *ws,              \
                                        const sg_arr *out, const sg_arr *mean,                  \
                                        const sg_arr *var, const sg_arr *x, int nd,             \
                                        const sg_arr *w, const sg_arr *b, double eps)           \
    {                                                                                           \
        int64_t C = x->shape[1], M, S = count(x, 2, nd);                                        \
        char s1[160];                                                                           \
        if (w->shape[0] != C || b->shape[0] != C)                                               \
            return sg_fail(err, SG_ESHAPE, "%sthe weight and the bias must have one entry per " \
                           "channel (%lld), got %lld and %lld", where, (long long)C,            \
                           (long long)w->shape[0], (long long)b->shape[0]);                     \
        M = count(x, 0, 1);                                                                     \
        if (M >= 0 && S >= 0 && __builtin_mul_overflow(M, S, &M))                               \
            M = -1;                                                                             \
        if (M < 0 || S < 0)                                                                     \
            return sg_fail(err, SG_ESHAPE, "%sthe input's size overflows", where);             \
        double *a = sg_ws_alloc(ws, (2 * (size_t)C + 1) * sizeof(double));                      \
        if (!a)                                                                                 \
            return sg_fail(err, SG_ENOMEM, "%sout of memory", where);                          \
        memset(a, 0, (2 * (size_t)C + 1) * sizeof(double));                                     \
        double *m = a, *q = a + C + 1;                                                          \
        int have = M > 0 && C > 0;                                                              \
        nview xv = {0}, ov = {0};                                                               \
        if (have && view3(err, where, ws, x, nd, 1, 2, sizeof(T), &xv)) {                       \
            sg_ws_free(ws, a);                                                                  \
            return err->code;                                                                   \
        }                                                                                       \
        if (have)                                                                               \
            merge3(out, nd, 1, 2, &ov);                                                         \
        if (have)                                                                               \
            for (int64_t n = 0; n < xv.n[0]; n++)                                               \
                for (int64_t c = 0; c < C; c++)                                                 \
                    m[c] += sum_##SUF((const T *)xv.p + n * xv.s[0] + c * xv.s[1], xv.n[2],     \
                                      xv.s[2]);                                                 \
        m[C] = (double)M;                                                                       \
        int rc = sg_allreduce(err, where, m, C + 1);                                         \
        double Mg = m[C];                                                                       \
        if (!rc && Mg == 1)                                                                     \
            rc = sg_fail(err, SG_ESHAPE, "%sexpected more than 1 value per channel when "       \
                         "training, got 1 across the ranks (an input of shape %s here)", where, \
                         sg_shape_str(s1, sizeof s1, x->shape, nd));                            \
        if (!rc) {                                                                              \
            for (int64_t c = 0; c < C; c++)                                                     \
                m[c] = Mg > 0 ? m[c] / Mg : 0;                                                  \
            if (have)                                                                           \
                for (int64_t n = 0; n < xv.n[0]; n++)                                           \
                    for (int64_t c = 0; c < C; c++)                                             \
                        q[c] += sqdev_##SUF((const T *)xv.p + n * xv.s[0] + c * xv.s[1],        \
                                            xv.n[2], xv.s[2], m[c]);                            \
            rc = sg_allreduce(err, where, q, C);                                             \
        }                                                                                       \
        if (!rc) {                                                                              \
            T *mp = mean->data, *vp = var->data;                                                \
            for (int64_t c = 0; c < C; c++) {                                                   \
                /* an empty global batch: statistics 0, left unread (ops/norm.py) */            \
                mp[c] = Mg > 0 ? (T)m[c] : 0;                                                   \
                vp[c] = Mg > 0 ? (T)(q[c] / (Mg - 1)) : 0;                                      \
                q[c] = Mg > 0 ? ((const T *)w->data)[c * w->strides[0]] / sqrt(q[c] / Mg + eps) \
                              : 0;                                                              \
            }                                                                                   \
            if (have) {                                                                         \
                const T *bp = b->data;                                                          \
                for (int64_t n = 0; n < xv.n[0]; n++)                                           \
                    for (int64_t c = 0; c < C; c++)                                             \
                        affine_##SUF((T *)ov.p + n * ov.s[0] + c * ov.s[1], ov.s[2],            \
                                     (const T *)xv.p + n * xv.s[0] + c * xv.s[1], xv.s[2],      \
                                     xv.n[2], m[c], q[c], bp[c * b->strides[0]]);               \
            }                                                                                   \
        }                                                                                       \
        sg_ws_free(ws, xv.own);                                                                 \
        sg_ws_free(ws, a);                                                                      \
        return rc;                                                                              \
    }                                                                                           \
                                                                                                \
    SG_VEC int sg_batch_norm_grad_sync_##SUF(sg_err *err, const char *where, sg_ws *ws,         \
                                             const sg_arr *gx, const sg_arr *gw,                \
                                             const sg_arr *gb, const sg_arr *g,                 \
                                             const sg_arr *x, int nd, const sg_arr *w,          \
                                             const sg_arr *mean, const sg_arr *var, double eps) \
    {                                                                                           \
        int64_t C = x->shape[1], M, S = count(x, 2, nd);                                        \
        if (!same_shape(g, x, nd))                                                              \
            return bad_grad(err, where, g, x, nd);                                              \
        if (w->shape[0] != C || mean->shape[0] != C || var->shape[0] != C)                      \
            return sg_fail(err, SG_ESHAPE, "%sthe weight and the statistics must have one "     \
                           "entry per channel (%lld)", where, (long long)C);                   \
        M = count(x, 0, 1);                                                                     \
        if (M >= 0 && S >= 0 && __builtin_mul_overflow(M, S, &M))                               \
            M = -1;                                                                             \
        if (M < 0 || S < 0)                                                                     \
            return sg_fail(err, SG_ESHAPE, "%sthe input's size overflows", where);             \
        /* a: this rank's sums of g and g * (x - mean), then its count (the collective's    \
         * buffer); l: a copy of the sums (the weight's and bias's gradients are local) */      \
        double *a = sg_ws_alloc(ws, (4 * (size_t)C + 1) * sizeof(double));                     \
        if (!a)                                                                                 \
            return sg_fail(err, SG_ENOMEM, "%sout of memory", where);                          \
        memset(a, 0, (4 * (size_t)C + 1) * sizeof(double));                                     \
        double *l = a + 2 * C + 1;                                                              \
        const T *mp = mean->data, *vp = var->data, *wp = w->data;                               \
        int64_t ms = mean->strides[0], vs = var->strides[0], wst = w->strides[0];               \
        int have = M > 0 && C > 0;                                                              \
        nview xv = {0}, gv = {0}, ov = {0};                                                     \
        if (have && (view3(err, where, ws, x, nd, 1, 2, sizeof(T), &xv) ||                      \
                     view3(err, where, ws, g, nd, 1, 2, sizeof(T), &gv))) {                     \
            sg_ws_free(ws, gv.own);                                                             \
            sg_ws_free(ws, xv.own);                                                             \
            sg_ws_free(ws, a);                                                                  \
            return err->code;                                                                   \
        }                                                                                       \
        if (have) {                                                                             \
            merge3(gx, nd, 1, 2, &ov);                                                          \
            for (int64_t n = 0; n < xv.n[0]; n++)                                               \
                for (int64_t c = 0; c < C; c++)                                                 \
                    gsums_##SUF((const T *)gv.p + n * gv.s[0] + c * gv.s[1], gv.s[2],           \
                                (const T *)xv.p + n * xv.s[0] + c * xv.s[1], xv.s[2], xv.n[2],  \
                                (double)mp[c * ms], &a[c], &a[C + c]);                          \
        }                                                                                       \
        memcpy(l, a, 2 * (size_t)C * sizeof(double));                                           \
        a[2 * C] = (double)M;                                                                   \
        int rc = sg_allreduce(err, where, a, 2 * C + 1);                                     \
        double Mg = a[2 * C];                                                                   \
        if (!rc) {                                                                              \
            T *gwp = gw->data, *gbp = gb->data;                                                 \
            for (int64_t c = 0; c < C; c++) {                                                   \
                double inv = Mg > 0 ? 1.0 / sqrt((double)vp[c * vs] * (Mg - 1) / Mg + eps) : 0; \
                gwp[c] = (T)(l[C + c] * inv);                                                   \
                gbp[c] = (T)l[c];                                                               \
                /* the global sums: g is the same multiple of the global loss's gradient    \
                 * on every rank (the step seeds the backward with the shard's size) */      \
                double ac = wp[c * wst] * inv;                                                  \
                l[c] = ac;                                                                      \
                l[C + c] = Mg > 0 ? -ac * inv * (a[C + c] * inv) / Mg : 0;                      \
                a[c] = Mg > 0 ? -ac * a[c] / Mg : 0;                                            \
            }                                                                                   \
            if (have)                                                                           \
                for (int64_t n = 0; n < xv.n[0]; n++)                                           \
                    for (int64_t c = 0; c < C; c++)                                             \
                        gx_##SUF((T *)ov.p + n * ov.s[0] + c * ov.s[1], ov.s[2],                \
                                 (const T *)gv.p + n * gv.s[0] + c * gv.s[1], gv.s[2],          \
                                 (const T *)xv.p + n * xv.s[0] + c * xv.s[1], xv.s[2], xv.n[2], \
                                 l[c], l[C + c], (double)mp[c * ms], a[c]);                     \
        }                                                                                       \
        sg_ws_free(ws, gv.own);                                                                 \
        sg_ws_free(ws, xv.own);                                                                 \
        sg_ws_free(ws, a);                                                                      \
        return rc;                                                                              \
    }

SG_DEFINE_SYNC_NORM(float, f32)
SG_DEFINE_SYNC_NORM(double, f64)
