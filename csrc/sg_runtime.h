/* sg_runtime.h: the runtime's plain-C half (no Python): loading a kernel
 * library and a thread-safe pool of per-call scratch (workspace, argument
 * descriptors, error record).
 *
 * The Cython bridge (symgrad/_runtime.pyx) does everything that touches
 * Python or NumPy; what is here could serve any host language.
 */
#ifndef SG_RUNTIME_H
#define SG_RUNTIME_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "sg_abi.h"

typedef int (*sg_main_fn)(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err);

/* Everything one call needs besides the arrays themselves. A slot belongs to
 * one caller at a time, so a call touches no shared state between take and give. */
typedef struct sg_slot {
    struct sg_slot *next; /* free-list link while the slot is in the pool */
    sg_ws ws;
    sg_err err;
    sg_arr *in;           /* n_in descriptors, inside `arrs` */
    sg_arr *out;          /* n_out descriptors, inside `arrs` */
    uint8_t *donate;      /* n_in flags after the descriptors (ws.donate); 0 between calls */
    sg_arr arrs[];
} sg_slot;

typedef struct {
    pthread_mutex_t lock;
    sg_slot *free;        /* slots not in use */
    size_t n_in, n_out;
    size_t n_slots;       /* slots ever made (at most the peak number of concurrent calls) */
    size_t hint;          /* largest arena any call asked for: a new slot starts at this size */
} sg_pool;

void *sg_out_alloc(size_t n);
void sg_out_free(void *p);
/* The next sg_out_alloc(n) on this thread returns `p` (caller-owned, 64-byte aligned, with
 * 64 writable bytes before it for the header); sg_out_free(p) does nothing. NULL: none. */
void sg_out_place(void *p, size_t n);
size_t sg_out_cached(void);
void sg_out_trim(void);
void sg_parallel_for(int64_t n_blocks, int threads,
                     void (*fn)(void *ctx, int64_t begin, int64_t end), void *ctx);

int sg_pool_init(sg_pool *p, size_t n_in, size_t n_out);
/* Ctrl-C during a call (sg_runtime.c): the SIGINT handler that raises sg_ws.interrupt. */
int sg_interrupt_arm(void);
int sg_interrupt_armed(void);
int sg_lib_interruptible(void *h);
void sg_interrupt_clear(void);
sg_slot *sg_pool_take(sg_pool *p);
void sg_pool_give(sg_pool *p, sg_slot *s);
void sg_pool_destroy(sg_pool *p);
size_t sg_pool_arenas(sg_pool *p, size_t *caps, size_t max);

void *sg_lib_open(const char *path, sg_main_fn *fn, char *msg, size_t msg_len);
void sg_lib_close(void *h);
int sg_lib_set_threads(void *h, int loops, int blas);
double *sg_lib_profile(void *h, int *n);

#endif
