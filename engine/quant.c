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
 * fuse them into an FMA (x86-64 without -mfma does not).  The per-block
 * functions are quant_block.h's, which the CUDA backend shares. */
#include <string.h>
#include "internal.h"
#include "quant_block.h"

#define QK ENG_QB_QK       /* elements per block, 32-element formats */
#define QK_K ENG_QB_QK_K  /* elements per super-block, K formats */

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

float eng_f16_to_f32(uint16_t v) { return eng_qb_f16(v); }

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
    for (size_t i = 0; i < nb; i++) eng_qb_block(dt, s + i * bb, dst + i * be);
}
