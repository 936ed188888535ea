/* wwagent.c — the oracle WebWalkerQA agent of the SpecCache benchmark.
 *
 * Per question: a fresh cache and prefetcher (so questions are independent
 * and the byte budget is per question), then the golden trajectory.  Before
 * each web action the main model decodes think_tokens tokens (real engine
 * steps: the time a model would spend choosing the action) while a
 * speculator thread queues prefetches (before the first action, which only
 * the task's own actions can precede, they are queued on the agent's
 * thread); the action then goes through cache_lookup_or_fetch, which
 * returns a hit at once, joins a fetch in flight, or fetches.  The "network" is the local web environment plus a
 * lognormal delay drawn per (question, URL) before each request, so every
 * mode meets the same latency for the same page whatever order its fetches
 * run in (the environment's own delay is drawn per request, in arrival
 * order, and is left off here). */
#include <math.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cJSON.h>
#include "cache.h"
#include "tool.h"

#define THINK_PROMPT_MAX 384     /* tokens of the main model's prompt */
#define SEARCH_K 5
#define TASK_PRIO 1000.0         /* the task's own next actions: above any ranking score */

const char *cache_ww_mode_name(int mode) {
    static const char *const names[] = {"none", "spec", "cheap", "random", "rlinks"};
    return mode >= 0 && mode < CACHE_WW_N_MODES ? names[mode] : "?";
}

void cache_ww_result_clear(cache_ww_result *r) {
    if (!r) return;
    free(r->answer);
    memset(r, 0, sizeof *r);
}

static void sleep_ms(double ms) {
    if (ms <= 0) return;
    struct timespec ts = { (time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6) };
    while (nanosleep(&ts, &ts) != 0) {}
}

