/* test_agent.c — the agent loop on the tiny model, its output scripted by
 * teacher forcing, with real tools and the local web environment. */
#include "t.h"
#include <unistd.h>
#include "orc.h"

typedef struct rec { cJSON *msgs; } rec;

static void rec_emit(void *ud, cJSON *m) { cJSON_AddItemToArray(((rec *)ud)->msgs, m); }

/* The messages of one type, in order. */
static int count(const rec *r, const char *type) {
    int n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, r->msgs)
        n += !strcmp(cJSON_GetObjectItem(m, "type")->valuestring, type);
    return n;
}

static const cJSON *nth(const rec *r, const char *type, int k) {
    const cJSON *m;
    cJSON_ArrayForEach(m, r->msgs)
        if (!strcmp(cJSON_GetObjectItem(m, "type")->valuestring, type) && k-- == 0) return m;
    return NULL;
}

static const char *str(const cJSON *m, const char *k) {
    const cJSON *v = m ? cJSON_GetObjectItem(m, k) : NULL;
    return cJSON_IsString(v) ? v->valuestring : "";
}

typedef struct env {
    eng_model *m;
    eng_engine *e;
    tool_registry *reg, *calc;   /* web tools; calculator alone (the tiny model's context is short) */
    tool_webenv *web;
    char db[64], search[128], model_dir[64];
} env;

/* The tiny model declares a 1024-token context, too short for tool
 * prompts and pages in its 1K-token vocabulary: a copy in dir declares 8192
 * (same weights; its RoPE does not depend on the declared length).  With
 * other_eos, the copy's end-of-sequence token is id 2 instead of <|im_end|>
 * and it has no generation_config.json (as `brisk mkmodel` writes them). */
static int long_context_copy(const char *dir, int other_eos) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && for f in model.safetensors tokenizer.json %s; do "
             "ln -sf \"$PWD/tests/fixtures/tiny-qwen2/$f\" %s/$f; done && "
             "sed -e 's/\"max_position_embeddings\": *1024/\"max_position_embeddings\": 8192/' %s "
             "tests/fixtures/tiny-qwen2/config.json > %s/config.json", dir,
             other_eos ? "" : "generation_config.json", dir,
             other_eos ? "-e 's/\"eos_token_id\": *1026/\"eos_token_id\": 2/'" : "", dir);
    return system(cmd);
}

static int env_open(env *v) {
    eng_err err = { 0 };
    memset(v, 0, sizeof *v);
    snprintf(v->model_dir, sizeof v->model_dir, "/tmp/brisk_agent_model_%d", (int)getpid());
    if (long_context_copy(v->model_dir, 0)) return -1;
    if (eng_model_load(v->model_dir, &v->m, &err)) { printf("  %s\n", err.msg); return -1; }
    if (eng_model_config(v->m)->max_pos != 8192) { printf("  context not extended\n"); return -1; }
    eng_opts o = { .n_threads = 1 };
    if (eng_create(v->m, &o, &v->e, &err)) return -1;
    snprintf(v->db, sizeof v->db, "/tmp/brisk_agent_%d.db", (int)getpid());
    if (tool_corpus_generate(v->db, 40, 7, &err)) { printf("  %s\n", err.msg); return -1; }
    tool_webenv_opts wo = { .db_path = v->db, .latency_median_ms = 20, .latency_sigma = 0.3, .seed = 1 };
    if (tool_webenv_start(&wo, &v->web, &err)) { printf("  %s\n", err.msg); return -1; }
    snprintf(v->search, sizeof v->search, "%s/search", tool_webenv_url(v->web));
    v->reg = tool_registry_create();
    v->calc = tool_registry_create();
    if (tool_register_calculator(v->calc, &err)) return -1;
    tool_fetch_opts fo = { .max_text = 600, .max_links = 4, .allow_private = 1 };   /* local web */
    tool_search_opts so = { .endpoint = v->search };
    if (tool_register_fetch_url(v->reg, &fo, &err) ||
        tool_register_web_search(v->reg, &so, &err)) { printf("  %s\n", err.msg); return -1; }
    return 0;
}

