/* bench_spec.c — speculative decoding on MATH-500 prompts.
 *
 *   build/benchmarks/bench_spec --model DIR [--draft DIR] [--data FILE | --pp FILE]
 *       [--raw] [--limit N] [--batch 1,8,16] [--k 2,4,8 | none] [--max-tokens N]
 *       [--repeat N] [--threads N] [--draft-threads N] [--cuda] [--out FILE]
 *
 * Each problem becomes a user turn of the model's chat template
 * ("<problem>\nPlease reason step by step, and put your final answer
 * within \boxed{}."); with --pp the prompts are the rows of a ParallelPrompt
 * file (each row's whole original prompt, as a user sent it); with --raw the
 * same text is a raw prompt after the model's BOS (a base model without a
 * chat template).  Each is answered
 * greedily up to --max-tokens or an end token.  For every batch size the
 * problems run with continuous batching (a finished answer's slot takes
 * the next problem) under each configuration: no speculation, n-gram
 * drafting at each k and adaptive, and with --draft the draft model at
 * each k and adaptive (--k none: adaptive only).  Reported: tokens/s, mean
 * seconds per answer (from its admission), tokens per engine step, drafts
 * accepted, and whether every answer is token for token the one without
 * speculation (it must be).  Each configuration runs --repeat times (the
 * fastest run is reported: the others met a busier machine) on engines
 * made and warmed untimed (one prefill of the longest prompt, through the
 * draft model too where it drafts), as a server's engines are.  Prints a
 * table and writes JSON (default benchmarks/results/spec_<model>.json).
 *
 * Data default: $BRISK_SHARED/data/math500/test.jsonl (../shared). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cJSON.h>
#include "eng.h"
#include "orc_pp.h"
#include "orc_tts.h"
#include "bench.h"

enum { MAX_LIST = 16 };

typedef struct args {
    const char *model, *draft, *data, *pp, *out;
    int raw, limit, max_tokens, threads, draft_threads, cuda, repeat;
    int batch[MAX_LIST], n_batch, ks[MAX_LIST], n_k;
} args;

typedef struct config {
    char name[32];
    int mode, k, adaptive;
} config;

typedef struct result {
    int batch;
    config cf;
    double secs, tok_s, s_per_answer, tok_per_step;
    long tokens, steps, drafted, accepted, spec_steps;
    int answers, identical, differ;
    double step_ms[8];   /* the engine's measured time of a pass of 1, 2, 4, ... 128 rows */
} result;

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (s && *s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 100000) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_spec --model DIR [--draft DIR] [--data FILE | --pp FILE] [--raw] [--limit N] "
            "[--batch 1,8,16] [--k 2,4,8 | none] [--max-tokens N] [--repeat N] [--threads N] "
            "[--draft-threads N] [--cuda] [--out FILE]\n");
    return 2;
}

