/* pp.c — ParallelPrompt schemas: parsing and validation of annotated rows,
 * template filling, item normalisation and agreement between two schemas. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pp_internal.h"

/* ------------------------------------------------------------ helpers */
char *pp_strndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *pp_strdup(const char *s) { return pp_strndup(s, strlen(s)); }

char *pp_trimdup(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    return pp_strndup(s, n);
}

int pp_is_blank(const char *s) {
    for (; *s; s++) if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

long pp_ci_find(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0) return 0;
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m && tolower((unsigned char)hay[i + j]) == tolower((unsigned char)needle[j])) j++;
        if (j == m) return (long)i;
    }
    return -1;
}

char *pp_unescape(const char *text) {
    if (strchr(text, '\n') || !strstr(text, "\\n")) return pp_strdup(text);
    eng_buf b = {0};
    for (const char *p = text; *p; p++) {
        if (p[0] == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == 'r')) {
            eng_buf_add(&b, p[1] == 'n' ? "\n" : p[1] == 't' ? "\t" : "\r", 1);
            p++;
        } else {
            eng_buf_add(&b, p, 1);
        }
    }
    return eng_buf_take(&b);
}

/* ------------------------------------------------------------ schema */
void orc_pp_schema_free(orc_pp_schema *s) {
    if (!s) return;
    free(s->tmpl);
    free(s->context);
    orc_pp_strv_free(s->data, s->n_data);
    memset(s, 0, sizeof *s);
}

void orc_pp_strv_free(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

int orc_pp_count(const orc_pp_schema *s) {
    if (!s) return 0;
    return s->kind == ORC_PP_DATA ? s->n_data : s->kind == ORC_PP_N ? s->n : 0;
}

/* The context counts as used when the template names {context} or already
 * holds the context's text (some annotated rows write it out inline). */
static int context_used(const orc_pp_schema *s) {
    if (!s->context || pp_is_blank(s->context) || strstr(s->tmpl, "{context}")) return 1;
    char *c = orc_pp_norm(s->context), *t = orc_pp_norm(s->tmpl);
    int ok = c && t && strstr(t, c) != NULL;
    free(c);
    free(t);
    return ok;
}

static int validate_at(const orc_pp_schema *s, const char *where, eng_err *err) {
    if (!s) return eng_seterr(err, ENG_EINVAL, "%s: no schema", where);
    if (!s->tmpl || pp_is_blank(s->tmpl))
        return eng_seterr(err, ENG_EFORMAT, "%s: field 'template': empty", where);
    if (s->kind == ORC_PP_DATA) {
        if (!strstr(s->tmpl, "{data}"))
            return eng_seterr(err, ENG_EFORMAT, "%s: field 'template': must contain {data}", where);
        if (s->n_data < 1 || !s->data)
            return eng_seterr(err, ENG_EFORMAT, "%s: field 'data': empty list", where);
        if (s->n_data > ORC_PP_MAX_ITEMS)
            return eng_seterr(err, ENG_EFORMAT, "%s: field 'data': %d items, at most %d",
                              where, s->n_data, ORC_PP_MAX_ITEMS);
        for (int i = 0; i < s->n_data; i++)
            if (!s->data[i] || pp_is_blank(s->data[i]))
                return eng_seterr(err, ENG_EFORMAT, "%s: field 'data': item %d is empty", where, i);
    } else if (s->kind == ORC_PP_N) {
        if (!strstr(s->tmpl, "{n}"))
            return eng_seterr(err, ENG_EFORMAT, "%s: field 'template': must contain {n}", where);
        if (s->n < 1 || s->n > ORC_PP_MAX_ITEMS)
            return eng_seterr(err, ENG_EFORMAT, "%s: field 'n': %d is outside 1..%d",
                              where, s->n, ORC_PP_MAX_ITEMS);
    } else {
        return eng_seterr(err, ENG_EFORMAT, "%s: neither 'data' nor 'n'", where);
    }
    if (!context_used(s))
        return eng_seterr(err, ENG_EFORMAT,
                          "%s: field 'template': context is given but the template has no {context}",
                          where);
    return ENG_OK;
}

int orc_pp_validate(const orc_pp_schema *s, eng_err *err) { return validate_at(s, "schema", err); }

static int json_items(const cJSON *arr, const char *where, orc_pp_schema *out, eng_err *err) {
    if (!cJSON_IsArray(arr))
        return eng_seterr(err, ENG_EFORMAT, "%s: field 'data': must be a list", where);
    int n = cJSON_GetArraySize(arr);
    if (n < 1) return eng_seterr(err, ENG_EFORMAT, "%s: field 'data': empty list", where);
    if (n > ORC_PP_MAX_ITEMS)
        return eng_seterr(err, ENG_EFORMAT, "%s: field 'data': %d items, at most %d",
                          where, n, ORC_PP_MAX_ITEMS);
    out->data = calloc((size_t)n, sizeof *out->data);
    if (!out->data) return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", where);
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it))
            return eng_seterr(err, ENG_EFORMAT, "%s: field 'data': item %d is not a string", where, i);
        out->data[i] = pp_strdup(it->valuestring);
        out->n_data = i + 1;
        if (!out->data[i]) return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", where);
    }
    out->kind = ORC_PP_DATA;
    return ENG_OK;
}

