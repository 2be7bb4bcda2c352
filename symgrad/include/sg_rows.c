/* sg_rows.c: the bodies of sg_rows.h's functions (see there), compiled once
 * into the support library.
 *
 * softmax, log_softmax, cross_entropy and logsumexp evaluate sg_math.h's exp
 * and log, whose polynomials use FMA when the compiler targets a CPU that has
 * it (__FMA__). A kernel is compiled with -march=native; the library is not,
 * and target_clones (SG_VEC) would not define __FMA__ in its clones. So their
 * bodies (sg_rows_impl.h) are compiled three times -- here for the baseline,
 * in sg_rows_v3.c and sg_rows_v4.c under `#pragma GCC target`, which does
 * define it -- and the variant for the CPU the library runs on is called: the
 * same instructions a kernel compiled there would run, hence the same bits.
 * Elsewhere (not x86-64 gcc) and in a sanitizer build (SG_NO_CLONES: the
 * sources are compiled into the kernel, at its -march=native), the one
 * variant compiled here serves.
 *
 * The conversions, one_hot and arange's fill involve no exp: plain functions,
 * SG_VEC where they loop over elements.
 */
#define SG_ISA base
#include "sg_rows_impl.h"
#include "sg_ops.h" /* sg_run_units */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SG_NO_CLONES)
#define SG_ROWS_VARIANTS 1
#else
#define SG_ROWS_VARIANTS 0
#endif

#if SG_ROWS_VARIANTS
/* 4: x86-64-v4, 3: x86-64-v3, 0: the baseline; set when the library loads. */
static int sg__rows_isa;

__attribute__((constructor)) static void sg__rows_pick(void)
{
    __builtin_cpu_init();
    sg__rows_isa = __builtin_cpu_supports("x86-64-v4")   ? 4
                   : __builtin_cpu_supports("x86-64-v3") ? 3
                                                         : 0;
}

#define SG_VARIANTS(DECL) DECL(v3) DECL(v4)
#define SG_PICK(NAME, ARGS)                                                                \
    (sg__rows_isa == 4 ? NAME##_v4 ARGS : sg__rows_isa == 3 ? NAME##_v3 ARGS : NAME##_base ARGS)
#else
#define SG_VARIANTS(DECL)
#define SG_PICK(NAME, ARGS) NAME##_base ARGS
#endif

/* ---- the entry points: the variant for this CPU ---- */

#define SG_SOFTMAX_ENTRY_DECL(ISA)                                                         \
    void sg_softmax_f32_##ISA(const sg_arr *, const sg_arr *, int, int);                   \
    void sg_softmax_f64_##ISA(const sg_arr *, const sg_arr *, int, int);                   \
    void sg_log_softmax_f32_##ISA(const sg_arr *, const sg_arr *, int, int);               \
    void sg_log_softmax_f64_##ISA(const sg_arr *, const sg_arr *, int, int);               \
    int sg_cross_entropy_f32_i32_##ISA(sg_err *, const char *, const sg_arr *,             \
                                       const sg_arr *, const sg_arr *);                    \
    int sg_cross_entropy_f32_i64_##ISA(sg_err *, const char *, const sg_arr *,             \
                                       const sg_arr *, const sg_arr *);                    \
    int sg_cross_entropy_f64_i32_##ISA(sg_err *, const char *, const sg_arr *,             \
                                       const sg_arr *, const sg_arr *);                    \
    int sg_cross_entropy_f64_i64_##ISA(sg_err *, const char *, const sg_arr *,             \
                                       const sg_arr *, const sg_arr *);                    \
    void sg_logsumexp_f32_f32_##ISA(const sg_arr *, const sg_arr *, int, const int *, int); \
    void sg_logsumexp_f64_f64_##ISA(const sg_arr *, const sg_arr *, int, const int *, int); \
    void sg_logsumexp_i32_f64_##ISA(const sg_arr *, const sg_arr *, int, const int *, int); \
    void sg_logsumexp_i64_f64_##ISA(const sg_arr *, const sg_arr *, int, const int *, int); \
    void sg_logsumexp_b8_f64_##ISA(const sg_arr *, const sg_arr *, int, const int *, int);
SG_VARIANTS(SG_SOFTMAX_ENTRY_DECL)

#define SG_SOFTMAX_ENTRY(NAME)                                                             \
    void NAME(const sg_arr *out, const sg_arr *x, int nd, int axis)                        \
    {                                                                                      \
        SG_PICK(NAME, (out, x, nd, axis));                                                 \
    }
SG_SOFTMAX_ENTRY(sg_softmax_f32)
SG_SOFTMAX_ENTRY(sg_softmax_f64)
SG_SOFTMAX_ENTRY(sg_log_softmax_f32)
SG_SOFTMAX_ENTRY(sg_log_softmax_f64)

#define SG_CROSS_ENTROPY_ENTRY(NAME)                                                       \
    int NAME(sg_err *err, const char *where, const sg_arr *out, const sg_arr *z,           \
             const sg_arr *y)                                                              \
    {                                                                                      \
        return SG_PICK(NAME, (err, where, out, z, y));                                     \
    }
