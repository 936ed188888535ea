/* web.c — the cache in front of the agent's fetch_url tool: every page the
 * model asks for goes through cache_lookup_or_fetch (a hit returns at once,
 * a fetch in flight is joined), misses fetch over HTTP with tool_fetch_raw,
 * and the links of each page served are queued for speculative prefetch,
 * ranked against the question by the cheap-signal speculator. */
#include <stdlib.h>
#include <string.h>
#include "cache.h"
#include "tool.h"

struct cache_web {
    cache *c;
    cache_prefetch *p;
    tool_fetch_opts net;       /* how misses are fetched */
    int prefetch_k;
};

/* cache_fetch_fn: one GET over the network. */
static int net_fetch(void *ud, const char *key, char **body, size_t *len, char **ctype, eng_err *err) {
    cache_web *w = ud;
    tool_fetch_resp r = { 0 };
    int rc = tool_fetch_raw(key, &w->net, NULL, &r, err);
    if (rc) return rc;
    *body = r.body;
    *len = r.len;
    *ctype = r.content_type;
    r.body = NULL;
    r.content_type = NULL;
    tool_fetch_resp_clear(&r);
    return ENG_OK;
}

/* Queues the page's links that share words with its own title, best first. */
static void prefetch_links(cache_web *w, const tool_page *pg) {
    if (w->prefetch_k <= 0 || !pg->n_links) return;
    cache_spec *s = NULL;
    if (cache_spec_create(pg->title ? pg->title : "", &s, NULL)) return;
    for (int i = 0; i < pg->n_links; i++)
        cache_spec_add_link(s, pg->links[i].url, pg->links[i].text ? pg->links[i].text : "", NULL);
    cache_spec_prefetch(s, w->p, w->prefetch_k, NULL);
    cache_spec_destroy(s);
}

/* tool_fetch_opts.get: the page from the cache, fetched on a miss. */
static int cached_get(void *ud, const char *url, const tool_ctx *ctx, tool_page **out, eng_err *err) {
    cache_web *w = ud;
    (void)ctx;                 /* cancel and deadline do not reach the cache: a fetch, once
                                  started, finishes for whoever joins it */
    cache_entry e = { 0 };
    int rc = cache_lookup_or_fetch(w->p, url, &e, err);
    if (rc) return rc;
    rc = tool_page_from_body(url, e.ctype, e.value, e.len, out, err);
    cache_entry_free(&e);
    if (!rc) prefetch_links(w, *out);
    return rc;
}

int cache_web_create(const char *path, const tool_fetch_opts *net, int prefetch_k,
                     cache_web **out, eng_err *err) {
    cache_web *w = calloc(1, sizeof *w);
    if (!w) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    w->net = *net;
    w->prefetch_k = prefetch_k;
    cache_opts co = { .recover = 1 };   /* a broken cache file is moved aside, not fatal */
    cache_prefetch_opts po = { .max_concurrent = 4 };
    int rc = cache_open(path, &co, &w->c, err);
    if (!rc) rc = cache_prefetch_create(w->c, net_fetch, w, &po, &w->p, err);
    if (rc) { cache_web_destroy(w); return rc; }
    *out = w;
    return ENG_OK;
}

void cache_web_destroy(cache_web *w) {
    if (!w) return;
    if (w->p) cache_prefetch_destroy(w->p);
    if (w->c) cache_close(w->c);
    free(w);
}

void cache_web_hook(cache_web *w, tool_fetch_opts *o) {
    o->get = cached_get;
    o->get_user = w;
}

double cache_web_hit_rate(cache_web *w) {
    cache_prefetch_stats st;
    if (!w || cache_prefetch_get_stats(w->p, &st, NULL)) return 0;
    int64_t n = st.hits + st.joins + st.misses;
    return n ? (double)(st.hits + st.joins) / (double)n : 0;
}
