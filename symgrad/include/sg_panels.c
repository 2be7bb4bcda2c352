/* sg_panels.c: see sg_panels.h.
 *
 * Layout: the columns of B in panels of SG_PANEL_NR (32) columns (zeros past
 * n), each panel two slabs of SG_SLAB (16) columns: slab s of panel j holds
 * rows 0..k-1 of columns 32j+16s..32j+16s+15, one row (64 bytes, a cache
 * line) after another. The micro-kernel keeps an MR x 16 (AVX-512: MR x 32)
 * block of the result in registers and runs down k: per row, two vector
 * loads, one broadcast and FMA per row of the block. An AVX2 block reads one
 * slab in order; with rows of 32 columns it read every other line, whose
 * lines filled half the first-level cache's sets (the LSTM benchmark's
 * 32 x 1024 by 1024 x 256 step product took about 15% longer). Each element is
 * the sum over k in order, one fused multiply-add at a time, as a BLAS kernel
 * does it. The build picks the kernel the CPU has (AVX-512, AVX2+FMA, or plain
 * C); all three read the same layout.
 */
#include <string.h>

#include "sg_support.h"
#include "sg_panels.h"

#define SG_PANEL_NR 32
#define SG_SLAB 16
/* Where row r, column q of a panel of k rows lies from the panel's start. */
#define SG_PANEL_AT(k, r, q) (((q) / SG_SLAB) * SG_SLAB * (k) + (r) * SG_SLAB + (q) % SG_SLAB)

int64_t sg_panels_size(int64_t k, int64_t n)
{
    return k * ((n + SG_PANEL_NR - 1) / SG_PANEL_NR) * SG_PANEL_NR;
}

/* Rows r0..r0+h-1 of the panel holding columns j0..j0+w-1 (w <= 32), from any strides. */
static inline void sg_panels_pack_rows(float *d, int64_t k, const float *src, int64_t sk,
                                       int64_t sn, int64_t r0, int64_t h, int64_t j0, int64_t w)
{
    for (int64_t r = r0; r < r0 + h; r++) {
        const float *s = src + r * sk + j0 * sn;
        for (int64_t q = 0; q < SG_PANEL_NR; q++)
            d[SG_PANEL_AT(k, r, q)] = q < w ? s[q * sn] : 0;
    }
}

typedef float sg_panels_f8 __attribute__((vector_size(32)));
typedef float sg_panels_f8u __attribute__((vector_size(32), aligned(4), may_alias));

/* d[i * SG_SLAB + j] = s[j * sn + i] for i, j < 8: eight rows of 8 floats turned
 * around in registers (three rounds of shuffles), the 8 columns stored as rows. */
