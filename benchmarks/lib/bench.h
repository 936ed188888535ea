/* bench.h — the benchmark library (libbench.a): harnesses the benchmarks,
 * the `brisk bench` / `brisk replay` commands and some tests use, kept out
 * of libbrisk and its public headers.
 *
 *   web environment   a local HTTP server over a SQLite corpus with FTS5
 *                     search and simulated network latency (webenv.c,
 *                     corpus.c)
 *   WebWalkerQA       sites built from the dataset for the web environment
 *                     (wwsite.c) and the oracle agent that measures what
 *                     speculative prefetch saves (wwagent.c)
 *   task runs         one orchestrator task driven through the scheduler to
 *                     its end, as the server drives a query (run.c)
 *   MATH-500          accuracy against latency of the test-time-scaling
 *                     configurations (math500.c)
 *   ParallelPrompt    one prompt as the server answers it in chat mode
 *                     (serial) and in parallel mode (pp.c), for the replay
 *   plots             SVG scatter plots and bar charts (svg.c)
 *
 * Every call that can fail returns an ENG_* code and fills an eng_err. */
#ifndef BENCH_H
#define BENCH_H
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "eng.h"
#include "cache.h"
#include "orc_tts.h"
#include "orc_pp.h"

/* ===================================================== web environment */

/* Network latency model.  Each request of the local web environment waits a
 * lognormal time: median * exp(sigma * Z), Z standard normal.  Defaults
 * median 400 ms, sigma 0.6 (so p10 ~ 185 ms, p90 ~ 860 ms, p99 ~ 1.6 s): a
 * chosen stand-in for real page fetches by web agents, which take hundreds
 * of milliseconds to seconds; tests use a few ms.  Seeded, reproducible. */
typedef struct bench_latency {
    double median_ms, sigma;
    uint64_t state;
} bench_latency;
void   bench_latency_init(bench_latency *l, double median_ms, double sigma, uint64_t seed);
double bench_latency_draw_ms(bench_latency *l);     /* not thread-safe by itself */

/* Corpus database: table pages(url TEXT PRIMARY KEY, title TEXT, body_html
 * TEXT) where url is the path the server answers ("/page/12"), links in
 * body_html are relative to the server; table pages_fts (FTS5 over title and
 * extracted text, rowid = pages.rowid) backs /search. */
/* Builds a synthetic site in db_path (created or emptied): "/" links to
 * topic hubs "/topic/T", which link to their pages "/page/N"; every page has
 * a unique made-up name in its title, paragraphs, facts, and 4-10 links to
 * other pages.  Same seed, same site. */
int  bench_corpus_generate(const char *db_path, int n_pages, uint64_t seed, eng_err *err);
/* Name of generated page i (0 <= i < n_pages) for a seed, e.g. to search. */
void bench_corpus_page_name(uint64_t seed, int i, char *buf, size_t cap);
/* Adds every *.html / *.htm file under dir (recursively, at most max_files,
 * 0 = no limit, each at most 1 MiB) as url prefix + relative path. */
int  bench_corpus_import_dir(const char *db_path, const char *dir, const char *prefix,
                            int max_files, int *n_imported, eng_err *err);

typedef struct bench_webenv_opts {
    const char *db_path;       /* corpus (see above); required */
    int    port;               /* 0 = any free port */
    double latency_median_ms;  /* 0 = 400; negative = no latency */
    double latency_sigma;      /* 0 = 0.6; negative = fixed latency */
    uint64_t seed;
    int    test_endpoints;     /* serve /_test/... (see below) */
} bench_webenv_opts;

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
typedef struct bench_webenv bench_webenv;
int  bench_webenv_start(const bench_webenv_opts *o, bench_webenv **out, eng_err *err);
void bench_webenv_stop(bench_webenv *w);           /* closes everything, frees w */
int  bench_webenv_port(const bench_webenv *w);
const char *bench_webenv_url(const bench_webenv *w); /* "http://127.0.0.1:PORT" */
long bench_webenv_requests(const bench_webenv *w);   /* requests answered so far */
/* Restarts the latency draws from seed, so that runs compared with each
 * other (benchmark modes) meet the same latencies in the same order. */
void bench_webenv_reseed(bench_webenv *w, uint64_t seed);

/* ========================================================= WebWalkerQA */

