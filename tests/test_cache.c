/* test_cache.c — the web cache store: keys, TTL, LRU, concurrency, crash
 * safety, corrupt files. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "t.h"
#include "t_tmp.h"
#include "cache.h"

static void path_in_tmp(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static int64_t fake_ms;
static int64_t fake_clock(void *ud) { (void)ud; return fake_ms; }

/* ------------------------------------------------------------------ keys */
static void test_url_normalisation(void) {
    static const struct { const char *in, *want; } cases[] = {
        {"http://example.com", "http://example.com/"},
        {"HTTP://Example.COM/", "http://example.com/"},
        {"http://example.com:80/a", "http://example.com/a"},
        {"https://example.com:443/a", "https://example.com/a"},
        {"https://example.com:80/a", "https://example.com:80/a"},
        {"http://example.com:8080/a", "http://example.com:8080/a"},
        {"http://example.com:/a", "http://example.com/a"},
        {"http://example.com:0080/a", "http://example.com/a"},
        {"http://example.com/a#frag", "http://example.com/a"},
        {"http://example.com/a/", "http://example.com/a"},
        {"http://example.com/a/b//", "http://example.com/a/b"},
        {"http://example.com/?b=2&a=1", "http://example.com/?a=1&b=2"},
        {"http://example.com?b=1&a=2", "http://example.com/?a=2&b=1"},
        {"http://example.com/p?z=1&a=2&m=3#x", "http://example.com/p?a=2&m=3&z=1"},
        {"http://example.com/p?", "http://example.com/p"},
        {"http://example.com/p?a=1&&b=2&", "http://example.com/p?a=1&b=2"},
        {"http://example.com/%7Euser", "http://example.com/~user"},
        {"http://example.com/%41%62c", "http://example.com/Abc"},
        {"http://example.com/a%2fb", "http://example.com/a%2Fb"},
        {"http://example.com/a%2Fb", "http://example.com/a%2Fb"},
        {"http://example.com/a b", "http://example.com/a%20b"},
        {"http://example.com/100%", "http://example.com/100%25"},
        {"http://example.com/a/./b/../c", "http://example.com/a/c"},
        {"http://example.com/../a", "http://example.com/a"},
        {"http://example.com/a/..", "http://example.com/"},
        {"http://User:Pw@Example.com/", "http://User:Pw@example.com/"},
        {"http://[::1]:80/x", "http://[::1]/x"},
        {"http://[FE80::1]:8080/", "http://[fe80::1]:8080/"},
        {"  https://example.com/x  ", "https://example.com/x"},
        {"https://en.wikipedia.org/wiki/Caf%C3%A9", "https://en.wikipedia.org/wiki/Caf%C3%A9"},
        {"https://example.com/q?name=%7ejo%2bhn", "https://example.com/q?name=~jo%2Bhn"},
        {"https://example.com/caf\xc3\xa9", "https://example.com/caf%C3%A9"},
        {"file:///tmp/x/", "file:///tmp/x"},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    T_CHECK(n >= 20);
    for (int i = 0; i < n; i++) {
        char *k = NULL;
        eng_err e = {0};
        int rc = cache_key_url(cases[i].in, &k, &e);
        T_CHECKF(rc == ENG_OK && k && !strcmp(k, cases[i].want), "\"%s\" -> \"%s\" (rc %d: %s), want \"%s\"",
                 cases[i].in, k ? k : "(null)", rc, e.msg, cases[i].want);
        /* Normalising twice changes nothing. */
        char *k2 = NULL;
        if (k && cache_key_url(k, &k2, NULL) == ENG_OK) T_CHECKF(!strcmp(k, k2), "not idempotent: %s -> %s", k, k2);
        free(k); free(k2);
    }
    static const char *const bad[] = {
        "example.com/a", "http://", "http://host:99999/", "http://host:12ab/", "mailto:x@y.z",
        "http://ho st/", "http://[::1/", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *k = NULL;
        eng_err e = {0};
        int rc = cache_key_url(bad[i], &k, &e);
        T_CHECKF(rc == ENG_EINVAL && !k && e.msg[0], "\"%s\" accepted as \"%s\"", bad[i], k ? k : "");
        free(k);
    }
    char *k = NULL;
    T_CHECK(cache_key_url(NULL, &k, NULL) == ENG_EINVAL);
}

static void test_search_and_dispatch_keys(void) {
    static const struct { const char *in, *want; } cases[] = {
        {"search:Nobel  Prize\t1921 ", "search:nobel prize 1921"},
        {"SEARCH:   x", "search:x"},
        {"search:a\n\nB", "search:a b"},
        {"https://EXAMPLE.com/a/", "https://example.com/a"},
        {"  doc:42 ", "doc:42"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *k = NULL;
        int rc = cache_key(cases[i].in, &k, NULL);
        T_CHECKF(rc == ENG_OK && k && !strcmp(k, cases[i].want), "\"%s\" -> \"%s\"", cases[i].in, k ? k : "(null)");
        free(k);
    }
    char *k = NULL;
    T_CHECK(cache_key_search("  Hello   World  ", &k, NULL) == ENG_OK && k && !strcmp(k, "search:hello world"));
    free(k); k = NULL;
    T_CHECK(cache_key_search("   ", &k, NULL) == ENG_EINVAL && !k);
    T_CHECK(cache_key("search:", &k, NULL) == ENG_EINVAL && !k);
    T_CHECK(cache_key("   ", &k, NULL) == ENG_EINVAL && !k);
    char *big = malloc(CACHE_KEY_MAX + 100);
    memset(big, 'a', CACHE_KEY_MAX + 99);
    big[CACHE_KEY_MAX + 99] = 0;
    eng_err e = {0};
    T_CHECK(cache_key(big, &k, &e) == ENG_EINVAL && !k && strstr(e.msg, "longer"));
    free(big);
}

/* ------------------------------------------------------------ basic store */
static cache *open_fake(const char *name, int64_t max_bytes) {
    char p[512];
    path_in_tmp(p, sizeof p, name);
    cache_opts o = { .max_bytes = max_bytes, .now_ms = fake_clock };
    cache *c = NULL;
    eng_err e = {0};
    int rc = cache_open(p, &o, &c, &e);
    T_CHECKF(rc == ENG_OK, "open %s: %s", p, e.msg);
    return c;
}

static void test_put_get_delete(void) {
    fake_ms = 1000000;
    cache *c = open_fake("basic.db", 0);
    if (!c) return;
    const char bin[] = { 'a', 0, 'b', 0, (char)0xff };
    cache_meta m = { .ctype = "application/octet-stream", .fetch_us = 1234 };
    eng_err e = {0};
    T_CHECK(cache_put(c, "HTTP://Example.com:80/x/?b=1&a=2#f", bin, sizeof bin, &m, &e) == ENG_OK);
    cache_entry en;
    int found = 0;
    /* Another spelling of the same URL finds it. */
    T_CHECK(cache_get(c, "http://example.com/x?a=2&b=1", &en, &found, &e) == ENG_OK && found);
    T_CHECK(en.len == sizeof bin && !memcmp(en.value, bin, sizeof bin) && en.value[en.len] == 0);
    T_CHECK(!strcmp(en.ctype, "application/octet-stream"));
    T_CHECK(en.fetched_ms == 1000000 && en.expires_ms == 1000000 + 24ll * 3600 * 1000);
    T_CHECK(en.fetch_us == 1234 && !en.prefetched && !en.first_use);
    cache_entry_free(&en);
    T_CHECK(cache_get(c, "http://example.com/y", &en, &found, &e) == ENG_OK && !found && !en.value);
    /* Empty values and no content type are fine. */
    T_CHECK(cache_put(c, "search:Empty", "", 0, NULL, &e) == ENG_OK);
    T_CHECK(cache_get(c, "search:  empty", &en, &found, &e) == ENG_OK && found && en.len == 0 && !strcmp(en.ctype, ""));
    cache_entry_free(&en);
    /* Replacing keeps one entry. */
    T_CHECK(cache_put(c, "http://example.com/x?a=2&b=1", "new", 3, NULL, &e) == ENG_OK);
    T_CHECK(cache_get(c, "http://example.com/x?a=2&b=1", &en, &found, &e) == ENG_OK && found &&
            en.len == 3 && !memcmp(en.value, "new", 3));
    cache_entry_free(&en);
    cache_stats st;
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK);
    T_CHECKF(st.entries == 2 && st.bytes == 3 && st.hits == 3 && st.misses == 1 && st.puts == 3,
             "entries %lld bytes %lld hits %lld misses %lld puts %lld", (long long)st.entries,
             (long long)st.bytes, (long long)st.hits, (long long)st.misses, (long long)st.puts);
    T_CHECK(cache_delete(c, "http://example.com/x?b=1&a=2", &e) == ENG_OK);
    T_CHECK(cache_contains(c, "http://example.com/x?a=2&b=1", &found, &e) == ENG_OK && !found);
    T_CHECK(cache_delete(c, "http://example.com/never", &e) == ENG_OK);
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK && st.deletes == 1 && st.entries == 1 && st.bytes == 0);
    /* Bad input: clear errors. */
    T_CHECK(cache_put(c, "", "x", 1, NULL, &e) == ENG_EINVAL);
    T_CHECK(cache_put(c, "k", NULL, 5, NULL, &e) == ENG_EINVAL);
    T_CHECK(cache_get(c, "http://", &en, &found, &e) == ENG_EINVAL && !found);
    cache_close(c);
    /* Reopening keeps the data. */
    c = open_fake("basic.db", 0);
    if (!c) return;
    T_CHECK(cache_get(c, "search:empty", &en, &found, &e) == ENG_OK && found);
    cache_entry_free(&en);
    cache_close(c);
}

