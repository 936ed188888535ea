/* math_cmp.c — are two normalised answers the same?
 *
 * A comparison has a direction: the first answer is the reference (gold),
 * the second the one graded.  It only matters for two rules, as in
 * Math-Verify: an assignment in the reference ("x=5", "(p,q)=(3,2)") is
 * compared by its value with a graded answer that is no equation, and an
 * inequality in the reference ("1<x<2") is compared as an interval with a
 * graded interval, never the reverse.  orc_math_equiv tries both directions.
 *
 * In order: equal strings; "\approx" (the exact side kept); an inequality
 * against an interval; lists (commas at the top level, any order unless
 * ordered is set; a bare list also matches a set, or a parenthesised tuple
 * in order); relations (equations by sides in either order or by
 * proportional differences, an equation in the graded answer by its last
 * side, inequalities also when flipped); unions; matrices; sets; tuples and
 * intervals; "\pm" as two values; then scalars: percent, whole integers
 * exactly, words without case, numbers (exact rationals exactly, a decimal
 * to 6 places as Math-Verify rounds, else to 1e-9) and expressions in
 * variables at probe points.  Nothing recurses without a depth limit. */
#include "math_int.h"
#include "eng.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CMP_MAX_DEPTH 8      /* nested structures: tuples in lists in ... */
#define MAX_UNORDERED 64     /* longer lists are compared in order */
#define CMP_BUDGET    200000 /* part comparisons per equiv call */
#define N_PROBES      8      /* points at which variable expressions are compared */
#define MIN_PROBES    3      /* ... of which this many must lie in both domains */
#define PROBE_TOL     1e-8
#define EXPR_TOL      1e-9   /* values that are not exact rationals */
#define MAX_REL       8      /* operators in one chain "a = b = c" */

/* One comparison's options and work budget: nested unordered lists could
 * otherwise multiply into a very long run on hostile input. */
typedef struct { int ordered; long budget; } cmp_ctx;

static int eq_rec(const char *g, const char *a, cmp_ctx *c, int depth);

static char *span_dup(span x) { return strndup(x.p, x.n); }

/* Compares two parts after normalising each on its own. */
static int eq_span(span x, span y, cmp_ctx *c, int depth) {
    if (c->budget <= 0 || depth > CMP_MAX_DEPTH) return 0;
    c->budget--;
    char *xs = span_dup(x), *ys = span_dup(y);
    char *xn = xs ? orc_math_normalize(xs) : NULL, *yn = ys ? orc_math_normalize(ys) : NULL;
    int r = xn && yn && *xn && *yn && eq_rec(xn, yn, c, depth + 1);
    free(xs); free(ys); free(xn); free(yn);
    return r;
}

static int eq_str_span(const char *x, span y, cmp_ctx *c, int depth) {
    return eq_span((span){x, strlen(x)}, y, c, depth);
}

/* Lists of parts: same count, then in order or as multisets (greedy; a
 * part matched once). */
static int eq_lists(const span *g, size_t ng, const span *a, size_t na, int unordered,
                    cmp_ctx *c, int depth) {
    if (ng != na) return 0;
    if (!unordered || ng > MAX_UNORDERED) {
        for (size_t i = 0; i < ng; i++)
            if (!eq_span(g[i], a[i], c, depth)) return 0;
        return 1;
    }
    char used[MAX_UNORDERED] = {0};
    for (size_t i = 0; i < ng; i++) {
        size_t j;
        for (j = 0; j < na; j++)
            if (!used[j] && eq_span(g[i], a[j], c, depth)) break;
        if (j == na) return 0;
        used[j] = 1;
    }
    return 1;
}

/* ------------------------------------------------------------ \pm */

