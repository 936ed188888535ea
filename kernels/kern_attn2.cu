/* kern_attn2.cu — decode-oriented attention over the paged KV pool
 * (variant 2, the backend's default; BRISK_ATTN=1 selects kern_attn.cu).
 * Every kernel here is a template on the pool's element type T (float or
 * __nv_bfloat16, kern_kv.dtype) and computes in f32.
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
#include "kern_attn_merge.cuh"

#define A2_WARPS 8
#define A2_THREADS (A2_WARPS * 32)
#define A2_GMAX ATTN_MERGE_GMAX   /* query heads per kv head */
#define A2_SLOTS 4         /* positions per lane group per iteration */
#define A2_BLKS 256        /* table entries staged in shared memory at once */
#define A2_MAX_SPLITS ATTN_MERGE_SPLITS   /* as kern_attn.cu: shares kern_attn_part_floats */
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
 * where t >= t_end.  A position's block and slot (t / block_size, t %
 * block_size) come from the previous one's by adding NGRP's (dq, dr =
 * NGRP / block_size, NGRP % block_size): one division by the run-time
 * block size a call, not one a position. */
template <typename T, int HD, int NGRP, int NSL>
__device__ __forceinline__ void a2_load(float4 *k, float4 *v, const kern_kv &kv, const int *s_blk,
                                        int b0, int kvh, int it, int grp, int li, int t_end,
                                        size_t v_off, int dq, int dr) {
    int q = (it + grp) / kv.block_size, r = it + grp - q * kv.block_size;
#pragma unroll
    for (int u = 0; u < NSL; u++) {
        int t = it + u * NGRP + grp;
        if (u) {
            q += dq;
            r += dr;
            if (r >= kv.block_size) { r -= kv.block_size; q++; }
        }
        if (t < t_end) {
            int blk = s_blk[q - b0], slot = r;
            const T *p = kv_row<T, HD>(kv, blk, kvh, slot) + li * 4;
            k[u] = kv_ld4(p);
            v[u] = kv_ld4(p + v_off);
        } else {
            k[u] = make_float4(0.f, 0.f, 0.f, 0.f);
            v[u] = k[u];
        }
    }
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
template <typename T, int HD>
__device__ __forceinline__ void attn_prefetch(const kern_kv &kv, const int *tbl, int kvh, int t0,
                                              int t1, size_t v_off) {
    constexpr int LE = 128 / sizeof(T);              /* elements per 128-byte line */
    constexpr int NL = HD >= LE ? HD / LE : 1;       /* lines per row */
    for (int i = threadIdx.x; i < (t1 - t0) * 2 * NL; i += blockDim.x) {
        const int t = t0 + i / (2 * NL), w = i % (2 * NL);
        const T *p = kv_row<T, HD>(kv, tbl[t / kv.block_size], kvh, t % kv.block_size) +
                     (w >= NL ? v_off : 0) + (size_t)(w % NL) * LE;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
    }
}

/* After the ng (<= NG) lane groups (or warps) of a block left their sums in s_acc
 * and their running max / sum in s_m / s_l (and synced): merges them for
 * the block's nhb heads (query heads head0..) and writes the result of row
 * r, or, when the context is split (active > 1), split sp's partial sums
 * with their max and sum. */
template <int HD, int NG, int HS>
__device__ void attn_groups_out(const float (*s_acc)[HS][HD], const float (*s_m)[HS],
                                const float (*s_l)[HS], float (*s_wg)[HS], float *s_M,
                                float *s_L, int ng, int nhb, int head0, int r, int sp, int active,
                                int splits, int n_heads, float *__restrict__ out, void *act,
                                int act_mode, int R, float *__restrict__ part) {
    const int tid = threadIdx.x;
    if (tid < nhb) {
        const int h = tid;
        float M = -INFINITY, Ls = 0.f;
        for (int g = 0; g < ng; g++) M = fmaxf(M, s_m[g][h]);
        for (int g = 0; g < ng; g++) {
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
        for (int g = 0; g < NG; g++)
            if (g < ng) o += s_acc[g][h][d] * s_wg[g][h];
        if (active == 1) {
            /* KERN_ACT_Q16: HD a multiple of 16 and whole warps keep a
             * group in a half-warp */
            if (act) act_store(act, act_mode, R, width, r, gh * HD + d,
                               act_mode & KERN_ACT_Q16 ? act_q16(o / s_L[h]) : o / s_L[h]);
            else out[(size_t)r * width + gh * HD + d] = o / s_L[h];
        } else {
            float *pp = part + (((size_t)r * splits + sp) * n_heads + gh) * (HD + 2);
            pp[d] = o;
            if (d == 0) { pp[HD] = s_M[h]; pp[HD + 1] = s_L[h]; }
        }
    }
}

template <typename T, int HD, int HPB>
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
    const int dq = NGRP / kv.block_size, dr = NGRP % kv.block_size;   /* a2_load's step */
    attn_prefetch<T, HD>(kv, tbl, kvh, t0, t1, v_off);
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
        a2_load<T, HD, NGRP, NSL>(k, v, kv, s_blk, b0, kvh, c0, grp, li, c1, v_off, dq, dr);
        for (int it = c0; it < c1; it += PER_IT) {
            float4 kn[NSL], vn[NSL];   /* next iteration in flight */
            a2_load<T, HD, NGRP, NSL>(kn, vn, kv, s_blk, b0, kvh, it + PER_IT, grp, li, c1, v_off, dq, dr);
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
    attn_groups_out<HD, NGRP, HPB>(s_acc, s_m, s_l, s_wg, s_M, s_Lb, NGRP, nhb, kvh * G + h0, r, sp, active,
                                   splits, n_heads, out, act, act_mode, R, part);
    if (active == 1) return;

    attn_merge_splits<HD>(part, counters, r, kvh, G, active, per_kv, splits, n_heads, out, act,
                          act_mode, R, HD);
}

/* Positions per block before variant 2 splits a row's context (span < 1:
 * the default for R rows). */
static int a2_span(int R, int span) {
    if (span > 0) return span;
    if (R > A2_PER_HEAD_ROWS) return A2_SPAN;
    return R >= A2_WAVE_ROWS ? A2_SPAN_WAVE : A2_SPAN_HEAD;
}

template <typename T>
static cudaError_t a2_launch(cudaStream_t s, dim3 grid, bool per_head, int pdl, const float *q,
                             kern_kv kv, const kern_step *st, int n_heads, int splits, int span,
                             float *out, void *act, int act_mode, int R, float *part,
                             unsigned *counters) {
    const int hd = kv.head_dim;
#define A2_LAUNCH(H, P) klaunch(attn2_kernel<T, H, P>, grid, dim3(A2_THREADS), 0, s, pdl, q, kv, \
                                  st, n_heads, splits, span, out, act, act_mode, R, part, counters)
#define A2_HD(P) (hd == 16 ? A2_LAUNCH(16, P) : hd == 32 ? A2_LAUNCH(32, P) \
                  : hd == 64 ? A2_LAUNCH(64, P) : A2_LAUNCH(128, P))
    return per_head ? A2_HD(1) : A2_HD(A2_GMAX);
#undef A2_HD
#undef A2_LAUNCH
}

