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

/* ---- the workspace arena ----
 *
 * Intermediates come from one arena per call slot (sg_abi.h). Blocks are laid
 * out at offsets of a virtual arena [0, used): each is a 64-byte header (its
 * record's number, and whether it is in use) followed by the caller's bytes,
 * a multiple of SG_ALIGN. A block the kernel releases after its value's last
 * use (sg_ws_free) becomes a hole, merged with free neighbours, and a later
 * request takes the smallest hole it fits in (best fit), split if much
 * larger; a freed block at the end lowers `used`. The layout depends only on
 * the sequence of requests and releases, never on the arena's size, so
 * `need` (the most `used` reached) is the arena the same call needs next time:
 * a block beyond `cap` is malloc'ed apart (remembered in ws->extra, freed at
 * the end of the call) but keeps its place in the layout, and once the runtime
 * has grown the arena to `need` a call of the same shapes mallocs nothing.
 *
 * The block records live in ws->blocks, a table kept between calls (grown
 * with realloc; the runtime frees it with the slot) and emptied whenever
 * `used` is 0: at the start of every call. */

#define SG_BLOCK_HDR SG_ALIGN
#define SG_LIVE 0x5357424c4b4c4956ull /* "LIVBLKWS" */
#define SG_DEAD 0x5357424c4b444544ull

typedef struct {
    size_t off, size;      /* place in the virtual arena, header included */
    int64_t prev, next;    /* neighbours in the layout (-1: none) */
    int64_t fprev, fnext;  /* holes only: the list of holes */
    int used;
} sg_blk;

typedef struct {
    size_t n, cap;         /* records made (some recycled, on `spare`), room for */
    int64_t last;          /* the block ending at `used` (-1: none) */
    int64_t holes;         /* first hole */
    int64_t spare;         /* records to reuse, linked by `next` */
    sg_blk rec[];
} sg_blocks;

typedef struct {
    uint64_t state;        /* SG_LIVE while in use */
    int64_t rec;
} sg_blk_hdr;

static sg_blocks *sg_blocks_of(sg_ws *ws)
{
    sg_blocks *b = (sg_blocks *)ws->blocks;
    if (ws->used == 0 && b) { /* a new call (or nothing in use): forget every block */
        b->n = 0;
        b->last = b->holes = b->spare = -1;
    }
    return b;
}

static int64_t sg_blk_new(sg_ws *ws)
{
    sg_blocks *b = (sg_blocks *)ws->blocks;
    if (b && b->spare >= 0) {
        int64_t r = b->spare;
        b->spare = b->rec[r].next;
        return r;
    }
    if (!b || b->n == b->cap) {
        size_t cap = b ? 2 * b->cap : 64;
        sg_blocks *grown = (sg_blocks *)realloc(b, sizeof *b + cap * sizeof(sg_blk));
        if (!grown)
            return -1;
        if (!b) {
            grown->n = 0;
            grown->last = grown->holes = grown->spare = -1;
        }
        grown->cap = cap;
        ws->blocks = b = grown;
    }
    return (int64_t)b->n++;
}

static void sg_hole_unlink(sg_blocks *b, int64_t r)
{
    sg_blk *k = &b->rec[r];
    if (k->fprev >= 0)
        b->rec[k->fprev].fnext = k->fnext;
    else
        b->holes = k->fnext;
    if (k->fnext >= 0)
        b->rec[k->fnext].fprev = k->fprev;
}

static void sg_hole_link(sg_blocks *b, int64_t r)
{
    sg_blk *k = &b->rec[r];
    k->used = 0;
    k->fprev = -1;
    k->fnext = b->holes;
    if (b->holes >= 0)
        b->rec[b->holes].fprev = r;
    b->holes = r;
}

/* Merge record `r` into `into`, its left neighbour, and recycle r. */
static void sg_blk_merge(sg_blocks *b, int64_t into, int64_t r)
{
    sg_blk *k = &b->rec[r];
    b->rec[into].size += k->size;
    b->rec[into].next = k->next;
    if (k->next >= 0)
        b->rec[k->next].prev = into;
    if (b->last == r)
        b->last = into;
    k->next = b->spare;
    b->spare = r;
}

