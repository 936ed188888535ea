/* tool.h — tools the model calls, and the machinery around them:
 *
 *   registry   tools by name: argument schema, execute callback, and the
 *              arguments that let a call start before the model finishes it
 *   parser     streaming recogniser of tool calls in model output
 *   scheduler  runs calls on worker threads, starting each one as soon as its
 *              early arguments are complete (partial execution: the tool runs
 *              while the model is still decoding the rest of the call)
 *   tools      calculator, fetch_url (libcurl + HTML to text), web_search
 *   webenv     a local HTTP server over a SQLite corpus with FTS5 search and
 *              simulated network latency, for tests and benchmarks
 *
 * Every call that can fail returns an ENG_* code and fills an eng_err. */
#ifndef TOOL_H
#define TOOL_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cJSON.h>
#include "eng.h"

/* ================================================================ registry */

/* What a running tool sees.  A tool with slow steps stops promptly once
 * *cancel is set and bounds its waits by tool_ctx_left (fetch_url: curl's
 * progress callback and timeout); the scheduler waits for it. */
typedef struct tool_ctx {
    const atomic_int *cancel;  /* nonzero: result no longer wanted (may be NULL) */
    double deadline;           /* eng_now_s() time limit; 0 = none */
    void *user;                /* the tool's user pointer */
} tool_ctx;

double tool_ctx_left(const tool_ctx *c);   /* seconds left (1e9 without deadline) */

/* Execute callback: args is a JSON object.  On success returns ENG_OK with
 * *text a malloc'd result for the model and optionally *meta extra
 * structured data (e.g. fetch_url's links); on failure an ENG_* code with a
 * message in err, which becomes the error result shown to the model. */
typedef int (*tool_exec_fn)(const cJSON *args, const tool_ctx *ctx,
                            char **text, cJSON **meta, eng_err *err);

typedef struct tool_def {
    const char *name;            /* [A-Za-z0-9_.-], at most 63 bytes */
    const char *description;
    const cJSON *schema;         /* JSON schema of the arguments (an object
                                  * schema with "properties" and "required");
                                  * copied */
    const char *const *early;    /* partial execution: argument names which,
                                  * once all complete, let the call start */
    int n_early;                 /* 0: the call starts only when complete */
    double timeout_s;            /* 0 = 30 s */
    tool_exec_fn exec;
    void *user;                  /* handed to exec as ctx->user */
    void (*user_free)(void *);   /* called on user at registry destroy */
} tool_def;

typedef struct tool_registry tool_registry;

tool_registry *tool_registry_create(void);
void tool_registry_destroy(tool_registry *r);
int  tool_register(tool_registry *r, const tool_def *d, eng_err *err);
int  tool_registry_count(const tool_registry *r);
/* The definition registered under name, or NULL (pointers owned by r). */
const tool_def *tool_registry_find(const tool_registry *r, const char *name);

/* Checks args against the tool's schema: an object, every property present
 * of the declared type (string, number, integer, boolean, object, array),
 * enum values, and, unless partial, every required property.  Returns ENG_OK
 * or ENG_EINVAL with a message meant for the model. */
int  tool_validate_args(const tool_def *d, const cJSON *args, int partial, eng_err *err);

/* The result of one call, in the order the calls appeared in the output. */
typedef struct tool_result {
    int    call;        /* 0-based index of the call in the output */
    char  *name;        /* tool name, or NULL when the call had none */
    cJSON *args;        /* final arguments, or NULL for a malformed call */
    int    is_error;
    char  *text;        /* result, or an error message, for the model */
    cJSON *meta;        /* tool extras, may be NULL */
    int    early;       /* the run that produced the result began before CALL_END */
    int    restarts;    /* runs cancelled because the final args differed */
    double t_call_end;  /* eng_now_s() when the call's text was complete */
    double t_start, t_done; /* the run that produced the result (0 if none) */
} tool_result;

