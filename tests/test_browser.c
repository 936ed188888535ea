/* test_browser.c — the page at / in headless Chromium (tests/browser_test.py):
 * a query sent from the page, its streamed answer read from the page and a
 * screenshot saved to build/page.png. */
#include "t.h"
#include <unistd.h>

int main(void) {
    if (system("command -v chromium >/dev/null 2>&1")) {
        printf("  chromium is missing (scripts/deps.sh installs it)\n0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    fflush(stdout);
    int rc = system("/usr/bin/python3 tests/browser_test.py build/brisk tests/fixtures/tiny-qwen2 build/page.png");
    return rc == 0 ? 0 : 1;
}
