/* spec.c — speculative decoding on the engine's side: lossless
 * verification, adaptive draft length and the cost model behind it (API in
 * eng.h).  The drafters are clients of the engine (drafter.h); the step
 * time the cost model reads is measured by the engine (steptime.h).
 *
 * One step of eng_step (engine.c) with speculation (eng_sp_prepare, then
 * eng_sp_verify):
 *   1. every sequence that may speculate gets a draft length k: fixed, or
 *      adaptive (below), then shrunk until the drafts' KV blocks fit in
 *      what the plain step leaves free;
 *   2. each drafter fills in the drafts of all its sequences in one call
 *      (prompt lookup, the caller's propose function, or the draft model,
 *      which batches them: one draft-engine step per draft position);
 *      drafts past k or outside the vocabulary are dropped;
 *   3. the engine runs pending tokens + drafts in one pass, every row from
 *      the last pending one on an out row sampled greedily;
 *   4. eng_sp_verify keeps the accepted drafts and one more token, rolls
 *      back the KV of the rest (eng_kv_table_truncate drops the blocks a
 *      sequence no longer covers; shared blocks only lose a reference) and
 *      tells the drafter the tokens kept (a draft model brings its
 *      sequence to the same tokens).
 *
 * Greedy verification needs only each row's argmax, which the backend
 * samples (on CUDA without copying logits); sampling verification needs
 * the rows' probabilities, so those steps ask for host logits.
 *
 * Adaptive k.  With acceptance chance alpha per draft token, the j-th draft
 * of a sequence adds alpha^j expected tokens.  Candidates (sequence, j)
 * sorted by that gain are taken up to the prefix with the most expected
 * tokens per second of step time (the prefix, not a marginal test: a draft
 * model's pass costs the same for one sequence or many).  A candidate adds
 * one target row (the step-time model at R + 1 minus at R), and for a
 * draft model one row of its j-th pass (for the first pass, also the rows
 * its sequence has to catch up on), or the whole pass when it is the first
 * that deep.  Speculation must promise MARGIN more tokens per second than
 * none, for what the model does not see (drafting on the host).
 *
 * Alpha is the mean of the first verified drafts (the prior ALPHA0 counting
 * as one), then an EWMA.  A sequence at k = 0 probes with k = 1 after
 * PROBE_EVERY idle steps, twice as long after each probe that fails, idle
 * sequences on the same step (one draft pass for all).  A probe is not free:
 * the draft model first catches up on every token since the sequence last
 * drafted (its whole prompt the first time), which with a useless drafter
 * made probing alone cost 7% at batch 8 on an H100.  So probes run only
 * where drafts always right would pay, and within a budget: those that
 * find nothing may cost PROBE_SHARE of the modelled step time (see
 * plan_probes).  A draft sequence is only brought up to date when its
 * sequence drafts; at k = 0 nothing is done for it.
 *
 * Step time.  The model interpolates the measured time of a step (drafting
 * left out) per power-of-two bucket of rows (steptime.c: robust to spikes,
 * non-decreasing, extrapolated from the last two buckets; before any
 * measurement a row is taken to cost ENG_STEPTIME_PRIOR_ROW of a pass),
 * so a large batch, where rows cost
 * nearly their full share, stops speculating by itself.  A draft model's
 * passes, until timed, are taken to cost its weights' share of a target
 * pass.  With measured costs, a step without adaptive drafts runs when the
 * no-draft rows' bucket has no measurement, and every EXPLORE_EVERY steps:
 * the cost of not speculating must stay known. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "engine_int.h"

enum { PROBE_EVERY = 16, PROBE_MAX = 512 };   /* adaptive: steps at k = 0 before a probe */
#define PROBE_SHARE 0.01     /* probes that find nothing: at most this share of the step time */
#define PROBE_BETA 0.5       /* EWMA weight of one probe's outcome in the engine's hit rate */
enum { EXPLORE_EVERY = 32 };   /* measured costs: a step without adaptive drafts this often */
#define ALPHA0 0.5           /* acceptance estimate of a new sequence */
#define BETA 0.2             /* EWMA weight of one verified draft token */
#define MIN_GAIN 0.1         /* a draft used with less chance than this is not made */
#define MARGIN 1.05          /* speculate for at least this much more expected tokens/s */

#define DRAFT_SEED 0xD1B54A32D192ED03ull   /* draft draws: a stream apart from the target's */

