/* math_eval.c — evaluation of normalised answers.
 *
 * A recursive-descent evaluator reads numbers, + - * / ^ !, implicit
 * products, \frac, \sqrt, \binom, |..|, \lfloor/\lceil, \pi, e, the usual
 * functions (\sin ... \ln, \log base 10 or \log_b) and parentheses and
 * braces.  Values carry an exact rational beside the double while every step
 * stays rational (128-bit intermediates, |p|, |q| < 2^62), so 10^6 and
 * 999999 differ although their doubles are within 1e-6.  Variables (letters,
 * "x_{1}", Greek macros) take values drawn per probe from a hash of their
 * name: deterministic, and the same name gets the same value on both sides. */
#include "math_int.h"
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_MAX_DEPTH 200          /* recursion (about 65 nested parens) */
#define PI_VAL     3.14159265358979323846
#define E_VAL      2.71828182845904523536

typedef __int128 i128;

static mth_num inexact(double v) { return (mth_num){v, 0, 1, 0}; }

/* p/q reduced (q != 0). */
static mth_num ratio(i128 p, i128 q) {
    if (q < 0) { p = -p; q = -q; }
    i128 a = p < 0 ? -p : p, b = q;
    while (b) { i128 t = a % b; a = b; b = t; }
    if (a > 1) { p /= a; q /= a; }
    return (mth_num){(double)p / (double)q, p, q, 1};
}

static mth_num num_int(long long k) { return (mth_num){(double)k, k, 1, 1}; }

/* x*y + z*w exactly, or 0 on overflow. */
static int mul_add(i128 x, i128 y, i128 z, i128 w, i128 *out) {
    i128 a, b;
    return !__builtin_mul_overflow(x, y, &a) && !__builtin_mul_overflow(z, w, &b) &&
           !__builtin_add_overflow(a, b, out);
}

static mth_num num_add(mth_num a, mth_num b) {
    i128 p, q;
    if (a.exact && b.exact && mul_add(a.p, b.q, b.p, a.q, &p) && mul_add(a.q, b.q, 0, 0, &q))
        return ratio(p, q);
    return inexact(a.v + b.v);
}
static mth_num num_neg(mth_num a) { a.v = -a.v; a.p = -a.p; return a; }
static mth_num num_mul(mth_num a, mth_num b) {
    i128 p, q;
    if (a.exact && b.exact && mul_add(a.p, b.p, 0, 0, &p) && mul_add(a.q, b.q, 0, 0, &q))
        return ratio(p, q);
    return inexact(a.v * b.v);
}
/* b must not be 0 */
static mth_num num_div(mth_num a, mth_num b) {
    i128 p, q;
    if (a.exact && b.exact && mul_add(a.p, b.q, 0, 0, &p) && mul_add(a.q, b.p, 0, 0, &q))
        return ratio(p, q);
    return inexact(a.v / b.v);
}
static int num_is_int(mth_num a) { return a.exact && a.q == 1; }
/* An exact integer that fits a long long. */
static int num_small_int(mth_num a, long long lim) { return num_is_int(a) && a.p >= -lim && a.p <= lim; }

/* Exact integer k-th root of x >= 0, or -1. */
static i128 iroot(i128 x, long long k) {
    if (x < 0) return -1;
    if (x < 2) return x;
    i128 r = (i128)(pow((double)x, 1.0 / (double)k) + 0.5);
    for (i128 c = r > 2 ? r - 2 : 0; c <= r + 2; c++) {
        i128 t = 1;
        int over = 0;
        for (long long j = 0; j < k && !over && t <= x; j++) over = __builtin_mul_overflow(t, c, &t);
        if (!over && t == x) return c;
    }
    return -1;
}

/* ------------------------------------------------------------- parser */

typedef struct {
    const char *s;
    size_t i, n;
    int depth, bad, in_abs;
    int probe;                   /* -1: no variables */
    unsigned long long used;     /* signature of the variables read */
} ev_t;

static mth_num ev_expr(ev_t *e);
static mth_num ev_power(ev_t *e);
static mth_num ev_unary(ev_t *e);

