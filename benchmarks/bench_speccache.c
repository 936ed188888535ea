/* bench_speccache.c — SpecCache: what speculative prefetch saves a web agent.
 *
 *   build/benchmarks/bench_speccache [--model DIR] [--limit N] [--think-tokens T]
 *       [--median-ms M] [--sigma S] [--top-k K] [--budget-kb B] [--concurrency C]
 *       [--draft-weight W] [--seed X] [--data test.json] [--json OUT]
 *
 * Corpus: the real WebWalkerQA sites are not reachable from here, so one
 * site per root_url of the English rows is generated from the dataset
 * (benchmarks/lib/wwsite.c): each golden path's anchor texts become a chain of links
 * from the root page to a page holding the row's answer, every page also
 * links to 8-20 filler pages (anchors from other sites' golden paths and
 * site-section words), and bench_webenv serves it (public URL
 * scheme://host/path as /host/path) with FTS5 search.
 *
 * Agent: oracle navigation along the golden path (no model here can browse:
 * the shared models folder is empty), with a think time before each web
 * action of T real decode steps of --model (benchmarks/lib/wwagent.c).  Web latency
 * is lognormal, drawn per (question, URL) so all modes meet the same delay
 * for the same page; by default its median is the measured mean think time
 * of one action, i.e. the model thinks about as long as a page takes to load.
 *
 * Modes, on the same questions and latency seed: no prefetch; speculative
 * (cheap signals + draft model); cheap signals only; random.  Every
 * prefetching mode queues at most K new prefetches per think (speculative:
 * half at once from the cheap signals, the rest from the ranking with the
 * draft's scores once they arrive) from the same pool of candidates (the
 * task's search and start page, unopened search results, the current
 * page's links, links of prefetched pages not opened yet) under one byte
 * budget per question; random draws its K uniformly from that pool.
 * Questions run mode after mode, interleaved, so drift in machine speed
 * touches every mode alike. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cJSON.h>
#include "cache.h"
#include "tool.h"
#include "bench.h"

typedef struct args {
    const char *model, *data, *json;
    int limit, think_tokens, top_k, concurrency, budget_kb;
    double median_ms, sigma, draft_weight;
    int median_given;            /* else the median is the measured think time */
    unsigned long long seed;
} args;

static void usage(void) {
    fprintf(stderr, "usage: bench_speccache [--model DIR] [--limit N] [--think-tokens T] "
            "[--median-ms M] [--sigma S] [--top-k K] [--budget-kb B] [--concurrency C] "
            "[--draft-weight W] [--seed X] [--data test.json] [--json OUT]\n");
}

static int parse_args(int argc, char **argv, args *a) {
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) { usage(); exit(0); }
        if (!v) { fprintf(stderr, "%s needs a value\n", k); return -1; }
        char *end = NULL;
        double x = strtod(v, &end);
        int num = end && *end == 0;
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--data")) a->data = v;
        else if (!strcmp(k, "--json")) a->json = v;
        else if (!num) { fprintf(stderr, "%s: bad value %s\n", k, v); return -1; }
        else if (!strcmp(k, "--limit")) a->limit = (int)x;
        else if (!strcmp(k, "--think-tokens")) a->think_tokens = (int)x;
        else if (!strcmp(k, "--median-ms")) a->median_ms = x, a->median_given = 1;
        else if (!strcmp(k, "--sigma")) a->sigma = x;
        else if (!strcmp(k, "--top-k")) a->top_k = (int)x;
        else if (!strcmp(k, "--budget-kb")) a->budget_kb = (int)x;
        else if (!strcmp(k, "--concurrency")) a->concurrency = (int)x;
        else if (!strcmp(k, "--draft-weight")) a->draft_weight = x;
        else if (!strcmp(k, "--seed")) a->seed = (unsigned long long)x;
        else { fprintf(stderr, "unknown option %s\n", k); return -1; }
        i++;
    }
    if (a->think_tokens <= 0 || a->top_k <= 0 || a->concurrency <= 0 || a->budget_kb <= 0 ||
        a->median_ms < 0 || a->sigma < 0 || a->draft_weight < 0) {
        fprintf(stderr, "options must be positive\n");
        return -1;
    }
    return 0;
}

