/* test_tp.c — tensor parallelism on the CPU "split" backend: ranks are
 * threads, each with its share of the heads, MLP columns and vocabulary and
 * its own KV pool, meeting in in-memory all-reduces.  Split over N ranks, a
 * model must give the unsplit engine's greedy tokens and logits within TOL
 * (the all-reduce adds partial sums, so the last bits may differ; with one
 * rank they may not), on the bundled fixtures (Qwen2, Llama, Qwen3, Gemma 3)
 * and the real SmolLM2; shares cover the model exactly once; splits that
 * cannot be made are refused naming why. */
#include "t.h"
#include "t_util.h"
#include "backend.h"

#define TOL 1e-4f     /* logits: max |split - unsplit| */
#define N_GEN 64

static const char *fixtures[] = { "tiny-qwen2", "tiny-llama", "tiny-qwen3", "tiny-gemma3" };
static const int prompt_a[] = { 1, 17, 300, 42, 999, 5, 77, 512, 64, 3 };
static const int prompt_b[] = { 700, 2, 2, 91, 1000 };

static eng_model *load(const char *name) {
    char path[256];
    eng_err err = { 0 };
    eng_model *m = NULL;
    snprintf(path, sizeof path, "tests/fixtures/%s", name);
    if (eng_model_load(path, &m, &err)) printf("  %s: %s\n", path, err.msg);
    return m;
}

/* What one engine produced: every sequence's tokens and the logits of
 * every step's last row, one after the other. */
typedef struct run {
    int ids[3][128], n[3];
    float *logits;           /* [steps][3][vocab] */
    double ar_s;             /* all-reduce seconds over the ranks */
} run;

/* Three sequences batched together (one forked from another after its
 * prompt, so that they share a KV block copy-on-write) for N_GEN greedy
 * steps. */
static int generate(eng_model *m, int tp, run *out) {
    eng_err err = { 0 };
    eng_opts o = { .n_threads = 2, .max_seqs = 4, .n_blocks = 96, .block_size = 4, .tp = tp };
    eng_engine *e = NULL;
    memset(out, 0, sizeof *out);
    if (eng_create(m, &o, &e, &err)) { printf("  tp %d: %s\n", tp, err.msg); return 0; }
    int vocab = eng_model_config(m)->vocab_size;
    eng_sampling greedy = { .temperature = 0 };
    int a = t_add(e, prompt_a, 10, &greedy), b = t_add(e, prompt_b, 5, &greedy), c = -1;
    int ok = a >= 0 && b >= 0 && !eng_seq_prefill(e, a, &err) &&
             !eng_seq_fork(e, a, NULL, &c, &err);
    if (!ok) printf("  tp %d: setup: %s\n", tp, err.msg);
    int seqs[3] = { a, b, c };
    out->logits = calloc((size_t)N_GEN * 3 * vocab, sizeof(float));
    for (int i = 0; i < 3 && ok; i++) eng_seq_want_logits(e, seqs[i], 1);
    for (int st = 0; st < N_GEN && ok; st++) {
        if (t_step(e)) { ok = 0; break; }
        for (int i = 0; i < 3; i++) {
            int rows = 0;
            const float *l = eng_seq_logits(e, seqs[i], &rows);
            if (!l || rows < 1) { printf("  tp %d: no logits at step %d\n", tp, st); ok = 0; break; }
            memcpy(out->logits + ((size_t)st * 3 + i) * vocab, l + (size_t)(rows - 1) * vocab,
                   (size_t)vocab * sizeof(float));
        }
    }
    for (int i = 0; i < 3 && ok; i++) {
        const int *ids;
        eng_seq_tokens(e, seqs[i], &ids, &out->n[i]);
        if (out->n[i] > 128) out->n[i] = 128;
        memcpy(out->ids[i], ids, (size_t)out->n[i] * sizeof(int));
    }
    if (ok && eng_tp_ranks(e) != (tp > 1 ? tp : 1)) {
        printf("  tp %d: engine reports %d ranks\n", tp, eng_tp_ranks(e));
        ok = 0;
    }
    for (int r = 0; ok && r < eng_tp_ranks(e); r++) {
        eng_tp_rank_stats st;
        if (eng_tp_stats(e, r, &st, &err)) { printf("  %s\n", err.msg); ok = 0; break; }
        /* an embedding and two per layer for the prefill and each of the N_GEN passes */
        int64_t want = tp > 1 ? (int64_t)(N_GEN + 1) * (1 + 2 * eng_model_config(m)->n_layers) : 0;
        if (st.n_allreduce != want) {
            printf("  tp %d rank %d: %lld all-reduces, want %lld\n", tp, r,
                   (long long)st.n_allreduce, (long long)want);
            ok = 0;
        }
        out->ar_s += st.allreduce_s;
    }
    eng_destroy(e);
    return ok;
}

