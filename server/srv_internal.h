/* srv_internal.h — what the server module's files share (srv.c owns the
 * sockets and the engine thread; ws_guard.c checks client frames). */
#ifndef SRV_INTERNAL_H
#define SRV_INTERNAL_H
#include <stdint.h>
#include "srv.h"

/* ------------------------------------------------ ws_guard.c
 * RFC 6455 5.1: a server must close a connection on which the client sends
 * an unmasked frame (code 1002).  libwebsockets 4.1 (Debian 12's) accepts
 * them, so the server reads the frame headers itself as they arrive: while
 * a websocket connection's descriptor is watched, every recv() on it scans
 * the bytes read for frame headers and marks the guard bad at an unmasked
 * one; srv.c then closes the connection with 1002. */
typedef struct srv_ws_guard {
    int st;            /* where in a frame the next byte falls */
    int need;          /* header bytes still to come in this state */
    uint64_t left;     /* payload bytes still to come */
    volatile int bad;  /* an unmasked client frame was seen */
} srv_ws_guard;

/* Starts scanning what is read from fd (after the upgrade: the next byte
 * starts a frame).  g must stay valid until srv_ws_unwatch(fd). */
void srv_ws_watch(int fd, srv_ws_guard *g);
void srv_ws_unwatch(int fd);
#endif
