/* srv.c — the libwebsockets side of the server and the engine thread.
 *
 * Threads: the lws thread owns every socket; the engine thread owns the
 * engine and the scheduler.  They meet in two mutex-guarded queues: commands
 * (lws -> engine: query, cancel, client gone) and each client's outbox
 * (engine -> lws: JSON messages).  lws_cancel_service() wakes the lws loop
 * when an outbox fills; a condition variable wakes the engine thread. */
#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "srv_internal.h"
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
    struct query *queries;      /* in flight (engine thread) */
    int n_live;
    int fd;                     /* the socket, while watched by ws_guard.c */
    srv_ws_guard guard;
    /* An OpenAI API request (one query on its own HTTP connection), under mu:
     * the response's status and type once its first bytes exist, and
     * whether its last bytes are in the outbox. */
    int http;
    int http_status, http_done, http_stream;
    const char *http_ctype;
} conn;

/* One query in flight, the user data of its task's sink (engine thread). */
typedef struct query {
    struct query *next;         /* conn.queries */
    conn *c;
    char id[64], mode[16], finish[16];
    oai_req *oai;               /* OpenAI API: how the messages become its response */
} query;

typedef struct cmd {
    struct cmd *next;
    int kind;                   /* CMD_* */
    conn *c;
    srv_request req;
    oai_req *oai;               /* CMD_QUERY from the OpenAI API */
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
    int tp_ranks;               /* tensor-parallel ranks and their counters */
    eng_tp_rank_stats tp[ENG_TP_MAX];
    long long queries_total, errors_total;
    orc_lat_model lat;          /* step time vs batch size (--plan) */
    int has_lat;
    double t_start;
    char addr[INET6_ADDRSTRLEN]; /* the bind address, numeric */
    oai_model model;            /* what /v1/models says */
    char model_id[128], chat_family[16];
};

/* Per connection (lws user data).  HTTP: a reply of our own (body), or an
 * OpenAI request: its body as it arrives (rx), then its conn (c). */
typedef struct pss {
    conn *c;
    char *body;
    size_t body_len, body_sent;
    int route;                  /* OAI_CHAT or OAI_COMPLETIONS while a body arrives */
    eng_buf rx;
    int head_sent;
} pss;

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

/* Queues bytes of an OpenAI response; done: they are its last. */
static void send_http(conn *c, const oai_req *r, const eng_buf *b, int done) {
    srv *s = c->s;
    pthread_mutex_lock(&s->mu);
    if (!c->gone) {
        if (!c->http_status && oai_status(r)) {
            c->http_status = oai_status(r);
            c->http_ctype = oai_content_type(r);
            c->http_stream = c->http_status == 200 && oai_stream(r);
        }
        if (b->n) push_out(c, b->p, b->n);
        if (done) c->http_done = 1;
    }
    pthread_mutex_unlock(&s->mu);
    lws_cancel_service(s->ctx);
}

/* The request log: one line per query, when it ends or is refused. */
static void log_query(srv *s, const char *id, const char *mode, const cJSON *stats, const char *finish) {
    if (!s->o.log) return;
    struct timespec ts;
    struct tm tm;
    char when[32], *qid = NULL;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    cJSON *js = cJSON_CreateString(id ? id : "");   /* quoted: ids are the client's text */
    if (js) qid = cJSON_PrintUnformatted(js);
    cJSON_Delete(js);
    double v[4] = { -1, -1, -1, -1 };
    const char *keys[4] = { "prompt_tokens", "tokens", "ttft_ms", "wall_ms" };
    for (int i = 0; i < 4; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(stats, keys[i]);
        if (cJSON_IsNumber(f)) v[i] = f->valuedouble;
    }
    fprintf(s->o.log, "%s.%03ldZ query id=%s mode=%s in=%.0f out=%.0f ttft_ms=%.1f total_ms=%.1f "
            "finish=%s\n", when, ts.tv_nsec / 1000000, qid ? qid : "?", mode && *mode ? mode : "-",
            v[0], v[1], v[2], v[3], finish && *finish ? finish : "-");
    fflush(s->o.log);
    free(qid);
}

