/* kern_common.cuh — small device helpers shared by the kernel files. */
#ifndef KERN_COMMON_CUH
#define KERN_COMMON_CUH
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>
#include "kern.h"
#include "quant_block.h"   /* (after kern.h: its ENG_DT_*) */

/* bf16 -> f32 is a 16-bit shift; eight at once from one 16-byte load. */
__device__ __forceinline__ void bf16x8_to_f32(uint4 v, float f[8]) {
    f[0] = __uint_as_float(v.x << 16); f[1] = __uint_as_float(v.x & 0xffff0000u);
    f[2] = __uint_as_float(v.y << 16); f[3] = __uint_as_float(v.y & 0xffff0000u);
    f[4] = __uint_as_float(v.z << 16); f[5] = __uint_as_float(v.z & 0xffff0000u);
    f[6] = __uint_as_float(v.w << 16); f[7] = __uint_as_float(v.w & 0xffff0000u);
}

__device__ __forceinline__ float bf16_to_f32(uint16_t v) {
    return __uint_as_float((uint32_t)v << 16);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* GELU with PyTorch's tanh approximation (gelu_pytorch_tanh). */
__device__ __forceinline__ float gelu_tanh(float x) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f;   /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(beta * (x + kappa * (x * x * x))));
}

/* The gate's activation of a GLU: GeGLU's gelu_tanh (gelu != 0) or
 * SwiGLU's silu, the same arithmetic in every kernel that takes one (the
 * fused and unfused GLU paths give the same bits). */
__device__ __forceinline__ float glu_act(int gelu, float g) {
    return gelu ? gelu_tanh(g) : g / (1.0f + expf(-g));
}

/* Block-wide sum for blocks of up to 1024 threads; every thread gets it. */
__device__ __forceinline__ float block_sum(float v, float *s_tmp /* [32] */) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) s_tmp[warp] = v;
    __syncthreads();
    float t = 0.f;
    for (int i = 0; i < nw; i++) t += s_tmp[i];
    return t;
}

/* Start of a row of the paged KV pool of element type T (float for
 * KERN_F32, __nv_bfloat16 for KERN_BF16): head h of slot `slot` in block
 * blk (heads 0..n_kv-1 are keys, n_kv..2n_kv-1 values); HD > 0 fixes the
 * head size at compile time. */
template <typename T, int HD = 0>
__device__ __forceinline__ T *kv_row(const kern_kv &kv, int blk, int h, int slot) {
    const int hd = HD > 0 ? HD : kv.head_dim;
    return (T *)kv.base + (size_t)blk * kv.blk_stride + ((size_t)h * kv.block_size + slot) * hd;
}

/* Row r's own KV row (its position in its sequence's table) for head h:
 * where the step writes its k or v (kv_put writes its elements). */
__device__ __forceinline__ void *kv_step_row(const kern_kv &kv, const kern_step *st, int r, int h) {
    const int pos = st->pos[r], seq = st->row_seq[r];
    const int blk = st->table[(size_t)seq * st->table_stride + pos / kv.block_size];
    if (kv.dtype == KERN_BF16) return kv_row<__nv_bfloat16>(kv, blk, h, pos % kv.block_size);
    return kv_row<float>(kv, blk, h, pos % kv.block_size);
}

/* Element i of a KV row := v, rounded to bf16 in a bf16 pool. */
__device__ __forceinline__ void kv_put(const kern_kv &kv, void *row, int i, float v) {
    if (kv.dtype == KERN_BF16) ((__nv_bfloat16 *)row)[i] = __float2bfloat16_rn(v);
    else ((float *)row)[i] = v;
}

/* One, two or four consecutive KV elements as f32 (one load of 4/8/16
 * bytes; p aligned to it).  Plain loads: the pool is written by the pass. */
__device__ __forceinline__ float kv_ld1(const float *p) { return *p; }
__device__ __forceinline__ float kv_ld1(const __nv_bfloat16 *p) {
    return bf16_to_f32(*(const uint16_t *)p);
}
__device__ __forceinline__ float2 kv_ld2(const float *p) { return *(const float2 *)p; }
__device__ __forceinline__ float2 kv_ld2(const __nv_bfloat16 *p) {
    const unsigned u = *(const unsigned *)p;
    return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
}
__device__ __forceinline__ float4 kv_ld4(const float *p) { return *(const float4 *)p; }
__device__ __forceinline__ float4 kv_ld4(const __nv_bfloat16 *p) {
    const uint2 u = *(const uint2 *)p;
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                       __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
}