SG_CROSS_ENTROPY_ENTRY(sg_cross_entropy_f32_i32)
SG_CROSS_ENTROPY_ENTRY(sg_cross_entropy_f32_i64)
SG_CROSS_ENTROPY_ENTRY(sg_cross_entropy_f64_i32)
SG_CROSS_ENTROPY_ENTRY(sg_cross_entropy_f64_i64)

/* ---- the same on threads: rows shared out by sg_run_units ---- */

/* `a` (ndim nd) cut to entries [u0, u1) of axis d. */
static sg_arr sg__rows_cut(const sg_arr *a, int d, int64_t u0, int64_t u1, size_t item)
{
    sg_arr c = *a;
    c.data = (char *)a->data + u0 * a->strides[d] * (int64_t)item;
    c.shape[d] = u1 - u0;
    return c;
}

typedef struct {
    void (*fn)(const sg_arr *, const sg_arr *, int, int);
    const sg_arr *out, *x;
    int nd, axis, d;
    size_t item;
} sg__softmax_job;

static void sg__softmax_units(void *ctx, int64_t u0, int64_t u1)
{
    const sg__softmax_job *j = ctx;
    sg_arr o = sg__rows_cut(j->out, j->d, u0, u1, j->item);
    sg_arr x = sg__rows_cut(j->x, j->d, u0, u1, j->item);
    j->fn(&o, &x, j->nd, j->axis);
}

/* Units: the entries of the first axis that is not the softmax's (each holds whole
 * rows); a 1-d softmax is one row, on one thread. */
static void sg__softmax_on(sg_ws *ws, void (*fn)(const sg_arr *, const sg_arr *, int, int),
                           const sg_arr *out, const sg_arr *x, int nd, int axis, size_t item)
{
    if (nd < 2) {
        fn(out, x, nd, axis);
        return;
    }
    int d = axis == 0 ? 1 : 0;
    int64_t n = x->shape[d], per = 1;
    for (int k = 0; k < nd; k++)
        per *= k == d ? 1 : x->shape[k];
    sg__softmax_job j = {fn, out, x, nd, axis, d, item};
    sg_run_units(ws, n, per * 8, sg__softmax_units, &j);
}

#define SG_SOFTMAX_ON_ENTRY(NAME, S, T)                                                    \
    void NAME##_on_##S(sg_ws *ws, const sg_arr *out, const sg_arr *x, int nd, int axis)    \
    {                                                                                      \
        sg__softmax_on(ws, NAME##_##S, out, x, nd, axis, sizeof(T));                      \
    }
SG_SOFTMAX_ON_ENTRY(sg_softmax, f32, float)
SG_SOFTMAX_ON_ENTRY(sg_softmax, f64, double)
SG_SOFTMAX_ON_ENTRY(sg_log_softmax, f32, float)
SG_SOFTMAX_ON_ENTRY(sg_log_softmax, f64, double)

typedef struct {
    int (*fn)(sg_err *, const char *, const sg_arr *, const sg_arr *, const sg_arr *);
    const char *where;
    const sg_arr *out, *z, *y;
    size_t item, litem;
    int bad;
} sg__cross_entropy_job;

static void sg__cross_entropy_units(void *ctx, int64_t u0, int64_t u1)
{
    sg__cross_entropy_job *j = ctx;
    sg_arr o = sg__rows_cut(j->out, 0, u0, u1, j->item);
    sg_arr z = sg__rows_cut(j->z, 0, u0, u1, j->item);
    sg_arr y = sg__rows_cut(j->y, 0, u0, u1, j->litem);
    sg_err local;
    local.code = 0;
    if (j->fn(&local, j->where, &o, &z, &y))
        __atomic_store_n(&j->bad, 1, __ATOMIC_RELAXED);
}

#define SG_CROSS_ENTROPY_ON_ENTRY(S, L, T, LT)                                             \
    int sg_cross_entropy_on_##S##_##L(sg_err *err, const char *where, sg_ws *ws,          \
                                      const sg_arr *out, const sg_arr *z, const sg_arr *y) \
    {                                                                                      \
        sg__cross_entropy_job j = {sg_cross_entropy_##S##_##L, where, out, z, y,           \
                                   sizeof(T), sizeof(LT), 0};                              \
        sg_run_units(ws, z->shape[0], z->shape[1] * 8 + 1, sg__cross_entropy_units, &j);  \
        /* a bad label: found again in order, so the first one is the one named */        \
        return j.bad ? sg_cross_entropy_##S##_##L(err, where, out, z, y) : 0;             \
    }
SG_CROSS_ENTROPY_ON_ENTRY(f32, i32, float, int32_t)
SG_CROSS_ENTROPY_ON_ENTRY(f32, i64, float, int64_t)
SG_CROSS_ENTROPY_ON_ENTRY(f64, i32, double, int32_t)
SG_CROSS_ENTROPY_ON_ENTRY(f64, i64, double, int64_t)

