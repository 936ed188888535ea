/* test_webenv.c — the local web environment: generated corpus, pages and
 * search over HTTP, latency model, robustness against malformed requests,
 * and fetch_url's limits (timeouts, size cap, redirects, content types). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>
#include "t.h"
#include "tool.h"

/* The web environment listens on loopback: fetches must be allowed there. */
static const tool_fetch_opts LOCAL = {.allow_private = 1};

#define SEED 7
#define N_PAGES 300

static char g_dir[256], g_db[300];
static tool_webenv *g_env;
static const char *base(void) { return tool_webenv_url(g_env); }

static void make_url(char *buf, size_t cap, const char *path) { snprintf(buf, cap, "%s%s", base(), path); }

static void page_free_all(tool_page *p) { tool_page_free(p); }

/* ------------------------------------------------------------- latency */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_latency_sampler(void) {
    double v[200], logs = 0, logs2 = 0;
    tool_latency l;
    tool_latency_init(&l, 400, 0.6, 42);
    for (int i = 0; i < 200; i++) {
        v[i] = tool_latency_draw_ms(&l);
        logs += log(v[i]);
        logs2 += log(v[i]) * log(v[i]);
    }
    double mean = logs / 200, sd = sqrt(logs2 / 200 - mean * mean);
    qsort(v, 200, sizeof v[0], cmp_double);
    double median = (v[99] + v[100]) / 2;
    printf("  200 draws: median %.0f ms (want 400), log-sd %.2f (want 0.6), min %.0f, max %.0f\n",
           median, sd, v[0], v[199]);
    T_CHECKF(fabs(median - 400) < 100, "median %.1f", median);
    T_CHECKF(fabs(sd - 0.6) < 0.15, "sigma %.3f", sd);
    /* same seed, same draws; another seed, others; sigma 0 is fixed */
    tool_latency a, b, c;
    tool_latency_init(&a, 100, 0.5, 1);
    tool_latency_init(&b, 100, 0.5, 1);
    tool_latency_init(&c, 100, 0.5, 2);
    int same = 1, diff = 0;
    for (int i = 0; i < 20; i++) {
        double x = tool_latency_draw_ms(&a), y = tool_latency_draw_ms(&b), z = tool_latency_draw_ms(&c);
        same &= x == y;
        diff += x != z;
    }
    T_CHECK(same && diff > 15);
    tool_latency_init(&a, 50, 0, 1);
    T_CHECK(tool_latency_draw_ms(&a) == 50);
    tool_latency_init(&a, 0, 0.6, 1);
    T_CHECK(tool_latency_draw_ms(&a) == 0);
}