static void test_ttl_expiry(void) {
    fake_ms = 5000;
    cache *c = open_fake("ttl.db", 0);
    if (!c) return;
    eng_err e = {0};
    cache_meta m1 = { .ttl_ms = 1000 }, never = { .ttl_ms = -1 };
    T_CHECK(cache_put(c, "k1", "one", 3, &m1, &e) == ENG_OK);
    T_CHECK(cache_put(c, "k2", "two", 3, NULL, &e) == ENG_OK);    /* default: 24 h */
    T_CHECK(cache_put(c, "k3", "three", 5, &never, &e) == ENG_OK);
    cache_entry en;
    int found;
    fake_ms = 5999;
    T_CHECK(cache_get(c, "k1", &en, &found, &e) == ENG_OK && found && en.expires_ms == 6000);
    cache_entry_free(&en);
    fake_ms = 6000;                                                 /* expiry is exclusive */
    T_CHECK(cache_contains(c, "k1", &found, &e) == ENG_OK && !found);
    T_CHECK(cache_get(c, "k1", &en, &found, &e) == ENG_OK && !found);
    cache_stats st;
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK && st.expired == 1 && st.entries == 2 && st.misses == 1);
    fake_ms = 5000 + 24ll * 3600 * 1000 - 1;
    T_CHECK(cache_get(c, "k2", &en, &found, &e) == ENG_OK && found);
    cache_entry_free(&en);
    fake_ms += 1;
    T_CHECK(cache_get(c, "k2", &en, &found, &e) == ENG_OK && !found);
    fake_ms = INT64_MAX / 2;
    T_CHECK(cache_get(c, "k3", &en, &found, &e) == ENG_OK && found && en.expires_ms == INT64_MAX);
    cache_entry_free(&en);
    /* A put removes every expired entry in its transaction. */
    fake_ms = 10000;
    T_CHECK(cache_put(c, "k4", "x", 1, &m1, &e) == ENG_OK);
    T_CHECK(cache_put(c, "k5", "y", 1, &m1, &e) == ENG_OK);
    fake_ms = 20000;
    T_CHECK(cache_put(c, "k6", "z", 1, &m1, &e) == ENG_OK);
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK);
    T_CHECKF(st.entries == 2 && st.expired == 4, "entries %lld expired %lld",
             (long long)st.entries, (long long)st.expired);
    cache_close(c);
}