#define SG_LOGSUMEXP_ENTRY(NAME)                                                           \
    void NAME(const sg_arr *out, const sg_arr *x, int nd, const int *order, int nr)        \
    {                                                                                      \
        SG_PICK(NAME, (out, x, nd, order, nr));                                            \
    }
SG_LOGSUMEXP_ENTRY(sg_logsumexp_f32_f32)
SG_LOGSUMEXP_ENTRY(sg_logsumexp_f64_f64)
SG_LOGSUMEXP_ENTRY(sg_logsumexp_i32_f64)
SG_LOGSUMEXP_ENTRY(sg_logsumexp_i64_f64)
SG_LOGSUMEXP_ENTRY(sg_logsumexp_b8_f64)

/* ---- cross_entropy's shapes ---- */

/* One label per row of logits, checked before the loss is allocated. */
int sg_cross_entropy_check(sg_err *err, const char *where, const sg_arr *z, const sg_arr *y)
{
    if (z->shape[0] == y->shape[0])
        return 0;
    char s[160];
    return sg_fail(err, SG_ESHAPE, "%s%lld rows of logits (shape %s) but %lld labels", where,
                   (long long)z->shape[0], sg_shape_str(s, sizeof s, z->shape, 2),
                   (long long)y->shape[0]);
}

/* ---- one_hot ---- */

/* Index `idx` (ndim nd) as NumPy prints the tuple: "(3,)", "(1, 2)". */
static const char *sg__index_text(char *at, size_t size, const int64_t *idx, int nd)
{
    size_t used = (size_t)snprintf(at, size, "(");
    for (int d = 0; d < nd && used < size; d++)
        used += (size_t)snprintf(at + used, size - used, d ? ", %lld" : "%lld",
                                 (long long)idx[d]);
    if (used < size)
        snprintf(at + used, size - used, nd == 1 ? ",)" : ")");
    return at;
}

static inline int64_t sg__int_at(const void *data, int64_t off, size_t item)
{
    return item == 8 ? ((const int64_t *)data)[off] : (int64_t)((const int32_t *)data)[off];
}

/* The labels in C order (an odometer over their strides); the first outside
 * [0, k) is reported with its index. */
int sg_one_hot(sg_err *err, const char *where, const sg_arr *out, const sg_arr *labels, int nd,
               size_t label_item, int64_t k, const void *one, size_t item)
{
    int64_t n = sg_size(labels, nd);
    memset(out->data, 0, (size_t)(n * k) * item);
    int64_t idx[SG_MAXDIM] = {0}, off = 0, none = 0;
    char *op = (char *)out->data;
    for (int64_t row = 0; row < n; row++) {
        int64_t lab = sg__int_at(labels->data, off, label_item);
        if (lab < 0 || lab >= k) {
            char at[SG_MAXDIM * 24 + 4];
            return sg_fail(err, SG_EINDEX,
                           "%slabel %lld at index %s is out of range [0, %lld) (%lld classes)",
                           where, (long long)lab, sg__index_text(at, sizeof at, idx, nd),
                           (long long)k, (long long)k);
        }
        memcpy(op + (size_t)(row * k + lab) * item, one, item);
        sg_step2(idx, labels->shape, nd, labels->strides, &off, labels->strides, &none);
    }
    return 0;
}

/* ---- embedding ---- */

/* The first id (C order) outside [0, v), reported as PyTorch's embedding refuses it (a
 * negative id too); 0 when every id is a row of the table. */
static int sg__embedding_ids(sg_err *err, const char *where, const sg_arr *ids, int nd,
                             size_t id_item, int64_t v)
{
    int64_t n = sg_size(ids, nd), idx[SG_MAXDIM] = {0}, off = 0, none = 0;
    for (int64_t r = 0; r < n; r++) {
        int64_t id = sg__int_at(ids->data, off, id_item);
        if (id < 0 || id >= v) {
            char at[SG_MAXDIM * 24 + 4];
            return sg_fail(err, SG_EINDEX,
                           "%sid %lld at index %s is out of range [0, %lld) (a table of %lld "
                           "rows)", where, (long long)id, sg__index_text(at, sizeof at, idx, nd),
                           (long long)v, (long long)v);
        }
        sg_step2(idx, ids->shape, nd, ids->strides, &off, ids->strides, &none);
    }
    return 0;
}

int sg_embedding(sg_err *err, const char *where, const sg_arr *out, const sg_arr *ids, int nd,
                 size_t id_item, const sg_arr *w, size_t item)
{
    int64_t v = w->shape[0], d = w->shape[1];
    if (sg__embedding_ids(err, where, ids, nd, id_item, v))
        return err->code;
    int64_t n = sg_size(ids, nd), idx[SG_MAXDIM] = {0}, off = 0, none = 0;
    char *o = (char *)out->data;
    const char *wd = (const char *)w->data;
    for (int64_t r = 0; r < n; r++, o += (size_t)d * item) {
        /* (strides may be negative: a reversed view of the table) */
        const char *row = wd + (ptrdiff_t)(sg__int_at(ids->data, off, id_item) * w->strides[0])
                                   * (ptrdiff_t)item;
        if (w->strides[1] == 1 || d <= 1)
            memcpy(o, row, (size_t)d * item);
        else
            for (int64_t k = 0; k < d; k++)
                memcpy(o + (size_t)k * item, row + (ptrdiff_t)(k * w->strides[1]) * (ptrdiff_t)item,
                       item);
        sg_step2(idx, ids->shape, nd, ids->strides, &off, ids->strides, &none);
    }
    return 0;
}

