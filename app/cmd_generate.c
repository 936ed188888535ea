/* cmd_generate.c — `brisk generate`: load a model, stream one completion to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "eng.h"
#include "orc.h"
#include "cmds.h"
#include "args.h"

typedef struct gen_args {
    const char *model, *prompt;
    int max_tokens, chat, stats;
    eng_opts eng;
    eng_sampling samp;
} gen_args;

static int gen_usage(void) {
    fprintf(stderr, "usage: brisk generate --model DIR --prompt TEXT [--max-tokens N] "
                    "[--temperature T] [--top-k K] [--top-p P] [--seed S] [--chat] " ENG_OPTS_USAGE " [--stats]\n"
                    "       [--kv f32|bf16]  (how the KV cache stores keys and values; default f32)\n");
    return -1;
}

static int parse_args(int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->max_tokens = 128;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        int rc = arg_engine("generate", argc, argv, &i, &a->eng);
        if (rc) { if (rc < 0) return rc; continue; }
        if (!strcmp(k, "--chat")) { a->chat = 1; continue; }
        if (!strcmp(k, "--stats")) { a->stats = 1; continue; }
        if (strcmp(k, "--model") && strcmp(k, "--prompt") && strcmp(k, "--max-tokens") &&
            strcmp(k, "--temperature") && strcmp(k, "--top-k") && strcmp(k, "--top-p") &&
            strcmp(k, "--seed"))
            return arg_unknown("generate", k);
        if (!v) return arg_missing("generate", k);
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--prompt")) a->prompt = v;
        else if (!strcmp(k, "--max-tokens")) rc = arg_int("generate", k, v, 1, 1 << 20, &a->max_tokens);
        else if (!strcmp(k, "--temperature")) {
            if (!(rc = arg_num("generate", k, v, 0, 5, &x))) a->samp.temperature = (float)x;
        } else if (!strcmp(k, "--top-k")) rc = arg_int("generate", k, v, 0, 1000000, &a->samp.top_k);
        else if (!strcmp(k, "--top-p")) {
            if (!(rc = arg_num("generate", k, v, 0, 1, &x))) a->samp.top_p = (float)x;
        } else rc = arg_u64("generate", k, v, &a->samp.seed);
        if (rc) return rc;
        i++;
    }
    if (!a->model || !a->prompt) return gen_usage();
    return 0;
}

static int is_eos(const eng_config *c, int id) {
    for (int i = 0; i < c->n_eos; i++) if (c->eos_ids[i] == id) return 1;
    return 0;
}

/* Tokenises the prompt as the server does (orc_encode_query): with --chat as
 * a user message through the model's chat template, else as plain text
 * after the model's BOS (if it has one). */
static int encode_prompt(const eng_model *m, const gen_args *a, int **ids, int *n, eng_err *err) {
    eng_chat_msg msg = { .role = "user", .content = a->prompt };
    orc_query q = { .prompt = a->chat ? NULL : (char *)a->prompt,
                    .messages = a->chat ? &msg : NULL, .n_messages = a->chat ? 1 : 0 };
    return orc_encode_query(&q, m, ids, n, err);
}

static int run(const gen_args *a, eng_err *err) {
    eng_model *m = NULL;
    eng_engine *e = NULL;
    int *ids = NULL, n = 0, seq, rc;
    if ((rc = eng_model_load_blocks(a->model, &m, err))) return rc;
    eng_opts o = a->eng;
    o.max_seqs = 4;
    const eng_tok *tok = eng_model_tok(m);
    if ((rc = eng_create(m, &o, &e, err))) goto out;
    if ((rc = encode_prompt(m, a, &ids, &n, err))) goto out;
    if ((rc = eng_seq_add(e, ids, n, &a->samp, &seq, err))) goto out;
    eng_tok_stream ts = { .n_pend = 0 };
    char buf[256];
    double t0 = eng_now_s(), t_first = 0;
    int produced = 0;
    while (produced < a->max_tokens) {
        if ((rc = eng_step(e, err))) goto out;
        eng_token t;
        eng_seq_last(e, seq, &t);
        if (!produced) t_first = eng_now_s();
        produced++;
        if (is_eos(eng_model_config(m), t.id)) break;
        int w = eng_tok_stream_put(tok, &ts, t.id, 1, buf, sizeof buf);
        fwrite(buf, 1, (size_t)w, stdout);
        fflush(stdout);
    }
    putchar('\n');
    fflush(stdout);   /* the stats line (stderr) starts on a line of its own */
    if (a->stats) {
        double t1 = eng_now_s();
        char what[256];
        eng_describe(e, what, sizeof what);
        fprintf(stderr, "prompt %d tokens, generated %d, first token %.1f ms, %.1f tokens/s after it; %s\n",
                n, produced, (t_first - t0) * 1e3, produced > 1 ? (produced - 1) / (t1 - t_first) : 0.0,
                what);
    }
out:
    free(ids);
    eng_destroy(e);
    eng_model_free(m);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    if (parse_args(argc, argv, &a)) return 2;
    eng_err err = { 0 };
    if (run(&a, &err)) {
        fprintf(stderr, "brisk generate: %s\n", err.msg);
        return 1;
    }
    return 0;
}
