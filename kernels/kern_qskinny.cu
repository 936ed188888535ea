/* kern_qskinny.cu — products of quantized weights (kern_qw: GGUF blocks in
 * the device layout of kern_quant.cuh) with up to 32 activation rows a block
 * (256 a launch, in groups of 32) on tensor cores: the decode passes of several sequences (reasoning branches,
 * batched users) read the 4-8 bit blocks instead of a dense copy.
 *
 * Work: a block of QS_WARPS warps owns 16 * QS_WARPS weight rows (a warp 16
 * rows, one mma tile, for the whole kernel) over one slice of K.  Each
 * slice writes its own part of the output ([parts][R][N]) and the consumer
 * adds the parts in order, as after kern_skinny, so results do not depend
 * on timing.  The activations come as kern_skinny takes them (act: [2R][K]
 * bf16, high rows then low rows); the block streams them through shared
 * memory QS_CK elements at a time, double-buffered (cp.async), with each
 * 32-element group's sum of high + low per row.  A warp loads its rows'
 * blocks for the chunk into registers (from L2: the chunk QS_AHEAD ahead is
 * prefetched there), decodes them into A fragments and multiplies.
 *
 * Exactness: a weight is a q + b within a group (a, b f32 from the block's
 * scales, q a small integer).  A byte permute writes 2^7 + q as bf16 bits
 * (q < 2^7 fills the 7-bit mantissa) and one bf16x2 FMA takes the bias off
 * (2^7, plus Q6_K's 32, Q4_0's 8, Q5_0's 16), so the A fragments hold q
 * exactly.  The tensor cores add q x_hi + q x_lo over the group into a
 * zeroed f32 accumulator C, which joins the total as a C + b S (S: the
 * group's sum of x).  So the roundings are those of x's high/low split
 * (2^-16 relative, as kern_skinny's and the cuBLASLt bf16 path's) and f32
 * sums; the dequantized weights themselves are exact.
 *
 * Fragment order (mma.m16n8k16: lane g = lane/4, t = lane%4 holds k 2t,
 * 2t+1, 2t+8, 2t+9 of rows g and g+8; a permutation of k shared by A and B
 * does not change the sum): in a group of one scale the first mma takes
 * elements 8t..8t+3 and the second 8t+4..8t+7, so a lane's weights are 8
 * consecutive elements of each row and its activations one 16-byte shared
 * load (kern_skinny's order).  Q6_K's scales cover 16 elements, so there the
 * first mma takes 4t..4t+3 (elements 0-15: one scale) and the second
 * 16+4t..16+4t+3, each with its own accumulator. */
#include "kern_quant.cuh"

#define QS_WARPS 8
#define QS_CK 256               /* elements of K staged per round: one K-format block */
#define QS_LD (QS_CK + 32)      /* a staged row: 576 bytes, 64 mod 128 (kern_skinny's sk_ld) */
#define QS_AHEAD 2              /* chunks of the warp's rows prefetched into L2 ahead */
#define QS_MAX_ROWS 32           /* rows of a block: more run in groups of 32 */
#define QS_MAX_ALL 256           /* rows of a launch */
#define QS_MAX_PARTS 64

static __host__ __device__ constexpr bool qs_kfmt(int t) {
    return t == ENG_DT_Q4_K || t == ENG_DT_Q5_K || t == ENG_DT_Q6_K;
}

/* Shared memory per stage buffer: x (2 x 8NT rows of QS_LD bf16) and the
 * group sums (QS_CK/32 groups x 8NT rows). */
__host__ __device__ constexpr int qs_xs_elems(int NT) { return 2 * 8 * NT * QS_LD; }
__host__ __device__ constexpr int qs_s_floats(int NT) { return QS_CK / 32 * 8 * NT; }
/* a buffer in bf16 elements (x, then the sums), two of them */
__host__ __device__ constexpr int qs_buf_elems(int NT) { return qs_xs_elems(NT) + 2 * qs_s_floats(NT); }
static size_t qs_smem(int NT) { return 2 * (size_t)qs_buf_elems(NT) * 2; }

/* A barrier that may sit in code of the warp's block type (warps of a
 * product of several types run different loops, each reaching the same
 * number of barriers): the unaligned form, which counts arrivals. */
__device__ __forceinline__ void qs_sync() { asm volatile("barrier.sync 0;" ::: "memory"); }

/* p + nb as bf16 pairs (p * 1 + nb, one FMA): exact for the small integers here. */
__device__ __forceinline__ uint32_t qs_add(uint32_t p, uint32_t nb) {
    uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(p), "r"(0x3F803F80u), "r"(nb));
    return d;
}
/* (2^7 + byte lo, 2^7 + byte lo+1 of v) as bf16 bits (bytes < 128), then
 * plus nb (bf16x2 bits of the negated bias): exact small integers. */
