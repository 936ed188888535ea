/* bench_cuda.c — speed of the CUDA backend next to its memory-bandwidth
 * floor.
 *
 *   build/benchmarks/bench_cuda MODEL_DIR [--out FILE] [--prompt N]
 *        [--steps N] [--prefill N] [--batches 1,8,32,64,256] [--kernels] [--ablate]
 *        [--ablate-only NAME,...] [--skinny-max N] [--kv f32|bf16] [--bf16-weights]
 *        [--tp N] [--profile-step]
 *
 * Measures, on one GPU: the device bandwidth (a 1 GiB device-to-device
 * copy, bytes read + written, median of 10); prefill tokens/s (one prompt of
 * --prefill tokens in one pass); decode tokens/s at each batch size, every
 * sequence first prefilled with --prompt random tokens, then --steps timed
 * greedy steps (host wall clock around each forward, which includes the
 * upload, the graph replay, sampling and the download of the ids).
 *
 * Floor of a decode step = (weight bytes + KV bytes read) / bandwidth: the
 * weights (every layer + lm_head, as stored on the GPU) are read once per
 * step whatever the batch; attention reads each sequence's whole KV, in
 * the pool's format (--kv: f32, the default, or bf16: half the bytes).  A
 * GGUF model with quantized weights: passes the quantized kernels serve
 * (up to 32 rows) read the blocks, so their floor counts the quantized
 * bytes; wider passes (and the dense variant) read the dense copy and count
 * its bytes.  The quantized path is the library's default
 * (eng_cuda_opts.quant; --no-quant turns it off); each batch it serves is
 * timed twice, quant (the default row) and dense.
 * Variants, each run right after the default on the same sequences: batch
 * 1 without programmatic dependent launch and without CUDA graphs; on
 * quantized blocks, the batches they serve with the quantized path off
 * (dense, the dense copy through the usual paths), and no other matrix-path
 * variant; batch
 * 2..8 through the other matrix path (GEMV kernel or cuBLASLt); batches
 * that kern_skinny serves (5..16 rows) through cuBLASLt; batch > 8 with
 * bf16-rounded GEMM activations (fast_gemm).  With --kernels, first each
 * kernel of a batch-1 step alone (see kernel_bench) and each decode product
 * at 8-64 rows through kern_skinny and cuBLASLt; --skinny-max N sets
 * skinny_max_rows for every run (0..64; default the library's); with --ablate, the
 * step of every batch asked with stages left out (see ablate); --ablate-only
 * runs only the named ablation and batch variants ("none": the default run
 * alone); --bf16-weights creates the backend with bf16_weights (an f32 or
 * quantized checkpoint's dense copy in bf16: the bf16 product paths, half the
 * memory, not bit-exact with the CPU reference).  Prints a table;
 * writes JSON (default benchmarks/results/cuda_<model>.json).
 *
 * --tp N (2 and up; a build with NCCL, N GPUs visible): the same runs
 * through the CUDA split (eng_backend_cuda_tp_create, rank r on device r;
 * no --quant, --bf16-weights or --kernels).  The floor is then one GPU's:
 * the rank that reads the most (its share of the layers and lm_head rows,
 * its KV heads) over the copy bandwidth of device 0, since the ranks run at
 * once.  The step's all-reduces (2 x layers of batch x hidden f32) are
 * timed apart on a communicator of the bench's own, replayed from a CUDA
 * graph as the step replays them: allreduce_ms, and floor + all-reduces
 * beside the step; the logits' all-gather is in the step but not in that
 * figure.  Default output cuda_tp<N>_<model>.json.
 *
 * --profile-step: cudaProfilerStart / Stop around the last timed step of
 * every decode run, so that `ncu --profile-from-start off` sees one step's
 * kernels and nothing of the set-up, the prompt passes or the warm-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "eng.h"

#define MAX_B 16

/* The command line. */
typedef struct bargs {
    const char *dir, *out, *only;
    int batches[MAX_B], nb, pf, kernels, kvf, bf16w, prompt, steps, ablate, skinny_max, quant, tp;
    int quant_wide;     /* quant: ENG_QUANT_* of --quant / --no-quant (AUTO: neither) */
    int quant_tc;       /* --quant-tc-rows N: eng_cuda_opts.quant_tc_rows; < 0: the library's */
    int quant_stage;    /* --quant-tc-stage N: eng_cuda_opts.quant_tc_stage; < 0: the library's */
    int quant_max;      /* --quant-max-rows N: eng_cuda_opts.quant_max_rows; < 0: the library's */
    int profile_step;   /* --profile-step */
    int act;            /* --act auto|f32|q16|bf16: eng_cuda_opts.act (ENG_ACT_*; auto, the engine's
                           default, unless given) */
} bargs;

static int parse_batches(const char *s, int *b, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096) return -1;
        b[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* 0, or 2 after saying what is wrong. */
static int parse_args(int argc, char **argv, bargs *A) {
    static const int def_b[] = {1, 8, 32, 64, 256};
    memset(A, 0, sizeof *A);
    memcpy(A->batches, def_b, sizeof def_b);
    A->nb = 5; A->pf = 512; A->kvf = ENG_KV_F32; A->prompt = 128; A->steps = 32;
    A->skinny_max = -1; A->tp = 1; A->quant_wide = -1; A->quant_tc = -1; A->quant_stage = -1;
    A->quant_max = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--out") && v) { A->out = v; i++; }
        else if (!strcmp(a, "--prompt") && v) { A->prompt = atoi(v); i++; }
        else if (!strcmp(a, "--steps") && v) { A->steps = atoi(v); i++; }
        else if (!strcmp(a, "--prefill") && v) { A->pf = atoi(v); i++; }
        else if (!strcmp(a, "--batches") && v) { A->nb = parse_batches(v, A->batches, MAX_B); i++; }
        else if (!strcmp(a, "--kernels")) A->kernels = 1;
        else if (!strcmp(a, "--ablate")) A->ablate = 1;
        else if (!strcmp(a, "--ablate-only") && v) { A->ablate = 1; A->only = v; i++; }
        else if (!strcmp(a, "--skinny-max") && v) { A->skinny_max = atoi(v); i++; }
        else if (!strcmp(a, "--bf16-weights")) A->bf16w = 1;
        else if (!strcmp(a, "--profile-step")) A->profile_step = 1;
        else if (!strcmp(a, "--quant")) A->quant = ENG_QUANT_ON;
        else if (!strcmp(a, "--no-quant")) A->quant = ENG_QUANT_OFF;
        else if (!strcmp(a, "--quant-wide") && v) {
            if (strcmp(v, "0") && strcmp(v, "1") && strcmp(v, "2")) {
                fprintf(stderr, "bench_cuda: --quant-wide takes 0, 1 or 2, not %s\n", v);
                return 2;
            }
            A->quant_wide = atoi(v);
            i++;
        }
        else if (!strcmp(a, "--quant-tc-rows") && v) { A->quant_tc = atoi(v); i++; }
        else if (!strcmp(a, "--quant-tc-stage") && v) { A->quant_stage = atoi(v); i++; }
        else if (!strcmp(a, "--quant-max-rows") && v) { A->quant_max = atoi(v); i++; }
        else if (!strcmp(a, "--act") && v) {
            if ((A->act = eng_act_parse(v)) < 0) {
                fprintf(stderr, "bench_cuda: --act takes auto, f32, q16 or bf16, not %s\n", v);
                return 2;
            }
            i++;
        }
        else if (!strcmp(a, "--kv") && v) {
            if ((A->kvf = eng_kv_format_parse(v)) < 0) {
                fprintf(stderr, "bench_cuda: --kv takes f32 or bf16, not %s\n", v);
                return 2;
            }
            i++;
        }
        else if (!strcmp(a, "--tp") && v) {
            char *end;
            long n = strtol(v, &end, 10);
            if (end == v || *end || n < 1 || n > ENG_TP_MAX) {
                fprintf(stderr, "bench_cuda: --tp takes 1 to %d GPUs, not %s\n", ENG_TP_MAX, v);
                return 2;
            }
            A->tp = (int)n;
            i++;
        }
        else if (a[0] != '-' && !A->dir) A->dir = a;
        else { fprintf(stderr, "bench_cuda: unknown argument %s\n", a); return 2; }
    }
    if (!A->dir || A->nb < 1 || A->prompt < 2 || A->steps < 1 || A->pf < 0) {
        fprintf(stderr, "usage: bench_cuda MODEL_DIR [--out FILE] [--prompt N] [--steps N] "
                        "[--prefill N] [--batches 1,8,...] [--kernels] [--ablate] [--ablate-only a,b] "
                        "[--skinny-max N] [--kv f32|bf16] [--act f32|q16|bf16] [--bf16-weights] [--quant | --no-quant] [--quant-wide 0|1|2] "
                        "[--quant-tc-rows N] [--quant-tc-stage 0|1] [--quant-max-rows N] [--tp N]\n");
        return 2;
    }
    if (A->tp > 1 && (A->quant == ENG_QUANT_ON || A->bf16w || A->kernels)) {
        fprintf(stderr, "bench_cuda: --tp %d takes none of --quant, --bf16-weights, --kernels (a "
                        "split uploads the checkpoint's dense weights; --kernels times one GPU)\n",
                A->tp);
        return 2;
    }
    return 0;
}

