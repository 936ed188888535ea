/* math500.c — `brisk bench math500`: accuracy against latency of the
 * test-time-scaling configurations on MATH-500, driven through the scheduler
 * exactly as the server drives queries (one query at a time, so latencies
 * are those of an otherwise idle engine).
 *
 * Configurations: greedy; n samples one after another (sequential TTS,
 * majority vote); n samples in one batch (parallel); parallel with
 * speculation ("n/a" until the engine speculates); parallel with
 * certainty-based early stopping; and the planner's choice at each latency
 * budget.  Sequential sample i uses the same seed as parallel branch i, so
 * the two give the same answers and differ only in time. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "orc_tts.h"
#include "orc_math.h"
#include "bench.h"

#define MAX_CONFIGS 32

typedef struct problem { char *text, *gold, *id; } problem;

/* One query's outcome. */
typedef struct outcome {
    char *answer;
    int correct, early, prompt_tokens;
    double latency_s, mean_lp;
    long long tokens;          /* decoded: branches + probes */
    long long branch_tokens;
    long long spec_steps, spec_accepted;
} outcome;

typedef struct config {
    char name[48];
    const char *kind;          /* greedy, sequential, parallel, spec, early, planner */
    int n, k, available;       /* k: draft depth, 0 = no speculation */
    int probing;               /* early stopping on */
    const char *note;
    double budget_s;
    orc_plan plan;
    outcome *res;              /* [n_problems] */
    double acc, mean_s, p90_s;
    long long tokens, spec_steps, spec_accepted;
    int correct, early;
} config;

typedef struct bench {
    const bench_math500_opts *o;
    problem *pb;
    int n_pb;
    eng_model *m;
    eng_engine *e;
    orc_sched *s;
    int max_seqs, n_blocks;
    orc_lat_model lat;
    eng_model *draft;          /* --draft: a small model for speculation */
    eng_spec_opts spec;        /* the drafter every speculative run uses */
    char spec_why[600];        /* empty when the engine speculates */
    double accept;             /* measured acceptance, < 0 before the spec run */
    config cf[MAX_CONFIGS];
    int n_cf;
} bench;

/* ------------------------------------------------------------- options */
void bench_math500_usage(void) {
    fprintf(stderr,
        "usage: brisk bench math500 --model DIR [--data FILE] [--limit K] [--max-tokens N]\n"
        "         " ENG_OPTS_USAGE " [--threads N] [--out FILE.json] [--n 4,8,16] [--budgets 2,5,10]\n"
        "         [--temperature T] [--top-p P] [--seed S] [--probe-every T] [--probe-tokens N]\n"
        "         [--min-rounds M] [--agree F] [--entropy H] [--stable K] [--p1 P] [--r R]\n"
        "         [--spec-k K] [--spec-kmax K] [--draft DIR] [--accept A] [--spec-cost C]\n"
        "         [--calib-batch B] [--kv-blocks N] [--kv f32|bf16] [--quiet]\n");
}

/* Comma-separated numbers into v (at most cap); returns the count or -1. */
static int parse_list(const char *s, double *v, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        double x = strtod(s, &end);
        if (end == s || errno || n == cap) return -1;
        v[n++] = x;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

static int num_arg(const char *k, const char *v, double lo, double hi, int integer, double *out,
                   eng_err *err) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= hi) || (integer && x != floor(x)))
        return eng_seterr(err, ENG_EINVAL, "%s must be %s in [%g, %g] (got '%s')", k,
                          integer ? "an integer" : "a number", lo, hi, v);
    *out = x;
    return ENG_OK;
}

static void default_opts(bench_math500_opts *o) {
    memset(o, 0, sizeof *o);
    o->data = "../shared/data/math500/test.jsonl";
    o->out = "results/math500.json";   /* results/ is ignored by git; --out to keep a run */
    o->max_tokens = 1024;
    o->ns[0] = 4; o->ns[1] = 8; o->ns[2] = 16;
    o->n_ns = 3;
    o->budgets[0] = 2; o->budgets[1] = 5; o->budgets[2] = 10;
    o->n_budgets = 3;
    o->temperature = 0.7f;
    o->top_p = 0.95f;
    o->seed = 1;
    orc_tts_default_opts(&o->early);
    o->early.probe_every = 32;
    o->early.stable_k = 3;
    o->acc.p1 = 0.5;   /* the curve's, if --p1 or --r asks for one; else the */
    o->acc.r = 0.8;    /* parallel runs' measured accuracies (plan_inputs) */
    o->accept = 0.7;
    o->spec_cost = -1;
    o->calib_max_batch = 64;
    o->spec_k = 4;
    o->spec_kmax = 8;
}

