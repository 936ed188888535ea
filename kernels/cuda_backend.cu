/* cuda_backend.cu — brisk's CUDA backend behind engine/backend.h.
 *
 * Create uploads the weights (fused: q|k|v and gate|up), allocates the paged
 * KV pool (f32 or bf16 by eng_cuda_opts.kv_format, layer-major, one extra
 * scratch block for padding rows) and a cuBLASLt
 * handle on one stream.  Forward packs the pass's inputs into one host
 * buffer (kern_step header + arrays), copies it up in one transfer, runs the
 * model and copies back only ids, log-probabilities and entropies (logits
 * too when asked).  Passes of up to GRAPH_MAX_ROWS rows are padded to a
 * bucket and replayed from a CUDA graph captured the second time that shape
 * is seen; the kernels read every per-pass value from the header in device
 * memory, so one graph serves every pass of its shape and choices (the
 * pass_plan made once per pass: the graph's key).
 *
 * Two paths per pass: up to gemv_max_rows rows, the GEMV kernel (f32
 * activations, RMSNorm, residual and SwiGLU fused; with a GGUF model's
 * quantized blocks and eng_cuda_opts.quant, kern_qgemv on the blocks
 * instead, for one row where kern_qskinny serves (with rounded inputs,
 * ENG_ACT_Q16: up to 2), else up to quant_max_rows rows; with ENG_ACT_BF16 the
 * GEMV rounds its inputs, up to 4 rows); above, matrix
 * products (kern_qskinny on the blocks up to quant_tc_rows rows; else
 * kern_skinny up to skinny_max_rows rows where it serves the shape, else
 * cuBLASLt) with separate norm / SwiGLU /
 * residual kernels that add the products' parts.  Kernels are launched with
 * programmatic dependent launch, so each starts (and prefetches weights)
 * while its predecessor drains. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kern_common.cuh"
#include "pool.h"
#ifdef BRISK_NCCL
#include "kern_tp.h"
#endif

#define GRAPH_MAX_ROWS 256
#define PF_ROWS_PER_SEQ 4   /* rows per sequence from which a pass counts as a prompt pass */
#define MAX_GRAPHS 48
/* decode attention: variant 3 from ATTN3_MIN_ROWS rows, and for fewer rows
 * once rows x longest context reaches ATTN3_FEW_WORK; variant 2 below, where
 * it stays ahead (few rows over short contexts).  Measurements:
 * kernels/NOTES.md v9. */
#define ATTN3_MIN_ROWS 9
#define ATTN3_FEW_WORK 3072

typedef struct cu_layer {
    void *wqkv, *wo, *wgu, *wdown;
    kern_qw qqkv, qo, qgu, qdown;        /* quantized blocks; n_seg 0: dense only */
    float *bqkv, *attn_norm, *ffn_norm;
    float *q_norm, *k_norm;              /* [head_dim]; NULL without q/k norms */
    float *post_attn_norm, *post_ffn_norm;   /* [hidden]; NULL without output norms */
} cu_layer;

/* The choices one pass runs with, made once per pass (cu_forward) and
 * handed to enqueue.  Zero-initialised and compared whole (memcmp) as the
 * key of its CUDA graph: a field added here keys the graphs too. */
typedef struct pass_plan {
    int R, O;           /* rows and out rows, padded to their buckets in a graph */
    int pf;             /* prompt-like: prefill attention kernel */
    int pg;             /* attention through cuBLAS (kern_attention_gemm; never in a graph) */
    int att_variant;    /* decode attention variant (attn_variant) */
    int att_splits;     /* and its splits (grid depth) */
    kern_keys keys;     /* pg: its keys (arrays in dk); zero otherwise */
} pass_plan;

typedef struct cu_graph {
    pass_plan plan;
    int seen;                  /* eager runs so far; captured once exec != NULL */
    cudaGraphExec_t exec;
    unsigned long long used;
} cu_graph;

typedef struct cu_ctx {
    eng_config cfg;
    eng_cuda_opts opt;
    int skip;                    /* eng_cuda_bench_skip's KERN_SKIP_* mask; 0 but in benchmarks */
    int wdt, n_sms;
    char dev_name[128];
    int n_blocks, block_size, q_dim, kv_dim, qkv_dim;
    cudaStream_t st;
    kern_blas *blas;
    void **allocs;               /* every weight allocation, freed on destroy */
    int n_allocs, cap_allocs;
    size_t held_bytes;           /* their bytes (the KV pool's too, once made) */
    size_t weights_held;         /* held_bytes before the KV pool: weights and their scratch */
    cu_layer *layers;
    void *embed, *lm_head;
    kern_qw qhead;               /* the lm_head's quantized blocks; n_seg 0: dense only */
    kern_qw qembed;              /* lean: the embedding's blocks (qhead's when tied); n_seg 0: dense */
    int has_q;                   /* some product has quantized blocks */
    int qs_ok;                   /* every product and the lm_head has blocks kern_qskinny takes */
    int q16_rows;                /* ENG_ACT_Q16: the most rows kern_qgemv takes for every product */
    int ws;                      /* the layer products' dense copy is bf16 halves (quant_wide) */
    int lean;                    /* ... made per wide product into wscratch (quant_wide 2) */
    uint16_t *wscratch;          /* lean: the largest layer product's halves */
    size_t q_bytes, q_dense_bytes;   /* quantized products' bytes: as blocks, as the dense copy */
    float *final_norm, *inv_freq;
    float *inv_freq_local;       /* sliding layers' RoPE frequencies; NULL when none slides */
    float q_scale;               /* attn_scale * sqrt(head_dim): q's factor (kern_rope_kv) */
    size_t weight_bytes;
    void *kv;
    int kv_dt;                   /* its elements: KERN_F32 or KERN_BF16 (opt.kv_format) */
    size_t kv_eb;                /* bytes per element */
    size_t blk_elems;            /* one layer's block: K and V of every kv head */
    size_t layer_elems;          /* one layer's pool: (n_blocks + 1) blocks */
    /* activations for up to cap_rows rows / cap_out out rows */
    int cap_rows, cap_out;
    float *x, *y, *q, *attn, *h, *part, *xo, *logits;
    void *act;
    unsigned *counters;          /* [cap_rows][n_kv] split counters of attention, kept at 0 */
    float *sscratch;             /* [cap_out][16] float4: sampling's first-pass summaries */
    unsigned *scnt;              /* [cap_out] sampling block counters, kept at 0 */
    int *d_res;                  /* ids[cap_out], logprob[cap_out], entropy[cap_out] */
    int *h_res;
    char *d_in, *h_in;
    size_t cap_in;
    cu_graph graphs[MAX_GRAPHS];
    size_t y_floats;             /* y's length: the widest product's parts */
    float *gw;                   /* kern_attention_gemm's work buffer, gw_floats long */
    size_t gw_floats;
    int *hk, *dk;                /* keys' arrays on the host and the device, k_cap ints each */
    size_t k_cap;
    int *stamp;                  /* [n_blocks]: a block's place in the keys, or -1 (host) */
    int n_graphs;
    unsigned long long tick;
    int broken;
    char broken_msg[256];
    /* Tensor parallelism (kern_tp.h, built with NCCL): rank `rank` of n_ranks
     * on device dev; cfg then holds the rank's share of query heads, KV heads
     * and MLP columns (vocab_size stays the model's), and the lm_head its
     * v_share vocabulary rows from v0 (zero rows past the vocabulary).  tp is
     * NULL when unsplit. */
    struct kern_tp *tp;
    int rank, n_ranks, dev, v0, v_share;
    eng_tp_slice tl;             /* its heads, KV heads and MLP columns */
    eng_config full;             /* the model's own config */
    float *llog;                 /* the rank's logits, [gemm_cols(2 cap_out)][v_share] */
    float *gath;                 /* every rank's, [n_ranks][2 cap_out][v_share] */
} cu_ctx;

/* ------------------------------------------------------------ errors */
static int dev_fail(cu_ctx *c, eng_err *err, cudaError_t e, const char *what) {
    int code = e == cudaErrorMemoryAllocation ? ENG_ENOMEM : ENG_EIO;
    if (c && e != cudaErrorMemoryAllocation && e != cudaErrorInvalidValue) {
        c->broken = 1;
        snprintf(c->broken_msg, sizeof c->broken_msg, "%s: %s", what, cudaGetErrorString(e));
    }
    return eng_seterr(err, code, "CUDA: %s: %s", what, cudaGetErrorString(e));
}

