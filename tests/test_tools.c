/* test_tools.c — calculator, registry, HTML to text, and the scheduler's
 * partial execution (early start, restart on changed arguments, batches). */
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include "t.h"
#include "tool.h"

/* ------------------------------------------------------------ calculator */
typedef struct calc_case { const char *expr; double want; } calc_case;

static void test_calculator_values(void) {
    static const calc_case ok[] = {
        {"1+2", 3}, {"2*(3+4)", 14}, {"2*(3+4)^2", 98}, {"-2^2", -4}, {"(-2)^2", 4},
        {"2^3^2", 512}, {"2^-1", 0.5}, {"2**10", 1024}, {"10/4", 2.5}, {"10 % 3", 1},
        {"-7 % 3", -1}, {"5.5 % 2", 1.5}, {"--3", 3}, {"+4", 4}, {"1 - -1", 2},
        {"sqrt(16)", 4}, {"sqrt(2)^2", 2}, {"abs(-3.5)", 3.5}, {"floor(2.7)", 2},
        {"ceil(2.1)", 3}, {"floor(-2.5)", -3}, {"ln(e)", 1}, {"log(1000)", 3},
        {"log(8, 2)", 3}, {"exp(0)", 1}, {"sin(0)", 0}, {"cos(pi)", -1}, {"tan(pi/4)", 1},
        {"min(3, 1, 2)", 1}, {"max(3, 1, 2)", 3}, {"max(-1)", -1}, {"PI", M_PI},
        {"2 * pi * 3", 6 * M_PI}, {"1e3 + 1E-3", 1000.001}, {".5 + 1.", 1.5},
        {"((((1))))", 1}, {" 3 \t*\n 4 ", 12}, {"6 \xC3\x97 7", 42}, {"8 \xC3\xB7 2", 4},
        {"5 \xE2\x88\x92 2", 3}, {"2e3", 2000}, {"1/3*3", 1}, {"Sqrt(9) + ABS(-1)", 4},
        {"100 - 5*3 + 2^4/8", 87},
    };
    int n = (int)(sizeof ok / sizeof ok[0]);
    T_CHECK(n >= 30);
    for (int i = 0; i < n; i++) {
        double v = -12345;
        eng_err e = {0};
        int rc = tool_calc_eval(ok[i].expr, &v, &e);
        T_CHECKF(rc == ENG_OK && fabs(v - ok[i].want) <= 1e-9 * (1 + fabs(ok[i].want)),
                 "%s = %.17g (rc %d %s), want %.17g", ok[i].expr, v, rc, e.msg, ok[i].want);
    }
}

static void test_calculator_errors(void) {
    static const char *const bad[][2] = {
        {"1/0", "division by zero"}, {"5 % 0", "modulo by zero"}, {"1/(2-2)", "division by zero"},
        {"0^-1", "division by zero"}, {"sqrt(-1)", "negative"}, {"ln(0)", "<= 0"},
        {"log(-5)", "<= 0"}, {"log(8, 1)", "base"}, {"(-8)^(1/3)", "fractional"},
        {"", "empty"}, {"   ", "empty"}, {"1 +", "ends"}, {"(1 + 2", "')'"}, {"1 + 2)", "unexpected"},
        {"2 3", "unexpected"}, {"foo(1)", "unknown name"}, {"x + 1", "unknown name"},
        {"system(\"ls\")", "unknown name"}, {"sqrt 4", "'('"}, {"sqrt()", "missing argument"},
        {"sqrt(1, 2)", "too many"}, {"log()", "missing"}, {"1..2", "unexpected"}, {".", "bad number"},
        {"10^400", "finite"}, {"exp(1000)", "finite"}, {"1 ++* 2", "unexpected"}, {"$5", "unexpected"},
        {"__import__('os')", "unexpected"}, {"2 ^", "ends"}, {"min(1,)", "unexpected"},
    };
    int n = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < n; i++) {
        double v;
        eng_err e = {0};
        int rc = tool_calc_eval(bad[i][0], &v, &e);
        T_CHECKF(rc == ENG_EINVAL && strstr(e.msg, bad[i][1]), "'%s' gave rc %d '%s', want '%s'",
                 bad[i][0], rc, e.msg, bad[i][1]);
    }
    /* too long, and too deeply nested */
    char big[TOOL_CALC_MAX_LEN + 10];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = 0;
    double v;
    eng_err e = {0};
    T_CHECK(tool_calc_eval(big, &v, &e) == ENG_EINVAL && strstr(e.msg, "longer"));
    char deep[400];
    memset(deep, '(', 200);
    deep[200] = '1';
    memset(deep + 201, ')', 198);
    deep[399] = 0;
    T_CHECK(tool_calc_eval(deep, &v, &e) == ENG_EINVAL && strstr(e.msg, "nested"));
    T_CHECK(tool_calc_eval(NULL, &v, &e) == ENG_EINVAL);
}