static void put_n(cache *c, const char *key, size_t n, int prefetched) {
    char *v = malloc(n);
    memset(v, key[0], n);
    cache_meta m = { .prefetched = prefetched };
    eng_err e = {0};
    T_CHECKF(cache_put(c, key, v, n, &m, &e) == ENG_OK, "put %s: %s", key, e.msg);
    free(v);
}

static int has(cache *c, const char *key) {
    int found = 0;
    cache_contains(c, key, &found, NULL);
    return found;
}

static void test_lru_eviction(void) {
    fake_ms = 100;
    cache *c = open_fake("lru.db", 1000);
    if (!c) return;
    eng_err e = {0};
    put_n(c, "a", 300, 0);
    fake_ms = 101; put_n(c, "b", 300, 1);          /* prefetched, never read */
    fake_ms = 102; put_n(c, "c", 300, 0);
    fake_ms = 103;
    cache_entry en;
    int found;
    T_CHECK(cache_get(c, "a", &en, &found, &e) == ENG_OK && found);   /* a is now newest */
    cache_entry_free(&en);
    fake_ms = 104; put_n(c, "d", 300, 0);          /* 1200 > 1000: b goes */
    T_CHECK(has(c, "a") && !has(c, "b") && has(c, "c") && has(c, "d"));
    cache_stats st;
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK);
    T_CHECKF(st.bytes == 900 && st.evictions == 1 && st.evicted_bytes == 300 &&
             st.unused_prefetch_dropped == 300, "bytes %lld evictions %lld unused %lld",
             (long long)st.bytes, (long long)st.evictions, (long long)st.unused_prefetch_dropped);
    /* Order now c(102) a(103) d(104): 600 more bytes evict c then a. */
    fake_ms = 105; put_n(c, "e", 600, 0);
    T_CHECK(!has(c, "a") && !has(c, "c") && has(c, "d") && has(c, "e"));
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK && st.bytes == 900 && st.evictions == 3);
    /* Replacing an entry with a bigger one may evict others but never itself. */
    fake_ms = 106; put_n(c, "e", 1000, 0);
    T_CHECK(!has(c, "d") && has(c, "e"));
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK && st.bytes == 1000 && st.entries == 1);
    /* A value over the cap is refused and changes nothing. */
    char big[1001] = {0};
    T_CHECK(cache_put(c, "f", big, sizeof big, NULL, &e) == ENG_EFULL && strstr(e.msg, "exceeds"));
    T_CHECK(has(c, "e"));
    /* Reading a prefetched entry for the first time says so, once. */
    fake_ms = 107; put_n(c, "g", 10, 1);
    T_CHECK(cache_get(c, "g", &en, &found, &e) == ENG_OK && found && en.prefetched && en.first_use);
    cache_entry_free(&en);
    T_CHECK(cache_get(c, "g", &en, &found, &e) == ENG_OK && found && en.prefetched && !en.first_use);
    cache_entry_free(&en);
    cache_close(c);
}

