/* gguf.h — GGUF file reader (engine-internal).  A GGUF file is a header
 * (magic "GGUF", version, tensor and metadata counts), typed key/value
 * metadata, tensor infos (name, dims, type, offset), then the aligned tensor
 * data.  eng_gguf_open maps the file read-only and checks every field before
 * anything is handed out, so later reads never leave the mapping.
 *
 * Tensors are presented like safetensors ones: shape outermost first
 * (GGUF's ne[] reversed, so token_embd is [vocab][hidden]), data pointing
 * into the mapping, nbytes the stored bytes (quantized blocks included). */
#ifndef ENG_GGUF_H
#define ENG_GGUF_H
#include "internal.h"

typedef struct eng_gguf eng_gguf;

/* Metadata value types, numbered as in the file. */
enum { ENG_GGUF_U8 = 0, ENG_GGUF_I8, ENG_GGUF_U16, ENG_GGUF_I16, ENG_GGUF_U32, ENG_GGUF_I32,
       ENG_GGUF_F32, ENG_GGUF_BOOL, ENG_GGUF_STR, ENG_GGUF_ARR, ENG_GGUF_U64, ENG_GGUF_I64,
       ENG_GGUF_F64 };

/* Opens and validates path (GGUF v2 or v3, little-endian).  Errors name the
 * file and, where there is one, the key or tensor: ENG_EIO (cannot open or
 * map), ENG_EFORMAT (malformed), ENG_EUNSUPPORTED (valid but not handled:
 * version 1, a tensor type brisk cannot dequantize). */
int  eng_gguf_open(const char *path, eng_gguf **out, eng_err *err);
void eng_gguf_close(eng_gguf *g);
const char *eng_gguf_path(const eng_gguf *g);

/* Metadata by index.  eng_gguf_find gives the index of key, -1 if absent;
 * eng_gguf_type gives its ENG_GGUF_* type (-1 for a bad index); for arrays
 * eng_gguf_arr_type / eng_gguf_arr_len give the element type and count
 * (-1 / 0 when kv is not an array). */
int  eng_gguf_find(const eng_gguf *g, const char *key);
int  eng_gguf_type(const eng_gguf *g, int kv);
int  eng_gguf_arr_type(const eng_gguf *g, int kv);
uint64_t eng_gguf_arr_len(const eng_gguf *g, int kv);

/* Typed getters by key.  Absent key: ENG_EFORMAT "<file>: missing metadata
 * <key>" when required, else *out is left alone and ENG_OK returned.  Wrong
 * type or a value out of range: ENG_EFORMAT naming file and key.
 * get_int takes any integer type or bool; get_float f32/f64 or an integer;
 * get_str's string points into the mapping and is not NUL-terminated. */
int  eng_gguf_get_int(const eng_gguf *g, const char *key, int required, int64_t *out, eng_err *err);
int  eng_gguf_get_float(const eng_gguf *g, const char *key, int required, double *out, eng_err *err);
int  eng_gguf_get_str(const eng_gguf *g, const char *key, int required, const char **s, size_t *len,
                      eng_err *err);

/* Element i of array kv, O(1) (string arrays are indexed at open).  ENG_OK,
 * ENG_EINVAL for a bad kv or i, ENG_EFORMAT when the element type does not
 * fit (arr_int: integers and bool; arr_float: floats and integers). */
int  eng_gguf_arr_str(const eng_gguf *g, int kv, uint64_t i, const char **s, size_t *len);
int  eng_gguf_arr_int(const eng_gguf *g, int kv, uint64_t i, int64_t *out);
int  eng_gguf_arr_float(const eng_gguf *g, int kv, uint64_t i, double *out);

/* Tensors in file order; find is by exact name (NULL if absent). */
int  eng_gguf_n_tensors(const eng_gguf *g);
const eng_tensor *eng_gguf_tensor(const eng_gguf *g, int i);
const eng_tensor *eng_gguf_find_tensor(const eng_gguf *g, const char *name);

/* model_gguf.c: the config a GGUF model's metadata gives (architectures
 * llama, qwen2, qwen3 and gemma3) and its RoPE bases as stored (global and
 * sliding layers) with the global layers' linear scaling factor (1: none).
 * The eos ids are the file's eos and eot tokens; eng_gguf_add_eot adds the
 * chat end-of-turn token once the tokenizer and chat template are known. */
typedef struct eng_gguf_rope { double theta, local_theta, linear_factor; } eng_gguf_rope;
int  eng_gguf_config(const eng_gguf *g, eng_config *cfg, eng_gguf_rope *rope, eng_err *err);
void eng_gguf_add_eot(eng_config *cfg, const eng_tok *tok, const char *chat_template);

/* tok.c: the tokenizer a GGUF file carries (tokenizer.ggml.* metadata). */
int  eng_tok_load_gguf(const eng_gguf *g, eng_tok **out, eng_err *err);

#endif
