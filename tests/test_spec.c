/* test_spec.c — speculative decoding (eng.h, engine/spec.c) on the CPU with
 * the tiny fixtures:
 *  - greedy output with speculation is token for token plain greedy output,
 *    for n-gram and draft-model drafting (the model itself, its f16 copy, a
 *    copy with noisy weights), several k and adaptive k, many sequences in
 *    one batch, forks sharing a prompt;
 *  - sampled outputs follow the target distribution: the first two tokens
 *    of many draws against exact probabilities from logits (chi-square),
 *    for both drafters, temperature 1 and 0.7 with top-k;
 *  - rejected drafts leave the KV cache as a run that never drafted (logits
 *    bit for bit, free blocks), also for a fork sharing blocks;
 *  - adaptive k falls to 0 without acceptance and grows with it, follows the
 *    cost model, and statistics are exact on a scripted drafter;
 *  - forced tokens, pause, append, keep_all_logits, a short KV pool, the end
 *    of the context; bad arguments. */
#include "t.h"
#include "t_util.h"
#include <stdint.h>
#include <cJSON.h>
#include "engine_int.h"

#define N_GEN 24
enum { MAXP = 96 };

static eng_model *m_qwen, *m_llama, *m_qwen16, *m_qwen_noisy, *m_llama_noisy;

typedef struct prompts { int n; int *ids[MAXP]; int len[MAXP]; } prompts;
static prompts p_qwen, p_llama;

/* ------------------------------------------------------------ fixtures */
static uint64_t lcg = 2024;
static double urand(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(lcg >> 11) + 0.5) * 0x1.0p-53;
}
static double nrand(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }

static eng_model *load(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/%s", name);
    eng_model *m = NULL;
    eng_err err = { 0 };
    if (eng_model_load(path, &m, &err)) printf("  %s: %s\n", path, err.msg);
    return m;
}

/* Adds Gaussian noise of eps x the matrix's RMS to every linear weight. */
static void perturb(eng_model *m, double eps) {
    const eng_config *c = &m->cfg;
    size_t q = (size_t)c->n_heads * c->head_dim, kv = (size_t)c->n_kv_heads * c->head_dim;
    size_t h = (size_t)c->hidden, in = (size_t)c->intermediate;
    for (int l = 0; l < c->n_layers; l++) {
        eng_layer_w *w = &m->layers[l];
        float *mats[7] = { w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down };
        size_t sizes[7] = { q * h, kv * h, kv * h, h * q, in * h, in * h, h * in };
        for (int i = 0; i < 7; i++) {
            double ss = 0;
            for (size_t j = 0; j < sizes[i]; j++) ss += (double)mats[i][j] * mats[i][j];
            double sd = eps * sqrt(ss / (double)sizes[i]);
            for (size_t j = 0; j < sizes[i]; j++) mats[i][j] += (float)(sd * nrand());
        }
    }
}

static char *slurp(const char *path) {
    char *b = NULL;
    eng_read_file(path, 0, &b, NULL, NULL);
    return b;
}

static void add_prompt(prompts *p, const int *ids, int n) {
    if (p->n == MAXP || n <= 0) return;
    p->ids[p->n] = malloc(sizeof(int) * (size_t)n);
    memcpy(p->ids[p->n], ids, sizeof(int) * (size_t)n);
    p->len[p->n++] = n;
}

static void add_text(prompts *p, const eng_model *m, const char *text) {
    int *ids = NULL, n = 0;
    eng_err err;
    if (!eng_tok_encode(eng_model_tok(m), text, strlen(text), 0, &ids, &n, &err))
        add_prompt(p, ids, n > 40 ? 40 : n);
    free(ids);
}

/* Strings of tok_strings.json (every third, as many scripts as possible),
 * then repetitive ones, so that n-gram drafts get accepted. */
static void make_prompts(prompts *p, const eng_model *m) {
    char *js = slurp("tests/fixtures/tok_strings.json");
    cJSON *root = js ? cJSON_Parse(js) : NULL, *it;
    int i = 0;
    cJSON_ArrayForEach(it, root) {
        if (cJSON_IsString(it) && it->valuestring[0] && i++ % 3 == 0 && p->n < 64)
            add_text(p, m, it->valuestring);
    }
    cJSON_Delete(root);
    free(js);
    static const char *rep[] = {
        "the cat sat on the mat. the cat sat on the mat. the cat sat on the",
        "1 2 3 4 1 2 3 4 1 2 3 4 1 2 3",
        "abc abc abc abc abc abc abc",
        "To be or not to be, to be or not to be, to be or",
        "x = x + 1; x = x + 1; x = x + 1; x = x +",
        "la la la la la la la la la la la la",
        "def f(x): return f(x)\ndef f(x): return f(x)\ndef f(",
        "A B C D E F G A B C D E F G A B C",
    };
    for (size_t j = 0; j < sizeof rep / sizeof *rep; j++) add_text(p, m, rep[j]);
}

static int load_all(void) {
    if (m_qwen) return 1;
    m_qwen = load("tiny-qwen2");
    m_llama = load("tiny-llama");
    m_qwen16 = load("tiny-qwen2-f16");
    m_qwen_noisy = load("tiny-qwen2");
    m_llama_noisy = load("tiny-llama");
    if (!m_qwen || !m_llama || !m_qwen16 || !m_qwen_noisy || !m_llama_noisy) return 0;
    perturb(m_qwen_noisy, 0.25);
    perturb(m_llama_noisy, 0.05);
    make_prompts(&p_qwen, m_qwen);
    make_prompts(&p_llama, m_llama);
    return 1;
}

static eng_engine *mk(eng_model *m, int block_size, int n_blocks, int max_seqs) {
    eng_opts o = { .backend = ENG_BACKEND_CPU, .n_threads = 2, .block_size = block_size,
                   .n_blocks = n_blocks, .max_seqs = max_seqs };
    eng_engine *e = NULL;
    eng_err err = { 0 };
    if (eng_create(m, &o, &e, &err)) printf("  eng_create: %s\n", err.msg);
    return e;
}

static int set_spec(eng_engine *e, int s, const eng_spec_opts *o) {
    eng_err err = { 0 };
    int rc = eng_seq_spec_set(e, s, o, &err);
    if (rc) printf("  eng_seq_spec_set: %s\n", err.msg);
    return rc;
}

/* ---------------------------------------------------- greedy reference */
/* Plain greedy continuations (n_gen tokens) of every prompt, batched. */
static int **plain_greedy(eng_model *m, const prompts *p, int n_gen) {
    eng_engine *e = mk(m, 16, 0, 128);
    int **out = calloc((size_t)p->n, sizeof *out), s[MAXP];
    for (int i = 0; i < p->n; i++) s[i] = t_add(e, p->ids[i], p->len[i], NULL);
    for (int k = 0; k < n_gen; k++) t_step(e);
    for (int i = 0; i < p->n; i++) {
        const int *ids;
        int n;
        eng_seq_tokens(e, s[i], &ids, &n);
        out[i] = malloc(sizeof(int) * (size_t)n_gen);
        memcpy(out[i], ids + p->len[i], sizeof(int) * (size_t)n_gen);
    }
    eng_destroy(e);
    return out;
}

static void free_ref(int **r, int n) {
    for (int i = 0; i < n; i++) free(r[i]);
    free(r);
}

typedef struct totals { int64_t drafted, accepted, steps, multi, seqs; double secs; } totals;

/* Steps e until every sequence in ids[0..n) holds want[i] tokens, pausing
 * each when it does; checks what each step reports as new tokens. */
static void run_to(eng_engine *e, const int *ids, const int *want, int n, totals *t) {
    for (int guard = 0; guard < 1000; guard++) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            const int *tk;
            int nt;
            eng_seq_tokens(e, ids[i], &tk, &nt);
            if (nt >= want[i]) eng_seq_pause(e, ids[i], 1);
            else left++;
        }
        if (!left || t_step(e)) break;
        for (int i = 0; i < n; i++) {
            const int *nw, *tk;
            int nn, nt;
            eng_token last;
            const eng_token *info;
            int ni;
            eng_seq_new_tokens(e, ids[i], &nw, &nn);
            eng_seq_tokens(e, ids[i], &tk, &nt);
            eng_seq_new_info(e, ids[i], &info, &ni);
            if (!nn) continue;
            T_CHECKF(nw + nn == tk + nt && ni == nn && eng_seq_last(e, ids[i], &last) == ENG_OK &&
                     last.id == nw[nn - 1] && info[nn - 1].id == last.id,
                     "new tokens of sequence %d are not the end of its tokens", ids[i]);
            if (t && nn > 1) t->multi++;
        }
    }
    for (int i = 0; t && i < n; i++) {
        eng_spec_stats st;
        eng_seq_spec_stats(e, ids[i], &st);
        t->drafted += st.drafted;
        t->accepted += st.accepted;
        t->steps += st.steps;
        t->seqs++;
    }
}

