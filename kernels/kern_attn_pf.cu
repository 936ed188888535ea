/* kern_attn_pf.cu — attention for prompt passes (many rows per sequence).
 *
 * Why: the decode kernels give every row its own block, which walks the
 * row's whole context: a prompt of n tokens reloads K/V n times and pays n
 * chains of dependent loads (measured: prefill attention of long prompts
 * dominated ParallelPrompt's item prefill).  Here a block takes a tile of up
 * to PF_QT consecutive rows and one kv head; rows of the tile that belong to
 * the same sequence are done together (a "group": every query head of the
 * kv head for every row, up to PF_QH query vectors), so each step of PF_TK
 * keys is loaded once into shared memory and used by all of them:
 *   scores  S[qi][t] = q[qi] . k[t]  (4 x 4 per thread, from transposed q/k tiles)
 *   softmax online per query vector (running max m, sum l, rescale c)
 *   output  O[qi][d] += p[qi][t] v[t][d]  (4 x HD/8 per thread, in registers)
 * All in f32, as the decode kernels, so results match them to rounding
 * (a bf16 pool's K and V are converted as they are loaded; T is the pool's
 * element type).
 * Rows of a tile from different sequences (a prompt next to decode rows in
 * a continuous batch) become separate groups, one after another. */
#include <math.h>
#include "kern_common.cuh"

#define PF_QT KERN_PF_TILE         /* rows per tile */
#define PF_TK 32                  /* keys per step */
#define PF_GMAX 8                 /* query heads per kv head */
#define PF_QH (PF_QT * PF_GMAX)   /* query vectors per group, at most */
#define PF_THREADS 256
#define PF_QS (PF_QH + 4)         /* row strides: 16-byte aligned, spread over banks */
#define PF_KS (PF_TK + 4)

template <int HD> struct pf_smem {
    float qT[HD][PF_QS];          /* q transposed, pre-scaled by 1/sqrt(hd) */
    float kT[HD][PF_KS];          /* K of the step, transposed */
    float v[PF_TK][HD];
    float s[PF_QH][PF_TK + 1];    /* scores of the step */
    float pT[PF_TK][PF_QS];       /* probabilities, transposed */
    float m[PF_QH], l[PF_QH], c[PF_QH];
    int qpos[PF_QH];              /* last position each query vector sees */
    int row[PF_QT], pos[PF_QT], seq[PF_QT];
    int ng, maxpos;
    unsigned done;
};

/* Picks the next group: the first tile row not done and every later row of
 * its sequence (thread 0). */
template <int HD>
__device__ void pf_group(pf_smem<HD> &S, int nt) {
    int first = -1;
    for (int i = 0; i < nt && first < 0; i++)
        if (!(S.done >> i & 1u)) first = i;
    S.ng = 0;
    S.maxpos = -1;
    if (first < 0) return;
    for (int i = first; i < nt; i++)
        if (!(S.done >> i & 1u) && S.seq[i] == S.seq[first]) {
            S.row[S.ng++] = i;
            S.done |= 1u << i;
            S.maxpos = max(S.maxpos, S.pos[i]);
        }
}

/* K and V of keys t0 .. t0+PF_TK-1 of sequence seq into shared memory (zero
 * past maxpos). */
template <typename T, int HD>
__device__ __forceinline__ void pf_load_kv(pf_smem<HD> &S, const kern_kv &kv, const int *tbl,
                                           int kvh, int t0, int maxpos) {
    const size_t v_off = (size_t)kv.n_kv * kv.block_size * HD;
    for (int idx = threadIdx.x; idx < PF_TK * HD; idx += PF_THREADS) {
        int t = idx / HD, d = idx % HD, tp = t0 + t;
        float kx = 0.f, vx = 0.f;
        if (tp <= maxpos) {
            const T *p = kv_row<T, HD>(kv, tbl[tp / kv.block_size], kvh, tp % kv.block_size) + d;
            kx = kv_ld1(p);
            vx = kv_ld1(p + v_off);
        }
        S.kT[d][t] = kx;
        S.v[t][d] = vx;
    }
}

