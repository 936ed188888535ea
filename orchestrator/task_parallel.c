/* task_parallel.c — parallel mode (ParallelPrompt) as a scheduler task, so
 * its subtasks share the engine's batch with every other query.
 *
 * The subtask prompts share a token prefix (the template and context before
 * the item): it is prefilled once, forked per subtask, and each child gets
 * its own suffix.  Answers are released in item order as numbered sections
 * (orc_pp_agg), whatever order the subtasks finish in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orc.h"
#include "orc_pp.h"

typedef struct sub {
    int seq, done, n_gen;
    int limit;               /* max_tokens, or less where the context ends first */
    int hit_limit;           /* ended at limit, not on an end-of-sequence token */
    int *ids, n_ids;
    eng_tok_stream ts;
    eng_buf text;
} sub;

typedef struct par {
    orc_task *t;            /* the task this is the state of */
    const eng_model *m;
    orc_pp_schema schema;
    sub *subs;
    int k, n_done, started, n_prompt_shared;
    orc_pp_agg *agg;
    double t_start, t_first;   /* admitted (shared prefix prefilled, forks made); first token */
} par;

static void on_section(void *ud, int item, const char *section) {
    par *p = ud;
    cJSON *m = orc_msg("branch", p->t->id);
    cJSON_AddNumberToObject(m, "branch", item);
    cJSON_AddStringToObject(m, "state", "done");
    cJSON_AddNumberToObject(m, "tokens", p->subs[item].n_gen);
    cJSON_AddStringToObject(m, "finish", p->subs[item].hit_limit ? "length" : "stop");
    cJSON_AddStringToObject(m, "section", section);
    orc_task_emit(p->t, m);
}

/* Tokenises every subtask as a user turn of the model's chat template. */
static int encode_all(par *p, char **prompts, eng_err *err) {
    for (int i = 0; i < p->k; i++) {
        eng_chat_msg msg = { .role = "user", .content = prompts[i] };
        orc_query q = p->t->q;
        q.prompt = NULL;
        q.messages = &msg;
        q.n_messages = 1;
        int rc = orc_encode_query(&q, p->m, &p->subs[i].ids, &p->subs[i].n_ids, err);
        if (rc) return rc;
    }
    return ENG_OK;
}

/* Longest shared prefix, leaving every subtask at least one token of its own. */
static int shared_prefix(const par *p) {
    int n = p->subs[0].n_ids - 1;
    for (int i = 1; i < p->k; i++) {
        int j = 0;
        while (j < n && j < p->subs[i].n_ids - 1 && p->subs[i].ids[j] == p->subs[0].ids[j]) j++;
        n = j;
    }
    return n;
}

/* Ends the subtasks' sequences that still run. */
static void drop_subs(par *p, eng_engine *e) {
    for (int i = 0; i < p->k; i++)
        if (p->subs[i].seq >= 0) { eng_seq_remove(e, p->subs[i].seq); p->subs[i].seq = -1; }
}

static int start(par *p, eng_engine *e, eng_err *err) {
    int P = shared_prefix(p), root = -1, rc;
    int need = 0, others = eng_n_live(e) > 0;
    for (int i = 0; i < p->k; i++) {
        p->subs[i].limit = p->t->q.max_tokens;
        if ((rc = orc_fit_context(p->m, p->subs[i].n_ids, &p->subs[i].limit, err))) return rc;
        need += eng_blocks_for(e, p->subs[i].n_ids - P + p->subs[i].limit + 1) + 1;
    }
    if (eng_kv_free_blocks(e) < need + eng_blocks_for(e, P + 1) && others) return ORC_WAIT;
    if (P > 1) {   /* prefill the shared part once; children fork from it */
        if ((rc = eng_seq_add(e, p->subs[0].ids, P, &p->t->q.samp, &root, err)) ||
            (rc = eng_seq_prefill(e, root, err)))
            goto fail;
    }
    for (int i = 0; i < p->k; i++) {
        sub *s = &p->subs[i];
        eng_sampling sm = p->t->q.samp;
        sm.seed = p->t->q.samp.seed + (uint64_t)i;   /* repeated prompts (n) must differ */
        if (root >= 0) {
            if ((rc = eng_seq_fork(e, root, &sm, &s->seq, err)) ||
                (rc = eng_seq_append(e, s->seq, s->ids + P, s->n_ids - P, err)))
                goto fail;
        } else if ((rc = eng_seq_add(e, s->ids, s->n_ids, &sm, &s->seq, err))) {
            goto fail;
        }
    }
    if (root >= 0) eng_seq_remove(e, root);
    p->n_prompt_shared = P > 1 ? P : 0;
    p->started = 1;
    p->t_start = eng_now_s();
    return ORC_RUNNING;
fail:
    if (root >= 0) eng_seq_remove(e, root);
    drop_subs(p, e);
    if (rc == ENG_EFULL && others) return ORC_WAIT;   /* sequence slots or KV: after the others */
    return rc;
}