#ifndef BRISK_CUDA
int main(int argc, char **argv) {
    bargs A;
    int rc = parse_args(argc, argv, &A);
    if (rc) return rc;
    if (A.tp > 1) {
        fprintf(stderr, "bench_cuda: --tp %d needs a CUDA build with NCCL; this one was built "
                        "without CUDA (make CUDA=1)\n", A.tp);
        return 2;
    }
    printf("bench_cuda: built without CUDA (make CUDA=1 builds the CUDA backend)\n");
    return 0;
}
#else
#include <cJSON.h>
#include <cuda_runtime_api.h>
#include <cuda_profiler_api.h>
#include "kern.h"
#ifdef BRISK_NCCL
#include "kern_tp.h"
#endif

#define BS 16

typedef struct bench {
    const eng_model *m;
    eng_backend *b;
    eng_cuda_info info;
    int vocab, prompt, steps, warm, nb_per, ablate;
    const char *only;   /* --ablate-only: comma-separated variant names, NULL: all */
    int skinny_max;     /* --skinny-max: skinny_max_rows of every run; < 0: the library's */
    int quant;          /* eng_cuda_opts.quant for every run but the "dense" variant (0 with
                           --no-quant) */
    int quant_wide;     /* --quant-wide N: eng_cuda_opts.quant_wide; < 0: the library's */
    int quant_tc;       /* --quant-tc-rows N: eng_cuda_opts.quant_tc_rows; < 0: the library's */
    int quant_stage;    /* --quant-tc-stage N: eng_cuda_opts.quant_tc_stage; < 0: the library's */
    int quant_max;      /* --quant-max-rows N: eng_cuda_opts.quant_max_rows; < 0: the library's */
    int profile_step;   /* --profile-step: the profiler sees the last timed step of each run */
    double bw;                   /* bytes / s */
    uint64_t rng;
    struct kern_tp *tp;          /* --tp N > 1: N ranks for the all-reduces timed apart */
} bench;

/* The library's default options with the bench's own switches (--quant,
 * --skinny-max): what every run starts from. */
static void bench_opts(const bench *B, eng_cuda_opts *o) {
    eng_cuda_opts_default(o);
    o->quant = B->quant;
    if (B->quant_wide >= 0) o->quant_wide = B->quant_wide;
    if (B->quant_tc >= 0) o->quant_tc_rows = B->quant_tc;
    if (B->quant_stage >= 0) o->quant_tc_stage = B->quant_stage;
    if (B->quant_max >= 0) o->quant_max_rows = B->quant_max;
    if (B->skinny_max >= 0) o->skinny_max_rows = B->skinny_max;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int rnd_tok(bench *B) { return (int)(eng_rng_next(&B->rng) % (uint64_t)B->vocab); }

/* Device-to-device copy bandwidth, bytes read + written per second. */
static double device_bandwidth(void) {
    size_t n = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0, e1;
    double t[10], bw = 0;
    if (cudaMalloc(&a, n) || cudaMalloc(&b, n)) goto done;
    cudaMemset(a, 1, n);
    cudaMemset(b, 2, n);
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice);
    for (int i = 0; i < 10; i++) {
        float ms = 0;
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        t[i] = ms * 1e-3;
    }
    bw = 2.0 * n / median(t, 10);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
done:
    cudaFree(a);
    cudaFree(b);
    return cudaGetLastError() == cudaSuccess ? bw : 0;
}

/* Sequences of the current run: sequence i owns blocks [i*nb_per, ...). */
typedef struct bseqs {
    int n, *len, *next, *table;
    const int **tab;
} bseqs;

static int seqs_open(bseqs *s, int n, int nb_per) {
    s->n = n;
    s->len = calloc(n, sizeof(int));
    s->next = calloc(n, sizeof(int));
    s->table = malloc((size_t)n * nb_per * sizeof(int));
    s->tab = malloc((size_t)n * sizeof *s->tab);
    if (!s->len || !s->next || !s->table || !s->tab) return 0;
    for (int i = 0; i < n * nb_per; i++) s->table[i] = i;
    for (int i = 0; i < n; i++) s->tab[i] = s->table + (size_t)i * nb_per;
    return 1;
}
static void seqs_close(bseqs *s) {
    free(s->len); free(s->next); free(s->table); free(s->tab);
}

/* One pass over sequences [s0, s0+ns) processing rows[i] tokens each
 * (random prompt tokens when rows > 1, else the sampled next token);
 * greedy-samples the last row of each. */
static int pass(bench *B, bseqs *S, int s0, int ns, int rows_each, eng_err *err) {
    int R = ns * rows_each;
    int *tok = malloc(R * sizeof(int)), *pos = malloc(R * sizeof(int)), *rs = malloc(R * sizeof(int));
    int *out = malloc(ns * sizeof(int)), *slen = malloc(ns * sizeof(int));
    eng_token *t = malloc(ns * sizeof *t);
    eng_sampling *sp = calloc(ns, sizeof *sp);
    uint64_t *rng = calloc(ns, sizeof *rng);
    int rc = ENG_ENOMEM;
    if (!tok || !pos || !rs || !out || !slen || !t || !sp || !rng) goto done;
    for (int i = 0, r = 0; i < ns; i++) {
        int s = s0 + i;
        for (int j = 0; j < rows_each; j++, r++) {
            tok[r] = rows_each > 1 ? rnd_tok(B) : S->next[s];
            pos[r] = S->len[s] + j;
            rs[r] = i;
        }
        out[i] = r - 1;
        slen[i] = S->len[s] + rows_each;
    }
    eng_fwd_batch b = {R, tok, pos, rs, ns, slen, S->tab + s0, ns, out, NULL, t, sp, rng, NULL};
    rc = B->b->forward(B->b, &b, err);
    if (!rc)
        for (int i = 0; i < ns; i++) {
            S->len[s0 + i] += rows_each;
            S->next[s0 + i] = t[i].id;
        }
done:
    free(tok); free(pos); free(rs); free(out); free(slen); free(t); free(sp); free(rng);
    return rc;
}

typedef struct dres {
    double step_ms, tok_s, ctx, floor_ms;
} dres;

/* warm + steps decode steps of every sequence; times the last steps. */
static int decode(bench *B, bseqs *S, dres *r, eng_err *err) {
    double *t = malloc(B->steps * sizeof(double)), total = 0, toks = 0;
    if (!t) return ENG_ENOMEM;
    int rc = 0;
    for (int i = 0; i < B->warm && !rc; i++) rc = pass(B, S, 0, S->n, 1, err);
    for (int i = 0; i < B->steps && !rc; i++) {
        for (int s = 0; s < S->n; s++) toks += S->len[s] + 1;   /* positions attention reads */
        int prof = B->profile_step && i == B->steps - 1;
        if (prof) cudaProfilerStart();
        double t0 = eng_now_s();
        rc = pass(B, S, 0, S->n, 1, err);
        t[i] = eng_now_s() - t0;
        if (prof) cudaProfilerStop();
        total += t[i];
    }
    if (!rc) {
        double ctx = 0;
        for (int s = 0; s < S->n; s++) ctx += S->len[s];
        r->step_ms = 1e3 * median(t, B->steps);
        r->tok_s = (double)S->n * B->steps / total;
        r->ctx = ctx / S->n - B->steps / 2.0;
        /* the bytes this pass reads (blocks or dense copy) on the rank that
         * reads the most: a split's ranks run at once, one GPU each */
        double most = 0;
        for (int q = 0; q < B->info.n_ranks; q++) {
            eng_cuda_info in;
            if (eng_cuda_get_rank_info(B->b, q, &in)) return free(t), ENG_EINVAL;
            double wb = in.quant && S->n <= in.quant_rows ? (double)in.weight_bytes
                                                          : (double)in.dense_weight_bytes;
            double bytes = wb + toks / B->steps * (double)in.kv_bytes_per_token;
            if (bytes > most) most = bytes;
        }
        r->floor_ms = 1e3 * most / B->bw;
    }
    free(t);
    return rc;
}

