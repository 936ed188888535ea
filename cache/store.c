/* store.c — the SQLite store: one table of entries keyed by a normalised key,
 * a meta row that triggers keep equal to the total stored bytes, LRU
 * eviction inside the put's transaction.  See cache.h for the connection
 * scheme (one writer behind a mutex, a pool of readers). */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cache.h"

#define APP_ID 1651668843        /* "brsk": marks the file as a brisk cache */
#define SCHEMA_VERSION 1
#define TOUCH_BATCH 64           /* pending last-access updates before a flush */
#define NEVER INT64_MAX

static const char *schema_sql =
    "CREATE TABLE IF NOT EXISTS entries("
    " key TEXT NOT NULL UNIQUE, value BLOB NOT NULL, ctype TEXT NOT NULL,"
    " fetched INTEGER NOT NULL, expires INTEGER NOT NULL, size INTEGER NOT NULL,"
    " last_access INTEGER NOT NULL, checksum INTEGER NOT NULL,"
    " fetch_us INTEGER NOT NULL, prefetched INTEGER NOT NULL, unread INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS entries_lru ON entries(last_access);"
    "CREATE INDEX IF NOT EXISTS entries_exp ON entries(expires);"
    "CREATE TABLE IF NOT EXISTS meta(id INTEGER PRIMARY KEY CHECK (id = 0),"
    " bytes INTEGER NOT NULL, entries INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES(0, 0, 0);"
    "CREATE TRIGGER IF NOT EXISTS entries_ai AFTER INSERT ON entries BEGIN"
    " UPDATE meta SET bytes = bytes + NEW.size, entries = entries + 1; END;"
    "CREATE TRIGGER IF NOT EXISTS entries_ad AFTER DELETE ON entries BEGIN"
    " UPDATE meta SET bytes = bytes - OLD.size, entries = entries - 1; END;"
    "CREATE TRIGGER IF NOT EXISTS entries_au AFTER UPDATE OF size ON entries BEGIN"
    " UPDATE meta SET bytes = bytes - OLD.size + NEW.size; END;";

/* Statements of the write connection. */
enum { W_PUT, W_OLD, W_EXPIRE, W_LRU, W_DEL, W_DEL_IF_EXPIRED, W_DEL_IF_SUM,
       W_TOUCH, W_CLAIM, W_META, W_N };
static const char *const w_sql[W_N] = {
    [W_PUT] = "INSERT INTO entries(key, value, ctype, fetched, expires, size, last_access,"
              " checksum, fetch_us, prefetched, unread)"
              " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?4, ?7, ?8, ?9, ?9)"
              " ON CONFLICT(key) DO UPDATE SET value = excluded.value, ctype = excluded.ctype,"
              " fetched = excluded.fetched, expires = excluded.expires, size = excluded.size,"
              " last_access = excluded.last_access, checksum = excluded.checksum,"
              " fetch_us = excluded.fetch_us, prefetched = excluded.prefetched,"
              " unread = excluded.unread",
    [W_OLD] = "SELECT size, unread FROM entries WHERE key = ?1",
    [W_EXPIRE] = "DELETE FROM entries WHERE expires <= ?1 RETURNING size, unread",
    [W_LRU] = "SELECT key, size FROM entries WHERE key <> ?1 ORDER BY last_access, rowid",
    [W_DEL] = "DELETE FROM entries WHERE key = ?1 RETURNING size, unread",
    [W_DEL_IF_EXPIRED] = "DELETE FROM entries WHERE key = ?1 AND expires <= ?2 RETURNING size, unread",
    [W_DEL_IF_SUM] = "DELETE FROM entries WHERE key = ?1 AND checksum = ?2 RETURNING size, unread",
    [W_TOUCH] = "UPDATE entries SET last_access = max(last_access, ?2) WHERE key = ?1",
    [W_CLAIM] = "UPDATE entries SET unread = 0 WHERE key = ?1 AND unread = 1",
    [W_META] = "SELECT bytes FROM meta",
};

/* Statements of a read connection. */
enum { R_GET, R_HAS, R_META, R_UNREAD, R_SCAN, R_N };
static const char *const r_sql[R_N] = {
    [R_GET] = ("SELECT value, ctype, fetched, expires, checksum, fetch_us, prefetched, unread"
               " FROM entries WHERE key = ?1"),
    [R_HAS] = "SELECT expires FROM entries WHERE key = ?1",
    [R_META] = "SELECT bytes, entries FROM meta",
    [R_UNREAD] = "SELECT total(size) FROM entries WHERE unread = 1",
    [R_SCAN] = "SELECT key, ctype, value, checksum FROM entries",
};

