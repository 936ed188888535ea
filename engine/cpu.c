/* cpu.c — the CPU reference backend: f32 weights as the model holds them,
 * a paged KV pool in host memory (f32, or bf16 values rounded as the CUDA
 * backend rounds them, so both compute from the same keys and values), and
 * a small persistent thread pool.
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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "backend.h"

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

/* ---------------------------------------------------------- thread pool */
typedef void (*job_fn)(void *arg, int tid, int nth);

/* Workers spin briefly on the job counter before sleeping on a condition
 * variable: the jobs of a forward pass come back to back, and a sleeping
 * thread can take tens of microseconds to wake. */
typedef struct pool {
    int nth;                 /* threads including the caller */
    pthread_t *th;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    atomic_ulong gen;        /* bumped for every job; fn and arg are set before */
    atomic_int busy;         /* workers still running the current job */
    atomic_int quit;
    job_fn fn;
    void *arg;
} pool;

enum { SPIN = 4000 };        /* polls before sleeping: up to ~100 microseconds */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct worker_arg { pool *p; int tid; } worker_arg;

/* Waits for a job newer than seen; returns its number, or 0 to quit. */
static unsigned long wait_job(pool *p, unsigned long seen) {
    for (int i = 0; i < SPIN; i++) {
        if (atomic_load(&p->quit)) return 0;
        unsigned long g = atomic_load(&p->gen);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
        pthread_cond_wait(&p->go, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return atomic_load(&p->quit) ? 0 : atomic_load(&p->gen);
}

static void *worker_main(void *a) {
    worker_arg w = *(worker_arg *)a;
    free(a);
    pool *p = w.p;
    unsigned long seen = 0;
    while ((seen = wait_job(p, seen))) {
        p->fn(p->arg, w.tid, p->nth);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {   /* last one out wakes the caller */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static void pool_stop(pool *p) {
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
}

static int pool_start(pool *p, int nth, eng_err *err) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->nth = nth;
    p->th = calloc((size_t)nth, sizeof *p->th);
    if (!p->th) return eng_seterr(err, ENG_ENOMEM, "cpu: out of memory for %d threads", nth);
    for (int i = 1; i < nth; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a) { a->p = p; a->tid = i; }
        if (!a || pthread_create(&p->th[p->n_started], NULL, worker_main, a)) {
            free(a);
            return eng_seterr(err, ENG_ENOMEM, "cpu: could not start thread %d of %d", i, nth);
        }
        p->n_started++;
    }
    return ENG_OK;
}

/* Jobs smaller than this (in multiply-adds or so) run on the calling
 * thread alone: waking the others would cost more than it saves.  Results
 * do not depend on the split, so this changes only the time. */
#define POOL_MIN_WORK (1 << 17)

/* Runs fn(arg, tid, nth) on every thread, the caller being tid 0. */
static void pool_run(pool *p, job_fn fn, void *arg, double work) {
    if (p->nth == 1 || work < POOL_MIN_WORK) { fn(arg, 0, 1); return; }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->busy, p->nth - 1);
    pthread_mutex_lock(&p->mu);          /* a worker between its check and its wait holds mu */
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->nth);
    for (int i = 0; i < SPIN && atomic_load(&p->busy); i++) cpu_relax();
    if (atomic_load(&p->busy)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy)) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---------------------------------------------------------------- state */
typedef struct cpu {
    const eng_model *m;
    eng_config c;
    int n_blocks, bs;
    int kv_bf16;             /* the pools hold bf16 values (ENG_KV_BF16), else f32 */
    size_t kv_eb;            /* bytes of a stored value */
    size_t block_elems;      /* one block's K (or V) over all layers */
    void *k_pool, *v_pool;   /* [n_blocks][layers][kv_heads][bs][head_dim] */
    size_t pool_bytes;
    pool tp;
    /* scratch for one chunk of rows, grown on demand */
    int cap_rows, cap_len, cap_out, cap_logits;
    float *x, *h, *q, *k, *v, *att, *gate, *up, *rope_cos, *rope_sin;
    float *rope_cos_l, *rope_sin_l;   /* sliding layers' (model's rope_inv_freq_local) */
    float *scores;           /* [nth][cap_len] */
    float *hout, *logits;    /* [cap_out][hidden], [cap_out][vocab] */
} cpu;

enum { CHUNK_ROWS = 512 };   /* rows per internal pass: bounds scratch memory */

/* Element offset of slot 0 of (block, layer, kv head) in a pool. */
static size_t kv_off(const cpu *s, int block, int layer, int head) {
    return (size_t)block * s->block_elems +
           ((size_t)layer * s->c.n_kv_heads + head) * (size_t)s->bs * s->c.head_dim;
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
    size_t r = (size_t)rows, qd = (size_t)c->n_heads * c->head_dim;
    size_t kd = (size_t)c->n_kv_heads * c->head_dim;
    int rc = 0;
    if (!rc) rc = grow(&s->x, r * c->hidden, err);
    if (!rc) rc = grow(&s->h, r * c->hidden, err);
    if (!rc) rc = grow(&s->q, r * qd, err);
    if (!rc) rc = grow(&s->k, r * kd, err);
    if (!rc) rc = grow(&s->v, r * kd, err);
    if (!rc) rc = grow(&s->att, r * qd, err);
    if (!rc) rc = grow(&s->gate, r * c->intermediate, err);
    if (!rc) rc = grow(&s->up, r * c->intermediate, err);
    if (!rc) rc = grow(&s->rope_cos, r * (c->head_dim / 2), err);
    if (!rc) rc = grow(&s->rope_sin, r * (c->head_dim / 2), err);
    if (!rc && s->m->rope_inv_freq_local) rc = grow(&s->rope_cos_l, r * (c->head_dim / 2), err);
    if (!rc && s->m->rope_inv_freq_local) rc = grow(&s->rope_sin_l, r * (c->head_dim / 2), err);
    if (!rc) s->cap_rows = rows;
    return rc;
}

static int ensure_len(cpu *s, int len, eng_err *err) {
    if (len <= s->cap_len) return ENG_OK;
    int rc = grow(&s->scores, (size_t)s->tp.nth * len, err);
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
/* Y[r][n] (+)= X[r] . W[n] (+ bias[n]) for r < R, n < N; X is [R][K]. */
typedef struct mm {
    const float *X, *W, *bias;
    float *Y;
    int R, K, N;
    int add;                 /* accumulate into Y (residual connections) */
} mm;

typedef struct mm_job { mm m[3]; int n; } mm_job;

INLINE void put(const mm *m, int r, int n, float v) {
    if (m->bias) v += m->bias[n];
    float *y = m->Y + (size_t)r * m->N + n;
    *y = m->add ? *y + v : v;
}

/* Four rows against two weight rows: eight independent accumulators. */
INLINE void kern_4x2(const mm *m, int r, int n) {
    const int K = m->K;
    const float *x0 = m->X + (size_t)r * K, *x1 = x0 + K, *x2 = x1 + K, *x3 = x2 + K;
    const float *w0 = m->W + (size_t)n * K, *w1 = w0 + K;
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
    const float *x = m->X + (size_t)r * K, *w0 = m->W + (size_t)n * K;
    const float *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
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
    put(m, r, n, dot(m->X + (size_t)r * m->K, m->W + (size_t)n * m->K, m->K));
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
    return (mm){ .X = X, .W = W, .bias = bias, .Y = Y, .R = R, .K = K, .N = N, .add = add };
}

static void run_mm(cpu *s, const mm *a, const mm *b, const mm *c) {
    mm_job j = { .n = 0 };
    j.m[j.n++] = *a;
    if (b) j.m[j.n++] = *b;
    if (c) j.m[j.n++] = *c;
    double work = 0;
    for (int i = 0; i < j.n; i++) work += (double)j.m[i].R * j.m[i].K * j.m[i].N;
    pool_run(&s->tp, mm_worker, &j, work);
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
/* Rows [row0, row0+rows) of the batch, one (row, query head) pair at a time. */
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
    const int qd = c->n_heads * hd;
    const int win = eng_layer_sliding(c, j->layer) ? c->sliding_window : 0;
    const float scale = c->attn_scale;
    const int bf = s->kv_bf16;
    float *sc = s->scores + (size_t)tid * s->cap_len;
    int items = j->rows * c->n_heads;
    for (int it = tid; it < items; it += nth) {   /* interleaved: later rows are longer */
        int r = it / c->n_heads, head = it % c->n_heads, g = head / grp;
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
    int hd = c->head_dim, h = hd / 2, qd = c->n_heads * hd, kd = c->n_kv_heads * hd;
    int local = s->m->rope_inv_freq_local && eng_layer_sliding(c, layer);
    const float *cos_t = local ? s->rope_cos_l : s->rope_cos;
    const float *sin_t = local ? s->rope_sin_l : s->rope_sin;
    for (int i = 0; i < n; i++) {
        const float *cs = cos_t + (size_t)i * h, *sn = sin_t + (size_t)i * h;
        for (int hh = 0; hh < c->n_heads; hh++) {
            float *q = s->q + (size_t)i * qd + hh * hd;
            if (c->qk_norm) rmsnorm(q, q, w->q_norm, hd, c->rms_eps);
            rope(q, cs, sn, hd);
        }
        int br = row0 + i, pos = b->pos[br];
        int blk = b->block_table[b->row_seq[br]][pos / s->bs], slot = pos % s->bs;
        for (int g = 0; g < c->n_kv_heads; g++) {
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

static void layer_pass(cpu *s, const eng_fwd_batch *b, int row0, int n, int l) {
    const eng_config *c = &s->c;
    const eng_layer_w *w = &s->m->layers[l];
    int H = c->hidden, qd = c->n_heads * c->head_dim, kd = c->n_kv_heads * c->head_dim;
    int I = c->intermediate, post = c->post_norms;

    norm_rows(s, s->h, s->x, w->attn_norm, n);
    mm q = make_mm(s->h, n, H, w->wq, w->bq, qd, s->q, 0);
    mm k = make_mm(s->h, n, H, w->wk, w->bk, kd, s->k, 0);
    mm v = make_mm(s->h, n, H, w->wv, w->bv, kd, s->v, 0);
    run_mm(s, &q, &k, &v);
    rope_and_store(s, b, row0, n, l);
    att_job aj = { s, b, row0, n, l };
    double work = 0;   /* two passes over head_dim per (row, head, position) */
    for (int i = 0; i < n; i++) work += 2.0 * (b->pos[row0 + i] + 1) * qd;
    pool_run(&s->tp, att_worker, &aj, work);
    /* without output norms the projection adds into x directly */
    mm o = make_mm(s->att, n, qd, w->wo, NULL, H, post ? s->h : s->x, !post);
    run_mm(s, &o, NULL, NULL);
    if (post) add_out(s, w->post_attn_norm, n);

    norm_rows(s, s->h, s->x, w->ffn_norm, n);
    mm g = make_mm(s->h, n, H, w->w_gate, NULL, I, s->gate, 0);
    mm u = make_mm(s->h, n, H, w->w_up, NULL, I, s->up, 0);
    run_mm(s, &g, &u, NULL);
    glu_job gj = { s->gate, s->up, (size_t)n * I, c->gelu };
    pool_run(&s->tp, glu_worker, &gj, 16.0 * gj.n);
    mm d = make_mm(s->gate, n, I, w->w_down, NULL, H, post ? s->h : s->x, !post);
    run_mm(s, &d, NULL, NULL);
    if (post) add_out(s, w->post_ffn_norm, n);
}

/* Rows [row0, row0+n) through every layer; the final norm of the out rows
 * among them goes into hout. */
static void chunk_pass(cpu *s, const eng_fwd_batch *b, int row0, int n) {
    const eng_config *c = &s->c;
    for (int i = 0; i < n; i++) {
        float *x = s->x + (size_t)i * c->hidden;
        memcpy(x, s->m->embed + (size_t)b->tokens[row0 + i] * c->hidden,
               (size_t)c->hidden * sizeof *s->x);
        if (c->embed_scale != 1.0f)
            for (int k = 0; k < c->hidden; k++) x[k] *= c->embed_scale;
    }
    rope_tables(s, b, row0, n);
    for (int l = 0; l < c->n_layers; l++) layer_pass(s, b, row0, n, l);
    for (int i = 0; i < b->n_out; i++) {
        int r = b->out_rows[i];
        if (r >= row0 && r < row0 + n)
            rmsnorm(s->hout + (size_t)i * c->hidden, s->x + (size_t)(r - row0) * c->hidden,
                    s->m->final_norm, c->hidden, c->rms_eps);
    }
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

static int cpu_forward(eng_backend *be, const eng_fwd_batch *b, eng_err *err) {
    cpu *s = be->ctx;
    if (!b) return eng_seterr(err, ENG_EINVAL, "cpu: no batch");
    int rc = check_batch(s, b, err);
    if (rc || b->n_rows == 0) return rc;
    int max_len = 0;
    for (int i = 0; i < b->n_seqs; i++) if (b->seq_len[i] > max_len) max_len = b->seq_len[i];
    int chunk = b->n_rows < CHUNK_ROWS ? b->n_rows : CHUNK_ROWS;
    if ((rc = ensure_rows(s, chunk, err)) || (rc = ensure_len(s, max_len, err)) ||
        (rc = ensure_out(s, b->n_out, !b->logits, err)))
        return rc;

    for (int r0 = 0; r0 < b->n_rows; r0 += chunk)
        chunk_pass(s, b, r0, b->n_rows - r0 < chunk ? b->n_rows - r0 : chunk);

    if (b->n_out == 0) return ENG_OK;
    const eng_config *c = &s->c;
    float *logits = b->logits ? b->logits : s->logits;
    mm lm = make_mm(s->hout, b->n_out, c->hidden, s->m->lm_head, NULL, c->vocab_size, logits, 0);
    run_mm(s, &lm, NULL, NULL);   /* only the out rows: lm_head is the largest matrix */
    if (b->sampled) {
        samp_job j = { b, logits, c->vocab_size };
        pool_run(&s->tp, samp_worker, &j, 32.0 * b->n_out * c->vocab_size);
    }
    return ENG_OK;
}

static int cpu_copy_block(eng_backend *be, int src, int dst, eng_err *err) {
    cpu *s = be->ctx;
    if (src < 0 || src >= s->n_blocks || dst < 0 || dst >= s->n_blocks)
        return eng_seterr(err, ENG_EINVAL, "cpu: copy_block %d -> %d outside the pool of %d",
                          src, dst, s->n_blocks);
    if (src == dst) return ENG_OK;
    const size_t n = s->block_elems * s->kv_eb;
    char *k = s->k_pool, *v = s->v_pool;
    memcpy(k + (size_t)dst * n, k + (size_t)src * n, n);
    memcpy(v + (size_t)dst * n, v + (size_t)src * n, n);
    return ENG_OK;
}

static void cpu_destroy(eng_backend *be) {
    if (!be) return;
    cpu *s = be->ctx;
    if (s) {
        if (s->tp.th) pool_stop(&s->tp);
        if (s->k_pool) munmap(s->k_pool, s->pool_bytes);
        float *bufs[] = { s->x, s->h, s->q, s->k, s->v, s->att, s->gate, s->up, s->rope_cos,
                          s->rope_sin, s->rope_cos_l, s->rope_sin_l, s->scores, s->hout,
                          s->logits };
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
        free(s);
    }
    free(be);
}

static int check_model(const eng_model *m, eng_err *err) {
    const eng_config *c = &m->cfg;
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

int eng_backend_cpu_create(const eng_model *m, int n_blocks, int block_size, int kv_format,
                           int n_threads, eng_backend **out, eng_err *err) {
    if (!out) return eng_seterr(err, ENG_EINVAL, "cpu: no output pointer");
    *out = NULL;
    if (!m) return eng_seterr(err, ENG_EINVAL, "cpu: no model");
    int rc = check_model(m, err);
    if (rc) return rc;
    if (n_blocks <= 0 || block_size <= 0)
        return eng_seterr(err, ENG_EINVAL, "cpu: need n_blocks > 0 and block_size > 0 (got %d, %d)",
                          n_blocks, block_size);
    if (kv_format != ENG_KV_F32 && kv_format != ENG_KV_BF16)
        return eng_seterr(err, ENG_EINVAL, "cpu: unknown KV format %d", kv_format);
    if (n_threads <= 0) n_threads = 1;
    if (n_threads > 256) n_threads = 256;

    eng_backend *be = calloc(1, sizeof *be);
    cpu *s = calloc(1, sizeof *s);
    if (!be || !s) { free(be); free(s); return eng_seterr(err, ENG_ENOMEM, "cpu: out of memory"); }
    be->ctx = s;
    be->forward = cpu_forward;
    be->copy_block = cpu_copy_block;
    be->destroy = cpu_destroy;
    s->m = m;
    s->c = m->cfg;
    s->n_blocks = n_blocks;
    s->bs = block_size;
    s->kv_bf16 = kv_format == ENG_KV_BF16;
    const size_t eb = s->kv_eb = eng_kv_elem_bytes(kv_format);
    s->block_elems = (size_t)s->c.n_layers * s->c.n_kv_heads * block_size * s->c.head_dim;
    if (s->block_elems > SIZE_MAX / eb / 2 / (size_t)n_blocks) {
        cpu_destroy(be);
        return eng_seterr(err, ENG_EINVAL, "cpu: KV pool of %d blocks is too large", n_blocks);
    }
    /* Reserved, not committed: pages are touched only when blocks are used. */
    s->pool_bytes = s->block_elems * eb * 2 * (size_t)n_blocks;
    void *p = mmap(NULL, s->pool_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        size_t mb = s->pool_bytes >> 20;
        cpu_destroy(be);
        return eng_seterr(err, ENG_ENOMEM, "cpu: could not map a KV pool of %zu MiB", mb);
    }
    s->k_pool = p;
    s->v_pool = (char *)p + s->block_elems * eb * (size_t)n_blocks;
    if ((rc = pool_start(&s->tp, n_threads, err))) { cpu_destroy(be); return rc; }
    *out = be;
    return ENG_OK;
}
