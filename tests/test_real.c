/* test_real.c — the real models brisk runs, as GGUF files fetched by
 * scripts/models.sh (missing is a failure), against transformers' f32 CPU
 * run of the same file (tests/fixtures/real/<model>.json, made by
 * scripts/record_gguf_ref.py):
 *   SmolLM2-135M-Instruct, Q4_1 (llama architecture), 5 chat and 5 plain
 *     prompts;
 *   Gemma 3 270M (base), Q4_K_M (Q5_0, Q4_K, Q8_0, Q6_K and F32 tensors),
 *     10 plain prompts after <bos>.
 * For each model:
 *   - loaded as the app loads it (eng_model_load_blocks: the quantized
 *     matrices' f32 copy unmade), then the copy made (eng_model_dense);
 *   - a few rows of a few weights (dequantized; SmolLM2's q/k rows
 *     reordered; Gemma's norms as the multiplier 1 + w) equal transformers'
 *     bit for bit;
 *   - each prompt encodes to the recorded ids;
 *   - 64 greedy tokens per prompt, all prompts in one batch, equal
 *     transformers', token for token;
 *   - the recorded logits (top 20, 20 fixed ids, at 5 steps per prompt) are
 *     within the model's tolerance of transformers', relative to the step's
 *     largest |logit| over the vocabulary.  Both run in f32 on the same
 *     weights; the difference is summation order (and for Gemma RoPE
 *     tables, tanh and the embedding scale computed in another order), the
 *     test prints the measured maximum.  SmolLM2: measured 3.4e-6, tolerance
 *     5e-5 (15x room), below the smallest top-2 margin of a recorded greedy
 *     step (0.0035 on logits of ~20, 1.7e-4 relative), so a real error
 *     cannot pass.  Gemma 3: measured 1.05e-6, tolerance 3e-5 (28x room);
 *     its smallest top-2 margin is 0.0024 on logits of up to 31 (7.7e-5
 *     relative), more than twice the tolerance;
 *   - (SmolLM2) a truncated copy of the file fails with a message naming
 *     the copy.
 * With BRISK_TEST_BACKEND=cuda (a CUDA build on a GPU machine) the greedy
 * and logit checks run through the CUDA backend instead of the CPU's, with
 * the same tolerance: it keeps these models' weights in f32 (the GGUFs'
 * types are not bf16) and computes in f32, and by default (eng_opts.quant
 * AUTO) its decode passes read the file's quantized blocks (all prompts
 * in one batch: kern_qskinny's rows).  BRISK_TEST_QUANT=0 runs them on the
 * f32 copy alone (ENG_QUANT_OFF); BRISK_TEST_QUANT=1 one prompt at a time
 * with the blocks required (ENG_QUANT_ON), so every decode step is one row
 * through kern_qgemv; BRISK_TEST_QUANT=lean in one batch with the blocks
 * alone on the device (ENG_QUANT_LEAN: the prompt pass makes each
 * product's halves from them, the embedding comes from its blocks).  Same
 * checks, same tolerance.
 * With BRISK_TEST_KV=bf16 the engine's KV cache is bf16 (eng.h): the test
 * prints how many prompts still follow transformers' greedy tokens (not
 * required: bf16 keys and values move logits by ~1e-3) and checks the
 * recorded logits, while they follow, within BF16_KV_TOL; on CUDA it also
 * runs the CPU backend with a bf16 cache and requires the same tokens from
 * both, prompt for prompt.
 * test_*_greedy_q16 run the greedy checks again with --act q16 (eng.h: the
 * products' inputs rounded to two int8 planes per 16 elements): every
 * prompt must still follow transformers, the logits within Q16_ACT_TOL;
 * BRISK_TEST_ACT=q16 makes every run so (on CUDA also checked against the
 * CPU's q16 tokens).  test_*_greedy_bf16 run them with --act bf16 on the
 * CPU (every product's input rounded to bf16): how many prompts follow is
 * printed, not required, and the logits while they follow are held to
 * BF16_ACT_TOL (on CUDA these files' dense weights are f32, which --act
 * bf16 refuses there). */
