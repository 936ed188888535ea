/* cpu.c — the CPU reference backend: f32 weights as the model holds them,
 * a paged KV pool in host memory (f32, or bf16 values rounded as the CUDA
 * backend rounds them, so both compute from the same keys and values), and
 * a small persistent thread pool (pool.h); and
 * the same code split over tensor-parallel ranks (eng_backend_split_create):
 * each rank a thread with its share of the weights, read in place, its own
 * KV pool and thread pool, the ranks adding their partial sums in
 * all-reduces (see "all-reduce" below).
 *
 * A forward pass works on all rows of the batch at once: every projection is
 * one matrix product Y[rows][out] = X[rows][in] W[out][in]^T, its output
 * dimension split across threads, so a weight row is read from memory once
 * for the whole batch.  Results do not depend on the batch: each output
 * element is one dot product whose operations (8-lane partial sums over the
 * input dimension, a fixed reduction order, a scalar tail) are the same
 * whichever kernel or thread computes it, so a row gives bit-identical
 * logits alone or batched.
 *
 * Order within a layer: every row writes its K and V into the cache before
 * any row attends, and a row at position p reads positions 0..p of its own
 * sequence, so rows of one sequence in one pass are causal among
 * themselves. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "backend.h"
#include "pool.h"
#include "quant_block.h"

/* ------------------------------------------------------------ vectors */
/* Hot loops use GCC vector types; on x86-64 they are compiled twice, for
 * AVX2+FMA and for the baseline, and the loader picks one at start-up
 * (not under ThreadSanitizer, whose runtime is not up when the loader
 * runs the chooser). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SIMD_CLONES
#endif
#define INLINE static inline __attribute__((always_inline))
/* Vector values only pass between always-inlined helpers, never across a
 * real call, so the AVX calling-convention note does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v8 __attribute__((vector_size(32)));
INLINE v8 ld8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
INLINE void st8(float *p, const v8 *v) { memcpy(p, v, sizeof *v); }
INLINE float hsum8(const v8 *v) {
    const v8 a = *v;
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

/* Dot product of length n, the one formula every kernel below follows. */
INLINE float dot(const float *a, const float *b, int n) {
    v8 acc = { 0 };
    int k = 0;
    for (; k + 8 <= n; k += 8) acc += ld8(a + k) * ld8(b + k);
    float s = hsum8(&acc);
    for (; k < n; k++) s += a[k] * b[k];
    return s;
}

/* bf16 KV rows (ENG_KV_BF16): a bf16 value is the top half of an f32. */
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
INLINE float bf16f(uint16_t v) { uint32_t u = (uint32_t)v << 16; float f; memcpy(&f, &u, 4); return f; }
INLINE v8 ld8_bf16(const uint16_t *p) {
    u16x8 h;
    memcpy(&h, p, sizeof h);
    u32x8 w = __builtin_convertvector(h, u32x8) << 16;
    v8 v;
    memcpy(&v, &w, sizeof v);
    return v;
}

/* dot() with b in bf16: the same operations on b's f32 values. */
INLINE float dot_bf16(const float *a, const uint16_t *b, int n) {
    v8 acc = { 0 };
    int k = 0;
    for (; k + 8 <= n; k += 8) acc += ld8(a + k) * ld8_bf16(b + k);
    float s = hsum8(&acc);
    for (; k < n; k++) s += a[k] * bf16f(b[k]);
    return s;
}

/* ---------------------------------------------------------------- state */
typedef struct tp_group tp_group;

/* One rank: the whole model when unsplit, else its share (tl) of a model
 * split over the ranks of a tp_group.  Every routine below works on a rank's
 * share, so the unsplit backend is the split one with a single rank and no
 * all-reduce. */
typedef struct cpu {
    const eng_model *m;
    eng_config c;
    eng_tp_slice tl;         /* its heads, KV heads, MLP columns and vocabulary rows */
    int n_blocks, bs;
    int kv_bf16;             /* the pools hold bf16 values (ENG_KV_BF16), else f32 */
    int act;                 /* ENG_ACT_F32, _Q16 or _BF16: how products' inputs are rounded */
    size_t kv_eb;            /* bytes of a stored value */
    size_t block_elems;      /* one block's K (or V) over all layers, its KV heads */
    void *k_pool, *v_pool;   /* [n_blocks][layers][tl.nkv][bs][head_dim] */
    size_t pool_bytes;
    eng_pool *tp;
    tp_group *g;             /* NULL: unsplit */
    int rank;
    float *part[2];          /* [cap_rows][hidden]: its share of a sum, read by every rank */
    int par;                 /* which part the next all-reduce uses */
    double ar_secs;          /* time in all-reduces, waiting for the other ranks included */
    int64_t n_ar;
    /* scratch for one chunk of rows, grown on demand */
    int cap_rows, cap_len, cap_out, cap_logits;
    float *x, *h, *q, *k, *v, *att, *gate, *up, *rope_cos, *rope_sin;
    float *rope_cos_l, *rope_sin_l;   /* sliding layers' (model's rope_inv_freq_local) */
    float *scores;           /* [nth][cap_len] */
    float *hout, *logits;    /* [cap_out][hidden], [cap_out][vocab] */
} cpu;

enum { CHUNK_ROWS = 512 };   /* rows per internal pass: bounds scratch memory */

/* Element offset of slot 0 of (block, layer, kv head) in a pool; head: the
 * rank's own numbering, 0 .. tl.nkv - 1. */
static size_t kv_off(const cpu *s, int block, int layer, int head) {
    return (size_t)block * s->block_elems +
           ((size_t)layer * s->tl.nkv + head) * (size_t)s->bs * s->c.head_dim;
}

/* Writes n values at element offset off of a pool, rounded to bf16 in a
 * bf16 pool. */
static void kv_put(const cpu *s, void *pool, size_t off, const float *x, int n) {
    if (!s->kv_bf16) { memcpy((float *)pool + off, x, (size_t)n * sizeof *x); return; }
    uint16_t *d = (uint16_t *)pool + off;
    for (int i = 0; i < n; i++) d[i] = eng_f32_to_bf16(x[i]);
}

