/* sg_runtime.c: kernel loading and the workspace pool (see sg_runtime.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dlinfo, RTLD_DI_LINKMAP: which libraries a kernel brought in */
#endif
#include "sg_runtime.h"

#include <dlfcn.h>
#if defined(__linux__)
#include <link.h>
#include <sys/mman.h>
#endif
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A cache line: kernels may use aligned vector loads on arena blocks. */
#define SG_ARENA_ALIGN 64

/* Large blocks in transparent huge pages where the kernel offers them on request
 * (/sys/kernel/mm/transparent_hugepage/enabled = madvise, a common default): a
 * block's first touch then faults in 2 MB at a time, not 4 KB. A kernel that
 * returns hundreds of MB every call (sg.jacobian's per-example gradients) spent
 * most of its time in those faults, and more on two threads than on one, as
 * both fault into the same address space. NumPy does the same for its arrays of
 * 4 MB or more. Only the page-aligned interior is advised; a failure (no THP,
 * another system) changes nothing. */
#define SG_HUGE_MIN ((size_t)4 << 20)

static void advise_huge(void *p, size_t n)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (n < SG_HUGE_MIN)
        return;
    uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
    uintptr_t hi = ((uintptr_t)p + n) & ~(uintptr_t)4095;
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

/* Replace the arena by one of at least `need` bytes. The old contents are
 * dead between calls, so nothing is copied. On failure the arena is left
 * empty: the kernel then mallocs every block into `extra`, slower but correct. */
static void arena_grow(sg_ws *ws, size_t need)
{
    size_t cap = (need + SG_ARENA_ALIGN - 1) & ~(size_t)(SG_ARENA_ALIGN - 1);
    void *base = NULL;
    free(ws->base);
    if (cap < need || posix_memalign(&base, SG_ARENA_ALIGN, cap) != 0) {
        base = NULL;
        cap = 0;
    }
    advise_huge(base, cap);
    ws->base = (char *)base;
    ws->cap = cap;
}

/* ---- output blocks ----
 *
 * Every output block carries a 64-byte header holding its capacity. Blocks of
 * SG_RECYCLE_MIN bytes or more go, when released, to a small process-wide
 * cache instead of back to the system: a kernel returning a 40 MB array on
 * every call would otherwise have that memory unmapped by free() and faulted
 * in again, page by page, on the next call -- slower than the computation.
 * Smaller blocks are left to malloc, whose bins already reuse them. */

#define SG_HDR 64
#define SG_RECYCLE_MIN ((size_t)256 << 10)
#define SG_RECYCLE_SLOTS 32
#define SG_RECYCLE_BYTES ((size_t)256 << 20)

static pthread_mutex_t recycle_lock = PTHREAD_MUTEX_INITIALIZER;
static char *recycled[SG_RECYCLE_SLOTS]; /* oldest first */
static int n_recycled;
static size_t recycled_bytes;

static size_t block_cap(const char *base) { return *(const size_t *)base; }

/* A block its caller placed (sg_out_place): memory the caller owns, which the
 * next sg_out_alloc of exactly its size on the same thread returns instead of
 * a block of its own, and which sg_out_free leaves alone (its header reads
 * SG_PLACED). Data-parallel steps place the shared-memory slot the ranks
 * exchange their gradients through, so the kernel writes them there at once
 * (symgrad/distributed.py, NodeSum). */
#define SG_PLACED SIZE_MAX
static __thread char *placed;
static __thread size_t placed_n;

void sg_out_place(void *p, size_t n)
{
    placed = (char *)p;
    placed_n = n;
    if (p)
        *(size_t *)((char *)p - SG_HDR) = SG_PLACED;
}

static void drop_recycled(int i)
{
    recycled_bytes -= block_cap(recycled[i]);
    free(recycled[i]);
    for (int j = i + 1; j < n_recycled; j++)
        recycled[j - 1] = recycled[j];
    n_recycled--;
}

