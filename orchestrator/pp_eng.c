/* pp_eng.c — binds the ParallelPrompt runner to the engine (eng.h): prompts
 * through the model's chat template, sequences, forks, appends, steps and
 * end-of-sequence tokens. */
#include <stdlib.h>
#include <string.h>
#include "pp_internal.h"

typedef struct eng_ctx {
    eng_engine *e;
    const eng_tok *tok;
    const eng_config *cfg;
    eng_chat *chat;             /* the model's chat template */
    int end_turn, endoftext;    /* the template's end of turn; <|endoftext|> (-1 when absent) */
} eng_ctx;

/* The prompt as one user message; its text never becomes control tokens. */
static int b_encode(void *ctx, const char *text, int **ids, int *n, eng_err *err) {
    eng_ctx *c = ctx;
    eng_chat_msg m = { .role = "user", .content = text };
    eng_chat_opts o = { .add_generation_prompt = 1 };
    return eng_chat_render(c->chat, &m, 1, &o, ids, n, NULL, err);
}

static int b_add(void *ctx, const int *ids, int n, const eng_sampling *s, int *seq, eng_err *err) {
    return eng_seq_add(((eng_ctx *)ctx)->e, ids, n, s, seq, err);
}

static int b_prefill(void *ctx, int seq, eng_err *err) {
    return eng_seq_prefill(((eng_ctx *)ctx)->e, seq, err);
}

static int b_fork(void *ctx, int seq, const eng_sampling *s, int *child, eng_err *err) {
    return eng_seq_fork(((eng_ctx *)ctx)->e, seq, s, child, err);
}

static int b_append(void *ctx, int seq, const int *ids, int n, eng_err *err) {
    return eng_seq_append(((eng_ctx *)ctx)->e, seq, ids, n, err);
}

static int b_remove(void *ctx, int seq) { return eng_seq_remove(((eng_ctx *)ctx)->e, seq); }
static int b_step(void *ctx, eng_err *err) { return eng_step(((eng_ctx *)ctx)->e, err); }

static int b_last(void *ctx, int seq, int *id) {
    eng_token t;
    int rc = eng_seq_last(((eng_ctx *)ctx)->e, seq, &t);
    *id = t.id;
    return rc;
}

static int b_is_eos(void *ctx, int id) {
    eng_ctx *c = ctx;
    if (id == c->end_turn || id == c->endoftext) return 1;
    for (int i = 0; i < c->cfg->n_eos; i++) if (c->cfg->eos_ids[i] == id) return 1;
    return 0;
}

static int b_put(void *ctx, eng_tok_stream *st, int id, char *out, int cap) {
    return eng_tok_stream_put(((eng_ctx *)ctx)->tok, st, id, 1, out, cap);
}

static int bind(eng_engine *e, const eng_tok *tok, eng_ctx *c, orc_pp_ops *o, eng_err *err) {
    if (!e || !tok) return eng_seterr(err, ENG_EINVAL, "orc_pp: no engine or tokenizer");
    const eng_model *m = eng_engine_model(e);
    c->e = e;
    c->tok = tok;
    c->cfg = m ? eng_model_config(m) : NULL;
    if (!c->cfg) return eng_seterr(err, ENG_EINVAL, "orc_pp: engine has no model");
    int rc = eng_chat_create_from(eng_model_chat_template(m), tok, &c->chat, err);
    if (rc) return rc;
    c->end_turn = eng_chat_end_token(c->chat);
    c->endoftext = eng_tok_find(tok, "<|endoftext|>");
    *o = (orc_pp_ops){c, b_encode, b_add, b_prefill, b_fork, b_append, b_remove, b_step,
                      b_last, b_is_eos, b_put, c->cfg->max_pos};
    return ENG_OK;
}

int orc_pp_run(eng_engine *e, const eng_tok *tok, const orc_pp_schema *s,
               const eng_sampling *samp, int max_tokens, const orc_pp_callbacks *cb,
               orc_pp_result *res, eng_err *err) {
    eng_ctx c;
    orc_pp_ops o;
    int rc = bind(e, tok, &c, &o, err);
    if (rc) return rc;
    char **prompts;
    int k;
    if (!(rc = orc_pp_fill(s, &prompts, &k, err))) {
        rc = orc_pp_run_prompts(&o, prompts, k, s->kind == ORC_PP_DATA ? (const char *const *)s->data : NULL,
                                1, samp, max_tokens, cb, res, err);
        orc_pp_strv_free(prompts, k);
    }
    eng_chat_free(c.chat);
    return rc;
}

int orc_pp_run_serial(eng_engine *e, const eng_tok *tok, const char *prompt,
                      const eng_sampling *samp, int max_tokens, const orc_pp_callbacks *cb,
                      orc_pp_result *res, eng_err *err) {
    eng_ctx c;
    orc_pp_ops o;
    int rc = bind(e, tok, &c, &o, err);
    if (rc) return rc;
    char *p = (char *)prompt;
    if (!prompt) rc = eng_seterr(err, ENG_EINVAL, "orc_pp_run_serial: no prompt");
    else rc = orc_pp_run_prompts(&o, &p, 1, NULL, 0, samp, max_tokens, cb, res, err);
    eng_chat_free(c.chat);
    return rc;
}
