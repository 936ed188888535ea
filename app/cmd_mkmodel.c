/* cmd_mkmodel.c — `brisk mkmodel`: writes a randomly initialised model with
 * the shapes of a real one, for benchmarks of speed, which does not depend
 * on the weights' values, where no real checkpoint is at hand.  Its answers
 * are gibberish.  --format bf16 (default) writes a folder (config.json +
 * bf16 model.safetensors + the tokenizer); q8_0, q4_0 and q4_k_m write one
 * GGUF file (benchmarks/lib/mkgguf.h: the types per tensor, the tokenizer
 * it carries). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cjson/cJSON.h>
#include "cmds.h"
#include "args.h"
#include "eng.h"
#include "mkgguf.h"

typedef struct preset {
    const char *name, *arch;   /* arch: config.json model_type */
    int vocab, hidden, inter, layers, heads, kv_heads, tied;
    double theta;
    int head_dim;              /* 0: hidden / heads */
    int window;                /* gemma3_text: sliding window (every 6th layer global) */
} preset;

/* Shapes from the models' published config.json files. */
static const preset presets[] = {
    { "qwen2.5-0.5b", "qwen2", 151936, 896, 4864, 24, 14, 2, 1, 1000000.0, 0, 0 },
    { "qwen2.5-1.5b", "qwen2", 151936, 1536, 8960, 28, 12, 2, 1, 1000000.0, 0, 0 },
    { "qwen2.5-3b",   "qwen2", 151936, 2048, 11008, 36, 16, 2, 1, 1000000.0, 0, 0 },
    { "qwen2.5-7b",   "qwen2", 152064, 3584, 18944, 28, 28, 4, 0, 1000000.0, 0, 0 },
    { "qwen2.5-32b",  "qwen2", 152064, 5120, 27648, 64, 40, 8, 0, 1000000.0, 0, 0 },
    { "qwen3-0.6b",   "qwen3", 151936, 1024, 3072, 28, 16, 8, 1, 1000000.0, 128, 0 },
    { "qwen3-1.7b",   "qwen3", 151936, 2048, 6144, 28, 16, 8, 1, 1000000.0, 128, 0 },
    { "qwen3-8b",     "qwen3", 151936, 4096, 12288, 36, 32, 8, 0, 1000000.0, 128, 0 },
    { "gemma3-1b",    "gemma3_text", 262144, 1152, 6912, 26, 4, 1, 1, 1000000.0, 256, 512 },
    { "smollm2-135m", "llama", 49152, 576, 1536, 30, 9, 3, 1, 100000.0, 0, 0 },
    { "smollm2-360m", "llama", 49152, 960, 2560, 32, 15, 5, 1, 100000.0, 0, 0 },
};

static int is_gemma(const preset *p) { return !strcmp(p->arch, "gemma3_text"); }
static int head_dim(const preset *p) { return p->head_dim ? p->head_dim : p->hidden / p->heads; }

typedef struct tensor_spec { char name[96]; long rows, cols; int kind; } tensor_spec; /* kind 0 matrix, 1 norm, 2 bias */

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* Qwen2 has q/k/v biases; Qwen3 and Gemma 3 per-head q/k norms; Gemma 3
 * norms on the attention and MLP outputs (its MLP input norm is
 * pre_feedforward_layernorm, its post_attention_layernorm the attention
 * output's). */
static int list_tensors(const preset *p, tensor_spec *t) {
    int n = 0, hd = head_dim(p), gemma = is_gemma(p), qk = gemma || !strcmp(p->arch, "qwen3");
    snprintf(t[n].name, 96, "model.embed_tokens.weight"); t[n].rows = p->vocab; t[n].cols = p->hidden; t[n++].kind = 0;
    for (int l = 0; l < p->layers; l++) {
        const struct { const char *s; long r, c; int k; } w[] = {
            { "input_layernorm.weight", p->hidden, 0, 1 },
            { "self_attn.q_proj.weight", (long)p->heads * hd, p->hidden, 0 },
            { "self_attn.k_proj.weight", (long)p->kv_heads * hd, p->hidden, 0 },
            { "self_attn.v_proj.weight", (long)p->kv_heads * hd, p->hidden, 0 },
            { "self_attn.q_proj.bias", (long)p->heads * hd, 0, 2 },
            { "self_attn.k_proj.bias", (long)p->kv_heads * hd, 0, 2 },
            { "self_attn.v_proj.bias", (long)p->kv_heads * hd, 0, 2 },
            { "self_attn.o_proj.weight", p->hidden, (long)p->heads * hd, 0 },
            { "self_attn.q_norm.weight", hd, 0, 3 },
            { "self_attn.k_norm.weight", hd, 0, 3 },
            { "post_attention_layernorm.weight", p->hidden, 0, 1 },
            { "pre_feedforward_layernorm.weight", p->hidden, 0, 4 },
            { "post_feedforward_layernorm.weight", p->hidden, 0, 4 },
            { "mlp.gate_proj.weight", p->inter, p->hidden, 0 },
            { "mlp.up_proj.weight", p->inter, p->hidden, 0 },
            { "mlp.down_proj.weight", p->hidden, p->inter, 0 },
        };
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
            if ((w[i].k == 2 && strcmp(p->arch, "qwen2")) || (w[i].k == 3 && !qk) ||
                (w[i].k == 4 && !gemma))
                continue;
            snprintf(t[n].name, 96, "model.layers.%d.%s", l, w[i].s);
            t[n].rows = w[i].r; t[n].cols = w[i].c; t[n++].kind = w[i].k > 2 ? 1 : w[i].k;
        }
    }
    snprintf(t[n].name, 96, "model.norm.weight"); t[n].rows = p->hidden; t[n].cols = 0; t[n++].kind = 1;
    if (!p->tied) { snprintf(t[n].name, 96, "lm_head.weight"); t[n].rows = p->vocab; t[n].cols = p->hidden; t[n++].kind = 0; }
    return n;
}