void *sg_out_alloc(size_t n)
{
    size_t cap = n ? n : 1;
    char *base = NULL;
    if (placed && n == placed_n) {
        char *p = placed;
        placed = NULL;
        return p;
    }
    if (cap >= SG_RECYCLE_MIN) {
        /* the smallest cached block that fits without wasting more than a quarter */
        int best = -1;
        pthread_mutex_lock(&recycle_lock);
        for (int i = 0; i < n_recycled; i++) {
            size_t c = block_cap(recycled[i]);
            if (c >= cap && c - cap <= cap / 4 && (best < 0 || c < block_cap(recycled[best])))
                best = i;
        }
        if (best >= 0) {
            base = recycled[best];
            recycled_bytes -= block_cap(base);
            for (int j = best + 1; j < n_recycled; j++)
                recycled[j - 1] = recycled[j];
            n_recycled--;
        }
        pthread_mutex_unlock(&recycle_lock);
        if (base)
            return base + SG_HDR;
        cap = (cap + 4095) & ~(size_t)4095;
    }
    if (cap > SIZE_MAX - SG_HDR)
        return NULL;
    if (posix_memalign((void **)&base, SG_HDR, cap + SG_HDR) != 0)
        return NULL;
    advise_huge(base, cap + SG_HDR);
    *(size_t *)base = cap;
    return base + SG_HDR;
}

void sg_out_free(void *p)
{
    if (!p)
        return;
    char *base = (char *)p - SG_HDR;
    size_t cap = block_cap(base);
    if (cap == SG_PLACED)
        return;
    if (cap >= SG_RECYCLE_MIN && cap <= SG_RECYCLE_BYTES) {
        pthread_mutex_lock(&recycle_lock);
        while (n_recycled && (n_recycled == SG_RECYCLE_SLOTS
                              || recycled_bytes + cap > SG_RECYCLE_BYTES))
            drop_recycled(0);
        recycled[n_recycled++] = base;
        recycled_bytes += cap;
        pthread_mutex_unlock(&recycle_lock);
        return;
    }
    free(base);
}

size_t sg_out_cached(void)
{
    pthread_mutex_lock(&recycle_lock);
    size_t n = recycled_bytes;
    pthread_mutex_unlock(&recycle_lock);
    return n;
}

void sg_out_trim(void)
{
    pthread_mutex_lock(&recycle_lock);
    while (n_recycled)
        drop_recycled(n_recycled - 1);
    pthread_mutex_unlock(&recycle_lock);
}

/* ---- the thread pool of parallel loops and products ----
 *
 * After a job a worker watches for the next one for SG_POOL_SPIN_NS before it
 * sleeps on a condition variable. A loop's step (sg.scan) hands the pool a
 * product of a few hundred microseconds every step, a little later each time:
 * woken from its sleep, a worker took about as long to start as the product
 * takes (the LSTM benchmark's step, bench_lstm.py, on 2 threads: 38 ms
 * watching, 56 ms sleeping, 53 ms on one thread; a 2-core virtual machine,
 * whose idle cores halt). BLAS runs on one thread (sg_ops.c), so no BLAS
 * thread waits for these cores. Workers only watch when the pool's threads
 * fit on the cores the process may use: on fewer cores, a watching worker
 * would hold the core the caller needs. One job runs at a time; a caller finding
 * the pool busy (another thread's kernel) runs its blocks alone. Workers are
 * made on first need, and forgotten in a forked child (they do not exist there).
 *
 * Blocks are claimed one at a time from `claim`, which holds the job's tag
 * (its number, low 32 bits) above the next block's index; a claim is a
 * compare-and-swap that fails once the tag has changed. So the caller takes
 * blocks too and returns as soon as every block is done (`done` == n): it
 * never waits for a worker that woke too late to get one. That matters right
 * after a BLAS call, when BLAS's own threads still hold the other cores and a
 * woken worker may not run for a while: waiting for it to check in and out
 * made a 5 us loop take 25 us. A worker running behind takes nothing from a
 * later job (the tag differs) and goes back to sleep. */

