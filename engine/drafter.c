/* drafter.c — the drafters of speculative decoding (drafter.h), on eng.h
 * alone.
 *
 * Prompt lookup: the latest earlier occurrence of the last g tokens (g =
 * ngram_n..1) and the k tokens after it; a continuation that runs into the
 * end repeats itself (the text so far, extended by the proposal).
 *
 * Draft model: every target sequence it drafts for has a sequence in the
 * draft engine (made on first use), kept holding the target's tokens with
 * one pending: synced before drafting and after each verification (drafts
 * not kept are cut, KV and all; what the target gained is appended).  One
 * draft-engine step per draft position runs all of them together (those
 * with fewer drafts sit out the later steps); the pending token of each
 * step is its draft, greedy or, when the target samples, a draw from the
 * draft model's distribution under the target's settings (kept in q for
 * verification), which then replaces the engine's own sample. */
#include <stdlib.h>
#include <string.h>
#include "drafter.h"

/* ---------------------------------------------------------- stateless */
static int ngram_one(const int *t, int n, int nmax, int k, int *out) {
    for (int g = nmax < n - 1 ? nmax : n - 1; g >= 1; g--) {
        const int *suf = t + n - g;
        for (int j = n - g - 1; j >= 0; j--) {
            if (t[j] != suf[0] || memcmp(t + j, suf, sizeof *t * (size_t)g)) continue;
            for (int i = 0; i < k; i++) {
                int x = j + g + i;
                out[i] = x < n ? t[x] : out[x - n];
            }
            return k;
        }
    }
    return 0;
}

static int ngram_propose(eng_drafter *d, eng_draft_req *r, int n, eng_err *err) {
    for (int i = 0; i < n; i++)
        r[i].k = ngram_one(r[i].tokens, r[i].n_tokens, r[i].o->ngram_n, r[i].k, r[i].out);
    return ENG_OK;
}

static int custom_propose(eng_drafter *d, eng_draft_req *r, int n, eng_err *err) {
    for (int i = 0; i < n; i++)
        r[i].k = r[i].o->propose(r[i].o->user, r[i].seq, r[i].tokens, r[i].n_tokens, r[i].k,
                                 r[i].out);
    return ENG_OK;
}

static eng_drafter ngram = { .propose = ngram_propose };
static eng_drafter custom = { .propose = custom_propose };
eng_drafter *eng_drafter_ngram(void) { return &ngram; }
eng_drafter *eng_drafter_custom(void) { return &custom; }

/* -------------------------------------------------------- draft model */
typedef struct dm_seq {
    int dseq;      /* its sequence in the draft engine; -1: none yet */
    int dsynced;   /* leading tokens of dseq known equal to the target's */
} dm_seq;

typedef struct draft_model {
    eng_drafter d;   /* first: the drafter is the struct */
    eng_engine *e;
    int max_seqs, vocab;
    dm_seq *s;       /* [max_seqs] by target sequence id */
} draft_model;

static dm_seq *dm_get(draft_model *m, int seq) {
    return seq >= 0 && seq < m->max_seqs ? &m->s[seq] : NULL;
}

/* Makes seq's draft sequence hold exactly tokens[0..n), one of them
 * pending: drops the tokens past what the two share (their KV too) and
 * appends the rest; when the draft sequence already holds them all, the
 * last is cut and appended again, so it is pending (a cut keeps the KV of
 * what it keeps).  Creates it on first use. */
static int dm_sync(draft_model *m, dm_seq *ds, const int *tokens, int n, eng_err *err) {
    if (ds->dseq < 0) {
        static const eng_sampling greedy = { 0 };
        int rc = eng_seq_add(m->e, tokens, n, &greedy, &ds->dseq, err);
        if (rc) { ds->dseq = -1; return rc; }
        ds->dsynced = n;
        return ENG_OK;
    }
    const int *have;
    int nh = 0;
    eng_seq_tokens(m->e, ds->dseq, &have, &nh);
    int lim = nh < n ? nh : n;
    int same = ds->dsynced < lim ? ds->dsynced : lim;
    while (same < lim && have[same] == tokens[same]) same++;
    if (same == n) same = n - 1;
    int rc = eng_seq_truncate(m->e, ds->dseq, same, err);
    if (!rc) rc = eng_seq_append(m->e, ds->dseq, tokens + same, n - same, err);
    if (rc) return rc;
    ds->dsynced = n;
    return ENG_OK;
}