static uint64_t hash_str(const char *s, uint64_t h) {   /* FNV-1a from h */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

static uint64_t mix(uint64_t z) {                         /* splitmix64 finaliser */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------ the network */
typedef struct net {
    const cache_ww_env *env;
    double median_ms, sigma;
    uint64_t seed;                /* per question */
} net;

/* {"results": [...]} with the environment's URLs mapped back to public ones. */
static char *search_json(const net *n, const char *query, eng_err *err) {
    char endpoint[600];
    snprintf(endpoint, sizeof endpoint, "%s/search", n->env->base_url);
    tool_search_opts so = { .endpoint = endpoint, .k = SEARCH_K };
    char *text = NULL;
    cJSON *res = NULL;
    if (tool_search(&so, query, SEARCH_K, NULL, &text, &res, err) != ENG_OK) return NULL;
    free(text);
    size_t bl = strlen(n->env->base_url);
    cJSON *it;
    cJSON_ArrayForEach(it, res) {
        cJSON *u = cJSON_GetObjectItemCaseSensitive(it, "url");
        const char *s = cJSON_GetStringValue(u);
        const char *pub = s && !strncmp(s, n->env->base_url, bl) ? cache_wwsite_public_url(n->env->site, s + bl) : NULL;
        if (pub) cJSON_SetValuestring(u, pub);
    }
    cJSON *doc = cJSON_CreateObject();
    char *out = NULL;
    if (doc) {
        cJSON_AddItemToObject(doc, "results", res);
        res = NULL;
        out = cJSON_PrintUnformatted(doc);
    }
    cJSON_Delete(doc);
    cJSON_Delete(res);
    if (!out) eng_seterr(err, ENG_ENOMEM, "search %.100s: out of memory", query);
    return out;
}

/* The page as {"url","title","text","links":[{"url","text"}]}. */
static char *page_json(const net *n, const char *url, eng_err *err) {
    char *local = NULL;
    if (cache_ww_local_path(url, &local, err) != ENG_OK) return NULL;
    size_t len = strlen(n->env->base_url) + strlen(local) + 1;
    char *full = malloc(len);
    if (!full) {
        free(local);
        eng_seterr(err, ENG_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(full, len, "%s%s", n->env->base_url, local);
    free(local);
    tool_page *p = NULL;
    tool_fetch_opts on_loopback = { .allow_private = 1 };   /* the environment's own server */
    int rc = tool_fetch_page(full, &on_loopback, NULL, &p, err);
    free(full);
    if (rc != ENG_OK) return NULL;
    cJSON *doc = cJSON_CreateObject(), *links = cJSON_AddArrayToObject(doc, "links");
    cJSON_AddStringToObject(doc, "url", url);
    cJSON_AddStringToObject(doc, "title", p->title ? p->title : "");
    cJSON_AddStringToObject(doc, "text", p->text ? p->text : "");
    for (int i = 0; links && i < p->n_links; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "url", p->links[i].url);
        cJSON_AddStringToObject(l, "text", p->links[i].text);
        cJSON_AddItemToArray(links, l);
    }
    tool_page_free(p);
    char *out = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!out) eng_seterr(err, ENG_ENOMEM, "page %.200s: out of memory", url);
    return out;
}

/* cache_fetch_fn: the same delay for the same key in every mode. */
static int net_fetch(void *ud, const char *key, char **body, size_t *len, char **ctype, eng_err *err) {
    const net *n = ud;
    tool_latency lat;
    tool_latency_init(&lat, n->median_ms, n->sigma, mix(hash_str(key, n->seed)));
    sleep_ms(tool_latency_draw_ms(&lat));
    char *b = !strncmp(key, "search:", 7) ? search_json(n, key + 7, err) : page_json(n, key, err);
    if (!b) return err && err->code ? err->code : ENG_EIO;
    *body = b;
    *len = strlen(b);
    *ctype = strdup("application/json");
    return ENG_OK;
}

/* ------------------------------------------------------------ the agent */
typedef struct page {
    char *key, *title, *text;
    char **lurl, **ltext;
    char **lsnip;                /* search results: their snippets; else NULL */
    int n_links;
} page;

static void page_free(page *p) {
    if (!p) return;
    free(p->key);
    free(p->title);
    free(p->text);
    for (int i = 0; i < p->n_links; i++) {
        free(p->lurl[i]);
        free(p->ltext[i]);
        if (p->lsnip) free(p->lsnip[i]);
    }
    free(p->lurl);
    free(p->ltext);
    free(p->lsnip);
    free(p);
}

static const char *str_or(const cJSON *j) {
    const char *s = cJSON_GetStringValue(j);
    return s ? s : "";
}

/* Parses a cached page, or search results (as links: url and title). */
static page *page_parse(const char *key, const char *json) {
    cJSON *doc = cJSON_Parse(json);
    page *p = calloc(1, sizeof *p);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "links");
    int search = !arr;
    if (search) arr = cJSON_GetObjectItemCaseSensitive(doc, "results");
    int n = cJSON_GetArraySize(arr);
    if (!doc || !p || !cJSON_IsArray(arr)) goto fail;
    p->key = strdup(key);
    p->title = strdup(search ? "Search results" : str_or(cJSON_GetObjectItemCaseSensitive(doc, "title")));
    p->text = strdup(search ? "" : str_or(cJSON_GetObjectItemCaseSensitive(doc, "text")));
    p->lurl = calloc((size_t)n + 1, sizeof *p->lurl);
    p->ltext = calloc((size_t)n + 1, sizeof *p->ltext);
    p->lsnip = search ? calloc((size_t)n + 1, sizeof *p->lsnip) : NULL;
    if (!p->key || !p->title || !p->text || !p->lurl || !p->ltext || (search && !p->lsnip)) goto fail;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "url"));
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, search ? "title" : "text"));
        const char *sn = search ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "snippet")) : NULL;
        int i = p->n_links;
        if (!u || cache_key(u, &p->lurl[i], NULL) != ENG_OK) continue;
        p->ltext[i] = cache_ww_norm_text(t ? t : "");
        if (search) p->lsnip[i] = cache_ww_norm_text(sn ? sn : "");
        if (!p->ltext[i] || (search && !p->lsnip[i])) {
            free(p->lurl[i]);
            free(p->ltext[i]);
            if (search) free(p->lsnip[i]);
            goto fail;
        }
        p->n_links++;
    }
    cJSON_Delete(doc);
    return p;
fail:
    cJSON_Delete(doc);
    page_free(p);
    return NULL;
}

/* --------------------------------------------------------- speculator */
/* Before every web action the speculator builds one pool of candidate
 * actions and queues up to top_k of them that were not queued before:
 *   - the task's own actions: its question as a search and its start page
 *     (root_url), until they are done;
 *   - the search results not opened;
 *   - the links of the page in front of the agent;
 *   - lookahead: the links of pages prefetched earlier that have arrived in
 *     the cache and that the agent has not opened.
 * Speculative modes rank the pool (cache_spec: question words against
 * anchor text, result titles and snippets, URL path words; search rank;
 * links above an unopened result; the task's site) and queue the best;
 * a lookahead link scores its own ranking on its page times that page's
 * weight: 1 for the start page before it is opened (the agent opens it
 * after searching), else the page's score over the best score of this
 * think.  Random mode queues top_k drawn uniformly from the same pool.
 * Nothing here reads the golden path or the answer. */