static const eng_spec_cost *cost_for_next;   /* spec_greedy's cost model (NULL: measured) */

/* Every prompt (and `forks` greedy forks of each, made after a prefill)
 * with speculation o, in one engine: their first N_GEN tokens must be
 * ref's.  Returns the number of sequences that differ. */
static int spec_greedy(eng_model *m, const prompts *p, int **ref, const eng_spec_opts *o,
                       int forks, totals *t, const char *what) {
    eng_engine *e = mk(m, 8, 0, 256);
    if (!e) return p->n;
    eng_spec_set_cost(e, cost_for_next);
    int ids[256] = {0}, want[256] = {0}, of[256], n = 0;   /* {0}: gcc cannot see run_to reads only n */
    eng_err err = { 0 };
    for (int i = 0; i < p->n; i++) {
        int s = t_add(e, p->ids[i], p->len[i], NULL);
        if (o) set_spec(e, s, o);
        of[n] = i;
        want[n] = p->len[i] + N_GEN;
        ids[n++] = s;
        if (forks && eng_seq_prefill(e, s, &err)) printf("  prefill: %s\n", err.msg);
        for (int f = 0; f < forks && n < 256; f++) {
            int c = -1;
            if (eng_seq_fork(e, s, NULL, &c, &err)) { printf("  fork: %s\n", err.msg); continue; }
            of[n] = i;
            want[n] = p->len[i] + N_GEN;
            ids[n++] = c;
        }
    }
    double t0 = eng_now_s();
    run_to(e, ids, want, n, t);
    if (t) t->secs = eng_now_s() - t0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const int *tk;
        int nt;
        eng_seq_tokens(e, ids[i], &tk, &nt);
        if (nt < want[i] || memcmp(tk + p->len[of[i]], ref[of[i]], sizeof(int) * N_GEN)) {
            if (!bad) {
                int at = 0;
                const int *got = tk + p->len[of[i]];
                while (at < N_GEN && p->len[of[i]] + at < nt && got[at] == ref[of[i]][at]) at++;
                printf("  %s: prompt %d (sequence %d) differs at generated token %d\n", what,
                       of[i], ids[i], at);
            }
            bad++;
        }
    }
    eng_destroy(e);
    return bad;
}

static void report(const char *what, const totals *t, int bad) {
    printf("  %-34s %3lld seqs, %5lld drafted, %5lld accepted (%.0f%%), %lld multi-token steps, "
           "%d differ, %.2f s\n", what, (long long)t->seqs, (long long)t->drafted,
           (long long)t->accepted,
           t->drafted ? 100.0 * t->accepted / t->drafted : 0.0, (long long)t->multi, bad, t->secs);
}

/* -------------------------------------------------------- greedy tests */
static const eng_spec_cost gpu_like = { 1.0, 0.002, 0.05, 0.001 };   /* rows nearly free */

/* One speculative configuration of the greedy tests. */
typedef struct gcfg { int mode, k, adaptive, n, forks, measured; } gcfg;

static void greedy_cfg(eng_model *m, eng_model *draft, const prompts *p, int **ref, const gcfg *c,
                       const char *name, int all_accepted) {
    eng_spec_opts o = { .mode = c->mode, .k = c->k, .adaptive = c->adaptive, .ngram_n = c->n,
                        .draft_model = draft };
    totals t = { 0 };
    char what[96];
    snprintf(what, sizeof what, "%s %s k=%d%s%s forks=%d", name,
             c->mode == ENG_SPEC_NGRAM ? "ngram" : "draft", c->k, c->adaptive ? " adaptive" : "",
             c->measured ? " measured" : "", c->forks);
    cost_for_next = c->measured ? NULL : &gpu_like;
    int bad = spec_greedy(m, p, ref, &o, c->forks, &t, what);
    report(what, &t, bad);
    T_CHECKF(bad == 0, "%s: %d sequences differ from plain greedy", what, bad);
    if (c->measured) return;   /* the CPU may rightly decide not to speculate */
    T_CHECKF(t.accepted > 50 && t.multi > 20, "%s: only %lld drafts accepted", what,
             (long long)t.accepted);
    if (all_accepted) T_CHECKF(t.accepted == t.drafted, "%s: %lld of %lld accepted", what,
                               (long long)t.accepted, (long long)t.drafted);
    else T_CHECK(t.accepted < t.drafted);   /* rejections were exercised too */
}

static void test_greedy_ngram(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    printf("  %d qwen2 prompts, %d llama prompts, %d tokens each\n", p_qwen.n, p_llama.n, N_GEN);
    T_CHECK(p_qwen.n >= 50 && p_llama.n >= 50);
    static const gcfg cf[] = {
        { ENG_SPEC_NGRAM, 1, 0, 3, 0, 0 }, { ENG_SPEC_NGRAM, 3, 0, 3, 0, 0 },
        { ENG_SPEC_NGRAM, 6, 0, 2, 0, 0 }, { ENG_SPEC_NGRAM, 0, 1, 3, 0, 0 },
        { ENG_SPEC_NGRAM, 4, 0, 3, 2, 0 }, { ENG_SPEC_NGRAM, 0, 1, 1, 2, 1 },
    };
    int **ref = plain_greedy(m_llama, &p_llama, N_GEN);
    for (size_t i = 0; i < sizeof cf / sizeof *cf; i++)
        greedy_cfg(m_llama, NULL, &p_llama, ref, &cf[i], "llama", 0);
    free_ref(ref, p_llama.n);
    ref = plain_greedy(m_qwen, &p_qwen, N_GEN);
    for (size_t i = 0; i < sizeof cf / sizeof *cf; i += 2)
        greedy_cfg(m_qwen, NULL, &p_qwen, ref, &cf[i], "qwen2", 0);
    free_ref(ref, p_qwen.n);
}

static void test_greedy_draft(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    static const gcfg same[] = {
        { ENG_SPEC_DRAFT, 3, 0, 0, 0, 0 }, { ENG_SPEC_DRAFT, 0, 1, 0, 2, 0 },
    };
    static const gcfg noisy[] = {
        { ENG_SPEC_DRAFT, 2, 0, 0, 0, 0 }, { ENG_SPEC_DRAFT, 5, 0, 0, 0, 0 },
        { ENG_SPEC_DRAFT, 0, 1, 0, 0, 0 }, { ENG_SPEC_DRAFT, 3, 0, 0, 2, 0 },
        { ENG_SPEC_DRAFT, 0, 1, 0, 1, 1 },
    };
    int **ref = plain_greedy(m_llama, &p_llama, N_GEN);
    for (int i = 0; i < 2; i++)
        greedy_cfg(m_llama, m_llama, &p_llama, ref, &same[i], "llama/llama", 1);
    for (int i = 0; i < 5; i++)
        greedy_cfg(m_llama, m_llama_noisy, &p_llama, ref, &noisy[i], "llama/noisy", 0);
    free_ref(ref, p_llama.n);
    ref = plain_greedy(m_qwen, &p_qwen, N_GEN);
    greedy_cfg(m_qwen, m_qwen16, &p_qwen, ref, &same[0], "qwen2/f16", 1);
    for (int i = 0; i < 5; i += 2)
        greedy_cfg(m_qwen, m_qwen_noisy, &p_qwen, ref, &noisy[i], "qwen2/noisy", 0);
    free_ref(ref, p_qwen.n);
}

/* ------------------------------------------------------ distributions */
/* softmax(l / T) in double, then top-k, then top-p, renormalised: the
 * settings' distribution computed directly (a full sort). */
typedef struct pr { double p; float l; int id; } pr;
static int cmp_logit(const void *a, const void *b) {
    const pr *x = a, *y = b;
    if (x->l != y->l) return x->l > y->l ? -1 : 1;
    return x->id - y->id;
}
static int cmp_prob(const void *a, const void *b) {
    const pr *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}
