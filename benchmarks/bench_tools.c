/* bench_tools.c — end-to-end latency of tool-using requests with and without
 * partial execution (tools starting while the call is still being decoded).
 *
 * The model's output is scripted (teacher forcing: the model runs every
 * step, so decode time is real, but the text is fixed), so every mode sees
 * the same calls and the final outputs can be compared.  Tools are real:
 * fetch_url and web_search over HTTP against the local web environment,
 * whose per-request latency is lognormal (median 400 ms, sigma 0.6 by
 * default), re-seeded per mode so each mode meets the same latencies.
 *
 * Workloads: "search+fetch" (search, then open the hit, then answer) and
 * "multi-call" (four fetches in one turn, then answer).  Modes: tools start
 * at the end of the turn one after another (a plain agent loop), at the end
 * of the turn all at once, at the end of each call, or as soon as the call's
 * url/query is decoded (partial execution). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "orc.h"

typedef struct bench {
    const char *model_dir, *out;
    int requests, cuda;
    double median_ms, sigma;
    eng_model *m;
    eng_engine *e;
    char db[64];
} bench;

typedef struct run_rec { cJSON *msgs; } run_rec;
static void rec_emit(void *ud, cJSON *m) { cJSON_AddItemToArray(((run_rec *)ud)->msgs, m); }

static const char *mode_name[] = { "partial", "call_end", "turn_end", "turn_serial" };

/* Script of request r of a workload, in buf (turns separated into sc[]). */
static int make_script(int workload, int r, const char *base, char bufs[3][2048], const char *sc[3]) {
    char name[128];
    int page = 3 + r * 5;
    tool_corpus_page_name(11, page, name, sizeof name);
    if (workload == 0) {
        snprintf(bufs[0], 2048, "I should look this up first.\n<tool_call>\n{\"name\": \"web_search\", "
                 "\"arguments\": {\"query\": \"%s\"}}\n</tool_call><|im_end|>", name);
        snprintf(bufs[1], 2048, "The first result looks right; let me open it.\n<tool_call>\n{\"name\": "
                 "\"fetch_url\", \"arguments\": {\"url\": \"%s/page/%d\"}}\n</tool_call><|im_end|>", base, page);
        snprintf(bufs[2], 2048, "%s is described on that page.<|im_end|>", name);
        for (int i = 0; i < 3; i++) sc[i] = bufs[i];
        return 3;
    }
    int k = snprintf(bufs[0], 2048, "I will open the four related pages at once.\n");
    for (int i = 0; i < 4; i++)
        k += snprintf(bufs[0] + k, 2048 - (size_t)k, "<tool_call>\n{\"name\": \"fetch_url\", \"arguments\": "
                      "{\"url\": \"%s/page/%d\"}}\n</tool_call>\n", base, page + i);
    snprintf(bufs[0] + k, 2048 - (size_t)k, "<|im_end|>");
    snprintf(bufs[1], 2048, "All four pages are read; here is the summary.<|im_end|>");
    sc[0] = bufs[0];
    sc[1] = bufs[1];
    return 2;
}

/* Runs one request; returns its wall time in seconds, its tool results
 * concatenated in *results and its answer in *answer (malloc'd). */
