/* cmd_replay.c — `brisk replay parallelprompt FILE.json`: replays a
 * ParallelPrompt file.  For every row: the rule-based detector's schema
 * against the annotated one and, with --model, the serial answer (the whole
 * prompt as one chat-mode request) against the parallel one (the annotated
 * schema as a parallel-mode request: subtasks forked off a shared prefix),
 * both run as the server runs them, as tasks through the scheduler
 * (benchmarks/lib/pp.c).  Prints a table, writes JSON and an SVG bar chart
 * next to it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "eng.h"
#include "orc_pp.h"
#include "bench.h"
#include "cmds.h"
#include "args.h"

#define AGREEMENT_DEF \
    "kind: detector and annotation agree on data / n / not parallelisable; count: and on the " \
    "number of items (or n); exact: and item i equals item i after normalisation (literal \\n " \
    "decoded, white space collapsed, ASCII case folded, curly quotes made plain, surrounding " \
    "quotes and trailing .,;: trimmed); loose: and item i matches item i with word-multiset F1 " \
    ">= 0.5 (words of the normal form, inner apostrophes dropped, final s/e stemmed, NAME_k " \
    "placeholders ignored). Headline agreement = loose."

#define ADHERENCE_DEF \
    "parallel answer: every item's section is in the aggregated answer, in item order, and " \
    "non-empty, i.e. its subtask generated >= 1 token before its stop (EOS or the token limit); " \
    "a subtask whose first token is EOS counts as unanswered. Judged on tokens, not text, so " \
    "it means the same for random weights whose tokens have no text in the test tokenizer " \
    "(non-blank text is counted beside it). Serial answer: not judged (n/a): whether free text " \
    "answers every item needs a reader or real weights."

#define SERIAL_DEF \
    "serial: the original prompt as one chat-mode request, same sampling, stopping at EOS or at " \
    "max_tokens x items tokens (the parallel run's total budget; --serial-max-tokens overrides); " \
    "parallel: one parallel-mode request, one subtask per item, each stopping at EOS or " \
    "max_tokens; both run as the server runs them (a task driven through the scheduler, one at " \
    "a time) and timed from before the task is created (tokenisation) to its answer message, " \
    "after a warm-up of every batch size used and of prompt passes of every 32 tokens up to " \
    "--warmup (eng_warmup)."

typedef struct replay_args {
    const char *file, *model, *out;
    int limit, max_tokens, serial_cap, kv_tokens, verbose, hoist, warmup;
    eng_opts eng;
    eng_sampling samp;
} replay_args;

/* What one row gave. */
typedef struct row_result {
    int index, valid;
    const char *rule;
    int kind_a, kind_d, count_a, count_d;
    orc_pp_agreement agree;
    int ran;                       /* model runs done */
    char error[512];
    const char *schema_source;     /* "annotated" or "detected" */
    int k, shared_tokens, prompt_tokens_par, prompt_tokens_ser, hoisted;
    double ser_ms, par_ms, ser_first_ms, par_encode_ms, par_prefix_ms, par_first_ms;
    int ser_tokens, par_tokens, eos_first;
    bench_pp_adherence adh;
} row_result;

static void usage(void) {
    fprintf(stderr,
        "usage: brisk replay parallelprompt FILE.json [--model DIR] [--limit K] [--max-tokens N]\n"
        "         [--serial-max-tokens N] [--out PATH.json] [--temperature T] [--seed S]\n"
        "         [--kv-tokens N] [--kv f32|bf16] " ENG_OPTS_USAGE " [--warmup N] [--literal-template] [--verbose]\n"
        "  --warmup N             prompt passes of every 32 tokens up to N before timing (eng_warmup;\n"
        "                         default 2048 with --cuda, 0 on the CPU), as a server does at start\n"
        "  --max-tokens N         per subtask (default 128)\n"
        "  --serial-max-tokens N  for the whole-prompt baseline (default N x items, at most 4096)\n"
        "  --out                  default results/pp_<file name>.json (ignored by git); the SVG goes beside it\n"
        "  --literal-template     subtasks get the template as written; by default the context goes\n"
        "                         before the item (\"{context}\\n\\n\" + the template with {context} read as\n"
        "                         \"the text above\"), so it is prefilled once; same context and item in every\n"
        "                         subtask prompt either way, rows say when it applied\n");
}

