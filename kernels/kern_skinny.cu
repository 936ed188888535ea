/* kern_skinny.cu — products of bf16 weights with 5..64 activation rows
 * (decode passes past the GEMV kernel's reach) on tensor cores.
 *
 * Why not cuBLASLt: at these widths its plans run the narrow products (q/k/v,
 * o: N = 1.5-2k rows) on half the multiprocessors and cannot start before
 * the previous kernel ends (no programmatic dependent launch).
 *
 * Up to 16 rows: the GEMV kernel's structure with mma.m16n8k16 as the
 * inner product (below); from 17 rows, warpgroup MMA (further down).  A
 * unit is 16 weight rows over one slice of K; block (b, s) copies slice s
 * of the activations (bf16 high and low parts, as cuBLASLt takes them) into
 * shared memory once, then takes units b, b + G, ... of that slice.  Its 8
 * warps share a unit's k groups (32 wide, round robin), each streaming its
 * weights from memory straight into fragments, sk_depth 16-byte loads per
 * row in flight; the 8 partial sums are added in shared memory in warp
 * order.  The next unit's first weights are loaded before that reduction,
 * the first unit's before waiting on the previous kernel.  High and low
 * parts go into one f32 accumulator.  Each K slice writes its own part of
 * the output ([parts][R][N]); the consumer kernel adds the parts in order,
 * so results do not depend on timing.
 *
 * Fragment order: within each k group, lane (g = lane/4, t = lane%4) loads
 * k 8t..8t+7 of rows g and g+8 (16 bytes each) and takes the activations' k
 * 8t..8t+7 of column g; the first four k feed one mma, the other four the
 * second.  That pairs the same k on both sides (a permutation of k inside
 * the group, which the sum does not see), so every operand is one 16-byte
 * load. */
#include "kern_common.cuh"

#define SK_WARPS 8
#define SK_SMEM (113 * 1024)      /* shared memory per block: two blocks per SM */
#define SK_MAX_ROWS 64
#define SK_MAX_PARTS 64

/* Shared row length for a slice of ks (a multiple of 32): 2*ld bytes = 64
 * mod 128, so columns g and g+1 of a quarter warp's 16-byte reads fall in
 * different banks. */
__host__ __device__ __forceinline__ int sk_ld(int ks) { return ks % 64 ? ks : ks + 32; }

__host__ __device__ __forceinline__ int sk_cdiv(int a, int b) { return (a + b - 1) / b; }

/* k groups in flight per warp, by column tiles: measured on the H100 (1.5B
 * and 0.5B steps at 6-16 rows, depth 2, 4, 8): 4 best at one tile, 2 at
 * two (1.5B 12 rows 2.233 vs 2.316 ms), where registers are scarcer. */
template <int NT> struct sk_depth { static constexpr int n = NT == 1 ? 4 : 2; };

/* One k group: a = row g, b = row g + 8; xh/xl point at column g's k 8t of
 * the high/low parts, ld elements between columns (H = 1: no low part). */
template <int NT, int H>
__device__ __forceinline__ void sk_group(float (&c)[NT][4], uint4 a, uint4 b,
                                         const uint16_t *xh, const uint16_t *xl, int ld) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const uint4 h = *(const uint4 *)(xh + (size_t)nt * 8 * ld);
        const uint4 l = H == 2 ? *(const uint4 *)(xl + (size_t)nt * 8 * ld) : h;
        mma_bf16(c[nt], a.x, b.x, a.y, b.y, h.x, h.y);
        mma_bf16(c[nt], a.z, b.z, a.w, b.w, h.z, h.w);
        if (H == 2) {
            mma_bf16(c[nt], a.x, b.x, a.y, b.y, l.x, l.y);
            mma_bf16(c[nt], a.z, b.z, a.w, b.w, l.z, l.w);
        }
    }
}

/* Copies k0..k0+kn of the activations' R high (and, H = 2, R low) rows
 * into shared memory as H x 8NT rows of ld elements; rows past R are zero. */
