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
#include "kern_quant.cuh"

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
 * rows.  RB (ENG_ACT_BF16): x' is rounded to bf16 first, so the norm is
 * applied whole before it, (x * rs[r]) * norm_w as add_norm and the CPU
 * reference compute it (s_rs: the rows' 1/rms in shared memory, worked out
 * before the loop). */
__device__ __forceinline__ float bf16_round(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
template <int WDT, int R, bool RB>
__device__ __forceinline__ void gemv_step(float (&acc)[GEMV_NR][R], const uint4 (&w)[GEMV_NR],
                                          const float *x, int K, int k,
                                          const float *__restrict__ nw, const float *s_rs) {
    constexpr int VEC = wvec<WDT>::n;
    constexpr bool scale_w = !RB && R > GEMV_NR;
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
        if constexpr (RB) {
            if (nw)
#pragma unroll
                for (int i = 0; i < VEC; i++) xv[i] = bf16_round((xv[i] * s_rs[r]) * nv[i]);
            else
#pragma unroll
                for (int i = 0; i < VEC; i++) xv[i] = bf16_round(xv[i]);
        } else if (nw && !scale_w) {
#pragma unroll
            for (int i = 0; i < VEC; i++) xv[i] *= nv[i];
        }
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
template <int R, int MODE, bool RB = false>
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
            float a = glu_act(MODE == KERN_GEGLU, v);
            /* RB: the output is the down product's input, rounded here once
             * rather than by every unit of the down GEMV that reads it */
            y[(size_t)r * I + i] = RB ? bf16_round(a * up) : a * up;
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
template <int WDT, int R, int MODE, bool RB>
__device__ __forceinline__ void gemv_body(const void *__restrict__ Wv, int N, int K, const float *x,
                                          const float *__restrict__ nw, float eps, float *y, int KS,
                                          const gemv_rope &rp) {
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
    /* RB with a norm: the rows' 1/rms before the products (each input
     * element is rounded after the whole norm) */
    if (RB && nw) {
        gemv_rstd<R>(x, K, eps, s_rstd, s_part);
        __syncthreads();
    }

    for (int base = blockIdx.x * upc; base < n_units; base += stride) {
        float acc[GEMV_NR][R];
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
            for (int r = 0; r < R; r++) acc[j][r] = 0.f;

        for (int k = k0; k < K;) {
            gemv_step<WDT, R, RB>(acc, w0, x, K, k, nw, s_rstd);
            if (k + step < K) gemv_step<WDT, R, RB>(acc, w1, x, K, k + step, nw, s_rstd);
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
        if (!RB && nw && base == blockIdx.x * upc) gemv_rstd<R>(x, K, eps, s_rstd, s_part);
        __syncthreads();

        const int u = base + eu;
        if (has_item && u < n_units)
            gemv_epilogue<R, MODE, RB>(s_red, KS, eu, u, ej, er, !RB && nw ? s_rstd[er] : 1.f, N, y, rp, pre,
                                   base == blockIdx.x * upc);
        if (base + stride < n_units) __syncthreads();   /* s_red is reused */
    }
}

template <int WDT, int R, int MODE, bool RB>
__global__ void __launch_bounds__(GEMV_THREADS)
gemv_kernel(const void *__restrict__ Wv, int N, int K, const float *x,
            const float *__restrict__ nw, float eps, float *y, int KS, gemv_rope rp) {
    gemv_body<WDT, R, MODE, RB>(Wv, N, K, x, nw, eps, y, KS, rp);
}

/* The q/k/v product with its ROPE epilogue (the items' destinations, worked
 * out before the wait, live across the K loop) takes more registers than
 * the other modes: 102 at one row (two blocks a multiprocessor where
 * gemv_grid's cap is three) and 146-162 at three and four rows (one where
 * the cap is two).  Where its grid would then run in two waves (7B's q/k/v:
 * 288 blocks at one row), this instance, held to the cap's blocks, takes
 * it: ptxas spills a few bytes of the held destinations (40 at one row, 92
 * at four), which cost 1-4% where one wave held anyway (NOTES.md v28). */
#define GEMV_ROPE_BLOCKS(R) ((R) == 1 ? 3 : (R) <= 4 ? 2 : 1)
template <int WDT, int R, bool RB>
__global__ void __launch_bounds__(GEMV_THREADS, GEMV_ROPE_BLOCKS(R))
gemv_rope_kernel(const void *__restrict__ Wv, int N, int K, const float *x,
                 const float *__restrict__ nw, float eps, float *y, int KS, gemv_rope rp) {
    gemv_body<WDT, R, KERN_ROPE, RB>(Wv, N, K, x, nw, eps, y, KS, rp);
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

/* Blocks of GEMV_THREADS a multiprocessor holds of kernel k. */
template <typename F>
static int gemv_fit(F k) {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k, GEMV_THREADS, 0) != cudaSuccess || n < 1) n = 1;
    return n;
}

template <int WDT, int R, bool RB>
static cudaError_t gemv_launch(int mode, int n_units, cudaStream_t s, int pdl, const void *W,
                               int N, int K, const float *x, const float *nw, float eps, float *y,
                               int n_sms, const gemv_rope &rp) {
    typedef void (*kfn)(const void *, int, int, const float *, const float *, float, float *,
                        int, gemv_rope);
    kfn k = mode == KERN_STORE ? gemv_kernel<WDT, R, KERN_STORE, RB>
          : mode == KERN_RESID ? gemv_kernel<WDT, R, KERN_RESID, RB>
          : mode == KERN_ROPE  ? gemv_kernel<WDT, R, KERN_ROPE, RB>
          : mode == KERN_GEGLU ? gemv_kernel<WDT, R, KERN_GEGLU, RB>
                               : gemv_kernel<WDT, R, KERN_SWIGLU, RB>;
    int KS;
    dim3 grid = gemv_grid(n_units, K, R, n_sms, 0, 0, &KS);
    /* a grid past one wave of the instance (its blocks a multiprocessor
     * below the cap's) would leave its last blocks a wave of their own:
     * the ROPE product then takes its held instance, anything else a
     * grid of what fits; a grid of at most one block a multiprocessor
     * always fits, so the occupancy is asked for only past that */
    const int cap = R == 1 ? 3 : 2;
    int fit = (int)grid.x > n_sms ? gemv_fit(k) : cap;
    if (fit < cap && (int)grid.x > fit * n_sms) {
        if (mode == KERN_ROPE) {
            k = gemv_rope_kernel<WDT, R, RB>;
            fit = gemv_fit(k);
        }
        if (fit < cap) grid = gemv_grid(n_units, K, R, n_sms, fit, 0, &KS);
    }
    return klaunch(k, grid, dim3(GEMV_THREADS), 0, s, pdl, W, N, K, x, nw, eps, y, KS, rp);
}

/* Inputs rounded to bf16 (RB, KERN_GEMV_IN_BF16): bf16 weights, 1..GEMV_RB_ROWS rows. */
#define GEMV_RB_ROWS 4
template <int WDT, bool RB>
static cudaError_t gemv_dispatch(int R, int mode, int n_units, cudaStream_t s, int pdl,
                                 const void *W, int N, int K, const float *x, const float *nw,
                                 float eps, float *y, int n_sms, const gemv_rope &rp) {
#define GEMV_GO(n) return gemv_launch<WDT, n, RB>(mode, n_units, s, pdl, W, N, K, x, nw, eps, y, n_sms, rp)
    switch (R) {
    case 1: GEMV_GO(1);
    case 2: GEMV_GO(2);
    case 3: GEMV_GO(3);
    case 4: GEMV_GO(4);
    }
    if constexpr (RB) {
        return cudaErrorInvalidValue;
    } else {
        switch (R) {
        case 5: GEMV_GO(5);
        case 6: GEMV_GO(6);
        case 7: GEMV_GO(7);
        default: GEMV_GO(8);
        }
    }
#undef GEMV_GO
}

static int gemv_run(cudaStream_t s, const void *W, int wdt, int N, int K, const float *x, int R,
                    const float *norm_w, float eps, int mode, float *y, int n_sms, int pdl,
                    const gemv_rope &rp) {
    const bool rb = wdt & KERN_GEMV_IN_BF16;
    wdt &= ~KERN_GEMV_IN_BF16;
    int vec = wdt == KERN_BF16 ? 8 : 4;
    const bool glu = mode == KERN_SWIGLU || mode == KERN_GEGLU;
    if (R < 1 || R > 8 || N < 1 || K < vec || K % vec || (glu && N % 2) || n_sms < 1 ||
        mode < KERN_STORE || mode > KERN_GEGLU || (wdt != KERN_BF16 && wdt != KERN_F32) ||
        (rb && (wdt != KERN_BF16 || R > GEMV_RB_ROWS)))
        return (int)cudaErrorInvalidValue;
    int n_units = glu ? (N / 2 + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
    if (rb)
        return (int)gemv_dispatch<KERN_BF16, true>(R, mode, n_units, s, pdl, W, N, K, x, norm_w, eps, y,
                                                   n_sms, rp);
    if (wdt == KERN_BF16)
        return (int)gemv_dispatch<KERN_BF16, false>(R, mode, n_units, s, pdl, W, N, K, x, norm_w, eps, y,
                                                    n_sms, rp);
    return (int)gemv_dispatch<KERN_F32, false>(R, mode, n_units, s, pdl, W, N, K, x, norm_w, eps, y,
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

extern "C" size_t kern_qrow_bytes(int type, int K) {
    if (!kern_qtype_ok(type) || K <= 0 || K % eng_dt_block(type)) return 0;
    const size_t nb = (size_t)(K / eng_dt_block(type));
    if (type == ENG_DT_Q6_K) return nb * QK6_STRIDE;
    if (eng_dt_block(type) == 32) return (nb * eng_dt_block_bytes(type) + 15) / 16 * 16;
    return nb * eng_dt_block_bytes(type);
}

extern "C" void kern_qpack_row(int type, const void *src, int K, void *dst) {
    const size_t rb = kern_qrow_bytes(type, K);
    const uint8_t *s = (const uint8_t *)src;
    uint8_t *d = (uint8_t *)dst;
    if (!rb) return;
    memset(d, 0, rb);
    const int nb = K / eng_dt_block(type);
    if (type == ENG_DT_Q6_K) {
        for (int b = 0; b < nb; b++) memcpy(d + (size_t)b * QK6_STRIDE, s + (size_t)b * 210, 210);
    } else if (eng_dt_block(type) == 32) {   /* GGUF: d (m) (qh) q */
        const q32_planes l = q32_layout(type, nb);
        const int bb = eng_dt_block_bytes(type), five = type == ENG_DT_Q5_0 || type == ENG_DT_Q5_1;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = s + (size_t)b * bb;
            memcpy(d + (size_t)b * l.qb, blk + bb - l.qb, l.qb);
            memcpy(d + l.doff + (size_t)b * l.db, blk, l.db);
            if (five) memcpy(d + l.hoff + (size_t)b * 4, blk + l.db, 4);
        }
    } else {
        memcpy(d, s, rb);
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
 * row of type t (device layout, kern_qpack_row) of n_chunks chunks starting
 * at row. */
__device__ __forceinline__ void qpart_load(int t, const uint8_t *row, int c, int p, int n_chunks,
                                           qpart &r) {
    switch (t) {
    case ENG_DT_Q8_0: {   /* planes (q32_layout): int8 q[32] per block, d */
        r.h = ld_u16(row + (size_t)n_chunks * 32 + 2 * c);
        const uint2 q = __ldg((const uint2 *)(row + (size_t)c * 32 + 8 * p));
        r.w0 = q.x; r.w1 = q.y;
        break;
    }
    case ENG_DT_Q4_0:     /* planes: q[16] per block, (qh), d (m); element j < 16 low */
    case ENG_DT_Q4_1:     /* nibble of q[j], j + 16 its high */
    case ENG_DT_Q5_0:
    case ENG_DT_Q5_1: {
        const bool one = t == ENG_DT_Q4_1 || t == ENG_DT_Q5_1, five = t == ENG_DT_Q5_0 || t == ENG_DT_Q5_1;
        const q32_planes l = q32_layout(t, n_chunks);
        r.h = one ? __ldg((const unsigned *)(row + l.doff + 4 * (size_t)c)) : ld_u16(row + l.doff + 2 * (size_t)c);
        if (five) r.e0 = __ldg((const unsigned *)(row + l.hoff + 4 * (size_t)c));
        const uint2 q = __ldg((const uint2 *)(row + 16 * (size_t)c + 8 * (p & 1)));
        r.w0 = q.x; r.w1 = q.y;
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
    default: {   /* ENG_DT_Q6_K: ql[128], qh[64], int8 scales[16], d; padded to 224 bytes */
        const uint8_t *b = row + (size_t)(c >> 3) * QK6_STRIDE;
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

/* The unit's four rows' parts of chunk c (nothing past the last chunk). */
__device__ __forceinline__ void qload4(const int (&types)[GEMV_NR],
                                       const uint8_t *const (&wr)[GEMV_NR], int c, int p,
                                       int n_chunks, qpart (&raw)[GEMV_NR]) {
    if (c >= n_chunks) return;
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) qpart_load(types[j], wr[j], c, p, n_chunks, raw[j]);
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

/* ------------------------------------------- quantized, one input row
 *
 * kern_qgemv at R = 1 (decode at batch 1), every block type (the device
 * layout puts each lane's quants in aligned 16-byte pieces): the units,
 * split-K and epilogues of qgemv_kernel, with three changes that cut the
 * work per weight to about a byte permute and an FMA:
 * - a lane takes "lane chunks" of 32 weights of a row, two at a time (a
 *   pair, q1_pair_chunk): 16 bytes of quants (Q8_0: 32) holding two groups
 *   of 16 consecutive elements, L and H, each of one scale a and offset b
 *   (w = a q + b), so the scales are decoded once per 32 weights (a Q4_K
 *   pair: once per 64);
 * - the block stages the activations once in shared memory, normalised
 *   (x * norm_w), in the order the lanes read them (lane chunk by lane
 *   chunk, its 8 float4 slots swizzled so that 8 consecutive lanes read 8
 *   different bank quads), with the sum of each 16-element group; the RMS
 *   statistics come out of the same pass;
 * - a 4- to 6-bit quant q, shifted left to fill 7 bits (v = q 2^s), is put
 *   into the mantissa of 0.5 by one byte permute: f = 0.5 + v / 256
 *   exactly, so S = sum(x f) = sum(x)/2 + 2^s sum(x q) / 256, and a group
 *   adds a sum(x q) + b sum(x) = A S + B sum(x), A = a 2^(8-s), B = b - A/2
 *   (the cancellation costs a few bits of S's 24, well inside the 1e-5 the
 *   tests allow).  Q8_0 quants (8 bits) take the 2^23 trick (qfloat).
 * A product may have segments of several types (q|k|v of Q4_K and Q6_K):
 * x' is staged once per class of element order, and each unit, whose four
 * rows share a type, runs its type's loop.  A unit of mixed rows (a gate |
 * up of two types) goes to qgemv_kernel. */
enum { Q1_K4 = 0, Q1_K6 = 1, Q1_B32 = 2, Q1_CLASSES = 3 };

/* Which elements a lane chunk holds (the class of its type); -1: a type
 * qgemv1_kernel does not take. */
static __host__ __device__ inline int q1_class(int t) {
    return t == ENG_DT_Q4_K || t == ENG_DT_Q5_K ? Q1_K4 : t == ENG_DT_Q6_K ? Q1_K6
         : t == ENG_DT_Q8_0 || t == ENG_DT_Q4_0 || t == ENG_DT_Q4_1 || t == ENG_DT_Q5_0 ||
           t == ENG_DT_Q5_1 ? Q1_B32 : -1;
}

/* First element of lane chunk c's group L; group H starts q1_hoff later.
 * K4: chunk i of a block = 16 bytes of qs at 16 + 16 i, whose low nibbles
 * are sub-block 2(i/2) elements 16(i%2).., high nibbles sub-block 2(i/2)+1.
 * K6: ql bytes 16 i..; low nibbles elements 128(i/4) + 16(i%4).., high
 * ones 64 later.  B32: block c, elements 0..15 and 16..31. */
__device__ __forceinline__ int q1_xl(int cls, int c) {
    const int b = c >> 3, i = c & 7;
    return cls == Q1_K4 ? 256 * b + 64 * (i >> 1) + 16 * (i & 1)
         : cls == Q1_K6 ? 256 * b + 128 * (i >> 2) + 16 * (i & 3) : 32 * c;
}
__device__ __forceinline__ int q1_hoff(int cls) {
    return cls == Q1_K4 ? 32 : cls == Q1_K6 ? 64 : 16;
}
/* The lane chunk and group (0: L, 1: H) holding elements e..e+15 (e a
 * multiple of 16). */
__device__ __forceinline__ int q1_chunk_of(int cls, int e, int *hi) {
    const int b = e >> 8, r = e & 255;
    if (cls == Q1_K4) {
        *hi = (r >> 5) & 1;
        return 8 * b + 2 * (r >> 6) + ((r >> 4) & 1);
    }
    if (cls == Q1_K6) {
        *hi = (r >> 6) & 1;
        return 8 * b + 4 * (r >> 7) + ((r >> 4) & 3);
    }
    *hi = (e >> 4) & 1;
    return e >> 5;
}
/* The shared-memory slot of float4 t (0..3: group L, 4..7: H) of chunk c
 * of class cls: the classes in cls_mask are staged one after another. */
__device__ __forceinline__ int q1_slot(int cls_mask, int cls, int n_lc, int c, int t) {
    return (__popc(cls_mask & ((1 << cls) - 1)) * n_lc + c) * 8 + (t ^ (c & 7));
}

/* A lane takes two chunks of a row at a time (a "pair"): twice the bytes in
 * flight per load round, and what the two share is loaded and decoded
 * once.  Pair p of a row is chunks (2p, 2p + 1) for Q4_K (the two halves of
 * the same two sub-blocks: one header, one scale decode) and Q8_0; for
 * Q5_K and Q6_K it is chunks i and i + 2 of block p / 4 (i = 0, 1, 4, 5),
 * which share their 16 bytes of qh (and Q6_K its scales and d). */
__device__ __forceinline__ int q1_pair_chunk(int t, int p) {
    if (t == ENG_DT_Q5_K || t == ENG_DT_Q6_K) return 8 * (p >> 2) + (p & 1) + 4 * ((p >> 1) & 1);
    return 2 * p;
}
__device__ __forceinline__ int q1_pair_step(int t) {
    return t == ENG_DT_Q5_K || t == ENG_DT_Q6_K ? 2 : 1;
}

/* A row's pair as loaded: qa, qb the two chunks' 16 bytes of quants; e
 * their shared qh (Q5_K, Q6_K) or chunk a's quants 16..31 (Q8_0; eb chunk
 * b's); h0..h3 the block header (K4: d|dmin and the 12 scale bytes; Q6_K:
 * h0, h1 the 8 scales of the half, h2 d; Q8_0: h0, h1 the two d). */
struct q1raw {
    uint4 qa, qb, e, eb;
    uint32_t h0, h1, h2, h3;
};

__device__ __forceinline__ void q1_load(int t, const uint8_t *row, int p, int n_lc, q1raw &r) {
    const int c = q1_pair_chunk(t, p), i = c & 7;
    const uint8_t *b = row + (size_t)(c >> 3) * qstep_bytes(t);   /* K formats: one block */
    switch (t) {
    case ENG_DT_Q4_K:
    case ENG_DT_Q5_K: {   /* d, dmin, scales[12], (Q5_K: qh[32]), qs[128] */
        const uint4 h = __ldg((const uint4 *)b);
        r.h0 = h.x; r.h1 = h.y; r.h2 = h.z; r.h3 = h.w;
        if (t == ENG_DT_Q5_K) {
            r.e = __ldg((const uint4 *)(b + 16 + 16 * (i & 1)));
            r.qa = __ldg((const uint4 *)(b + 48 + 16 * i));
            r.qb = __ldg((const uint4 *)(b + 48 + 16 * (i + 2)));
        } else {
            r.qa = __ldg((const uint4 *)(b + 16 + 16 * i));
            r.qb = __ldg((const uint4 *)(b + 32 + 16 * i));
        }
        break;
    }
    case ENG_DT_Q6_K: {   /* ql[128], qh[64], scales[16], d */
        r.qa = __ldg((const uint4 *)(b + 16 * i));
        r.qb = __ldg((const uint4 *)(b + 16 * (i + 2)));
        r.e = __ldg((const uint4 *)(b + 128 + 32 * (i >> 2) + 16 * (i & 1)));
        const uint2 sc = __ldg((const uint2 *)(b + 192 + 8 * (i >> 2)));
        r.h0 = sc.x; r.h1 = sc.y;
        r.h2 = ld_u16(b + 208);
        break;
    }
    case ENG_DT_Q4_0:
    case ENG_DT_Q4_1:
    case ENG_DT_Q5_0:
    case ENG_DT_Q5_1: {   /* planes: q runs, (qh), d (| m); blocks c and c + 1 (c even) */
        const q32_planes l = q32_layout(t, n_lc);
        r.qa = __ldg((const uint4 *)(row + (size_t)c * 16));
        r.qb = __ldg((const uint4 *)(row + (size_t)c * 16 + 16));
        if (t == ENG_DT_Q5_0 || t == ENG_DT_Q5_1) {
            const uint2 h = __ldg((const uint2 *)(row + l.hoff + 4 * (size_t)c));
            r.e.x = h.x; r.e.y = h.y;
        }
        if (l.db == 4) {
            const uint2 d = __ldg((const uint2 *)(row + l.doff + 4 * (size_t)c));
            r.h0 = d.x; r.h1 = d.y;
        } else {
            const uint32_t d = __ldg((const unsigned *)(row + l.doff + 2 * (size_t)c));
            r.h0 = d & 0xffff; r.h1 = d >> 16;
        }
        break;
    }
    default: {   /* ENG_DT_Q8_0: q runs, then the d's */
        const uint8_t *q = row + (size_t)c * 32;
        r.qa = __ldg((const uint4 *)q);
        r.e = __ldg((const uint4 *)(q + 16));
        r.qb = __ldg((const uint4 *)(q + 32));
        r.eb = __ldg((const uint4 *)(q + 48));
        const uint32_t d = __ldg((const unsigned *)(row + (size_t)n_lc * 32 + 2 * c));   /* c even */
        r.h0 = d & 0xffff; r.h1 = d >> 16;
        break;
    }
    }
}

__device__ __forceinline__ void q1_load4(const int (&types)[GEMV_NR],
                                         const uint8_t *const (&wr)[GEMV_NR], int p, int n_lc,
                                         q1raw (&raw)[GEMV_NR]) {
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) q1_load(types[j], wr[j], p, n_lc, raw[j]);
}

/* 0.5 + (byte b of v) / 256, exactly (the byte below 128). */
__device__ __forceinline__ float q1_f(uint32_t v, int b) {
    return __uint_as_float(__byte_perm(v, 0x3F000000u, 0x7044u | ((uint32_t)b << 8)));
}

/* sum over the 16 elements of x[4 float4] times the bytes of v: f(byte)
 * (q1_f), or with I8 the int8 value itself (qfloat) */
template <bool I8>
__device__ __forceinline__ float q1_dot(const uint32_t (&v)[4], const float4 *x) {
    float s0 = 0.f, s1 = 0.f;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        s0 = fmaf(x[k].x, I8 ? qfloat(v[k], 0) : q1_f(v[k], 0), s0);
        s1 = fmaf(x[k].y, I8 ? qfloat(v[k], 1) : q1_f(v[k], 1), s1);
        s0 = fmaf(x[k].z, I8 ? qfloat(v[k], 2) : q1_f(v[k], 2), s0);
        s1 = fmaf(x[k].w, I8 ? qfloat(v[k], 3) : q1_f(v[k], 3), s1);
    }
    return s0 + s1;
}

/* A K4 block's scale and min of sub-blocks 2 j2 and 2 j2 + 1 (engine/quant.c
 * scale_min_k4) as bytes 0 and 1 of *P and *M. */
__device__ __forceinline__ void q1_k4_scales(const q1raw &r, int j2, uint32_t *P, uint32_t *M) {
    const int sh = 16 * (j2 & 1);
    const uint32_t plo = (r.h1 >> sh) & 0x3F3Fu, mlo = (r.h2 >> sh) & 0x3F3Fu;
    const uint32_t phi = ((r.h3 >> sh) & 0x0F0Fu) | ((r.h1 >> (sh + 2)) & 0x3030u);
    const uint32_t mhi = ((r.h3 >> (sh + 4)) & 0x0F0Fu) | ((r.h2 >> (sh + 2)) & 0x3030u);
    *P = j2 < 2 ? plo : phi;
    *M = j2 < 2 ? mlo : mhi;
}

/* A chunk's scales: it adds A_L S_L + B_L sum_L + A_H S_H + B_H sum_H (S:
 * q1_dot's sums; Q8_0: A = d, B = 0 and S the plain sums).  i: the chunk
 * within its block; b: the pair's second chunk. */
struct q1sc {
    float AL, BL, AH, BH;
};

__device__ __forceinline__ q1sc q1_scales(int t, const q1raw &r, int i, bool b) {
    q1sc s;
    switch (t) {
    case ENG_DT_Q4_K:
    case ENG_DT_Q5_K: {   /* v = 8 q (Q4_K), 4 q (Q5_K): A = a 2^(8-s) */
        uint32_t P, M;
        q1_k4_scales(r, i >> 1, &P, &M);
        const float d = f16_lo(r.h0), dm = f16_lo(r.h0 >> 16), f = t == ENG_DT_Q4_K ? 32.f : 64.f;
        s.AL = __fmul_rn(d, (float)(P & 0xff)) * f;
        s.AH = __fmul_rn(d, (float)(P >> 8)) * f;
        s.BL = fmaf(-0.5f, s.AL, -__fmul_rn(dm, (float)(M & 0xff)));
        s.BH = fmaf(-0.5f, s.AH, -__fmul_rn(dm, (float)(M >> 8)));
        break;
    }
    case ENG_DT_Q6_K: {   /* v = 2 q; w = d sc (q - 32): A = 128 a, B = -32 a - A/2 */
        const int a = i & 3;
        const float d = f16_lo(r.h2);
        s.AL = __fmul_rn(d, (float)(int8_t)(r.h0 >> (8 * a))) * 128.f;
        s.AH = __fmul_rn(d, (float)(int8_t)(r.h1 >> (8 * a))) * 128.f;
        s.BL = -0.75f * s.AL;
        s.BH = -0.75f * s.AH;
        break;
    }
    case ENG_DT_Q4_0:     /* v = 8 q: w = d (q - 8), d q + m; A = 32 d */
    case ENG_DT_Q4_1:
    case ENG_DT_Q5_0:     /* v = 4 q: w = d (q - 16), d q + m; A = 64 d */
    case ENG_DT_Q5_1: {
        const uint32_t h = b ? r.h1 : r.h0;
        const float d = f16_lo(h), A = d * (t == ENG_DT_Q4_0 || t == ENG_DT_Q4_1 ? 32.f : 64.f);
        const float off = t == ENG_DT_Q4_0 ? -8.f * d : t == ENG_DT_Q5_0 ? -16.f * d : f16_lo(h >> 16);
        s.AL = s.AH = A;
        s.BL = s.BH = fmaf(-0.5f, A, off);
        break;
    }
    default:   /* Q8_0: w = d q */
        s.AL = s.AH = f16_lo(b ? r.h1 : r.h0);
        s.BL = s.BH = 0.f;
        break;
    }
    return s;
}

/* The byte values v = q 2^s of a chunk's groups L and H (b: the pair's
 * second chunk, i its place in the block): what q1_sum's f32 trick and
 * q16_sum's dp4a both take.  Not for Q8_0 (signed quants, used as they
 * are). */
__device__ __forceinline__ void q1_vals(int t, const q1raw &r, bool b, int i, uint32_t (&vL)[4],
                                        uint32_t (&vH)[4]) {
    const uint4 qq = b ? r.qb : r.qa;
    const uint32_t q[4] = {qq.x, qq.y, qq.z, qq.w}, e[4] = {r.e.x, r.e.y, r.e.z, r.e.w};
    switch (t) {
    case ENG_DT_Q4_K:   /* low nibbles group L, high ones H (Q4_0 / Q4_1: element j < 16 */
    case ENG_DT_Q4_0:   /* the low nibble of q[j], j + 16 its high) */
    case ENG_DT_Q4_1:
#pragma unroll
        for (int k = 0; k < 4; k++) {
            vL[k] = (q[k] << 3) & 0x78787878u;
            vH[k] = (q[k] >> 1) & 0x78787878u;
        }
        break;
    case ENG_DT_Q5_K:   /* q's fifth bit from qh bit 2 j2 (L), 2 j2 + 1 (H) */
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t h = e[k] >> (2 * (i >> 1));
            vL[k] = ((q[k] << 2) & 0x3C3C3C3Cu) | ((h << 6) & 0x40404040u);
            vH[k] = ((q[k] >> 2) & 0x3C3C3C3Cu) | ((h << 5) & 0x40404040u);
        }
        break;
    case ENG_DT_Q6_K:   /* low 4 bits from ql, top 2 from qh (bits 0-1 / 4-5, or 2-3 / 6-7) */
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t h = e[k] >> (2 * ((i & 3) >> 1));
            vL[k] = ((q[k] << 1) & 0x1E1E1E1Eu) | ((h << 5) & 0x60606060u);
            vH[k] = ((q[k] >> 3) & 0x1E1E1E1Eu) | ((h << 1) & 0x60606060u);
        }
        break;
    default: {   /* Q5_0 / Q5_1: bit j of qh, element j's fifth bit, spread into bit 6 of byte j % 4 */
        const uint32_t qh = b ? r.e.y : r.e.x;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            vL[k] = ((q[k] << 2) & 0x3C3C3C3Cu) | (((qh >> (4 * k)) & 15u) * 0x08102040u & 0x40404040u);
            vH[k] = ((q[k] >> 2) & 0x3C3C3C3Cu) | (((qh >> (16 + 4 * k)) & 15u) * 0x08102040u & 0x40404040u);
        }
        break;
    }
    }
}

/* Row r's part of one chunk of its pair (b: the second): sum over its 32
 * weights of w x' (x: the chunk's 8 float4, sL / sH the groups' sums, sc
 * its scales, i its place in the block). */
__device__ __forceinline__ float q1_sum(int t, const q1raw &r, bool b, int i, const float4 (&x)[8],
                                        float sL, float sH, const q1sc &sc) {
    if (t == ENG_DT_Q8_0) {
        const uint4 qq = b ? r.qb : r.qa, e2 = b ? r.eb : r.e;
        const uint32_t q[4] = {qq.x, qq.y, qq.z, qq.w}, q2[4] = {e2.x, e2.y, e2.z, e2.w};
        return sc.AL * (q1_dot<true>(q, x) + q1_dot<true>(q2, x + 4));
    }
    uint32_t vL[4], vH[4];
    q1_vals(t, r, b, i, vL, vH);
    return fmaf(sc.AL, q1_dot<false>(vL, x), fmaf(sc.BL, sL, fmaf(sc.AH, q1_dot<false>(vH, x + 4), sc.BH * sH)));
}

/* L2 prefetch of the unit's rows (the first chunk is loaded into
 * registers): the KS warps of a unit spread over a row's 128-byte lines. */
__device__ __forceinline__ void q1_prefetch(const int (&types)[GEMV_NR],
                                            const uint8_t *const (&wr)[GEMV_NR], int n_lc, int first,
                                            int step) {
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) {
        const int t = types[j];
        /* a step: 8 blocks of a 32-element format, one block of a K format */
        const size_t rb = (size_t)n_lc * qstep_bytes(t) / 8;
        for (size_t o = (size_t)first * 128; o < rb; o += (size_t)step * 128)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(wr[j] + o));
    }
}

/* Stages x' = x * nw (x without a norm) in shared memory for each class in
 * cls_mask, and the sums of its 16-element groups in sx; returns the
 * thread's part of sum(x^2) (for the RMS statistics). */
/* 16-element group g of x' = x * nw (x where nw is NULL) into v, from x's
 * 16 elements as loaded (v may be them); its sum(x^2), before the norm
 * weight, added to ss. */
__device__ __forceinline__ void q1_norm_group(const float4 (&xg)[4], const float *__restrict__ nw, int g,
                                              float4 (&v)[4], float &ss) {
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float4 t = xg[k];
        ss += t.x * t.x + t.y * t.y + t.z * t.z + t.w * t.w;
        v[k] = t;
        if (nw) {
            const float4 n = __ldg((const float4 *)(nw + 16 * g + 4 * k));
            v[k].x *= n.x; v[k].y *= n.y; v[k].z *= n.z; v[k].w *= n.w;
        }
    }
}
__device__ __forceinline__ void q1_load_group(const float *x, int g, float4 (&xg)[4]) {
#pragma unroll
    for (int k = 0; k < 4; k++) xg[k] = __ldca((const float4 *)(x + 16 * g + 4 * k));
}
__device__ __forceinline__ void q1_group(const float *x, const float *__restrict__ nw, int g,
                                         float4 (&v)[4], float &ss) {
    q1_load_group(x, g, v);
    q1_norm_group(v, nw, g, v, ss);
}

__device__ __forceinline__ float q1_stage(const float *x, const float *__restrict__ nw, int K,
                                          float4 *xs, int cls_mask, float *sx) {
    float ss = 0.f;
    for (int g = threadIdx.x; g < K / 16; g += blockDim.x) {
        float4 v[4];
        float s = 0.f;
        q1_group(x, nw, g, v, ss);
#pragma unroll
        for (int k = 0; k < 4; k++) s += v[k].x + v[k].y + v[k].z + v[k].w;
        sx[g] = s;
#pragma unroll
        for (int cls = 0; cls < Q1_CLASSES; cls++) {
            if (!(cls_mask >> cls & 1)) continue;
            int hi;
            const int c = q1_chunk_of(cls, 16 * g, &hi);
#pragma unroll
            for (int k = 0; k < 4; k++) xs[q1_slot(cls_mask, cls, K / 32, c, 4 * hi + k)] = v[k];
        }
    }
    return ss;
}

/* ENG_ACT_Q16 (kern_qw.q16; eng.h): x' is rounded per 16-element group g
 * by quant_block.h's eng_qb_act_q16: t = x' 127 / amax_g, q1 = rint(t), q2
 * = rint(254 (t - q1)), x' ~ dx_g (q1 + q2 / 254), dx_g = amax_g / 127.  A
 * group adds dx_g a (S1 + S2 / 254) + b dx_g sum(q1 + q2 / 254), S = sum(v
 * q) by dp4a over the byte values v = q 2^s of the f32 loop (q1_vals):
 * four weights an instruction a plane, where the
 * f32 loop spends a byte permute and an FMA on each weight.  Staged: the
 * q1 plane then the q2 plane, each in the f32 loop's chunk order, two
 * 16-byte groups a chunk (slots swizzled so that the 8 lanes of a load
 * phase hit 8 different bank quads), then per group (dx, dx sum(q1 + q2 /
 * 254)).  The swizzle permutes slots within an aligned run of 8 only: a
 * class's last run, when 2 n_lc is not a multiple of 8 (K 576: 36 slots),
 * stays in order, since swizzled it would reach past the class into the
 * q2 plane and the group scales. */
__device__ __forceinline__ int q16_slot(int cls_mask, int cls, int n_lc, int c, int hi) {
    const int i = 2 * c + hi;
    return __popc(cls_mask & ((1 << cls) - 1)) * n_lc * 2 + ((i | 7) < 2 * n_lc ? i ^ ((i >> 3) & 7) : i);
}

/* The low bytes of b[0..3] as one word (b[0] lowest). */
__device__ __forceinline__ uint32_t q16_pack(const uint32_t (&b)[4]) {
    return __byte_perm(__byte_perm(b[0], b[1], 0x0040u), __byte_perm(b[2], b[3], 0x0040u), 0x5410u);
}

/* One group of q16_stage: x' = xin (x's 16 elements) * nw into the planes
 * and (dx, dx sum(q1 + q2 / 254)); sum(x^2) added to ss. */
__device__ __forceinline__ void q16_group(const float4 (&xin)[4], const float *__restrict__ nw, int g, int K,
                                          uint4 *xq, int cls_mask, int plane, float2 *sg, float &ss) {
    float4 t4[4];
    q1_norm_group(xin, nw, g, t4, ss);
    float v[16], amax = 0.f;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v[4 * k] = t4[k].x; v[4 * k + 1] = t4[k].y; v[4 * k + 2] = t4[k].z; v[4 * k + 3] = t4[k].w;
    }
#pragma unroll
    for (int k = 0; k < 16; k++) amax = fmaxf(amax, fabsf(v[k]));
    const float dx = amax / 127.f, id = amax > 0.f ? 127.f / amax : 0.f;
    uint32_t w1[4], w2[4];
    int s1 = 0, s2 = 0;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint32_t b1[4], b2[4];
#pragma unroll
        for (int e = 0; e < 4; e++) eng_qb_act_q16_bytes(v[4 * k + e], id, &b1[e], &b2[e]);
        w1[k] = q16_pack(b1);
        w2[k] = q16_pack(b2);
        s1 = __dp4a((int)w1[k], 0x01010101, s1);
        s2 = __dp4a((int)w2[k], 0x01010101, s2);
    }
    sg[g] = make_float2(dx, dx * ((float)s1 + (float)s2 / 254.f));
#pragma unroll
    for (int cls = 0; cls < Q1_CLASSES; cls++) {
        if (!(cls_mask >> cls & 1)) continue;
        int hi;
        const int c = q1_chunk_of(cls, 16 * g, &hi), sl = q16_slot(cls_mask, cls, K / 32, c, hi);
        xq[sl] = make_uint4(w1[0], w1[1], w1[2], w1[3]);
        xq[sl + plane] = make_uint4(w2[0], w2[1], w2[2], w2[3]);
    }
}