static int parse_args(int argc, char **argv, replay_args *a) {
    memset(a, 0, sizeof *a);
    a->limit = -1;
    a->max_tokens = 128;
    a->kv_tokens = 65536;
    a->warmup = -1;
    a->hoist = 1;
    a->samp.seed = 1;
    if (argc < 2 || strcmp(argv[1], "parallelprompt")) {
        fprintf(stderr, "brisk replay: the only replay is 'parallelprompt FILE.json'%s%s%s\n",
                argc >= 2 ? " (got '" : "", argc >= 2 ? argv[1] : "", argc >= 2 ? "')" : "");
        return -1;
    }
    if (argc < 3 || argv[2][0] == '-') {
        fprintf(stderr, "brisk replay: parallelprompt needs a FILE.json\n");
        return -1;
    }
    a->file = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        int rc = arg_engine("replay", argc, argv, &i, &a->eng);
        if (rc) { if (rc < 0) return rc; continue; }
        if (!strcmp(k, "--verbose")) { a->verbose = 1; continue; }
        if (!strcmp(k, "--hoist-context")) { a->hoist = 1; continue; }   /* the default */
        if (!strcmp(k, "--literal-template")) { a->hoist = 0; continue; }
        if (strcmp(k, "--model") && strcmp(k, "--limit") && strcmp(k, "--max-tokens") &&
            strcmp(k, "--serial-max-tokens") && strcmp(k, "--out") && strcmp(k, "--temperature") &&
            strcmp(k, "--seed") && strcmp(k, "--kv-tokens") && strcmp(k, "--warmup"))
            return arg_unknown("replay", k);
        if (!v) return arg_missing("replay", k);
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--limit")) rc = arg_int("replay", k, v, 0, 1 << 30, &a->limit);
        else if (!strcmp(k, "--max-tokens")) rc = arg_int("replay", k, v, 1, 1 << 20, &a->max_tokens);
        else if (!strcmp(k, "--serial-max-tokens")) rc = arg_int("replay", k, v, 1, 1 << 20, &a->serial_cap);
        else if (!strcmp(k, "--out")) a->out = v;
        else if (!strcmp(k, "--temperature")) {
            if (!(rc = arg_num("replay", k, v, 0, 5, &x))) a->samp.temperature = (float)x;
        } else if (!strcmp(k, "--seed")) rc = arg_u64("replay", k, v, &a->samp.seed);
        else if (!strcmp(k, "--kv-tokens")) rc = arg_int("replay", k, v, 256, 1 << 30, &a->kv_tokens);
        else rc = arg_int("replay", k, v, 0, 1 << 20, &a->warmup);
        if (rc) return rc;
        i++;
    }
    return 0;
}

/* results/pp_<basename without .json>.json: results/ is ignored by git, so a
 * run never rewrites the tracked figures under benchmarks/results (--out
 * does, on purpose). */
static char *default_out(const char *file) {
    const char *b = strrchr(file, '/');
    b = b ? b + 1 : file;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".json")) n -= 5;
    char *p = malloc(n + 40);
    if (p) snprintf(p, n + 40, "results/pp_%.*s.json", (int)n, b);
    mkdir("results", 0755);   /* EEXIST is fine; a real failure shows when the file is written */
    return p;
}

/* ------------------------------------------------------------ detection */
static void detect_row(const orc_pp_row *r, int i, row_result *o, orc_pp_schema *det) {
    memset(o, 0, sizeof *o);
    o->index = i;
    o->valid = r->valid;
    eng_err err = {0};
    if (!r->original || orc_pp_detect(r->original, det, &err)) memset(det, 0, sizeof *det);
    o->rule = det->rule;
    o->kind_d = det->kind;
    o->count_d = orc_pp_count(det);
    if (!r->valid) { snprintf(o->error, sizeof o->error, "%s", r->error); return; }
    o->kind_a = r->schema.kind;
    o->count_a = orc_pp_count(&r->schema);
    orc_pp_compare(&r->schema, det, &o->agree);
}

