/* kern_gemv.cu — matrix-vector products for small row counts (decode at
 * batch 1..8), bound by how fast the weights stream from memory.
 *
 * Each warp owns 4 weight rows (a "unit") and walks K with 16-byte loads,
 * two steps in flight; the activations (f32, up to 8 rows) come through L1.
 * KS warps of a block share a unit's K range and add their sums in shared
 * memory (split-K inside the block, so the result does not depend on
 * timing); blocks stride over the units (gemv_grid says why).  The first
 * weights are loaded before waiting on the previous kernel (programmatic
 * dependent launch), so their memory latency overlaps its tail.  Optional prologue:
 * RMS statistics of x, so the norm costs no launch of its own.  Epilogues: store,
 * add into the residual, SwiGLU over a [gate; up] weight, or (ROPE) bias +
 * RoPE of q/k and the KV write of k/v, so the q/k/v product needs no second
 * kernel: a unit then holds the two rotate_half pairs (i, i+hd/2), (i+1,
 * i+1+hd/2) of one head. */
#include <cuda_fp16.h>
#include "kern_common.cuh"

#define GEMV_THREADS 256
#define GEMV_WARPS 8
#define GEMV_NR 4

template <int WDT> struct wvec { static constexpr int n = 8; };
template <> struct wvec<KERN_F32> { static constexpr int n = 4; };

template <int WDT>
__device__ __forceinline__ void w_cvt(uint4 v, float *f);
template <>
__device__ __forceinline__ void w_cvt<KERN_BF16>(uint4 v, float *f) { bf16x8_to_f32(v, f); }
template <>
__device__ __forceinline__ void w_cvt<KERN_F32>(uint4 v, float *f) {
    f[0] = __uint_as_float(v.x); f[1] = __uint_as_float(v.y);
    f[2] = __uint_as_float(v.z); f[3] = __uint_as_float(v.w);
}

/* What the ROPE epilogue needs (unused by the other modes). */
struct gemv_rope {
    const float *bias;
    const kern_step *st;
    const float *inv_freq;
    float *q;
    kern_kv kv;
    int n_heads;
};

/* acc[j][r] += W[row j][k..k+VEC) . x'[r][k..k+VEC), where x' = x * norm_w
 * when nw != NULL (the row's 1/rms is applied in the epilogue).  The norm
 * weight multiplies whichever side is smaller: x's R rows or the NR weight
 * rows. */
template <int WDT, int R>
__device__ __forceinline__ void gemv_step(float (&acc)[GEMV_NR][R], const uint4 (&w)[GEMV_NR],
                                          const float *x, int K, int k,
                                          const float *__restrict__ nw) {
    constexpr int VEC = wvec<WDT>::n;
    constexpr bool scale_w = R > GEMV_NR;
    float wf[GEMV_NR][VEC];
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) w_cvt<WDT>(w[j], wf[j]);
    float nv[VEC];
    if (nw) {
#pragma unroll
        for (int i = 0; i < VEC; i += 4) {
            float4 t = __ldg((const float4 *)(nw + k + i));
            nv[i] = t.x; nv[i + 1] = t.y; nv[i + 2] = t.z; nv[i + 3] = t.w;
        }
        if (scale_w)
#pragma unroll
            for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
                for (int i = 0; i < VEC; i++) wf[j][i] *= nv[i];
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        float xv[VEC];
#pragma unroll
        for (int i = 0; i < VEC; i += 4) {
            float4 t = __ldca((const float4 *)(x + (size_t)r * K + k + i));
            xv[i] = t.x; xv[i + 1] = t.y; xv[i + 2] = t.z; xv[i + 3] = t.w;
        }
        if (nw && !scale_w)
#pragma unroll
            for (int i = 0; i < VEC; i++) xv[i] *= nv[i];
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
            for (int i = 0; i < VEC; i++) acc[j][r] = fmaf(wf[j][i], xv[i], acc[j][r]);
    }
}

/* ROPE units: the first (n_heads + n_kv) * hd/4 rotate q and k heads, the
 * rest hold four consecutive v rows. */
__device__ __forceinline__ void rope_rows(const gemv_rope &rp, int unit, int rows[GEMV_NR]) {
    int hd = rp.kv.head_dim, qu = (rp.n_heads + rp.kv.n_kv) * hd / 4;
    if (unit < qu) {
        int h = unit / (hd / 4), i0 = 2 * (unit % (hd / 4)), c = h * hd + i0;
        rows[0] = c; rows[1] = c + 1; rows[2] = c + hd / 2; rows[3] = c + hd / 2 + 1;
    } else {
        for (int j = 0; j < GEMV_NR; j++) rows[j] = unit * GEMV_NR + j;
    }
}

/* Where row j of unit u for input row r goes, worked out before the wait
 * (positions, block table and weights are known then; the angle's double
 * sincos and three dependent loads left the kernel's critical path): a q/k
 * row j < 2 is rotated with its rotate_half partner and stored as q or into
 * the row's KV slot; a v row is copied into the slot; q/k rows j >= 2 are
 * done by their partner. */
typedef struct rope_pre {
    void *dst;                  /* q (f32) or the row's KV slot; NULL: nothing to store */
    float b1, b2, cs, sn;       /* biases of the row and its partner; cos, sin */
    int half, rotate;
    int bf16;                   /* dst is a bf16 pool's slot: values rounded */
} rope_pre;

/* dst := element d of a KV row, f32 or bf16 by the pool's type. */
__device__ __forceinline__ void rope_kv_dst(rope_pre &p, const kern_kv &kv, void *row, int d) {
    p.bf16 = kv.dtype == KERN_BF16;
    p.dst = p.bf16 ? (void *)((__nv_bfloat16 *)row + d) : (void *)((float *)row + d);
}

__device__ __forceinline__ void rope_store(const rope_pre &p, int i, float v) {
    if (p.bf16) ((__nv_bfloat16 *)p.dst)[i] = __float2bfloat16_rn(v);
    else ((float *)p.dst)[i] = v;
}