/* A peek reads without using: no hit counted, a prefetched entry stays
 * unread, LRU order unchanged, an expired entry missing but left alone. */
static void test_peek(void) {
    fake_ms = 100;
    cache *c = open_fake("peek.db", 700);
    if (!c) return;
    eng_err e = {0};
    put_n(c, "a", 300, 1);
    fake_ms = 101; put_n(c, "b", 300, 0);
    fake_ms = 102;
    cache_entry en;
    int found = 0;
    T_CHECK(cache_peek(c, "a", &en, &found, &e) == ENG_OK && found && en.len == 300 && en.value[0] == 'a' &&
            en.prefetched && !en.first_use);
    cache_entry_free(&en);
    T_CHECK(cache_peek(c, "zz", &en, &found, &e) == ENG_OK && !found && !en.value);
    T_CHECK(cache_peek(c, "http://", &en, &found, &e) == ENG_EINVAL && !found);
    cache_stats st;
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK && st.hits == 0 && st.misses == 0 &&
            st.unused_prefetch_stored == 300);
    fake_ms = 103; put_n(c, "c", 300, 0);           /* a is still the oldest: it goes */
    T_CHECK(!has(c, "a") && has(c, "b") && has(c, "c"));
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK && st.unused_prefetch_dropped == 300);
    cache_meta m = { .ttl_ms = 10, .prefetched = 1 };
    T_CHECK(cache_put(c, "d", "dd", 2, &m, &e) == ENG_OK);
    T_CHECK(cache_peek(c, "d", &en, &found, &e) == ENG_OK && found);
    cache_entry_free(&en);
    /* Still unread: the first real read says so. */
    T_CHECK(cache_get(c, "d", &en, &found, &e) == ENG_OK && found && en.first_use);
    cache_entry_free(&en);
    fake_ms = 200;
    T_CHECK(cache_peek(c, "d", &en, &found, &e) == ENG_OK && !found);
    T_CHECK(cache_get_stats(c, &st, &e) == ENG_OK && st.expired == 0 && st.entries == 3);
    cache_close(c);
}

