/* tool_fetch.c — HTTP GET through libcurl with the limits a tool needs, and
 * the fetch_url and web_search tools built on it. */
#define _GNU_SOURCE   /* strcasestr */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "tool_internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

enum { STOP_NONE, STOP_SIZE, STOP_TYPE, STOP_CANCEL, STOP_NOMEM, STOP_PRIVATE };

typedef struct xfer {
    CURL *h;
    eng_buf body;
    size_t max_bytes;
    const char *const *accept;
    int stop;
    char bad_type[128];
    char bad_addr[64];          /* STOP_PRIVATE: the address refused */
    int refuse_private;
    const tool_ctx *ctx;
} xfer;

/* "Text/HTML; charset=x" -> "text/html" in buf. */
static void media_type(const char *ct, char *buf, size_t cap) {
    size_t k = 0;
    while (ct && *ct == ' ') ct++;
    for (; ct && *ct && *ct != ';' && *ct != ' ' && k + 1 < cap; ct++)
        buf[k++] = (char)tolower((unsigned char)*ct);
    buf[k] = 0;
}

static int type_ok(xfer *x) {
    if (!x->accept) return 1;
    char *ct = NULL;
    curl_easy_getinfo(x->h, CURLINFO_CONTENT_TYPE, &ct);
    if (!ct) return 1;   /* none sent: judged by its bytes later */
    char mt[128];
    media_type(ct, mt, sizeof mt);
    for (const char *const *a = x->accept; *a; a++)
        if (!strcmp(mt, *a)) return 1;
    snprintf(x->bad_type, sizeof x->bad_type, "%s", mt);
    return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = size * nmemb;
    if (!type_ok(x)) return x->stop = STOP_TYPE, 0;
    if (x->body.n + n > x->max_bytes) return x->stop = STOP_SIZE, 0;
    if (eng_buf_add(&x->body, data, n)) return x->stop = STOP_NOMEM, 0;
    return n;
}

/* A new response (after a redirect) starts: drop any body of the last one. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = size * nmemb;
    if (n >= 5 && !strncmp(data, "HTTP/", 5)) x->body.n = 0;
    return n;
}

static int on_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    xfer *x = user;
    if (x->ctx && x->ctx->cancel && atomic_load(x->ctx->cancel)) return x->stop = STOP_CANCEL, 1;
    return 0;
}

/* Loopback, link-local, private, shared (CGNAT), multicast, broadcast or
 * unspecified: an address a fetch for a model must not reach. */
static int private_v4(uint32_t a) {
    return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a >> 16) == 0xA9FE ||
           (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8 || (a >> 22) == (100 << 2 | 1) ||
           (a >> 28) >= 0xE;
}

static int private_addr(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return private_v4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6) return 1;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    const unsigned char *b = a->s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a))
        return private_v4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
    return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
           IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || (b[0] & 0xFE) == 0xFC;
}

/* libcurl asks for every socket it connects (each address tried, each
 * redirect): one to a private address is refused here, after resolution. */
