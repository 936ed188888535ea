/* test_prefetch.c — the prefetch pool, cache_lookup_or_fetch (joins, budget,
 * concurrency cap, statistics) and the speculator's ranking. */
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include "t.h"
#include "t_tmp.h"
#include "cache.h"

static int db_seq;

static cache *open_tmp(int64_t max_bytes) {
    char p[512];
    snprintf(p, sizeof p, "%s/p%d.db", tmpdir, db_seq++);
    cache_opts o = { .max_bytes = max_bytes };
    cache *c = NULL;
    eng_err e = {0};
    T_CHECKF(cache_open(p, &o, &c, &e) == ENG_OK, "%s", e.msg);
    return c;
}

static void close_tmp(cache *c) {
    cache_close(c);
}

/* ----------------------------------------------------- a counting fetcher */
typedef struct fx {
    int calls, cur, max_cur;     /* atomics */
    int sleep_ms;
    size_t body_len;             /* 0: just "body of <key>" */
    const char *gate_key;        /* a fetch of a key holding this waits for gate */
    sem_t gate;
    pthread_mutex_t mu;
    char fetched[64][128];       /* keys in call order */
    int n_fetched;
} fx;

static void fx_init(fx *f, int sleep_ms, size_t body_len) {
    memset(f, 0, sizeof *f);
    f->sleep_ms = sleep_ms;
    f->body_len = body_len;
    pthread_mutex_init(&f->mu, NULL);
    sem_init(&f->gate, 0, 0);
}

