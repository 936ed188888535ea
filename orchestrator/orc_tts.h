/* orc_tts.h — test-time scaling for reasoning ("reason" mode): one prompt is
 * answered by n sampled branches decoded together in the engine's batch (the
 * prompt's KV blocks are shared), the answers are aggregated by majority vote
 * or best-of-n, and a probing scheme in the spirit of Dynasor's Certaindex
 * stops the query (or single branches) early once the answers are settled.
 *
 * Also here: the latency-aware planner (planner.c) that picks the number of
 * branches n and the speculation depth k for a latency budget.  The MATH-500
 * benchmark behind `brisk bench math500` is in the benchmark library
 * (benchmarks/lib/math500.c).
 *
 * Messages of a reason task (docs/protocol.md):
 *   token   {"branch":b,"text","token","logprob"}      (when opts.stream)
 *   branch  {"branch":b,"state":"running"|"stopped"|"done","tokens":n,
 *            "answer":a|null,"finish":...}             running: after a probe
 *   answer  {"text","answer","finish","method":"vote"|"best","branch":b,
 *            "early_stop":bool,"vote":{"answer","votes","of"},
 *            "best":{"answer","branch","mean_logprob"}}
 *   stats   {"prompt_tokens","tokens","branch_tokens":[..],"probes",
 *            "probe_rounds","probe_tokens","cue_tokens","decoded_tokens",
 *            "n","stopped_branches","queue_ms","ttft_ms","decode_ms","wall_ms",
 *            "spec":{"steps","drafted","accepted"} (with speculation)}
 * A probe round starts when the longest running branch has T more tokens
 * than at the last round's start and the last round's probes are all read. */
#ifndef ORC_TTS_H
#define ORC_TTS_H
#include <stdint.h>
#include "orc.h"

#define ORC_TTS_MAX_N 64

/* The MATH prompt: this system message, then the problem as the user turn. */
#define ORC_TTS_MATH_SYSTEM "Please reason step by step, and put your final answer within \\boxed{}."
/* Appended to a fork of a branch to force its current answer out. */
#define ORC_TTS_PROBE_CUE "\n\n... Oh, I suddenly got the answer to the whole problem, " \
                          "**Final Answer**\n\n\\[ \\boxed{"

enum { ORC_TTS_VOTE = 0, ORC_TTS_BEST = 1 };

/* Replaces what a probe read (tests, replays): returns the answer to use for
 * branch b at probe round r (0-based), or NULL for "no answer".  probed is
 * what the model produced (NULL when it did not close the box).  The result
 * is copied. */
typedef const char *(*orc_tts_probe_fn)(void *ud, int branch, int round, const char *probed);

typedef struct orc_tts_opts {
    int n;                /* branches, 1..ORC_TTS_MAX_N */
    int aggregate;        /* ORC_TTS_VOTE or ORC_TTS_BEST: which one "answer" uses */
    int same_seed;        /* every branch samples with the query's seed (tests) */
    int stream;           /* send token messages */
    const char *system;   /* system message for a raw-text prompt; NULL: none */
    const eng_spec_opts *spec;   /* speculative decoding of the branches; NULL: off
                                    (copied; its draft model / user data are borrowed) */
    /* Certainty-based early stopping; off while probe_every is 0. */
    int probe_every;      /* T: probe every live branch every T decoded tokens */
    int probe_tokens;     /* most tokens one probe decodes */
    const char *cue;      /* NULL: ORC_TTS_PROBE_CUE */
    int min_rounds;       /* M: probe rounds before the query may stop */
    double stop_agree;    /* stop when the largest answer cluster holds >= this
                             fraction of the n branches; <= 0: off */
    double stop_entropy;  /* ... or when the answer entropy (nats) <= this; < 0: off */
    int stable_k;         /* K: stop a branch whose last K probes agree; 0: off */
    orc_tts_probe_fn probe_fn;
    void *probe_ud;       /* must outlive the task */
    /* Scripted output (tests, benchmarks): branch i is teacher-forced to write
     * script[i % n_script], then EOS; the model still runs (real timings,
     * real log-probs).  Must outlive the task. */
    const char *const *script;
    int n_script;
} orc_tts_opts;

/* n 8, vote, stream on, MATH system prompt, probing off (T 32, 12 probe
 * tokens, M 2, agree 0.75, entropy off, K 0 once turned on). */
void orc_tts_default_opts(orc_tts_opts *o);

/* Seed of branch i (branch 0 gets the query's own seed). */
uint64_t orc_tts_branch_seed(uint64_t seed, int i);

/* Reason mode.  q->prompt is the problem (wrapped as system + user turns);
 * q->messages, when given, are used as they are.  q->samp gives temperature,
 * top_p and top_k; q->max_tokens bounds each branch.  opts NULL: defaults. */
int orc_task_reason_create(const orc_query *q, const eng_model *m, orc_sink sink,
                           const orc_tts_opts *opts, orc_task **out, eng_err *err);
/* The prompt's token ids as a reason task with these options runs it (opts
 * NULL: defaults); *ids is malloc'd. */
int orc_tts_encode_prompt(const orc_query *q, const orc_tts_opts *opts, const eng_model *m,
                          int **ids, int *n, eng_err *err);

/* ------------------------------------------------ aggregation (tts_agg.c) */
typedef struct orc_tts_cand {
    const char *answer;   /* extracted answer, NULL when none */
    double logprob_sum;   /* over the branch's tokens */
    int n_tokens;
} orc_tts_cand;

/* Majority vote: answers are clustered with orc_math_equiv; returns the index
 * of the first member of the largest cluster (ties: the cluster whose best
 * member has the higher mean log-prob), -1 when no candidate has an answer.
 * votes (may be NULL) gets the cluster's size. */