/* Many reads of the same entries keep their last access in memory; the next
 * put must still see them (LRU over more touches than one batch). */
static void test_lru_many_touches(void) {
    fake_ms = 1000;
    cache *c = open_fake("lru2.db", 100 * 10);
    if (!c) return;
    char k[32];
    for (int i = 0; i < 100; i++) { snprintf(k, sizeof k, "k%03d", i); fake_ms++; put_n(c, k, 10, 0); }
    /* Read the first 90 in order; the last ten, never read, are the oldest. */
    for (int i = 0; i < 90; i++) {
        snprintf(k, sizeof k, "k%03d", i);
        fake_ms++;
        cache_entry en; int found;
        cache_get(c, k, &en, &found, NULL);
        cache_entry_free(&en);
    }
    fake_ms++;
    put_n(c, "new", 50, 0);
    int gone = 0, kept_read = 1;
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%03d", i);
        if (i >= 90) gone += !has(c, k);
        else kept_read &= has(c, k);
    }
    T_CHECKF(gone == 5 && kept_read, "gone %d kept_read %d", gone, kept_read);
    cache_close(c);
}

/* ------------------------------------------------------------ concurrency */
/* A value that describes itself: "K<key> V<version> L<len>|" then len bytes
 * of a pattern, then the 16 hex digits of an FNV hash of all before. */
static size_t make_value(char *buf, int key, long version, size_t len) {
    int h = snprintf(buf, 64, "K%d V%ld L%zu|", key, version, len);
    for (size_t i = 0; i < len; i++) buf[h + i] = (char)('a' + (key * 31 + version * 7 + (long)i) % 26);
    uint64_t f = 14695981039346656037ull;
    for (size_t i = 0; i < h + len; i++) { f ^= (unsigned char)buf[i]; f *= 1099511628211ull; }
    snprintf(buf + h + len, 17, "%016llx", (unsigned long long)f);
    return h + len + 16;
}

/* 1 if v[0..n) is exactly a value make_value wrote; *key, *version out. */
static int check_value(const char *v, size_t n, int *key, long *version) {
    size_t len;
    int h;
    if (n < 20 || sscanf(v, "K%d V%ld L%zu|%n", key, version, &len, &h) != 3) return 0;
    if ((size_t)h + len + 16 != n || len > 1 << 20) return 0;
    char *want = malloc(n + 64);
    if (!want) return 0;
    size_t m = make_value(want, *key, *version, len);
    int ok = m == n && !memcmp(want, v, n);
    free(want);
    return ok;
}

enum { CONC_KEYS = 32 };

typedef struct conc {
    cache *c;
    int stop;                   /* atomic */
    long written[CONC_KEYS];    /* highest version put per key, set before the put */
    long reads, hits, bad, future;
} conc;