static int fetch_counting(void *ud, const char *key, char **body, size_t *len, char **ctype,
                          eng_err *err) {
    fx *f = ud;
    __atomic_fetch_add(&f->calls, 1, __ATOMIC_SEQ_CST);
    int cur = __atomic_add_fetch(&f->cur, 1, __ATOMIC_SEQ_CST);
    int m = __atomic_load_n(&f->max_cur, __ATOMIC_SEQ_CST);
    while (cur > m && !__atomic_compare_exchange_n(&f->max_cur, &m, cur, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    pthread_mutex_lock(&f->mu);
    if (f->n_fetched < 64) snprintf(f->fetched[f->n_fetched++], 128, "%s", key);
    pthread_mutex_unlock(&f->mu);
    if (f->gate_key && strstr(key, f->gate_key)) sem_wait(&f->gate);
    else usleep((useconds_t)f->sleep_ms * 1000);
    __atomic_sub_fetch(&f->cur, 1, __ATOMIC_SEQ_CST);
    if (strstr(key, "fail")) return eng_seterr(err, ENG_EIO, "no route to %s", key);
    size_t n = f->body_len ? f->body_len : strlen(key) + 8;
    *body = malloc(n + 1);
    if (!*body) return eng_seterr(err, ENG_ENOMEM, "oom");
    snprintf(*body, n + 1, "body of %s", key);
    for (size_t i = strlen(*body); i < n; i++) (*body)[i] = '.';
    *len = n;
    *ctype = strdup("text/html");
    return ENG_OK;
}

static int calls(fx *f) { return __atomic_load_n(&f->calls, __ATOMIC_SEQ_CST); }

typedef struct looker {
    cache_prefetch *p;
    const char *key;
    pthread_barrier_t *bar;
    int rc;
    eng_err err;
    cache_entry e;
} looker;

static void *look(void *arg) {
    looker *l = arg;
    if (l->bar) pthread_barrier_wait(l->bar);
    l->rc = cache_lookup_or_fetch(l->p, l->key, &l->e, &l->err);
    return NULL;
}

/* n threads look key up at once; returns when all are done. */
static void look_many(cache_prefetch *p, const char *key, int n, looker *ls) {
    pthread_t t[8];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        ls[i] = (looker){ .p = p, .key = key, .bar = &bar };
        pthread_create(&t[i], NULL, look, &ls[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
}

static void test_join_instead_of_second_fetch(void) {
    cache *c = open_tmp(0);
    if (!c) return;
    fx f;
    fx_init(&f, 200, 0);
    cache_prefetch *p;
    eng_err e = {0};
    if (cache_prefetch_create(c, fetch_counting, &f, NULL, &p, &e) != ENG_OK) { T_CHECKF(0, "%s", e.msg); return; }
    looker ls[4];
    double t0 = eng_now_s();
    look_many(p, "http://slow.test/page", 4, ls);
    double dt = eng_now_s() - t0;
    T_CHECKF(calls(&f) == 1, "%d fetch calls for 4 concurrent lookups", calls(&f));
    T_CHECKF(dt < 0.6, "4 lookups took %.3f s", dt);
    for (int i = 0; i < 4; i++) {
        T_CHECK(ls[i].rc == ENG_OK && ls[i].e.value && !strcmp(ls[i].e.value, "body of http://slow.test/page"));
        T_CHECK(ls[i].e.ctype && !strcmp(ls[i].e.ctype, "text/html"));
        cache_entry_free(&ls[i].e);
    }
    cache_prefetch_stats st;
    T_CHECK(cache_prefetch_get_stats(p, &st, &e) == ENG_OK);
    T_CHECKF(st.misses == 1 && st.joins == 3 && st.hits == 0, "misses %lld joins %lld",
             (long long)st.misses, (long long)st.joins);
    /* Now cached: a hit, no call. */
    look_many(p, "HTTP://slow.test/page#top", 1, ls);
    T_CHECK(ls[0].rc == ENG_OK && calls(&f) == 1);
    cache_entry_free(&ls[0].e);
    /* Joining a prefetch in flight: request, wait until it runs, look up. */
    T_CHECK(cache_prefetch_request(p, "http://slow.test/next", 1.0, &e) == ENG_OK);
    for (int i = 0; i < 200 && calls(&f) < 2; i++) usleep(1000);
    look_many(p, "http://slow.test/next", 4, ls);
    T_CHECKF(calls(&f) == 2, "%d calls", calls(&f));
    for (int i = 0; i < 4; i++) {
        T_CHECK(ls[i].rc == ENG_OK && ls[i].e.value && !strcmp(ls[i].e.value, "body of http://slow.test/next"));
        cache_entry_free(&ls[i].e);
    }
    T_CHECK(cache_prefetch_get_stats(p, &st, &e) == ENG_OK);
    T_CHECKF(st.joins == 7 && st.hits == 1 && st.prefetch_hits == 1 && st.issued == 1 && st.unused_bytes == 0,
             "joins %lld hits %lld prefetch_hits %lld issued %lld unused %lld", (long long)st.joins,
             (long long)st.hits, (long long)st.prefetch_hits, (long long)st.issued, (long long)st.unused_bytes);
    cache_prefetch_destroy(p);
    close_tmp(c);
}

/* Holds the pool thread that takes a key holding `key` before it checks
 * the cache (on_take), until the test lets it go. */
typedef struct holder {
    const char *key;
    sem_t taken, go;
} holder;

static void hold_take(void *ud, const char *key) {
    holder *h = ud;
    if (!strstr(key, h->key)) return;
    sem_post(&h->taken);
    sem_wait(&h->go);
}

typedef struct stalled {
    fx f;
    holder h;
    cache *c;
    cache_prefetch *p;
    pthread_t t[8];
    looker ls[8];
} stalled;

/* A prefetch of key taken by the pool and held before its cache check,
 * with n lookups of key started against it. */
static int stall_and_look(stalled *s, const char *key, int n) {
    s->c = open_tmp(0);
    if (!s->c) return -1;
    fx_init(&s->f, 20, 0);
    s->h.key = key;
    sem_init(&s->h.taken, 0, 0);
    sem_init(&s->h.go, 0, 0);
    cache_prefetch_opts o = { .max_concurrent = 2, .on_take = hold_take, .hook_ud = &s->h };
    eng_err e = {0};
    if (cache_prefetch_create(s->c, fetch_counting, &s->f, &o, &s->p, &e) != ENG_OK) {
        T_CHECKF(0, "%s", e.msg);
        close_tmp(s->c);
        return -1;
    }
    T_CHECK(cache_prefetch_request(s->p, key, 1.0, &e) == ENG_OK);
    sem_wait(&s->h.taken);
    for (int i = 0; i < n; i++) {
        s->ls[i] = (looker){ .p = s->p, .key = key };
        pthread_create(&s->t[i], NULL, look, &s->ls[i]);
    }
    /* Every lookup must now be waiting on the held prefetch. */
    cache_prefetch_stats st = {0};
    for (int i = 0; i < 5000 && st.joins + st.misses < n; i++) {
        cache_prefetch_get_stats(s->p, &st, NULL);
        usleep(1000);
    }
    usleep(30000);
    return 0;
}

static void stall_finish(stalled *s, int n) {
    sem_post(&s->h.go);
    for (int i = 0; i < n; i++) pthread_join(s->t[i], NULL);
}

/* Lets the held prefetch go: every lookup must get body and count as a
 * join, with `fetches` calls of the fetcher in all. */
static void stall_check(stalled *s, int n, const char *body, int fetches) {
    stall_finish(s, n);
    for (int i = 0; i < n; i++)
        T_CHECKF(s->ls[i].rc == ENG_OK && s->ls[i].e.value && !strcmp(s->ls[i].e.value, body),
                 "lookup %d: rc %d %s", i, s->ls[i].rc, s->ls[i].err.msg);
    T_CHECK(cache_prefetch_wait_idle(s->p, 5000, NULL) == ENG_OK);
    cache_prefetch_stats st;
    T_CHECK(cache_prefetch_get_stats(s->p, &st, NULL) == ENG_OK);
    T_CHECKF(calls(&s->f) == fetches && st.issued == fetches && st.misses == 0 && st.joins == n && st.hits == 0,
             "%d fetches, issued %lld, misses %lld, joins %lld, hits %lld", calls(&s->f),
             (long long)st.issued, (long long)st.misses, (long long)st.joins, (long long)st.hits);
}

static void stall_free(stalled *s, int n) {
    for (int i = 0; i < n; i++) cache_entry_free(&s->ls[i].e);
    cache_prefetch_destroy(s->p);
    close_tmp(s->c);
    sem_destroy(&s->h.taken);
    sem_destroy(&s->h.go);
}

/* Lookups of a key whose prefetch is still checking the cache join it:
 * none fetches while it is held, and the web sees exactly one fetch. */
static void test_join_while_checking(void) {
    enum { N = 8 };
    stalled s;
    if (stall_and_look(&s, "http://hold.test/page", N)) return;
    cache_prefetch_stats st;
    T_CHECK(cache_prefetch_get_stats(s.p, &st, NULL) == ENG_OK);
    T_CHECKF(calls(&s.f) == 0 && st.misses == 0 && st.joins == N,
             "while held: %d fetches, %lld misses, %lld joins", calls(&s.f), (long long)st.misses,
             (long long)st.joins);
    stall_check(&s, N, "body of http://hold.test/page", 1);
    stall_free(&s, N);
}

/* The held check finds the key cached (stored meanwhile): the joined
 * lookups read it from the cache and nothing is fetched. */
static void test_join_check_finds_cached(void) {
    enum { N = 4 };
    stalled s;
    if (stall_and_look(&s, "http://hold.test/stored", N)) return;
    const char body[] = "stored while the prefetch was held";
    T_CHECK(cache_put(s.c, "http://hold.test/stored", body, sizeof body - 1, NULL, NULL) == ENG_OK);
    stall_check(&s, N, body, 0);
    stall_free(&s, N);
}

static void test_fetch_errors(void) {
    cache *c = open_tmp(0);
    if (!c) return;
    fx f;
    fx_init(&f, 100, 0);
    cache_prefetch *p;
    if (cache_prefetch_create(c, fetch_counting, &f, NULL, &p, NULL) != ENG_OK) { T_CHECK(0); return; }
    looker ls[3];
    look_many(p, "http://x.test/fail", 3, ls);
    T_CHECK(calls(&f) == 1);
    for (int i = 0; i < 3; i++)
        T_CHECKF(ls[i].rc == ENG_EIO && strstr(ls[i].err.msg, "no route to http://x.test/fail") && !ls[i].e.value,
                 "rc %d msg %s", ls[i].rc, ls[i].err.msg);
    cache_prefetch_stats st;
    T_CHECK(cache_prefetch_get_stats(p, &st, NULL) == ENG_OK && st.errors == 1);
    /* A failure is not cached: the next lookup tries again. */
    look_many(p, "http://x.test/fail", 1, ls);
    T_CHECK(calls(&f) == 2 && ls[0].rc == ENG_EIO);
    /* Bad keys are refused before any fetch. */
    cache_entry en;
    eng_err e = {0};
    T_CHECK(cache_lookup_or_fetch(p, "http://", &en, &e) == ENG_EINVAL && e.msg[0]);
    T_CHECK(cache_prefetch_request(p, "", 1, &e) == ENG_EINVAL);
    T_CHECK(calls(&f) == 2);
    cache_prefetch_destroy(p);
    close_tmp(c);
}

static void test_dedup_requests(void) {
    cache *c = open_tmp(0);
    if (!c) return;
    fx f;
    fx_init(&f, 100, 0);
    cache_prefetch *p;
    cache_prefetch_opts o = { .max_concurrent = 1 };
    if (cache_prefetch_create(c, fetch_counting, &f, &o, &p, NULL) != ENG_OK) { T_CHECK(0); return; }
    /* Queued or in flight: once. */
    for (int i = 0; i < 5; i++) cache_prefetch_request(p, "http://d.test/a?y=1&x=2", 1, NULL);
    cache_prefetch_request(p, "http://d.test/b", 1, NULL);
    for (int i = 0; i < 5; i++) cache_prefetch_request(p, "http://D.test:80/b/", 2, NULL);
    T_CHECK(cache_prefetch_wait_idle(p, 5000, NULL) == ENG_OK);
    T_CHECK(calls(&f) == 2);
    /* Already cached: nothing. */
    cache_prefetch_request(p, "http://d.test/a?x=2&y=1", 1, NULL);
    T_CHECK(cache_prefetch_wait_idle(p, 5000, NULL) == ENG_OK);
    T_CHECK(calls(&f) == 2);
    cache_prefetch_stats st;
    T_CHECK(cache_prefetch_get_stats(p, &st, NULL) == ENG_OK);
    T_CHECKF(st.requests == 12 && st.deduped == 10 && st.issued == 2, "requests %lld deduped %lld issued %lld",
             (long long)st.requests, (long long)st.deduped, (long long)st.issued);
    cache_prefetch_destroy(p);
    close_tmp(c);
}

/* Higher priority first; a lookup of a queued key takes it off the queue. */
static void test_priority_and_lookup_of_queued(void) {
    cache *c = open_tmp(0);
    if (!c) return;
    fx f;
    fx_init(&f, 1, 0);
    f.gate_key = "first";
    cache_prefetch *p;
    cache_prefetch_opts o = { .max_concurrent = 1 };
    if (cache_prefetch_create(c, fetch_counting, &f, &o, &p, NULL) != ENG_OK) { T_CHECK(0); return; }
    cache_prefetch_request(p, "http://q.test/first", 0, NULL);
    for (int i = 0; i < 200 && calls(&f) < 1; i++) usleep(1000);     /* the only worker is busy now */
    cache_prefetch_request(p, "http://q.test/low", 1, NULL);
    cache_prefetch_request(p, "http://q.test/high", 5, NULL);
    cache_prefetch_request(p, "http://q.test/mid", 3, NULL);
    cache_prefetch_request(p, "http://q.test/taken", 4, NULL);
    cache_prefetch_request(p, "http://q.test/low", 9, NULL);         /* raises low's priority */
    looker l;
    look_many(p, "http://q.test/taken", 1, &l);                     /* fetched now, in the foreground */
    T_CHECK(l.rc == ENG_OK);
    cache_entry_free(&l.e);
    sem_post(&f.gate);                                               /* "first" may finish */
    T_CHECK(cache_prefetch_wait_idle(p, 5000, NULL) == ENG_OK);
    T_CHECKF(calls(&f) == 5, "%d calls", calls(&f));
    const char *want[] = { "http://q.test/first", "http://q.test/taken", "http://q.test/low",
                           "http://q.test/high", "http://q.test/mid" };
    for (int i = 0; i < 5 && i < f.n_fetched; i++)
        T_CHECKF(!strcmp(f.fetched[i], want[i]), "fetch %d was %s, want %s", i, f.fetched[i], want[i]);
    cache_prefetch_destroy(p);
    close_tmp(c);
}

static void test_byte_budget(void) {
    cache *c = open_tmp(0);
    if (!c) return;
    fx f;
    fx_init(&f, 20, 1000);
    cache_prefetch *p;
    cache_prefetch_opts o = { .max_concurrent = 4, .byte_budget = 10000 };
    if (cache_prefetch_create(c, fetch_counting, &f, &o, &p, NULL) != ENG_OK) { T_CHECK(0); return; }
    char key[64];
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof key, "http://b.test/%d", i);
        cache_prefetch_request(p, key, 30 - i, NULL);
    }
    T_CHECK(cache_prefetch_wait_idle(p, 5000, NULL) == ENG_OK);
    int stored = 0;
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof key, "http://b.test/%d", i);
        int found = 0;
        cache_contains(c, key, &found, NULL);
        stored += found;
    }
    cache_stats cs;
    cache_prefetch_stats st;
    T_CHECK(cache_get_stats(c, &cs, NULL) == ENG_OK && cache_prefetch_get_stats(p, &st, NULL) == ENG_OK);
    printf("  budget 10000: %d fetches, %d stored, %lld bytes stored\n", calls(&f), stored, (long long)cs.bytes);
    T_CHECKF(stored == 10 && cs.bytes == 10000 && cs.unused_prefetch_stored == 10000, "stored %d bytes %lld",
             stored, (long long)cs.bytes);
    T_CHECKF(calls(&f) >= 10 && calls(&f) <= 10 + 4 - 1, "%d fetches", calls(&f));
    T_CHECK(st.fetched_bytes == 1000ll * calls(&f) && st.issued == calls(&f));
    T_CHECK(st.over_budget >= calls(&f) - 10);   /* bodies dropped, plus requests refused */
    /* Spent: new requests are dropped at once. */
    cache_prefetch_request(p, "http://b.test/more", 1, NULL);
    T_CHECK(cache_prefetch_wait_idle(p, 5000, NULL) == ENG_OK && calls(&f) == st.issued);
    /* A new budget lets the queue move again, within the new limit. */
    int before = calls(&f);
    cache_prefetch_set_budget(p, 3000);
    cache_prefetch_request(p, "http://b.test/more", 1, NULL);
    T_CHECK(cache_prefetch_wait_idle(p, 5000, NULL) == ENG_OK);
    T_CHECK(cache_get_stats(c, &cs, NULL) == ENG_OK);
    T_CHECKF(calls(&f) > before && cs.bytes <= 13000 && cs.bytes >= 12000, "calls %d bytes %lld",
             calls(&f), (long long)cs.bytes);
    cache_prefetch_destroy(p);
    close_tmp(c);
}

