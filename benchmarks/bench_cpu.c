/* bench_cpu.c — speed of the CPU backend next to its memory-bandwidth floor.
 *
 *   build/benchmarks/bench_cpu [--out FILE] [MODEL_DIR|FILE.gguf ...]
 *
 * Default models: the tiny test fixtures plus every folder in
 * $BRISK_SHARED/models (../shared/models).  scripts/bench_cpu_peer.sh runs
 * it on the real SmolLM2 file beside transformers on the same CPU.  For each model: prefill tokens/s
 * (one 128-token prompt in one step) and decode tokens/s at batch 1 and 8.
 * A decode step must read every weight once, so its floor is the weight
 * bytes (f32, as the CPU backend holds them) over the memory bandwidth,
 * measured here with a large multi-threaded memcpy; "x floor" is measured
 * step time over that floor.  Prints a table and writes --out (default
 * benchmarks/results/cpu.json). */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cJSON.h>
#include "eng.h"
#include "bench.h"

enum { PREFILL = 128, DECODE_PROMPT = 16 };

/* ------------------------------------------------------------ bandwidth */
typedef struct cp { char *dst; const char *src; size_t n; } cp;
static void *copy_part(void *a) {
    cp *c = a;
    memcpy(c->dst, c->src, c->n);
    return NULL;
}

/* Bytes moved per second (read + write) by n_threads memcpy'ing 256 MiB;
 * best of 5. */
static double memory_bandwidth(int n_threads) {
    size_t n = (size_t)256 << 20;
    char *src = malloc(n), *dst = malloc(n);
    if (!src || !dst) { free(src); free(dst); return 0; }
    memset(src, 1, n);
    memset(dst, 2, n);
    double best = 1e30;
    pthread_t th[64];
    cp parts[64];
    if (n_threads > 64) n_threads = 64;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = eng_now_s();
        for (int i = 0; i < n_threads; i++) {
            size_t a = n / n_threads * i, b = i == n_threads - 1 ? n : n / n_threads * (i + 1);
            parts[i] = (cp){ dst + a, src + a, b - a };
            if (i) pthread_create(&th[i], NULL, copy_part, &parts[i]);
        }
        copy_part(&parts[0]);
        for (int i = 1; i < n_threads; i++) pthread_join(th[i], NULL);
        double t = eng_now_s() - t0;
        if (t < best) best = t;
    }
    free(src);
    free(dst);
    return 2.0 * (double)n / best;
}

/* Bytes of f32 weights one decode step reads: every matrix and norm, the
 * output head, one embedding row. */
static double weight_bytes(const eng_config *c) {
    double h = c->hidden, q = (double)c->n_heads * c->head_dim;
    double kv = (double)c->n_kv_heads * c->head_dim, I = c->intermediate;
    double layer = h * q + 2 * h * kv + q * h + 3 * h * I + 2 * h;
    if (c->qkv_bias) layer += q + 2 * kv;
    return 4.0 * (c->n_layers * layer + (double)c->vocab_size * h + 2 * h);
}

/* ---------------------------------------------------------------- runs */
typedef struct result {
    char name[256];
    double prefill_tps, decode1_tps, decode8_tps, weight_mb, floor_ms, d1_ms, d8_ms;
    int ok;
} result;

static int add_prompt(eng_engine *e, int len, int vocab, int salt, eng_err *err) {
    int *ids = malloc(sizeof *ids * (size_t)len), s = -1;
    if (!ids) return -1;
    for (int i = 0; i < len; i++) ids[i] = (int)((i * 7919u + salt * 104729u + 17) % (unsigned)vocab);
    int rc = eng_seq_add(e, ids, len, NULL, &s, err);
    free(ids);
    return rc ? -1 : s;
}

/* Seconds per step for `batch` sequences decoding, after their prompt step;
 * at least 8 steps and about a second of work. */
static double decode_time(eng_model *m, int n_threads, int batch, eng_err *err) {
    const eng_config *c = eng_model_config(m);
    int steps_max = 256;
    eng_opts o = { .backend = ENG_BACKEND_CPU, .n_threads = n_threads, .max_seqs = batch,
                   .n_blocks = batch * ((DECODE_PROMPT + steps_max + 2) / 16 + 2) };
    eng_engine *e = NULL;
    if (eng_create(m, &o, &e, err)) return -1;
    for (int b = 0; b < batch; b++)
        if (add_prompt(e, DECODE_PROMPT, c->vocab_size, b, err) < 0) { eng_destroy(e); return -1; }
    double t = -1;
    if (!eng_step(e, err)) {
        int steps = 0;
        double t0 = eng_now_s();
        while (steps < steps_max && (steps < 8 || eng_now_s() - t0 < 1.0)) {
            if (eng_step(e, err)) break;
            steps++;
        }
        if (steps >= 8) t = (eng_now_s() - t0) / steps;
    }
    eng_destroy(e);
    return t;
}

static double prefill_time(eng_model *m, int n_threads, eng_err *err) {
    const eng_config *c = eng_model_config(m);
    eng_opts o = { .backend = ENG_BACKEND_CPU, .n_threads = n_threads, .max_seqs = 1,
                   .n_blocks = PREFILL / 16 + 2 };
    eng_engine *e = NULL;
    if (eng_create(m, &o, &e, err)) return -1;
    double best = -1, spent = 0;
    for (int rep = 0; rep < 5 && (rep < 2 || spent < 2.0); rep++) {
        int s = add_prompt(e, PREFILL, c->vocab_size, rep, err);
        if (s < 0) break;
        double t0 = eng_now_s();
        int rc = eng_step(e, err);
        double t = eng_now_s() - t0;
        spent += t;
        eng_seq_remove(e, s);
        if (rc) { best = -1; break; }
        if (best < 0 || t < best) best = t;
    }
    eng_destroy(e);
    return best;
}