__device__ __forceinline__ uint32_t qs_pair(uint32_t v, int hi, uint32_t nb) {
    return qs_add(__byte_perm(v, 0x43u, hi ? 0x4342u : 0x4140u), nb);
}
/* Int8 bytes lo, lo+1 of v as a bf16 pair: 2^7 + (q & 127) minus 2^7
 * (q >= 0) or 2^8 (q < 0, its sign bit set), exactly. */
__device__ __forceinline__ uint32_t qs_pair8(uint32_t v, int hi) {
    const uint32_t sel = hi ? 0x4342u : 0x4140u;
    return qs_add(__byte_perm(v & 0x7F7F7F7Fu, 0x43u, sel),
                  __byte_perm(v & 0x80808080u, 0xC3u, sel));   /* -(2^7 | 2^8) */
}
/* The negated biases as bf16x2: -128, -136 (Q4_0: q - 8), -144 (Q5_0: q -
 * 16), -160 (Q6_K: q - 32). */
#define QS_NB128 0xC300C300u
#define QS_NB136 0xC308C308u
#define QS_NB144 0xC310C310u
#define QS_NB160 0xC320C320u

/* A lane's blocks of one chunk, rows g (index 0) and g + 8 (1); which
 * fields a type uses is in qs_load. */
struct qs_raw {
    uint4 h[2];
    uint2 q[2][8];
    uint32_t e[2][8];
    uint32_t d[2][8];
};

/* The lane's loads of its blocks: from global memory by the read-only
 * path, or (SM) from the warp's rows staged in shared memory. */
template <bool SM> __device__ __forceinline__ uint4 qs_ld16(const uint8_t *p) {
    return SM ? *(const uint4 *)p : __ldg((const uint4 *)p);
}
template <bool SM> __device__ __forceinline__ uint2 qs_ld8(const uint8_t *p) {
    return SM ? *(const uint2 *)p : __ldg((const uint2 *)p);
}
template <bool SM> __device__ __forceinline__ uint32_t qs_ld4(const uint8_t *p) {
    return SM ? *(const unsigned *)p : __ldg((const unsigned *)p);
}
template <bool SM> __device__ __forceinline__ uint32_t qs_ld2(const uint8_t *p) {
    return SM ? (uint32_t)*(const unsigned short *)p : ld_u16(p);
}

/* Loads the lane's part of chunk kc (ng groups of 32) of rows a, b of type T
 * (nb: blocks of 32 in a row).  A row staged in shared memory (SM) is one
 * chunk laid out as a row of 8 blocks: kc 0, nb 8. */
template <int T, bool SM>
__device__ __forceinline__ void qs_load(qs_raw &r, const uint8_t *a, const uint8_t *b, int kc, int ng,
                                        int nb, int t) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint8_t *row = i ? b : a;
        if (T == ENG_DT_Q4_K || T == ENG_DT_Q5_K) {   /* d, dmin, scales[12], (qh[32]), qs[128] */
            const uint8_t *blk = row + (size_t)(kc / 256) * qstep_bytes(T);
            const int qo = T == ENG_DT_Q4_K ? 16 : 48;
            r.h[i] = qs_ld16<SM>(blk);
#pragma unroll
            for (int p = 0; p < 4; p++) r.q[i][p] = qs_ld8<SM>(blk + qo + 32 * p + 8 * t);
            if (T == ENG_DT_Q5_K) {
                const uint2 h = qs_ld8<SM>(blk + 16 + 8 * t);
                r.e[i][0] = h.x; r.e[i][1] = h.y;
            }
        } else if (T == ENG_DT_Q6_K) {   /* ql[128], qh[64], scales[16], d (QK6_STRIDE) */
            const uint8_t *blk = row + (size_t)(kc / 256) * qstep_bytes(T);
#pragma unroll
            for (int k = 0; k < 4; k++) {   /* ql words 64h + 16k' + 4t as q[i][2h + k'/2] */
                r.q[i][k].x = qs_ld4<SM>(blk + 64 * (k >> 1) + 32 * (k & 1) + 4 * t);
                r.q[i][k].y = qs_ld4<SM>(blk + 64 * (k >> 1) + 32 * (k & 1) + 16 + 4 * t);
            }
#pragma unroll
            for (int k = 0; k < 4; k++) r.e[i][k] = qs_ld4<SM>(blk + 128 + 16 * k + 4 * t);
            r.h[i] = qs_ld16<SM>(blk + 192);
            r.d[i][0] = qs_ld2<SM>(blk + 208);
        } else {   /* 32-element formats: blocks kc/32 + j, planes (q32_layout) */
            const q32_planes l = q32_layout(T, nb);
            const bool one = T == ENG_DT_Q4_1 || T == ENG_DT_Q5_1;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (j >= ng) break;
                const int c = kc / 32 + j;
                r.q[i][j] = qs_ld8<SM>(row + (size_t)c * l.qb + (T == ENG_DT_Q8_0 ? 8 * t : 8 * (t & 1)));
                r.d[i][j] = one ? qs_ld4<SM>(row + l.doff + 4 * (size_t)c) : qs_ld2<SM>(row + l.doff + 2 * (size_t)c);
                if (T == ENG_DT_Q5_0 || T == ENG_DT_Q5_1)
                    r.e[i][j] = qs_ld4<SM>(row + l.hoff + 4 * (size_t)c);
            }
        }
    }
}

