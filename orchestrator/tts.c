/* tts.c — reason mode: n sampled branches of one prompt, decoded together.
 *
 * Admission tokenises the prompt, prefills it once and forks n branches from
 * it, so they share the prompt's KV blocks.  Every step each live branch
 * adds a token (several with speculative decoding); a branch ends at EOS or
 * its token limit and frees its sequence at once.
 *
 * Probing (early stopping): every T tokens each live branch is forked with
 * greedy sampling and the cue "... **Final Answer** \[ \boxed{" appended;
 * the probe decodes a few tokens alongside everything else, its answer is
 * read up to the closing brace, and the probe is removed.  The branch itself
 * is untouched (own sequence, own random stream).  After a round of probes:
 * a branch whose last K probes agree stops; the query stops once the probed
 * (or final) answers agree enough. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orc_tts.h"
#include "orc_math.h"

enum { B_RUN = 0, B_DONE, B_STOPPED };

typedef struct branch {
    int seq, probe;            /* engine ids; -1 when none */
    int state;
    const char *finish;        /* "stop", "length", "stable", "certain", or a stop reason */
    int n_gen;
    double lp_sum;
    eng_tok_stream ts;
    eng_buf text;
    /* the probe in flight */
    int probe_n;
    eng_tok_stream pts;
    eng_buf ptext;
    char *probed;              /* latest probed answer */
    int streak;                /* probes in a row with the same answer */
    char *answer;              /* set when the branch ends */
} branch;

typedef struct reason {
    orc_query q;
    orc_tts_opts o;
    const eng_model *m;
    char *system;              /* own copy of o.system */
    int *cue, n_cue;
    int admitted, n_prompt, max_gen;
    branch b[ORC_TTS_MAX_N];
    int next_probe;            /* a probe round starts once a branch has next_probe tokens */
    eng_spec_opts spec;        /* speculation of the branches (mode OFF: none) */
    long long spec_steps, spec_drafted, spec_accepted;
    int round, in_flight;      /* completed probe rounds; probes running */
    long long probes, probe_tokens, cue_tokens;
    int early, finished;
    double t_start, t_first;
} reason;

void orc_tts_default_opts(orc_tts_opts *o) {
    memset(o, 0, sizeof *o);
    o->n = 8;
    o->aggregate = ORC_TTS_VOTE;
    o->stream = 1;
    o->system = ORC_TTS_MATH_SYSTEM;
    o->probe_tokens = 12;
    o->min_rounds = 2;
    o->stop_agree = 0.75;
    o->stop_entropy = -1;
}

