/* quant.c — stored element types and their conversion to f32: the plain
 * floats (F32, F16, BF16) and ggml's quantized block formats.
 *
 * Block layouts (little-endian; d, m, dmin are f16):
 *   Q8_0  32 elems, 34 B: d, int8 q[32]                      x = q*d
 *   Q4_0  32 elems, 18 B: d, q[16] nibbles                   x = (q-8)*d
 *   Q4_1  32 elems, 20 B: d, m, q[16]                        x = q*d + m
 *   Q5_0  32 elems, 22 B: d, qh (u32), q[16]                 x = (q|h<<4 - 16)*d
 *   Q5_1  32 elems, 24 B: d, m, qh (u32), q[16]              x = (q|h<<4)*d + m
 *   In the 32-element formats byte j holds element j in its low nibble and
 *   element j+16 in its high one; bit k of qh is the fifth bit of element k.
 *   Q4_K 256 elems, 144 B: d, dmin, scales[12], q[128]
 *   Q5_K 256 elems, 176 B: d, dmin, scales[12], qh[32], q[128]
 *   Q6_K 256 elems, 210 B: ql[128], qh[64], int8 scales[16], d
 *   The K formats split a block into sub-blocks (8 of 32 for Q4_K/Q5_K with a
 *   6-bit scale and min each, 16 of 16 for Q6_K with an 8-bit scale).
 *
 * Bit-exactness with ggml: each element is computed with the same float
 * operations in the same order as ggml's dequantize_row_* (one product,
 * then one sum or difference, each rounded to float).  The build must not
 * fuse them into an FMA (x86-64 without -mfma does not). */
#include <string.h>
#include "internal.h"

#define QK 32     /* elements per block, 32-element formats */
#define QK_K 256  /* elements per super-block, K formats */

static const struct { int block, bytes; const char *name; } dt_info[ENG_DT_COUNT] = {
    [ENG_DT_F32] = {1, 4, "F32"},      [ENG_DT_F16] = {1, 2, "F16"},
    [ENG_DT_BF16] = {1, 2, "BF16"},    [ENG_DT_Q8_0] = {QK, 34, "Q8_0"},
    [ENG_DT_Q4_0] = {QK, 18, "Q4_0"},  [ENG_DT_Q4_1] = {QK, 20, "Q4_1"},
    [ENG_DT_Q5_0] = {QK, 22, "Q5_0"},  [ENG_DT_Q5_1] = {QK, 24, "Q5_1"},
    [ENG_DT_Q4_K] = {QK_K, 144, "Q4_K"}, [ENG_DT_Q5_K] = {QK_K, 176, "Q5_K"},
    [ENG_DT_Q6_K] = {QK_K, 210, "Q6_K"},
};

int eng_dt_block(int dt) { return dt >= 0 && dt < ENG_DT_COUNT ? dt_info[dt].block : 0; }
int eng_dt_block_bytes(int dt) { return dt >= 0 && dt < ENG_DT_COUNT ? dt_info[dt].bytes : 0; }
const char *eng_dt_name(int dt) { return dt >= 0 && dt < ENG_DT_COUNT ? dt_info[dt].name : "?"; }