/* Staging (SW): a warp copies its 16 rows' chunk kc into its slots in
 * shared memory (sb bytes apart), each row as qs_load reads a staged row.
 * The four lanes of rows g and g + 8 (a, b) copy them, in 16-byte pieces,
 * which needs every plane's chunk 16-byte aligned: K a multiple of 256. */
template <int T>
__device__ __forceinline__ void qs_copy_w(uint8_t *sw, int sb, const uint8_t *a, const uint8_t *b, int kc,
                                          int nb, int g, int t) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint8_t *row = i ? b : a;
        uint8_t *dst = sw + (g + 8 * i) * sb;
        if (qs_kfmt(T)) {
            const uint8_t *src = row + (size_t)(kc / 256) * qstep_bytes(T);
            for (int j = t; j < qstep_bytes(T) / 16; j += 4) cp_async16(dst + 16 * j, src + 16 * j);
        } else {
            const q32_planes l = q32_layout(T, nb), s8 = q32_layout(T, 8);
            const int c = kc / 32;
            for (int j = t; j < l.qb / 2; j += 4)   /* 8 blocks' quants */
                cp_async16(dst + 16 * j, row + (size_t)c * l.qb + 16 * j);
            if ((T == ENG_DT_Q5_0 || T == ENG_DT_Q5_1) && t < 2)   /* 8 x 4 bytes of qh */
                cp_async16(dst + s8.hoff + 16 * t, row + l.hoff + 4 * (size_t)c + 16 * t);
            if (t < l.db / 2)   /* 8 d (| m) */
                cp_async16(dst + s8.doff + 16 * t, row + l.doff + (size_t)c * l.db + 16 * t);
        }
    }
}

/* L2 prefetch of chunk kc of the lane's rows: a K-format block spans up to
 * three 128-byte lines (lanes t = 0..2 one each); a 32-element format's
 * chunk is up to two lines of quant runs (t = 0, 1), a line of d (t = 2)
 * and of qh (t = 3). */
template <int T>
__device__ __forceinline__ void qs_prefetch(const uint8_t *a, const uint8_t *b, int kc, int nb, int t) {
    const uint8_t *p = NULL;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint8_t *row = i ? b : a;
        if (qs_kfmt(T)) {
            const int st = qstep_bytes(T);
            p = t < 3 ? row + (size_t)(kc / 256) * st + min(128 * t, st - 1) : NULL;
        } else {
            const q32_planes l = q32_layout(T, nb);
            const int c = kc / 32;
            p = t < 2 ? (l.qb * 8 > 128 * t ? row + (size_t)c * l.qb + 128 * t : NULL)
              : t == 2 ? row + l.doff + (size_t)c * l.db
              : (T == ENG_DT_Q5_0 || T == ENG_DT_Q5_1) ? row + l.hoff + 4 * (size_t)c : NULL;
        }
        if (p) asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
    }
}

/* Group j's A fragments of both rows (A[i][0..3]: elements in the order the
 * header says) and scales: weight = a[i][m] q + b[i] (m: the mma, which
 * differ for Q6_K only). */