template <int NT, int H>
__device__ __forceinline__ void sk_stage(uint16_t *xs, const uint16_t *act, int R, int K, int k0,
                                         int kn, int ld) {
    const int rows = 8 * NT, cpr = kn / 8;
    for (int i = threadIdx.x; i < H * rows * cpr; i += blockDim.x) {
        const int rr = i / cpr, c = i % cpr, hl = rr / rows, n = rr % rows;
        uint4 *dst = (uint4 *)(xs + (size_t)rr * ld) + c;
        if (n < R) cp_async16(dst, act + (size_t)(hl * R + n) * K + k0 + c * 8);
        else *dst = make_uint4(0, 0, 0, 0);
    }
    cp_async_wait_all();
    __syncthreads();
}

/* Where lane (g, t)'s weights start in the 16 rows from row0: rows
 * row0 + g and row0 + g + 8 (clamped to the last row), k0 + 8t. */
struct sk_ptrs {
    const uint4 *a, *b;
};
__device__ __forceinline__ sk_ptrs sk_unit(const uint16_t *W, int N, int K, int k0, int row0, int lane) {
    const int r = row0 + (lane >> 2);
    const uint16_t *base = W + k0 + 8 * (lane & 3);
    return {(const uint4 *)(base + (size_t)min(r, N - 1) * K),
            (const uint4 *)(base + (size_t)min(r + 8, N - 1) * K)};
}

/* Group j (32 k = 4 uint4 further each) of the unit at p. */
__device__ __forceinline__ void sk_load(uint4 &a, uint4 &b, const sk_ptrs &p, int j) {
    a = ld_stream(p.a + 4 * j);
    b = ld_stream(p.b + 4 * j);
}

/* The warps' sums of a unit, added in warp order: s_red[w][nt*4 + e][lane]
 * holds warp w's c[nt][e]; output (row rr, column n) sits at lane
 * (rr%8)*4 + (n%8)/2, e = n%2 + 2*(rr/8). */
template <int NT>
__device__ __forceinline__ void sk_reduce(const float *s_red, float *Yp, int N, int R, int row0) {
    for (int o = threadIdx.x; o < 16 * 8 * NT; o += blockDim.x) {
        const int rr = o % 16, n = o / 16, cn = n % 8;
        const int i = ((n / 8) * 4 + cn % 2 + 2 * (rr / 8)) * 32 + (rr % 8) * 4 + cn / 2;
        float v = 0.f;
#pragma unroll
        for (int w = 0; w < SK_WARPS; w++) v += s_red[w * NT * 128 + i];
        if (n < R && row0 + rr < N) Yp[(size_t)n * N + row0 + rr] = v;
    }
}

