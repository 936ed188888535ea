/* kern_attn_gemm.cu — attention of a long prompt pass through cuBLAS.
 *
 * Why: the decode kernels walk each row's context in its own blocks and the
 * tiled prefill kernel works in f32 on CUDA cores with 16-row tiles; at
 * 1024 prompt rows either took 55-65% of the pass (measured, 0.5B and 1.5B,
 * kernels/NOTES.md v8), ~5 TFLOP/s.  Attention of a prompt pass is two
 * matrix products per head, which cuBLAS runs near the f32 rate: S = q K^T
 * over the distinct keys the pass's sequences hold, a softmax over the keys
 * each row sees (its own sequence, up to its position), O = P V.  Forks of
 * one prompt share its blocks, so their rows multiply one set of keys.
 * Rows go in chunks (at most AG_MAX_CHUNK, fewer when the work buffer is
 * short) so that S stays bounded; for one sequence a chunk multiplies only
 * the keys its rows can see.
 * Products are plain f32 (no TF32), so results match the other kernels to
 * rounding. */
#include <math.h>
#include "kern_common.cuh"

#define AG_MAX_CHUNK 1024
#define AG_THREADS 256

/* Key u of the pass is slot u % bs of the pass's distinct block u / bs
 * (keys.block); slots past keys.valid hold no token of any sequence of the
 * pass and are read as zero, so that P V never meets stale values.  K and V
 * (f32 or bf16 in the pool) go to kc / vc in f32 as [n_heads][n_keys][hd]:
 * a copy per query head, so that one strided batch of products covers every
 * head. */
__global__ void attn_gather_kernel(kern_kv kv, kern_keys keys, int G, float *kc, float *vc) {
    pdl_launch();
    pdl_wait();
    const int hd = kv.head_dim, nk = keys.n_blocks * kv.block_size;
    const size_t n = (size_t)kv.n_kv * G * nk * hd;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % hd), u = (int)(i / hd % nk), h = (int)(i / ((size_t)hd * nk)) / G;
        const int ub = u / kv.block_size, slot = u % kv.block_size;
        float k = 0.f, v = 0.f;
        if (slot < keys.valid[ub]) {
            const int blk = keys.block[ub];
            if (kv.dtype == KERN_BF16) {
                k = kv_ld1(kv_row<__nv_bfloat16>(kv, blk, h, slot) + d);
                v = kv_ld1(kv_row<__nv_bfloat16>(kv, blk, kv.n_kv + h, slot) + d);
            } else {
                k = kv_row<float>(kv, blk, h, slot)[d];
                v = kv_row<float>(kv, blk, kv.n_kv + h, slot)[d];
            }
        }
        kc[i] = k;
        vc[i] = v;
    }
}

/* Whether row (sequence s, position p) sees key u. */
__device__ __forceinline__ bool key_seen(const kern_keys &keys, int bs, int s, int p, int u) {
    const int j = keys.index[(size_t)s * keys.n_blocks + u / bs];
    return j >= 0 && j * bs + u % bs <= p;
}

/* One block per (row j of the chunk, head): the row's Lc scores in place
 * become probabilities over the keys it sees (scaled by 1/sqrt(hd)), zero
 * elsewhere. */
__global__ void attn_softmax_kernel(float *S, int m, int Lc, int row0, const kern_step *st,
                                    kern_keys keys, int bs, float scale) {
    __shared__ float s_tmp[32];
    const int j = blockIdx.x, h = blockIdx.y, sq = st->row_seq[row0 + j], p = st->pos[row0 + j];
    float *row = S + ((size_t)h * m + j) * Lc;
    float mx = -INFINITY;
    for (int t = threadIdx.x; t < Lc; t += blockDim.x)
        if (key_seen(keys, bs, sq, p, t)) mx = fmaxf(mx, row[t]);
    mx = warp_max(mx);
    if ((threadIdx.x & 31) == 0) s_tmp[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) mx = fmaxf(mx, s_tmp[i]);
    __syncthreads();
    float sum = 0.f;
    for (int t = threadIdx.x; t < Lc; t += blockDim.x) {
        const float e = key_seen(keys, bs, sq, p, t) ? expf((row[t] - mx) * scale) : 0.f;
        row[t] = e;
        sum += e;
    }
    const float inv = 1.f / block_sum(sum, s_tmp);
    for (int t = threadIdx.x; t < Lc; t += blockDim.x) row[t] *= inv;
}

