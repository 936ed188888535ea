/* model_gguf.c — what a GGUF file says about its model: the config from the
 * metadata (architectures llama and qwen2), and the end-of-sequence ids.
 * model.c loads the weights with the same checks as for safetensors. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "gguf.h"

/* <arch>.<name> as an integer in [lo, hi]; absent gives def (required: an error). */
static int arch_int(const eng_gguf *g, const char *arch, const char *name, int required, int def,
                    int lo, int hi, int *out, eng_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    int64_t v = def;
    int rc = eng_gguf_get_int(g, key, required, &v, err);
    if (rc) return rc;
    if (v < lo || v > hi)
        return eng_seterr(err, ENG_EFORMAT, "%s: metadata %s is %lld, outside [%d, %d]",
                          eng_gguf_path(g), key, (long long)v, lo, hi);
    *out = (int)v;
    return ENG_OK;
}

/* <arch>.<name> as a positive finite number; absent gives def (def < 0: required). */
static int arch_pos(const eng_gguf *g, const char *arch, const char *name, double def,
                    double *out, eng_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    double v = def;
    int rc = eng_gguf_get_float(g, key, def < 0, &v, err);
    if (rc) return rc;
    if (!isfinite(v) || v <= 0)
        return eng_seterr(err, ENG_EFORMAT, "%s: metadata %s must be a positive number",
                          eng_gguf_path(g), key);
    *out = v;
    return ENG_OK;
}

/* A token id key (tokenizer.ggml.*_token_id): -1 when absent. */
static int token_id(const eng_gguf *g, const char *key, int vocab, int *out, eng_err *err) {
    int64_t v = -1;
    int rc = eng_gguf_get_int(g, key, 0, &v, err);
    if (rc) return rc;
    if (v < -1 || v >= vocab)
        return eng_seterr(err, ENG_EFORMAT, "%s: metadata %s is %lld, not a token id below the "
                          "vocabulary size %d", eng_gguf_path(g), key, (long long)v, vocab);
    *out = (int)v;
    return ENG_OK;
}

static void add_eos(eng_config *c, int id) {
    if (id < 0) return;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return;
    if (c->n_eos < (int)(sizeof c->eos_ids / sizeof *c->eos_ids)) c->eos_ids[c->n_eos++] = id;
}

/* Things these architectures may carry that the engine does not do. */
static int reject_features(const eng_gguf *g, const char *arch, eng_err *err) {
    const char *p = eng_gguf_path(g);
    int experts = 0, rc = arch_int(g, arch, "expert_count", 0, 0, 0, 1 << 20, &experts, err);
    if (rc) return rc;
    if (experts)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: mixture of experts (%s.expert_count %d) "
                          "not supported", p, arch, experts);
    char key[128];
    const char *s;
    size_t n = 0;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if ((rc = eng_gguf_get_str(g, key, 0, &s, &n, err))) return rc;
    if (n && !(n == 4 && !memcmp(s, "none", 4)))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: %s %.*s not supported", p, key,
                          n > 32 ? 32 : (int)n, s);
    if (eng_gguf_find_tensor(g, "rope_freqs.weight"))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: tensor rope_freqs.weight (scaled RoPE "
                          "frequencies) not supported", p);
    return ENG_OK;
}

