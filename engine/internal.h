/* internal.h — engine structures shared by the engine's own files (not API). */
#ifndef ENG_INTERNAL_H
#define ENG_INTERNAL_H
#include <math.h>
#include "eng.h"

/* Stored element types.  The quantized ones are ggml's block formats: a
 * block of 32 (Q8_0 .. Q5_1) or 256 (the K types) elements in a fixed
 * number of bytes; quant.c dequantizes them. */
enum { ENG_DT_F32 = 0, ENG_DT_F16, ENG_DT_BF16, ENG_DT_Q8_0, ENG_DT_Q4_0, ENG_DT_Q4_1,
       ENG_DT_Q5_0, ENG_DT_Q5_1, ENG_DT_Q4_K, ENG_DT_Q5_K, ENG_DT_Q6_K, ENG_DT_COUNT };

/* One tensor as it lies in a mmap'd safetensors or GGUF file. */
typedef struct eng_tensor {
    char name[160];
    int dtype;               /* ENG_DT_* */
    int ndim;
    int64_t shape[4];
    const void *data;        /* points into the mapping */
    size_t nbytes;           /* stored bytes: whole blocks of dtype */
} eng_tensor;

/* Per-layer weights, converted to f32 for the CPU reference.  Linear weights
 * keep Hugging Face layout [out][in], row-major. */
typedef struct eng_layer_w {
    float *attn_norm;                 /* [hidden] */
    float *wq, *wk, *wv, *wo;         /* [nh*hd][hidden], [nkv*hd][hidden] x2, [hidden][nh*hd] */
    float *bq, *bk, *bv;              /* NULL unless cfg.qkv_bias */
    float *ffn_norm;                  /* [hidden] */
    float *w_gate, *w_up, *w_down;    /* [inter][hidden] x2, [hidden][inter] */
    float *q_norm, *k_norm;           /* [head_dim]; NULL unless cfg.qk_norm */
    float *post_attn_norm, *post_ffn_norm;   /* [hidden]; NULL unless cfg.post_norms */
    /* Raw tensors (dtype as stored) for backends that upload them, e.g. CUDA;
     * NULL where the f32 copy differs from them (llama GGUF q/k rows
     * reordered, Gemma's norms held as 1 + w; see model.c). */
    const eng_tensor *t_attn_norm, *t_wq, *t_wk, *t_wv, *t_wo, *t_bq, *t_bk, *t_bv;
    const eng_tensor *t_ffn_norm, *t_gate, *t_up, *t_down;
    const eng_tensor *t_q_norm, *t_k_norm, *t_post_attn_norm, *t_post_ffn_norm;
    /* llama GGUF files: attn_q / attn_k as stored (NULL otherwise), each
     * head's rows in llama.cpp's order: file row 2i+s of a head is row
     * s*hd/2+i of the f32 copy.  Rows are whole blocks, so a backend that
     * keeps the quantized blocks reorders rows (see model.c). */
    const eng_tensor *t_wq_gguf, *t_wk_gguf;
} eng_layer_w;

struct eng_model {
    eng_config cfg;
    eng_tok *tok;
    float *embed;        /* [vocab][hidden] */
    float *final_norm;   /* [hidden] */
    float *lm_head;      /* [vocab][hidden]; == embed when tied */
    eng_layer_w *layers; /* [n_layers] */
    float *rope_inv_freq; /* [head_dim/2], rope_scaling applied (global layers) */
    float *rope_inv_freq_local; /* [head_dim/2] of sliding layers; NULL when none slides */
    const eng_tensor *t_embed, *t_final_norm, *t_lm_head;
    char *chat_template;  /* Jinja text the model carries (tokenizer_config.json
                           * chat_template, GGUF tokenizer.chat_template); NULL if none */
    /* ownership: mapped files, tensor table, f32 arena */
    void *priv;
};

/* model.c: what cfg->arch switches on (qk_norm, post_norms, gelu,
 * embed_scale, and attn_scale = 1/sqrt(head_dim), which a loader may
 * override), once arch, hidden and head_dim are set. */
void eng_arch_features(eng_config *cfg);