/* ------------------------------------------------------------ model runs */
typedef struct model_ctx { eng_model *m; eng_engine *e; orc_sched *s; } model_ctx;

/* One short run per batch size up to max_k, so that no row pays for a size
 * seen first (the CUDA backend captures a graph per pass shape); the serial
 * baseline's size 1 is warmed by model_open. */
static int warm_batches(model_ctx *mc, int max_k, eng_err *err) {
    eng_sampling g = {0};
    for (int k = 2; k <= max_k && k <= ORC_PP_MAX_ITEMS; k++) {
        orc_pp_schema s = {.kind = ORC_PP_N, .tmpl = "Say {n} word.", .context = "", .n = k};
        bench_pp_result r;
        int rc = bench_pp_parallel(mc->s, mc->m, &s, 1, &g, 4, &r, err);
        bench_pp_result_free(&r);
        if (rc) return rc;
    }
    return ENG_OK;
}

static int model_open(const replay_args *a, model_ctx *mc, eng_err *err) {
    memset(mc, 0, sizeof *mc);
    int rc = eng_model_load_blocks(a->model, &mc->m, err);
    if (rc) return rc;
    eng_opts o = a->eng;
    o.max_seqs = ORC_PP_MAX_ITEMS + 2;
    o.block_size = 16;
    o.n_blocks = a->kv_tokens / 16;
    if ((rc = eng_create(mc->m, &o, &mc->e, err)) || (rc = orc_sched_create(mc->e, 4, &mc->s, err)))
        return rc;
    /* one short request first, so that no row's timing pays for start-up
     * (allocations, GPU context and kernel loading) */
    bench_pp_result warm;
    eng_sampling g = {0};
    rc = bench_pp_serial(mc->s, mc->m, "Hello", &g, 4, &warm, err);
    bench_pp_result_free(&warm);
    int cuda = a->eng.backend == ENG_BACKEND_CUDA;
    int upto = a->warmup >= 0 ? a->warmup : cuda ? ENG_WARMUP_DEFAULT : 0, done = 0;
    if (!rc && upto > 0) {
        double t0 = eng_now_s();
        rc = eng_warmup(mc->e, upto, &done, err);
        fprintf(stderr, "warm-up: prompt passes up to %d tokens in %.0f ms\n", done,
                1e3 * (eng_now_s() - t0));
    }
    return rc;
}

static void model_close(model_ctx *mc) {
    orc_sched_destroy(mc->s);
    eng_destroy(mc->e);
    eng_model_free(mc->m);
}

static void run_row(const replay_args *a, model_ctx *mc, const orc_pp_row *r,
                    const orc_pp_schema *det, row_result *o) {
    const orc_pp_schema *s = r->valid ? &r->schema : det->kind ? det : NULL;
    if (!s || !r->original) return;
    o->schema_source = r->valid ? "annotated" : "detected";
    o->k = orc_pp_count(s);
    int cap = a->serial_cap > 0 ? a->serial_cap : a->max_tokens * o->k;
    if (a->serial_cap <= 0 && cap > 4096) cap = 4096;
    bench_pp_result ser = {0}, par = {0};
    orc_pp_schema hoisted = {0};   /* only to tell whether hoisting changed the template */
    eng_err err = {0};
    if ((a->hoist && orc_pp_hoist_context(s, &hoisted, &err)) ||
        bench_pp_serial(mc->s, mc->m, r->original, &a->samp, cap, &ser, &err) ||
        bench_pp_parallel(mc->s, mc->m, s, a->hoist, &a->samp, a->max_tokens, &par, &err)) {
        snprintf(o->error, sizeof o->error, "%s", err.msg);
    } else {
        o->ran = 1;
        o->hoisted = a->hoist && strcmp(hoisted.tmpl, s->tmpl) != 0;
        o->ser_ms = ser.ms_total;
        o->par_ms = par.ms_total;
        o->ser_first_ms = ser.ms_first;
        o->par_encode_ms = par.ms_encode;
        o->par_prefix_ms = par.ms_prefill;
        o->par_first_ms = par.ms_first;
        o->ser_tokens = ser.total_gen;
        o->par_tokens = par.total_gen;
        o->eos_first = par.n_eos_first;
        bench_pp_adherence_of(&par, s->kind == ORC_PP_DATA ? (const char *const *)s->data : NULL, &o->adh);
        o->shared_tokens = par.shared_tokens;
        o->prompt_tokens_par = par.prompt_tokens;
        o->prompt_tokens_ser = ser.prompt_tokens;
        if (a->verbose) printf("--- row %d parallel answer:\n%s--- serial answer:\n%s\n", o->index,
                               par.answer, ser.answer);
    }
    bench_pp_result_free(&ser);
    bench_pp_result_free(&par);
    orc_pp_schema_free(&hoisted);
}