#include "t.h"
#include <unistd.h>
#include <cjson/cJSON.h>
#include "internal.h"

#define SMOL_TOL 5e-5
#define GEMMA_TOL 3e-5
/* bf16 KV cache: logit error relative to the step's max |logit|, measured
 * on the CPU: SmolLM2 1.47e-2 (one prompt of 10 leaves transformers'
 * greedy tokens at step 54), Gemma 3 3.6e-3 (10 of 10 follow) */
#define BF16_KV_TOL 3e-2
/* --act q16 (eng.h): the logit error bound, relative to the step's max
 * |logit|: measured on the CPU 1.7e-4 (SmolLM2), 1.1e-4 (Gemma 3), every
 * prompt following transformers' 64 greedy tokens */
#define Q16_ACT_TOL 1e-3
/* --act bf16 (eng.h): the logit error bound while a prompt follows
 * transformers' tokens, relative to the step's max |logit| (measured on
 * the CPU below: test_*_greedy_bf16) */
#define BF16_ACT_TOL 3e-2   /* measured 1.18e-2 (SmolLM2), 6.0e-3 (Gemma 3); 7 of 10 prompts follow on each */

/* ENG_ACT_Q16 in the test_*_greedy_q16 runs, else BRISK_TEST_ACT (f32 or
 * q16) for every run */
static int g_act;

typedef struct real {
    const char *file, *fixture;
    double tol;                              /* logit error, relative to max |logit| */
    int (*config_ok)(const eng_model *m);    /* the config the file must give */
    eng_model *model;
    cJSON *ref;
} real;

static int smol_config(const eng_model *m) {
    const eng_config *c = eng_model_config(m);
    int ok = !strcmp(c->arch, "llama") && c->n_layers == 30 && c->hidden == 576 &&
             c->n_heads == 9 && c->n_kv_heads == 3 && c->head_dim == 64 &&
             c->intermediate == 1536 && c->vocab_size == 49152 && c->tie_embeddings &&
             !c->qkv_bias && !c->qk_norm && !c->post_norms && !c->sliding_window &&
             c->rope_theta == 100000.0f && c->rms_eps == 1e-5f;
    int im_end = eng_tok_find(eng_model_tok(m), "<|im_end|>"), has = 0;
    for (int i = 0; i < c->n_eos; i++) has |= c->eos_ids[i] == im_end;
    const char *tmpl = eng_model_chat_template(m);
    return ok && im_end >= 0 && has && tmpl && strstr(tmpl, "<|im_start|>");
}

/* Gemma 3 270M: what the metadata says, and llama.cpp's rules for what it
 * does not (every 6th layer global, local RoPE base 1e4, queries scaled by
 * 1/sqrt(head_dim)); <end_of_turn> (106) ends generation beside <eos> (1). */
static int gemma_config(const eng_model *m) {
    const eng_config *c = eng_model_config(m);
    int ok = !strcmp(c->arch, "gemma3") && c->n_layers == 18 && c->hidden == 640 &&
             c->n_heads == 4 && c->n_kv_heads == 1 && c->head_dim == 256 &&
             c->intermediate == 2048 && c->vocab_size == 262144 && c->tie_embeddings &&
             !c->qkv_bias && c->qk_norm && c->post_norms && c->gelu &&
             c->embed_scale == (float)sqrt(640.0) && c->attn_scale == 1.0f / 16 &&
             c->sliding_window == 512 && c->swa_pattern == 6 && c->rope_theta == 1e6f &&
             c->rope_local_theta == 1e4f && c->rms_eps == 1e-6f && c->bos_id == 2 &&
             !eng_layer_sliding(c, 5) && eng_layer_sliding(c, 4) && !eng_layer_sliding(c, 17);
    int eos = 0, eot = 0;
    for (int i = 0; i < c->n_eos; i++) {
        eos |= c->eos_ids[i] == 1;
        eot |= c->eos_ids[i] == 106;
    }
    return ok && eos && eot && eng_tok_find(eng_model_tok(m), "<end_of_turn>") == 106;
}

