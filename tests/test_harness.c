/* test_harness.c — the rules of the test framework (tests/t.h), checked from
 * outside: a skipped test is counted apart, never as a pass, and a test whose
 * bundled fixture is missing fails.  The second is checked by running the
 * test binaries that load tests/fixtures from an empty folder (and with
 * BRISK_SHARED pointing at an empty one): each must fail, and the only skips
 * allowed there are those for the optional data under ../shared. */
#include "t.h"
#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run as `test_harness --inner`: one test that skips, one that fails. */
static void skips(void) { T_SKIP("an optional thing is absent"); }
static void fails(void) { T_FAIL("a bundled thing is absent"); }

/* Runs cmd; its output into out (cap bytes), its exit status into *rc. */
static void run(const char *cmd, char *out, size_t cap, int *rc) {
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    out[0] = 0;
    if (!p) { *rc = -1; return; }
    for (size_t k; n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, p)) > 0;) n += k;
    out[n] = 0;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {}
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The counts of the closing "N passed, N failed, N skipped" line; 0 if none. */
static int summary(const char *out, int *pass, int *fail, int *skip) {
    int found = 0;
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (sscanf(l, "%d passed, %d failed, %d skipped", pass, fail, skip) == 3) found = 1;
    return found;
}

static char self[PATH_MAX], bindir[PATH_MAX];

static void test_skip_is_not_a_pass(void) {
    char cmd[PATH_MAX + 32], out[4096];
    int rc, p = -1, f = -1, s = -1;
    snprintf(cmd, sizeof cmd, "'%s' --inner 2>&1", self);
    run(cmd, out, sizeof out, &rc);
    T_CHECKF(summary(out, &p, &f, &s), "no summary line in:\n%s", out);
    T_CHECKF(p == 0 && f == 1 && s == 1, "one skip and one failure counted as %d passed, "
             "%d failed, %d skipped", p, f, s);
    T_CHECK(strstr(out, "skip skips") && strstr(out, "FAIL fails"));
    T_CHECKF(rc == 1, "exit status %d with a failure", rc);
}

/* The binaries that load bundled fixtures (tests/fixtures, relative to the
 * checkout), run where there are none. */
static void test_missing_fixture_fails(void) {
    static const char *const bins[] = { "test_engine", "test_spec", "test_tts", "test_pp",
                                        "test_tok", "test_model", "test_sched" };
    char dir[] = "/tmp/brisk_test_harness_XXXXXX";
    T_CHECK(mkdtemp(dir) != NULL);
    static char out[1 << 20];
    for (size_t i = 0; i < sizeof bins / sizeof *bins; i++) {
        char cmd[3 * PATH_MAX];
        snprintf(cmd, sizeof cmd, "cd '%s' && BRISK_SHARED='%s' '%s/%s' 2>&1", dir, dir, bindir, bins[i]);
        int rc, p = 0, f = 0, s = 0;
        run(cmd, out, sizeof out, &rc);
        int has = summary(out, &p, &f, &s);
        printf("  %s without fixtures: %d passed, %d failed, %d skipped, exit %d\n", bins[i], p, f, s, rc);
        T_CHECKF(has && f > 0 && rc != 0, "%s reports no failure without its fixtures", bins[i]);
        /* a skip there must be for the optional data under ../shared */
        for (const char *l = strstr(out, "  SKIP: "); l; l = strstr(l + 1, "  SKIP: ")) {
            const char *e = strchr(l, '\n');
            int len = e ? (int)(e - l) : (int)strlen(l);
            char line[512];
            snprintf(line, sizeof line, "%.*s", len, l);
            T_CHECKF(strstr(line, "../shared"), "%s skips without its fixture: %s", bins[i], line);
        }
    }
    rmdir(dir);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--inner")) {
        T_RUN(skips);
        T_RUN(fails);
        T_DONE();
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) { printf("cannot read /proc/self/exe\n0 passed, 1 failed, 0 skipped\n"); return 1; }
    self[n] = 0;
    snprintf(bindir, sizeof bindir, "%s", self);
    *strrchr(bindir, '/') = 0;
    T_RUN(test_skip_is_not_a_pass);
    T_RUN(test_missing_fixture_fails);
    T_DONE();
}