typedef void (*sg_task_fn)(void *ctx, int64_t begin, int64_t end);

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int n_workers;           /* started */
    int busy;                /* a job is in progress */
    unsigned long job;       /* job number, bumped to wake the workers */
    int want;                /* workers the job may still take */
    sg_task_fn fn;
    void *ctx;
    int64_t n;
    uint64_t claim;          /* (job tag << 32) | next block, claimed by compare-and-swap */
    int64_t done;            /* blocks of the current job finished */
} tp = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* Run blocks of job `tag` until none is left to claim. */
static void run_blocks(uint64_t tag, sg_task_fn fn, void *ctx, int64_t n)
{
    uint64_t c = __atomic_load_n(&tp.claim, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((c >> 32) != tag || (int64_t)(c & 0xffffffffu) >= n)
            return;
        if (!__atomic_compare_exchange_n(&tp.claim, &c, c + 1, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue; /* c now holds the current value */
        int64_t b = (int64_t)(c & 0xffffffffu);
        fn(ctx, b, b + 1);
        __atomic_add_fetch(&tp.done, 1, __ATOMIC_RELEASE);
        c = __atomic_load_n(&tp.claim, __ATOMIC_ACQUIRE);
    }
}

/* How long a worker watches for the next job (a few steps of a loop). */
#define SG_POOL_SPIN_NS 1000000

static int tp_spin; /* workers watch between jobs (the pool fits the cores) */

static int64_t tp_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Watch, without the lock, for a job after `seen`, for SG_POOL_SPIN_NS. Every 64
 * pauses it yields the core, to whatever else is ready to run there (other processes
 * on a busy machine, more MPI ranks than cores). */
static void tp_watch(unsigned long seen)
{
    int64_t end = tp_now_ns() + SG_POOL_SPIN_NS;
    for (unsigned i = 1; __atomic_load_n(&tp.job, __ATOMIC_ACQUIRE) == seen; i++) {
        cpu_relax();
        if (i % 64 == 0) {
            if (tp_now_ns() > end)
                return;
            sched_yield();
        }
    }
}

static void *tp_worker(void *arg)
{
    (void)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&tp.lock);
    for (;;) {
        if (tp.job == seen && __atomic_load_n(&tp_spin, __ATOMIC_RELAXED)) {
            pthread_mutex_unlock(&tp.lock);
            tp_watch(seen);
            pthread_mutex_lock(&tp.lock);
        }
        if (tp.job == seen) {
            pthread_cond_wait(&tp.wake, &tp.lock);
            continue;
        }
        if (tp.want == 0) { /* a job this worker is not wanted for, or came too late to */
            seen = tp.job;
            continue;
        }
        seen = tp.job;
        tp.want--;
        uint64_t tag = tp.job & 0xffffffffu;
        sg_task_fn fn = tp.fn;
        void *ctx = tp.ctx;
        int64_t n = tp.n;
        pthread_mutex_unlock(&tp.lock);
        run_blocks(tag, fn, ctx, n);
        pthread_mutex_lock(&tp.lock);
    }
    return NULL;
}

static void tp_forget_in_child(void)
{
    pthread_mutex_init(&tp.lock, NULL);
    pthread_cond_init(&tp.wake, NULL);
    tp.n_workers = tp.busy = tp.want = 0;
}

static void tp_at_fork(void)
{
    pthread_atfork(NULL, NULL, tp_forget_in_child);
}

void sg_parallel_for(int64_t n_blocks, int threads, sg_task_fn fn, void *ctx)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    /* More blocks than the claim word's 32 bits hold: 7e13 elements; run alone. */
    if (threads <= 1 || n_blocks <= 1 || n_blocks > (int64_t)0x7fffffff) {
        fn(ctx, 0, n_blocks);
        return;
    }
    pthread_once(&once, tp_at_fork);
    pthread_mutex_lock(&tp.lock);
    if (tp.busy) {
        pthread_mutex_unlock(&tp.lock);
        fn(ctx, 0, n_blocks);
        return;
    }
    while (tp.n_workers < threads - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, tp_worker, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break; /* fewer threads: still correct */
        tp.n_workers++;
        /* watch while the pool's threads fit the cores */
        cpu_set_t cpus;
        int spin = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > tp.n_workers;
        __atomic_store_n(&tp_spin, spin, __ATOMIC_RELAXED);
    }
    tp.busy = 1;
    __atomic_store_n(&tp.job, tp.job + 1, __ATOMIC_RELEASE); /* read by watching workers */
    uint64_t tag = tp.job & 0xffffffffu;
    tp.fn = fn;
    tp.ctx = ctx;
    tp.n = n_blocks;
    __atomic_store_n(&tp.done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&tp.claim, tag << 32, __ATOMIC_RELEASE);
    tp.want = threads - 1 < tp.n_workers ? threads - 1 : tp.n_workers;
    pthread_cond_broadcast(&tp.wake);
    pthread_mutex_unlock(&tp.lock);
    run_blocks(tag, fn, ctx, n_blocks);
    /* Every block is claimed; wait for those a worker is still running. */
    for (int spin = 0; __atomic_load_n(&tp.done, __ATOMIC_ACQUIRE) < n_blocks; spin++) {
        if (spin < 4096)
            cpu_relax();
        else
            sched_yield();
    }
    pthread_mutex_lock(&tp.lock);
    tp.want = 0; /* no late joiner for this job */
    tp.busy = 0;
    pthread_mutex_unlock(&tp.lock);
}