/* ------------------------------------------------ target distribution */
/* p := what eng_sample draws from (eng_sample_support builds it for both),
 * renormalised; one-hot on the argmax when greedy.  *c, *cap: scratch. */
static void probs_into(const float *l, int V, const eng_sampling *s, float *p, eng_cand **c,
                       int *cap) {
    int best = 0;
    float max = eng_row_max(l, V, &best);
    double total = 0;
    int n = eng_sample_support(l, V, s, max, -1, p, c, cap, &total);   /* ALL: weights in p */
    if (n == ENG_SUPPORT_ALL) {
        for (int i = 0; i < V; i++) p[i] = (float)(p[i] / total);
        return;
    }
    memset(p, 0, sizeof *p * (size_t)V);
    if (n > 0)
        for (int i = 0; i < n; i++) p[(*c)[i].id] = (float)((*c)[i].v / total);
    else
        p[best] = 1;
}

int eng_spec_probs(const float *logits, int vocab, const eng_sampling *s, float *probs) {
    if (!logits || !probs || vocab <= 0) return ENG_EINVAL;
    eng_cand *c = NULL;
    int cap = 0;
    probs_into(logits, vocab, s, probs, &c, &cap);
    free(c);
    return ENG_OK;
}

/* ------------------------------------------------------------ planning */
static double target_cost(const eng_engine *e, double R) {
    if (e->cost_given) return e->cost.base_s + e->cost.row_s * R;
    double c = eng_steptime_secs(&e->timing, R);
    return c >= 0 ? c : 1e-3 * (1 + ENG_STEPTIME_PRIOR_ROW * (R - 1));
}

/* Weights a decode step reads: what its time follows before it is measured. */
static double weights(const eng_config *c) {
    double h = c->hidden, q = (double)c->n_heads * c->head_dim;
    double kv = (double)c->n_kv_heads * c->head_dim;
    return c->n_layers * (h * (2 * q + 2 * kv) + 3 * h * c->intermediate) + (double)c->vocab_size * h;
}

static double draft_cost(const eng_engine *e, double R) {
    if (R <= 0) return 0;
    if (e->cost_given) return e->cost.draft_base_s + e->cost.draft_row_s * R;
    if (!e->draft) return 0;
    double c = e->draft->pass_cost(e->draft, R);
    return c >= 0 ? c : target_cost(e, R) * weights(eng_model_config(e->draft->model)) /
                        weights(&e->c);
}

/* Rows the draft model runs before s's first draft: what its sequence has
 * not cached (everything before its first use). */
static int catch_up(const eng_engine *e, const seq *s) {
    const spec_seq *sp = s->spec;
    if (sp->o.mode != ENG_SPEC_DRAFT) return 0;
    if (!sp->d->catch_up) return s->n_tok;
    return sp->d->catch_up(sp->d, (int)(s - e->seqs), s->n_tok);
}

double eng_spec_step_cost(const eng_engine *e, int rows) {
    if (!e) return -1;
    if (e->cost_given) return e->cost.base_s + e->cost.row_s * rows;
    return eng_steptime_secs(&e->timing, rows);
}

int eng_spec_set_cost(eng_engine *e, const eng_spec_cost *c) {
    if (!e) return ENG_EINVAL;
    if (!c) { e->cost_given = 0; return ENG_OK; }
    if (!(c->base_s >= 0 && c->row_s >= 0 && c->draft_base_s >= 0 && c->draft_row_s >= 0) ||
        !isfinite(c->base_s + c->row_s + c->draft_base_s + c->draft_row_s) ||
        c->base_s + c->row_s <= 0)
        return ENG_EINVAL;
    e->cost = *c;
    e->cost_given = 1;
    return ENG_OK;
}

/* May draft this step: live, running, no forced tokens, not keeping all. */
static int can_speculate(const seq *s) {
    return s->spec && eng_seq_active(s) && !s->keep_all && s->i_forced >= s->n_forced;
}

/* Most drafts s may have: its k or kmax, within the model's context (and
 * the draft model's). */
static int k_cap(const eng_engine *e, const seq *s) {
    const spec_seq *sp = s->spec;
    int cap = sp->o.adaptive ? sp->o.kmax : sp->o.k, room = e->c.max_pos - s->n_tok;
    if (sp->o.mode == ENG_SPEC_DRAFT) {
        if (!e->draft) return 0;
        int droom = eng_model_config(e->draft->model)->max_pos - s->n_tok;
        if (droom < room) room = droom;
    }
    return cap < room ? cap : room > 0 ? room : 0;
}