/* Draft j of r from the draft engine's last step. */
static void dm_take(draft_model *m, eng_draft_req *r, int j) {
    int dseq = m->s[r->seq].dseq, V = m->vocab, rows = 0;
    eng_token last = { 0 };
    eng_seq_last(m->e, dseq, &last);
    int id = last.id;
    if (!eng_sampling_greedy(r->samp) && r->q) {
        float *q = r->q + (size_t)j * V;
        const float *lg = eng_seq_logits(m->e, dseq, &rows);
        int x = -1;
        if (lg && rows > 0) {
            eng_spec_probs(lg + (size_t)(rows - 1) * V, V, r->samp, q);
            x = eng_sample_weights(q, V, r->rng);
        }
        if (x >= 0) {
            id = x;
        } else {   /* no logits: the greedy token, as a point mass */
            memset(q, 0, sizeof *q * (size_t)V);
            q[id] = 1;
        }
        const int *t;
        int n = 0;
        eng_seq_tokens(m->e, dseq, &t, &n);   /* the pending sample becomes the draw */
        eng_err ignored;
        if (!eng_seq_truncate(m->e, dseq, n - 1, &ignored))
            eng_seq_append(m->e, dseq, &id, 1, &ignored);
    }
    r->out[j] = id;
}

static int dm_propose(eng_drafter *d, eng_draft_req *r, int n, eng_err *err) {
    draft_model *m = (draft_model *)d;
    int maxk = 0;
    for (int i = 0; i < n; i++) {
        dm_seq *ds = dm_get(m, r[i].seq);
        int rc = ds ? dm_sync(m, ds, r[i].tokens, r[i].n_tokens, err) : ENG_EINVAL;
        if (rc == ENG_ENOMEM || rc == ENG_EIO) return rc;
        if (rc) { r[i].k = 0; continue; }
        if (r[i].k > maxk) maxk = r[i].k;
    }
    if (!maxk) return ENG_OK;
    for (int i = 0; i < m->max_seqs; i++)
        if (m->s[i].dseq >= 0) eng_seq_pause(m->e, m->s[i].dseq, 1);
    for (int i = 0; i < n; i++) {
        if (!r[i].k) continue;
        int dseq = m->s[r[i].seq].dseq;
        eng_seq_pause(m->e, dseq, 0);
        eng_seq_want_logits(m->e, dseq, !eng_sampling_greedy(r[i].samp));
    }
    for (int j = 0; j < maxk; j++) {
        for (int i = 0; i < n; i++)
            if (r[i].k && r[i].k <= j) eng_seq_pause(m->e, m->s[r[i].seq].dseq, 1);
        eng_err derr = { 0 };
        int rc = eng_step(m->e, &derr);
        if (rc == ENG_ENOMEM || rc == ENG_EIO) {
            if (err) *err = derr;
            return rc;
        }
        for (int i = 0; i < n; i++) {
            if (r[i].k <= j) continue;
            if (rc) r[i].k = j;   /* the draft engine is full: what we have */
            else dm_take(m, &r[i], j);
        }
        if (rc) break;
    }
    return ENG_OK;
}

static void dm_accepted(eng_drafter *d, int seq, const int *tokens, int n) {
    draft_model *m = (draft_model *)d;
    dm_seq *ds = dm_get(m, seq);
    eng_err ignored;
    if (ds && ds->dseq >= 0)
        dm_sync(m, ds, tokens, n, &ignored);   /* fails only for want of room: synced at the next draft */
}