static void test_concurrency_cap(void) {
    cache *c = open_tmp(0);
    if (!c) return;
    fx f;
    fx_init(&f, 30, 0);
    cache_prefetch *p;
    cache_prefetch_opts o = { .max_concurrent = 3 };
    if (cache_prefetch_create(c, fetch_counting, &f, &o, &p, NULL) != ENG_OK) { T_CHECK(0); return; }
    char key[64];
    for (int i = 0; i < 24; i++) {
        snprintf(key, sizeof key, "http://cap.test/%d", i);
        cache_prefetch_request(p, key, 1, NULL);
    }
    T_CHECK(cache_prefetch_wait_idle(p, 10000, NULL) == ENG_OK);
    cache_prefetch_stats st;
    T_CHECK(cache_prefetch_get_stats(p, &st, NULL) == ENG_OK);
    printf("  cap 3: most callbacks at once %d\n", f.max_cur);
    T_CHECK(calls(&f) == 24 && st.issued == 24);
    T_CHECKF(f.max_cur <= 3 && f.max_cur >= 2, "max simultaneous %d", f.max_cur);
    T_CHECK(st.max_running <= 3 && st.max_running >= f.max_cur);
    cache_prefetch_destroy(p);
    close_tmp(c);
}

/* ------------------------------------------------ statistics on a script */
static int64_t fake_us;
static int64_t fake_clock(void *ud) { (void)ud; return __atomic_load_n(&fake_us, __ATOMIC_SEQ_CST); }
static void advance(int64_t us) { __atomic_fetch_add(&fake_us, us, __ATOMIC_SEQ_CST); }