__device__ __forceinline__ rope_pre rope_prepare(const gemv_rope &rp, int u, int j, int r) {
    rope_pre p = {};
    int rows[GEMV_NR];
    rope_rows(rp, u, rows);
    const int hd = rp.kv.head_dim, half = hd / 2, nh = rp.n_heads, nkv = rp.kv.n_kv;
    const int qu = (nh + nkv) * hd / 4, c = rows[j];
    if (u < qu && j >= 2) return p;
    p.b1 = rp.bias ? rp.bias[c] : 0.f;
    p.half = half;
    if (u >= qu) {   /* v head */
        const int h = c / hd - nh - nkv, d = c % hd;
        rope_kv_dst(p, rp.kv, kv_step_row(rp.kv, rp.st, r, nkv + h), d);
        return p;
    }
    p.b2 = rp.bias ? rp.bias[c + half] : 0.f;
    const int h = c / hd, i = c % hd;
    double sd, cd;
    sincos((double)rp.st->pos[r] * (double)rp.inv_freq[i], &sd, &cd);
    p.sn = (float)sd;
    p.cs = (float)cd;
    p.rotate = 1;
    if (h < nh) p.dst = rp.q + ((size_t)r * nh + h) * hd + i;
    else rope_kv_dst(p, rp.kv, kv_step_row(rp.kv, rp.st, r, h - nh), i);
    return p;
}

/* v is the row's sum, v2 its partner's: bias, rotation (angle in double, as
 * the RoPE kernel does), store. */
__device__ __forceinline__ void rope_finish(const rope_pre &p, bool bias, float v, float v2) {
    if (!p.dst) return;
    if (bias) v += p.b1;
    if (!p.rotate) { rope_store(p, 0, v); return; }
    if (bias) v2 += p.b2;
    rope_store(p, 0, v * p.cs - v2 * p.sn);
    rope_store(p, p.half, v2 * p.cs + v * p.sn);
}

/* s_rstd[r] = 1 / rms(x[r]) for the R rows, all rows in one pass and one
 * block reduction: a reduction per row put R dependent rounds of loads and
 * barriers ahead of the products (8 rows, 1.5B: 4.25 -> 3.31 ms a step).
 * Partial sums are added in warp order, as block_sum does. */
template <int R>
__device__ __forceinline__ void gemv_rstd(const float *x, int K, float eps, float *s_rstd,
                                          float (*s_part)[R]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float ss[R];
#pragma unroll
    for (int r = 0; r < R; r++) ss[r] = 0.f;
    for (int i = threadIdx.x; i < K / 4; i += blockDim.x)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float4 v = ((const float4 *)(x + (size_t)r * K))[i];
            ss[r] += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
#pragma unroll
    for (int r = 0; r < R; r++) {
        float t = warp_sum(ss[r]);
        if (lane == 0) s_part[warp][r] = t;
    }
    __syncthreads();
    if (threadIdx.x < R) {
        float t = 0.f;
        for (int w = 0; w < nw; w++) t += s_part[w][threadIdx.x];
        s_rstd[threadIdx.x] = 1.0f / sqrtf(t / (float)K + eps);
    }
}

/* The four weight rows of unit u (clamped: a unit past the end reads row 0
 * and its sums are dropped). */
template <int MODE>
__device__ __forceinline__ void unit_rows(const gemv_rope &rp, int N, int n_units, int u,
                                          int rows[GEMV_NR]) {
    if (u >= n_units) u = 0;
    if (MODE == KERN_SWIGLU || MODE == KERN_GEGLU) {
        const int I = N / 2, i0 = u * 2, i1 = i0 + 1 < I ? i0 + 1 : i0;
        rows[0] = i0; rows[1] = i1; rows[2] = I + i0; rows[3] = I + i1;
    } else if (MODE == KERN_ROPE) {
        rope_rows(rp, u, rows);
    } else {
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++) {
            int n = u * GEMV_NR + j;
            rows[j] = n < N ? n : N - 1;
        }
    }
}

/* One epilogue item: row j of unit u (local index ul in the block) for
 * input row r, its sum over the KS warps' partial sums in s_red scaled by
 * rs (1/rms with a norm prologue, else 1); pre holds the ROPE item's
 * destination when it was worked out before the wait (first round). */
template <int R, int MODE>
__device__ __forceinline__ void gemv_epilogue(const float (*s_red)[GEMV_NR][R], int KS, int ul,
                                              int u, int j, int r, float rs, int N, float *y,
                                              const gemv_rope &rp, rope_pre &pre,
                                              bool first_round) {
    constexpr bool GLU = MODE == KERN_SWIGLU || MODE == KERN_GEGLU;
    const int I = N / 2;
    float v = 0.f;
    for (int kp = 0; kp < KS; kp++) v += s_red[ul * KS + kp][j][r];
    v *= rs;
    if (GLU) {
        int i = u * 2 + j;
        if (j < 2 && i < I) {
            float up = 0.f;
            for (int kp = 0; kp < KS; kp++) up += s_red[ul * KS + kp][j + 2][r];
            up *= rs;
            float a = MODE == KERN_GEGLU ? gelu_tanh(v) : v / (1.0f + expf(-v));
            y[(size_t)r * I + i] = a * up;
        }
    } else if (MODE == KERN_ROPE) {
        float v2 = 0.f;
        if (j < 2)
            for (int kp = 0; kp < KS; kp++) v2 += s_red[ul * KS + kp][j + 2][r];
        if (!first_round) pre = rope_prepare(rp, u, j, r);
        rope_finish(pre, rp.bias != NULL, v, v2 * rs);
    } else {
        int n = u * GEMV_NR + j;
        if (n < N) {
            if (MODE == KERN_RESID) y[(size_t)r * N + n] += v;
            else y[(size_t)r * N + n] = v;
        }
    }
}

