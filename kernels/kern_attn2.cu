/* kern_attn2.cu — decode-oriented attention over the paged f32 KV pool
 * (variant 2, the backend's default; BRISK_ATTN=1 selects kern_attn.cu).
 *
 * Why a second kernel: at batch 1 the first one costs ~21 us per layer for
 * ~300 KB of K/V, i.e. it is a chain of dependent memory round trips (q,
 * table, K, softmax in shared memory, V, partials, counter, merge), not
 * bytes.  This one shortens the chain:
 *   - q lives in registers (each lane holds its 4 dims of every GQA head of
 *     the block's kv head), loaded alongside pos / row_seq;
 *   - K and V of a position are loaded together (they do not depend on each
 *     other), 16 bytes per lane, hd/4 lanes per position, and the next
 *     iteration's K/V are in flight while the current one is computed;
 *   - every group of hd/4 lanes keeps its own online softmax in registers
 *     (scores reduced by shuffles, no shared-memory round trip per tile);
 *     groups are merged once, in shared memory, at the end;
 *   - the context is split over blocks only past `span` positions (default
 *     128), so short contexts need no partials, counter or merge; longer
 *     ones merge in the last block to finish, as in kern_attn.cu.
 * Same semantics as kern_attention (row r attends to 0..pos[r] of its
 * sequence; one kernel for decode and prefill rows) and the same partial
 * buffer and counters.  head_dim 16, 32, 64 or 128 (hd/4 lanes per
 * position, 32/(hd/4) positions per warp); other head sizes and more than 8
 * query heads per kv head fall back to kern_attention. */
#include <math.h>
#include "kern_common.cuh"

#define A2_WARPS 8
#define A2_THREADS (A2_WARPS * 32)
#define A2_GMAX 8          /* query heads per kv head */
#define A2_SLOTS 4         /* positions per lane group per iteration */
#define A2_BLKS 256        /* table entries staged in shared memory at once */
#define A2_MAX_SPLITS 64   /* = ATT_MAX_SPLITS: shares kern_attn_part_floats */
#define A2_SPAN 128        /* default: positions per block before splitting */
#define A2_PER_HEAD_ROWS 16   /* up to this many rows: a block per query head (32: 5% slower) */
#define A2_SPAN_HEAD 256   /* its default span (measured at ctx 147: no split beat 2-10) */

/* K (and V at +v_off) rows of NSL positions t = it + u*NGRP + grp, zero
 * where t >= t_end. */
template <int HD, int NGRP, int NSL>
__device__ __forceinline__ void a2_load(float4 *k, float4 *v, const kern_kv &kv, const int *s_blk,
                                        int b0, int kvh, int it, int grp, int li, int t_end,
                                        size_t v_off) {
#pragma unroll
    for (int u = 0; u < NSL; u++) {
        int t = it + u * NGRP + grp;
        if (t < t_end) {
            int blk = s_blk[t / kv.block_size - b0], slot = t % kv.block_size;
            const float *p = kv.base + (size_t)blk * kv.blk_stride +
                             ((size_t)kvh * kv.block_size + slot) * HD + li * 4;
            k[u] = *(const float4 *)p;
            v[u] = *(const float4 *)(p + v_off);
        } else {
            k[u] = make_float4(0.f, 0.f, 0.f, 0.f);
            v[u] = k[u];
        }
    }
}

