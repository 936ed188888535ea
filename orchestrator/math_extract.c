/* math_extract.c — the final answer in a model's output.
 *
 * In order (the first that gives an answer wins):
 *  1. Boxes: the last \boxed{} / \fbox{} and the boxes just before it that
 *     belong to the same answer (less than 10 characters apart, or less than
 *     70 with "and", "or", "," or ";" between and a different content),
 *     joined by ", "; boxes restating one value count once.  A Minerva line
 *     "The final answer is $X$. I hope it is correct." after them wins.
 *  2. Markers: "final answer is" / "final answer:", then "answer is" /
 *     "answer:", then "answer" followed within 50 characters by math; the
 *     last occurrence of the first kind found.  After the marker: the math
 *     ($..$, $$..$$, \(..\), \[..\]) that starts within 50 characters in
 *     the same sentence, with math joined to it by "and" / "or" / ",", else
 *     the plain text up to the end of the sentence or line (in prose, its
 *     first number: "is 5 because ...").
 *  3. The last math in the text (with math joined to it as above), unless
 *     a number in the prose after it ends later ("so $x=5$, i.e. 10 in all"
 *     gives 10, as Math-Verify's rightmost match does).
 *  4. A bare answer ("x^2+1", "(1,2) or (2,1)", "5 apples") whole; in
 *     prose, its last number ("12", "-3.5", "1,234", "1/2", "50%").
 * A reference answer (orc_math_extract_gold) takes no number from prose
 * and is taken whole at step 4. */
#include "math_int.h"
#include "eng.h"
#include <stdlib.h>
#include <string.h>

#define BOX_NEAR      10     /* boxes closer than this are one answer */
#define BOX_SEPARATED 70     /* ... and up to this with a separator between */
#define MARKER_REACH  50     /* math this close after a marker is the answer */
#define MAX_CHAIN     6      /* math environments joined into one answer */
#define MAX_BOXES     64     /* boxes looked at for one answer */

typedef struct { size_t start, a, b, end; } box_t;   /* content [a, b), end: after it */

static int push_box(box_t **v, size_t *n, size_t *cap, box_t x) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        box_t *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return 0;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 1;
}

static const char *const BOX_MACROS[] = {"\\boxed", "\\fbox", NULL};

/* Every complete box, in order of their ends.  One pass; a stack of open
 * boxes remembers the brace depth at which each closes.  "\boxed 5$": the
 * content runs to '$', a newline, "\]" or "\)".  -1 when out of memory. */
static long find_boxes(const char *t, size_t n, box_t **out) {
    box_t *done = NULL, *open = NULL;
    size_t nd = 0, cd = 0, no = 0, co = 0, depth = 0;
    int ok = 1;
    for (size_t i = 0; i < n && ok;) {
        if (t[i] == '\\') {
            size_t len = mth_macro_len(t, i, n);
            if (!mth_in_list(t + i, len, BOX_MACROS)) { i += len; continue; }
            size_t j = i + len;
            while (j < n && mth_space(t[j])) j++;
            if (j < n && t[j] == '{') {
                ok = push_box(&open, &no, &co, (box_t){i, j + 1, 0, depth++});
                i = j + 1;
            } else {
                size_t e = j;
                while (e < n && t[e] != '$' && t[e] != '\n' &&
                       !(t[e] == '\\' && e + 1 < n && (t[e + 1] == ']' || t[e + 1] == ')')))
                    e++;
                size_t b = e;
                while (b > j && mth_space(t[b - 1])) b--;
                if (b > j) ok = push_box(&done, &nd, &cd, (box_t){i, j, b, b});
                i = e > i + len ? e : i + len;
            }
            continue;
        }
        if (t[i] == '{') {
            depth++;
        } else if (t[i] == '}' && depth) {
            depth--;
            if (no && open[no - 1].end == depth) {   /* .end holds the depth while open */
                box_t x = open[--no];
                ok = push_box(&done, &nd, &cd, (box_t){x.start, x.a, i, i + 1});
            }
        }
        i++;
    }
    free(open);
    if (!ok) { free(done); return -1; }
    *out = done;
    return (long)nd;
}