/* A variant of the default options for a decode run. */
typedef struct bvar {
    const char *name;
    int fast_gemm, gemv_max, no_graphs, no_pdl;   /* gemv_max < 0: default */
    int skinny_max;                               /* < 0: default */
    int dense;                                    /* 1: quant off (the dense copy) */
    int qgemv;                                    /* 1: quant_tc_rows 0 (kern_qgemv's rows) */
} bvar;

static void set_var(bench *B, const bvar *v) {
    eng_cuda_opts o;
    bench_opts(B, &o);
    o.fast_gemm = v->fast_gemm;
    if (v->gemv_max >= 0) o.gemv_max_rows = v->gemv_max;
    o.no_graphs = v->no_graphs;
    o.no_pdl = v->no_pdl;
    if (v->dense) o.quant = 0;
    if (v->qgemv) o.quant_tc_rows = 0;
    if (v->skinny_max >= 0) o.skinny_max_rows = v->skinny_max;
    eng_cuda_set_opts(B->b, &o);
    eng_cuda_bench_skip(B->b, 0);
}

static void set_opts(bench *B, int fast_gemm, int gemv_max, int no_graphs, int no_pdl) {
    bvar v = {"", fast_gemm, gemv_max, no_graphs, no_pdl, -1, 0, 0};
    set_var(B, &v);
}

static cJSON *dres_json(const char *variant, const dres *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "variant", variant);
    cJSON_AddNumberToObject(o, "step_ms", r->step_ms);
    cJSON_AddNumberToObject(o, "tok_s", r->tok_s);
    cJSON_AddNumberToObject(o, "ctx_avg", r->ctx);
    cJSON_AddNumberToObject(o, "floor_ms", r->floor_ms);
    cJSON_AddNumberToObject(o, "frac_of_floor", r->floor_ms / r->step_ms);
    return o;
}

/* An ablation variant: options that differ from the defaults, stages left out. */
typedef struct avar {
    const char *name;
    int unfused, variant, span, skip, fast, pf, gemm, nopdl;
} avar;

static void set_avar(bench *B, const avar *v) {
    eng_cuda_opts o;
    bench_opts(B, &o);
    o.unfused_rope = v->unfused;
    o.attn_variant = v->variant;
    o.attn_span = v->span;
    o.fast_gemm = v->fast;
    o.prefill_attn = v->pf;
    o.gemm_attn = v->gemm;
    if (v->nopdl) o.no_pdl = 1;
    eng_cuda_set_opts(B->b, &o);
    eng_cuda_bench_skip(B->b, v->skip);
}