template <int T>
__device__ __forceinline__ void qs_decode(const qs_raw &r, int j, int t, uint32_t (&A)[2][4],
                                          float (&a)[2][2], float (&b)[2]) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        uint32_t u0, u1, nbias = QS_NB128;
        b[i] = 0.f;
        if (T == ENG_DT_Q4_K || T == ENG_DT_Q5_K) {   /* sub-block j: nibble j%2 of qs pair j/2 */
            const uint2 q = r.q[i][j >> 1];
            const int sh = 4 * (j & 1);
            u0 = q.x >> sh & 0x0F0F0F0Fu;
            u1 = q.y >> sh & 0x0F0F0F0Fu;
            if (T == ENG_DT_Q5_K) {   /* bit j of qh byte l: element l's fifth bit */
                u0 |= (r.e[i][0] >> j & 0x01010101u) << 4;
                u1 |= (r.e[i][1] >> j & 0x01010101u) << 4;
            }
            int sc, mn;
            qk_scale_min(j, r.h[i].y, r.h[i].z, r.h[i].w, &sc, &mn);
            a[i][0] = a[i][1] = __fmul_rn(f16_lo(r.h[i].x), (float)sc);
            b[i] = -__fmul_rn(f16_lo(r.h[i].x >> 16), (float)mn);
        } else if (T == ENG_DT_Q6_K) {   /* half h = j/4, quarter Q = j%4 (engine/quant.c) */
            const int h = j >> 2, Q = j & 3, sl = 4 * (Q >> 1), sq = 2 * Q;
            const uint2 ql = r.q[i][2 * h + (Q & 1)];   /* .x: l = 4t.., .y: l = 16 + 4t.. */
            u0 = (ql.x >> sl & 0x0F0F0F0Fu) | (r.e[i][2 * h] >> sq & 0x03030303u) << 4;
            u1 = (ql.y >> sl & 0x0F0F0F0Fu) | (r.e[i][2 * h + 1] >> sq & 0x03030303u) << 4;
            nbias = QS_NB160;
            const float d = f16_lo(r.d[i][0]);
            const int s = 8 * h + 2 * Q;   /* scales s (l < 16) and s + 1 */
            const uint32_t w = s < 4 ? r.h[i].x : s < 8 ? r.h[i].y : s < 12 ? r.h[i].z : r.h[i].w;
            a[i][0] = __fmul_rn(d, (float)(int8_t)(w >> (8 * (s & 3))));
            a[i][1] = __fmul_rn(d, (float)(int8_t)(w >> (8 * ((s + 1) & 3))));
        } else if (T == ENG_DT_Q8_0) {
            A[i][0] = qs_pair8(r.q[i][j].x, 0);
            A[i][1] = qs_pair8(r.q[i][j].x, 1);
            A[i][2] = qs_pair8(r.q[i][j].y, 0);
            A[i][3] = qs_pair8(r.q[i][j].y, 1);
            a[i][0] = a[i][1] = f16_lo(r.d[i][j]);
            continue;
        } else {   /* Q4_0, Q4_1, Q5_0, Q5_1: elements 8t.. = nibble t/2 of bytes 8(t%2).. */
            const int sh = 4 * (t >> 1);
            u0 = r.q[i][j].x >> sh & 0x0F0F0F0Fu;
            u1 = r.q[i][j].y >> sh & 0x0F0F0F0Fu;
            if (T == ENG_DT_Q5_0 || T == ENG_DT_Q5_1) {   /* bit e of qh: element e's fifth */
                u0 |= spread4(r.e[i][j] >> (8 * t) & 15u);
                u1 |= spread4(r.e[i][j] >> (8 * t + 4) & 15u);
            }
            nbias = T == ENG_DT_Q4_0 ? QS_NB136 : T == ENG_DT_Q5_0 ? QS_NB144 : QS_NB128;
            a[i][0] = a[i][1] = f16_lo(r.d[i][j]);
            if (T == ENG_DT_Q4_1 || T == ENG_DT_Q5_1) b[i] = f16_lo(r.d[i][j] >> 16);
        }
        A[i][0] = qs_pair(u0, 0, nbias);
        A[i][1] = qs_pair(u0, 1, nbias);
        A[i][2] = qs_pair(u1, 0, nbias);
        A[i][3] = qs_pair(u1, 1, nbias);
    }
}

/* One group into the totals: xh, xl at the group's first element of column
 * g (high, low), S at its sums (S[n] for column n). */