/* Options that take a number, with their bounds; set_num stores them. */
static const struct { const char *name; double lo, hi; int integer; } NUMS[] = {
    { "--limit", 0, 1e6, 1 },         { "--max-tokens", 1, 1 << 20, 1 }, { "--threads", 0, 1024, 1 },
    { "--temperature", 0, 5, 0 },     { "--top-p", 0, 1, 0 },            { "--seed", 0, 9007199254740991.0, 1 },
    { "--probe-every", 0, 1e6, 1 },   { "--probe-tokens", 1, 256, 1 },   { "--min-rounds", 0, 1e6, 1 },
    { "--agree", 0, 1, 0 },           { "--entropy", -1, 100, 0 },       { "--stable", 0, 1e6, 1 },
    { "--p1", 0, 1, 0 },              { "--r", 0, 1, 0 },                { "--accept", 0, 1, 0 },
    { "--spec-cost", -1, 100, 0 },    { "--calib-batch", 1, 256, 1 },    { "--kv-blocks", 0, 1 << 30, 1 },
    { "--spec-k", 0, ENG_SPEC_KMAX, 1 }, { "--spec-kmax", 0, ENG_SPEC_KMAX, 1 },
};

static int set_num(bench_math500_opts *o, const char *k, const char *v, eng_err *err) {
    int i = 0, n = (int)(sizeof NUMS / sizeof *NUMS);
    while (i < n && strcmp(k, NUMS[i].name)) i++;
    if (i == n) return eng_seterr(err, ENG_EINVAL, "unknown option %s", k);
    double x = 0;
    int rc = num_arg(k, v, NUMS[i].lo, NUMS[i].hi, NUMS[i].integer, &x, err);
    if (rc) return rc;
    switch (i) {
    case 0:  o->limit = (int)x; break;
    case 1:  o->max_tokens = (int)x; break;
    case 2:  o->threads = (int)x; break;
    case 3:  o->temperature = (float)x; break;
    case 4:  o->top_p = (float)x; break;
    case 5:  o->seed = (uint64_t)x; break;
    case 6:  o->early.probe_every = (int)x; break;
    case 7:  o->early.probe_tokens = (int)x; break;
    case 8:  o->early.min_rounds = (int)x; break;
    case 9:  o->early.stop_agree = x; break;
    case 10: o->early.stop_entropy = x; break;
    case 11: o->early.stable_k = (int)x; break;
    case 12: o->acc.p1 = x; o->acc.kind = ORC_ACC_CURVE; break;
    case 13: o->acc.r = x; o->acc.kind = ORC_ACC_CURVE; break;
    case 14: o->accept = x; break;
    case 15: o->spec_cost = x; break;
    case 16: o->calib_max_batch = (int)x; break;
    case 17: o->kv_blocks = (int)x; break;
    case 18: o->spec_k = (int)x; break;
    default: o->spec_kmax = (int)x; break;
    }
    return ENG_OK;
}

static int set_lists(bench_math500_opts *o, const char *k, const char *v, eng_err *err) {
    double x[8];
    int n = parse_list(v, x, 8);
    if (!strcmp(k, "--n")) {
        if (n < 1) return eng_seterr(err, ENG_EINVAL, "--n takes 1 to 8 branch counts, e.g. 4,8,16");
        for (int i = 0; i < n; i++) {
            if (!(x[i] >= 1 && x[i] <= ORC_TTS_MAX_N))
                return eng_seterr(err, ENG_EINVAL, "branch counts must be from 1 to %d", ORC_TTS_MAX_N);
            o->ns[i] = (int)x[i];
        }
        o->n_ns = n;
        return ENG_OK;
    }
    if (n < 0) return eng_seterr(err, ENG_EINVAL, "--budgets takes up to 8 numbers, e.g. 2,5,10");
    for (int i = 0; i < n; i++) {
        if (!(x[i] > 0)) return eng_seterr(err, ENG_EINVAL, "budgets must be positive");
        o->budgets[i] = x[i];
    }
    o->n_budgets = n;
    return ENG_OK;
}

int bench_math500_parse(int argc, char **argv, bench_math500_opts *o, eng_err *err) {
    default_opts(o);
    int rc = ENG_OK;
    if (argc < 2 || strcmp(argv[1], "math500"))
        rc = eng_seterr(err, ENG_EINVAL, "the only benchmark is math500");
    for (int i = 2; i < argc && !rc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 0;
        if ((rc = eng_opts_arg(k, v, &o->eng, &used, err))) break;
        if (used) { i += used - 1; continue; }
        if (!strcmp(k, "--quiet")) { o->quiet = 1; continue; }
        if (!v) { rc = eng_seterr(err, ENG_EINVAL, "%s needs a value", k); break; }
        i++;
        if (!strcmp(k, "--model")) o->model = v;
        else if (!strcmp(k, "--data")) o->data = v;
        else if (!strcmp(k, "--out")) o->out = v;
        else if (!strcmp(k, "--draft")) o->draft = v;
        else if (!strcmp(k, "--n") || !strcmp(k, "--budgets")) rc = set_lists(o, k, v, err);
        else rc = set_num(o, k, v, err);
    }
    if (!rc && !o->model) rc = eng_seterr(err, ENG_EINVAL, "--model DIR is required");
    return rc;
}