typedef struct rconn {
    sqlite3 *db;
    sqlite3_stmt *st[R_N];
    struct rconn *next;
} rconn;

typedef struct touch { char *key; int64_t t; } touch;

struct cache {
    char *path, *recovered;
    cache_opts o;
    pthread_mutex_t wmu;               /* the write connection and its statements */
    sqlite3 *w;
    sqlite3_stmt *ws[W_N];
    pthread_mutex_t rmu;               /* free read connections */
    rconn *rfree;
    pthread_mutex_t tmu;               /* pending last-access times */
    touch *touches;
    int n_touch;
    cache_stats n;                     /* counters, updated atomically */
};

#define COUNT(c, field, d) __atomic_fetch_add(&(c)->n.field, (d), __ATOMIC_RELAXED)

/* ---------------------------------------------------------------- helpers */
static int64_t now_ms(const cache *c) {
    if (c->o.now_ms) return c->o.now_ms(c->o.clock_ud);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; }
    return h;
}
/* Checksum of what an entry holds: key, content type, value. */
static int64_t checksum(const char *key, const char *ctype, const void *v, size_t n) {
    uint64_t h = 14695981039346656037ull;
    h = fnv(h, key, strlen(key) + 1);
    h = fnv(h, ctype, strlen(ctype) + 1);
    h = fnv(h, v, n);
    return (int64_t)h;
}

static int is_format_rc(int rc) {
    rc &= 0xff;
    return rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT;
}

/* Maps an SQLite failure to an ENG_* code with a message naming the file. */
static int db_err(const cache *c, sqlite3 *db, int rc, const char *what, eng_err *err) {
    int code = is_format_rc(rc) ? ENG_EFORMAT
             : (rc & 0xff) == SQLITE_NOMEM ? ENG_ENOMEM : ENG_EIO;
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (code == ENG_EFORMAT)
        return eng_seterr(err, code, "cache %s: %s: %s (the file is damaged; reopen with "
                          "recover to move it aside)", c->path, what, msg);
    return eng_seterr(err, code, "cache %s: %s: %s", c->path, what, msg);
}

static void reset(sqlite3_stmt *s) { sqlite3_reset(s); sqlite3_clear_bindings(s); }

