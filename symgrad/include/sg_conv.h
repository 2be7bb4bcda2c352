/* sg_conv.h: 2-d convolution (NCHW data, OIHW weights, as PyTorch) and its two
 * gradients, through im2col and BLAS gemm (sg_conv.c has the bodies).
 *
 * `p` holds the op's ten parameters: stride (h, w), padding (top, bottom,
 * left, right), dilation (h, w), groups, and 1 for a conv1d (a height of 1,
 * left out of the shapes its errors print) else 2. Shapes are int64 arrays of 4.
 */
#ifndef SG_CONV_H
#define SG_CONV_H

#include "sg_abi.h"

/* An elementwise epilogue (codegen/lower.py): the fused loop that reads the
 * convolution's output, applied to each channel plane of each image as the
 * convolution stores it, so its output is never written and read back. `row`
 * is the loop's row function (sg_drivers.h's sg_row_fn), `aux` its hoisted
 * scalars; `ops` its m loaded operands (descriptors of ndim nds[q], elements
 * of items[q] bytes), of which operand `self` is the convolution's output
 * (ops[self] is not read); the result has ndim `nd`, and axes[a] is its axis
 * for the convolution's axis a (-1: none, an axis of length 1 dropped: conv1d).
 * The result has the convolution's shape; it is written in place of the
 * convolution's output. */
#define SG_CONV_EPI_OPS 16
typedef struct {
    int (*row)(int64_t n, void *const *p, const int64_t *s, const void *aux);
    const void *aux;
    int m, self;
    const sg_arr *const *ops;
    const int *nds;
    const size_t *items;
    int nd;
    const int *axes;
} sg_conv_epi;

/* An epilogue ready to run (sg_conv.c; pooling's too, sg_pool.c): each operand's strides,
 * in elements, along the producer's four axes (0 where it is broadcast). */
typedef struct {
    const sg_conv_epi *e;
    int64_t st[SG_CONV_EPI_OPS][4];
} sg_conv_epi_plan;
void sg_epi_plan(sg_conv_epi_plan *ep, const sg_conv_epi *e, const sg_arr *out);
/* The epilogue over rows [r0, r1) of plane (n, c), rows of OW elements: dst (contiguous
 * rows) from src (contiguous; dst itself in place), elements of `item` bytes. */
void sg_epi_rows(const sg_conv_epi_plan *ep, int64_t OW, int64_t n, int64_t c, int64_t r0,
                 int64_t r1, char *dst, const char *src, size_t item);

int sg_conv2d_shape(sg_err *err, const char *where, const int64_t *xs, const int64_t *wsh,
                    const int *p, int64_t *os);
int sg_conv2d_check(sg_err *err, const char *where, const int64_t *xs, const int64_t *wsh,
                    const int *p, const int64_t *gs);

#define SG_DECLARE_CONV(SUF)                                                                \
    int sg_conv2d_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,       \
                        const sg_arr *x, const sg_arr *w, const int *p);                    \
    /* out: the epilogue's result (C-contiguous, ndim epi->nd); os: the convolution's */    \
    /* output shape */                                                                      \
    int sg_conv2d_epi_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,   \
                            const int64_t *os, const sg_arr *x, const sg_arr *w,            \
                            const int *p, const sg_conv_epi *epi);                          \
    int sg_conv2d_grad_input_##SUF(sg_err *err, const char *where, sg_ws *ws,               \
                                   const sg_arr *gx, const sg_arr *g, const sg_arr *w,      \
                                   const int *p);                                           \
    int sg_conv2d_grad_weight_##SUF(sg_err *err, const char *where, sg_ws *ws,              \
                                    const sg_arr *gw, const sg_arr *x, const sg_arr *g,     \
                                    const int *p);
SG_DECLARE_CONV(f32)
SG_DECLARE_CONV(f64)

#endif
