/* engine.c — sequences, continuous batching and the KV block tables.
 *
 * A sequence holds its tokens (prompt, then generated) and how many of them
 * are already in the KV cache; the rest are pending.  eng_step puts the
 * pending tokens of every live sequence into one batch (a prompt being
 * prefilled and single decode tokens side by side), runs it through the
 * backend, and appends one sampled token per sequence, which is pending for
 * the next step.  A sequence with speculation on (spec.c) adds its draft
 * tokens as rows after its pending ones, and keeps what verification
 * accepts: one step may append several tokens, and the rejected drafts'
 * KV entries are rolled back (eng_kv_table_truncate).
 *
 * The engine decides which KV block holds which positions (kv.c); the
 * backend owns the memory and the math (backend.h).  Everything a step
 * needs (free blocks, memory) is secured before any sequence changes, so a
 * step that cannot run (ENG_EFULL) leaves every sequence as it was.
 *
 * Details eng.h leaves open:
 *  - a sequence id is the lowest free slot, so ids are reused after
 *    eng_seq_remove;
 *  - eng_seq_last is ENG_EINVAL until the sequence has sampled a token;
 *    eng_seq_n_prompt is -1 for an unknown id;
 *  - a fork with s == NULL continues the parent's random stream from where
 *    it is (same settings, same next draws); with s it starts from s->seed;
 *  - with keep_all_logits on, eng_seq_prefill keeps the logits of the rows
 *    it ran, and eng_seq_logits returns those until the next step;
 *  - the free-block check counts a private copy for every sequence writing
 *    into a shared block, an upper bound when the last holder could write
 *    in place;
 *  - a sequence's KV entries past its cached tokens (rejected drafts) are
 *    stale but never read: a row attends to positions up to its own, and
 *    every row writes its K/V before any row attends. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "engine_int.h"

static int bad_seq(int id, eng_err *err) {
    return eng_seterr(err, ENG_EINVAL, "no live sequence with id %d", id);
}

/* Sets the int flag at offset off in live sequence id (paused, want_logits,
 * keep_all) to on != 0. */
static int set_flag(eng_engine *e, int id, size_t off, int on) {
    seq *s = eng_get_seq(e, id);
    if (!s) return ENG_EINVAL;
    *(int *)((char *)s + off) = on != 0;
    return ENG_OK;
}

/* Every one of the n ids must be a token of the vocabulary; fn names the
 * caller in the error. */
static int check_ids(const eng_engine *e, const char *fn, const int *ids, int n, eng_err *err) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= e->c.vocab_size)
            return eng_seterr(err, ENG_EINVAL, "%s: token %d at %d is outside the "
                              "vocabulary [0, %d)", fn, ids[i], i, e->c.vocab_size);
    return ENG_OK;
}

static int copy_block(void *ctx, int src, int dst, eng_err *err) {
    eng_backend *be = ctx;
    return be->copy_block(be, src, dst, err);
}

static int grow(void **p, size_t n, size_t size, eng_err *err) {
    void *q = realloc(*p, n * size);
    if (!q) return eng_seterr(err, ENG_ENOMEM, "engine: out of memory (%zu bytes)", n * size);
    *p = q;
    return ENG_OK;
}

/* Room for rows token rows and n_out out rows; with_logits: also for their
 * logits in e->logits (which eng_seq_prefill leaves alone, as other
 * sequences' last logits live there). */
static int reserve_batch(eng_engine *e, int rows, int n_out, int with_logits, eng_err *err) {
    int rc = ENG_OK;
    if (rows > e->cap_rows) {
        if (!rc) rc = grow((void **)&e->tokens, rows, sizeof *e->tokens, err);
        if (!rc) rc = grow((void **)&e->pos, rows, sizeof *e->pos, err);
        if (!rc) rc = grow((void **)&e->row_seq, rows, sizeof *e->row_seq, err);
        if (!rc) e->cap_rows = rows;
    }
    if (!rc && n_out > e->cap_out) {
        if (!rc) rc = grow((void **)&e->out_rows, n_out, sizeof *e->out_rows, err);
        if (!rc) rc = grow((void **)&e->force, n_out, sizeof *e->force, err);
        if (!rc) rc = grow((void **)&e->samp, n_out, sizeof *e->samp, err);
        if (!rc) rc = grow((void **)&e->rng, n_out, sizeof *e->rng, err);
        if (!rc) rc = grow((void **)&e->sampled, n_out, sizeof *e->sampled, err);
        if (!rc) e->cap_out = n_out;
    }
    if (!rc && with_logits && n_out > e->cap_logits) {
        rc = grow((void **)&e->logits, (size_t)n_out * e->c.vocab_size, sizeof *e->logits, err);
        if (!rc) e->cap_logits = n_out;
    }
    return rc;
}

static int reserve_tokens(seq *s, int n, eng_err *err) {
    if (n <= s->cap_tok) return ENG_OK;
    int cap = s->cap_tok ? s->cap_tok : 16;
    while (cap < n) cap *= 2;
    int rc = grow((void **)&s->tok, cap, sizeof *s->tok, err);
    if (!rc) s->cap_tok = cap;
    return rc;
}