/* A thread's groups, PAIR: two at a time, both groups' x loaded before
 * either is rounded, so a long K (7B's down: ~5 groups a thread) waits for
 * L2 once a pair, not once a group.  PAIR is for the products without a
 * norm (o, down: K up to the FFN width); the normed ones (K the hidden
 * size, one group a thread or two) gain nothing from it and keep the
 * registers it costs (with it, some of their instances spill: NOTES v34).
 * Returns the thread's part of sum(x^2). */
template <bool PAIR>
__device__ __forceinline__ float q16_stage(const float *x, const float *__restrict__ nw, int K,
                                           uint4 *xq, int cls_mask, float2 *sg) {
    const int plane = __popc(cls_mask) * (K / 32) * 2;   /* slots a plane */
    const int G = K / 16, bd = blockDim.x;
    float ss = 0.f;
    for (int g = threadIdx.x; g < G; g += (PAIR ? 2 : 1) * bd) {
        const bool two = PAIR && g + bd < G;
        float4 a[4], b[4];
        q1_load_group(x, g, a);
        if (two) q1_load_group(x, g + bd, b);
        q16_group(a, nw, g, K, xq, cls_mask, plane, sg, ss);
        if (two) q16_group(b, nw, g + bd, K, xq, cls_mask, plane, sg, ss);
    }
    return ss;
}