static real smol = {"SmolLM2-135M-Instruct.Q4_1.gguf", "tests/fixtures/real/smollm2-135m.json",
                    SMOL_TOL, smol_config, NULL, NULL};
static real gemma = {"gemma-3-270m-q4_k_m.gguf", "tests/fixtures/real/gemma3-270m.json", GEMMA_TOL,
                     gemma_config, NULL, NULL};

/* The fixture's shape, checked once so that the tests can index it freely:
 * n_new, fixed_ids, dequant entries, prompts with text, ids and logits. */
static int fixture_ok(const cJSON *r) {
    const cJSON *x, *y;
    int n_new = cJSON_GetObjectItem(r, "n_new") ? cJSON_GetObjectItem(r, "n_new")->valueint : 0;
    int n_fixed = cJSON_GetArraySize(cJSON_GetObjectItem(r, "fixed_ids"));
    if (n_new < 1 || n_fixed < 1) return 0;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "dequant"))
        if (!cJSON_IsString(cJSON_GetObjectItem(x, "name")) ||
            cJSON_GetArraySize(cJSON_GetObjectItem(x, "rows")) !=
                cJSON_GetArraySize(cJSON_GetObjectItem(x, "bits")))
            return 0;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "prompts")) {
        if (!cJSON_IsString(cJSON_GetObjectItem(x, "prompt_text")) ||
            !cJSON_IsString(cJSON_GetObjectItem(x, "kind")) ||
            cJSON_GetArraySize(cJSON_GetObjectItem(x, "prompt_ids")) < 1 ||
            cJSON_GetArraySize(cJSON_GetObjectItem(x, "ids")) != n_new)
            return 0;
        cJSON_ArrayForEach(y, cJSON_GetObjectItem(x, "logits"))
            if (!cJSON_IsNumber(cJSON_GetObjectItem(y, "step")) ||
                !cJSON_IsNumber(cJSON_GetObjectItem(y, "max_abs")) ||
                cJSON_GetArraySize(cJSON_GetObjectItem(y, "top_ids")) !=
                    cJSON_GetArraySize(cJSON_GetObjectItem(y, "top")) ||
                cJSON_GetArraySize(cJSON_GetObjectItem(y, "fixed")) != n_fixed)
                return 0;
    }
    return 1;
}

/* Loads the model and the fixture; the model's later tests use them. */
static void load(real *r) {
    T_MODEL(path, r->file);
    char *txt = NULL;
    eng_err err = {0};
    if (eng_read_file(r->fixture, 0, &txt, NULL, &err)) T_FAIL("%s", err.msg);
    r->ref = cJSON_Parse(txt);
    free(txt);
    if (!r->ref || !fixture_ok(r->ref)) {
        cJSON_Delete(r->ref);
        r->ref = NULL;
        T_FAIL("%s is not valid JSON or lacks fields (scripts/record_gguf_ref.py)", r->fixture);
    }
    /* as the app loads it: the f32 copy of the quantized matrices waits for
     * eng_model_dense (dequant_rows; eng_create makes it too) */
    double t0 = eng_now_s();
    int rc = eng_model_load_blocks(path, &r->model, &err);
    if (rc) T_FAIL("%s", err.msg);
    printf("  loaded %s in %.3f s\n", path, eng_now_s() - t0);
    T_CHECKF(r->config_ok(r->model), "%s: the config differs from the model's", path);
    T_CHECKF(!eng_model_has_dense(r->model), "%s: its quantized matrices were converted at load", path);
}

/* The f32 array brisk holds for a transformers weight name. */
static const float *weight_of(const eng_model *m, const char *name) {
    int l;
    char what[64];
    if (!strcmp(name, "model.embed_tokens.weight")) return m->embed;
    if (sscanf(name, "model.layers.%d.%63s", &l, what) != 2 || l < 0 || l >= m->cfg.n_layers)
        return NULL;
    const eng_layer_w *L = &m->layers[l];
    static const char *const names[] = {
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
        "self_attn.o_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight",
        "self_attn.q_norm.weight", "post_feedforward_layernorm.weight"};
    const float *w[] = {L->wq, L->wk, L->wv, L->wo, L->w_down, L->attn_norm, L->q_norm,
                        L->post_ffn_norm};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(what, names[i])) return w[i];
    return NULL;
}

