/* test_sched.c — the orchestrator's scheduler: queries share one engine
 * batch, a congested reader pauses its query (backpressure) and resumes it,
 * a stopped query frees its sequences at once, queries past the engine's
 * sequences wait in a bounded queue; the token metrics count generated
 * tokens. */
#include "t.h"
#include "orc.h"

typedef struct reader { int tokens, done, congested, queued; } reader;

static void emit(void *ud, cJSON *m) {
    reader *r = ud;
    const char *type = cJSON_GetObjectItem(m, "type")->valuestring;
    r->tokens += !strcmp(type, "token");
    r->done += !strcmp(type, "stats");
    if (!strcmp(type, "queued")) r->queued = cJSON_GetObjectItem(m, "position")->valueint;
    cJSON_Delete(m);
}
static int congested(void *ud) { return ((reader *)ud)->congested; }

static eng_model *M;

static orc_task *chat(reader *r, const char *id, int max_tokens) {
    orc_query q = { .prompt = "Hello there", .max_tokens = max_tokens };
    snprintf(q.id, sizeof q.id, "%s", id);
    orc_sink sink = { r, emit, congested, NULL };
    orc_task *t = NULL;
    eng_err err = { 0 };
    return orc_task_chat_create(&q, M, sink, &t, &err) ? NULL : t;
}

static void test_backpressure(void) {
    eng_err err = { 0 };
    eng_engine *e = NULL;
    orc_sched *s = NULL;
    eng_opts o = { .n_threads = 1 };
    T_CHECK(!eng_create(M, &o, &e, &err) && !orc_sched_create(e, 8, &s, &err));
    reader slow = { 0 }, fast = { 0 };
    T_CHECK(!orc_sched_submit(s, chat(&slow, "slow", 50), &err));
    T_CHECK(!orc_sched_submit(s, chat(&fast, "fast", 50), &err));
    for (int i = 0; i < 5; i++) orc_sched_step(s, &err);
    T_CHECKF(slow.tokens == 5 && fast.tokens == 5, "%d %d", slow.tokens, fast.tokens);
    slow.congested = 1;                 /* the slow client stops reading */
    for (int i = 0; i < 10; i++) orc_sched_step(s, &err);
    T_CHECKF(slow.tokens == 5, "a congested reader still got tokens: %d", slow.tokens);
    T_CHECKF(fast.tokens == 15, "the other query must go on: %d", fast.tokens);
    slow.congested = 0;                 /* it catches up: its query resumes */
    for (int i = 0; i < 200 && !(slow.done && fast.done); i++) orc_sched_step(s, &err);
    T_CHECKF(slow.tokens == 50 && fast.tokens == 50, "%d %d", slow.tokens, fast.tokens);
    T_CHECK(eng_n_live(e) == 0);
    /* the metrics count generated tokens: the paused query's steps add none */
    orc_sched_stats st;
    orc_sched_get_stats(s, &st);
    T_CHECKF(st.tokens == 100, "%lld tokens counted for 100 generated", st.tokens);
    T_CHECK(st.kv_free_blocks == eng_kv_free_blocks(e));
    orc_sched_destroy(s);
    eng_destroy(e);
}

static void test_stop_frees(void) {
    eng_err err = { 0 };
    eng_engine *e = NULL;
    orc_sched *s = NULL;
    eng_opts o = { .n_threads = 1 };
    T_CHECK(!eng_create(M, &o, &e, &err) && !orc_sched_create(e, 2, &s, &err));
    int free0 = eng_kv_free_blocks(e);
    reader a = { 0 }, b = { 0 };
    T_CHECK(!orc_sched_submit(s, chat(&a, "a", 500), &err));
    T_CHECK(!orc_sched_submit(s, chat(&b, "b", 500), &err));
    for (int i = 0; i < 20; i++) orc_sched_step(s, &err);
    T_CHECK(eng_kv_free_blocks(e) < free0);
    T_CHECK(orc_sched_has(s, "a", &a) && !orc_sched_has(s, "a", &b));
    T_CHECK(orc_sched_stop_all(s, &a, "disconnected") == 1 && a.done == 1);
    T_CHECK(orc_sched_stop(s, "b", NULL, "cancelled") == 1 && b.done == 1);
    T_CHECK(eng_n_live(e) == 0 && eng_kv_free_blocks(e) == free0);
    T_CHECK(orc_sched_step(s, &err) == 0);   /* nothing left to run */
    orc_sched_destroy(s);
    eng_destroy(e);
}