static int extra_blocks(const eng_engine *e, const seq *s, int k) {
    return eng_kv_table_need(e->kv, &s->table, s->n_cached, s->n_tok + k) -
           eng_kv_table_need(e->kv, &s->table, s->n_cached, s->n_tok);
}

/* Shrinks the largest k first until the drafts' blocks fit in spare. */
static void fit_blocks(eng_engine *e, int spare) {
    int total = 0;
    for (int i = 0; i < e->max_seqs; i++) {
        seq *s = &e->seqs[i];
        if (s->spec && s->spec->k) total += extra_blocks(e, s, s->spec->k);
    }
    while (total > spare) {
        seq *big = NULL;
        for (int i = 0; i < e->max_seqs; i++) {
            seq *s = &e->seqs[i];
            if (s->spec && s->spec->k && (!big || s->spec->k > big->spec->k)) big = s;
        }
        if (!big) break;
        int k = big->spec->k;
        total -= extra_blocks(e, big, k) - extra_blocks(e, big, k - 1);
        big->spec->k = k - 1;
    }
}

typedef struct kcand { double g; int slot, j; } kcand;   /* j-th draft of a sequence, its gain */

/* Engine-wide speculation state (e->plan), made by the first
 * eng_seq_spec_set: planning scratch and the probes' budget. */
typedef struct spec_eng {
    kcand *cand;       /* [max_seqs * ENG_SPEC_KMAX] adaptive candidates */
    int *due;          /* [max_seqs] sequences due for a probe */
    double *charge;    /* [max_seqs] modelled cost of a sequence's probe in this step */
    double credit;     /* modelled seconds that probes finding nothing may still cost */
    double hit;        /* EWMA of probe outcomes (1: the probe's draft was kept) */
    int left;          /* the last probe step left due sequences out */
    eng_draft_req *req, *grp;   /* [max_seqs] this step's drafts, and one drafter's of them */
} spec_eng;

/* The step as planned so far: its rows, the rows of each draft-model pass,
 * expected tokens and modelled seconds. */
typedef struct step_plan { int rows, dr[ENG_SPEC_KMAX]; double G, C; } step_plan;

static int cmp_kcand(const void *a, const void *b) {
    const kcand *x = a, *y = b;
    if (x->g != y->g) return x->g > y->g ? -1 : 1;
    if (x->j != y->j) return x->j - y->j;
    return x->slot - y->slot;
}

/* With measured costs, the cost of not drafting must be known too: a step
 * without adaptive drafts when its bucket of rows has no measurement yet,
 * and regularly after (the model is never told about fewer rows
 * otherwise). */
static int explore(const eng_engine *e, int rows) {
    return !e->cost_given && (!eng_steptime_known(&e->timing, rows) ||
                              e->n_steps % EXPLORE_EVERY == EXPLORE_EVERY / 4);
}

/* Adds the j-th draft of s to p (drafts 1..j-1 are in); returns what it
 * adds to the step's modelled seconds. */
static double plan_add(const eng_engine *e, step_plan *p, const seq *s, int j) {
    double c = target_cost(e, p->rows + 1) - target_cost(e, p->rows);
    p->rows++;
    if (s->spec->o.mode == ENG_SPEC_DRAFT) {
        int add = j > 1 ? 1 : catch_up(e, s);   /* the first pass catches up too */
        c += draft_cost(e, p->dr[j - 1] + add) - draft_cost(e, p->dr[j - 1]);
        p->dr[j - 1] += add;
    }
    p->C += c;
    return c;
}

/* Adaptive drafts: candidates (sequence, j) in order of expected gain, and
 * of them the prefix with the most expected tokens per second (a prefix,
 * not a marginal test: a draft model's pass costs about the same for one
 * sequence or many). */