int sg_pool_init(sg_pool *p, size_t n_in, size_t n_out)
{
    p->free = NULL;
    p->n_in = n_in;
    p->n_out = n_out;
    p->n_slots = 0;
    p->hint = 0;
    return pthread_mutex_init(&p->lock, NULL);
}

/* ---- interrupting a call (Ctrl-C) ----
 *
 * A kernel runs without the GIL, so CPython's SIGINT handler only notes the signal and
 * the KeyboardInterrupt waits for the call to end: a loop of a million steps could not be
 * stopped. While Python's default handler is in place (the runtime checks before each
 * call of a kernel with loops, sg_interrupt_arm), this handler is put in front of it: it
 * raises the flag every workspace points to (sg_ws.interrupt) and passes the signal on to
 * the handler it displaced, which notes it for Python as before. A loop reads the flag at
 * each step and fails with SG_EINTR through its ordinary failure path (nothing changed),
 * and the runtime then lets Python raise the KeyboardInterrupt it noted. A Python handler
 * installed later (signal.signal) displaces this one again: then calls run to the end,
 * as before. */
static volatile sig_atomic_t sg__interrupt;
static struct sigaction sg__displaced;

static void sg__on_sigint(int sig, siginfo_t *info, void *uctx)
{
    sg__interrupt = 1;
    if (sg__displaced.sa_flags & SA_SIGINFO) {
        if (sg__displaced.sa_sigaction)
            sg__displaced.sa_sigaction(sig, info, uctx);
    } else if (sg__displaced.sa_handler == SIG_DFL) {
        signal(sig, SIG_DFL); /* what the default would have done: end the process */
        raise(sig);
    } else if (sg__displaced.sa_handler != SIG_IGN) {
        sg__displaced.sa_handler(sig);
    }
}

/* Whether the handler is in front of SIGINT's: 1 or 0 (a query, no change). Python's
 * signal.signal() puts CPython's own back, so a 0 after an arm means the user chose a
 * handler since (or this process never armed). */
int sg_interrupt_armed(void)
{
    struct sigaction now;
    return sigaction(SIGINT, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO)
           && now.sa_sigaction == sg__on_sigint;
}

/* Put the handler in front of SIGINT's (unless it is there already); 0 when it is in
 * place, -1 when sigaction fails. Called with the GIL held, from the main thread. */
int sg_interrupt_arm(void)
{
    struct sigaction now;
    if (sigaction(SIGINT, NULL, &now) != 0)
        return -1;
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == sg__on_sigint)
        return 0;
    struct sigaction mine;
    memset(&mine, 0, sizeof mine);
    mine.sa_sigaction = sg__on_sigint;
    mine.sa_flags = SA_SIGINFO | (now.sa_flags & (SA_ONSTACK | SA_RESTART));
    sigemptyset(&mine.sa_mask);
    sg__displaced = now;
    return sigaction(SIGINT, &mine, NULL) == 0 ? 0 : -1;
}

/* Lower the flag (before a call, and after the call it stopped). */
void sg_interrupt_clear(void) { sg__interrupt = 0; }