/* Scores of a 4 x 4 tile (query vectors qi0.., keys ts..), masked. */
template <int HD>
__device__ __forceinline__ void pf_scores(pf_smem<HD> &S, int qi0, int ts, int t0) {
    float sc[4][4] = {};
#pragma unroll 8
    for (int d = 0; d < HD; d++) {
        float4 a = *(const float4 *)&S.qT[d][qi0];
        float4 b = *(const float4 *)&S.kT[d][ts];
        const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) sc[i][j] = fmaf(av[i], bv[j], sc[i][j]);
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            S.s[qi0 + i][ts + j] = t0 + ts + j <= S.qpos[qi0 + i] ? sc[i][j] : -INFINITY;
}

/* Online softmax of the step: two threads per query vector, 16 keys each. */
template <int HD>
__device__ __forceinline__ void pf_softmax(pf_smem<HD> &S) {
    const int qi = threadIdx.x >> 1, half = threadIdx.x & 1;
    const float mo = S.m[qi];
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < PF_TK / 2; j++) mx = fmaxf(mx, S.s[qi][half * (PF_TK / 2) + j]);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float mn = fmaxf(mo, mx), c = mn == -INFINITY ? 1.f : expf(mo - mn);
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < PF_TK / 2; j++) {
        int t = half * (PF_TK / 2) + j;
        float x = S.s[qi][t], p = x == -INFINITY ? 0.f : expf(x - mn);
        S.pT[t][qi] = p;
        sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    if (!half) {
        S.l[qi] = S.l[qi] * c + sum;
        S.m[qi] = mn;
        S.c[qi] = c;
    }
}

template <typename T, int HD>
__global__ void __launch_bounds__(PF_THREADS)
attn_pf_kernel(const float *q, kern_kv kv, const kern_step *st, int n_heads, int qt,
               float *__restrict__ out, void *act, int act_mode, int R) {
    constexpr int DPT = HD / 8;   /* output dims per thread */
    extern __shared__ __align__(16) unsigned char pf_raw[];
    pf_smem<HD> &S = *reinterpret_cast<pf_smem<HD> *>(pf_raw);
    pdl_launch();
    pdl_wait();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kvh = blockIdx.y, G = n_heads / kv.n_kv, r0 = blockIdx.x * qt, nt = min(qt, R - r0);
    const float scale = (float)rsqrt((double)HD);
    const int width = n_heads * HD;
    if (tid < nt) {
        S.pos[tid] = st->pos[r0 + tid];
        S.seq[tid] = st->row_seq[r0 + tid];
    }
    if (tid == 0) S.done = 0;
    __syncthreads();
    for (;;) {
        if (tid == 0) pf_group(S, nt);
        __syncthreads();
        const int ng = S.ng, QH = ng * G, maxpos = S.maxpos;
        if (ng == 0) break;
        const int *tbl = st->table + (size_t)S.seq[S.row[0]] * st->table_stride;
        for (int idx = tid; idx < PF_QH * HD; idx += PF_THREADS) {
            int qi = idx / HD, d = idx % HD;
            float x = 0.f;
            if (qi < QH) {
                int r = r0 + S.row[qi / G], h = kvh * G + qi % G;
                x = q[((size_t)r * n_heads + h) * HD + d] * scale;
            }
            S.qT[d][qi] = x;
        }
        if (tid < PF_QH) {
            S.m[tid] = -INFINITY;
            S.l[tid] = 0.f;
            S.qpos[tid] = tid < QH ? S.pos[S.row[tid / G]] : -1;
        }
        const int qi0 = lane * 4, d0 = warp * DPT;
        float acc[4][DPT] = {};
        for (int t0 = 0; t0 <= maxpos; t0 += PF_TK) {
            __syncthreads();   /* the last step's readers are done */
            pf_load_kv<T, HD>(S, kv, tbl, kvh, t0, maxpos);
            __syncthreads();
            pf_scores(S, qi0, warp * 4, t0);
            __syncthreads();
            pf_softmax(S);
            __syncthreads();
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float c = S.c[qi0 + i];
#pragma unroll
                for (int j = 0; j < DPT; j++) acc[i][j] *= c;
            }
#pragma unroll 4
            for (int t = 0; t < PF_TK; t++) {
                float4 p = *(const float4 *)&S.pT[t][qi0];
                const float pv[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
                for (int j = 0; j < DPT; j++) {
                    float vv = S.v[t][d0 + j];
#pragma unroll
                    for (int i = 0; i < 4; i++) acc[i][j] = fmaf(pv[i], vv, acc[i][j]);
                }
            }
        }
        __syncthreads();
        /* KERN_ACT_Q16: each query vector's largest |output| per group of
         * 16 dims; a thread holds DPT / 16 whole groups, or 16 / DPT warps
         * (the same lane) hold one, whose parts meet in S.s (free now) */
        constexpr int GPT = DPT >= 16 ? DPT / 16 : 1, WPG = DPT >= 16 ? 1 : 16 / DPT;
        static_assert(8 * PF_QH <= PF_QH * (PF_TK + 1), "a part per warp and query vector in S.s");
        float gm[4][GPT] = {};
        const bool q16 = act && (act_mode & KERN_ACT_Q16);
        if (q16) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float inv = qi0 + i < QH ? 1.f / S.l[qi0 + i] : 0.f;
#pragma unroll
                for (int j = 0; j < DPT; j++) gm[i][j / 16] = fmaxf(gm[i][j / 16], fabsf(acc[i][j] * inv));
            }
            if (WPG > 1) {
                float *pm = &S.s[0][0];   /* [warp][query vector] */
#pragma unroll
                for (int i = 0; i < 4; i++) pm[warp * PF_QH + qi0 + i] = gm[i][0];
                __syncthreads();
                const int w0 = warp / WPG * WPG;
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float m = 0.f;
                    for (int w = 0; w < WPG; w++) m = fmaxf(m, pm[(w0 + w) * PF_QH + qi0 + i]);
                    gm[i][0] = m;
                }
            }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int qi = qi0 + i;
            if (qi >= QH) continue;
            int r = r0 + S.row[qi / G], col = (kvh * G + qi % G) * HD + d0;
            float inv = 1.f / S.l[qi];