void tool_result_clear(tool_result *r);               /* frees the members */
void tool_results_free(tool_result *r, int n);        /* clears all, frees r */

/* Runs one call synchronously: unknown tool, bad arguments, tool failure,
 * cancellation and timeout all become an error result (never a crash).
 * timeout_s <= 0 uses the tool's own.  Fills every field but call/early/
 * restarts/t_call_end. */
void tool_registry_call(const tool_registry *r, const char *name, const cJSON *args,
                        const atomic_int *cancel, double timeout_s, tool_result *out);

/* The tools as the JSON list chat templates take (eng_chat_opts.tools_json):
 * [{"type": "function", "function": {"name", "description", "parameters"}}]
 * in registration order.  malloc'd (free()), NULL when out of memory. */
char *tool_registry_json(const tool_registry *r);

/* ================================================================== parser */

/* Rules for recognising calls in model output (bytes outside calls are TEXT):
 *  1. Tagged (Qwen2.5): "<tool_call>" anywhere, optional whitespace, one JSON
 *     object, optional whitespace, "</tool_call>".  A "</tool_call>" or
 *     "<tool_call>" met inside the JSON (even inside a string) ends the call
 *     with an error, so a runaway string cannot swallow the rest of the
 *     output.  A complete object at end of stream with the closing tag
 *     missing is accepted (generation may stop on the tag).
 *  2. Plain JSON: at the start of a line (optionally indented, or on the line
 *     after a "```json" or "```" fence), a JSON object whose FIRST key is
 *     "name".  Any other object is ordinary text.  The call ends with the
 *     object; a fence's closing "```" is swallowed.
 * The object holds "name" (non-empty string) and "arguments" (an object, or
 * a string holding a JSON object; "parameters" is accepted as a synonym;
 * missing means {}); other keys are ignored.  JSON is checked strictly (no
 * raw control characters inside strings).
 * Errors (bad JSON, missing name, over max_call_bytes, nested deeper than
 * max_depth, unterminated at end of stream) give CALL_ERROR; the parser then
 * skips to the next "</tool_call>" or "<tool_call>" (tagged calls) or to the
 * end of the line (plain calls) and goes on parsing text. */
typedef enum {
    TOOL_EV_TEXT,        /* text, len: bytes outside calls (whole UTF-8 characters
                          * except at the very end of a malformed stream) */
    TOOL_EV_CALL_BEGIN,  /* a call starts */
    TOOL_EV_NAME,        /* name: the tool name is known */
    TOOL_EV_ARG_DONE,    /* arg, value, text/len (the value as compact JSON): one
                          * argument's value is complete; always after NAME */
    TOOL_EV_CALL_END,    /* name, value (the arguments object), text/len (raw
                          * JSON of the whole call) */
    TOOL_EV_CALL_ERROR   /* text: what was wrong; name if it was known */
} tool_ev_type;

typedef struct tool_event {
    tool_ev_type type;
    int call;              /* index of the call in this output (not for TEXT) */
    const char *text;      /* see above; not NUL-terminated for TEXT */
    size_t len;
    const char *name;
    const char *arg;
    const cJSON *value;
} tool_event;              /* pointers are valid only during the callback */

typedef void (*tool_event_fn)(void *user, const tool_event *ev);

typedef struct tool_parser_opts {
    size_t max_call_bytes;   /* JSON of one call; 0 = 64 KiB */
    int    max_depth;        /* JSON nesting; 0 = 32 */
} tool_parser_opts;

typedef struct tool_parser tool_parser;

/* o may be NULL.  The callback must not call back into the parser. */
tool_parser *tool_parser_create(const tool_parser_opts *o, tool_event_fn fn, void *user);
void tool_parser_destroy(tool_parser *p);
/* Feeds len bytes of output; any split is fine.  Returns ENG_OK, or ENG_ENOMEM. */
int  tool_parser_feed(tool_parser *p, const char *buf, size_t len);
/* End of stream: flushes text and reports an unfinished call. */
int  tool_parser_finish(tool_parser *p);
int  tool_parser_n_calls(const tool_parser *p);   /* calls begun so far */
/* Ready for a new output (same options and callback). */
void tool_parser_reset(tool_parser *p);