/* ------------------------------------------------------------- problems */
static void free_problems(problem *p, int n) {
    for (int i = 0; i < n; i++) { free(p[i].text); free(p[i].gold); free(p[i].id); }
    free(p);
}

static int add_problem(const cJSON *row, int line, problem **pb, int *n, int *cap, eng_err *err) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(row, "problem");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(row, "answer");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(row, "unique_id");
    if (!cJSON_IsString(q) || !cJSON_IsString(a))
        return eng_seterr(err, ENG_EFORMAT, "line %d needs string fields problem and answer", line);
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        problem *p = realloc(*pb, (size_t)nc * sizeof *p);
        if (!p) return eng_seterr(err, ENG_ENOMEM, "out of memory");
        *pb = p;
        *cap = nc;
    }
    problem *p = &(*pb)[*n];
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "line-%d", line);
    p->text = strdup(q->valuestring);
    p->gold = strdup(a->valuestring);
    p->id = strdup(cJSON_IsString(id) ? id->valuestring : idbuf);
    (*n)++;
    if (!p->text || !p->gold || !p->id) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    return ENG_OK;
}

static int load_problems(const char *path, int limit, problem **out, int *n_out, eng_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return eng_seterr(err, ENG_EIO, "cannot open %s", path);
    problem *pb = NULL;
    int n = 0, cap = 0, line = 0, rc = ENG_OK;
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t len;
    while (!rc && (limit <= 0 || n < limit) && (len = getline(&buf, &bcap, f)) >= 0) {
        line++;
        if (len == 0 || buf[0] == '\n') continue;
        cJSON *row = cJSON_ParseWithLength(buf, (size_t)len);
        if (!row) rc = eng_seterr(err, ENG_EFORMAT, "%s line %d is not JSON", path, line);
        else rc = add_problem(row, line, &pb, &n, &cap, err);
        cJSON_Delete(row);
    }
    free(buf);
    fclose(f);
    if (!rc && !n) rc = eng_seterr(err, ENG_EFORMAT, "%s holds no problems", path);
    if (rc) { free_problems(pb, n); return rc; }
    *out = pb;
    *n_out = n;
    return ENG_OK;
}

/* ------------------------------------------------------------ one query */
/* Runs one reason query to its end and fills r (answer, time, tokens). */
static int run_query(bench *B, const problem *p, int n, const eng_sampling *samp,
                     const orc_tts_opts *base, outcome *r, eng_err *err) {
    orc_query q = { .max_tokens = B->o->max_tokens, .samp = *samp };
    snprintf(q.id, sizeof q.id, "%.60s", p->id);
    q.prompt = p->text;
    orc_tts_opts o = *base;
    o.n = n;
    o.stream = 0;
    bench_collect c;
    orc_sink sink = bench_collect_sink(&c);
    orc_task *t = NULL;
    int rc = orc_task_reason_create(&q, B->m, sink, &o, &t, err);
    if (!rc) rc = bench_run_task(B->s, t, &c, NULL, err);
    memset(r, 0, sizeof *r);
    if (!rc && c.error) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c.error, "message");
        fprintf(stderr, "bench: %s: %s\n", p->id, cJSON_IsString(msg) ? msg->valuestring : "error");
    }
    if (!rc && c.answer && c.stats) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(c.answer, "answer");
        const cJSON *best = cJSON_GetObjectItemCaseSensitive(c.answer, "best");
        const cJSON *es = cJSON_GetObjectItemCaseSensitive(c.answer, "early_stop");
        if (cJSON_IsString(a)) r->answer = strdup(a->valuestring);
        r->early = cJSON_IsTrue(es);
        r->mean_lp = bench_num(best, "mean_logprob");
        r->latency_s = bench_num(c.stats, "wall_ms") / 1e3;
        r->tokens = (long long)bench_num(c.stats, "decoded_tokens");
        r->branch_tokens = (long long)bench_num(c.stats, "tokens");
        r->prompt_tokens = (int)bench_num(c.stats, "prompt_tokens");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(c.stats, "spec");
        r->spec_steps = (long long)bench_num(sp, "steps");
        r->spec_accepted = (long long)bench_num(sp, "accepted");
        r->correct = r->answer && orc_math_equiv_gold(p->gold, r->answer);
    }
    bench_collect_clear(&c);
    return rc;
}

