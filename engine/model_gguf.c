/* model_gguf.c — what a GGUF file says about its model: the config from the
 * metadata (architectures llama, qwen2, qwen3, gemma3), and the
 * end-of-sequence ids.
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

/* Things these architectures may carry that the engine does not do.  RoPE
 * scaling may be linear (*linear_factor; 1 when none). */
static int reject_features(const eng_gguf *g, const char *arch, double *linear_factor,
                           eng_err *err) {
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
    *linear_factor = 1.0;
    if (n == 6 && !memcmp(s, "linear", 6)) {
        if ((rc = arch_pos(g, arch, "rope.scaling.factor", -1, linear_factor, err))) return rc;
    } else if (n && !(n == 4 && !memcmp(s, "none", 4)))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: %s %.*s not supported (none, linear)", p,
                          key, n > 32 ? 32 : (int)n, s);
    static const char *const caps[] = {"final_logit_softcapping", "attn_logit_softcapping"};
    for (int i = 0; i < 2; i++) {
        double cap = 0;
        snprintf(key, sizeof key, "%s.%s", arch, caps[i]);
        if ((rc = eng_gguf_get_float(g, key, 0, &cap, err))) return rc;
        if (cap != 0)
            return eng_seterr(err, ENG_EUNSUPPORTED, "%s: %s not supported", p, key);
    }
    if (eng_gguf_find_tensor(g, "rope_freqs.weight"))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: tensor rope_freqs.weight (scaled RoPE "
                          "frequencies) not supported", p);
    return ENG_OK;
}

/* Gemma 3 as llama.cpp runs it: every 6th layer global, the others
 * sliding with RoPE base 10000 (neither is in the file); queries scaled by
 * 1/sqrt(head_dim), but by 1/sqrt(hidden / heads) for the 27B (62 layers),
 * whose query_pre_attn_scalar that is.  A file without a sliding window has
 * only global layers. */
static int gemma3_config(const eng_gguf *g, eng_config *c, eng_gguf_rope *rope, eng_err *err) {
    int rc = arch_int(g, c->arch, "attention.sliding_window", 0, 0, 0, 1 << 24,
                      &c->sliding_window, err);
    if (rc) return rc;
    c->swa_pattern = 6;
    rope->local_theta = 10000.0;
    c->rope_local_theta = 10000.0f;
    int scalar = c->n_layers == 62 ? c->hidden / c->n_heads : c->head_dim;
    c->attn_scale = (float)(1.0 / sqrt((double)scalar));
    return ENG_OK;
}

static const char *const archs[] = {"llama", "qwen2", "qwen3", "gemma3"};

int eng_gguf_config(const eng_gguf *g, eng_config *c, eng_gguf_rope *rope, eng_err *err) {
    const char *p = eng_gguf_path(g), *s;
    size_t n;
    memset(c, 0, sizeof *c);
    memset(rope, 0, sizeof *rope);
    int rc = eng_gguf_get_str(g, "general.architecture", 1, &s, &n, err), known = 0;
    if (rc) return rc;
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        known |= n == strlen(archs[i]) && !memcmp(s, archs[i], n);
    if (!known)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: architecture %.*s not supported (llama, "
                          "qwen2, qwen3, gemma3)", p, n > 32 ? 32 : (int)n, s);
    memcpy(c->arch, s, n);
    const char *a = c->arch;
    if ((rc = reject_features(g, a, &rope->linear_factor, err)) ||
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
        (rc = arch_pos(g, a, "rope.freq_base", 10000.0, &rope->theta, err)))
        return rc;
    c->rms_eps = (float)eps;
    c->rope_theta = (float)rope->theta;
    eng_arch_features(c);
    if (!strcmp(a, "gemma3") && (rc = gemma3_config(g, c, rope, err))) return rc;
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
 * tokenizer.ggml.eot_token_id, at <|im_end|> when the vocabulary has it and
 * the chat template writes it (ChatML), and at <end_of_turn> when the
 * vocabulary has it and the template writes it or the model is Gemma 3
 * (Gemma's turns end with it; base models' files carry no template). */
void eng_gguf_add_eot(eng_config *c, const eng_tok *tok, const char *chat_template) {
    if (chat_template && strstr(chat_template, "<|im_end|>"))
        add_eos(c, eng_tok_find(tok, "<|im_end|>"));
    if ((chat_template && strstr(chat_template, "<end_of_turn>")) || !strcmp(c->arch, "gemma3"))
        add_eos(c, eng_tok_find(tok, "<end_of_turn>"));
}