static int grow(float **p, size_t n, eng_err *err) {
    float *q = realloc(*p, n * sizeof *q);
    if (!q) return eng_seterr(err, ENG_ENOMEM, "cpu: out of memory (%zu floats of scratch)", n);
    *p = q;
    return ENG_OK;
}

static int ensure_rows(cpu *s, int rows, eng_err *err) {
    if (rows <= s->cap_rows) return ENG_OK;
    const eng_config *c = &s->c;
    size_t r = (size_t)rows, qd = (size_t)s->tl.nh * c->head_dim;
    size_t kd = (size_t)s->tl.nkv * c->head_dim;
    int rc = 0;
    if (!rc) rc = grow(&s->x, r * c->hidden, err);
    if (!rc) rc = grow(&s->h, r * c->hidden, err);
    if (!rc) rc = grow(&s->q, r * qd, err);
    if (!rc) rc = grow(&s->k, r * kd, err);
    if (!rc) rc = grow(&s->v, r * kd, err);
    if (!rc) rc = grow(&s->att, r * qd, err);
    if (!rc) rc = grow(&s->gate, r * s->tl.ni, err);
    if (!rc) rc = grow(&s->up, r * s->tl.ni, err);
    for (int i = 0; i < 2 && s->g && !rc; i++) rc = grow(&s->part[i], r * c->hidden, err);
    if (!rc) rc = grow(&s->rope_cos, r * (c->head_dim / 2), err);
    if (!rc) rc = grow(&s->rope_sin, r * (c->head_dim / 2), err);
    if (!rc && s->m->rope_inv_freq_local) rc = grow(&s->rope_cos_l, r * (c->head_dim / 2), err);
    if (!rc && s->m->rope_inv_freq_local) rc = grow(&s->rope_sin_l, r * (c->head_dim / 2), err);
    if (!rc) s->cap_rows = rows;
    return rc;
}

static int ensure_len(cpu *s, int len, eng_err *err) {
    if (len <= s->cap_len) return ENG_OK;
    int rc = grow(&s->scores, (size_t)eng_pool_threads(s->tp) * len, err);
    if (!rc) s->cap_len = len;
    return rc;
}

/* Final hidden states of the out rows, and their logits when the caller
 * gives no buffer for them (sampling only). */
static int ensure_out(cpu *s, int n_out, int own_logits, eng_err *err) {
    int rc = ENG_OK;
    if (n_out > s->cap_out) {
        rc = grow(&s->hout, (size_t)n_out * s->c.hidden, err);
        if (!rc) s->cap_out = n_out;
    }
    if (!rc && own_logits && n_out > s->cap_logits) {
        rc = grow(&s->logits, (size_t)n_out * s->c.vocab_size, err);
        if (!rc) s->cap_logits = n_out;
    }
    return rc;
}

/* ----------------------------------------------------------- matmul */
/* Y[r][n] (+)= X[r] . W[n] (+ bias[n]) for r < R, n < N; X is [R][K].
 * Weight row n starts at W + n * ldw and output row r at Y + r * ldy, so a
 * rank of a split model reads its columns of a weight in place (ldw the
 * full row) and writes its share of the logits into the gathered rows. */
typedef struct mm {
    const float *X, *W, *bias;
    float *Y;
    int R, K, N;
    size_t ldw, ldy;
    int add;                 /* accumulate into Y (residual connections) */
} mm;

typedef struct mm_job { mm m[3]; int n; } mm_job;

INLINE void put(const mm *m, int r, int n, float v) {
    if (m->bias) v += m->bias[n];
    float *y = m->Y + (size_t)r * m->ldy + n;
    *y = m->add ? *y + v : v;
}

/* Four rows against two weight rows: eight independent accumulators. */
INLINE void kern_4x2(const mm *m, int r, int n) {
    const int K = m->K;
    const float *x0 = m->X + (size_t)r * K, *x1 = x0 + K, *x2 = x1 + K, *x3 = x2 + K;
    const float *w0 = m->W + (size_t)n * m->ldw, *w1 = w0 + m->ldw;
    v8 a00 = { 0 }, a01 = { 0 }, a10 = { 0 }, a11 = { 0 };
    v8 a20 = { 0 }, a21 = { 0 }, a30 = { 0 }, a31 = { 0 };
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        v8 wa = ld8(w0 + k), wb = ld8(w1 + k), xv;
        xv = ld8(x0 + k); a00 += xv * wa; a01 += xv * wb;
        xv = ld8(x1 + k); a10 += xv * wa; a11 += xv * wb;
        xv = ld8(x2 + k); a20 += xv * wa; a21 += xv * wb;
        xv = ld8(x3 + k); a30 += xv * wa; a31 += xv * wb;
    }
    float s[4][2] = { { hsum8(&a00), hsum8(&a01) }, { hsum8(&a10), hsum8(&a11) },
                      { hsum8(&a20), hsum8(&a21) }, { hsum8(&a30), hsum8(&a31) } };
    for (; k < K; k++)
        for (int i = 0; i < 4; i++) {
            s[i][0] += x0[(size_t)i * K + k] * w0[k];
            s[i][1] += x0[(size_t)i * K + k] * w1[k];
        }
    for (int i = 0; i < 4; i++) { put(m, r + i, n, s[i][0]); put(m, r + i, n + 1, s[i][1]); }
}

/* One row against four weight rows (decode). */
INLINE void kern_1x4(const mm *m, int r, int n) {
    const int K = m->K;
    const float *x = m->X + (size_t)r * K, *w0 = m->W + (size_t)n * m->ldw;
    const float *w1 = w0 + m->ldw, *w2 = w1 + m->ldw, *w3 = w2 + m->ldw;
    v8 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        v8 xv = ld8(x + k);
        a0 += xv * ld8(w0 + k); a1 += xv * ld8(w1 + k);
        a2 += xv * ld8(w2 + k); a3 += xv * ld8(w3 + k);
    }
    float s0 = hsum8(&a0), s1 = hsum8(&a1), s2 = hsum8(&a2), s3 = hsum8(&a3);
    for (; k < K; k++) { s0 += x[k] * w0[k]; s1 += x[k] * w1[k]; s2 += x[k] * w2[k]; s3 += x[k] * w3[k]; }
    put(m, r, n, s0); put(m, r, n + 1, s1); put(m, r, n + 2, s2); put(m, r, n + 3, s3);
}