static double speedup(const row_result *o) { return o->par_ms > 0 ? o->ser_ms / o->par_ms : 0; }

/* Serial ms per output token over parallel ms per output token. */
static double norm_speedup(const row_result *o) {
    if (o->ser_tokens < 1 || o->par_tokens < 1 || o->par_ms <= 0) return 0;
    return (o->ser_ms / o->ser_tokens) / (o->par_ms / o->par_tokens);
}

/* ------------------------------------------------------------ printing */
static const char *kind_name(int k) { return k == ORC_PP_DATA ? "data" : k == ORC_PP_N ? "n" : "-"; }

static void print_header(int with_model) {
    printf("%4s %-16s %-10s %-9s %-5s %-5s", "row", "rule", "kind a/d", "items a/d", "loose", "exact");
    if (with_model) printf(" %9s %9s %7s %6s %5s", "serial_ms", "par_ms", "speedup", "norm", "adh");
    printf("\n");
}

static void print_row(const row_result *o, int with_model) {
    char kinds[16], counts[16];
    snprintf(kinds, sizeof kinds, "%s/%s", o->valid ? kind_name(o->kind_a) : "bad", kind_name(o->kind_d));
    snprintf(counts, sizeof counts, "%d/%d", o->count_a, o->count_d);
    printf("%4d %-16s %-10s %-9s %-5s %-5s", o->index, o->rule ? o->rule : "-", kinds, counts,
           !o->valid ? "n/a" : o->agree.loose ? "yes" : "no", !o->valid ? "n/a" : o->agree.exact ? "yes" : "no");
    if (with_model && o->ran)
        printf(" %9.1f %9.1f %7.2f %6.2f %2d/%-2d%s", o->ser_ms, o->par_ms, speedup(o), norm_speedup(o),
               o->adh.answered, o->k, o->adh.in_order < o->k ? " out of order" : "");
    if (o->error[0]) printf("  [%s]", o->error);
    printf("\n");
}

typedef struct summary {
    int rows, valid, kind, count, exact, loose, ran, adherent, hoisted;
    int items, answered, nonblank, eos_first;
    double speedup_sum, norm_sum;
} summary;

static void summarise(const row_result *o, int n, summary *s) {
    memset(s, 0, sizeof *s);
    s->rows = n;
    for (int i = 0; i < n; i++) {
        if (o[i].valid) {
            s->valid++;
            s->kind += o[i].agree.kind;
            s->count += o[i].agree.count;
            s->exact += o[i].agree.exact;
            s->loose += o[i].agree.loose;
        }
        if (o[i].ran) {
            s->ran++;
            s->adherent += o[i].adh.ok;
            s->hoisted += o[i].hoisted;
            s->items += o[i].k;
            s->answered += o[i].adh.answered;
            s->nonblank += o[i].adh.nonblank;
            s->eos_first += o[i].eos_first;
            s->speedup_sum += speedup(&o[i]);
            s->norm_sum += norm_speedup(&o[i]);
        }
    }
}

static double pct(int a, int b) { return b ? 100.0 * a / b : 0; }

