/* A persistent worker pool for the runtime's many short parallel regions (a decode step runs
   ~100 of them). Workers spin briefly on a generation counter, then sleep on a condition variable:
   waking threads through libdispatch for every matrix-vector product cost ~25% of a GPT-2 step. */
#include "mal_kernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static struct {
    int threads;                       /* including the caller */
    pthread_t ids[64];
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic unsigned long generation;
    _Atomic size_t next;               /* next task index */
    _Atomic int active;                /* workers still inside the current job */
    int sleeping;
    atomic_flag busy;                  /* held by the caller of the job in progress */
    mal_task_fn fn;
    void *ctx;
    size_t n;
} P = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .busy = ATOMIC_FLAG_INIT };

static void run_tasks(void) {
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed);
        if (i >= P.n) break;
        P.fn(P.ctx, i);
    }
}

static void *worker(void *arg) {
    (void)arg;
    unsigned long seen = 0;
    for (;;) {
        int spins = 0;
        unsigned long g;
        while ((g = atomic_load_explicit(&P.generation, memory_order_acquire)) == seen) {
            if (++spins < 4000) { __builtin_ia32_pause(); continue; }   /* ~0.1 ms, then sleep */
            pthread_mutex_lock(&P.lock);
            P.sleeping++;
            while (atomic_load_explicit(&P.generation, memory_order_acquire) == seen) pthread_cond_wait(&P.wake, &P.lock);
            P.sleeping--;
            pthread_mutex_unlock(&P.lock);
            spins = 0;
        }
        seen = g;
        run_tasks();
        atomic_fetch_sub_explicit(&P.active, 1, memory_order_acq_rel);
    }
    return NULL;
}

void mal_pool_init(int threads) {
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (P.threads >= threads) return;
    int have = P.threads > 0 ? P.threads : 1;
    for (int t = have; t < threads; t++) pthread_create(&P.ids[t], NULL, worker, NULL);
    P.threads = threads;
}

void mal_pool_run(mal_task_fn fn, void *ctx, size_t n, int threads) {
    /* Another thread's job is running (two models in one process): run this one inline. */
    if (threads <= 1 || n <= 1 || P.threads <= 1 || atomic_flag_test_and_set_explicit(&P.busy, memory_order_acquire)) {
        for (size_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    P.fn = fn; P.ctx = ctx; P.n = n;
    atomic_store_explicit(&P.next, 0, memory_order_relaxed);
    atomic_store_explicit(&P.active, P.threads - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&P.generation, 1, memory_order_release);
    pthread_mutex_lock(&P.lock);
    if (P.sleeping) pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);
    run_tasks();
    while (atomic_load_explicit(&P.active, memory_order_acquire) > 0) __builtin_ia32_pause();
    atomic_flag_clear_explicit(&P.busy, memory_order_release);
}
