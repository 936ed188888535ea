/* oai.c — the OpenAI-compatible HTTP API (docs/protocol.md, "OpenAI API"):
 * a /v1/chat/completions or /v1/completions body parsed into a brisk query
 * (the same tasks and scheduler as the websocket side), and the query's
 * messages (token, branch, answer, stats, error, queued) translated into the
 * OpenAI response: one JSON object, or server-sent events ending with
 * "data: [DONE]".
 *
 * Per choice the output text goes through two streaming filters: <think>
 * blocks become reasoning_content, and with tools, tool calls (recognised by
 * tools/tool_parser.c, the agent's parser) become tool_calls whose
 * arguments stream as JSON text: "{" and each argument as it completes,
 * then "}". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "srv_internal.h"

typedef struct oai_choice {
    int index;
    int started;              /* stream: the role chunk went out */
    int in_think;             /* inside <think> ... </think> */
    int any_text;             /* content or reasoning has begun (a <think> only opens first) */
    int after_think;          /* a </think> closed: the blank lines after it are not content */
    eng_buf pend;             /* text held while it may be the start of a think tag */
    eng_buf content, reasoning;   /* the message (non-stream) */
    tool_parser *tp;
    cJSON *calls;             /* [{"id","type","function":{"name","arguments"}}] */
    eng_buf args;             /* arguments text of the call being parsed */
    int n_args;               /* arguments streamed in that call */
    cJSON *lp;                /* logprobs entries (non-stream) */
    const char *finish;       /* NULL while running */
} oai_choice;

struct oai_req {
    int kind, stream, include_usage;
    char mode[16];
    char id[48], model[128];
    long created;
    int n, logprobs, top_logprobs;
    int tools;                /* tool calls are parsed out of the output */
    char *prefill;            /* the start of a forced tool call (tool_choice) */
    oai_choice *ch;
    int prompt_tokens, completion_tokens;
    cJSON *extra;             /* reason mode: brisk's own answer fields */
    int status;               /* 0 until the response's status is fixed */
    int produced;             /* bytes of the response have been made */
    char *err_code, *err_msg; /* an error message of the query */
    /* while a chunk of the output is being filtered */
    oai_choice *cur;
    eng_buf *out;
};

/* ------------------------------------------------------------ errors */
char *oai_error_body(const char *message, const char *type, const char *code) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", code);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int oai_status_of(const char *brisk_code, const char **type, const char **code) {
    static const struct { const char *brisk, *code, *type; int status; } map[] = {
        { "prompt_too_long", "context_length_exceeded", "invalid_request_error", 400 },
        { "busy", "server_busy", "rate_limit_error", 429 },
        { "too_many_queries", "server_busy", "rate_limit_error", 429 },
        { "shutdown", "shutting_down", "server_error", 503 },
        { "unsupported_mode", "unsupported", "invalid_request_error", 400 },
        { "engine", "engine_error", "server_error", 500 },
        { "internal", "internal_error", "server_error", 500 },
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(brisk_code, map[i].brisk)) {
            *type = map[i].type;
            *code = map[i].code;
            return map[i].status;
        }
    *type = "invalid_request_error";   /* bad_json, bad_field, missing_field, too_large */
    *code = brisk_code;
    return !strcmp(brisk_code, "too_large") ? 413 : 400;
}

/* ------------------------------------------------------------ parsing */
#define BAD(st, c, ...) do { status = (st); ecode = (c); snprintf(emsg, sizeof emsg, __VA_ARGS__); goto fail; } while (0)
/* the message is in emsg already (or, empty, was lost to memory) */
#define BAD_SAID(st, c) do { status = (st); ecode = (c); if (!emsg[0]) snprintf(emsg, sizeof emsg, "out of memory"); goto fail; } while (0)

static const char *str_field(const cJSON *o, const char *k) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* Text of a message's content: a string, null, or a list of text parts. */
static int content_text(const cJSON *c, char **out, char *emsg, size_t cap) {
    *out = NULL;
    if (!c || cJSON_IsNull(c)) return 0;
    if (cJSON_IsString(c)) return (*out = strdup(c->valuestring)) ? 0 : -1;
    if (!cJSON_IsArray(c)) { snprintf(emsg, cap, "content must be a string, null or a list of parts"); return -1; }
    eng_buf b = {0};
    eng_buf_add(&b, "", 0);
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const char *type = str_field(part, "type"), *text = str_field(part, "text");
        if (!type || strcmp(type, "text") || !text) {
            snprintf(emsg, cap, "only text content parts are supported (got type '%.32s')", type ? type : "?");
            eng_buf_free(&b);
            return -1;
        }
        eng_buf_adds(&b, text);
    }
    return (*out = eng_buf_take(&b)) ? 0 : -1;
}

