/* task_chat.c — chat mode: one sequence, streamed token by token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orc.h"

typedef struct chat {
    const eng_model *m;
    int seq;                 /* -1 until admitted */
    int n_prompt, n_gen, max_gen;
    eng_tok_stream ts;
    eng_buf text;           /* the answer so far */
    double t_start, t_first;
} chat;

static int chat_begin(orc_task *t, eng_engine *e, eng_err *err) {
    chat *c = t->impl;
    if (c->seq >= 0) return ORC_RUNNING;
    int *ids = NULL, n = 0;
    int rc = orc_encode_query(&t->q, c->m, &ids, &n, err);
    if (rc) return rc;
    /* Admit only when the prompt plus a margin fits, unless nothing else runs. */
    int need = n / 16 + 2;
    if (eng_kv_free_blocks(e) < need && eng_n_live(e) > 0) { free(ids); return ORC_WAIT; }
    rc = eng_seq_add(e, ids, n, &t->q.samp, &c->seq, err);
    free(ids);
    if (!rc && t->q.spec) {   /* n-gram drafting: lossless, helps repetitive text */
        eng_spec_opts so = { .mode = ENG_SPEC_NGRAM, .adaptive = 1 };
        rc = eng_seq_spec_set(e, c->seq, &so, err);
    }
    if (rc) return rc;
    c->n_prompt = n;
    c->max_gen = orc_task_gen_limit(t, c->m, n);
    c->t_start = eng_now_s();
    return ORC_RUNNING;
}

static void emit_final(orc_task *t, const char *finish) {
    chat *c = t->impl;
    cJSON *a = orc_msg("answer", t->id);
    cJSON_AddStringToObject(a, "text", eng_buf_str(&c->text));
    cJSON_AddStringToObject(a, "finish", finish);
    orc_task_emit(t, a);
    double now = eng_now_s();
    cJSON *s = orc_msg("stats", t->id);
    cJSON_AddNumberToObject(s, "prompt_tokens", c->n_prompt);
    cJSON_AddNumberToObject(s, "tokens", c->n_gen);
    cJSON_AddNumberToObject(s, "queue_ms", c->t_start > 0 ? (c->t_start - t->t_submit) * 1e3 : 0);
    cJSON_AddNumberToObject(s, "ttft_ms", c->t_first > 0 ? (c->t_first - t->t_submit) * 1e3 : -1);
    cJSON_AddNumberToObject(s, "decode_ms", c->t_first > 0 ? (now - c->t_first) * 1e3 : 0);
    cJSON_AddNumberToObject(s, "wall_ms", (now - t->t_submit) * 1e3);
    orc_task_emit(t, s);
}

static void release(orc_task *t, eng_engine *e) {
    chat *c = t->impl;
    if (c->seq >= 0) eng_seq_remove(e, c->seq);
    c->seq = -1;
}

/* One generated token: stream it, or end the answer. 1 = finished. */
static int take_token(orc_task *t, int id, float logprob, eng_err *err) {
    chat *c = t->impl;
    if (!c->n_gen++) c->t_first = eng_now_s();
    if (orc_is_eos(eng_model_config(c->m), id)) return 1;
    char buf[1024];
    int w = eng_tok_stream_put(eng_model_tok(c->m), &c->ts, id, 1, buf, sizeof buf);
    if (eng_buf_add(&c->text, buf, (size_t)w)) return -eng_seterr(err, ENG_ENOMEM, "out of memory");
    cJSON *m = orc_msg("token", t->id);
    cJSON_AddStringToObject(m, "text", buf);
    cJSON_AddNumberToObject(m, "token", id);
    if (logprob <= 0) cJSON_AddNumberToObject(m, "logprob", logprob);
    orc_task_emit(t, m);
    return c->n_gen >= c->max_gen ? 2 : 0;
}

static int chat_end(orc_task *t, eng_engine *e, eng_err *err) {
    chat *c = t->impl;
    eng_token last;
    const int *ids;
    int n;
    if (eng_seq_last(e, c->seq, &last) || eng_seq_new_tokens(e, c->seq, &ids, &n))
        return -eng_seterr(err, ENG_EINVAL, "lost sequence");
    /* A speculative step may bring several tokens; only the last has its
     * log-prob at hand (others report none). */
    for (int i = 0; i < n; i++) {
        int r = take_token(t, ids[i], i == n - 1 ? last.logprob : 1.0f, err);
        if (r < 0) return r;
        if (r) {
            emit_final(t, r == 1 ? "stop" : "length");
            release(t, e);
            return ORC_DONE;
        }
    }
    return ORC_RUNNING;
}

static void chat_pause(orc_task *t, eng_engine *e, int paused) {
    chat *c = t->impl;
    if (c->seq >= 0) eng_seq_pause(e, c->seq, paused);
}

static void chat_stop(orc_task *t, eng_engine *e, const char *reason) {
    emit_final(t, reason);
    release(t, e);
}

static void chat_free(void *impl) {
    chat *c = impl;
    if (c) free(c->text.p);
    free(c);
}

static const orc_task_ops chat_ops = { chat_begin, chat_end, chat_pause, chat_stop, chat_free };

int orc_task_chat_create(const orc_query *q, const eng_model *m, orc_sink sink,
                         orc_task **out, eng_err *err) {
    chat *c = calloc(1, sizeof *c);
    if (!c) return eng_seterr(err, ENG_ENOMEM, "out of memory creating a query");
    c->m = m;
    c->seq = -1;
    return orc_task_new(q, sink, &chat_ops, c, out, err);
}
