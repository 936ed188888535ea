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

int arg_engine(const char *cmd, int argc, char **argv, int *i, eng_opts *o) {
    eng_err err = { 0 };
    int used = 0;
    if (eng_opts_arg(argv[*i], *i + 1 < argc ? argv[*i + 1] : NULL, o, &used, &err)) {
        fprintf(stderr, "brisk %s: %s\n", cmd, err.msg);
        return -1;
    }
    if (!used) return 0;
    *i += used - 1;
    return 1;
}

int arg_unknown(const char *cmd, const char *opt) {
    fprintf(stderr, "brisk %s: unknown option '%s'\n", cmd, opt);
    return -1;
}

int arg_missing(const char *cmd, const char *opt) {
    fprintf(stderr, "brisk %s: %s needs a value\n", cmd, opt);
    return -1;
}
