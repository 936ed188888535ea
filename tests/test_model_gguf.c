/* test_model_gguf.c — loading a model from a GGUF file.  The tiny Llama,
 * Qwen2, Qwen3 and Gemma 3 fixture folders are loaded, written out as GGUF
 * the way llama.cpp's converter does (metadata llama.* / qwen2.* / qwen3.* /
 * gemma3.*, tensor names blk.N.*, llama's attn_q / attn_k rows reordered for
 * ggml's RoPE, Gemma's norms stored as w + 1, a tokenizer in
 * tokenizer.ggml.*), and loaded again: the config, every f32 weight and the
 * logits of a few greedy steps must equal the folder's.  A variant stores
 * attn_q and ffn_down as Q8_0, one leaves output.weight out (tied
 * embeddings); the rest are damaged files that must be refused with a
 * message naming the file and what is wrong.  Built with CUDA on a GPU
 * machine, the Q8_0 variant also runs on the CUDA backend. */
#include <stdint.h>
#include <sys/resource.h>
#include "t.h"
#include "backend.h"
#include "gguf_write.h"
#include "mkgguf.h"

#define QWEN "tests/fixtures/tiny-qwen2"
#define LLAMA "tests/fixtures/tiny-llama"
#define QWEN3 "tests/fixtures/tiny-qwen3"
#define GEMMA3 "tests/fixtures/tiny-gemma3"

enum { V_PLAIN, V_Q8, V_TIED, V_ARCH, V_NO_BLOCKS, V_MOE, V_SHAPE, V_MISSING, V_ROPE_FREQS };

/* f32 to f16 bits, truncating (normal range only: the Q8_0 scales here). */
static uint16_t to_half(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    int e = (int)(b >> 23 & 0xff) - 112;
    if (e <= 0) return (uint16_t)(b >> 16 & 0x8000);
    return (uint16_t)((b >> 16 & 0x8000) | e << 10 | (b >> 13 & 0x3ff));
}

/* Row-wise Q8_0 of n floats (n a multiple of 32) into out; back into deq. */
static void q8_0(const float *x, size_t n, uint8_t *out, float *deq) {
    for (size_t b = 0; b < n / 32; b++, x += 32, out += 34, deq += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        uint16_t h = to_half(amax / 127);
        float d = eng_f16_to_f32(h);
        out[0] = (uint8_t)h;
        out[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) {
            long q = d ? lrintf(x[j] / d) : 0;
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            out[2 + j] = (uint8_t)(int8_t)q;
            deq[j] = (float)q * d;
        }
    }
}

/* llama.cpp's order of a head group's rows: file row 2i+s is row s*hd/2+i. */
static void permute_rows(const float *w, int n_heads, int hd, size_t cols, float *out) {
    for (int h = 0; h < n_heads; h++)
        for (int r = 0; r < hd; r++)
            memcpy(out + ((size_t)h * hd + r) * cols,
                   w + ((size_t)h * hd + (r % 2) * (hd / 2) + r / 2) * cols, sizeof(float) * cols);
}

/* One weight, [rows][cols] (cols 0: a vector), as F32 or Q8_0; *deq gets
 * what the loader should make of it (NULL: the values themselves). */
static void put_weight(gw *w, const char *name, const float *x, size_t rows, size_t cols, int q8,
                       float *deq) {
    uint64_t ne[2] = {cols ? cols : rows, rows};
    size_t n = cols ? rows * cols : rows;
    if (!q8) {
        gw_tensor(w, name, G_F32, cols ? 2 : 1, ne, x, n * 4);
        if (deq) memcpy(deq, x, n * 4);
        return;
    }
    uint8_t *b = malloc(n / 32 * 34);
    q8_0(x, n, b, deq);
    gw_tensor(w, name, G_Q8_0, 2, ne, b, n / 32 * 34);
    free(b);
}

/* Expected f32 weights of the GGUF model where they differ from the folder's. */
typedef struct expect { float *wq[8], *down[8]; } expect;