static mth_num ev_fail(ev_t *e) { e->bad = 1; return inexact(0); }
static void ev_ws(ev_t *e) { while (e->i < e->n && e->s[e->i] == ' ') e->i++; }
static int ev_at(ev_t *e, char c) { ev_ws(e); return e->i < e->n && e->s[e->i] == c; }

/* Length of the control word at the cursor if it is name, else 0. */
static size_t ev_macro(ev_t *e, const char *name) {
    ev_ws(e);
    if (e->i >= e->n || e->s[e->i] != '\\') return 0;
    size_t len = mth_macro_len(e->s, e->i, e->n);
    return mth_name_eq(e->s + e->i, len, name) ? len : 0;
}

static int ev_enter(ev_t *e) {
    if (++e->depth > EVAL_MAX_DEPTH) { e->bad = 1; return 0; }
    return 1;
}

static mth_num ev_group(ev_t *e, char open, char close) {
    if (!ev_at(e, open)) return ev_fail(e);
    e->i++;
    int abs_saved = e->in_abs;
    e->in_abs = 0;
    mth_num v = ev_expr(e);
    e->in_abs = abs_saved;
    if (e->bad || !ev_at(e, close)) return ev_fail(e);
    e->i++;
    return v;
}

/* Digits with an optional decimal part; no exponent, no "inf" or hex.
 * Exact when it has at most 36 digits. */
static mth_num ev_number(ev_t *e, int *is_int) {
    size_t start = e->i, digits = 0;
    i128 p = 0, q = 1;
    int frac = 0;
    *is_int = 1;
    while (e->i < e->n) {
        char c = e->s[e->i];
        if (mth_digit(c)) {
            if (digits < 36) {
                p = p * 10 + (c - '0');
                if (frac) q *= 10;
            }
            if (p || frac) digits++;
            e->i++;
        } else if (c == '.' && !frac && e->i + 1 < e->n && mth_digit(e->s[e->i + 1])) {
            frac = 1;
            *is_int = 0;
            e->i++;
        } else {
            break;
        }
    }
    if (e->i == start) return ev_fail(e);
    if (digits <= 36) return ratio(p, q);
    char buf[64];
    size_t len = e->i - start;
    if (len >= sizeof buf) return inexact(HUGE_VAL);   /* fails the finite check */
    memcpy(buf, e->s + start, len);
    buf[len] = 0;
    return inexact(strtod(buf, NULL));
}

/* "{123}" at p[*k]: reads the integer and moves *k past it. */
static int brace_int(const char *p, size_t left, size_t *k, long long *out) {
    size_t j = *k;
    if (j >= left || p[j] != '{') return 0;
    j++;
    long long v = 0;
    size_t d0 = j;
    while (j < left && mth_digit(p[j]) && j - d0 < 18) v = v * 10 + (p[j++] - '0');
    if (j == d0 || j >= left || p[j] != '}') return 0;
    *k = j + 1;
    *out = v;
    return 1;
}

/* After an integer: "\frac{4}{5}" with integer parts makes a mixed number
 * (1\frac{4}{5} = 9/5), as MATH writes them. */
static int ev_mixed(ev_t *e, mth_num *add) {
    const char *p = e->s + e->i;
    size_t left = e->n - e->i, k = 5;
    long long num, den;
    if (left < 5 || memcmp(p, "\\frac", 5) != 0 || (left > 5 && mth_alpha(p[5]))) return 0;
    if (!brace_int(p, left, &k, &num) || !brace_int(p, left, &k, &den) || den == 0) return 0;
    e->i += k;
    *add = ratio(num, den);
    return 1;
}

/* x^(1/k), exact when x is a rational k-th power. */
static mth_num ev_root(ev_t *e, mth_num x, mth_num k) {
    if (e->bad) return x;
    if (!num_small_int(k, 1000) || k.p <= 0) return ev_fail(e);
    long long kk = (long long)k.p;
    int odd = kk % 2 == 1;
    if (x.v < 0 && !odd) return ev_fail(e);
    if (x.exact) {
        int sp = x.p < 0 ? -1 : 1;
        i128 a = iroot(sp * x.p, kk), b = iroot(x.q, kk);
        if (a >= 0 && b > 0) return ratio(sp * a, b);
    }
    double r = pow(fabs(x.v), 1.0 / (double)kk);
    return inexact(x.v < 0 ? -r : r);
}

