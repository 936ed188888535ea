/* kern_misc.cu — the element-wise and per-row kernels around the matrix
 * products: embedding lookup, residual add + RMSNorm, SwiGLU, activation
 * conversion for cuBLASLt, and RoPE + KV write into the paged pool. */
#include "kern_common.cuh"

#define ROW_THREADS 256

__global__ void embed_kernel(const void *E, int wdt, int H, const kern_step *st, float *x) {
    pdl_launch();
    pdl_wait();
    int r = blockIdx.x;
    size_t tok = (size_t)st->tokens[r];
    for (int k = threadIdx.x; k < H; k += blockDim.x) {
        float v = wdt == KERN_BF16 ? bf16_to_f32(((const uint16_t *)E)[tok * H + k])
                                   : ((const float *)E)[tok * H + k];
        x[(size_t)r * H + k] = v;
    }
}

extern "C" int kern_embed(cudaStream_t s, const void *E, int wdt, int H, const kern_step *st,
                          int R, float *x, int pdl) {
    if (R < 1) return (int)cudaErrorInvalidValue;
    return (int)klaunch(embed_kernel, dim3(R), dim3(ROW_THREADS), 0, s, pdl, E, wdt, H, st, x);
}

/* One block per row: x += y (+ylo), then act = x * rstd * w. */
__global__ void add_norm_kernel(float *x, const float *y, const float *ylo, int R, int H,
                                const float *nw, float eps, void *act, int act_mode) {
    pdl_launch();
    pdl_wait();
    __shared__ float s_tmp[32];
    int r = blockIdx.x;
    float *xr = x + (size_t)r * H;
    float ss = 0.f;
    for (int k = threadIdx.x; k < H; k += blockDim.x) {
        float v = xr[k];
        if (y) {
            v += y[(size_t)r * H + k];
            if (ylo) v += ylo[(size_t)r * H + k];
            xr[k] = v;
        }
        ss += v * v;
    }
    if (!nw) return;
    ss = block_sum(ss, s_tmp);
    float rs = 1.0f / sqrtf(ss / (float)H + eps);
    for (int k = threadIdx.x; k < H; k += blockDim.x)
        act_store(act, act_mode, R, H, r, k, xr[k] * rs * nw[k]);
}

extern "C" int kern_add_norm(cudaStream_t s, float *x, const float *y, const float *ylo, int R,
                             int H, const float *norm_w, float eps, void *act, int act_mode,
                             int pdl) {
    if (R < 1) return (int)cudaErrorInvalidValue;
    return (int)klaunch(add_norm_kernel, dim3(R), dim3(ROW_THREADS), 0, s, pdl, x, y, ylo, R, H,
                        norm_w, eps, act, act_mode);
}

__global__ void gather_norm_kernel(const float *x, const kern_step *st, int O, int H,
                                   const float *nw, float eps, void *act, int act_mode) {
    pdl_launch();
    pdl_wait();
    __shared__ float s_tmp[32];
    int o = blockIdx.x;
    const float *xr = x + (size_t)st->out_rows[o] * H;
    float ss = 0.f;
    for (int k = threadIdx.x; k < H; k += blockDim.x) ss += xr[k] * xr[k];
    ss = block_sum(ss, s_tmp);
    float rs = 1.0f / sqrtf(ss / (float)H + eps);
    for (int k = threadIdx.x; k < H; k += blockDim.x)
        act_store(act, act_mode, O, H, o, k, xr[k] * rs * nw[k]);
}

extern "C" int kern_gather_norm(cudaStream_t s, const float *x, const kern_step *st, int O,
                                int H, const float *norm_w, float eps, void *act, int act_mode,
                                int pdl) {
    if (O < 1) return (int)cudaErrorInvalidValue;
    return (int)klaunch(gather_norm_kernel, dim3(O), dim3(ROW_THREADS), 0, s, pdl, x, st, O, H,
                        norm_w, eps, act, act_mode);
}

__global__ void to_act_kernel(const float *in, int R, int K, void *act, int act_mode) {
    pdl_launch();
    pdl_wait();
    size_t n = (size_t)R * K;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        act_store(act, act_mode, R, K, (int)(i / K), (int)(i % K), in[i]);
}

static int grid_for(size_t n) {
    size_t g = (n + 255) / 256;
    return g > 4096 ? 4096 : (int)(g ? g : 1);
}