/* Writes folder model m as GGUF, with the change variant asks for. */
static void build(gw *w, const eng_model *m, int variant, expect *ex) {
    const eng_config *c = &m->cfg;
    const char *arch = variant == V_ARCH ? "gpt2" : c->arch;
    int llama = !strcmp(c->arch, "llama");
    char k[128];
    gw_init(w);
    gw_str(w, "general.architecture", arch);
#define AK(name) (snprintf(k, sizeof k, "%s.%s", arch, name), k)
    if (variant != V_NO_BLOCKS) gw_u32(w, AK("block_count"), (uint32_t)c->n_layers);
    gw_u32(w, AK("context_length"), (uint32_t)c->max_pos);
    gw_u32(w, AK("embedding_length"), (uint32_t)c->hidden);
    gw_u32(w, AK("feed_forward_length"), (uint32_t)c->intermediate);
    gw_u32(w, AK("attention.head_count"), (uint32_t)c->n_heads);
    gw_u32(w, AK("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    gw_u32(w, AK("attention.key_length"), (uint32_t)c->head_dim);
    gw_u32(w, AK("rope.dimension_count"), (uint32_t)c->head_dim);
    gw_f32(w, AK("rope.freq_base"), c->rope_theta);
    gw_f32(w, AK("attention.layer_norm_rms_epsilon"), c->rms_eps);
    if (variant == V_MOE) gw_u32(w, AK("expert_count"), 8);
    /* Gemma 3: the window (pattern and local base are llama.cpp's fixed
     * ones, as in the fixture), and its global layers' linear scaling,
     * which divides the first frequency (1) by the factor */
    if (c->sliding_window) gw_u32(w, AK("attention.sliding_window"), (uint32_t)c->sliding_window);
    if (m->rope_inv_freq[0] != 1.0f) {
        gw_str(w, AK("rope.scaling.type"), "linear");
        gw_f32(w, AK("rope.scaling.factor"), 1.0f / m->rope_inv_freq[0]);
    }
#undef AK
    /* tokenizer: control tokens, then t3 t4 ... up to the vocabulary size */
    int V = c->vocab_size;
    char **toks = malloc(sizeof *toks * V);
    int32_t *types = malloc(sizeof *types * V);
    static const char *const ctl[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; i < V; i++) {
        toks[i] = malloc(16);
        snprintf(toks[i], 16, "%s", i < 3 ? ctl[i] : "");
        if (i >= 3) snprintf(toks[i], 16, "t%d", i);
        types[i] = i < 3 ? 3 : 1;
    }
    gw_str(w, "tokenizer.ggml.model", "gpt2");
    gw_str(w, "tokenizer.ggml.pre", "smollm");
    gw_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, V);
    gw_arr_i32(w, "tokenizer.ggml.token_type", types, V);
    gw_arr_str(w, "tokenizer.ggml.merges", NULL, 0);
    gw_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gw_u32(w, "tokenizer.ggml.eos_token_id", 0);
    gw_str(w, "tokenizer.chat_template",
           "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}");
    for (int i = 0; i < V; i++) free(toks[i]);
    free(toks);
    free(types);
    /* tensors */
    size_t H = c->hidden, Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t I = c->intermediate;
    put_weight(w, "token_embd.weight", m->embed, V, H, 0, NULL);
    put_weight(w, "output_norm.weight", m->final_norm, H, 0, 0, NULL);
    if (variant != V_TIED && !c->tie_embeddings)
        put_weight(w, "output.weight", m->lm_head, V, H, 0, NULL);
    if (variant == V_ROPE_FREQS) put_weight(w, "rope_freqs.weight", m->final_norm, 8, 0, 0, NULL);
    float *tmp = malloc(sizeof(float) * (Q > KV ? Q : KV) * H);
    for (int l = 0; l < c->n_layers; l++) {
        const eng_layer_w *L = &m->layers[l];
        char n[64];
        int q8 = variant == V_Q8;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        put_weight(w, NAME("attn_norm.weight"), L->attn_norm, H, 0, 0, NULL);
        /* quantizing rows commutes with reordering them, so ex->wq holds
         * the expected f32 in Hugging Face's order */
        if (q8) {
            uint8_t *blocks = malloc(Q * H / 32 * 34);
            q8_0(L->wq, Q * H, blocks, ex->wq[l]);
            free(blocks);
        }
        if (llama) permute_rows(L->wq, c->n_heads, c->head_dim, H, tmp);
        else memcpy(tmp, L->wq, sizeof(float) * Q * H);
        float *scratch = q8 ? malloc(sizeof(float) * Q * H) : NULL;
        put_weight(w, NAME("attn_q.weight"), tmp, Q, H, q8, scratch);
        free(scratch);
        if (llama) permute_rows(L->wk, c->n_kv_heads, c->head_dim, H, tmp);
        else memcpy(tmp, L->wk, sizeof(float) * KV * H);
        put_weight(w, NAME("attn_k.weight"), tmp, variant == V_SHAPE && l == 1 ? KV - 1 : KV, H,
                   0, NULL);
        put_weight(w, NAME("attn_v.weight"), L->wv, KV, H, 0, NULL);
        put_weight(w, NAME("attn_output.weight"), L->wo, H, Q, 0, NULL);
        /* Gemma's norms: the folder model holds 1 + w, which is what
         * llama.cpp's converter stores */
        if (L->q_norm) {
            put_weight(w, NAME("attn_q_norm.weight"), L->q_norm, c->head_dim, 0, 0, NULL);
            put_weight(w, NAME("attn_k_norm.weight"), L->k_norm, c->head_dim, 0, 0, NULL);
        }
        if (L->post_attn_norm) {
            put_weight(w, NAME("post_attention_norm.weight"), L->post_attn_norm, H, 0, 0, NULL);
            put_weight(w, NAME("post_ffw_norm.weight"), L->post_ffn_norm, H, 0, 0, NULL);
        }
        if (L->bq) {
            put_weight(w, NAME("attn_q.bias"), L->bq, Q, 0, 0, NULL);
            put_weight(w, NAME("attn_k.bias"), L->bk, KV, 0, 0, NULL);
            put_weight(w, NAME("attn_v.bias"), L->bv, KV, 0, 0, NULL);
        }
        put_weight(w, NAME("ffn_norm.weight"), L->ffn_norm, H, 0, 0, NULL);
        put_weight(w, NAME("ffn_gate.weight"), L->w_gate, I, H, 0, NULL);
        if (!(variant == V_MISSING && l == c->n_layers - 1))
            put_weight(w, NAME("ffn_up.weight"), L->w_up, I, H, 0, NULL);
        put_weight(w, NAME("ffn_down.weight"), L->w_down, H, I, q8, q8 ? ex->down[l] : NULL);
#undef NAME
    }
    free(tmp);
}

/* Writes the GGUF file for variant to path: 0, or -1. */
static int write_variant(const eng_model *src, int variant, expect *ex, const char *path) {
    gw w;
    build(&w, src, variant, ex);
    size_t n;
    uint8_t *p = gw_image(&w, &n);
    gw_free(&w);
    int rc = write_bytes(path, p, n);
    free(p);
    return rc;
}

/* Writes src's V_Q8 variant to path (the expected weights dropped): 0, or -1. */
static int write_q8(const eng_model *src, const char *path) {
    expect ex = {0};
    size_t Q = (size_t)src->cfg.n_heads * src->cfg.head_dim, H = src->cfg.hidden;
    for (int l = 0; l < src->cfg.n_layers && l < 8; l++) {
        ex.wq[l] = malloc(sizeof(float) * Q * H);
        ex.down[l] = malloc(sizeof(float) * H * src->cfg.intermediate);
    }
    int rc = write_variant(src, V_Q8, &ex, path);
    for (int l = 0; l < 8; l++) {
        free(ex.wq[l]);
        free(ex.down[l]);
    }
    return rc;
}

/* Writes the GGUF file for variant and loads it; the file is removed. */
static int load_variant(const eng_model *src, int variant, expect *ex, eng_model **out,
                        eng_err *err) {
    const char *path = path_for("model");
    int rc = write_variant(src, variant, ex, path) ? ENG_EIO : eng_model_load(path, out, err);
    unlink(path);
    return rc;
}

static int same(const float *a, const float *b, size_t n) {
    return a && b && !memcmp(a, b, n * sizeof(float));
}

#define STEPS 4

/* STEPS greedy steps of m on an engine of options o from a fixed prompt:
 * each step's logits into rows (STEPS x vocab) and token into ids. */
static int run_opts(eng_model *m, const eng_opts *o, float *rows, int *ids, eng_err *err) {
    int V = m->cfg.vocab_size, prompt[5] = {5, 17, 300, 2, 9}, seq, n = 0;
    eng_engine *e = NULL;
    eng_sampling greedy = {0};
    int rc = eng_create(m, o, &e, err);
    if (!rc) rc = eng_seq_add(e, prompt, 5, &greedy, &seq, err);
    for (int s = 0; s < STEPS && !rc; s++) {
        eng_token t;
        if ((rc = eng_step(e, err))) break;
        eng_seq_last(e, seq, &t);
        ids[s] = t.id;
        const float *l = eng_seq_logits(e, seq, &n);
        if (!l || n != 1) rc = eng_seterr(err, ENG_EINVAL, "step %d: %d logits rows", s, n);
        else memcpy(rows + (size_t)s * V, l, sizeof(float) * V);
    }
    eng_destroy(e);
    return rc;
}

/* run_opts on backend (one thread, one sequence). */
static int run_steps(eng_model *m, int backend, float *rows, int *ids, eng_err *err) {
    eng_opts o = {.backend = backend, .max_seqs = 1, .n_threads = 1};
    return run_opts(m, &o, rows, ids, err);
}

/* Greedy steps from the same prompt on both models (CPU): identical logits. */
static int same_logits(eng_model *a, eng_model *b) {
    size_t n = (size_t)a->cfg.vocab_size * STEPS;
    float *ra = malloc(sizeof(float) * n), *rb = malloc(sizeof(float) * n);
    int ia[STEPS], ib[STEPS];
    eng_err err = {0};
    int ok = !run_steps(a, ENG_BACKEND_CPU, ra, ia, &err) &&
             !run_steps(b, ENG_BACKEND_CPU, rb, ib, &err);
    if (!ok) printf("  engine: %s\n", err.msg);
    ok = ok && !memcmp(ra, rb, sizeof(float) * n) && !memcmp(ia, ib, sizeof ia);
    free(ra);
    free(rb);
    return ok;
}

/* Loads folder dir, writes it as GGUF (variant), loads that and compares. */
static void check_roundtrip(const char *dir, int variant) {
    eng_err err = {0};
    eng_model *a = NULL, *b = NULL;
    if (eng_model_load(dir, &a, &err)) T_FAIL("%s: %s", dir, err.msg);
    const eng_config *c = &a->cfg;
    expect ex = {0};
    size_t H = c->hidden, Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t I = c->intermediate;
    for (int l = 0; l < c->n_layers && l < 8 && variant == V_Q8; l++) {
        ex.wq[l] = malloc(sizeof(float) * Q * H);
        ex.down[l] = malloc(sizeof(float) * H * I);
    }
    int rc = load_variant(a, variant, &ex, &b, &err);
    T_CHECKF(!rc, "%s as GGUF: %s", dir, err.msg);
    if (!rc) {
        const eng_config *d = &b->cfg;
        T_CHECK(!strcmp(c->arch, d->arch) && c->n_layers == d->n_layers && c->hidden == d->hidden &&
                c->n_heads == d->n_heads && c->n_kv_heads == d->n_kv_heads &&
                c->head_dim == d->head_dim && c->intermediate == d->intermediate &&
                c->vocab_size == d->vocab_size && c->max_pos == d->max_pos &&
                c->rms_eps == d->rms_eps && c->rope_theta == d->rope_theta &&
                c->qkv_bias == d->qkv_bias && c->qk_norm == d->qk_norm &&
                c->post_norms == d->post_norms && c->gelu == d->gelu &&
                c->embed_scale == d->embed_scale && c->sliding_window == d->sliding_window &&
                c->swa_pattern == d->swa_pattern && c->rope_local_theta == d->rope_local_theta);
        T_CHECK(same(a->rope_inv_freq, b->rope_inv_freq, c->head_dim / 2));
        T_CHECK(!a->rope_inv_freq_local == !b->rope_inv_freq_local);
        if (a->rope_inv_freq_local)
            T_CHECK(same(a->rope_inv_freq_local, b->rope_inv_freq_local, c->head_dim / 2));
        /* a GGUF file has no query_pre_attn_scalar: llama.cpp's rule scales
         * by 1/sqrt(head_dim), which the Gemma fixture (24) does not; the
         * logits below are compared at the folder's scale */
        T_CHECK(d->attn_scale == (float)(1.0 / sqrt(c->head_dim)));
        b->cfg.attn_scale = c->attn_scale;
        T_CHECK(d->tie_embeddings == (c->tie_embeddings || variant == V_TIED));
        T_CHECK(d->bos_id == 1 && d->n_eos == 2 && d->eos_ids[0] == 0 && d->eos_ids[1] == 2);
        T_CHECK(eng_model_chat_template(b) && strstr(eng_model_chat_template(b), "<|im_end|>"));
        T_CHECK(same(a->embed, b->embed, (size_t)c->vocab_size * H) &&
                same(a->final_norm, b->final_norm, H));
        if (variant == V_TIED) T_CHECK(b->lm_head == b->embed);
        else T_CHECK(same(a->lm_head, b->lm_head, (size_t)c->vocab_size * H));
        for (int l = 0; l < c->n_layers; l++) {
            const eng_layer_w *x = &a->layers[l], *y = &b->layers[l];
            const float *wq = variant == V_Q8 ? ex.wq[l] : x->wq;
            const float *down = variant == V_Q8 ? ex.down[l] : x->w_down;
            T_CHECKF(same(wq, y->wq, Q * H) && same(x->wk, y->wk, KV * H) &&
                     same(x->wv, y->wv, KV * H) && same(x->wo, y->wo, H * Q), "layer %d attn", l);
            T_CHECKF(same(x->attn_norm, y->attn_norm, H) && same(x->ffn_norm, y->ffn_norm, H) &&
                     same(x->w_gate, y->w_gate, I * H) && same(x->w_up, y->w_up, I * H) &&
                     same(down, y->w_down, H * I), "layer %d mlp", l);
            if (c->qkv_bias)
                T_CHECKF(same(x->bq, y->bq, Q) && same(x->bk, y->bk, KV) && same(x->bv, y->bv, KV),
                         "layer %d bias", l);
            if (c->qk_norm)
                T_CHECKF(same(x->q_norm, y->q_norm, c->head_dim) &&
                         same(x->k_norm, y->k_norm, c->head_dim), "layer %d q/k norm", l);
            if (c->post_norms)
                T_CHECKF(same(x->post_attn_norm, y->post_attn_norm, H) &&
                         same(x->post_ffn_norm, y->post_ffn_norm, H), "layer %d output norms", l);
            /* Gemma's norms are held as 1 + w: their raw tensors are dropped */
            T_CHECK(!c->post_norms == !!y->t_attn_norm && !c->post_norms == !!y->t_ffn_norm);
            /* llama's q/k raw tensors are in another row order than the f32 copy */
            int llama = !strcmp(c->arch, "llama");
            T_CHECK(llama ? !y->t_wq && !y->t_wk : y->t_wq && y->t_wk);
            T_CHECK(y->t_wv && y->t_down && y->t_down->dtype == (variant == V_Q8 ? ENG_DT_Q8_0 : ENG_DT_F32));
        }
        if (variant == V_PLAIN) T_CHECKF(same_logits(a, b), "%s: logits differ from the folder's", dir);
    }
    for (int l = 0; l < 8; l++) {
        free(ex.wq[l]);
        free(ex.down[l]);
    }
    eng_model_free(a);
    eng_model_free(b);
}

static void test_llama(void) { check_roundtrip(LLAMA, V_PLAIN); }
static void test_llama_q8(void) { check_roundtrip(LLAMA, V_Q8); }
static void test_llama_tied(void) { check_roundtrip(LLAMA, V_TIED); }
static void test_qwen2(void) { check_roundtrip(QWEN, V_PLAIN); }
static void test_qwen3(void) { check_roundtrip(QWEN3, V_PLAIN); }
static void test_gemma3(void) { check_roundtrip(GEMMA3, V_PLAIN); }

/* The CUDA backend on a GGUF model: Q8_0 tensors and llama's dropped raw
 * q/k make it upload the f32 copy.  Greedy tokens equal the CPU backend's,
 * logits within 1e-4 relative (test_cuda's whole-model tolerance).  Skips
 * when built without CUDA or where no GPU is visible. */
static void test_cuda(void) {
#ifndef BRISK_CUDA
    T_SKIP("built without CUDA (make CUDA=1; it runs on a GPU machine)");
#else
    eng_err err = {0};
    eng_model *src = NULL, *m = NULL;
    if (eng_model_load(LLAMA, &src, &err)) T_FAIL("%s", err.msg);
    const char *path = path_for("model");
    int rc = write_q8(src, path) ? ENG_EIO : eng_model_load(path, &m, &err);
    unlink(path);
    eng_model_free(src);
    if (rc) T_FAIL("%s", err.msg);
    size_t V = (size_t)m->cfg.vocab_size;
    float *cpu = malloc(sizeof(float) * V * STEPS), *gpu = malloc(sizeof(float) * V * STEPS);
    int ic[STEPS], ig[STEPS];
    rc = run_steps(m, ENG_BACKEND_CPU, cpu, ic, &err);
    T_CHECKF(!rc, "CPU: %s", err.msg);
    int rg = rc ? rc : run_steps(m, ENG_BACKEND_CUDA, gpu, ig, &err);
    if (!rc && rg == ENG_EUNSUPPORTED) {
        free(cpu);
        free(gpu);
        eng_model_free(m);
        T_SKIP("no CUDA device: %s", err.msg);
    }
    T_CHECKF(!rg, "CUDA: %s", err.msg);
    for (int s = 0; s < STEPS && !rc && !rg; s++) {
        double num = 0, den = 0;
        for (size_t i = 0; i < V; i++) {
            double d = gpu[s * V + i] - cpu[s * V + i];
            num += d * d;
            den += (double)cpu[s * V + i] * cpu[s * V + i];
        }
        double rel = sqrt(num / (den ? den : 1));
        printf("  step %d: CPU token %d, CUDA token %d, logits relative error %.2e\n", s, ic[s],
               ig[s], rel);
        T_CHECK(ic[s] == ig[s] && rel <= 1e-4);
    }
    free(cpu);
    free(gpu);
    eng_model_free(m);
#endif
}

/* Random-weight GGUF files as `brisk mkmodel --format` writes them
 * (benchmarks/lib/mkgguf): a tiny llama in Q4_K_M and a tiny qwen2 in Q8_0
 * load with the documented type of each tensor, keep each weight's blocks
 * (llama's q/k as stored, in llama.cpp's row order: the f32 copy is their
 * rows reordered), and run greedy steps on the CPU with finite logits that
 * are not flat; the same file cut short is refused, naming the file. */
static void check_mkgguf(const char *arch, int format, int tied) {
    const mkg_shape sh = {arch, 512, 256, 512, 8, 4, 2, 64, tied, 0, 10000.0};
    const char *path = path_for("mk");
    char msg[256];
    eng_err err = {0};
    eng_model *m = NULL;
    if (mkg_write(path, &sh, format, 5, msg, sizeof msg)) T_FAIL("%s", msg);
    int rc = eng_model_load(path, &m, &err);
    T_CHECKF(!rc, "%s", err.msg);
    if (rc) { unlink(path); return; }
    const int q4km = format == MKG_Q4_K_M;
    /* Q4_K_M: layers 0, 3, 6, 7 of 8 have more bits in attn_v and ffn_down */
    for (int l = 0; l < 8; l++) {
        const eng_layer_w *L = &m->layers[l];
        const int more = l == 0 || l == 3 || l >= 6;
        const int base = q4km ? ENG_DT_Q4_K : ENG_DT_Q8_0, hi = q4km && more ? ENG_DT_Q6_K : base;
        const eng_tensor *q = L->t_wq ? L->t_wq : L->t_wq_gguf;
        T_CHECKF(q && q->dtype == base && L->t_wv && L->t_wv->dtype == hi && L->t_down &&
                 L->t_down->dtype == hi && L->t_gate && L->t_gate->dtype == base,
                 "%s layer %d: types q %s v %s down %s", arch, l, q ? eng_dt_name(q->dtype) : "-",
                 L->t_wv ? eng_dt_name(L->t_wv->dtype) : "-",
                 L->t_down ? eng_dt_name(L->t_down->dtype) : "-");
    }
    const eng_tensor *head = m->t_lm_head;
    T_CHECKF(head && head->dtype == (q4km ? ENG_DT_Q6_K : ENG_DT_Q8_0), "%s lm_head %s", arch,
             head ? eng_dt_name(head->dtype) : "missing");
    if (!strcmp(arch, "llama")) {
        /* the stored q rows, dequantized and put in Hugging Face's order, are the f32 copy */
        const eng_tensor *t = m->layers[1].t_wq_gguf;
        size_t n = (size_t)256 * 256;
        float *a = malloc(n * 4), *b = malloc(n * 4);
        T_CHECK(t && !m->layers[1].t_wq && a && b);
        if (t && a && b) {
            eng_to_f32(t, a);
            permute_rows(m->layers[1].wq, 4, 64, 256, b);
            T_CHECK(!memcmp(a, b, n * 4));
        }
        free(a);
        free(b);
    }
    float *rows = malloc(sizeof(float) * 512 * STEPS);
    int ids[STEPS];
    rc = run_steps(m, ENG_BACKEND_CPU, rows, ids, &err);
    T_CHECKF(!rc, "%s: %s", arch, err.msg);
    for (int s = 0; s < STEPS && !rc; s++) {
        double sum = 0, ss = 0;
        int finite = 1;
        for (int i = 0; i < 512; i++) {
            float v = rows[s * 512 + i];
            finite &= isfinite(v);
            sum += v;
            ss += (double)v * v;
        }
        double sd = sqrt(ss / 512 - (sum / 512) * (sum / 512));
        printf("  %s %s step %d: token %d, logits sd %.3f\n", arch, q4km ? "q4_k_m" : "q8_0", s,
               ids[s], sd);
        T_CHECKF(finite && sd > 0.05 && ids[s] >= 0 && ids[s] < 512, "%s step %d: token %d, sd %g",
                 arch, s, ids[s], sd);
    }
    free(rows);
    eng_model_free(m);
    /* cut short: the last tensor's data runs past the end */
    FILE *f = fopen(path, "rb");
    long size = f && !fseek(f, 0, SEEK_END) ? ftell(f) : -1;
    if (f) fclose(f);
    T_CHECK(size > 4096 && truncate(path, size - 1000) == 0);
    m = NULL;
    rc = eng_model_load(path, &m, &err);
    T_CHECKF(rc == ENG_EFORMAT && strstr(err.msg, path) && strstr(err.msg, "truncated"),
             "cut file: rc %d, %s", rc, err.msg);
    eng_model_free(m);
    unlink(path);
}

static void test_mkgguf_q4_k_m(void) { check_mkgguf("llama", MKG_Q4_K_M, 0); }
static void test_mkgguf_q8_0(void) { check_mkgguf("qwen2", MKG_Q8_0, 1); }

/* ---------------------------------------------- eng_model_load_blocks */

/* One f32 weight of a model: its pointer, element count and the raw tensor
 * it comes from (llama's q/k: as stored; NULL where none is kept). */
typedef struct wref { float *const *p; size_t n; const eng_tensor *t; } wref;

#define WREFS(m) (3 + 16 * (m)->cfg.n_layers)

/* Every f32 weight of m, in a fixed order; returns how many (WREFS). */
static int weights_of(const eng_model *m, wref *r) {
    const eng_config *c = &m->cfg;
    size_t H = c->hidden, V = c->vocab_size, D = c->head_dim, I = c->intermediate;
    size_t Q = (size_t)c->n_heads * D, KV = (size_t)c->n_kv_heads * D;
    int k = 0;
    r[k++] = (wref){&m->embed, V * H, m->t_embed};
    r[k++] = (wref){&m->final_norm, H, m->t_final_norm};
    r[k++] = (wref){&m->lm_head, V * H, m->t_lm_head};
    for (int l = 0; l < c->n_layers; l++) {
        const eng_layer_w *L = &m->layers[l];
        r[k++] = (wref){&L->attn_norm, H, L->t_attn_norm};
        r[k++] = (wref){&L->wq, Q * H, L->t_wq ? L->t_wq : L->t_wq_gguf};
        r[k++] = (wref){&L->wk, KV * H, L->t_wk ? L->t_wk : L->t_wk_gguf};
        r[k++] = (wref){&L->wv, KV * H, L->t_wv};
        r[k++] = (wref){&L->wo, H * Q, L->t_wo};
        r[k++] = (wref){&L->bq, Q, L->t_bq};
        r[k++] = (wref){&L->bk, KV, L->t_bk};
        r[k++] = (wref){&L->bv, KV, L->t_bv};
        r[k++] = (wref){&L->ffn_norm, H, L->t_ffn_norm};
        r[k++] = (wref){&L->w_gate, I * H, L->t_gate};
        r[k++] = (wref){&L->w_up, I * H, L->t_up};
        r[k++] = (wref){&L->w_down, H * I, L->t_down};
        r[k++] = (wref){&L->q_norm, D, L->t_q_norm};
        r[k++] = (wref){&L->k_norm, D, L->t_k_norm};
        r[k++] = (wref){&L->post_attn_norm, H, L->t_post_attn_norm};
        r[k++] = (wref){&L->post_ffn_norm, H, L->t_post_ffn_norm};
    }
    return k;
}

/* What eng_model_load_blocks leaves without an f32 copy. */
static int is_blocks(const eng_tensor *t) {
    return t && t->ndim == 2 && eng_dt_block(t->dtype) > 1;
}

/* path loaded with eng_model_load_blocks against eng_model_load: the same
 * raw tensors; the block-quantized matrices have no f32 copy, everything
 * else has the eager one, and the CPU backends refuse the model while a
 * copy is missing; eng_model_dense then makes every f32 weight the eager
 * one bit for bit (llama's reordered q/k, the tied lm_head included) and a
 * second call changes nothing; an engine made from another lazily loaded
 * model gives the eager model's greedy steps.  Returns how many weights
 * waited (-1 when a load failed). */
static int check_blocks(const char *path, const char *what) {
    eng_err err = {0};
    eng_model *a = NULL, *b = NULL, *c = NULL;
    if (eng_model_load(path, &a, &err) || eng_model_load_blocks(path, &b, &err) ||
        eng_model_load_blocks(path, &c, &err)) {
        printf("  %s: %s\n", what, err.msg);
        t_cur_failed = 1;
        eng_model_free(a);
        eng_model_free(b);
        return -1;
    }
    wref *ra = malloc(sizeof *ra * WREFS(a)), *rb = malloc(sizeof *rb * WREFS(b));
    float **before = malloc(sizeof *before * WREFS(b));
    int n = weights_of(a, ra), deferred = 0;
    weights_of(b, rb);
    for (int i = 0; i < n; i++) {
        int lazy = is_blocks(ra[i].t);
        deferred += lazy && !(ra[i].p == &a->lm_head && a->cfg.tie_embeddings);   /* once */
        T_CHECKF(!ra[i].t == !rb[i].t && (!ra[i].t || !strcmp(ra[i].t->name, rb[i].t->name)),
                 "%s weight %d: raw tensors differ", what, i);
        T_CHECKF(!*rb[i].p == (!*ra[i].p || lazy) &&
                 (!*rb[i].p || same(*ra[i].p, *rb[i].p, ra[i].n)),
                 "%s weight %d (%s): %s before eng_model_dense", what, i,
                 ra[i].t ? ra[i].t->name : "-", *rb[i].p ? "f32 copy" : "no f32 copy");
    }
    T_CHECK(eng_model_has_dense(a) && eng_model_has_dense(b) == !deferred);
    eng_backend *be = NULL;
    int rc = eng_backend_cpu_create(b, 4, 16, ENG_KV_F32, ENG_ACT_F32, 1, &be, &err);
    T_CHECKF(deferred ? rc == ENG_EINVAL && !be && strstr(err.msg, "eng_model_dense") : !rc,
             "%s: CPU backend: rc %d, %s", what, rc, err.msg);
    if (be) be->destroy(be);
    be = NULL;
    rc = eng_backend_split_create(b, 4, 16, ENG_KV_F32, 2, 2, &be, &err);
    T_CHECKF(deferred ? rc == ENG_EINVAL && !be && strstr(err.msg, "eng_model_dense") : !rc,
             "%s: split backend: rc %d, %s", what, rc, err.msg);
    if (be) be->destroy(be);
    rc = eng_model_dense(b, &err);
    T_CHECKF(!rc && eng_model_has_dense(b), "%s: eng_model_dense: %s", what, err.msg);
    for (int i = 0; i < n; i++) {
        T_CHECKF(!*ra[i].p ? !*rb[i].p : same(*ra[i].p, *rb[i].p, ra[i].n),
                 "%s weight %d (%s) after eng_model_dense", what, i, ra[i].t ? ra[i].t->name : "-");
        before[i] = *rb[i].p;
    }
    if (a->cfg.tie_embeddings) T_CHECK(b->lm_head == b->embed && a->lm_head == a->embed);
    rc = eng_model_dense(b, &err);
    T_CHECKF(!rc && eng_model_has_dense(b), "%s: second eng_model_dense: %s", what, err.msg);
    for (int i = 0; i < n; i++) T_CHECKF(*rb[i].p == before[i], "%s weight %d moved", what, i);
    T_CHECKF(same_logits(a, c), "%s: the lazily loaded model's steps differ", what);
    T_CHECK(eng_model_has_dense(c));
    free(ra);
    free(rb);
    free(before);
    eng_model_free(a);
    eng_model_free(b);
    eng_model_free(c);
    return deferred;
}

/* mkgguf's random models in Q4_K_M (llama: q/k rows reordered; tied: the
 * Q6_K embedding is the lm_head; gemma3: norms held as 1 + w) and Q8_0
 * (qwen2, tied), llama's own fixture as GGUF with attn_q and ffn_down in
 * Q8_0 beside F32 (attn_k's rows reordered at load, attn_q's later), and a
 * folder (nothing waits); a file cut short is refused as by
 * eng_model_load. */
static void test_load_blocks(void) {
    static const struct { mkg_shape sh; int format; } cases[] = {
        {{"llama", 512, 256, 512, 8, 4, 2, 64, 0, 0, 10000.0}, MKG_Q4_K_M},
        {{"llama", 512, 256, 512, 8, 4, 2, 64, 1, 0, 10000.0}, MKG_Q4_K_M},
        {{"qwen2", 512, 256, 512, 2, 4, 2, 64, 1, 0, 10000.0}, MKG_Q8_0},
        {{"gemma3", 512, 256, 512, 4, 4, 2, 64, 1, 8, 10000.0}, MKG_Q4_K_M},
    };
    const char *path = path_for("blocks");
    char msg[256], what[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(what, sizeof what, "%s %s%s", cases[i].sh.arch,
                 cases[i].format == MKG_Q4_K_M ? "q4_k_m" : "q8_0", cases[i].sh.tied ? " tied" : "");
        if (mkg_write(path, &cases[i].sh, cases[i].format, 7, msg, sizeof msg))
            T_FAIL("%s: %s", what, msg);
        int n = check_blocks(path, what);
        printf("  %s: %d matrices waited for eng_model_dense\n", what, n);
        T_CHECKF(n > 0, "%s: %d deferred", what, n);
    }
    eng_err err = {0};
    eng_model *src = NULL, *m = NULL;
    if (eng_model_load(LLAMA, &src, &err)) T_FAIL("%s", err.msg);
    int rc = write_q8(src, path);
    T_CHECK(!rc && check_blocks(path, "llama fixture, q8_0 attn_q") == 2 * src->cfg.n_layers);
    eng_model_free(src);
    T_CHECK(check_blocks(LLAMA, "llama fixture folder") == 0);
    /* cut short: the last tensor's data runs past the end */
    FILE *f = fopen(path, "rb");
    long size = f && !fseek(f, 0, SEEK_END) ? ftell(f) : -1;
    if (f) fclose(f);
    T_CHECK(size > 4096 && truncate(path, size - 100) == 0);
    rc = eng_model_load_blocks(path, &m, &err);
    T_CHECKF(rc == ENG_EFORMAT && !m && strstr(err.msg, path) && strstr(err.msg, "truncated"),
             "cut file: rc %d, %s", rc, err.msg);
    eng_model_free(m);
    unlink(path);
}

/* Writes mkgguf's model sh in format and loads it with eng_model_load into
 * *eager (unless eager is NULL) and with eng_model_load_blocks into *lazy;
 * the file is removed.  ENG_OK, or a code with both left NULL. */
static int mk_models(const mkg_shape *sh, int format, eng_model **eager, eng_model **lazy,
                     eng_err *err) {
    const char *path = path_for("mk2");
    char msg[256];
    if (mkg_write(path, sh, format, 3, msg, sizeof msg))
        return eng_seterr(err, ENG_EIO, "%s", msg);
    int rc = eager ? eng_model_load(path, eager, err) : ENG_OK;
    if (!rc) rc = eng_model_load_blocks(path, lazy, err);
    unlink(path);
    if (rc && eager) {
        eng_model_free(*eager);
        *eager = NULL;
    }
    return rc;
}

/* eng_model_dense without the memory for its arena: ENG_ENOMEM saying so,
 * the model unchanged; with the memory back, it converts.  The address
 * space is capped just above what the process maps, and the arena (an
 * untied 40000-token vocabulary: 80 MB) is far above malloc's largest
 * mmap threshold (32 MB), so no free heap can serve it.  Not under a
 * sanitizer, whose allocator does not return NULL. */
static void test_dense_enomem(void) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    T_SKIP("sanitizer build: its allocator aborts instead of failing");
#else
    const mkg_shape sh = {"qwen2", 40000, 256, 512, 2, 4, 2, 64, 0, 0, 10000.0};
    eng_err err = {0};
    eng_model *m = NULL;
    int rc = mk_models(&sh, MKG_Q8_0, NULL, &m, &err);
    if (rc) T_FAIL("%s", err.msg);
    struct rlimit old, cap;
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld", &pages) != 1 || getrlimit(RLIMIT_AS, &old)) {
        if (f) fclose(f);
        eng_model_free(m);
        T_FAIL("cannot read the address space size or its limit");
    }
    fclose(f);
    cap = old;
    cap.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)16 << 20);
    if (old.rlim_cur != RLIM_INFINITY && cap.rlim_cur > old.rlim_cur) cap.rlim_cur = old.rlim_cur;
    T_CHECK(!setrlimit(RLIMIT_AS, &cap));
    rc = eng_model_dense(m, &err);
    T_CHECK(!setrlimit(RLIMIT_AS, &old));
    T_CHECKF(rc == ENG_ENOMEM && strstr(err.msg, "cannot allocate") &&
             strstr(err.msg, "f32 copy") && strstr(err.msg, "brisk_test_gguf"), "rc %d: %s", rc, err.msg);
    T_CHECK(!eng_model_has_dense(m) && !m->embed && !m->lm_head && !m->layers[0].wq);
    rc = eng_model_dense(m, &err);
    T_CHECKF(!rc && eng_model_has_dense(m) && m->embed && m->lm_head && m->layers[1].w_down,
             "rc %d: %s", rc, err.msg);
    eng_model_free(m);
