/* test_tool_parser.c — the streaming tool-call parser: chunking invariance,
 * malformed calls, early argument events, the plain-JSON rule. */
#include <stdint.h>
#include "t.h"
#include "tool.h"

/* Records events as text, one per line; adjacent TEXT events are merged
 * (text is a byte stream; where it is cut depends on the chunks).  Also
 * records at which input offset each event fired. */
typedef struct rec {
    char *log; size_t n, cap;
    char *text; size_t tn, tcap;     /* pending merged TEXT */
    size_t fed;                      /* bytes fed so far */
    int bad_utf8_cut;                /* a TEXT event split a character */
    size_t argdone_at, end_at;       /* offsets of first ARG_DONE / CALL_END */
    int n_err, n_end;
} rec;

static void rec_add(rec *r, const char *s, size_t n) {
    if (r->n + n + 1 > r->cap) {
        r->cap = (r->n + n + 1) * 2;
        r->log = realloc(r->log, r->cap);
    }
    memcpy(r->log + r->n, s, n);
    r->n += n;
    r->log[r->n] = 0;
}

static void rec_flush(rec *r) {
    if (!r->tn) return;
    rec_add(r, "T[", 2);
    rec_add(r, r->text, r->tn);
    rec_add(r, "]\n", 2);
    r->tn = 0;
}

static int utf8_complete(const char *s, size_t n) {
    if (n && ((unsigned char)s[0] & 0xC0) == 0x80) return 0;
    size_t i = 0;
    while (i < n) {
        unsigned char b = (unsigned char)s[i];
        size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        if (i + need > n) return 0;
        i += need;
    }
    return 1;
}

static void on_ev(void *user, const tool_event *ev) {
    rec *r = user;
    char line[512];
    if (ev->type == TOOL_EV_TEXT) {
        if (!utf8_complete(ev->text, ev->len)) r->bad_utf8_cut = 1;
        if (r->tn + ev->len + 1 > r->tcap) {
            r->tcap = (r->tn + ev->len + 1) * 2;
            r->text = realloc(r->text, r->tcap);
        }
        memcpy(r->text + r->tn, ev->text, ev->len);
        r->tn += ev->len;
        return;
    }
    rec_flush(r);
    char *v = ev->value ? cJSON_PrintUnformatted(ev->value) : NULL;
    switch (ev->type) {
    case TOOL_EV_CALL_BEGIN: snprintf(line, sizeof line, "B%d\n", ev->call); break;
    case TOOL_EV_NAME: snprintf(line, sizeof line, "N%d:%s\n", ev->call, ev->name); break;
    case TOOL_EV_ARG_DONE:
        snprintf(line, sizeof line, "A%d:%s.%s=%s\n", ev->call, ev->name, ev->arg, v);
        if (!r->argdone_at) r->argdone_at = r->fed;
        break;
    case TOOL_EV_CALL_END:
        snprintf(line, sizeof line, "E%d:%s:%s\n", ev->call, ev->name, v);
        if (!r->end_at) r->end_at = r->fed;
        r->n_end++;
        break;
    case TOOL_EV_CALL_ERROR:
        snprintf(line, sizeof line, "X%d\n", ev->call);   /* message wording may vary */
        r->n_err++;
        break;
    default: snprintf(line, sizeof line, "?\n");
    }
    cJSON_free(v);
    rec_add(r, line, strlen(line));
}

/* Parses s fed in chunks at the given cut offsets (sorted, may be empty). */
static char *parse_cuts(const char *s, size_t n, const size_t *cuts, int n_cuts,
                        const tool_parser_opts *o, rec *out) {
    rec r = {0};
    rec_add(&r, "", 0);
    tool_parser *p = tool_parser_create(o, on_ev, &r);
    size_t at = 0;
    for (int i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : n;
        r.fed = end;
        tool_parser_feed(p, s + at, end - at);
        at = end;
    }
    tool_parser_finish(p);
    rec_flush(&r);
    tool_parser_destroy(p);
    if (out) *out = r;
    char *log = r.log;
    if (out) out->log = NULL;
    free(r.text);
    if (out) out->text = NULL;
    return log;
}

static char *parse_whole(const char *s, rec *out) {
    return parse_cuts(s, strlen(s), NULL, 0, NULL, out);
}

/* A varied output: UTF-8 text, escapes, several calls of every variant,
 * a JSON object that is not a call, a malformed call. */
