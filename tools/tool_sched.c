/* tool_sched.c — runs the calls found in model output on worker threads.
 *
 * Partial execution: when every early argument a tool declares is complete
 * (ARG_DONE events) the call is queued at once with the arguments complete
 * so far, while the model is still decoding the rest.  At CALL_END the run is
 * kept if the final arguments equal the ones it started with; otherwise it is
 * cancelled (its result thrown away) and the call runs again.  Calls without
 * early arguments start at CALL_END, so a batch of calls starts one by one as
 * each closes.  Results are collected in call order. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tool_internal.h"

enum { J_QUEUED, J_RUNNING, J_DONE };

typedef struct job {
    char *name;
    cJSON *args;             /* what this run was started with */
    atomic_int cancel;
    int state;               /* J_*, under the scheduler's mutex */
    int abandoned;           /* result unwanted; the worker frees the job */
    double timeout_s, t_run;
    tool_result res;
    struct job *next;
} job;

typedef struct call {
    char *name;
    const tool_def *def;
    cJSON *acc;              /* arguments completed so far */
    cJSON *final;
    char *error;             /* CALL_ERROR message */
    job *run;
    int ended, early, restarts;
    double t_end;
} call;

struct tool_sched {
    const tool_registry *reg;
    tool_sched_opts o;
    tool_parser *parser;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_t *threads;
    int n_threads, stop, cancelled;
    job *qhead, *qtail;
    call *calls;
    int n_calls, cap_calls;
};

static void job_free(job *j) {
    if (!j) return;
    free(j->name);
    cJSON_Delete(j->args);
    tool_result_clear(&j->res);
    free(j);
}

/* ----------------------------------------------------------------- workers */
static void *worker(void *arg) {
    tool_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->qhead && !s->stop) pthread_cond_wait(&s->work, &s->mu);
        if (!s->qhead) break;              /* stopping and nothing queued */
        job *j = s->qhead;
        s->qhead = j->next;
        if (!s->qhead) s->qtail = NULL;
        if (j->abandoned) {
            job_free(j);
            continue;
        }
        j->state = J_RUNNING;
        j->t_run = eng_now_s();
        pthread_mutex_unlock(&s->mu);
        tool_result r = {0};
        tool_registry_call(s->reg, j->name, j->args, &j->cancel, j->timeout_s, &r);
        pthread_mutex_lock(&s->mu);
        j->res = r;
        j->state = J_DONE;
        if (j->abandoned) job_free(j);
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static job *job_start(tool_sched *s, call *c, const cJSON *args) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->name = tool_strdup(c->name);
    j->args = cJSON_Duplicate(args, 1);
    j->timeout_s = c->def ? c->def->timeout_s : 30;
    if (!j->name || !j->args) {
        job_free(j);
        return NULL;
    }
    atomic_init(&j->cancel, s->cancelled);
    pthread_mutex_lock(&s->mu);
    if (s->qtail) s->qtail->next = j;
    else s->qhead = j;
    s->qtail = j;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return j;
}