static curl_socket_t on_open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *a) {
    xfer *x = user;
    if (x->refuse_private && private_addr(&a->addr)) {
        x->stop = STOP_PRIVATE;
        const void *in = a->family == AF_INET ? (const void *)&((struct sockaddr_in *)&a->addr)->sin_addr
                                              : (const void *)&((struct sockaddr_in6 *)&a->addr)->sin6_addr;
        if (!inet_ntop(a->family, in, x->bad_addr, sizeof x->bad_addr)) snprintf(x->bad_addr, sizeof x->bad_addr, "?");
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static int curl_error(CURLcode rc, const xfer *x, const tool_http_req *q, double timeout,
                      const char *errbuf, eng_err *err) {
    switch (x->stop) {
    case STOP_SIZE:
        return eng_seterr(err, ENG_EFULL, "response from %s larger than %zu bytes", q->url, x->max_bytes);
    case STOP_TYPE:
        return eng_seterr(err, ENG_EUNSUPPORTED, "unsupported content type '%s' at %s", x->bad_type, q->url);
    case STOP_CANCEL:
        return eng_seterr(err, ENG_EIO, "cancelled");
    case STOP_NOMEM:
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    case STOP_PRIVATE:
        return eng_seterr(err, ENG_EINVAL, "refused to fetch %s: it leads to %s, a loopback, "
                          "link-local or private address", q->url, x->bad_addr);
    }
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return eng_seterr(err, ENG_EIO, "timed out fetching %s (limit %.1f s)", q->url, timeout);
    case CURLE_TOO_MANY_REDIRECTS:
        return eng_seterr(err, ENG_EIO, "too many redirects fetching %s (limit %d)", q->url,
                          q->max_redirects < 0 ? 0 : q->max_redirects);
    case CURLE_FILESIZE_EXCEEDED:
        return eng_seterr(err, ENG_EFULL, "response from %s larger than %zu bytes", q->url, x->max_bytes);
    case CURLE_UNSUPPORTED_PROTOCOL:
        return eng_seterr(err, ENG_EINVAL, "only http and https URLs can be fetched: %s", q->url);
    case CURLE_URL_MALFORMAT:
        return eng_seterr(err, ENG_EINVAL, "malformed URL: %s", q->url);
    default:
        return eng_seterr(err, ENG_EIO, "fetching %s failed: %s", q->url,
                          errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }
}

static int has_scheme(const char *u, const char *scheme) {
    size_t n = strlen(scheme);
    return !strncasecmp(u, scheme, n) && u[n] == ':' && u[n + 1] == '/' && u[n + 2] == '/';
}

int tool_http_get(const tool_http_req *q, const char *const *accept, tool_http_resp *r,
                  eng_err *err) {
    memset(r, 0, sizeof *r);
    if (!q->url || !(has_scheme(q->url, "http") || has_scheme(q->url, "https")))
        return eng_seterr(err, ENG_EINVAL, "only http and https URLs can be fetched: %s",
                          q->url ? q->url : "(none)");
    double timeout = q->timeout_s > 0 ? q->timeout_s : 15;
    if (tool_ctx_left(q->ctx) < timeout) timeout = tool_ctx_left(q->ctx);
    if (q->ctx && q->ctx->cancel && atomic_load(q->ctx->cancel))
        return eng_seterr(err, ENG_EIO, "cancelled");
    if (timeout < 0.001) return eng_seterr(err, ENG_EIO, "no time left to fetch %s", q->url);
    pthread_once(&curl_once, curl_init_once);
    xfer x = {.max_bytes = q->max_bytes ? q->max_bytes : 2u << 20, .accept = accept, .ctx = q->ctx,
              .refuse_private = q->refuse_private};
    x.h = curl_easy_init();
    if (!x.h) return eng_seterr(err, ENG_ENOMEM, "cannot create a curl handle");
    char errbuf[CURL_ERROR_SIZE] = "";
    double ct = q->connect_timeout_s > 0 ? q->connect_timeout_s : 5;
    CURL *h = x.h;
    curl_easy_setopt(h, CURLOPT_URL, q->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, q->max_redirects >= 0 ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)(q->max_redirects > 0 ? q->max_redirects : 0));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(ct * 1000));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000) + 1);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);   /* threads: no SIGALRM */
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x.max_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_USERAGENT, q->user_agent ? q->user_agent : "brisk/0.1");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &x);
    if (q->refuse_private) curl_easy_setopt(h, CURLOPT_PROXY, "");   /* see tool_fetch_opts */
    double t0 = eng_now_s();
    CURLcode rc = curl_easy_perform(h);
    r->elapsed_s = eng_now_s() - t0;
    int ret = ENG_OK;
    if (rc == CURLE_OK && !type_ok(&x)) {
        x.stop = STOP_TYPE;  /* empty body: the write callback never ran */
        rc = CURLE_WRITE_ERROR;
    }
    if (rc != CURLE_OK) {
        ret = curl_error(rc, &x, q, timeout, errbuf, err);
    } else {
        char *ctype = NULL, *final = NULL;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);
        curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &final);
        r->ctype = ctype ? tool_strdup(ctype) : NULL;
        r->final_url = tool_strdup(final ? final : q->url);
        r->n_body = x.body.n;
        r->body = eng_buf_take(&x.body);
        if (!r->final_url || !r->body || (ctype && !r->ctype))
            ret = eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    eng_buf_free(&x.body);
    curl_easy_cleanup(h);
    if (ret) tool_http_resp_free(r);
    return ret;
}

