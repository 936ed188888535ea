/* kern_tp.cu — NCCL communicators and collectives for tensor parallelism
 * (kern_tp.h). */
#include <stdlib.h>
#include <nccl.h>
#include "kern_tp.h"

struct kern_tp {
    int n;
    ncclComm_t *comm;   /* [n]: rank r's, on device r */
};

static int nccl_fail(eng_err *err, ncclResult_t r, const char *what) {
    return eng_seterr(err, r == ncclSystemError ? ENG_EIO : ENG_EINVAL, "NCCL: %s: %s", what,
                      ncclGetErrorString(r));
}

extern "C" int kern_tp_create(int n, kern_tp **out, eng_err *err) {
    *out = NULL;
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
    ncclResult_t r = ncclCommInitAll(t->comm, n, devs);
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
    for (int i = 0; i < t->n; i++) if (t->comm[i]) ncclCommDestroy(t->comm[i]);
    free(t->comm);
    free(t);
}

extern "C" int kern_tp_ranks(const kern_tp *t) { return t ? t->n : 0; }

static int check_rank(const kern_tp *t, int r, eng_err *err) {
    if (!t || r < 0 || r >= t->n)
        return eng_seterr(err, ENG_EINVAL, "NCCL: rank %d outside [0, %d)", r, t ? t->n : 0);
    return ENG_OK;
}

extern "C" int kern_tp_allreduce(kern_tp *t, int r, float *buf, size_t count, cudaStream_t s,
                                 eng_err *err) {
    int rc = check_rank(t, r, err);
    if (rc) return rc;
    ncclResult_t e = ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, t->comm[r], s);
    return e == ncclSuccess ? ENG_OK : nccl_fail(err, e, "ncclAllReduce");
}

extern "C" int kern_tp_allgather(kern_tp *t, int r, const float *send, float *recv, size_t count,
                                 cudaStream_t s, eng_err *err) {
    int rc = check_rank(t, r, err);
    if (rc) return rc;
    ncclResult_t e = ncclAllGather(send, recv, count, ncclFloat32, t->comm[r], s);
    return e == ncclSuccess ? ENG_OK : nccl_fail(err, e, "ncclAllGather");
}

extern "C" int kern_tp_group_start(eng_err *err) {
    ncclResult_t e = ncclGroupStart();
    return e == ncclSuccess ? ENG_OK : nccl_fail(err, e, "ncclGroupStart");
}

extern "C" int kern_tp_group_end(eng_err *err) {
    ncclResult_t e = ncclGroupEnd();
    return e == ncclSuccess ? ENG_OK : nccl_fail(err, e, "ncclGroupEnd");
}
