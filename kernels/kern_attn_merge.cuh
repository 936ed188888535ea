/* kern_attn_merge.cuh — the split merge that every decode attention
 * variant ends with (flash-decoding): partial sums of a row's splits, in
 * the layout kern_attn_part_floats sizes ([R][splits][n_heads][hd + 2]:
 * sums, then max and sum of the softmax), folded in split order by the
 * last block to finish, so the result does not depend on timing. */
#pragma once
#include <math.h>
#include "kern_common.cuh"

#define ATTN_MERGE_GMAX 8      /* query heads per kv head */
#define ATTN_MERGE_SPLITS 64   /* splits per row */

/* After a block of (row r, kv head kvh) wrote its partial sums: the last
 * block of the kv head to finish (of active * per_kv) merges every head's
 * splits, in split order, and resets the counter.  HD > 0 fixes the head
 * size at compile time, else head_dim gives it. */
template <int HD>
__device__ void attn_merge_splits(const float *part, unsigned *counters, int r, int kvh, int G,
                                  int active, int per_kv, int splits, int n_heads,
                                  float *__restrict__ out, void *act, int act_mode, int R,
                                  int head_dim) {
    __shared__ float s_w[ATTN_MERGE_GMAX][ATTN_MERGE_SPLITS], s_ls[ATTN_MERGE_GMAX][ATTN_MERGE_SPLITS];
    __shared__ float s_L[ATTN_MERGE_GMAX];
    __shared__ int s_last;
    const int hd = HD > 0 ? HD : head_dim;
    const int tid = threadIdx.x, nt = blockDim.x, nkv = n_heads / G, width = n_heads * hd;
    __threadfence();
    __syncthreads();
    if (tid == 0)
        s_last = atomicAdd(&counters[r * nkv + kvh], 1u) == (unsigned)(active * per_kv) - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    /* This block alone runs now, at the kernel's tail: every split's max
     * and sum in one round of loads, the sums' loads several at a time. */
    const size_t stride = (size_t)n_heads * (hd + 2);
    const float *pr = part + ((size_t)r * splits * n_heads + (size_t)kvh * G) * (hd + 2);
    for (int idx = tid; idx < G * active; idx += nt) {
        int h = idx / active, s2 = idx % active;
        s_w[h][s2] = __ldcg(pr + s2 * stride + (size_t)h * (hd + 2) + hd);
        s_ls[h][s2] = __ldcg(pr + s2 * stride + (size_t)h * (hd + 2) + hd + 1);
    }
    __syncthreads();
    if (tid < G) {
        const int h = tid;
        float M = -INFINITY, Ls = 0.f;
        for (int s2 = 0; s2 < active; s2++) M = fmaxf(M, s_w[h][s2]);
        for (int s2 = 0; s2 < active; s2++) {
            float w = expf(s_w[h][s2] - M);
            Ls += s_ls[h][s2] * w;
            s_w[h][s2] = w;
        }
        s_L[h] = Ls;
    }
    __syncthreads();
    for (int idx = tid; idx < G * hd; idx += nt) {
        const int h = idx / hd, d = idx % hd, gh = kvh * G + h;
        const float *ps = pr + (size_t)h * (hd + 2) + d;
        float o = 0.f;
#pragma unroll 8
        for (int s2 = 0; s2 < active; s2++) o += __ldcg(ps + s2 * stride) * s_w[h][s2];
        if (act) act_store(act, act_mode, R, width, r, gh * hd + d, o / s_L[h]);
        else out[(size_t)r * width + gh * hd + d] = o / s_L[h];
    }
    if (tid == 0) counters[r * nkv + kvh] = 0;
}