static double run_one(bench *b, const tool_registry *reg, const char *const *sc, int n_sc, int mode,
                      char **results, char **answer) {
    run_rec rr = { cJSON_CreateArray() };
    eng_err err = { 0 };
    orc_sched *s = NULL;
    orc_sched_create(b->e, 2, &s, &err);
    orc_query q = { .prompt = "Find out about the pages.", .max_tokens = 2000 };
    snprintf(q.id, sizeof q.id, "r");
    orc_agent_opts ao = { .tools = reg, .tool_start = mode, .script = sc, .n_script = n_sc };
    orc_sink sink = { &rr, rec_emit, NULL, NULL };
    orc_task *t = NULL;
    double t0 = orc_now(), wall = -1;
    if (orc_task_agent_create(&q, b->m, sink, &ao, &t, &err) || orc_sched_submit(s, t, &err)) {
        fprintf(stderr, "bench_tools: %s\n", err.msg);
    } else {
        int done = 0;
        while (!done) {
            if (orc_sched_step(s, &err) == 0) usleep(200);
            const cJSON *m;
            cJSON_ArrayForEach(m, rr.msgs) done |= !strcmp(cJSON_GetObjectItem(m, "type")->valuestring, "stats");
        }
        wall = orc_now() - t0;
    }
    orc_sched_destroy(s);
    size_t cap = 1, len = 0;
    *results = calloc(1, 1);
    *answer = NULL;
    const cJSON *m;
    cJSON_ArrayForEach(m, rr.msgs) {
        const char *type = cJSON_GetObjectItem(m, "type")->valuestring;
        if (!strcmp(type, "error")) fprintf(stderr, "bench_tools: %s\n", cJSON_GetObjectItem(m, "message")->valuestring);
        if (!strcmp(type, "answer")) *answer = strdup(cJSON_GetObjectItem(m, "text")->valuestring);
        if (strcmp(type, "tool_result") || !*results) continue;
        const char *r = cJSON_GetObjectItem(m, "result")->valuestring;
        cap += strlen(r) + len;
        char *p = realloc(*results, cap);
        if (p) { *results = p; memcpy(p + len, r, strlen(r) + 1); len += strlen(r); }
    }
    cJSON_Delete(rr.msgs);
    return wall;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    bench b = { "tests/fixtures/tiny-qwen2", "benchmarks/results/tools.json", 6, 0, 400, 0.6, NULL, NULL, "" };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cuda")) { b.cuda = 1; continue; }
        if (i + 1 == argc) break;
        if (!strcmp(argv[i], "--model")) b.model_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--requests")) b.requests = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--median-ms")) b.median_ms = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--sigma")) b.sigma = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--out")) b.out = argv[i + 1];
        i++;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);   /* progress shows when piped */
    eng_err err = { 0 };
    eng_opts eo = { .max_seqs = 8, .backend = b.cuda ? ENG_BACKEND_CUDA : ENG_BACKEND_CPU };
    if (eng_model_load(b.model_dir, &b.m, &err) || eng_create(b.m, &eo, &b.e, &err)) {
        fprintf(stderr, "bench_tools: %s\n", err.msg);
        return 1;
    }
    snprintf(b.db, sizeof b.db, "/tmp/brisk_bench_tools_%d.db", (int)getpid());
    if (tool_corpus_generate(b.db, 200, 11, &err)) { fprintf(stderr, "bench_tools: %s\n", err.msg); return 1; }
    printf("model %s on %s, %d requests per workload, web latency lognormal median %.0f ms sigma %.2f\n",
           b.model_dir, b.cuda ? "CUDA" : "CPU", b.requests, b.median_ms, b.sigma);
    printf("%-13s %-12s %10s %10s %10s %12s\n", "workload", "mode", "mean_ms", "p50_ms", "max_ms", "same_output");
    cJSON *json = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(json, "rows");
    cJSON_AddStringToObject(json, "model", b.model_dir);
    cJSON_AddNumberToObject(json, "latency_median_ms", b.median_ms);
    cJSON_AddNumberToObject(json, "latency_sigma", b.sigma);
    double mean[2][4] = { { 0 } };
    int all_same = 1;
    for (int w = 0; w < 2; w++) {
        char **ref_res = calloc((size_t)b.requests, sizeof *ref_res), **ref_ans = calloc((size_t)b.requests, sizeof *ref_ans);
        for (int mode = ORC_TOOLS_TURN_SERIAL; mode >= ORC_TOOLS_PARTIAL; mode--) {
            tool_webenv *web = NULL;
            tool_webenv_opts wo = { .db_path = b.db, .latency_median_ms = b.median_ms, .latency_sigma = b.sigma, .seed = 5 };
            if (tool_webenv_start(&wo, &web, &err)) { fprintf(stderr, "bench_tools: %s\n", err.msg); return 1; }
            char endpoint[128];
            snprintf(endpoint, sizeof endpoint, "%s/search", tool_webenv_url(web));
            tool_registry *reg = tool_registry_create();
            tool_fetch_opts fo = { .max_text = 400, .max_links = 3 };
            tool_search_opts so = { .endpoint = endpoint, .k = 3 };
            tool_register_fetch_url(reg, &fo, &err);
            tool_register_web_search(reg, &so, &err);
            double *t = calloc((size_t)b.requests, sizeof *t);
            int same = 0;
            for (int r = 0; r < b.requests; r++) {
                char bufs[3][2048];
                const char *sc[3];
                int n = make_script(w, r, tool_webenv_url(web), bufs, sc);
                char *res = NULL, *ans = NULL;
                t[r] = run_one(&b, reg, sc, n, mode, &res, &ans);
                if (!ref_res[r]) { ref_res[r] = res; ref_ans[r] = ans; same++; continue; }
                same += res && ans && !strcmp(res, ref_res[r]) && !strcmp(ans, ref_ans[r]);
                free(res);
                free(ans);
            }
            double sum = 0;
            for (int r = 0; r < b.requests; r++) sum += t[r];
            qsort(t, (size_t)b.requests, sizeof *t, cmp_d);
            mean[w][mode] = sum / b.requests;
            all_same &= same == b.requests;
            printf("%-13s %-12s %10.1f %10.1f %10.1f %9d/%d\n", w ? "multi-call" : "search+fetch", mode_name[mode],
                   mean[w][mode] * 1e3, t[b.requests / 2] * 1e3, t[b.requests - 1] * 1e3, same, b.requests);
            cJSON *row = cJSON_CreateObject();
            cJSON_AddStringToObject(row, "workload", w ? "multi-call" : "search+fetch");
            cJSON_AddStringToObject(row, "mode", mode_name[mode]);
            cJSON_AddNumberToObject(row, "mean_ms", mean[w][mode] * 1e3);
            cJSON_AddNumberToObject(row, "p50_ms", t[b.requests / 2] * 1e3);
            cJSON_AddNumberToObject(row, "same_output", same);
            cJSON_AddItemToArray(rows, row);
            free(t);
            tool_registry_destroy(reg);
            tool_webenv_stop(web);
        }
        for (int r = 0; r < b.requests; r++) { free(ref_res[r]); free(ref_ans[r]); }
        free(ref_res);
        free(ref_ans);
    }
    printf("\nreduction in mean completion latency by partial execution:\n");
    for (int w = 0; w < 2; w++) {
        const char *wn = w ? "multi-call" : "search+fetch";
        for (int mode = ORC_TOOLS_CALL_END; mode <= ORC_TOOLS_TURN_SERIAL; mode++) {
            double red = 1 - mean[w][ORC_TOOLS_PARTIAL] / mean[w][mode];
            printf("  %-13s vs %-12s %5.1f%%\n", wn, mode_name[mode], red * 100);
            char key[64];
            snprintf(key, sizeof key, "%s_reduction_vs_%s", wn, mode_name[mode]);
            cJSON_AddNumberToObject(json, key, red);
        }
    }
    printf("same tool results and answers in every mode: %s\n", all_same ? "yes" : "NO");
    cJSON_AddBoolToObject(json, "same_outputs", all_same);
    char *s = cJSON_Print(json);
    FILE *f = fopen(b.out, "w");
    if (f) { fputs(s, f); fclose(f); printf("wrote %s\n", b.out); }
    free(s);
    cJSON_Delete(json);
    unlink(b.db);
    eng_destroy(b.e);
    eng_model_free(b.m);
    return all_same ? 0 : 1;
}