static sg_slot *slot_new(size_t n_in, size_t n_out, size_t hint)
{
    size_t n = n_in + n_out;
    /* the descriptors, then one donation flag per input (all 0: nothing given away) */
    sg_slot *s = (sg_slot *)calloc(1, sizeof *s + (n ? n : 1) * sizeof(sg_arr) + n_in + 1);
    if (!s)
        return NULL;
    s->in = s->arrs;
    s->out = s->arrs + n_in;
    s->donate = (uint8_t *)(s->arrs + (n ? n : 1));
    s->ws.donate = s->donate;
    s->ws.out_alloc = sg_out_alloc;
    s->ws.out_free = sg_out_free;
    s->ws.parallel_for = sg_parallel_for;
    s->ws.interrupt = &sg__interrupt;
    if (hint)
        arena_grow(&s->ws, hint);
    return s;
}

/* A slot for one call, reset; NULL when out of memory. Concurrent callers
 * each get their own: a new one is made when the free list is empty. */
sg_slot *sg_pool_take(sg_pool *p)
{
    size_t hint;
    pthread_mutex_lock(&p->lock);
    sg_slot *s = p->free;
    if (s)
        p->free = s->next;
    hint = p->hint;
    pthread_mutex_unlock(&p->lock);
    if (!s) {
        s = slot_new(p->n_in, p->n_out, hint);
        if (!s)
            return NULL;
        pthread_mutex_lock(&p->lock);
        p->n_slots++;
        pthread_mutex_unlock(&p->lock);
    }
    /* The kernel resets `used` itself; resetting here too keeps a kernel
     * that forgot from growing the arena forever. */
    s->ws.used = 0;
    s->ws.need = 0;
    s->ws.n_extra = 0;
    s->err.code = 0;
    s->err.msg[0] = '\0';
    return s;
}

/* Return a slot after its call, growing its arena to what the call needed. */
void sg_pool_give(sg_pool *p, sg_slot *s)
{
    sg_ws *ws = &s->ws;
    /* The kernel frees its overflow blocks; any it left would leak. */
    for (size_t i = 0; i < ws->n_extra; i++)
        free(ws->extra[i]);
    ws->n_extra = 0;
    if (ws->need > ws->cap)
        arena_grow(ws, ws->need);
    memset(s->donate, 0, p->n_in); /* the next caller gives nothing away unless it says so */
    pthread_mutex_lock(&p->lock);
    if (ws->cap > p->hint)
        p->hint = ws->cap;
    s->next = p->free;
    p->free = s;
    pthread_mutex_unlock(&p->lock);
}

/* Free every slot. Only called when no call is running (the kernel object is
 * being deallocated, and each call holds a reference to it). */
void sg_pool_destroy(sg_pool *p)
{
    sg_slot *s = p->free;
    while (s) {
        sg_slot *next = s->next;
        free(s->ws.base);
        free(s->ws.extra); /* the kernel's list of overflow blocks, grown with realloc */
        free(s->ws.blocks); /* the kernel's table of arena blocks, likewise */
        free(s);
        s = next;
    }
    p->free = NULL;
    pthread_mutex_destroy(&p->lock);
}

