/* test_tts.c — reason mode (orchestrator/tts.c) on the tiny random-weight
 * model: branches share the prompt's KV blocks, seeds decide the samples,
 * probes leave their branch untouched, early stopping fires on agreeing
 * probe answers and only then, finished branches give their blocks back,
 * answers are aggregated by vote and best-of-n; plus the aggregation helpers
 * on hand-made answers and `bench math500` end to end. */
#include "t.h"
#include <unistd.h>
#include "orc_tts.h"
#include "bench.h"

#define MODEL "tests/fixtures/tiny-qwen2"
#define MAXB 16

static eng_model *model;

/* ---------------------------------------------------------- collecting */
typedef struct col {
    cJSON *answer, *stats;
    int done, n_branch_msgs, errors;
    int ids[MAXB][512], n_ids[MAXB];       /* token ids per branch */
    char state[MAXB][16];                  /* last branch state */
    int branch_tokens[MAXB];
    int stopped_seen;                      /* branch messages with state stopped */
} col;

static void c_emit(void *ud, cJSON *m) {
    col *c = ud;
    const char *ty = cJSON_GetObjectItem(m, "type")->valuestring;
    const cJSON *b = cJSON_GetObjectItem(m, "branch");
    int bi = cJSON_IsNumber(b) ? b->valueint : -1;
    if (!strcmp(ty, "token") && bi >= 0 && bi < MAXB && c->n_ids[bi] < 512)
        c->ids[bi][c->n_ids[bi]++] = cJSON_GetObjectItem(m, "token")->valueint;
    if (!strcmp(ty, "branch") && bi >= 0 && bi < MAXB) {
        const char *st = cJSON_GetObjectItem(m, "state")->valuestring;
        snprintf(c->state[bi], sizeof c->state[bi], "%s", st);
        c->branch_tokens[bi] = cJSON_GetObjectItem(m, "tokens")->valueint;
        c->n_branch_msgs++;
        c->stopped_seen += !strcmp(st, "stopped");
    }
    if (!strcmp(ty, "error")) c->errors++;
    if (!strcmp(ty, "answer")) { cJSON_Delete(c->answer); c->answer = m; return; }
    if (!strcmp(ty, "stats")) { cJSON_Delete(c->stats); c->stats = m; return; }
    cJSON_Delete(m);
}

static void c_done(void *ud, const char *id) { (void)id; ((col *)ud)->done = 1; }

static void col_free(col *c) {
    cJSON_Delete(c->answer);
    cJSON_Delete(c->stats);
    memset(c, 0, sizeof *c);
}