/* w0/w1 = the unit's weights at k and k + step (where inside K). */
template <int EB>
__device__ __forceinline__ void gemv_load(uint4 (&w0)[GEMV_NR], uint4 (&w1)[GEMV_NR],
                                          const char *const (&wr)[GEMV_NR], int k, int step, int K) {
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) {
        if (k < K) w0[j] = __ldg((const uint4 *)(wr[j] + (size_t)k * EB));
        if (k + step < K) w1[j] = __ldg((const uint4 *)(wr[j] + (size_t)(k + step) * EB));
    }
}

/* A block takes upc units at a time (KS warps per unit), striding over the
 * units by the grid; the grid may be smaller than the units so that the next
 * kernel's blocks fit beside it and load their weights early (PDL). */
template <int WDT, int R, int MODE>
__global__ void __launch_bounds__(GEMV_THREADS)
gemv_kernel(const void *__restrict__ Wv, int N, int K, const float *x,
            const float *__restrict__ nw, float eps, float *y, int KS, gemv_rope rp) {
    constexpr int VEC = wvec<WDT>::n;
    constexpr int EB = WDT == KERN_BF16 ? 2 : 4;
    __shared__ float s_rstd[R];
    __shared__ float s_part[GEMV_WARPS][R];
    __shared__ float s_red[GEMV_WARPS][GEMV_NR][R];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    const int upc = GEMV_WARPS / KS;
    const int I = N / 2;
    constexpr bool GLU = MODE == KERN_SWIGLU || MODE == KERN_GEGLU;
    const int n_units = GLU ? (I + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
    const int stride = gridDim.x * upc;
    const char *Wb = (const char *)Wv;
    const int step = KS * 32 * VEC, k0 = (warp % KS * 32 + lane) * VEC;
    int unit = blockIdx.x * upc + warp / KS;
    int rows[GEMV_NR];
    const char *wr[GEMV_NR];
    unit_rows<MODE>(rp, N, n_units, unit, rows);
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) wr[j] = Wb + (size_t)rows[j] * K * EB;

    /* the first two steps' weights are read before waiting for x */
    uint4 w0[GEMV_NR], w1[GEMV_NR];
    gemv_load<EB>(w0, w1, wr, k0, step, K);
    /* upc * GEMV_NR * R <= 8 * 4 * 8 = GEMV_THREADS: a thread has at most one
     * epilogue item, so the ROPE item's destination is ready before the wait
     * (for the first round of units; later rounds work it out after) */
    rope_pre pre = {};
    const int eu = threadIdx.x / (GEMV_NR * R), ej = (threadIdx.x / R) % GEMV_NR,
              er = threadIdx.x % R;
    const bool has_item = threadIdx.x < upc * GEMV_NR * R;
    if (MODE == KERN_ROPE && has_item && blockIdx.x * upc + eu < n_units)
        pre = rope_prepare(rp, blockIdx.x * upc + eu, ej, er);
    pdl_launch();
    pdl_wait();

    for (int base = blockIdx.x * upc; base < n_units; base += stride) {
        float acc[GEMV_NR][R];
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
            for (int r = 0; r < R; r++) acc[j][r] = 0.f;

        for (int k = k0; k < K;) {
            gemv_step<WDT, R>(acc, w0, x, K, k, nw);
            if (k + step < K) gemv_step<WDT, R>(acc, w1, x, K, k + step, nw);
            k += 2 * step;
            if (k < K) gemv_load<EB>(w0, w1, wr, k, step, K);
        }
        /* the next round's first weights are in flight during this round's
         * reduction and epilogue */
        unit += stride;
        if (base + stride < n_units) {
            unit_rows<MODE>(rp, N, n_units, unit, rows);
#pragma unroll
            for (int j = 0; j < GEMV_NR; j++) wr[j] = Wb + (size_t)rows[j] * K * EB;
            gemv_load<EB>(w0, w1, wr, k0, step, K);
        }

#pragma unroll
        for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
            for (int r = 0; r < R; r++) {
                float v = warp_sum(acc[j][r]);
                if (lane == 0) s_red[warp][j][r] = v;
            }
        /* the RMS statistics only scale the sums, so they come after the
         * first products: x is in L1 by now, and the products did not wait
         * for a reduction */
        if (nw && base == blockIdx.x * upc) gemv_rstd<R>(x, K, eps, s_rstd, s_part);
        __syncthreads();

        const int u = base + eu;
        if (has_item && u < n_units)
            gemv_epilogue<R, MODE>(s_red, KS, eu, u, ej, er, nw ? s_rstd[er] : 1.f, N, y, rp, pre,
                                   base == blockIdx.x * upc);
        if (base + stride < n_units) __syncthreads();   /* s_red is reused */
    }
}

/* The launch shape, measured on 0.5B, 1.5B and 7B shapes at 1-4 rows
 * (kernels/NOTES.md, v10): K is split over KS = 2 warps of a block, 8 for
 * long rows (down, K = 4864..18944); the grid holds at most 3 blocks per
 * multiprocessor at 1 row and 2 from 2 rows, its blocks striding over the
 * units in rounds of equal size.  Other splits and caps (1, 4, none) were
 * slower.  The old grid, at least two blocks per multiprocessor and no cap,
 * ran q/k/v and gate|up in more than one wave and left no room for the next
 * kernel's blocks to start early and load their first weights (PDL).
 * per_sm: the cap's blocks per multiprocessor (0: the rule above); ks:
 * the split (0: the rule above). */
static dim3 gemv_grid(int n_units, int K, int R, int n_sms, int per_sm, int ks, int *KS) {
    if (ks <= 0) ks = K > 4096 ? 8 : 2;
    *KS = ks;
    int nb = (n_units + GEMV_WARPS / ks - 1) / (GEMV_WARPS / ks);
    int cap = (per_sm > 0 ? per_sm : R == 1 ? 3 : 2) * n_sms;
    int rounds = (nb + cap - 1) / cap;
    return dim3((nb + rounds - 1) / rounds);
}

