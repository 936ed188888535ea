/* cache.h — brisk's web cache: web pages and search results kept in SQLite,
 * a speculative prefetcher that fetches likely next pages in the background,
 * and a speculator that ranks candidate next actions (in the spirit of
 * SpecCache: while the model thinks, the pages it will probably open next are
 * already on their way).
 *
 * Parts, in this order below (and their files):
 *   cache_*           the store: one SQLite table keyed by a normalised key
 *                     (key.c, store.c).
 *   cache_prefetch_*  a pthread pool that fills the store through a caller's
 *                     fetch callback, and cache_lookup_or_fetch for callers
 *                     (prefetch.c).
 *   cache_spec_*      ranks candidate URLs/searches from cheap signals
 *                     (prefetch_rank.c; not the engine's speculative decoding).
 *   cache_draft_*     a small model's scores for candidate links, another
 *                     proposer for cache_spec (prefetch_draft.c).
 *   cache_web_*       the cache in front of the agent's fetch_url tool (web.c).
 *
 * Concurrency.  One cache handle is shared by every thread of a process.  It
 * holds one write connection behind a mutex and a pool of read connections:
 * a reader borrows a connection from the pool (opening one if none is free)
 * and gives it back, so any number of threads read at once; SQLite's WAL mode
 * lets those reads run while a write commits.  SQLite admits one writer at a
 * time anyway, so funnelling this process's writes through one connection
 * and a mutex costs nothing and avoids busy-retry loops between our own
 * connections; busy_timeout covers writers in other processes.  Callers never
 * manage per-thread handles.  Reads do not write: the "last access" used for
 * LRU is recorded in memory and written in the next write transaction (a
 * put, or a batch of 64 keys), so readers never queue behind the writer.
 * (The one exception: the first read of a prefetched entry clears its
 * "unread" flag at once, so "time saved" is counted exactly once.)
 *
 * Crash safety.  Every entry carries a checksum of key, content type and
 * value; a read that finds a bad checksum deletes the entry and reports a
 * miss.  A file that is not a usable cache (not SQLite, corrupt, another
 * program's database) makes cache_open fail with ENG_EFORMAT naming the
 * file, or, with opts.recover, be moved aside to "<path>.corrupt-<time>"
 * (its -wal/-shm too) and replaced by a fresh cache. */
#ifndef CACHE_H
#define CACHE_H
#include <stddef.h>
#include <stdint.h>
#include "eng.h"

/* ------------------------------------------------------------------ keys */
/* Longest normalised key accepted, in bytes. */
#define CACHE_KEY_MAX 8192

/* Normalises an absolute URL: lowercase scheme and host, default port
 * dropped, fragment dropped, "." and ".." segments resolved, query
 * parameters sorted (empty ones dropped), trailing slash removed from paths
 * other than "/", percent-escapes of unreserved characters decoded and other
 * escapes uppercased, bytes that may not appear in a URL escaped.  *out is
 * malloc'd. */
int cache_key_url(const char *url, char **out, eng_err *err);
/* "search:" + the query lowercased (ASCII) with whitespace collapsed. */
int cache_key_search(const char *query, char **out, eng_err *err);
/* The key every cache call uses: "search:<q>" goes through cache_key_search,
 * "scheme://..." through cache_key_url, anything else is kept verbatim. */
int cache_key(const char *raw, char **out, eng_err *err);

/* ----------------------------------------------------------------- store */
typedef struct cache cache;

typedef struct cache_opts {
    int64_t max_bytes;        /* cap on stored value bytes (keys and metadata
                                 not counted); 0 = 256 MiB */
    int64_t default_ttl_ms;   /* TTL when a put passes 0; 0 = 24 h */
    int     busy_timeout_ms;  /* waiting on other processes' writes; 0 = 5000 */
    int     recover;          /* corrupt file: move it aside, start fresh */
    int     skip_check;       /* skip PRAGMA quick_check at open (large caches) */
    /* Wall clock in ms for fetched/expiry/last-access times; NULL = real
     * time.  Tests inject a fake one. */
    int64_t (*now_ms)(void *ud);
    void   *clock_ud;
} cache_opts;

/* opts may be NULL (defaults). */
int  cache_open(const char *path, const cache_opts *opts, cache **out, eng_err *err);
/* Writes pending last-access times, closes every connection. */
void cache_close(cache *c);
/* The file the broken cache was moved to when open recovered, else NULL. */
const char *cache_recovered_path(const cache *c);