/* embedding_grad: the offsets of g's rows grouped by id (a counting sort, C order within
 * an id), then each id's rows summed in double, in that order, columns in blocks of
 * SG__EMB_COLS on the stack: the same bits whatever the threads, and the NumPy
 * reference's (np.add.at in float64, then cast to g's dtype). */
#define SG__EMB_COLS 64

typedef struct {
    const sg_arr *out, *g;
    const int64_t *start, *rows; /* rows[start[i]:start[i + 1]]: g's row offsets for id i */
    int64_t d, ds;               /* row length, g's stride along it */
    int dbl;
} sg__embedding_grad_job;

/* One id's row of the gradient from its `cnt` rows of g (offsets `rows`), unit stride
 * along the row: each column block summed in double over the rows in order, then rounded. */
#define SG__EMB_ROW(T, S)                                                                  \
    SG_VEC static void sg__emb_row_##S(T *o, const T *g, const int64_t *rows, int64_t cnt,  \
                                       int64_t d)                                          \
    {                                                                                      \
        double acc[SG__EMB_COLS];                                                          \
        for (int64_t k0 = 0; k0 < d; k0 += SG__EMB_COLS) {                                 \
            int64_t m = d - k0 < SG__EMB_COLS ? d - k0 : SG__EMB_COLS;                     \
            _Pragma("omp simd")                                                            \
            for (int64_t k = 0; k < m; k++)                                                \
                acc[k] = 0.0;                                                              \
            for (int64_t q = 0; q < cnt; q++) {                                            \
                const T *r = g + rows[q] + k0;                                             \
                _Pragma("omp simd")                                                        \
                for (int64_t k = 0; k < m; k++)                                            \
                    acc[k] += (double)r[k];                                                \
            }                                                                              \
            _Pragma("omp simd")                                                            \
            for (int64_t k = 0; k < m; k++)                                                \
                o[k0 + k] = (T)acc[k];                                                     \
        }                                                                                  \
    }
SG__EMB_ROW(float, f32)
SG__EMB_ROW(double, f64)

static void sg__embedding_grad_units(void *ctx, int64_t u0, int64_t u1)
{
    const sg__embedding_grad_job *j = ctx;
    const int64_t d = j->d, ds = j->ds;
    const size_t item = j->dbl ? sizeof(double) : sizeof(float);
    double acc[SG__EMB_COLS];
    for (int64_t i = u0; i < u1; i++) {
        int64_t q0 = j->start[i], cnt = j->start[i + 1] - q0;
        char *orow = (char *)j->out->data + (size_t)(i * d) * item;
        if (cnt == 0) {  /* most rows of a large vocabulary: no id in this batch */
            memset(orow, 0, (size_t)d * item);
            continue;
        }
        if (ds == 1) {
            if (j->dbl)
                sg__emb_row_f64((double *)orow, (const double *)j->g->data, j->rows + q0, cnt, d);
            else
                sg__emb_row_f32((float *)orow, (const float *)j->g->data, j->rows + q0, cnt, d);
            continue;
        }
        for (int64_t k0 = 0; k0 < d; k0 += SG__EMB_COLS) {  /* g strided along the row */
            int64_t m = d - k0 < SG__EMB_COLS ? d - k0 : SG__EMB_COLS;
            for (int64_t k = 0; k < m; k++)
                acc[k] = 0.0;
            for (int64_t q = q0; q < q0 + cnt; q++) {
                int64_t o = j->rows[q] + k0 * ds;
                if (j->dbl) {
                    const double *g = (const double *)j->g->data + o;
                    for (int64_t k = 0; k < m; k++)
                        acc[k] += g[k * ds];
                } else {
                    const float *g = (const float *)j->g->data + o;
                    for (int64_t k = 0; k < m; k++)
                        acc[k] += (double)g[k * ds];
                }
            }
            for (int64_t k = 0; k < m; k++) {
                if (j->dbl)
                    ((double *)orow)[k0 + k] = acc[k];
                else
                    ((float *)orow)[k0 + k] = (float)acc[k];
            }
        }
    }
}

