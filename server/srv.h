/* srv.h — brisk's server: one libwebsockets event loop for clients (the
 * websocket protocol, the OpenAI-compatible HTTP API under /v1, /health,
 * /metrics, /) and one engine thread that runs the orchestrator's
 * scheduler for both.  The protocols are in docs/protocol.md. */
#ifndef SRV_H
#define SRV_H
#include <stdio.h>
#include "orc.h"

typedef struct srv_limits {
    size_t max_message;        /* bytes in one client message */
    int max_queries_per_client;
    int max_tokens_cap;        /* per query */
    size_t max_outbox;         /* queued bytes per client before its queries pause */
} srv_limits;

typedef struct srv_opts {
    const char *host;          /* bind address or host name; "127.0.0.1" default */
    int port;                  /* 0 = pick a free port (see srv_port) */
    const char *token;         /* bearer token; NULL only allowed on loopback */
    const char *allowed_origin;/* NULL = same host only; "*" = any */
    const char *web_root;      /* folder with index.html */
    int max_queue;             /* queries waiting for the engine (all clients) before
                                * new ones are refused with "busy" */
    const tool_registry *tools;/* agent mode's tools; NULL = no agent mode */
    int allow_script;          /* tests: a query's "script" forces the model's output */
    int plan;                  /* calibrate at start so reason queries may give budget_s */
    FILE *log;                 /* request log, one line per query; NULL = none */
    const char *model_name;    /* the model's name in the OpenAI API; NULL = "brisk" */
    double (*cache_hit_rate)(void *ud);   /* web cache, for /metrics; may be NULL */
    void *cache_ud;
    srv_limits lim;
} srv_opts;

void srv_default_opts(srv_opts *o);

/* ------------------------------------------------ protocol (proto.c) */
enum { SRV_REQ_QUERY = 1, SRV_REQ_CANCEL, SRV_REQ_PING };

typedef struct srv_request {
    int type;
    char id[64];
    char mode[16];             /* chat | reason | agent | parallel */
    orc_query q;
    int n_branches;            /* reason */
    double budget_s;           /* latency budget, 0 = none */
    cJSON *body;               /* the whole message, for mode-specific fields */
} srv_request;

/* Parses and validates one client message.  On failure returns an ENG_* code,
 * sets *code to a short machine-readable error code and err->msg. */
int  srv_parse_request(const char *buf, size_t len, const srv_limits *lim,
                       srv_request *out, const char **code, eng_err *err);
void srv_request_free(srv_request *r);
/* The fields every mode shares (max_tokens, temperature, top_p, top_k, seed,
 * spec, n, budget_s, stop, logprobs, top_logprobs) of a request object into
 * r->q, r->n_branches and r->budget_s; as srv_parse_request on failure. */
int  srv_parse_sampling(const cJSON *body, const srv_limits *lim, srv_request *r,
                        const char **code, eng_err *err);
/* "stop": a string or a list of up to ORC_MAX_STOP non-empty strings (absent
 * or null: none), into q->stop; as srv_parse_request on failure. */
int  srv_parse_stop(const cJSON *stop, orc_query *q, const char **code, eng_err *err);
/* {"type":"error","id":id,"code":code,"message":msg} as a malloc'd string. */
char *srv_error_json(const char *id, const char *code, const char *msg);

/* ------------------------------------------------ server (srv.c) */
typedef struct srv srv;
int  srv_create(eng_engine *e, const srv_opts *o, srv **out, eng_err *err);
int  srv_port(const srv *s);
const char *srv_address(const srv *s);   /* the bind address, numeric */
/* Runs until srv_stop (e.g. from a signal handler) is called. */
int  srv_run(srv *s);
void srv_stop(srv *s);        /* async-signal-safe */
void srv_destroy(srv *s);
#endif
