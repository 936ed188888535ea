/* test_planner.c — the latency-aware planner (orchestrator/planner.c): the
 * latency fit reproduces the data it was fitted to, the speculation and
 * accuracy models behave as stated, and the chosen (n, k) respects the
 * budget, grows with it, and skips speculation that does not pay. */
#include "t.h"
#include "orc_tts.h"

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

/* Step time of a synthetic engine: flat while memory-bound, then linear. */
static double synth(double b) { return b <= 8 ? 0.020 : 0.020 + 0.0015 * (b - 8); }

static orc_lat_model synth_model(void) {
    double bx[7], by[7];
    for (int i = 0; i < 7; i++) { bx[i] = 1 << i; by[i] = synth(bx[i]); }
    orc_lat_model m;
    eng_err err = { 0 };
    if (orc_lat_fit(bx, by, 7, 1e-4, &m, &err)) printf("  fit: %s\n", err.msg);
    return m;
}

static void test_fit_reproduces_line(void) {
    /* given out of order, as a calibration might */
    double bx[] = { 4, 1, 16, 2, 64, 8, 32 }, by[7];
    for (int i = 0; i < 7; i++) by[i] = 0.010 + 0.002 * bx[i];
    orc_lat_model m;
    eng_err err = { 0 };
    T_CHECK(orc_lat_fit(bx, by, 7, 0, &m, &err) == ENG_OK);
    T_CHECKF(close_to(m.a, 0.010, 1e-9) && close_to(m.b, 0.002, 1e-9), "line a %g b %g", m.a, m.b);
    for (double b = 1; b <= 100; b += 3)
        T_CHECKF(close_to(orc_lat_step(&m, b), 0.010 + 0.002 * b, 1e-9), "batch %g: %g", b,
                 orc_lat_step(&m, b));
}

static void test_fit_reproduces_piecewise(void) {
    orc_lat_model m = synth_model();
    T_CHECK(m.n_points == 7);
    for (int i = 0; i < 7; i++)
        T_CHECKF(close_to(orc_lat_step(&m, 1 << i), synth(1 << i), 1e-12), "batch %d", 1 << i);
    /* between points the piecewise fit is linear, as the synthetic data is
     * on each segment */
    for (double b = 8; b <= 64; b += 1.5)
        T_CHECKF(close_to(orc_lat_step(&m, b), synth(b), 1e-9), "batch %g: %g vs %g", b,
                 orc_lat_step(&m, b), synth(b));
    /* past the last point it grows with the fitted slope */
    T_CHECK(orc_lat_step(&m, 128) > orc_lat_step(&m, 64));
    T_CHECK(m.prefill_s == 1e-4);
}

static void test_fit_smooths_noise(void) {
    double bx[] = { 1, 2, 4, 8 }, by[] = { 0.010, 0.009, 0.012, 0.011 };
    orc_lat_model m;
    T_CHECK(orc_lat_fit(bx, by, 4, 0, &m, NULL) == ENG_OK);
    for (double b = 1; b < 16; b += 0.5)
        T_CHECKF(orc_lat_step(&m, b + 0.5) >= orc_lat_step(&m, b), "step falls after batch %g", b);
}

static void test_fit_rejects_bad_input(void) {
    orc_lat_model m;
    eng_err err = { 0 };
    double bx[] = { 1, 1 }, by[] = { 0.1, 0.2 }, neg[] = { -1, 0.2 };
    T_CHECK(orc_lat_fit(bx, by, 2, 0, &m, &err) == ENG_EINVAL);   /* a batch twice */
    T_CHECK(strstr(err.msg, "twice") != NULL);
    T_CHECK(orc_lat_fit(bx, neg, 2, 0, &m, &err) == ENG_EINVAL);
    T_CHECK(orc_lat_fit(bx, by, 0, 0, &m, &err) == ENG_EINVAL);
    T_CHECK(orc_lat_fit(NULL, by, 1, 0, &m, &err) == ENG_EINVAL);
    double one = 0.05;
    T_CHECK(orc_lat_fit(bx, &one, 1, 0, &m, &err) == ENG_OK);
    T_CHECK(close_to(orc_lat_step(&m, 10), 0.05, 1e-12));   /* one point: constant */
}

static void test_context_term(void) {
    orc_lat_model m = synth_model();
    m.ctx0 = 200;
    m.ctx_s = 1e-6;
    T_CHECK(orc_lat_step_ctx(&m, 4, 100) == orc_lat_step(&m, 4));   /* shorter: no credit */
    T_CHECK(close_to(orc_lat_step_ctx(&m, 4, 1200), orc_lat_step(&m, 4) + 4 * 1000 * 1e-6, 1e-12));
    orc_plan_in in = { .lat = m, .length = 400, .prompt_tokens = 300 };
    /* 400 steps over a mean context of 500 */
    double want = 300 * m.prefill_s + 400 * (synth(4) + 4 * 300 * 1e-6);
    T_CHECK(close_to(orc_plan_latency(&in, 4, 0), want, 1e-12));
    in.lat.ctx_s = 0;
    T_CHECK(orc_plan_latency(&in, 4, 0) < want);
}