static int sg__embedding_grad(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,
                              const sg_arr *ids, int nd, size_t id_item, const sg_arr *g,
                              int64_t pad, int dbl)
{
    int64_t v = out->shape[0], d = out->shape[1];
    int bad = g->shape[nd] != d;
    for (int k = 0; k < nd; k++)
        bad |= g->shape[k] != ids->shape[k];
    if (bad) {
        char a[160], b[160];
        return sg_fail(err, SG_ESHAPE, "%sthe gradient's shape %s is not the ids' shape %s "
                       "and a row of the table's %lld", where,
                       sg_shape_str(a, sizeof a, g->shape, nd + 1),
                       sg_shape_str(b, sizeof b, ids->shape, nd), (long long)d);
    }
    if (sg__embedding_ids(err, where, ids, nd, id_item, v))
        return err->code;
    int64_t n = sg_size(ids, nd);
    if (v == 0 || d == 0)  /* an empty gradient: a table of any length with rows of none */
        return 0;
    if (n == 0) {
        memset(out->data, 0, (size_t)(v * d) * (dbl ? sizeof(double) : sizeof(float)));
        return 0;
    }
    int64_t *start = sg_ws_alloc(ws, (size_t)(v + 1) * sizeof(int64_t));
    int64_t *rows = sg_ws_alloc(ws, (size_t)n * sizeof(int64_t));
    if (!start || !rows) {
        sg_ws_free(ws, start);
        sg_ws_free(ws, rows);
        return sg_fail(err, SG_ENOMEM, "%sout of memory for the positions of %lld ids", where,
                       (long long)n);
    }
    memset(start, 0, (size_t)(v + 1) * sizeof(int64_t));
    int64_t idx[SG_MAXDIM] = {0}, off = 0, goff = 0;
    for (int64_t r = 0; r < n; r++) {  /* count each id's rows (the padding's: none) */
        int64_t id = sg__int_at(ids->data, off, id_item);
        if (id != pad)
            start[id + 1]++;
        sg_step2(idx, ids->shape, nd, ids->strides, &off, g->strides, &goff);
    }
    for (int64_t i = 0; i < v; i++)
        start[i + 1] += start[i];
    memset(idx, 0, sizeof idx);
    off = goff = 0;
    for (int64_t r = 0; r < n; r++) {  /* place them, start[id] counting up as it goes */
        int64_t id = sg__int_at(ids->data, off, id_item);
        if (id != pad)
            rows[start[id]++] = goff;
        sg_step2(idx, ids->shape, nd, ids->strides, &off, g->strides, &goff);
    }
    for (int64_t i = v; i > 0; i--)    /* start[i] now ends id i: shift back */
        start[i] = start[i - 1];
    start[0] = 0;
    sg__embedding_grad_job j = {out, g, start, rows, d, g->strides[nd], dbl};
    sg_run_units(ws, v, d * (n / (v ? v : 1) + 1), sg__embedding_grad_units, &j);
    sg_ws_free(ws, rows);
    sg_ws_free(ws, start);
    return 0;
}

int sg_embedding_grad_f32(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,
                          const sg_arr *ids, int nd, size_t id_item, const sg_arr *g, int64_t pad)
{
    return sg__embedding_grad(err, where, ws, out, ids, nd, id_item, g, pad, 0);
}

int sg_embedding_grad_f64(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,
                          const sg_arr *ids, int nd, size_t id_item, const sg_arr *g, int64_t pad)
{
    return sg__embedding_grad(err, where, ws, out, ids, nd, id_item, g, pad, 1);
}

/* ---- arange ---- */

#define SG_ARANGE_FLOAT(T, S)                                                              \
    SG_VEC void sg_arange_fill_##S(T *p, int64_t n, T a0, T a1)                            \
    {                                                                                      \
        if (n > 0)                                                                         \
            p[0] = a0;                                                                     \
        if (n > 1)                                                                         \
            p[1] = a1;                                                                     \
        for (int64_t i = 2; i < n; i++)                                                    \
            p[i] = a0 + (T)i * (T)(a1 - a0);                                               \
    }
/* wrapping integer arithmetic, as NumPy's fill */
#define SG_ARANGE_INT(T, S)                                                                \
    SG_VEC void sg_arange_fill_##S(T *p, int64_t n, T a0, T a1)                            \
    {                                                                                      \
        if (n > 0)                                                                         \
            p[0] = a0;                                                                     \
        if (n > 1)                                                                         \
            p[1] = a1;                                                                     \
        for (int64_t i = 2; i < n; i++)                                                    \
            p[i] = (T)((uint64_t)a0 + (uint64_t)i * (uint64_t)(a1 - a0));                  \
    }
SG_ARANGE_FLOAT(float, f32)
SG_ARANGE_FLOAT(double, f64)
SG_ARANGE_INT(int32_t, i32)
SG_ARANGE_INT(int64_t, i64)