static void *conc_writer(void *arg) {
    conc *s = arg;
    char *buf = malloc(70000);
    unsigned seed = 7;
    for (long v = 1; !__atomic_load_n(&s->stop, __ATOMIC_RELAXED); v++) {
        int k = (int)(rand_r(&seed) % CONC_KEYS);
        size_t len = 50 + rand_r(&seed) % 20000;
        size_t n = make_value(buf, k, v, len);
        char key[32];
        snprintf(key, sizeof key, "http://c.test/k%d", k);
        __atomic_store_n(&s->written[k], v, __ATOMIC_SEQ_CST);
        if (v % 17 == 0) cache_delete(s->c, key, NULL);
        else cache_put(s->c, key, buf, n, NULL, NULL);
    }
    free(buf);
    return NULL;
}

static void *conc_reader(void *arg) {
    conc *s = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    long reads = 0, hits = 0, bad = 0, future = 0;
    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
        int k = (int)(rand_r(&seed) % CONC_KEYS), key2;
        char key[32];
        snprintf(key, sizeof key, "http://c.test/k%d", k);
        cache_entry en;
        int found = 0;
        long ver;
        if (cache_get(s->c, key, &en, &found, NULL) != ENG_OK) { bad++; continue; }
        reads++;
        if (!found) continue;
        hits++;
        if (!check_value(en.value, en.len, &key2, &ver) || key2 != k) bad++;
        else if (ver > __atomic_load_n(&s->written[k], __ATOMIC_SEQ_CST)) future++;
        cache_entry_free(&en);
    }
    __atomic_fetch_add(&s->reads, reads, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->hits, hits, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->bad, bad, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->future, future, __ATOMIC_RELAXED);
    return NULL;
}

static void test_concurrency(void) {
    char p[512];
    path_in_tmp(p, sizeof p, "conc.db");
    conc s = {0};
    cache_opts o = { .max_bytes = 150000 };        /* small: evictions run during the test */
    eng_err e = {0};
    if (cache_open(p, &o, &s.c, &e) != ENG_OK) { T_CHECKF(0, "%s", e.msg); return; }
    pthread_t w, r[8];
    pthread_create(&w, NULL, conc_writer, &s);
    for (int i = 0; i < 8; i++) pthread_create(&r[i], NULL, conc_reader, &s);
    usleep(2500 * 1000);
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
    pthread_join(w, NULL);
    for (int i = 0; i < 8; i++) pthread_join(r[i], NULL);
    cache_stats st;
    T_CHECK(cache_get_stats(s.c, &st, &e) == ENG_OK);
    printf("  8 readers: %ld reads, %ld hits; writer: %lld puts, %lld evictions\n",
           s.reads, s.hits, (long long)st.puts, (long long)st.evictions);
    T_CHECKF(s.bad == 0 && s.future == 0, "bad %ld future %ld", s.bad, s.future);
    T_CHECK(s.reads > 1000 && s.hits > 100 && st.puts > 100 && st.evictions > 0);
    T_CHECK(st.bytes <= 150000);
    int64_t ok = 0, bad = 0;
    T_CHECK(cache_verify(s.c, &ok, &bad, &e) == ENG_OK && bad == 0 && ok > 0);
    cache_close(s.c);
}

/* --------------------------------------------------------- crash safety */
static void crash_child(const char *path) {
    cache_opts o = { .max_bytes = 2 << 20, .skip_check = 1 };
    cache *c;
    if (cache_open(path, &o, &c, NULL) != ENG_OK) _exit(3);
    char *buf = malloc(70000);
    unsigned seed = (unsigned)getpid();
    time_t end = time(NULL) + 20;        /* in case nobody kills us */
    for (long v = 1; time(NULL) < end; v++) {
        int k = (int)(rand_r(&seed) % 200);
        size_t n = make_value(buf, k, v, 100 + rand_r(&seed) % 40000);
        char key[32];
        snprintf(key, sizeof key, "http://crash.test/%d", k);
        cache_put(c, key, buf, n, NULL, NULL);
    }
    _exit(0);
}

