/* pp_detect.c — rule-based ParallelPrompt detection: finds "do X for each of
 * these items" in a raw prompt and proposes a schema, or says the prompt is
 * not parallelisable.  Rules, tried in order:
 *   extract_fields  "Extract a, b and c from the text: ..." (one item per field)
 *   generate_n      "generate/give/write ... N things"       (kind N)
 *   lists           the longest of: lines of one shape ("For the sentence: X,
 *                   is the sentiment ...?"), numbered (1. 2. / 1) 2) / (1) /
 *                   Question 1:), lettered, inline numbered, bulleted
 *                   (- * •), JSON/Python string lists, and the two below
 *   plain_lines     short lines after "the following titles:" / "each keyword"
 *   question_lines  a run of lines, at least half of them questions
 *   comma_list      "for each of the following: a, b, c", "... from: a, b, c"
 *   sentences       "translate the following N sentences: ..."
 * Every proposal must pass orc_pp_check (items appear in the prompt, >= 2). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "pp_internal.h"

typedef struct span { size_t a, b; } span;

/* A list found in the text: items, and the stretch they occupy. */
typedef struct list {
    span item[ORC_PP_MAX_ITEMS + 1];
    int n, over;               /* over: more than ORC_PP_MAX_ITEMS */
    span whole;
    const char *rule;
    int shaped;                /* lines of one shape: pre + item + suf */
    span pre, suf;
} list;

typedef struct text {
    const char *t;
    size_t len;
    span *line;
    int n_lines;
} text;

/* ------------------------------------------------------------ small scanners */
static int is_blank_span(const text *x, span s) {
    for (size_t i = s.a; i < s.b; i++) if (!isspace((unsigned char)x->t[i])) return 0;
    return 1;
}

static span trim_span(const text *x, span s) {
    while (s.a < s.b && isspace((unsigned char)x->t[s.a])) s.a++;
    while (s.b > s.a && isspace((unsigned char)x->t[s.b - 1])) s.b--;
    return s;
}

/* Skips spaces, tabs and the invisible spaces seen in pasted prompts. */
static size_t skip_sp(const char *t, size_t i, size_t end) {
    for (;;) {
        if (i < end && (t[i] == ' ' || t[i] == '\t')) { i++; continue; }
        if (i + 1 < end && !memcmp(t + i, "\xc2\xa0", 2)) { i += 2; continue; }
        if (i + 2 < end && (!memcmp(t + i, "\xe2\x80\xaf", 3) || !memcmp(t + i, "\xe2\x80\x8b", 3))) {
            i += 3;
            continue;
        }
        return i;
    }
}

static int word_at(const char *t, size_t len, size_t i, const char *w) {
    size_t m = strlen(w);
    if (i + m > len) return 0;
    for (size_t j = 0; j < m; j++)
        if (tolower((unsigned char)t[i + j]) != tolower((unsigned char)w[j])) return 0;
    if (i > 0 && isalnum((unsigned char)t[i - 1])) return 0;
    return i + m == len || !isalnum((unsigned char)t[i + m]);
}

/* Whole-word, case-insensitive search in t[a..b). */
static long find_word(const char *t, size_t a, size_t b, const char *w) {
    for (size_t i = a; i < b; i++)
        if (word_at(t, b, i, w)) return (long)i;
    return -1;
}

static int has_any(const char *t, size_t a, size_t b, const char *const *w, size_t n) {
    for (size_t i = 0; i < n; i++) if (find_word(t, a, b, w[i]) >= 0) return 1;
    return 0;
}

static int count_words(const char *t, span s) {
    int n = 0, in = 0;
    for (size_t i = s.a; i < s.b; i++) {
        int w = !isspace((unsigned char)t[i]);
        if (w && !in) n++;
        in = w;
    }
    return n;
}

/* Offset after the next n words from i. */
static size_t skip_words(const text *x, size_t i, int n) {
    for (int w = 0; w < n && i < x->len; w++) {
        while (i < x->len && isspace((unsigned char)x->t[i])) i++;
        while (i < x->len && !isspace((unsigned char)x->t[i])) i++;
    }
    return i;
}

/* Last visible character of a span, looking through closing quotes. */
static char last_char(const text *x, span s) {
    s = trim_span(x, s);
    while (s.b > s.a) {
        unsigned char c = (unsigned char)x->t[s.b - 1];
        if (c == '"' || c == '\'' || c == ')' ) { s.b--; continue; }
        if (c >= 0x80) {   /* a closing curly quote or similar: skip the character */
            while (s.b > s.a && ((unsigned char)x->t[s.b - 1] & 0xC0) == 0x80) s.b--;
            if (s.b > s.a) s.b--;
            continue;
        }
        return (char)c;
    }
    return 0;
}

/* Ends with '?', also before a trailing note in brackets: "...? (1 Pt)". */
static int ends_question(const text *x, span s) {
    s = trim_span(x, s);
    if (s.b > s.a && x->t[s.b - 1] == ')') {
        size_t i = s.b - 1;
        while (i > s.a && x->t[i] != '(') i--;
        if (i > s.a && i + 40 >= s.b) s = trim_span(x, (span){s.a, i});
    }
    return last_char(x, s) == '?';
}

static int split_lines(text *x) {
    int cap = 64;
    x->line = malloc((size_t)cap * sizeof *x->line);
    if (!x->line) return -1;
    size_t a = 0;
    for (size_t i = 0; i <= x->len; i++) {
        if (i < x->len && x->t[i] != '\n') continue;
        if (x->n_lines == cap) {
            span *g = realloc(x->line, (size_t)(cap *= 2) * sizeof *g);
            if (!g) return -1;
            x->line = g;
        }
        x->line[x->n_lines].a = a;
        x->line[x->n_lines++].b = i;
        a = i + 1;
    }
    return 0;
}

static void list_add(list *l, span s) {
    if (l->n == ORC_PP_MAX_ITEMS) { l->over = 1; return; }
    l->item[l->n++] = s;
}

/* ------------------------------------------------------------ markers */
enum { MK_NONE, MK_NUM, MK_ALPHA, MK_BULLET };
typedef struct marker { int kind, value; size_t body; } marker;

static const char *const bullets[] = {
    "-", "*", "+", "\xe2\x80\xa2", "\xc2\xb7", "\xe2\x98\x90", "\xe2\x96\xaa", "\xe2\x97\xa6",
    "\xe2\x97\x8b", "\xe2\x96\xba", "\xe2\x9e\xa2", "\xe2\x9c\x93", "\xe2\x96\xa0", "Q.", "Q:",
};