/* The run's result is no longer wanted: cancel it; whoever is last frees it. */
static void job_abandon(tool_sched *s, job *j) {
    if (!j) return;
    atomic_store(&j->cancel, 1);
    pthread_mutex_lock(&s->mu);
    if (j->state == J_DONE) job_free(j);
    else j->abandoned = 1;
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------ events */
static call *cur_call(tool_sched *s) { return s->n_calls ? &s->calls[s->n_calls - 1] : NULL; }

static void call_begin(tool_sched *s) {
    if (s->n_calls == s->cap_calls) {
        int cap = s->cap_calls ? 2 * s->cap_calls : 8;
        call *c = realloc(s->calls, (size_t)cap * sizeof *c);
        if (!c) return;    /* the call is then reported as lost at collect */
        s->calls = c;
        s->cap_calls = cap;
    }
    call *c = &s->calls[s->n_calls++];
    memset(c, 0, sizeof *c);
    c->acc = cJSON_CreateObject();
}

static int early_ready(const tool_sched *s, const call *c) {
    if (s->o.no_partial || c->run || !c->def || c->def->n_early == 0 || !c->acc) return 0;
    for (int i = 0; i < c->def->n_early; i++)
        if (!cJSON_GetObjectItemCaseSensitive(c->acc, c->def->early[i])) return 0;
    return tool_validate_args(c->def, c->acc, 0, NULL) == ENG_OK;
}

static void on_arg(tool_sched *s, call *c, const tool_event *ev) {
    if (!c->acc || !ev->arg || !ev->value) return;
    cJSON *v = cJSON_Duplicate(ev->value, 1);
    if (v) cJSON_AddItemToObject(c->acc, ev->arg, v);
    if (early_ready(s, c)) {
        c->run = job_start(s, c, c->acc);
        c->early = c->run != NULL;
    }
}

static void on_end(tool_sched *s, call *c, const tool_event *ev) {
    c->ended = 1;
    c->t_end = eng_now_s();
    c->final = ev->value ? cJSON_Duplicate(ev->value, 1) : cJSON_CreateObject();
    if (c->run && c->final && cJSON_Compare(c->run->args, c->final, 1)) return;
    if (c->run) {
        job_abandon(s, c->run);
        c->restarts++;
    }
    c->early = 0;
    c->run = c->final ? job_start(s, c, c->final) : NULL;
}

void tool_sched_event(tool_sched *s, const tool_event *ev) {
    call *c = ev->type == TOOL_EV_CALL_BEGIN || ev->type == TOOL_EV_TEXT ? NULL : cur_call(s);
    switch (ev->type) {
    case TOOL_EV_CALL_BEGIN:
        call_begin(s);
        break;
    case TOOL_EV_NAME:
        if (c && !c->name) {
            c->name = tool_strdup(ev->name);
            c->def = tool_registry_find(s->reg, ev->name);
        }
        break;
    case TOOL_EV_ARG_DONE:
        if (c && !c->ended) on_arg(s, c, ev);
        break;
    case TOOL_EV_CALL_END:
        if (c && !c->ended) on_end(s, c, ev);
        break;
    case TOOL_EV_CALL_ERROR:
        if (c && !c->ended) {
            c->ended = 1;
            c->t_end = eng_now_s();
            c->error = tool_strndup(ev->text ? ev->text : "malformed tool call", ev->len);
            job_abandon(s, c->run);
            c->run = NULL;
        }
        break;
    default:
        break;
    }
    if (s->o.on_event) s->o.on_event(s->o.user, ev);
}

static void parser_cb(void *user, const tool_event *ev) { tool_sched_event(user, ev); }

/* --------------------------------------------------------------------- API */
int tool_sched_create(const tool_registry *r, const tool_sched_opts *o,
                      tool_sched **out, eng_err *err) {
    *out = NULL;
    if (!r) return eng_seterr(err, ENG_EINVAL, "no tool registry");
    tool_sched *s = calloc(1, sizeof *s);
    if (!s) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    s->reg = r;
    if (o) s->o = *o;
    if (s->o.n_workers <= 0) s->o.n_workers = 4;
    if (s->o.grace_s <= 0) s->o.grace_s = 0.5;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    s->parser = tool_parser_create(&s->o.parser, parser_cb, s);
    s->threads = calloc((size_t)s->o.n_workers, sizeof *s->threads);
    if (!s->parser || !s->threads) {
        tool_sched_destroy(s);
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    for (int i = 0; i < s->o.n_workers; i++) {
        if (pthread_create(&s->threads[i], NULL, worker, s)) {
            tool_sched_destroy(s);
            return eng_seterr(err, ENG_ENOMEM, "cannot start worker threads");
        }
        s->n_threads++;
    }
    *out = s;
    return ENG_OK;
}

static void calls_clear(tool_sched *s) {
    for (int i = 0; i < s->n_calls; i++) {
        call *c = &s->calls[i];
        job_abandon(s, c->run);
        free(c->name);
        free(c->error);
        cJSON_Delete(c->acc);
        cJSON_Delete(c->final);
    }
    s->n_calls = 0;
}

void tool_sched_destroy(tool_sched *s) {
    if (!s) return;
    calls_clear(s);
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    for (job *j = s->qhead; j; j = j->next) atomic_store(&j->cancel, 1);
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_threads; i++) pthread_join(s->threads[i], NULL);
    while (s->qhead) {           /* only abandoned jobs can be left */
        job *j = s->qhead;
        s->qhead = j->next;
        job_free(j);
    }
    tool_parser_destroy(s->parser);
    free(s->threads);
    free(s->calls);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int tool_sched_feed(tool_sched *s, const char *buf, size_t len) {
    return tool_parser_feed(s->parser, buf, len);
}

int tool_sched_n_calls(const tool_sched *s) { return s->n_calls; }

void tool_sched_cancel(tool_sched *s) {
    s->cancelled = 1;
    for (int i = 0; i < s->n_calls; i++)
        if (s->calls[i].run) atomic_store(&s->calls[i].run->cancel, 1);
}

/* Waits for j; a run past its deadline plus grace is cancelled and reported
 * as timed out (the wait then goes on until the tool returns). */
static int job_wait(tool_sched *s, job *j) {
    int timed_out = 0;
    pthread_mutex_lock(&s->mu);
    while (j->state != J_DONE) {
        double now = eng_now_s(), wake = now + 0.05;
        if (j->state == J_RUNNING && !timed_out) {
            double limit = j->t_run + j->timeout_s + s->o.grace_s;
            if (now >= limit) {
                timed_out = 1;
                atomic_store(&j->cancel, 1);
            } else if (limit < wake) {
                wake = limit;
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double secs = (wake - now) + ts.tv_sec + ts.tv_nsec * 1e-9;
        ts.tv_sec = (time_t)secs;
        ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&s->done, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return timed_out;
}

static void error_result(tool_result *r, const char *msg) {
    free(r->text);
    r->text = tool_strdup(msg);
    r->is_error = 1;
}

static void collect_one(tool_sched *s, call *c, int index, tool_result *r) {
    char msg[256];
    r->call = index;
    r->t_call_end = c->t_end;
    if (c->error || !c->ended || !c->run) {
        r->name = tool_strdup(c->name);
        error_result(r, c->error ? c->error : !c->ended ? "malformed tool call: unterminated"
                                                        : "out of memory");
        return;
    }
    job *j = c->run;
    int timed_out = job_wait(s, j);
    *r = j->res;                       /* takes the result's members */
    memset(&j->res, 0, sizeof j->res);
    r->call = index;
    r->t_call_end = c->t_end;
    r->early = c->early;
    r->restarts = c->restarts;
    if (timed_out) {
        snprintf(msg, sizeof msg, "tool '%s' timed out after %.1f s", j->name, j->timeout_s);
        error_result(r, msg);
    } else if (s->cancelled) {
        error_result(r, "cancelled");
    }
    job_free(j);
    c->run = NULL;
}

int tool_sched_collect(tool_sched *s, tool_result **out, int *n, eng_err *err) {
    *out = NULL;
    *n = 0;
    tool_parser_finish(s->parser);
    int rc = ENG_OK;
    tool_result *res = s->n_calls ? calloc((size_t)s->n_calls, sizeof *res) : NULL;
    if (s->n_calls && !res) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
    for (int i = 0; res && i < s->n_calls; i++) collect_one(s, &s->calls[i], i, &res[i]);
    if (res) {
        *out = res;
        *n = s->n_calls;
    }
    calls_clear(s);
    tool_parser_reset(s->parser);
    s->cancelled = 0;
    return rc;
}