/* ---------------------------------------------------------- configurations */
static eng_sampling sampling(const bench *B) {
    return (eng_sampling){ .temperature = B->o->temperature, .top_p = B->o->top_p, .seed = B->o->seed };
}

static config *new_config(bench *B, const char *kind, int n, eng_err *err) {
    if (B->n_cf == MAX_CONFIGS) { eng_seterr(err, ENG_EINVAL, "too many configurations"); return NULL; }
    config *c = &B->cf[B->n_cf];
    memset(c, 0, sizeof *c);
    c->res = calloc((size_t)B->n_pb, sizeof *c->res);
    if (!c->res) { eng_seterr(err, ENG_ENOMEM, "out of memory"); return NULL; }
    B->n_cf++;
    c->kind = kind;
    c->n = n;
    c->available = 1;
    return c;
}

/* n single-branch queries one after another, then a vote. */
static int run_sequential(bench *B, const problem *p, int n, outcome *r, eng_err *err) {
    outcome *one = calloc((size_t)n, sizeof *one);
    orc_tts_cand *cand = calloc((size_t)n, sizeof *cand);
    int rc = one && cand ? ENG_OK : eng_seterr(err, ENG_ENOMEM, "out of memory");
    eng_sampling s = sampling(B);
    orc_tts_opts o;
    orc_tts_default_opts(&o);
    memset(r, 0, sizeof *r);
    for (int i = 0; i < n && !rc; i++) {
        s.seed = orc_tts_branch_seed(B->o->seed, i);
        rc = run_query(B, p, 1, &s, &o, &one[i], err);
        r->latency_s += one[i].latency_s;
        r->tokens += one[i].tokens;
        cand[i] = (orc_tts_cand){ one[i].answer, one[i].mean_lp * (double)one[i].branch_tokens,
                                  (int)one[i].branch_tokens };
    }
    int v = rc ? -1 : orc_tts_vote(cand, n, NULL);
    if (v >= 0) {
        r->answer = strdup(one[v].answer);
        r->correct = r->answer && orc_math_equiv_gold(p->gold, r->answer);
    }
    for (int i = 0; one && i < n; i++) free(one[i].answer);
    free(one);
    free(cand);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarise(bench *B, config *c) {
    double *lat = malloc((size_t)B->n_pb * sizeof *lat), sum = 0;
    for (int i = 0; i < B->n_pb; i++) {
        c->correct += c->res[i].correct;
        c->early += c->res[i].early;
        c->tokens += c->res[i].tokens;
        c->spec_steps += c->res[i].spec_steps;
        c->spec_accepted += c->res[i].spec_accepted;
        sum += c->res[i].latency_s;
        if (lat) lat[i] = c->res[i].latency_s;
    }
    c->acc = (double)c->correct / B->n_pb;
    c->mean_s = sum / B->n_pb;
    if (lat) {
        qsort(lat, (size_t)B->n_pb, sizeof *lat, cmp_double);
        int k = (int)((9 * B->n_pb + 9) / 10) - 1;   /* nearest rank */
        c->p90_s = lat[k < 0 ? 0 : k];
    }
    free(lat);
}

static int run_config(bench *B, config *c, eng_err *err) {
    if (!B->o->quiet) fprintf(stderr, "bench: %s ...\n", c->name);
    orc_tts_opts o;
    orc_tts_default_opts(&o);
    if (c->probing) o = B->o->early;
    eng_spec_opts sp = B->spec;
    sp.k = c->k;
    if (c->k > 0) o.spec = &sp;
    for (int i = 0; i < B->n_pb; i++) {
        int rc;
        eng_sampling s = sampling(B);
        if (!strcmp(c->kind, "greedy")) s.temperature = 0;
        if (!strcmp(c->kind, "sequential")) rc = run_sequential(B, &B->pb[i], c->n, &c->res[i], err);
        else rc = run_query(B, &B->pb[i], c->n, &s, &o, &c->res[i], err);
        if (rc) return rc;
    }
    summarise(B, c);
    return ENG_OK;
}

static int max_n(const bench_math500_opts *o) {
    int m = 1;
    for (int i = 0; i < o->n_ns; i++) if (o->ns[i] > m) m = o->ns[i];
    return m;
}

/* The planner's accuracy model: the curve given with --p1 / --r, else the
 * vote accuracies the parallel configurations of this run measured. */
static orc_acc_model acc_model(const bench *B) {
    orc_acc_model m = B->o->acc;
    if (m.kind != ORC_ACC_NONE) return m;
    for (int i = 0; i < B->n_cf && m.n_table < ORC_PLAN_MAX_POINTS; i++) {
        const config *c = &B->cf[i];
        if (strcmp(c->kind, "parallel") || !c->available) continue;
        m.table_n[m.n_table] = c->n;
        m.table_acc[m.n_table++] = c->acc;
    }
    if (m.n_table) m.kind = ORC_ACC_TABLE;
    return m;
}

/* The planner's inputs from the calibration and the greedy run. */
static void plan_inputs(const bench *B, orc_plan_in *in) {
    memset(in, 0, sizeof *in);
    in->lat = B->lat;
    in->acc = acc_model(B);
    in->accept = B->accept >= 0 ? B->accept : B->o->accept;
    in->spec_cost = B->o->spec_cost;
    in->k_max = B->spec_why[0] ? 0 : B->o->spec_kmax;
    double len = 0, prompt = 0;
    for (int i = 0; i < B->n_pb; i++) {
        len += (double)B->cf[0].res[i].branch_tokens;
        prompt += B->cf[0].res[i].prompt_tokens;
    }
    in->length = len / B->n_pb > 1 ? len / B->n_pb : 1;
    in->prompt_tokens = (int)(prompt / B->n_pb + 0.5);
    in->n_max = B->max_seqs / 2 < ORC_TTS_MAX_N ? B->max_seqs / 2 : ORC_TTS_MAX_N;
    orc_plan_kv(in, B->e);   /* the engine is idle between configurations */
}

static void name_config(config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void name_config(config *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->name, sizeof c->name, fmt, ap);
    va_end(ap);
}

/* A parallel configuration of n branches: k drafts (0: none), probing or not. */
static int run_parallel(bench *B, const char *kind, int n, int k, int probing, eng_err *err) {
    config *c = new_config(B, kind, n, err);
    if (!c) return err->code;
    name_config(c, "par-%d%s%s", n, k ? "+spec" : "", probing ? "+early" : "");
    c->k = k;
    c->probing = probing;
    if (k && B->spec_why[0]) {
        c->available = 0;
        c->note = B->spec_why;
        return ENG_OK;
    }
    int rc = run_config(B, c, err);
    if (!rc && k && c->spec_steps > 0 && B->accept < 0)   /* what the planner assumes */
        B->accept = orc_spec_accept_from_mean((double)c->spec_accepted / c->spec_steps, k);
    return rc;
}

static int run_all(bench *B, eng_err *err) {
    const bench_math500_opts *o = B->o;
    int rc = ENG_OK, nmax = max_n(o);
    config *c = new_config(B, "greedy", 1, err);
    if (!c) return err->code;
    name_config(c, "greedy");
    if ((rc = run_config(B, c, err))) return rc;
    for (int i = 0; i < o->n_ns; i++) {
        if (!(c = new_config(B, "sequential", o->ns[i], err))) return err->code;
        name_config(c, "seq-%d", o->ns[i]);
        if ((rc = run_config(B, c, err))) return rc;
    }
    for (int i = 0; i < o->n_ns && !rc; i++) rc = run_parallel(B, "parallel", o->ns[i], 0, 0, err);
    if (!rc) rc = run_parallel(B, "spec", nmax, o->spec_k, 0, err);
    if (!rc) rc = run_parallel(B, "early", nmax, 0, 1, err);
    if (!rc) rc = run_parallel(B, "spec+early", nmax, o->spec_k, 1, err);
    if (rc) return rc;
    orc_plan_in in;
    plan_inputs(B, &in);
    for (int i = 0; i < o->n_budgets; i++) {
        in.budget_s = o->budgets[i];
        orc_plan p;
        if ((rc = orc_plan_choose(&in, &p, err))) return rc;
        if (!(c = new_config(B, "planner", p.n, err))) return err->code;
        name_config(c, "plan-%gs", o->budgets[i]);
        c->k = p.k;
        c->budget_s = o->budgets[i];
        c->plan = p;
        if (!p.feasible) c->note = "over budget even at n=1";
        if ((rc = run_config(B, c, err))) return rc;
    }
    return ENG_OK;
}

/* --------------------------------------------------------------- output */
static void print_table(const bench *B) {
    printf("%-16s %4s %3s %8s %10s %10s %12s %6s  %s\n", "config", "n", "k", "acc", "mean s",
           "p90 s", "tokens", "early", "note");
    for (int i = 0; i < B->n_cf; i++) {
        const config *c = &B->cf[i];
        if (!c->available) {
            printf("%-16s %4d %3d %8s %10s %10s %12s %6s  %s\n", c->name, c->n, c->k, "n/a", "n/a",
                   "n/a", "n/a", "", c->note ? c->note : "");
            continue;
        }
        char note[160] = "";
        if (c->spec_steps > 0)
            snprintf(note, sizeof note, "%.2f drafts kept per verify; ",
                     (double)c->spec_accepted / c->spec_steps);
        size_t u = strlen(note);
        if (c->budget_s > 0 && isnan(c->plan.accuracy))
            snprintf(note + u, sizeof note - u, "predicted %.2f s, no accuracy model%s",
                     c->plan.latency_s, c->note ? " (over budget)" : "");
        else if (c->budget_s > 0)
            snprintf(note + u, sizeof note - u, "predicted %.2f s, expected acc %.3f%s", c->plan.latency_s,
                     c->plan.accuracy, c->note ? " (over budget)" : "");
        printf("%-16s %4d %3d %8.3f %10.3f %10.3f %12lld %6d  %s\n", c->name, c->n, c->k, c->acc,
               c->mean_s, c->p90_s, c->tokens, c->early, note);
    }
}

static cJSON *config_json(const bench *B, const config *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", c->name);
    cJSON_AddStringToObject(j, "kind", c->kind);
    cJSON_AddNumberToObject(j, "n", c->n);
    cJSON_AddNumberToObject(j, "k", c->k);
    cJSON_AddStringToObject(j, "status", c->available ? "ok" : "n/a");
    if (c->note) cJSON_AddStringToObject(j, "note", c->note);
    if (!c->available) return j;
    cJSON_AddNumberToObject(j, "accuracy", c->acc);
    cJSON_AddNumberToObject(j, "correct", c->correct);
    cJSON_AddNumberToObject(j, "problems", B->n_pb);
    cJSON_AddNumberToObject(j, "mean_latency_s", c->mean_s);
    cJSON_AddNumberToObject(j, "p90_latency_s", c->p90_s);
    cJSON_AddNumberToObject(j, "tokens", (double)c->tokens);
    cJSON_AddNumberToObject(j, "early_stops", c->early);
    if (c->spec_steps > 0) {
        cJSON_AddNumberToObject(j, "spec_verify_steps", (double)c->spec_steps);
        cJSON_AddNumberToObject(j, "spec_accepted", (double)c->spec_accepted);
    }
    if (c->budget_s > 0) {
        cJSON_AddNumberToObject(j, "budget_s", c->budget_s);
        cJSON_AddNumberToObject(j, "predicted_latency_s", c->plan.latency_s);
        if (isnan(c->plan.accuracy)) cJSON_AddNullToObject(j, "expected_accuracy");
        else cJSON_AddNumberToObject(j, "expected_accuracy", c->plan.accuracy);
        cJSON_AddBoolToObject(j, "feasible", c->plan.feasible);
    }
    cJSON *arr = cJSON_AddArrayToObject(j, "per_problem");
    for (int i = 0; i < B->n_pb; i++) {
        const outcome *r = &c->res[i];
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "id", B->pb[i].id);
        if (r->answer) cJSON_AddStringToObject(p, "answer", r->answer);
        else cJSON_AddNullToObject(p, "answer");
        cJSON_AddBoolToObject(p, "correct", r->correct);
        cJSON_AddNumberToObject(p, "latency_s", r->latency_s);
        cJSON_AddNumberToObject(p, "tokens", (double)r->tokens);
        cJSON_AddItemToArray(arr, p);
    }
    return j;
}

