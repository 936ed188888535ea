/* kern_misc.cu — the element-wise and per-row kernels around the matrix
 * products: embedding lookup, residual add + RMSNorm, SwiGLU / GeGLU,
 * activation conversion for cuBLASLt, and (q/k norm +) RoPE + KV write into
 * the paged pool. */
#include "kern_common.cuh"

#define ROW_THREADS 256

/* Consumers add a product's parts in part order, so a result never depends
 * on timing.  A plain loop (acc += y[p]) waits for each load before issuing
 * the next: one memory round trip per part, up to 22 for kern_skinny's
 * outputs.  These issue PARTS_BATCH parts' loads together and then add them
 * in the same order (bit-identical sums). */
#define PARTS_BATCH 4

/* a += y[p * ps + i] for parts p = p0 .. parts-1 */
__device__ __forceinline__ void add_parts(float &a, const float *y, size_t ps, int p0, int parts,
                                          size_t i) {
    for (int p = p0; p < parts; p += PARTS_BATCH) {
        float t[PARTS_BATCH];
#pragma unroll
        for (int u = 0; u < PARTS_BATCH; u++) t[u] = p + u < parts ? y[(p + u) * ps + i] : 0.f;
#pragma unroll
        for (int u = 0; u < PARTS_BATCH; u++)
            if (p + u < parts) a += t[u];
    }
}

/* the same for two elements at once (their loads in flight together).  One
 * template for these two and add+norm's loop (elements i0 + j step, the first
 * n of them) took more registers and made 0.5B steps 2-3% slower (v13). */
__device__ __forceinline__ void add_parts2(float &a, float &b, const float *y, size_t ps, int p0,
                                           int parts, size_t i, size_t j) {
    for (int p = p0; p < parts; p += PARTS_BATCH) {
        float ta[PARTS_BATCH], tb[PARTS_BATCH];
#pragma unroll
        for (int u = 0; u < PARTS_BATCH; u++) {
            const bool in = p + u < parts;
            ta[u] = in ? y[(p + u) * ps + i] : 0.f;
            tb[u] = in ? y[(p + u) * ps + j] : 0.f;
        }
#pragma unroll
        for (int u = 0; u < PARTS_BATCH; u++)
            if (p + u < parts) { a += ta[u]; b += tb[u]; }
    }
}

__global__ void embed_kernel(const void *E, int wdt, int H, const kern_step *st, float scale,
                             float *x) {
    pdl_launch();
    pdl_wait();
    int r = blockIdx.x;
    size_t tok = (size_t)st->tokens[r];
    for (int k = threadIdx.x; k < H; k += blockDim.x) {
        float v = wdt == KERN_BF16 ? bf16_to_f32(((const uint16_t *)E)[tok * H + k])
                                   : ((const float *)E)[tok * H + k];
        x[(size_t)r * H + k] = scale == 1.0f ? v : v * scale;
    }
}

extern "C" int kern_embed(cudaStream_t s, const void *E, int wdt, int H, const kern_step *st,
                          int R, float scale, float *x, int pdl) {
    if (R < 1) return (int)cudaErrorInvalidValue;
    return (int)klaunch(embed_kernel, dim3(R), dim3(ROW_THREADS), 0, s, pdl, E, wdt, H, st, scale,
                        x);
}

/* One block per row: x += y's parts (in order), then act = x * rstd * w.
 * With post_w, y's parts are summed first and normalised (Gemma's output
 * norms) before x adds them.  Rows of up to
 * AN_PER elements per thread (H <= 4096 with the launcher's block sizes)
 * keep them in registers and issue the loads of PARTS_BATCH parts at once
 * (16 a thread; 8 elements a thread took 152 registers, too many for a
 * block of 512); the norm weights are read before the wait.  Wider rows
 * loop (two reads of x). */