typedef struct spec_job {
    struct agent *a;
    int step;                    /* 0: before the search, 1: before the root, 2: before a click */
    const page *cur;             /* the page in front of the agent (step 2) */
    const page *results;         /* search results, once searched */
    const char **seen;           /* keys of the pages opened so far */
    int n_seen;
    atomic_int stale;            /* the agent has acted: late proposals are dropped */
    double ms;
    int rc;
    eng_err err;
} spec_job;

typedef struct agent {
    const cache_ww_env *env;
    cache_ww_opts o;
    const cache_ww_row *row;
    cache *c;
    cache_prefetch *pf;
    page **open;                 /* pages opened this question */
    int n_open;
    page *results;
    cache_ww_result *res;
    /* Keys queued for prefetch: the speculator appends (under req_mu),
     * act() reads them to tell a ranking miss from a late prefetch. */
    pthread_mutex_t req_mu;
    char **req;
    int n_req;
    /* Used by the speculator thread only (one at a time): */
    uint64_t rng;                /* random picks */
    page **ahead;                /* prefetched pages read back from the cache */
    int n_ahead;
    spec_job job;
    pthread_t th;
    int running;                 /* th is a speculator not joined yet */
} agent;

static const page *opened(const agent *a, const char *key) {
    for (int i = 0; i < a->n_open; i++) if (!strcmp(a->open[i]->key, key)) return a->open[i];
    return NULL;
}

static int seen(const spec_job *j, const char *key) {
    for (int i = 0; i < j->n_seen; i++) if (!strcmp(j->seen[i], key)) return 1;
    return 0;
}

/* Only the speculator thread writes req, so it reads it without the lock. */
static int was_requested(const agent *a, const char *key) {
    for (int i = 0; i < a->n_req; i++) if (!strcmp(a->req[i], key)) return 1;
    return 0;
}

static int requested_locked(agent *a, const char *key) {
    pthread_mutex_lock(&a->req_mu);
    int r = was_requested(a, key);
    pthread_mutex_unlock(&a->req_mu);
    return r;
}

/* Queues key for prefetch and remembers it. */
static int request(spec_job *j, const char *key, double prio) {
    agent *a = j->a;
    char *k = strdup(key);
    pthread_mutex_lock(&a->req_mu);
    char **v = k ? realloc(a->req, (size_t)(a->n_req + 1) * sizeof *v) : NULL;
    if (v) {
        a->req = v;
        a->req[a->n_req++] = k;
    }
    pthread_mutex_unlock(&a->req_mu);
    if (!v) {
        free(k);
        return eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    }
    return cache_prefetch_request(a->pf, key, prio, &j->err);
}

/* ------------------------------------------------------------- the pool */
typedef struct pool {
    char **key;                  /* normalised keys, in the order added */
    double *prio;                /* 0: in the pool, no signal for it */
    int n, cap;
} pool;

static void pool_free(pool *p) {
    for (int i = 0; i < p->n; i++) free(p->key[i]);
    free(p->key);
    free(p->prio);
}

/* Adds key (normalised) or raises its priority to prio. */
static int pool_add(pool *p, const char *key, double prio) {
    for (int i = 0; i < p->n; i++) {
        if (strcmp(p->key[i], key)) continue;
        if (prio > p->prio[i]) p->prio[i] = prio;
        return ENG_OK;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        char **k = realloc(p->key, (size_t)cap * sizeof *k);
        if (k) p->key = k;
        double *pr = k ? realloc(p->prio, (size_t)cap * sizeof *pr) : NULL;
        if (!pr) return ENG_ENOMEM;
        p->prio = pr;
        p->cap = cap;
    }
    if (!(p->key[p->n] = strdup(key))) return ENG_ENOMEM;
    p->prio[p->n++] = prio;
    return ENG_OK;
}

/* The task's actions, unopened search results and the current page's
 * links: into the ranking s and the pool.  The agent's plan is to search,
 * then open the start page: those rank above any other candidate, the
 * start page first (it is needed after the search and a think, so its
 * prefetch saves a whole fetch; the search follows a short think). */
