/* sched.c — runs many orchestrator tasks over one engine, one engine step per
 * round, so every query shares the continuous batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orc.h"

struct orc_sched {
    eng_engine *e;
    orc_task **tasks;    /* live and queued, in arrival order */
    int n, cap;
    int max_queued;      /* tasks not started yet, at most */
    long long steps, tokens;
    double step_seconds;
    int batch_seqs;
};

int orc_is_eos(const eng_config *c, int id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return 1;
    return 0;
}

int orc_fit_context(const eng_model *m, int n_prompt, int *max_tokens, eng_err *err) {
    int ctx = eng_model_config(m)->max_pos, room = ctx - n_prompt;
    if (room < 1)
        return eng_seterr(err, ORC_ETOOLONG, "the prompt is %d tokens; the model's context holds %d, "
                          "prompt and answer together", n_prompt, ctx);
    if (*max_tokens > room) *max_tokens = room;
    return ENG_OK;
}

cJSON *orc_msg(const char *type, const char *id) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    cJSON_AddStringToObject(m, "type", type);
    if (id && *id) cJSON_AddStringToObject(m, "id", id);
    return m;
}

/* Messages through the model's chat template (eng_chat_render: special
 * tokens only in the template's markers, so a user who types "<|im_end|>"
 * gets text, not a forged turn); a raw prompt as plain text after the
 * model's BOS where its tokenizer adds one (eng_tok_encode_prompt). */
int orc_encode_query(const orc_query *q, const eng_model *m, int **ids, int *n, eng_err *err) {
    int rc;
    *ids = NULL;
    *n = 0;
    if (!q->messages) {
        const char *p = q->prompt ? q->prompt : "";
        rc = eng_tok_encode_prompt(eng_model_tok(m), p, strlen(p), ids, n, err);
    } else {
        eng_chat *c = NULL;
        eng_chat_opts o = { .add_generation_prompt = 1, .tools_json = q->tools_json, .prefill = q->prefill };
        if (!(rc = eng_chat_create(m, &c, err)))
            rc = eng_chat_render(c, q->messages, q->n_messages, &o, ids, n, NULL, err);
        eng_chat_free(c);
    }
    /* a BOS alone is still an empty prompt */
    if (!rc && (*n == 0 || (!q->messages && !*(q->prompt ? q->prompt : ""))))
        rc = eng_seterr(err, ENG_EINVAL, "the prompt is empty");
    if (rc) { free(*ids); *ids = NULL; *n = 0; }
    return rc;
}

static void free_msg(eng_chat_msg *m) {
    free((char *)m->role);
    free((char *)m->content);
    free((char *)m->reasoning);
    free((char *)m->tool_call_id);
    free((char *)m->name);
    for (int k = 0; k < m->n_tool_calls; k++) {
        free((char *)m->tool_calls[k].name);
        free((char *)m->tool_calls[k].arguments);
        free((char *)m->tool_calls[k].id);
    }
    free((void *)m->tool_calls);
}

void orc_query_free(orc_query *q) {
    if (!q) return;
    free(q->prompt);
    for (int i = 0; i < q->n_messages; i++) free_msg(&q->messages[i]);
    free(q->messages);
    free(q->tools_json);
    free(q->prefill);
    free(q->script);
    for (int i = 0; i < q->n_stop; i++) free(q->stop[i]);
    memset(q, 0, sizeof *q);
}

/* strdup that keeps NULL; *bad set when memory ran out. */
static char *dup_or_null(const char *s, int *bad) {
    char *d = s ? strdup(s) : NULL;
    if (s && !d) *bad = 1;
    return d;
}

