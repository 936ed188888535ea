/* cmd_serve.c — `brisk serve`: the websocket agent server. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "srv.h"
#include "cache.h"
#include "cmds.h"

/* The signal handler needs to reach the server; this is its only route. */
static srv *g_srv;

static void on_signal(int sig) {
    (void)sig;
    if (g_srv) srv_stop(g_srv);
}

static double hit_rate(void *ud) { return cache_web_hit_rate(ud); }

static int usage(void) {
    fprintf(stderr, "usage: brisk serve --model DIR [--port P] [--host ADDR] [--token T] "
                    "[--web DIR] [--cuda] [--max-tokens-cap N] [--max-queries-per-client N]\n"
                    "       [--search URL]  (a JSON search endpoint for the agent's web_search tool)\n"
                    "       [--web-cache PATH|off]  (SQLite cache of fetched pages; default /tmp/brisk-webcache-UID.db)\n"
                    "       [--plan]        (measure step times at start: reason queries may give budget_s)\n"
                    "       [--warmup N]    (prompt passes of every 32 tokens up to N at start; default 2048\n"
                    "                        with --cuda: a new prompt length then costs no kernel loading)\n"
                    "  the token can also come from $BRISK_TOKEN; it is required off loopback\n");
    return 2;
}

static int warm_up(eng_engine *e, int upto, eng_err *err) {
    if (upto <= 0) return ENG_OK;
    double t0 = eng_now_s();
    int done = 0, rc = eng_warmup(e, upto, &done, err);
    if (!rc) printf("brisk: warm-up: prompt passes up to %d tokens in %.0f ms\n", done,
                    1e3 * (eng_now_s() - t0));
    return rc;
}

int cmd_serve(int argc, char **argv) {
    srv_opts o;
    srv_default_opts(&o);
    o.token = getenv("BRISK_TOKEN");
    const char *model_dir = NULL, *search = NULL, *web_cache = NULL;
    char default_cache[64];
    snprintf(default_cache, sizeof default_cache, "/tmp/brisk-webcache-%d.db", (int)getuid());
    web_cache = default_cache;
    int cuda = 0, warmup = -1;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--cuda")) { cuda = 1; continue; }
        if (!strcmp(k, "--allow-script")) { o.allow_script = 1; continue; }
        if (!strcmp(k, "--plan")) { o.plan = 1; continue; }
        if (!v) return usage();
        if (!strcmp(k, "--model")) model_dir = v;
        else if (!strcmp(k, "--port")) o.port = atoi(v);
        else if (!strcmp(k, "--host")) o.host = v;
        else if (!strcmp(k, "--token")) o.token = v;
        else if (!strcmp(k, "--web")) o.web_root = v;
        else if (!strcmp(k, "--origin")) o.allowed_origin = v;
        else if (!strcmp(k, "--search")) search = v;
        else if (!strcmp(k, "--web-cache")) web_cache = strcmp(v, "off") ? v : NULL;
        else if (!strcmp(k, "--max-tokens-cap")) o.lim.max_tokens_cap = atoi(v);
        else if (!strcmp(k, "--max-queries-per-client")) o.lim.max_queries_per_client = atoi(v);
        else if (!strcmp(k, "--warmup")) warmup = atoi(v);
        else return usage();
        i++;
    }
    if (!model_dir || o.port < 0 || o.lim.max_tokens_cap < 1) return usage();
    if (o.token && !*o.token) o.token = NULL;
    eng_err err = { 0 };
    eng_model *m = NULL;
    eng_engine *e = NULL;
    srv *s = NULL;
    eng_opts eo = { .backend = cuda ? ENG_BACKEND_CUDA : ENG_BACKEND_CPU };
    tool_registry *tools = tool_registry_create();
    tool_fetch_opts fo = { 0 };
    tool_search_opts so = { .endpoint = search };
    cache_web *wc = NULL;
    int rc = tools ? ENG_OK : eng_seterr(&err, ENG_ENOMEM, "out of memory");
    if (!rc && web_cache && !(rc = cache_web_create(web_cache, &fo, 3, &wc, &err))) {
        cache_web_hook(wc, &fo);   /* fetch_url reads through the cache */
        o.cache_hit_rate = hit_rate;
        o.cache_ud = wc;
    }
    if (!rc) rc = tool_register_calculator(tools, &err);
    if (!rc) rc = tool_register_fetch_url(tools, &fo, &err);
    if (!rc && search) rc = tool_register_web_search(tools, &so, &err);
    o.tools = tools;
    if (!rc) rc = eng_model_load(model_dir, &m, &err);
    if (!rc) rc = eng_create(m, &eo, &e, &err);
    if (!rc) rc = warm_up(e, warmup >= 0 ? warmup : cuda ? ENG_WARMUP_DEFAULT : 0, &err);
    if (!rc) rc = srv_create(e, &o, &s, &err);
    if (rc) {
        fprintf(stderr, "brisk serve: %s\n", err.msg);
        eng_destroy(e);
        eng_model_free(m);
        tool_registry_destroy(tools);
        cache_web_destroy(wc);
        return 1;
    }
    g_srv = s;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    printf("brisk: serving %s on http://%s:%d/ (websocket on the same port)%s\n", model_dir,
           o.host, srv_port(s), o.token ? ", bearer token required" : "");
    fflush(stdout);
    srv_run(s);
    g_srv = NULL;
    srv_destroy(s);
    eng_destroy(e);
    eng_model_free(m);
    tool_registry_destroy(tools);
    cache_web_destroy(wc);
    printf("brisk: stopped\n");
    return 0;
}
