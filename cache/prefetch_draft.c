/* prefetch_draft.c — the draft-model proposer of the speculator: a small model reads
 * the question and the current page's title and scores each link on the
 * page by the mean log-probability of its anchor text as the answer to
 * "which link do you open next?".  The context is prefilled once; each
 * candidate is a copy-on-write fork of it with the anchor's tokens appended,
 * and one engine step over all forks (keep_all_logits) gives every anchor
 * token's log-probability at once. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"

struct cache_draft {
    eng_model *m;             /* borrowed */
    eng_engine *e;            /* our own: eng_step runs every live sequence */
    cache_draft_opts o;
    int vocab;
};

#define QUESTION_MAX 600      /* bytes of the question put in the context */
#define TITLE_MAX 200

int cache_draft_create(eng_model *m, const cache_draft_opts *o, cache_draft **out, eng_err *err) {
    *out = NULL;
    if (!m) return eng_seterr(err, ENG_EINVAL, "cache_draft_create: no model");
    cache_draft *d = calloc(1, sizeof *d);
    if (!d) return eng_seterr(err, ENG_ENOMEM, "cache_draft_create: out of memory");
    if (o) d->o = *o;
    if (d->o.n_threads <= 0) d->o.n_threads = 1;
    if (d->o.max_batch <= 0) d->o.max_batch = 32;
    if (d->o.max_ctx_tokens <= 0) d->o.max_ctx_tokens = 256;
    if (d->o.max_cand_tokens <= 0) d->o.max_cand_tokens = 24;
    const eng_config *c = eng_model_config(m);
    if (d->o.max_ctx_tokens + d->o.max_cand_tokens + 2 > c->max_pos) {
        int rc = eng_seterr(err, ENG_EINVAL, "cache_draft_create: %d context + %d candidate tokens "
                            "exceed the model's context of %d", d->o.max_ctx_tokens,
                            d->o.max_cand_tokens, c->max_pos);
        free(d);
        return rc;
    }
    d->m = m;
    d->vocab = c->vocab_size;
    /* KV for the context and max_batch forks of it, each a few blocks of
     * its own; sized here so a large model does not reserve its whole
     * context per sequence. */
    int bs = 16, per = (d->o.max_ctx_tokens + d->o.max_cand_tokens + 2 + bs - 1) / bs + 2;
    eng_opts eo = { .backend = d->o.backend, .n_threads = d->o.n_threads, .block_size = bs,
                    .max_seqs = d->o.max_batch + 1, .n_blocks = (d->o.max_batch + 1) * per };
    int rc = eng_create(m, &eo, &d->e, err);
    if (rc) {
        free(d);
        return rc;
    }
    *out = d;
    return ENG_OK;
}

void cache_draft_destroy(cache_draft *d) {
    if (!d) return;
    eng_destroy(d->e);
    free(d);
}

/* Length of s cut to at most cap bytes on a UTF-8 character boundary. */
static size_t utf8_cut(const char *s, size_t cap) {
    size_t n = strlen(s);
    if (n <= cap) return n;
    while (cap > 0 && ((unsigned char)s[cap] & 0xC0) == 0x80) cap--;
    return cap;
}

