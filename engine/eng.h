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
/* Reads a whole file into a malloc'd, NUL-terminated buffer (*len bytes,
 * len may be NULL); max > 0 refuses larger files (ENG_EFORMAT).  On ENG_EIO
 * errno says why (ENOENT: absent). */
int eng_read_file(const char *path, size_t max, char **buf, size_t *len, eng_err *err);

/* Growable string, used by every module.  NUL-terminated once non-empty.
 * Appends return 0, or -1 when memory ran out: the buffer then keeps what it
 * had and oom stays set, so later appends do nothing and a caller may check
 * each append or only once at the end. */
typedef struct eng_buf { char *p; size_t n, cap; int oom; } eng_buf;
int         eng_buf_add(eng_buf *b, const char *s, size_t n);
int         eng_buf_adds(eng_buf *b, const char *s);
int         eng_buf_addc(eng_buf *b, char c);
int         eng_buf_printf(eng_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *eng_buf_str(const eng_buf *b);   /* "" while empty */
void        eng_buf_clear(eng_buf *b);       /* empties b, keeps its memory (and oom) */
char       *eng_buf_take(eng_buf *b);        /* the string ("" if empty), NULL after oom; b emptied */
void        eng_buf_free(eng_buf *b);

/* Seconds on the monotonic clock (for timings). */
double eng_now_s(void);

/* ---------------------------------------------------------------- model */
/* A decoder layer: x += attn(norm(x)); x += mlp(norm(x)), RMSNorm and RoPE,
 * SwiGLU MLP (Llama, Qwen2), with what the other architectures change:
 *   qwen3   RMSNorm over each head of q and k before RoPE, no q/k/v bias;
 *   gemma3  the same q/k norm; norms also on the attention and MLP outputs
 *           before each residual add; GeGLU (tanh GELU); embeddings scaled
 *           by sqrt(hidden); scores scaled by 1/sqrt(query_pre_attn_scalar);
 *           sliding-window layers with their own RoPE base between global
 *           ones; RMSNorm weights stored as w for a (1 + w) multiplier
 *           (the model holds 1 + w, so backends multiply as for the others). */
typedef struct eng_config {
    char arch[32];          /* "llama", "qwen2", "qwen3" or "gemma3" */
    int vocab_size, hidden, n_layers, n_heads, n_kv_heads, head_dim;
    int intermediate, max_pos;
    float rms_eps, rope_theta;
    int tie_embeddings;     /* lm_head shares embed_tokens */
    int qkv_bias;           /* qwen2: q/k/v projections carry biases */
    int qk_norm;            /* qwen3, gemma3: per-head RMSNorm of q and k before RoPE */
    int post_norms;         /* gemma3: RMSNorm of the attention and MLP outputs */
    int gelu;               /* gemma3: GeGLU with tanh GELU instead of SwiGLU */
    float embed_scale;      /* embedding rows are multiplied by it (1 but gemma3) */
    float attn_scale;       /* q.k is multiplied by it: 1/sqrt(head_dim), gemma3
                             * 1/sqrt(query_pre_attn_scalar) */
    /* Sliding-window attention: with sliding_window > 0, layer l slides
     * unless swa_pattern > 0 and (l + 1) % swa_pattern == 0 (eng_layer_sliding);
     * a sliding layer's query at position p sees positions
     * p - sliding_window + 1 .. p, with RoPE base rope_local_theta.  The KV
     * cache still holds every position of every layer. */
    int sliding_window, swa_pattern;
    float rope_local_theta;
    int bos_id;             /* -1 when none */
    int eos_ids[8], n_eos;  /* from config.json / generation_config.json, or GGUF
                             * metadata plus the chat end-of-turn token */
} eng_config;

/* Whether layer l of c attends through a sliding window. */
static inline int eng_layer_sliding(const eng_config *c, int l) {
    return c->sliding_window > 0 && (c->swa_pattern <= 0 || (l + 1) % c->swa_pattern != 0);
}

typedef struct eng_model eng_model;

/* path is a Hugging Face folder (config.json, *.safetensors or
 * model.safetensors.index.json, tokenizer.json, optionally
 * generation_config.json and tokenizer_config.json) or a GGUF file (any
 * regular file is read as GGUF: llama, qwen2, qwen3 or gemma3, weights F32/F16/BF16 or
 * quantized Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K, dequantized to f32;
 * tokenizer and chat template from its metadata). */
int  eng_model_load(const char *path, eng_model **out, eng_err *err);
/* As eng_model_load, but the f32 copy of the matrices stored in a
 * block-quantized type (Q8_0 .. Q6_K) is not made: their f32 pointers stay
 * NULL until eng_model_dense.  Vectors and F32/F16/BF16 tensors are
 * converted at load as there, so a Hugging Face folder, or a GGUF file
 * without such matrices, loads exactly as with eng_model_load.  eng_create
 * makes the copy unless the backend reads the blocks alone (CUDA,
 * --quant-lean); backends that read the f32 copy refuse a model without it
 * (ENG_EINVAL). */
int  eng_model_load_blocks(const char *path, eng_model **out, eng_err *err);
/* Makes the f32 copy eng_model_load_blocks left out: the same values, bit
 * for bit, as eng_model_load gives (llama's q/k rows reordered, a tied
 * lm_head pointing at the embedding).  A no-op (ENG_OK) once made or when
 * nothing waits; ENG_ENOMEM when its memory cannot be had, the model then
 * unchanged.  The copy is a cache of the file's values, so the model is
 * const; calls from several threads convert once. */
int  eng_model_dense(const eng_model *m, eng_err *err);
/* 1 once every f32 weight pointer is set (always after eng_model_load). */
int  eng_model_has_dense(const eng_model *m);
void eng_model_free(eng_model *m);
const eng_config *eng_model_config(const eng_model *m);
struct eng_tok *eng_model_tok(const eng_model *m);  /* owned by the model */
/* The chat template text the model files carry, or NULL when they carry none. */
const char *eng_model_chat_template(const eng_model *m);

/* ------------------------------------------------------------ tokenizer */
typedef struct eng_tok eng_tok;

int  eng_tok_load(const char *tokenizer_json_path, eng_tok **out, eng_err *err);
/* The tokenizer at path: a tokenizer.json, a GGUF file (its tokenizer.ggml.*
 * metadata; told apart by the "GGUF" magic), or a folder holding a
 * tokenizer.json or else exactly one .gguf file. */
int  eng_tok_open(const char *path, eng_tok **out, eng_err *err);
void eng_tok_free(eng_tok *t);
int  eng_tok_vocab_size(const eng_tok *t);
/* The token a prompt starts with when the model wants one, else -1: what
 * Hugging Face puts first when encoding with add_special_tokens=True (the
 * tokenizer.json post-processor's TemplateProcessing, e.g. Llama 3's
 * <|begin_of_text|>; a GGUF file's tokenizer.ggml.bos_token_id when
 * tokenizer.ggml.add_bos_token is true).  eng_tok_encode never adds it:
 * the prompt builder does, once, before the formatted prompt. */
int  eng_tok_bos(const eng_tok *t);
/* Encodes len bytes of UTF-8 text.  With allow_special, added/special tokens
 * written literally in the text (e.g. "<|im_end|>") become their ids;
 * without it they are text (non-special added tokens still match).
 * *ids is malloc'd; caller frees. */
int  eng_tok_encode(const eng_tok *t, const char *text, size_t len, int allow_special,
                    int **ids, int *n_ids, eng_err *err);
/* A raw prompt (no chat template) as Hugging Face's tokenizer(text) gives
 * it: eng_tok_bos first when the tokenizer adds one (Gemma, Llama 3), then
 * the text with special tokens as text.  Every raw-prompt path uses it. */
int  eng_tok_encode_prompt(const eng_tok *t, const char *text, size_t len, int **ids, int *n_ids,
                           eng_err *err);
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

/* ----------------------------------------------------------------- chat */
/* The chat renderer (chat.c): a conversation to the ids and text the model's
 * chat template gives, as transformers' apply_chat_template does, for the
 * ChatML (Qwen2.5, Qwen3, SmolLM2), Llama 3 and Gemma template families.
 * The family comes from the template text (eng_model_chat_template); a model
 * without one gets ChatML when its vocabulary has <|im_start|>, else an
 * error; another template is refused (ENG_EUNSUPPORTED) naming the markers
 * expected.  Message text is encoded with special tokens NOT allowed: only
 * the template's own markers become control tokens.  chat.c's head comment
 * gives each family's rules. */
typedef struct eng_chat eng_chat;

/* A tool call of an assistant message. */
typedef struct eng_chat_call {
    const char *name;
    const char *arguments;   /* a JSON object, as text; NULL = {} */
    const char *id;          /* none of the supported templates shows it */
} eng_chat_call;

typedef struct eng_chat_msg {
    const char *role;        /* "system", "user", "assistant" or "tool" (a tool result) */
    const char *content;     /* NULL = "" */
    const eng_chat_call *tool_calls;   /* assistant */
    int n_tool_calls;
    const char *reasoning;   /* assistant: Qwen3's reasoning_content; NULL = what
                              * <think>...</think> in content holds */
    const char *tool_call_id, *name;   /* tool: kept for callers; no supported
                                        * template shows them */
} eng_chat_msg;

typedef struct eng_chat_opts {
    const char *tools_json;  /* JSON list of tool definitions ({"type": "function",
                              * "function": {name, description, parameters}}), NULL = none */
    int add_generation_prompt;
    int no_thinking;         /* Qwen3's enable_thinking=false: an empty think block */
    const char *prefill;     /* text the assistant's reply starts with (after the prompt) */
    const char *date;        /* Llama 3.1's "Today Date"; NULL = the template's */
    /* msgs follow an assistant turn that ended on eng_chat_end_token, which is
     * already in the sequence: render what comes after that token (the rest
     * of the turn's closing, these messages, the prompt).  No system turn,
     * no tools, no assistant messages. */
    int continuation;
} eng_chat_opts;

/* From the model's template and tokenizer (the model must outlive it). */
int  eng_chat_create(const eng_model *m, eng_chat **out, eng_err *err);
/* From a template text (NULL: none) and a tokenizer that outlives it. */
int  eng_chat_create_from(const char *template_text, const eng_tok *tok, eng_chat **out,
                          eng_err *err);
void eng_chat_free(eng_chat *c);
/* Renders n messages (o may be NULL: no tools, no generation prompt).  ids
 * (malloc'd) and text (its content replaced by the same conversation as
 * text, for display and logs) may each be NULL, not both.  Bad input (unknown role, arguments that are no JSON
 * object, tools where the family has none, Gemma's roles not alternating)
 * is an error naming the message. */
int  eng_chat_render(const eng_chat *c, const eng_chat_msg *msgs, int n, const eng_chat_opts *o,
                     int **ids, int *n_ids, eng_buf *text, eng_err *err);
const char *eng_chat_family_name(const eng_chat *c);   /* "chatml", "llama3", "gemma" */
/* The token that ends an assistant turn (<|im_end|>, <|eot_id|>,
 * <end_of_turn>): generation stops there. */
int  eng_chat_end_token(const eng_chat *c);

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

/* Greedy settings (eng_sample takes the argmax): temperature <= 0 or not finite. */
int eng_sampling_greedy(const eng_sampling *s);
/* Draws i with probability w[i] / (the sum of w's positive entries),
 * advancing rng once; -1 when no entry is positive.  Drafters and
 * speculative verification draw from distributions they hold this way. */
int eng_sample_weights(const float *w, int vocab, uint64_t *rng);

/* splitmix64, the one random stream of brisk (sampling, speculation, tools,
 * simulated sites): each call adds 0x9E3779B97F4A7C15 to *state and returns
 * the sum mixed; the same state gives the same numbers everywhere. */
uint64_t eng_rng_next(uint64_t *state);
/* Uniform in [0, 1) from the top 53 bits of eng_rng_next. */
double   eng_rng_uniform(uint64_t *state);

/* --------------------------------------------------------------- engine */
enum { ENG_BACKEND_CPU = 0, ENG_BACKEND_CUDA = 1 };
typedef struct eng_engine eng_engine;

/* How the KV cache stores keys and values.  BF16 rounds each K and V value
 * to bf16 (round to nearest even, as CUDA's __float2bfloat16_rn) when it is
 * written, on every backend, so the CPU reference and CUDA agree in either
 * format; attention still computes in f32.  Half the bytes per token; logits
 * move by ~1e-3 relative, enough to flip near-tied greedy choices against
 * an F32 run (kernels/NOTES.md, "Precision choices"). */
enum { ENG_KV_F32 = 0, ENG_KV_BF16 = 1 };
/* "f32" or "bf16" -> ENG_KV_*; -1 for anything else.  The one parser of the
 * commands' --kv option. */
int eng_kv_format_parse(const char *name);
const char *eng_kv_format_name(int format);   /* "f32", "bf16", or "?" */

typedef struct eng_opts {
    int backend;      /* ENG_BACKEND_* */
    int n_threads;    /* CPU: 0 = number of cores */
    int block_size;   /* KV tokens per block; 0 = 16 */
    int n_blocks;     /* KV blocks in the pool; 0 = sized for max_seqs x max_pos/4 tokens,
                       * at least max_pos (one sequence may use the whole context) */
    int max_seqs;     /* live sequences at once; 0 = 256 */
    int tp;           /* tensor-parallel ranks; 0 or 1 = unsplit.  CPU: ranks are threads
                       * sharing n_threads (the "split" backend); CUDA: one GPU per rank
                       * through NCCL, in builds with NCCL only */
    int kv_format;    /* ENG_KV_*; 0 = F32 */
    int quant;        /* ENG_QUANT_*: whether the CUDA backend of one GPU reads a GGUF
                       * file's quantized blocks in decode passes (eng_cuda_opts.quant) */
    int act;          /* ENG_ACT_*; 0 = AUTO */
} eng_opts;
/* What the products of a GGUF file's quantized blocks take as input.  F32:
 * the activations as they are.  Q16: each 16-element group of an input row
 * rounded to two int8 planes: amax its largest |x|, t = x 127 / amax, q1 =
 * rint(t), q2 = rint(254 (t - q1)), x -> amax / 127 (q1 + q2 / 254), within
 * 1/508 of amax / 127 (~1e-5 of the group's largest element; the bf16
 * high/low halves of the wide passes keep 2^-17).  Every backend and path
 * rounds alike, so the CPU reference and CUDA agree, and the GEMV of one
 * or two rows sums the planes against the blocks' quants in integers
 * (dp4a): 6-12% off a decode step at batch 1 on the H100, 3-13% at 2 rows,
 * 1-4% on at 8-32 rows, where each input is rounded as it is written
 * (kernels/NOTES.md v31-v33).
 * A value that lands on a rounding edge of q1 gives the same result from
 * either side (q2 = +-127), so f32 differences between backends do not
 * grow into steps of amax / 127.  Needs every layer product and the
 * lm_head in a block type, one rank and, on CUDA, the blocks on the
 * device. */
/* AUTO (0, the default): Q16 where it can be on the CUDA backend of one
 * GPU reading the blocks (eng_opts.quant not OFF, every product of a
 * block type and in a shape the one-row kernel takes), else F32; the CPU
 * backend, the reference, keeps F32 unless asked.  eng_act says which an
 * engine took. */
/* BF16: every product's input (the normed rows, attention's output, the
 * GLU's output, the final norm's rows) rounded to bf16, to nearest even
 * (CUDA's __float2bfloat16_rn), on every backend, so the CPU reference and
 * CUDA agree; the residual stream, attention and the products' sums stay
 * f32.  On CUDA a wide product is then one bf16 tensor-core product instead
 * of two (the f32 path splits each input into bf16 high and low halves):
 * for wide batches (kernels/NOTES.md v37).  Logits move by up to ~1e-2
 * relative (the fixtures, SmolLM2), enough to flip near-tied greedy choices
 * against an F32 run (3 of 10 of SmolLM2's prompts part within 64 tokens).  Needs dense
 * weights (on CUDA, bf16 ones: a bf16 checkpoint or eng_cuda_opts.bf16_weights;
 * a GGUF file's blocks are not read: quant AUTO takes the dense copy, ON
 * and LEAN are refused) and one rank. */
enum { ENG_ACT_AUTO = 0, ENG_ACT_F32 = 1, ENG_ACT_Q16 = 2, ENG_ACT_BF16 = 3 };
/* "auto", "f32", "q16", "bf16" -> ENG_ACT_*; -1 for anything else (the one
 * parser of --act) */
int eng_act_parse(const char *name);
const char *eng_act_name(int act);   /* "auto", "f32", "q16", "bf16", or "?" */
/* AUTO (0, the default): on where it can be (CUDA, one GPU): the blocks
 * beside the dense copy (which wider passes read, as bf16 halves where
 * every product has blocks: kern.h quant_wide) where both fit in device
 * memory and leave the KV pool at least half what the blocks alone would
 * (or the pool the engine wants), else the blocks alone where every
 * product has blocks the kernels take (LEAN), else the dense copy alone
 * (internal.h eng_quant_choice, when the engine sizes its pool); ON ("--quant"): the
 * blocks, with the dense copy or alone, and an error where neither can be;
 * OFF ("--no-quant"): the f32 dense copy only; LEAN ("--quant-lean"): the
 * blocks alone (wide passes make each product's halves from them, about a
 * quarter of the device memory), an error where the file cannot. */
enum { ENG_QUANT_AUTO = 0, ENG_QUANT_ON = 1, ENG_QUANT_OFF = 2, ENG_QUANT_LEAN = 3 };
#define ENG_TP_MAX 64

/* The engine options of the command line, read in this one place by every
 * command that makes an engine: "--cuda" (the CUDA backend), "--tp N"
 * (tensor-parallel ranks, 1 to ENG_TP_MAX), "--quant" / "--no-quant" / "--quant-lean" (quant above) and
 * "--kv f32|bf16" (kv_format), "--act f32|q16|bf16" (act).  k is an argument and v the next one (NULL
 * at the end).  *used: 0 when k is none of them, else how many arguments
 * it took; ENG_EINVAL naming the option for a bad or missing value. */
int eng_opts_arg(const char *k, const char *v, eng_opts *o, int *used, eng_err *err);
#define ENG_OPTS_USAGE "[--cuda] [--tp N] [--quant | --no-quant | --quant-lean] [--kv f32|bf16] [--act f32|q16|bf16]"

/* Tensor parallelism: ranks the engine's model is split over (1: unsplit),
 * and one rank's counters (CPU split backend; zeros on CUDA, whose
 * all-reduces run inside the device's stream and graphs).  All-reduce time
 * includes waiting for the other ranks to arrive. */
typedef struct eng_tp_rank_stats {
    double allreduce_s;   /* seconds in all-reduces since the engine was made */
    int64_t n_allreduce;  /* all-reduces run: per pass (and per 512 rows of a longer one),
                           * one after the embedding and two per layer */
} eng_tp_rank_stats;
int eng_tp_ranks(const eng_engine *e);
/* ENG_EINVAL for a rank outside [0, eng_tp_ranks). */
int eng_tp_stats(const eng_engine *e, int rank, eng_tp_rank_stats *out, eng_err *err);

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
/* Runs a prompt pass of every ENG_WARMUP_STEP tokens up to max_tokens (capped
 * by the context and the free KV blocks) on a scratch sequence, then removes
 * it: the CUDA backend's first pass of each padded size loads kernels and
 * plans its products (milliseconds; kernels/NOTES.md), which a server should
 * pay at start, not in a user's first request of that length.  *done: tokens
 * warmed. */
#define ENG_WARMUP_STEP 32   /* CUDA pads products to 64 hi/lo columns: 32 rows */
#define ENG_WARMUP_DEFAULT 2048   /* what serve and replay warm with --cuda */
int  eng_warmup(eng_engine *e, int max_tokens, int *done, eng_err *err);
/* Appends tokens (e.g. a tool result, a probe cue) as pending input of seq;
 * they are processed at the next step. */
int  eng_seq_append(eng_engine *e, int seq, const int *ids, int n, eng_err *err);
/* Teacher forcing: the next n tokens sampled for seq are ids instead (the
 * model still runs, so timings are real; logprob/entropy are the model's for
 * the forced token).  Scripted agents in tests and benchmarks use this. */
int  eng_seq_force(eng_engine *e, int seq, const int *ids, int n, eng_err *err);
/* Keeps the first n tokens of seq (0 <= n <= its length) and drops the
 * rest, KV entries included; the KV of the kept tokens stays.  A sequence
 * whose tokens are all cached has nothing to run: append one before its
 * next step (a drafter rewinds its copy of a sequence this way). */
int  eng_seq_truncate(eng_engine *e, int seq, int n, eng_err *err);
/* Tokens of seq whose KV entries are cached; -1 for an unknown id. */
int  eng_seq_n_cached(const eng_engine *e, int seq);
/* Host logits of seq's last row at every step (on CUDA they are copied only
 * when asked for; the CPU has them anyway), without keep_all_logits' rows
 * for every position. */
int  eng_seq_want_logits(eng_engine *e, int seq, int on);
/* A paused sequence is left out of eng_step (waiting on a tool, a slow
 * client, or finished but kept for its KV blocks). */
int  eng_seq_pause(eng_engine *e, int seq, int paused);
/* Keep logits of every processed position in the next step (tests). */
int  eng_seq_keep_all_logits(eng_engine *e, int seq, int on);

/* One batched step: every live sequence processes its pending tokens and
 * samples one new token (one or more with speculative decoding, see
 * eng_seq_spec_set).  Returns ENG_OK or an error (e.g. ENG_EFULL). */
int  eng_step(eng_engine *e, eng_err *err);

/* Reading state. */
int  eng_seq_last(const eng_engine *e, int seq, eng_token *out);   /* last of the new tokens */
/* Tokens the last eng_step appended to seq: n = 1 without speculation,
 * 1..k+1 with it, 0 when seq sat out the step.  ids point into the
 * sequence's tokens and toks to an engine array; both stay valid until seq
 * next changes (step, append, removal). */
int  eng_seq_new_tokens(const eng_engine *e, int seq, const int **ids, int *n);
int  eng_seq_new_info(const eng_engine *e, int seq, const eng_token **toks, int *n);
int  eng_seq_tokens(const eng_engine *e, int seq, const int **ids, int *n); /* prompt + generated */
int  eng_seq_n_prompt(const eng_engine *e, int seq);
/* Logits of the last step: rows = 1, or every processed position when
 * keep_all_logits was on; after a speculative step one row per new token
 * (row i: the distribution new token i was chosen from).  Valid until the
 * next step.  On the CPU backend
 * they are always there; on CUDA only for sequences with keep_all_logits
 * (copying a vocabulary-sized row per sequence per step costs time);
 * otherwise NULL with rows = 0. */
const float *eng_seq_logits(const eng_engine *e, int seq, int *rows);
int  eng_n_live(const eng_engine *e);
/* Tokens the last eng_step appended over all sequences: one per sequence
 * that took part, accepted drafts included; 0 when it ran nothing. */
int  eng_step_tokens(const eng_engine *e);
int  eng_kv_free_blocks(const eng_engine *e);
/* The engine's KV format (ENG_KV_*) and the bytes one token's keys and
 * values take in it over all layers. */
int  eng_kv_format(const eng_engine *e);
int  eng_act(const eng_engine *e);   /* ENG_ACT_F32, _Q16 or _BF16: what its passes take */
/* 1 when the engine's decode passes read the model file's quantized blocks
 * (eng_opts.quant on the CUDA backend, a file that has them), 2 when the
 * device holds the blocks alone (ENG_QUANT_LEAN), else 0. */
int  eng_quantized(const eng_engine *e);
size_t eng_kv_bytes_per_token(const eng_engine *e);
/* What an engine runs on, in words, into buf (the one description the
 * commands print): "CPU" or "CUDA" (with its ranks), "KV f32, N
 * bytes/token", the weights its passes read, the activations its products
 * take (eng_act: AUTO resolved).  Returns snprintf's count. */
int  eng_describe(const eng_engine *e, char *buf, size_t n);
/* KV blocks that hold n tokens of one sequence (the engine's block size). */
int  eng_blocks_for(const eng_engine *e, int n);
const eng_model *eng_engine_model(const eng_engine *e);

/* ------------------------------------------------- speculative decoding */
/* A sequence with speculation on gets k draft tokens proposed before each
 * step; the step runs its pending token(s) and the k drafts through the
 * model in one pass (k + 1 output rows), keeps the drafts the model agrees
 * with and adds one token of its own, so a step appends 1..k+1 tokens
 * (eng_seq_new_tokens).  Rejected drafts leave nothing behind: the
 * sequence's KV length and block table shrink back to what it keeps.
 *
 * Lossless.  Greedy (temperature <= 0): draft i is kept while it equals the
 * model's argmax, so the output is token for token that of a plain run.
 * Sampling: draft x is kept with probability min(1, p(x)/q(x)), p the
 * model's distribution after temperature, top-k and top-p exactly as
 * eng_sample applies them (eng_spec_probs), q the drafter's (a point mass
 * for n-gram and custom drafters); the first rejected position draws from
 * max(0, p - q) renormalised, and when all k are kept a bonus token is drawn
 * from p.  Outputs then follow the model's distribution, but they are other
 * draws than a plain run with the same seed makes.
 *
 * Drafters: ENG_SPEC_NGRAM matches the last n tokens (n = ngram_n .. 1,
 * longest first, latest match) against the sequence's earlier text (prompt
 * included) and proposes what followed; ENG_SPEC_DRAFT runs a small model
 * with the same vocabulary in a second engine the first one owns (one
 * draft model per engine; its sequences follow the target's, batched);
 * ENG_SPEC_CUSTOM calls `propose` (tests, scripted drafters).
 *
 * Adaptive k: each sequence keeps an estimate of how often a draft token
 * is accepted (alpha; a mean of the first drafts, then an EWMA).  Each step
 * the engine hands out draft slots in order of expected gain (the j-th
 * draft is used with chance alpha^j), as many as give the most expected
 * tokens per second of step time, with step time a function of rows
 * measured by the engine (or set with eng_spec_set_cost), draft-model
 * passes included, and only when that promises a margin over not
 * speculating.  So k grows while drafts are accepted and falls to 0 when
 * they are not; a sequence at 0 probes with k = 1 now and then, less often
 * while probes fail, only where drafts always right would pay and within a
 * small share of the step time (a draft model's probe first catches its
 * sequence up); and speculation switches itself off when the batch is large
 * enough that extra rows cost more than they return.  With measured costs,
 * a step without adaptive drafts runs when the plain batch's row count was
 * never timed, and regularly after, so that the cost of not speculating
 * stays known.  The constants (margin, probe spacing and share, exploration
 * period) are at the top of spec.c.
 *
 * Left out of speculation for a step: sequences with forced tokens pending
 * (eng_seq_force), with keep_all_logits on, paused, or at the end of the
 * context.  When free KV blocks do not cover every draft, k shrinks (the
 * largest first) before a step fails with ENG_EFULL.  Tokens after an end
 * of sequence within one step's new tokens are the caller's to drop. */
enum { ENG_SPEC_OFF = 0, ENG_SPEC_NGRAM, ENG_SPEC_DRAFT, ENG_SPEC_CUSTOM };
enum { ENG_SPEC_KMAX = 32 };   /* largest k */

/* Custom drafter: up to k proposed next tokens after tokens[0..n) of seq
 * into out; returns how many (0..k). */
typedef int (*eng_spec_propose_fn)(void *user, int seq, const int *tokens, int n, int k,
                                   int *out);

typedef struct eng_spec_opts {
    int mode;            /* ENG_SPEC_* */
    int k;               /* drafts per step when not adaptive (0: 4) */
    int adaptive;        /* choose k per step in [0, kmax] */
    int kmax;            /* adaptive bound (0: max(k, 8)) */
    int ngram_n;         /* NGRAM: longest suffix matched (0: 3) */
    eng_model *draft_model;   /* DRAFT: vocabulary as the target's; borrowed */
    int draft_n_blocks;  /* DRAFT: KV pool of the draft engine when it is made (0: sized as
                          * the target's was: its n_blocks, or the default for the draft model) */
    int draft_n_threads; /* DRAFT, CPU: threads of the draft engine (0: the target's).  The
                          * engines run in turn, each with its own thread pool; on few cores
                          * 1 keeps them from competing (and from waking a sleeping pool) */
    eng_spec_propose_fn propose;   /* CUSTOM */
    void *user;
} eng_spec_opts;

/* Turns speculation on for seq (o == NULL or mode OFF: off).  A fork of seq
 * inherits it, with fresh statistics. */
int  eng_seq_spec_set(eng_engine *e, int seq, const eng_spec_opts *o, eng_err *err);

typedef struct eng_spec_stats {
    int64_t steps;        /* steps that verified at least one draft */
    int64_t drafted;      /* draft tokens verified */
    int64_t accepted;     /* of them kept */
    int64_t emitted;      /* tokens those steps appended (accepted + one per step) */
    double accept_rate;   /* accepted / drafted */
    double mean_accepted; /* accepted / steps: kept drafts per verification */
    double alpha;         /* current acceptance estimate */
    int k;                /* drafts in the last step */
} eng_spec_stats;
int  eng_seq_spec_stats(const eng_engine *e, int seq, eng_spec_stats *out);

/* Step time model: seconds of a pass of R rows is base_s + row_s * R, and
 * of a draft-model pass draft_base_s + draft_row_s * R.  NULL (the start):
 * measured by the engines themselves, per power-of-two bucket of rows
 * (whole steps, drafting left out; robust to one-off spikes such as CUDA
 * graph captures). */
typedef struct eng_spec_cost { double base_s, row_s, draft_base_s, draft_row_s; } eng_spec_cost;
int  eng_spec_set_cost(eng_engine *e, const eng_spec_cost *c);
/* The model's estimate of one pass of `rows` rows, in seconds (< 0: nothing
 * measured yet). */
double eng_spec_step_cost(const eng_engine *e, int rows);

/* The distribution eng_sample draws from for these logits and settings:
 * probs[vocab], zero outside the top-k / top-p set, one-hot when greedy. */
int  eng_spec_probs(const float *logits, int vocab, const eng_sampling *s, float *probs);

#endif