static void dequant_rows(real *r) {
    if (!r->model || !r->ref) T_FAIL("no model or fixture (loading failed)");
    eng_err err = {0};
    double t0 = eng_now_s();
    if (eng_model_dense(r->model, &err)) T_FAIL("eng_model_dense: %s", err.msg);
    printf("  f32 copy made in %.3f s\n", eng_now_s() - t0);
    const cJSON *e, *dq = cJSON_GetObjectItem(r->ref, "dequant");
    int n_rows = 0;
    cJSON_ArrayForEach(e, dq) {
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        const float *w = weight_of(r->model, name);
        T_CHECKF(w, "%s: no such weight in brisk", name);
        if (!w) continue;
        const cJSON *rows = cJSON_GetObjectItem(e, "rows"), *bits = cJSON_GetObjectItem(e, "bits");
        for (int i = 0; i < cJSON_GetArraySize(rows); i++) {
            const cJSON *row = cJSON_GetArrayItem(bits, i), *b;
            int idx = cJSON_GetArrayItem(rows, i)->valueint, cols = cJSON_GetArraySize(row);
            int k = 0, diff = 0;
            cJSON_ArrayForEach(b, row) {
                uint32_t u;
                memcpy(&u, &w[(size_t)idx * cols + k++], 4);
                diff += u != (uint32_t)b->valuedouble;
            }
            T_CHECKF(!diff, "%s row %d: %d of %d values differ from transformers'", name, idx,
                     diff, cols);
            n_rows++;
        }
    }
    printf("  %d rows of %d weights equal transformers' bit for bit\n", n_rows,
           cJSON_GetArraySize(dq));
    T_CHECK(n_rows >= 8);
}

/* The prompt text encodes to the recorded ids (after the bos token where
 * the fixture's tokenizer adds one, which must be brisk's eng_tok_bos). */
static void prompt_ids(real *r) {
    if (!r->model || !r->ref) T_FAIL("no model or fixture (loading failed)");
    const eng_tok *tok = eng_model_tok(r->model);
    int add_bos = cJSON_IsTrue(cJSON_GetObjectItem(r->ref, "add_bos"));
    T_CHECKF(add_bos ? eng_tok_bos(tok) >= 0 : 1, "the fixture adds a bos token, brisk has none");
    const cJSON *p;
    int same = 0, n = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(r->ref, "prompts")) {
        const char *text = cJSON_GetObjectItem(p, "prompt_text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(p, "prompt_ids");
        int *ids = NULL, k = 0, ok, first = add_bos;
        eng_err err = {0};
        int rc = eng_tok_encode(tok, text, strlen(text), 1, &ids, &k, &err);
        ok = !rc && k + first == cJSON_GetArraySize(want);
        if (ok && add_bos) ok = cJSON_GetArrayItem(want, 0)->valueint == eng_tok_bos(tok);
        for (int i = 0; ok && i < k; i++)
            ok = ids[i] == cJSON_GetArrayItem(want, first + i)->valueint;
        T_CHECKF(ok, "prompt %d encodes differently from transformers (%d ids, %s)", n, k, err.msg);
        same += ok;
        n++;
        free(ids);
    }
    printf("  %d of %d prompts encode to transformers' ids\n", same, n);
}

/* The CPU backend with a bf16 KV cache on the same prompts (one batch,
 * greedy, n_new steps) must give the tokens in got ([prompt][step]), up to
 * a near tie: the two backends round K and V to bf16 from f32 sums taken in
 * different orders, so a value can land one bf16 step apart and move
 * logits by up to BF16_KV_TOL of the step's max |logit|.  Where the tokens
 * first differ, the CPU's logit for its own token may exceed its logit for
 * CUDA's token by no more than that; a wider margin is a real difference. */