static void ref_probs(const float *l, int V, const eng_sampling *s, double *out) {
    pr *c = malloc(sizeof *c * (size_t)V);
    for (int i = 0; i < V; i++) { c[i].l = l[i] == l[i] ? l[i] : -INFINITY; c[i].id = i; }
    qsort(c, (size_t)V, sizeof *c, cmp_logit);
    for (int i = 0; i < V; i++) out[i] = 0;
    if (!(s->temperature > 0) || !isfinite(c[0].l)) { out[c[0].id] = 1; free(c); return; }
    int keep = s->top_k > 0 && s->top_k < V ? s->top_k : V;
    double tot = 0;
    for (int i = 0; i < keep; i++) tot += c[i].p = exp(((double)c[i].l - c[0].l) / s->temperature);
    if (s->top_p > 0 && s->top_p < 1) {
        qsort(c, (size_t)keep, sizeof *c, cmp_prob);
        double cum = 0;
        for (int i = 0; i < keep; i++) {
            cum += c[i].p;
            if (cum >= s->top_p * tot) { keep = i + 1; break; }
        }
        tot = 0;
        for (int i = 0; i < keep; i++) tot += c[i].p;
    }
    for (int i = 0; i < keep; i++) out[c[i].id] = c[i].p / tot;
    free(c);
}

/* Chi-square critical value for df degrees of freedom at about p = 5e-4
 * (Wilson-Hilferty). */
static double chi2_bound(int df) {
    double a = 2.0 / (9.0 * df), z = 3.29;
    return df * pow(1 - a + z * sqrt(a), 3);
}

static void test_probs(void) {
    enum { V = 600 };
    float *l = malloc(sizeof(float) * V), *p = malloc(sizeof(float) * V);
    double *want = malloc(sizeof(double) * V);
    static const eng_sampling cf[] = {
        { 1.0f, 0, 0, 0 }, { 0.7f, 20, 0, 0 }, { 1.3f, 0, 0.9f, 0 }, { 0.8f, 50, 0.8f, 0 },
        { 0, 0, 0, 0 }, { 2.0f, 1, 0, 0 }, { 0.5f, 0, 0.3f, 0 }, { 1.0f, 600, 1.0f, 0 },
    };
    double worst = 0;
    for (int trial = 0; trial < 40; trial++) {
        for (int i = 0; i < V; i++) l[i] = (float)(nrand() * (1 + trial % 4));
        if (trial % 5 == 4) { l[3] = NAN; l[7] = -INFINITY; l[11] = l[12]; }   /* odd rows */
        for (size_t c = 0; c < sizeof cf / sizeof *cf; c++) {
            T_CHECK(eng_spec_probs(l, V, &cf[c], p) == ENG_OK);
            ref_probs(l, V, &cf[c], want);
            for (int i = 0; i < V; i++) {
                double d = fabs(p[i] - want[i]);
                if (d > worst) worst = d;
            }
        }
    }
    printf("  eng_spec_probs against a direct computation: worst difference %.2e\n", worst);
    T_CHECK(worst < 1e-5);
    /* and it is what eng_sample draws from */
    enum { W = 40, N = 40000 };
    int count[W] = { 0 };
    for (int i = 0; i < W; i++) l[i] = (float)(nrand() * 1.5);
    eng_sampling s = { 0.7f, 12, 0.9f, 5 };
    uint64_t rng = 77;
    for (int i = 0; i < N; i++) {
        eng_token t = eng_sample(l, W, &s, &rng);
        if (t.id >= 0 && t.id < W) count[t.id]++;
    }
    eng_spec_probs(l, W, &s, p);
    double chi = 0;
    int df = -1, outside = 0;
    for (int i = 0; i < W; i++) {
        if (p[i] > 0) { chi += (count[i] - N * p[i]) * (count[i] - N * p[i]) / (N * p[i]); df++; }
        else outside += count[i];
    }
    printf("  eng_sample against eng_spec_probs: chi2 %.1f (df %d, bound %.1f)\n", chi, df,
           chi2_bound(df));
    T_CHECK(outside == 0 && chi < chi2_bound(df));
    T_CHECK(eng_spec_probs(NULL, V, &s, p) == ENG_EINVAL);
    T_CHECK(eng_spec_probs(l, 0, &s, p) == ENG_EINVAL);
    free(l);
    free(p);
    free(want);
}

/* At the nucleus' edge: token 0's logit is a hair below the others' but its
 * weight rounds to theirs, so whether it or token 512 ends the nucleus
 * depends on how the set is built.  Verification is lossless only if
 * eng_spec_probs builds the set eng_sample draws from. */
static void test_probs_edge(void) {
    enum { E = 1024, N = 4000 };
    static float l[E], p[E];
    l[0] = -1e-9f;
    for (int i = 1; i < E; i++) l[i] = 0;
    eng_sampling s = { 1.0f, 0, 0.5f, 0 };
    T_CHECK(eng_spec_probs(l, E, &s, p) == ENG_OK);
    int kept = 0, outside = 0;
    for (int i = 0; i < E; i++) kept += p[i] > 0;
    uint64_t rng = 5;
    for (int i = 0; i < N; i++) {
        int id = eng_sample(l, E, &s, &rng).id;
        outside += !(id >= 0 && id < E && p[id] > 0);
    }
    printf("  %d tokens kept; %d of %d draws outside them\n", kept, outside, N);
    T_CHECK(kept == E / 2 && outside == 0);
}

/* ---------------------------------------------------- scripted drafter */
/* Proposes the known greedy continuation with only its first right[call]
 * tokens right (cycling through right[]). */
typedef struct script {
    const int *ref;     /* ref[i]: greedy token at position base + i */
    int base, n_ref, vocab;
    const int *right;
    int n_right, calls, accepted_expected;
    int right_after;    /* > 0: every draft is right from this many tokens on */
} script;

static script mkscript(const int *ref, int base, int n_ref, int vocab, const int *right,
                       int n_right) {
    script s = { .ref = ref, .base = base, .n_ref = n_ref, .vocab = vocab, .right = right,
                 .n_right = n_right };
    return s;
}

static int scripted(void *user, int seq, const int *tokens, int n, int k, int *out) {
    (void)seq; (void)tokens;
    script *s = user;
    int r = s->right[s->calls++ % s->n_right];
    if (s->right_after && n >= s->right_after) r = k;
    for (int i = 0; i < k; i++) {
        int at = n - s->base + i, t = at >= 0 && at < s->n_ref ? s->ref[at] : 0;
        out[i] = i < r ? t : (t + 1 + i) % s->vocab;
    }
    s->accepted_expected += r < k ? r : k;
    return k;
}

/* ------------------------------------------------------------- rollback */
enum { RB_GEN = 48, RB_BLOCKS = 64 };

typedef struct plain_run {
    float *logits;     /* [pos][vocab]: the row of position pos */
    int free_at[1100]; /* free blocks once n_cached = i */
    int *tok, n_tok;
} plain_run;

/* One prompt alone, plain, block size 4: logits per position and free
 * blocks per cached length. */
static void run_plain(eng_model *m, const int *ids, int n, plain_run *r) {
    int V = m->cfg.vocab_size;
    eng_engine *e = mk(m, 4, RB_BLOCKS, 8);
    r->logits = calloc((size_t)(n + RB_GEN) * V, sizeof(float));
    int s = t_add(e, ids, n, NULL);
    for (int k = 0; k < RB_GEN; k++) {
        t_step(e);
        memcpy(r->logits + (size_t)(n - 1 + k) * V, eng_seq_logits(e, s, NULL), sizeof(float) * V);
        r->free_at[n + k] = eng_kv_free_blocks(e);
    }
    const int *tk;
    eng_seq_tokens(e, s, &tk, &r->n_tok);
    r->tok = malloc(sizeof(int) * (size_t)r->n_tok);
    memcpy(r->tok, tk, sizeof(int) * (size_t)r->n_tok);
    eng_destroy(e);
}

/* After a step of seq: each new token's logits row against the plain run,
 * bit for bit; returns rows that differ. */