/* Where the only "\pm" of a part is, or SIZE_MAX when it has none or several. */
static size_t pm_at(span x) {
    size_t at = SIZE_MAX;
    int cnt = 0;
    for (size_t i = 0; i < x.n;) {
        size_t len = mth_tok_len(x.p, i, x.n);
        if (mth_name_eq(x.p + i, len, "\\pm")) { at = i; cnt++; }
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
static int eq_lists_pm(const span *g, size_t ng, const span *a, size_t na, cmp_ctx *c, int depth) {
    int has = 0;
    for (size_t i = 0; i < ng; i++) has |= pm_at(g[i]) != SIZE_MAX;
    for (size_t i = 0; i < na; i++) has |= pm_at(a[i]) != SIZE_MAX;
    if (!has) return -1;
    span *eg, *ea;
    char *sg, *sa;
    size_t kg = expand_pm(g, ng, &eg, &sg), ka = expand_pm(a, na, &ea, &sa);
    int r = kg && ka && eq_lists(eg, kg, ea, ka, 1, c, depth);
    free(eg); free(sg); free(ea); free(sa);
    return r;
}

static int eq_lists_any(const span *g, size_t ng, const span *a, size_t na, int unordered,
                        cmp_ctx *c, int depth) {
    return eq_lists(g, ng, a, na, unordered, c, depth) || eq_lists_pm(g, ng, a, na, c, depth) == 1;
}

/* ------------------------------------------------------------- groups */

/* "\{a,b\}": the inside. */
static int set_of(const char *s, size_t n, span *inner) {
    span op, cl;
    return mth_group_of(s, n, &op, &cl, inner) && op.n == 2 && op.p[1] == '{';
}

/* "(a,b)" with round brackets on both ends: the inside. */
static int paren_of(const char *s, size_t n, span *inner) {
    span op, cl;
    return mth_group_of(s, n, &op, &cl, inner) && op.n == 1 && op.p[0] == '(' &&
           cl.n == 1 && cl.p[0] == ')';
}

/* Both split at sep and compared part by part; -1 when neither side splits. */
static int cmp_split(span g, span a, const char *sep, int unordered, cmp_ctx *c, int depth) {
    span *pg, *pa;
    size_t kg = mth_split_top(g.p, g.n, sep, &pg), ka = mth_split_top(a.p, a.n, sep, &pa);
    int r;
    if (!pg || !pa) r = 0;
    else if (kg <= 1 && ka <= 1) r = -1;
    else r = eq_lists_any(pg, kg, pa, ka, unordered, c, depth);
    free(pg);
    free(pa);
    return r;
}

/* ------------------------------------------------------------ relations */

enum { OP_EQ, OP_IN, OP_LT, OP_LE, OP_GT, OP_GE, OP_NE, OP_APPROX };

typedef struct { span part[MAX_REL + 1]; int op[MAX_REL]; int n; } rel_t;

/* The relation operator at s[i] (its length in *len), or -1. */
static int rel_op_at(const char *s, size_t i, size_t n, size_t *len) {
    char ch = s[i];
    if (ch == '<' || ch == '>') {
        int le = i + 1 < n && s[i + 1] == '=';
        *len = 1 + le;
        return ch == '<' ? (le ? OP_LE : OP_LT) : (le ? OP_GE : OP_GT);
    }
    if (ch == '=') { *len = 1; return OP_EQ; }
    if (ch != '\\') return -1;
    size_t l = mth_macro_len(s, i, n);
    static const struct { const char *name; int op; } M[] = {
        {"\\leq", OP_LE}, {"\\geq", OP_GE}, {"\\neq", OP_NE}, {"\\in", OP_IN},
        {"\\approx", OP_APPROX}, {"\\equiv", OP_EQ},
    };
    for (size_t k = 0; k < sizeof M / sizeof M[0]; k++)
        if (mth_name_eq(s + i, l, M[k].name)) { *len = l; return M[k].op; }
    return -1;
}

/* Splits s at its top-level relation operators.  r->n = 0 when there are
 * none, when a side is empty, or when the string is a list (a top-level
 * comma: "x=1,y=2" is two relations, compared as a list). */
static int rel_parse(const char *s, size_t n, rel_t *r) {
    r->n = 0;
    int depth = 0;
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        size_t len = mth_tok_len(s, i, n), ol;
        depth += mth_tok_delta(s + i, len);
        if (depth == 0 && len == 1 && s[i] == ',') { r->n = 0; return 0; }
        int op = depth == 0 ? rel_op_at(s, i, n, &ol) : -1;
        if (op >= 0) {
            if (r->n == MAX_REL || i == start) { r->n = 0; return 0; }
            r->part[r->n] = (span){s + start, i - start};
            r->op[r->n++] = op;
            start = i + ol;
            i += ol;
            continue;
        }
        i += len;
    }
    if (r->n && start == n) r->n = 0;
    if (r->n) r->part[r->n] = (span){s + start, n - start};
    return r->n;
}

static int rel_is_equation(const rel_t *r) {
    for (int k = 0; k < r->n; k++)
        if (r->op[k] != OP_EQ && r->op[k] != OP_IN) return 0;
    return r->n > 0;
}

static int rel_is_inequality(const rel_t *r) {
    for (int k = 0; k < r->n; k++)
        if (r->op[k] < OP_LT || r->op[k] > OP_GE) return 0;
    return r->n > 0;
}

/* A side made of names only ("x", "AB", "a_{37}", "(p,q)", "f(x)", "x+y"):
 * no digit outside subscripts and at least one letter. */
static int names_only(span x) {
    int letters = 0;
    for (size_t i = 0; i < x.n; i++) {
        char ch = x.p[i];
        if (ch == '_') {                       /* skip the subscript */
            if (i + 1 < x.n && x.p[i + 1] == '{') {
                int d = 0;
                for (i++; i < x.n; i++) {
                    if (x.p[i] == '{') d++;
                    else if (x.p[i] == '}' && --d == 0) break;
                }
            } else {
                i++;
            }
            continue;
        }
        if (mth_digit(ch) || ch == '.' || ch == '%') return 0;
        if (ch == '\\') {
            size_t len = mth_macro_len(x.p, i, x.n);
            if (mth_name_eq(x.p + i, len, "\\pi") || mth_name_eq(x.p + i, len, "\\infty")) return 0;
            letters += len > 2;
            i += len - 1;
            continue;
        }
        letters += mth_alpha(ch);
    }
    return letters > 0;
}

/* "x=5", "x=y=5", "(p,q)=(3,2)", "x\in[1,2]": an equation whose first side
 * names what it gives a value. */
static int rel_is_assignment(const rel_t *r) {
    return rel_is_equation(r) && names_only(r->part[0]);
}

/* An equation that gives a value by its last side: an assignment, a chain
 * ("x = 2+3 = 5"), a computation ("2+3=5", "2y_1+2y_2=40"), as Math-Verify
 * reads it; but not an equation set to zero ("5x-7y+4=0" is not the value
 * 0). */
static int rel_gives_value(const rel_t *r) {
    if (!rel_is_equation(r)) return 0;
    span last = r->part[r->n];
    if (r->n >= 2 || names_only(r->part[0]) || !(last.n == 1 && last.p[0] == '0')) return 1;
    char *s = span_dup(r->part[0]), *n = s ? orc_math_normalize(s) : NULL;
    mth_num v;
    int k = n && mth_eval_const(n, &v);
    free(s);
    free(n);
    return k;
}

/* "(L)-(R)": the difference of a relation's two sides, malloc'd. */
static char *difference(span l, span r) {
    size_t n = l.n + r.n + 6;
    char *s = malloc(n);
    if (s) snprintf(s, n, "(%.*s)-(%.*s)", (int)l.n, l.p, (int)r.n, r.p);
    return s;
}

/* f and g (normalised) agree up to a constant factor k != 0 at every probe
 * in both domains; sign > 0 or < 0 asks for that sign of k, 0 for any. */
static int proportional(const char *f, const char *g, int sign) {
    double k = 0;
    int ok = 0;
    unsigned long long uf, ug;
    for (int p = 0; p < N_PROBES; p++) {
        double x, y;
        int sf = mth_eval_probe(f, p, &x, &uf), sg = mth_eval_probe(g, p, &y, &ug);
        if (!sf && !sg) continue;
        if (sf != sg || uf != ug) return 0;
        if (fabs(x) < 1e-12 && fabs(y) < 1e-12) { ok++; continue; }
        if (fabs(x) < 1e-12 || fabs(y) < 1e-12) return 0;
        if (!k) {
            k = y / x;
            if ((sign > 0 && k < 0) || (sign < 0 && k > 0)) return 0;
        } else if (fabs(y - k * x) > PROBE_TOL * fmax(fabs(y), 1e-300)) {
            return 0;
        }
        ok++;
    }
    return ok >= MIN_PROBES && k != 0;
}

static int proportional_sides(span gl, span gr, span al, span ar, int sign) {
    char *f = difference(gl, gr), *g = difference(al, ar);
    char *fn = f ? orc_math_normalize(f) : NULL, *gn = g ? orc_math_normalize(g) : NULL;
    int r = fn && gn && proportional(fn, gn, sign);
    free(f); free(g); free(fn); free(gn);
    return r;
}

/* Two one-operator relations: sides in order, or swapped where the
 * operator allows (an inequality flips), or differences proportional. */
static int eq_relation2(span gl, int gop, span gr, span al, int aop, span ar,
                        cmp_ctx *c, int depth) {
    static const int FLIP[] = {OP_EQ, OP_IN, OP_GT, OP_GE, OP_LT, OP_LE, OP_NE, OP_APPROX};
    int same = gop == aop, flipped = FLIP[gop] == aop && gop != OP_IN;
    if (!same && !flipped) return 0;
    if (same && eq_span(gl, al, c, depth) && eq_span(gr, ar, c, depth)) return 1;
    if (flipped && eq_span(gl, ar, c, depth) && eq_span(gr, al, c, depth)) return 1;
    if (gop == OP_IN || gop == OP_NE) return 0;
    if (gop == OP_EQ) return proportional_sides(gl, gr, al, ar, 0);
    return proportional_sides(gl, gr, al, ar, same ? 1 : -1);
}

/* --------------------------------------------- inequalities as intervals */

typedef struct { char *lo, *hi; double vlo, vhi; int lo_open, hi_open; } ival;

/* The value of an endpoint: a constant or +-\infty. */
static int endpoint_value(span x, double *v) {
    char *s = span_dup(x), *n = s ? orc_math_normalize(s) : NULL;
    mth_num m;
    int ok = 0;
    if (n && !strcmp(n, "\\infty")) { *v = INFINITY; ok = 1; }
    else if (n && !strcmp(n, "-\\infty")) { *v = -INFINITY; ok = 1; }
    else if (n && mth_eval_const(n, &m)) { *v = m.v; ok = 1; }
    free(s);
    free(n);
    return ok;
}

/* One variable's name: "x", "x_{1}", "\theta". */
static int is_var(span x) {
    if (!x.n) return 0;
    if (x.p[0] == '\\') return mth_macro_len(x.p, 0, x.n) == x.n && x.n > 2;
    if (!mth_alpha(x.p[0])) return 0;
    if (x.n == 1) return 1;
    return x.p[1] == '_' && names_only(x);
}

static int span_same(span a, span b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

/* "x<3", "3\geq x", "-1\leq x<5" as an interval in *out, its variable in
 * *var.  0 when it is not one. */
static int ineq_interval(const rel_t *r, span *var, ival *out) {
    int v = -1;
    for (int k = 0; k <= r->n; k++)
        if (is_var(r->part[k])) {
            if (v >= 0) return 0;
            v = k;
        }
    if (v < 0 || r->n > 2 || (r->n == 2 && v != 1)) return 0;
    *var = r->part[v];
    *out = (ival){NULL, NULL, -INFINITY, INFINITY, 1, 1};
    for (int k = 0; k < r->n; k++) {
        int op = r->op[k];
        int var_left = k == v;                 /* "x op c" rather than "c op x" */
        span other = r->part[var_left ? k + 1 : k];
        int upper = (op == OP_LT || op == OP_LE) == var_left;
        int strict = op == OP_LT || op == OP_GT;
        double val;
        if (!endpoint_value(other, &val)) return 0;
        if (upper) { out->vhi = val; out->hi_open = strict; out->hi = span_dup(other); }
        else { out->vlo = val; out->lo_open = strict; out->lo = span_dup(other); }
    }
    return 1;
}

static void ival_free(ival *x) { free(x->lo); free(x->hi); }

static void ival_write(eng_buf *b, const ival *x) {
    eng_buf_printf(b, "%c%s,%s%c", x->lo_open ? '(' : '[', x->lo ? x->lo : "-\\infty",
                   x->hi ? x->hi : "\\infty", x->hi_open ? ')' : ']');
}

/* A list of inequalities in one variable ("x<1,x>2", what "x<1 or x>2"
 * becomes) as interval notation, malloc'd; NULL when s is not one.  Two
 * that overlap meant "and" (their intersection), else their union. */
static char *ineq_as_set(const char *s) {
    span *parts;
    size_t k = mth_split_top(s, strlen(s), ",", &parts);
    if (!parts || k > 2) { free(parts); return NULL; }
    ival iv[2] = {{0}};
    span var[2];
    size_t got = 0;
    for (; got < k; got++) {
        rel_t r;
        if (!rel_parse(parts[got].p, parts[got].n, &r) || !rel_is_inequality(&r) ||
            !ineq_interval(&r, &var[got], &iv[got]))
            break;
    }
    char *res = NULL;
    if (got == k && (k == 1 || span_same(var[0], var[1]))) {
        eng_buf b = {0};
        if (k == 1) {
            ival_write(&b, &iv[0]);
        } else {
            int first = iv[0].vlo <= iv[1].vlo ? 0 : 1;
            ival *x = &iv[first], *y = &iv[1 - first];
            if (y->vlo < x->vhi) {             /* overlap: the intersection */
                ival both = *x;
                both.lo = y->lo; both.vlo = y->vlo; both.lo_open = y->lo_open;
                if (y->vhi < x->vhi) { both.hi = y->hi; both.vhi = y->vhi; both.hi_open = y->hi_open; }
                ival_write(&b, &both);
            } else {
                ival_write(&b, x);
                eng_buf_adds(&b, "\\cup");
                ival_write(&b, y);
            }
        }
        res = eng_buf_take(&b);
    }
    for (size_t i = 0; i < got && i < 2; i++) ival_free(&iv[i]);
    free(parts);
    return res;
}

/* -------------------------------------------------------------- steps */

/* "x \approx 3.14" is the assignment x=3.14 and "a \approx 0.05 = 5\%" a
 * chain; "\frac{\pi}{4} \approx 0.785" is its exact side.  -1 when there
 * is no top-level \approx. */
static int cmp_approx(const char *g, const char *a, cmp_ctx *c, int depth, int gold_side) {
    const char *s = gold_side ? g : a;
    rel_t r;
    if (!rel_parse(s, strlen(s), &r)) return -1;
    int k = r.n - 1;
    while (k >= 0 && r.op[k] != OP_APPROX) k--;
    if (k < 0) return -1;
    eng_buf b = {0};
    size_t cut = (size_t)(r.part[k].p + r.part[k].n - s);
    if (k < r.n - 1 || (k == 0 && names_only(r.part[0]))) {
        eng_buf_add(&b, s, cut);                   /* read as "=" */
        eng_buf_addc(&b, '=');
        eng_buf_adds(&b, r.part[k + 1].p);
    } else {
        eng_buf_add(&b, s, cut);
    }
    char *t = eng_buf_take(&b);
    if (!t) return 0;
    span other = {gold_side ? a : g, strlen(gold_side ? a : g)};
    int res = gold_side ? eq_str_span(t, other, c, depth) : eq_span(other, (span){t, strlen(t)}, c, depth);
    free(t);
    return res;
}

/* An inequality in the reference against an interval or union: compared as
 * sets.  -1 when the reference is no inequality in one variable. */
static int cmp_ineq(const char *g, const char *a, cmp_ctx *c, int depth) {
    char *gs = ineq_as_set(g);
    if (!gs) return -1;
    rel_t r;
    char *as = ineq_as_set(a);
    int res = -1;
    if (as) res = eq_rec(gs, as, c, depth + 1);
    else if (!rel_parse(a, strlen(a), &r)) res = eq_rec(gs, a, c, depth + 1);
    free(gs);
    free(as);
    return res;
}

/* Bare lists ("1, 2"): against a list as multisets (in order with
 * ordered), against "\{..\}" as a set, against "(..)" in order when the
 * tuple is the reference and as a multiset when the list is. */
static int cmp_lists(const char *g, const char *a, cmp_ctx *c, int depth) {
    span *pg, *pa;
    size_t kg = mth_split_top(g, strlen(g), ",", &pg), ka = mth_split_top(a, strlen(a), ",", &pa);
    int r = -1;
    if (!pg || !pa) {
        r = 0;
    } else if (kg >= 2 && ka >= 2) {
        r = eq_lists_any(pg, kg, pa, ka, !c->ordered, c, depth);
    } else if (kg >= 2 || ka >= 2) {
        int single_is_gold = kg < 2;
        const char *s = single_is_gold ? g : a;
        span *list = single_is_gold ? pa : pg, inner, *pi = NULL;
        size_t kl = single_is_gold ? ka : kg, n = strlen(s), ki = 0;
        rel_t rel;
        if (rel_parse(s, n, &rel)) {
            r = -1;                            /* "(x,y)=(1,2)": a relation */
        } else if (set_of(s, n, &inner) || paren_of(s, n, &inner)) {
            int ordered = s[0] == '(' && single_is_gold;   /* sets never care */
            ki = mth_split_top(inner.p, inner.n, ",", &pi);
            r = pi && (single_is_gold ? eq_lists_any(pi, ki, list, kl, !ordered, c, depth)
                                      : eq_lists_any(list, kl, pi, ki, !ordered, c, depth));
        } else {
            span one = {s, n};
            r = single_is_gold ? eq_lists_pm(&one, 1, list, kl, c, depth)
                               : eq_lists_pm(list, kl, &one, 1, c, depth);
            if (r < 0) r = 0;
        }
        free(pi);
    }
    free(pg);
    free(pa);
    return r;
}

/* Relations, by the rules in the header comment.  -1 when neither side is
 * one. */
static int cmp_relation(const char *g, const char *a, cmp_ctx *c, int depth) {
    rel_t rg, ra;
    int ng = rel_parse(g, strlen(g), &rg), na = rel_parse(a, strlen(a), &ra);
    if (!ng && !na) return -1;
    span gs = {g, strlen(g)}, as = {a, strlen(a)};
    if (!ng)                                   /* "x = 2+3 = 5" gives 5 */
        return rel_gives_value(&ra) && eq_span(gs, ra.part[ra.n], c, depth);
    if (!na)
        return rel_is_assignment(&rg) && eq_span(rg.part[rg.n], as, c, depth);
    if (rel_is_assignment(&rg) && rel_is_assignment(&ra)) {   /* first name, last value */
        rg.part[1] = rg.part[rg.n];
        rg.n = 1;
        ra.part[1] = ra.part[ra.n];
        ra.n = 1;
    }
    if (rg.n == 1 && ra.n == 1) {
        int gop = rg.op[0] == OP_IN ? OP_EQ : rg.op[0], aop = ra.op[0] == OP_IN ? OP_EQ : ra.op[0];
        return eq_relation2(rg.part[0], gop, rg.part[1], ra.part[0], aop, ra.part[1], c, depth);
    }
    if (rg.n != ra.n) return 0;
    for (int k = 0; k < rg.n; k++)
        if (rg.op[k] != ra.op[k]) return 0;
    for (int k = 0; k <= rg.n; k++)
        if (!eq_span(rg.part[k], ra.part[k], c, depth)) return 0;
    return 1;
}

/* "\begin{pmatrix}...\end{pmatrix}", also "[\begin{matrix}...\end{matrix}]"
 * and "\begin{array}{cc}...\end{array}": gives the family and the body. */
static int matrix_of(const char *s, span *body, int *family) {
    static const char *const ROUND[] = {"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix",
                                        "array", NULL};
    static const char *const BARS[] = {"vmatrix", "Vmatrix", NULL};
    size_t n = strlen(s);
    span op, cl, in;
    if (mth_group_of(s, n, &op, &cl, &in) && op.n == 1 && op.p[0] != '{' && in.n > 7 &&
        strncmp(in.p, "\\begin{", 7) == 0) {
        s = in.p;                              /* brackets around the environment */
        n = in.n;
    }
    if (n < 7 || strncmp(s, "\\begin{", 7) != 0) return 0;
    const char *name = s + 7, *end = memchr(name, '}', n - 7);
    if (!end) return 0;
    size_t len = (size_t)(end - name);
    if (mth_in_list(name, len, ROUND)) *family = 1;
    else if (mth_in_list(name, len, BARS)) *family = 2 + (name[0] == 'V');
    else return 0;
    size_t tail = 6 + len;                       /* "\end{" + name + "}" */
    size_t head = 8 + len;                       /* "\begin{" + name + "}" */
    if (n < head + tail) return 0;
    const char *t = s + n - tail;
    if (strncmp(t, "\\end{", 5) != 0 || memcmp(t + 5, name, len) != 0 || t[5 + len] != '}') return 0;
    if (mth_name_eq(name, len, "array") && s[head] == '{') {   /* the column spec */
        const char *c = memchr(s + head, '}', n - head - tail);
        if (!c) return 0;
        head = (size_t)(c + 1 - s);
    }
    *body = (span){s + head, n - head - tail};
    return 1;
}

/* Rows of a matrix body (a trailing empty row from a final "\\" is dropped). */
static size_t matrix_rows(span body, span **rows) {
    size_t k = mth_split_top(body.p, body.n, "\\\\", rows);
    if (k > 1 && (*rows)[k - 1].n == 0) k--;
    return k;
}

static int cmp_matrix(const char *g, const char *a, cmp_ctx *c, int depth) {
    span bg, ba;
    int fg = 0, fa = 0, mg = matrix_of(g, &bg, &fg), ma = matrix_of(a, &ba, &fa);
    if (!mg && !ma) return -1;
    if (!mg || !ma || fg != fa) return 0;
    span *rg, *ra;
    size_t kg = matrix_rows(bg, &rg), ka = matrix_rows(ba, &ra);
    int r = rg && ra && kg == ka;
    for (size_t i = 0; r && i < kg; i++) {
        r = cmp_split(rg[i], ra[i], "&", 0, c, depth);
        if (r < 0) r = eq_span(rg[i], ra[i], c, depth);   /* one cell per row */
    }
    free(rg);
    free(ra);
    return r;
}

/* "\{..\}" against a set, a parenthesised tuple (as a set), or, with one
 * element, that element. */
static int cmp_set(const char *g, const char *a, cmp_ctx *c, int depth) {
    span ig, ia;
    size_t ng = strlen(g), na = strlen(a);
    int sg = set_of(g, ng, &ig), sa = set_of(a, na, &ia);
    if (!sg && !sa) return -1;
    if (!sg && !paren_of(g, ng, &ig)) ig = (span){g, ng};
    if (!sa && !paren_of(a, na, &ia)) ia = (span){a, na};
    span *pg, *pa;
    size_t kg = mth_split_top(ig.p, ig.n, ",", &pg), ka = mth_split_top(ia.p, ia.n, ",", &pa);
    int r = pg && pa && eq_lists_any(pg, kg, pa, ka, 1, c, depth);
    free(pg);
    free(pa);
    return r;
}

/* "(a,b)", "[a,b)", ...: a bracketed group with a top-level comma. */
static int tuple_of(const char *s, span *open, span *close, span **parts, size_t *k) {
    span inner;
    *parts = NULL;
    if (!mth_group_of(s, strlen(s), open, close, &inner) || open->n != 1 ||
        (open->p[0] != '(' && open->p[0] != '['))
        return 0;
    *k = mth_split_top(inner.p, inner.n, ",", parts);
    if (*k >= 2) return 1;
    free(*parts);
    *parts = NULL;
    return 0;
}

static int cmp_tuple(const char *g, const char *a, cmp_ctx *c, int depth) {
    span og, cg, oa, ca, *pg, *pa;
    size_t kg = 0, ka = 0;
    int tg = tuple_of(g, &og, &cg, &pg, &kg), ta = tuple_of(a, &oa, &ca, &pa, &ka);
    int r = -1;
    if (tg || ta)
        r = tg && ta && og.p[0] == oa.p[0] && cg.n == 1 && ca.n == 1 && cg.p[0] == ca.p[0] &&
            eq_lists(pg, kg, pa, ka, 0, c, depth);
    free(pg);
    free(pa);
    return r;
}

/* --------------------------------------------------------------- scalars */

/* Digits of an integer literal without sign and leading zeros; NULL if s is
 * not one.  *neg gets the sign. */
static const char *int_digits(const char *s, int *neg) {
    *neg = *s == '-';
    if (*s == '-' || *s == '+') s++;
    if (!*s) return NULL;
    for (const char *p = s; *p; p++)
        if (!mth_digit(*p)) return NULL;
    while (*s == '0' && s[1]) s++;
    return s;
}

/* "0.25", "-3.5": a number written with decimals. */
static int is_decimal(const char *s) {
    if (*s == '-' || *s == '+') s++;
    int dot = 0, digits = 0;
    for (; *s; s++) {
        if (*s == '.') { if (dot++) return 0; }
        else if (mth_digit(*s)) digits++;
        else return 0;
    }
    return dot && digits;
}

static int is_word(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!mth_alpha(s[n])) return 0;
    return n >= 2;
}

/* Two values: a decimal on either side agrees when both round alike at 6
 * decimal places (as Math-Verify rounds); exact rationals must be equal;
 * anything else agrees to EXPR_TOL. */
static int num_match(mth_num x, mth_num y, int decimal) {
    double m = fmax(fabs(x.v), fabs(y.v));
    if (decimal) {
        if (m >= 1e9) return fabs(x.v - y.v) <= 1e-15 * m;
        return llround(x.v * 1e6) == llround(y.v * 1e6);
    }
    if (x.exact && y.exact) return x.p == y.p && x.q == y.q;
    double d = fabs(x.v - y.v);
    return d <= EXPR_TOL * m || d <= 1e-12;
}

/* Both sides are expressions in the same variables (or one is a constant:
 * "\sin^2 x+\cos^2 x" is 1) and agree wherever both are defined: at least
 * MIN_PROBES points, none where only one is. */
static int probe_eq(const char *g, const char *a) {
    int ok = 0;
    for (int p = 0; p < N_PROBES; p++) {
        double x, y;
        unsigned long long ug = 0, ua = 0;
        int sg = mth_eval_probe(g, p, &x, &ug), sa = mth_eval_probe(a, p, &y, &ua);
        if (!sg && !sa) continue;
        if (sg != sa || (ug != ua && ug && ua) || (!ug && !ua)) return 0;
        double d = fabs(x - y);
        if (d > PROBE_TOL * fmax(fabs(x), fabs(y)) && d > 1e-10) return 0;
        ok++;
    }
    return ok >= MIN_PROBES;
}

static int scalar_eq(const char *g, const char *a);

/* "50%" against "50%", "50" (MATH answers drop the sign) or "0.5". */
static int percent_eq(const char *g, const char *a) {
    size_t ng = strlen(g), na = strlen(a);
    int pg = g[ng - 1] == '%', pa = a[na - 1] == '%';
    char *tg = strndup(g, ng - pg), *ta = strndup(a, na - pa);
    int r = tg && ta && scalar_eq(tg, ta);
    if (!r && tg && ta && pg != pa) {
        const char *p = pg ? tg : ta;
        size_t n = strlen(p) + 8;
        char *scaled = malloc(n);
        mth_num x, y;
        if (scaled) {
            snprintf(scaled, n, "(%s)/100", p);
            r = mth_eval_const(scaled, &x) && mth_eval_const(pg ? ta : tg, &y) &&
                num_match(x, y, is_decimal(tg) || is_decimal(ta));
        }
        free(scaled);
    }
    free(tg);
    free(ta);
    return r;
}

static int scalar_eq(const char *g, const char *a) {
    size_t ng = strlen(g), na = strlen(a);
    if (!ng || !na) return 0;
    if ((ng > 1 && g[ng - 1] == '%') || (na > 1 && a[na - 1] == '%')) return percent_eq(g, a);
    int negg, nega;
    const char *dg = int_digits(g, &negg), *da = int_digits(a, &nega);
    if (dg && da)          /* integers are exact: 1000000 is not 1000001 */
        return strcmp(dg, da) == 0 && (negg == nega || strcmp(dg, "0") == 0);
    if (is_word(g) && is_word(a)) return strcasecmp(g, a) == 0;
    mth_num x, y;
    int kg = mth_eval_const(g, &x), ka = mth_eval_const(a, &y);
    if (kg && ka) return num_match(x, y, is_decimal(g) || is_decimal(a));
    return probe_eq(g, a);
}

/* ------------------------------------------------------------------ top */

static int eq_rec(const char *g, const char *a, cmp_ctx *c, int depth) {
    if (strcmp(g, a) == 0) return 1;
    if (!*g || !*a || depth > CMP_MAX_DEPTH) return 0;
    span sg = {g, strlen(g)}, sa = {a, strlen(a)};
    int r;
    if ((r = cmp_approx(g, a, c, depth, 1)) >= 0) return r;
    if ((r = cmp_approx(g, a, c, depth, 0)) >= 0) return r;
    if ((r = cmp_ineq(g, a, c, depth)) >= 0) return r;
    if ((r = cmp_lists(g, a, c, depth)) >= 0) return r;
    if ((r = cmp_relation(g, a, c, depth)) >= 0) return r;
    if ((r = cmp_split(sg, sa, "\\cup", 1, c, depth)) >= 0) return r;
    if ((r = cmp_matrix(g, a, c, depth)) >= 0) return r;
    if ((r = cmp_set(g, a, c, depth)) >= 0) return r;
    if ((r = cmp_tuple(g, a, c, depth)) >= 0) return r;
    if ((r = eq_lists_pm(&sg, 1, &sa, 1, c, depth)) >= 0) return r;
    return scalar_eq(g, a);
}

static int equiv_dir(const char *ng, const char *na, cmp_ctx *c) {
    return ng && na && *ng && *na && eq_rec(ng, na, c, 0);
}

int orc_math_equiv_opts(const char *a, const char *b, const orc_math_opts *o) {
    cmp_ctx c = {.ordered = o ? o->ordered : 0, .budget = CMP_BUDGET};
    char *na = orc_math_normalize(a), *nb = orc_math_normalize(b);
    int r = equiv_dir(na, nb, &c) || equiv_dir(nb, na, &c);
    free(na);
    free(nb);
    return r;
}

int orc_math_equiv(const char *a, const char *b) { return orc_math_equiv_opts(a, b, NULL); }

int orc_math_equiv_gold(const char *gold, const char *answer) {
    cmp_ctx c = {.budget = CMP_BUDGET};
    char *ng = orc_math_normalize(gold), *na = orc_math_normalize(answer);
    int r = equiv_dir(ng, na, &c);
    free(ng);
    free(na);
    return r;
}