#endif
}

/* The CUDA backend holding the blocks alone (--quant-lean) on a lazily
 * loaded Q4_K_M llama: eng_create leaves the f32 copy unmade, and the
 * greedy steps are bit for bit those of the same engine on the eagerly
 * loaded model.  Skips when built without CUDA or where no GPU is
 * visible. */
static void test_cuda_lean_blocks(void) {
#ifndef BRISK_CUDA
    T_SKIP("built without CUDA (make CUDA=1; it runs on a GPU machine)");
#else
    const mkg_shape sh = {"llama", 512, 256, 512, 8, 4, 2, 64, 0, 0, 10000.0};
    eng_err err = {0};
    eng_model *a = NULL, *b = NULL;
    int rc = mk_models(&sh, MKG_Q4_K_M, &a, &b, &err);
    if (rc) T_FAIL("%s", err.msg);
    const size_t n = (size_t)512 * STEPS;
    float *ra = malloc(sizeof(float) * n), *rb = malloc(sizeof(float) * n);
    int ia[STEPS], ib[STEPS];
    eng_opts o = {.backend = ENG_BACKEND_CUDA, .quant = ENG_QUANT_LEAN, .max_seqs = 1,
                  .n_threads = 1};
    rc = run_opts(a, &o, ra, ia, &err);
    if (rc == ENG_EUNSUPPORTED && strstr(err.msg, "device")) {
        free(ra);
        free(rb);
        eng_model_free(a);
        eng_model_free(b);
        T_SKIP("no CUDA device: %s", err.msg);
    }
    T_CHECKF(!rc, "eager: %s", err.msg);
    int rl = run_opts(b, &o, rb, ib, &err);
    T_CHECKF(!rl, "lazy: %s", err.msg);
    T_CHECK(!eng_model_has_dense(b) && !b->embed && !b->layers[0].wq);
    T_CHECK(!rc && !rl && !memcmp(ia, ib, sizeof ia) && !memcmp(ra, rb, sizeof(float) * n));
    for (int s = 0; s < STEPS && !rc && !rl; s++)
        printf("  step %d: token %d (eager), %d (lazy)\n", s, ia[s], ib[s]);
    free(ra);
    free(rb);
    eng_model_free(a);
    eng_model_free(b);
#endif
}