/* What a put stores besides the value. */
typedef struct cache_meta {
    const char *ctype;   /* content type; NULL = "" */
    int64_t ttl_ms;      /* 0 = opts.default_ttl_ms, < 0 = never expires */
    int64_t fetch_us;    /* how long the fetch took (for "time saved") */
    int     prefetched;  /* stored by the prefetcher, not yet read */
} cache_meta;

/* A copy of one entry; free with cache_entry_free. */
typedef struct cache_entry {
    char   *value;       /* len bytes plus a terminating NUL */
    size_t  len;
    char   *ctype;
    int64_t fetched_ms;
    int64_t expires_ms;  /* INT64_MAX = never */
    int64_t fetch_us;
    int     prefetched;  /* was stored by the prefetcher */
    int     first_use;   /* prefetched and this is its first read */
} cache_entry;

void cache_entry_free(cache_entry *e);

/* Stores value under key (normalised with cache_key), replacing any entry,
 * then evicts expired entries and least recently used ones until the stored
 * bytes fit max_bytes, all in one transaction.  A value larger than
 * max_bytes is refused with ENG_EFULL.  meta may be NULL. */
int cache_put(cache *c, const char *key, const void *value, size_t len,
              const cache_meta *meta, eng_err *err);
/* *found = 1 and *out filled on a hit.  An expired entry is a miss and is
 * deleted; so is one whose checksum does not match. */
int cache_get(cache *c, const char *key, cache_entry *out, int *found, eng_err *err);
/* Like cache_get for a reader that is not a use (a speculator looking at
 * what was prefetched): nothing counted, the entry neither marked used nor
 * touched for LRU; expired or corrupt entries are reported missing and
 * left for cache_get to remove. */
int cache_peek(cache *c, const char *key, cache_entry *out, int *found, eng_err *err);
/* Like cache_get without copying or counting: is there a live entry? */
int cache_contains(cache *c, const char *key, int *found, eng_err *err);
int cache_delete(cache *c, const char *key, eng_err *err);
/* Marks a prefetched entry as used without reading it (a caller that got
 * the body another way); *first_use = 1 if it had not been used before. */
int cache_mark_used(cache *c, const char *key, int *first_use, eng_err *err);
/* Recomputes every entry's checksum; counts only, nothing is changed. */
int cache_verify(cache *c, int64_t *n_ok, int64_t *n_bad, eng_err *err);

typedef struct cache_stats {
    /* Counted by this handle since open. */
    int64_t hits, misses, puts, deletes;
    int64_t expired;            /* entries removed because their TTL passed */
    int64_t evictions, evicted_bytes;   /* LRU, to stay under max_bytes */
    int64_t bad_checksums;
    int64_t unused_prefetch_dropped;    /* bytes prefetched, removed unread */
    /* From the database now (every process's entries). */
    int64_t entries, bytes;
    int64_t unused_prefetch_stored;     /* bytes prefetched, not yet read */
} cache_stats;

int cache_get_stats(cache *c, cache_stats *out, eng_err *err);

/* ------------------------------------------------------------ prefetcher */
/* Fetches key (a normalised key: a URL, or "search:<query>"): on success sets
 * *body (malloc'd, *len bytes) and *ctype (malloc'd or NULL) and returns
 * ENG_OK; else returns an ENG_* code with err set.  Called from pool
 * threads and from cache_lookup_or_fetch callers, concurrently. */
typedef int (*cache_fetch_fn)(void *ud, const char *key, char **body, size_t *len,
                              char **ctype, eng_err *err);

typedef struct cache_prefetch cache_prefetch;

typedef struct cache_prefetch_opts {
    int     max_concurrent;  /* pool threads = most prefetch fetches at once; 0 = 4 */
    int64_t byte_budget;     /* bytes prefetches may fetch; 0 = 64 MiB */
    int     max_queue;       /* queued requests kept (lowest priority dropped); 0 = 256 */
    int64_t ttl_ms;          /* TTL of what is stored; 0 = the cache's default */
    /* Monotonic clock in us for fetch durations and waits; NULL = real. */
    int64_t (*now_us)(void *ud);
    void   *clock_ud;
    /* Called by a pool thread (no lock held) when it takes a key off the
     * queue, before it checks the cache for it; lookups of the key join it
     * from then on.  Tests use it to hold a prefetch in that state; NULL =
     * none. */
    void  (*on_take)(void *ud, const char *key);
    void   *hook_ud;
} cache_prefetch_opts;

/* The byte budget: the pool starts no fetch once the bytes it has fetched
 * reach the budget, and stores a fetched body only if the total stays
 * within it, so prefetched bytes stored never exceed the budget (bytes
 * fetched can, by the fetches already running when it ran out). */

