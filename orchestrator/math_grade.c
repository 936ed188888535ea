/* math_grade.c — answer extraction, normalisation and equivalence for MATH.
 *
 * Normalisation runs as a few linear passes over the string (unicode, macros,
 * units, spaces, structure, whole-string rules).  Comparison then works on the
 * normalised strings: equal strings, else structure (unions, matrices, sets,
 * tuples/intervals, lists, equations) element by element, else numbers.
 * Nothing here recurses without a depth limit, so hostile input cannot blow
 * the stack. */
#include "orc_math.h"
#include "eng.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_MAX_DEPTH 200   /* evaluator recursion (about 65 nested parens) */
#define CMP_MAX_DEPTH  8     /* nested structures: tuples in lists in ... */
#define MAX_UNORDERED  64    /* longer lists are compared in order */
#define CMP_BUDGET     200000 /* part comparisons per equiv call */
#define REL_TOL        1e-6
#define ABS_TOL        1e-12
#define N_PROBES       3     /* points at which variable expressions are compared */
#define PI_VAL         3.14159265358979323846

/* ------------------------------------------------------------ characters */

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alnum(char c) { return is_alpha(c) || is_digit(c); }
static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
static char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

/* Length of the LaTeX token starting at s[i] == '\\': a control word
 * ("\frac" -> 5), a control symbol ("\," -> 2) or a lone trailing "\" (1). */
static size_t macro_len(const char *s, size_t i, size_t n) {
    if (i + 1 >= n) return 1;
    if (!is_alpha(s[i + 1])) return 2;
    size_t j = i + 1;
    while (j < n && is_alpha(s[j])) j++;
    return j - i;
}

/* Length of the token at s[i]: one char, "\\" (a matrix row break) or a macro. */
static size_t tok_len(const char *s, size_t i, size_t n) {
    if (s[i] != '\\') return 1;
    if (i + 1 < n && s[i + 1] == '\\') return 2;
    return macro_len(s, i, n);
}

static int name_eq(const char *m, size_t len, const char *name) {
    return strlen(name) == len && memcmp(m, name, len) == 0;
}

static int in_list(const char *m, size_t len, const char *const *list) {
    for (; *list; list++)
        if (name_eq(m, len, *list)) return 1;
    return 0;
}

/* Bracket depth change of a token: ( [ { \{ open, ) ] } \} close. */
static int tok_delta(const char *t, size_t len) {
    if (len == 1) {
        switch (t[0]) {
        case '(': case '[': case '{': return 1;
        case ')': case ']': case '}': return -1;
        default: return 0;
        }
    }
    if (len == 2 && t[0] == '\\') {
        if (t[1] == '{') return 1;
        if (t[1] == '}') return -1;
    }
    return 0;
}

/* ------------------------------------------------------ pass 1: characters */

/* Unicode math symbols models sometimes print instead of LaTeX. */
static const struct { const char *utf8, *tex; } UNICODE_MAP[] = {
    {"\xcf\x80", "\\pi "},         {"\xe2\x88\x9e", "\\infty "},
    {"\xe2\x88\x92", "-"},         {"\xc3\x97", "\\times "},
    {"\xc2\xb7", "\\cdot "},       {"\xe2\x8b\x85", "\\cdot "},
    {"\xe2\x88\x9a", "\\sqrt "},   {"\xc2\xb0", ""},
    {"\xc2\xa0", " "},             {"\xe2\x89\xa4", "\\leq "},
    {"\xe2\x89\xa5", "\\geq "},    {"\xe2\x89\xa0", "\\neq "},
    {"\xc2\xb1", "\\pm "},         {"\xe2\x88\xaa", "\\cup "},
    {"\xc2\xbd", "\\frac{1}{2}"}, {"\xc2\xb2", "^2"},
    {"\xc2\xb3", "^3"},
};

static char *pass_chars(const char *s, size_t n) {
    eng_buf b = {0};
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if ((unsigned char)c >= 0x80) {
            size_t k, nm = sizeof UNICODE_MAP / sizeof UNICODE_MAP[0];
            for (k = 0; k < nm; k++) {
                size_t len = strlen(UNICODE_MAP[k].utf8);
                if (i + len <= n && memcmp(s + i, UNICODE_MAP[k].utf8, len) == 0) {
                    eng_buf_adds(&b, UNICODE_MAP[k].tex);
                    i += len;
                    break;
                }
            }
            if (k < nm) continue;
        }
        eng_buf_addc(&b, (is_space(c) || c == '~') ? ' ' : c);
        i++;
    }
    return eng_buf_take(&b);
}

/* ---------------------------------------------------------- pass 2: macros */

static const char *const DROP_MACROS[] = {
    "\\left", "\\right", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\bigl", "\\bigr",
    "\\Bigl", "\\Bigr", "\\biggl", "\\biggr", "\\displaystyle", "\\textstyle",
    "\\degree", "\\%", "\\$", NULL};
static const char *const SPACE_MACROS[] = {
    "\\!", "\\,", "\\;", "\\:", "\\>", "\\ ", "\\quad", "\\qquad", NULL};
/* Wrappers whose content is kept: \text{5 cm} -> " 5 cm ". */
static const char *const UNWRAP_MACROS[] = {
    "\\text", "\\textbf", "\\textit", "\\textrm", "\\textsf", "\\texttt",
    "\\textnormal", "\\mbox", "\\hbox", "\\mathrm", "\\mathbf", "\\mathit",
    "\\mathsf", "\\boxed", "\\fbox", NULL};
static const struct { const char *from, *to; } RENAMES[] = {
    {"\\dfrac", "\\frac"}, {"\\tfrac", "\\frac"}, {"\\lbrace", "\\{"},
    {"\\rbrace", "\\}"},   {"\\le", "\\leq"},     {"\\ge", "\\geq"},
    {"\\ne", "\\neq"},     {"\\leqslant", "\\leq"}, {"\\geqslant", "\\geq"},
    {"\\varnothing", "\\emptyset"}, {"\\dots", "\\ldots"},
};

static const char *rename_of(const char *m, size_t len) {
    for (size_t k = 0; k < sizeof RENAMES / sizeof RENAMES[0]; k++)
        if (name_eq(m, len, RENAMES[k].from)) return RENAMES[k].to;
    return NULL;
}

/* Drops sizing / spacing macros, $ and %, renames synonyms and unwraps
 * \text-like groups.  A stack of the open braces remembers which '}' closes
 * an unwrapped group; it holds at most n entries. */