uint64_t orc_tts_branch_seed(uint64_t seed, int i) {
    return seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void set_str(char **dst, char *v) {
    free(*dst);
    *dst = v;
}

static const eng_tok *tok_of(const reason *r) { return eng_model_tok(r->m); }

/* ------------------------------------------------------------ messages */
static void emit(orc_task *t, cJSON *m) {
    if (m) t->sink.emit(t->sink.ud, m);
}

static void add_str_or_null(cJSON *o, const char *k, const char *v) {
    if (v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static void emit_branch(orc_task *t, int i, const char *state, const char *answer) {
    reason *r = t->impl;
    cJSON *m = orc_msg("branch", t->id);
    if (!m) return;
    cJSON_AddNumberToObject(m, "branch", i);
    cJSON_AddStringToObject(m, "state", state);
    cJSON_AddNumberToObject(m, "tokens", r->b[i].n_gen);
    add_str_or_null(m, "answer", answer);
    if (r->b[i].state != B_RUN) cJSON_AddStringToObject(m, "finish", r->b[i].finish);
    emit(t, m);
}

/* ------------------------------------------------------------ admission */
int orc_tts_encode_prompt(const orc_query *q, const orc_tts_opts *o, const eng_model *m,
                          int **ids, int *n, eng_err *err) {
    if (q->messages) return orc_encode_query(q, m, ids, n, err);
    const char *system = o ? o->system : ORC_TTS_MATH_SYSTEM;
    eng_chat_msg msgs[2];
    int k = 0;
    if (system && *system) msgs[k++] = (eng_chat_msg){ .role = "system", .content = system };
    msgs[k++] = (eng_chat_msg){ .role = "user", .content = q->prompt ? q->prompt : "" };
    orc_query qq = *q;
    qq.messages = msgs;
    qq.n_messages = k;
    return orc_encode_query(&qq, m, ids, n, err);
}

/* Removes every sequence the task holds. */
static void release(reason *r, eng_engine *e) {
    for (int i = 0; i < r->o.n; i++) {
        branch *b = &r->b[i];
        if (b->seq >= 0) eng_seq_remove(e, b->seq);
        if (b->probe >= 0) eng_seq_remove(e, b->probe);
        b->seq = b->probe = -1;
    }
    r->in_flight = 0;
}

/* Teacher-forces branch i's output to its script text, then EOS. */
static int force_script(reason *r, eng_engine *e, int i, eng_err *err) {
    const char *text = r->o.script[i % r->o.n_script];
    const eng_config *c = eng_model_config(r->m);
    int *ids = NULL, n = 0;
    int rc = eng_tok_encode(tok_of(r), text ? text : "", text ? strlen(text) : 0, 0, &ids, &n, err);
    if (rc) return rc;
    int *all = realloc(ids, (size_t)(n + 1) * sizeof *all);
    if (!all) { free(ids); return eng_seterr(err, ENG_ENOMEM, "out of memory"); }
    if (c->n_eos > 0) all[n++] = c->eos_ids[0];
    rc = eng_seq_force(e, r->b[i].seq, all, n, err);
    free(all);
    return rc;
}

/* Prompt in, prefilled once, forked n ways; the root is dropped after the
 * forks so only the branches hold the shared blocks. */
static int admit(orc_task *t, eng_engine *e, eng_err *err) {
    reason *r = t->impl;
    int *ids = NULL, n = 0, root = -1;
    int rc = orc_tts_encode_prompt(&r->q, &r->o, r->m, &ids, &n, err);
    if (rc) return rc;
    int max_gen = r->q.max_tokens;
    if ((rc = orc_fit_context(r->m, n, &max_gen, err))) {
        free(ids);
        return rc;
    }
    /* room to get going (four blocks a branch), not the whole run; a branch
     * also copies the prompt's last block when it writes into it */
    int first = eng_blocks_for(e, max_gen) < 4 ? eng_blocks_for(e, max_gen) : 4;
    int need = eng_blocks_for(e, n) + r->o.n * (first + 1);
    int others = eng_n_live(e) > 0;
    if (others && eng_kv_free_blocks(e) < need) { free(ids); return ORC_WAIT; }
    eng_sampling s = r->q.samp;
    rc = eng_seq_add(e, ids, n, &s, &root, err);
    free(ids);
    /* before the prefill, so a draft model gets the prompt too; forks inherit it */
    if (!rc && r->spec.mode != ENG_SPEC_OFF) rc = eng_seq_spec_set(e, root, &r->spec, err);
    if (!rc) rc = eng_seq_prefill(e, root, err);
    for (int i = 0; i < r->o.n && !rc; i++) {
        s.seed = r->o.same_seed ? r->q.samp.seed : orc_tts_branch_seed(r->q.samp.seed, i);
        rc = eng_seq_fork(e, root, &s, &r->b[i].seq, err);
    }
    if (root >= 0) eng_seq_remove(e, root);
    for (int i = 0; i < r->o.n && !rc && r->o.n_script > 0; i++)
        rc = force_script(r, e, i, err);
    if (rc) {
        release(r, e);
        if (rc == ENG_EFULL && others) return ORC_WAIT;   /* try again once others finish */
        return rc;
    }
    r->admitted = 1;
    r->next_probe = r->o.probe_every;
    r->n_prompt = n;
    r->max_gen = max_gen;
    r->t_start = eng_now_s();
    return ORC_RUNNING;
}

/* --------------------------------------------------------------- probes */
static int n_running(const reason *r) {
    int k = 0;
    for (int i = 0; i < r->o.n; i++) k += r->b[i].state == B_RUN;
    return k;
}

/* Forks a greedy probe off every running branch that has room for it. */
static void start_probes(reason *r, eng_engine *e) {
    const eng_config *c = eng_model_config(r->m);
    int live = n_running(r);
    /* a probe writes into at most two fresh blocks; leave the branches theirs */
    if (!live || eng_kv_free_blocks(e) < 3 * live) return;
    eng_sampling greedy = { 0 };
    for (int i = 0; i < r->o.n; i++) {
        branch *b = &r->b[i];
        if (b->state != B_RUN || b->seq < 0) continue;
        if (r->n_prompt + b->n_gen + r->n_cue + r->o.probe_tokens > c->max_pos) continue;
        eng_err e2 = { 0 };
        if (eng_seq_fork(e, b->seq, &greedy, &b->probe, &e2)) { b->probe = -1; continue; }
        /* a probe is a few greedy tokens: no drafts for it */
        if ((r->spec.mode != ENG_SPEC_OFF && eng_seq_spec_set(e, b->probe, NULL, &e2)) ||
            eng_seq_append(e, b->probe, r->cue, r->n_cue, &e2)) {
            eng_seq_remove(e, b->probe);
            b->probe = -1;
            continue;
        }
        b->probe_n = 0;
        b->pts = (eng_tok_stream){ .n_pend = 0 };
        eng_buf_clear(&b->ptext);
        r->in_flight++;
        r->probes++;
        r->cue_tokens += r->n_cue;
    }
}

static void drop_probe(reason *r, eng_engine *e, branch *b) {
    if (b->probe < 0) return;
    eng_seq_remove(e, b->probe);
    b->probe = -1;
    r->in_flight--;
}

/* Reads the probe's new tokens; finishes it when the box closes, at EOS or
 * after probe_tokens tokens. */
static int probe_step(orc_task *t, eng_engine *e, int i, eng_err *err) {
    reason *r = t->impl;
    branch *b = &r->b[i];
    const eng_token *tk;
    int k = 0, eos = 0;
    if (eng_seq_new_info(e, b->probe, &tk, &k)) return eng_seterr(err, ENG_EINVAL, "lost a probe sequence");
    char *ans = NULL;
    for (int j = 0; j < k && !ans && !eos && b->probe_n < r->o.probe_tokens; j++) {
        b->probe_n++;
        r->probe_tokens++;
        if ((eos = orc_is_eos(eng_model_config(r->m), tk[j].id))) break;
        char buf[1024];
        int w = eng_tok_stream_put(tok_of(r), &b->pts, tk[j].id, 1, buf, sizeof buf);
        if (eng_buf_add(&b->ptext, buf, (size_t)w)) return eng_seterr(err, ENG_ENOMEM, "out of memory");
        ans = orc_tts_probe_answer(b->ptext.p);
    }
    if (!ans && !eos && b->probe_n < r->o.probe_tokens) return ENG_OK;
    if (r->o.probe_fn) {
        const char *alt = r->o.probe_fn(r->o.probe_ud, i, r->round, ans);
        set_str(&ans, dup_or_null(alt));
    }
    if (ans && b->probed && (!strcmp(ans, b->probed) || orc_math_equiv(ans, b->probed))) b->streak++;
    else b->streak = ans ? 1 : 0;
    set_str(&b->probed, ans);
    drop_probe(r, e, b);
    emit_branch(t, i, "running", b->probed);
    return ENG_OK;
}

/* ------------------------------------------------------------- branches */
/* Ends branch i: frees its sequences and tells the client. */
static void end_branch(orc_task *t, eng_engine *e, int i, int state, const char *finish) {
    reason *r = t->impl;
    branch *b = &r->b[i];
    eng_spec_stats st;
    if (b->seq >= 0 && r->spec.mode != ENG_SPEC_OFF && !eng_seq_spec_stats(e, b->seq, &st)) {
        r->spec_steps += st.steps;
        r->spec_drafted += st.drafted;
        r->spec_accepted += st.accepted;
    }
    if (b->seq >= 0) eng_seq_remove(e, b->seq);
    b->seq = -1;
    drop_probe(r, e, b);
    b->state = state;
    b->finish = finish;
    char buf[64];
    int w = eng_tok_stream_put(tok_of(r), &b->ts, -1, 1, buf, sizeof buf);   /* held-back bytes */
    if (w > 0) eng_buf_add(&b->text, buf, (size_t)w);
    char *a = state == B_DONE ? orc_math_extract(eng_buf_str(&b->text)) : NULL;
    if (!a) a = dup_or_null(b->probed);   /* stopped, or ran out before boxing one */
    set_str(&b->answer, a);
    emit_branch(t, i, state == B_DONE ? "done" : "stopped", b->answer);
}

static int emit_token(orc_task *t, int i, const eng_token *tk) {
    reason *r = t->impl;
    branch *b = &r->b[i];
    char buf[1024];
    int w = eng_tok_stream_put(tok_of(r), &b->ts, tk->id, 1, buf, sizeof buf);
    if (eng_buf_add(&b->text, buf, (size_t)w)) return ENG_ENOMEM;
    if (!r->o.stream) return ENG_OK;
    cJSON *m = orc_msg("token", t->id);
    if (m) {
        cJSON_AddNumberToObject(m, "branch", i);
        cJSON_AddStringToObject(m, "text", buf);
        cJSON_AddNumberToObject(m, "token", tk->id);
        cJSON_AddNumberToObject(m, "logprob", tk->logprob);
        emit(t, m);
    }
    return ENG_OK;
}

/* Reads the branch's new tokens (several after a speculative step); tokens
 * past EOS or the limit are dropped with the sequence. */
static int branch_step(orc_task *t, eng_engine *e, int i, eng_err *err) {
    reason *r = t->impl;
    branch *b = &r->b[i];
    const eng_token *tk;
    int k = 0;
    if (eng_seq_new_info(e, b->seq, &tk, &k)) return eng_seterr(err, ENG_EINVAL, "lost a branch sequence");
    if (k > 0 && !r->t_first) r->t_first = eng_now_s();
    for (int j = 0; j < k && b->state == B_RUN; j++) {   /* tk dies with the sequence */
        b->n_gen++;
        b->lp_sum += tk[j].logprob;
        int eos = orc_is_eos(eng_model_config(r->m), tk[j].id);
        if (!eos && emit_token(t, i, &tk[j])) return eng_seterr(err, ENG_ENOMEM, "out of memory");
        if (eos || b->n_gen >= r->max_gen) end_branch(t, e, i, B_DONE, eos ? "stop" : "length");
    }
    return ENG_OK;
}

/* The current answer of every branch: final when ended, else the probe's. */
static void current_answers(const reason *r, const char **ans) {
    for (int i = 0; i < r->o.n; i++)
        ans[i] = r->b[i].state == B_RUN ? r->b[i].probed : r->b[i].answer;
}

/* A probe round finished: stop settled branches, then maybe the query. */
static void after_round(orc_task *t, eng_engine *e) {
    reason *r = t->impl;
    r->round++;
    for (int i = 0; i < r->o.n; i++)
        if (r->b[i].state == B_RUN && r->o.stable_k > 0 && r->b[i].streak >= r->o.stable_k)
            end_branch(t, e, i, B_STOPPED, "stable");
    if (r->round < r->o.min_rounds || !n_running(r)) return;
    const char *ans[ORC_TTS_MAX_N];
    double agree, ent;
    current_answers(r, ans);
    orc_tts_certainty(ans, r->o.n, &agree, &ent);
    int sure = (r->o.stop_agree > 0 && agree >= r->o.stop_agree) ||
               (r->o.stop_entropy >= 0 && ent <= r->o.stop_entropy);
    if (!sure) return;
    r->early = 1;
    for (int i = 0; i < r->o.n; i++)
        if (r->b[i].state == B_RUN) end_branch(t, e, i, B_STOPPED, "certain");
}

/* ---------------------------------------------------------------- final */
static cJSON *vote_json(const char *answer, int votes, int of) {
    cJSON *v = cJSON_CreateObject();
    if (!v) return NULL;
    add_str_or_null(v, "answer", answer);
    cJSON_AddNumberToObject(v, "votes", votes);
    cJSON_AddNumberToObject(v, "of", of);
    return v;
}

static void emit_final(orc_task *t, const char *reason_finish) {
    reason *r = t->impl;
    if (r->finished) return;
    r->finished = 1;
    orc_tts_cand c[ORC_TTS_MAX_N];
    int n = r->o.n, votes = 0;
    for (int i = 0; i < n; i++) {
        branch *b = &r->b[i];
        const char *a = b->answer ? b->answer : b->probed;
        c[i] = (orc_tts_cand){ a, b->lp_sum, b->n_gen };
    }
    int v = orc_tts_vote(c, n, &votes), best = orc_tts_best(c, n);
    int pick = r->o.aggregate == ORC_TTS_BEST ? best : v;
    int show = pick >= 0 ? pick : 0;   /* no answer anywhere: branch 0's text */
    const char *finish = reason_finish ? reason_finish : r->early ? "stop" : r->b[show].finish;
    cJSON *m = orc_msg("answer", t->id);
    if (m) {
        cJSON_AddStringToObject(m, "text", eng_buf_str(&r->b[show].text));
        add_str_or_null(m, "answer", pick >= 0 ? c[pick].answer : NULL);
        cJSON_AddStringToObject(m, "finish", finish ? finish : "stop");
        cJSON_AddStringToObject(m, "method", r->o.aggregate == ORC_TTS_BEST ? "best" : "vote");
        cJSON_AddNumberToObject(m, "branch", pick);
        cJSON_AddBoolToObject(m, "early_stop", r->early);
        cJSON_AddItemToObject(m, "vote", vote_json(v >= 0 ? c[v].answer : NULL, votes, n));
        cJSON *bj = cJSON_CreateObject();
        if (bj) {
            add_str_or_null(bj, "answer", best >= 0 ? c[best].answer : NULL);
            cJSON_AddNumberToObject(bj, "branch", best);
            cJSON_AddNumberToObject(bj, "mean_logprob", best >= 0 && c[best].n_tokens ?
                                    c[best].logprob_sum / c[best].n_tokens : 0);
            cJSON_AddItemToObject(m, "best", bj);
        }
        emit(t, m);
    }
    double now = eng_now_s();
    long long toks = 0;
    int stopped = 0;
    cJSON *s = orc_msg("stats", t->id);
    if (!s) return;
    cJSON *bt = cJSON_AddArrayToObject(s, "branch_tokens");
    for (int i = 0; i < n; i++) {
        toks += r->b[i].n_gen;
        stopped += r->b[i].state == B_STOPPED;
        cJSON_AddItemToArray(bt, cJSON_CreateNumber(r->b[i].n_gen));
    }
    cJSON_AddNumberToObject(s, "prompt_tokens", r->n_prompt);
    cJSON_AddNumberToObject(s, "tokens", (double)toks);
    cJSON_AddNumberToObject(s, "n", n);
    cJSON_AddNumberToObject(s, "probes", (double)r->probes);
    cJSON_AddNumberToObject(s, "probe_rounds", r->round);
    cJSON_AddNumberToObject(s, "probe_tokens", (double)r->probe_tokens);
    cJSON_AddNumberToObject(s, "cue_tokens", (double)r->cue_tokens);
    cJSON_AddNumberToObject(s, "decoded_tokens", (double)(toks + r->probe_tokens));
    cJSON_AddNumberToObject(s, "stopped_branches", stopped);
    if (r->spec.mode != ENG_SPEC_OFF) {
        cJSON *sp = cJSON_AddObjectToObject(s, "spec");
        cJSON_AddNumberToObject(sp, "steps", (double)r->spec_steps);
        cJSON_AddNumberToObject(sp, "drafted", (double)r->spec_drafted);
        cJSON_AddNumberToObject(sp, "accepted", (double)r->spec_accepted);
    }
    cJSON_AddNumberToObject(s, "queue_ms", r->t_start > 0 ? (r->t_start - t->t_submit) * 1e3 : 0);
    cJSON_AddNumberToObject(s, "ttft_ms", r->t_first > 0 ? (r->t_first - t->t_submit) * 1e3 : -1);
    cJSON_AddNumberToObject(s, "decode_ms", r->t_first > 0 ? (now - r->t_first) * 1e3 : 0);
    cJSON_AddNumberToObject(s, "wall_ms", (now - t->t_submit) * 1e3);
    emit(t, s);
}

/* ----------------------------------------------------------- task hooks */
static int reason_begin(orc_task *t, eng_engine *e, eng_err *err) {
    reason *r = t->impl;
    if (!r->admitted) return admit(t, e, err);
    int T = r->o.probe_every, lead = 0;
    for (int i = 0; i < r->o.n; i++)
        if (r->b[i].state == B_RUN && r->b[i].n_gen > lead) lead = r->b[i].n_gen;
    if (T > 0 && !r->in_flight && lead >= r->next_probe) {
        r->next_probe = lead + T;   /* the next round: T tokens on, once this one is read */
        start_probes(r, e);
    }
    return ORC_RUNNING;
}

static int reason_end(orc_task *t, eng_engine *e, eng_err *err) {
    reason *r = t->impl;
    int had_probes = r->in_flight > 0, rc = ENG_OK;
    for (int i = 0; i < r->o.n && !rc; i++)
        if (r->b[i].state == B_RUN) rc = branch_step(t, e, i, err);
    for (int i = 0; i < r->o.n && !rc; i++)
        if (r->b[i].probe >= 0) rc = probe_step(t, e, i, err);
    if (rc) return -rc;
    if (had_probes && !r->in_flight) after_round(t, e);
    if (n_running(r)) return ORC_RUNNING;
    release(r, e);
    emit_final(t, NULL);
    return ORC_DONE;
}

static void reason_pause(orc_task *t, eng_engine *e, int paused) {
    reason *r = t->impl;
    for (int i = 0; i < r->o.n; i++) {
        if (r->b[i].seq >= 0) eng_seq_pause(e, r->b[i].seq, paused);
        if (r->b[i].probe >= 0) eng_seq_pause(e, r->b[i].probe, paused);
    }
}

static void reason_stop(orc_task *t, eng_engine *e, const char *why) {
    reason *r = t->impl;
    release(r, e);
    for (int i = 0; i < r->o.n; i++)
        if (r->b[i].state == B_RUN && r->admitted) {
            r->b[i].state = B_STOPPED;
            r->b[i].finish = why;
            set_str(&r->b[i].answer, dup_or_null(r->b[i].probed));
        }
    emit_final(t, why);
}

static void reason_destroy(orc_task *t) {
    reason *r = t->impl;
    orc_query_free(&r->q);
    for (int i = 0; i < ORC_TTS_MAX_N; i++) {
        free(r->b[i].text.p);
        free(r->b[i].ptext.p);
        free(r->b[i].probed);
        free(r->b[i].answer);
    }
    free(r->cue);
    free(r->system);
    free(r);
    free(t);
}

/* --------------------------------------------------------------- create */
static int check_opts(const orc_tts_opts *o, eng_err *err) {
    if (o->n < 1 || o->n > ORC_TTS_MAX_N)
        return eng_seterr(err, ENG_EINVAL, "reason: n must be from 1 to %d (got %d)", ORC_TTS_MAX_N, o->n);
    if (o->aggregate != ORC_TTS_VOTE && o->aggregate != ORC_TTS_BEST)
        return eng_seterr(err, ENG_EINVAL, "reason: unknown aggregation %d", o->aggregate);
    if (o->probe_every < 0 || o->min_rounds < 0 || o->stable_k < 0)
        return eng_seterr(err, ENG_EINVAL, "reason: negative probing parameter");
    if (o->probe_every > 0 && (o->probe_tokens < 1 || o->probe_tokens > 256))
        return eng_seterr(err, ENG_EINVAL, "reason: probe_tokens must be from 1 to 256 (got %d)",
                          o->probe_tokens);
    return ENG_OK;
}

static int encode_cue(reason *r, eng_err *err) {
    const char *cue = r->o.cue ? r->o.cue : ORC_TTS_PROBE_CUE;
    int rc = eng_tok_encode(tok_of(r), cue, strlen(cue), 0, &r->cue, &r->n_cue, err);
    if (!rc && r->n_cue == 0) rc = eng_seterr(err, ENG_EINVAL, "reason: the probe cue is empty");
    return rc;
}

int orc_task_reason_create(const orc_query *q, const eng_model *m, orc_sink sink,
                           const orc_tts_opts *opts, orc_task **out, eng_err *err) {
    if (!q || !m || !out || !sink.emit)
        return eng_seterr(err, ENG_EINVAL, "reason: missing query, model, sink or output");
    if (!q->messages && (!q->prompt || !*q->prompt))
        return eng_seterr(err, ENG_EINVAL, "reason: the query has no prompt");
    orc_tts_opts o;
    if (opts) o = *opts;
    else orc_tts_default_opts(&o);
    int rc = check_opts(&o, err);
    if (rc) return rc;
    orc_task *t = calloc(1, sizeof *t);
    reason *r = calloc(1, sizeof *r);
    if (!t || !r || orc_query_copy(&r->q, q)) {
        if (r) orc_query_free(&r->q);
        free(t);
        free(r);
        return eng_seterr(err, ENG_ENOMEM, "out of memory creating a query");
    }
    r->o = o;
    r->m = m;
    if (o.spec) r->spec = *o.spec;
    r->o.spec = NULL;
    if (r->q.max_tokens <= 0) r->q.max_tokens = 1024;
    for (int i = 0; i < ORC_TTS_MAX_N; i++) r->b[i].seq = r->b[i].probe = -1;
    t->impl = r;
    t->destroy = reason_destroy;
    if ((rc = encode_cue(r, err))) { t->destroy(t); return rc; }
    r->o.cue = NULL;   /* encoded; the caller's strings are not kept */
    if (o.system && !(r->o.system = r->system = strdup(o.system))) {
        t->destroy(t);
        return eng_seterr(err, ENG_ENOMEM, "out of memory creating a query");
    }
    snprintf(t->id, sizeof t->id, "%s", q->id);
    t->sink = sink;
    t->begin = reason_begin;
    t->end = reason_end;
    t->set_paused = reason_pause;
    t->stop = reason_stop;
    *out = t;
    return ENG_OK;
}
