/* test_engine.c — the engine on the CPU backend against logits computed by
 * transformers in float64 (tests/fixtures/<model>/ref.json + ref_logits.bin;
 * Qwen2, Llama, Qwen3, Gemma 3), and the
 * engine's own promises: batching does not change results, forks share KV
 * blocks copy-on-write, a full cache is refused cleanly, bad arguments are
 * errors. */
#include "t.h"
#include "t_util.h"
#include <cJSON.h>
#include "backend.h"

#define TOL 1e-4
#define N_GEN 16

typedef struct prompt { int *ids, n_ids, n_prompt, row_offset; } prompt;

typedef struct fixture {
    const char *name;
    eng_model *m;
    int vocab, rows, n_prompts;
    prompt p[8];
    float *ref;   /* [rows][vocab] */
} fixture;

static fixture fx[4] = { { .name = "tiny-qwen2" }, { .name = "tiny-llama" },
                         { .name = "tiny-qwen3" }, { .name = "tiny-gemma3" } };

static char *read_file(const char *path, size_t *len) {
    char *b = NULL;
    eng_read_file(path, 0, &b, len, NULL);
    return b;
}

/* tests/fixtures/<f>/<file>: f->rows x f->vocab floats (a reference's
 * logits at every position of ref.json's rows), or NULL (and a message)
 * when missing or of another size. */
static float *read_rows(const fixture *f, const char *file) {
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof path, "tests/fixtures/%s/%s", f->name, file);
    float *v = (float *)read_file(path, &len);
    if (!v || len != (size_t)f->rows * f->vocab * sizeof(float)) {
        printf("  %s: %zu bytes, expected %d x %d floats\n", path, len, f->rows, f->vocab);
        free(v);
        return NULL;
    }
    return v;
}

/* Loads model, prompts and reference logits; returns 0 on failure. */
static int load_fixture(fixture *f) {
    if (f->m) return 1;
    char path[512];
    eng_err err = { 0 };
    snprintf(path, sizeof path, "tests/fixtures/%s", f->name);
    if (eng_model_load(path, &f->m, &err)) {
        printf("  %s: %s\n", path, err.msg);
        return 0;
    }
    snprintf(path, sizeof path, "tests/fixtures/%s/ref.json", f->name);
    char *js = read_file(path, NULL);
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    free(js);
    if (!root) { printf("  cannot read %s\n", path); return 0; }
    f->vocab = cJSON_GetObjectItem(root, "vocab")->valueint;
    f->rows = cJSON_GetObjectItem(root, "rows")->valueint;
    const cJSON *ps = cJSON_GetObjectItem(root, "prompts"), *p;
    cJSON_ArrayForEach(p, ps) {
        if (f->n_prompts == 8) break;
        prompt *q = &f->p[f->n_prompts++];
        const cJSON *ids = cJSON_GetObjectItem(p, "ids"), *id;
        q->n_ids = cJSON_GetArraySize(ids);
        q->ids = malloc(sizeof(int) * (size_t)q->n_ids);
        int i = 0;
        cJSON_ArrayForEach(id, ids) q->ids[i++] = id->valueint;
        q->n_prompt = cJSON_GetObjectItem(p, "n_prompt")->valueint;
        q->row_offset = cJSON_GetObjectItem(p, "row_offset")->valueint;
    }
    cJSON_Delete(root);
    if (!(f->ref = read_rows(f, "ref_logits.bin"))) return 0;
    if (eng_model_config(f->m)->vocab_size != f->vocab) {
        printf("  %s: model vocab %d, reference %d\n", f->name,
               eng_model_config(f->m)->vocab_size, f->vocab);
        return 0;
    }
    return 1;
}

static const float *ref_row(const fixture *f, const prompt *p, int pos) {
    return f->ref + (size_t)(p->row_offset + pos) * f->vocab;
}

static double rel_err(const float *a, const float *b, int n) {
    double d = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        nb += (double)b[i] * b[i];
    }
    return sqrt(d) / (sqrt(nb) + 1e-30);
}

/* The KV format of the engines make_engine creates (the bf16 runs of the
 * fork test set it). */
static int kv_format = ENG_KV_F32;
static int act_format = ENG_ACT_F32;   /* and activation format (ENG_ACT_*) */

static eng_engine *make_engine(fixture *f, int block_size, int n_blocks, int n_threads) {
    eng_opts o = { .backend = ENG_BACKEND_CPU, .n_threads = n_threads, .block_size = block_size,
                   .n_blocks = n_blocks, .max_seqs = 64, .kv_format = kv_format,
                   .act = act_format };
    eng_engine *e = NULL;
    eng_err err = { 0 };
    if (eng_create(f->m, &o, &e, &err)) printf("  eng_create: %s\n", err.msg);
    return e;
}

/* Checks logits rows [0, rows) of seq against reference positions pos0... */
static void check_rows(const fixture *f, const prompt *p, const float *lg, int rows, int pos0,
                       const char *what) {
    for (int r = 0; r < rows; r++) {
        double e = rel_err(lg + (size_t)r * f->vocab, ref_row(f, p, pos0 + r), f->vocab);
        T_CHECKF(e < TOL, "%s %s: position %d: relative error %.3g", f->name, what, pos0 + r, e);
    }
}

/* --------------------------------------------------------- reference */
/* Every prompt alone: prefill logits at every position, then N_GEN greedy
 * decode steps, against transformers. */
static void reference(fixture *f) {
    if (!load_fixture(f)) { T_CHECKF(0, "fixture %s did not load", f->name); return; }
    eng_engine *e = make_engine(f, 16, 0, 2);
    T_CHECK(e);
    if (!e) return;
    double worst = 0;
    for (int pi = 0; pi < f->n_prompts; pi++) {
        const prompt *p = &f->p[pi];
        int s = t_add(e, p->ids, p->n_prompt, NULL);
        eng_seq_keep_all_logits(e, s, 1);
        T_CHECK(t_step(e) == ENG_OK);
        int rows = 0;
        const float *lg = eng_seq_logits(e, s, &rows);
        T_CHECKF(lg && rows == p->n_prompt, "prefill rows %d, want %d", rows, p->n_prompt);
        if (!lg || rows != p->n_prompt) continue;
        check_rows(f, p, lg, rows, 0, "prefill");
        for (int r = 0; r < rows; r++) {
            double er = rel_err(lg + (size_t)r * f->vocab, ref_row(f, p, r), f->vocab);
            if (er > worst) worst = er;
        }
        eng_seq_keep_all_logits(e, s, 0);
        for (int k = 0; k < N_GEN; k++) {   /* k: token ids[n_prompt + k] was just sampled */
            eng_token t;
            T_CHECK(eng_seq_last(e, s, &t) == ENG_OK);
            T_CHECKF(t.id == p->ids[p->n_prompt + k], "%s prompt %d token %d: got %d want %d",
                     f->name, pi, k, t.id, p->ids[p->n_prompt + k]);
            T_CHECK(t_step(e) == ENG_OK);
            lg = eng_seq_logits(e, s, &rows);
            T_CHECK(lg && rows == 1);
            if (!lg) break;
            int pos = p->n_prompt + k;
            double er = rel_err(lg, ref_row(f, p, pos), f->vocab);
            if (er > worst) worst = er;
            T_CHECKF(er < TOL, "%s prompt %d decode %d: relative error %.3g", f->name, pi, k, er);
        }
        const int *ids;
        int n;
        T_CHECK(eng_seq_tokens(e, s, &ids, &n) == ENG_OK && n == p->n_prompt + N_GEN + 1);
        T_CHECK(!memcmp(ids, p->ids, sizeof(int) * (size_t)(p->n_prompt + N_GEN)));
        T_CHECK(eng_seq_n_prompt(e, s) == p->n_prompt);
        T_CHECK(eng_seq_remove(e, s) == ENG_OK);
    }
    printf("  %s: worst relative error %.2e over %d prompts\n", f->name, worst, f->n_prompts);
    T_CHECK(eng_n_live(e) == 0);
    eng_destroy(e);
}