extern "C" int kern_attention2(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st,
                               int R, int n_heads, int splits, int span, float *out, void *act,
                               int act_mode, float *part, unsigned *counters, int pdl) {
    const int hd = kv.head_dim;
    if (R < 1 || splits < 1 || splits > A2_MAX_SPLITS || kv.n_kv < 1 || kv.block_size < 1 ||
        n_heads % kv.n_kv || (splits > 1 && (!part || !counters)) || kv.window ||
        (kv.dtype != KERN_F32 && kv.dtype != KERN_BF16))
        return (int)cudaErrorInvalidValue;   /* a sliding window: kern_attention */
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
    auto launch = kv.dtype == KERN_BF16 ? a2_launch<__nv_bfloat16> : a2_launch<float>;
    return (int)launch(s, grid, per_head, pdl, q, kv, st, n_heads, splits, span, out, act, act_mode,
                       R, part, counters);
}

/* ------------------------------------------------------------ variant 3 */
/* A lane per position and a warp per (query head, 32 positions), over K/V
 * chunks copied into shared memory at once (kern_attention3).  ncu at 32
 * rows (1.5B, 147 positions, H200): variant 2 and the first variant 3 (a
 * warp walking every head of its kv head, K and V loaded in rounds) took
 * ~25 us a layer for ~5 MB at one warp per scheduler, long dependent
 * chains in every warp.  Here a block of (row, kv head, split) has W x G
 * warps, each holding one head's scores, softmax and P.V over its 32
 * positions: the same work on G times more warps with short chains.  The
 * step's table entries are read and the block's rows asked of L2 before the
 * PDL wait (neither is written by the previous kernel); then every row of a
 * chunk is requested at once (cp.async) and the math reads shared memory
 * only.  K rows are padded by 16 bytes so the lanes' 16-byte reads of
 * different rows fall in different banks (a bf16 pool's rows are copied as
 * bf16 and converted as they are read).  A chunk is W x 32 positions (W
 * from the span, at most 32 / G and what shared memory holds); a block walks
 * its range chunk by chunk. */
#define A3_KPAD_BYTES 16
#define A3_WMAX 8          /* 32-position slices per chunk */
#define A3_SMEM_MAX (200 << 10)   /* dynamic shared memory for one chunk (static: ~17 KB) */
#define A3_SPAN 128        /* default positions per block before splitting, up to 16 rows */
#define A3_SPAN_MANY 256   /* from 17 rows (measured, 32 rows: 3-9% faster steps than 128 at
                              400-1000 positions, 2% slower at 147) */

/* Shared memory of one 32-position slice: K (padded) and V rows of eb-byte
 * elements. */
static size_t a3_slice_bytes(int hd, size_t eb) { return 32 * (2 * hd * eb + A3_KPAD_BYTES); }

/* Slices per chunk for positions-per-block span and G heads per kv head,
 * with nbuf chunk buffers in shared memory. */
static int a3_slices(int span, int G, int hd, size_t eb, int nbuf) {
    int w = (span + 31) / 32, cap = 32 / G;
    if (cap > A3_WMAX) cap = A3_WMAX;
    while (cap > 1 && (size_t)nbuf * cap * a3_slice_bytes(hd, eb) > A3_SMEM_MAX) cap--;
    return w < 1 ? 1 : w > cap ? cap : w;
}

/* The element offset (from kv.base) of the K row of position slot of
 * table block blk, kv head kvh (kv_row's address). */
template <int HD>
__device__ __forceinline__ long long a3_row_off(const kern_kv &kv, int blk, int kvh, int slot) {
    return (long long)blk * kv.blk_stride + ((long long)kvh * kv.block_size + slot) * HD;
}

/* Stages the K rows' offsets of positions [c0, c1) in s_off, a thread a
 * position: the copies then read a row's address instead of dividing by
 * the block size for every 16-byte piece. */
template <int HD>
__device__ __forceinline__ void a3_stage_rows(long long *s_off, const kern_kv &kv, const int *tbl,
                                              int kvh, int c0, int c1) {
    for (int j = threadIdx.x; j < c1 - c0; j += blockDim.x) {
        const int t = c0 + j;
        s_off[j] = a3_row_off<HD>(kv, tbl[t / kv.block_size], kvh, t % kv.block_size);
    }
}

/* Asks for the K and V rows of n positions (offsets in s_off) in 16-byte
 * pieces (K rows KS elements apart, V rows HD). */
template <typename T, int HD>
__device__ __forceinline__ void a3_copy_rows(T *s_k, T *s_v, const kern_kv &kv,
                                             const long long *s_off, int n, size_t v_off) {
    constexpr int E = 16 / sizeof(T), P = HD / E;   /* elements per piece, pieces per row */
    constexpr int KS = HD + A3_KPAD_BYTES / sizeof(T);
    const T *base = (const T *)kv.base;
    for (int i = threadIdx.x; i < n * 2 * P; i += blockDim.x) {
        const int j = i / (2 * P), w = i % (2 * P);
        const T *src = base + s_off[j];
        if (w < P) cp_async16(s_k + (size_t)j * KS + w * E, src + w * E);
        else cp_async16(s_v + (size_t)j * HD + (w - P) * E, src + v_off + (w - P) * E);
    }
}