static int spec_candidates(spec_job *j, cache_spec *s, pool *pl) {
    agent *a = j->a;
    eng_err *err = &j->err;
    int rc = ENG_OK;
    if (j->step == 0) {
        size_t n = strlen(a->row->question) + 8;
        char *q = malloc(n), *k = NULL;
        if (!q) return eng_seterr(err, ENG_ENOMEM, "out of memory");
        snprintf(q, n, "search:%s", a->row->question);
        rc = cache_key(q, &k, err);
        if (!rc) rc = cache_spec_add(s, k, NULL, TASK_PRIO, err);
        if (!rc && pool_add(pl, k, 0)) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
        free(q);
        free(k);
    }
    if (!rc && !seen(j, a->row->root_url)) {
        rc = cache_spec_add(s, a->row->root_url, NULL, 2 * TASK_PRIO, err);
        if (!rc && pool_add(pl, a->row->root_url, 0)) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    const page *r = j->results;
    for (int i = 0; r && i < r->n_links && !rc; i++) {
        if (seen(j, r->lurl[i])) continue;
        rc = cache_spec_add_result(s, r->lurl[i], r->ltext[i], r->lsnip ? r->lsnip[i] : NULL, i, err);
        if (!rc && pool_add(pl, r->lurl[i], 0)) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    for (int i = 0; j->step == 2 && i < j->cur->n_links && !rc; i++) {
        if (seen(j, j->cur->lurl[i])) continue;
        rc = cache_spec_add_link(s, j->cur->lurl[i], j->cur->ltext[i], err);
        if (!rc && pool_add(pl, j->cur->lurl[i], 0)) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    return rc;
}

/* A page prefetched earlier, parsed from the cache without counting a use;
 * NULL if it has not arrived (or is a search). */
static const page *ahead_page(agent *a, const char *key) {
    for (int i = 0; i < a->n_ahead; i++) if (!strcmp(a->ahead[i]->key, key)) return a->ahead[i];
    if (!strncmp(key, "search:", 7)) return NULL;
    cache_entry e;
    int found = 0;
    if (cache_peek(a->c, key, &e, &found, NULL) != ENG_OK || !found) return NULL;
    page *p = page_parse(key, e.value);
    cache_entry_free(&e);
    page **v = p ? realloc(a->ahead, (size_t)(a->n_ahead + 1) * sizeof *v) : NULL;
    if (!v) {
        page_free(p);
        return NULL;
    }
    a->ahead = v;
    a->ahead[a->n_ahead++] = p;
    return p;
}

/* Adds page q's unopened links to the pool; with weight w > 0 each gets
 * w times its score in a ranking of q's links (with the unopened search
 * results as hints, as the main ranking has them as candidates). */
static int add_ahead(spec_job *j, const page *q, double w, pool *pl) {
    agent *a = j->a;
    int rc = ENG_OK;
    for (int i = 0; i < q->n_links && !rc; i++)
        if (!seen(j, q->lurl[i]) && pool_add(pl, q->lurl[i], 0)) rc = eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    if (rc || w <= 0) return rc;
    cache_spec *s = NULL;
    rc = cache_spec_create(a->row->question, &s, &j->err);
    if (!rc) rc = cache_spec_set_site(s, a->row->root_url, &j->err);
    for (int i = 0; j->results && i < j->results->n_links && !rc; i++)
        if (!seen(j, j->results->lurl[i])) rc = cache_spec_add_hint(s, j->results->lurl[i], i, &j->err);
    for (int i = 0; i < q->n_links && !rc; i++)
        if (!seen(j, q->lurl[i])) rc = cache_spec_add_link(s, q->lurl[i], q->ltext[i], &j->err);
    const cache_cand *c = NULL;
    int n = 0;
    if (!rc) rc = cache_spec_rank(s, 1 << 20, &c, &n, &j->err);
    for (int i = 0; i < n && !rc; i++)
        if (pool_add(pl, c[i].key, w * c[i].score)) rc = eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    cache_spec_destroy(s);
    return rc;
}

/* Ranks s into the pool's priorities, then adds the lookahead links. */
static int score_pool(spec_job *j, cache_spec *s, pool *pl) {
    agent *a = j->a;
    const cache_cand *c = NULL;
    int n = 0, rc = cache_spec_rank(s, 1 << 20, &c, &n, &j->err);
    double top = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (pool_add(pl, c[i].key, c[i].score)) rc = eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
        if (c[i].score > top && c[i].score < TASK_PRIO) top = c[i].score;   /* the plan's actions aside */
    }
    for (int r = 0; r < a->n_req && !rc; r++) {
        const char *k = a->req[r];
        if (seen(j, k)) continue;
        const page *q = ahead_page(a, k);
        if (!q) continue;
        double w = 0;
        if (!strcmp(k, a->row->root_url)) w = 1;
        for (int i = 0; i < n && w == 0 && top > 0; i++) if (!strcmp(c[i].key, k)) w = c[i].score / top;
        rc = add_ahead(j, q, w, pl);
    }
    return rc;
}

/* Queues the pool's best (priority > 0, not opened or queued before)
 * until *issued reaches want: every think adds new prefetches. */
static int request_best(spec_job *j, const pool *pl, int want, int *issued) {
    int *order = malloc(((size_t)pl->n + 1) * sizeof *order), n = 0;
    if (!order) return eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < pl->n; i++) {
        if (pl->prio[i] <= 0 || seen(j, pl->key[i]) || was_requested(j->a, pl->key[i])) continue;
        int k = n++;                          /* insertion sort, stable: few dozen entries */
        while (k > 0 && pl->prio[order[k - 1]] < pl->prio[i]) { order[k] = order[k - 1]; k--; }
        order[k] = i;
    }
    int rc = ENG_OK;
    for (int i = 0; i < n && !rc && *issued < want; i++, (*issued)++)
        rc = request(j, pl->key[order[i]], pl->prio[order[i]]);
    free(order);
    return rc;
}

/* Queues top_k of the pool (not opened or queued before) at random. */
static int request_random(spec_job *j, const pool *pl) {
    agent *a = j->a;
    int *idx = malloc(((size_t)pl->n + 1) * sizeof *idx), n = 0;
    if (!idx) return eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < pl->n; i++)
        if (!seen(j, pl->key[i]) && !was_requested(a, pl->key[i])) idx[n++] = i;
    int rc = ENG_OK;
    for (int k = 0; k < a->o.top_k && n > 0 && !rc; k++) {
        int r = (int)(mix(a->rng++) % (uint64_t)n);
        rc = request(j, pl->key[idx[r]], 1.0);
        idx[r] = idx[--n];
    }
    free(idx);
    return rc;
}