static int json_count(const cJSON *num, const char *where, orc_pp_schema *out, eng_err *err) {
    if (!cJSON_IsNumber(num))
        return eng_seterr(err, ENG_EFORMAT, "%s: field 'n': must be a number", where);
    double v = num->valuedouble;
    if (v != (double)(long)v)
        return eng_seterr(err, ENG_EFORMAT, "%s: field 'n': %g is not a whole number", where, v);
    if (v < 1 || v > ORC_PP_MAX_ITEMS)
        return eng_seterr(err, ENG_EFORMAT, "%s: field 'n': %g is outside 1..%d",
                          where, v, ORC_PP_MAX_ITEMS);
    out->n = (int)v;
    out->kind = ORC_PP_N;
    return ENG_OK;
}

static int from_json(const cJSON *row, const char *where, orc_pp_schema *out, eng_err *err) {
    if (!cJSON_IsObject(row)) return eng_seterr(err, ENG_EFORMAT, "%s: not a JSON object", where);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(row, "template");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(row, "context");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(row, "data");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(row, "n");
    if (!t) return eng_seterr(err, ENG_EFORMAT, "%s: field 'template': missing", where);
    if (!cJSON_IsString(t))
        return eng_seterr(err, ENG_EFORMAT, "%s: field 'template': must be a string", where);
    if (c && !cJSON_IsNull(c) && !cJSON_IsString(c))
        return eng_seterr(err, ENG_EFORMAT, "%s: field 'context': must be a string or null", where);
    if (d && cJSON_IsNull(d)) d = NULL;
    if (n && cJSON_IsNull(n)) n = NULL;
    if (d && n) return eng_seterr(err, ENG_EFORMAT, "%s: fields 'data' and 'n': only one may be given", where);
    if (!d && !n) return eng_seterr(err, ENG_EFORMAT, "%s: field 'data' or 'n': missing", where);
    out->tmpl = pp_strdup(t->valuestring);
    out->context = pp_strdup(cJSON_IsString(c) ? c->valuestring : "");
    if (!out->tmpl || !out->context) return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", where);
    int rc = d ? json_items(d, where, out, err) : json_count(n, where, out, err);
    if (rc) return rc;
    return validate_at(out, where, err);
}

int orc_pp_schema_from_json(const cJSON *row, const char *where, orc_pp_schema *out,
                            eng_err *err) {
    if (!out) return eng_seterr(err, ENG_EINVAL, "no output schema");
    memset(out, 0, sizeof *out);
    int rc = from_json(row, where ? where : "row", out, err);
    if (rc) orc_pp_schema_free(out);
    return rc;
}

int orc_pp_schema_parse(const char *json, const char *where, orc_pp_schema *out, eng_err *err) {
    if (!out || !json) return eng_seterr(err, ENG_EINVAL, "no JSON text");
    memset(out, 0, sizeof *out);
    cJSON *row = cJSON_Parse(json);
    if (!row) return eng_seterr(err, ENG_EFORMAT, "%s: bad JSON", where ? where : "row");
    int rc = orc_pp_schema_from_json(row, where, out, err);
    cJSON_Delete(row);
    return rc;
}

