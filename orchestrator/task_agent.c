/* task_agent.c — agent mode: decode, run tools as their calls stream in
 * (partial execution), feed results back, decode again.
 *
 * Tool calls are parsed and started by tools/tool_sched.c while the model is
 * still decoding.  When a turn ends (end-of-turn token) with calls in it, the
 * sequence is paused and a collector thread waits for the results, so the
 * engine thread never blocks; begin() returns ORC_WAIT until they are in.
 *
 * Turns are written by the model's chat template (eng_chat_render): the
 * system message with the tool list first, then after each turn with calls
 * the results as tool messages (a continuation after the turn's end token).
 * A turn ends on the model's end-of-sequence token or on the template's
 * end-of-turn token (eng_chat_end_token): checkpoints whose config names
 * another end token (base models, random-weight models) would otherwise
 * decode past the end of every turn. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orc.h"

typedef struct agent {
    orc_task *task;
    orc_query q;
    orc_agent_opts o;
    const eng_model *m;
    orc_sink sink;
    char id[64];
    tool_sched *ts;
    eng_chat *chat;         /* the model's chat template */
    int seq, n_prompt, n_gen, turn, turn_tokens, end_tok;
    eng_tok_stream stream;
    eng_buf text;           /* the current turn's text (the last one is the answer) */
    /* collector thread of the current turn */
    pthread_t collector;
    int collecting;
    atomic_int collected;
    tool_result *res;
    int n_res;
    eng_err cerr;
    double t_start, t_first, tool_wait_s, t_wait_start;
    int n_calls_total, n_early;
    /* per-turn timings for the stats message (benchmarks split a request's
     * time into prefill, decode and tool wait with them) */
    cJSON *turn_log;
    double t_turn, t_turn_first;
    int n_appended;
} agent;

static const char *default_system =
    "You are a helpful assistant. Use the tools when they help; answer briefly.";

/* Parser events of the scheduler: announce each call once its text is complete. */
static void on_tool_event(void *ud, const tool_event *ev) {
    agent *a = ud;
    if (ev->type != TOOL_EV_CALL_END && ev->type != TOOL_EV_CALL_ERROR) return;
    cJSON *m = orc_msg("tool_call", a->id);
    cJSON_AddNumberToObject(m, "turn", a->turn);
    cJSON_AddNumberToObject(m, "call", ev->call);
    if (ev->name) cJSON_AddStringToObject(m, "name", ev->name);
    if (ev->type == TOOL_EV_CALL_END && ev->value)
        cJSON_AddItemToObject(m, "arguments", cJSON_Duplicate(ev->value, 1));
    if (ev->type == TOOL_EV_CALL_ERROR) cJSON_AddStringToObject(m, "error", ev->text ? ev->text : "malformed call");
    a->sink.emit(a->sink.ud, m);
}

/* Forces this turn's scripted text, when there is a script. */
static int force_script(agent *a, eng_engine *e, eng_err *err) {
    if (a->turn >= a->o.n_script) return ENG_OK;
    const char *t = a->o.script[a->turn];
    int *ids = NULL, n = 0;
    int rc = eng_tok_encode(eng_model_tok(a->m), t, strlen(t), 1, &ids, &n, err);
    if (!rc && n) rc = eng_seq_force(e, a->seq, ids, n, err);
    free(ids);
    return rc;
}

static int start(agent *a, eng_engine *e, eng_err *err) {
    char *tools = tool_registry_json(a->o.tools);
    /* system message (ours) + the client's messages or prompt */
    int n_user = a->q.messages ? a->q.n_messages : 1;
    eng_chat_msg *msgs = calloc((size_t)n_user + 1, sizeof *msgs);
    if (!msgs || !tools) { free(msgs); free(tools); return eng_seterr(err, ENG_ENOMEM, "out of memory"); }
    msgs[0] = (eng_chat_msg){ .role = "system", .content = a->o.system ? a->o.system : default_system };
    if (a->q.messages) memcpy(msgs + 1, a->q.messages, (size_t)n_user * sizeof *msgs);
    else msgs[1] = (eng_chat_msg){ .role = "user", .content = a->q.prompt ? a->q.prompt : "" };
    eng_chat_opts co = { .tools_json = tools, .add_generation_prompt = 1 };
    int *ids = NULL, n = 0, room = a->q.max_tokens;
    int rc = eng_chat_render(a->chat, msgs, n_user + 1, &co, &ids, &n, NULL, err);
    free(msgs);
    free(tools);
    if (!rc) rc = orc_fit_context(a->m, n, &room, err);
    if (!rc) rc = eng_seq_add(e, ids, n, &a->q.samp, &a->seq, err);
    free(ids);
    if (rc == ENG_EFULL && eng_n_live(e) > 0) return ORC_WAIT;   /* every sequence slot is taken */
    if (rc) return rc;
    a->n_prompt = n;
    a->t_start = a->t_turn = eng_now_s();
    return force_script(a, e, err);
}

