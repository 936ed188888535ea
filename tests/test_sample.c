/* test_sample.c — eng_sample: greedy, top-k, top-p, temperature, the
 * seeded generator, and the reported logprob and entropy, each against a
 * direct double-precision computation. */
#include "t.h"
#include <stdint.h>
#include <time.h>
#include "eng.h"

/* Test data from its own small generator, independent of the sampler's. */
static uint64_t lcg = 12345;
static double urand(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) * 0x1.0p-53;
}
static float grand(void) {   /* roughly normal: sum of 4 uniforms */
    return (float)((urand() + urand() + urand() + urand() - 2.0) * 1.7);
}
static void fill(float *x, int n, float scale) {
    for (int i = 0; i < n; i++) x[i] = grand() * scale;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

/* Probabilities of softmax(x / t) after top-k and top-p, in double. */
typedef struct pr { double p; int id; } pr;
static int cmp_pr(const void *a, const void *b) {
    const pr *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}
static void truncated_probs(const float *x, int n, double t, int k, double top_p, double *out) {
    pr *s = malloc(sizeof *s * (size_t)n);
    double mx = x[argmax(x, n)], z = 0;
    for (int i = 0; i < n; i++) { s[i].p = exp((x[i] - mx) / t); s[i].id = i; z += s[i].p; }
    for (int i = 0; i < n; i++) s[i].p /= z;
    qsort(s, (size_t)n, sizeof *s, cmp_pr);
    int keep = k > 0 && k < n ? k : n;
    if (top_p > 0 && top_p < 1) {
        double tot = 0, cum = 0;
        for (int i = 0; i < keep; i++) tot += s[i].p;
        for (int i = 0; i < keep; i++) {
            cum += s[i].p;
            if (cum >= top_p * tot) { keep = i + 1; break; }
        }
    }
    double tot = 0;
    for (int i = 0; i < keep; i++) tot += s[i].p;
    for (int i = 0; i < n; i++) out[i] = 0;
    for (int i = 0; i < keep; i++) out[s[i].id] = s[i].p / tot;
    free(s);
}

static void test_greedy(void) {
    enum { V = 5000 };
    float *x = malloc(sizeof *x * V);
    for (int trial = 0; trial < 20; trial++) {
        fill(x, V, 3);
        eng_sampling s = { .temperature = trial % 2 ? 0 : -1, .top_k = 40, .top_p = 0.5f, .seed = 9 };
        uint64_t rng = 77;
        eng_token t = eng_sample(x, V, &s, &rng);
        T_CHECK(t.id == argmax(x, V));
        T_CHECK(rng == 77);   /* greedy draws nothing */
    }
    x[10] = x[3000] = 100;    /* ties: lowest id */
    eng_sampling g = { 0 };
    uint64_t rng = 1;
    T_CHECK(eng_sample(x, V, &g, &rng).id == 10);
    T_CHECK(eng_sample(x, V, NULL, &rng).id == 10);
    free(x);
}

static void test_top_k1_is_greedy(void) {
    enum { V = 3000 };
    float *x = malloc(sizeof *x * V);
    for (int trial = 0; trial < 50; trial++) {
        fill(x, V, 2);
        if (trial % 5 == 0) x[trial + 7] = x[argmax(x, V)];   /* a tie now and then */
        eng_sampling s = { .temperature = 1.5f, .top_k = 1, .seed = (uint64_t)trial };
        uint64_t rng = s.seed;
        T_CHECK(eng_sample(x, V, &s, &rng).id == argmax(x, V));
        s.top_p = 0.3f;
        T_CHECK(eng_sample(x, V, &s, &rng).id == argmax(x, V));
    }
    free(x);
}

static void test_seeds(void) {
    enum { V = 200, N = 200 };
    float x[V];
    fill(x, V, 1);
    eng_sampling s = { .temperature = 1, .seed = 42 };
    int a[N], b[N], c[N];
    uint64_t ra = 42, rb = 42, rc = 43;
    for (int i = 0; i < N; i++) {
        a[i] = eng_sample(x, V, &s, &ra).id;
        b[i] = eng_sample(x, V, &s, &rb).id;
        c[i] = eng_sample(x, V, &s, &rc).id;
    }
    T_CHECK(!memcmp(a, b, sizeof a));
    T_CHECK(ra == rb && ra != 42);
    int differ = 0;
    for (int i = 0; i < N; i++) differ += a[i] != c[i];
    T_CHECKF(differ > N / 2, "seeds 42 and 43 differ in only %d of %d draws", differ, N);
}

static void test_logprob_entropy(void) {
    int sizes[] = { 1, 7, 1000, 152064 };
    float *x = malloc(sizeof *x * 152064);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int V = sizes[si];
        for (int trial = 0; trial < 3; trial++) {
            fill(x, V, trial == 2 ? 8 : 1);
            double mx = x[argmax(x, V)], z = 0;
            for (int i = 0; i < V; i++) z += exp((double)x[i] - mx);
            double lz = log(z) + mx, h = 0;
            for (int i = 0; i < V; i++) {
                double lp = x[i] - lz;
                h -= exp(lp) * lp;
            }
            eng_sampling s = { .temperature = 0.7f, .top_p = 0.9f, .seed = (uint64_t)trial };
            uint64_t rng = 5;
            eng_token t = eng_sample(x, V, &s, &rng);
            T_CHECK(t.id >= 0 && t.id < V);
            double want = x[t.id] - lz;
            T_CHECKF(fabs(t.logprob - want) < 1e-5 * (1 + fabs(want)), "V %d: logprob %.8g want %.8g",
                     V, t.logprob, want);
            T_CHECKF(fabs(t.entropy - h) < 1e-5 * (1 + h), "V %d: entropy %.8g want %.8g", V,
                     t.entropy, h);
        }
    }
    free(x);
}