/* ------------------------------------------------------------ dataset */
static int load_row(const cJSON *obj, int i, orc_pp_row *r) {
    char where[32];
    snprintf(where, sizeof where, "row %d", i);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, "original");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, "serial");
    if (!cJSON_IsString(o)) {
        snprintf(r->error, sizeof r->error, "%s: field 'original': missing or not a string", where);
        return ENG_OK;
    }
    r->original = pp_strdup(o->valuestring);
    r->serial = cJSON_IsString(s) ? pp_strdup(s->valuestring) : NULL;
    if (!r->original || (cJSON_IsString(s) && !r->serial)) return ENG_ENOMEM;
    eng_err e = {0};
    int rc = orc_pp_schema_from_json(obj, where, &r->schema, &e);
    if (rc == ENG_ENOMEM) return rc;
    r->valid = rc == ENG_OK;
    if (rc) snprintf(r->error, sizeof r->error, "%s", e.msg);
    return ENG_OK;
}

int orc_pp_load(const char *path, orc_pp_row **rows, int *n_rows, eng_err *err) {
    if (!path || !rows || !n_rows) return eng_seterr(err, ENG_EINVAL, "orc_pp_load: bad arguments");
    *rows = NULL;
    *n_rows = 0;
    char *text = NULL;
    eng_read_file(path, 0, &text, NULL, err);
    if (!text) return err ? err->code : ENG_EIO;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return eng_seterr(err, ENG_EFORMAT, "%s: not a JSON array of rows", path);
    }
    int n = cJSON_GetArraySize(root);
    orc_pp_row *r = calloc(n > 0 ? (size_t)n : 1, sizeof *r);
    if (!r) { cJSON_Delete(root); return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path); }
    int i = 0;
    for (const cJSON *it = root->child; it; it = it->next, i++) {
        if (load_row(it, i, &r[i])) {
            orc_pp_rows_free(r, i + 1);
            cJSON_Delete(root);
            return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
        }
    }
    cJSON_Delete(root);
    *rows = r;
    *n_rows = n;
    return ENG_OK;
}

void orc_pp_rows_free(orc_pp_row *rows, int n_rows) {
    if (!rows) return;
    for (int i = 0; i < n_rows; i++) {
        free(rows[i].original);
        free(rows[i].serial);
        orc_pp_schema_free(&rows[i].schema);
    }
    free(rows);
}

/* ------------------------------------------------------------ filling */
/* One pass over the template: placeholders are replaced where they stand, so
 * braces inside the item or the context are never expanded again. */
static char *fill_one(const char *tmpl, const char *context, const char *item, int kind) {
    eng_buf b = {0};
    for (const char *p = tmpl; *p;) {
        if (!strncmp(p, "{context}", 9)) { eng_buf_adds(&b, context); p += 9; continue; }
        if (kind == ORC_PP_DATA && !strncmp(p, "{data}", 6)) { eng_buf_adds(&b, item); p += 6; continue; }
        if (kind == ORC_PP_N && !strncmp(p, "{n}", 3)) { eng_buf_adds(&b, item); p += 3; continue; }
        eng_buf_add(&b, p, 1);
        p++;
    }
    return eng_buf_take(&b);
}

int orc_pp_fill(const orc_pp_schema *s, char ***out, int *n_out, eng_err *err) {
    if (!out || !n_out) return eng_seterr(err, ENG_EINVAL, "orc_pp_fill: bad arguments");
    *out = NULL;
    *n_out = 0;
    int rc = orc_pp_validate(s, err);
    if (rc) return rc;
    int k = orc_pp_count(s);
    char **v = calloc((size_t)k, sizeof *v);
    if (!v) return eng_seterr(err, ENG_ENOMEM, "orc_pp_fill: out of memory");
    for (int i = 0; i < k; i++) {
        v[i] = fill_one(s->tmpl, s->context, s->kind == ORC_PP_DATA ? s->data[i] : "1", s->kind);
        if (!v[i]) {
            orc_pp_strv_free(v, k);
            return eng_seterr(err, ENG_ENOMEM, "orc_pp_fill: out of memory");
        }
    }
    *out = v;
    *n_out = k;
    return ENG_OK;
}

