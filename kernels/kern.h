/* kern.h — brisk's CUDA backend (built with `make CUDA=1` only) and the
 * launchers of its kernels, which tests/test_cuda.c checks one by one.
 *
 * Precision (see kernels/NOTES.md): the residual stream, attention and
 * softmax are f32, the KV pool f32 or bf16 (eng_cuda_opts.kv_format);
 * weights stay bf16 when the checkpoint is bf16 and f32 otherwise (unless
 * bf16_weights), and a GGUF file's quantized blocks are kept as well for
 * the GEMV passes (kern_qgemv); the custom GEMV reads f32 activations;
 * cuBLASLt products split each activation into a bf16 high and low part
 * (two rows per row, one pass over the weights) unless fast_gemm is set.
 * Every function returns ENG_OK or an ENG_* code with a message in err; the
 * launchers return a cudaError_t (0 = success). */
#ifndef KERN_H
#define KERN_H
#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>
#ifdef __cplusplus
extern "C" {
#endif
#include "backend.h"

/* ------------------------------------------------------------- backend */
typedef struct eng_cuda_opts {
    int bf16_weights;   /* 1: convert f32/f16 checkpoints to bf16 as well */
    int fast_gemm;      /* 1: cuBLASLt takes bf16-rounded activations (no hi/lo split) */
    int gemv_max_rows;  /* passes of up to this many rows (0..8) use the GEMV kernel; default 4 */
    int skinny_max_rows;/* passes of more rows, up to this many (0..64), take kern_skinny for
                           their products (bf16 weights, split activations; from 17 rows only
                           products of up to 4 MB); default 64 */
    int no_graphs;      /* 1: launch kernels directly, never replay CUDA graphs */
    int no_pdl;         /* 1: no programmatic dependent launch between kernels */
    int unfused_rope;   /* 1: GEMV passes run RoPE + KV write as a kernel of its own */
    int attn_variant;   /* 1-5: kern_attention{,2,3,4,5} for every pass; 0: BRISK_ATTN, else
                           chosen per pass by rows and context */
    int attn_span;      /* variant 2-5's positions per block before splitting (variant 5:
                           also its block's width, kern_attention5); 0: default */
    int prefill_attn;   /* KERN_PF_*: when prompt passes take kern_attention_prefill */
    int gemm_attn;      /* < 0: never kern_attention_gemm; 0: for long prompts of one sequence */
    int kv_format;      /* ENG_KV_F32 or ENG_KV_BF16: how the KV pool stores keys and values
                           (fixed at creation, as bf16_weights) */
    int act;            /* ENG_ACT_F32 (the default), ENG_ACT_Q16, ENG_ACT_BF16 or ENG_ACT_AUTO
                           (Q16 where it would not be refused, else F32; eng.h).  Q16: the
                           products' inputs rounded per 16 elements, in passes of 1 or 2 rows
                           by kern_qgemv as it stages them, in wider ones by the kernels that
                           write them (KERN_ACT_Q16, attention's included); needs quant, a
                           head size that is a multiple of 16 and every product's blocks
                           in shapes kern_qgemv takes at one row.  BF16: passes of up to
                           4 rows take kern_gemv rounding its inputs (KERN_GEMV_IN_BF16),
                           wider ones kern_skinny on bf16 inputs alone or cuBLASLt, whose
                           input writers round to bf16 (KERN_ACT_BF16, as fast_gemm);
                           needs bf16 weights and quant off.
                           Fixed at creation */
    int quant;          /* 1, the default: a GGUF file's quantized blocks are uploaded beside
                           the dense copy and decode passes read them (kern_qgemv up to
                           quant_max_rows rows, kern_qskinny up to quant_tc_rows), measured
                           faster than the dense copy at every batch they serve (NOTES.md
                           v18, v19); 0: every product reads the dense copy (no blocks
                           uploaded when 0 at create) */
    int quant_max_rows; /* quantized weights: passes of up to this many rows (0..8) take
                           kern_qgemv instead of gemv_max_rows' rule (with act Q16: up to
                           the rows kern_qgemv rounds for every product, 1 or 2); default 8 */
    int quant_tc_rows;  /* quantized weights: passes of 2..quant_tc_rows rows (0..256) take
                           kern_qskinny (tensor cores on the blocks; past 32 rows in groups
                           of 32) where every product's blocks suit it, and kern_qgemv keeps
                           one-row passes; 0: off; default 96 */
    int quant_tc_stage; /* 1: kern_qskinny stages the blocks in shared memory a chunk ahead
                           (stage 1 of kern_qskinny); 0: loads them into registers */
    int quant_wide;     /* 1, the default (read at create): where kern_qskinny serves every
                           decode product of an f32 dense copy (quant on, qs_ok), the layer
                           products' dense copy is kept as bf16 high and low halves (w = hi
                           + lo to 16 bits, the same bytes as f32) and passes wider than
                           quant_tc_rows (prompts, wide batches) run four bf16
                           tensor-core products (hi and lo weights by hi and lo
                           activations) instead of the f32 one, as bf16 weights' passes
                           split their activations; quant then stays on (the halves cannot
                           serve the one-row kernels); 0: the f32 copy; 2: no dense copy of
                           the layer products at all: each wide product first writes its
                           halves from the blocks into one scratch (kern_dequant_halves,
                           bit-identical), and no dense embedding (kern_embed_q from its
                           blocks where it has them) or lm_head (kern_qskinny in groups of
                           32 rows): about a seventh of the memory of 1 for Q4_K_M,
                           plus that kernel in every wide pass */
} eng_cuda_opts;

/* prefill_attn: 0 reads BRISK_PREFILL_ATTN (never | always), else auto:
 * passes of >= 4 rows per sequence with enough 16-row tiles to fill the GPU. */
enum { KERN_PF_DEFAULT = 0, KERN_PF_AUTO = 1, KERN_PF_NEVER = 2, KERN_PF_ALWAYS = 3 };

void eng_cuda_opts_default(eng_cuda_opts *o);
int  eng_backend_cuda_create_opts(const eng_model *m, int n_blocks, int block_size,
                                  const eng_cuda_opts *o, eng_backend **out, eng_err *err);

/* Changes the options of a live backend except bf16_weights and kv_format
 * (the weights and the pool stay as made); drops captured graphs.  quant
 * switches the quantized path off and on again, but not on where it was
 * off at creation (no blocks were uploaded), nor off where quant_wide took
 * (the dense copy is bf16 halves). */
int  eng_cuda_set_opts(eng_backend *b, const eng_cuda_opts *o);

/* Figures for benchmarks: weight bytes read by one decode step (every layer
 * plus the lm_head), KV bytes stored per token (all layers, K and V), the
 * device's name and multiprocessor count. */
typedef struct eng_cuda_info {
    size_t weight_bytes, kv_bytes_per_token;   /* the quantized bytes while quant is on */
    int quant;          /* 1: passes of up to quant_rows rows read the quantized blocks */
    int quant_rows;     /* (quant_tc_rows where kern_qskinny serves, else quant_max_rows) */
    size_t dense_weight_bytes;   /* the dense copy's bytes (what wider passes and quant = 0 read) */
    int weights_bf16, n_sms, graphs;
    int kv_format;      /* ENG_KV_*: the pool's format, which kv_bytes_per_token follows */
    int act;            /* ENG_ACT_F32, _Q16 or _BF16 (ENG_ACT_AUTO resolved at creation) */
    int attn_variant;   /* as set in eng_cuda_opts: 0 = per pass (2-5 by rows, context and pool) */
    int n_ranks;        /* 1, or the GPUs of a split (eng_backend_cuda_tp_create) */
    int quant_wide;     /* 1: the dense copy is bf16 halves (eng_cuda_opts.quant_wide took);
                           2: the halves are made per wide product, no dense layer copy */
    size_t weights_held;   /* device memory the weights take: blocks, dense copies, scratch */
    char device[128];
} eng_cuda_info;
/* Rank 0's figures; for a split, every byte count is that rank's share (its
 * weights: its heads and MLP columns, the whole embedding, its lm_head rows;
 * its KV heads). */
int eng_cuda_get_info(const eng_backend *b, eng_cuda_info *info);
/* The same for rank 0 .. n_ranks - 1 (ENG_EINVAL past the last). */
int eng_cuda_get_rank_info(const eng_backend *b, int rank, eng_cuda_info *info);

/* Benchmarks only (bench_cuda --ablate): every pass from now on leaves the
 * KERN_SKIP_* stages in mask out, so the time of the rest can be measured;
 * the outputs are wrong while mask != 0, and 0 restores the whole model.
 * Drops captured graphs.  Kept out of eng_cuda_opts so that nothing that
 * serves or tests a model can set it. */
enum { KERN_SKIP_ATTN = 1, KERN_SKIP_ROPE = 2, KERN_SKIP_QKVO = 4, KERN_SKIP_FFN = 8,
       KERN_SKIP_HEAD = 16 };
int eng_cuda_bench_skip(eng_backend *b, int mask);

/* ------------------------------------------------------ kernel launchers */
enum { KERN_F32 = 0, KERN_BF16 = 1 };                       /* weight storage */
enum { KERN_ACT_F32 = 0, KERN_ACT_BF16 = 1, KERN_ACT_SPLIT = 2 }; /* GEMM input */
/* Added to a layout for kern_add_norm, kern_gather_norm, kern_to_act,
 * kern_swiglu and the attention kernels: the rows are rounded as
 * ENG_ACT_Q16 (eng.h) on the way out (widths, and attention's head size, a
 * multiple of 16). */
#define KERN_ACT_Q16 4
enum { KERN_STORE = 0, KERN_RESID = 1, KERN_SWIGLU = 2, KERN_ROPE = 3, KERN_GEGLU = 4 }; /* GEMV epilogue */
/* Every launcher's last argument, pdl, launches the kernel with
 * programmatic dependent launch (see kern_common.cuh). */

/* One pass's inputs as they lie in device memory; the pointers point into
 * the same device buffer.  Kernels read it at run time, so a captured graph
 * serves every pass of the same padded shape. */
typedef struct kern_step {
    int n_rows, n_out, table_stride, pad_;
    const int *tokens, *pos, *row_seq;   /* [n_rows] */
    const int *table;                    /* [n_seqs][table_stride] block ids */
    const int *out_rows, *top_k;         /* [n_out] */
    const float *temp, *top_p;           /* [n_out] */
    const double *u;                     /* [n_out] uniform draw in [0,1) */
    const int *force;                    /* [n_out] or NULL: id >= 0 is scored, not drawn */
} kern_step;

/* Paged KV pool of one layer: block b's keys of kv head h, slot s, lie at
 * element base + b*blk_stride + (h*block_size + s)*head_dim; values
 * n_kv*block_size*head_dim elements further.  Elements are dtype: KERN_F32
 * (f32) or KERN_BF16 (bf16, written rounded to nearest even; every kernel
 * that reads them computes in f32).  window > 0 (a sliding-window layer): a
 * row at position p attends to positions p - window + 1 .. p only;
 * kern_attention is the one attention kernel that takes it (the others
 * refuse it). */
typedef struct kern_kv {
    void *base;
    long long blk_stride;
    int n_kv, head_dim, block_size, window;
    int dtype;
} kern_kv;

/* y[r][n] (mode STORE), y[r][n] += (RESID) or, with W = [gate; up] of
 * N = 2*I rows, y[r][i] = silu(gate_i.x_r) * (up_i.x_r) (SWIGLU; GEGLU:
 * tanh-approximated GELU instead of silu); R <= 8 rows of x, each of K
 * floats; with norm_w, x is RMS-normalised first.  wdt: KERN_F32 or
 * KERN_BF16, plus KERN_GEMV_IN_BF16 (bf16 weights, R <= 4; ENG_ACT_BF16):
 * each input element, normalised, is rounded to bf16 before the product,
 * and a GLU's output (the down product's input) to bf16 as it is written. */
#define KERN_GEMV_IN_BF16 8
int kern_gemv(cudaStream_t s, const void *W, int wdt, int N, int K, const float *x, int R,
              const float *norm_w, float eps, int mode, float *y, int n_sms, int pdl);
/* The q/k/v product with kern_rope_kv's work as its epilogue: W is the
 * [(n_heads + 2*n_kv) * hd][K] q/k/v weight; RoPE'd q goes to q, k and v to
 * the pool at each row's position (head_dim a multiple of 4); wdt as
 * kern_gemv's. */
int kern_gemv_qkv(cudaStream_t s, const void *W, int wdt, int K, const float *x, int R,
                  const float *norm_w, float eps, const float *bias, const kern_step *st,
                  int n_heads, const float *inv_freq, float *q, kern_kv kv, int n_sms, int pdl);
/* Quantized weights (ggml block formats): N rows of K elements in up to
 * KERN_QSEGS row segments, so that a fused weight (q|k|v, gate|up) may mix
 * types (Q4_K_M files keep some attn_v in Q6_K).  Segment i holds rows
 * [end[i-1], end[i]) (end[-1] = 0) at w[i], each row in row_bytes =
 * kern_qrow_bytes(type, K) bytes of the device layout kern_qpack_row
 * writes: the GGUF blocks as stored, except that Q6_K blocks are padded
 * to 224 bytes and a Q8_0 row keeps its 32-byte quant runs apart from its
 * scales (so every lane loads 16 aligned bytes); types ENG_DT_Q8_0 ..
 * ENG_DT_Q6_K; segments start at 16-byte aligned addresses. */
enum { KERN_QSEGS = 3 };
typedef struct kern_qw {
    const void *w[KERN_QSEGS];
    int type[KERN_QSEGS];
    int end[KERN_QSEGS];
    int row_bytes[KERN_QSEGS];
    int n_seg;
    /* 1: the product's input is rounded as ENG_ACT_Q16 (eng.h) first, by
     * kern_qgemv at 1 or 2 rows, as it stages the input (other paths take
     * inputs rounded by the kernels that wrote them) */
    int q16;
} kern_qw;
/* Whether the GEMV kernels take this block type. */
int kern_qtype_ok(int type);
/* Bytes of one row of K elements of type in the device layout (0: type
 * not taken or K not whole blocks). */
size_t kern_qrow_bytes(int type, int K);
/* One row of K elements from the GGUF layout (src) to the device layout
 * (dst, kern_qrow_bytes(type, K) bytes; padding zeroed). */
void kern_qpack_row(int type, const void *src, int K, void *dst);
/* kern_gemv and kern_gemv_qkv over quantized weights (K a multiple of 32,
 * of 256 for the K types): every block byte is read once and decoded once
 * in registers for all R <= 8 rows; the elements of one scale a and offset
 * b add a * sum(q x) + b * sum(x) in f32 (within ~1e-7 relative of the
 * product of engine/quant.c's dequantized f32 weights; tests: 1e-5).  One
 * row (R = 1, K a multiple of 64, every unit of four rows of one type), and
 * with W->q16 1 or 2 rows, take a kernel of their own (kern_gemv.cu:
 * qgemv1_kernel). */
/* Whether kern_qgemv takes W at R rows with W->q16 set (glu: a SwiGLU or
 * GeGLU product): R 1 or 2, each row's rounded input staged in shared
 * memory (2.5 K bytes a row for one block order). */
int kern_qgemv_q16_ok(const kern_qw *W, int N, int K, int glu, int R);
int kern_qgemv(cudaStream_t s, const kern_qw *W, int N, int K, const float *x, int R,
               const float *norm_w, float eps, int mode, float *y, int n_sms, int pdl);
int kern_qgemv_qkv(cudaStream_t s, const kern_qw *W, int K, const float *x, int R,
                   const float *norm_w, float eps, const float *bias, const kern_step *st,
                   int n_heads, const float *inv_freq, float *q, kern_kv kv, int n_sms, int pdl);
/* Y = W x for R = 1..64 rows of act (halves: [2R][K] bf16, high rows then
 * low rows, KERN_ACT_SPLIT; else [R][K] bf16, KERN_ACT_BF16; W bf16 [N][K],
 * K a multiple of 32) on tensor cores, written as `parts` partial products
 * over slices of K: Y[p][r][n], p < parts, for the consumer to add in
 * order.  kern_skinny_parts gives the parts for a shape (0 when it needs
 * more than max_parts or the shape does not fit). */
int kern_skinny_parts(int N, int K, int R, int halves, int n_sms, int max_parts);
int kern_skinny(cudaStream_t s, const void *W, int N, int K, const void *act, int R, int halves,
                int parts, float *Y, int n_sms, int pdl);
/* Y = W act for R = 1..256 rows of act ([2R][K] bf16: high rows, then low
 * rows, as kern_skinny; more than 32 in groups of 32) with W quantized (kern_qw; kern_qtype_ok types, K a
 * multiple of 32, of 256 where a segment is of a K format, segment ends
 * multiples of 16) on tensor cores, the blocks decoded exactly: written as
 * `parts` partial products over slices of K, Y[p][r][n], for the consumer
 * to add in order.  stage 1 (where K is a multiple of 256): each warp's
 * blocks are copied into shared memory a chunk ahead, with the
 * activations, instead of loaded into registers at the chunk's start.
 * kern_qskinny_ok: whether W's shape and segments suit it;
 * kern_qskinny_parts: the parts for a shape (at most max_parts; 0: not
 * taken). */
int kern_qskinny_ok(const kern_qw *W, int N, int K);
int kern_qskinny_parts(const kern_qw *W, int N, int K, int R, int n_sms, int max_parts);
int kern_qskinny(cudaStream_t s, const kern_qw *W, int N, int K, const void *act, int R, int parts,
                 float *Y, int n_sms, int pdl, int stage);
/* out = the bf16 halves of quantized W (N rows of K): hi = bf16(w) at
 * out[n K + k], lo = bf16(w - hi) at out[N K + n K + k], w bit-identical to
 * the CPU's dequantized value (engine/quant_block.h). */
int kern_dequant_halves(cudaStream_t s, const kern_qw *W, int N, int K, uint16_t *out);
/* x[r] = embedding row of the row's token times scale (1 but Gemma's). */
int kern_embed(cudaStream_t s, const void *E, int wdt, int H, const kern_step *st, int R,
               float scale, float *x, int pdl);
/* kern_embed from the quantized embedding E (V rows of H), each value the
 * CPU's dequantized one (engine/quant_block.h) times scale. */
int kern_embed_q(cudaStream_t s, const kern_qw *E, int V, int H, const kern_step *st, int R,
                 float scale, float *x, int pdl);
/* x += y when y != NULL, y being `parts` arrays of [R][H] one after the
 * other (a product's parts: cuBLASLt's high and low halves, kern_skinny's K
 * slices), added in order; with post_w, the summed y is RMS-normalised with
 * post_w before it is added (Gemma's norms of the block outputs); then, when
 * norm_w != NULL, act = norm(x) in act_mode ([R][H] f32 or bf16, or [2R][H]
 * bf16 high rows then low rows).  y may be overwritten. */
int kern_add_norm(cudaStream_t s, float *x, const float *y, int parts, int R, int H,
                  const float *post_w, const float *norm_w, float eps, void *act, int act_mode,
                  int pdl);
/* act[o] = norm(x[out_rows[o]]) for o < O. */
int kern_gather_norm(cudaStream_t s, const float *x, const kern_step *st, int O, int H,
                     const float *norm_w, float eps, void *act, int act_mode, int pdl);
/* R f32 rows of K elements into act in act_mode's layout (with
 * KERN_ACT_Q16: K a multiple of 16); act may be in when act_mode is
 * KERN_ACT_F32 (| KERN_ACT_Q16: rounding in place). */
int kern_to_act(cudaStream_t s, const float *in, int R, int K, void *act, int act_mode, int pdl);
/* act[r][i] = silu(g) * u (gelu: tanh-approximated GELU instead of silu)
 * with g = y[r][i], u = y[r][I+i], each summed over y's parts ([R][2I]
 * each). */
int kern_swiglu(cudaStream_t s, const float *y, int parts, int R, int I, int gelu, void *act,
                int act_mode, int pdl);
/* qkv rows ([R][(nh+2*nkv)*hd], summed over parts, plus bias) -> RoPE'd q
 * [R][nh*hd], RoPE'd k and v written into the pool at each row's position.
 * With q_norm / k_norm ([hd] each, both or neither), each q and k head is
 * RMS-normalised (eps) before RoPE (Qwen3, Gemma 3); q is then multiplied
 * by q_scale (1: unchanged), which lets a model scale scores other than by
 * the attention kernels' 1/sqrt(hd). */
int kern_rope_kv(cudaStream_t s, const float *qkv, int parts, const float *bias,
                 const kern_step *st, int R, int n_heads, const float *inv_freq,
                 const float *q_norm, const float *k_norm, float eps, float q_scale, float *q,
                 kern_kv kv, int pdl);
/* Row r attends to positions 0..pos[r] of its sequence (the last
 * kv.window of them when kv.window > 0); splits > 1 splits
 * the positions over that many blocks (flash-decoding): each writes partial
 * sums to part ([R][splits][nh][hd+2] floats) and the last block of a (row,
 * kv head) to finish, counted in counters ([R][n_kv], zero before and
 * after), merges them.  The result goes to out ([R][nh*hd] f32) or, when
 * act != NULL, to act in act_mode (the input of a cuBLASLt product). */
int kern_attention(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st, int R,
                   int n_heads, int splits, float *out, void *act, int act_mode, float *part,
                   unsigned *counters, int pdl);
int kern_attn_splits(int R, int n_kv, int n_sms);
/* The most splits a decode attention launch of R rows may take: the
 * partial-sum buffer (kern_attn_part_floats) is sized for it.  Variants 4
 * and 5 fill one wave of their blocks (up to 4 a multiprocessor), which at
 * a few rows is more than kern_attn_splits. */
int kern_attn_split_cap(int R, int n_kv, int n_sms);
/* The splits a launch of variant 2 or 3 needs when no row has more than
 * max_len positions: a power of two (so few graph shapes), at most splits
 * (and, for variant 2 at 4-16 rows, one wave of blocks over n_sms).  Blocks
 * past a row's splits return at once, but each still takes a slot on a
 * multiprocessor. */
int kern_attn_grid_splits(int variant, int R, int splits, int span, int max_len, int n_heads,
                          int n_sms);
/* Variant 2 (kern_attn2.cu; the backend's default): same contract and
 * buffers as kern_attention, tuned for decode latency; a row's context is
 * split over blocks only past span positions (span < 1: default 128).
 * head_dim other than 16/32/64/128 or more than 8 heads per kv head fall
 * back to kern_attention. */
int kern_attention2(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st, int R,
                    int n_heads, int splits, int span, float *out, void *act, int act_mode,
                    float *part, unsigned *counters, int pdl);
/* Variant 3 (kern_attn2.cu): same contract, a lane per position and a warp
 * per query head and 32 positions, over K/V chunks copied to shared memory
 * at once (for 9 rows and more, or fewer rows with long contexts); span < 1:
 * default 128 (256 from 17 rows).  head_dim 32/64/128 and up to 8 query
 * heads per kv head, else variant 2. */
int kern_attention3(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st, int R,
                    int n_heads, int splits, int span, float *out, void *act, int act_mode,
                    float *part, unsigned *counters, int pdl);
/* Variant 4 (kern_attn2.cu): variant 3's kernel with two chunk buffers, the
 * next chunk's K/V rows copied while the current one is computed, for
 * contexts long enough that a block walks several chunks; span < 1:
 * default 64 (a chunk; a row splits only past it).  Its splits come from
 * kern_attn4_splits: as many as fill one wave of blocks; 0 for heads variant 4
 * does not serve (kern_attention4 hands those to kern_attention2: take its
 * splits from kern_attn_grid_splits(2, ...)). */
int kern_attention4(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st, int R,
                    int n_heads, int splits, int span, float *out, void *act, int act_mode,
                    float *part, unsigned *counters, int pdl);
int kern_attn4_splits(int R, kern_kv kv, int n_heads, int span, int max_len, int n_sms);
/* Variant 5 (kern_attn2.cu): variant 4's pipeline over a bf16 pool with
 * q k and p v on tensor cores (q and p in three bf16 parts each, so the
 * products are exact and only the f32 sums' order differs); 16 positions
 * a warp; span < 1: 8 warps a block (chunks of 128 positions, two
 * buffers), span <= 32: 2 warps, below 96: 4 (three buffers each), below
 * 128: 6 (two buffers), else 8.  Other pools
 * and heads: kern_attention4.  Its splits: kern_attn5_splits (one wave of
 * its blocks; kern_attn4_splits' where it hands over). */
int kern_attention5(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st, int R,
                    int n_heads, int splits, int span, float *out, void *act, int act_mode,
                    float *part, unsigned *counters, int pdl);
int kern_attn5_splits(int R, kern_kv kv, int n_heads, int span, int max_len, int n_sms);
/* 1 where variant 4 should replace variant 3 for R rows of at most max_len
 * positions: 2 to 64 rows, when variant 3's blocks would walk more than
 * one chunk each (span: variant 3's, as in eng_cuda_opts).  One row keeps
 * variant 3 (its 64 splits; variant 4 measured slower at 4,000 positions). */
int kern_attn_long(int R, kern_kv kv, int n_heads, int span, int max_len, int n_sms);
/* 1 where variant 5 should replace variant 4 (kern_attn_long said 1): a
 * bf16 pool, heads it takes, 8 to 64 rows (measured there, NOTES.md v27). */
int kern_attn5_takes(int R, kern_kv kv, int n_heads);
/* Prompt passes (kern_attn_pf.cu): same semantics as kern_attention for
 * any rows, in tiles of 16 rows so that consecutive rows of one sequence
 * share each K/V load; head_dim 16/32/64/128, at most 8 query heads per kv
 * head. */
enum { KERN_PF_TILE = 16 };
int kern_attention_prefill(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st, int R,
                           int n_heads, float *out, void *act, int act_mode, int pdl);
/* Whether kern_attention_prefill takes this head layout. */
int kern_attention_prefill_fits(int n_heads, int n_kv, int head_dim);
size_t kern_attn_part_floats(int R, int n_heads, int head_dim, int splits);
/* For each out row o: log-softmax, entropy, greedy argmax (lowest id on
 * ties) or temperature / top-k / top-p sampling with u[o].  logits rows are
 * [O][V] (+ lo rows when lo != NULL).  The first pass is spread over
 * `blocks` blocks per row. */
int kern_sample(cudaStream_t s, const float *logits, const float *lo, int O, int V,
                const kern_step *st, int *ids, float *logprob, float *entropy, int blocks,
                float *scratch, unsigned *counters, int pdl);
/* Blocks per row for kern_sample's first pass; scratch holds [O][blocks]
 * float4 and counters [O] unsigned (zero before and after). */
int kern_sample_blocks(int O, int n_sms);
int kern_add_rows(cudaStream_t s, float *y, const float *lo, size_t n, int pdl);

/* cuBLASLt products Y[n][N] (f32) = act[n][K] . W[N][K]^T. */
typedef struct kern_blas kern_blas;
int  kern_blas_create(kern_blas **out, eng_err *err);
void kern_blas_destroy(kern_blas *b);
int  kern_blas_gemm(kern_blas *b, cudaStream_t s, const void *W, int wdt, int N, int K,
                    const void *act, int act_is_bf16, int n, float *Y, eng_err *err);
/* K splits of cuBLASLt's plan for that product (1: none; its split-K plans
 * end with a reduce kernel), 0 with err set on failure. */
int  kern_blas_splits(kern_blas *b, int wdt, int N, int K, int act_is_bf16, int n, eng_err *err);
/* The same product in `slices` K slices (K % (8 slices) == 0), one strided
 * batch without cuBLASLt's split-K: Y[s][n][N] is slice s's partial product,
 * for the consumer to add in order. */
int  kern_blas_gemm_sliced(kern_blas *b, cudaStream_t s, const void *W, int wdt, int N, int K,
                           const void *act, int act_is_bf16, int n, int slices, float *Y,
                           eng_err *err);

/* Column-major C_i = op(A_i) . B_i, i < batch, operands i at A + i*sA etc.
 * (stride 0 repeats one matrix), f32 throughout; op(A) = A^T if trans_a. */
int  kern_blas_sgemm_batched(kern_blas *b, cudaStream_t s, int trans_a, int M, int N, int K,
                             const float *A, int lda, long long sA, const float *B, int ldb,
                             long long sB, float *C, int ldc, long long sC, int batch,
                             eng_err *err);

/* The keys of a pass for kern_attention_gemm: its sequences' distinct KV
 * blocks (device arrays).  Key u is slot u % block_size of block[u /
 * block_size]; slots from valid[] on are read as zero; index[s * n_blocks +
 * i] is block i's place in sequence s's table (-1: not in it).  p0 >= 0:
 * one sequence whose blocks are in table order and whose rows sit at
 * positions p0, p0+1, ...; -1 otherwise. */
typedef struct kern_keys {
    const int *block, *valid, *index;
    int n_blocks, n_seqs, p0, pad_;
} kern_keys;

/* Attention of a prompt pass through cuBLAS (kern_attn_gemm.cu): row r
 * (sequence row_seq[r] at pos[r]) attends to the keys of its sequence up to
 * its position.  K and V are gathered into work, then for chunks of rows:
 * scores S = q K^T (f32 products), softmax over the keys each row sees,
 * out = P V.  out is [R][n_heads*hd] f32.  work must hold at least
 * kern_attention_gemm_floats(.., n_blocks * block_size, 16) floats; more
 * lets chunks be longer (up to 1024 rows). */
size_t kern_attention_gemm_floats(int n_heads, int head_dim, int n_keys, int chunk);
int kern_attention_gemm(kern_blas *b, cudaStream_t s, const float *q, kern_kv kv,
                        const kern_step *st, kern_keys keys, int R, int n_heads, float *work,
                        size_t work_floats, float *out, int pdl, eng_err *err);

/* Host-side bf16 rounding (round to nearest even), shared with the tests. */
uint16_t kern_f32_to_bf16(float f);

#ifdef __cplusplus
}
#endif
#endif
