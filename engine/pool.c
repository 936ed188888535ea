/* pool.c — the persistent thread pool (pool.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "pool.h"

/* Workers spin briefly on the job counter before sleeping on a condition
 * variable: the jobs of a forward pass come back to back, and a sleeping
 * thread can take tens of microseconds to wake. */
struct eng_pool {
    int nth;                 /* threads including the caller */
    pthread_t *th;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    atomic_ulong gen;        /* bumped for every job; fn and arg are set before */
    atomic_int busy;         /* workers still running the current job */
    atomic_int quit;
    eng_job_fn fn;
    void *arg;
};

enum { SPIN = 4000 };        /* polls before sleeping: up to ~100 microseconds */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct worker_arg { eng_pool *p; int tid; } worker_arg;

/* Waits for a job newer than seen; returns its number, or 0 to quit. */
static unsigned long wait_job(eng_pool *p, unsigned long seen) {
    for (int i = 0; i < SPIN; i++) {
        if (atomic_load(&p->quit)) return 0;
        unsigned long g = atomic_load(&p->gen);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
        pthread_cond_wait(&p->go, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return atomic_load(&p->quit) ? 0 : atomic_load(&p->gen);
}

static void *worker_main(void *a) {
    worker_arg w = *(worker_arg *)a;
    free(a);
    eng_pool *p = w.p;
    unsigned long seen = 0;
    while ((seen = wait_job(p, seen))) {
        p->fn(p->arg, w.tid, p->nth);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {   /* last one out wakes the caller */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

void eng_pool_destroy(eng_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}

int eng_pool_create(int nth, eng_pool **out, eng_err *err) {
    *out = NULL;
    eng_pool *p = calloc(1, sizeof *p);
    if (!p) return eng_seterr(err, ENG_ENOMEM, "pool: out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->nth = nth < 1 ? 1 : nth;
    p->th = calloc((size_t)p->nth, sizeof *p->th);
    if (!p->th) {
        eng_pool_destroy(p);
        return eng_seterr(err, ENG_ENOMEM, "pool: out of memory for %d threads", nth);
    }
    for (int i = 1; i < p->nth; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a) { a->p = p; a->tid = i; }
        if (!a || pthread_create(&p->th[p->n_started], NULL, worker_main, a)) {
            free(a);
            eng_pool_destroy(p);
            return eng_seterr(err, ENG_ENOMEM, "pool: could not start thread %d of %d", i, nth);
        }
        p->n_started++;
    }
    *out = p;
    return ENG_OK;
}

int eng_pool_threads(const eng_pool *p) { return p->nth; }

void eng_pool_run(eng_pool *p, eng_job_fn fn, void *arg, double work) {
    if (p->nth == 1 || work < ENG_POOL_MIN_WORK) { fn(arg, 0, 1); return; }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->busy, p->nth - 1);
    pthread_mutex_lock(&p->mu);          /* a worker between its check and its wait holds mu */
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->nth);
    for (int i = 0; i < SPIN && atomic_load(&p->busy); i++) cpu_relax();
    if (atomic_load(&p->busy)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy)) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
