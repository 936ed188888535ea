/* math_norm.c — LaTeX tokens and the normal form of an answer.
 *
 * Normalisation runs as a few linear passes over the string: characters
 * (unicode, white space), macros (sizing and spacing dropped, synonyms
 * renamed, \text-like groups unwrapped), words (and / or, percent,
 * infinity), units, thousands separators, spaces, then structure (bare macro
 * arguments braced).  Nothing here recurses, so hostile input cannot blow
 * the stack. */
#include "math_int.h"
#include "eng.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* \text-like content is bracketed by these two bytes until the unit pass
 * has looked at it (a trailing \text{...} after a value is a unit). */
#define TXT_OPEN  '\x01'
#define TXT_CLOSE '\x02'

/* ------------------------------------------------------------------ tokens */

size_t mth_macro_len(const char *s, size_t i, size_t n) {
    if (i + 1 >= n) return 1;
    if (!mth_alpha(s[i + 1])) return 2;
    size_t j = i + 1;
    while (j < n && mth_alpha(s[j])) j++;
    return j - i;
}

size_t mth_tok_len(const char *s, size_t i, size_t n) {
    if (s[i] != '\\') return 1;
    if (i + 1 < n && s[i + 1] == '\\') return 2;
    return mth_macro_len(s, i, n);
}

int mth_name_eq(const char *m, size_t len, const char *name) {
    return strlen(name) == len && memcmp(m, name, len) == 0;
}

int mth_in_list(const char *m, size_t len, const char *const *list) {
    for (; *list; list++)
        if (mth_name_eq(m, len, *list)) return 1;
    return 0;
}