INLINE void kern_1x1(const mm *m, int r, int n) {
    put(m, r, n, dot(m->X + (size_t)r * m->K, m->W + (size_t)n * m->ldw, m->K));
}

/* Output columns [n0, n1) of one product.  Rows are taken in chunks whose
 * slice of X stays in L2; within a chunk each pair of weight rows is used
 * against every row before moving on. */
INLINE void mm_range(const mm *m, int n0, int n1) {
    int rc = (int)(65536 / (m->K > 0 ? m->K : 1)) & ~3;
    if (rc < 4) rc = 4;
    for (int r0 = 0; r0 < m->R; r0 += rc) {
        int r1 = r0 + rc < m->R ? r0 + rc : m->R, r4 = r0 + ((r1 - r0) & ~3);
        int n = n0;
        for (; n + 2 <= n1; n += 2)
            for (int r = r0; r < r4; r += 4) kern_4x2(m, r, n);
        for (; n < n1; n++)
            for (int r = r0; r < r4; r += 4)
                for (int i = 0; i < 4; i++) kern_1x1(m, r + i, n);
        for (int r = r4; r < r1; r++) {
            n = n0;
            for (; n + 4 <= n1; n += 4) kern_1x4(m, r, n);
            for (; n < n1; n++) kern_1x1(m, r, n);
        }
    }
}

SIMD_CLONES
static void mm_worker(void *arg, int tid, int nth) {
    const mm_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        const mm *m = &j->m[i];
        /* contiguous slices of the output, multiples of 4 columns */
        int groups = (m->N + 3) / 4;
        int g0 = (int)((int64_t)groups * tid / nth), g1 = (int)((int64_t)groups * (tid + 1) / nth);
        int n0 = g0 * 4, n1 = g1 * 4 < m->N ? g1 * 4 : m->N;
        if (n0 < n1) mm_range(m, n0, n1);
    }
}

static mm make_mm(const float *X, int R, int K, const float *W, const float *bias, int N,
                  float *Y, int add) {
    return (mm){ .X = X, .W = W, .bias = bias, .Y = Y, .R = R, .K = K, .N = N,
                 .ldw = (size_t)K, .ldy = (size_t)N, .add = add };
}

static void run_mm(cpu *s, const mm *a, const mm *b, const mm *c) {
    mm_job j = { .n = 0 };
    j.m[j.n++] = *a;
    if (b) j.m[j.n++] = *b;
    if (c) j.m[j.n++] = *c;
    double work = 0;
    for (int i = 0; i < j.n; i++) work += (double)j.m[i].R * j.m[i].K * j.m[i].N;
    eng_pool_run(s->tp, mm_worker, &j, work);
}

/* ------------------------------------------------------ small row ops */
SIMD_CLONES
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    v8 acc = { 0 };
    int k = 0;
    for (; k + 8 <= n; k += 8) { v8 v = ld8(x + k); acc += v * v; }
    float ss = hsum8(&acc);
    for (; k < n; k++) ss += x[k] * x[k];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (k = 0; k < n; k++) out[k] = (x[k] * r) * w[k];
}

/* Hugging Face "rotate_half": dimension i pairs with i + d/2. */
static void rope(float *v, const float *cs, const float *sn, int d) {
    int h = d / 2;
    for (int i = 0; i < h; i++) {
        float a = v[i], b = v[i + h];
        v[i] = a * cs[i] - b * sn[i];
        v[i + h] = b * cs[i] + a * sn[i];
    }
}

/* ---------------------------------------------------------- attention */
/* Rows [row0, row0+rows) of the batch, one (row, query head) pair at a time,
 * over the rank's query heads. */
typedef struct att_job {
    cpu *s;
    const eng_fwd_batch *b;
    int row0, rows, layer;
} att_job;

SIMD_CLONES
static void att_worker(void *arg, int tid, int nth) {
    att_job *j = arg;
    cpu *s = j->s;
    const eng_config *c = &s->c;
    const int hd = c->head_dim, bs = s->bs, grp = c->n_heads / c->n_kv_heads;
    const int nh = s->tl.nh, qd = nh * hd;
    const int win = eng_layer_sliding(c, j->layer) ? c->sliding_window : 0;
    const float scale = c->attn_scale;
    const int bf = s->kv_bf16;
    float *sc = s->scores + (size_t)tid * s->cap_len;
    int items = j->rows * nh;
    for (int it = tid; it < items; it += nth) {   /* interleaved: later rows are longer */
        int r = it / nh, head = it % nh, g = (s->tl.q0 + head) / grp - s->tl.k0;
        int br = j->row0 + r, pos = j->b->pos[br];
        int first = win && pos >= win ? pos - win + 1 : 0;   /* oldest position seen */
        const int *table = j->b->block_table[j->b->row_seq[br]];
        const float *q = s->q + (size_t)r * qd + (size_t)head * hd;
        float *out = s->att + (size_t)r * qd + (size_t)head * hd;
        float mx = -INFINITY;
        /* positions first..pos, block by block: [t0 + a, t0 + n) of each */
        for (int t0 = first / bs * bs; t0 <= pos; t0 += bs) {
            const size_t kb = kv_off(s, table[t0 / bs], j->layer, g);
            int a = first > t0 ? first - t0 : 0, n = pos - t0 + 1 < bs ? pos - t0 + 1 : bs;
            for (int t = a; t < n; t++) {
                const size_t o = kb + (size_t)t * hd;
                float v = (bf ? dot_bf16(q, (const uint16_t *)s->k_pool + o, hd)
                              : dot(q, (const float *)s->k_pool + o, hd)) * scale;
                sc[t0 + t] = v;
                if (v > mx) mx = v;
            }
        }
        float sum = 0;
        for (int t = first; t <= pos; t++) { sc[t] = expf(sc[t] - mx); sum += sc[t]; }
        float inv = 1.0f / sum;
        for (int d = 0; d < hd; d++) out[d] = 0;
        for (int t0 = first / bs * bs; t0 <= pos; t0 += bs) {
            const size_t vb = kv_off(s, table[t0 / bs], j->layer, g);
            int a = first > t0 ? first - t0 : 0, n = pos - t0 + 1 < bs ? pos - t0 + 1 : bs;
            for (int t = a; t < n; t++) {
                const size_t o = vb + (size_t)t * hd;
                float p = sc[t0 + t];
                int d = 0;
                if (bf) {
                    const uint16_t *vv = (const uint16_t *)s->v_pool + o;
                    for (; d + 8 <= hd; d += 8) {
                        v8 x = ld8(out + d) + ld8_bf16(vv + d) * p;
                        st8(out + d, &x);
                    }
                    for (; d < hd; d++) out[d] += bf16f(vv[d]) * p;
                } else {
                    const float *vv = (const float *)s->v_pool + o;
                    for (; d + 8 <= hd; d += 8) {
                        v8 x = ld8(out + d) + ld8(vv + d) * p;
                        st8(out + d, &x);
                    }
                    for (; d < hd; d++) out[d] += vv[d] * p;
                }
            }
        }
        for (int d = 0; d < hd; d++) out[d] *= inv;
    }
}