static int exec(cache *c, const char *sql, eng_err *err) {
    int rc = sqlite3_exec(c->w, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? ENG_OK : db_err(c, c->w, rc, sql, err);
}

static int64_t expiry(const cache *c, int64_t now, int64_t ttl) {
    if (ttl < 0) return NEVER;
    if (ttl == 0) ttl = c->o.default_ttl_ms;
    return ttl > NEVER - now ? NEVER : now + ttl;
}

/* ------------------------------------------------------ read connections */
static void rconn_free(rconn *r) {
    if (!r) return;
    for (int i = 0; i < R_N; i++) sqlite3_finalize(r->st[i]);
    sqlite3_close_v2(r->db);
    free(r);
}

static int rconn_open(cache *c, rconn **out, eng_err *err) {
    rconn *r = calloc(1, sizeof *r);
    if (!r) return eng_seterr(err, ENG_ENOMEM, "cache %s: out of memory", c->path);
    int rc = sqlite3_open_v2(c->path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(r->db, c->o.busy_timeout_ms);
    for (int i = 0; i < R_N && rc == SQLITE_OK; i++)
        rc = sqlite3_prepare_v3(r->db, r_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->st[i], NULL);
    if (rc != SQLITE_OK) {
        int e = db_err(c, r->db, rc, "opening a read connection", err);
        rconn_free(r);
        return e;
    }
    *out = r;
    return ENG_OK;
}

/* Borrows a read connection (opens one when none is free). */
static int rconn_take(cache *c, rconn **out, eng_err *err) {
    pthread_mutex_lock(&c->rmu);
    rconn *r = c->rfree;
    if (r) c->rfree = r->next;
    pthread_mutex_unlock(&c->rmu);
    if (r) { *out = r; return ENG_OK; }
    return rconn_open(c, out, err);
}

static void rconn_give(cache *c, rconn *r) {
    pthread_mutex_lock(&c->rmu);
    r->next = c->rfree;
    c->rfree = r;
    pthread_mutex_unlock(&c->rmu);
}

/* ------------------------------------------------------ open and recover */
static void close_writer(cache *c) {
    for (int i = 0; i < W_N; i++) { sqlite3_finalize(c->ws[i]); c->ws[i] = NULL; }
    sqlite3_close_v2(c->w);
    c->w = NULL;
}

static int pragma_int(sqlite3 *db, const char *sql, int64_t *v) {
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) { *v = sqlite3_column_int64(s, 0); rc = SQLITE_OK; }
    sqlite3_finalize(s);
    return rc;
}

/* Runs PRAGMA quick_check; *why gets its first complaint (or ""). */
static int quick_check(sqlite3 *db, char *why, size_t cap) {
    sqlite3_stmt *s;
    why[0] = 0;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &s, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (t && strcmp(t, "ok")) {
            snprintf(why, cap, "%s", t);
            for (char *q = why; *q; q++) if (*q == '\n') *q = ' ';
        }
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

static int not_a_cache(cache *c, int *bad, const char *why, eng_err *err) {
    *bad = 1;
    return eng_seterr(err, ENG_EFORMAT, "cache %s: not a usable cache database (%s); open it "
                      "with recover to move it aside and start a fresh cache", c->path, why);
}

/* Checks that the file is a (possibly empty) brisk cache. */
static int check_file(cache *c, int *bad, eng_err *err) {
    int64_t app = 0, ver = 0, tables = 0;
    int rc = pragma_int(c->w, "PRAGMA application_id", &app);
    if (rc == SQLITE_OK) rc = pragma_int(c->w, "PRAGMA user_version", &ver);
    if (rc == SQLITE_OK) rc = pragma_int(c->w, "SELECT count(*) FROM sqlite_master", &tables);
    if (rc != SQLITE_OK) {
        if (is_format_rc(rc)) return not_a_cache(c, bad, sqlite3_errmsg(c->w), err);
        return db_err(c, c->w, rc, "reading the header", err);
    }
    if (tables > 0 && app != APP_ID) return not_a_cache(c, bad, "another program's database", err);
    if (tables > 0 && ver != SCHEMA_VERSION) return not_a_cache(c, bad, "unknown schema version", err);
    if (c->o.skip_check) return ENG_OK;
    char why[256];
    rc = quick_check(c->w, why, sizeof why);
    if (rc != SQLITE_OK) {
        if (is_format_rc(rc)) return not_a_cache(c, bad, sqlite3_errmsg(c->w), err);
        return db_err(c, c->w, rc, "checking the file", err);
    }
    if (why[0]) return not_a_cache(c, bad, why, err);
    return ENG_OK;
}

static int create_schema(cache *c, int *bad, eng_err *err) {
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d;",
             APP_ID, SCHEMA_VERSION);
    int rc = exec(c, "BEGIN IMMEDIATE", err);
    if (rc == ENG_OK) rc = exec(c, schema_sql, err);
    if (rc == ENG_OK) rc = exec(c, sql, err);
    if (rc == ENG_OK) rc = exec(c, "COMMIT", err);
    else sqlite3_exec(c->w, "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; i < W_N && rc == ENG_OK; i++) {
        int src = sqlite3_prepare_v3(c->w, w_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->ws[i], NULL);
        if (src != SQLITE_OK) rc = db_err(c, c->w, src, "preparing statements", err);
    }
    if (rc == ENG_EFORMAT) *bad = 1;
    return rc;
}

/* Opens the write connection; *bad = 1 when the file itself is the problem. */
static int open_writer(cache *c, int *bad, eng_err *err) {
    *bad = 0;
    int rc = sqlite3_open_v2(c->path, &c->w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) return db_err(c, c->w, rc, "cannot open", err);
    sqlite3_busy_timeout(c->w, c->o.busy_timeout_ms);
    sqlite3_stmt *s;
    rc = sqlite3_prepare_v2(c->w, "PRAGMA journal_mode=WAL", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
        if (rc == SQLITE_ROW) rc = (mode && !strcmp(mode, "wal")) ? SQLITE_OK : SQLITE_CANTOPEN;
        sqlite3_finalize(s);
    }
    if (rc != SQLITE_OK) {
        if (is_format_rc(rc)) return not_a_cache(c, bad, sqlite3_errmsg(c->w), err);
        return db_err(c, c->w, rc, "switching to WAL mode", err);
    }
    int e = exec(c, "PRAGMA synchronous=NORMAL", err);
    if (e == ENG_OK) e = check_file(c, bad, err);
    if (e == ENG_OK) e = create_schema(c, bad, err);
    return e;
}

/* Renames path (and its -wal, -shm, -journal) to path.corrupt-<time>. */
static int move_aside(cache *c, eng_err *err) {
    size_t cap = strlen(c->path) + 64;
    char *dst = malloc(cap), *a = malloc(cap), *b = malloc(cap);
    int rc = ENG_OK;
    if (!dst || !a || !b) { rc = eng_seterr(err, ENG_ENOMEM, "cache %s: out of memory", c->path); goto out; }
    long long t = (long long)time(NULL);
    snprintf(dst, cap, "%s.corrupt-%lld", c->path, t);
    for (int i = 1; access(dst, F_OK) == 0 && i < 1000; i++)
        snprintf(dst, cap, "%s.corrupt-%lld-%d", c->path, t, i);
    if (rename(c->path, dst) != 0) {
        rc = eng_seterr(err, ENG_EIO, "cache %s: cannot move the damaged file to %s: %s",
                        c->path, dst, strerror(errno));
        goto out;
    }
    static const char *const sfx[] = { "-wal", "-shm", "-journal" };
    for (int i = 0; i < 3; i++) {
        snprintf(a, cap, "%s%s", c->path, sfx[i]);
        snprintf(b, cap, "%s%s", dst, sfx[i]);
        if (access(a, F_OK) == 0 && rename(a, b) != 0 && unlink(a) != 0) {
            rc = eng_seterr(err, ENG_EIO, "cache %s: cannot move %s aside: %s",
                            c->path, a, strerror(errno));
            goto out;
        }
    }
    c->recovered = dst;
    dst = NULL;
out:
    free(dst); free(a); free(b);
    return rc;
}

static void cache_free(cache *c) {
    while (c->rfree) { rconn *r = c->rfree; c->rfree = r->next; rconn_free(r); }
    if (c->w) close_writer(c);
    for (int i = 0; i < c->n_touch; i++) free(c->touches[i].key);
    free(c->touches);
    pthread_mutex_destroy(&c->wmu);
    pthread_mutex_destroy(&c->rmu);
    pthread_mutex_destroy(&c->tmu);
    free(c->path);
    free(c->recovered);
    free(c);
}

int cache_open(const char *path, const cache_opts *opts, cache **out, eng_err *err) {
    *out = NULL;
    if (!path || !*path) return eng_seterr(err, ENG_EINVAL, "cache: empty path");
    cache *c = calloc(1, sizeof *c);
    if (!c) return eng_seterr(err, ENG_ENOMEM, "cache %s: out of memory", path);
    if (opts) c->o = *opts;
    if (c->o.max_bytes <= 0) c->o.max_bytes = 256ll << 20;
    if (c->o.default_ttl_ms <= 0) c->o.default_ttl_ms = 24ll * 3600 * 1000;
    if (c->o.busy_timeout_ms <= 0) c->o.busy_timeout_ms = 5000;
    pthread_mutex_init(&c->wmu, NULL);
    pthread_mutex_init(&c->rmu, NULL);
    pthread_mutex_init(&c->tmu, NULL);
    c->touches = calloc(TOUCH_BATCH, sizeof *c->touches);
    c->path = strdup(path);
    if (!c->touches || !c->path) {
        cache_free(c);
        return eng_seterr(err, ENG_ENOMEM, "cache %s: out of memory", path);
    }
    int bad = 0, rc = open_writer(c, &bad, err);
    if (rc != ENG_OK && bad && c->o.recover) {
        close_writer(c);
        rc = move_aside(c, err);
        if (rc == ENG_OK) rc = open_writer(c, &bad, err);
    }
    if (rc != ENG_OK) { cache_free(c); return rc; }
    *out = c;
    return ENG_OK;
}

const char *cache_recovered_path(const cache *c) { return c->recovered; }

/* ------------------------------------------------------ last-access times */
/* Writes pending last-access times; caller holds wmu and a transaction. */
static int flush_touches_locked(cache *c, eng_err *err) {
    pthread_mutex_lock(&c->tmu);
    touch t[TOUCH_BATCH];
    int n = c->n_touch;
    memcpy(t, c->touches, (size_t)n * sizeof *t);
    c->n_touch = 0;
    pthread_mutex_unlock(&c->tmu);
    int rc = ENG_OK;
    sqlite3_stmt *s = c->ws[W_TOUCH];
    for (int i = 0; i < n; i++) {
        if (rc == ENG_OK) {
            sqlite3_bind_text(s, 1, t[i].key, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, t[i].t);
            int src = sqlite3_step(s);
            if (src != SQLITE_DONE) rc = db_err(c, c->w, src, "updating access times", err);
            reset(s);
        }
        free(t[i].key);
    }
    return rc;
}

static int flush_touches(cache *c, eng_err *err) {
    pthread_mutex_lock(&c->wmu);
    int rc = exec(c, "BEGIN IMMEDIATE", err);
    if (rc == ENG_OK) rc = flush_touches_locked(c, err);
    if (rc == ENG_OK) rc = exec(c, "COMMIT", err);
    else sqlite3_exec(c->w, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&c->wmu);
    return rc;
}

/* Records a read of key at t; flushes when the batch is full. */
static int touch_key(cache *c, const char *key, int64_t t, eng_err *err) {
    int full = 0;
    pthread_mutex_lock(&c->tmu);
    int i = 0;
    while (i < c->n_touch && strcmp(c->touches[i].key, key)) i++;
    if (i < c->n_touch) {
        if (t > c->touches[i].t) c->touches[i].t = t;
    } else if (c->n_touch < TOUCH_BATCH) {     /* else dropped: only an LRU hint */
        char *k = strdup(key);
        if (k) c->touches[c->n_touch++] = (touch){ k, t };
    }
    full = c->n_touch >= TOUCH_BATCH;
    pthread_mutex_unlock(&c->tmu);
    return full ? flush_touches(c, err) : ENG_OK;
}

void cache_close(cache *c) {
    if (!c) return;
    if (c->n_touch) flush_touches(c, NULL);
    cache_free(c);
}

/* ------------------------------------------------------------------- put */
/* What a write transaction removed, applied to the counters on commit. */
typedef struct removed { int64_t expired, evictions, evicted_bytes, unused; } removed;

/* Steps a DELETE ... RETURNING size, unread; *n rows, *bytes, unread bytes. */
static int step_deleted(cache *c, sqlite3_stmt *s, int64_t *n, int64_t *bytes,
                        int64_t *unused, eng_err *err) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t size = sqlite3_column_int64(s, 0);
        (*n)++;
        *bytes += size;
        if (sqlite3_column_int(s, 1)) *unused += size;
    }
    int e = rc == SQLITE_DONE ? ENG_OK : db_err(c, c->w, rc, "deleting", err);
    reset(s);
    return e;
}

