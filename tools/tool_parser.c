/* tool_parser.c — streaming recogniser of tool calls in model output.
 *
 * Bytes go through a small state machine one at a time, so the way the
 * output is split into chunks never changes what is recognised.  Outside a
 * call, bytes that could begin a call ("<tool_call>", or "{" / "```" at the
 * start of a line) are held back until they match or cannot match.  Inside
 * a call an incremental JSON scanner tracks strings, escapes, numbers and
 * nesting, and reports each key and each completed value; completed values
 * are then parsed with cJSON.  Rules are in tool.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tool_internal.h"

#define HOLD_MAX 96          /* longest prefix held while deciding */
#define DEPTH_HARD 256       /* upper bound for max_depth */

static const char TAG_OPEN[] = "<tool_call>", TAG_CLOSE[] = "</tool_call>";

enum { M_TEXT, M_PRE, M_JSON, M_AFTER_TAG, M_AFTER_FENCE, M_SKIP_TAGGED, M_SKIP_LINE };
enum { V_TAGGED, V_BARE, V_FENCED };
enum { NONE, PARTIAL, FULL };

/* JSON scanner states */
enum { J_VALUE, J_VALUE_OR_CLOSE, J_KEY_OR_CLOSE, J_KEY, J_COLON, J_COMMA_OR_CLOSE,
       J_STRING, J_NUMBER, J_LITERAL, J_DONE };
/* number states */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

typedef struct jscan {
    int st, depth;
    char stack[DEPTH_HARD];      /* 'o' or 'a' for each open container */
    int in_key, esc, uhex, num, lit_i;
    const char *lit;
    size_t pos;                  /* offset of the byte being scanned */
    size_t vstart[DEPTH_HARD + 1], kstart;
} jscan;

struct tool_parser {
    tool_parser_opts o;
    tool_event_fn fn;
    void *user;
    int mode, line_start, oom;
    char hold[HOLD_MAX];
    int n_hold;
    eng_buf text;               /* TEXT not yet handed out */
    int n_calls;
    /* the current call */
    int variant, failed, have_args;
    char errmsg[200];
    eng_buf raw;
    jscan js;
    char *name, *key1, *arg;
    cJSON *acc;                  /* arguments completed so far */
    cJSON *final;                /* the arguments object once complete */
};

static void process_byte(tool_parser *p, unsigned char c);

/* ----------------------------------------------------------------- events */
static void emit(tool_parser *p, tool_ev_type t, const char *text, size_t len,
                 const char *arg, const cJSON *value) {
    tool_event ev = {t, t == TOOL_EV_TEXT ? -1 : p->n_calls - 1, text, len,
                     p->name, arg, value};
    if (p->fn) p->fn(p->user, &ev);
}

/* Hands out pending text; unless all, keeps back a trailing incomplete
 * UTF-8 character for the next chunk. */
static void flush_text(tool_parser *p, int all) {
    size_t n = p->text.n;
    if (!all) {
        size_t i = n, back = 0;
        while (i > 0 && back < 4) {
            unsigned char b = (unsigned char)p->text.p[i - 1];
            i--, back++;
            if ((b & 0xC0) != 0x80) {   /* lead byte of the last character */
                size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
                if (back < need) n = i;
                break;
            }
        }
    }
    if (n == 0) return;
    emit(p, TOOL_EV_TEXT, p->text.p, n, NULL, NULL);
    memmove(p->text.p, p->text.p + n, p->text.n - n);
    p->text.n -= n;
    p->text.p[p->text.n] = 0;
}

static void add_text(tool_parser *p, const char *s, size_t n) {
    if (eng_buf_add(&p->text, s, n)) p->oom = 1;
}