/* ------------------------------------------------------------ forward */
/* Per-row work between the projections; cheap next to them, so it runs on
 * the calling thread. */
static void norm_rows(cpu *s, float *out, const float *x, const float *w, int n) {
    for (int i = 0; i < n; i++)
        rmsnorm(out + (size_t)i * s->c.hidden, x + (size_t)i * s->c.hidden, w, s->c.hidden,
                s->c.rms_eps);
}

/* cos and sin of each row's position times each frequency of inv_freq. */
static void rope_table(const eng_fwd_batch *b, int row0, int n, int h, const float *inv_freq,
                       float *cs, float *sn) {
    for (int i = 0; i < n; i++) {
        float p = (float)b->pos[row0 + i];
        for (int j = 0; j < h; j++) {
            float ang = p * inv_freq[j];   /* f32 product, as transformers does */
            cs[(size_t)i * h + j] = (float)cos((double)ang);
            sn[(size_t)i * h + j] = (float)sin((double)ang);
        }
    }
}

/* The global layers' table, and the sliding layers' when the model has one. */
static void rope_tables(cpu *s, const eng_fwd_batch *b, int row0, int n) {
    int h = s->c.head_dim / 2;
    rope_table(b, row0, n, h, s->m->rope_inv_freq, s->rope_cos, s->rope_sin);
    if (s->m->rope_inv_freq_local)
        rope_table(b, row0, n, h, s->m->rope_inv_freq_local, s->rope_cos_l, s->rope_sin_l);
}

/* Per-head RMSNorm of q and k (qk_norm), RoPE on them, then k and v into
 * the cache slot of each row. */
static void rope_and_store(cpu *s, const eng_fwd_batch *b, int row0, int n, int layer) {
    const eng_config *c = &s->c;
    const eng_layer_w *w = &s->m->layers[layer];
    int hd = c->head_dim, h = hd / 2, qd = s->tl.nh * hd, kd = s->tl.nkv * hd;
    int local = s->m->rope_inv_freq_local && eng_layer_sliding(c, layer);
    const float *cos_t = local ? s->rope_cos_l : s->rope_cos;
    const float *sin_t = local ? s->rope_sin_l : s->rope_sin;
    for (int i = 0; i < n; i++) {
        const float *cs = cos_t + (size_t)i * h, *sn = sin_t + (size_t)i * h;
        for (int hh = 0; hh < s->tl.nh; hh++) {
            float *q = s->q + (size_t)i * qd + hh * hd;
            if (c->qk_norm) rmsnorm(q, q, w->q_norm, hd, c->rms_eps);
            rope(q, cs, sn, hd);
        }
        int br = row0 + i, pos = b->pos[br];
        int blk = b->block_table[b->row_seq[br]][pos / s->bs], slot = pos % s->bs;
        for (int g = 0; g < s->tl.nkv; g++) {
            float *k = s->k + (size_t)i * kd + g * hd;
            if (c->qk_norm) rmsnorm(k, k, w->k_norm, hd, c->rms_eps);
            rope(k, cs, sn, hd);
            const size_t o = kv_off(s, blk, layer, g) + (size_t)slot * hd;
            kv_put(s, s->k_pool, o, k, hd);
            kv_put(s, s->v_pool, o, s->v + (size_t)i * kd + g * hd, hd);
        }
    }
}

/* gate = act(gate) * up over n values, split across the threads: SiLU, or
 * GELU with PyTorch's tanh approximation (gelu_pytorch_tanh). */
typedef struct glu_job { float *gate; const float *up; size_t n; int gelu; } glu_job;

static void glu_worker(void *arg, int tid, int nth) {
    const glu_job *j = arg;
    size_t a = j->n * (size_t)tid / (size_t)nth, b = j->n * (size_t)(tid + 1) / (size_t)nth;
    if (!j->gelu) {
        for (size_t i = a; i < b; i++) j->gate[i] = j->gate[i] / (1.0f + expf(-j->gate[i])) * j->up[i];
        return;
    }
    const float beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
    for (size_t i = a; i < b; i++) {
        float x = j->gate[i], inner = beta * (x + kappa * (x * x * x));
        j->gate[i] = 0.5f * x * (1.0f + tanhf(inner)) * j->up[i];
    }
}

/* x += out, where out (rows of hidden, in s->h) is first normed with w
 * when the model norms its block outputs (post_norms). */
static void add_out(cpu *s, const float *w, int n) {
    size_t H = (size_t)s->c.hidden;
    for (int i = 0; i < n; i++) {
        float *o = s->h + i * H, *x = s->x + i * H;
        if (w) rmsnorm(o, o, w, (int)H, s->c.rms_eps);
        for (size_t k = 0; k < H; k++) x[k] += o[k];
    }
}

/* ------------------------------------------------------- all-reduce */
/* The ranks of a split model: one thread each (the caller is rank 0),
 * meeting at a barrier for every all-reduce. */
struct tp_group {
    int n;
    cpu **r;                 /* [n] */
    eng_pool *ranks;             /* runs one pass of every rank at once */
    pthread_barrier_t bar;
    int bar_ok;
    /* the pass being run */
    const eng_fwd_batch *b;
    float *logits;
    int chunk;
};

