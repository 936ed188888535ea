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

double orc_lat_step_ctx(const orc_lat_model *m, double batch, double ctx) {
    double extra = m && ctx > m->ctx0 ? m->ctx_s * batch * (ctx - m->ctx0) : 0;
    return orc_lat_step(m, batch) + extra;
}

/* Runs steps eng_steps and returns their mean time in seconds (or -1). */
static double time_steps(eng_engine *e, int steps, eng_err *err) {
    double t0 = eng_now_s();
    for (int i = 0; i < steps; i++)
        if (eng_step(e, err)) return -1;
    return (eng_now_s() - t0) / steps;
}

/* Mean step time of b forks of root (sampling s, seeds apart): one warm-up
 * step, then steps timed ones.  ENG_EFULL when the engine has no room. */
static int time_batch(eng_engine *e, int root, int b, int steps, const eng_sampling *s,
                      double *out, eng_err *err) {
    int kids[ORC_TTS_MAX_N * 4], made = 0, rc = ENG_OK;
    if (b > (int)(sizeof kids / sizeof *kids)) return eng_seterr(err, ENG_EINVAL, "batch %d too large", b);
    for (; made < b; made++) {
        eng_sampling si = *s;
        si.seed += (uint64_t)made;
        if ((rc = eng_seq_fork(e, root, &si, &kids[made], err))) break;
    }
    /* the warm-up step also processes the prompt's last token */
    if (!rc) rc = eng_step(e, err);
    double t = rc ? -1 : time_steps(e, steps, err);
    if (!rc && t < 0) rc = err && err->code ? err->code : ENG_EINVAL;
    for (int i = 0; i < made; i++) eng_seq_remove(e, kids[i]);
    *out = t;
    return rc;
}

/* A paused root holding prompt (n tokens) prefilled; *prefill_s per token. */
static int make_root(eng_engine *e, const int *prompt, int n, int *root, double *prefill_s,
                     eng_err *err) {
    eng_sampling greedy = { 0 };
    int rc = eng_seq_add(e, prompt, n, &greedy, root, err);
    if (rc) return rc;
    double t0 = eng_now_s();
    rc = eng_seq_prefill(e, *root, err);
    if (prefill_s) *prefill_s = n > 1 ? (eng_now_s() - t0) / (n - 1) : 0;
    if (!rc) rc = eng_seq_pause(e, *root, 1);
    if (rc) { eng_seq_remove(e, *root); *root = -1; }
    return rc;
}

/* Seconds per sequence per context token: batch ref over the prompt
 * repeated to a longer context, against t_short over the prompt itself. */
static double context_cost(eng_engine *e, const int *prompt, int n, int ref, int steps,
                           const eng_sampling *s, double t_short) {
    const eng_config *c = eng_model_config(eng_engine_model(e));
    int n2 = n + 1024 < c->max_pos - steps - 4 ? n + 1024 : c->max_pos - steps - 4;
    if (n2 < n + 64) return 0;                      /* no room to measure: no term */
    int *ids = malloc((size_t)n2 * sizeof *ids), root = -1;
    double t = -1;
    eng_err err = { 0 };
    if (!ids) return 0;
    for (int i = 0; i < n2; i++) ids[i] = prompt[i % n];
    if (!make_root(e, ids, n2, &root, NULL, &err)) {
        time_batch(e, root, ref, steps, s, &t, &err);
        eng_seq_remove(e, root);
    }
    free(ids);
    double v = t > 0 ? (t - t_short) / ((double)ref * (n2 - n)) : 0;
    return v > 0 ? v : 0;
}

int orc_lat_calibrate(eng_engine *e, const int *prompt, int n_prompt, int max_batch,
                      int steps, const eng_sampling *s, orc_lat_model *m, eng_err *err) {
    if (!e || !prompt || n_prompt < 1 || max_batch < 1 || steps < 1 || !m)
        return eng_seterr(err, ENG_EINVAL, "orc_lat_calibrate: bad argument");
    eng_sampling greedy = { 0 };
    if (!s) s = &greedy;
    double bx[ORC_PLAN_MAX_POINTS], by[ORC_PLAN_MAX_POINTS], prefill = 0;
    int np = 0, root = -1;
    int rc = make_root(e, prompt, n_prompt, &root, NULL, err);   /* also warms the engine up */
    for (int b = 1; !rc && b <= max_batch && np < ORC_PLAN_MAX_POINTS; b *= 2) {
        double t;
        rc = time_batch(e, root, b, steps, s, &t, err);
        if (rc == ENG_EFULL && np > 0) { rc = ENG_OK; break; }   /* as far as the engine goes */
        if (rc) break;
        bx[np] = b;
        by[np++] = t;
    }
    if (root >= 0) eng_seq_remove(e, root);
    /* the prefill is timed warm: a first call pays for one-time set-up */
    if (!rc && !(rc = make_root(e, prompt, n_prompt, &root, &prefill, err))) eng_seq_remove(e, root);
    if (!rc) rc = orc_lat_fit(bx, by, np, prefill, m, err);
    if (rc) return rc;
    int ref = np > 3 ? 3 : np - 1;                  /* batch 8, or the largest measured */
    m->ctx0 = n_prompt;
    m->ctx_s = context_cost(e, prompt, n_prompt, (int)bx[ref], steps, s, by[ref]);
    return ENG_OK;
}