static int parse_args(int argc, char **argv, args *a) {
    static char data[512];
    const char *sh = getenv("BRISK_SHARED");
    snprintf(data, sizeof data, "%s/data/math500/test.jsonl", sh ? sh : "../shared");
    *a = (args){ .data = data, .limit = 16, .max_tokens = 256, .threads = 0, .repeat = 1,
                 .batch = { 1, 8, 16 }, .n_batch = 3, .ks = { 2, 4, 8 }, .n_k = 3 };
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--cuda")) { a->cuda = 1; continue; }
        if (!strcmp(o, "--raw")) { a->raw = 1; continue; }
        if (!v) return -1;
        i++;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--draft")) a->draft = v;
        else if (!strcmp(o, "--data")) a->data = v;
        else if (!strcmp(o, "--pp")) a->pp = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--limit")) a->limit = atoi(v);
        else if (!strcmp(o, "--max-tokens")) a->max_tokens = atoi(v);
        else if (!strcmp(o, "--threads")) a->threads = atoi(v);
        else if (!strcmp(o, "--draft-threads")) a->draft_threads = atoi(v);
        else if (!strcmp(o, "--batch")) a->n_batch = parse_list(v, a->batch, MAX_LIST);
        else if (!strcmp(o, "--repeat")) a->repeat = atoi(v);
        else if (!strcmp(o, "--k")) a->n_k = strcmp(v, "none") ? parse_list(v, a->ks, MAX_LIST) : 0;
        else return -1;
    }
    if (!a->model || a->limit <= 0 || a->max_tokens <= 0 || a->threads < 0 || a->repeat <= 0 ||
        a->draft_threads < 0 || a->n_batch <= 0 || a->n_k < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ prompts */
/* The text as a user message through the model's chat template (its text
 * never becomes control tokens), or with c == NULL as a raw prompt after
 * the model's BOS. */
static int encode(const eng_chat *c, const eng_tok *tok, const char *text, int **ids, int *n) {
    eng_err err;
    int rc;
    if (c) {
        eng_chat_msg m = { .role = "user", .content = text };
        eng_chat_opts o = { .add_generation_prompt = 1 };
        rc = eng_chat_render(c, &m, 1, &o, ids, n, NULL, &err);
    } else {
        rc = eng_tok_encode_prompt(tok, text, strlen(text), ids, n, &err);
    }
    if (rc) fprintf(stderr, "%s\n", err.msg);
    return rc ? -1 : 0;
}

/* Up to limit problems of a MATH-500 JSONL file as prompts. */
static int load_math(const char *path, const eng_chat *c, const eng_tok *tok, int limit,
                     int **ids, int *lens) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); return -1; }
    const char *tail = "\n" ORC_TTS_MATH_SYSTEM;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (n < limit && getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *p = cJSON_GetObjectItem(j, "problem");
        size_t len = cJSON_IsString(p) ? strlen(p->valuestring) + strlen(tail) + 1 : 0;
        char *text = len ? malloc(len) : NULL;
        if (text) snprintf(text, len, "%s%s", p->valuestring, tail);
        if (text && !encode(c, tok, text, &ids[n], &lens[n])) n++;
        free(text);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    return n;
}

/* Up to limit valid rows of a ParallelPrompt file, each row's original prompt. */
static int load_pp(const char *path, const eng_chat *c, const eng_tok *tok, int limit,
                   int **ids, int *lens) {
    orc_pp_row *rows = NULL;
    int n_rows = 0, n = 0;
    eng_err err;
    if (orc_pp_load(path, &rows, &n_rows, &err)) { fprintf(stderr, "%s\n", err.msg); return -1; }
    for (int i = 0; i < n_rows && n < limit; i++)
        if (rows[i].valid && !encode(c, tok, rows[i].original, &ids[n], &lens[n])) n++;
    orc_pp_rows_free(rows, n_rows);
    return n;
}

/* ---------------------------------------------------------------- runs */
typedef struct bench {
    const args *a;
    eng_model *m, *dm;
    int **prompts, *plen, n_prompts, max_plen;
    int eos[10], n_eos;
} bench;

static int is_eos(const bench *b, int id) {
    for (int i = 0; i < b->n_eos; i++) if (b->eos[i] == id) return 1;
    return 0;
}

/* Answers every prompt at batch size `batch` under cf; answers[i] gets the
 * tokens of answer i (caller frees). */