void *sg_ws_alloc(sg_ws *ws, size_t n)
{
    if (n > SIZE_MAX - 2 * SG_ALIGN - SG_BLOCK_HDR)
        return NULL;
    size_t size = SG_BLOCK_HDR + ((n ? n : 1) + SG_ALIGN - 1) / SG_ALIGN * SG_ALIGN;
    sg_blocks *b = sg_blocks_of(ws);
    int64_t r = -1;
    if (b) /* the smallest hole that fits */
        for (int64_t h = b->holes; h >= 0; h = b->rec[h].fnext)
            if (b->rec[h].size >= size && (r < 0 || b->rec[h].size < b->rec[r].size))
                r = h;
    if (r >= 0) {
        sg_hole_unlink(b, r);
        if (b->rec[r].size - size >= 4 * SG_BLOCK_HDR) { /* split: the rest stays a hole */
            int64_t q = sg_blk_new(ws);
            if (q < 0)
                return NULL;
            b = (sg_blocks *)ws->blocks;
            sg_blk *k = &b->rec[r], *rest = &b->rec[q];
            rest->off = k->off + size;
            rest->size = k->size - size;
            rest->prev = r;
            rest->next = k->next;
            if (k->next >= 0)
                b->rec[k->next].prev = q;
            k->next = q;
            k->size = size;
            if (b->last == r)
                b->last = q;
            sg_hole_link(b, q);
        }
    } else {
        r = sg_blk_new(ws);
        if (r < 0)
            return NULL;
        b = (sg_blocks *)ws->blocks;
        sg_blk *k = &b->rec[r];
        k->off = ws->used;
        k->size = size;
        k->prev = b->last;
        k->next = -1;
        if (b->last >= 0)
            b->rec[b->last].next = r;
        b->last = r;
        ws->used += size;
        if (ws->used > ws->need)
            ws->need = ws->used;
    }
    sg_blk *k = &b->rec[r];
    k->used = 1;
    char *p;
    if (k->off + size <= ws->cap) {
        p = ws->base + k->off;
    } else { /* beyond the arena: memory of its own, at the same place in the layout */
        if (ws->n_extra == ws->cap_extra) {
            size_t cap = ws->cap_extra ? 2 * ws->cap_extra : 16;
            void **grown = (void **)realloc(ws->extra, cap * sizeof(void *));
            if (!grown)
                return NULL;
            ws->extra = grown;
            ws->cap_extra = cap;
        }
        void *m = NULL;
        if (posix_memalign(&m, SG_ALIGN, size) != 0)
            return NULL;
        ws->extra[ws->n_extra++] = m;
        p = (char *)m;
    }
    sg_blk_hdr *h = (sg_blk_hdr *)p;
    h->state = SG_LIVE;
    h->rec = r;
    return p + SG_BLOCK_HDR;
}

void sg_ws_free(sg_ws *ws, void *data)
{
    if (!data || !ws->blocks || ws->used == 0)
        return;
    sg_blk_hdr *h = (sg_blk_hdr *)((char *)data - SG_BLOCK_HDR);
    if (h->state != SG_LIVE) /* released already (a loop's result in its operand's block) */
        return;
    h->state = SG_DEAD;
    sg_blocks *b = (sg_blocks *)ws->blocks;
    int64_t r = h->rec;
    if (r < 0 || (size_t)r >= b->n || !b->rec[r].used)
        return;
    b->rec[r].used = 0;
    int64_t nx = b->rec[r].next, pv = b->rec[r].prev;
    if (nx >= 0 && !b->rec[nx].used) {
        sg_hole_unlink(b, nx);
        sg_blk_merge(b, r, nx);
    }
    if (pv >= 0 && !b->rec[pv].used) {
        sg_hole_unlink(b, pv);
        sg_blk_merge(b, pv, r);
        r = pv;
    }
    if (b->last == r) { /* the end of the layout: `used` comes back down */
        ws->used = b->rec[r].off;
        b->last = b->rec[r].prev;
        if (b->last >= 0)
            b->rec[b->last].next = -1;
        b->rec[r].next = b->spare;
        b->spare = r;
    } else {
        sg_hole_link(b, r);
    }
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

/* Copy `src` (any strides) into `dst` (any strides) of the same shape: sg_ops.c's
 * sg_copy_nd, rows of merged axes (it was element by element, a memcpy call each:
 * 2 ms of a pooling gradient's 10 to hand over its 2 MB result). */
void sg_copy(sg_arr *dst, const sg_arr *src, int ndim, size_t itemsize)
{
    sg_copy_nd(dst, src, ndim, itemsize);
}