static marker num_marker(const char *t, size_t i, size_t end) {
    marker m = {MK_NONE, 0, 0};
    size_t j = i;
    int paren = j < end && t[j] == '(';
    if (paren) j++;
    if (!paren && j < end && (t[j] == 'Q' || t[j] == 'q')) {   /* Q1. / Question 1: / Question# 01: */
        size_t k = j + 1;
        if (word_at(t, end, j, "question")) k = j + 8;
        while (k < end && (t[k] == ' ' || t[k] == '#')) k++;
        if (k < end && isdigit((unsigned char)t[k])) j = k;
    }
    size_t d = j;
    int v = 0;
    while (j < end && isdigit((unsigned char)t[j]) && j - d < 3) v = v * 10 + (t[j++] - '0');
    if (j == d || (j < end && isdigit((unsigned char)t[j]))) return m;
    static const char *const ordinal[] = {"st", "nd", "rd", "th"};     /* "4th)" */
    for (int k = 0; k < 4 && !paren; k++)
        if (j + 2 < end && !strncmp(t + j, ordinal[k], 2) && (t[j + 2] == ')' || t[j + 2] == '.')) j += 2;
    if (j >= end) return m;
    char c = t[j];
    if (paren) { if (c != ')') return m; }
    else if (c == '.') {
        if (j + 1 < end && isdigit((unsigned char)t[j + 1])) return m;
        if (j + 1 < end && t[j + 1] == ')') j++;              /* "1.)" */
    }
    else if (c == '-') { if (j + 1 < end && !isspace((unsigned char)t[j + 1]) && !isalpha((unsigned char)t[j + 1])) return m; }
    else if (c != ')' && c != ':') return m;
    j = skip_sp(t, j + 1, end);
    if (j >= end) return m;
    m.kind = MK_NUM;
    m.value = v;
    m.body = j;
    return m;
}

static marker line_marker(const text *x, span ln) {
    const char *t = x->t;
    size_t i = skip_sp(t, ln.a, ln.b), end = ln.b;
    marker m = num_marker(t, i, end);
    if (m.kind) return m;
    for (size_t k = 0; k < sizeof bullets / sizeof bullets[0]; k++) {
        size_t n = strlen(bullets[k]);
        if (i + n < end && !memcmp(t + i, bullets[k], n) && (t[i + n] == ' ' || t[i + n] == '\t')) {
            size_t j = skip_sp(t, i + n, end);
            if (j < end) { m.kind = MK_BULLET; m.value = (int)k + 1; m.body = j; }
            return m;
        }
    }
    if (i + 2 < end && isalpha((unsigned char)t[i]) && (t[i + 1] == '.' || t[i + 1] == ')') && t[i + 2] == ' ') {
        size_t j = skip_sp(t, i + 2, end);
        if (j < end) { m.kind = MK_ALPHA; m.value = tolower((unsigned char)t[i]) - 'a' + 1; m.body = j; }
        return m;
    }
    return m;
}

/* An item of a list of the given marker kind that starts on line li at
 * offset body.  It takes the lines that follow, up to a blank line, a marker
 * of its own kind or stop_line (the next item): lettered lines (answer
 * choices "a. ...") always, plain lines while its text has not ended a
 * sentence (for the last item: only wrapped-looking lines). */
static span item_from(const text *x, int kind, int li, size_t body, int stop_line, int *last_line) {
    span s = {body, x->line[li].b};
    int j = li, choices = 0;
    while (j + 1 < x->n_lines && j + 1 != stop_line) {
        span nx = x->line[j + 1];
        marker m = line_marker(x, nx);
        if (is_blank_span(x, nx) || m.kind == kind) break;
        if (m.kind == MK_ALPHA) choices = 1;
        else if (m.kind || choices) break;
        else {
            char c = last_char(x, (span){s.a, x->line[j].b});
            if (c == '.' || c == '?' || c == '!' || c == ':') break;
            /* with no next item to stop at, only a line that reads as wrapped
             * text (indented, or going on in lower case) continues the item */
            unsigned char f = (unsigned char)x->t[nx.a];
            if (stop_line < 0 && !isspace(f) && !islower(f)) break;
        }
        j++;
        s.b = nx.b;
    }
    if (last_line) *last_line = j;
    return trim_span(x, s);
}

/* ------------------------------------------------------------ list rules */
static const char *const task_cues[] = {
    "following", "below", "these", "each", "every", "questions", "list", "answer", "translate",
    "all of", "respond", "classify", "solve", "rate", "explain", "define", "complete",
    /* the same in the other languages common in the dataset (es, pt, de, fr, it) */
    "preguntas", "responder", "responde", "questões", "responda", "fragen", "beantworte",
    "répondez", "réponds", "domande", "rispondi", "traduce", "übersetze", "traduire",
};
static const char *const constraint_heads[] = {
    "rule", "rules", "requirement", "requirements", "instruction", "instructions", "step", "steps",
    "constraint", "constraints", "guideline", "guidelines", "format", "example", "examples",
    "note", "notes", "criteria", "choices", "options",
};

/* A list is a set of subtasks when its items are questions, or when the
 * prompt asks for something over it ("answer the following", "each") and the
 * line just above it does not introduce rules or examples. */
static int list_is_task(const text *x, const list *l) {
    size_t a = l->whole.a > 300 ? l->whole.a - 300 : 0;
    /* the clause just before the list: back to the previous . , ; ? ! or line */
    size_t head_b = trim_span(x, (span){0, l->whole.a}).b, head_a = head_b;
    while (head_a > 0 && !strchr(".,;?!\n", x->t[head_a - 1])) head_a--;
    if (has_any(x->t, head_a, head_b, constraint_heads, sizeof constraint_heads / sizeof *constraint_heads))
        return 0;
    int q = 0;
    for (int i = 0; i < l->n; i++) if (ends_question(x, l->item[i])) q++;
    if (2 * q >= l->n) return 1;
    return has_any(x->t, a, l->whole.a, task_cues, sizeof task_cues / sizeof *task_cues) ||
           has_any(x->t, l->whole.b, x->len, task_cues, sizeof task_cues / sizeof *task_cues);
}

/* Keeps l in *best when it is a longer list of subtasks. */
static void keep(const text *x, const list *l, list *best) {
    if (l->n >= 2 && !l->over && l->n > best->n && (l->shaped || list_is_task(x, l))) *best = *l;
}

/* "3 Unlike the other IGOs, ...": a number without its '.' or ')', taken
 * only as the next number of a list already running. */