__device__ __forceinline__ int q16_dot4(const uint32_t (&v)[4], uint4 x) {
    int s = __dp4a((int)v[0], (int)x.x, 0);
    s = __dp4a((int)v[1], (int)x.y, s);
    s = __dp4a((int)v[2], (int)x.z, s);
    return __dp4a((int)v[3], (int)x.w, s);
}

/* 254 sum(v q1) + sum(v q2) over a group (x: its two planes), i.e. its dot
 * in units of dx / 254: an integer (|v|, |q| <= 128, 16 elements: under
 * 2^27), so one conversion for both planes (q16_sum's scales carry the
 * 1 / 254). */
__device__ __forceinline__ float q16_dot(const uint32_t (&v)[4], const uint4 (&x)[2]) {
    return (float)(254 * q16_dot4(v, x[0]) + q16_dot4(v, x[1]));
}

/* q1_sum with rounded activations (xL, xH: the groups' planes, gL, gH
 * their dx and dx sum(q1 + q2 / 254)) */
__device__ __forceinline__ float q16_sum(int t, const q1raw &r, bool b, int i, const uint4 (&xL)[2],
                                         const uint4 (&xH)[2], float2 gL, float2 gH, const q1sc &sc) {
    if (t == ENG_DT_Q8_0) {   /* the quants themselves */
        const uint4 qq = b ? r.qb : r.qa, e2 = b ? r.eb : r.e;
        const uint32_t q[4] = {qq.x, qq.y, qq.z, qq.w}, q2[4] = {e2.x, e2.y, e2.z, e2.w};
        return sc.AL * (1.f / 254.f) * fmaf(gL.x, q16_dot(q, xL), gH.x * q16_dot(q2, xH));
    }
    uint32_t vL[4], vH[4];
    q1_vals(t, r, b, i, vL, vH);
    /* from the f32 loop's A = a 2^(8-s), B = b - A/2 for v = q 2^s: a q = A v / 256
     * (and q16_dot's unit, 1 / 254) */
    const float aL = sc.AL * (1.f / (256.f * 254.f)), aH = sc.AH * (1.f / (256.f * 254.f));
    const float bL = fmaf(0.5f, sc.AL, sc.BL), bH = fmaf(0.5f, sc.AH, sc.BH);
    return fmaf(aL * gL.x, q16_dot(vL, xL), fmaf(bL, gL.y, fmaf(aH * gH.x, q16_dot(vH, xH), bH * gH.y)));
}