static int word_at(const char *t, size_t i, size_t n, const char *w) {
    size_t len = strlen(w);
    return i + len <= n && memcmp(t + i, w, len) == 0 &&
           (i == 0 || !mth_alpha(t[i - 1])) && (i + len == n || !mth_alpha(t[i + len]));
}

/* Does t[a, b) hold "and", "or", "," or ";"? */
static int has_separator(const char *t, size_t a, size_t b) {
    for (size_t i = a; i < b; i++)
        if (t[i] == ',' || t[i] == ';' || word_at(t, i, b, "and") || word_at(t, i, b, "or")) return 1;
    return 0;
}

static int same_text(const char *t, const box_t *x, const box_t *y) {
    return x->b - x->a == y->b - y->a && memcmp(t + x->a, t + y->a, x->b - x->a) == 0;
}

/* Does box x say what one of the chained boxes says ("15\frac{39}{40}, or
 * \frac{639}{40}" restates one value)? */
static int same_value(const char *t, const box_t *x, const box_t *bx, const size_t *chain, size_t m) {
    char *a = strndup(t + x->a, x->b - x->a);
    int r = 0;
    for (size_t k = 0; a && k < m && !r; k++) {
        const box_t *y = &bx[chain[k]];
        char *b = strndup(t + y->a, y->b - y->a);
        r = same_text(t, x, y) || (b && orc_math_equiv(a, b));
        free(b);
    }
    free(a);
    return r;
}

static void add_trimmed(eng_buf *b, const char *s, size_t a, size_t e) {
    while (a < e && mth_space(s[a])) a++;
    while (e > a && mth_space(s[e - 1])) e--;
    eng_buf_add(b, s + a, e - a);
}

/* The boxes of the final answer, joined; NULL when there is no box.  *end
 * gets the index after the last one. */
static char *boxed_answer(const char *t, size_t n, size_t *end, int *oom) {
    box_t *bx = NULL;
    long nb = find_boxes(t, n, &bx);
    if (nb <= 0) { *oom = nb < 0; free(bx); return NULL; }
    size_t last = 0;                          /* the box that starts last */
    for (long k = 1; k < nb; k++)
        if (bx[k].start > bx[last].start) last = (size_t)k;
    size_t *chain = malloc((size_t)nb * sizeof *chain), m = 0;
    if (!chain) { *oom = 1; free(bx); return NULL; }
    chain[m++] = last;
    *end = bx[last].end;
    for (size_t cur = last, steps = 0; steps < MAX_BOXES; steps++) {
        long prev = -1;                       /* the nearest box ending before cur */
        for (long k = 0; k < nb; k++)
            if (bx[k].end <= bx[cur].start && (prev < 0 || bx[k].start > bx[prev].start)) prev = k;
        if (prev < 0) break;
        size_t gap = bx[cur].start - bx[prev].end;
        int differs = !same_text(t, &bx[prev], &bx[cur]);
        if (!(gap < BOX_NEAR ||
              (gap < BOX_SEPARATED && differs && has_separator(t, bx[prev].end, bx[cur].start))))
            break;
        if (!same_value(t, &bx[prev], bx, chain, m)) chain[m++] = (size_t)prev;
        cur = (size_t)prev;
    }
    eng_buf b = {0};
    for (size_t k = m; k-- > 0;) {
        if (k + 1 < m) eng_buf_adds(&b, ", ");
        add_trimmed(&b, t, bx[chain[k]].a, bx[chain[k]].b);
    }
    free(chain);
    free(bx);
    char *r = eng_buf_take(&b);
    if (!r) *oom = 1;
    return r;
}

/* -------------------------------------------------------- math in text */