static void sink_emit(void *ud, cJSON *msg) {
    query *q = ud;
    srv *s = q->c->s;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "type"));
    if (type && !strcmp(type, "error")) {
        pthread_mutex_lock(&s->mu);
        s->errors_total++;
        pthread_mutex_unlock(&s->mu);
    } else if (type && !strcmp(type, "answer")) {
        const char *f = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "finish"));
        snprintf(q->finish, sizeof q->finish, "%s", f ? f : "");
    } else if (type && !strcmp(type, "stats")) {
        log_query(s, q->id, q->mode, msg, q->finish);
    }
    if (q->oai) {
        eng_buf b = {0};
        int done = oai_feed(q->oai, msg, &b);
        cJSON_Delete(msg);
        send_http(q->c, q->oai, &b, done);
        eng_buf_free(&b);
        return;
    }
    char *text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    if (text) send_json(q->c, text);
    free(text);
}

static int sink_congested(void *ud) {
    conn *c = ((query *)ud)->c;
    pthread_mutex_lock(&c->s->mu);
    int r = c->out_bytes > c->s->o.lim.max_outbox;
    pthread_mutex_unlock(&c->s->mu);
    return r;
}

/* The task left the scheduler: its query is over. */
static void sink_done(void *ud, const char *id) {
    query *q = ud;
    conn *c = q->c;
    for (query **p = &c->queries; *p; p = &(*p)->next)
        if (*p == q) { *p = q->next; break; }
    c->n_live--;
    oai_free(q->oai);
    free(q);
}

static query *find_query(conn *c, const char *id) {
    for (query *q = c->queries; q; q = q->next)
        if (!strcmp(q->id, id)) return q;
    return NULL;
}

static void send_error(conn *c, const char *id, const char *code, const char *msg) {
    char *j = srv_error_json(id, code, msg);
    if (j) send_json(c, j);
    free(j);
}

/* A query refused before it ran: the error to the client (an OpenAI
 * response for oai), a line to the log. */
static void refuse(srv *s, conn *c, const srv_request *r, oai_req *oai, const char *code, const char *msg) {
    if (oai) {
        eng_buf b = {0};
        oai_refuse(oai, code, msg, &b);
        send_http(c, oai, &b, 1);
        eng_buf_free(&b);
    } else {
        send_error(c, r->id, code, msg);
    }
    log_query(s, r->id, r->mode, NULL, code);
}

