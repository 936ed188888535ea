/* tool_registry.c — tools by name, argument checking against the schema,
 * synchronous calls, and the prompt text around tools (Qwen2.5 format). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tool_internal.h"

typedef struct entry {
    tool_def d;          /* strings, schema and early list owned by the entry */
    cJSON *schema;
} entry;

struct tool_registry {
    entry *e;
    int n, cap;
};

tool_registry *tool_registry_create(void) { return calloc(1, sizeof(tool_registry)); }

static void entry_free(entry *e) {
    free((char *)e->d.name);
    free((char *)e->d.description);
    for (int i = 0; i < e->d.n_early; i++) free((char *)e->d.early[i]);
    free((char **)e->d.early);
    cJSON_Delete(e->schema);
    if (e->d.user_free) e->d.user_free(e->d.user);
}

void tool_registry_destroy(tool_registry *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) entry_free(&r->e[i]);
    free(r->e);
    free(r);
}

int tool_registry_count(const tool_registry *r) { return r ? r->n : 0; }

const tool_def *tool_registry_find(const tool_registry *r, const char *name) {
    if (!r || !name) return NULL;
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->e[i].d.name, name) == 0) return &r->e[i].d;
    return NULL;
}

static int valid_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

static int check_def(const tool_registry *r, const tool_def *d, eng_err *err) {
    if (!d || !d->exec) return eng_seterr(err, ENG_EINVAL, "tool definition without exec");
    if (!valid_name(d->name))
        return eng_seterr(err, ENG_EINVAL, "bad tool name '%s'", d->name ? d->name : "");
    if (tool_registry_find(r, d->name))
        return eng_seterr(err, ENG_EINVAL, "tool '%s' registered twice", d->name);
    if (d->schema && !cJSON_IsObject(d->schema))
        return eng_seterr(err, ENG_EINVAL, "schema of tool '%s' is not an object", d->name);
    if (d->n_early < 0 || (d->n_early > 0 && !d->early))
        return eng_seterr(err, ENG_EINVAL, "bad early argument list for '%s'", d->name);
    for (int i = 0; i < d->n_early; i++)
        if (!d->early[i]) return eng_seterr(err, ENG_EINVAL, "NULL early argument name");
    return ENG_OK;
}

int tool_register(tool_registry *r, const tool_def *d, eng_err *err) {
    if (!r) return eng_seterr(err, ENG_EINVAL, "no registry");
    int rc = check_def(r, d, err);
    if (rc) return rc;
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        entry *e = realloc(r->e, (size_t)cap * sizeof *e);
        if (!e) return eng_seterr(err, ENG_ENOMEM, "out of memory");
        r->e = e;
        r->cap = cap;
    }
    entry *e = &r->e[r->n];
    memset(e, 0, sizeof *e);
    e->d = *d;
    e->d.name = tool_strdup(d->name);
    e->d.description = tool_strdup(d->description ? d->description : "");
    e->schema = d->schema ? cJSON_Duplicate(d->schema, 1)
                          : cJSON_Parse("{\"type\":\"object\",\"properties\":{}}");
    e->d.schema = e->schema;
    const char **early = d->n_early ? calloc((size_t)d->n_early, sizeof *early) : NULL;
    e->d.early = early;
    e->d.n_early = 0;
    int ok = e->d.name && e->d.description && e->schema && (!d->n_early || early);
    for (int i = 0; ok && i < d->n_early; i++) {
        early[i] = tool_strdup(d->early[i]);
        if (early[i]) e->d.n_early++;
        else ok = 0;
    }
    if (!ok) {
        e->d.user_free = NULL;  /* the caller keeps ownership on failure */
        entry_free(e);
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    if (e->d.timeout_s <= 0) e->d.timeout_s = 30;
    r->n++;
    return ENG_OK;
}

/* ------------------------------------------------------------- validation */
static int type_matches(const char *t, const cJSON *v) {
    if (strcmp(t, "string") == 0) return cJSON_IsString(v);
    if (strcmp(t, "number") == 0) return cJSON_IsNumber(v);
    if (strcmp(t, "integer") == 0)
        return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
               fabs(v->valuedouble) < 9.007e15;
    if (strcmp(t, "boolean") == 0) return cJSON_IsBool(v);
    if (strcmp(t, "object") == 0) return cJSON_IsObject(v);
    if (strcmp(t, "array") == 0) return cJSON_IsArray(v);
    if (strcmp(t, "null") == 0) return cJSON_IsNull(v);
    return 1;  /* a type we do not know constrains nothing */
}

static int check_type(const cJSON *prop, const cJSON *v) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(prop, "type");
    if (cJSON_IsString(t)) return type_matches(t->valuestring, v);
    if (cJSON_IsArray(t)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, t) if (cJSON_IsString(x) && type_matches(x->valuestring, v)) return 1;
        return 0;
    }
    return 1;
}