/* One OpenAI message into m (strings owned by m, freed with the query). */
static int parse_message(const cJSON *x, int i, eng_chat_msg *m, char *emsg, size_t cap) {
    const char *role = str_field(x, "role");
    if (!cJSON_IsObject(x) || !role) { snprintf(emsg, cap, "messages[%d] needs a string 'role'", i); return -1; }
    if (!strcmp(role, "developer")) role = "system";   /* OpenAI's newer name */
    if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool")) {
        snprintf(emsg, cap, "messages[%d]: unknown role '%.32s'", i, role);
        return -1;
    }
    if (!(m->role = strdup(role))) return -1;
    char *text = NULL, sub[200] = "";
    if (content_text(cJSON_GetObjectItemCaseSensitive(x, "content"), &text, sub, sizeof sub)) {
        snprintf(emsg, cap, "messages[%d]: %s", i, sub[0] ? sub : "out of memory");
        return -1;
    }
    m->content = text;
    const char *rc = str_field(x, "reasoning_content");
    if (rc && !(m->reasoning = strdup(rc))) return -1;
    const char *tcid = str_field(x, "tool_call_id"), *name = str_field(x, "name");
    if (tcid && !(m->tool_call_id = strdup(tcid))) return -1;
    if (name && !(m->name = strdup(name))) return -1;
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(x, "tool_calls");
    if (calls && !cJSON_IsNull(calls)) {
        int n = cJSON_GetArraySize(calls);
        if (!cJSON_IsArray(calls) || strcmp(role, "assistant") || n > 64) {
            snprintf(emsg, cap, "messages[%d]: tool_calls must be a list (at most 64) on an assistant message", i);
            return -1;
        }
        eng_chat_call *cc = calloc((size_t)n + 1, sizeof *cc);
        if (!cc) return -1;
        m->tool_calls = cc;
        const cJSON *c;
        cJSON_ArrayForEach(c, calls) {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
            const char *fname = str_field(fn, "name"), *args = str_field(fn, "arguments"), *id = str_field(c, "id");
            if (!fname || !*fname) {
                snprintf(emsg, cap, "messages[%d]: each tool call needs function.name", i);
                return -1;
            }
            eng_chat_call *d = &cc[m->n_tool_calls++];
            if (!(d->name = strdup(fname)) || (args && !(d->arguments = strdup(args))) || (id && !(d->id = strdup(id))))
                return -1;
        }
    }
    return 0;
}

static int parse_messages(const cJSON *arr, orc_query *q, char *emsg, size_t cap) {
    int n = cJSON_GetArraySize(arr);
    if (!cJSON_IsArray(arr) || n < 1 || n > 1024) {
        snprintf(emsg, cap, "messages must be a list of 1 to 1024 messages");
        return -1;
    }
    if (!(q->messages = calloc((size_t)n, sizeof *q->messages))) return -1;
    const cJSON *x;
    int i = 0;
    cJSON_ArrayForEach(x, arr) {
        q->n_messages++;
        if (parse_message(x, i++, &q->messages[q->n_messages - 1], emsg, cap)) return -1;
    }
    return 0;
}

/* tools and tool_choice: the definitions go to the template; "required" or a
 * named function starts the reply with the opening of a call (prefill) in
 * the template family's form. */
static int parse_tools(const cJSON *b, const char *family, orc_query *q, oai_req *r, char *emsg, size_t cap) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(b, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(b, "tool_choice");
    if (!tools || cJSON_IsNull(tools)) {
        if (choice && !cJSON_IsNull(choice) && !(cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")) &&
            !(cJSON_IsString(choice) && !strcmp(choice->valuestring, "auto"))) {
            snprintf(emsg, cap, "tool_choice needs tools");
            return -1;
        }
        return 0;
    }
    if (!cJSON_IsArray(tools) || cJSON_GetArraySize(tools) > 128) {
        snprintf(emsg, cap, "tools must be a list of at most 128 tools");
        return -1;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const char *type = str_field(t, "type"), *name = str_field(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
        if (!type || strcmp(type, "function") || !name || !*name) {
            snprintf(emsg, cap, "each tool must be {\"type\": \"function\", \"function\": {\"name\": ..., ...}}");
            return -1;
        }
    }
    const char *forced = NULL;
    if (choice && !cJSON_IsNull(choice)) {
        if (cJSON_IsString(choice)) {
            const char *c = choice->valuestring;
            if (!strcmp(c, "none")) return 0;   /* no tools shown, none parsed */
            if (!strcmp(c, "required"))   /* one tool: that one; more: the model names it */
                forced = cJSON_GetArraySize(tools) == 1
                       ? str_field(cJSON_GetObjectItemCaseSensitive(tools->child, "function"), "name") : "";
            else if (strcmp(c, "auto")) {
                snprintf(emsg, cap, "tool_choice must be \"none\", \"auto\", \"required\" or a named function");
                return -1;
            }
        } else {
            forced = str_field(cJSON_GetObjectItemCaseSensitive(choice, "function"), "name");
            const cJSON *x;
            int known = 0;
            cJSON_ArrayForEach(x, tools)
                known |= forced && !strcmp(forced, str_field(cJSON_GetObjectItemCaseSensitive(x, "function"), "name"));
            if (!known) {
                snprintf(emsg, cap, "tool_choice names a function that is not in tools");
                return -1;
            }
        }
    }
    if (!(q->tools_json = cJSON_PrintUnformatted(tools))) return -1;
    r->tools = 1;
    if (forced) {
        int llama = !strcmp(family, "llama3");
        eng_buf p = {0};
        eng_buf_adds(&p, llama ? "{\"name\": \"" : "<tool_call>\n{\"name\": \"");
        if (*forced) eng_buf_printf(&p, "%s\", \"%s\": ", forced, llama ? "parameters" : "arguments");
        if (!(r->prefill = eng_buf_take(&p)) || !(q->prefill = strdup(r->prefill))) return -1;
    }
    return 0;
}

/* Refuses what brisk cannot honour rather than ignoring it silently. */
static int unsupported(const cJSON *b, int kind, char *emsg, size_t cap) {
    const char *zero[] = { "frequency_penalty", "presence_penalty" };
    for (int i = 0; i < 2; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(b, zero[i]);
        if (f && !cJSON_IsNull(f) && !(cJSON_IsNumber(f) && f->valuedouble == 0)) {
            snprintf(emsg, cap, "%s is not supported (only 0)", zero[i]);
            return -1;
        }
    }
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(b, "logit_bias");
    if (lb && !cJSON_IsNull(lb) && cJSON_GetArraySize(lb) > 0) { snprintf(emsg, cap, "logit_bias is not supported"); return -1; }
    const char *rf = str_field(cJSON_GetObjectItemCaseSensitive(b, "response_format"), "type");
    if (rf && strcmp(rf, "text")) { snprintf(emsg, cap, "response_format '%.32s' is not supported (only text)", rf); return -1; }
    if (cJSON_GetObjectItemCaseSensitive(b, "functions") || cJSON_GetObjectItemCaseSensitive(b, "function_call")) {
        snprintf(emsg, cap, "functions/function_call are not supported: use tools and tool_choice");
        return -1;
    }
    if (kind == OAI_COMPLETIONS) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "echo"))) { snprintf(emsg, cap, "echo is not supported"); return -1; }
        const cJSON *sfx = cJSON_GetObjectItemCaseSensitive(b, "suffix");
        if (sfx && !cJSON_IsNull(sfx)) { snprintf(emsg, cap, "suffix is not supported"); return -1; }
        const cJSON *bo = cJSON_GetObjectItemCaseSensitive(b, "best_of");
        if (bo && !cJSON_IsNull(bo) && !(cJSON_IsNumber(bo) && bo->valuedouble == 1)) {
            snprintf(emsg, cap, "best_of is not supported (only 1)");
            return -1;
        }
    }
    return 0;
}