/* ---------------------------------------------------------------- matching */
static int match_lit(const char *h, int n, const char *lit) {
    int L = (int)strlen(lit);
    if (n < L) return memcmp(h, lit, (size_t)n) == 0 ? PARTIAL : NONE;
    return memcmp(h, lit, (size_t)L) == 0 ? FULL : NONE;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* h[i..n) should be: JSON whitespace, then "name" (the object's first key) */
static int match_obj_head(const char *h, int n, int i) {
    while (i < n && is_ws(h[i])) i++;
    return match_lit(h + i, n - i, "\"name\"");
}

/* A plain call at a line start: [ \t]* ( "{" | "```" ["json"] [ \t]* "\n" ws* "{" )
 * followed by the "name" key.  *jo: offset of the "{". */
static int match_plain(const char *h, int n, int *variant, int *jo) {
    int i = 0;
    while (i < n && (h[i] == ' ' || h[i] == '\t')) i++;
    if (i == n) return PARTIAL;
    if (h[i] == '{') {
        *variant = V_BARE;
        *jo = i;
        return match_obj_head(h, n, i + 1);
    }
    int r = match_lit(h + i, n - i, "```");
    if (r != FULL) return r;
    i += 3;
    if (i < n && h[i] == 'j') {
        r = match_lit(h + i, n - i, "json");
        if (r != FULL) return r;
        i += 4;
    }
    while (i < n && (h[i] == ' ' || h[i] == '\t')) i++;
    if (i < n && h[i] == '\r') i++;
    if (i == n) return PARTIAL;
    if (h[i++] != '\n') return NONE;
    while (i < n && is_ws(h[i])) i++;
    if (i == n) return PARTIAL;
    if (h[i] != '{') return NONE;
    *variant = V_FENCED;
    *jo = i;
    return match_obj_head(h, n, i + 1);
}

static int match_open(const tool_parser *p, int *variant, int *jo) {
    int r = match_lit(p->hold, p->n_hold, TAG_OPEN);
    if (r != NONE) {
        *variant = V_TAGGED;
        *jo = p->n_hold;
        return r;
    }
    return p->line_start ? match_plain(p->hold, p->n_hold, variant, jo) : NONE;
}

/* Takes the held bytes from offset `from` and feeds them again in the
 * current mode. */
static void refeed_hold(tool_parser *p, int from) {
    char tmp[HOLD_MAX];
    int n = p->n_hold - from;
    memcpy(tmp, p->hold + from, (size_t)n);
    p->n_hold = 0;
    for (int i = 0; i < n; i++) process_byte(p, (unsigned char)tmp[i]);
}

/* -------------------------------------------------------------- call state */
static void call_clear(tool_parser *p) {
    free(p->name);
    free(p->key1);
    free(p->arg);
    cJSON_Delete(p->acc);
    cJSON_Delete(p->final);
    p->name = p->key1 = p->arg = NULL;
    p->acc = p->final = NULL;
    p->raw.n = 0;
    if (p->raw.p) p->raw.p[0] = 0;
    p->failed = p->have_args = 0;
    p->errmsg[0] = 0;
}

static void begin_call(tool_parser *p, int variant) {
    flush_text(p, 1);
    call_clear(p);
    p->n_calls++;
    p->variant = variant;
    p->acc = cJSON_CreateObject();
    if (!p->acc) p->oom = 1;
    memset(&p->js, 0, sizeof p->js);
    p->js.st = J_VALUE;
    p->mode = variant == V_TAGGED ? M_PRE : M_JSON;
    emit(p, TOOL_EV_CALL_BEGIN, NULL, 0, NULL, NULL);
}

static void fail(tool_parser *p, const char *fmt, const char *a) {
    if (p->failed) return;
    p->failed = 1;
    snprintf(p->errmsg, sizeof p->errmsg, fmt, a ? a : "");
}

/* Reports the failed call and moves to the recovery mode of its variant. */
static void report_error(tool_parser *p) {
    char msg[256];
    snprintf(msg, sizeof msg, "malformed tool call: %s", p->errmsg);
    emit(p, TOOL_EV_CALL_ERROR, msg, strlen(msg), NULL, NULL);
    p->mode = p->variant == V_TAGGED ? M_SKIP_TAGGED : M_SKIP_LINE;
    call_clear(p);
    p->n_hold = 0;
}

static void end_call(tool_parser *p) {
    emit(p, TOOL_EV_CALL_END, p->raw.p, p->raw.n, NULL, p->final);
    call_clear(p);
    p->line_start = 0;
}

static int is_args_key(const char *k) {
    return k && (strcmp(k, "arguments") == 0 || strcmp(k, "parameters") == 0);
}

static cJSON *parse_span(tool_parser *p, size_t s, size_t e) {
    return cJSON_ParseWithLength(p->raw.p + s, e - s);
}

static void emit_arg(tool_parser *p, const char *arg, const cJSON *v) {
    char *s = cJSON_PrintUnformatted(v);
    if (!s) {
        p->oom = 1;
        return;
    }
    emit(p, TOOL_EV_ARG_DONE, s, strlen(s), arg, v);
    cJSON_free(s);
}

/* One argument complete: remember it, tell the listener once the name is known. */
static void add_arg(tool_parser *p, const char *arg, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(p->acc, arg)) {
        cJSON_Delete(v);
        fail(p, "duplicate argument '%s'", arg);
        return;
    }
    cJSON_AddItemToObject(p->acc, arg, v);
    if (p->name) emit_arg(p, arg, v);
}

static void set_name(tool_parser *p, cJSON *v) {
    if (!cJSON_IsString(v) || !v->valuestring[0]) {
        fail(p, "\"name\" must be a non-empty string", NULL);
    } else if (p->name) {
        fail(p, "duplicate \"name\"", NULL);
    } else if (!(p->name = tool_strdup(v->valuestring))) {
        p->oom = 1;
    } else {
        emit(p, TOOL_EV_NAME, p->name, strlen(p->name), NULL, NULL);
        const cJSON *a;
        cJSON_ArrayForEach(a, p->acc) emit_arg(p, a->string, a);  /* args seen before the name */
    }
    cJSON_Delete(v);
}

/* "arguments" value complete: an object, or a string holding one. */
static void set_args(tool_parser *p, cJSON *v) {
    if (p->have_args) {
        fail(p, "duplicate \"arguments\"", NULL);
    } else if (cJSON_IsObject(v)) {
        p->final = v;
        v = NULL;
    } else if (cJSON_IsString(v)) {
        cJSON *o = cJSON_Parse(v->valuestring);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            fail(p, "\"arguments\" string does not hold a JSON object", NULL);
        } else {
            for (const cJSON *a = o->child; a && !p->failed; a = a->next)
                add_arg(p, a->string, cJSON_Duplicate(a, 1));
            p->final = o;
        }
    } else {
        fail(p, "\"arguments\" must be a JSON object", NULL);
    }
    p->have_args = 1;
    cJSON_Delete(v);
}