/* -------------------------------------------------------------- corpus */
static char *page_html(const char *db_path, const char *url) {
    sqlite3 *db;
    sqlite3_stmt *st;
    char *out = NULL;
    if (sqlite3_open(db_path, &db) != SQLITE_OK) return NULL;
    if (sqlite3_prepare_v2(db, "SELECT body_html FROM pages WHERE url = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) out = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return out;
}

static int count_pages(const char *db_path) {
    sqlite3 *db;
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_open(db_path, &db) != SQLITE_OK) return -1;
    if (sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM pages) + 1000000 * "
                               "((SELECT count(*) FROM pages_fts) != (SELECT count(*) FROM pages))",
                           -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_corpus_generate(void) {
    eng_err e = {0};
    T_CHECKF(tool_corpus_generate(g_db, N_PAGES, SEED, &e) == ENG_OK, "%s", e.msg);
    T_CHECKF(count_pages(g_db) == N_PAGES + 9, "%d pages", count_pages(g_db));  /* + home + 8 hubs */
    char other[320];
    snprintf(other, sizeof other, "%s/other.db", g_dir);
    T_CHECK(tool_corpus_generate(other, 50, SEED, &e) == ENG_OK);
    char *a = page_html(g_db, "/page/5"), *b = page_html(other, "/page/5");
    T_CHECK(a && b && strstr(a, "<title>") && strstr(a, "<a href=\"/page/"));
    T_CHECK(tool_corpus_generate(other, N_PAGES, SEED, &e) == ENG_OK);   /* regenerate: replaced */
    T_CHECK(count_pages(other) == N_PAGES + 9);
    free(b);
    b = page_html(other, "/page/5");
    T_CHECK(a && b && !strcmp(a, b));            /* same seed, same page */
    T_CHECK(tool_corpus_generate(other, N_PAGES, SEED + 1, &e) == ENG_OK);
    free(b);
    b = page_html(other, "/page/5");
    T_CHECK(a && b && strcmp(a, b) != 0);        /* another seed, another site */
    free(a);
    free(b);
    /* names are unique */
    char n1[64], n2[64];
    int dup = 0;
    for (int i = 0; i < N_PAGES; i++)
        for (int j = i + 1; j < N_PAGES; j++) {
            tool_corpus_page_name(SEED, i, n1, sizeof n1);
            tool_corpus_page_name(SEED, j, n2, sizeof n2);
            dup += !strcmp(n1, n2);
        }
    T_CHECK(dup == 0);
    T_CHECK(tool_corpus_generate(other, 0, 1, &e) == ENG_EINVAL);
    unlink(other);
}

static void test_start(void) {
    tool_webenv_opts o = {.db_path = g_db, .port = 0, .latency_median_ms = 2, .latency_sigma = 0.5,
                          .seed = 3, .test_endpoints = 1};
    eng_err e = {0};
    T_CHECKF(tool_webenv_start(&o, &g_env, &e) == ENG_OK, "%s", e.msg);
    if (!g_env) exit(1);
    T_CHECK(tool_webenv_port(g_env) > 0);
    T_CHECK(!strncmp(base(), "http://127.0.0.1:", 17));
    /* bad options */
    tool_webenv *w = NULL;
    tool_webenv_opts bad = {.db_path = "/nonexistent/dir/x.db"};
    T_CHECK(tool_webenv_start(&bad, &w, &e) != ENG_OK && !w);
    bad.db_path = NULL;
    T_CHECK(tool_webenv_start(&bad, &w, &e) == ENG_EINVAL);
    bad.db_path = g_db;
    bad.port = tool_webenv_port(g_env);   /* taken */
    T_CHECK(tool_webenv_start(&bad, &w, &e) == ENG_EIO && strstr(e.msg, "listen"));
}

/* --------------------------------------------------------------- pages */
static void test_fetch_pages(void) {
    char url[256], name[64], title[128];
    tool_page *p = NULL;
    eng_err e = {0};
    make_url(url, sizeof url, "/page/3");
    T_CHECKF(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK, "%s", e.msg);
    if (!p) return;
    tool_corpus_page_name(SEED, 3, name, sizeof name);
    T_CHECKF(!strncmp(p->title, name, strlen(name)), "title '%s', name '%s'", p->title, name);
    snprintf(title, sizeof title, "%s", p->title);
    T_CHECK(p->status == 200 && strstr(p->content_type, "text/html") && !strcmp(p->url, url));
    T_CHECK(strstr(p->text, name) != NULL && strstr(p->text, "See also"));
    T_CHECK(!strstr(p->text, "var views") && !strstr(p->text, "font-family"));
    T_CHECKF(p->n_links >= 6, "%d links", p->n_links);
    int abs_ok = 1, page_links = 0;
    for (int i = 0; i < p->n_links; i++) {
        abs_ok &= !strncmp(p->links[i].url, base(), strlen(base()));
        page_links += strstr(p->links[i].url, "/page/") != NULL;
    }
    T_CHECK(abs_ok && page_links >= 3);
    /* follow a link: the site is connected */
    char next[256];
    snprintf(next, sizeof next, "%s", p->links[p->n_links - 1].url);
    char anchor[128];
    snprintf(anchor, sizeof anchor, "%s", p->links[p->n_links - 1].text);
    page_free_all(p);
    p = NULL;
    T_CHECK(tool_fetch_page(next, &LOCAL, NULL, &p, &e) == ENG_OK);
    T_CHECKF(p && !strcmp(p->title, anchor), "followed '%s', got '%s'", anchor, p ? p->title : "");
    tool_page_free(p);
    p = NULL;
    /* home lists the 8 topic hubs; a hub lists its pages */
    make_url(url, sizeof url, "/");
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK);
    int hubs = 0;
    for (int i = 0; p && i < p->n_links; i++) hubs += strstr(p->links[i].url, "/topic/") != NULL;
    T_CHECK(hubs == 8);
    tool_page_free(p);
    p = NULL;
    make_url(url, sizeof url, "/topic/rivers");
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK && p->n_links > 5);
    tool_page_free(p);
}

static void test_404(void) {
    char url[256];
    tool_page *p = NULL;
    eng_err e = {0};
    make_url(url, sizeof url, "/page/999999");
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_EIO && !p);
    T_CHECKF(strstr(e.msg, "HTTP 404") != NULL, "%s", e.msg);
    make_url(url, sizeof url, "/_test/nothing");
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_EIO && strstr(e.msg, "404"));
}

