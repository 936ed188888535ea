/* prefetch.c — a pool of threads that fetch queued keys into the cache, and
 * cache_lookup_or_fetch, which serves callers from the cache, joins fetches
 * already in flight, or fetches in the foreground.  One mutex guards the
 * queue, the in-flight list, the budget and the statistics; fetches and
 * cache calls run outside it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cache.h"

/* A fetch in progress (or just finished, while joiners still read it). */
typedef struct flight {
    char *key;
    int prefetch;            /* started by the pool */
    int cached;              /* the pool's check found it cached: no fetch, joiners read the cache */
    int done, rc;
    eng_err err;
    char *body, *ctype;
    size_t len;
    int64_t fetch_us;
    int refs;                /* the fetcher and each joiner */
    struct flight *next;     /* in p->flights while not done */
} flight;

typedef struct qitem { char *key; double prio; uint64_t seq; } qitem;

struct cache_prefetch {
    cache *c;
    cache_fetch_fn fetch;
    void *ud;
    cache_prefetch_opts o;
    pthread_mutex_t mu;
    pthread_cond_t work;     /* queue, budget or stop changed */
    pthread_cond_t changed;  /* a flight finished or the queue shrank */
    qitem *q;
    int nq;
    uint64_t seq;
    flight *flights;
    int running, stop;
    uint64_t gen;            /* flights finished; written under mu */
    int64_t budget, spent;
    cache_prefetch_stats st;
    pthread_t *threads;
    int n_threads;
};