static mth_num ev_pow(ev_t *e, mth_num b, mth_num x) {
    if (e->bad) return b;
    if (b.exact && num_small_int(x, 256)) {
        mth_num r = num_int(1), base = b;
        long long k = (long long)(x.p < 0 ? -x.p : x.p);
        while (k && r.exact) {
            if (k & 1) r = num_mul(r, base);
            base = num_mul(base, base);
            k >>= 1;
        }
        if (r.exact) {
            if (x.p >= 0) return r;
            if (r.p == 0) return ev_fail(e);
            return num_div(num_int(1), r);
        }
    }
    if (x.exact && x.q > 1 && x.q <= 64) {       /* b^(p/q) = (b^(1/q))^p */
        mth_num root = ev_root(e, b, num_int((long long)x.q));
        return e->bad || !num_small_int((mth_num){0, x.p, 1, 1}, 1ll << 40) ? root
             : ev_pow(e, root, num_int((long long)x.p));
    }
    if (b.v == 0 && x.v < 0) return ev_fail(e);
    return inexact(pow(b.v, x.v));
}

static mth_num ev_factorial(ev_t *e, mth_num v) {
    if (!num_small_int(v, 170) || v.p < 0) return ev_fail(e);
    mth_num r = num_int(1);
    for (long long k = 2; k <= (long long)v.p; k++) r = num_mul(r, num_int(k));
    return r;
}

static mth_num ev_binom(ev_t *e, mth_num n, mth_num k) {
    if (!num_small_int(n, 1000) || !num_small_int(k, 1000) || k.p < 0 || n.p < 0) return ev_fail(e);
    if (k.p > n.p) return num_int(0);
    mth_num r = num_int(1);
    long long nn = (long long)n.p, kk = (long long)k.p;
    for (long long j = 1; j <= kk; j++) r = num_div(num_mul(r, num_int(nn - kk + j)), num_int(j));
    return r;
}

/* A variable's value at a probe: from a hash of its name, in [0.5, 2.5) on
 * the first probes and of either sign (or up to 6.5) on later ones. */
static mth_num ev_var(ev_t *e, const char *name, size_t len) {
    if (e->probe < 0) return ev_fail(e);
    uint64_t h = 1469598103934665603ull;
    for (size_t k = 0; k < len; k++) h = (h ^ (unsigned char)name[k]) * 1099511628211ull;
    e->used |= 1ull << (h % 64);
    double u = fmod((double)(h % 1000003) * 0.7548776662466927 + (e->probe + 1) * 0.5698402909980532, 1.0);
    double v = 0.5 + 2.0 * u;
    if (e->probe == 3 || (e->probe >= 4 && e->probe < 6 && ((h >> (7 + e->probe)) & 1))) v = -v;
    if (e->probe >= 6) v = 0.5 + 6.0 * u;
    return inexact(v);
}

static int ev_starts_operand(ev_t *e);

/* Is a function name next ("\cos", "sin")? */
static int ev_at_func(ev_t *e) {
    ev_ws(e);
    size_t i = e->i, j = i;
    if (i < e->n && e->s[i] == '\\') { i++; j = i; }
    while (j < e->n && mth_alpha(e->s[j])) j++;
    return j > i && mth_is_func_name(e->s + i, j - i);
}

/* A bare function argument: an implicit product up to an operator or the
 * next function ("\sin 2x \cos x" = sin(2x) cos(x)). */
static mth_num ev_func_arg(ev_t *e) {
    mth_num v = ev_power(e);
    while (!e->bad && ev_starts_operand(e) && !ev_at_func(e)) v = num_mul(v, ev_power(e));
    return v;
}