static void cpu_same_tokens(eng_model *model, const cJSON *prompts, int np, int n_new,
                            const int *got, int kv, int act) {
    eng_err err = {0};
    eng_engine *e = NULL;
    eng_opts o = {.max_seqs = np, .backend = ENG_BACKEND_CPU, .kv_format = kv, .act = act};
    const char *what = act == ENG_ACT_Q16 ? "q16 act" : "bf16 KV";
    const double tol = act == ENG_ACT_Q16 ? Q16_ACT_TOL : BF16_KV_TOL;
    if (eng_create(model, &o, &e, &err)) T_FAIL("CPU engine: %s", err.msg);
    const int V = model->cfg.vocab_size;
    int seq[16], same = 0, first[16];
    eng_sampling greedy = {0};
    for (int s = 0; s < np; s++) {
        const cJSON *pid = cJSON_GetObjectItem(cJSON_GetArrayItem(prompts, s), "prompt_ids"), *x;
        int ids[512], k = 0;
        cJSON_ArrayForEach(x, pid) if (k < 512) ids[k++] = x->valueint;
        if (eng_seq_add(e, ids, k, &greedy, &seq[s], &err)) { eng_destroy(e); T_FAIL("%s", err.msg); }
        first[s] = -1;
    }
    for (int step = 0; step < n_new; step++) {
        if (eng_step(e, &err)) { eng_destroy(e); T_FAIL("CPU step %d: %s", step, err.msg); }
        for (int s = 0; s < np; s++) {
            eng_token t;
            eng_seq_last(e, seq[s], &t);
            const int want = got[s * n_new + step];
            if (first[s] >= 0 || t.id == want) continue;
            first[s] = step;
            int rows = 0;
            const float *l = eng_seq_logits(e, seq[s], &rows);
            if (!l || rows < 1) { T_CHECKF(0, "prompt %d step %d: no CPU logits", s, step); continue; }
            l += (size_t)(rows - 1) * V;
            double scale = 0;
            for (int i = 0; i < V; i++) if (fabs(l[i]) > scale) scale = fabs(l[i]);
            const double margin = (l[t.id] - l[want]) / scale;
            printf("  %s: prompt %d step %d: CPU %d, CUDA %d, CPU margin %.3g of max |logit|\n",
                   what, s, step, t.id, want, margin);
            T_CHECKF(margin <= tol, "prompt %d: CUDA and CPU (%s) differ at step %d "
                     "by a margin of %.3g, beyond a near tie (%.0e)", s, what, step, margin, tol);
        }
    }
    for (int s = 0; s < np; s++) same += first[s] < 0;
    printf("  %s: CUDA and CPU give the same %d tokens on %d of %d prompts%s\n", what, n_new, same,
           np, same < np ? " (the rest part at a near tie)" : "");
    eng_destroy(e);
}

/* All prompts run as one batch (with BRISK_TEST_QUANT=1 on CUDA: one at a
 * time, through the quantized blocks at one row a step); each step's new
 * token and logits row are checked against the recording. */
