/* srv.c — the libwebsockets side of the server and the engine thread.
 *
 * Threads: the lws thread owns every socket; the engine thread owns the
 * engine and the scheduler.  They meet in two mutex-guarded queues: commands
 * (lws -> engine: query, cancel, client gone) and each client's outbox
 * (engine -> lws: JSON messages).  lws_cancel_service() wakes the lws loop
 * when an outbox fills; a condition variable wakes the engine thread. */
#include <libwebsockets.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "srv.h"
#include "orc_tts.h"

typedef struct out_msg { struct out_msg *next; size_t len; unsigned char buf[]; } out_msg;

typedef struct conn {
    struct conn *next;          /* srv.conns, under srv.mu */
    struct srv *s;
    struct lws *wsi;            /* NULL once closed (lws thread only) */
    int gone;                   /* closed: emits are dropped (under mu) */
    out_msg *out_head, *out_tail;
    size_t out_bytes;           /* under mu */
    char *rx;                   /* fragments of the message being received */
    size_t rx_len;
    int rx_too_big;
    int n_live;                 /* queries in flight (engine thread) */
} conn;

typedef struct cmd {
    struct cmd *next;
    int kind;                   /* CMD_* */
    conn *c;
    srv_request req;
} cmd;
enum { CMD_QUERY = 1, CMD_CANCEL, CMD_GONE };

struct srv {
    srv_opts o;
    eng_engine *e;
    orc_sched *sched;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    pthread_t engine_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cmd *cmd_head, *cmd_tail;
    conn *conns;
    volatile sig_atomic_t stopping;
    int engine_done;
    /* metrics, written by the engine thread under mu: the lws thread reads
     * only this snapshot, never the engine */
    orc_sched_stats st;
    long long queries_total, errors_total;
    orc_lat_model lat;          /* step time vs batch size (--plan) */
    int has_lat;
    double t_start;
};

typedef struct pss { conn *c; char *body; size_t body_len, body_sent; } pss;

/* ---------------------------------------------------------- outboxes */
static void push_out(conn *c, const char *json, size_t len) {
    out_msg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m) return;
    m->next = NULL;
    m->len = len;
    memcpy(m->buf + LWS_PRE, json, len);
    if (c->out_tail) c->out_tail->next = m; else c->out_head = m;
    c->out_tail = m;
    c->out_bytes += len;
}

/* Queues a message for a client (any thread) and wakes the lws loop. */
static void send_json(conn *c, const char *json) {
    srv *s = c->s;
    pthread_mutex_lock(&s->mu);
    if (!c->gone) push_out(c, json, strlen(json));
    pthread_mutex_unlock(&s->mu);
    lws_cancel_service(s->ctx);
}

static void sink_emit(void *ud, cJSON *msg) {
    conn *c = ud;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(msg, "type");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "error")) {
        pthread_mutex_lock(&c->s->mu);
        c->s->errors_total++;
        pthread_mutex_unlock(&c->s->mu);
    }
    char *s = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    if (s) send_json(c, s);
    free(s);
}

static int sink_congested(void *ud) {
    conn *c = ud;
    pthread_mutex_lock(&c->s->mu);
    int r = c->out_bytes > c->s->o.lim.max_outbox;
    pthread_mutex_unlock(&c->s->mu);
    return r;
}

static void sink_done(void *ud, const char *id) { ((conn *)ud)->n_live--; }

static void send_error(conn *c, const char *id, const char *code, const char *msg) {
    char *j = srv_error_json(id, code, msg);
    if (j) send_json(c, j);
    free(j);
}

