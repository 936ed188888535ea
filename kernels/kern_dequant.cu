/* kern_dequant.cu — a quantized weight (kern_qw, the device layout of
 * kern_qpack_row) back to the values the CPU reference computes, as the
 * bf16 halves the wide path reads (cuda_backend.cu, quant_wide): hi =
 * bf16(w), lo = bf16(w - hi).
 *
 * A warp takes 256 elements of a row (one K-format block, or eight
 * 32-element blocks read from their planes), a lane 8 consecutive ones, and
 * runs quant_block.h's element functions on them (which give the CPU's
 * block functions' values bit for bit: tests/test_gguf.c): this file is
 * compiled with -fmad=false (Makefile) so that no product and sum fuse into
 * an FMA the CPU does not do.  A lane's 8 values leave as one 16-byte store
 * each of hi and lo, so a warp writes 512 contiguous bytes of each. */
#include "kern_quant.cuh"
#include "quant_block.h"

#define DQ_CHUNK 256   /* elements a warp */
#define DQ_WARPS 8

/* Element k of a row of type t (K elements, nb = K / 32) in the device
 * layout: K formats' blocks as GGUF stores them, the 32-element formats'
 * fields from their planes (q32_layout). */
__device__ __forceinline__ float dq_elem(int t, const uint8_t *row, int k, int nb) {
    if (t == ENG_DT_Q4_K || t == ENG_DT_Q5_K || t == ENG_DT_Q6_K)
        return eng_qb_elem_k(t, row + (size_t)(k / 256) * qstep_bytes(t), k % 256);
    const q32_planes l = q32_layout(t, nb);
    const int b = k / 32;
    return eng_qb_elem32(t, row + l.doff + (size_t)b * l.db, row + l.hoff + (size_t)b * 4,
                         row + (size_t)b * l.qb, k % 32);
}

/* The 8 elements k.. of row n of W (K a multiple of 8: 32). */
__device__ __forceinline__ void dq_eight(const kern_qw &W, int n, int k, int K, float (&w)[8]) {
    int t;
    const uint8_t *row = qrow(W, n, &t);
#pragma unroll
    for (int j = 0; j < 8; j++) w[j] = dq_elem(t, row, k + j, K / 32);
}

__global__ void __launch_bounds__(DQ_WARPS * 32)
dequant_halves_kernel(kern_qw W, int N, int K, uint16_t *out) {
    const int chunks = (K + DQ_CHUNK - 1) / DQ_CHUNK, lane = threadIdx.x & 31;
    const long long id = (long long)blockIdx.x * DQ_WARPS + (threadIdx.x >> 5);
    if (id >= (long long)N * chunks) return;
    const int n = (int)(id / chunks), k = (int)(id % chunks) * DQ_CHUNK + 8 * lane;
    if (k >= K) return;
    float w[8];
    dq_eight(W, n, k, K, w);
    uint16_t h8[8], l8[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const __nv_bfloat16 h = __float2bfloat16_rn(w[j]);
        h8[j] = __bfloat16_as_ushort(h);
        l8[j] = __bfloat16_as_ushort(__float2bfloat16_rn(__fsub_rn(w[j], __bfloat162float(h))));
    }
    uint4 hv, lv;
    memcpy(&hv, h8, 16);
    memcpy(&lv, l8, 16);
    /* n K + k is a multiple of 8 */
    *(uint4 *)(out + (size_t)n * K + k) = hv;
    *(uint4 *)(out + (size_t)N * K + (size_t)n * K + k) = lv;
}

extern "C" int kern_dequant_halves(cudaStream_t s, const kern_qw *W, int N, int K, uint16_t *out) {
    if (!qw_segments_ok(W, N, K)) return (int)cudaErrorInvalidValue;
    const long long warps = (long long)N * ((K + DQ_CHUNK - 1) / DQ_CHUNK);
    dequant_halves_kernel<<<(unsigned)((warps + DQ_WARPS - 1) / DQ_WARPS), DQ_WARPS * 32, 0, s>>>(
        *W, N, K, out);
    return (int)cudaGetLastError();
}

/* A block a row, a lane 8 elements: x[r] = row tokens[r] of E times scale,
 * as kern_embed writes it from the dense copy. */
__global__ void __launch_bounds__(DQ_WARPS * 32)
embed_q_kernel(kern_qw E, int H, const kern_step *st, float scale, float *x) {
    pdl_launch();
    pdl_wait();
    const int r = blockIdx.x, tok = st->tokens[r];
    for (int k = 8 * threadIdx.x; k < H; k += 8 * blockDim.x) {
        float w[8];
        dq_eight(E, tok, k, H, w);
#pragma unroll
        for (int j = 0; j < 8; j++) w[j] = scale == 1.0f ? w[j] : w[j] * scale;
        float4 *xr = (float4 *)(x + (size_t)r * H + k);
        xr[0] = make_float4(w[0], w[1], w[2], w[3]);
        xr[1] = make_float4(w[4], w[5], w[6], w[7]);
    }
}

extern "C" int kern_embed_q(cudaStream_t s, const kern_qw *E, int V, int H, const kern_step *st,
                            int R, float scale, float *x, int pdl) {
    if (R < 1 || !qw_segments_ok(E, V, H)) return (int)cudaErrorInvalidValue;
    return (int)klaunch(embed_q_kernel, dim3(R), dim3(DQ_WARPS * 32), 0, s, pdl, *E, H, st, scale, x);
}
