/* tool_calc.c — the calculator tool: a small recursive-descent evaluator
 * for arithmetic.  Only numbers, operators, a fixed list of functions and two
 * constants are understood; nothing is ever executed.
 *
 *   expr    := term (("+" | "-") term)*
 *   term    := unary (("*" | "/" | "%") unary)*
 *   unary   := ("-" | "+") unary | power
 *   power   := primary (("^" | "**") unary)?      right-associative; -2^2 = -4
 *   primary := number | "(" expr ")" | name | name "(" expr ("," expr)* ")"
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "tool_internal.h"

#define MAX_NEST 64

typedef struct calc {
    const char *s;      /* normalised expression */
    size_t i;
    int depth;
    eng_err *err;
    int failed;
} calc;

static double expr(calc *c);

static double bad(calc *c, const char *what) {
    if (!c->failed) {
        c->failed = 1;
        if (c->s[c->i])
            eng_seterr(c->err, ENG_EINVAL, "%s at position %zu ('%c')", what, c->i + 1, c->s[c->i]);
        else
            eng_seterr(c->err, ENG_EINVAL, "%s at the end of the expression", what);
    }
    return 0;
}

static double fail_msg(calc *c, const char *msg) {
    if (!c->failed) {
        c->failed = 1;
        eng_seterr(c->err, ENG_EINVAL, "%s", msg);
    }
    return 0;
}

