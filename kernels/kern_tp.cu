/* kern_tp.cu — NCCL communicators and collectives for tensor parallelism
 * (kern_tp.h).  libnccl is opened at run time (dlopen), not linked: a
 * binary built with NCCL still runs where the library is missing, and only
 * a split over GPUs is refused, naming it. */
#include <dlfcn.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <nccl.h>
#include "kern_tp.h"

static struct {
    int ok;
    char why[200];
    ncclResult_t (*init_all)(ncclComm_t *, int, const int *);
    ncclResult_t (*destroy)(ncclComm_t);
    ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t,
                               ncclComm_t, cudaStream_t);
    ncclResult_t (*all_gather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t,
                               cudaStream_t);
    ncclResult_t (*group_start)(void);
    ncclResult_t (*group_end)(void);
    const char *(*error_string)(ncclResult_t);
} nc;
static pthread_once_t nc_once = PTHREAD_ONCE_INIT;

static void nc_load(void) {
    void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(nc.why, sizeof nc.why, "cannot open libnccl.so.2 (%.150s)", dlerror());
        return;
    }
#define SYM(field, name) (*(void **)&nc.field = dlsym(h, name))
    if (!SYM(init_all, "ncclCommInitAll") || !SYM(destroy, "ncclCommDestroy") ||
        !SYM(all_reduce, "ncclAllReduce") || !SYM(all_gather, "ncclAllGather") ||
        !SYM(group_start, "ncclGroupStart") || !SYM(group_end, "ncclGroupEnd") ||
        !SYM(error_string, "ncclGetErrorString")) {
        snprintf(nc.why, sizeof nc.why, "libnccl lacks a function kern_tp calls");
        return;
    }
#undef SYM
    nc.ok = 1;
}

static int nc_ready(eng_err *err) {
    pthread_once(&nc_once, nc_load);
    return nc.ok ? ENG_OK : eng_seterr(err, ENG_EUNSUPPORTED, "NCCL: %s", nc.why);
}

struct kern_tp {
    int n;
    ncclComm_t *comm;   /* [n]: rank r's, on device r */
};

static int nccl_fail(eng_err *err, ncclResult_t r, const char *what) {
    return eng_seterr(err, r == ncclSystemError ? ENG_EIO : ENG_EINVAL, "NCCL: %s: %s", what,
                      nc.error_string(r));
}

extern "C" int kern_tp_create(int n, kern_tp **out, eng_err *err) {
    *out = NULL;
    int rc = nc_ready(err);
    if (rc) return rc;
    int have = 0;
    cudaError_t e = cudaGetDeviceCount(&have);
    if (e != cudaSuccess)
        return eng_seterr(err, ENG_EIO, "NCCL: no CUDA devices: %s", cudaGetErrorString(e));
    if (n < 1 || n > have)
        return eng_seterr(err, ENG_EUNSUPPORTED, "NCCL: %d ranks asked, %d GPU%s visible", n, have,
                          have == 1 ? "" : "s");
    kern_tp *t = (kern_tp *)calloc(1, sizeof *t);
    int *devs = (int *)malloc((size_t)n * sizeof *devs);
    if (t) t->comm = (ncclComm_t *)calloc((size_t)n, sizeof *t->comm);
    if (!t || !devs || !t->comm) {
        if (t) free(t->comm);
        free(t);
        free(devs);
        return eng_seterr(err, ENG_ENOMEM, "NCCL: out of host memory");
    }
    for (int i = 0; i < n; i++) devs[i] = i;
    ncclResult_t r = nc.init_all(t->comm, n, devs);
    free(devs);
    if (r != ncclSuccess) {
        free(t->comm);
        free(t);
        return nccl_fail(err, r, "ncclCommInitAll");
    }
    t->n = n;
    *out = t;
    return ENG_OK;
}

extern "C" void kern_tp_destroy(kern_tp *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) if (t->comm[i]) nc.destroy(t->comm[i]);
    free(t->comm);
    free(t);
}

extern "C" int kern_tp_ranks(const kern_tp *t) { return t ? t->n : 0; }

/* t exists only once nc_ready succeeded */
static int check_rank(const kern_tp *t, int r, eng_err *err) {
    if (!t || r < 0 || r >= t->n)
        return eng_seterr(err, ENG_EINVAL, "NCCL: rank %d outside [0, %d)", r, t ? t->n : 0);
    return ENG_OK;
}

extern "C" int kern_tp_allreduce(kern_tp *t, int r, float *buf, size_t count, cudaStream_t s,
                                 eng_err *err) {
    int rc = check_rank(t, r, err);
    if (rc) return rc;
    ncclResult_t e = nc.all_reduce(buf, buf, count, ncclFloat32, ncclSum, t->comm[r], s);
    return e == ncclSuccess ? ENG_OK : nccl_fail(err, e, "ncclAllReduce");
}

extern "C" int kern_tp_allgather(kern_tp *t, int r, const float *send, float *recv, size_t count,
                                 cudaStream_t s, eng_err *err) {
    int rc = check_rank(t, r, err);
    if (rc) return rc;
    ncclResult_t e = nc.all_gather(send, recv, count, ncclFloat32, t->comm[r], s);
    return e == ncclSuccess ? ENG_OK : nccl_fail(err, e, "ncclAllGather");
}

__global__ void spread_kernel(const float *g, int rows, int share, int V, float *out) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * V) return;
    int row = (int)(i / V), v = (int)(i % V), q = v / share, j = v % share;
    out[i] = g[((size_t)q * rows + row) * share + j];
}

