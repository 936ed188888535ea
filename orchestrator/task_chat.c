/* task_chat.c — chat mode: one or more choices, streamed token by token
 * (rules in orc.h).
 *
 * Several choices share the prompt: it is added and prefilled once, each
 * choice forks from it with its own seed, and the root is dropped, so only
 * the choices hold the shared KV blocks.  Stop strings are matched on the
 * text as it streams: text that may still be the start of a stop string is
 * held back until it is or cannot be. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orc.h"

typedef struct choice {
    int seq;                 /* -1 before the start, -2 when done */
    int n_gen;
    eng_tok_stream ts;
    eng_buf text;            /* released text */
    eng_buf hold;            /* text that may be the start of a stop string */
    const char *finish;      /* NULL while running */
} choice;

typedef struct chat {
    orc_task *t;             /* the task this is the state of */
    const eng_model *m;
    int n;                   /* choices */
    choice *ch;
    int started, n_done;
    int *ids, n_ids;         /* the prompt, until admitted */
    int end_turn;            /* the chat template's end-of-turn token, or -1 */
    int n_prompt;
    double t_start, t_first;
} chat;

/* The template's end of turn ends a choice too: checkpoints whose config
 * names another end token would otherwise write past the turn. */
static int end_turn_token(const chat *c) {
    if (!c->t->q.messages) return -1;
    eng_chat *ct = NULL;
    if (eng_chat_create(c->m, &ct, NULL)) return -1;
    int id = eng_chat_end_token(ct);
    eng_chat_free(ct);
    return id;
}

static int add_seq(chat *c, eng_engine *e, int *seq, eng_err *err) {
    int rc = eng_seq_add(e, c->ids, c->n_ids, &c->t->q.samp, seq, err);
    if (!rc && c->t->q.spec) {   /* n-gram drafting: lossless, helps repetitive text */
        eng_spec_opts so = { .mode = ENG_SPEC_NGRAM, .adaptive = 1 };
        rc = eng_seq_spec_set(e, *seq, &so, err);
    }
    return rc;
}

static void drop_seqs(chat *c, eng_engine *e) {
    for (int i = 0; i < c->n; i++)
        if (c->ch[i].seq >= 0) { eng_seq_remove(e, c->ch[i].seq); c->ch[i].seq = -1; }
}

/* Scripted output (tests): every choice writes q.script, token by token. */
static int force_script(chat *c, eng_engine *e, eng_err *err) {
    int *ids = NULL, n = 0;
    int rc = eng_tok_encode(eng_model_tok(c->m), c->t->q.script, strlen(c->t->q.script), 1, &ids, &n, err);
    for (int i = 0; i < c->n && !rc && n; i++) rc = eng_seq_force(e, c->ch[i].seq, ids, n, err);
    free(ids);
    return rc;
}

/* All choices at once, or none (ORC_WAIT, or an error). */
static int admit(chat *c, eng_engine *e, eng_err *err) {
    int n = c->n_ids, others = eng_n_live(e) > 0;
    /* Admit only when the prompt and its next token, plus a block for each
     * choice, fit, unless nothing else runs. */
    int need = eng_blocks_for(e, n + 1) + 1 + c->n;
    if (eng_kv_free_blocks(e) < need && others) return ORC_WAIT;
    int rc, root = -1;
    /* The alternatives of a token need the logits of its step: the CUDA
     * backend keeps them only with keep_all_logits, which must not cover the
     * prompt (a vocabulary-sized row per position): prefill first. */
    int prefill = c->n > 1 || c->t->q.top_logprobs > 0;
    if (!prefill) {
        rc = add_seq(c, e, &c->ch[0].seq, err);
    } else if (!(rc = add_seq(c, e, &root, err)) && !(rc = eng_seq_prefill(e, root, err))) {
        for (int i = 0; i < c->n && !rc; i++) {
            eng_sampling s = c->t->q.samp;
            s.seed = c->t->q.samp.seed + (uint64_t)i;   /* choices of one query differ */
            rc = eng_seq_fork(e, root, &s, &c->ch[i].seq, err);
            if (!rc && c->t->q.top_logprobs > 0) rc = eng_seq_keep_all_logits(e, c->ch[i].seq, 1);
        }
    }
    if (root >= 0) eng_seq_remove(e, root);
    if (!rc && c->t->q.script) rc = force_script(c, e, err);
    if (rc) {
        drop_seqs(c, e);
        if (rc == ENG_EFULL && others) return ORC_WAIT;   /* sequence slots or KV: after the others */
        return rc;
    }
    free(c->ids);
    c->ids = NULL;
    c->n_prompt = n;
    c->started = 1;
    c->t_start = eng_now_s();
    return ORC_RUNNING;
}

