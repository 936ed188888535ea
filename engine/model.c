/* model.c — loads a model (Llama, Qwen2, Qwen3, Gemma 3) from a Hugging Face
 * folder (config.json, optional generation_config.json, safetensors weights
 * in one file, an index with shards, or several files, tokenizer.json) or
 * from one GGUF file (metadata read by model_gguf.c, tokenizer by tok.c).
 * Weights are checked against the config, then converted (dequantized) to
 * f32 into one arena; the files stay mapped so backends can upload the
 * tensors as stored.  eng_model_load_blocks leaves the block-quantized
 * matrices out of that arena: eng_model_dense converts them later, into a
 * second one, with the same code. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cJSON.h>
#include "gguf.h"

#define MAX_JSON_FILE (64u << 20)
#define MAX_SHARDS 4096
#define CHUNK_ELEMS ((size_t)1 << 20)   /* conversion work unit */

/* Per-layer tensors, in the order of tensor_names.layer. */
enum { T_ATTN_NORM, T_Q, T_K, T_V, T_O, T_BQ, T_BK, T_BV, T_FFN_NORM, T_GATE, T_UP, T_DOWN,
       T_Q_NORM, T_K_NORM, T_POST_ATTN_NORM, T_POST_FFN_NORM, T_LAYER_COUNT };

/* Tensor names: Hugging Face's and GGUF's.  embed, final_norm and the layer
 * prefix follow the model's prefix (model_priv.prefix); lm_head does not. */
typedef struct tensor_names {
    const char *embed, *final_norm, *lm_head, *layer_prefix;   /* prefix: printf, layer index */
    const char *layer[T_LAYER_COUNT];
} tensor_names;

static const tensor_names hf_names = {
    "embed_tokens.weight", "norm.weight", "lm_head.weight", "layers.%d.",
    {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
     "self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.q_proj.bias",
     "self_attn.k_proj.bias", "self_attn.v_proj.bias", "post_attention_layernorm.weight",
     "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
     "self_attn.q_norm.weight", "self_attn.k_norm.weight", NULL, NULL}};

/* Gemma's post_attention_layernorm is the norm of the attention output; the
 * MLP's input norm is pre_feedforward_layernorm. */
static const tensor_names hf_gemma_names = {
    "embed_tokens.weight", "norm.weight", "lm_head.weight", "layers.%d.",
    {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
     "self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.q_proj.bias",
     "self_attn.k_proj.bias", "self_attn.v_proj.bias", "pre_feedforward_layernorm.weight",
     "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
     "self_attn.q_norm.weight", "self_attn.k_norm.weight", "post_attention_layernorm.weight",
     "post_feedforward_layernorm.weight"}};

static const tensor_names gguf_names = {
    "token_embd.weight", "output_norm.weight", "output.weight", "blk.%d.",
    {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
     "attn_output.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias", "ffn_norm.weight",
     "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "attn_q_norm.weight",
     "attn_k_norm.weight", "post_attention_norm.weight", "post_ffw_norm.weight"}};

/* Where a folder's text model lies: Gemma 3's multimodal checkpoints keep it
 * under model.language_model. (transformers 5) or language_model.model. */
static const char *const hf_prefixes[] = {"model.", "model.language_model.",
                                          "language_model.model."};

typedef struct model_priv {
    eng_st **shards;
    char **shard_paths;
    int n_shards;
    eng_gguf *gguf;    /* a GGUF model: the one file, instead of shards */
    const tensor_names *names;
    const char *prefix;  /* of embed, final_norm and layer names: one of hf_prefixes, or "" */
    char *where;       /* what to name when a tensor is missing */
    float *arena;
    /* eng_model_load_blocks: the block-quantized matrices whose f32 copy
     * waits for eng_model_dense (n_deferred 0 once it is made, or when none
     * waited), and the arena it makes for them.  lock: that conversion runs
     * once, whichever thread creates an engine first. */
    int defer;
    struct slot *deferred;
    int n_deferred;
    float *arena_dense;
    pthread_mutex_t lock;
} model_priv;

/* RoPE settings as read from the config, before inv_freq is computed:
 * the global layers' and the sliding layers' (Gemma 3). */
typedef struct rope_cfg {
    double theta;
    int llama3, linear;
    double factor, low_freq_factor, high_freq_factor, orig_max_pos;
} rope_cfg;
typedef struct ropes { rope_cfg global, local; } ropes;

/* ------------------------------------------------------------ json files */

static int join_path(char *buf, size_t cap, const char *dir, const char *name, eng_err *err) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return eng_seterr(err, ENG_EINVAL, "%s/%s: path too long", dir, name);
    return ENG_OK;
}

/* Parses a JSON file.  With optional, a missing file gives *out = NULL. */
static int load_json(const char *path, int optional, cJSON **out, eng_err *err) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc = eng_read_file(path, MAX_JSON_FILE, &buf, &len, err);
    if (rc == ENG_EIO && optional && errno == ENOENT) return ENG_OK;
    if (rc) return rc;
    *out = cJSON_ParseWithLength(buf, len);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        rc = eng_seterr(err, ENG_EFORMAT, "%s: not a valid JSON object", path);
    }
    free(buf);
    return rc;
}

/* Integer field in [lo, hi].  Absent: *out = def, or an error when required. */
static int get_int(const cJSON *o, const char *key, int required, int def, int lo, int hi,
                   int *out, const char *path, eng_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return eng_seterr(err, ENG_EFORMAT, "%s: missing %s", path, key);
        *out = def;
        return ENG_OK;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || floor(d) != d || d < lo || d > hi)
        return eng_seterr(err, ENG_EFORMAT, "%s: %s must be an integer in [%d, %d]",
                          path, key, lo, hi);
    *out = (int)d;
    return ENG_OK;
}

/* Positive finite number; absent gives def (def < 0: required). */
static int get_pos(const cJSON *o, const char *key, double def, double *out,
                   const char *path, eng_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0) return eng_seterr(err, ENG_EFORMAT, "%s: missing %s", path, key);
        *out = def;
        return ENG_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
        return eng_seterr(err, ENG_EFORMAT, "%s: %s must be a positive number", path, key);
    *out = v->valuedouble;
    return ENG_OK;
}

static int get_bool(const cJSON *o, const char *key, int def, int *out,
                    const char *path, eng_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) *out = def;
    else if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else return eng_seterr(err, ENG_EFORMAT, "%s: %s must be true or false", path, key);
    return ENG_OK;
}