static void test_reference_qwen2(void) { reference(&fx[0]); }
static void test_reference_llama(void) { reference(&fx[1]); }
static void test_reference_qwen3(void) { reference(&fx[2]); }
static void test_reference_gemma3(void) { reference(&fx[3]); }

/* ------------------------------------------------------------ batched */
/* Runs each prompt of f for steps steps; logits of step k of prompt i go
 * to out[i] + k * vocab (first step: the last prompt row). */
static void run_alone(fixture *f, int n_threads, int block_size, int steps, float **out) {
    eng_engine *e = make_engine(f, block_size, 0, n_threads);
    if (!e) return;
    for (int pi = 0; pi < f->n_prompts; pi++) {
        int s = t_add(e, f->p[pi].ids, f->p[pi].n_prompt, NULL);
        for (int k = 0; k < steps; k++) {
            t_step(e);
            const float *lg = eng_seq_logits(e, s, NULL);
            if (lg) memcpy(out[pi] + (size_t)k * f->vocab, lg, sizeof(float) * f->vocab);
        }
        eng_seq_remove(e, s);
    }
    eng_destroy(e);
}

static void batched(fixture *f) {
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    enum { STEPS = N_GEN + 1 };
    float *alone[8], *alone1[8];
    for (int i = 0; i < f->n_prompts; i++) {
        alone[i] = calloc((size_t)STEPS * f->vocab, sizeof(float));
        alone1[i] = calloc((size_t)STEPS * f->vocab, sizeof(float));
    }
    run_alone(f, 2, 16, STEPS, alone);
    run_alone(f, 1, 16, STEPS, alone1);
    for (int i = 0; i < f->n_prompts; i++)
        T_CHECKF(!memcmp(alone[i], alone1[i], sizeof(float) * STEPS * f->vocab),
                 "prompt %d: 1 and 2 threads differ", i);

    eng_engine *e = make_engine(f, 16, 0, 2);
    int s[8];
    for (int i = 0; i < f->n_prompts; i++) s[i] = t_add(e, f->p[i].ids, f->p[i].n_prompt, NULL);
    T_CHECK(eng_n_live(e) == f->n_prompts);
    for (int k = 0; k < STEPS; k++) {
        T_CHECK(t_step(e) == ENG_OK);
        for (int i = 0; i < f->n_prompts; i++) {
            int rows = 0;
            const float *lg = eng_seq_logits(e, s[i], &rows);
            T_CHECKF(lg && rows == 1 &&
                     !memcmp(lg, alone[i] + (size_t)k * f->vocab, sizeof(float) * f->vocab),
                     "%s prompt %d step %d: batched logits differ from the prompt alone",
                     f->name, i, k);
        }
    }
    for (int i = 0; i < f->n_prompts; i++) {
        const int *ids;
        int n;
        eng_seq_tokens(e, s[i], &ids, &n);
        T_CHECK(n == f->p[i].n_prompt + STEPS);
        T_CHECKF(!memcmp(ids, f->p[i].ids, sizeof(int) * (size_t)(f->p[i].n_prompt + N_GEN)),
                 "prompt %d: batched tokens differ from the reference", i);
        free(alone[i]);
        free(alone1[i]);
    }
    eng_destroy(e);
}

static void test_batched_qwen2(void) { batched(&fx[0]); }
static void test_batched_llama(void) { batched(&fx[1]); }
static void test_batched_qwen3(void) { batched(&fx[2]); }
static void test_batched_gemma3(void) { batched(&fx[3]); }

/* Many sequences of different lengths (prefixes of the reference ids) in
 * one batch with 4-token blocks, so most span several blocks (and Gemma 3's
 * sliding window of 6 starts inside a block); every row of every sequence
 * against the reference, then greedy decode where the reference knows the
 * continuation. */
static void many_lengths(fixture *f) {
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    eng_engine *e = make_engine(f, 4, 0, 2);
    int s[64], pi_of[64], len_of[64], n = 0;
    for (int pi = 0; pi < f->n_prompts; pi++) {
        const prompt *p = &f->p[pi];
        for (int len = 1; len <= p->n_ids - 4 && n < 64; len += 3 + pi) {
            s[n] = t_add(e, p->ids, len, NULL);
            eng_seq_keep_all_logits(e, s[n], 1);
            pi_of[n] = pi;
            len_of[n++] = len;
        }
    }
    int longest = 0;
    for (int i = 0; i < n; i++) if (len_of[i] > longest) longest = len_of[i];
    printf("  %d sequences, lengths 1..%d, block size 4\n", n, longest);
    T_CHECK(t_step(e) == ENG_OK);
    for (int i = 0; i < n; i++) {
        int rows = 0;
        const float *lg = eng_seq_logits(e, s[i], &rows);
        T_CHECK(lg && rows == len_of[i]);
        if (lg) check_rows(f, &f->p[pi_of[i]], lg, rows, 0, "many");
        eng_seq_keep_all_logits(e, s[i], 0);
    }
    int checked = 0;
    for (int k = 0; k < 3; k++) {
        T_CHECK(t_step(e) == ENG_OK);
        for (int i = 0; i < n; i++) {
            /* the reference applies while the tokens so far are its own */
            const prompt *p = &f->p[pi_of[i]];
            int pos = len_of[i] + k, nt;   /* position just processed */
            const int *ids;
            eng_seq_tokens(e, s[i], &ids, &nt);
            T_CHECK(nt == pos + 2);
            if (pos + 1 >= p->n_ids || memcmp(ids, p->ids, sizeof(int) * (size_t)(pos + 1)))
                continue;
            check_rows(f, p, eng_seq_logits(e, s[i], NULL), 1, pos, "many decode");
            if (pos + 1 >= p->n_prompt)    /* greedy continuation is known */
                T_CHECKF(ids[pos + 1] == p->ids[pos + 1], "seq %d position %d: token %d want %d",
                         i, pos + 1, ids[pos + 1], p->ids[pos + 1]);
            checked++;
        }
    }
    printf("  %d decode rows checked against the reference\n", checked);
    T_CHECK(checked > 10);
    eng_destroy(e);
}

static void test_many_lengths_llama(void) { many_lengths(&fx[1]); }
static void test_many_lengths_gemma3(void) { many_lengths(&fx[3]); }

/* A prompt longer than the backend's 512-row pass: its rows are worked in
 * two passes, the second attending to keys written by the first.  The
 * same tokens produced one decode step at a time must give bit-identical
 * logits. */
