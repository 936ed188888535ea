/* kern_dequant.cu — a quantized weight (kern_qw, the device layout of
 * kern_qpack_row) back to the values the CPU reference computes, as the
 * bf16 halves the wide path reads (cuda_backend.cu, quant_wide): hi =
 * bf16(w), lo = bf16(w - hi).
 *
 * A warp takes 256 elements of a row (one K-format block, or eight
 * 32-element blocks from their planes): it copies the chunk's bytes into
 * shared memory with 16-byte loads, then each lane runs quant_block.h's run
 * of eight on 8 consecutive elements (the same floats as the CPU's block
 * functions: tests/test_gguf.c).  This file is compiled with -fmad=false
 * (Makefile) so that no product and sum fuse into an FMA the CPU does not
 * do.  A lane's 8 values leave as one 16-byte store each of hi and lo, so
 * a warp writes 512 contiguous bytes of each. */
#include "kern_quant.cuh"
#include "quant_block.h"

#define DQ_CHUNK 256   /* elements a warp */
#define DQ_WARPS 8

/* A warp's staging: a K-format block (up to the padded Q6_K's 224 bytes)
 * at 0; or eight 32-element blocks' quants (up to 256 bytes) at 0, their
 * d|m (up to 32) at DQ_DM and qh (32) at DQ_QH. */
#define DQ_DM 256
#define DQ_QH 288
#define DQ_STAGE 320

/* Copies chunk c of row n of W (K elements) into st; returns its type. */
__device__ __forceinline__ int dq_stage(const kern_qw &W, int n, int c, int K, uint8_t *st, int lane) {
    int t;
    const uint8_t *row = qrow(W, n, &t);
    if (t == ENG_DT_Q4_K || t == ENG_DT_Q5_K || t == ENG_DT_Q6_K) {
        /* the stride (144, 176, padded 224) is a multiple of 16, rows 16-aligned */
        const int bytes = qstep_bytes(t);
        if (16 * lane < bytes)
            ((uint4 *)st)[lane] = __ldg((const uint4 *)(row + (size_t)c * bytes) + lane);
    } else {
        const q32_planes l = q32_layout(t, K / 32);
        const int b0 = 8 * c, nblk = min(8, K / 32 - b0);
        /* quant runs: b0 qb is a multiple of 16 (qb 16 or 32) */
        if (16 * lane < nblk * l.qb)
            ((uint4 *)st)[lane] = __ldg((const uint4 *)(row + (size_t)b0 * l.qb) + lane);
        /* d|m: 2-byte aligned only (the plane after qh starts at nb 4 bytes) */
        if (2 * lane < nblk * l.db)
            ((uint16_t *)(st + DQ_DM))[lane] = ld_u16(row + l.doff + (size_t)b0 * l.db + 2 * lane);
        if ((t == ENG_DT_Q5_0 || t == ENG_DT_Q5_1) && 4 * lane < 4 * nblk)
            ((uint32_t *)(st + DQ_QH))[lane] = __ldg((const unsigned *)(row + l.hoff + 4 * (size_t)b0) + lane);
    }
    return t;
}

/* The lane's 8 elements (8 lane ..) of a staged chunk of type t. */
__device__ __forceinline__ void dq_run(int t, const uint8_t *st, int lane, int K, float (&w)[8]) {
    if (t == ENG_DT_Q4_K || t == ENG_DT_Q5_K || t == ENG_DT_Q6_K) {
        eng_qb_run8_k(t, st, 8 * lane, w);
        return;
    }
    const q32_planes l = q32_layout(t, K / 32);   /* (its qb and db: the staging's strides) */
    const int b = lane / 4;
    eng_qb_run8_32(t, st + DQ_DM + b * l.db, st + DQ_QH + 4 * b, st + b * l.qb, 8 * (lane % 4), w);
}

__global__ void __launch_bounds__(DQ_WARPS * 32)
dequant_halves_kernel(kern_qw W, int N, int K, uint16_t *out) {
    __shared__ __align__(16) uint8_t stage[DQ_WARPS][DQ_STAGE];
    const int chunks = (K + DQ_CHUNK - 1) / DQ_CHUNK, lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
    const long long id = (long long)blockIdx.x * DQ_WARPS + wi;
    if (id >= (long long)N * chunks) return;
    const int n = (int)(id / chunks), c = (int)(id % chunks), k = c * DQ_CHUNK + 8 * lane;
    const int t = dq_stage(W, n, c, K, stage[wi], lane);
    __syncwarp();
    if (k >= K) return;
    float w[8];
    dq_run(t, stage[wi], lane, K, w);
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

/* A block a row, a warp a chunk at a time: x[r] = row tokens[r] of E times
 * scale, as kern_embed writes it from the dense copy. */
__global__ void __launch_bounds__(DQ_WARPS * 32)
embed_q_kernel(kern_qw E, int H, const kern_step *st, float scale, float *x) {
    __shared__ __align__(16) uint8_t stage[DQ_WARPS][DQ_STAGE];
    pdl_launch();
    pdl_wait();
    const int r = blockIdx.x, tok = st->tokens[r], lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
    for (int c = wi; c * DQ_CHUNK < H; c += DQ_WARPS) {
        const int t = dq_stage(E, tok, c, H, stage[wi], lane), k = c * DQ_CHUNK + 8 * lane;
        __syncwarp();
        if (k < H) {
            float w[8];
            dq_run(t, stage[wi], lane, H, w);
#pragma unroll
            for (int j = 0; j < 8; j++) w[j] = scale == 1.0f ? w[j] : w[j] * scale;
            float4 *xr = (float4 *)(x + (size_t)r * H + k);
            xr[0] = make_float4(w[0], w[1], w[2], w[3]);
            xr[1] = make_float4(w[4], w[5], w[6], w[7]);
        }
        __syncwarp();   /* the staging is read before the next chunk's copy */
    }
}

extern "C" int kern_embed_q(cudaStream_t s, const kern_qw *E, int V, int H, const kern_step *st,
                            int R, float scale, float *x, int pdl) {
    if (R < 1 || !qw_segments_ok(E, V, H)) return (int)cudaErrorInvalidValue;
    return (int)klaunch(embed_q_kernel, dim3(R), dim3(DQ_WARPS * 32), 0, s, pdl, *E, H, st, scale, x);
}
