/* test_model.c — safetensors reader and model folder loader: the tiny
 * fixtures (f32 Qwen2, the same as f16, sharded bf16 Llama, bf16 Qwen3 and
 * Gemma 3, the latter also in the multimodal layout), rope scaling,
 * config overrides, malformed folders and random corruption. */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cJSON.h>
#include "t.h"
#include "internal.h"

#define QWEN "tests/fixtures/tiny-qwen2"
#define QWEN16 "tests/fixtures/tiny-qwen2-f16"
#define LLAMA "tests/fixtures/tiny-llama"
#define QWEN3 "tests/fixtures/tiny-qwen3"
#define GEMMA3 "tests/fixtures/tiny-gemma3"

/* ------------------------------------------------------------- helpers */

static char *read_all(const char *path, size_t *len) {
    char *b = NULL;
    eng_read_file(path, 0, &b, len, NULL);
    return b;
}

static void write_all(const char *path, const void *b, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) { printf("  cannot write %s\n", path); exit(1); }
    fwrite(b, 1, len, f);
    fclose(f);
}

static void write_str(const char *dir, const char *name, const char *s) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_all(p, s, strlen(s));
}

static cJSON *read_json(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *b = read_all(p, NULL);
    cJSON *j = b ? cJSON_Parse(b) : NULL;
    free(b);
    return j;
}

static void write_json(const char *dir, const char *name, const cJSON *j) {
    char *s = cJSON_Print(j);
    write_str(dir, name, s);
    free(s);
}

/* A scratch copy of a fixture folder under /tmp. */
static char *copy_fixture(const char *src) {
    char tmpl[] = "/tmp/brisk_model_XXXXXX";
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); exit(1); }
    DIR *d = opendir(src);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || strstr(e->d_name, "ref")) continue;  /* skip references */
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/%s", src, e->d_name);
        snprintf(b, sizeof b, "%s/%s", tmpl, e->d_name);
        size_t n;
        char *buf = read_all(a, &n);
        if (buf) write_all(b, buf, n);
        free(buf);
    }
    if (d) closedir(d);
    return strdup(tmpl);
}

static void remove_dir(char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
    free(dir);
}

/* A safetensors file split into its parsed header and data area. */
typedef struct st_file { cJSON *h; char *raw; size_t len, data_off; } st_file;

static st_file st_read(const char *path) {
    st_file s = {0};
    s.raw = read_all(path, &s.len);
    if (!s.raw || s.len < 8) { printf("  cannot read %s\n", path); exit(1); }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (uint8_t)s.raw[i];
    s.data_off = 8 + n;
    s.h = cJSON_ParseWithLength(s.raw + 8, n);
    return s;
}

/* Writes header h (as given) followed by the original data area. */
static void st_write(const char *path, const st_file *s) {
    char *txt = cJSON_PrintUnformatted(s->h);
    size_t n = strlen(txt), dlen = s->len - s->data_off;
    char *out = malloc(8 + n + dlen);
    for (int i = 0; i < 8; i++) out[i] = (char)((uint64_t)n >> (8 * i));
    memcpy(out + 8, txt, n);
    memcpy(out + 8 + n, s->raw + s->data_off, dlen);
    write_all(path, out, 8 + n + dlen);
    free(out);
    free(txt);
}

static void st_free(st_file *s) { cJSON_Delete(s->h); free(s->raw); }

static void set_shape2(cJSON *t, int a, int b) {
    cJSON_ReplaceItemInObject(t, "shape", cJSON_CreateIntArray((int[]){a, b}, 2));
}

static int loads(const char *dir, eng_err *err) {
    eng_model *m = NULL;
    memset(err, 0, sizeof *err);
    int rc = eng_model_load(dir, &m, err);
    if (rc == ENG_OK) eng_model_free(m);
    else if (m) printf("  model set on error\n");
    return rc;
}

#define CHECK_ERR(rc, want, err, needle) \
    T_CHECKF((rc) == (want) && strstr((err).msg, needle), "rc %d (want %d) msg '%s' needs '%s'", \
             rc, want, (err).msg, needle)

static float max_rel(const float *a, const float *b, size_t n) {
    float worst = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]) / (fabsf(a[i]) + 1e-4f);
        if (d > worst || d != d) worst = d != d ? INFINITY : d;
    }
    return worst;
}

static size_t numel(const eng_tensor *t) { return t->nbytes / (t->dtype == ENG_DT_F32 ? 4 : 2); }

/* ----------------------------------------------------- config checking */

static int json_int(const cJSON *c, const char *k, int def) {
    const cJSON *v = cJSON_GetObjectItem(c, k);
    return cJSON_IsNumber(v) ? v->valueint : def;
}

/* Config values against config.json (and generation_config.json for ids). */
static void check_config(const char *dir, const eng_config *g) {
    cJSON *c = read_json(dir, "config.json"), *gen = read_json(dir, "generation_config.json");
    T_CHECK(c != NULL);
    if (!c) return;
    const cJSON *mt = cJSON_GetObjectItem(c, "model_type"), *eps = cJSON_GetObjectItem(c, "rms_norm_eps");
    if (cJSON_IsString(mt)) T_CHECK(!strcmp(g->arch, mt->valuestring));
    T_CHECK(g->hidden == json_int(c, "hidden_size", -1));
    T_CHECK(g->intermediate == json_int(c, "intermediate_size", -1));
    T_CHECK(g->n_layers == json_int(c, "num_hidden_layers", -1));
    T_CHECK(g->n_heads == json_int(c, "num_attention_heads", -1));
    T_CHECK(g->n_kv_heads == json_int(c, "num_key_value_heads", g->n_heads));
    T_CHECK(g->head_dim == json_int(c, "head_dim", g->hidden / g->n_heads));
    T_CHECK(g->vocab_size == json_int(c, "vocab_size", -1));
    T_CHECK(g->max_pos == json_int(c, "max_position_embeddings", -1));
    T_CHECK(g->rms_eps == (float)(eps ? eps->valuedouble : 1e-6));
    const cJSON *rp = cJSON_GetObjectItem(c, "rope_parameters");
    const cJSON *th = rp ? cJSON_GetObjectItem(rp, "rope_theta") : cJSON_GetObjectItem(c, "rope_theta");
    T_CHECK(g->rope_theta == (float)(th ? th->valuedouble : 10000.0));
    T_CHECK(g->tie_embeddings == cJSON_IsTrue(cJSON_GetObjectItem(c, "tie_word_embeddings")));
    const cJSON *bsrc = gen && cJSON_GetObjectItem(gen, "bos_token_id") ? gen : c;
    const cJSON *esrc = gen && cJSON_GetObjectItem(gen, "eos_token_id") ? gen : c;
    T_CHECK(g->bos_id == json_int(bsrc, "bos_token_id", -1));
    const cJSON *eos = cJSON_GetObjectItem(esrc, "eos_token_id");
    if (cJSON_IsNumber(eos)) T_CHECK(g->n_eos == 1 && g->eos_ids[0] == eos->valueint);
    cJSON_Delete(c);
    cJSON_Delete(gen);
}

/* Every f32 weight of a equals the matching weight of b within tol
 * (relative); returns the number of compared tensors. */