static void skip(calc *c) {
    while (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r')
        c->i++;
}

static int eat(calc *c, char ch) {
    skip(c);
    if (c->s[c->i] != ch) return 0;
    c->i++;
    return 1;
}

static double number(calc *c) {
    size_t st = c->i, i = c->i;
    while (isdigit((unsigned char)c->s[i])) i++;
    if (c->s[i] == '.') {
        i++;
        while (isdigit((unsigned char)c->s[i])) i++;
    }
    if (i == st + 1 && c->s[st] == '.') return bad(c, "bad number");
    if (c->s[i] == 'e' || c->s[i] == 'E') {   /* exponent only when digits follow */
        size_t j = i + 1;
        if (c->s[j] == '+' || c->s[j] == '-') j++;
        if (isdigit((unsigned char)c->s[j])) {
            while (isdigit((unsigned char)c->s[j])) j++;
            i = j;
        }
    }
    char tmp[64];
    if (i - st >= sizeof tmp) return bad(c, "number too long");
    memcpy(tmp, c->s + st, i - st);
    tmp[i - st] = 0;
    c->i = i;
    return strtod(tmp, NULL);
}

typedef struct fn { const char *name; int min_args, max_args; } fn;
static const fn FUNCS[] = {
    {"sqrt", 1, 1}, {"abs", 1, 1}, {"floor", 1, 1}, {"ceil", 1, 1}, {"ln", 1, 1},
    {"log", 1, 2}, {"exp", 1, 1}, {"sin", 1, 1}, {"cos", 1, 1}, {"tan", 1, 1},
    {"min", 1, 64}, {"max", 1, 64},
};

static double apply(calc *c, const char *f, const double *a, int n) {
    double x = a[0];
    if (!strcmp(f, "sqrt")) return x < 0 ? fail_msg(c, "sqrt of a negative number") : sqrt(x);
    if (!strcmp(f, "abs")) return fabs(x);
    if (!strcmp(f, "floor")) return floor(x);
    if (!strcmp(f, "ceil")) return ceil(x);
    if (!strcmp(f, "exp")) return exp(x);
    if (!strcmp(f, "sin")) return sin(x);
    if (!strcmp(f, "cos")) return cos(x);
    if (!strcmp(f, "tan")) return tan(x);
    if (!strcmp(f, "ln") || !strcmp(f, "log")) {
        if (x <= 0) return fail_msg(c, "logarithm of a number <= 0");
        if (!strcmp(f, "ln")) return log(x);
        if (n == 1) return log10(x);
        if (a[1] <= 0 || a[1] == 1) return fail_msg(c, "bad logarithm base");
        return log(x) / log(a[1]);
    }
    double m = x;   /* min / max */
    for (int k = 1; k < n; k++) m = !strcmp(f, "min") ? fmin(m, a[k]) : fmax(m, a[k]);
    return m;
}

static double call(calc *c, const fn *f) {
    double a[64];
    int n = 0;
    if (eat(c, ')')) return bad(c, "missing argument");
    do {
        if (n == f->max_args) return bad(c, "too many arguments");
        a[n++] = expr(c);
        if (c->failed) return 0;
    } while (eat(c, ','));
    if (!eat(c, ')')) return bad(c, "expected ')'");
    if (n < f->min_args) return bad(c, "too few arguments");
    return apply(c, f->name, a, n);
}

static double name(calc *c) {
    char id[16];
    size_t st = c->i, n = 0;
    while (isalnum((unsigned char)c->s[c->i]) || c->s[c->i] == '_') c->i++;
    n = c->i - st;
    if (n >= sizeof id) {
        c->i = st;
        return bad(c, "unknown name");
    }
    for (size_t k = 0; k < n; k++) id[k] = (char)tolower((unsigned char)c->s[st + k]);
    id[n] = 0;
    if (!strcmp(id, "pi")) return M_PI;
    if (!strcmp(id, "e")) return M_E;
    for (size_t k = 0; k < sizeof FUNCS / sizeof FUNCS[0]; k++)
        if (!strcmp(id, FUNCS[k].name)) {
            if (!eat(c, '(')) return bad(c, "expected '(' after a function name");
            return call(c, &FUNCS[k]);
        }
    c->i = st;
    return bad(c, "unknown name");
}

static double primary(calc *c) {
    skip(c);
    char ch = c->s[c->i];
    if (isdigit((unsigned char)ch) || ch == '.') return number(c);
    if (isalpha((unsigned char)ch)) return name(c);
    if (ch == '(') {
        c->i++;
        double v = expr(c);
        if (!c->failed && !eat(c, ')')) return bad(c, "expected ')'");
        return v;
    }
    return bad(c, ch ? "unexpected character" : "expression ends too early");
}

static double unary(calc *c);

static double power(calc *c) {
    double b = primary(c);
    if (c->failed) return 0;
    skip(c);
    int op = 0;
    if (c->s[c->i] == '^') op = 1;
    else if (c->s[c->i] == '*' && c->s[c->i + 1] == '*') op = 2;
    if (!op) return b;
    c->i += (size_t)op;
    double x = unary(c);
    if (c->failed) return 0;
    if (b == 0 && x < 0) return fail_msg(c, "division by zero (0 to a negative power)");
    if (b < 0 && x != floor(x)) return fail_msg(c, "negative number to a fractional power");
    return pow(b, x);
}

static double unary(calc *c) {
    if (++c->depth > MAX_NEST) return fail_msg(c, "expression nested too deeply");
    double v;
    skip(c);
    if (c->s[c->i] == '-' || c->s[c->i] == '+') {
        int neg = c->s[c->i++] == '-';
        v = unary(c);
        if (neg) v = -v;
    } else {
        v = power(c);
    }
    c->depth--;
    return v;
}

static double term(calc *c) {
    double v = unary(c);
    while (!c->failed) {
        skip(c);
        char op = c->s[c->i];
        if ((op != '*' && op != '/' && op != '%') || (op == '*' && c->s[c->i + 1] == '*')) break;
        c->i++;
        double r = unary(c);
        if (c->failed) break;
        if (op == '*') v *= r;
        else if (r == 0) return fail_msg(c, op == '/' ? "division by zero" : "modulo by zero");
        else v = op == '/' ? v / r : fmod(v, r);
    }
    return v;
}

static double expr(calc *c) {
    if (++c->depth > MAX_NEST) return fail_msg(c, "expression nested too deeply");
    double v = term(c);
    while (!c->failed) {
        skip(c);
        char op = c->s[c->i];
        if (op != '+' && op != '-') break;
        c->i++;
        double r = term(c);
        v = op == '+' ? v + r : v - r;
    }
    c->depth--;
    return v;
}

/* Replaces the Unicode signs models like to write (× ÷ −) with ASCII ones. */
static char *normalise(const char *s) {
    eng_buf b = {0};
    int rc = eng_buf_add(&b, "", 0);
    for (size_t i = 0; s[i] && !rc;) {
        if (!strncmp(s + i, "\xC3\x97", 2)) rc = eng_buf_addc(&b, '*'), i += 2;
        else if (!strncmp(s + i, "\xC3\xB7", 2)) rc = eng_buf_addc(&b, '/'), i += 2;
        else if (!strncmp(s + i, "\xE2\x88\x92", 3)) rc = eng_buf_addc(&b, '-'), i += 3;
        else rc = eng_buf_addc(&b, s[i++]);
    }
    if (rc) {
        eng_buf_free(&b);
        return NULL;
    }
    return eng_buf_take(&b);
}

int tool_calc_eval(const char *expression, double *out, eng_err *err) {
    *out = 0;
    if (!expression) return eng_seterr(err, ENG_EINVAL, "no expression");
    size_t len = strnlen(expression, TOOL_CALC_MAX_LEN + 1);
    if (len > TOOL_CALC_MAX_LEN)
        return eng_seterr(err, ENG_EINVAL, "expression longer than %d characters", TOOL_CALC_MAX_LEN);
    char *s = normalise(expression);
    if (!s) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    calc c = {s, 0, 0, err, 0};
    skip(&c);
    if (!s[c.i]) {
        free(s);
        return eng_seterr(err, ENG_EINVAL, "empty expression");
    }
    double v = expr(&c);
    skip(&c);
    if (!c.failed && s[c.i]) bad(&c, "unexpected character");
    if (!c.failed && !isfinite(v)) fail_msg(&c, "result is not a finite number");
    free(s);
    if (c.failed) return ENG_EINVAL;
    *out = v == 0 ? 0 : v;   /* no "-0" */
    return ENG_OK;
}

void tool_calc_format(double v, char *buf, size_t cap) {
    if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, cap, "%.0f", v == 0 ? 0.0 : v);
    else snprintf(buf, cap, "%.12g", v);
}