template <int T, int NT>
__device__ __forceinline__ void qs_group(float (&tot)[NT][4], const uint32_t (&A)[2][4],
                                         const float (&a)[2][2], const float (&b)[2],
                                         const uint16_t *xh, const uint16_t *xl, const float *S, int t) {
    constexpr bool HASB = T == ENG_DT_Q4_K || T == ENG_DT_Q5_K || T == ENG_DT_Q4_1 || T == ENG_DT_Q5_1;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const uint16_t *ph = xh + nt * 8 * QS_LD, *pl = xl + nt * 8 * QS_LD;
        float c[4] = {0.f, 0.f, 0.f, 0.f};
        if (T != ENG_DT_Q6_K) {
            const uint4 h = *(const uint4 *)(ph + 8 * t), l = *(const uint4 *)(pl + 8 * t);
            mma_bf16(c, A[0][0], A[1][0], A[0][1], A[1][1], h.x, h.y);
            mma_bf16(c, A[0][2], A[1][2], A[0][3], A[1][3], h.z, h.w);
            mma_bf16(c, A[0][0], A[1][0], A[0][1], A[1][1], l.x, l.y);
            mma_bf16(c, A[0][2], A[1][2], A[0][3], A[1][3], l.z, l.w);
#pragma unroll
            for (int e = 0; e < 4; e++) tot[nt][e] = fmaf(a[e >> 1][0], c[e], tot[nt][e]);
            if (HASB) {
                const float2 s = *(const float2 *)(S + nt * 8 + 2 * t);
                tot[nt][0] = fmaf(b[0], s.x, tot[nt][0]);
                tot[nt][1] = fmaf(b[0], s.y, tot[nt][1]);
                tot[nt][2] = fmaf(b[1], s.x, tot[nt][2]);
                tot[nt][3] = fmaf(b[1], s.y, tot[nt][3]);
            }
        } else {
            float c2[4] = {0.f, 0.f, 0.f, 0.f};
            const uint2 h1 = *(const uint2 *)(ph + 4 * t), h2 = *(const uint2 *)(ph + 16 + 4 * t);
            const uint2 l1 = *(const uint2 *)(pl + 4 * t), l2 = *(const uint2 *)(pl + 16 + 4 * t);
            mma_bf16(c, A[0][0], A[1][0], A[0][1], A[1][1], h1.x, h1.y);
            mma_bf16(c, A[0][0], A[1][0], A[0][1], A[1][1], l1.x, l1.y);
            mma_bf16(c2, A[0][2], A[1][2], A[0][3], A[1][3], h2.x, h2.y);
            mma_bf16(c2, A[0][2], A[1][2], A[0][3], A[1][3], l2.x, l2.y);
#pragma unroll
            for (int e = 0; e < 4; e++)
                tot[nt][e] = fmaf(a[e >> 1][1], c2[e], fmaf(a[e >> 1][0], c[e], tot[nt][e]));
        }
    }
}

/* Copies chunk kc (kn elements) of the R high rows (ah) and R low rows (al)
 * into xs (columns 0..R-1 of each half; the rest stay zero).  A chunk's
 * row is at most 32 16-byte pieces: a warp copies a row, a lane a piece,
 * so the indices are shifts and a pointer step, with no division by a
 * run-time value. */
template <int NT>
__device__ __forceinline__ void qs_stage(uint16_t *xs, const uint16_t *ah, const uint16_t *al, int R, int K,
                                         int kc, int kn) {
    static_assert(QS_CK / 8 == 32, "a chunk's row is at most a warp's 32 pieces");
    const int c = threadIdx.x & 31, nw = blockDim.x >> 5;
    if (c < kn / 8)
#pragma unroll
        for (int hl = 0; hl < 2; hl++) {
            const uint16_t *src = (hl ? al : ah) + kc + 8 * c;
            uint16_t *dst = xs + (size_t)hl * 8 * NT * QS_LD + 8 * c;
            for (int n = threadIdx.x >> 5; n < R; n += nw) cp_async16(dst + n * QS_LD, src + (size_t)n * K);
        }
    cp_async_commit();
}

/* S[j][n] = sum of group j (of ng) of column n, high + low, in f32: warp j
 * multiplies the group by a tile of ones on the tensor cores (2 x 16-byte
 * loads and 4 mma per 8 columns; on the CUDA cores a sum is 64 conversions
 * and adds on one thread between two barriers).  Any order of the group's elements over the mma's k gives
 * the same products, so a lane loads its 8 consecutive elements as
 * qs_group does; every row of C is S, and lanes 0..3 (row 0) write it. */
template <int NT>
__device__ __forceinline__ void qs_sums(const uint16_t *xs, float *S, int ng) {
    static_assert(QS_CK / 32 <= QS_WARPS, "a warp a group");
    const int j = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    if (j >= ng) return;
    const uint32_t one = 0x3F803F80u;   /* bf16 1.0, twice */
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const uint16_t *ph = xs + (size_t)(8 * nt + g) * QS_LD + 32 * j + 8 * t;
        const uint4 h = *(const uint4 *)ph, l = *(const uint4 *)(ph + (size_t)8 * NT * QS_LD);
        float c[4] = {0.f, 0.f, 0.f, 0.f};
        mma_bf16(c, one, one, one, one, h.x, h.y);
        mma_bf16(c, one, one, one, one, h.z, h.w);
        mma_bf16(c, one, one, one, one, l.x, l.y);
        mma_bf16(c, one, one, one, one, l.z, l.w);
        if (g == 0) *(float2 *)(S + j * 8 * NT + nt * 8 + 2 * t) = make_float2(c[0], c[1]);
    }
}