/* ---------------------------------------------------------- engine thread */
static void post_cmd(srv *s, cmd *k) {
    pthread_mutex_lock(&s->mu);
    if (s->cmd_tail) s->cmd_tail->next = k; else s->cmd_head = k;
    s->cmd_tail = k;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The client is gone (lws thread): nothing more is queued for it, and the
 * engine thread stops its queries and frees it. */
static void conn_gone(srv *s, conn *c) {
    pthread_mutex_lock(&s->mu);
    c->gone = 1;
    c->wsi = NULL;
    pthread_mutex_unlock(&s->mu);
    cmd *k = calloc(1, sizeof *k);
    if (k) { k->kind = CMD_GONE; k->c = c; post_cmd(s, k); }
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
    if (!strcmp(r->mode, "chat")) {
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(r->body, "script");
        if (sc && !s->o.allow_script) return eng_seterr(err, ENG_EINVAL, "'script' needs a server started with --allow-script");
        if (sc && !cJSON_IsString(sc)) return eng_seterr(err, ENG_EINVAL, "script must be a string in chat mode");
        orc_query q = r->q;
        q.script = sc ? sc->valuestring : NULL;   /* the task copies it */
        return orc_task_chat_create(&q, m, sink, t, err);
    }
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
    oai_req *oai = k->oai;
    k->oai = NULL;   /* the query's, or freed here */
    if (s->stopping) {
        refuse(s, c, &k->req, oai, "shutdown", "the server is shutting down");
        oai_free(oai);
        return 0;
    }
    if (c->n_live >= s->o.lim.max_queries_per_client) {
        refuse(s, c, &k->req, oai, "too_many_queries", "too many queries in flight on this connection");
        oai_free(oai);
        return 0;
    }
    if (find_query(c, k->req.id)) {
        refuse(s, c, &k->req, oai, "duplicate_id", "a query with this id is already running");
        oai_free(oai);
        return 0;
    }
    query *q = calloc(1, sizeof *q);
    if (!q) {
        refuse(s, c, &k->req, oai, "internal", "out of memory");
        oai_free(oai);
        return 0;
    }
    q->c = c;
    q->oai = oai;
    snprintf(q->id, sizeof q->id, "%s", k->req.id);
    snprintf(q->mode, sizeof q->mode, "%s", k->req.mode);
    orc_sink sink = { q, sink_emit, sink_congested, sink_done };
    orc_task *t = NULL;
    int rc = create_task(s, &k->req, sink, &t, &err);
    /* linked first: a task that starts at once may emit during submission */
    q->next = c->queries;
    c->queries = q;
    c->n_live++;
    if (!rc && (rc = orc_sched_submit(s->sched, t, &err))) orc_task_free(t);
    if (rc) {
        c->queries = q->next;
        c->n_live--;
        refuse(s, c, &k->req, oai, rc == ENG_EUNSUPPORTED ? "unsupported_mode" : rc == ENG_EFULL ? "busy"
               : rc == ORC_ETOOLONG ? "prompt_too_long" : rc == ENG_EINVAL ? "bad_field" : "engine", err.msg);
        oai_free(oai);
        free(q);
        return 0;
    }
    pthread_mutex_lock(&s->mu);
    s->queries_total++;
    pthread_mutex_unlock(&s->mu);
    return 1;
}

/* Stops every query of a connection that went away. */
static void stop_conn_queries(srv *s, conn *c, const char *reason) {
    for (query *q = c->queries, *next; q; q = next) {
        next = q->next;                 /* q is freed when its task leaves */
        orc_sched_stop_all(s->sched, q, reason);
    }
}

static void run_cmd(srv *s, cmd *k) {
    query *q;
    switch (k->kind) {
    case CMD_QUERY: start_query(s, k); break;
    case CMD_CANCEL:
        if (!(q = find_query(k->c, k->req.id)) || !orc_sched_stop(s->sched, q->id, q, "cancelled"))
            send_error(k->c, k->req.id, "unknown_query", "no query with that id is running");
        break;
    case CMD_GONE:
        stop_conn_queries(s, k->c, "disconnected");
        free_conn(s, k->c);
        break;
    }
    srv_request_free(&k->req);
    oai_free(k->oai);
    free(k);
}

/* The engine's counters into the metrics snapshot; the engine thread (or
 * set-up, before it runs) calls this holding mu. */
static void snapshot(srv *s) {
    orc_sched_get_stats(s->sched, &s->st);
    s->tp_ranks = eng_tp_ranks(s->e);
    for (int r = 0; r < s->tp_ranks; r++) eng_tp_stats(s->e, r, &s->tp[r], NULL);
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
        snapshot(s);
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
/* The bind address as a numeric address (a name such as "localhost" is
 * resolved: libwebsockets takes an address or an interface name, and binds
 * nowhere when given a host name); *loopback when it is 127.0.0.0/8 or ::1. */
static int resolve_host(const char *host, char *num, size_t cap, int *loopback, eng_err *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host, NULL, &hints, &res);
    if (gai || !res)
        return eng_seterr(err, ENG_EINVAL, "cannot use host '%s': %s", host,
                          gai ? gai_strerror(gai) : "no address");
    const void *a;
    if (res->ai_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)res->ai_addr;
        a = &v4->sin_addr;
        *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    } else {
        const struct sockaddr_in6 *v6 = (const void *)res->ai_addr;
        a = &v6->sin6_addr;
        *loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
    }
    int ok = inet_ntop(res->ai_family, a, num, (socklen_t)cap) != NULL;
    freeaddrinfo(res);
    return ok ? ENG_OK : eng_seterr(err, ENG_EINVAL, "cannot use host '%s'", host);
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
    int ranks = s->tp_ranks;
    eng_tp_rank_stats tp[ENG_TP_MAX];
    memcpy(tp, s->tp, sizeof tp);
    long long q = s->queries_total, errs = s->errors_total;
    int n_conns = 0;
    for (conn *c = s->conns; c; c = c->next) n_conns++;
    pthread_mutex_unlock(&s->mu);
    double up = eng_now_s() - s->t_start;
    size_t cap = 2048 + 160 * (size_t)ranks;
    char *out = malloc(cap);
    if (!out) return NULL;
    int len = snprintf(out, cap,
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
    /* per rank of a tensor-parallel engine: time in all-reduces, waiting
     * for the other ranks included (an unsplit engine has none) */
    len += snprintf(out + len, cap - (size_t)len, "# TYPE brisk_tp_ranks gauge\nbrisk_tp_ranks %d\n"
                    "# TYPE brisk_tp_allreduce_seconds_total counter\n"
                    "# TYPE brisk_tp_allreduces_total counter\n", ranks);
    for (int r = 0; r < ranks && ranks > 1; r++)
        len += snprintf(out + len, cap - (size_t)len,
                        "brisk_tp_allreduce_seconds_total{rank=\"%d\"} %.6f\n"
                        "brisk_tp_allreduces_total{rank=\"%d\"} %lld\n",
                        r, tp[r].allreduce_s, r, (long long)tp[r].n_allreduce);
    return out;
}

/* Sends headers now and the body (owned by pss) on the next writable call;
 * extra: one more header ("name:", value) or NULL. */
static int http_reply_h(struct lws *wsi, pss *p, int status, const char *ctype, char *body, size_t len,
                        const char *extra_name, const char *extra_value) {
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *q = start, *end = buf + sizeof buf - 1;
    p->body = body;
    p->body_len = len;
    p->body_sent = 0;
    if (!body) return -1;
    if (lws_add_http_common_headers(wsi, (unsigned)status, ctype, len, &q, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &q, end) ||
        (extra_name && lws_add_http_header_by_name(wsi, (const unsigned char *)extra_name,
                                                   (const unsigned char *)extra_value,
                                                   (int)strlen(extra_value), &q, end)) ||
        lws_finalize_write_http_header(wsi, start, &q, end))
        return 1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_reply(struct lws *wsi, pss *p, int status, const char *ctype, char *body, size_t len) {
    return http_reply_h(wsi, p, status, ctype, body, len, NULL, NULL);
}

/* An OpenAI error object with its status (401 names the Bearer scheme). */
static int reply_error(struct lws *wsi, pss *p, int status, const char *msg, const char *type, const char *code) {
    char *body = oai_error_body(msg, type, code);
    return http_reply_h(wsi, p, status, "application/json", body, body ? strlen(body) : 0,
                        status == 401 ? "www-authenticate:" : NULL, "Bearer");
}

static int reply_json(struct lws *wsi, pss *p, char *body) {
    return http_reply(wsi, p, 200, "application/json", body, body ? strlen(body) : 0);
}

/* The request's method: 'G'ET, 'P'OST, or 0 for another. */
static int method(struct lws *wsi) {
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) return 'G';
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) return 'P';
    return 0;
}

