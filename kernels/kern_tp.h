/* kern_tp.h — NCCL between the GPUs of one host, the communication layer of
 * tensor parallelism on CUDA (eng_backend_cuda_tp_create): one communicator
 * per rank, rank r on device r.  Built only where nccl.h is found (the
 * Makefile then defines BRISK_NCCL and compiles kern_tp.cu); libnccl itself
 * is opened at run time, so a missing library refuses a split and nothing
 * else.  test_nccl checks it, bench_nccl times all-reduces at the sizes a
 * split model's steps send.
 *
 * Every call of one collective must be made by every rank, in the same
 * order: from one thread per rank, or from one thread for all ranks between
 * kern_tp_group_start and kern_tp_group_end.  The calls only enqueue work on
 * the given stream, so a CUDA graph captures them like kernels. */
#ifndef KERN_TP_H
#define KERN_TP_H
#include <stddef.h>
#include <cuda_runtime_api.h>
#ifdef __cplusplus
extern "C" {
#endif
#include "eng.h"

typedef struct kern_tp kern_tp;

/* n ranks on devices 0 .. n-1 (ENG_EUNSUPPORTED naming both counts when
 * fewer GPUs are visible). */
int  kern_tp_create(int n, kern_tp **out, eng_err *err);
void kern_tp_destroy(kern_tp *t);
int  kern_tp_ranks(const kern_tp *t);

/* Rank r: buf (count floats on device r) becomes the sum of every rank's
 * buf, in place. */
int  kern_tp_allreduce(kern_tp *t, int r, float *buf, size_t count, cudaStream_t s,
                       eng_err *err);
/* Rank r: its count floats at send go to recv + r * count on every rank
 * (recv holds n * count floats). */
int  kern_tp_allgather(kern_tp *t, int r, const float *send, float *recv, size_t count,
                       cudaStream_t s, eng_err *err);
/* Vocabulary-parallel logits put together: g holds n ranks' blocks of
 * [rows][share] (rank q's columns are vocabulary ids q * share + j), out
 * gets [rows][V], ids past V (the last rank's padding) left out. */
int  kern_tp_spread(cudaStream_t s, const float *g, int n, int rows, int share, int V, float *out);
/* Benchmarks: the time of one all-reduce of count floats on every rank
 * (buffers of its own, iters calls after 10 to warm up), enqueued one by one
 * (*eager_s) and replayed from a CUDA graph of the iters calls (*graph_s),
 * as a decode step's graph replays them. */
int  kern_tp_time_allreduce(kern_tp *t, size_t count, int iters, double *eager_s,
                            double *graph_s, eng_err *err);
/* One thread calling for several ranks brackets the calls with these. */
int  kern_tp_group_start(eng_err *err);
int  kern_tp_group_end(eng_err *err);

#ifdef __cplusplus
}
#endif
#endif