/* Split runs against the unsplit one: same tokens, logits within TOL. */
static int compare(const char *name, eng_model *m, const run *ref, int tp) {
    run r;
    if (!generate(m, tp, &r)) { free(r.logits); return 0; }
    int vocab = eng_model_config(m)->vocab_size, ok = 1;
    for (int i = 0; i < 3; i++) {
        int same = r.n[i] == ref->n[i] && !memcmp(r.ids[i], ref->ids[i], sizeof(int) * r.n[i]);
        T_CHECKF(same, "%s tp %d: sequence %d's tokens differ from tp 1", name, tp, i);
        ok &= same;
    }
    float worst = 0;
    for (size_t k = 0; k < (size_t)N_GEN * 3 * vocab; k++) {
        float d = fabsf(r.logits[k] - ref->logits[k]);
        if (!(d <= worst)) worst = d;   /* NaN counts as the worst */
    }
    T_CHECKF(worst <= TOL, "%s tp %d: logits differ from tp 1 by %g", name, tp, worst);
    printf("  %s tp %d: %d + %d + %d tokens identical, max |logit diff| %.3g, all-reduce "
           "%.1f ms over the ranks\n", name, tp, r.n[0], r.n[1], r.n[2], worst, r.ar_s * 1e3);
    free(r.logits);
    return ok && worst <= TOL;
}

/* Every split the model allows among 2 and 4 ranks against tp 1. */
static void check_model(const char *name, eng_model *m) {
    run ref;
    if (!generate(m, 1, &ref)) { free(ref.logits); T_FAIL("%s: tp 1 run failed", name); }
    int tried = 0;
    for (int tp = 2; tp <= 4; tp *= 2) {
        eng_tp_slice sl;
        eng_err err = { 0 };
        if (eng_tp_slice_of(eng_model_config(m), tp, 0, &sl, &err)) {
            printf("  %s tp %d refused: %s\n", name, tp, err.msg);
            continue;
        }
        tried++;
        compare(name, m, &ref, tp);
    }
    free(ref.logits);
    T_CHECKF(tried > 0, "%s: no split tried", name);
}

static void test_fixtures(void) {
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        eng_model *m = load(fixtures[i]);
        if (!m) T_FAIL("bundled fixture %s does not load", fixtures[i]);
        check_model(fixtures[i], m);
        eng_model_free(m);
    }
}

/* One rank through the split path is the unsplit backend bit for bit: the
 * shares, strides and the all-reduce of one part change no operation (with
 * f32 and bf16 KV pools). */
static void one_rank_exact(int kv_format) {
    eng_model *m = load("tiny-gemma3");
    if (!m) T_FAIL("bundled fixture tiny-gemma3 does not load");
    const eng_config *c = eng_model_config(m);
    eng_backend *be[2] = { 0 };
    eng_err err = { 0 };
    if (eng_backend_cpu_create(m, 8, 4, kv_format, ENG_ACT_F32, 1, &be[0], &err) ||
        eng_backend_split_create(m, 8, 4, kv_format, 1, 1, &be[1], &err)) {
        printf("  %s\n", err.msg);
        T_CHECK(0);
    }
    int n = 10, pos[10], rs[10], len = 10, blocks[3] = { 0, 1, 2 }, outr[10];
    for (int i = 0; i < n; i++) { pos[i] = i; rs[i] = 0; outr[i] = i; }
    const int *tables[1] = { blocks };
    float *l[2] = { calloc((size_t)n * c->vocab_size, 4), calloc((size_t)n * c->vocab_size, 4) };
    for (int k = 0; k < 2 && be[k]; k++) {
        eng_fwd_batch b = { .n_rows = n, .tokens = prompt_a, .pos = pos, .row_seq = rs,
                            .n_seqs = 1, .seq_len = &len, .block_table = tables, .n_out = n,
                            .out_rows = outr, .logits = l[k] };
        T_CHECK(be[k]->forward(be[k], &b, &err) == ENG_OK);
    }
    T_CHECK(!memcmp(l[0], l[1], (size_t)n * c->vocab_size * 4));
    for (int k = 0; k < 2; k++) if (be[k]) be[k]->destroy(be[k]);
    free(l[0]); free(l[1]);
    eng_model_free(m);
}

static void test_one_rank_exact(void) {
    one_rank_exact(ENG_KV_F32);
    one_rank_exact(ENG_KV_BF16);
}

/* Shares: every query head, MLP column and vocabulary row belongs to
 * exactly one rank; a rank's KV heads are those its query heads read. */