static cJSON *calibration_json(const orc_lat_model *m) {
    cJSON *j = cJSON_CreateObject(), *b = cJSON_AddArrayToObject(j, "batch");
    cJSON *t = cJSON_AddArrayToObject(j, "step_ms");
    for (int i = 0; i < m->n_points; i++) {
        cJSON_AddItemToArray(b, cJSON_CreateNumber(m->batch[i]));
        cJSON_AddItemToArray(t, cJSON_CreateNumber(m->step_s[i] * 1e3));
    }
    cJSON_AddNumberToObject(j, "line_ms_a", m->a * 1e3);
    cJSON_AddNumberToObject(j, "line_ms_per_seq", m->b * 1e3);
    cJSON_AddNumberToObject(j, "prefill_ms_per_token", m->prefill_s * 1e3);
    cJSON_AddNumberToObject(j, "context_tokens", m->ctx0);
    cJSON_AddNumberToObject(j, "ms_per_seq_per_context_token", m->ctx_s * 1e3);
    return j;
}

/* Creates the folders above path (like mkdir -p of its dirname). */
static void make_parents(const char *path) {
    char d[1024];
    if (snprintf(d, sizeof d, "%s", path) >= (int)sizeof d) return;
    for (char *p = d + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(d, 0755);   /* EEXIST is fine; a real failure shows when the file is opened */
        *p = '/';
    }
}