static void test_long_prompt(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    enum { PROMPT = 500, GEN = 200, TOTAL = PROMPT + GEN };
    int *ids = malloc(sizeof(int) * (TOTAL + 1));
    float *want = malloc(sizeof(float) * (size_t)TOTAL * f->vocab);
    for (int i = 0; i < PROMPT; i++) ids[i] = (i * 7919 + 13) % f->vocab;
    eng_engine *e = make_engine(f, 16, 0, 2);
    int s = t_add(e, ids, PROMPT, NULL);
    eng_seq_keep_all_logits(e, s, 1);
    T_CHECK(t_step(e) == ENG_OK);
    int rows = 0;
    const float *lg = eng_seq_logits(e, s, &rows);
    T_CHECK(lg && rows == PROMPT);
    if (lg) memcpy(want, lg, sizeof(float) * (size_t)PROMPT * f->vocab);
    eng_seq_keep_all_logits(e, s, 0);
    for (int k = 0; k < GEN; k++) {
        T_CHECK(t_step(e) == ENG_OK);
        lg = eng_seq_logits(e, s, NULL);
        if (lg) memcpy(want + (size_t)(PROMPT + k) * f->vocab, lg, sizeof(float) * f->vocab);
    }
    const int *gen;
    int n;
    eng_seq_tokens(e, s, &gen, &n);
    T_CHECK(n == TOTAL + 1);
    memcpy(ids, gen, sizeof(int) * (TOTAL + 1));
    eng_seq_remove(e, s);

    s = t_add(e, ids, TOTAL, NULL);
    eng_seq_keep_all_logits(e, s, 1);
    T_CHECK(t_step(e) == ENG_OK);
    lg = eng_seq_logits(e, s, &rows);
    T_CHECK(lg && rows == TOTAL);
    int bad = 0;
    for (int r = 0; lg && r < TOTAL; r++)
        bad += memcmp(lg + (size_t)r * f->vocab, want + (size_t)r * f->vocab,
                      sizeof(float) * f->vocab) != 0;
    T_CHECKF(bad == 0, "%d of %d rows differ between one %d-row step and decoding", bad, TOTAL,
             TOTAL);
    eng_token t;
    T_CHECK(eng_seq_last(e, s, &t) == ENG_OK && t.id == ids[TOTAL]);
    eng_destroy(e);
    free(ids);
    free(want);
}

/* --------------------------------------------------------------- fork */
/* Logits of `steps` steps of prompt p run alone with sampling sp,
 * prefilled first like the forks are. */
static float *alone_with(fixture *f, const prompt *p, const eng_sampling *sp, int steps,
                         int *free_after) {
    eng_engine *e = make_engine(f, 16, 64, 2);
    float *out = calloc((size_t)steps * f->vocab, sizeof(float));
    int s = t_add(e, p->ids, p->n_prompt, sp);
    eng_err err;
    eng_seq_prefill(e, s, &err);
    for (int k = 0; k < steps; k++) {
        t_step(e);
        const float *lg = eng_seq_logits(e, s, NULL);
        if (lg) memcpy(out + (size_t)k * f->vocab, lg, sizeof(float) * f->vocab);
    }
    if (free_after) *free_after = eng_kv_free_blocks(e);
    eng_destroy(e);
    return out;
}

static void test_fork(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    const prompt *p = &f->p[1];   /* 29 tokens: block 0 full, block 1 partial after prefill */
    enum { N = 3, STEPS = 6 };
    eng_sampling sp[N] = { { 0.8f, 0, 0, 1 }, { 1.0f, 20, 0.9f, 2 }, { 0, 0, 0, 0 } };
    float *want[N], *want_parent;
    int free_parent_alone = 0;
    for (int i = 0; i < N; i++) want[i] = alone_with(f, p, &sp[i], STEPS, NULL);
    want_parent = alone_with(f, p, NULL, STEPS + 1, &free_parent_alone);

    eng_engine *e = make_engine(f, 16, 64, 2);
    eng_err err = { 0 };
    int par = t_add(e, p->ids, p->n_prompt, NULL);
    int f0 = eng_kv_free_blocks(e);
    T_CHECK(eng_seq_prefill(e, par, &err) == ENG_OK);
    int f1 = eng_kv_free_blocks(e);
    T_CHECKF(f1 == f0 - 2, "prefill of 28 tokens took %d blocks, want 2", f0 - f1);
    int ch[N];
    for (int i = 0; i < N; i++) T_CHECK(eng_seq_fork(e, par, &sp[i], &ch[i], &err) == ENG_OK);
    T_CHECKF(eng_kv_free_blocks(e) == f1, "forks took blocks: %d free, want %d",
             eng_kv_free_blocks(e), f1);
    const int *ids;
    int n;
    T_CHECK(eng_seq_tokens(e, ch[0], &ids, &n) == ENG_OK && n == p->n_prompt &&
            !memcmp(ids, p->ids, sizeof(int) * (size_t)n));

    /* first step: all four write position 28 into the shared partial
     * block; three get private copies, the last one left writes in place */
    T_CHECK(t_step(e) == ENG_OK);
    T_CHECKF(eng_kv_free_blocks(e) == f1 - N, "copy-on-write took %d blocks, want %d",
             f1 - eng_kv_free_blocks(e), N);
    for (int k = 0; k < STEPS; k++) {
        if (k) T_CHECK(t_step(e) == ENG_OK);
        for (int i = 0; i < N; i++) {
            const float *lg = eng_seq_logits(e, ch[i], NULL);
            T_CHECKF(lg && !memcmp(lg, want[i] + (size_t)k * f->vocab, sizeof(float) * f->vocab),
                     "child %d step %d: logits differ from the sequence run alone", i, k);
        }
        const float *lg = eng_seq_logits(e, par, NULL);
        T_CHECKF(lg && !memcmp(lg, want_parent + (size_t)k * f->vocab, sizeof(float) * f->vocab),
                 "parent step %d: logits changed by its forks", k);
    }
    /* removing the children gives back exactly their private blocks */
    for (int i = 0; i < N; i++) T_CHECK(eng_seq_remove(e, ch[i]) == ENG_OK);
    T_CHECK(eng_n_live(e) == 1);
    T_CHECK(t_step(e) == ENG_OK);
    T_CHECKF(eng_kv_free_blocks(e) == free_parent_alone, "after removing the forks %d blocks "
             "free, the parent alone leaves %d", eng_kv_free_blocks(e), free_parent_alone);
    const float *lg = eng_seq_logits(e, par, NULL);
    T_CHECKF(lg && !memcmp(lg, want_parent + (size_t)STEPS * f->vocab, sizeof(float) * f->vocab),
             "parent's logits after removing its forks differ");
    T_CHECK(eng_seq_remove(e, par) == ENG_OK);
    T_CHECK(eng_kv_free_blocks(e) == 64);
    for (int i = 0; i < N; i++) free(want[i]);
    free(want_parent);
    eng_destroy(e);
}

/* The same promises with a bf16 KV pool: forks, copy-on-write included,
 * match the sequence run alone bit for bit. */
static void test_fork_kv_bf16(void) {
    kv_format = ENG_KV_BF16;
    test_fork();
    kv_format = ENG_KV_F32;
}

/* ------------------------------------------- bf16 KV, bf16 activations */
/* Keys and values rounded to bf16 move the fixtures' logits by about 1e-3
 * relative (measured worst over the four fixtures: 5.1e-3, tiny-llama; see
 * the printed figures), and so do the products' inputs rounded to bf16
 * (ENG_ACT_BF16); TOL_BF16 bounds either against transformers' float64
 * reference and against the same engine in f32.  The rows of one pass over
 * prompt + generated tokens must differ from the f32 engine's (the
 * rounding happens) and equal, bit for bit, the rows of decode steps
 * forced along the same tokens (what a step writes is what later steps
 * read, and a row's rounding does not depend on the rows beside it). */
#define TOL_BF16 1e-2
#define TOL_ACT_BF16 2e-2   /* bf16 activations: measured worst 9.8e-3 (tiny-qwen3) */
/* Against transformers with every linear layer's input rounded to bf16:
 * rows agree to ~1e-5 until an input that f32 and float64 put on either
 * side of a bf16 rounding edge (~1e-7 relative of one, a few a prompt)
 * moves by a bf16 step, and that position's K/V carries it to the
 * prompt's later rows (up to 5e-3).  So every row within TOL_ACT_BF16 and
 * at least a third within TOL_ACT_BF16_REF (measured 84, 133, 135 and 62
 * of 135 on qwen2, llama, qwen3, gemma3); rounding in a place other than
 * the reference's, or not at all, puts every row near 1e-3 or more. */