#define AN_PER 4
__global__ void __launch_bounds__(1024)
add_norm_kernel(float *x, float *y, int parts, int R, int H, const float *__restrict__ pw,
                const float *__restrict__ nw, float eps, void *act, int act_mode) {
    pdl_launch();
    __shared__ float s_tmp[32];
    const int r = blockIdx.x, nt = blockDim.x, t = threadIdx.x;
    float *xr = x + (size_t)r * H;
    float *yr = y ? y + (size_t)r * H : NULL;
    const size_t ps = (size_t)R * H;
    if (H <= AN_PER * nt) {
        float w[AN_PER], v[AN_PER];
#pragma unroll
        for (int j = 0; j < AN_PER; j++) {
            int k = t + j * nt;
            w[j] = nw && k < H ? nw[k] : 0.f;
        }
        pdl_wait();
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < AN_PER; j++) {
            int k = t + j * nt;
            v[j] = k < H ? (pw && yr ? 0.f : xr[k]) : 0.f;   /* post_w: y's sum first, x after */
        }
        for (int p = 0; yr && p < parts; p += PARTS_BATCH) {   /* as add_parts, every element at once */
            float tp[PARTS_BATCH][AN_PER];
#pragma unroll
            for (int u = 0; u < PARTS_BATCH; u++)
#pragma unroll
                for (int j = 0; j < AN_PER; j++) {
                    int k = t + j * nt;
                    tp[u][j] = p + u < parts && k < H ? yr[(p + u) * ps + k] : 0.f;
                }
#pragma unroll
            for (int u = 0; u < PARTS_BATCH; u++)
#pragma unroll
                for (int j = 0; j < AN_PER; j++)
                    if (p + u < parts) v[j] += tp[u][j];
        }
        if (pw && yr) {   /* v holds y's sum: x + norm(y) */
            float sy = 0.f;
#pragma unroll
            for (int j = 0; j < AN_PER; j++) sy += v[j] * v[j];
            sy = block_sum(sy, s_tmp);
            const float ry = 1.0f / sqrtf(sy / (float)H + eps);
#pragma unroll
            for (int j = 0; j < AN_PER; j++) {
                int k = t + j * nt;
                if (k < H) v[j] = xr[k] + v[j] * ry * pw[k];
            }
        }
#pragma unroll
        for (int j = 0; j < AN_PER; j++) {
            int k = t + j * nt;
            if (yr && k < H) xr[k] = v[j];
            ss += v[j] * v[j];
        }
        if (!nw) return;
        ss = block_sum(ss, s_tmp);
        const float rs = 1.0f / sqrtf(ss / (float)H + eps);
#pragma unroll
        for (int j = 0; j < AN_PER; j++) {
            int k = t + j * nt;
            float o = k < H ? v[j] * rs * w[j] : 0.f;
            if (act_mode & KERN_ACT_Q16) o = act_q16(o);
            if (k < H) act_store(act, act_mode, R, H, r, k, o);
        }
        return;
    }
    pdl_wait();
    float ss = 0.f;
    float ry = 1.f;
    if (pw && yr) {   /* y's sum into its first part, then its norm */
        float sy = 0.f;
        for (int k = t; k < H; k += nt) {
            float v = yr[k];
            add_parts(v, yr, ps, 1, parts, k);
            yr[k] = v;
            sy += v * v;
        }
        sy = block_sum(sy, s_tmp);
        ry = 1.0f / sqrtf(sy / (float)H + eps);
    }
    for (int k = t; k < H; k += nt) {
        float v = xr[k];
        if (yr && pw) {
            v += yr[k] * ry * pw[k];
            xr[k] = v;
        } else if (yr) {
            add_parts(v, yr, ps, 0, parts, k);
            xr[k] = v;
        }
        ss += v * v;
    }
    if (!nw) return;
    ss = block_sum(ss, s_tmp);
    const float rs = 1.0f / sqrtf(ss / (float)H + eps);
    for (int k = t; k < H; k += nt) {   /* H a multiple of 16 with KERN_ACT_Q16 */
        float o = xr[k] * rs * nw[k];
        if (act_mode & KERN_ACT_Q16) o = act_q16(o);
        act_store(act, act_mode, R, H, r, k, o);
    }
}

extern "C" int kern_add_norm(cudaStream_t s, float *x, const float *y, int parts, int R, int H,
                             const float *post_w, const float *norm_w, float eps, void *act,
                             int act_mode, int pdl) {
    if (R < 1 || H < 1 || (y && parts < 1)) return (int)cudaErrorInvalidValue;
    const int nt = H <= AN_PER * 256 ? 256 : H <= AN_PER * 512 ? 512 : 1024;
    return (int)klaunch(add_norm_kernel, dim3(R), dim3(nt), 0, s, pdl, x, (float *)y, parts, R, H,
                        post_w, norm_w, eps, act, act_mode);
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
    for (int k = threadIdx.x; k < H; k += blockDim.x) {
        float v = xr[k] * rs * nw[k];
        if (act_mode & KERN_ACT_Q16) v = act_q16(v);
        act_store(act, act_mode, O, H, o, k, v);
    }
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
         i += (size_t)gridDim.x * blockDim.x) {
        float v = in[i];
        if (act_mode & KERN_ACT_Q16) v = act_q16(v);   /* K a multiple of 16 */
        act_store(act, act_mode, R, K, (int)(i / K), (int)(i % K), v);
    }
}

static int grid_for(size_t n) {
    size_t g = (n + 255) / 256;
    return g > 4096 ? 4096 : (int)(g ? g : 1);
}

extern "C" int kern_to_act(cudaStream_t s, const float *in, int R, int K, void *act,
                           int act_mode, int pdl) {
    if (R < 1 || K < 1 || (act_mode & 3) > KERN_ACT_SPLIT || ((act_mode & KERN_ACT_Q16) && K % 16))
        return (int)cudaErrorInvalidValue;
    return (int)klaunch(to_act_kernel, dim3(grid_for((size_t)R * K)), dim3(256), 0, s, pdl, in, R,
                        K, act, act_mode);
}