/* Room for n new tokens' details. */
static int reserve_new(seq *s, int n, eng_err *err) {
    if (n <= s->cap_new) return ENG_OK;
    int rc = grow((void **)&s->new_info, n, sizeof *s->new_info, err);
    if (!rc) s->cap_new = n;
    return rc;
}

/* ------------------------------------------------------------- create */
int eng_act_parse(const char *name) {
    return !strcmp(name, "auto") ? ENG_ACT_AUTO : !strcmp(name, "f32") ? ENG_ACT_F32
         : !strcmp(name, "q16") ? ENG_ACT_Q16 : !strcmp(name, "bf16") ? ENG_ACT_BF16 : -1;
}

const char *eng_act_name(int act) {
    return act == ENG_ACT_AUTO ? "auto" : act == ENG_ACT_F32 ? "f32" : act == ENG_ACT_Q16 ? "q16"
         : act == ENG_ACT_BF16 ? "bf16" : "?";
}

/* The first layer product or lm_head of m not stored in a block type (its
 * name), or NULL when every one is: what ENG_ACT_Q16 needs. */
static const char *dense_product(const eng_model *m) {
    const eng_tensor *head = m->t_lm_head ? m->t_lm_head : m->t_embed;
    if (!head || eng_dt_block(head->dtype) <= 1) return "the lm_head";
    static const char *names[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                   "ffn_up", "ffn_down"};
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const eng_layer_w *w = &m->layers[l];
        const eng_tensor *t[7] = {w->t_wq ? w->t_wq : w->t_wq_gguf, w->t_wk ? w->t_wk : w->t_wk_gguf,
                                  w->t_wv, w->t_wo, w->t_gate, w->t_up, w->t_down};
        for (int i = 0; i < 7; i++)
            if (!t[i] || eng_dt_block(t[i]->dtype) <= 1) return names[i];
    }
    return NULL;
}