int orc_tts_vote(const orc_tts_cand *c, int n, int *votes);
/* Best-of-n: the answered candidate with the highest mean log-prob, -1 when none. */
int orc_tts_best(const orc_tts_cand *c, int n);
/* Certainty of a set of answers (NULL = none yet).  agree: size of the
 * largest cluster over n; entropy (nats) of the cluster sizes, each missing
 * answer counting as a cluster of its own. */
void orc_tts_certainty(const char *const *answers, int n, double *agree, double *entropy);
/* The answer in a probe's text (what followed the cue's "\boxed{"): the text
 * up to the brace that closes the box, trimmed; NULL when the box is still
 * open or the answer is empty.  malloc'd. */
char *orc_tts_probe_answer(const char *text);

/* ------------------------------------------------------ planner (planner.c)
 * Latency model: a decode step at batch b over contexts of ctx0 tokens takes
 * step(b) seconds, piecewise linear through calibration points (made
 * non-decreasing), extended by the least-squares line beyond them; longer
 * contexts add ctx_s seconds per sequence per extra token (attention reads
 * the whole context; shorter ones are not credited).  A prompt of P tokens
 * costs P x prefill_s.  Speculation with acceptance a and draft depth k
 * yields (1 - a^(k+1)) / (1 - a) tokens per verify step at (1 + c k) x the
 * step (c < 0: at step(n (k+1)) / step(n), the n (k+1) rows priced as a
 * plain step of that batch).  So n branches of L tokens take
 *     P prefill_s + ceil(L / tokens) step(n, P + L/2) (1 + c k).
 * Accuracy model of majority vote over n: a table of measured accuracies
 * (interpolated in log2 n, flat past its ends), or a given curve
 * p(n) = 1 - (1 - p1) r^(log2 n), or none: then no accuracy is expected and
 * a plan takes the most branches that fit. */
#define ORC_PLAN_MAX_POINTS 16

typedef struct orc_lat_model {
    int n_points;
    double batch[ORC_PLAN_MAX_POINTS];   /* increasing */
    double step_s[ORC_PLAN_MAX_POINTS];
    double a, b;                          /* line: step_s = a + b batch */
    double prefill_s;                     /* per prompt token */
    double ctx0, ctx_s;                   /* calibration context; s per sequence per token past it */
} orc_lat_model;

/* Fits the model to n >= 1 measured (batch, seconds) points in any order. */
int    orc_lat_fit(const double *batch, const double *step_s, int n, double prefill_s,
                   orc_lat_model *m, eng_err *err);
double orc_lat_step(const orc_lat_model *m, double batch);             /* at ctx0 */
double orc_lat_step_ctx(const orc_lat_model *m, double batch, double ctx);
/* Times eng_step at batch 1, 2, 4, ... max_batch (forks of one sequence with
 * the given prompt sampling with s, NULL greedy; steps timed steps each after
 * one warm-up), the prompt's prefill, and batch 8 again over a context
 * made longer by repeating the prompt (for ctx_s); then fits.  Run it on an
 * idle engine; it leaves no sequence behind and stops early at a batch the
 * engine has no slots for. */
int    orc_lat_calibrate(eng_engine *e, const int *prompt, int n_prompt, int max_batch,
                         int steps, const eng_sampling *s, orc_lat_model *m, eng_err *err);

enum { ORC_ACC_NONE = 0, ORC_ACC_CURVE, ORC_ACC_TABLE };
typedef struct orc_acc_model {
    int kind;                     /* ORC_ACC_*; a zeroed model is none */
    double p1, r;                 /* CURVE; r outside (0, 1] means 0.8 */
    int n_table;                  /* TABLE: its entries */
    double table_n[ORC_PLAN_MAX_POINTS], table_acc[ORC_PLAN_MAX_POINTS];
} orc_acc_model;

/* Expected accuracy of a vote over n branches; NAN without a model. */
double orc_acc_expected(const orc_acc_model *m, int n);
double orc_spec_tokens_per_step(double accept, int k);
/* The per-token acceptance a that gives mean_accepted kept drafts per
 * verification at depth k (a (1 - a^k) / (1 - a) = mean_accepted). */
double orc_spec_accept_from_mean(double mean_accepted, int k);

typedef struct orc_plan_in {
    orc_lat_model lat;
    orc_acc_model acc;
    double accept, spec_cost;     /* a, c (< 0: from the latency model) */
    int k_max;                    /* 0: the engine has no speculation */
    double length;                /* L: expected answer tokens */
    int prompt_tokens;
    int n_max;                    /* most branches (engine slots); 0 = ORC_TTS_MAX_N */
    /* KV room: the prompt's blocks are shared, each branch adds its own;
     * kv_free_blocks 0 = unbounded (orc_plan_kv fills these from an engine) */
    int kv_free_blocks, kv_prompt_blocks, kv_branch_blocks;
    double budget_s;
} orc_plan_in;

typedef struct orc_plan {
    int n, k;
    double latency_s, accuracy, tokens_per_step;   /* accuracy: NAN without an accuracy model */
    int feasible;                 /* 0: nothing fits; n = 1 at its fastest k */
} orc_plan;

/* The KV fields of in from e as it is now: its free blocks, the blocks of
 * in->prompt_tokens, and those one branch of in->length tokens adds (the
 * prompt's last block, which a branch copies when it writes into it, and
 * its own). */
void   orc_plan_kv(orc_plan_in *in, const eng_engine *e);
double orc_plan_latency(const orc_plan_in *in, int n, int k);
/* The (n, k) with the highest expected accuracy (without an accuracy model:
 * the most branches) whose predicted latency and KV blocks fit the budget
 * and the engine; ties go to the lower latency. */
int    orc_plan_choose(const orc_plan_in *in, orc_plan *out, eng_err *err);

#endif
