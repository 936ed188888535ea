/* bench_sync — what a kernel boundary costs in a batch-1 decode step, and
 * what a persistent kernel's grid barrier costs instead (issue 26: "a
 * decode step for 1-16 rows as one persistent kernel, or as few as
 * measurement shows best").
 *
 * The work is a model's batch-1 products in the step's order (per layer:
 * q|k|v, o, gate|up, down; bf16 weights, each product's input the previous
 * one's output), the same device function in every variant:
 *
 *   launches   a kernel a product, captured in a CUDA graph (no PDL)
 *   pdl        the same with programmatic dependent launch: a product's
 *              first weights are loaded before it waits for its input
 *   persistent one kernel for the chain, a grid barrier between products;
 *              the next product's first weights are loaded before the
 *              barrier, as the PDL prologue does
 *   pdl_l2, persistent_l2
 *              the same, with the rest of each warp's first row (on small
 *              products, all of it) prefetched into L2 before the wait
 *
 * Each variant's chain is timed (CUDA events, median of the runs) against
 * its floor: the weight bytes at the copy bandwidth measured in the same
 * run (a device-to-device copy of 1 GiB).  The outputs of all the
 * variants must be bit-identical (same function, same order): checked, and
 * the run fails otherwise.  us_a_boundary is (chain - floor) / products:
 * all the chain loses to the floor, put on its boundaries.  Prints a table
 * and writes JSON (--out).
 *
 *   bench_sync [--shape 0.5b|1.5b|7b|all] [--reps N] [--out FILE]
 */
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <cmath>
#include <vector>

#include "kern_common.cuh"

#define BS_THREADS 256
#define BS_WARPS (BS_THREADS / 32)
#define BS_PRE 4           /* 16-byte loads a lane issues before the wait */
#define NV 5               /* variants */

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    fprintf(stderr, "bench_sync: %s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__); exit(1); } } while (0)

struct bs_op { const uint4 *W; int N, K; const float *x; float *y; };

/* A warp a row: lane l takes the row's 16-byte pieces l, l + 32, ...; the
 * first BS_PRE of the warp's first row are loaded by bs_pre (weights only:
 * allowed before the wait), the rest after. */
struct bs_pre_t { uint4 w[BS_PRE]; };

template <bool L2>
__device__ __forceinline__ void bs_pre(const bs_op &op, int bid, bs_pre_t &p) {
    const int lane = threadIdx.x & 31, row = bid * BS_WARPS + (threadIdx.x >> 5), n16 = op.K / 8;
    if (L2 && row < op.N)   /* the rest of the warp's first row into L2: a line a lane */
        for (int c = 8 * (lane + 4 * BS_PRE); c < n16; c += 256)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(op.W + (size_t)row * n16 + c));
#pragma unroll
    for (int i = 0; i < BS_PRE; i++) {
        const int c = lane + 32 * i;
        p.w[i] = row < op.N && c < n16 ? __ldg(op.W + (size_t)row * n16 + c) : make_uint4(0, 0, 0, 0);
    }
}

__device__ __forceinline__ float bs_dot8(uint4 w, const float *x) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&w;
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 f = __bfloat1622float2(h[j]);
        s = fmaf(f.x, x[2 * j], s);
        s = fmaf(f.y, x[2 * j + 1], s);
    }
    return s;
}

/* The body, after the wait: stage x, then every row of the block's share. */
__device__ __forceinline__ void bs_body(const bs_op &op, int bid, int nb, const bs_pre_t &p, float *xs) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n16 = op.K / 8;
    for (int i = threadIdx.x; i < op.K; i += BS_THREADS) xs[i] = __ldcg(op.x + i);
    __syncthreads();
    for (int row = bid * BS_WARPS + warp, first = 1; row < op.N; row += nb * BS_WARPS, first = 0) {
        const uint4 *w = op.W + (size_t)row * n16;
        float s = 0.f;
        int c = lane;
        if (first) {
#pragma unroll
            for (int i = 0; i < BS_PRE; i++, c += 32)
                if (c < n16) s += bs_dot8(p.w[i], xs + 8 * c);
        }
        for (; c + 96 < n16; c += 128) {   /* four pieces in flight */
            const uint4 a = __ldg(w + c), b = __ldg(w + c + 32), d = __ldg(w + c + 64), e = __ldg(w + c + 96);
            s += bs_dot8(a, xs + 8 * c) + bs_dot8(b, xs + 8 * (c + 32)) + bs_dot8(d, xs + 8 * (c + 64)) +
                 bs_dot8(e, xs + 8 * (c + 96));
        }
        for (; c < n16; c += 32) s += bs_dot8(__ldg(w + c), xs + 8 * c);
#pragma unroll
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) op.y[row] = s;
    }
    __syncthreads();   /* xs is reused by the next product */
}