static int check_enum(const cJSON *prop, const cJSON *v) {
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(prop, "enum"), *x;
    if (!cJSON_IsArray(en)) return 1;
    cJSON_ArrayForEach(x, en) if (cJSON_Compare(x, v, 1)) return 1;
    return 0;
}

int tool_validate_args(const tool_def *d, const cJSON *args, int partial, eng_err *err) {
    if (!cJSON_IsObject(args))
        return eng_seterr(err, ENG_EINVAL, "arguments of '%s' must be a JSON object", d->name);
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(d->schema, "properties");
    const cJSON *a;
    cJSON_ArrayForEach(a, args) {
        const cJSON *prop = cJSON_IsObject(props)
                          ? cJSON_GetObjectItemCaseSensitive(props, a->string) : NULL;
        if (!prop) continue;   /* extra arguments are tolerated */
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(prop, "type");
        if (!check_type(prop, a))
            return eng_seterr(err, ENG_EINVAL, "argument '%s' of '%s' must be of type %s",
                              a->string, d->name, cJSON_IsString(t) ? t->valuestring : "?");
        if (!check_enum(prop, a))
            return eng_seterr(err, ENG_EINVAL, "argument '%s' of '%s' has a value not allowed",
                              a->string, d->name);
    }
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(d->schema, "required"), *q;
    if (!partial && cJSON_IsArray(req))
        cJSON_ArrayForEach(q, req)
            if (cJSON_IsString(q) && !cJSON_GetObjectItemCaseSensitive(args, q->valuestring))
                return eng_seterr(err, ENG_EINVAL, "missing required argument '%s' of '%s'",
                                  q->valuestring, d->name);
    return ENG_OK;
}

/* ------------------------------------------------------------------ calls */
void tool_result_clear(tool_result *r) {
    if (!r) return;
    free(r->name);
    free(r->text);
    cJSON_Delete(r->args);
    cJSON_Delete(r->meta);
    memset(r, 0, sizeof *r);
}

void tool_results_free(tool_result *r, int n) {
    if (!r) return;
    for (int i = 0; i < n; i++) tool_result_clear(&r[i]);
    free(r);
}

static void set_error(tool_result *out, const char *msg) {
    free(out->text);
    out->text = tool_strdup(msg);
    out->is_error = 1;
}

void tool_registry_call(const tool_registry *r, const char *name, const cJSON *args,
                        const atomic_int *cancel, double timeout_s, tool_result *out) {
    eng_err e = {0};
    cJSON *empty = NULL;
    out->name = tool_strdup(name);
    if (!args) args = empty = cJSON_CreateObject();
    out->args = cJSON_Duplicate(args, 1);
    out->t_start = eng_now_s();
    const tool_def *d = tool_registry_find(r, name);
    if (!name) {
        set_error(out, "tool call has no name");
    } else if (!d) {
        eng_seterr(&e, ENG_EINVAL, "unknown tool '%s'", name);
        set_error(out, e.msg);
    } else if (tool_validate_args(d, args, 0, &e)) {
        set_error(out, e.msg);
    } else if (cancel && atomic_load(cancel)) {
        set_error(out, "cancelled");
    } else {
        tool_ctx ctx = {cancel, out->t_start + (timeout_s > 0 ? timeout_s : d->timeout_s), d->user};
        char *text = NULL;
        cJSON *meta = NULL;
        int rc = d->exec(args, &ctx, &text, &meta, &e);
        if (rc == ENG_OK && !(cancel && atomic_load(cancel))) {
            out->text = text ? text : tool_strdup("");
            out->meta = meta;
        } else {
            free(text);
            cJSON_Delete(meta);
            if (cancel && atomic_load(cancel)) set_error(out, "cancelled");
            else if (e.msg[0]) set_error(out, e.msg);
            else {
                eng_seterr(&e, ENG_EIO, "tool '%s' failed", name);
                set_error(out, e.msg);
            }
        }
    }
    out->t_done = eng_now_s();
    if (!out->text) set_error(out, "out of memory");
    cJSON_Delete(empty);
}

/* ------------------------------------------------------------ prompt text */
char *tool_registry_json(const tool_registry *r) {
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; list && r && i < r->n; i++) {
        cJSON *t = cJSON_CreateObject(), *f = cJSON_CreateObject();
        if (!t || !f || !cJSON_AddItemToArray(list, t)) {
            cJSON_Delete(t);
            cJSON_Delete(f);
            cJSON_Delete(list);
            return NULL;
        }
        cJSON_AddStringToObject(t, "type", "function");
        cJSON_AddStringToObject(f, "name", r->e[i].d.name);
        cJSON_AddStringToObject(f, "description", r->e[i].d.description ? r->e[i].d.description : "");
        cJSON_AddItemToObject(f, "parameters", cJSON_Duplicate(r->e[i].schema, 1));
        cJSON_AddItemToObject(t, "function", f);
    }
    char *s = list ? cJSON_PrintUnformatted(list) : NULL;
    cJSON_Delete(list);
    return s;
}