extern "C" size_t kern_attention_gemm_floats(int n_heads, int head_dim, int n_keys, int chunk) {
    return 2 * (size_t)n_heads * n_keys * head_dim + (size_t)n_heads * chunk * n_keys;
}

extern "C" int kern_attention_gemm(kern_blas *b, cudaStream_t s, const float *q, kern_kv kv,
                                   const kern_step *st, kern_keys keys, int R, int n_heads,
                                   float *work, size_t work_floats, float *out, int pdl,
                                   eng_err *err) {
    const int hd = kv.head_dim, nkv = kv.n_kv, bs = kv.block_size, nk = keys.n_blocks * bs;
    if (R < 1 || nkv < 1 || hd < 1 || bs < 1 || n_heads % nkv || keys.n_blocks < 1 ||
        keys.n_seqs < 1)
        return eng_seterr(err, ENG_EINVAL, "gemm attention: bad shape (%d rows, %d blocks, %d/%d heads)",
                          R, keys.n_blocks, n_heads, nkv);
    if (kv.window)
        return eng_seterr(err, ENG_EINVAL, "gemm attention: no sliding window (kern_attention "
                          "takes it)");
    if (kv.dtype != KERN_F32 && kv.dtype != KERN_BF16)
        return eng_seterr(err, ENG_EINVAL, "gemm attention: KV element type %d", kv.dtype);
    if (work_floats < kern_attention_gemm_floats(n_heads, hd, nk, 16))
        return eng_seterr(err, ENG_EINVAL, "gemm attention: work buffer of %zu floats too small",
                          work_floats);
    const size_t kvf = (size_t)n_heads * nk * hd;
    const size_t fit = (work_floats - 2 * kvf) / ((size_t)n_heads * nk);
    const int mc = fit >= AG_MAX_CHUNK ? AG_MAX_CHUNK : (int)fit / 16 * 16;
    float *kc = work, *vc = work + kvf, *S = work + 2 * kvf;
    const int ld = n_heads * hd;
    const size_t g = (kvf + AG_THREADS - 1) / AG_THREADS;
    cudaError_t e = klaunch(attn_gather_kernel, dim3(g > 4096 ? 4096 : (unsigned)g),
                            dim3(AG_THREADS), 0, s, pdl, kv, keys, n_heads / nkv, kc, vc);
    if (e != cudaSuccess) return eng_seterr(err, ENG_EIO, "gemm attention: gather: %s", cudaGetErrorString(e));
    const float scale = (float)(1.0 / sqrt((double)hd));
    for (int i0 = 0; i0 < R; i0 += mc) {
        const int m = R - i0 < mc ? R - i0 : mc;
        /* one sequence's rows at consecutive positions from p0: the chunk sees no key past its last row */
        const int Lc = keys.p0 >= 0 && keys.p0 + i0 + m < nk ? keys.p0 + i0 + m : nk;
        /* S_h (col-major Lc x m) = K_h (Lc x hd; stored hd x nk) . q_h^T (hd x m) */
        int rc = kern_blas_sgemm_batched(b, s, 1, Lc, m, hd, kc, hd, (long long)nk * hd,
                                         q + (size_t)i0 * ld, ld, hd, S, Lc, (long long)m * Lc,
                                         n_heads, err);
        if (rc) return rc;
        e = klaunch(attn_softmax_kernel, dim3(m, n_heads), dim3(AG_THREADS), 0, s, 0, S, m, Lc, i0,
                    st, keys, bs, scale);
        if (e != cudaSuccess) return eng_seterr(err, ENG_EIO, "gemm attention: softmax: %s", cudaGetErrorString(e));
        /* out_h^T (hd x m: rows of out) = V_h (stored hd x nk) . P_h^T (Lc x m) */
        if ((rc = kern_blas_sgemm_batched(b, s, 0, hd, m, Lc, vc, hd, (long long)nk * hd, S, Lc,
                                          (long long)m * Lc, out + (size_t)i0 * ld, ld, hd, n_heads,
                                          err)))
            return rc;
    }
    return ENG_OK;
}