template <bool L2>
__global__ void __launch_bounds__(BS_THREADS, 2) bs_kernel(bs_op op) {
    extern __shared__ float bs_xs[];
    bs_pre_t p;
    bs_pre<L2>(op, blockIdx.x, p);
    pdl_launch();
    pdl_wait();
    bs_body(op, blockIdx.x, gridDim.x, p, bs_xs);
}

/* Grid barrier: a counter that only grows; barrier i of the launch waits
 * until every block has arrived i + 1 times.  The arrival releases the
 * block's writes, the wait acquires the others'. */
__device__ __forceinline__ void bs_grid_wait(unsigned *cnt, unsigned target) {
    __syncthreads();
    if (threadIdx.x == 0) {
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(cnt) : "memory");
        unsigned v;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(cnt) : "memory");
        } while (v < target);
    }
    __syncthreads();
}

template <bool L2>
__global__ void __launch_bounds__(BS_THREADS, 2) bs_persistent(const bs_op *ops, int n_ops, unsigned *cnt) {
    extern __shared__ float bs_xs[];
    for (int i = 0; i < n_ops; i++) {
        const bs_op op = ops[i];
        bs_pre_t p;
        bs_pre<L2>(op, blockIdx.x, p);
        if (i > 0) bs_grid_wait(cnt, i * gridDim.x);
        bs_body(op, blockIdx.x, gridDim.x, p, bs_xs);
    }
}

__global__ void bs_fill(uint16_t *w, size_t n, float scale, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
        const float v = ((float)(h & 0xffff) / 65536.f - 0.5f) * 2.f * scale;
        w[i] = __bfloat16_as_ushort(__float2bfloat16(v));
    }
}