static void test_calculator_format(void) {
    char b[64];
    tool_calc_format(42, b, sizeof b);
    T_CHECK(!strcmp(b, "42"));
    tool_calc_format(-0.0, b, sizeof b);
    T_CHECK(!strcmp(b, "0"));
    tool_calc_format(0.1 + 0.2, b, sizeof b);
    T_CHECK(!strcmp(b, "0.3"));
    tool_calc_format(1e20, b, sizeof b);
    T_CHECK(!strcmp(b, "1e+20"));
    tool_calc_format(2.0 / 3, b, sizeof b);
    T_CHECK(!strcmp(b, "0.666666666667"));
}

/* -------------------------------------------------------------- registry */
static int echo_exec(const cJSON *args, const tool_ctx *ctx, char **text, cJSON **meta, eng_err *err) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "s"));
    if (s && !strcmp(s, "fail")) return eng_seterr(err, ENG_EIO, "echo failed on purpose");
    char *out = cJSON_PrintUnformatted(args);
    *text = strdup(out);
    cJSON_free(out);
    *meta = cJSON_CreateString("m");
    return ENG_OK;
}

static void add_echo(tool_registry *r) {
    cJSON *schema = cJSON_Parse("{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\"},"
                                "\"n\":{\"type\":\"integer\"},\"mode\":{\"type\":\"string\","
                                "\"enum\":[\"a\",\"b\"]}},\"required\":[\"s\"]}");
    tool_def d = {.name = "echo", .description = "Echo the arguments.", .schema = schema,
                  .exec = echo_exec};
    eng_err e = {0};
    T_CHECKF(tool_register(r, &d, &e) == ENG_OK, "%s", e.msg);
    cJSON_Delete(schema);
}

static void call_json(tool_registry *r, const char *name, const char *args, tool_result *res) {
    cJSON *a = args ? cJSON_Parse(args) : NULL;
    memset(res, 0, sizeof *res);
    tool_registry_call(r, name, a, NULL, 0, res);
    cJSON_Delete(a);
}

/* Calls name with args (JSON text) and checks it fails with needle in its text. */
static void call_fails(tool_registry *r, const char *name, const char *args, const char *needle) {
    tool_result res;
    call_json(r, name, args, &res);
    T_CHECKF(res.is_error && strstr(res.text, needle), "%s %s: %s", name, args ? args : "(none)",
             res.text);
    tool_result_clear(&res);
}