__global__ void swiglu_kernel(const float *y, int parts, int R, int I, int gelu, void *act,
                              int act_mode) {
    pdl_launch();
    pdl_wait();
    size_t n = (size_t)R * I;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int r = (int)(i / I), c = (int)(i % I);
        size_t gi = (size_t)r * 2 * I + c, ui = gi + I;
        float g = y[gi], u = y[ui];
        add_parts2(g, u, y, n * 2, 1, parts, gi, ui);
        float v = glu_act(gelu, g) * u;
        if (act_mode & KERN_ACT_Q16) v = act_q16(v);   /* I a multiple of 16 */
        act_store(act, act_mode, R, I, r, c, v);
    }
}

extern "C" int kern_swiglu(cudaStream_t s, const float *y, int parts, int R, int I, int gelu,
                           void *act, int act_mode, int pdl) {
    if (R < 1 || I < 1 || parts < 1) return (int)cudaErrorInvalidValue;
    return (int)klaunch(swiglu_kernel, dim3(grid_for((size_t)R * I)), dim3(256), 0, s, pdl, y, parts,
                        R, I, gelu, act, act_mode);
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

/* A block per (row, head) of hd/2 threads, thread i owning the pair (i, i +
 * hd/2) -- HF's rotate_half: q and k heads are rotated (angle in double so
 * long positions keep their accuracy), after their RMSNorm when the model
 * has q/k norms, v heads copied.  Why so many small blocks: one block per
 * row left a row's ~900 rotations as a chain of dependent loads and sincos
 * in 4 warps (7 us a layer at 32 rows). */
__global__ void rope_kv_kernel(const float *qkv, int parts,
                               const float *__restrict__ bias, const kern_step *st, int n_heads,
                               const float *__restrict__ inv_freq,
                               const float *__restrict__ q_norm, const float *__restrict__ k_norm,
                               float eps, float q_scale, float *__restrict__ q, kern_kv kv) {
    __shared__ float s_tmp[32];
    pdl_launch();
    const int r = blockIdx.x, h = blockIdx.y, i = threadIdx.x;
    const int hd = kv.head_dim, half = hd / 2, nkv = kv.n_kv;
    /* the step's positions and block table come from the host: read before the wait;
     * the pool holds a block's nkv k heads, then its nkv v heads: head h - n_heads */
    const int pos = st->pos[r];
    float *qdst = h < n_heads ? q + ((size_t)r * n_heads + h) * hd : NULL;
    void *kvdst = h < n_heads ? NULL : kv_step_row(kv, st, r, h - n_heads);
    double sd = 0.0, cd = 1.0;
    if (h < n_heads + nkv) sincos((double)pos * (double)inv_freq[i], &sd, &cd);
    pdl_wait();
    const size_t c0 = (size_t)r * (n_heads + 2 * nkv) * hd + (size_t)h * hd + i, c1 = c0 + half;
    const int bc = h * hd + i;
    const size_t ps = (size_t)gridDim.x * (n_heads + 2 * nkv) * hd;
    float x1 = qkv[c0], x2 = qkv[c1];
    add_parts2(x1, x2, qkv, ps, 1, parts, c0, c1);
    if (bias) { x1 += bias[bc]; x2 += bias[bc + half]; }
    const float *nw = h < n_heads ? q_norm : h < n_heads + nkv ? k_norm : NULL;
    if (nw) {   /* the same for every thread of the block */
        const float rs = 1.0f / sqrtf(block_sum(x1 * x1 + x2 * x2, s_tmp) / (float)hd + eps);
        x1 = x1 * rs * nw[i];
        x2 = x2 * rs * nw[i + half];
    }
    if (h < n_heads + nkv) {
        const float sn = (float)sd, cs = (float)cd, m = h < n_heads ? q_scale : 1.0f;
        const float y1 = (x1 * cs - x2 * sn) * m, y2 = (x2 * cs + x1 * sn) * m;
        x1 = y1;
        x2 = y2;
    }
    if (qdst) {
        qdst[i] = x1;
        qdst[i + half] = x2;
    } else {   /* k or v into the pool, rounded to bf16 in a bf16 pool */
        kv_put(kv, kvdst, i, x1);
        kv_put(kv, kvdst, i + half, x2);
    }
}

extern "C" int kern_rope_kv(cudaStream_t s, const float *qkv, int parts,
                            const float *bias, const kern_step *st, int R, int n_heads,
                            const float *inv_freq, const float *q_norm, const float *k_norm,
                            float eps, float q_scale, float *q, kern_kv kv, int pdl) {
    if (R < 1 || parts < 1 || kv.head_dim % 2 || kv.head_dim > 2048 || !q_norm != !k_norm)
        return (int)cudaErrorInvalidValue;
    return (int)klaunch(rope_kv_kernel, dim3(R, n_heads + 2 * kv.n_kv), dim3(kv.head_dim / 2), 0,
                        s, pdl, qkv, parts, bias, st, n_heads, inv_freq, q_norm, k_norm, eps,
                        q_scale, q, kv);
}