#define TOL_ACT_BF16_REF 1e-4

static void rounded(fixture *f, int kvf, int act) {
    const char *what = kvf == ENG_KV_BF16 ? "bf16 KV" : "bf16 activations";
    const double tol = act == ENG_ACT_BF16 ? TOL_ACT_BF16 : TOL_BF16;
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    kv_format = kvf;
    act_format = act;
    eng_engine *e = make_engine(f, 16, 0, 2);
    kv_format = ENG_KV_F32;
    act_format = ENG_ACT_F32;
    eng_engine *e32 = make_engine(f, 16, 0, 2);
    T_CHECK(e && e32);
    if (!e || !e32) { eng_destroy(e); eng_destroy(e32); return; }
    T_CHECK(eng_kv_format(e) == kvf && eng_kv_format(e32) == ENG_KV_F32);
    T_CHECK(eng_act(e) == act && eng_act(e32) == ENG_ACT_F32);
    const eng_config *c = eng_model_config(f->m);
    const size_t kvb = (size_t)c->n_layers * 2 * c->n_kv_heads * c->head_dim * eng_kv_elem_bytes(kvf);
    T_CHECKF(eng_kv_bytes_per_token(e) == kvb &&
             eng_kv_bytes_per_token(e32) == kvb * 4 / eng_kv_elem_bytes(kvf),
             "KV bytes per token: %s %zu, f32 %zu", what, eng_kv_bytes_per_token(e),
             eng_kv_bytes_per_token(e32));
    /* bf16 activations: transformers' float64 forward with every linear
     * layer's input rounded to bf16 (scripts/record_act_bf16_ref.py) */
    float *ref16 = act == ENG_ACT_BF16 ? read_rows(f, "ref_act_bf16_logits.bin") : NULL;
    T_CHECKF(act != ENG_ACT_BF16 || ref16, "%s: no reference for bf16 activations", f->name);
    double worst = 0, worst32 = 0, worst16 = 0;
    int rows_all = 0, differ = 0, argmax_same = 0, close16 = 0;
    for (int pi = 0; pi < f->n_prompts; pi++) {
        const prompt *p = &f->p[pi];
        const int n = p->n_prompt + N_GEN;
        float *one[2];
        for (int b = 0; b < 2; b++) {
            eng_engine *x = b ? e32 : e;
            int s = t_add(x, p->ids, n, NULL);
            eng_seq_keep_all_logits(x, s, 1);
            T_CHECK(t_step(x) == ENG_OK);
            int rows = 0;
            const float *lg = eng_seq_logits(x, s, &rows);
            T_CHECK(lg && rows == n);
            one[b] = calloc((size_t)n * f->vocab, sizeof(float));
            if (lg && rows == n) memcpy(one[b], lg, sizeof(float) * (size_t)n * f->vocab);
            eng_seq_remove(x, s);
        }
        for (int r = 0; r < n; r++) {
            const float *a = one[0] + (size_t)r * f->vocab, *b = one[1] + (size_t)r * f->vocab;
            double er = rel_err(a, ref_row(f, p, r), f->vocab);
            double e2 = rel_err(a, b, f->vocab);
            if (er > worst) worst = er;
            if (e2 > worst32) worst32 = e2;
            T_CHECKF(er < tol && e2 < tol, "%s prompt %d position %d: %s: relative "
                     "error %.3g vs transformers, %.3g vs f32", f->name, pi, r, what, er, e2);
            if (ref16) {
                double e16 = rel_err(a, ref16 + (size_t)(p->row_offset + r) * f->vocab, f->vocab);
                if (e16 > worst16) worst16 = e16;
                close16 += e16 < TOL_ACT_BF16_REF;
                T_CHECKF(e16 < tol, "%s prompt %d position %d: bf16 activations: relative "
                         "error %.3g vs transformers with bf16 inputs", f->name, pi, r, e16);
            }
            differ += memcmp(a, b, sizeof(float) * f->vocab) != 0;
            int ia = 0, ib = 0;
            for (int v = 1; v < f->vocab; v++) {
                if (a[v] > a[ia]) ia = v;
                if (b[v] > b[ib]) ib = v;
            }
            argmax_same += ia == ib;
            rows_all++;
        }
        /* decode steps forced along ids[n_prompt..n) read what earlier steps wrote */
        int s = t_add(e, p->ids, p->n_prompt, NULL);
        eng_err err = { 0 };
        T_CHECK(eng_seq_force(e, s, p->ids + p->n_prompt, N_GEN, &err) == ENG_OK);
        for (int k = 0; k <= N_GEN; k++) {   /* step k: the row of position n_prompt - 1 + k */
            T_CHECK(t_step(e) == ENG_OK);
            const float *lg = eng_seq_logits(e, s, NULL);
            const float *want = one[0] + (size_t)(p->n_prompt - 1 + k) * f->vocab;
            T_CHECKF(lg && !memcmp(lg, want, sizeof(float) * f->vocab),
                     "%s prompt %d step %d: decode logits differ from the one-pass rows", f->name, pi, k);
        }
        eng_seq_remove(e, s);
        free(one[0]);
        free(one[1]);
    }
    T_CHECKF(differ > 0, "%s: logits with %s equal the f32 engine's on every row", f->name, what);
    printf("  %s: %s: worst relative error %.2e (vs transformers), %.2e (vs f32); "
           "argmax as f32 on %d of %d rows\n", f->name, what, worst, worst32, argmax_same, rows_all);
    if (ref16) {
        printf("  %s: bf16 activations: worst relative error %.2e vs transformers with bf16 inputs; "
               "%d of %d rows within %.0e\n", f->name, worst16, close16, rows_all, TOL_ACT_BF16_REF);
        T_CHECKF(3 * close16 >= rows_all, "%s: %d of %d rows within %.0e of transformers with bf16 inputs",
                 f->name, close16, rows_all, TOL_ACT_BF16_REF);
    }
    free(ref16);
    eng_destroy(e);
    eng_destroy(e32);
}

static void kv_bf16(fixture *f) { rounded(f, ENG_KV_BF16, ENG_ACT_F32); }
static void act_bf16(fixture *f) { rounded(f, ENG_KV_F32, ENG_ACT_BF16); }

static void test_kv_bf16_qwen2(void) { kv_bf16(&fx[0]); }
static void test_kv_bf16_llama(void) { kv_bf16(&fx[1]); }
static void test_kv_bf16_qwen3(void) { kv_bf16(&fx[2]); }
static void test_kv_bf16_gemma3(void) { kv_bf16(&fx[3]); }
static void test_act_bf16_qwen2(void) { act_bf16(&fx[0]); }
static void test_act_bf16_llama(void) { act_bf16(&fx[1]); }
static void test_act_bf16_qwen3(void) { act_bf16(&fx[2]); }
static void test_act_bf16_gemma3(void) { act_bf16(&fx[3]); }

/* A fork made right away (nothing cached) and removed right away. */
static void test_fork_unprefilled(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    const prompt *p = &f->p[0];
    eng_engine *e = make_engine(f, 8, 32, 2);
    eng_err err;
    int par = t_add(e, p->ids, p->n_prompt, NULL), c = -1;
    T_CHECK(eng_seq_fork(e, par, NULL, &c, &err) == ENG_OK && c != par);
    T_CHECK(eng_kv_free_blocks(e) == 32);
    T_CHECK(t_step(e) == ENG_OK);
    eng_token a, b;
    T_CHECK(eng_seq_last(e, par, &a) == ENG_OK && eng_seq_last(e, c, &b) == ENG_OK);
    T_CHECK(a.id == b.id && a.id == p->ids[p->n_prompt]);
    const float *la = eng_seq_logits(e, par, NULL), *lb = eng_seq_logits(e, c, NULL);
    T_CHECK(la && lb && !memcmp(la, lb, sizeof(float) * f->vocab));
    int per = (p->n_prompt + 7) / 8;
    T_CHECK(eng_kv_free_blocks(e) == 32 - 2 * per);
    T_CHECK(eng_seq_remove(e, c) == ENG_OK);
    T_CHECK(eng_kv_free_blocks(e) == 32 - per);
    eng_destroy(e);
}

