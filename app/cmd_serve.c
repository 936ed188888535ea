/* cmd_serve.c — `brisk serve`: the websocket agent server. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "srv.h"
#include "cache.h"
#include "cmds.h"
#include "args.h"

/* The signal handler needs to reach the server; this is its only route. */
static srv *g_srv;

static void on_signal(int sig) {
    (void)sig;
    if (g_srv) srv_stop(g_srv);
}

static double hit_rate(void *ud) { return cache_web_hit_rate(ud); }

static int usage(void) {
    fprintf(stderr, "usage: brisk serve --model DIR [--port P] [--host ADDR] [--token T] "
                    "[--web DIR] " ENG_OPTS_USAGE " [--max-tokens-cap N] [--max-queries-per-client N]\n"
                    "       [--search URL]  (a JSON search endpoint for the agent's web_search tool)\n"
                    "       [--web-cache PATH|off]  (SQLite cache of fetched pages; default /tmp/brisk-webcache-UID.db)\n"
                    "       [--fetch-private] (fetch_url may read loopback, link-local and private addresses;\n"
                    "                        refused by default, after DNS and on every redirect)\n"
                    "       [--plan]        (measure step times at start: reason queries may give budget_s)\n"
                    "       [--max-batch N] (sequences the engine runs at once; default 256)\n"
                    "       [--kv f32|bf16] (how the KV cache stores keys and values; default f32)\n"
                    "       [--log PATH|-|off] (the request log, one line per query; default - = stderr)\n"
                    "       [--model-name NAME] (the model's id in the OpenAI API; default the --model\n"
                    "                        path's last part without .gguf)\n"
                    "       [--max-queue N] (queries waiting for a free sequence before more are refused\n"
                    "                        with busy; default 256)\n"
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

typedef struct serve_args {
    srv_opts o;
    const char *model_dir, *search, *web_cache, *log;
    char default_cache[64];
    int warmup, max_batch, fetch_private;
    eng_opts eng;
} serve_args;

/* 0, or -1 after saying what is wrong (usage() then follows). */
static int parse_args(int argc, char **argv, serve_args *a) {
    srv_opts *o = &a->o;
    srv_default_opts(o);
    o->token = getenv("BRISK_TOKEN");
    snprintf(a->default_cache, sizeof a->default_cache, "/tmp/brisk-webcache-%d.db", (int)getuid());
    a->web_cache = a->default_cache;
    a->warmup = -1;
    a->log = "-";
    static const char *const valued[] = { "--model", "--port", "--host", "--token", "--web", "--origin",
        "--search", "--web-cache", "--max-tokens-cap", "--max-queries-per-client", "--warmup", "--max-queue",
        "--max-batch", "--log", "--model-name", NULL };
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = arg_engine("serve", argc, argv, &i, &a->eng), known = 0;
        if (rc) { if (rc < 0) return rc; continue; }
        if (!strcmp(k, "--allow-script")) { o->allow_script = 1; continue; }
        if (!strcmp(k, "--plan")) { o->plan = 1; continue; }
        if (!strcmp(k, "--fetch-private")) { a->fetch_private = 1; continue; }
        for (int j = 0; valued[j]; j++) known |= !strcmp(k, valued[j]);
        if (!known) return arg_unknown("serve", k);
        if (!v) return arg_missing("serve", k);
        if (!strcmp(k, "--model")) a->model_dir = v;
        else if (!strcmp(k, "--port")) rc = arg_int("serve", k, v, 0, 65535, &o->port);
        else if (!strcmp(k, "--host")) o->host = v;
        else if (!strcmp(k, "--token")) o->token = v;
        else if (!strcmp(k, "--web")) o->web_root = v;
        else if (!strcmp(k, "--origin")) o->allowed_origin = v;
        else if (!strcmp(k, "--search")) a->search = v;
        else if (!strcmp(k, "--web-cache")) a->web_cache = strcmp(v, "off") ? v : NULL;
        else if (!strcmp(k, "--max-tokens-cap")) rc = arg_int("serve", k, v, 1, 1 << 20, &o->lim.max_tokens_cap);
        else if (!strcmp(k, "--max-queries-per-client"))
            rc = arg_int("serve", k, v, 1, 4096, &o->lim.max_queries_per_client);
        else if (!strcmp(k, "--max-queue")) rc = arg_int("serve", k, v, 1, 1 << 20, &o->max_queue);
        else if (!strcmp(k, "--log")) a->log = v;
        else if (!strcmp(k, "--model-name")) o->model_name = v;
        else if (!strcmp(k, "--max-batch")) rc = arg_int("serve", k, v, 1, 4096, &a->max_batch);
        else rc = arg_int("serve", k, v, 0, 1 << 20, &a->warmup);
        if (rc) return rc;
        i++;
    }
    if (!a->model_dir) {
        fprintf(stderr, "brisk serve: --model DIR is required\n");
        return -1;
    }
    if (!*o->host) {
        fprintf(stderr, "brisk serve: --host needs an address or a host name\n");
        return -1;
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    serve_args a;
    memset(&a, 0, sizeof a);
    if (parse_args(argc, argv, &a)) return usage();
    srv_opts o = a.o;
    char name[128];
    if (!o.model_name) {   /* the OpenAI API's model: the path's last part, without .gguf */
        size_t n = strlen(a.model_dir);
        while (n > 1 && a.model_dir[n - 1] == '/') n--;
        const char *b = a.model_dir + n;
        while (b > a.model_dir && b[-1] != '/') b--;
        size_t len = (size_t)(a.model_dir + n - b);
        if (len > 5 && !strncmp(b + len - 5, ".gguf", 5)) len -= 5;
        snprintf(name, sizeof name, "%.*s", (int)len, b);
        o.model_name = name;
    }
    FILE *log = NULL;
    if (!strcmp(a.log, "-")) o.log = stderr;
    else if (strcmp(a.log, "off")) {
        if (!(log = fopen(a.log, "a"))) {
            fprintf(stderr, "brisk serve: cannot open the request log %s: %s\n", a.log, strerror(errno));
            return 1;
        }
        o.log = log;
    }
    const char *model_dir = a.model_dir, *search = a.search, *web_cache = a.web_cache;
    int cuda = a.eng.backend == ENG_BACKEND_CUDA, warmup = a.warmup;
    if (o.token && !*o.token) o.token = NULL;
    eng_err err = { 0 };
    eng_model *m = NULL;
    eng_engine *e = NULL;
    srv *s = NULL;
    eng_opts eo = a.eng;
    eo.max_seqs = a.max_batch;
    tool_registry *tools = tool_registry_create();
    tool_fetch_opts fo = { .allow_private = a.fetch_private };
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
    if (!rc) rc = eng_model_load_blocks(model_dir, &m, &err);
    if (!rc) rc = eng_create(m, &eo, &e, &err);
    if (!rc) rc = warm_up(e, warmup >= 0 ? warmup : cuda ? ENG_WARMUP_DEFAULT : 0, &err);
    if (!rc) rc = srv_create(e, &o, &s, &err);
    if (rc) {
        fprintf(stderr, "brisk serve: %s\n", err.msg);
        eng_destroy(e);
        eng_model_free(m);
        tool_registry_destroy(tools);
        cache_web_destroy(wc);
        if (log) fclose(log);
        return 1;
    }
    g_srv = s;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    const char *addr = srv_address(s);
    int v6 = strchr(addr, ':') != NULL;
    char what[256];
    eng_describe(e, what, sizeof what);
    printf("brisk: serving %s on http://%s%s%s:%d/ (websocket on the same port)%s\nbrisk: engine: %s\n",
           model_dir, v6 ? "[" : "", addr, v6 ? "]" : "", srv_port(s), o.token ? ", bearer token required" : "",
           what);
    fflush(stdout);
    srv_run(s);
    g_srv = NULL;
    srv_destroy(s);
    eng_destroy(e);
    eng_model_free(m);
    tool_registry_destroy(tools);
    cache_web_destroy(wc);
    if (log) fclose(log);
    printf("brisk: stopped\n");
    return 0;
}