static char *pass_macros(const char *s, size_t n) {
    char *stack = malloc(n + 1);
    if (!stack) return NULL;
    size_t sp = 0, i = 0;
    eng_buf b = {0};
    while (i < n && !b.oom) {
        char c = s[i];
        if (c == '\\') {
            size_t len = macro_len(s, i, n);
            const char *m = s + i;
            if (len == 2 && m[1] == '\\') {
                eng_buf_add(&b, m, 2);
                i += 2;
            } else if (in_list(m, len, DROP_MACROS)) {
                int delim = name_eq(m, len, "\\left") || name_eq(m, len, "\\right");
                i += len;
                if (delim && i < n && s[i] == '.') i++;   /* \left. is "no delimiter" */
            } else if (in_list(m, len, SPACE_MACROS)) {
                eng_buf_addc(&b, ' ');
                i += len;
            } else if (in_list(m, len, UNWRAP_MACROS)) {
                size_t j = i + len;
                while (j < n && s[j] == ' ') j++;
                eng_buf_addc(&b, ' ');
                if (j < n && s[j] == '{') { stack[sp++] = 'U'; i = j + 1; }
                else i += len;
            } else {
                const char *to = rename_of(m, len);
                if (to) eng_buf_adds(&b, to); else eng_buf_add(&b, m, len);
                i += len;
            }
        } else if (c == '$' || c == '%') {
            i++;
        } else if (c == '{' && i + 2 < n && s[i + 1] == ',' && s[i + 2] == '}') {
            eng_buf_addc(&b, ',');                       /* 1{,}000 */
            i += 3;
        } else if (c == '{') {
            stack[sp++] = 'K';
            eng_buf_addc(&b, '{');
            i++;
        } else if (c == '}') {
            if (sp && stack[--sp] == 'U') eng_buf_addc(&b, ' ');
            else eng_buf_addc(&b, '}');
            i++;
        } else {
            eng_buf_addc(&b, c);
            i++;
        }
    }
    free(stack);
    return eng_buf_take(&b);
}

/* ------------------------------------------------- pass 3: words and units */

/* Length of the standalone word "and" or "or" at s[i], else 0. */
static size_t joiner_at(const char *s, size_t i, size_t n) {
    if (i > 0 && (is_alpha(s[i - 1]) || s[i - 1] == '\\')) return 0;
    size_t len = (i + 3 <= n && memcmp(s + i, "and", 3) == 0) ? 3
               : (i + 2 <= n && memcmp(s + i, "or", 2) == 0) ? 2 : 0;
    return (len && (i + len == n || !is_alpha(s[i + len]))) ? len : 0;
}

/* "3 and 5", "x=3 or x=5": the joining word becomes a comma. */
static char *pass_and(const char *s, size_t n) {
    eng_buf b = {0};
    for (size_t i = 0; i < n;) {
        size_t len = joiner_at(s, i, n);
        eng_buf_addc(&b, len ? ',' : s[i]);
        i += len ? len : 1;
    }
    return eng_buf_take(&b);
}

/* Unit words dropped after a number.  One-letter units ("m", "g", "s") are
 * left out on purpose: "3m" is more often an expression than 3 metres. */
static const char *const UNITS[] = {
    "cm", "mm", "km", "meter", "meters", "metre", "metres", "centimeter",
    "centimeters", "millimeter", "millimeters", "kilometer", "kilometers",
    "inch", "inches", "ft", "foot", "feet", "yard", "yards", "yd", "mile",
    "miles", "mph", "kg", "gram", "grams", "gm", "pound", "pounds", "lb", "lbs",
    "ounce", "ounces", "oz", "liter", "liters", "litre", "litres", "ml",
    "gallon", "gallons", "degree", "degrees", "deg", "radian", "radians",
    "unit", "units", "sq", "square", "cubic", "dollar", "dollars", "cent",
    "cents", "second", "seconds", "sec", "minute", "minutes", "min", "mins",
    "hour", "hours", "hr", "hrs", "day", "days", "week", "weeks", "month",
    "months", "year", "years", "way", "ways", "student", "students", "people",
    "person", "persons", "point", "points", "digit", "digits", "integer",
    "integers", "times", "meal", "meals", "edge", "edges", "tile", "tiles",
    "marble", "marbles", "book", "books", "page", "pages", "percent", NULL};

static int is_unit(const char *w, size_t len) {
    char low[16];
    if (len >= sizeof low) return 0;
    for (size_t k = 0; k < len; k++) low[k] = to_lower(w[k]);
    return in_list(low, len, UNITS);
}

/* Index just before a trailing "^2", "^{2}", "^3" or "^{3}" (and spaces). */
static size_t before_power(const char *s, size_t e) {
    if (e >= 2 && s[e - 2] == '^' && (s[e - 1] == '2' || s[e - 1] == '3')) e -= 2;
    else if (e >= 4 && s[e - 4] == '^' && s[e - 3] == '{' &&
             (s[e - 2] == '2' || s[e - 2] == '3') && s[e - 1] == '}') e -= 4;
    while (e && s[e - 1] == ' ') e--;
    return e;
}

/* Cuts trailing unit words ("5 square feet", "15 cm^2") when what is left
 * ends like a number. */
static void strip_units(char *s) {
    size_t end = strlen(s);
    int found = 0;
    for (int iter = 0; iter < 4; iter++) {
        size_t e = end;
        while (e && (s[e - 1] == ' ' || s[e - 1] == '.')) e--;
        e = before_power(s, e);
        size_t w = e;
        while (w && is_alpha(s[w - 1])) w--;
        if (w == e || (w && s[w - 1] == '\\') || !is_unit(s + w, e - w)) break;
        end = w;
        found = 1;
    }
    if (!found) return;
    while (end && s[end - 1] == ' ') end--;
    if (!end) return;
    char c = s[end - 1];
    if (is_digit(c) || c == '}' || c == ')' ||
        (end >= 3 && memcmp(s + end - 3, "\\pi", 3) == 0))
        s[end] = 0;
}

/* ---------------------------------------------------------- pass 4: spaces */

/* Does out end with a control word ("\cot")?  Then a following letter needs
 * a space to stay a separate token. */
static int ends_with_macro(const char *p, size_t n) {
    size_t k = n;
    while (k && is_alpha(p[k - 1])) k--;
    return k < n && k > 0 && p[k - 1] == '\\';
}