static void plan_adaptive(eng_engine *e, spec_eng *se, step_plan *p) {
    kcand *c = se->cand;
    int n = 0;
    for (int i = 0; i < e->max_seqs; i++) {
        seq *s = &e->seqs[i];
        if (!s->spec || !s->spec->o.adaptive || !can_speculate(s)) continue;
        double a = s->spec->alpha < 0.999 ? s->spec->alpha : 0.999, g = a;
        for (int j = 1, cap = k_cap(e, s); j <= cap && g >= MIN_GAIN; j++, g *= a)
            c[n++] = (kcand){ g, i, j };
    }
    if (!n) return;
    qsort(c, (size_t)n, sizeof *c, cmp_kcand);
    step_plan t = *p;
    double base = p->G / p->C, best = base;
    int take = 0;
    for (int i = 0; i < n; i++) {
        plan_add(e, &t, &e->seqs[c[i].slot], c[i].j);
        t.G += c[i].g;
        if (t.G / t.C > best) { best = t.G / t.C; take = i + 1; }
    }
    if (best < MARGIN * base) return;   /* unmeasured costs (drafting on the host) */
    for (int i = 0; i < take; i++) {   /* j ascends per sequence */
        seq *s = &e->seqs[c[i].slot];
        s->spec->k = c[i].j;
        plan_add(e, p, s, c[i].j);
        p->G += c[i].g;
    }
}

/* Would drafts always right pay in this step if every sequence left at
 * k = 0 had them (draft sequences caught up)?  If not, no estimate of
 * alpha makes them draft, and probes would tell nothing worth their cost. */
static int perfect_pays(const eng_engine *e, const step_plan *p) {
    step_plan t = *p;
    double base = p->G / p->C;
    for (int j = 1; j <= ENG_SPEC_KMAX; j++) {
        int more = 0;
        for (int i = 0; i < e->max_seqs; i++) {
            const seq *s = &e->seqs[i];
            const spec_seq *sp = s->spec;
            if (!sp || !sp->o.adaptive || sp->k || !can_speculate(s) || k_cap(e, s) < j) continue;
            t.C += target_cost(e, t.rows + 1) - target_cost(e, t.rows);
            t.rows++;
            if (sp->o.mode == ENG_SPEC_DRAFT) {
                t.C += draft_cost(e, t.dr[j - 1] + 1) - draft_cost(e, t.dr[j - 1]);
                t.dr[j - 1]++;
            }
            t.G += 1;
            more = 1;
            if (t.G / t.C >= MARGIN * base) return 1;
        }
        if (!more) break;
    }
    return 0;
}

/* At k = 0 alpha would never move: a sequence left there probes k = 1
 * after probe_gap steps, on a step that is a multiple of PROBE_EVERY so that
 * idle sequences probe together (one draft pass); each probe that fails
 * doubles its gap.  Only where drafts always right would pay, and within a
 * budget: probes that find nothing may cost PROBE_SHARE of the modelled
 * step time (credit; unspent, no more than PROBE_MAX steps earn is kept, so
 * that a quiet spell does not pay for a burst of probes).  Due sequences go
 * cheapest first (a draft model's probe catches its sequence up on every
 * token since it last drafted) while their cost times the recent failure
 * rate of probes (1 - hit) fits in the credit.  While probes have been
 * finding drafts that hold (hit >= ALPHA0) the first needs only some credit,
 * and those left out try again on the next step, not PROBE_EVERY later. */
static void plan_probes(eng_engine *e, spec_eng *se, const step_plan *p) {
    int probe_step = e->n_steps % PROBE_EVERY == 0 || (se->left && se->hit >= ALPHA0), n = 0;
    se->left = 0;
    for (int i = 0; i < e->max_seqs; i++) {
        seq *s = &e->seqs[i];
        spec_seq *sp = s->spec;
        if (!sp || !sp->o.adaptive || !can_speculate(s)) continue;
        if (sp->k) { sp->idle = 0; continue; }
        if (++sp->idle >= sp->probe_gap && probe_step && k_cap(e, s) >= 1) se->due[n++] = i;
    }
    if (!n || !perfect_pays(e, p)) return;
    for (int i = 1; i < n; i++)   /* by catch-up, insertion sort: few and rare */
        for (int j = i; j > 0 && catch_up(e, &e->seqs[se->due[j]]) <
                                 catch_up(e, &e->seqs[se->due[j - 1]]); j--) {
            int x = se->due[j];
            se->due[j] = se->due[j - 1];
            se->due[j - 1] = x;
        }
    se->left = se->credit <= 0;
    step_plan t = *p;
    for (int i = 0; i < n && se->credit > 0; i++) {
        seq *s = &e->seqs[se->due[i]];
        step_plan u = t;
        double c = plan_add(e, &u, s, 1);
        if ((i || se->hit < ALPHA0) && (1 - se->hit) * (u.C - p->C) > se->credit) {
            se->left = 1;
            break;
        }
        t = u;
        se->charge[se->due[i]] = c;
        s->spec->k = 1;
        s->spec->probing = 1;
        s->spec->idle = 0;
    }
}

