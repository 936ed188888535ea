/* kern_skinny.cu — products of bf16 weights with 5..64 activation rows
 * (decode passes past the GEMV kernel's reach) on tensor cores.
 *
 * Why not cuBLASLt: at these widths its plans run the narrow products (q/k/v,
 * o: N = 1.5-2k rows) on half the multiprocessors and cannot start before
 * the previous kernel ends (no programmatic dependent launch).
 *
 * The GEMV kernel's structure with mma.m16n8k16 as the inner product.  A
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

/* Weights are read once: no L1 line is allocated for them, so the loads in
 * flight are not bounded by the L1 left beside the shared memory. */
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

/* One k group: a = row g, b = row g + 8; xh/xl point at column g's k 8t of
 * the high/low parts, ld elements between columns. */
template <int NT>
__device__ __forceinline__ void sk_group(float (&c)[NT][4], uint4 a, uint4 b,
                                         const uint16_t *xh, const uint16_t *xl, int ld) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const uint4 h = *(const uint4 *)(xh + (size_t)nt * 8 * ld);
        const uint4 l = *(const uint4 *)(xl + (size_t)nt * 8 * ld);
        mma_bf16(c[nt], a.x, b.x, a.y, b.y, h.x, h.y);
        mma_bf16(c[nt], a.z, b.z, a.w, b.w, h.z, h.w);
        mma_bf16(c[nt], a.x, b.x, a.y, b.y, l.x, l.y);
        mma_bf16(c[nt], a.z, b.z, a.w, b.w, l.z, l.w);
    }
}

/* Copies k0..k0+kn of the activations' R high and R low rows into shared
 * memory as 2 x 8NT rows of ld elements; rows past R are zero. */
template <int NT>
__device__ __forceinline__ void sk_stage(uint16_t *xs, const uint16_t *act, int R, int K, int k0,
                                         int kn, int ld) {
    const int rows = 8 * NT, cpr = kn / 8;
    for (int i = threadIdx.x; i < 2 * rows * cpr; i += blockDim.x) {
        const int rr = i / cpr, c = i % cpr, hl = rr / rows, n = rr % rows;
        uint4 *dst = (uint4 *)(xs + (size_t)rr * ld) + c;
        if (n < R) cp_async16(dst, act + (size_t)(hl * R + n) * K + k0 + c * 8);
        else *dst = make_uint4(0, 0, 0, 0);
    }
    cp_async_wait_all();
    __syncthreads();
}

/* Where lane (g, t)'s weights of unit u start: rows g and g + 8 (clamped
 * to the last row), k0 + 8t. */