static void bench_model(const char *dir, int n_threads, double bw, result *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", dir);
    eng_model *m = NULL;
    eng_err err = { 0 };
    if (eng_model_load(dir, &m, &err)) {
        fprintf(stderr, "%s: %s\n", dir, err.msg);
        return;
    }
    const eng_config *c = eng_model_config(m);
    double wb = weight_bytes(c);
    r->weight_mb = wb / 1e6;
    r->floor_ms = bw > 0 ? 1e3 * wb / bw : 0;
    double tp = prefill_time(m, n_threads, &err);
    double t1 = tp > 0 ? decode_time(m, n_threads, 1, &err) : -1;
    double t8 = t1 > 0 ? decode_time(m, n_threads, 8, &err) : -1;
    if (tp > 0 && t1 > 0 && t8 > 0) {
        r->ok = 1;
        r->prefill_tps = PREFILL / tp;
        r->d1_ms = 1e3 * t1;
        r->d8_ms = 1e3 * t8;
        r->decode1_tps = 1 / t1;
        r->decode8_tps = 8 / t8;
    } else {
        fprintf(stderr, "%s: %s\n", dir, err.msg[0] ? err.msg : "run failed");
    }
    eng_model_free(m);
}

/* ------------------------------------------------------------- output */
static void write_json(const char *out, const result *r, int n, int n_threads, double bw) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "models");
    cJSON_AddStringToObject(root, "backend", "cpu");
    cJSON_AddNumberToObject(root, "threads", n_threads);
    cJSON_AddNumberToObject(root, "memcpy_gb_s", bw / 1e9);
    cJSON_AddNumberToObject(root, "prefill_tokens", PREFILL);
    for (int i = 0; i < n; i++) {
        if (!r[i].ok) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", r[i].name);
        cJSON_AddNumberToObject(o, "prefill_tok_s", r[i].prefill_tps);
        cJSON_AddNumberToObject(o, "decode_b1_tok_s", r[i].decode1_tps);
        cJSON_AddNumberToObject(o, "decode_b8_tok_s", r[i].decode8_tps);
        cJSON_AddNumberToObject(o, "decode_b1_step_ms", r[i].d1_ms);
        cJSON_AddNumberToObject(o, "decode_b8_step_ms", r[i].d8_ms);
        cJSON_AddNumberToObject(o, "weight_mb_per_step", r[i].weight_mb);
        cJSON_AddNumberToObject(o, "floor_step_ms", r[i].floor_ms);
        cJSON_AddNumberToObject(o, "b1_x_floor", r[i].floor_ms > 0 ? r[i].d1_ms / r[i].floor_ms : 0);
        cJSON_AddNumberToObject(o, "b8_x_floor", r[i].floor_ms > 0 ? r[i].d8_ms / r[i].floor_ms : 0);
        cJSON_AddItemToArray(arr, o);
    }
    mkdir("benchmarks/results", 0755);
    bench_write_json(out, root);
    cJSON_Delete(root);
}

static int list_models(char ***dirs, int n) {
    const char *sh = getenv("BRISK_SHARED");
    char base[1024];
    snprintf(base, sizeof base, "%s/models", sh ? sh : "../shared");
    DIR *d = opendir(base);
    if (!d) return n;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[2048], cfg[2100];
        snprintf(path, sizeof path, "%s/%s", base, de->d_name);
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        struct stat sb;
        if (stat(cfg, &sb)) continue;
        char **nd = realloc(*dirs, sizeof **dirs * (size_t)(n + 1));
        if (!nd) break;
        *dirs = nd;
        (*dirs)[n++] = strdup(path);
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv) {
    char **dirs = NULL;
    const char *out = "benchmarks/results/cpu.json";
    int n = 0, first = 1;
    if (argc > 2 && !strcmp(argv[1], "--out")) {
        out = argv[2];
        first = 3;
    }
    if (argc > first) {
        dirs = malloc(sizeof *dirs * (size_t)argc);
        for (int i = first; i < argc; i++) dirs[n++] = strdup(argv[i]);
    } else {
        dirs = malloc(sizeof *dirs * 2);
        dirs[n++] = strdup("tests/fixtures/tiny-qwen2");
        dirs[n++] = strdup("tests/fixtures/tiny-llama");
        n = list_models(&dirs, n);
    }
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = nc > 0 ? (int)nc : 1;
    double bw = memory_bandwidth(n_threads);
    printf("CPU backend, %d threads, memcpy bandwidth %.1f GB/s (read + write)\n", n_threads, bw / 1e9);
    result *r = calloc((size_t)n, sizeof *r);
    printf("%-40s %10s %10s %10s %10s %10s %9s %9s\n", "model", "prefill/s", "dec b1/s",
           "dec b8/s", "weights MB", "floor ms", "b1 xflr", "b8 xflr");
    for (int i = 0; i < n; i++) {
        bench_model(dirs[i], n_threads, bw, &r[i]);
        if (!r[i].ok) continue;
        const char *name = strrchr(r[i].name, '/') ? strrchr(r[i].name, '/') + 1 : r[i].name;
        printf("%-40s %10.1f %10.2f %10.2f %10.1f %10.3f %9.1f %9.1f\n", name, r[i].prefill_tps,
               r[i].decode1_tps, r[i].decode8_tps, r[i].weight_mb, r[i].floor_ms,
               r[i].d1_ms / r[i].floor_ms, r[i].d8_ms / r[i].floor_ms);
        fflush(stdout);
    }
    write_json(out, r, n, n_threads, bw);
    for (int i = 0; i < n; i++) free(dirs[i]);
    free(dirs);
    free(r);
    return 0;
}