/* The block's chunks for a warp of type T: every warp of the block runs
 * the same number of rounds and barriers, `live` or not.  SW: the warp's
 * blocks come from its slots sw (sb bytes a row), staged a chunk ahead
 * with the activations. */
template <int T, int NT, bool SW>
__device__ __forceinline__ void qs_loop(float (&tot)[NT][4], const uint8_t *ra, const uint8_t *rb,
                                        bool live, int K, int k0, int kend, const uint16_t *ah,
                                        const uint16_t *al, int R, uint16_t *x0, bool need_s,
                                        uint8_t *sw, int sb) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, nb = K / 32;
    const int n_ck = (kend - k0 + QS_CK - 1) / QS_CK;
    /* registers: a chunk's loads are issued at its start, before the
     * barriers (L2 prefetch QS_AHEAD ahead).  Loading the next chunk's
     * blocks a round early (twice the registers) was slower: NOTES.md v19. */
    for (int c = 0; c < n_ck; c++) {
        const int kc = k0 + c * QS_CK, kn = min(QS_CK, kend - kc), ng = kn / 32;
        qs_raw raw;
        if (!SW && live) {
            qs_load<T, false>(raw, ra, rb, kc, ng, nb, t);
            if (c + QS_AHEAD < n_ck) qs_prefetch<T>(ra, rb, kc + QS_AHEAD * QS_CK, nb, t);
        }
        cp_async_wait_all();
        qs_sync();   /* chunk c staged; every warp is past chunk c - 1 */
        const uint16_t *xs = x0 + (c & 1) * qs_buf_elems(NT);
        float *S = (float *)(xs + qs_xs_elems(NT));
        if (SW) {
            if (need_s) qs_sums<NT>(xs, S, ng);   /* before the slots' loads: fewer live registers */
            if (live) qs_load<T, true>(raw, sw + g * sb, sw + (g + 8) * sb, 0, ng, 8, t);
            qs_sync();   /* the slots read, the sums written */
            if (c + 1 < n_ck) {
                if (live) {
                    qs_copy_w<T>(sw, sb, ra, rb, kc + QS_CK, nb, g, t);
                    if (c + QS_AHEAD < n_ck) qs_prefetch<T>(ra, rb, kc + QS_AHEAD * QS_CK, nb, t);
                }
                qs_stage<NT>(x0 + ((c + 1) & 1) * qs_buf_elems(NT), ah, al, R, K, kc + QS_CK,
                             min(QS_CK, kend - kc - QS_CK));
            }
        } else {
            if (c + 1 < n_ck)
                qs_stage<NT>(x0 + ((c + 1) & 1) * qs_buf_elems(NT), ah, al, R, K, kc + QS_CK,
                             min(QS_CK, kend - kc - QS_CK));
            if (need_s) {
                qs_sums<NT>(xs, S, ng);
                qs_sync();
            }
        }
        if (!live) continue;
        const uint16_t *xh = xs + (size_t)g * QS_LD, *xl = xh + (size_t)8 * NT * QS_LD;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            if (j >= ng) break;
            uint32_t A[2][4];
            float a[2][2], b[2];
            qs_decode<T>(raw, j, t, A, a, b);
            qs_group<T, NT>(tot, A, a, b, xh + 32 * j, xl + 32 * j, S + j * 8 * NT, t);
        }
    }
}

/* More than 32 rows run in groups of 32 (blockIdx.x = tile x groups +
 * group: a tile's groups are scheduled together, so its blocks come from
 * DRAM once and from L2 for the other groups). */