template <int WDT, int R>
static cudaError_t gemv_launch(int mode, int n_units, cudaStream_t s, int pdl, const void *W,
                               int N, int K, const float *x, const float *nw, float eps, float *y,
                               int n_sms, const gemv_rope &rp) {
    typedef void (*kfn)(const void *, int, int, const float *, const float *, float, float *,
                        int, gemv_rope);
    kfn k = mode == KERN_STORE ? gemv_kernel<WDT, R, KERN_STORE>
          : mode == KERN_RESID ? gemv_kernel<WDT, R, KERN_RESID>
          : mode == KERN_ROPE  ? gemv_kernel<WDT, R, KERN_ROPE>
          : mode == KERN_GEGLU ? gemv_kernel<WDT, R, KERN_GEGLU>
                               : gemv_kernel<WDT, R, KERN_SWIGLU>;
    int KS;
    dim3 grid = gemv_grid(n_units, K, R, n_sms, 0, 0, &KS);
    return klaunch(k, grid, dim3(GEMV_THREADS), 0, s, pdl, W, N, K, x, nw, eps, y, KS, rp);
}

template <int WDT>
static cudaError_t gemv_dispatch(int R, int mode, int n_units, cudaStream_t s, int pdl,
                                 const void *W, int N, int K, const float *x, const float *nw,
                                 float eps, float *y, int n_sms, const gemv_rope &rp) {
    switch (R) {
    case 1: return gemv_launch<WDT, 1>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp);
    case 2: return gemv_launch<WDT, 2>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp);
    case 3: return gemv_launch<WDT, 3>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp);
    case 4: return gemv_launch<WDT, 4>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp);
    case 5: return gemv_launch<WDT, 5>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp);
    case 6: return gemv_launch<WDT, 6>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp);
    case 7: return gemv_launch<WDT, 7>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp);
    default: return gemv_launch<WDT, 8>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp);
    }
}