template <int NT, int H>
__global__ void __launch_bounds__(SK_WARPS * 32, 2)
skinny_kernel(const uint16_t *__restrict__ W, int N, int K, const uint16_t *act, int R, int ks,
              float *Y) {
    constexpr int D = sk_depth<NT>::n;
    extern __shared__ uint4 sk_dyn[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const int k0 = blockIdx.y * ks, kn = min(ks, K - k0), ng = kn / 32, ld = sk_ld(ks);
    uint16_t *xs = (uint16_t *)sk_dyn;
    float *s_red = (float *)(xs + (size_t)H * 8 * NT * ld);
    const int units = sk_cdiv(N, 16), G = gridDim.x;
    const int nj = warp < ng ? (ng - warp + SK_WARPS - 1) / SK_WARPS : 0;   /* this warp's groups */

    /* the first unit's weights do not depend on the previous kernel: asked
     * for before waiting on it */
    uint4 wa[D], wb[D];
    int u = blockIdx.x;
    sk_ptrs p = sk_unit(W, N, K, k0, u * 16, lane);
#pragma unroll
    for (int d = 0; d < D; d++)
        if (d < nj && u < units) sk_load(wa[d], wb[d], p, warp + SK_WARPS * d);
    pdl_launch();
    pdl_wait();
    sk_stage<NT, H>(xs, act, R, K, k0, kn, ld);

    const uint16_t *xh = xs + (size_t)g * ld + 8 * (lane & 3), *xl = xh + (size_t)8 * NT * ld;
    float *Yp = Y + (size_t)blockIdx.y * R * N;
    for (; u < units; u += G) {
        float c[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
        for (int i0 = 0; i0 < nj; i0 += D) {
#pragma unroll
            for (int d = 0; d < D; d++) {
                const int i = i0 + d, j = warp + SK_WARPS * i;
                if (i < nj) {
                    sk_group<NT, H>(c, wa[d], wb[d], xh + 32 * j, xl + 32 * j, ld);
                    if (i + D < nj) sk_load(wa[d], wb[d], p, j + SK_WARPS * D);
                }
            }
        }
        /* the next unit's first weights are in flight during the reduction */
        if (u + G < units) {
            p = sk_unit(W, N, K, k0, (u + G) * 16, lane);
#pragma unroll
            for (int d = 0; d < D; d++)
                if (d < nj) sk_load(wa[d], wb[d], p, warp + SK_WARPS * d);
        }
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s_red[(warp * NT + nt) * 128 + e * 32 + lane] = c[nt][e];
        __syncthreads();
        sk_reduce<NT>(s_red, Yp, N, R, u * 16);
        __syncthreads();   /* s_red is reused */
    }
}

/* ---- 17..64 rows: warpgroup MMA (wgmma, sm_90a) ----
 *
 * At these widths mma.sync binds (NOTES.md v11): each warp reads every
 * activation column from shared memory again for each 16 weight rows, and
 * issues 16 mma per KB of weights at 32 rows.  wgmma reads the activations
 * from shared memory once per 64 weight rows, for a whole warpgroup.  A unit
 * is 64 weight rows over one K slice: each warp of a warpgroup loads its 16
 * rows straight into A fragments as above (wgmma's register A fragment is
 * mma.m16n8k16's, one per warp).  B, the activations, is staged in the
 * canonical K-major layout without swizzle (core matrices of 8 columns x 8
 * k, 128 contiguous bytes), in the k order the weight loads imply.  High and
 * low rows are two wgmma of RP columns into one accumulator (bf16-only
 * inputs, H = 1: the high ones alone).  The block's
 * two warpgroups share a unit's k groups (round robin) and add their sums
 * in shared memory, warpgroup 0's plus warpgroup 1's.
 *
 * Measured on the H100 (NOTES.md v12): each warpgroup on units of its own
 * was no better; one group in flight on the tensor cores while the next
 * issues (wait_group 1) no faster than waiting for each; at 8-16 rows this
 * path loses to mma.sync in the step (again in v13: 1.5B 12 rows 2.68 vs
 * 2.16 ms), so it starts at 17 rows. */
#ifndef SK_WG_MIN_ROWS   /* -D for experiments */
#define SK_WG_MIN_ROWS 17
#endif

/* k groups in flight per warp, by padded rows (registers: 32 accumulators
 * a thread at RP = 64). */
template <int RP> struct wg_depth { static constexpr int n = RP >= 64 ? 2 : 4; };

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

/* Shared-memory descriptor: start address, LBO (bytes between core matrices
 * adjacent in k), SBO = 128 (adjacent in columns), no swizzle. */
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo) {
    return (uint64_t)((addr & 0x3ffff) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(128 >> 4) << 32);
}

/* c += A B for one k16 step: A the warp's 16 rows (4 registers of bf16
 * pairs), B RP columns at the descriptor. */
template <int RP> struct wg_mma;
#define WG_F4(i) "+f"(c[i]), "+f"(c[i + 1]), "+f"(c[i + 2]), "+f"(c[i + 3])
#define WG_IN "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(d), "r"(1)
template <> struct wg_mma<32> {
    static __device__ __forceinline__ void run(float (&c)[16], uint32_t a0, uint32_t a1, uint32_t a2,
                                               uint32_t a3, uint64_t d) {
        asm volatile("{.reg .pred p; setp.ne.b32 p, %21, 0; wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
                     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, {%16,%17,%18,%19}, %20, p, 1, 1, 0;}"
                     : WG_F4(0), WG_F4(4), WG_F4(8), WG_F4(12) : WG_IN);
    }
};
template <> struct wg_mma<64> {
    static __device__ __forceinline__ void run(float (&c)[32], uint32_t a0, uint32_t a1, uint32_t a2,
                                               uint32_t a3, uint64_t d) {
        asm volatile("{.reg .pred p; setp.ne.b32 p, %37, 0; wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,"
                     "%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;}"
                     : WG_F4(0), WG_F4(4), WG_F4(8), WG_F4(12), WG_F4(16), WG_F4(20), WG_F4(24), WG_F4(28)
                     : WG_IN);
    }
};
#undef WG_F4
#undef WG_IN

