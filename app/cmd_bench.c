/* cmd_bench.c — `brisk bench math500 --model DIR ...`: the test-time-scaling
 * benchmark (orchestrator/math500.c does the work; see orc_tts.h). */
#include <stdio.h>
#include "bench.h"
#include "cmds.h"

int cmd_bench(int argc, char **argv) {
    bench_math500_opts o;
    eng_err err = { 0 };
    if (bench_math500_parse(argc, argv, &o, &err)) {
        fprintf(stderr, "brisk bench: %s\n", err.msg);
        bench_math500_usage();
        return 2;
    }
    if (bench_math500_run(&o, &err)) {
        fprintf(stderr, "brisk bench: %s\n", err.msg);
        return 1;
    }
    return 0;
}