int64_t eng_tensor_elems(const eng_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

float eng_bf16_to_f32(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t eng_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);   /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

float eng_f16_to_f32(uint16_t v) {
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

/* Little-endian f16 at p (blocks sit at any byte offset). */
static float half_at(const uint8_t *p) { return eng_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------ 32-element blocks */

static void deq_q8_0(const uint8_t *b, float *y) {
    float d = half_at(b);
    for (int j = 0; j < QK; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void deq_q4_0(const uint8_t *b, float *y) {
    float d = half_at(b);
    const uint8_t *q = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)((q[j] & 0xf) - 8) * d;
        y[j + QK / 2] = (float)((q[j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    float d = half_at(b), m = half_at(b + 2);
    const uint8_t *q = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)(q[j] & 0xf) * d + m;
        y[j + QK / 2] = (float)(q[j] >> 4) * d + m;
    }
}

/* Five-bit values of a Q5_0 / Q5_1 block: low nibbles from q, fifth bits from qh. */
static void q5_values(uint32_t qh, const uint8_t *q, int *v) {
    for (int j = 0; j < QK / 2; j++) {
        v[j] = (q[j] & 0xf) | (int)((qh >> j) & 1) << 4;
        v[j + QK / 2] = (q[j] >> 4) | (int)((qh >> (j + QK / 2)) & 1) << 4;
    }
}

static void deq_q5_0(const uint8_t *b, float *y) {
    float d = half_at(b);
    int v[QK];
    q5_values(u32_at(b + 2), b + 6, v);
    for (int j = 0; j < QK; j++) y[j] = (float)(v[j] - 16) * d;
}

static void deq_q5_1(const uint8_t *b, float *y) {
    float d = half_at(b), m = half_at(b + 2);
    int v[QK];
    q5_values(u32_at(b + 4), b + 8, v);
    for (int j = 0; j < QK; j++) y[j] = (float)v[j] * d + m;
}

/* ---------------------------------------------------------- K-quants */

/* Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K /
 * Q5_K: sub-blocks 0-3 keep 6 bits in bytes j and j+4; 4-7 take their low
 * 4 bits from byte j+4 and their top 2 from the spare bits of bytes j-4, j. */
static void scale_min_k4(int j, const uint8_t *s, int *sc, int *mn) {
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
static void deq_k45(const uint8_t *b, const uint8_t *qh, const uint8_t *q, float *y) {
    float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t *scales = b + 4;
    for (int s = 0; s < 8; s += 2, q += 32) {
        int sc, mn;
        scale_min_k4(s, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(s + 1, scales, &sc, &mn);
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

static void deq_q4_k(const uint8_t *b, float *y) { deq_k45(b, NULL, b + 16, y); }
static void deq_q5_k(const uint8_t *b, float *y) { deq_k45(b, b + 16, b + 48, y); }

/* Q6_K: two halves of 128; in each, ql[l] / ql[l+32] hold the low 4 bits of
 * elements l, l+32 (low nibble) and l+64, l+96 (high nibble), qh[l] their
 * top 2 bits (bits 0-1, 2-3, 4-5, 6-7); 16 int8 scales, one per 16. */
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = half_at(b + 208);
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

typedef void (*deq_fn)(const uint8_t *block, float *out);
static const deq_fn deq[ENG_DT_COUNT] = {
    [ENG_DT_Q8_0] = deq_q8_0, [ENG_DT_Q4_0] = deq_q4_0, [ENG_DT_Q4_1] = deq_q4_1,
    [ENG_DT_Q5_0] = deq_q5_0, [ENG_DT_Q5_1] = deq_q5_1, [ENG_DT_Q4_K] = deq_q4_k,
    [ENG_DT_Q5_K] = deq_q5_k, [ENG_DT_Q6_K] = deq_q6_k,
};

/* Data may sit at any byte offset in the mapping, so elements are read with
 * memcpy or byte by byte rather than through a cast pointer. */
void eng_to_f32(const eng_tensor *t, float *dst) {
    int dt = t->dtype;
    const uint8_t *s = t->data;
    size_t nb = t->nbytes / (size_t)eng_dt_block_bytes(dt);
    if (dt == ENG_DT_F32) {
        memcpy(dst, s, nb * 4);
        return;
    }
    if (dt == ENG_DT_F16 || dt == ENG_DT_BF16) {
        uint16_t v;
        for (size_t i = 0; i < nb; i++) {
            memcpy(&v, s + 2 * i, 2);
            dst[i] = dt == ENG_DT_F16 ? eng_f16_to_f32(v) : eng_bf16_to_f32(v);
        }
        return;
    }
    size_t bb = (size_t)dt_info[dt].bytes, be = (size_t)dt_info[dt].block;
    for (size_t i = 0; i < nb; i++) deq[dt](s + i * bb, dst + i * be);
}