static void *collect_main(void *ud) {
    agent *a = ud;
    tool_sched_collect(a->ts, &a->res, &a->n_res, &a->cerr);
    atomic_store(&a->collected, 1);
    return NULL;
}

/* The turn that just ended, in the stats' "turn_log": tokens, time from the
 * turn's start (its input queued) to its first token and to its last. */
static void log_turn_end(agent *a) {
    double now = eng_now_s();
    cJSON *l = a->turn_log ? cJSON_CreateObject() : NULL;
    if (!l) return;
    cJSON_AddNumberToObject(l, "tokens", a->turn_tokens);
    cJSON_AddNumberToObject(l, "first_ms", a->t_turn_first > 0 ? (a->t_turn_first - a->t_turn) * 1e3 : -1);
    cJSON_AddNumberToObject(l, "end_ms", (now - a->t_turn) * 1e3);
    cJSON_AddItemToArray(a->turn_log, l);
}

/* Completes the last logged turn with its tool wait and the result tokens
 * fed back; the next turn starts now. */
static void log_resume(agent *a, int n_appended) {
    double now = eng_now_s();
    cJSON *l = cJSON_GetArrayItem(a->turn_log, cJSON_GetArraySize(a->turn_log) - 1);
    if (l) {
        cJSON_AddNumberToObject(l, "wait_ms", (now - a->t_wait_start) * 1e3);
        cJSON_AddNumberToObject(l, "result_tokens", n_appended);
    }
    a->n_appended += n_appended;
    a->t_turn = now;
    a->t_turn_first = 0;
}

/* Tokens the sequence holds: the prompt, every turn's output, every tool turn. */
static int seq_len(const agent *a) { return a->n_prompt + a->n_gen + a->n_appended; }

static void emit_final(orc_task *t, const char *finish);

/* Ends the query with its final messages; end() then reports it done. */
static void finish(agent *a, eng_engine *e, const char *why) {
    tool_sched_cancel(a->ts);
    emit_final(a->task, why);
    eng_seq_remove(e, a->seq);
    a->seq = -2;
}

/* Tool results are in: report them and append them as tool messages. */
static int resume(agent *a, eng_engine *e, eng_err *err) {
    pthread_join(a->collector, NULL);
    a->collecting = 0;
    a->tool_wait_s += eng_now_s() - a->t_wait_start;
    for (int i = 0; i < a->n_res; i++) {
        tool_result *r = &a->res[i];
        cJSON *m = orc_msg("tool_result", a->id);
        cJSON_AddNumberToObject(m, "turn", a->turn);
        cJSON_AddNumberToObject(m, "call", r->call);
        if (r->name) cJSON_AddStringToObject(m, "name", r->name);
        cJSON_AddBoolToObject(m, "error", r->is_error);
        cJSON_AddStringToObject(m, "result", r->text ? r->text : "");
        cJSON_AddBoolToObject(m, "early", r->early);
        cJSON_AddNumberToObject(m, "ms", r->t_done > r->t_start ? (r->t_done - r->t_start) * 1e3 : 0);
        a->sink.emit(a->sink.ud, m);
        a->n_early += r->early;
    }
    a->n_calls_total += a->n_res;
    /* The results as tool messages after the turn (whose end-of-turn token
     * the model sampled is already pending), then the generation prompt. */
    eng_chat_msg *msgs = calloc((size_t)a->n_res + 1, sizeof *msgs);
    char **texts = calloc((size_t)a->n_res + 1, sizeof *texts);
    int rc = msgs && texts ? ENG_OK : eng_seterr(err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < a->n_res && !rc; i++) {
        tool_result *r = &a->res[i];
        eng_buf b = {0};
        eng_buf_printf(&b, "%s%s", r->is_error ? "Error: " : "", r->text ? r->text : "");
        if (!(texts[i] = eng_buf_take(&b))) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
        msgs[i] = (eng_chat_msg){ .role = "tool", .content = texts[i], .name = r->name };
    }
    int *ids = NULL, n = 0;
    eng_chat_opts co = { .add_generation_prompt = 1, .continuation = 1 };
    if (!rc) rc = eng_chat_render(a->chat, msgs, a->n_res, &co, &ids, &n, NULL, err);
    for (int i = 0; texts && i < a->n_res; i++) free(texts[i]);
    free(texts);
    free(msgs);
    tool_results_free(a->res, a->n_res);
    a->res = NULL;
    a->n_res = 0;
    if (!rc && seq_len(a) + n >= eng_model_config(a->m)->max_pos) {
        free(ids);   /* the results do not fit the context: the answer so far is the answer */
        finish(a, e, "length");
        return ENG_OK;
    }
    if (!rc) rc = eng_seq_append(e, a->seq, ids, n, err);
    free(ids);
    if (rc) return rc;
    log_resume(a, n);
    a->turn++;
    a->turn_tokens = 0;
    eng_buf_clear(&a->text);
    a->stream.n_pend = 0;
    eng_seq_pause(e, a->seq, 0);
    return force_script(a, e, err);
}