/* One k group (32 k) of the unit, x at its first core matrix; the low
 * columns (H = 2) start RP / 8 core matrices (RP * 16 bytes) after the
 * high.  L: bytes of one k slab of core matrices, H RP columns of 16. */
template <int RP, int H>
__device__ __forceinline__ void wg_group(float (&c)[RP / 2], uint4 a, uint4 b, uint32_t x) {
    constexpr uint32_t L = 16 * H * RP;
    wg_fence();
    wg_mma<RP>::run(c, a.x, b.x, a.y, b.y, wg_desc(x, L));
    if (H == 2) wg_mma<RP>::run(c, a.x, b.x, a.y, b.y, wg_desc(x + RP * 16, L));
    wg_mma<RP>::run(c, a.z, b.z, a.w, b.w, wg_desc(x + 2 * L, L));
    if (H == 2) wg_mma<RP>::run(c, a.z, b.z, a.w, b.w, wg_desc(x + 2 * L + RP * 16, L));
    wg_commit();
    wg_wait0();
}

/* Copies k0..k0+kn of the activations into shared memory as B: column n <
 * RP is high row n, RP + n low row n (H = 2; zero past R).  Core matrix 4j + q
 * (k group j) holds, in column n's 16 bytes, bf16 pair q of each of the
 * four 16-byte pieces t (k 8t..8t+7) of that group: the order the weight
 * fragments take k in.  Four lanes read a column's 64 bytes of a group
 * (coalesced), 8 pieces each in flight, and store their pairs as single
 * words (a warp's stores fill 128 contiguous bytes: no conflicts).
 * Measured: copying the pieces whole (cp.async, lanes along columns) and
 * transposing in place made q/k/v at 32 rows 4.9 -> 7.5 us. */
template <int RP, int H>
__device__ __forceinline__ void wg_stage(char *xs, const uint16_t *act, int R, int K, int k0, int kn) {
    constexpr int C = H * RP, L = 16 * C, B = 8;
    const int chunks = C * (kn / 8);
    for (int i0 = threadIdx.x; i0 < chunks; i0 += B * blockDim.x) {
        uint4 v[B];
#pragma unroll
        for (int q = 0; q < B; q++) {
            const int i = i0 + q * blockDim.x, n = (i >> 2) % C, r = n % RP;
            v[q] = make_uint4(0, 0, 0, 0);
            if (i < chunks && r < R)
                v[q] = __ldcg((const uint4 *)(act + (size_t)((n / RP) * R + r) * K + k0 +
                                              32 * ((i >> 2) / C) + 8 * (i & 3)));
        }
#pragma unroll
        for (int q = 0; q < B; q++) {
            const int i = i0 + q * blockDim.x, n = (i >> 2) % C;
            if (i >= chunks) break;
            uint32_t *d = (uint32_t *)(xs + (size_t)4 * ((i >> 2) / C) * L + (n >> 3) * 128 +
                                       (n & 7) * 16 + 4 * (i & 3));
            d[0] = v[q].x;
            d[L / 4] = v[q].y;
            d[2 * L / 4] = v[q].z;
            d[3 * L / 4] = v[q].w;
        }
    }
    /* the tensor cores read it through the async proxy */
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
}