static const char *MIXED =
    "Let me look that up — café 中文 \xF0\x9F\x98\x80 ok.\n"
    "<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": {\"url\": \"https://example.org/a?b=1&c=\\\"q\\\"\", "
    "\"note\": \"\\u00e9\\ud83d\\ude00 tab\\t back\\\\slash \\/ \", \"n\": -12.5e-3, \"ok\": true, "
    "\"none\": null, \"list\": [1, [2, {\"x\": \"}\"}], \"]\"], \"obj\": {\"k\": {}}}}\n</tool_call>\n"
    "<tool_call>{\"arguments\": {\"query\": \"brisk runtime\"}, \"name\": \"web_search\"}</tool_call>"
    "Some text with <tool_ca and < tool_call> that are not tags.\n"
    "{\"not\": \"a call\", \"name\": \"x\"}\n"
    "  {\"name\": \"calculator\", \"arguments\": {\"expression\": \"2*(3+4)\"}} trailing words\n"
    "```json\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"sqrt(16)\"}}\n```\n"
    "```json\n{\"just\": \"data\"}\n```\n"
    "<tool_call>{\"name\": \"broken\", \"arguments\": {\"a\": [1, 2}}</tool_call>"
    "after the broken one \xC3\xA9\n"
    "<tool_call>{\"name\":\"last\",\"arguments\":\"{\\\"u\\\": 1}\"}</tool_call>";

static void test_mixed_events(void) {
    rec r;
    char *log = parse_whole(MIXED, &r);
    /* spot checks of the reference sequence itself */
    T_CHECK(strstr(log, "A0:fetch_url.url=\"https://example.org/a?b=1&c=\\\"q\\\"\"\n") != NULL);
    T_CHECK(strstr(log, "A1:web_search.query=\"brisk runtime\"") != NULL);
    T_CHECK(strstr(log, "N1:web_search\nA1:web_search.query") != NULL);  /* replayed after NAME */
    T_CHECK(strstr(log, "E2:calculator:{\"expression\":\"2*(3+4)\"}\nT[ trailing words\n") != NULL);
    T_CHECK(strstr(log, "E3:calculator:{\"expression\":\"sqrt(16)\"}\nT[\n```json\n{\"just\"") != NULL);
    T_CHECK(strstr(log, "T[Some text with <tool_ca and < tool_call> that are not tags.\n"
                        "{\"not\": \"a call\", \"name\": \"x\"}\n]") != NULL);
    T_CHECK(strstr(log, "X4\nT[after the broken one \xC3\xA9\n]") != NULL);
    T_CHECK(strstr(log, "A5:last.u=1\nE5:last:{\"u\":1}") != NULL);
    T_CHECK(strstr(log, "T[Let me look that up — café 中文 \xF0\x9F\x98\x80 ok.\n]\nB0\n") == log);
    T_CHECKF(r.n_end == 5 && r.n_err == 1, "ends %d errors %d", r.n_end, r.n_err);
    free(log);
}

static void test_every_split(void) {
    size_t n = strlen(MIXED);
    char *ref = parse_whole(MIXED, NULL);
    int bad = 0, utf8 = 0;
    for (size_t k = 0; k <= n; k++) {
        rec r;
        char *log = parse_cuts(MIXED, n, &k, 1, NULL, &r);
        if (strcmp(log, ref) != 0 && bad++ == 0) printf("  split at %zu differs:\n%s\n", k, log);
        utf8 |= r.bad_utf8_cut;
        free(log);
    }
    T_CHECKF(bad == 0, "%d of %zu splits differ", bad, n + 1);
    T_CHECK(!utf8);
    free(ref);
}

static void test_byte_by_byte_and_random(void) {
    size_t n = strlen(MIXED);
    char *ref = parse_whole(MIXED, NULL);
    size_t *cuts = malloc(n * sizeof *cuts);
    for (size_t i = 0; i < n; i++) cuts[i] = i + 1;
    rec r;
    char *log = parse_cuts(MIXED, n, cuts, (int)n - 1, NULL, &r);
    T_CHECK(strcmp(log, ref) == 0);
    T_CHECK(!r.bad_utf8_cut);
    free(log);
    uint64_t s = 12345;
    int bad = 0;
    for (int trial = 0; trial < 500; trial++) {
        int m = 0;
        size_t at = 0;
        for (;;) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            at += 1 + (s >> 33) % 9;
            if (at >= n) break;
            cuts[m++] = at;
        }
        log = parse_cuts(MIXED, n, cuts, m, NULL, &r);
        bad += strcmp(log, ref) != 0 || r.bad_utf8_cut;
        free(log);
    }
    T_CHECKF(bad == 0, "%d random chunkings differ", bad);
    free(cuts);
    free(ref);
}