int eng_create(eng_model *m, const eng_opts *o, eng_engine **out, eng_err *err) {
    if (!out) return eng_seterr(err, ENG_EINVAL, "eng_create: no output pointer");
    *out = NULL;
    if (!m) return eng_seterr(err, ENG_EINVAL, "eng_create: no model");
    eng_opts d = { 0 };
    if (o) d = *o;
    if (d.block_size < 0 || d.n_blocks < 0 || d.max_seqs < 0 || d.n_threads < 0)
        return eng_seterr(err, ENG_EINVAL, "eng_create: negative option (block_size %d, n_blocks %d, "
                          "max_seqs %d, n_threads %d)", d.block_size, d.n_blocks, d.max_seqs,
                          d.n_threads);
    if (d.tp < 0 || d.tp > ENG_TP_MAX)
        return eng_seterr(err, ENG_EINVAL, "eng_create: tp %d outside [0, %d]", d.tp, ENG_TP_MAX);
    if (d.kv_format != ENG_KV_F32 && d.kv_format != ENG_KV_BF16)
        return eng_seterr(err, ENG_EINVAL, "eng_create: unknown KV format %d", d.kv_format);
    /* the quantized blocks are read by the CUDA backend on one GPU only */
    if (d.quant < ENG_QUANT_AUTO || d.quant > ENG_QUANT_LEAN)
        return eng_seterr(err, ENG_EINVAL, "eng_create: unknown quant setting %d", d.quant);
    if ((d.quant == ENG_QUANT_ON || d.quant == ENG_QUANT_LEAN) &&
        (d.backend != ENG_BACKEND_CUDA || d.tp > 1))
        return eng_seterr(err, ENG_EINVAL, "%s reads a GGUF file's blocks on the CUDA backend (--cuda) "
                          "of one GPU; %s", d.quant == ENG_QUANT_ON ? "--quant" : "--quant-lean",
                          d.backend != ENG_BACKEND_CUDA ? "the CPU backend reads the dequantized weights"
                                                        : "a split (--tp) keeps dense shares");
    if (!strcmp(eng_act_name(d.act), "?"))
        return eng_seterr(err, ENG_EINVAL, "eng_create: unknown activation format %d", d.act);
    /* AUTO: F32 but where the CUDA backend of one GPU reads every product
     * from blocks (it then takes Q16 where its kernels do) */
    if (d.act == ENG_ACT_AUTO && (d.backend != ENG_BACKEND_CUDA || d.tp > 1 || d.quant == ENG_QUANT_OFF ||
                                  dense_product(m)))
        d.act = ENG_ACT_F32;
    if (d.act == ENG_ACT_Q16) {
        const char *a = eng_act_name(d.act), *t = dense_product(m);
        if (d.tp > 1) return eng_seterr(err, ENG_EUNSUPPORTED, "--act %s runs on one rank (no --tp)", a);
        if (d.quant == ENG_QUANT_OFF && d.backend == ENG_BACKEND_CUDA)
            return eng_seterr(err, ENG_EUNSUPPORTED, "--act %s reads the file's blocks (not --no-quant)", a);
        if (t)
            return eng_seterr(err, ENG_EUNSUPPORTED, "--act %s needs every layer product and the "
                              "lm_head in a quantized block type; %s is not", a, t);
    }
    /* BF16 rounds the inputs of dense products: the blocks' kernels take
     * f32 or Q16 inputs, so a GGUF file runs from its dense copy */
    if (d.act == ENG_ACT_BF16) {
        if (d.tp > 1) return eng_seterr(err, ENG_EUNSUPPORTED, "--act bf16 runs on one rank (no --tp)");
        if (d.quant == ENG_QUANT_ON || d.quant == ENG_QUANT_LEAN)
            return eng_seterr(err, ENG_EUNSUPPORTED, "--act bf16 reads dense weights; %s reads the "
                              "file's blocks (leave it out, or --no-quant)",
                              d.quant == ENG_QUANT_ON ? "--quant" : "--quant-lean");
        d.quant = ENG_QUANT_OFF;
    }
    /* eng_backend_cuda_create's quant: 0 the dense copy, 1 the blocks
     * beside it, 2 the blocks alone */
    int quant = d.quant == ENG_QUANT_LEAN ? 2
              : d.quant == ENG_QUANT_ON ||
                (d.quant == ENG_QUANT_AUTO && d.backend == ENG_BACKEND_CUDA && d.tp <= 1);
    if (!d.block_size) d.block_size = 16;
    if (!d.max_seqs) d.max_seqs = 256;
    int blocks_given = d.n_blocks;   /* a draft engine follows the same policy */
    if (!d.n_threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        d.n_threads = n > 0 ? (int)n : 1;
    }
    if (!d.n_blocks) {
        /* a quarter of the context a sequence, but never less than one whole
         * context: with few sequences (serve --max-batch 1) one of them may
         * use all of it */
        int64_t tokens = (int64_t)d.max_seqs * (m->cfg.max_pos / 4 > 1 ? m->cfg.max_pos / 4 : 1);
        if (tokens < m->cfg.max_pos) tokens = m->cfg.max_pos;
        int64_t nb = (tokens + d.block_size - 1) / d.block_size;
        d.n_blocks = nb > (1 << 30) ? 1 << 30 : (int)nb;
#ifdef BRISK_CUDA
        /* The GPU holds what fits in its free memory, not a host-sized pool,
         * and AUTO / ON weigh what each way of holding the weights leaves
         * for it (eng_quant_choice).  (A failure here is not the engine's:
         * create reports its own.) */
        if (d.backend == ENG_BACKEND_CUDA) {
            const int ranks = d.tp > 1 ? d.tp : 1;
            int ok[3] = {0, 0, 0}, fit[3] = {0, 0, 0};
            eng_err tmp;
            for (int q = 0; q < 3; q++)   /* the dense copy alone only where AUTO may take it */
                if (q == quant || (quant == 1 && (q == 2 || d.quant == ENG_QUANT_AUTO)))
                    ok[q] = !eng_backend_cuda_max_blocks(m, d.block_size, d.kv_format, ranks, q,
                                                         &fit[q], &tmp);
            if (quant == 1) quant = eng_quant_choice(d.quant, ok, fit, d.n_blocks);
            if (ok[quant] && fit[quant] > 0 && fit[quant] < d.n_blocks) d.n_blocks = fit[quant];
        }
#endif
    }

    eng_engine *e = calloc(1, sizeof *e);
    if (!e) return eng_seterr(err, ENG_ENOMEM, "eng_create: out of memory");
    e->m = m;
    e->c = m->cfg;
    e->opts = d;
    e->opts.n_blocks = blocks_given;
    e->bs = d.block_size;
    e->max_seqs = d.max_seqs;
    int rc = ENG_OK;
    e->seqs = calloc((size_t)d.max_seqs, sizeof *e->seqs);
    e->seq_len = malloc((size_t)d.max_seqs * sizeof *e->seq_len);
    e->slot_of = malloc((size_t)d.max_seqs * sizeof *e->slot_of);
    e->first_out = malloc((size_t)d.max_seqs * sizeof *e->first_out);
    e->tables = malloc((size_t)d.max_seqs * sizeof *e->tables);
    if (!e->seqs || !e->seq_len || !e->slot_of || !e->first_out || !e->tables)
        rc = eng_seterr(err, ENG_ENOMEM, "eng_create: out of memory for %d sequences", d.max_seqs);
    if (!rc) rc = eng_kv_create(d.n_blocks, d.block_size, &e->kv, err);
    /* the f32 copy of a model loaded with eng_model_load_blocks: every
     * backend reads it but the CUDA backend holding the blocks alone */
    if (!rc && quant != 2) rc = eng_model_dense(m, err);
    if (!rc) {
        e->host_logits = d.backend == ENG_BACKEND_CPU;   /* free there: already on the host */
        if (d.backend == ENG_BACKEND_CPU && d.tp > 1)
            rc = eng_backend_split_create(m, d.n_blocks, d.block_size, d.kv_format, d.tp,
                                          d.n_threads, &e->be, err);
        else if (d.backend == ENG_BACKEND_CPU)
            rc = eng_backend_cpu_create(m, d.n_blocks, d.block_size, d.kv_format, d.act,
                                        d.n_threads, &e->be, err);
#ifdef BRISK_CUDA
        else if (d.backend == ENG_BACKEND_CUDA && d.tp > 1)
            rc = eng_backend_cuda_tp_create(m, d.n_blocks, d.block_size, d.kv_format, d.tp, &e->be,
                                            err);
        else if (d.backend == ENG_BACKEND_CUDA) {
            rc = eng_backend_cuda_create(m, d.n_blocks, d.block_size, d.kv_format, d.act, quant,
                                         &e->be, err);
            if (!rc) e->opts.act = eng_backend_cuda_act(e->be);   /* AUTO resolved */
        }
#endif
        else
            rc = eng_seterr(err, ENG_EUNSUPPORTED, "eng_create: backend %d not available in this "
                            "build", d.backend);
    }
    if (rc) { eng_destroy(e); return rc; }
    *out = e;
    return ENG_OK;
}