/* Removes every space except one between a control word and a letter
 * ("\pi r"); also collapses ",," left by "and" after a comma. */
static char *pass_spaces(const char *s, size_t n) {
    eng_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ') {
            size_t j = i;
            while (j < n && s[j] == ' ') j++;
            if (j < n && is_alpha(s[j]) && b.p && ends_with_macro(b.p, b.n)) eng_buf_addc(&b, ' ');
            i = j - 1;
            continue;
        }
        if (c == ',' && b.n && b.p[b.n - 1] == ',') continue;
        eng_buf_addc(&b, c);
    }
    return eng_buf_take(&b);
}

/* ------------------------------------------------------- pass 5: structure */

/* match[i] = index of the '}' closing the '{' at i, or SIZE_MAX. */
static size_t *brace_matches(const char *s, size_t n) {
    size_t *m = malloc((n + 1) * sizeof *m), *st = malloc((n + 1) * sizeof *st), sp = 0;
    if (!m || !st) { free(m); free(st); return NULL; }
    for (size_t i = 0; i < n; i++) {
        m[i] = SIZE_MAX;
        if (s[i] == '\\') {
            if (i + 1 < n) m[++i] = SIZE_MAX;     /* \{ and \} are not groups */
        } else if (s[i] == '{') {
            st[sp++] = i;
        } else if (s[i] == '}' && sp) {
            m[st[--sp]] = i;
        }
    }
    m[n] = SIZE_MAX;
    free(st);
    return m;
}

static void want_arg(unsigned char *fix, size_t at, int k) {
    if (fix[at] < k) fix[at] = (unsigned char)k;
}

/* Braces a bare macro argument at s[i] ("\frac12" -> "\frac{1}{2}",
 * "\sqrt2", "x^2", "52_8").  k = arguments still to check from here.
 * Returns the index to continue from. */
static size_t fix_arg(const char *s, size_t n, size_t i, int k, const size_t *m,
                      unsigned char *fix, eng_buf *b) {
    size_t j = i;
    while (j < n && s[j] == ' ') j++;
    if (j >= n) return i;
    if (s[j] == '{') {
        if (k > 1 && m[j] != SIZE_MAX) want_arg(fix, m[j] + 1, k - 1);
        return j;
    }
    size_t len = 0;
    if (is_alnum(s[j])) len = 1;
    else if (s[j] == '\\' && j + 1 < n && is_alpha(s[j + 1])) len = macro_len(s, j, n);
    if (!len) return i;
    eng_buf_addc(b, '{');
    eng_buf_add(b, s + j, len);
    eng_buf_addc(b, '}');
    if (k > 1) want_arg(fix, j + len, k - 1);
    return j + len;
}

/* Braces shorthand arguments, drops ^\circ and writes ".5" as "0.5".
 * fix[i] > 0 marks where a macro argument starts. */
static char *pass_struct(const char *s, size_t n) {
    size_t *m = brace_matches(s, n);
    unsigned char *fix = calloc(n + 1, 1);
    if (!m || !fix) { free(m); free(fix); return NULL; }
    eng_buf b = {0};
    size_t i = 0;
    while (i < n && !b.oom) {
        if (fix[i]) {
            size_t j = fix_arg(s, n, i, fix[i], m, fix, &b);
            if (j != i) { i = j; continue; }
        }
        char c = s[i];
        if (c == '\\') {
            size_t len = tok_len(s, i, n);
            eng_buf_add(&b, s + i, len);
            if (name_eq(s + i, len, "\\frac")) {
                want_arg(fix, i + len, 2);
            } else if (name_eq(s + i, len, "\\sqrt")) {
                size_t j = i + len, close = 0;
                if (j < n && s[j] == '[')             /* \sqrt[3]{x}: skip the index */
                    for (size_t t = j + 1; t < n && t < j + 64; t++)
                        if (s[t] == ']') { close = t; break; }
                want_arg(fix, close ? close + 1 : j, 1);
            }
            i += len;
        } else if (c == '^' && i + 6 <= n && memcmp(s + i, "^\\circ", 6) == 0 &&
                   (i + 6 == n || !is_alpha(s[i + 6]))) {
            i += 6;
        } else if (c == '^' && i + 8 <= n && memcmp(s + i, "^{\\circ}", 8) == 0) {
            i += 8;
        } else if (c == '^' || c == '_') {
            eng_buf_addc(&b, c);
            i++;
            want_arg(fix, i, 1);
        } else if (c == '.' && i + 1 < n && is_digit(s[i + 1]) &&
                   (b.n == 0 || !is_digit(b.p[b.n - 1]))) {
            eng_buf_adds(&b, "0.");
            i++;
        } else {
            eng_buf_addc(&b, c);
            i++;
        }
    }
    free(m);
    free(fix);
    return eng_buf_take(&b);
}

/* ---------------------------------------------------- whole-string rules */

static void trim_end(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '.')) s[--n] = 0;
}

/* "1,000" / "-12,345.5" -> digits only; "(1,000)" and "1,2" are untouched. */
static void drop_thousands(char *s) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    int d = 0;
    while (is_digit(*p)) { p++; d++; }
    if (d < 1 || d > 3 || *p != ',') return;
    while (*p == ',') {
        p++;
        for (int k = 0; k < 3; k++, p++)
            if (!is_digit(*p)) return;
    }
    if (*p == '.') {
        p++;
        if (!is_digit(*p)) return;
        while (is_digit(*p)) p++;
    }
    if (*p) return;
    char *w = s;
    for (const char *r = s; *r; r++)
        if (*r != ',') *w++ = *r;
    *w = 0;
}

/* A variable name: "x", "x_{1}", "x_1" or a control word such as "\theta". */
static int is_var_name(const char *s, size_t n) {
    if (n == 0) return 0;
    if (s[0] == '\\') return macro_len(s, 0, n) == n && n > 2;
    if (!is_alpha(s[0])) return 0;
    if (n == 1) return 1;
    if (s[1] != '_' || n < 3) return 0;
    if (n == 3) return is_alnum(s[2]);
    if (s[2] != '{' || s[n - 1] != '}') return 0;
    for (size_t k = 3; k + 1 < n; k++)
        if (!is_alnum(s[k])) return 0;
    return n > 4;
}

static int eval_const(const char *s, double *out);