static void greedy(real *r) {
    if (!r->model || !r->ref) T_FAIL("no model or fixture (loading failed)");
    eng_model *model = r->model;
    const cJSON *prompts = cJSON_GetObjectItem(r->ref, "prompts");
    const cJSON *fixed = cJSON_GetObjectItem(r->ref, "fixed_ids");
    int np = cJSON_GetArraySize(prompts), n_new = cJSON_GetObjectItem(r->ref, "n_new")->valueint;
    if (np < 10 || np > 16 || n_new < 1) T_FAIL("%s: %d prompts, n_new %d", r->fixture, np, n_new);
    eng_err err = {0};
    eng_engine *e = NULL;
    const char *be = getenv("BRISK_TEST_BACKEND"), *kvs = getenv("BRISK_TEST_KV");
    const char *qs = getenv("BRISK_TEST_QUANT"), *as = getenv("BRISK_TEST_ACT");
    int cuda = be && !strcmp(be, "cuda"), kv = kvs ? eng_kv_format_parse(kvs) : ENG_KV_F32;
    const int quant = !qs ? ENG_QUANT_AUTO : !strcmp(qs, "1") ? ENG_QUANT_ON
                    : !strcmp(qs, "0") ? ENG_QUANT_OFF : !strcmp(qs, "lean") ? ENG_QUANT_LEAN : -1;
    if (kv < 0) T_FAIL("BRISK_TEST_KV=%s: f32 or bf16", kvs);
    if (as && eng_act_parse(as) < 0) T_FAIL("BRISK_TEST_ACT=%s: auto, f32, q16 or bf16", as);
    const int act = g_act ? g_act : as ? eng_act_parse(as) : ENG_ACT_F32;
    if (quant < 0) T_FAIL("BRISK_TEST_QUANT=%s: 0, 1 or lean", qs);
    if ((quant == ENG_QUANT_ON || quant == ENG_QUANT_LEAN) && !cuda)
        T_FAIL("BRISK_TEST_QUANT=%s needs BRISK_TEST_BACKEND=cuda", qs);
    const int group = quant == ENG_QUANT_ON ? 1 : np;   /* prompts a batch */
    printf("  backend: %s, KV %s, activations %s%s\n", cuda ? "CUDA" : "CPU", eng_kv_format_name(kv),
           eng_act_name(act),
           quant == ENG_QUANT_ON ? ", quantized blocks, one prompt at a time"
           : quant == ENG_QUANT_LEAN ? ", the quantized blocks alone"
           : quant == ENG_QUANT_OFF ? ", dense weights" : "");
    int *got = calloc((size_t)np * n_new, sizeof *got);   /* [prompt][step] tokens */
    if (!got) T_FAIL("out of memory");
    int seq[16], matched[16] = {0}, diverged[16] = {0};
    eng_sampling greedy = {0};
    double worst = 0, t0 = eng_now_s();
    int n_logit_steps = 0, took = act;   /* took: the engines' activations (auto resolved) */
    for (int g0 = 0; g0 < np; g0 += group) {
        const int g1 = g0 + group < np ? g0 + group : np;
        eng_opts o = {.max_seqs = g1 - g0, .backend = cuda ? ENG_BACKEND_CUDA : ENG_BACKEND_CPU,
                      .kv_format = kv, .quant = quant, .act = act};
        if (eng_create(model, &o, &e, &err)) {
            free(got);
            T_FAIL("%s", err.msg);
        }
        if (!g0) printf("  decode reads: %s, activations %s\n",
                        eng_quantized(e) == 2 ? "the quantized blocks (held alone)"
                        : eng_quantized(e) ? "the quantized blocks" : "dense weights", eng_act_name(eng_act(e)));
        took = eng_act(e);
        for (int s = g0; s < g1; s++) {
            const cJSON *pid = cJSON_GetObjectItem(cJSON_GetArrayItem(prompts, s), "prompt_ids"), *x;
            int ids[512], k = 0;
            cJSON_ArrayForEach(x, pid) if (k < 512) ids[k++] = x->valueint;
            if (eng_seq_add(e, ids, k, &greedy, &seq[s], &err)) {
                eng_destroy(e);
                free(got);
                T_FAIL("%s", err.msg);
            }
            if (cuda) eng_seq_keep_all_logits(e, seq[s], 1);   /* CUDA copies logits only then */
        }
        for (int step = 0; step < n_new; step++) {
            if (eng_step(e, &err)) {
                eng_destroy(e);
                free(got);
                T_FAIL("step %d: %s", step, err.msg);
            }
            for (int s = g0; s < g1; s++) {
                const cJSON *p = cJSON_GetArrayItem(prompts, s), *lg;
                eng_token t;
                eng_seq_last(e, seq[s], &t);
                got[s * n_new + step] = t.id;
                if (!diverged[s] && t.id == cJSON_GetArrayItem(cJSON_GetObjectItem(p, "ids"), step)->valueint)
                    matched[s]++;
                else if (!diverged[s]) {
                    diverged[s] = 1;
                    printf("  prompt %d (%s) step %d: brisk %d, transformers %d\n", s,
                           cJSON_GetObjectItem(p, "kind")->valuestring, step, t.id,
                           cJSON_GetArrayItem(cJSON_GetObjectItem(p, "ids"), step)->valueint);
                }
                if (diverged[s]) continue;   /* later logits follow other tokens */
                int rows = 0;
                const float *l = eng_seq_logits(e, seq[s], &rows);
                cJSON_ArrayForEach(lg, cJSON_GetObjectItem(p, "logits")) {
                    if (cJSON_GetObjectItem(lg, "step")->valueint != step) continue;
                    if (!l || rows < 1) {
                        T_CHECKF(0, "prompt %d step %d: no logits", s, step);
                        continue;
                    }
                    l += (size_t)(rows - 1) * model->cfg.vocab_size;
                    double scale = cJSON_GetObjectItem(lg, "max_abs")->valuedouble;
                    const cJSON *ti = cJSON_GetObjectItem(lg, "top_ids");
                    const cJSON *tv = cJSON_GetObjectItem(lg, "top");
                    const cJSON *fv = cJSON_GetObjectItem(lg, "fixed");
                    for (int i = 0; i < cJSON_GetArraySize(ti); i++) {
                        double d = fabs(l[cJSON_GetArrayItem(ti, i)->valueint] -
                                        cJSON_GetArrayItem(tv, i)->valuedouble) / scale;
                        if (d > worst) worst = d;
                    }
                    for (int i = 0; i < cJSON_GetArraySize(fixed); i++) {
                        double d = fabs(l[cJSON_GetArrayItem(fixed, i)->valueint] -
                                        cJSON_GetArrayItem(fv, i)->valuedouble) / scale;
                        if (d > worst) worst = d;
                    }
                    n_logit_steps++;
                }
            }
        }
        eng_destroy(e);
        e = NULL;
    }
    double dt = eng_now_s() - t0;
    int identical = 0;
    for (int s = 0; s < np; s++) identical += matched[s] == n_new;
    printf("  greedy: %d of %d prompts identical to transformers for %d tokens (%.1f s)\n",
           identical, np, n_new, dt);
    const double tol = kv == ENG_KV_BF16 ? BF16_KV_TOL : took == ENG_ACT_Q16 ? Q16_ACT_TOL
                     : took == ENG_ACT_BF16 ? BF16_ACT_TOL : r->tol;
    printf("  logits: max error %.3g of the step's max |logit| over %d recorded steps "
           "(tolerance %.0e)\n", worst, n_logit_steps, tol);
    if (kv == ENG_KV_F32 && took != ENG_ACT_BF16) {   /* q16 too: every prompt followed on the CPU */
        T_CHECKF(identical == np, "%d prompts diverged", np - identical);
        T_CHECK(n_logit_steps >= 5 * np);
    }
    T_CHECKF(worst <= tol, "logit error %.3g above %.0e", worst, tol);
    if (cuda && (kv == ENG_KV_BF16 || took == ENG_ACT_Q16))
        cpu_same_tokens(model, prompts, np, n_new, got, kv, took);
    free(got);
}