static double stat(const col *c, const char *k) {
    const cJSON *v = c->stats ? cJSON_GetObjectItem(c->stats, k) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *ans_str(const col *c, const char *k) {
    const cJSON *v = c->answer ? cJSON_GetObjectItem(c->answer, k) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* --------------------------------------------------------------- setup */
static int load(void) {
    if (model) return 1;
    eng_err err = { 0 };
    if (eng_model_load(MODEL, &model, &err)) { printf("  %s: %s\n", MODEL, err.msg); return 0; }
    return 1;
}

static eng_engine *engine(int n_blocks) {
    eng_opts o = { .backend = ENG_BACKEND_CPU, .n_threads = 2, .block_size = 16,
                   .n_blocks = n_blocks, .max_seqs = 64 };
    eng_engine *e = NULL;
    eng_err err = { 0 };
    if (eng_create(model, &o, &e, &err)) printf("  eng_create: %s\n", err.msg);
    return e;
}

static const char *PROBLEM = "Let $x$ and $y$ be real numbers with $x + y = 10$ and $xy = 21$. "
    "Find $x^2 + y^2$ and explain each step of the computation carefully, "
    "then put the final answer in a box.";

static orc_tts_opts opts(int n) {
    orc_tts_opts o;
    orc_tts_default_opts(&o);
    o.n = n;
    return o;
}

static orc_query query(int max_tokens, float temp, uint64_t seed) {
    orc_query q = { .max_tokens = max_tokens, .samp = { .temperature = temp, .seed = seed } };
    snprintf(q.id, sizeof q.id, "q1");
    q.prompt = (char *)PROBLEM;
    return q;
}

static int submit(orc_sched *s, const orc_query *q, const orc_tts_opts *o, col *c) {
    orc_sink sink = { .ud = c, .emit = c_emit, .done = c_done };
    orc_task *t = NULL;
    eng_err err = { 0 };
    if (orc_task_reason_create(q, model, sink, o, &t, &err)) { printf("  create: %s\n", err.msg); return -1; }
    if (orc_sched_submit(s, t, &err)) { orc_task_free(t); printf("  submit: %s\n", err.msg); return -1; }
    return 0;
}

/* Runs one query to its end on engine e; 0 on success. */
static int run(eng_engine *e, const orc_query *q, const orc_tts_opts *o, col *c) {
    orc_sched *s = NULL;
    eng_err err = { 0 };
    memset(c, 0, sizeof *c);
    if (orc_sched_create(e, 4, &s, &err)) return -1;
    int rc = submit(s, q, o, c);
    for (int guard = 0; !rc && !c->done && guard < 100000; guard++)
        if (orc_sched_step(s, &err) < 0) { printf("  step: %s\n", err.msg); rc = -1; }
    orc_sched_destroy(s);
    return rc || !c->done || !c->answer || !c->stats ? -1 : 0;
}

/* ------------------------------------------------ aggregation helpers */
static void test_probe_answer(void) {
    struct { const char *in, *out; } cases[] = {
        { "42}", "42" }, { " \\frac{1}{2} }\\]", "\\frac{1}{2}" }, { "x^{2}} and more", "x^{2}" },
        { "\\{1,2\\}}", "\\{1,2\\}" }, { "42", NULL }, { "  }", NULL }, { "{{}", NULL }, { "", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *a = orc_tts_probe_answer(cases[i].in);
        int ok = cases[i].out ? a && !strcmp(a, cases[i].out) : a == NULL;
        T_CHECKF(ok, "'%s' -> '%s'", cases[i].in, a ? a : "(null)");
        free(a);
    }
    T_CHECK(orc_tts_probe_answer(NULL) == NULL);
}

static void test_vote_and_best(void) {
    orc_tts_cand c[] = {
        { "42", -10, 10 },            /* mean -1.0 */
        { "\\frac{1}{2}", -20, 10 },  /* -2.0 */
        { "0.5", -5, 10 },            /* -0.5 */
        { "42", -30, 10 },            /* -3.0 */
        { NULL, -1, 10 },             /* -0.1, but no answer */
        { "1/2", -40, 10 },           /* -4.0 */
    };
    int votes = 0;
    T_CHECK(orc_tts_vote(c, 6, &votes) == 1);      /* 1/2 = 0.5 = \frac{1}{2}: three votes */
    T_CHECK(votes == 3);
    T_CHECK(orc_tts_best(c, 6) == 2);              /* answered, highest mean log-prob */
    /* a tie between clusters goes to the one with the better best member */
    orc_tts_cand tie[] = { { "7", -30, 10 }, { "9", -10, 10 }, { "7", -25, 10 }, { "9", -50, 10 } };
    T_CHECK(orc_tts_vote(tie, 4, &votes) == 1 && votes == 2);
    orc_tts_cand none[] = { { NULL, 0, 1 }, { "", 0, 1 } };
    T_CHECK(orc_tts_vote(none, 2, &votes) == -1 && votes == 0);
    T_CHECK(orc_tts_best(none, 2) == -1);
    T_CHECK(orc_tts_vote(NULL, 0, NULL) == -1);
}

static void test_certainty(void) {
    const char *same[] = { "42", "42.0", "42", "42" };
    double a, h;
    orc_tts_certainty(same, 4, &a, &h);
    T_CHECK(a == 1 && fabs(h) < 1e-12);
    const char *split[] = { "1", "2", NULL, NULL };
    orc_tts_certainty(split, 4, &a, &h);
    T_CHECK(a == 0.25 && fabs(h - log(4)) < 1e-12);
    const char *most[] = { "5", "5", "5", "6" };
    orc_tts_certainty(most, 4, &a, &h);
    T_CHECK(a == 0.75 && fabs(h - (-0.75 * log(0.75) - 0.25 * log(0.25))) < 1e-12);
}

/* -------------------------------------------------------- on the model */
static void test_branches_share_prompt_blocks(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(256);
    orc_sched *s = NULL;
    T_CHECK(orc_sched_create(e, 4, &s, NULL) == ENG_OK);
    col c = { 0 };
    int free0 = eng_kv_free_blocks(e), n = 8;
    orc_query q = query(20, 1.0f, 7);
    orc_tts_opts o = opts(n);
    T_CHECK(submit(s, &q, &o, &c) == 0);
    T_CHECK(orc_sched_step(s, NULL) == 1);           /* admission + first step */
    int used = free0 - eng_kv_free_blocks(e);
    T_CHECK(eng_n_live(e) == n);
    while (!c.done) if (orc_sched_step(s, NULL) < 0) break;
    int p = (int)stat(&c, "prompt_tokens"), pblocks = (p - 1 + 15) / 16;
    /* the prefilled prompt once, plus at most one block per branch for its
     * own copy of the prompt's last, partly shared block */
    T_CHECKF(used <= pblocks + n, "used %d blocks, prompt %d blocks", used, pblocks);
    T_CHECKF(pblocks >= 3 && used < n * pblocks / 2, "no sharing: %d blocks", used);
    T_CHECK(eng_n_live(e) == 0);
    T_CHECK(eng_kv_free_blocks(e) == free0);          /* every block came back */
    orc_sched_destroy(s);
    col_free(&c);
    eng_destroy(e);
}

static int same_ids(const col *c, int a, int b) {
    return c->n_ids[a] == c->n_ids[b] && !memcmp(c->ids[a], c->ids[b], sizeof(int) * (size_t)c->n_ids[a]);
}

static void test_seeds(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(256);
    col c;
    orc_query q = query(24, 1.0f, 11);
    orc_tts_opts o = opts(4);
    o.same_seed = 1;
    T_CHECK(run(e, &q, &o, &c) == 0);
    for (int i = 1; i < 4; i++) T_CHECKF(same_ids(&c, 0, i), "branch %d differs with one seed", i);
    T_CHECK(c.n_ids[0] > 0);
    col_free(&c);
    o.same_seed = 0;
    T_CHECK(run(e, &q, &o, &c) == 0);
    int differ = 0;
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) differ += !same_ids(&c, i, j);
    T_CHECKF(differ == 6, "only %d of 6 pairs differ", differ);
    /* branch 0 keeps the query's own seed: a second run repeats it */
    col d;
    T_CHECK(run(e, &q, &o, &d) == 0);
    for (int i = 0; i < 4; i++) T_CHECK(c.n_ids[i] == d.n_ids[i] && !memcmp(c.ids[i], d.ids[i], sizeof c.ids[i]));
    col_free(&c);
    col_free(&d);
    eng_destroy(e);
}

static void test_probe_leaves_branch_alone(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(512);
    col with, without;
    orc_query q = query(40, 0.8f, 5);
    orc_tts_opts o = opts(3);
    o.probe_every = 4;
    o.probe_tokens = 6;
    o.stop_agree = 0;                  /* probe, never stop */
    T_CHECK(run(e, &q, &o, &with) == 0);
    T_CHECKF(stat(&with, "probes") >= 6, "only %g probes", stat(&with, "probes"));
    T_CHECK(stat(&with, "probe_tokens") > 0 && stat(&with, "cue_tokens") > 0);
    T_CHECK(stat(&with, "decoded_tokens") == stat(&with, "tokens") + stat(&with, "probe_tokens"));
    o.probe_every = 0;
    T_CHECK(run(e, &q, &o, &without) == 0);
    T_CHECK(stat(&without, "probes") == 0);
    for (int i = 0; i < 3; i++) {
        T_CHECK(with.n_ids[i] > 0);
        T_CHECKF(with.n_ids[i] == without.n_ids[i] &&
                 !memcmp(with.ids[i], without.ids[i], sizeof(int) * (size_t)with.n_ids[i]),
                 "branch %d changed by probing", i);
    }
    T_CHECK(eng_n_live(e) == 0);
    col_free(&with);
    col_free(&without);
    eng_destroy(e);
}

/* Scripted probe answers: "agree" gives every branch 42; "split" gives each
 * branch its own; "most" gives 42 to all but branch 0; "stable0" keeps
 * branch 0 on 5 while the others change every round. */
static const char *script_probe(void *ud, int branch, int round, const char *probed) {
    static char buf[MAXB][32];
    const char *mode = ud;
    (void)probed;
    if (!strcmp(mode, "agree")) return "42";
    if (!strcmp(mode, "most")) return branch ? "42" : "7";
    if (!strcmp(mode, "stable0") && branch == 0) return "5";
    snprintf(buf[branch % MAXB], sizeof buf[0], "%d", strcmp(mode, "split") ? 100 * round + branch : branch + 1);
    return buf[branch % MAXB];
}

static orc_tts_opts probe_opts(int n, const char *mode) {
    orc_tts_opts o = opts(n);
    o.probe_every = 4;
    o.probe_tokens = 6;
    o.min_rounds = 2;
    o.stop_agree = 0.75;
    o.probe_fn = script_probe;
    o.probe_ud = (void *)mode;
    return o;
}

static void test_early_stop_when_answers_agree(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(512);
    int free0 = eng_kv_free_blocks(e);
    col c;
    orc_query q = query(200, 1.0f, 3);
    orc_tts_opts o = probe_opts(4, "agree");
    T_CHECK(run(e, &q, &o, &c) == 0);
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(c.answer, "early_stop")));
    T_CHECK(ans_str(&c, "answer") && !strcmp(ans_str(&c, "answer"), "42"));
    T_CHECK(stat(&c, "probe_rounds") == 2);
    T_CHECK(stat(&c, "stopped_branches") == 4 && c.stopped_seen == 4);
    /* rounds start at 4 tokens and, once the first is read (6 probe tokens
     * later), at 10: stopped when the second is read, at 16 */
    for (int i = 0; i < 4; i++) T_CHECKF(c.branch_tokens[i] == 16, "branch %d: %d tokens", i, c.branch_tokens[i]);
    T_CHECK(stat(&c, "tokens") == 4 * 16 && stat(&c, "decoded_tokens") < 4 * 200);
    T_CHECK(eng_n_live(e) == 0 && eng_kv_free_blocks(e) == free0);
    col_free(&c);
    /* the entropy rule: 3 of 4 agree has entropy 0.56 nats */
    o = probe_opts(4, "most");
    o.stop_agree = 0.9;
    T_CHECK(run(e, &q, &o, &c) == 0);
    T_CHECK(!cJSON_IsTrue(cJSON_GetObjectItem(c.answer, "early_stop")));
    col_free(&c);
    o.stop_entropy = 0.6;
    T_CHECK(run(e, &q, &o, &c) == 0);
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(c.answer, "early_stop")));
    T_CHECK(ans_str(&c, "answer") && !strcmp(ans_str(&c, "answer"), "42"));
    col_free(&c);
    eng_destroy(e);
}