int eng_quant_choice(int setting, const int ok[3], const int fit[3], int want) {
    if (ok[1] && (!ok[2] || fit[1] >= want || fit[1] >= fit[2] / 2)) return 1;
    if (ok[2]) return 2;
    if (setting == ENG_QUANT_AUTO && ok[0]) return 0;
    return 1;
}

/* Option k's value v through parse, its one parser (-1: not a value):
 * into *dst, or an error naming the choices. */
static int named_value(const char *k, const char *v, int (*parse)(const char *), const char *choices,
                       int *dst, int *used, eng_err *err) {
    const int f = v ? parse(v) : -1;
    if (f < 0) return eng_seterr(err, ENG_EINVAL, "%s must be %s (got '%s')", k, choices, v ? v : "nothing");
    *dst = f;
    *used = 2;
    return ENG_OK;
}

int eng_opts_arg(const char *k, const char *v, eng_opts *o, int *used, eng_err *err) {
    *used = 0;
    if (!strcmp(k, "--cuda")) {
        o->backend = ENG_BACKEND_CUDA;
        *used = 1;
        return ENG_OK;
    }
    if (!strcmp(k, "--quant") || !strcmp(k, "--no-quant") || !strcmp(k, "--quant-lean")) {
        o->quant = k[2] == 'n' ? ENG_QUANT_OFF : k[7] ? ENG_QUANT_LEAN : ENG_QUANT_ON;
        *used = 1;
        return ENG_OK;
    }
    if (!strcmp(k, "--act")) return named_value(k, v, eng_act_parse, "auto, f32, q16 or bf16", &o->act, used, err);
    if (!strcmp(k, "--kv")) return named_value(k, v, eng_kv_format_parse, "f32 or bf16", &o->kv_format, used, err);
    if (strcmp(k, "--tp")) return ENG_OK;
    char *end = NULL;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || n < 1 || n > ENG_TP_MAX)
        return eng_seterr(err, ENG_EINVAL, "--tp must be an integer from 1 to %d (got '%s')",
                          ENG_TP_MAX, v ? v : "nothing");
    o->tp = (int)n;
    *used = 2;
    return ENG_OK;
}

int eng_tp_ranks(const eng_engine *e) {
    return e && e->be && e->be->n_ranks > 1 ? e->be->n_ranks : 1;
}

int eng_tp_stats(const eng_engine *e, int rank, eng_tp_rank_stats *out, eng_err *err) {
    if (!e || !out) return eng_seterr(err, ENG_EINVAL, "eng_tp_stats: no engine or output");
    if (rank < 0 || rank >= eng_tp_ranks(e))
        return eng_seterr(err, ENG_EINVAL, "eng_tp_stats: rank %d outside [0, %d)", rank,
                          eng_tp_ranks(e));
    memset(out, 0, sizeof *out);
    if (e->be->rank_stats) e->be->rank_stats(e->be, rank, out);
    return ENG_OK;
}

static void free_seq(eng_engine *e, seq *s) {
    eng_sp_seq_free(e, s);
    eng_kv_table_free(e->kv, &s->table);
    free(s->tok);
    free(s->own_logits);
    free(s->forced);
    free(s->new_info);
    memset(s, 0, sizeof *s);
}

void eng_destroy(eng_engine *e) {
    if (!e) return;
    if (e->seqs && e->kv)
        for (int i = 0; i < e->max_seqs; i++)
            if (e->seqs[i].live) free_seq(e, &e->seqs[i]);
    eng_sp_engine_free(e);   /* after the sequences: they hold draft sequences */
    if (e->be) e->be->destroy(e->be);
    eng_kv_destroy(e->kv);
    free(e->seqs);
    free(e->tokens); free(e->pos); free(e->row_seq); free(e->out_rows);
    free(e->samp); free(e->rng); free(e->sampled); free(e->logits); free(e->force);
    free(e->seq_len); free(e->slot_of); free(e->first_out); free(e->tables);
    free(e);
}

/* ---------------------------------------------------------- sequences */
/* Lowest free slot, or -1 with err set. */
static int free_slot(const eng_engine *e, eng_err *err) {
    for (int i = 0; i < e->max_seqs; i++)
        if (!e->seqs[i].live) return i;
    eng_seterr(err, ENG_EFULL, "all %d sequence slots are in use", e->max_seqs);
    return -1;
}

