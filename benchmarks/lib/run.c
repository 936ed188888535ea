/* run.c — one orchestrator task driven through the scheduler to its end,
 * exactly as the server drives a query, with a sink that keeps what the
 * benchmarks read from its messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench.h"

static void keep(cJSON **slot, cJSON *m) {
    cJSON_Delete(*slot);
    *slot = m;
}

static const char *str_of(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void c_token(bench_collect *c, const cJSON *m) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(m, "branch");
    int i = cJSON_IsNumber(b) ? b->valueint : 0;
    if (i < 0 || i >= BENCH_MAX_BRANCHES) return;
    const char *text = str_of(m, "text");
    c->tokens[i]++;
    if (text && eng_buf_adds(&c->text[i], text)) c->oom = 1;
    if (i >= c->n_branches) c->n_branches = i + 1;
}

static void c_emit(void *ud, cJSON *m) {
    bench_collect *c = ud;
    const char *ty = str_of(m, "type");
    if (!ty) ty = "";
    if (!strcmp(ty, "token")) c_token(c, m);
    if (!strcmp(ty, "answer")) {
        c->t_answer = eng_now_s();
        keep(&c->answer, m);
    } else if (!strcmp(ty, "stats")) {
        keep(&c->stats, m);
    } else if (!strcmp(ty, "error")) {
        keep(&c->error, m);
    } else {
        cJSON_Delete(m);
    }
}

static void c_done(void *ud, const char *id) {
    (void)id;
    ((bench_collect *)ud)->done = 1;
}

orc_sink bench_collect_sink(bench_collect *c) {
    memset(c, 0, sizeof *c);
    return (orc_sink){ .ud = c, .emit = c_emit, .done = c_done };
}

void bench_collect_clear(bench_collect *c) {
    cJSON_Delete(c->answer);
    cJSON_Delete(c->stats);
    cJSON_Delete(c->error);
    for (int i = 0; i < BENCH_MAX_BRANCHES; i++) eng_buf_free(&c->text[i]);
    memset(c, 0, sizeof *c);
}

double bench_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int bench_write_json(const char *path, const cJSON *root) {
    char *js = cJSON_Print(root);
    FILE *f = js ? fopen(path, "w") : NULL;
    int rc = -1;
    if (f) {
        fputs(js, f);
        fputc('\n', f);
        fclose(f);
        printf("wrote %s\n", path);
        rc = 0;
    } else {
        fprintf(stderr, "cannot write %s\n", path);
    }
    cJSON_free(js);
    return rc;
}

int bench_run_task(orc_sched *s, orc_task *t, const bench_collect *c, double *t_submit,
                   eng_err *err) {
    int rc = orc_sched_submit(s, t, err);
    if (rc) { orc_task_free(t); return rc; }
    if (t_submit) *t_submit = t->t_submit;   /* the scheduler holds t until it is done */
    for (int idle = 0; !c->done;) {
        int k = orc_sched_step(s, err);
        if (k < 0) return -k;
        if (k == 0 && ++idle > 1000) {
            orc_sched_stop(s, t->id, (void *)c, "error");
            return eng_seterr(err, ENG_EINVAL, "the query never started");
        }
    }
    return c->oom ? eng_seterr(err, ENG_ENOMEM, "out of memory collecting a task's messages") : ENG_OK;
}
