/* test_openai.c — runs the OpenAI API tests (tests/openai_test.py: the
 * official `openai` package and curl against build/brisk with the tiny
 * model) and relays their results.  The package lives in a venv that
 * scripts/deps.sh makes: $BRISK_VENV, default ~/.cache/brisk/venv. */
#include "t.h"
#include <unistd.h>

int main(void) {
    const char *v = getenv("BRISK_VENV"), *home = getenv("HOME");
    char py[1024], cmd[2048];
    if (v && *v) snprintf(py, sizeof py, "%s/bin/python", v);
    else snprintf(py, sizeof py, "%s/.cache/brisk/venv/bin/python", home ? home : "/root");
    snprintf(cmd, sizeof cmd, "'%s' -c 'import openai' 2>/dev/null", py);
    if (access(py, X_OK) || system(cmd)) {
        printf("  FAIL: %s with the openai package is missing (scripts/deps.sh makes it)\n", py);
        printf("0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    if (system("command -v curl >/dev/null")) {
        printf("  FAIL: curl is missing (scripts/deps.sh installs it)\n");
        printf("0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    fflush(stdout);
    snprintf(cmd, sizeof cmd, "'%s' tests/openai_test.py build/brisk tests/fixtures/tiny-qwen2", py);
    return system(cmd) == 0 ? 0 : 1;
}