/* ------------------------------------------------- WebWalkerQA sites */
/* One golden path: the anchor texts clicked from the root page. */
typedef struct bench_ww_path {
    char **anchors;
    int n;
    char *source;         /* the row's source_website for this path, or NULL */
    char *url;            /* public URL of the page it ends on (set by the build) */
} bench_ww_path;

typedef struct bench_ww_row {
    int index;            /* position in the dataset file */
    char *question, *answer;   /* whitespace collapsed */
    char *root_url;       /* normalised (cache_key_url) */
    bench_ww_path *paths;
    int n_paths;
} bench_ww_row;

/* Reads WebWalkerQA's test.json; keeps rows of language lang (NULL: all)
 * that have a question, an answer, a root_url and a golden path. */
int  bench_ww_load(const char *json_path, const char *lang, bench_ww_row **rows, int *n,
                   eng_err *err);
void bench_ww_rows_free(bench_ww_row *rows, int n);
/* s with whitespace runs made one space and the ends trimmed (malloc'd);
 * how page text and anchors are compared. */
char *bench_ww_norm_text(const char *s);

typedef struct bench_wwsite_opts {
    uint64_t seed;        /* filler choice and order; same seed, same sites */
    int min_links, max_links;  /* distractor links per page; 0 = 8 and 20 */
    int n_filler;         /* filler pages per site; 0 = 40 */
    int filler_words;     /* words of prose per page; 0 = 300 */
} bench_wwsite_opts;

/* Builds one site per root_url of rows into db_path (tables pages and
 * pages_fts, emptied first), which bench_webenv serves; see wwsite.c for how
 * pages are made.  Sets every path's url.  o may be NULL. */
typedef struct bench_wwsite bench_wwsite;
int  bench_wwsite_build(const char *db_path, bench_ww_row *rows, int n_rows,
                        const bench_wwsite_opts *o, bench_wwsite **out, eng_err *err);
void bench_wwsite_free(bench_wwsite *s);
int  bench_wwsite_n_pages(const bench_wwsite *s);
/* The web environment serves paths only: public scheme://host/path is
 * served as "/host/path" (the URL normalised first).  *out malloc'd. */
int  bench_ww_local_path(const char *url, char **out, eng_err *err);
/* The public URL of a served path (owned by s), or NULL. */
const char *bench_wwsite_public_url(const bench_wwsite *s, const char *local_path);

/* ------------------------------------------------------ oracle agent */
/* One WebWalkerQA question walked by an agent that knows the golden path
 * (no model here can browse): search(question), open root_url, click each
 * path's anchors in turn (pages already open are reused, not fetched),
 * then answer with the sentence of each final page holding the answer.
 * Every web action goes through cache_lookup_or_fetch of a fresh cache.
 * Before each one the main model "thinks" (its prompt, then think_tokens
 * engine steps) while a speculator thread queues up to top_k new
 * prefetches from one pool of candidates: the task's search and root_url
 * until done, unopened search results, the current page's links, and the
 * links of prefetched pages not opened yet (lookahead; see wwagent.c for
 * how they are ranked).  Modes: */
enum {
    BENCH_WW_NONE = 0,    /* no prefetch */
    BENCH_WW_SPEC,        /* cheap signals + draft model: half the slots from the
                             cheap ranking at once, the rest after the draft's
                             scores are added (dropped if the agent acted first) */
    BENCH_WW_CHEAP,       /* cheap signals only */
    BENCH_WW_RANDOM,      /* top_k drawn at random from the same pool */
    BENCH_WW_RANDOM_LINKS, /* top_k drawn at random from the current page's unopened
                             links: a prefetcher with no speculator (no predicted
                             search, start page or lookahead) */
    BENCH_WW_N_MODES
};
const char *bench_ww_mode_name(int mode);

typedef struct bench_ww_env {
    const bench_wwsite *site;
    const char *base_url;       /* bench_webenv_url of a web environment over the site */
    eng_engine *think;          /* the main model (one sequence at a time) */
    cache_draft *draft;         /* NULL: BENCH_WW_SPEC runs without a draft */
    const char *tmp_dir;        /* per-question cache files */
} bench_ww_env;