static int rows_differ(eng_engine *e, int s, const plain_run *r, int V) {
    const int *nw;
    int nn, rows = 0, bad = 0;
    eng_seq_new_tokens(e, s, &nw, &nn);
    const int *tk;
    int nt;
    eng_seq_tokens(e, s, &tk, &nt);
    const float *lg = eng_seq_logits(e, s, &rows);
    if (!lg || rows != nn) return nn ? nn : 1;
    int at = nt - nn;   /* position of the first new token */
    for (int i = 0; i < nn; i++)
        bad += memcmp(lg + (size_t)i * V, r->logits + (size_t)(at + i - 1) * V,
                      sizeof(float) * V) != 0;
    return bad;
}

static void test_rollback(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    eng_model *m = m_llama;
    int V = m->cfg.vocab_size;
    const int *prompt = p_llama.ids[5], n = p_llama.len[5];
    plain_run pr = { 0 };
    run_plain(m, prompt, n, &pr);
    static const int right[] = { 0, 3, 1, 4, 2, 0, 0, 4, 2 };
    script sc = mkscript(pr.tok + n, n, pr.n_tok - n, V, right, 9);
    eng_spec_opts o = { .mode = ENG_SPEC_CUSTOM, .k = 4, .propose = scripted, .user = &sc };

    /* alone: every step's rows and free blocks as the plain run's */
    eng_engine *e = mk(m, 4, RB_BLOCKS, 8);
    int s = t_add(e, prompt, n, NULL), steps = 0, bad_rows = 0, bad_free = 0;
    set_spec(e, s, &o);
    const int *tk;
    int nt = n;
    while (nt < n + RB_GEN - 4) {
        if (t_step(e)) break;
        steps++;
        bad_rows += rows_differ(e, s, &pr, V);
        eng_seq_tokens(e, s, &tk, &nt);
        bad_free += eng_kv_free_blocks(e) != pr.free_at[nt - 1];
    }
    T_CHECKF(bad_rows == 0 && bad_free == 0, "%d rows differ, %d steps with other free counts",
             bad_rows, bad_free);
    T_CHECK(!memcmp(tk, pr.tok, sizeof(int) * (size_t)nt));
    eng_spec_stats st;
    T_CHECK(eng_seq_spec_stats(e, s, &st) == ENG_OK);
    printf("  %d steps: %lld drafted, %lld accepted (script: %d), %lld emitted, %d tokens\n",
           steps, (long long)st.drafted, (long long)st.accepted, sc.accepted_expected,
           (long long)st.emitted, nt - n);
    T_CHECK(st.steps == steps && st.drafted == 4 * steps && sc.calls == steps);
    T_CHECK(st.accepted == sc.accepted_expected && st.emitted == nt - n);
    T_CHECK(fabs(st.accept_rate - (double)st.accepted / st.drafted) < 1e-12);
    T_CHECK(fabs(st.mean_accepted - (double)st.accepted / steps) < 1e-12);
    eng_destroy(e);

    /* a fork that shares the prompt's blocks speculates; its parent runs plain */
    e = mk(m, 4, RB_BLOCKS, 8);
    eng_err err;
    int par = t_add(e, prompt, n, NULL), ch = -1;
    T_CHECK(eng_seq_prefill(e, par, &err) == ENG_OK);
    T_CHECK(eng_seq_fork(e, par, NULL, &ch, &err) == ENG_OK);
    sc.calls = 0;
    set_spec(e, ch, &o);
    int pn = n, cn = n;
    bad_rows = 0;
    while (cn < n + RB_GEN - 4 && pn < n + RB_GEN - 4) {
        if (t_step(e)) break;
        bad_rows += rows_differ(e, par, &pr, V) + rows_differ(e, ch, &pr, V);
        eng_seq_tokens(e, par, &tk, &pn);
        eng_seq_tokens(e, ch, &tk, &cn);
    }
    T_CHECKF(bad_rows == 0, "%d rows of parent or fork differ from the plain run", bad_rows);
    T_CHECK(!memcmp(tk, pr.tok, sizeof(int) * (size_t)cn));
    T_CHECK(eng_seq_remove(e, ch) == ENG_OK);
    T_CHECKF(eng_kv_free_blocks(e) == pr.free_at[pn - 1], "after the fork: %d free, plain %d",
             eng_kv_free_blocks(e), pr.free_at[pn - 1]);
    T_CHECK(eng_seq_remove(e, par) == ENG_OK && eng_kv_free_blocks(e) == RB_BLOCKS);
    eng_destroy(e);
    free(pr.logits);
    free(pr.tok);
}

/* ------------------------------------------------------------- adaptive */
/* Steps a batch of b copies of prompt with drafter sc; returns the mean k
 * over steps [from, to) and the k of the last step of sequence 0. */
static double adaptive_run(eng_model *m, const int *prompt, int n, script *sc, int b,
                           const eng_spec_cost *cost, int from, int to, int *ks) {
    eng_engine *e = mk(m, 16, 0, 256);
    eng_spec_set_cost(e, cost);
    eng_spec_opts o = { .mode = ENG_SPEC_CUSTOM, .adaptive = 1, .kmax = 8, .propose = scripted,
                        .user = sc };
    int ids[256];
    for (int i = 0; i < b; i++) { ids[i] = t_add(e, prompt, n, NULL); set_spec(e, ids[i], &o); }
    double sum = 0;
    for (int t = 0; t < to; t++) {
        t_step(e);
        for (int i = 0; i < b; i++) {
            eng_spec_stats st;
            eng_seq_spec_stats(e, ids[i], &st);
            if (t >= from) sum += st.k;
            if (i == 0 && ks) ks[t] = st.k;
        }
    }
    eng_destroy(e);
    return sum / ((double)b * (to - from));
}

static void test_adaptive(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    eng_model *m = m_llama;
    const int *prompt = p_llama.ids[2], n = p_llama.len[2];
    enum { T = 120 };
    int **ref = NULL;
    prompts one = { 1, { (int *)prompt }, { n } };
    ref = plain_greedy(m, &one, 8 * T + 8);
    static const int all[] = { 100 }, none[] = { 0 }, some[] = { 0, 1 };
    eng_spec_cost cheap = { 1.0, 0.002, 0, 0 }, linear = { 0, 1.0, 0, 0 };
    int ks[T];

    script good = mkscript(ref[0], n, 8 * T + 8, m->cfg.vocab_size, all, 1);
    adaptive_run(m, prompt, n, &good, 1, &cheap, 0, 12, ks);
    printf("  always right, k by step:");
    for (int t = 0; t < 12; t++) printf(" %d", ks[t]);
    printf("\n");
    T_CHECKF(ks[0] >= 1 && ks[0] < 8 && ks[11] == 8, "k %d at first, %d after 12 steps", ks[0],
             ks[11]);
    for (int t = 1; t < 12; t++) T_CHECK(ks[t] >= ks[t - 1]);

    /* never right: k falls to 0; probes of k = 1 at doubling intervals */
    script bad = mkscript(ref[0], n, 8 * T + 8, m->cfg.vocab_size, none, 1);
    adaptive_run(m, prompt, n, &bad, 1, &cheap, 0, T, ks);
    int first0 = -1, probes = 0, last = -1, gap = 0, gaps_ok = 1;
    for (int t = 0; t < T; t++) {
        if (first0 < 0 && !ks[t]) first0 = t;
        if (first0 < 0 || !ks[t]) continue;
        probes++;
        T_CHECK(ks[t] == 1);
        if (last >= 0) {
            gaps_ok &= t - last > gap && t - last >= 16;
            gap = t - last;
        }
        last = t;
    }
    printf("  never right: k reaches 0 at step %d, then %d probes in %d steps\n", first0, probes,
           T - first0);
    T_CHECK(first0 > 0 && first0 < 16);
    T_CHECKF(probes >= 2 && probes <= 4 && gaps_ok, "%d probes", probes);

    /* wrong for a while, then right: a probe finds out and k grows again */
    script late = mkscript(ref[0], n, 8 * T + 8, m->cfg.vocab_size, none, 1);
    late.right_after = n + 40;
    adaptive_run(m, prompt, n, &late, 1, &cheap, 0, T, ks);
    int t_right = -1;
    for (int t = 0; t < T && t_right < 0; t++) if (ks[t] >= 6) t_right = t;
    printf("  right after token 40: k >= 6 again at step %d\n", t_right);
    T_CHECK(t_right > 40 && t_right < 40 + 64 + 16);   /* within two probe gaps */

    /* rows cost in proportion: no draft can pay */
    good.calls = 0;
    double k_lin = adaptive_run(m, prompt, n, &good, 1, &linear, 0, 32, NULL);
    printf("  always right but rows cost in full: mean k %.2f\n", k_lin);
    T_CHECK(k_lin < 0.1);

    /* half-right drafts: worth it for one sequence, not for a large batch */
    script half = mkscript(ref[0], n, 8 * T + 8, m->cfg.vocab_size, some, 2);
    eng_spec_cost gpu = { 1.0, 0.02, 0, 0 };
    double k1 = adaptive_run(m, prompt, n, &half, 1, &gpu, 8, 40, NULL);
    double k200 = adaptive_run(m, prompt, n, &half, 200, &gpu, 8, 40, NULL);
    printf("  drafts right about half the time: mean k %.2f alone, %.2f in a batch of 200\n", k1,
           k200);
    T_CHECK(k1 >= 1 && k200 < 0.15);
    free_ref(ref, 1);
}