/* ------------------------------------------------------------ context first */
static int copy_schema(const orc_pp_schema *in, orc_pp_schema *out) {
    *out = *in;
    out->tmpl = pp_strdup(in->tmpl);
    out->context = pp_strdup(in->context ? in->context : "");
    out->data = NULL;
    if (in->kind == ORC_PP_DATA) {
        out->data = calloc((size_t)in->n_data, sizeof *out->data);
        for (int i = 0; out->data && i < in->n_data; i++)
            if (!(out->data[i] = pp_strdup(in->data[i]))) { out->n_data = i; return ENG_ENOMEM; }
        if (!out->data) { out->n_data = 0; return ENG_ENOMEM; }
    }
    return out->tmpl && out->context ? ENG_OK : ENG_ENOMEM;
}

int orc_pp_hoist_context(const orc_pp_schema *in, orc_pp_schema *out, eng_err *err) {
    if (!out) return eng_seterr(err, ENG_EINVAL, "orc_pp_hoist_context: no output");
    memset(out, 0, sizeof *out);
    int rc = orc_pp_validate(in, err);
    if (rc) return rc;
    if ((rc = copy_schema(in, out))) {
        orc_pp_schema_free(out);
        return eng_seterr(err, rc, "orc_pp_hoist_context: out of memory");
    }
    const char *d = strstr(in->tmpl, in->kind == ORC_PP_DATA ? "{data}" : "{n}");
    const char *c = strstr(in->tmpl, "{context}");
    if (!c || !d || c < d || pp_is_blank(in->context)) return ENG_OK;
    eng_buf b = {0};
    eng_buf_adds(&b, "{context}\n\n");
    for (const char *p = in->tmpl; *p;) {
        if (!strncmp(p, "{context}", 9)) { eng_buf_adds(&b, "the text above"); p += 9; }
        else eng_buf_add(&b, p++, 1);
    }
    char *t = eng_buf_take(&b);
    if (!t) { orc_pp_schema_free(out); return eng_seterr(err, ENG_ENOMEM, "orc_pp_hoist_context: out of memory"); }
    free(out->tmpl);
    out->tmpl = t;
    return ENG_OK;
}

/* ------------------------------------------------------------ normal form */
/* UTF-8 sequences that are spelled differently but mean the same here. */
static const struct { const char *from, *to; } fold_table[] = {
    {"\xe2\x80\x98", "'"}, {"\xe2\x80\x99", "'"}, {"\xe2\x80\x9c", "\""}, {"\xe2\x80\x9d", "\""},
    {"\xc2\xa0", " "}, {"\xe2\x80\xaf", " "}, {"\xe2\x80\x8b", " "}, {"\xe2\x80\x93", "-"},
    {"\xe2\x80\x94", "-"},
};

static const char *fold_at(const char *p, int *skip) {
    for (size_t i = 0; i < sizeof fold_table / sizeof fold_table[0]; i++) {
        size_t m = strlen(fold_table[i].from);
        if (!strncmp(p, fold_table[i].from, m)) { *skip = (int)m; return fold_table[i].to; }
    }
    if (p[0] == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == 'r')) { *skip = 2; return " "; }
    return NULL;
}

static int trim_char(char c) { return c == '"' || c == '\'' || c == '`'; }
static int trim_tail(char c) { return trim_char(c) || c == '.' || c == ',' || c == ';' || c == ':'; }

char *orc_pp_norm(const char *s) {
    if (!s) return NULL;
    eng_buf b = {0};
    int space = 0;
    for (const char *p = s; *p;) {
        int skip = 1;
        const char *f = fold_at(p, &skip);
        char c = f ? f[0] : *p;
        if (isspace((unsigned char)c)) {
            space = 1;
        } else {
            if (space && b.n) eng_buf_add(&b, " ", 1);
            space = 0;
            if (f) eng_buf_adds(&b, f);
            else { char l = (char)tolower((unsigned char)c); eng_buf_add(&b, &l, 1); }
        }
        p += skip;
    }
    char *t = eng_buf_take(&b);
    if (!t) return NULL;
    size_t a = 0, n = strlen(t);
    for (;;) {   /* peel quotes and closing punctuation until nothing changes */
        size_t a0 = a, n0 = n;
        while (a < n && (trim_char(t[a]) || t[a] == ' ')) a++;
        while (n > a && (trim_tail(t[n - 1]) || t[n - 1] == ' ')) n--;
        if (a == a0 && n == n0) break;
    }
    memmove(t, t + a, n - a);
    t[n - a] = 0;
    return t;
}