/* The pipeline's step at chunk c over NB chunk buffers (variant 4: 2,
 * variant 5: A5_NBUF): chunk c + NB - 1 asked for by issue() when there is
 * one (more), a commit group every step (empty past the context), then
 * chunk c waited for and the block synced, after which chunk c's buffer is
 * read and every thread has issued chunk c + NB - 1. */
template <int NB, typename F>
__device__ __forceinline__ void a3_pipe_step(bool more, F issue) {
    if (more) issue();
    cp_async_commit();
    cp_async_wait<NB - 1>();
    __syncthreads();
}

/* A table entry read ahead: a thread's position t2 + threadIdx.x of chunk
 * c + NB ([t2, t3); NB buffers, variant 4: 2), read before chunk c's
 * arithmetic and staged (a3_put_row) after it, so that the load's latency
 * is under the arithmetic.  Its offset goes where chunk c's were: those
 * were last read when chunk c was issued, before a sync.  A block has at
 * least a chunk's positions of threads (variant 4: W x G warps of 32 for
 * W x 32 positions; variant 5: W warps for 16 W). */
struct a3_row { int blk, slot; };
__device__ __forceinline__ a3_row a3_get_row(const int *tbl, int bs, int t2, int t3) {
    a3_row x = {-1, 0};
    const int t = t2 + (int)threadIdx.x;
    if (t < t3) {
        x.blk = tbl[t / bs];
        x.slot = t % bs;
    }
    return x;
}
template <int HD>
__device__ __forceinline__ void a3_put_row(long long *s_off, const kern_kv &kv, int kvh, a3_row x) {
    if (x.blk >= 0) s_off[threadIdx.x] = a3_row_off<HD>(kv, x.blk, kvh, x.slot);
}

/* One warp's 32 positions (n of them valid) of one head against q in s_qh:
 * folds them into the running max m, sum l and output dims acc. */
template <typename T, int HD>
__device__ __forceinline__ void a3_slice(const T *s_k, const T *s_v, const float *s_qh,
                                         float *s_pw, int n, float &m, float &l,
                                         float (&acc)[HD / 32]) {
    constexpr int DPL = HD / 32, KS = HD + A3_KPAD_BYTES / sizeof(T);
    const int lane = threadIdx.x & 31;
    const bool ok = lane < n;
    const T *krow = s_k + (size_t)(ok ? lane : 0) * KS;
    const float4 *qh = (const float4 *)s_qh;
    float s0 = 0.f, s1 = 0.f;   /* two chains: half the FMA latency */
    if constexpr (sizeof(T) == 4) {
        const float4 *kr = (const float4 *)krow;
#pragma unroll 8
        for (int d4 = 0; d4 < HD / 4; d4 += 2) {
            const float4 k0 = kr[d4], x0 = qh[d4], k1 = kr[d4 + 1], x1 = qh[d4 + 1];
            s0 = fmaf(x0.x, k0.x, s0); s0 = fmaf(x0.y, k0.y, s0);
            s0 = fmaf(x0.z, k0.z, s0); s0 = fmaf(x0.w, k0.w, s0);
            s1 = fmaf(x1.x, k1.x, s1); s1 = fmaf(x1.y, k1.y, s1);
            s1 = fmaf(x1.z, k1.z, s1); s1 = fmaf(x1.w, k1.w, s1);
        }
    } else {   /* bf16: eight values per 16-byte read */
        const uint4 *kr = (const uint4 *)krow;
#pragma unroll 8
        for (int d8 = 0; d8 < HD / 8; d8++) {
            float k[8];
            bf16x8_to_f32(kr[d8], k);
            const float4 x0 = qh[2 * d8], x1 = qh[2 * d8 + 1];
            s0 = fmaf(x0.x, k[0], s0); s0 = fmaf(x0.y, k[1], s0);
            s0 = fmaf(x0.z, k[2], s0); s0 = fmaf(x0.w, k[3], s0);
            s1 = fmaf(x1.x, k[4], s1); s1 = fmaf(x1.y, k[5], s1);
            s1 = fmaf(x1.z, k[6], s1); s1 = fmaf(x1.w, k[7], s1);
        }
    }
    const float sc = s0 + s1;
    const float mn = fmaxf(m, warp_max(ok ? sc : -INFINITY));
    const float cf = expf(m - mn), p = ok ? expf(sc - mn) : 0.f;
    l = l * cf + warp_sum(p);
    m = mn;
#pragma unroll
    for (int d = 0; d < DPL; d++) acc[d] *= cf;
    s_pw[lane] = p;
    __syncwarp();
    const T *vb = s_v + lane * DPL;
#pragma unroll 4
    for (int j = 0; j < n; j++) {
        const float pj = s_pw[j];
        if constexpr (DPL == 4) {
            const float4 x = kv_ld4(vb + (size_t)j * HD);
            acc[0] = fmaf(pj, x.x, acc[0]); acc[1] = fmaf(pj, x.y, acc[1]);
            acc[2] = fmaf(pj, x.z, acc[2]); acc[3] = fmaf(pj, x.w, acc[3]);
        } else if constexpr (DPL == 2) {
            const float2 x = kv_ld2(vb + (size_t)j * HD);
            acc[0] = fmaf(pj, x.x, acc[0]); acc[1] = fmaf(pj, x.y, acc[1]);
        } else {
            acc[0] = fmaf(pj, kv_ld1(vb + (size_t)j * HD), acc[0]);
        }
    }
}

/* PIPE (variant 4): two chunk buffers, the next chunk's rows in flight
 * while the current one is computed; else one, loaded then computed. */
