/* bench_nccl.c — what tensor parallelism's all-reduces cost on this host:
 * kern_tp all-reduce over every visible GPU (or --ranks N) at the sizes a
 * split model sends, rows x hidden f32 after attention and after the MLP of
 * each layer, for 7B (hidden 3584, 28 layers) and 32B (hidden 5120, 64
 * layers) shapes at 1, 8 and 32 rows; reports microseconds per all-reduce,
 * eagerly and replayed from a CUDA graph of --iters calls, and the
 * all-reduce time of one decode step (2 x layers of them).
 *
 *   bench_nccl [--ranks N] [--iters N] [--out FILE.json]
 *
 * Built without NCCL it says so and exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "eng.h"

#ifndef BRISK_NCCL
int main(void) {
    fprintf(stderr, "bench_nccl: built without NCCL (make CUDA=1 builds it where nccl.h is found)\n");
    return 2;
}
#else
#include <cJSON.h>
#include <cuda_runtime_api.h>
#include "kern_tp.h"

#define MAXR 16

typedef struct shape { const char *name; int hidden, layers; } shape;
static const shape shapes[] = { { "7b", 3584, 28 }, { "32b", 5120, 64 } };
static const int rows[] = { 1, 8, 32 };

int main(int argc, char **argv) {
    int n = 0, iters = 200;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--ranks") && v) n = atoi(argv[++i]);
        else if (!strcmp(a, "--iters") && v) iters = atoi(argv[++i]);
        else if (!strcmp(a, "--out") && v) out = argv[++i];
        else {
            fprintf(stderr, "usage: bench_nccl [--ranks N] [--iters N] [--out FILE.json]\n");
            return 2;
        }
    }
    if (!n && cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    if (n < 1 || n > MAXR || iters < 1) {
        fprintf(stderr, "bench_nccl: %d ranks (1 to %d GPUs), %d iterations\n", n, MAXR, iters);
        return 2;
    }
    eng_err err = { 0 };
    kern_tp *t = NULL;
    if (kern_tp_create(n, &t, &err)) { fprintf(stderr, "bench_nccl: %s\n", err.msg); return 1; }
    char dev[256] = "";
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) snprintf(dev, sizeof dev, "%s", prop.name);
    cJSON *root = cJSON_CreateObject(), *res = cJSON_AddArrayToObject(root, "results");
    cJSON_AddNumberToObject(root, "ranks", n);
    cJSON_AddStringToObject(root, "device", dev);
    cJSON_AddNumberToObject(root, "iters", iters);
    printf("%d rank(s) on %s, %d all-reduces per timing\n", n, dev, iters);
    printf("%-4s %5s %10s %12s %12s %14s\n", "shape", "rows", "bytes", "eager us", "graph us",
           "per step ms");
    int rc = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes && !rc; s++)
        for (size_t k = 0; k < sizeof rows / sizeof *rows && !rc; k++) {
            size_t count = (size_t)rows[k] * shapes[s].hidden;
            double eager, graph;
            if ((rc = kern_tp_time_allreduce(t, count, iters, &eager, &graph, &err))) break;
            double step = 2.0 * shapes[s].layers * graph;
            printf("%-4s %5d %10zu %12.2f %12.2f %14.3f\n", shapes[s].name, rows[k], count * 4,
                   eager * 1e6, graph * 1e6, step * 1e3);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "shape", shapes[s].name);
            cJSON_AddNumberToObject(o, "rows", rows[k]);
            cJSON_AddNumberToObject(o, "bytes", (double)count * 4);
            cJSON_AddNumberToObject(o, "eager_us", eager * 1e6);
            cJSON_AddNumberToObject(o, "graph_us", graph * 1e6);
            cJSON_AddNumberToObject(o, "step_allreduce_ms", step * 1e3);
            cJSON_AddItemToArray(res, o);
        }
    if (rc) fprintf(stderr, "bench_nccl: %s\n", err.msg);
    if (!rc && out) {
        char *js = cJSON_Print(root);
        FILE *f = fopen(out, "w");
        if (!f || fputs(js, f) < 0) { fprintf(stderr, "bench_nccl: cannot write %s\n", out); rc = 1; }
        if (f) fclose(f);
        free(js);
    }
    cJSON_Delete(root);
    kern_tp_destroy(t);
    return rc ? 1 : 0;
}
#endif
