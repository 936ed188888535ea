/* t_util.h — helpers that several tests share: the engine calls they make
 * over and over (printing the error, so a failing check says why) and id
 * lists compared with recorded JSON. */
#ifndef T_UTIL_H
#define T_UTIL_H

#include <stdio.h>
#include <cJSON.h>
#include "eng.h"

/* One eng_step; its code (0: done), the error printed. */
static inline int t_step(eng_engine *e) {
    eng_err err = { 0 };
    int rc = eng_step(e, &err);
    if (rc) printf("  eng_step: %d %s\n", rc, err.msg);
    return rc;
}

/* eng_seq_add: the new sequence's id, or -1 (the error printed). */
static inline int t_add(eng_engine *e, const int *ids, int n, const eng_sampling *s) {
    eng_err err = { 0 };
    int id = -1;
    if (eng_seq_add(e, ids, n, s, &id, &err)) printf("  eng_seq_add: %s\n", err.msg);
    return id;
}

/* Whether ids[0..n) are the numbers of the JSON array want. */
static inline int t_ids_equal(const cJSON *want, const int *ids, int n) {
    if (cJSON_GetArraySize(want) != n) return 0;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, want) if (v->valueint != ids[i++]) return 0;
    return 1;
}

#endif