/* Keeping every row's logits must not change what a sampled sequence draws. */
static void test_keep_all_sampling(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    const prompt *p = &f->p[0];
    eng_engine *e = make_engine(f, 16, 0, 2);
    eng_sampling sp = { 1.2f, 0, 0.95f, 99 };
    int a = t_add(e, p->ids, p->n_prompt, &sp), b = t_add(e, p->ids, p->n_prompt, &sp);
    eng_seq_keep_all_logits(e, b, 1);
    for (int k = 0; k < 8; k++) T_CHECK(t_step(e) == ENG_OK);
    const int *ia, *ib;
    int na, nb;
    eng_seq_tokens(e, a, &ia, &na);
    eng_seq_tokens(e, b, &ib, &nb);
    T_CHECK(na == nb && !memcmp(ia, ib, sizeof(int) * (size_t)na));
    eng_token ta, tb;
    eng_seq_last(e, a, &ta);
    eng_seq_last(e, b, &tb);
    T_CHECK(ta.id == tb.id && ta.logprob == tb.logprob && ta.entropy == tb.entropy);
    T_CHECK(ta.logprob < 0 && ta.entropy > 0);
    /* a keep-all prefill of another sequence keeps its own rows and leaves
     * the others' last logits in place */
    float *saved = malloc(sizeof(float) * f->vocab);
    memcpy(saved, eng_seq_logits(e, a, NULL), sizeof(float) * f->vocab);
    int c = t_add(e, f->p[1].ids, f->p[1].n_prompt, NULL), rows = 0;
    eng_seq_keep_all_logits(e, c, 1);
    eng_err err;
    T_CHECK(eng_seq_prefill(e, c, &err) == ENG_OK);
    const float *lc = eng_seq_logits(e, c, &rows);
    T_CHECK(lc && rows == f->p[1].n_prompt - 1);
    if (lc) check_rows(f, &f->p[1], lc, rows, 0, "prefill keep-all");
    T_CHECK(!memcmp(saved, eng_seq_logits(e, a, NULL), sizeof(float) * f->vocab));
    free(saved);
    eng_destroy(e);
}

/* ---------------------------------------------------- pause, append */
static void test_pause_append(void) {
    fixture *f = &fx[1];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    const prompt *p = &f->p[1];
    eng_engine *e = make_engine(f, 16, 0, 2);
    eng_err err;
    int half = p->n_prompt / 2;
    int a = t_add(e, p->ids, half, NULL), b = t_add(e, f->p[0].ids, f->p[0].n_prompt, NULL);
    T_CHECK(eng_seq_pause(e, a, 1) == ENG_OK);
    T_CHECK(t_step(e) == ENG_OK);
    const int *ids;
    int n;
    eng_seq_tokens(e, a, &ids, &n);
    T_CHECK(n == half);                   /* paused: untouched */
    eng_seq_tokens(e, b, &ids, &n);
    T_CHECK(n == f->p[0].n_prompt + 1);
    T_CHECK(eng_seq_pause(e, b, 1) == ENG_OK);
    T_CHECK(eng_seq_pause(e, a, 0) == ENG_OK);
    T_CHECK(eng_seq_append(e, a, p->ids + half, p->n_prompt - half, &err) == ENG_OK);
    eng_seq_keep_all_logits(e, a, 1);
    T_CHECK(t_step(e) == ENG_OK);
    int rows = 0;
    const float *lg = eng_seq_logits(e, a, &rows);
    T_CHECK(lg && rows == p->n_prompt);
    if (lg) check_rows(f, p, lg, rows, 0, "append");
    eng_token t;
    T_CHECK(eng_seq_last(e, a, &t) == ENG_OK && t.id == p->ids[p->n_prompt]);
    eng_seq_tokens(e, b, &ids, &n);
    T_CHECK(n == f->p[0].n_prompt + 1);
    /* all paused: a step does nothing */
    T_CHECK(eng_seq_pause(e, a, 1) == ENG_OK);
    T_CHECK(t_step(e) == ENG_OK);
    eng_seq_tokens(e, a, &ids, &n);
    T_CHECK(n == p->n_prompt + 1);
    eng_destroy(e);
}

/* A truncated sequence keeps the KV of what it keeps: appending the cut
 * tokens again runs only them, with the reference logits, and the
 * continuation is the one before the cut. */
static void test_truncate(void) {
    fixture *f = &fx[1];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    const prompt *p = &f->p[1];
    int np = p->n_prompt;
    eng_engine *e = make_engine(f, 16, 0, 2);
    eng_err err;
    int a = t_add(e, p->ids, np, NULL);
    T_CHECK(eng_seq_n_cached(e, a) == 0);
    T_CHECK(t_step(e) == ENG_OK);
    eng_token t0, t1;
    T_CHECK(eng_seq_last(e, a, &t0) == ENG_OK && t0.id == p->ids[np]);
    T_CHECK(eng_seq_n_cached(e, a) == np);
    T_CHECK(eng_seq_truncate(e, a, np - 2, &err) == ENG_OK);
    const int *ids;
    int n;
    eng_seq_tokens(e, a, &ids, &n);
    T_CHECK(n == np - 2);
    T_CHECK(eng_seq_n_cached(e, a) == np - 2);
    T_CHECK(eng_seq_append(e, a, p->ids + np - 2, 2, &err) == ENG_OK);
    eng_seq_keep_all_logits(e, a, 1);
    T_CHECK(t_step(e) == ENG_OK);
    int rows = 0;
    const float *lg = eng_seq_logits(e, a, &rows);
    T_CHECK(lg && rows == 2);   /* only the two cut tokens ran */
    if (lg && rows == 2) check_rows(f, p, lg, rows, np - 2, "truncate");
    T_CHECK(eng_seq_last(e, a, &t1) == ENG_OK && t1.id == t0.id);
    /* bad arguments */
    T_CHECK(eng_seq_truncate(e, a, np + 2, &err) == ENG_EINVAL);
    T_CHECK(eng_seq_truncate(e, a, -1, &err) == ENG_EINVAL);
    T_CHECK(eng_seq_truncate(e, 63, 0, &err) == ENG_EINVAL);
    T_CHECK(eng_seq_n_cached(e, 63) == -1);
    T_CHECK(eng_seq_want_logits(e, 63, 1) == ENG_EINVAL);
    T_CHECK(eng_seq_want_logits(e, a, 1) == ENG_OK);
    eng_destroy(e);
}

