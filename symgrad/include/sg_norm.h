/* sg_norm.h: batch and layer normalisation and their gradients (sg_norm.c).
 *
 * Batch norm (training) normalises each channel (axis 1) of an (N, C, ...)
 * array by the mean and variance over every other axis; layer norm each row
 * by those of its last `k` axes. Statistics are summed in double, in two
 * passes (the mean, then the squared deviations from it), so float32 inputs
 * far from zero keep their precision.
 */
#ifndef SG_NORM_H
#define SG_NORM_H

#include "sg_abi.h"

#define SG_DECLARE_NORM(SUF)                                                                 \
    int sg_batch_norm_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,    \
                            const sg_arr *mean, const sg_arr *var, const sg_arr *x, int nd,  \
                            const sg_arr *w, const sg_arr *b, double eps);                   \
    int sg_batch_norm_grad_##SUF(sg_err *err, const char *where, sg_ws *ws,                  \
                                 const sg_arr *gx, const sg_arr *gw, const sg_arr *gb,       \
                                 const sg_arr *g, const sg_arr *x, int nd, const sg_arr *w,  \
                                 const sg_arr *mean, const sg_arr *var, double eps);         \
    int sg_layer_norm_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out,    \
                            const sg_arr *mean, const sg_arr *rstd, const sg_arr *x, int nd, \
                            int k, const sg_arr *w, const sg_arr *b, double eps);            \
    int sg_layer_norm_grad_##SUF(sg_err *err, const char *where, sg_ws *ws,                  \
                                 const sg_arr *gx, const sg_arr *gw, const sg_arr *gb,       \
                                 const sg_arr *g, const sg_arr *x, int nd, int k,            \
                                 const sg_arr *w, const sg_arr *mean, const sg_arr *rstd);
SG_DECLARE_NORM(f32)
SG_DECLARE_NORM(f64)

/* The same batch norm over the global batch of a data-parallel train step: the sums go
 * through the allreduce hook the step installs (sg_norm.c, symgrad/distributed.py). */
#define SG_DECLARE_SYNC_NORM(SUF)                                                            \
    int sg_batch_norm_sync_##SUF(sg_err *err, const char *where, sg_ws *ws, const sg_arr *out, \
                                 const sg_arr *mean, const sg_arr *var, const sg_arr *x,     \
                                 int nd, const sg_arr *w, const sg_arr *b, double eps);      \
    int sg_batch_norm_grad_sync_##SUF(sg_err *err, const char *where, sg_ws *ws,             \
                                      const sg_arr *gx, const sg_arr *gw, const sg_arr *gb,  \
                                      const sg_arr *g, const sg_arr *x, int nd,              \
                                      const sg_arr *w, const sg_arr *mean, const sg_arr *var, \
                                      double eps);
SG_DECLARE_SYNC_NORM(f32)
SG_DECLARE_SYNC_NORM(f64)
void sg_norm_set_allreduce(int (*hook)(double *buf, int64_t n, char *msg, int64_t cap));

#endif
