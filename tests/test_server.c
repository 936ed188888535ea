/* test_server.c — runs the websocket integration tests (tests/server_test.py,
 * a real client on Debian's python3-websockets) against build/brisk with the
 * tiny model, and relays their results. */
#include "t.h"
#include <unistd.h>

int main(void) {
    if (access("/usr/bin/python3", X_OK) || system("/usr/bin/python3 -c 'import websockets' 2>/dev/null")) {
        printf("  FAIL: /usr/bin/python3 with python3-websockets is missing (scripts/deps.sh installs it)\n");
        printf("0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    fflush(stdout);
    int rc = system("/usr/bin/python3 tests/server_test.py build/brisk tests/fixtures/tiny-qwen2");
    return rc == 0 ? 0 : 1;
}