/* Every pair of cut points on a shorter output. */
static void test_every_two_splits(void) {
    const char *s = "a\xC3\xA9<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":\"\\u00e9\\\"\",\"y\":[1]}}"
                    "</tool_call>\n{\"name\":\"g\"}\nz";
    size_t n = strlen(s);
    char *ref = parse_whole(s, NULL);
    T_CHECK(strstr(ref, "E1:g:{}") != NULL);
    int bad = 0;
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b < n; b++) {
            size_t cuts[2] = {a, b};
            char *log = parse_cuts(s, n, cuts, 2, NULL, NULL);
            bad += strcmp(log, ref) != 0;
            free(log);
        }
    T_CHECKF(bad == 0, "%d two-way splits differ", bad);
    free(ref);
}

/* Malformed calls: each must give CALL_ERROR, and the valid call after it
 * must still be found.  keep: the text right after the bad call survives. */
typedef struct bad_case { const char *s; int keep; } bad_case;
static const bad_case BAD[] = {
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\" \"arguments\": {}}</tool_call>", 1},
    {"<tool_call>{\"name\": f, \"arguments\": {}}</tool_call>", 1},
    {"<tool_call>{name: \"f\"}</tool_call>", 1},
    {"<tool_call>{\"arguments\": {\"a\": 1}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"\", \"arguments\": {}}</tool_call>", 1},
    {"<tool_call>{\"name\": 5, \"arguments\": {}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": [1,2]}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": \"not json\"}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1,}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 01}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1.}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": -}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1e}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": tru}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": nul}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"x\\q\"}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"\\u12G4\"}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"x\ny\"}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"x\ty\"}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [1, 2}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": {\"b\": 1]}}</tool_call>", 1},
    {"<tool_call>hello</tool_call>", 1},
    {"<tool_call></tool_call>", 1},
    {"<tool_call>[1,2]</tool_call>", 1},
    {"<tool_call>\"str\"</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {}}} </tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {}} trailing</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"name\": \"g\", \"arguments\": {}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {}, \"arguments\": {}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1, \"a\": 2}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"q\": \"unterminated</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"\\ud800\"}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1} \"x\"}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", : 1}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\" 1}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": }}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {,}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": +1}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": .5}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 0x10}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": NaN}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 'single'}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"x\"y\"}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"b\"}", 0},   /* next <tool_call> */
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"b\"}}</tool_cal>", 0},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"x\"}, \"extra\": }</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"\x01\"}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": tRue}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}}}}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": null}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1e+}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": -01}}</tool_call>", 1},
    {"<tool_call>{\"name\": [\"f\"], \"arguments\": {}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": [1}\"}</tool_call>", 1},
    {"<tool_call> x {\"name\": \"f\"}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}</tool_call>", 1},
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}, \"name\": \"g\"}</tool_call>", 1},
    {"{\"name\": \"f\", bad}", 1},
    {"{\"name\": 7}", 1},
    {"{\"name\": \"f\", \"arguments\": \"x\"}", 1},
    {"```json\n{\"name\": \"f\", \"arguments\": {\"a\": [}}\n```", 1},
    {"{\"name\": \"f\", \"arguments\": {\"a\": \"x\\u00\"}}", 1},
};

static void test_malformed(void) {
    int n_cases = (int)(sizeof BAD / sizeof BAD[0]);
    T_CHECKF(n_cases >= 50, "only %d cases", n_cases);
    tool_parser_opts o = {.max_call_bytes = 0, .max_depth = 32};
    for (int i = 0; i < n_cases; i++) {
        char in[1024];
        snprintf(in, sizeof in, "before\n%s\nafter words\n"
                 "<tool_call>{\"name\": \"ok\", \"arguments\": {\"v\": %d}}</tool_call>\nend", BAD[i].s, i);
        rec r;
        char *log = parse_cuts(in, strlen(in), NULL, 0, &o, &r);
        char want[64];
        snprintf(want, sizeof want, "E%d:ok:{\"v\":%d}\nT[\nend]", r.n_err + r.n_end - 1, i);
        T_CHECKF(r.n_err == 1, "case %d: %d errors\n%s", i, r.n_err, log);
        T_CHECKF(strstr(log, "B0\n") && strstr(log, "X0\n"), "case %d: first call not the error\n%s", i, log);
        T_CHECKF(strstr(log, want) != NULL, "case %d: valid call after it lost\n%s", i, log);
        T_CHECKF(strncmp(log, "T[before\n]", 10) == 0, "case %d: text before lost", i);
        if (BAD[i].keep)
            T_CHECKF(strstr(log, "after words\n") != NULL, "case %d: text after lost\n%s", i, log);
        /* the same output split byte by byte gives the same events */
        size_t n = strlen(in), cuts[1024];
        for (size_t k = 0; k + 1 < n; k++) cuts[k] = k + 1;
        char *log2 = parse_cuts(in, n, cuts, (int)n - 1, &o, NULL);
        T_CHECKF(strcmp(log, log2) == 0, "case %d differs byte by byte", i);
        free(log2);
        free(log);
    }
}

