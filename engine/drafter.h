/* drafter.h — what speculative decoding (spec.c) asks of a drafter, and the
 * drafters brisk has (drafter.c).  Built on the public eng.h alone, as a
 * drafter is a client of the engine: the draft-model drafter drives its own
 * engine through eng_* calls only.  Not API.
 *
 * Each step the engine hands a drafter the sequences it should draft for
 * (one request each, all at once so that a draft model runs them in one
 * batch per draft position), verifies the drafts itself, and tells the
 * drafter the tokens each sequence kept (accepted).  Sequences are named by
 * their ids in the target engine. */
#ifndef ENG_DRAFTER_H
#define ENG_DRAFTER_H
#include "eng.h"

/* One sequence's drafts in one step. */
typedef struct eng_draft_req {
    int seq;                    /* target sequence id */
    const int *tokens;          /* its tokens so far (prompt + generated) */
    int n_tokens;
    const eng_spec_opts *o;     /* its speculation settings */
    const eng_sampling *samp;   /* its sampling: greedy drafts, or draws when not greedy */
    int k;                      /* in: drafts wanted; out: drafts made (0..k) */
    int *out;                   /* [k] the drafts */
    float *q;                   /* [k][vocab] or NULL: where a drafter that draws puts the
                                 * distribution of each draw (verification needs it);
                                 * drafters that leave it alone propose point masses */
    uint64_t *rng;              /* the sequence's stream of draft draws */
} eng_draft_req;

typedef struct eng_drafter eng_drafter;
struct eng_drafter {
    /* Fills in the drafts of n requests.  Failing for want of room means
     * fewer or no drafts, not an error; an error (ENG_ENOMEM, ENG_EIO) fails
     * the step. */
    int  (*propose)(eng_drafter *d, eng_draft_req *r, int n, eng_err *err);
    /* After verification: seq now holds tokens[0..n) (may be NULL). */
    void (*accepted)(eng_drafter *d, int seq, const int *tokens, int n);
    /* seq's tokens up to its last were just prefilled: do the same, so that
     * forks share it (may be NULL). */
    int  (*prefill)(eng_drafter *d, int seq, const int *tokens, int n, eng_err *err);
    /* child was forked from parent (may be NULL). */
    int  (*fork)(eng_drafter *d, int parent, int child, eng_err *err);
    /* seq is gone or drafts elsewhere (may be NULL). */
    void (*forget)(eng_drafter *d, int seq);
    /* For the planner, drafters that run a model: the rows it runs before
     * seq's first draft (n_tokens: seq's length), and the seconds of one of
     * its passes of rows rows (< 0: not measured yet). */
    int    (*catch_up)(const eng_drafter *d, int seq, int n_tokens);
    double (*pass_cost)(const eng_drafter *d, double rows);
    void (*destroy)(eng_drafter *d);   /* may be NULL (a shared, static drafter) */
    eng_model *model;                   /* the model it runs; NULL: none */
};

/* Prompt lookup (ENG_SPEC_NGRAM) and the caller's propose function
 * (ENG_SPEC_CUSTOM): stateless, shared by every engine. */
eng_drafter *eng_drafter_ngram(void);
eng_drafter *eng_drafter_custom(void);
/* A draft model (ENG_SPEC_DRAFT) in an engine of its own made with o, for
 * target sequence ids below max_seqs; batches every sequence it drafts for. */
int  eng_drafter_model_create(eng_model *m, const eng_opts *o, int max_seqs, eng_drafter **out,
                              eng_err *err);
/* The engine a drafter runs, NULL for none (tests wrap its backend). */
eng_engine *eng_drafter_engine(const eng_drafter *d);
#endif
