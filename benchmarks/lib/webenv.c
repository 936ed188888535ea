/* webenv.c — the local web environment: a small HTTP/1.1 server on
 * 127.0.0.1 that serves the corpus pages, FTS5 search and a few test
 * endpoints, each answer delayed by a latency drawn from bench_latency.
 *
 * One accept thread; one detached thread per connection (GET only,
 * Connection: close).  Stopping writes to a pipe that every wait also polls,
 * so sleeping or reading threads leave at once. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sqlite3.h>
#include "bench_internal.h"

#define MAX_REQUEST 8192       /* request line + headers */
#define READ_TIMEOUT_MS 5000
#define MAX_CONNS 512          /* connections served at once; more are dropped */

struct bench_webenv {
    bench_webenv_opts o;
    sqlite3 *db;
    int listen_fd, stop_pipe[2], port;
    char url[64];
    pthread_t acceptor;
    pthread_mutex_t mu;        /* latency sampler, db, active count */
    pthread_cond_t idle;
    int active;
    bench_latency lat;
    atomic_long requests;
};

/* ------------------------------------------------------------- latency */
static double rng_unit(uint64_t *s) {
    return ((eng_rng_next(s) >> 11) + 0.5) * 0x1.0p-53;
}

void bench_latency_init(bench_latency *l, double median_ms, double sigma, uint64_t seed) {
    l->median_ms = median_ms;
    l->sigma = sigma;
    l->state = seed ^ 0x6C61746E63790000ull;
}

double bench_latency_draw_ms(bench_latency *l) {
    if (l->median_ms <= 0) return 0;
    if (l->sigma <= 0) return l->median_ms;
    /* Box-Muller: one standard normal from two uniforms */
    double u1 = rng_unit(&l->state), u2 = rng_unit(&l->state);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return l->median_ms * exp(l->sigma * z);
}

typedef struct conn { bench_webenv *w; int fd; } conn;

/* Waits up to ms (-1: no limit) for fd to be ready for ev; 0 when ready,
 * -1 on timeout or when the server stops. */
static int wait_fd(bench_webenv *w, int fd, short ev, int ms) {
    struct pollfd p[2] = {{fd, ev, 0}, {w->stop_pipe[0], POLLIN, 0}};
    int n;
    do n = poll(p, 2, ms);
    while (n < 0 && errno == EINTR);
    if (n <= 0 || (p[1].revents & POLLIN)) return -1;
    return 0;
}

/* Sleeps ms, returning early (nonzero) when the server stops. */
static int nap(bench_webenv *w, double ms) {
    if (ms <= 0) return 0;
    struct pollfd p = {w->stop_pipe[0], POLLIN, 0};
    double end = eng_now_s() + ms / 1000;
    for (;;) {
        double left = (end - eng_now_s()) * 1000;
        if (left <= 0) return 0;
        int n = poll(&p, 1, (int)left + 1);
        if (n > 0) return 1;
        if (n < 0 && errno != EINTR) return 1;
    }
}

static int send_all(bench_webenv *w, int fd, const char *s, size_t n) {
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            s += k;
            n -= (size_t)k;
        } else if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(w, fd, POLLOUT, READ_TIMEOUT_MS)) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static const char *status_text(int code) {
    switch (code) {
    case 200: return "OK";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    default: return "Internal Server Error";
    }
}

/* Sends a whole response; len < 0 leaves out Content-Length. */
static int respond(bench_webenv *w, int fd, int code, const char *ctype, const char *extra,
                   const char *body, long len) {
    char head[512];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nServer: brisk-webenv\r\n"
                     "Content-Type: %s\r\nConnection: close\r\n%s", code, status_text(code),
                     ctype, extra ? extra : "");
    if (len >= 0) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %ld\r\n", len);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (send_all(w, fd, head, (size_t)n)) return -1;
    return body && len != 0 ? send_all(w, fd, body, len > 0 ? (size_t)len : strlen(body)) : 0;
}

static int respond_error(bench_webenv *w, int fd, int code) {
    char body[160];
    snprintf(body, sizeof body, "<html><head><title>%d %s</title></head><body><h1>%d %s</h1>"
             "</body></html>\n", code, status_text(code), code, status_text(code));
    return respond(w, fd, code, "text/html; charset=utf-8",
                   code == 405 ? "Allow: GET\r\n" : NULL, body, (long)strlen(body));
}