/* Whether name is in the comma-separated list (every name when list is NULL). */
static int picked(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !strncmp(p, name, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* --ablate, at every batch asked: the step again with other options and with stages left
 * out (their outputs are then wrong, the time is what counts): the time a
 * stage costs inside the step, overlap with its neighbours included, is the
 * default step's time minus the step without it. */
static int ablate(bench *B, bseqs *S, const dres *def, cJSON *arr, eng_err *err) {
    const int n = S->n;
    static const avar v[] = {
        {"default", .variant = 0},   /* the default options again: what the order of runs costs */
        {"unfused_rope", .unfused = 1},
        {"attn_v1", .variant = 1},
        {"attn_span16", .variant = 2, .span = 16},
        {"attn_span32", .variant = 2, .span = 32},
        {"attn_span64", .variant = 2, .span = 64},
        {"attn_span128", .variant = 2, .span = 128},
        {"attn_span256", .variant = 2, .span = 256},
        {"attn_span512", .variant = 2, .span = 512},
        {"attn_span1024", .variant = 2, .span = 1024},
        {"attn_span2048", .variant = 2, .span = 2048},
        {"attn_v2", .variant = 2},
        {"attn_v3", .variant = 3},
        {"attn_v3_span32", .variant = 3, .span = 32},
        {"attn_v3_span64", .variant = 3, .span = 64},
        {"attn_v3_span128", .variant = 3, .span = 128},
        {"attn_v3_span160", .variant = 3, .span = 160},
        {"attn_v3_span256", .variant = 3, .span = 256},
        {"attn_v3_span512", .variant = 3, .span = 512},
        {"attn_v4", .variant = 4},
        {"attn_v4_span32", .variant = 4, .span = 32},
        {"attn_v4_span64", .variant = 4, .span = 64},
        {"attn_v4_span96", .variant = 4, .span = 96},
        {"attn_v4_span160", .variant = 4, .span = 160},
        {"attn_v5", .variant = 5},
        {"attn_v5_span32", .variant = 5, .span = 32},
        {"attn_v5_span96", .variant = 5, .span = 96},   /* 6 warps a block */
        {"attn_v5_span128", .variant = 5, .span = 128},
        {"no_pdl", .nopdl = 1},   /* every kernel waits for the whole previous one */
        {"-attn_no_pdl", .skip = KERN_SKIP_ATTN, .nopdl = 1},
        {"-attn", .skip = KERN_SKIP_ATTN},
        {"-rope", .unfused = 1, .skip = KERN_SKIP_ROPE},
        {"-qkvo", .skip = KERN_SKIP_QKVO},
        {"-ffn", .skip = KERN_SKIP_FFN},
        {"-head", .skip = KERN_SKIP_HEAD},
        {"-layers", .skip = KERN_SKIP_ATTN | KERN_SKIP_QKVO | KERN_SKIP_FFN},
        {"-all", .skip = KERN_SKIP_ATTN | KERN_SKIP_QKVO | KERN_SKIP_FFN | KERN_SKIP_HEAD},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof v / sizeof v[0] && !rc; i++) {
        if (!picked(B->only, v[i].name)) continue;
        set_avar(B, &v[i]);
        for (int q = 0; q < S->n; q++) S->len[q] = B->prompt;   /* same contexts as the default run */
        dres r;
        if ((rc = decode(B, S, &r, err))) break;
        cJSON *j = dres_json(v[i].name, &r);
        cJSON_AddNumberToObject(j, "batch", n);
        cJSON_AddNumberToObject(j, "delta_ms", def->step_ms - r.step_ms);
        cJSON_AddItemToArray(arr, j);
        printf("  %5d  %-12s %8.3f   (default - this: %+.3f ms)\n", n, v[i].name, r.step_ms,
               def->step_ms - r.step_ms);
    }
    set_opts(B, 0, -1, 0, 0);
    return rc;
}

/* The variants worth timing beside the default at batch n: the other matrix
 * path (GEMV kernel or cuBLASLt) up to 8 rows, and the switches. */
static int batch_variants(const bench *B, int n, bvar *v) {
    eng_cuda_opts def;
    bench_opts(B, &def);
    int k = 0;
    if (n == 1) {
        v[k++] = (bvar){"no_pdl", 0, -1, 0, 1, -1, 0, 0};
        v[k++] = (bvar){"no_graphs", 0, -1, 1, 0, -1, 0, 0};
    }
    if (B->info.quant && n <= B->info.quant_rows) {
        if (!B->info.quant_wide) v[k++] = (bvar){"dense", 0, -1, 0, 0, -1, 1, 0};
        /* kern_qskinny's rows: the 2-8 row GEMV kernel beside it */
        if (n > 1 && n <= 8 && B->info.quant_rows > 8)
            v[k++] = (bvar){"qgemv", 0, -1, 0, 0, -1, 0, 1};
    } else if (!B->info.quant || n > 8) {
        if (n > 1 && n <= 8 && n <= def.gemv_max_rows) v[k++] = (bvar){"cublas", 0, 0, 0, 0, 0, 0, 0};
        if (n > 1 && n <= 8 && n > def.gemv_max_rows) v[k++] = (bvar){"gemv", 0, 8, 0, 0, -1, 0, 0};
        if (n > def.gemv_max_rows && n <= def.skinny_max_rows) v[k++] = (bvar){"cublas", 0, -1, 0, 0, 0, 0, 0};
    }
    if (n > 8) v[k++] = (bvar){"fast_gemm", 1, -1, 0, 0, -1, 0, 0};
    return k;
}

static void print_var(int n, const char *name, const dres *r) {
    printf("  %5d  %-10s %8.3f %10.1f %8.0f\n", n, name, r->step_ms, r->tok_s, r->ctx);
}

/* Decode at batch n: prefill, then the default run and its variants. */
static int run_batch(bench *B, int n, cJSON *arr, eng_err *err) {
    bseqs S;
    int rc = ENG_ENOMEM;
    if (!seqs_open(&S, n, B->nb_per)) goto done;
    int per = 4096 / B->prompt;
    if (per < 1) per = 1;
    for (int s0 = 0; s0 < n; s0 += per) {
        int ns = n - s0 < per ? n - s0 : per;
        if ((rc = pass(B, &S, s0, ns, B->prompt, err))) goto done;
    }
    dres d;
    set_opts(B, 0, -1, 0, 0);
    if ((rc = decode(B, &S, &d, err))) goto done;
    cJSON *o = dres_json("default", &d);
    cJSON_AddNumberToObject(o, "batch", n);
    cJSON_AddNumberToObject(o, "floor_tok_s", n / (d.floor_ms * 1e-3));
    cJSON_AddItemToArray(arr, o);
    printf("  %5d  %-10s %8.3f %10.1f %8.0f %9.3f %10.1f %7.1f%%\n", n, "default", d.step_ms,
           d.tok_s, d.ctx, d.floor_ms, n / (d.floor_ms * 1e-3), 100 * d.floor_ms / d.step_ms);
#ifdef BRISK_NCCL
    if (B->tp) {   /* the step's all-reduces, timed apart */
        const eng_config *g = eng_model_config(B->m);
        double eager, graph;
        if ((rc = kern_tp_time_allreduce(B->tp, (size_t)n * g->hidden, 100, &eager, &graph, err)))
            goto done;
        double ar = 1e3 * 2.0 * g->n_layers * graph;
        cJSON_AddNumberToObject(o, "allreduce_ms", ar);
        cJSON_AddNumberToObject(o, "allreduce_us_each", graph * 1e6);
        cJSON_AddNumberToObject(o, "allreduce_us_each_eager", eager * 1e6);
        cJSON_AddNumberToObject(o, "floor_plus_allreduce_ms", d.floor_ms + ar);
        printf("  %5d  all-reduces apart: %d x %zu bytes, %.2f us each, %.3f ms a step; floor + "
               "all-reduces %.3f ms (%.1f%% of the step)\n", n, 2 * g->n_layers,
               (size_t)n * g->hidden * 4, graph * 1e6, ar, d.floor_ms + ar,
               100 * (d.floor_ms + ar) / d.step_ms);
    }
#endif
    bvar v[4];
    int nv = batch_variants(B, n, v);
    for (int i = 0; i < nv; i++) {
        if (!picked(B->only, v[i].name)) continue;   /* --ablate-only names these too */
        dres r;
        set_var(B, &v[i]);
        rc = decode(B, &S, &r, err);
        set_opts(B, 0, -1, 0, 0);
        if (rc) goto done;
        o = dres_json(v[i].name, &r);
        cJSON_AddNumberToObject(o, "batch", n);
        cJSON_AddItemToArray(arr, o);
        print_var(n, v[i].name, &r);
    }
    if (B->ablate && (rc = ablate(B, &S, &d, arr, err))) goto done;
    rc = ENG_OK;
done:
    seqs_close(&S);
    return rc;
}

/* One prompt of n tokens from an empty sequence; its wall time in *secs. */
static int prompt_pass(bench *B, bseqs *S, int n, double *secs, eng_err *err) {
    S->len[0] = 0;
    double t0 = eng_now_s();
    int rc = pass(B, S, 0, 1, n, err);
    *secs = eng_now_s() - t0;
    return rc;
}

/* The prompt pass again with other options and with stages left out (as
 * ablate does for decode): where a prefill's time goes. */
static int prefill_ablate(bench *B, bseqs *S, int n, double def, cJSON *o, eng_err *err) {
    static const avar v[] = {
        {"fast_gemm", .fast = 1},
        {"pf_always", .pf = KERN_PF_ALWAYS},
        {"pf_never", .pf = KERN_PF_NEVER},
        {"gemm_off", .gemm = -1},
        {"gemm_off_pf", .pf = KERN_PF_ALWAYS, .gemm = -1},
        {"-attn", .skip = KERN_SKIP_ATTN},
        {"-qkvo", .skip = KERN_SKIP_QKVO},
        {"-ffn", .skip = KERN_SKIP_FFN},
    };
    cJSON *arr = cJSON_AddArrayToObject(o, "ablate");
    int rc = 0;
    for (size_t i = 0; i < sizeof v / sizeof v[0] && !rc; i++) {
        if (!picked(B->only, v[i].name)) continue;
        set_avar(B, &v[i]);
        double t[4];
        for (int k = 0; k < 4 && !rc; k++) rc = prompt_pass(B, S, n, &t[k], err);
        if (rc) break;
        const double md = median(t + 1, 3);
        printf("prefill %d tokens, %-10s %7.2f ms (default - this: %+.2f ms)\n", n, v[i].name,
               1e3 * md, 1e3 * (def - md));
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "variant", v[i].name);
        cJSON_AddNumberToObject(j, "ms", 1e3 * md);
        cJSON_AddItemToArray(arr, j);
    }
    set_opts(B, 0, -1, 0, 0);
    return rc;
}

/* Blocks prefill() needs for a prompt of n tokens and its new-length passes. */
#define FRESH_MAX 305
static int prefill_blocks(int n) { return ((n > FRESH_MAX ? n : FRESH_MAX) + BS - 1) / BS; }

static int prefill(bench *B, int n, cJSON *root, eng_err *err) {
    bseqs S;
    double t[6];
    int rc = ENG_ENOMEM;
    const int nbp = prefill_blocks(n);
    if (!seqs_open(&S, 1, B->nb_per > nbp ? B->nb_per : nbp)) goto done;
    for (int i = 0; i < 6; i++)
        if ((rc = prompt_pass(B, &S, n, &t[i], err))) goto done;
    double med = median(t + 1, 5);
    cJSON *o = cJSON_AddObjectToObject(root, "prefill");
    cJSON_AddNumberToObject(o, "tokens", n);
    cJSON_AddNumberToObject(o, "seconds", med);
    cJSON_AddNumberToObject(o, "tok_s", n / med);
    printf("prefill %d tokens: %.2f ms, %.0f tokens/s\n", n, 1e3 * med, n / med);
    {   /* the same through the decode attention kernels (one block per row);
         * the default picks the prefill kernel only for >= n_sms 16-row tiles */
        eng_cuda_opts op;
        bench_opts(B, &op);
        op.prefill_attn = KERN_PF_NEVER;
        op.gemm_attn = -1;
        eng_cuda_set_opts(B->b, &op);
        double td[4];
        for (int i = 0; i < 4; i++)
            if ((rc = prompt_pass(B, &S, n, &td[i], err))) goto done;
        set_opts(B, 0, -1, 0, 0);
        double md = median(td + 1, 3);
        printf("prefill %d tokens, decode attention kernels: %.2f ms (default %.2fx faster)\n", n,
               1e3 * md, md / med);
        cJSON_AddNumberToObject(o, "seconds_decode_attention", md);
    }
    if (B->ablate && (rc = prefill_ablate(B, &S, n, med, o, err))) goto done;
    /* a length never seen before pays for new cuBLASLt plans (and, up to the
     * graph limit, a graph per row bucket): first pass vs the same length again */
    static const int fresh[2][5] = {{41, 57, 73, 89, 105}, {301, 302, 303, 304, FRESH_MAX}};
    for (int g = 0; g < 2; g++) {
        double first = 0, again = 0;
        for (int i = 0; i < 5; i++)
            for (int rep = 0; rep < 2; rep++) {
                double ts;
                if ((rc = prompt_pass(B, &S, fresh[g][i], &ts, err))) goto done;
                *(rep ? &again : &first) += ts / 5;
            }
        printf("prefill of a new length (%d..%d tokens): first %.2f ms, again %.2f ms\n", fresh[g][0],
               fresh[g][4], 1e3 * first, 1e3 * again);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddNumberToObject(f, "tokens_from", fresh[g][0]);
        cJSON_AddNumberToObject(f, "first_ms", 1e3 * first);
        cJSON_AddNumberToObject(f, "again_ms", 1e3 * again);
        cJSON_AddItemToObject(o, g ? "new_length_long" : "new_length_short", f);
    }
    rc = ENG_OK;
done:
    seqs_close(&S);
    return rc;
}

/* ------------------------------------------------- per-kernel timings */
/* Each kernel of a batch-1 decode step alone, at the model's shapes: 32
 * launches captured in a graph (with programmatic dependent launch, as in
 * the backend), weights taken at rotating offsets of a 768 MiB pool so the
 * L2 cache does not serve them; median of 5 replays / 32. */
#define KB_POOL ((size_t)768 << 20)

typedef struct kb_ctx {
    cudaStream_t s;
    char *pool;
    size_t off;
    cudaEvent_t e0, e1;
    int q16;            /* --act q16: kern_qw.q16 of the quantized products kern_qgemv rounds */
} kb_ctx;

static const void *kb_weights(kb_ctx *k, size_t bytes) {
    if (k->off + bytes > KB_POOL) k->off = 0;
    const void *p = k->pool + k->off;
    k->off = (k->off + bytes + 4095) & ~(size_t)4095;
    return p;
}

/* A product: GEMV (mode, norm) or, for which 5/6, kern_skinny / cuBLASLt
 * over R rows of act (high and low parts) into y2. */
typedef struct kb_gemv {
    int N, K, mode, norm;
    int R, parts;
    int qtype;   /* which 7: the block type */
    kern_blas *bl;
    const void *act;
    float *y2;
} kb_gemv;

/* A weight of one segment of N rows of type t at w. */
static kern_qw kb_qw(int t, int N, int K, const void *w) {
    kern_qw qw;
    memset(&qw, 0, sizeof qw);
    qw.n_seg = 1;
    qw.type[0] = t;
    qw.end[0] = N;
    qw.row_bytes[0] = (int)kern_qrow_bytes(t, K);
    qw.w[0] = w;
    return qw;
}

/* Times n launches of kernel `which` (0 GEMV, 1 attention, 2 sampling, 3
 * RoPE, 4 attention variant 2, 5 kern_skinny, 6 cuBLASLt, 7 kern_qgemv
 * over g->R rows of x, 8 kern_qskinny over g->R rows of g->act, 9 the same
 * with its blocks staged in shared memory) in one graph;
 * returns seconds per launch, or -1. */
static double kb_time(kb_ctx *k, int which, const kb_gemv *g, const float *x, float *y,
                      const float *nw, const kern_step *st, kern_kv kv, int nh, int splits,
                      float *part, unsigned *cnt, int V, int *ids, int sms, int pdl) {
    enum { N = 32 };
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    double t[5], res = -1;
    if (cudaStreamBeginCapture(k->s, cudaStreamCaptureModeThreadLocal)) return -1;
    int err = 0;
    for (int i = 0; i < N && !err; i++) {
        if (which == 0)
            err = kern_gemv(k->s, kb_weights(k, (size_t)g->N * g->K * 2), KERN_BF16, g->N, g->K, x, 1,
                            g->norm ? nw : NULL, 1e-6f, g->mode, y, sms, pdl);
        else if (which == 1)
            err = kern_attention(k->s, x, kv, st, 1, nh, splits, y, NULL, 0, part, cnt, pdl);
        else if (which == 4)   /* V carries variant 2's span */
            err = kern_attention2(k->s, x, kv, st, 1, nh, splits, V, y, NULL, 0, part, cnt, pdl);
        else if (which >= 7 && which <= 9) {
            kern_qw qw = kb_qw(g->qtype, g->N, g->K, kb_weights(k, kern_qrow_bytes(g->qtype, g->K) * g->N));
            /* q16: the rows kern_qgemv rounds (1, 2), f32 past them */
            if (which == 7)
                qw.q16 = k->q16 && kern_qgemv_q16_ok(&qw, g->N, g->K,
                                                     g->mode == KERN_SWIGLU || g->mode == KERN_GEGLU, g->R);
            err = which == 7 && g->mode == KERN_ROPE
                      ? kern_qgemv_qkv(k->s, &qw, g->K, x, g->R, nw, 1e-6f, NULL, st, nh, nw, y, kv, sms, pdl)
                  : which == 7 ? kern_qgemv(k->s, &qw, g->N, g->K, x, g->R, g->norm ? nw : NULL, 1e-6f,
                                            g->mode, y, sms, pdl)
                             : kern_qskinny(k->s, &qw, g->N, g->K, g->act, g->R, g->parts, g->y2, sms, pdl,
                                            which == 9);
        } else if (which == 5)
            err = kern_skinny(k->s, kb_weights(k, (size_t)g->N * g->K * 2), g->N, g->K, g->act, g->R, 1,
                              g->parts, g->y2, sms, pdl);
        else if (which == 6) {
            eng_err e2;
            err = kern_blas_gemm(g->bl, k->s, kb_weights(k, (size_t)g->N * g->K * 2), KERN_BF16, g->N,
                                 g->K, g->act, 1, 2 * g->R, g->y2, &e2);
        } else if (which == 2)
            err = kern_sample(k->s, x, NULL, 1, V, st, ids, y, y + 1, kern_sample_blocks(1, sms),
                              part, cnt + 8, pdl);
        else
            err = kern_rope_kv(k->s, x, 1, NULL, st, 1, nh, nw, NULL, NULL, 0.f, 1.0f, y, kv, pdl);
    }
    cudaError_t e = cudaStreamEndCapture(k->s, &graph);
    if (err || e || cudaGraphInstantiate(&exec, graph, 0)) goto done;
    cudaGraphLaunch(exec, k->s);
    for (int r = 0; r < 5; r++) {
        float ms = 0;
        cudaEventRecord(k->e0, k->s);
        cudaGraphLaunch(exec, k->s);
        cudaEventRecord(k->e1, k->s);
        cudaEventSynchronize(k->e1);
        cudaEventElapsedTime(&ms, k->e0, k->e1);
        t[r] = ms * 1e-3 / N;
    }
    if (cudaGetLastError() == cudaSuccess) res = median(t, 5);
done:
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    return res;
}

/* The decode products at 8..64 rows (2..32 for the lm_head's share), each
 * through kern_skinny and through cuBLASLt, weights cold (the pool is
 * larger than L2): time per product, bandwidth, and the ratio. */
static void kb_products(kb_ctx *k, const eng_config *c, double bw, int sms, size_t big,
                        cJSON *root) {
    const int H = c->hidden, I = c->intermediate, QD = c->n_heads * c->head_dim;
    const int QKV = QD + 2 * c->n_kv_heads * c->head_dim, V = c->vocab_size;
    const int shapes[5][2] = {{QKV, H}, {H, QD}, {2 * I, H}, {H, I}, {V, H}};
    const char *names[5] = {"qkv", "o_proj", "gate|up", "down", "lm_head"};
    const int rows[4] = {8, 16, 32, 64};
    kern_blas *bl = NULL;
    eng_err err;
    void *act = NULL;
    float *y2 = NULL;
    size_t ybytes = (size_t)2 * 64 * V * 4;
    for (int i = 0; i < 5; i++)
        for (int r = 0; r < 4; r++) {
            size_t b = (size_t)kern_skinny_parts(shapes[i][0], shapes[i][1], rows[r], 1, sms, 1 << 20) *
                       rows[r] * shapes[i][0] * 4;
            if (b > ybytes) ybytes = b;
        }
    if (kern_blas_create(&bl, &err) || cudaMalloc(&act, (size_t)2 * 64 * (I > H ? I : H) * 2) ||
        cudaMalloc((void **)&y2, ybytes)) {
        printf("products: setup failed\n");
        goto done;
    }
    cudaMemset(act, 0x3c, (size_t)2 * 64 * (I > H ? I : H) * 2);   /* bf16 ~0.011 */
    cJSON *arr = cJSON_AddArrayToObject(root, "products");
    printf("products (graph of 32 launches, cold weights): kern_skinny | cuBLASLt\n");
    for (int i = 0; i < 5; i++) {
        if ((size_t)shapes[i][0] * shapes[i][1] * 2 > big) continue;
        for (int r = 0; r < 4; r++) {
            kb_gemv g = {.N = shapes[i][0], .K = shapes[i][1], .R = rows[r], .bl = bl, .act = act,
                         .y2 = y2};
            g.parts = kern_skinny_parts(g.N, g.K, g.R, 1, sms, 1 << 20);
            double ts = g.parts ? kb_time(k, 5, &g, NULL, NULL, NULL, NULL, (kern_kv){0}, 0, 0, NULL,
                                          NULL, 0, NULL, sms, 1) : -1;
            double tb = kb_time(k, 6, &g, NULL, NULL, NULL, NULL, (kern_kv){0}, 0, 0, NULL, NULL, 0,
                                NULL, sms, 1);
            double bytes = (double)g.N * g.K * 2;
            printf("  %-8s %6d x %-6d %3d rows %8.2f us (%2d parts, %4.0f%% of copy) | %8.2f us (%4.0f%%)  %.2fx\n",
                   names[i], g.N, g.K, g.R, ts * 1e6, g.parts, 100 * bytes / ts / bw, tb * 1e6,
                   100 * bytes / tb / bw, tb / ts);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "product", names[i]);
            cJSON_AddNumberToObject(o, "rows", g.R);
            cJSON_AddNumberToObject(o, "parts", g.parts);
            cJSON_AddNumberToObject(o, "skinny_us", ts * 1e6);
            cJSON_AddNumberToObject(o, "cublaslt_us", tb * 1e6);
            cJSON_AddItemToArray(arr, o);
        }
    }
done:
    kern_blas_destroy(bl);
    cudaFree(act);
    cudaFree(y2);
    cudaGetLastError();
}

