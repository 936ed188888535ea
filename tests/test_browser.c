/* test_browser.c — the page at / in headless Chromium (tests/browser_test.py)
 * on the real default model: a question sent from the page, its streamed
 * answer read from the page (it must say Paris) and a screenshot saved to
 * build/page.png. */
#include "t.h"
#include <unistd.h>

int main(void) {
    if (system("command -v chromium >/dev/null 2>&1")) {
        printf("  chromium is missing (scripts/deps.sh installs it)\n0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    const char *model = t_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!model) {
        printf("  SmolLM2-135M-Instruct.Q4_1.gguf is missing: run scripts/models.sh\n"
               "0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    char cmd[4600];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/browser_test.py build/brisk '%s' build/page.png", model);
    fflush(stdout);
    int rc = system(cmd);
    return rc == 0 ? 0 : 1;
}