#define CK(call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) return dev_fail(c, err, e_, #call); } while (0)
#define KC(call) do { int e_ = (call); \
    if (e_) return dev_fail(c, err, (cudaError_t)e_, #call); } while (0)

extern "C" uint16_t kern_f32_to_bf16(float f) { return eng_f32_to_bf16(f); }

extern "C" void eng_cuda_opts_default(eng_cuda_opts *o) {
    memset(o, 0, sizeof *o);
    o->gemv_max_rows = 4;   /* measured: cuBLASLt wins from ~6 rows on (kernels/NOTES.md, v6) */
    o->skinny_max_rows = 64;   /* from 17 rows for small products only (skinny_parts) */
    o->quant = 1;
    o->quant_wide = 1;   /* wide passes on tensor cores, not f32 (kernels/NOTES.md v21) */
    o->quant_max_rows = 8;
    o->quant_tc_rows = 96;   /* measured: kern_qskinny's groups ahead of the halves to 96 rows (v25) */
    o->act = ENG_ACT_F32;    /* exact unless asked; the engine asks for ENG_ACT_AUTO, its default */
}

/* Options into range; attention variant 0 takes BRISK_ATTN (1 to 5 for
 * every pass), else stays 0: attn_variant() picks per pass, so a benchmark
 * can time each without code changes. */
static void opts_clamp(eng_cuda_opts *o) {
    if (o->gemv_max_rows < 0) o->gemv_max_rows = 0;
    if (o->gemv_max_rows > 8) o->gemv_max_rows = 8;
    if (o->skinny_max_rows < 0) o->skinny_max_rows = 0;
    if (o->skinny_max_rows > 64) o->skinny_max_rows = 64;
    if (o->quant_max_rows < 0) o->quant_max_rows = 0;
    if (o->quant_max_rows > 8) o->quant_max_rows = 8;
    if (o->quant_tc_rows < 0) o->quant_tc_rows = 0;
    if (o->quant_tc_rows > GRAPH_MAX_ROWS) o->quant_tc_rows = GRAPH_MAX_ROWS;   /* kern_qskinny's most */
    o->quant_tc_stage = o->quant_tc_stage != 0;
    if (o->attn_variant < 1 || o->attn_variant > 5) {
        const char *v = getenv("BRISK_ATTN");
        int a = v ? atoi(v) : 0;
        o->attn_variant = a >= 1 && a <= 5 ? a : 0;
    }
    if (o->attn_span < 0 || o->attn_span > 1 << 20) o->attn_span = 0;
    if (o->prefill_attn < KERN_PF_AUTO || o->prefill_attn > KERN_PF_ALWAYS) {
        const char *v = getenv("BRISK_PREFILL_ATTN");
        o->prefill_attn = v && !strcmp(v, "never") ? KERN_PF_NEVER
                        : v && !strcmp(v, "always") ? KERN_PF_ALWAYS : KERN_PF_AUTO;
    }
}

/* ------------------------------------------------------------ weights */
static int dev_alloc(cu_ctx *c, size_t bytes, void **p, const char *what, eng_err *err) {
    *p = NULL;
    if (c->n_allocs == c->cap_allocs) {
        int cap = c->cap_allocs ? 2 * c->cap_allocs : 64;
        void **a = (void **)realloc(c->allocs, cap * sizeof *a);
        if (!a) return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory");
        c->allocs = a;
        c->cap_allocs = cap;
    }
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
    if (e != cudaSuccess)
        return eng_seterr(err, ENG_ENOMEM, "CUDA: cannot allocate %zu bytes for %s: %s", bytes,
                          what, cudaGetErrorString(e));
    c->allocs[c->n_allocs++] = *p;
    c->held_bytes += bytes;
    return ENG_OK;
}

static int64_t tensor_elems(const eng_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* Writes n elements of one weight at dst (device) in the backend's weight
 * type, from the raw tensor t when it already has that type, else from the
 * f32 copy, else by converting t. */
static int elems_ok(const eng_tensor *t, size_t n, const char *what, eng_err *err) {
    if (t && tensor_elems(t) != (int64_t)n)
        return eng_seterr(err, ENG_EFORMAT, "CUDA backend: %s (%s) has %lld elements, expected %zu",
                          what, t->name, (long long)tensor_elems(t), n);
    return ENG_OK;
}

/* *src = a weight's n elements in f32: f32 where the model has them, else t
 * converted into *tmp (the caller frees it). */
static int f32_of(const eng_tensor *t, const float *f32, size_t n, const float **src, float **tmp,
                  const char *what, eng_err *err) {
    *tmp = NULL;
    *src = f32;
    if (f32) return ENG_OK;
    if (!t) return eng_seterr(err, ENG_EFORMAT, "CUDA backend: model has no data for %s", what);
    if (!(*tmp = (float *)malloc(n * sizeof(float))))
        return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory (%s)", what);
    eng_to_f32(t, *tmp);
    *src = *tmp;
    return ENG_OK;
}

static int put_weight(cu_ctx *c, char *dst, const eng_tensor *t, const float *f32, size_t n,
                      const char *what, eng_err *err) {
    int rc = elems_ok(t, n, what, err);
    if (rc) return rc;
    if (t && ((t->dtype == ENG_DT_BF16 && c->wdt == KERN_BF16) ||
              (t->dtype == ENG_DT_F32 && c->wdt == KERN_F32))) {
        CK(cudaMemcpy(dst, t->data, n * (c->wdt == KERN_BF16 ? 2 : 4), cudaMemcpyHostToDevice));
        return ENG_OK;
    }
    float *tmp;
    const float *src;
    if ((rc = f32_of(t, f32, n, &src, &tmp, what, err))) return rc;
    cudaError_t e;
    if (c->wdt == KERN_F32) {
        e = cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice);
    } else {
        uint16_t *b = (uint16_t *)malloc(n * sizeof(uint16_t));
        if (!b) { free(tmp); return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory"); }
        for (size_t i = 0; i < n; i++) b[i] = kern_f32_to_bf16(src[i]);
        e = cudaMemcpy(dst, b, n * sizeof(uint16_t), cudaMemcpyHostToDevice);
        free(b);
    }
    free(tmp);
    CK(e);
    return ENG_OK;
}

/* Elements [off, off + n) of a layer product of total elements: where the
 * dense copy is bf16 halves (c->ws), the high halves fill the product's
 * first total bf16 and the low ones the next (w - hi rounded: hi + lo holds
 * w to 16 bits); else put_weight at off. */
static int put_part(cu_ctx *c, char *base, size_t total, size_t off, const eng_tensor *t,
                    const float *f32, size_t n, const char *what, eng_err *err) {
    if (!c->ws) return put_weight(c, base + off * (c->wdt == KERN_BF16 ? 2 : 4), t, f32, n, what, err);
    float *tmp;
    const float *src;
    int rc = elems_ok(t, n, what, err);
    if (rc || (rc = f32_of(t, f32, n, &src, &tmp, what, err))) return rc;
    uint16_t *hl = (uint16_t *)malloc(2 * n * sizeof(uint16_t));
    if (!hl) {
        free(tmp);
        return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory (%s)", what);
    }
    for (size_t i = 0; i < n; i++) {
        hl[i] = eng_f32_to_bf16(src[i]);
        hl[n + i] = eng_f32_to_bf16(src[i] - eng_bf16_to_f32(hl[i]));
    }
    cudaError_t e = cudaMemcpy(base + off * 2, hl, n * 2, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(base + (total + off) * 2, hl + n, n * 2, cudaMemcpyHostToDevice);
    free(tmp);
    free(hl);
    CK(e);
    return ENG_OK;
}

/* A small f32 vector (norm weight, bias) into its own allocation. */
static int put_vec(cu_ctx *c, float **dst, const eng_tensor *t, const float *f32, size_t n,
                   const char *what, eng_err *err) {
    int rc = dev_alloc(c, n * sizeof(float), (void **)dst, what, err);
    if (rc) return rc;
    if (t && tensor_elems(t) != (int64_t)n)
        return eng_seterr(err, ENG_EFORMAT, "CUDA backend: %s has %lld elements, expected %zu",
                          what, (long long)tensor_elems(t), n);
    float *tmp = NULL;
    const float *src = f32;
    if (!src) {
        if (!t) return eng_seterr(err, ENG_EFORMAT, "CUDA backend: model has no data for %s", what);
        tmp = (float *)malloc(n * sizeof(float));
        if (!tmp) return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory");
        eng_to_f32(t, tmp);
        src = tmp;
    }
    cudaError_t e = cudaMemcpy(*dst, src, n * sizeof(float), cudaMemcpyHostToDevice);
    free(tmp);
    CK(e);
    return ENG_OK;
}

/* ---------------------------------------------------- quantized blocks
 * Products whose every tensor is in a block type kern_qgemv takes keep
 * those blocks on the device beside the dense copy: decode passes (one row
 * through kern_qgemv, 1..2 with ENG_ACT_Q16 (c->q16_rows), then up to
 * quant_tc_rows through kern_qskinny where every
 * product suits it, else up to quant_max_rows rows through kern_qgemv)
 * read the blocks, wider passes the dense copy
 * through the existing paths, so every batch size is served (the blocks
 * dequantize to the dense f32 copy; kern_qgemv's sums are within ~1e-7 of
 * its product); where kern_qskinny serves every product, the dense copy is
 * bf16 halves (quant_wide, put_part; GEMM_WS in enqueue).  The price is
 * memory: the dense copy stays resident. */

/* Whether t can go to kern_qgemv as rows of K elements. */
static bool quantizable(const eng_tensor *t, int64_t rows, int64_t K) {
    return t && kern_qtype_ok(t->dtype) && t->ndim == 2 && t->shape[0] == rows &&
           t->shape[1] == K && K % eng_dt_block(t->dtype) == 0 &&
           t->nbytes == (size_t)rows * (K / eng_dt_block(t->dtype)) * eng_dt_block_bytes(t->dtype);
}

/* Appends t (rows x K, quantizable) to q as a segment of its own, its rows
 * in the kernels' layout (kern_qpack_row); hd > 0: the rows are in
 * llama.cpp's per-head order (eng_layer_w.t_wq_gguf) and go back to the
 * f32 copy's order, head by head of hd rows.  q_bytes counts the file's
 * bytes (the floor's), not the layout's padding. */
static int put_qseg(cu_ctx *c, kern_qw *q, const eng_tensor *t, int rows, int K, int hd,
                    const char *what, eng_err *err) {
    const size_t rb = t->nbytes / (size_t)rows, db = kern_qrow_bytes(t->dtype, K);
    void *dst;
    int rc = dev_alloc(c, db * rows, &dst, what, err);
    if (rc) return rc;
    char *tmp = (char *)malloc(db * rows);
    if (!tmp) return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory (%s)", what);
    const char *src = (const char *)t->data;
    for (int r = 0; r < rows; r++) {
        const int to = hd > 0 ? r / hd * hd + (r % hd % 2) * (hd / 2) + r % hd / 2 : r;
        kern_qpack_row(t->dtype, src + (size_t)r * rb, K, tmp + (size_t)to * db);
    }
    cudaError_t e = cudaMemcpy(dst, tmp, db * rows, cudaMemcpyHostToDevice);
    free(tmp);
    CK(e);
    const int i = q->n_seg++;
    q->w[i] = dst;
    q->type[i] = t->dtype;
    q->end[i] = (i ? q->end[i - 1] : 0) + rows;
    q->row_bytes[i] = (int)db;
    c->q_bytes += t->nbytes;
    return ENG_OK;
}

/* One product of n tensors (rows[i] x K each) as quantized segments when
 * every tensor is quantizable; else q stays empty (the dense copy serves).
 * dense_eb: the dense copy's bytes per element. */
static int put_qprod(cu_ctx *c, kern_qw *q, int n, const eng_tensor *const *t, const int *rows,
                     const int *hd, int K, size_t dense_eb, const char *what, eng_err *err) {
    memset(q, 0, sizeof *q);
    if (!c->opt.quant) return ENG_OK;
    size_t elems = 0;
    for (int i = 0; i < n; i++) {
        if (!quantizable(t[i], rows[i], K)) return ENG_OK;
        elems += (size_t)rows[i] * K;
    }
    for (int i = 0; i < n; i++) {
        int rc = put_qseg(c, q, t[i], rows[i], K, hd ? hd[i] : 0, what, err);
        if (rc) return rc;
    }
    c->q_dense_bytes += elems * dense_eb;
    c->has_q = 1;
    return ENG_OK;
}

/* A layer product as quantized tensors: n of them stacked (rows[i] x K
 * each); hd[i] > 0: tensor i's rows are in llama.cpp's per-head order. */
typedef struct qprod_src {
    int n, K;
    const eng_tensor *t[KERN_QSEGS];
    int rows[KERN_QSEGS], hd[KERN_QSEGS];
    const char *name;
} qprod_src;

/* Layer w's four products (q|k|v, o, gate|up, down) in upload order. */
static void qlayer_srcs(const eng_config *g, const eng_layer_w *w, qprod_src p[4]) {
    const int H = g->hidden, I = g->intermediate, hd = g->head_dim;
    const int qd = g->n_heads * hd, kd = g->n_kv_heads * hd;
    /* llama GGUF: q and k as stored, rows reordered on the way up */
    const bool perm = !w->t_wq && w->t_wq_gguf;
    p[0] = (qprod_src){3, H, {perm ? w->t_wq_gguf : w->t_wq, perm ? w->t_wk_gguf : w->t_wk, w->t_wv},
                       {qd, kd, kd}, {perm ? hd : 0, perm ? hd : 0, 0}, "q|k|v"};
    p[1] = (qprod_src){1, qd, {w->t_wo}, {H}, {0}, "o_proj"};
    p[2] = (qprod_src){2, H, {w->t_gate, w->t_up}, {I, I}, {0, 0}, "gate|up"};
    p[3] = (qprod_src){1, I, {w->t_down}, {H}, {0}, "down_proj"};
}

static int upload_qlayer(cu_ctx *c, const eng_layer_w *w, cu_layer *d, int l, eng_err *err) {
    const int eb = c->wdt == KERN_BF16 ? 2 : 4;
    qprod_src p[4];
    kern_qw *q[4] = {&d->qqkv, &d->qo, &d->qgu, &d->qdown};
    qlayer_srcs(&c->cfg, w, p);
    for (int i = 0; i < 4; i++) {
        char what[64];
        snprintf(what, sizeof what, "layer %d %s blocks", l, p[i].name);
        int rc = put_qprod(c, q[i], p[i].n, p[i].t, p[i].rows, p[i].hd, p[i].K, eb, what, err);
        if (rc) return rc;
    }
    return ENG_OK;
}

/* Whether p's tensors, uploaded (put_qprod), make a product kern_qskinny
 * takes. */
static bool qprod_src_ok(const qprod_src *p) {
    static const uint4 stand_in = {0, 0, 0, 0};   /* an aligned address: shapes are checked, not bytes */
    kern_qw q;
    memset(&q, 0, sizeof q);
    for (int i = 0, end = 0; i < p->n; i++) {
        if (!quantizable(p->t[i], p->rows[i], p->K)) return false;
        q.w[i] = &stand_in;
        q.type[i] = p->t[i]->dtype;
        q.end[i] = end += p->rows[i];
        q.row_bytes[i] = (int)kern_qrow_bytes(p->t[i]->dtype, p->K);
    }
    q.n_seg = p->n;
    return kern_qskinny_ok(&q, q.end[p->n - 1], p->K);
}

/* Whether every layer's four products and the lm_head of m upload as blocks
 * kern_qskinny takes: c->qs_ok where quant uploads them, and the condition
 * for keeping no dense copy, known before any upload. */
static bool qs_sources_ok(const eng_model *m) {
    const eng_config *g = &m->cfg;
    if (!m->layers) return false;
    const qprod_src head = {1, g->hidden, {m->t_lm_head ? m->t_lm_head : m->t_embed}, {g->vocab_size},
                            {0}, "lm_head"};
    if (!qprod_src_ok(&head)) return false;
    for (int l = 0; l < g->n_layers; l++) {
        qprod_src p[4];
        qlayer_srcs(g, &m->layers[l], p);
        for (int i = 0; i < 4; i++)
            if (!qprod_src_ok(&p[i])) return false;
    }
    return true;
}

/* Whether m can run with no dense copy of its products (quant_wide 2): f32
 * weights (c->ws) and every product of blocks kern_qskinny takes. */
static bool lean_possible(const eng_model *m) {
    return !(m->t_embed && m->t_embed->dtype == ENG_DT_BF16) && qs_sources_ok(m);
}

static int lean_refused(eng_err *err) {
    return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: the quantized blocks alone (--quant-lean) "
                      "need one GPU and blocks the kernels take for every layer product and the "
                      "lm_head; this file needs its dense copy (--quant or --no-quant)");
}

static int upload_layer(cu_ctx *c, const eng_layer_w *w, cu_layer *d, int l, eng_err *err) {
    const eng_config *g = &c->cfg;
    size_t H = g->hidden, I = g->intermediate, eb = c->wdt == KERN_BF16 ? 2 : 4;
    size_t qd = c->q_dim, kd = c->kv_dim;
    char what[64];
    int rc;
    /* lean: no dense copy of the products (the blocks make their halves
     * per wide pass) */
    d->wqkv = d->wo = d->wgu = d->wdown = NULL;
    if (!c->lean) {
        snprintf(what, sizeof what, "layer %d q|k|v", l);
        if ((rc = dev_alloc(c, (qd + 2 * kd) * H * eb, &d->wqkv, what, err))) return rc;
        /* (bf16 halves, c->ws: the same bytes as f32, eb 4) */
        char *p = (char *)d->wqkv;
        const size_t nqkv = (qd + 2 * kd) * H;
        if ((rc = put_part(c, p, nqkv, 0, w->t_wq, w->wq, qd * H, "q_proj", err))) return rc;
        if ((rc = put_part(c, p, nqkv, qd * H, w->t_wk, w->wk, kd * H, "k_proj", err))) return rc;
        if ((rc = put_part(c, p, nqkv, (qd + kd) * H, w->t_wv, w->wv, kd * H, "v_proj", err))) return rc;
        snprintf(what, sizeof what, "layer %d o_proj", l);
        if ((rc = dev_alloc(c, H * qd * eb, &d->wo, what, err))) return rc;
        if ((rc = put_part(c, (char *)d->wo, H * qd, 0, w->t_wo, w->wo, H * qd, "o_proj", err))) return rc;
        snprintf(what, sizeof what, "layer %d gate|up", l);
        if ((rc = dev_alloc(c, 2 * I * H * eb, &d->wgu, what, err))) return rc;
        p = (char *)d->wgu;
        if ((rc = put_part(c, p, 2 * I * H, 0, w->t_gate, w->w_gate, I * H, "gate_proj", err))) return rc;
        if ((rc = put_part(c, p, 2 * I * H, I * H, w->t_up, w->w_up, I * H, "up_proj", err))) return rc;
        snprintf(what, sizeof what, "layer %d down_proj", l);
        if ((rc = dev_alloc(c, H * I * eb, &d->wdown, what, err))) return rc;
        if ((rc = put_part(c, (char *)d->wdown, H * I, 0, w->t_down, w->w_down, H * I, "down_proj", err)))
            return rc;
    }
    c->weight_bytes += ((qd + 2 * kd) * H + H * qd + 3 * I * H) * eb + 2 * H * 4 +
                       (g->qk_norm ? 2 * g->head_dim * 4 : 0) + (g->post_norms ? 2 * H * 4 : 0);
    if ((rc = put_vec(c, &d->attn_norm, w->t_attn_norm, w->attn_norm, H, "input_layernorm", err)))
        return rc;
    if ((rc = put_vec(c, &d->ffn_norm, w->t_ffn_norm, w->ffn_norm, H, "post_attention_layernorm",
                      err)))
        return rc;
    d->q_norm = d->k_norm = d->post_attn_norm = d->post_ffn_norm = NULL;
    if (g->qk_norm &&
        ((rc = put_vec(c, &d->q_norm, w->t_q_norm, w->q_norm, g->head_dim, "q_norm", err)) ||
         (rc = put_vec(c, &d->k_norm, w->t_k_norm, w->k_norm, g->head_dim, "k_norm", err))))
        return rc;
    if (g->post_norms &&
        ((rc = put_vec(c, &d->post_attn_norm, w->t_post_attn_norm, w->post_attn_norm, H,
                       "post_attention_norm", err)) ||
         (rc = put_vec(c, &d->post_ffn_norm, w->t_post_ffn_norm, w->post_ffn_norm, H,
                       "post_feedforward_norm", err))))
        return rc;
    d->bqkv = NULL;
    if (g->qkv_bias) {
        if ((rc = dev_alloc(c, (qd + 2 * kd) * sizeof(float), (void **)&d->bqkv, "qkv bias", err)))
            return rc;
        const eng_tensor *tb[3] = {w->t_bq, w->t_bk, w->t_bv};
        const float *fb[3] = {w->bq, w->bk, w->bv};
        size_t nb[3] = {qd, kd, kd}, off = 0;
        for (int i = 0; i < 3; i++) {
            if (!fb[i] && !tb[i])
                return eng_seterr(err, ENG_EFORMAT, "CUDA backend: layer %d lacks a q/k/v bias", l);
            if (tb[i] && tensor_elems(tb[i]) != (int64_t)nb[i])
                return eng_seterr(err, ENG_EFORMAT, "CUDA backend: layer %d bias %s has %lld "
                                  "elements, expected %zu", l, tb[i]->name,
                                  (long long)tensor_elems(tb[i]), nb[i]);
            float *tmp = NULL;
            const float *src = fb[i];
            if (!src) {
                tmp = (float *)malloc(nb[i] * sizeof(float));
                if (!tmp) return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory");
                eng_to_f32(tb[i], tmp);
                src = tmp;
            }
            cudaError_t e = cudaMemcpy(d->bqkv + off, src, nb[i] * sizeof(float),
                                       cudaMemcpyHostToDevice);
            free(tmp);
            CK(e);
            off += nb[i];
        }
    }
    return ENG_OK;
}

/* The architectures the kernels implement (eng.h: Llama and Qwen2, Qwen3's
 * q/k norms, Gemma 3's output norms, GeGLU, embedding and query scales,
 * sliding-window layers with their own RoPE base). */
static const char *const cuda_archs[] = {"llama", "qwen2", "qwen3", "gemma3"};

/* ENG_ACT_Q16: every layer product and the lm_head from blocks that
 * kern_qgemv rounds and takes at one row, widths that the kernels writing
 * wider passes' inputs round (multiples of 16: enqueue); their kern_qw
 * marked to round, and c->q16_rows the most rows (1 or 2) at which
 * kern_qgemv takes them all. */
/* The most rows, rows or fewer (at least 1), at which kern_qgemv rounds
 * and takes W. */
static int q16_fit(const kern_qw *W, int N, int K, int glu, int rows) {
    while (rows > 1 && !kern_qgemv_q16_ok(W, N, K, glu, rows)) rows--;
    return rows;
}

static int act_q16_setup(cu_ctx *c, eng_err *err) {
    const eng_config *g = &c->cfg;
    if (!c->opt.quant || c->tp)
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: --act q16 needs the quantized blocks "
                          "on one GPU");
    const int H = g->hidden, I = g->intermediate;
    if (H % 16 || I % 16 || g->head_dim % 16)
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: --act q16 rounds rows of 16 elements; "
                          "hidden %d, intermediate %d, head size %d", H, I, g->head_dim);
    if (!c->qhead.n_seg || !kern_qgemv_q16_ok(&c->qhead, g->vocab_size, H, 0, 1))
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: --act q16: the lm_head's blocks are "
                          "not in a shape the one-row kernel takes");
    int rows = q16_fit(&c->qhead, g->vocab_size, H, 0, 2);   /* 2: kern_qgemv's most */
    for (int pass = 0; pass < 2; pass++)   /* every product checked, then every one marked */
        for (int l = 0; l < g->n_layers; l++) {
            cu_layer *w = &c->layers[l];
            kern_qw *q[4] = {&w->qqkv, &w->qo, &w->qgu, &w->qdown};
            const int N[4] = {c->qkv_dim, H, 2 * I, H}, K[4] = {H, c->q_dim, H, I};
            for (int i = 0; i < 4; i++) {
                if (pass) q[i]->q16 = 1;
                else if (!q[i]->n_seg || !kern_qgemv_q16_ok(q[i], N[i], K[i], i == 2, 1))
                    return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: --act q16: layer %d product "
                                      "%d is not of blocks the one-row kernel takes", l, i);
                else
                    rows = q16_fit(q[i], N[i], K[i], i == 2, rows);
            }
        }
    c->qhead.q16 = 1;
    c->q16_rows = rows;
    return ENG_OK;
}

