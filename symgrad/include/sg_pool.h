/* sg_pool.h: 2-d max and average pooling (NCHW) and their gradients (sg_pool.c).
 *
 * `p` holds the op's parameters: kernel (h, w), stride (h, w), padding (h, w),
 * dilation (h, w), ceil_mode, count_include_pad, and for adaptive pooling
 * (p[10] = 1) the output's height and width in p[11], p[12].
 */
#ifndef SG_POOL_H
#define SG_POOL_H

#include "sg_abi.h"
#include "sg_conv.h" /* sg_conv_epi: an epilogue */

int sg_pool2d_shape(sg_err *err, const char *where, const int64_t *xs, const int *p,
                    int64_t *os);
int sg_pool2d_check(sg_err *err, const char *where, const int64_t *xs, const int *p,
                    const int64_t *gs);
int sg_pool2d_indices_check(sg_err *err, const char *where, const sg_arr *g, const sg_arr *idx,
                            const int64_t *xs);

/* Each shares its planes among the runtime's threads (`ws`, sg_run_units). */
#define SG_DECLARE_POOL(SUF)                                                                \
    void sg_max_pool2d_##SUF(sg_ws *ws, const sg_arr *out, const sg_arr *idx,               \
                             const sg_arr *x, const int *p);                                \
    /* with an epilogue (sg_conv.h) applied to each plane of the maxima as it is made */    \
    void sg_max_pool2d_epi_##SUF(sg_ws *ws, const sg_arr *out, const sg_arr *idx,           \
                                 const sg_arr *x, const int *p, const sg_conv_epi *epi);    \
    void sg_max_pool2d_grad_##SUF(sg_ws *ws, const sg_arr *gx, const sg_arr *g,             \
                                  const sg_arr *idx);                                       \
    void sg_max_pool2d_select_##SUF(sg_ws *ws, const sg_arr *out, const sg_arr *h,          \
                                    const sg_arr *idx);                                     \
    void sg_avg_pool2d_##SUF(sg_ws *ws, const sg_arr *out, const sg_arr *x, const int *p);  \
    void sg_avg_pool2d_grad_##SUF(sg_ws *ws, const sg_arr *gx, const sg_arr *g,             \
                                  const int *p);
SG_DECLARE_POOL(f32)
SG_DECLARE_POOL(f64)

#endif