/* An engine of 2 sequences and a queue of 2: two queries run, two wait and
 * are told their places, the fifth is refused; the waiting ones start as
 * the running ones end, and all four finish. */
static void test_queue(void) {
    eng_err err = { 0 };
    eng_engine *e = NULL;
    orc_sched *s = NULL;
    eng_opts o = { .n_threads = 1, .max_seqs = 2 };
    T_CHECK(!eng_create(M, &o, &e, &err) && !orc_sched_create(e, 2, &s, &err));
    reader r[5] = { { 0 } };
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "q%d", i);
        T_CHECKF(!orc_sched_submit(s, chat(&r[i], id, 8), &err), "%d: %s", i, err.msg);
    }
    T_CHECK(r[0].queued == 0 && r[1].queued == 0 && r[2].queued == 1 && r[3].queued == 2);
    orc_task *t5 = chat(&r[4], "q4", 8);
    T_CHECKF(orc_sched_submit(s, t5, &err) == ENG_EFULL && strstr(err.msg, "waiting"), "%s", err.msg);
    t5->destroy(t5);
    T_CHECK(r[4].queued == 0 && r[4].done == 0);
    for (int i = 0; i < 200 && orc_sched_step(s, &err) == 1; i++) {}
    for (int i = 0; i < 4; i++) T_CHECKF(r[i].done == 1 && r[i].tokens > 0, "query %d", i);
    T_CHECK(eng_n_live(e) == 0);
    orc_sched_destroy(s);
    eng_destroy(e);
}

/* With speculation a step brings several tokens: each counts. */
static void test_spec_tokens_counted(void) {
    eng_err err = { 0 };
    eng_engine *e = NULL;
    orc_sched *s = NULL;
    eng_opts o = { .n_threads = 1 };
    T_CHECK(!eng_create(M, &o, &e, &err) && !orc_sched_create(e, 8, &s, &err));
    reader r = { 0 };
    orc_query q = { .prompt = "one two three one two three one two three one two three",
                    .max_tokens = 200, .spec = 1 };
    snprintf(q.id, sizeof q.id, "spec");
    orc_sink sink = { &r, emit, congested, NULL };
    orc_task *t = NULL;
    T_CHECK(!orc_task_chat_create(&q, M, sink, &t, &err) && !orc_sched_submit(s, t, &err));
    int steps = 0, multi = 0;
    orc_sched_stats st;
    orc_sched_get_stats(s, &st);
    while (!r.done && steps < 400) {
        long long before = st.tokens;
        int got = r.tokens;
        T_CHECK(orc_sched_step(s, &err) == 1);
        steps++;
        orc_sched_get_stats(s, &st);
        if (r.done) break;   /* the last step may bring tokens past the end, not streamed */
        T_CHECKF(st.tokens - before == r.tokens - got, "step %d: %lld counted, %d streamed", steps,
                 st.tokens - before, r.tokens - got);
        multi += r.tokens - got > 1;
    }
    printf("  %d tokens in %d steps, %d of them speculative with drafts kept\n", r.tokens, steps, multi);
    T_CHECK(r.done && multi > 0);
    orc_sched_destroy(s);
    eng_destroy(e);
}

int main(void) {
    eng_err err = { 0 };
    if (eng_model_load("tests/fixtures/tiny-qwen2", &M, &err)) { printf("%s\n0 passed, 1 failed, 0 skipped\n", err.msg); return 1; }
    T_RUN(test_backpressure);
    T_RUN(test_stop_frees);
    T_RUN(test_queue);
    T_RUN(test_spec_tokens_counted);
    eng_model_free(M);
    T_DONE();
}