static int drop_expired(cache *c, int64_t now, removed *r, eng_err *err) {
    int64_t bytes = 0;
    sqlite3_bind_int64(c->ws[W_EXPIRE], 1, now);
    return step_deleted(c, c->ws[W_EXPIRE], &r->expired, &bytes, &r->unused, err);
}

static int meta_bytes(cache *c, int64_t *bytes, eng_err *err) {
    sqlite3_stmt *s = c->ws[W_META];
    int rc = sqlite3_step(s);
    *bytes = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    int e = rc == SQLITE_ROW ? ENG_OK : db_err(c, c->w, rc, "reading the total size", err);
    reset(s);
    return e;
}

/* Collects keys from the LRU end (not keep) until their sizes reach need. */
static int lru_victims(cache *c, const char *keep, int64_t need, char ***out, int *n, eng_err *err) {
    sqlite3_stmt *s = c->ws[W_LRU];
    sqlite3_bind_text(s, 1, keep, -1, SQLITE_STATIC);
    char **v = NULL;
    int nv = 0, cap = 0, rc = ENG_OK, src = SQLITE_DONE;
    int64_t planned = 0;
    while (rc == ENG_OK && planned < need && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(s, 0);
        if (nv == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(v, (size_t)cap * sizeof *p);
            if (!p) { rc = eng_seterr(err, ENG_ENOMEM, "cache %s: out of memory", c->path); break; }
            v = p;
        }
        if (!k || !(v[nv] = strdup(k))) { rc = eng_seterr(err, ENG_ENOMEM, "cache %s: out of memory", c->path); break; }
        planned += sqlite3_column_int64(s, 1);
        nv++;
    }
    if (rc == ENG_OK && src != SQLITE_ROW && src != SQLITE_DONE) rc = db_err(c, c->w, src, "listing entries", err);
    reset(s);
    *out = v;
    *n = nv;
    return rc;
}

