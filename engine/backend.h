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
    int n_ranks;             /* tensor-parallel ranks (1: unsplit) */
    /* Rank rank's counters; NULL when unsplit. */
    void (*rank_stats)(eng_backend *b, int rank, eng_tp_rank_stats *out);
};

/* Tensor parallelism, Megatron-style: each of n ranks holds a share of
 * every layer.  Query heads are split evenly (n must divide them); KV heads
 * too when n divides them, else each rank holds a replica of the one KV
 * head its query heads read (n a multiple of the KV heads).  q, k, v, gate
 * and up are split by output rows, o and down by input columns, whose
 * partial sums an all-reduce adds after attention and after the MLP; the
 * embedding and lm_head are split by vocabulary rows. */
typedef struct eng_tp_slice {
    int q0, nh;              /* query heads [q0, q0 + nh) */
    int k0, nkv;             /* KV heads [k0, k0 + nkv): those its query heads read */
    int i0, ni;              /* MLP columns [i0, i0 + ni) */
    int v0, nv;              /* vocabulary rows [v0, v0 + nv) */
} eng_tp_slice;
/* Rank rank's share of a model with config c over n ranks; ENG_EUNSUPPORTED
 * saying why when the model cannot be split n ways. */
int eng_tp_slice_of(const eng_config *c, int n, int rank, eng_tp_slice *out, eng_err *err);

/* Bytes of one stored K or V value in KV format f (ENG_KV_*). */
static inline size_t eng_kv_elem_bytes(int f) { return f == ENG_KV_BF16 ? 2 : 4; }

/* kv_format: ENG_KV_*, how the pool stores keys and values; act:
 * ENG_ACT_F32, ENG_ACT_Q16 or ENG_ACT_BF16, how the products' inputs are
 * rounded (eng.h; Q16: the caller has checked that every product is of
 * blocks). */
int eng_backend_cpu_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                           int act, int n_threads, eng_backend **out, eng_err *err);
/* The CPU backend split over n_ranks ranks, each a thread with its share
 * of the weights (read in place from the model's), its own KV pool of its
 * KV heads and n_threads / n_ranks threads for its products; all-reduces
 * add the ranks' parts in rank order, so results do not depend on timing. */
int eng_backend_split_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                             int n_ranks, int n_threads, eng_backend **out, eng_err *err);
#ifdef BRISK_CUDA
/* quant: 0 the dense copy alone, 1 a GGUF file's blocks beside it
 * (eng_cuda_opts.quant: the blocks in decode passes), 2 the blocks alone
 * (quant_wide 2; ENG_EUNSUPPORTED where not every product has blocks the
 * kernels take).  act as for the CPU backend (Q16: ENG_EUNSUPPORTED unless
 * quant is 1 or 2 and every product suits the kernels that round), or
 * ENG_ACT_AUTO: Q16 where it would not be refused, else F32. */
int eng_backend_cuda_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                            int act, int quant, eng_backend **out, eng_err *err);
/* How many KV blocks of block_size tokens fit in 90% of the GPU memory
 * left after the weights (quant as in create; one rank's share when split
 * over n_ranks GPUs) and ~3 GiB of working buffers: the engine caps its
 * default n_blocks on CUDA there. */
int eng_backend_cuda_max_blocks(const eng_model *m, int block_size, int kv_format, int n_ranks,
                                int quant, int *n_blocks, eng_err *err);
/* 1 when b is a CUDA backend whose decode passes read quantized blocks, 2
 * when it holds them alone (no dense copy), else 0. */
int eng_backend_cuda_quantized(const eng_backend *b);
/* ENG_ACT_F32, ENG_ACT_Q16 or ENG_ACT_BF16: what b's products take (AUTO resolved). */
int eng_backend_cuda_act(const eng_backend *b);
/* The CUDA backend split over n_ranks GPUs (rank r on device r) through
 * NCCL: the shares of eng_tp_slice_of, the whole embedding on every rank,
 * lm_head rows in equal vocabulary shares gathered before sampling; each
 * rank's pass on a thread of its own.  ENG_EUNSUPPORTED in a build without
 * NCCL. */
int eng_backend_cuda_tp_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                               int n_ranks, eng_backend **out, eng_err *err);
#endif
#endif