static inline __attribute__((always_inline)) void sg_panels_t8(float *d, const float *s, int64_t sn)
{
    sg_panels_f8 a[8], b[8];
    for (int j = 0; j < 8; j++)
        a[j] = *(const sg_panels_f8u *)(s + j * sn);
    for (int j = 0; j < 8; j += 2) {
        b[j] = __builtin_shufflevector(a[j], a[j + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        b[j + 1] = __builtin_shufflevector(a[j], a[j + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int j = 0; j < 8; j += 4)
        for (int t = 0; t < 2; t++) {
            a[j + t] = __builtin_shufflevector(b[j + t], b[j + t + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            a[j + t + 2] =
                __builtin_shufflevector(b[j + t], b[j + t + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int t = 0; t < 4; t++) {
        b[t] = __builtin_shufflevector(a[t], a[t + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        b[t + 4] = __builtin_shufflevector(a[t], a[t + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
    /* b[t], t = 0..3: rows (0, 2, 1, 3) of the result; t = 4..7: rows (4, 6, 5, 7) */
    static const int row[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int t = 0; t < 8; t++)
        *(sg_panels_f8u *)(d + row[t] * SG_SLAB) = b[t];
}

SG_VEC void sg_panels_pack_f32(float *dst, const sg_arr *b)
{
    int64_t k = b->shape[0], n = b->shape[1], sk = b->strides[0], sn = b->strides[1];
    const float *src = (const float *)b->data;
    int64_t np = (n + SG_PANEL_NR - 1) / SG_PANEL_NR;
    if (sk != 1) {
        /* Row by row of the source, every panel's piece of the row in turn (copies of
         * 64 bytes the compiler writes out), so the source is read along its rows.
         * Panel by panel, a call to memcpy for each row of each panel, the rows one
         * row stride apart, this took about 8 times as long as a copy of the operand. */
        int64_t whole = sn == 1 ? n / SG_PANEL_NR : 0; /* panels copied as 128-byte rows */
        for (int64_t r = 0; r < k; r++) {
            const float *s = src + r * sk;
            for (int64_t p = 0; p < whole; p++) {
                float *d = dst + p * SG_PANEL_NR * k;
                memcpy(d + SG_PANEL_AT(k, r, 0), s + p * SG_PANEL_NR, SG_SLAB * sizeof(float));
                memcpy(d + SG_PANEL_AT(k, r, SG_SLAB), s + p * SG_PANEL_NR + SG_SLAB,
                       SG_SLAB * sizeof(float));
            }
            for (int64_t p = whole; p < np; p++) {
                int64_t j0 = p * SG_PANEL_NR, w = n - j0 < SG_PANEL_NR ? n - j0 : SG_PANEL_NR;
                sg_panels_pack_rows(dst + j0 * k, k, src, sk, sn, r, 1, j0, w);
            }
        }
        return;
    }
    /* A transposed operand (a panel's columns are the source's rows): tiles of 128 rows
     * of a panel (16 KB, kept in the first-level cache), each of the panel's w source
     * rows read along 128 floats in order, 8 source rows by 8 floats turned around in
     * registers (sg_panels_t8). Element by element, 16 rows of the panel at a time,
     * the LSTM benchmark's 1024 x 256 weight took about twice as long to pack. */
    for (int64_t p = 0; p < np; p++) {
        int64_t j0 = p * SG_PANEL_NR, w = n - j0 < SG_PANEL_NR ? n - j0 : SG_PANEL_NR;
        float *d = dst + j0 * k;
        for (int64_t r0 = 0; r0 < k; r0 += 128) {
            int64_t h = k - r0 < 128 ? k - r0 : 128, q = 0;
            if (h == 128)
                for (; q + 8 <= w; q += 8)
                    for (int64_t r = 0; r < 128; r += 8)
                        sg_panels_t8(d + SG_PANEL_AT(k, r0 + r, q),
                                     src + r0 + r + (j0 + q) * sn, sn);
            for (; q < w; q++) {
                const float *s = src + r0 + (j0 + q) * sn;
                for (int64_t r = 0; r < h; r++)
                    d[SG_PANEL_AT(k, r0 + r, q)] = s[r];
            }
            for (int64_t r = 0; r < h; r++)
                for (int64_t q = w; q < SG_PANEL_NR; q++)
                    d[SG_PANEL_AT(k, r0 + r, q)] = 0;
        }
    }
}

typedef struct {
    float *o;
    const float *a, *panels, *c;
    int64_t m, k, n, sa0, sa1, cs0, cs1;
    float alpha, beta;
} sg_panels_job;

/* The result's rows i0..i0+h-1 (h <= MR) and columns j0..j0+w-1 from the block's
 * accumulators `acc` (rows of SG_PANEL_NR floats): alpha * acc + beta * c, one
 * element at a time (the edges, and a c of other strides than 1 and 0). */
static inline void sg_panels_store(const sg_panels_job *g, const float *acc, int h,
                                   int64_t i0, int64_t j0, int64_t w)
{
    for (int i = 0; i < h; i++) {
        float *row = g->o + (i0 + i) * g->n + j0;
        const float *t = acc + i * SG_PANEL_NR;
        if (!g->c) {
            for (int64_t q = 0; q < w; q++)
                row[q] = g->alpha == 1 ? t[q] : g->alpha * t[q];
        } else {
            const float *cr = g->c + (i0 + i) * g->cs0 + j0 * g->cs1;
            for (int64_t q = 0; q < w; q++)
                row[q] = (g->alpha == 1 ? t[q] : g->alpha * t[q]) +
                         (g->beta == 1 ? cr[q * g->cs1] : g->beta * cr[q * g->cs1]);
        }
    }
}

/* One kernel per vector width VL (floats). A block is MR rows of the result by
 * CW = NV * VL columns of a panel (the panel's 32 columns are 32 / CW such
 * chunks): its MR * NV vectors of sums stay in registers while the loop runs
 * down k, each row of the chunk loaded once (NV vectors) and each element of
 * the left operand broadcast once. MR * NV + NV + 1 vector registers: AVX2
 * and SSE have 16 (6 x 2 blocks), AVX-512 32 (8 x 2). A block of h < MR rows
 * (the last rows) is the same code with h fixed. The sums are stored with
 * alpha and c in vectors where a whole chunk is written and c's rows have
 * stride 1 or 0, else element by element (sg_panels_store): the same
 * operations in the same order either way. */
#define SG_PANELS_KERNEL(NAME, TARGET, VL, NV, MR, FMA)                                     \
    typedef float NAME##_v __attribute__((vector_size(VL * 4)));                            \
    typedef float NAME##_u __attribute__((vector_size(VL * 4), aligned(4), may_alias));     \
    enum { NAME##_CW = NV * VL };                                                           \
    TARGET static inline __attribute__((always_inline)) void NAME##_put(                    \
        const sg_panels_job *g, NAME##_v (*acc)[NV], const int h, int64_t i0, int64_t j0,   \
        int64_t w)                                                                          \
    {                                                                                       \
        const int64_t cs1 = g->cs1;                                                         \
        if (w < NAME##_CW || (g->c && cs1 != 1 && cs1 != 0)) {                              \
            float t[MR * SG_PANEL_NR];                                                      \
            _Pragma("GCC unroll 8")                                                         \
            for (int i = 0; i < MR; i++) {                                                  \
                _Pragma("GCC unroll 8")                                                     \
                for (int v = 0; v < NV; v++)                                                \
                    if (i < h)                                                              \
                        *(NAME##_u *)(t + i * SG_PANEL_NR + v * VL) = acc[i][v];            \
            }                                                                               \
            sg_panels_store(g, t, h, i0, j0, w);                                            \
            return;                                                                         \
        }                                                                                   \
        const float alpha = g->alpha, beta = g->beta;                                       \
        _Pragma("GCC unroll 8")                                                             \
        for (int i = 0; i < MR; i++) {                                                      \
            if (i >= h)                                                                     \
                break;                                                                      \
            float *row = g->o + (i0 + i) * g->n + j0;                                       \
            const float *cr = g->c ? g->c + (i0 + i) * g->cs0 + j0 * cs1 : NULL;            \
            _Pragma("GCC unroll 8")                                                         \
            for (int v = 0; v < NV; v++) {                                                  \
                NAME##_v x = acc[i][v];                                                     \
                if (alpha != 1)                                                             \
                    x = x * alpha;                                                          \
                if (cr) {                                                                   \
                    /* a broadcast: x - 0 is x, -0 included */                            \
                    NAME##_v y = cs1 ? (NAME##_v)*(const NAME##_u *)(cr + v * VL)           \
                                     : cr[0] - (NAME##_v){0};                               \
                    if (beta != 1)                                                          \
                        y = y * beta;                                                       \
                    x = x + y;                                                              \
                }                                                                           \
                *(NAME##_u *)(row + v * VL) = x;                                            \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
    TARGET static inline __attribute__((always_inline)) void NAME##_block(                  \
        const sg_panels_job *g, const float *b, int64_t s0, int64_t i0, const int h,        \
        int64_t j0, int64_t w)                                                              \
    {                                                                                       \
        NAME##_v acc[MR][NV];                                                               \
        const float *bp[NV];                                                                \
        _Pragma("GCC unroll 8")                                                             \
        for (int v = 0; v < NV; v++)                                                        \
            bp[v] = b + v * VL + (s0 + v * VL >= SG_SLAB ? SG_SLAB * g->k - SG_SLAB : 0);   \
        _Pragma("GCC unroll 8")                                                             \
        for (int i = 0; i < MR; i++) {                                                      \
            _Pragma("GCC unroll 8")                                                         \
            for (int v = 0; v < NV; v++)                                                    \
                acc[i][v] = (NAME##_v){0};                                                  \
        }                                                                                   \
        const float *a = g->a + i0 * g->sa0;                                                \
        const int64_t sa0 = g->sa0, sa1 = g->sa1;                                           \
        for (int64_t r = 0; r < g->k; r++) {                                                \
            NAME##_v bv[NV];                                                                \
            _Pragma("GCC unroll 8")                                                         \
            for (int v = 0; v < NV; v++)                                                    \
                bv[v] = *(const NAME##_u *)(bp[v] + r * SG_SLAB);                           \
            const float *ar = a + r * sa1;                                                  \
            _Pragma("GCC unroll 8")                                                         \
            for (int i = 0; i < MR; i++) {                                                  \
                if (i < h) {                                                                \
                    float x = ar[i * sa0];                                                  \
                    _Pragma("GCC unroll 8")                                                 \
                    for (int v = 0; v < NV; v++)                                            \
                        acc[i][v] = FMA(x, bv[v], acc[i][v]);                               \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        NAME##_put(g, acc, h, i0, j0, w);                                                   \
    }                                                                                       \
    TARGET static void NAME##_panels(void *arg, int64_t p0, int64_t p1)                     \
    {                                                                                       \
        const sg_panels_job *g = (const sg_panels_job *)arg;                                \
        for (int64_t p = p0; p < p1; p++) {                                                 \
            int64_t j0 = p * SG_PANEL_NR, wp = g->n - j0 < SG_PANEL_NR ? g->n - j0 : SG_PANEL_NR; \
            for (int64_t c0 = 0; c0 < wp; c0 += NAME##_CW) {                                \
                const float *b = g->panels + j0 * g->k + SG_PANEL_AT(g->k, 0, c0);          \
                const int64_t s0 = c0 % SG_SLAB;                                            \
                int64_t w = wp - c0 < NAME##_CW ? wp - c0 : NAME##_CW, i0 = 0;              \
                for (; i0 + MR <= g->m; i0 += MR)                                           \
                    NAME##_block(g, b, s0, i0, MR, j0 + c0, w);                             \
                switch (g->m - i0) { /* the last rows: h fixed in each case */              \
                case 1: NAME##_block(g, b, s0, i0, 1, j0 + c0, w); break;                   \
                case 2: NAME##_block(g, b, s0, i0, 2, j0 + c0, w); break;                   \
                case 3: NAME##_block(g, b, s0, i0, 3, j0 + c0, w); break;                   \
                case 4: NAME##_block(g, b, s0, i0, 4, j0 + c0, w); break;                   \
                case 5: NAME##_block(g, b, s0, i0, 5, j0 + c0, w); break;                   \
                case 6: NAME##_block(g, b, s0, i0, 6, j0 + c0, w); break;                   \
                case 7: NAME##_block(g, b, s0, i0, 7, j0 + c0, w); break;                   \
                default: break;                                                             \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

#define SG_PANELS_MULADD(x, b, acc) ((acc) + (x) * (b))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define SG_PANELS_X86 1
#define SG_PANELS_FMA16(x, b, acc) _mm512_fmadd_ps(_mm512_set1_ps(x), (b), (acc))
#define SG_PANELS_FMA8(x, b, acc) _mm256_fmadd_ps(_mm256_set1_ps(x), (b), (acc))
SG_PANELS_KERNEL(sg_panels_v4, __attribute__((target("avx512f,fma"))), 16, 2, 8, SG_PANELS_FMA16)
SG_PANELS_KERNEL(sg_panels_v3, __attribute__((target("avx2,fma"))), 8, 2, 6, SG_PANELS_FMA8)
#endif
SG_PANELS_KERNEL(sg_panels_v1, , 4, 2, 6, SG_PANELS_MULADD)

void sg_panels_gemm_f32(sg_ws *ws, int nthreads, sg_arr *out, const sg_arr *a, int ta, const float *panels,
                        double alpha, const sg_arr *c, int cn, double beta)
{
    sg_panels_job g;
    g.o = (float *)out->data;
    g.m = out->shape[0], g.n = out->shape[1];
    g.k = ta ? a->shape[0] : a->shape[1];
    g.sa0 = ta ? a->strides[1] : a->strides[0];
    g.sa1 = ta ? a->strides[0] : a->strides[1];
    g.a = (const float *)a->data;
    g.panels = panels;
    g.alpha = (float)alpha, g.beta = (float)beta;
    g.c = NULL, g.cs0 = g.cs1 = 0;
    if (c) {
        int64_t st[2];
        sg_broadcast_strides(st, c, cn, out->shape, 2);
        g.c = (const float *)c->data, g.cs0 = st[0], g.cs1 = st[1];
    }
    if (g.m <= 0 || g.n <= 0)
        return;
    void (*run)(void *, int64_t, int64_t) = sg_panels_v1_panels;
#ifdef SG_PANELS_X86
    if (__builtin_cpu_supports("avx512f"))
        run = sg_panels_v4_panels;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        run = sg_panels_v3_panels;
#endif
    int64_t np = (g.n + SG_PANEL_NR - 1) / SG_PANEL_NR;
    /* threads when the product is worth waking them for (about 2 MFLOP a thread) */
    int threads = g.m * g.n * g.k >= (INT64_C(1) << 20) && nthreads > 1 ? nthreads : 1;
    if (threads > 1 && np > 1)
        ws->parallel_for(np, threads, run, &g);
    else
        run(&g, 0, np);
}
