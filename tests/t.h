/* t.h — the whole test framework: a test binary calls T_RUN for each test
 * function and ends with T_DONE, which prints "N passed, N failed". */
#ifndef T_H
#define T_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int t_pass __attribute__((unused)), t_fail __attribute__((unused)), t_cur_failed __attribute__((unused));

#define T_CHECK(cond) do { if (!(cond)) { \
    printf("  check failed %s:%d: %s\n", __FILE__, __LINE__, #cond); t_cur_failed = 1; } } while (0)
#define T_CHECKF(cond, ...) do { if (!(cond)) { \
    printf("  check failed %s:%d: %s: ", __FILE__, __LINE__, #cond); printf(__VA_ARGS__); \
    printf("\n"); t_cur_failed = 1; } } while (0)
/* Marks the current test as skipped, with a reason, and returns from it. */
#define T_SKIP(...) do { printf("  SKIP: "); printf(__VA_ARGS__); printf("\n"); return; } while (0)

#define T_RUN(fn) do { t_cur_failed = 0; printf("-- %s\n", #fn); fn(); \
    if (t_cur_failed) { t_fail++; printf("FAIL %s\n", #fn); } \
    else { t_pass++; printf("ok   %s\n", #fn); } fflush(stdout); } while (0)

#define T_DONE() do { printf("%d passed, %d failed\n", t_pass, t_fail); \
    return t_fail ? 1 : 0; } while (0)

/* Directory of shared data and models (../shared beside the checkout). */
static inline const char *t_shared(void) {
    const char *s = getenv("BRISK_SHARED");
    return s ? s : "../shared";
}
#endif