/* ----------------------------------------------- overhead of probing */
/* A backend between an engine and its own that counts passes and rows and
 * what they cost under a linear step-time model. */
typedef struct counted {
    eng_backend self, *inner;
    double base_s, row_s;
    long passes, rows;
    double secs;
} counted;

static int counted_forward(eng_backend *b, const eng_fwd_batch *x, eng_err *err) {
    counted *c = b->ctx;
    c->passes++;
    c->rows += x->n_rows;
    c->secs += c->base_s + c->row_s * x->n_rows;
    return c->inner->forward(c->inner, x, err);
}

static int counted_copy(eng_backend *b, int src, int dst, eng_err *err) {
    counted *c = b->ctx;
    return c->inner->copy_block(c->inner, src, dst, err);
}

static void counted_destroy(eng_backend *b) {
    counted *c = b->ctx;
    c->inner->destroy(c->inner);
}

static void count_passes(eng_engine *e, counted *c, double base_s, double row_s) {
    *c = (counted){ .inner = e->be, .base_s = base_s, .row_s = row_s };
    c->self = (eng_backend){ .ctx = c, .forward = counted_forward, .copy_block = counted_copy,
                             .destroy = counted_destroy };
    e->be = &c->self;
}

/* H100 figures of a 1.5B target and a 0.5B draft (spec_h100_*.json): a
 * target row costs 2% of a pass, a draft pass half a target pass. */
static const eng_spec_cost h100 = { 2.2e-3, 0.045e-3, 1.0e-3, 0.03e-3 };

typedef struct ovh {
    long steps, drafted, accepted, dpasses, drows;
    double latency;   /* modelled: both engines' passes until a sequence is done, mean */
    int differ;
} ovh;

/* b sequences (prompts 0.. of p) generate T tokens each, with speculation
 * o (NULL: none) under cost: steps, passes and rows of both engines, the
 * mean modelled time until a sequence is done, and sequences whose tokens
 * are not ref's (plain greedy). */
static void overhead_run(eng_model *m, const prompts *p, int b, int T, const eng_spec_opts *o,
                         const eng_spec_cost *cost, int **ref, ovh *r) {
    memset(r, 0, sizeof *r);
    eng_opts eo = { .backend = ENG_BACKEND_CPU, .n_threads = 1, .block_size = 16,
                    .n_blocks = b * ((40 + T + ENG_SPEC_KMAX) / 16 + 2), .max_seqs = b };
    eng_engine *e = NULL;
    eng_err err = { 0 };
    if (eng_create(m, &eo, &e, &err)) {
        printf("  eng_create: %s\n", err.msg);
        r->differ = b;
        return;
    }
    eng_spec_set_cost(e, cost);
    counted tc, dc = { 0 };
    count_passes(e, &tc, cost->base_s, cost->row_s);
    int ids[64] = { 0 }, want[64] = { 0 };
    for (int i = 0; i < b; i++) {
        ids[i] = t_add(e, p->ids[i], p->len[i], NULL);
        want[i] = p->len[i] + T;
        if (o) set_spec(e, ids[i], o);
        if (i == 0 && e->draft)
            count_passes(eng_drafter_engine(e->draft), &dc, cost->draft_base_s, cost->draft_row_s);
    }
    int done[64] = { 0 };
    for (int left = b, guard = 0; left && guard < 4 * T && !t_step(e); guard++)
        for (int i = 0; i < b; i++) {   /* a sequence that is done pauses */
            const int *tk;
            int nt;
            eng_seq_tokens(e, ids[i], &tk, &nt);
            if (done[i] || nt < want[i]) continue;
            done[i] = 1;
            left--;
            r->latency += (tc.secs + dc.secs) / b;
            eng_seq_pause(e, ids[i], 1);
        }
    for (int i = 0; i < b; i++) {
        eng_spec_stats st;
        eng_seq_spec_stats(e, ids[i], &st);
        r->drafted += st.drafted;
        r->accepted += st.accepted;
        const int *tk;
        int nt;
        eng_seq_tokens(e, ids[i], &tk, &nt);
        r->differ += nt < want[i] || memcmp(tk + p->len[i], ref[i], sizeof(int) * (size_t)T);
    }
    r->steps = tc.passes;
    r->dpasses = dc.passes;
    r->drows = dc.rows;
    eng_destroy(e);
}

/* Runs o; returns its mean modelled time per answer over that of plain
 * (the same without speculation). */
static double overhead_vs_plain(const char *what, eng_model *m, const prompts *p, int b, int T,
                                const eng_spec_opts *o, const eng_spec_cost *cost, int **ref,
                                const ovh *plain, ovh *r) {
    overhead_run(m, p, b, T, o, cost, ref, r);
    double x = r->latency / plain->latency;
    printf("  %-27s batch %2d: %3ld steps (plain %3ld), %4ld drafted, %4ld accepted, %3ld draft "
           "passes of %4ld rows; time per answer %+.2f%%\n", what, b, r->steps, plain->steps,
           r->drafted, r->accepted, r->dpasses, r->drows, 100 * (x - 1));
    T_CHECKF(r->differ == 0 && plain->differ == 0, "%s, batch %d: %d sequences differ from "
             "plain greedy", what, b, r->differ);
    return x;
}

/* A copy of m whose logits are m's negated: its greedy token is m's least
 * likely one, so none of its drafts is ever accepted. */
static eng_model *contrary(const char *name) {
    eng_model *d = load(name);
    for (int i = 0; d && i < d->cfg.hidden; i++) d->final_norm[i] = -d->final_norm[i];
    return d;
}

/* Custom drafter never right: each token of the plain greedy continuation
 * plus one (sequence i runs prompt i). */
typedef struct wrong { int **ref; const prompts *p; int n_ref, vocab; } wrong;

static int wrong_propose(void *user, int seq, const int *tokens, int n, int k, int *out) {
    (void)tokens;
    wrong *w = user;
    for (int i = 0, at = n - w->p->len[seq]; i < k; i++)
        out[i] = (at + i >= 0 && at + i < w->n_ref ? w->ref[seq][at + i] + 1 : 0) % w->vocab;
    return k;
}