/* bos/eos: an id, a list of ids or null.  Leaves ids alone when absent. */
static int get_ids(const cJSON *o, const char *key, int *ids, int *n, int max, int vocab,
                   const char *path, eng_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return ENG_OK;
    *n = 0;
    if (cJSON_IsNull(v)) return ENG_OK;
    const cJSON *one = cJSON_IsNumber(v) ? v : NULL;
    if (!one && !cJSON_IsArray(v))
        return eng_seterr(err, ENG_EFORMAT, "%s: %s must be an id or a list of ids", path, key);
    if (!one && cJSON_GetArraySize(v) > max)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: %s lists %d ids (at most %d)", path, key,
                          cJSON_GetArraySize(v), max);
    for (const cJSON *e = one ? one : v->child; e; e = one ? NULL : e->next) {
        double d = e->valuedouble;
        if (!cJSON_IsNumber(e) || floor(d) != d || d < 0 || d >= vocab)
            return eng_seterr(err, ENG_EFORMAT, "%s: %s holds a value that is not a token id "
                              "below vocab_size %d", path, key, vocab);
        ids[(*n)++] = (int)d;
    }
    return ENG_OK;
}

/* ---------------------------------------------------------------- config */

/* The architectures brisk runs, by config.json model_type and class name.
 * Gemma 3's multimodal config (model_type gemma3) holds the text model's
 * settings in text_config. */
static const struct { const char *model_type, *cls, *arch; } archs[] = {
    {"llama", "LlamaForCausalLM", "llama"},
    {"qwen2", "Qwen2ForCausalLM", "qwen2"},
    {"qwen3", "Qwen3ForCausalLM", "qwen3"},
    {"gemma3_text", "Gemma3ForCausalLM", "gemma3"},
    {"gemma3", "Gemma3ForConditionalGeneration", "gemma3"},
};
#define N_ARCHS (int)(sizeof archs / sizeof *archs)
#define ARCH_LIST "llama, qwen2, qwen3, gemma3_text, gemma3"

/* Sets cfg->arch and *text to the object holding the text model's settings. */
static int parse_arch(const cJSON *c, eng_config *cfg, const cJSON **text, const char *path,
                      eng_err *err) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c, "model_type");
    if (mt && !cJSON_IsString(mt))
        return eng_seterr(err, ENG_EFORMAT, "%s: model_type must be a string", path);
    int k = -1;
    for (int i = 0; i < N_ARCHS && mt && k < 0; i++)
        if (!strcmp(mt->valuestring, archs[i].model_type)) k = i;
    if (mt && k < 0)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: model_type %.64s not supported (" ARCH_LIST
                          ")", path, mt->valuestring);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, "architectures"), *e;
    for (e = cJSON_IsArray(a) ? a->child : NULL; e && k < 0; e = e->next)
        for (int i = 0; i < N_ARCHS && k < 0 && cJSON_IsString(e); i++)
            if (!strcmp(e->valuestring, archs[i].cls)) k = i;
    if (k < 0)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: no model_type and no supported architecture "
                          "(LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
                          "Gemma3ForCausalLM, Gemma3ForConditionalGeneration)", path);
    strcpy(cfg->arch, archs[k].arch);
    *text = c;
    if (!strcmp(archs[k].model_type, "gemma3")) {
        *text = cJSON_GetObjectItemCaseSensitive(c, "text_config");
        if (!cJSON_IsObject(*text))
            return eng_seterr(err, ENG_EFORMAT, "%s: a gemma3 config needs a text_config object",
                              path);
    }
    return ENG_OK;
}

/* Features these architectures may switch on that the engine lacks. */
static int reject_features(const cJSON *c, int gemma, const char *path, eng_err *err) {
    /* Gemma names its activation hidden_activation (tanh GELU by default) */
    const char *key = gemma ? "hidden_activation" : "hidden_act";
    const char *want = gemma ? "gelu_pytorch_tanh" : "silu";
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(c, key);
    if (act && !cJSON_IsNull(act) && (!cJSON_IsString(act) || strcmp(act->valuestring, want)))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: %s %.32s not supported (%s)", path, key,
                          cJSON_IsString(act) ? act->valuestring : "(not a string)", want);
    int on, rc;
    if ((rc = get_bool(c, "mlp_bias", 0, &on, path, err))) return rc;
    if (on) return eng_seterr(err, ENG_EUNSUPPORTED, "%s: mlp_bias not supported", path);
    if ((rc = get_bool(c, "use_sliding_window", 0, &on, path, err))) return rc;
    if (on) return eng_seterr(err, ENG_EUNSUPPORTED, "%s: use_sliding_window not supported", path);
    if ((rc = get_bool(c, "use_bidirectional_attention", 0, &on, path, err))) return rc;
    if (on)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: use_bidirectional_attention not supported",
                          path);
    static const char *const caps[] = {"final_logit_softcapping", "attn_logit_softcapping"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, caps[i]);
        if (v && !cJSON_IsNull(v))
            return eng_seterr(err, ENG_EUNSUPPORTED, "%s: %s not supported", path, caps[i]);
    }
    return ENG_OK;
}

/* One RoPE setting: its rope_theta when given (else r->theta stays) and its
 * scaling type: default, linear (frequencies divided by factor) or llama3. */
static int parse_rope_type(const cJSON *rp, rope_cfg *r, const char *path, eng_err *err) {
    int rc = ENG_OK;
    if (cJSON_GetObjectItemCaseSensitive(rp, "rope_theta") &&
        (rc = get_pos(rp, "rope_theta", -1, &r->theta, path, err)))
        return rc;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
    if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rp, "type");
    if (ty && !cJSON_IsString(ty))
        return eng_seterr(err, ENG_EFORMAT, "%s: rope type must be a string", path);
    if (!ty || !strcmp(ty->valuestring, "default")) return ENG_OK;
    if (!strcmp(ty->valuestring, "linear")) {
        r->linear = 1;
        return get_pos(rp, "factor", -1, &r->factor, path, err);
    }
    if (strcmp(ty->valuestring, "llama3"))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: rope scaling type %.32s not supported "
                          "(default, linear, llama3)", path, ty->valuestring);
    r->llama3 = 1;
    if ((rc = get_pos(rp, "factor", -1, &r->factor, path, err)) ||
        (rc = get_pos(rp, "low_freq_factor", -1, &r->low_freq_factor, path, err)) ||
        (rc = get_pos(rp, "high_freq_factor", -1, &r->high_freq_factor, path, err)) ||
        (rc = get_pos(rp, "original_max_position_embeddings", -1, &r->orig_max_pos, path, err)))
        return rc;
    if (r->high_freq_factor <= r->low_freq_factor)
        return eng_seterr(err, ENG_EFORMAT, "%s: llama3 rope needs high_freq_factor > "
                          "low_freq_factor", path);
    return ENG_OK;
}