struct sk_ptrs {
    const uint4 *a, *b;
};
__device__ __forceinline__ sk_ptrs sk_unit(const uint16_t *W, int N, int K, int k0, int u, int lane) {
    const int r = u * 16 + (lane >> 2);
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

template <int NT>
__global__ void __launch_bounds__(SK_WARPS * 32, 2)
skinny_kernel(const uint16_t *__restrict__ W, int N, int K, const uint16_t *act, int R, int ks,
              float *Y) {
    constexpr int D = sk_depth<NT>::n;
    extern __shared__ uint4 sk_dyn[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const int k0 = blockIdx.y * ks, kn = min(ks, K - k0), ng = kn / 32, ld = sk_ld(ks);
    uint16_t *xs = (uint16_t *)sk_dyn;
    float *s_red = (float *)(xs + (size_t)2 * 8 * NT * ld);
    const int units = sk_cdiv(N, 16), G = gridDim.x;
    const int nj = warp < ng ? (ng - warp + SK_WARPS - 1) / SK_WARPS : 0;   /* this warp's groups */

    /* the first unit's weights do not depend on the previous kernel: asked
     * for before waiting on it */
    uint4 wa[D], wb[D];
    int u = blockIdx.x;
    sk_ptrs p = sk_unit(W, N, K, k0, u, lane);
#pragma unroll
    for (int d = 0; d < D; d++)
        if (d < nj && u < units) sk_load(wa[d], wb[d], p, warp + SK_WARPS * d);
    pdl_launch();
    pdl_wait();
    sk_stage<NT>(xs, act, R, K, k0, kn, ld);

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
                    sk_group<NT>(c, wa[d], wb[d], xh + 32 * j, xl + 32 * j, ld);
                    if (i + D < nj) sk_load(wa[d], wb[d], p, j + SK_WARPS * D);
                }
            }
        }
        /* the next unit's first weights are in flight during the reduction */
        if (u + G < units) {
            p = sk_unit(W, N, K, k0, u + G, lane);
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

/* The K slice for `parts` parts: a multiple of 32. */
static int sk_slice(int K, int parts) { return sk_cdiv(sk_cdiv(K, parts), 32) * 32; }

static size_t sk_smem(int NT, int ks) {
    return (size_t)2 * 8 * NT * sk_ld(ks) * 2 + (size_t)SK_WARPS * NT * 128 * 4;
}

/* Shapes the kernel takes: rows within its column tiles, K in 32-wide groups. */
static bool sk_shape_ok(int N, int K, int R) {
    return R >= 1 && R <= SK_MAX_ROWS && N >= 1 && K >= 32 && K % 32 == 0;
}

/* Whether K cuts into exactly `parts` slices whose activations fit the
 * shared memory beside the reduction buffer. */
static bool sk_slicing_ok(int K, int NT, int parts) {
    const int ks = sk_slice(K, parts);
    return sk_cdiv(K, ks) == parts && sk_smem(NT, ks) <= SK_SMEM;
}

/* Blocks per slice: two blocks per multiprocessor in all, at most one per unit. */
static int sk_blocks(int N, int parts, int n_sms) {
    const int units = sk_cdiv(N, 16), b = 2 * n_sms / parts;
    return b < 1 ? 1 : b > units ? units : b;
}

/* Parts: of the slicings that fit the shared memory, the one whose blocks
 * finish first, taking a block's time as its rounds of units times the
 * unit's bytes (weights, 2 per k, plus its part of the output, 4 per row);
 * fewer parts on a tie. */
extern "C" int kern_skinny_parts(int N, int K, int R, int n_sms, int max_parts) {
    if (!sk_shape_ok(N, K, R) || n_sms < 1) return 0;
    const int NT = (R + 7) / 8, units = sk_cdiv(N, 16);
    int best = 0;
    double best_cost = 0;
    for (int p = 1; p <= SK_MAX_PARTS && p <= max_parts && p <= K / 32; p++) {
        if (!sk_slicing_ok(K, NT, p)) continue;
        const double cost = (double)sk_cdiv(units, sk_blocks(N, p, n_sms)) *
                            (2.0 * sk_slice(K, p) + 4.0 * R);
        if (!best || cost < best_cost) { best = p; best_cost = cost; }
    }
    return best;
}

template <int NT>
static cudaError_t sk_launch(cudaStream_t s, int pdl, const void *W, int N, int K,
                             const void *act, int R, int parts, float *Y, int n_sms) {
    if (!sk_slicing_ok(K, NT, parts)) return cudaErrorInvalidValue;
    const int ks = sk_slice(K, parts);
    cudaError_t e = cudaFuncSetAttribute(skinny_kernel<NT>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, SK_SMEM);
    if (e != cudaSuccess) return e;
    return klaunch(skinny_kernel<NT>, dim3(sk_blocks(N, parts, n_sms), parts), dim3(SK_WARPS * 32),
                   sk_smem(NT, ks), s, pdl, (const uint16_t *)W, N, K, (const uint16_t *)act, R, ks, Y);
}

extern "C" int kern_skinny(cudaStream_t s, const void *W, int N, int K, const void *act, int R,
                           int parts, float *Y, int n_sms, int pdl) {
    if (!sk_shape_ok(N, K, R) || parts < 1 || n_sms < 1) return (int)cudaErrorInvalidValue;
    switch ((R + 7) / 8) {
    case 1: return (int)sk_launch<1>(s, pdl, W, N, K, act, R, parts, Y, n_sms);
    case 2: return (int)sk_launch<2>(s, pdl, W, N, K, act, R, parts, Y, n_sms);
    case 3: return (int)sk_launch<3>(s, pdl, W, N, K, act, R, parts, Y, n_sms);
    case 4: return (int)sk_launch<4>(s, pdl, W, N, K, act, R, parts, Y, n_sms);
    case 5: return (int)sk_launch<5>(s, pdl, W, N, K, act, R, parts, Y, n_sms);
    case 6: return (int)sk_launch<6>(s, pdl, W, N, K, act, R, parts, Y, n_sms);
    case 7: return (int)sk_launch<7>(s, pdl, W, N, K, act, R, parts, Y, n_sms);
    default: return (int)sk_launch<8>(s, pdl, W, N, K, act, R, parts, Y, n_sms);
    }
}