static void test_no_early_stop_when_answers_disagree(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(512);
    col c;
    orc_query q = query(40, 1.0f, 3);
    orc_tts_opts o = probe_opts(4, "split");
    T_CHECK(run(e, &q, &o, &c) == 0);
    T_CHECK(!cJSON_IsTrue(cJSON_GetObjectItem(c.answer, "early_stop")));
    T_CHECK(c.stopped_seen == 0 && stat(&c, "stopped_branches") == 0);
    T_CHECK(stat(&c, "probe_rounds") >= 2);
    for (int i = 0; i < 4; i++) T_CHECK(!strcmp(c.state[i], "done"));
    col_free(&c);
    eng_destroy(e);
}

static void test_stable_branch_stops_alone(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(512);
    int free0 = eng_kv_free_blocks(e);
    orc_sched *s = NULL;
    T_CHECK(orc_sched_create(e, 4, &s, NULL) == ENG_OK);
    col c = { 0 };
    orc_query q = query(40, 1.0f, 9);
    orc_tts_opts o = probe_opts(4, "stable0");
    o.stop_agree = 0;
    o.stable_k = 2;
    T_CHECK(submit(s, &q, &o, &c) == 0);
    int live_after_stop = -1;
    while (!c.done) {
        int seen = c.stopped_seen;
        if (orc_sched_step(s, NULL) < 0) break;
        if (!seen && c.stopped_seen) live_after_stop = eng_n_live(e);
    }
    T_CHECK(!strcmp(c.state[0], "stopped") && c.branch_tokens[0] == 16);
    T_CHECKF(live_after_stop == 3, "%d sequences live after branch 0 stopped", live_after_stop);
    for (int i = 1; i < 4; i++) T_CHECK(!strcmp(c.state[i], "done") && c.branch_tokens[i] > 16);
    T_CHECK(!cJSON_IsTrue(cJSON_GetObjectItem(c.answer, "early_stop")));
    T_CHECK(eng_n_live(e) == 0 && eng_kv_free_blocks(e) == free0);
    orc_sched_destroy(s);
    col_free(&c);
    eng_destroy(e);
}

