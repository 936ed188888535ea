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
    long long steps, tokens;
    double step_seconds;
    int batch_seqs;
};

int orc_sched_create(eng_engine *e, int max_tasks, orc_sched **out, eng_err *err) {
    orc_sched *s = calloc(1, sizeof *s);
    if (!s || !(s->tasks = calloc((size_t)max_tasks, sizeof *s->tasks))) {
        free(s);
        return eng_seterr(err, ENG_ENOMEM, "out of memory creating the scheduler");
    }
    s->e = e;
    s->cap = max_tasks;
    *out = s;
    return ENG_OK;
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

int orc_sched_submit(orc_sched *s, orc_task *t, eng_err *err) {
    if (s->n == s->cap)
        return eng_seterr(err, ENG_EFULL, "server busy: %d queries in flight", s->cap);
    t->t_submit = eng_now_s();
    s->tasks[s->n++] = t;
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
    cJSON_AddStringToObject(m, "code", err->code == ENG_EFULL ? "busy" : "engine");
    cJSON_AddStringToObject(m, "message", err->msg);
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