static int bare_number(const text *x, span ln, int want, marker *m) {
    size_t i = skip_sp(x->t, ln.a, ln.b);
    int v = 0;
    size_t d = i;
    while (i < ln.b && isdigit((unsigned char)x->t[i]) && i - d < 3) v = v * 10 + (x->t[i++] - '0');
    if (i == d || v != want || i + 1 >= ln.b || x->t[i] != ' ' || !isupper((unsigned char)x->t[i + 1]))
        return 0;
    m->kind = MK_NUM;
    m->value = v;
    m->body = i + 1;
    return 1;
}

/* Numbered or lettered lines: the longest chain k,k+1,k+2... (a,b,c...);
 * up to 8 lines in between that are not the next number are ignored. */
static void chain_lines(const text *x, int kind, list *best) {
    int idx[ORC_PP_MAX_ITEMS + 2], n = 0, last = 0, gap = 0;
    size_t body[ORC_PP_MAX_ITEMS + 2];
    for (int li = 0; li <= x->n_lines; li++) {
        marker m = li < x->n_lines ? line_marker(x, x->line[li]) : (marker){MK_NONE, 0, 0};
        int end = li == x->n_lines;
        if (!end && m.kind != kind && !(kind == MK_NUM && n > 0 && bare_number(x, x->line[li], last + 1, &m)))
            { gap += !m.kind && !is_blank_span(x, x->line[li]); continue; }
        int near = gap <= 8;    /* a number far below the list starts something else */
        gap = 0;
        if (!end && n > 0 && m.value == last + 1 && near && n <= ORC_PP_MAX_ITEMS) {
            body[n] = m.body;
            idx[n++] = li;
            last = m.value;
            continue;
        }
        if (n >= 2 && n > best->n) {   /* close the current chain */
            list l = {.n = 0, .rule = kind == MK_NUM ? "numbered" : "lettered"};
            for (int k = 0; k < n; k++) {
                int ll;
                span s = item_from(x, kind, idx[k], body[k], k + 1 < n ? idx[k + 1] : -1, &ll);
                list_add(&l, s);
                if (k == n - 1) l.whole.b = x->line[ll].b;
            }
            l.whole.a = x->line[idx[0]].a;
            l.over = n > ORC_PP_MAX_ITEMS;
            keep(x, &l, best);
        }
        n = 0;
        if (!end && m.kind == kind) { body[n] = m.body; idx[n++] = li; last = m.value; }
    }
}

/* Bulleted lines with the same bullet, blank lines allowed between. */
static void bullet_lines(const text *x, list *best) {
    for (int li = 0; li < x->n_lines; li++) {
        marker m = line_marker(x, x->line[li]);
        if (m.kind != MK_BULLET) continue;
        list l = {.rule = "bulleted"};
        int j = li, ll = li;
        while (j < x->n_lines) {
            marker mj = line_marker(x, x->line[j]);
            if (mj.kind != MK_BULLET || mj.value != m.value) break;
            list_add(&l, item_from(x, MK_BULLET, j, mj.body, -1, &ll));
            j = ll + 1;
            while (j < x->n_lines && is_blank_span(x, x->line[j])) j++;
        }
        l.whole = (span){x->line[li].a, x->line[ll].b};
        keep(x, &l, best);
        li = ll;
    }
}

/* "(1) ... (2) ..." or "1. ... 2. ..." inside running text. */
static int inline_ok(const char *t, size_t i) {
    return i == 0 || isspace((unsigned char)t[i - 1]) || t[i - 1] == ':' || t[i - 1] == '"';
}

static void chain_inline(const text *x, list *best) {
    const char *t = x->t;
    for (size_t s = 0; s < x->len; s++) {
        if (!inline_ok(t, s) || (t[s] != '1' && !(t[s] == '(' && s + 1 < x->len && t[s + 1] == '1'))) continue;
        marker m = num_marker(t, s, x->len);
        if (m.kind != MK_NUM || m.value != 1) continue;
        size_t starts[ORC_PP_MAX_ITEMS + 2], bodies[ORC_PP_MAX_ITEMS + 2];
        int n = 0;
        starts[n] = s;
        bodies[n++] = m.body;
        for (size_t i = m.body; i < x->len && n <= ORC_PP_MAX_ITEMS; i++) {
            if (i > bodies[n - 1] + 1500) break;      /* too far: not the same list */
            if (!inline_ok(t, i)) continue;
            marker k = num_marker(t, i, x->len);
            if (k.kind == MK_NUM && k.value == n + 1 && (t[i] == '(') == (t[s] == '(')) {
                starts[n] = i;
                bodies[n++] = k.body;
                i = k.body;
            }
        }
        if (n < 2 || n <= best->n) continue;
        list l = {.rule = "inline_numbered"};
        for (int k = 0; k < n; k++) {
            size_t e = k + 1 < n ? starts[k + 1] : x->len;
            const char *bl = strstr(t + bodies[k], "\n\n");   /* an item ends at a blank line */
            if (bl && (size_t)(bl - t) < e) e = (size_t)(bl - t);
            if (k == n - 1) {      /* last one: to the end of its sentence line */
                const char *nl = memchr(t + bodies[k], '\n', e - bodies[k]);
                if (nl && (last_char(x, (span){bodies[k], (size_t)(nl - t)}) == '?' ||
                           last_char(x, (span){bodies[k], (size_t)(nl - t)}) == '.'))
                    e = (size_t)(nl - t);
            }
            list_add(&l, trim_span(x, (span){bodies[k], e}));
            l.whole.b = e;
        }
        l.whole.a = s;
        keep(x, &l, best);
    }
}

/* [ "a", "b", ... ] written in the prompt. */
static void string_array(const text *x, list *best) {
    const char *t = x->t;
    for (size_t i = 0; i < x->len; i++) {
        if (t[i] != '[') continue;
        size_t j = i + 1;
        list l = {.rule = "json_list"};
        for (;;) {
            while (j < x->len && isspace((unsigned char)t[j])) j++;
            if (j >= x->len || t[j] != '"') break;
            size_t a = ++j;
            while (j < x->len && t[j] != '"' && t[j] != '\n') j += t[j] == '\\' ? 2 : 1;
            if (j >= x->len || t[j] != '"') break;
            list_add(&l, (span){a, j});
            j++;
            while (j < x->len && isspace((unsigned char)t[j])) j++;
            if (j < x->len && t[j] == ',') { j++; continue; }
            if (j < x->len && t[j] == ']') {
                l.whole = (span){i, j + 1};
                keep(x, &l, best);
            }
            break;
        }
    }
}