/* -------------------------------------------------------------- search */
static void test_search(void) {
    char ep[256], name[64], want[64], *text = NULL;
    cJSON *res = NULL;
    eng_err e = {0};
    make_url(ep, sizeof ep, "/search");
    tool_search_opts so = {.endpoint = ep};
    int found = 0;
    for (int i = 10; i < 20; i++) {
        tool_corpus_page_name(SEED, i, name, sizeof name);
        T_CHECKF(tool_search(&so, name, 3, NULL, &text, &res, &e) == ENG_OK, "%s", e.msg);
        snprintf(want, sizeof want, "/page/%d", i);
        const cJSON *first = cJSON_GetArrayItem(res, 0);
        const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(first, "url"));
        size_t ul = u ? strlen(u) : 0, wl = strlen(want);
        found += u && ul >= wl && !strcmp(u + ul - wl, want);
        T_CHECK(cJSON_GetArraySize(res) <= 3 && cJSON_GetArraySize(res) >= 1);
        T_CHECK(strstr(text, "1. ") == text && strstr(text, name));
        free(text);
        cJSON_Delete(res);
    }
    T_CHECKF(found == 10, "the named page ranked first for %d of 10 names", found);
    /* k, hostile queries, no results */
    T_CHECK(tool_search(&so, "records river town observatory", 7, NULL, &text, &res, &e) == ENG_OK);
    T_CHECK(cJSON_GetArraySize(res) == 7);
    free(text);
    cJSON_Delete(res);
    const char *odd[] = {"\"unbalanced", "AND OR NOT", "NEAR(a b", "*", "a:b", "'; DROP TABLE pages; --",
                         "\xC3\xA9\xE4\xB8\xAD", "zzzzqqqq"};
    for (int i = 0; i < 8; i++) {
        T_CHECKF(tool_search(&so, odd[i], 5, NULL, &text, &res, &e) == ENG_OK, "%s: %s", odd[i], e.msg);
        if (i >= 6) T_CHECK(cJSON_GetArraySize(res) == 0 && strstr(text, "No results"));
        free(text);
        cJSON_Delete(res);
    }
    T_CHECK(count_pages(g_db) == N_PAGES + 9);
    T_CHECK(tool_search(&so, "", 5, NULL, &text, &res, &e) == ENG_EINVAL);
    tool_search_opts bad = {.endpoint = ep};
    char ep404[256];
    make_url(ep404, sizeof ep404, "/nosearch");
    bad.endpoint = ep404;
    T_CHECK(tool_search(&bad, "x", 5, NULL, &text, &res, &e) != ENG_OK);
    make_url(ep404, sizeof ep404, "/page/1");   /* HTML, not JSON */
    T_CHECK(tool_search(&bad, "x", 5, NULL, &text, &res, &e) == ENG_EUNSUPPORTED);
}