/* kern_qgemv on the model's four layer products in Q4_K, Q6_K and Q8_0 at
 * 1, 2, 4 and 8 rows (the pool's bytes as blocks: the values do not matter
 * for the time), weights cold; bandwidth counts the file's bytes
 * (eng_dt_block_bytes), as the floor does.  The q|k|v is timed twice: as a
 * plain product and as the step runs it (kern_qgemv_qkv: RoPE and the KV
 * write in its epilogue, st / kv one row at position ctx - 1; nw stands in
 * for the inverse frequencies). */
static void kb_qproducts(kb_ctx *k, const eng_config *c, double bw, int sms, const float *x,
                         float *y, const float *nw, const kern_step *st, kern_kv kv, cJSON *root) {
    const int H = c->hidden, I = c->intermediate, QD = c->n_heads * c->head_dim;
    const int QKV = QD + 2 * c->n_kv_heads * c->head_dim;
    kb_gemv gs[5] = {{.N = QKV, .K = H, .mode = KERN_STORE, .norm = 1},
                     {.N = QKV, .K = H, .mode = KERN_ROPE, .norm = 1},
                     {.N = H, .K = QD, .mode = KERN_RESID},
                     {.N = 2 * I, .K = H, .mode = KERN_SWIGLU, .norm = 1},
                     {.N = H, .K = I, .mode = KERN_RESID}};
    const char *names[5] = {"qkv", "qkv+rope", "o_proj", "gate|up", "down"};
    const int types[3] = {ENG_DT_Q4_K, ENG_DT_Q6_K, ENG_DT_Q8_0};
    /* kern_qgemv at 1..8 rows, then kern_qskinny (tensor cores; one row
     * beside kern_qgemv's) with its parts left apart, its blocks loaded into
     * registers and staged in shared memory (stage 1) */
    const int rows[3][4] = {{1, 2, 4, 8}, {1, 8, 16, 32}, {1, 8, 16, 32}};
    const char *kname[3] = {"kern_qgemv", "kern_qskinny", "kern_qskinny stage 1"};
    const char *jname[3] = {"qproducts", "qskinny", "qskinny_stage"};
    void *act = NULL;
    float *y2 = NULL;
    const size_t ybytes = (size_t)64 * 32 * (2 * I > QKV ? 2 * I : QKV) * 4;
    if (cudaMalloc(&act, (size_t)2 * 32 * (I > H ? I : H) * 2) || cudaMalloc((void **)&y2, ybytes)) {
        printf("quantized products: allocation failed\n");
        goto done;
    }
    cudaMemset(act, 0x3c, (size_t)2 * 32 * (I > H ? I : H) * 2);   /* bf16 ~0.011 */
    for (int kk = 0; kk < 3; kk++) {
        cJSON *arr = cJSON_AddArrayToObject(root, jname[kk]);
        printf("%s (graph of 32 launches, cold blocks): us and %% of copy bandwidth at %d | %d | %d | %d rows\n",
               kname[kk], rows[kk][0], rows[kk][1], rows[kk][2], rows[kk][3]);
        for (int ti = 0; ti < 3; ti++)
            for (int i = 0; i < 5; i++) {
                if (kk && gs[i].mode == KERN_ROPE) continue;   /* kern_qskinny has no epilogue */
                kb_gemv g = gs[i];
                g.qtype = types[ti];
                g.act = act;
                g.y2 = y2;
                const size_t rb = kern_qrow_bytes(g.qtype, g.K);
                if (!rb || rb * g.N > KB_POOL / 2) continue;
                const double bytes = (double)g.N * (g.K / eng_dt_block(g.qtype)) * eng_dt_block_bytes(g.qtype);
                const kern_qw probe = kb_qw(g.qtype, g.N, g.K, k->pool);
                printf("  %-5s %-8s %6d x %-6d", eng_dt_name(g.qtype), names[i], g.N, g.K);
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "type", eng_dt_name(g.qtype));
                cJSON_AddStringToObject(o, "product", names[i]);
                cJSON_AddNumberToObject(o, "bytes", bytes);
                cJSON *us = cJSON_AddArrayToObject(o, "us");
                for (int r = 0; r < 4; r++) {
                    g.R = rows[kk][r];
                    g.parts = kk ? kern_qskinny_parts(&probe, g.N, g.K, g.R, sms, 64) : 0;
                    double t = !kk || g.parts ? kb_time(k, 7 + kk, &g, x, y, nw, st, kv, c->n_heads, 0,
                                                        NULL, NULL, 0, NULL, sms, 1) : -1;
                    printf(" | %7.2f %3.0f%%", t * 1e6, t > 0 ? 100 * bytes / t / bw : 0.0);
                    if (kk) printf(" %2dp", g.parts);
                    cJSON_AddItemToArray(us, cJSON_CreateNumber(t * 1e6));
                }
                printf("\n");
                cJSON_AddItemToArray(arr, o);
            }
    }