/* 20000 draws per setting against the truncated softmax: the chi-square
 * statistic must stay under a bound that a correct sampler passes with
 * overwhelming probability, and nothing outside the support is drawn. */
static void test_frequencies(void) {
    enum { V = 12, DRAWS = 20000 };
    float x[V];
    for (int i = 0; i < V; i++) x[i] = (float)(0.35 * i - 0.02 * i * i + (i % 3) * 0.3);
    struct { float t; int k; float p; } cfg[] = {
        { 1.0f, 0, 0 }, { 0.6f, 0, 0 }, { 1.4f, 5, 0 }, { 1.0f, 0, 0.8f }, { 0.9f, 8, 0.7f },
        { 2.0f, 0, 0.95f },
    };
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        double want[V];
        truncated_probs(x, V, cfg[c].t, cfg[c].k, cfg[c].p, want);
        int count[V] = { 0 };
        eng_sampling s = { cfg[c].t, cfg[c].k, cfg[c].p, 1000 + c };
        uint64_t rng = s.seed;
        for (int i = 0; i < DRAWS; i++) {
            int id = eng_sample(x, V, &s, &rng).id;
            T_CHECK(id >= 0 && id < V);
            if (id >= 0 && id < V) count[id]++;
        }
        double chi = 0;
        int support = 0, outside = 0;
        for (int i = 0; i < V; i++) {
            if (want[i] == 0) { outside += count[i]; continue; }
            support++;
            double ex = want[i] * DRAWS;
            chi += (count[i] - ex) * (count[i] - ex) / ex;
        }
        int df = support - 1;
        double bound = df + 5 * sqrt(2.0 * df) + 10;   /* far beyond the 99.99th percentile */
        printf("  T=%.1f k=%d p=%.2f: support %d, chi-square %.1f (df %d, bound %.1f)\n",
               cfg[c].t, cfg[c].k, cfg[c].p, support, chi, df, bound);
        T_CHECKF(chi < bound, "chi-square %.1f >= %.1f", chi, bound);
        T_CHECKF(outside == 0, "%d draws outside the truncated support", outside);
    }
}

/* A full-size vocabulary with top-p alone: every draw is inside the nucleus
 * computed by a full sort, including nuclei too large for the first
 * threshold the sampler tries. */
static void test_nucleus(void) {
    enum { V = 152064, DRAWS = 300 };
    float *x = malloc(sizeof *x * V);
    double *want = malloc(sizeof *want * V);
    float scales[] = { 4, 0.3f };
    float ps[] = { 0.9f, 0.999f };
    for (int c = 0; c < 2; c++) {
        fill(x, V, scales[c]);
        truncated_probs(x, V, 1.0, 0, ps[c], want);
        int support = 0;
        for (int i = 0; i < V; i++) support += want[i] > 0;
        eng_sampling s = { 1.0f, 0, ps[c], 7 };
        uint64_t rng = 7;
        int outside = 0;
        clock_t t0 = clock();
        for (int i = 0; i < DRAWS; i++) outside += want[eng_sample(x, V, &s, &rng).id] == 0;
        double ms = 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC / DRAWS;
        printf("  top_p %.3f: nucleus of %d tokens, %.2f ms per draw\n", ps[c], support, ms);
        T_CHECKF(outside == 0, "%d of %d draws outside the nucleus", outside, DRAWS);
    }
    /* top-k on the full vocabulary, timed: a heap, not a sort */
    eng_sampling s = { 0.8f, 50, 0.95f, 3 };
    uint64_t rng = 3;
    truncated_probs(x, V, 0.8, 50, 0.95, want);
    int outside = 0;
    clock_t t0 = clock();
    for (int i = 0; i < DRAWS; i++) outside += want[eng_sample(x, V, &s, &rng).id] == 0;
    printf("  top_k 50 + top_p 0.95: %.2f ms per draw\n",
           1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC / DRAWS);
    T_CHECK(outside == 0);
    free(x);
    free(want);
}

static void test_edges(void) {
    float x[4] = { NAN, 1, 3, 2 };
    eng_sampling s = { 1.0f, 10, 2.0f, 1 };   /* top_k > vocab and top_p >= 1: off */
    uint64_t rng = 1;
    for (int i = 0; i < 200; i++) {
        int id = eng_sample(x, 4, &s, &rng).id;
        T_CHECK(id >= 1 && id <= 3);          /* NaN is never drawn */
    }
    T_CHECK(eng_sample(x, 4, NULL, &rng).id == 2);
    T_CHECK(eng_sample(NULL, 4, &s, &rng).id == -1);
    T_CHECK(eng_sample(x, 0, &s, &rng).id == -1);
    float y[3] = { -INFINITY, 5, -INFINITY };
    eng_token t = eng_sample(y, 3, &s, &rng);
    T_CHECK(t.id == 1 && fabsf(t.logprob) < 1e-6f && fabsf(t.entropy) < 1e-6f);
}

int main(void) {
    T_RUN(test_greedy);
    T_RUN(test_top_k1_is_greedy);
    T_RUN(test_seeds);
    T_RUN(test_logprob_entropy);
    T_RUN(test_frequencies);
    T_RUN(test_nucleus);
    T_RUN(test_edges);
    T_DONE();
}
