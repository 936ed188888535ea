/* eng.h — brisk's inference engine: model files, tokenizer, paged KV cache,
 * batched forward pass and sampling.  Every call that can fail returns an
 * ENG_* code and, when err is non-NULL, a message naming what went wrong. */
#ifndef ENG_H
#define ENG_H
#include <stddef.h>
#include <stdint.h>

enum {
    ENG_OK = 0,
    ENG_EIO,          /* file could not be opened / read / mapped */
    ENG_EFORMAT,      /* malformed file: bad JSON, bad header, wrong shape */
    ENG_ENOMEM,
    ENG_EFULL,        /* KV cache or batch has no room */
    ENG_EINVAL,       /* bad argument (unknown sequence id, empty prompt, ...) */
    ENG_EUNSUPPORTED  /* valid input we do not handle (architecture, dtype) */
};

typedef struct eng_err { int code; char msg[512]; } eng_err;

/* Sets err (if non-NULL) and returns code; used by every module. */
int eng_seterr(eng_err *err, int code, const char *fmt, ...);

/* ---------------------------------------------------------------- model */
typedef struct eng_config {
    char arch[32];          /* "qwen2" or "llama" */
    int vocab_size, hidden, n_layers, n_heads, n_kv_heads, head_dim;
    int intermediate, max_pos;
    float rms_eps, rope_theta;
    int tie_embeddings;     /* lm_head shares embed_tokens */
    int qkv_bias;           /* qwen2: q/k/v projections carry biases */
    int bos_id;             /* -1 when none */
    int eos_ids[8], n_eos;  /* from config.json / generation_config.json */
} eng_config;

typedef struct eng_model eng_model;

/* dir holds config.json, *.safetensors (or model.safetensors.index.json),
 * tokenizer.json and optionally generation_config.json. */
int  eng_model_load(const char *dir, eng_model **out, eng_err *err);
void eng_model_free(eng_model *m);
const eng_config *eng_model_config(const eng_model *m);
struct eng_tok *eng_model_tok(const eng_model *m);  /* owned by the model */

/* ------------------------------------------------------------ tokenizer */
typedef struct eng_tok eng_tok;

int  eng_tok_load(const char *tokenizer_json_path, eng_tok **out, eng_err *err);
void eng_tok_free(eng_tok *t);
int  eng_tok_vocab_size(const eng_tok *t);
/* Encodes len bytes of UTF-8 text.  With allow_special, added/special tokens
 * written literally in the text (e.g. "<|im_end|>") become their ids;
 * without it they are text (non-special added tokens still match).
 * *ids is malloc'd; caller frees. */
int  eng_tok_encode(const eng_tok *t, const char *text, size_t len, int allow_special,
                    int **ids, int *n_ids, eng_err *err);
/* Raw bytes of one token (after byte-level decoding); NULL for a bad id. */
const char *eng_tok_piece(const eng_tok *t, int id, int *len);
/* Id of a token given its text (special tokens included), or -1. */
int  eng_tok_find(const eng_tok *t, const char *text);
/* Decodes ids to a malloc'd, NUL-terminated byte string. */
char *eng_tok_decode(const eng_tok *t, const int *ids, int n_ids, int skip_special);

/* Streaming decode: hands out only complete UTF-8 characters, holding back
 * the bytes of a character split across tokens. */
typedef struct eng_tok_stream { unsigned char pend[8]; int n_pend; } eng_tok_stream;
/* Appends the text of token id to out (cap bytes, NUL-terminated); returns
 * the number of bytes written.  id < 0 flushes held-back bytes (as U+FFFD).
 * out needs 3 x the longest token + 16 bytes; what does not fit is dropped. */
int  eng_tok_stream_put(const eng_tok *t, eng_tok_stream *s, int id, int skip_special,
                        char *out, int cap);

/* ChatML (Qwen2.5, SmolLM2-Instruct):
 * <|im_start|>role\ncontent<|im_end|>\n ... then "<|im_start|>assistant\n". */
typedef struct eng_chat_msg { const char *role, *content; } eng_chat_msg;
char *eng_chat_format(const eng_chat_msg *msgs, int n, int add_generation_prompt);