int cache_draft_context(cache_draft *d, const char *question, const char *title, int **ids,
                        int *n, eng_err *err) {
    *ids = NULL;
    *n = 0;
    if (!d || !question) return eng_seterr(err, ENG_EINVAL, "cache_draft_context: no question");
    const char *ti = title && title[0] ? title : "(untitled)";
    size_t qn = utf8_cut(question, QUESTION_MAX), tn = utf8_cut(ti, TITLE_MAX);
    size_t cap = qn + tn + 128;
    char *user = malloc(cap);
    if (!user) return eng_seterr(err, ENG_ENOMEM, "draft: out of memory");
    snprintf(user, cap, "Question: %.*s\nI am on the page \"%.*s\". Which link do I open next?",
             (int)qn, question, (int)tn, ti);
    /* A user turn of the model's template (its text never becomes control
     * tokens: a page title cannot end the turn), then the reply's start. */
    eng_chat *c = NULL;
    eng_chat_msg m = { .role = "user", .content = user };
    eng_chat_opts o = { .add_generation_prompt = 1, .prefill = "I open the link \"" };
    int rc = eng_chat_create(d->m, &c, err);
    if (!rc) rc = eng_chat_render(c, &m, 1, &o, ids, n, NULL, err);
    eng_chat_free(c);
    free(user);
    if (rc) return rc;
    if (*n > d->o.max_ctx_tokens) {      /* keep the end: the cue and the question's tail */
        memmove(*ids, *ids + (*n - d->o.max_ctx_tokens), (size_t)d->o.max_ctx_tokens * sizeof **ids);
        *n = d->o.max_ctx_tokens;
    }
    return ENG_OK;
}

/* log softmax(row)[id], in double. */
static double token_logprob(const float *row, int vocab, int id) {
    float mx = row[0];
    for (int i = 1; i < vocab; i++) if (row[i] > mx) mx = row[i];
    double s = 0;
    for (int i = 0; i < vocab; i++) s += exp((double)row[i] - mx);
    return (double)row[id] - mx - log(s);
}

/* Scores cand[from, to) as forks of parent in one step. */
static int score_chunk(cache_draft *d, int parent, const int *const *cand, const int *len,
                       int from, int to, double *out, eng_err *err) {
    int *kids = malloc((size_t)(to - from + 1) * sizeof *kids), nk = 0, rc = ENG_OK;
    if (!kids) return eng_seterr(err, ENG_ENOMEM, "draft: out of memory");
    for (int i = from; i < to && !rc; i++) {
        int L = len[i] < d->o.max_cand_tokens ? len[i] : d->o.max_cand_tokens;
        if (L <= 0) { out[i] = -log((double)d->vocab); continue; }   /* nothing to read: uniform */
        int k;
        rc = eng_seq_fork(d->e, parent, NULL, &k, err);
        if (rc) break;
        kids[nk++] = k;
        rc = eng_seq_append(d->e, k, cand[i], L, err);
        if (!rc) rc = eng_seq_keep_all_logits(d->e, k, 1);
    }
    if (!rc && nk) rc = eng_step(d->e, err);
    for (int i = from, j = 0; i < to && !rc; i++) {
        int L = len[i] < d->o.max_cand_tokens ? len[i] : d->o.max_cand_tokens;
        if (L <= 0) continue;
        int rows = 0;
        const float *lg = eng_seq_logits(d->e, kids[j++], &rows);
        if (!lg || rows < L + 1) {
            rc = eng_seterr(err, ENG_EINVAL, "draft: step gave %d logit rows, %d wanted", rows, L + 1);
            break;
        }
        /* Row r holds the prediction after the r-th pending token: row 0
         * (after the context's last token) predicts the anchor's first. */
        double s = 0;
        for (int r = 0; r < L; r++) s += token_logprob(lg + (size_t)r * d->vocab, d->vocab, cand[i][r]);
        out[i] = s / L;
    }
    for (int j = 0; j < nk; j++) eng_seq_remove(d->e, kids[j]);
    free(kids);
    return rc;
}