int mth_tok_delta(const char *t, size_t len) {
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

size_t mth_split_top(const char *s, size_t n, const char *sep, span **out) {
    size_t cnt = 1, seplen = strlen(sep);
    int depth = 0;
    for (size_t i = 0; i < n;) {
        size_t len = mth_tok_len(s, i, n);
        depth += mth_tok_delta(s + i, len);
        if (depth == 0 && mth_name_eq(s + i, len, sep)) cnt++;
        i += len;
    }
    span *v = malloc(cnt * sizeof *v);
    *out = v;
    if (!v) return 0;
    size_t k = 0, start = 0;
    depth = 0;
    for (size_t i = 0; i < n;) {
        size_t len = mth_tok_len(s, i, n);
        depth += mth_tok_delta(s + i, len);
        if (depth == 0 && mth_name_eq(s + i, len, sep)) {
            v[k++] = (span){s + start, i - start};
            start = i + seplen;
        }
        i += len;
    }
    v[k++] = (span){s + start, n - start};
    return k;
}

int mth_group_of(const char *s, size_t n, span *open, span *close, span *inner) {
    if (!n) return 0;
    size_t first = mth_tok_len(s, 0, n);
    if (mth_tok_delta(s, first) != 1) return 0;
    int depth = 0;
    for (size_t i = 0; i < n;) {
        size_t len = mth_tok_len(s, i, n);
        depth += mth_tok_delta(s + i, len);
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

static const char *const FUNC_NAMES[] = {
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan",
    "sinh", "cosh", "tanh", "ln", "log", "exp", "sqrt", NULL};

int mth_is_func_name(const char *s, size_t n) { return mth_in_list(s, n, FUNC_NAMES); }

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
    {"\xc2\xbd", "\\frac{1}{2}"},  {"\xc2\xbc", "\\frac{1}{4}"},
    {"\xc2\xbe", "\\frac{3}{4}"},  {"\xc2\xb2", "^2"},
    {"\xc2\xb3", "^3"},            {"\xe2\x89\x88", "\\approx "},
    {"\xe2\x88\x88", "\\in "},     {"\xe2\x80\xa6", "\\ldots "},
    {"\xc3\xb7", "\\div "},        {"\xe2\x88\x85", "\\emptyset "},
    {"\xe2\x84\x9d", "\\mathbb{R}"}, {"\xce\xb1", "\\alpha "},
    {"\xce\xb2", "\\beta "},       {"\xce\xb3", "\\gamma "},
    {"\xce\xb8", "\\theta "},      {"\xce\xbb", "\\lambda "},
    {"\xcf\x86", "\\phi "},        {"\xcf\x89", "\\omega "},
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
        if (c == '.' && i + 2 < n && s[i + 1] == '.' && s[i + 2] == '.') {
            eng_buf_adds(&b, "\\ldots ");                /* "..." */
            i += 3;
            while (i < n && s[i] == '.') i++;
            continue;
        }
        /* the text markers are ours: input bytes of that value are blanks */
        int blank = mth_space(c) || c == '~' || c == TXT_OPEN || c == TXT_CLOSE;
        eng_buf_addc(&b, blank ? ' ' : c);
        i++;
    }
    return eng_buf_take(&b);
}

/* ------------------------------------------------ pass 1b: aligned lines */

static const char *const ALIGN_ENVS[] = {
    "align", "align*", "aligned", "gather", "gather*", "gathered", "eqnarray", "eqnarray*",
    "split", NULL};

/* Length of "\begin{align*}" / "\end{aligned}" ... at s[i], or 0. */
static size_t align_tok(const char *s, size_t i, size_t n) {
    size_t k = i + 1;
    if (i + 6 < n && !memcmp(s + i, "\\begin{", 7)) k = i + 7;
    else if (i + 4 < n && !memcmp(s + i, "\\end{", 5)) k = i + 5;
    else return 0;
    const char *close = memchr(s + k, '}', n - k);
    if (!close || !mth_in_list(s + k, (size_t)(close - s - k), ALIGN_ENVS)) return 0;
    return (size_t)(close + 1 - s - i);
}

/* Lines of an align-like environment as one chain: "x &= 2+3 \\ &= 5" is
 * "x = 2+3 = 5"; a line that starts anew ("x=1 \\ y=2") is a list item. */
static char *pass_align(const char *s, size_t n) {
    eng_buf b = {0};
    for (size_t i = 0; i < n;) {
        size_t len = s[i] == '\\' ? align_tok(s, i, n) : 0;
        if (len) { eng_buf_addc(&b, ' '); i += len; continue; }
        if (s[i] == '&') { i++; continue; }
        if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\\') {
            size_t j = i + 2;
            while (j < n && (mth_space(s[j]) || s[j] == '&')) j++;
            int goes_on = j < n && (s[j] == '=' || s[j] == '<' || s[j] == '>' ||
                                    !strncmp(s + j, "\\leq", 4) || !strncmp(s + j, "\\geq", 4) ||
                                    !strncmp(s + j, "\\le", 3) || !strncmp(s + j, "\\ge", 3) ||
                                    !strncmp(s + j, "\\approx", 7));
            int ends = j >= n || align_tok(s, j, n);
            if (!goes_on && !ends) eng_buf_addc(&b, ',');
            i += 2;
            continue;
        }
        eng_buf_addc(&b, s[i++]);
    }
    return eng_buf_take(&b);
}

static int has_align(const char *s, size_t n) {
    const char *p = s;
    while ((p = strstr(p, "\\begin{"))) {
        if (align_tok(s, (size_t)(p - s), n)) return 1;
        p += 7;
    }
    return 0;
}

/* ---------------------------------------------------------- pass 2: macros */

static const char *const DROP_MACROS[] = {
    "\\left", "\\right", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\bigl", "\\bigr",
    "\\Bigl", "\\Bigr", "\\biggl", "\\biggr", "\\displaystyle", "\\textstyle",
    "\\degree", "\\$", "\\mleft", "\\mright", NULL};
static const char *const SPACE_MACROS[] = {
    "\\,", "\\;", "\\:", "\\>", "\\ ", "\\quad", "\\qquad", NULL};
/* Wrappers of text whose content is kept, marked as text: \text{5 cm}. */
static const char *const TEXT_MACROS[] = {
    "\\text", "\\textbf", "\\textit", "\\textrm", "\\textsf", "\\texttt",
    "\\textnormal", "\\textup", "\\emph", "\\mbox", "\\hbox", "\\mathrm",
    "\\mathbf", "\\mathit", "\\mathsf", NULL};