static int compare_weights(const eng_model *a, const eng_model *b, float tol) {
    const eng_config *g = &a->cfg;
    size_t H = g->hidden, V = g->vocab_size, Q = (size_t)g->n_heads * g->head_dim;
    size_t KV = (size_t)g->n_kv_heads * g->head_dim, I = g->intermediate;
    int n = 0;
#define CMP(x, y, cnt) do { float r = max_rel(x, y, cnt); n++; \
        T_CHECKF(r <= tol, "%s: max relative difference %g", #x, r); } while (0)
    CMP(a->embed, b->embed, V * H);
    CMP(a->lm_head, b->lm_head, V * H);
    CMP(a->final_norm, b->final_norm, H);
    for (int l = 0; l < g->n_layers; l++) {
        const eng_layer_w *x = &a->layers[l], *y = &b->layers[l];
        CMP(x->attn_norm, y->attn_norm, H);
        CMP(x->ffn_norm, y->ffn_norm, H);
        CMP(x->wq, y->wq, Q * H);
        CMP(x->wk, y->wk, KV * H);
        CMP(x->wv, y->wv, KV * H);
        CMP(x->wo, y->wo, H * Q);
        CMP(x->w_gate, y->w_gate, I * H);
        CMP(x->w_up, y->w_up, I * H);
        CMP(x->w_down, y->w_down, H * I);
        if (g->qkv_bias) {
            CMP(x->bq, y->bq, Q);
            CMP(x->bk, y->bk, KV);
            CMP(x->bv, y->bv, KV);
        }
        if (g->qk_norm) {
            CMP(x->q_norm, y->q_norm, g->head_dim);
            CMP(x->k_norm, y->k_norm, g->head_dim);
        }
        if (g->post_norms) {
            CMP(x->post_attn_norm, y->post_attn_norm, H);
            CMP(x->post_ffn_norm, y->post_ffn_norm, H);
        }
    }
#undef CMP
    return n;
}

/* ---------------------------------------------------------------- tests */

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static void test_convert(void) {
    T_CHECK(eng_bf16_to_f32(0x3f80) == 1.0f);
    T_CHECK(eng_bf16_to_f32(0xc000) == -2.0f);
    T_CHECK(eng_bf16_to_f32(0x3eab) == 0x1.56p-2f);
    T_CHECK(isinf(eng_bf16_to_f32(0x7f80)));
    T_CHECK(bits(eng_bf16_to_f32(0x0001)) == 0x00010000u);
    T_CHECK(eng_f16_to_f32(0x3c00) == 1.0f);
    T_CHECK(eng_f16_to_f32(0xc000) == -2.0f);
    T_CHECK(eng_f16_to_f32(0x3555) == 0.333251953125f);
    T_CHECK(eng_f16_to_f32(0x7bff) == 65504.0f);
    T_CHECK(eng_f16_to_f32(0x0400) == 0x1p-14f);       /* smallest normal */
    T_CHECK(eng_f16_to_f32(0x0001) == 0x1p-24f);       /* smallest subnormal */
    T_CHECK(eng_f16_to_f32(0x03ff) == 0x3ffp-24f);     /* largest subnormal */
    T_CHECK(eng_f16_to_f32(0x8001) == -0x1p-24f);
    T_CHECK(bits(eng_f16_to_f32(0x8000)) == 0x80000000u);
    T_CHECK(isinf(eng_f16_to_f32(0x7c00)) && eng_f16_to_f32(0xfc00) < 0);
    T_CHECK(isnan(eng_f16_to_f32(0x7e00)));
    /* every f16 round-trips through f32 -> f16 by the compiler's own conversion */
    int bad = 0;
    for (uint32_t v = 0; v < 0x10000; v++) {
        float f = eng_f16_to_f32((uint16_t)v);
        _Float16 h = (_Float16)f;
        uint16_t back;
        memcpy(&back, &h, 2);
        if (!isnan(f) && back != v) bad++;
    }
    T_CHECKF(bad == 0, "%d f16 values do not round-trip", bad);
    /* eng_to_f32 on an unaligned buffer */
    uint8_t buf[1 + 6];
    uint16_t vals[3] = {0x3c00, 0xc000, 0x0001};
    memcpy(buf + 1, vals, 6);
    eng_tensor t = {.dtype = ENG_DT_F16, .ndim = 1, .shape = {3}, .data = buf + 1, .nbytes = 6};
    float out[3];
    eng_to_f32(&t, out);
    T_CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0x1p-24f);
}

/* The reader's table matches the header as cJSON reads it, and the data
 * pointers hold the file's bytes. */
static void test_st_api(void) {
    const char *path = QWEN "/model.safetensors";
    st_file s = st_read(path);
    eng_st *f = NULL;
    eng_err err = {0};
    T_CHECKF(eng_st_open(path, &f, &err) == ENG_OK, "%s", err.msg);
    if (!f) { st_free(&s); return; }
    int n = 0;
    for (cJSON *e = s.h->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        n++;
        const eng_tensor *t = eng_st_find(f, e->string);
        T_CHECKF(t != NULL, "%s not found", e->string);
        if (!t) continue;
        cJSON *sh = cJSON_GetObjectItem(e, "shape"), *off = cJSON_GetObjectItem(e, "data_offsets");
        T_CHECK(t->ndim == cJSON_GetArraySize(sh));
        for (int i = 0; i < t->ndim; i++) T_CHECK(t->shape[i] == cJSON_GetArrayItem(sh, i)->valueint);
        T_CHECK(t->dtype == ENG_DT_F32);
        size_t b = cJSON_GetArrayItem(off, 0)->valueint, en = cJSON_GetArrayItem(off, 1)->valueint;
        T_CHECK(t->nbytes == en - b);
        T_CHECK(!memcmp(t->data, s.raw + s.data_off + b, t->nbytes));
    }
    T_CHECK(eng_st_count(f) == n && n > 0);
    for (int i = 0; i < eng_st_count(f); i++) T_CHECK(eng_st_find(f, eng_st_get(f, i)->name) == eng_st_get(f, i));
    T_CHECK(eng_st_get(f, -1) == NULL && eng_st_get(f, n) == NULL);
    T_CHECK(eng_st_find(f, "model.nope") == NULL && eng_st_find(f, "") == NULL);
    eng_st_close(f);
    st_free(&s);
}

static eng_model *load_ok(const char *dir, double *ms) {
    eng_model *m = NULL;
    eng_err err = {0};
    double t0 = 1e3 * eng_now_s();
    int rc = eng_model_load(dir, &m, &err);
    if (ms) *ms = 1e3 * eng_now_s() - t0;
    T_CHECKF(rc == ENG_OK && m, "%s: rc %d: %s", dir, rc, err.msg);
    return m;
}

