/* steptime.c — measured pass time against rows (steptime.h).
 *
 * Each power-of-two bucket of rows keeps an estimate of a pass's seconds
 * and a mean of its rows.  Reading interpolates between the trusted
 * buckets (non-decreasing: more rows never cost less), extrapolates from
 * the last two, and past a single one takes a row to cost
 * ENG_STEPTIME_PRIOR_ROW of a pass. */
#include "steptime.h"

enum { TRUSTED = 3 };   /* samples before a bucket counts */

static int bucket_of(int rows) {
    int b = 0;
    while (b + 1 < ENG_STEPTIME_BUCKETS && (2 << b) <= rows) b++;
    return b;
}

/* One-off costs come as spikes: the first passes of a shape (the CUDA
 * backend runs it eagerly, then captures a graph), page faults, a busy
 * machine.  So a bucket starts from the least of its first TRUSTED
 * samples, then follows faster down than up, an upward step clipped to
 * twice the estimate. */
void eng_steptime_add(eng_steptime *t, int rows, double secs) {
    if (rows <= 0 || !(secs >= 0)) return;
    int b = bucket_of(rows), n = ++t->n[b];
    if (n == 1 || (n <= TRUSTED && secs < t->secs[b])) t->secs[b] = secs;
    else if (n > TRUSTED) {
        double x = secs < 2 * t->secs[b] ? secs : 2 * t->secs[b];
        t->secs[b] += (x < t->secs[b] ? 0.5 : 0.05) * (x - t->secs[b]);
    }
    double w = n < 10 ? 1.0 / n : 0.1;   /* rows: a mean, then an EWMA */
    t->rows[b] += w * (rows - t->rows[b]);
}

double eng_steptime_secs(const eng_steptime *t, double R) {
    double r[ENG_STEPTIME_BUCKETS], c[ENG_STEPTIME_BUCKETS], top = 0;
    int n = 0;
    for (int b = 0; b < ENG_STEPTIME_BUCKETS; b++)
        if (t->n[b] >= TRUSTED) {
            if (t->secs[b] > top) top = t->secs[b];
            r[n] = t->rows[b];
            c[n++] = top;   /* more rows never cost less */
        }
    if (!n) return -1;
    if (R <= r[0]) return c[0];
    if (n == 1) return c[0] * (1 + ENG_STEPTIME_PRIOR_ROW * (R - r[0]));
    for (int i = 1; i < n; i++)
        if (R <= r[i]) return c[i - 1] + (c[i] - c[i - 1]) * (R - r[i - 1]) / (r[i] - r[i - 1]);
    return c[n - 1] + (c[n - 1] - c[n - 2]) / (r[n - 1] - r[n - 2]) * (R - r[n - 1]);
}

int eng_steptime_known(const eng_steptime *t, int rows) {
    return t->n[bucket_of(rows)] >= TRUSTED;
}