/* rope_theta and rope scaling: transformers 4 writes rope_theta and
 * rope_scaling at the top level, transformers 5 one rope_parameters object.
 * Gemma 3: rope_local_base_freq is the sliding layers' base, and
 * transformers 5 writes one rope_parameters object per layer type
 * (full_attention, sliding_attention); rope_scaling is the global layers'. */
static int parse_rope(const cJSON *c, int gemma, ropes *r, const char *path, eng_err *err) {
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(c, "rope_parameters");
    if (!rp || cJSON_IsNull(rp)) rp = cJSON_GetObjectItemCaseSensitive(c, "rope_scaling");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return eng_seterr(err, ENG_EFORMAT, "%s: rope_scaling / rope_parameters must be an "
                          "object or null", path);
    if (cJSON_IsNull(rp)) rp = NULL;
    int rc = get_pos(c, "rope_theta", gemma ? 1e6 : 1e4, &r->global.theta, path, err);
    if (!rc && gemma) rc = get_pos(c, "rope_local_base_freq", 1e4, &r->local.theta, path, err);
    if (rc || !rp) return rc;
    const cJSON *full = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
    const cJSON *slide = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
    if (!gemma || (!full && !slide)) return parse_rope_type(rp, &r->global, path, err);
    if ((full && !cJSON_IsObject(full)) || (slide && !cJSON_IsObject(slide)))
        return eng_seterr(err, ENG_EFORMAT, "%s: rope_parameters per layer type must be "
                          "objects", path);
    if (full && (rc = parse_rope_type(full, &r->global, path, err))) return rc;
    return slide ? parse_rope_type(slide, &r->local, path, err) : ENG_OK;
}

/* Gemma 3's sizes where its config leaves them out (transformers'
 * Gemma3TextConfig defaults; the multimodal checkpoints rely on them). */
typedef struct size_defaults { int vocab, hidden, inter, layers, heads, kv_heads, head_dim, max_pos; } size_defaults;
static const size_defaults gemma3_defaults = {262208, 2304, 9216, 26, 8, 4, 256, 131072};

static int parse_sizes(const cJSON *c, const size_defaults *d, eng_config *g, const char *path,
                       eng_err *err) {
    int rc, req = !d;
    if ((rc = get_int(c, "hidden_size", req, d ? d->hidden : 0, 1, 1 << 16, &g->hidden, path,
                      err)) ||
        (rc = get_int(c, "intermediate_size", req, d ? d->inter : 0, 1, 1 << 20,
                      &g->intermediate, path, err)) ||
        (rc = get_int(c, "num_hidden_layers", req, d ? d->layers : 0, 1, 1024, &g->n_layers,
                      path, err)) ||
        (rc = get_int(c, "num_attention_heads", req, d ? d->heads : 0, 1, 1024, &g->n_heads,
                      path, err)) ||
        (rc = get_int(c, "num_key_value_heads", 0, d ? d->kv_heads : g->n_heads, 1, g->n_heads,
                      &g->n_kv_heads, path, err)) ||
        (rc = get_int(c, "vocab_size", req, d ? d->vocab : 0, 1, 1 << 24, &g->vocab_size, path,
                      err)) ||
        (rc = get_int(c, "max_position_embeddings", req, d ? d->max_pos : 0, 1, 1 << 24,
                      &g->max_pos, path, err)))
        return rc;
    if (g->n_heads % g->n_kv_heads)
        return eng_seterr(err, ENG_EFORMAT, "%s: num_attention_heads %d is not a multiple of "
                          "num_key_value_heads %d", path, g->n_heads, g->n_kv_heads);
    /* transformers' Qwen3Config defaults head_dim to 128, not hidden / heads */
    int def_hd = d ? d->head_dim : !strcmp(g->arch, "qwen3") ? 128
               : g->hidden % g->n_heads ? 0 : g->hidden / g->n_heads;
    if ((rc = get_int(c, "head_dim", !def_hd, def_hd, 2, 4096, &g->head_dim, path, err)))
        return rc;
    if (g->head_dim % 2)
        return eng_seterr(err, ENG_EFORMAT, "%s: head_dim %d is odd (RoPE needs pairs)", path,
                          g->head_dim);
    double eps;
    if ((rc = get_pos(c, "rms_norm_eps", 1e-6, &eps, path, err))) return rc;
    g->rms_eps = (float)eps;
    return ENG_OK;
}

/* Which layers slide: config layer_types (full_attention, and for Gemma 3
 * sliding_attention), else Gemma 3's sliding_window_pattern (default 6:
 * every 6th layer global).  brisk keeps the rule as a period (eng_config's
 * swa_pattern), so a list must follow one. */
static int parse_layers(const cJSON *c, int gemma, eng_config *g, const char *path,
                        eng_err *err) {
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(c, "layer_types"), *e;
    int rc, period = 0;
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != g->n_layers)
            return eng_seterr(err, ENG_EFORMAT, "%s: layer_types must list %d layer types", path,
                              g->n_layers);
        int l = 0, first_full = -1, ok = 1;
        for (e = lt->child; e; e = e->next, l++) {
            int full = cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention");
            int slide = gemma && cJSON_IsString(e) && !strcmp(e->valuestring, "sliding_attention");
            if (!full && !slide)
                return eng_seterr(err, ENG_EUNSUPPORTED, "%s: layer type %.32s not supported (%s)",
                                  path, cJSON_IsString(e) ? e->valuestring : "(not a string)",
                                  gemma ? "full_attention, sliding_attention" : "full_attention");
            if (full && first_full < 0) first_full = l;
        }
        period = first_full + 1;   /* 0: every layer slides */
        for (l = 0, e = lt->child; e; e = e->next, l++)
            ok &= !strcmp(e->valuestring, "full_attention") == (period && (l + 1) % period == 0);
        if (!ok)
            return eng_seterr(err, ENG_EUNSUPPORTED, "%s: layer_types do not repeat with a "
                              "period ending in a full_attention layer", path);
    } else if (gemma &&
               (rc = get_int(c, "sliding_window_pattern", 0, 6, 1, 1 << 20, &period, path, err)))
        return rc;
    if (!gemma || period == 1) return ENG_OK;   /* no sliding layer */
    g->swa_pattern = period;
    return get_int(c, "sliding_window", 0, 4096, 1, 1 << 24, &g->sliding_window, path, err);
}

void eng_arch_features(eng_config *g) {
    int qwen3 = !strcmp(g->arch, "qwen3"), gemma = !strcmp(g->arch, "gemma3");
    g->qk_norm = qwen3 || gemma;
    g->post_norms = g->gelu = gemma;
    g->embed_scale = gemma ? (float)sqrt((double)g->hidden) : 1.0f;
    g->attn_scale = (float)(1.0 / sqrt((double)g->head_dim));
}

