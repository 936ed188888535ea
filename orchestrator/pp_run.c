/* pp_run.c — runs ParallelPrompt subtasks as one batch: the common token
 * prefix of the subtask prompts is prefilled once and forked, each child gets
 * the rest of its own prompt, and all children decode together.  Works on an
 * orc_pp_ops table, so tests can drive it with a fake engine. */
#include <stdlib.h>
#include <string.h>
#include "pp_internal.h"

void orc_pp_result_free(orc_pp_result *r) {
    if (!r) return;
    free(r->answer);
    orc_pp_strv_free(r->outputs, r->n_outputs);
    free(r->n_gen);
    memset(r, 0, sizeof *r);
}

/* Per-subtask state while decoding. */
typedef struct child {
    int seq, done, limit;     /* limit: tokens it may generate */
    eng_tok_stream st;
    eng_buf out;
} child;

typedef struct run {
    const orc_pp_ops *ops;
    const orc_pp_callbacks *cb;
    child *c;
    int k, max_tokens;
    orc_pp_agg *agg;
    orc_pp_result *res;
} run;

static int common_prefix(int **ids, const int *n, int k) {
    int p = n[0];
    for (int i = 1; i < k; i++) {
        int j = 0;
        while (j < p && j < n[i] && ids[i][j] == ids[0][j]) j++;
        p = j;
    }
    return p;
}

static eng_sampling child_sampling(const eng_sampling *s, int i) {
    eng_sampling c = *s;
    c.seed = s->seed + (uint64_t)i;   /* repeats of one prompt (kind N) must differ */
    return c;
}

/* Adds the k sequences.  With k > 1 and a shared prefix, the prefix is one
 * sequence, prefilled and forked k ways, then dropped (the children keep its
 * KV blocks); each child then gets the rest of its own prompt. */
static int start(run *r, int **ids, const int *n, const eng_sampling *s, eng_err *err) {
    const orc_pp_ops *o = r->ops;
    int k = r->k, p = k > 1 ? common_prefix(ids, n, k) : 0, rc;
    r->res->shared_tokens = p;
    if (p == 0) {
        for (int i = 0; i < k; i++) {
            eng_sampling cs = child_sampling(s, i);
            if ((rc = o->add(o->ctx, ids[i], n[i], k > 1 ? &cs : s, &r->c[i].seq, err))) return rc;
        }
        return ENG_OK;
    }
    int parent;
    if ((rc = o->add(o->ctx, ids[0], p, s, &parent, err))) return rc;
    rc = o->prefill(o->ctx, parent, err);
    for (int i = 0; i < k && !rc; i++) {
        eng_sampling cs = child_sampling(s, i);
        rc = o->fork(o->ctx, parent, &cs, &r->c[i].seq, err);
    }
    o->remove(o->ctx, parent);
    for (int i = 0; i < k && !rc; i++)
        if (n[i] > p) rc = o->append(o->ctx, r->c[i].seq, ids[i] + p, n[i] - p, err);
    return rc;
}

static int finish(run *r, int i, eng_err *err) {
    child *c = &r->c[i];
    c->done = 1;
    r->ops->remove(r->ops->ctx, c->seq);
    c->seq = -1;
    if (c->out.oom) return eng_seterr(err, ENG_ENOMEM, "orc_pp_run: out of memory");
    const char *text = c->out.p ? c->out.p : "";
    if (r->cb && r->cb->on_item) r->cb->on_item(r->cb->user, i, text);
    return r->agg ? orc_pp_agg_put(r->agg, i, text, err) : ENG_OK;
}

/* Reads the token each live child sampled in the last step. */
static int collect(run *r, int *live, eng_err *err) {
    const orc_pp_ops *o = r->ops;
    *live = 0;
    for (int i = 0; i < r->k; i++) {
        child *c = &r->c[i];
        if (c->done) continue;
        int id, rc;
        if ((rc = o->last(o->ctx, c->seq, &id)))
            return eng_seterr(err, rc, "orc_pp_run: subtask %d has no token", i);
        if (o->is_eos(o->ctx, id)) {
            r->res->n_eos_first += r->res->n_gen[i] == 0;
            if ((rc = finish(r, i, err))) return rc;
            continue;
        }
        char piece[256];
        int len = o->put(o->ctx, &c->st, id, piece, sizeof piece);
        eng_buf_add(&c->out, piece, (size_t)len);
        if (len > 0 && r->cb && r->cb->on_token) r->cb->on_token(r->cb->user, i, piece, len);
        r->res->n_gen[i]++;
        r->res->total_gen++;
        if (r->res->n_gen[i] >= c->limit) {
            if ((rc = finish(r, i, err))) return rc;
            continue;
        }
        (*live)++;
    }
    return ENG_OK;
}

static void forward_section(void *user, int item, const char *section) {
    const orc_pp_callbacks *cb = user;
    if (cb && cb->on_section) cb->on_section(cb->user, item, section);
}

