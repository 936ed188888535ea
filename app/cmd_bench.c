/* cmd_bench.c — `brisk bench math500 --model DIR ...`: the test-time-scaling
 * benchmark (orchestrator/tts_bench.c does the work; see orc_tts.h). */
#include <stdio.h>
#include "orc_tts.h"
#include "cmds.h"

int cmd_bench(int argc, char **argv) {
    orc_bench_opts o;
    eng_err err = { 0 };
    if (orc_bench_parse(argc, argv, &o, &err)) {
        fprintf(stderr, "brisk bench: %s\n", err.msg);
        orc_bench_usage();
        return 2;
    }
    if (orc_bench_run(&o, &err)) {
        fprintf(stderr, "brisk bench: %s\n", err.msg);
        return 1;
    }
    return 0;
}