int eng_gguf_config(const eng_gguf *g, eng_config *c, double *rope_theta, eng_err *err) {
    const char *p = eng_gguf_path(g), *s;
    size_t n;
    memset(c, 0, sizeof *c);
    int rc = eng_gguf_get_str(g, "general.architecture", 1, &s, &n, err);
    if (rc) return rc;
    if (!(n == 5 && !memcmp(s, "llama", 5)) && !(n == 5 && !memcmp(s, "qwen2", 5)))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: architecture %.*s not supported (llama, "
                          "qwen2)", p, n > 32 ? 32 : (int)n, s);
    memcpy(c->arch, s, n);
    const char *a = c->arch;
    if ((rc = reject_features(g, a, err)) ||
        (rc = arch_int(g, a, "block_count", 1, 0, 1, 1024, &c->n_layers, err)) ||
        (rc = arch_int(g, a, "embedding_length", 1, 0, 1, 1 << 16, &c->hidden, err)) ||
        (rc = arch_int(g, a, "feed_forward_length", 1, 0, 1, 1 << 20, &c->intermediate, err)) ||
        (rc = arch_int(g, a, "attention.head_count", 1, 0, 1, 1024, &c->n_heads, err)) ||
        (rc = arch_int(g, a, "attention.head_count_kv", 0, c->n_heads, 1, c->n_heads,
                       &c->n_kv_heads, err)) ||
        (rc = arch_int(g, a, "context_length", 1, 0, 1, 1 << 24, &c->max_pos, err)))
        return rc;
    if (c->n_heads % c->n_kv_heads)
        return eng_seterr(err, ENG_EFORMAT, "%s: %s.attention.head_count %d is not a multiple of "
                          "head_count_kv %d", p, a, c->n_heads, c->n_kv_heads);
    int def_hd = c->hidden % c->n_heads ? 0 : c->hidden / c->n_heads, vdim, rot;
    if ((rc = arch_int(g, a, "attention.key_length", !def_hd, def_hd, 2, 4096, &c->head_dim, err)) ||
        (rc = arch_int(g, a, "attention.value_length", 0, c->head_dim, 1, 4096, &vdim, err)) ||
        (rc = arch_int(g, a, "rope.dimension_count", 0, c->head_dim, 1, 4096, &rot, err)))
        return rc;
    if (c->head_dim % 2)
        return eng_seterr(err, ENG_EFORMAT, "%s: head dim %d is odd (RoPE needs pairs)", p,
                          c->head_dim);
    if (vdim != c->head_dim || rot != c->head_dim)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: value length %d or RoPE dims %d differ from "
                          "the head dim %d (not supported)", p, vdim, rot, c->head_dim);
    double eps;
    if ((rc = arch_pos(g, a, "attention.layer_norm_rms_epsilon", -1, &eps, err)) ||
        (rc = arch_pos(g, a, "rope.freq_base", 10000.0, rope_theta, err)))
        return rc;
    c->rms_eps = (float)eps;
    c->rope_theta = (float)*rope_theta;
    /* vocabulary: the tokenizer's token list, else <arch>.vocab_size */
    int tk = eng_gguf_find(g, "tokenizer.ggml.tokens");
    if (tk >= 0) {
        uint64_t nt = eng_gguf_arr_len(g, tk);
        if (eng_gguf_arr_type(g, tk) != ENG_GGUF_STR || nt < 1 || nt > (1 << 24))
            return eng_seterr(err, ENG_EFORMAT, "%s: metadata tokenizer.ggml.tokens must be an "
                              "array of 1 to 2^24 strings", p);
        c->vocab_size = (int)nt;
    } else if ((rc = arch_int(g, a, "vocab_size", 1, 0, 1, 1 << 24, &c->vocab_size, err)))
        return rc;
    c->tie_embeddings = !eng_gguf_find_tensor(g, "output.weight");
    c->qkv_bias = !strcmp(a, "qwen2") || eng_gguf_find_tensor(g, "blk.0.attn_q.bias");
    int eos = -1, eot = -1;
    if ((rc = token_id(g, "tokenizer.ggml.bos_token_id", c->vocab_size, &c->bos_id, err)) ||
        (rc = token_id(g, "tokenizer.ggml.eos_token_id", c->vocab_size, &eos, err)) ||
        (rc = token_id(g, "tokenizer.ggml.eot_token_id", c->vocab_size, &eot, err)))
        return rc;
    add_eos(c, eos);
    add_eos(c, eot);
    return ENG_OK;
}

/* A GGUF file names one eos token, which for chat models is often not the
 * token that ends an assistant turn (SmolLM2's converter has at times
 * written <|im_start|> or <|endoftext|>).  Like llama.cpp, which also stops
 * at its end-of-turn token, generation stops at the file's eos, at
 * tokenizer.ggml.eot_token_id, and at <|im_end|> when the vocabulary has it
 * and the chat template writes it (ChatML). */
void eng_gguf_add_eot(eng_config *c, const eng_tok *tok, const char *chat_template) {
    if (chat_template && strstr(chat_template, "<|im_end|>"))
        add_eos(c, eng_tok_find(tok, "<|im_end|>"));
}