typedef struct bench_ww_opts {
    int mode;                   /* BENCH_WW_* */
    int think_tokens;           /* 0 = 64 */
    double median_ms, sigma;    /* per-fetch latency, lognormal; sigma 0 = 0.6 */
    uint64_t seed;              /* latency (per question and URL) and random picks */
    int top_k;                  /* most prefetches queued per think; 0 = 3 */
    int max_concurrent;         /* prefetch fetches at once; 0 = 4 */
    int64_t byte_budget;        /* prefetch bytes per question; 0 = 64 KiB */
    double draft_weight;        /* 0 = 1 */
} bench_ww_opts;

/* Kinds of web action, and how each was served, for the breakdown below. */
enum { BENCH_WW_ACT_SEARCH = 0, BENCH_WW_ACT_ROOT, BENCH_WW_ACT_CLICK, BENCH_WW_N_ACTS };
enum { BENCH_WW_HIT = 0, BENCH_WW_JOIN, BENCH_WW_MISS, BENCH_WW_N_SERVED };

typedef struct bench_ww_kind {
    int n[BENCH_WW_N_SERVED];          /* actions served from the cache, by joining a
                                          fetch in flight, by fetching */
    double wait_ms[BENCH_WW_N_SERVED]; /* web wait of each */
    int miss_queued;                   /* misses of keys the speculator had queued (the
                                          pool had not started them): late, not wrong */
} bench_ww_kind;

typedef struct bench_ww_result {
    int actions;                /* web actions: search, root, clicks */
    int hits, joins;            /* actions served from the cache / joined a fetch */
    int clicks, click_hits;     /* link clicks, and those hit or joined */
    double wait_ms;             /* time the agent waited on the web */
    bench_ww_kind kind[BENCH_WW_N_ACTS];
    double think_ms;            /* main model time */
    double spec_ms;             /* speculator time (beside the think) */
    double late_ms;             /* waited for the speculator after a think */
    int64_t issued, prefetch_bytes, unused_bytes;
    char *answer;               /* final pages' answer sentences, " | " between */
    int correct;                /* every final page held the row's answer */
} bench_ww_result;

int  bench_ww_episode(const bench_ww_env *env, const bench_ww_opts *o, const bench_ww_row *row,
                      bench_ww_result *out, eng_err *err);
void bench_ww_result_clear(bench_ww_result *r);

/* =========================================================== task runs */

/* Most branches (parallel subtasks, reason branches) whose token messages a
 * collector counts; ORC_PP_MAX_ITEMS and ORC_TTS_MAX_N both fit. */
#define BENCH_MAX_BRANCHES 64

/* What a task said: its last answer, stats and error messages, and per
 * branch (the token message's "branch"; 0 when it has none) the token
 * messages and their text.  Token messages come only for tokens before a
 * stop (none for an end-of-sequence token). */
typedef struct bench_collect {
    cJSON *answer, *stats, *error;
    int tokens[BENCH_MAX_BRANCHES];
    eng_buf text[BENCH_MAX_BRANCHES];
    int n_branches;               /* 1 + the highest branch seen */
    double t_answer;              /* eng_now_s() when the answer came */
    int done, oom;
} bench_collect;

/* A sink that fills c (zeroed here); bench_collect_clear frees what it kept. */
orc_sink bench_collect_sink(bench_collect *c);
void     bench_collect_clear(bench_collect *c);
/* Submits t (taken over; freed if the submit fails) and steps s until t has
 * left the scheduler.  *t_submit (may be NULL): the task's submission time,
 * which its stats' times count from.  An engine error fails the run; a task
 * that ended on an error message does not (see c->error). */
int      bench_run_task(orc_sched *s, orc_task *t, const bench_collect *c, double *t_submit,
                        eng_err *err);
/* A number field of a message (0 when absent). */
double   bench_num(const cJSON *o, const char *k);
/* Writes root, printed and closed by a newline, to path and says "wrote
 * path" on stdout; -1, said on stderr, when it cannot. */
int      bench_write_json(const char *path, const cJSON *root);

/* ============================================================ MATH-500 */