static int gemv_run(cudaStream_t s, const void *W, int wdt, int N, int K, const float *x, int R,
                    const float *norm_w, float eps, int mode, float *y, int n_sms, int pdl,
                    const gemv_rope &rp) {
    int vec = wdt == KERN_BF16 ? 8 : 4;
    const bool glu = mode == KERN_SWIGLU || mode == KERN_GEGLU;
    if (R < 1 || R > 8 || N < 1 || K < vec || K % vec || (glu && N % 2) || n_sms < 1 ||
        mode < KERN_STORE || mode > KERN_GEGLU)
        return (int)cudaErrorInvalidValue;
    int n_units = glu ? (N / 2 + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
    if (wdt == KERN_BF16)
        return (int)gemv_dispatch<KERN_BF16>(R, mode, n_units, s, pdl, W, N, K, x, norm_w, eps, y,
                                             n_sms, rp);
    return (int)gemv_dispatch<KERN_F32>(R, mode, n_units, s, pdl, W, N, K, x, norm_w, eps, y,
                                        n_sms, rp);
}

extern "C" int kern_gemv(cudaStream_t s, const void *W, int wdt, int N, int K, const float *x,
                         int R, const float *norm_w, float eps, int mode, float *y, int n_sms,
                         int pdl) {
    if (mode == KERN_ROPE) return (int)cudaErrorInvalidValue;   /* kern_gemv_qkv */
    gemv_rope rp;
    memset(&rp, 0, sizeof rp);
    return gemv_run(s, W, wdt, N, K, x, R, norm_w, eps, mode, y, n_sms, pdl, rp);
}

extern "C" int kern_gemv_qkv(cudaStream_t s, const void *W, int wdt, int K, const float *x, int R,
                             const float *norm_w, float eps, const float *bias,
                             const kern_step *st, int n_heads, const float *inv_freq, float *q,
                             kern_kv kv, int n_sms, int pdl) {
    if (kv.head_dim % 4 || n_heads < 1 || kv.n_kv < 1) return (int)cudaErrorInvalidValue;
    gemv_rope rp = {bias, st, inv_freq, q, kv, n_heads};
    int N = (n_heads + 2 * kv.n_kv) * kv.head_dim;
    return gemv_run(s, W, wdt, N, K, x, R, norm_w, eps, KERN_ROPE, NULL, n_sms, pdl, rp);
}

/* ------------------------------------------------- quantized weights
 *
 * kern_qgemv: the same units (4 weight rows a warp), grid, split-K and
 * epilogues as gemv_kernel; the weights are ggml blocks (engine/quant.c has
 * the layouts).  The layout of the work follows from the memory system:
 * a warp step covers 256 consecutive elements of its 4 rows (8 chunks of
 * 32: 8 blocks of the 32-element formats, one block of the K formats), and
 * lane l takes elements 8(l%4)..8(l%4)+7 of chunk l/4.  So the lanes of a
 * warp read consecutive block bytes (each byte loaded once, by one lane, in
 * 8-16 byte pieces) and consecutive activations (the f32 x rows, as the
 * dense kernel reads them), and each lane decodes only its 8 weights, once,
 * for all R rows.  The 8 elements share one scale a and offset b (a 16- or
 * 32-element group), so a lane adds a * sum(q x) + b * sum(x): two float
 * operations a weight at one row (int8 to float, FMA) instead of five; the
 * result differs from the product of the dequantized f32 weights by the
 * rounding of a*q + b (~1e-7 relative, tests allow 1e-5).  The next step's
 * blocks are loaded while the current step's products run, and the kernel
 * keeps to 128 registers (two 256-thread blocks a multiprocessor).  A
 * unit's rows may be of different types (gate and up, q|k|v segments): the
 * type is the same across a warp, so the switch does not diverge. */

/* Blocks sit at even addresses: 16-bit loads where a block's length is not
 * a multiple of 4 (the 32-element formats, Q6_K). */
__device__ __forceinline__ uint32_t ld_u16(const uint8_t *p) {
    return __ldg((const unsigned short *)p);
}
__device__ __forceinline__ uint32_t ld_u32_a2(const uint8_t *p) {
    return ld_u16(p) | ld_u16(p + 2) << 16;
}
/* bit i of b4 (i < 4) -> bit 4 of byte i */
__device__ __forceinline__ uint32_t spread4(uint32_t b4) {
    return (b4 & 1) << 4 | (b4 & 2) << 11 | (b4 & 4) << 18 | (b4 & 8) << 25;
}

/* Scale and min of K-format sub-block j (engine/quant.c: scale_min_k4);
 * s: the 12 scale bytes as three words. */
__device__ __forceinline__ void qk_scale_min(int j, uint32_t s0, uint32_t s1, uint32_t s2, int *sc,
                                             int *mn) {
    auto byte = [&](int i) {
        const uint32_t w = i < 4 ? s0 : i < 8 ? s1 : s2;
        return (int)(w >> (8 * (i & 3)) & 0xff);
    };
    if (j < 4) {
        *sc = byte(j) & 63;
        *mn = byte(j + 4) & 63;
    } else {
        *sc = (byte(j + 4) & 0xf) | (byte(j - 4) >> 6) << 4;
        *mn = (byte(j + 4) >> 4) | (byte(j) >> 6) << 4;
    }
}

/* A lane's part of a row's chunk as loaded, before decoding: w0, w1 the 8
 * bytes of quants that hold its elements (int8 for Q8_0, nibbles for the
 * 4/5-bit formats, Q6_K's low 4 bits); e0, e1 the extra bits (Q5_K, Q6_K:
 * the 8 high-bit bytes; Q5_0 / Q5_1: qh in e0); h the f16 scale(s) (d, and
 * m or dmin in the high half; Q6_K: its group's int8 scales in the high
 * half); s0..s2 the K formats' 12 scale bytes. */
struct qpart {
    uint32_t w0, w1, e0, e1, h, s0, s1, s2;
};

/* Loads part p (elements 8p..8p+7) of chunk c (elements 32c..32c+31) of a
 * row of type t starting at row. */
__device__ __forceinline__ void qpart_load(int t, const uint8_t *row, int c, int p, qpart &r) {
    switch (t) {
    case ENG_DT_Q8_0: {   /* d, int8 q[32] */
        const uint8_t *b = row + (size_t)c * 34;
        r.h = ld_u16(b);
        r.w0 = ld_u32_a2(b + 2 + 8 * p);
        r.w1 = ld_u32_a2(b + 6 + 8 * p);
        break;
    }
    case ENG_DT_Q4_0:     /* d, q[16] */
    case ENG_DT_Q4_1:     /* d, m, q[16] */
    case ENG_DT_Q5_0:     /* d, qh, q[16] */
    case ENG_DT_Q5_1: {   /* d, m, qh, q[16]: element j < 16 low nibble of q[j], j + 16 its high */
        const bool one = t == ENG_DT_Q4_1 || t == ENG_DT_Q5_1, five = t == ENG_DT_Q5_0 || t == ENG_DT_Q5_1;
        const int bytes = 18 + (one ? 2 : 0) + (five ? 4 : 0);
        const uint8_t *b = row + (size_t)c * bytes;
        r.h = one ? ld_u32_a2(b) : ld_u16(b);
        if (five) r.e0 = ld_u32_a2(b + (one ? 4 : 2));
        const uint8_t *q = b + bytes - 16 + 8 * (p & 1);
        r.w0 = ld_u32_a2(q);
        r.w1 = ld_u32_a2(q + 4);
        break;
    }
    case ENG_DT_Q4_K:     /* d, dmin, scales[12], q[128]: 32 bytes of q per two sub-blocks */
    case ENG_DT_Q5_K: {   /* Q5_K: qh[32] between scales and q */
        const bool five = t == ENG_DT_Q5_K;
        const uint8_t *b = row + (size_t)(c >> 3) * (five ? 176 : 144);   /* 16-aligned */
        const uint4 hd = __ldg((const uint4 *)b);
        r.h = hd.x; r.s0 = hd.y; r.s1 = hd.z; r.s2 = hd.w;
        const uint2 q = __ldg((const uint2 *)(b + (five ? 48 : 16) + 32 * ((c & 7) >> 1) + 8 * p));
        r.w0 = q.x; r.w1 = q.y;
        if (five) {
            const uint2 e = __ldg((const uint2 *)(b + 16 + 8 * p));
            r.e0 = e.x; r.e1 = e.y;
        }
        break;
    }
    default: {   /* ENG_DT_Q6_K: ql[128], qh[64], int8 scales[16], d */
        const uint8_t *b = row + (size_t)(c >> 3) * 210;
        const int s = c & 7, half = s >> 2, tq = s & 3;
        r.h = ld_u16(b + 208) | ld_u16(b + 192 + 8 * half + 2 * tq) << 16;
        const uint8_t *ql = b + 64 * half + 32 * (tq & 1) + 8 * p, *qh = b + 128 + 32 * half + 8 * p;
        r.w0 = ld_u32_a2(ql);
        r.w1 = ld_u32_a2(ql + 4);
        r.e0 = ld_u32_a2(qh);
        r.e1 = ld_u32_a2(qh + 4);
        break;
    }
    }
}

__device__ __forceinline__ float f16_lo(uint32_t h) {
    return __half2float(__ushort_as_half((unsigned short)(h & 0xffff)));
}

/* Int8 byte i of w as a float, exactly, without an int-to-float
 * conversion (a slow pipe): the byte biased to unsigned (+128) becomes
 * the low mantissa bits of 2^23, and the float subtraction of 2^23 + 128
 * leaves the value. */
__device__ __forceinline__ float qfloat(uint32_t w, int i) {
    const uint32_t bits = __byte_perm(w ^ 0x80808080u, 0x4B000000u, 0x7440u | (uint32_t)i);
    return __uint_as_float(bits) - 8388736.0f;
}

/* Decodes part p of chunk c of type t: the 8 quants as floats (small
 * integers, exact) and the group's weight = a * q + b. */
__device__ __forceinline__ void qpart_decode(int t, const qpart &r, int c, int p, float (&q)[8],
                                             float &a, float &b) {
    uint32_t v0, v1;
    b = 0.f;
    switch (t) {
    case ENG_DT_Q8_0:
        a = f16_lo(r.h);
        v0 = r.w0; v1 = r.w1;
        break;
    case ENG_DT_Q4_0:
    case ENG_DT_Q4_1:
    case ENG_DT_Q5_0:     /* bit k of qh: element k's fifth bit */
    case ENG_DT_Q5_1: {
        const bool one = t == ENG_DT_Q4_1 || t == ENG_DT_Q5_1, five = t == ENG_DT_Q5_0 || t == ENG_DT_Q5_1;
        a = f16_lo(r.h);
        if (one) b = f16_lo(r.h >> 16);
        const int sh = 4 * (p >> 1);
        v0 = r.w0 >> sh & 0x0f0f0f0fu;
        v1 = r.w1 >> sh & 0x0f0f0f0fu;
        if (five) {
            const uint32_t bits = r.e0 >> (8 * p);
            v0 |= spread4(bits & 0xf);
            v1 |= spread4(bits >> 4 & 0xf);
        }
        const uint32_t off = one ? 0u : five ? 0x10101010u : 0x08080808u;
        v0 = __vsub4(v0, off);
        v1 = __vsub4(v1, off);
        break;
    }
    case ENG_DT_Q4_K:
    case ENG_DT_Q5_K: {   /* sub-block s: low nibbles for even s, high for odd; Q5_K: bit s of qh */
        const int s = c & 7, sh = 4 * (s & 1);
        int sc, mn;
        qk_scale_min(s, r.s0, r.s1, r.s2, &sc, &mn);
        a = __fmul_rn(f16_lo(r.h), (float)sc);
        b = -__fmul_rn(f16_lo(r.h >> 16), (float)mn);
        v0 = r.w0 >> sh & 0x0f0f0f0fu;
        v1 = r.w1 >> sh & 0x0f0f0f0fu;
        if (t == ENG_DT_Q5_K) {
            v0 |= (r.e0 >> s & 0x01010101u) << 4;
            v1 |= (r.e1 >> s & 0x01010101u) << 4;
        }
        break;
    }
    default: {   /* ENG_DT_Q6_K: low 4 bits from ql, top 2 from qh, minus 32 */
        const int tq = c & 3;
        a = __fmul_rn(f16_lo(r.h), (float)(int8_t)(r.h >> (p < 2 ? 16 : 24) & 0xff));
        const int sl = 4 * (tq >> 1), sh = 2 * tq;
        v0 = __vsub4((r.w0 >> sl & 0x0f0f0f0fu) | (r.e0 >> sh & 0x03030303u) << 4, 0x20202020u);
        v1 = __vsub4((r.w1 >> sl & 0x0f0f0f0fu) | (r.e1 >> sh & 0x03030303u) << 4, 0x20202020u);
        break;
    }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        q[i] = qfloat(v0, i);
        q[4 + i] = qfloat(v1, i);
    }
}

/* Row n's start, type and bytes per row in W (segments chosen with
 * constant indices: no copy of W to local memory). */
__device__ __forceinline__ const uint8_t *qrow(const kern_qw &W, int n, int *type) {
    const void *w = W.w[0];
    int t = W.type[0], start = 0, rb = W.row_bytes[0];
#pragma unroll
    for (int s = 1; s < KERN_QSEGS; s++)
        if (s < W.n_seg && n >= W.end[s - 1]) {
            w = W.w[s]; t = W.type[s]; start = W.end[s - 1]; rb = W.row_bytes[s];
        }
    *type = t;
    return (const uint8_t *)w + (size_t)(n - start) * rb;
}

/* The unit's four rows' parts of chunk c (nothing past the last chunk). */
__device__ __forceinline__ void qload4(const int (&types)[GEMV_NR],
                                       const uint8_t *const (&wr)[GEMV_NR], int c, int p,
                                       int n_chunks, qpart (&raw)[GEMV_NR]) {
    if (c >= n_chunks) return;
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) qpart_load(types[j], wr[j], c, p, raw[j]);
}

