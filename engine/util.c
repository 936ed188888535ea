/* util.c — error reporting, file reading and mapping and a growable string,
 * shared by every module. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

int eng_seterr(eng_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int eng_read_file(const char *path, size_t max, char **buf, size_t *len, eng_err *err) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        eng_seterr(err, ENG_EIO, "%s: cannot open: %s", path, strerror(e));
        errno = e;   /* callers may treat ENOENT as "optional file absent" */
        return ENG_EIO;
    }
    long size = -1;
    if (!fseek(f, 0, SEEK_END)) size = ftell(f);
    int rc = ENG_OK;
    if (size < 0 || fseek(f, 0, SEEK_SET))
        rc = eng_seterr(err, ENG_EIO, "%s: cannot read", path);
    else if (max && (size_t)size > max)
        rc = eng_seterr(err, ENG_EFORMAT, "%s: %ld bytes, more than the %zu allowed", path, size, max);
    else if (!(*buf = malloc((size_t)size + 1)))
        rc = eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
    else if (fread(*buf, 1, (size_t)size, f) != (size_t)size)
        rc = eng_seterr(err, ENG_EIO, "%s: short read", path);
    fclose(f);
    if (rc) { free(*buf); *buf = NULL; return rc; }
    (*buf)[size] = 0;
    if (len) *len = (size_t)size;
    return ENG_OK;
}

int eng_map_file(const char *path, const void **map, size_t *size, eng_err *err) {
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);   /* no hang on a FIFO */
    if (fd < 0) {
        int e = errno;
        return eng_seterr(err, ENG_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    int rc = ENG_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        rc = eng_seterr(err, ENG_EIO, "%s: not a regular file", path);
    else if (sb.st_size > 0) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            rc = eng_seterr(err, ENG_EIO, "%s: cannot mmap: %s", path, strerror(errno));
        else {
            *map = m;
            *size = (size_t)sb.st_size;
        }
    }
    close(fd);
    return rc;
}

void eng_unmap_file(const void *map, size_t size) {
    if (map) munmap((void *)map, size);
}

/* ------------------------------------------------------------ eng_buf */
static int buf_reserve(eng_buf *b, size_t extra) {
    if (b->oom) return -1;
    if (extra > ((size_t)-1) / 4 - b->n) { b->oom = 1; return -1; }
    size_t need = b->n + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

int eng_buf_add(eng_buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int eng_buf_adds(eng_buf *b, const char *s) { return eng_buf_add(b, s, strlen(s)); }
int eng_buf_addc(eng_buf *b, char c) { return eng_buf_add(b, &c, 1); }

int eng_buf_printf(eng_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = 1; return -1; }
    if (buf_reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
    return 0;
}

const char *eng_buf_str(const eng_buf *b) { return b->p ? b->p : ""; }

void eng_buf_clear(eng_buf *b) {
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

void eng_buf_free(eng_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

char *eng_buf_take(eng_buf *b) {
    char *s = b->oom ? NULL : b->p ? b->p : calloc(1, 1);
    if (b->oom) free(b->p);
    memset(b, 0, sizeof *b);
    return s;
}

double eng_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