static void test_crash_safety(void) {
    char p[512];
    path_in_tmp(p, sizeof p, "crash.db");
    unsigned seed = 42;
    long total = 0;
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        if (pid < 0) { T_CHECK(0); return; }
        if (pid == 0) crash_child(p);
        usleep((useconds_t)(60000 + rand_r(&seed) % 200000));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        T_CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "round %d: child status %d", round, status);
        cache *c = NULL;
        eng_err e = {0};
        int rc = cache_open(p, NULL, &c, &e);
        T_CHECKF(rc == ENG_OK, "round %d: reopen: %s", round, e.msg);
        if (rc != ENG_OK) return;
        int64_t ok = 0, bad = 0;
        T_CHECK(cache_verify(c, &ok, &bad, &e) == ENG_OK);
        T_CHECKF(bad == 0, "round %d: %lld bad checksums", round, (long long)bad);
        long whole = 0, broken = 0;
        for (int k = 0; k < 200; k++) {
            char key[32];
            snprintf(key, sizeof key, "http://crash.test/%d", k);
            cache_entry en;
            int found = 0, k2;
            long ver;
            if (cache_get(c, key, &en, &found, &e) != ENG_OK) { broken++; continue; }
            if (!found) continue;
            if (check_value(en.value, en.len, &k2, &ver) && k2 == k) whole++;
            else broken++;
            cache_entry_free(&en);
        }
        T_CHECKF(broken == 0 && whole == ok, "round %d: %ld whole, %ld broken, %lld checked",
                 round, whole, broken, (long long)ok);
        total += whole;
        cache_close(c);
    }
    printf("  6 kills; %ld complete entries found over all reopenings\n", total);
    T_CHECK(total > 0);
}

/* --------------------------------------------------------- corrupt files */
static void write_file(const char *p, const void *data, size_t n) {
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

/* A real cache of about 400 KB, closed. */
static void make_full_cache(const char *p) {
    cache *c;
    if (cache_open(p, NULL, &c, NULL) != ENG_OK) return;
    char v[4000];
    for (int i = 0; i < 100; i++) {
        char k[32];
        snprintf(k, sizeof k, "k%d", i);
        memset(v, 'a' + i % 26, sizeof v);
        cache_put(c, k, v, sizeof v, NULL, NULL);
    }
    cache_close(c);
}

/* Opening p fails with a message naming it; recover moves it aside (its
 * bytes kept) and gives a working, empty cache. */
static void check_corrupt(const char *p, const char *what) {
    long size = file_size(p);
    cache *c = NULL;
    eng_err e = {0};
    int rc = cache_open(p, NULL, &c, &e);
    T_CHECKF(rc == ENG_EFORMAT && !c, "%s: open gave %d", what, rc);
    T_CHECKF(strstr(e.msg, p) != NULL, "%s: message does not name the file: %s", what, e.msg);
    printf("  %s: %s\n", what, e.msg);
    if (c) cache_close(c);
    T_CHECKF(file_size(p) == size, "%s: a failed open changed the file", what);
    cache_opts o = { .recover = 1 };
    rc = cache_open(p, &o, &c, &e);
    T_CHECKF(rc == ENG_OK, "%s: recover: %s", what, e.msg);
    if (rc != ENG_OK) return;
    const char *moved = cache_recovered_path(c);
    T_CHECK(moved && strstr(moved, ".corrupt-") && !strncmp(moved, p, strlen(p)));
    if (moved) T_CHECKF(file_size(moved) == size, "%s: moved file has %ld bytes, want %ld", what, file_size(moved), size);
    int found = 1;
    T_CHECK(cache_contains(c, "k1", &found, &e) == ENG_OK && !found);
    T_CHECK(cache_put(c, "k1", "fresh", 5, NULL, &e) == ENG_OK);
    cache_entry en;
    T_CHECK(cache_get(c, "k1", &en, &found, &e) == ENG_OK && found && en.len == 5);
    cache_entry_free(&en);
    cache_close(c);
    /* The fresh cache opens cleanly now. */
    T_CHECK(cache_open(p, NULL, &c, &e) == ENG_OK && cache_recovered_path(c) == NULL);
    if (c) cache_close(c);
}

static void test_corrupt_files(void) {
    char p[512];
    path_in_tmp(p, sizeof p, "garbage.db");
    unsigned char junk[65536];
    unsigned seed = 9;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)rand_r(&seed);
    write_file(p, junk, sizeof junk);
    check_corrupt(p, "garbage bytes");

    path_in_tmp(p, sizeof p, "text.db");
    const char *txt = "this is a text file, not a database\n";
    write_file(p, txt, strlen(txt));
    check_corrupt(p, "text file");

    path_in_tmp(p, sizeof p, "trunc.db");
    make_full_cache(p);
    long n = file_size(p);
    T_CHECK(n > 100000);
    T_CHECK(truncate(p, n / 3) == 0);
    check_corrupt(p, "truncated to a third");

    path_in_tmp(p, sizeof p, "trunc2.db");
    make_full_cache(p);
    T_CHECK(truncate(p, 60) == 0);
    check_corrupt(p, "truncated inside the header");

    path_in_tmp(p, sizeof p, "damaged.db");
    make_full_cache(p);
    FILE *f = fopen(p, "r+b");
    if (f) {                                    /* scribble over page 2 onwards */
        fseek(f, 4096, SEEK_SET);
        fwrite(junk, 1, 3 * 4096, f);
        fclose(f);
    }
    check_corrupt(p, "damaged pages");

    path_in_tmp(p, sizeof p, "other.db");
    sqlite3 *db;
    if (sqlite3_open(p, &db) == SQLITE_OK) {
        sqlite3_exec(db, "CREATE TABLE notes(id INTEGER, body TEXT); INSERT INTO notes VALUES(1,'x');",
                     NULL, NULL, NULL);
        sqlite3_close(db);
    }
    check_corrupt(p, "another program's database");

    /* An unreadable path is an I/O error, not something to move aside. */
    cache *c = NULL;
    eng_err e = {0};
    cache_opts o = { .recover = 1 };
    T_CHECK(cache_open("/nonexistent-dir/x.db", &o, &c, &e) == ENG_EIO && !c && strstr(e.msg, "/nonexistent-dir/x.db"));
    T_CHECK(cache_open("", NULL, &c, &e) == ENG_EINVAL);
}