static void test_vote_and_best_end_to_end(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(256);
    static const char *const script[] = { "so x is \\boxed{42}.", "hence \\boxed{42}", "\\boxed{7}" };
    col c;
    orc_query q = query(64, 1.0f, 1);
    orc_tts_opts o = opts(3);
    o.script = script;
    o.n_script = 3;
    T_CHECK(run(e, &q, &o, &c) == 0);
    T_CHECK(ans_str(&c, "answer") && !strcmp(ans_str(&c, "answer"), "42"));
    T_CHECK(ans_str(&c, "method") && !strcmp(ans_str(&c, "method"), "vote"));
    const cJSON *v = cJSON_GetObjectItem(c.answer, "vote"), *b = cJSON_GetObjectItem(c.answer, "best");
    T_CHECK(cJSON_GetObjectItem(v, "votes")->valueint == 2 && cJSON_GetObjectItem(v, "of")->valueint == 3);
    int bb = cJSON_GetObjectItem(b, "branch")->valueint;
    T_CHECK(bb >= 0 && bb < 3);
    char best_answer[8];
    snprintf(best_answer, sizeof best_answer, "%s", cJSON_GetObjectItem(b, "answer")->valuestring);
    T_CHECK(!strcmp(best_answer, bb == 2 ? "7" : "42"));
    for (int i = 0; i < 3; i++) T_CHECK(!strcmp(c.state[i], "done"));
    col_free(&c);
    o.aggregate = ORC_TTS_BEST;
    T_CHECK(run(e, &q, &o, &c) == 0);
    T_CHECK(ans_str(&c, "answer") && !strcmp(ans_str(&c, "answer"), best_answer));
    T_CHECK(cJSON_GetObjectItem(c.answer, "branch")->valueint == bb);
    col_free(&c);
    eng_destroy(e);
}

static void test_cancel_frees_everything(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(512);
    int free0 = eng_kv_free_blocks(e);
    orc_sched *s = NULL;
    T_CHECK(orc_sched_create(e, 4, &s, NULL) == ENG_OK);
    col c = { 0 };
    orc_query q = query(100, 1.0f, 2);
    orc_tts_opts o = probe_opts(4, "split");
    T_CHECK(submit(s, &q, &o, &c) == 0);
    for (int i = 0; i < 6; i++) orc_sched_step(s, NULL);   /* a probe round is in flight */
    T_CHECK(eng_n_live(e) == 8);
    T_CHECK(orc_sched_stop(s, "q1", NULL, "cancelled") == 1);
    T_CHECK(c.done && c.answer && !strcmp(ans_str(&c, "finish"), "cancelled"));
    T_CHECK(eng_n_live(e) == 0 && eng_kv_free_blocks(e) == free0);
    orc_sched_destroy(s);
    col_free(&c);
    eng_destroy(e);
}

