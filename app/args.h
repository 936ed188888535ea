/* args.h — reading a subcommand's option values.  Every reader checks the
 * whole text (no trailing junk, no silent wrap-around) and the range, and on
 * failure prints "brisk CMD: OPTION ..." saying what was wrong; the caller
 * then exits with status 2. */
#ifndef ARGS_H
#define ARGS_H
#include <stdint.h>
#include "eng.h"

/* An integer in [lo, hi]; 0, or -1 after printing the error. */
int arg_int(const char *cmd, const char *opt, const char *v, long lo, long hi, int *out);
/* A number in [lo, hi]. */
int arg_num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out);
/* A seed: an integer from 0 to 2^64 - 1. */
int arg_u64(const char *cmd, const char *opt, const char *v, uint64_t *out);
/* The engine options (eng_opts_arg: --cuda, --tp N, --quant, --kv) at argv[*i]: 0 when it
 * is none of them, 1 when taken (*i then on its last argument), -1 after
 * printing what is wrong. */
int arg_engine(const char *cmd, int argc, char **argv, int *i, eng_opts *o);
/* "brisk CMD: unknown option OPT"; returns -1. */
int arg_unknown(const char *cmd, const char *opt);
/* "brisk CMD: OPT needs a value"; returns -1. */
int arg_missing(const char *cmd, const char *opt);
#endif