typedef struct { size_t open, a, b, close; } env_t;   /* content [a, b), close: after it */

/* A text with its math environments, found once in one pass. */
typedef struct { const char *t; size_t n; env_t *env; size_t n_env; } doc_t;

static const struct { const char *open, *close; int line; } ENV[] = {
    {"$$", "$$", 0}, {"\\[", "\\]", 0}, {"\\(", "\\)", 1}, {"$", "$", 1},
};
#define N_ENV (sizeof ENV / sizeof ENV[0])

/* Index of close (an unescaped "$", "$$", "\)" or "\]") at or after i, or
 * SIZE_MAX; inline "$" and "\(" stay on one line.  *limit gets where a
 * failed search stopped: no opener of this kind before it can close. */
static size_t find_close(const char *t, size_t n, size_t i, const char *close, int one_line,
                         size_t *limit) {
    size_t len = strlen(close);
    while (i + len <= n) {
        if (one_line && t[i] == '\n') { *limit = i; return SIZE_MAX; }
        if (memcmp(t + i, close, len) == 0) return i;
        i += (t[i] == '\\' && i + 1 < n && close[0] == '$') ? 2 : 1;
    }
    *limit = n;
    return SIZE_MAX;
}

/* Every math environment in order, an environment's inside skipped.
 * Linear: an opener whose kind found no closer up to some point is not
 * searched again before that point. */
static void find_envs(doc_t *d) {
    const char *t = d->t;
    size_t n = d->n, cap = 0, dead[N_ENV] = {0};
    for (size_t i = 0; i < n;) {
        int found = 0;
        if ((t[i] == '$' || t[i] == '\\') && !(i > 0 && t[i - 1] == '\\')) {
            for (size_t k = 0; k < N_ENV; k++) {
                size_t lo = strlen(ENV[k].open);
                if (i + lo > n || memcmp(t + i, ENV[k].open, lo) != 0) continue;
                if (i < dead[k]) break;
                size_t c = find_close(t, n, i + lo, ENV[k].close, ENV[k].line, &dead[k]);
                if (c == SIZE_MAX || c == i + lo) break;
                if (d->n_env == cap) {
                    size_t nc = cap ? cap * 2 : 16;
                    env_t *nv = realloc(d->env, nc * sizeof *nv);
                    if (!nv) return;
                    d->env = nv;
                    cap = nc;
                }
                d->env[d->n_env++] = (env_t){i, i + lo, c, c + strlen(ENV[k].close)};
                i = c + strlen(ENV[k].close);
                found = 1;
                break;
            }
        }
        if (!found) i += (t[i] == '\\' && i + 1 < n) ? 2 : 1;
    }
}

/* The math environment opening at t[i], if any. */
static int env_at(const doc_t *d, size_t i, env_t *e) {
    size_t lo = 0, hi = d->n_env;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->env[mid].open < i) lo = mid + 1; else hi = mid;
    }
    if (lo == d->n_env || d->env[lo].open != i) return 0;
    *e = d->env[lo];
    return 1;
}

/* After math ending at i: the start of the next math joined to it by one
 * "and", "or", ",", ",and" or ",or" between spaces (", and" is a new
 * clause, as in Math-Verify), or SIZE_MAX. */
static size_t joined_next(const char *t, size_t n, size_t i) {
    size_t j = i;
    while (j < n && mth_space(t[j])) j++;
    if (j < n && t[j] == ',') j++;
    if (word_at(t, j, n, "and")) j += 3;
    else if (word_at(t, j, n, "or")) j += 2;
    else if (j == i || t[j - 1] != ',') return SIZE_MAX;
    while (j < n && mth_space(t[j])) j++;
    return j < n ? j : SIZE_MAX;
}

/* Math that ends in "," ";" or "." ("$c = 14,$") reads as a clause of a
 * sentence, not as one of several answers: it is not joined. */