typedef struct cache_prefetch_stats {
    int64_t hits;            /* lookups served from the cache */
    int64_t prefetch_hits;   /* ... of which the first use of a prefetched entry */
    int64_t misses;          /* lookups that fetched in the foreground */
    int64_t joins;           /* lookups that waited on a fetch already in flight */
    int64_t requests;        /* cache_prefetch_request calls */
    int64_t deduped;         /* ... already cached, queued or in flight */
    int64_t issued;          /* prefetch fetches started by the pool */
    int64_t errors;          /* fetches (either kind) that failed */
    int64_t over_budget;     /* requests or bodies dropped for the byte budget */
    int64_t fetched_bytes;   /* bytes the pool fetched (the budget's spend) */
    int64_t unused_bytes;    /* prefetched then evicted/expired unread, or still unread */
    int64_t saved_us;        /* web time saved: fetch time of prefetched entries
                                served (a join saves the part already done) */
    int64_t wait_us;         /* time lookups spent waiting on fetches */
    int     max_running;     /* most pool fetches seen running at once */
} cache_prefetch_stats;

/* The cache must outlive the prefetcher.  opts may be NULL. */
int  cache_prefetch_create(cache *c, cache_fetch_fn fetch, void *ud,
                           const cache_prefetch_opts *opts, cache_prefetch **out,
                           eng_err *err);
/* Drops queued requests, waits for running fetches, joins the threads.
 * No cache_lookup_or_fetch may be running. */
void cache_prefetch_destroy(cache_prefetch *p);
/* Queues key for a background fetch; higher priority first.  Nothing
 * happens if it is cached, in flight or queued (a queued one takes the
 * higher priority), or if the budget is spent. */
int  cache_prefetch_request(cache_prefetch *p, const char *key, double priority,
                            eng_err *err);
/* Starts a new budget (e.g. per question): limit bytes, nothing spent. */
void cache_prefetch_set_budget(cache_prefetch *p, int64_t bytes);
/* Waits until nothing is queued or running in the pool; ENG_EFULL on
 * timeout (timeout_ms < 0: forever). */
int  cache_prefetch_wait_idle(cache_prefetch *p, int timeout_ms, eng_err *err);
int  cache_prefetch_get_stats(cache_prefetch *p, cache_prefetch_stats *out, eng_err *err);

/* A hit returns at once; a fetch of key already in flight is joined (its
 * result shared, no second fetch), also while the pool is still checking
 * the cache for it (if the check finds it cached, the joiners read it from
 * the cache; either way the lookup counts as a join); otherwise key is
 * fetched now, stored and returned (a queued prefetch of it is taken off
 * the queue).  *out is a copy to free with cache_entry_free. */
int cache_lookup_or_fetch(cache_prefetch *p, const char *key, cache_entry *out,
                          eng_err *err);

/* ------------------------------------------------------------ speculator */
/* Collects candidate next actions and ranks them.  Built-in proposer: word
 * overlap with the question.  Words are lowercase ASCII letter/digit runs
 * (bytes >= 0x80 count as letters), stop words and one-letter words
 * dropped, then stemmed (plural and verb endings, a final "e" and a doubled
 * consonant stripped).  A candidate's words come from its text (anchor
 * text, or title and snippet) and its URL's path and query.
 * score = (sum over question words w found in the candidate of
 *          idf(w) = ln(1 + N / df(w)), N candidates, df(w) of them holding w)
 *         * 2.2 / (1 + 1.2 * (0.25 + 0.75 * words / mean words))   [BM25]
 *       + 0.25 / (1 + rank) for a search result of 0-based rank
 *       + 1 / (1 + r) for a link whose URL is a directory above an unopened
 *         search result (same host, a proper path prefix), r its best rank
 *   all times 0.25 for a URL off the task's site (cache_spec_set_site),
 *       + whatever other proposers added (cache_spec_add).
 * Candidates with the same key are merged (texts joined, best rank, added
 * scores summed). */
typedef struct cache_spec cache_spec;

enum { CACHE_SPEC_LINK = 1, CACHE_SPEC_SEARCH = 2, CACHE_SPEC_OTHER = 4 };

typedef struct cache_cand {
    const char *key;     /* normalised key (what to prefetch) */
    const char *url;     /* as first given */
    double score;
    int    sources;      /* CACHE_SPEC_* bits */
    int    search_rank;  /* best 0-based rank, -1 if not a search result */
} cache_cand;