/* Chooses k for every sequence taking part in this step. */
static void plan(eng_engine *e, spec_eng *se, int n_active, int rows, int spare) {
    step_plan p = { .rows = rows, .G = n_active };
    int any = 0, plain = explore(e, rows);
    double step = target_cost(e, rows);   /* probes' credit: a share of every step, kept a while */
    se->credit = fmin(se->credit + PROBE_SHARE * step, PROBE_SHARE * PROBE_MAX * step);
    for (int i = 0; i < e->max_seqs; i++) {
        seq *s = &e->seqs[i];
        spec_seq *sp = s->spec;
        if (!sp) continue;
        sp->k = 0;
        sp->probing = 0;
        if (!can_speculate(s)) continue;
        if (sp->o.adaptive) { any = !plain; continue; }
        int cap = k_cap(e, s);
        for (int j = 1; j <= cap; j++) {
            p.rows++;
            p.G += pow(sp->alpha, j);
            if (sp->o.mode == ENG_SPEC_DRAFT) p.dr[j - 1] += j > 1 ? 1 : catch_up(e, s);
        }
        sp->k = cap;
    }
    if (any) {
        p.C = target_cost(e, p.rows);
        for (int j = 0; j < ENG_SPEC_KMAX; j++) p.C += draft_cost(e, p.dr[j]);
        plan_adaptive(e, se, &p);
        plan_probes(e, se, &p);
    }
    fit_blocks(e, spare);
}

/* A drafter's answer for sequence slot: at most the k asked for, cut at
 * the first id outside the vocabulary. */
static void take_drafts(eng_engine *e, const eng_draft_req *r) {
    spec_seq *sp = e->seqs[r->seq].spec;
    int n = r->k < 0 ? 0 : r->k > sp->k ? sp->k : r->k;
    for (int j = 0; j < n; j++)
        if (sp->draft[j] < 0 || sp->draft[j] >= e->c.vocab_size) { n = j; break; }
    sp->k = n;
}

/* Fills in the drafts: one call per drafter with all its sequences, in the
 * order of their first sequences. */
static int draft(eng_engine *e, spec_eng *se, eng_err *err) {
    int n = 0, V = e->c.vocab_size;
    for (int i = 0; i < e->max_seqs; i++) {
        seq *s = &e->seqs[i];
        spec_seq *sp = s->spec;
        if (!s->live || !sp || !sp->k) continue;
        int model = sp->o.mode == ENG_SPEC_DRAFT;
        if (model && !eng_sampling_greedy(&s->samp) && !sp->q) {
            int rows = sp->o.k > sp->o.kmax ? sp->o.k : sp->o.kmax;
            sp->q = malloc(sizeof *sp->q * (size_t)rows * V);
            if (!sp->q) return eng_seterr(err, ENG_ENOMEM, "speculation: out of memory for draft "
                                          "probabilities");
        }
        se->req[n++] = (eng_draft_req){ .seq = i, .tokens = s->tok, .n_tokens = s->n_tok,
                                        .o = &sp->o, .samp = &s->samp, .k = sp->k,
                                        .out = sp->draft, .q = model ? sp->q : NULL,
                                        .rng = &sp->drng };
    }
    for (int i = 0; i < n; i++) {
        if (se->req[i].seq < 0) continue;   /* done with its drafter */
        eng_drafter *d = e->seqs[se->req[i].seq].spec->d;
        int m = 0;
        for (int j = i; j < n; j++)
            if (se->req[j].seq >= 0 && e->seqs[se->req[j].seq].spec->d == d) {
                se->grp[m++] = se->req[j];
                se->req[j].seq = -1;
            }
        int rc = d->propose(d, se->grp, m, err);
        if (rc) return rc;
        for (int j = 0; j < m; j++) take_drafts(e, &se->grp[j]);
    }
    for (int i = 0; i < e->max_seqs; i++)
        if (e->seqs[i].live && e->seqs[i].spec) e->seqs[i].spec->st.k = e->seqs[i].spec->k;
    return ENG_OK;
}

int eng_sp_prepare(eng_engine *e, int n_active, int rows, int spare, double *draft_secs,
                   eng_err *err) {
    spec_eng *se = e->plan;
    *draft_secs = 0;
    if (!se) return ENG_OK;   /* speculation was never on */
    plan(e, se, n_active, rows, spare);
    double t0 = eng_now_s();
    int rc = draft(e, se, err);
    *draft_secs = eng_now_s() - t0;
    return rc;
}

