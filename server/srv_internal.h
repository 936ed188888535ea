/* srv_internal.h — what the server module's files share (srv.c owns the
 * sockets and the engine thread; ws_guard.c checks client frames). */
#ifndef SRV_INTERNAL_H
#define SRV_INTERNAL_H
#include <stdint.h>
#include "srv.h"

/* ------------------------------------------------ ws_guard.c
 * RFC 6455 5.1: a server must close a connection on which the client sends
 * an unmasked frame (code 1002).  libwebsockets 4.1 (Debian 12's) accepts
 * them, so the server reads the frame headers itself as they arrive: while
 * a websocket connection's descriptor is watched, every recv() on it scans
 * the bytes read for frame headers and marks the guard bad at an unmasked
 * one; srv.c then closes the connection with 1002. */
typedef struct srv_ws_guard {
    int st;            /* where in a frame the next byte falls */
    int need;          /* header bytes still to come in this state */
    uint64_t left;     /* payload bytes still to come */
    volatile int bad;  /* an unmasked client frame was seen */
} srv_ws_guard;

/* Starts scanning what is read from fd (after the upgrade: the next byte
 * starts a frame).  g must stay valid until srv_ws_unwatch(fd). */
void srv_ws_watch(int fd, srv_ws_guard *g);
void srv_ws_unwatch(int fd);

/* ------------------------------------------------ proto.c */
/* Where a JSON text holds a NUL character: 2 for a raw 0 byte, 1 for a
 * \u0000 escape inside a string, 0 for none (cJSON would cut the string). */
int srv_json_has_nul(const char *buf, size_t len);

/* ------------------------------------------------ oai.c
 * The OpenAI-compatible API: request bodies into brisk queries, a query's
 * messages into the OpenAI response (JSON, or server-sent events). */
enum { OAI_CHAT = 1, OAI_COMPLETIONS };
typedef struct oai_req oai_req;
typedef struct oai_model {
    const char *id;            /* the served model's name (the "model" field) */
    const char *chat_family;   /* eng_chat_family_name: how a forced tool call opens */
    long created;
    int context;               /* the model's context, tokens */
} oai_model;

/* Parses a request body into req (the brisk query: mode, q, body) and *out
 * (how to answer); 0, or an HTTP status with *err_body (malloc'd). */
int  oai_parse(int kind, const char *body, size_t len, const srv_limits *lim, const oai_model *m,
               srv_request *req, oai_req **out, char **err_body);
void oai_free(oai_req *r);
/* Takes one message of the query and appends what the client gets of it to
 * out; 1 once the response is complete. */
int  oai_feed(oai_req *r, const cJSON *msg, eng_buf *out);
/* The query was refused before it ran (brisk error code): the response. */
int  oai_refuse(oai_req *r, const char *code, const char *message, eng_buf *out);
int  oai_stream(const oai_req *r);
/* 0 until the response's first bytes are made, then its HTTP status. */
int  oai_status(const oai_req *r);
const char *oai_content_type(const oai_req *r);
/* {"error": {"message", "type", "param": null, "code"}}, malloc'd. */
char *oai_error_body(const char *message, const char *type, const char *code);
/* The HTTP status, error type and code for a brisk error code. */
int  oai_status_of(const char *brisk_code, const char **type, const char **code);
/* GET /v1/models (one == NULL) or /v1/models/ONE (NULL when ONE is not it). */
char *oai_models_body(const oai_model *m, const char *one);
#endif