/* ---------------------------------------------------------- engine thread */
static void post_cmd(srv *s, cmd *k) {
    pthread_mutex_lock(&s->mu);
    if (s->cmd_tail) s->cmd_tail->next = k; else s->cmd_head = k;
    s->cmd_tail = k;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void free_conn(srv *s, conn *c) {
    pthread_mutex_lock(&s->mu);
    for (conn **p = &s->conns; *p; p = &(*p)->next)
        if (*p == c) { *p = c->next; break; }
    for (out_msg *m = c->out_head, *n; m; m = n) { n = m->next; free(m); }
    pthread_mutex_unlock(&s->mu);
    free(c->rx);
    free(c);
}

/* The plan a latency budget gave, sent before the query's own messages.
 * The server has no accuracy model (none is measured for the model it
 * serves): the plan takes the most branches that fit, and says so. */
static void emit_plan(orc_sink sink, const char *id, const orc_plan_in *in, const orc_plan *p) {
    cJSON *m = orc_msg("plan", id);
    if (!m) return;
    cJSON_AddNumberToObject(m, "n", p->n);
    cJSON_AddNumberToObject(m, "budget_s", in->budget_s);
    cJSON_AddNumberToObject(m, "predicted_latency_s", p->latency_s);
    cJSON_AddBoolToObject(m, "feasible", p->feasible);
    cJSON_AddNumberToObject(m, "prompt_tokens", in->prompt_tokens);
    cJSON_AddNumberToObject(m, "kv_free_blocks", in->kv_free_blocks);
    cJSON_AddStringToObject(m, "accuracy_model", "none");
    sink.emit(sink.ud, m);
}

/* Reason mode: n branches, or as many as the latency budget allows. */
static int create_reason(srv *s, const srv_request *r, orc_sink sink, orc_task **t, eng_err *err) {
    orc_tts_opts o;
    orc_tts_default_opts(&o);
    o.n = r->n_branches;
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(r->body, "probe_every");
    const cJSON *ag = cJSON_GetObjectItemCaseSensitive(r->body, "aggregate");
    if (pe && (!cJSON_IsNumber(pe) || pe->valuedouble < 0 || pe->valuedouble > 4096))
        return eng_seterr(err, ENG_EINVAL, "probe_every must be from 0 (off) to 4096 tokens");
    if (pe) o.probe_every = (int)pe->valuedouble;
    if (ag && (!cJSON_IsString(ag) || (strcmp(ag->valuestring, "vote") && strcmp(ag->valuestring, "best"))))
        return eng_seterr(err, ENG_EINVAL, "aggregate must be \"vote\" or \"best\"");
    if (ag && !strcmp(ag->valuestring, "best")) o.aggregate = ORC_TTS_BEST;
    if (r->budget_s > 0) {
        if (!s->has_lat)
            return eng_seterr(err, ENG_EINVAL, "budget_s needs a server started with --plan "
                              "(it measures the engine's step times once at start)");
        const eng_model *m = eng_engine_model(s->e);
        int *ids = NULL, n = 0, rc = orc_tts_encode_prompt(&r->q, &o, m, &ids, &n, err);
        free(ids);
        if (rc) return rc;
        orc_plan_in in = { .lat = s->lat, .length = r->q.max_tokens, .prompt_tokens = n,
                           .n_max = ORC_TTS_MAX_N, .budget_s = r->budget_s, .spec_cost = -1 };
        orc_plan_kv(&in, s->e);
        orc_plan plan;
        if (orc_plan_choose(&in, &plan, err)) return err->code;
        o.n = plan.n;
        if ((rc = orc_task_reason_create(&r->q, m, sink, &o, t, err))) return rc;
        emit_plan(sink, r->q.id, &in, &plan);
        return ENG_OK;
    }
    return orc_task_reason_create(&r->q, eng_engine_model(s->e), sink, &o, t, err);
}

/* A reason-mode prompt to calibrate on: MATH-500's first problem, as the
 * reason task wraps it (system message and chat template). */
#define CALIB_PROBLEM "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  " \
    "Enter your answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$"

/* Measures step time against batch size once, for latency budgets, on the
 * token ids of a real prompt. */
static void calibrate(srv *s) {
    orc_query q = { .prompt = CALIB_PROBLEM };
    int *ids = NULL, n = 0;
    eng_err err = { 0 };
    int rc = orc_tts_encode_prompt(&q, NULL, eng_engine_model(s->e), &ids, &n, &err);
    if (!rc) rc = orc_lat_calibrate(s->e, ids, n, 32, 4, NULL, &s->lat, &err);
    free(ids);
    if (rc)
        fprintf(stderr, "brisk serve: calibration failed (%s); budgets are off\n", err.msg);
    else
        s->has_lat = 1;
}

/* The task for a query's mode. */
static int create_task(srv *s, const srv_request *r, orc_sink sink, orc_task **t, eng_err *err) {
    const eng_model *m = eng_engine_model(s->e);
    if (!strcmp(r->mode, "chat")) return orc_task_chat_create(&r->q, m, sink, t, err);
    if (!strcmp(r->mode, "agent")) {
        if (!s->o.tools) return eng_seterr(err, ENG_EUNSUPPORTED, "this server has no tools");
        orc_agent_opts ao = { .tools = s->o.tools };
        const char *script[16];
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(r->body, "script"), *x;
        if (sc && !s->o.allow_script) return eng_seterr(err, ENG_EINVAL, "'script' needs a server started with --allow-script");
        cJSON_ArrayForEach(x, sc) {
            if (!cJSON_IsString(x) || ao.n_script == 16) return eng_seterr(err, ENG_EINVAL, "script must be up to 16 strings");
            script[ao.n_script++] = x->valuestring;
        }
        ao.script = script;
        return orc_task_agent_create(&r->q, m, sink, &ao, t, err);
    }
    if (!strcmp(r->mode, "reason")) return create_reason(s, r, sink, t, err);
    if (!strcmp(r->mode, "parallel"))
        return orc_task_parallel_create(&r->q, cJSON_GetObjectItemCaseSensitive(r->body, "parallel"),
                                        m, sink, t, err);
    return eng_seterr(err, ENG_EUNSUPPORTED, "mode '%s' is not available in this build", r->mode);
}

static int start_query(srv *s, cmd *k) {
    conn *c = k->c;
    eng_err err = { 0 };
    if (c->n_live >= s->o.lim.max_queries_per_client) {
        send_error(c, k->req.id, "too_many_queries", "too many queries in flight on this connection");
        return 0;
    }
    if (orc_sched_has(s->sched, k->req.id, c)) {
        send_error(c, k->req.id, "duplicate_id", "a query with this id is already running");
        return 0;
    }
    orc_sink sink = { c, sink_emit, sink_congested, sink_done };
    orc_task *t = NULL;
    int rc = create_task(s, &k->req, sink, &t, &err);
    if (rc == ENG_EUNSUPPORTED) {
        send_error(c, k->req.id, "unsupported_mode", err.msg);
        return 0;
    }
    if (!rc && (rc = orc_sched_submit(s->sched, t, &err))) orc_task_free(t);
    if (rc) {
        send_error(c, k->req.id, rc == ENG_EFULL ? "busy" : "bad_field", err.msg);
        return 0;
    }
    c->n_live++;
    pthread_mutex_lock(&s->mu);
    s->queries_total++;
    pthread_mutex_unlock(&s->mu);
    return 1;
}

static void run_cmd(srv *s, cmd *k) {
    switch (k->kind) {
    case CMD_QUERY: start_query(s, k); break;
    case CMD_CANCEL:
        if (!orc_sched_stop(s->sched, k->req.id, k->c, "cancelled"))
            send_error(k->c, k->req.id, "unknown_query", "no query with that id is running");
        break;
    case CMD_GONE:
        orc_sched_stop_all(s->sched, k->c, "disconnected");
        free_conn(s, k->c);
        break;
    }
    srv_request_free(&k->req);
    free(k);
}

static void *engine_main(void *arg) {
    srv *s = arg;
    if (s->o.plan) calibrate(s);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        cmd *k = s->cmd_head;
        s->cmd_head = s->cmd_tail = NULL;
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        while (k) { cmd *n = k->next; run_cmd(s, k); k = n; }
        if (stopping) break;
        eng_err err = { 0 };
        int busy = orc_sched_step(s->sched, &err);
        if (busy < 0) fprintf(stderr, "brisk serve: engine step failed: %s\n", err.msg);
        pthread_mutex_lock(&s->mu);
        orc_sched_get_stats(s->sched, &s->st);
        if (busy != 1 && !s->cmd_head && !s->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
    }
    /* Shutdown: every in-flight query gets its final messages. */
    orc_sched_stop_all(s->sched, NULL, "shutdown");
    pthread_mutex_lock(&s->mu);
    s->engine_done = 1;
    pthread_mutex_unlock(&s->mu);
    lws_cancel_service(s->ctx);
    return NULL;
}

/* ---------------------------------------------------------- HTTP */
static int is_loopback(const char *host) {
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

/* Bearer token from the Authorization header or a ?token= argument (browsers
 * cannot set headers on a websocket). */
static int authorized(srv *s, struct lws *wsi) {
    if (!s->o.token) return 1;
    char buf[256];
    size_t tl = strlen(s->o.token);
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
        !strncmp(buf, "Bearer ", 7) && strlen(buf + 7) == tl && !memcmp(buf + 7, s->o.token, tl))
        return 1;
    const char *v = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
    return v && strlen(v) == tl && !memcmp(v, s->o.token, tl);
}

/* Browsers send Origin; it must be this server (or the configured origin). */
static int origin_ok(srv *s, struct lws *wsi) {
    char origin[256], host[256], want[300];
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0) return 1;
    if (s->o.allowed_origin)
        return !strcmp(s->o.allowed_origin, "*") || !strcmp(s->o.allowed_origin, origin);
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0) return 0;
    snprintf(want, sizeof want, "http://%s", host);
    return !strcmp(origin, want);
}

