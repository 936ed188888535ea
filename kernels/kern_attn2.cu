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
/* From A2_WAVE_ROWS rows on, a block per (row, query head) already fills a
 * good part of the GPU: the grid is held to one wave (kern_attn_grid_splits)
 * and a row splits only past A2_SPAN_WAVE positions.  Measured on the H100,
 * 0.5B/1.5B, 300-2048 positions: 4-14% faster steps at 4-8 rows than
 * splitting every 256 positions (the partials and their merge cost more
 * than the parallelism they buy once the blocks cover the SMs). */
#define A2_WAVE_ROWS 4
#define A2_SPAN_WAVE 512

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
            const float *p = kv_row<HD>(kv, blk, kvh, slot) + li * 4;
            k[u] = *(const float4 *)p;
            v[u] = *(const float4 *)(p + v_off);
        } else {
            k[u] = make_float4(0.f, 0.f, 0.f, 0.f);
            v[u] = k[u];
        }
    }
}

/* After a block of (row r, kv head kvh) wrote its partial sums: the last
 * block of the kv head to finish (of active * per_kv) merges every head's
 * splits, in split order, and resets the counter. */
template <int HD>
__device__ void attn_merge_splits(const float *part, unsigned *counters, int r, int kvh, int G,
                                  int active, int per_kv, int splits, int n_heads,
                                  float *__restrict__ out, void *act, int act_mode, int R) {
    __shared__ float s_w[A2_GMAX][A2_MAX_SPLITS];
    __shared__ float s_L[A2_GMAX];
    __shared__ int s_last;
    const int tid = threadIdx.x, nt = blockDim.x, nkv = n_heads / G, width = n_heads * HD;
    __threadfence();
    __syncthreads();
    if (tid == 0)
        s_last = atomicAdd(&counters[r * nkv + kvh], 1u) == (unsigned)(active * per_kv) - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    const size_t stride = (size_t)n_heads * (HD + 2);
    const float *pr = part + ((size_t)r * splits * n_heads + (size_t)kvh * G) * (HD + 2);
    for (int idx = tid; idx < G * active; idx += nt) {
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
        s_L[h] = Ls;
    }
    __syncthreads();
    for (int idx = tid; idx < G * HD; idx += nt) {
        const int h = idx / HD, d = idx % HD, gh = kvh * G + h;
        float o = 0.f;
        for (int s2 = 0; s2 < active; s2++)
            o += __ldcg(pr + s2 * stride + (size_t)h * (HD + 2) + d) * s_w[h][s2];
        if (act) act_store(act, act_mode, R, width, r, gh * HD + d, o / s_L[h]);
        else out[(size_t)r * width + gh * HD + d] = o / s_L[h];
    }
    if (tid == 0) counters[r * nkv + kvh] = 0;
}

/* Positions [t0, t1) of split sp of a row with L positions: the context is
 * split only past span_min positions, and every active split is non-empty.
 * Returns 0 when split sp has nothing (sp >= active). */
__device__ __forceinline__ int attn_split_range(int L, int splits, int span_min, int sp, int *t0,
                                                int *t1, int *active) {
    const int want = min(splits, (L + span_min - 1) / span_min);
    const int span = (L + want - 1) / want;
    *active = (L + span - 1) / span;
    *t0 = sp * span;
    *t1 = min(L, *t0 + span);
    return sp < *active;
}

/* Asks L2 for the K and V rows of positions [t0, t1) while the previous
 * kernel drains (before the PDL wait).  Only a hint: the row of the step's
 * own position may still be written by that kernel, and L2 is where the
 * write lands, so nothing stale can be read. */
template <int HD>
__device__ __forceinline__ void attn_prefetch(const kern_kv &kv, const int *tbl, int kvh, int t0,
                                              int t1, size_t v_off) {
    constexpr int NL = HD >= 32 ? HD / 32 : 1;   /* 128-byte lines per row */
    for (int i = threadIdx.x; i < (t1 - t0) * 2 * NL; i += blockDim.x) {
        const int t = t0 + i / (2 * NL), w = i % (2 * NL);
        const float *p = kv_row<HD>(kv, tbl[t / kv.block_size], kvh, t % kv.block_size) +
                         (w >= NL ? v_off : 0) + (size_t)(w % NL) * 32;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
    }
}