static int par_begin(orc_task *t, eng_engine *e, eng_err *err) {
    par *p = t->impl;
    return p->started ? ORC_RUNNING : start(p, e, err);
}

static void emit_final(orc_task *t, const char *finish) {
    par *p = t->impl;
    cJSON *a = orc_msg("answer", t->id);
    cJSON_AddStringToObject(a, "text", orc_pp_agg_text(p->agg));
    cJSON_AddStringToObject(a, "finish", finish);
    cJSON_AddNumberToObject(a, "subtasks", p->k);
    orc_task_emit(p->t, a);
    cJSON *s = orc_msg("stats", t->id);
    int tokens = 0, prompt = 0;
    for (int i = 0; i < p->k; i++) {
        tokens += p->subs[i].n_gen;
        prompt += p->subs[i].n_ids;
    }
    cJSON_AddNumberToObject(s, "subtasks", p->k);
    cJSON_AddNumberToObject(s, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(s, "shared_prompt_tokens", p->n_prompt_shared);
    cJSON_AddNumberToObject(s, "tokens", tokens);
    cJSON_AddNumberToObject(s, "queue_ms", p->t_start > 0 ? (p->t_start - t->t_submit) * 1e3 : 0);
    cJSON_AddNumberToObject(s, "ttft_ms", p->t_first > 0 ? (p->t_first - t->t_submit) * 1e3 : -1);
    cJSON_AddNumberToObject(s, "wall_ms", (eng_now_s() - t->t_submit) * 1e3);
    orc_task_emit(p->t, s);
}

static int finish_sub(par *p, eng_engine *e, int i, eng_err *err) {
    sub *s = &p->subs[i];
    s->done = 1;
    p->n_done++;
    eng_seq_remove(e, s->seq);
    s->seq = -1;
    return orc_pp_agg_put(p->agg, i, eng_buf_str(&s->text), err);
}

static int par_end(orc_task *t, eng_engine *e, eng_err *err) {
    par *p = t->impl;
    const eng_config *c = eng_model_config(p->m);
    for (int i = 0; i < p->k; i++) {
        sub *s = &p->subs[i];
        eng_token tk;
        if (s->done || eng_seq_last(e, s->seq, &tk)) continue;
        if (!p->t_first) p->t_first = eng_now_s();
        s->n_gen++;
        int eos = orc_is_eos(c, tk.id);
        if (!eos) {
            char buf[1024];
            int w = eng_tok_stream_put(eng_model_tok(p->m), &s->ts, tk.id, 1, buf, sizeof buf);
            if (eng_buf_add(&s->text, buf, (size_t)w)) return -eng_seterr(err, ENG_ENOMEM, "out of memory");
            cJSON *m = orc_msg("token", p->t->id);
            cJSON_AddNumberToObject(m, "branch", i);
            cJSON_AddStringToObject(m, "text", buf);
            orc_task_emit(p->t, m);
        }
        s->hit_limit = !eos && s->n_gen >= s->limit;
        if ((eos || s->hit_limit) && finish_sub(p, e, i, err)) return -err->code;
    }
    if (p->n_done < p->k) return ORC_RUNNING;
    /* "length" when any subtask was cut short: its section is unfinished */
    int cut = 0;
    for (int i = 0; i < p->k; i++) cut |= p->subs[i].hit_limit;
    emit_final(t, cut ? "length" : "stop");
    return ORC_DONE;
}

static void par_pause(orc_task *t, eng_engine *e, int paused) {
    par *p = t->impl;
    for (int i = 0; i < p->k; i++)
        if (p->subs[i].seq >= 0) eng_seq_pause(e, p->subs[i].seq, paused);
}

static void par_stop(orc_task *t, eng_engine *e, const char *reason) {
    par *p = t->impl;
    drop_subs(p, e);
    emit_final(t, reason);
}

static void par_free(void *impl) {
    par *p = impl;
    if (!p) return;
    for (int i = 0; p->subs && i < p->k; i++) { free(p->subs[i].ids); free(p->subs[i].text.p); }
    free(p->subs);
    orc_pp_agg_destroy(p->agg);
    orc_pp_schema_free(&p->schema);
    free(p);
}

/* The schema: given by the client, or detected in the prompt. */
static int get_schema(par *p, const cJSON *spec, eng_err *err) {
    if (spec) return orc_pp_schema_from_json(spec, "parallel", &p->schema, err);
    if (!p->t->q.prompt) return eng_seterr(err, ENG_EINVAL, "parallel mode needs 'parallel' or a 'prompt'");
    int rc = orc_pp_detect(p->t->q.prompt, &p->schema, err);
    if (!rc && p->schema.kind == ORC_PP_NONE)
        rc = eng_seterr(err, ENG_EINVAL, "the prompt is not parallelisable (no list of items found); "
                        "send it in chat mode or give a 'parallel' schema");
    return rc;
}

/* The context moved ahead of the item (orc_pp_hoist_context), so that every
 * subtask shares it in the KV cache and it is prefilled once, unless the
 * client's schema says "hoist_context": false. */
static int hoist(par *p, const cJSON *spec, eng_err *err) {
    const cJSON *h = spec ? cJSON_GetObjectItemCaseSensitive(spec, "hoist_context") : NULL;
    if (h && !cJSON_IsBool(h))
        return eng_seterr(err, ENG_EINVAL, "parallel: field 'hoist_context': must be true or false");
    if (cJSON_IsFalse(h)) return ENG_OK;
    orc_pp_schema hoisted;
    int rc = orc_pp_hoist_context(&p->schema, &hoisted, err);
    if (rc) return rc;
    orc_pp_schema_free(&p->schema);
    p->schema = hoisted;
    return ENG_OK;
}

static int setup(par *p, const cJSON *spec, eng_err *err) {
    char **prompts = NULL;
    int rc = get_schema(p, spec, err);
    if (!rc) rc = orc_pp_validate(&p->schema, err);
    if (!rc) rc = hoist(p, spec, err);
    if (!rc) rc = orc_pp_fill(&p->schema, &prompts, &p->k, err);
    if (!rc && !(p->subs = calloc((size_t)p->k, sizeof *p->subs)))
        rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < p->k; i++) p->subs[i].seq = -1;
    if (!rc) rc = encode_all(p, prompts, err);
    if (!rc) {
        const char *const *labels = p->schema.kind == ORC_PP_DATA ? (const char *const *)p->schema.data : NULL;
        rc = orc_pp_agg_create(p->k, labels, on_section, p, &p->agg, err);
    }
    orc_pp_strv_free(prompts, prompts ? p->k : 0);
    return rc;
}

static const orc_task_ops par_ops = { par_begin, par_end, par_pause, par_stop, par_free };

int orc_task_parallel_create(const orc_query *q, const cJSON *spec, const eng_model *m, orc_sink sink,
                             orc_task **out, eng_err *err) {
    par *p = calloc(1, sizeof *p);
    if (!p) return eng_seterr(err, ENG_ENOMEM, "out of memory creating a query");
    p->m = m;
    orc_task *t;
    int rc = orc_task_new(q, sink, &par_ops, p, &t, err);
    if (rc) return rc;
    p->t = t;
    if ((rc = setup(p, spec, err))) { orc_task_free(t); return rc; }
    *out = t;
    return ENG_OK;
}