/* Bytes of a step (8 chunks) of a row of type t: 8 blocks of the
 * 32-element formats, one block of the K formats. */
__device__ __forceinline__ int qstep_bytes(int t) {
    switch (t) {
    case ENG_DT_Q8_0: return 8 * 34;
    case ENG_DT_Q4_0: return 8 * 18;
    case ENG_DT_Q4_1: return 8 * 20;
    case ENG_DT_Q5_0: return 8 * 22;
    case ENG_DT_Q5_1: return 8 * 24;
    case ENG_DT_Q4_K: return 144;
    case ENG_DT_Q5_K: return 176;
    default: return 210;   /* ENG_DT_Q6_K */
    }
}

/* L2 prefetches of the unit's rows at steps s0 + KS, s0 + 2 KS, ... (step
 * s0 is loaded into registers by qload4): a warp then has its whole share
 * of K on the way at once instead of one step, which the memory latency
 * needs (~20-30 KB in flight per multiprocessor at ~3 TB/s); a prefetch
 * takes no register.  The lanes spread over a step's bytes, so every
 * 128-byte line of it is asked for; addresses stay inside the row
 * (n_chunks chunks). */
__device__ __forceinline__ void qprefetch(const int (&types)[GEMV_NR],
                                          const uint8_t *const (&wr)[GEMV_NR], int s0, int KS,
                                          int n_steps, int n_chunks, int lane) {
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) {
        const int S = qstep_bytes(types[j]);
        const int k_fmt = types[j] == ENG_DT_Q4_K || types[j] == ENG_DT_Q5_K || types[j] == ENG_DT_Q6_K;
        const size_t row_len = k_fmt ? (size_t)(n_chunks / 8) * S : (size_t)n_chunks * (S / 8);
        const size_t off = (size_t)lane * ((S + 31) / 32);
        for (int st = s0 + KS; st < n_steps; st += KS) {
            size_t a = (size_t)st * S + off;
            if (a >= row_len) a = row_len - 1;
            asm volatile("prefetch.global.L2 [%0];" ::"l"(wr[j] + a));
        }
    }
}