int cache_draft_score_ids(cache_draft *d, const int *ctx, int n_ctx, const int *const *cand,
                          const int *cand_len, int n_cand, double *out, eng_err *err) {
    if (!d || !ctx || n_ctx <= 0 || n_cand < 0 || (n_cand && (!cand || !cand_len || !out)))
        return eng_seterr(err, ENG_EINVAL, "cache_draft_score_ids: bad arguments");
    if (n_ctx > d->o.max_ctx_tokens)
        return eng_seterr(err, ENG_EINVAL, "cache_draft_score_ids: context of %d tokens exceeds "
                          "max_ctx_tokens %d", n_ctx, d->o.max_ctx_tokens);
    for (int i = 0; i < n_cand; i++)
        if (cand_len[i] > 0 && !cand[i])
            return eng_seterr(err, ENG_EINVAL, "cache_draft_score_ids: candidate %d has no tokens", i);
    if (n_cand == 0) return ENG_OK;
    int parent, rc = eng_seq_add(d->e, ctx, n_ctx, NULL, &parent, err);
    if (rc) return rc;
    rc = eng_seq_prefill(d->e, parent, err);
    if (!rc) rc = eng_seq_pause(d->e, parent, 1) ? eng_seterr(err, ENG_EINVAL, "draft: cannot pause") : ENG_OK;
    for (int from = 0; from < n_cand && !rc; from += d->o.max_batch) {
        int to = from + d->o.max_batch < n_cand ? from + d->o.max_batch : n_cand;
        rc = score_chunk(d, parent, cand, cand_len, from, to, out, err);
    }
    eng_seq_remove(d->e, parent);
    return rc;
}

int cache_draft_score(cache_draft *d, const char *question, const char *title,
                      const char *const *anchors, int n, double *out, eng_err *err) {
    if (n < 0 || (n && (!anchors || !out)))
        return eng_seterr(err, ENG_EINVAL, "cache_draft_score: bad arguments");
    int *ctx = NULL, n_ctx = 0;
    int rc = cache_draft_context(d, question, title, &ctx, &n_ctx, err);
    if (rc) return rc;
    int **ids = calloc((size_t)n + 1, sizeof *ids), *len = calloc((size_t)n + 1, sizeof *len);
    if (!ids || !len) rc = eng_seterr(err, ENG_ENOMEM, "draft: out of memory");
    const eng_tok *t = eng_model_tok(d->m);
    for (int i = 0; i < n && !rc; i++) {
        /* The anchor and the closing quote: the model must also agree that
         * the link text ends there. */
        const char *a = anchors[i] ? anchors[i] : "";
        size_t an = utf8_cut(a, 400);
        char *s = malloc(an + 2);
        if (!s) { rc = eng_seterr(err, ENG_ENOMEM, "draft: out of memory"); break; }
        memcpy(s, a, an);
        s[an] = '"';
        s[an + 1] = 0;
        rc = an ? eng_tok_encode(t, s, an + 1, 0, &ids[i], &len[i], err) : ENG_OK;
        free(s);
    }
    if (!rc) rc = cache_draft_score_ids(d, ctx, n_ctx, (const int *const *)ids, len, n, out, err);
    for (int i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
    free(len);
    free(ctx);
    return rc;
}

int cache_draft_propose(cache_draft *d, cache_spec *s, const char *question, const char *title,
                        const char *const *urls, const char *const *anchors, int n, double weight,
                        eng_err *err) {
    if (!s || n < 0 || (n && (!urls || !anchors)) || !isfinite(weight) || weight < 0)
        return eng_seterr(err, ENG_EINVAL, "cache_draft_propose: bad arguments");
    if (n == 0) return ENG_OK;
    double *sc = malloc((size_t)n * sizeof *sc);
    if (!sc) return eng_seterr(err, ENG_ENOMEM, "draft: out of memory");
    int rc = cache_draft_score(d, question, title, anchors, n, sc, err);
    /* A softmax over the candidates turns log-probabilities (all negative)
     * into positive shares that sum to one, so every link stays in the
     * ranking and weight bounds what the draft can add. */
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n && !rc; i++) if (sc[i] > mx) mx = sc[i];
    for (int i = 0; i < n && !rc; i++) sum += exp(sc[i] - mx);
    for (int i = 0; i < n && !rc; i++)
        rc = cache_spec_add(s, urls[i], NULL, weight * exp(sc[i] - mx) / sum, err);
    free(sc);
    return rc;
}