template <typename T, int HD, bool PIPE>
__global__ void __launch_bounds__(1024)
attn3_kernel(const float *q, kern_kv kv, const kern_step *st, int n_heads,
             int splits, int span_min, float *__restrict__ out, void *act, int act_mode, int R,
             float *__restrict__ part, unsigned *counters) {
    constexpr int DPL = HD / 32, KS = HD + A3_KPAD_BYTES / sizeof(T), NB = PIPE ? 2 : 1;
    extern __shared__ __align__(16) float a3_dyn[];
    __shared__ __align__(16) float s_q[A2_GMAX][HD];
    __shared__ float s_p[A3_WMAX * A2_GMAX][32];
    __shared__ float s_m[A3_WMAX][A2_GMAX], s_l[A3_WMAX][A2_GMAX], s_wg[A3_WMAX][A2_GMAX];
    __shared__ float s_M[A2_GMAX], s_Lb[A2_GMAX];
    __shared__ long long s_off[NB][A3_WMAX * 32];
    pdl_launch();
    const int G = n_heads / kv.n_kv, r = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, nt = blockDim.x;
    const int W = nt / (32 * G), CH = W * 32;
    const int h = warp / W, cw = warp % W;   /* this warp's query head and 32-position slice */
    /* buffer b: K rows (padded) then V rows of CH positions */
    T *const s_kb = (T *)a3_dyn;
    const size_t buf = (size_t)CH * (KS + HD);

    /* before the wait: positions and tables come from the host */
    const int pos = st->pos[r], seq = st->row_seq[r];
    int t0, t1, active;
    if (!attn_split_range(pos + 1, splits, span_min, sp, &t0, &t1, &active)) return;
    const int *tbl = st->table + (size_t)seq * st->table_stride;
    const size_t v_off = (size_t)kv.n_kv * kv.block_size * HD;
    a3_stage_rows<HD>(s_off[0], kv, tbl, kvh, t0, min(t1, t0 + CH));
    if (PIPE && t0 + CH < t1) a3_stage_rows<HD>(s_off[NB - 1], kv, tbl, kvh, t0 + CH, min(t1, t0 + 2 * CH));
    /* pipelined: only the first two chunks (the pipeline covers the rest;
     * a one-wave grid's whole ranges would overflow L2) */
    attn_prefetch<T, HD>(kv, tbl, kvh, t0, PIPE ? min(t1, t0 + 2 * CH) : t1, v_off);
    __syncthreads();
    pdl_wait();
    a3_copy_rows<T, HD>(s_kb, s_kb + (size_t)CH * KS, kv, s_off[0], min(t1, t0 + CH) - t0, v_off);
    if (PIPE) cp_async_commit();
    const float scale = (float)rsqrt((double)HD);
    const float *qr = q + ((size_t)r * n_heads + (size_t)kvh * G) * HD;
    for (int i = tid; i < G * HD; i += nt) s_q[i / HD][i % HD] = __ldcg(qr + i) * scale;

    float m = -INFINITY, l = 0.f, acc[DPL];
#pragma unroll
    for (int d = 0; d < DPL; d++) acc[d] = 0.f;
    for (int c0 = t0, c = 0; c0 < t1; c0 += CH, c++) {
        const int c1 = min(t1, c0 + CH);
        T *s_k = s_kb + (PIPE ? (size_t)(c & 1) * buf : 0), *s_v = s_k + (size_t)CH * KS;
        a3_row nx = {-1, 0};
        if (PIPE) {
            /* the next chunk into the other buffer (free since the last
             * sync; its rows were staged before it) */
            a3_pipe_step<NB>(c1 < t1, [&] {
                T *n_k = s_kb + (size_t)((c + 1) & 1) * buf;
                a3_copy_rows<T, HD>(n_k, n_k + (size_t)CH * KS, kv, s_off[(c + 1) & 1],
                                    min(t1, c1 + CH) - c1, v_off);
            });
            nx = a3_get_row(tbl, kv.block_size, c1 + CH, min(t1, c1 + 2 * CH));
        } else {
            if (c0 > t0) {   /* the next chunk: smem is free after the sync below */
                a3_stage_rows<HD>(s_off[0], kv, tbl, kvh, c0, c1);
                __syncthreads();
                a3_copy_rows<T, HD>(s_k, s_v, kv, s_off[0], c1 - c0, v_off);
            }
            cp_async_wait_all();
            __syncthreads();
        }
        const int n = min(32, c1 - c0 - cw * 32);   /* this warp's positions */
        if (n > 0)
            a3_slice<T, HD>(s_k + (size_t)cw * 32 * KS, s_v + (size_t)cw * 32 * HD, s_q[h],
                            s_p[warp], n, m, l, acc);
        a3_put_row<HD>(s_off[c & 1], kv, kvh, nx);
        __syncthreads();   /* this buffer (and s_off) free for the chunk after next */
    }

    /* merge the slices of each head (their sums where the chunks were: W x
     * A2_GMAX x HD floats, less than a chunk's bytes in either type) */
    float (*s_acc)[A2_GMAX][HD] = (float (*)[A2_GMAX][HD])a3_dyn;
    const int lane = tid & 31;
#pragma unroll
    for (int d = 0; d < DPL; d++) s_acc[cw][h][lane * DPL + d] = acc[d];
    if (lane == 0) { s_m[cw][h] = m; s_l[cw][h] = l; }
    __syncthreads();
    attn_groups_out<HD, A3_WMAX, A2_GMAX>(s_acc, s_m, s_l, s_wg, s_M, s_Lb, W, G, kvh * G, r, sp,
                                          active, splits, n_heads, out, act, act_mode, R, part);
    if (active == 1) return;
    attn_merge_splits<HD>(part, counters, r, kvh, G, active, 1, splits, n_heads, out, act,
                          act_mode, R, HD);
}

static int a3_span(int R, int span) {
    return span > 0 ? span : R <= A2_PER_HEAD_ROWS ? A3_SPAN : A3_SPAN_MANY;
}

/* Variant 4's default span: chunks of 64 positions (2 slices a head), so
 * that more blocks fit a multiprocessor; measured ahead of 128 at 8 and 16
 * rows on both pools but one case (NOTES.md v25). */
#define A4_SPAN 64
/* Variant 4 is taken (kern_attn_long) up to this many rows (measured ahead
 * of variant 3 at 8, 16, 32 and 64 rows x 4,000 positions, NOTES.md v25). */
#define A4_MAX_ROWS 64

template <typename T, int HD, bool PIPE>
static cudaError_t a3_shape(int span, int G, int *threads, size_t *smem) {
    const int nbuf = PIPE ? 2 : 1, W = a3_slices(span, G, HD, sizeof(T), nbuf);
    *threads = W * G * 32;
    *smem = (size_t)nbuf * W * a3_slice_bytes(HD, sizeof(T));
    /* above 48 KB of dynamic shared memory needs the opt-in, per kernel */
    return ksmem_limit(attn3_kernel<T, HD, PIPE>, A3_SMEM_MAX);
}

