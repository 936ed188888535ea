/* kern_quant.cuh — the quantized weights' device layout and the helpers
 * that read it, shared by the GEMV kernels (kern_gemv.cu) and the tensor-core
 * product (kern_qskinny.cu). */
#ifndef KERN_QUANT_CUH
#define KERN_QUANT_CUH
#include <cuda_fp16.h>
#include "kern_common.cuh"

/* The device layout (kern_qpack_row): the K formats' blocks as stored,
 * Q6_K's (210 bytes) padded to QK6_STRIDE so that ql, qh and the scales
 * sit at 16-byte boundaries; a row of a 32-element format (blocks of 18
 * to 34 bytes) split into planes: its blocks' quant runs (16 bytes, Q8_0
 * 32), then (Q5_0, Q5_1) their qh words, then their d (Q4_1, Q5_1: d and
 * m), then zeros up to a multiple of 16 bytes.  Every row then starts
 * 16-byte aligned and a lane loads a block's quants in 16-byte pieces.
 * The padding costs Q6_K 6.7% more bytes read (the sector holding d holds
 * the pad); the planes cost nothing. */
#define QK6_STRIDE 224

/* A 32-element format's planes in a row of nb blocks: quant run bytes qb,
 * qh plane at hoff (Q5_0, Q5_1), d (| m) plane at doff, db bytes each. */
struct q32_planes {
    int qb, db;
    size_t hoff, doff;
};
static __host__ __device__ inline q32_planes q32_layout(int t, int nb) {
    const bool one = t == ENG_DT_Q4_1 || t == ENG_DT_Q5_1, five = t == ENG_DT_Q5_0 || t == ENG_DT_Q5_1;
    q32_planes l;
    l.qb = t == ENG_DT_Q8_0 ? 32 : 16;
    l.db = one ? 4 : 2;
    l.hoff = (size_t)nb * l.qb;
    l.doff = l.hoff + (five ? (size_t)nb * 4 : 0);
    return l;
}

/* 16-bit loads: the 2-byte d fields; qgemv_kernel's Q6_K quant reads also
 * go through them (written for 210-byte blocks; at QK6_STRIDE they are
 * 8-byte aligned, so uint2 loads would do: not yet measured). */
__device__ __forceinline__ uint32_t ld_u16(const uint8_t *p) {
    return __ldg((const unsigned short *)p);
}
__device__ __forceinline__ uint32_t ld_u32_a2(const uint8_t *p) {
    return ld_u16(p) | ld_u16(p + 2) << 16;
}
/* bit i of b4 (i < 4) -> bit 4 of byte i */
__device__ __forceinline__ uint32_t spread4(uint32_t b4) {
    return (b4 & 1) << 4 | (b4 & 2) << 11 | (b4 & 4) << 18 | (b4 & 8) << 25;
}

/* Scale and min of K-format sub-block j (engine/quant.c: scale_min_k4);
 * s: the 12 scale bytes as three words. */
__device__ __forceinline__ void qk_scale_min(int j, uint32_t s0, uint32_t s1, uint32_t s2, int *sc,
                                             int *mn) {
    auto byte = [&](int i) {
        const uint32_t w = i < 4 ? s0 : i < 8 ? s1 : s2;
        return (int)(w >> (8 * (i & 3)) & 0xff);
    };
    if (j < 4) {
        *sc = byte(j) & 63;
        *mn = byte(j + 4) & 63;
    } else {
        *sc = (byte(j + 4) & 0xf) | (byte(j - 4) >> 6) << 4;
        *mn = (byte(j + 4) >> 4) | (byte(j) >> 6) << 4;
    }
}

__device__ __forceinline__ float f16_lo(uint32_t h) {
    return __half2float(__ushort_as_half((unsigned short)(h & 0xffff)));
}

/* Int8 byte i of w as a float, exactly, without an int-to-float
 * conversion (a slow pipe): the byte biased to unsigned (+128) becomes
 * the low mantissa bits of 2^23, and the float subtraction of 2^23 + 128
 * leaves the value. */
__device__ __forceinline__ float qfloat(uint32_t w, int i) {
    const uint32_t bits = __byte_perm(w ^ 0x80808080u, 0x4B000000u, 0x7440u | (uint32_t)i);
    return __uint_as_float(bits) - 8388736.0f;
}

/* Row n's start, type and bytes per row in W (segments chosen with
 * constant indices: no copy of W to local memory). */
__device__ __forceinline__ const uint8_t *qrow(const kern_qw &W, int n, int *type) {
    const void *w = W.w[0];
    int t = W.type[0], start = 0, rb = W.row_bytes[0];
#pragma unroll
    for (int s = 1; s < KERN_QSEGS; s++)
        if (s < W.n_seg && n >= W.end[s - 1]) {
            w = W.w[s]; t = W.type[s]; start = W.end[s - 1]; rb = W.row_bytes[s];
        }
    *type = t;
    return (const uint8_t *)w + (size_t)(n - start) * rb;
}

/* Bytes of a step (8 chunks) of a row of type t: 8 blocks of the
 * 32-element formats, one block of the K formats. */
__device__ __forceinline__ int qstep_bytes(int t) {
    switch (t) {
    case ENG_DT_Q8_0: return 8 * 34;
    case ENG_DT_Q4_0: return 8 * 18;
    case ENG_DT_Q4_1: return 8 * 20;
    case ENG_DT_Q5_0: return 8 * 22;
    case ENG_DT_Q5_1: return 8 * 24;
    case ENG_DT_Q4_K: return 144;
    case ENG_DT_Q5_K: return 176;
    default: return QK6_STRIDE;   /* ENG_DT_Q6_K */
    }
}

/* Whether W is N rows of K elements in segments the kernels read: K a
 * multiple of 32 (whole blocks of each segment's type, kern_qrow_bytes),
 * segment ends increasing to N, rows in the device layout (row_bytes) and
 * 16-byte aligned. */
static inline bool qw_segments_ok(const kern_qw *W, int N, int K) {
    if (!W || N < 1 || K < 32 || K % 32 || W->n_seg < 1 || W->n_seg > KERN_QSEGS ||
        W->end[W->n_seg - 1] != N)
        return false;
    for (int i = 0, start = 0; i < W->n_seg; start = W->end[i++]) {
        const size_t rb = kern_qrow_bytes(W->type[i], K);
        if (!rb || W->end[i] <= start || !W->w[i] || (size_t)W->row_bytes[i] != rb ||
            ((uintptr_t)W->w[i] & 15))
            return false;
    }
    return true;
}

#endif