/* ---------------------------------------------------------------- tools */
static void test_tools_in_registry(void) {
    tool_registry *r = tool_registry_create();
    char ep[256], url[256], name[64];
    make_url(ep, sizeof ep, "/search");
    tool_search_opts so = {.endpoint = ep, .k = 4};
    tool_fetch_opts fo = {.max_text = 300, .max_links = 5, .allow_private = 1};
    eng_err e = {0};
    T_CHECK(tool_register_fetch_url(r, &fo, &e) == ENG_OK);
    T_CHECK(tool_register_web_search(r, &so, &e) == ENG_OK);
    tool_search_opts none = {0};
    T_CHECK(tool_register_web_search(r, &none, &e) == ENG_EINVAL);
    const tool_def *d = tool_registry_find(r, "web_search");
    T_CHECK(d && d->n_early == 1 && !strcmp(d->early[0], "query"));
    /* one model output calling both, run through the scheduler */
    tool_corpus_page_name(SEED, 42, name, sizeof name);
    make_url(url, sizeof url, "/page/7");
    char out[1024];
    snprintf(out, sizeof out, "<tool_call>\n{\"name\": \"web_search\", \"arguments\": {\"query\": \"%s\"}}\n"
             "</tool_call>\n<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": {\"url\": \"%s\"}}\n"
             "</tool_call>", name, url);
    tool_sched *s;
    T_CHECK(tool_sched_create(r, NULL, &s, &e) == ENG_OK);
    tool_sched_feed(s, out, strlen(out));
    tool_result *res;
    int n;
    tool_sched_collect(s, &res, &n, &e);
    T_CHECK(n == 2);
    if (n == 2) {
        T_CHECKF(!res[0].is_error && strstr(res[0].text, name) && strstr(res[0].text, "/page/42"), "%s", res[0].text);
        T_CHECK(cJSON_GetArraySize(res[0].meta) == 4);
        T_CHECKF(!res[1].is_error && !strncmp(res[1].text, "Title: ", 7) && strstr(res[1].text, "\nLinks:\n[1] ") &&
                 strstr(res[1].text, "more bytes not shown"), "%s", res[1].text);
        const cJSON *links = cJSON_GetObjectItemCaseSensitive(res[1].meta, "links");
        T_CHECK(cJSON_GetArraySize(links) >= 6);
        T_CHECK(res[0].early == 1 && res[1].early == 1);
    }
    tool_results_free(res, n);
    /* bad URL and unknown scheme come back as error results */
    const char *bad = "<tool_call>{\"name\": \"fetch_url\", \"arguments\": {\"url\": \"file:///etc/passwd\"}}</tool_call>"
                      "<tool_call>{\"name\": \"fetch_url\", \"arguments\": {\"url\": 5}}</tool_call>";
    tool_sched_feed(s, bad, strlen(bad));
    tool_sched_collect(s, &res, &n, &e);
    T_CHECK(n == 2 && res[0].is_error && strstr(res[0].text, "only http and https"));
    T_CHECK(n == 2 && res[1].is_error && strstr(res[1].text, "type string"));
    tool_results_free(res, n);
    tool_sched_destroy(s);
    tool_registry_destroy(r);
}

/* --------------------------------------------------------- fetch limits */
static int fetch_err(const char *path, const tool_fetch_opts *o, eng_err *e, double *dt) {
    char url[256];
    tool_page *p = NULL;
    make_url(url, sizeof url, path);
    double t0 = eng_now_s();
    int rc = tool_fetch_page(url, o, NULL, &p, e);
    if (dt) *dt = eng_now_s() - t0;
    tool_page_free(p);
    return rc;
}

static void test_fetch_limits(void) {
    eng_err e = {0};
    double dt;
    tool_fetch_opts o = {.timeout_s = 0.3, .allow_private = 1};
    T_CHECK(fetch_err("/_test/slow?ms=3000", &o, &e, &dt) == ENG_EIO);
    T_CHECKF(strstr(e.msg, "timed out") && dt < 1.0, "%s (%.2f s)", e.msg, dt);
    T_CHECK(fetch_err("/_test/slow?ms=10", &o, &e, NULL) == ENG_OK);
    /* size cap, with and without Content-Length */
    tool_fetch_opts cap = {.max_bytes = 10000, .allow_private = 1};
    T_CHECK(fetch_err("/_test/big?bytes=50000", &cap, &e, NULL) == ENG_EFULL && strstr(e.msg, "larger than 10000"));
    T_CHECK(fetch_err("/_test/big?bytes=50000&nolen=1", &cap, &e, NULL) == ENG_EFULL && strstr(e.msg, "larger"));
    T_CHECK(fetch_err("/_test/big?bytes=2000000&nolen=1", &cap, &e, NULL) == ENG_EFULL);
    char url[256];
    tool_page *p = NULL;
    make_url(url, sizeof url, "/_test/big?bytes=10000&nolen=1");
    T_CHECK(tool_fetch_page(url, &cap, NULL, &p, &e) == ENG_OK && p && p->n_bytes == 10000 &&
            strlen(p->text) == 10000 && strstr(p->content_type, "text/plain"));
    tool_page_free(p);
    /* redirects: 5 are followed, 6 are too many, a lower limit applies */
    p = NULL;
    make_url(url, sizeof url, "/_test/redirect?n=5");
    T_CHECKF(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK, "%s", e.msg);
    T_CHECK(p && !strcmp(p->title, "Redirect target") && strstr(p->url, "n=0") && !strcmp(p->text, "arrived"));
    tool_page_free(p);
    T_CHECK(fetch_err("/_test/redirect?n=6", &LOCAL, &e, NULL) == ENG_EIO && strstr(e.msg, "too many redirects"));
    tool_fetch_opts r2 = {.max_redirects = 2, .allow_private = 1};
    T_CHECK(fetch_err("/_test/redirect?n=3", &r2, &e, NULL) == ENG_EIO && strstr(e.msg, "limit 2"));
    tool_fetch_opts r0 = {.max_redirects = -1, .allow_private = 1};
    T_CHECK(fetch_err("/_test/redirect?n=1", &r0, &e, NULL) == ENG_OK);   /* the 302 page itself */
    /* content types */
    T_CHECK(fetch_err("/_test/binary", &LOCAL, &e, NULL) == ENG_EUNSUPPORTED &&
            strstr(e.msg, "application/octet-stream"));
    p = NULL;
    make_url(url, sizeof url, "/_test/json");
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK && p && strstr(p->text, "\"ok\": true"));
    tool_page_free(p);
    /* schemes */
    p = NULL;
    T_CHECK(tool_fetch_page("file:///etc/passwd", &LOCAL, NULL, &p, &e) == ENG_EINVAL && !p);
    T_CHECK(tool_fetch_page("ftp://127.0.0.1/x", &LOCAL, NULL, &p, &e) == ENG_EINVAL);
    T_CHECK(tool_fetch_page("gopher://x", &LOCAL, NULL, &p, &e) == ENG_EINVAL);
    T_CHECK(tool_fetch_page(NULL, &LOCAL, NULL, &p, &e) == ENG_EINVAL);
    T_CHECK(tool_fetch_page("http://", &LOCAL, NULL, &p, &e) != ENG_OK);
    /* connection refused: a port nobody listens on (the stopped server's) */
    tool_webenv_opts wo = {.db_path = g_db, .latency_median_ms = -1};
    tool_webenv *w = NULL;
    T_CHECK(tool_webenv_start(&wo, &w, &e) == ENG_OK);
    snprintf(url, sizeof url, "%s/", tool_webenv_url(w));
    tool_webenv_stop(w);
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_EIO && strstr(e.msg, "failed"));
}

