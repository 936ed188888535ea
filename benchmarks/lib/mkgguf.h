/* mkgguf.h — random-weight GGUF models of given shapes in ggml's quantized
 * block formats, for speed runs (`brisk mkmodel --format`) and for tests of
 * the quantized paths.  The weights are random block bytes with f16 scales
 * chosen so that each weight has a standard deviation near 1/sqrt(fan_in)
 * (activations stay finite through any depth); norms are near 1.  The
 * tokenizer is byte-level BPE without merges: the 256 byte tokens, then
 * <|endoftext|>, <|im_start|>, <|im_end|> (the end of a ChatML turn, also
 * the eos), then [PAD<id>] tokens up to the vocabulary size (>= 259).
 *
 * Formats (type per tensor; norms and biases are F32):
 *   q8_0    every matrix Q8_0.
 *   q4_0    every matrix Q4_0 but output.weight (token_embd when tied): Q6_K.
 *   q4_k_m  llama.cpp's Q4_K_M mix: output.weight (token_embd when tied)
 *           Q6_K; attn_v and ffn_down Q6_K in the layers llama.cpp gives
 *           more bits (i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2), Q4_K in
 *           the others; everything else Q4_K.  Rows whose length is not a
 *           multiple of 256 fall back as llama.cpp does: Q4_K to Q5_0,
 *           Q6_K to Q8_0. */
#ifndef MKGGUF_H
#define MKGGUF_H
#include <stddef.h>
#include <stdint.h>

typedef struct mkg_shape {
    const char *arch;   /* GGUF architecture: llama, qwen2, qwen3 or gemma3 */
    int vocab, hidden, inter, layers, heads, kv_heads;
    int head_dim;       /* 0: hidden / heads */
    int tied;           /* 1: no output.weight (the lm_head is token_embd) */
    int window;         /* gemma3: sliding window (0: every layer global) */
    double theta;       /* RoPE base */
} mkg_shape;

enum { MKG_Q8_0, MKG_Q4_0, MKG_Q4_K_M };

/* The format named name ("q8_0", "q4_0", "q4_k_m"), -1 if none. */
int mkg_format(const char *name);

/* Writes the model to path; 0, or -1 with a message in msg. */
int mkg_write(const char *path, const mkg_shape *s, int format, uint64_t seed, char *msg,
              size_t cap);

/* n random blocks of engine type dt (ENG_DT_Q8_0 .. ENG_DT_Q6_K) into out,
 * their weights with a standard deviation near sigma; 0, or -1 for a type
 * it does not make. */
int mkg_random_blocks(int dt, void *out, size_t n, float sigma, uint64_t *rng);

#endif
