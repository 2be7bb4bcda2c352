/* sg_abi.h: the interface between generated kernels and the symgrad runtime.
 *
 * A compiled function is a shared library exporting
 *
 *     int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err);
 *     int sg_abi_version(void);
 *
 * `in` holds the function's inputs, then shared variables, then constants, in
 * the order the Python side lists them. The kernel computes every shape at
 * run time (kernels are generic over shapes), allocates each output and
 * fills `out` (the runtime hands each output's memory to a NumPy array,
 * which releases it). Intermediates come from the workspace `ws`, an arena
 * the runtime keeps between calls and grows to `ws->need` after a call that
 * overflowed it; the kernel releases each intermediate after its last use
 * (sg_ws_free), and later ones reuse its block. Outputs come from `ws->out_alloc` (64-byte aligned; the
 * runtime recycles large blocks, so a call that returns big arrays does not
 * fault in fresh pages every time) and are released with `ws->out_free`,
 * never with free(). Large loops may share their blocks among the runtime's
 * threads through `ws->parallel_for`. An update of a shared variable may be
 * written in place over the variable's own memory when `ws->donate` allows it.
 * On failure the kernel releases what it allocated, fills `err` and returns
 * its code. A message about a node starts with "\037<n>\037", n the number of
 * the failure site; the runtime puts "<op> at <file>:<line>: " (a table the
 * code generator made) in its place, so no user path or line is compiled in
 * (ABI 5). The header is plain C99 and includes no Python.
 */
#ifndef SG_ABI_H
#define SG_ABI_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>

#define SG_ABI_VERSION 7
#define SG_MAXDIM 16

enum { SG_OK = 0, SG_ESHAPE = 1, SG_EINDEX = 2, SG_EVALUE = 3, SG_ENOMEM = 4, SG_EINTR = 5 };

typedef struct {
    void *data;
    int64_t shape[SG_MAXDIM];
    int64_t strides[SG_MAXDIM]; /* in elements, not bytes */
} sg_arr;

typedef struct {
    char *base;        /* arena of `cap` bytes, owned by the runtime */
    size_t cap;
    size_t used;       /* end of the blocks laid out, reset to 0 by the kernel on entry */
    size_t need;       /* the most `used` reached this call: the runtime grows the arena to it */
    void **extra;      /* blocks malloc'ed because the arena was too small; freed by the kernel */
    size_t n_extra;
    size_t cap_extra;
    void *(*out_alloc)(size_t n); /* memory for an output (n may be 0); NULL when out of memory */
    void (*out_free)(void *p);    /* releases an out_alloc block (NULL is a no-op) */
    /* Run fn(ctx, b, b + 1) for every block b in [0, n_blocks), on up to
     * `threads` threads of the runtime's pool (the caller's among them);
     * returns when all are done. Blocks must be independent. */
    void (*parallel_for)(int64_t n_blocks, int threads,
                         void (*fn)(void *ctx, int64_t begin, int64_t end), void *ctx);
    /* One flag per input: nonzero when the caller gives that input's memory
     * away for this call (a shared variable's value that nothing else
     * references, C-contiguous, aligned, writeable). The kernel may then write
     * an update of that variable over it and hand back out[i].data equal to
     * in[k].data, which the caller recognises; it must do so only after its
     * last step that can fail, so a failed call leaves every input unchanged. */
    const uint8_t *donate;
    /* The arena's block table (sg_kernel.c): which blocks are in use, which
     * are free for reuse. Made and grown by the kernel with realloc, kept
     * between calls, freed by the runtime (ABI 6). */
    void *blocks;
    /* Nonzero once the user interrupts the call (Ctrl-C, SIGINT, while Python's own handler
     * is in place): a loop stops at its next step with SG_EINTR, through the same failure
     * path as any error, so the call changes nothing (ABI 7). Never NULL. */
    volatile sig_atomic_t *interrupt;
} sg_ws;

typedef struct {
    int code;
    char msg[1024];
} sg_err;

#endif
