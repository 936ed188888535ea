/* proto.c — parsing and validating client messages (docs/protocol.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "srv.h"

void srv_default_opts(srv_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->web_root = "server/web";
    o->max_queue = 256;
    o->lim.max_message = 1 << 20;
    o->lim.max_queries_per_client = 16;
    o->lim.max_tokens_cap = 4096;
    o->lim.max_outbox = 1 << 20;
}

char *srv_error_json(const char *id, const char *code, const char *msg) {
    cJSON *m = orc_msg("error", id);
    cJSON_AddStringToObject(m, "code", code);
    cJSON_AddStringToObject(m, "message", msg);
    char *s = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    return s;
}

void srv_request_free(srv_request *r) {
    orc_query_free(&r->q);
    cJSON_Delete(r->body);
    memset(r, 0, sizeof *r);
}

#define FAIL(c, ...) do { *code = (c); rc = eng_seterr(err, ENG_EINVAL, __VA_ARGS__); goto fail; } while (0)

/* Reads an optional number field within [lo, hi] (a whole number when
 * integer); 1 = present, 0 = absent, -1 = bad. */
static int num_field(const cJSON *o, const char *k, double lo, double hi, int integer, double *v) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsNumber(f) || !(f->valuedouble >= lo && f->valuedouble <= hi)) return -1;
    if (integer && f->valuedouble != floor(f->valuedouble)) return -1;
    *v = f->valuedouble;
    return 1;
}

/* Where a JSON text holds a NUL character: 2 for a raw 0 byte, 1 for a
 * \u0000 escape inside a string, 0 for none.  cJSON ends its strings at the
 * first NUL, so such an id or prompt would be cut short without a word. */
int srv_json_has_nul(const char *buf, size_t len) {
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (!c) return 2;
        if (!in_str) { in_str = c == '"'; continue; }
        if (c == '"') in_str = 0;
        else if (c == '\\' && i + 1 < len) {
            if (buf[i + 1] == 'u' && i + 5 < len && !memcmp(buf + i + 2, "0000", 4)) return 1;
            i++;   /* the escaped character */
        }
    }
    return 0;
}

static int parse_messages(const cJSON *arr, orc_query *q, const char **code, eng_err *err) {
    int rc = ENG_OK, n = cJSON_GetArraySize(arr);
    if (n < 1 || n > 256) FAIL("bad_field", "messages must hold 1 to 256 entries");
    q->messages = calloc((size_t)n, sizeof *q->messages);
    if (!q->messages) FAIL("internal", "out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content))
            FAIL("bad_field", "each message needs string 'role' and 'content'");
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool"))
            FAIL("bad_field", "unknown message role '%.32s'", r);
        eng_chat_msg *dst = &q->messages[q->n_messages++];
        dst->role = strdup(r);
        dst->content = strdup(content->valuestring);
        if (!dst->role || !dst->content) FAIL("internal", "out of memory");
    }
fail:
    return rc;
}

int srv_parse_stop(const cJSON *st, orc_query *q, const char **code, eng_err *err) {
    int rc = ENG_OK;
    if (!st || cJSON_IsNull(st)) return ENG_OK;
    if (cJSON_IsString(st)) {
        if (!*st->valuestring) FAIL("bad_field", "stop must not be empty");
        if (!(q->stop[q->n_stop++] = strdup(st->valuestring))) FAIL("internal", "out of memory");
        return ENG_OK;
    }
    if (!cJSON_IsArray(st) || cJSON_GetArraySize(st) > ORC_MAX_STOP)
        FAIL("bad_field", "stop must be a string or a list of up to %d strings", ORC_MAX_STOP);
    const cJSON *x;
    cJSON_ArrayForEach(x, st) {
        if (!cJSON_IsString(x) || !*x->valuestring) FAIL("bad_field", "each stop string must be a non-empty string");
        if (!(q->stop[q->n_stop++] = strdup(x->valuestring))) FAIL("internal", "out of memory");
    }
fail:
    return rc;
}