static void test_qwen2(void) {
    double ms;
    eng_model *m = load_ok(QWEN, &ms);
    if (!m) return;
    printf("  loaded %s in %.2f ms\n", QWEN, ms);
    const eng_config *g = eng_model_config(m);
    check_config(QWEN, g);
    T_CHECK(!strcmp(g->arch, "qwen2") && g->qkv_bias == 1 && g->tie_embeddings == 1);
    T_CHECK(eng_model_tok(m) != NULL && eng_tok_vocab_size(eng_model_tok(m)) <= g->vocab_size);
    /* tied: lm_head is the embedding, element for element */
    T_CHECK(m->lm_head == m->embed && m->t_lm_head == m->t_embed);
    if (!m->lm_head || !m->layers[1].bk) { eng_model_free(m); return; }
    /* f32 weights are the stored bytes */
    const eng_tensor *raw[] = {m->t_embed, m->t_final_norm, m->layers[0].t_wq, m->layers[1].t_bk,
                               m->layers[1].t_down, m->layers[0].t_attn_norm};
    const float *f32[] = {m->embed, m->final_norm, m->layers[0].wq, m->layers[1].bk,
                          m->layers[1].w_down, m->layers[0].attn_norm};
    for (int i = 0; i < 6; i++) {
        T_CHECK(raw[i] && raw[i]->dtype == ENG_DT_F32 && f32[i]);
        if (raw[i] && f32[i]) T_CHECKF(!memcmp(raw[i]->data, f32[i], raw[i]->nbytes), "%s", raw[i]->name);
    }
    T_CHECK(m->layers[1].t_bk && m->layers[1].bk && m->layers[0].bq && m->layers[0].bv);
    if (m->layers[1].t_bk) {
        T_CHECK(!strcmp(m->layers[1].t_bk->name, "model.layers.1.self_attn.k_proj.bias"));
        T_CHECK(m->layers[1].t_bk->shape[0] == g->n_kv_heads * g->head_dim);
    }
    /* rope: 1 / theta^(2i/hd) */
    for (int i = 0; i < g->head_dim / 2; i++) {
        double want = 1.0 / pow(g->rope_theta, 2.0 * i / g->head_dim);
        T_CHECKF(fabs(m->rope_inv_freq[i] - want) <= 1e-6 * want, "inv_freq[%d]", i);
    }
    eng_model_free(m);
}

static void test_qwen2_f16(void) {
    double ms;
    eng_model *a = load_ok(QWEN, NULL), *b = load_ok(QWEN16, &ms);
    if (a && b) {
        printf("  loaded %s in %.2f ms\n", QWEN16, ms);
        check_config(QWEN16, &b->cfg);
        T_CHECK(b->lm_head == b->embed && a->lm_head == a->embed);
        if (!b->lm_head || !a->lm_head || !a->layers[0].bq || !b->layers[0].bq) {
            T_CHECKF(0, "lm_head or biases missing");
            goto out;
        }
        T_CHECK(b->t_embed->dtype == ENG_DT_F16 && b->layers[0].t_bq->dtype == ENG_DT_F16);
        int n = compare_weights(a, b, 1e-3f);
        T_CHECK(n == 3 + 12 * a->cfg.n_layers);
        /* and the converted values are exactly the stored halves */
        const eng_tensor *t = b->layers[1].t_up;
        int bad = 0;
        for (size_t i = 0; i < numel(t); i++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
            _Float16 hf;
            memcpy(&hf, &h, 2);
            if (bits(b->layers[1].w_up[i]) != bits((float)hf)) bad++;
        }
        T_CHECK(bad == 0);
    }
out:
    eng_model_free(a);
    eng_model_free(b);
}

/* bf16 -> f32 must be exact: the f32 bits are the bf16 bits shifted up. */
static int bf16_exact(const eng_tensor *t, const float *f) {
    for (size_t i = 0; i < numel(t); i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        if (bits(f[i]) != (uint32_t)h << 16) return 0;
    }
    return 1;
}

/* Writes a synthetic llama folder (random bf16 weights, large enough that
 * conversion runs on several threads and in several chunks per tensor). */
static void add_tensor(cJSON *h, const char *name, int a, int b, size_t *off) {
    cJSON *t = cJSON_AddObjectToObject(h, name);
    cJSON_AddStringToObject(t, "dtype", "BF16");
    cJSON_AddItemToObject(t, "shape", b ? cJSON_CreateIntArray((int[]){a, b}, 2)
                                         : cJSON_CreateIntArray((int[]){a}, 1));
    size_t n = (size_t)a * (b ? b : 1) * 2;
    cJSON_AddItemToObject(t, "data_offsets", cJSON_CreateDoubleArray((double[]){*off, *off + n}, 2));
    *off += n;
}

static char *make_big_llama(int H, int I, int L, int V, int nh, int nkv) {
    char *d = copy_fixture(LLAMA), p[1024];
    DIR *dd = opendir(d);
    struct dirent *e;
    while ((e = readdir(dd)))
        if (strstr(e->d_name, "safetensors")) {
            snprintf(p, sizeof p, "%s/%s", d, e->d_name);
            unlink(p);
        }
    closedir(dd);
    cJSON *c = read_json(d, "config.json");
    cJSON_ReplaceItemInObject(c, "hidden_size", cJSON_CreateNumber(H));
    cJSON_ReplaceItemInObject(c, "intermediate_size", cJSON_CreateNumber(I));
    cJSON_ReplaceItemInObject(c, "num_hidden_layers", cJSON_CreateNumber(L));
    cJSON_ReplaceItemInObject(c, "vocab_size", cJSON_CreateNumber(V));
    cJSON_ReplaceItemInObject(c, "num_attention_heads", cJSON_CreateNumber(nh));
    cJSON_ReplaceItemInObject(c, "num_key_value_heads", cJSON_CreateNumber(nkv));
    cJSON_DeleteItemFromObject(c, "head_dim");
    write_json(d, "config.json", c);
    cJSON_Delete(c);
    int hd = H / nh, Q = nh * hd, KV = nkv * hd;
    cJSON *h = cJSON_CreateObject();
    size_t off = 0;
    char n[128];
    add_tensor(h, "model.embed_tokens.weight", V, H, &off);
    add_tensor(h, "lm_head.weight", V, H, &off);
    add_tensor(h, "model.norm.weight", H, 0, &off);
    for (int l = 0; l < L; l++) {
#define T(s, a, b) (snprintf(n, sizeof n, "model.layers.%d.%s", l, s), add_tensor(h, n, a, b, &off))
        T("input_layernorm.weight", H, 0);
        T("post_attention_layernorm.weight", H, 0);
        T("self_attn.q_proj.weight", Q, H);
        T("self_attn.k_proj.weight", KV, H);
        T("self_attn.v_proj.weight", KV, H);
        T("self_attn.o_proj.weight", H, Q);
        T("mlp.gate_proj.weight", I, H);
        T("mlp.up_proj.weight", I, H);
        T("mlp.down_proj.weight", H, I);
#undef T
    }
    char *txt = cJSON_PrintUnformatted(h);
    size_t hn = strlen(txt) + 1;       /* odd header length: data starts unaligned */
    if (hn % 2 == 0) hn++;
    char *buf = malloc(8 + hn + off);
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)hn >> (8 * i));
    memset(buf + 8, ' ', hn);
    memcpy(buf + 8, txt, strlen(txt));
    uint64_t s = 12345;
    for (size_t i = 0; i < off; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        buf[8 + hn + i] = (char)(s >> 24);
    }
    snprintf(p, sizeof p, "%s/weights.safetensors", d);
    write_all(p, buf, 8 + hn + off);
    free(buf);
    free(txt);
    cJSON_Delete(h);
    return d;
}