/* Words of a normalised string: runs of letters/digits (and UTF-8 bytes). */
typedef struct word { const char *p; int n; } word;

static int is_word_byte(unsigned char c) { return isalnum(c) || c >= 0x80; }

/* Crude stem so that "addresses"/"address" and "names"/"name" meet: a final
 * s (not ss), then a final e, is dropped from words of 4+ letters. */
static int stem_len(const char *p, int n) {
    if (n >= 4 && p[n - 1] == 's' && p[n - 2] != 's') n--;
    if (n >= 4 && p[n - 1] == 'e') n--;
    return n;
}

/* Splits a normalised string into words, written into buf (apostrophes
 * inside words dropped: "driver's" -> "drivers"). */
static int split_words(const char *s, char *buf, word **out) {
    int cap = 16, n = 0;
    word *w = malloc((size_t)cap * sizeof *w);
    if (!w) return -1;
    char *o = buf;
    for (const char *p = s; *p;) {
        if (!is_word_byte((unsigned char)*p)) { p++; continue; }
        if (!strncmp(p, "name_", 5) && isdigit((unsigned char)p[5]) && (p == s || !is_word_byte((unsigned char)p[-1]))) {
            p += 5;                /* LMSYS anonymisation placeholder NAME_1: no word */
            while (isdigit((unsigned char)*p)) p++;
            continue;
        }
        char *start = o;
        while (*p && (is_word_byte((unsigned char)*p) || (*p == '\'' && is_word_byte((unsigned char)p[1]))))
            if (*p++ != '\'') *o++ = p[-1];
        if (n == cap) {
            word *g = realloc(w, (size_t)(cap *= 2) * sizeof *w);
            if (!g) { free(w); return -1; }
            w = g;
        }
        w[n].p = start;
        w[n++].n = stem_len(start, (int)(o - start));
    }
    *out = w;
    return n;
}

static int word_cmp(const void *a, const void *b) {
    const word *x = a, *y = b;
    int m = x->n < y->n ? x->n : y->n, c = memcmp(x->p, y->p, (size_t)m);
    return c ? c : x->n - y->n;
}

static int common_words(word *a, int na, word *b, int nb) {
    qsort(a, (size_t)na, sizeof *a, word_cmp);
    qsort(b, (size_t)nb, sizeof *b, word_cmp);
    int i = 0, j = 0, c = 0;
    while (i < na && j < nb) {
        int d = word_cmp(&a[i], &b[j]);
        if (d == 0) { c++; i++; j++; }
        else if (d < 0) i++;
        else j++;
    }
    return c;
}

int orc_pp_item_loose(const char *a, const char *b) {
    char *x = orc_pp_norm(a), *y = orc_pp_norm(b);
    word *wa = NULL, *wb = NULL;
    int ok = 0;
    char *bx = x ? malloc(strlen(x) + 1) : NULL, *by = y ? malloc(strlen(y) + 1) : NULL;
    if (bx && by) {
        int na = split_words(x, bx, &wa), nb = split_words(y, by, &wb);
        if (na >= 0 && nb >= 0) {
            if (na == 0 || nb == 0) ok = na == nb && !strcmp(x, y);
            else ok = 2.0 * common_words(wa, na, wb, nb) / (na + nb) >= 0.5;
        }
    }
    free(wa);
    free(wb);
    free(bx);
    free(by);
    free(x);
    free(y);
    return ok;
}

static int item_exact(const char *a, const char *b) {
    char *x = orc_pp_norm(a), *y = orc_pp_norm(b);
    int ok = x && y && !strcmp(x, y);
    free(x);
    free(y);
    return ok;
}

void orc_pp_compare(const orc_pp_schema *want, const orc_pp_schema *got, orc_pp_agreement *a) {
    memset(a, 0, sizeof *a);
    int kw = want ? want->kind : ORC_PP_NONE, kg = got ? got->kind : ORC_PP_NONE;
    if (kw != kg) return;
    a->kind = 1;
    if (orc_pp_count(want) != orc_pp_count(got)) return;
    a->count = 1;
    a->exact = a->loose = 1;
    if (kw != ORC_PP_DATA) return;
    for (int i = 0; i < want->n_data; i++) {
        if (!item_exact(want->data[i], got->data[i])) a->exact = 0;
        if (!orc_pp_item_loose(want->data[i], got->data[i])) a->loose = 0;
    }
}