/* Tokenises every prompt and sets each subtask's generation limit:
 * max_tokens, or what is left of the model's context. */
static int encode_all(run *r, char *const *prompts, int **ids, int *n, eng_err *err) {
    const orc_pp_ops *o = r->ops;
    for (int i = 0; i < r->k; i++) {
        int rc = o->encode(o->ctx, prompts[i], &ids[i], &n[i], err);
        if (rc) return rc;
        if (n[i] < 1) return eng_seterr(err, ENG_EINVAL, "orc_pp_run: subtask %d has an empty prompt", i);
        if (o->ctx_len > 0 && n[i] >= o->ctx_len)
            return eng_seterr(err, ENG_EINVAL, "orc_pp_run: subtask %d: prompt of %d tokens fills the "
                              "model's context of %d", i, n[i], o->ctx_len);
        r->c[i].limit = r->max_tokens;
        if (o->ctx_len > 0 && o->ctx_len - n[i] < r->c[i].limit) r->c[i].limit = o->ctx_len - n[i];
        r->res->prompt_tokens += n[i];
    }
    return ENG_OK;
}

static int results(run *r, int aggregate, eng_err *err) {
    orc_pp_result *res = r->res;
    res->outputs = calloc((size_t)r->k, sizeof *res->outputs);
    if (!res->outputs) return eng_seterr(err, ENG_ENOMEM, "orc_pp_run: out of memory");
    res->n_outputs = r->k;
    for (int i = 0; i < r->k; i++) {
        res->outputs[i] = eng_buf_take(&r->c[i].out);
        if (!res->outputs[i]) return eng_seterr(err, ENG_ENOMEM, "orc_pp_run: out of memory");
        res->n_nonempty += !pp_is_blank(res->outputs[i]);
        res->n_answered += res->n_gen[i] >= 1;
    }
    res->answer = pp_strdup(aggregate ? orc_pp_agg_text(r->agg) : res->outputs[0]);
    return res->answer ? ENG_OK : eng_seterr(err, ENG_ENOMEM, "orc_pp_run: out of memory");
}

int orc_pp_run_prompts(const orc_pp_ops *ops, char *const *prompts, int k,
                       const char *const *labels, int aggregate, const eng_sampling *s,
                       int max_tokens, const orc_pp_callbacks *cb, orc_pp_result *res,
                       eng_err *err) {
    if (!res) return eng_seterr(err, ENG_EINVAL, "orc_pp_run: no result");
    memset(res, 0, sizeof *res);
    if (!ops || !prompts || !s || k < 1 || k > ORC_PP_MAX_ITEMS || max_tokens < 1)
        return eng_seterr(err, ENG_EINVAL, "orc_pp_run: bad arguments (k=%d, max_tokens=%d)", k, max_tokens);
    double t0 = 1e3 * eng_now_s();
    run r = {.ops = ops, .cb = cb, .k = k, .max_tokens = max_tokens, .res = res};
    int **ids = calloc((size_t)k, sizeof *ids), *n = calloc((size_t)k, sizeof *n), rc = ENG_OK;
    r.c = calloc((size_t)k, sizeof *r.c);
    res->n_gen = calloc((size_t)k, sizeof *res->n_gen);
    if (!ids || !n || !r.c || !res->n_gen) {
        rc = eng_seterr(err, ENG_ENOMEM, "orc_pp_run: out of memory");
        goto out;
    }
    for (int i = 0; i < k; i++) r.c[i].seq = -1;
    if (aggregate && (rc = orc_pp_agg_create(k, labels, forward_section, (void *)cb, &r.agg, err))) goto out;
    if ((rc = encode_all(&r, prompts, ids, n, err))) goto out;
    res->ms_encode = 1e3 * eng_now_s() - t0;
    if ((rc = start(&r, ids, n, s, err))) goto out;
    res->ms_prefill = 1e3 * eng_now_s() - t0;
    /* the first step runs every child's own prompt tokens in one pass */
    for (int live = k; live > 0;) {
        if ((rc = ops->step(ops->ctx, err))) goto out;
        if (res->steps++ == 0) res->ms_first = 1e3 * eng_now_s() - t0;
        if ((rc = collect(&r, &live, err))) goto out;
    }
    res->ms_total = 1e3 * eng_now_s() - t0;
    rc = results(&r, aggregate, err);
out:
    for (int i = 0; i < k && r.c; i++) {
        if (r.c[i].seq >= 0) ops->remove(ops->ctx, r.c[i].seq);
        eng_buf_free(&r.c[i].out);
    }
    for (int i = 0; i < k && ids; i++) free(ids[i]);
    free(ids);
    free(n);
    free(r.c);
    orc_pp_agg_destroy(r.agg);
    if (rc) orc_pp_result_free(res);
    return rc;
}