int sg_arange_length_i64(sg_err *err, const char *where, int64_t start, int64_t stop,
                         int64_t step, int64_t *n)
{
    if (step == 0)
        return sg_fail(err, SG_EVALUE, "%sstep must not be zero", where);
    /* Unsigned differences, divisions and the + 1: no overflow for any int64
     * arguments (a length past INT64_MAX converts to a negative number, refused). */
    if (step > 0)
        *n = stop > start ? (int64_t)(((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)step + 1)
                          : 0;
    else
        *n = start > stop
                 ? (int64_t)(((uint64_t)start - (uint64_t)stop - 1) / (0 - (uint64_t)step) + 1)
                 : 0;
    if (*n < 0)
        return sg_fail(err, SG_ESHAPE, "%sarange: the length does not fit in 64 bits", where);
    return 0;
}

int sg_arange_length_f64(sg_err *err, const char *where, double start, double stop,
                         double step, int64_t *n)
{
    double d = stop - start;
    if (step == 0)
        return sg_fail(err, SG_EVALUE, "%sstep must not be zero", where);
    double q = d / step;
    if (q != q || q > 9.2e18 || q < -9.2e18)
        return sg_fail(err, SG_EVALUE, "%sarange(%g, %g, %g) has no finite length", where,
                       start, stop, step);
    *n = (d != 0 && q == 0) ? 1 : (int64_t)ceil(q);
    if (*n < 0)
        *n = 0;
    return 0;
}

/* NumPy's setitem of an int64 (I) or a double (F) into each element type */
#define SG_FROM_I_f32(v) ((float)(v))
#define SG_FROM_I_f64(v) ((double)(v))
#define SG_FROM_I_i32(v) ((int32_t)(v))
#define SG_FROM_I_i64(v) ((int64_t)(v))
#define SG_FROM_F_f32(v) ((float)(v))
#define SG_FROM_F_f64(v) ((double)(v))
#define SG_FROM_F_i32(v) sg_f2i32(v)
#define SG_FROM_F_i64(v) sg_f2i64(v)

#define SG_ARANGE(T, S)                                                                    \
    void sg_arange_i64_##S(void *p, int64_t n, int64_t start, int64_t step)                \
    {                                                                                      \
        sg_arange_fill_##S((T *)p, n, SG_FROM_I_##S(start),                                \
                           SG_FROM_I_##S((int64_t)((uint64_t)start + (uint64_t)step)));    \
    }                                                                                      \
    void sg_arange_f64_##S(void *p, int64_t n, double start, double step)                  \
    {                                                                                      \
        sg_arange_fill_##S((T *)p, n, SG_FROM_F_##S(start), SG_FROM_F_##S(start + step));  \
    }
SG_ARANGE(float, f32)
SG_ARANGE(double, f64)
SG_ARANGE(int32_t, i32)
SG_ARANGE(int64_t, i64)

/* bool: at most two entries (checked before), each != 0 */
void sg_arange_i64_b8(void *p, int64_t n, int64_t start, int64_t step)
{
    uint8_t *q = (uint8_t *)p;
    if (n > 0)
        q[0] = (uint8_t)(start != 0);
    if (n > 1)
        q[1] = (uint8_t)((int64_t)((uint64_t)start + (uint64_t)step) != 0);
}

void sg_arange_f64_b8(void *p, int64_t n, double start, double step)
{
    uint8_t *q = (uint8_t *)p;
    if (n > 0)
        q[0] = (uint8_t)(start != 0);
    if (n > 1)
        q[1] = (uint8_t)(start + step != 0);
}

/* ---- conversions ---- */

#define SG_TO_ANY(TO, v) ((TO)(v))
#define SG_TO_BOOL(TO, v) ((uint8_t)((v) != 0))

/* Row by row of the last axis, the rows in C order (as sg_copy_nd). */
#define SG_CAST(TO, STO, TI, SI, CONV)                                                     \
    SG_VEC void sg_cast_##STO##_##SI(const sg_arr *dst, const sg_arr *src, int nd)         \
    {                                                                                      \
        int64_t n = sg_size(src, nd);                                                      \
        if (n == 0)                                                                        \
            return;                                                                        \
        TO *d = (TO *)dst->data;                                                           \
        const TI *s = (const TI *)src->data;                                               \
        if (nd == 0) {                                                                     \
            d[0] = CONV(TO, s[0]);                                                         \
            return;                                                                        \
        }                                                                                  \
        int64_t inner = src->shape[nd - 1], ds = dst->strides[nd - 1];                     \
        int64_t ss = src->strides[nd - 1], idx[SG_MAXDIM] = {0}, od = 0, os = 0;           \
        for (int64_t r = 0; r < n / inner; r++) {                                          \
            if (ds == 1 && ss == 1)                                                        \
                for (int64_t j = 0; j < inner; j++)                                        \
                    d[od + j] = CONV(TO, s[os + j]);                                       \
            else                                                                           \
                for (int64_t j = 0; j < inner; j++)                                        \
                    d[od + j * ds] = CONV(TO, s[os + j * ss]);                             \
            sg_step2(idx, src->shape, nd - 1, dst->strides, &od, src->strides, &os);       \
        }                                                                                  \
    }
#define SG_CASTS_TO(TO, STO, CONV)                                                         \
    SG_CAST(TO, STO, float, f32, CONV)                                                     \
    SG_CAST(TO, STO, double, f64, CONV)                                                    \
    SG_CAST(TO, STO, int32_t, i32, CONV)                                                   \
    SG_CAST(TO, STO, int64_t, i64, CONV)                                                   \
    SG_CAST(TO, STO, uint8_t, b8, CONV)
SG_CASTS_TO(float, f32, SG_TO_ANY)
SG_CASTS_TO(double, f64, SG_TO_ANY)
SG_CASTS_TO(int32_t, i32, SG_TO_ANY)
SG_CASTS_TO(int64_t, i64, SG_TO_ANY)
SG_CASTS_TO(uint8_t, b8, SG_TO_BOOL)

int sg_cast_copy(sg_err *err, const char *where, sg_ws *ws, sg_arr *dst, const sg_arr *src,
                 int nd, size_t item, void (*cast)(const sg_arr *, const sg_arr *, int))
{
    *dst = *src;
    int64_t n = sg_contiguous(dst, nd);
    dst->data = sg_ws_alloc(ws, (size_t)n * item);
    if (!dst->data)
        return sg_fail(err, SG_ENOMEM, "%sout of memory", where);
    cast(dst, src, nd);
    return 0;
}

/* ---- gathers and scatters (advanced indexing) ---- */

/* Index array a's position at element `at` of it, wrapped once (checked already). */
static inline int64_t sg__plan_pos(const sg_index_plan *p, int a, int64_t at)
{
    int64_t pos = p->wide[a] ? ((const int64_t *)p->arr[a])[at]
                             : (int64_t)((const int32_t *)p->arr[a])[at];
    return pos < 0 ? pos + p->len[a] : pos;
}

/* Each element of the plan, in C order, as row r of the dims but the last and
 * position j in it (pos counts the elements): OFF is its offset in x, Y its
 * element's offset through `yst` (when given). Per row, the offsets of the dims
 * but the last are summed once; along the row, a walked dim adds its step, an
 * index array's dim a lookup per element (one array: its own loop). */
#define SG_PLAN_WALK(P, YST, BODY)                                                         \
    do {                                                                                   \
        const sg_index_plan *p_ = (P);                                                     \
        int nd_ = p_->nd, na_ = p_->narr, last_ = nd_ ? nd_ - 1 : 0;                       \
        int64_t idx[SG_MAXDIM] = {0}, rat[SG_MAXDIM], lst[SG_MAXDIM], n_ = 1;             \
        for (int k = 0; k < nd_; k++)                                                      \
            n_ *= p_->shape[k];                                                            \
        if (n_ == 0)                                                                       \
            break;                                                                         \
        int64_t inner = nd_ ? p_->shape[last_] : 1, step = nd_ ? p_->step[last_] : 0;      \
        int lookup = nd_ && na_ && p_->bdim[last_] >= 0;                                   \
        for (int a = 0; lookup && a < na_; a++)                                            \
            lst[a] = p_->ast[a][p_->bdim[last_]];                                          \
        int64_t ys = (YST) && nd_ ? (YST)[last_] : 0;                                      \
        for (int64_t r = 0, pos = 0; r < n_ / inner; r++) {                                \
            int64_t row = p_->base, yrow = 0;                                              \
            for (int k = 0; k < last_; k++)                                                \
                row += idx[k] * p_->step[k];                                               \
            for (int k = 0; (YST) && k < last_; k++)                                       \
                yrow += idx[k] * (YST)[k];                                                 \
            for (int a = 0; a < na_; a++) {                                                \
                rat[a] = 0;                                                                \
                for (int k = 0; k < last_; k++)                                            \
                    if (p_->bdim[k] >= 0)                                                  \
                        rat[a] += idx[k] * p_->ast[a][p_->bdim[k]];                        \
                if (!lookup)                                                               \
                    row += sg__plan_pos(p_, a, rat[a]) * p_->xst[a];                       \
            }                                                                              \
            if (!lookup) {                                                                 \
                for (int64_t j = 0; j < inner; j++, pos++) {                               \
                    int64_t OFF = row + j * step, Y = yrow + j * ys;                       \
                    (void)Y;                                                               \
                    BODY;                                                                  \
                }                                                                          \
            } else if (na_ == 1) {                                                         \
                int64_t at0 = rat[0], l0 = lst[0], x0 = p_->xst[0];                        \
                for (int64_t j = 0; j < inner; j++, pos++) {                               \
                    int64_t OFF = row + sg__plan_pos(p_, 0, at0 + j * l0) * x0;            \
                    int64_t Y = yrow + j * ys;                                             \
                    (void)Y;                                                               \
                    BODY;                                                                  \
                }                                                                          \
            } else {                                                                       \
                for (int64_t j = 0; j < inner; j++, pos++) {                               \
                    int64_t OFF = row, Y = yrow + j * ys;                                  \
                    for (int a = 0; a < na_; a++)                                          \
                        OFF += sg__plan_pos(p_, a, rat[a] + j * lst[a]) * p_->xst[a];      \
                    (void)Y;                                                               \
                    BODY;                                                                  \
                }                                                                          \
            }                                                                              \
            for (int k = last_ - 1; k >= 0; k--) { /* the next row: C order */            \
                if (++idx[k] < p_->shape[k])                                               \
                    break;                                                                 \
                idx[k] = 0;                                                                \
            }                                                                              \
        }                                                                                  \
    } while (0)

#define SG_GATHER_AS(T)                                                                    \
    SG_PLAN_WALK(p, (const int64_t *)NULL, ((T *)out)[pos] = ((const T *)x)[OFF])

SG_VEC void sg_gather(const sg_index_plan *p, void *out, const void *x, size_t item)
{
    switch (item) {
    case 8: SG_GATHER_AS(uint64_t); break;
    case 4: SG_GATHER_AS(uint32_t); break;
    default: SG_GATHER_AS(uint8_t); break;
    }
}

int sg_gather_rows(void *out, const sg_arr *x, int xnd, const sg_arr *ids, int ind,
                   size_t ids_item, size_t item)
{
    int64_t row = 1;
    for (int k = xnd - 1; k >= 1; k--) {
        if (x->shape[k] != 1 && x->strides[k] != row)
            return 0;
        row *= x->shape[k];
    }
    int64_t n = sg_size(ids, ind), it[SG_MAXDIM] = {0}, ioff = 0, none = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = ids_item == 8 ? ((const int64_t *)ids->data)[ioff]
                                  : (int64_t)((const int32_t *)ids->data)[ioff];
        if (k < 0)
            k += x->shape[0];
        memcpy((char *)out + (size_t)(i * row) * item,
               (const char *)x->data + (size_t)(k * x->strides[0]) * item, (size_t)row * item);
        sg_step2(it, ids->shape, ind, ids->strides, &ioff, ids->strides, &none);
    }
    return 1;
}