template <typename T, int HD, bool PIPE>
static cudaError_t a3_launch(cudaStream_t s, dim3 grid, int pdl, const float *q, kern_kv kv,
                             const kern_step *st, int n_heads, int splits, int span, float *out,
                             void *act, int act_mode, int R, float *part, unsigned *counters) {
    int threads;
    size_t smem;
    cudaError_t e = a3_shape<T, HD, PIPE>(span, n_heads / kv.n_kv, &threads, &smem);
    if (e != cudaSuccess) return e;
    return klaunch(attn3_kernel<T, HD, PIPE>, grid, dim3(threads), smem, s, pdl, q, kv, st, n_heads,
                   splits, span, out, act, act_mode, R, part, counters);
}

/* Blocks of variant 4's launch a multiprocessor holds (at least 1). */
template <typename T, int HD>
static int a4_blocks_per_sm(int span, int G) {
    int threads, n = 0;
    size_t smem;
    if (a3_shape<T, HD, true>(span, G, &threads, &smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn3_kernel<T, HD, true>, threads, smem) !=
            cudaSuccess)
        n = 1;
    return n < 1 ? 1 : n;
}

static bool a3_heads_ok(const kern_kv &kv, int n_heads) {
    const int hd = kv.head_dim;
    return (hd == 32 || hd == 64 || hd == 128) && kv.n_kv >= 1 && n_heads % kv.n_kv == 0 &&
           n_heads / kv.n_kv <= A2_GMAX;
}

/* F's instance for the pool's element type (bf: bf16) and head size hd,
 * and any further template arguments. */