static int check_config(const eng_config *g, eng_err *err) {
    int known = 0;
    for (size_t i = 0; i < sizeof cuda_archs / sizeof *cuda_archs; i++)
        known |= !strcmp(g->arch, cuda_archs[i]);
    if (!known)
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: architecture %.32s not supported "
                          "(llama, qwen2, qwen3, gemma3)", g->arch);
    if (!(g->attn_scale > 0) || !(g->embed_scale > 0) || g->sliding_window < 0)
        return eng_seterr(err, ENG_EFORMAT, "CUDA backend: bad attention or embedding scale or "
                          "sliding window");
    if (g->hidden < 8 || g->n_layers < 1 || g->n_heads < 1 || g->n_kv_heads < 1 ||
        g->head_dim < 4 || g->intermediate < 8 || g->vocab_size < 1)
        return eng_seterr(err, ENG_EFORMAT, "CUDA backend: bad model shape");
    if (g->hidden % 8 || g->intermediate % 8 || (g->n_heads * g->head_dim) % 8)
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: hidden (%d), intermediate (%d) "
                          "and heads x head_dim must be multiples of 8", g->hidden,
                          g->intermediate);
    if (g->n_heads % g->n_kv_heads || g->n_heads / g->n_kv_heads > 8)
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: %d query heads over %d kv heads "
                          "(at most 8 per kv head)", g->n_heads, g->n_kv_heads);
    if (g->head_dim > 256 || g->head_dim % 4 || 128 % (g->head_dim / 4))
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: head_dim %d (supported: a power "
                          "of two from 4 to 256)", g->head_dim);
    return ENG_OK;
}

/* ------------------------------------------------------- activations */
static void graphs_clear(cu_ctx *c) {
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
    c->n_graphs = 0;
}

static void acts_free(cu_ctx *c) {
    float *f[] = {c->x, c->y, c->q, c->attn, c->h, c->part, c->xo, c->logits, c->llog, c->gath};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) cudaFree(f[i]);
    cudaFree(c->act);
    cudaFree(c->counters);
    cudaFree(c->sscratch);
    cudaFree(c->scnt);
    cudaFree(c->d_res);
    cudaFreeHost(c->h_res);
    c->x = c->y = c->q = c->attn = c->h = c->part = c->xo = c->logits = c->llog = c->gath = NULL;
    c->act = NULL; c->counters = NULL; c->d_res = NULL; c->h_res = NULL;
    c->sscratch = NULL; c->scnt = NULL;
    c->cap_rows = c->cap_out = 0;
}