/* An id for the response; ids of one server differ by a counter. */
static void make_id(oai_req *r) {
    static unsigned long counter;   /* the lws thread alone parses requests */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(r->id, sizeof r->id, "%s-%lx%05lx%lx", r->kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long)ts.tv_sec, (unsigned long)(ts.tv_nsec / 10000), ++counter);
    r->created = ts.tv_sec;
}

int oai_parse(int kind, const char *body, size_t len, const srv_limits *lim, const oai_model *model,
              srv_request *req, oai_req **out, char **err_body) {
    int status = 0;
    const char *ecode = "bad_field";
    char emsg[600] = "";
    *out = NULL;
    *err_body = NULL;
    memset(req, 0, sizeof *req);
    oai_req *r = calloc(1, sizeof *r);
    if (!r) BAD(500, "internal_error", "out of memory");
    r->kind = kind;
    if (len > lim->max_message) BAD(413, "too_large", "the body is %zu bytes, over the limit of %zu", len, lim->max_message);
    if (srv_json_has_nul(body, len)) BAD(400, "bad_field", "strings may not hold a NUL character");
    if (!(req->body = cJSON_ParseWithLength(body, len)) || !cJSON_IsObject(req->body))
        BAD(400, "bad_json", "the body must be a JSON object");
    const cJSON *b = req->body;
    const cJSON *mf = cJSON_GetObjectItemCaseSensitive(b, "model");
    if (mf && !cJSON_IsNull(mf) && (!cJSON_IsString(mf) || strcmp(mf->valuestring, model->id)))
        BAD(404, "model_not_found", "the model '%.100s' does not exist; this server serves '%s'",
            cJSON_IsString(mf) ? mf->valuestring : "?", model->id);
    snprintf(r->model, sizeof r->model, "%s", model->id);
    if (unsupported(b, kind, emsg, sizeof emsg)) BAD_SAID(400, "unsupported_parameter");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(b, "stream");
    if (st && !cJSON_IsBool(st) && !cJSON_IsNull(st)) BAD(400, "bad_field", "stream must be true or false");
    r->stream = cJSON_IsTrue(st);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(b, "stream_options");
    r->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    /* brisk's own fields: mode (chat, reason, parallel), spec, branches, ... */
    const char *mode = str_field(b, "mode");
    if (cJSON_GetObjectItemCaseSensitive(b, "mode") && !mode) BAD(400, "bad_field", "mode must be a string");
    snprintf(r->mode, sizeof r->mode, "%s", mode ? mode : "chat");
    if (strcmp(r->mode, "chat") && strcmp(r->mode, "reason") && strcmp(r->mode, "parallel"))
        BAD(400, "bad_field", "mode must be chat, reason or parallel (got '%.32s')", r->mode);
    snprintf(req->mode, sizeof req->mode, "%s", r->mode);
    /* the shared sampling fields, as the websocket protocol reads them */
    const cJSON *mct = cJSON_GetObjectItemCaseSensitive(b, "max_completion_tokens");
    if (mct && !cJSON_GetObjectItemCaseSensitive(b, "max_tokens"))
        cJSON_AddItemToObject(req->body, "max_tokens", cJSON_Duplicate(mct, 0));
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(b, "logprobs");
    if (kind == OAI_COMPLETIONS && lp && !cJSON_IsNull(lp)) {   /* an integer there: alternatives */
        if (!cJSON_IsNumber(lp) || lp->valuedouble < 0 || lp->valuedouble > 5 || lp->valuedouble != floor(lp->valuedouble))
            BAD(400, "bad_field", "logprobs must be an integer from 0 to 5");
        cJSON *k = cJSON_CreateNumber(lp->valuedouble);
        cJSON_ReplaceItemInObjectCaseSensitive(req->body, "logprobs", cJSON_CreateTrue());
        cJSON_DeleteItemFromObjectCaseSensitive(req->body, "top_logprobs");
        cJSON_AddItemToObject(req->body, "top_logprobs", k);
    }
    if (kind == OAI_CHAT) {
        const cJSON *tl = cJSON_GetObjectItemCaseSensitive(b, "top_logprobs");
        if (tl && !cJSON_IsNull(tl) && !cJSON_IsTrue(lp)) BAD(400, "bad_field", "top_logprobs needs logprobs: true");
    }
    const char *code = "bad_field";
    eng_err e = { 0 };
    if (srv_parse_sampling(req->body, lim, req, &code, &e)) BAD(400, code, "%s", e.msg);
    r->n = req->n_branches;
    r->logprobs = req->q.logprobs;
    r->top_logprobs = req->q.top_logprobs;
    if (!strcmp(r->mode, "reason")) {
        if (r->n != 1) BAD(400, "bad_field", "mode reason answers one choice (n 1); its branches are 'branches'");
        double v = 8;
        const cJSON *br = cJSON_GetObjectItemCaseSensitive(b, "branches");
        if (br && (!cJSON_IsNumber(br) || br->valuedouble < 1 || br->valuedouble > 64 || br->valuedouble != floor(br->valuedouble)))
            BAD(400, "bad_field", "branches must be an integer from 1 to 64");
        if (br) v = br->valuedouble;
        req->n_branches = (int)v;
    } else if (!strcmp(r->mode, "parallel") && r->n != 1) {
        BAD(400, "bad_field", "mode parallel answers one choice (n 1)");
    }
    if (strcmp(r->mode, "chat") && (r->logprobs || req->q.n_stop))
        BAD(400, "bad_field", "logprobs and stop are for mode chat");
    req->q.n = r->n;
    /* the prompt */
    if (kind == OAI_CHAT) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(b, "messages");
        if (!msgs) BAD(400, "missing_field", "a chat completion needs 'messages'");
        if (parse_messages(msgs, &req->q, emsg, sizeof emsg)) BAD_SAID(400, "bad_field");
        if (parse_tools(b, model->chat_family, &req->q, r, emsg, sizeof emsg))
            BAD_SAID(400, "bad_field");
        if (r->tools && strcmp(r->mode, "chat")) BAD(400, "bad_field", "tools are for mode chat");
        if (!strcmp(r->mode, "parallel")) {   /* the last user message is the prompt (schema detection) */
            char *last = NULL;
            for (int i = req->q.n_messages - 1; i >= 0 && !last; i--)
                if (!strcmp(req->q.messages[i].role, "user"))
                    last = strdup(req->q.messages[i].content ? req->q.messages[i].content : "");
            orc_query msgs = { .messages = req->q.messages, .n_messages = req->q.n_messages };
            req->q.messages = NULL;
            req->q.n_messages = 0;
            orc_query_free(&msgs);
            if (!last) BAD(400, "bad_field", "mode parallel needs a user message (or a 'parallel' schema and one)");
            req->q.prompt = last;
        }
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(b, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child)) p = p->child;
        if (!cJSON_IsString(p) || !*p->valuestring)
            BAD(400, "bad_field", "prompt must be a non-empty string (lists of prompts or of token ids are not supported)");
        if (!(req->q.prompt = strdup(p->valuestring))) BAD(500, "internal_error", "out of memory");
        if (cJSON_GetObjectItemCaseSensitive(b, "tools")) BAD(400, "bad_field", "tools are for chat completions");
    }
    req->type = SRV_REQ_QUERY;
    make_id(r);
    snprintf(req->id, sizeof req->id, "%s", r->id);
    snprintf(req->q.id, sizeof req->q.id, "%s", r->id);
    if (!(r->ch = calloc((size_t)r->n, sizeof *r->ch))) BAD(500, "internal_error", "out of memory");
    for (int i = 0; i < r->n; i++) r->ch[i].index = i;
    *out = r;
    return 0;