/* Wrappers whose content is kept as it is. */
static const char *const UNWRAP_MACROS[] = {"\\boxed", "\\fbox", "\\operatorname", NULL};
static const struct { const char *from, *to; } RENAMES[] = {
    {"\\dfrac", "\\frac"}, {"\\tfrac", "\\frac"}, {"\\cfrac", "\\frac"},
    {"\\lbrace", "\\{"},   {"\\rbrace", "\\}"},   {"\\le", "\\leq"},
    {"\\ge", "\\geq"},     {"\\ne", "\\neq"},     {"\\leqslant", "\\leq"},
    {"\\geqslant", "\\geq"}, {"\\varnothing", "\\emptyset"}, {"\\dots", "\\ldots"},
    {"\\cdots", "\\ldots"}, {"\\dbinom", "\\binom"}, {"\\tbinom", "\\binom"},
    {"\\lvert", "|"},      {"\\rvert", "|"},      {"\\vert", "|"},
    {"\\lbrack", "["},     {"\\rbrack", "]"},     {"\\%", "%"},
    {"\\infin", "\\infty"}, {"\\lt", "<"},        {"\\gt", ">"},
};

/* What follows one of these is the conclusion. */
static const char *const THEN_MACROS[] = {
    "\\Rightarrow", "\\implies", "\\Longrightarrow", "\\therefore", NULL};

/* The index after the argument at s[i] (spaces, then a {group} or one
 * token). */
static size_t skip_arg(const char *s, size_t n, size_t i) {
    while (i < n && s[i] == ' ') i++;
    if (i < n && s[i] == '{') {
        int depth = 0;
        for (; i < n; i++) {
            if (s[i] == '\\' && i + 1 < n) { i++; continue; }
            if (s[i] == '{') depth++;
            else if (s[i] == '}' && --depth == 0) return i + 1;
        }
        return n;
    }
    if (i < n && s[i] == '\\') return i + mth_macro_len(s, i, n);
    while (i < n && mth_alnum(s[i])) i++;
    return i;
}

static const char *rename_of(const char *m, size_t len) {
    for (size_t k = 0; k < sizeof RENAMES / sizeof RENAMES[0]; k++)
        if (mth_name_eq(m, len, RENAMES[k].from)) return RENAMES[k].to;
    return NULL;
}

/* Drops sizing / spacing macros and $, renames synonyms and unwraps
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
            size_t len = mth_macro_len(s, i, n);
            const char *m = s + i;
            int text = 0;
            if (len == 2 && m[1] == '\\') {
                eng_buf_add(&b, m, 2);
                i += 2;
            } else if (len == 2 && m[1] == '!') {     /* negative space: 10,\!000 */
                i += 2;
                while (i < n && s[i] == ' ') i++;
            } else if (sp == 0 && mth_in_list(m, len, THEN_MACROS)) {
                b.n = 0;                                  /* "a \implies b": b */
                i += len;
            } else if (mth_name_eq(m, len, "\\pmod") || mth_name_eq(m, len, "\\bmod") ||
                       mth_name_eq(m, len, "\\mod")) {
                i = skip_arg(s, n, i + len);              /* "3 \pmod{7}": 3 */
            } else if (mth_in_list(m, len, DROP_MACROS)) {
                int delim = len >= 5 && (mth_name_eq(m, len, "\\left") || mth_name_eq(m, len, "\\right") ||
                                         mth_name_eq(m, len, "\\mleft") || mth_name_eq(m, len, "\\mright"));
                i += len;
                if (delim && i < n && s[i] == '.') i++;   /* \left. is "no delimiter" */
            } else if (mth_in_list(m, len, SPACE_MACROS)) {
                eng_buf_addc(&b, ' ');
                i += len;
            } else if ((text = mth_in_list(m, len, TEXT_MACROS)) || mth_in_list(m, len, UNWRAP_MACROS)) {
                size_t j = i + len;
                while (j < n && s[j] == ' ') j++;
                eng_buf_addc(&b, ' ');
                if (j < n && s[j] == '{') {
                    stack[sp++] = text ? 'T' : 'U';
                    if (text) eng_buf_addc(&b, TXT_OPEN);
                    i = j + 1;
                } else {
                    i += len;
                }
            } else {
                const char *to = rename_of(m, len);
                if (to) eng_buf_adds(&b, to); else eng_buf_add(&b, m, len);
                i += len;
            }
        } else if (c == '$') {
            i++;
        } else if (c == '{' && i + 2 < n && s[i + 1] == ',' && s[i + 2] == '}') {
            eng_buf_addc(&b, ',');                       /* 1{,}000 */
            i += 3;
        } else if (c == '{') {
            stack[sp++] = 'K';
            eng_buf_addc(&b, '{');
            i++;
        } else if (c == '}') {
            char k = sp ? stack[--sp] : 'K';
            if (k == 'T') eng_buf_addc(&b, TXT_CLOSE);
            eng_buf_adds(&b, k == 'K' ? "}" : " ");
            i++;
        } else {
            eng_buf_addc(&b, c);
            i++;
        }
    }
    free(stack);
    return eng_buf_take(&b);
}