static int agent_begin(orc_task *t, eng_engine *e, eng_err *err) {
    agent *a = t->impl;
    if (a->seq == -1) {
        int rc = start(a, e, err);
        return rc == ORC_WAIT ? ORC_WAIT : rc ? err->code : ORC_RUNNING;
    }
    if (!a->collecting) return ORC_RUNNING;
    if (!atomic_load(&a->collected)) return ORC_WAIT;
    return resume(a, e, err) ? err->code : ORC_RUNNING;
}

static void emit_final(orc_task *t, const char *finish) {
    agent *a = t->impl;
    cJSON *m = orc_msg("answer", a->id);
    cJSON_AddStringToObject(m, "text", eng_buf_str(&a->text));
    cJSON_AddStringToObject(m, "finish", finish);
    a->sink.emit(a->sink.ud, m);
    double now = eng_now_s();
    cJSON *s = orc_msg("stats", a->id);
    cJSON_AddNumberToObject(s, "prompt_tokens", a->n_prompt);
    cJSON_AddNumberToObject(s, "tokens", a->n_gen);
    cJSON_AddNumberToObject(s, "turns", a->turn + 1);
    cJSON_AddNumberToObject(s, "tool_calls", a->n_calls_total);
    cJSON_AddNumberToObject(s, "tool_calls_early", a->n_early);
    cJSON_AddNumberToObject(s, "tool_wait_ms", a->tool_wait_s * 1e3);
    cJSON_AddNumberToObject(s, "result_tokens", a->n_appended);
    cJSON_AddNumberToObject(s, "ttft_ms", a->t_first > 0 ? (a->t_first - t->t_submit) * 1e3 : -1);
    cJSON_AddNumberToObject(s, "wall_ms", (now - t->t_submit) * 1e3);
    if (a->turn_log) cJSON_AddItemToObject(s, "turn_log", a->turn_log);
    a->turn_log = NULL;
    a->sink.emit(a->sink.ud, s);
}

/* Ends a turn on the end-of-turn token: tools, or the final answer. */
static int end_turn(orc_task *t, eng_engine *e, eng_err *err) {
    agent *a = t->impl;
    int max_turns = a->o.max_turns > 0 ? a->o.max_turns : 8;
    log_turn_end(a);
    if (a->o.tool_start >= ORC_TOOLS_TURN_END)   /* the whole turn at once, now */
        tool_sched_feed(a->ts, eng_buf_str(&a->text), a->text.n);
    if (tool_sched_n_calls(a->ts) == 0 || a->turn + 1 >= max_turns) {
        if (tool_sched_n_calls(a->ts)) tool_sched_cancel(a->ts);
        emit_final(t, tool_sched_n_calls(a->ts) ? "turns" : "stop");
        eng_seq_remove(e, a->seq);
        a->seq = -2;
        return ORC_DONE;
    }
    eng_seq_pause(e, a->seq, 1);
    atomic_store(&a->collected, 0);
    a->t_wait_start = eng_now_s();
    if (pthread_create(&a->collector, NULL, collect_main, a))
        return -eng_seterr(err, ENG_ENOMEM, "cannot start a tool collector thread");
    a->collecting = 1;
    return ORC_RUNNING;
}

static int agent_end(orc_task *t, eng_engine *e, eng_err *err) {
    agent *a = t->impl;
    eng_token tk;
    if (a->seq == -2) return ORC_DONE;   /* finished in begin() (tool results past the context) */
    if (eng_seq_last(e, a->seq, &tk)) return -eng_seterr(err, ENG_EINVAL, "lost sequence");
    if (!a->n_gen++) a->t_first = eng_now_s();
    if (!a->turn_tokens++) a->t_turn_first = eng_now_s();
    if (orc_is_eos(eng_model_config(a->m), tk.id) || tk.id == a->end_tok) return end_turn(t, e, err);
    char buf[1024];
    int w = eng_tok_stream_put(eng_model_tok(a->m), &a->stream, tk.id, 1, buf, sizeof buf);
    if (eng_buf_add(&a->text, buf, (size_t)w)) return -eng_seterr(err, ENG_ENOMEM, "out of memory");
    if (a->o.tool_start <= ORC_TOOLS_CALL_END) tool_sched_feed(a->ts, buf, (size_t)w);
    cJSON *m = orc_msg("token", a->id);
    cJSON_AddStringToObject(m, "text", buf);
    cJSON_AddNumberToObject(m, "token", tk.id);
    cJSON_AddNumberToObject(m, "logprob", tk.logprob);
    a->sink.emit(a->sink.ud, m);
    if (a->n_gen >= a->q.max_tokens || seq_len(a) >= eng_model_config(a->m)->max_pos) {
        finish(a, e, "length");
        return ORC_DONE;
    }
    return ORC_RUNNING;
}