/* A unit's pairs p0, p0 + pstep, .. (n_pair a row) into acc; raw holds
 * pair p0's blocks on entry.  T: the unit's rows' one type (a unit never
 * mixes types: qgemv_run sends such products to qgemv_kernel).  xs, gs:
 * the staged x' and its group sums (Q16: the planes and (dx, sums)).  RA:
 * input rows (Q16 only past one: row r's planes xrow uint4 slots and its
 * group scales K / 16 further on); a pair's blocks, decoded once, meet
 * every row's planes. */
template <int T, bool Q16, int RA>
__device__ __forceinline__ void q1_kloop(float (&acc)[RA][GEMV_NR], q1raw (&raw)[GEMV_NR],
                                         const uint8_t *const (&wr)[GEMV_NR], const void *xs,
                                         const void *gs, int cls_mask, int n_lc, int p0, int pstep,
                                         int xrow) {
    const int ty[GEMV_NR] = {T, T, T, T}, cls = q1_class(T), n_pair = n_lc / 2;
    const int plane = __popc(cls_mask) * n_lc * 2;
    for (int p = p0; p < n_pair; p += pstep) {
        const int c = q1_pair_chunk(T, p);
        q1sc sc[GEMV_NR];
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++) sc[j] = q1_scales(T, raw[j], c & 7, false);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int cc = c + h * q1_pair_step(T), xl = q1_xl(cls, cc), xh = xl + q1_hoff(cls);
            /* a Q4_K pair shares its scales; the others' second chunk has its own */
            if (h && T != ENG_DT_Q4_K)
#pragma unroll
                for (int j = 0; j < GEMV_NR; j++) sc[j] = q1_scales(T, raw[j], cc & 7, true);
            if constexpr (Q16) {
                const int iL = q16_slot(cls_mask, cls, n_lc, cc, 0), iH = q16_slot(cls_mask, cls, n_lc, cc, 1);
#pragma unroll
                for (int r = 0; r < RA; r++) {
                    const uint4 *xq = (const uint4 *)xs + (size_t)r * xrow;
                    const float2 *g = (const float2 *)gs + (size_t)r * (n_lc * 2);
                    const uint4 xL[2] = {xq[iL], xq[iL + plane]}, xH[2] = {xq[iH], xq[iH + plane]};
                    const float2 gL = g[xl >> 4], gH = g[xh >> 4];
#pragma unroll
                    for (int j = 0; j < GEMV_NR; j++)
                        acc[r][j] += q16_sum(T, raw[j], h, cc & 7, xL, xH, gL, gH, sc[j]);
                }
            } else {
                float4 xv[8];
#pragma unroll
                for (int t = 0; t < 8; t++) xv[t] = ((const float4 *)xs)[q1_slot(cls_mask, cls, n_lc, cc, t)];
                const float sL = ((const float *)gs)[xl >> 4], sH = ((const float *)gs)[xh >> 4];
#pragma unroll
                for (int j = 0; j < GEMV_NR; j++) acc[0][j] += q1_sum(T, raw[j], h, cc & 7, xv, sL, sH, sc[j]);
            }
        }
        if (p + pstep < n_pair) q1_load4(ty, wr, p + pstep, n_lc, raw);
    }
}