template <int RP, int H>
__global__ void __launch_bounds__(SK_WARPS * 32, 2)
skinny_wg_kernel(const uint16_t *__restrict__ W, int N, int K, const uint16_t *act, int R, int ks,
                 float *Y) {
    constexpr int D = wg_depth<RP>::n, L = 16 * H * RP, NA = RP / 2;
    extern __shared__ uint4 sk_dyn[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wg = warp >> 2, wq = warp & 3;
    const int k0 = blockIdx.y * ks, kn = min(ks, K - k0), ng = kn / 32;
    char *xs = (char *)sk_dyn;
    float *s_red = (float *)(xs + (size_t)(ks / 8) * L);
    const int units = sk_cdiv(N, 64), G = gridDim.x;
    const int nj = wg < ng ? (ng - wg + 1) / 2 : 0;   /* this warpgroup's groups: wg, wg + 2, .. */

    uint4 wa[D], wb[D];
    int u = blockIdx.x;
    sk_ptrs p = sk_unit(W, N, K, k0, u * 64 + wq * 16, lane);
#pragma unroll
    for (int d = 0; d < D; d++)
        if (d < nj && u < units) sk_load(wa[d], wb[d], p, wg + 2 * d);
    pdl_launch();
    pdl_wait();
    wg_stage<RP, H>(xs, act, R, K, k0, kn);

    const uint32_t xa = (uint32_t)__cvta_generic_to_shared(xs);
    float *Yp = Y + (size_t)blockIdx.y * R * N;
    const int g = lane >> 2, t = lane & 3;
    for (; u < units; u += G) {
        float c[NA];
#pragma unroll
        for (int e = 0; e < NA; e++) c[e] = 0.f;
        for (int i0 = 0; i0 < nj; i0 += D) {
#pragma unroll
            for (int d = 0; d < D; d++) {
                const int i = i0 + d, j = wg + 2 * i;
                if (i < nj) {   /* the same for the warpgroup's 4 warps, as wgmma needs */
                    wg_group<RP, H>(c, wa[d], wb[d], xa + 4 * j * L);
                    if (i + D < nj) sk_load(wa[d], wb[d], p, j + 2 * D);
                }
            }
        }
        /* the next unit's first weights are in flight during the reduction */
        if (u + G < units) {
            p = sk_unit(W, N, K, k0, (u + G) * 64 + wq * 16, lane);
#pragma unroll
            for (int d = 0; d < D; d++)
                if (d < nj) sk_load(wa[d], wb[d], p, wg + 2 * d);
        }
        /* c[4jj + e]: row 16wq + g + 8(e/2), column 8jj + 2t + e%2 */
        if (wg == 1)
#pragma unroll
            for (int e = 0; e < NA; e++) s_red[e * 128 + wq * 32 + lane] = c[e];
        __syncthreads();
        if (wg == 0)
#pragma unroll
            for (int e = 0; e < NA; e++) {
                const int n = 8 * (e >> 2) + 2 * t + (e & 1), row = u * 64 + wq * 16 + g + 8 * ((e >> 1) & 1);
                if (n < R && row < N) Yp[(size_t)n * N + row] = c[e] + s_red[e * 128 + wq * 32 + lane];
            }
        __syncthreads();   /* s_red is reused */
    }
}

/* The K slice for `parts` parts: a multiple of 32. */
static int sk_slice(int K, int parts) { return sk_cdiv(sk_cdiv(K, parts), 32) * 32; }

/* Which kernel takes R rows, its column tile (8 x NT for mma.sync, RP for
 * wgmma) and its unit of weight rows. */
static bool sk_wg(int R) { return R >= SK_WG_MIN_ROWS; }
static int sk_nt(int R) { return (R + 7) / 8; }
static int sk_rp(int R) { return R <= 32 ? 32 : 64; }
static int sk_unit_rows(int R) { return sk_wg(R) ? 64 : 16; }

/* Shared memory: the staged activations (H = 2 halves or 1) and the
 * reduction buffer. */
static size_t sk_smem(int R, int ks, int H) {
    if (sk_wg(R)) return (size_t)(ks / 8) * 16 * H * sk_rp(R) + (size_t)sk_rp(R) * 64 * 4;
    const int NT = sk_nt(R);
    return (size_t)H * 8 * NT * sk_ld(ks) * 2 + (size_t)SK_WARPS * NT * 128 * 4;
}

/* Shapes the kernel takes: rows within its column tiles, K in 32-wide groups. */
static bool sk_shape_ok(int N, int K, int R) {
    return R >= 1 && R <= SK_MAX_ROWS && N >= 1 && K >= 32 && K % 32 == 0;
}

/* Whether K cuts into exactly `parts` slices whose activations fit the
 * shared memory beside the reduction buffer. */
static bool sk_slicing_ok(int K, int R, int parts, int H) {
    const int ks = sk_slice(K, parts);
    return sk_cdiv(K, ks) == parts && sk_smem(R, ks, H) <= SK_SMEM;
}

/* Blocks per slice: two blocks per multiprocessor in all, at most one per unit. */
static int sk_blocks(int N, int R, int parts, int n_sms) {
    const int units = sk_cdiv(N, sk_unit_rows(R)), b = 2 * n_sms / parts;
    return b < 1 ? 1 : b > units ? units : b;
}

/* Parts: of the slicings that fit the shared memory, the one whose blocks
 * finish first, taking a block's time as its rounds of units times the
 * unit's bytes (weights, 2 per k, plus its part of the output, 4 per row);
 * fewer parts on a tie. */
extern "C" int kern_skinny_parts(int N, int K, int R, int halves, int n_sms, int max_parts) {
    const int H = halves ? 2 : 1;
    if (!sk_shape_ok(N, K, R) || n_sms < 1) return 0;
    const int units = sk_cdiv(N, sk_unit_rows(R));
    int best = 0;
    double best_cost = 0;
    for (int p = 1; p <= SK_MAX_PARTS && p <= max_parts && p <= K / 32; p++) {
        if (!sk_slicing_ok(K, R, p, H)) continue;
        const double cost = (double)sk_cdiv(units, sk_blocks(N, R, p, n_sms)) *
                            (2.0 * sk_slice(K, p) + 4.0 * R);
        if (!best || cost < best_cost) { best = p; best_cost = cost; }
    }
    return best;
}

template <typename Kern>
static cudaError_t sk_launch(Kern k, cudaStream_t s, int pdl, const void *W, int N, int K,
                             const void *act, int R, int H, int parts, float *Y, int n_sms) {
    if (!sk_slicing_ok(K, R, parts, H)) return cudaErrorInvalidValue;
    const int ks = sk_slice(K, parts);
    cudaError_t e = ksmem_limit(k, SK_SMEM);
    if (e != cudaSuccess) return e;
    return klaunch(k, dim3(sk_blocks(N, R, parts, n_sms), parts), dim3(SK_WARPS * 32),
                   sk_smem(R, ks, H), s, pdl, (const uint16_t *)W, N, K, (const uint16_t *)act, R, ks, Y);
}

template <int H>
static int sk_dispatch(cudaStream_t s, const void *W, int N, int K, const void *act, int R, int parts,
                       float *Y, int n_sms, int pdl) {
#define SK_GO(k) return (int)sk_launch(k, s, pdl, W, N, K, act, R, H, parts, Y, n_sms)
    if (sk_wg(R)) {
        if (sk_rp(R) == 32) SK_GO((skinny_wg_kernel<32, H>));
        SK_GO((skinny_wg_kernel<64, H>));
    }
    switch (sk_nt(R)) {
    case 1: SK_GO((skinny_kernel<1, H>));
    case 2: SK_GO((skinny_kernel<2, H>));
    case 3: SK_GO((skinny_kernel<3, H>));
    case 4: SK_GO((skinny_kernel<4, H>));
    case 5: SK_GO((skinny_kernel<5, H>));
    case 6: SK_GO((skinny_kernel<6, H>));
    case 7: SK_GO((skinny_kernel<7, H>));
    default: SK_GO((skinny_kernel<8, H>));
    }
#undef SK_GO
}

extern "C" int kern_skinny(cudaStream_t s, const void *W, int N, int K, const void *act, int R,
                           int halves, int parts, float *Y, int n_sms, int pdl) {
    if (!sk_shape_ok(N, K, R) || parts < 1 || n_sms < 1) return (int)cudaErrorInvalidValue;
    return halves ? sk_dispatch<2>(s, W, N, K, act, R, parts, Y, n_sms, pdl)
                  : sk_dispatch<1>(s, W, N, K, act, R, parts, Y, n_sms, pdl);
}