static void test_overhead(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    enum { T = 192 };
    eng_model *m = m_llama, *anti = contrary("tiny-llama");
    T_CHECK(anti != NULL);
    if (!anti) return;
    prompts first = { .n = 16 };
    for (int i = 0; i < 16; i++) {
        first.ids[i] = p_llama.ids[i];
        first.len[i] = p_llama.len[i];
    }
    int **ref = plain_greedy(m, &first, T);
    static const int batches[] = { 1, 8, 16 };
    eng_spec_opts od = { .mode = ENG_SPEC_DRAFT, .adaptive = 1, .kmax = 8, .draft_model = anti,
                         .draft_n_threads = 1 };
    wrong w = { ref, &first, T, m->cfg.vocab_size };
    eng_spec_opts oc = { .mode = ENG_SPEC_CUSTOM, .adaptive = 1, .kmax = 8,
                         .propose = wrong_propose, .user = &w };
    ovh plain, r;
    for (int i = 0; i < 3; i++) {
        overhead_run(m, &first, batches[i], T, NULL, &h100, ref, &plain);
        /* a draft model never right: few probes, little time */
        double x = overhead_vs_plain("draft model never right", m, &first, batches[i], T, &od,
                                     &h100, ref, &plain, &r);
        T_CHECK(r.accepted == 0);
        T_CHECKF(x < 1.01 && r.dpasses <= 2, "batch %d: %ld draft passes of %ld rows, %ld drafts: "
                 "%+.2f%%", batches[i], r.dpasses, r.drows, r.drafted, 100 * (x - 1));
        /* a custom drafter never right: only verification rows */
        x = overhead_vs_plain("custom drafter never right", m, &first, batches[i], T, &oc, &h100,
                              ref, &plain, &r);
        T_CHECK(r.accepted == 0 && r.dpasses == 0);
        T_CHECKF(x < 1.01, "batch %d: %ld drafts, %+.2f%%", batches[i], r.drafted, 100 * (x - 1));
    }

    /* always right but as costly as the target: never worth a probe */
    eng_spec_cost same = { 1e-3, 0.03e-3, 1e-3, 0.03e-3 };
    eng_spec_opts os = od;
    os.draft_model = m;
    overhead_run(m, &first, 8, 64, NULL, &same, ref, &plain);
    overhead_vs_plain("own copy, as costly", m, &first, 8, 64, &os, &same, ref, &plain, &r);
    T_CHECKF(r.dpasses == 0 && r.drafted == 0, "%ld draft passes, %ld drafts", r.dpasses,
             r.drafted);

    /* always right and cheap: soon drafting for every sequence */
    eng_spec_cost small = { 2.2e-3, 0.045e-3, 0.4e-3, 0.01e-3 };   /* a draft 1/5 the size */
    for (int i = 0; i < 3; i++) {
        overhead_run(m, &first, batches[i], 96, NULL, &small, ref, &plain);
        double x = overhead_vs_plain("own copy, cheap", m, &first, batches[i], 96, &os, &small,
                                     ref, &plain, &r);
        T_CHECK(r.accepted == r.drafted);
        T_CHECKF(x < 0.6, "batch %d: %ld steps for 96 tokens, time x %.2f", batches[i], r.steps,
                 x);
    }
    free_ref(ref, first.n);

    /* n-gram drafts on repetitive text keep their gain */
    prompts rep = { .n = 8 };
    for (int i = 0; i < 8; i++) {
        rep.ids[i] = p_llama.ids[p_llama.n - 8 + i];
        rep.len[i] = p_llama.len[p_llama.n - 8 + i];
    }
    ref = plain_greedy(m, &rep, 96);
    eng_spec_opts on = { .mode = ENG_SPEC_NGRAM, .adaptive = 1, .kmax = 8 };
    for (int i = 0; i < 2; i++) {
        overhead_run(m, &rep, batches[i], 96, NULL, &h100, ref, &plain);
        double x = overhead_vs_plain("n-gram, repetitive text", m, &rep, batches[i], 96, &on,
                                     &h100, ref, &plain, &r);
        T_CHECKF(x < (i ? 0.9 : 0.5), "batch %d: %ld steps for 96 tokens, time x %.2f",
                 batches[i], r.steps, x);
    }
    free_ref(ref, rep.n);
    eng_model_free(anti);
}

/* ---------------------------------------------------------- sampling */
enum { DRAWS = 3000, ROUND = 500 };

/* Expected probability of each (x1, x2) cell: cells of expected count >=
 * 5, the rest of each first token, and one cell for everything else. */
typedef struct cells {
    int n, n_x1, x1[64];
    int *cell_of;        /* [n_x1][V]: cell of (x1[i], x2), -1: rest of x1 */
    int rest_of[64];     /* cell of x1[i]'s other second tokens */
    double e[4096];      /* expected probability per cell */
} cells;

static void expected_cells(eng_model *m, const int *prompt, int n, const eng_sampling *s, cells *c) {
    int V = m->cfg.vocab_size;
    double *p1 = malloc(sizeof(double) * V), *p2 = malloc(sizeof(double) * V);
    eng_engine *e = mk(m, 16, 0, 80);
    int sq = t_add(e, prompt, n, NULL);
    t_step(e);
    ref_probs(eng_seq_logits(e, sq, NULL), V, s, p1);
    eng_seq_remove(e, sq);
    c->n_x1 = 0;
    for (int x = 0; x < V && c->n_x1 < 64; x++)
        if (p1[x] * DRAWS >= 5) c->x1[c->n_x1++] = x;
    int ids[64], *buf = malloc(sizeof(int) * (size_t)(n + 1));
    memcpy(buf, prompt, sizeof(int) * (size_t)n);
    for (int i = 0; i < c->n_x1; i++) { buf[n] = c->x1[i]; ids[i] = t_add(e, buf, n + 1, NULL); }
    t_step(e);
    c->cell_of = malloc(sizeof(int) * (size_t)c->n_x1 * V);
    c->n = 1;   /* cell 0: everything else */
    double used = 0;
    for (int i = 0; i < c->n_x1; i++) {
        ref_probs(eng_seq_logits(e, ids[i], NULL), V, s, p2);
        double left = p1[c->x1[i]];
        for (int x = 0; x < V; x++) {
            double pe = p1[c->x1[i]] * p2[x];
            c->cell_of[(size_t)i * V + x] = pe * DRAWS >= 5 && c->n < 4000 ? c->n : -1;
            if (c->cell_of[(size_t)i * V + x] >= 0) { c->e[c->n++] = pe; left -= pe; used += pe; }
        }
        c->rest_of[i] = left * DRAWS >= 5 ? c->n : 0;
        if (c->rest_of[i]) { c->e[c->n++] = left; used += left; }
    }
    c->e[0] = 1 - used;
    eng_destroy(e);
    free(buf);
    free(p1);
    free(p2);
}

static int cell(const cells *c, int V, int a, int b) {
    for (int i = 0; i < c->n_x1; i++)
        if (c->x1[i] == a) {
            int k = c->cell_of[(size_t)i * V + b];
            return k >= 0 ? k : c->rest_of[i];
        }
    return 0;
}

static double chi2(const cells *c, const int *obs, int *df) {
    double x = 0;
    *df = -1;
    for (int i = 0; i < c->n; i++) {
        if (c->e[i] * DRAWS < 1e-9) { if (obs[i]) return INFINITY; continue; }
        double d = obs[i] - c->e[i] * DRAWS;
        x += d * d / (c->e[i] * DRAWS);
        (*df)++;
    }
    return x;
}

/* DRAWS first-two-token samples of prompt under s with speculation o, as
 * forks of one prefilled parent; counts per cell of c (and of c2). */
static void spec_draws(eng_model *m, const int *prompt, int n, const eng_sampling *s,
                       const eng_spec_opts *o, const cells *c, int *obs, const cells *c2,
                       int *obs2, totals *t) {
    int V = m->cfg.vocab_size;
    eng_engine *e = mk(m, 16, 0, ROUND + 1);
    static const eng_spec_cost free_rows = { 1.0, 0.0002, 0.01, 0.0001 };   /* even for 500 */
    eng_spec_set_cost(e, &free_rows);
    eng_err err;
    int par = t_add(e, prompt, n, s), ids[ROUND], want[ROUND];
    set_spec(e, par, o);
    eng_seq_prefill(e, par, &err);
    eng_seq_pause(e, par, 1);
    for (int done = 0; done < DRAWS; done += ROUND) {
        for (int i = 0; i < ROUND; i++) {
            eng_sampling si = *s;
            si.seed = 1000003ull * (uint64_t)(done + i) + 17;
            if (eng_seq_fork(e, par, &si, &ids[i], &err)) printf("  fork: %s\n", err.msg);
            want[i] = n + 2;
        }
        run_to(e, ids, want, ROUND, t);
        for (int i = 0; i < ROUND; i++) {
            const int *tk;
            int nt;
            eng_seq_tokens(e, ids[i], &tk, &nt);
            obs[cell(c, V, tk[n], tk[n + 1])]++;
            obs2[cell(c2, V, tk[n], tk[n + 1])]++;
            eng_seq_remove(e, ids[i]);
        }
    }
    eng_destroy(e);
}

