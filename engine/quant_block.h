/* quant_block.h — one quantized block to f32: ggml's block formats (see
 * quant.c for their layouts), shared by the CPU reference (quant.c) and the
 * CUDA backend (kernels/kern_dequant.cu), so that a dequantized copy made on
 * the GPU is bit-identical to the CPU's.
 *
 * Each element is one product, then one sum or difference, each rounded to
 * float, in ggml's order.  Neither compiler may fuse them into an FMA: x86-64
 * without -mfma does not, and the CUDA file that includes this is compiled
 * with -fmad=false (Makefile).  Blocks are read byte by byte (they sit at
 * any offset).  ENG_QB_FN marks the functions host and device code. */
#ifndef BRISK_QUANT_BLOCK_H
#define BRISK_QUANT_BLOCK_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define ENG_QB_FN static __host__ __device__ __forceinline__
#else
#define ENG_QB_FN static inline
#endif

#define ENG_QB_QK 32     /* elements per block, 32-element formats */
#define ENG_QB_QK_K 256  /* elements per super-block, K formats */

ENG_QB_FN float eng_qb_f16(uint16_t v) {
    uint32_t sign = (uint32_t)(v & 0x8000) << 16, exp = (v >> 10) & 0x1f, man = v & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | man << 13;           /* inf, nan */
    else if (exp) bits = sign | (exp + 112) << 23 | man << 13;        /* normal: rebias 15 -> 127 */
    else if (!man) bits = sign;                                       /* +-0 */
    else {                                                            /* subnormal: normalise */
        int e = 113;
        while (!(man & 0x400)) { man <<= 1; e--; }
        bits = sign | (uint32_t)e << 23 | (man & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Little-endian f16 / u32 at p. */
ENG_QB_FN float eng_qb_half(const uint8_t *p) { return eng_qb_f16((uint16_t)(p[0] | p[1] << 8)); }
ENG_QB_FN uint32_t eng_qb_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------ 32-element blocks */

ENG_QB_FN void eng_qb_q8_0(const uint8_t *b, float *y) {
    float d = eng_qb_half(b);
    for (int j = 0; j < ENG_QB_QK; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

ENG_QB_FN void eng_qb_q4_0(const uint8_t *b, float *y) {
    float d = eng_qb_half(b);
    const uint8_t *q = b + 2;
    for (int j = 0; j < ENG_QB_QK / 2; j++) {
        y[j] = (float)((q[j] & 0xf) - 8) * d;
        y[j + ENG_QB_QK / 2] = (float)((q[j] >> 4) - 8) * d;
    }
}

ENG_QB_FN void eng_qb_q4_1(const uint8_t *b, float *y) {
    float d = eng_qb_half(b), m = eng_qb_half(b + 2);
    const uint8_t *q = b + 4;
    for (int j = 0; j < ENG_QB_QK / 2; j++) {
        y[j] = (float)(q[j] & 0xf) * d + m;
        y[j + ENG_QB_QK / 2] = (float)(q[j] >> 4) * d + m;
    }
}

/* Five-bit value j of a Q5_0 / Q5_1 block: its nibble from q, fifth bit from qh. */
ENG_QB_FN int eng_qb_q5(uint32_t qh, const uint8_t *q, int j) {
    return j < ENG_QB_QK / 2 ? (q[j] & 0xf) | (int)((qh >> j) & 1) << 4
                             : (q[j - ENG_QB_QK / 2] >> 4) | (int)((qh >> j) & 1) << 4;
}

ENG_QB_FN void eng_qb_q5_0(const uint8_t *b, float *y) {
    float d = eng_qb_half(b);
    uint32_t qh = eng_qb_u32(b + 2);
    for (int j = 0; j < ENG_QB_QK; j++) y[j] = (float)(eng_qb_q5(qh, b + 6, j) - 16) * d;
}

ENG_QB_FN void eng_qb_q5_1(const uint8_t *b, float *y) {
    float d = eng_qb_half(b), m = eng_qb_half(b + 2);
    uint32_t qh = eng_qb_u32(b + 4);
    for (int j = 0; j < ENG_QB_QK; j++) y[j] = (float)eng_qb_q5(qh, b + 8, j) * d + m;
}

/* ---------------------------------------------------------- K-quants */

/* Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K /
 * Q5_K: sub-blocks 0-3 keep 6 bits in bytes j and j+4; 4-7 take their low
 * 4 bits from byte j+4 and their top 2 from the spare bits of bytes j-4, j. */
ENG_QB_FN void eng_qb_scale_min_k4(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q4_K and Q5_K: element = d*scale * q - dmin*min per sub-block of 32;
 * qh (NULL for Q4_K) adds a fifth bit: bit 2k / 2k+1 of qh[l] belongs to
 * element l of sub-block 2k / 2k+1. */
ENG_QB_FN void eng_qb_k45(const uint8_t *b, const uint8_t *qh, const uint8_t *q, float *y) {
    float d = eng_qb_half(b), dmin = eng_qb_half(b + 2);
    const uint8_t *scales = b + 4;
    for (int s = 0; s < 8; s += 2, q += 32) {
        int sc, mn;
        eng_qb_scale_min_k4(s, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        eng_qb_scale_min_k4(s + 1, scales, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) {
            int hi = qh ? (qh[l] >> s & 1) << 4 : 0;
            *y++ = d1 * (float)((q[l] & 0xf) | hi) - m1;
        }
        for (int l = 0; l < 32; l++) {
            int hi = qh ? (qh[l] >> (s + 1) & 1) << 4 : 0;
            *y++ = d2 * (float)((q[l] >> 4) | hi) - m2;
        }
    }
}

/* Q6_K: two halves of 128; in each, ql[l] / ql[l+32] hold the low 4 bits of
 * elements l, l+32 (low nibble) and l+64, l+96 (high nibble), qh[l] their
 * top 2 bits (bits 0-1, 2-3, 4-5, 6-7); 16 int8 scales, one per 16. */
ENG_QB_FN void eng_qb_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = eng_qb_half(b + 208);
    for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8)
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xf) | (qh[l] & 3) << 4) - 32;
            int q2 = ((ql[l + 32] & 0xf) | (qh[l] >> 2 & 3) << 4) - 32;
            int q3 = ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32;
            int q4 = ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
}

/* ------------------------------------------------------- runs of eight
 *
 * Elements j0 .. j0 + 7 (j0 a multiple of 8) of a block, by the same
 * operations as the block functions above, so the same floats bit for bit
 * (tests/test_gguf.c compares every element of every type): eight
 * consecutive elements share their scales, which are worked out once.  The
 * GPU's dequantization (kern_dequant.cu) runs these, a lane a run. */

/* 32-element formats, given the block's fields apart: dm its d (and m:
 * Q4_1, Q5_1), qh its 4 bytes of fifth bits (Q5_0, Q5_1; else unused), qs
 * its quants (GGUF's block is dm, qh, qs in that order). */
ENG_QB_FN void eng_qb_run8_32(int dt, const uint8_t *dm, const uint8_t *qh, const uint8_t *qs, int j0,
                              float *y) {
    const float d = eng_qb_half(dm);
    const float m = dt == ENG_DT_Q4_1 || dt == ENG_DT_Q5_1 ? eng_qb_half(dm + 2) : 0.0f;
    const uint32_t h = dt == ENG_DT_Q5_0 || dt == ENG_DT_Q5_1 ? eng_qb_u32(qh) : 0;
    for (int i = 0; i < 8; i++) {
        const int j = j0 + i, nib = j < 16 ? qs[j] & 0xf : qs[j - 16] >> 4;
        switch (dt) {
        case ENG_DT_Q8_0: y[i] = (float)(int8_t)qs[j] * d; break;
        case ENG_DT_Q4_0: y[i] = (float)(nib - 8) * d; break;
        case ENG_DT_Q4_1: y[i] = (float)nib * d + m; break;
        case ENG_DT_Q5_0: y[i] = (float)(eng_qb_q5(h, qs, j) - 16) * d; break;
        case ENG_DT_Q5_1: y[i] = (float)eng_qb_q5(h, qs, j) * d + m; break;
        default: y[i] = 0.0f;
        }
    }
}

/* K formats: block b as GGUF stores it. */
ENG_QB_FN void eng_qb_run8_k(int dt, const uint8_t *b, int j0, float *y) {
    const int l0 = j0 % 32;
    if (dt == ENG_DT_Q6_K) {   /* half, quarter Q: eng_qb_q6_k's y[l + 32 Q] */
        const int half = j0 / 128, Q = j0 % 128 / 32;
        const uint8_t *ql = b + 64 * half + (Q & 1) * 32, *qh = b + 128 + 32 * half;
        const float ds = eng_qb_half(b + 208) * (float)(int8_t)b[192 + 8 * half + l0 / 16 + 2 * Q];
        for (int i = 0; i < 8; i++) {
            const int l = l0 + i;
            const int q = ((Q & 2 ? ql[l] >> 4 : ql[l] & 0xf) | (qh[l] >> (2 * Q) & 3) << 4) - 32;
            y[i] = ds * (float)q;
        }
        return;
    }
    /* Q4_K, Q5_K: sub-block s, its quants the low (s even) or high nibbles
     * of the pair's 32 bytes */
    const int s = j0 / 32;
    const uint8_t *q = b + (dt == ENG_DT_Q5_K ? 48 : 16) + 32 * (s / 2);
    int sc, mn;
    eng_qb_scale_min_k4(s, b + 4, &sc, &mn);
    const float d1 = eng_qb_half(b) * (float)sc, m1 = eng_qb_half(b + 2) * (float)mn;
    for (int i = 0; i < 8; i++) {
        const int l = l0 + i, hi = dt == ENG_DT_Q5_K ? (b[16 + l] >> s & 1) << 4 : 0;
        y[i] = d1 * (float)((s & 1 ? q[l] >> 4 : q[l] & 0xf) | hi) - m1;
    }
}

/* One block of quantized type dt (ENG_DT_*, internal.h) into y (its
 * eng_dt_block elements); 0 for a type that is not a block format here. */
ENG_QB_FN int eng_qb_block(int dt, const uint8_t *b, float *y) {
    switch (dt) {
    case ENG_DT_Q8_0: eng_qb_q8_0(b, y); return 1;
    case ENG_DT_Q4_0: eng_qb_q4_0(b, y); return 1;
    case ENG_DT_Q4_1: eng_qb_q4_1(b, y); return 1;
    case ENG_DT_Q5_0: eng_qb_q5_0(b, y); return 1;
    case ENG_DT_Q5_1: eng_qb_q5_1(b, y); return 1;
    case ENG_DT_Q4_K: eng_qb_k45(b, NULL, b + 16, y); return 1;
    case ENG_DT_Q5_K: eng_qb_k45(b, b + 16, b + 48, y); return 1;
    case ENG_DT_Q6_K: eng_qb_q6_k(b, y); return 1;
    default: return 0;
    }
}

/* ENG_ACT_Q16 (eng.h), the rounding of a product's input: element v of a
 * 16-element group of largest |x| amax, id = 127 / amax (0 for a group of
 * zeros), goes to planes q1 = rint(t), q2 = rint(254 (t - q1)), t = v id
 * (rint: to nearest even, as CUDA's), and stands for amax / 127 (q1 + q2 /
 * 254), computed as amax ((254 q1 + q2) / 32258): the integer is exact, so
 * both sides of a q1 edge (q2 = +-127) give the same float, and the one
 * division an element costs is id's (the kernels that write wide passes'
 * inputs round every element).  The CPU reference, those kernels and the
 * one-row GEMV's staging (which keeps the planes) all round here. */
ENG_QB_FN void eng_qb_act_q16(float v, float id, float *q1, float *q2) {
    const float t = v * id;
    *q1 = rintf(t);
    *q2 = rintf((t - *q1) * 254.f);
}
/* A product neither compiler may fuse with the addition after it: CUDA files
 * other than kern_dequant.cu are built with FMA contraction on. */
#ifdef __CUDA_ARCH__
#define ENG_QB_MUL(a, b) __fmul_rn((a), (b))
#else
#define ENG_QB_MUL(a, b) ((a) * (b))
#endif
/* eng_qb_act_q16's q1, q2 as the low bytes of *b1, *b2 (two's complement),
 * with no float-to-integer conversion: adding 1.5 2^23 rounds t to an
 * integer, to nearest even as rint does, and leaves it in the low mantissa
 * bits (|q| <= 127); subtracting it back is exact.  The one-row GEMV's
 * staging packs these bytes: float-to-integer conversions run at a quarter
 * of the FP32 rate on sm_90, and rounding through eng_qb_act_q16 takes
 * three an element. */
ENG_QB_FN void eng_qb_act_q16_bytes(float v, float id, uint32_t *b1, uint32_t *b2) {
    const float M = 12582912.f;
    const float t = ENG_QB_MUL(v, id), m1 = t + M, q1 = m1 - M;
    const float m2 = ENG_QB_MUL(t - q1, 254.f) + M;
    memcpy(b1, &m1, 4);
    memcpy(b2, &m2, 4);
}
ENG_QB_FN float eng_qb_act_q16_value(float v, float amax) {
    float q1, q2;
    eng_qb_act_q16(v, amax > 0.f ? 127.f / amax : 0.f, &q1, &q2);
    return amax * ((254.f * q1 + q2) * (1.f / 32258.f));
}
#endif