/* The current page's unopened links (random-links mode's whole pool). */
static int links_pool(spec_job *j, pool *pl) {
    for (int i = 0; j->cur && i < j->cur->n_links; i++)
        if (!seen(j, j->cur->lurl[i]) && pool_add(pl, j->cur->lurl[i], 0))
            return eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    return ENG_OK;
}

/* The draft model's scores for the current page's unopened links. */
static int spec_draft(spec_job *j, cache_spec *s) {
    const page *c = j->cur;
    const char **urls = malloc(((size_t)c->n_links + 1) * sizeof *urls);
    const char **texts = malloc(((size_t)c->n_links + 1) * sizeof *texts);
    int n = 0, rc = urls && texts ? ENG_OK : eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < c->n_links && !rc; i++) {
        if (seen(j, c->lurl[i])) continue;
        urls[n] = c->lurl[i];
        texts[n++] = c->ltext[i];
    }
    if (!rc) rc = cache_draft_propose(j->a->env->draft, s, j->a->row->question, c->title, urls,
                                      texts, n, j->a->o.draft_weight, &j->err);
    free(urls);
    free(texts);
    return rc;
}

/* Cheap signals are ready at once: half of the top_k slots go to their
 * best candidates at the start of the think.  The draft model's scores
 * arrive later and the combined ranking fills the other slots, unless the
 * agent has acted by then.  Cheap-only mode fills every slot at once;
 * random mode draws them from the same pool. */
static void *spec_main(void *arg) {
    spec_job *j = arg;
    agent *a = j->a;
    double t0 = 1e3 * eng_now_s();
    int draft = a->o.mode == CACHE_WW_SPEC && a->env->draft && j->step == 2, issued = 0;
    cache_spec *s = NULL;
    pool pl = {0};
    if (a->o.mode == CACHE_WW_RANDOM_LINKS) {
        j->rc = links_pool(j, &pl);
        if (!j->rc) j->rc = request_random(j, &pl);
        pool_free(&pl);
        j->ms = 1e3 * eng_now_s() - t0;
        return NULL;
    }
    j->rc = cache_spec_create(a->row->question, &s, &j->err);
    if (!j->rc) j->rc = cache_spec_set_site(s, a->row->root_url, &j->err);
    if (!j->rc) j->rc = spec_candidates(j, s, &pl);
    if (!j->rc) j->rc = score_pool(j, s, &pl);
    if (!j->rc && a->o.mode == CACHE_WW_RANDOM) j->rc = request_random(j, &pl);
    else if (!j->rc) j->rc = request_best(j, &pl, draft ? (a->o.top_k + 1) / 2 : a->o.top_k, &issued);
    if (!j->rc && draft) {
        j->rc = spec_draft(j, s);
        if (!j->rc) j->rc = score_pool(j, s, &pl);
        if (!j->rc && !atomic_load(&j->stale)) j->rc = request_best(j, &pl, a->o.top_k, &issued);
    }
    cache_spec_destroy(s);
    pool_free(&pl);
    j->ms = 1e3 * eng_now_s() - t0;
    return NULL;
}