static int64_t now_us(const cache_prefetch *p) {
    if (p->o.now_us) return p->o.now_us(p->o.clock_ud);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------ queue and flights */
static int queue_find(const cache_prefetch *p, const char *key) {
    for (int i = 0; i < p->nq; i++) if (!strcmp(p->q[i].key, key)) return i;
    return -1;
}

static void queue_remove(cache_prefetch *p, int i) {
    free(p->q[i].key);
    p->q[i] = p->q[--p->nq];
}

/* Highest priority, oldest first among equals. */
static int queue_best(const cache_prefetch *p) {
    int b = 0;
    for (int i = 1; i < p->nq; i++)
        if (p->q[i].prio > p->q[b].prio ||
            (p->q[i].prio == p->q[b].prio && p->q[i].seq < p->q[b].seq)) b = i;
    return b;
}

/* Adds key (taking ownership); a full queue drops its lowest priority item
 * if that is lower than prio, else the new one. */
static void queue_push(cache_prefetch *p, char *key, double prio) {
    if (p->nq == p->o.max_queue) {
        int lo = 0;
        for (int i = 1; i < p->nq; i++) if (p->q[i].prio < p->q[lo].prio) lo = i;
        if (p->q[lo].prio >= prio) { free(key); return; }
        queue_remove(p, lo);
    }
    p->q[p->nq++] = (qitem){ key, prio, p->seq++ };
}

/* The flight for key, in whatever state.  Every path that starts a flight
 * looks here first, so a key has at most one flight. */
static flight *flight_find(const cache_prefetch *p, const char *key) {
    for (flight *f = p->flights; f; f = f->next)
        if (!strcmp(f->key, key)) return f;
    return NULL;
}

/* Registers a new flight for key (ownership taken); NULL if out of memory. */
static flight *flight_start(cache_prefetch *p, char *key, int prefetch) {
    flight *f = calloc(1, sizeof *f);
    if (!f) { free(key); return NULL; }
    f->key = key;
    f->prefetch = prefetch;
    f->refs = 1;
    f->next = p->flights;
    p->flights = f;
    return f;
}

/* Marks f done and takes it off the in-flight list; joiners keep it alive. */
static void flight_finish(cache_prefetch *p, flight *f) {
    flight **pp = &p->flights;
    while (*pp && *pp != f) pp = &(*pp)->next;
    if (*pp) *pp = f->next;
    f->done = 1;
    __atomic_fetch_add(&p->gen, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->changed);
}

static void flight_release(flight *f) {
    if (--f->refs > 0) return;
    free(f->key);
    free(f->body);
    free(f->ctype);
    free(f);
}

/* Calls the fetch callback for f (no lock held); fills its result. */
static void run_fetch(cache_prefetch *p, flight *f) {
    char *body = NULL, *ctype = NULL;
    size_t len = 0;
    eng_err e = {0};
    int64_t t0 = now_us(p);
    int rc = p->fetch(p->ud, f->key, &body, &len, &ctype, &e);
    f->fetch_us = now_us(p) - t0;
    if (rc == ENG_OK && !body && len)
        rc = eng_seterr(&e, ENG_EINVAL, "fetch of %.200s returned no body", f->key);
    if (rc != ENG_OK) {
        free(body);
        free(ctype);
        if (!e.msg[0]) eng_seterr(&e, rc, "fetch of %.200s failed (code %d)", f->key, rc);
        f->rc = rc;
        f->err = e;
        return;
    }
    f->body = body;
    f->len = len;
    f->ctype = ctype;
}

static int store(cache_prefetch *p, const flight *f) {
    cache_meta m = { f->ctype, p->o.ttl_ms, f->fetch_us, f->prefetch };
    return cache_put(p->c, f->key, f->body, f->len, &m, NULL);
}

/* ------------------------------------------------------------ pool thread */
/* Pops the best queued key that still needs fetching and starts its flight;
 * NULL when the queue ran dry.  Called and returns with mu held.  The
 * flight is registered before the cache is checked: requests see the key as
 * in flight, wait_idle sees the pool busy, and lookups join it (if the
 * check finds the key cached, they read it from the cache). */
static flight *next_job(cache_prefetch *p) {
    while (p->nq > 0) {
        int b = queue_best(p);
        char *key = p->q[b].key;
        p->q[b] = p->q[--p->nq];
        pthread_cond_broadcast(&p->changed);
        if (flight_find(p, key)) { free(key); continue; }
        flight *f = flight_start(p, key, 1);
        if (!f) continue;
        p->running++;
        pthread_mutex_unlock(&p->mu);
        if (p->o.on_take) p->o.on_take(p->o.hook_ud, f->key);
        int found = 0;
        cache_contains(p->c, f->key, &found, NULL);
        pthread_mutex_lock(&p->mu);
        if (found) {
            f->cached = 1;
            p->running--;
            flight_finish(p, f);
            flight_release(f);
            continue;
        }
        p->st.issued++;
        if (p->running > p->st.max_running) p->st.max_running = p->running;
        return f;
    }
    return NULL;
}

/* Stores a finished prefetch if it fits the budget.  mu not held. */
static void keep_prefetch(cache_prefetch *p, flight *f) {
    pthread_mutex_lock(&p->mu);
    if (f->rc != ENG_OK) { p->st.errors++; pthread_mutex_unlock(&p->mu); return; }
    int fits = p->spent + (int64_t)f->len <= p->budget;
    p->spent += (int64_t)f->len;
    p->st.fetched_bytes += (int64_t)f->len;
    if (!fits) p->st.over_budget++;
    pthread_mutex_unlock(&p->mu);
    if (fits && store(p, f) != ENG_OK) {
        pthread_mutex_lock(&p->mu);
        p->st.errors++;
        pthread_mutex_unlock(&p->mu);
    }
}

static void *worker(void *arg) {
    cache_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        flight *f = p->spent < p->budget ? next_job(p) : NULL;
        if (!f) { pthread_cond_wait(&p->work, &p->mu); continue; }
        pthread_mutex_unlock(&p->mu);
        run_fetch(p, f);
        keep_prefetch(p, f);
        pthread_mutex_lock(&p->mu);
        p->running--;
        flight_finish(p, f);
        flight_release(f);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ----------------------------------------------------------- public API */
int cache_prefetch_create(cache *c, cache_fetch_fn fetch, void *ud,
                          const cache_prefetch_opts *opts, cache_prefetch **out,
                          eng_err *err) {
    *out = NULL;
    if (!c || !fetch) return eng_seterr(err, ENG_EINVAL, "cache_prefetch_create: no cache or fetch callback");
    cache_prefetch *p = calloc(1, sizeof *p);
    if (!p) return eng_seterr(err, ENG_ENOMEM, "cache_prefetch_create: out of memory");
    p->c = c;
    p->fetch = fetch;
    p->ud = ud;
    if (opts) p->o = *opts;
    if (p->o.max_concurrent <= 0) p->o.max_concurrent = 4;
    if (p->o.byte_budget <= 0) p->o.byte_budget = 64ll << 20;
    if (p->o.max_queue <= 0) p->o.max_queue = 256;
    p->budget = p->o.byte_budget;
    p->q = calloc((size_t)p->o.max_queue, sizeof *p->q);
    p->threads = calloc((size_t)p->o.max_concurrent, sizeof *p->threads);
    if (!p->q || !p->threads) {
        free(p->q); free(p->threads); free(p);
        return eng_seterr(err, ENG_ENOMEM, "cache_prefetch_create: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->changed, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < p->o.max_concurrent; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            cache_prefetch_destroy(p);
            return eng_seterr(err, ENG_ENOMEM, "cache_prefetch_create: cannot start thread %d", i);
        }
        p->n_threads++;
    }
    *out = p;
    return ENG_OK;
}

void cache_prefetch_destroy(cache_prefetch *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    while (p->nq) queue_remove(p, p->nq - 1);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->changed);
    pthread_mutex_destroy(&p->mu);
    free(p->q);
    free(p->threads);
    free(p);
}

/* Already queued (priority raised) or in flight?  mu held. */
static int pending(cache_prefetch *p, const char *key, double priority) {
    if (flight_find(p, key)) return 1;
    int i = queue_find(p, key);
    if (i < 0) return 0;
    if (priority > p->q[i].prio) p->q[i].prio = priority;
    return 1;
}

int cache_prefetch_request(cache_prefetch *p, const char *key, double priority, eng_err *err) {
    char *k;
    int rc = cache_key(key, &k, err);
    if (rc != ENG_OK) return rc;
    pthread_mutex_lock(&p->mu);
    p->st.requests++;
    int skip = p->spent >= p->budget ? 2 : pending(p, k, priority);
    pthread_mutex_unlock(&p->mu);
    int found = 0;
    if (!skip) rc = cache_contains(p->c, k, &found, err);
    pthread_mutex_lock(&p->mu);
    if (rc == ENG_OK && !skip) skip = found || pending(p, k, priority);
    if (skip == 2) p->st.over_budget++;
    else if (skip) p->st.deduped++;
    else if (rc == ENG_OK) { queue_push(p, k, priority); k = NULL; pthread_cond_signal(&p->work); }
    pthread_mutex_unlock(&p->mu);
    free(k);
    return rc;
}

void cache_prefetch_set_budget(cache_prefetch *p, int64_t bytes) {
    pthread_mutex_lock(&p->mu);
    p->budget = bytes > 0 ? bytes : 0;
    p->spent = 0;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
}

int cache_prefetch_wait_idle(cache_prefetch *p, int timeout_ms, eng_err *err) {
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    int64_t ns = dl.tv_nsec + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) % 1000 * 1000000;
    dl.tv_sec += (timeout_ms > 0 ? timeout_ms : 0) / 1000 + ns / 1000000000;
    dl.tv_nsec = ns % 1000000000;
    int rc = ENG_OK;
    pthread_mutex_lock(&p->mu);
    while ((p->nq > 0 && p->spent < p->budget) || p->running > 0) {
        if (timeout_ms < 0) { pthread_cond_wait(&p->changed, &p->mu); continue; }
        if (pthread_cond_timedwait(&p->changed, &p->mu, &dl) != 0) {
            rc = eng_seterr(err, ENG_EFULL, "prefetcher still busy after %d ms", timeout_ms);
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int cache_prefetch_get_stats(cache_prefetch *p, cache_prefetch_stats *out, eng_err *err) {
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    pthread_mutex_unlock(&p->mu);
    cache_stats cs;
    int rc = cache_get_stats(p->c, &cs, err);
    if (rc == ENG_OK) out->unused_bytes = cs.unused_prefetch_dropped + cs.unused_prefetch_stored;
    return rc;
}

/* ------------------------------------------------------- lookup or fetch */
/* Copies f's result into *out (or its error into err). */
static int copy_result(const flight *f, cache_entry *out, eng_err *err) {
    if (f->rc != ENG_OK) {
        if (err) *err = f->err;
        return f->rc;
    }
    out->value = malloc(f->len + 1);
    out->ctype = strdup(f->ctype ? f->ctype : "");
    if (!out->value || !out->ctype) {
        cache_entry_free(out);
        return eng_seterr(err, ENG_ENOMEM, "lookup of %.200s: out of memory", f->key);
    }
    if (f->len) memcpy(out->value, f->body, f->len);
    out->value[f->len] = 0;
    out->len = f->len;
    out->fetch_us = f->fetch_us;
    out->prefetched = f->prefetch;
    out->expires_ms = INT64_MAX;      /* unknown here; the cache holds the real one */
    return ENG_OK;
}

enum { JOIN_AGAIN = -1 };     /* the flight found the key cached: read it there */

/* Counts a lookup served from the cache; after a join (already counted as
 * one) the time waited for the flight counts too.  mu held. */
static void count_cached(cache_prefetch *p, const cache_entry *e, int joined, int64_t t0) {
    int64_t waited = joined ? now_us(p) - t0 : 0;
    if (joined) p->st.wait_us += waited;
    else p->st.hits++;
    if (!e->first_use) return;
    p->st.prefetch_hits++;
    if (e->fetch_us > waited) p->st.saved_us += e->fetch_us - waited;
}

/* Waits for f (mu held, a reference taken) and copies its result, or
 * returns JOIN_AGAIN when the flight ended without fetching because the
 * key was cached. */
static int join(cache_prefetch *p, flight *f, int64_t t0, cache_entry *out, eng_err *err) {
    while (!f->done) pthread_cond_wait(&p->changed, &p->mu);
    if (f->cached) {
        flight_release(f);
        return JOIN_AGAIN;
    }
    int rc = copy_result(f, out, err);
    int prefetch = f->prefetch;
    int64_t waited = now_us(p) - t0, fetch_us = f->fetch_us;
    char *key = strdup(f->key);
    flight_release(f);
    p->st.wait_us += waited;
    pthread_mutex_unlock(&p->mu);
    int first = 0;
    if (rc == ENG_OK && prefetch && key) cache_mark_used(p->c, key, &first, NULL);
    free(key);
    pthread_mutex_lock(&p->mu);
    if (first) {
        p->st.prefetch_hits++;
        if (fetch_us > waited) p->st.saved_us += fetch_us - waited;
    }
    return rc;
}

/* Fetches key now (mu held on entry and exit; ownership of key taken). */
static int fetch_now(cache_prefetch *p, char *key, int64_t t0, cache_entry *out, eng_err *err) {
    int i = queue_find(p, key);
    if (i >= 0) queue_remove(p, i);
    flight *f = flight_start(p, key, 0);
    if (!f) return eng_seterr(err, ENG_ENOMEM, "lookup: out of memory");
    p->st.misses++;
    pthread_mutex_unlock(&p->mu);
    run_fetch(p, f);
    int stored = f->rc == ENG_OK ? store(p, f) : ENG_OK;
    pthread_mutex_lock(&p->mu);
    if (f->rc != ENG_OK || stored != ENG_OK) p->st.errors++;
    flight_finish(p, f);
    p->st.wait_us += now_us(p) - t0;
    int rc = copy_result(f, out, err);
    flight_release(f);
    return rc;
}

/* A hit returns; a flight of key in any state (checking the cache
 * included) is joined, never fetched a second time; else key is fetched. */
int cache_lookup_or_fetch(cache_prefetch *p, const char *key, cache_entry *out, eng_err *err) {
    memset(out, 0, sizeof *out);
    char *k;
    int rc = cache_key(key, &k, err);
    if (rc != ENG_OK) return rc;
    int64_t t0 = now_us(p);
    int joined = 0;
    for (;;) {
        /* A flight that finishes between our cache read and taking mu has
         * stored its result: the generation tells us to read again. */
        uint64_t gen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        int found = 0;
        rc = cache_get(p->c, k, out, &found, err);
        pthread_mutex_lock(&p->mu);
        if (rc != ENG_OK || found) {
            if (found) count_cached(p, out, joined, t0);
            break;
        }
        flight *f = flight_find(p, k);
        if (!f && p->gen != gen) { pthread_mutex_unlock(&p->mu); continue; }
        if (!f) {
            rc = fetch_now(p, k, t0, out, err);
            k = NULL;
            break;
        }
        f->refs++;
        if (!joined) p->st.joins++;
        joined = 1;
        rc = join(p, f, t0, out, err);
        if (rc != JOIN_AGAIN) break;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    free(k);
    return rc;
}