/* A second query waits for KV room instead of starving the first. */
static int order, a_answer_at, b_first_at;
static void wait_emit(void *ud, cJSON *m) {
    const char *ty = cJSON_GetObjectItem(m, "type")->valuestring, *who = ud;
    order++;
    if (*who == 'a' && !strcmp(ty, "answer")) a_answer_at = order;
    if (*who == 'b' && !strcmp(ty, "token") && !b_first_at) b_first_at = order;
    cJSON_Delete(m);
}

/* Tokens of PROBLEM as a reason query's prompt (system + user turn). */
static int prompt_tokens(void) {
    eng_chat_msg msgs[2] = { { .role = "system", .content = ORC_TTS_MATH_SYSTEM }, { .role = "user", .content = PROBLEM } };
    orc_query pq = { .messages = msgs, .n_messages = 2 };
    int *ids = NULL, n = 0;
    T_CHECK(orc_encode_query(&pq, model, &ids, &n, NULL) == ENG_OK);
    free(ids);
    return n;
}

static void test_admission_waits_for_room(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    int n = prompt_tokens();
    int pb = (n + 15) / 16;
    /* a query of 6 branches of 48 tokens needs pb + 6 x 4 blocks to start */
    eng_engine *e = engine(pb + 6 * 4 + 4);
    orc_sched *s = NULL;
    T_CHECK(orc_sched_create(e, 4, &s, NULL) == ENG_OK);
    orc_query q = query(48, 1.0f, 1);
    orc_tts_opts o = opts(6);
    orc_task *a = NULL, *b = NULL;
    orc_sink sa = { .ud = "a", .emit = wait_emit }, sb = { .ud = "b", .emit = wait_emit };
    T_CHECK(orc_task_reason_create(&q, model, sa, &o, &a, NULL) == ENG_OK);
    snprintf(q.id, sizeof q.id, "q2");
    T_CHECK(orc_task_reason_create(&q, model, sb, &o, &b, NULL) == ENG_OK);
    T_CHECK(orc_sched_submit(s, a, NULL) == ENG_OK && orc_sched_submit(s, b, NULL) == ENG_OK);
    order = a_answer_at = b_first_at = 0;
    eng_err err = { 0 };
    int rc = 0;
    for (int i = 0; i < 10000 && (rc = orc_sched_step(s, &err)) == 1; i++) continue;
    T_CHECKF(rc == 0, "step: %s", err.msg);
    T_CHECKF(a_answer_at > 0 && b_first_at > a_answer_at, "b started at %d, a ended at %d",
             b_first_at, a_answer_at);
    T_CHECK(eng_n_live(e) == 0);
    orc_sched_destroy(s);
    eng_destroy(e);
}

/* An engine of n_blocks 4-token KV blocks with another sequence live (a
 * 1-token prompt: its block comes at its first step), so that admission
 * must wait rather than run alone when the blocks are short. */
static eng_engine *engine_blocks4(int n_blocks) {
    eng_opts eo = { .backend = ENG_BACKEND_CPU, .n_threads = 2, .block_size = 4,
                    .n_blocks = n_blocks, .max_seqs = 8 };
    eng_engine *e = NULL;
    int one = 1, other = -1;
    eng_sampling greedy = { 0 };
    if (eng_create(model, &eo, &e, NULL)) return NULL;
    if (eng_seq_add(e, &one, 1, &greedy, &other, NULL)) { eng_destroy(e); return NULL; }
    return e;
}

/* Admission counts KV blocks of the engine's own size (4 tokens here, not a
 * guessed 16): with another sequence live and one block short of what two
 * branches need to start, the query waits; with that block it starts.  The
 * planner's KV inputs come from the same engine. */
static void test_admission_block_size(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    int n = prompt_tokens();
    int need = (n + 3) / 4 + 2 * (16 / 4 + 1);   /* prompt; 2 branches of 16 tokens + a copied block */
    for (int room = 0; room < 2; room++) {
        eng_engine *e = engine_blocks4(need - 1 + room);
        if (!e) T_FAIL("engine");
        orc_query q = query(16, 1.0f, 1);
        orc_tts_opts o = opts(2);
        int *ids = NULL, m = 0;   /* the task's own encoding, as the server plans with */
        T_CHECK(orc_tts_encode_prompt(&q, &o, model, &ids, &m, NULL) == ENG_OK && m == n);
        free(ids);
        col c = { 0 };
        orc_sink sink = { .ud = &c, .emit = c_emit, .done = c_done };
        orc_task *t = NULL;
        eng_err err = { 0 };
        T_CHECK(orc_task_reason_create(&q, model, sink, &o, &t, &err) == ENG_OK);
        int r = t ? t->ops->begin(t, e, &err) : -1;
        T_CHECKF(r == (room ? ORC_RUNNING : ORC_WAIT), "%d free blocks of %d needed: begin gave %d (%s)",
                 eng_kv_free_blocks(e), need, r, err.msg);
        if (!room) {
            orc_plan_in in = { .prompt_tokens = n, .length = 16 };
            orc_plan_kv(&in, e);
            T_CHECKF(in.kv_free_blocks == need - 1 && in.kv_prompt_blocks == (n + 3) / 4 &&
                     in.kv_branch_blocks == 16 / 4 + 1, "plan KV: %d free, prompt %d, branch %d",
                     in.kv_free_blocks, in.kv_prompt_blocks, in.kv_branch_blocks);
        }
        if (t) { t->ops->stop(t, e, "test"); orc_task_free(t); }
        col_free(&c);
        eng_destroy(e);
    }
}