static void test_big_bf16(void) {
    char *d = make_big_llama(256, 704, 2, 16384, 4, 2);
    double ms;
    eng_model *m = load_ok(d, &ms);
    if (m) {
        printf("  loaded a %.1fM-parameter bf16 model in %.1f ms\n",
               (2.0 * 16384 * 256 + 2 * (256 * 256 * 2 + 2 * 128 * 256 + 3 * 704 * 256)) / 1e6, ms);
        T_CHECK(m->cfg.n_kv_heads == 2 && m->cfg.head_dim == 64);
        T_CHECK(bf16_exact(m->t_embed, m->embed) && bf16_exact(m->t_lm_head, m->lm_head));
        for (int l = 0; l < 2; l++) {
            const eng_layer_w *w = &m->layers[l];
            T_CHECK(bf16_exact(w->t_wq, w->wq) && bf16_exact(w->t_wk, w->wk) &&
                    bf16_exact(w->t_wv, w->wv) && bf16_exact(w->t_wo, w->wo) &&
                    bf16_exact(w->t_gate, w->w_gate) && bf16_exact(w->t_up, w->w_up) &&
                    bf16_exact(w->t_down, w->w_down) && bf16_exact(w->t_attn_norm, w->attn_norm));
            T_CHECK(((uintptr_t)w->wq & 63) == 0 && ((uintptr_t)w->attn_norm & 63) == 0);
        }
        eng_model_free(m);
    }
    remove_dir(d);
}

static void test_llama(void) {
    double ms;
    eng_model *m = load_ok(LLAMA, &ms);
    if (!m) return;
    printf("  loaded %s (sharded) in %.2f ms\n", LLAMA, ms);
    const eng_config *g = eng_model_config(m);
    check_config(LLAMA, g);
    T_CHECK(!strcmp(g->arch, "llama") && g->qkv_bias == 0 && g->tie_embeddings == 0);
    T_CHECK(g->n_kv_heads < g->n_heads);   /* GQA */
    T_CHECK(m->lm_head != m->embed && m->t_lm_head != m->t_embed);
    T_CHECK(!strcmp(m->t_lm_head->name, "lm_head.weight") && m->t_lm_head->dtype == ENG_DT_BF16);
    T_CHECK(m->layers[0].bq == NULL && m->layers[0].t_bq == NULL);
    T_CHECK(m->layers[2].t_wk->shape[0] == g->n_kv_heads * g->head_dim);
    T_CHECK(bf16_exact(m->t_embed, m->embed) && bf16_exact(m->t_lm_head, m->lm_head));
    T_CHECK(bf16_exact(m->layers[2].t_wv, m->layers[2].wv) &&
            bf16_exact(m->layers[1].t_gate, m->layers[1].w_gate) &&
            bf16_exact(m->t_final_norm, m->final_norm));
    /* a handful spelled out */
    for (int i = 0; i < 5; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)m->layers[0].t_wo->data + 2 * (size_t)i * 97, 2);
        uint32_t u = (uint32_t)h << 16;
        float want;
        memcpy(&want, &u, 4);
        T_CHECK(m->layers[0].wo[i * 97] == want && eng_bf16_to_f32(h) == want);
    }
    for (int i = 0; i < g->head_dim / 2; i++) {
        double want = 1.0 / pow(g->rope_theta, 2.0 * i / g->head_dim);
        T_CHECK(fabs(m->rope_inv_freq[i] - want) <= 1e-6 * want);
    }
    eng_model_free(m);
}

/* The same shards without the index are found by listing the folder. */
static void test_llama_no_index(void) {
    char *d = copy_fixture(LLAMA);
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    unlink(p);
    eng_model *a = load_ok(LLAMA, NULL), *b = load_ok(d, NULL);
    if (a && b) T_CHECK(compare_weights(a, b, 0) > 0);
    eng_model_free(a);
    eng_model_free(b);
    remove_dir(d);
}

static void test_generation_config(void) {
    char *d = copy_fixture(QWEN);
    write_str(d, "generation_config.json", "{\"bos_token_id\": 3, \"eos_token_id\": [5, 7, 1026]}");
    eng_model *m = load_ok(d, NULL);
    if (m) {
        T_CHECK(m->cfg.bos_id == 3 && m->cfg.n_eos == 3);
        T_CHECK(m->cfg.eos_ids[0] == 5 && m->cfg.eos_ids[1] == 7 && m->cfg.eos_ids[2] == 1026);
        eng_model_free(m);
    }
    /* without generation_config.json, config.json's list form is used */
    char p[1024];
    snprintf(p, sizeof p, "%s/generation_config.json", d);
    unlink(p);
    cJSON *c = read_json(d, "config.json");
    cJSON_ReplaceItemInObject(c, "eos_token_id", cJSON_CreateIntArray((int[]){9, 10}, 2));
    cJSON_ReplaceItemInObject(c, "bos_token_id", cJSON_CreateNull());
    write_json(d, "config.json", c);
    if ((m = load_ok(d, NULL))) {
        T_CHECK(m->cfg.bos_id == -1 && m->cfg.n_eos == 2 && m->cfg.eos_ids[1] == 10);
        eng_model_free(m);
    }
    /* eos beyond the vocabulary */
    cJSON_ReplaceItemInObject(c, "eos_token_id", cJSON_CreateNumber(5000));
    write_json(d, "config.json", c);
    eng_err err;
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "eos_token_id");
    cJSON_Delete(c);
    remove_dir(d);
}

/* Llama 3.1 frequency adjustment, in the transformers 5 and 4 spellings. */
static void test_rope_llama3(void) {
    char *d = copy_fixture(LLAMA);
    cJSON *c = read_json(d, "config.json");
    cJSON *rp = cJSON_CreateObject();
    cJSON_AddStringToObject(rp, "rope_type", "llama3");
    cJSON_AddNumberToObject(rp, "rope_theta", 100000.0);
    cJSON_AddNumberToObject(rp, "factor", 8.0);
    cJSON_AddNumberToObject(rp, "low_freq_factor", 1.0);
    cJSON_AddNumberToObject(rp, "high_freq_factor", 4.0);
    cJSON_AddNumberToObject(rp, "original_max_position_embeddings", 64);
    cJSON_ReplaceItemInObject(c, "rope_parameters", cJSON_Duplicate(rp, 1));
    write_json(d, "config.json", c);
    eng_model *m = load_ok(d, NULL);
    int hd = m ? m->cfg.head_dim : 0, bands[3] = {0};
    for (int i = 0; i < hd / 2; i++) {
        double f = 1.0 / pow(100000.0, 2.0 * i / hd), wl = 2 * M_PI / f, want;
        if (wl < 64 / 4.0) want = f, bands[0]++;              /* high frequency: kept */
        else if (wl > 64 / 1.0) want = f / 8, bands[2]++;     /* low frequency: / factor */
        else {
            double s = (64 / wl - 1.0) / (4.0 - 1.0);
            want = (1 - s) * f / 8 + s * f, bands[1]++;
        }
        T_CHECKF(fabs(m->rope_inv_freq[i] - want) <= 1e-6 * want, "inv_freq[%d] %g want %g", i,
                 m->rope_inv_freq[i], want);
    }
    T_CHECKF(bands[0] && bands[1] && bands[2], "bands %d %d %d", bands[0], bands[1], bands[2]);
    /* transformers 4: rope_theta on top, rope_scaling with "type" */
    float first[64];
    if (m) memcpy(first, m->rope_inv_freq, sizeof(float) * hd / 2);
    eng_model_free(m);
    cJSON_DeleteItemFromObject(c, "rope_parameters");
    cJSON_DeleteItemFromObject(rp, "rope_theta");
    cJSON_DeleteItemFromObject(rp, "rope_type");
    cJSON_AddStringToObject(rp, "type", "llama3");
    cJSON_AddNumberToObject(c, "rope_theta", 100000.0);
    cJSON_AddItemToObject(c, "rope_scaling", rp);
    write_json(d, "config.json", c);
    if ((m = load_ok(d, NULL))) {
        T_CHECK(!memcmp(first, m->rope_inv_freq, sizeof(float) * hd / 2));
        eng_model_free(m);
    }
    /* other scaling types are refused, by name */
    cJSON_ReplaceItemInObject(rp, "type", cJSON_CreateString("yarn"));
    write_json(d, "config.json", c);
    eng_err err;
    CHECK_ERR(loads(d, &err), ENG_EUNSUPPORTED, err, "yarn");
    /* llama3 missing a parameter */
    cJSON_ReplaceItemInObject(rp, "type", cJSON_CreateString("llama3"));
    cJSON_DeleteItemFromObject(rp, "low_freq_factor");
    write_json(d, "config.json", c);
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "low_freq_factor");
    cJSON_Delete(c);
    remove_dir(d);
}