fail:
    *err_body = oai_error_body(emsg, status >= 500 ? "server_error" : "invalid_request_error", ecode);
    srv_request_free(req);
    oai_free(r);
    return status;
}

void oai_free(oai_req *r) {
    if (!r) return;
    for (int i = 0; r->ch && i < r->n; i++) {
        oai_choice *c = &r->ch[i];
        eng_buf_free(&c->pend);
        eng_buf_free(&c->content);
        eng_buf_free(&c->reasoning);
        eng_buf_free(&c->args);
        tool_parser_destroy(c->tp);
        cJSON_Delete(c->calls);
        cJSON_Delete(c->lp);
    }
    free(r->ch);
    free(r->prefill);
    free(r->err_code);
    free(r->err_msg);
    cJSON_Delete(r->extra);
    free(r);
}

int oai_stream(const oai_req *r) { return r->stream; }
int oai_status(const oai_req *r) { return r->status; }

/* ------------------------------------------------------------ chunks */
static cJSON *chunk_head(oai_req *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", r->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model);
    return o;
}

static void send_event(oai_req *r, cJSON *o) {
    if (r->include_usage && !cJSON_GetObjectItemCaseSensitive(o, "usage")) cJSON_AddNullToObject(o, "usage");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return;
    eng_buf_printf(r->out, "data: %s\n\n", s);
    free(s);
    r->produced = 1;
    if (!r->status) r->status = 200;
}

