/* test_nccl.c — kern_tp, the NCCL layer of tensor parallelism on CUDA, over
 * every visible GPU (one rank per GPU): all-reduce and all-gather give exact
 * sums and placements (small integers in f32), eagerly and replayed from a
 * CUDA graph; more ranks than GPUs and ranks out of range are refused.
 * Built without NCCL (make CUDA=1 where nccl.h is found), or where no GPU is
 * visible, it skips. */
#include "t.h"

#ifndef BRISK_NCCL
static void test_nccl(void) {
    T_SKIP("built without NCCL (make CUDA=1 builds it where nccl.h is found; it runs on a GPU machine)");
}
int main(void) {
    T_RUN(test_nccl);
    T_DONE();
}
#else
#include <cuda_runtime_api.h>
#include "kern_tp.h"

#define MAXR 16
enum { COUNT = 4099, GCOUNT = 33 };

typedef struct ranks {
    kern_tp *t;
    int n;
    cudaStream_t st[MAXR];
    float *buf[MAXR], *send[MAXR], *recv[MAXR];
} ranks;

static int n_gpus(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

static int open_ranks(ranks *R, eng_err *err) {
    memset(R, 0, sizeof *R);
    R->n = n_gpus() < MAXR ? n_gpus() : MAXR;
    if (kern_tp_create(R->n, &R->t, err)) return 0;
    for (int r = 0; r < R->n; r++) {
        cudaSetDevice(r);
        if (cudaStreamCreate(&R->st[r]) || cudaMalloc((void **)&R->buf[r], COUNT * 4) ||
            cudaMalloc((void **)&R->send[r], GCOUNT * 4) ||
            cudaMalloc((void **)&R->recv[r], (size_t)R->n * GCOUNT * 4))
            return 0;
    }
    return 1;
}

static void close_ranks(ranks *R) {
    for (int r = 0; r < R->n; r++) {
        cudaSetDevice(r);
        cudaFree(R->buf[r]); cudaFree(R->send[r]); cudaFree(R->recv[r]);
        if (R->st[r]) cudaStreamDestroy(R->st[r]);
    }
    kern_tp_destroy(R->t);
}

/* Rank r's inputs: buf[i] = (r + 1) * (i % 7), send[i] = 1000 r + i. */
static void fill(ranks *R) {
    static float h[COUNT];
    for (int r = 0; r < R->n; r++) {
        cudaSetDevice(r);
        for (int i = 0; i < COUNT; i++) h[i] = (float)((r + 1) * (i % 7));
        cudaMemcpy(R->buf[r], h, COUNT * 4, cudaMemcpyHostToDevice);
        for (int i = 0; i < GCOUNT; i++) h[i] = (float)(1000 * r + i);
        cudaMemcpy(R->send[r], h, GCOUNT * 4, cudaMemcpyHostToDevice);
    }
}

/* Both collectives for every rank from this thread, grouped. */
static int enqueue(ranks *R, eng_err *err) {
    int rc = kern_tp_group_start(err);
    for (int r = 0; r < R->n && !rc; r++)
        rc = kern_tp_allreduce(R->t, r, R->buf[r], COUNT, R->st[r], err);
    if (!rc) rc = kern_tp_group_end(err);
    if (!rc) rc = kern_tp_group_start(err);
    for (int r = 0; r < R->n && !rc; r++)
        rc = kern_tp_allgather(R->t, r, R->send[r], R->recv[r], GCOUNT, R->st[r], err);
    if (!rc) rc = kern_tp_group_end(err);
    return rc;
}

/* Every rank holds the exact sums and the gathered blocks in rank order. */
static int results_ok(ranks *R) {
    static float h[COUNT];
    float tri = (float)(R->n * (R->n + 1) / 2);
    for (int r = 0; r < R->n; r++) {
        cudaSetDevice(r);
        cudaStreamSynchronize(R->st[r]);
        cudaMemcpy(h, R->buf[r], COUNT * 4, cudaMemcpyDeviceToHost);
        for (int i = 0; i < COUNT; i++)
            if (h[i] != tri * (float)(i % 7)) {
                printf("  rank %d: sum[%d] = %g, want %g\n", r, i, h[i], tri * (float)(i % 7));
                return 0;
            }
        cudaMemcpy(h, R->recv[r], (size_t)R->n * GCOUNT * 4, cudaMemcpyDeviceToHost);
        for (int q = 0; q < R->n; q++)
            for (int i = 0; i < GCOUNT; i++)
                if (h[q * GCOUNT + i] != (float)(1000 * q + i)) {
                    printf("  rank %d: gathered[%d][%d] = %g\n", r, q, i, h[q * GCOUNT + i]);
                    return 0;
                }
    }
    return 1;
}

static void test_collectives(void) {
    if (!n_gpus()) T_SKIP("no GPU visible");
    ranks R;
    eng_err err = { 0 };
    if (!open_ranks(&R, &err)) { close_ranks(&R); T_FAIL("%d ranks: %s", R.n, err.msg); }
    printf("  %d rank%s\n", R.n, R.n == 1 ? "" : "s");
    fill(&R);
    T_CHECKF(enqueue(&R, &err) == ENG_OK, "%s", err.msg);
    T_CHECK(results_ok(&R));
    /* the same calls captured into one graph per rank's stream, replayed */
    fill(&R);
    cudaGraph_t g[MAXR];
    cudaGraphExec_t x[MAXR] = { 0 };
    int ok = 1;
    for (int r = 0; r < R.n; r++) {
        cudaSetDevice(r);
        ok &= cudaStreamBeginCapture(R.st[r], cudaStreamCaptureModeRelaxed) == cudaSuccess;
    }
    int rc = enqueue(&R, &err);
    for (int r = 0; r < R.n; r++) {
        cudaSetDevice(r);
        ok &= cudaStreamEndCapture(R.st[r], &g[r]) == cudaSuccess &&
              cudaGraphInstantiate(&x[r], g[r], 0) == cudaSuccess;
    }
    T_CHECKF(ok && rc == ENG_OK, "capture: %s", rc ? err.msg : "a CUDA graph call failed");
    for (int r = 0; r < R.n && ok; r++) {
        cudaSetDevice(r);
        ok &= cudaGraphLaunch(x[r], R.st[r]) == cudaSuccess;
    }
    T_CHECK(ok && results_ok(&R));
    for (int r = 0; r < R.n; r++) {
        cudaSetDevice(r);
        if (x[r]) cudaGraphExecDestroy(x[r]);
    }
    close_ranks(&R);
}

static void test_refused(void) {
    int n = n_gpus();
    if (!n) T_SKIP("no GPU visible");
    kern_tp *t = NULL;
    eng_err err = { 0 };
    T_CHECK(kern_tp_create(n + 1, &t, &err) == ENG_EUNSUPPORTED && !t && strstr(err.msg, "visible"));
    T_CHECK(kern_tp_create(0, &t, &err) == ENG_EUNSUPPORTED && !t);
    T_CHECK(kern_tp_create(1, &t, &err) == ENG_OK && kern_tp_ranks(t) == 1);
    float *b = NULL;
    cudaSetDevice(0);
    cudaMalloc((void **)&b, 16);
    T_CHECK(kern_tp_allreduce(t, 1, b, 4, 0, &err) == ENG_EINVAL && strstr(err.msg, "rank 1"));
    T_CHECK(kern_tp_allreduce(t, -1, b, 4, 0, &err) == ENG_EINVAL);
    cudaFree(b);
    kern_tp_destroy(t);
}

int main(void) {
    T_RUN(test_collectives);
    T_RUN(test_refused);
    T_DONE();
}
#endif