static int unauthorized(struct lws *wsi, pss *p) {
    return reply_error(wsi, p, 401, "this server needs a bearer token (Authorization: Bearer TOKEN)",
                       "authentication_error", "unauthorized");
}

/* /v1/...: the OpenAI API.  A POST's body arrives through HTTP_BODY. */
static int on_v1(srv *s, struct lws *wsi, pss *p, const char *uri) {
    int m = method(wsi);
    int chat = !strcmp(uri, "/v1/chat/completions"), compl = !strcmp(uri, "/v1/completions");
    int models = !strcmp(uri, "/v1/models"), one = !strncmp(uri, "/v1/models/", 11);
    if (!chat && !compl && !models && !one)
        return reply_error(wsi, p, 404, "no such endpoint (brisk serves /v1/chat/completions, "
                           "/v1/completions and /v1/models)", "invalid_request_error", "not_found");
    if ((chat || compl) ? m != 'P' : m != 'G')
        return reply_error(wsi, p, 405, chat || compl ? "use POST" : "use GET", "invalid_request_error",
                           "method_not_allowed");
    if (!authorized(s, wsi)) return unauthorized(wsi, p);
    if (models) return reply_json(wsi, p, oai_models_body(&s->model, NULL));
    if (one) {
        char *body = oai_models_body(&s->model, uri + 11);
        if (!body) return reply_error(wsi, p, 404, "no such model", "invalid_request_error", "model_not_found");
        return reply_json(wsi, p, body);
    }
    char cl[32];
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
        strtoull(cl, NULL, 10) > s->o.lim.max_message) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is over the limit of %zu bytes", s->o.lim.max_message);
        p->route = -1;   /* the body that still comes is dropped */
        return reply_error(wsi, p, 413, msg, "invalid_request_error", "too_large");
    }
    p->route = chat ? OAI_CHAT : OAI_COMPLETIONS;
    eng_buf_clear(&p->rx);
    return 0;
}