static int env_joinable(const char *t, const env_t *e) {
    size_t b = e->b;
    while (b > e->a && mth_space(t[b - 1])) b--;
    return b > e->a && t[b - 1] != ',' && t[b - 1] != ';' && t[b - 1] != '.';
}

/* Appends the content of env, and a "%" right after it. */
static void add_env(eng_buf *b, const char *t, size_t n, const env_t *e) {
    add_trimmed(b, t, e->a, e->b);
    size_t j = e->close;
    while (j < n && t[j] == ' ') j++;
    if (j < n && t[j] == '%') eng_buf_addc(b, '%');
    else if (j + 1 < n && t[j] == '\\' && t[j + 1] == '%') eng_buf_addc(b, '%');
}

/* The math at i and what is joined to it, as one answer. */
static char *env_chain_from(const doc_t *d, env_t e) {
    const char *t = d->t;
    eng_buf b = {0};
    add_env(&b, t, d->n, &e);
    for (int k = 1; k < MAX_CHAIN && env_joinable(t, &e); k++) {
        size_t j = joined_next(t, d->n, e.close);
        env_t next;
        if (j == SIZE_MAX || !env_at(d, j, &next) || !env_joinable(t, &next)) break;
        e = next;
        eng_buf_adds(&b, ", ");
        add_env(&b, t, d->n, &e);
    }
    return eng_buf_take(&b);
}

/* Math that is one letter ("$x.$", "$n$"): it names what is asked about,
 * it is not the answer. */
static int lone_variable(const char *t, const env_t *e) {
    size_t a = e->a, b = e->b;
    while (a < b && mth_space(t[a])) a++;
    while (b > a && (mth_space(t[b - 1]) || t[b - 1] == '.' || t[b - 1] == ',')) b--;
    return b == a + 1 && mth_alpha(t[a]);
}

/* The last math in the text with the math joined to it before it; *end
 * gets the index after it. */
static char *last_env(const doc_t *d, size_t *end) {
    const char *t = d->t;
    const env_t *v = d->env;
    size_t k = d->n_env;
    char *r = NULL;
    while (k > 1 && lone_variable(t, &v[k - 1])) k--;   /* "... values of $x.$" */
    if (k) {
        *end = v[k - 1].close;
        size_t first = k - 1;
        while (first > 0 && k - first < MAX_CHAIN && env_joinable(t, &v[first]) &&
               env_joinable(t, &v[first - 1]) && joined_next(t, d->n, v[first - 1].close) == v[first].open)
            first--;
        r = env_chain_from(d, v[first]);
    }
    return r;
}

/* ------------------------------------------------------- plain numbers */

/* Length of "\frac{12}{34}" (digits only) at t[i], or 0. */
static size_t frac_len(const char *t, size_t i, size_t n) {
    if (i + 6 > n || memcmp(t + i, "\\frac{", 6) != 0) return 0;
    size_t j = i + 6;
    for (int arg = 0; arg < 2; arg++) {
        if (arg && (j >= n || t[j++] != '{')) return 0;
        size_t d = j;
        while (j < n && mth_digit(t[j])) j++;
        if (j == d || j >= n || t[j++] != '}') return 0;
    }
    return j - i;
}

/* The first (or last) number in plain text t[from, n): "-12", "3.5",
 * "1,234", "1/2", "50%" (or "50 percent"), preceded by the start, a space,
 * "=", "*" or "$"; or a fraction of digits "\frac{17}{21}".  Gives its span; 0 when there is none. */