static void test_refused(void) {
    static const struct { int variant, code; const char *w1, *w2; } cases[] = {
        {V_ARCH, ENG_EUNSUPPORTED, "architecture gpt2", NULL},
        {V_NO_BLOCKS, ENG_EFORMAT, "missing metadata llama.block_count", NULL},
        {V_MOE, ENG_EUNSUPPORTED, "llama.expert_count", NULL},
        {V_SHAPE, ENG_EFORMAT, "blk.1.attn_k.weight", "shape"},
        {V_MISSING, ENG_EFORMAT, "blk.2.ffn_up.weight", "missing"},
        {V_ROPE_FREQS, ENG_EUNSUPPORTED, "rope_freqs.weight", NULL},
    };
    eng_err err = {0};
    eng_model *src = NULL;
    if (eng_model_load(LLAMA, &src, &err)) T_FAIL("%s", err.msg);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eng_model *m = NULL;
        expect ex = {0};
        int rc = load_variant(src, cases[i].variant, &ex, &m, &err);
        T_CHECKF(rc == cases[i].code && !m && strstr(err.msg, "brisk_test_gguf") &&
                 strstr(err.msg, cases[i].w1) && (!cases[i].w2 || strstr(err.msg, cases[i].w2)),
                 "variant %d: rc %d: %s", cases[i].variant, rc, err.msg);
        eng_model_free(m);
    }
    eng_model_free(src);
    /* a regular file that is not GGUF */
    const char *path = path_for("notgguf");
    write_bytes(path, (const uint8_t *)"{\"model_type\": \"llama\"}", 23);
    eng_model *m = NULL;
    int rc = eng_model_load(path, &m, &err);
    unlink(path);
    T_CHECKF(rc == ENG_EFORMAT && !m && strstr(err.msg, path) && strstr(err.msg, "GGUF"), "%s",
             err.msg);
}

int main(void) {
    T_RUN(test_llama);
    T_RUN(test_llama_q8);
    T_RUN(test_llama_tied);
    T_RUN(test_qwen2);
    T_RUN(test_qwen3);
    T_RUN(test_gemma3);
    T_RUN(test_refused);
    T_RUN(test_mkgguf_q4_k_m);
    T_RUN(test_mkgguf_q8_0);
    T_RUN(test_load_blocks);
    T_RUN(test_dense_enomem);
    T_RUN(test_cuda);
    T_RUN(test_cuda_lean_blocks);
    T_DONE();
}