/* Top-level '=' positions: returns how many, first one in *at. */
static int count_top_eq(const char *s, size_t n, size_t *at) {
    int depth = 0, cnt = 0;
    for (size_t i = 0; i < n;) {
        size_t len = tok_len(s, i, n);
        depth += tok_delta(s + i, len);
        if (depth == 0 && len == 1 && s[i] == '=') {
            if (!cnt) *at = i;
            cnt++;
        }
        i += len;
    }
    return cnt;
}

/* "x\in[-2,7]" -> "[-2,7]"; "x=5" -> "5" when the right side is a number. */
static void strip_var_prefix(char *s) {
    size_t n = strlen(s), at = 0;
    if (n > 4 && is_alpha(s[0]) && s[1] == '\\' && macro_len(s, 1, n) == 3 &&
        memcmp(s + 1, "\\in", 3) == 0) {
        memmove(s, s + 4, n - 4 + 1);
        return;
    }
    double v;
    if (count_top_eq(s, n, &at) == 1 && is_var_name(s, at) && s[at + 1] &&
        eval_const(s + at + 1, &v))
        memmove(s, s + at + 1, n - at);
}

/* "(C)" -> "C": a multiple-choice letter. */
static void strip_choice(char *s) {
    if (s[0] == '(' && s[1] >= 'A' && s[1] <= 'Z' && s[2] == ')' && !s[3]) {
        s[0] = s[1];
        s[1] = 0;
    }
}

typedef char *(*pass_fn)(const char *s, size_t n);

/* Runs pass f over *s, replacing it; 0 when out of memory. */
static int run_pass(char **s, pass_fn f) {
    char *r = f(*s, strlen(*s));
    free(*s);
    *s = r;
    return r != NULL;
}

char *orc_math_normalize(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    if (n > ORC_MATH_MAX_LEN) return NULL;
    char *t = pass_chars(s, n);
    if (!t || !run_pass(&t, pass_macros) || !run_pass(&t, pass_and)) return NULL;
    strip_units(t);
    if (!run_pass(&t, pass_spaces) || !run_pass(&t, pass_struct)) return NULL;
    trim_end(t);
    drop_thousands(t);
    strip_var_prefix(t);
    strip_choice(t);
    return t;
}

/* -------------------------------------------------------------- evaluator */

typedef struct {
    const char *s;
    size_t i, n;
    int depth, bad;
    const double *vars;         /* 52 values for a-z A-Z, or NULL: no letters */
    unsigned long long used;    /* one bit per letter read */
} ev_t;

static double ev_expr(ev_t *e);
static double ev_power(ev_t *e);

static double ev_fail(ev_t *e) { e->bad = 1; return 0; }
static void ev_ws(ev_t *e) { while (e->i < e->n && e->s[e->i] == ' ') e->i++; }
static int ev_at(ev_t *e, char c) { ev_ws(e); return e->i < e->n && e->s[e->i] == c; }

/* Length of the control word at the cursor if it is name, else 0. */
static size_t ev_macro(ev_t *e, const char *name) {
    ev_ws(e);
    if (e->i >= e->n || e->s[e->i] != '\\') return 0;
    size_t len = macro_len(e->s, e->i, e->n);
    return name_eq(e->s + e->i, len, name) ? len : 0;
}

static int ev_enter(ev_t *e) {
    if (++e->depth > EVAL_MAX_DEPTH) { e->bad = 1; return 0; }
    return 1;
}

static double ev_group(ev_t *e, char open, char close) {
    if (!ev_at(e, open)) return ev_fail(e);
    e->i++;
    double v = ev_expr(e);
    if (e->bad || !ev_at(e, close)) return ev_fail(e);
    e->i++;
    return v;
}

/* Digits with an optional decimal part; no exponent, no "inf" or hex. */
static double ev_number(ev_t *e, int *is_int) {
    double v = 0, scale = 1;
    int frac = 0;
    size_t start = e->i;
    *is_int = 1;
    while (e->i < e->n) {
        char c = e->s[e->i];
        if (is_digit(c)) {
            if (frac) { scale /= 10; v += (c - '0') * scale; }
            else v = v * 10 + (c - '0');
            e->i++;
        } else if (c == '.' && !frac && e->i + 1 < e->n && is_digit(e->s[e->i + 1])) {
            frac = 1;
            *is_int = 0;
            e->i++;
        } else {
            break;
        }
    }
    return e->i == start ? ev_fail(e) : v;
}

/* "{123}" at p[*k]: reads the integer and moves *k past it. */
static int brace_int(const char *p, size_t left, size_t *k, double *out) {
    size_t j = *k;
    if (j >= left || p[j] != '{') return 0;
    j++;
    double v = 0;
    size_t d0 = j;
    while (j < left && is_digit(p[j])) v = v * 10 + (p[j++] - '0');
    if (j == d0 || j >= left || p[j] != '}') return 0;
    *k = j + 1;
    *out = v;
    return 1;
}

/* After an integer: "\frac{4}{5}" with integer parts makes a mixed number
 * (1\frac{4}{5} = 9/5), as MATH writes them. */
static int ev_mixed(ev_t *e, double *add) {
    const char *p = e->s + e->i;
    size_t left = e->n - e->i, k = 5;
    double num, den;
    if (left < 5 || memcmp(p, "\\frac", 5) != 0 || (left > 5 && is_alpha(p[5]))) return 0;
    if (!brace_int(p, left, &k, &num) || !brace_int(p, left, &k, &den) || den == 0) return 0;
    e->i += k;
    *add = num / den;
    return 1;
}

static double ev_root(ev_t *e, double x, double k) {
    if (e->bad) return 0;
    if (k == 2) return x < 0 ? ev_fail(e) : sqrt(x);
    if (k <= 0 || k != floor(k) || k > 1000) return ev_fail(e);
    if (x < 0) return fmod(k, 2) == 1 ? -pow(-x, 1 / k) : ev_fail(e);
    return pow(x, 1 / k);
}

static double ev_macro_primary(ev_t *e) {
    size_t len;
    if ((len = ev_macro(e, "\\pi"))) { e->i += len; return PI_VAL; }
    if ((len = ev_macro(e, "\\frac"))) {
        e->i += len;
        double a = ev_group(e, '{', '}'), b = ev_group(e, '{', '}');
        if (e->bad || b == 0) return ev_fail(e);
        return a / b;
    }
    if ((len = ev_macro(e, "\\sqrt"))) {
        e->i += len;
        double k = ev_at(e, '[') ? ev_group(e, '[', ']') : 2;
        double x = ev_at(e, '(') ? ev_group(e, '(', ')') : ev_group(e, '{', '}');
        return ev_root(e, x, k);
    }
    return ev_fail(e);
}