#define A3_PICK(F, bf, hd, ...)                                                                     \
    ((hd) == 32   ? ((bf) ? F<__nv_bfloat16, 32, ##__VA_ARGS__> : F<float, 32, ##__VA_ARGS__>)      \
     : (hd) == 64 ? ((bf) ? F<__nv_bfloat16, 64, ##__VA_ARGS__> : F<float, 64, ##__VA_ARGS__>)      \
                  : ((bf) ? F<__nv_bfloat16, 128, ##__VA_ARGS__> : F<float, 128, ##__VA_ARGS__>))

static int a3_run(bool pipe, cudaStream_t s, const float *q, kern_kv kv, const kern_step *st, int R,
                  int n_heads, int splits, int span, float *out, void *act, int act_mode, float *part,
                  unsigned *counters, int pdl) {
    if (kv.window) return (int)cudaErrorInvalidValue;   /* a sliding window: kern_attention */
    if (!a3_heads_ok(kv, n_heads))
        return kern_attention2(s, q, kv, st, R, n_heads, splits, span, out, act, act_mode, part,
                               counters, pdl);
    if (R < 1 || splits < 1 || splits > A2_MAX_SPLITS || kv.block_size < 1 ||
        (splits > 1 && (!part || !counters)) || (kv.dtype != KERN_F32 && kv.dtype != KERN_BF16))
        return (int)cudaErrorInvalidValue;
    span = pipe ? (span > 0 ? span : A4_SPAN) : a3_span(R, span);
    dim3 grid(R, kv.n_kv, splits);
    const bool bf = kv.dtype == KERN_BF16;
    typedef cudaError_t (*lfn)(cudaStream_t, dim3, int, const float *, kern_kv, const kern_step *, int,
                               int, int, float *, void *, int, int, float *, unsigned *);
    const lfn launch = pipe ? A3_PICK(a3_launch, bf, kv.head_dim, true)
                            : A3_PICK(a3_launch, bf, kv.head_dim, false);
    return (int)launch(s, grid, pdl, q, kv, st, n_heads, splits, span, out, act, act_mode, R, part,
                       counters);
}

extern "C" int kern_attention3(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st,
                               int R, int n_heads, int splits, int span, float *out, void *act,
                               int act_mode, float *part, unsigned *counters, int pdl) {
    return a3_run(false, s, q, kv, st, R, n_heads, splits, span, out, act, act_mode, part, counters,
                  pdl);
}

extern "C" int kern_attention4(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st,
                               int R, int n_heads, int splits, int span, float *out, void *act,
                               int act_mode, float *part, unsigned *counters, int pdl) {
    return a3_run(true, s, q, kv, st, R, n_heads, splits, span, out, act, act_mode, part, counters,
                  pdl);
}

/* Splits for one wave of bps blocks a multiprocessor: every (row, kv head)
 * gets the same share of the slots, and no more splits than span-position
 * pieces of max_len need, rounded up to a power of two (few graph shapes). */
static int wave_splits(int bps, int R, int n_kv, int span, int max_len, int n_sms) {
    const int fit = max(1, bps * n_sms / (R * n_kv));
    const int need = (max_len + span - 1) / span;
    int z = 1;
    while (z < need && z < A2_MAX_SPLITS) z *= 2;
    return min(min(fit, z), A2_MAX_SPLITS);
}

extern "C" int kern_attn4_splits(int R, kern_kv kv, int n_heads, int span, int max_len, int n_sms) {
    if (R < 1 || n_sms < 1) return 1;
    if (!a3_heads_ok(kv, n_heads)) return 0;   /* kern_attention2 serves: its own splits */
    span = span > 0 ? span : A4_SPAN;
    const int bps = A3_PICK(a4_blocks_per_sm, kv.dtype == KERN_BF16, kv.head_dim)(span, n_heads / kv.n_kv);
    return wave_splits(bps, R, kv.n_kv, span, max_len, n_sms);
}

extern "C" int kern_attn_long(int R, kern_kv kv, int n_heads, int span, int max_len, int n_sms) {
    if (R < 2 || R > A4_MAX_ROWS || kv.window || !a3_heads_ok(kv, n_heads)) return 0;
    const int s3 = kern_attn_grid_splits(3, R, kern_attn_splits(R, kv.n_kv, n_sms), span, max_len,
                                         n_heads, n_sms);
    return max_len > s3 * a3_span(R, span);
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

/* ------------------------------------------------------------------ variant 5
 * Variant 4's pipeline over a bf16 pool with the products on tensor cores.
 * Variant 4's lanes spend G x HD x 2 FMAs, with their conversions and
 * shared-memory loads, on each position and kv head, so its instruction
 * issue, not the bytes, sets its pace.  Here a warp takes 16 positions of a
 * chunk for all G <= 8 heads of its kv head at once:
 *   S^T (16 positions x 8 heads) = K q^T     (mma m16n8k16: A = K rows by
 *                                             ldmatrix, B = q in registers)
 *   O^T (HD x 8 heads)          += V^T P^T   (A = V rows by ldmatrix.trans,
 *                                             B = P moved across the warp
 *                                             by movmatrix.trans)
 * Exactness: K and V are bf16 already; q and P are f32 and enter as three
 * bf16 parts each (x = hi + mid + lo holds all 24 bits of x's
 * significand), every product of bf16 values is exact in the f32
 * accumulators, so only the order of the f32 sums differs from the other
 * variants (tested with their tolerance).  The online softmax runs in f32
 * per head as in variant 3, with expf.
 * Shape: a block's fixed costs (q's parts, staging the first chunks, the
 * partial sums and the split merge) are paid once per split, so the
 * default is the widest block, 8 warps (chunks of 128 positions), with the
 * fewest splits that fill a wave; its two buffers take 139 KB (one block a
 * multiprocessor).  Narrower blocks keep three buffers. */
#define A5_WARPS 8          /* default warps a block (W): chunks of 16 W positions */
#define A5_MIN_ROWS 8       /* variant 5 replaces variant 4 for these rows (kern_attn5_takes) */
#define A5_MAX_ROWS 64
/* Chunk buffers (NB - 1 chunks in flight while one is computed) for W
 * warps: 3 for 2-4 warps, 2 from 6 (measured, NOTES.md v27: at 8 warps
 * three buffers take 209 KB and were 20% slower; 6 warps with two, 104 KB,
 * leave room for two blocks a multiprocessor). */
#define A5_NBUF(W) ((W) >= 6 ? 2 : 3)
#define A5_PAD 8                /* bf16 of padding a K/V row: ldmatrix's 8 rows on distinct banks */

/* The three bf16 parts of x (x = hi + mid + lo exactly). */
__device__ __forceinline__ void a5_split(float x, __nv_bfloat16 &h, __nv_bfloat16 &m, __nv_bfloat16 &l) {
    h = __float2bfloat16_rn(x);
    const float r = x - __bfloat162float(h);
    m = __float2bfloat16_rn(r);
    l = __float2bfloat16_rn(r - __bfloat162float(m));
}
__device__ __forceinline__ uint32_t a5_pack(__nv_bfloat16 lo_col, __nv_bfloat16 hi_col) {
    return (uint32_t)__bfloat16_as_ushort(lo_col) | ((uint32_t)__bfloat16_as_ushort(hi_col) << 16);
}
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                        uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                          uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}
__device__ __forceinline__ uint32_t movm_t(uint32_t x) {
    uint32_t y;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(y) : "r"(x));
    return y;
}

/* K rows then V rows (CH each, HD + A5_PAD apart) of nrow positions
 * (offsets in s_off) by cp.async; rows past nrow up to the next 16 are
 * zeroed (a warp's masked positions must not carry NaN or infinity into
 * P V). */
template <int HD, int CH, int NT>
__device__ __forceinline__ void a5_copy_rows(__nv_bfloat16 *dst, const kern_kv &kv,
                                             const long long *s_off, int nrow, size_t v_off) {
    constexpr int P = HD / 8, RS = HD + A5_PAD;   /* 16-byte pieces a row; row stride */
    static_assert(NT % (2 * P) == 0, "a thread copies the same piece of every row it takes");
    const int nfill = min(CH, (nrow + 15) & ~15);
    const int w = threadIdx.x % (2 * P), isv = w >= P, pc = w % P;
    __nv_bfloat16 *d = dst + (isv ? (size_t)CH * RS : 0) + pc * 8;
    const __nv_bfloat16 *src = (const __nv_bfloat16 *)kv.base + (isv ? v_off : 0) + pc * 8;
    for (int j = threadIdx.x / (2 * P); j < nfill; j += NT / (2 * P)) {
        if (j < nrow) cp_async16(d + (size_t)j * RS, src + s_off[j]);
        else *(uint4 *)(d + (size_t)j * RS) = make_uint4(0u, 0u, 0u, 0u);
    }
}

/* One warp's 16 positions (n of them valid) of a chunk: folds them into
 * the running max m, sum l (this lane's share) and O^T fragments o of
 * heads 2 tg and 2 tg + 1. */
template <int HD>
__device__ __forceinline__ void a5_tile(const __nv_bfloat16 *s_k, const __nv_bfloat16 *s_v,
                                        const uint32_t (&qf)[3][HD / 16][2], int n, float (&m)[2],
                                        float (&l)[2], float (&o)[HD / 16][4]) {
    constexpr int KT = HD / 16, RS = HD + A5_PAD;
    const int lane = threadIdx.x & 31, g = lane >> 2;
    /* S^T = K q^T: ldmatrix x4 gives K rows 0-7 / 8-15 x dims 0-7 / 8-15 */
    /* an accumulator a part of q: three chains of KT mma, not one of 3 KT */
    float sp[3][4] = {};
    const uint32_t ka = (uint32_t)__cvta_generic_to_shared(
        s_k + (size_t)((lane & 7) + ((lane >> 3) & 1) * 8) * RS + (lane >> 4) * 8);
#pragma unroll
    for (int ks = 0; ks < KT; ks++) {
        uint32_t a0, a1, a2, a3;
        ldsm_x4(ka + ks * 32, a0, a1, a2, a3);
#pragma unroll
        for (int p = 0; p < 3; p++) mma_bf16(sp[p], a0, a1, a2, a3, qf[p][ks][0], qf[p][ks][1]);
    }
    float s[4];
#pragma unroll
    for (int i = 0; i < 4; i++) s[i] = sp[0][i] + (sp[1][i] + sp[2][i]);
    /* s[0], s[1]: position g, heads 2tg, 2tg+1; s[2], s[3]: position g + 8 */
    const bool v0 = g < n, v1 = g + 8 < n;
    float p[4];
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        float mx = fmaxf(v0 ? s[hh] : -INFINITY, v1 ? s[2 + hh] : -INFINITY);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
        const float mn = fmaxf(m[hh], mx);   /* finite: position 0 of the tile is valid */
        const float cf = expf(m[hh] - mn);
        p[hh] = v0 ? expf(s[hh] - mn) : 0.f;
        p[2 + hh] = v1 ? expf(s[2 + hh] - mn) : 0.f;
        l[hh] = l[hh] * cf + p[hh] + p[2 + hh];
        m[hh] = mn;
#pragma unroll
        for (int mt = 0; mt < KT; mt++) { o[mt][hh] *= cf; o[mt][2 + hh] *= cf; }
    }
    /* P^T as B fragments: (position, head) pairs transposed across the warp */
    uint32_t pb[3][2];
    {
        __nv_bfloat16 h[4], md[4], lo[4];
#pragma unroll
        for (int i = 0; i < 4; i++) a5_split(p[i], h[i], md[i], lo[i]);
        pb[0][0] = movm_t(a5_pack(h[0], h[1]));   pb[0][1] = movm_t(a5_pack(h[2], h[3]));
        pb[1][0] = movm_t(a5_pack(md[0], md[1])); pb[1][1] = movm_t(a5_pack(md[2], md[3]));
        pb[2][0] = movm_t(a5_pack(lo[0], lo[1])); pb[2][1] = movm_t(a5_pack(lo[2], lo[3]));
    }
    /* O^T += V^T P^T: ldmatrix x4 trans gives V^T dims 0-7 / 8-15 x positions 0-7 / 8-15 */
    const uint32_t va = (uint32_t)__cvta_generic_to_shared(
        s_v + (size_t)((lane & 7) + (lane >> 4) * 8) * RS + ((lane >> 3) & 1) * 8);
#pragma unroll
    for (int mt = 0; mt < KT; mt++) {
        uint32_t a0, a1, a2, a3;
        ldsm_x4_t(va + mt * 32, a0, a1, a2, a3);
#pragma unroll
        for (int q3 = 0; q3 < 3; q3++) mma_bf16(o[mt], a0, a1, a2, a3, pb[q3][0], pb[q3][1]);
    }
}

template <int HD, int W, int NB>
__global__ void __launch_bounds__(W * 32)
attn5_kernel(const float *q, kern_kv kv, const kern_step *st, int n_heads, int splits, int span_min,
             float *__restrict__ out, void *act, int act_mode, int R, float *__restrict__ part,
             unsigned *counters) {
    constexpr int KT = HD / 16, RS = HD + A5_PAD, CH = W * 16;   /* CH: positions a chunk */
    constexpr size_t BUF = (size_t)2 * CH * RS;   /* a chunk buffer: K rows, V rows */
    extern __shared__ __align__(16) float a5_dyn[];
    __shared__ float s_m[W][A2_GMAX], s_l[W][A2_GMAX], s_wg[W][A2_GMAX];
    __shared__ float s_M[A2_GMAX], s_Lb[A2_GMAX];
    __shared__ long long s_off[NB][CH];
    __shared__ __align__(16) float s_q[A2_GMAX][HD];
    pdl_launch();
    const int G = n_heads / kv.n_kv, r = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tg = lane & 3;
    __nv_bfloat16 *const s_buf = (__nv_bfloat16 *)a5_dyn;

    /* before the wait: positions and tables come from the host */
    const int pos = st->pos[r], seq = st->row_seq[r];
    int t0, t1, active;
    if (!attn_split_range(pos + 1, splits, span_min, sp, &t0, &t1, &active)) return;
    const int *tbl = st->table + (size_t)seq * st->table_stride;
    const size_t v_off = (size_t)kv.n_kv * kv.block_size * HD;
    /* chunk positions [cb, min(t1, cb + CH)) into buffer b (offsets in s_off[b]) */
    auto copy = [&](int b, int cb) {
        a5_copy_rows<HD, CH, W * 32>(s_buf + (size_t)b * BUF, kv, s_off[b], min(t1, cb + CH) - cb, v_off);
    };
#pragma unroll
    for (int b = 0, cb = t0; b < NB; b++, cb += CH)
        if (cb < t1) a3_stage_rows<HD>(s_off[b], kv, tbl, kvh, cb, min(t1, cb + CH));
    attn_prefetch<__nv_bfloat16, HD>(kv, tbl, kvh, t0, min(t1, t0 + NB * CH), v_off);
    __syncthreads();
    pdl_wait();
    /* chunks 0 .. NB - 2 asked for, a commit group each (empty past t1) */
#pragma unroll
    for (int b = 0, cb = t0; b < NB - 1; b++, cb += CH) {
        if (cb < t1) copy(b, cb);
        cp_async_commit();
    }
    /* q of head g (zero past G) times 1/sqrt(HD), as B fragments in three
     * parts.  The G rows are read once a block, 16 bytes a thread, into
     * s_q: every warp needs all of them, and a warp's own 4-byte loads of
     * them (8 warps x 32 a lane) were the largest share of the kernel's
     * stall samples after the wait (ncu, NOTES.md v28). */
    uint32_t qf[3][KT][2];
    {
        const float scale = (float)rsqrt((double)HD);
        const float4 *qb = (const float4 *)(q + ((size_t)r * n_heads + (size_t)kvh * G) * HD);
        for (int i = tid; i < A2_GMAX * HD / 4; i += W * 32) {
            float4 v = i < G * HD / 4 ? __ldcg(qb + i) : make_float4(0.f, 0.f, 0.f, 0.f);
            v.x *= scale; v.y *= scale; v.z *= scale; v.w *= scale;
            ((float4 *)s_q)[i] = v;
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < KT; ks++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int d = ks * 16 + j * 8 + tg * 2;
                const float2 x = *(const float2 *)&s_q[g][d];
                const float x0 = x.x, x1 = x.y;
                __nv_bfloat16 h0, m0, l0, h1, m1, l1;
                a5_split(x0, h0, m0, l0);
                a5_split(x1, h1, m1, l1);
                qf[0][ks][j] = a5_pack(h0, h1);
                qf[1][ks][j] = a5_pack(m0, m1);
                qf[2][ks][j] = a5_pack(l0, l1);
            }
    }

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[KT][4];
#pragma unroll
    for (int mt = 0; mt < KT; mt++) o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.f;
    for (int c0 = t0, c = 0; c0 < t1; c0 += CH, c++) {
        const int c1 = min(t1, c0 + CH);
        const __nv_bfloat16 *s_k = s_buf + (size_t)(c % NB) * BUF, *s_v = s_k + (size_t)CH * RS;
        /* chunk c + NB - 1 into the buffer chunk c - 1 had (free since the
         * last sync), then chunk c waited for: NB - 1 chunks in flight */
        const int cn = c0 + (NB - 1) * CH;
        a3_pipe_step<NB>(cn < t1, [&] { copy((c + NB - 1) % NB, cn); });
        /* chunk c + NB's table entries, staged where chunk c's were */
        const a3_row nx = a3_get_row(tbl, kv.block_size, c0 + NB * CH, min(t1, c0 + (NB + 1) * CH));
        const int n = min(16, c1 - c0 - warp * 16);
        if (n > 0) a5_tile<HD>(s_k + (size_t)warp * 16 * RS, s_v + (size_t)warp * 16 * RS, qf, n, m, l, o);
        a3_put_row<HD>(s_off[c % NB], kv, kvh, nx);
        __syncthreads();   /* this buffer free for chunk c + NB */
    }

    /* the warps' sums where the chunks were (W x A2_GMAX x HD floats) */
    float (*s_acc)[A2_GMAX][HD] = (float (*)[A2_GMAX][HD])a5_dyn;
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        float ls = l[hh];
        ls += __shfl_xor_sync(0xffffffffu, ls, 4);
        ls += __shfl_xor_sync(0xffffffffu, ls, 8);
        ls += __shfl_xor_sync(0xffffffffu, ls, 16);
        const int hd_ = 2 * tg + hh;
        if (hd_ < G) {
#pragma unroll
            for (int mt = 0; mt < KT; mt++) {
                s_acc[warp][hd_][mt * 16 + g] = o[mt][hh];
                s_acc[warp][hd_][mt * 16 + g + 8] = o[mt][2 + hh];
            }
            if (g == 0) { s_m[warp][hd_] = m[hh]; s_l[warp][hd_] = ls; }
        }
    }
    __syncthreads();
    attn_groups_out<HD, W, A2_GMAX>(s_acc, s_m, s_l, s_wg, s_M, s_Lb, W, G, kvh * G, r,
                                           sp, active, splits, n_heads, out, act, act_mode, R, part);
    if (active == 1) return;
    attn_merge_splits<HD>(part, counters, r, kvh, G, active, 1, splits, n_heads, out, act, act_mode,
                          R, HD);
}

template <int HD, int W>
static size_t a5_smem() { return (size_t)A5_NBUF(W) * 2 * W * 16 * (HD + A5_PAD) * sizeof(__nv_bfloat16); }

template <int HD, int W>
static cudaError_t a5_attr() {
    return ksmem_limit(attn5_kernel<HD, W, A5_NBUF(W)>, a5_smem<HD, W>());
}

template <int HD, int W>
static cudaError_t a5_launch(cudaStream_t s, dim3 grid, int pdl, const float *q, kern_kv kv,
                             const kern_step *st, int n_heads, int splits, int span, float *out,
                             void *act, int act_mode, int R, float *part, unsigned *counters) {
    const cudaError_t e = a5_attr<HD, W>();
    if (e != cudaSuccess) return e;
    return klaunch(attn5_kernel<HD, W, A5_NBUF(W)>, grid, dim3(W * 32), a5_smem<HD, W>(), s, pdl, q, kv, st,
                   n_heads, splits, span, out, act, act_mode, R, part, counters);
}

template <int HD, int W>
static int a5_blocks_per_sm() {
    int n = 0;
    if (a5_attr<HD, W>() != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn5_kernel<HD, W, A5_NBUF(W)>, W * 32,
                                                      a5_smem<HD, W>()) != cudaSuccess)
        n = 1;
    return n < 1 ? 1 : n;
}