/* One input, not a list of them: "the following text", "text:". */
static const char *const one_input[] = {
    "text", "passage", "article", "document", "paragraph", "story", "transcript", "content",
    "email", "conversation", "description", "note", "report", "code", "json", "table",
    "sentence", "abstract", "essay", "message", "context", "prompt", "format", "example",
    "rules", "instructions", "requirements", "steps", "way", "manner", "structure", "template",
};

static int is_separator(const text *x, span s) {
    s = trim_span(x, s);
    for (size_t i = s.a; i < s.b; i++)
        if (!strchr("/-=_*#`~", x->t[i])) return 0;
    return s.b > s.a;
}

/* Unmarked lines, at least half of them questions, blank lines between
 * allowed: "Answer these:\nWhat is X?\nWhy Y?\nDescribe Z.\nWho W?".  The run
 * ends at a marker line, a separator, a bare heading ("Questions"), a
 * heading of one input ("text:") or a long passage; other headings ending
 * in ':' are skipped.  Lines after the last question stay only when the run
 * ends the prompt or a fenced block.  A first line that introduces the rest
 * loses its instruction ("answer these questions:  What ...?") or goes
 * ("Did the below countries ...?").  Runs compete on their questions. */
static int strip_intro(const text *x, list *l) {
    static const char *const cue[] = {"below", "following", "these", "each", "every"};
    span *f = &l->item[0];
    size_t c = f->b;
    for (size_t k = 0; k < sizeof cue / sizeof *cue; k++) {
        long p = find_word(x->t, f->a, f->b, cue[k]);
        if (p >= 0 && (size_t)p < c) c = (size_t)p;
    }
    if (c == f->b) return 0;
    for (size_t i = c; i + 1 < f->b; i++) {
        char a = x->t[i], b = x->t[i + 1];
        if ((a == ':' || a == '.' || a == ' ') && b == ' ') {
            f->a = trim_span(x, (span){i + 1, f->b}).a;
            return 0;
        }
    }
    memmove(l->item, l->item + 1, (size_t)(l->n - 1) * sizeof *l->item);
    l->n--;
    return 1;
}

static int next_is_question(const text *x, int j) {
    while (j < x->n_lines && is_blank_span(x, x->line[j])) j++;
    return j < x->n_lines && ends_question(x, x->line[j]);
}

static void question_lines(const text *x, list *best) {
    int best_q = 0;
    for (int li = 0; li < x->n_lines; li++) {
        if (!ends_question(x, x->line[li]) || line_marker(x, x->line[li]).kind) continue;
        list l = {.rule = "question_lines"};
        int j = li, last_q = li, last = li, n_q = 0, keep = 0, open_end = 0;
        for (; j < x->n_lines; j++) {
            span ln = x->line[j];
            if (is_blank_span(x, ln)) continue;
            char c = last_char(x, ln);
            int w = count_words(x->t, ln);
            if (is_separator(x, ln)) { open_end = 1; break; }
            if (c == ':' && w <= 8 && next_is_question(x, j + 1) &&
                !has_any(x->t, ln.a, ln.b, one_input, sizeof one_input / sizeof *one_input))
                continue;                                    /* section heading */
            if (line_marker(x, ln).kind || c == ':' || w > 60) break;
            if (c != '?' && w <= 3 && isalnum((unsigned char)c) && !ends_question(x, ln)) break;
            list_add(&l, trim_span(x, ln));
            last = j;
            if (ends_question(x, ln)) { n_q++; last_q = j; keep = l.n; }
        }
        if (j == x->n_lines) open_end = 1;
        if (!open_end) l.n = keep;
        else last_q = last;
        for (int k = keep; k < l.n; k++)     /* kept trailing lines must be short */
            if (count_words(x->t, l.item[k]) > 30) { l.n = keep; break; }
        l.whole = (span){x->line[li].a, x->line[l.n > keep ? last : last_q].b};
        if (l.n >= 3 && strip_intro(x, &l)) n_q--;
        if (l.n >= 2 && !l.over && 2 * n_q >= l.n && n_q > best_q && list_is_task(x, &l)) {
            *best = l;
            best_q = n_q;
        }
        li = last_q;
    }
}

/* "from the following video titles: A\nB\nC", "for each keyword\n\nA\nB":
 * short unmarked lines after an instruction that names its inputs (not
 * "the following text", which is one input). */
static void plain_lines(const text *x, list *best) {
    static const char *const cues[] = {"following", "each", "every", "these", "below"};
    for (size_t c = 0; c < sizeof cues / sizeof *cues; c++) {
        long p = find_word(x->t, 0, x->len, cues[c]);
        if (p < 0) continue;
        size_t q = (size_t)p + strlen(cues[c]), stop = skip_words(x, q, 3);
        if (has_any(x->t, q, stop, one_input, sizeof one_input / sizeof *one_input)) continue;
        while (q < x->len && x->t[q] != ':' && x->t[q] != '\n') q++;
        if (q >= x->len) continue;
        for (size_t k = q + 1; x->t[q] == ':' && k < x->len && x->t[k] != '\n'; k++)
            if (x->t[k] == ':') q = k;     /* the last colon of that line */
        int li = 0;
        while (li < x->n_lines && x->line[li].b < q) li++;
        span first = {q + 1, li < x->n_lines ? x->line[li].b : x->len};
        list l = {.rule = "plain_lines"};
        if (x->t[q] == '\n' || is_blank_span(x, first)) li++;
        while (li < x->n_lines && (is_blank_span(x, x->line[li]) || is_separator(x, x->line[li]))) li++;
        if (li >= x->n_lines) continue;
        l.whole.a = x->t[q] == ':' && !is_blank_span(x, first) ? first.a : x->line[li].a;
        int ok = 1;
        for (int j = li; j < x->n_lines && ok; j++) {
            span s = j == li && l.whole.a == first.a ? first : x->line[j];
            if (is_blank_span(x, s)) break;
            if (is_separator(x, s)) { l.whole.b = s.b; continue; }
            char e = last_char(x, s);
            if (count_words(x->t, s) > 20 || e == ':' || line_marker(x, s).kind) { ok = 0; break; }
            list_add(&l, trim_span(x, s));
            l.whole.b = s.b;
        }
        if (ok) keep(x, &l, best);
        return;
    }
}

/* ------------------------------------------------------------ list -> schema */
static char **span_strings(const text *x, const span *s, int n) {
    char **v = calloc((size_t)n, sizeof *v);
    if (!v) return NULL;
    for (int i = 0; i < n; i++)
        if (!(v[i] = pp_trimdup(x->t + s[i].a, s[i].b - s[i].a))) { orc_pp_strv_free(v, n); return NULL; }
    return v;
}