void tool_http_resp_free(tool_http_resp *r) {
    free(r->body);
    free(r->ctype);
    free(r->final_url);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------ pages */
void tool_page_free(tool_page *p) {
    if (!p) return;
    free(p->url);
    free(p->content_type);
    free(p->title);
    free(p->text);
    for (int i = 0; i < p->n_links; i++) free(p->links[i].url), free(p->links[i].text);
    free(p->links);
    free(p);
}

/* Latin-1 (also used for windows-1252) to UTF-8. */
static char *latin1_to_utf8(const char *s, size_t n, size_t *out_n) {
    eng_buf b = {0};
    int rc = eng_buf_add(&b, "", 0);
    for (size_t i = 0; i < n && !rc; i++) rc = tool_add_utf8(&b, (unsigned char)s[i]);
    if (rc) {
        eng_buf_free(&b);
        return NULL;
    }
    *out_n = b.n;
    return eng_buf_take(&b);
}

static int is_latin1(const char *ctype) {
    const char *cs = ctype ? strcasestr(ctype, "charset=") : NULL;
    if (!cs) return 0;
    cs += 8;
    if (*cs == '"') cs++;
    return !strncasecmp(cs, "iso-8859-1", 10) || !strncasecmp(cs, "latin1", 6) ||
           !strncasecmp(cs, "windows-1252", 12);
}

static int looks_like_html(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && isspace((unsigned char)s[i])) i++;
    return i < n && s[i] == '<';
}

static const char *const PAGE_TYPES[] = {"text/html", "text/plain", "application/json",
                                         "application/xhtml+xml", NULL};

int tool_fetch_raw(const char *url, const tool_fetch_opts *o, const tool_ctx *ctx,
                   tool_fetch_resp *out, eng_err *err) {
    tool_fetch_opts d = {0};
    if (!o) o = &d;
    memset(out, 0, sizeof *out);
    tool_http_req q = {url, o->connect_timeout_s, o->timeout_s, o->max_bytes,
                       o->max_redirects == 0 ? 5 : o->max_redirects, o->user_agent, ctx,
                       !o->allow_private};
    tool_http_resp r;
    int rc = tool_http_get(&q, PAGE_TYPES, &r, err);
    if (rc) return rc;
    if (r.status >= 400) {
        rc = eng_seterr(err, ENG_EIO, "HTTP %ld fetching %s", r.status, r.final_url);
        tool_http_resp_free(&r);
        return rc;
    }
    out->url = r.final_url;
    out->status = r.status;
    out->content_type = r.ctype;
    out->body = r.body;
    out->len = r.n_body;
    out->elapsed_s = r.elapsed_s;
    return ENG_OK;
}