static int max3(int a, int b, int c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

/* cuBLASLt products take their row count rounded up to this (above it), so
 * prompts of nearby lengths share one plan: a new plan costs ~1 ms of
 * heuristics (measured), more than the padded columns' arithmetic. */
#define GEMM_PAD 64
static int gemm_cols(int n) { return n <= GEMM_PAD ? n : (n + GEMM_PAD - 1) / GEMM_PAD * GEMM_PAD; }

/* kern_skinny takes products of up to this many weight bytes: on larger
 * ones cuBLASLt streams near the copy bandwidth and is faster
 * (kernels/NOTES.md v11). */
#define SKINNY_MAX_BYTES ((size_t)64 << 20)

/* From 17 rows (kern_skinny's wgmma path) only products of up to this many
 * weight bytes: the wgmma path beats cuBLASLt on small products (0.5B's
 * q/k/v and o) and not on larger ones (kernels/NOTES.md v12, v13). */
#ifndef SKINNY_WIDE_MAX_BYTES   /* -D for experiments */
#define SKINNY_WIDE_MAX_BYTES ((size_t)4 << 20)
#endif

/* A layer's four products as [N][K]: q/k/v, o, gate|up, down. */
enum { PR_QKV, PR_O, PR_GU, PR_DOWN };
static void layer_products(const cu_ctx *c, int nk[4][2]) {
    const int H = c->cfg.hidden, I = c->cfg.intermediate;
    const int v[4][2] = {{c->qkv_dim, H}, {H, c->q_dim}, {2 * I, H}, {H, I}};
    memcpy(nk, v, sizeof v);
}

/* Whether decode passes read the quantized blocks, and the most rows of
 * a pass that takes the GEMV path (kern_gemv or kern_qgemv). */
static bool quant_on(const cu_ctx *c) { return c->has_q && c->opt.quant; }
/* Whether passes of 2..quant_tc_rows rows take kern_qskinny for every
 * product (and the lm_head), with split activations; the GEMV path then
 * keeps one-row passes. */
static bool qs_ready(const cu_ctx *c) {
    return quant_on(c) && c->qs_ok && !c->tp && c->opt.quant_tc_rows >= 2;
}
static bool qs_pass(const cu_ctx *c, int R) { return qs_ready(c) && R > 1 && R <= c->opt.quant_tc_rows; }
static int gemv_rows(const cu_ctx *c) {
    /* ENG_ACT_Q16: up to q16_rows (quant_max_rows fewer), the rows
     * kern_qgemv rounds; every wider pass rounds c->act.  ENG_ACT_BF16 (no
     * blocks): up to the 4 rows kern_gemv rounds (KERN_GEMV_IN_BF16) */
    if (c->opt.act == ENG_ACT_BF16) return c->opt.gemv_max_rows < 4 ? c->opt.gemv_max_rows : 4;
    if (c->opt.act != ENG_ACT_F32) {
        if (!quant_on(c)) return 0;
        return c->opt.quant_max_rows < c->q16_rows ? c->opt.quant_max_rows : c->q16_rows;
    }
    return !quant_on(c) ? c->opt.gemv_max_rows : qs_ready(c) && c->opt.quant_max_rows > 1 ? 1
                                                                                       : c->opt.quant_max_rows;
}

/* Whether cuBLASLt and kern_skinny take bf16-rounded inputs, one column a
 * row (ENG_ACT_BF16, or fast_gemm's approximation of the f32 path), rather
 * than the f32 path's high and low halves. */
static bool act_bf16_only(const cu_ctx *c) { return c->opt.fast_gemm || c->opt.act == ENG_ACT_BF16; }

/* Whether kern_skinny takes this product of R rows (bf16 weights; inputs
 * split into high and low halves, or bf16 alone with ENG_ACT_BF16); else
 * cuBLASLt (and always under fast_gemm, an ablation of cuBLASLt's inputs). */
static bool skinny_serves(const cu_ctx *c, int N, int K, int R) {
    const size_t bytes = (size_t)N * K * 2;
    return R > gemv_rows(c) && R <= c->opt.skinny_max_rows && c->wdt == KERN_BF16 &&
           !c->opt.fast_gemm && bytes <= SKINNY_MAX_BYTES && (R <= 16 || bytes <= SKINNY_WIDE_MAX_BYTES);
}

/* K slices of the down product where cuBLASLt serves it with a split-K
 * plan, which ends with a reduce kernel: slices leave the adding to the
 * consumer (add+norm), in order.  Only where the product's columns are not
 * padded (gemm_cols), so slice s's high and low parts sit at parts 2s and
 * 2s + 1.  Two slices, and only where cuBLASLt splits K: slicing a plan
 * without split-K is slower, and so are more slices (kernels/NOTES.md v13).
 * Prompt passes (> 256 rows) keep one product. */
#ifndef DOWN_SLICES   /* -D for experiments; 1: off */
#define DOWN_SLICES 2
#endif
static int down_slices(cu_ctx *c, int R, int mul, int *slices, eng_err *err) {
    const int K = c->cfg.intermediate;
    *slices = 1;
    if (DOWN_SLICES < 2 || R <= gemv_rows(c) || R > 256 || c->wdt != KERN_BF16 ||
        skinny_serves(c, c->cfg.hidden, K, R) || gemm_cols(R * mul) != R * mul ||
        K % (8 * DOWN_SLICES))
        return ENG_OK;
    const int sk = kern_blas_splits(c->blas, c->wdt, c->cfg.hidden, K, 1, R * mul, err);
    if (sk < 1) return err && err->code ? err->code : ENG_EIO;
    if (sk > 1) *slices = DOWN_SLICES;
    return ENG_OK;
}

/* The parts kern_skinny writes for this product, or 0: cuBLASLt serves it. */
static int skinny_parts(const cu_ctx *c, int N, int K, int R, size_t cap_floats) {
    if (!skinny_serves(c, N, K, R)) return 0;
    size_t mp = cap_floats / ((size_t)R * N);
    return kern_skinny_parts(N, K, R, !act_bf16_only(c), c->n_sms, mp > 1 << 20 ? 1 << 20 : (int)mp);
}

/* Grows the activation buffers to hold R rows and O out rows, at least
 * doubling them: a reallocation drops every captured graph. */
static int ensure_rows(cu_ctx *c, int R, int O, eng_err *err) {
    if (R <= c->cap_rows && O <= c->cap_out) return ENG_OK;
    const eng_config *g = &c->cfg;
    int nr = R > c->cap_rows ? (R > 2 * c->cap_rows ? R : 2 * c->cap_rows) : c->cap_rows;
    int no = O > c->cap_out ? (O > 2 * c->cap_out ? O : 2 * c->cap_out) : c->cap_out;
    if (nr < 16) nr = 16;
    if (no < 8) no = 8;
    graphs_clear(c);
    acts_free(c);
    size_t H = g->hidden, I = g->intermediate, V = g->vocab_size;
    size_t maxN = max3(c->qkv_dim, 2 * g->intermediate, g->hidden);
    size_t maxK = max3(g->hidden, g->intermediate, c->q_dim);
    size_t part = 0;
    for (int r = 1; r <= nr; r++) {
        size_t p = kern_attn_part_floats(r, g->n_heads, g->head_dim,
                                         kern_attn_split_cap(r, g->n_kv_heads, c->n_sms));
        if (p > part) part = p;
    }
    /* products' outputs: cuBLASLt's 2R columns, or the parts of the
     * products kern_skinny serves, at any row count up to nr */
    size_t y_floats = (size_t)gemm_cols(2 * nr) * maxN;
    int nk[4][2];
    layer_products(c, nk);
    for (int r = 1; r <= nr && r <= c->opt.skinny_max_rows; r++)
        for (int i = 0; i < 4; i++) {
            if (!skinny_serves(c, nk[i][0], nk[i][1], r)) continue;
            size_t f = (size_t)kern_skinny_parts(nk[i][0], nk[i][1], r, !act_bf16_only(c), c->n_sms, 1 << 20) *
                       r * nk[i][0];
            if (f > y_floats) y_floats = f;
        }
    if ((size_t)DOWN_SLICES * gemm_cols(2 * nr) * g->hidden > y_floats)
        y_floats = (size_t)DOWN_SLICES * gemm_cols(2 * nr) * g->hidden;
    /* bf16 halves: the lo weights' product lands at part 2, padding past it */
    if (c->ws && (size_t)(2 * nr + gemm_cols(2 * nr)) * maxN > y_floats)
        y_floats = (size_t)(2 * nr + gemm_cols(2 * nr)) * maxN;
    c->y_floats = y_floats;
    /* a product's input: 2R bf16 rows (hi/lo) or R f32 rows, padded as gemm_cols pads */
    size_t act_bytes = (size_t)gemm_cols(2 * nr) * 2;
    if ((size_t)gemm_cols(nr) * 4 > act_bytes) act_bytes = (size_t)gemm_cols(nr) * 4;
    struct { void **p; size_t bytes; } want[] = {
        {(void **)&c->x, (size_t)nr * H * 4},
        {(void **)&c->y, y_floats * 4},
        {(void **)&c->q, (size_t)nr * c->q_dim * 4},
        {(void **)&c->attn, (size_t)nr * c->q_dim * 4},
        {(void **)&c->h, (size_t)(nr < 8 ? nr : 8) * I * 4},
        {(void **)&c->part, part * 4},
        {(void **)&c->xo, (size_t)no * H * 4},
        {(void **)&c->logits, (size_t)gemm_cols(2 * no) * V * 4},
        {(void **)&c->act, maxK * act_bytes},
        {(void **)&c->d_res, (size_t)no * 12},
        {(void **)&c->counters, (size_t)nr * g->n_kv_heads * sizeof(unsigned)},
        {(void **)&c->sscratch, (size_t)no * 16 * 16},
        {(void **)&c->scnt, (size_t)no * sizeof(unsigned)},
        {(void **)&c->llog, c->tp ? (size_t)gemm_cols(2 * no) * c->v_share * 4 : 0},
        {(void **)&c->gath, c->tp ? (size_t)c->n_ranks * 2 * no * c->v_share * 4 : 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cudaError_t e = cudaMalloc(want[i].p, want[i].bytes ? want[i].bytes : 16);
        if (e != cudaSuccess) {
            acts_free(c);
            return eng_seterr(err, ENG_ENOMEM, "CUDA: cannot allocate %zu bytes of activations "
                              "for %d rows: %s", want[i].bytes, nr, cudaGetErrorString(e));
        }
    }
    cudaError_t e = cudaMemset(c->counters, 0, (size_t)nr * g->n_kv_heads * sizeof(unsigned));
    if (e == cudaSuccess) e = cudaMemset(c->scnt, 0, (size_t)no * sizeof(unsigned));
    if (e == cudaSuccess) e = cudaMallocHost((void **)&c->h_res, (size_t)no * 12);
    if (e != cudaSuccess) {
        acts_free(c);
        return eng_seterr(err, ENG_ENOMEM, "CUDA: pinned result buffer: %s", cudaGetErrorString(e));
    }
    c->cap_rows = nr;
    c->cap_out = no;
    return ENG_OK;
}

static int ensure_in(cu_ctx *c, size_t bytes, eng_err *err) {
    if (bytes <= c->cap_in) return ENG_OK;
    size_t n = c->cap_in ? 2 * c->cap_in : 64 << 10;
    while (n < bytes) n *= 2;
    graphs_clear(c);
    cudaFree(c->d_in);
    cudaFreeHost(c->h_in);
    c->d_in = c->h_in = NULL;
    c->cap_in = 0;
    cudaError_t e = cudaMalloc((void **)&c->d_in, n);
    if (e == cudaSuccess) e = cudaMallocHost((void **)&c->h_in, n);
    if (e != cudaSuccess)
        return eng_seterr(err, ENG_ENOMEM, "CUDA: input buffer of %zu bytes: %s", n,
                          cudaGetErrorString(e));
    c->cap_in = n;
    return ENG_OK;
}

/* ------------------------------------------------------------ forward */
/* The KV pool's layout as the attention kernels take it: layer 0 of a
 * global layer (enqueue sets each layer's base and a sliding layer's
 * window). */
static kern_kv kv_shape(const cu_ctx *c) {
    kern_kv kv = {c->kv, (long long)c->blk_elems, c->cfg.n_kv_heads, c->cfg.head_dim, c->block_size,
                  0, c->kv_dt};
    return kv;
}

/* Decode attention's variant for passes of R rows whose longest row has
 * max_len positions: as set, else 4 for 2-64 rows whose variant-3 blocks
 * would each walk several chunks (kern_attn_long; measured 1.2-1.5x faster
 * there, NOTES.md v25), or 5 in its place over a bf16 pool at 8-64 rows
 * (kern_attn5_takes; up to 22% faster steps there, NOTES.md v27), else 3 for
 * many rows or for a few long ones, else 2. */
static int attn_variant(const cu_ctx *c, int R, int max_len) {
    if (c->opt.attn_variant) return c->opt.attn_variant;
    if (kern_attn_long(R, kv_shape(c), c->cfg.n_heads, c->opt.attn_span, max_len, c->n_sms))
        return kern_attn5_takes(R, kv_shape(c), c->cfg.n_heads) ? 5 : 4;
    return R >= ATTN3_MIN_ROWS || (long)R * max_len >= ATTN3_FEW_WORK ? 3 : 2;
}

/* Split (c->tp): the sum over the ranks of n floats at buf, in place. */
static int tp_sum(cu_ctx *c, float *buf, size_t n, eng_err *err) {
#ifdef BRISK_NCCL
    return kern_tp_allreduce(c->tp, c->rank, buf, n, c->st, err);
#else
    (void)c; (void)buf; (void)n;
    return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: tensor parallelism needs NCCL");
#endif
}

/* Split: the ranks' logits (rows x v_share at llog) put together into
 * logits, [rows][V], on every rank. */
static int tp_gather_logits(cu_ctx *c, int rows, eng_err *err) {
#ifdef BRISK_NCCL
    int rc = kern_tp_allgather(c->tp, c->rank, c->llog, c->gath, (size_t)rows * c->v_share, c->st,
                               err);
    if (rc) return rc;
    KC(kern_tp_spread(c->st, c->gath, c->n_ranks, rows, c->v_share, c->cfg.vocab_size, c->logits));
    return ENG_OK;
#else
    (void)c; (void)rows;
    return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: tensor parallelism needs NCCL");
#endif
}

/* Enqueues the whole model for the pass p on the stream. */
static int enqueue(cu_ctx *c, const pass_plan *p, eng_err *err) {
    const int R = p->R, O = p->O;
    const eng_config *g = &c->cfg;
    const kern_step *stp = (const kern_step *)c->d_in;
    cudaStream_t s = c->st;
    const int H = g->hidden, I = g->intermediate, V = g->vocab_size, nh = g->n_heads;
    const int QKV = c->qkv_dim, QD = c->q_dim, wdt = c->wdt, sms = c->n_sms;
    const float eps = g->rms_eps;
    const bool small = R <= gemv_rows(c), quant = quant_on(c), qs = qs_pass(c, R);
    /* ws: the layer products from their bf16 halves (c->ws), four parts */
    const bool ws = c->ws && !small && !qs;
    const int amode = qs || ws ? KERN_ACT_SPLIT : wdt == KERN_F32 ? KERN_ACT_F32
                    : act_bf16_only(c) ? KERN_ACT_BF16 : KERN_ACT_SPLIT;
    const int mul = amode == KERN_ACT_SPLIT ? 2 : 1, act_bf16 = amode != KERN_ACT_F32;
    const int splits = p->att_splits;
    const int pdl = !c->opt.no_pdl, qst = c->opt.quant_tc_stage;
    const bool q16 = c->opt.act == ENG_ACT_Q16;
    int rc, np = 1;   /* np: parts of the last product (see PROD) */
    /* one call site for the decode attention variants */
    const int skip = c->skip;
    const int av = p->att_variant;
#define ATTN(out, act, mode) ((skip & KERN_SKIP_ATTN) ? 0 : (av == 5) \
        ? kern_attention5(s, c->q, kv, stp, R, nh, splits, c->opt.attn_span, out, act, mode, c->part, c->counters, pdl) \
        : (av == 4) \
        ? kern_attention4(s, c->q, kv, stp, R, nh, splits, c->opt.attn_span, out, act, mode, c->part, c->counters, pdl) \
        : (av == 3) \
        ? kern_attention3(s, c->q, kv, stp, R, nh, splits, c->opt.attn_span, out, act, mode, c->part, c->counters, pdl) \
        : (av == 2) \
        ? kern_attention2(s, c->q, kv, stp, R, nh, splits, c->opt.attn_span, out, act, mode, c->part, c->counters, pdl) \
        : kern_attention(s, c->q, kv, stp, R, nh, splits, out, act, mode, c->part, c->counters, pdl))
#define SKIP(mask, call) ((skip & (mask)) ? 0 : (call))
#define GEMM(W, N, K, rows, out, sl) do { \
        if ((rc = kern_blas_gemm_sliced(c->blas, s, W, wdt, N, K, c->act, act_bf16, \
                                        gemm_cols((rows) * mul), sl, out, err))) \
            return rc; } while (0)
    /* out = W act by kern_skinny when it takes the product (sp parts), else
     * cuBLASLt in sl K slices (mul * sl parts), left out under the ablation
     * mask; np = the parts of out that the consumer adds.  The parts of
     * each layer product, worked out once for the pass: */
    int nk[4][2], sp[4], dsl = 1;
    layer_products(c, nk);
    for (int i = 0; i < 4; i++) sp[i] = skinny_parts(c, nk[i][0], nk[i][1], R, c->y_floats);
    if ((rc = down_slices(c, R, mul, &dsl, err))) return rc;   /* 1 on the GEMV path */
    /* qs: every product from the blocks by kern_qskinny in qp[i] parts,
     * layer 0's choice for every layer (a slicing depends on the shape
     * only, and qs_ok holds for each layer) */
    int qp[4] = {0, 0, 0, 0};
    if (qs) {
        const kern_qw *ql[4] = {&c->layers[0].qqkv, &c->layers[0].qo, &c->layers[0].qgu, &c->layers[0].qdown};
        for (int i = 0; i < 4; i++) {
            const size_t mp = c->y_floats / ((size_t)R * nk[i][0]);
            qp[i] = kern_qskinny_parts(ql[i], nk[i][0], nk[i][1], R, sms, mp > 64 ? 64 : (int)mp);
            if (qp[i] < 1)
                return eng_seterr(err, ENG_EINVAL, "CUDA backend: no tensor-core plan for product %d "
                                  "at %d rows", i, R);
        }
    }
    /* ws: out = hi W (act hi, lo) then lo W (act hi, lo), the second at
     * part 2 (its padding columns fall past part 3, in y's room for it) */
#define GEMM_WS(W, N, K, rows, out) do { \
        const int cols_ = gemm_cols(2 * (rows)); \
        if ((rc = kern_blas_gemm_sliced(c->blas, s, W, KERN_BF16, N, K, c->act, 1, cols_, 1, out, \
                                        err)) || \
            (rc = kern_blas_gemm_sliced(c->blas, s, (const uint16_t *)(W) + (size_t)(N) * (K), \
                                        KERN_BF16, N, K, c->act, 1, cols_, 1, \
                                        (out) + (size_t)2 * (rows) * (N), err))) \
            return rc; } while (0)
#define PROD(W, QW, N, K, rows, out, sp, sl, mask, pi) do { \
        np = qs ? qp[pi] : ws ? 4 : (sp) ? (sp) : mul * (sl); \
        if (skip & (mask)) break; \
        if (qs) KC(kern_qskinny(s, &(QW), N, K, c->act, rows, np, out, sms, pdl, qst)); \
        else if (ws) { \
            if (c->lean) KC(kern_dequant_halves(s, &(QW), N, K, c->wscratch)); \
            GEMM_WS(c->lean ? (const void *)c->wscratch : (const void *)(W), N, K, rows, out); \
        } \
        else if (sp) KC(kern_skinny(s, W, N, K, c->act, rows, mul == 2, sp, out, sms, pdl)); \
        else GEMM(W, N, K, rows, out, sl); } while (0)

    /* Gemma 3 and Qwen3 (eng.h): q/k norms and a query scale other than
     * 1/sqrt(hd) are kern_rope_kv's work, so their GEMV passes take it
     * apart from the q/k/v product; a sliding layer's attention
     * (kv.window) is kern_attention's, with its own splits (the part
     * buffer is sized for them); output norms go through add+norm; GeGLU
     * is the GLU kernels' gelu flag. */
    const bool fuse_rope = !c->opt.unfused_rope && !g->qk_norm && c->q_scale == 1.0f;
    const int glu = g->gelu ? KERN_GEGLU : KERN_SWIGLU;
    const int wsplits = kern_attn_splits(R, g->n_kv_heads, sms);
#define ATTN_WIN(out, act, mode) SKIP(KERN_SKIP_ATTN, kern_attention(s, c->q, kv, stp, R, nh, \
        wsplits, out, act, mode, c->part, c->counters, pdl))
    /* a GEMV product from the quantized blocks when the product has them */
    /* ENG_ACT_BF16: the dense GEMV kernels round their inputs (gwdt), but
     * the down product's, which the gate|up GEMV's GLU epilogue rounds as
     * it writes them (wd: the weight type and flag of a call) */
    const int gwdt = wdt | (c->opt.act == ENG_ACT_BF16 ? KERN_GEMV_IN_BF16 : 0);
#define GEMV_W(wd, qw, W, N, K, x, rows, nw, mode, y) ((quant && (qw).n_seg) \
        ? kern_qgemv(s, &(qw), N, K, x, rows, nw, eps, mode, y, sms, pdl) \
        : kern_gemv(s, W, wd, N, K, x, rows, nw, eps, mode, y, sms, pdl))
