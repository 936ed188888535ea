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
     * and sum in one round of loads, the sums' loads 16 at a time, two
     * dims a load (each round is a round trip to L2: the tail's length).
     * Blocks have whole warps. */
    const size_t stride = (size_t)n_heads * (hd + 2);
    const float *pr = part + ((size_t)r * splits * n_heads + (size_t)kvh * G) * (hd + 2);
    for (int idx = tid; idx < G * active; idx += nt) {
        int h = idx / active, s2 = idx % active;
        s_w[h][s2] = __ldcg(pr + s2 * stride + (size_t)h * (hd + 2) + hd);
        s_ls[h][s2] = __ldcg(pr + s2 * stride + (size_t)h * (hd + 2) + hd + 1);
    }
    __syncthreads();
    /* a warp a head: the splits' common max and weights, lanes over splits */
    static_assert(ATTN_MERGE_SPLITS <= 64, "two splits a lane");
    for (int h = tid >> 5, lane = tid & 31; h < G; h += nt >> 5) {
        const bool a0 = lane < active, a1 = lane + 32 < active;
        const float m0 = a0 ? s_w[h][lane] : -INFINITY, m1 = a1 ? s_w[h][lane + 32] : -INFINITY;
        float M = fmaxf(m0, m1);
#pragma unroll
        for (int o = 16; o; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
        const float w0 = a0 ? expf(m0 - M) : 0.f, w1 = a1 ? expf(m1 - M) : 0.f;
        float Ls = (a0 ? s_ls[h][lane] * w0 : 0.f) + (a1 ? s_ls[h][lane + 32] * w1 : 0.f);
#pragma unroll
        for (int o = 16; o; o >>= 1) Ls += __shfl_xor_sync(0xffffffffu, Ls, o);
        if (a0) s_w[h][lane] = w0;
        if (a1) s_w[h][lane + 32] = w1;
        if (lane == 0) s_L[h] = Ls;
    }
    __syncthreads();
    /* two dims a thread (hd and the part strides are even, so 8-byte loads) */
    const int h2 = hd / 2;
    for (int idx = tid; idx < G * h2; idx += nt) {
        const int h = idx / h2, d = 2 * (idx % h2), gh = kvh * G + h;
        const float2 *ps = (const float2 *)(pr + (size_t)h * (hd + 2) + d);
        float o0 = 0.f, o1 = 0.f;
#pragma unroll 16
        for (int s2 = 0; s2 < active; s2++) {
            const float2 v = __ldcg(ps + s2 * (stride / 2));
            o0 += v.x * s_w[h][s2];
            o1 += v.y * s_w[h][s2];
        }
        if (act) {
            float v0 = o0 / s_L[h], v1 = o1 / s_L[h];
            /* KERN_ACT_Q16: hd a multiple of 16 puts a group's 8 pairs in
             * an aligned group of 8 lanes (nt is whole warps) */
            if (act_mode & KERN_ACT_Q16) act_q16_pair(v0, v1);
            act_store(act, act_mode, R, width, r, gh * hd + d, v0);
            act_store(act, act_mode, R, width, r, gh * hd + d + 1, v1);
        } else {
            out[(size_t)r * width + gh * hd + d] = o0 / s_L[h];
            out[(size_t)r * width + gh * hd + d + 1] = o1 / s_L[h];
        }
    }
    if (tid == 0) counters[r * nkv + kvh] = 0;
}