static sem_t c_started, c_go;
static int script_calls;

/* Each key takes a scripted time on the fake clock; "c" waits for the test
 * half way through so that a lookup can join it. */
static int fetch_script(void *ud, const char *key, char **body, size_t *len, char **ctype,
                        eng_err *err) {
    (void)ud;
    __atomic_fetch_add(&script_calls, 1, __ATOMIC_SEQ_CST);
    const char *name = strrchr(key, '/') + 1;
    size_t n = 0;
    switch (name[0]) {
    case 'a': advance(100000); n = 1000; break;
    case 'b': advance(50000); n = 500; break;
    case 'c': advance(30000); sem_post(&c_started); sem_wait(&c_go); advance(70000); n = 800; break;
    case 'd': advance(10000); n = 700; break;
    default: advance(5000); return eng_seterr(err, ENG_EIO, "scripted failure for %s", key);
    }
    *body = calloc(1, n);
    *len = n;
    *ctype = NULL;
    return *body ? ENG_OK : ENG_ENOMEM;
}

static void test_stats_script(void) {
    cache *c = open_tmp(0);
    if (!c) return;
    sem_init(&c_started, 0, 0);
    sem_init(&c_go, 0, 0);
    fake_us = 1000000;
    cache_prefetch *p;
    cache_prefetch_opts o = { .max_concurrent = 1, .now_us = fake_clock };
    if (cache_prefetch_create(c, fetch_script, NULL, &o, &p, NULL) != ENG_OK) { T_CHECK(0); return; }
    looker l;
    /* a: prefetched (100 ms), then used twice: saves 100 ms once. */
    cache_prefetch_request(p, "http://s.test/a", 1, NULL);
    cache_prefetch_wait_idle(p, 5000, NULL);
    look_many(p, "http://s.test/a", 1, &l); T_CHECK(l.rc == ENG_OK && l.e.len == 1000); cache_entry_free(&l.e);
    look_many(p, "http://s.test/a", 1, &l); T_CHECK(l.rc == ENG_OK); cache_entry_free(&l.e);
    /* b: a miss, 50 ms waited. */
    look_many(p, "http://s.test/b", 1, &l); T_CHECK(l.rc == ENG_OK && l.e.len == 500); cache_entry_free(&l.e);
    /* c: prefetch runs 30 ms, a lookup joins and waits the other 70 ms. */
    cache_prefetch_request(p, "http://s.test/c", 1, NULL);
    sem_wait(&c_started);
    pthread_t t;
    l = (looker){ .p = p, .key = "http://s.test/c" };
    pthread_create(&t, NULL, look, &l);
    cache_prefetch_stats st = {0};
    for (int i = 0; i < 5000 && st.joins < 1; i++) { cache_prefetch_get_stats(p, &st, NULL); usleep(1000); }
    T_CHECK(st.joins == 1);
    sem_post(&c_go);
    pthread_join(t, NULL);
    T_CHECK(l.rc == ENG_OK && l.e.len == 800);
    cache_entry_free(&l.e);
    /* d: prefetched, never read (700 unused bytes); e fails; a is deduped. */
    cache_prefetch_request(p, "http://s.test/d", 1, NULL);
    cache_prefetch_request(p, "http://s.test/e", 1, NULL);
    cache_prefetch_request(p, "http://s.test/a", 1, NULL);
    cache_prefetch_wait_idle(p, 5000, NULL);
    T_CHECK(cache_prefetch_get_stats(p, &st, NULL) == ENG_OK);
    printf("  hits %lld (prefetch %lld) misses %lld joins %lld requests %lld deduped %lld issued %lld\n"
           "  errors %lld fetched %lld unused %lld saved %lld us waited %lld us\n",
           (long long)st.hits, (long long)st.prefetch_hits, (long long)st.misses, (long long)st.joins,
           (long long)st.requests, (long long)st.deduped, (long long)st.issued, (long long)st.errors,
           (long long)st.fetched_bytes, (long long)st.unused_bytes, (long long)st.saved_us,
           (long long)st.wait_us);
    T_CHECK(st.hits == 2 && st.prefetch_hits == 2 && st.misses == 1 && st.joins == 1);
    T_CHECK(st.requests == 5 && st.deduped == 1 && st.issued == 4 && st.errors == 1);
    T_CHECK(st.fetched_bytes == 1000 + 800 + 700 && st.unused_bytes == 700 && st.over_budget == 0);
    T_CHECK(st.saved_us == 100000 + 30000);
    T_CHECK(st.wait_us == 50000 + 70000);
    T_CHECK(script_calls == 5);
    cache_prefetch_destroy(p);
    close_tmp(c);
    sem_destroy(&c_started);
    sem_destroy(&c_go);
}