static int write_json(const bench *B, eng_err *err) {
    const bench_math500_opts *o = B->o;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "benchmark", "math500");
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "data", o->data);
    cJSON_AddStringToObject(j, "backend", o->eng.backend == ENG_BACKEND_CUDA ? "cuda" : "cpu");
    cJSON_AddNumberToObject(j, "tp", o->eng.tp > 1 ? o->eng.tp : 1);
    cJSON_AddNumberToObject(j, "problems", B->n_pb);
    cJSON_AddNumberToObject(j, "max_tokens", o->max_tokens);
    cJSON_AddNumberToObject(j, "temperature", o->temperature);
    cJSON_AddNumberToObject(j, "top_p", o->top_p);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON *es = cJSON_AddObjectToObject(j, "early_stop");
    cJSON_AddNumberToObject(es, "probe_every", o->early.probe_every);
    cJSON_AddNumberToObject(es, "probe_tokens", o->early.probe_tokens);
    cJSON_AddNumberToObject(es, "min_rounds", o->early.min_rounds);
    cJSON_AddNumberToObject(es, "agree", o->early.stop_agree);
    cJSON_AddNumberToObject(es, "entropy", o->early.stop_entropy);
    cJSON_AddNumberToObject(es, "stable_k", o->early.stable_k);
    cJSON_AddItemToObject(j, "calibration", calibration_json(&B->lat));
    orc_plan_in in;
    plan_inputs(B, &in);
    cJSON *pl = cJSON_AddObjectToObject(j, "planner");
    cJSON_AddNumberToObject(pl, "length", in.length);
    cJSON_AddNumberToObject(pl, "prompt_tokens", in.prompt_tokens);
    if (in.acc.kind == ORC_ACC_CURVE) {
        cJSON_AddStringToObject(pl, "accuracy_model", "curve (--p1, --r)");
        cJSON_AddNumberToObject(pl, "p1", in.acc.p1);
        cJSON_AddNumberToObject(pl, "r", in.acc.r);
    } else if (in.acc.kind == ORC_ACC_TABLE) {
        cJSON_AddStringToObject(pl, "accuracy_model", "measured (the parallel configurations)");
        cJSON *tn = cJSON_AddArrayToObject(pl, "accuracy_n"), *ta = cJSON_AddArrayToObject(pl, "accuracy");
        for (int i = 0; i < in.acc.n_table; i++) {
            cJSON_AddItemToArray(tn, cJSON_CreateNumber(in.acc.table_n[i]));
            cJSON_AddItemToArray(ta, cJSON_CreateNumber(in.acc.table_acc[i]));
        }
    } else {
        cJSON_AddStringToObject(pl, "accuracy_model", "none");
    }
    cJSON_AddNumberToObject(pl, "kv_free_blocks", in.kv_free_blocks);
    cJSON_AddNumberToObject(pl, "accept", in.accept);
    cJSON_AddBoolToObject(pl, "accept_measured", B->accept >= 0);
    cJSON_AddNumberToObject(pl, "spec_cost", in.spec_cost);
    cJSON_AddNumberToObject(pl, "k_max", in.k_max);
    cJSON_AddNumberToObject(pl, "n_max", in.n_max);
    cJSON_AddStringToObject(j, "drafter", B->spec_why[0] ? "none" : B->draft ? "draft model" : "n-gram");
    cJSON *arr = cJSON_AddArrayToObject(j, "configs");
    for (int i = 0; i < B->n_cf; i++) cJSON_AddItemToArray(arr, config_json(B, &B->cf[i]));
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    make_parents(o->out);
    FILE *f = s ? fopen(o->out, "w") : NULL;
    int rc = ENG_OK;
    if (!s) rc = eng_seterr(err, ENG_ENOMEM, "out of memory writing JSON");
    else if (!f) rc = eng_seterr(err, ENG_EIO, "cannot write %s", o->out);
    else {
        fputs(s, f);
        fputc('\n', f);
        if (fclose(f)) rc = eng_seterr(err, ENG_EIO, "error writing %s", o->out);
    }
    free(s);
    return rc;
}