static int number_span(const char *t, size_t n, size_t from, int first, size_t *pa, size_t *pb) {
    int found = 0;
    for (size_t i = from; i < n; i++) {
        size_t fl = frac_len(t, i, n);
        if (fl) {                                  /* "\frac{17}{21}" in plain text */
            *pa = i > from && t[i - 1] == '-' ? i - 1 : i;
            *pb = i + fl;
            found = 1;
            if (first) return 1;
            i += fl - 1;
            continue;
        }
        if (!mth_digit(t[i])) continue;
        size_t a = i;
        if (a > from && t[a - 1] == '-') a--;
        char p = a > 0 ? t[a - 1] : ' ';
        if (!(mth_space(p) || p == '=' || p == '*' || p == '$')) {
            while (i + 1 < n && mth_digit(t[i + 1])) i++;
            continue;
        }
        size_t j = i, d = 0;
        while (j < n && mth_digit(t[j])) { j++; d++; }
        while (d <= 3 && j + 3 < n && t[j] == ',' && mth_digit(t[j + 1]) && mth_digit(t[j + 2]) &&
               mth_digit(t[j + 3]) && (j + 4 >= n || !mth_digit(t[j + 4])))
            j += 4;
        if (j + 1 < n && t[j] == '.' && mth_digit(t[j + 1]))
            for (j++; j < n && mth_digit(t[j]); j++) {}
        if (j + 1 < n && t[j] == '/' && mth_digit(t[j + 1]))
            for (j++; j < n && mth_digit(t[j]); j++) {}
        size_t b = j;
        while (j < n && t[j] == ' ') j++;
        if (j < n && t[j] == '%') b = j + 1;
        else if (j + 7 <= n && memcmp(t + j, "percent", 7) == 0) b = j + 7;
        *pa = a;
        *pb = b;
        found = 1;
        if (first) return 1;
        i = b - 1;
    }
    return found;
}


/* ----------------------------------------------------------- markers */

/* Case-insensitive: does marker m start at t[i]? */
static int marker_at(const char *t, size_t i, size_t n, const char *m) {
    size_t len = strlen(m), k = 0;
    if (i + len > n || (i > 0 && mth_alpha(t[i - 1]))) return 0;
    while (k < len && mth_lower(t[i + k]) == m[k]) k++;
    return k == len;
}

/* Prose rather than a bare answer: two words or more of two letters or
 * more outside braces ("I think it is 42", "no idea"), several lines, or
 * long.  A bare
 * answer ("x^2+1", "(1,2) or (2,1)", "5 apples", "\text{red and blue}") is
 * taken whole. */
static int looks_like_prose(const char *t, size_t n) {
    if (n > 200 || memchr(t, '\n', n)) return 1;
    int words = 0, depth = 0;
    for (size_t i = 0; i < n;) {
        if (t[i] == '{') depth++;
        else if (t[i] == '}' && depth) depth--;
        size_t j = i;
        while (j < n && mth_alpha(t[j])) j++;
        if (j - i >= 2 && !depth && (i == 0 || t[i - 1] != '\\')) words++;
        i = j > i ? j : i + 1;
    }
    return words >= 2;
}

/* The answer after a marker ending at i: math starting within reach in
 * the same sentence, else (unless math_only) the plain text to the end of
 * the sentence or line. */
static char *after_marker(const doc_t *d, size_t i, int math_only) {
    const char *t = d->t;
    size_t n = d->n;
    while (i < n && (mth_space(t[i]) || t[i] == ':' || t[i] == '*')) i++;
    env_t e;
    for (size_t j = i; j < n && j < i + MARKER_REACH; j++) {
        if (t[j] == '\n' || (t[j] == '.' && (j + 1 == n || mth_space(t[j + 1])))) break;
        if ((t[j] == '$' || t[j] == '\\') && env_at(d, j, &e)) return env_chain_from(d, e);
    }
    if (math_only) return NULL;
    size_t a = i, end = i;
    while (end < n && t[end] != '\n' && !(t[end] == '.' && (end + 1 == n || mth_space(t[end + 1]))))
        end++;
    while (a < end && mth_space(t[a])) a++;
    while (end > a && (mth_space(t[end - 1]) || t[end - 1] == '*' || t[end - 1] == '.')) end--;
    size_t na, nb;                            /* "is 5 because ...": the number */
    if (looks_like_prose(t + a, end - a) && number_span(t, end, a, 1, &na, &nb))
        return strndup(t + na, nb - na);
    return end > a ? strndup(t + a, end - a) : NULL;
}