static char *metrics_text(srv *s) {
    pthread_mutex_lock(&s->mu);
    orc_sched_stats st = s->st;
    long long q = s->queries_total, errs = s->errors_total;
    int n_conns = 0;
    for (conn *c = s->conns; c; c = c->next) n_conns++;
    pthread_mutex_unlock(&s->mu);
    double up = eng_now_s() - s->t_start;
    char *out = malloc(2048);
    if (!out) return NULL;
    snprintf(out, 2048,
        "# TYPE brisk_queue_depth gauge\nbrisk_queue_depth %d\n"
        "# TYPE brisk_live_queries gauge\nbrisk_live_queries %d\n"
        "# TYPE brisk_batch_size gauge\nbrisk_batch_size %d\n"
        "# TYPE brisk_clients gauge\nbrisk_clients %d\n"
        "# TYPE brisk_tokens_total counter\nbrisk_tokens_total %lld\n"
        "# TYPE brisk_steps_total counter\nbrisk_steps_total %lld\n"
        "# TYPE brisk_queries_total counter\nbrisk_queries_total %lld\n"
        "# TYPE brisk_errors_total counter\nbrisk_errors_total %lld\n"
        "# TYPE brisk_tokens_per_second gauge\nbrisk_tokens_per_second %.2f\n"
        "# TYPE brisk_kv_free_blocks gauge\nbrisk_kv_free_blocks %d\n"
        "# TYPE brisk_cache_hit_rate gauge\nbrisk_cache_hit_rate %.4f\n"
        "# TYPE brisk_uptime_seconds counter\nbrisk_uptime_seconds %.1f\n",
        st.queued_tasks, st.live_tasks, st.batch_seqs, n_conns, st.tokens, st.steps, q, errs,
        st.step_seconds > 0 ? st.tokens / st.step_seconds : 0.0, st.kv_free_blocks,
        s->o.cache_hit_rate ? s->o.cache_hit_rate(s->o.cache_ud) : 0.0, up);
    return out;
}