int eng_seq_add(eng_engine *e, const int *prompt, int n, const eng_sampling *s, int *seq_id,
                eng_err *err) {
    if (!e || !seq_id) return eng_seterr(err, ENG_EINVAL, "eng_seq_add: no engine or output");
    if (!prompt || n <= 0) return eng_seterr(err, ENG_EINVAL, "eng_seq_add: empty prompt");
    if (n > e->c.max_pos)
        return eng_seterr(err, ENG_EINVAL, "eng_seq_add: prompt of %d tokens exceeds the model's "
                          "context of %d", n, e->c.max_pos);
    if (check_ids(e, "eng_seq_add", prompt, n, err)) return ENG_EINVAL;
    int slot = free_slot(e, err);
    if (slot < 0) return ENG_EFULL;
    seq *q = &e->seqs[slot];
    memset(q, 0, sizeof *q);
    int rc = reserve_tokens(q, n + 16, err);
    if (rc) return rc;
    memcpy(q->tok, prompt, (size_t)n * sizeof *prompt);
    q->n_tok = q->n_prompt = n;
    if (s) q->samp = *s;          /* else all zero: greedy */
    q->rng = q->samp.seed;
    q->live = 1;
    e->n_live++;
    *seq_id = slot;
    return ENG_OK;
}

int eng_seq_fork(eng_engine *e, int id, const eng_sampling *s, int *child, eng_err *err) {
    seq *p = eng_get_seq(e, id);
    if (!p) return bad_seq(id, err);
    if (!child) return eng_seterr(err, ENG_EINVAL, "eng_seq_fork: no output pointer");
    int slot = free_slot(e, err);
    if (slot < 0) return ENG_EFULL;
    seq *c = &e->seqs[slot];
    memset(c, 0, sizeof *c);
    int rc = reserve_tokens(c, p->cap_tok, err);
    if (!rc) rc = eng_kv_table_fork(e->kv, &p->table, &c->table, err);
    if (rc) { free(c->tok); free(c->table.ids); memset(c, 0, sizeof *c); return rc; }
    memcpy(c->tok, p->tok, (size_t)p->n_tok * sizeof *p->tok);
    c->n_tok = p->n_tok;
    c->n_prompt = p->n_prompt;
    c->n_cached = p->n_cached;
    c->samp = s ? *s : p->samp;
    c->rng = s ? s->seed : p->rng;    /* no settings: the parent's stream, continued */
    c->last = p->last;
    c->has_last = p->has_last;
    c->live = 1;
    e->n_live++;
    rc = eng_sp_fork(e, p, c, err);
    if (rc) { eng_seq_remove(e, slot); return rc; }
    *child = slot;
    return ENG_OK;
}

int eng_seq_remove(eng_engine *e, int id) {
    seq *s = eng_get_seq(e, id);
    if (!s) return ENG_EINVAL;
    free_seq(e, s);
    e->n_live--;
    return ENG_OK;
}

int eng_seq_append(eng_engine *e, int id, const int *ids, int n, eng_err *err) {
    seq *s = eng_get_seq(e, id);
    if (!s) return bad_seq(id, err);
    if (n < 0 || (n > 0 && !ids)) return eng_seterr(err, ENG_EINVAL, "eng_seq_append: no tokens");
    if (n > e->c.max_pos - s->n_tok)
        return eng_seterr(err, ENG_EINVAL, "eng_seq_append: sequence %d would hold %d tokens, the "
                          "model's context is %d", id, s->n_tok + n, e->c.max_pos);
    if (check_ids(e, "eng_seq_append", ids, n, err)) return ENG_EINVAL;
    int rc = reserve_tokens(s, s->n_tok + n + 16, err);
    if (rc) return rc;
    memcpy(s->tok + s->n_tok, ids, (size_t)n * sizeof *ids);
    s->n_tok += n;
    return ENG_OK;
}

int eng_seq_pause(eng_engine *e, int id, int paused) {
    return set_flag(e, id, offsetof(seq, paused), paused);
}

int eng_seq_force(eng_engine *e, int id, const int *ids, int n, eng_err *err) {
    seq *s = eng_get_seq(e, id);
    if (!s) return bad_seq(id, err);
    if (n < 0 || (n > 0 && !ids)) return eng_seterr(err, ENG_EINVAL, "eng_seq_force: no tokens");
    if (check_ids(e, "eng_seq_force", ids, n, err)) return ENG_EINVAL;
    int *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    if (!f) return eng_seterr(err, ENG_ENOMEM, "eng_seq_force: out of memory");
    memcpy(f, ids, (size_t)n * sizeof *f);
    free(s->forced);
    s->forced = f;
    s->n_forced = n;
    s->i_forced = 0;
    return ENG_OK;
}

int eng_seq_want_logits(eng_engine *e, int id, int on) {
    return set_flag(e, id, offsetof(seq, want_logits), on);
}

int eng_seq_truncate(eng_engine *e, int id, int n, eng_err *err) {
    seq *s = eng_get_seq(e, id);
    if (!s) return bad_seq(id, err);
    if (n < 0 || n > s->n_tok)
        return eng_seterr(err, ENG_EINVAL, "eng_seq_truncate: %d tokens outside [0, %d]", n, s->n_tok);
    s->n_tok = n;
    if (s->n_cached > n) s->n_cached = n;
    eng_kv_table_truncate(e->kv, &s->table, s->n_cached);
    return ENG_OK;
}

int eng_seq_keep_all_logits(eng_engine *e, int id, int on) {
    return set_flag(e, id, offsetof(seq, keep_all), on);
}