done:
    cudaFree(act);
    cudaFree(y2);
    cudaGetLastError();
}

static void kernel_bench(const eng_config *c, double bw, int sms, int quant, int act, cJSON *root) {
    kb_ctx k;
    memset(&k, 0, sizeof k);
    k.q16 = act == ENG_ACT_Q16;
    int H = c->hidden, I = c->intermediate, QD = c->n_heads * c->head_dim;
    int QKV = QD + 2 * c->n_kv_heads * c->head_dim, V = c->vocab_size, ctx = 147, bs = BS;
    size_t big = (size_t)V * H * 2 > KB_POOL ? KB_POOL : (size_t)V * H * 2;
    float *x = NULL, *y = NULL, *nw = NULL, *part = NULL, *kvp = NULL;
    unsigned *cnt = NULL;
    int *dint = NULL;
    kern_step *dst = NULL;
    size_t nkv = (size_t)(ctx / bs + 1) * 2 * c->n_kv_heads * bs * c->head_dim;
    uint16_t *h = malloc(1 << 24);
    if (!h || cudaStreamCreate(&k.s) || cudaMalloc((void **)&k.pool, KB_POOL) ||
        cudaMalloc((void **)&x, (size_t)V * 4) || cudaMalloc((void **)&y, (size_t)V * 4 + 64) ||
        cudaMalloc((void **)&nw, (size_t)(I > H ? I : H) * 4) || cudaMalloc((void **)&part, (size_t)64 * QD * 8) ||
        cudaMalloc((void **)&cnt, 64) || cudaMalloc((void **)&kvp, nkv * 4) ||
        cudaMalloc((void **)&dint, 4096) || cudaMalloc((void **)&dst, sizeof(kern_step))) {
        printf("kernel bench: allocation failed\n");
        goto done;
    }
    /* random bf16 weights (|w| < 0.05), random activations */
    for (size_t i = 0; i < (1 << 23); i++) h[i] = kern_f32_to_bf16(((float)((i * 2654435761u) % 2001) - 1000) * 5e-5f);
    for (size_t o = 0; o < KB_POOL; o += 1 << 24) cudaMemcpy(k.pool + o, h, 1 << 24, cudaMemcpyHostToDevice);
    {
        float *hf = (float *)h;
        for (int i = 0; i < (1 << 22); i++) hf[i] = 0.5f + (float)(((unsigned)i * 7919u) % 1000u) * 1e-3f;
        cudaMemcpy(x, hf, (size_t)V * 4 < (1 << 24) ? (size_t)V * 4 : (1 << 24), cudaMemcpyHostToDevice);
        cudaMemcpy(nw, hf, (size_t)(I > H ? I : H) * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(kvp, hf, nkv * 4 < (1 << 24) ? nkv * 4 : (1 << 24), cudaMemcpyHostToDevice);
        int *hi = (int *)h;   /* tokens, pos, row_seq, table, out_rows, top_k | temp, top_p | u */
        memset(hi, 0, 4096);
        hi[1] = ctx - 1;
        for (int b = 0; b < ctx / bs + 1; b++) hi[8 + b] = b;
        cudaMemcpy(dint, hi, 4096, cudaMemcpyHostToDevice);
        kern_step hs;
        memset(&hs, 0, sizeof hs);
        hs.n_rows = 1; hs.n_out = 1; hs.table_stride = ctx / bs + 1;
        hs.tokens = dint; hs.pos = dint + 1; hs.row_seq = dint + 2; hs.table = dint + 8;
        hs.out_rows = dint + 2; hs.top_k = dint + 2;
        hs.temp = (const float *)(dint + 2); hs.top_p = (const float *)(dint + 2);
        hs.u = (const double *)(dint + 4);
        cudaMemcpy(dst, &hs, sizeof hs, cudaMemcpyHostToDevice);
        cudaMemset(cnt, 0, 64);
    }
    cudaEventCreate(&k.e0);
    cudaEventCreate(&k.e1);
    const kern_kv kv = {kvp, (long long)(2 * c->n_kv_heads * bs * c->head_dim), c->n_kv_heads,
                        c->head_dim, bs, 0, KERN_F32};
    {
        kb_gemv gs[5] = {{.N = QKV, .K = H, .mode = KERN_STORE, .norm = 1},
                         {.N = H, .K = QD, .mode = KERN_RESID},
                         {.N = 2 * I, .K = H, .mode = KERN_SWIGLU, .norm = 1},
                         {.N = H, .K = I, .mode = KERN_RESID}, {.N = V, .K = H, .mode = KERN_STORE}};
        const char *names[5] = {"qkv (+norm)", "o_proj (+resid)", "gate|up (+norm, swiglu)",
                                "down (+resid)", "lm_head"};
        cJSON *arr = cJSON_AddArrayToObject(root, "kernels_batch1");
        printf("per-kernel, batch 1 (graph of 32 launches, PDL on | off):\n");
        for (int i = 0; i < 5; i++) {
            if ((size_t)gs[i].N * gs[i].K * 2 > big) continue;
            double t = kb_time(&k, 0, &gs[i], x, y, nw, NULL, kv, 0, 0, NULL, NULL, 0, NULL, sms, 1);
            double t0 = kb_time(&k, 0, &gs[i], x, y, nw, NULL, kv, 0, 0, NULL, NULL, 0, NULL, sms, 0);
            double bytes = (double)gs[i].N * gs[i].K * 2;
            printf("  %-24s %6d x %-6d %8.2f us %7.0f GB/s (%4.0f%% of copy) | %8.2f us\n", names[i],
                   gs[i].N, gs[i].K, t * 1e6, bytes / t / 1e9, 100 * bytes / t / bw, t0 * 1e6);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "kernel", names[i]);
            cJSON_AddNumberToObject(o, "us", t * 1e6);
            cJSON_AddNumberToObject(o, "us_no_pdl", t0 * 1e6);
            cJSON_AddNumberToObject(o, "GBps", bytes / t / 1e9);
            cJSON_AddItemToArray(arr, o);
        }
        int splits = kern_attn_splits(1, c->n_kv_heads, sms);
        double ta = kb_time(&k, 1, NULL, x, y, nw, dst, kv, c->n_heads, splits, part, cnt, 0, NULL, sms, 1);
        double tr = kb_time(&k, 3, NULL, x, y, nw, dst, kv, c->n_heads, 0, NULL, NULL, 0, NULL, sms, 1);
        double ts = kb_time(&k, 2, NULL, x, y, nw, dst, kv, 0, 0, part, cnt, V, dint + 512, sms, 1);
        printf("  attention ctx %d, %d splits %8.2f us\n  rope + kv write %17.2f us\n"
               "  sampling (greedy, V=%d) %8.2f us\n", ctx, splits, ta * 1e6, tr * 1e6, V, ts * 1e6);
        for (int span = 16; span <= 256; span *= 2) {
            double t2 = kb_time(&k, 4, NULL, x, y, nw, dst, kv, c->n_heads, splits, part, cnt, span, NULL, sms, 1);
            printf("  attention variant 2, span %3d %8.2f us\n", span, t2 * 1e6);
        }
        double step = 0;
        for (int i = 0; i < 4; i++) {
            cJSON *o = cJSON_GetArrayItem(arr, i);
            if (o) step += cJSON_GetObjectItem(o, "us")->valuedouble;
        }
        step = c->n_layers * (step + (ta + tr) * 1e6);
        cJSON *o = cJSON_GetArrayItem(arr, 4);
        if (o) step += cJSON_GetObjectItem(o, "us")->valuedouble;
        step += ts * 1e6;
        printf("  sum over one step: %.0f us\n", step);
        cJSON_AddNumberToObject(root, "kernels_step_sum_us", step);
        cJSON_AddNumberToObject(root, "attention_us", ta * 1e6);
        cJSON_AddNumberToObject(root, "rope_us", tr * 1e6);
        cJSON_AddNumberToObject(root, "sample_us", ts * 1e6);
    }
    kb_products(&k, c, bw, sms, big, root);
    if (quant) kb_qproducts(&k, c, bw, sms, x, y, nw, dst, kv, root);
done:
    free(h);
    cudaFree(k.pool); cudaFree(x); cudaFree(y); cudaFree(nw); cudaFree(part); cudaFree(kvp);
    cudaFree(cnt); cudaFree(dint); cudaFree(dst);
    if (k.s) cudaStreamDestroy(k.s);
    cudaGetLastError();
}