static int parse_config(const cJSON *top, eng_config *g, ropes *r, const char *path,
                        eng_err *err) {
    int rc, attn_bias;
    const cJSON *c = top;
    memset(g, 0, sizeof *g);
    memset(r, 0, sizeof *r);
    if ((rc = parse_arch(top, g, &c, path, err))) return rc;
    int gemma = !strcmp(g->arch, "gemma3");
    if ((rc = reject_features(c, gemma, path, err)) ||
        (rc = parse_sizes(c, gemma ? &gemma3_defaults : NULL, g, path, err)) ||
        (rc = parse_rope(c, gemma, r, path, err)) || (rc = parse_layers(c, gemma, g, path, err)) ||
        (rc = get_bool(c, "tie_word_embeddings", gemma, &g->tie_embeddings, path, err)) ||
        (rc = get_bool(c, "attention_bias", 0, &attn_bias, path, err)))
        return rc;
    g->rope_theta = (float)r->global.theta;
    g->rope_local_theta = (float)r->local.theta;
    g->qkv_bias = !strcmp(g->arch, "qwen2") || attn_bias;
    eng_arch_features(g);
    if (gemma) {
        double s;
        if ((rc = get_pos(c, "query_pre_attn_scalar", 256, &s, path, err))) return rc;
        g->attn_scale = (float)(1.0 / sqrt(s));
    }
    int bos[1] = {gemma ? 2 : -1}, n_bos = gemma;   /* Gemma3TextConfig: bos 2, eos 1 */
    if (gemma) g->eos_ids[g->n_eos++] = 1;
    if ((rc = get_ids(c, "bos_token_id", bos, &n_bos, 1, g->vocab_size, path, err)) ||
        (rc = get_ids(c, "eos_token_id", g->eos_ids, &g->n_eos, 8, g->vocab_size, path, err)))
        return rc;
    g->bos_id = n_bos ? bos[0] : -1;
    return ENG_OK;
}

/* generation_config.json, when present, overrides bos and eos. */
static int parse_gen_config(const char *dir, eng_config *g, eng_err *err) {
    char path[4096];
    cJSON *c;
    int rc = join_path(path, sizeof path, dir, "generation_config.json", err);
    if (rc || (rc = load_json(path, 1, &c, err)) || !c) return rc;
    int bos[1], n_bos = g->bos_id >= 0;
    bos[0] = g->bos_id;
    if (!(rc = get_ids(c, "bos_token_id", bos, &n_bos, 1, g->vocab_size, path, err)) &&
        !(rc = get_ids(c, "eos_token_id", g->eos_ids, &g->n_eos, 8, g->vocab_size, path, err)))
        g->bos_id = n_bos ? bos[0] : -1;
    cJSON_Delete(c);
    return rc;
}

/* Linear scaling divides every frequency by factor.  Llama 3.1 scaling:
 * low frequencies (long wavelengths) are slowed by factor, high ones kept,
 * and the band between blended smoothly. */
static void rope_freqs(const rope_cfg *r, int head_dim, float *out) {
    for (int i = 0; i < head_dim / 2; i++) {
        double f = 1.0 / pow(r->theta, (2.0 * i) / head_dim);
        if (r->linear) f /= r->factor;
        if (r->llama3) {
            double wavelen = 2 * M_PI / f;
            double lo_wl = r->orig_max_pos / r->low_freq_factor;
            double hi_wl = r->orig_max_pos / r->high_freq_factor;
            if (wavelen > lo_wl) f /= r->factor;
            else if (wavelen >= hi_wl) {
                double s = (r->orig_max_pos / wavelen - r->low_freq_factor) /
                           (r->high_freq_factor - r->low_freq_factor);
                f = (1 - s) * f / r->factor + s * f;
            }
        }
        out[i] = (float)f;
    }
}

/* ---------------------------------------------------------------- shards */

static int add_shard(model_priv *p, const char *path, eng_err *err) {
    if (p->n_shards >= MAX_SHARDS)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: more than %d shard files", path, MAX_SHARDS);
    eng_st **s = realloc(p->shards, sizeof *s * (p->n_shards + 1));
    if (s) p->shards = s;
    char **n = s ? realloc(p->shard_paths, sizeof *n * (p->n_shards + 1)) : NULL;
    if (n) p->shard_paths = n;
    char *copy = n ? strdup(path) : NULL;
    if (!copy) return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
    int rc = eng_st_open(path, &p->shards[p->n_shards], err);
    if (rc) {
        free(copy);
        return rc;
    }
    p->shard_paths[p->n_shards++] = copy;
    return ENG_OK;
}

/* Tensor by name in any shard (or the GGUF file); *shard gets its index
 * (-1 for GGUF). */
static const eng_tensor *find_tensor(const model_priv *p, const char *name, int *shard) {
    if (p->gguf) {
        if (shard) *shard = -1;
        return eng_gguf_find_tensor(p->gguf, name);
    }
    for (int i = 0; i < p->n_shards; i++) {
        const eng_tensor *t = eng_st_find(p->shards[i], name);
        if (t) {
            if (shard) *shard = i;
            return t;
        }
    }
    return NULL;
}

static int shard_index(const model_priv *p, const char *path) {
    for (int i = 0; i < p->n_shards; i++)
        if (!strcmp(p->shard_paths[i], path)) return i;
    return -1;
}

/* Opens each shard the index names once and checks that it holds the tensors
 * the index puts there. */
static int open_indexed(model_priv *p, const char *dir, const char *index_path, eng_err *err) {
    cJSON *ix;
    int rc = load_json(index_path, 0, &ix, err);
    if (rc) return rc;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(ix, "weight_map"), *e;
    if (!cJSON_IsObject(wm))
        rc = eng_seterr(err, ENG_EFORMAT, "%s: missing weight_map object", index_path);
    char path[4096];
    for (e = wm ? wm->child : NULL; e && !rc; e = e->next) {
        const char *fn = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!fn || !*fn || strchr(fn, '/'))
            rc = eng_seterr(err, ENG_EFORMAT, "%s: weight_map entry %.160s must name a file in "
                            "the model folder", index_path, e->string);
        else if (!(rc = join_path(path, sizeof path, dir, fn, err)) && shard_index(p, path) < 0)
            rc = add_shard(p, path, err);
        int s = rc ? -1 : shard_index(p, path);
        if (!rc && !eng_st_find(p->shards[s], e->string))
            rc = eng_seterr(err, ENG_EFORMAT, "%s: tensor %.160s is not in %s, where %s puts it",
                            path, e->string, fn, index_path);
    }
    if (!rc && p->n_shards == 0)
        rc = eng_seterr(err, ENG_EFORMAT, "%s: weight_map is empty", index_path);
    cJSON_Delete(ix);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* No index: every *.safetensors in dir, in name order. */
