/* test_real.c — real models under ../shared/models: brisk's greedy
 * continuation of a fixed chat prompt must equal the one recorded from
 * transformers (tests/fixtures/real/<model folder>.json, made by
 * scripts/record_real_ref.py), token for token.  Says clearly what it
 * skipped and why. */
#include "t.h"
#include <dirent.h>
#include <cjson/cJSON.h>
#include "eng.h"

static char *slurp(const char *path) {
    char *b = NULL;
    eng_read_file(path, 0, &b, NULL, NULL);
    return b;
}

/* Greedy-decodes the recorded prompt ids and compares with the recorded ids. */
static void check_model(const char *dir, const cJSON *ref) {
    eng_err err = { 0 };
    eng_model *m = NULL;
    eng_engine *e = NULL;
    T_CHECKF(!eng_model_load(dir, &m, &err), "%s", err.msg);
    if (!m) return;
    eng_opts o = { .max_seqs = 1 };
    T_CHECKF(!eng_create(m, &o, &e, &err), "%s", err.msg);
    const cJSON *pid = cJSON_GetObjectItem(ref, "prompt_ids"), *want = cJSON_GetObjectItem(ref, "ids"), *x;
    int n = cJSON_GetArraySize(pid), k = 0, seq, ids[4096];
    cJSON_ArrayForEach(x, pid) if (k < 4096) ids[k++] = x->valueint;
    eng_sampling greedy = { 0 };
    T_CHECK(e && !eng_seq_add(e, ids, n, &greedy, &seq, &err));
    int i = 0, ok = 1;
    cJSON_ArrayForEach(x, want) {
        eng_token t;
        if (eng_step(e, &err) || eng_seq_last(e, seq, &t)) { ok = 0; break; }
        if (t.id != x->valueint) {
            printf("  token %d: brisk %d, transformers %d\n", i, t.id, x->valueint);
            ok = 0;
            break;
        }
        i++;
    }
    T_CHECKF(ok, "%s: greedy output differs from transformers' (%d tokens matched)", dir, i);
    if (ok) printf("  %s: %d tokens identical to transformers\n", dir, i);
    eng_destroy(e);
    eng_model_free(m);
}

static void test_real_models(void) {
    char root[512];
    snprintf(root, sizeof root, "%s/models", t_shared());
    DIR *d = opendir(root);
    if (!d) T_SKIP("%s is absent: no real model to check (tiny fixtures are checked in test_engine)", root);
    struct dirent *de;
    int checked = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char dir[1024], refp[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, de->d_name);
        snprintf(refp, sizeof refp, "tests/fixtures/real/%s.json", de->d_name);
        char *txt = slurp(refp);
        if (!txt) {
            printf("  SKIP %s: no recorded reference %s (scripts/record_real_ref.py makes it)\n", dir, refp);
            continue;
        }
        cJSON *ref = cJSON_Parse(txt);
        free(txt);
        T_CHECKF(ref != NULL, "%s is not valid JSON", refp);
        if (ref) check_model(dir, ref);
        cJSON_Delete(ref);
        checked++;
    }
    closedir(d);
    if (!checked) printf("  SKIP: no model under %s has a recorded reference\n", root);
}

int main(void) {
    T_RUN(test_real_models);
    T_DONE();
}