/* -------------------------------------------------------- verification */
/* Rejection sampling over s's k drafts; returns how many were accepted,
 * with the tokens (accepted drafts, then the resampled or bonus token) in
 * out[0..a]. */
static int verify_sampled(eng_engine *e, seq *s, const float *logits, eng_token *out) {
    spec_seq *sp = s->spec;
    int k = sp->k, V = e->c.vocab_size;
    float *p = e->pbuf, *r = e->rbuf;
    for (int i = 0; i < k; i++) {
        const float *row = logits + (size_t)i * V;
        probs_into(row, V, &s->samp, p, &e->cands, &e->cap_cands);
        int x = sp->draft[i];
        const float *q = sp->o.mode == ENG_SPEC_DRAFT ? sp->q + (size_t)i * V : NULL;
        double qx = q ? q[x] : 1.0;
        if (eng_rng_uniform(&s->rng) * qx < p[x]) {   /* kept with probability min(1, p/q) */
            out[i] = eng_token_of(row, V, x);
            continue;
        }
        for (int t = 0; t < V; t++) {
            float d = p[t] - (q ? q[t] : (float)(t == x));
            r[t] = d > 0 ? d : 0;
        }
        int y = eng_sample_weights(r, V, &s->rng);
        if (y < 0) y = eng_sample_weights(p, V, &s->rng);   /* p == q up to rounding */
        out[i] = eng_token_of(row, V, y >= 0 ? y : x);
        return i;
    }
    const float *row = logits + (size_t)k * V;   /* all kept: a bonus token from p */
    probs_into(row, V, &s->samp, p, &e->cands, &e->cap_cands);
    int y = eng_sample_weights(p, V, &s->rng);
    out[k] = eng_token_of(row, V, y >= 0 ? y : 0);
    return k;
}

void eng_sp_verify(eng_engine *e, seq *s, const eng_token *sampled, const float *logits) {
    spec_seq *sp = s->spec;
    int k = sp->k, n0 = s->n_tok, a = 0;
    eng_token *out = s->new_info;   /* room for k + 1 (reserve_step) */
    if (eng_sampling_greedy(&s->samp) || !logits) {
        while (a < k && sp->draft[a] == sampled[a].id) { out[a] = sampled[a]; a++; }
        out[a] = sampled[a];
    } else {
        a = verify_sampled(e, s, logits, out);
    }
    for (int i = 0; i <= a; i++) s->tok[n0 + i] = out[i].id;
    s->n_tok = n0 + a + 1;
    s->n_cached = n0 + a;   /* the last token is pending; rejected drafts' KV is dropped */
    eng_kv_table_truncate(e->kv, &s->table, s->n_cached);
    s->last = out[a];
    s->has_last = 1;
    s->new_at = n0;
    s->n_new = a + 1;
    sp->st.steps++;
    sp->st.drafted += k;
    sp->st.accepted += a;
    sp->st.emitted += a + 1;
    for (int i = 0; i <= a && i < k; i++) {   /* a mean (the prior counts once), then an EWMA */
        double w = 1.0 / (++sp->n_obs + 1);
        sp->alpha += (w > BETA ? w : BETA) * ((i < a) - sp->alpha);
    }
    if (sp->probing) {
        spec_eng *se = e->plan;
        int gap = sp->probe_gap * 2 < PROBE_MAX ? sp->probe_gap * 2 : PROBE_MAX;
        sp->probe_gap = a ? PROBE_EVERY : gap;
        sp->probing = 0;
        se->hit += PROBE_BETA * ((a > 0) - se->hit);
        if (!a) se->credit -= se->charge[s - e->seqs];
    }
    sp->k = 0;
    if (sp->d->accepted) sp->d->accepted(sp->d, (int)(s - e->seqs), s->tok, s->n_tok);
}

/* ----------------------------------------------------------- lifecycle */
static void spec_eng_free(spec_eng *se) {
    if (!se) return;
    free(se->cand);
    free(se->due);
    free(se->charge);
    free(se->req);
    free(se->grp);
    free(se);
}

/* The engine's speculation state, made with the first sequence that
 * speculates. */