/* Scanner callbacks: a key string closed / a value completed at depth d. */
static void on_key(tool_parser *p, int d, size_t s, size_t e) {
    if (d != 1 && !(d == 2 && is_args_key(p->key1))) return;
    cJSON *k = parse_span(p, s, e);
    char *ks = cJSON_IsString(k) ? tool_strdup(k->valuestring) : NULL;
    cJSON_Delete(k);
    if (!ks) {
        fail(p, "bad key string", NULL);
        return;
    }
    char **slot = d == 1 ? &p->key1 : &p->arg;
    free(*slot);
    *slot = ks;
}

static void on_value(tool_parser *p, int d, size_t s, size_t e) {
    if (d == 0 || p->failed) return;
    int name = d == 1 && p->key1 && strcmp(p->key1, "name") == 0;
    int args = d == 1 && is_args_key(p->key1);
    int arg = d == 2 && is_args_key(p->key1) && p->js.stack[1] == 'o' && p->arg;
    if (!name && !args && !arg) return;
    cJSON *v = parse_span(p, s, e);
    if (!v) {
        fail(p, "bad JSON value for '%s'", arg ? p->arg : p->key1);
        return;
    }
    if (name) set_name(p, v);
    else if (args) set_args(p, v);
    else add_arg(p, p->arg, v);
}

/* ------------------------------------------------------------ JSON scanner */
static int num_step(jscan *j, unsigned char c) {  /* 1 took c, 0 ended before c, -1 bad */
    int dig = c >= '0' && c <= '9', e = c == 'e' || c == 'E';
    switch (j->num) {
    case N_MINUS: if (c == '0') j->num = N_ZERO; else if (dig) j->num = N_INT; else return -1; break;
    case N_ZERO:  if (c == '.') j->num = N_DOT; else if (e) j->num = N_E; else if (dig) return -1; else return 0; break;
    case N_INT:   if (c == '.') j->num = N_DOT; else if (e) j->num = N_E; else if (!dig) return 0; break;
    case N_DOT:   if (dig) j->num = N_FRAC; else return -1; break;
    case N_FRAC:  if (e) j->num = N_E; else if (!dig) return 0; break;
    case N_E:     if (c == '+' || c == '-') j->num = N_ESIGN; else if (dig) j->num = N_EXP; else return -1; break;
    case N_ESIGN: if (dig) j->num = N_EXP; else return -1; break;
    case N_EXP:   if (!dig) return 0; break;
    }
    return 1;
}