static void env_close(env *v) {
    tool_registry_destroy(v->reg);
    tool_registry_destroy(v->calc);
    if (v->web) tool_webenv_stop(v->web);
    unlink(v->db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", v->model_dir);
    if (system(cmd)) printf("  could not remove %s\n", v->model_dir);
    eng_destroy(v->e);
    eng_model_free(v->m);
}

/* Runs one agent query to the end; returns its messages. */
static rec run(env *v, const tool_registry *reg, const char *const *script, int n_script,
               int tool_start, int max_turns) {
    rec r = { cJSON_CreateArray() };
    eng_err err = { 0 };
    orc_sched *s = NULL;
    orc_sched_create(v->e, 4, &s, &err);
    orc_query q = { .prompt = "What is 2+3*4?", .max_tokens = 400 };
    snprintf(q.id, sizeof q.id, "a1");
    orc_agent_opts ao = { .tools = reg, .tool_start = tool_start, .max_turns = max_turns,
                          .script = script, .n_script = n_script };
    orc_sink sink = { &r, rec_emit, NULL, NULL };
    orc_task *t = NULL;
    if (orc_task_agent_create(&q, v->m, sink, &ao, &t, &err) || orc_sched_submit(s, t, &err)) {
        printf("  %s\n", err.msg);
        return r;
    }
    for (int i = 0; i < 100000 && count(&r, "stats") == 0; i++)
        if (orc_sched_step(s, &err) == 0) usleep(1000);
    orc_sched_destroy(s);
    const cJSON *m;
    cJSON_ArrayForEach(m, r.msgs)
        if (!strcmp(str(m, "type"), "error")) printf("  error message: %s\n", str(m, "message"));
    return r;
}

static env V;

static void test_calculator_turn(void) {
    const char *script[] = {
        "Let me compute.\n<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+3*4\"}}\n</tool_call><|im_end|>",
        "The answer is 14.<|im_end|>" };
    rec r = run(&V, V.calc, script, 2, ORC_TOOLS_PARTIAL, 8);
    T_CHECKF(count(&r, "tool_call") == 1, "%d tool_call", count(&r, "tool_call"));
    const cJSON *res = nth(&r, "tool_result", 0);
    T_CHECKF(res && strstr(str(res, "result"), "14"), "%s", str(res, "result"));
    T_CHECK(res && cJSON_IsTrue(cJSON_GetObjectItem(res, "early")));
    const cJSON *a = nth(&r, "answer", 0);
    T_CHECKF(!strcmp(str(a, "text"), "The answer is 14."), "'%s'", str(a, "text"));
    T_CHECK(!strcmp(str(a, "finish"), "stop"));
    const cJSON *st = nth(&r, "stats", 0);
    T_CHECK(st && cJSON_GetObjectItem(st, "turns")->valueint == 2);
    T_CHECK(eng_n_live(V.e) == 0);
    cJSON_Delete(r.msgs);
}

static void test_web_turns(void) {
    char name[128], fetch[512], search[512];
    tool_corpus_page_name(7, 3, name, sizeof name);
    snprintf(search, sizeof search, "Searching.\n<tool_call>\n{\"name\": \"web_search\", \"arguments\": "
             "{\"query\": \"%s\"}}\n</tool_call><|im_end|>", name);
    snprintf(fetch, sizeof fetch, "Reading.\n<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": "
             "{\"url\": \"%s/page/3\"}}\n</tool_call><|im_end|>", tool_webenv_url(V.web));
    const char *script[] = { search, fetch, "Done.<|im_end|>" };
    rec r = run(&V, V.reg, script, 3, ORC_TOOLS_PARTIAL, 8);
    const cJSON *r0 = nth(&r, "tool_result", 0), *r1 = nth(&r, "tool_result", 1);
    T_CHECKF(r0 && strstr(str(r0, "result"), "/page/3"), "search result: %.200s", str(r0, "result"));
    T_CHECKF(r1 && strstr(str(r1, "result"), name), "fetch result: %.200s", str(r1, "result"));
    T_CHECK(!strcmp(str(nth(&r, "answer", 0), "text"), "Done."));
    T_CHECK(count(&r, "error") == 0);
    cJSON_Delete(r.msgs);
}

/* Every way of starting tools sees the same results. */
static void test_modes_agree(void) {
    char s0[1024];
    int k = snprintf(s0, sizeof s0, "Opening pages.\n");
    for (int i = 0; i < 3; i++)
        k += snprintf(s0 + k, sizeof s0 - (size_t)k, "<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": "
                      "{\"url\": \"%s/page/%d\"}}\n</tool_call>\n", tool_webenv_url(V.web), i + 5);
    snprintf(s0 + k, sizeof s0 - (size_t)k, "<|im_end|>");
    const char *script[] = { s0, "ok<|im_end|>" };
    char *first = NULL;
    for (int mode = ORC_TOOLS_PARTIAL; mode <= ORC_TOOLS_TURN_SERIAL; mode++) {
        rec r = run(&V, V.reg, script, 2, mode, 8);
        T_CHECKF(count(&r, "tool_result") == 3, "mode %d: %d results", mode, count(&r, "tool_result"));
        T_CHECK(count(&r, "error") == 0);
        char *all = calloc(1, 1);
        for (int i = 0; i < 3 && all; i++) {
            const char *t = str(nth(&r, "tool_result", i), "result");
            char *n = realloc(all, strlen(all) + strlen(t) + 1);
            if (n) { all = n; strcat(all, t); }
        }
        if (!first) first = all;
        else { T_CHECKF(!strcmp(first, all), "mode %d saw other tool results", mode); free(all); }
        int early = 0;
        for (int i = 0; i < 3; i++) early += cJSON_IsTrue(cJSON_GetObjectItem(nth(&r, "tool_result", i), "early"));
        T_CHECKF(mode == ORC_TOOLS_PARTIAL ? early == 3 : early == 0, "mode %d: %d early", mode, early);
        cJSON_Delete(r.msgs);
    }
    free(first);
}

static void test_bad_calls_reported(void) {
    const char *script[] = {
        "<tool_call>\n{\"name\": \"teleport\", \"arguments\": {}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1/0\"}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": calculator}\n</tool_call><|im_end|>",
        "Sorry.<|im_end|>" };
    rec r = run(&V, V.calc, script, 2, ORC_TOOLS_PARTIAL, 8);
    T_CHECKF(count(&r, "tool_result") == 3, "%d results", count(&r, "tool_result"));
    for (int i = 0; i < 3; i++) {
        const cJSON *x = nth(&r, "tool_result", i);
        T_CHECKF(x && cJSON_IsTrue(cJSON_GetObjectItem(x, "error")), "result %d: %s", i, str(x, "result"));
    }
    T_CHECK(strstr(str(nth(&r, "tool_result", 0), "result"), "unknown tool"));
    T_CHECK(!strcmp(str(nth(&r, "answer", 0), "text"), "Sorry."));
    cJSON_Delete(r.msgs);
}