static int write_svg(const bench *B, eng_err *err) {
    char path[1024];
    const char *out = B->o->out, *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - out) : strlen(out);
    if (stem + 5 > sizeof path) return eng_seterr(err, ENG_EINVAL, "output path too long");
    memcpy(path, out, stem);
    strcpy(path + stem, ".svg");
    bench_svg_point pts[MAX_CONFIGS];
    int n = 0;
    for (int i = 0; i < B->n_cf; i++)
        if (B->cf[i].available)
            pts[n++] = (bench_svg_point){ B->cf[i].mean_s, B->cf[i].acc, B->cf[i].name };
    return bench_svg_scatter(path, "MATH-500: accuracy vs latency", "mean latency per problem (s)",
                           "accuracy", pts, n, err);
}

/* ------------------------------------------------------------------ run */
/* Engine sized for the widest run: nmax branches plus as many probes, or
 * the calibration's batch, each with a full context. */
static int open_engine(bench *B, eng_err *err) {
    const bench_math500_opts *o = B->o;
    int rc = eng_model_load_blocks(o->model, &B->m, err);
    if (rc) return rc;
    const eng_config *c = eng_model_config(B->m);
    int width = 2 * max_n(o);
    if (width < o->calib_max_batch) width = o->calib_max_batch;
    if (width < 2 * ORC_TTS_MAX_N) width = 2 * ORC_TTS_MAX_N;   /* the planner may pick up to 64 */
    int ctx = o->max_tokens + 1024 < c->max_pos ? o->max_tokens + 1024 : c->max_pos;
    B->max_seqs = width + 2;
    B->n_blocks = o->kv_blocks > 0 ? o->kv_blocks
                : B->max_seqs / 2 * ((ctx + 15) / 16) + (ctx + 15) / 16 * 2 + 64;
    eng_opts eo = o->eng;
    eo.n_threads = o->threads;
    eo.block_size = 16;
    eo.n_blocks = B->n_blocks;
    eo.max_seqs = B->max_seqs;
    if ((rc = eng_create(B->m, &eo, &B->e, err))) return rc;
    return orc_sched_create(B->e, 4, &B->s, err);
}