/* A value changed behind the cache's back is caught by its checksum. */
static void test_bad_checksum(void) {
    fake_ms = 1000;
    cache *c = open_fake("sum.db", 0);
    if (!c) return;
    put_n(c, "victim", 100, 0);
    put_n(c, "other", 100, 0);
    cache_close(c);
    char p[512];
    path_in_tmp(p, sizeof p, "sum.db");
    sqlite3 *db;
    T_CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    T_CHECK(sqlite3_exec(db, "UPDATE entries SET value = zeroblob(100) WHERE key = 'victim'",
                         NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    c = open_fake("sum.db", 0);
    if (!c) return;
    int64_t ok = 0, bad = 0;
    T_CHECK(cache_verify(c, &ok, &bad, NULL) == ENG_OK && ok == 1 && bad == 1);
    cache_entry en;
    int found = 1;
    T_CHECK(cache_get(c, "victim", &en, &found, NULL) == ENG_OK && !found);
    T_CHECK(cache_get(c, "other", &en, &found, NULL) == ENG_OK && found);
    cache_entry_free(&en);
    cache_stats st;
    T_CHECK(cache_get_stats(c, &st, NULL) == ENG_OK && st.bad_checksums == 1 && st.entries == 1);
    cache_close(c);
}

int main(void) {
    if (t_tmp_make("/tmp/brisk_cache_XXXXXX")) return 1;
    T_RUN(test_url_normalisation);
    T_RUN(test_search_and_dispatch_keys);
    T_RUN(test_put_get_delete);
    T_RUN(test_ttl_expiry);
    T_RUN(test_lru_eviction);
    T_RUN(test_lru_many_touches);
    T_RUN(test_peek);
    T_RUN(test_concurrency);
    T_RUN(test_crash_safety);
    T_RUN(test_corrupt_files);
    T_RUN(test_bad_checksum);
    t_tmp_remove();
    T_DONE();
}