/* Prefetched entries evicted unread count as unused. */
static void test_unused_after_eviction(void) {
    cache *c = open_tmp(2500);
    if (!c) return;
    fx f;
    fx_init(&f, 1, 1000);
    cache_prefetch *p;
    cache_prefetch_opts o = { .max_concurrent = 1 };
    if (cache_prefetch_create(c, fetch_counting, &f, &o, &p, NULL) != ENG_OK) { T_CHECK(0); return; }
    cache_prefetch_request(p, "http://u.test/1", 3, NULL);
    cache_prefetch_request(p, "http://u.test/2", 2, NULL);
    cache_prefetch_request(p, "http://u.test/3", 1, NULL);     /* evicts 1, never read */
    cache_prefetch_wait_idle(p, 5000, NULL);
    looker l;
    look_many(p, "http://u.test/2", 1, &l);
    T_CHECK(l.rc == ENG_OK);
    cache_entry_free(&l.e);
    cache_prefetch_stats st;
    T_CHECK(cache_prefetch_get_stats(p, &st, NULL) == ENG_OK);
    T_CHECKF(st.unused_bytes == 2000 && st.prefetch_hits == 1, "unused %lld", (long long)st.unused_bytes);
    cache_prefetch_destroy(p);
    close_tmp(c);
}