/* Template "{context}\n\n{data}" (or "{context}\n\n<pre>{data}<suf>" for
 * lines of one shape): the context is the prompt without the list, so the
 * shared part comes first and is prefilled once. */
static int list_schema(const text *x, const list *l, orc_pp_schema *out) {
    eng_buf c = {0}, tb = {0};
    span before = trim_span(x, (span){0, l->whole.a}), after = trim_span(x, (span){l->whole.b, x->len});
    eng_buf_add(&c, x->t + before.a, before.b - before.a);
    if (before.b > before.a && after.b > after.a) eng_buf_adds(&c, "\n\n");
    eng_buf_add(&c, x->t + after.a, after.b - after.a);
    out->context = eng_buf_take(&c);
    if (out->context && *out->context) eng_buf_adds(&tb, "{context}\n\n");
    if (l->shaped) eng_buf_add(&tb, x->t + l->pre.a, l->pre.b - l->pre.a);
    eng_buf_adds(&tb, "{data}");
    if (l->shaped) eng_buf_add(&tb, x->t + l->suf.a, l->suf.b - l->suf.a);
    out->tmpl = eng_buf_take(&tb);
    out->data = span_strings(x, l->item, l->n);
    out->n_data = l->n;
    out->kind = ORC_PP_DATA;
    out->rule = l->rule;
    return out->context && out->tmpl && out->data ? ENG_OK : ENG_ENOMEM;
}

/* Consecutive lines sharing a prefix and suffix of >= 24 bytes together:
 * the varying middles are the items ("For the sentence: X, is the sentiment
 * ... positive or negative?"). */
static void repeated_lines(const text *x, list *best) {
    for (int li = 0; li < x->n_lines; li++) {
        span first = trim_span(x, x->line[li]);
        if (first.b - first.a < 24 || line_marker(x, first).kind) continue;
        int idx[ORC_PP_MAX_ITEMS + 1], n = 0;
        size_t pre = first.b - first.a, suf = pre;
        for (int j = li; j < x->n_lines && n <= ORC_PP_MAX_ITEMS; j++) {
            span s = trim_span(x, x->line[j]);
            if (s.a == s.b) continue;
            size_t p = 0, q = 0, m = s.b - s.a;
            while (p < pre && p < m && x->t[first.a + p] == x->t[s.a + p]) p++;
            while (q < suf && q < m && x->t[first.b - 1 - q] == x->t[s.b - 1 - q]) q++;
            if (j > li && (p + q < 24 || line_marker(x, s).kind)) break;
            if (j > li) { pre = p; suf = q; }
            idx[n++] = j;
        }
        if (n < 3 || n > ORC_PP_MAX_ITEMS || n <= best->n) continue;
        while (pre > 0 && isalnum((unsigned char)x->t[first.a + pre - 1])) pre--;  /* not mid-word */
        while (suf > 0 && isalnum((unsigned char)x->t[first.b - suf])) suf--;
        if (pre + suf < 24) continue;
        list l = {.rule = "repeated_lines", .shaped = 1};
        int ok = 1;
        for (int k = 0; k < n && ok; k++) {
            span s = trim_span(x, x->line[idx[k]]);
            if (s.b - s.a <= pre + suf) ok = 0;
            else list_add(&l, trim_span(x, (span){s.a + pre, s.b - suf}));
        }
        if (!ok) continue;
        l.whole = (span){x->line[idx[0]].a, x->line[idx[n - 1]].b};
        l.pre = (span){first.a, first.a + pre};
        l.suf = (span){first.b - suf, first.b};
        keep(x, &l, best);
    }
}

/* Every list rule proposes its longest list that reads as a set of
 * subtasks; the longest that passes orc_pp_check wins (ties: the earlier rule).
 * Lists with markers count double: unmarked question lines are often a
 * dialogue or passage quoted as context. */
static int list_rules(const text *x, const char *prompt, orc_pp_schema *out) {
    enum { N_CANDS = 8 };
    list *c = calloc(N_CANDS, sizeof *c);
    if (!c) return ENG_ENOMEM;
    repeated_lines(x, &c[0]);
    chain_lines(x, MK_NUM, &c[1]);
    chain_lines(x, MK_ALPHA, &c[2]);
    chain_inline(x, &c[3]);
    bullet_lines(x, &c[4]);
    string_array(x, &c[5]);
    plain_lines(x, &c[6]);
    question_lines(x, &c[7]);
    static const int weight[N_CANDS] = {1, 2, 2, 2, 2, 2, 1, 1};
    if (c[1].n >= 2 && c[2].whole.a >= c[1].whole.a && c[2].whole.b <= c[1].whole.b)
        c[2].n = 0;     /* a. b. c. nested in a numbered item: its answer choices */
    int rc = ENG_OK;
    for (;;) {
        int best = -1;
        for (int i = 0; i < N_CANDS; i++)
            if (c[i].n >= 2 && (best < 0 || c[i].n * weight[i] > c[best].n * weight[best])) best = i;
        if (best < 0) break;
        list *l = &c[best];
        if ((rc = list_schema(x, l, out))) break;
        if (orc_pp_check(out, prompt, NULL) == ENG_OK) break;
        orc_pp_schema_free(out);
        l->n = 0;
    }
    free(c);
    return rc;
}

/* ------------------------------------------------------------ comma lists */
/* Splits t[s) at top-level commas/semicolons and " and "/" & ". */
static void split_commas(const text *x, span s, list *l) {
    const char *t = x->t;
    int depth = 0;
    size_t a = s.a;
    for (size_t i = s.a; i <= s.b; i++) {
        char c = i < s.b ? t[i] : ',';
        if (c == '(' || c == '[' || c == '{') depth++;
        else if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
        int cut = 0, skip = 1;
        if (depth == 0 && (c == ',' || c == ';')) cut = 1;
        else if (depth == 0 && i < s.b && (word_at(t, s.b, i, "and") || c == '&') && i > a &&
                 isspace((unsigned char)t[i - 1])) {
            cut = 1;
            skip = c == '&' ? 1 : 3;
        }
        if (!cut) continue;
        span it = trim_span(x, (span){a, i});
        while (it.a < it.b && (t[it.a] == '\'' || t[it.a] == '"')) it.a++;
        while (it.b > it.a && (t[it.b - 1] == '\'' || t[it.b - 1] == '"' || t[it.b - 1] == '.')) it.b--;
        if (word_at(t, it.b, it.a, "and")) it.a = trim_span(x, (span){it.a + 3, it.b}).a;
        if (it.b > it.a && !word_at(t, it.b, it.a, "etc") && !word_at(t, it.b, it.a, "all") &&
            !word_at(t, it.b, it.a, "so"))
            list_add(l, it);
        a = i + skip;
        i = a - 1;
    }
}