/* Chat admission counts the prompt's blocks at the engine's block size too:
 * with 4-token blocks, a raw PROBLEM prompt needs about four times the
 * blocks that a 16-token rule would ask for. */
static void test_chat_admission_block_size(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    int *ids = NULL, n = 0;
    if (eng_tok_encode_prompt(eng_model_tok(model), PROBLEM, strlen(PROBLEM), &ids, &n, NULL))
        T_FAIL("encode");
    free(ids);
    int need = (n + 1 + 3) / 4 + 1 + 1;   /* prompt + next token, a margin, one choice */
    for (int room = 0; room < 2; room++) {
        eng_engine *e = engine_blocks4(need - 1 + room);
        if (!e) T_FAIL("engine");
        orc_query q = query(8, 0.0f, 1);
        col c = { 0 };
        orc_sink sink = { .ud = &c, .emit = c_emit, .done = c_done };
        orc_task *t = NULL;
        eng_err err = { 0 };
        T_CHECK(orc_task_chat_create(&q, model, sink, &t, &err) == ENG_OK);
        int r = t ? t->ops->begin(t, e, &err) : -1;
        T_CHECKF(r == (room ? ORC_RUNNING : ORC_WAIT), "%d free blocks, %d needed: begin gave %d (%s)",
                 eng_kv_free_blocks(e), need, r, err.msg);
        if (t) { t->ops->stop(t, e, "test"); orc_task_free(t); }
        col_free(&c);
        eng_destroy(e);
    }
}

static void test_calibration(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    eng_engine *e = engine(512);
    int free0 = eng_kv_free_blocks(e), prompt[64];
    for (int i = 0; i < 64; i++) prompt[i] = (i * 37) % 1000;
    orc_lat_model m;
    eng_err err = { 0 };
    T_CHECKF(orc_lat_calibrate(e, prompt, 64, 16, 2, NULL, &m, &err) == ENG_OK, "%s", err.msg);
    T_CHECK(m.n_points == 5 && m.batch[0] == 1 && m.batch[4] == 16);
    for (int i = 0; i < m.n_points; i++) T_CHECK(m.step_s[i] > 0 && (!i || m.step_s[i] >= m.step_s[i - 1]));
    T_CHECK(m.prefill_s > 0 && m.ctx0 == 64 && m.ctx_s >= 0);
    T_CHECK(eng_n_live(e) == 0 && eng_kv_free_blocks(e) == free0);
    /* an engine with 6 slots stops at batch 4 (the root takes one), not with an error */
    eng_destroy(e);
    eng_opts o = { .backend = ENG_BACKEND_CPU, .n_threads = 2, .n_blocks = 512, .max_seqs = 6 };
    T_CHECK(eng_create(model, &o, &e, NULL) == ENG_OK);
    T_CHECKF(orc_lat_calibrate(e, prompt, 64, 16, 2, NULL, &m, &err) == ENG_OK, "%s", err.msg);
    T_CHECK(m.n_points == 3 && m.batch[2] == 4);
    T_CHECK(eng_n_live(e) == 0);
    T_CHECK(orc_lat_calibrate(e, prompt, 0, 16, 2, NULL, &m, &err) == ENG_EINVAL);
    eng_destroy(e);
}

static void test_bad_input(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    col c = { 0 };
    orc_sink sink = { .ud = &c, .emit = c_emit };
    orc_task *t = NULL;
    eng_err err = { 0 };
    orc_query q = query(10, 0, 0);
    orc_tts_opts o = opts(0);
    T_CHECK(orc_task_reason_create(&q, model, sink, &o, &t, &err) == ENG_EINVAL && !t);
    o = opts(ORC_TTS_MAX_N + 1);
    T_CHECK(orc_task_reason_create(&q, model, sink, &o, &t, &err) == ENG_EINVAL);
    o = opts(2);
    o.probe_every = 4;
    o.probe_tokens = 0;
    T_CHECK(orc_task_reason_create(&q, model, sink, &o, &t, &err) == ENG_EINVAL);
    q.prompt = NULL;
    T_CHECK(orc_task_reason_create(&q, model, sink, NULL, &t, &err) == ENG_EINVAL);
    /* a prompt longer than the context: refused at submission (the client's
     * error), nothing emitted, nothing left in the engine */
    size_t big = 9000;
    char *text = malloc(big + 1);
    for (size_t i = 0; i < big; i++) text[i] = "ab "[i % 3];
    text[big] = 0;
    q = query(10, 0, 0);
    q.prompt = text;
    eng_engine *e = engine(256);
    o = opts(2);
    orc_sched *s = NULL;
    T_CHECK(orc_sched_create(e, 4, &s, &err) == ENG_OK);
    T_CHECK(orc_task_reason_create(&q, model, sink, &o, &t, &err) == ENG_OK);
    T_CHECKF(orc_sched_submit(s, t, &err) == ORC_ETOOLONG && strstr(err.msg, "context"), "%s", err.msg);
    orc_task_free(t);
    T_CHECK(c.errors == 0 && c.answer == 0 && eng_n_live(e) == 0);
    orc_sched_destroy(s);
    free(text);
    col_free(&c);
    eng_destroy(e);
}

