/* util.c — error reporting shared by every module. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "eng.h"

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
