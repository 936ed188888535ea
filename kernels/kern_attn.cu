/* kern_attn.cu — attention over the paged KV pool (f32 or bf16 elements,
 * f32 arithmetic).
 *
 * One block per (row, kv head, split).  A row at position p attends to
 * positions 0..p of its own sequence (p - window + 1..p in a sliding-window
 * layer, kv.window > 0), so one kernel serves decode rows and
 * prefill rows alike (the batch's keys are written before it runs, which
 * makes prefill causal within the batch).  The block keeps the G query heads
 * that share its kv head (GQA) in shared memory, walks its positions in
 * tiles of 64 with an online softmax, and either writes the normalised output
 * (one split) or its partial sums (flash-decoding: long contexts and small
 * batches spread over many blocks; a row uses at most one split per 16
 * positions); the last block of a (row, kv head) to finish merges the
 * splits, in split order, so no second kernel is needed and the result does
 * not depend on timing. */
#include <math.h>
#include "kern_common.cuh"
#include "kern_attn_merge.cuh"

#define ATT_THREADS 128
#define ATT_TILE 64
#define ATT_GMAX ATTN_MERGE_GMAX
#define ATT_MAX_SPLITS ATTN_MERGE_SPLITS
#define ATT_MIN_SPAN 16   /* a split gets at least this many positions */

/* Key row of position t; s_blk holds the block ids of the current tile,
 * the first being block b0 of the sequence. */
template <typename T>
__device__ __forceinline__ const T *kv_key(const kern_kv &kv, const int *s_blk, int b0, int kvh,
                                           int t) {
    int blk = s_blk[t / kv.block_size - b0], slot = t % kv.block_size;
    return kv_row<T>(kv, blk, kvh, slot);
}

