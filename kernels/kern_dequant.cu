/* kern_dequant.cu — a quantized weight (kern_qw, the device layout of
 * kern_qpack_row) back to the values the CPU reference computes, as the
 * bf16 halves the wide path reads (cuda_backend.cu, quant_wide): hi =
 * bf16(w), lo = bf16(w - hi).
 *
 * A thread takes 256 elements of a row (one K-format block, or eight
 * 32-element blocks rebuilt from their planes into GGUF's byte order) and
 * runs quant_block.h's function on them, the CPU's own code: this file is
 * compiled with -fmad=false (Makefile) so that no product and sum fuse into
 * an FMA the CPU does not do, and the values are bit-identical. */
#include "kern_quant.cuh"
#include "quant_block.h"

#define DQ_CHUNK 256

/* Block b of a row of type t in the device layout, as GGUF stores it, in
 * buf (32-element formats; K formats are read where they lie). */
__device__ __forceinline__ const uint8_t *dq_block(int t, const uint8_t *row, int b, int nb,
                                                   uint8_t *buf) {
    /* qstep_bytes: a K-format block's stride, or eight GGUF 32-element blocks */
    if (t == ENG_DT_Q4_K || t == ENG_DT_Q5_K || t == ENG_DT_Q6_K) return row + (size_t)b * qstep_bytes(t);
    const q32_planes l = q32_layout(t, nb);
    const int bb = qstep_bytes(t) / 8, five = t == ENG_DT_Q5_0 || t == ENG_DT_Q5_1;
    for (int i = 0; i < l.db; i++) buf[i] = row[l.doff + (size_t)b * l.db + i];
    if (five)
        for (int i = 0; i < 4; i++) buf[l.db + i] = row[l.hoff + (size_t)b * 4 + i];
    for (int i = 0; i < l.qb; i++) buf[bb - l.qb + i] = row[(size_t)b * l.qb + i];
    return buf;
}

/* Elements [c DQ_CHUNK, ...) of row n of W (K elements), as the CPU
 * dequantizes them, into y; returns their count. */
__device__ __forceinline__ int dq_chunk(const kern_qw &W, int n, int c, int K, float *y) {
    int t;
    const uint8_t *row = qrow(W, n, &t);
    const int be = t == ENG_DT_Q4_K || t == ENG_DT_Q5_K || t == ENG_DT_Q6_K ? 256 : 32;
    const int k0 = c * DQ_CHUNK, k1 = min(K, k0 + DQ_CHUNK);
    uint8_t buf[36];
    for (int k = k0; k < k1; k += be) eng_qb_block(t, dq_block(t, row, k / be, K / be, buf), y + (k - k0));
    return k1 - k0;
}

__global__ void dequant_halves_kernel(kern_qw W, int N, int K, uint16_t *out) {
    const int chunks = (K + DQ_CHUNK - 1) / DQ_CHUNK;
    const long long id = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= (long long)N * chunks) return;
    const int n = (int)(id / chunks), c = (int)(id % chunks);
    float y[DQ_CHUNK];
    const int k0 = c * DQ_CHUNK, k1 = k0 + dq_chunk(W, n, c, K, y);
    /* 8 elements a 16-byte store: n K + k is a multiple of 8 (K of 32) */
    uint16_t *hi = out + (size_t)n * K, *lo = out + (size_t)N * K + (size_t)n * K;
    for (int k = k0; k < k1; k += 8) {
        uint16_t h8[8], l8[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float w = y[k - k0 + j];
            const __nv_bfloat16 h = __float2bfloat16_rn(w);
            h8[j] = __bfloat16_as_ushort(h);
            l8[j] = __bfloat16_as_ushort(__float2bfloat16_rn(__fsub_rn(w, __bfloat162float(h))));
        }
        uint4 hv, lv;
        memcpy(&hv, h8, 16);
        memcpy(&lv, l8, 16);
        *(uint4 *)(hi + k) = hv;
        *(uint4 *)(lo + k) = lv;
    }
}

extern "C" int kern_dequant_halves(cudaStream_t s, const kern_qw *W, int N, int K, uint16_t *out) {
    if (!qw_segments_ok(W, N, K)) return (int)cudaErrorInvalidValue;
    const long long threads = (long long)N * ((K + DQ_CHUNK - 1) / DQ_CHUNK);
    const int bs = 128;
    dequant_halves_kernel<<<(unsigned)((threads + bs - 1) / bs), bs, 0, s>>>(*W, N, K, out);
    return (int)cudaGetLastError();
}

/* One block a row, a thread a chunk: x[r] = row tokens[r] of E times scale,
 * as kern_embed writes it from the dense copy. */
__global__ void embed_q_kernel(kern_qw E, int H, const kern_step *st, float scale, float *x) {
    pdl_launch();
    pdl_wait();
    const int r = blockIdx.x, tok = st->tokens[r];
    float y[DQ_CHUNK];
    for (int c = threadIdx.x; c * DQ_CHUNK < H; c += blockDim.x) {
        const int n = dq_chunk(E, tok, c, H, y);
        float *xr = x + (size_t)r * H + (size_t)c * DQ_CHUNK;
        for (int k = 0; k < n; k++) xr[k] = scale == 1.0f ? y[k] : y[k] * scale;
    }
}

extern "C" int kern_embed_q(cudaStream_t s, const kern_qw *E, int V, int H, const kern_step *st,
                            int R, float scale, float *x, int pdl) {
    if (R < 1 || !qw_segments_ok(E, V, H)) return (int)cudaErrorInvalidValue;
    return (int)klaunch(embed_q_kernel, dim3(R), dim3(32), 0, s, pdl, *E, H, st, scale, x);
}