/* =============================================================== scheduler */

typedef struct tool_sched_opts {
    int    n_workers;        /* worker threads; 0 = 4 */
    int    no_partial;       /* 1: start calls only at CALL_END (baseline) */
    double grace_s;          /* a run past its deadline gets this long to stop
                              * before its result is a timeout; 0 = 0.5 */
    tool_parser_opts parser;
    tool_event_fn on_event;  /* sees every parser event (e.g. to stream TEXT) */
    void *user;
} tool_sched_opts;

typedef struct tool_sched tool_sched;

/* r must outlive the scheduler.  o may be NULL. */
int  tool_sched_create(const tool_registry *r, const tool_sched_opts *o,
                       tool_sched **out, eng_err *err);
/* Cancels and waits for every run (tools must honour cancellation). */
void tool_sched_destroy(tool_sched *s);
/* Feeds model output of the current turn (from the decoding thread). */
int  tool_sched_feed(tool_sched *s, const char *buf, size_t len);
/* Feeds one event of a parser driven by the caller instead (either this or
 * tool_sched_feed in a turn, not both). */
void tool_sched_event(tool_sched *s, const tool_event *ev);
/* Ends the turn's output, waits for every call of the turn and returns the
 * results in call order (*out malloc'd, free with tool_results_free; *n may
 * be 0).  The scheduler is then ready for the next turn. */
int  tool_sched_collect(tool_sched *s, tool_result **out, int *n, eng_err *err);
/* Cancels the runs of the current turn; collect then reports them cancelled. */
void tool_sched_cancel(tool_sched *s);
int  tool_sched_n_calls(const tool_sched *s);     /* calls seen this turn */

/* =================================================================== tools */

/* calculator {"expression": "..."}: + - * / % ^ (also **), parentheses,
 * unary minus, sqrt abs floor ceil ln log (base 10, or log(x, base)) exp sin
 * cos tan min max, constants pi and e.  No variables, no code execution.
 * Evaluates expr (at most TOOL_CALC_MAX_LEN bytes) into *out. */
#define TOOL_CALC_MAX_LEN 1000
int  tool_calc_eval(const char *expr, double *out, eng_err *err);
/* Formats a result the way the calculator tool returns it ("42", "0.5"). */
void tool_calc_format(double v, char *buf, size_t cap);
int  tool_register_calculator(tool_registry *r, eng_err *err);

/* A fetched page. */
typedef struct tool_link { char *url, *text; } tool_link;   /* absolute URL, anchor text */
typedef struct tool_page {
    char  *url;             /* final URL, after redirects */
    long   status;          /* HTTP status */
    char  *content_type;    /* as sent, e.g. "text/html; charset=utf-8" */
    char  *title;           /* "" when none */
    char  *text;            /* the whole readable text */
    tool_link *links;       /* http(s) links, fragment dropped, de-duplicated */
    int    n_links;
    size_t n_bytes;         /* body size */
    double elapsed_s;
} tool_page;
void tool_page_free(tool_page *p);

