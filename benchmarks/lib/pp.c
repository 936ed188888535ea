/* pp.c — ParallelPrompt requests for the replay benchmark, run as the
 * server runs them: the parallel one as a parallel-mode task
 * (task_parallel.c: shared prefix prefilled once, forks decoded in one
 * batch, sections in item order), the serial baseline as a chat-mode task,
 * both driven through the scheduler (run.c).  What is measured is read back
 * from the tasks' messages, so the replay times what a client gets. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "bench.h"

void bench_pp_result_free(bench_pp_result *r) {
    if (!r) return;
    free(r->answer);
    orc_pp_strv_free(r->outputs, r->n_outputs);
    free(r->n_gen);
    memset(r, 0, sizeof *r);
}

/* The schema as the client's "parallel" object. */
static cJSON *schema_json(const orc_pp_schema *s, int hoist) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "template", s->tmpl ? s->tmpl : "");
    cJSON_AddStringToObject(j, "context", s->context ? s->context : "");
    if (s->kind == ORC_PP_DATA)
        cJSON_AddItemToObject(j, "data", cJSON_CreateStringArray((const char *const *)s->data, s->n_data));
    else
        cJSON_AddNumberToObject(j, "n", s->n);
    cJSON_AddBoolToObject(j, "hoist_context", hoist);
    return j;
}

/* Fills r from what the task said; t0: before the task was created. */
static int read_back(const bench_collect *c, int k, double t0, double t_created, double t_submit,
                     bench_pp_result *r, eng_err *err) {
    if (c->error) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c->error, "message");
        return eng_seterr(err, ENG_EINVAL, "%s", cJSON_IsString(msg) ? msg->valuestring : "the task failed");
    }
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(c->answer, "text");
    if (!c->stats || !cJSON_IsString(text))
        return eng_seterr(err, ENG_EINVAL, "the task ended without an answer and stats");
    if (c->n_branches > k)
        return eng_seterr(err, ENG_EINVAL, "tokens of branch %d in a task of %d", c->n_branches - 1, k);
    r->answer = strdup(text->valuestring);
    r->outputs = calloc((size_t)k, sizeof *r->outputs);
    r->n_gen = calloc((size_t)k, sizeof *r->n_gen);
    if (!r->answer || !r->outputs || !r->n_gen) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    r->n_outputs = k;
    for (int i = 0; i < k; i++) {
        if (!(r->outputs[i] = strdup(eng_buf_str(&c->text[i])))) return eng_seterr(err, ENG_ENOMEM, "out of memory");
        r->n_gen[i] = c->tokens[i];
        r->total_gen += c->tokens[i];
        r->n_eos_first += c->tokens[i] == 0;
    }
    double sub = (t_submit - t0) * 1e3;
    r->prompt_tokens = (int)bench_num(c->stats, "prompt_tokens");
    r->shared_tokens = (int)bench_num(c->stats, "shared_prompt_tokens");
    r->ms_total = (c->t_answer - t0) * 1e3;
    r->ms_encode = (t_created - t0) * 1e3;
    r->ms_prefill = sub + bench_num(c->stats, "queue_ms");
    r->ms_first = sub + bench_num(c->stats, "ttft_ms");
    return ENG_OK;
}

/* Creates the task with make(), runs it, reads it back. */
typedef int (*make_fn)(const void *arg, const orc_query *q, const eng_model *m, orc_sink sink,
                       orc_task **t, eng_err *err);

static int run(orc_sched *s, const eng_model *m, make_fn make, const void *arg, int k,
               const orc_query *q, bench_pp_result *r, eng_err *err) {
    memset(r, 0, sizeof *r);
    bench_collect c;
    orc_sink sink = bench_collect_sink(&c);
    orc_task *t = NULL;
    double t0 = eng_now_s(), t_submit = 0;
    int rc = make(arg, q, m, sink, &t, err);
    double t_created = eng_now_s();
    if (!rc) rc = bench_run_task(s, t, &c, &t_submit, err);
    if (!rc) rc = read_back(&c, k, t0, t_created, t_submit, r, err);
    bench_collect_clear(&c);
    if (rc) bench_pp_result_free(r);
    return rc;
}

static int make_parallel(const void *arg, const orc_query *q, const eng_model *m, orc_sink sink,
                         orc_task **t, eng_err *err) {
    return orc_task_parallel_create(q, arg, m, sink, t, err);
}

static int make_chat(const void *arg, const orc_query *q, const eng_model *m, orc_sink sink,
                     orc_task **t, eng_err *err) {
    (void)arg;
    return orc_task_chat_create(q, m, sink, t, err);
}

int bench_pp_parallel(orc_sched *s, const eng_model *m, const orc_pp_schema *schema, int hoist,
                      const eng_sampling *samp, int max_tokens, bench_pp_result *r, eng_err *err) {
    if (!s || !m || !schema || !samp || !r || max_tokens < 1)
        return eng_seterr(err, ENG_EINVAL, "bench_pp_parallel: bad arguments");
    cJSON *spec = schema_json(schema, hoist);
    if (!spec) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    orc_query q = { .id = "pp", .max_tokens = max_tokens, .samp = *samp };
    int rc = run(s, m, make_parallel, spec, orc_pp_count(schema), &q, r, err);
    cJSON_Delete(spec);
    return rc;
}

int bench_pp_serial(orc_sched *s, const eng_model *m, const char *prompt, const eng_sampling *samp,
                    int max_tokens, bench_pp_result *r, eng_err *err) {
    if (!s || !m || !prompt || !samp || !r || max_tokens < 1)
        return eng_seterr(err, ENG_EINVAL, "bench_pp_serial: bad arguments");
    eng_chat_msg msg = { .role = "user", .content = prompt };
    orc_query q = { .id = "serial", .messages = &msg, .n_messages = 1, .max_tokens = max_tokens,
                    .samp = *samp };
    return run(s, m, make_chat, NULL, 1, &q, r, err);
}

static int blank(const char *s) {
    for (; s && *s; s++) if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

void bench_pp_adherence_of(const bench_pp_result *r, const char *const *labels,
                           bench_pp_adherence *a) {
    if (!a) return;
    memset(a, 0, sizeof *a);
    if (!r || r->n_outputs < 1 || !r->outputs || !r->n_gen) return;
    a->items = r->n_outputs;
    for (int i = 0; i < r->n_outputs; i++) {
        a->answered += r->n_gen[i] >= 1;
        a->nonblank += r->outputs[i] && !blank(r->outputs[i]);
    }
    a->in_order = orc_pp_sections_in_order(r->answer, a->items, labels);
    a->ok = a->answered == a->items && a->in_order == a->items;
}