static int run(bench *b, int batch, const config *cf, int **answers, int *alen, result *r,
               eng_err *err) {
    const args *a = b->a;
    int kmax = 8;
    for (int i = 0; i < a->n_k; i++) if (a->ks[i] > kmax) kmax = a->ks[i];
    int per_seq = (b->max_plen + a->max_tokens + kmax + 2 + 15) / 16 + 1;
    eng_opts o = { .backend = a->cuda ? ENG_BACKEND_CUDA : ENG_BACKEND_CPU, .n_threads = a->threads,
                   .block_size = 16, .max_seqs = batch, .n_blocks = batch * per_seq + 4 };
    eng_engine *e = NULL;
    int rc = eng_create(b->m, &o, &e, err);
    if (rc) return rc;
    int *slot_prompt = malloc(sizeof(int) * (size_t)batch);
    double *t_start = calloc((size_t)b->n_prompts, sizeof(double)), lat = 0;
    if (!slot_prompt || !t_start) rc = eng_seterr(err, ENG_ENOMEM, "bench: out of memory");
    for (int i = 0; i < batch && slot_prompt; i++) slot_prompt[i] = -1;
    memset(r, 0, sizeof *r);
    r->batch = batch;
    r->cf = *cf;
    eng_spec_opts so = { .mode = cf->mode, .k = cf->k, .adaptive = cf->adaptive, .kmax = kmax,
                         .draft_model = b->dm, .draft_n_threads = a->draft_threads };
    if (!rc) {   /* warm, untimed: the engines (the draft engine is made here) run a prefill */
        int s = -1, w = 0;
        for (int i = 1; i < b->n_prompts; i++) if (b->plen[i] > b->plen[w]) w = i;
        rc = eng_seq_add(e, b->prompts[w], b->plen[w], NULL, &s, err);
        if (!rc && cf->mode != ENG_SPEC_OFF) rc = eng_seq_spec_set(e, s, &so, err);
        if (!rc) rc = eng_seq_prefill(e, s, err);
        if (s >= 0) eng_seq_remove(e, s);
    }
    int next = 0, done = 0, live = 0;
    double t0 = eng_now_s();
    while (!rc && done < b->n_prompts) {
        while (live < batch && next < b->n_prompts) {   /* admit */
            int s = -1;
            if ((rc = eng_seq_add(e, b->prompts[next], b->plen[next], NULL, &s, err))) break;
            if (cf->mode != ENG_SPEC_OFF && (rc = eng_seq_spec_set(e, s, &so, err))) break;
            slot_prompt[s] = next;
            answers[next] = malloc(sizeof(int) * (size_t)(a->max_tokens + 1));
            if (!answers[next]) { rc = eng_seterr(err, ENG_ENOMEM, "bench: out of memory"); break; }
            alen[next] = 0;
            t_start[next++] = eng_now_s();
            live++;
        }
        if (rc || (rc = eng_step(e, err))) break;
        r->steps++;
        for (int s = 0; s < batch; s++) {
            int p = slot_prompt[s], n = 0, fin = 0;
            if (p < 0) continue;
            const int *nw;
            eng_seq_new_tokens(e, s, &nw, &n);
            for (int i = 0; i < n && !fin; i++) {
                answers[p][alen[p]++] = nw[i];
                fin = is_eos(b, nw[i]) || alen[p] >= a->max_tokens;
            }
            if (!fin) continue;
            eng_spec_stats st;
            eng_seq_spec_stats(e, s, &st);
            r->drafted += st.drafted;
            r->accepted += st.accepted;
            r->spec_steps += st.steps;
            r->tokens += alen[p];
            lat += eng_now_s() - t_start[p];
            eng_seq_remove(e, s);
            slot_prompt[s] = -1;
            live--;
            done++;
        }
    }
    r->secs = eng_now_s() - t0;
    for (int i = 0; i < 8; i++) r->step_ms[i] = 1e3 * eng_spec_step_cost(e, 1 << i);
    r->answers = done;
    r->tok_s = r->secs > 0 ? r->tokens / r->secs : 0;
    r->s_per_answer = done ? lat / done : 0;
    r->tok_per_step = r->steps ? (double)r->tokens / r->steps : 0;
    free(slot_prompt);
    free(t_start);
    eng_destroy(e);
    return rc;
}

static cJSON *result_json(const result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "batch", r->batch);
    cJSON_AddStringToObject(o, "config", r->cf.name);
    cJSON_AddStringToObject(o, "drafter", r->cf.mode == ENG_SPEC_NGRAM ? "ngram" :
                            r->cf.mode == ENG_SPEC_DRAFT ? "draft" : "none");
    cJSON_AddNumberToObject(o, "k", r->cf.k);
    cJSON_AddBoolToObject(o, "adaptive", r->cf.adaptive);
    cJSON_AddNumberToObject(o, "answers", r->answers);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "seconds", r->secs);
    cJSON_AddNumberToObject(o, "tok_s", r->tok_s);
    cJSON_AddNumberToObject(o, "s_per_answer", r->s_per_answer);
    cJSON_AddNumberToObject(o, "engine_steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "tokens_per_step", r->tok_per_step);
    cJSON_AddNumberToObject(o, "drafted", (double)r->drafted);
    cJSON_AddNumberToObject(o, "accepted", (double)r->accepted);
    cJSON_AddNumberToObject(o, "accept_rate", r->drafted ? (double)r->accepted / r->drafted : 0);
    cJSON_AddNumberToObject(o, "mean_accepted",
                            r->spec_steps ? (double)r->accepted / r->spec_steps : 0);
    cJSON_AddBoolToObject(o, "identical_to_plain", r->identical);
    cJSON_AddNumberToObject(o, "answers_differing", r->differ);
    cJSON *ms = cJSON_AddObjectToObject(o, "step_ms_by_rows");   /* < 0: not measured */
    for (int i = 0; i < 8; i++) {
        char k[8];
        snprintf(k, sizeof k, "%d", 1 << i);
        cJSON_AddNumberToObject(ms, k, r->step_ms[i]);
    }
    return o;
}