static int spec_eng_make(eng_engine *e, eng_err *err) {
    if (e->plan) return ENG_OK;
    size_t n = (size_t)e->max_seqs;
    spec_eng *se = calloc(1, sizeof *se);
    if (se) {
        se->cand = malloc(sizeof *se->cand * n * ENG_SPEC_KMAX);
        se->due = malloc(sizeof *se->due * n);
        se->charge = calloc(n, sizeof *se->charge);
        se->req = malloc(sizeof *se->req * n);
        se->grp = malloc(sizeof *se->grp * n);
        se->hit = ALPHA0;
    }
    if (!se || !se->cand || !se->due || !se->charge || !se->req || !se->grp) {
        spec_eng_free(se);
        return eng_seterr(err, ENG_ENOMEM, "eng_seq_spec_set: out of memory");
    }
    e->plan = se;
    return ENG_OK;
}

/* Has s's drafter forget it, and drops its draft probabilities. */
static void drop_draft(eng_engine *e, seq *s) {
    spec_seq *sp = s->spec;
    if (sp->d && sp->d->forget) sp->d->forget(sp->d, (int)(s - e->seqs));
    free(sp->q);
    sp->q = NULL;
}

/* The engine's draft-model drafter runs m, made on first use; a different model
 * replaces it only when no other sequence drafts with it. */
static int use_draft_model(eng_engine *e, const seq *s, eng_model *m, int n_blocks, int n_threads,
                           eng_err *err) {
    if (e->draft && e->draft->model == m) return ENG_OK;
    if (e->draft) {
        for (int i = 0; i < e->max_seqs; i++) {
            const seq *o = &e->seqs[i];
            if (o != s && o->live && o->spec && o->spec->o.mode == ENG_SPEC_DRAFT)
                return eng_seterr(err, ENG_EINVAL, "eng_seq_spec_set: sequence %d drafts with "
                                  "another model; one draft model per engine", i);
        }
        e->draft->destroy(e->draft);
        e->draft = NULL;
    }
    eng_opts o = e->opts;
    o.tp = 0;   /* a draft model is small: one rank, whatever the target's split */
    if (n_blocks) o.n_blocks = n_blocks;
    if (n_threads) o.n_threads = n_threads;
    return eng_drafter_model_create(m, &o, e->max_seqs, &e->draft, err);
}

static int check_opts(const eng_engine *e, const eng_spec_opts *o, eng_err *err) {
    if (o->mode < ENG_SPEC_NGRAM || o->mode > ENG_SPEC_CUSTOM)
        return eng_seterr(err, ENG_EINVAL, "eng_seq_spec_set: unknown mode %d", o->mode);
    if (o->k < 0 || o->k > ENG_SPEC_KMAX || o->kmax < 0 || o->kmax > ENG_SPEC_KMAX)
        return eng_seterr(err, ENG_EINVAL, "eng_seq_spec_set: k %d / kmax %d outside [0, %d]",
                          o->k, o->kmax, ENG_SPEC_KMAX);
    if (o->ngram_n < 0 || o->ngram_n > 16)
        return eng_seterr(err, ENG_EINVAL, "eng_seq_spec_set: ngram_n %d outside [0, 16]",
                          o->ngram_n);
    if (o->draft_n_blocks < 0 || o->draft_n_threads < 0)
        return eng_seterr(err, ENG_EINVAL, "eng_seq_spec_set: negative draft_n_blocks or "
                          "draft_n_threads");
    if (o->mode == ENG_SPEC_DRAFT) {
        if (!o->draft_model)
            return eng_seterr(err, ENG_EINVAL, "eng_seq_spec_set: draft mode without a draft model");
        int v = eng_model_config(o->draft_model)->vocab_size;
        if (v != e->c.vocab_size)
            return eng_seterr(err, ENG_EINVAL, "eng_seq_spec_set: the draft model's vocabulary "
                              "of %d differs from the target's %d", v, e->c.vocab_size);
    }
    if (o->mode == ENG_SPEC_CUSTOM && !o->propose)
        return eng_seterr(err, ENG_EINVAL, "eng_seq_spec_set: custom mode without a propose "
                          "function");
    return ENG_OK;
}