/* ------------------------------------------------------------ speculator */
static const char *question = "Who won the Nobel Prize in Physics in 1921?";

static cache_spec *example_spec(void) {
    cache_spec *s;
    if (cache_spec_create(question, &s, NULL) != ENG_OK) return NULL;
    cache_spec_add_link(s, "https://en.wikipedia.org/wiki/Nobel_Prize_in_Physics", "Nobel Prize in Physics", NULL);
    cache_spec_add_link(s, "https://en.wikipedia.org/wiki/Albert_Einstein", "Albert Einstein", NULL);
    cache_spec_add_link(s, "https://en.wikipedia.org/wiki/List_of_Nobel_laureates_in_Physics",
                        "List of Nobel laureates in Physics", NULL);
    cache_spec_add_link(s, "https://en.wikipedia.org/wiki/Main_Page", "Main page", NULL);
    cache_spec_add_link(s, "https://en.wikipedia.org/wiki/1921_in_science", "1921 in science", NULL);
    /* The same page again (another spelling, other anchor): merged. */
    cache_spec_add_link(s, "https://EN.wikipedia.org/wiki/Nobel_Prize_in_Physics#History", "History", NULL);
    cache_spec_add_result(s, "https://www.nobelprize.org/prizes/physics/1921/summary/",
                          "The Nobel Prize in Physics 1921",
                          "Albert Einstein won the prize for his services to theoretical physics", 0, NULL);
    cache_spec_add_result(s, "https://example.com/einstein-1921", "Einstein and the 1921 prize",
                          "How Einstein got his prize late", 1, NULL);
    return s;
}

/* The documented score of a candidate holding question words of total
 * idf m, with len distinct words against a mean of avg. */
static double bm25(double m, int len, double avg) {
    return m * 2.2 / (1 + 1.2 * (0.25 + 0.75 * len / avg));
}