/* A letter run: "pi", or one variable when vars are given. */
static double ev_letters(ev_t *e) {
    size_t j = e->i;
    while (j < e->n && is_alpha(e->s[j])) j++;
    if (j - e->i == 2 && e->s[e->i] == 'p' && e->s[e->i + 1] == 'i') { e->i = j; return PI_VAL; }
    if (j - e->i != 1 || !e->vars) return ev_fail(e);
    char c = e->s[e->i];
    int k = (c >= 'a') ? c - 'a' : 26 + (c - 'A');
    e->used |= 1ull << k;
    e->i = j;
    return e->vars[k];
}

static double ev_primary(ev_t *e) {
    ev_ws(e);
    if (e->i >= e->n) return ev_fail(e);
    char c = e->s[e->i];
    if (is_digit(c) || c == '.') {
        int is_int;
        double v = ev_number(e, &is_int), add;
        if (!e->bad && is_int && ev_mixed(e, &add)) v += add;
        return v;
    }
    if (c == '(') return ev_group(e, '(', ')');
    if (c == '{') return ev_group(e, '{', '}');
    if (c == '\\') return ev_macro_primary(e);
    if (is_alpha(c)) return ev_letters(e);
    return ev_fail(e);
}

static double ev_factorial(ev_t *e, double v) {
    if (v < 0 || v > 170 || v != floor(v)) return ev_fail(e);
    double r = 1;
    for (int k = 2; k <= (int)v; k++) r *= k;
    return r;
}

/* primary, then any number of ^exponent and ! */
static double ev_power(ev_t *e) {
    if (!ev_enter(e)) return 0;
    double v = ev_primary(e);
    while (!e->bad) {
        if (ev_at(e, '!')) {
            e->i++;
            v = ev_factorial(e, v);
        } else if (ev_at(e, '^')) {
            e->i++;
            double x = ev_at(e, '{') ? ev_group(e, '{', '}') : ev_primary(e);
            v = pow(v, x);
        } else {
            break;
        }
    }
    e->depth--;
    return v;
}

static double ev_unary(ev_t *e) {
    if (!ev_enter(e)) return 0;
    double v;
    if (ev_at(e, '-')) { e->i++; v = -ev_unary(e); }
    else if (ev_at(e, '+')) { e->i++; v = ev_unary(e); }
    else v = ev_power(e);
    e->depth--;
    return v;
}

/* Can an implicit product continue here ("3\sqrt{2}", "2(x+1)", "2x")? */
static int ev_starts_operand(ev_t *e) {
    ev_ws(e);
    if (e->i >= e->n) return 0;
    char c = e->s[e->i];
    if (is_digit(c) || c == '.' || c == '(' || c == '{' || is_alpha(c)) return 1;
    return ev_macro(e, "\\frac") || ev_macro(e, "\\sqrt") || ev_macro(e, "\\pi");
}

static double ev_term(ev_t *e) {
    double v = ev_unary(e);
    size_t len = 0;
    while (!e->bad) {
        if (ev_at(e, '*')) { e->i++; v *= ev_unary(e); }
        else if ((len = ev_macro(e, "\\cdot")) || (len = ev_macro(e, "\\times"))) {
            e->i += len;
            v *= ev_unary(e);
        } else if (ev_at(e, '/') || (len = ev_macro(e, "\\div"))) {
            e->i += ev_at(e, '/') ? 1 : len;
            double d = ev_unary(e);
            if (d == 0) return ev_fail(e);
            v /= d;
        } else if (ev_starts_operand(e)) {
            v *= ev_power(e);
        } else {
            break;
        }
    }
    return v;
}

static double ev_expr(ev_t *e) {
    if (!ev_enter(e)) return 0;
    double v = ev_term(e);
    while (!e->bad) {
        if (ev_at(e, '+')) { e->i++; v += ev_term(e); }
        else if (ev_at(e, '-')) { e->i++; v -= ev_term(e); }
        else break;
    }
    e->depth--;
    return v;
}

/* Evaluates a normalised string; vars may be NULL.  *used gets the letters read. */
static int eval_str(const char *s, const double *vars, double *out, unsigned long long *used) {
    ev_t e = {.s = s, .n = strlen(s), .vars = vars};
    double v = ev_expr(&e);
    ev_ws(&e);
    if (e.bad || e.i != e.n || !isfinite(v)) return 0;
    *out = v;
    if (used) *used = e.used;
    return 1;
}

static int eval_const(const char *s, double *out) { return eval_str(s, NULL, out, NULL); }

int orc_math_eval(const char *s, double *out) {
    char *t = orc_math_normalize(s);
    double v;
    int ok = t && *t && eval_const(t, &v);
    free(t);
    if (ok && out) *out = v;
    return ok;
}

/* ------------------------------------------------------------- comparing */

static int close_enough(double x, double y) {
    if (x == y) return 1;
    double d = fabs(x - y);
    return d <= REL_TOL * fmax(fabs(x), fabs(y)) || d <= ABS_TOL;
}

/* Fixed, irrational-looking points in [0.5, 2.5) for each letter. */
static void probe_values(int p, double *v) {
    for (int k = 0; k < 52; k++)
        v[k] = 0.5 + 2.0 * fmod((k + 1) * 0.7548776662466927 + (p + 1) * 0.5698402909980532, 1.0);
}

/* Both sides are expressions in the same letters and agree at every probe. */
static int probe_eq(const char *a, const char *b) {
    double vars[52], x, y;
    unsigned long long ua, ub;
    for (int p = 0; p < N_PROBES; p++) {
        probe_values(p, vars);
        if (!eval_str(a, vars, &x, &ua) || !eval_str(b, vars, &y, &ub)) return 0;
        if (ua != ub || ua == 0 || !close_enough(x, y)) return 0;
    }
    return 1;
}

/* Digits of an integer literal without sign and leading zeros; NULL if s is
 * not one.  *neg gets the sign. */
static const char *int_digits(const char *s, int *neg) {
    *neg = *s == '-';
    if (*s == '-' || *s == '+') s++;
    if (!*s) return NULL;
    for (const char *p = s; *p; p++)
        if (!is_digit(*p)) return NULL;
    while (*s == '0' && s[1]) s++;
    return s;
}