/* Deletes least recently used entries (not keep) until bytes <= max. */
static int evict_lru(cache *c, const char *keep, removed *r, eng_err *err) {
    int64_t total;
    int rc = meta_bytes(c, &total, err);
    if (rc != ENG_OK || total <= c->o.max_bytes) return rc;
    char **victims;
    int nv;
    rc = lru_victims(c, keep, total - c->o.max_bytes, &victims, &nv, err);
    for (int i = 0; i < nv; i++) {
        if (rc == ENG_OK) {
            sqlite3_bind_text(c->ws[W_DEL], 1, victims[i], -1, SQLITE_STATIC);
            rc = step_deleted(c, c->ws[W_DEL], &r->evictions, &r->evicted_bytes, &r->unused, err);
        }
        free(victims[i]);
    }
    free(victims);
    return rc;
}

/* Adds the size of an unread prefetched entry that key's put replaces. */
static int replaced_unread(cache *c, const char *key, removed *r, eng_err *err) {
    sqlite3_stmt *s = c->ws[W_OLD];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_int(s, 1)) r->unused += sqlite3_column_int64(s, 0);
    int e = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? ENG_OK : db_err(c, c->w, rc, "reading", err);
    reset(s);
    return e;
}

static int upsert(cache *c, const char *key, const void *v, size_t n, const char *ctype,
                  int64_t now, int64_t ttl, int64_t fetch_us, int prefetched, eng_err *err) {
    sqlite3_stmt *s = c->ws[W_PUT];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(s, 2, n ? v : "", n, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, ctype, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now);
    sqlite3_bind_int64(s, 5, expiry(c, now, ttl));
    sqlite3_bind_int64(s, 6, (int64_t)n);
    sqlite3_bind_int64(s, 7, checksum(key, ctype, v, n));
    sqlite3_bind_int64(s, 8, fetch_us);
    sqlite3_bind_int(s, 9, prefetched ? 1 : 0);
    int rc = sqlite3_step(s);
    int e = rc == SQLITE_DONE ? ENG_OK : db_err(c, c->w, rc, "storing", err);
    reset(s);
    return e;
}

