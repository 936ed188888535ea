/* task.c — what every mode's task shares: its own copy of the query (with
 * the one default token budget), the sink, the mode's ops table and state. */
#include <stdio.h>
#include <stdlib.h>
#include "orc.h"

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
