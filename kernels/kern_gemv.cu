/* kern_gemv.cu — matrix-vector products for small row counts (decode at
 * batch 1..8), bound by how fast the weights stream from memory.
 *
 * Each warp owns 4 weight rows (a "unit") and walks K with 16-byte loads,
 * two steps in flight; the activations (f32, up to 8 rows) come through L1.
 * When there are too few units to fill the GPU, KS warps of a block share a
 * unit's K range and add their sums in shared memory (split-K inside the
 * block, so the result does not depend on timing).  The first weights are
 * loaded before waiting on the previous kernel (programmatic dependent
 * launch), so their memory latency overlaps its tail.  Optional prologue:
 * RMS statistics of x, so the norm costs no launch of its own.  Epilogues: store,
 * add into the residual, or SwiGLU over a [gate; up] weight. */
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

/* acc[j][r] += W[row j][k..k+VEC) . x'[r][k..k+VEC), where x' = x * norm_w
 * when nw != NULL (the row's 1/rms is applied in the epilogue).  The norm
 * weight multiplies whichever side is smaller: x's R rows or the NR weight
 * rows. */
template <int WDT, int R>
__device__ __forceinline__ void gemv_step(float (&acc)[GEMV_NR][R], const uint4 (&w)[GEMV_NR],
                                          const float *__restrict__ x, int K, int k,
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
            float4 t = __ldg((const float4 *)(x + (size_t)r * K + k + i));
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

template <int WDT, int R, int MODE>
__global__ void __launch_bounds__(GEMV_THREADS)
gemv_kernel(const void *__restrict__ Wv, int N, int K, const float *__restrict__ x,
            const float *__restrict__ nw, float eps, float *y, int KS) {
    constexpr int VEC = wvec<WDT>::n;
    constexpr int EB = WDT == KERN_BF16 ? 2 : 4;
    __shared__ float s_rstd[R];
    __shared__ float s_tmp[32];
    __shared__ float s_red[GEMV_WARPS][GEMV_NR][R];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    const int upc = GEMV_WARPS / KS;
    const int I = N / 2;
    const int n_units = MODE == KERN_SWIGLU ? (I + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
    const int unit = blockIdx.x * upc + warp / KS, kpart = warp % KS;
    int rows[GEMV_NR];
    if (MODE == KERN_SWIGLU) {
        int i0 = unit < n_units ? unit * 2 : 0, i1 = i0 + 1 < I ? i0 + 1 : i0;
        rows[0] = i0; rows[1] = i1; rows[2] = I + i0; rows[3] = I + i1;
    } else {
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++) {
            int n = unit * GEMV_NR + j;
            rows[j] = unit < n_units ? (n < N ? n : N - 1) : 0;
        }
    }
    const char *Wb = (const char *)Wv;
    const char *wr[GEMV_NR];
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) wr[j] = Wb + (size_t)rows[j] * K * EB;

    /* the first two steps' weights are read before waiting for x */
    const int step = KS * 32 * VEC;
    int k = (kpart * 32 + lane) * VEC;
    uint4 w0[GEMV_NR], w1[GEMV_NR];
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++) {
        if (k < K) w0[j] = __ldg((const uint4 *)(wr[j] + (size_t)k * EB));
        if (k + step < K) w1[j] = __ldg((const uint4 *)(wr[j] + (size_t)(k + step) * EB));
    }
    pdl_launch();
    pdl_wait();

    if (nw) {
        for (int r = 0; r < R; r++) {
            float ss = 0.f;
            const float4 *xr = (const float4 *)(x + (size_t)r * K);
            for (int i = threadIdx.x; i < K / 4; i += GEMV_THREADS) {
                float4 v = xr[i];
                ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            }
            ss = block_sum(ss, s_tmp);
            if (threadIdx.x == 0) s_rstd[r] = 1.0f / sqrtf(ss / (float)K + eps);
        }
    }

    float acc[GEMV_NR][R];
#pragma unroll
    for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[j][r] = 0.f;

    while (k < K) {
        gemv_step<WDT, R>(acc, w0, x, K, k, nw);
        if (k + step < K) gemv_step<WDT, R>(acc, w1, x, K, k + step, nw);
        k += 2 * step;
#pragma unroll
        for (int j = 0; j < GEMV_NR; j++) {
            if (k < K) w0[j] = __ldg((const uint4 *)(wr[j] + (size_t)k * EB));
            if (k + step < K) w1[j] = __ldg((const uint4 *)(wr[j] + (size_t)(k + step) * EB));
        }
    }