/* --------------------------------------------------------------- runs */
/* Rows for positions [from, to) of sequence slot, as batch sequence bi. */
static int add_rows(eng_engine *e, int slot, int bi, int from, int to, int row) {
    seq *s = &e->seqs[slot];
    for (int p = from; p < to; p++, row++) {
        e->tokens[row] = s->tok[p];
        e->pos[row] = p;
        e->row_seq[row] = bi;
    }
    e->seq_len[bi] = to;
    e->slot_of[bi] = slot;
    return row;
}

int eng_warmup(eng_engine *e, int max_tokens, int *done, eng_err *err) {
    if (done) *done = 0;
    if (!e || max_tokens < 1) return eng_seterr(err, ENG_EINVAL, "eng_warmup: bad arguments");
    int cap = e->c.max_pos - 1, fit = (eng_kv_n_free(e->kv) - 1) * e->bs - 1;
    if (max_tokens > cap) max_tokens = cap;
    if (max_tokens > fit) max_tokens = fit;
    if (max_tokens < 1) return ENG_OK;
    int *ids = calloc((size_t)max_tokens + 1, sizeof *ids), rc = ENG_OK;
    if (!ids) return eng_seterr(err, ENG_ENOMEM, "eng_warmup: out of memory");
    eng_sampling g = {0};
    for (int n = ENG_WARMUP_STEP < max_tokens ? ENG_WARMUP_STEP : max_tokens;; n += ENG_WARMUP_STEP) {
        if (n > max_tokens) n = max_tokens;
        int seq;
        if ((rc = eng_seq_add(e, ids, n + 1, &g, &seq, err))) break;   /* prefill runs n rows */
        rc = eng_seq_prefill(e, seq, err);
        eng_seq_remove(e, seq);
        if (rc) break;
        if (done) *done = n;
        if (n == max_tokens) break;
    }
    free(ids);
    return rc;
}

int eng_seq_prefill(eng_engine *e, int id, eng_err *err) {
    seq *s = eng_get_seq(e, id);
    if (!s) return bad_seq(id, err);
    int to = s->n_tok - 1, rows = to - s->n_cached;
    if (rows <= 0) return eng_sp_prefill(e, s, err);
    if (to > e->c.max_pos)
        return eng_seterr(err, ENG_EFULL, "sequence %d: %d tokens exceed the model's context of %d",
                          id, to, e->c.max_pos);
    int need = eng_kv_table_need(e->kv, &s->table, s->n_cached, to);
    if (need > eng_kv_n_free(e->kv))
        return eng_seterr(err, ENG_EFULL, "KV cache full: prefilling sequence %d needs %d blocks, "
                          "%d of %d free", id, need, eng_kv_n_free(e->kv), eng_kv_n_blocks(e->kv));
    int n_out = s->keep_all ? rows : 0;
    int rc = reserve_batch(e, rows, n_out, 0, err);
    if (!rc) rc = eng_kv_table_reserve(&s->table, e->bs, to, err);
    size_t nl = (size_t)n_out * e->c.vocab_size;
    if (!rc && nl > s->own_cap) {
        rc = grow((void **)&s->own_logits, nl, sizeof *s->own_logits, err);
        if (!rc) s->own_cap = nl;
    }
    if (!rc) rc = eng_kv_table_prepare(e->kv, &s->table, s->n_cached, to, copy_block, e->be, err);
    if (rc) return rc;

    add_rows(e, id, 0, s->n_cached, to, 0);
    for (int i = 0; i < n_out; i++) e->out_rows[i] = i;
    e->tables[0] = s->table.ids;
    eng_fwd_batch b = {
        .n_rows = rows, .tokens = e->tokens, .pos = e->pos, .row_seq = e->row_seq,
        .n_seqs = 1, .seq_len = e->seq_len, .block_table = e->tables,
        .n_out = n_out, .out_rows = e->out_rows, .logits = n_out ? s->own_logits : NULL,
    };
    double t0 = eng_now_s();
    rc = e->be->forward(e->be, &b, err);
    if (rc) return rc;
    eng_steptime_add(&e->timing, rows, eng_now_s() - t0);
    s->n_cached = to;
    if (n_out) { s->logits = s->own_logits; s->logit_rows = rows; }
    return eng_sp_prefill(e, s, err);   /* the draft model's copy too, so forks share it */
}

/* Drafts of s in this step. */
static int drafts(const seq *s) { return s->spec ? s->spec->k : 0; }

/* Checks that every live sequence fits without drafts and counts
 * sequences, rows, out rows and blocks; nothing changes. */
static int plan_step(eng_engine *e, int *n_seqs, int *n_rows, int *n_out, int *n_need,
                     eng_err *err) {
    int seqs = 0, rows = 0, outs = 0, need = 0;
    for (int i = 0; i < e->max_seqs; i++) {
        seq *s = &e->seqs[i];
        if (!eng_seq_active(s)) continue;
        if (s->n_tok > e->c.max_pos)
            return eng_seterr(err, ENG_EFULL, "sequence %d: %d tokens exceed the model's context "
                              "of %d", i, s->n_tok, e->c.max_pos);
        int pend = s->n_tok - s->n_cached;
        seqs++;
        rows += pend;
        outs += s->keep_all ? pend : 1;
        need += eng_kv_table_need(e->kv, &s->table, s->n_cached, s->n_tok);
    }
    if (need > eng_kv_n_free(e->kv))
        return eng_seterr(err, ENG_EFULL, "KV cache full: this step needs %d more blocks, %d of %d "
                          "free; remove or pause a sequence", need, eng_kv_n_free(e->kv),
                          eng_kv_n_blocks(e->kv));
    *n_seqs = seqs;
    *n_rows = rows;
    *n_out = outs;
    *n_need = need;
    return ENG_OK;
}

