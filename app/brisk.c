/* brisk.c — entry point: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>
#include "cmds.h"

static void usage(void) {
    fprintf(stderr,
        "usage: brisk <command> [options]\n"
        "  generate --model DIR --prompt TEXT [--max-tokens N] [--temperature T] [--seed S] [--chat]\n"
        "  serve    --model DIR [--port P]\n"
        "  replay   parallelprompt FILE.json [--model DIR]\n"
        "  bench    math500 --model DIR [--limit K]\n"
        "  mkmodel  --preset NAME --out DIR [--format q8_0|q4_0|q4_k_m]   (random weights, real shapes, for speed tests)\n"
        "  tokenize --model DIR|tokenizer.json|FILE.gguf --text TEXT [--ids] [--special]\n"
        "  grade    --gold G --answer A [--json] | --jsonl FILE   (MATH answer grading; --help)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(); return 2; }
    const char *c = argv[1];
    if (!strcmp(c, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(c, "serve"))    return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(c, "mkmodel"))  return cmd_mkmodel(argc - 1, argv + 1);
    if (!strcmp(c, "replay"))   return cmd_replay(argc - 1, argv + 1);
    if (!strcmp(c, "bench"))    return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(c, "grade"))    return cmd_grade(argc - 1, argv + 1);
    if (!strcmp(c, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(c, "help") && strcmp(c, "--help") && strcmp(c, "-h"))
        fprintf(stderr, "brisk: unknown command '%s'\n", c);
    usage();
    return 2;
}