/* Folder without model_type falls back on architectures. */
static void test_architectures(void) {
    char *d = copy_fixture(QWEN);
    cJSON *c = read_json(d, "config.json");
    cJSON_DeleteItemFromObject(c, "model_type");
    write_json(d, "config.json", c);
    eng_model *m = load_ok(d, NULL);
    if (m) T_CHECK(!strcmp(m->cfg.arch, "qwen2") && m->cfg.qkv_bias);
    eng_model_free(m);
    cJSON_DeleteItemFromObject(c, "architectures");
    write_json(d, "config.json", c);
    eng_err err;
    CHECK_ERR(loads(d, &err), ENG_EUNSUPPORTED, err, "config.json");
    cJSON_Delete(c);
    remove_dir(d);
}

/* ------------------------------------------------------ malformed folders */

static void test_bad_config(void) {
    char *d = copy_fixture(QWEN);
    eng_err err;
    write_str(d, "config.json", "{\"hidden_size\": 64,");
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "config.json");
    write_str(d, "config.json", "[1, 2]");
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "config.json");
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", d);
    unlink(p);
    CHECK_ERR(loads(d, &err), ENG_EIO, err, "config.json");
    remove_dir(d);
}

/* Copies a fixture, applies one edit to its config.json, checks the error. */
static void fixture_case(const char *fixture, void (*edit)(cJSON *c), int want,
                         const char *needle) {
    char *d = copy_fixture(fixture);
    cJSON *c = read_json(d, "config.json");
    edit(c);
    write_json(d, "config.json", c);
    cJSON_Delete(c);
    eng_err err;
    CHECK_ERR(loads(d, &err), want, err, needle);
    T_CHECKF(strstr(err.msg, "config.json"), "%s", err.msg);
    remove_dir(d);
}

static void config_case(void (*edit)(cJSON *c), int want, const char *needle) {
    fixture_case(QWEN, edit, want, needle);
}

static void no_hidden(cJSON *c) { cJSON_DeleteItemFromObject(c, "hidden_size"); }
static void str_hidden(cJSON *c) { cJSON_ReplaceItemInObject(c, "hidden_size", cJSON_CreateString("64")); }
static void frac_layers(cJSON *c) { cJSON_ReplaceItemInObject(c, "num_hidden_layers", cJSON_CreateNumber(2.5)); }
static void neg_vocab(cJSON *c) { cJSON_ReplaceItemInObject(c, "vocab_size", cJSON_CreateNumber(-3)); }
static void mistral(cJSON *c) { cJSON_ReplaceItemInObject(c, "model_type", cJSON_CreateString("mistral")); }
static void gelu(cJSON *c) { cJSON_ReplaceItemInObject(c, "hidden_act", cJSON_CreateString("gelu")); }
static void sliding(cJSON *c) { cJSON_ReplaceItemInObject(c, "use_sliding_window", cJSON_CreateTrue()); }
static void kv3(cJSON *c) { cJSON_ReplaceItemInObject(c, "num_key_value_heads", cJSON_CreateNumber(3)); }
static void bad_tie(cJSON *c) { cJSON_ReplaceItemInObject(c, "tie_word_embeddings", cJSON_CreateNumber(1)); }

static void test_config_fields(void) {
    config_case(no_hidden, ENG_EFORMAT, "hidden_size");
    config_case(str_hidden, ENG_EFORMAT, "hidden_size");
    config_case(frac_layers, ENG_EFORMAT, "num_hidden_layers");
    config_case(neg_vocab, ENG_EFORMAT, "vocab_size");
    config_case(kv3, ENG_EFORMAT, "num_key_value_heads");
    config_case(bad_tie, ENG_EFORMAT, "tie_word_embeddings");
}

static void test_unsupported_config(void) {
    config_case(mistral, ENG_EUNSUPPORTED, "mistral");
    config_case(gelu, ENG_EUNSUPPORTED, "gelu");
    config_case(sliding, ENG_EUNSUPPORTED, "sliding");
}

/* ------------------------------------------------------- Qwen3, Gemma 3 */

/* Qwen3: q/k norms, head_dim from the config (16, not hidden / heads = 8),
 * no q/k/v bias.  Without head_dim the config means transformers' 128,
 * which the weights do not have. */
static void test_qwen3(void) {
    eng_model *m = load_ok(QWEN3, NULL);
    if (!m) return;
    const eng_config *g = &m->cfg;
    check_config(QWEN3, g);
    T_CHECK(!strcmp(g->arch, "qwen3") && g->qk_norm && !g->qkv_bias && !g->post_norms &&
            !g->gelu && g->head_dim == 16 && g->hidden == 32 && g->embed_scale == 1.0f &&
            g->attn_scale == 0.25f && !g->sliding_window && !m->rope_inv_freq_local);
    T_CHECK(m->layers[1].q_norm && m->layers[1].k_norm && !m->layers[1].bq);
    /* plain RMSNorm weights: the stored values (bf16) */
    T_CHECK(m->layers[1].t_k_norm && bf16_exact(m->layers[1].t_k_norm, m->layers[1].k_norm));
    eng_model_free(m);
    char *d = copy_fixture(QWEN3);
    cJSON *c = read_json(d, "config.json");
    cJSON_DeleteItemFromObject(c, "head_dim");
    write_json(d, "config.json", c);
    cJSON_Delete(c);
    eng_err err;
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "model.layers.0.self_attn.q_proj.weight has shape [64, 32], expected [512, 32]");
    remove_dir(d);
}

