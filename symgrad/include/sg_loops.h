/* sg_loops.h: the iteration scheme of fused elementwise loops, and threads.
 *
 * A fused group writes a fresh C-contiguous result and reads any number of
 * operands through broadcast strides. Before looping, sg_collapse merges the
 * adjacent axes over which every operand steps uniformly, so contiguous
 * operands of one shape become a single flat axis and a bias added to a
 * matrix keeps a long unit-stride inner axis. The elements are then walked in
 * blocks of SG_BLOCK (the unit of work a thread takes); within a block, rows
 * of the innermost axis run as simple loops the compiler vectorises.
 *
 * Threads: when a loop's work -- elements times its work units per element,
 * counted by the code generator (a load, a store or an add is 1, a tanh 8) --
 * reaches SG_PAR_WORK, about 80 us on one core, its blocks go to the
 * runtime's thread pool (ws->parallel_for), on
 * sg_nthreads threads (set by the runtime from SYMGRAD_NUM_THREADS through
 * the kernel's exported sg_set_num_threads). The pool's workers watch for the
 * next job for a millisecond, then sleep (sg_runtime.c); BLAS runs on one thread.
 */
#ifndef SG_LOOPS_H
#define SG_LOOPS_H

#include <stdint.h>

#include "sg_abi.h"

#define SG_BLOCK 16384
#define SG_PAR_WORK (INT64_C(1) << 21)
/* The same inside a loop's step (sg.scan): there the pool's workers are watching
 * (the step's products ran on them a few microseconds before, and every step is
 * one more job), so a share of a few microseconds repays handing it over. */
#define SG_PAR_WORK_STEP (INT64_C(1) << 16)

static int sg_nthreads = 1;

/* Merge axes of `shape` (ndim `nd`) for `nops` operands whose strides are
 * rows of `st`; drop axes of length 1. Returns the new ndim (at least 1).
 * These two are inline for the units that never call them, as a kernel's glue:
 * gcc at -O0 compiles every plain static function it reads, used or not (some
 * 15 ms a unit), and no inline one it does not call. */
static inline int sg_collapse(int nd, int64_t *shape, int nops, int64_t (*st)[SG_MAXDIM])
{
    int j = 0;
    for (int k = 0; k < nd; k++) {
        if (shape[k] == 1)
            continue;
        int merge = j > 0;
        for (int p = 0; p < nops && merge; p++)
            merge = st[p][j - 1] == st[p][k] * shape[k];
        if (merge) {
            shape[j - 1] *= shape[k];
            for (int p = 0; p < nops; p++)
                st[p][j - 1] = st[p][k];
        } else {
            shape[j] = shape[k];
            for (int p = 0; p < nops; p++)
                st[p][j] = st[p][k];
            j++;
        }
    }
    if (j == 0) {
        shape[0] = 1;
        for (int p = 0; p < nops; p++)
            st[p][0] = 0;
        j = 1;
    }
    return j;
}

/* The element offset, for each operand, of the first element of row `row`
 * (a row being one run of the innermost axis), in a layout of ndim `nd`. */
static inline void sg_row_offsets(int64_t row, int nd, const int64_t *shape, int nops,
                                  int64_t (*st)[SG_MAXDIM], int64_t *off)
{
    for (int p = 0; p < nops; p++)
        off[p] = 0;
    for (int k = nd - 2; k >= 0 && row; k--) {
        int64_t i = row % shape[k];
        row /= shape[k];
        for (int p = 0; p < nops; p++)
            off[p] += i * st[p][k];
    }
}

#endif
