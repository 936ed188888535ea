/* kern_sample.cu — sampling on the GPU, one block of 1024 threads per out
 * row, so only ids and log-probabilities travel back to the host.
 *
 * Pass 1 (always): online max / argmax (lowest id on ties) / sum of
 * e^(l-m) and of e^(l-m)(l-m), giving log Z and the entropy of the
 * temperature-1 distribution.  It is spread over gridDim.y blocks per row;
 * the last of them to finish merges their summaries in block order and goes
 * on alone (greedy needs nothing more).  With temperature > 0:
 *  - top-k: radix select (4 passes of 8 bits over order-preserving keys) of
 *    the k-th largest logit; of the logits equal to it, the lowest ids stay;
 *  - top-p: the same radix walk over probability mass, finding the largest
 *    logit t with mass(logit >= t) >= p * mass(kept); ties at t all stay;
 *  - the draw: u * kept mass, located by a prefix sum over ids.
 * Masses are fixed-point integers (2^40 = probability 1), so every sum is
 * exact and the choice does not depend on thread timing. */
#include <limits.h>
#include <math.h>
#include "kern_common.cuh"

#define SAMP_THREADS 1024
#define SAMP_WARPS (SAMP_THREADS / 32)
#define FIX_ONE 1099511627776.0 /* 2^40 */

typedef unsigned long long u64;

