/* chat.c — the chat renderer: a conversation (messages, tool definitions,
 * tool calls and results) to the token ids and text a model's chat template
 * gives, for the three template families brisk knows.  The family and its
 * variant are read off the template text by markers, and each family's rules
 * are written out here in C (no Jinja interpreter):
 *
 *   ChatML   "<|im_start|>" in the template (Qwen2.5, Qwen3, SmolLM2):
 *            <|im_start|>ROLE\nCONTENT<|im_end|>\n per message.  The default
 *            system message is the one the template writes as a literal
 *            ("<|im_start|>system\n...<|im_end|>", e.g. Qwen2.5's and
 *            SmolLM2's) when the first message is not a system message.
 *            Tools, tool calls and results take Qwen's form (<tools> in the
 *            system turn, <tool_call> blocks, <tool_response> blocks in a user
 *            turn; Qwen2.5's instruction line keeps its doubled braces).  A
 *            template with "</think>" (Qwen3) strips the <think> block of
 *            assistant turns before the last user query, and one with
 *            "enable_thinking" writes the empty think block when thinking is
 *            off.  A ChatML template without a tool section (SmolLM2) gets
 *            tools in Qwen's form too: transformers would drop them.
 *   Llama 3  "<|start_header_id|>" and "<|eot_id|>": <|begin_of_text|>, then
 *            <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>,
 *            content trimmed.  Templates with "Cutting Knowledge Date" (3.1
 *            and later) always write a system turn with the dates; tools go
 *            into the first user turn as JSON (indent 4), a tool call is one
 *            {"name": ..., "parameters": ...} JSON per assistant turn, results
 *            are "ipython" turns holding the result as a JSON string.  Today's
 *            date where the template calls strftime_now (3.2), else its
 *            date_string literal.  Llama 3.0 has no tool format.
 *   Gemma    "<start_of_turn>" and "<end_of_turn>": <bos>, then
 *            <start_of_turn>user|model\nCONTENT<end_of_turn>\n, content
 *            trimmed, roles alternating from user.  A system message goes in
 *            front of the first user turn (Gemma 3), or is refused where the
 *            template refuses it (Gemma 2).  Gemma's template has no tool
 *            format: tools, tool calls and tool results are refused.
 *
 * A model without a template renders ChatML (no default system message) when
 * its vocabulary has <|im_start|> and <|im_end|>; without them it is an
 * error.  Any other template is refused with the markers expected.
 *
 * Ids: the text between two control tokens is encoded without special tokens
 * (eng_tok_encode, allow_special = 0), so a user who types "<|im_end|>" gets
 * text; only the markers this file writes become control tokens, by id.
 * Encoding each such stretch whole is what a tokenizer does with the whole
 * rendered text, so the ids are those of transformers' apply_chat_template
 * whenever no message holds a control token literally. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include "eng.h"

enum { FAM_CHATML, FAM_LLAMA3, FAM_GEMMA };

/* The control tokens the families write (looked up by text at create). */
enum { M_IM_START, M_IM_END,                               /* ChatML */
       M_BEGIN, M_HEADER_START, M_HEADER_END, M_EOT,       /* Llama 3 */
       M_BOS, M_TURN_START, M_TURN_END,                    /* Gemma */
       M_COUNT };
static const char *const MARK[M_COUNT] = {
    "<|im_start|>", "<|im_end|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<bos>", "<start_of_turn>", "<end_of_turn>",
};

struct eng_chat {
    int family;
    const eng_tok *tok;
    int id[M_COUNT];         /* ids of the family's markers (-1 for other families') */
    const char *name;        /* "chatml", "llama3", "gemma" */
    /* ChatML */
    char *default_system;    /* NULL: none */
    int doubled_braces;      /* Qwen2.5's instruction line: {{"name": ...}} */
    int think;               /* Qwen3: <think> blocks of earlier turns stripped */
    int thinking_switch;     /* Qwen3: enable_thinking */
    /* Llama 3 */
    int llama31;             /* 3.1 and later: dated system turn, tools */
    int date_today;          /* 3.2: strftime_now */
    char date[32];           /* the template's date_string */
    /* Gemma */
    int gemma_no_system;     /* Gemma 2: a system message is refused */
};

/* ================================================================ JSON */
/* Python's json.dumps (ensure_ascii=False), which transformers' tojson
 * filter is: ", " and ": " between items, or with an indent one item per
 * line and "," at line ends.  It works on JSON text already checked by
 * cJSON, so number literals keep their kind (1 stays 1, 1.0 stays 1.0). */