#define SG_SCATTER(T, S, INC)                                                              \
    SG_VEC void sg_scatter_##S(const sg_index_plan *p, void *dst, const sg_arr *y,         \
                               const int64_t *yst, int set)                                \
    {                                                                                      \
        T *d = (T *)dst;                                                                   \
        const T *v = (const T *)y->data;                                                   \
        if (set)                                                                           \
            SG_PLAN_WALK(p, yst, d[OFF] = v[Y]);                                           \
        else                                                                               \
            SG_PLAN_WALK(p, yst, INC(d[OFF], v[Y]));                                       \
    }
#define SG_ADD_INTO(d, v) ((d) += (v))
#define SG_OR_INTO(d, v) ((d) = (uint8_t)((d) || (v)))
SG_SCATTER(float, f32, SG_ADD_INTO)
SG_SCATTER(double, f64, SG_ADD_INTO)
SG_SCATTER(int32_t, i32, SG_ADD_INTO)
SG_SCATTER(int64_t, i64, SG_ADD_INTO)
SG_SCATTER(uint8_t, b8, SG_OR_INTO)

SG_VEC void sg_scatter_add_f64_f32(const sg_index_plan *p, void *dst, const sg_arr *y,
                                   const int64_t *yst)
{
    double *d = (double *)dst;
    const float *v = (const float *)y->data;
    SG_PLAN_WALK(p, yst, d[OFF] += (double)v[Y]);
}