#pragma unroll
    for (int j = 0; j < GEMV_NR; j++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float v = warp_sum(acc[j][r]);
            if (lane == 0) s_red[warp][j][r] = v;
        }
    __syncthreads();

    for (int idx = threadIdx.x; idx < upc * GEMV_NR * R; idx += GEMV_THREADS) {
        int ul = idx / (GEMV_NR * R), j = (idx / R) % GEMV_NR, r = idx % R;
        int u = blockIdx.x * upc + ul;
        if (u >= n_units) continue;
        float rs = nw ? s_rstd[r] : 1.f;
        float v = 0.f;
        for (int kp = 0; kp < KS; kp++) v += s_red[ul * KS + kp][j][r];
        v *= rs;
        if (MODE == KERN_SWIGLU) {
            int i = u * 2 + j;
            if (j >= 2 || i >= I) continue;
            float up = 0.f;
            for (int kp = 0; kp < KS; kp++) up += s_red[ul * KS + kp][j + 2][r];
            up *= rs;
            y[(size_t)r * I + i] = v / (1.0f + expf(-v)) * up;
        } else {
            int n = u * GEMV_NR + j;
            if (n >= N) continue;
            if (MODE == KERN_RESID) y[(size_t)r * N + n] += v;
            else y[(size_t)r * N + n] = v;
        }
    }
}

template <int WDT, int R>
static cudaError_t gemv_launch(int mode, dim3 grid, cudaStream_t s, int pdl, const void *W, int N,
                               int K, const float *x, const float *nw, float eps, float *y, int KS) {
    dim3 blk(GEMV_THREADS);
    if (mode == KERN_STORE)
        return klaunch(gemv_kernel<WDT, R, KERN_STORE>, grid, blk, 0, s, pdl, W, N, K, x, nw, eps, y, KS);
    if (mode == KERN_RESID)
        return klaunch(gemv_kernel<WDT, R, KERN_RESID>, grid, blk, 0, s, pdl, W, N, K, x, nw, eps, y, KS);
    return klaunch(gemv_kernel<WDT, R, KERN_SWIGLU>, grid, blk, 0, s, pdl, W, N, K, x, nw, eps, y, KS);
}

template <int WDT>
static cudaError_t gemv_dispatch(int R, int mode, dim3 grid, cudaStream_t s, int pdl, const void *W,
                                 int N, int K, const float *x, const float *nw, float eps, float *y,
                                 int KS) {
    switch (R) {
    case 1: return gemv_launch<WDT, 1>(mode, grid, s, pdl, W, N, K, x, nw, eps, y, KS);
    case 2: return gemv_launch<WDT, 2>(mode, grid, s, pdl, W, N, K, x, nw, eps, y, KS);
    case 3: return gemv_launch<WDT, 3>(mode, grid, s, pdl, W, N, K, x, nw, eps, y, KS);
    case 4: return gemv_launch<WDT, 4>(mode, grid, s, pdl, W, N, K, x, nw, eps, y, KS);
    case 5: return gemv_launch<WDT, 5>(mode, grid, s, pdl, W, N, K, x, nw, eps, y, KS);
    case 6: return gemv_launch<WDT, 6>(mode, grid, s, pdl, W, N, K, x, nw, eps, y, KS);
    case 7: return gemv_launch<WDT, 7>(mode, grid, s, pdl, W, N, K, x, nw, eps, y, KS);
    default: return gemv_launch<WDT, 8>(mode, grid, s, pdl, W, N, K, x, nw, eps, y, KS);
    }
}

extern "C" int kern_gemv(cudaStream_t s, const void *W, int wdt, int N, int K, const float *x,
                         int R, const float *norm_w, float eps, int mode, float *y, int n_sms,
                         int pdl) {
    int vec = wdt == KERN_BF16 ? 8 : 4;
    if (R < 1 || R > 8 || N < 1 || K < vec || K % vec || (mode == KERN_SWIGLU && N % 2))
        return (int)cudaErrorInvalidValue;
    int n_units = mode == KERN_SWIGLU ? (N / 2 + 1) / 2 : (N + GEMV_NR - 1) / GEMV_NR;
    /* Split K inside the block until the grid covers the GPU about twice. */
    int KS = 1;
    while (KS < GEMV_WARPS && (n_units + GEMV_WARPS / KS - 1) / (GEMV_WARPS / KS) < 2 * n_sms)
        KS *= 2;
    int upc = GEMV_WARPS / KS;
    dim3 grid((n_units + upc - 1) / upc);
    if (wdt == KERN_BF16)
        return (int)gemv_dispatch<KERN_BF16>(R, mode, grid, s, pdl, W, N, K, x, norm_w, eps, y, KS);
    return (int)gemv_dispatch<KERN_F32>(R, mode, grid, s, pdl, W, N, K, x, norm_w, eps, y, KS);
}