static void test_turn_cap(void) {
    const char *call = "<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1+1\"}}\n</tool_call><|im_end|>";
    const char *script[] = { call, call, call, call };
    rec r = run(&V, V.calc, script, 4, ORC_TOOLS_PARTIAL, 2);
    T_CHECKF(count(&r, "tool_result") == 1, "%d results", count(&r, "tool_result"));
    T_CHECK(!strcmp(str(nth(&r, "answer", 0), "finish"), "turns"));
    T_CHECK(eng_n_live(V.e) == 0);
    cJSON_Delete(r.msgs);
}

static int n_tokens(const eng_model *m, const char *text) {
    int *ids = NULL, n = -1;
    eng_err err = { 0 };
    if (eng_tok_encode(eng_model_tok(m), text, strlen(text), 1, &ids, &n, &err)) n = -1;
    free(ids);
    return n;
}

static const char *calc_script[] = {
    "Let me compute.\n<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+3*4\"}}\n</tool_call><|im_end|>",
    "The answer is 14.<|im_end|>" };

/* The stats' turn_log: one entry per turn with its forced tokens, timings
 * in order, and the tool turn's wait and result tokens. */
static void test_turn_log(void) {
    rec r = run(&V, V.calc, calc_script, 2, ORC_TOOLS_TURN_END, 8);
    const cJSON *st = nth(&r, "stats", 0), *log = st ? cJSON_GetObjectItem(st, "turn_log") : NULL;
    T_CHECKF(cJSON_GetArraySize(log) == 2, "%d turns logged", cJSON_GetArraySize(log));
    for (int i = 0; i < 2 && cJSON_GetArraySize(log) == 2; i++) {
        const cJSON *t = cJSON_GetArrayItem(log, i);
        int want = n_tokens(V.m, calc_script[i]);
        double tok = cJSON_GetObjectItem(t, "tokens")->valuedouble, first = cJSON_GetObjectItem(t, "first_ms")->valuedouble;
        T_CHECKF(tok == want, "turn %d: %.0f tokens, script has %d", i, tok, want);
        T_CHECKF(first >= 0 && cJSON_GetObjectItem(t, "end_ms")->valuedouble >= first, "turn %d timings", i);
        T_CHECK(!!cJSON_GetObjectItem(t, "wait_ms") == (i == 0));
    }
    const cJSON *t0 = cJSON_GetArrayItem(log, 0), *rt = t0 ? cJSON_GetObjectItem(t0, "result_tokens") : NULL;
    T_CHECK(rt && rt->valuedouble > 5 && rt->valuedouble == cJSON_GetObjectItem(st, "result_tokens")->valuedouble);
    cJSON_Delete(r.msgs);
}