static void count_removed(cache *c, const removed *r) {
    COUNT(c, expired, r->expired);
    COUNT(c, evictions, r->evictions);
    COUNT(c, evicted_bytes, r->evicted_bytes);
    COUNT(c, unused_prefetch_dropped, r->unused);
}

int cache_put(cache *c, const char *key, const void *value, size_t len,
              const cache_meta *meta, eng_err *err) {
    if (!c || (!value && len)) return eng_seterr(err, ENG_EINVAL, "cache_put: bad arguments");
    if ((int64_t)len > c->o.max_bytes)
        return eng_seterr(err, ENG_EFULL, "cache %s: a value of %zu bytes exceeds the cap of %lld bytes",
                          c->path, len, (long long)c->o.max_bytes);
    cache_meta m = meta ? *meta : (cache_meta){0};
    const char *ctype = m.ctype ? m.ctype : "";
    char *k;
    int rc = cache_key(key, &k, err);
    if (rc != ENG_OK) return rc;
    int64_t now = now_ms(c);
    removed r = {0};
    pthread_mutex_lock(&c->wmu);
    rc = exec(c, "BEGIN IMMEDIATE", err);
    if (rc == ENG_OK) rc = flush_touches_locked(c, err);
    if (rc == ENG_OK) rc = drop_expired(c, now, &r, err);
    if (rc == ENG_OK) rc = replaced_unread(c, k, &r, err);
    if (rc == ENG_OK) rc = upsert(c, k, value, len, ctype, now, m.ttl_ms, m.fetch_us, m.prefetched, err);
    if (rc == ENG_OK) rc = evict_lru(c, k, &r, err);
    if (rc == ENG_OK) rc = exec(c, "COMMIT", err);
    if (rc != ENG_OK) sqlite3_exec(c->w, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&c->wmu);
    if (rc == ENG_OK) { count_removed(c, &r); COUNT(c, puts, 1); }
    free(k);
    return rc;
}