/* One choice's chunk: the delta object (chat) or text (completions). */
static void send_delta(oai_req *r, oai_choice *c, cJSON *delta, const char *text, cJSON *logprobs,
                       const char *finish) {
    cJSON *o = chunk_head(r), *arr = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", c->index);
    if (r->kind == OAI_CHAT) {
        if (!c->started) {   /* the first chunk of a choice names the role, first */
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "role", "assistant");
            if (delta) {
                for (cJSON *x = delta->child, *next; x; x = next) {
                    next = x->next;
                    cJSON_AddItemToObject(d, x->string, cJSON_DetachItemViaPointer(delta, x));
                }
                cJSON_Delete(delta);
            }
            if (!d->child->next) cJSON_AddStringToObject(d, "content", "");
            delta = d;
            c->started = 1;
        }
        cJSON_AddItemToObject(ch, "delta", delta ? delta : cJSON_CreateObject());
    } else {
        cJSON_AddStringToObject(ch, "text", text ? text : "");
    }
    if (logprobs) cJSON_AddItemToObject(ch, "logprobs", logprobs);
    else cJSON_AddNullToObject(ch, "logprobs");
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(arr, ch);
    send_event(r, o);
}

/* Text of the reply for one field (content or reasoning_content). */
static void put_text(oai_req *r, oai_choice *c, const char *field, const char *s, size_t n) {
    if (!n) return;
    if (!r->stream) {
        eng_buf_add(!strcmp(field, "content") ? &c->content : &c->reasoning, s, n);
        return;
    }
    char *t = malloc(n + 1);
    if (!t) return;
    memcpy(t, s, n);
    t[n] = 0;
    if (r->kind == OAI_CHAT) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, field, t);
        send_delta(r, c, d, NULL, NULL, NULL);
    } else {
        send_delta(r, c, NULL, t, NULL, NULL);
    }
    free(t);
}

/* ------------------------------------------------------------ tool calls */
static void call_delta(oai_req *r, oai_choice *c, int k, const char *id, const char *name, const char *args) {
    if (!r->stream) return;
    cJSON *d = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(d, "tool_calls"), *tc = cJSON_CreateObject();
    cJSON_AddNumberToObject(tc, "index", k);
    if (id) {
        cJSON_AddStringToObject(tc, "id", id);
        cJSON_AddStringToObject(tc, "type", "function");
    }
    cJSON *fn = cJSON_AddObjectToObject(tc, "function");
    if (name) cJSON_AddStringToObject(fn, "name", name);
    cJSON_AddStringToObject(fn, "arguments", args);
    cJSON_AddItemToArray(arr, tc);
    send_delta(r, c, d, NULL, NULL, NULL);
}

static void add_args(oai_req *r, oai_choice *c, const char *piece) {
    int k = cJSON_GetArraySize(c->calls) - 1;
    eng_buf_adds(&c->args, piece);
    call_delta(r, c, k, NULL, NULL, piece);
}

/* The tool parser's events for the choice being filtered (r->cur). */
static void on_tool_event(void *ud, const tool_event *ev) {
    oai_req *r = ud;
    oai_choice *c = r->cur;
    if (ev->type == TOOL_EV_TEXT) {
        put_text(r, c, "content", ev->text, ev->len);
    } else if (ev->type == TOOL_EV_NAME) {
        if (!c->calls) c->calls = cJSON_CreateArray();
        int k = cJSON_GetArraySize(c->calls);
        char id[96];
        snprintf(id, sizeof id, "call_%s_%d_%d", r->id, c->index, k);
        cJSON *tc = cJSON_CreateObject();
        cJSON_AddStringToObject(tc, "id", id);
        cJSON_AddStringToObject(tc, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(tc, "function");
        cJSON_AddStringToObject(fn, "name", ev->name ? ev->name : "");
        cJSON_AddItemToArray(c->calls, tc);
        eng_buf_clear(&c->args);
        c->n_args = 0;
        call_delta(r, c, k, id, ev->name ? ev->name : "", "");
    } else if (ev->type == TOOL_EV_ARG_DONE && c->calls) {
        cJSON *key = cJSON_CreateString(ev->arg ? ev->arg : "");
        char *ks = cJSON_PrintUnformatted(key);
        cJSON_Delete(key);
        eng_buf piece = {0};
        eng_buf_printf(&piece, "%s%s: %.*s", c->n_args++ ? ", " : "{", ks ? ks : "\"\"", (int)ev->len, ev->text);
        free(ks);
        add_args(r, c, eng_buf_str(&piece));
        eng_buf_free(&piece);
    } else if (ev->type == TOOL_EV_CALL_END && c->calls) {
        if (c->n_args) {
            add_args(r, c, "}");
        } else {   /* nothing streamed (arguments given as a JSON string, or none) */
            char *all = ev->value ? cJSON_PrintUnformatted(ev->value) : NULL;
            add_args(r, c, all ? all : "{}");
            free(all);
        }
        cJSON *last = cJSON_GetArrayItem(c->calls, cJSON_GetArraySize(c->calls) - 1);
        cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(last, "function"), "arguments", eng_buf_str(&c->args));
        cJSON_AddTrueToObject(last, "complete");
    }
}

