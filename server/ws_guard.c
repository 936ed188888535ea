/* ws_guard.c — closes the gap of RFC 6455 5.1 in libwebsockets 4.1: client
 * frames must be masked (see srv_internal.h).
 *
 * libwebsockets reads its sockets with recv().  This file defines recv for
 * the program (the dynamic linker binds the library's calls to it), passes
 * every call to the kernel unchanged, and for a descriptor that srv.c
 * watches runs the bytes read through a frame-header scanner.  The table of
 * watched descriptors is global because recv() has no other way to find
 * it; only the libwebsockets thread writes it, and every other thread's
 * recv() reads an empty slot for its own descriptors. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "srv_internal.h"

enum { MAX_FD = 65536 };
static _Atomic(srv_ws_guard *) watched[MAX_FD];

/* Frame header states (RFC 6455 5.2). */
enum { S_OP, S_LEN, S_EXT, S_KEY, S_PAYLOAD, S_BAD };

void srv_ws_watch(int fd, srv_ws_guard *g) {
    if (fd < 0 || fd >= MAX_FD) return;
    g->st = S_OP;
    g->need = 0;
    g->left = 0;
    g->bad = 0;
    atomic_store(&watched[fd], g);
}

void srv_ws_unwatch(int fd) {
    if (fd >= 0 && fd < MAX_FD) atomic_store(&watched[fd], NULL);
}

static void scan(srv_ws_guard *g, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n && g->st != S_BAD; i++) {
        unsigned char b = p[i];
        switch (g->st) {
        case S_OP:
            g->st = S_LEN;
            break;
        case S_LEN:
            if (!(b & 0x80)) { g->st = S_BAD; g->bad = 1; break; }
            g->left = b & 0x7f;
            if (g->left >= 126) {
                g->need = g->left == 126 ? 2 : 8;
                g->left = 0;
                g->st = S_EXT;
            } else {
                g->need = 4;
                g->st = S_KEY;
            }
            break;
        case S_EXT:
            g->left = g->left << 8 | b;
            if (!--g->need) { g->need = 4; g->st = S_KEY; }
            break;
        case S_KEY:
            if (!--g->need) g->st = g->left ? S_PAYLOAD : S_OP;
            break;
        case S_PAYLOAD: {
            size_t k = n - i < g->left ? n - i : (size_t)g->left;
            g->left -= k;
            i += k - 1;
            if (!g->left) g->st = S_OP;
            break;
        }
        }
    }
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
    ssize_t r = syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL);
    srv_ws_guard *g = fd >= 0 && fd < MAX_FD ? atomic_load(&watched[fd]) : NULL;
    if (g && r > 0 && !(flags & MSG_PEEK)) scan(g, buf, (size_t)r);
    return r;
}