/* out[n rows][hidden] = the sum of every rank's part, added in rank order
 * whatever the threads' timing, so every rank gets the same bits.  Parts
 * alternate between two buffers: a rank writes into this one again only
 * after every rank has reached the next barrier, that is, has finished
 * reading it. */
static void all_reduce(cpu *s, float *out, int n) {
    tp_group *g = s->g;
    double t0 = eng_now_s();
    pthread_barrier_wait(&g->bar);
    size_t len = (size_t)n * s->c.hidden;
    memcpy(out, g->r[0]->part[s->par], len * sizeof *out);
    for (int r = 1; r < g->n; r++) {
        const float *p = g->r[r]->part[s->par];
        for (size_t k = 0; k < len; k++) out[k] += p[k];
    }
    s->par ^= 1;
    s->ar_secs += eng_now_s() - t0;
    s->n_ar++;
}

/* A product's input, n rows of k elements, rounded in place as the
 * engine's activation format says (eng.h), the CUDA kernels' way: Q16 each
 * 16-element group by quant_block.h's rule (k is a multiple of 16 wherever
 * a product of blocks takes it: blocks hold 32 or 256 elements), BF16 each
 * element to bf16, to nearest even. */
static void act_round(const cpu *s, float *x, int n, int k) {
    if (s->act == ENG_ACT_BF16) {
        for (size_t i = 0; i < (size_t)n * k; i++) x[i] = eng_bf16_to_f32(eng_f32_to_bf16(x[i]));
        return;
    }
    if (s->act != ENG_ACT_Q16) return;
    for (size_t g = 0; g < (size_t)n * (k / 16); g++) {
        float *v = x + g * 16, amax = 0.f;
        for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
        for (int i = 0; i < 16; i++) v[i] = eng_qb_act_q16_value(v[i], amax);
    }
}

/* x += the output projection proj of attention or the MLP (rows of
 * hidden), normed with post_w first when the model norms block outputs.
 * Split, a rank's product covers its heads or MLP columns only: a partial
 * sum, which the all-reduce completes.  proj->Y and add are set here. */
static void block_out(cpu *s, mm *proj, const float *post_w, int n) {
    if (!s->g && !post_w) {   /* the projection adds into x directly */
        proj->Y = s->x;
        proj->add = 1;
        run_mm(s, proj, NULL, NULL);
        return;
    }
    proj->Y = s->g ? s->part[s->par] : s->h;
    proj->add = 0;
    run_mm(s, proj, NULL, NULL);
    if (s->g) all_reduce(s, s->h, n);
    add_out(s, post_w, n);
}

/* One layer over the rank's share: q/k/v and gate/up by output rows
 * (column-parallel), o and down by input columns (row-parallel, ldw the
 * full row), all read in place from the model's weights. */
static void layer_pass(cpu *s, const eng_fwd_batch *b, int row0, int n, int l) {
    const eng_config *c = &s->c;
    const eng_layer_w *w = &s->m->layers[l];
    const eng_tp_slice *t = &s->tl;
    int H = c->hidden, hd = c->head_dim, qd = t->nh * hd, kd = t->nkv * hd;
    size_t qr = (size_t)t->q0 * hd, kr = (size_t)t->k0 * hd;   /* first q and k/v rows */
    int post = c->post_norms;

    norm_rows(s, s->h, s->x, w->attn_norm, n);
    act_round(s, s->h, n, H);
    mm q = make_mm(s->h, n, H, w->wq + qr * H, w->bq ? w->bq + qr : NULL, qd, s->q, 0);
    mm k = make_mm(s->h, n, H, w->wk + kr * H, w->bk ? w->bk + kr : NULL, kd, s->k, 0);
    mm v = make_mm(s->h, n, H, w->wv + kr * H, w->bv ? w->bv + kr : NULL, kd, s->v, 0);
    run_mm(s, &q, &k, &v);
    rope_and_store(s, b, row0, n, l);
    att_job aj = { s, b, row0, n, l };
    double work = 0;   /* two passes over head_dim per (row, head, position) */
    for (int i = 0; i < n; i++) work += 2.0 * (b->pos[row0 + i] + 1) * qd;
    eng_pool_run(s->tp, att_worker, &aj, work);
    act_round(s, s->att, n, qd);
    mm o = make_mm(s->att, n, qd, w->wo + qr, NULL, H, NULL, 0);
    o.ldw = (size_t)c->n_heads * hd;
    block_out(s, &o, post ? w->post_attn_norm : NULL, n);

    norm_rows(s, s->h, s->x, w->ffn_norm, n);
    act_round(s, s->h, n, H);
    mm g = make_mm(s->h, n, H, w->w_gate + (size_t)t->i0 * H, NULL, t->ni, s->gate, 0);
    mm u = make_mm(s->h, n, H, w->w_up + (size_t)t->i0 * H, NULL, t->ni, s->up, 0);
    run_mm(s, &g, &u, NULL);
    glu_job gj = { s->gate, s->up, (size_t)n * t->ni, c->gelu };
    eng_pool_run(s->tp, glu_worker, &gj, 16.0 * gj.n);
    act_round(s, s->gate, n, t->ni);
    mm d = make_mm(s->gate, n, t->ni, w->w_down + t->i0, NULL, H, NULL, 0);
    d.ldw = (size_t)c->intermediate;
    block_out(s, &d, post ? w->post_ffn_norm : NULL, n);
}

/* Rows [row0, row0+n) through every layer; the final norm of the out rows
 * among them goes into hout.  Split, the embedding is vocabulary-parallel:
 * the rank holding a token's row gives it, the others zeros, and the
 * all-reduce leaves the row itself on every rank. */