static void test_spec_tokens(void) {
    T_CHECK(orc_spec_tokens_per_step(0.7, 0) == 1);
    T_CHECK(close_to(orc_spec_tokens_per_step(0.5, 1), 1.5, 1e-12));
    T_CHECK(close_to(orc_spec_tokens_per_step(0.5, 3), 1.875, 1e-12));
    T_CHECK(close_to(orc_spec_tokens_per_step(1.0, 4), 5, 1e-12));
    T_CHECK(orc_spec_tokens_per_step(0.0, 4) == 1);
    for (int k = 0; k < 8; k++)
        T_CHECK(orc_spec_tokens_per_step(0.8, k + 1) > orc_spec_tokens_per_step(0.8, k));
}

static void test_accept_from_mean(void) {
    for (double a = 0.05; a < 1; a += 0.1)
        for (int k = 1; k <= 8; k++) {
            double m = orc_spec_tokens_per_step(a, k) - 1;   /* kept drafts per verify */
            T_CHECKF(close_to(orc_spec_accept_from_mean(m, k), a, 1e-9), "a %g k %d", a, k);
        }
    T_CHECK(orc_spec_accept_from_mean(0, 4) == 0);
    T_CHECK(orc_spec_accept_from_mean(4, 4) == 1);
    T_CHECK(orc_spec_accept_from_mean(1, 0) == 0);
}

static void test_accuracy_models(void) {
    orc_acc_model m = { .kind = ORC_ACC_CURVE, .p1 = 0.4, .r = 0.8 };
    T_CHECK(close_to(orc_acc_expected(&m, 1), 0.4, 1e-12));
    T_CHECK(close_to(orc_acc_expected(&m, 4), 1 - 0.6 * 0.64, 1e-12));
    for (int n = 1; n < 64; n++) T_CHECK(orc_acc_expected(&m, n + 1) > orc_acc_expected(&m, n));
    /* concave in log2 n: each doubling gains less */
    T_CHECK(orc_acc_expected(&m, 2) - orc_acc_expected(&m, 1) >
            orc_acc_expected(&m, 4) - orc_acc_expected(&m, 2));
    orc_acc_model t = { .kind = ORC_ACC_TABLE, .n_table = 3, .table_n = { 16, 1, 4 },
                        .table_acc = { 0.7, 0.5, 0.6 } };
    T_CHECK(close_to(orc_acc_expected(&t, 1), 0.5, 1e-12));
    T_CHECK(close_to(orc_acc_expected(&t, 2), 0.55, 1e-12));   /* halfway in log2 */
    T_CHECK(close_to(orc_acc_expected(&t, 8), 0.65, 1e-12));
    T_CHECK(close_to(orc_acc_expected(&t, 64), 0.7, 1e-12));   /* flat past the table */
}

static orc_plan_in plan_in(double budget) {
    orc_plan_in in = { .lat = synth_model(), .acc = { .kind = ORC_ACC_CURVE, .p1 = 0.5, .r = 0.8 }, .accept = 0.8,
                       .spec_cost = 0.1, .k_max = 6, .length = 400, .prompt_tokens = 100,
                       .budget_s = budget };
    return in;
}

static void test_plan_respects_budget(void) {
    for (double b = 1; b <= 60; b *= 1.3) {
        orc_plan_in in = plan_in(b);
        orc_plan p;
        T_CHECK(orc_plan_choose(&in, &p, NULL) == ENG_OK);
        if (p.feasible) {
            T_CHECKF(p.latency_s <= b, "budget %g: predicted %g", b, p.latency_s);
            T_CHECK(close_to(p.latency_s, orc_plan_latency(&in, p.n, p.k), 1e-12));
            /* nothing with more expected accuracy fits */
            for (int n = p.n + 1; n <= ORC_TTS_MAX_N; n++)
                for (int k = 0; k <= in.k_max; k++)
                    T_CHECKF(orc_plan_latency(&in, n, k) > b, "budget %g: n %d k %d fits", b, n, k);
        } else {
            T_CHECK(p.n == 1);
        }
    }
    orc_plan_in tiny = plan_in(1e-3);
    orc_plan p;
    T_CHECK(orc_plan_choose(&tiny, &p, NULL) == ENG_OK);
    T_CHECK(!p.feasible && p.n == 1);
}

