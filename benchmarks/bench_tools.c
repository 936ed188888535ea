/* bench_tools.c — end-to-end latency of tool-using requests with and without
 * partial execution (tools starting while the call is still being decoded).
 *
 * The model's output is scripted (teacher forcing: the model runs every
 * step, so prefill and decode times are real, but the text is fixed), so
 * every mode sees the same calls and the outputs can be compared.  Tools are
 * real: fetch_url and web_search over HTTP against the local web
 * environment, whose per-request latency is lognormal (median 400 ms, sigma
 * 0.6 by default).
 *
 * Workloads: "multi-call" (a short preamble and four fetch_url calls in one
 * turn, then a one-line answer) and "search+fetch" (search, then open the
 * hit, then answer).  Modes: tools start at the end of the turn one after
 * another (turn_serial, a plain agent loop), at the end of the turn all at
 * once (turn_end), at the end of each call (call_end), or as soon as the
 * call's url/query is decoded (partial execution).
 *
 * Fairness: each request runs in every mode back to back (the order rotates
 * per request), and before each run the web environment's latency draws
 * restart from the request's seed, so every mode meets the same latencies.
 * Bounded: a per-request timeout stops a run and reports it, and a time
 * budget stops starting requests once the next one would not fit.
 *
 * The tiny fixture declares a 1024-token context, too short for four pages
 * in its 1K-token vocabulary; run it from a copy that declares 8192 (same
 * weights), as tests/test_agent.c does:
 *   mkdir -p /tmp/tiny8k && for f in model.safetensors tokenizer.json \
 *     generation_config.json; do ln -sf $PWD/tests/fixtures/tiny-qwen2/$f /tmp/tiny8k/; done &&
 *   sed 's/"max_position_embeddings": *1024/"max_position_embeddings": 8192/' \
 *     tests/fixtures/tiny-qwen2/config.json > /tmp/tiny8k/config.json
 *   build/benchmarks/bench_tools --model /tmp/tiny8k --out benchmarks/results/tools_cpu_tiny-qwen2.json */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "orc.h"
#include "bench.h"

enum { N_MODES = 4, N_WORK = 2, WORK_MULTI = 0, WORK_SEARCH = 1, SCRIPT_CAP = 2048, MULTI_CALLS = 4 };
static const char *mode_name[N_MODES] = { "partial", "call_end", "turn_end", "turn_serial" };
static const char *work_name[N_WORK] = { "multi-call", "search+fetch" };

typedef struct bench {
    const char *model_dir, *device, *workloads;
    char out[512];
    int requests, cuda, result_bytes, warmup;
    double median_ms, sigma, timeout_s, budget_s, t_begin;
    unsigned long long seed;
    eng_model *m;
    eng_engine *e;
    bench_webenv *web;
    tool_registry *reg;
    char db[64];
} bench;

/* One request in one mode. */
typedef struct outcome {
    int ok, timed_out;          /* ok: answered with finish "stop", no error */
    double wall_ms;             /* completion latency: submit to the final answer */
    double prefill_ms;          /* tool turns: input queued to first token */
    double decode_ms;           /* tool turns: first token to end-of-turn token */
    double wait_ms;             /* paused waiting for tool results */
    double answer_ms;           /* final turn: results queued to end of answer */
    int tool_tokens, result_tokens, early;
    char *results, *answer;     /* tool results concatenated, final text */
    char error[600];
} outcome;

typedef struct run_rec { cJSON *msgs; int done; } run_rec;

static void rec_emit(void *ud, cJSON *m) {
    run_rec *r = ud;
    const cJSON *type = cJSON_GetObjectItem(m, "type");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "token")) { cJSON_Delete(m); return; }
    r->done |= cJSON_IsString(type) && !strcmp(type->valuestring, "stats");
    cJSON_AddItemToArray(r->msgs, m);
}