/* A model whose config names another end token (base checkpoints, `brisk
 * mkmodel`) still ends its turns on <|im_end|>, not at max_tokens. */
static void test_turn_ends_on_im_end(void) {
    env v = V;
    eng_err err = { 0 };
    snprintf(v.model_dir, sizeof v.model_dir, "/tmp/brisk_agent_eos_%d", (int)getpid());
    v.m = NULL;
    v.e = NULL;
    eng_opts o = { .n_threads = 1 };
    int ok = !long_context_copy(v.model_dir, 1) && !eng_model_load(v.model_dir, &v.m, &err) &&
             !eng_create(v.m, &o, &v.e, &err);
    T_CHECKF(ok, "setup: %s", err.msg);
    if (ok) {
        const eng_config *c = eng_model_config(v.m);
        T_CHECKF(c->n_eos == 1 && c->eos_ids[0] == 2, "the copy's end token is not id 2");
        rec r = run(&v, v.calc, calc_script, 2, ORC_TOOLS_PARTIAL, 8);
        const cJSON *a = nth(&r, "answer", 0), *st = nth(&r, "stats", 0);
        T_CHECKF(!strcmp(str(a, "finish"), "stop") && !strcmp(str(a, "text"), "The answer is 14."),
                 "finish %s, '%s'", str(a, "finish"), str(a, "text"));
        int want = n_tokens(v.m, calc_script[0]) + n_tokens(v.m, calc_script[1]);
        T_CHECKF(st && cJSON_GetObjectItem(st, "tokens")->valueint == want, "%d tokens, script has %d",
                 st ? cJSON_GetObjectItem(st, "tokens")->valueint : -1, want);
        cJSON_Delete(r.msgs);
    }
    eng_destroy(v.e);
    eng_model_free(v.m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", v.model_dir);
    if (system(cmd)) printf("  could not remove %s\n", v.model_dir);
}

/* Stopping a query while its tools run neither hangs nor leaks sequences. */
static void test_stop_while_tools_run(void) {
    char s0[512];
    snprintf(s0, sizeof s0, "<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": {\"url\": "
             "\"%s/page/1\"}}\n</tool_call><|im_end|>", tool_webenv_url(V.web));
    const char *script[] = { s0 };
    rec r = { cJSON_CreateArray() };
    eng_err err = { 0 };
    orc_sched *s = NULL;
    orc_sched_create(V.e, 4, &s, &err);
    orc_query q = { .prompt = "x", .max_tokens = 200 };
    snprintf(q.id, sizeof q.id, "stopme");
    orc_agent_opts ao = { .tools = V.reg, .script = script, .n_script = 1 };
    orc_sink sink = { &r, rec_emit, NULL, NULL };
    orc_task *t = NULL;
    T_CHECK(!orc_task_agent_create(&q, V.m, sink, &ao, &t, &err) && !orc_sched_submit(s, t, &err));
    for (int i = 0; i < 10000 && count(&r, "tool_call") == 0; i++) orc_sched_step(s, &err);
    T_CHECK(orc_sched_stop(s, "stopme", NULL, "cancelled") == 1);
    T_CHECK(!strcmp(str(nth(&r, "answer", 0), "finish"), "cancelled"));
    T_CHECK(eng_n_live(V.e) == 0);
    orc_sched_destroy(s);
    cJSON_Delete(r.msgs);
}

int main(void) {
    if (env_open(&V)) { printf("setup failed\n0 passed, 1 failed, 0 skipped\n"); return 1; }
    T_RUN(test_calculator_turn);
    T_RUN(test_web_turns);
    T_RUN(test_modes_agree);
    T_RUN(test_bad_calls_reported);
    T_RUN(test_turn_cap);
    T_RUN(test_turn_log);
    T_RUN(test_turn_ends_on_im_end);
    T_RUN(test_stop_while_tools_run);
    env_close(&V);
    T_DONE();
}