static void sampling_case(eng_model *m, const int *prompt, int n, const eng_sampling *s,
                          const eng_spec_opts *o, const char *what) {
    cells *c = calloc(1, sizeof *c), *wrong = calloc(1, sizeof *wrong);
    expected_cells(m, prompt, n, s, c);
    eng_sampling sw = *s;   /* a nearby distribution the test must tell apart */
    sw.temperature *= 1.25f;
    expected_cells(m, prompt, n, &sw, wrong);
    int *obs = calloc((size_t)c->n, sizeof(int)), *obs2 = calloc((size_t)wrong->n, sizeof(int));
    totals t = { 0 };
    spec_draws(m, prompt, n, s, o, c, obs, wrong, obs2, &t);
    int df, df2;
    double x = chi2(c, obs, &df), x2 = chi2(wrong, obs2, &df2);
    printf("  %-30s chi2 %6.1f (df %3d, bound %5.1f); at T x 1.25: %7.1f (bound %5.1f); "
           "%lld drafted, %lld accepted (%.0f%%)\n", what, x, df, chi2_bound(df), x2,
           chi2_bound(df2), (long long)t.drafted, (long long)t.accepted,
           t.drafted ? 100.0 * t.accepted / t.drafted : 0.0);
    T_CHECKF(df >= 3 && x < chi2_bound(df), "%s: chi2 %.1f, df %d", what, x, df);
    T_CHECKF(x2 > chi2_bound(df2), "%s: the test cannot tell T from 1.25 T", what);
    T_CHECKF(t.accepted > 0.1 * t.drafted && t.accepted < 0.95 * t.drafted,
             "%s: %lld of %lld accepted: both branches should run", what, (long long)t.accepted,
             (long long)t.drafted);
    free(obs);
    free(obs2);
    free(c->cell_of);
    free(wrong->cell_of);
    free(c);
    free(wrong);
}

static void test_sampling(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    eng_model *m = m_llama;
    /* n-gram drafts need text that repeats: the prompt is S, its greedy
     * continuation G, then S again, so lookup proposes G */
    const prompts *p = &p_llama;
    int *ids = malloc(sizeof(int) * 64), n = 0, ns = p->len[1] < 12 ? p->len[1] : 12;
    prompts one = { 1, { p->ids[1] }, { ns } };
    int **g = plain_greedy(m, &one, 8);
    memcpy(ids, p->ids[1], sizeof(int) * (size_t)ns);
    memcpy(ids + ns, g[0], sizeof(int) * 8);
    memcpy(ids + ns + 8, p->ids[1], sizeof(int) * (size_t)ns);
    n = 2 * ns + 8;
    free_ref(g, 1);
    eng_sampling t1 = { 1.0f, 0, 0, 0 }, t07 = { 0.7f, 8, 0, 0 };
    eng_spec_opts ng = { .mode = ENG_SPEC_NGRAM, .k = 3 };
    eng_spec_opts dm = { .mode = ENG_SPEC_DRAFT, .k = 3, .draft_model = m_llama_noisy };
    eng_spec_opts da = { .mode = ENG_SPEC_DRAFT, .adaptive = 1, .draft_model = m_llama_noisy };
    sampling_case(m, ids, n, &t1, &ng, "ngram T=1");
    sampling_case(m, ids, n, &t07, &ng, "ngram T=0.7 top-k 8");
    sampling_case(m, ids, n, &t1, &dm, "draft T=1");
    sampling_case(m, ids, n, &t07, &da, "draft adaptive T=0.7 top-k 8");
    free(ids);
}

/* ---------------------------------------------------------- interplay */
/* Greedy continuation (n_gen tokens) of ids[0..n), plain. */
static int *greedy_of(eng_model *m, const int *ids, int n, int n_gen) {
    prompts one = { 1, { (int *)ids }, { n } };
    int **r = plain_greedy(m, &one, n_gen), *out = r[0];
    free(r);
    return out;
}

static void test_force_pause_append(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    eng_model *m = m_llama;
    const int *prompt = p_llama.ids[7], n = p_llama.len[7];
    eng_spec_opts o = { .mode = ENG_SPEC_DRAFT, .k = 3, .draft_model = m_llama };
    eng_err err;
    /* forced tokens: one per step, no drafting, then speculation resumes */
    int forced[5] = { 11, 22, 33, 44, 55 }, *buf = malloc(sizeof(int) * 2048);
    eng_engine *e = mk(m, 16, 0, 8);
    int s = t_add(e, prompt, n, NULL);
    set_spec(e, s, &o);
    T_CHECK(eng_seq_force(e, s, forced, 5, &err) == ENG_OK);
    const int *nw, *tk;
    int nn, nt, multi = 0;
    for (int k = 0; k < 5; k++) {
        T_CHECK(t_step(e) == ENG_OK);
        eng_seq_new_tokens(e, s, &nw, &nn);
        T_CHECK(nn == 1 && nw[0] == forced[k]);
    }
    for (int k = 0; k < 6; k++) {
        T_CHECK(t_step(e) == ENG_OK);
        eng_seq_new_tokens(e, s, &nw, &nn);
        multi += nn == 4;
    }
    T_CHECKF(multi == 6, "after forcing: %d of 6 steps took 3 drafts", multi);
    eng_seq_tokens(e, s, &tk, &nt);
    memcpy(buf, prompt, sizeof(int) * (size_t)n);
    memcpy(buf + n, forced, sizeof forced);
    int *want = greedy_of(m, buf, n + 5, nt - n - 5);
    T_CHECK(!memcmp(tk, buf, sizeof(int) * (size_t)(n + 5)) &&
            !memcmp(tk + n + 5, want, sizeof(int) * (size_t)(nt - n - 5)));
    free(want);

    /* paused: untouched; appended tokens run with the drafts after them */
    T_CHECK(eng_seq_pause(e, s, 1) == ENG_OK);
    int other = t_add(e, prompt, n, NULL), before = nt;
    T_CHECK(t_step(e) == ENG_OK);
    eng_seq_new_tokens(e, s, &nw, &nn);
    eng_seq_tokens(e, s, &tk, &nt);
    T_CHECK(nn == 0 && nt == before);
    eng_seq_new_tokens(e, other, &nw, &nn);
    T_CHECK(nn == 1);   /* a plain sequence: one token per step */
    int extra[4] = { 7, 8, 9, 10 };
    T_CHECK(eng_seq_pause(e, s, 0) == ENG_OK && eng_seq_append(e, s, extra, 4, &err) == ENG_OK);
    eng_seq_tokens(e, s, &tk, &nt);
    memcpy(buf, tk, sizeof(int) * (size_t)nt);
    int base = nt;
    for (int k = 0; k < 6; k++) T_CHECK(t_step(e) == ENG_OK);
    eng_seq_tokens(e, s, &tk, &nt);
    want = greedy_of(m, buf, base, nt - base);
    T_CHECKF(!memcmp(tk + base, want, sizeof(int) * (size_t)(nt - base)), "after append: "
             "tokens differ from plain greedy");
    T_CHECK(nt - base == 6 * 4);
    free(want);

    /* keep_all_logits: no speculation, every pending row's logits */
    eng_seq_keep_all_logits(e, s, 1);
    T_CHECK(eng_seq_append(e, s, extra, 3, &err) == ENG_OK);
    T_CHECK(t_step(e) == ENG_OK);
    int rows = 0;
    eng_seq_new_tokens(e, s, &nw, &nn);
    T_CHECK(eng_seq_logits(e, s, &rows) && rows == 4 && nn == 1);
    eng_seq_keep_all_logits(e, s, 0);
    T_CHECK(t_step(e) == ENG_OK);
    eng_seq_new_tokens(e, s, &nw, &nn);
    T_CHECK(nn == 4 && eng_seq_logits(e, s, &rows) && rows == 4);
    eng_destroy(e);
    free(buf);
}

/* A short KV pool: drafts shrink to what fits, and the step fails with
 * ENG_EFULL exactly where a plain run does; the same at the end of the
 * model's context. */