static const char *base_name(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    static char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)n, p);
    char *s = strrchr(buf, '/');
    return s ? s + 1 : buf;
}

int main(int argc, char **argv) {
    args a;
    if (parse_args(argc, argv, &a)) return usage();
    eng_err err = { 0 };
    bench b = { .a = &a };
    if (eng_model_load_blocks(a.model, &b.m, &err)) {
        fprintf(stderr, "%s: %s\n", a.model, err.msg);
        return 1;
    }
    if (a.draft && eng_model_load_blocks(a.draft, &b.dm, &err)) {
        fprintf(stderr, "%s: %s\n", a.draft, err.msg);
        return 1;
    }
    const eng_config *c = eng_model_config(b.m);
    for (int i = 0; i < c->n_eos && b.n_eos < 9; i++) b.eos[b.n_eos++] = c->eos_ids[i];
    eng_chat *chat = NULL;
    if (!a.raw && eng_chat_create(b.m, &chat, &err)) {
        fprintf(stderr, "%s: %s (--raw gives it raw prompts)\n", a.model, err.msg);
        return 1;
    }
    if (chat) b.eos[b.n_eos++] = eng_chat_end_token(chat);
    b.prompts = calloc((size_t)a.limit, sizeof *b.prompts);
    b.plen = calloc((size_t)a.limit, sizeof *b.plen);
    if (!b.prompts || !b.plen) { fprintf(stderr, "bench_spec: out of memory\n"); return 1; }
    const eng_tok *tok = eng_model_tok(b.m);
    b.n_prompts = a.pp ? load_pp(a.pp, chat, tok, a.limit, b.prompts, b.plen)
                       : load_math(a.data, chat, tok, a.limit, b.prompts, b.plen);
    eng_chat_free(chat);
    if (b.n_prompts <= 0) { fprintf(stderr, "no prompts from %s\n", a.pp ? a.pp : a.data); return 1; }
    for (int i = 0; i < b.n_prompts; i++) if (b.plen[i] > b.max_plen) b.max_plen = b.plen[i];
    if (b.max_plen + a.max_tokens + 40 > c->max_pos) {
        fprintf(stderr, "prompts of up to %d tokens + %d new exceed the model's context of %d\n",
                b.max_plen, a.max_tokens, c->max_pos);
        return 1;
    }

    config cfs[2 * MAX_LIST + 3];
    int n_cf = 0;
    cfs[n_cf++] = (config){ "none", ENG_SPEC_OFF, 0, 0 };
    for (int d = 0; d < (b.dm ? 2 : 1); d++) {
        int mode = d ? ENG_SPEC_DRAFT : ENG_SPEC_NGRAM;
        for (int i = 0; i < a.n_k; i++) {
            cfs[n_cf] = (config){ "", mode, a.ks[i], 0 };
            snprintf(cfs[n_cf++].name, 32, "%s k=%d", d ? "draft" : "ngram", a.ks[i]);
        }
        cfs[n_cf] = (config){ "", mode, 0, 1 };
        snprintf(cfs[n_cf++].name, 32, "%s adaptive", d ? "draft" : "ngram");
    }

    int min_plen = b.max_plen;
    for (int i = 0; i < b.n_prompts; i++) if (b.plen[i] < min_plen) min_plen = b.plen[i];
    printf("model %s%s%s, %d %s prompts (%d..%d tokens, %s), up to %d new tokens, %s\n",
           a.model, b.dm ? ", draft " : "", b.dm ? a.draft : "", b.n_prompts,
           a.pp ? "ParallelPrompt" : "MATH-500", min_plen, b.max_plen, a.raw ? "raw" : "chat",
           a.max_tokens, a.cuda ? "CUDA" : "CPU");
    size_t np = (size_t)b.n_prompts;
    int **plain = calloc(np, sizeof *plain), *plen = calloc(np, sizeof *plen);
    int **ans = calloc(np, sizeof *ans), *alen = calloc(np, sizeof *alen);
    if (!plain || !plen || !ans || !alen) { fprintf(stderr, "out of memory\n"); return 1; }
    /* warm-up: threads, caches, lazy device setup */
    {
        config w = { "warm-up", b.dm ? ENG_SPEC_DRAFT : ENG_SPEC_NGRAM, 2, 0 };
        result r;
        int keep = b.n_prompts, mt = a.max_tokens;
        b.n_prompts = 1;
        a.max_tokens = mt < 16 ? mt : 16;
        if (run(&b, 1, &w, ans, alen, &r, &err)) {
            fprintf(stderr, "warm-up: %s\n", err.msg);
            return 1;
        }
        b.n_prompts = keep;
        a.max_tokens = mt;
        free(ans[0]);
    }

    cJSON *root = cJSON_CreateObject(), *rs = cJSON_AddArrayToObject(root, "results");
    cJSON_AddStringToObject(root, "model", a.model);
    cJSON_AddStringToObject(root, "draft", a.draft ? a.draft : "");
    cJSON_AddStringToObject(root, "backend", a.cuda ? "cuda" : "cpu");
    cJSON_AddStringToObject(root, "prompts", a.pp ? a.pp : a.data);
    cJSON_AddStringToObject(root, "prompt_format", a.raw ? "raw" : "chat");
    cJSON_AddNumberToObject(root, "problems", b.n_prompts);
    cJSON_AddNumberToObject(root, "max_tokens", a.max_tokens);
    cJSON_AddNumberToObject(root, "repeat", a.repeat);   /* the fastest of this many runs */
    cJSON_AddBoolToObject(root, "warm_engines", 1);
    cJSON_AddNumberToObject(root, "threads", a.threads);
    cJSON_AddNumberToObject(root, "draft_threads", a.draft_threads);
    printf("%5s  %-15s %10s %10s %9s %8s %9s  %s\n", "batch", "config", "tok/s", "s/answer",
           "tok/step", "accept", "acc/step", "same as plain");
    int all_same = 1;
    for (int bi = 0; bi < a.n_batch; bi++) {
        for (int ci = 0; ci < n_cf; ci++) {
            result r;
            int differ = 0;
            for (int rep = 0; rep < a.repeat; rep++) {   /* the fastest run is kept */
                result x;
                int first = !ci && !rep, **dst = first ? plain : ans, *dlen = first ? plen : alen;
                if (run(&b, a.batch[bi], &cfs[ci], dst, dlen, &x, &err)) {
                    fprintf(stderr, "batch %d %s: %s\n", a.batch[bi], cfs[ci].name, err.msg);
                    return 1;
                }
                for (int i = 0; !first && i < b.n_prompts; i++) {
                    x.differ += alen[i] != plen[i] ||
                                memcmp(ans[i], plain[i], sizeof(int) * (size_t)alen[i]);
                    free(ans[i]);
                }
                if (x.differ > differ) differ = x.differ;
                if (!rep || x.secs < r.secs) r = x;
            }
            r.differ = differ;
            r.identical = r.differ == 0;
            all_same &= r.identical;
            char acc[16] = "-", per[16] = "-";
            if (r.drafted) {
                snprintf(acc, sizeof acc, "%.1f%%", 100.0 * r.accepted / r.drafted);
                snprintf(per, sizeof per, "%.2f",
                         r.spec_steps ? (double)r.accepted / r.spec_steps : 0);
            }
            printf("%5d  %-15s %10.1f %10.3f %9.2f %8s %9s  %s\n", r.batch, r.cf.name, r.tok_s,
                   r.s_per_answer, r.tok_per_step, acc, per,
                   !ci ? "(reference)" : r.identical ? "yes" : "NO");
            fflush(stdout);
            cJSON_AddItemToArray(rs, result_json(&r));
        }
        for (int i = 0; i < b.n_prompts; i++) free(plain[i]);
    }
    cJSON_AddBoolToObject(root, "all_identical_to_plain", all_same);

    char path[512];
    if (a.out) snprintf(path, sizeof path, "%s", a.out);
    else snprintf(path, sizeof path, "benchmarks/results/spec_%s.json", base_name(a.model));
    bench_write_json(path, root);
    cJSON_Delete(root);
    for (int i = 0; i < b.n_prompts; i++) free(b.prompts[i]);
    free(b.prompts);
    free(b.plen);
    free(plain);
    free(plen);
    free(ans);
    free(alen);
    eng_model_free(b.m);
    eng_model_free(b.dm);
    return all_same ? 0 : 3;
}
