/* cmd_tokenize.c — `brisk tokenize`: the token ids of a text, as the model's
 * tokenizer gives them (encode without added BOS, like Hugging Face's
 * add_special_tokens=False).
 *
 *   brisk tokenize --model M --text T [--ids] [--special]
 *
 * M is a model folder, a tokenizer.json or a .gguf file (eng_tok_open).
 * Output: one line per token, "id -> 'piece'" (the piece's raw bytes), or
 * with --ids the ids alone as llama.cpp's `llama-tokenize --ids` prints
 * them: [1, 2, 3].  --special lets special tokens written in the text
 * (<|im_start|>, ...) be those tokens; without it they are text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "eng.h"
#include "cmds.h"

static const char *USAGE = "usage: brisk tokenize --model DIR|tokenizer.json|FILE.gguf --text TEXT [--ids] [--special]\n";

typedef struct tok_args { const char *model, *text; int ids, special; } tok_args;

static int parse_args(int argc, char **argv, tok_args *a, FILE *err) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--ids")) { a->ids = 1; continue; }
        if (!strcmp(k, "--special")) { a->special = 1; continue; }
        if (strcmp(k, "--model") && strcmp(k, "--text")) {
            fprintf(err, "brisk tokenize: unknown option %s\n%s", k, USAGE);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(err, "brisk tokenize: %s needs a value\n%s", k, USAGE);
            return -1;
        }
        if (!strcmp(k, "--model")) a->model = argv[++i];
        else a->text = argv[++i];
    }
    if (!a->model || !a->text) {
        fprintf(err, "brisk tokenize: %s is required\n%s", a->model ? "--text" : "--model", USAGE);
        return -1;
    }
    return 0;
}

static void print_tokens(FILE *out, const eng_tok *t, const int *ids, int n, int ids_only) {
    if (ids_only) {
        fputc('[', out);
        for (int i = 0; i < n; i++) fprintf(out, i ? ", %d" : "%d", ids[i]);
        fputs("]\n", out);
        return;
    }
    for (int i = 0; i < n; i++) {
        int len;
        const char *p = eng_tok_piece(t, ids[i], &len);
        fprintf(out, "%6d -> '", ids[i]);
        fwrite(p, 1, (size_t)len, out);
        fputs("'\n", out);
    }
}

int cmd_tokenize_to(FILE *out, FILE *err, int argc, char **argv) {
    tok_args a;
    if (parse_args(argc, argv, &a, err)) return 2;
    eng_err e = {0};
    eng_tok *t = NULL;
    int *ids = NULL, n = 0;
    int rc = eng_tok_open(a.model, &t, &e);
    if (!rc) rc = eng_tok_encode(t, a.text, strlen(a.text), a.special, &ids, &n, &e);
    if (!rc) print_tokens(out, t, ids, n, a.ids);
    else fprintf(err, "brisk tokenize: %s\n", e.msg);
    free(ids);
    eng_tok_free(t);
    return rc ? 1 : 0;
}

int cmd_tokenize(int argc, char **argv) { return cmd_tokenize_to(stdout, stderr, argc, argv); }