static int reserve_step(eng_engine *e, int rows, int outs, eng_err *err) {
    int rc = reserve_batch(e, rows, outs, 1, err);
    for (int i = 0; i < e->max_seqs && !rc; i++) {
        seq *s = &e->seqs[i];
        if (!eng_seq_active(s)) continue;
        int k = drafts(s);
        rc = reserve_tokens(s, s->n_tok + k + 1, err);
        if (!rc) rc = reserve_new(s, k + 1, err);
        if (!rc) rc = eng_kv_table_reserve(&s->table, e->bs, s->n_tok + k, err);
    }
    return rc;
}

/* Fills the batch; returns the number of sequences in it.  A speculating
 * sequence's drafts follow its pending rows, and every row from its last
 * pending one on is an out row, sampled greedily (verification decides). */
static int build_step(eng_engine *e) {
    static const eng_sampling greedy = { 0 };
    int bi = 0, row = 0, out = 0;
    for (int i = 0; i < e->max_seqs; i++) {
        seq *s = &e->seqs[i];
        if (!eng_seq_active(s)) continue;
        int row0 = row, k = drafts(s);
        row = add_rows(e, i, bi, s->n_cached, s->n_tok, row);
        for (int j = 0; j < k; j++, row++) {
            e->tokens[row] = s->spec->draft[j];
            e->pos[row] = s->n_tok + j;
            e->row_seq[row] = bi;
        }
        e->seq_len[bi] = s->n_tok + k;
        e->tables[bi] = s->table.ids;
        e->first_out[bi] = out;
        for (int r = s->keep_all ? row0 : row - 1 - k; r < row; r++, out++) {
            e->out_rows[out] = r;
            int last = r == row - 1 && !k;   /* only this row's draw counts; the others stay greedy */
            e->samp[out] = last ? s->samp : greedy;
            e->rng[out] = last ? s->rng : 0;
            e->force[out] = last && s->i_forced < s->n_forced ? s->forced[s->i_forced] : -1;
        }
        bi++;
    }
    return bi;
}

/* A plain step's result for s: one token, from its last out row. */
static void finish_plain(eng_engine *e, seq *s, int last) {
    s->n_cached = s->n_tok;
    s->last = e->sampled[last];
    s->has_last = 1;
    s->rng = e->rng[last];
    if (s->i_forced < s->n_forced) s->i_forced++;   /* the backend scored the forced id */
    s->tok[s->n_tok++] = s->last.id;
    s->new_at = s->n_tok - 1;
    s->n_new = 1;
    s->new_info[0] = s->last;
}

/* Host logits for this step: always on the CPU; elsewhere only when some
 * sequence reads them. */
static int want_logits(const eng_engine *e) {
    if (e->host_logits) return 1;
    for (int i = 0; i < e->max_seqs; i++) {
        const seq *s = &e->seqs[i];
        if (eng_seq_active(s) && (s->keep_all || s->want_logits || eng_sp_wants_logits(s)))
            return 1;
    }
    return 0;
}

int eng_step(eng_engine *e, eng_err *err) {
    if (!e) return eng_seterr(err, ENG_EINVAL, "eng_step: no engine");
    double t0 = eng_now_s();   /* the step's time, drafting left out, feeds the cost model */
    int n_active = 0, rows = 0, outs = 0, need = 0;
    e->step_tokens = 0;
    int rc = plan_step(e, &n_active, &rows, &outs, &need, err);
    if (rc || !rows) return rc;   /* nothing to run: every sequence is paused */
    for (int i = 0; i < e->max_seqs; i++) {   /* the last step's rows end here */
        e->seqs[i].logits = NULL;
        e->seqs[i].logit_rows = 0;
        e->seqs[i].n_new = 0;
    }
    /* speculation: draft lengths within the free blocks, then the drafts */
    double draft_secs = 0;
    rc = eng_sp_prepare(e, n_active, rows, eng_kv_n_free(e->kv) - need, &draft_secs, err);
    if (rc) return rc;
    for (int i = 0; i < e->max_seqs; i++)
        if (eng_seq_active(&e->seqs[i])) {
            rows += drafts(&e->seqs[i]);
            outs += drafts(&e->seqs[i]);
        }
    rc = reserve_step(e, rows, outs, err);
    if (rc) return rc;
    for (int i = 0; i < e->max_seqs && !rc; i++) {
        seq *s = &e->seqs[i];
        if (eng_seq_active(s))
            rc = eng_kv_table_prepare(e->kv, &s->table, s->n_cached, s->n_tok + drafts(s),
                                      copy_block, e->be, err);
    }
    if (rc) return rc;
    int n_seqs = build_step(e);
    int want = want_logits(e);
    eng_fwd_batch b = {
        .n_rows = rows, .tokens = e->tokens, .pos = e->pos, .row_seq = e->row_seq,
        .n_seqs = n_seqs, .seq_len = e->seq_len, .block_table = e->tables,
        .n_out = outs, .out_rows = e->out_rows, .logits = want ? e->logits : NULL,
        .sampled = e->sampled, .samp = e->samp, .rng = e->rng, .force = e->force,
    };
    rc = e->be->forward(e->be, &b, err);
    if (rc) return rc;
    for (int bi = 0; bi < n_seqs; bi++) {
        seq *s = &e->seqs[e->slot_of[bi]];
        int first = e->first_out[bi], last = bi + 1 < n_seqs ? e->first_out[bi + 1] - 1 : outs - 1;
        const float *lg = want ? e->logits + (size_t)first * e->c.vocab_size : NULL;
        if (drafts(s)) {
            eng_sp_verify(e, s, e->sampled + first, lg);
            s->logits = lg;
            s->logit_rows = lg ? s->n_new : 0;
        } else {
            finish_plain(e, s, last);
            s->logits = lg;
            s->logit_rows = want ? last - first + 1 : 0;
        }
        e->step_tokens += s->n_new;
    }
    e->n_steps++;
    eng_steptime_add(&e->timing, rows, eng_now_s() - t0 - draft_secs);
    return ENG_OK;
}