template <int NT, bool SW>
__global__ void __launch_bounds__(QS_WARPS * 32, 2)
qskinny_kernel(kern_qw W, int N, int K, const uint16_t *act, int Rall, int ks, int need_s, int sb, float *Y) {
    extern __shared__ uint4 qs_dyn[];
    uint16_t *x0 = (uint16_t *)qs_dyn, *x1 = x0 + qs_buf_elems(NT);
    /* SW: each warp's 16 row slots after the two stage buffers */
    uint8_t *sw = (uint8_t *)(x0 + 2 * qs_buf_elems(NT)) + (size_t)(threadIdx.x >> 5) * 16 * sb;
    float *s0 = (float *)(x0 + qs_xs_elems(NT)), *s1 = (float *)(x1 + qs_xs_elems(NT));
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int k0 = blockIdx.y * ks, kend = min(K, k0 + ks);
    const int n_gr = (Rall + QS_MAX_ROWS - 1) / QS_MAX_ROWS;
    const int r0 = blockIdx.x % n_gr * QS_MAX_ROWS, R = min(QS_MAX_ROWS, Rall - r0);
    const uint16_t *ah = act + (size_t)r0 * K, *al = act + (size_t)(Rall + r0) * K;
    const int row0 = (blockIdx.x / n_gr * QS_WARPS + warp) * 16;
    const bool live = row0 < N;
    int type, tb;
    const uint8_t *ra = qrow(W, min(row0 + g, N - 1), &type), *rb = qrow(W, min(row0 + g + 8, N - 1), &tb);

    /* columns past R (both halves, both buffers) and their sums are zero */
    {   /* 16 bytes a store; QS_LD / 8 is a constant divisor */
        const int nz = 8 * NT - R;
        for (int i = threadIdx.x; i < 2 * nz * (QS_LD / 8); i += blockDim.x) {
            const int rr = i / (QS_LD / 8), e = 8 * (i % (QS_LD / 8)), hl = rr >= nz, n = R + (hl ? rr - nz : rr);
            *(uint4 *)(x0 + (size_t)(hl * 8 * NT + n) * QS_LD + e) = make_uint4(0, 0, 0, 0);
            *(uint4 *)(x1 + (size_t)(hl * 8 * NT + n) * QS_LD + e) = make_uint4(0, 0, 0, 0);
        }
    }
    for (int i = threadIdx.x; i < qs_s_floats(NT); i += blockDim.x) s0[i] = s1[i] = 0.f;
    /* the first chunks of the weights do not depend on the previous kernel
     * (SW: the first is copied, committed with the first activations) */
    if (live)
        for (int c = 0; c < QS_AHEAD && k0 + c * QS_CK < kend; c++) {
            switch (type) {
#define QS_PF(T) case T: qs_prefetch<T>(ra, rb, k0 + c * QS_CK, K / 32, t); \
                     if (SW && c == 0) qs_copy_w<T>(sw, sb, ra, rb, k0, K / 32, g, t); break;
            QS_PF(ENG_DT_Q4_K) QS_PF(ENG_DT_Q5_K) QS_PF(ENG_DT_Q6_K) QS_PF(ENG_DT_Q8_0)
            QS_PF(ENG_DT_Q4_0) QS_PF(ENG_DT_Q4_1) QS_PF(ENG_DT_Q5_0) QS_PF(ENG_DT_Q5_1)
#undef QS_PF
            }
        }
    pdl_launch();
    pdl_wait();
    qs_stage<NT>(x0, ah, al, R, K, k0, min(QS_CK, kend - k0));

    float tot[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) tot[nt][0] = tot[nt][1] = tot[nt][2] = tot[nt][3] = 0.f;
    switch (type) {
#define QS_RUN(T) case T: qs_loop<T, NT, SW>(tot, ra, rb, live, K, k0, kend, ah, al, R, x0, need_s, sw, sb); break;
    QS_RUN(ENG_DT_Q4_K) QS_RUN(ENG_DT_Q5_K) QS_RUN(ENG_DT_Q6_K) QS_RUN(ENG_DT_Q8_0)
    QS_RUN(ENG_DT_Q4_0) QS_RUN(ENG_DT_Q4_1) QS_RUN(ENG_DT_Q5_0) QS_RUN(ENG_DT_Q5_1)
#undef QS_RUN
    }
    if (!live) return;
    /* tot[nt][e]: row row0 + g + 8(e/2), column 8nt + 2t + e%2 */
    float *Yp = Y + (size_t)blockIdx.y * Rall * N + (size_t)r0 * N;
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int n = 8 * nt + 2 * t + (e & 1), row = row0 + g + 8 * (e >> 1);
            if (n < R && row < N) Yp[(size_t)n * N + row] = tot[nt][e];
        }
}

/* ------------------------------------------------------------------ host */
static int qs_cdiv(int a, int b) { return (a + b - 1) / b; }

/* Slices are whole chunks where K is (then they do not depend on the
 * segments' types: every layer of a model gets the same parts), else
 * whole 32-element blocks. */
static int qs_gran(int K) { return K % QS_CK ? 32 : QS_CK; }

extern "C" int kern_qskinny_ok(const kern_qw *W, int N, int K) {
    if (!qw_segments_ok(W, N, K)) return 0;
    for (int i = 0; i < W->n_seg - 1; i++)   /* a warp's 16 rows are of one segment */
        if (W->end[i] % 16) return 0;
    return 1;
}

static int qs_slice(int K, int gran, int parts) { return qs_cdiv(qs_cdiv(K, parts), gran) * gran; }

/* Bytes of 256 elements of a row of type t (the file's). */
static int qs_step_bytes(int t) { return eng_dt_block_bytes(t) * (256 / eng_dt_block(t)); }

