/* sg_drivers.h: the parts of a kernel every fused loop shares.
 *
 * The code generator (codegen/render_c.py) writes, per fused loop, only what
 * is its own: a row function evaluating the loop's scalar expressions along
 * one run of the innermost axis. Broadcasting, collapsing axes (sg_loops.h),
 * blocks and threads are the drivers' declared below, compiled once into the
 * support library (sg_drivers.c). Kernels include this header after
 * sg_kernel.h.
 */
#ifndef SG_DRIVERS_H
#define SG_DRIVERS_H

#include "sg_kernel.h"
#include "sg_loops.h"

/* One row of an elementwise loop: `n` elements; p[0] is the result, of
 * element stride s[0] along the row (1, but where sg_ew_loop runs rows along
 * the axis before a short innermost one), p[1 + q] loaded operand q, whose
 * element stride along the row is s[1 + q]. `aux` holds the loop's hoisted scalars. Returns nonzero when an
 * element is a value error (an integer to a negative integer power). */
typedef int (*sg_row_fn)(int64_t n, void *const *p, const int64_t *s, const void *aux);
/* One row of an accumulating loop: the values of its `n` elements (operand
 * q at p[q], element stride s[q]) added into the double accumulators `o`,
 * of stride `so` along the row (0: all into o[0], a horizontal sum).
 * Returns nonzero when an element is a value error. */
typedef int (*sg_acc_fn)(int64_t n, void *const *p, const int64_t *s, const void *aux,
                         double *o, int64_t so);

/* An elementwise loop writing the C-contiguous `out` of shape `shape` (ndim
 * nd, already allocated) from the m operands `ops` (descriptors of ndim
 * nds[q], elements of item[q] bytes), broadcast to `shape`, on `threads`
 * threads (the kernel passes 1 for loops too short to repay waking the
 * pool: sg_loops.h's SG_PAR_WORK). Sets *bad when an element is a value
 * error. */
void sg_ew_loop(sg_ws *ws, int threads, int nd, const int64_t *shape, void *out,
                size_t out_item, int m, const sg_arr *const *ops, const int *nds,
                const size_t *item, sg_row_fn row, const void *aux, int *bad);
/* The same into a result `out` of element strides `ost` (a slice of a larger array:
 * a part of a concatenation made in its place, codegen/render_c.py). */
void sg_ew_loop_to(sg_ws *ws, int threads, int nd, const int64_t *shape, void *out,
                   const int64_t *ost, size_t out_item, int m, const sg_arr *const *ops,
                   const int *nds, const size_t *item, sg_row_fn row, const void *aux,
                   int *bad);

/* Flags of sg_ew_loop's element sizes. SG_EW_DENSE in `out_item`: the row function
 * computes rows whose result and loaded operands all have stride 1 (it ignores s[0]
 * and s[1 + q]), so it is one loop the compiler vectorises and no strided copy of it;
 * the driver runs any other row through blocks (a few hundred elements) of
 * copies: a strided operand's elements, a broadcast one's value repeated, the result
 * written back after the call. Every element's value is the same either way. The
 * generated kernels pass it (codegen/render_c.py): a row function of one variant
 * compiles in about half the time of a unit-stride and a strided one.
 * SG_EW_INDEX in `item[q]` (with 8): operand q is a random draw's index carrier
 * (sg_random.h's SG_RAND_BASE), which has no memory: never copied, its pointer and
 * stride passed as they are. */
#define SG_EW_DENSE ((size_t)1 << 60)
#define SG_EW_INDEX ((size_t)1 << 61)

/* One row of `n` elements through the dense row function `row`, whatever the strides
 * `s` (as sg_row_fn's; `m` loaded operands of item[q]-byte elements, the result's of
 * `out_item`): called as it is when they are all 1, else through blocks of copies, as
 * sg_ew_loop does. For callers that run a fused loop's row function themselves (the
 * convolutions' epilogues, sg_conv.c). Returns the row function's flag. */
int sg_ew_row(sg_row_fn row, const void *aux, int64_t n, void *const *p, const int64_t *s,
              int m, size_t out_item, const size_t *item);

/* An accumulating loop over the broadcast shape `xs` (ndim nd) of its value,
 * computed from the m operands `ops`: each of its n elements is added into
 * acc[its offset under the strides `ost`] (0 along the axes summed away). */
void sg_acc_loop(int nd, const int64_t *xs, int64_t n, double *acc, const int64_t *ost,
                 int m, const sg_arr *const *ops, const int *nds, const size_t *item,
                 sg_acc_fn row, const void *aux, int *bad);

/* An accumulation's result (sum, mean or sum_to) from its value's broadcast
 * shape: allocates `out`, accumulates in double through sg_acc_loop, rounds
 * once (see sg_drivers.c). */
int sg_acc_run(sg_err *err, const char *where, sg_ws *ws, int kind, int nd,
               const int64_t *xs, const int *reduced, int keepdims, const int64_t *target,
               int on, sg_arr *out, size_t item, void **own, int m,
               const sg_arr *const *ops, const int *nds, const size_t *items,
               sg_acc_fn row, const void *aux, int *bad);

/* Updates written over their variable's memory: clear don[q] when one of the
 * nr values the updates read overlaps the memory W[q] of update q's variable. */
void sg_drop_overlapping(int nr, const sg_arr *const *r, const int *rn, const size_t *ri,
                         int nw, const sg_arr *const *w, const int *wn, const size_t *wi,
                         int *don);

/* A kernel is several translation units compiled in parallel (see
 * codegen/render_c.py): the row functions, at the command line's level, and the
 * glue -- sg_main and the functions holding the steps, which only check, allocate
 * and call -- at -O0. Functions one unit defines and another calls are hidden:
 * the library exports only sg_main and its companions. */
#define SG_ROW __attribute__((visibility("hidden")))
#define SG_STEP __attribute__((visibility("hidden")))
/* A small kernel is one unit compiled at the command line's level: its glue asks
 * for -O0 itself, redefining SG_STEP as SG_STEP_O0 after the headers (noinline: it
 * stays out of the row functions' callers). A macro the headers only define, not
 * one they test: their precompiled form (sg_prelude.h) serves both kinds of unit. */
#if defined(__GNUC__) && !defined(__clang__)
#define SG_STEP_O0 __attribute__((visibility("hidden"), noinline, optimize("O0")))
#else
#define SG_STEP_O0 __attribute__((visibility("hidden")))
#endif
/* The row function of a loop with one element (a 0-d result, such as the 1/n of a
 * mean's gradient), in any unit: at -O0 as well, since its loop runs once. gcc spends
 * about as much on optimising and vectorising each row function as on reading the
 * headers (some 25 M instructions at -O2, against 8 M at -O0); the value is the same,
 * every operation being IEEE's with no contraction at either level. */
#define SG_ROW_SCALAR SG_STEP_O0
/* The functions a kernel exports (sg_main, sg_abi_version, ...) are glue as well: a glue
 * unit compiles them at -O0; a small kernel's one unit asks for it (SG_MAIN_O0, as for
 * SG_STEP): at -O2 gcc spent some 20 M instructions on them, 5 ms a kernel. */
#define SG_MAIN
#if defined(__GNUC__) && !defined(__clang__)
#define SG_MAIN_O0 __attribute__((optimize("O0")))
#else
#define SG_MAIN_O0
#endif

#endif