static void done(real *r) {
    eng_model_free(r->model);
    cJSON_Delete(r->ref);
    r->model = NULL;
    r->ref = NULL;
}

/* Copies the first n bytes of src to dst. */
static int copy_head(const char *src, const char *dst, long n) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    char buf[1 << 16];
    long left = n;
    while (in && out && left > 0) {
        size_t k = fread(buf, 1, left < (long)sizeof buf ? (size_t)left : sizeof buf, in);
        if (!k || fwrite(buf, 1, k, out) != k) break;
        left -= (long)k;
    }
    if (in) fclose(in);
    if (out && fclose(out)) left = 1;
    return in && out && left == 0 ? 0 : -1;
}

static void test_truncated(void) {
    T_MODEL(path, smol.file);
    /* cut in the tokenizer's metadata, and inside the first tensor's data */
    const long cuts[] = {1000000, 5000000};
    for (int i = 0; i < 2; i++) {
        char dst[256];
        snprintf(dst, sizeof dst, "/tmp/brisk_test_real_%d_cut%ld.gguf", (int)getpid(), cuts[i]);
        if (copy_head(path, dst, cuts[i])) T_FAIL("cannot write %s", dst);
        eng_model *m = NULL;
        eng_err err = {0};
        int rc = eng_model_load(dst, &m, &err);
        unlink(dst);
        printf("  cut at %ld: %s\n", cuts[i], err.msg);
        T_CHECKF(rc == ENG_EFORMAT && !m && strstr(err.msg, dst), "rc %d: %s", rc, err.msg);
        T_CHECK(strstr(err.msg, i ? "token_embd.weight" : "tokenizer.ggml.merges"));
        eng_model_free(m);
    }
}