static int scalar_eq(const char *a, const char *b) {
    int nega, negb;
    const char *da = int_digits(a, &nega), *db = int_digits(b, &negb);
    if (da && db)          /* integers are exact: 1000000 is not 1000001 */
        return strcmp(da, db) == 0 && (nega == negb || strcmp(da, "0") == 0);
    double x, y;
    int ka = eval_const(a, &x), kb = eval_const(b, &y);
    if (ka && kb) return close_enough(x, y);
    if (ka || kb) return 0;
    return probe_eq(a, b);
}

typedef struct { const char *p; size_t n; } span;

/* Splits s[0..n) at top-level tokens equal to sep (",", "=", "&", "\\\\",
 * "\\cup").  Returns the number of parts (>= 1) with a malloc'd array in
 * *out, or 0 with *out NULL when out of memory. */
static size_t split_top(const char *s, size_t n, const char *sep, span **out) {
    size_t cnt = 1, seplen = strlen(sep);
    int depth = 0;
    for (size_t i = 0; i < n;) {
        size_t len = tok_len(s, i, n);
        depth += tok_delta(s + i, len);
        if (depth == 0 && name_eq(s + i, len, sep)) cnt++;
        i += len;
    }
    span *v = malloc(cnt * sizeof *v);
    *out = v;
    if (!v) return 0;
    size_t k = 0, start = 0;
    depth = 0;
    for (size_t i = 0; i < n;) {
        size_t len = tok_len(s, i, n);
        depth += tok_delta(s + i, len);
        if (depth == 0 && name_eq(s + i, len, sep)) {
            v[k++] = (span){s + start, i - start};
            start = i + seplen;
        }
        i += len;
    }
    v[k++] = (span){s + start, n - start};
    return k;
}

/* If s[0..n) is one bracketed group — "(..)", "[..)", "\{..\}" — gives its
 * open and close tokens and the inside. */
static int group_of(const char *s, size_t n, span *open, span *close, span *inner) {
    if (!n) return 0;
    size_t first = tok_len(s, 0, n);
    if (tok_delta(s, first) != 1) return 0;
    int depth = 0;
    for (size_t i = 0; i < n;) {
        size_t len = tok_len(s, i, n);
        depth += tok_delta(s + i, len);
        if (depth == 0) {
            if (i + len != n) return 0;
            *open = (span){s, first};
            *close = (span){s + i, len};
            *inner = (span){s + first, i - first};
            return 1;
        }
        i += len;
    }
    return 0;
}

/* One comparison's options and work budget: nested unordered lists could
 * otherwise multiply into a very long run on hostile input. */
typedef struct { int unordered; long budget; } cmp_ctx;

static int eq_rec(const char *a, const char *b, cmp_ctx *c, int depth);

/* Compares two parts after normalising each on its own ("x=1" -> "1"). */
static int eq_span(span x, span y, cmp_ctx *c, int depth) {
    if (c->budget <= 0) return 0;
    c->budget--;
    char *xs = strndup(x.p, x.n), *ys = strndup(y.p, y.n);
    char *xn = xs ? orc_math_normalize(xs) : NULL, *yn = ys ? orc_math_normalize(ys) : NULL;
    int r = xn && yn && *xn && *yn && eq_rec(xn, yn, c, depth + 1);
    free(xs); free(ys); free(xn); free(yn);
    return r;
}

static int eq_lists(const span *a, size_t na, const span *b, size_t nb, int unordered,
                    cmp_ctx *c, int depth) {
    if (na != nb) return 0;
    if (!unordered || na > MAX_UNORDERED) {
        for (size_t i = 0; i < na; i++)
            if (!eq_span(a[i], b[i], c, depth)) return 0;
        return 1;
    }
    char used[MAX_UNORDERED] = {0};
    for (size_t i = 0; i < na; i++) {
        size_t j;
        for (j = 0; j < nb; j++)
            if (!used[j] && eq_span(a[i], b[j], c, depth)) break;
        if (j == nb) return 0;
        used[j] = 1;
    }
    return 1;
}

/* Where the only "\pm" of a part is, or SIZE_MAX when it has none or several. */
static size_t pm_at(span x) {
    size_t at = SIZE_MAX;
    int cnt = 0;
    for (size_t i = 0; i < x.n;) {
        size_t len = tok_len(x.p, i, x.n);
        if (name_eq(x.p + i, len, "\\pm")) { at = i; cnt++; }
        i += len;
    }
    return cnt == 1 ? at : SIZE_MAX;
}

/* Parts with one "\pm" become two: "1\pm\sqrt{5}" -> "1+\sqrt{5}", "1-\sqrt{5}".
 * The new strings live in *store, which the caller frees with *out.
 * Returns the new count; 0 when out of memory. */
static size_t expand_pm(const span *in, size_t k, span **out, char **store) {
    size_t extra = 0, total = 1, m = 0, used = 0;
    for (size_t i = 0; i < k; i++)
        if (pm_at(in[i]) != SIZE_MAX) { extra++; total += 2 * in[i].n; }
    *out = malloc((k + extra) * sizeof **out);
    *store = malloc(total);
    if (!*out || !*store) return 0;
    for (size_t i = 0; i < k; i++) {
        size_t at = pm_at(in[i]), len = in[i].n;
        if (at == SIZE_MAX) { (*out)[m++] = in[i]; continue; }
        for (int sign = 0; sign < 2; sign++) {
            char *d = *store + used;
            memcpy(d, in[i].p, at);
            d[at] = sign ? '-' : '+';
            memcpy(d + at + 1, in[i].p + at + 3, len - at - 3);
            (*out)[m++] = (span){d, len - 2};
            used += len - 2;
        }
    }
    return m;
}

/* Lists compared after expanding "\pm" parts, as multisets (a \pm names two
 * values in no order).  -1 when neither side has one. */
static int eq_lists_pm(const span *a, size_t na, const span *b, size_t nb, cmp_ctx *c, int depth) {
    int has = 0;
    for (size_t i = 0; i < na; i++) has |= pm_at(a[i]) != SIZE_MAX;
    for (size_t i = 0; i < nb; i++) has |= pm_at(b[i]) != SIZE_MAX;
    if (!has) return -1;
    span *ea, *eb;
    char *sa, *sb;
    size_t ka = expand_pm(a, na, &ea, &sa), kb = expand_pm(b, nb, &eb, &sb);
    int r = ka && kb && eq_lists(ea, ka, eb, kb, 1, c, depth);
    free(ea); free(sa); free(eb); free(sb);
    return r;
}

