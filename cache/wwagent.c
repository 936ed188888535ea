/* wwagent.c — the oracle WebWalkerQA agent of the SpecCache benchmark.
 *
 * Per question: a fresh cache and prefetcher (so questions are independent
 * and the byte budget is per question), then the golden trajectory.  Before
 * each web action the main model decodes think_tokens tokens (real engine
 * steps: the time a model would spend choosing the action) while a
 * speculator thread queues prefetches; the action then goes through
 * cache_lookup_or_fetch, which returns a hit at once, joins a fetch in
 * flight, or fetches.  The "network" is the local web environment plus a
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

const char *cache_ww_mode_name(int mode) {
    static const char *const names[] = {"none", "spec", "cheap", "random"};
    return mode >= 0 && mode < CACHE_WW_N_MODES ? names[mode] : "?";
}

void cache_ww_result_clear(cache_ww_result *r) {
    if (!r) return;
    free(r->answer);
    memset(r, 0, sizeof *r);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
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
    int rc = tool_fetch_page(full, NULL, NULL, &p, err);
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
    int n_links;
} page;

static void page_free(page *p) {
    if (!p) return;
    free(p->key);
    free(p->title);
    free(p->text);
    for (int i = 0; i < p->n_links; i++) free(p->lurl[i]), free(p->ltext[i]);
    free(p->lurl);
    free(p->ltext);
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
    if (!p->key || !p->title || !p->text || !p->lurl || !p->ltext) goto fail;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "url"));
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, search ? "title" : "text"));
        if (!u) continue;
        p->lurl[p->n_links] = NULL;
        if (cache_key(u, &p->lurl[p->n_links], NULL) != ENG_OK) continue;
        p->ltext[p->n_links] = cache_ww_norm_text(t ? t : "");
        if (!p->ltext[p->n_links]) { free(p->lurl[p->n_links]); goto fail; }
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
/* What the speculator sees of the agent, copied when it starts: the agent
 * goes on (and opens pages) while a late draft phase still runs. */
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
    cache_prefetch *pf;
    page **open;                 /* pages opened this question */
    int n_open;
    page *results;
    cache_ww_result *res;
    /* Used by the speculator thread only (one at a time): */
    uint64_t rng;                /* random picks */
    char **req;                  /* keys already queued for prefetch */
    int n_req;
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

/* Cheap-signal candidates: the task before anything is open, unopened
 * search results, the current page's unopened links. */