int srv_parse_sampling(const cJSON *b, const srv_limits *lim, srv_request *r,
                       const char **code, eng_err *err) {
    int rc = ENG_OK;
    double v;
    r->q.max_tokens = 256 < lim->max_tokens_cap ? 256 : lim->max_tokens_cap;
    int k = num_field(b, "max_tokens", 1, lim->max_tokens_cap, 1, &v);
    if (k < 0) FAIL("bad_field", "max_tokens must be an integer from 1 to %d", lim->max_tokens_cap);
    if (k) r->q.max_tokens = (int)v;
    if ((k = num_field(b, "temperature", 0, 5, 0, &v)) < 0) FAIL("bad_field", "temperature must be in [0, 5]");
    if (k) r->q.samp.temperature = (float)v;
    if ((k = num_field(b, "top_p", 0, 1, 0, &v)) < 0) FAIL("bad_field", "top_p must be in [0, 1]");
    if (k) r->q.samp.top_p = (float)v;
    if ((k = num_field(b, "top_k", 0, 1e6, 1, &v)) < 0) FAIL("bad_field", "top_k must be an integer from 0 to 1000000");
    if (k) r->q.samp.top_k = (int)v;
    if ((k = num_field(b, "seed", 0, 9007199254740991.0, 1, &v)) < 0) FAIL("bad_field", "seed must be a non-negative integer");
    if (k) r->q.samp.seed = (uint64_t)v;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(b, "spec");
    if (sp && (!cJSON_IsString(sp) || (strcmp(sp->valuestring, "ngram") && strcmp(sp->valuestring, "off"))))
        FAIL("bad_field", "spec must be \"ngram\" or \"off\"");
    r->q.spec = sp && !strcmp(sp->valuestring, "ngram");
    if ((k = num_field(b, "n", 1, 64, 1, &v)) < 0) FAIL("bad_field", "n must be an integer from 1 to 64");
    r->n_branches = k ? (int)v : 1;
    if ((k = num_field(b, "budget_s", 0.01, 3600, 0, &v)) < 0) FAIL("bad_field", "budget_s must be in [0.01, 3600]");
    if (k) r->budget_s = v;
    if ((rc = srv_parse_stop(cJSON_GetObjectItemCaseSensitive(b, "stop"), &r->q, code, err))) goto fail;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(b, "logprobs");
    if (lp && !cJSON_IsBool(lp) && !cJSON_IsNull(lp)) FAIL("bad_field", "logprobs must be true or false");
    r->q.logprobs = cJSON_IsTrue(lp);
    if ((k = num_field(b, "top_logprobs", 0, ORC_MAX_TOP_LOGPROBS, 1, &v)) < 0)
        FAIL("bad_field", "top_logprobs must be an integer from 0 to %d", ORC_MAX_TOP_LOGPROBS);
    if (k) r->q.top_logprobs = (int)v;
    if (r->q.top_logprobs) r->q.logprobs = 1;
fail:
    return rc;
}

static int parse_query(const cJSON *b, const srv_limits *lim, srv_request *r,
                       const char **code, eng_err *err) {
    int rc = ENG_OK;
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(b, "mode");
    if (mode && !cJSON_IsString(mode)) FAIL("bad_field", "mode must be a string");
    snprintf(r->mode, sizeof r->mode, "%s", mode ? mode->valuestring : "chat");
    if (strcmp(r->mode, "chat") && strcmp(r->mode, "reason") && strcmp(r->mode, "agent") &&
        strcmp(r->mode, "parallel"))
        FAIL("bad_field", "unknown mode '%.32s' (chat, reason, agent, parallel)", r->mode);
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(b, "prompt");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(b, "messages");
    if (prompt && msgs) FAIL("bad_field", "give either prompt or messages, not both");
    if (prompt) {
        if (!cJSON_IsString(prompt) || !*prompt->valuestring) FAIL("bad_field", "prompt must be a non-empty string");
        if (!(r->q.prompt = strdup(prompt->valuestring))) FAIL("internal", "out of memory");
    } else if (msgs) {
        if (!cJSON_IsArray(msgs)) FAIL("bad_field", "messages must be an array");
        if ((rc = parse_messages(msgs, &r->q, code, err))) goto fail;
    } else if (strcmp(r->mode, "parallel")) {
        FAIL("missing_field", "a query needs 'prompt' or 'messages'");
    }
    rc = srv_parse_sampling(b, lim, r, code, err);
    if (!rc && !strcmp(r->mode, "chat")) r->q.n = r->n_branches;   /* choices */
fail:
    return rc;
}

int srv_parse_request(const char *buf, size_t len, const srv_limits *lim,
                      srv_request *r, const char **code, eng_err *err) {
    int rc = ENG_OK;
    memset(r, 0, sizeof *r);
    if (len > lim->max_message) FAIL("too_large", "message of %zu bytes exceeds the limit of %zu", len, lim->max_message);
    int nul = srv_json_has_nul(buf, len);
    if (nul == 2) FAIL("bad_json", "message holds a NUL byte");
    if (nul) FAIL("bad_field", "strings may not hold a NUL character (\\u0000)");
    r->body = cJSON_ParseWithLength(buf, len);
    if (!r->body) FAIL("bad_json", "message is not valid JSON");
    if (!cJSON_IsObject(r->body)) FAIL("bad_json", "message must be a JSON object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(r->body, "type");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r->body, "id");
    if (!cJSON_IsString(type)) FAIL("missing_field", "message needs a string 'type'");
    if (id && !cJSON_IsString(id)) FAIL("bad_field", "id must be a string");
    if (id && (strlen(id->valuestring) == 0 || strlen(id->valuestring) >= sizeof r->id))
        FAIL("bad_field", "id must be 1 to %zu characters", sizeof r->id - 1);
    if (id) {
        snprintf(r->id, sizeof r->id, "%s", id->valuestring);
        snprintf(r->q.id, sizeof r->q.id, "%s", id->valuestring);
    }
    const char *t = type->valuestring;
    if (!strcmp(t, "ping")) { r->type = SRV_REQ_PING; return ENG_OK; }
    if (!strcmp(t, "cancel")) {
        r->type = SRV_REQ_CANCEL;
        if (!id) FAIL("missing_field", "cancel needs the query's id");
        return ENG_OK;
    }
    if (strcmp(t, "query")) FAIL("bad_type", "unknown message type '%.32s'", t);
    r->type = SRV_REQ_QUERY;
    if (!id) FAIL("missing_field", "query needs an id");
    if ((rc = parse_query(r->body, lim, r, code, err))) goto fail;
    return ENG_OK;
fail: {
        char keep[64];
        memcpy(keep, r->id, sizeof keep);
        srv_request_free(r);
        memcpy(r->id, keep, sizeof keep);
    }
    return rc;
}
