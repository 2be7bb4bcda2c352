/* sg_conv.c: 2-d convolution and its gradients as matrix products (sg_conv.h).
 *
 * For each panel of images and each group, the input's windows are laid out
 * as the columns of a matrix (im2col: one row per input channel and kernel
 * tap, one column per output pixel of each image of the panel), and one BLAS
 * gemm multiplies the group's weights by it. A panel is as many whole images
 * as fit in SG_CONV_TILE elements of that matrix (512 KiB of float32: a core's L2
 * cache), or, for an image too large alone, a band of its output rows: the matrix
 * that im2col writes is still in the cache when the product reads it, and the
 * workspace stays small whatever the sizes. (Panels of 2^20 elements, 8 of 50 x
 * 2048 x 500 products for LeNet's second layer where it is now 16 of 50 x 256 x
 * 500, made each copy and its product a trip through memory: its step took 1.2x
 * the CPU time it takes now. One product per image, 64 of 50 x 64 x 500, runs BLAS
 * at a fraction of its speed.)
 *
 *   forward          tmp (Og x P) = W_g (Og x K)  @ col (K x P), each image's
 *                                   columns then copied to out[n, g]
 *   input gradient   col          = W_g^T (K x Og) @ gT (Og x P), then col2im
 *                                   adds each column back into its window
 *   weight gradient  gw_g        += gT (Og x P) @ col^T (P x K)
 *
 * (K = Cg * kh * kw, P = the panel's output pixels, gT = the panel's images of
 * g[n, g] side by side.) A one-image panel reads and writes out, g and gx in
 * place. The forward may apply an epilogue (sg_conv.h's sg_conv_epi: a bias, an
 * activation) to each channel plane as it copies it out of tmp, or in place after
 * a one-image panel's product. A 1x1 kernel with stride 1 and no padding needs no im2col: each image
 * is its own matrix.
 *
 * Threads: the panels are shared among the runtime's threads a chunk at a time
 * (sg_conv_chunks: a run of panels from the shape alone, each run in the buffers of a
 * slot of its own), each chunk's copies and products done by its thread alone, the
 * products too small to share; each element is written by one thread as it would be
 * on one, so the bits are the same on any thread count. A call with one chunk (an
 * image cut into bands) runs it with every thread: its copies shared a channel of an
 * image at a time (sg_run_units), its products cut into blocks by sg_blas_gemm. The
 * weight gradient's sum over the batch is the part that needs care: each chunk sums
 * its panels into a matrix of its own, and these are added in chunk order; with one
 * chunk, where sg_blas_gemm would make few blocks of its small result, the panel's
 * pixels are cut into slices by the shape alone (kparts), each slice's product
 * computed apart and the slices added in their order.
 *
 * Index arithmetic: sg_conv2d_shape checks every length it derives for
 * overflow; once it passed, every offset below is bounded by the sizes of the
 * arrays themselves (or by a padding, an int) and fits in int64.
 */
#include "sg_support.h"
#include "sg_drivers.h"

#ifndef SG_CONV_TILE
#define SG_CONV_TILE ((int64_t)1 << 17) /* elements of a panel's im2col matrix */
#endif

typedef struct {
    int64_t N, C, H, W, O, Cg, kh, kw, OH, OW, G, Og, K;
    int64_t sh, sw, pt, pl, dh, dw;
} sg_conv_geom;