static int chat_begin(orc_task *t, eng_engine *e, eng_err *err) {
    chat *c = t->impl;
    if (c->started) return ORC_RUNNING;
    int rc;
    if (!c->ids) {   /* once: a query that waits is not tokenised again every round */
        if ((rc = orc_encode_query(&c->t->q, c->m, &c->ids, &c->n_ids, err))) return rc;
        if ((rc = orc_fit_context(c->m, c->n_ids, &c->t->q.max_tokens, err))) return rc;
        c->end_turn = end_turn_token(c);
    }
    return admit(c, e, err);
}

/* ---------------------------------------------------------------- text */
/* The longest tail of s (n bytes) that is a proper start of a stop string. */
static size_t stop_prefix_tail(const orc_query *q, const char *s, size_t n) {
    size_t best = 0;
    for (int k = 0; k < q->n_stop; k++) {
        size_t L = strlen(q->stop[k]);
        for (size_t len = L - 1 < n ? L - 1 : n; len > best; len--)
            if (!memcmp(s + n - len, q->stop[k], len)) { best = len; break; }
    }
    return best;
}

/* Adds a token's text to the held text and releases what can no longer be
 * part of a stop string into out; 1 when a stop string was written. */
static int release(const orc_query *q, choice *ch, const char *piece, size_t len, eng_buf *out) {
    eng_buf_add(&ch->hold, piece, len);
    const char *h = eng_buf_str(&ch->hold);
    size_t n = ch->hold.n, cut = n;
    int stopped = 0;
    for (int k = 0; k < q->n_stop; k++) {
        const char *at = strstr(h, q->stop[k]);
        if (at && (size_t)(at - h) < cut) { cut = (size_t)(at - h); stopped = 1; }
    }
    if (!stopped) cut = n - stop_prefix_tail(q, h, n);
    eng_buf_add(out, h, cut);
    if (stopped) eng_buf_clear(&ch->hold);
    else {
        memmove(ch->hold.p, ch->hold.p + cut, n - cut);
        ch->hold.n = n - cut;
        if (ch->hold.p) ch->hold.p[ch->hold.n] = 0;
    }
    return stopped;
}

/* A token's own text as valid UTF-8 (a piece may hold part of a character:
 * its bytes become U+FFFD), for logprob entries. */
static void piece_text(const eng_tok *tok, int id, eng_buf *b) {
    int len = 0;
    const unsigned char *p = (const unsigned char *)eng_tok_piece(tok, id, &len);
    eng_buf_clear(b);
    eng_buf_add(b, "", 0);
    for (int i = 0; p && i < len;) {
        int k = p[i] < 0x80 ? 1 : (p[i] & 0xE0) == 0xC0 ? 2 : (p[i] & 0xF0) == 0xE0 ? 3
              : (p[i] & 0xF8) == 0xF0 ? 4 : 0;
        int ok = k > 0 && i + k <= len;
        for (int j = 1; ok && j < k; j++) ok = (p[i + j] & 0xC0) == 0x80;
        if (ok) { eng_buf_add(b, (const char *)p + i, (size_t)k); i += k; }
        else { eng_buf_adds(b, "\xEF\xBF\xBD"); i++; }
    }
}

/* The top_logprobs most likely tokens of a logits row, log-softmax at
 * temperature 1 (as eng_token.logprob). */
