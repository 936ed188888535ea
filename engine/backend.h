/* backend.h — what a compute backend (CPU reference, CUDA) does for the
 * engine: one forward pass over a batch of token rows whose keys and values
 * live in a paged pool of KV blocks.  The engine owns block tables, refcounts
 * and copy-on-write decisions; a backend owns the KV memory and the math. */
#ifndef ENG_BACKEND_H
#define ENG_BACKEND_H
#include "internal.h"

typedef struct eng_fwd_batch {
    int n_rows;                    /* token rows in this pass */
    const int *tokens;             /* [n_rows] token ids */
    const int *pos;                /* [n_rows] position of the row in its sequence */
    const int *row_seq;            /* [n_rows] index into the per-sequence arrays */
    int n_seqs;
    const int *seq_len;            /* [n_seqs] KV length once this pass is done */
    const int *const *block_table; /* [n_seqs] block ids covering seq_len tokens */
    /* Outputs: for each of n_out rows (indices into the batch), the backend
     * writes logits (if logits != NULL, [n_out][vocab], host memory) and/or
     * samples a token (if sampled != NULL) with samp[i] and rng[i]. */
    int n_out;
    const int *out_rows;
    float *logits;
    eng_token *sampled;
    const eng_sampling *samp;      /* [n_out] */
    uint64_t *rng;                 /* [n_out] advanced by sampling */
    /* [n_out] or NULL: an id >= 0 is the row's token whatever sampling draws
     * (teacher forcing); sampled[i] then holds it with its log-prob and the
     * entropy, and rng[i] advances as for a draw. */
    const int *force;
} eng_fwd_batch;

typedef struct eng_backend eng_backend;
struct eng_backend {
    void *ctx;
    int  (*forward)(eng_backend *b, const eng_fwd_batch *batch, eng_err *err);
    /* Copies every layer's K and V of block src into block dst (copy-on-write). */
    int  (*copy_block)(eng_backend *b, int src, int dst, eng_err *err);
    void (*destroy)(eng_backend *b);
};

/* Bytes of one stored K or V value in KV format f (ENG_KV_*). */
static inline size_t eng_kv_elem_bytes(int f) { return f == ENG_KV_BF16 ? 2 : 4; }

/* kv_format: ENG_KV_*, how the pool stores keys and values (eng.h). */
int eng_backend_cpu_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                           int n_threads, eng_backend **out, eng_err *err);
#ifdef BRISK_CUDA
int eng_backend_cuda_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                            eng_backend **out, eng_err *err);
/* How many KV blocks fit in the GPU's free memory beside the weights. */
int eng_backend_cuda_max_blocks(const eng_model *m, int block_size, int kv_format, int *n_blocks,
                                eng_err *err);
#endif
#endif