/* Gemma 3 (text model): the config and the norms held as 1 + w. */
static void test_gemma3(void) {
    eng_model *m = load_ok(GEMMA3, NULL);
    if (!m) return;
    const eng_config *g = &m->cfg;
    T_CHECK(!strcmp(g->arch, "gemma3") && g->qk_norm && g->post_norms && g->gelu &&
            !g->qkv_bias && g->tie_embeddings && g->n_layers == 6 && g->head_dim == 32 &&
            g->n_heads == 2 && g->n_kv_heads == 1 && g->hidden == 32);
    T_CHECK(g->embed_scale == (float)sqrt(32.0) && g->attn_scale == (float)(1 / sqrt(24.0)));
    T_CHECK(g->sliding_window == 6 && g->swa_pattern == 6 && g->rope_theta == 1e6f &&
            g->rope_local_theta == 1e4f);
    for (int l = 0; l < 6; l++) T_CHECK(eng_layer_sliding(g, l) == (l != 5));
    T_CHECK(g->bos_id == 1024 && g->n_eos == 1 && g->eos_ids[0] == 1026);
    /* global layers: base 1e6 with linear scaling 8; sliding: base 1e4 */
    T_CHECK(m->rope_inv_freq_local);
    for (int i = 0; i < 16 && m->rope_inv_freq_local; i++) {
        double glob = 1.0 / pow(1e6, i / 16.0) / 8, loc = 1.0 / pow(1e4, i / 16.0);
        T_CHECKF(fabs(m->rope_inv_freq[i] - glob) <= 1e-6 * glob &&
                 fabs(m->rope_inv_freq_local[i] - loc) <= 1e-6 * loc, "inv_freq[%d]", i);
    }
    /* norms: 1 + the stored weight, and no raw tensor for them */
    st_file s = st_read(GEMMA3 "/model.safetensors");
    const eng_layer_w *L = &m->layers[2];
    static const char *const names[] = {"input_layernorm", "pre_feedforward_layernorm",
                                        "post_attention_layernorm", "post_feedforward_layernorm",
                                        "self_attn.q_norm", "self_attn.k_norm"};
    const float *held[] = {L->attn_norm, L->ffn_norm, L->post_attn_norm, L->post_ffn_norm,
                           L->q_norm, L->k_norm};
    for (int i = 0; i < 6; i++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.2.%s.weight", names[i]);
        const cJSON *t = cJSON_GetObjectItem(s.h, name);
        const cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
        T_CHECKF(t && held[i], "%s", name);
        if (!t || !held[i]) continue;
        const uint8_t *raw = (const uint8_t *)s.raw + s.data_off +
                             (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        uint16_t b0 = (uint16_t)(raw[0] | raw[1] << 8);
        T_CHECKF(held[i][0] == 1.0f + eng_bf16_to_f32(b0), "%s: %g", name, held[i][0]);
    }
    st_free(&s);
    T_CHECK(!L->t_attn_norm && !L->t_q_norm && !L->t_post_ffn_norm && !m->t_final_norm);
    T_CHECK(L->t_wq && L->t_down);   /* the projections keep theirs */
    eng_model_free(m);
}

/* The same model as Gemma 3's multimodal checkpoints lay it out: config
 * model_type gemma3 with the text model's settings in text_config (in
 * transformers 4's form: rope_theta, rope_local_base_freq, rope_scaling;
 * sliding_window_pattern instead of layer_types), tensors under
 * model.language_model.  Every weight and RoPE table equals the plain
 * folder's. */
static void test_gemma3_multimodal(void) {
    char *d = copy_fixture(GEMMA3);
    cJSON *text = read_json(d, "config.json");
    cJSON_DeleteItemFromObject(text, "rope_parameters");
    cJSON_DeleteItemFromObject(text, "layer_types");
    cJSON_AddNumberToObject(text, "rope_theta", 1e6);
    cJSON_AddNumberToObject(text, "rope_local_base_freq", 1e4);
    cJSON *rs = cJSON_AddObjectToObject(text, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "linear");
    cJSON_AddNumberToObject(rs, "factor", 8);
    cJSON_AddNumberToObject(text, "sliding_window_pattern", 6);
    cJSON *top = cJSON_CreateObject();
    cJSON_AddStringToObject(top, "model_type", "gemma3");
    cJSON_AddItemToObject(top, "architectures",
                          cJSON_CreateStringArray((const char *[]){"Gemma3ForConditionalGeneration"}, 1));
    cJSON_AddItemToObject(top, "text_config", text);
    write_json(d, "config.json", top);
    cJSON_Delete(top);
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    st_file s = st_read(p);
    cJSON *h = cJSON_CreateObject(), *t;
    cJSON_ArrayForEach(t, s.h) {
        char name[160];
        if (!strncmp(t->string, "model.", 6))
            snprintf(name, sizeof name, "model.language_model.%s", t->string + 6);
        else snprintf(name, sizeof name, "%s", t->string);
        cJSON_AddItemToObject(h, name, cJSON_Duplicate(t, 1));
    }
    cJSON_Delete(s.h);
    s.h = h;
    st_write(p, &s);
    st_free(&s);
    eng_model *a = load_ok(GEMMA3, NULL), *b = load_ok(d, NULL);
    if (a && b) {
        const eng_config *x = &a->cfg, *y = &b->cfg;
        T_CHECK(!strcmp(y->arch, "gemma3") && y->sliding_window == x->sliding_window &&
                y->swa_pattern == x->swa_pattern && y->attn_scale == x->attn_scale &&
                y->bos_id == x->bos_id && y->n_eos == x->n_eos);
        T_CHECK(compare_weights(a, b, 0) > 6 * 12);
        T_CHECK(!memcmp(a->rope_inv_freq, b->rope_inv_freq, sizeof(float) * 16) &&
                !memcmp(a->rope_inv_freq_local, b->rope_inv_freq_local, sizeof(float) * 16));
    }
    eng_model_free(a);
    eng_model_free(b);
    remove_dir(d);
}

static void gemma_case(void (*edit)(cJSON *c), int want, const char *needle) {
    fixture_case(GEMMA3, edit, want, needle);
}

static void softcap(cJSON *c) { cJSON_ReplaceItemInObject(c, "final_logit_softcapping", cJSON_CreateNumber(30)); }
static void attn_softcap(cJSON *c) { cJSON_ReplaceItemInObject(c, "attn_logit_softcapping", cJSON_CreateNumber(50)); }
static void exact_gelu(cJSON *c) { cJSON_ReplaceItemInObject(c, "hidden_activation", cJSON_CreateString("gelu")); }
static void bidir(cJSON *c) { cJSON_ReplaceItemInObject(c, "use_bidirectional_attention", cJSON_CreateTrue()); }
static void odd_layers(cJSON *c) {   /* full, then sliding: no period ends in full */
    cJSON *lt = cJSON_GetObjectItem(c, "layer_types");
    cJSON_ReplaceItemInArray(lt, 0, cJSON_CreateString("full_attention"));
    cJSON_ReplaceItemInArray(lt, 5, cJSON_CreateString("sliding_attention"));
}
static void chunked(cJSON *c) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(c, "layer_types"), 2, cJSON_CreateString("chunked_attention")); }
static void short_types(cJSON *c) { cJSON_DeleteItemFromArray(cJSON_GetObjectItem(c, "layer_types"), 0); }
static void no_text(cJSON *c) { cJSON_ReplaceItemInObject(c, "model_type", cJSON_CreateString("gemma3")); }
static void yarn(cJSON *c) {
    cJSON *f = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "rope_parameters"), "full_attention");
    cJSON_ReplaceItemInObject(f, "rope_type", cJSON_CreateString("yarn"));
}

static void test_gemma3_config(void) {
    gemma_case(softcap, ENG_EUNSUPPORTED, "final_logit_softcapping");
    gemma_case(attn_softcap, ENG_EUNSUPPORTED, "attn_logit_softcapping");
    gemma_case(exact_gelu, ENG_EUNSUPPORTED, "hidden_activation gelu");
    gemma_case(bidir, ENG_EUNSUPPORTED, "use_bidirectional_attention");
    gemma_case(odd_layers, ENG_EUNSUPPORTED, "period");
    gemma_case(chunked, ENG_EUNSUPPORTED, "chunked_attention");
    gemma_case(short_types, ENG_EFORMAT, "layer_types");
    gemma_case(no_text, ENG_EFORMAT, "text_config");
    gemma_case(yarn, ENG_EUNSUPPORTED, "yarn");
}

/* Copies a fixture, edits one tensor entry of a safetensors file's header. */
typedef void (*tensor_edit)(cJSON *t, size_t data_len);