__device__ __forceinline__ unsigned okey(float f) {
    unsigned b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float okey_float(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
__device__ __forceinline__ u64 fixw(float l, float m, float inv_t) {
    return (u64)((double)expf((l - m) * inv_t) * FIX_ONE);
}
__device__ __forceinline__ float logit_at(const float *row, const float *lo, int i) {
    return lo ? row[i] + lo[i] : row[i];
}

struct smax { float m, s, sl; int am; };

/* Merges two (max, argmax, sum e^(l-m), sum e^(l-m)(l-m)) summaries. */
__device__ __forceinline__ smax smax_merge(smax a, smax b) {
    smax r;
    r.m = fmaxf(a.m, b.m);
    r.am = a.m > b.m ? a.am : b.m > a.m ? b.am : min(a.am, b.am);
    r.s = 0.f; r.sl = 0.f;
    if (r.m == -INFINITY) return r;
    if (a.m != -INFINITY) {
        float c = expf(a.m - r.m);
        r.s += a.s * c; r.sl += c * (a.sl + a.s * (a.m - r.m));
    }
    if (b.m != -INFINITY) {
        float c = expf(b.m - r.m);
        r.s += b.s * c; r.sl += c * (b.sl + b.s * (b.m - r.m));
    }
    return r;
}

/* Exclusive prefix sum over the block; *total gets the block's sum. */
template <typename T>
__device__ T block_excl_scan(T v, T *s_warp, T *total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    T x = v;
    for (int o = 1; o < 32; o <<= 1) {
        T y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    __syncthreads();
    if (lane == 31) s_warp[warp] = x;
    __syncthreads();
    if (warp == 0) {
        T w = s_warp[lane];
        for (int o = 1; o < 32; o <<= 1) {
            T y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        s_warp[lane] = w;
    }
    __syncthreads();
    T before = warp ? s_warp[warp - 1] : (T)0;
    *total = s_warp[SAMP_WARPS - 1];
    return before + x - v;
}

/* Is a logit with key kk (the er-th logit equal to tau_k by id) kept? */
__device__ __forceinline__ bool kept_at(unsigned kk, bool use_k, unsigned tau_k, int *er,
                                        int n_eq_keep, bool use_p, unsigned tau_p) {
    bool kept;
    if (!use_k || kk > tau_k) kept = true;
    else if (kk == tau_k) kept = (*er)++ < n_eq_keep;
    else kept = false;
    return kept && (!use_p || kk >= tau_p);
}

/* Folds logit l at id i into a running summary. */
__device__ __forceinline__ void smax_add(smax &a, float l, int i) {
    if (l > a.m) {
        if (a.m == -INFINITY) { a.s = 1.f; a.sl = 0.f; }
        else {
            float c = expf(a.m - l);
            a.sl = c * (a.sl + a.s * (a.m - l));
            a.s = a.s * c + 1.f;
        }
        a.m = l; a.am = i;
    } else if (l > -INFINITY) {
        float e = expf(l - a.m);
        a.s += e; a.sl += e * (l - a.m);
    }
}

__global__ void __launch_bounds__(SAMP_THREADS)
sample_kernel(const float *lg, const float *lglo, int V,
              const kern_step *st, int *ids, float *lps, float *ents, float4 *scratch,
              unsigned *counters) {
    __shared__ smax s_red[SAMP_WARPS];
    __shared__ unsigned s_hist[256];
    __shared__ u64 s_mass[256];
    __shared__ u64 s_u64[SAMP_WARPS];
    __shared__ int s_int[SAMP_WARPS];
    __shared__ unsigned s_prefix;
    __shared__ int s_rem, s_id, s_last;
    __shared__ u64 s_above;
    const int o = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    pdl_launch();
    pdl_wait();
    const float *row = lg + (size_t)o * V;
    const float *lo = lglo ? lglo + (size_t)o * V : NULL;

    const int nb = gridDim.y, chunk = (V + nb - 1) / nb;
    const int c0 = min(V, (int)blockIdx.y * chunk), c1 = min(V, c0 + chunk);
    smax a = {-INFINITY, 0.f, 0.f, INT_MAX};
    for (int i = c0 + tid; i < c1; i += 4 * SAMP_THREADS) {
        float v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int j = i + u * SAMP_THREADS;
            v[u] = j < c1 ? logit_at(row, lo, j) : -INFINITY;
        }
#pragma unroll
        for (int u = 0; u < 4; u++) smax_add(a, v[u], i + u * SAMP_THREADS);
    }
    for (int off = 16; off > 0; off >>= 1) {
        smax b;
        b.m = __shfl_xor_sync(0xffffffffu, a.m, off);
        b.s = __shfl_xor_sync(0xffffffffu, a.s, off);
        b.sl = __shfl_xor_sync(0xffffffffu, a.sl, off);
        b.am = __shfl_xor_sync(0xffffffffu, a.am, off);
        a = smax_merge(a, b);
    }
    if (lane == 0) s_red[warp] = a;
    __syncthreads();
    if (tid == 0) {
        smax t = s_red[0];
        for (int w = 1; w < SAMP_WARPS; w++) t = smax_merge(t, s_red[w]);
        s_red[0] = t;
        if (nb > 1) {
            scratch[(size_t)o * nb + blockIdx.y] = make_float4(t.m, t.s, t.sl, __int_as_float(t.am));
            __threadfence();
            s_last = atomicAdd(&counters[o], 1u) == (unsigned)nb - 1;
        }
    }
    __syncthreads();
    if (nb > 1) {
        if (!s_last) return;
        if (tid == 0) {
            __threadfence();
            smax t = {-INFINITY, 0.f, 0.f, INT_MAX};
            for (int b = 0; b < nb; b++) {
                float4 p = __ldcg(&scratch[(size_t)o * nb + b]);
                smax q = {p.x, p.y, p.z, __float_as_int(p.w)};
                t = smax_merge(t, q);
            }
            s_red[0] = t;
            counters[o] = 0;
        }
        __syncthreads();
    }
    const smax tot = s_red[0];
    const float logz = tot.m + logf(tot.s);
    const float entropy = logf(tot.s) - tot.sl / tot.s;
    int id = (tot.am >= 0 && tot.am < V) ? tot.am : 0;

    const float temp = st->temp[o];
    const int forced = st->force ? st->force[o] : -1;
    if (forced >= 0 && forced < V) id = forced;   /* teacher forcing: its log-prob, no draw */
    else if (temp > 0.f) {
        const float inv_t = 1.0f / temp, m = tot.m;
        const int k = st->top_k[o];
        const float p = st->top_p[o];
        const bool use_k = k > 0 && k < V, use_p = p > 0.f && p < 1.f;
        unsigned tau_k = 0, tau_p = 0;
        int n_eq_keep = INT_MAX;
        if (use_k) { /* k-th largest key */
            unsigned prefix = 0, mask = 0;
            int rem = k;
            for (int shift = 24; shift >= 0; shift -= 8) {
                if (tid < 256) s_hist[tid] = 0;
                __syncthreads();
                for (int i = tid; i < V; i += SAMP_THREADS) {
                    unsigned kk = okey(logit_at(row, lo, i));
                    if ((kk & mask) == prefix) atomicAdd(&s_hist[(kk >> shift) & 255u], 1u);
                }
                __syncthreads();
                if (tid == 0) {
                    int cum = 0, b = 255;
                    for (; b > 0; b--) {
                        if (cum + (int)s_hist[b] >= rem) break;
                        cum += (int)s_hist[b];
                    }
                    s_rem = rem - cum;
                    s_prefix = prefix | ((unsigned)b << shift);
                }
                __syncthreads();
                rem = s_rem; prefix = s_prefix; mask |= 255u << shift;
            }
            tau_k = prefix; n_eq_keep = rem;
        }
        if (use_p) { /* largest key whose upper tail holds p of the kept mass */
            const u64 fw_tau = use_k ? fixw(okey_float(tau_k), m, inv_t) : 0;
            const u64 eq_mass = use_k ? (u64)n_eq_keep * fw_tau : 0;
            u64 local = 0, W;
            for (int i = tid; i < V; i += SAMP_THREADS) {
                float l = logit_at(row, lo, i);
                if (!use_k || okey(l) > tau_k) local += fixw(l, m, inv_t);
            }
            block_excl_scan<u64>(local, s_u64, &W);
            W += eq_mass;
            u64 target = (u64)ceil((double)p * (double)W);
            if (target < 1) target = 1;
            unsigned prefix = 0, mask = 0;
            u64 above = 0;
            for (int shift = 24; shift >= 0; shift -= 8) {
                if (tid < 256) s_mass[tid] = 0;
                __syncthreads();
                for (int i = tid; i < V; i += SAMP_THREADS) {
                    float l = logit_at(row, lo, i);
                    unsigned kk = okey(l);
                    if ((kk & mask) == prefix && (!use_k || kk > tau_k))
                        atomicAdd(&s_mass[(kk >> shift) & 255u], fixw(l, m, inv_t));
                }
                __syncthreads();
                if (tid == 0) {
                    if (use_k && (tau_k & mask) == prefix) s_mass[(tau_k >> shift) & 255u] += eq_mass;
                    int b = 255;
                    for (; b > 0; b--) {
                        if (above + s_mass[b] >= target) break;
                        above += s_mass[b];
                    }
                    s_above = above;
                    s_prefix = prefix | ((unsigned)b << shift);
                }
                __syncthreads();
                above = s_above; prefix = s_prefix; mask |= 255u << shift;
            }
            tau_p = prefix;
        }
        /* the draw: contiguous id segments, prefix sums across the block */
        const int seg = (V + SAMP_THREADS - 1) / SAMP_THREADS;
        const int b0 = min(V, tid * seg), b1 = min(V, b0 + seg);
        int eqc = 0, eq_total;
        if (use_k)
            for (int i = b0; i < b1; i++) eqc += okey(logit_at(row, lo, i)) == tau_k;
        const int eq_base = block_excl_scan<int>(eqc, s_int, &eq_total);
        u64 ms = 0, W2;
        int er = eq_base;
        for (int i = b0; i < b1; i++) {
            float l = logit_at(row, lo, i);
            if (kept_at(okey(l), use_k, tau_k, &er, n_eq_keep, use_p, tau_p)) ms += fixw(l, m, inv_t);
        }
        const u64 mbase = block_excl_scan<u64>(ms, s_u64, &W2);
        if (tid == 0) s_id = id;
        __syncthreads();
        u64 target = (u64)(st->u[o] * (double)W2);
        if (target >= W2) target = W2 ? W2 - 1 : 0;
        if (ms > 0 && mbase <= target && target < mbase + ms) {
            u64 cum = mbase;
            er = eq_base;
            for (int i = b0; i < b1; i++) {
                float l = logit_at(row, lo, i);
                if (kept_at(okey(l), use_k, tau_k, &er, n_eq_keep, use_p, tau_p)) {
                    cum += fixw(l, m, inv_t);
                    if (cum > target) { s_id = i; break; }
                }
            }
        }
        __syncthreads();
        id = s_id;
    }
    if (tid == 0) {
        ids[o] = id;
        lps[o] = logit_at(row, lo, id) - logz;
        ents[o] = entropy;
    }
}

extern "C" int kern_sample_blocks(int O, int n_sms) {
    int nb = 2 * n_sms / (O > 0 ? O : 1);
    return nb < 1 ? 1 : nb > 16 ? 16 : nb;
}

extern "C" int kern_sample(cudaStream_t s, const float *logits, const float *lo, int O, int V,
                           const kern_step *st, int *ids, float *logprob, float *entropy,
                           int blocks, float *scratch, unsigned *counters, int pdl) {
    if (O < 1 || V < 1 || blocks < 1 || (blocks > 1 && (!scratch || !counters)))
        return (int)cudaErrorInvalidValue;
    return (int)klaunch(sample_kernel, dim3(O, blocks), dim3(SAMP_THREADS), 0, s, pdl, logits, lo,
                        V, st, ids, logprob, entropy, (float4 *)scratch, counters);
}