#define GEMV(...) GEMV_W(gwdt, __VA_ARGS__)
    if (c->qembed.n_seg) KC(kern_embed_q(s, &c->qembed, V, H, stp, R, g->embed_scale, c->x, pdl));
    else KC(kern_embed(s, c->embed, wdt, H, stp, R, g->embed_scale, c->x, pdl));
    /* ENG_ACT_Q16: in a wide pass the kernels that write a product's input
     * round it (qm), attention's among them; in GEMV passes (up to
     * q16_rows) kern_qgemv rounds its own inputs */
    const int qf = q16 ? KERN_ACT_Q16 : 0, qm = amode | qf;
    if (!small)
        KC(kern_add_norm(s, c->x, NULL, 0, R, H, NULL, c->layers[0].attn_norm, eps, c->act, qm, pdl));
    for (int l = 0; l < g->n_layers; l++) {
        const cu_layer *w = &c->layers[l];
        const bool slide = eng_layer_sliding(g, l);
        const float *freq = slide && c->inv_freq_local ? c->inv_freq_local : c->inv_freq;
        kern_kv kv = kv_shape(c);
        kv.base = (char *)c->kv + (size_t)l * c->layer_elems * c->kv_eb;
        kv.window = slide ? g->sliding_window : 0;
        if (small && fuse_rope) {
            KC(SKIP(KERN_SKIP_QKVO, (quant && w->qqkv.n_seg)
                    ? kern_qgemv_qkv(s, &w->qqkv, H, c->x, R, w->attn_norm, eps, w->bqkv, stp, nh,
                                     freq, c->q, kv, sms, pdl)
                    : kern_gemv_qkv(s, w->wqkv, gwdt, H, c->x, R, w->attn_norm, eps, w->bqkv, stp,
                                    nh, freq, c->q, kv, sms, pdl)));
        } else if (small) {
            KC(SKIP(KERN_SKIP_QKVO, GEMV(w->qqkv, w->wqkv, QKV, H, c->x, R, w->attn_norm,
                                         KERN_STORE, c->y)));
            KC(SKIP(KERN_SKIP_ROPE, kern_rope_kv(s, c->y, 1, w->bqkv, stp, R, nh, freq, w->q_norm,
                                                 w->k_norm, eps, c->q_scale, c->q, kv, pdl)));
        }
        if (small) {
            KC(kv.window ? ATTN_WIN(c->attn, NULL, 0) : ATTN(c->attn, NULL, 0));
            /* with output norms, or split (a partial sum the ranks add up
             * first): the product apart, then x += (norm of) the product */
            const float *pa = w->post_attn_norm, *pf = w->post_ffn_norm;
            const bool sa = pa || c->tp, sf = pf || c->tp;
            KC(SKIP(KERN_SKIP_QKVO, GEMV(w->qo, w->wo, H, QD, c->attn, R, NULL,
                                         sa ? KERN_STORE : KERN_RESID, sa ? c->y : c->x)));
            if (c->tp && (rc = tp_sum(c, c->y, (size_t)R * H, err))) return rc;
            if (sa) KC(kern_add_norm(s, c->x, c->y, 1, R, H, pa, NULL, eps, NULL, amode, pdl));
            KC(SKIP(KERN_SKIP_FFN, GEMV(w->qgu, w->wgu, 2 * I, H, c->x, R, w->ffn_norm, glu,
                                        c->h)));
            KC(SKIP(KERN_SKIP_FFN, GEMV_W(wdt, w->qdown, w->wdown, H, I, c->h, R, NULL,
                                        sf ? KERN_STORE : KERN_RESID, sf ? c->y : c->x)));
            if (c->tp && (rc = tp_sum(c, c->y, (size_t)R * H, err))) return rc;
            if (sf) KC(kern_add_norm(s, c->x, c->y, 1, R, H, pf, NULL, eps, NULL, amode, pdl));
        } else {
            const float *next = l + 1 < g->n_layers ? c->layers[l + 1].attn_norm : NULL;
            PROD(w->wqkv, w->qqkv, QKV, H, R, c->y, sp[PR_QKV], 1, KERN_SKIP_QKVO, PR_QKV);
            KC(SKIP(KERN_SKIP_ROPE, kern_rope_kv(s, c->y, np, w->bqkv, stp, R, nh, freq, w->q_norm,
                                                 w->k_norm, eps, c->q_scale, c->q, kv, pdl)));
            if (kv.window) {
                KC(ATTN_WIN(NULL, c->act, qm));
            } else if (p->pg && !(skip & KERN_SKIP_ATTN)) {
                if ((rc = kern_attention_gemm(c->blas, s, c->q, kv, stp, p->keys, R, nh, c->gw,
                                              c->gw_floats, c->attn, pdl, err)))
                    return rc;
                KC(kern_to_act(s, c->attn, R, QD, c->act, qm, pdl));
            } else if (p->pf)
                KC(SKIP(KERN_SKIP_ATTN, kern_attention_prefill(s, c->q, kv, stp, R, nh, NULL, c->act, qm,
                                                               pdl)));
            else
                KC(ATTN(NULL, c->act, qm));
            PROD(w->wo, w->qo, H, QD, R, c->y, sp[PR_O], 1, KERN_SKIP_QKVO, PR_O);
            /* split: the ranks add up the parts add+norm reads, np of [R][H] */
            if (c->tp && (rc = tp_sum(c, c->y, (size_t)np * R * H, err))) return rc;
            KC(kern_add_norm(s, c->x, c->y, np, R, H, w->post_attn_norm, w->ffn_norm, eps, c->act,
                             qm, pdl));
            PROD(w->wgu, w->qgu, 2 * I, H, R, c->y, sp[PR_GU], 1, KERN_SKIP_FFN, PR_GU);
            KC(SKIP(KERN_SKIP_FFN, kern_swiglu(s, c->y, np, R, I, g->gelu, c->act, qm, pdl)));
            PROD(w->wdown, w->qdown, H, I, R, c->y, sp[PR_DOWN], dsl, KERN_SKIP_FFN, PR_DOWN);
            if (c->tp && (rc = tp_sum(c, c->y, (size_t)np * R * H, err))) return rc;
            KC(kern_add_norm(s, c->x, c->y, np, R, H, w->post_ffn_norm, next, eps, c->act, qm,
                             pdl));
        }
    }
    if (O > 0 && !(skip & KERN_SKIP_HEAD)) {
        int *ids = c->d_res;
        float *lp = (float *)(c->d_res + c->cap_out), *ent = lp + c->cap_out;
        const float *lo = NULL;
        /* split: each rank its vocabulary rows into llog, gathered after */
        const int HV = c->tp ? c->v_share : V;
        float *hl = c->tp ? c->llog : c->logits;
        if (O <= gemv_rows(c)) {
            KC(kern_gather_norm(s, c->x, stp, O, H, c->final_norm, eps, c->xo, KERN_ACT_F32, pdl));
            KC(GEMV(c->qhead, c->lm_head, HV, H, c->xo, O, NULL, KERN_STORE, hl));
            if (c->tp && (rc = tp_gather_logits(c, O, err))) return rc;
        } else if (ws && !qs_pass(c, O) && c->lean) {
            /* no dense lm_head: kern_qskinny in launches of up to 256 rows
             * (xo: the normalised f32 rows, made split launch by launch) */
            KC(kern_gather_norm(s, c->x, stp, O, H, c->final_norm, eps, c->xo, KERN_ACT_F32, pdl));
            const int step = GRAPH_MAX_ROWS;   /* kern_qskinny's most rows a launch */
            for (int o0 = 0; o0 < O; o0 += step) {
                const int n = O - o0 < step ? O - o0 : step;
                KC(kern_to_act(s, c->xo + (size_t)o0 * H, n, H, c->act, KERN_ACT_SPLIT | qf, pdl));
                KC(kern_qskinny(s, &c->qhead, HV, H, c->act, n, 1, hl + (size_t)o0 * HV, sms, pdl, qst));
            }
        } else if (ws && !qs_pass(c, O)) {
            /* the lm_head stays f32 (with a tied embedding, the same rows) */
            KC(kern_gather_norm(s, c->x, stp, O, H, c->final_norm, eps, c->act, KERN_ACT_F32 | qf,
                                pdl));
            if ((rc = kern_blas_gemm_sliced(c->blas, s, c->lm_head, KERN_F32, HV, H, c->act, 0,
                                            gemm_cols(O), 1, hl, err)))
                return rc;
        } else {
            KC(kern_gather_norm(s, c->x, stp, O, H, c->final_norm, eps, c->act, qm, pdl));
            if (qs || ws) {   /* one part: V rows fill the GPU */
                KC(kern_qskinny(s, &c->qhead, HV, H, c->act, O, 1, hl, sms, pdl, qst));
            } else {
                /* cuBLASLt: kern_skinny was slower on the lm_head at 8 and 16 rows
                 * (1.5B: 181 vs 173 us, 232 vs 178) */
                GEMM(c->lm_head, HV, H, O, hl, 1);
                /* hi/lo activations: high rows, then low rows */
                if (c->tp && (rc = tp_gather_logits(c, O * mul, err))) return rc;
                if (amode == KERN_ACT_SPLIT) lo = c->logits + (size_t)O * V;
            }
        }
        KC(kern_sample(s, c->logits, lo, O, V, stp, ids, lp, ent, kern_sample_blocks(O, sms),
                       c->sscratch, c->scnt, pdl));
    }
#undef ATTN
#undef ATTN_WIN
#undef SKIP
#undef GEMM
#undef GEMM_WS
#undef GEMV
#undef GEMV_W
#undef PROD
    return ENG_OK;
}

static int bucket(int n) {
    if (n <= 8) return n;
    if (n <= 128) return (n + 15) & ~15;
    return (n + 63) & ~63;
}

/* Runs the model from a graph for this shape: eagerly at first (so modules
 * load and cuBLASLt picks its algorithms outside capture), then captured,
 * then replayed. */
static int run_graph(cu_ctx *c, const pass_plan *p, eng_err *err) {
    cu_graph *gr = NULL;
    for (int i = 0; i < c->n_graphs; i++)
        if (!memcmp(&c->graphs[i].plan, p, sizeof *p)) gr = &c->graphs[i];
    if (!gr) {
        if (c->n_graphs < MAX_GRAPHS) gr = &c->graphs[c->n_graphs++];
        else {
            gr = &c->graphs[0];
            for (int i = 1; i < MAX_GRAPHS; i++)
                if (c->graphs[i].used < gr->used) gr = &c->graphs[i];
            if (gr->exec) cudaGraphExecDestroy(gr->exec);
        }
        memset(gr, 0, sizeof *gr);
        memcpy(&gr->plan, p, sizeof *p);
    }
    gr->used = ++c->tick;
    /* decode shapes recur at once; a prompt-sized shape is captured only when
     * seen a third time (capture + instantiation cost ~4 ms, measured) */
    if (!gr->exec && gr->seen++ < (p->R <= 16 ? 1 : 2)) return enqueue(c, p, err);
    if (!gr->exec) {
        CK(cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal));
        int rc = enqueue(c, p, err);
        cudaGraph_t graph = NULL;
        cudaError_t e = cudaStreamEndCapture(c->st, &graph);
        if (rc) { if (graph) cudaGraphDestroy(graph); return rc; }
        CK(e);
        e = cudaGraphInstantiate(&gr->exec, graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess) { gr->exec = NULL; return dev_fail(c, err, e, "cudaGraphInstantiate"); }
    }
    CK(cudaGraphLaunch(gr->exec, c->st));
    return ENG_OK;
}

static int check_batch(const cu_ctx *c, const eng_fwd_batch *b, eng_err *err) {
    const eng_config *g = &c->cfg;
    if (!b || b->n_rows < 1 || !b->tokens || !b->pos || !b->row_seq || b->n_seqs < 1 ||
        !b->seq_len || !b->block_table)
        return eng_seterr(err, ENG_EINVAL, "CUDA forward: empty or incomplete batch");
    if (b->n_out < 0 || b->n_out > b->n_rows || (b->n_out > 0 && !b->out_rows))
        return eng_seterr(err, ENG_EINVAL, "CUDA forward: bad out rows (%d of %d)", b->n_out,
                          b->n_rows);
    if (b->sampled && b->n_out > 0 && (!b->samp || !b->rng))
        return eng_seterr(err, ENG_EINVAL, "CUDA forward: sampling asked without settings or rng");
    for (int s = 0; s < b->n_seqs; s++) {
        int len = b->seq_len[s], nb = (len + c->block_size - 1) / c->block_size;
        if (len < 0) return eng_seterr(err, ENG_EINVAL, "CUDA forward: sequence %d has length %d", s, len);
        if (nb > 0 && !b->block_table[s])
            return eng_seterr(err, ENG_EINVAL, "CUDA forward: sequence %d has no block table", s);
        for (int i = 0; i < nb; i++)
            if (b->block_table[s][i] < 0 || b->block_table[s][i] >= c->n_blocks)
                return eng_seterr(err, ENG_EINVAL, "CUDA forward: sequence %d block %d is %d "
                                  "(pool has %d)", s, i, b->block_table[s][i], c->n_blocks);
    }
    for (int r = 0; r < b->n_rows; r++) {
        int sq = b->row_seq[r];
        if (b->tokens[r] < 0 || b->tokens[r] >= g->vocab_size)
            return eng_seterr(err, ENG_EINVAL, "CUDA forward: row %d token %d outside vocab %d", r,
                              b->tokens[r], g->vocab_size);
        if (sq < 0 || sq >= b->n_seqs)
            return eng_seterr(err, ENG_EINVAL, "CUDA forward: row %d names sequence %d of %d", r, sq,
                              b->n_seqs);
        if (b->pos[r] < 0 || b->pos[r] >= b->seq_len[sq])
            return eng_seterr(err, ENG_EINVAL, "CUDA forward: row %d position %d outside sequence "
                              "length %d", r, b->pos[r], b->seq_len[sq]);
    }
    for (int i = 0; i < b->n_out; i++)
        if (b->out_rows[i] < 0 || b->out_rows[i] >= b->n_rows)
            return eng_seterr(err, ENG_EINVAL, "CUDA forward: out row %d is %d", i, b->out_rows[i]);
    for (int i = 0; b->force && i < b->n_out; i++)
        if (b->force[i] >= g->vocab_size)
            return eng_seterr(err, ENG_EINVAL, "CUDA forward: forced id %d of out row %d outside vocab %d",
                              b->force[i], i, g->vocab_size);
    return ENG_OK;
}

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Packs the pass into h_in: header, then arrays; padding rows (R..Rp) run
 * token 0 at position 0 of a dummy sequence whose blocks are the scratch
 * block, so they touch no real KV. */
static int pack(cu_ctx *c, const eng_fwd_batch *b, int Rp, int Op, size_t *bytes, eng_err *err) {
    int width = 1;
    for (int s = 0; s < b->n_seqs; s++) {
        int nb = (b->seq_len[s] + c->block_size - 1) / c->block_size;
        if (nb > width) width = nb;
    }
    int S1 = b->n_seqs + 1;
    size_t o_tok = align16(sizeof(kern_step)), o_pos = align16(o_tok + 4 * (size_t)Rp);
    size_t o_rs = align16(o_pos + 4 * (size_t)Rp), o_out = align16(o_rs + 4 * (size_t)Rp);
    size_t o_k = align16(o_out + 4 * (size_t)Op), o_t = align16(o_k + 4 * (size_t)Op);
    size_t o_p = align16(o_t + 4 * (size_t)Op), o_u = align16(o_p + 4 * (size_t)Op);
    size_t o_f = align16(o_u + 8 * (size_t)Op);
    size_t o_tab = align16(o_f + 4 * (size_t)Op), end = o_tab + 4 * (size_t)S1 * width;
    int rc = ensure_in(c, end, err);
    if (rc) return rc;
    char *h = c->h_in, *d = c->d_in;
    int *tok = (int *)(h + o_tok), *pos = (int *)(h + o_pos), *rs = (int *)(h + o_rs);
    int *out = (int *)(h + o_out), *tk = (int *)(h + o_k), *tab = (int *)(h + o_tab);
    int *fo = (int *)(h + o_f);
    float *tt = (float *)(h + o_t), *tp = (float *)(h + o_p);
    double *uu = (double *)(h + o_u);
    for (int r = 0; r < Rp; r++) {
        bool real = r < b->n_rows;
        tok[r] = real ? b->tokens[r] : 0;
        pos[r] = real ? b->pos[r] : 0;
        rs[r] = real ? b->row_seq[r] : b->n_seqs;
    }
    for (int i = 0; i < Op; i++) {
        bool real = i < b->n_out;
        out[i] = real ? b->out_rows[i] : 0;
        fo[i] = real && b->force ? b->force[i] : -1;
        tt[i] = 0.f; tk[i] = 0; tp[i] = 1.f; uu[i] = 0.0;
        if (real && b->sampled) {
            const eng_sampling *sp = &b->samp[i];
            tt[i] = sp->temperature; tk[i] = sp->top_k; tp[i] = sp->top_p;
            if (sp->temperature > 0.f) uu[i] = eng_rng_uniform(&b->rng[i]);   /* the draw, as eng_sample's */
        }
    }
    for (int s = 0; s < S1; s++) {
        int nb = s < b->n_seqs ? (b->seq_len[s] + c->block_size - 1) / c->block_size : 0;
        for (int i = 0; i < width; i++) tab[(size_t)s * width + i] = i < nb ? b->block_table[s][i] : c->n_blocks;
    }
    kern_step *hd = (kern_step *)h;
    memset(hd, 0, sizeof *hd);
    hd->n_rows = Rp; hd->n_out = Op; hd->table_stride = width;
    hd->tokens = (const int *)(d + o_tok); hd->pos = (const int *)(d + o_pos);
    hd->row_seq = (const int *)(d + o_rs); hd->table = (const int *)(d + o_tab);
    hd->out_rows = (const int *)(d + o_out); hd->top_k = (const int *)(d + o_k);
    hd->temp = (const float *)(d + o_t); hd->top_p = (const float *)(d + o_p);
    hd->u = (const double *)(d + o_u);
    hd->force = (const int *)(d + o_f);
    *bytes = end;
    return ENG_OK;
}