static int write_config(const char *dir, const preset *p, int eos) {
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    const char *cls = !strcmp(p->arch, "qwen2") ? "Qwen2ForCausalLM"
                    : !strcmp(p->arch, "qwen3") ? "Qwen3ForCausalLM"
                    : is_gemma(p) ? "Gemma3ForCausalLM" : "LlamaForCausalLM";
    cJSON_AddItemToArray(arch, cJSON_CreateString(cls));
    cJSON_AddStringToObject(c, "model_type", p->arch);
    if (p->head_dim) cJSON_AddNumberToObject(c, "head_dim", p->head_dim);
    if (is_gemma(p)) {
        cJSON_AddNumberToObject(c, "query_pre_attn_scalar", head_dim(p));
        cJSON_AddNumberToObject(c, "sliding_window", p->window);
        cJSON_AddNumberToObject(c, "sliding_window_pattern", 6);
        cJSON_AddNumberToObject(c, "rope_local_base_freq", 10000.0);
        cJSON_AddStringToObject(c, "hidden_activation", "gelu_pytorch_tanh");
    } else {
        cJSON_AddStringToObject(c, "hidden_act", "silu");
    }
    cJSON_AddNumberToObject(c, "vocab_size", p->vocab);
    cJSON_AddNumberToObject(c, "hidden_size", p->hidden);
    cJSON_AddNumberToObject(c, "intermediate_size", p->inter);
    cJSON_AddNumberToObject(c, "num_hidden_layers", p->layers);
    cJSON_AddNumberToObject(c, "num_attention_heads", p->heads);
    cJSON_AddNumberToObject(c, "num_key_value_heads", p->kv_heads);
    cJSON_AddNumberToObject(c, "max_position_embeddings", 32768);
    cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-6);
    cJSON_AddNumberToObject(c, "rope_theta", p->theta);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", p->tied);
    cJSON_AddStringToObject(c, "torch_dtype", "bfloat16");
    cJSON_AddNumberToObject(c, "eos_token_id", eos);
    char path[1024], *s = cJSON_Print(c);
    cJSON_Delete(c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    int ok = f && s && fputs(s, f) >= 0;
    if (f) ok &= fclose(f) == 0;
    free(s);
    return ok ? 0 : -1;
}

static int write_weights(const char *dir, const preset *p, uint64_t seed) {
    tensor_spec *t = calloc(16 + (size_t)p->layers * 16, sizeof *t);
    if (!t) return -1;
    int n = list_tensors(p, t);
    cJSON *h = cJSON_CreateObject();
    long off = 0;
    for (int i = 0; i < n; i++) {
        long elems = t[i].rows * (t[i].cols ? t[i].cols : 1);
        cJSON *e = cJSON_AddObjectToObject(h, t[i].name);
        cJSON_AddStringToObject(e, "dtype", "BF16");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].rows));
        if (t[i].cols) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].cols));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + elems * 2)));
        off += elems * 2;
    }
    char *hs = cJSON_PrintUnformatted(h), path[1024];
    cJSON_Delete(h);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f || !hs) { free(hs); free(t); if (f) fclose(f); return -1; }
    uint64_t hl = strlen(hs);
    fwrite(&hl, 8, 1, f);   /* little-endian hosts only (x86-64, arm64) */
    fwrite(hs, 1, hl, f);
    free(hs);
    uint16_t buf[4096];
    for (int i = 0; i < n; i++) {
        long elems = t[i].rows * (t[i].cols ? t[i].cols : 1);
        /* uniform with the variance of N(0, 1/fan_in) keeps activations sane */
        float scale = t[i].kind == 0 ? sqrtf(3.0f / (float)t[i].cols) : 0.1f;
        for (long j = 0; j < elems; j += 4096) {
            long k = elems - j < 4096 ? elems - j : 4096;
            for (long q = 0; q < k; q++) {
                float u = (float)((eng_rng_next(&seed) >> 40) * (1.0 / 16777216.0)) * 2 - 1;
                /* norm weights near 1; Gemma's near 0 (it multiplies by 1 + w) */
                float centre = t[i].kind == 1 && !is_gemma(p) ? 1.0f : 0.0f;
                buf[q] = to_bf16(centre + scale * u);
            }
            fwrite(buf, 2, (size_t)k, f);
        }
    }
    free(t);
    return fclose(f) == 0 ? 0 : -1;
}