static int open_all(model_priv *p, const char *dir, eng_err *err) {
    DIR *d = opendir(dir);
    if (!d) return eng_seterr(err, ENG_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, rc = ENG_OK;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= 12 || strcmp(de->d_name + len - 12, ".safetensors")) continue;
        char **nn = n < MAX_SHARDS ? realloc(names, sizeof *nn * (n + 1)) : NULL;
        if (nn) names = nn;
        if (!nn || !(names[n] = strdup(de->d_name)))
            rc = eng_seterr(err, ENG_ENOMEM, "%s: too many files or out of memory", dir);
        else n++;
    }
    closedir(d);
    if (names) qsort(names, n, sizeof *names, cmp_str);
    char path[4096];
    for (int i = 0; i < n && !rc; i++)
        if (!(rc = join_path(path, sizeof path, dir, names[i], err))) rc = add_shard(p, path, err);
    if (!rc && n == 0)
        rc = eng_seterr(err, ENG_EIO, "%s: no model.safetensors, index or *.safetensors file", dir);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

/* A tensor stored in two shards would make the choice arbitrary. */
static int check_unique(const model_priv *p, eng_err *err) {
    for (int s = 1; s < p->n_shards; s++)
        for (int i = 0; i < eng_st_count(p->shards[s]); i++) {
            const eng_tensor *t = eng_st_get(p->shards[s], i);
            int other;
            if (find_tensor(p, t->name, &other) && other != s)
                return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s is also in %s",
                                  p->shard_paths[s], t->name, p->shard_paths[other]);
        }
    return ENG_OK;
}

static int open_shards(model_priv *p, const char *dir, eng_err *err) {
    char path[4096];
    struct stat sb;
    int rc = join_path(path, sizeof path, dir, "model.safetensors.index.json", err);
    if (rc) return rc;
    if (stat(path, &sb) == 0) rc = open_indexed(p, dir, path, err);
    else if (!(rc = join_path(path, sizeof path, dir, "model.safetensors", err)) &&
             stat(path, &sb) == 0)
        rc = add_shard(p, path, err);
    else if (!rc) {
        rc = open_all(p, dir, err);
        snprintf(path, sizeof path, "%s/*.safetensors", dir);
    }
    if (!rc && !(p->where = strdup(path))) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
    return rc ? rc : check_unique(p, err);
}

/* --------------------------------------------------------------- weights */

/* One weight to convert: source tensor and the f32 pointer to set.  heads
 * > 0: a llama GGUF's attn_q / attn_k (or bias), whose rows in groups of
 * shape[0] / heads are put back in Hugging Face's order after conversion
 * (unpermute_rows). */
typedef struct slot { const eng_tensor *t; float **dst; int heads; } slot;

typedef struct weight_list {
    slot s[16 + T_LAYER_COUNT * 1024];
    int n;
} weight_list;

static void fmt_shape(char *buf, size_t cap, int nd, const int64_t *d) {
    int o = snprintf(buf, cap, "[");
    for (int i = 0; i < nd && o > 0 && (size_t)o < cap; i++)
        o += snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (o > 0 && (size_t)o < cap) snprintf(buf + o, cap - o, "]");
}

/* Looks up name, checks its shape is [d0] or [d0, d1], and queues it. */
static int want(const model_priv *p, weight_list *wl, const char *name, int64_t d0, int64_t d1,
                const eng_tensor **traw, float **dst, eng_err *err) {
    int s;
    const eng_tensor *t = find_tensor(p, name, &s);
    if (!t) return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s is missing", p->where, name);
    int64_t exp[2] = {d0, d1};
    int nd = d1 ? 2 : 1;
    if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        char a[96], b[96];
        fmt_shape(a, sizeof a, t->ndim, t->shape);
        fmt_shape(b, sizeof b, nd, exp);
        return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s has shape %s, expected %s",
                          s < 0 ? p->where : p->shard_paths[s], name, a, b);
    }
    *traw = t;
    wl->s[wl->n++] = (slot){t, dst, 0};
    return ENG_OK;
}

/* want for attn_q / attn_k and their biases: in a llama GGUF their rows
 * are in llama.cpp's order (see gguf_qk_raw), undone per head after
 * conversion. */
static int want_qk(const model_priv *p, weight_list *wl, const eng_config *g, const char *name,
                   int heads, int64_t d1, const eng_tensor **traw, float **dst, eng_err *err) {
    int rc = want(p, wl, name, (int64_t)heads * g->head_dim, d1, traw, dst, err);
    if (!rc && p->gguf && !strcmp(g->arch, "llama")) wl->s[wl->n - 1].heads = heads;
    return rc;
}

static int want_layer(const model_priv *p, weight_list *wl, const eng_config *g, int i,
                      eng_layer_w *L, eng_err *err) {
    int64_t H = g->hidden, Q = (int64_t)g->n_heads * g->head_dim, D = g->head_dim;
    int64_t KV = (int64_t)g->n_kv_heads * g->head_dim, I = g->intermediate;
    char n[T_LAYER_COUNT][128], prefix[64];
    snprintf(prefix, sizeof prefix, "%s", p->prefix);
    snprintf(prefix + strlen(prefix), sizeof prefix - strlen(prefix), p->names->layer_prefix, i);
    for (int k = 0; k < T_LAYER_COUNT; k++)
        if (p->names->layer[k]) snprintf(n[k], sizeof n[k], "%s%s", prefix, p->names->layer[k]);
    int rc;
    if ((rc = want(p, wl, n[T_ATTN_NORM], H, 0, &L->t_attn_norm, &L->attn_norm, err)) ||
        (rc = want_qk(p, wl, g, n[T_Q], g->n_heads, H, &L->t_wq, &L->wq, err)) ||
        (rc = want_qk(p, wl, g, n[T_K], g->n_kv_heads, H, &L->t_wk, &L->wk, err)) ||
        (rc = want(p, wl, n[T_V], KV, H, &L->t_wv, &L->wv, err)) ||
        (rc = want(p, wl, n[T_O], H, Q, &L->t_wo, &L->wo, err)))
        return rc;
    if (g->qkv_bias &&
        ((rc = want_qk(p, wl, g, n[T_BQ], g->n_heads, 0, &L->t_bq, &L->bq, err)) ||
         (rc = want_qk(p, wl, g, n[T_BK], g->n_kv_heads, 0, &L->t_bk, &L->bk, err)) ||
         (rc = want(p, wl, n[T_BV], KV, 0, &L->t_bv, &L->bv, err))))
        return rc;
    if (g->qk_norm &&
        ((rc = want(p, wl, n[T_Q_NORM], D, 0, &L->t_q_norm, &L->q_norm, err)) ||
         (rc = want(p, wl, n[T_K_NORM], D, 0, &L->t_k_norm, &L->k_norm, err))))
        return rc;
    if (g->post_norms && (!p->names->layer[T_POST_ATTN_NORM] || !p->names->layer[T_POST_FFN_NORM]))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: no tensor names for the output norms of %s",
                          p->where, g->arch);
    if (g->post_norms &&
        ((rc = want(p, wl, n[T_POST_ATTN_NORM], H, 0, &L->t_post_attn_norm, &L->post_attn_norm,
                    err)) ||
         (rc = want(p, wl, n[T_POST_FFN_NORM], H, 0, &L->t_post_ffn_norm, &L->post_ffn_norm,
                    err))))
        return rc;
    if ((rc = want(p, wl, n[T_FFN_NORM], H, 0, &L->t_ffn_norm, &L->ffn_norm, err)) ||
        (rc = want(p, wl, n[T_GATE], I, H, &L->t_gate, &L->w_gate, err)) ||
        (rc = want(p, wl, n[T_UP], I, H, &L->t_up, &L->w_up, err)) ||
        (rc = want(p, wl, n[T_DOWN], H, I, &L->t_down, &L->w_down, err)))
        return rc;
    return ENG_OK;
}