/* Content after the think filter: through the tool parser when tools are on. */
static void put_content(oai_req *r, oai_choice *c, const char *s, size_t n) {
    if (!r->tools) { put_text(r, c, "content", s, n); return; }
    if (!c->tp) {
        c->tp = tool_parser_create(NULL, on_tool_event, r);
        if (c->tp && r->prefill) tool_parser_feed(c->tp, r->prefill, strlen(r->prefill));
    }
    if (c->tp) tool_parser_feed(c->tp, s, n);
}

/* ------------------------------------------------------------ <think> */
static const char T_OPEN[] = "<think>", T_CLOSE[] = "</think>";

/* The longest tail of s that is a proper start of tag. */
static size_t partial_tag(const char *s, size_t n, const char *tag) {
    size_t L = strlen(tag);
    for (size_t k = L - 1 < n ? L - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, tag, k)) return k;
    return 0;
}

/* Splits a choice's text into reasoning (inside <think>...</think>) and
 * content; a <think> opens only before any other text.  final: no more
 * text comes, so nothing is held back. */
static void filter_text(oai_req *r, oai_choice *c, const char *s, size_t n, int final) {
    r->cur = c;
    eng_buf_add(&c->pend, s, n);
    for (;;) {
        const char *p = eng_buf_str(&c->pend);
        size_t len = c->pend.n, used = 0;
        if (!len) break;
        if (c->in_think) {
            const char *e = strstr(p, T_CLOSE);
            if (e) {
                put_text(r, c, "reasoning_content", p, (size_t)(e - p));
                used = (size_t)(e - p) + strlen(T_CLOSE);
                c->in_think = 0;
                c->after_think = 1;
            } else {
                size_t keep = final ? 0 : partial_tag(p, len, T_CLOSE);
                put_text(r, c, "reasoning_content", p, len - keep);
                used = len - keep;
            }
        } else if (!c->any_text) {
            size_t ws = 0;
            while (ws < len && (p[ws] == ' ' || p[ws] == '\n')) ws++;
            size_t rest = len - ws, L = strlen(T_OPEN);
            if (rest >= L && !memcmp(p + ws, T_OPEN, L)) {
                c->in_think = c->any_text = 1;
                used = ws + L;
            } else if (rest < L && !memcmp(p + ws, T_OPEN, rest) && !final) {
                break;   /* may still become <think> */
            } else {
                c->any_text = 1;
                continue;
            }
        } else if (c->after_think) {   /* the template's break after </think> */
            while (used < len && (p[used] == '\n' || p[used] == ' ')) used++;
            if (used < len || final) c->after_think = 0;
            if (used == 0) continue;
        } else {
            put_content(r, c, p, len);
            used = len;
        }
        memmove(c->pend.p, c->pend.p + used, len - used);
        c->pend.n = len - used;
        if (c->pend.p) c->pend.p[c->pend.n] = 0;
        if (!c->pend.n || used == 0) break;
    }
    if (final && c->tp) tool_parser_finish(c->tp);
}

/* ------------------------------------------------------------ messages */
static cJSON *bytes_of(const char *s) {
    cJSON *a = cJSON_CreateArray();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
    return a;
}

/* A token's logprobs entry in the chat form. */
static cJSON *lp_entry(const cJSON *tok) {
    const char *piece = str_field(tok, "piece");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(tok, "logprob"), *alts = cJSON_GetObjectItemCaseSensitive(tok, "top_logprobs"), *a;
    cJSON *e = cJSON_CreateObject(), *top = cJSON_CreateArray();
    cJSON_AddStringToObject(e, "token", piece ? piece : "");
    cJSON_AddNumberToObject(e, "logprob", cJSON_IsNumber(lp) ? lp->valuedouble : 0);
    cJSON_AddItemToObject(e, "bytes", bytes_of(piece ? piece : ""));
    cJSON_ArrayForEach(a, alts) {
        const char *ap = str_field(a, "piece");
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "token", ap ? ap : "");
        cJSON_AddNumberToObject(x, "logprob", cJSON_GetObjectItemCaseSensitive(a, "logprob")->valuedouble);
        cJSON_AddItemToObject(x, "bytes", bytes_of(ap ? ap : ""));
        cJSON_AddItemToArray(top, x);
    }
    cJSON_AddItemToObject(e, "top_logprobs", top);
    return e;
}