/* acc[j][r] += a_j * sum_i q[j][i] x'[r][k + i] + b_j * sum_i x'[r][k + i]
 * over the lane's 8 elements k..k+7 (x' = x * nw with a norm). */
template <int R>
__device__ __forceinline__ void qgemv_part(float (&acc)[GEMV_NR][R], const float (&q)[GEMV_NR][8],
                                          const float (&a)[GEMV_NR], const float (&b)[GEMV_NR],
                                          const float *x, int K, int k,
                                          const float *__restrict__ nw) {
    float nv[8];
    if (nw) {
        const float4 t0 = __ldg((const float4 *)(nw + k)), t1 = __ldg((const float4 *)(nw + k + 4));
        nv[0] = t0.x; nv[1] = t0.y; nv[2] = t0.z; nv[3] = t0.w;
        nv[4] = t1.x; nv[5] = t1.y; nv[6] = t1.z; nv[7] = t1.w;
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float4 t0 = __ldca((const float4 *)(x + (size_t)r * K + k));
        const float4 t1 = __ldca((const float4 *)(x + (size_t)r * K + k + 4));
        float xv[8] = {t0.x, t0.y, t0.z, t0.w, t1.x, t1.y, t1.z, t1.w};
        if (nw)
#pragma unroll
            for (int i = 0; i < 8; i++) xv[i] *= nv[i];
        float sx = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) sx += xv[i];
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++) {
            float sq = 0.f;
#pragma unroll
            for (int i = 0; i < 8; i++) sq = fmaf(q[j][i], xv[i], sq);
            acc[j][r] = fmaf(a[j], sq, fmaf(b[j], sx, acc[j][r]));
        }
    }
}

/* Blocks of qgemv_kernel per multiprocessor: two (128 registers) up to 2
 * rows, where that spills nothing; one from 3 rows, where 128 registers
 * spilled 60-250 bytes a thread (qprefetch keeps the bytes in flight). */
#define QGEMV_BLOCKS(R) ((R) <= 2 ? 2 : 1)

template <int R, int MODE>
__global__ void __launch_bounds__(GEMV_THREADS, QGEMV_BLOCKS(R))
qgemv_kernel(kern_qw W, int N, int K, const float *x, const float *__restrict__ nw, float eps,
             float *y, int KS, gemv_rope rp) {
    __shared__ float s_rstd[R];
    __shared__ float s_part[GEMV_WARPS][R];
    __shared__ float s_red[GEMV_WARPS][GEMV_NR][R];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int upc = GEMV_WARPS / KS;
    constexpr bool GLU = MODE == KERN_SWIGLU || MODE == KERN_GEGLU;
    const int n_units = GLU ? (N / 2 + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
    const int stride = gridDim.x * upc;
    /* a step: 8 chunks; the lane's chunk is c = 8 * step + lane / 4, part lane % 4 */
    const int n_chunks = K / 32, n_steps = (n_chunks + 7) / 8, s0 = warp % KS;
    const int p = lane & 3, cl = lane >> 2;
    int unit = blockIdx.x * upc + warp / KS;

    rope_pre pre = {};
    const int eu = threadIdx.x / (GEMV_NR * R), ej = (threadIdx.x / R) % GEMV_NR,
              er = threadIdx.x % R;
    const bool has_item = threadIdx.x < upc * GEMV_NR * R;
    if (MODE == KERN_ROPE && has_item && blockIdx.x * upc + eu < n_units)
        pre = rope_prepare(rp, blockIdx.x * upc + eu, ej, er);
    /* the first step's blocks are loaded before waiting for x */
    int rows[GEMV_NR], types[GEMV_NR];
    const uint8_t *wr[GEMV_NR];
    qpart raw[GEMV_NR];
    unit_rows<MODE>(rp, N, n_units, unit, rows);
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) wr[j] = qrow(W, rows[j], &types[j]);
    qload4(types, wr, 8 * s0 + cl, p, n_chunks, raw);
    qprefetch(types, wr, s0, KS, n_steps, n_chunks, lane);
    pdl_launch();
    pdl_wait();

    for (int base = blockIdx.x * upc; base < n_units; base += stride) {
        float acc[GEMV_NR][R];
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
            for (int r = 0; r < R; r++) acc[j][r] = 0.f;
        for (int st = s0; st < n_steps; st += KS) {
            const int c = 8 * st + cl;
            float q[GEMV_NR][8], a[GEMV_NR], b[GEMV_NR];
            if (c < n_chunks) {
#pragma unroll
                for (int j = 0; j < GEMV_NR; j++) qpart_decode(types[j], raw[j], c, p, q[j], a[j], b[j]);
            }
            /* the next step's blocks are in flight during this step's products */
            if (st + KS < n_steps) qload4(types, wr, c + 8 * KS, p, n_chunks, raw);
            if (c < n_chunks) qgemv_part<R>(acc, q, a, b, x, K, 32 * c + 8 * p, nw);
        }
        /* the next round's first blocks are in flight during this round's
         * reduction and epilogue */
        unit += stride;
        if (base + stride < n_units) {
            unit_rows<MODE>(rp, N, n_units, unit, rows);
#pragma unroll
            for (int j = 0; j < GEMV_NR; j++) wr[j] = qrow(W, rows[j], &types[j]);
            qload4(types, wr, 8 * s0 + cl, p, n_chunks, raw);
            qprefetch(types, wr, s0, KS, n_steps, n_chunks, lane);
        }
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
            for (int r = 0; r < R; r++) {
                float v = warp_sum(acc[j][r]);
                if (lane == 0) s_red[warp][j][r] = v;
            }
        if (nw && base == blockIdx.x * upc) gemv_rstd<R>(x, K, eps, s_rstd, s_part);
        __syncthreads();
        const int u = base + eu;
        if (has_item && u < n_units)
            gemv_epilogue<R, MODE>(s_red, KS, eu, u, ej, er, nw ? s_rstd[er] : 1.f, N, y, rp, pre,
                                   base == blockIdx.x * upc);
        if (base + stride < n_units) __syncthreads();   /* s_red is reused */
    }
}