#pragma unroll
            for (int j = 0; j < DPT; j++) {
                const float v = acc[i][j] * inv;
                if (act) act_store(act, act_mode, R, width, r, col + j,
                                   q16 ? eng_qb_act_q16_value(v, gm[i][j / 16]) : v);
                else out[(size_t)r * width + col + j] = v;
            }
        }
        __syncthreads();   /* before the next group reuses the tile state */
    }
}

extern "C" int kern_attention_prefill_fits(int n_heads, int n_kv, int head_dim) {
    return n_kv >= 1 && n_heads % n_kv == 0 && n_heads / n_kv <= PF_GMAX &&
           (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128);
}

template <typename T>
static int pf_launch(cudaStream_t s, const float *q, kern_kv kv, const kern_step *st, int R,
                     int n_heads, float *out, void *act, int act_mode, int pdl) {
    const int hd = kv.head_dim;
    /* full tiles only: a block's work is PF_QH x PF_TK per key step whatever
     * its rows fill (measured: 4-row tiles made a 512-token prompt slower
     * than the decode kernels) */
    const int qt = PF_QT;
    dim3 grid((R + qt - 1) / qt, kv.n_kv);
#define PF_LAUNCH(H) do { \
        size_t sm = sizeof(pf_smem<H>); \
        cudaError_t e_ = ksmem_limit(attn_pf_kernel<T, H>, sm); \
        if (e_ != cudaSuccess) return (int)e_; \
        return (int)klaunch(attn_pf_kernel<T, H>, grid, dim3(PF_THREADS), sm, s, pdl, q, kv, st, \
                            n_heads, qt, out, act, act_mode, R); \
    } while (0)
    if (hd == 16) PF_LAUNCH(16);
    if (hd == 32) PF_LAUNCH(32);
    if (hd == 64) PF_LAUNCH(64);
    PF_LAUNCH(128);
#undef PF_LAUNCH
}

extern "C" int kern_attention_prefill(cudaStream_t s, const float *q, kern_kv kv,
                                      const kern_step *st, int R, int n_heads, float *out,
                                      void *act, int act_mode, int pdl) {
    const int hd = kv.head_dim;
    if (R < 1 || kv.block_size < 1 || !kern_attention_prefill_fits(n_heads, kv.n_kv, hd) ||
        kv.window || (kv.dtype != KERN_F32 && kv.dtype != KERN_BF16))   /* a sliding window: kern_attention */
        return (int)cudaErrorInvalidValue;
    auto launch = kv.dtype == KERN_BF16 ? pf_launch<__nv_bfloat16> : pf_launch<float>;
    return launch(s, q, kv, st, R, n_heads, out, act, act_mode, pdl);
}
