/* pool.h — a small persistent thread pool (engine-internal, not API): the CPU
 * backend's products and its tensor-parallel ranks, and the CUDA backend's
 * ranks, run a job on every thread at once, the caller being thread 0. */
#ifndef ENG_POOL_H
#define ENG_POOL_H
#include "eng.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct eng_pool eng_pool;
typedef void (*eng_job_fn)(void *arg, int tid, int nth);

/* nth threads including the caller (nth - 1 are started). */
int  eng_pool_create(int nth, eng_pool **out, eng_err *err);
void eng_pool_destroy(eng_pool *p);   /* NULL: nothing */
int  eng_pool_threads(const eng_pool *p);
/* Runs fn(arg, tid, nth) on every thread and returns when all are done.
 * Jobs of less work than ENG_POOL_MIN_WORK (multiply-adds or so) run on the
 * caller alone (fn(arg, 0, 1)): waking the others would cost more than it
 * saves.  A job that must run on every thread passes INFINITY. */
#define ENG_POOL_MIN_WORK (1 << 17)
void eng_pool_run(eng_pool *p, eng_job_fn fn, void *arg, double work);

#ifdef __cplusplus
}
#endif
#endif