static void print_summary(const char *file, const summary *s) {
    printf("\n%s: %d rows, %d with a valid annotation (%d malformed, excluded from agreement)\n",
           file, s->rows, s->valid, s->rows - s->valid);
    printf("agreement over valid rows: kind %.1f%%  count %.1f%%  exact %.1f%%  loose %.1f%% (headline)\n",
           pct(s->kind, s->valid), pct(s->count, s->valid), pct(s->exact, s->valid), pct(s->loose, s->valid));
    printf("definition: %s\n", AGREEMENT_DEF);
    if (!s->ran) return;
    printf("model runs: %d rows (%d hoisted), mean %.2f items, mean speedup %.2fx, mean normalised "
           "speedup %.2fx\n", s->ran, s->hoisted, (double)s->items / s->ran, s->speedup_sum / s->ran,
           s->norm_sum / s->ran);
    printf("every item answered (parallel): %d/%d prompts (%.1f%%); items answered %d/%d, with "
           "visible text %d, EOS first %d; serial: n/a\n", s->adherent, s->ran, pct(s->adherent, s->ran),
           s->answered, s->items, s->nonblank, s->eos_first);
    printf("adherence: %s\n", ADHERENCE_DEF);
}

/* ------------------------------------------------------------ JSON */
static cJSON *row_json(const row_result *o) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "row", o->index);
    cJSON_AddBoolToObject(j, "annotation_valid", o->valid);
    cJSON_AddStringToObject(j, "rule", o->rule ? o->rule : "none");
    cJSON_AddStringToObject(j, "kind_annotated", o->valid ? kind_name(o->kind_a) : "invalid");
    cJSON_AddStringToObject(j, "kind_detected", kind_name(o->kind_d));
    cJSON_AddNumberToObject(j, "items_annotated", o->count_a);
    cJSON_AddNumberToObject(j, "items_detected", o->count_d);
    if (o->valid) {
        cJSON_AddBoolToObject(j, "agree_kind", o->agree.kind);
        cJSON_AddBoolToObject(j, "agree_count", o->agree.count);
        cJSON_AddBoolToObject(j, "agree_exact", o->agree.exact);
        cJSON_AddBoolToObject(j, "agree_loose", o->agree.loose);
    }
    if (o->error[0]) cJSON_AddStringToObject(j, "error", o->error);
    if (!o->ran) return j;
    cJSON_AddStringToObject(j, "schema", o->schema_source);
    cJSON_AddNumberToObject(j, "subtasks", o->k);
    cJSON_AddBoolToObject(j, "hoisted", o->hoisted);
    cJSON_AddNumberToObject(j, "serial_ms", o->ser_ms);
    cJSON_AddNumberToObject(j, "parallel_ms", o->par_ms);
    cJSON_AddNumberToObject(j, "serial_first_token_ms", o->ser_first_ms);
    cJSON_AddNumberToObject(j, "parallel_tokenise_ms", o->par_encode_ms);
    cJSON_AddNumberToObject(j, "parallel_prefix_prefill_ms", o->par_prefix_ms);
    cJSON_AddNumberToObject(j, "parallel_all_first_tokens_ms", o->par_first_ms);
    cJSON_AddNumberToObject(j, "serial_tokens", o->ser_tokens);
    cJSON_AddNumberToObject(j, "parallel_tokens", o->par_tokens);
    cJSON_AddNumberToObject(j, "serial_prompt_tokens", o->prompt_tokens_ser);
    cJSON_AddNumberToObject(j, "parallel_prompt_tokens", o->prompt_tokens_par);
    cJSON_AddNumberToObject(j, "shared_prefix_tokens", o->shared_tokens);
    cJSON_AddNumberToObject(j, "speedup", speedup(o));
    cJSON_AddNumberToObject(j, "normalised_speedup", norm_speedup(o));
    cJSON_AddNumberToObject(j, "items_answered", o->adh.answered);
    cJSON_AddNumberToObject(j, "items_eos_first", o->eos_first);
    cJSON_AddNumberToObject(j, "items_with_text", o->adh.nonblank);
    cJSON_AddNumberToObject(j, "sections_in_order", o->adh.in_order);
    cJSON_AddBoolToObject(j, "structural_adherence", o->adh.ok);
    cJSON_AddNullToObject(j, "serial_structural_adherence");
    return j;
}