static void chunk_pass(cpu *s, const eng_fwd_batch *b, int row0, int n) {
    const eng_config *c = &s->c;
    size_t H = (size_t)c->hidden;
    for (int i = 0; i < n; i++) {
        int tok = b->tokens[row0 + i];
        float *x = (s->g ? s->part[s->par] : s->x) + i * H;
        if (tok >= s->tl.v0 && tok < s->tl.v0 + s->tl.nv)
            memcpy(x, s->m->embed + (size_t)tok * H, H * sizeof *x);
        else
            memset(x, 0, H * sizeof *x);
    }
    if (s->g) all_reduce(s, s->x, n);
    if (c->embed_scale != 1.0f)
        for (size_t k = 0; k < (size_t)n * H; k++) s->x[k] *= c->embed_scale;
    rope_tables(s, b, row0, n);
    for (int l = 0; l < c->n_layers; l++) layer_pass(s, b, row0, n, l);
    for (int i = 0; i < b->n_out; i++) {
        int r = b->out_rows[i];
        if (r >= row0 && r < row0 + n)
            rmsnorm(s->hout + (size_t)i * H, s->x + (size_t)(r - row0) * H, s->m->final_norm,
                    c->hidden, c->rms_eps);
    }
}

/* The rank's part of a pass: every chunk of rows, then its vocabulary rows
 * of the out rows' logits, written into their columns of the gathered
 * logits (the lm_head is vocabulary-parallel). */
static void rank_pass(cpu *s, const eng_fwd_batch *b, float *logits, int chunk) {
    for (int r0 = 0; r0 < b->n_rows; r0 += chunk)
        chunk_pass(s, b, r0, b->n_rows - r0 < chunk ? b->n_rows - r0 : chunk);
    if (b->n_out == 0) return;
    const eng_config *c = &s->c;
    act_round(s, s->hout, b->n_out, c->hidden);
    mm lm = make_mm(s->hout, b->n_out, c->hidden, s->m->lm_head + (size_t)s->tl.v0 * c->hidden,
                    NULL, s->tl.nv, logits + s->tl.v0, 0);
    lm.ldy = (size_t)c->vocab_size;
    run_mm(s, &lm, NULL, NULL);   /* only the out rows: lm_head is the largest matrix */
}

static void rank_worker(void *arg, int tid, int nth) {
    tp_group *g = arg;
    rank_pass(g->r[tid], g->b, g->logits, g->chunk);
}

typedef struct samp_job { const eng_fwd_batch *b; const float *logits; int vocab; } samp_job;

static void samp_worker(void *arg, int tid, int nth) {
    const samp_job *j = arg;
    for (int i = tid; i < j->b->n_out; i += nth) {
        const float *l = j->logits + (size_t)i * j->vocab;
        j->b->sampled[i] = eng_sample(l, j->vocab, &j->b->samp[i], &j->b->rng[i]);
        if (j->b->force && j->b->force[i] >= 0) j->b->sampled[i] = eng_token_of(l, j->vocab, j->b->force[i]);
    }
}

/* Everything a pass reads is checked first, so bad input is an error
 * rather than a stray memory access. */
static int check_batch(const cpu *s, const eng_fwd_batch *b, eng_err *err) {
    const eng_config *c = &s->c;
    if (b->n_rows < 0 || b->n_seqs < 0 || b->n_out < 0 || b->n_out > b->n_rows)
        return eng_seterr(err, ENG_EINVAL, "cpu: bad batch sizes (rows %d, seqs %d, out %d)",
                          b->n_rows, b->n_seqs, b->n_out);
    if (b->n_rows && (!b->tokens || !b->pos || !b->row_seq))
        return eng_seterr(err, ENG_EINVAL, "cpu: batch rows without tokens/pos/row_seq");
    if (b->n_seqs && (!b->seq_len || !b->block_table))
        return eng_seterr(err, ENG_EINVAL, "cpu: batch sequences without seq_len/block_table");
    if (b->n_out && !b->out_rows)
        return eng_seterr(err, ENG_EINVAL, "cpu: batch has %d out rows but no out_rows", b->n_out);
    for (int i = 0; b->force && i < b->n_out; i++)
        if (b->force[i] >= c->vocab_size)
            return eng_seterr(err, ENG_EINVAL, "cpu: forced id %d of out row %d outside vocab %d",
                              b->force[i], i, c->vocab_size);
    if (b->sampled && b->n_out && (!b->samp || !b->rng))
        return eng_seterr(err, ENG_EINVAL, "cpu: sampling asked without samp/rng");
    for (int i = 0; i < b->n_seqs; i++) {
        if (b->seq_len[i] < 0 || b->seq_len[i] > c->max_pos)
            return eng_seterr(err, ENG_EINVAL, "cpu: sequence %d: length %d outside [0, %d]", i,
                              b->seq_len[i], c->max_pos);
        int nb = (b->seq_len[i] + s->bs - 1) / s->bs;
        if (nb && !b->block_table[i])
            return eng_seterr(err, ENG_EINVAL, "cpu: sequence %d has no block table", i);
        for (int j = 0; j < nb; j++)
            if (b->block_table[i][j] < 0 || b->block_table[i][j] >= s->n_blocks)
                return eng_seterr(err, ENG_EINVAL, "cpu: sequence %d: block %d is %d, pool has %d",
                                  i, j, b->block_table[i][j], s->n_blocks);
    }
    int *last = b->n_seqs ? malloc((size_t)b->n_seqs * sizeof *last) : NULL;
    if (b->n_seqs && !last) return eng_seterr(err, ENG_ENOMEM, "cpu: out of memory");
    for (int i = 0; i < b->n_seqs; i++) last[i] = -1;
    int rc = ENG_OK;
    for (int r = 0; r < b->n_rows && !rc; r++) {
        int sq = b->row_seq[r], p = b->pos[r];
        if (b->tokens[r] < 0 || b->tokens[r] >= c->vocab_size)
            rc = eng_seterr(err, ENG_EINVAL, "cpu: row %d: token %d outside [0, %d)", r,
                            b->tokens[r], c->vocab_size);
        else if (sq < 0 || sq >= b->n_seqs)
            rc = eng_seterr(err, ENG_EINVAL, "cpu: row %d: sequence %d outside [0, %d)", r, sq,
                            b->n_seqs);
        else if (p <= last[sq] || p >= b->seq_len[sq])
            rc = eng_seterr(err, ENG_EINVAL, "cpu: row %d: position %d not after %d and below "
                            "the sequence length %d", r, p, last[sq], b->seq_len[sq]);
        else
            last[sq] = p;
    }
    free(last);
    for (int i = 0; i < b->n_out && !rc; i++)
        if (b->out_rows[i] < 0 || b->out_rows[i] >= b->n_rows)
            rc = eng_seterr(err, ENG_EINVAL, "cpu: out row %d is %d, batch has %d rows", i,
                            b->out_rows[i], b->n_rows);
    return rc;
}

