/* sg_panels.h: a float32 matrix product whose right operand is packed once.
 *
 * Inside a loop (sg.scan), a recurrent product h @ Wh runs once per step with
 * the same weight. BLAS packs both operands into its own layout at every call:
 * for a 32 x 256 by 256 x 1024 product that re-packing of the 1 MiB weight is
 * about a third of the call. A kernel packs such a loop-invariant weight once,
 * before the loop, with sg_panels_pack_f32 (any strides: a transposed view
 * packs as well), and each step calls sg_panels_gemm_f32, whose micro-kernel
 * reads the panels as they are. Only the final product changes: the shapes are
 * checked, and the result allocated, as for BLAS.
 */
#ifndef SG_PANELS_H
#define SG_PANELS_H

#include "sg_abi.h"

/* Floats a packed k x n operand takes (its panels padded with zeros). */
int64_t sg_panels_size(int64_t k, int64_t n);
/* Pack the 2-d `b` (k x n, any strides) into `dst` (sg_panels_size floats). */
void sg_panels_pack_f32(float *dst, const sg_arr *b);
/* out = alpha * op(a) @ B + beta * c, B packed from a k x n operand by
 * sg_panels_pack_f32, `out` (m x n, C-contiguous) allocated; c (ndim cn <= 2,
 * broadcast to out; NULL: none) may be out itself; on up to `nthreads` threads of
 * ws's pool. Cannot fail. */
void sg_panels_gemm_f32(sg_ws *ws, int nthreads, sg_arr *out, const sg_arr *a, int ta,
                        const float *panels, double alpha, const sg_arr *c, int cn, double beta);

#endif