static void test_registry(void) {
    tool_registry *r = tool_registry_create();
    eng_err e = {0};
    T_CHECK(tool_register_calculator(r, &e) == ENG_OK);
    add_echo(r);
    T_CHECK(tool_registry_count(r) == 2);
    T_CHECK(tool_registry_find(r, "calculator") != NULL);
    T_CHECK(tool_registry_find(r, "nope") == NULL);
    const tool_def *c = tool_registry_find(r, "calculator");
    T_CHECK(c->n_early == 1 && !strcmp(c->early[0], "expression"));
    /* bad registrations */
    tool_def d = {.name = "calculator", .exec = echo_exec};
    T_CHECK(tool_register(r, &d, &e) == ENG_EINVAL && strstr(e.msg, "twice"));
    d.name = "has space";
    T_CHECK(tool_register(r, &d, &e) == ENG_EINVAL);
    d.name = "noexec";
    d.exec = NULL;
    T_CHECK(tool_register(r, &d, &e) == ENG_EINVAL);
    T_CHECK(tool_registry_count(r) == 2);

    tool_result res;
    call_json(r, "calculator", "{\"expression\": \"2*(3+4)\"}", &res);
    T_CHECKF(!res.is_error && !strcmp(res.text, "14"), "%s", res.text);
    T_CHECK(res.t_done >= res.t_start && res.t_start > 0);
    tool_result_clear(&res);
    call_fails(r, "calculator", "{\"expression\": \"1/0\"}", "division by zero");
    call_json(r, "x", "{}", &res);
    T_CHECKF(res.is_error && !strcmp(res.text, "unknown tool 'x'"), "%s", res.text);
    tool_result_clear(&res);
    call_json(r, NULL, "{}", &res);
    T_CHECK(res.is_error);
    tool_result_clear(&res);
    call_fails(r, "echo", "{}", "missing required argument 's'");
    call_fails(r, "echo", "{\"s\": 5}", "type string");
    call_fails(r, "echo", "{\"s\": \"x\", \"n\": 1.5}", "integer");
    call_fails(r, "echo", "{\"s\": \"x\", \"mode\": \"c\"}", "not allowed");
    call_json(r, "echo", "{\"s\": \"x\", \"extra\": [1], \"n\": 3, \"mode\": \"b\"}", &res);
    T_CHECKF(!res.is_error && strstr(res.text, "\"extra\":[1]") && cJSON_IsString(res.meta), "%s", res.text);
    tool_result_clear(&res);
    call_json(r, "echo", "{\"s\": \"fail\"}", &res);
    T_CHECKF(res.is_error && !strcmp(res.text, "echo failed on purpose"), "%s", res.text);
    tool_result_clear(&res);
    call_fails(r, "calculator", NULL, "missing required");   /* no args: {} */
    atomic_int cancel = 1;
    cJSON *a = cJSON_Parse("{\"expression\": \"1\"}");
    tool_registry_call(r, "calculator", a, &cancel, 0, &res);
    T_CHECK(res.is_error && !strcmp(res.text, "cancelled"));
    tool_result_clear(&res);
    cJSON_Delete(a);
    tool_registry_destroy(r);
}

/* The registry as the chat template's tool list: one function definition
 * per tool, in order, with its schema. */
static void test_registry_json(void) {
    tool_registry *r = tool_registry_create();
    tool_register_calculator(r, NULL);
    add_echo(r);
    char *p = tool_registry_json(r);
    cJSON *j = p ? cJSON_Parse(p) : NULL;
    T_CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2);
    const cJSON *t0 = cJSON_GetArrayItem(j, 0);
    const cJSON *f0 = cJSON_GetObjectItemCaseSensitive(t0, "function");
    T_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(t0, "type")) &&
            !strcmp(cJSON_GetObjectItemCaseSensitive(t0, "type")->valuestring, "function"));
    T_CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(f0, "name")->valuestring, "calculator"));
    T_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(f0, "description")));
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(f0, "parameters"), "required");
    T_CHECK(cJSON_GetArraySize(req) == 1 && !strcmp(cJSON_GetArrayItem(req, 0)->valuestring, "expression"));
    cJSON_Delete(j);
    free(p);
    tool_registry_destroy(r);
}

