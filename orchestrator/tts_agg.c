/* tts_agg.c — putting branch answers together: majority vote over clusters
 * of equivalent answers, best-of-n by mean log-prob, and the certainty
 * measures (agreement, entropy) that early stopping reads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "orc_tts.h"
#include "orc_math.h"

static int same(const char *a, const char *b) {
    return !strcmp(a, b) || orc_math_equiv(a, b);
}

static double mean_lp(const orc_tts_cand *c) {
    return c->n_tokens > 0 ? c->logprob_sum / c->n_tokens : -INFINITY;
}

/* Assigns each answer a cluster id (its first member's index); -1 for none.
 * Compares against cluster representatives only. */
static void cluster(const char *const *ans, int n, int *of) {
    for (int i = 0; i < n; i++) {
        of[i] = -1;
        if (!ans[i] || !*ans[i]) continue;
        of[i] = i;
        for (int j = 0; j < i; j++)
            if (of[j] == j && same(ans[j], ans[i])) { of[i] = j; break; }
    }
}

int orc_tts_vote(const orc_tts_cand *c, int n, int *votes) {
    if (votes) *votes = 0;
    if (!c || n <= 0) return -1;
    const char **ans = malloc((size_t)n * sizeof *ans);
    int *of = malloc((size_t)n * sizeof *of);
    int best = -1, best_votes = 0;
    double best_lp = -INFINITY;
    if (ans && of) {
        for (int i = 0; i < n; i++) ans[i] = c[i].answer;
        cluster(ans, n, of);
        for (int r = 0; r < n; r++) {
            if (of[r] != r) continue;
            int k = 0;
            double lp = -INFINITY;
            for (int i = r; i < n; i++)
                if (of[i] == r) { k++; if (mean_lp(&c[i]) > lp) lp = mean_lp(&c[i]); }
            if (k > best_votes || (k == best_votes && lp > best_lp)) {
                best = r;
                best_votes = k;
                best_lp = lp;
            }
        }
    }
    free(ans);
    free(of);
    if (votes) *votes = best_votes;
    return best;
}

int orc_tts_best(const orc_tts_cand *c, int n) {
    int best = -1;
    for (int i = 0; c && i < n; i++) {
        if (!c[i].answer || !*c[i].answer) continue;
        if (best < 0 || mean_lp(&c[i]) > mean_lp(&c[best])) best = i;
    }
    return best;
}

void orc_tts_certainty(const char *const *answers, int n, double *agree, double *entropy) {
    double a = 0, h = n > 0 ? log((double)n) : 0;   /* all missing: maximal */
    int *of = n > 0 ? malloc((size_t)n * sizeof *of) : NULL;
    if (of) {
        cluster(answers, n, of);
        int top = 0;
        h = 0;
        for (int r = 0; r < n; r++) {
            int k = 0;
            if (of[r] == -1) k = 1;                /* a missing answer: its own cluster */
            else if (of[r] == r)
                for (int i = r; i < n; i++) k += of[i] == r;
            if (!k) continue;
            if (of[r] != -1 && k > top) top = k;
            double p = (double)k / n;
            h -= p * log(p);
        }
        a = (double)top / n;
    }
    free(of);
    if (agree) *agree = a;
    if (entropy) *entropy = h;
}

char *orc_tts_probe_answer(const char *text) {
    if (!text) return NULL;
    int depth = 1;
    size_t i = 0, end = 0;
    for (; text[i]; i++) {
        if (text[i] == '\\' && text[i + 1]) { i++; continue; }   /* \{ \} are text */
        if (text[i] == '{') depth++;
        else if (text[i] == '}' && --depth == 0) { end = i; break; }
    }
    if (depth) return NULL;
    size_t s = 0;
    while (s < end && (text[s] == ' ' || text[s] == '\n' || text[s] == '\t')) s++;
    while (end > s && (text[end - 1] == ' ' || text[end - 1] == '\n' || text[end - 1] == '\t')) end--;
    if (end == s) return NULL;
    char *out = malloc(end - s + 1);
    if (!out) return NULL;
    memcpy(out, text + s, end - s);
    out[end - s] = 0;
    return out;
}