/* --------------------------------------------------------------- full */
static void test_efull(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    const prompt *p = &f->p[0];
    eng_engine *e = make_engine(f, 4, 3, 2);   /* room for 12 tokens */
    eng_err err = { 0 };
    int s = t_add(e, p->ids, 10, NULL);
    T_CHECK(t_step(e) == ENG_OK);               /* positions 0..9: 3 blocks */
    T_CHECK(eng_kv_free_blocks(e) == 0);
    T_CHECK(t_step(e) == ENG_OK);               /* 10 */
    T_CHECK(t_step(e) == ENG_OK);               /* 11 */
    const int *ids;
    int n;
    eng_seq_tokens(e, s, &ids, &n);
    T_CHECK(n == 13);
    int rc = eng_step(e, &err);               /* 12 needs a fourth block */
    T_CHECKF(rc == ENG_EFULL, "rc %d", rc);
    T_CHECK(err.code == ENG_EFULL && strstr(err.msg, "KV cache full"));
    printf("  message: %s\n", err.msg);
    eng_seq_tokens(e, s, &ids, &n);
    T_CHECK(n == 13);                          /* unchanged */
    T_CHECK(eng_seq_remove(e, s) == ENG_OK);
    T_CHECK(eng_kv_free_blocks(e) == 3);

    /* two sequences that fit one at a time but not together: no partial step */
    int a = t_add(e, p->ids, 8, NULL), b = t_add(e, f->p[1].ids, 8, NULL);
    err.code = 0;
    T_CHECK(eng_step(e, &err) == ENG_EFULL);
    eng_seq_tokens(e, a, &ids, &n);
    T_CHECK(n == 8);
    eng_seq_tokens(e, b, &ids, &n);
    T_CHECK(n == 8);
    T_CHECK(eng_kv_free_blocks(e) == 3);
    eng_seq_remove(e, b);
    /* still usable, and right */
    eng_seq_keep_all_logits(e, a, 1);
    T_CHECK(t_step(e) == ENG_OK);
    int rows = 0;
    const float *lg = eng_seq_logits(e, a, &rows);
    T_CHECK(lg && rows == 8);
    if (lg) check_rows(f, p, lg, rows, 0, "after EFULL");
    /* prefill refuses too */
    int c = t_add(e, f->p[1].ids, 12, NULL);
    T_CHECK(eng_seq_prefill(e, c, &err) == ENG_EFULL);
    eng_destroy(e);
}

/* ------------------------------------------------------------ warm-up */
/* eng_warmup runs prompt passes up to the size asked (capped by the free KV
 * blocks), gives every block back, and leaves the engine computing the
 * reference logits. */
/* The default pool (n_blocks 0) holds one whole context even for one
 * sequence (it was max_seqs x max_pos/4: serve --max-batch 1 stopped a
 * stream at a quarter of the context), and max_seqs x max_pos/4 above. */
static void test_default_pool(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    const int max_pos = f->m->cfg.max_pos, seqs[3] = {1, 2, 64};
    for (int i = 0; i < 3; i++) {
        eng_opts o = { .backend = ENG_BACKEND_CPU, .n_threads = 1, .block_size = 16,
                       .max_seqs = seqs[i], .kv_format = kv_format };
        eng_engine *e = NULL;
        eng_err err = { 0 };
        if (eng_create(f->m, &o, &e, &err)) T_FAIL("eng_create: %s", err.msg);
        const long want = (long)seqs[i] * (max_pos / 4) > max_pos ? (long)seqs[i] * (max_pos / 4) : max_pos;
        const long have = (long)eng_kv_free_blocks(e) * 16;
        printf("  %d sequences: %ld positions (max_pos %d)\n", seqs[i], have, max_pos);
        T_CHECKF(have >= want && have < want + 16, "%d sequences: %ld positions, want %ld",
                 seqs[i], have, want);
        eng_destroy(e);
    }
}

static void test_warmup(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    const prompt *p = &f->p[0];
    eng_engine *e = make_engine(f, 16, 16, 2);   /* room for 256 tokens */
    eng_err err = { 0 };
    int done = -1, free0 = eng_kv_free_blocks(e);
    T_CHECK(eng_warmup(e, 100, &done, &err) == ENG_OK);
    T_CHECKF(done == 100, "warmed %d of 100 tokens", done);
    T_CHECK(eng_kv_free_blocks(e) == free0);
    T_CHECK(eng_warmup(e, 100000, &done, &err) == ENG_OK);
    T_CHECKF(done == (free0 - 1) * 16 - 1, "warmed %d tokens with %d free blocks", done, free0);
    T_CHECK(eng_kv_free_blocks(e) == free0);
    int s = t_add(e, p->ids, p->n_prompt, NULL);
    eng_seq_keep_all_logits(e, s, 1);
    T_CHECK(t_step(e) == ENG_OK);
    int rows = 0;
    const float *lg = eng_seq_logits(e, s, &rows);
    T_CHECK(lg && rows == p->n_prompt);
    if (lg) check_rows(f, p, lg, rows, 0, "after warm-up");
    T_CHECK(eng_warmup(e, 0, &done, &err) == ENG_EINVAL && done == 0);
    T_CHECK(eng_warmup(NULL, 10, NULL, &err) == ENG_EINVAL);
    eng_destroy(e);
}