/* A leading phrase glued to the first field ("tags for art", "with the
 * fewest words intent") is cut back to the size of the other fields. */
static void trim_first_field(const text *x, list *l) {
    if (l->n < 3) return;
    int most = 0;
    for (int i = 1; i < l->n; i++) {
        int w = count_words(x->t, l->item[i]);
        if (w > most) most = w;
    }
    span *f = &l->item[0];
    int w = count_words(x->t, *f);
    if (w < most + 2 || memchr(x->t + f->a, '(', f->b - f->a)) return;
    int drop = w - most;
    size_t i = f->a;
    while (drop > 0 && i < f->b) {
        while (i < f->b && !isspace((unsigned char)x->t[i])) i++;
        while (i < f->b && isspace((unsigned char)x->t[i])) i++;
        drop--;
    }
    f->a = i;
}

static const char *const extract_verbs[] = {"extract", "identify", "find", "pull out", "detect", "get"};
static const char *const field_ends[] = {
    " from ", " in this ", " in the ", " in a ", " of this ", " based on ", " within ", " for each ",
    " for every ", " into ", " as a ", " out of ",
};

/* End of an instruction's field list: the first terminator word, colon,
 * newline or sentence end after a. */
static size_t fields_end(const text *x, size_t a) {
    size_t e = x->len;
    for (size_t k = 0; k < sizeof field_ends / sizeof *field_ends; k++) {
        long p = pp_ci_find(x->t + a, x->len - a, field_ends[k]);
        if (p >= 0 && a + (size_t)p < e) e = a + (size_t)p;
    }
    int depth = 0;
    for (size_t i = a; i < e; i++) {
        char c = x->t[i];
        if (c == '(' || c == '[') depth++;
        else if (c == ')' || c == ']') { if (depth == 0) return i; depth--; }
        else if (c == '\n' || (depth == 0 && c == ':')) return i;
        else if (depth == 0 && (c == '.' || c == '?') && (i + 1 >= x->len || isspace((unsigned char)x->t[i + 1])))
            return i;
    }
    return e;
}

/* Where the shared context starts: after the first ':' or newline at or
 * after i (the instruction line's end); len when there is none. */
static size_t context_start(const text *x, size_t i) {
    for (; i < x->len; i++) if (x->t[i] == ':' || x->t[i] == '\n') return i + 1;
    return x->len;
}

static int fields_schema(const text *x, list *l, size_t ctx, const char *rule, orc_pp_schema *out) {
    span c = trim_span(x, (span){ctx, x->len});
    eng_buf tb = {0};
    eng_buf_add(&tb, x->t, l->whole.a);
    eng_buf_adds(&tb, "{data}");
    eng_buf_add(&tb, x->t + l->whole.b, (c.a > l->whole.b ? c.a : l->whole.b) - l->whole.b);
    if (c.b > c.a) eng_buf_adds(&tb, "{context}");
    out->tmpl = eng_buf_take(&tb);
    out->context = pp_strndup(x->t + c.a, c.b - c.a);
    out->data = span_strings(x, l->item, l->n);
    out->n_data = l->n;
    out->kind = ORC_PP_DATA;
    out->rule = rule;
    return out->tmpl && out->context && out->data ? ENG_OK : ENG_ENOMEM;
}

/* With no word like "from" to end it, a field list runs into the text after
 * it ("Extract Part Number, Product Weight MOST25-10-A ..."): the list ends at
 * the first field much longer than those before it, cut to their size. */
static void trim_last_fields(const text *x, list *l, span *whole) {
    for (int k = 2; k < l->n; k++) {
        int w[ORC_PP_MAX_ITEMS], n = 0;
        for (int i = 0; i < k; i++) {   /* insertion sort: the median of the first k */
            int v = count_words(x->t, l->item[i]), j = n++;
            while (j > 0 && w[j - 1] > v) { w[j] = w[j - 1]; j--; }
            w[j] = v;
        }
        int med = w[(k - 1) / 2], have = count_words(x->t, l->item[k]);
        if (have <= 3 * med + 2 || have <= 8) continue;
        span *f = &l->item[k];
        size_t i = f->a;
        for (int c = 0; c < med && i < f->b; c++) {
            while (i < f->b && isspace((unsigned char)x->t[i])) i++;
            while (i < f->b && !isspace((unsigned char)x->t[i])) i++;
        }
        f->b = i;
        l->n = k + 1;
        whole->b = i;
        return;
    }
}

static int try_fields(const text *x, const char *prompt, span s, int need_comma, const char *rule,
                      orc_pp_schema *out) {
    list l = {.rule = rule};
    int commas = 0;
    for (size_t i = s.a; i < s.b; i++) commas += x->t[i] == ',' || x->t[i] == ';';
    if (need_comma && !commas) return ENG_OK;
    split_commas(x, s, &l);
    if (l.n < 2 || l.over) return ENG_OK;
    if (!commas) for (int i = 0; i < l.n; i++) if (count_words(x->t, l.item[i]) > 3) return ENG_OK;
    trim_first_field(x, &l);
    trim_last_fields(x, &l, &s);
    for (int i = 0; i < l.n; i++)    /* a field is a name, not a piece of JSON */
        for (size_t k = l.item[i].a; k < l.item[i].b; k++)
            if (strchr(":{}[]\"", x->t[k])) return ENG_OK;
    l.whole = s;
    int rc = fields_schema(x, &l, context_start(x, s.b), rule, out);
    if (rc) return rc;
    if (orc_pp_check(out, prompt, NULL) == ENG_OK) return ENG_OK;
    orc_pp_schema_free(out);
    return ENG_OK;
}

/* "the following five attributes of the product:" names fields to come. */
static const char *const field_nouns[] = {
    "attributes", "attribute", "fields", "columns", "keys", "entities", "information", "details",
    "items", "categories", "properties", "aspects", "parameters", "features", "elements",
    "values", "labels", "tags", "things", "data",
};

static int names_fields(const text *x, size_t a, size_t b) {
    long f = find_word(x->t, a, b, "following");
    if (f < 0) f = find_word(x->t, a, b, "these");
    if (f < 0) return 0;
    size_t e = skip_words(x, (size_t)f, 4);
    return has_any(x->t, (size_t)f, e < b ? e : b, field_nouns, sizeof field_nouns / sizeof *field_nouns);
}