/* The arena sizes of the idle slots (at most `max` of them); returns how many. */
size_t sg_pool_arenas(sg_pool *p, size_t *caps, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    for (sg_slot *s = p->free; s && n < max; s = s->next)
        caps[n++] = s->ws.cap;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* Whether this platform can tell which libraries a kernel brought in, so
 * that they can be kept while the kernel itself is closed. */
#if defined(__linux__) && defined(RTLD_NOLOAD) && defined(RTLD_NODELETE) /* dlinfo: glibc, musl */
#define SG_CAN_CLOSE 1
#else
#define SG_CAN_CLOSE 0
#endif

/* Make every library loaded with or after the kernel `h` -- BLAS, libm:
 * what it depends on -- stay loaded for good, except other kernels. Closing
 * a kernel then unmaps its own code and nothing else: OpenBLAS's worker
 * threads, thread-local destructors and fork handlers keep their code.
 * Returns 0, or -1 if the libraries cannot be listed. */
static int pin_dependencies(void *h)
{
#if SG_CAN_CLOSE
    struct link_map *lm = NULL;
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0 || !lm)
        return -1;
    for (struct link_map *l = lm->l_next; l; l = l->l_next) {
        if (!l->l_name || !l->l_name[0])
            continue;
        void *d = dlopen(l->l_name, RTLD_LAZY | RTLD_NOLOAD);
        if (!d)
            continue;
        if (!dlsym(d, "sg_main")) { /* not a kernel: flag it never to be unloaded */
            void *keep = dlopen(l->l_name, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
            if (keep)
                dlclose(keep);
        }
        dlclose(d);
    }
    (void)dlerror();
    return 0;
#else
    (void)h;
    return -1;
#endif
}

/* dlopen a kernel library and find its entry point. Returns the handle, or
 * NULL with the reason in `msg`. Every handle returned is closed once with
 * sg_lib_close (the loader counts them).
 *
 * A library that loaded but is refused (a missing symbol, another ABI
 * version) is closed again: the dynamic loader reuses an open library of the
 * same path, so leaving it open would hand the stale one to the next dlopen
 * after the cache has rebuilt the file. */
void *sg_lib_open(const char *path, sg_main_fn *fn, char *msg, size_t msg_len)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(msg, msg_len, "cannot load kernel %s: %s", path, why ? why : "dlopen failed");
        return NULL;
    }
    int (*version)(void) = NULL;
    void *entry = dlsym(h, "sg_main");
    /* POSIX guarantees that a data pointer from dlsym converts to a function pointer. */
    *(void **)&version = dlsym(h, "sg_abi_version");
    if (!entry || !version) {
        snprintf(msg, msg_len, "cannot load kernel %s: not a symgrad kernel (no %s)", path,
                 entry ? "sg_abi_version" : "sg_main");
        dlclose(h);
        return NULL;
    }
    int v = version();
    if (v != SG_ABI_VERSION) {
        snprintf(msg, msg_len,
                 "cannot load kernel %s: it was built for ABI version %d, this runtime has "
                 "version %d (recompile it)", path, v, SG_ABI_VERSION);
        dlclose(h);
        return NULL;
    }
    /* The support library the kernel calls its helpers in (libsg_support.so,
     * or its sources compiled into a sanitizer build): found among the
     * kernel's own dependencies, absent when the linker dropped it as unused. */
    int (*support)(void) = NULL;
    *(void **)&support = dlsym(h, "sg_support_abi");
    if (support && (v = support()) != SG_ABI_VERSION) {
        snprintf(msg, msg_len,
                 "cannot load kernel %s: symgrad's support library it links against was built "
                 "for ABI version %d, this runtime has version %d (reinstall symgrad)", path, v,
                 SG_ABI_VERSION);
        dlclose(h);
        return NULL;
    }
    (void)dlerror();
    if (pin_dependencies(h) != 0) {
        /* Its dependencies unknown: the kernel stays loaded for good, as they do. */
        void *keep = NULL;
#ifdef RTLD_NODELETE
        keep = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
#endif
        if (!keep)
            keep = dlopen(path, RTLD_NOW | RTLD_LOCAL); /* one reference never closed */
        (void)keep;
    }
    *(void **)fn = entry;
    return h;
}

/* Give back a handle of sg_lib_open. The library is unmapped when its last
 * handle goes: no call may be running in it and nothing may point into it
 * (the runtime's Kernel object guarantees both). */
void sg_lib_close(void *h)
{
    if (h)
        dlclose(h);
}

/* Whether a loaded kernel's loops read sg_ws.interrupt (its `sg_interruptible` export). */
int sg_lib_interruptible(void *h)
{
    return dlsym(h, "sg_interruptible") != NULL;
}

/* Set a loaded kernel's thread counts through its `sg_set_num_threads`
 * export: `loops` for its own loops, `blas` for BLAS when > 0 (else BLAS
 * keeps its own setting). Returns 0 when set, -1 when the export is absent. */
int sg_lib_set_threads(void *h, int loops, int blas)
{
    void (*set)(int, int) = NULL;
    *(void **)&set = dlsym(h, "sg_set_num_threads");
    if (!set)
        return -1;
    set(loops, blas);
    return 0;
}

/* The per-node seconds of a kernel built with profiling (`sg_prof`, `sg_prof_n`
 * exports); NULL with *n = 0 for a kernel built without. */
double *sg_lib_profile(void *h, int *n)
{
    int (*count)(void) = NULL;
    double *times = (double *)dlsym(h, "sg_prof");
    *(void **)&count = dlsym(h, "sg_prof_n");
    if (!times || !count) {
        *n = 0;
        return NULL;
    }
    *n = count();
    return times;
}