static int mul_ok(int64_t a, int64_t b, int64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static int add_ok(int64_t a, int64_t b, int64_t *r) { return !__builtin_add_overflow(a, b, r); }

/* The output length along one axis, or -1 (with err filled) when the kernel does
 * not fit the padded input or a length overflows. */
static int64_t out_len(sg_err *err, const char *where, const char *axis, int64_t n, int64_t k,
                       int64_t s, int64_t p0, int64_t p1, int64_t d)
{
    int64_t span, padded;
    if (!mul_ok(d, k - 1, &span) || !add_ok(span, 1, &span) || !add_ok(n, p0, &padded) ||
        !add_ok(padded, p1, &padded)) {
        sg_fail(err, SG_ESHAPE, "%sthe %s of the padded input or of the dilated kernel "
                "overflows", where, axis);
        return -1;
    }
    if (padded < span) {
        sg_fail(err, SG_ESHAPE, "%sthe kernel's %s %lld (dilated: %lld) is larger than the "
                "padded input's %s %lld", where, axis, (long long)k, (long long)span, axis,
                (long long)padded);
        return -1;
    }
    return (padded - span) / s + 1;
}

/* A shape as the user wrote it: a conv1d's (p[9] == 1) without the height of 1 it runs on. */
static const char *user_shape(char *buf, size_t n, const int64_t *s, const int *p)
{
    int64_t t[3] = {s[0], s[1], s[3]};
    return p[9] == 1 ? sg_shape_str(buf, n, t, 3) : sg_shape_str(buf, n, s, 4);
}

int sg_conv2d_shape(sg_err *err, const char *where, const int64_t *xs, const int64_t *wsh,
                    const int *p, int64_t *os)
{
    int64_t G = p[8];
    char a[160], b[160];
    if (xs[1] != wsh[1] * G)
        return sg_fail(err, SG_ESHAPE, "%sthe input of shape %s has %lld channels but the weight "
                       "of shape %s with groups=%lld expects %lld", where,
                       user_shape(a, sizeof a, xs, p), (long long)xs[1],
                       user_shape(b, sizeof b, wsh, p), (long long)G,
                       (long long)(wsh[1] * G));
    if (wsh[0] % G != 0)
        return sg_fail(err, SG_ESHAPE, "%sthe weight's %lld output channels are not divisible "
                       "by groups=%lld", where, (long long)wsh[0], (long long)G);
    if (wsh[2] < 1 || wsh[3] < 1)
        return sg_fail(err, SG_ESHAPE, "%sthe kernel of shape %s is empty", where,
                       user_shape(b, sizeof b, wsh, p));
    int64_t oh = out_len(err, where, "height", xs[2], wsh[2], p[0], p[2], p[3], p[6]);
    if (oh < 0)
        return err->code;
    int64_t ow = out_len(err, where, p[9] == 1 ? "length" : "width", xs[3], wsh[3], p[1], p[4],
                         p[5], p[7]);
    if (ow < 0)
        return err->code;
    int64_t k, kw, m;
    if (!mul_ok(wsh[1], wsh[2], &k) || !mul_ok(k, wsh[3], &k) || !mul_ok(k, ow, &kw) ||
        !mul_ok(oh, ow, &m))
        return sg_fail(err, SG_ESHAPE, "%sthe convolution's sizes overflow", where);
    os[0] = xs[0], os[1] = wsh[0], os[2] = oh, os[3] = ow;
    return 0;
}

/* The gradient `g` must have the shape the convolution of x (shape xs) by w gives. */
int sg_conv2d_check(sg_err *err, const char *where, const int64_t *xs, const int64_t *wsh,
                    const int *p, const int64_t *gs)
{
    int64_t os[4];
    char a[160], b[160];
    if (sg_conv2d_shape(err, where, xs, wsh, p, os))
        return err->code;
    for (int i = 0; i < 4; i++)
        if (os[i] != gs[i])
            return sg_fail(err, SG_ESHAPE, "%sthe output gradient has shape %s but the "
                           "convolution's output has shape %s", where,
                           user_shape(a, sizeof a, gs, p), user_shape(b, sizeof b, os, p));
    return 0;
}

static sg_conv_geom geom(const int64_t *xs, const int64_t *wsh, const int64_t *os, const int *p)
{
    sg_conv_geom q = {xs[0], xs[1], xs[2], xs[3], wsh[0], wsh[1], wsh[2], wsh[3], os[2], os[3],
                      p[8], wsh[0] / p[8], wsh[1] * wsh[2] * wsh[3],
                      p[0], p[1], p[2], p[4], p[6], p[7]};
    return q;
}

/* Whether the image is its own im2col matrix (1x1 kernel, stride 1, no padding) with
 * rows of H*W contiguous elements `ld` apart. */
static int direct(const sg_conv_geom *q, const int *p, const sg_arr *x, int64_t *ld)
{
    *ld = x->strides[1];
    return q->kh == 1 && q->kw == 1 && p[0] == 1 && p[1] == 1 && !p[2] && !p[3] && !p[4] &&
           !p[5] && x->strides[3] == 1 && (q->H == 1 || x->strides[2] == q->W) &&
           x->strides[1] >= q->H * q->W && x->strides[1] <= INT32_MAX && q->H * q->W > 0;
}

/* Output rows per band: the band's im2col matrix holds about SG_CONV_TILE elements. */
static int64_t band_rows(const sg_conv_geom *q)
{
    int64_t per_row = q->K * q->OW;
    int64_t r = per_row > 0 ? SG_CONV_TILE / per_row : q->OH;
    return r < 1 ? 1 : r > q->OH ? q->OH : r;
}

/* A panel: `imgs` whole images when one image's im2col matrix (K x M) and its
 * product's rows (Og x M) fit in SG_CONV_TILE elements (rows == OH), else one image's
 * band of `rows` output rows. */
typedef struct {
    int64_t imgs, rows;
} sg_conv_plan;

static sg_conv_plan plan(const sg_conv_geom *q, int direct)
{
    sg_conv_plan pl = {1, direct ? q->OH : band_rows(q)};
    if (direct) /* each image is its own matrix */
        return pl;
    /* < 2^62: sg_conv2d_shape checked the sizes */
    int64_t per = (q->K > q->Og ? q->K : q->Og) * q->OH * q->OW;
    if (per > 0 && per <= SG_CONV_TILE) {
        /* as many images as fit, spread evenly over the panels (LeNet's first layer: 8
         * panels of 8 images, not 7 of 9 and one of 1, which would hold a thread back) */
        int64_t most = SG_CONV_TILE / per < q->N ? SG_CONV_TILE / per : q->N;
        int64_t panels = (q->N + most - 1) / most;
        pl.imgs = (q->N + panels - 1) / panels;
        pl.rows = q->OH;
    }
    if (pl.imgs < 1)
        pl.imgs = 1;
    return pl;
}

/* Slices of a panel's P output pixels for the weight gradient's product (sg_conv.c's
 * wgrad_product): about 2^23 flops each, at least 256 pixels, at most SG_CONV_KPARTS;
 * 1 (no cut) for a product too small to share, or for a result with a side of 512 or
 * more, which sg_blas_gemm cuts into 4 blocks or more of its own (a ResNet block's
 * 64 x 576): that needs no sum of slices. From the shape alone. */
#define SG_CONV_KPARTS 8

static int64_t kparts(const sg_conv_geom *q, int64_t P)
{
    if (q->Og >= 512 || q->K >= 512)
        return 1;
    int64_t n = (int64_t)(2.0 * (double)(q->Og * q->K) * (double)P / (double)(1 << 23));
    if (n > P / 256)
        n = P / 256;
    if (n > SG_CONV_KPARTS)
        n = SG_CONV_KPARTS;
    return n < 2 ? 1 : n;
}

/* The panels in order: images [n0, n1), output rows [r0, r1), up to image n_end. Start
 * from chunk_start; returns 0 after the last. */
typedef struct {
    int64_t n0, n1, r0, r1;
} sg_conv_panel;

static int next_panel(const sg_conv_geom *q, sg_conv_plan pl, int64_t n_end, sg_conv_panel *c)
{
    if (c->n1 > c->n0 && c->r1 < q->OH) {  /* the next band of the same image */
        c->r0 = c->r1;
    } else {
        c->n0 = c->n1;
        c->r0 = 0;
        if (c->n0 >= n_end)
            return 0;
        c->n1 = c->n0 + pl.imgs < n_end ? c->n0 + pl.imgs : n_end;
    }
    c->r1 = c->r0 + pl.rows < q->OH ? c->r0 + pl.rows : q->OH;
    return 1;
}

/* Threads share a call's panels a chunk at a time: the images are cut into runs of
 * pl.imgs (a run of one image holds all its bands, in order: col2im adds a band's
 * windows into rows the band before reached too) and the runs into at most `most`
 * chunks of `per` runs. Each chunk runs its panels one after the other, alone, in a
 * panel-sized buffer that stays in the core's cache from the copy to the product (the
 * products of one panel are too small to share among threads). From the shape alone:
 * a chunk computes the same on any thread count, and the weight gradient sums each
 * chunk into a matrix of its own, added in chunk order. */
#define SG_CONV_CHUNKS 8
#define SG_CONV_SUMS ((int64_t)1 << 22) /* elements of the weight gradient's chunk sums */
#define SG_CONV_SLOTS 64                /* chunks at once: the most threads that share them */

typedef struct {
    int64_t runs, per, chunks;
} sg_conv_chunks;

static sg_conv_chunks chunking(const sg_conv_geom *q, sg_conv_plan pl, int64_t most)
{
    sg_conv_chunks c;
    c.runs = (q->N + pl.imgs - 1) / pl.imgs;
    if (most < 1)
        most = 1;
    c.per = (c.runs + most - 1) / most;
    c.chunks = c.per > 0 ? (c.runs + c.per - 1) / c.per : 0;
    return c;
}

static sg_conv_panel chunk_start(sg_conv_plan pl, sg_conv_chunks ck, int64_t s)
{
    int64_t n = s * ck.per * pl.imgs;
    sg_conv_panel c = {n, n, 0, 0};
    return c;
}

/* The image after chunk s's last. */
static int64_t chunk_end(const sg_conv_geom *q, sg_conv_plan pl, sg_conv_chunks ck, int64_t s)
{
    int64_t n = (s + 1) * ck.per * pl.imgs;
    return n < q->N ? n : q->N;
}

/* A slot of buffers, taken while a range of chunks runs: there are as many as threads
 * may run chunks at once (sg_run_units: sg_blas_threads()), so one is always free. */
static int take_slot(int *busy, int n)
{
    for (;;)
        for (int i = 0; i < n; i++)
            if (!__atomic_exchange_n(&busy[i], 1, __ATOMIC_ACQUIRE))
                return i;
}

static void give_slot(int *busy, int i)
{
    __atomic_store_n(&busy[i], 0, __ATOMIC_RELEASE);
}

/* The valid output columns [lo, hi) of kernel column kj: those whose input column
 * ow * sw + kj * dw - pl lies in [0, W). */
static inline void col_range(const sg_conv_geom *q, int64_t kj, int64_t *lo, int64_t *hi,
                             int64_t *iw0)
{
    int64_t i0 = kj * q->dw - q->pl;
    *iw0 = i0;
    *lo = i0 >= 0 ? 0 : (-i0 + q->sw - 1) / q->sw;
    *hi = i0 >= q->W ? 0 : (q->W - 1 - i0) / q->sw + 1;
    if (*hi > q->OW)
        *hi = q->OW;
    if (*lo > *hi)
        *lo = *hi;
}

/* col_range for the first SG_CONV_KWT kernel columns, computed once per call of im2col or
 * col2im rather than once per channel and kernel row: its two divisions cost more than a
 * run of OW copies (LeNet's second layer: 8 elements). Wider kernels compute the rest on
 * the way. */
#define SG_CONV_KWT 16
typedef struct {
    int64_t lo[SG_CONV_KWT], hi[SG_CONV_KWT], iw0[SG_CONV_KWT];
} sg_conv_cols;

static inline void col_table(const sg_conv_geom *q, sg_conv_cols *t)
{
    for (int64_t kj = 0; kj < q->kw && kj < SG_CONV_KWT; kj++)
        col_range(q, kj, &t->lo[kj], &t->hi[kj], &t->iw0[kj]);
}

static inline void col_lookup(const sg_conv_geom *q, const sg_conv_cols *t, int64_t kj,
                              int64_t *lo, int64_t *hi, int64_t *iw0)
{
    if (kj < SG_CONV_KWT)
        *lo = t->lo[kj], *hi = t->hi[kj], *iw0 = t->iw0[kj];
    else
        col_range(q, kj, lo, hi, iw0);
}

/* An epilogue (sg_conv.h) ready to run: each operand's strides, in elements, along the
 * producer's four axes (0 where it is broadcast). */
void sg_epi_plan(sg_conv_epi_plan *ep, const sg_conv_epi *e, const sg_arr *out)
{
    ep->e = e;
    for (int k = 0; k < e->m; k++) {
        int64_t st[SG_MAXDIM];
        if (k == e->self)
            continue;
        sg_broadcast_strides(st, e->ops[k], e->nds[k], out->shape, e->nd);
        for (int a = 0; a < 4; a++)
            ep->st[k][a] = e->axes[a] >= 0 ? st[e->axes[a]] : 0;
    }
}

/* The epilogue over output rows [r0, r1) of channel c of image n: dst, the result's
 * (contiguous rows), from src, the convolution's (contiguous; dst itself when it was
 * computed in place). One call of the row function for the whole run when every operand
 * steps evenly along it (a bias: stride 0), else one per output row. Each element is
 * computed as the fused loop computes it alone, so the bits are those of the loop. */
void sg_epi_rows(const sg_conv_epi_plan *ep, int64_t OW, int64_t n, int64_t c, int64_t r0,
                 int64_t r1, char *dst, const char *src, size_t item)
{
    const sg_conv_epi *e = ep->e;
    void *p[1 + SG_CONV_EPI_OPS];
    int64_t s[1 + SG_CONV_EPI_OPS];
    char *base[SG_CONV_EPI_OPS];
    const int64_t rows = r1 - r0;
    int flat = 1;
    s[0] = 1;
    for (int k = 0; k < e->m; k++) {
        const int64_t *st = ep->st[k];
        if (k == e->self) {
            s[1 + k] = 1;
            continue;
        }
        base[k] = (char *)e->ops[k]->data + (n * st[0] + c * st[1] + r0 * st[2]) *
                  (int64_t)e->items[k];
        s[1 + k] = OW == 1 ? st[2] : st[3];
        if (rows > 1 && OW > 1 && st[2] != OW * st[3])
            flat = 0;
    }
    int64_t runs = flat ? 1 : rows, len = flat ? rows * OW : OW;
    for (int64_t r = 0; r < runs; r++) {
        p[0] = dst + r * OW * (int64_t)item;
        for (int k = 0; k < e->m; k++)
            p[1 + k] = k == e->self ? (void *)(src + r * OW * (int64_t)item)
                                    : (void *)(base[k] + r * ep->st[k][2] * (int64_t)e->items[k]);
        /* a dense row function (SG_EW_DENSE): sg_ew_row copies what is not at unit stride */
        (void)sg_ew_row(e->row, e->aux, len, p, s, e->m, item, e->items);
    }
}

#define SG_DEFINE_CONV(T, SUF, GEMM)                                                         \
    /* Copies n elements, a run of output pixels (often short: 8 in LeNet's second layer),   \
     * with whole-vector moves, the last one overlapping the one before: a loop of element   \
     * copies costs its set-up and remainder for every such run. */                          \
    static inline void copy_run_##SUF(T *restrict d, const T *restrict s, int64_t n)         \
    {                                                                                        \
        enum { V = 32 / sizeof(T) };                                                         \
        if (n >= V) {                                                                        \
            int64_t o = 0;                                                                   \
            for (; o + V <= n; o += V)                                                       \
                __builtin_memcpy(d + o, s + o, 32);                                          \
            if (o < n)                                                                       \
                __builtin_memcpy(d + n - V, s + n - V, 32);                                  \
        } else if (n >= V / 2) {                                                             \
            __builtin_memcpy(d, s, 16);                                                      \
            __builtin_memcpy(d + n - V / 2, s + n - V / 2, 16);                              \
        } else {                                                                             \
            for (int64_t o = 0; o < n; o++)                                                  \
                d[o] = s[o];                                                                 \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* d[o] += s[o] for o < n, a vector at a time (through vector values: an array of        \
     * T on the stack made gcc store and reload each vector in pieces). */                   \
    static inline void add_run_##SUF(T *restrict d, const T *restrict s, int64_t n)          \
    {                                                                                        \
        typedef T vec __attribute__((vector_size(32)));                                      \
        enum { V = 32 / sizeof(T) };                                                         \
        int64_t o = 0;                                                                       \
        for (; o + V <= n; o += V) {                                                         \
            vec a, b;                                                                        \
            __builtin_memcpy(&a, d + o, 32);                                                 \
            __builtin_memcpy(&b, s + o, 32);                                                 \
            a += b;                                                                          \
            __builtin_memcpy(d + o, &a, 32);                                                 \
        }                                                                                    \
        for (; o < n; o++)                                                                   \
            d[o] += s[o];                                                                    \
    }                                                                                        \
                                                                                             \
    /* The rows [r0, r1) of image n's im2col matrix for channels c0 + [ca, cb), into col     \
     * (the rows of channel c0 first), whose rows are ld elements apart; zeros where a       \
     * window reaches into the padding. The geometry is read into locals once: through       \
     * `q` and `x`, every field would be loaded again after each store into col, which may   \
     * alias them (a third of the time). */                                                  \
    SG_VEC static void im2col_##SUF(const sg_conv_geom *q, const sg_arr *x, int64_t n,       \
                                    int64_t c0, int64_t ca, int64_t cb, int64_t r0,          \
                                    int64_t r1, T *col, int64_t ld)                          \
    {                                                                                        \
        const int64_t s1 = x->strides[1], s2 = x->strides[2], s3 = x->strides[3];            \
        const int64_t H = q->H, OW = q->OW, kh = q->kh, kw = q->kw, sh = q->sh;              \
        const int64_t step = q->sw * s3;                                                     \
        const T *xn = (const T *)x->data + n * x->strides[0] + c0 * s1;                      \
        T *row = col + ca * kh * kw * ld;                                                    \
        sg_conv_cols tab;                                                                    \
        col_table(q, &tab);                                                                  \
        for (int64_t c = ca; c < cb; c++)                                                    \
            for (int64_t ki = 0; ki < kh; ki++) {                                            \
                int64_t ih0 = ki * q->dh - q->pt; /* the input row of output row 0 */        \
                for (int64_t kj = 0; kj < kw; kj++, row += ld) {                             \
                    int64_t lo, hi, iw0;                                                     \
                    col_lookup(q, &tab, kj, &lo, &hi, &iw0);                                 \
                    T *d = row;                                                              \
                    /* no padding on this tap's rows and columns, contiguous: the copies     \
                     * alone, rows sh * s2 apart (a third of the instructions a row) */      \
                    if (step == 1 && lo == 0 && hi == OW && ih0 + r0 * sh >= 0 &&            \
                        ih0 + (r1 - 1) * sh < H) {                                           \
                        const T *s = xn + c * s1 + (ih0 + r0 * sh) * s2 + iw0 * s3;          \
                        for (int64_t r = r0; r < r1; r++, d += OW, s += sh * s2)             \
                            copy_run_##SUF(d, s, OW);                                        \
                        continue;                                                            \
                    }                                                                        \
                    for (int64_t r = r0; r < r1; r++, d += OW) {                             \
                        int64_t ih = ih0 + r * sh;                                           \
                        if (ih < 0 || ih >= H || lo >= hi) {                                 \
                            memset(d, 0, (size_t)OW * sizeof(T));                            \
                            continue;                                                        \
                        }                                                                    \
                        const T *s = xn + c * s1 + ih * s2 + iw0 * s3;                       \
                        for (int64_t o = 0; o < lo; o++)                                     \
                            d[o] = 0;                                                        \
                        if (step == 1)                                                       \
                            copy_run_##SUF(d + lo, s + lo, hi - lo);                         \
                        else                                                                 \
                            for (int64_t o = lo; o < hi; o++)                                \
                                d[o] = s[o * step];                                          \
                        for (int64_t o = hi; o < OW; o++)                                    \
                            d[o] = 0;                                                        \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
    }                                                                                        \
                                                                                             \
    /* The adjoint of im2col: each column of col (rows ld apart) added back into its         \
     * window of image n of gx (C-contiguous), channels c0 + [ca, cb); their planes are      \
     * zeroed first when `zero` says so (the image's first band). */                         \
    SG_VEC static void col2im_##SUF(const sg_conv_geom *q, T *gx, int64_t n, int64_t c0,     \
                                    int64_t ca, int64_t cb, int64_t r0, int64_t r1,          \
                                    const T *col, int64_t ld, int zero)                      \
    {                                                                                        \
        const int64_t H = q->H, W = q->W, OW = q->OW, kh = q->kh, kw = q->kw;                \
        const int64_t sh = q->sh, sw = q->sw;                                                \
        T *gn = gx + (n * q->C + c0) * H * W;                                                \
        const T *row = col + ca * kh * kw * ld;                                              \
        sg_conv_cols tab;                                                                    \
        col_table(q, &tab);                                                                  \
        if (zero)                                                                            \
            memset(gn + ca * H * W, 0, (size_t)((cb - ca) * H * W) * sizeof(T));             \
        for (int64_t c = ca; c < cb; c++)                                                    \
            for (int64_t ki = 0; ki < kh; ki++) {                                            \
                int64_t ih0 = ki * q->dh - q->pt;                                            \
                for (int64_t kj = 0; kj < kw; kj++, row += ld) {                             \
                    int64_t lo, hi, iw0;                                                     \
                    col_lookup(q, &tab, kj, &lo, &hi, &iw0);                                 \
                    const T *s = row;                                                        \
                    for (int64_t r = r0; r < r1; r++, s += OW) {                             \
                        int64_t ih = ih0 + r * sh;                                           \
                        if (ih < 0 || ih >= H)                                               \
                            continue;                                                        \
                        T *d = gn + (c * H + ih) * W + iw0;                                  \
                        if (sw == 1)                                                         \
                            add_run_##SUF(d + lo, s + lo, hi - lo);                          \
                        else                                                                 \
                            for (int64_t o = lo; o < hi; o++)                                \
                                d[o * sw] += s[o];                                           \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
    }                                                                                        \
                                                                                             \
    /* A panel's copies, shared among threads (sg_run_units) a unit at a time: a unit is     \
     * one channel of one image, [n0, n1) x [0, Cg) of group gr, output rows [r0, r1).       \
     * Every unit writes its own rows of col, its own plane of gx or its own rows of g       \
     * and gT, so the result is the same however the units are shared. */                    \
    typedef struct {                                                                         \
        const sg_conv_geom *q;                                                               \
        const sg_arr *x;                                                                     \
        T *gx, *g, *gT, *col;                                                                \
        int64_t n0, n1, gr, r0, r1;                                                          \
        int back;                                                                            \
        const sg_conv_epi_plan *ep; /* the forward's epilogue, or NULL */                    \
    } sg_conv_job_##SUF;                                                                     \
                                                                                             \
    /* Units [u0, u1) of a panel's im2col (back == 0) or col2im (back != 0). */              \
    static void cols_units_##SUF(void *ctx, int64_t u0, int64_t u1)                          \
    {                                                                                        \
        const sg_conv_job_##SUF *j = ctx;                                                    \
        const sg_conv_geom *q = j->q;                                                        \
        int64_t Lb = (j->r1 - j->r0) * q->OW, P = (j->n1 - j->n0) * Lb;                      \
        for (int64_t u = u0; u < u1;) {                                                      \
            int64_t i = u / q->Cg, ca = u % q->Cg;                                           \
            int64_t cb = ca + (u1 - u) < q->Cg ? ca + (u1 - u) : q->Cg;                      \
            if (j->back)                                                                     \
                col2im_##SUF(q, j->gx, j->n0 + i, j->gr * q->Cg, ca, cb, j->r0, j->r1,       \
                             j->col + i * Lb, P, j->r0 == 0);                                \
            else                                                                             \
                im2col_##SUF(q, j->x, j->n0 + i, j->gr * q->Cg, ca, cb, j->r0, j->r1,        \
                             j->col + i * Lb, P);                                            \
            u += cb - ca;                                                                    \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* The panel's im2col matrix: images [n0, n1), output rows [r0, r1), group gr. */        \
    static void panel_##SUF(sg_ws *ws, const sg_conv_geom *q, const sg_arr *x, int64_t n0,   \
                            int64_t n1, int64_t gr, int64_t r0, int64_t r1, T *col)          \
    {                                                                                        \
        sg_conv_job_##SUF j = {q, x, NULL, NULL, NULL, col, n0, n1, gr, r0, r1, 0, NULL};    \
        sg_run_units(ws, (n1 - n0) * q->Cg, q->kh * q->kw * (r1 - r0) * q->OW,               \
                     cols_units_##SUF, &j);                                                  \
    }                                                                                        \
                                                                                             \
    /* Its adjoint: col added back into the windows of gx (C-contiguous), each image's       \
     * planes zeroed first at its first band. */                                             \
    static void unpanel_##SUF(sg_ws *ws, const sg_conv_geom *q, T *gx, int64_t n0,           \
                              int64_t n1, int64_t gr, int64_t r0, int64_t r1, T *col)        \
    {                                                                                        \
        sg_conv_job_##SUF j = {q, NULL, gx, NULL, NULL, col, n0, n1, gr, r0, r1, 1, NULL};   \
        sg_run_units(ws, (n1 - n0) * q->Cg, q->kh * q->kw * (r1 - r0) * q->OW,               \
                     cols_units_##SUF, &j);                                                  \
    }                                                                                        \
                                                                                             \
    static void gather_units_##SUF(void *ctx, int64_t u0, int64_t u1)                        \
    {                                                                                        \
        const sg_conv_job_##SUF *j = ctx;                                                    \
        const sg_conv_geom *q = j->q;                                                        \
        int64_t M = q->OH * q->OW, P = (j->n1 - j->n0) * M;                                  \
        for (int64_t u = u0; u < u1; u++) {                                                  \
            int64_t i = u / q->Og, o = u % q->Og;                                            \
            T *a = j->g + ((j->n0 + i) * q->O + j->gr * q->Og + o) * M;                      \
            T *b = j->gT + o * P + i * M;                                                    \
            if (j->back && j->ep)                                                            \
                sg_epi_rows(j->ep, q->OW, j->n0 + i, j->gr * q->Og + o, 0, q->OH, (char *)a, \
                            (const char *)b, sizeof(T));                                     \
            else                                                                             \
                memcpy(j->back ? a : b, j->back ? b : a, (size_t)M * sizeof(T));             \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* gT (Og x P): group gr's channels of images [n0, n1) of g (C-contiguous), side by      \
     * side, or their product's result copied back (back != 0). */                           \
    static void gather_##SUF(sg_ws *ws, const sg_conv_geom *q, T *g, int64_t n0, int64_t n1, \
                             int64_t gr, T *gT, int back, const sg_conv_epi_plan *ep)        \
    {                                                                                        \
        sg_conv_job_##SUF j = {q, NULL, NULL, g, gT, NULL, n0, n1, gr, 0, q->OH, back, ep};  \
        sg_run_units(ws, (n1 - n0) * q->Og, q->OH * q->OW, gather_units_##SUF, &j);          \
    }                                                                                        \
                                                                                             \
    /* The epilogue in place over a one-image panel's product, rows [r0, r1) of group gr's  \
     * channels of image n0 of out (g), a channel a unit; or (gr < 0) over every channel     \
     * of every image, a unit each. */                                                       \
    static void epi_units_##SUF(void *ctx, int64_t u0, int64_t u1)                           \
    {                                                                                        \
        const sg_conv_job_##SUF *j = ctx;                                                    \
        const sg_conv_geom *q = j->q;                                                        \
        int64_t M = q->OH * q->OW;                                                           \
        for (int64_t u = u0; u < u1; u++) {                                                  \
            int64_t n = j->gr < 0 ? u / q->O : j->n0;                                        \
            int64_t c = j->gr < 0 ? u % q->O : j->gr * q->Og + u;                            \
            char *d = (char *)(j->g + (n * q->O + c) * M + j->r0 * q->OW);                   \
            sg_epi_rows(j->ep, q->OW, n, c, j->r0, j->r1, d, d, sizeof(T));                  \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    static void epilogue_##SUF(sg_ws *ws, const sg_conv_geom *q, T *out, int64_t n0,         \
                               int64_t gr, int64_t r0, int64_t r1,                           \
                               const sg_conv_epi_plan *ep)                                   \
    {                                                                                        \
        sg_conv_job_##SUF j = {q, NULL, NULL, out, NULL, NULL, n0, n0 + 1, gr, r0, r1, 1,    \
                               ep};                                                          \
        int64_t units = gr < 0 ? q->N * q->O : q->Og;                                        \
        sg_run_units(ws, units, (r1 - r0) * q->OW, epi_units_##SUF, &j);                     \
    }                                                                                        \
                                                                                             \
    /* The weight gradient's product for a panel, gw_g += a (Og x P) @ b^T (P x K): a long   \
     * inner dimension (P) and a small result, which sg_blas_gemm cuts into few blocks of    \
     * the result or none (LeNet's first layer: 20 x 25 by 36864), is cut along P instead    \
     * into slices, each slice's product into its own matrix of `part`, shared among         \
     * threads; then gw_g += part 0 + part 1 + ... in that order. The slices come from the   \
     * shape alone (kparts), so the sums are the same on any thread count. */                \
    typedef struct {                                                                         \
        const T *a, *b;                                                                      \
        T *part, *wg;                                                                        \
        int64_t Og, K, P, lda, ldb, per, parts;                                              \
    } sg_conv_kjob_##SUF;                                                                    \
                                                                                             \
    static void kpart_units_##SUF(void *ctx, int64_t s0, int64_t s1)                         \
    {                                                                                        \
        const sg_conv_kjob_##SUF *j = ctx;                                                   \
        for (int64_t s = s0; s < s1; s++) {                                                  \
            int64_t k0 = s * j->per, k = j->P - k0 < j->per ? j->P - k0 : j->per;            \
            GEMM(NULL, CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)j->Og,              \
                 (blasint)j->K, (blasint)k, 1, j->a + k0, (blasint)j->lda, j->b + k0,        \
                 (blasint)j->ldb, 0, j->part + s * j->Og * j->K, (blasint)j->K);             \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* gw_g += the slices' products, elements [u0, u1) * 1024 of each: in slice order */     \
    static void kpart_sums_##SUF(void *ctx, int64_t u0, int64_t u1)                          \
    {                                                                                        \
        const sg_conv_kjob_##SUF *j = ctx;                                                   \
        int64_t OK = j->Og * j->K, i0 = u0 * 1024, i1 = u1 * 1024 < OK ? u1 * 1024 : OK;     \
        for (int64_t s = 0; s < j->parts; s++)                                               \
            add_run_##SUF(j->wg + i0, j->part + s * OK + i0, i1 - i0);                       \
    }                                                                                        \
                                                                                             \
    static void wgrad_product_##SUF(sg_ws *ws, const sg_conv_geom *q, T *part, const T *a,   \
                                    int64_t lda, const T *b, int64_t ldb, int64_t P, T *wg)  \
    {                                                                                        \
        int64_t parts = part ? kparts(q, P) : 1;                                             \
        if (parts < 2) {                                                                     \
            GEMM(ws, CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)q->Og, (blasint)q->K, \
                 (blasint)P, 1, a, (blasint)lda, b, (blasint)ldb, 1, wg, (blasint)q->K);     \
            return;                                                                          \
        }                                                                                    \
        int64_t per = (P + parts - 1) / parts, n = (P + per - 1) / per, OK = q->Og * q->K;   \
        sg_conv_kjob_##SUF j = {a, b, part, wg, q->Og, q->K, P, lda, ldb, per, n};           \
        sg_run_units(ws, n, OK * per, kpart_units_##SUF, &j);                                \
        sg_run_units(ws, (OK + 1023) / 1024, 1024 * n, kpart_sums_##SUF, &j);                \
    }                                                                                        \
                                                                                             \
    /* A C-contiguous copy of v in the workspace, or v's own data when it is one. */         \
    static const T *packed_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *v) \
    {                                                                                        \
        if (sg_is_contiguous(v, 4))                                                          \
            return (const T *)v->data;                                                       \
        T *p = sg_ws_alloc(ws, (size_t)sg_size(v, 4) * sizeof(T));                           \
        if (!p)                                                                              \
            sg_fail(err, SG_ENOMEM, "%sout of memory", where);                               \
        else                                                                                 \
            sg_pack(p, v, 4, sizeof(T));                                                     \
        return p;                                                                            \
    }                                                                                        \
                                                                                             \
    /* A call's panels handed to threads a chunk at a time (sg_conv_chunks): what each       \
     * chunk reads and writes, and the buffers of the slots that chunks run in. */           \
    typedef struct {                                                                         \
        const sg_conv_geom *q;                                                               \
        sg_conv_plan pl;                                                                     \
        sg_conv_chunks ck;                                                                   \
        int dir, nslots, *busy;                                                              \
        int64_t ld, ncol, ntmp;                                                              \
        sg_ws *iws; /* the workspace inside a chunk: NULL when chunks run side by side */    \
        const sg_arr *x;                                                                     \
        const T *wp, *gp;                                                                    \
        T *out, *col, *tmp, *parts, *kpart;                                                  \
        const sg_conv_epi_plan *ep;                                                          \
    } sg_conv_run_##SUF;                                                                     \
                                                                                             \
    /* Workspace for the slots (one per thread that may run a chunk at once; one when a      \
     * chunk has all the threads): each a panel's im2col matrix (unless direct) and, for     \
     * panels of more than one image, the Og x P matrix of its side-by-side images. */       \
    static int start_##SUF(sg_err *err, const char *where, sg_ws *ws, sg_conv_run_##SUF *j)  \
    {                                                                                        \
        const sg_conv_geom *q = j->q;                                                        \
        int64_t P = j->pl.imgs * j->pl.rows * q->OW, threads = sg_blas_threads();            \
        j->nslots = j->ck.chunks < 2 ? 1                                                     \
                    : (int)(threads < j->ck.chunks ? threads : j->ck.chunks);                \
        if (j->nslots > SG_CONV_SLOTS)                                                       \
            j->nslots = SG_CONV_SLOTS;                                                       \
        if (j->nslots < 1)                                                                   \
            j->nslots = 1;                                                                   \
        j->iws = j->ck.chunks < 2 ? ws : NULL;                                               \
        j->ncol = j->dir ? 0 : q->K * P;                                                     \
        j->ntmp = j->pl.imgs > 1 ? q->Og * P : 0;                                            \
        j->col = j->ncol ? sg_ws_alloc(ws, (size_t)(j->nslots * j->ncol) * sizeof(T)) : NULL; \
        j->tmp = j->ntmp ? sg_ws_alloc(ws, (size_t)(j->nslots * j->ntmp) * sizeof(T)) : NULL; \
        if ((j->ncol && !j->col) || (j->ntmp && !j->tmp))                                    \
            return sg_fail(err, SG_ENOMEM, "%sout of memory", where);                        \
        return 0;                                                                            \
    }                                                                                        \
                                                                                             \
    static void finish_##SUF(sg_ws *ws, sg_conv_run_##SUF *j)                                \
    {                                                                                        \
        T *bufs[4] = {j->kpart, j->parts, j->tmp, j->col};                                   \
        for (int i = 0; i < 4; i++)                                                          \
            if (bufs[i])                                                                     \
                sg_ws_free(ws, bufs[i]);                                                     \
    }                                                                                        \
                                                                                             \
    /* Panel c of a convolution's forward: its columns into `col` (unless the input is       \
     * read in place), the product per group into `tmp` or the output, then the epilogue. */ \
    static void fwd_panel_##SUF(const sg_conv_run_##SUF *j, sg_conv_panel c, T *col, T *tmp) \
    {                                                                                        \
        const sg_conv_geom *q = j->q;                                                        \
        int64_t M = q->OH * q->OW, n0 = c.n0, n1 = c.n1, r0 = c.r0, r1 = c.r1;               \
        int64_t P = (n1 - n0) * (r1 - r0) * q->OW;                                           \
        for (int64_t g = 0; g < q->G; g++) {                                                 \
            const T *wg = j->wp + g * q->Og * q->K;                                          \
            T *o = j->out + (n0 * q->O + g * q->Og) * M + r0 * q->OW;                        \
            const T *b = col;                                                                \
            int64_t ldb = P;                                                                 \
            if (j->dir) {                                                                    \
                b = (const T *)j->x->data + n0 * j->x->strides[0] +                          \
                    g * q->Cg * j->x->strides[1];                                            \
                ldb = j->ld;                                                                 \
            } else                                                                           \
                panel_##SUF(j->iws, q, j->x, n0, n1, g, r0, r1, col);                        \
            GEMM(j->iws, CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)q->Og,          \
                 (blasint)P, (blasint)q->K, 1, wg, (blasint)q->K, b, (blasint)ldb, 0,        \
                 tmp ? tmp : o, (blasint)(tmp ? P : M));                                     \
            if (tmp)                                                                         \
                gather_##SUF(j->iws, q, j->out, n0, n1, g, tmp, 1, j->ep);                   \
            else if (j->ep)                                                                  \
                epilogue_##SUF(j->iws, q, j->out, n0, g, r0, r1, j->ep);                     \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* Panel c of the input gradient: the product per group, then its columns back. */   \
    static void gin_panel_##SUF(const sg_conv_run_##SUF *j, sg_conv_panel c, T *col, T *tmp) \
    {                                                                                        \
        const sg_conv_geom *q = j->q;                                                        \
        int64_t M = q->OH * q->OW, n0 = c.n0, n1 = c.n1, r0 = c.r0, r1 = c.r1;               \
        int64_t P = (n1 - n0) * (r1 - r0) * q->OW;                                           \
        for (int64_t gr = 0; gr < q->G; gr++) {                                              \
            const T *wg = j->wp + gr * q->Og * q->K;                                         \
            const T *b = j->gp + (n0 * q->O + gr * q->Og) * M + r0 * q->OW;                  \
            int64_t ldb = M;                                                                 \
            if (tmp) {                                                                       \
                gather_##SUF(j->iws, q, (T *)j->gp, n0, n1, gr, tmp, 0, NULL);               \
                b = tmp;                                                                     \
                ldb = P;                                                                     \
            }                                                                                \
            T *d = j->dir ? j->out + (n0 * q->C + gr * q->Cg) * M : col;                     \
            GEMM(j->iws, CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)q->K,             \
                 (blasint)P, (blasint)q->Og, 1, wg, (blasint)q->K, b, (blasint)ldb, 0,       \
                 d, (blasint)(j->dir ? M : P));                                              \
            if (!j->dir)                                                                     \
                unpanel_##SUF(j->iws, q, j->out, n0, n1, gr, r0, r1, col);                   \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* Chunks [s0, s1): the panels of each in order through `panel`, in the buffers of a     \
     * free slot. */                                                                         \
    static void chunks_##SUF(const sg_conv_run_##SUF *j, int64_t s0, int64_t s1,             \
                             void (*panel)(const sg_conv_run_##SUF *, sg_conv_panel, T *,   \
                                           T *))                                             \
    {                                                                                        \
        int slot = take_slot(j->busy, j->nslots);                                            \
        T *col = j->col ? j->col + slot * j->ncol : NULL;                                    \
        T *tmp = j->tmp ? j->tmp + slot * j->ntmp : NULL;                                    \
        int64_t n_end = chunk_end(j->q, j->pl, j->ck, s1 - 1);                               \
        for (sg_conv_panel c = chunk_start(j->pl, j->ck, s0);                                \
             next_panel(j->q, j->pl, n_end, &c);)                                            \
            panel(j, c, col, tmp);                                                           \
        give_slot(j->busy, slot);                                                            \
    }                                                                                        \
                                                                                             \
    static void fwd_chunks_##SUF(void *ctx, int64_t s0, int64_t s1)                          \
    {                                                                                        \
        chunks_##SUF(ctx, s0, s1, fwd_panel_##SUF);                                          \
    }                                                                                        \
                                                                                             \
    static void gin_chunks_##SUF(void *ctx, int64_t s0, int64_t s1)                          \
    {                                                                                        \
        chunks_##SUF(ctx, s0, s1, gin_panel_##SUF);                                          \
    }                                                                                        \
                                                                                             \
    /* Each chunk's sum into its own matrix of `parts` (several chunks) or into gw (one). */ \
    static void wgrad_chunks_##SUF(void *ctx, int64_t s0, int64_t s1)                        \
    {                                                                                        \
        const sg_conv_run_##SUF *j = ctx;                                                    \
        const sg_conv_geom *q = j->q;                                                        \
        int64_t M = q->OH * q->OW, OK = q->O * q->K;                                         \
        int slot = take_slot(j->busy, j->nslots);                                            \
        T *col = j->col ? j->col + slot * j->ncol : NULL;                                    \
        T *tmp = j->tmp ? j->tmp + slot * j->ntmp : NULL;                                    \
        for (int64_t s = s0; s < s1; s++) {                                                  \
            T *dst = j->parts ? j->parts + s * OK : j->out;                                  \
            if (j->parts)                                                                    \
                memset(dst, 0, (size_t)OK * sizeof(T));                                      \
            int64_t n_end = chunk_end(q, j->pl, j->ck, s);                                   \
            for (sg_conv_panel c = chunk_start(j->pl, j->ck, s); next_panel(q, j->pl, n_end, &c);) { \
                int64_t n0 = c.n0, n1 = c.n1, r0 = c.r0, r1 = c.r1;                          \
                int64_t P = (n1 - n0) * (r1 - r0) * q->OW;                                   \
                for (int64_t gr = 0; gr < q->G; gr++) {                                      \
                    const T *a = j->gp + (n0 * q->O + gr * q->Og) * M + r0 * q->OW, *b = col; \
                    int64_t lda = M, ldb = P;                                                \
                    if (tmp) {                                                               \
                        gather_##SUF(j->iws, q, (T *)j->gp, n0, n1, gr, tmp, 0, NULL);       \
                        a = tmp;                                                             \
                        lda = P;                                                             \
                    }                                                                        \
                    if (j->dir) {                                                            \
                        b = (const T *)j->x->data + n0 * j->x->strides[0] +                  \
                            gr * q->Cg * j->x->strides[1];                                   \
                        ldb = j->ld;                                                         \
                    } else                                                                   \
                        panel_##SUF(j->iws, q, j->x, n0, n1, gr, r0, r1, col);               \
                    wgrad_product_##SUF(j->iws, q, j->kpart, a, lda, b, ldb, P,              \
                                        dst + gr * q->Og * q->K);                            \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        give_slot(j->busy, slot);                                                            \
    }                                                                                        \
                                                                                             \
    /* The chunks, on the runtime's threads when there are several (a chunk's work as the   \
     * work of a unit), else the one chunk with every thread inside it. */                   \
    static void run_##SUF(sg_ws *ws, sg_conv_run_##SUF *j,                                   \
                          void (*fn)(void *ctx, int64_t s0, int64_t s1))                     \
    {                                                                                        \
        const sg_conv_geom *q = j->q;                                                        \
        if (j->ck.chunks < 2) {                                                              \
            fn(j, 0, j->ck.chunks);                                                          \
            return;                                                                          \
        }                                                                                    \
        /* in double: a count of elements touched, not an offset; it need not fit int64 */  \
        double work = (double)(j->ck.per * j->pl.imgs) * (double)(q->OH * q->OW) *           \
                      (double)(q->K > 1 ? q->K : 1) * (double)q->G;                          \
        sg_run_units(ws, j->ck.chunks, work < 1e15 ? (int64_t)work : (int64_t)1e15, fn, j);  \
    }                                                                                        \
                                                                                             \
    int sg_conv2d_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,        \
                        const sg_arr *x, const sg_arr *w, const int *p)                      \
    {                                                                                        \
        return sg_conv2d_epi_##SUF(err, where, ws, out, out->shape, x, w, p, NULL);          \
    }                                                                                        \
                                                                                             \
    int sg_conv2d_epi_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,    \
                            const int64_t *os, const sg_arr *x, const sg_arr *w,             \
                            const int *p, const sg_conv_epi *epi)                            \
    {                                                                                        \
        sg_conv_geom q = geom(x->shape, w->shape, os, p);                                    \
        int64_t M = q.OH * q.OW;                                                             \
        sg_conv_epi_plan plan_e, *ep = epi ? &plan_e : NULL;                                 \
        if (!q.N || !q.O || !M)                                                              \
            return 0;                                                                        \
        if (ep)                                                                              \
            sg_epi_plan(ep, epi, out);                                                       \
        if (!q.K) {                                                                          \
            memset(out->data, 0, (size_t)(q.N * q.O * M) * sizeof(T));                       \
            if (ep)                                                                          \
                epilogue_##SUF(ws, &q, (T *)out->data, 0, -1, 0, q.OH, ep);                  \
            return 0;                                                                        \
        }                                                                                    \
        if (sg_blas_sizes(err, where, q.Og, q.K, M))                                         \
            return err->code;                                                                \
        const T *wp = packed_##SUF(err, where, ws, w);                                       \
        if (!wp)                                                                             \
            return err->code;                                                                \
        int busy[SG_CONV_SLOTS] = {0};                                                       \
        sg_conv_run_##SUF j = {.q = &q, .busy = busy, .x = x, .wp = wp,                      \
                               .out = (T *)out->data, .ep = ep};                             \
        j.dir = direct(&q, p, x, &j.ld);                                                     \
        j.pl = plan(&q, j.dir);                                                              \
        j.ck = chunking(&q, j.pl, q.N); /* a chunk a run */                                 \
        if (start_##SUF(err, where, ws, &j))                                                 \
            return finish_##SUF(ws, &j), err->code;                                          \
        run_##SUF(ws, &j, fwd_chunks_##SUF);                                                 \
        finish_##SUF(ws, &j);                                                                \
        return 0;                                                                            \
    }                                                                                        \
                                                                                             \
    int sg_conv2d_grad_input_##SUF(sg_err *err, const char *where, sg_ws *ws,                \
                                   const sg_arr *gx, const sg_arr *g, const sg_arr *w,       \
                                   const int *p)                                             \
    {                                                                                        \
        sg_conv_geom q = geom(gx->shape, w->shape, g->shape, p);                             \
        int64_t M = q.OH * q.OW;                                                             \
        size_t bytes = (size_t)sg_size(gx, 4) * sizeof(T);                                   \
        if (!bytes)                                                                          \
            return 0;                                                                        \
        if (!q.O || !M || !q.K) {                                                            \
            memset(gx->data, 0, bytes);                                                      \
            return 0;                                                                        \
        }                                                                                    \
        if (sg_blas_sizes(err, where, q.K, q.Og, M))                                         \
            return err->code;                                                                \
        const T *wp = packed_##SUF(err, where, ws, w);                                       \
        const T *gp = wp ? packed_##SUF(err, where, ws, g) : NULL;                           \
        if (!gp)                                                                             \
            return err->code;                                                                \
        int busy[SG_CONV_SLOTS] = {0};                                                       \
        sg_conv_run_##SUF j = {.q = &q, .busy = busy, .wp = wp, .gp = gp,                    \
                               .out = (T *)gx->data};                                        \
        j.dir = direct(&q, p, gx, &j.ld);                                                    \
        j.pl = plan(&q, j.dir);                                                              \
        j.ck = chunking(&q, j.pl, q.N); /* a chunk a run */                                 \
        if (start_##SUF(err, where, ws, &j))                                                 \
            return finish_##SUF(ws, &j), err->code;                                          \
        if (j.dir) /* else each plane is zeroed by col2im, on its thread */                  \
            memset(gx->data, 0, bytes);                                                      \
        run_##SUF(ws, &j, gin_chunks_##SUF);                                                 \
        finish_##SUF(ws, &j);                                                                \
        return 0;                                                                            \
    }                                                                                        \
                                                                                             \
    int sg_conv2d_grad_weight_##SUF(sg_err *err, const char *where, sg_ws *ws,               \
                                    const sg_arr *gw, const sg_arr *x, const sg_arr *g,      \
                                    const int *p)                                            \
    {                                                                                        \
        sg_conv_geom q = geom(x->shape, gw->shape, g->shape, p);                             \
        int64_t M = q.OH * q.OW, OK = q.O * q.K;                                             \
        size_t bytes = (size_t)sg_size(gw, 4) * sizeof(T);                                   \
        if (!bytes)                                                                          \
            return 0;                                                                        \
        memset(gw->data, 0, bytes);                                                          \
        if (!q.N || !M)                                                                      \
            return 0;                                                                        \
        if (sg_blas_sizes(err, where, q.Og, M, q.K))                                         \
            return err->code;                                                                \
        const T *gp = packed_##SUF(err, where, ws, g);                                       \
        if (!gp)                                                                             \
            return err->code;                                                                \
        int busy[SG_CONV_SLOTS] = {0};                                                       \
        sg_conv_run_##SUF j = {.q = &q, .busy = busy, .x = x, .gp = gp,                      \
                               .out = (T *)gw->data};                                        \
        j.dir = direct(&q, p, x, &j.ld);                                                     \
        j.pl = plan(&q, j.dir);                                                              \
        /* as many chunks' sums as hold SG_CONV_SUMS elements in all */                      \
        int64_t most = SG_CONV_SUMS / (OK > 0 ? OK : 1);                                     \
        j.ck = chunking(&q, j.pl, most < SG_CONV_CHUNKS ? most : SG_CONV_CHUNKS);            \
        if (start_##SUF(err, where, ws, &j))                                                 \
            return finish_##SUF(ws, &j), err->code;                                          \
        /* one chunk: its panels' products cut along P (kparts); several: whole */           \
        int64_t parts = j.ck.chunks < 2 ? kparts(&q, j.pl.imgs * j.pl.rows * q.OW) : 1;      \
        if (parts > 1)                                                                       \
            j.kpart = sg_ws_alloc(ws, (size_t)(parts * q.Og * q.K) * sizeof(T));             \
        if (j.ck.chunks > 1)                                                                 \
            j.parts = sg_ws_alloc(ws, (size_t)(j.ck.chunks * OK) * sizeof(T));               \
        if ((parts > 1 && !j.kpart) || (j.ck.chunks > 1 && !j.parts)) {                      \
            finish_##SUF(ws, &j);                                                            \
            return sg_fail(err, SG_ENOMEM, "%sout of memory", where);                        \
        }                                                                                    \
        run_##SUF(ws, &j, wgrad_chunks_##SUF);                                               \
        if (j.parts) { /* gw = the chunks' sums added in chunk order */                      \
            sg_conv_kjob_##SUF kj = {NULL, NULL, j.parts, (T *)gw->data, q.O, q.K, 0, 0, 0,  \
                                     0, j.ck.chunks};                                        \
            sg_run_units(ws, (OK + 1023) / 1024, 1024 * j.ck.chunks, kpart_sums_##SUF, &kj); \
        }                                                                                    \
        finish_##SUF(ws, &j);                                                                \
        return 0;                                                                            \
    }

SG_DEFINE_CONV(float, f32, sg_blas_sgemm)
SG_DEFINE_CONV(double, f64, sg_blas_dgemm)
