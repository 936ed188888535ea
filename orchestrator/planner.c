/* planner.c — latency-aware test-time scaling: how long n branches with
 * speculation depth k take on this engine, how accurate a vote over n is
 * expected to be, and the (n, k) that is most accurate within a budget.
 * Branch-wise parallelism (n in one batch) makes a step slower only as the
 * batch grows; sequence-wise parallelism (speculation) makes fewer, costlier
 * steps.  Everything but the calibration is a pure function. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "orc_tts.h"

/* ------------------------------------------------------- latency model */
int orc_lat_fit(const double *batch, const double *step_s, int n, double prefill_s,
                orc_lat_model *m, eng_err *err) {
    if (!m || !batch || !step_s) return eng_seterr(err, ENG_EINVAL, "orc_lat_fit: missing argument");
    if (n < 1 || n > ORC_PLAN_MAX_POINTS)
        return eng_seterr(err, ENG_EINVAL, "orc_lat_fit: need 1 to %d points (got %d)",
                          ORC_PLAN_MAX_POINTS, n);
    memset(m, 0, sizeof *m);
    for (int i = 0; i < n; i++) {
        if (!(batch[i] >= 1) || !(step_s[i] >= 0) || !isfinite(step_s[i]))
            return eng_seterr(err, ENG_EINVAL, "orc_lat_fit: bad point %d (batch %g, %g s)",
                              i, batch[i], step_s[i]);
        /* insertion by batch */
        int j = m->n_points;
        while (j > 0 && m->batch[j - 1] > batch[i]) {
            m->batch[j] = m->batch[j - 1];
            m->step_s[j] = m->step_s[j - 1];
            j--;
        }
        if (j > 0 && m->batch[j - 1] == batch[i])
            return eng_seterr(err, ENG_EINVAL, "orc_lat_fit: batch %g given twice", batch[i]);
        m->batch[j] = batch[i];
        m->step_s[j] = step_s[i];
        m->n_points++;
    }
    /* a bigger batch never runs faster: timing noise is smoothed away */
    for (int i = 1; i < n; i++)
        if (m->step_s[i] < m->step_s[i - 1]) m->step_s[i] = m->step_s[i - 1];
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        sx += m->batch[i];
        sy += m->step_s[i];
        sxx += m->batch[i] * m->batch[i];
        sxy += m->batch[i] * m->step_s[i];
    }
    double den = n * sxx - sx * sx;
    m->b = n > 1 && den > 0 ? (n * sxy - sx * sy) / den : 0;
    if (m->b < 0) m->b = 0;
    m->a = (sy - m->b * sx) / n;
    m->prefill_s = prefill_s > 0 ? prefill_s : 0;
    return ENG_OK;
}

double orc_lat_step(const orc_lat_model *m, double batch) {
    if (!m || m->n_points < 1) return 0;
    int last = m->n_points - 1;
    if (batch <= m->batch[0]) return m->step_s[0];
    if (batch >= m->batch[last]) return m->step_s[last] + m->b * (batch - m->batch[last]);
    int i = 1;
    while (m->batch[i] < batch) i++;
    double x0 = m->batch[i - 1], x1 = m->batch[i], f = (batch - x0) / (x1 - x0);
    return m->step_s[i - 1] + f * (m->step_s[i] - m->step_s[i - 1]);
}

/* Runs steps eng_steps and returns their mean time in seconds (or -1). */
static double time_steps(eng_engine *e, int steps, eng_err *err) {
    double t0 = orc_now();
    for (int i = 0; i < steps; i++)
        if (eng_step(e, err)) return -1;
    return (orc_now() - t0) / steps;
}

int orc_lat_calibrate(eng_engine *e, const int *prompt, int n_prompt, int max_batch,
                      int steps, const eng_sampling *s, orc_lat_model *m, eng_err *err) {
    if (!e || !prompt || n_prompt < 1 || max_batch < 1 || steps < 1 || !m)
        return eng_seterr(err, ENG_EINVAL, "orc_lat_calibrate: bad argument");
    double bx[ORC_PLAN_MAX_POINTS], by[ORC_PLAN_MAX_POINTS];
    int np = 0, root = -1, kids[ORC_TTS_MAX_N * 4];
    if (max_batch > (int)(sizeof kids / sizeof *kids)) max_batch = (int)(sizeof kids / sizeof *kids);
    eng_sampling greedy = { 0 };
    int rc = eng_seq_add(e, prompt, n_prompt, &greedy, &root, err);
    if (rc) return rc;
    double t0 = orc_now();
    rc = eng_seq_prefill(e, root, err);
    double prefill = n_prompt > 1 ? (orc_now() - t0) / (n_prompt - 1) : 0;
    if (!rc) rc = eng_seq_pause(e, root, 1);
    for (int b = 1; !rc && b <= max_batch && np < ORC_PLAN_MAX_POINTS; b *= 2) {
        int made = 0;
        for (; made < b && !rc; made++) {
            eng_sampling si = s ? *s : greedy;
            si.seed += (uint64_t)made;
            rc = eng_seq_fork(e, root, &si, &kids[made], err);
            if (rc) break;
        }
        /* one warm-up step (it also finishes the prompt), then the timed ones */
        double t = -1;
        if (!rc && !eng_step(e, err)) t = time_steps(e, steps, err);
        for (int i = 0; i < made; i++) eng_seq_remove(e, kids[i]);
        if (rc == ENG_EFULL && np > 0) { rc = ENG_OK; break; }   /* as far as the engine goes */
        if (!rc && t < 0) rc = err ? err->code : ENG_EINVAL;
        if (rc) break;
        bx[np] = b;
        by[np++] = t;
    }
    eng_seq_remove(e, root);
    if (rc) return rc;
    return orc_lat_fit(bx, by, np, prefill, m, err);
}