/* ------------------------------------------------------------- sampling */
typedef struct eng_sampling {
    float temperature;   /* <= 0: greedy (argmax) */
    int   top_k;         /* <= 0: off */
    float top_p;         /* >= 1 or <= 0: off */
    uint64_t seed;
} eng_sampling;

/* What one step produced for one sequence. */
typedef struct eng_token {
    int   id;
    float logprob;   /* log p(id) under the model's (temperature 1) distribution */
    float entropy;   /* entropy (nats) of that distribution */
} eng_token;

/* Samples from one row of logits; rng is advanced.  Pure function, used by
 * the engine and by speculative verification. */
eng_token eng_sample(const float *logits, int vocab, const eng_sampling *s, uint64_t *rng);

/* --------------------------------------------------------------- engine */
enum { ENG_BACKEND_CPU = 0, ENG_BACKEND_CUDA = 1 };

typedef struct eng_opts {
    int backend;      /* ENG_BACKEND_* */
    int n_threads;    /* CPU: 0 = number of cores */
    int block_size;   /* KV tokens per block; 0 = 16 */
    int n_blocks;     /* KV blocks in the pool; 0 = sized for max_seqs x max_pos/4 */
    int max_seqs;     /* live sequences at once; 0 = 256 */
} eng_opts;

typedef struct eng_engine eng_engine;

int  eng_create(eng_model *m, const eng_opts *o, eng_engine **out, eng_err *err);
void eng_destroy(eng_engine *e);

/* A sequence: prompt tokens waiting to be processed, then generated tokens.
 * Returns a sequence id >= 0 via *seq. */
int  eng_seq_add(eng_engine *e, const int *prompt, int n, const eng_sampling *s,
                 int *seq, eng_err *err);
/* Runs all but the last pending token of seq through the model now, so that
 * forks share those KV blocks. */
int  eng_seq_prefill(eng_engine *e, int seq, eng_err *err);
/* New sequence sharing seq's KV blocks copy-on-write, tokens and pending
 * tokens; s == NULL copies the parent's sampling settings. */
int  eng_seq_fork(eng_engine *e, int seq, const eng_sampling *s, int *child, eng_err *err);
int  eng_seq_remove(eng_engine *e, int seq);
/* Appends tokens (e.g. a tool result, a probe cue) as pending input of seq;
 * they are processed at the next step. */
int  eng_seq_append(eng_engine *e, int seq, const int *ids, int n, eng_err *err);
/* Teacher forcing: the next n tokens sampled for seq are ids instead (the
 * model still runs, so timings are real; logprob/entropy are the model's for
 * the forced token).  Scripted agents in tests and benchmarks use this. */
int  eng_seq_force(eng_engine *e, int seq, const int *ids, int n, eng_err *err);
/* A paused sequence is left out of eng_step (waiting on a tool, a slow
 * client, or finished but kept for its KV blocks). */
int  eng_seq_pause(eng_engine *e, int seq, int paused);
/* Keep logits of every processed position in the next step (tests). */
int  eng_seq_keep_all_logits(eng_engine *e, int seq, int on);

/* One batched step: every live sequence processes its pending tokens and
 * samples one new token.  Returns ENG_OK or an error (e.g. ENG_EFULL). */
int  eng_step(eng_engine *e, eng_err *err);

/* Reading state. */
int  eng_seq_last(const eng_engine *e, int seq, eng_token *out);
int  eng_seq_tokens(const eng_engine *e, int seq, const int **ids, int *n); /* prompt + generated */
int  eng_seq_n_prompt(const eng_engine *e, int seq);
/* Logits of the last step: rows = 1, or every processed position when
 * keep_all_logits was on.  Valid until the next step.  On the CPU backend
 * they are always there; on CUDA only for sequences with keep_all_logits
 * (copying a vocabulary-sized row per sequence per step costs time);
 * otherwise NULL with rows = 0. */
const float *eng_seq_logits(const eng_engine *e, int seq, int *rows);
int  eng_n_live(const eng_engine *e);
int  eng_kv_free_blocks(const eng_engine *e);
const eng_model *eng_engine_model(const eng_engine *e);

#endif