/* Entries in $BRISK_SHARED/models (-1: no such folder). */
static int shared_models(void) {
    const char *sh = getenv("BRISK_SHARED");
    char p[1024];
    snprintf(p, sizeof p, "%s/models", sh ? sh : "../shared");
    DIR *d = opendir(p);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

typedef struct totals {
    int questions, failed, actions, hits, joins, clicks, click_hits, same, correct;
    bench_ww_kind kind[BENCH_WW_N_ACTS];
    double wait_ms, think_ms, spec_ms, late_ms;
    long long issued, prefetch_bytes, unused_bytes;
} totals;

static void add(totals *t, const bench_ww_result *r) {
    t->questions++;
    t->actions += r->actions;
    t->hits += r->hits;
    t->joins += r->joins;
    t->clicks += r->clicks;
    t->click_hits += r->click_hits;
    t->correct += r->correct;
    t->wait_ms += r->wait_ms;
    t->think_ms += r->think_ms;
    t->spec_ms += r->spec_ms;
    t->late_ms += r->late_ms;
    t->issued += r->issued;
    t->prefetch_bytes += r->prefetch_bytes;
    t->unused_bytes += r->unused_bytes;
    for (int k = 0; k < BENCH_WW_N_ACTS; k++) {
        for (int h = 0; h < BENCH_WW_N_SERVED; h++) {
            t->kind[k].n[h] += r->kind[k].n[h];
            t->kind[k].wait_ms[h] += r->kind[k].wait_ms[h];
        }
        t->kind[k].miss_queued += r->kind[k].miss_queued;
    }
}

static int kind_n(const bench_ww_kind *k) { return k->n[BENCH_WW_HIT] + k->n[BENCH_WW_JOIN] + k->n[BENCH_WW_MISS]; }
static double kind_wait(const bench_ww_kind *k) {
    return k->wait_ms[BENCH_WW_HIT] + k->wait_ms[BENCH_WW_JOIN] + k->wait_ms[BENCH_WW_MISS];
}

static const char *const KINDS[BENCH_WW_N_ACTS] = {"search", "root", "click"};
static const char *const SERVED[BENCH_WW_N_SERVED] = {"hit", "join", "miss"};

static double hit_rate(const totals *t) { return t->actions ? (double)(t->hits + t->joins) / t->actions : 0; }
static double click_rate(const totals *t) { return t->clicks ? (double)t->click_hits / t->clicks : 0; }
static double per_q(double x, const totals *t) { return t->questions ? x / t->questions : 0; }

static cJSON *totals_json(const totals *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "questions", t->questions);
    cJSON_AddNumberToObject(o, "failed", t->failed);
    cJSON_AddNumberToObject(o, "actions", t->actions);
    cJSON_AddNumberToObject(o, "hits", t->hits);
    cJSON_AddNumberToObject(o, "joins", t->joins);
    cJSON_AddNumberToObject(o, "hit_rate", hit_rate(t));
    cJSON_AddNumberToObject(o, "clicks", t->clicks);
    cJSON_AddNumberToObject(o, "click_hit_rate", click_rate(t));
    cJSON_AddNumberToObject(o, "web_wait_total_ms", t->wait_ms);
    cJSON_AddNumberToObject(o, "web_wait_mean_ms_per_question", per_q(t->wait_ms, t));
    cJSON_AddNumberToObject(o, "think_mean_ms_per_question", per_q(t->think_ms, t));
    cJSON_AddNumberToObject(o, "think_plus_wait_mean_ms_per_question",
                            per_q(t->think_ms + t->wait_ms + t->late_ms, t));
    cJSON_AddNumberToObject(o, "speculator_mean_ms_per_question", per_q(t->spec_ms, t));
    cJSON_AddNumberToObject(o, "waited_for_speculator_mean_ms_per_question", per_q(t->late_ms, t));
    cJSON_AddNumberToObject(o, "prefetches_issued", (double)t->issued);
    cJSON_AddNumberToObject(o, "prefetched_bytes", (double)t->prefetch_bytes);
    cJSON_AddNumberToObject(o, "prefetched_unused_bytes", (double)t->unused_bytes);
    cJSON_AddNumberToObject(o, "answers_same_as_no_prefetch", t->same);
    cJSON_AddNumberToObject(o, "answers_holding_gold_answer", t->correct);
    cJSON *by = cJSON_AddObjectToObject(o, "by_action");
    for (int k = 0; k < BENCH_WW_N_ACTS; k++) {
        const bench_ww_kind *kd = &t->kind[k];
        cJSON *x = cJSON_AddObjectToObject(by, KINDS[k]);
        cJSON_AddNumberToObject(x, "actions", kind_n(kd));
        cJSON_AddNumberToObject(x, "web_wait_ms", kind_wait(kd));
        for (int h = 0; h < BENCH_WW_N_SERVED; h++) {
            cJSON *y = cJSON_AddObjectToObject(x, SERVED[h]);
            cJSON_AddNumberToObject(y, "actions", kd->n[h]);
            cJSON_AddNumberToObject(y, "web_wait_ms", kd->wait_ms[h]);
        }
        cJSON_AddNumberToObject(x, "misses_queued_not_started", kd->miss_queued);
    }
    return o;
}