/* "Extract a, b and c from ...", "... like a, b, c", "...: a, b, c". */
static int extract_fields(const text *x, const char *prompt, orc_pp_schema *out) {
    size_t i = skip_sp(x->t, 0, x->len);
    while (i < x->len && isspace((unsigned char)x->t[i])) i++;
    static const char *const polite[] = {"please", "can you", "could you", "now"};
    for (size_t k = 0; k < sizeof polite / sizeof *polite; k++)
        if (word_at(x->t, x->len, i, polite[k])) i = skip_sp(x->t, i + strlen(polite[k]), x->len);
    size_t v = 0;
    for (size_t k = 0; k < sizeof extract_verbs / sizeof *extract_verbs && !v; k++)
        if (word_at(x->t, x->len, i, extract_verbs[k])) v = i + strlen(extract_verbs[k]);
    if (!v) return ENG_OK;
    while (v < x->len && (x->t[v] == ',' || isspace((unsigned char)x->t[v]))) v++;
    static const char *const lead[] = {"all", "the", "only", "out", "following"};
    for (int again = 1; again;) {
        again = 0;
        for (size_t k = 0; k < sizeof lead / sizeof *lead; k++)
            if (word_at(x->t, x->len, v, lead[k])) { v = skip_sp(x->t, v + strlen(lead[k]), x->len); again = 1; }
    }
    size_t e = fields_end(x, v);
    int rc = try_fields(x, prompt, (span){v, e}, 1, "extract_fields", out);
    if (rc || out->kind) return rc;
    /* "... attributes ..., like a, b, c" / "including a, b" / "such as" /
     * "the following attributes: a, b".  Not when the instruction is about
     * each input ("attributes from each keyword, like ..."): the inputs are
     * the items then. */
    size_t line_end = v;
    while (line_end < x->len && x->t[line_end] != '\n') line_end++;
    static const char *const intro[] = {" like ", " including ", " such as ", " columns ", "example: ",
                                        "e.g. ", "e.g., ", "{", "[", ": "};
    for (size_t k = 0; k < sizeof intro / sizeof *intro; k++) {
        long p = pp_ci_find(x->t + v, line_end - v, intro[k]);
        if (p < 0) continue;
        if (intro[k][0] == ':' && !names_fields(x, v, v + (size_t)p)) continue;
        if (find_word(x->t, v, v + (size_t)p, "each") >= 0 || find_word(x->t, v, v + (size_t)p, "every") >= 0)
            continue;
        size_t a = v + (size_t)p + strlen(intro[k]);
        rc = try_fields(x, prompt, (span){a, fields_end(x, a)}, 1, "extract_fields", out);
        if (rc || out->kind) return rc;
    }
    return try_fields(x, prompt, (span){v, e}, 0, "extract_fields", out);
}

/* "for each of the following: a, b, c" and "...: a, b, c" after a task verb. */
static int comma_list(const text *x, const char *prompt, orc_pp_schema *out) {
    static const char *const cues[] = {"for each of the following", "for each of these", "for each",
                                       "for every", "each of the following"};
    for (size_t k = 0; k < sizeof cues / sizeof *cues; k++) {
        long p = pp_ci_find(x->t, x->len, cues[k]);
        if (p < 0) continue;
        const char *colon = memchr(x->t + p, ':', x->len - (size_t)p);
        if (!colon) continue;
        size_t a = (size_t)(colon - x->t) + 1, e = a;
        while (e < x->len && x->t[e] != '\n') e++;
        int rc = try_fields(x, prompt, trim_span(x, (span){a, e}), 1, "comma_list", out);
        if (rc || out->kind) return rc;
    }
    return ENG_OK;
}

/* ------------------------------------------------------------ generate N */
static const char *const gen_verbs[] = {
    "generate", "give", "write", "create", "list", "provide", "suggest", "produce", "compose",
    "draft", "propose", "brainstorm", "invent", "name", "come up with", "think of", "prepare",
    "make", "design", "craft", "devise", "recommend", "output",
};
static const char *const gen_fillers[] = {
    "me", "us", "you", "out", "exactly", "at", "least", "about", "around", "another", "more",
    "some", "the", "top", "a", "an", "list", "of", "up", "to", "with", "randomly",
};
static const char *const number_words[] = {
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
};
static const char *const not_things[] = {
    "word", "words", "character", "characters", "chars", "letters", "minute", "minutes", "second",
    "seconds", "hour", "hours", "day", "days", "year", "years", "times", "percent", "%", "kb", "mb",
    "dollars", "pages", "page", "paragraph", "tokens",
};

static int is_word(const char *t, size_t len, size_t i, const char *const *set, size_t n, size_t *end) {
    for (size_t k = 0; k < n; k++)
        if (word_at(t, len, i, set[k])) { *end = i + strlen(set[k]); return 1; }
    return 0;
}

/* Reads a count at i: "10", "2-3" (upper end), "10+", "five".  Returns the
 * count (0: none) and sets *end. */
static int read_count(const char *t, size_t len, size_t i, size_t *end) {
    if (i < len && isdigit((unsigned char)t[i])) {
        if (i > 0 && isalnum((unsigned char)t[i - 1])) return 0;
        size_t j = i;
        long v = 0;
        while (j < len && isdigit((unsigned char)t[j]) && j - i < 4) v = v * 10 + (t[j++] - '0');
        if (j < len && (isdigit((unsigned char)t[j]) || isalpha((unsigned char)t[j]))) return 0;
        if (j + 1 < len && t[j] == '-' && isdigit((unsigned char)t[j + 1])) {
            long w = 0;
            j++;
            while (j < len && isdigit((unsigned char)t[j]) && w < 10000) w = w * 10 + (t[j++] - '0');
            v = w;
        } else if (j < len && t[j] == '+') {
            j++;
        } else if (j < len && (t[j] == '.' || t[j] == ',') && j + 1 < len && isdigit((unsigned char)t[j + 1])) {
            return 0;   /* 2.5, 1,000 */
        }
        *end = j;
        return (int)(v > 100000 ? 100000 : v);
    }
    for (size_t k = 0; k < sizeof number_words / sizeof *number_words; k++)
        if (word_at(t, len, i, number_words[k])) { *end = i + strlen(number_words[k]); return (int)k + 2; }
    return 0;
}

/* A count inside one question of a list ("7) What can ...? please name 3
 * suggestions") belongs to that question, not to the prompt. */
static int inside_item(const text *x, size_t i) {
    int li = 0, q = 0;
    while (li + 1 < x->n_lines && x->line[li].b < i) li++;
    if (li > 0 && line_marker(x, x->line[li]).kind &&
        memchr(x->t + x->line[li].a, '?', x->line[li].b - x->line[li].a))
        return 1;
    for (int k = 0; k < x->n_lines; k++) q += ends_question(x, x->line[k]);
    return q >= 3 && ends_question(x, x->line[li]);
}