static cJSON *summary_json(const replay_args *a, const summary *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "rows", s->rows);
    cJSON_AddNumberToObject(j, "valid_annotations", s->valid);
    cJSON_AddNumberToObject(j, "agree_kind_pct", pct(s->kind, s->valid));
    cJSON_AddNumberToObject(j, "agree_count_pct", pct(s->count, s->valid));
    cJSON_AddNumberToObject(j, "agree_exact_pct", pct(s->exact, s->valid));
    cJSON_AddNumberToObject(j, "agree_loose_pct", pct(s->loose, s->valid));
    cJSON_AddStringToObject(j, "agreement_definition", AGREEMENT_DEF);
    if (s->ran) {
        cJSON_AddStringToObject(j, "model", a->model);
        cJSON_AddStringToObject(j, "backend", a->eng.backend == ENG_BACKEND_CUDA ? "cuda" : "cpu");
        cJSON_AddNumberToObject(j, "tp", a->eng.tp > 1 ? a->eng.tp : 1);
        cJSON_AddNumberToObject(j, "max_tokens_per_subtask", a->max_tokens);
        cJSON_AddNumberToObject(j, "temperature", a->samp.temperature);
        cJSON_AddBoolToObject(j, "hoist_context", a->hoist);
        if (a->serial_cap > 0) cJSON_AddNumberToObject(j, "serial_max_tokens", a->serial_cap);
        else cJSON_AddStringToObject(j, "serial_max_tokens", "max_tokens x items, at most 4096");
        cJSON_AddStringToObject(j, "timing_definition", SERIAL_DEF);
        cJSON_AddNumberToObject(j, "model_rows", s->ran);
        cJSON_AddNumberToObject(j, "hoisted_rows", s->hoisted);
        cJSON_AddNumberToObject(j, "mean_subtasks", (double)s->items / s->ran);
        cJSON_AddNumberToObject(j, "mean_speedup", s->speedup_sum / s->ran);
        cJSON_AddNumberToObject(j, "mean_normalised_speedup", s->norm_sum / s->ran);
        cJSON_AddNumberToObject(j, "structural_adherence", (double)s->adherent / s->ran);
        cJSON_AddNumberToObject(j, "every_item_answered_pct", pct(s->adherent, s->ran));
        cJSON_AddNumberToObject(j, "items", s->items);
        cJSON_AddNumberToObject(j, "items_answered", s->answered);
        cJSON_AddNumberToObject(j, "items_eos_first", s->eos_first);
        cJSON_AddNumberToObject(j, "items_with_text", s->nonblank);
        cJSON_AddNullToObject(j, "serial_structural_adherence");
        cJSON_AddStringToObject(j, "adherence_definition", ADHERENCE_DEF);
    }
    return j;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "brisk replay: cannot write %s: %s\n", path, strerror(errno)); return -1; }
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    if (bad) fprintf(stderr, "brisk replay: error writing %s\n", path);
    return bad ? -1 : 0;
}

static int write_json(const char *path, const replay_args *a, const row_result *o, int n, const summary *s) {
    cJSON *root = cJSON_CreateObject(), *rows = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "file", a->file);
    cJSON_AddItemToObject(root, "summary", summary_json(a, s));
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(rows, row_json(&o[i]));
    cJSON_AddItemToObject(root, "rows", rows);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) { fprintf(stderr, "brisk replay: out of memory\n"); return -1; }
    int rc = write_text(path, text);
    free(text);
    return rc;
}