/* Both split at sep and compared part by part; -1 when neither side splits. */
static int cmp_split(span a, span b, const char *sep, int unordered,
                     cmp_ctx *c, int depth) {
    span *pa, *pb;
    size_t ka = split_top(a.p, a.n, sep, &pa), kb = split_top(b.p, b.n, sep, &pb);
    int r;
    if (!pa || !pb) r = 0;
    else if (ka <= 1 && kb <= 1) r = -1;
    else r = eq_lists(pa, ka, pb, kb, unordered, c, depth) ||
             eq_lists_pm(pa, ka, pb, kb, c, depth) == 1;
    free(pa);
    free(pb);
    return r;
}

/* "\begin{pmatrix}...\end{pmatrix}": gives the family and the body. */
static int matrix_of(const char *s, span *body, int *family) {
    static const char *const ROUND[] = {"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", NULL};
    static const char *const BARS[] = {"vmatrix", "Vmatrix", NULL};
    size_t n = strlen(s);
    if (strncmp(s, "\\begin{", 7) != 0) return 0;
    const char *name = s + 7, *end = strchr(name, '}');
    if (!end) return 0;
    size_t len = (size_t)(end - name);
    if (in_list(name, len, ROUND)) *family = 1;
    else if (in_list(name, len, BARS)) *family = 2 + (name[0] == 'V');
    else return 0;
    size_t tail = 6 + len;                       /* "\end{" + name + "}" */
    size_t head = 8 + len;                       /* "\begin{" + name + "}" */
    if (n < head + tail) return 0;
    const char *t = s + n - tail;
    if (strncmp(t, "\\end{", 5) != 0 || memcmp(t + 5, name, len) != 0 || t[5 + len] != '}') return 0;
    *body = (span){s + head, n - head - tail};
    return 1;
}

/* Rows of a matrix body (a trailing empty row from a final "\\" is dropped). */
static size_t matrix_rows(span body, span **rows) {
    size_t k = split_top(body.p, body.n, "\\\\", rows);
    if (k > 1 && (*rows)[k - 1].n == 0) k--;
    return k;
}

static int cmp_matrix(const char *a, const char *b, cmp_ctx *c, int depth) {
    span ba, bb;
    int fa = 0, fb = 0, ma = matrix_of(a, &ba, &fa), mb = matrix_of(b, &bb, &fb);
    if (!ma && !mb) return -1;
    if (!ma || !mb || fa != fb) return 0;
    span *ra, *rb;
    size_t ka = matrix_rows(ba, &ra), kb = matrix_rows(bb, &rb);
    int r = ra && rb && ka == kb;
    for (size_t i = 0; r && i < ka; i++) {
        r = cmp_split(ra[i], rb[i], "&", 0, c, depth);
        if (r < 0) r = eq_span(ra[i], rb[i], c, depth);   /* one cell per row */
    }
    free(ra);
    free(rb);
    return r;
}

/* "\{a,b\}" as a set: inside; a bare "a,b" may stand for the other side's set. */
static int set_of(const char *s, span *inner) {
    span op, cl;
    return group_of(s, strlen(s), &op, &cl, inner) && op.n == 2 && op.p[1] == '{';
}

static int cmp_set(const char *a, const char *b, cmp_ctx *c, int depth) {
    span ia = {a, strlen(a)}, ib = {b, strlen(b)};
    int sa = set_of(a, &ia), sb = set_of(b, &ib);
    if (!sa && !sb) return -1;
    span *pa, *pb;
    size_t ka = split_top(ia.p, ia.n, ",", &pa), kb = split_top(ib.p, ib.n, ",", &pb);
    int r = pa && pb && (eq_lists(pa, ka, pb, kb, 1, c, depth) ||
                         eq_lists_pm(pa, ka, pb, kb, c, depth) == 1);
    free(pa);
    free(pb);
    return r;
}

/* "(a,b)", "[a,b)", ...: a bracketed group with a top-level comma. */
static int tuple_of(const char *s, span *open, span *close, span **parts, size_t *k) {
    span inner;
    *parts = NULL;
    if (!group_of(s, strlen(s), open, close, &inner) || open->n != 1 ||
        (open->p[0] != '(' && open->p[0] != '['))
        return 0;
    *k = split_top(inner.p, inner.n, ",", parts);
    if (*k >= 2) return 1;
    free(*parts);
    *parts = NULL;
    return 0;
}

static int cmp_tuple(const char *a, const char *b, cmp_ctx *c, int depth) {
    span oa, ca, ob, cb, *pa, *pb;
    size_t ka = 0, kb = 0;
    int ta = tuple_of(a, &oa, &ca, &pa, &ka), tb = tuple_of(b, &ob, &cb, &pb, &kb);
    int r = -1;
    if (ta || tb)
        r = ta && tb && oa.p[0] == ob.p[0] && ca.n == 1 && cb.n == 1 && ca.p[0] == cb.p[0] &&
            eq_lists(pa, ka, pb, kb, 0, c, depth);
    free(pa);
    free(pb);
    return r;
}

/* "y=2x+3" vs "y=3+2x": sides compared in order or swapped. */
static int cmp_equation(const char *a, const char *b, cmp_ctx *c, int depth) {
    span *pa, *pb;
    size_t ka = split_top(a, strlen(a), "=", &pa), kb = split_top(b, strlen(b), "=", &pb);
    int r;
    if (!pa || !pb) r = 0;
    else if (ka <= 1 && kb <= 1) r = -1;
    else if (ka != kb) r = 0;
    else {
        r = eq_lists(pa, ka, pb, kb, 0, c, depth);
        if (!r && ka == 2)
            r = eq_span(pa[0], pb[1], c, depth) && eq_span(pa[1], pb[0], c, depth);
    }
    free(pa);
    free(pb);
    return r;
}

static int eq_rec(const char *a, const char *b, cmp_ctx *c, int depth) {
    if (strcmp(a, b) == 0) return 1;
    if (!*a || !*b || depth > CMP_MAX_DEPTH) return 0;
    span sa = {a, strlen(a)}, sb = {b, strlen(b)};
    int r;
    if ((r = cmp_split(sa, sb, "\\cup", 0, c, depth)) >= 0) return r;
    if ((r = cmp_matrix(a, b, c, depth)) >= 0) return r;
    if ((r = cmp_set(a, b, c, depth)) >= 0) return r;
    if ((r = cmp_tuple(a, b, c, depth)) >= 0) return r;
    if ((r = cmp_split(sa, sb, ",", c->unordered, c, depth)) >= 0) return r;
    if ((r = cmp_equation(a, b, c, depth)) >= 0) return r;
    if ((r = eq_lists_pm(&sa, 1, &sb, 1, c, depth)) >= 0) return r;
    return scalar_eq(a, b);
}