void tool_fetch_resp_clear(tool_fetch_resp *r) {
    free(r->url);
    free(r->content_type);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int tool_page_from_body(const char *url, const char *ctype, const char *body, size_t len,
                        tool_page **out, eng_err *err) {
    *out = NULL;
    tool_page *p = calloc(1, sizeof *p);
    char mt[128], *conv = NULL;
    media_type(ctype, mt, sizeof mt);
    if (is_latin1(ctype) && (conv = latin1_to_utf8(body, len, &len))) body = conv;
    int html = !strcmp(mt, "text/html") || !strcmp(mt, "application/xhtml+xml") ||
               (!mt[0] && looks_like_html(body, len));
    int rc = ENG_OK;
    if (p) {
        p->url = tool_strdup(url ? url : "");
        p->status = 200;
        p->content_type = tool_strdup(ctype ? ctype : "");
        p->n_bytes = len;
        if (html) {
            rc = tool_html_to_text(body, len, url, p);
        } else {
            p->title = tool_strdup("");
            p->text = tool_strndup(body, len);
        }
    }
    free(conv);
    if (!p || rc || !p->url || !p->content_type || !p->title || !p->text) {
        tool_page_free(p);
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    *out = p;
    return ENG_OK;
}

int tool_fetch_page(const char *url, const tool_fetch_opts *o, const tool_ctx *ctx,
                    tool_page **out, eng_err *err) {
    tool_fetch_resp r;
    *out = NULL;
    int rc = tool_fetch_raw(url, o, ctx, &r, err);
    if (rc) return rc;
    rc = tool_page_from_body(r.url, r.content_type, r.body, r.len, out, err);
    if (!rc) {
        (*out)->status = r.status;
        (*out)->elapsed_s = r.elapsed_s;
    }
    tool_fetch_resp_clear(&r);
    return rc;
}

char *tool_page_format(const tool_page *p, size_t max_text, int max_links) {
    eng_buf b = {0};
    size_t n = strlen(p->text), cut = tool_utf8_cut(p->text, n, max_text);
    int rc = 0;
    if (p->title && p->title[0]) rc |= eng_buf_printf(&b, "Title: %s\n", p->title);
    rc |= eng_buf_printf(&b, "URL: %s\n\n", p->url);
    rc |= eng_buf_add(&b, p->text, cut);
    if (cut < n) rc |= eng_buf_printf(&b, "\n[... %zu more bytes not shown]", n - cut);
    int shown = p->n_links < max_links ? p->n_links : max_links;
    if (shown > 0) rc |= eng_buf_adds(&b, "\n\nLinks:");
    for (int i = 0; i < shown; i++) {
        const char *t = p->links[i].text;
        size_t tl = tool_utf8_cut(t, strlen(t), 80);
        rc |= eng_buf_printf(&b, "\n[%d] %.*s%s%s", i + 1, (int)tl, t, tl ? " - " : "",
                              p->links[i].url);
    }
    if (p->n_links > shown) rc |= eng_buf_printf(&b, "\n(%d more links)", p->n_links - shown);
    if (rc) {
        eng_buf_free(&b);
        return NULL;
    }
    return eng_buf_take(&b);
}

/* ---------------------------------------------------------------- fetch_url */
static cJSON *page_meta(const tool_page *p) {
    cJSON *m = cJSON_CreateObject(), *links = cJSON_AddArrayToObject(m, "links");
    cJSON_AddStringToObject(m, "url", p->url);
    cJSON_AddStringToObject(m, "title", p->title);
    for (int i = 0; links && i < p->n_links; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "url", p->links[i].url);
        cJSON_AddStringToObject(l, "text", p->links[i].text);
        cJSON_AddItemToArray(links, l);
    }
    return m;
}

static int fetch_exec(const cJSON *args, const tool_ctx *ctx, char **text, cJSON **meta,
                      eng_err *err) {
    const tool_fetch_opts *o = ctx->user;
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "url"));
    tool_page *p = NULL;
    int rc = o->get ? o->get(o->get_user, url, ctx, &p, err) : tool_fetch_page(url, o, ctx, &p, err);
    if (rc) return rc;
    *text = tool_page_format(p, o->max_text ? o->max_text : 8000, o->max_links ? o->max_links : 40);
    *meta = page_meta(p);
    tool_page_free(p);
    return *text ? ENG_OK : eng_seterr(err, ENG_ENOMEM, "out of memory");
}

int tool_register_fetch_url(tool_registry *r, const tool_fetch_opts *o, eng_err *err) {
    static const char *early[] = {"url"};
    tool_fetch_opts *copy = calloc(1, sizeof *copy);
    cJSON *schema = cJSON_Parse(
        "{\"type\": \"object\", \"properties\": {\"url\": {\"type\": \"string\", "
        "\"description\": \"Absolute http or https URL of the page\"}}, \"required\": [\"url\"]}");
    if (!copy || !schema) {
        free(copy);
        cJSON_Delete(schema);
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    if (o) *copy = *o;   /* user_agent and get_user must outlive the registry */
    double t = copy->timeout_s > 0 ? copy->timeout_s : 15;
    tool_def d = {
        .name = "fetch_url",
        .description = "Fetch a web page and return its title, readable text and links.",
        .schema = schema, .early = early, .n_early = 1, .timeout_s = t + 5,
        .exec = fetch_exec, .user = copy, .user_free = free,
    };
    int rc = tool_register(r, &d, err);
    cJSON_Delete(schema);
    if (rc) free(copy);
    return rc;
}

/* -------------------------------------------------------------- web_search */
typedef struct search_cfg { tool_search_opts o; char *endpoint; } search_cfg;

static const char *const JSON_TYPES[] = {"application/json", NULL};

static int format_results(const char *query, const cJSON *results, char **text) {
    eng_buf b = {0};
    int rc = 0, i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, results) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "title"));
        const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "url"));
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "snippet"));
        if (!u) continue;
        rc |= eng_buf_printf(&b, "%s%d. %s\n   %s", i ? "\n\n" : "", i + 1, t ? t : u, u);
        if (s && s[0]) rc |= eng_buf_printf(&b, "\n   %s", s);
        i++;
    }
    if (i == 0) rc |= eng_buf_printf(&b, "No results for \"%s\".", query);
    if (rc) {
        eng_buf_free(&b);
        return ENG_ENOMEM;
    }
    *text = eng_buf_take(&b);
    return ENG_OK;
}