/* A folder's prefix: the first of hf_prefixes under which the embedding is
 * found (else "model.", so that the error names the usual tensor). */
static void pick_prefix(model_priv *p) {
    p->prefix = p->gguf ? "" : hf_prefixes[0];
    for (size_t i = 0; !p->gguf && i < sizeof hf_prefixes / sizeof *hf_prefixes; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s", hf_prefixes[i], p->names->embed);
        if (find_tensor(p, name, NULL)) {
            p->prefix = hf_prefixes[i];
            return;
        }
    }
}

static int collect_weights(eng_model *m, weight_list *wl, eng_err *err) {
    model_priv *p = m->priv;
    const tensor_names *nm = p->names;
    const eng_config *g = &m->cfg;
    char embed[128], norm[128];
    pick_prefix(p);
    snprintf(embed, sizeof embed, "%s%s", p->prefix, nm->embed);
    snprintf(norm, sizeof norm, "%s%s", p->prefix, nm->final_norm);
    int rc;
    if ((rc = want(p, wl, embed, g->vocab_size, g->hidden, &m->t_embed, &m->embed, err)) ||
        (rc = want(p, wl, norm, g->hidden, 0, &m->t_final_norm, &m->final_norm, err)))
        return rc;
    if (!g->tie_embeddings &&
        (rc = want(p, wl, nm->lm_head, g->vocab_size, g->hidden, &m->t_lm_head, &m->lm_head, err)))
        return rc;
    for (int i = 0; i < g->n_layers; i++)
        if ((rc = want_layer(p, wl, g, i, &m->layers[i], err))) return rc;
    return ENG_OK;
}

/* Conversion runs on a few threads over chunks of at most CHUNK_ELEMS. */
typedef struct conv_job { eng_tensor view; float *dst; } conv_job;
typedef struct conv_work { conv_job *jobs; int n; atomic_int next; } conv_work;

static void *conv_thread(void *arg) {
    conv_work *w = arg;
    for (int i; (i = atomic_fetch_add(&w->next, 1)) < w->n;)
        eng_to_f32(&w->jobs[i].view, w->jobs[i].dst);
    return NULL;
}

/* Splits one tensor into jobs writing from dst on.  CHUNK_ELEMS is a
 * multiple of every block size, so chunks hold whole blocks. */
static void add_jobs(conv_work *w, const eng_tensor *t, float *dst) {
    size_t n = (size_t)eng_tensor_elems(t), o = 0;
    size_t bs = (size_t)eng_dt_block(t->dtype), bb = (size_t)eng_dt_block_bytes(t->dtype);
    do {    /* an empty tensor still gets one (empty) job */
        size_t k = n - o < CHUNK_ELEMS ? n - o : CHUNK_ELEMS;
        conv_job *j = &w->jobs[w->n++];
        j->view = *t;
        j->view.ndim = 1;
        j->view.shape[0] = (int64_t)k;
        j->view.data = (const uint8_t *)t->data + o / bs * bb;
        j->view.nbytes = k / bs * bb;
        j->dst = dst + o;
        o += k;
    } while (o < n);
}

/* Runs the jobs on up to 4 threads (the caller's included); converting
 * a 0.5B model is memory-bound, so more threads gain little. */
static void run_jobs(conv_work *w, size_t total) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = total < 4 * CHUNK_ELEMS ? 1 : cores > 4 ? 4 : cores < 1 ? 1 : (int)cores;
    pthread_t th[4];
    int started = 0;
    for (; started < nt - 1; started++)
        if (pthread_create(&th[started], NULL, conv_thread, w)) break;
    conv_thread(w);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

/* Rows of one head group: file row 2i+s holds Hugging Face's row s*hd/2+i. */
static void unpermute_rows(float *w, int n_heads, int hd, size_t cols, float *tmp) {
    for (int h = 0; h < n_heads; h++) {
        float *head = w + (size_t)h * hd * cols;
        memcpy(tmp, head, sizeof(float) * hd * cols);
        for (int r = 0; r < hd; r++)
            memcpy(head + (size_t)((r % 2) * (hd / 2) + r / 2) * cols, tmp + (size_t)r * cols,
                   sizeof(float) * cols);
    }
}

/* Lays the n weights of s out in one new f32 arena (64-byte aligned
 * starts) for *arena, fills it, and puts llama's q/k rows in order (slot
 * heads).  Everything is allocated before any f32 pointer is set, so a
 * failure leaves the model as it was; what names the copy in the error. */
static int convert_all(const model_priv *p, const slot *s, int n, float **arena, const char *what,
                       eng_err *err) {
    size_t total = 0, n_jobs = 0, head = 0;
    for (int i = 0; i < n; i++) {
        size_t k = (size_t)eng_tensor_elems(s[i].t);
        total += (k + 15) & ~(size_t)15;
        n_jobs += k / CHUNK_ELEMS + 1;
        if (s[i].heads && k / s[i].heads > head) head = k / s[i].heads;
    }
    float *a = total <= SIZE_MAX / 4 ? aligned_alloc(64, total * 4) : NULL;
    if (!a)
        return eng_seterr(err, ENG_ENOMEM, "%s: cannot allocate %zu MB for %s", p->where,
                          total / 262144, what);
    conv_work w = {.jobs = malloc(sizeof(conv_job) * n_jobs)};
    float *tmp = head ? malloc(sizeof(float) * head) : NULL;
    if (!w.jobs || (head && !tmp)) {
        free(w.jobs);
        free(tmp);
        free(a);
        return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", p->where);
    }
    float *at = *arena = a;
    for (int i = 0; i < n; i++) {
        *s[i].dst = at;
        add_jobs(&w, s[i].t, at);
        at += ((size_t)eng_tensor_elems(s[i].t) + 15) & ~(size_t)15;
    }
    run_jobs(&w, total);
    for (int i = 0; i < n; i++)
        if (s[i].heads)
            unpermute_rows(*s[i].dst, s[i].heads, (int)(s[i].t->shape[0] / s[i].heads),
                           s[i].t->ndim == 2 ? (size_t)s[i].t->shape[1] : 1, tmp);
    free(tmp);
    free(w.jobs);
    return ENG_OK;
}