/* ------------------------------------------------------------- get, etc. */
/* A one-statement write (its own transaction): statement which deletes key
 * (under its condition on the int64 ?2); *n rows, unread bytes to r. */
static int delete_if(cache *c, int which, const char *key, int64_t arg, int64_t *n,
                     removed *r, eng_err *err) {
    pthread_mutex_lock(&c->wmu);
    sqlite3_stmt *s = c->ws[which];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (which != W_DEL) sqlite3_bind_int64(s, 2, arg);
    int64_t bytes = 0;
    int rc = step_deleted(c, s, n, &bytes, &r->unused, err);
    pthread_mutex_unlock(&c->wmu);
    return rc;
}

/* Clears the unread flag of a prefetched entry; *first = it was set. */
static int claim(cache *c, const char *key, int *first, eng_err *err) {
    pthread_mutex_lock(&c->wmu);
    sqlite3_stmt *s = c->ws[W_CLAIM];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *first = rc == SQLITE_DONE && sqlite3_changes(c->w) == 1;
    int e = rc == SQLITE_DONE ? ENG_OK : db_err(c, c->w, rc, "marking used", err);
    reset(s);
    pthread_mutex_unlock(&c->wmu);
    return e;
}

void cache_entry_free(cache_entry *e) {
    if (!e) return;
    free(e->value);
    free(e->ctype);
    memset(e, 0, sizeof *e);
}

enum { ROW_NONE, ROW_LIVE, ROW_EXPIRED, ROW_BAD };

/* Reads key's row on a read connection into *e; returns ROW_* in *state
 * and the stored checksum in *sum. */
static int read_row(cache *c, const char *key, int64_t now, cache_entry *e, int *state,
                    int64_t *sum, int *unread, eng_err *err) {
    rconn *r;
    int rc = rconn_take(c, &r, err);
    if (rc != ENG_OK) return rc;
    sqlite3_stmt *s = r->st[R_GET];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int src = sqlite3_step(s);
    *state = ROW_NONE;
    if (src == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(s, 0);
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        const char *ct = (const char *)sqlite3_column_text(s, 1);
        e->value = malloc(n + 1);
        e->ctype = strdup(ct ? ct : "");
        if (!e->value || !e->ctype) {
            rc = eng_seterr(err, ENG_ENOMEM, "cache %s: out of memory", c->path);
        } else {
            if (n) memcpy(e->value, v, n);
            e->value[n] = 0;
            e->len = n;
            e->fetched_ms = sqlite3_column_int64(s, 2);
            e->expires_ms = sqlite3_column_int64(s, 3);
            *sum = sqlite3_column_int64(s, 4);
            e->fetch_us = sqlite3_column_int64(s, 5);
            e->prefetched = sqlite3_column_int(s, 6);
            *unread = sqlite3_column_int(s, 7);
            *state = e->expires_ms <= now ? ROW_EXPIRED
                   : checksum(key, e->ctype, e->value, n) != *sum ? ROW_BAD : ROW_LIVE;
        }
    } else if (src != SQLITE_DONE) {
        rc = db_err(c, r->db, src, "reading", err);
    }
    reset(s);
    rconn_give(c, r);
    return rc;
}

/* cache_get (use: 1) and cache_peek (use: 0): a peek reads the row as it
 * stands and changes nothing, a get also drops an expired or corrupt row,
 * marks a prefetched entry used, touches its LRU time and counts. */
static int lookup(cache *c, const char *key, int use, cache_entry *out, int *found,
                  eng_err *err) {
    memset(out, 0, sizeof *out);
    *found = 0;
    char *k;
    int rc = cache_key(key, &k, err);
    if (rc != ENG_OK) return rc;
    int64_t now = now_ms(c), sum = 0;
    int state = ROW_NONE, unread = 0;
    removed r = {0};
    rc = read_row(c, k, now, out, &state, &sum, &unread, err);
    if (!use) {
        *found = rc == ENG_OK && state == ROW_LIVE;
    } else if (rc == ENG_OK && state == ROW_EXPIRED) {
        rc = delete_if(c, W_DEL_IF_EXPIRED, k, now, &r.expired, &r, err);
    } else if (rc == ENG_OK && state == ROW_BAD) {
        int64_t n = 0;
        COUNT(c, bad_checksums, 1);
        rc = delete_if(c, W_DEL_IF_SUM, k, sum, &n, &r, err);
    } else if (rc == ENG_OK && state == ROW_LIVE) {
        /* Bookkeeping only: a busy writer elsewhere must not fail a read. */
        *found = 1;
        if (unread) claim(c, k, &out->first_use, NULL);
        touch_key(c, k, now, NULL);
    }
    if (use) {
        count_removed(c, &r);
        if (rc == ENG_OK && *found) COUNT(c, hits, 1);
        if (rc == ENG_OK && !*found) COUNT(c, misses, 1);
    }
    if (!*found) cache_entry_free(out);
    free(k);
    return rc;
}