/* A function applied to what follows: "(..)", "{..}", or a bare implicit
 * product ("\sin 2x" = sin(2x)); a power after the name applies to the
 * result ("\sin^2 x"). */
static mth_num ev_func(ev_t *e, const char *name, size_t len) {
    mth_num power = num_int(1), base = num_int(10);
    int has_base = 0;
    if (ev_at(e, '^')) {
        e->i++;
        power = ev_at(e, '{') ? ev_group(e, '{', '}') : ev_power(e);
    }
    if (ev_at(e, '_')) {
        e->i++;
        base = ev_at(e, '{') ? ev_group(e, '{', '}') : ev_power(e);
        has_base = 1;
    }
    mth_num x;
    if (ev_at(e, '(')) x = ev_group(e, '(', ')');
    else if (ev_at(e, '{')) x = ev_group(e, '{', '}');
    else x = ev_func_arg(e);
    if (e->bad) return x;
    double v = x.v, r;
    if (mth_name_eq(name, len, "sin")) r = sin(v);
    else if (mth_name_eq(name, len, "cos")) r = cos(v);
    else if (mth_name_eq(name, len, "tan")) r = tan(v);
    else if (mth_name_eq(name, len, "cot")) r = 1 / tan(v);
    else if (mth_name_eq(name, len, "sec")) r = 1 / cos(v);
    else if (mth_name_eq(name, len, "csc")) r = 1 / sin(v);
    else if (mth_name_eq(name, len, "arcsin")) r = fabs(v) <= 1 ? asin(v) : NAN;
    else if (mth_name_eq(name, len, "arccos")) r = fabs(v) <= 1 ? acos(v) : NAN;
    else if (mth_name_eq(name, len, "arctan")) r = atan(v);
    else if (mth_name_eq(name, len, "sinh")) r = sinh(v);
    else if (mth_name_eq(name, len, "cosh")) r = cosh(v);
    else if (mth_name_eq(name, len, "tanh")) r = tanh(v);
    else if (mth_name_eq(name, len, "exp")) r = exp(v);
    else if (mth_name_eq(name, len, "sqrt")) return ev_pow(e, ev_root(e, x, num_int(2)), power);
    else if (mth_name_eq(name, len, "ln") || mth_name_eq(name, len, "log")) {
        if (v <= 0) return ev_fail(e);
        if (mth_name_eq(name, len, "ln") && !has_base) r = log(v);
        else if (base.v <= 0 || base.v == 1) return ev_fail(e);
        else r = log(v) / log(base.v);
        /* log_b of an exact power of b is exact: \log_2 8 = 3 */
        double k = round(r);
        if (num_is_int(base) && fabs(r - k) < 1e-12 && fabs(k) <= 62) {
            mth_num t = ev_pow(e, base, num_int((long long)k));
            if (t.exact && x.exact && t.p == x.p && t.q == x.q) return ev_pow(e, num_int((long long)k), power);
        }
    } else return ev_fail(e);
    if (!isfinite(r)) return ev_fail(e);
    return ev_pow(e, inexact(r), power);
}