static void value_end(tool_parser *p, size_t end) {
    jscan *j = &p->js;
    on_value(p, j->depth, j->vstart[j->depth], end);
    j->st = j->depth == 0 ? J_DONE : J_COMMA_OR_CLOSE;
}

static const char *begin_value(tool_parser *p, unsigned char c) {
    jscan *j = &p->js;
    j->vstart[j->depth] = j->pos;
    if (c == '{' || c == '[') {
        if (j->depth >= p->o.max_depth) return "nested too deeply";
        j->stack[j->depth++] = (char)(c == '{' ? 'o' : 'a');
        j->st = c == '{' ? J_KEY_OR_CLOSE : J_VALUE_OR_CLOSE;
    } else if (c == '"') {
        j->st = J_STRING;
        j->in_key = j->esc = j->uhex = 0;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        j->st = J_NUMBER;
        j->num = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
    } else if (c == 't' || c == 'f' || c == 'n') {
        j->st = J_LITERAL;
        j->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
        j->lit_i = 1;
    } else {
        return "unexpected character where a value should be";
    }
    return NULL;
}

static const char *close_container(tool_parser *p, unsigned char c) {
    jscan *j = &p->js;
    if (j->depth == 0 || j->stack[j->depth - 1] != (c == '}' ? 'o' : 'a'))
        return "mismatched closing bracket";
    j->depth--;
    value_end(p, j->pos + 1);
    return NULL;
}

static const char *string_byte(tool_parser *p, unsigned char c) {
    jscan *j = &p->js;
    if (c < 0x20) return "control character inside a string";
    if (j->uhex) {
        int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex) return "bad \\u escape";
        j->uhex--;
    } else if (j->esc) {
        j->esc = 0;
        if (c == 'u') j->uhex = 4;
        else if (!strchr("\"\\/bfnrt", c)) return "bad escape in a string";
    } else if (c == '\\') {
        j->esc = 1;
    } else if (c == '"') {
        if (j->in_key) {
            on_key(p, j->depth, j->kstart, j->pos + 1);
            j->st = J_COLON;
        } else {
            value_end(p, j->pos + 1);
        }
    }
    return NULL;
}

/* Scans one byte; returns NULL or what is wrong. */
static const char *js_step(tool_parser *p, unsigned char c) {
    jscan *j = &p->js;
    int ws = is_ws((char)c);
    switch (j->st) {
    case J_STRING:
        return string_byte(p, c);
    case J_NUMBER: {
        int r = num_step(j, c);
        if (r < 0) return "bad number";
        if (r == 1) return NULL;
        value_end(p, j->pos);
        return j->st == J_DONE ? "text after the JSON object" : js_step(p, c);
    }
    case J_LITERAL:
        if (c != (unsigned char)j->lit[j->lit_i]) return "bad literal (true, false or null)";
        if (!j->lit[++j->lit_i]) value_end(p, j->pos + 1);
        return NULL;
    case J_VALUE:
        return ws ? NULL : begin_value(p, c);
    case J_VALUE_OR_CLOSE:
        return ws ? NULL : c == ']' ? close_container(p, c) : begin_value(p, c);
    case J_KEY_OR_CLOSE:
    case J_KEY:
        if (ws) return NULL;
        if (c == '}' && j->st == J_KEY_OR_CLOSE) return close_container(p, c);
        if (c != '"') return "expected a key string";
        j->st = J_STRING;
        j->in_key = 1;
        j->esc = j->uhex = 0;
        j->kstart = j->pos;
        return NULL;
    case J_COLON:
        if (ws) return NULL;
        if (c != ':') return "expected ':' after a key";
        j->st = J_VALUE;
        return NULL;
    case J_COMMA_OR_CLOSE:
        if (ws) return NULL;
        if (c == ',') {
            j->st = j->stack[j->depth - 1] == 'o' ? J_KEY : J_VALUE;
            return NULL;
        }
        if (c == '}' || c == ']') return close_container(p, c);
        return "expected ',' or a closing bracket";
    }
    return "text after the JSON object";
}