static const char *jstr(const cJSON *m, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(m, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *m, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(m, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* Script of request r of a workload: turn texts in bufs, pointers in sc. */
static int make_script(int work, int r, const char *base, char bufs[3][SCRIPT_CAP], const char *sc[3]) {
    char name[128];
    int page = 3 + r * 5;
    bench_corpus_page_name(11, page, name, sizeof name);
    if (work == WORK_SEARCH) {
        snprintf(bufs[0], SCRIPT_CAP, "I should look this up first.\n<tool_call>\n{\"name\": \"web_search\", "
                 "\"arguments\": {\"query\": \"%s\"}}\n</tool_call><|im_end|>", name);
        snprintf(bufs[1], SCRIPT_CAP, "The first result looks right; let me open it.\n<tool_call>\n{\"name\": "
                 "\"fetch_url\", \"arguments\": {\"url\": \"%s/page/%d\"}}\n</tool_call><|im_end|>", base, page);
        snprintf(bufs[2], SCRIPT_CAP, "%s is described on that page.<|im_end|>", name);
        for (int i = 0; i < 3; i++) sc[i] = bufs[i];
        return 3;
    }
    int k = snprintf(bufs[0], SCRIPT_CAP, "I will open the four related pages at once.\n");
    for (int i = 0; i < MULTI_CALLS; i++)
        k += snprintf(bufs[0] + k, SCRIPT_CAP - (size_t)k, "<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": "
                      "{\"url\": \"%s/page/%d\"}}\n</tool_call>\n", base, page + i);
    snprintf(bufs[0] + k, SCRIPT_CAP - (size_t)k, "<|im_end|>");
    snprintf(bufs[1], SCRIPT_CAP, "All four pages are read; here is the summary.<|im_end|>");
    sc[0] = bufs[0];
    sc[1] = bufs[1];
    return 2;
}

/* Appends s to the malloc'd string *acc (left as is when out of memory). */
static void append(char **acc, const char *s) {
    size_t a = *acc ? strlen(*acc) : 0, n = strlen(s);
    char *p = realloc(*acc, a + n + 1);
    if (!p) return;
    memcpy(p + a, s, n + 1);
    *acc = p;
}

/* Fills o from the messages of a finished run. */
static void read_messages(const cJSON *msgs, outcome *o) {
    const cJSON *m, *stats = NULL;
    const char *finish = "";
    cJSON_ArrayForEach(m, msgs) {
        const char *type = jstr(m, "type");
        if (!strcmp(type, "error") && !o->error[0]) snprintf(o->error, sizeof o->error, "%s", jstr(m, "message"));
        if (!strcmp(type, "answer")) { free(o->answer); o->answer = strdup(jstr(m, "text")); finish = jstr(m, "finish"); }
        if (!strcmp(type, "tool_result")) {
            append(&o->results, jstr(m, "result"));
            o->early += cJSON_IsTrue(cJSON_GetObjectItem(m, "early"));
        }
        if (!strcmp(type, "stats")) stats = m;
    }
    if (strcmp(finish, "stop") && !o->error[0])
        snprintf(o->error, sizeof o->error, "finish \"%s\"%s", finish, !strcmp(finish, "length") ?
                 ": the turn did not end (is <|im_end|> the model's end-of-turn token?)" : "");
    o->ok = !o->error[0] && stats;
    const cJSON *log = stats ? cJSON_GetObjectItem(stats, "turn_log") : NULL;
    int n = cJSON_GetArraySize(log);
    for (int i = 0; i < n; i++) {   /* every turn but the last called tools */
        const cJSON *t = cJSON_GetArrayItem(log, i);
        if (i == n - 1) { o->answer_ms = jnum(t, "end_ms"); break; }
        o->prefill_ms += jnum(t, "first_ms");
        o->decode_ms += jnum(t, "end_ms") - jnum(t, "first_ms");
        o->wait_ms += jnum(t, "wait_ms");
        o->tool_tokens += (int)jnum(t, "tokens");
        o->result_tokens += (int)jnum(t, "result_tokens");
    }
}

/* Runs one request to its end or its timeout. */
static void run_one(bench *b, const char *const *sc, int n_sc, int mode, outcome *o) {
    memset(o, 0, sizeof *o);
    run_rec rr = { cJSON_CreateArray(), 0 };
    eng_err err = { 0 };
    orc_sched *s = NULL;
    orc_query q = { .prompt = "Find out about the pages.", .max_tokens = 2000 };
    snprintf(q.id, sizeof q.id, "r");
    orc_agent_opts ao = { .tools = b->reg, .tool_start = mode, .script = sc, .n_script = n_sc };
    orc_sink sink = { &rr, rec_emit, NULL, NULL };
    orc_task *t = NULL;
    double t0 = eng_now_s();
    if (!rr.msgs || orc_sched_create(b->e, 2, &s, &err) ||
        orc_task_agent_create(&q, b->m, sink, &ao, &t, &err) || orc_sched_submit(s, t, &err)) {
        snprintf(o->error, sizeof o->error, "%s", err.msg[0] ? err.msg : "out of memory");
        orc_sched_destroy(s);
        cJSON_Delete(rr.msgs);
        return;
    }
    while (!rr.done) {
        if (!o->timed_out && eng_now_s() - t0 > b->timeout_s) {
            o->timed_out = 1;               /* the task reports its end at once */
            orc_sched_stop(s, "r", NULL, "timeout");
            continue;
        }
        int rc = orc_sched_step(s, &err);
        if (rc < 0) { snprintf(o->error, sizeof o->error, "%s", err.msg); break; }
        if (rc == 0) usleep(200);
    }
    o->wall_ms = (eng_now_s() - t0) * 1e3;
    orc_sched_destroy(s);
    read_messages(rr.msgs, o);
    if (o->timed_out) {
        snprintf(o->error, sizeof o->error, "timed out after %.1f s", b->timeout_s);
        o->ok = 0;
    }
    cJSON_Delete(rr.msgs);
}

static void outcome_clear(outcome *o) {
    free(o->results);
    free(o->answer);
    memset(o, 0, sizeof *o);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Summary of one mode over the requests that completed in every mode. */
typedef struct summary {
    int n, ok, same, timeouts, early;
    double mean, p50, p90, prefill, decode, wait, answer, tool_tokens, result_tokens, ms_per_token;
} summary;

static summary summarise(outcome *o, const outcome *ref, int n) {
    summary s = { .n = n };
    double *w = calloc((size_t)n + 1, sizeof *w);
    if (!w || !n) { free(w); return s; }
    double tok_ms = 0;
    int tok_n = 0;
    for (int r = 0; r < n; r++) {
        w[r] = o[r].wall_ms;
        s.mean += o[r].wall_ms / n;
        s.prefill += o[r].prefill_ms / n;
        s.decode += o[r].decode_ms / n;
        s.wait += o[r].wait_ms / n;
        s.answer += o[r].answer_ms / n;
        s.tool_tokens += (double)o[r].tool_tokens / n;
        s.result_tokens += (double)o[r].result_tokens / n;
        s.ok += o[r].ok;
        s.timeouts += o[r].timed_out;
        s.early += o[r].early;
        s.same += o[r].ok && ref[r].ok && o[r].results && ref[r].results && o[r].answer && ref[r].answer &&
                  !strcmp(o[r].results, ref[r].results) && !strcmp(o[r].answer, ref[r].answer);
        if (o[r].tool_tokens > 1) { tok_ms += o[r].decode_ms; tok_n += o[r].tool_tokens - 1; }
    }
    qsort(w, (size_t)n, sizeof *w, cmp_d);
    s.p50 = w[n / 2];
    s.p90 = w[(int)(0.9 * (n - 1) + 0.5)];
    s.ms_per_token = tok_n ? tok_ms / tok_n : 0;
    free(w);
    return s;
}

static cJSON *summary_json(const summary *s, int work, int mode) {
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "workload", work_name[work]);
    cJSON_AddStringToObject(row, "mode", mode_name[mode]);
    cJSON_AddNumberToObject(row, "requests", s->n);
    cJSON_AddNumberToObject(row, "completed", s->ok);
    cJSON_AddNumberToObject(row, "timeouts", s->timeouts);
    cJSON_AddNumberToObject(row, "same_output", s->same);
    cJSON_AddNumberToObject(row, "calls_started_early", s->early);
    cJSON_AddNumberToObject(row, "mean_ms", s->mean);
    cJSON_AddNumberToObject(row, "p50_ms", s->p50);
    cJSON_AddNumberToObject(row, "p90_ms", s->p90);
    cJSON_AddNumberToObject(row, "tool_turn_prefill_ms", s->prefill);
    cJSON_AddNumberToObject(row, "tool_turn_decode_ms", s->decode);
    cJSON_AddNumberToObject(row, "tool_wait_ms", s->wait);
    cJSON_AddNumberToObject(row, "answer_turn_ms", s->answer);
    cJSON_AddNumberToObject(row, "tool_turn_tokens", s->tool_tokens);
    cJSON_AddNumberToObject(row, "result_tokens", s->result_tokens);
    cJSON_AddNumberToObject(row, "decode_ms_per_token", s->ms_per_token);
    return row;
}

static int usage(void) {
    fprintf(stderr,
            "usage: bench_tools [--model DIR] [--cuda] [--device NAME] [--requests N] [--workloads multi|search|both]\n"
            "                   [--result-bytes N] [--timeout-s S] [--budget-s S] [--median-ms MS] [--sigma S]\n"
            "                   [--seed N] [--out FILE]\n");
    return 2;
}

static int parse_args(bench *b, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--cuda")) { b->cuda = 1; continue; }
        if (!v) { fprintf(stderr, "bench_tools: %s needs a value\n", a); return -1; }
        i++;
        if (!strcmp(a, "--model")) b->model_dir = v;
        else if (!strcmp(a, "--device")) b->device = v;
        else if (!strcmp(a, "--requests")) b->requests = atoi(v);
        else if (!strcmp(a, "--workloads")) b->workloads = v;
        else if (!strcmp(a, "--result-bytes")) b->result_bytes = atoi(v);
        else if (!strcmp(a, "--timeout-s")) b->timeout_s = atof(v);
        else if (!strcmp(a, "--budget-s")) b->budget_s = atof(v);
        else if (!strcmp(a, "--median-ms")) b->median_ms = atof(v);
        else if (!strcmp(a, "--sigma")) b->sigma = atof(v);
        else if (!strcmp(a, "--seed")) b->seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--out")) snprintf(b->out, sizeof b->out, "%s", v);
        else { fprintf(stderr, "bench_tools: unknown option %s\n", a); return -1; }
    }
    if (b->requests < 1 || b->requests > 1000 || b->result_bytes < 1 || b->timeout_s <= 0 ||
        (strcmp(b->workloads, "multi") && strcmp(b->workloads, "search") && strcmp(b->workloads, "both"))) {
        fprintf(stderr, "bench_tools: bad value (requests 1..1000, result-bytes >= 1, timeout-s > 0)\n");
        return -1;
    }
    if (!b->device) b->device = b->cuda ? "cuda" : "cpu";
    if (!b->out[0]) {   /* benchmarks/results/tools_<device>_<model directory name>.json */
        const char *name = b->model_dir, *p;
        size_t len = strlen(name);
        while (len > 1 && name[len - 1] == '/') len--;
        for (p = name + len; p > name && p[-1] != '/'; p--) {}
        snprintf(b->out, sizeof b->out, "benchmarks/results/tools_%s_%.*s.json", b->device,
                 (int)(name + len - p), p);
    }
    return 0;
}

/* Model, engine, corpus, web environment and tools. */
static int setup(bench *b, eng_err *err) {
    if (eng_model_load_blocks(b->model_dir, &b->m, err)) return -1;
    /* one sequence at a time; KV room for its whole context, at most 16K tokens */
    int ctx = eng_model_config(b->m)->max_pos;
    eng_opts eo = { .max_seqs = 1, .n_blocks = (ctx < 16384 ? ctx : 16384) / 16 + 1,
                    .backend = b->cuda ? ENG_BACKEND_CUDA : ENG_BACKEND_CPU };
    if (eng_create(b->m, &eo, &b->e, err)) return -1;
    snprintf(b->db, sizeof b->db, "/tmp/brisk_bench_tools_%d.db", (int)getpid());
    if (bench_corpus_generate(b->db, 200, 11, err)) return -1;
    bench_webenv_opts wo = { .db_path = b->db, .latency_median_ms = b->median_ms,
                            .latency_sigma = b->sigma, .seed = b->seed };
    if (bench_webenv_start(&wo, &b->web, err)) return -1;
    char endpoint[128];   /* the tool keeps a copy */
    snprintf(endpoint, sizeof endpoint, "%s/search", bench_webenv_url(b->web));
    b->reg = tool_registry_create();
    if (!b->reg) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    tool_fetch_opts fo = { .max_text = (size_t)b->result_bytes, .max_links = 3,
                          .allow_private = 1 };   /* the web environment is on loopback */
    tool_search_opts so = { .endpoint = endpoint, .k = 3 };
    if (tool_register_fetch_url(b->reg, &fo, err) || tool_register_web_search(b->reg, &so, err)) return -1;
    return 0;
}

static void teardown(bench *b) {
    tool_registry_destroy(b->reg);
    if (b->web) bench_webenv_stop(b->web);
    if (b->db[0]) unlink(b->db);
    eng_destroy(b->e);
    eng_model_free(b->m);
}

/* Runs up to b->requests requests of a workload in every mode; returns how
 * many ran in all modes before the time budget ran out. */
static int run_workload(bench *b, int work, outcome *res[N_MODES]) {
    double round_s = 0;
    for (int r = 0; r < b->requests; r++) {
        double now = eng_now_s();
        if (b->budget_s > 0 && now + round_s - b->t_begin > b->budget_s) {
            printf("%s: time budget (%.0f s) reached after %d of %d requests\n", work_name[work],
                   b->budget_s, r, b->requests);
            return r;
        }
        char bufs[3][SCRIPT_CAP];
        const char *sc[3];
        int n_sc = make_script(work, r, bench_webenv_url(b->web), bufs, sc);
        for (int i = 0; i < N_MODES; i++) {
            int mode = (r + i) % N_MODES;
            bench_webenv_reseed(b->web, b->seed * 1000003ull + (unsigned long long)(work * 1000 + r));
            outcome *o = &res[mode][r];
            run_one(b, sc, n_sc, mode, o);
            if (o->error[0]) fprintf(stderr, "bench_tools: %s request %d, %s: %s\n", work_name[work], r,
                                     mode_name[mode], o->error);
        }
        round_s = eng_now_s() - now;
    }
    return b->requests;
}

/* Columns (means in ms over the requests): completion latency mean/p50/p90;
 * tool turns' prefill (input queued to first token), decode (first token to
 * end of turn) and tool wait; the answer turn (results prefill + answer);
 * tool-turn tokens and result tokens fed back; decode ms per token; calls
 * started before their call ended; completed / same outputs as partial / n. */
static void print_header(void) {
    printf("%-12s %-11s %8s %8s %8s %8s %8s %8s %8s %6s %6s %5s %5s %s\n", "workload", "mode", "mean_ms", "p50_ms",
           "p90_ms", "prefill", "decode", "wait", "answer", "tokens", "result", "ms/t", "early", "done/same/n");
}

static void print_row(const summary *s, int work, int mode) {
    printf("%-12s %-11s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %6.0f %6.0f %5.2f %5d %d/%d/%d%s\n", work_name[work],
           mode_name[mode], s->mean, s->p50, s->p90, s->prefill, s->decode, s->wait, s->answer, s->tool_tokens,
           s->result_tokens, s->ms_per_token, s->early, s->ok, s->same, s->n, s->timeouts ? " TIMEOUTS" : "");
}

/* What partial execution can be expected to save against turn_end, by Monte
 * Carlo of a model of the multi-call turn: k calls close evenly over decode_ms of
 * decoding (the last at its end), latencies lognormal(median, sigma), every
 * call of the turn concurrent in both modes, other_ms (prefill + answer)
 * the same in both.  turn_end = D + max L; partial = max(c_i + L_i).  Since
 * the last call always starts at the end, the saving is below
 * E[max L] - E[L_k] whatever the decode time; best_ms gets the decode time
 * that maximises the bound and *best its value. */
static double bound_at(double median, double sigma, int k, double D, double other_ms) {
    enum { DRAWS = 100000 };
    uint64_t x = 0x9E3779B97F4A7C15ull;   /* same draws at every D */
    double te = 0, pa = 0;
    for (int n = 0; n < DRAWS; n++) {
        double mx = 0, mp = 0;
        for (int i = 0; i < k; i++) {
            double u[2];
            for (int j = 0; j < 2; j++) u[j] = eng_rng_uniform(&x) + 0x1.0p-54;   /* in (0, 1) */
            double L = median * exp(sigma * sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
            double c = D * (i + 1) / k;
            if (L > mx) mx = L;
            if (c + L > mp) mp = c + L;
        }
        te += D + mx;
        pa += mp;
    }
    return (te - pa) / (te + other_ms * DRAWS);
}

static double partial_bound(double median, double sigma, int k, double decode_ms, double other_ms,
                            double *best, double *best_ms) {
    *best = 0;
    *best_ms = 0;
    for (double D = 50; D <= 8000; D *= 1.25) {
        double v = bound_at(median, sigma, k, D, other_ms);
        if (v > *best) { *best = v; *best_ms = D; }
    }
    return bound_at(median, sigma, k, decode_ms, other_ms);
}

/* Summaries, the table, reductions; returns 1 when every request of every
 * mode completed with the same outputs as in partial mode. */
static int report(int work, outcome *res[N_MODES], int n, double median_ms, double sigma, cJSON *json) {
    summary s[N_MODES];
    int good = 1;
    if (n == 0) {
        printf("%-12s not run (time budget)\n", work_name[work]);
        return 1;
    }
    cJSON *rows = cJSON_GetObjectItem(json, "rows");
    for (int mode = 0; mode < N_MODES; mode++) {
        s[mode] = summarise(res[mode], res[ORC_TOOLS_PARTIAL], n);
        print_row(&s[mode], work, mode);
        cJSON_AddItemToArray(rows, summary_json(&s[mode], work, mode));
        good &= s[mode].ok == n && s[mode].same == n;
    }
    for (int mode = ORC_TOOLS_CALL_END; mode < N_MODES; mode++) {
        double red = 1 - s[ORC_TOOLS_PARTIAL].mean / s[mode].mean;
        printf("  %s: mean completion latency, partial vs %-11s: %5.1f%% reduction (%.0f ms; tool wait %.0f -> %.0f ms)\n",
               work_name[work], mode_name[mode], red * 100, s[mode].mean - s[ORC_TOOLS_PARTIAL].mean, s[mode].wait,
               s[ORC_TOOLS_PARTIAL].wait);
        char key[96];
        snprintf(key, sizeof key, "%s_reduction_vs_%s", work_name[work], mode_name[mode]);
        cJSON_AddNumberToObject(json, key, red);
    }
    if (work == WORK_MULTI) {
        const summary *te = &s[ORC_TOOLS_TURN_END];
        double best, best_ms;
        double at = partial_bound(median_ms, sigma, MULTI_CALLS, te->decode, te->prefill + te->answer,
                                  &best, &best_ms);
        printf("  multi-call: expected reduction vs turn_end in a model of the turn (%d calls closing evenly over\n"
               "    its %.0f ms of decode, these latencies): %.1f%%; at any decode time at most %.1f%% (at %.0f ms)\n",
               MULTI_CALLS, te->decode, 100 * at, 100 * best, best_ms);
        cJSON_AddNumberToObject(json, "multi-call_bound_vs_turn_end", at);
        cJSON_AddNumberToObject(json, "multi-call_bound_vs_turn_end_any_decode", best);
        cJSON_AddNumberToObject(json, "multi-call_bound_best_decode_ms", best_ms);
    }
    return good;
}

int main(int argc, char **argv) {
    bench b = { .model_dir = "tests/fixtures/tiny-qwen2", .workloads = "both", .requests = 6,
                .result_bytes = 400, .median_ms = 400, .sigma = 0.6, .timeout_s = 60, .seed = 5 };
    b.t_begin = eng_now_s();
    if (parse_args(&b, argc, argv)) return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);   /* progress shows when piped */
    eng_err err = { 0 };
    if (setup(&b, &err)) {
        fprintf(stderr, "bench_tools: %s\n", err.msg);
        teardown(&b);
        return 1;
    }
    printf("model %s on %s (%s), loaded in %.1f s; web latency lognormal median %.0f ms sigma %.2f;\n"
           "fetched pages cut at %d bytes of text + 3 links; timeout %.0f s per request, budget %.0f s\n",
           b.model_dir, b.cuda ? "CUDA" : "CPU", b.device, eng_now_s() - b.t_begin, b.median_ms, b.sigma,
           b.result_bytes, b.timeout_s, b.budget_s);
    {   /* warm-up (not counted): first-use costs of the backend and the tools */
        char bufs[3][SCRIPT_CAP];
        const char *sc[3];
        outcome o;
        int n_sc = make_script(WORK_MULTI, 99, bench_webenv_url(b.web), bufs, sc);
        run_one(&b, sc, n_sc, ORC_TOOLS_PARTIAL, &o);
        if (o.error[0]) fprintf(stderr, "bench_tools: warm-up: %s\n", o.error);
        outcome_clear(&o);
    }
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "model", b.model_dir);
    cJSON_AddStringToObject(json, "device", b.device);
    cJSON_AddStringToObject(json, "backend", b.cuda ? "cuda" : "cpu");
    cJSON_AddNumberToObject(json, "latency_median_ms", b.median_ms);
    cJSON_AddNumberToObject(json, "latency_sigma", b.sigma);
    cJSON_AddNumberToObject(json, "result_bytes", b.result_bytes);
    cJSON_AddArrayToObject(json, "rows");
    print_header();
    int all_good = 1;
    for (int work = 0; work < N_WORK; work++) {
        if (!strcmp(b.workloads, work == WORK_MULTI ? "search" : "multi")) continue;
        outcome *res[N_MODES];
        int ok = 1;
        for (int mode = 0; mode < N_MODES; mode++) ok &= !!(res[mode] = calloc((size_t)b.requests, sizeof(outcome)));
        int n = ok ? run_workload(&b, work, res) : 0;
        all_good &= report(work, res, n, b.median_ms, b.sigma, json);
        for (int mode = 0; mode < N_MODES; mode++) {
            for (int r = 0; res[mode] && r < b.requests; r++) outcome_clear(&res[mode][r]);
            free(res[mode]);
        }
    }
    printf("every request completed in every mode with the same tool results and answer: %s\n",
           all_good ? "yes" : "NO");
    printf("total %.1f s\n", eng_now_s() - b.t_begin);
    cJSON_AddBoolToObject(json, "same_outputs", all_good);
    char *s = cJSON_Print(json);
    FILE *f = fopen(b.out, "w");
    if (f && s) { fputs(s, f); printf("wrote %s\n", b.out); }
    else fprintf(stderr, "bench_tools: cannot write %s\n", b.out);
    if (f) fclose(f);
    free(s);
    cJSON_Delete(json);
    teardown(&b);
    return all_good ? 0 : 1;
}