/* Parts: the slicing whose blocks finish first.  A block (128 rows of one
 * slice) costs its chunks plus one (the first chunk's staging and loads
 * are not overlapped), in rounds of the 2 n_sms blocks the multiprocessors
 * hold (a round half full costs a whole one), its blocks' bytes weighed 3x
 * (the blocks stream at about a third of the copy bandwidth, NOTES.md
 * v19; every group of 32 rows has its own blocks); each part adds its
 * output, written and read again (8 R N bytes).  Within max_parts. */
extern "C" int kern_qskinny_parts(const kern_qw *W, int N, int K, int R, int n_sms, int max_parts) {
    if (!kern_qskinny_ok(W, N, K) || R < 1 || R > QS_MAX_ALL || n_sms < 1 || max_parts < 1) return 0;
    const int gran = qs_gran(K), tiles = qs_cdiv(N, 16 * QS_WARPS) * qs_cdiv(R, QS_MAX_ROWS), slots = 2 * n_sms;
    const double tile_bytes = 16.0 * QS_WARPS * qs_step_bytes(W->type[0]) * QS_CK / 256;
    int best = 0;
    double best_cost = 0;
    for (int p = 1; p <= QS_MAX_PARTS && p <= max_parts && p <= qs_cdiv(K, gran); p++) {
        const int ks = qs_slice(K, gran, p);
        if (qs_cdiv(K, ks) != p) continue;
        const double rounds = qs_cdiv(tiles * p, slots), chunks = qs_cdiv(ks, QS_CK) + 1;
        const double cost = 3.0 * rounds * chunks * slots * tile_bytes + 8.0 * p * R * N;
        if (!best || cost < best_cost) { best = p; best_cost = cost; }
    }
    return best;
}


/* The largest stage-1 slot: 256 elements of a row in the device layout, over
 * every type kern_qskinny serves. */
static int qs_slot_max(void) {
    static const int ts[] = {ENG_DT_Q4_K, ENG_DT_Q5_K, ENG_DT_Q6_K, ENG_DT_Q8_0,
                             ENG_DT_Q4_0, ENG_DT_Q4_1, ENG_DT_Q5_0, ENG_DT_Q5_1};
    int m = 0;
    for (int i = 0; i < (int)(sizeof ts / sizeof ts[0]); i++)
        if ((int)kern_qrow_bytes(ts[i], QS_CK) > m) m = (int)kern_qrow_bytes(ts[i], QS_CK);
    return m;
}

extern "C" int kern_qskinny(cudaStream_t s, const kern_qw *W, int N, int K, const void *act, int R,
                            int parts, float *Y, int n_sms, int pdl, int stage) {
    if (!kern_qskinny_ok(W, N, K) || R < 1 || R > QS_MAX_ALL || parts < 1 || n_sms < 1)
        return (int)cudaErrorInvalidValue;
    const int gran = qs_gran(K), ks = qs_slice(K, gran, parts);
    if (qs_cdiv(K, ks) != parts) return (int)cudaErrorInvalidValue;
    int need_s = 0, sb = 0;
    for (int i = 0; i < W->n_seg; i++) {
        const int t = W->type[i];
        need_s |= t == ENG_DT_Q4_K || t == ENG_DT_Q5_K || t == ENG_DT_Q4_1 || t == ENG_DT_Q5_1;
        /* a slot: 256 elements of a row in the device layout */
        if ((int)kern_qrow_bytes(t, QS_CK) > sb) sb = (int)kern_qrow_bytes(t, QS_CK);
    }
    const bool sw = stage && K % 256 == 0;   /* every plane's chunk 16-byte aligned */
    const dim3 grid(qs_cdiv(N, 16 * QS_WARPS) * qs_cdiv(R, QS_MAX_ROWS), parts);
    typedef void (*kfn)(kern_qw, int, int, const uint16_t *, int, int, int, int, float *);
    const int NT = R <= 8 ? 1 : R <= 16 ? 2 : 4;
    const kfn k = sw ? (NT == 1 ? qskinny_kernel<1, true> : NT == 2 ? qskinny_kernel<2, true> : qskinny_kernel<4, true>)
                     : (NT == 1 ? qskinny_kernel<1, false> : NT == 2 ? qskinny_kernel<2, false> : qskinny_kernel<4, false>);
    const size_t smem = qs_smem(NT) + (sw ? (size_t)QS_WARPS * 16 * sb : 0);
    /* the most any launch of k asks: the largest slot (ksmem_limit) */
    const size_t most = qs_smem(NT) + (sw ? (size_t)QS_WARPS * 16 * qs_slot_max() : 0);
    if (most > 48 * 1024) {
        cudaError_t e = ksmem_limit(k, most);
        if (e) return (int)e;
    }
    return (int)klaunch(k, grid, dim3(QS_WARPS * 32), smem, s, pdl, *W, N, K, (const uint16_t *)act, R,
                        ks, need_s, sb, Y);
}