static bool a5_ok(const kern_kv &kv, int n_heads) {
    return kv.dtype == KERN_BF16 && !kv.window && a3_heads_ok(kv, n_heads);
}

/* Warps a block for *span (chunks of 16 W positions): A5_WARPS for the
 * default span, 2 up to 32 positions, 4 below 96, 6 below 128, else 8;
 * a default span becomes a chunk.  The launch and its split count both
 * take their shape from here. */
static int a5_shape(int *span) {
    const int s = *span, w = s <= 0 ? A5_WARPS : s <= 32 ? 2 : s < 96 ? 4 : s < 128 ? 6 : 8;
    if (s <= 0) *span = 16 * w;
    return w;
}

/* F's instance for head size hd and W warps (a5_shape). */
#define A5_PICK_W(F, h, w) ((w) == 2 ? F<h, 2> : (w) == 4 ? F<h, 4> : (w) == 6 ? F<h, 6> : F<h, 8>)
#define A5_PICK(F, hd, w) \
    ((hd) == 32 ? A5_PICK_W(F, 32, w) : (hd) == 64 ? A5_PICK_W(F, 64, w) : A5_PICK_W(F, 128, w))

extern "C" int kern_attention5(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st,
                               int R, int n_heads, int splits, int span, float *out, void *act,
                               int act_mode, float *part, unsigned *counters, int pdl) {
    if (!a5_ok(kv, n_heads))
        return kern_attention4(s, q, kv, st, R, n_heads, splits, span, out, act, act_mode, part,
                               counters, pdl);
    if (R < 1 || splits < 1 || splits > A2_MAX_SPLITS || kv.block_size < 1 ||
        (splits > 1 && (!part || !counters)))
        return (int)cudaErrorInvalidValue;
    const int w = a5_shape(&span);
    return (int)A5_PICK(a5_launch, kv.head_dim, w)(s, dim3(R, kv.n_kv, splits), pdl, q, kv, st, n_heads,
                                                   splits, span, out, act, act_mode, R, part, counters);
}

extern "C" int kern_attn5_splits(int R, kern_kv kv, int n_heads, int span, int max_len, int n_sms) {
    if (!a5_ok(kv, n_heads)) return kern_attn4_splits(R, kv, n_heads, span, max_len, n_sms);
    if (R < 1 || n_sms < 1) return 1;
    const int w = a5_shape(&span);
    return wave_splits(A5_PICK(a5_blocks_per_sm, kv.head_dim, w)(), R, kv.n_kv, span, max_len, n_sms);
}

extern "C" int kern_attn5_takes(int R, kern_kv kv, int n_heads) {
    return a5_ok(kv, n_heads) && R >= A5_MIN_ROWS && R <= A5_MAX_ROWS;
}