static void test_slices(void) {
    struct { int nh, nkv, I, V, n, ok; } cs[] = {
        { 32, 8, 11008, 32000, 2, 1 }, { 32, 8, 11008, 32000, 8, 1 },
        { 32, 8, 11008, 32000, 16, 1 },  /* KV heads replicated, two ranks each */
        { 4, 1, 160, 1088, 4, 1 }, { 40, 8, 27648, 152064, 4, 1 },
        { 4, 2, 176, 1088, 3, 0 },       /* heads not divisible */
        { 12, 4, 64, 100, 6, 0 },        /* 6 neither divides nor is a multiple of 4 KV heads */
        { 4, 4, 3, 100, 4, 0 },          /* fewer MLP columns than ranks */
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        eng_config c = { .n_heads = cs[i].nh, .n_kv_heads = cs[i].nkv,
                         .intermediate = cs[i].I, .vocab_size = cs[i].V };
        int n = cs[i].n, nq = 0, ni = 0, nv = 0, rc = 0;
        eng_err err = { 0 };
        for (int r = 0; r < n && !rc; r++) {
            eng_tp_slice s;
            rc = eng_tp_slice_of(&c, n, r, &s, &err);
            if (rc) break;
            int grp = c.n_heads / c.n_kv_heads;
            T_CHECK(s.q0 == nq && s.i0 == ni && s.v0 == nv);
            T_CHECK(s.k0 == s.q0 / grp && s.k0 + s.nkv - 1 == (s.q0 + s.nh - 1) / grp);
            T_CHECK(s.nkv == (c.n_kv_heads >= n ? c.n_kv_heads / n : 1));
            nq += s.nh; ni += s.ni; nv += s.nv;
        }
        if (cs[i].ok) {
            T_CHECKF(!rc, "case %zu: %s", i, err.msg);
            T_CHECK(nq == c.n_heads && ni == c.intermediate && nv == c.vocab_size);
        } else {
            T_CHECKF(rc == ENG_EUNSUPPORTED && strstr(err.msg, "tp:"), "case %zu: rc %d", i, rc);
        }
    }
}

/* eng_create refuses what it cannot split (or read quantized), saying why. */
static void test_refused(void) {
    eng_model *q = load("tiny-qwen2"), *g = load("tiny-gemma3");
    if (!q || !g) T_FAIL("bundled fixtures tiny-qwen2 / tiny-gemma3 do not load");
    struct { eng_model *m; int tp, backend, quant, rc; const char *says; } cs[] = {
        { q, 3, ENG_BACKEND_CPU, 0, ENG_EUNSUPPORTED, "4 attention heads over 3 ranks" },
        { g, 4, ENG_BACKEND_CPU, 0, ENG_EUNSUPPORTED, "2 attention heads over 4 ranks" },
        { q, -1, ENG_BACKEND_CPU, 0, ENG_EINVAL, "tp -1" },
        { q, ENG_TP_MAX + 1, ENG_BACKEND_CPU, 0, ENG_EINVAL, "outside" },
        /* quantized blocks: the CUDA backend of one GPU only */
        { q, 1, ENG_BACKEND_CPU, 1, ENG_EINVAL, "the CPU backend reads the dequantized weights" },
        { q, 2, ENG_BACKEND_CUDA, 1, ENG_EINVAL, "a split (--tp) keeps dense shares" },
#ifndef BRISK_CUDA   /* with CUDA, test_cuda tries the split on the GPUs there are */
        { q, 2, ENG_BACKEND_CUDA, 0, ENG_EUNSUPPORTED, "not available in this build" },
#endif
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        eng_opts o = { .backend = cs[i].backend, .n_threads = 1, .max_seqs = 2, .n_blocks = 8,
                       .tp = cs[i].tp, .quant = cs[i].quant };
        eng_engine *e = NULL;
        eng_err err = { 0 };
        int rc = eng_create(cs[i].m, &o, &e, &err);
        T_CHECKF(rc == cs[i].rc && !e && strstr(err.msg, cs[i].says), "case %zu: rc %d: %s", i,
                 rc, err.msg);
        eng_destroy(e);
    }
    eng_tp_rank_stats st;
    eng_err err = { 0 };
    eng_engine *e = NULL;
    eng_opts o = { .n_threads = 1, .max_seqs = 2, .n_blocks = 8, .tp = 2 };
    T_CHECK(eng_create(q, &o, &e, &err) == ENG_OK);
    T_CHECK(eng_tp_stats(e, 2, &st, &err) == ENG_EINVAL);
    T_CHECK(eng_tp_stats(e, 1, &st, &err) == ENG_OK && st.n_allreduce == 0);
    eng_destroy(e);
    eng_model_free(q);
    eng_model_free(g);
}

/* The real SmolLM2-135M (9 heads, 3 KV heads: splits 3 ways). */
static void test_smollm2(void) {
    T_MODEL(path, "SmolLM2-135M-Instruct.Q4_1.gguf");
    eng_err err = { 0 };
    eng_model *m = NULL;
    if (eng_model_load(path, &m, &err)) T_FAIL("%s: %s", path, err.msg);
    run ref;
    if (!generate(m, 1, &ref)) { free(ref.logits); eng_model_free(m); T_FAIL("tp 1 run failed"); }
    compare("SmolLM2", m, &ref, 3);
    free(ref.logits);
    eng_model_free(m);
}

int main(void) {
    T_RUN(test_slices);
    T_RUN(test_refused);
    T_RUN(test_one_rank_exact);
    T_RUN(test_fixtures);
    T_RUN(test_smollm2);
    T_DONE();
}