/* ---------------------------------------------------------------- queries */
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'f') return (c | 32) - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a malloc'd string ('+' is a space when plus). */
static char *url_decode(const char *s, size_t n, int plus) {
    char *d = malloc(n + 1);
    size_t k = 0;
    if (!d) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            d[k++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            d[k++] = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    d[k] = 0;
    return d;
}

/* Value of parameter key in query string q (malloc'd), or NULL. */
static char *query_param(const char *q, const char *key) {
    size_t kl = strlen(key);
    while (q && *q) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
        if ((size_t)(end - q) > kl && !strncmp(q, key, kl) && q[kl] == '=')
            return url_decode(q + kl + 1, (size_t)(end - q) - kl - 1, 1);
        if ((size_t)(end - q) == kl && !strncmp(q, key, kl)) return strdup("");
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static long param_long(const char *q, const char *key, long def, long lo, long hi) {
    char *v = query_param(q, key);
    long x = def;
    if (v && v[0]) {
        char *e;
        long y = strtol(v, &e, 10);
        if (!*e) x = y;
    }
    free(v);
    return x < lo ? lo : x > hi ? hi : x;
}

/* ---------------------------------------------------------------- routes */
static int serve_search(bench_webenv *w, int fd, const char *query) {
    char *q = query_param(query, "q");
    int k = (int)param_long(query, "k", 5, 1, 50);
    cJSON *res = NULL, *doc = cJSON_CreateObject();
    eng_err err = {0};
    pthread_mutex_lock(&w->mu);
    int rc = bench_corpus_search(w->db, q ? q : "", k, w->url, &res, &err);
    pthread_mutex_unlock(&w->mu);
    char *body = NULL;
    if (!rc && doc) {
        cJSON_AddStringToObject(doc, "query", q ? q : "");
        cJSON_AddItemToObject(doc, "results", res);
        res = NULL;
        body = cJSON_PrintUnformatted(doc);
    }
    int out = body ? respond(w, fd, 200, "application/json", NULL, body, (long)strlen(body))
                   : respond_error(w, fd, 500);
    cJSON_free(body);
    cJSON_Delete(res);
    cJSON_Delete(doc);
    free(q);
    return out;
}

static int serve_page(bench_webenv *w, int fd, const char *path) {
    sqlite3_stmt *st = NULL;
    char *body = NULL;
    pthread_mutex_lock(&w->mu);
    for (int pass = 0; pass < 2 && !body; pass++) {   /* as sent, then percent-decoded */
        char *p = pass ? url_decode(path, strlen(path), 0) : strdup(path);
        if (p && sqlite3_prepare_v2(w->db, "SELECT body_html FROM pages WHERE url = ?", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, p, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW) { const char *h = (const char *)sqlite3_column_text(st, 0); body = h ? strdup(h) : NULL; }
        }
        sqlite3_finalize(st);
        st = NULL;
        free(p);
    }
    pthread_mutex_unlock(&w->mu);
    int rc = body ? respond(w, fd, 200, "text/html; charset=utf-8", NULL, body, (long)strlen(body))
                  : respond_error(w, fd, 404);
    free(body);
    return rc;
}

static int serve_big(bench_webenv *w, int fd, const char *query) {
    long n = param_long(query, "bytes", 1000, 0, 64L << 20);
    int nolen = param_long(query, "nolen", 0, 0, 1) == 1;
    if (respond(w, fd, 200, "text/plain; charset=utf-8", NULL, NULL, nolen ? -1 : n)) return -1;
    char chunk[8192];
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (char)(i % 64 == 63 ? '\n' : 'a' + i % 26);
    while (n > 0) {
        size_t k = n < (long)sizeof chunk ? (size_t)n : sizeof chunk;
        if (send_all(w, fd, chunk, k)) return -1;
        n -= (long)k;
    }
    return 0;
}

static int serve_test(bench_webenv *w, int fd, const char *path, const char *query) {
    if (!strcmp(path, "/_test/slow")) {
        if (nap(w, (double)param_long(query, "ms", 1000, 0, 60000))) return -1;
        return respond(w, fd, 200, "text/plain", NULL, "slow response\n", 14);
    }
    if (!strcmp(path, "/_test/big")) return serve_big(w, fd, query);
    if (!strcmp(path, "/_test/redirect")) {
        long n = param_long(query, "n", 1, 0, 100);
        if (n == 0)
            return respond(w, fd, 200, "text/html", NULL,
                           "<html><head><title>Redirect target</title></head><body>arrived</body></html>", 76);
        char loc[96];
        snprintf(loc, sizeof loc, "Location: /_test/redirect?n=%ld\r\n", n - 1);
        return respond(w, fd, 302, "text/html", loc, "<html><body>moved</body></html>", 31);
    }
    if (!strcmp(path, "/_test/binary"))
        return respond(w, fd, 200, "application/octet-stream", NULL, "\x89PNG\r\n\x1a\n\0\0\0\0", 12);
    if (!strcmp(path, "/_test/json"))
        return respond(w, fd, 200, "application/json", NULL, "{\"ok\": true, \"n\": 3}", 20);
    return respond_error(w, fd, 404);
}

/* ------------------------------------------------------------- requests */
/* Reads the request head; returns its length, 0 for a closed connection,
 * or -(HTTP status) for a bad one. */
static int read_request(bench_webenv *w, int fd, char *buf, size_t cap) {
    size_t n = 0;
    double end = eng_now_s() + READ_TIMEOUT_MS / 1000.0;
    for (;;) {
        int left = (int)((end - eng_now_s()) * 1000);
        if (left <= 0 || wait_fd(w, fd, POLLIN, left)) return eng_now_s() >= end ? -408 : 0;
        ssize_t k = recv(fd, buf + n, cap - 1 - n, MSG_DONTWAIT);
        if (k == 0) return 0;
        if (k < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return 0;
        }
        n += (size_t)k;
        buf[n] = 0;
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n")) return (int)n;
        if (memchr(buf, 0, n)) return -400;
        if (n >= cap - 1) return -431;
    }
}

/* Checks the request line; fills target.  Returns 0 or an HTTP status. */
static int parse_request_line(char *buf, char **target) {
    char *eol = strpbrk(buf, "\r\n");
    if (!eol) return 400;
    *eol = 0;
    char *sp1 = strchr(buf, ' ');
    if (!sp1) return 400;
    char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2 || strchr(sp2 + 1, ' ')) return 400;
    *sp1 = *sp2 = 0;
    for (char *m = buf; *m; m++)
        if (*m < 'A' || *m > 'Z') return 400;
    if (strncmp(sp2 + 1, "HTTP/1.", 7) || !sp2[8] || sp2[9]) return 400;
    if (strcmp(buf, "GET") != 0) return 405;
    *target = sp1 + 1;
    if ((*target)[0] != '/') return 400;
    if (strlen(*target) > 2048) return 414;
    for (unsigned char *c = (unsigned char *)*target; *c; c++)
        if (*c <= 0x20 || *c == 0x7F) return 400;
    return 0;
}

static void handle(bench_webenv *w, int fd) {
    char buf[MAX_REQUEST];
    int n = read_request(w, fd, buf, sizeof buf);
    if (n == 0) return;
    char *target = NULL;
    int bad = n < 0 ? -n : parse_request_line(buf, &target);
    pthread_mutex_lock(&w->mu);
    double delay = bench_latency_draw_ms(&w->lat);
    pthread_mutex_unlock(&w->mu);
    if (!bad && nap(w, delay)) return;
    atomic_fetch_add(&w->requests, 1);
    if (bad) {
        respond_error(w, fd, bad);
        return;
    }
    char *q = strchr(target, '?');
    if (q) *q++ = 0;
    if (!strcmp(target, "/search")) serve_search(w, fd, q);
    else if (w->o.test_endpoints && !strncmp(target, "/_test/", 7)) serve_test(w, fd, target, q);
    else serve_page(w, fd, target);
}

static void *conn_main(void *arg) {
    conn *c = arg;
    bench_webenv *w = c->w;
    handle(w, c->fd);
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    free(c);
    pthread_mutex_lock(&w->mu);
    if (--w->active == 0) pthread_cond_broadcast(&w->idle);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void *accept_main(void *arg) {
    bench_webenv *w = arg;
    for (;;) {
        if (wait_fd(w, w->listen_fd, POLLIN, -1)) break;
        int fd = accept(w->listen_fd, NULL, NULL);
        if (fd < 0) {              /* e.g. out of descriptors: do not spin */
            if (nap(w, 10)) break;
            continue;
        }
        conn *c = malloc(sizeof *c);
        pthread_attr_t at;
        pthread_t th;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        pthread_mutex_lock(&w->mu);
        int busy = w->active >= MAX_CONNS;
        w->active++;
        pthread_mutex_unlock(&w->mu);
        if (c) *c = (conn){w, fd};
        if (!c || busy || pthread_create(&th, &at, conn_main, c)) {   /* overloaded: drop it */
            close(fd);
            free(c);
            pthread_mutex_lock(&w->mu);
            if (--w->active == 0) pthread_cond_broadcast(&w->idle);
            pthread_mutex_unlock(&w->mu);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

/* ------------------------------------------------------------------- API */
static int listen_local(int port, int *fd_out, int *port_out, eng_err *err) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return eng_seterr(err, ENG_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 128) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        int e = errno;
        close(fd);
        return eng_seterr(err, ENG_EIO, "cannot listen on 127.0.0.1:%d: %s", port, strerror(e));
    }
    *fd_out = fd;
    *port_out = ntohs(a.sin_port);
    return ENG_OK;
}

int bench_webenv_start(const bench_webenv_opts *o, bench_webenv **out, eng_err *err) {
    *out = NULL;
    if (!o || !o->db_path) return eng_seterr(err, ENG_EINVAL, "webenv needs a corpus database");
    if (o->port < 0 || o->port > 65535) return eng_seterr(err, ENG_EINVAL, "bad port %d", o->port);
    bench_webenv *w = calloc(1, sizeof *w);
    if (!w) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    w->o = *o;
    w->o.db_path = NULL;
    w->listen_fd = w->stop_pipe[0] = w->stop_pipe[1] = -1;
    double med = o->latency_median_ms == 0 ? 400 : o->latency_median_ms;
    double sig = o->latency_sigma == 0 ? 0.6 : o->latency_sigma;
    bench_latency_init(&w->lat, med, sig, o->seed);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->idle, NULL);
    int rc = bench_corpus_open(o->db_path, 1, &w->db, err);
    sqlite3_stmt *st = NULL;
    if (!rc && sqlite3_prepare_v2(w->db, "SELECT url FROM pages, pages_fts LIMIT 0", -1, &st, NULL) != SQLITE_OK)
        rc = eng_seterr(err, ENG_EFORMAT, "%s holds no pages/pages_fts tables", o->db_path);
    sqlite3_finalize(st);
    if (!rc && pipe(w->stop_pipe)) rc = eng_seterr(err, ENG_EIO, "pipe: %s", strerror(errno));
    if (!rc) rc = listen_local(o->port, &w->listen_fd, &w->port, err);
    if (!rc) snprintf(w->url, sizeof w->url, "http://127.0.0.1:%d", w->port);
    if (!rc && pthread_create(&w->acceptor, NULL, accept_main, w))
        rc = eng_seterr(err, ENG_EIO, "cannot start the server thread");
    if (rc) {
        if (w->listen_fd >= 0) close(w->listen_fd);
        if (w->stop_pipe[0] >= 0) close(w->stop_pipe[0]), close(w->stop_pipe[1]);
        sqlite3_close(w->db);
        pthread_cond_destroy(&w->idle);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return rc;
    }
    *out = w;
    return ENG_OK;
}

void bench_webenv_stop(bench_webenv *w) {
    if (!w) return;
    ssize_t k = write(w->stop_pipe[1], "x", 1);
    (void)k;
    pthread_join(w->acceptor, NULL);
    pthread_mutex_lock(&w->mu);
    while (w->active > 0) pthread_cond_wait(&w->idle, &w->mu);
    pthread_mutex_unlock(&w->mu);
    close(w->listen_fd);
    close(w->stop_pipe[0]);
    close(w->stop_pipe[1]);
    sqlite3_close(w->db);
    pthread_cond_destroy(&w->idle);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int bench_webenv_port(const bench_webenv *w) { return w->port; }
const char *bench_webenv_url(const bench_webenv *w) { return w->url; }
long bench_webenv_requests(const bench_webenv *w) { return atomic_load(&w->requests); }

void bench_webenv_reseed(bench_webenv *w, uint64_t seed) {
    pthread_mutex_lock(&w->mu);
    bench_latency_init(&w->lat, w->lat.median_ms, w->lat.sigma, seed);
    pthread_mutex_unlock(&w->mu);
}