/* Counts a finished speculator's time (late: what the agent waited for
 * it) and returns its error. */
static int spec_done(agent *a, double late_ms, eng_err *err) {
    a->res->late_ms += late_ms;
    a->res->spec_ms += a->job.ms;
    free(a->job.seen);
    a->job.seen = NULL;
    if (a->job.rc && err) *err = a->job.err;
    return a->job.rc;
}

/* Waits for the last speculator. */
static int spec_join(agent *a, eng_err *err) {
    if (!a->running) return ENG_OK;
    double t0 = 1e3 * eng_now_s();
    pthread_join(a->th, NULL);
    a->running = 0;
    return spec_done(a, 1e3 * eng_now_s() - t0, err);
}

static int spec_start(agent *a, int step, const page *cur, eng_err *err) {
    int rc = spec_join(a, err);
    if (rc || a->o.mode == CACHE_WW_NONE) return rc;
    spec_job *j = &a->job;
    memset(j, 0, sizeof *j);
    *j = (spec_job){ .a = a, .step = step, .cur = cur, .results = a->results };
    atomic_init(&j->stale, 0);
    j->seen = malloc(((size_t)a->n_open + 1) * sizeof *j->seen);
    if (!j->seen) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < a->n_open; i++) j->seen[j->n_seen++] = a->open[i]->key;
    if (step == 0) {
        /* Only the task's own actions: queued on the agent's thread before
         * it thinks (a thread would start late on a busy machine, after a
         * think this short); the agent waits for it, counted as late. */
        spec_main(j);
        return spec_done(a, j->ms, err);
    }
    if (pthread_create(&a->th, NULL, spec_main, j) != 0) {
        free(j->seen);
        j->seen = NULL;
        return eng_seterr(err, ENG_ENOMEM, "cannot start the speculator");
    }
    a->running = 1;
    return ENG_OK;
}

/* ------------------------------------------------------------ thinking */
/* The main model reads the question and the page and decodes think_tokens
 * tokens; what it writes is not used (the path is the oracle's), only the
 * time it takes. */
static int think(agent *a, const page *cur, eng_err *err) {
    char user[4096];
    int n = snprintf(user, sizeof user, "Question: %s\n", a->row->question);
    if (cur && n < (int)sizeof user) {
        n += snprintf(user + n, sizeof user - (size_t)n, "Page: %s\nLinks:", cur->title);
        for (int i = 0; i < cur->n_links && n < (int)sizeof user; i++)
            n += snprintf(user + n, sizeof user - (size_t)n, " [%s]", cur->ltext[i]);
    }
    eng_chat_msg m[2] = { { .role = "system", .content = "You are a web agent. Choose the next action." },
                          { .role = "user", .content = user } };
    eng_chat_opts co = { .add_generation_prompt = 1 };
    int *ids = NULL, nid = 0;
    eng_chat *chat = NULL;
    int rc = eng_chat_create(eng_engine_model(a->env->think), &chat, err);
    if (!rc) rc = eng_chat_render(chat, m, 2, &co, &ids, &nid, NULL, err);
    eng_chat_free(chat);
    if (rc) return rc;
    int max_pos = eng_model_config(eng_engine_model(a->env->think))->max_pos;
    int cap = max_pos - a->o.think_tokens - 2 < THINK_PROMPT_MAX ? max_pos - a->o.think_tokens - 2 : THINK_PROMPT_MAX;
    if (cap < 1) {
        free(ids);
        return eng_seterr(err, ENG_EINVAL, "think: %d tokens do not fit the model's context of %d",
                          a->o.think_tokens, max_pos);
    }
    if (nid > cap) {       /* keep the end: the cue to answer */
        memmove(ids, ids + (nid - cap), (size_t)cap * sizeof *ids);
        nid = cap;
    }
    int seq = -1;
    rc = eng_seq_add(a->env->think, ids, nid, NULL, &seq, err);
    free(ids);
    if (rc) return rc;
    for (int t = 0; t < a->o.think_tokens && !rc; t++) rc = eng_step(a->env->think, err);
    eng_seq_remove(a->env->think, seq);
    return rc;
}

/* Thinks with the speculator running beside it; the action follows at
 * once (a speculator still busy is not waited for). */
