/* math_batch.c — grading one JSON line ({"gold": G, "answer": A}) for
 * `brisk grade --jsonl` and anyone scoring other systems' outputs. */
#include "math_int.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A field as text: a string as it is, a number as JSON writes it; NULL
 * (with *why set) for anything else. */
static char *field_text(const cJSON *row, const char *key, char *why, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    if (cJSON_IsNumber(v)) return cJSON_PrintUnformatted(v);
    snprintf(why, cap, v ? "\"%s\" is not a string or a number" : "no \"%s\" field", key);
    return NULL;
}

static void add_text(cJSON *o, const char *key, const char *v) {
    if (v) cJSON_AddStringToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

cJSON *orc_math_grade_obj(const char *gold, const char *answer) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char *g = orc_math_extract_gold(gold), *a = orc_math_extract(answer);
    cJSON_AddBoolToObject(o, "correct", g && a && orc_math_equiv_gold(g, a));
    add_text(o, "gold", g);
    add_text(o, "answer", a);
    free(g);
    free(a);
    return o;
}

char *orc_math_grade_line(const char *line, long lineno) {
    cJSON *row = line ? cJSON_Parse(line) : NULL, *out = NULL;
    char why[128] = "", *gold = NULL, *ans = NULL;
    if (!row || !cJSON_IsObject(row)) snprintf(why, sizeof why, "not a JSON object");
    else if ((gold = field_text(row, "gold", why, sizeof why)))
        ans = field_text(row, "answer", why, sizeof why);
    if (gold && ans) out = orc_math_grade_obj(gold, ans);
    else if ((out = cJSON_CreateObject())) cJSON_AddStringToObject(out, "error", why);
    char *s = NULL;
    if (out) {
        cJSON_AddNumberToObject(out, "line", (double)lineno);
        const cJSON *id = cJSON_IsObject(row) ? cJSON_GetObjectItemCaseSensitive(row, "id") : NULL;
        if (id) cJSON_AddItemToObject(out, "id", cJSON_Duplicate(id, 1));
        s = cJSON_PrintUnformatted(out);
    }
    cJSON_Delete(out);
    cJSON_Delete(row);
    free(gold);
    free(ans);
    return s;
}