/* --------------------------------------------------------------- bench */
static void test_bench_math500(void) {
    if (!load()) T_FAIL("bundled fixture %s did not load", MODEL);
    char data[512];
    snprintf(data, sizeof data, "%s/data/math500/test.jsonl", t_shared());
    if (access(data, R_OK)) T_SKIP("MATH-500 data %s is absent (../shared is optional)", data);
    char out[] = "/tmp/brisk_test_tts_XXXXXX";
    int fd = mkstemp(out);
    if (fd < 0) T_FAIL("cannot create a temporary file %s", out);
    close(fd);
    char json[600], svg[600];
    snprintf(json, sizeof json, "%s.json", out);
    snprintf(svg, sizeof svg, "%s.svg", out);
    char *argv[] = { "bench", "math500", "--model", MODEL, "--data", data, "--limit", "2",
                     "--max-tokens", "12", "--n", "2,4", "--budgets", "0.00001,30", "--out", json,
                     "--threads", "2", "--calib-batch", "8", "--probe-every", "4", "--quiet" };
    bench_math500_opts o;
    eng_err err = { 0 };
    T_CHECK(bench_math500_parse((int)(sizeof argv / sizeof *argv), argv, &o, &err) == ENG_OK);
    T_CHECK(o.limit == 2 && o.n_ns == 2 && o.ns[1] == 4 && o.n_budgets == 2 && o.early.probe_every == 4);
    int rc = bench_math500_run(&o, &err);
    T_CHECKF(rc == ENG_OK, "%s", err.msg);
    FILE *f = fopen(json, "r");
    char *buf = calloc(1, 1 << 20);
    if (f && buf) { size_t n = fread(buf, 1, (1 << 20) - 1, f); buf[n] = 0; }
    if (f) fclose(f);
    cJSON *j = cJSON_Parse(buf ? buf : "");
    T_CHECK(j != NULL);
    const cJSON *cf = cJSON_GetObjectItem(j, "configs"), *x;
    /* greedy, seq-2, seq-4, par-2, par-4, par-4+spec, par-4+early,
     * par-4+spec+early, two budgets */
    T_CHECKF(cJSON_GetArraySize(cf) == 10, "%d configs", cJSON_GetArraySize(cf));
    int na = 0, planned = 0;
    const cJSON *seq[2] = { 0 }, *par[2] = { 0 };
    cJSON_ArrayForEach(x, cf) {
        const char *name = cJSON_GetObjectItem(x, "name")->valuestring;
        if (!strcmp(cJSON_GetObjectItem(x, "status")->valuestring, "n/a")) {
            printf("  %s: %s\n", name, cJSON_GetObjectItem(x, "note")->valuestring);
            na++;
            continue;
        }
        if (strstr(name, "+spec")) T_CHECK(cJSON_GetObjectItem(x, "k")->valueint == 4);
        double acc = cJSON_GetObjectItem(x, "accuracy")->valuedouble;
        T_CHECK(acc >= 0 && acc <= 1);
        T_CHECK(cJSON_GetObjectItem(x, "mean_latency_s")->valuedouble > 0);
        T_CHECK(cJSON_GetObjectItem(x, "p90_latency_s")->valuedouble >=
                cJSON_GetObjectItem(x, "mean_latency_s")->valuedouble * 0.5);
        T_CHECK(cJSON_GetObjectItem(x, "tokens")->valuedouble > 0);
        T_CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(x, "per_problem")) == 2);
        if (cJSON_GetObjectItem(x, "budget_s")) {
            planned++;
            double b = cJSON_GetObjectItem(x, "budget_s")->valuedouble;
            int feasible = cJSON_IsTrue(cJSON_GetObjectItem(x, "feasible"));
            T_CHECK(b < 0.01 ? !feasible : feasible);
            if (feasible) T_CHECK(cJSON_GetObjectItem(x, "predicted_latency_s")->valuedouble <= b);
        }
        for (int i = 0; i < 2; i++) {
            char want[16];
            snprintf(want, sizeof want, "seq-%d", 2 * (i + 1));
            if (!strcmp(name, want)) seq[i] = x;
            snprintf(want, sizeof want, "par-%d", 2 * (i + 1));
            if (!strcmp(name, want)) par[i] = x;
        }
    }
    T_CHECK(na == 0 && planned == 2);   /* the engine speculates (n-gram drafter) */
    /* the planner expects what the parallel runs measured, not a made-up curve */
    const cJSON *pl = cJSON_GetObjectItem(j, "planner");
    const cJSON *am = cJSON_GetObjectItem(pl, "accuracy_model");
    T_CHECKF(cJSON_IsString(am) && strstr(am->valuestring, "measured"), "accuracy model %s",
             cJSON_IsString(am) ? am->valuestring : "(missing)");
    double lo = 1, hi = 0;
    for (int i = 0; i < 2; i++)
        if (par[i]) {
            double a = cJSON_GetObjectItem(par[i], "accuracy")->valuedouble;
            lo = a < lo ? a : lo;
            hi = a > hi ? a : hi;
        }
    cJSON_ArrayForEach(x, cf) {
        const cJSON *ea = cJSON_GetObjectItem(x, "expected_accuracy");
        if (!cJSON_GetObjectItem(x, "budget_s")) continue;
        T_CHECKF(cJSON_IsNumber(ea) && ea->valuedouble >= lo - 1e-12 && ea->valuedouble <= hi + 1e-12,
                 "%s expects accuracy %g; the parallel runs measured %g to %g",
                 cJSON_GetObjectItem(x, "name")->valuestring, cJSON_IsNumber(ea) ? ea->valuedouble : -1, lo, hi);
    }
    /* sample i of the sequential run has parallel branch i's seed: same tokens */
    for (int i = 0; i < 2; i++) {
        T_CHECK(seq[i] && par[i]);
        if (seq[i] && par[i])
            T_CHECK(cJSON_GetObjectItem(seq[i], "tokens")->valuedouble ==
                    cJSON_GetObjectItem(par[i], "tokens")->valuedouble);
    }
    cJSON_Delete(j);
    free(buf);
    f = fopen(svg, "r");
    char head[8] = { 0 };
    T_CHECK(f && fread(head, 1, 4, f) == 4 && !memcmp(head, "<svg", 4));
    if (f) fclose(f);
    unlink(out);
    unlink(json);
    unlink(svg);
}