/* ----------------------------------------------------------- pass 3: words */

static const struct { const char *word, *to; } WORDS[] = {
    {"and", ","}, {"or", ","}, {"percent", "%"}, {"percentage", "%"}, {"pct", "%"},
    {"infinity", "\\infty "},
};

/* "3 and 5", "x=3 or x=5": the joining word becomes a comma; "50 percent"
 * becomes "50 %"; "infinity" \infty.  Whole words only. */
static char *pass_words(const char *s, size_t n) {
    eng_buf b = {0};
    for (size_t i = 0; i < n;) {
        size_t len = 0, k = 0, nw = sizeof WORDS / sizeof WORDS[0];
        if (mth_alpha(s[i]) && (i == 0 || (!mth_alpha(s[i - 1]) && s[i - 1] != '\\'))) {
            while (i + len < n && mth_alpha(s[i + len])) len++;
            for (k = 0; k < nw; k++)
                if (len == strlen(WORDS[k].word) && memcmp(s + i, WORDS[k].word, len) == 0) break;
        }
        if (len && k < nw) {
            eng_buf_adds(&b, WORDS[k].to);
            i += len;
        } else {
            size_t step = len ? len : 1;
            eng_buf_add(&b, s + i, step);
            i += step;
        }
    }
    return eng_buf_take(&b);
}

/* ------------------------------------------------------- pass 4: units */

/* Unit words dropped after a value.  One-letter units ("m", "g", "s") count
 * only inside \text{}: a bare "3m" is more often an expression. */
static const char *const UNITS[] = {
    "cm", "mm", "km", "meter", "meters", "metre", "metres", "centimeter",
    "centimeters", "millimeter", "millimeters", "kilometer", "kilometers",
    "inch", "inches", "ft", "foot", "feet", "yard", "yards", "yd", "mile",
    "miles", "mph", "kmph", "kg", "gram", "grams", "gm", "pound", "pounds", "lb", "lbs",
    "ounce", "ounces", "oz", "liter", "liters", "litre", "litres", "ml",
    "gallon", "gallons", "degree", "degrees", "deg", "radian", "radians",
    "unit", "units", "sq", "square", "cubic", "dollar", "dollars", "cent",
    "cents", "second", "seconds", "sec", "minute", "minutes", "min", "mins",
    "hour", "hours", "hr", "hrs", "day", "days", "week", "weeks", "month",
    "months", "year", "years", "way", "ways", "student", "students", "people",
    "person", "persons", "point", "points", "digit", "digits", "integer",
    "integers", "times", "meal", "meals", "edge", "edges", "tile", "tiles",
    "marble", "marbles", "book", "books", "page", "pages", NULL};

static int is_unit(const char *w, size_t len) {
    char low[16];
    if (len >= sizeof low) return 0;
    for (size_t k = 0; k < len; k++) low[k] = mth_lower(w[k]);
    return mth_in_list(low, len, UNITS);
}