extern "C" int kern_tp_spread(cudaStream_t s, const float *g, int n, int rows, int share, int V,
                              float *out) {
    size_t total = (size_t)rows * V;
    if (!total) return 0;
    if (n * share < V) return (int)cudaErrorInvalidValue;
    spread_kernel<<<(unsigned)((total + 255) / 256), 256, 0, s>>>(g, rows, share, V, out);
    return (int)cudaGetLastError();
}

extern "C" int kern_tp_group_start(eng_err *err) {
    int rc = nc_ready(err);
    if (rc) return rc;
    ncclResult_t e = nc.group_start();
    return e == ncclSuccess ? ENG_OK : nccl_fail(err, e, "ncclGroupStart");
}

extern "C" int kern_tp_group_end(eng_err *err) {
    int rc = nc_ready(err);
    if (rc) return rc;
    ncclResult_t e = nc.group_end();
    return e == ncclSuccess ? ENG_OK : nccl_fail(err, e, "ncclGroupEnd");
}

static int sync_ranks(int n, cudaStream_t *st) {
    for (int r = 0; r < n; r++)
        if (cudaSetDevice(r) != cudaSuccess || cudaStreamSynchronize(st[r]) != cudaSuccess) return -1;
    return 0;
}

/* iters all-reduces of count floats, every rank's call grouped. */
static int enqueue_allreduces(kern_tp *t, float **buf, size_t count, cudaStream_t *st, int iters,
                              eng_err *err) {
    for (int i = 0; i < iters; i++) {
        int rc = kern_tp_group_start(err);
        for (int r = 0; r < t->n && !rc; r++) rc = kern_tp_allreduce(t, r, buf[r], count, st[r], err);
        if (!rc) rc = kern_tp_group_end(err);
        if (rc) return rc;
    }
    return ENG_OK;
}

extern "C" int kern_tp_time_allreduce(kern_tp *t, size_t count, int iters, double *eager_s,
                                      double *graph_s, eng_err *err) {
    if (!t || !count || iters < 1 || !eager_s || !graph_s)
        return eng_seterr(err, ENG_EINVAL, "NCCL: all-reduce timing: bad arguments");
    const int n = t->n;
    cudaStream_t *st = (cudaStream_t *)calloc(n, sizeof *st);
    float **buf = (float **)calloc(n, sizeof *buf);
    cudaGraph_t *g = (cudaGraph_t *)calloc(n, sizeof *g);
    cudaGraphExec_t *x = (cudaGraphExec_t *)calloc(n, sizeof *x);
    int rc = !st || !buf || !g || !x ? eng_seterr(err, ENG_ENOMEM, "NCCL: out of host memory") : 0;
    for (int r = 0; r < n && !rc; r++)
        if (cudaSetDevice(r) || cudaStreamCreateWithFlags(&st[r], cudaStreamNonBlocking) ||
            cudaMalloc((void **)&buf[r], count * 4) || cudaMemset(buf[r], 0, count * 4))
            rc = eng_seterr(err, ENG_EIO, "NCCL: all-reduce timing: CUDA set-up failed on device %d", r);
    /* warm-up, then eager */
    if (!rc && !(rc = enqueue_allreduces(t, buf, count, st, 10, err)) && sync_ranks(n, st))
        rc = eng_seterr(err, ENG_EIO, "NCCL: all-reduce timing: a stream failed");
    double t0 = eng_now_s();
    if (!rc && !(rc = enqueue_allreduces(t, buf, count, st, iters, err)) && sync_ranks(n, st))
        rc = eng_seterr(err, ENG_EIO, "NCCL: all-reduce timing: a stream failed");
    *eager_s = (eng_now_s() - t0) / iters;
    /* the same calls captured into one graph per rank, replayed once to warm */
    int captured = 0;
    if (!rc) {
        for (int r = 0; r < n; r++) {
            cudaSetDevice(r);
            cudaStreamBeginCapture(st[r], cudaStreamCaptureModeRelaxed);
        }
        rc = enqueue_allreduces(t, buf, count, st, iters, err);
        for (int r = 0; r < n; r++) {
            cudaSetDevice(r);
            int bad = cudaStreamEndCapture(st[r], &g[r]) != cudaSuccess ||
                      cudaGraphInstantiate(&x[r], g[r], 0) != cudaSuccess;
            if (bad && !rc) rc = eng_seterr(err, ENG_EIO, "NCCL: all-reduce graph capture failed");
        }
        captured = 1;
    }
    for (int k = 0; k < 2 && !rc; k++) {
        t0 = eng_now_s();
        for (int r = 0; r < n; r++) { cudaSetDevice(r); cudaGraphLaunch(x[r], st[r]); }
        if (sync_ranks(n, st)) rc = eng_seterr(err, ENG_EIO, "NCCL: all-reduce graph replay failed");
        *graph_s = (eng_now_s() - t0) / iters;
    }
    for (int r = 0; r < n && st; r++) {
        cudaSetDevice(r);
        if (captured && x[r]) cudaGraphExecDestroy(x[r]);
        if (captured && g[r]) cudaGraphDestroy(g[r]);
        if (buf && buf[r]) cudaFree(buf[r]);
        if (st[r]) cudaStreamDestroy(st[r]);
    }
    cudaGetLastError();
    free(st); free(buf); free(g); free(x);
    return rc;
}