static mth_num ev_macro_primary(ev_t *e) {
    size_t len = mth_macro_len(e->s, e->i, e->n);
    const char *m = e->s + e->i;
    if (mth_name_eq(m, len, "\\pi")) { e->i += len; return inexact(PI_VAL); }
    if (mth_name_eq(m, len, "\\frac") || mth_name_eq(m, len, "\\binom")) {
        e->i += len;
        mth_num a = ev_group(e, '{', '}'), b = ev_group(e, '{', '}');
        if (e->bad) return a;
        if (m[1] == 'b') return ev_binom(e, a, b);
        if (b.v == 0) return ev_fail(e);
        return num_div(a, b);
    }
    if (mth_name_eq(m, len, "\\sqrt")) {
        e->i += len;
        mth_num k = ev_at(e, '[') ? ev_group(e, '[', ']') : num_int(2);
        mth_num x = ev_at(e, '(') ? ev_group(e, '(', ')') : ev_group(e, '{', '}');
        return ev_root(e, x, k);
    }
    if (mth_name_eq(m, len, "\\lfloor") || mth_name_eq(m, len, "\\lceil")) {
        int fl = m[2] == 'f';
        e->i += len;
        mth_num x = ev_expr(e);
        size_t cl = ev_macro(e, fl ? "\\rfloor" : "\\rceil");
        if (e->bad || !cl) return ev_fail(e);
        e->i += cl;
        if (x.exact) {
            i128 f = x.p / x.q - (x.p % x.q != 0 && x.p < 0);
            return ratio(fl ? f : f + (x.p % x.q != 0), 1);
        }
        return inexact(fl ? floor(x.v) : ceil(x.v));
    }
    if (len > 1 && mth_is_func_name(m + 1, len - 1)) {
        e->i += len;
        return ev_func(e, m + 1, len - 1);
    }
    static const char *const GREEK[] = {
        "\\alpha", "\\beta", "\\gamma", "\\delta", "\\epsilon", "\\varepsilon", "\\theta",
        "\\vartheta", "\\lambda", "\\mu", "\\nu", "\\rho", "\\sigma", "\\tau", "\\phi",
        "\\varphi", "\\psi", "\\omega", "\\xi", "\\eta", "\\kappa", "\\zeta", "\\chi", NULL};
    if (mth_in_list(m, len, GREEK)) {
        e->i += len;
        return ev_var(e, m, len);
    }
    return ev_fail(e);
}

/* A letter run that names a function or pi; otherwise its first letter
 * alone, a variable (with its subscript: "x_1", "a_{37}") or e, Euler's
 * number.  The following letters are read as further factors, so "ab^2"
 * is a times b squared.  "1e5" is refused (an exponent or a product?). */
static mth_num ev_letters(ev_t *e) {
    size_t j = e->i;
    while (j < e->n && mth_alpha(e->s[j])) j++;
    const char *w = e->s + e->i;
    size_t len = j - e->i;
    if (mth_is_func_name(w, len)) { e->i = j; return ev_func(e, w, len); }
    if (len == 2 && w[0] == 'p' && w[1] == 'i') { e->i = j; return inexact(PI_VAL); }
    size_t t = e->i + 1;
    if (w[0] == 'e') {
        if (e->i > 0 && mth_digit(e->s[e->i - 1]) && t < e->n &&
            (mth_digit(e->s[t]) || e->s[t] == '-' || e->s[t] == '+'))
            return ev_fail(e);
        e->i = t;
        return inexact(E_VAL);
    }
    if (t < e->n && e->s[t] == '_') {             /* x_1, a_{37} */
        t++;
        if (t < e->n && e->s[t] == '{') {
            while (t < e->n && e->s[t] != '}') t++;
            if (t >= e->n) return ev_fail(e);
            t++;
        } else if (t < e->n && mth_alnum(e->s[t])) {
            t++;
        } else {
            return ev_fail(e);
        }
    }
    mth_num v = ev_var(e, w, t - e->i);
    e->i = t;
    return v;
}

static mth_num ev_primary(ev_t *e) {
    ev_ws(e);
    if (e->i >= e->n) return ev_fail(e);
    char c = e->s[e->i];
    if (mth_digit(c) || c == '.') {
        int is_int;
        mth_num v = ev_number(e, &is_int), add;
        if (!e->bad && is_int && ev_mixed(e, &add)) v = num_add(v, add);
        return v;
    }
    if (c == '(') return ev_group(e, '(', ')');
    if (c == '{') return ev_group(e, '{', '}');
    if (c == '|' && !e->in_abs) {
        e->i++;
        e->in_abs++;
        mth_num v = ev_expr(e);
        e->in_abs--;
        if (e->bad || !ev_at(e, '|')) return ev_fail(e);
        e->i++;
        return v.v < 0 ? num_neg(v) : v;
    }
    if (c == '\\') return ev_macro_primary(e);
    if (mth_alpha(c)) return ev_letters(e);
    return ev_fail(e);
}