static void py_string_cp(eng_buf *b, unsigned cp) {
    switch (cp) {
    case '"': eng_buf_adds(b, "\\\""); return;
    case '\\': eng_buf_adds(b, "\\\\"); return;
    case '\n': eng_buf_adds(b, "\\n"); return;
    case '\r': eng_buf_adds(b, "\\r"); return;
    case '\t': eng_buf_adds(b, "\\t"); return;
    case '\b': eng_buf_adds(b, "\\b"); return;
    case '\f': eng_buf_adds(b, "\\f"); return;
    }
    if (cp < 0x20 || (cp >= 0xD800 && cp < 0xE000)) {   /* lone surrogates stay escaped */
        eng_buf_printf(b, "\\u%04x", cp);
        return;
    }
    char u[4];
    int n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | (cp >> 6 & 63));
        u[2] = (char)(0x80 | (cp & 63)); n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | (cp >> 12 & 63));
        u[2] = (char)(0x80 | (cp >> 6 & 63)); u[3] = (char)(0x80 | (cp & 63)); n = 4;
    }
    eng_buf_add(b, u, (size_t)n);
}

/* A text (UTF-8 bytes, copied as they are but for the escapes) as a JSON string. */
static void py_string_text(eng_buf *b, const char *s) {
    eng_buf_addc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80) py_string_cp(b, *p);
        else eng_buf_addc(b, (char)*p);
    }
    eng_buf_addc(b, '"');
}

static unsigned hex4(const char *p) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 32) - 'a' + 10);
    }
    return v;
}

/* A JSON string literal at p (after checking), re-escaped; returns its end. */
static const char *dump_string(eng_buf *b, const char *p) {
    eng_buf_addc(b, '"');
    for (p++; *p != '"'; p++) {
        if ((unsigned char)*p >= 0x80) { eng_buf_addc(b, *p); continue; }
        if (*p != '\\') { py_string_cp(b, (unsigned char)*p); continue; }
        p++;
        unsigned cp;
        switch (*p) {
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'u':
            cp = hex4(p + 1);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u') {
                unsigned lo = hex4(p + 3);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            break;
        default: cp = (unsigned char)*p;   /* \" \\ \/ */
        }
        py_string_cp(b, cp);
    }
    eng_buf_addc(b, '"');
    return p + 1;
}

/* Python's repr of a float: the shortest digits that read back the same,
 * fixed notation for exponents -4..15 (with ".0" when whole), else d.ddde+XX. */