/* The rank the backend's ctx is (rank 0 when split), and rank i. */
static int n_ranks(const cpu *s) { return s->g ? s->g->n : 1; }
static cpu *rank_of(cpu *s, int i) { return s->g ? s->g->r[i] : s; }

static int cpu_forward(eng_backend *be, const eng_fwd_batch *b, eng_err *err) {
    cpu *s = be->ctx;
    if (!b) return eng_seterr(err, ENG_EINVAL, "cpu: no batch");
    int rc = check_batch(s, b, err);
    if (rc || b->n_rows == 0) return rc;
    int max_len = 0;
    for (int i = 0; i < b->n_seqs; i++) if (b->seq_len[i] > max_len) max_len = b->seq_len[i];
    int chunk = b->n_rows < CHUNK_ROWS ? b->n_rows : CHUNK_ROWS;
    for (int i = 0; i < n_ranks(s) && !rc; i++) {
        cpu *r = rank_of(s, i);
        if ((rc = ensure_rows(r, chunk, err)) || (rc = ensure_len(r, max_len, err)))
            break;
        rc = ensure_out(r, b->n_out, i == 0 && !b->logits, err);
    }
    if (rc) return rc;

    float *logits = b->logits ? b->logits : s->logits;
    if (!s->g) {
        rank_pass(s, b, logits, chunk);
    } else {
        s->g->b = b;
        s->g->logits = logits;
        s->g->chunk = chunk;
        eng_pool_run(s->g->ranks, rank_worker, s->g, INFINITY);   /* every rank, always */
    }
    if (b->n_out && b->sampled) {
        samp_job j = { b, logits, s->c.vocab_size };
        eng_pool_run(s->tp, samp_worker, &j, 32.0 * b->n_out * s->c.vocab_size);
    }
    return ENG_OK;
}

static int cpu_copy_block(eng_backend *be, int src, int dst, eng_err *err) {
    cpu *s = be->ctx;
    if (src < 0 || src >= s->n_blocks || dst < 0 || dst >= s->n_blocks)
        return eng_seterr(err, ENG_EINVAL, "cpu: copy_block %d -> %d outside the pool of %d",
                          src, dst, s->n_blocks);
    if (src == dst) return ENG_OK;
    for (int i = 0; i < n_ranks(s); i++) {   /* each rank holds its KV heads of the block */
        cpu *r = rank_of(s, i);
        const size_t n = r->block_elems * r->kv_eb;
        char *k = r->k_pool, *v = r->v_pool;
        memcpy(k + (size_t)dst * n, k + (size_t)src * n, n);
        memcpy(v + (size_t)dst * n, v + (size_t)src * n, n);
    }
    return ENG_OK;
}

static void rank_destroy(cpu *s) {
    if (!s) return;
    eng_pool_destroy(s->tp);
    if (s->k_pool) munmap(s->k_pool, s->pool_bytes);
    float *bufs[] = { s->x, s->h, s->q, s->k, s->v, s->att, s->gate, s->up, s->rope_cos,
                      s->rope_sin, s->rope_cos_l, s->rope_sin_l, s->scores, s->hout,
                      s->logits, s->part[0], s->part[1] };
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(s);
}

static void cpu_destroy(eng_backend *be) {
    if (!be) return;
    cpu *s = be->ctx;
    tp_group *g = s ? s->g : NULL;
    if (g) {
        eng_pool_destroy(g->ranks);
        if (g->bar_ok) pthread_barrier_destroy(&g->bar);
        for (int i = 0; i < g->n; i++) rank_destroy(g->r[i]);
        free(g->r);
        free(g);
    } else {
        rank_destroy(s);
    }
    free(be);
}

static void cpu_rank_stats(eng_backend *be, int rank, eng_tp_rank_stats *out) {
    cpu *s = be->ctx;
    memset(out, 0, sizeof *out);
    if (rank < 0 || rank >= n_ranks(s)) return;
    const cpu *r = rank_of(s, rank);
    out->allreduce_s = r->ar_secs;
    out->n_allreduce = r->n_ar;
}

static int check_model(const eng_model *m, eng_err *err) {
    const eng_config *c = &m->cfg;
    if (!eng_model_has_dense(m))
        return eng_seterr(err, ENG_EINVAL, "cpu: model loaded without its f32 copy "
                          "(eng_model_load_blocks): call eng_model_dense first");
    if (c->vocab_size <= 0 || c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->head_dim <= 0 || c->intermediate <= 0 || c->max_pos <= 0)
        return eng_seterr(err, ENG_EINVAL, "cpu: model config has a non-positive size");
    if (c->n_heads % c->n_kv_heads || c->head_dim % 2)
        return eng_seterr(err, ENG_EUNSUPPORTED, "cpu: need n_heads %% n_kv_heads == 0 and an "
                          "even head_dim (got %d, %d, %d)", c->n_heads, c->n_kv_heads, c->head_dim);
    if (!(c->attn_scale > 0) || !(c->embed_scale > 0) || c->sliding_window < 0)
        return eng_seterr(err, ENG_EINVAL, "cpu: model config has a bad attention or embedding "
                          "scale or sliding window");
    if (!m->embed || !m->final_norm || !m->lm_head || !m->layers || !m->rope_inv_freq)
        return eng_seterr(err, ENG_EINVAL, "cpu: model has no f32 weights");
    for (int l = 0; l < c->n_layers; l++) {
        const eng_layer_w *w = &m->layers[l];
        if (!w->attn_norm || !w->wq || !w->wk || !w->wv || !w->wo || !w->ffn_norm ||
            !w->w_gate || !w->w_up || !w->w_down ||
            (c->qkv_bias && (!w->bq || !w->bk || !w->bv)) ||
            (c->qk_norm && (!w->q_norm || !w->k_norm)) ||
            (c->post_norms && (!w->post_attn_norm || !w->post_ffn_norm)))
            return eng_seterr(err, ENG_EINVAL, "cpu: layer %d is missing f32 weights", l);
    }
    return ENG_OK;
}