typedef struct tool_fetch_opts {
    double connect_timeout_s;  /* 0 = 5 */
    double timeout_s;          /* whole transfer; 0 = 15 (also capped by the ctx deadline) */
    size_t max_bytes;          /* body larger than this is refused; 0 = 2 MiB */
    int    max_redirects;      /* 0 = 5; negative = none followed */
    size_t max_text;           /* text returned to the model; 0 = 8000 bytes */
    int    max_links;          /* links listed for the model; 0 = 40 (meta has all) */
    const char *user_agent;    /* NULL = "brisk/0.1" */
    /* 0 (the default): no connection is made to a loopback, link-local,
     * private (RFC 1918, unique local, carrier-grade NAT), multicast or
     * unspecified address, whatever name led there: the check is on the
     * address each connection goes to, after DNS and on every redirect, so
     * a model cannot read the server's own /metrics, a cloud metadata
     * service or the local network.  Proxies from the environment are not
     * used then (the check must see the address connected to).  1: allowed
     * (a local web environment, tests). */
    int allow_private;
    /* Optional page source used instead of the network (e.g. a cache that
     * calls tool_fetch_page itself on a miss).  Same contract as
     * tool_fetch_page. */
    int (*get)(void *get_user, const char *url, const tool_ctx *ctx,
               tool_page **out, eng_err *err);
    void *get_user;
} tool_fetch_opts;

/* GET url (http/https only) with libcurl: connect and total timeouts, size
 * cap, redirect limit, content type text/html, text/plain or
 * application/json (else ENG_EUNSUPPORTED), HTTP status < 400.  HTML becomes
 * text and links.  ctx (may be NULL) supplies cancellation and a deadline. */
int  tool_fetch_page(const char *url, const tool_fetch_opts *o, const tool_ctx *ctx,
                     tool_page **out, eng_err *err);
/* The two halves of tool_fetch_page, for callers that keep raw bodies (the
 * cache's fetch callback stores tool_fetch_raw's body; fetch_url's get hook
 * turns a cached body back into a page with tool_page_from_body). */
typedef struct tool_fetch_resp {
    char  *url;             /* final URL */
    long   status;          /* < 400 */
    char  *content_type;    /* as sent, or NULL */
    char  *body;            /* NUL-terminated, len bytes, as sent */
    size_t len;
    double elapsed_s;
} tool_fetch_resp;
int  tool_fetch_raw(const char *url, const tool_fetch_opts *o, const tool_ctx *ctx,
                    tool_fetch_resp *out, eng_err *err);
void tool_fetch_resp_clear(tool_fetch_resp *r);
/* A page from a body: Latin-1 charsets converted to UTF-8, HTML (by content
 * type, or by a leading '<' when there is none) turned into text and links
 * resolved against url; other types kept as text. */
int  tool_page_from_body(const char *url, const char *content_type, const char *body,
                         size_t len, tool_page **out, eng_err *err);
/* HTML to text: drops script/style/noscript/template/svg and comments,
 * block tags become newlines and other tags spaces, common entities are
 * decoded, whitespace collapsed; fills p->title, p->text and p->links
 * (resolved against base_url, which may be NULL).  Returns ENG_OK or
 * ENG_ENOMEM. */
int  tool_html_to_text(const char *html, size_t len, const char *base_url, tool_page *p);
/* The page as the model reads it: title, URL, text cut at max_text bytes (on
 * a character boundary), then up to max_links links.  malloc'd. */
char *tool_page_format(const tool_page *p, size_t max_text, int max_links);
/* fetch_url {"url": "..."}; early argument: url.  meta: {"url": final URL,
 * "title": ..., "links": [{"url", "text"}]}.  o is copied (may be NULL). */
int  tool_register_fetch_url(tool_registry *r, const tool_fetch_opts *o, eng_err *err);

typedef struct tool_search_opts {
    const char *endpoint;      /* e.g. "http://127.0.0.1:8080/search"; required */
    int    k;                  /* results asked for when the call gives none; 0 = 5 */
    double timeout_s;          /* 0 = 10 */
} tool_search_opts;
/* web_search {"query": "...", "k": n?}; early argument: query.  Sends
 * GET {endpoint}?q=QUERY&k=N, expects {"results":[{"title","url","snippet"}]}
 * and formats them as numbered text; meta is the results array. */
int  tool_search(const tool_search_opts *o, const char *query, int k, const tool_ctx *ctx,
                 char **text, cJSON **results, eng_err *err);