static void st_case(const char *fixture, const char *file, const char *tensor, tensor_edit edit,
                    int want, const char *needle) {
    char *d = copy_fixture(fixture), p[1024];
    snprintf(p, sizeof p, "%s/%s", d, file);
    st_file s = st_read(p);
    if (edit) edit(cJSON_GetObjectItem(s.h, tensor), s.len - s.data_off);
    else cJSON_DeleteItemFromObject(s.h, tensor);
    st_write(p, &s);
    st_free(&s);
    eng_err err;
    CHECK_ERR(loads(d, &err), want, err, needle);
    T_CHECKF(strstr(err.msg, file), "'%s' does not name %s", err.msg, file);
    if (tensor) T_CHECKF(strstr(err.msg, tensor), "'%s' does not name %s", err.msg, tensor);
    remove_dir(d);
}

static void transpose(cJSON *t, size_t n) { set_shape2(t, 64, 176); }
static void short_shape(cJSON *t, size_t n) { set_shape2(t, 176, 63); }
static void i64(cJSON *t, size_t n) { cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("I64")); }
static void f8(cJSON *t, size_t n) { cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("F8_E4M3")); }
static void past_end(cJSON *t, size_t n) {
    int b = cJSON_GetArrayItem(cJSON_GetObjectItem(t, "data_offsets"), 0)->valueint;
    int e = cJSON_GetArrayItem(cJSON_GetObjectItem(t, "data_offsets"), 1)->valueint;
    cJSON_ReplaceItemInObject(t, "data_offsets", cJSON_CreateIntArray((int[]){(int)n - (e - b) + 4, (int)n + 4}, 2));
}
static void reversed(cJSON *t, size_t n) {
    cJSON_ReplaceItemInObject(t, "data_offsets", cJSON_CreateIntArray((int[]){2000, 1000}, 2));
}
static void five_dims(cJSON *t, size_t n) {
    cJSON_ReplaceItemInObject(t, "shape", cJSON_CreateIntArray((int[]){1, 1, 1, 176, 64}, 5));
}
static void neg_dim(cJSON *t, size_t n) { set_shape2(t, -176, 64); }
static void str_offsets(cJSON *t, size_t n) {
    cJSON_ReplaceItemInObject(t, "data_offsets", cJSON_CreateString("0-100"));
}
static void no_dtype(cJSON *t, size_t n) { cJSON_DeleteItemFromObject(t, "dtype"); }

#define GATE "model.layers.0.mlp.gate_proj.weight"

static void test_missing_tensor(void) {
    st_case(QWEN, "model.safetensors", "model.layers.1.mlp.up_proj.weight", NULL, ENG_EFORMAT, "missing");
    st_case(QWEN, "model.safetensors", "model.layers.0.self_attn.k_proj.bias", NULL, ENG_EFORMAT, "missing");
    st_case(QWEN, "model.safetensors", "model.norm.weight", NULL, ENG_EFORMAT, "missing");
}

static void test_wrong_shape(void) {
    st_case(QWEN, "model.safetensors", GATE, transpose, ENG_EFORMAT, "[64, 176], expected [176, 64]");
}

static void test_bad_entries(void) {
    st_case(QWEN, "model.safetensors", GATE, short_shape, ENG_EFORMAT, "bytes");
    st_case(QWEN, "model.safetensors", GATE, past_end, ENG_EFORMAT, "data_offsets");
    st_case(QWEN, "model.safetensors", GATE, reversed, ENG_EFORMAT, "data_offsets");
    st_case(QWEN, "model.safetensors", GATE, five_dims, ENG_EUNSUPPORTED, "dims");
    st_case(QWEN, "model.safetensors", GATE, neg_dim, ENG_EFORMAT, "shape");
    st_case(QWEN, "model.safetensors", GATE, str_offsets, ENG_EFORMAT, "data_offsets");
    st_case(QWEN, "model.safetensors", GATE, no_dtype, ENG_EFORMAT, "dtype");
}

static void test_unknown_dtype(void) {
    st_case(QWEN, "model.safetensors", GATE, i64, ENG_EUNSUPPORTED, "I64");
    st_case(LLAMA, "model-00002-of-00003.safetensors", "model.layers.0.mlp.up_proj.weight", f8,
            ENG_EUNSUPPORTED, "F8_E4M3");
}

/* Byte-level damage to the qwen2 file: fn alters the bytes, returns the new length. */
static void raw_case(size_t (*fn)(char *b, size_t len), int want, const char *needle) {
    char *d = copy_fixture(QWEN), p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    size_t len;
    char *b = read_all(p, &len);
    len = fn(b, len);
    write_all(p, b, len);
    free(b);
    eng_err err;
    CHECK_ERR(loads(d, &err), want, err, needle);
    T_CHECKF(strstr(err.msg, p), "'%s' does not name %s", err.msg, p);
    remove_dir(d);
}

static size_t cut_header(char *b, size_t len) { return 8 + (uint8_t)b[0] / 2; }
static size_t huge_len(char *b, size_t len) { memset(b, 0, 8); b[5] = 1; return len; }  /* 2^40 */
static size_t past_file(char *b, size_t len) {
    uint64_t n = len;    /* header length one more than the rest of the file */
    for (int i = 0; i < 8; i++) b[i] = (char)(n >> (8 * i));
    return len;
}
static size_t five_bytes(char *b, size_t len) { return 5; }
static size_t empty(char *b, size_t len) { return 0; }
static size_t not_json(char *b, size_t len) { memcpy(b + 8, "{\"a\" 1", 6); return len; }
static size_t not_object(char *b, size_t len) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (uint8_t)b[i];
    memset(b + 8, ' ', n);
    b[8] = '7';
    return len;
}
static size_t dup_name(char *b, size_t len) {
    /* renames the second tensor to the first's name (same length here) */
    char *first = strstr(b + 8, "model.layers.0.mlp.up_proj.weight");
    char *second = strstr(b + 8, "model.layers.1.mlp.up_proj.weight");
    if (first && second) memcpy(second, first, strlen("model.layers.0.mlp.up_proj.weight"));
    return len;
}

static void test_damaged_file(void) {
    raw_case(cut_header, ENG_EFORMAT, "exceeds");
    raw_case(huge_len, ENG_EFORMAT, "absurd");
    raw_case(past_file, ENG_EFORMAT, "exceeds");
    raw_case(five_bytes, ENG_EFORMAT, "shorter than");
    raw_case(empty, ENG_EFORMAT, "shorter than");
    raw_case(not_json, ENG_EFORMAT, "JSON");
    raw_case(not_object, ENG_EFORMAT, "JSON");
    raw_case(dup_name, ENG_EFORMAT, "duplicate tensor name model.layers.0.mlp.up_proj.weight");
}