typedef struct bench_math500_opts {
    const char *model, *data, *out;
    int limit, max_tokens, threads, quiet;
    eng_opts eng;                 /* --cuda, --tp N, --quant (eng_opts_arg) */
    int ns[8], n_ns;              /* branch counts; default 4 8 16 */
    double budgets[8];            /* planner budgets (s); default 2 5 10 */
    int n_budgets;
    float temperature, top_p;
    uint64_t seed;
    orc_tts_opts early;           /* probing settings of the early-stop run */
    orc_acc_model acc;
    double accept, spec_cost;     /* for the planner; accept until the spec run measures it */
    int calib_max_batch;
    int kv_blocks;                /* 0: sized for 64 branches of full context */
    int spec_k, spec_kmax;        /* drafts of the speculative runs; the planner's bound */
    const char *draft;            /* draft model folder; NULL: n-gram drafter */
} bench_math500_opts;

/* Parses `bench math500 [options]` (argv[0] is "bench"). */
int  bench_math500_parse(int argc, char **argv, bench_math500_opts *o, eng_err *err);
void bench_math500_usage(void);   /* to stderr */
/* Runs every configuration, prints a table, writes the JSON and an SVG plot
 * (same path, .svg) of accuracy against mean latency. */
int bench_math500_run(const bench_math500_opts *o, eng_err *err);

/* ====================================================== ParallelPrompt */

/* One request as the server runs it, read back from its messages.  Times in
 * ms from before the task was created (its prompts tokenised) on an engine
 * that runs nothing else. */
typedef struct bench_pp_result {
    char *answer;          /* parallel: the numbered sections; serial: the answer */
    char **outputs;        /* per subtask (serial: one): its tokens' text */
    int n_outputs;
    int *n_gen;            /* tokens generated per subtask before its stop (EOS not counted) */
    int total_gen;
    int prompt_tokens;     /* summed over the subtasks' prompts */
    int shared_tokens;     /* parallel: the common prefix prefilled once */
    int n_eos_first;       /* subtasks whose first token ended them */
    double ms_total;       /* until the answer */
    double ms_encode;      /* creating the task: schema, prompts, tokens */
    double ms_prefill;     /* until admitted (parallel: the shared prefix prefilled, forks made) */
    double ms_first;       /* until the first step's tokens (every subtask has its first) */
} bench_pp_result;
void bench_pp_result_free(bench_pp_result *r);

/* Parallel mode: the schema's subtasks as one orc_task_parallel_create task
 * (the context hoisted unless hoist is 0, as the server's "hoist_context"),
 * max_tokens per subtask, driven through s to its end. */
int  bench_pp_parallel(orc_sched *s, const eng_model *m, const orc_pp_schema *schema, int hoist,
                       const eng_sampling *samp, int max_tokens, bench_pp_result *r, eng_err *err);
/* Serial baseline: the whole prompt as one chat-mode request (a user turn). */
int  bench_pp_serial(orc_sched *s, const eng_model *m, const char *prompt, const eng_sampling *samp,
                     int max_tokens, bench_pp_result *r, eng_err *err);

/* Structural adherence of a parallel answer: every item's section is there,
 * in item order, and not empty.  "Not empty" is judged on tokens (>= 1
 * generated before the stop), not on text, so that it means the same for a
 * model whose tokens have no printable text (random weights with a small
 * test tokenizer); the non-blank text count is kept beside it. */
typedef struct bench_pp_adherence {
    int items;      /* subtasks */
    int answered;   /* with >= 1 generated token */
    int in_order;   /* leading sections found in the answer in item order */
    int nonblank;   /* with visible answer text */
    int ok;         /* every item answered and every section in order */
} bench_pp_adherence;
/* labels: the schema's items (NULL for kind N).  Bad input (NULL, outputs
 * missing) gives ok = 0. */
void bench_pp_adherence_of(const bench_pp_result *r, const char *const *labels,
                           bench_pp_adherence *a);

/* ================================================================ plots */

/* A scatter plot with labelled points. */
typedef struct bench_svg_point { double x, y; const char *label; } bench_svg_point;
int bench_svg_scatter(const char *path, const char *title, const char *xlabel, const char *ylabel,
                      const bench_svg_point *p, int n, eng_err *err);
/* A bar chart: one bar per value (labels under them up to 40 bars), blue
 * at or above ref and orange below, a dashed line at ref (none when ref <= 0). */
int bench_svg_bars(const char *path, const char *title, const char *ylabel,
                   const char *const *labels, const double *v, int n, double ref, eng_err *err);

#endif