static void test_speculator_ranking(void) {
    cache_spec *s = example_spec();
    if (!s) { T_CHECK(0); return; }
    const cache_cand *c;
    int n;
    eng_err e = {0};
    T_CHECK(cache_spec_rank(s, 10, &c, &n, &e) == ENG_OK);
    /* Question words, stemmed: won nobel priz physic 1921.  Seven
     * candidates: "won" is in 1 (idf ln 8), the others in 3 each (idf
     * ln(10/3)).  Distinct words per candidate: prize page 4 (nobel priz
     * physic history), Einstein 2, list 4 (list nobel laureat physic), main
     * page 2, 1921 in science 2, nobelprize.org 10 (its title, snippet and
     * path), example.com 5 (einstein 1921 priz got lat); mean 29/7. */
    double w8 = log(8.0), w3 = log(10.0 / 3.0), avg = 29.0 / 7;
    struct { const char *key; double score; } want[] = {
        {"https://www.nobelprize.org/prizes/physics/1921/summary", bm25(w8 + 4 * w3, 10, avg) + 0.25},
        {"https://en.wikipedia.org/wiki/Nobel_Prize_in_Physics", bm25(3 * w3, 4, avg)},
        {"https://en.wikipedia.org/wiki/List_of_Nobel_laureates_in_Physics", bm25(2 * w3, 4, avg)},
        {"https://example.com/einstein-1921", bm25(2 * w3, 5, avg) + 0.125},
        {"https://en.wikipedia.org/wiki/1921_in_science", bm25(w3, 2, avg)},
    };
    T_CHECKF(n == 5, "%d candidates ranked", n);
    for (int i = 0; i < n && i < 5; i++) {
        T_CHECKF(!strcmp(c[i].key, want[i].key) && fabs(c[i].score - want[i].score) < 1e-9,
                 "#%d: %s %.4f, want %s %.4f", i, c[i].key, c[i].score, want[i].key, want[i].score);
    }
    if (n >= 3) {
        T_CHECK(c[0].sources == CACHE_SPEC_SEARCH && c[0].search_rank == 0);
        T_CHECK(c[1].sources == CACHE_SPEC_LINK && c[1].search_rank == -1);
        T_CHECK(!strcmp(c[1].url, "https://en.wikipedia.org/wiki/Nobel_Prize_in_Physics"));
    }
    /* Top K. */
    T_CHECK(cache_spec_rank(s, 2, &c, &n, &e) == ENG_OK && n == 2 &&
            !strcmp(c[1].key, "https://en.wikipedia.org/wiki/Nobel_Prize_in_Physics"));
    /* Another proposer's score lifts the list page above the prize page. */
    T_CHECK(cache_spec_add(s, "https://en.wikipedia.org/wiki/List_of_Nobel_laureates_in_Physics", NULL, 2.0, &e) == ENG_OK);
    T_CHECK(cache_spec_rank(s, 10, &c, &n, &e) == ENG_OK && n == 5);
    if (n == 5) {
        T_CHECK(!strcmp(c[1].key, "https://en.wikipedia.org/wiki/List_of_Nobel_laureates_in_Physics"));
        T_CHECK(fabs(c[1].score - (bm25(2 * w3, 4, avg) + 2.0)) < 1e-9);
        T_CHECK(c[1].sources == (CACHE_SPEC_LINK | CACHE_SPEC_OTHER));
    }
    /* A proposed search counts its query words. */
    T_CHECK(cache_spec_add(s, "search:Nobel physics 1921 winner", NULL, 0.0, &e) == ENG_OK);
    T_CHECK(cache_spec_rank(s, 10, &c, &n, &e) == ENG_OK && n == 6);
    int found = 0;
    for (int i = 0; i < n; i++) found |= !strcmp(c[i].key, "search:nobel physics 1921 winner") && c[i].score > 1;
    T_CHECK(found);
    /* Bad input. */
    T_CHECK(cache_spec_add_link(s, "not a url", "x", &e) == ENG_OK);  /* kept as an opaque key */
    T_CHECK(cache_spec_add_link(s, "http://", "x", &e) == ENG_EINVAL);
    T_CHECK(cache_spec_add_result(s, "http://a.test/", "x", NULL, -1, &e) == ENG_EINVAL);
    T_CHECK(cache_spec_add(s, "http://a.test/", NULL, NAN, &e) == ENG_EINVAL);
    cache_spec_destroy(s);
    /* A question of only stop words ranks search results by rank alone. */
    T_CHECK(cache_spec_create("what is the", &s, &e) == ENG_OK);
    cache_spec_add_result(s, "http://r.test/2", "b", NULL, 2, NULL);
    cache_spec_add_result(s, "http://r.test/0", "a", NULL, 0, NULL);
    cache_spec_add_link(s, "http://r.test/link", "anything", NULL);
    T_CHECK(cache_spec_rank(s, 10, &c, &n, &e) == ENG_OK && n == 2 && !strcmp(c[0].key, "http://r.test/0"));
    cache_spec_destroy(s);
}

/* Score of key in a ranking (0 when not ranked). */
static double score_of(cache_spec *s, const char *key) {
    const cache_cand *c;
    int n;
    if (cache_spec_rank(s, 1000, &c, &n, NULL) != ENG_OK) return -1;
    for (int i = 0; i < n; i++) if (!strcmp(c[i].key, key)) return c[i].score;
    return 0;
}

/* Stemming joins word forms; the task's site, links above a search result
 * and hints move candidates as documented. */