int cache_get(cache *c, const char *key, cache_entry *out, int *found, eng_err *err) {
    return lookup(c, key, 1, out, found, err);
}

int cache_peek(cache *c, const char *key, cache_entry *out, int *found, eng_err *err) {
    return lookup(c, key, 0, out, found, err);
}

int cache_contains(cache *c, const char *key, int *found, eng_err *err) {
    *found = 0;
    char *k;
    int rc = cache_key(key, &k, err);
    if (rc != ENG_OK) return rc;
    rconn *r;
    rc = rconn_take(c, &r, err);
    if (rc == ENG_OK) {
        sqlite3_stmt *s = r->st[R_HAS];
        sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW) *found = sqlite3_column_int64(s, 0) > now_ms(c);
        else if (src != SQLITE_DONE) rc = db_err(c, r->db, src, "reading", err);
        reset(s);
        rconn_give(c, r);
    }
    free(k);
    return rc;
}

int cache_delete(cache *c, const char *key, eng_err *err) {
    char *k;
    int rc = cache_key(key, &k, err);
    if (rc != ENG_OK) return rc;
    removed r = {0};
    int64_t n = 0;
    rc = delete_if(c, W_DEL, k, 0, &n, &r, err);
    COUNT(c, deletes, n);
    COUNT(c, unused_prefetch_dropped, r.unused);
    free(k);
    return rc;
}

int cache_mark_used(cache *c, const char *key, int *first_use, eng_err *err) {
    *first_use = 0;
    char *k;
    int rc = cache_key(key, &k, err);
    if (rc == ENG_OK) rc = claim(c, k, first_use, err);
    free(k);
    return rc;
}

int cache_verify(cache *c, int64_t *n_ok, int64_t *n_bad, eng_err *err) {
    *n_ok = *n_bad = 0;
    rconn *r;
    int rc = rconn_take(c, &r, err);
    if (rc != ENG_OK) return rc;
    sqlite3_stmt *s = r->st[R_SCAN];
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(s, 0);
        const char *ct = (const char *)sqlite3_column_text(s, 1);
        const void *v = sqlite3_column_blob(s, 2);
        size_t n = (size_t)sqlite3_column_bytes(s, 2);
        int ok = k && ct && checksum(k, ct, v, n) == sqlite3_column_int64(s, 3);
        if (ok) (*n_ok)++; else (*n_bad)++;
    }
    if (src != SQLITE_DONE) rc = db_err(c, r->db, src, "verifying", err);
    reset(s);
    rconn_give(c, r);
    return rc;
}

int cache_get_stats(cache *c, cache_stats *out, eng_err *err) {
    cache_stats n = {0};
#define LOAD(f) n.f = __atomic_load_n(&c->n.f, __ATOMIC_RELAXED)
    LOAD(hits); LOAD(misses); LOAD(puts); LOAD(deletes); LOAD(expired); LOAD(evictions);
    LOAD(evicted_bytes); LOAD(bad_checksums); LOAD(unused_prefetch_dropped);
#undef LOAD
    rconn *r;
    int rc = rconn_take(c, &r, err);
    if (rc != ENG_OK) return rc;
    sqlite3_stmt *s = r->st[R_META];
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) { n.bytes = sqlite3_column_int64(s, 0); n.entries = sqlite3_column_int64(s, 1); }
    reset(s);
    if (src == SQLITE_ROW) {
        s = r->st[R_UNREAD];
        src = sqlite3_step(s);
        if (src == SQLITE_ROW) n.unused_prefetch_stored = (int64_t)sqlite3_column_double(s, 0);
        reset(s);
    }
    if (src != SQLITE_ROW) rc = db_err(c, r->db, src, "reading stats", err);
    rconn_give(c, r);
    *out = n;
    return rc;
}