/* Blocks of qgemv1_kernel per multiprocessor (registers <= 128). */
#define Q1_BLOCKS 2

/* qgemv1_kernel's T for a product of Q4_K and Q6_K segments (Q4_K_M's q|k|v). */
#define Q1_MIX_K46 100

/* A unit's rows, their types (T where one) and first pair's blocks, and
 * the L2 prefetch of the rest. */
template <int MODE, int T>
__device__ __forceinline__ void q1_unit_start(const gemv_rope &rp, const kern_qw &W, int N,
                                              int n_units, int unit, int n_lc, int p0, int pstep,
                                              int (&types)[GEMV_NR], const uint8_t *(&wr)[GEMV_NR],
                                              q1raw (&raw)[GEMV_NR]) {
    int rows[GEMV_NR];
    unit_rows<MODE>(rp, N, n_units, unit, rows);
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) {
        wr[j] = qrow(W, rows[j], &types[j]);
        if (T && T != Q1_MIX_K46) types[j] = T;
    }
    if (p0 < n_lc / 2) q1_load4(types, wr, p0, n_lc, raw);
    q1_prefetch(types, wr, n_lc, p0, pstep);
}

/* T: the rows' one type, or 0 for units of types known only at run time
 * (a product of segments of different types; Q1_MIX_K46: of Q4_K and
 * Q6_K).  RA 2 (Q16 only): two input rows, each staged as its
 * planes, their products from one decode of the blocks; one block a
 * multiprocessor (registers: at 128, two blocks' worth, it spills). */