static void test_size_and_depth_caps(void) {
    tool_parser_opts o = {.max_call_bytes = 2000, .max_depth = 8};
    size_t big = 5000;
    char *in = malloc(big + 200);
    strcpy(in, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"");
    size_t at = strlen(in);
    memset(in + at, 'x', big);
    strcpy(in + at + big, "\"}}</tool_call>tail");
    rec r;
    char *log = parse_cuts(in, strlen(in), NULL, 0, &o, &r);
    T_CHECKF(r.n_err == 1 && r.n_end == 0, "%s", log);
    T_CHECK(strstr(log, "T[tail]") != NULL);
    free(log);
    const char *deep = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [[[[[[[[[[1]]]]]]]]]]}}</tool_call>t";
    log = parse_cuts(deep, strlen(deep), NULL, 0, &o, &r);
    T_CHECKF(r.n_err == 1 && strstr(log, "T[t]"), "%s", log);
    free(log);
    free(in);
}

static void test_unterminated(void) {
    const char *cases[] = {
        "x <tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"b",
        "x <tool_call>",
        "x <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 12",
        "x\n{\"name\": \"f\", \"arguments\": {",
        "x\n```json\n{\"name\": \"f\"",
    };
    for (int i = 0; i < 5; i++) {
        rec r;
        char *log = parse_whole(cases[i], &r);
        T_CHECKF(r.n_err == 1 && r.n_end == 0, "case %d: %s", i, log);
        free(log);
    }
}

/* Error messages are usable as tool results. */
static void on_msg(void *user, const tool_event *ev) {
    if (ev->type == TOOL_EV_CALL_ERROR) snprintf(user, 256, "%.*s", (int)ev->len, ev->text);
}

static void test_error_message(void) {
    char msg[256] = "";
    tool_parser *p = tool_parser_create(NULL, on_msg, msg);
    const char *s = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1,}}</tool_call>";
    tool_parser_feed(p, s, strlen(s));
    tool_parser_finish(p);
    T_CHECKF(strstr(msg, "malformed tool call") && strstr(msg, "key"), "%s", msg);
    tool_parser_reset(p);
    msg[0] = 0;
    s = "<tool_call>{\"arguments\": {}}</tool_call>";
    tool_parser_feed(p, s, strlen(s));
    tool_parser_finish(p);
    T_CHECKF(strstr(msg, "name") != NULL, "%s", msg);
    tool_parser_destroy(p);
}

/* ARG_DONE for an argument arrives as soon as its value closes: before the
 * later arguments and before </tool_call>. */