/* The raw half plus tool_page_from_body give the same page. */
/* By default a fetch may not reach loopback, link-local or private
 * addresses, however the URL names them (checked on the address each
 * connection goes to); allow_private lets it. */
static void test_fetch_private_refused(void) {
    eng_err e = {0};
    tool_page *p = NULL;
    char url[256], port[16];
    make_url(url, sizeof url, "/page/3");
    const char *colon = strrchr(base(), ':');
    snprintf(port, sizeof port, "%s", colon ? colon + 1 : "80");
    T_CHECKF(tool_fetch_page(url, NULL, NULL, &p, &e) == ENG_EINVAL && !p && strstr(e.msg, "refused")
             && strstr(e.msg, "127.0.0.1"), "%s", e.msg);
    tool_fetch_opts plain = {.max_text = 100};
    T_CHECK(tool_fetch_page(url, &plain, NULL, &p, &e) == ENG_EINVAL && !p);
    T_CHECKF(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK && p, "%s", e.msg);
    tool_page_free(p);
    p = NULL;
    const char *hosts[] = { "localhost", "0.0.0.0", "127.1", "2130706433", "[::1]", "[::ffff:127.0.0.1]",
                            "169.254.169.254", "10.1.2.3", "172.16.5.4", "172.31.255.1", "192.168.0.1",
                            "100.64.0.1", "224.0.0.1", "[fe80::1]", "[fd12::1]", "[::]" };
    for (size_t i = 0; i < sizeof hosts / sizeof *hosts; i++) {
        snprintf(url, sizeof url, "http://%s:%s/page/3", hosts[i], port);
        double t0 = eng_now_s();
        int rc = tool_fetch_page(url, NULL, NULL, &p, &e);
        T_CHECKF(rc == ENG_EINVAL && !p && strstr(e.msg, "refused") && eng_now_s() - t0 < 2,
                 "%s: %d %s", hosts[i], rc, e.msg);
        tool_page_free(p);
        p = NULL;
    }
    /* a public address is not refused by the check (no network here: the
     * connection itself fails, or times out) */
    tool_fetch_opts quick = {.connect_timeout_s = 0.3, .timeout_s = 0.5};
    T_CHECK(tool_fetch_page("http://93.184.215.14:9/", &quick, NULL, &p, &e) != ENG_OK &&
            !strstr(e.msg, "refused to fetch"));
    tool_page_free(p);
}

static void test_fetch_raw_halves(void) {
    char url[256];
    tool_fetch_resp r;
    tool_page *a = NULL, *b = NULL;
    eng_err e = {0};
    make_url(url, sizeof url, "/page/4");
    T_CHECK(tool_fetch_raw(url, &LOCAL, NULL, &r, &e) == ENG_OK);
    T_CHECK(r.status == 200 && r.body && strstr(r.body, "<html>") && r.len == strlen(r.body));
    T_CHECK(r.content_type && strstr(r.content_type, "text/html") && !strcmp(r.url, url));
    T_CHECK(tool_page_from_body(r.url, r.content_type, r.body, r.len, &a, &e) == ENG_OK);
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &b, &e) == ENG_OK);
    T_CHECK(a && b && !strcmp(a->title, b->title) && !strcmp(a->text, b->text) && a->n_links == b->n_links);
    tool_page_free(a);
    tool_page_free(b);
    tool_fetch_resp_clear(&r);
    make_url(url, sizeof url, "/_test/binary");
    T_CHECK(tool_fetch_raw(url, &LOCAL, NULL, &r, &e) == ENG_EUNSUPPORTED && !r.body);
}