/* kern_attention_gemm serves passes that no graph holds (more than
 * GRAPH_MAX_ROWS rows; measured faster than the other kernels from 300
 * prompt rows to 3072, NOTES.md v8) whose sequences' distinct keys are at
 * most GEMM_KEYS_MAX_RATIO times the longest row's context (forks of one
 * prompt share its blocks; unrelated sequences would multiply keys their
 * rows do not see), with a work buffer of at most GW_MAX_BYTES. */
#define GW_MAX_BYTES ((size_t)256 << 20)
#define GEMM_KEYS_MAX_RATIO 2

static int grow_ints(int **h, int **d, size_t *cap, size_t n) {
    if (n <= *cap) return 1;
    size_t want = n > 2 * *cap ? n : 2 * *cap;
    int *nh = (int *)realloc(*h, want * sizeof *nh), *nd = NULL;
    if (!nh) return 0;
    *h = nh;
    if (cudaMalloc((void **)&nd, want * sizeof *nd) != cudaSuccess) { cudaGetLastError(); return 0; }
    cudaFree(*d);
    *d = nd;
    *cap = want;
    return 1;
}

/* The pass's distinct blocks and each sequence's view of them (*keys:
 * block ids, valid slots, then [n_seqs][U] places, uploaded on the stream
 * as one array); 0 when they are too many or memory is short. */
#define GEMM_MAX_SEQS 64
static int gemm_keys(cu_ctx *c, const eng_fwd_batch *b, int max_len, kern_keys *keys) {
    const int bs = c->block_size, ns = b->n_seqs;
    int need[GEMM_MAX_SEQS], total = 0, U = 0;
    if (ns > GEMM_MAX_SEQS) return 0;
    for (int q = 0; q < ns; q++) need[q] = 0;
    for (int r = 0; r < b->n_rows; r++)
        if (b->pos[r] + 1 > need[b->row_seq[r]]) need[b->row_seq[r]] = b->pos[r] + 1;
    for (int q = 0; q < ns; q++) total += (need[q] + bs - 1) / bs;
    if (!c->stamp && !(c->stamp = (int *)malloc((size_t)c->n_blocks * sizeof *c->stamp))) return 0;
    if (!grow_ints(&c->hk, &c->dk, &c->k_cap, (size_t)total * (2 + ns))) return 0;
    for (int q = 0; q < ns; q++)
        for (int j = 0; j * bs < need[q]; j++) c->stamp[b->block_table[q][j]] = -1;
    int *blk = c->hk, *valid = c->hk + total;   /* valid moves to hk + U once U is known */
    for (int q = 0; q < ns; q++)
        for (int j = 0; j * bs < need[q]; j++) {
            const int pb = b->block_table[q][j], v = need[q] - j * bs < bs ? need[q] - j * bs : bs;
            if (c->stamp[pb] < 0) { c->stamp[pb] = U; blk[U] = pb; valid[U] = v; U++; }
            else if (v > valid[c->stamp[pb]]) valid[c->stamp[pb]] = v;
        }
    if ((long)U * bs > (long)GEMM_KEYS_MAX_RATIO * max_len + bs) return 0;
    memmove(c->hk + U, valid, (size_t)U * sizeof *valid);
    int *index = c->hk + 2 * U;
    for (size_t i = 0; i < (size_t)ns * U; i++) index[i] = -1;
    for (int q = 0; q < ns; q++)
        for (int j = 0; j * bs < need[q]; j++) index[(size_t)q * U + c->stamp[b->block_table[q][j]]] = j;
    if (cudaMemcpyAsync(c->dk, c->hk, (size_t)U * (2 + ns) * sizeof *c->hk, cudaMemcpyHostToDevice,
                        c->st) != cudaSuccess) { cudaGetLastError(); return 0; }
    keys->block = c->dk;
    keys->valid = c->dk + U;
    keys->index = c->dk + 2 * U;
    keys->n_blocks = U;
    keys->n_seqs = ns;
    keys->p0 = -1;
    int one_run = ns == 1;
    for (int r = 1; r < b->n_rows && one_run; r++) one_run = b->pos[r] == b->pos[0] + r;
    if (one_run) keys->p0 = b->pos[0];
    return 1;
}

/* Whether this pass takes kern_attention_gemm (see GW_MAX_BYTES), with
 * its keys in *keys; grows gw. */
static int gemm_attn_fits(cu_ctx *c, const eng_fwd_batch *b, int max_len, kern_keys *keys) {
    const eng_config *g = &c->cfg;
    if (c->opt.gemm_attn < 0 || b->n_rows <= GRAPH_MAX_ROWS || !gemm_keys(c, b, max_len, keys))
        return 0;
    const int nk = keys->n_blocks * c->block_size;
    size_t want = kern_attention_gemm_floats(g->n_heads, g->head_dim, nk, 1024);
    const size_t least = kern_attention_gemm_floats(g->n_heads, g->head_dim, nk, 16);
    if (want * 4 > GW_MAX_BYTES) want = GW_MAX_BYTES / 4;
    if (want < least) return 0;
    if (c->gw_floats < want) {
        cudaFree(c->gw);
        c->gw_floats = 0;
        if (cudaMalloc((void **)&c->gw, want * 4) != cudaSuccess) {
            c->gw = NULL;
            cudaGetLastError();   /* out of memory is not sticky: the other kernels serve */
            return 0;
        }
        c->gw_floats = want;
    }
    return 1;
}

/* One rank's pass (the only one unsplit); outputs: it writes the batch's
 * results (rank 0: every rank computes the same ones). */
static int forward_one(cu_ctx *c, const eng_fwd_batch *b, bool outputs, eng_err *err) {
    if (c->broken)
        return eng_seterr(err, ENG_EIO, "CUDA backend unusable after a device error (%s)",
                          c->broken_msg);
    int rc = check_batch(c, b, err);
    if (rc) return rc;
    const bool graph = !c->opt.no_graphs && b->n_rows <= GRAPH_MAX_ROWS;
    const int Rp = graph ? bucket(b->n_rows) : b->n_rows;
    const int Op = b->n_out == 0 ? 0 : graph ? bucket(b->n_out) : b->n_out;
    if ((rc = ensure_rows(c, Rp, Op, err))) return rc;
    size_t bytes;
    if ((rc = pack(c, b, Rp, Op, &bytes, err))) return rc;
    CK(cudaMemcpyAsync(c->d_in, c->h_in, bytes, cudaMemcpyHostToDevice, c->st));
    /* prompt-like passes (several rows per sequence on average) with enough
     * 16-row tiles to fill the GPU take the tiled prefill attention (at 512
     * rows of 1.5B, 64 tiles, it was 8% slower than the per-row kernels) */
    pass_plan p;
    memset(&p, 0, sizeof p);   /* compared whole as a graph's key */
    p.R = Rp;
    p.O = Op;
    const int pfm = c->opt.prefill_attn;
    p.pf = pfm != KERN_PF_NEVER && Rp > gemv_rows(c) &&
            kern_attention_prefill_fits(c->cfg.n_heads, c->cfg.n_kv_heads, c->cfg.head_dim) &&
            (pfm == KERN_PF_ALWAYS ||
             (b->n_rows >= PF_ROWS_PER_SEQ * b->n_seqs &&
              (b->n_rows + KERN_PF_TILE - 1) / KERN_PF_TILE * c->cfg.n_kv_heads >= c->n_sms));
    /* decode attention's grid as deep as the longest row needs */
    int max_len = 1;
    for (int r = 0; r < b->n_rows; r++)
        if (b->pos[r] + 1 > max_len) max_len = b->pos[r] + 1;
    p.pg = !graph && gemm_attn_fits(c, b, max_len, &p.keys);
    if (!p.pg) memset(&p.keys, 0, sizeof p.keys);
    p.att_variant = attn_variant(c, Rp, max_len);
    /* c->part holds kern_attn_split_cap's splits at every row count */
    const int split_cap = kern_attn_split_cap(Rp, c->cfg.n_kv_heads, c->n_sms);
    const int s4 = p.att_variant == 4 ? kern_attn4_splits(Rp, kv_shape(c), c->cfg.n_heads, c->opt.attn_span,
                                                         max_len, c->n_sms)
                 : p.att_variant == 5 ? kern_attn5_splits(Rp, kv_shape(c), c->cfg.n_heads, c->opt.attn_span,
                                                          max_len, c->n_sms) : 0;
    p.att_splits = s4 > 0 ? (s4 < split_cap ? s4 : split_cap)
        : kern_attn_grid_splits(p.att_variant >= 4 ? 2 : p.att_variant, Rp,
                                kern_attn_splits(Rp, c->cfg.n_kv_heads, c->n_sms), c->opt.attn_span,
                                max_len, c->cfg.n_heads, c->n_sms);
    rc = graph ? run_graph(c, &p, err) : enqueue(c, &p, err);
    if (rc) {
        cudaStreamSynchronize(c->st);
        return rc;
    }
    const int O = outputs ? b->n_out : 0, V = c->cfg.vocab_size;
    if (O > 0 && b->sampled)
        CK(cudaMemcpyAsync(c->h_res, c->d_res, (size_t)c->cap_out * 12, cudaMemcpyDeviceToHost, c->st));
    if (O > 0 && b->logits) {
        bool split = Op > gemv_rows(c) && c->wdt == KERN_BF16 && !act_bf16_only(c) && !qs_pass(c, Rp);
        if (split)
            KC(kern_add_rows(c->st, c->logits, c->logits + (size_t)Op * V, (size_t)Op * V, 0));
        CK(cudaMemcpyAsync(b->logits, c->logits, (size_t)O * V * sizeof(float),
                           cudaMemcpyDeviceToHost, c->st));
    }
    CK(cudaStreamSynchronize(c->st));
    if (O > 0 && b->sampled) {
        const int *ids = c->h_res;
        const float *lp = (const float *)(c->h_res + c->cap_out), *ent = lp + c->cap_out;
        for (int i = 0; i < O; i++) {
            b->sampled[i].id = ids[i];
            b->sampled[i].logprob = lp[i];
            b->sampled[i].entropy = ent[i];
        }
    }
    return ENG_OK;
}

static int cu_forward(eng_backend *be, const eng_fwd_batch *b, eng_err *err) {
    return forward_one((cu_ctx *)be->ctx, b, true, err);
}

static int copy_one(cu_ctx *c, int src, int dst, eng_err *err) {
    if (c->broken)
        return eng_seterr(err, ENG_EIO, "CUDA backend unusable after a device error (%s)",
                          c->broken_msg);
    if (src < 0 || src >= c->n_blocks || dst < 0 || dst >= c->n_blocks)
        return eng_seterr(err, ENG_EINVAL, "CUDA copy_block: %d -> %d outside pool of %d", src, dst,
                          c->n_blocks);
    if (src == dst) return ENG_OK;
    const size_t w = c->blk_elems * c->kv_eb, pitch = c->layer_elems * c->kv_eb;
    char *kv = (char *)c->kv;
    CK(cudaMemcpy2DAsync(kv + (size_t)dst * w, pitch, kv + (size_t)src * w, pitch, w,
                         c->cfg.n_layers, cudaMemcpyDeviceToDevice, c->st));
    return ENG_OK;
}

static int cu_copy_block(eng_backend *be, int src, int dst, eng_err *err) {
    return copy_one((cu_ctx *)be->ctx, src, dst, err);
}

static void destroy_one(cu_ctx *c) {
    if (c) {
        if (c->st) cudaStreamSynchronize(c->st);
        graphs_clear(c);
        acts_free(c);
        cudaFree(c->d_in);
        cudaFreeHost(c->h_in);
        cudaFree(c->gw);
        cudaFree(c->dk);
        free(c->hk);
        free(c->stamp);
        for (int i = 0; i < c->n_allocs; i++) cudaFree(c->allocs[i]);
        free(c->allocs);
        free(c->layers);
        kern_blas_destroy(c->blas);
        if (c->st) cudaStreamDestroy(c->st);
        free(c);
    }
}

static void cu_destroy(eng_backend *be) {
    if (!be) return;
    destroy_one((cu_ctx *)be->ctx);
    free(be);
}

/* Split: rank c->rank's share of layer w as upload_layer reads it, f32
 * only: q/k/v and gate/up rows and the q/k/v biases point into the model's
 * f32 weights; o's and down's columns are copied into tmp[0] and tmp[1]
 * (the caller frees them); norms are whole. */