static int generate_n(const text *x, orc_pp_schema *out) {
    const char *t = x->t;
    for (size_t i = 0; i < x->len; i++) {
        size_t v;
        if (!is_word(t, x->len, i, gen_verbs, sizeof gen_verbs / sizeof *gen_verbs, &v)) continue;
        if (inside_item(x, i)) continue;
        size_t j = skip_sp(t, v, x->len), fe;
        int fill = 0, article = 0;
        while (fill < 4 && is_word(t, x->len, j, gen_fillers, sizeof gen_fillers / sizeof *gen_fillers, &fe)) {
            article = word_at(t, x->len, j, "a") || word_at(t, x->len, j, "an") || word_at(t, x->len, j, "the");
            j = skip_sp(t, fe, x->len);
            fill++;
        }
        if (article) continue;     /* "write a 3 paragraph essay": the number is an adjective */
        size_t ne;
        int n = read_count(t, x->len, j, &ne);
        if (n < 2 || n > ORC_PP_MAX_ITEMS) continue;
        size_t w = skip_sp(t, ne, x->len), we;
        if (w >= x->len || !(isalpha((unsigned char)t[w]) || (unsigned char)t[w] >= 0x80 || t[w] == '"')) continue;
        if (is_word(t, x->len, w, not_things, sizeof not_things / sizeof *not_things, &we)) continue;
        eng_buf tb = {0};
        eng_buf_add(&tb, t, j);
        eng_buf_adds(&tb, "{n}");
        eng_buf_add(&tb, t + ne, x->len - ne);
        out->tmpl = eng_buf_take(&tb);
        out->context = pp_strdup("");
        out->kind = ORC_PP_N;
        out->n = n;
        out->rule = "generate_n";
        return out->tmpl && out->context ? ENG_OK : ENG_ENOMEM;
    }
    return ENG_OK;
}

/* ------------------------------------------------------------ sentences */
/* "translate the following 3 sentences: A. B. C." -> one item per sentence
 * (or per line); the count, when given, must match. */
static int sentences(const text *x, const char *prompt, orc_pp_schema *out) {
    long p = find_word(x->t, 0, x->len, "following");
    if (p < 0) return ENG_OK;
    size_t i = skip_sp(x->t, (size_t)p + 9, x->len), ne = i;
    int want = read_count(x->t, x->len, i, &ne);
    i = skip_sp(x->t, ne, x->len);
    if (!word_at(x->t, x->len, i, "sentences") && !word_at(x->t, x->len, i, "phrases")) return ENG_OK;
    size_t a = context_start(x, i);
    span body = trim_span(x, (span){a, x->len});
    list l = {.rule = "sentences"};
    int nl = 0;
    for (size_t k = body.a; k < body.b; k++) nl += x->t[k] == '\n';
    size_t s = body.a;
    for (size_t k = body.a; k <= body.b; k++) {
        int end = k == body.b || x->t[k] == '\n' ||
                  (!nl && (x->t[k] == '.' || x->t[k] == '!' || x->t[k] == '?') &&
                   (k + 1 == body.b || x->t[k + 1] == ' '));
        if (!end) continue;
        size_t e = k < body.b && x->t[k] != '\n' ? k + 1 : k;
        span it = trim_span(x, (span){s, e});
        if (it.b > it.a) list_add(&l, it);
        s = k + 1;
    }
    if (l.n < 2 || l.over || (want && l.n != want)) return ENG_OK;
    l.whole = body;
    eng_buf tb = {0};
    eng_buf_add(&tb, x->t, body.a);
    eng_buf_adds(&tb, "{data}");
    out->tmpl = eng_buf_take(&tb);
    out->context = pp_strdup("");
    out->data = span_strings(x, l.item, l.n);
    out->n_data = l.n;
    out->kind = ORC_PP_DATA;
    out->rule = l.rule;
    if (!out->tmpl || !out->context || !out->data) return ENG_ENOMEM;
    if (orc_pp_check(out, prompt, NULL) != ENG_OK) orc_pp_schema_free(out);
    return ENG_OK;
}

/* ------------------------------------------------------------ entry points */
int orc_pp_detect(const char *prompt, orc_pp_schema *out, eng_err *err) {
    if (!prompt || !out) return eng_seterr(err, ENG_EINVAL, "orc_pp_detect: bad arguments");
    memset(out, 0, sizeof *out);
    text x = {0};
    char *t = pp_unescape(prompt);
    if (!t) return eng_seterr(err, ENG_ENOMEM, "orc_pp_detect: out of memory");
    x.t = t;
    x.len = strlen(t);
    int rc = split_lines(&x) ? ENG_ENOMEM : ENG_OK;
    if (!rc) rc = extract_fields(&x, prompt, out);
    if (!rc && !out->kind) rc = generate_n(&x, out);
    if (!rc && !out->kind) rc = list_rules(&x, prompt, out);
    if (!rc && !out->kind) rc = comma_list(&x, prompt, out);
    if (!rc && !out->kind) rc = sentences(&x, prompt, out);
    free(x.line);
    free(t);
    if (rc) {
        orc_pp_schema_free(out);
        return eng_seterr(err, rc, "orc_pp_detect: out of memory");
    }
    return ENG_OK;
}

int orc_pp_check(const orc_pp_schema *s, const char *prompt, eng_err *err) {
    if (!s || !prompt) return eng_seterr(err, ENG_EINVAL, "orc_pp_check: bad arguments");
    int rc = orc_pp_validate(s, err);
    if (rc) return rc;
    if (orc_pp_count(s) < 2)
        return eng_seterr(err, ENG_EFORMAT, "schema: %d subtask(s), need at least 2", orc_pp_count(s));
    if (s->kind != ORC_PP_DATA) return ENG_OK;
    char *p = orc_pp_norm(prompt);
    if (!p) return eng_seterr(err, ENG_ENOMEM, "orc_pp_check: out of memory");
    rc = ENG_OK;
    for (int i = 0; i < s->n_data && !rc; i++) {
        char *it = orc_pp_norm(s->data[i]);
        if (!it) rc = eng_seterr(err, ENG_ENOMEM, "orc_pp_check: out of memory");
        else if (!*it || !strstr(p, it))
            rc = eng_seterr(err, ENG_EFORMAT, "schema: field 'data': item %d does not appear in the prompt", i);
        free(it);
    }
    free(p);
    return rc;
}