int orc_math_equiv_opts(const char *a, const char *b, const orc_math_opts *o) {
    cmp_ctx c = {.unordered = o ? o->unordered : 0, .budget = CMP_BUDGET};
    char *na = orc_math_normalize(a), *nb = orc_math_normalize(b);
    int r = na && nb && *na && *nb && eq_rec(na, nb, &c, 0);
    free(na);
    free(nb);
    return r;
}

int orc_math_equiv(const char *a, const char *b) { return orc_math_equiv_opts(a, b, NULL); }

/* ------------------------------------------------------------- extraction */

static const char *const BOX_MACROS[] = {"\\boxed", "\\fbox", NULL};

typedef struct { size_t start, content, depth; } open_box;
typedef struct { int have; size_t start, a, b; } box_pick;

static void pick_box(box_pick *p, size_t start, size_t a, size_t b) {
    if (!p->have || start > p->start) *p = (box_pick){1, start, a, b};
}

/* "\boxed 5$": the content runs to '$', a newline, "\]" or "\)". */
static void unbraced_box(const char *t, size_t n, size_t start, size_t a, box_pick *p) {
    size_t e = a;
    while (e < n && t[e] != '$' && t[e] != '\n' &&
           !(t[e] == '\\' && e + 1 < n && (t[e + 1] == ']' || t[e + 1] == ')')))
        e++;
    while (e > a && is_space(t[e - 1])) e--;
    if (e > a) pick_box(p, start, a, e);
}

/* One pass over the text; a stack of open boxes remembers the brace depth at
 * which each one closes.  The box that starts last among complete ones wins. */
static int find_last_box(const char *t, size_t n, box_pick *p) {
    open_box *st = NULL;
    size_t sp = 0, cap = 0, depth = 0;
    for (size_t i = 0; i < n;) {
        if (t[i] == '\\') {
            size_t len = macro_len(t, i, n);
            if (!in_list(t + i, len, BOX_MACROS)) { i += len; continue; }
            size_t j = i + len;
            while (j < n && is_space(t[j])) j++;
            if (j < n && t[j] == '{') {
                if (sp == cap) {
                    size_t nc = cap ? cap * 2 : 16;
                    open_box *ns = realloc(st, nc * sizeof *ns);
                    if (!ns) { free(st); return 0; }
                    st = ns;
                    cap = nc;
                }
                st[sp++] = (open_box){i, j + 1, depth++};
                i = j + 1;
            } else {
                unbraced_box(t, n, i, j, p);
                i = j > i + len ? j : i + len;
            }
            continue;
        }
        if (t[i] == '{') {
            depth++;
        } else if (t[i] == '}' && depth) {
            depth--;
            if (sp && st[sp - 1].depth == depth) {
                sp--;
                pick_box(p, st[sp].start, st[sp].content, i);
            }
        }
        i++;
    }
    free(st);
    return 1;
}

static const char *const ANSWER_MARKERS[] = {
    "final answer is", "final answer:", "the answer is", "answer:", NULL};

/* Case-insensitive last occurrence of any marker; returns the index just
 * after it, or SIZE_MAX. */
static size_t last_marker(const char *t, size_t n) {
    size_t best = SIZE_MAX, best_start = 0;
    for (const char *const *m = ANSWER_MARKERS; *m; m++) {
        size_t len = strlen(*m);
        for (size_t i = 0; i + len <= n; i++) {
            size_t k = 0;
            while (k < len && to_lower(t[i + k]) == (*m)[k]) k++;
            if (k == len && (best == SIZE_MAX || i > best_start ||
                             (i == best_start && i + len > best))) {
                best_start = i;
                best = i + len;
            }
        }
    }
    return best;
}

/* Index of the closing delimiter (an unescaped "$", "$$", "\)" or "\]")
 * at or after i, or SIZE_MAX. */
static size_t find_close(const char *t, size_t n, size_t i, const char *close) {
    size_t len = strlen(close);
    while (i + len <= n && t[i] != '\n') {
        if (memcmp(t + i, close, len) == 0) return i;
        i += (t[i] == '\\' && i + 1 < n && close[0] == '$') ? 2 : 1;
    }
    return SIZE_MAX;
}

/* "The answer is $\frac12$." / "Final Answer: 5. I hope it is correct." */
static char *answer_after_marker(const char *t, size_t n) {
    size_t i = last_marker(t, n);
    if (i == SIZE_MAX) return NULL;
    while (i < n && (is_space(t[i]) || t[i] == ':' || t[i] == '*')) i++;
    static const char *const OPEN[] = {"$$", "$", "\\(", "\\["};
    static const char *const CLOSE[] = {"$$", "$", "\\)", "\\]"};
    size_t a = i, e = SIZE_MAX;
    for (int k = 0; k < 4 && e == SIZE_MAX; k++) {
        size_t len = strlen(OPEN[k]);
        if (i + len <= n && memcmp(t + i, OPEN[k], len) == 0) {
            e = find_close(t, n, i + len, CLOSE[k]);
            if (e != SIZE_MAX) a = i + len;
        }
    }
    if (e == SIZE_MAX) {             /* plain text: up to the line or sentence end */
        e = a;
        while (e < n && t[e] != '\n' &&
               !(t[e] == '.' && (e + 1 == n || is_space(t[e + 1]))))
            e++;
    }
    while (a < e && is_space(t[a])) a++;
    while (e > a && (is_space(t[e - 1]) || t[e - 1] == '*' || t[e - 1] == '.')) e--;
    return e > a ? strndup(t + a, e - a) : NULL;
}

char *orc_math_extract(const char *text) {
    if (!text) return NULL;
    size_t n = strlen(text);
    box_pick p = {0};
    if (!find_last_box(text, n, &p)) return NULL;
    if (p.have) {
        while (p.a < p.b && is_space(text[p.a])) p.a++;
        while (p.b > p.a && is_space(text[p.b - 1])) p.b--;
        return strndup(text + p.a, p.b - p.a);
    }
    return answer_after_marker(text, n);
}

int orc_math_grade(const char *response, const char *gold) {
    char *ans = orc_math_extract(response);
    int r = ans && orc_math_equiv(ans, gold);
    free(ans);
    return r;
}