/* ------------------------------------------------------------ SVG */
/* Speedup per row when the model ran, else the four agreement figures. */
static int write_svg(const char *json_path, const char *file, const row_result *o, int n, const summary *s) {
    size_t len = strlen(json_path);
    int stem = (int)(len > 5 && !strcmp(json_path + len - 5, ".json") ? len - 5 : len), m = 0;
    char path[4096], title[512];
    snprintf(path, sizeof path, "%.*s.svg", stem, json_path);
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    char (*names)[16] = calloc((size_t)n + 4, sizeof *names);
    const char **labels = calloc((size_t)n + 4, sizeof *labels);
    double *v = calloc((size_t)n + 4, sizeof *v);
    eng_err err = {0};
    int rc = names && labels && v ? ENG_OK : eng_seterr(&err, ENG_ENOMEM, "out of memory");
    if (!rc && s->ran) {
        for (int i = 0; i < n; i++) {
            if (!o[i].ran) continue;
            snprintf(names[m], sizeof names[m], "row %d", o[i].index);
            labels[m] = names[m];
            v[m++] = speedup(&o[i]);
        }
        snprintf(title, sizeof title, "ParallelPrompt speedup (serial / parallel latency): %s", base);
        rc = bench_svg_bars(path, title, "speedup", labels, v, m, 1.0, &err);
    } else if (!rc) {
        static const char *const kinds[] = {"kind", "count", "exact", "loose"};
        const int hits[] = {s->kind, s->count, s->exact, s->loose};
        for (m = 0; m < 4; m++) { labels[m] = kinds[m]; v[m] = pct(hits[m], s->valid); }
        snprintf(title, sizeof title, "Detector agreement with the annotations (%%): %s", base);
        rc = bench_svg_bars(path, title, "% of valid rows", labels, v, 4, 80.0, &err);
    }
    if (rc) fprintf(stderr, "brisk replay: %s\n", err.msg);
    else printf("wrote %s\n", path);
    free(names);
    free(labels);
    free(v);
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------ main */
/* Most subtasks a row will run: its annotation's, else the detector's. */
static int max_subtasks(const orc_pp_row *rows, int n) {
    int max = 1;
    for (int i = 0; i < n; i++) {
        int k = 0;
        if (rows[i].valid) {
            k = orc_pp_count(&rows[i].schema);
        } else if (rows[i].original) {
            orc_pp_schema d = {0};
            eng_err err = {0};
            if (!orc_pp_detect(rows[i].original, &d, &err)) {
                k = orc_pp_count(&d);
                orc_pp_schema_free(&d);
            }
        }
        if (k > max) max = k;
    }
    return max;
}

static int replay(const replay_args *a, const char *out_path) {
    orc_pp_row *rows = NULL;
    int n_all = 0, n, rc = 1;
    eng_err err = {0};
    model_ctx mc = {0};
    row_result *res = NULL;
    if (orc_pp_load(a->file, &rows, &n_all, &err)) { fprintf(stderr, "brisk replay: %s\n", err.msg); return 1; }
    n = a->limit >= 0 && a->limit < n_all ? a->limit : n_all;
    if (a->model && model_open(a, &mc, &err)) { fprintf(stderr, "brisk replay: %s\n", err.msg); goto out; }
    if (!(res = calloc(n > 0 ? (size_t)n : 1, sizeof *res))) { fprintf(stderr, "brisk replay: out of memory\n"); goto out; }
    if (a->model && warm_batches(&mc, max_subtasks(rows, n), &err)) {
        fprintf(stderr, "brisk replay: warm-up: %s\n", err.msg);
        goto out;
    }
    print_header(a->model != NULL);
    for (int i = 0; i < n; i++) {
        orc_pp_schema det;
        detect_row(&rows[i], i, &res[i], &det);
        if (a->model) run_row(a, &mc, &rows[i], &det, &res[i]);
        orc_pp_schema_free(&det);
        print_row(&res[i], a->model != NULL);
        fflush(stdout);
    }
    summary s;
    summarise(res, n, &s);
    print_summary(a->file, &s);
    if (write_json(out_path, a, res, n, &s) || write_svg(out_path, a->file, res, n, &s)) goto out;
    printf("wrote %s\n", out_path);
    rc = 0;
out:
    free(res);
    if (a->model) model_close(&mc);
    orc_pp_rows_free(rows, n_all);
    return rc;
}

int cmd_replay(int argc, char **argv) {
    replay_args a;
    if (parse_args(argc, argv, &a)) { usage(); return 2; }
    char *def = a.out ? NULL : default_out(a.file);
    const char *out = a.out ? a.out : def;
    int rc = out ? replay(&a, out) : 1;
    free(def);
    return rc;
}