extern "C" int kern_to_act(cudaStream_t s, const float *in, int R, int K, void *act,
                           int act_mode, int pdl) {
    return (int)klaunch(to_act_kernel, dim3(grid_for((size_t)R * K)), dim3(256), 0, s, pdl, in, R,
                        K, act, act_mode);
}

__global__ void swiglu_kernel(const float *y, const float *ylo, int R, int I, void *act,
                              int act_mode) {
    pdl_launch();
    pdl_wait();
    size_t n = (size_t)R * I;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int r = (int)(i / I), c = (int)(i % I);
        size_t gi = (size_t)r * 2 * I + c, ui = gi + I;
        float g = y[gi], u = y[ui];
        if (ylo) { g += ylo[gi]; u += ylo[ui]; }
        act_store(act, act_mode, R, I, r, c, g / (1.0f + expf(-g)) * u);
    }
}

extern "C" int kern_swiglu(cudaStream_t s, const float *y, const float *ylo, int R, int I,
                           void *act, int act_mode, int pdl) {
    return (int)klaunch(swiglu_kernel, dim3(grid_for((size_t)R * I)), dim3(256), 0, s, pdl, y, ylo,
                        R, I, act, act_mode);
}

__global__ void add_rows_kernel(float *y, const float *lo, size_t n) {
    pdl_launch();
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += lo[i];
}

extern "C" int kern_add_rows(cudaStream_t s, float *y, const float *lo, size_t n, int pdl) {
    return (int)klaunch(add_rows_kernel, dim3(grid_for(n)), dim3(256), 0, s, pdl, y, lo, n);
}

/* One block per row.  HF's rotate_half pairs element i with i + hd/2; the
 * angle is computed in double so long positions keep their accuracy. */
__global__ void rope_kv_kernel(const float *qkv, const float *qkv_lo, const float *bias,
                               const kern_step *st, int n_heads, const float *inv_freq,
                               float *q, kern_kv kv) {
    pdl_launch();
    pdl_wait();
    int r = blockIdx.x;
    int hd = kv.head_dim, half = hd / 2, nkv = kv.n_kv;
    int width = (n_heads + 2 * nkv) * hd;
    int pos = st->pos[r], seq = st->row_seq[r];
    int blk = st->table[(size_t)seq * st->table_stride + pos / kv.block_size];
    int slot = pos % kv.block_size;
    const float *row = qkv + (size_t)r * width;
    const float *lrow = qkv_lo ? qkv_lo + (size_t)r * width : NULL;
    float *kbase = kv.base + (size_t)blk * kv.blk_stride;
    float *vbase = kbase + (size_t)nkv * kv.block_size * hd;
    for (int idx = threadIdx.x; idx < (n_heads + nkv) * half; idx += blockDim.x) {
        int h = idx / half, i = idx % half;
        int c0 = h * hd + i, c1 = c0 + half;
        float x1 = row[c0], x2 = row[c1];
        if (lrow) { x1 += lrow[c0]; x2 += lrow[c1]; }
        if (bias) { x1 += bias[c0]; x2 += bias[c1]; }
        double sd, cd;
        sincos((double)pos * (double)inv_freq[i], &sd, &cd);
        float sn = (float)sd, cs = (float)cd;
        float o1 = x1 * cs - x2 * sn, o2 = x2 * cs + x1 * sn;
        if (h < n_heads) {
            float *qr = q + ((size_t)r * n_heads + h) * hd;
            qr[i] = o1; qr[i + half] = o2;
        } else {
            float *kr = kbase + ((size_t)(h - n_heads) * kv.block_size + slot) * hd;
            kr[i] = o1; kr[i + half] = o2;
        }
    }
    int voff = (n_heads + nkv) * hd;
    for (int idx = threadIdx.x; idx < nkv * hd; idx += blockDim.x) {
        int h = idx / hd, d = idx % hd;
        float v = row[voff + idx];
        if (lrow) v += lrow[voff + idx];
        if (bias) v += bias[voff + idx];
        vbase[((size_t)h * kv.block_size + slot) * hd + d] = v;
    }
}

extern "C" int kern_rope_kv(cudaStream_t s, const float *qkv, const float *qkv_lo,
                            const float *bias, const kern_step *st, int R, int n_heads,
                            const float *inv_freq, float *q, kern_kv kv, int pdl) {
    if (R < 1 || kv.head_dim % 2) return (int)cudaErrorInvalidValue;
    return (int)klaunch(rope_kv_kernel, dim3(R), dim3(128), 0, s, pdl, qkv, qkv_lo, bias, st,
                        n_heads, inv_freq, q, kv);
}