static cJSON *top_alternatives(chat *c, const float *row, eng_buf *tmp) {
    const eng_tok *tok = eng_model_tok(c->m);
    int V = eng_model_config(c->m)->vocab_size, k = c->t->q.top_logprobs;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) if (row[i] > mx) mx = row[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    float lse = mx + (float)log(sum);
    int best[ORC_MAX_TOP_LOGPROBS], nb = 0;
    for (int i = 0; i < V; i++) {   /* insertion into a short sorted list */
        if (nb == k && row[i] <= row[best[nb - 1]]) continue;
        int j = nb < k ? nb++ : nb - 1;
        while (j > 0 && row[best[j - 1]] < row[i]) { best[j] = best[j - 1]; j--; }
        best[j] = i;
    }
    cJSON *arr = cJSON_CreateArray();
    for (int j = 0; arr && j < nb; j++) {
        cJSON *o = cJSON_CreateObject();
        piece_text(tok, best[j], tmp);
        cJSON_AddNumberToObject(o, "token", best[j]);
        cJSON_AddStringToObject(o, "piece", eng_buf_str(tmp));
        cJSON_AddNumberToObject(o, "logprob", row[best[j]] - lse);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* ---------------------------------------------------------------- end */
static void emit_choice_end(orc_task *t, int i) {
    chat *c = t->impl;
    if (c->n < 2) return;
    cJSON *m = orc_msg("branch", t->id);
    cJSON_AddNumberToObject(m, "branch", i);
    cJSON_AddStringToObject(m, "state", "done");
    cJSON_AddStringToObject(m, "finish", c->ch[i].finish);
    cJSON_AddNumberToObject(m, "tokens", c->ch[i].n_gen);
    cJSON_AddStringToObject(m, "text", eng_buf_str(&c->ch[i].text));
    orc_task_emit(t, m);
}

static void emit_final(orc_task *t, const char *reason) {
    chat *c = t->impl;
    int tokens = 0;
    for (int i = 0; i < c->n; i++) tokens += c->ch[i].n_gen;
    cJSON *a = orc_msg("answer", t->id);
    cJSON_AddStringToObject(a, "text", eng_buf_str(&c->ch[0].text));
    cJSON_AddStringToObject(a, "finish", reason ? reason : c->ch[0].finish ? c->ch[0].finish : "stop");
    if (c->n > 1) {
        cJSON *arr = cJSON_AddArrayToObject(a, "choices");
        for (int i = 0; arr && i < c->n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "text", eng_buf_str(&c->ch[i].text));
            cJSON_AddStringToObject(o, "finish", reason ? reason : c->ch[i].finish ? c->ch[i].finish : "stop");
            cJSON_AddNumberToObject(o, "tokens", c->ch[i].n_gen);
            cJSON_AddItemToArray(arr, o);
        }
    }
    orc_task_emit(t, a);
    double now = eng_now_s();
    cJSON *s = orc_msg("stats", t->id);
    cJSON_AddNumberToObject(s, "prompt_tokens", c->n_prompt);
    cJSON_AddNumberToObject(s, "tokens", tokens);
    cJSON_AddNumberToObject(s, "queue_ms", c->t_start > 0 ? (c->t_start - t->t_submit) * 1e3 : 0);
    cJSON_AddNumberToObject(s, "ttft_ms", c->t_first > 0 ? (c->t_first - t->t_submit) * 1e3 : -1);
    cJSON_AddNumberToObject(s, "decode_ms", c->t_first > 0 ? (now - c->t_first) * 1e3 : 0);
    cJSON_AddNumberToObject(s, "wall_ms", (now - t->t_submit) * 1e3);
    orc_task_emit(t, s);
}

/* Ends choice i: unless a stop string ended it, what is held back is text
 * after all (bytes of an unfinished character become U+FFFD); the sequence
 * goes. */
static void end_choice(orc_task *t, eng_engine *e, int i, const char *finish, int at_stop_string,
                       eng_buf *out) {
    chat *c = t->impl;
    choice *ch = &c->ch[i];
    if (!at_stop_string) {
        char tail[16];
        int w = eng_tok_stream_put(eng_model_tok(c->m), &ch->ts, -1, 1, tail, sizeof tail);
        eng_buf_add(&ch->hold, tail, (size_t)w);
        eng_buf_add(out, ch->hold.p ? ch->hold.p : "", ch->hold.n);
    }
    eng_buf_clear(&ch->hold);
    ch->finish = finish;
    if (ch->seq >= 0) eng_seq_remove(e, ch->seq);
    ch->seq = -2;
    c->n_done++;
}

/* One generated token of choice i: its text (released past the stop-string
 * check) in a token message.  Returns 1 when the choice ended. */
static int take_token(orc_task *t, eng_engine *e, int i, const eng_token *tk_in, const float *row,
                      eng_err *err) {
    chat *c = t->impl;
    choice *ch = &c->ch[i];
    const eng_tok *tok = eng_model_tok(c->m);
    const eng_token tk_copy = *tk_in, *tk = &tk_copy;   /* engine memory goes with the sequence */
    if (!c->t_first) c->t_first = eng_now_s();
    ch->n_gen++;
    eng_buf out = {0}, tmp = {0};
    eng_buf_add(&out, "", 0);
    cJSON *alts = c->t->q.logprobs && c->t->q.top_logprobs > 0 && row ? top_alternatives(c, row, &tmp) : NULL;
    const char *finish = NULL;
    if (orc_is_eos(eng_model_config(c->m), tk->id) || tk->id == c->end_turn) {
        finish = "stop";
        end_choice(t, e, i, finish, 0, &out);
    } else {
        char buf[1024];
        int w = eng_tok_stream_put(tok, &ch->ts, tk->id, 1, buf, sizeof buf);
        int at_stop = 0;
        if (c->t->q.n_stop) at_stop = release(&c->t->q, ch, buf, (size_t)w, &out);
        else eng_buf_add(&out, buf, (size_t)w);
        finish = at_stop ? "stop" : ch->n_gen >= c->t->q.max_tokens ? "length" : NULL;
        if (finish) end_choice(t, e, i, finish, at_stop, &out);
    }
    eng_buf_add(&ch->text, out.p, out.n);
    cJSON *m = orc_msg("token", t->id);
    if (c->n > 1) cJSON_AddNumberToObject(m, "branch", i);
    cJSON_AddStringToObject(m, "text", eng_buf_str(&out));
    cJSON_AddNumberToObject(m, "token", tk->id);
    if (tk->logprob <= 0) cJSON_AddNumberToObject(m, "logprob", tk->logprob);
    if (c->t->q.logprobs) {
        piece_text(tok, tk->id, &tmp);
        cJSON_AddStringToObject(m, "piece", eng_buf_str(&tmp));
        if (alts) cJSON_AddItemToObject(m, "top_logprobs", alts);
    }
    orc_task_emit(t, m);
    if (finish) emit_choice_end(t, i);
    int oom = out.oom || ch->text.oom || ch->hold.oom;
    eng_buf_free(&out);
    eng_buf_free(&tmp);
    if (oom) return -eng_seterr(err, ENG_ENOMEM, "out of memory");
    return finish != NULL;
}

static int chat_end(orc_task *t, eng_engine *e, eng_err *err) {
    chat *c = t->impl;
    for (int i = 0; i < c->n; i++) {
        choice *ch = &c->ch[i];
        const eng_token *info;
        const float *logits;
        int n, rows = 0;
        if (ch->seq < 0) continue;
        if (eng_seq_new_info(e, ch->seq, &info, &n)) return -eng_seterr(err, ENG_EINVAL, "lost sequence");
        logits = c->t->q.top_logprobs > 0 ? eng_seq_logits(e, ch->seq, &rows) : NULL;
        int V = eng_model_config(c->m)->vocab_size;
        /* A speculative step may bring several tokens: one logits row each. */
        for (int j = 0; j < n && ch->seq >= 0; j++) {
            const float *row = logits && rows >= n ? logits + (size_t)(rows - n + j) * V : NULL;
            int r = take_token(t, e, i, &info[j], row, err);
            if (r < 0) return r;
        }
    }
    if (c->n_done < c->n) return ORC_RUNNING;
    emit_final(t, NULL);
    return ORC_DONE;
}

static void chat_pause(orc_task *t, eng_engine *e, int paused) {
    chat *c = t->impl;
    for (int i = 0; i < c->n; i++)
        if (c->ch[i].seq >= 0) eng_seq_pause(e, c->ch[i].seq, paused);
}

static void chat_stop(orc_task *t, eng_engine *e, const char *reason) {
    chat *c = t->impl;
    emit_final(t, reason);
    drop_seqs(c, e);
}

static void chat_free(void *impl) {
    chat *c = impl;
    if (!c) return;
    for (int i = 0; c->ch && i < c->n; i++) {
        eng_buf_free(&c->ch[i].text);
        eng_buf_free(&c->ch[i].hold);
    }
    free(c->ch);
    free(c->ids);
    free(c);
}

static const orc_task_ops chat_ops = { chat_begin, chat_end, chat_pause, chat_stop, chat_free };

int orc_task_chat_create(const orc_query *q, const eng_model *m, orc_sink sink,
                         orc_task **out, eng_err *err) {
    if (q->n < 0 || q->n > ORC_MAX_CHOICES || q->n_stop < 0 || q->n_stop > ORC_MAX_STOP ||
        q->top_logprobs < 0 || q->top_logprobs > ORC_MAX_TOP_LOGPROBS)
        return eng_seterr(err, ENG_EINVAL, "chat: n must be 1 to %d, stop at most %d strings, "
                          "top_logprobs 0 to %d", ORC_MAX_CHOICES, ORC_MAX_STOP, ORC_MAX_TOP_LOGPROBS);
    for (int i = 0; i < q->n_stop; i++)
        if (!q->stop[i] || !*q->stop[i]) return eng_seterr(err, ENG_EINVAL, "chat: a stop string is empty");
    chat *c = calloc(1, sizeof *c);
    int n = q->n > 0 ? q->n : 1;
    if (!c || !(c->ch = calloc((size_t)n, sizeof *c->ch))) {
        free(c);
        return eng_seterr(err, ENG_ENOMEM, "out of memory creating a query");
    }
    c->m = m;
    c->n = n;
    c->end_turn = -1;
    for (int i = 0; i < n; i++) c->ch[i].seq = -1;
    int rc = orc_task_new(q, sink, &chat_ops, c, out, err);
    if (!rc) c->t = *out;
    return rc;
}
