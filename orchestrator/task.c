/* task.c — what every mode's task shares: its own copy of the query, the
 * sink, the ops table, and small helpers (end of sequence, messages, the
 * prompt's token ids, the generation limit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orc.h"

int orc_is_eos(const eng_config *c, int id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return 1;
    return 0;
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
 * gets text, not a forged turn); a raw prompt as plain text. */
int orc_encode_query(const orc_query *q, const eng_model *m, int **ids, int *n, eng_err *err) {
    int rc;
    *ids = NULL;
    *n = 0;
    if (!q->messages) {
        const char *p = q->prompt ? q->prompt : "";
        rc = eng_tok_encode(eng_model_tok(m), p, strlen(p), 0, ids, n, err);
    } else {
        eng_chat *c = NULL;
        eng_chat_opts o = { .add_generation_prompt = 1 };
        if (!(rc = eng_chat_create(m, &c, err)))
            rc = eng_chat_render(c, q->messages, q->n_messages, &o, ids, n, NULL, err);
        eng_chat_free(c);
    }
    if (!rc && *n == 0) rc = eng_seterr(err, ENG_EINVAL, "the prompt is empty");
    if (rc) { free(*ids); *ids = NULL; *n = 0; }
    return rc;
}

void orc_query_free(orc_query *q) {
    if (!q) return;
    free(q->prompt);
    for (int i = 0; i < q->n_messages; i++) {
        free((char *)q->messages[i].role);
        free((char *)q->messages[i].content);
    }
    free(q->messages);
    memset(q, 0, sizeof *q);
}

int orc_query_copy(orc_query *dst, const orc_query *q) {
    *dst = *q;
    dst->prompt = NULL;
    dst->messages = NULL;
    dst->n_messages = 0;
    if (q->prompt && !(dst->prompt = strdup(q->prompt))) return -1;
    if (q->n_messages) {
        dst->messages = calloc((size_t)q->n_messages, sizeof *dst->messages);
        if (!dst->messages) return -1;
        for (int i = 0; i < q->n_messages; i++, dst->n_messages++) {
            dst->messages[i].role = strdup(q->messages[i].role);
            dst->messages[i].content = strdup(q->messages[i].content);
            if (!dst->messages[i].role || !dst->messages[i].content) { dst->n_messages++; return -1; }
        }
    }
    return 0;
}

int orc_task_new(const orc_query *q, orc_sink sink, const orc_task_ops *ops, void *impl,
                 orc_task **out, eng_err *err) {
    *out = NULL;
    orc_task *t = calloc(1, sizeof *t);
    if (!t || orc_query_copy(&t->q, q)) {
        if (t) orc_query_free(&t->q);
        free(t);
        ops->free(impl);
        return eng_seterr(err, ENG_ENOMEM, "out of memory creating a query");
    }
    if (t->q.max_tokens <= 0) t->q.max_tokens = ORC_MAX_TOKENS;
    snprintf(t->id, sizeof t->id, "%s", q->id);
    t->sink = sink;
    t->ops = ops;
    t->impl = impl;
    *out = t;
    return ENG_OK;
}

void orc_task_free(orc_task *t) {
    if (!t) return;
    t->ops->free(t->impl);
    orc_query_free(&t->q);
    free(t);
}

void orc_task_emit(orc_task *t, cJSON *msg) {
    if (msg) t->sink.emit(t->sink.ud, msg);
}

int orc_task_gen_limit(const orc_task *t, const eng_model *m, int n_prompt) {
    int room = eng_model_config(m)->max_pos - n_prompt;
    if (room < 0) room = 0;
    return t->q.max_tokens < room ? t->q.max_tokens : room;
}