enum { CALIBRATE = 9 };      /* questions timed for the default latency */

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The bars for one prefetching mode against no prefetch and
 * random; printed, and returned as JSON. */
static cJSON *print_bars(int mode, const totals *m, const totals *none, const totals *rnd,
                         const totals *rlinks) {
    double wait_ratio = m->wait_ms > 0 ? none->wait_ms / m->wait_ms : 0;
    double hit_ratio = hit_rate(rnd) > 0 ? hit_rate(m) / hit_rate(rnd) : 0;
    double click_ratio = click_rate(rnd) > 0 ? click_rate(m) / click_rate(rnd) : 0;
    double links_ratio = hit_rate(rlinks) > 0 ? hit_rate(m) / hit_rate(rlinks) : 0;
    int same_ok = m->same == m->questions && m->questions == none->questions && !m->failed;
    printf("\nbars (%s): web wait no-prefetch / %s = %.2fx (bar >= 2x: %s); hit rate %s / random = "
           "%.2fx (bar >= 5x: %s; clicks only %.2fx), / random links = %.2fx (%s); answers identical: "
           "%d/%d (%s)\n",
           bench_ww_mode_name(mode), bench_ww_mode_name(mode), wait_ratio, wait_ratio >= 2 ? "met" : "NOT met",
           bench_ww_mode_name(mode), hit_ratio, hit_ratio >= 5 ? "met" : "NOT met", click_ratio, links_ratio,
           links_ratio >= 5 ? "met" : "NOT met", m->same, m->questions, same_ok ? "met" : "NOT met");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "mode", bench_ww_mode_name(mode));
    cJSON_AddNumberToObject(o, "web_wait_none_over_mode", wait_ratio);
    cJSON_AddBoolToObject(o, "web_wait_2x_met", wait_ratio >= 2);
    cJSON_AddNumberToObject(o, "hit_rate_mode_over_random", hit_ratio);
    cJSON_AddNumberToObject(o, "click_hit_rate_mode_over_random", click_ratio);
    cJSON_AddBoolToObject(o, "hit_rate_5x_met", hit_ratio >= 5);
    cJSON_AddNumberToObject(o, "hit_rate_mode_over_random_links", links_ratio);
    cJSON_AddBoolToObject(o, "hit_rate_5x_over_random_links_met", links_ratio >= 5);
    cJSON_AddBoolToObject(o, "same_answers_met", same_ok);
    return o;
}

static const char SIGNALS[] =
    "the question's words (stop words dropped, stemmed) against each candidate's anchor text, "
    "search-result title and snippet, and URL path words, BM25-weighted with idf over the "
    "candidates; search-result rank; a link being a directory above an unopened search result; "
    "the task's site (root_url host: other hosts score x0.25); the agent's plan so far (pages "
    "opened are not candidates; the start page is opened after the search; links of prefetched "
    "pages are weighted by their page's score); spec mode adds the draft model's scores of the "
    "current page's anchors.  Never the golden path, the answer or the site builder's tables";
