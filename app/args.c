/* args.c — option values for the subcommands (args.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "args.h"
#include "eng.h"

int arg_int(const char *cmd, const char *opt, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "brisk %s: %s must be an integer from %ld to %ld (got '%s')\n",
                cmd, opt, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int arg_num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= hi)) {
        fprintf(stderr, "brisk %s: %s must be a number from %g to %g (got '%s')\n",
                cmd, opt, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int arg_u64(const char *cmd, const char *opt, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end || errno || *v == '-' || *v == '+') {
        fprintf(stderr, "brisk %s: %s must be an integer from 0 to 18446744073709551615 "
                "(got '%s')\n", cmd, opt, v);
        return -1;
    }
    *out = x;
    return 0;
}

int arg_kv(const char *cmd, const char *opt, const char *v, int *out) {
    int f = eng_kv_format_parse(v);
    if (f < 0) {
        fprintf(stderr, "brisk %s: %s must be f32 or bf16 (got '%s')\n", cmd, opt, v);
        return -1;
    }
    *out = f;
    return 0;
}

int arg_unknown(const char *cmd, const char *opt) {
    fprintf(stderr, "brisk %s: unknown option '%s'\n", cmd, opt);
    return -1;
}

int arg_missing(const char *cmd, const char *opt) {
    fprintf(stderr, "brisk %s: %s needs a value\n", cmd, opt);
    return -1;
}