static void test_bench_args(void) {
    bench_math500_opts o;
    eng_err err = { 0 };
    char *no_model[] = { "bench", "math500" };
    T_CHECK(bench_math500_parse(2, no_model, &o, &err) == ENG_EINVAL && strstr(err.msg, "--model"));
    char *other[] = { "bench", "gsm8k", "--model", "m" };
    T_CHECK(bench_math500_parse(4, other, &o, &err) == ENG_EINVAL);
    char *bad_num[] = { "bench", "math500", "--model", "m", "--limit", "abc" };
    T_CHECK(bench_math500_parse(6, bad_num, &o, &err) == ENG_EINVAL && strstr(err.msg, "--limit"));
    char *bad_n[] = { "bench", "math500", "--model", "m", "--n", "4,100" };
    T_CHECK(bench_math500_parse(6, bad_n, &o, &err) == ENG_EINVAL);
    char *unknown[] = { "bench", "math500", "--model", "m", "--frobnicate", "1" };
    T_CHECK(bench_math500_parse(6, unknown, &o, &err) == ENG_EINVAL && strstr(err.msg, "frobnicate"));
    char *missing[] = { "bench", "math500", "--model" };
    T_CHECK(bench_math500_parse(3, missing, &o, &err) == ENG_EINVAL);
    char *bad_tp[] = { "bench", "math500", "--model", "m", "--tp", "0" };
    T_CHECK(bench_math500_parse(6, bad_tp, &o, &err) == ENG_EINVAL && strstr(err.msg, "--tp"));
    char *ok[] = { "bench", "math500", "--model", "m", "--cuda", "--budgets", "1.5", "--tp", "2" };
    T_CHECK(bench_math500_parse(9, ok, &o, &err) == ENG_OK && o.eng.backend == ENG_BACKEND_CUDA &&
            o.eng.tp == 2 && o.n_budgets == 1 && o.budgets[0] == 1.5);
    o.data = "/nonexistent/math.jsonl";
    T_CHECK(bench_math500_run(&o, &err) == ENG_EIO);
}

int main(void) {
    T_RUN(test_probe_answer);
    T_RUN(test_vote_and_best);
    T_RUN(test_certainty);
    T_RUN(test_branches_share_prompt_blocks);
    T_RUN(test_seeds);
    T_RUN(test_probe_leaves_branch_alone);
    T_RUN(test_early_stop_when_answers_agree);
    T_RUN(test_no_early_stop_when_answers_disagree);
    T_RUN(test_stable_branch_stops_alone);
    T_RUN(test_vote_and_best_end_to_end);
    T_RUN(test_cancel_frees_everything);
    T_RUN(test_admission_waits_for_room);
    T_RUN(test_admission_block_size);
    T_RUN(test_chat_admission_block_size);
    T_RUN(test_calibration);
    T_RUN(test_bad_input);
    T_RUN(test_bench_args);
    T_RUN(test_bench_math500);
    eng_model_free(model);
    T_DONE();
}