struct shape { const char *name; int H, I, kv, L; };
static const shape SHAPES[] = {
    {"0.5b", 896, 4864, 128, 24},    /* Qwen2.5 0.5B */
    {"1.5b", 1536, 8960, 256, 28},   /* Qwen2.5 1.5B */
    {"7b", 3584, 18944, 512, 28},    /* Qwen2.5 7B */
};

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int main(int argc, char **argv) {
    const char *want = "all", *out = NULL;
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) want = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else { fprintf(stderr, "usage: bench_sync [--shape 0.5b|1.5b|7b|all] [--reps N] [--out FILE]\n"); return 2; }
    }
    if (reps < 3) reps = 3;
    int known = !strcmp(want, "all");
    for (const shape &sh : SHAPES) known |= !strcmp(want, sh.name);
    if (!known) { fprintf(stderr, "bench_sync: unknown shape '%s' (0.5b, 1.5b, 7b or all)\n", want); return 2; }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int n_sms = prop.multiProcessorCount;

    /* copy bandwidth: read + write of 1 GiB, device to device */
    const size_t cb = (size_t)1 << 30;
    void *ca, *cbuf;
    CK(cudaMalloc(&ca, cb));
    CK(cudaMalloc(&cbuf, cb));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> ct;
    for (int r = 0; r < 7; r++) {
        CK(cudaEventRecord(e0));
        CK(cudaMemcpyAsync(cbuf, ca, cb, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        ct.push_back(ms);
    }
    CK(cudaFree(ca));
    CK(cudaFree(cbuf));
    const double bw = 2.0 * cb / (median(ct) * 1e-3);   /* bytes/s */
    printf("%s, %d SMs; copy bandwidth %.0f GB/s\n", prop.name, n_sms, bw / 1e9);
    printf("%-6s %-11s %6s %10s %9s %9s %12s\n", "shape", "variant", "ops", "chain_us", "floor_us", "of_floor",
           "us_a_boundary");

    FILE *js = out ? fopen(out, "w") : NULL;
    if (out && !js) { fprintf(stderr, "bench_sync: cannot write %s\n", out); return 1; }
    if (js) fprintf(js, "{\"device\": \"%s\", \"copy_GBps\": %.1f, \"results\": [", prop.name, bw / 1e9);
    int first_js = 1, failed = 0;

    for (const shape &sh : SHAPES) {
        if (strcmp(want, "all") && strcmp(want, sh.name)) continue;
        const int dims[4][2] = {{sh.H + 2 * sh.kv, sh.H}, {sh.H, sh.H}, {2 * sh.I, sh.H}, {sh.H, sh.I}};
        /* the products' inputs are the previous outputs: a product of K
         * inputs reads the first K of its predecessor's N outputs (gate|up
         * gives 2I, down reads I), so every K <= the N before it, and the
         * first reads a vector of H */
        size_t welems = 0;
        for (int l = 0; l < sh.L; l++)
            for (int j = 0; j < 4; j++) welems += (size_t)dims[j][0] * dims[j][1];
        uint16_t *W;
        CK(cudaMalloc(&W, welems * 2));
        const int maxn = 2 * sh.I + sh.H + 2 * sh.kv;
        float *buf[2], *res[NV];
        CK(cudaMalloc(&buf[0], (size_t)maxn * 4));
        CK(cudaMalloc(&buf[1], (size_t)maxn * 4));
        std::vector<float> hx(sh.H);
        for (int i = 0; i < sh.H; i++) hx[i] = (float)((i * 37) % 101 - 50) / 50.f;
        float *x0;   /* the chain's input, copied into buf[0] at the start of every run */
        CK(cudaMalloc(&x0, (size_t)sh.H * 4));
        CK(cudaMemcpy(x0, hx.data(), (size_t)sh.H * 4, cudaMemcpyHostToDevice));
        std::vector<bs_op> ops;
        size_t off = 0;
        for (int l = 0; l < sh.L; l++)
            for (int j = 0; j < 4; j++) {
                bs_op op;
                op.W = (const uint4 *)(W + off);
                op.N = dims[j][0];
                op.K = dims[j][1];
                op.x = buf[ops.size() & 1];
                op.y = buf[(ops.size() + 1) & 1];
                /* weights uniform in +-1.7 / sqrt(K): the chain's values stay finite */
                bs_fill<<<4 * n_sms, 256>>>(W + off, (size_t)op.N * op.K, 1.7f / sqrtf((float)op.K),
                                            (uint32_t)off);
                off += (size_t)op.N * op.K;
                ops.push_back(op);
            }
        CK(cudaGetLastError());
        bs_op *d_ops;
        CK(cudaMalloc(&d_ops, ops.size() * sizeof(bs_op)));
        CK(cudaMemcpy(d_ops, ops.data(), ops.size() * sizeof(bs_op), cudaMemcpyHostToDevice));
        unsigned *cnt;
        CK(cudaMalloc(&cnt, 4));
        const float *last = ops.back().y;
        const int outn = ops.back().N;
        for (int v = 0; v < NV; v++) CK(cudaMalloc(&res[v], (size_t)outn * 4));

        const size_t smem = (size_t)std::max(sh.H, sh.I) * 4;
        for (auto k : {bs_kernel<false>, bs_kernel<true>})
            CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        for (auto k : {bs_persistent<false>, bs_persistent<true>})
            CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        int per_sm = 0, per_sm2 = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, bs_persistent<false>, BS_THREADS, smem));
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm2, bs_persistent<true>, BS_THREADS, smem));
        per_sm = std::min(per_sm, per_sm2);
        if (per_sm < 1) { fprintf(stderr, "bench_sync: %s: no block fits a multiprocessor\n", sh.name); return 1; }
        const int nb = n_sms * std::min(per_sm, 2);   /* every block resident: the barrier needs it */
        double bytes = 0;
        for (const bs_op &op : ops) bytes += 2.0 * op.N * op.K;
        const double floor_us = bytes / bw * 1e6;

        cudaStream_t st;
        CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
        /* _l2: the rest of each warp's first row is prefetched into L2
         * before the wait as well */
        static const char *names[NV] = {"launches", "pdl", "persistent", "pdl_l2", "persistent_l2"};
        for (int v = 0; v < NV; v++) {
            cudaGraph_t g;
            cudaGraphExec_t ge;
            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
            CK(cudaMemcpyAsync(buf[0], x0, (size_t)sh.H * 4, cudaMemcpyDeviceToDevice, st));
            if (v == 0 || v == 1 || v == 3) {
                for (const bs_op &op : ops)
                    CK(klaunch(v == 3 ? bs_kernel<true> : bs_kernel<false>, dim3(nb), dim3(BS_THREADS), smem, st,
                               v != 0, op));
            } else {
                CK(cudaMemsetAsync(cnt, 0, 4, st));
                if (v == 2) bs_persistent<false><<<nb, BS_THREADS, smem, st>>>(d_ops, (int)ops.size(), cnt);
                else bs_persistent<true><<<nb, BS_THREADS, smem, st>>>(d_ops, (int)ops.size(), cnt);
                CK(cudaGetLastError());
            }
            CK(cudaStreamEndCapture(st, &g));
            CK(cudaGraphInstantiate(&ge, g, 0));
            std::vector<float> t;
            for (int r = 0; r < reps + 2; r++) {
                CK(cudaEventRecord(e0, st));
                CK(cudaGraphLaunch(ge, st));
                CK(cudaEventRecord(e1, st));
                CK(cudaEventSynchronize(e1));
                float ms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                if (r >= 2) t.push_back(ms);
            }
            CK(cudaMemcpy(res[v], last, (size_t)outn * 4, cudaMemcpyDeviceToDevice));
            CK(cudaGraphExecDestroy(ge));
            CK(cudaGraphDestroy(g));
            const double us = median(t) * 1e3;
            const double per = (us - floor_us) / ops.size();
            printf("%-6s %-11s %6zu %10.1f %9.1f %8.1f%% %12.2f\n", sh.name, names[v], ops.size(), us, floor_us,
                   100.0 * floor_us / us, per);
            if (js)
                fprintf(js, "%s\n  {\"shape\": \"%s\", \"variant\": \"%s\", \"ops\": %zu, \"blocks\": %d, "
                            "\"chain_us\": %.2f, \"floor_us\": %.2f, \"of_floor\": %.4f, \"us_a_boundary\": %.3f}",
                        first_js ? "" : ",", sh.name, names[v], ops.size(), nb, us, floor_us, floor_us / us, per);
            first_js = 0;
        }
        /* the same function in the same order: the same bits */
        std::vector<float> h[NV];
        for (int v = 0; v < NV; v++) {
            h[v].resize(outn);
            CK(cudaMemcpy(h[v].data(), res[v], (size_t)outn * 4, cudaMemcpyDeviceToHost));
        }
        int finite = 1;
        for (int i = 0; i < outn; i++) finite &= std::isfinite(h[0][i]) ? 1 : 0;
        int same = 1;
        for (int v = 1; v < NV; v++) same &= !memcmp(h[0].data(), h[v].data(), outn * 4);
        printf("%-6s outputs of the variants: %s, %s (first %g)\n", sh.name, same ? "bit-identical" : "DIFFER",
               finite ? "finite" : "NOT FINITE", h[0][0]);
        failed |= !same || !finite;
        CK(cudaStreamDestroy(st));
        for (int v = 0; v < NV; v++) CK(cudaFree(res[v]));
        CK(cudaFree(cnt));
        CK(cudaFree(d_ops));
        CK(cudaFree(buf[0]));
        CK(cudaFree(buf[1]));
        CK(cudaFree(W));
        CK(cudaFree(x0));
    }
    if (js) {
        fprintf(js, "\n]}\n");
        fclose(js);
    }
    return failed;
}