int  cache_spec_create(const char *question, cache_spec **out, eng_err *err);
void cache_spec_destroy(cache_spec *s);
/* The task's site (its start URL): candidates on other hosts ("www."
 * ignored) score less.  Optional. */
int  cache_spec_set_site(cache_spec *s, const char *url, eng_err *err);
/* A page a search ranked at 0-based rank for the question that is not a
 * candidate itself (e.g. a wider search the speculator ran on its own):
 * a candidate at that URL gets + 2 / (1 + rank / 5), a link that is a
 * directory above it half that. */
int  cache_spec_add_hint(cache_spec *s, const char *url, int rank, eng_err *err);
/* A link on the current page. */
int  cache_spec_add_link(cache_spec *s, const char *url, const char *anchor, eng_err *err);
/* A search result not opened yet; rank is its 0-based position. */
int  cache_spec_add_result(cache_spec *s, const char *url, const char *title,
                           const char *snippet, int rank, eng_err *err);
/* Any other proposer (e.g. a draft model): a candidate with text (may be
 * NULL, then no overlap score) and a score of its own added to the rest. */
int  cache_spec_add(cache_spec *s, const char *url, const char *text, double score,
                    eng_err *err);
/* Scores every candidate; *out (owned by s, valid until the next call or
 * destroy) lists the best min(k, n) with score > 0, best first. */
int  cache_spec_rank(cache_spec *s, int k, const cache_cand **out, int *n, eng_err *err);
/* Ranks and queues the top k on p with their scores as priorities. */
int  cache_spec_prefetch(cache_spec *s, cache_prefetch *p, int k, eng_err *err);

/* ------------------------------------------------------- draft proposer */
/* A small model scores candidate links: the context is the question and
 * the current page's title as a chat turn ending in 'I open the link "',
 * a candidate is its anchor text plus the closing quote, and its score is
 * the mean log-probability of those tokens.  The draft has an engine of its
 * own (eng_step runs every live sequence); one thread at a time. */
typedef struct cache_draft cache_draft;

typedef struct cache_draft_opts {
    int backend;          /* ENG_BACKEND_* */
    int n_threads;        /* CPU threads; 0 = 1 (it runs beside the main model) */
    int max_batch;        /* candidates scored per engine step; 0 = 32 */
    int max_ctx_tokens;   /* context kept (its last tokens); 0 = 256 */
    int max_cand_tokens;  /* tokens of a candidate scored; 0 = 24 */
} cache_draft_opts;

/* m is borrowed and must outlive the draft.  o may be NULL. */
int  cache_draft_create(eng_model *m, const cache_draft_opts *o, cache_draft **out, eng_err *err);
void cache_draft_destroy(cache_draft *d);
/* The context's token ids (*ids malloc'd). */
int  cache_draft_context(cache_draft *d, const char *question, const char *title, int **ids,
                         int *n, eng_err *err);
/* out[i] = mean log p(cand[i][0..len)) after ctx (the first max_cand_tokens
 * count); an empty candidate gets -ln(vocab), the uniform value. */
int  cache_draft_score_ids(cache_draft *d, const int *ctx, int n_ctx, const int *const *cand,
                           const int *cand_len, int n_cand, double *out, eng_err *err);
/* The same for anchor texts, with cache_draft_context's context. */
int  cache_draft_score(cache_draft *d, const char *question, const char *title,
                       const char *const *anchors, int n, double *out, eng_err *err);
/* Scores the links (urls[i], anchors[i]) and adds each to s through
 * cache_spec_add with weight * softmax(scores)[i]: positive shares summing
 * to weight, so the draft reorders links but adds at most weight. */
int  cache_draft_propose(cache_draft *d, cache_spec *s, const char *question, const char *title,
                         const char *const *urls, const char *const *anchors, int n,
                         double weight, eng_err *err);

/* ------------------------------------------------------------ web (web.c)
 * The cache in front of the agent's fetch_url tool: pages come through
 * cache_lookup_or_fetch, misses go to the network as net says, and the
 * links of each page served are prefetched (top prefetch_k by overlap with
 * its title; 0 = no prefetch).  A corrupt cache file is moved aside. */
struct tool_fetch_opts;
typedef struct cache_web cache_web;
int    cache_web_create(const char *path, const struct tool_fetch_opts *net, int prefetch_k,
                        cache_web **out, eng_err *err);
void   cache_web_destroy(cache_web *w);
/* Points o's page source at the cache. */
void   cache_web_hook(cache_web *w, struct tool_fetch_opts *o);
/* (hits + joins) / lookups so far. */
double cache_web_hit_rate(cache_web *w);

#endif