static int calc_exec(const cJSON *args, const tool_ctx *ctx, char **text, cJSON **meta,
                     eng_err *err) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(args, "expression");
    double v;
    int rc = tool_calc_eval(cJSON_GetStringValue(e), &v, err);
    if (rc) return rc;
    char buf[64];
    tool_calc_format(v, buf, sizeof buf);
    *text = tool_strdup(buf);
    return *text ? ENG_OK : eng_seterr(err, ENG_ENOMEM, "out of memory");
}

int tool_register_calculator(tool_registry *r, eng_err *err) {
    static const char *early[] = {"expression"};
    cJSON *schema = cJSON_Parse(
        "{\"type\": \"object\", \"properties\": {\"expression\": {\"type\": \"string\", "
        "\"description\": \"Arithmetic expression: + - * / % ^, parentheses, sqrt abs floor "
        "ceil ln log exp sin cos tan min max, pi, e. Example: 2*(3+4)^2 - sqrt(16)\"}}, "
        "\"required\": [\"expression\"]}");
    tool_def d = {
        .name = "calculator",
        .description = "Evaluate an arithmetic expression exactly and return the number.",
        .schema = schema, .early = early, .n_early = 1, .timeout_s = 5, .exec = calc_exec,
    };
    int rc = schema ? tool_register(r, &d, err) : eng_seterr(err, ENG_ENOMEM, "out of memory");
    cJSON_Delete(schema);
    return rc;
}