static void test_plan_grows_with_budget(void) {
    orc_plan prev = { .n = 0 };
    int grew = 0;
    for (double b = 2; b <= 200; b *= 1.25) {
        orc_plan_in in = plan_in(b);
        orc_plan p;
        T_CHECK(orc_plan_choose(&in, &p, NULL) == ENG_OK);
        if (prev.n) {
            T_CHECKF(p.n >= prev.n, "budget %g: n %d after %d", b, p.n, prev.n);
            T_CHECK(p.accuracy >= prev.accuracy);
            grew += p.n > prev.n;
        }
        prev = p;
    }
    T_CHECK(grew >= 3);
    T_CHECK(prev.n == ORC_TTS_MAX_N);   /* a generous budget takes every branch */
}

static void test_plan_speculation(void) {
    orc_plan_in in = plan_in(10);
    in.accept = 0.05;                    /* drafts almost never accepted */
    orc_plan p;
    T_CHECK(orc_plan_choose(&in, &p, NULL) == ENG_OK);
    T_CHECKF(p.k == 0, "low acceptance picked k %d", p.k);
    in.accept = 0.85;
    T_CHECK(orc_plan_choose(&in, &p, NULL) == ENG_OK);
    T_CHECKF(p.k > 0, "high acceptance picked k 0");
    orc_plan no_spec;
    in.k_max = 0;
    T_CHECK(orc_plan_choose(&in, &no_spec, NULL) == ENG_OK);
    T_CHECK(no_spec.k == 0 && no_spec.n <= p.n);   /* speculation buys branches */
}

static void test_spec_cost_from_rows(void) {
    orc_plan_in in = plan_in(10);
    in.spec_cost = -1;                   /* price n (k+1) rows as a step of that batch */
    double plain = orc_plan_latency(&in, 4, 0), spec = orc_plan_latency(&in, 4, 3);
    double steps = ceil(400 / orc_spec_tokens_per_step(0.8, 3));
    T_CHECK(close_to(spec - 100 * in.lat.prefill_s, steps * synth(16), 1e-9));
    T_CHECK(spec < plain);               /* memory-bound at 16 rows: drafts are nearly free */
    /* where rows cost in full, speculation does not pay */
    double bx[] = { 1, 64 }, by[] = { 0.001, 0.064 };
    T_CHECK(orc_lat_fit(bx, by, 2, 0, &in.lat, NULL) == ENG_OK);
    orc_plan p;
    T_CHECK(orc_plan_choose(&in, &p, NULL) == ENG_OK);
    T_CHECK(p.k == 0);
}

/* Without an accuracy model (none measured: a zeroed one) the plan expects
 * no accuracy and takes the most branches that fit; a made-up curve would
 * promise a number for a model that may score 0. */
static void test_plan_without_accuracy_model(void) {
    for (double b = 2; b <= 60; b *= 2) {
        orc_plan_in in = plan_in(b);
        memset(&in.acc, 0, sizeof in.acc);
        T_CHECK(isnan(orc_acc_expected(&in.acc, 4)));
        orc_plan p;
        T_CHECK(orc_plan_choose(&in, &p, NULL) == ENG_OK);
        T_CHECKF(isnan(p.accuracy), "budget %g: expected accuracy %g without a model", b, p.accuracy);
        for (int n = p.n + 1; n <= ORC_TTS_MAX_N; n++)
            for (int k = 0; k <= in.k_max; k++)
                T_CHECKF(orc_plan_latency(&in, n, k) > b, "budget %g: n %d k %d fits", b, n, k);
    }
}

static void test_plan_kv_limit(void) {
    orc_plan_in in = plan_in(1e6);
    in.kv_prompt_blocks = 7;             /* 100 tokens in blocks of 16 */
    in.kv_branch_blocks = 27;            /* 400 tokens, and the prompt's last block */
    in.kv_free_blocks = 7 + 10 * 27 + 26;   /* room for 10 branches, not 11 */
    orc_plan p;
    T_CHECK(orc_plan_choose(&in, &p, NULL) == ENG_OK);
    T_CHECK(p.n == 10);
    in.n_max = 6;
    T_CHECK(orc_plan_choose(&in, &p, NULL) == ENG_OK);
    T_CHECK(p.n == 6);
    orc_plan_in bad = plan_in(1);
    bad.lat.n_points = 0;
    eng_err err = { 0 };
    T_CHECK(orc_plan_choose(&bad, &p, &err) == ENG_EINVAL);
}

int main(void) {
    T_RUN(test_fit_reproduces_line);
    T_RUN(test_fit_reproduces_piecewise);
    T_RUN(test_fit_smooths_noise);
    T_RUN(test_fit_rejects_bad_input);
    T_RUN(test_context_term);
    T_RUN(test_spec_tokens);
    T_RUN(test_accept_from_mean);
    T_RUN(test_accuracy_models);
    T_RUN(test_plan_respects_budget);
    T_RUN(test_plan_grows_with_budget);
    T_RUN(test_plan_speculation);
    T_RUN(test_spec_cost_from_rows);
    T_RUN(test_plan_without_accuracy_model);
    T_RUN(test_plan_kv_limit);
    T_DONE();
}