template <int HD, int HPB>
__global__ void __launch_bounds__(A2_THREADS)
attn2_kernel(const float *__restrict__ q, kern_kv kv, const kern_step *st, int n_heads,
             int splits, int span_min, float *__restrict__ out, void *act, int act_mode, int R,
             float *__restrict__ part, unsigned *counters) {
    /* a block per query head has registers to spare: twice the positions in flight */
    constexpr int NSL = HPB == 1 ? 2 * A2_SLOTS : A2_SLOTS;
    constexpr int LP = HD / 4, PPW = 32 / LP, NGRP = A2_WARPS * PPW, PER_IT = NGRP * NSL;
    __shared__ int s_blk[A2_BLKS];
    __shared__ __align__(16) float s_acc[NGRP][HPB][HD];   /* 32 KB for HPB 8 */
    __shared__ float s_m[NGRP][HPB], s_l[NGRP][HPB], s_wg[NGRP][HPB];
    __shared__ float s_M[A2_GMAX], s_Lb[A2_GMAX];
    __shared__ float s_w[A2_GMAX][A2_MAX_SPLITS];
    __shared__ int s_last;
    pdl_launch();
    pdl_wait();
    const int G = n_heads / kv.n_kv;
    /* HPB 1: a block per query head (blockIdx.y = kv head * G + head in group) */
    const int r = blockIdx.x, sp = blockIdx.z;
    const int kvh = HPB == 1 ? blockIdx.y / G : blockIdx.y, h0 = HPB == 1 ? blockIdx.y % G : 0;
    const int nhb = HPB == 1 ? 1 : G, per_kv = G / nhb;   /* heads of this block; blocks per kv head */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int sub = lane / LP, li = lane % LP, grp = warp * PPW + sub;

    const int pos = st->pos[r], seq = st->row_seq[r];
    /* q for every head of this kv head, pre-scaled; independent of pos */
    const float scale = (float)rsqrt((double)HD);
    const float4 *qr = (const float4 *)(q + ((size_t)r * n_heads + (size_t)kvh * G + h0) * HD);
    float4 qv[HPB];
#pragma unroll
    for (int h = 0; h < HPB; h++) {
        float4 x = h < nhb ? qr[h * LP + li] : make_float4(0.f, 0.f, 0.f, 0.f);
        qv[h] = make_float4(x.x * scale, x.y * scale, x.z * scale, x.w * scale);
    }
    /* split only past span_min positions; every active block is non-empty */
    const int L = pos + 1;
    const int want = min(splits, (L + span_min - 1) / span_min);
    const int span = (L + want - 1) / want, active = (L + span - 1) / span;
    if (sp >= active) return;
    const int t0 = sp * span, t1 = min(L, t0 + span);
    const int *tbl = st->table + (size_t)seq * st->table_stride;
    const size_t v_off = (size_t)kv.n_kv * kv.block_size * HD;

    float m[HPB], l[HPB];
    float4 acc[HPB];
#pragma unroll
    for (int h = 0; h < HPB; h++) {
        m[h] = -INFINITY; l[h] = 0.f;
        acc[h] = make_float4(0.f, 0.f, 0.f, 0.f);
    }

    for (int c0 = t0; c0 < t1;) {
        /* a chunk: as many positions as A2_BLKS staged block ids cover */
        const int b0 = c0 / kv.block_size;
        const int c1 = min(t1, (b0 + A2_BLKS) * kv.block_size);
        const int nb = (c1 - 1) / kv.block_size - b0 + 1;
        __syncthreads();
        for (int i = tid; i < nb; i += A2_THREADS) s_blk[i] = tbl[b0 + i];
        __syncthreads();
        float4 k[NSL], v[NSL];
        a2_load<HD, NGRP, NSL>(k, v, kv, s_blk, b0, kvh, c0, grp, li, c1, v_off);
        for (int it = c0; it < c1; it += PER_IT) {
            float4 kn[NSL], vn[NSL];   /* next iteration in flight */
            a2_load<HD, NGRP, NSL>(kn, vn, kv, s_blk, b0, kvh, it + PER_IT, grp, li, c1, v_off);
            float s[NSL][HPB];
#pragma unroll
            for (int u = 0; u < NSL; u++)
#pragma unroll
                for (int h = 0; h < HPB; h++) {
                    float d = 0.f;
                    if (h < nhb) {
                        d = qv[h].x * k[u].x + qv[h].y * k[u].y + qv[h].z * k[u].z + qv[h].w * k[u].w;
#pragma unroll
                        for (int o = LP >> 1; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
                    }
                    s[u][h] = d;
                }
            bool ok[NSL];
#pragma unroll
            for (int u = 0; u < NSL; u++) ok[u] = it + u * NGRP + grp < c1;
#pragma unroll
            for (int h = 0; h < HPB; h++) {
                if (h >= nhb || !ok[0]) continue;   /* slot 0 empty: the group has nothing here */
                float mb = s[0][h];
#pragma unroll
                for (int u = 1; u < NSL; u++)
                    if (ok[u]) mb = fmaxf(mb, s[u][h]);
                const float mn = fmaxf(m[h], mb), c = expf(m[h] - mn);
                float4 a = make_float4(acc[h].x * c, acc[h].y * c, acc[h].z * c, acc[h].w * c);
                float sum = 0.f;
#pragma unroll
                for (int u = 0; u < NSL; u++) {
                    float p = ok[u] ? expf(s[u][h] - mn) : 0.f;
                    sum += p;
                    a.x += p * v[u].x; a.y += p * v[u].y; a.z += p * v[u].z; a.w += p * v[u].w;
                }
                acc[h] = a;
                l[h] = l[h] * c + sum;
                m[h] = mn;
            }
#pragma unroll
            for (int u = 0; u < NSL; u++) { k[u] = kn[u]; v[u] = vn[u]; }
        }
        c0 = c1;
    }

    /* merge the NGRP lane groups of this block */
#pragma unroll
    for (int h = 0; h < HPB; h++)
        if (h < nhb) {
            ((float4 *)s_acc[grp][h])[li] = acc[h];
            if (li == 0) { s_m[grp][h] = m[h]; s_l[grp][h] = l[h]; }
        }
    __syncthreads();
    if (tid < nhb) {
        const int h = tid;
        float M = -INFINITY, Ls = 0.f;
        for (int g = 0; g < NGRP; g++) M = fmaxf(M, s_m[g][h]);
        for (int g = 0; g < NGRP; g++) {
            float w = s_l[g][h] > 0.f ? expf(s_m[g][h] - M) : 0.f;
            s_wg[g][h] = w;
            Ls += s_l[g][h] * w;
        }
        s_M[h] = M;
        s_Lb[h] = Ls;
    }
    __syncthreads();
    const int width = n_heads * HD;
    for (int idx = tid; idx < nhb * HD; idx += A2_THREADS) {
        const int h = idx / HD, d = idx % HD, gh = kvh * G + h0 + h;
        float o = 0.f;
#pragma unroll
        for (int g = 0; g < NGRP; g++) o += s_acc[g][h][d] * s_wg[g][h];
        if (active == 1) {
            if (act) act_store(act, act_mode, R, width, r, gh * HD + d, o / s_Lb[h]);
            else out[(size_t)r * width + gh * HD + d] = o / s_Lb[h];
        } else {
            float *pp = part + (((size_t)r * splits + sp) * n_heads + gh) * (HD + 2);
            pp[d] = o;
            if (d == 0) { pp[HD] = s_M[h]; pp[HD + 1] = s_Lb[h]; }
        }
    }
    if (active == 1) return;

    /* the last block of the kv head to finish merges every head's splits, in
     * split order */
    __threadfence();
    __syncthreads();
    if (tid == 0)
        s_last = atomicAdd(&counters[r * kv.n_kv + kvh], 1u) == (unsigned)(active * per_kv) - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    const size_t stride = (size_t)n_heads * (HD + 2);
    const float *pr = part + ((size_t)r * splits * n_heads + (size_t)kvh * G) * (HD + 2);
    for (int idx = tid; idx < G * active; idx += A2_THREADS) {
        int h = idx / active, s2 = idx % active;
        s_w[h][s2] = __ldcg(pr + s2 * stride + (size_t)h * (HD + 2) + HD);
    }
    __syncthreads();
    if (tid < G) {
        const int h = tid;
        float M = -INFINITY, Ls = 0.f;
        for (int s2 = 0; s2 < active; s2++) M = fmaxf(M, s_w[h][s2]);
        for (int s2 = 0; s2 < active; s2++) {
            float w = expf(s_w[h][s2] - M);
            Ls += __ldcg(pr + s2 * stride + (size_t)h * (HD + 2) + HD + 1) * w;
            s_w[h][s2] = w;
        }
        s_Lb[h] = Ls;
    }
    __syncthreads();
    for (int idx = tid; idx < G * HD; idx += A2_THREADS) {
        const int h = idx / HD, d = idx % HD, gh = kvh * G + h;
        float o = 0.f;
        for (int s2 = 0; s2 < active; s2++)
            o += __ldcg(pr + s2 * stride + (size_t)h * (HD + 2) + d) * s_w[h][s2];
        if (act) act_store(act, act_mode, R, width, r, gh * HD + d, o / s_Lb[h]);
        else out[(size_t)r * width + gh * HD + d] = o / s_Lb[h];
    }
    if (tid == 0) counters[r * kv.n_kv + kvh] = 0;
}

extern "C" int kern_attention2(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st,
                               int R, int n_heads, int splits, int span, float *out, void *act,
                               int act_mode, float *part, unsigned *counters, int pdl) {
    const int hd = kv.head_dim;
    if (R < 1 || splits < 1 || splits > A2_MAX_SPLITS || kv.n_kv < 1 || kv.block_size < 1 ||
        n_heads % kv.n_kv || (splits > 1 && (!part || !counters)))
        return (int)cudaErrorInvalidValue;
    if ((hd != 16 && hd != 32 && hd != 64 && hd != 128) || n_heads / kv.n_kv > A2_GMAX)
        return kern_attention(s, q, kv, st, R, n_heads, splits, out, act, act_mode, part,
                              counters, pdl);
    /* Few rows: a block per query head, so a row's work spreads over G times
     * more multiprocessors (measured: one block per kv head is bound by its
     * own instruction latency at 2 warps per scheduler); K/V are then read
     * G times, from L2.  Many rows fill the GPU anyway and share K/V loads. */
    const bool per_head = R <= A2_PER_HEAD_ROWS;
    if (span < 1) span = per_head ? A2_SPAN_HEAD : A2_SPAN;
    dim3 grid(R, per_head ? n_heads : kv.n_kv, splits);
#define A2_LAUNCH(H, P) klaunch(attn2_kernel<H, P>, grid, dim3(A2_THREADS), 0, s, pdl, q, kv, st, \
                                  n_heads, splits, span, out, act, act_mode, R, part, counters)
#define A2_HD(P) (hd == 16 ? A2_LAUNCH(16, P) : hd == 32 ? A2_LAUNCH(32, P) \
                  : hd == 64 ? A2_LAUNCH(64, P) : A2_LAUNCH(128, P))
    cudaError_t e = per_head ? A2_HD(1) : A2_HD(A2_GMAX);
#undef A2_HD
#undef A2_LAUNCH
    return (int)e;
}