static int think_and_speculate(agent *a, int step, const page *cur, eng_err *err) {
    int rc = spec_start(a, step, cur, err);
    double t0 = 1e3 * eng_now_s();
    if (!rc) rc = think(a, cur, err);
    a->res->think_ms += 1e3 * eng_now_s() - t0;
    if (a->running) atomic_store(&a->job.stale, 1);
    return rc;
}

/* ------------------------------------------------------------ actions */
/* One web action through the cache: counts the wait and how it was served. */
static int act(agent *a, const char *key, int kind, page **out, eng_err *err) {
    char *k = NULL;
    int rc = cache_key(key, &k, err);
    if (rc) return rc;
    cache_prefetch_stats s0, s1;
    cache_prefetch_get_stats(a->pf, &s0, NULL);
    cache_entry e;
    double t0 = 1e3 * eng_now_s();
    rc = cache_lookup_or_fetch(a->pf, k, &e, err);
    double waited = 1e3 * eng_now_s() - t0;
    a->res->wait_ms += waited;
    if (rc) {
        free(k);
        return rc;
    }
    cache_prefetch_get_stats(a->pf, &s1, NULL);
    int how = s1.hits > s0.hits ? CACHE_WW_HIT : s1.joins > s0.joins ? CACHE_WW_JOIN : CACHE_WW_MISS;
    cache_ww_result *r = a->res;
    cache_ww_kind *kd = &r->kind[kind];
    r->actions++;
    r->hits += how == CACHE_WW_HIT;
    r->joins += how == CACHE_WW_JOIN;
    r->clicks += kind == CACHE_WW_ACT_CLICK;
    r->click_hits += kind == CACHE_WW_ACT_CLICK && how != CACHE_WW_MISS;
    kd->n[how]++;
    kd->wait_ms[how] += waited;
    kd->miss_queued += how == CACHE_WW_MISS && requested_locked(a, k);
    *out = page_parse(k, e.value);
    free(k);
    cache_entry_free(&e);
    if (!*out) rc = eng_seterr(err, ENG_EFORMAT, "%.200s: cannot read the fetched page", key);
    return rc;
}

static int remember(agent *a, page *p) {
    page **v = realloc(a->open, (size_t)(a->n_open + 1) * sizeof *v);
    if (!v) { page_free(p); return ENG_ENOMEM; }
    a->open = v;
    a->open[a->n_open++] = p;
    return ENG_OK;
}

/* The sentence of text holding answer ("" when it is not there). */
static char *answer_sentence(const char *text, const char *answer, int *found) {
    const char *m = answer[0] ? strstr(text, answer) : NULL;
    *found = m != NULL;
    if (!m) return strdup("");
    const char *s = m, *e = m + strlen(answer);
    while (s > text && s[-1] != '\n' && !(s - text >= 2 && strchr(".!?", s[-2]) && s[-1] == ' ')) s--;
    if (e == m || !strchr(".!?", e[-1]))
        while (*e && *e != '\n' && !strchr(".!?", *e)) e++;
    if (*e && strchr(".!?", *e) && (e == m || !strchr(".!?", e[-1]))) e++;
    char *o = malloc((size_t)(e - s) + 1);
    if (o) { memcpy(o, s, (size_t)(e - s)); o[e - s] = 0; }
    return o;
}

static int add_answer(cache_ww_result *r, const char *sentence) {
    size_t a = r->answer ? strlen(r->answer) : 0, b = strlen(sentence);
    char *p = realloc(r->answer, a + b + 4);
    if (!p) return ENG_ENOMEM;
    if (a) memcpy(p + a, " | ", 3), a += 3;
    memcpy(p + a, sentence, b + 1);
    r->answer = p;
    return ENG_OK;
}

/* Clicks the link with this anchor text on cur; an opened page is reused. */
static int click(agent *a, const page *cur, const char *anchor, const page **next, eng_err *err) {
    int li = -1;
    for (int i = 0; i < cur->n_links && li < 0; i++) if (!strcmp(cur->ltext[i], anchor)) li = i;
    if (li < 0) return eng_seterr(err, ENG_EFORMAT, "no link \"%.200s\" on %.200s", anchor, cur->key);
    if ((*next = opened(a, cur->lurl[li]))) return ENG_OK;
    int rc = think_and_speculate(a, 2, cur, err);
    page *p = NULL;
    if (!rc) rc = act(a, cur->lurl[li], CACHE_WW_ACT_CLICK, &p, err);
    if (!rc) rc = remember(a, p);
    *next = rc ? NULL : p;
    return rc;
}