int main(int argc, char **argv) {
    bargs A;
    int rc = parse_args(argc, argv, &A);
    if (rc) return rc;
#ifndef BRISK_NCCL
    if (A.tp > 1) {
        fprintf(stderr, "bench_cuda: --tp %d needs NCCL: this build has none (make CUDA=1 builds it "
                        "where nccl.h is found)\n", A.tp);
        return 2;
    }
#endif
    const char *dir = A.dir, *out = A.out;
    int *batches = A.batches, nb = A.nb, pf = A.pf, kernels = A.kernels, kvf = A.kvf;
    int bf16w = A.bf16w;
    bench B;
    memset(&B, 0, sizeof B);
    B.prompt = A.prompt; B.steps = A.steps; B.profile_step = A.profile_step; B.warm = 3; B.rng = 12345; B.skinny_max = A.skinny_max;
    B.ablate = A.ablate; B.only = A.only; B.quant = A.quant != ENG_QUANT_OFF;
    B.quant_wide = A.quant_wide;
    B.quant_tc = A.quant_tc;
    B.quant_stage = A.quant_stage;
    B.quant_max = A.quant_max;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess) ndev = 0;
    if (A.tp > 1 && ndev < A.tp) {   /* a split asked for is a failure, not a note */
        fprintf(stderr, "bench_cuda: --tp %d needs %d GPUs, %d visible\n", A.tp, A.tp, ndev);
        return 1;
    }
    if (ndev < 1) {
        printf("bench_cuda: no CUDA device visible\n");
        return 0;
    }
    const char *name = strrchr(dir, '/');
    name = name && name[1] ? name + 1 : dir;
    char outbuf[512];
    if (!out) {
        if (A.tp > 1) snprintf(outbuf, sizeof outbuf, "benchmarks/results/cuda_tp%d_%s.json", A.tp, name);
        else snprintf(outbuf, sizeof outbuf, "benchmarks/results/cuda_%s.json", name);
        out = outbuf;
    }
    eng_err err = {0};
    eng_model *m = NULL;
    double t0 = eng_now_s();
    if (eng_model_load_blocks(dir, &m, &err)) { fprintf(stderr, "bench_cuda: %s\n", err.msg); return 1; }
    B.m = m;
    B.vocab = eng_model_config(m)->vocab_size;
    printf("model %s loaded in %.1f s\n", name, eng_now_s() - t0);
    B.bw = device_bandwidth();
    if (B.bw <= 0) { fprintf(stderr, "bench_cuda: bandwidth measurement failed\n"); return 1; }
    int maxb = 1;
    for (int i = 0; i < nb; i++) if (batches[i] > maxb) maxb = batches[i];
    B.nb_per = (B.prompt + 4 * (B.warm + B.steps) + 1 + BS - 1) / BS;
    int pf_blocks = prefill_blocks(pf), n_blocks = maxb * B.nb_per;
    if (n_blocks < pf_blocks) n_blocks = pf_blocks;
    t0 = eng_now_s();
    eng_cuda_opts co;
    bench_opts(&B, &co);
    co.bf16_weights = bf16w;
    co.kv_format = kvf;
    co.act = A.act;
    if (A.tp > 1 && (A.act == ENG_ACT_Q16 || A.act == ENG_ACT_BF16)) {
        fprintf(stderr, "bench_cuda: --act %s runs on one GPU (no --tp)\n", eng_act_name(A.act));
        return 2;
    }
    if (A.tp > 1 ? eng_backend_cuda_tp_create(m, n_blocks, BS, kvf, A.tp, &B.b, &err)
                 : eng_backend_cuda_create_opts(m, n_blocks, BS, &co, &B.b, &err)) {
        fprintf(stderr, "bench_cuda: %s\n", err.msg);
        return 1;
    }
    set_opts(&B, 0, -1, 0, 0);   /* the split's ranks too get --skinny-max */
    eng_cuda_get_info(B.b, &B.info);