/* ------------------------------------------------------------------ HTML */
static void test_html_to_text(void) {
    const char *h =
        "<!DOCTYPE html><html><head><title> My &amp; Page </title>"
        "<style>p { color: red }</style><script>var x = '<p>no</p>';</script></head>"
        "<body><!-- hidden <b>comment</b> --><h1>Head&nbsp;line</h1>"
        "<p>First   para\n with <b>bold</b> and <a href=\"/rel/a.html?x=1&amp;y=2#frag\">a link</a>.</p>"
        "<ul><li>one</li><li>two &lt;3&gt; &#233;&#x4E2D;</li></ul>"
        "<p>Mail <a href='mailto:x@y.z'>me</a>, <a href=https://other.test/b>other</a>, "
        "<a href=\"javascript:void(0)\">js</a>, <a href=\"#top\">top</a>, "
        "<a href=\"../up.html\"><img src=x alt=y></a>, <a href=\"/rel/a.html?x=1&amp;y=2\">again</a>"
        "<noscript>enable js</noscript>3 &lt; 4 &unknown; &amp</p><div>x<br>y</div>"
        "<a href=\"/open\">unclosed";
    tool_page p = {0};
    T_CHECK(tool_html_to_text(h, strlen(h), "http://site.test/dir/page.html", &p) == ENG_OK);
    T_CHECKF(!strcmp(p.title, "My & Page"), "title '%s'", p.title);
    const char *want = "Head line\n\nFirst para with bold and a link.\n\n- one\n- two <3> \xC3\xA9\xE4\xB8\xAD\n\n"
                       "Mail me, other, js, top, , again3 < 4 &unknown; &\n\nx\ny\nunclosed";
    T_CHECKF(!strcmp(p.text, want), "text:\n%s", p.text);
    T_CHECKF(p.n_links == 4, "%d links", p.n_links);
    if (p.n_links == 4) {
        T_CHECK(!strcmp(p.links[0].url, "http://site.test/rel/a.html?x=1&y=2"));
        T_CHECK(!strcmp(p.links[0].text, "a link"));
        T_CHECK(!strcmp(p.links[1].url, "https://other.test/b") && !strcmp(p.links[1].text, "other"));
        T_CHECK(!strcmp(p.links[2].url, "http://site.test/up.html") && !strcmp(p.links[2].text, ""));
        T_CHECK(!strcmp(p.links[3].url, "http://site.test/open") && !strcmp(p.links[3].text, "unclosed"));
    }
    char *f = tool_page_format(&(tool_page){.url = "http://site.test/dir/page.html", .title = p.title,
                                            .text = p.text, .links = p.links, .n_links = p.n_links}, 12, 2);
    T_CHECKF(strstr(f, "Title: My & Page\nURL: http://site.test/dir/page.html\n\nHead line\n\nF\n[... ") &&
             strstr(f, "Links:\n[1] a link - http://site.test/rel/a.html?x=1&y=2\n[2] other - https://other.test/b\n(2 more links)"),
             "%s", f);
    free(f);
    free(p.title);
    free(p.text);
    for (int i = 0; i < p.n_links; i++) free(p.links[i].url), free(p.links[i].text);
    free(p.links);
    /* broken markup never reads past the end */
    const char *broken[] = {"<", "<a", "<a href=\"x", "<!--", "<script>", "&#", "&#x;", "<title>t",
                            "<p attr='1", "</", "<a href=/x>t</a", "&amp", "<base href=\"http://b.test/\"><a href=c>c</a>"};
    for (int i = 0; i < (int)(sizeof broken / sizeof broken[0]); i++) {
        tool_page q = {0};
        T_CHECK(tool_html_to_text(broken[i], strlen(broken[i]), NULL, &q) == ENG_OK);
        if (i == 12) T_CHECK(q.n_links == 1 && !strcmp(q.links[0].url, "http://b.test/c"));
        free(q.title);
        free(q.text);
        for (int k = 0; k < q.n_links; k++) free(q.links[k].url), free(q.links[k].text);
        free(q.links);
    }
}