static int tp_layer_view(const cu_ctx *c, const eng_layer_w *w, eng_layer_w *v, float **tmp,
                         eng_err *err) {
    const eng_config *f = &c->full;
    const eng_tp_slice *t = &c->tl;
    const size_t H = f->hidden, hd = f->head_dim, QD = (size_t)f->n_heads * hd;
    const size_t qr = (size_t)t->q0 * hd, kr = (size_t)t->k0 * hd, qd = (size_t)t->nh * hd;
    memset(v, 0, sizeof *v);
    v->attn_norm = w->attn_norm;   v->t_attn_norm = w->t_attn_norm;
    v->ffn_norm = w->ffn_norm;     v->t_ffn_norm = w->t_ffn_norm;
    v->q_norm = w->q_norm;         v->t_q_norm = w->t_q_norm;
    v->k_norm = w->k_norm;         v->t_k_norm = w->t_k_norm;
    v->post_attn_norm = w->post_attn_norm;   v->t_post_attn_norm = w->t_post_attn_norm;
    v->post_ffn_norm = w->post_ffn_norm;     v->t_post_ffn_norm = w->t_post_ffn_norm;
    if (!w->wq || !w->wk || !w->wv || !w->wo || !w->w_gate || !w->w_up || !w->w_down)
        return eng_seterr(err, ENG_EFORMAT, "CUDA backend: split needs the model's f32 weights");
    v->wq = w->wq + qr * H;
    v->wk = w->wk + kr * H;
    v->wv = w->wv + kr * H;
    v->bq = w->bq ? w->bq + qr : NULL;
    v->bk = w->bk ? w->bk + kr : NULL;
    v->bv = w->bv ? w->bv + kr : NULL;
    v->w_gate = w->w_gate + (size_t)t->i0 * H;
    v->w_up = w->w_up + (size_t)t->i0 * H;
    tmp[0] = (float *)malloc(H * qd * sizeof(float));
    tmp[1] = (float *)malloc(H * (size_t)t->ni * sizeof(float));
    if (!tmp[0] || !tmp[1]) return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory");
    for (size_t r = 0; r < H; r++) {
        memcpy(tmp[0] + r * qd, w->wo + r * QD + qr, qd * sizeof(float));
        memcpy(tmp[1] + r * t->ni, w->w_down + r * f->intermediate + t->i0, t->ni * sizeof(float));
    }
    v->wo = tmp[0];
    v->w_down = tmp[1];
    return ENG_OK;
}

static int create(cu_ctx *c, const eng_model *m, eng_err *err) {
    const eng_config *g = &c->cfg;
    int rc, ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev < 1)
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: no CUDA device (%s)",
                          e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    int dev;
    CK(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    if (prop.major != 9)
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: built for sm_90a (Hopper); device "
                          "%s is sm_%d%d", prop.name, prop.major, prop.minor);
    c->n_sms = prop.multiProcessorCount;
    snprintf(c->dev_name, sizeof c->dev_name, "%.120s", prop.name);
    CK(cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking));
    if ((rc = kern_blas_create(&c->blas, err))) return rc;

    c->q_dim = g->n_heads * g->head_dim;
    c->kv_dim = g->n_kv_heads * g->head_dim;
    c->qkv_dim = c->q_dim + 2 * c->kv_dim;
    bool raw_bf16 = m->t_embed && m->t_embed->dtype == ENG_DT_BF16;
    c->wdt = (c->opt.bf16_weights || raw_bf16) ? KERN_BF16 : KERN_F32;
    size_t eb = c->wdt == KERN_BF16 ? 2 : 4, VH = (size_t)g->vocab_size * g->hidden;

    c->layers = (cu_layer *)calloc(g->n_layers, sizeof *c->layers);
    if (!c->layers) return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory");
    if (!m->layers) return eng_seterr(err, ENG_EFORMAT, "CUDA backend: model has no layers");
    /* split: each rank its share of every layer (dense: the quantized
     * blocks serve one GPU only) */
    if (!c->tp) {   /* the blocks first: whether kern_qskinny serves them all decides c->ws */
        for (int l = 0; l < g->n_layers && !rc; l++)
            rc = upload_qlayer(c, &m->layers[l], &c->layers[l], l, err);
        const eng_tensor *th = m->t_lm_head ? m->t_lm_head : m->t_embed;
        const int V = g->vocab_size;
        if (rc || (rc = put_qprod(c, &c->qhead, 1, &th, &V, NULL, g->hidden, eb, "lm_head blocks", err)))
            return rc;
        c->qs_ok = c->opt.quant && qs_sources_ok(m);
        c->ws = c->opt.quant_wide && c->opt.quant && c->qs_ok && c->wdt == KERN_F32;
        c->lean = c->ws && c->opt.quant_wide == 2;
    }
    /* ENG_ACT_BF16: one bf16 tensor-core product per wide product, so bf16
     * weights, read from the dense copy (the engine turns quant off) */
    if (c->opt.act == ENG_ACT_BF16 && (c->wdt != KERN_BF16 || quant_on(c) || c->tp))
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: --act bf16 needs %s",
                          c->wdt != KERN_BF16 ? "bf16 weights (a bf16 checkpoint, or "
                                                "eng_cuda_opts.bf16_weights); this model's dense "
                                                "weights are f32 (as a GGUF file's dense copy is)"
                          : c->tp ? "one GPU (no --tp)" : "the dense weights (--no-quant)");
    if (c->opt.act == ENG_ACT_Q16 && (rc = act_q16_setup(c, err))) return rc;
    if (c->opt.act == ENG_ACT_AUTO)   /* Q16 where it would not be refused */
        c->opt.act = act_q16_setup(c, NULL) == ENG_OK ? ENG_ACT_Q16 : ENG_ACT_F32;
    /* the f32 copy of a model loaded with eng_model_load_blocks: made here
     * unless the blocks alone serve (a dense embedding beside them is
     * converted from its tensor on the way up: put_weight) */
    const bool embed_q = g->tie_embeddings || quantizable(m->t_embed, g->vocab_size, g->hidden);
    if (!c->lean && (rc = eng_model_dense(m, err))) return rc;
    for (int l = 0; l < g->n_layers; l++) {
        if (!c->tp) {
            if ((rc = upload_layer(c, &m->layers[l], &c->layers[l], l, err))) return rc;
            continue;
        }
        eng_layer_w v;
        float *tmp[2] = {NULL, NULL};
        rc = tp_layer_view(c, &m->layers[l], &v, tmp, err);
        if (!rc) rc = upload_layer(c, &v, &c->layers[l], l, err);
        free(tmp[0]);
        free(tmp[1]);
        if (rc) return rc;
    }
    if (c->lean) {   /* one product's halves at a time */
        size_t most = 0;
        const size_t prods[4] = {(size_t)c->qkv_dim * g->hidden, (size_t)g->hidden * c->q_dim,
                                 (size_t)2 * g->intermediate * g->hidden,
                                 (size_t)g->hidden * g->intermediate};
        for (int i = 0; i < 4; i++) most = prods[i] > most ? prods[i] : most;
        if ((rc = dev_alloc(c, most * 4, (void **)&c->wscratch, "halves scratch", err))) return rc;
    }
    /* lean: the embedding from its blocks where it has them (not counted in
     * q_bytes: a step reads a few of its rows), and no dense lm_head (every
     * pass reads qhead: kern_qgemv, or kern_qskinny up to 256 rows a launch) */
    if (c->lean && g->tie_embeddings) {
        c->qembed = c->qhead;
    } else if (c->lean && embed_q) {
        if ((rc = put_qseg(c, &c->qembed, m->t_embed, g->vocab_size, g->hidden, 0,
                           "embed_tokens blocks", err)))
            return rc;
        c->q_bytes -= m->t_embed->nbytes;
    }
    /* split: the whole embedding on every rank (one row per token is read),
     * the lm_head's rows of the rank's vocabulary share */
    if (!c->qembed.n_seg) {
        if ((rc = dev_alloc(c, VH * eb, &c->embed, "embed_tokens", err))) return rc;
        if ((rc = put_weight(c, (char *)c->embed, m->t_embed, m->embed, VH, "embed_tokens", err)))
            return rc;
    }
    if (c->lean) {
        c->lm_head = NULL;
    } else if (c->tp) {
        size_t H = g->hidden, share = (size_t)c->v_share * H;
        int nv = g->vocab_size - c->v0 < c->v_share ? g->vocab_size - c->v0 : c->v_share;
        if ((rc = dev_alloc(c, share * eb, &c->lm_head, "lm_head share", err))) return rc;
        CK(cudaMemset(c->lm_head, 0, share * eb));
        if (nv > 0 && (rc = put_weight(c, (char *)c->lm_head, NULL, m->lm_head + (size_t)c->v0 * H,
                                       (size_t)nv * H, "lm_head share", err)))
            return rc;
        c->weight_bytes += share * eb;
    } else if (g->tie_embeddings) {
        c->lm_head = c->embed;
    } else {
        if ((rc = dev_alloc(c, VH * eb, &c->lm_head, "lm_head", err))) return rc;
        if ((rc = put_weight(c, (char *)c->lm_head, m->t_lm_head, m->lm_head, VH, "lm_head", err)))
            return rc;
    }
    /* the bytes a decode step reads: the lm_head (the tied embedding), not
     * a split rank's whole embedding, of which a step reads a few rows */
    c->weight_bytes += (c->tp ? 0 : VH * eb) + (size_t)g->hidden * 4;
    if ((rc = put_vec(c, &c->final_norm, m->t_final_norm, m->final_norm, g->hidden, "norm", err)))
        return rc;
    if (!m->rope_inv_freq) return eng_seterr(err, ENG_EFORMAT, "CUDA backend: model has no RoPE table");
    if ((rc = put_vec(c, &c->inv_freq, NULL, m->rope_inv_freq, g->head_dim / 2, "rope", err)))
        return rc;
    if (m->rope_inv_freq_local &&
        (rc = put_vec(c, &c->inv_freq_local, NULL, m->rope_inv_freq_local, g->head_dim / 2,
                      "rope (sliding layers)", err)))
        return rc;
    /* the attention kernels scale scores by 1/sqrt(hd); q carries the rest */
    c->q_scale = (float)((double)g->attn_scale * sqrt((double)g->head_dim));
    if (fabs((double)c->q_scale - 1.0) < 1e-6) c->q_scale = 1.0f;

    /* layer-major: one layer's blocks lie together, so a decode step's
     * attention for that layer touches few pages (kernels/NOTES.md, v6) */
    c->kv_dt = c->opt.kv_format == ENG_KV_BF16 ? KERN_BF16 : KERN_F32;
    c->kv_eb = eng_kv_elem_bytes(c->opt.kv_format);
    c->blk_elems = (size_t)2 * g->n_kv_heads * c->block_size * g->head_dim;
    c->layer_elems = (size_t)(c->n_blocks + 1) * c->blk_elems;
    size_t kv_bytes = (size_t)g->n_layers * c->layer_elems * c->kv_eb;
    c->weights_held = c->held_bytes;
    if ((rc = dev_alloc(c, kv_bytes, &c->kv, "KV pool", err))) return rc;
    CK(cudaMemset(c->kv, 0, kv_bytes));
    return ensure_rows(c, 16, 8, err);
}

extern "C" int eng_backend_cuda_create_opts(const eng_model *m, int n_blocks, int block_size,
                                            const eng_cuda_opts *o, eng_backend **out,
                                            eng_err *err) {
    if (!out) return eng_seterr(err, ENG_EINVAL, "CUDA backend: no output pointer");
    *out = NULL;
    if (!m) return eng_seterr(err, ENG_EINVAL, "CUDA backend: no model");
    if (n_blocks < 1 || block_size < 1)
        return eng_seterr(err, ENG_EINVAL, "CUDA backend: %d blocks of %d tokens", n_blocks,
                          block_size);
    int rc = check_config(&m->cfg, err);
    if (rc) return rc;
    if (o && o->kv_format != ENG_KV_F32 && o->kv_format != ENG_KV_BF16)
        return eng_seterr(err, ENG_EINVAL, "CUDA backend: unknown KV format %d", o->kv_format);
    if (o && !strcmp(eng_act_name(o->act), "?"))
        return eng_seterr(err, ENG_EINVAL, "CUDA backend: unknown activation format %d", o->act);
    cu_ctx *c = (cu_ctx *)calloc(1, sizeof *c);
    eng_backend *be = (eng_backend *)calloc(1, sizeof *be);
    if (!c || !be) {
        free(c); free(be);
        return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory");
    }
    be->n_ranks = 1;
    c->cfg = m->cfg;
    if (o) c->opt = *o;
    else eng_cuda_opts_default(&c->opt);
    c->n_blocks = n_blocks;
    c->block_size = block_size;
    opts_clamp(&c->opt);
    be->ctx = c;
    be->forward = cu_forward;
    be->copy_block = cu_copy_block;
    be->destroy = cu_destroy;
    if ((rc = create(c, m, err))) {
        cu_destroy(be);
        return rc;
    }
    *out = be;
    return ENG_OK;
}

/* ------------------------------------------------ tensor parallelism */
#ifndef BRISK_NCCL
extern "C" int eng_backend_cuda_tp_create(const eng_model *m, int n_blocks, int block_size,
                                          int kv_format, int n_ranks, eng_backend **out,
                                          eng_err *err) {
    (void)m; (void)n_blocks; (void)block_size; (void)kv_format; (void)n_ranks;
    if (out) *out = NULL;
    return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: tensor parallelism needs a build with "
                      "NCCL (make CUDA=1 where nccl.h is found)");
}
#else
/* The ranks of a split model, one cu_ctx each on its own GPU, and one host
 * thread each (eng_pool): a rank's NCCL calls block until its peers make
 * theirs, so the ranks' passes run at once, each enqueueing (or replaying
 * the CUDA graph of) the same pass on its device. */
typedef struct cu_tp_set {
    int n;
    cu_ctx *r[ENG_TP_MAX];
    eng_pool *pool;
    struct kern_tp *tp;
    const eng_fwd_batch *b;    /* the pass being run */
    /* ranks > 0 run a copy of it whose rng they advance (pack draws the
     * sampling uniforms on the host), so every rank samples alike and only
     * rank 0 moves the caller's streams */
    eng_fwd_batch bb[ENG_TP_MAX];
    uint64_t *rngs;
    size_t cap_rngs;
    int rc[ENG_TP_MAX];
    eng_err err[ENG_TP_MAX];
} cu_tp_set;

static void tp_worker(void *arg, int tid, int nth) {
    (void)nth;
    cu_tp_set *t = (cu_tp_set *)arg;
    cu_ctx *c = t->r[tid];
    cudaError_t e = cudaSetDevice(c->dev);
    t->rc[tid] = e != cudaSuccess ? dev_fail(c, &t->err[tid], e, "cudaSetDevice")
                                  : forward_one(c, tid ? &t->bb[tid] : t->b, tid == 0, &t->err[tid]);
}

static int cu_tp_forward(eng_backend *be, const eng_fwd_batch *b, eng_err *err) {
    cu_tp_set *t = (cu_tp_set *)be->ctx;
    if (!b) return eng_seterr(err, ENG_EINVAL, "CUDA forward: no batch");
    t->b = b;
    size_t nr = b->rng && b->n_out > 0 ? (size_t)b->n_out : 0;
    if (nr * (t->n - 1) > t->cap_rngs) {
        uint64_t *p = (uint64_t *)realloc(t->rngs, nr * (t->n - 1) * sizeof *p);
        if (!p) return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory");
        t->rngs = p;
        t->cap_rngs = nr * (t->n - 1);
    }
    for (int r = 1; r < t->n; r++) {
        t->bb[r] = *b;
        if (!nr) continue;
        t->bb[r].rng = t->rngs + nr * (r - 1);
        memcpy(t->bb[r].rng, b->rng, nr * sizeof *b->rng);
    }
    eng_pool_run(t->pool, tp_worker, t, INFINITY);   /* every rank, always */
    for (int r = 0; r < t->n; r++)
        if (t->rc[r]) {
            if (err) *err = t->err[r];
            return t->rc[r];
        }
    return ENG_OK;
}