#ifdef BRISK_NCCL
    /* a communicator of its own, for the all-reduces timed apart */
    if (A.tp > 1 && kern_tp_create(A.tp, &B.tp, &err)) {
        fprintf(stderr, "bench_cuda: %s\n", err.msg);
        return 1;
    }
#endif
    printf("backend up in %.1f s on %s (%d SMs)%s: weights %.3f GB (%s), KV %zu bytes/token (%s), "
           "%d blocks\n", eng_now_s() - t0, B.info.device, B.info.n_sms,
           B.info.n_ranks > 1 ? ", rank 0 of the split" : "", B.info.dense_weight_bytes / 1e9,
           B.info.weights_bf16 ? "bf16" : "f32", B.info.kv_bytes_per_token,
           eng_kv_format_name(B.info.kv_format), n_blocks);
    printf("activations: %s%s (--act %s)\n", eng_act_name(B.info.act),
           B.info.act == ENG_ACT_Q16 ? ": the products' inputs rounded per 16 elements"
           : B.info.act == ENG_ACT_BF16 ? ": the products' inputs rounded to bf16" : "",
           eng_act_name(A.act));
    if (B.info.n_ranks > 1)
        printf("split over %d GPUs: floor = the largest rank's weight + KV bytes over one GPU's copy "
               "bandwidth; all-reduces timed apart (2 x layers of rows x hidden f32 a step)\n",
               B.info.n_ranks);
    if (B.info.quant)
        printf("quantized blocks: %.3f GB read per step by passes of up to %d rows (the floor's "
               "bytes there); wider passes read the %s\n", B.info.weight_bytes / 1e9,
               B.info.quant_rows, B.info.quant_wide == 2 ? "halves made from the blocks per product"
               : B.info.quant_wide ? "bf16 halves copy above" : B.info.weights_bf16 ? "bf16 copy above"
                                                                 : "f32 copy above");
    printf("weights hold %.3f GB of device memory\n", B.info.weights_held / 1e9);
    printf("device copy bandwidth: %.0f GB/s (read + write)\n", B.bw / 1e9);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", name);
    cJSON_AddStringToObject(root, "device", B.info.device);
    cJSON_AddNumberToObject(root, "bandwidth_GBps", B.bw / 1e9);
    cJSON_AddNumberToObject(root, "tp", B.info.n_ranks);
    cJSON_AddNumberToObject(root, "weight_bytes", (double)B.info.dense_weight_bytes);
    if (B.info.n_ranks > 1) {
        cJSON_AddStringToObject(root, "floor_note", "per GPU: the largest rank's weight share + its "
                                "KV bytes over one GPU's copy bandwidth (weight_bytes, "
                                "kv_bytes_per_token: rank 0's)");
        cJSON_AddStringToObject(root, "allreduce_note", "allreduce_ms: 2 x layers all-reduces of "
                                "batch x hidden f32 on every GPU, replayed from a CUDA graph apart "
                                "from the step (a communicator of its own); the logits all-gather "
                                "and split-K passes' larger messages not counted");
    }
    cJSON_AddNumberToObject(root, "quant", B.info.quant);
    cJSON_AddNumberToObject(root, "quant_wide", B.info.quant_wide);
    cJSON_AddNumberToObject(root, "weights_held_bytes", (double)B.info.weights_held);
    if (B.info.quant) {
        cJSON_AddNumberToObject(root, "quant_weight_bytes", (double)B.info.weight_bytes);
        cJSON_AddNumberToObject(root, "quant_rows", B.info.quant_rows);
    }
    cJSON_AddNumberToObject(root, "kv_bytes_per_token", (double)B.info.kv_bytes_per_token);
    cJSON_AddStringToObject(root, "kv_format", eng_kv_format_name(B.info.kv_format));
    cJSON_AddStringToObject(root, "act", eng_act_name(B.info.act));
    cJSON_AddNumberToObject(root, "prompt", B.prompt);
    cJSON_AddNumberToObject(root, "steps", B.steps);
    if (kernels) kernel_bench(eng_model_config(m), B.bw, B.info.n_sms, A.quant == ENG_QUANT_ON, B.info.act, root);
    rc = pf > 0 ? prefill(&B, pf, root, &err) : 0;   /* --prefill 0: decode only */
    set_opts(&B, 0, -1, 0, 0);   /* --skinny-max from the first run on */
    cJSON *arr = cJSON_AddArrayToObject(root, "decode");
    printf("  batch  variant     step ms   tokens/s      ctx  floor ms  floor t/s  of floor\n");
    for (int i = 0; i < nb && !rc; i++) rc = run_batch(&B, batches[i], arr, &err);
    if (rc) fprintf(stderr, "bench_cuda: %s\n", err.msg);
    char *js = cJSON_Print(root);
    FILE *f = js ? fopen(out, "w") : NULL;
    if (f) {
        fputs(js, f);
        fclose(f);
        printf("wrote %s\n", out);
    } else {
        fprintf(stderr, "bench_cuda: cannot write %s\n", out);
    }
    free(js);
    cJSON_Delete(root);
    B.b->destroy(B.b);
#ifdef BRISK_NCCL
    kern_tp_destroy(B.tp);
#endif
    eng_model_free(m);
    return rc ? 1 : 0;
}
#endif