/* Completions' logprobs of a set of chat-form entries. */
static cJSON *legacy_lp(const cJSON *entries) {
    cJSON *o = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(o, "tokens"),
          *lps = cJSON_AddArrayToObject(o, "token_logprobs"), *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON_AddItemToObject(o, "text_offset", cJSON_CreateArray());
    const cJSON *e, *a;
    cJSON_ArrayForEach(e, entries) {
        cJSON_AddItemToArray(toks, cJSON_CreateString(str_field(e, "token")));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(cJSON_GetObjectItemCaseSensitive(e, "logprob")->valuedouble));
        cJSON *t = cJSON_CreateObject();
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(e, "top_logprobs"))
            cJSON_AddNumberToObject(t, str_field(a, "token"), cJSON_GetObjectItemCaseSensitive(a, "logprob")->valuedouble);
        cJSON_AddItemToArray(tops, t);
    }
    return o;
}

static void on_token(oai_req *r, const cJSON *m) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(m, "branch");
    int i = cJSON_IsNumber(b) ? b->valueint : 0;
    if (i < 0 || i >= r->n) return;
    oai_choice *c = &r->ch[i];
    const char *text = str_field(m, "text");
    if (r->logprobs) {
        cJSON *e = lp_entry(m);
        if (!r->stream) {
            if (!c->lp) c->lp = cJSON_CreateArray();
            cJSON_AddItemToArray(c->lp, e);
        } else {   /* the entry rides on a chunk of its own, with no text */
            cJSON *one = cJSON_CreateArray();
            cJSON_AddItemToArray(one, e);
            if (r->kind == OAI_CHAT) {
                cJSON *lp = cJSON_CreateObject();
                cJSON_AddItemToObject(lp, "content", one);
                send_delta(r, c, NULL, NULL, lp, NULL);
            } else {
                send_delta(r, c, NULL, "", legacy_lp(one), NULL);
                cJSON_Delete(one);
            }
        }
    }
    if (text && *text) filter_text(r, c, text, strlen(text), 0);
}

static const char *finish_of(const oai_choice *c, const char *brisk_finish) {
    int calls = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, c->calls) calls += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "complete"));
    if (calls) return "tool_calls";
    return brisk_finish && !strcmp(brisk_finish, "length") ? "length" : "stop";
}

/* A choice is over: what its filters hold goes out, then its last chunk. */
static void end_choice(oai_req *r, oai_choice *c, const char *brisk_finish) {
    if (c->finish) return;
    filter_text(r, c, "", 0, 1);
    c->finish = finish_of(c, brisk_finish);
    if (r->stream) send_delta(r, c, r->kind == OAI_CHAT ? cJSON_CreateObject() : NULL, "", NULL, c->finish);
}

static cJSON *usage(const oai_req *r) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", r->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", r->prompt_tokens + r->completion_tokens);
    return u;
}

/* The whole non-streamed response. */
static void whole_response(oai_req *r) {
    cJSON *o = cJSON_CreateObject(), *arr;
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", r->kind == OAI_CHAT ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model);
    arr = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < r->n; i++) {
        oai_choice *c = &r->ch[i];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        if (r->kind == OAI_CHAT) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            if (c->content.n || !c->calls) cJSON_AddStringToObject(msg, "content", eng_buf_str(&c->content));
            else cJSON_AddNullToObject(msg, "content");
            if (c->reasoning.n) cJSON_AddStringToObject(msg, "reasoning_content", eng_buf_str(&c->reasoning));
            cJSON *calls = cJSON_CreateArray(), *x;
            cJSON_ArrayForEach(x, c->calls) {
                if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "complete"))) continue;
                cJSON *d = cJSON_Duplicate(x, 1);
                cJSON_DeleteItemFromObjectCaseSensitive(d, "complete");
                cJSON_AddItemToArray(calls, d);
            }
            if (cJSON_GetArraySize(calls)) cJSON_AddItemToObject(msg, "tool_calls", calls);
            else cJSON_Delete(calls);
            if (c->lp) {
                cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
                cJSON_AddItemToObject(lp, "content", c->lp);
                c->lp = NULL;
            } else {
                cJSON_AddNullToObject(ch, "logprobs");
            }
        } else {
            cJSON_AddStringToObject(ch, "text", eng_buf_str(&c->content));
            if (c->lp) cJSON_AddItemToObject(ch, "logprobs", legacy_lp(c->lp));
            else cJSON_AddNullToObject(ch, "logprobs");
        }
        cJSON_AddStringToObject(ch, "finish_reason", c->finish ? c->finish : "stop");
        cJSON_AddItemToArray(arr, ch);
    }
    cJSON_AddItemToObject(o, "usage", usage(r));
    if (r->extra) { cJSON_AddItemToObject(o, "brisk", r->extra); r->extra = NULL; }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s) eng_buf_adds(r->out, s);
    free(s);
    r->produced = 1;
    if (!r->status) r->status = 200;
}

/* The query failed: an error response while nothing went out, else an
 * error event in the stream (then [DONE]). */
static void error_end(oai_req *r) {
    const char *type, *code;
    int st = oai_status_of(r->err_code, &type, &code);
    char *body = oai_error_body(r->err_msg ? r->err_msg : "the query failed", type, code);
    if (!r->produced) {
        r->status = st;
        if (body) eng_buf_adds(r->out, body);
    } else if (body) {
        eng_buf_printf(r->out, "data: %s\n\ndata: [DONE]\n\n", body);
    }
    free(body);
    r->produced = 1;
}