/* What eng_model_load_blocks leaves for eng_model_dense: matrices stored in
 * a block-quantized type (F32/F16/BF16 and vectors are converted at load). */
static int deferrable(const eng_tensor *t) {
    return t->ndim == 2 && eng_dt_block(t->dtype) > 1;
}

/* Moves the deferrable weights of wl to p->deferred (their f32 pointers
 * stay NULL), keeping the others in order. */
static int defer_blocks(model_priv *p, weight_list *wl, eng_err *err) {
    int n = 0, k = 0;
    for (int i = 0; i < wl->n; i++) n += deferrable(wl->s[i].t);
    if (!n) return ENG_OK;
    if (!(p->deferred = malloc(sizeof *p->deferred * n)))
        return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", p->where);
    for (int i = 0; i < wl->n; i++) {
        if (deferrable(wl->s[i].t)) p->deferred[p->n_deferred++] = wl->s[i];
        else wl->s[k++] = wl->s[i];
    }
    wl->n = k;
    return ENG_OK;
}

/* ------------------------------------------------------------------ load */

/* The tokenizer may have fewer tokens than the embedding has rows (padding),
 * never more. */
static int check_tok_vocab(const eng_model *m, const char *path, eng_err *err) {
    int tv = eng_tok_vocab_size(m->tok);
    if (tv > m->cfg.vocab_size)
        return eng_seterr(err, ENG_EFORMAT, "%s: tokenizer has %d tokens but the model's "
                          "vocab_size is %d", path, tv, m->cfg.vocab_size);
    return ENG_OK;
}

static int load_tokenizer(eng_model *m, const char *dir, eng_err *err) {
    char path[4096];
    struct stat sb;
    int rc = join_path(path, sizeof path, dir, "tokenizer.json", err);
    if (rc) return rc;
    if (stat(path, &sb) != 0)
        return eng_seterr(err, ENG_EIO, "%s: missing tokenizer: %s", path, strerror(errno));
    if ((rc = eng_tok_load(path, &m->tok, err))) return rc;
    return check_tok_vocab(m, path, err);
}

/* tokenizer_config.json's chat_template (a string), when the folder has one.
 * Templates given as a list of named templates take the one named "default". */
static int load_chat_template(eng_model *m, const char *dir, eng_err *err) {
    char path[4096];
    cJSON *c;
    int rc = join_path(path, sizeof path, dir, "tokenizer_config.json", err);
    if (rc || (rc = load_json(path, 1, &c, err)) || !c) return rc;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "chat_template"), *e;
    const char *text = cJSON_IsString(t) ? t->valuestring : NULL;
    for (e = cJSON_IsArray(t) ? t->child : NULL; e && !text; e = e->next) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, "default") && cJSON_IsString(v))
            text = v->valuestring;
    }
    if (t && !cJSON_IsNull(t) && !text)
        rc = eng_seterr(err, ENG_EFORMAT, "%s: chat_template must be a string or a list "
                        "with a template named default", path);
    else if (text && !(m->chat_template = strdup(text)))
        rc = eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
    cJSON_Delete(c);
    return rc;
}

static int load_config(eng_model *m, const char *dir, ropes *r, eng_err *err) {
    char path[4096];
    cJSON *c;
    int rc = join_path(path, sizeof path, dir, "config.json", err);
    if (rc || (rc = load_json(path, 0, &c, err))) return rc;
    rc = parse_config(c, &m->cfg, r, path, err);
    cJSON_Delete(c);
    return rc ? rc : parse_gen_config(dir, &m->cfg, err);
}

/* Gemma's RMSNorm multiplies by (1 + w) where the others multiply by w.
 * The model holds the multiplier as transformers computes it in f32: 1 + w
 * from a folder; a GGUF file holds w + 1 already (llama.cpp's converter
 * adds it) and transformers' loader subtracts the 1 again, so 1 + (w' - 1),
 * which differs from w' only where the subtraction rounds.  The raw tensors
 * then differ from the f32 copy and are dropped (backends upload the copy). */
static void plus_one(float *w, int n, int from_gguf) {
    for (int i = 0; w && i < n; i++) w[i] = 1.0f + (from_gguf ? w[i] - 1.0f : w[i]);
}

static void gemma_norms(eng_model *m, int from_gguf) {
    const eng_config *g = &m->cfg;
    plus_one(m->final_norm, g->hidden, from_gguf);
    m->t_final_norm = NULL;
    for (int l = 0; l < g->n_layers; l++) {
        eng_layer_w *L = &m->layers[l];
        plus_one(L->attn_norm, g->hidden, from_gguf);
        plus_one(L->ffn_norm, g->hidden, from_gguf);
        plus_one(L->post_attn_norm, g->hidden, from_gguf);
        plus_one(L->post_ffn_norm, g->hidden, from_gguf);
        plus_one(L->q_norm, g->head_dim, from_gguf);
        plus_one(L->k_norm, g->head_dim, from_gguf);
        L->t_attn_norm = L->t_ffn_norm = L->t_post_attn_norm = L->t_post_ffn_norm = NULL;
        L->t_q_norm = L->t_k_norm = NULL;
    }
}

/* Checks the weights against the config and converts them (shards or GGUF
 * already open). */
static int load_weights(eng_model *m, eng_err *err) {
    model_priv *p = m->priv;
    weight_list *wl = malloc(sizeof *wl);
    if (!wl) return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", p->where);
    wl->n = 0;
    int rc = collect_weights(m, wl, err);
    if (!rc && p->defer) rc = defer_blocks(p, wl, err);
    if (!rc) rc = convert_all(p, wl->s, wl->n, &p->arena, "f32 weights", err);
    free(wl);
    if (!rc && !strcmp(m->cfg.arch, "gemma3")) gemma_norms(m, p->gguf != NULL);
    if (!rc && m->cfg.tie_embeddings) {
        m->lm_head = m->embed;   /* NULL while deferred: eng_model_dense ties it then */
        m->t_lm_head = m->t_embed;
    }
    return rc;
}

/* Per-layer table and RoPE frequencies (the sliding layers' too, when
 * some layer slides), once the config is known. */