static int copy_msg(eng_chat_msg *d, const eng_chat_msg *m) {
    int bad = 0;
    memset(d, 0, sizeof *d);
    d->role = dup_or_null(m->role, &bad);
    d->content = dup_or_null(m->content, &bad);
    d->reasoning = dup_or_null(m->reasoning, &bad);
    d->tool_call_id = dup_or_null(m->tool_call_id, &bad);
    d->name = dup_or_null(m->name, &bad);
    if (m->n_tool_calls > 0) {
        eng_chat_call *calls = calloc((size_t)m->n_tool_calls, sizeof *calls);
        if (!calls) return -1;
        d->tool_calls = calls;
        for (int k = 0; k < m->n_tool_calls; k++, d->n_tool_calls++) {
            calls[k].name = dup_or_null(m->tool_calls[k].name, &bad);
            calls[k].arguments = dup_or_null(m->tool_calls[k].arguments, &bad);
            calls[k].id = dup_or_null(m->tool_calls[k].id, &bad);
        }
    }
    return bad ? -1 : 0;
}

int orc_query_copy(orc_query *dst, const orc_query *q) {
    int bad = 0;
    *dst = *q;
    dst->messages = NULL;
    dst->n_messages = 0;
    dst->n_stop = 0;
    dst->prompt = dup_or_null(q->prompt, &bad);
    dst->tools_json = dup_or_null(q->tools_json, &bad);
    dst->prefill = dup_or_null(q->prefill, &bad);
    dst->script = dup_or_null(q->script, &bad);
    for (int i = 0; i < q->n_stop; i++, dst->n_stop++) dst->stop[i] = dup_or_null(q->stop[i], &bad);
    if (q->n_messages) {
        dst->messages = calloc((size_t)q->n_messages, sizeof *dst->messages);
        if (!dst->messages) return -1;
        for (int i = 0; i < q->n_messages; i++, dst->n_messages++)
            if (copy_msg(&dst->messages[i], &q->messages[i])) { dst->n_messages++; return -1; }
    }
    return bad ? -1 : 0;
}

int orc_sched_create(eng_engine *e, int max_queued, orc_sched **out, eng_err *err) {
    orc_sched *s = calloc(1, sizeof *s);
    if (!s) return eng_seterr(err, ENG_ENOMEM, "out of memory creating the scheduler");
    s->e = e;
    s->max_queued = max_queued > 0 ? max_queued : 1;
    *out = s;
    return ENG_OK;
}

/* Tasks not started yet (waiting for sequence slots or KV room). */
static int n_queued(const orc_sched *s) {
    int k = 0;
    for (int i = 0; i < s->n; i++) k += !s->tasks[i]->started;
    return k;
}

static void drop(orc_sched *s, int i) {
    orc_task *t = s->tasks[i];
    if (t->sink.done) t->sink.done(t->sink.ud, t->id);
    orc_task_free(t);
    memmove(s->tasks + i, s->tasks + i + 1, (size_t)(s->n - i - 1) * sizeof *s->tasks);
    s->n--;
}

void orc_sched_destroy(orc_sched *s) {
    if (!s) return;
    orc_sched_stop_all(s, NULL, "shutdown");
    free(s->tasks);
    free(s);
}

/* A task that cannot start yet hears its place in the queue:
 * {"type":"queued","id":...,"position":p}, p = 1 for the next to start. */
static void tell_queued(orc_task *t, int position) {
    cJSON *m = orc_msg("queued", t->id);
    cJSON_AddNumberToObject(m, "position", position);
    t->sink.emit(t->sink.ud, m);
}

int orc_sched_submit(orc_sched *s, orc_task *t, eng_err *err) {
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 64;
        orc_task **p = realloc(s->tasks, (size_t)nc * sizeof *p);
        if (!p) return eng_seterr(err, ENG_ENOMEM, "out of memory queueing a query");
        s->tasks = p;
        s->cap = nc;
    }
    /* Admission now, so that the queue holds only what really waits: a task
     * starts at once when the engine has a sequence slot and KV room for it. */
    int waiting = n_queued(s);
    if (waiting >= s->max_queued)
        return eng_seterr(err, ENG_EFULL, "server busy: %d queries are already waiting for the engine "
                          "(the queue's limit); try again shortly", s->max_queued);
    t->t_submit = eng_now_s();
    int r = t->ops->begin(t, s->e, err);
    if (r != ENG_OK && r != ORC_WAIT) return r;
    t->started = r == ENG_OK;
    s->tasks[s->n++] = t;
    if (!t->started) tell_queued(t, waiting + 1);
    return ENG_OK;
}