int eng_seq_spec_set(eng_engine *e, int id, const eng_spec_opts *o, eng_err *err) {
    seq *s = eng_get_seq(e, id);
    if (!s) return eng_seterr(err, ENG_EINVAL, "no live sequence with id %d", id);
    if (!o || o->mode == ENG_SPEC_OFF) { eng_sp_seq_free(e, s); return ENG_OK; }
    int rc = check_opts(e, o, err);
    if (rc) return rc;
    eng_spec_opts d = *o;
    if (!d.k) d.k = 4;
    if (!d.kmax) d.kmax = d.k > 8 ? d.k : 8;
    if (!d.ngram_n) d.ngram_n = 3;
    if (d.mode != ENG_SPEC_DRAFT) d.draft_model = NULL;
    size_t V = (size_t)e->c.vocab_size;
    if (!e->pbuf) e->pbuf = malloc(sizeof *e->pbuf * V);
    if (!e->rbuf) e->rbuf = malloc(sizeof *e->rbuf * V);
    if (!e->cands) {   /* room for any support: probs_into never grows it mid-step */
        e->cands = malloc(sizeof *e->cands * V);
        e->cap_cands = e->cands ? (int)V : 0;
    }
    if (!e->pbuf || !e->rbuf || !e->cands)
        return eng_seterr(err, ENG_ENOMEM, "eng_seq_spec_set: out of memory");
    if ((rc = spec_eng_make(e, err))) return rc;
    if (s->spec) drop_draft(e, s);   /* settings change: the draft sequence starts over */
    if (d.mode == ENG_SPEC_DRAFT && (rc = use_draft_model(e, s, d.draft_model, d.draft_n_blocks,
                                                        d.draft_n_threads, err))) {
        if (s->spec && s->spec->o.mode == ENG_SPEC_DRAFT && s->spec->d != e->draft) {
            s->spec->d = NULL;   /* its draft model is gone (forgotten above): speculation off */
            eng_sp_seq_free(e, s);
        }
        return rc;
    }
    if (!s->spec) {
        spec_seq *sp = calloc(1, sizeof *sp);
        if (!sp) return eng_seterr(err, ENG_ENOMEM, "eng_seq_spec_set: out of memory");
        sp->alpha = ALPHA0;
        sp->probe_gap = PROBE_EVERY;
        sp->drng = s->samp.seed ^ DRAFT_SEED;
        s->spec = sp;
    }
    s->spec->o = d;
    s->spec->d = d.mode == ENG_SPEC_DRAFT ? e->draft : d.mode == ENG_SPEC_NGRAM
                 ? eng_drafter_ngram() : eng_drafter_custom();
    return ENG_OK;
}

int eng_sp_fork(eng_engine *e, seq *p, seq *c, eng_err *err) {
    if (!p->spec) return ENG_OK;
    spec_seq *sp = malloc(sizeof *sp);
    if (!sp) return eng_seterr(err, ENG_ENOMEM, "eng_seq_fork: out of memory");
    *sp = *p->spec;
    sp->q = NULL;
    sp->k = 0;
    sp->idle = 0;
    sp->probing = 0;
    sp->drng = c->rng ^ DRAFT_SEED;
    memset(&sp->st, 0, sizeof sp->st);
    c->spec = sp;
    if (sp->d->fork) return sp->d->fork(sp->d, (int)(p - e->seqs), (int)(c - e->seqs), err);
    return ENG_OK;
}

int eng_sp_prefill(eng_engine *e, seq *s, eng_err *err) {
    spec_seq *sp = s->spec;
    if (!sp || !sp->d->prefill) return ENG_OK;
    return sp->d->prefill(sp->d, (int)(s - e->seqs), s->tok, s->n_tok, err);
}

void eng_sp_seq_free(eng_engine *e, seq *s) {
    if (!s->spec) return;
    drop_draft(e, s);
    free(s->spec);
    s->spec = NULL;
}

void eng_sp_engine_free(eng_engine *e) {
    if (e->draft) e->draft->destroy(e->draft);
    e->draft = NULL;
    free(e->pbuf);
    free(e->rbuf);
    free(e->cands);
    spec_eng_free(e->plan);
    e->plan = NULL;
}

int eng_seq_spec_stats(const eng_engine *e, int id, eng_spec_stats *out) {
    const seq *s = eng_get_seq(e, id);
    if (!s || !out) return ENG_EINVAL;
    memset(out, 0, sizeof *out);
    if (!s->spec) return ENG_OK;
    *out = s->spec->st;
    out->accept_rate = out->drafted ? (double)out->accepted / (double)out->drafted : 0;
    out->mean_accepted = out->steps ? (double)out->accepted / (double)out->steps : 0;
    out->alpha = s->spec->alpha;
    return ENG_OK;
}