static int dm_prefill(eng_drafter *d, int seq, const int *tokens, int n, eng_err *err) {
    draft_model *m = (draft_model *)d;
    dm_seq *ds = dm_get(m, seq);
    if (!ds || n > eng_model_config(m->d.model)->max_pos) return ENG_OK;
    int rc = dm_sync(m, ds, tokens, n, err);
    if (!rc) rc = eng_seq_prefill(m->e, ds->dseq, err);
    return rc == ENG_EFULL || rc == ENG_EINVAL ? ENG_OK : rc;   /* no room: drafts later or not */
}

static int dm_fork(eng_drafter *d, int parent, int child, eng_err *err) {
    draft_model *m = (draft_model *)d;
    dm_seq *p = dm_get(m, parent), *c = dm_get(m, child);
    if (!p || !c) return ENG_OK;
    c->dseq = -1;
    c->dsynced = p->dsynced;
    if (p->dseq >= 0) {   /* share the draft model's KV too */
        int rc = eng_seq_fork(m->e, p->dseq, NULL, &c->dseq, err);
        if (rc == ENG_ENOMEM) return rc;
        if (rc) c->dseq = -1;   /* no slot now: made when it first drafts */
    }
    return ENG_OK;
}

static void dm_forget(eng_drafter *d, int seq) {
    draft_model *m = (draft_model *)d;
    dm_seq *ds = dm_get(m, seq);
    if (!ds) return;
    if (ds->dseq >= 0) eng_seq_remove(m->e, ds->dseq);
    ds->dseq = -1;
}

static int dm_catch_up(const eng_drafter *d, int seq, int n_tokens) {
    const draft_model *m = (const draft_model *)d;
    const dm_seq *ds = seq >= 0 && seq < m->max_seqs ? &m->s[seq] : NULL;
    if (!ds || ds->dseq < 0) return n_tokens;
    int cached = eng_seq_n_cached(m->e, ds->dseq);
    return n_tokens - (cached < ds->dsynced ? cached : ds->dsynced);
}

static double dm_pass_cost(const eng_drafter *d, double rows) {
    return eng_spec_step_cost(((const draft_model *)d)->e, (int)rows);
}

static void dm_destroy(eng_drafter *d) {
    draft_model *m = (draft_model *)d;
    if (!m) return;
    eng_destroy(m->e);
    free(m->s);
    free(m);
}

int eng_drafter_model_create(eng_model *model, const eng_opts *o, int max_seqs, eng_drafter **out,
                             eng_err *err) {
    *out = NULL;
    draft_model *m = calloc(1, sizeof *m);
    if (m) m->s = malloc(sizeof *m->s * (size_t)(max_seqs > 0 ? max_seqs : 1));
    if (!m || !m->s) {
        if (m) free(m);
        return eng_seterr(err, ENG_ENOMEM, "draft model: out of memory");
    }
    m->d = (eng_drafter){ .propose = dm_propose, .accepted = dm_accepted, .prefill = dm_prefill,
                          .fork = dm_fork, .forget = dm_forget, .catch_up = dm_catch_up,
                          .pass_cost = dm_pass_cost, .destroy = dm_destroy, .model = model };
    m->max_seqs = max_seqs;
    m->vocab = eng_model_config(model)->vocab_size;
    for (int i = 0; i < max_seqs; i++) m->s[i] = (dm_seq){ .dseq = -1 };
    int rc = eng_create(model, o, &m->e, err);
    if (rc == ENG_EUNSUPPORTED && o && (o->act == ENG_ACT_Q16 || o->act == ENG_ACT_BF16)) {
        /* a draft whose products are not all of blocks (q16), or not of
         * bf16 weights on CUDA (bf16), runs with f32 inputs: its numbers
         * only propose, the target checks every token */
        eng_opts f32 = *o;
        f32.act = ENG_ACT_F32;
        rc = eng_create(model, &f32, &m->e, err);
    }
    if (rc) { dm_destroy(&m->d); return rc; }
    *out = &m->d;
    return ENG_OK;
}

eng_engine *eng_drafter_engine(const eng_drafter *d) {
    return d && d->destroy == dm_destroy ? ((const draft_model *)d)->e : NULL;
}