/* After the NG lane groups (or warps) of a block left their sums in s_acc
 * and their running max / sum in s_m / s_l (and synced): merges them for
 * the block's nhb heads (query heads head0..) and writes the result of row
 * r, or, when the context is split (active > 1), split sp's partial sums
 * with their max and sum. */
template <int HD, int NG, int HS>
__device__ void attn_groups_out(const float (*s_acc)[HS][HD], const float (*s_m)[HS],
                                const float (*s_l)[HS], float (*s_wg)[HS], float *s_M,
                                float *s_L, int nhb, int head0, int r, int sp, int active,
                                int splits, int n_heads, float *__restrict__ out, void *act,
                                int act_mode, int R, float *__restrict__ part) {
    const int tid = threadIdx.x;
    if (tid < nhb) {
        const int h = tid;
        float M = -INFINITY, Ls = 0.f;
        for (int g = 0; g < NG; g++) M = fmaxf(M, s_m[g][h]);
        for (int g = 0; g < NG; g++) {
            float w = s_l[g][h] > 0.f ? expf(s_m[g][h] - M) : 0.f;
            s_wg[g][h] = w;
            Ls += s_l[g][h] * w;
        }
        s_M[h] = M;
        s_L[h] = Ls;
    }
    __syncthreads();
    const int width = n_heads * HD;
    for (int idx = tid; idx < nhb * HD; idx += blockDim.x) {
        const int h = idx / HD, d = idx % HD, gh = head0 + h;
        float o = 0.f;
#pragma unroll
        for (int g = 0; g < NG; g++) o += s_acc[g][h][d] * s_wg[g][h];
        if (active == 1) {
            if (act) act_store(act, act_mode, R, width, r, gh * HD + d, o / s_L[h]);
            else out[(size_t)r * width + gh * HD + d] = o / s_L[h];
        } else {
            float *pp = part + (((size_t)r * splits + sp) * n_heads + gh) * (HD + 2);
            pp[d] = o;
            if (d == 0) { pp[HD] = s_M[h]; pp[HD + 1] = s_L[h]; }
        }
    }
}

template <int HD, int HPB>
__global__ void __launch_bounds__(A2_THREADS)
attn2_kernel(const float *q, kern_kv kv, const kern_step *st, int n_heads,
             int splits, int span_min, float *__restrict__ out, void *act, int act_mode, int R,
             float *__restrict__ part, unsigned *counters) {
    /* a block per query head has registers to spare: twice the positions in flight */
    constexpr int NSL = HPB == 1 ? 2 * A2_SLOTS : A2_SLOTS;
    constexpr int LP = HD / 4, PPW = 32 / LP, NGRP = A2_WARPS * PPW, PER_IT = NGRP * NSL;
    __shared__ int s_blk[A2_BLKS];
    __shared__ __align__(16) float s_acc[NGRP][HPB][HD];   /* 32 KB for HPB 8 */
    __shared__ float s_m[NGRP][HPB], s_l[NGRP][HPB], s_wg[NGRP][HPB];
    __shared__ float s_M[A2_GMAX], s_Lb[A2_GMAX];
    pdl_launch();
    const int G = n_heads / kv.n_kv;
    /* HPB 1: a block per query head (blockIdx.y = kv head * G + head in group) */
    const int r = blockIdx.x, sp = blockIdx.z;
    const int kvh = HPB == 1 ? blockIdx.y / G : blockIdx.y, h0 = HPB == 1 ? blockIdx.y % G : 0;
    const int nhb = HPB == 1 ? 1 : G, per_kv = G / nhb;   /* heads of this block; blocks per kv head */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int sub = lane / LP, li = lane % LP, grp = warp * PPW + sub;

    /* before the wait: the step's positions and tables (from the host) */
    const int pos = st->pos[r], seq = st->row_seq[r];
    int t0, t1, active;
    if (!attn_split_range(pos + 1, splits, span_min, sp, &t0, &t1, &active)) return;
    const int *tbl = st->table + (size_t)seq * st->table_stride;
    const size_t v_off = (size_t)kv.n_kv * kv.block_size * HD;
    attn_prefetch<HD>(kv, tbl, kvh, t0, t1, v_off);
    pdl_wait();
    /* q for every head of this kv head, pre-scaled */
    const float scale = (float)rsqrt((double)HD);
    const float4 *qr = (const float4 *)(q + ((size_t)r * n_heads + (size_t)kvh * G + h0) * HD);
    float4 qv[HPB];
#pragma unroll
    for (int h = 0; h < HPB; h++) {
        float4 x = h < nhb ? __ldcg(qr + h * LP + li) : make_float4(0.f, 0.f, 0.f, 0.f);
        qv[h] = make_float4(x.x * scale, x.y * scale, x.z * scale, x.w * scale);
    }

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
    attn_groups_out<HD, NGRP, HPB>(s_acc, s_m, s_l, s_wg, s_M, s_Lb, nhb, kvh * G + h0, r, sp, active,
                                   splits, n_heads, out, act, act_mode, R, part);
    if (active == 1) return;

    attn_merge_splits<HD>(part, counters, r, kvh, G, active, per_kv, splits, n_heads, out, act,
                          act_mode, R);
}