/* ------------------------------------------------------------------- modes */
static int raw_ends_with(const tool_parser *p, const char *lit) {
    size_t L = strlen(lit);
    return p->raw.n >= L && memcmp(p->raw.p + p->raw.n - L, lit, L) == 0;
}

/* The top-level object closed: check it and finish according to variant. */
static void object_done(tool_parser *p) {
    if (!p->name) fail(p, "no \"name\" in the tool call", NULL);
    if (!p->failed && !p->final && !(p->final = cJSON_CreateObject())) p->oom = 1;
    if (p->failed) {
        p->mode = p->variant == V_TAGGED ? M_SKIP_TAGGED : M_SKIP_LINE;
        report_error(p);
        return;
    }
    if (p->variant == V_TAGGED) {
        p->mode = M_AFTER_TAG;
        p->n_hold = 0;
        return;
    }
    end_call(p);
    p->mode = p->variant == V_FENCED ? M_AFTER_FENCE : M_TEXT;
    p->n_hold = 0;
}

static void json_byte(tool_parser *p, unsigned char c) {
    if (p->raw.n >= p->o.max_call_bytes) {
        char lim[32];
        snprintf(lim, sizeof lim, "%zu", p->o.max_call_bytes);
        fail(p, "longer than %s bytes", lim);
        report_error(p);
        process_byte(p, c);
        return;
    }
    if (eng_buf_addc(&p->raw, (char)c)) {
        p->oom = 1;
        return;
    }
    p->js.pos = p->raw.n - 1;
    const char *bad = js_step(p, c);
    if (bad && !p->failed) {
        char where[200];
        snprintf(where, sizeof where, "bad JSON (%s at byte %zu)", bad, p->js.pos);
        fail(p, "%s", where);
    }
    if (p->failed) {
        report_error(p);
        process_byte(p, c);   /* the byte may start the text that follows */
        return;
    }
    if (p->js.st == J_DONE) {
        object_done(p);
        return;
    }
    if (p->variant == V_TAGGED && raw_ends_with(p, TAG_CLOSE)) {
        fail(p, "the JSON object is incomplete at </tool_call>", NULL);
        report_error(p);
        p->mode = M_TEXT;
    } else if (p->variant == V_TAGGED && raw_ends_with(p, TAG_OPEN)) {
        fail(p, "the JSON object is incomplete at the next <tool_call>", NULL);
        report_error(p);
        begin_call(p, V_TAGGED);
    }
}

static void text_byte(tool_parser *p, unsigned char c) {
    p->hold[p->n_hold++] = (char)c;
    while (p->n_hold > 0) {
        int variant = 0, jo = 0;
        int r = match_open(p, &variant, &jo);
        if (r == PARTIAL && p->n_hold < HOLD_MAX) return;
        if (r == FULL) {
            begin_call(p, variant);
            refeed_hold(p, jo);
            return;
        }
        add_text(p, p->hold, 1);
        p->line_start = p->hold[0] == '\n';
        memmove(p->hold, p->hold + 1, (size_t)--p->n_hold);
    }
}

static void pre_byte(tool_parser *p, unsigned char c) {
    if (is_ws((char)c)) return;
    if (c == '{') {
        p->mode = M_JSON;
        json_byte(p, c);
        return;
    }
    fail(p, "expected '{' after <tool_call>", NULL);
    report_error(p);
    process_byte(p, c);
}

/* After a tagged call's object: whitespace, then "</tool_call>" (or the next
 * "<tool_call>", taken as closing this one). */
static void after_tag_byte(tool_parser *p, unsigned char c) {
    if (p->n_hold == 0 && is_ws((char)c)) return;
    p->hold[p->n_hold++] = (char)c;
    int rc = match_lit(p->hold, p->n_hold, TAG_CLOSE);
    int ro = match_lit(p->hold, p->n_hold, TAG_OPEN);
    if (rc == FULL || ro == FULL) {
        p->n_hold = 0;
        end_call(p);
        if (ro == FULL) begin_call(p, V_TAGGED);
        else p->mode = M_TEXT;
    } else if (rc == NONE && ro == NONE) {
        fail(p, "expected </tool_call> after the JSON object", NULL);
        char tmp[HOLD_MAX];
        int n = p->n_hold;
        memcpy(tmp, p->hold, (size_t)n);
        report_error(p);          /* clears the hold, mode M_SKIP_TAGGED */
        for (int i = 0; i < n; i++) process_byte(p, (unsigned char)tmp[i]);
    }
}