template <int R>
static cudaError_t qgemv_launch(int mode, int n_units, cudaStream_t s, int pdl, const kern_qw &W,
                                int N, int K, const float *x, const float *nw, float eps, float *y,
                                int n_sms, const gemv_rope &rp) {
    typedef void (*kfn)(kern_qw, int, int, const float *, const float *, float, float *, int,
                        gemv_rope);
    kfn k = mode == KERN_STORE ? qgemv_kernel<R, KERN_STORE>
          : mode == KERN_RESID ? qgemv_kernel<R, KERN_RESID>
          : mode == KERN_ROPE  ? qgemv_kernel<R, KERN_ROPE>
          : mode == KERN_GEGLU ? qgemv_kernel<R, KERN_GEGLU>
                               : qgemv_kernel<R, KERN_SWIGLU>;
    /* as many blocks a multiprocessor as qgemv_kernel's launch bounds hold;
     * K split further (4, 8 warps a unit) while the blocks would not cover
     * the multiprocessors and each warp keeps a step of 256 elements */
    const int n_steps = (K / 32 + 7) / 8;
    int ks = K > 4096 ? 8 : 2;
    while (ks < GEMV_WARPS && n_units / (GEMV_WARPS / ks) < n_sms && n_steps >= 2 * ks) ks *= 2;
    int KS;
    dim3 grid = gemv_grid(n_units, K, R, n_sms, QGEMV_BLOCKS(R), ks, &KS);
    return klaunch(k, grid, dim3(GEMV_THREADS), 0, s, pdl, W, N, K, x, nw, eps, y, KS, rp);
}

extern "C" int kern_qtype_ok(int t) {
    return t == ENG_DT_Q8_0 || t == ENG_DT_Q4_0 || t == ENG_DT_Q4_1 || t == ENG_DT_Q5_0 ||
           t == ENG_DT_Q5_1 || t == ENG_DT_Q4_K || t == ENG_DT_Q5_K || t == ENG_DT_Q6_K;
}

static int qgemv_run(cudaStream_t s, const kern_qw *W, int N, int K, const float *x, int R,
                     const float *norm_w, float eps, int mode, float *y, int n_sms, int pdl,
                     const gemv_rope &rp) {
    const bool glu = mode == KERN_SWIGLU || mode == KERN_GEGLU;
    if (!W || R < 1 || R > 8 || N < 1 || K < 32 || K % 32 || (glu && N % 2) || n_sms < 1 ||
        mode < KERN_STORE || mode > KERN_GEGLU || W->n_seg < 1 || W->n_seg > KERN_QSEGS ||
        W->end[W->n_seg - 1] != N)
        return (int)cudaErrorInvalidValue;
    for (int i = 0, start = 0; i < W->n_seg; start = W->end[i++]) {
        const int be = kern_qtype_ok(W->type[i]) ? eng_dt_block(W->type[i]) : 0;
        const int bytes = eng_dt_block_bytes(W->type[i]);
        if (!be || K % be || W->end[i] <= start || !W->w[i] ||
            (long long)W->row_bytes[i] != (long long)(K / be) * bytes ||
            ((uintptr_t)W->w[i] & ((be == 256 && W->type[i] != ENG_DT_Q6_K) ? 15 : 1)))
            return (int)cudaErrorInvalidValue;
    }
    const int n_units = glu ? (N / 2 + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
#define QL(r) qgemv_launch<r>(mode, n_units, s, pdl, *W, N, K, x, norm_w, eps, y, n_sms, rp)
    switch (R) {
    case 1: return (int)QL(1);
    case 2: return (int)QL(2);
    case 3: return (int)QL(3);
    case 4: return (int)QL(4);
    case 5: return (int)QL(5);
    case 6: return (int)QL(6);
    case 7: return (int)QL(7);
    default: return (int)QL(8);
    }
#undef QL
}

extern "C" int kern_qgemv(cudaStream_t s, const kern_qw *W, int N, int K, const float *x, int R,
                          const float *norm_w, float eps, int mode, float *y, int n_sms, int pdl) {
    if (mode == KERN_ROPE) return (int)cudaErrorInvalidValue;   /* kern_qgemv_qkv */
    gemv_rope rp;
    memset(&rp, 0, sizeof rp);
    return qgemv_run(s, W, N, K, x, R, norm_w, eps, mode, y, n_sms, pdl, rp);
}

extern "C" int kern_qgemv_qkv(cudaStream_t s, const kern_qw *W, int K, const float *x, int R,
                              const float *norm_w, float eps, const float *bias,
                              const kern_step *st, int n_heads, const float *inv_freq, float *q,
                              kern_kv kv, int n_sms, int pdl) {
    if (kv.head_dim % 4 || n_heads < 1 || kv.n_kv < 1) return (int)cudaErrorInvalidValue;
    gemv_rope rp = {bias, st, inv_freq, q, kv, n_heads};
    int N = (n_heads + 2 * kv.n_kv) * kv.head_dim;
    return qgemv_run(s, W, N, K, x, R, norm_w, eps, KERN_ROPE, NULL, n_sms, pdl, rp);
}