/* The drafter (a draft model with --draft, else n-grams of the text so
 * far) and whether the engine takes it; a refusal marks the speculative
 * configurations n/a with the reason. */
static int setup_spec(bench *B, eng_err *err) {
    const bench_math500_opts *o = B->o;
    B->accept = -1;
    B->spec = (eng_spec_opts){ .mode = ENG_SPEC_NGRAM };
    if (o->draft) {
        int rc = eng_model_load_blocks(o->draft, &B->draft, err);
        if (rc) return rc;
        B->spec.mode = ENG_SPEC_DRAFT;
        B->spec.draft_model = B->draft;
    }
    if (o->spec_k <= 0) {
        snprintf(B->spec_why, sizeof B->spec_why, "n/a: speculation off (--spec-k 0)");
        return ENG_OK;
    }
    int one = 0, seq = -1;
    eng_err e2 = { 0 };
    eng_spec_opts t = B->spec;
    t.k = o->spec_k;
    int rc = eng_seq_add(B->e, &one, 1, NULL, &seq, &e2);
    if (!rc) rc = eng_seq_spec_set(B->e, seq, &t, &e2);
    if (seq >= 0) eng_seq_remove(B->e, seq);
    if (rc) snprintf(B->spec_why, sizeof B->spec_why, "n/a: %s", e2.msg);
    return ENG_OK;
}

static int calibrate(bench *B, eng_err *err) {
    orc_query q = { .n_messages = 2 };
    eng_chat_msg msgs[2] = { { .role = "system", .content = ORC_TTS_MATH_SYSTEM },
                             { .role = "user", .content = B->pb[0].text } };
    q.messages = msgs;
    int *ids = NULL, n = 0;
    int rc = orc_encode_query(&q, B->m, &ids, &n, err);
    if (rc) return rc;
    int room = eng_model_config(B->m)->max_pos - 16;
    if (n > room) n = room > 1 ? room : 1;
    eng_sampling s = sampling(B);
    rc = orc_lat_calibrate(B->e, ids, n, B->o->calib_max_batch, 4, &s, &B->lat, err);
    free(ids);
    return rc;
}

int bench_math500_run(const bench_math500_opts *o, eng_err *err) {
    bench B = { .o = o };
    int rc = load_problems(o->data, o->limit, &B.pb, &B.n_pb, err);
    if (!rc) rc = open_engine(&B, err);
    if (!rc) rc = setup_spec(&B, err);
    if (!rc) rc = calibrate(&B, err);
    if (!rc) rc = run_all(&B, err);
    if (!rc) {
        print_table(&B);
        rc = write_json(&B, err);
    }
    if (!rc) rc = write_svg(&B, err);
    if (!rc && !o->quiet) fprintf(stderr, "bench: wrote %s and its .svg\n", o->out);
    for (int i = 0; i < B.n_cf; i++) {
        for (int k = 0; k < B.n_pb; k++) free(B.cf[i].res[k].answer);
        free(B.cf[i].res);
    }
    orc_sched_destroy(B.s);
    eng_destroy(B.e);
    eng_model_free(B.m);
    eng_model_free(B.draft);
    free_problems(B.pb, B.n_pb);
    return rc;
}
