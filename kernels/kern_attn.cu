/* kern_attn.cu — attention over the paged f32 KV pool.
 *
 * One block per (row, kv head, split).  A row at position p attends to
 * positions 0..p of its own sequence, so one kernel serves decode rows and
 * prefill rows alike (the batch's keys are written before it runs, which
 * makes prefill causal within the batch).  The block keeps the G query heads
 * that share its kv head (GQA) in shared memory, walks its positions in
 * tiles of 64 with an online softmax, and either writes the normalised output
 * (one split) or its partial sums for attn_combine_kernel (flash-decoding:
 * long contexts and small batches spread over many blocks). */
#include <math.h>
#include "kern_common.cuh"

#define ATT_THREADS 128
#define ATT_TILE 64
#define ATT_GMAX 8

__device__ __forceinline__ const float *kv_key(const kern_kv &kv, const int *tbl, int kvh, int t) {
    int blk = tbl[t / kv.block_size], slot = t % kv.block_size;
    return kv.base + (size_t)blk * kv.blk_stride + ((size_t)kvh * kv.block_size + slot) * kv.head_dim;
}

__global__ void __launch_bounds__(ATT_THREADS)
attn_kernel(const float *__restrict__ q, kern_kv kv, const kern_step *st, int n_heads,
            int splits, float *__restrict__ out, float *__restrict__ part) {
    extern __shared__ float sm[];
    __shared__ float s_m[ATT_GMAX], s_l[ATT_GMAX], s_scale[ATT_GMAX];
    const int r = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int hd = kv.head_dim, G = n_heads / kv.n_kv, d4n = hd >> 2;
    float *s_q = sm, *s_p = s_q + G * hd, *s_red = s_p + G * ATT_TILE;

    const int pos = st->pos[r], seq = st->row_seq[r];
    const int L = pos + 1, span = (L + splits - 1) / splits;
    const int t0 = sp * span, t1 = min(L, t0 + span);
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
        /* scores: LP lanes per position, PPW positions per warp at a time */
        for (int base = warp * PPW; base < n; base += 4 * PPW) {
            const int i = base + sub;
            const bool ok = i < n;
            float a[ATT_GMAX];
#pragma unroll
            for (int h = 0; h < ATT_GMAX; h++) a[h] = 0.f;
            if (ok) {
                const float4 *kp = (const float4 *)kv_key(kv, tbl, kvh, tile + i);
                for (int v = 0; v < VPL; v++) {
                    float4 k4 = kp[v * LP + li];
#pragma unroll
                    for (int h = 0; h < ATT_GMAX; h++)
                        if (h < G) {
                            float4 q4 = ((const float4 *)s_q)[h * d4n + v * LP + li];
                            a[h] += q4.x * k4.x + q4.y * k4.y + q4.z * k4.z + q4.w * k4.w;
                        }
                }
            }
#pragma unroll
            for (int h = 0; h < ATT_GMAX; h++)
                if (h < G)
                    for (int o = LP >> 1; o > 0; o >>= 1) a[h] += __shfl_xor_sync(0xffffffffu, a[h], o);
            if (ok && li == 0)
#pragma unroll
                for (int h = 0; h < ATT_GMAX; h++)
                    if (h < G) s_p[h * ATT_TILE + i] = a[h];
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
        for (int i = grp; i < n; i += ngroups) {
            float4 v4 = ((const float4 *)(kv_key(kv, tbl, kvh, tile + i) + v_off))[d4];
#pragma unroll
            for (int h = 0; h < ATT_GMAX; h++)
                if (h < G) {
                    float p = s_p[h * ATT_TILE + i];
                    acc[h].x += p * v4.x; acc[h].y += p * v4.y;
                    acc[h].z += p * v4.z; acc[h].w += p * v4.w;
                }
        }
        __syncthreads();
    }

#pragma unroll
    for (int h = 0; h < ATT_GMAX; h++)
        if (h < G) ((float4 *)s_red)[(grp * G + h) * d4n + d4] = acc[h];
    __syncthreads();
    for (int idx = tid; idx < G * hd; idx += ATT_THREADS) {
        int h = idx / hd, d = idx % hd, gh = kvh * G + h;
        float o = 0.f;
        for (int g = 0; g < ngroups; g++) o += s_red[(g * G + h) * hd + d];
        if (splits == 1) {
            out[((size_t)r * n_heads + gh) * hd + d] = o / s_l[h];
        } else {
            float *pp = part + (((size_t)r * splits + sp) * n_heads + gh) * (hd + 2);
            pp[d] = o;
            if (d == 0) { pp[hd] = s_m[h]; pp[hd + 1] = s_l[h]; }
        }
    }
}

/* Merges the splits of one (row, head): weights e^(m_s - M). */
__global__ void attn_combine_kernel(const float *__restrict__ part, int n_heads, int hd,
                                    int splits, float *__restrict__ out) {
    const int r = blockIdx.x, gh = blockIdx.y;
    const size_t stride = (size_t)n_heads * (hd + 2);
    const float *pp = part + ((size_t)r * splits * n_heads + gh) * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < splits; s++)
        if (pp[s * stride + hd + 1] > 0.f) M = fmaxf(M, pp[s * stride + hd]);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float Lsum = 0.f, o = 0.f;
        for (int s = 0; s < splits; s++) {
            float l = pp[s * stride + hd + 1];
            if (l > 0.f) {
                float c = expf(pp[s * stride + hd] - M);
                Lsum += l * c;
                o += pp[s * stride + d] * c;
            }
        }
        out[((size_t)r * n_heads + gh) * hd + d] = o / Lsum;
    }
}

extern "C" int kern_attn_splits(int R, int n_kv, int n_sms) {
    int want = (2 * n_sms + R * n_kv - 1) / (R * n_kv);
    return want < 1 ? 1 : want > 64 ? 64 : want;
}

extern "C" size_t kern_attn_part_floats(int R, int n_heads, int head_dim, int splits) {
    return splits > 1 ? (size_t)R * splits * n_heads * (head_dim + 2) : 0;
}

extern "C" int kern_attention(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st,
                              int R, int n_heads, int splits, float *out, float *part) {
    int hd = kv.head_dim;
    if (R < 1 || splits < 1 || kv.n_kv < 1 || n_heads % kv.n_kv || n_heads / kv.n_kv > ATT_GMAX ||
        hd < 4 || hd > 256 || hd % 4 || ATT_THREADS % (hd / 4))
        return (int)cudaErrorInvalidValue;
    int G = n_heads / kv.n_kv;
    size_t smem = (size_t)G * (hd + ATT_TILE) * sizeof(float) +
                  (size_t)(ATT_THREADS / (hd / 4)) * G * hd * sizeof(float);
    dim3 grid(R, kv.n_kv, splits);
    attn_kernel<<<grid, ATT_THREADS, smem, s>>>(q, kv, st, n_heads, splits, out, part);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess || splits == 1) return (int)e;
    attn_combine_kernel<<<dim3(R, n_heads), hd < 32 ? 32 : hd, 0, s>>>(part, n_heads, hd, splits, out);
    return (int)cudaGetLastError();
}