static const char THINK[] =
    "before each web action the main model reads the question and the page (title and link "
    "texts; nothing at the first action) and decodes think_tokens tokens, as without prefetch";

static const char CORPUS[] =
    "generated from WebWalkerQA's English rows (the real sites are not reachable from here): "
    "one site per root_url; each golden path's anchor texts form a chain of links from the root "
    "page to a page holding the row's answer (at the row's source_website URL when usable); "
    "every page also links to 8-20 filler pages whose anchors are other sites' golden anchors "
    "and site-section words; served by bench_webenv with FTS5 search, public "
    "scheme://host/path as /host/path";

int main(int argc, char **argv) {
    const char *sh = getenv("BRISK_SHARED");
    char data[1024];
    snprintf(data, sizeof data, "%s/data/webwalkerqa/test.json", sh ? sh : "../shared");
    args a = { .model = "tests/fixtures/tiny-qwen2", .data = data,
               .json = "benchmarks/results/speccache.json", .limit = 0, .think_tokens = 64,
               .top_k = 3, .concurrency = 4, .budget_kb = 64, .sigma = 0.6,
               .draft_weight = 1, .seed = 1 };
    if (parse_args(argc, argv, &a)) { usage(); return 2; }

    eng_err err = {0};
    bench_ww_row *rows = NULL;
    int n_rows = 0;
    if (bench_ww_load(a.data, "en", &rows, &n_rows, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int nq = a.limit > 0 && a.limit < n_rows ? a.limit : n_rows;

    char tmp[] = "/tmp/bench_speccache-XXXXXX";
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    char db[1100];
    snprintf(db, sizeof db, "%s/sites.db", tmp);
    bench_wwsite *site = NULL;
    bench_wwsite_opts so = { .seed = a.seed };
    bench_webenv *web = NULL;
    bench_webenv_opts wo = { .db_path = db, .latency_median_ms = -1, .seed = a.seed };
    eng_model *m = NULL;
    eng_engine *think = NULL;
    cache_draft *draft = NULL;
    int rc = bench_wwsite_build(db, rows, n_rows, &so, &site, &err);
    if (!rc) rc = bench_webenv_start(&wo, &web, &err);
    if (!rc) rc = eng_model_load_blocks(a.model, &m, &err);
    if (!rc) {
        int pos = eng_model_config(m)->max_pos;
        int need = (384 + a.think_tokens + 8) < pos ? 384 + a.think_tokens + 8 : pos;
        eng_opts eo = { .n_threads = 1, .max_seqs = 2, .n_blocks = need / 16 + 4 };
        rc = eng_create(m, &eo, &think, &err);
    }
    cache_draft_opts dopts = { .n_threads = 1 };
    if (!rc) rc = cache_draft_create(m, &dopts, &draft, &err);
    if (rc) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    bench_ww_env env = { site, bench_webenv_url(web), think, draft, tmp };
    bench_ww_opts base = { .think_tokens = a.think_tokens, .sigma = a.sigma, .seed = a.seed,
                           .top_k = a.top_k, .max_concurrent = a.concurrency,
                           .byte_budget = (int64_t)a.budget_kb << 10, .draft_weight = a.draft_weight };

    /* Default latency: the think time of one action, measured on the first
     * questions without prefetch or latency (the median over questions of
     * their mean, so a burst of load on the machine moves it less). */
    int calibrated = !a.median_given;
    if (calibrated) {
        double per[CALIBRATE];
        int m = 0;
        for (int i = 0; i < CALIBRATE && i < n_rows; i++) {
            bench_ww_opts o = base;
            o.mode = BENCH_WW_NONE;
            o.median_ms = 0;
            bench_ww_result r;
            if (bench_ww_episode(&env, &o, &rows[i], &r, &err) == ENG_OK && r.actions)
                per[m++] = r.think_ms / r.actions;
            bench_ww_result_clear(&r);
        }
        qsort(per, (size_t)m, sizeof *per, cmp_double);
        a.median_ms = m ? per[m / 2] : 400;
    }
    base.median_ms = a.median_ms;
    int models = shared_models();
    printf("SpecCache benchmark: %d of %d English WebWalkerQA rows, %d pages in %s\n", nq, n_rows,
           bench_wwsite_n_pages(site), db);
    printf("corpus: %s\n", CORPUS);
    printf("agent: oracle navigation along the golden path (no model here can browse: shared "
           "models folder %s); think = %d decode steps of %s before each web action\n",
           models < 0 ? "missing" : models == 0 ? "empty" : "not empty, unused", a.think_tokens, a.model);
    printf("think: %s\nspeculator signals: %s\n", THINK, SIGNALS);
    printf("latency: lognormal per (question, URL), median %.2f ms%s, sigma %.2f; top-k %d, "
           "%d concurrent, budget %d KiB per question, draft weight %.2f\n\n", a.median_ms,
           calibrated ? " (= measured think time per action)" : "", a.sigma, a.top_k,
           a.concurrency, a.budget_kb, a.draft_weight);

    totals t[BENCH_WW_N_MODES] = {0};
    char **answers = calloc((size_t)nq, sizeof *answers);
    double t0 = eng_now_s();
    for (int q = 0; q < nq && answers; q++) {
        for (int mode = 0; mode < BENCH_WW_N_MODES; mode++) {
            bench_ww_opts o = base;
            o.mode = mode;
            bench_ww_result r;
            if (bench_ww_episode(&env, &o, &rows[q], &r, &err) != ENG_OK) {
                fprintf(stderr, "row %d (%s): %s\n", rows[q].index, bench_ww_mode_name(mode), err.msg);
                t[mode].failed++;
                bench_ww_result_clear(&r);
                continue;
            }
            add(&t[mode], &r);
            if (mode == BENCH_WW_NONE) answers[q] = strdup(r.answer);
            else if (answers[q] && !strcmp(answers[q], r.answer)) t[mode].same++;
            bench_ww_result_clear(&r);
        }
        t[BENCH_WW_NONE].same += answers[q] != NULL;
    }
    double wall = eng_now_s() - t0;

    printf("%-7s %7s %7s %7s %10s %10s %9s %9s %8s %9s %9s %6s %7s\n", "mode", "actions",
           "hit%", "click%", "wait_ms", "wait/q_ms", "think/q", "spec/q", "late/q", "pf_KiB",
           "unusedKiB", "same", "correct");
    for (int i = 0; i < BENCH_WW_N_MODES; i++) {
        const totals *x = &t[i];
        printf("%-7s %7d %6.1f%% %6.1f%% %10.1f %10.2f %9.2f %9.2f %8.2f %9.1f %9.1f %3d/%-3d %3d\n",
               bench_ww_mode_name(i), x->actions, 100 * hit_rate(x), 100 * click_rate(x), x->wait_ms,
               per_q(x->wait_ms, x), per_q(x->think_ms, x), per_q(x->spec_ms, x), per_q(x->late_ms, x),
               x->prefetch_bytes / 1024.0, x->unused_bytes / 1024.0, x->same, x->questions, x->correct);
    }
    printf("\nby action: served how / actions, web wait ms (mean per action); misses of queued keys\n");
    printf("%-7s %-7s %20s %20s %20s %8s %10s\n", "mode", "action", "hit", "join", "miss", "queued", "wait_ms");
    for (int i = 0; i < BENCH_WW_N_MODES; i++) {
        for (int k = 0; k < BENCH_WW_N_ACTS; k++) {
            const bench_ww_kind *kd = &t[i].kind[k];
            printf("%-7s %-7s", bench_ww_mode_name(i), KINDS[k]);
            for (int h = 0; h < BENCH_WW_N_SERVED; h++) {
                char cell[64];
                snprintf(cell, sizeof cell, "%d/%d %.0f (%.1f)", kd->n[h], kind_n(kd), kd->wait_ms[h],
                         kd->n[h] ? kd->wait_ms[h] / kd->n[h] : 0.0);
                printf(" %20s", cell);
            }
            printf(" %8d %10.0f\n", kd->miss_queued, kind_wait(kd));
        }
    }
    const totals *none = &t[BENCH_WW_NONE], *rnd = &t[BENCH_WW_RANDOM];
    cJSON *bars[2] = {0};
    for (int b = 0; b < 2; b++)
        bars[b] = print_bars(b ? BENCH_WW_CHEAP : BENCH_WW_SPEC, &t[b ? BENCH_WW_CHEAP : BENCH_WW_SPEC], none, rnd,
                             &t[BENCH_WW_RANDOM_LINKS]);
    printf("(random's hit rate of %.1f%% caps any hit-rate ratio at %.2fx: the task's search and start "
           "page are in every pool)\n", 100 * hit_rate(rnd), hit_rate(rnd) > 0 ? 1 / hit_rate(rnd) : 0.0);
    printf("wall %.1f s (hit%% = (hits + joins) / web actions; click%% the same over link clicks; "
           "late = waited for the speculator after the think)\n", wall);

    cJSON *out = cJSON_CreateObject(), *cfg = cJSON_AddObjectToObject(out, "config");
    cJSON_AddStringToObject(cfg, "model", a.model);
    cJSON_AddNumberToObject(cfg, "questions", nq);
    cJSON_AddNumberToObject(cfg, "english_rows", n_rows);
    cJSON_AddNumberToObject(cfg, "pages", bench_wwsite_n_pages(site));
    cJSON_AddNumberToObject(cfg, "think_tokens", a.think_tokens);
    cJSON_AddNumberToObject(cfg, "latency_median_ms", a.median_ms);
    cJSON_AddBoolToObject(cfg, "latency_median_is_measured_think_time", calibrated);
    cJSON_AddNumberToObject(cfg, "latency_sigma", a.sigma);
    cJSON_AddNumberToObject(cfg, "top_k", a.top_k);
    cJSON_AddNumberToObject(cfg, "concurrency", a.concurrency);
    cJSON_AddNumberToObject(cfg, "byte_budget_per_question", (double)base.byte_budget);
    cJSON_AddNumberToObject(cfg, "draft_weight", a.draft_weight);
    cJSON_AddNumberToObject(cfg, "seed", (double)a.seed);
    cJSON_AddStringToObject(cfg, "corpus", CORPUS);
    cJSON_AddStringToObject(cfg, "think", THINK);
    cJSON_AddStringToObject(cfg, "speculator_signals", SIGNALS);
    cJSON_AddStringToObject(cfg, "random", "top_k per think drawn uniformly from the speculator's "
                            "candidate pool, same byte budget");
    cJSON_AddStringToObject(cfg, "random_links", "top_k per think drawn uniformly from the current "
                            "page's unopened links (no predicted search, start page or lookahead), "
                            "same byte budget");
    char agent[256];
    snprintf(agent, sizeof agent, "oracle navigation along the golden path: no model here can "
             "browse (shared models folder %s); think time = real decode steps of the model",
             models < 0 ? "missing" : models == 0 ? "empty" : "not empty, unused");
    cJSON_AddStringToObject(cfg, "agent", agent);
    cJSON *modes = cJSON_AddObjectToObject(out, "modes");
    for (int i = 0; i < BENCH_WW_N_MODES; i++)
        cJSON_AddItemToObject(modes, bench_ww_mode_name(i), totals_json(&t[i]));
    cJSON_AddItemToObject(out, "bars", bars[0]);
    cJSON_AddItemToObject(out, "bars_cheap", bars[1]);
    cJSON_AddNumberToObject(out, "hit_rate_ratio_ceiling", hit_rate(rnd) > 0 ? 1 / hit_rate(rnd) : 0);
    cJSON_AddNumberToObject(out, "wall_s", wall);
    bench_write_json(a.json, out);
    cJSON_Delete(out);

    for (int q = 0; answers && q < nq; q++) free(answers[q]);
    free(answers);
    cache_draft_destroy(draft);
    eng_destroy(think);
    eng_model_free(m);
    bench_webenv_stop(web);
    bench_wwsite_free(site);
    bench_ww_rows_free(rows, n_rows);
    unlink(db);
    rmdir(tmp);
    return 0;
}