static int alloc_model(eng_model *m, const ropes *r, const char *path, eng_err *err) {
    size_t n = sizeof(float) * (m->cfg.head_dim / 2);
    if (!(m->layers = calloc(m->cfg.n_layers, sizeof *m->layers)) ||
        !(m->rope_inv_freq = malloc(n)) ||
        (m->cfg.sliding_window > 0 && !(m->rope_inv_freq_local = malloc(n))))
        return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
    rope_freqs(&r->global, m->cfg.head_dim, m->rope_inv_freq);
    if (m->rope_inv_freq_local) rope_freqs(&r->local, m->cfg.head_dim, m->rope_inv_freq_local);
    return ENG_OK;
}

static int load_folder(eng_model *m, const char *dir, eng_err *err) {
    model_priv *p = m->priv;
    ropes r;
    int rc = load_config(m, dir, &r, err);
    p->names = strcmp(m->cfg.arch, "gemma3") ? &hf_names : &hf_gemma_names;
    if (!rc) rc = alloc_model(m, &r, dir, err);
    if (!rc) rc = load_tokenizer(m, dir, err);
    if (!rc) rc = load_chat_template(m, dir, err);
    if (!rc) rc = open_shards(p, dir, err);
    if (!rc) rc = load_weights(m, err);
    return rc;
}

/* llama.cpp's converter reorders the rows of each head of a llama model's
 * attn_q and attn_k (and their biases) so that ggml's RoPE, which rotates
 * adjacent pairs, sees the pairs Hugging Face's rotate_half forms from the
 * two halves of a head.  brisk rotates halves, so the order is undone on
 * the f32 copy, as each is converted (want_qk; transformers' GGUF loader
 * does the same).  The raw tensors then no longer match the f32 copy: the
 * model moves them to t_wq_gguf / t_wk_gguf (t_wq, t_wk, t_bq, t_bk NULL),
 * so backends upload the f32 copy or reorder the stored rows themselves.
 * Qwen2 files are written unpermuted. */
static void gguf_qk_raw(eng_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        eng_layer_w *L = &m->layers[l];
        L->t_wq_gguf = L->t_wq;
        L->t_wk_gguf = L->t_wk;
        L->t_wq = L->t_wk = L->t_bq = L->t_bk = NULL;
    }
}

static int load_gguf(eng_model *m, const char *path, eng_err *err) {
    model_priv *p = m->priv;
    ropes r = {0};
    eng_gguf_rope gr = {0};
    const char *tmpl = NULL;
    size_t n = 0;
    p->names = &gguf_names;
    int rc = eng_gguf_open(path, &p->gguf, err);
    if (!rc && !(p->where = strdup(path))) rc = eng_seterr(err, ENG_ENOMEM, "out of memory");
    if (!rc) rc = eng_gguf_config(p->gguf, &m->cfg, &gr, err);
    r.global.theta = gr.theta;
    r.global.linear = gr.linear_factor != 1.0;
    r.global.factor = gr.linear_factor;
    r.local.theta = gr.local_theta;
    if (!rc) rc = alloc_model(m, &r, path, err);
    if (!rc) rc = eng_tok_load_gguf(p->gguf, &m->tok, err);
    if (!rc) rc = check_tok_vocab(m, path, err);
    if (!rc) rc = eng_gguf_get_str(p->gguf, "tokenizer.chat_template", 0, &tmpl, &n, err);
    if (!rc && n && !(m->chat_template = strndup(tmpl, n)))
        rc = eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
    if (!rc) {
        eng_gguf_add_eot(&m->cfg, m->tok, m->chat_template);
        rc = load_weights(m, err);
    }
    if (!rc && !strcmp(m->cfg.arch, "llama")) gguf_qk_raw(m);
    return rc;
}

/* defer: eng_model_load_blocks's rule (model_priv.defer). */
static int load_model(const char *path, int defer, eng_model **out, eng_err *err) {
    *out = NULL;
    eng_model *m = calloc(1, sizeof *m);
    model_priv *p = m ? calloc(1, sizeof *p) : NULL;
    if (!p || pthread_mutex_init(&p->lock, NULL)) {
        free(p);
        free(m);
        return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
    }
    m->priv = p;
    p->defer = defer;
    /* a regular file is read as GGUF (the reader checks its magic), anything
     * else as a Hugging Face folder */
    struct stat sb;
    int rc = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? load_gguf(m, path, err)
                                                        : load_folder(m, path, err);
    if (rc) {
        eng_model_free(m);
        return rc;
    }
    *out = m;
    return ENG_OK;
}

int eng_model_load(const char *path, eng_model **out, eng_err *err) {
    return load_model(path, 0, out, err);
}

int eng_model_load_blocks(const char *path, eng_model **out, eng_err *err) {
    return load_model(path, 1, out, err);
}

int eng_model_dense(const eng_model *m, eng_err *err) {
    if (!m) return eng_seterr(err, ENG_EINVAL, "eng_model_dense: no model");
    /* The f32 copy is a cache of the file's values, not a change of the
     * model: a const model gets it, written through this cast. */
    eng_model *w = (eng_model *)m;
    model_priv *p = w->priv;
    pthread_mutex_lock(&p->lock);
    int rc = p->n_deferred ? convert_all(p, p->deferred, p->n_deferred, &p->arena_dense,
                                         "the f32 copy of its quantized matrices", err)
                           : ENG_OK;
    if (!rc && p->n_deferred) {
        if (w->cfg.tie_embeddings) w->lm_head = w->embed;
        free(p->deferred);
        p->deferred = NULL;
        p->n_deferred = 0;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int eng_model_has_dense(const eng_model *m) {
    model_priv *p = m->priv;
    pthread_mutex_lock(&p->lock);
    int done = !p->n_deferred;
    pthread_mutex_unlock(&p->lock);
    return done;
}

void eng_model_free(eng_model *m) {
    if (!m) return;
    model_priv *p = m->priv;
    if (p) {
        for (int i = 0; i < p->n_shards; i++) {
            eng_st_close(p->shards[i]);
            free(p->shard_paths[i]);
        }
        free(p->shards);
        free(p->shard_paths);
        eng_gguf_close(p->gguf);
        free(p->where);
        free(p->arena);
        free(p->deferred);
        free(p->arena_dense);
        pthread_mutex_destroy(&p->lock);
        free(p);
    }
    if (m->tok) eng_tok_free(m->tok);
    free(m->layers);
    free(m->rope_inv_freq);
    free(m->rope_inv_freq_local);
    free(m->chat_template);
    free(m);
}

const eng_config *eng_model_config(const eng_model *m) { return &m->cfg; }
eng_tok *eng_model_tok(const eng_model *m) { return m->tok; }
const char *eng_model_chat_template(const eng_model *m) { return m->chat_template; }