static void test_limits(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    eng_model *m = m_qwen;
    int n = 10, V = m->cfg.vocab_size, prompt[10];
    for (int i = 0; i < n; i++) prompt[i] = 100 + 37 * i;
    eng_spec_opts o = { .mode = ENG_SPEC_DRAFT, .k = 8, .draft_model = m };
    int ntoks[2], *toks[2];
    for (int spec = 0; spec < 2; spec++) {
        eng_engine *e = mk(m, 4, 5, 4);   /* 20 positions */
        int s = t_add(e, prompt, n, NULL), steps = 0;
        if (spec) set_spec(e, s, &o);
        eng_err err = { 0 };
        while (steps < 100 && !eng_step(e, &err)) steps++;
        T_CHECKF(err.code == ENG_EFULL, "%s: %d %s", spec ? "spec" : "plain", err.code, err.msg);
        const int *tk;
        eng_seq_tokens(e, s, &tk, &ntoks[spec]);
        toks[spec] = malloc(sizeof(int) * (size_t)ntoks[spec]);
        memcpy(toks[spec], tk, sizeof(int) * (size_t)ntoks[spec]);
        printf("  pool of 20 positions, %s: %d steps, %d tokens, then \"%s\"\n",
               spec ? "k = 8" : "plain", steps, ntoks[spec], err.msg);
        if (spec) T_CHECK(steps < 5);
        eng_destroy(e);
    }
    T_CHECK(ntoks[0] == 21 && ntoks[1] == 21 && !memcmp(toks[0], toks[1], sizeof(int) * 21));
    free(toks[0]);
    free(toks[1]);

    /* the end of the context: 1024 positions */
    int max_pos = m->cfg.max_pos, len = max_pos - 13;
    int *ids = malloc(sizeof(int) * (size_t)len);
    for (int i = 0; i < len; i++) ids[i] = (i * 7919 + 13) % V;
    for (int spec = 0; spec < 2; spec++) {
        eng_engine *e = mk(m, 16, 80, 2);
        int s = t_add(e, ids, len, NULL), steps = 0;
        if (spec) set_spec(e, s, &o);
        eng_err err = { 0 };
        while (steps++ < 100 && !eng_step(e, &err)) {}
        const int *tk;
        eng_seq_tokens(e, s, &tk, &ntoks[spec]);
        toks[spec] = malloc(sizeof(int) * (size_t)ntoks[spec]);
        memcpy(toks[spec], tk, sizeof(int) * (size_t)ntoks[spec]);
        T_CHECK(err.code == ENG_EFULL && strstr(err.msg, "context"));
        eng_destroy(e);
    }
    T_CHECKF(ntoks[0] == max_pos + 1 && ntoks[1] == ntoks[0] &&
             !memcmp(toks[0], toks[1], sizeof(int) * (size_t)ntoks[0]),
             "context end: plain %d tokens, spec %d", ntoks[0], ntoks[1]);
    free(toks[0]);
    free(toks[1]);
    free(ids);
}

static int junk(void *user, int seq, const int *tokens, int n, int k, int *out) {
    (void)seq; (void)tokens; (void)n;
    int *mode = user;
    for (int i = 0; i < k; i++) out[i] = *mode == 0 ? -5 + i : 1 << 20;
    return *mode == 2 ? -3 : k + 7;
}

static void test_bad_args(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    eng_model *m = m_llama;
    eng_engine *e = mk(m, 16, 0, 8);
    eng_err err = { 0 };
    const int *prompt = p_llama.ids[3], n = p_llama.len[3];
    int s = t_add(e, prompt, n, NULL);
    eng_spec_opts o = { .mode = ENG_SPEC_NGRAM };
    T_CHECK(eng_seq_spec_set(e, 7, &o, &err) == ENG_EINVAL);
    o.mode = 9;
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_EINVAL);
    printf("  message: %s\n", err.msg);
    o = (eng_spec_opts){ .mode = ENG_SPEC_NGRAM, .k = -1 };
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_EINVAL);
    o.k = ENG_SPEC_KMAX + 1;
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_EINVAL);
    o = (eng_spec_opts){ .mode = ENG_SPEC_NGRAM, .kmax = 99, .adaptive = 1 };
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_EINVAL);
    o = (eng_spec_opts){ .mode = ENG_SPEC_NGRAM, .ngram_n = -2 };
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_EINVAL);
    o = (eng_spec_opts){ .mode = ENG_SPEC_DRAFT };
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_EINVAL);
    o = (eng_spec_opts){ .mode = ENG_SPEC_CUSTOM };
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_EINVAL);
    /* one draft model per engine */
    o = (eng_spec_opts){ .mode = ENG_SPEC_DRAFT, .draft_model = m_llama_noisy };
    int s2 = t_add(e, prompt, n, NULL);
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_OK);
    o.draft_model = m_llama;
    T_CHECK(eng_seq_spec_set(e, s2, &o, &err) == ENG_EINVAL);
    printf("  message: %s\n", err.msg);
    T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_OK);   /* its only user may switch */
    T_CHECK(eng_seq_spec_set(e, s2, &o, &err) == ENG_OK);
    T_CHECK(eng_seq_spec_set(e, s, NULL, &err) == ENG_OK);
    eng_spec_stats st;
    T_CHECK(eng_seq_spec_stats(e, s, &st) == ENG_OK && st.drafted == 0 && st.k == 0);
    T_CHECK(eng_seq_spec_stats(e, 7, &st) == ENG_EINVAL);
    const int *ids;
    int nn;
    T_CHECK(eng_seq_new_tokens(e, 7, &ids, &nn) == ENG_EINVAL);
    T_CHECK(eng_seq_new_tokens(e, s, &ids, &nn) == ENG_OK && nn == 0);
    eng_spec_cost c = { -1, 0, 0, 0 };
    T_CHECK(eng_spec_set_cost(e, &c) == ENG_EINVAL);
    c = (eng_spec_cost){ 0, 0, 0, 0 };
    T_CHECK(eng_spec_set_cost(e, &c) == ENG_EINVAL);
    T_CHECK(eng_spec_set_cost(e, NULL) == ENG_OK);
    T_CHECK(eng_spec_step_cost(e, 4) < 0);   /* nothing measured yet */
    T_CHECK(eng_seq_remove(e, s2) == ENG_OK);
    /* a drafter handing out nonsense changes nothing */
    int **ref = plain_greedy(m, &(prompts){ 1, { (int *)prompt }, { n } }, 12);
    for (int mode = 0; mode < 3; mode++) {
        o = (eng_spec_opts){ .mode = ENG_SPEC_CUSTOM, .k = 4, .propose = junk, .user = &mode };
        T_CHECK(eng_seq_spec_set(e, s, &o, &err) == ENG_OK);
        int before;
        eng_seq_tokens(e, s, &ids, &before);
        for (int k = 0; k < 3; k++) T_CHECK(t_step(e) == ENG_OK);
        eng_seq_tokens(e, s, &ids, &nn);
        T_CHECK(nn == before + 3 && !memcmp(ids + n, ref[0], sizeof(int) * (size_t)(nn - n)));
    }
    T_CHECK(eng_spec_step_cost(e, 1) > 0);
    free_ref(ref, 1);
    eng_destroy(e);
}

/* A draft model whose products are not of quantized blocks, under a
 * target's --act q16: refused for itself (eng_create), taken as a draft
 * with f32 inputs (its tokens are only proposals). */
static void test_draft_act(void) {
    if (!load_all()) T_FAIL("bundled fixtures under tests/fixtures did not load");
    eng_opts o = { .n_threads = 1, .n_blocks = 64, .act = ENG_ACT_Q16 };
    eng_engine *e = NULL;
    eng_err err = { 0 };
    T_CHECKF(eng_create(m_llama, &o, &e, &err) == ENG_EUNSUPPORTED && !e, "%s", err.msg);
    eng_drafter *d = NULL;
    T_CHECKF(eng_drafter_model_create(m_llama, &o, 4, &d, &err) == ENG_OK && d && eng_drafter_engine(d),
             "%s", err.msg);
    if (d) d->destroy(d);
}

int main(void) {
    T_RUN(test_probs);
    T_RUN(test_probs_edge);
    T_RUN(test_greedy_ngram);
    T_RUN(test_greedy_draft);
    T_RUN(test_rollback);
    T_RUN(test_adaptive);
    T_RUN(test_overhead);
    T_RUN(test_sampling);
    T_RUN(test_force_pause_append);
    T_RUN(test_limits);
    T_RUN(test_bad_args);
    T_RUN(test_draft_act);
    eng_model *ms[] = { m_qwen, m_llama, m_qwen16, m_qwen_noisy, m_llama_noisy };
    for (int i = 0; i < 5; i++) eng_model_free(ms[i]);
    for (int i = 0; i < p_qwen.n; i++) free(p_qwen.ids[i]);
    for (int i = 0; i < p_llama.n; i++) free(p_llama.ids[i]);
    T_DONE();
}
