/* sample.c — picks the next token from one row of logits.
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
 * pseudorandom number generators", 2014).  The state is the 64-bit value
 * *rng; each draw adds 0x9E3779B97F4A7C15 to it and mixes the result.  The
 * engine starts a sequence with *rng = its seed.  Greedy selection never
 * touches *rng. */
#include <math.h>
#include <stdlib.h>
#include "eng.h"

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t *state) {
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

/* NaN logits count as impossible tokens. */
static inline float logit_at(const float *l, int i) {
    float v = l[i];
    return v == v ? v : -INFINITY;
}

typedef struct cand { float w; int id; } cand;   /* w: logit, later weight */

/* a ranks before b: larger value first, lower id on ties. */
static inline int ranks_before(cand a, cand b) {
    return a.w > b.w || (a.w == b.w && a.id < b.id);
}

/* Min-heap on rank: h[0] is the worst of the k best seen so far. */
static void heap_down(cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_before(h[m], h[l])) m = l;
        if (r < n && ranks_before(h[m], h[r])) m = r;
        if (m == i) return;
        cand t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

static void heap_up(cand *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!ranks_before(h[p], h[i])) return;
        cand t = h[i]; h[i] = h[p]; h[p] = t;
        i = p;
    }
}

/* The k best logits into c[0..k), in heap order. */
static void top_k_select(const float *l, int vocab, int k, cand *c) {
    int n = 0;
    for (int i = 0; i < vocab; i++) {
        cand x = { logit_at(l, i), i };
        if (n < k) { c[n] = x; heap_up(c, n++); }
        else if (ranks_before(x, c[0])) { c[0] = x; heap_down(c, n, 0); }
    }
}

/* Tokens whose weight exp((l - max)/T) is at least thr * total, found by
 * comparing logits with max + T log(thr * total); the threshold is lowered
 * until they carry top_p of the total.  Returns the count (-1 when out of
 * memory); weights are filled in. */
static int nucleus_candidates(const float *l, int vocab, float max, float temp, double total,
                              double top_p, cand **out) {
    cand *c = NULL;
    int n = 0, cap = 0;
    for (double thr = 1.0 / 1024; ; thr /= 32) {
        if (thr < 1e-30) thr = 0;   /* last round: everything */
        float cut = thr > 0 ? max + temp * (float)log(thr * total) : -INFINITY;
        double sum = 0;
        n = 0;
        for (int i = 0; i < vocab; i++) {
            float v = logit_at(l, i);
            if (v < cut || v == -INFINITY) continue;
            if (n == cap) {
                int ncap = cap ? 2 * cap : 1024;
                cand *nc = realloc(c, (size_t)ncap * sizeof *nc);
                if (!nc) { free(c); return -1; }
                c = nc;
                cap = ncap;
            }
            c[n].w = expf((v - max) / temp);
            c[n++].id = i;
            sum += c[n - 1].w;
        }
        if (sum >= top_p * total || thr == 0) break;
    }
    *out = c;
    return n;
}

/* Reorders c so that its best-ranked m entries come first, m being the
 * fewest whose weights sum to at least target; returns m.  Quickselect on
 * rank, O(n) expected: the nucleus is found without sorting it. */
static int nucleus_cut(cand *c, int n, double target) {
    int lo = 0, hi = n;        /* the cut lies in [lo, hi); c[0..lo) is inside */
    double acc = 0;            /* weight of c[0..lo) */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2, last = hi - 1;
        /* median of three as pivot, moved to the end */
        if (ranks_before(c[mid], c[lo])) { cand t = c[mid]; c[mid] = c[lo]; c[lo] = t; }
        if (ranks_before(c[last], c[lo])) { cand t = c[last]; c[last] = c[lo]; c[lo] = t; }
        if (ranks_before(c[mid], c[last])) { cand t = c[mid]; c[mid] = c[last]; c[last] = t; }
        cand piv = c[last];
        int j = lo;
        double better = 0;
        for (int i = lo; i < last; i++)
            if (ranks_before(c[i], piv)) {
                better += c[i].w;
                cand t = c[i]; c[i] = c[j]; c[j] = t;
                j++;
            }
        c[last] = c[j];
        c[j] = piv;            /* c[lo..j) rank before the pivot, c[j+1..hi) after */
        if (acc + better >= target) hi = j;
        else if (acc + better + piv.w >= target) return j + 1;
        else { acc += better + piv.w; lo = j + 1; }
    }
    return hi > lo ? lo + 1 : lo > 0 ? lo : 1;
}

/* Draws one of c[0..n) with probability proportional to c[i].w. */
static int draw(const cand *c, int n, uint64_t *rng) {
    double total = 0;
    for (int i = 0; i < n; i++) total += c[i].w;
    double u = uniform01(rng) * total, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += c[i].w;
        if (u < cum) return c[i].id;
    }
    for (int i = n - 1; i > 0; i--)   /* rounding left u at the very end */
        if (c[i].w > 0) return c[i].id;
    return c[0].id;
}

/* Temperature only: one pass for the total, one to find the drawn token. */
static int draw_full(const float *l, int vocab, float max, float temp, double total,
                     uint64_t *rng) {
    double u = uniform01(rng) * total, cum = 0;
    int last = 0;
    for (int i = 0; i < vocab; i++) {
        float w = expf((logit_at(l, i) - max) / temp);
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
    float max = logit_at(logits, 0);
    for (int i = 1; i < vocab; i++)
        if (logit_at(logits, i) > max) { max = logit_at(logits, i); best = i; }
    double z = 0, zl = 0;
    if (isfinite(max)) {
        for (int i = 0; i < vocab; i++) {
            float d = logit_at(logits, i) - max;
            double e = expf(d);
            z += e;
            if (e > 0) zl += e * d;
        }
    }

    int id = best;
    float temp = s ? s->temperature : 0;
    if (temp > 0 && isfinite(temp) && isfinite(max)) {
        int k = s->top_k > 0 && s->top_k < vocab ? s->top_k : 0;
        double top_p = s->top_p > 0 && s->top_p < 1 ? s->top_p : 0;
        double total = z;     /* sum of exp((l - max)/T) over the vocabulary */
        if (temp != 1.0f && !k) {
            total = 0;
            for (int i = 0; i < vocab; i++) total += expf((logit_at(logits, i) - max) / temp);
        }
        cand *c = NULL;
        int n = 0;
        if (k) {
            if ((c = malloc((size_t)k * sizeof *c))) {
                top_k_select(logits, vocab, k, c);
                total = 0;
                for (int i = 0; i < k; i++) total += c[i].w = expf((c[i].w - max) / temp);
                n = k;
            }
        } else if (top_p > 0) {
            n = nucleus_candidates(logits, vocab, max, temp, total, top_p, &c);
        } else {
            id = draw_full(logits, vocab, max, temp, total, rng);
        }
        if (n > 0) {
            if (top_p > 0) n = nucleus_cut(c, n, top_p * total);
            id = draw(c, n, rng);
        }   /* n < 0 or no memory for top-k: stay greedy */
        free(c);
    }

    t.id = id;
    if (z > 0) {
        double lz = log(z);
        t.logprob = (float)((double)(logit_at(logits, id) - max) - lz);
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