/* fetch_url through a page source hook (how a cache plugs in), no network. */
static int g_get_calls;
static int fake_get(void *user, const char *url, const tool_ctx *ctx, tool_page **out, eng_err *err) {
    g_get_calls++;
    if (strstr(url, "missing")) return eng_seterr(err, ENG_EIO, "HTTP 404 fetching %s", url);
    const char *body = user;
    return tool_page_from_body(url, "text/html; charset=iso-8859-1", body, strlen(body), out, err);
}

static void test_fetch_url_hook(void) {
    tool_registry *r = tool_registry_create();
    tool_fetch_opts o = {.get = fake_get, .get_user = "<title>Caf\xE9</title><p>Hello <a href=\"b.html\">B</a></p>",
                         .max_text = 100};
    T_CHECK(tool_register_fetch_url(r, &o, NULL) == ENG_OK);
    tool_result res;
    call_json(r, "fetch_url", "{\"url\": \"http://cached.test/a/index.html\"}", &res);
    T_CHECKF(!res.is_error && !strcmp(res.text, "Title: Caf\xC3\xA9\nURL: http://cached.test/a/index.html\n\n"
                                            "Hello B\n\nLinks:\n[1] B - http://cached.test/a/b.html"), "%s", res.text);
    const cJSON *links = cJSON_GetObjectItemCaseSensitive(res.meta, "links");
    T_CHECK(cJSON_GetArraySize(links) == 1 && g_get_calls == 1);
    tool_result_clear(&res);
    call_json(r, "fetch_url", "{\"url\": \"http://cached.test/missing\"}", &res);
    T_CHECK(res.is_error && strstr(res.text, "404"));
    tool_result_clear(&res);
    tool_registry_destroy(r);
}

/* ------------------------------------------------------------- scheduler */
static atomic_int g_runs, g_cancelled;
static int g_work_ms = 200;

/* A slow tool: works g_work_ms, checking for cancellation every 2 ms. */
static int slow_exec(const cJSON *args, const tool_ctx *ctx, char **text, cJSON **meta, eng_err *err) {
    atomic_fetch_add(&g_runs, 1);
    double end = eng_now_s() + g_work_ms / 1000.0;
    while (eng_now_s() < end) {
        if (ctx->cancel && atomic_load(ctx->cancel)) {
            atomic_fetch_add(&g_cancelled, 1);
            return eng_seterr(err, ENG_EIO, "stopped");
        }
        usleep(2000);
    }
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "url"));
    const char *mode = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "mode"));
    char buf[256];
    snprintf(buf, sizeof buf, "done %s %s", url ? url : "-", mode ? mode : "-");
    *text = strdup(buf);
    return ENG_OK;
}

/* Ignores its deadline, stops only when cancelled. */
static int stubborn_exec(const cJSON *args, const tool_ctx *ctx, char **text, cJSON **meta, eng_err *err) {
    while (!(ctx->cancel && atomic_load(ctx->cancel))) usleep(2000);
    return eng_seterr(err, ENG_EIO, "stopped");
}

static tool_registry *sched_registry(void) {
    static const char *early[] = {"url"};
    tool_registry *r = tool_registry_create();
    cJSON *schema = cJSON_Parse("{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\"},"
                                "\"mode\":{\"type\":\"string\"}},\"required\":[\"url\"]}");
    tool_def d = {.name = "slow", .schema = schema, .early = early, .n_early = 1, .exec = slow_exec};
    tool_register(r, &d, NULL);
    d.name = "slow_late";    /* same tool without early arguments */
    d.n_early = 0;
    tool_register(r, &d, NULL);
    tool_def s = {.name = "stubborn", .timeout_s = 0.2, .exec = stubborn_exec};
    tool_register(r, &s, NULL);
    tool_register_calculator(r, NULL);
    cJSON_Delete(schema);
    return r;
}

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

/* Feeds s byte by byte, spreading the bytes over ms milliseconds. */
static void feed_slowly(tool_sched *s, const char *text, int ms) {
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i++) {
        sleep_ms((int)(ms / (int)n));
        tool_sched_feed(s, text + i, 1);
    }
}