/* T: the pool's element type (float or __nv_bfloat16). */
template <typename T>
__global__ void __launch_bounds__(ATT_THREADS)
attn_kernel(const float *q, kern_kv kv, const kern_step *st, int n_heads,
            int splits, float *__restrict__ out, void *act, int act_mode, int R,
            float *__restrict__ part, unsigned *counters) {
    extern __shared__ float sm[];
    __shared__ float s_m[ATT_GMAX], s_l[ATT_GMAX], s_scale[ATT_GMAX];
    __shared__ int s_blk[ATT_TILE + 1];
    pdl_launch();
    pdl_wait();
    const int r = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int hd = kv.head_dim, G = n_heads / kv.n_kv, d4n = hd >> 2;
    float *s_q = sm, *s_p = s_q + G * hd, *s_red = s_p + G * ATT_TILE;

    const int pos = st->pos[r], seq = st->row_seq[r];
    const int first = kv.window > 0 && pos >= kv.window ? pos - kv.window + 1 : 0;
    /* a short context uses fewer of the splits: the rest return at once */
    const int L = pos + 1 - first, active = min(splits, (L + ATT_MIN_SPAN - 1) / ATT_MIN_SPAN);
    if (sp >= active) return;
    const int span = (L + active - 1) / active;
    const int t0 = first + sp * span, t1 = min(pos + 1, t0 + span);
    const int *tbl = st->table + (size_t)seq * st->table_stride;
    const float scale = (float)rsqrt((double)hd);
    const size_t v_off = (size_t)kv.n_kv * kv.block_size * hd;

    const float *qr = q + ((size_t)r * n_heads + (size_t)kvh * G) * hd;
    for (int i = tid; i < G * hd; i += ATT_THREADS) s_q[i] = qr[i] * scale;
    if (tid < ATT_GMAX) { s_m[tid] = -INFINITY; s_l[tid] = 0.f; }

    const int LP = d4n < 32 ? d4n : 32, PPW = 32 / LP, VPL = d4n / LP;
    const int sub = lane / LP, li = lane % LP;
    const int ngroups = ATT_THREADS / d4n, grp = tid / d4n, d4 = tid % d4n;
    float4 acc[ATT_GMAX];
#pragma unroll
    for (int h = 0; h < ATT_GMAX; h++) acc[h] = make_float4(0.f, 0.f, 0.f, 0.f);
    __syncthreads();

    for (int tile = t0; tile < t1; tile += ATT_TILE) {
        const int n = min(ATT_TILE, t1 - tile);
        /* the tile's block ids, so no K/V load waits on a table load */
        const int b0 = tile / kv.block_size, nbt = (tile + n - 1) / kv.block_size - b0 + 1;
        for (int i = tid; i < nbt; i += ATT_THREADS) s_blk[i] = tbl[b0 + i];
        __syncthreads();
        /* scores: LP lanes per position, PPW positions per warp per round,
         * two rounds' keys loaded at once */
        for (int base = warp * PPW; base < n; base += 8 * PPW) {
            float a[2][ATT_GMAX];
            const T *kp[2];
            bool ok[2];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int i = base + u * 4 * PPW + sub;
                ok[u] = i < n;
                kp[u] = ok[u] ? kv_key<T>(kv, s_blk, b0, kvh, tile + i) : NULL;
#pragma unroll
                for (int h = 0; h < ATT_GMAX; h++) a[u][h] = 0.f;
            }
            for (int v = 0; v < VPL; v++) {
                float4 k4[2];
#pragma unroll
                for (int u = 0; u < 2; u++)
                    k4[u] = ok[u] ? kv_ld4(kp[u] + (v * LP + li) * 4) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
                for (int h = 0; h < ATT_GMAX; h++)
                    if (h < G) {
                        float4 q4 = ((const float4 *)s_q)[h * d4n + v * LP + li];
#pragma unroll
                        for (int u = 0; u < 2; u++)
                            a[u][h] += q4.x * k4[u].x + q4.y * k4[u].y + q4.z * k4[u].z + q4.w * k4[u].w;
                    }
            }
#pragma unroll
            for (int u = 0; u < 2; u++) {
#pragma unroll
                for (int h = 0; h < ATT_GMAX; h++)
                    if (h < G)
                        for (int o = LP >> 1; o > 0; o >>= 1)
                            a[u][h] += __shfl_xor_sync(0xffffffffu, a[u][h], o);
                int i = base + u * 4 * PPW + sub;
                if (ok[u] && li == 0)
#pragma unroll
                    for (int h = 0; h < ATT_GMAX; h++)
                        if (h < G) s_p[h * ATT_TILE + i] = a[u][h];
            }
        }
        __syncthreads();
        /* online softmax: one warp per head */
        for (int h = warp; h < G; h += ATT_THREADS / 32) {
            float mx = -INFINITY;
            for (int i = lane; i < n; i += 32) mx = fmaxf(mx, s_p[h * ATT_TILE + i]);
            mx = warp_max(mx);
            float m_old = s_m[h], m_new = fmaxf(m_old, mx), sum = 0.f;
            for (int i = lane; i < n; i += 32) {
                float p = expf(s_p[h * ATT_TILE + i] - m_new);
                s_p[h * ATT_TILE + i] = p;
                sum += p;
            }
            sum = warp_sum(sum);
            if (lane == 0) {
                float c = expf(m_old - m_new);
                s_scale[h] = c;
                s_l[h] = s_l[h] * c + sum;
                s_m[h] = m_new;
            }
        }
        __syncthreads();
        /* P.V: thread (grp, d4) owns 4 output dims of every head */
#pragma unroll
        for (int h = 0; h < ATT_GMAX; h++)
            if (h < G) {
                float c = s_scale[h];
                acc[h].x *= c; acc[h].y *= c; acc[h].z *= c; acc[h].w *= c;
            }
        for (int i = grp; i < n; i += 4 * ngroups) {   /* four positions' values in flight */
            float4 v4[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int ii = i + u * ngroups;
                v4[u] = ii < n ? kv_ld4(kv_key<T>(kv, s_blk, b0, kvh, tile + ii) + v_off + d4 * 4)
                               : make_float4(0.f, 0.f, 0.f, 0.f);
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int ii = i + u * ngroups;
                if (ii >= n) break;
#pragma unroll
                for (int h = 0; h < ATT_GMAX; h++)
                    if (h < G) {
                        float p = s_p[h * ATT_TILE + ii];
                        acc[h].x += p * v4[u].x; acc[h].y += p * v4[u].y;
                        acc[h].z += p * v4[u].z; acc[h].w += p * v4[u].w;
                    }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int h = 0; h < ATT_GMAX; h++)
        if (h < G) ((float4 *)s_red)[(grp * G + h) * d4n + d4] = acc[h];
    __syncthreads();
    const int width = n_heads * hd;
    for (int idx = tid; idx < G * hd; idx += ATT_THREADS) {
        int h = idx / hd, d = idx % hd, gh = kvh * G + h;
        float o = 0.f;
        for (int g = 0; g < ngroups; g++) o += s_red[(g * G + h) * hd + d];
        if (active == 1) {
            /* KERN_ACT_Q16: hd a multiple of 16 keeps a group in a half-warp */
            if (act) act_store(act, act_mode, R, width, r, gh * hd + d,
                               act_mode & KERN_ACT_Q16 ? act_q16(o / s_l[h]) : o / s_l[h]);
            else out[(size_t)r * width + gh * hd + d] = o / s_l[h];
        } else {
            float *pp = part + (((size_t)r * splits + sp) * n_heads + gh) * (hd + 2);
            pp[d] = o;
            if (d == 0) { pp[hd] = s_m[h]; pp[hd + 1] = s_l[h]; }
        }
    }
    if (active == 1) return;
    attn_merge_splits<0>(part, counters, r, kvh, G, active, 1, splits, n_heads, out, act, act_mode,
                         R, hd);
}

extern "C" int kern_attn_splits(int R, int n_kv, int n_sms) {
    int want = (2 * n_sms + R * n_kv - 1) / (R * n_kv);
    return want < 1 ? 1 : want > ATT_MAX_SPLITS ? ATT_MAX_SPLITS : want;
}

extern "C" int kern_attn_split_cap(int R, int n_kv, int n_sms) {
    const int rk = R * n_kv, wave = (4 * n_sms + rk - 1) / rk;   /* 4 blocks a multiprocessor */
    const int s = kern_attn_splits(R, n_kv, n_sms);
    return wave > s ? (wave > ATT_MAX_SPLITS ? ATT_MAX_SPLITS : wave) : s;
}

extern "C" size_t kern_attn_part_floats(int R, int n_heads, int head_dim, int splits) {
    return splits > 1 ? (size_t)R * splits * n_heads * (head_dim + 2) : 0;
}

extern "C" int kern_attention(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st,
                              int R, int n_heads, int splits, float *out, void *act, int act_mode,
                              float *part, unsigned *counters, int pdl) {
    int hd = kv.head_dim;
    if (R < 1 || splits < 1 || kv.n_kv < 1 || n_heads % kv.n_kv || n_heads / kv.n_kv > ATT_GMAX ||
        hd < 4 || hd > 256 || hd % 4 || ATT_THREADS % (hd / 4) || splits > ATT_MAX_SPLITS ||
        (splits > 1 && (!part || !counters)) || (kv.dtype != KERN_F32 && kv.dtype != KERN_BF16) ||
        (act && (act_mode & KERN_ACT_Q16) && hd % 16))
        return (int)cudaErrorInvalidValue;
    int G = n_heads / kv.n_kv;
    size_t smem = (size_t)G * (hd + ATT_TILE) * sizeof(float) +
                  (size_t)(ATT_THREADS / (hd / 4)) * G * hd * sizeof(float);
    auto k = kv.dtype == KERN_BF16 ? attn_kernel<__nv_bfloat16> : attn_kernel<float>;
    return (int)klaunch(k, dim3(R, kv.n_kv, splits), dim3(ATT_THREADS), smem, s, pdl, q,
                        kv, st, n_heads, splits, out, act, act_mode, R, part, counters);
}