/* Sends headers now and the body (owned by pss) on the next writable call. */
static int http_reply(struct lws *wsi, pss *p, int status, const char *ctype, char *body, size_t len) {
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *q = start, *end = buf + sizeof buf - 1;
    p->body = body;
    p->body_len = len;
    p->body_sent = 0;
    if (lws_add_http_common_headers(wsi, (unsigned)status, ctype, len, &q, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &q, end) ||
        lws_finalize_write_http_header(wsi, start, &q, end))
        return 1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int on_http(srv *s, struct lws *wsi, pss *p, const char *uri) {
    size_t len = 0;
    char *body;
    if (!strcmp(uri, "/health")) {
        body = strdup("{\"status\":\"ok\"}\n");
        return http_reply(wsi, p, 200, "application/json", body, body ? strlen(body) : 0);
    }
    if (!strcmp(uri, "/metrics")) {
        if (!authorized(s, wsi)) {
            body = strdup("unauthorized\n");
            return http_reply(wsi, p, 401, "text/plain", body, body ? strlen(body) : 0);
        }
        body = metrics_text(s);
        return http_reply(wsi, p, 200, "text/plain; version=0.0.4", body, body ? strlen(body) : 0);
    }
    if (!strcmp(uri, "/") || !strcmp(uri, "/index.html")) {
        char path[1024];
        snprintf(path, sizeof path, "%s/index.html", s->o.web_root);
        if (!eng_read_file(path, 0, &body, &len, NULL))
            return http_reply(wsi, p, 200, "text/html; charset=utf-8", body, len);
    }
    body = strdup("not found\n");
    return http_reply(wsi, p, 404, "text/plain", body, body ? strlen(body) : 0);
}

static int http_writeable(struct lws *wsi, pss *p) {
    if (!p->body) return -1;
    size_t n = p->body_len - p->body_sent, chunk = n > 16384 ? 16384 : n;
    unsigned char *tmp = malloc(LWS_PRE + chunk + 1);
    if (!tmp) return -1;
    memcpy(tmp + LWS_PRE, p->body + p->body_sent, chunk);
    int last = chunk == n;
    int w = lws_write(wsi, tmp + LWS_PRE, chunk, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
    free(tmp);
    if (w < (int)chunk) return -1;
    p->body_sent += chunk;
    if (!last) { lws_callback_on_writable(wsi); return 0; }
    free(p->body);
    p->body = NULL;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---------------------------------------------------------- websocket */
static void on_message(srv *s, conn *c, const char *buf, size_t len) {
    cmd *k = calloc(1, sizeof *k);
    const char *code = "internal";
    eng_err err = { 0 };
    if (!k) return;
    if (srv_parse_request(buf, len, &s->o.lim, &k->req, &code, &err)) {
        send_error(c, k->req.id, code, err.msg);
        free(k);
        return;
    }
    if (k->req.type == SRV_REQ_PING) {
        cJSON *m = orc_msg("pong", k->req.id);
        sink_emit(c, m);
        srv_request_free(&k->req);
        free(k);
        return;
    }
    k->kind = k->req.type == SRV_REQ_QUERY ? CMD_QUERY : CMD_CANCEL;
    k->c = c;
    post_cmd(s, k);
}

static void on_receive(srv *s, struct lws *wsi, conn *c, const char *in, size_t len) {
    if (!c->rx_too_big && c->rx_len + len > s->o.lim.max_message) {
        c->rx_too_big = 1;
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
    }
    if (!c->rx_too_big) {
        char *p = realloc(c->rx, c->rx_len + len + 1);
        if (!p) { c->rx_too_big = 1; return; }
        memcpy(p + c->rx_len, in, len);
        c->rx = p;
        c->rx_len += len;
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi)) return;
    if (c->rx_too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "message exceeds the limit of %zu bytes", s->o.lim.max_message);
        send_error(c, NULL, "too_large", msg);
    } else {
        on_message(s, c, c->rx ? c->rx : "", c->rx_len);
    }
    free(c->rx);
    c->rx = NULL;
    c->rx_len = 0;
    c->rx_too_big = 0;
}

static int ws_writeable(srv *s, struct lws *wsi, conn *c) {
    pthread_mutex_lock(&s->mu);
    out_msg *m = c->out_head;
    if (m) {
        c->out_head = m->next;
        if (!c->out_head) c->out_tail = NULL;
        c->out_bytes -= m->len;
    }
    int more = c->out_head != NULL;
    pthread_mutex_unlock(&s->mu);
    if (!m) return 0;
    int w = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
    free(m);
    if (w < 0) return -1;
    if (more) lws_callback_on_writable(wsi);
    return 0;
}

static conn *new_conn(srv *s, struct lws *wsi) {
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->s = s;
    c->wsi = wsi;
    pthread_mutex_lock(&s->mu);
    c->next = s->conns;
    s->conns = c;
    pthread_mutex_unlock(&s->mu);
    return c;
}

static void wake_writers(srv *s) {
    pthread_mutex_lock(&s->mu);
    for (conn *c = s->conns; c; c = c->next)
        if (c->wsi && c->out_head) lws_callback_on_writable(c->wsi);
    pthread_mutex_unlock(&s->mu);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    struct lws_context *ctx = lws_get_context(wsi);
    srv *s = ctx ? lws_context_user(ctx) : NULL;
    pss *p = user;
    if (!s) return 0;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(s, wsi, p, (const char *)in);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_writeable(wsi, p);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (p) { free(p->body); p->body = NULL; }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!authorized(s, wsi) || !origin_ok(s, wsi)) return 1;  /* refuse the upgrade */
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        if (!(p->c = new_conn(s, wsi))) return -1;
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (p->c) on_receive(s, wsi, p->c, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p->c ? ws_writeable(s, wsi, p->c) : 0;
    case LWS_CALLBACK_CLOSED:
        if (p->c) {
            pthread_mutex_lock(&s->mu);
            p->c->gone = 1;
            p->c->wsi = NULL;
            pthread_mutex_unlock(&s->mu);
            cmd *k = calloc(1, sizeof *k);
            if (k) { k->kind = CMD_GONE; k->c = p->c; post_cmd(s, k); }
            p->c = NULL;
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        wake_writers(s);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    { "brisk", callback, sizeof(pss), 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ---------------------------------------------------------- lifecycle */
int srv_create(eng_engine *e, const srv_opts *o, srv **out, eng_err *err) {
    if (!o->token && !is_loopback(o->host))
        return eng_seterr(err, ENG_EINVAL, "refusing to listen on %s without a token "
                          "(--token, or BRISK_TOKEN); only loopback may run without one", o->host);
    srv *s = calloc(1, sizeof *s);
    if (!s) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    s->o = *o;
    s->e = e;
    s->t_start = eng_now_s();
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = orc_sched_create(e, o->max_tasks, &s->sched, err);
    if (rc) { free(s); return rc; }
    orc_sched_get_stats(s->sched, &s->st);   /* the engine thread is not running yet */
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = o->port;
    info.iface = o->host;
    info.protocols = protocols;
    info.vhost_name = "brisk";
    info.user = s;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (!(s->ctx = lws_create_context(&info)) || !(s->vh = lws_create_vhost(s->ctx, &info))) {
        if (s->ctx) lws_context_destroy(s->ctx);
        orc_sched_destroy(s->sched);
        free(s);
        return eng_seterr(err, ENG_EIO, "cannot listen on %s:%d (port in use?)", o->host, o->port);
    }
    *out = s;
    return ENG_OK;
}

int srv_port(const srv *s) { return lws_get_vhost_listen_port(s->vh); }

void srv_stop(srv *s) {
    s->stopping = 1;
    lws_cancel_service(s->ctx);
}

static int outboxes_empty(srv *s) {
    pthread_mutex_lock(&s->mu);
    int empty = 1;
    for (conn *c = s->conns; c; c = c->next)
        if (c->wsi && c->out_head) empty = 0;
    pthread_mutex_unlock(&s->mu);
    return empty;
}

int srv_run(srv *s) {
    if (pthread_create(&s->engine_thread, NULL, engine_main, s)) return ENG_ENOMEM;
    while (!s->stopping) lws_service(s->ctx, 0);
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->engine_thread, NULL);
    /* Flush the final messages (bounded: 2 s). */
    double t0 = eng_now_s();
    while (!outboxes_empty(s) && eng_now_s() - t0 < 2.0) lws_service(s->ctx, 0);
    return ENG_OK;
}

void srv_destroy(srv *s) {
    if (!s) return;
    lws_context_destroy(s->ctx);   /* closes sockets: CLOSED posts CMD_GONE */
    for (cmd *k = s->cmd_head, *n; k; k = n) {
        n = k->next;
        if (k->kind == CMD_GONE) free_conn(s, k->c);
        srv_request_free(&k->req);
        free(k);
    }
    while (s->conns) free_conn(s, s->conns);
    orc_sched_destroy(s->sched);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