/* Time from the url closing to all results being in. */
static double run_early_case(tool_registry *r, int no_partial, tool_result **res, int *n) {
    tool_sched_opts o = {.no_partial = no_partial};
    tool_sched *s;
    tool_sched_create(r, &o, &s, NULL);
    const char *head = "Fetching.\n<tool_call>\n{\"name\": \"slow\", \"arguments\": {\"url\": \"http://a.test/x\"";
    tool_sched_feed(s, head, strlen(head));
    double t0 = eng_now_s();
    feed_slowly(s, "}}\n</tool_call>", 300);  /* the model takes 300 ms to finish the call */
    tool_sched_collect(s, res, n, NULL);
    double dt = eng_now_s() - t0;
    tool_sched_destroy(s);
    return dt;
}

static void test_sched_early_start(void) {
    tool_registry *r = sched_registry();
    tool_result *res;
    int n;
    g_work_ms = 200;
    double early = run_early_case(r, 0, &res, &n);
    T_CHECKF(n == 1 && !res[0].is_error && res[0].early == 1 && res[0].restarts == 0,
             "n %d early %d text %s", n, n ? res[0].early : -1, n ? res[0].text : "");
    T_CHECK(n == 1 && !strcmp(res[0].text, "done http://a.test/x -"));
    T_CHECK(n == 1 && res[0].t_start < res[0].t_call_end);   /* it ran while "decoding" */
    tool_results_free(res, n);
    double seq = run_early_case(r, 1, &res, &n);
    T_CHECK(n == 1 && !res[0].is_error && res[0].early == 0 && res[0].t_start >= res[0].t_call_end);
    tool_results_free(res, n);
    printf("  early start: %.0f ms, start at CALL_END: %.0f ms, saved %.0f ms\n",
           early * 1000, seq * 1000, (seq - early) * 1000);
    T_CHECKF(early < 0.40 && seq > 0.45, "early %.3f s, sequential %.3f s", early, seq);
    T_CHECKF(fabs((seq - early) - 0.200) < 0.07, "saved %.0f ms, want ~200", (seq - early) * 1000);
    tool_registry_destroy(r);
}

static void test_sched_restart(void) {
    tool_registry *r = sched_registry();
    tool_sched *s;
    tool_sched_create(r, NULL, &s, NULL);
    atomic_store(&g_cancelled, 0);
    atomic_store(&g_runs, 0);
    g_work_ms = 200;
    /* url closes first, so the call starts; then "mode" changes the arguments */
    const char *a = "<tool_call>{\"name\": \"slow\", \"arguments\": {\"url\": \"http://a.test/\"";
    tool_sched_feed(s, a, strlen(a));
    sleep_ms(50);
    const char *b = ", \"mode\": \"full\"}}</tool_call>";
    tool_sched_feed(s, b, strlen(b));
    tool_result *res;
    int n;
    tool_sched_collect(s, &res, &n, NULL);
    T_CHECK(n == 1);
    if (n == 1) {
        T_CHECKF(!res[0].is_error && !strcmp(res[0].text, "done http://a.test/ full"), "%s", res[0].text);
        T_CHECK(res[0].restarts == 1 && res[0].early == 0);
        cJSON *want = cJSON_Parse("{\"url\": \"http://a.test/\", \"mode\": \"full\"}");
        T_CHECK(cJSON_Compare(res[0].args, want, 1));
        cJSON_Delete(want);
    }
    tool_results_free(res, n);
    T_CHECKF(atomic_load(&g_runs) == 2 && atomic_load(&g_cancelled) == 1, "runs %d cancelled %d",
             atomic_load(&g_runs), atomic_load(&g_cancelled));
    /* a call whose arguments end up as started is not restarted */
    atomic_store(&g_runs, 0);
    const char *c = "<tool_call>{\"name\": \"slow\", \"arguments\": {\"url\": \"u\"}}</tool_call>";
    tool_sched_feed(s, c, strlen(c));
    tool_sched_collect(s, &res, &n, NULL);
    T_CHECK(n == 1 && res[0].restarts == 0 && res[0].early == 1 && atomic_load(&g_runs) == 1);
    tool_results_free(res, n);
    tool_sched_destroy(s);
    tool_registry_destroy(r);
}