int orc_sched_stop(orc_sched *s, const char *id, void *sink_ud, const char *reason) {
    for (int i = 0; i < s->n; i++) {
        orc_task *t = s->tasks[i];
        if (strcmp(t->id, id) || (sink_ud && t->sink.ud != sink_ud)) continue;
        t->ops->stop(t, s->e, reason);
        drop(s, i);
        return 1;
    }
    return 0;
}

int orc_sched_has(const orc_sched *s, const char *id, void *sink_ud) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->tasks[i]->id, id) && s->tasks[i]->sink.ud == sink_ud) return 1;
    return 0;
}

int orc_sched_stop_all(orc_sched *s, void *sink_ud, const char *reason) {
    int k = 0;
    for (int i = s->n - 1; i >= 0; i--) {
        orc_task *t = s->tasks[i];
        if (sink_ud && t->sink.ud != sink_ud) continue;
        t->ops->stop(t, s->e, reason);
        drop(s, i);
        k++;
    }
    return k;
}

/* Pauses tasks whose reader is behind, resumes those that caught up. */
static void apply_backpressure(orc_sched *s) {
    for (int i = 0; i < s->n; i++) {
        orc_task *t = s->tasks[i];
        int c = t->started && t->sink.congested && t->sink.congested(t->sink.ud);
        if (c != t->paused) {
            t->ops->set_paused(t, s->e, c);
            t->paused = c;
        }
    }
}

/* A task whose begin/end failed gets an error message and is removed. */
static void fail_task(orc_sched *s, int i, const eng_err *err) {
    orc_task *t = s->tasks[i];
    cJSON *m = orc_msg("error", t->id);
    const char *code = err->code == ENG_EFULL ? "busy" : err->code == ORC_ETOOLONG ? "prompt_too_long"
                     : "engine";
    cJSON_AddStringToObject(m, "code", code);
    /* the engine's own words name its internals: a client gets what happened */
    cJSON_AddStringToObject(m, "message", err->code == ENG_EFULL
        ? "the server ran out of KV cache room for this query; try again shortly" : err->msg);
    t->sink.emit(t->sink.ud, m);
    t->ops->stop(t, s->e, "error");
    drop(s, i);
}

int orc_sched_step(orc_sched *s, eng_err *err) {
    apply_backpressure(s);
    int active = 0;
    for (int i = 0; i < s->n; i++) {
        orc_task *t = s->tasks[i];
        t->in_round = 0;
        if (t->paused) continue;
        eng_err e2 = { 0 };
        int r = t->ops->begin(t, s->e, &e2);
        if (r == ORC_WAIT) continue;
        if (r) { fail_task(s, i--, &e2); continue; }
        t->started = t->in_round = 1;
        active++;
    }
    if (!active) return 0;
    s->batch_seqs = eng_n_live(s->e);
    double t0 = eng_now_s();
    int rc = eng_step(s->e, err);
    s->step_seconds += eng_now_s() - t0;
    if (rc == ENG_EFULL && s->n > 0) {
        /* Out of KV blocks: the newest query gives way so the rest go on. */
        fail_task(s, s->n - 1, err);
        return 1;
    }
    if (rc) return -rc;
    s->steps++;
    s->tokens += eng_step_tokens(s->e);
    for (int i = 0; i < s->n; i++) {
        orc_task *t = s->tasks[i];
        if (!t->in_round) continue;
        eng_err e2 = { 0 };
        int r = t->ops->end(t, s->e, &e2);
        if (r < 0) fail_task(s, i--, &e2);
        else if (r == ORC_DONE) drop(s, i--);
    }
    return 1;
}

void orc_sched_get_stats(const orc_sched *s, orc_sched_stats *st) {
    memset(st, 0, sizeof *st);
    for (int i = 0; i < s->n; i++) {
        if (s->tasks[i]->started) st->live_tasks++;
        else st->queued_tasks++;
    }
    st->batch_seqs = s->batch_seqs;
    st->steps = s->steps;
    st->tokens = s->tokens;
    st->step_seconds = s->step_seconds;
    st->kv_free_blocks = eng_kv_free_blocks(s->e);
}