/* Index just before a trailing "^2", "^{2}", "^3" or "^{3}" (and spaces). */
static size_t before_power(const char *s, size_t e) {
    if (e >= 2 && s[e - 2] == '^' && (s[e - 1] == '2' || s[e - 1] == '3')) e -= 2;
    else if (e >= 4 && s[e - 4] == '^' && s[e - 3] == '{' &&
             (s[e - 2] == '2' || s[e - 2] == '3') && s[e - 1] == '}') e -= 4;
    while (e && s[e - 1] == ' ') e--;
    return e;
}

static size_t trim_spaces_end(const char *s, size_t e) {
    while (e && (s[e - 1] == ' ' || s[e - 1] == TXT_OPEN || s[e - 1] == TXT_CLOSE)) e--;
    return e;
}

/* Does s[0..e) end like a value: a digit, "}", ")", "]", "%" or "\pi"?  With
 * loose, anything but an operator, a separator or an opening bracket. */
static int ends_like_value(const char *s, size_t e, int loose) {
    e = trim_spaces_end(s, e);
    if (!e) return 0;
    char c = s[e - 1];
    if (mth_digit(c) || c == '}' || c == ')' || c == ']' || c == '%') return 1;
    if (e >= 3 && memcmp(s + e - 3, "\\pi", 3) == 0) return 1;
    return loose && !strchr("+-*/^_=,;({[&<>|\\", c);
}

/* Cuts trailing units after a value: \text{...} ("5\text{ apples}",
 * "15\mbox{ cm}^2"), unit words ("5 square feet") and other words of three
 * letters or more after a space ("10 marbles"); then removes the text
 * markers.  Text that is the whole answer ("\text{east}") stays. */
static void strip_units(char *s) {
    size_t end = strlen(s), cut = end;
    int plain = 0;                    /* a cut word was not inside \text{} */
    for (int iter = 0; iter < 4; iter++) {
        size_t e = end;
        while (e && (s[e - 1] == ' ' || s[e - 1] == '.')) e--;
        e = before_power(s, e);
        size_t w = e;
        if (e && s[e - 1] == TXT_CLOSE) {            /* a text group: all of it */
            int depth = 0;
            while (w > 0) {
                w--;
                if (s[w] == TXT_CLOSE) depth++;
                else if (s[w] == TXT_OPEN && --depth == 0) break;
            }
            if (depth) break;
            int letters = 0;
            for (size_t k = w; k < e; k++) letters += mth_alpha(s[k]);
            if (!letters) break;
        } else {
            while (w && mth_alpha(s[w - 1])) w--;
            if (w == e || (w && s[w - 1] == '\\') || mth_is_func_name(s + w, e - w)) break;
            int sep = w && (s[w - 1] == ' ' || s[w - 1] == TXT_OPEN);
            if (!is_unit(s + w, e - w) && !(sep && e - w >= 3)) break;
            plain = 1;
        }
        end = cut = w;
    }
    if (cut < strlen(s) && ends_like_value(s, cut, !plain)) s[cut] = 0;
    char *d = s;
    for (const char *r = s; *r; r++)
        if (*r != TXT_OPEN && *r != TXT_CLOSE) *d++ = *r;
    *d = 0;
}

/* "1,000" / "-12,345.5" (the whole answer, no space after the commas) ->
 * digits only; "32, 349" is a pair and "(1,000)" a tuple. */
static void drop_thousands(char *s) {
    const char *p = s;
    while (*p == ' ') p++;
    if (*p == '-' || *p == '+') p++;
    int d = 0;
    while (mth_digit(*p)) { p++; d++; }
    if (d < 1 || d > 3 || *p != ',') return;
    while (*p == ',') {
        p++;
        for (int k = 0; k < 3; k++, p++)
            if (!mth_digit(*p)) return;
    }
    if (mth_digit(*p)) return;
    if (*p == '.' && mth_digit(p[1])) {
        p++;
        while (mth_digit(*p)) p++;
    }
    while (*p == ' ' || *p == '.') p++;
    if (*p) return;
    char *w = s;
    for (const char *r = s; *r; r++)
        if (*r != ',') *w++ = *r;
    *w = 0;
}