/* After a fenced call's object: optional whitespace and the closing fence. */
static void after_fence_byte(tool_parser *p, unsigned char c) {
    p->hold[p->n_hold++] = (char)c;
    int i = 0;
    while (i < p->n_hold && is_ws(p->hold[i])) i++;
    int r = i == p->n_hold && p->n_hold < HOLD_MAX ? PARTIAL
          : match_lit(p->hold + i, p->n_hold - i, "```");
    if (r == PARTIAL && p->n_hold < HOLD_MAX) return;
    p->mode = M_TEXT;
    p->line_start = 0;
    if (r == FULL) p->n_hold = 0;
    else refeed_hold(p, 0);
}

/* Recovery after a bad tagged call: skip to "</tool_call>" or "<tool_call>". */
static void skip_tagged_byte(tool_parser *p, unsigned char c) {
    p->hold[p->n_hold++] = (char)c;
    while (p->n_hold > 0) {
        int rc = match_lit(p->hold, p->n_hold, TAG_CLOSE);
        int ro = match_lit(p->hold, p->n_hold, TAG_OPEN);
        if (rc == FULL) {
            p->n_hold = 0;
            p->mode = M_TEXT;
            p->line_start = 0;
            return;
        }
        if (ro == FULL) {
            p->n_hold = 0;
            begin_call(p, V_TAGGED);
            return;
        }
        if (rc == PARTIAL || ro == PARTIAL) return;
        memmove(p->hold, p->hold + 1, (size_t)--p->n_hold);
    }
}

static void process_byte(tool_parser *p, unsigned char c) {
    switch (p->mode) {
    case M_TEXT: text_byte(p, c); break;
    case M_PRE: pre_byte(p, c); break;
    case M_JSON: json_byte(p, c); break;
    case M_AFTER_TAG: after_tag_byte(p, c); break;
    case M_AFTER_FENCE: after_fence_byte(p, c); break;
    case M_SKIP_TAGGED: skip_tagged_byte(p, c); break;
    case M_SKIP_LINE:
        if (c == '\n') {
            p->mode = M_TEXT;
            p->line_start = 1;
        }
        break;
    }
}

/* -------------------------------------------------------------------- API */
tool_parser *tool_parser_create(const tool_parser_opts *o, tool_event_fn fn, void *user) {
    tool_parser *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (o) p->o = *o;
    if (p->o.max_call_bytes == 0) p->o.max_call_bytes = 64 * 1024;
    if (p->o.max_depth <= 0) p->o.max_depth = 32;
    if (p->o.max_depth > DEPTH_HARD) p->o.max_depth = DEPTH_HARD;
    p->fn = fn;
    p->user = user;
    tool_parser_reset(p);
    return p;
}

void tool_parser_reset(tool_parser *p) {
    call_clear(p);
    p->mode = M_TEXT;
    p->line_start = 1;
    p->n_hold = 0;
    p->n_calls = 0;
    p->oom = 0;
    p->text.n = 0;
    if (p->text.p) p->text.p[0] = 0;
}

void tool_parser_destroy(tool_parser *p) {
    if (!p) return;
    call_clear(p);
    eng_buf_free(&p->raw);
    eng_buf_free(&p->text);
    free(p);
}

int tool_parser_feed(tool_parser *p, const char *buf, size_t len) {
    for (size_t i = 0; i < len && !p->oom; i++) process_byte(p, (unsigned char)buf[i]);
    flush_text(p, 0);
    return p->oom ? ENG_ENOMEM : ENG_OK;
}

int tool_parser_finish(tool_parser *p) {
    switch (p->mode) {
    case M_TEXT:
    case M_AFTER_FENCE:
        add_text(p, p->hold, (size_t)p->n_hold);
        break;
    case M_PRE:
    case M_JSON:
        fail(p, "unterminated at end of output", NULL);
        report_error(p);
        break;
    case M_AFTER_TAG:
        end_call(p);   /* complete object, closing tag missing: accepted */
        break;
    default:
        break;
    }
    p->n_hold = 0;
    p->mode = M_TEXT;
    p->line_start = 1;
    flush_text(p, 1);
    return p->oom ? ENG_ENOMEM : ENG_OK;
}

int tool_parser_n_calls(const tool_parser *p) { return p->n_calls; }
