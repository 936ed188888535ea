/* sample.c — picks the next token from one row of logits, and builds the
 * distribution it draws from (eng_sample_support, also used by speculative
 * verification in spec.c: one definition keeps speculation lossless).
 *
 * logprob and entropy always describe the model's own distribution
 * (softmax of the raw logits, temperature 1), whatever the sampling settings.
 * Selection follows the usual order: temperature, then top-k, then top-p
 * (the smallest set of most likely tokens whose probability sums to at least
 * top_p), then a draw from what is left, renormalised.
 *
 * Cost for a vocabulary of V: two or three passes over the logits, plus
 * O(V log k) for top-k (a heap of k entries, never a sort of the vocabulary).
 * Top-p alone first keeps the tokens above a probability threshold, lowered
 * until they hold top_p of the mass; the nucleus among them is then found
 * by quickselect on rank (expected linear time), so nothing is sorted.
 *
 * Random numbers: splitmix64 (Steele, Lea and Flood, "Fast splittable
 * pseudorandom number generators", 2014), eng_rng_next.  The state is the
 * 64-bit value *rng; each draw adds 0x9E3779B97F4A7C15 to it and mixes the
 * result.  The engine starts a sequence with *rng = its seed.  Greedy
 * selection never touches *rng. */
#include <math.h>
#include <stdlib.h>
#include "internal.h"

uint64_t eng_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double eng_rng_uniform(uint64_t *state) {
    return (double)(eng_rng_next(state) >> 11) * 0x1.0p-53;
}

/* a ranks before b: larger value first, lower id on ties. */
static inline int ranks_before(eng_cand a, eng_cand b) {
    return a.v > b.v || (a.v == b.v && a.id < b.id);
}

/* Min-heap on rank: h[0] is the worst of the k best seen so far. */
static void heap_down(eng_cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_before(h[m], h[l])) m = l;
        if (r < n && ranks_before(h[m], h[r])) m = r;
        if (m == i) return;
        eng_cand t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

static void heap_up(eng_cand *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!ranks_before(h[p], h[i])) return;
        eng_cand t = h[i]; h[i] = h[p]; h[p] = t;
        i = p;
    }
}

/* The k best logits into c[0..k), in heap order. */
static void top_k_select(const float *l, int vocab, int k, eng_cand *c) {
    int n = 0;
    for (int i = 0; i < vocab; i++) {
        eng_cand x = { eng_logit_at(l, i), i };
        if (n < k) { c[n] = x; heap_up(c, n++); }
        else if (ranks_before(x, c[0])) { c[0] = x; heap_down(c, n, 0); }
    }
}

/* Makes room for n entries in (*c)[*cap]; 0, or -1 when out of memory. */
static int room(eng_cand **c, int *cap, int n) {
    if (n <= *cap) return 0;
    int ncap = *cap > 0 ? *cap : 1024;
    while (ncap < n) ncap *= 2;
    eng_cand *nc = realloc(*c, (size_t)ncap * sizeof *nc);
    if (!nc) return -1;
    *c = nc;
    *cap = ncap;
    return 0;
}

/* Tokens whose weight exp((l - max)/T) is at least thr * total, found by
 * comparing logits with max + T log(thr * total); the threshold is lowered
 * until they carry top_p of the total.  Returns the count (-1 when out of
 * memory); weights are filled in. */
static int nucleus_candidates(const float *l, int vocab, float max, float temp, double total,
                              double top_p, eng_cand **c, int *cap) {
    int n = 0;
    for (double thr = 1.0 / 1024; ; thr /= 32) {
        if (thr < 1e-30) thr = 0;   /* last round: everything */
        float cut = thr > 0 ? max + temp * (float)log(thr * total) : -INFINITY;
        double sum = 0;
        n = 0;
        for (int i = 0; i < vocab; i++) {
            float v = eng_logit_at(l, i);
            if (v < cut || v == -INFINITY) continue;
            if (room(c, cap, n + 1)) return -1;
            (*c)[n].v = expf((v - max) / temp);
            (*c)[n].id = i;
            sum += (*c)[n++].v;
        }
        if (sum >= top_p * total || thr == 0) break;
    }
    return n;
}

/* Reorders c so that its best-ranked m entries come first, m being the
 * fewest whose weights sum to at least target; returns m.  Quickselect on
 * rank, O(n) expected: the nucleus is found without sorting it. */
static int nucleus_cut(eng_cand *c, int n, double target) {
    int lo = 0, hi = n;        /* the cut lies in [lo, hi); c[0..lo) is inside */
    double acc = 0;            /* weight of c[0..lo) */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2, last = hi - 1;
        /* median of three as pivot, moved to the end */
        if (ranks_before(c[mid], c[lo])) { eng_cand t = c[mid]; c[mid] = c[lo]; c[lo] = t; }
        if (ranks_before(c[last], c[lo])) { eng_cand t = c[last]; c[last] = c[lo]; c[lo] = t; }
        if (ranks_before(c[mid], c[last])) { eng_cand t = c[mid]; c[mid] = c[last]; c[last] = t; }
        eng_cand piv = c[last];
        int j = lo;
        double better = 0;
        for (int i = lo; i < last; i++)
            if (ranks_before(c[i], piv)) {
                better += c[i].v;
                eng_cand t = c[i]; c[i] = c[j]; c[j] = t;
                j++;
            }
        c[last] = c[j];
        c[j] = piv;            /* c[lo..j) rank before the pivot, c[j+1..hi) after */
        if (acc + better >= target) hi = j;
        else if (acc + better + piv.v >= target) return j + 1;
        else { acc += better + piv.v; lo = j + 1; }
    }
    return hi > lo ? lo + 1 : lo > 0 ? lo : 1;
}