int tool_search(const tool_search_opts *o, const char *query, int k, const tool_ctx *ctx,
                char **text, cJSON **results, eng_err *err) {
    *text = NULL;
    if (results) *results = NULL;
    if (!o || !o->endpoint) return eng_seterr(err, ENG_EINVAL, "no search endpoint configured");
    if (!query || !query[0]) return eng_seterr(err, ENG_EINVAL, "empty search query");
    if (k <= 0) k = o->k > 0 ? o->k : 5;
    if (k > 50) k = 50;
    char *q = tool_url_encode(query);
    eng_buf url = {0};
    int rc = q ? eng_buf_printf(&url, "%s%cq=%s&k=%d", o->endpoint,
                                 strchr(o->endpoint, '?') ? '&' : '?', q, k) : -1;
    free(q);
    if (rc) {
        eng_buf_free(&url);
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    /* the search endpoint is the operator's choice, often a local service */
    tool_http_req req = {url.p, 5, o->timeout_s > 0 ? o->timeout_s : 10, 1u << 20, 3, NULL, ctx, 0};
    tool_http_resp r;
    rc = tool_http_get(&req, JSON_TYPES, &r, err);
    eng_buf_free(&url);
    if (rc) return rc;
    cJSON *doc = r.status < 400 ? cJSON_ParseWithLength(r.body, r.n_body) : NULL;
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "results");
    if (r.status >= 400) rc = eng_seterr(err, ENG_EIO, "search endpoint answered HTTP %ld", r.status);
    else if (!cJSON_IsArray(arr)) rc = eng_seterr(err, ENG_EFORMAT, "search endpoint sent no \"results\" array");
    else if (format_results(query, arr, text)) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
    if (!rc && results) *results = cJSON_DetachItemViaPointer(doc, arr);
    cJSON_Delete(doc);
    tool_http_resp_free(&r);
    return rc;
}

static int search_exec(const cJSON *args, const tool_ctx *ctx, char **text, cJSON **meta,
                       eng_err *err) {
    const search_cfg *cfg = ctx->user;
    const char *query = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "query"));
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(args, "k");
    return tool_search(&cfg->o, query, cJSON_IsNumber(k) ? k->valueint : 0, ctx, text, meta, err);
}

static void search_cfg_free(void *p) {
    search_cfg *c = p;
    free(c->endpoint);
    free(c);
}

int tool_register_web_search(tool_registry *r, const tool_search_opts *o, eng_err *err) {
    static const char *early[] = {"query"};
    if (!o || !o->endpoint) return eng_seterr(err, ENG_EINVAL, "web_search needs an endpoint");
    search_cfg *cfg = calloc(1, sizeof *cfg);
    cJSON *schema = cJSON_Parse(
        "{\"type\": \"object\", \"properties\": {\"query\": {\"type\": \"string\", "
        "\"description\": \"What to search for\"}}, \"required\": [\"query\"]}");
    if (cfg) cfg->o = *o;
    if (cfg) cfg->o.endpoint = cfg->endpoint = tool_strdup(o->endpoint);
    if (!cfg || !cfg->endpoint || !schema) {
        if (cfg) search_cfg_free(cfg);
        cJSON_Delete(schema);
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    tool_def d = {
        .name = "web_search",
        .description = "Search the web; returns numbered results with title, URL and snippet.",
        .schema = schema, .early = early, .n_early = 1,
        .timeout_s = (o->timeout_s > 0 ? o->timeout_s : 10) + 5,
        .exec = search_exec, .user = cfg, .user_free = search_cfg_free,
    };
    int rc = tool_register(r, &d, err);
    cJSON_Delete(schema);
    if (rc) search_cfg_free(cfg);
    return rc;
}