static int copy_file(const char *src, const char *dst) {
    FILE *a = fopen(src, "rb"), *b = a ? fopen(dst, "wb") : NULL;
    char buf[65536];
    size_t k;
    int ok = a && b;
    while (ok && (k = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, k, b) == k;
    if (a) fclose(a);
    if (b) ok &= fclose(b) == 0;
    return ok ? 0 : -1;
}

/* The preset as mkgguf takes it (GGUF architecture names). */
static mkg_shape gguf_shape(const preset *p) {
    mkg_shape s = {is_gemma(p) ? "gemma3" : p->arch, p->vocab, p->hidden, p->inter, p->layers,
                   p->heads, p->kv_heads, p->head_dim, p->tied, p->window, p->theta};
    return s;
}

int cmd_mkmodel(int argc, char **argv) {
    const char *name = NULL, *out = NULL, *tok = "tests/fixtures/tok-qwen2/tokenizer.json";
    const char *format = "bf16";
    uint64_t seed = 1;
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i];
        if (strcmp(k, "--preset") && strcmp(k, "--out") && strcmp(k, "--tokenizer") &&
            strcmp(k, "--seed") && strcmp(k, "--format"))
            return arg_unknown("mkmodel", k), 2;
        if (i + 1 == argc) return arg_missing("mkmodel", k), 2;
        if (!strcmp(k, "--preset")) name = argv[i + 1];
        else if (!strcmp(k, "--out")) out = argv[i + 1];
        else if (!strcmp(k, "--tokenizer")) tok = argv[i + 1];
        else if (!strcmp(k, "--format")) format = argv[i + 1];
        else if (arg_u64("mkmodel", k, argv[i + 1], &seed)) return 2;
    }
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (name && !strcmp(name, presets[i].name)) p = &presets[i];
    const int fmt = strcmp(format, "bf16") ? mkg_format(format) : -2;
    if (name && !p) fprintf(stderr, "brisk mkmodel: unknown preset '%s'\n", name);
    else if (name && !out) fprintf(stderr, "brisk mkmodel: --out DIR is required\n");
    else if (fmt == -1) fprintf(stderr, "brisk mkmodel: unknown format '%s' (bf16, q8_0, q4_0, q4_k_m)\n", format);
    if (!p || !out || fmt == -1) {
        fprintf(stderr, "usage: brisk mkmodel --preset NAME --out DIR [--tokenizer tokenizer.json] [--seed S]\n"
                        "       brisk mkmodel --preset NAME --format q8_0|q4_0|q4_k_m --out FILE.gguf [--seed S]\n  presets:");
        for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) fprintf(stderr, " %s", presets[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    if (fmt >= 0) {
        mkg_shape sh = gguf_shape(p);
        char msg[512];
        if (mkg_write(out, &sh, fmt, seed, msg, sizeof msg)) {
            fprintf(stderr, "brisk mkmodel: %s\n", msg);
            return 1;
        }
        printf("wrote %s (%s shapes, random %s weights)\n", out, p->name, format);
        return 0;
    }
    /* the chat turn's end token of the copied tokenizer ends generation, as
     * in the real models' generation settings */
    eng_err err = {0};
    eng_tok *tk = NULL;
    if (eng_tok_load(tok, &tk, &err)) {
        fprintf(stderr, "brisk mkmodel: %s\n", err.msg);
        return 1;
    }
    int eos = eng_tok_find(tk, "<|im_end|>");
    if (eos < 0) eos = eng_tok_find(tk, "<|endoftext|>");
    eng_tok_free(tk);
    if (eos < 0 || eos >= p->vocab) {
        fprintf(stderr, "brisk mkmodel: %s has no <|im_end|> or <|endoftext|> token below %d\n", tok, p->vocab);
        return 1;
    }
    char cmd[1200], dst[1100];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", out);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", out);
    if (system(cmd) || write_config(out, p, eos) || write_weights(out, p, seed) || copy_file(tok, dst)) {
        fprintf(stderr, "brisk mkmodel: could not write %s\n", out);
        return 1;
    }
    printf("wrote %s (%s shapes, random bf16 weights)\n", out, p->name);
    return 0;
}
