/* sg_conv.h: 2-d convolution (NCHW data, OIHW weights, as PyTorch) and its two
 * gradients, through im2col and BLAS gemm (sg_conv.c has the bodies).
 *
 * `p` holds the op's nine parameters: stride (h, w), padding (top, bottom,
 * left, right), dilation (h, w) and groups. Shapes are int64 arrays of 4.
 */
#ifndef SG_CONV_H
#define SG_CONV_H

#include "sg_abi.h"

int sg_conv2d_shape(sg_err *err, const char *where, const int64_t *xs, const int64_t *wsh,
                    const int *p, int64_t *os);
int sg_conv2d_check(sg_err *err, const char *where, const int64_t *xs, const int64_t *wsh,
                    const int *p, const int64_t *gs);

#define SG_DECLARE_CONV(SUF)                                                                \
    int sg_conv2d_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,       \
                        const sg_arr *x, const sg_arr *w, const int *p);                    \
    int sg_conv2d_grad_input_##SUF(sg_err *err, const char *where, sg_ws *ws,               \
                                   const sg_arr *gx, const sg_arr *g, const sg_arr *w,      \
                                   const int *p);                                           \
    int sg_conv2d_grad_weight_##SUF(sg_err *err, const char *where, sg_ws *ws,              \
                                    const sg_arr *gw, const sg_arr *x, const sg_arr *g,     \
                                    const int *p);
SG_DECLARE_CONV(f32)
SG_DECLARE_CONV(f64)

#endif