static int walk(agent *a, eng_err *err) {
    const cache_ww_row *r = a->row;
    size_t n = strlen(r->question) + 8;
    char *q = malloc(n);
    if (!q) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    snprintf(q, n, "search:%s", r->question);
    int rc = think_and_speculate(a, 0, NULL, err);
    if (!rc) rc = act(a, q, CACHE_WW_ACT_SEARCH, &a->results, err);
    free(q);
    page *root = NULL;
    if (!rc) rc = think_and_speculate(a, 1, a->results, err);
    if (!rc) rc = act(a, r->root_url, CACHE_WW_ACT_ROOT, &root, err);
    if (!rc) rc = remember(a, root);
    int all = 1;
    for (int p = 0; p < r->n_paths && !rc; p++) {
        const page *cur = root;
        for (int i = 0; i < r->paths[p].n && !rc; i++) rc = click(a, cur, r->paths[p].anchors[i], &cur, err);
        if (rc) break;
        int found = 0;
        char *s = answer_sentence(cur->text, r->answer, &found);
        if (!s || add_answer(a->res, s)) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
        free(s);
        all &= found;
    }
    a->res->correct = !rc && all;
    return rc;
}

int cache_ww_episode(const cache_ww_env *env, const cache_ww_opts *opts, const cache_ww_row *row,
                     cache_ww_result *out, eng_err *err) {
    memset(out, 0, sizeof *out);
    if (!env || !env->site || !env->base_url || !env->think || !env->tmp_dir || !opts || !row)
        return eng_seterr(err, ENG_EINVAL, "cache_ww_episode: missing argument");
    agent a = { .env = env, .o = *opts, .row = row, .res = out };
    if (a.o.mode < 0 || a.o.mode >= CACHE_WW_N_MODES)
        return eng_seterr(err, ENG_EINVAL, "cache_ww_episode: unknown mode %d", a.o.mode);
    pthread_mutex_init(&a.req_mu, NULL);
    if (a.o.think_tokens <= 0) a.o.think_tokens = 64;
    if (a.o.sigma == 0) a.o.sigma = 0.6;
    if (a.o.top_k <= 0) a.o.top_k = 3;
    if (a.o.max_concurrent <= 0) a.o.max_concurrent = 4;
    if (a.o.byte_budget <= 0) a.o.byte_budget = 64 << 10;
    if (a.o.draft_weight == 0) a.o.draft_weight = 1;
    a.rng = mix(a.o.seed ^ (0x5EEDull + (uint64_t)row->index));
    net nt = { env, a.o.median_ms, a.o.sigma, mix(a.o.seed ^ ((uint64_t)row->index << 20)) };

    char path[1024];
    snprintf(path, sizeof path, "%s/ww-%ld-%d-%d.db", env->tmp_dir, (long)getpid(), row->index, a.o.mode);
    cache *c = NULL;
    cache_opts co = { .skip_check = 1, .default_ttl_ms = -1 };
    int rc = cache_open(path, &co, &c, err);
    a.c = c;
    cache_prefetch_opts po = { .max_concurrent = a.o.max_concurrent, .byte_budget = a.o.byte_budget };
    if (!rc) rc = cache_prefetch_create(c, net_fetch, &nt, &po, &a.pf, err);
    if (!rc) rc = walk(&a, err);
    int jrc = spec_join(&a, rc ? NULL : err);
    if (!rc) rc = jrc;
    if (a.pf) {
        /* Nothing queued starts any more; fetches still running end before
         * the figures are read (this time is not the agent's). */
        cache_prefetch_set_budget(a.pf, 0);
        cache_prefetch_wait_idle(a.pf, 30000, NULL);
        cache_prefetch_stats st;
        if (cache_prefetch_get_stats(a.pf, &st, NULL) == ENG_OK) {
            out->issued = st.issued;
            out->prefetch_bytes = st.fetched_bytes;
            out->unused_bytes = st.unused_bytes;
        }
        cache_prefetch_destroy(a.pf);
    }
    cache_close(c);
    for (int i = 0; i < a.n_open; i++) page_free(a.open[i]);
    free(a.open);
    for (int i = 0; i < a.n_req; i++) free(a.req[i]);
    free(a.req);
    for (int i = 0; i < a.n_ahead; i++) page_free(a.ahead[i]);
    free(a.ahead);
    pthread_mutex_destroy(&a.req_mu);
    page_free(a.results);
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p2[1100];
        snprintf(p2, sizeof p2, "%s%s", path, sfx[i]);
        unlink(p2);
    }
    if (!out->answer && !(out->answer = strdup(""))) rc = rc ? rc : eng_seterr(err, ENG_ENOMEM, "out of memory");
    return rc;
}