static int on_http(srv *s, struct lws *wsi, pss *p, const char *uri) {
    size_t len = 0;
    char *body;
    p->route = 0;
    p->head_sent = 0;
    if (!strncmp(uri, "/v1/", 4) || !strcmp(uri, "/v1")) return on_v1(s, wsi, p, uri);
    if (!strcmp(uri, "/health")) {
        body = strdup("{\"status\":\"ok\"}\n");
        return http_reply(wsi, p, 200, "application/json", body, body ? strlen(body) : 0);
    }
    if (!strcmp(uri, "/metrics")) {
        if (!authorized(s, wsi)) return unauthorized(wsi, p);
        body = metrics_text(s);
        return http_reply(wsi, p, 200, "text/plain; version=0.0.4", body, body ? strlen(body) : 0);
    }
    if (!strcmp(uri, "/") || !strcmp(uri, "/index.html")) {
        char path[1024];
        snprintf(path, sizeof path, "%s/index.html", s->o.web_root);
        if (!eng_read_file(path, 0, &body, &len, NULL))
            return http_reply(wsi, p, 200, "text/html; charset=utf-8", body, len);
    }
    return reply_error(wsi, p, 404, "not found", "invalid_request_error", "not_found");
}

static conn *new_conn(srv *s, struct lws *wsi);
static void http_closed(srv *s, pss *p);

/* A request body, as it arrives. */
static int on_body(srv *s, pss *p, const char *in, size_t len) {
    if (p->route <= 0) return 0;
    if (p->rx.n + len > s->o.lim.max_message) {
        p->route = -2;   /* over the limit: answered at the end */
        eng_buf_free(&p->rx);
        return 0;
    }
    return eng_buf_add(&p->rx, in, len) ? -1 : 0;
}

/* The whole body is in: parse it and hand the query to the engine thread. */
static int on_body_done(srv *s, struct lws *wsi, pss *p) {
    if (p->route == -1) return 0;   /* refused at the headers already */
    if (p->route == -2) {
        char msg[128];
        p->route = 0;
        snprintf(msg, sizeof msg, "the body is over the limit of %zu bytes", s->o.lim.max_message);
        return reply_error(wsi, p, 413, msg, "invalid_request_error", "too_large");
    }
    if (p->route <= 0) return 0;
    cmd *k = calloc(1, sizeof *k);
    char *err_body = NULL;
    int kind = p->route;
    p->route = 0;
    if (!k) return -1;
    int status = oai_parse(kind, p->rx.p ? p->rx.p : "", p->rx.n, &s->o.lim, &s->model, &k->req, &k->oai,
                           &err_body);
    eng_buf_free(&p->rx);
    if (status) {
        free(k);
        return http_reply(wsi, p, status, "application/json", err_body, err_body ? strlen(err_body) : 0);
    }
    if (!(p->c = new_conn(s, wsi))) {
        srv_request_free(&k->req);
        oai_free(k->oai);
        free(k);
        return -1;
    }
    p->c->http = 1;
    p->head_sent = 0;
    k->kind = CMD_QUERY;
    k->c = p->c;
    post_cmd(s, k);
    return 0;
}

/* The OpenAI response from the conn's outbox: headers once its status is
 * known (and, for a whole response, its length), then its bytes as they
 * come.  A streamed response has no length: the connection closes after
 * it; any other keeps the connection. */