/* ------------------------------------------------------ bad arguments */
static void test_bad_args(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    eng_engine *e = make_engine(f, 16, 16, 1);
    eng_err err = { 0 };
    int id = -1, tok[3] = { 1, 2, 3 };
    eng_token t;
    const int *ids;
    int n;
    T_CHECK(eng_seq_add(e, tok, 0, NULL, &id, &err) == ENG_EINVAL);
    T_CHECK(eng_seq_add(e, NULL, 3, NULL, &id, &err) == ENG_EINVAL);
    tok[1] = f->vocab;
    T_CHECK(eng_seq_add(e, tok, 3, NULL, &id, &err) == ENG_EINVAL);
    printf("  message: %s\n", err.msg);
    tok[1] = -1;
    T_CHECK(eng_seq_add(e, tok, 3, NULL, &id, &err) == ENG_EINVAL);
    tok[1] = 2;
    T_CHECK(eng_seq_prefill(e, 7, &err) == ENG_EINVAL);
    T_CHECK(eng_seq_fork(e, 7, NULL, &id, &err) == ENG_EINVAL);
    T_CHECK(eng_seq_remove(e, 7) == ENG_EINVAL);
    T_CHECK(eng_seq_remove(e, -1) == ENG_EINVAL);
    T_CHECK(eng_seq_keep_all_logits(e, 1000000, 1) == ENG_EINVAL);
    T_CHECK(eng_seq_pause(e, 7, 1) == ENG_EINVAL);
    T_CHECK(eng_seq_append(e, 7, tok, 3, &err) == ENG_EINVAL);
    T_CHECK(eng_seq_last(e, 7, &t) == ENG_EINVAL);
    T_CHECK(eng_seq_tokens(e, 7, &ids, &n) == ENG_EINVAL);
    T_CHECK(eng_seq_n_prompt(e, 7) < 0);
    T_CHECK(eng_seq_logits(e, 7, &n) == NULL && n == 0);
    T_CHECK(eng_seq_add(e, tok, 3, NULL, &id, &err) == ENG_OK);
    T_CHECK(eng_seq_last(e, id, &t) == ENG_EINVAL);   /* nothing sampled yet */
    tok[2] = f->vocab + 5;
    T_CHECK(eng_seq_append(e, id, tok, 3, &err) == ENG_EINVAL);
    eng_seq_tokens(e, id, &ids, &n);
    T_CHECK(n == 3);
    T_CHECK(eng_seq_remove(e, id) == ENG_OK);
    T_CHECK(eng_seq_remove(e, id) == ENG_EINVAL);    /* gone */
    eng_destroy(e);

    eng_opts o = { .backend = 7 };
    eng_engine *bad = NULL;
    T_CHECK(eng_create(f->m, &o, &bad, &err) != ENG_OK && !bad);
    o = (eng_opts){ .block_size = -1 };
    T_CHECK(eng_create(f->m, &o, &bad, &err) == ENG_EINVAL && !bad);
    T_CHECK(eng_create(NULL, NULL, &bad, &err) == ENG_EINVAL);
    /* KV formats: the two names, nothing else */
    o = (eng_opts){ .kv_format = 2 };
    T_CHECK(eng_create(f->m, &o, &bad, &err) == ENG_EINVAL && !bad);
    T_CHECK(eng_kv_format_parse("f32") == ENG_KV_F32 && eng_kv_format_parse("bf16") == ENG_KV_BF16);
    T_CHECK(eng_kv_format_parse("BF16") < 0 && eng_kv_format_parse("bf16 ") < 0 &&
            eng_kv_format_parse("") < 0 && eng_kv_format_parse(NULL) < 0);
    T_CHECK(!strcmp(eng_kv_format_name(ENG_KV_BF16), "bf16") && !strcmp(eng_kv_format_name(9), "?"));
    /* activation formats: the four names, nothing else; Q16 needs every
     * product in a block type (this fixture's are f32) and one rank; BF16
     * one rank and dense weights (not --quant); AUTO (the default) takes
     * F32 here, as on every CPU engine */
    o = (eng_opts){ .act = 4 };
    T_CHECK(eng_create(f->m, &o, &bad, &err) == ENG_EINVAL && !bad);
    T_CHECK(eng_act_parse("f32") == ENG_ACT_F32 && eng_act_parse("q16") == ENG_ACT_Q16 &&
            eng_act_parse("bf16") == ENG_ACT_BF16 && eng_act_parse("auto") == ENG_ACT_AUTO &&
            ENG_ACT_AUTO == 0 && eng_act_parse("q8") < 0 && eng_act_parse("Q16") < 0 &&
            eng_act_parse("BF16") < 0 && eng_act_parse("") < 0);
    T_CHECK(!strcmp(eng_act_name(ENG_ACT_Q16), "q16") && !strcmp(eng_act_name(ENG_ACT_AUTO), "auto") &&
            !strcmp(eng_act_name(ENG_ACT_BF16), "bf16") && !strcmp(eng_act_name(7), "?"));
    {
        o = (eng_opts){ .act = ENG_ACT_BF16, .n_threads = 1 };
        eng_engine *eb = NULL;
        T_CHECKF(eng_create(f->m, &o, &eb, &err) == ENG_OK && eb && eng_act(eb) == ENG_ACT_BF16,
                 "act bf16: %s", err.msg);
        eng_destroy(eb);
        o.tp = 2;
        T_CHECKF(eng_create(f->m, &o, &bad, &err) == ENG_EUNSUPPORTED && !bad && strstr(err.msg, "one rank") &&
                 strstr(err.msg, "bf16"), "act bf16, tp 2: %s", err.msg);
        o.tp = 1;
        o.quant = ENG_QUANT_ON;   /* on CUDA (refused before any backend is made) */
        o.backend = ENG_BACKEND_CUDA;
        T_CHECKF(eng_create(f->m, &o, &bad, &err) == ENG_EUNSUPPORTED && !bad && strstr(err.msg, "--quant") &&
                 strstr(err.msg, "dense"), "act bf16, --quant: %s", err.msg);
    }
    for (int tp = 1; tp <= 2; tp++) {
        o = (eng_opts){ .n_threads = 2, .tp = tp };
        eng_engine *ea = NULL;
        T_CHECKF(eng_create(f->m, &o, &ea, &err) == ENG_OK && ea && eng_act(ea) == ENG_ACT_F32,
                 "tp %d, act auto: %s", tp, err.msg);
        eng_destroy(ea);
    }
    for (int a = ENG_ACT_Q16; a <= ENG_ACT_Q16; a++) {
        o = (eng_opts){ .act = a, .n_threads = 1 };
        T_CHECKF(eng_create(f->m, &o, &bad, &err) == ENG_EUNSUPPORTED && !bad &&
                 strstr(err.msg, eng_act_name(a)) && strstr(err.msg, "block type"), "act %d: %s", a, err.msg);
        o.tp = 2;
        T_CHECKF(eng_create(f->m, &o, &bad, &err) == ENG_EUNSUPPORTED && !bad && strstr(err.msg, "one rank"),
                 "act %d, tp 2: %s", a, err.msg);
    }
    {
        eng_opts a = { 0 };
        int u = -1;
        T_CHECK(eng_opts_arg("--act", "q16", &a, &u, &err) == ENG_OK && u == 2 && a.act == ENG_ACT_Q16);
        T_CHECK(eng_opts_arg("--act", "q8", &a, &u, &err) == ENG_EINVAL &&
                strstr(err.msg, "--act must be auto, f32, q16 or bf16 (got 'q8')") && a.act == ENG_ACT_Q16);
        T_CHECK(eng_opts_arg("--act", "auto", &a, &u, &err) == ENG_OK && u == 2 && a.act == ENG_ACT_AUTO);
        T_CHECK(eng_opts_arg("--act", NULL, &a, &u, &err) == ENG_EINVAL && strstr(err.msg, "nothing"));
    }
    /* --quant / --no-quant: switches of their own (no value); AUTO unless given */
    eng_opts q = { 0 };
    int used = -1;
    T_CHECK(eng_opts_arg("--quant", "--cuda", &q, &used, &err) == ENG_OK && used == 1 &&
            q.quant == ENG_QUANT_ON && q.backend != ENG_BACKEND_CUDA);
    T_CHECK(eng_opts_arg("--no-quant", "--quant", &q, &used, &err) == ENG_OK && used == 1 &&
            q.quant == ENG_QUANT_OFF);
    T_CHECK(eng_opts_arg("--quant-lean", NULL, &q, &used, &err) == ENG_OK && used == 1 &&
            q.quant == ENG_QUANT_LEAN);
    q = (eng_opts){ 0 };
    T_CHECK(eng_opts_arg("--cuda", NULL, &q, &used, &err) == ENG_OK && used == 1 &&
            q.quant == ENG_QUANT_AUTO);
    T_CHECK(eng_opts_arg("--quantize", NULL, &q, &used, &err) == ENG_OK && used == 0 &&
            q.quant == ENG_QUANT_AUTO);
    /* on the CPU: AUTO and OFF read the dequantized weights, ON and LEAN
     * are refused, anything else is not a setting */
    for (int s = ENG_QUANT_AUTO; s <= ENG_QUANT_LEAN + 1; s++) {
        o = (eng_opts){ .quant = s, .n_threads = 1 };
        eng_engine *qe = NULL;
        const int rc = eng_create(f->m, &o, &qe, &err);
        if (s == ENG_QUANT_AUTO || s == ENG_QUANT_OFF)
            T_CHECKF(rc == ENG_OK && qe && !eng_quantized(qe), "quant %d: %s", s, err.msg);
        else
            T_CHECKF(rc == ENG_EINVAL && !qe, "quant %d: rc %d", s, rc);
        eng_destroy(qe);
    }
    T_CHECK(!eng_quantized(NULL));
    /* how AUTO / ON hold a GGUF file on the GPU: {dense alone, beside, alone} */
    const struct { int set, ok[3], fit[3], want, got; } qc[] = {
        {ENG_QUANT_AUTO, {1, 1, 1}, {900, 800, 1000}, 500, 1},   /* the wanted pool fits beside */
        {ENG_QUANT_AUTO, {1, 1, 1}, {900, 500, 1000}, 5000, 1},  /* beside: half of alone's pool */
        {ENG_QUANT_AUTO, {1, 1, 1}, {900, 499, 1000}, 5000, 2},  /* beside starves the pool */
        {ENG_QUANT_AUTO, {1, 1, 0}, {900, 10, 0}, 5000, 1},      /* no blocks alone (types) */
        {ENG_QUANT_AUTO, {1, 0, 1}, {900, 0, 1000}, 500, 2},     /* beside does not fit */
        {ENG_QUANT_AUTO, {1, 0, 0}, {900, 0, 0}, 500, 0},        /* only the dense copy fits */
        {ENG_QUANT_ON, {1, 0, 0}, {900, 0, 0}, 500, 1},          /* ON: never the dense copy alone */
        {ENG_QUANT_ON, {0, 1, 1}, {0, 100, 1000}, 5000, 2},
        {ENG_QUANT_AUTO, {0, 0, 0}, {0, 0, 0}, 500, 1},          /* nothing fits: create reports */
    };
    for (size_t i = 0; i < sizeof qc / sizeof *qc; i++)
        T_CHECKF(eng_quant_choice(qc[i].set, qc[i].ok, qc[i].fit, qc[i].want) == qc[i].got,
                 "eng_quant_choice case %zu: %d, wanted %d", i,
                 eng_quant_choice(qc[i].set, qc[i].ok, qc[i].fit, qc[i].want), qc[i].got);
}