/* One rank with its share tl: a KV pool of its KV heads and n_threads
 * threads for its products. */
static int rank_create(const eng_model *m, const eng_tp_slice *tl, int n_blocks, int block_size,
                       int kv_format, int act, int n_threads, cpu **out, eng_err *err) {
    cpu *s = calloc(1, sizeof *s);
    if (!s) return eng_seterr(err, ENG_ENOMEM, "cpu: out of memory");
    s->m = m;
    s->c = m->cfg;
    s->tl = *tl;
    s->n_blocks = n_blocks;
    s->bs = block_size;
    s->kv_bf16 = kv_format == ENG_KV_BF16;
    s->act = act == ENG_ACT_Q16 || act == ENG_ACT_BF16 ? act : ENG_ACT_F32;
    const size_t eb = s->kv_eb = eng_kv_elem_bytes(kv_format);
    s->block_elems = (size_t)s->c.n_layers * tl->nkv * block_size * s->c.head_dim;
    if (s->block_elems > SIZE_MAX / eb / 2 / (size_t)n_blocks) {
        rank_destroy(s);
        return eng_seterr(err, ENG_EINVAL, "cpu: KV pool of %d blocks is too large", n_blocks);
    }
    /* Reserved, not committed: pages are touched only when blocks are used. */
    s->pool_bytes = s->block_elems * eb * 2 * (size_t)n_blocks;
    void *p = mmap(NULL, s->pool_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        size_t mb = s->pool_bytes >> 20;
        rank_destroy(s);
        return eng_seterr(err, ENG_ENOMEM, "cpu: could not map a KV pool of %zu MiB", mb);
    }
    s->k_pool = p;
    s->v_pool = (char *)p + s->block_elems * eb * (size_t)n_blocks;
    int rc = eng_pool_create(n_threads, &s->tp, err);
    if (rc) { rank_destroy(s); return rc; }
    *out = s;
    return ENG_OK;
}

static int check_args(const eng_model *m, int n_blocks, int block_size, int kv_format,
                      eng_backend **out, eng_err *err) {
    if (!out) return eng_seterr(err, ENG_EINVAL, "cpu: no output pointer");
    *out = NULL;
    if (kv_format != ENG_KV_F32 && kv_format != ENG_KV_BF16)
        return eng_seterr(err, ENG_EINVAL, "cpu: unknown KV format %d", kv_format);
    if (!m) return eng_seterr(err, ENG_EINVAL, "cpu: no model");
    int rc = check_model(m, err);
    if (rc) return rc;
    if (n_blocks <= 0 || block_size <= 0)
        return eng_seterr(err, ENG_EINVAL, "cpu: need n_blocks > 0 and block_size > 0 (got %d, %d)",
                          n_blocks, block_size);
    return ENG_OK;
}

static eng_backend *new_backend(void) {
    eng_backend *be = calloc(1, sizeof *be);
    if (!be) return NULL;
    be->forward = cpu_forward;
    be->copy_block = cpu_copy_block;
    be->destroy = cpu_destroy;
    be->n_ranks = 1;
    return be;
}

static int clamp_threads(int n) { return n <= 0 ? 1 : n > 256 ? 256 : n; }

int eng_backend_cpu_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                           int act, int n_threads, eng_backend **out, eng_err *err) {
    int rc = check_args(m, n_blocks, block_size, kv_format, out, err);
    if (rc) return rc;
    if (!strcmp(eng_act_name(act), "?"))
        return eng_seterr(err, ENG_EINVAL, "cpu: unknown activation format %d", act);
    eng_tp_slice all;
    if ((rc = eng_tp_slice_of(&m->cfg, 1, 0, &all, err))) return rc;
    eng_backend *be = new_backend();
    if (!be) return eng_seterr(err, ENG_ENOMEM, "cpu: out of memory");
    cpu *s = NULL;
    if ((rc = rank_create(m, &all, n_blocks, block_size, kv_format, act, clamp_threads(n_threads),
                          &s, err))) {
        free(be);
        return rc;
    }
    be->ctx = s;
    *out = be;
    return ENG_OK;
}

int eng_backend_split_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                             int n_ranks, int n_threads, eng_backend **out, eng_err *err) {
    int rc = check_args(m, n_blocks, block_size, kv_format, out, err);
    if (rc) return rc;
    if (n_ranks < 1 || n_ranks > ENG_TP_MAX)
        return eng_seterr(err, ENG_EINVAL, "split: %d ranks, need 1 to %d", n_ranks, ENG_TP_MAX);
    eng_tp_slice tl[ENG_TP_MAX];
    for (int i = 0; i < n_ranks; i++)
        if ((rc = eng_tp_slice_of(&m->cfg, n_ranks, i, &tl[i], err))) return rc;
    eng_backend *be = new_backend();
    tp_group *g = calloc(1, sizeof *g);
    cpu **r = calloc((size_t)n_ranks, sizeof *r);
    if (!be || !g || !r) {
        free(be); free(g); free(r);
        return eng_seterr(err, ENG_ENOMEM, "split: out of memory");
    }
    g->n = n_ranks;
    g->r = r;
    int per = clamp_threads(n_threads / n_ranks);
    for (int i = 0; i < n_ranks && !rc; i++) {
        rc = rank_create(m, &tl[i], n_blocks, block_size, kv_format, ENG_ACT_F32, per, &r[i], err);
        if (!rc) { r[i]->g = g; r[i]->rank = i; }
    }
    be->ctx = r[0];
    be->n_ranks = n_ranks;
    be->rank_stats = cpu_rank_stats;
    if (!rc && pthread_barrier_init(&g->bar, NULL, (unsigned)n_ranks))
        rc = eng_seterr(err, ENG_ENOMEM, "split: could not make a barrier for %d ranks", n_ranks);
    else if (!rc)
        g->bar_ok = 1;
    if (!rc) rc = eng_pool_create(n_ranks, &g->ranks, err);
    if (rc) {
        if (!r[0]) {   /* cpu_destroy finds the group through rank 0 */
            for (int i = 1; i < n_ranks; i++) rank_destroy(r[i]);
            free(r); free(g); free(be);
        } else {
            cpu_destroy(be);
        }
        return rc;
    }
    *out = be;
    return ENG_OK;
}