static int oai_writeable(srv *s, struct lws *wsi, pss *p) {
    conn *c = p->c;
    pthread_mutex_lock(&s->mu);
    int status = c->http_status, done = c->http_done, stream = c->http_stream;
    const char *ctype = c->http_ctype;
    size_t total = c->out_bytes;
    out_msg *m = NULL;
    if (status && p->head_sent && (m = c->out_head)) {
        c->out_head = m->next;
        if (!c->out_head) c->out_tail = NULL;
        c->out_bytes -= m->len;
    }
    int more = c->out_head != NULL;
    pthread_mutex_unlock(&s->mu);
    if (!status || (!p->head_sent && !stream && !done)) return 0;
    if (!p->head_sent) {
        unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *q = start, *end = buf + sizeof buf - 1;
        const char *retry = status == 429 || status == 503 ? "1" : NULL;
        if (lws_add_http_common_headers(wsi, (unsigned)status, ctype,
                                        stream ? LWS_ILLEGAL_HTTP_CONTENT_LEN : (lws_filepos_t)total, &q, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-cache", 8, &q, end) ||
            (retry && lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
                                                  (const unsigned char *)retry, 1, &q, end)) ||
            lws_finalize_write_http_header(wsi, start, &q, end))
            return -1;
        p->head_sent = 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    int last = done && !more;
    if (m) {
        int w = lws_write(wsi, m->buf + LWS_PRE, m->len, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        size_t len = m->len;
        free(m);
        if (w < (int)len) return -1;
    }
    if (more) lws_callback_on_writable(wsi);
    if (!last || !m) return 0;
    /* the response is out: the conn goes (its query has ended) */
    http_closed(s, p);
    if (stream) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int http_writeable(srv *s, struct lws *wsi, pss *p) {
    if (p->c) return oai_writeable(s, wsi, p);
    if (!p->body) return 0;
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

/* An HTTP connection closed, or its response is out: its conn goes (a
 * query still running for it is stopped). */
static void http_closed(srv *s, pss *p) {
    free(p->body);
    p->body = NULL;
    eng_buf_free(&p->rx);
    p->head_sent = 0;
    if (!p->c) return;
    conn_gone(s, p->c);
    p->c = NULL;
}

/* Writes a whole small response now (headers and body), for refusals made
 * before the connection has a writable callback of its own; 0 or -1. */
static int reply_now(struct lws *wsi, int status, const char *extra_name, const char *extra_value,
                     const char *body) {
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *q = start, *end = buf + sizeof buf - 1;
    size_t len = strlen(body);
    if (lws_add_http_common_headers(wsi, (unsigned)status, "application/json", len, &q, end) ||
        (extra_name && lws_add_http_header_by_name(wsi, (const unsigned char *)extra_name,
                                                   (const unsigned char *)extra_value,
                                                   (int)strlen(extra_value), &q, end)) ||
        lws_finalize_write_http_header(wsi, start, &q, end))
        return -1;
    unsigned char *b = malloc(LWS_PRE + len + 1);
    if (!b) return -1;
    memcpy(b + LWS_PRE, body, len);
    int w = lws_write(wsi, b + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
    free(b);
    return w < (int)len ? -1 : 0;
}

/* Whether the client's Sec-WebSocket-Protocol list (if any) offers "brisk". */
static int subprotocol_ok(struct lws *wsi) {
    char list[256];
    if (lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) <= 0) return 1;
    for (char *save = NULL, *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
        if (!strcmp(t, "brisk")) return 1;
    return 0;
}

/* A websocket upgrade is refused with an HTTP status saying why (libwebsockets
 * would otherwise drop the connection without a word): 401 without the
 * token, 403 from a foreign origin, 400 for a subprotocol other than brisk.
 * Returns 0 to let the upgrade go on, 1 when refused (lws completes the
 * transaction), -1 to hang up. */
static int confirm_upgrade(srv *s, struct lws *wsi) {
    int status = 0;
    const char *body = NULL, *hname = NULL, *hvalue = NULL;
    if (!authorized(s, wsi)) {
        status = 401;
        hname = "www-authenticate:";
        hvalue = "Bearer";
        body = "{\"error\":{\"message\":\"this server needs a bearer token: an Authorization: Bearer "
               "header, or ?token= in the URL\",\"type\":\"authentication_error\",\"code\":\"unauthorized\"}}";
    } else if (!origin_ok(s, wsi)) {
        status = 403;
        body = "{\"error\":{\"message\":\"websocket connections from this origin are not allowed "
               "(see --origin)\",\"type\":\"permission_error\",\"code\":\"forbidden_origin\"}}";
    } else if (!subprotocol_ok(wsi)) {
        status = 400;
        body = "{\"error\":{\"message\":\"unknown websocket subprotocol: this server speaks 'brisk' "
               "(or none named)\",\"type\":\"invalid_request_error\",\"code\":\"bad_subprotocol\"}}";
    }
    if (!status) return 0;
    return reply_now(wsi, status, hname, hvalue, body) ? -1 : 1;
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
        char *text = m ? cJSON_PrintUnformatted(m) : NULL;
        cJSON_Delete(m);
        if (text) send_json(c, text);
        free(text);
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
        if (c->wsi && (c->out_head || (c->http && c->http_status))) lws_callback_on_writable(c->wsi);
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
    case LWS_CALLBACK_HTTP_BODY:
        return on_body(s, p, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return on_body_done(s, wsi, p);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_writeable(s, wsi, p);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (p) http_closed(s, p);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(s, wsi);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:   /* confirm_upgrade has said why already */
        if (!authorized(s, wsi) || !origin_ok(s, wsi)) return 1;
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        if (!(p->c = new_conn(s, wsi))) return -1;
        p->c->fd = lws_get_socket_fd(wsi);
        srv_ws_watch(p->c->fd, &p->c->guard);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (p->c && p->c->guard.bad) {   /* RFC 6455 5.1 */
            lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, (unsigned char *)"unmasked frame", 14);
            return -1;
        }
        if (p->c) on_receive(s, wsi, p->c, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p->c ? ws_writeable(s, wsi, p->c) : 0;
    case LWS_CALLBACK_CLOSED:
        if (p->c) {
            srv_ws_unwatch(p->c->fd);
            conn_gone(s, p->c);
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
    char addr[INET6_ADDRSTRLEN];
    int loopback = 0;
    if (o->port < 0 || o->port > 65535)
        return eng_seterr(err, ENG_EINVAL, "port %d is outside 0-65535", o->port);
    int rc = resolve_host(o->host, addr, sizeof addr, &loopback, err);
    if (rc) return rc;
    if (!o->token && !loopback)
        return eng_seterr(err, ENG_EINVAL, "refusing to listen on %s without a token "
                          "(--token, or BRISK_TOKEN); only loopback may run without one", o->host);
    srv *s = calloc(1, sizeof *s);
    if (!s) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    s->o = *o;
    s->e = e;
    s->t_start = eng_now_s();
    memcpy(s->addr, addr, sizeof addr);
    const eng_model *m = eng_engine_model(e);
    eng_chat *ct = NULL;
    snprintf(s->model_id, sizeof s->model_id, "%s", o->model_name && *o->model_name ? o->model_name : "brisk");
    snprintf(s->chat_family, sizeof s->chat_family, "%s",
             eng_chat_create(m, &ct, NULL) ? "" : eng_chat_family_name(ct));
    eng_chat_free(ct);
    s->model = (oai_model){ .id = s->model_id, .chat_family = s->chat_family, .created = (long)time(NULL),
                            .context = eng_model_config(m)->max_pos };
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    rc = orc_sched_create(e, o->max_queue, &s->sched, err);
    if (rc) { free(s); return rc; }
    snapshot(s);   /* the engine thread is not running yet */
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = o->port;
    info.iface = s->addr;
    info.protocols = protocols;
    info.vhost_name = "brisk";
    info.user = s;
    /* text frames must be UTF-8: others are closed with 1007 (RFC 6455 8.1) */
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (!(s->ctx = lws_create_context(&info)) || !(s->vh = lws_create_vhost(s->ctx, &info)) ||
        lws_get_vhost_listen_port(s->vh) <= 0) {
        if (s->ctx) lws_context_destroy(s->ctx);
        orc_sched_destroy(s->sched);
        free(s);
        return eng_seterr(err, ENG_EIO, "cannot listen on %s port %d (in use, or not an "
                          "address of this machine?)", addr, o->port);
    }
    *out = s;
    return ENG_OK;
}

const char *srv_address(const srv *s) { return s->addr; }

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
    orc_sched_destroy(s->sched);   /* empty after srv_run; stops what is left otherwise */
    lws_context_destroy(s->ctx);   /* closes sockets: CLOSED posts CMD_GONE */
    for (cmd *k = s->cmd_head, *n; k; k = n) {
        n = k->next;
        if (k->kind == CMD_GONE) free_conn(s, k->c);
        srv_request_free(&k->req);
        oai_free(k->oai);
        free(k);
    }
    while (s->conns) free_conn(s, s->conns);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