/* Cancelling a fetch in flight ends it promptly. */
static void *cancel_later(void *arg) {
    usleep(150 * 1000);
    atomic_store((atomic_int *)arg, 1);
    return NULL;
}

static void test_fetch_cancel_and_deadline(void) {
    atomic_int cancel = 0;
    tool_ctx ctx = {&cancel, 0, NULL};
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, &cancel);
    char url[256];
    tool_page *p = NULL;
    eng_err e = {0};
    make_url(url, sizeof url, "/_test/slow?ms=5000");
    double t0 = eng_now_s();
    T_CHECK(tool_fetch_page(url, &LOCAL, &ctx, &p, &e) == ENG_EIO && strstr(e.msg, "cancelled"));
    double dt = eng_now_s() - t0;
    pthread_join(th, NULL);
    T_CHECKF(dt < 1.5, "cancel took %.2f s", dt);
    tool_ctx dl = {NULL, eng_now_s() + 0.2, NULL};   /* the ctx deadline caps the timeout */
    t0 = eng_now_s();
    T_CHECK(tool_fetch_page(url, &LOCAL, &dl, &p, &e) == ENG_EIO && strstr(e.msg, "timed out"));
    T_CHECK(eng_now_s() - t0 < 0.8);
}

/* ------------------------------------------------------- malformed HTTP */
/* Sends raw bytes, returns what came back (malloc'd, maybe ""). */
static char *raw_request(const char *data, size_t n, int close_early) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)tool_webenv_port(g_env));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char *out = calloc(1, 65536);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return out;
    }
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (n) send(fd, data, n, MSG_NOSIGNAL);
    if (close_early) {
        close(fd);
        return out;
    }
    size_t got = 0;
    ssize_t k;
    while (got < 65535 && (k = recv(fd, out + got, 65535 - got, 0)) > 0) got += (size_t)k;
    close(fd);
    return out;
}

static void test_malformed_requests(void) {
    struct { const char *req; const char *status; } cases[] = {
        {"garbage\r\n\r\n", "400"},
        {"POST /page/1 HTTP/1.1\r\nHost: x\r\n\r\n", "405"},
        {"HEAD / HTTP/1.1\r\n\r\n", "405"},
        {"GET / HTTP/2.0\r\n\r\n", "400"},
        {"GET /\r\n\r\n", "400"},
        {"GET page/1 HTTP/1.1\r\n\r\n", "400"},
        {"GET / HTTP/1.1 extra\r\n\r\n", "400"},
        {"get / HTTP/1.1\r\n\r\n", "400"},
        {"GET /a\x01 HTTP/1.1\r\n\r\n", "400"},
        {"\r\n\r\n", "400"},
        {"GET /page/1 HTTP/1.1\n\n", "200"},
        {"GET /search?q=%ZZ%&k=abc&k HTTP/1.1\r\n\r\n", "200"},
        {"GET /search HTTP/1.1\r\n\r\n", "200"},
        {"GET /_test/big?bytes=-5 HTTP/1.1\r\n\r\n", "200"},
        {"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n\r\n", "404"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        char *r = raw_request(cases[i].req, strlen(cases[i].req), 0);
        char want[32];
        snprintf(want, sizeof want, "HTTP/1.1 %s ", cases[i].status);
        T_CHECKF(!strncmp(r, want, strlen(want)), "case %d: got '%.40s'", i, r);
        free(r);
    }
    /* a request line too long, headers too large, NUL bytes, nothing, half a request */
    char *big = malloc(20000);
    if (!big) return;
    strcpy(big, "GET /");
    memset(big + 5, 'a', 3000);
    strcpy(big + 3005, " HTTP/1.1\r\n\r\n");
    char *r = raw_request(big, strlen(big), 0);
    T_CHECKF(!strncmp(r, "HTTP/1.1 414 ", 13), "got '%.40s'", r);
    free(r);
    strcpy(big, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 600; i++) strcat(big, "X-Pad: 0123456789abcdef\r\n");
    r = raw_request(big, strlen(big), 0);
    T_CHECKF(!strncmp(r, "HTTP/1.1 431 ", 13) || r[0] == 0, "got '%.40s'", r);
    free(r);
    r = raw_request("GET /\0 HTTP/1.1\r\n\r\n", 20, 0);
    T_CHECKF(!strncmp(r, "HTTP/1.1 400 ", 13), "got '%.40s'", r);
    free(r);
    for (int i = 0; i < 256; i++) big[i] = (char)(i * 7 + 3);
    free(raw_request(big, 256, 0));
    free(raw_request(NULL, 0, 1));
    free(raw_request("GET /page/1 HT", 14, 1));
    free(raw_request("GET /_test/big?bytes=5000000 HTTP/1.1\r\n\r\n", 42, 1));   /* client leaves */
    free(big);
    /* still serving */
    char url[256];
    tool_page *p = NULL;
    eng_err e = {0};
    make_url(url, sizeof url, "/page/1");
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK);
    tool_page_free(p);
    T_CHECK(tool_webenv_requests(g_env) > 20);
}

