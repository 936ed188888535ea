/* util.c — error reporting shared by every module. */
#include <stdarg.h>
#include <stdio.h>
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