/* Three calls closing 100 ms apart: each starts as it closes, so they
 * overlap; results come back in call order. */
static void test_sched_batch(void) {
    tool_registry *r = sched_registry();
    tool_sched *s;
    tool_sched_create(r, NULL, &s, NULL);
    g_work_ms = 200;
    double t0 = eng_now_s();
    for (int i = 0; i < 3; i++) {
        char buf[160];
        snprintf(buf, sizeof buf, "<tool_call>\n{\"name\": \"slow_late\", \"arguments\": {\"url\": \"u%d\"}}\n"
                 "</tool_call>\n", i);
        tool_sched_feed(s, buf, strlen(buf));
        if (i < 2) sleep_ms(100);
    }
    tool_result *res;
    int n;
    tool_sched_collect(s, &res, &n, NULL);
    double dt = eng_now_s() - t0;
    T_CHECK(n == 3);
    for (int i = 0; i < n; i++) {
        char want[64];
        snprintf(want, sizeof want, "done u%d -", i);
        T_CHECKF(res[i].call == i && !res[i].is_error && !strcmp(res[i].text, want), "%d: %s", i, res[i].text);
        T_CHECK(res[i].early == 0 && res[i].t_start >= res[i].t_call_end);
        if (i) T_CHECK(res[i].t_start > res[i - 1].t_start + 0.05 && res[i].t_start < res[i - 1].t_done);
    }
    printf("  3 x 200 ms calls closing 100 ms apart: %.0f ms (one after another: >= 600 ms)\n", dt * 1000);
    T_CHECKF(dt < 0.52, "%.3f s", dt);
    tool_results_free(res, n);
    tool_sched_destroy(s);
    tool_registry_destroy(r);
}

static int g_text_events;
static void count_text(void *user, const tool_event *ev) {
    if (ev->type == TOOL_EV_TEXT) g_text_events++;
}

static void test_sched_errors_in_order(void) {
    tool_registry *r = sched_registry();
    tool_sched_opts o = {.on_event = count_text};
    tool_sched *s;
    tool_sched_create(r, &o, &s, NULL);
    g_text_events = 0;
    const char *out =
        "Let me compute.\n"
        "<tool_call>{\"name\": \"nope\", \"arguments\": {\"a\": 1}}</tool_call>\n"
        "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": 1+}}</tool_call>\n"
        "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"6*7\"}}</tool_call>\n"
        "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expr\": \"6*7\"}}</tool_call>\n"
        "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1/0\"}}";
    for (size_t i = 0; i < strlen(out); i += 7)
        tool_sched_feed(s, out + i, strlen(out + i) < 7 ? strlen(out + i) : 7);
    T_CHECK(tool_sched_n_calls(s) == 5);
    tool_result *res;
    int n;
    T_CHECK(tool_sched_collect(s, &res, &n, NULL) == ENG_OK);
    T_CHECK(n == 5);
    if (n == 5) {
        T_CHECKF(res[0].is_error && !strcmp(res[0].text, "unknown tool 'nope'"), "%s", res[0].text);
        T_CHECKF(res[1].is_error && strstr(res[1].text, "malformed tool call") && !res[1].args, "%s", res[1].text);
        T_CHECKF(!res[2].is_error && !strcmp(res[2].text, "42") && res[2].early == 1, "%s", res[2].text);
        T_CHECKF(res[3].is_error && strstr(res[3].text, "missing required argument 'expression'"), "%s", res[3].text);
        T_CHECKF(res[4].is_error && strstr(res[4].text, "division by zero"), "%s", res[4].text);
    }
    T_CHECK(g_text_events > 0);
    tool_results_free(res, n);
    /* the next turn starts clean */
    T_CHECK(tool_sched_collect(s, &res, &n, NULL) == ENG_OK && n == 0 && res == NULL);
    tool_sched_destroy(s);
    tool_registry_destroy(r);
}