/* ---------------------------------------------------------- pass 5: spaces */

/* Does out end with a control word ("\cot")?  Then a following letter needs
 * a space to stay a separate token. */
static int ends_with_macro(const char *p, size_t n) {
    size_t k = n;
    while (k && mth_alpha(p[k - 1])) k--;
    return k < n && k > 0 && p[k - 1] == '\\';
}

/* Removes every space except one between a control word and a letter
 * ("\pi r"); ";" separates like ","; collapses ",," left by "and" after a
 * comma. */
static char *pass_spaces(const char *s, size_t n) {
    eng_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ') {
            size_t j = i;
            while (j < n && s[j] == ' ') j++;
            if (j < n && mth_alpha(s[j]) && b.p && ends_with_macro(b.p, b.n)) eng_buf_addc(&b, ' ');
            i = j - 1;
            continue;
        }
        if (c == ';' && !(b.n && b.p[b.n - 1] == '\\')) c = ',';
        if (c == ',' && b.n && b.p[b.n - 1] == ',') continue;
        eng_buf_addc(&b, c);
    }
    return eng_buf_take(&b);
}

/* ------------------------------------------------------- pass 6: structure */

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
    if (mth_alnum(s[j])) len = 1;
    else if (s[j] == '\\' && j + 1 < n && mth_alpha(s[j + 1])) len = mth_macro_len(s, j, n);
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
            size_t len = mth_tok_len(s, i, n);
            eng_buf_add(&b, s + i, len);
            if (mth_name_eq(s + i, len, "\\frac") || mth_name_eq(s + i, len, "\\binom")) {
                want_arg(fix, i + len, 2);
            } else if (mth_name_eq(s + i, len, "\\sqrt")) {
                size_t j = i + len, close = 0;
                if (j < n && s[j] == '[')             /* \sqrt[3]{x}: skip the index */
                    for (size_t t = j + 1; t < n && t < j + 64; t++)
                        if (s[t] == ']') { close = t; break; }
                want_arg(fix, close ? close + 1 : j, 1);
            }
            i += len;
        } else if (c == '^' && i + 6 <= n && memcmp(s + i, "^\\circ", 6) == 0 &&
                   (i + 6 == n || !mth_alpha(s[i + 6]))) {
            i += 6;
        } else if (c == '^' && i + 8 <= n && memcmp(s + i, "^{\\circ}", 8) == 0) {
            i += 8;
        } else if (c == '^' || c == '_') {
            eng_buf_addc(&b, c);
            i++;
            want_arg(fix, i, 1);
        } else if (c == '.' && i + 1 < n && mth_digit(s[i + 1]) &&
                   (b.n == 0 || !mth_digit(b.p[b.n - 1]))) {
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

/* "(C)" -> "C": a multiple-choice letter. */
static void strip_choice(char *s) {
    if (s[0] == '(' && s[1] >= 'A' && s[1] <= 'Z' && s[2] == ')' && !s[3]) {
        s[0] = s[1];
        s[1] = 0;
    }
}

/* Names of the same set: every real number, the empty set. */
static char *whole_names(char *s) {
    static const struct { const char *from, *to; } SAME[] = {
        {"\\mathbb{R}", "(-\\infty,\\infty)"}, {"\\mathbb R", "(-\\infty,\\infty)"},
        {"\\{\\}", "\\emptyset"},
    };
    for (size_t k = 0; k < sizeof SAME / sizeof SAME[0]; k++)
        if (!strcmp(s, SAME[k].from)) {
            char *r = strdup(SAME[k].to);
            free(s);
            return r;
        }
    return s;
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
    if (t && has_align(t, strlen(t)) && !run_pass(&t, pass_align)) return NULL;
    if (!t || !run_pass(&t, pass_macros) || !run_pass(&t, pass_words)) return NULL;
    strip_units(t);
    drop_thousands(t);
    if (!run_pass(&t, pass_spaces) || !run_pass(&t, pass_struct)) return NULL;
    trim_end(t);
    strip_choice(t);
    return whole_names(t);
}