/* util.c: maps a whole regular file read-only (*map NULL when it is empty);
 * ENG_EIO naming path when it cannot be opened, is not a regular file or
 * cannot be mapped.  eng_unmap_file undoes it (NULL map: nothing). */
int  eng_map_file(const char *path, const void **map, size_t *size, eng_err *err);
void eng_unmap_file(const void *map, size_t size);

/* safetensors: open and mmap one file; tensors are listed in order. */
typedef struct eng_st eng_st;
int  eng_st_open(const char *path, eng_st **out, eng_err *err);
void eng_st_close(eng_st *f);
int  eng_st_count(const eng_st *f);
const eng_tensor *eng_st_get(const eng_st *f, int i);
const eng_tensor *eng_st_find(const eng_st *f, const char *name);

/* sample.c: the log-probability of id and the entropy of one row of
 * logits (temperature 1), for tokens that are forced rather than drawn. */
eng_token eng_token_of(const float *logits, int vocab, int id);

/* sample.c: the distribution eng_sample draws from, built in one place for
 * eng_sample and for speculative verification (spec.c), which is lossless
 * only while the two agree exactly. */
typedef struct eng_cand { float v; int id; } eng_cand;   /* a token and its logit or weight */
/* NaN logits count as impossible tokens. */
static inline float eng_logit_at(const float *l, int i) {
    float v = l[i];
    return v == v ? v : -INFINITY;
}
/* The largest logit of l[vocab] and in *best its id (the lowest on ties). */
float eng_row_max(const float *l, int vocab, int *best);
enum { ENG_SUPPORT_ALL = -1 };
/* The tokens a draw under s may give for logits l[vocab] whose largest is
 * max (eng_row_max), each with weight exp((l - max) / T): temperature, then
 * top-k, then top-p.  Returns
 *   n > 0: the tokens in (*c)[0..n), weights in .v, *total their sum (*c is
 *          grown with realloc, *cap entries; the caller frees it);
 *   ENG_SUPPORT_ALL: every token stays (temperature alone; no list is made),
 *          *total the sum of all the weights, which go to w[vocab] when w
 *          is not NULL (written by the pass that sums them);
 *   0: the draw is the argmax (greedy settings, a row without a finite
 *          logit, or no memory).
 * z: the sum of exp(l - max) when the caller has it (the total at T = 1,
 * saving a pass when w is NULL), else < 0. */
/* How eng_create holds a GGUF file's weights on one GPU under eng_opts.quant
 * `setting` (AUTO or ON): 1 the blocks beside the dense copy, 2 the blocks
 * alone, 0 the dense copy alone (AUTO only); ok[q] says whether way q fits
 * at all and fit[q] how many KV blocks it leaves, want the pool the engine
 * would make.  The dense copy beside the blocks (faster prompts and wide
 * batches) where it leaves the wanted pool or at least half of what the
 * blocks alone would (KV holds the reasoning branches), else the blocks
 * alone, else the dense copy alone; 1 where nothing fits (the backend then
 * reports it). */
int eng_quant_choice(int setting, const int ok[3], const int fit[3], int want);
int eng_sample_support(const float *l, int vocab, const eng_sampling *s, float max, double z,
                       float *w, eng_cand **c, int *cap, double *total);

/* quant.c: element types and conversion to f32. */
int  eng_dt_block(int dt);         /* elements per block (1 for F32/F16/BF16) */
int  eng_dt_block_bytes(int dt);   /* bytes per block */
const char *eng_dt_name(int dt);
int64_t eng_tensor_elems(const eng_tensor *t);   /* product of the shape */
/* Converts every element of t (nbytes / block bytes whole blocks) to f32,
 * bit-exact with ggml's reference dequantization for quantized types. */
void eng_to_f32(const eng_tensor *t, float *dst);
float eng_bf16_to_f32(uint16_t v);
/* f32 -> bf16 rounded to nearest even (CUDA's __float2bfloat16_rn for
 * every finite value and infinity; NaN stays a quiet NaN). */
uint16_t eng_f32_to_bf16(float f);
float eng_f16_to_f32(uint16_t v);

#endif