/* The answer after the last marker of one kind that gives one. */
static char *marker_answer(const doc_t *d, const char *const *kind, int math_only, size_t from) {
    const char *t = d->t;
    size_t n = d->n;
    for (size_t i = n; i-- > from;) {
        for (const char *const *m = kind; *m; m++)
            if (marker_at(t, i, n, *m)) {
                char *r = after_marker(d, i + strlen(*m), math_only);
                if (r && *r) return r;
                free(r);
            }
    }
    return NULL;
}

static const char *const FINAL_MARKERS[] = {"final answer is", "final answer:", NULL};
static const char *const ANSWER_MARKERS[] = {"answer is", "answer:", NULL};
static const char *const WORD_MARKERS[] = {"answer", NULL};

/* "The final answer is $X$. I hope it is correct." after index from. */
static char *minerva_answer(const doc_t *d, size_t from) {
    char *r = marker_answer(d, FINAL_MARKERS, 0, from);
    if (!r) return NULL;
    const char *hope = strstr(d->t + from, "I hope it is correct");
    if (hope) return r;
    free(r);
    return NULL;
}

/* A box that did not close ("\boxed{5"): no answer at all. */
static int has_box_macro(const char *t) { return strstr(t, "\\boxed") || strstr(t, "\\fbox"); }

/* ------------------------------------------------------------------ API */

static char *extract_doc(const doc_t *d, int gold) {
    const char *text = d->t;
    size_t n = d->n, end = 0;
    int oom = 0;
    char *r = boxed_answer(text, n, &end, &oom);
    if (oom) return NULL;
    if (r) {
        char *m = minerva_answer(d, end);
        if (m) { free(r); return m; }
        return r;
    }
    if ((r = marker_answer(d, FINAL_MARKERS, 0, 0))) return r;
    if ((r = marker_answer(d, ANSWER_MARKERS, 0, 0))) return r;
    if ((r = marker_answer(d, WORD_MARKERS, 1, 0))) return r;
    size_t env_end = 0, na, nb;
    if ((r = last_env(d, &env_end)) && !*r) { free(r); r = NULL; }
    /* in prose, a number after the last math is the later answer */
    if (!gold && (r || looks_like_prose(text, n)) && number_span(text, n, env_end, 0, &na, &nb)) {
        free(r);
        return strndup(text + na, nb - na);
    }
    if (r) return r;
    if (!gold && (looks_like_prose(text, n) || has_box_macro(text))) return NULL;
    size_t a = 0;
    while (a < n && mth_space(text[a])) a++;
    while (n > a && mth_space(text[n - 1])) n--;
    return n > a ? strndup(text + a, n - a) : NULL;
}

/* A reasoning model's final answer follows its thinking: in a response with
 * "</think>" only the text after the last one counts (a box drafted while
 * thinking is not the answer).  A thought still open (no "</think>" yet)
 * leaves the whole text, so probes of a branch mid-thought still read it. */
static const char *after_thinking(const char *text) {
    const char *p = text, *last = NULL;
    while ((p = strstr(p, "</think>"))) last = p += 8;
    return last ? last : text;
}

static char *extract(const char *text, int gold) {
    if (!text) return NULL;
    if (!gold) text = after_thinking(text);
    doc_t d = {text, strlen(text), NULL, 0};
    find_envs(&d);
    char *r = extract_doc(&d, gold);
    free(d.env);
    return r;
}

char *orc_math_extract(const char *text) { return extract(text, 0); }

char *orc_math_extract_gold(const char *text) { return extract(text, 1); }

int orc_math_grade(const char *response, const char *gold) {
    char *ans = orc_math_extract(response), *ref = orc_math_extract_gold(gold);
    int r = ans && ref && orc_math_equiv_gold(ref, ans);
    free(ans);
    free(ref);
    return r;
}