/* ------------------------------------------------------------ reading */
int eng_seq_last(const eng_engine *e, int id, eng_token *out) {
    const seq *s = eng_get_seq(e, id);
    if (!s || !out || !s->has_last) return ENG_EINVAL;
    *out = s->last;
    return ENG_OK;
}

int eng_seq_new_tokens(const eng_engine *e, int id, const int **ids, int *n) {
    const seq *s = eng_get_seq(e, id);
    if (!s || !ids || !n) return ENG_EINVAL;
    *ids = s->tok + s->new_at;
    *n = s->n_new;
    return ENG_OK;
}

int eng_seq_new_info(const eng_engine *e, int id, const eng_token **toks, int *n) {
    const seq *s = eng_get_seq(e, id);
    if (!s || !toks || !n) return ENG_EINVAL;
    *toks = s->new_info;
    *n = s->n_new;
    return ENG_OK;
}

int eng_seq_tokens(const eng_engine *e, int id, const int **ids, int *n) {
    const seq *s = eng_get_seq(e, id);
    if (!s || !ids || !n) return ENG_EINVAL;
    *ids = s->tok;
    *n = s->n_tok;
    return ENG_OK;
}

int eng_seq_n_cached(const eng_engine *e, int id) {
    const seq *s = eng_get_seq(e, id);
    return s ? s->n_cached : -1;
}

int eng_seq_n_prompt(const eng_engine *e, int id) {
    const seq *s = eng_get_seq(e, id);
    return s ? s->n_prompt : -1;
}

const float *eng_seq_logits(const eng_engine *e, int id, int *rows) {
    const seq *s = eng_get_seq(e, id);
    if (rows) *rows = s ? s->logit_rows : 0;
    return s ? s->logits : NULL;
}

int eng_n_live(const eng_engine *e) { return e ? e->n_live : 0; }
int eng_step_tokens(const eng_engine *e) { return e ? e->step_tokens : 0; }
int eng_kv_free_blocks(const eng_engine *e) { return e ? eng_kv_n_free(e->kv) : 0; }
int eng_kv_format(const eng_engine *e) { return e ? e->opts.kv_format : ENG_KV_F32; }
int eng_describe(const eng_engine *e, char *buf, size_t n) {
    if (!e) return snprintf(buf, n, "no engine");
    const int q = eng_quantized(e), tp = eng_tp_ranks(e);
    char ranks[32] = "";
    if (tp > 1) snprintf(ranks, sizeof ranks, " (%d ranks)", tp);
    return snprintf(buf, n, "%s%s; KV %s, %zu bytes/token; weights %s; activations %s",
                    e->opts.backend == ENG_BACKEND_CUDA ? "CUDA" : "CPU", ranks,
                    eng_kv_format_name(eng_kv_format(e)), eng_kv_bytes_per_token(e),
                    q == 2 ? "quantized blocks alone" : q ? "quantized blocks in decode" : "dense",
                    eng_act_name(eng_act(e)));
}

int eng_act(const eng_engine *e) {
    return e && (e->opts.act == ENG_ACT_Q16 || e->opts.act == ENG_ACT_BF16) ? e->opts.act : ENG_ACT_F32;
}
int eng_quantized(const eng_engine *e) {
#ifdef BRISK_CUDA
    return e && e->be ? eng_backend_cuda_quantized(e->be) : 0;
#else
    (void)e;
    return 0;
#endif
}
size_t eng_kv_bytes_per_token(const eng_engine *e) {
    if (!e) return 0;
    return (size_t)e->c.n_layers * 2 * e->c.n_kv_heads * e->c.head_dim *
           eng_kv_elem_bytes(e->opts.kv_format);
}
int eng_blocks_for(const eng_engine *e, int n) {
    return e && n > 0 ? (int)(((int64_t)n + e->bs - 1) / e->bs) : 0;
}
const eng_model *eng_engine_model(const eng_engine *e) { return e ? e->m : NULL; }