float eng_row_max(const float *l, int vocab, int *best) {
    int b = 0;
    float max = eng_logit_at(l, 0);
    for (int i = 1; i < vocab; i++)
        if (eng_logit_at(l, i) > max) { max = eng_logit_at(l, i); b = i; }
    if (best) *best = b;
    return max;
}

int eng_sample_support(const float *l, int vocab, const eng_sampling *s, float max, double z,
                       float *w, eng_cand **c, int *cap, double *total) {
    float temp = s ? s->temperature : 0;
    if (!(temp > 0 && isfinite(temp) && isfinite(max))) return 0;
    int k = s->top_k > 0 && s->top_k < vocab ? s->top_k : 0, n = 0;
    double top_p = s->top_p > 0 && s->top_p < 1 ? s->top_p : 0;
    *total = z;     /* sum of exp((l - max)/T) over the vocabulary */
    if (k) {
        if (room(c, cap, k)) return 0;
        top_k_select(l, vocab, k, *c);
        *total = 0;
        for (int i = 0; i < k; i++) *total += (*c)[i].v = expf(((*c)[i].v - max) / temp);
        n = k;
    } else {
        if (!top_p && w) {
            *total = 0;
            for (int i = 0; i < vocab; i++) *total += w[i] = expf((eng_logit_at(l, i) - max) / temp);
            return ENG_SUPPORT_ALL;
        }
        if (temp != 1.0f || !(z >= 0)) {
            *total = 0;
            for (int i = 0; i < vocab; i++) *total += expf((eng_logit_at(l, i) - max) / temp);
        }
        if (!top_p) return ENG_SUPPORT_ALL;
        n = nucleus_candidates(l, vocab, max, temp, *total, top_p, c, cap);
        if (n <= 0) return 0;
    }
    if (top_p > 0) {
        n = nucleus_cut(*c, n, top_p * *total);
        *total = 0;
        for (int i = 0; i < n; i++) *total += (*c)[i].v;
    }
    return n;
}

int eng_sampling_greedy(const eng_sampling *s) {
    return !(s->temperature > 0 && isfinite(s->temperature));
}

int eng_sample_weights(const float *w, int vocab, uint64_t *rng) {
    double total = 0;
    for (int i = 0; i < vocab; i++) if (w[i] > 0) total += w[i];
    if (!(total > 0)) return -1;
    double u = eng_rng_uniform(rng) * total, cum = 0;
    int last = -1;
    for (int i = 0; i < vocab; i++) {
        if (!(w[i] > 0)) continue;
        cum += w[i];
        last = i;
        if (u < cum) return i;
    }
    return last;   /* rounding left u at the very end */
}

/* Draws one of c[0..n) with probability c[i].v / total. */
static int draw(const eng_cand *c, int n, double total, uint64_t *rng) {
    double u = eng_rng_uniform(rng) * total, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += c[i].v;
        if (u < cum) return c[i].id;
    }
    for (int i = n - 1; i > 0; i--)   /* rounding left u at the very end */
        if (c[i].v > 0) return c[i].id;
    return c[0].id;
}

/* Every token kept (temperature only): draws without listing them. */
static int draw_full(const float *l, int vocab, float max, float temp, double total,
                     uint64_t *rng) {
    double u = eng_rng_uniform(rng) * total, cum = 0;
    int last = 0;
    for (int i = 0; i < vocab; i++) {
        float w = expf((eng_logit_at(l, i) - max) / temp);
        cum += w;
        if (w > 0) last = i;
        if (u < cum) return i;
    }
    return last;
}

eng_token eng_sample(const float *logits, int vocab, const eng_sampling *s, uint64_t *rng) {
    eng_token t = { -1, 0, 0 };
    if (!logits || vocab <= 0) return t;

    /* argmax, then the model's distribution: Z = sum e^(l-max), entropy =
     * log Z - sum p (l - max). */
    int best = 0;
    float max = eng_row_max(logits, vocab, &best);
    double z = 0, zl = 0;
    if (isfinite(max)) {
        for (int i = 0; i < vocab; i++) {
            float d = eng_logit_at(logits, i) - max;
            double e = expf(d);
            z += e;
            if (e > 0) zl += e * d;
        }
    }

    int id = best;
    eng_cand *c = NULL;
    int cap = 0;
    double total = 0;
    int n = eng_sample_support(logits, vocab, s, max, z, NULL, &c, &cap, &total);
    if (n == ENG_SUPPORT_ALL) id = draw_full(logits, vocab, max, s->temperature, total, rng);
    else if (n > 0) id = draw(c, n, total, rng);
    free(c);

    t.id = id;
    if (z > 0) {
        double lz = log(z);
        t.logprob = (float)((double)(eng_logit_at(logits, id) - max) - lz);
        t.entropy = (float)(lz - zl / z);
    } else {
        t.logprob = -INFINITY;
    }
    return t;
}

/* id's log-probability and the distribution's entropy (temperature 1), as
 * eng_sample reports them for a drawn token: for forced (teacher) tokens. */
eng_token eng_token_of(const float *logits, int vocab, int id) {
    float mx = logits[0];
    for (int i = 1; i < vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double z = 0, ez = 0;
    for (int i = 0; i < vocab; i++) {
        double p = exp((double)logits[i] - mx);
        z += p;
        ez += p * ((double)logits[i] - mx);
    }
    double lz = log(z);
    eng_token t = { id, (float)((double)logits[id] - mx - lz), (float)(lz - ez / z) };
    return t;
}