static void agent_pause(orc_task *t, eng_engine *e, int paused) {
    agent *a = t->impl;
    if (a->seq >= 0 && !a->collecting) eng_seq_pause(e, a->seq, paused);
}

static void agent_stop(orc_task *t, eng_engine *e, const char *reason) {
    agent *a = t->impl;
    if (a->ts) tool_sched_cancel(a->ts);
    if (a->collecting) {
        pthread_join(a->collector, NULL);
        a->collecting = 0;
        tool_results_free(a->res, a->n_res);
        a->res = NULL;
    }
    if (a->seq != -2) emit_final(t, reason);
    if (a->seq >= 0) eng_seq_remove(e, a->seq);
    a->seq = -2;
}

/* The task keeps its own copy of the script: the caller's strings may go. */
static int copy_script(orc_agent_opts *o, const char *const *src, int n) {
    char **sc = calloc((size_t)n, sizeof *sc);
    if (!sc) return -1;
    o->script = (const char *const *)sc;
    for (int i = 0; i < n; i++, o->n_script++)
        if (!(sc[i] = strdup(src[i] ? src[i] : ""))) return -1;
    return 0;
}

static void free_script(orc_agent_opts *o) {
    for (int i = 0; i < o->n_script; i++) free((char *)o->script[i]);
    free((void *)o->script);
    o->script = NULL;
    o->n_script = 0;
}

static void agent_destroy(orc_task *t) {
    agent *a = t->impl;
    if (a->collecting) pthread_join(a->collector, NULL);
    tool_results_free(a->res, a->n_res);
    tool_sched_destroy(a->ts);
    eng_chat_free(a->chat);
    orc_query_free(&a->q);
    free_script(&a->o);
    free(a->text.p);
    cJSON_Delete(a->turn_log);
    free(a);
    free(t);
}

int orc_task_agent_create(const orc_query *q, const eng_model *m, orc_sink sink,
                          const orc_agent_opts *o, orc_task **out, eng_err *err) {
    if (!o || !o->tools) return eng_seterr(err, ENG_EINVAL, "agent mode needs a tool registry");
    orc_task *t = calloc(1, sizeof *t);
    agent *a = calloc(1, sizeof *a);
    if (!t || !a || orc_query_copy(&a->q, q)) {
        if (a) orc_query_free(&a->q);
        free(t);
        free(a);
        return eng_seterr(err, ENG_ENOMEM, "out of memory creating a query");
    }
    a->o = *o;
    a->o.script = NULL;
    a->o.n_script = 0;
    if (o->n_script > 0 && copy_script(&a->o, o->script, o->n_script)) {
        free_script(&a->o);
        orc_query_free(&a->q);
        free(a);
        free(t);
        return eng_seterr(err, ENG_ENOMEM, "out of memory copying a script");
    }
    a->m = m;
    a->sink = sink;
    a->seq = -1;
    a->turn_log = cJSON_CreateArray();
    if (a->q.max_tokens <= 0) a->q.max_tokens = 1024;
    snprintf(a->id, sizeof a->id, "%s", q->id);
    tool_sched_opts so = { .no_partial = o->tool_start != ORC_TOOLS_PARTIAL,
                           .n_workers = o->tool_start == ORC_TOOLS_TURN_SERIAL ? 1 : 0,
                           .on_event = on_tool_event, .user = a };
    int rc = eng_chat_create(m, &a->chat, err);
    if (!rc) rc = tool_sched_create(o->tools, &so, &a->ts, err);
    if (rc) {
        eng_chat_free(a->chat);
        orc_query_free(&a->q);
        free_script(&a->o);
        cJSON_Delete(a->turn_log);
        free(a);
        free(t);
        return rc;
    }
    a->end_tok = eng_chat_end_token(a->chat);
    snprintf(t->id, sizeof t->id, "%s", q->id);
    t->sink = sink;
    t->impl = a;
    a->task = t;
    t->begin = agent_begin;
    t->end = agent_end;
    t->set_paused = agent_pause;
    t->stop = agent_stop;
    t->destroy = agent_destroy;
    *out = t;
    return ENG_OK;
}