static int cu_tp_copy_block(eng_backend *be, int src, int dst, eng_err *err) {
    cu_tp_set *t = (cu_tp_set *)be->ctx;
    for (int r = 0; r < t->n; r++) {
        cu_ctx *c = t->r[r];
        CK(cudaSetDevice(c->dev));
        int rc = copy_one(c, src, dst, err);
        if (rc) return rc;
    }
    return ENG_OK;
}

static void cu_tp_destroy(eng_backend *be) {
    if (!be) return;
    cu_tp_set *t = (cu_tp_set *)be->ctx;
    if (t) {
        eng_pool_destroy(t->pool);
        for (int r = 0; r < t->n; r++) {
            if (!t->r[r]) continue;
            cudaSetDevice(t->r[r]->dev);
            destroy_one(t->r[r]);
        }
        kern_tp_destroy(t->tp);
        free(t->rngs);
        free(t);
    }
    free(be);
}

extern "C" int eng_backend_cuda_tp_create(const eng_model *m, int n_blocks, int block_size,
                                          int kv_format, int n_ranks, eng_backend **out,
                                          eng_err *err) {
    if (!out) return eng_seterr(err, ENG_EINVAL, "CUDA backend: no output pointer");
    *out = NULL;
    if (!m) return eng_seterr(err, ENG_EINVAL, "CUDA backend: no model");
    if (kv_format != ENG_KV_F32 && kv_format != ENG_KV_BF16)
        return eng_seterr(err, ENG_EINVAL, "CUDA backend: unknown KV format %d", kv_format);
    if (n_blocks < 1 || block_size < 1 || n_ranks < 1 || n_ranks > ENG_TP_MAX)
        return eng_seterr(err, ENG_EINVAL, "CUDA backend: %d blocks of %d tokens over %d ranks",
                          n_blocks, block_size, n_ranks);
    int rc = check_config(&m->cfg, err);
    if (rc) return rc;
    eng_tp_slice tl[ENG_TP_MAX];
    for (int r = 0; r < n_ranks; r++) {
        if ((rc = eng_tp_slice_of(&m->cfg, n_ranks, r, &tl[r], err))) return rc;
        eng_config local = m->cfg;
        local.n_heads = tl[r].nh;
        local.n_kv_heads = tl[r].nkv;
        local.intermediate = tl[r].ni;
        if ((rc = check_config(&local, err))) return rc;   /* e.g. MLP columns per rank % 8 */
    }
    cu_tp_set *t = (cu_tp_set *)calloc(1, sizeof *t);
    eng_backend *be = (eng_backend *)calloc(1, sizeof *be);
    if (!t || !be) {
        free(t); free(be);
        return eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory");
    }
    be->ctx = t;
    be->forward = cu_tp_forward;
    be->copy_block = cu_tp_copy_block;
    be->destroy = cu_tp_destroy;
    be->n_ranks = n_ranks;
    if ((rc = kern_tp_create(n_ranks, &t->tp, err)) ||
        (rc = eng_pool_create(n_ranks, &t->pool, err))) {
        cu_tp_destroy(be);
        return rc;
    }
    /* vocabulary shares of equal size (NCCL's all-gather takes one count) */
    const int share = (m->cfg.vocab_size + n_ranks - 1) / n_ranks;
    for (int r = 0; r < n_ranks && !rc; r++) {
        cu_ctx *c = (cu_ctx *)calloc(1, sizeof *c);
        if (!c) { rc = eng_seterr(err, ENG_ENOMEM, "CUDA backend: out of host memory"); break; }
        t->r[t->n++] = c;
        c->full = m->cfg;
        c->cfg = m->cfg;
        c->cfg.n_heads = tl[r].nh;
        c->cfg.n_kv_heads = tl[r].nkv;
        c->cfg.intermediate = tl[r].ni;
        c->tl = tl[r];
        eng_cuda_opts_default(&c->opt);
        c->opt.kv_format = kv_format;
        c->opt.quant = 0;   /* the quantized blocks are whole tensors, not shares */
        opts_clamp(&c->opt);
        c->n_blocks = n_blocks;
        c->block_size = block_size;
        c->tp = t->tp;
        c->rank = r;
        c->n_ranks = n_ranks;
        c->dev = r;
        c->v0 = r * share;
        c->v_share = share;
        cudaError_t e = cudaSetDevice(r);
        rc = e != cudaSuccess ? dev_fail(c, err, e, "cudaSetDevice") : create(c, m, err);
    }
    if (rc) {
        cu_tp_destroy(be);
        return rc;
    }
    *out = be;
    return ENG_OK;
}
#endif

/* Bytes of weights as create would upload them. */
static size_t weight_bytes_of(const eng_model *m, int bf16) {
    const eng_config *g = &m->cfg;
    size_t H = g->hidden, I = g->intermediate, eb = bf16 ? 2 : 4;
    size_t qd = (size_t)g->n_heads * g->head_dim, kd = (size_t)g->n_kv_heads * g->head_dim;
    size_t layer = ((qd + 2 * kd) * H + H * qd + 3 * I * H) * eb + 2 * H * 4 + (qd + 2 * kd) * 4 +
                   (g->qk_norm ? 2 * g->head_dim * 4 : 0) + (g->post_norms ? 2 * H * 4 : 0);
    size_t vh = (size_t)g->vocab_size * H * eb;
    return g->n_layers * layer + vh * (g->tie_embeddings ? 1 : 2) + H * 4;
}

/* Bytes of t's rows in the kernels' layout (kern_qrow_bytes; padded Q6_K). */
static size_t qlayout_bytes(const eng_tensor *t) {
    const size_t rb = t->ndim == 2 ? kern_qrow_bytes(t->dtype, (int)t->shape[1]) : 0;
    return rb ? rb * (size_t)t->shape[0] : t->nbytes + t->nbytes / 8;
}

/* Bytes of the quantized blocks create keeps (at most: every 2-D weight). */
static size_t quant_bytes_of(const eng_model *m) {
    size_t n = 0;
    for (int l = 0; l < m->cfg.n_layers && m->layers; l++) {
        const eng_layer_w *w = &m->layers[l];
        const eng_tensor *t[7] = {w->t_wq ? w->t_wq : w->t_wq_gguf, w->t_wk ? w->t_wk : w->t_wk_gguf,
                                  w->t_wv, w->t_wo, w->t_gate, w->t_up, w->t_down};
        for (int i = 0; i < 7; i++)
            if (t[i] && kern_qtype_ok(t[i]->dtype)) n += qlayout_bytes(t[i]);
    }
    const eng_tensor *h = m->t_lm_head ? m->t_lm_head : m->t_embed;
    if (h && kern_qtype_ok(h->dtype)) n += qlayout_bytes(h);
    return n;
}

/* Bytes create keeps for the blocks alone (quant 2): the blocks, one
 * product's halves (wscratch), an untied embedding (its blocks where it
 * has them) and the vectors. */
static size_t lean_bytes_of(const eng_model *m) {
    const eng_config *g = &m->cfg;
    size_t H = g->hidden, I = g->intermediate, V = g->vocab_size;
    size_t qd = (size_t)g->n_heads * g->head_dim, kd = (size_t)g->n_kv_heads * g->head_dim;
    size_t most = (qd + 2 * kd) * H > 2 * I * H ? (qd + 2 * kd) * H : 2 * I * H;
    if (H * qd > most) most = H * qd;
    size_t n = quant_bytes_of(m) + most * 4 + (size_t)g->n_layers * (6 * H + qd + 2 * kd) * 4;
    if (!g->tie_embeddings)
        n += quantizable(m->t_embed, (int64_t)V, (int64_t)H) ? qlayout_bytes(m->t_embed) : V * H * 4;
    return n;
}

extern "C" int eng_backend_cuda_max_blocks(const eng_model *m, int block_size, int kv_format,
                                           int n_ranks, int quant, int *n_blocks, eng_err *err) {
    if (!m || !n_blocks || block_size < 1 || n_ranks < 1)
        return eng_seterr(err, ENG_EINVAL, "CUDA max_blocks: bad arguments");
    *n_blocks = 0;
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess)
        return eng_seterr(err, ENG_EUNSUPPORTED, "CUDA backend: no CUDA device (%s)",
                          cudaGetErrorString(e));
    const eng_config *g = &m->cfg;
    int bf16 = m->t_embed && m->t_embed->dtype == ENG_DT_BF16;
    /* split: a rank holds its share of the layers and lm_head, the whole
     * embedding, and its KV heads (one at least); device 0 stands for all.
     * One GPU with quant also holds the quantized blocks beside the dense
     * copy. */
    if (quant == 2 && (n_ranks > 1 || !lean_possible(m))) return lean_refused(err);
    size_t vh = (size_t)g->vocab_size * g->hidden * (bf16 ? 2 : 4);
    size_t need = (n_ranks > 1 ? weight_bytes_of(m, bf16) / n_ranks + vh
                   : quant == 2 ? lean_bytes_of(m)
                                : weight_bytes_of(m, bf16) + (quant ? quant_bytes_of(m) : 0)) +
                  ((size_t)3 << 30);   /* activations, workspace */
    int kv_heads = g->n_kv_heads >= n_ranks ? g->n_kv_heads / n_ranks : 1;
    size_t blk = (size_t)g->n_layers * 2 * kv_heads * block_size * g->head_dim *
                 eng_kv_elem_bytes(kv_format);
    if (free_b <= need + 2 * blk)
        return eng_seterr(err, ENG_ENOMEM, "CUDA backend: %zu MiB free on the device, the model "
                          "needs about %zu MiB before any KV block", free_b >> 20, need >> 20);
    size_t nb = (size_t)((double)(free_b - need) * 0.9 / (double)blk) - 1;
    *n_blocks = nb > (size_t)1 << 30 ? 1 << 30 : (int)nb;
    return ENG_OK;
}

extern "C" int eng_backend_cuda_create(const eng_model *m, int n_blocks, int block_size,
                                       int kv_format, int act, int quant, eng_backend **out,
                                       eng_err *err) {
    eng_cuda_opts o;
    eng_cuda_opts_default(&o);
    o.kv_format = kv_format;
    o.act = act;
    o.quant = quant != 0;
    if (quant == 2) {
        if (!lean_possible(m)) return lean_refused(err);
        o.quant_wide = 2;
    }
    return eng_backend_cuda_create_opts(m, n_blocks, block_size, &o, out, err);
}

/* The cu_ctx of each rank behind b into r (ENG_TP_MAX of them): one for an
 * unsplit backend, n_ranks for a split; 0 for a backend not CUDA's. */
static int ranks_of(const eng_backend *b, cu_ctx **r) {
    if (!b) return 0;
    if (b->forward == cu_forward) {
        r[0] = (cu_ctx *)b->ctx;
        return 1;
    }
#ifdef BRISK_NCCL
    if (b->forward == cu_tp_forward) {
        const cu_tp_set *t = (const cu_tp_set *)b->ctx;
        for (int i = 0; i < t->n; i++) r[i] = t->r[i];
        return t->n;
    }
#endif
    return 0;
}

/* Rank c's device current for the calls that follow (a split's ranks each
 * have their own; an unsplit backend's is the caller's). */
static void rank_device(const cu_ctx *c) {
    if (c->tp) cudaSetDevice(c->dev);
}

extern "C" int eng_cuda_set_opts(eng_backend *b, const eng_cuda_opts *o) {
    cu_ctx *r[ENG_TP_MAX];
    int n = o ? ranks_of(b, r) : 0;
    if (!n) return ENG_EINVAL;
    for (int i = 0; i < n; i++) {
        cu_ctx *c = r[i];
        rank_device(c);
        cudaStreamSynchronize(c->st);
        graphs_clear(c);
        int bf16 = c->opt.bf16_weights, kvf = c->opt.kv_format, act = c->opt.act;
        c->opt = *o;
        c->opt.bf16_weights = bf16;
        c->opt.kv_format = kvf;
        c->opt.act = act;
        if (c->tp) c->opt.quant = 0;   /* the quantized blocks are whole tensors, not shares */
        /* the bf16 halves serve the wide path only (GEMV kernels read f32) */
        if (c->ws) c->opt.quant = 1;
        opts_clamp(&c->opt);
    }
    return ENG_OK;
}

extern "C" int eng_cuda_bench_skip(eng_backend *b, int mask) {
    cu_ctx *r[ENG_TP_MAX];
    int n = ranks_of(b, r);
    if (!n) return ENG_EINVAL;
    for (int i = 0; i < n; i++) {
        rank_device(r[i]);
        cudaStreamSynchronize(r[i]->st);
        graphs_clear(r[i]);
        r[i]->skip = mask;
    }
    return ENG_OK;
}

extern "C" int eng_cuda_get_rank_info(const eng_backend *b, int rank, eng_cuda_info *info) {
    cu_ctx *r[ENG_TP_MAX];
    int n = ranks_of(b, r);
    if (!info || rank < 0 || rank >= n) return ENG_EINVAL;
    const cu_ctx *c = r[rank];
    memset(info, 0, sizeof *info);
    info->n_ranks = n;
    info->quant_wide = c->lean ? 2 : c->ws;
    info->weights_held = c->weights_held;
    info->quant = quant_on(c);
    info->quant_rows = !info->quant ? 0 : qs_ready(c) ? c->opt.quant_tc_rows : c->opt.quant_max_rows;
    info->dense_weight_bytes = c->weight_bytes;
    info->weight_bytes = info->quant ? c->weight_bytes - c->q_dense_bytes + c->q_bytes
                                     : c->weight_bytes;
    info->kv_bytes_per_token = (size_t)c->cfg.n_layers * 2 * c->kv_dim * c->kv_eb;
    info->kv_format = c->opt.kv_format;
    info->act = c->opt.act;
    info->weights_bf16 = c->wdt == KERN_BF16;
    info->n_sms = c->n_sms;
    info->graphs = !c->opt.no_graphs;
    info->attn_variant = c->opt.attn_variant;
    snprintf(info->device, sizeof info->device, "%s", c->dev_name);
    return ENG_OK;
}

extern "C" int eng_cuda_get_info(const eng_backend *b, eng_cuda_info *info) {
    return eng_cuda_get_rank_info(b, 0, info);
}

extern "C" int eng_backend_cuda_act(const eng_backend *b) {
    eng_cuda_info info;
    return !eng_cuda_get_info(b, &info) && info.act == ENG_ACT_Q16 ? ENG_ACT_Q16 : ENG_ACT_F32;
}

extern "C" int eng_backend_cuda_quantized(const eng_backend *b) {
    eng_cuda_info info;
    if (eng_cuda_get_info(b, &info) || !info.quant) return 0;
    return info.quant_wide == 2 ? 2 : 1;
}