/* The backend checks what it is handed: bad rows are errors, not reads. */
/* A model the CUDA backend does not implement is refused by eng_create with
 * ENG_EUNSUPPORTED naming the architecture (before any device is touched,
 * so this runs without a GPU); a build without CUDA refuses the backend. */
static void test_cuda_unsupported(void) {
    fixture *f = &fx[3];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    char arch[32];
    memcpy(arch, f->m->cfg.arch, sizeof arch);
    snprintf(f->m->cfg.arch, sizeof f->m->cfg.arch, "mamba");
    eng_opts o = { .backend = ENG_BACKEND_CUDA, .n_blocks = 16, .max_seqs = 1 };
    eng_engine *e = NULL;
    eng_err err = { 0 };
    int rc = eng_create(f->m, &o, &e, &err);
    memcpy(f->m->cfg.arch, arch, sizeof arch);
    printf("  message: %s\n", err.msg);
#ifdef BRISK_CUDA
    T_CHECKF(rc == ENG_EUNSUPPORTED && !e && strstr(err.msg, "architecture mamba"), "rc %d: %s", rc,
             err.msg);
#else
    T_CHECKF(rc == ENG_EUNSUPPORTED && !e && strstr(err.msg, "not available in this build"),
             "rc %d: %s", rc, err.msg);
#endif
    eng_destroy(e);
}

static void test_backend_checks(void) {
    fixture *f = &fx[0];
    if (!load_fixture(f)) T_FAIL("bundled fixture tests/fixtures/%s did not load", f->name);
    eng_backend *be = NULL;
    eng_err err = { 0 };
    T_CHECK(eng_backend_cpu_create(f->m, 4, 4, ENG_KV_F32, ENG_ACT_F32, 2, &be, &err) == ENG_OK && be);
    if (!be) return;
    int tok[3] = { 5, 6, 7 }, pos[3] = { 0, 1, 2 }, rs[3] = { 0, 0, 0 }, len = 3;
    int table[1] = { 2 }, out = 2;
    const int *tables[1] = { table };
    float *lg = malloc(sizeof(float) * f->vocab);
    eng_fwd_batch b = { .n_rows = 3, .tokens = tok, .pos = pos, .row_seq = rs, .n_seqs = 1,
                        .seq_len = &len, .block_table = tables, .n_out = 1, .out_rows = &out,
                        .logits = lg };
    T_CHECK(be->forward(be, &b, &err) == ENG_OK);
    const prompt *p = &f->p[0];
    int ptok[3] = { p->ids[0], p->ids[1], p->ids[2] };
    b.tokens = ptok;
    T_CHECK(be->forward(be, &b, &err) == ENG_OK);
    check_rows(f, p, lg, 1, 2, "backend");
    b.tokens = tok;
    tok[1] = f->vocab;
    T_CHECK(be->forward(be, &b, &err) == ENG_EINVAL);
    tok[1] = 6;
    table[0] = 4;
    T_CHECK(be->forward(be, &b, &err) == ENG_EINVAL);
    table[0] = 2;
    pos[2] = 1;   /* not increasing */
    T_CHECK(be->forward(be, &b, &err) == ENG_EINVAL);
    pos[2] = 3;   /* beyond seq_len */
    T_CHECK(be->forward(be, &b, &err) == ENG_EINVAL);
    pos[2] = 2;
    rs[0] = 1;
    T_CHECK(be->forward(be, &b, &err) == ENG_EINVAL);
    rs[0] = 0;
    out = 3;
    T_CHECK(be->forward(be, &b, &err) == ENG_EINVAL);
    out = 2;
    /* a forced id: outside the vocabulary refused; inside, it is the token,
     * scored from the same row's logits (the draw still advances rng) */
    eng_token st;
    eng_sampling sp = { .temperature = 1.0f };
    uint64_t rng = 7, rng_drawn = 7;
    int force = f->vocab;
    float *lgf = malloc(sizeof(float) * f->vocab);
    b.sampled = &st; b.samp = &sp; b.rng = &rng; b.force = &force; b.logits = lgf;
    b.tokens = ptok;   /* the prompt's K/V again: the copy check below reads them */
    T_CHECK(be->forward(be, &b, &err) == ENG_EINVAL);
    force = 9;
    T_CHECK(lgf && be->forward(be, &b, &err) == ENG_OK);
    if (lgf) {
        eng_token want = eng_token_of(lgf, f->vocab, 9);
        eng_sample(lgf, f->vocab, &sp, &rng_drawn);
        T_CHECK(st.id == 9 && st.logprob == want.logprob && st.entropy == want.entropy && rng == rng_drawn);
    }
    free(lgf);
    b.sampled = NULL; b.samp = NULL; b.rng = NULL; b.force = NULL; b.logits = lg;
    T_CHECK(be->copy_block(be, 2, 4, &err) == ENG_EINVAL);
    T_CHECK(be->copy_block(be, 2, 3, &err) == ENG_OK);
    table[0] = 3;   /* the copy holds the same keys and values */
    float *lg2 = malloc(sizeof(float) * f->vocab);
    b.n_rows = 1;
    b.tokens = ptok + 2;
    b.pos = pos + 2;
    out = 0;
    b.logits = lg2;
    T_CHECK(be->forward(be, &b, &err) == ENG_OK);
    T_CHECK(!memcmp(lg, lg2, sizeof(float) * f->vocab));
    free(lg);
    free(lg2);
    be->destroy(be);
}

int main(void) {
    T_RUN(test_reference_qwen2);
    T_RUN(test_reference_llama);
    T_RUN(test_reference_qwen3);
    T_RUN(test_reference_gemma3);
    T_RUN(test_batched_qwen2);
    T_RUN(test_batched_llama);
    T_RUN(test_batched_qwen3);
    T_RUN(test_batched_gemma3);
    T_RUN(test_many_lengths_llama);
    T_RUN(test_many_lengths_gemma3);
    T_RUN(test_long_prompt);
    T_RUN(test_fork);
    T_RUN(test_fork_kv_bf16);
    T_RUN(test_kv_bf16_qwen2);
    T_RUN(test_kv_bf16_llama);
    T_RUN(test_kv_bf16_qwen3);
    T_RUN(test_kv_bf16_gemma3);
    T_RUN(test_act_bf16_qwen2);
    T_RUN(test_act_bf16_llama);
    T_RUN(test_act_bf16_qwen3);
    T_RUN(test_act_bf16_gemma3);
    T_RUN(test_fork_unprefilled);
    T_RUN(test_keep_all_sampling);
    T_RUN(test_pause_append);
    T_RUN(test_truncate);
    T_RUN(test_efull);
    T_RUN(test_default_pool);
    T_RUN(test_warmup);
    T_RUN(test_bad_args);
    T_RUN(test_backend_checks);
    T_RUN(test_cuda_unsupported);
    for (int i = 0; i < 2; i++) {
        eng_model_free(fx[i].m);
        free(fx[i].ref);
        for (int j = 0; j < fx[i].n_prompts; j++) free(fx[i].p[j].ids);
    }
    T_DONE();
}