template <int MODE, int T, bool Q16 = false, int RA = 1>
__global__ void __launch_bounds__(GEMV_THREADS, RA > 1 ? 1 : Q1_BLOCKS)
qgemv1_kernel(kern_qw W, int N, int K, const float *x, const float *__restrict__ nw, float eps,
              float *y, int KS, int cls_mask, gemv_rope rp) {
    extern __shared__ float4 q1_smem[];
    __shared__ float s_rstd[RA];
    __shared__ float s_part[GEMV_WARPS][RA];
    __shared__ float s_red[2][GEMV_WARPS][GEMV_NR][RA];   /* by round parity */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int upc = GEMV_WARPS / KS;
    constexpr bool GLU = MODE == KERN_SWIGLU || MODE == KERN_GEGLU;
    const int n_units = GLU ? (N / 2 + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
    const int stride = gridDim.x * upc;
    /* a lane's pairs: p0, p0 + pstep, ... of n_lc / 2 */
    const int n_lc = K / 32, p0 = (warp % KS) * 32 + lane, pstep = 32 * KS;
    int unit = blockIdx.x * upc + warp / KS;

    float4 *xs = q1_smem;
    float *sx = (float *)(q1_smem + __popc(cls_mask) * n_lc * 8);
    /* Q16: each row's two planes of quants, then each row's group scales */
    uint4 *xq = (uint4 *)q1_smem;
    const int xrow = 2 * __popc(cls_mask) * n_lc * 2;
    float2 *sg = (float2 *)(xq + (size_t)RA * xrow);

    /* (the ROPE items' destinations are worked out in the epilogue: held
     * across the loop they cost registers the loads need) */
    rope_pre pre = {};
    /* a unit's KS warps meet at their own barrier (1 + the unit's place in
     * the block), not the block's: a unit never waits for another unit's
     * loads; its first warp's lanes 0..4 RA - 1 write its four rows of the
     * RA input rows (lane = 4 r + j) */
    const int eu = warp / KS, bar_id = 1 + eu;
    const bool has_item = warp % KS == 0 && lane < GEMV_NR * RA;
    const int ej = lane % GEMV_NR, er = lane / GEMV_NR;
    /* the first chunk's blocks are loaded before waiting for x */
    int types[GEMV_NR];
    const uint8_t *wr[GEMV_NR];
    q1raw raw[GEMV_NR];
    q1_unit_start<MODE, T>(rp, W, N, n_units, unit, n_lc, p0, pstep, types, wr, raw);
    pdl_launch();
    pdl_wait();

    {   /* stage x', the group sums and 1/rms of each row */
        float ss[RA];
#pragma unroll
        for (int r = 0; r < RA; r++) {
            constexpr bool PAIR = MODE == KERN_RESID || MODE == KERN_STORE;   /* no norm */
            ss[r] = Q16 ? q16_stage<PAIR>(x + (size_t)r * K, nw, K, xq + (size_t)r * xrow, cls_mask,
                                          sg + (size_t)r * (K / 16))
                        : q1_stage(x, nw, K, xs, cls_mask, sx);
            ss[r] = warp_sum(ss[r]);
            if (lane == 0) s_part[warp][r] = ss[r];
        }
        __syncthreads();
        if (threadIdx.x < RA) {
            float t = 0.f;
            for (int w = 0; w < GEMV_WARPS; w++) t += s_part[w][threadIdx.x];
            s_rstd[threadIdx.x] = 1.0f / sqrtf(t / (float)K + eps);
        }
        __syncthreads();
    }

    for (int base = blockIdx.x * upc, par = 0; base < n_units; base += stride, par ^= 1) {
        float acc[RA][GEMV_NR];
#pragma unroll
        for (int r = 0; r < RA; r++)
#pragma unroll
            for (int j = 0; j < GEMV_NR; j++) acc[r][j] = 0.f;
        const void *xs_ = Q16 ? (const void *)xq : (const void *)xs;
        const void *gs_ = Q16 ? (const void *)sg : (const void *)sx;
#define Q1_LOOP(TT) q1_kloop<TT, Q16, RA>(acc, raw, wr, xs_, gs_, cls_mask, n_lc, p0, pstep, xrow)
        if (T == Q1_MIX_K46) {   /* Q4_K_M's q|k|v: two loops only (fewer live registers) */
            if (types[0] == ENG_DT_Q4_K) Q1_LOOP(ENG_DT_Q4_K);
            else Q1_LOOP(ENG_DT_Q6_K);
        } else switch (T ? T : types[0]) {   /* T = 0: the unit's type (one for its four rows) */
        case ENG_DT_Q4_K: Q1_LOOP(ENG_DT_Q4_K); break;
        case ENG_DT_Q5_K: Q1_LOOP(ENG_DT_Q5_K); break;
        case ENG_DT_Q6_K: Q1_LOOP(ENG_DT_Q6_K); break;
        case ENG_DT_Q4_0: Q1_LOOP(ENG_DT_Q4_0); break;
        case ENG_DT_Q4_1: Q1_LOOP(ENG_DT_Q4_1); break;
        case ENG_DT_Q5_0: Q1_LOOP(ENG_DT_Q5_0); break;
        case ENG_DT_Q5_1: Q1_LOOP(ENG_DT_Q5_1); break;
        default: Q1_LOOP(ENG_DT_Q8_0); break;
        }
#undef Q1_LOOP
        /* the next round's first blocks are in flight during this round's
         * reduction and epilogue */
        unit += stride;
        if (base + stride < n_units)
            q1_unit_start<MODE, T>(rp, W, N, n_units, unit, n_lc, p0, pstep, types, wr, raw);
#pragma unroll
        for (int r = 0; r < RA; r++)
#pragma unroll
            for (int j = 0; j < GEMV_NR; j++) {
                float v = warp_sum(acc[r][j]);
                if (lane == 0) s_red[par][warp][j][r] = v;
            }
        /* s_red[par] is written again two rounds on, after the next
         * barrier, which the epilogue's warp passes only when done here */
        if (KS == 1) __syncwarp();
        else asm volatile("bar.sync %0, %1;" ::"r"(bar_id), "r"(KS * 32) : "memory");
        const int u = base + eu;
        if (has_item && u < n_units)
            gemv_epilogue<RA, MODE>(s_red[par], KS, eu, u, ej, er, nw ? s_rstd[er] : 1.f, N, y, rp,
                                    pre, false);
    }
}

/* Shared memory of qgemv1_kernel: x' once per class of W's types, and the
 * group sums (f32, one row); or, Q16, each of R rows' two planes of quants
 * per class and its group scales.  Past Q1_SMEM_MAX (a product of three
 * classes at K over 17,000 at one row) the product goes to qgemv_kernel,
 * or under Q16 is refused. */
#define Q1_SMEM_MAX (200 << 10)
/* the most input rows qgemv1_kernel takes (Q16): 7B Q4_K_M's products at
 * 2 rows take 1.1-1.4x their one-row time, at 4 rows 1.8-2.4x, no faster
 * than kern_qskinny (kernels/NOTES.md v33) */
#define Q1_MAX_ROWS 2
static int q1_classes(const kern_qw &W) {
    int mask = 0;
    for (int i = 0; i < W.n_seg; i++) mask |= 1 << (q1_class(W.type[i]) & 3);
    return __builtin_popcount(mask);
}
static size_t q1_smem_bytes(const kern_qw &W, int K, int R) {
    if (W.q16) return (size_t)R * (q1_classes(W) * (size_t)(K / 32) * 4 * 16 + (size_t)(K / 16) * 8);
    return (size_t)q1_classes(W) * (K / 32) * 8 * sizeof(float4) + (size_t)(K / 16) * sizeof(float);
}
/* Blocks of the R-row instance a multiprocessor holds: its launch bounds'
 * and what the shared memory allows (228 KB; 2 KB a block for the
 * runtime's reserve and the kernel's static arrays). */
static int q1_bps(int R, size_t smem) {
    const int lb = R > 1 ? 1 : Q1_BLOCKS;
    const int fit = (int)((228u << 10) / (smem + (2u << 10)));
    return fit < 1 ? 1 : fit < lb ? fit : lb;
}

/* K split over KS warps of a unit (n_pair: a row's chunk pairs, one a
 * lane).  Among the splits that keep more than half of their lanes busy
 * (KS 1 always), the one whose busiest multiprocessor has the fewest
 * units, as the grid deals them (blocks to multiprocessors in order, bps
 * a multiprocessor, each block its units in rounds of grid x units a
 * block); ties go to the split that puts work on more multiprocessors,
 * then to the larger split (fewer rounds a unit).  Then, while the grid
 * would leave more than a tenth of the multiprocessors without a block, K
 * is split further.  Both rules were chosen from per-product sweeps of KS
 * at one row (kernels/NOTES.md v30, v31). */
static int q1_split(int n_units, int n_pair, int n_sms, int bps) {
    int best = 1, best_busy = 1 << 30, best_used = 0;
    for (int ks = 1; ks <= GEMV_WARPS; ks *= 2) {
        const int iters = (n_pair + 32 * ks - 1) / (32 * ks);
        if (ks > 1 && 2 * n_pair <= iters * 32 * ks) continue;   /* half the lanes idle or more */
        const int upb = GEMV_WARPS / ks;
        int nb = (n_units + upb - 1) / upb;
        if (nb > bps * n_sms) nb = bps * n_sms;
        int busy = 0, used = 0;
        for (int sm = 0; sm < n_sms && sm < nb; sm++) {
            int n = 0;
            for (int b = sm; b < nb; b += n_sms)
                for (int u = b * upb; u < n_units; u += nb * upb) n += n_units - u < upb ? n_units - u : upb;
            if (n > busy) busy = n;
            used += n > 0;
        }
        if (busy < best_busy || (busy == best_busy && used >= best_used)) {
            best = ks;
            best_busy = busy;
            best_used = used;
        }
    }
    while (best < GEMV_WARPS && (n_units + GEMV_WARPS / best - 1) / (GEMV_WARPS / best) < n_sms * 9 / 10)
        best *= 2;
    return best;
}

/* smem: q1_smem_bytes(W, K, R); R 2 only with W.q16 */
static cudaError_t qgemv1_launch(int mode, int n_units, cudaStream_t s, int pdl, const kern_qw &W,
                                 int N, int K, const float *x, const float *nw, float eps, float *y,
                                 int n_sms, size_t smem, const gemv_rope &rp, int R) {
    typedef void (*kfn)(kern_qw, int, int, const float *, const float *, float, float *, int, int,
                        gemv_rope);
    int mask = 0, t = W.type[0];
    for (int i = 0; i < W.n_seg; i++) {
        mask |= 1 << q1_class(W.type[i]);
        if (W.type[i] != t) t = 0;
    }
#define Q1KM(T, Q, A) (mode == KERN_STORE ? qgemv1_kernel<KERN_STORE, T, Q, A>          \
              : mode == KERN_RESID ? qgemv1_kernel<KERN_RESID, T, Q, A>              \
              : mode == KERN_ROPE  ? qgemv1_kernel<KERN_ROPE, T, Q, A>               \
              : mode == KERN_GEGLU ? qgemv1_kernel<KERN_GEGLU, T, Q, A> : qgemv1_kernel<KERN_SWIGLU, T, Q, A>)
#define Q1K(T) (!W.q16 ? Q1KM(T, false, 1) : R == 1 ? Q1KM(T, true, 1) : Q1KM(T, true, 2))
    bool k46 = true;
    for (int i = 0; i < W.n_seg; i++) k46 = k46 && (W.type[i] == ENG_DT_Q4_K || W.type[i] == ENG_DT_Q6_K);
    kfn k = t == ENG_DT_Q4_K ? Q1K(ENG_DT_Q4_K) : t == ENG_DT_Q5_K ? Q1K(ENG_DT_Q5_K)
          : t == ENG_DT_Q6_K ? Q1K(ENG_DT_Q6_K) : t == ENG_DT_Q8_0 ? Q1K(ENG_DT_Q8_0)
          : t == ENG_DT_Q4_0 ? Q1K(ENG_DT_Q4_0) : t == ENG_DT_Q4_1 ? Q1K(ENG_DT_Q4_1)
          : t == ENG_DT_Q5_0 ? Q1K(ENG_DT_Q5_0) : t == ENG_DT_Q5_1 ? Q1K(ENG_DT_Q5_1)
          : k46 ? Q1K(Q1_MIX_K46) : Q1K(0);
#undef Q1K
#undef Q1KM
    const int n_lc = K / 32;
    if (smem > 48 * 1024) {   /* Q1_SMEM_MAX bounds every launch's smem */
        cudaError_t e = ksmem_limit(k, Q1_SMEM_MAX);
        if (e) return e;
    }
    /* every unit's warps at once where the multiprocessors hold them (no
     * rounds of equal size: the latency of a unit's loads needs the warps) */
    const int bps = q1_bps(R, smem), KS = q1_split(n_units, n_lc / 2, n_sms, bps);
    const int upb = GEMV_WARPS / KS;
    int nb = (n_units + upb - 1) / upb;
    if (nb > bps * n_sms) nb = bps * n_sms;
    return klaunch(k, dim3(nb), dim3(GEMV_THREADS), smem, s, pdl, W, N, K, x, nw, eps, y, KS, mask, rp);
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

/* Whether qgemv1_kernel takes R rows of W (chunk pairs: K / 32 even;
 * every unit of one type: a gate | up of two types, or a segment boundary
 * inside a unit of four rows, goes to qgemv_kernel; more than one row only
 * rounded, Q16, and up to Q1_MAX_ROWS with the planes in Q1_SMEM_MAX). */
static bool q1_takes(const kern_qw *W, int K, bool glu, int R) {
    bool one = K % 64 == 0 && (R == 1 || (W->q16 && R <= Q1_MAX_ROWS)) &&
               q1_smem_bytes(*W, K, R) <= Q1_SMEM_MAX;
    for (int i = 0; i < W->n_seg; i++)
        one = one && q1_class(W->type[i]) >= 0 &&
              (glu ? W->type[i] == W->type[0] : i == W->n_seg - 1 || W->end[i] % GEMV_NR == 0);
    return one;
}

extern "C" int kern_qgemv_q16_ok(const kern_qw *W, int N, int K, int glu, int R) {
    kern_qw q = *W;
    q.q16 = 1;
    return R >= 1 && qw_segments_ok(W, N, K) && q1_takes(&q, K, glu != 0, R);
}

static int qgemv_run(cudaStream_t s, const kern_qw *W, int N, int K, const float *x, int R,
                     const float *norm_w, float eps, int mode, float *y, int n_sms, int pdl,
                     const gemv_rope &rp) {
    const bool glu = mode == KERN_SWIGLU || mode == KERN_GEGLU;
    if (!qw_segments_ok(W, N, K) || R < 1 || R > 8 || (glu && N % 2) || n_sms < 1 ||
        mode < KERN_STORE || mode > KERN_GEGLU)
        return (int)cudaErrorInvalidValue;
    const int n_units = glu ? (N / 2 + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
    if (q1_takes(W, K, glu, R))
        return (int)qgemv1_launch(mode, n_units, s, pdl, *W, N, K, x, norm_w, eps, y, n_sms,
                                  q1_smem_bytes(*W, K, R), rp, R);
    if (W->q16) return (int)cudaErrorInvalidValue;   /* only qgemv1_kernel rounds its input */
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
