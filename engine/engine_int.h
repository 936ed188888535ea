/* engine_int.h — the engine's own structures, shared by engine.c
 * (sequences, batching, KV block tables) and spec.c (speculative
 * decoding).  Not API. */
#ifndef ENG_ENGINE_INT_H
#define ENG_ENGINE_INT_H
#include "backend.h"
#include "drafter.h"
#include "kv.h"
#include "steptime.h"

/* Speculation state of one sequence (spec.c). */
typedef struct spec_seq {
    eng_spec_opts o;          /* mode != ENG_SPEC_OFF, defaults filled in */
    int k;                    /* drafts in the step being run (0: a plain step) */
    int draft[ENG_SPEC_KMAX]; /* the proposed tokens */
    eng_drafter *d;           /* its drafter (the engine's draft model, or a shared one) */
    float *q;                 /* [kmax][vocab] draft-model probabilities (sampling only) */
    uint64_t drng;            /* random stream of draft-model draws */
    double alpha;             /* EWMA of the chance that a draft token is kept */
    int n_obs;                /* drafts verified so far (a mean before the EWMA) */
    int idle;                 /* adaptive: steps in a row at k = 0 */
    int probe_gap;            /* adaptive: idle steps before a probe; doubles per failed one */
    int probing;              /* this step's k = 1 is a probe */
    eng_spec_stats st;
} spec_seq;

typedef struct seq {
    int live, paused;         /* a paused sequence sits out eng_step */
    int *tok;                 /* prompt + generated */
    int n_tok, cap_tok, n_prompt;
    int n_cached;             /* tokens whose K/V are in the cache */
    eng_kv_table table;
    eng_sampling samp;
    uint64_t rng;
    eng_token last;
    int has_last;
    int keep_all;
    const float *logits;      /* last step's rows, in e->logits or own_logits */
    int logit_rows;
    float *own_logits;        /* rows kept by eng_seq_prefill */
    int *forced;              /* eng_seq_force: tokens that replace the next draws */
    int n_forced, i_forced;
    size_t own_cap;
    int new_at, n_new;        /* tokens [new_at, new_at + n_new) came with the last step */
    eng_token *new_info;      /* [cap_new] */
    int cap_new;
    int want_logits;          /* host logits of the last row (draft engines when sampling) */
    spec_seq *spec;           /* NULL: no speculation */
} seq;

struct eng_engine {
    eng_model *m;
    eng_config c;
    eng_backend *be;
    eng_kv *kv;
    eng_opts opts;            /* as created, defaults filled in but n_blocks as given */
    int bs, max_seqs, n_live;
    int host_logits;          /* 1: every step brings logits to the host (CPU) */
    seq *seqs;                /* [max_seqs]; a sequence id is its slot */
    /* one batch, grown on demand */
    int cap_rows, cap_out, cap_logits;
    int *tokens, *pos, *row_seq, *out_rows, *force;
    eng_sampling *samp;
    uint64_t *rng;
    eng_token *sampled;
    float *logits;            /* [cap_out][vocab] */
    /* per sequence in the batch */
    int *seq_len, *slot_of, *first_out;
    const int **tables;
    eng_steptime timing;      /* passes of this engine (drafting not counted) */
    int64_t n_steps;          /* eng_step calls that ran */
    int step_tokens;          /* tokens the last eng_step appended, all sequences */
    /* speculation (spec.c) */
    eng_drafter *draft;       /* the draft model's drafter, owned; NULL: none */
    eng_spec_cost cost;
    int cost_given;
    float *pbuf, *rbuf;       /* [vocab] each: p and the residual in verification */
    eng_cand *cands;          /* [cap_cands] scratch of probs_into (spec.c) */
    int cap_cands;
    struct spec_eng *plan;    /* spec.c's engine-wide state (planning scratch, probe budget) */
};

static inline seq *eng_get_seq(const eng_engine *e, int id) {
    if (!e || id < 0 || id >= e->max_seqs || !e->seqs[id].live) return NULL;
    return &e->seqs[id];
}

/* Takes part in the next step: live, not paused, with tokens to process. */
static inline int eng_seq_active(const seq *s) {
    return s->live && !s->paused && s->n_tok > s->n_cached;
}

/* spec.c: what a step asks of speculation */
/* Before the pass: chooses k for every sequence taking part in this step
 * (n_active sequences, rows rows without drafts, spare free blocks beyond
 * theirs) and has the drafters fill in the drafts (k may come down to what
 * they propose); *draft_secs: the time drafting took. */
int  eng_sp_prepare(eng_engine *e, int n_active, int rows, int spare, double *draft_secs,
                    eng_err *err);
/* Needs host logits for its rows this step (sampling verification). */
static inline int eng_sp_wants_logits(const seq *s) {
    return s->spec && s->spec->k > 0 && !eng_sampling_greedy(&s->samp);
}
/* After the pass: keeps what survives of s's drafts; sampled and logits are
 * its k + 1 out rows (logits only when eng_sp_wants_logits). */
void eng_sp_verify(eng_engine *e, seq *s, const eng_token *sampled, const float *logits);
/* Sequence lifecycle: the drafter follows forks and prefills, and forgets. */
int  eng_sp_fork(eng_engine *e, seq *parent, seq *child, eng_err *err);
int  eng_sp_prefill(eng_engine *e, seq *s, eng_err *err);
void eng_sp_seq_free(eng_engine *e, seq *s);
void eng_sp_engine_free(eng_engine *e);
#endif