/* ------------------------------------------------------ accuracy model */
double orc_acc_expected(const orc_acc_model *m, int n) {
    if (!m || m->kind == ORC_ACC_NONE) return NAN;
    if (n < 1) return 0;
    double x = log2((double)n);
    if (m->kind == ORC_ACC_TABLE) {
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
    double p1 = m->p1, r = m->r;
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

double orc_spec_accept_from_mean(double m, int k) {
    if (k <= 0 || !(m > 0)) return 0;
    if (m >= k) return 1;
    double lo = 0, hi = 1;
    for (int i = 0; i < 60; i++) {   /* the kept count grows with a */
        double a = (lo + hi) / 2;
        if (orc_spec_tokens_per_step(a, k) - 1 < m) lo = a;
        else hi = a;
    }
    return (lo + hi) / 2;
}

/* --------------------------------------------------------------- plans */
double orc_plan_latency(const orc_plan_in *in, int n, int k) {
    if (!in || n < 1 || k < 0) return INFINITY;
    double tps = orc_spec_tokens_per_step(in->accept, k);
    double steps = ceil((in->length > 0 ? in->length : 0) / tps);
    double ctx = in->prompt_tokens + (in->length > 0 ? in->length : 0) / 2;   /* mean context */
    double step = orc_lat_step_ctx(&in->lat, n, ctx);
    /* a verify step runs n (k + 1) rows: at a given factor, or priced as a
     * plain step of that many rows */
    double factor = in->spec_cost >= 0 ? 1 + in->spec_cost * k
                  : k ? orc_lat_step_ctx(&in->lat, (double)n * (k + 1), ctx) / step : 1;
    return in->prompt_tokens * in->lat.prefill_s + steps * step * factor;
}

void orc_plan_kv(orc_plan_in *in, const eng_engine *e) {
    int len = in->length > 0 ? (int)ceil(in->length) : 0;
    in->kv_free_blocks = eng_kv_free_blocks(e);
    in->kv_prompt_blocks = eng_blocks_for(e, in->prompt_tokens);
    in->kv_branch_blocks = eng_blocks_for(e, len) + 1;
}

static int fits_kv(const orc_plan_in *in, int n) {
    if (in->kv_free_blocks <= 0) return 1;
    return in->kv_prompt_blocks + (long long)n * in->kv_branch_blocks <= in->kv_free_blocks;
}

int orc_plan_choose(const orc_plan_in *in, orc_plan *out, eng_err *err) {
    if (!in || !out) return eng_seterr(err, ENG_EINVAL, "orc_plan_choose: missing argument");
    if (in->lat.n_points < 1) return eng_seterr(err, ENG_EINVAL, "orc_plan_choose: no latency model");
    if (in->k_max < 0 || in->k_max > 64)
        return eng_seterr(err, ENG_EINVAL, "orc_plan_choose: k_max must be from 0 to 64");
    int n_max = in->n_max > 0 ? in->n_max : ORC_TTS_MAX_N;
    orc_plan best = { .n = 0 }, fastest1 = { .n = 0 };
    double best_gain = 0;
    for (int n = 1; n <= n_max; n++) {
        double acc = orc_acc_expected(&in->acc, n);
        double gain = in->acc.kind == ORC_ACC_NONE ? n : acc;   /* what the plan maximises */
        for (int k = 0; k <= in->k_max; k++) {
            double lat = orc_plan_latency(in, n, k);
            orc_plan p = { n, k, lat, acc, orc_spec_tokens_per_step(in->accept, k), 1 };
            if (n == 1 && (!fastest1.n || lat < fastest1.latency_s)) fastest1 = p;
            if (lat > in->budget_s || !fits_kv(in, n)) continue;
            if (!best.n || gain > best_gain || (gain == best_gain && lat < best.latency_s)) {
                best = p;
                best_gain = gain;
            }
        }
    }
    if (!best.n) {
        best = fastest1;
        best.feasible = 0;
    }
    *out = best;
    return ENG_OK;
}