/* Programmatic dependent launch (Hopper): a kernel launched with the
 * attribute may start while its predecessor drains.  Every kernel lets its
 * successor launch at once (pdl_launch) and waits for its predecessor's
 * results (pdl_wait) before it touches any activation; only reads of
 * weights and of the step's header (kern_step: copied from the host before
 * the pass) and L2 prefetch hints may come before the wait.  Without the
 * attribute both are no-ops. */
__device__ __forceinline__ void pdl_launch() {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

/* Data an earlier kernel of the pass wrote (activations, q, logits, the
 * KV rows of this step) is read with coherent loads: plain, __ldca or
 * __ldcg, never __ldg, and through pointers without __restrict__ (which
 * lets the compiler pick the read-only path).  With programmatic dependent
 * launch a kernel is already running while its predecessor writes, so the
 * read-only path's contract (unchanged for the kernel's lifetime) does not
 * hold: measured, a decode kernel read stale q through it.  Weights stay
 * on __ldg. */

/* The most dynamic shared memory k may be launched with (needed above 48
 * KB).  The limit is process-wide per function: set it to the most any
 * launch of k asks, never to one launch's own size, or a later smaller
 * launch lowers it below what a captured graph's node was made with.  A
 * failed call leaves CUDA's last-error state set, which klaunch would then
 * report as the next, unrelated launch's failure: cleared here, and the
 * error returned to this call's caller. */
template <typename... KArgs>
static inline cudaError_t ksmem_limit(void (*k)(KArgs...), size_t bytes) {
    const cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e;
}

template <typename... KArgs, typename... Args>
static inline cudaError_t klaunch(void (*k)(KArgs...), dim3 grid, dim3 block, size_t smem,
                                  cudaStream_t s, int pdl, Args... args) {
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    cudaError_t e = cudaLaunchKernelEx(&cfg, k, ((KArgs)args)...);
    return e != cudaSuccess ? e : cudaGetLastError();
}

/* 16 bytes global -> shared without registers (through L2: coherent, so
 * allowed for activations after the PDL wait); wait_all waits for all. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_all;" ::: "memory");
}
/* Groups: commit closes the copies issued so far into a group (an empty
 * one when there are none); wait<N> waits for all groups but the newest N. */
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* ENG_ACT_Q16's rounding (eng.h, quant_block.h) of v in its group of 16
 * elements, where the 16 lanes of each half-warp hold a group's 16
 * consecutive elements (a kernel whose thread index and element index
 * agree mod 16, rows a multiple of 16 wide); every lane of the half-warp
 * must call it, with 0 where it holds no element. */
__device__ __forceinline__ float act_q16(float v) {
    const unsigned m = 0xffffu << (threadIdx.x & 16);
    float a = fabsf(v);
#pragma unroll
    for (int o = 8; o; o >>= 1) a = fmaxf(a, __shfl_xor_sync(m, a, o));
    return eng_qb_act_q16_value(v, a);
}

/* The same where each lane holds two consecutive elements: the 8 lanes of
 * each aligned group of 8 hold a group's 16 (thread index * 2 and element
 * index agree mod 16); every lane of the 8 must call it. */
__device__ __forceinline__ void act_q16_pair(float &v0, float &v1) {
    const unsigned m = 0xffu << (threadIdx.x & 24);
    float a = fmaxf(fabsf(v0), fabsf(v1));
#pragma unroll
    for (int o = 4; o; o >>= 1) a = fmaxf(a, __shfl_xor_sync(m, a, o));
    v0 = eng_qb_act_q16_value(v0, a);
    v1 = eng_qb_act_q16_value(v1, a);
}

/* Writes one activation element in the layout a GEMM expects (kern.h; the
 * KERN_ACT_Q16 flag is the caller's). */
__device__ __forceinline__ void act_store(void *act, int mode, int R, int K, int r, int k,
                                          float v) {
    mode &= 3;
    size_t i = (size_t)r * K + k;
    if (mode == KERN_ACT_F32) {
        ((float *)act)[i] = v;
    } else {
        __nv_bfloat16 hi = __float2bfloat16_rn(v);
        ((__nv_bfloat16 *)act)[i] = hi;
        if (mode == KERN_ACT_SPLIT)
            ((__nv_bfloat16 *)act)[(size_t)R * K + i] = __float2bfloat16_rn(v - __bfloat162float(hi));
    }
}

/* Weights that are read once (kern_skinny, kern_qskinny): no L1 line is
 * allocated for them, so the loads in flight are not bounded by the L1
 * left beside the shared memory. */
__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#endif