/* Many clients at once. */
static void *fetch_many(void *arg) {
    int *ok = arg;
    for (int i = 0; i < 10; i++) {
        char url[256];
        tool_page *p = NULL;
        snprintf(url, sizeof url, "%s/page/%d", base(), (i * 37 + *ok) % N_PAGES);
        if (tool_fetch_page(url, &LOCAL, NULL, &p, NULL) == ENG_OK && p->n_links > 0) (*ok) += 1000;
        tool_page_free(p);
    }
    return NULL;
}

static void test_concurrent_clients(void) {
    pthread_t th[8];
    int ok[8];
    for (int i = 0; i < 8; i++) ok[i] = i, pthread_create(&th[i], NULL, fetch_many, &ok[i]);
    int total = 0;
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL), total += ok[i] / 1000;
    T_CHECKF(total == 80, "%d of 80 fetches worked", total);
}

/* Latency of real requests follows the configured model (roughly). */
static void test_request_latency(void) {
    tool_webenv_opts o = {.db_path = g_db, .latency_median_ms = 60, .latency_sigma = -1};
    tool_webenv *w;
    eng_err e = {0};
    T_CHECK(tool_webenv_start(&o, &w, &e) == ENG_OK);
    char url[256];
    snprintf(url, sizeof url, "%s/page/2", tool_webenv_url(w));
    double t0 = eng_now_s();
    tool_page *p = NULL;
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK);
    double dt = eng_now_s() - t0;
    tool_page_free(p);
    T_CHECKF(dt >= 0.058 && dt < 0.3, "fixed 60 ms latency, request took %.3f s", dt);
    tool_webenv_stop(w);
}

/* After a reseed the requests meet the seed's draws again, in order (the
 * benchmark gives every mode the same latencies this way). */
static void test_reseed(void) {
    tool_webenv_opts o = {.db_path = g_db, .latency_median_ms = 30, .latency_sigma = 1.2, .seed = 3};
    tool_webenv *w;
    eng_err e = {0};
    T_CHECK(tool_webenv_start(&o, &w, &e) == ENG_OK);
    tool_latency l;
    tool_latency_init(&l, 30, 1.2, 3);
    double want[8];
    for (int i = 0; i < 8; i++) want[i] = tool_latency_draw_ms(&l) / 1e3;
    const double slack = 0.25;   /* above the draw, for a loaded machine */
    int apart = 0;               /* without the reseed some request would fail the checks below */
    for (int i = 0; i < 4; i++) apart += want[i + 4] < want[i] - 0.01 || want[i + 4] > want[i] + slack;
    T_CHECKF(apart > 0, "seed gives look-alike draws");
    char url[256];
    snprintf(url, sizeof url, "%s/page/2", tool_webenv_url(w));
    for (int round = 0; round < 2; round++) {
        if (round) tool_webenv_reseed(w, 3);
        for (int i = 0; i < 4; i++) {
            double t0 = eng_now_s();
            tool_page *p = NULL;
            T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK);
            double dt = eng_now_s() - t0;
            tool_page_free(p);
            T_CHECKF(dt >= want[i] - 0.002 && dt < want[i] + slack, "round %d request %d: %.3f s, draw %.3f s",
                     round, i, dt, want[i]);
        }
    }
    tool_webenv_stop(w);
}

/* Stopping does not wait for slow requests in flight. */
static void *slow_client(void *arg) {
    tool_page *p = NULL;
    tool_fetch_page(arg, &LOCAL, NULL, &p, NULL);
    tool_page_free(p);
    return NULL;
}

static void test_stop_with_requests_in_flight(void) {
    tool_webenv_opts o = {.db_path = g_db, .latency_median_ms = 5000, .latency_sigma = -1,
                          .test_endpoints = 1};
    tool_webenv *w;
    T_CHECK(tool_webenv_start(&o, &w, NULL) == ENG_OK);
    char url[256];
    snprintf(url, sizeof url, "%s/_test/slow?ms=10000", tool_webenv_url(w));
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, slow_client, url);
    usleep(100 * 1000);
    double t0 = eng_now_s();
    tool_webenv_stop(w);
    double dt = eng_now_s() - t0;
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    T_CHECKF(dt < 0.5, "stop took %.2f s", dt);
}

/* --------------------------------------------------------------- import */
static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    if (f) fputs(s, f), fclose(f);
}