static void test_smollm2_load(void) { load(&smol); }
static void test_smollm2_dequant_rows(void) { dequant_rows(&smol); }
static void test_smollm2_prompt_ids(void) { prompt_ids(&smol); }
static void test_smollm2_greedy(void) { greedy(&smol); }
static void test_gemma3_load(void) { load(&gemma); }
static void test_gemma3_dequant_rows(void) { dequant_rows(&gemma); }
static void test_gemma3_prompt_ids(void) { prompt_ids(&gemma); }
static void test_gemma3_greedy(void) { greedy(&gemma); }
static void test_smollm2_greedy_q16(void) { g_act = ENG_ACT_Q16; greedy(&smol); g_act = 0; }
/* The default activations (ENG_ACT_AUTO) on the CPU: f32, though every
 * product of the file is of blocks (the reference stays exact unless
 * asked); q16 when asked. */
static void test_smollm2_act_default(void) {
    if (!smol.model) T_FAIL("no model (loading failed)");
    eng_err err = {0};
    for (int a = ENG_ACT_AUTO; a <= ENG_ACT_Q16; a++) {
        eng_opts o = {.max_seqs = 1, .n_blocks = 64, .act = a};
        eng_engine *e = NULL;
        T_CHECKF(eng_create(smol.model, &o, &e, &err) == ENG_OK, "act %s: %s", eng_act_name(a), err.msg);
        const int want = a == ENG_ACT_Q16 ? ENG_ACT_Q16 : ENG_ACT_F32;
        T_CHECKF(eng_act(e) == want, "act %s: engine took %s", eng_act_name(a), eng_act_name(eng_act(e)));
        eng_destroy(e);
    }
}
static void test_gemma3_greedy_q16(void) { g_act = ENG_ACT_Q16; greedy(&gemma); g_act = 0; }
/* CPU only: the CUDA backend's dense copy of a GGUF file is f32 */
static void greedy_bf16(real *r) {
    const char *be = getenv("BRISK_TEST_BACKEND");
    if (be && !strcmp(be, "cuda")) {
        if (!r->model) T_FAIL("no model (loading failed)");
        eng_opts o = {.max_seqs = 1, .n_blocks = 64, .backend = ENG_BACKEND_CUDA, .act = ENG_ACT_BF16};
        eng_engine *e = NULL;
        eng_err err = {0};
        T_CHECKF(eng_create(r->model, &o, &e, &err) == ENG_EUNSUPPORTED && !e && strstr(err.msg, "bf16 weights"),
                 "--act bf16 on CUDA over f32 weights: %s", err.msg);
        eng_destroy(e);
        return;
    }
    g_act = ENG_ACT_BF16;
    greedy(r);
    g_act = 0;
}
static void test_smollm2_greedy_bf16(void) { greedy_bf16(&smol); }
static void test_gemma3_greedy_bf16(void) { greedy_bf16(&gemma); }

int main(void) {
    T_RUN(test_smollm2_load);
    T_RUN(test_smollm2_dequant_rows);
    T_RUN(test_smollm2_prompt_ids);
    T_RUN(test_smollm2_greedy);
    T_RUN(test_smollm2_greedy_q16);
    T_RUN(test_smollm2_greedy_bf16);
    T_RUN(test_smollm2_act_default);
    T_RUN(test_truncated);
    done(&smol);
    T_RUN(test_gemma3_load);
    T_RUN(test_gemma3_dequant_rows);
    T_RUN(test_gemma3_prompt_ids);
    T_RUN(test_gemma3_greedy);
    T_RUN(test_gemma3_greedy_q16);
    T_RUN(test_gemma3_greedy_bf16);
    done(&gemma);
    T_DONE();
}