static void test_index(void) {
    char *d = copy_fixture(LLAMA);
    cJSON *ix = read_json(d, "model.safetensors.index.json");
    cJSON *wm = cJSON_GetObjectItem(ix, "weight_map");
    eng_err err;
    /* a shard that does not exist */
    cJSON_ReplaceItemInObject(wm, "model.norm.weight", cJSON_CreateString("model-00009-of-00009.safetensors"));
    write_json(d, "model.safetensors.index.json", ix);
    CHECK_ERR(loads(d, &err), ENG_EIO, err, "model-00009-of-00009.safetensors");
    /* a shard that exists but lacks the tensor the index puts there */
    const char *real = cJSON_GetObjectItem(wm, "lm_head.weight")->valuestring;
    const char *other = strcmp(real, "model-00001-of-00003.safetensors") ?
                        "model-00001-of-00003.safetensors" : "model-00002-of-00003.safetensors";
    cJSON_ReplaceItemInObject(wm, "model.norm.weight", cJSON_CreateString(other));
    cJSON_ReplaceItemInObject(wm, "lm_head.weight", cJSON_CreateString(other));
    write_json(d, "model.safetensors.index.json", ix);
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "lm_head.weight");
    /* paths outside the folder are refused */
    cJSON_ReplaceItemInObject(wm, "lm_head.weight", cJSON_CreateString("../x.safetensors"));
    write_json(d, "model.safetensors.index.json", ix);
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "model.safetensors.index.json");
    /* no weight_map */
    write_str(d, "model.safetensors.index.json", "{\"metadata\": {}}");
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "weight_map");
    cJSON_Delete(ix);
    remove_dir(d);
}

/* A tokenizer with more tokens than the embedding has rows is refused. */
static void test_tokenizer_vocab(void) {
    char *d = copy_fixture(QWEN), p[1024];
    cJSON *c = read_json(d, "config.json");
    cJSON_ReplaceItemInObject(c, "vocab_size", cJSON_CreateNumber(1000));
    cJSON_ReplaceItemInObject(c, "bos_token_id", cJSON_CreateNumber(1));
    cJSON_ReplaceItemInObject(c, "eos_token_id", cJSON_CreateNumber(2));
    write_json(d, "config.json", c);
    cJSON_Delete(c);
    snprintf(p, sizeof p, "%s/generation_config.json", d);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    eng_err err;
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, p);
    T_CHECKF(strstr(err.msg, "vocab_size is 1000"), "%s", err.msg);
    remove_dir(d);
}

/* The same tensor in two files (no index) is ambiguous. */
static void test_duplicate_across_shards(void) {
    char *d = copy_fixture(LLAMA), a[1024], b[1024];
    snprintf(a, sizeof a, "%s/model.safetensors.index.json", d);
    unlink(a);
    snprintf(a, sizeof a, "%s/model-00001-of-00003.safetensors", d);
    snprintf(b, sizeof b, "%s/model-00004-of-00003.safetensors", d);
    size_t n;
    char *buf = read_all(a, &n);
    write_all(b, buf, n);
    free(buf);
    eng_err err;
    CHECK_ERR(loads(d, &err), ENG_EFORMAT, err, "model-00004-of-00003.safetensors");
    remove_dir(d);
}

static void test_missing_files(void) {
    char *d = copy_fixture(QWEN), p[1024];
    eng_err err;
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    unlink(p);
    CHECK_ERR(loads(d, &err), ENG_EIO, err, p);
    remove_dir(d);
    d = copy_fixture(QWEN);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    unlink(p);
    CHECK_ERR(loads(d, &err), ENG_EIO, err, d);
    remove_dir(d);
    /* untied llama without lm_head */
    st_case(LLAMA, "model-00003-of-00003.safetensors", "lm_head.weight", NULL, ENG_EFORMAT, "is not in");
    CHECK_ERR(loads("/nonexistent/brisk/model", &err), ENG_EIO, err, "/nonexistent/brisk/model");
}

/* Random damage: every variant must load or fail cleanly (no crash; run
 * under valgrind to see no invalid reads). */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

#ifndef FUZZ_N
#define FUZZ_N 120     /* build with -DFUZZ_N=5000 for a longer run */
#endif

static void test_fuzz(void) {
    char *d = copy_fixture(QWEN), p[1024], cp[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    snprintf(cp, sizeof cp, "%s/config.json", d);
    size_t len, clen;
    char *orig = read_all(p, &len), *corig = read_all(cp, &clen), *b = malloc(len);
    uint64_t hdr = 0, seed = 0x9e3779b97f4a7c15ull;
    for (int i = 7; i >= 0; i--) hdr = hdr << 8 | (uint8_t)orig[i];
    int n_ok = 0, n_err = 0, bad = 0;
    for (int v = 0; v < FUZZ_N; v++) {
        memcpy(b, orig, len);
        size_t n = len;
        int kind = v % 6;
        if (kind <= 2) {            /* flips inside the length + header */
            for (int k = 0, m = 1 + rng_next(&seed) % 4; k < m; k++)
                b[rng_next(&seed) % (8 + hdr)] = (char)rng_next(&seed);
        } else if (kind == 3) {     /* digit swaps: keeps JSON valid more often */
            for (int k = 0; k < 40; k++) {
                size_t at = 8 + rng_next(&seed) % hdr;
                if (b[at] >= '0' && b[at] <= '9') { b[at] = '0' + rng_next(&seed) % 10; break; }
            }
        } else if (kind == 4) {     /* truncation anywhere */
            n = rng_next(&seed) % len;
        } else {                    /* flips anywhere */
            for (int k = 0; k < 8; k++) b[rng_next(&seed) % len] = (char)rng_next(&seed);
        }
        write_all(p, b, n);
        /* a fifth of the variants damage config.json as well */
        char *cb = malloc(clen);
        memcpy(cb, corig, clen);
        if (v % 5 == 0) cb[rng_next(&seed) % clen] = (char)rng_next(&seed);
        write_all(cp, cb, clen);
        free(cb);
        eng_err err;
        int rc = loads(d, &err);
        if (rc == ENG_OK) n_ok++;
        else {
            n_err++;
            if (rc < ENG_EIO || rc > ENG_EUNSUPPORTED || !err.msg[0]) bad++;
        }
    }
    printf("  fuzz: %d variants, %d loaded, %d refused\n", FUZZ_N, n_ok, n_err);
    T_CHECK(bad == 0);
    T_CHECK(n_err > FUZZ_N / 2);   /* header damage is caught, not ignored */
    free(b);
    free(orig);
    free(corig);
    remove_dir(d);
}

int main(void) {
    /* the tests below read or copy these bundled fixtures */
    const char *const fixtures[] = { QWEN, QWEN16, LLAMA };
    for (int i = 0; i < 3; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/config.json", fixtures[i]);
        if (access(p, R_OK)) {
            printf("  FAIL: bundled fixture %s is missing\n0 passed, 1 failed, 0 skipped\n", p);
            return 1;
        }
    }
    T_RUN(test_convert);
    T_RUN(test_st_api);
    T_RUN(test_qwen2);
    T_RUN(test_qwen2_f16);
    T_RUN(test_llama);
    T_RUN(test_llama_no_index);
    T_RUN(test_big_bf16);
    T_RUN(test_generation_config);
    T_RUN(test_rope_llama3);
    T_RUN(test_architectures);
    T_RUN(test_bad_config);
    T_RUN(test_config_fields);
    T_RUN(test_unsupported_config);
    T_RUN(test_qwen3);
    T_RUN(test_gemma3);
    T_RUN(test_gemma3_multimodal);
    T_RUN(test_gemma3_config);
    T_RUN(test_missing_tensor);
    T_RUN(test_wrong_shape);
    T_RUN(test_bad_entries);
    T_RUN(test_unknown_dtype);
    T_RUN(test_damaged_file);
    T_RUN(test_index);
    T_RUN(test_duplicate_across_shards);
    T_RUN(test_tokenizer_vocab);
    T_RUN(test_missing_files);
    T_RUN(test_fuzz);
    T_DONE();
}