static void test_import_dir(void) {
    char d[300], sub[320], path[400], db[320];
    snprintf(d, sizeof d, "%s/docs", g_dir);
    snprintf(sub, sizeof sub, "%s/sub", d);
    snprintf(db, sizeof db, "%s/import.db", g_dir);
    mkdir(d, 0755);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/index.html", d);
    write_file(path, "<html><head><title>Manual index</title></head><body>See "
                     "<a href=\"sub/ch1.html\">chapter one</a>.</body></html>");
    snprintf(path, sizeof path, "%s/ch1.html", sub);
    write_file(path, "<html><head><title>Chapter One</title></head><body><p>The quokkaesque "
                     "example lives here.</p><a href=\"../index.html\">up</a></body></html>");
    snprintf(path, sizeof path, "%s/notes.txt", sub);
    write_file(path, "not html");
    snprintf(path, sizeof path, "%s/loop", sub);
    T_CHECK(symlink("..", path) == 0);     /* must not be followed */
    int n = 0;
    eng_err e = {0};
    T_CHECKF(tool_corpus_import_dir(db, d, "/manual", 0, &n, &e) == ENG_OK && n == 2, "n %d %s", n, e.msg);
    T_CHECK(tool_corpus_import_dir(db, "/nonexistent-dir", "/x", 0, &n, &e) == ENG_EIO);
    T_CHECK(tool_corpus_import_dir(db, d, "nolead", 0, &n, &e) == ENG_EINVAL);
    tool_webenv_opts o = {.db_path = db, .latency_median_ms = -1};
    tool_webenv *w;
    T_CHECK(tool_webenv_start(&o, &w, &e) == ENG_OK);
    char url[256], ep[256];
    snprintf(url, sizeof url, "%s/manual/index.html", tool_webenv_url(w));
    tool_page *p = NULL;
    T_CHECK(tool_fetch_page(url, &LOCAL, NULL, &p, &e) == ENG_OK && p->n_links == 1);
    if (p && p->n_links == 1) {
        char next[256];
        snprintf(next, sizeof next, "%s", p->links[0].url);
        tool_page_free(p);
        p = NULL;
        T_CHECK(tool_fetch_page(next, &LOCAL, NULL, &p, &e) == ENG_OK && !strcmp(p->title, "Chapter One"));
    }
    tool_page_free(p);
    snprintf(ep, sizeof ep, "%s/search", tool_webenv_url(w));
    tool_search_opts so = {.endpoint = ep};
    char *text;
    cJSON *res;
    T_CHECK(tool_search(&so, "quokkaesque", 5, NULL, &text, &res, &e) == ENG_OK);
    T_CHECK(cJSON_GetArraySize(res) == 1 && strstr(text, "/manual/sub/ch1.html"));
    free(text);
    cJSON_Delete(res);
    tool_webenv_stop(w);
    /* real documentation, when this machine has some */
    struct stat st;
    if (stat("/usr/share/doc", &st) == 0) {
        T_CHECK(tool_corpus_import_dir(db, "/usr/share/doc", "/usr-doc", 40, &n, &e) == ENG_OK);
        printf("  imported %d HTML files from /usr/share/doc\n", n);
    }
    unlink(path);
    snprintf(path, sizeof path, "%s/notes.txt", sub);
    unlink(path);
    snprintf(path, sizeof path, "%s/ch1.html", sub);
    unlink(path);
    rmdir(sub);
    snprintf(path, sizeof path, "%s/index.html", d);
    unlink(path);
    rmdir(d);
    unlink(db);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/brisk_webenv_XXXXXX");
    if (!mkdtemp(g_dir)) {
        printf("cannot make a temporary directory\n");
        return 1;
    }
    snprintf(g_db, sizeof g_db, "%s/corpus.db", g_dir);
    T_RUN(test_latency_sampler);
    T_RUN(test_corpus_generate);
    T_RUN(test_start);
    T_RUN(test_fetch_pages);
    T_RUN(test_404);
    T_RUN(test_search);
    T_RUN(test_tools_in_registry);
    T_RUN(test_fetch_limits);
    T_RUN(test_fetch_private_refused);
    T_RUN(test_fetch_raw_halves);
    T_RUN(test_fetch_cancel_and_deadline);
    T_RUN(test_malformed_requests);
    T_RUN(test_concurrent_clients);
    T_RUN(test_request_latency);
    T_RUN(test_reseed);
    T_RUN(test_stop_with_requests_in_flight);
    T_RUN(test_import_dir);
    tool_webenv_stop(g_env);
    unlink(g_db);
    rmdir(g_dir);
    T_DONE();
}