static void test_speculator_signals(void) {
    eng_err e = {0};
    cache_spec *s;
    /* "funding"/"funded", "elections"/"election", "organized"/"organization". */
    T_CHECK(cache_spec_create("Who organized the funding of the 2024 elections?", &s, &e) == ENG_OK);
    cache_spec_add_link(s, "http://a.test/x", "Funded election work", NULL);
    cache_spec_add_link(s, "http://a.test/y", "Organization", NULL);
    cache_spec_add_link(s, "http://a.test/z", "Contact us", NULL);
    cache_spec_add_link(s, "http://a.test/w", "Fun and games", NULL);      /* "fun" is not "fund" */
    T_CHECKF(score_of(s, "http://a.test/x") > score_of(s, "http://a.test/y") && score_of(s, "http://a.test/y") > 0,
             "x %.3f y %.3f", score_of(s, "http://a.test/x"), score_of(s, "http://a.test/y"));
    T_CHECK(score_of(s, "http://a.test/z") == 0 && score_of(s, "http://a.test/w") == 0);
    cache_spec_destroy(s);

    /* Two identical results, one off the task's site: a quarter the score.
     * A link that is a directory above the on-site result gets 1 / (1 + its
     * rank); one above nothing, or above the site's root, gets nothing. */
    T_CHECK(cache_spec_create("annual meeting program 2024", &s, &e) == ENG_OK);
    T_CHECK(cache_spec_set_site(s, "https://WWW.Site.test/index.html", &e) == ENG_OK);
    T_CHECK(cache_spec_set_site(s, "not a url", &e) == ENG_EINVAL);
    cache_spec_add_result(s, "https://site.test/events/x/annual-program-2024", "Annual meeting program 2024", NULL, 1, NULL);
    cache_spec_add_result(s, "https://other.test/events/x/annual-program-2024", "Annual meeting program 2024", NULL, 1, NULL);
    cache_spec_add_link(s, "https://www.site.test/events", "Calendar", NULL);
    cache_spec_add_link(s, "https://site.test/even", "Calendar two", NULL);
    cache_spec_add_link(s, "https://site.test/", "Home", NULL);
    double on = score_of(s, "https://site.test/events/x/annual-program-2024");
    double off = score_of(s, "https://other.test/events/x/annual-program-2024");
    T_CHECKF(on > 0 && fabs(off - on / 4) < 1e-9, "on site %.4f, off %.4f", on, off);
    T_CHECKF(fabs(score_of(s, "https://www.site.test/events") - 0.5) < 1e-9, "above: %.4f",
             score_of(s, "https://www.site.test/events"));
    T_CHECK(score_of(s, "https://site.test/even") == 0 && score_of(s, "https://site.test/") == 0);
    cache_spec_destroy(s);

    /* A hint: 2 / (1 + rank / 5) at the page, half that above it. */
    T_CHECK(cache_spec_create("nothing in common", &s, &e) == ENG_OK);
    T_CHECK(cache_spec_add_hint(s, "http://h.test/a/b", 5, &e) == ENG_OK);
    T_CHECK(cache_spec_add_hint(s, "http://h.test/a/b", -1, &e) == ENG_EINVAL);
    cache_spec_add_link(s, "http://h.test/a/b", "x", NULL);
    cache_spec_add_link(s, "http://h.test/a", "y", NULL);
    cache_spec_add_link(s, "http://h.test/c", "z", NULL);
    T_CHECK(fabs(score_of(s, "http://h.test/a/b") - 1.0) < 1e-9);
    T_CHECK(fabs(score_of(s, "http://h.test/a") - 0.5) < 1e-9);
    T_CHECK(score_of(s, "http://h.test/c") == 0);
    cache_spec_destroy(s);
}

static void test_speculator_prefetch(void) {
    cache *c = open_tmp(0);
    if (!c) return;
    fx f;
    fx_init(&f, 1, 0);
    cache_prefetch *p;
    cache_prefetch_opts o = { .max_concurrent = 1 };
    if (cache_prefetch_create(c, fetch_counting, &f, &o, &p, NULL) != ENG_OK) { T_CHECK(0); return; }
    cache_spec *s = example_spec();
    T_CHECK(s && cache_spec_prefetch(s, p, 3, NULL) == ENG_OK);
    T_CHECK(cache_prefetch_wait_idle(p, 5000, NULL) == ENG_OK);
    T_CHECKF(calls(&f) == 3, "%d calls", calls(&f));
    int found = 0;
    cache_contains(c, "https://www.nobelprize.org/prizes/physics/1921/summary/", &found, NULL);
    T_CHECK(found);
    cache_contains(c, "https://en.wikipedia.org/wiki/Albert_Einstein", &found, NULL);
    T_CHECK(!found);
    cache_spec_destroy(s);
    cache_prefetch_destroy(p);
    close_tmp(c);
}

int main(void) {
    if (t_tmp_make("/tmp/brisk_prefetch_XXXXXX")) return 1;
    T_RUN(test_join_instead_of_second_fetch);
    T_RUN(test_join_while_checking);
    T_RUN(test_join_check_finds_cached);
    T_RUN(test_fetch_errors);
    T_RUN(test_dedup_requests);
    T_RUN(test_priority_and_lookup_of_queued);
    T_RUN(test_byte_budget);
    T_RUN(test_concurrency_cap);
    T_RUN(test_stats_script);
    T_RUN(test_unused_after_eviction);
    T_RUN(test_speculator_ranking);
    T_RUN(test_speculator_signals);
    T_RUN(test_speculator_prefetch);
    t_tmp_remove();
    T_DONE();
}