int  tool_register_web_search(tool_registry *r, const tool_search_opts *o, eng_err *err);

/* ================================================================= webenv */

/* Network latency model.  Each request of the local web environment waits a
 * lognormal time: median * exp(sigma * Z), Z standard normal.  Defaults
 * median 400 ms, sigma 0.6 (so p10 ~ 185 ms, p90 ~ 860 ms, p99 ~ 1.6 s): a
 * chosen stand-in for real page fetches by web agents, which take hundreds
 * of milliseconds to seconds; tests use a few ms.  Seeded, reproducible. */
typedef struct tool_latency {
    double median_ms, sigma;
    uint64_t state;
} tool_latency;
void   tool_latency_init(tool_latency *l, double median_ms, double sigma, uint64_t seed);
double tool_latency_draw_ms(tool_latency *l);     /* not thread-safe by itself */

/* Corpus database: table pages(url TEXT PRIMARY KEY, title TEXT, body_html
 * TEXT) where url is the path the server answers ("/page/12"), links in
 * body_html are relative to the server; table pages_fts (FTS5 over title and
 * extracted text, rowid = pages.rowid) backs /search. */
/* Builds a synthetic site in db_path (created or emptied): "/" links to
 * topic hubs "/topic/T", which link to their pages "/page/N"; every page has
 * a unique made-up name in its title, paragraphs, facts, and 4-10 links to
 * other pages.  Same seed, same site. */
int  tool_corpus_generate(const char *db_path, int n_pages, uint64_t seed, eng_err *err);
/* Name of generated page i (0 <= i < n_pages) for a seed, e.g. to search. */
void tool_corpus_page_name(uint64_t seed, int i, char *buf, size_t cap);
/* Adds every *.html / *.htm file under dir (recursively, at most max_files,
 * 0 = no limit, each at most 1 MiB) as url prefix + relative path. */
int  tool_corpus_import_dir(const char *db_path, const char *dir, const char *prefix,
                            int max_files, int *n_imported, eng_err *err);

typedef struct tool_webenv_opts {
    const char *db_path;       /* corpus (see above); required */
    int    port;               /* 0 = any free port */
    double latency_median_ms;  /* 0 = 400; negative = no latency */
    double latency_sigma;      /* 0 = 0.6; negative = fixed latency */
    uint64_t seed;
    int    test_endpoints;     /* serve /_test/... (see below) */
} tool_webenv_opts;

/* Serves on 127.0.0.1, HTTP/1.1, GET only, Connection: close, one thread
 * per connection:
 *   /PATH               the page stored under PATH (text/html), else 404
 *   /search?q=Q&k=N     {"query": Q, "results": [{"title","url","snippet"}]}
 *                       best N (default 5, at most 50) by FTS5 bm25
 * With test_endpoints:
 *   /_test/slow?ms=N          answers after N ms more
 *   /_test/big?bytes=N[&nolen=1]  N bytes of text/plain (nolen: no
 *                                 Content-Length, body ends at close)
 *   /_test/redirect?n=N       302 chain of N hops, then a small page
 *   /_test/binary             application/octet-stream
 *   /_test/json               application/json
 * Malformed requests get 400 (or 405/414/431) and never stop the server. */
typedef struct tool_webenv tool_webenv;
int  tool_webenv_start(const tool_webenv_opts *o, tool_webenv **out, eng_err *err);
void tool_webenv_stop(tool_webenv *w);           /* closes everything, frees w */
int  tool_webenv_port(const tool_webenv *w);
const char *tool_webenv_url(const tool_webenv *w); /* "http://127.0.0.1:PORT" */
long tool_webenv_requests(const tool_webenv *w);   /* requests answered so far */
/* Restarts the latency draws from seed, so that runs compared with each
 * other (benchmark modes) meet the same latencies in the same order. */
void tool_webenv_reseed(tool_webenv *w, uint64_t seed);

#endif