double *sg_widen_f32(sg_ws *ws, const float *p, int64_t n)
{
    double *acc = n <= INT64_MAX / 8 ? (double *)sg_ws_alloc(ws, (size_t)n * sizeof(double)) : NULL;
    if (acc)
        for (int64_t k = 0; k < n; k++)
            acc[k] = p[k];
    return acc;
}

SG_VEC void sg_narrow_f64(float *p, const double *acc, int64_t n)
{
    for (int64_t k = 0; k < n; k++)
        p[k] = (float)acc[k];
}

/* ---- concatenate and split: their lengths ---- */

int sg_concat_check(sg_err *err, const char *where, int n, const sg_arr *const *xs, int nd,
                    int axis)
{
    for (int d = 0; d < nd; d++) {
        int differs = 0;
        for (int i = 1; i < n; i++)
            differs |= d != axis && xs[i]->shape[d] != xs[0]->shape[d];
        if (!differs)
            continue;
        char all[1024], one[96];
        size_t used = 0;
        all[0] = 0;
        for (int i = 0; i < n && used < sizeof all; i++)
            used += (size_t)snprintf(all + used, sizeof all - used, i ? ", %s" : "%s",
                                     sg_shape_str(one, sizeof one, xs[i]->shape, nd));
        return sg_fail(err, SG_ESHAPE,
                       "%sthe inputs' lengths differ on axis %d (only axis %d may differ): "
                       "shapes %s", where, d, axis, all);
    }
    return 0;
}

int sg_split_lengths(sg_err *err, const char *where, int64_t *cuts, int n, const sg_arr *lengths,
                     const sg_arr *x, int nd, int axis)
{
    int64_t left = x->shape[axis];
    for (int k = 0; k < n; k++)
        cuts[k] = ((const int64_t *)lengths->data)[k * lengths->strides[0]];
    /* subtracting as we go cannot overflow, unlike a sum of arbitrary lengths */
    for (int k = 0; k < n && left >= 0; k++)
        left = (cuts[k] < 0 || cuts[k] > left) ? -1 : left - cuts[k];
    if (left == 0)
        return 0;
    char sl[160], sx[96];
    return sg_fail(err, SG_ESHAPE,
                   "%slengths %s do not cut axis %d of an array of shape %s (they must be >= 0 "
                   "and add up to %lld)", where, sg_shape_str(sl, sizeof sl, cuts, n), axis,
                   sg_shape_str(sx, sizeof sx, x->shape, nd), (long long)x->shape[axis]);
}