static void py_float(eng_buf *b, double v) {
    if (isinf(v)) { eng_buf_adds(b, v < 0 ? "-Infinity" : "Infinity"); return; }
    if (isnan(v)) { eng_buf_adds(b, "NaN"); return; }
    char e[40], dig[24];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    const char *p = e;
    if (*p == '-') { eng_buf_addc(b, '-'); p++; }
    int nd = 0;
    for (; *p && *p != 'e'; p++) if (*p != '.') dig[nd++] = *p;
    int x = atoi(p + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = 0;
    if (x >= -4 && x < 16) {
        if (x < 0) {
            eng_buf_adds(b, "0.");
            for (int i = 0; i < -x - 1; i++) eng_buf_addc(b, '0');
            eng_buf_add(b, dig, (size_t)nd);
        } else {
            for (int i = 0; i <= x; i++) eng_buf_addc(b, i < nd ? dig[i] : '0');
            eng_buf_addc(b, '.');
            if (nd > x + 1) eng_buf_add(b, dig + x + 1, (size_t)(nd - x - 1));
            else eng_buf_addc(b, '0');
        }
    } else {
        eng_buf_addc(b, dig[0]);
        if (nd > 1) { eng_buf_addc(b, '.'); eng_buf_add(b, dig + 1, (size_t)(nd - 1)); }
        eng_buf_printf(b, "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
    }
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static void newline_indent(eng_buf *b, int indent, int depth) {
    eng_buf_addc(b, '\n');
    for (int i = 0; i < indent * depth; i++) eng_buf_addc(b, ' ');
}

/* The JSON value at p (text cJSON accepted) as Python writes it; indent 0
 * writes it on one line.  Returns the end of the value. */
static const char *dump_value(eng_buf *b, const char *p, int indent, int depth) {
    p = skip_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int obj = *p == '{';
        p = skip_ws(p + 1);
        eng_buf_addc(b, obj ? '{' : '[');
        if (*p == close) { eng_buf_addc(b, close); return p + 1; }
        for (;;) {
            if (indent) newline_indent(b, indent, depth + 1);
            if (obj) {
                p = dump_string(b, skip_ws(p));
                p = skip_ws(p) + 1;   /* ':' */
                eng_buf_adds(b, ": ");
            }
            p = skip_ws(dump_value(b, p, indent, depth + 1));
            if (*p != ',') break;
            p++;
            eng_buf_adds(b, indent ? "," : ", ");
        }
        if (indent) newline_indent(b, indent, depth);
        eng_buf_addc(b, close);
        return p + 1;
    }
    if (*p == '"') return dump_string(b, p);
    const char *s = p;
    int is_float = 0;
    while (*p && strchr("+-0123456789.eE", *p)) { is_float |= *p == '.' || *p == 'e' || *p == 'E'; p++; }
    if (p == s) {   /* true, false, null */
        while (*p >= 'a' && *p <= 'z') p++;
        eng_buf_add(b, s, (size_t)(p - s));
    } else if (is_float) {
        py_float(b, strtod(s, NULL));
    } else {
        if (*s == '-' && p - s == 2 && s[1] == '0') s++;   /* Python reads -0 as 0 */
        eng_buf_add(b, s, (size_t)(p - s));
    }
    return p;
}

/* ============================================================== strings */
/* Python's str.strip(): Unicode whitespace at both ends. */
static int space_at(const unsigned char *p, const unsigned char *end, int *len) {
    unsigned c = p[0];
    *len = 1;
    if ((c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20)) return 1;
    if (c < 0x80) return 0;
    unsigned cp;
    if ((c & 0xE0) == 0xC0 && end - p >= 2) { cp = (c & 31) << 6 | (p[1] & 63); *len = 2; }
    else if ((c & 0xF0) == 0xE0 && end - p >= 3) { cp = (c & 15) << 12 | (p[1] & 63) << 6 | (p[2] & 63); *len = 3; }
    else return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Start of the UTF-8 character that ends just before p. */
static const unsigned char *char_before(const unsigned char *s, const unsigned char *p) {
    do p--; while (p > s && (*p & 0xC0) == 0x80);
    return p;
}

static void trim(const char *s, size_t n, const char **out, size_t *out_n) {
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    int l;
    while (p < e && space_at(p, e, &l)) p += l;
    while (e > p) {
        const unsigned char *q = char_before(p, e);
        if (!space_at(q, e, &l) || q + l != e) break;
        e = q;
    }
    *out = (const char *)p;
    *out_n = (size_t)(e - p);
}

/* Python's strip('\n') family on a (pointer, length) piece. */
static void strip_nl(const char **s, size_t *n, int left, int right) {
    while (left && *n && **s == '\n') { (*s)++; (*n)--; }
    while (right && *n && (*s)[*n - 1] == '\n') (*n)--;
}

/* Last occurrence of needle in s[0, n), or NULL. */
static const char *find_last(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = n >= k ? n - k + 1 : 0; i-- > 0;)
        if (!memcmp(s + i, needle, k)) return s + i;
    return NULL;
}

/* ============================================================= writer */
typedef struct wr {
    const eng_chat *c;
    eng_buf text;      /* everything rendered */
    eng_buf span;      /* text since the last control token */
    int *ids, n, cap;
    int want_ids;
    int rc;
    eng_err *err;
} wr;

static int w_fail(wr *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int w_fail(wr *w, int code, const char *fmt, ...) {
    if (!w->rc) {
        char msg[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        w->rc = eng_seterr(w->err, code, "chat template (%s): %s", w->c->name, msg);
    }
    return w->rc;
}

static void w_text(wr *w, const char *s, size_t n) {
    eng_buf_add(&w->text, s, n);
    eng_buf_add(&w->span, s, n);
}
static void w_str(wr *w, const char *s) { if (s) w_text(w, s, strlen(s)); }

static int w_push(wr *w, const int *ids, int n) {
    if (w->n + n > w->cap) {
        int cap = (w->n + n) * 2 + 64;
        int *p = realloc(w->ids, (size_t)cap * sizeof *p);
        if (!p) return w_fail(w, ENG_ENOMEM, "out of memory");
        w->ids = p;
        w->cap = cap;
    }
    memcpy(w->ids + w->n, ids, (size_t)n * sizeof *ids);
    w->n += n;
    return ENG_OK;
}

/* Encodes the text since the last control token: plain text, no specials. */
static void w_flush(wr *w) {
    if (!w->span.n || w->rc || !w->want_ids || w->span.oom) { eng_buf_clear(&w->span); return; }
    int *p = NULL, k = 0;
    int rc = eng_tok_encode(w->c->tok, w->span.p, w->span.n, 0, &p, &k, w->err);
    if (rc) w->rc = rc;
    else w_push(w, p, k);
    free(p);
    eng_buf_clear(&w->span);
}

static void w_mark(wr *w, int m) {
    w_flush(w);
    eng_buf_adds(&w->text, MARK[m]);
    if (w->want_ids && !w->rc) w_push(w, &w->c->id[m], 1);
}

/* tools_json: a JSON list; *count its length, -1 when absent. */
static int check_tools(wr *w, const char *tools_json, int *count) {
    *count = -1;
    if (!tools_json) return ENG_OK;
    cJSON *t = cJSON_Parse(tools_json);
    if (!cJSON_IsArray(t)) {
        cJSON_Delete(t);
        return w_fail(w, ENG_EINVAL, "the tool definitions are not a JSON list");
    }
    *count = cJSON_GetArraySize(t);
    cJSON_Delete(t);
    return ENG_OK;
}

/* Writes each element of the JSON list as Python does, between before/after. */
static void w_tools(wr *w, const char *tools_json, const char *before, const char *after, int indent) {
    const char *p = skip_ws(skip_ws(tools_json) + 1);
    eng_buf one = {0};
    while (*p && *p != ']') {
        eng_buf_clear(&one);
        p = skip_ws(dump_value(&one, p, indent, 0));
        w_str(w, before);
        w_text(w, one.p ? one.p : "", one.n);
        w_str(w, after);
        if (*p == ',') p = skip_ws(p + 1);
    }
    if (one.oom) w_fail(w, ENG_ENOMEM, "out of memory");
    eng_buf_free(&one);
}

/* A tool call's arguments (a JSON object) as Python's json.dumps writes them. */
static void w_arguments(wr *w, const eng_chat_call *call, int msg) {
    const char *a = call->arguments && *call->arguments ? call->arguments : "{}";
    cJSON *j = cJSON_Parse(a);
    int ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok) { w_fail(w, ENG_EINVAL, "message %d: tool call '%s': arguments are not a JSON object",
                      msg, call->name ? call->name : ""); return; }
    eng_buf one = {0};
    dump_value(&one, a, 0, 0);
    if (one.oom) w_fail(w, ENG_ENOMEM, "out of memory");
    else w_text(w, one.p, one.n);
    eng_buf_free(&one);
}

static const char *content_of(const eng_chat_msg *m) { return m->content ? m->content : ""; }
static int is_role(const eng_chat_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }

static void w_trimmed(wr *w, const char *s) {
    const char *t;
    size_t n;
    trim(s, strlen(s), &t, &n);
    w_text(w, t, n);
}

/* ============================================================== ChatML */
static void chatml_turn(wr *w, const char *role, const char *content) {
    w_mark(w, M_IM_START);
    w_str(w, role);
    w_str(w, "\n");
    w_str(w, content);
    w_mark(w, M_IM_END);
    w_str(w, "\n");
}

/* Qwen3: the index of the last user message that is a real query (not a
 * turn of tool responses); n - 1 when there is none. */
static int last_query(const eng_chat_msg *m, int n) {
    for (int i = n - 1; i >= 0; i--) {
        if (!is_role(&m[i], "user")) continue;
        const char *c = content_of(&m[i]);
        size_t k = strlen(c);
        if (!(k >= 15 && !strncmp(c, "<tool_response>", 15) && k >= 16 &&
              !strcmp(c + k - 16, "</tool_response>")))
            return i;
    }
    return n - 1;
}

/* An assistant turn: Qwen3's reasoning handling, then the tool calls. */
static void chatml_assistant(wr *w, const eng_chat_msg *m, int i, int last, int after_query) {
    const eng_chat *c = w->c;
    const char *content = content_of(m), *reason = "";
    size_t cn = strlen(content), rn = 0;
    if (c->think) {
        if (m->reasoning) {
            reason = m->reasoning;
            rn = strlen(reason);
        } else {
            const char *end = strstr(content, "</think>");
            if (end) {
                /* reasoning: before the first </think>, after the last <think> there;
                 * content: after the last </think>, leading newlines dropped */
                const char *open = find_last(content, (size_t)(end - content), "<think>");
                reason = open ? open + 7 : content;
                rn = (size_t)(end - reason);
                strip_nl(&reason, &rn, 1, 1);
                content = find_last(content, cn, "</think>") + 8;
                cn = strlen(content);
                strip_nl(&content, &cn, 1, 0);
            }
        }
    }
    w_mark(w, M_IM_START);
    w_str(w, "assistant\n");
    const char *out = content;
    size_t on = cn;
    if (c->think && after_query && (last || rn > 0)) {
        strip_nl(&reason, &rn, 1, 1);
        w_str(w, "<think>\n");
        w_text(w, reason, rn);
        w_str(w, "\n</think>\n\n");
        strip_nl(&out, &on, 1, 0);
    }
    w_text(w, out, on);
    for (int k = 0; k < m->n_tool_calls; k++) {
        const eng_chat_call *call = &m->tool_calls[k];
        if (!call->name || !*call->name) { w_fail(w, ENG_EINVAL, "message %d: a tool call has no name", i); return; }
        if (k || cn) w_str(w, "\n");
        w_str(w, "<tool_call>\n{\"name\": \"");
        w_str(w, call->name);
        w_str(w, "\", \"arguments\": ");
        w_arguments(w, call, i);
        w_str(w, "}\n</tool_call>");
    }
    w_mark(w, M_IM_END);
    w_str(w, "\n");
}

static void chatml_tools_system(wr *w, const char *system, const char *tools_json) {
    static const char intro[] =
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    static const char outro[] =
        "\n</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n";
    w_mark(w, M_IM_START);
    w_str(w, "system\n");
    if (system) {
        w_str(w, system);
        w_str(w, "\n\n");
    }
    w_str(w, intro);
    w_tools(w, tools_json, "\n", NULL, 0);
    w_str(w, outro);
    w_str(w, w->c->doubled_braces ? "{{\"name\": <function-name>, \"arguments\": <args-json-object>}}"
                                  : "{\"name\": <function-name>, \"arguments\": <args-json-object>}");
    w_str(w, "\n</tool_call>");
    w_mark(w, M_IM_END);
    w_str(w, "\n");
}

static void render_chatml(wr *w, const eng_chat_msg *m, int n, const eng_chat_opts *o,
                          int n_tools) {
    const eng_chat *c = w->c;
    int start = 0;
    if (o->continuation) {
        w_str(w, "\n");   /* what follows <|im_end|> in the template */
    } else {
        int first_sys = n > 0 && is_role(&m[0], "system");
        const char *sys = first_sys ? content_of(&m[0]) : c->default_system;
        if (n_tools > 0) chatml_tools_system(w, sys, o->tools_json);
        else if (sys) chatml_turn(w, "system", sys);
        start = first_sys;
    }
    int lq = c->think ? last_query(m, n) : -1;
    for (int i = start; i < n && !w->rc; i++) {
        const eng_chat_msg *x = &m[i];
        if (is_role(x, "assistant")) {
            chatml_assistant(w, x, i, i == n - 1, i > lq);
        } else if (is_role(x, "tool")) {
            int prev_tool = i > 0 && is_role(&m[i - 1], "tool");
            if (!prev_tool) {
                w_mark(w, M_IM_START);
                w_str(w, "user");
            }
            w_str(w, "\n<tool_response>\n");
            w_str(w, content_of(x));
            w_str(w, "\n</tool_response>");
            if (i == n - 1 || !is_role(&m[i + 1], "tool")) {
                w_mark(w, M_IM_END);
                w_str(w, "\n");
            }
        } else {
            chatml_turn(w, x->role, content_of(x));
        }
    }
    if (o->add_generation_prompt) {
        w_mark(w, M_IM_START);
        w_str(w, "assistant\n");
        if (c->thinking_switch && o->no_thinking) w_str(w, "<think>\n\n</think>\n\n");
    }
}

/* ============================================================= Llama 3 */
static void llama_header(wr *w, const char *role) {
    w_mark(w, M_HEADER_START);
    w_str(w, role);
    w_mark(w, M_HEADER_END);
    w_str(w, "\n\n");
}

static void render_llama3(wr *w, const eng_chat_msg *m, int n, const eng_chat_opts *o,
                          int n_tools) {
    const eng_chat *c = w->c;
    int start = 0, tools = n_tools >= 0;   /* Llama writes even an empty list */
    if (!c->llama31 && tools)
        w_fail(w, ENG_EUNSUPPORTED, "Llama 3.0's template has no tool format");
    if (!o->continuation && !w->rc) {
        w_mark(w, M_BEGIN);
        if (c->llama31) {
            char today[32];
            const char *date = o->date ? o->date : c->date;
            if (!o->date && c->date_today) {
                time_t now = time(NULL);
                struct tm tm;
                strftime(today, sizeof today, "%d %b %Y", localtime_r(&now, &tm));
                date = today;
            }
            int first_sys = n > 0 && is_role(&m[0], "system");
            llama_header(w, "system");
            if (tools) w_str(w, "Environment: ipython\n");
            w_str(w, "Cutting Knowledge Date: December 2023\nToday Date: ");
            w_str(w, date);
            w_str(w, "\n\n");
            if (first_sys) w_trimmed(w, content_of(&m[0]));
            w_mark(w, M_EOT);
            start = first_sys;
            if (tools) {   /* tools go into the first user message */
                if (start >= n) {
                    w_fail(w, ENG_EINVAL, "tools go into the first user message, and there is none");
                    return;
                }
                llama_header(w, "user");
                w_str(w, "Given the following functions, please respond with a JSON for a function call "
                         "with its proper arguments that best answers the given prompt.\n\n"
                         "Respond in the format {\"name\": function name, \"parameters\": dictionary of "
                         "argument name and its value}.Do not use variables.\n\n");
                w_tools(w, o->tools_json, NULL, "\n\n", 4);
                w_trimmed(w, content_of(&m[start]));
                w_mark(w, M_EOT);
                start++;
            }
        }
    }
    for (int i = start; i < n && !w->rc; i++) {
        const eng_chat_msg *x = &m[i];
        if (is_role(x, "tool")) {
            if (!c->llama31) { w_fail(w, ENG_EUNSUPPORTED, "Llama 3.0's template has no tool results (message %d)", i); return; }
            llama_header(w, "ipython");
            eng_buf s = {0};
            py_string_text(&s, content_of(x));   /* the template's tojson of a string */
            if (s.oom) w_fail(w, ENG_ENOMEM, "out of memory");
            else w_text(w, s.p, s.n);
            eng_buf_free(&s);
        } else if (x->n_tool_calls > 0) {
            if (!c->llama31) { w_fail(w, ENG_EUNSUPPORTED, "Llama 3.0's template has no tool calls (message %d)", i); return; }
            if (x->n_tool_calls != 1) {
                w_fail(w, ENG_EUNSUPPORTED, "message %d: Llama 3's template takes one tool call per "
                       "assistant turn", i);
                return;
            }
            const eng_chat_call *call = &x->tool_calls[0];
            if (!call->name || !*call->name) { w_fail(w, ENG_EINVAL, "message %d: a tool call has no name", i); return; }
            llama_header(w, "assistant");
            w_str(w, "{\"name\": \"");
            w_str(w, call->name);
            w_str(w, "\", \"parameters\": ");
            w_arguments(w, call, i);
            w_str(w, "}");
        } else {
            llama_header(w, x->role);
            w_trimmed(w, content_of(x));
        }
        w_mark(w, M_EOT);
    }
    if (o->add_generation_prompt) llama_header(w, "assistant");
}

/* =============================================================== Gemma */
static void render_gemma(wr *w, const eng_chat_msg *m, int n, const eng_chat_opts *o, int n_tools) {
    const eng_chat *c = w->c;
    if (n_tools >= 0)
        w_fail(w, ENG_EUNSUPPORTED, "Gemma's template has no tool format: tools cannot be given");
    const char *prefix = NULL;
    int start = 0;
    if (o->continuation) {
        w_str(w, "\n");   /* what follows <end_of_turn> in the template */
    } else if (!w->rc) {
        w_mark(w, M_BOS);
        if (n > 0 && is_role(&m[0], "system")) {
            if (c->gemma_no_system)
                w_fail(w, ENG_EUNSUPPORTED, "this Gemma template refuses a system message "
                       "(System role not supported)");
            prefix = content_of(&m[0]);
            start = 1;
        }
    }
    for (int i = start; i < n && !w->rc; i++) {
        const eng_chat_msg *x = &m[i];
        if (is_role(x, "tool") || x->n_tool_calls > 0) {
            w_fail(w, ENG_EUNSUPPORTED, "message %d: Gemma's template has no tool calls or tool "
                   "results", i);
            return;
        }
        if (is_role(x, "user") != ((i - start) % 2 == 0)) {
            w_fail(w, ENG_EINVAL, "message %d: conversation roles must alternate "
                   "user/assistant/user/assistant/...", i);
            return;
        }
        w_mark(w, M_TURN_START);
        w_str(w, is_role(x, "assistant") ? "model" : x->role);
        w_str(w, "\n");
        if (i == start && prefix) {
            w_str(w, prefix);
            w_str(w, "\n\n");
        }
        w_trimmed(w, content_of(x));
        w_mark(w, M_TURN_END);
        w_str(w, "\n");
    }
    if (o->add_generation_prompt) {
        w_mark(w, M_TURN_START);
        w_str(w, "model\n");
    }
}

/* ============================================================= public */
int eng_chat_render(const eng_chat *c, const eng_chat_msg *msgs, int n, const eng_chat_opts *o,
                    int **ids, int *n_ids, eng_buf *text, eng_err *err) {
    static const eng_chat_opts none = {0};
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!c || n < 0 || (n && !msgs) || (!ids) != (!n_ids) || (!ids && !text))
        return eng_seterr(err, ENG_EINVAL, "eng_chat_render: bad arguments");
    if (!o) o = &none;
    if (n == 0 && !o->continuation)
        return eng_seterr(err, ENG_EINVAL, "eng_chat_render: a conversation needs a message");
    if (o->prefill && !o->add_generation_prompt)
        return eng_seterr(err, ENG_EINVAL, "eng_chat_render: a prefill needs the generation prompt");
    wr w = { .c = c, .want_ids = ids != NULL, .err = err };
    for (int i = 0; i < n && !w.rc; i++) {
        const char *r = msgs[i].role;
        if (!r || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")))
            w_fail(&w, ENG_EINVAL, "message %d: role '%s' (system, user, assistant or tool wanted)",
                   i, r ? r : "(none)");
        else if (msgs[i].n_tool_calls && (strcmp(r, "assistant") || !msgs[i].tool_calls))
            w_fail(&w, ENG_EINVAL, "message %d: only assistant messages carry tool calls", i);
        else if (o->continuation && !strcmp(r, "assistant"))
            w_fail(&w, ENG_EINVAL, "message %d: a continuation holds the messages after an assistant "
                   "turn, not another one", i);
    }
    int n_tools = -1;
    if (!w.rc && !o->continuation) check_tools(&w, o->tools_json, &n_tools);
    if (!w.rc) {
        if (c->family == FAM_CHATML) render_chatml(&w, msgs, n, o, n_tools);
        else if (c->family == FAM_LLAMA3) render_llama3(&w, msgs, n, o, n_tools);
        else render_gemma(&w, msgs, n, o, n_tools);
    }
    if (!w.rc && o->prefill) w_str(&w, o->prefill);
    w_flush(&w);
    if (!w.rc && (w.text.oom || w.span.oom)) w.rc = eng_seterr(err, ENG_ENOMEM, "chat template: out of memory");
    eng_buf_free(&w.span);
    if (w.rc) {
        free(w.ids);
        eng_buf_free(&w.text);
        return w.rc;
    }
    if (ids) { *ids = w.ids; *n_ids = w.n; }
    if (text) {
        eng_buf_clear(text);
        if (eng_buf_add(text, w.text.p ? w.text.p : "", w.text.n)) {
            if (ids) { free(*ids); *ids = NULL; *n_ids = 0; }
            eng_buf_free(&w.text);
            return eng_seterr(err, ENG_ENOMEM, "chat template: out of memory");
        }
    }
    eng_buf_free(&w.text);
    return ENG_OK;
}

/* The text of a ChatML template's default system message: a literal
 * "<|im_start|>system\n...<|im_end|>" (Jinja string escapes undone), or NULL
 * when every system turn the template writes comes from the messages. */
static char *chatml_default_system(const char *t) {
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(t, head); p; p = strstr(p + 1, head)) {
        const char *s = p + strlen(head);
        if (*s == '\n') s++;
        else if (s[0] == '\\' && s[1] == 'n') s += 2;
        else continue;
        const char *e = strstr(s, "<|im_end|>");
        if (!e) break;
        eng_buf b = {0};
        int literal = 1;
        for (const char *q = s; q < e && literal; q++) {
            if (*q == '\'' || *q == '"') literal = 0;
            else if (*q != '\\') eng_buf_addc(&b, *q);
            else {
                q++;
                eng_buf_addc(&b, *q == 'n' ? '\n' : *q == 't' ? '\t' : *q);
            }
        }
        if (literal && b.n) return eng_buf_take(&b);
        eng_buf_free(&b);
    }
    return NULL;
}

static int lookup_marks(eng_chat *c, const int *marks, int k, eng_err *err) {
    for (int i = 0; i < k; i++) {
        c->id[marks[i]] = eng_tok_find(c->tok, MARK[marks[i]]);
        if (c->id[marks[i]] < 0)
            return eng_seterr(err, ENG_EUNSUPPORTED, "chat template (%s): the vocabulary has no %s "
                              "token, which the template writes", c->name, MARK[marks[i]]);
    }
    return ENG_OK;
}

int eng_chat_create_from(const char *t, const eng_tok *tok, eng_chat **out, eng_err *err) {
    *out = NULL;
    if (!tok) return eng_seterr(err, ENG_EINVAL, "eng_chat_create: no tokenizer");
    eng_chat *c = calloc(1, sizeof *c);
    if (!c) return eng_seterr(err, ENG_ENOMEM, "chat template: out of memory");
    for (int i = 0; i < M_COUNT; i++) c->id[i] = -1;
    c->tok = tok;
    int rc;
    if (!t) {
        /* No template: ChatML when the vocabulary has its markers. */
        c->family = FAM_CHATML;
        c->name = "chatml";
        if (eng_tok_find(tok, MARK[M_IM_START]) < 0 || eng_tok_find(tok, MARK[M_IM_END]) < 0)
            rc = eng_seterr(err, ENG_EUNSUPPORTED, "the model has no chat template, and its vocabulary "
                            "has no <|im_start|>/<|im_end|> for the ChatML default: it cannot chat "
                            "(give it a raw prompt)");
        else rc = lookup_marks(c, (const int[]){ M_IM_START, M_IM_END }, 2, err);
    } else if (strstr(t, "<|im_start|>")) {
        c->family = FAM_CHATML;
        c->name = "chatml";
        c->think = strstr(t, "</think>") != NULL;
        c->thinking_switch = strstr(t, "enable_thinking") != NULL;
        const char *fn = strstr(t, "<function-name>");
        if (fn) {
            const char *q = fn;
            while (q > t && fn - q < 16 && *q != '{') q--;
            c->doubled_braces = q > t && *q == '{' && q[-1] == '{';
        }
        c->default_system = chatml_default_system(t);
        rc = lookup_marks(c, (const int[]){ M_IM_START, M_IM_END }, 2, err);
    } else if (strstr(t, "<|start_header_id|>") && strstr(t, "<|eot_id|>")) {
        c->family = FAM_LLAMA3;
        c->name = "llama3";
        c->llama31 = strstr(t, "Cutting Knowledge Date") != NULL;
        c->date_today = strstr(t, "strftime_now") != NULL;
        snprintf(c->date, sizeof c->date, "26 Jul 2024");
        const char *d = strstr(t, "date_string = \"");
        if (d) {
            d += strlen("date_string = \"");
            const char *e = strchr(d, '"');
            if (e && e - d < (long)sizeof c->date) snprintf(c->date, sizeof c->date, "%.*s", (int)(e - d), d);
        }
        rc = lookup_marks(c, (const int[]){ M_BEGIN, M_HEADER_START, M_HEADER_END, M_EOT }, 4, err);
    } else if (strstr(t, "<start_of_turn>") && strstr(t, "<end_of_turn>")) {
        c->family = FAM_GEMMA;
        c->name = "gemma";
        c->gemma_no_system = strstr(t, "System role not supported") != NULL;
        rc = lookup_marks(c, (const int[]){ M_BOS, M_TURN_START, M_TURN_END }, 3, err);
    } else {
        rc = eng_seterr(err, ENG_EUNSUPPORTED, "unsupported chat template: brisk renders ChatML "
                        "(<|im_start|>role ... <|im_end|>), Llama 3 (<|start_header_id|>role"
                        "<|end_header_id|> ... <|eot_id|>) and Gemma (<start_of_turn>role ... "
                        "<end_of_turn>) templates, and this one has none of those markers");
    }
    if (rc) {
        eng_chat_free(c);
        return rc;
    }
    *out = c;
    return ENG_OK;
}

int eng_chat_create(const eng_model *m, eng_chat **out, eng_err *err) {
    if (out) *out = NULL;
    if (!m || !out) return eng_seterr(err, ENG_EINVAL, "eng_chat_create: no model");
    return eng_chat_create_from(eng_model_chat_template(m), eng_model_tok(m), out, err);
}

void eng_chat_free(eng_chat *c) {
    if (!c) return;
    free(c->default_system);
    free(c);
}

const char *eng_chat_family_name(const eng_chat *c) { return c ? c->name : ""; }

int eng_chat_end_token(const eng_chat *c) {
    if (!c) return -1;
    return c->family == FAM_CHATML ? c->id[M_IM_END] : c->family == FAM_LLAMA3 ? c->id[M_EOT]
                                                                                : c->id[M_TURN_END];
}