static void test_early_events(void) {
    const char *s = "<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": {\"url\": \"http://x.test/p\", "
                    "\"max\": 12345}}\n</tool_call>";
    size_t n = strlen(s), cuts[512];
    for (size_t k = 0; k + 1 < n; k++) cuts[k] = k + 1;
    rec r;
    char *log = parse_cuts(s, n, cuts, (int)n - 1, NULL, &r);
    size_t url_close = (size_t)(strstr(s, "/p\"") - s) + 3;    /* offset just past the closing quote */
    size_t tag = (size_t)(strstr(s, "</tool_call>") - s);
    size_t max_start = (size_t)(strstr(s, "\"max\"") - s);
    T_CHECKF(r.argdone_at == url_close, "ARG_DONE(url) at %zu, url closed at %zu", r.argdone_at, url_close);
    T_CHECK(r.argdone_at < max_start);
    T_CHECK(r.argdone_at < tag);
    T_CHECKF(r.end_at == n, "CALL_END at %zu of %zu", r.end_at, n);
    T_CHECK(strstr(log, "B0\nN0:fetch_url\nA0:fetch_url.url=\"http://x.test/p\"\nA0:fetch_url.max=12345\nE0:") != NULL);
    free(log);
}

static void test_plain_rule(void) {
    rec r;
    /* not at a line start, first key not "name", or no fence newline: text */
    const char *text_only[] = {
        "see {\"name\": \"f\", \"arguments\": {}} here",
        "{\"arguments\": {}, \"name\": \"f\"}\n",
        "```json {\"name\": \"f\"}\n```",
        "{ \"names\": 1}",
        "  x{\"name\": \"f\"}",
    };
    for (int i = 0; i < 5; i++) {
        char *log = parse_whole(text_only[i], &r);
        char want[256];
        snprintf(want, sizeof want, "T[%s]\n", text_only[i]);
        T_CHECKF(strcmp(log, want) == 0, "case %d: %s", i, log);
        free(log);
    }
    /* a fence and an indented object after a newline are calls */
    char *log = parse_whole("intro:\n```\n{\"name\": \"f\"}\n```\nbye\n\t{\n \"name\" : \"g\", \"arguments\": {\"a\": [1]}}", &r);
    T_CHECKF(strcmp(log, "T[intro:\n]\nB0\nN0:f\nE0:f:{}\nT[\nbye\n]\nB1\nN1:g\nA1:g.a=[1]\nE1:g:{\"a\":[1]}\n") == 0,
             "%s", log);
    free(log);
    /* closing tag missing at end of stream, or before the next call: accepted */
    log = parse_whole("<tool_call>{\"name\": \"a\"}\n<tool_call>{\"name\": \"b\"}\n", &r);
    T_CHECKF(r.n_end == 2 && r.n_err == 0, "%s", log);
    free(log);
    /* "parameters" is a synonym; other keys are ignored */
    log = parse_whole("<tool_call>{\"name\": \"a\", \"id\": 3, \"parameters\": {\"k\": \"v\"}}</tool_call>", &r);
    T_CHECKF(strstr(log, "E0:a:{\"k\":\"v\"}") != NULL, "%s", log);
    free(log);
}

static void test_no_callback_and_reset(void) {
    tool_parser *p = tool_parser_create(NULL, NULL, NULL);
    T_CHECK(p != NULL);
    const char *s = "<tool_call>{\"name\": \"a\"}</tool_call><tool_call>{\"name\": \"b\"}</tool_call>";
    T_CHECK(tool_parser_feed(p, s, strlen(s)) == ENG_OK);
    T_CHECK(tool_parser_finish(p) == ENG_OK);
    T_CHECK(tool_parser_n_calls(p) == 2);
    tool_parser_reset(p);
    T_CHECK(tool_parser_n_calls(p) == 0);
    tool_parser_destroy(p);
}

/* Random bytes (and random mutations of a valid output) never crash the
 * parser and every call that begins ends exactly once. */
static int g_begin, g_close;
static void count_ev(void *user, const tool_event *ev) {
    (void)user;
    if (ev->type == TOOL_EV_CALL_BEGIN) g_begin++;
    if (ev->type == TOOL_EV_CALL_END || ev->type == TOOL_EV_CALL_ERROR) g_close++;
}

static void test_fuzz(void) {
    uint64_t s = 99;
    size_t n = strlen(MIXED);
    char *buf = malloc(n + 1);
    int unbalanced = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(buf, MIXED, n);
        for (int m = 0; m < 1 + trial % 8; m++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (s >> 20) % n;
            static const char pool[] = "{}[]\":,\\<>/ \nabc0\xC3";
            buf[at] = pool[(s >> 40) % (sizeof pool - 1)];
        }
        g_begin = g_close = 0;
        tool_parser *p = tool_parser_create(NULL, count_ev, NULL);
        size_t at = 0;
        while (at < n) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t len = 1 + (s >> 33) % 17;
            if (at + len > n) len = n - at;
            tool_parser_feed(p, buf + at, len);
            at += len;
        }
        tool_parser_finish(p);
        tool_parser_destroy(p);
        unbalanced += g_begin != g_close;
    }
    T_CHECKF(unbalanced == 0, "%d runs with calls begun but not closed", unbalanced);
    free(buf);
}

int main(void) {
    T_RUN(test_mixed_events);
    T_RUN(test_every_split);
    T_RUN(test_byte_by_byte_and_random);
    T_RUN(test_every_two_splits);
    T_RUN(test_malformed);
    T_RUN(test_size_and_depth_caps);
    T_RUN(test_unterminated);
    T_RUN(test_error_message);
    T_RUN(test_early_events);
    T_RUN(test_plain_rule);
    T_RUN(test_no_callback_and_reset);
    T_RUN(test_fuzz);
    T_DONE();
}