static void set_error(oai_req *r, const char *code, const char *msg) {
    if (r->err_code) return;   /* the first error says what happened */
    r->err_code = strdup(code ? code : "internal");
    r->err_msg = strdup(msg ? msg : "");
}

int oai_refuse(oai_req *r, const char *code, const char *message, eng_buf *out) {
    r->out = out;
    set_error(r, code, message);
    error_end(r);
    return 1;
}

int oai_feed(oai_req *r, const cJSON *m, eng_buf *out) {
    const char *type = str_field(m, "type");
    r->out = out;
    if (!type) return 0;
    if (!strcmp(type, "queued")) {   /* a comment line: clients skip it */
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(m, "position");
        if (r->stream) {
            eng_buf_printf(out, ": queued, position %d\n\n", cJSON_IsNumber(p) ? p->valueint : 0);
            r->produced = 1;
            if (!r->status) r->status = 200;
        }
    } else if (!strcmp(type, "token")) {
        if (!strcmp(r->mode, "chat")) on_token(r, m);
    } else if (!strcmp(type, "branch")) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(m, "branch");
        const char *section = str_field(m, "section"), *fin = str_field(m, "finish");
        if (!strcmp(r->mode, "parallel") && section) filter_text(r, &r->ch[0], section, strlen(section), 0);
        else if (!strcmp(r->mode, "chat") && cJSON_IsNumber(b) && b->valueint >= 0 && b->valueint < r->n && fin)
            end_choice(r, &r->ch[b->valueint], fin);
    } else if (!strcmp(type, "answer")) {
        const char *fin = str_field(m, "finish");
        if (fin && (!strcmp(fin, "shutdown") || !strcmp(fin, "cancelled") || !strcmp(fin, "disconnected"))) {
            set_error(r, "shutdown", "the server is shutting down; the query was stopped");
        } else if (!r->err_code) {
            if (!strcmp(r->mode, "reason")) {
                const char *text = str_field(m, "text");
                if (text) filter_text(r, &r->ch[0], text, strlen(text), 0);
                r->extra = cJSON_CreateObject();
                cJSON_AddStringToObject(r->extra, "mode", "reason");
                const char *keys[] = { "answer", "method", "early_stop", "branch", "vote" };
                for (int i = 0; i < 5; i++) {
                    const cJSON *x = cJSON_GetObjectItemCaseSensitive(m, keys[i]);
                    if (x) cJSON_AddItemToObject(r->extra, keys[i], cJSON_Duplicate(x, 1));
                }
            }
            for (int i = 0; i < r->n; i++) end_choice(r, &r->ch[i], fin);
        }
    } else if (!strcmp(type, "error")) {
        set_error(r, str_field(m, "code"), str_field(m, "message"));
    } else if (!strcmp(type, "stats")) {
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(m, "prompt_tokens"), *t = cJSON_GetObjectItemCaseSensitive(m, "tokens");
        r->prompt_tokens = cJSON_IsNumber(pt) ? pt->valueint : 0;
        r->completion_tokens = cJSON_IsNumber(t) ? t->valueint : 0;
        if (r->extra) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(m, "n");
            if (n) cJSON_AddNumberToObject(r->extra, "branches", n->valuedouble);
        }
        if (r->err_code) {
            error_end(r);
        } else if (!r->stream) {
            whole_response(r);
        } else {
            if (r->include_usage) {
                cJSON *o = chunk_head(r);
                cJSON_AddItemToObject(o, "choices", cJSON_CreateArray());
                cJSON_AddItemToObject(o, "usage", usage(r));
                send_event(r, o);
            }
            if (r->extra) {   /* brisk's fields of a reason answer, as an event of their own */
                cJSON *o = chunk_head(r);
                cJSON_AddItemToObject(o, "choices", cJSON_CreateArray());
                cJSON_AddItemToObject(o, "brisk", r->extra);
                r->extra = NULL;
                send_event(r, o);
            }
            eng_buf_adds(out, "data: [DONE]\n\n");
            r->produced = 1;
        }
        return 1;
    }
    return 0;
}

const char *oai_content_type(const oai_req *r) {
    return r->stream && r->status == 200 ? "text/event-stream" : "application/json";
}

/* ------------------------------------------------------------ models */
char *oai_models_body(const oai_model *m, const char *one) {
    if (one && strcmp(one, m->id)) return NULL;
    cJSON *o = cJSON_CreateObject(), *mo;
    if (one) {
        mo = o;
    } else {
        cJSON_AddStringToObject(o, "object", "list");
        cJSON *data = cJSON_AddArrayToObject(o, "data");
        mo = cJSON_CreateObject();
        cJSON_AddItemToArray(data, mo);
    }
    cJSON_AddStringToObject(mo, "id", m->id);
    cJSON_AddStringToObject(mo, "object", "model");
    cJSON_AddNumberToObject(mo, "created", (double)m->created);
    cJSON_AddStringToObject(mo, "owned_by", "brisk");
    cJSON_AddNumberToObject(mo, "max_model_len", m->context);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