static int spec_candidates(spec_job *j, cache_spec *s) {
    agent *a = j->a;
    eng_err *err = &j->err;
    int rc = ENG_OK;
    if (j->step == 0) {
        /* Only the task is known: its question as a query, its start page. */
        size_t n = strlen(a->row->question) + 8;
        char *q = malloc(n);
        if (!q) return eng_seterr(err, ENG_ENOMEM, "out of memory");
        snprintf(q, n, "search:%s", a->row->question);
        rc = cache_spec_add(s, q, NULL, 1.0, err);
        free(q);
    }
    if (!rc && j->step <= 1 && !seen(j, a->row->root_url))
        rc = cache_spec_add(s, a->row->root_url, NULL, 1.0, err);
    for (int i = 0; j->results && i < j->results->n_links && !rc; i++)
        if (!seen(j, j->results->lurl[i]))
            rc = cache_spec_add_result(s, j->results->lurl[i], j->results->ltext[i], NULL, i, err);
    for (int i = 0; j->step == 2 && i < j->cur->n_links && !rc; i++)
        if (!seen(j, j->cur->lurl[i])) rc = cache_spec_add_link(s, j->cur->lurl[i], j->cur->ltext[i], err);
    return rc;
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

static int was_requested(const agent *a, const char *key) {
    for (int i = 0; i < a->n_req; i++) if (!strcmp(a->req[i], key)) return 1;
    return 0;
}

/* Queues key for prefetch and remembers it. */
static int request(spec_job *j, const char *key, double prio) {
    agent *a = j->a;
    char **v = realloc(a->req, (size_t)(a->n_req + 1) * sizeof *v);
    char *k = strdup(key);
    if (v) a->req = v;
    if (!v || !k) {
        free(k);
        return eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    }
    a->req[a->n_req++] = k;
    return cache_prefetch_request(a->pf, key, prio, &j->err);
}

/* Queues the best ranked candidates not opened or queued before until
 * *issued reaches want: every think adds new prefetches, instead of
 * repeating the search results queued at an earlier one. */
static int request_top(spec_job *j, cache_spec *s, int want, int *issued) {
    const cache_cand *c = NULL;
    int n = 0, rc = cache_spec_rank(s, 1 << 20, &c, &n, &j->err);
    for (int i = 0; i < n && !rc && *issued < want; i++) {
        if (seen(j, c[i].key) || was_requested(j->a, c[i].key)) continue;
        rc = request(j, c[i].key, c[i].score);
        (*issued)++;
    }
    return rc;
}

/* top_k new links of the current page (or of the results, before the
 * root) at random. */
static int spec_random(spec_job *j) {
    agent *a = j->a;
    const page *c = j->step == 2 ? j->cur : j->step == 1 ? j->results : NULL;
    if (!c || c->n_links == 0) return ENG_OK;
    int *idx = malloc((size_t)c->n_links * sizeof *idx), n = 0;
    if (!idx) return eng_seterr(&j->err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < c->n_links; i++)
        if (!seen(j, c->lurl[i]) && !was_requested(a, c->lurl[i])) idx[n++] = i;
    int rc = ENG_OK;
    for (int k = 0; k < a->o.top_k && n > 0 && !rc; k++) {
        int r = (int)(mix(a->rng++) % (uint64_t)n);
        rc = request(j, c->lurl[idx[r]], 1.0);
        idx[r] = idx[--n];
    }
    free(idx);
    return rc;
}

/* Cheap signals are ready at once: half of the top_k slots go to their
 * best candidates at the start of the think.  The draft model's scores
 * arrive later and the combined ranking fills the other slots, unless the
 * agent has acted by then.  Cheap-only mode fills every slot at once. */
static void *spec_main(void *arg) {
    spec_job *j = arg;
    agent *a = j->a;
    double t0 = now_ms();
    if (a->o.mode == CACHE_WW_RANDOM) {
        j->rc = spec_random(j);
    } else {
        int draft = a->o.mode == CACHE_WW_SPEC && a->env->draft && j->step == 2, issued = 0;
        cache_spec *s = NULL;
        j->rc = cache_spec_create(a->row->question, &s, &j->err);
        if (!j->rc) j->rc = spec_candidates(j, s);
        if (!j->rc) j->rc = request_top(j, s, draft ? (a->o.top_k + 1) / 2 : a->o.top_k, &issued);
        if (!j->rc && draft) {
            j->rc = spec_draft(j, s);
            if (!j->rc && !atomic_load(&j->stale)) j->rc = request_top(j, s, a->o.top_k, &issued);
        }
        cache_spec_destroy(s);
    }
    j->ms = now_ms() - t0;
    return NULL;
}

/* Waits for the last speculator; its time and error are counted here. */
static int spec_join(agent *a, eng_err *err) {
    if (!a->running) return ENG_OK;
    double t0 = now_ms();
    pthread_join(a->th, NULL);
    a->running = 0;
    a->res->late_ms += now_ms() - t0;
    a->res->spec_ms += a->job.ms;
    free(a->job.seen);
    a->job.seen = NULL;
    if (a->job.rc && err) *err = a->job.err;
    return a->job.rc;
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
    eng_chat_msg m[2] = { {"system", "You are a web agent. Choose the next action."}, {"user", user} };
    char *prompt = eng_chat_format(m, 2, 1);
    if (!prompt) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    int *ids = NULL, nid = 0;
    const eng_tok *tok = eng_model_tok(eng_engine_model(a->env->think));
    int rc = eng_tok_encode(tok, prompt, strlen(prompt), 1, &ids, &nid, err);
    free(prompt);
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
    double t0 = now_ms();
    if (!rc) rc = think(a, cur, err);
    a->res->think_ms += now_ms() - t0;
    if (a->running) atomic_store(&a->job.stale, 1);
    return rc;
}

/* ------------------------------------------------------------ actions */
/* One web action through the cache: counts the wait and how it was served. */
static int act(agent *a, const char *key, int kind, page **out, eng_err *err) {
    cache_prefetch_stats s0, s1;
    cache_prefetch_get_stats(a->pf, &s0, NULL);
    cache_entry e;
    double t0 = now_ms();
    int rc = cache_lookup_or_fetch(a->pf, key, &e, err);
    double waited = now_ms() - t0;
    a->res->wait_ms += waited;
    if (rc) return rc;
    cache_prefetch_get_stats(a->pf, &s1, NULL);
    int hit = s1.hits > s0.hits, join = s1.joins > s0.joins, click = kind == CACHE_WW_ACT_CLICK;
    cache_ww_result *r = a->res;
    r->actions++;
    r->hits += hit;
    r->joins += join;
    r->clicks += click;
    r->click_hits += click && (hit || join);
    r->kind_n[kind]++;
    r->kind_hits[kind] += hit;
    r->kind_joins[kind] += join;
    r->kind_wait_ms[kind] += waited;
    char *k = NULL;
    rc = cache_key(key, &k, err);
    *out = rc ? NULL : page_parse(k, e.value);
    free(k);
    cache_entry_free(&e);
    if (!rc && !*out) rc = eng_seterr(err, ENG_EFORMAT, "%.200s: cannot read the fetched page", key);
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