static void test_sched_timeout_and_cancel(void) {
    tool_registry *r = sched_registry();
    tool_sched_opts o = {.grace_s = 0.1};
    tool_sched *s;
    tool_sched_create(r, &o, &s, NULL);
    const char *a = "<tool_call>{\"name\": \"stubborn\", \"arguments\": {}}</tool_call>";
    tool_sched_feed(s, a, strlen(a));
    double t0 = eng_now_s();
    tool_result *res;
    int n;
    tool_sched_collect(s, &res, &n, NULL);
    double dt = eng_now_s() - t0;
    T_CHECKF(n == 1 && res[0].is_error && strstr(res[0].text, "timed out"), "%s", n ? res[0].text : "");
    T_CHECKF(dt > 0.25 && dt < 1.0, "%.3f s", dt);
    tool_results_free(res, n);
    /* cancel: long runs end at once and report cancelled */
    g_work_ms = 5000;
    atomic_store(&g_cancelled, 0);
    const char *b = "<tool_call>{\"name\": \"slow\", \"arguments\": {\"url\": \"1\"}}</tool_call>"
                    "<tool_call>{\"name\": \"slow\", \"arguments\": {\"url\": \"2\"}}</tool_call>";
    tool_sched_feed(s, b, strlen(b));
    sleep_ms(30);
    tool_sched_cancel(s);
    t0 = eng_now_s();
    tool_sched_collect(s, &res, &n, NULL);
    T_CHECK(eng_now_s() - t0 < 0.5);
    T_CHECK(n == 2 && res[0].is_error && !strcmp(res[0].text, "cancelled") && res[1].is_error);
    T_CHECK(atomic_load(&g_cancelled) == 2);
    tool_results_free(res, n);
    /* destroy with calls still running */
    tool_sched_feed(s, b, strlen(b));
    sleep_ms(20);
    t0 = eng_now_s();
    tool_sched_destroy(s);
    T_CHECK(eng_now_s() - t0 < 0.5);
    g_work_ms = 200;
    tool_registry_destroy(r);
}

/* More calls than workers: they queue, and all complete. */
static void test_sched_many_calls(void) {
    tool_registry *r = sched_registry();
    tool_sched_opts o = {.n_workers = 2};
    tool_sched *s;
    tool_sched_create(r, &o, &s, NULL);
    for (int i = 0; i < 20; i++) {
        char buf[160];
        snprintf(buf, sizeof buf, "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"%d*%d\"}}</tool_call>", i, i);
        tool_sched_feed(s, buf, strlen(buf));
    }
    tool_result *res;
    int n;
    tool_sched_collect(s, &res, &n, NULL);
    T_CHECK(n == 20);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "%d", i * i);
        ok += !res[i].is_error && !strcmp(res[i].text, want);
    }
    T_CHECK(ok == 20);
    tool_results_free(res, n);
    tool_sched_destroy(s);
    tool_registry_destroy(r);
}

int main(void) {
    T_RUN(test_calculator_values);
    T_RUN(test_calculator_errors);
    T_RUN(test_calculator_format);
    T_RUN(test_registry);
    T_RUN(test_registry_json);
    T_RUN(test_html_to_text);
    T_RUN(test_fetch_url_hook);
    T_RUN(test_sched_early_start);
    T_RUN(test_sched_restart);
    T_RUN(test_sched_batch);
    T_RUN(test_sched_errors_in_order);
    T_RUN(test_sched_timeout_and_cancel);
    T_RUN(test_sched_many_calls);
    T_DONE();
}