/* primary, then any number of ^exponent and ! */
static mth_num ev_power(ev_t *e) {
    if (!ev_enter(e)) return inexact(0);
    mth_num v = ev_primary(e);
    while (!e->bad) {
        if (ev_at(e, '!')) {
            e->i++;
            v = ev_factorial(e, v);
        } else if (ev_at(e, '^')) {
            e->i++;
            mth_num x = ev_at(e, '{') ? ev_group(e, '{', '}')
                      : ev_at(e, '-') ? (e->i++, num_neg(ev_primary(e))) : ev_primary(e);
            v = ev_pow(e, v, x);
        } else {
            break;
        }
    }
    e->depth--;
    return v;
}

static mth_num ev_unary(ev_t *e) {
    if (!ev_enter(e)) return inexact(0);
    mth_num v;
    if (ev_at(e, '-')) { e->i++; v = num_neg(ev_unary(e)); }
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
    if (mth_digit(c) || c == '.' || c == '(' || c == '{' || mth_alpha(c)) return 1;
    if (c == '|') return !e->in_abs;
    if (c != '\\') return 0;
    size_t len = mth_macro_len(e->s, e->i, e->n);
    static const char *const NOT_OPERAND[] = {
        "\\cdot", "\\times", "\\div", "\\rfloor", "\\rceil", "\\pm", "\\mp", NULL};
    return len > 2 && !mth_in_list(e->s + e->i, len, NOT_OPERAND);
}

static mth_num ev_term(ev_t *e) {
    mth_num v = ev_unary(e);
    size_t len = 0;
    while (!e->bad) {
        if (ev_at(e, '*')) { e->i++; v = num_mul(v, ev_unary(e)); }
        else if ((len = ev_macro(e, "\\cdot")) || (len = ev_macro(e, "\\times"))) {
            e->i += len;
            v = num_mul(v, ev_unary(e));
        } else if (ev_at(e, '/') || (len = ev_macro(e, "\\div"))) {
            e->i += ev_at(e, '/') ? 1 : len;
            mth_num d = ev_unary(e);
            if (d.v == 0) return ev_fail(e);
            v = num_div(v, d);
        } else if (ev_starts_operand(e)) {
            v = num_mul(v, ev_power(e));
        } else {
            break;
        }
    }
    return v;
}

static mth_num ev_expr(ev_t *e) {
    if (!ev_enter(e)) return inexact(0);
    mth_num v = ev_term(e);
    while (!e->bad) {
        if (ev_at(e, '+')) { e->i++; v = num_add(v, ev_term(e)); }
        else if (ev_at(e, '-')) { e->i++; v = num_add(v, num_neg(ev_term(e))); }
        else break;
    }
    e->depth--;
    return v;
}

static int eval_str(const char *s, int probe, mth_num *out, unsigned long long *used) {
    ev_t e = {.s = s, .n = strlen(s), .probe = probe};
    mth_num v = ev_expr(&e);
    ev_ws(&e);
    if (e.bad || e.i != e.n || !isfinite(v.v)) return 0;
    *out = v;
    if (used) *used = e.used;
    return 1;
}

int mth_eval_const(const char *s, mth_num *out) { return eval_str(s, -1, out, NULL); }

int mth_eval_probe(const char *s, int probe, double *out, unsigned long long *used) {
    mth_num v;
    if (!eval_str(s, probe, &v, used)) return 0;
    *out = v.v;
    return 1;
}

/* "x=4": the value of a one-variable assignment, as the answer reads. */
static const char *assigned_value(const char *s) {
    const char *eq = strchr(s, '=');
    if (!eq || strchr(eq + 1, '=') || eq == s) return s;
    for (const char *p = s; p < eq; p++)
        if (!mth_alnum(*p) && *p != '_' && *p != '{' && *p != '}' && *p != '\\') return s;
    return mth_alpha(s[0]) || s[0] == '\\' ? eq + 1 : s;
}

int orc_math_eval(const char *s, double *out) {
    char *t = orc_math_normalize(s);
    mth_num v;
    int ok = t && *t && mth_eval_const(assigned_value(t), &v);
    free(t);
    if (ok && out) *out = v.v;
    return ok;
}