/* Positions per block before variant 2 splits a row's context (span < 1:
 * the default for R rows). */
static int a2_span(int R, int span) {
    if (span > 0) return span;
    if (R > A2_PER_HEAD_ROWS) return A2_SPAN;
    return R >= A2_WAVE_ROWS ? A2_SPAN_WAVE : A2_SPAN_HEAD;
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
    span = a2_span(R, span);
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

/* ------------------------------------------------------------ variant 3 */
/* A lane per position, for many rows (kern_attention3).  Variant 2 gives a
 * position hd/4 lanes, so every score costs a 5-step shuffle reduction and
 * every lane repeats the softmax of every (position, head); at 32 rows that
 * made attention ~24 us a layer, 7x its bytes.  Here lane l of a warp owns
 * position c + l of a 32-position chunk: its scores for the G query heads
 * are plain FMA chains over its K row against q in shared memory
 * (broadcast reads), the chunk's softmax takes two warp reductions per
 * head, and P.V gives each lane hd/32 output dimensions of every head,
 * reading V rows whole (coalesced) with p from shared memory.  Same
 * contract, partial buffer and counters as variant 2. */
#define A3_WARPS 4
#define A3_THREADS (A3_WARPS * 32)
#define A3_SPAN 128        /* default positions per block: a chunk per warp */
#define A3_SPAN_FEW 64     /* for up to A2_PER_HEAD_ROWS rows (measured: 2-3% faster steps) */
#define A3_KR 16           /* K float4s in flight per lane */
#define A3_VR 8            /* V rows in flight per warp */

static int a3_span(int R, int span) {
    return span > 0 ? span : R <= A2_PER_HEAD_ROWS ? A3_SPAN_FEW : A3_SPAN;
}

template <int HD>
__global__ void __launch_bounds__(A3_THREADS)
attn3_kernel(const float *q, kern_kv kv, const kern_step *st, int n_heads,
             int splits, int span_min, float *__restrict__ out, void *act, int act_mode, int R,
             float *__restrict__ part, unsigned *counters) {
    constexpr int NV4 = HD / 4, DPL = HD / 32, KR = NV4 < A3_KR ? NV4 : A3_KR;
    __shared__ __align__(16) float s_q[A2_GMAX][HD];
    __shared__ __align__(16) float s_p[A3_WARPS][A2_GMAX][32];
    __shared__ __align__(16) float s_acc[A3_WARPS][A2_GMAX][HD];
    __shared__ float s_m[A3_WARPS][A2_GMAX], s_l[A3_WARPS][A2_GMAX], s_wg[A3_WARPS][A2_GMAX];
    __shared__ float s_M[A2_GMAX], s_Lb[A2_GMAX];
    __shared__ int s_blk[A2_BLKS];
    pdl_launch();
    pdl_wait();
    const int G = n_heads / kv.n_kv, r = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int pos = st->pos[r], seq = st->row_seq[r];
    int t0, t1, active;
    if (!attn_split_range(pos + 1, splits, span_min, sp, &t0, &t1, &active)) return;
    const int *tbl = st->table + (size_t)seq * st->table_stride;
    const size_t v_off = (size_t)kv.n_kv * kv.block_size * HD;
    const float scale = (float)rsqrt((double)HD);
    const float *qr = q + ((size_t)r * n_heads + (size_t)kvh * G) * HD;
    for (int i = tid; i < G * HD; i += A3_THREADS) s_q[i / HD][i % HD] = qr[i] * scale;

    float m[A2_GMAX], l[A2_GMAX], acc[A2_GMAX][DPL];
#pragma unroll
    for (int h = 0; h < A2_GMAX; h++) {
        m[h] = -INFINITY; l[h] = 0.f;
#pragma unroll
        for (int d = 0; d < DPL; d++) acc[h][d] = 0.f;
    }
    for (int c0 = t0; c0 < t1;) {
        const int b0 = c0 / kv.block_size;
        const int c1 = min(t1, (b0 + A2_BLKS) * kv.block_size);
        const int nb = (c1 - 1) / kv.block_size - b0 + 1;
        __syncthreads();   /* s_q written; s_blk free */
        for (int i = tid; i < nb; i += A3_THREADS) s_blk[i] = tbl[b0 + i];
        __syncthreads();
        for (int c = c0 + warp * 32; c < c1; c += A3_WARPS * 32) {
            const int t = c + lane, n = min(32, c1 - c);
            const bool ok = lane < n;
            const int tk = ok ? t : c;
            const float4 *kp = (const float4 *)kv_row<HD>(kv, s_blk[tk / kv.block_size - b0], kvh,
                                                          tk % kv.block_size);
            float s[A2_GMAX];
#pragma unroll
            for (int h = 0; h < A2_GMAX; h++) s[h] = 0.f;
#pragma unroll
            for (int d0 = 0; d0 < NV4; d0 += KR) {
                float4 kr[KR];
#pragma unroll
                for (int i = 0; i < KR; i++) kr[i] = __ldcg(kp + d0 + i);
#pragma unroll
                for (int h = 0; h < A2_GMAX; h++) {
                    if (h >= G) break;
                    const float4 *qh = (const float4 *)s_q[h] + d0;
                    float a = s[h];
#pragma unroll
                    for (int i = 0; i < KR; i++) {
                        const float4 x = qh[i];
                        a = fmaf(x.x, kr[i].x, a); a = fmaf(x.y, kr[i].y, a);
                        a = fmaf(x.z, kr[i].z, a); a = fmaf(x.w, kr[i].w, a);
                    }
                    s[h] = a;
                }
            }
            /* online softmax over the chunk, one head at a time */
#pragma unroll
            for (int h = 0; h < A2_GMAX; h++) {
                if (h >= G) break;
                const float mn = fmaxf(m[h], warp_max(ok ? s[h] : -INFINITY));
                const float cf = expf(m[h] - mn), p = ok ? expf(s[h] - mn) : 0.f;
                l[h] = l[h] * cf + warp_sum(p);
                m[h] = mn;
#pragma unroll
                for (int d = 0; d < DPL; d++) acc[h][d] *= cf;
                s_p[warp][h][lane] = p;
            }
            __syncwarp();
            /* P.V: row j of the chunk, lane's DPL dims of every head */
            for (int j0 = 0; j0 < n; j0 += A3_VR) {
                float vr[A3_VR][DPL];
#pragma unroll
                for (int u = 0; u < A3_VR; u++) {
                    const int tj = c + min(j0 + u, n - 1);
                    const float *vp = kv_row<HD>(kv, s_blk[tj / kv.block_size - b0], kvh,
                                                 tj % kv.block_size) + v_off + lane * DPL;
                    if constexpr (DPL == 4) {
                        float4 x = __ldcg((const float4 *)vp);
                        vr[u][0] = x.x; vr[u][1] = x.y; vr[u][2] = x.z; vr[u][3] = x.w;
                    } else if constexpr (DPL == 2) {
                        float2 x = __ldcg((const float2 *)vp);
                        vr[u][0] = x.x; vr[u][1] = x.y;
                    } else {
                        vr[u][0] = __ldcg(vp);
                    }
                }
#pragma unroll
                for (int u = 0; u < A3_VR; u++) {
                    if (j0 + u >= n) break;
#pragma unroll
                    for (int h = 0; h < A2_GMAX; h++) {
                        if (h >= G) break;
                        const float p = s_p[warp][h][j0 + u];
#pragma unroll
                        for (int d = 0; d < DPL; d++) acc[h][d] = fmaf(p, vr[u][d], acc[h][d]);
                    }
                }
            }
            __syncwarp();
        }
        c0 = c1;
    }

    /* merge the warps of this block */
#pragma unroll
    for (int h = 0; h < A2_GMAX; h++) {
        if (h >= G) break;
#pragma unroll
        for (int d = 0; d < DPL; d++) s_acc[warp][h][lane * DPL + d] = acc[h][d];
        if (lane == 0) { s_m[warp][h] = m[h]; s_l[warp][h] = l[h]; }
    }
    __syncthreads();
    attn_groups_out<HD, A3_WARPS, A2_GMAX>(s_acc, s_m, s_l, s_wg, s_M, s_Lb, G, kvh * G, r, sp, active,
                                           splits, n_heads, out, act, act_mode, R, part);
    if (active == 1) return;
    attn_merge_splits<HD>(part, counters, r, kvh, G, active, 1, splits, n_heads, out, act,
                          act_mode, R);
}

extern "C" int kern_attention3(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st,
                               int R, int n_heads, int splits, int span, float *out, void *act,
                               int act_mode, float *part, unsigned *counters, int pdl) {
    const int hd = kv.head_dim;
    if ((hd != 32 && hd != 64 && hd != 128) || kv.n_kv < 1 || n_heads % kv.n_kv ||
        n_heads / kv.n_kv > A2_GMAX)
        return kern_attention2(s, q, kv, st, R, n_heads, splits, span, out, act, act_mode, part,
                               counters, pdl);
    if (R < 1 || splits < 1 || splits > A2_MAX_SPLITS || kv.block_size < 1 ||
        (splits > 1 && (!part || !counters)))
        return (int)cudaErrorInvalidValue;
    span = a3_span(R, span);
    dim3 grid(R, kv.n_kv, splits);
#define A3_LAUNCH(H) klaunch(attn3_kernel<H>, grid, dim3(A3_THREADS), 0, s, pdl, q, kv, st, n_heads, \
                             splits, span, out, act, act_mode, R, part, counters)
    cudaError_t e = hd == 32 ? A3_LAUNCH(32) : hd == 64 ? A3_LAUNCH(64) : A3_LAUNCH(128);
#undef A3_LAUNCH
    return (int)e;
}

extern "C" int kern_attn_grid_splits(int variant, int R, int splits, int span, int max_len,
                                     int n_heads, int n_sms) {
    if (variant != 2 && variant != 3) return splits;
    if (variant == 2 && R >= A2_WAVE_ROWS && R <= A2_PER_HEAD_ROWS && n_heads > 0)
        splits = min(splits, max(1, n_sms / (R * n_heads)));
    span = variant == 3 ? a3_span(R, span) : a2_span(R, span);
    const int need = (max_len + span - 1) / span;
    int z = 1;
    while (z < need && z < splits) z *= 2;
    return z < splits ? z : splits;
}