/* ------------------------------------------------------ accuracy model */
double orc_acc_expected(const orc_acc_model *m, int n) {
    if (n < 1) return 0;
    double x = log2((double)n);
    if (m && m->n_table > 0) {
        int k = m->n_table < ORC_PLAN_MAX_POINTS ? m->n_table : ORC_PLAN_MAX_POINTS;
        /* table entries may come in any order: find the neighbours of x */
        int lo = -1, hi = -1;
        for (int i = 0; i < k; i++) {
            if (!(m->table_n[i] >= 1)) continue;
            double xi = log2(m->table_n[i]);
            if (xi <= x && (lo < 0 || xi > log2(m->table_n[lo]))) lo = i;
            if (xi >= x && (hi < 0 || xi < log2(m->table_n[hi]))) hi = i;
        }
        if (lo < 0 && hi < 0) return 0;
        if (lo < 0) return m->table_acc[hi];
        if (hi < 0 || hi == lo) return m->table_acc[lo];
        double x0 = log2(m->table_n[lo]), x1 = log2(m->table_n[hi]);
        return m->table_acc[lo] + (x - x0) / (x1 - x0) * (m->table_acc[hi] - m->table_acc[lo]);
    }
    double p1 = m ? m->p1 : 0.5, r = m ? m->r : 0.8;
    if (p1 < 0) p1 = 0;
    if (p1 > 1) p1 = 1;
    if (!(r > 0 && r <= 1)) r = 0.8;
    return 1 - (1 - p1) * pow(r, x);
}

double orc_spec_tokens_per_step(double a, int k) {
    if (k <= 0 || a <= 0) return 1;
    if (a >= 1) return k + 1;
    return (1 - pow(a, k + 1)) / (1 - a);
}

/* --------------------------------------------------------------- plans */
double orc_plan_latency(const orc_plan_in *in, int n, int k) {
    if (!in || n < 1 || k < 0) return INFINITY;
    double tps = orc_spec_tokens_per_step(in->accept, k);
    double steps = ceil((in->length > 0 ? in->length : 0) / tps);
    double c = in->spec_cost > 0 ? in->spec_cost : 0;
    return in->prompt_tokens * in->lat.prefill_s + steps * orc_lat_step(&in->lat, n) * (1 + c * k);
}

static int fits_kv(const orc_plan_in *in, int n) {
    if (in->kv_tokens <= 0) return 1;
    double need = in->prompt_tokens + (double)n * (in->length + 1);   /* the prompt is shared */
    return need <= (double)in->kv_tokens;
}

int orc_plan_choose(const orc_plan_in *in, orc_plan *out, eng_err *err) {
    if (!in || !out) return eng_seterr(err, ENG_EINVAL, "orc_plan_choose: missing argument");
    if (in->lat.n_points < 1) return eng_seterr(err, ENG_EINVAL, "orc_plan_choose: no latency model");
    if (in->k_max < 0 || in->k_max > 64)
        return eng_seterr(err, ENG_EINVAL, "orc_plan_choose: k_max must be from 0 to 64");
    int n_max = in->n_max > 0 ? in->n_max : ORC_TTS_MAX_N;
    orc_plan best = { .n = 0 }, fastest1 = { .n = 0 };
    for (int n = 1; n <= n_max; n++) {
        double acc = orc_acc_expected(&in->acc, n);
        for (int k = 0; k <= in->k_max; k++) {
            double lat = orc_plan_latency(in, n, k);
            orc_plan p = { n, k, lat, acc, orc_spec_tokens_per_step(in->accept, k), 1 };
            if (n == 1 && (!fastest1.n || lat < fastest1.latency_s)) fastest1 = p;
            if (lat > in->budget_s || !fits_kv(in, n)) continue;
            if (!best.n || acc > best.accuracy || (acc == best.accuracy && lat < best.latency_s))
                best = p;
        }
    }
    if (!best.n) {
        best = fastest1;
        best.feasible = 0;
    }
    *out = best;
    return ENG_OK;
}
