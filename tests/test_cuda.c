/* test_cuda.c — the CUDA backend (kernels/).  First each kernel against a
 * CPU reference in double precision, on fresh random inputs, with the output
 * poisoned (NaN bytes) before every run; then the whole backend against the
 * CPU backend and the transformers reference on tests/fixtures/tiny-qwen2,
 * tiny-llama, tiny-qwen3 (q/k norms, head_dim 16 over hidden 32) and
 * tiny-gemma3 (q/k norms, output norms, GeGLU, embedding and query scales,
 * sliding window 6 with its own RoPE base): logits, 64 greedy tokens per
 * prompt, batched, forked and continuously batched sequences, long
 * contexts (past the window), bad input.
 *
 * Tolerances (relative error ||a-b|| / ||b||):
 *   f32 kernels (GEMV, norms, RoPE, attention) ........ 1e-5
 *   cuBLASLt with hi/lo bf16 activations .............. 2e-5
 *   norm / attention written as hi/lo bf16 rows ........ 2e-5
 *   cuBLASLt with plain bf16 activations .............. 1e-2
 *   whole model, default settings, vs ref / CPU ....... 1e-4
 *   whole model, bf16 weights and activations ......... 1e-2 (vs ref)
 *   log-prob and entropy (absolute) ................... 1e-3
 *   bf16 KV pool: kernels vs a reference reading the
 *     pool's bf16 values .............................. as for f32
 *   RoPE's k written as bf16 .......................... 4e-3 (v: exact bf16 rounding)
 *   whole model, bf16 KV on both backends, vs CPU ..... 1e-3
 *   the same vs transformers .......................... 1e-2
 * Greedy tokens must be identical to the CPU backend's (with bf16 KV: to the
 * CPU backend's with bf16 KV).
 *
 * Built without CUDA, or run where no GPU is visible, it skips. */
#include "t.h"

#ifndef BRISK_CUDA
static void test_cuda_backend(void) {
    T_SKIP("built without CUDA (make CUDA=1 builds the CUDA backend; it runs on a GPU machine)");
}
int main(void) {
    T_RUN(test_cuda_backend);
    T_DONE();
}
#else
#include <stdint.h>
#include <unistd.h>
#include <cJSON.h>
#include <cuda_runtime_api.h>
#include "kern.h"
#include "mkgguf.h"
#include "quant_block.h"
#include "drafter.h"

/* ------------------------------------------------------------ helpers */
static uint64_t g_rng = 0x243F6A8885A308D3ull;   /* reseeded by each test */

static uint64_t rnd64(void) { return eng_rng_next(&g_rng); }
static double urand(void) { return eng_rng_uniform(&g_rng); }
static float nrand(void) {
    double u1 = urand() + 1e-300, u2 = urand();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
static float bf16_val(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Device allocations of the current test, freed by dfree_all. */
static void *g_dev[256];
static int g_ndev;

static void *dnew(size_t bytes) {
    void *p = NULL;
    if (g_ndev == 256 || cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess) return NULL;
    g_dev[g_ndev++] = p;
    cudaMemset(p, 0xFF, bytes);   /* NaN for floats */
    return p;
}
static void *dup_up(const void *h, size_t bytes) {
    void *d = dnew(bytes);
    if (d && cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice) != cudaSuccess) return NULL;
    return d;
}
/* Frees the allocations made since g_ndev was mark (a helper called many
 * times in one test keeps the table from filling). */
static void dfree_to(int mark) {
    while (g_ndev > mark) cudaFree(g_dev[--g_ndev]);
}
static void dfree_all(void) { dfree_to(0); }
static int down(void *h, const void *d, size_t bytes) {
    return cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost) == cudaSuccess;
}
static int sync_ok(void) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) printf("  CUDA error: %s\n", cudaGetErrorString(e));
    return e == cudaSuccess;
}

/* ||a - ref|| / ||ref||; infinity if a has a NaN (an unwritten output). */
static double rel_err(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double rel_err_f(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* KV pools of the kernel cases in element type dt (KERN_F32 or KERN_BF16):
 * kv_round makes host values what the pool will hold (bf16-rounded), so
 * references computed from them see the kernel's inputs exactly; kv_upload
 * copies n values up in dt; kv_down brings n back as floats. */
static const char *dt_name(int dt) { return dt == KERN_BF16 ? "bf16 KV" : "f32 KV"; }
static void kv_round(float *kv, size_t n, int dt) {
    if (dt == KERN_BF16)
        for (size_t i = 0; i < n; i++) kv[i] = bf16_val(kern_f32_to_bf16(kv[i]));
}
static void *kv_upload(const float *kv, size_t n, int dt) {
    if (dt != KERN_BF16) return dup_up(kv, n * 4);
    uint16_t *b = malloc(n * 2);
    if (!b) return NULL;
    for (size_t i = 0; i < n; i++) b[i] = kern_f32_to_bf16(kv[i]);
    void *d = dup_up(b, n * 2);
    free(b);
    return d;
}
static int kv_down(float *h, const void *d, size_t n, int dt) {
    if (dt != KERN_BF16) return down(h, d, n * 4);
    uint16_t *b = malloc(n * 2);
    int ok = b && down(b, d, n * 2);
    for (size_t i = 0; ok && i < n; i++) h[i] = bf16_val(b[i]);
    free(b);
    return ok;
}

/* A kern_step in device memory holding the given arrays. */
static kern_step *make_step(int R, const int *tokens, const int *pos, const int *row_seq,
                            const int *table, int n_seqs, int stride, int O, const int *out_rows,
                            const float *temp, const int *top_k, const float *top_p,
                            const double *u) {
    kern_step h;
    memset(&h, 0, sizeof h);
    h.n_rows = R; h.n_out = O; h.table_stride = stride;
    if (tokens) h.tokens = dup_up(tokens, 4 * (size_t)R);
    if (pos) h.pos = dup_up(pos, 4 * (size_t)R);
    if (row_seq) h.row_seq = dup_up(row_seq, 4 * (size_t)R);
    if (table) h.table = dup_up(table, 4 * (size_t)n_seqs * stride);
    if (out_rows) h.out_rows = dup_up(out_rows, 4 * (size_t)O);
    if (temp) h.temp = dup_up(temp, 4 * (size_t)O);
    if (top_k) h.top_k = dup_up(top_k, 4 * (size_t)O);
    if (top_p) h.top_p = dup_up(top_p, 4 * (size_t)O);
    if (u) h.u = dup_up(u, 8 * (size_t)O);
    return dup_up(&h, sizeof h);
}

/* ------------------------------------------------------------- GEMV */
static double silu(double g) { return g / (1.0 + exp(-g)); }
static double gelu_tanh_ref(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* Random GEMV inputs x [R][K], norm weight [K] and residual y0 [R][N]. */
static void gemv_inputs(float *x, float *nwt, float *y0, int R, int N, int K) {
    for (size_t i = 0; i < (size_t)R * K; i++) x[i] = nrand();
    for (int k = 0; k < K; k++) nwt[k] = 1.0f + 0.1f * nrand();
    for (size_t i = 0; i < (size_t)R * N; i++) y0[i] = nrand();
}

/* What kern_gemv's mode computes from W [N][K] (f32), in double: ref gets
 * [R][N] (STORE, and RESID's added part) or [R][N/2] (GLU); xh is scratch
 * of R*K. */
/* 1: gemv_ref rounds its input as ENG_ACT_Q16 (kern_qw.q16) does: x *
 * norm weight in f32, each 16 elements to dx (q1 + q2 / 254) (eng.h), then
 * the RMS factor. */
static int g_ref_q16;
/* 1: gemv_ref rounds its input as ENG_ACT_BF16 (KERN_GEMV_IN_BF16) does:
 * (x * 1/rms) * norm weight in f32, then to bf16 */
static int g_ref_bf16;

static void gemv_ref(const float *W, int N, int K, const float *x, const float *nwt, int R,
                     int mode, int use_norm, double *xh, double *ref) {
    for (int r = 0; r < R; r++) {
        double ss = 0;
        for (int k = 0; k < K; k++) ss += (double)x[r * K + k] * x[r * K + k];
        double rs = use_norm ? 1.0 / sqrt(ss / K + 1e-6) : 1.0;
        for (int k = 0; k < K; k++) xh[r * K + k] = x[r * K + k] * rs * (use_norm ? nwt[k] : 1.0);
        for (int k = 0; g_ref_bf16 && k < K; k++) {
            const float v = use_norm ? (x[r * K + k] * (float)rs) * nwt[k] : x[r * K + k];
            xh[r * K + k] = bf16_val(kern_f32_to_bf16(v));
        }
        for (int k0 = 0; g_ref_q16 && k0 < K; k0 += 16) {
            float v[16], amax = 0.f;
            for (int k = 0; k < 16; k++) {
                v[k] = use_norm ? x[r * K + k0 + k] * nwt[k0 + k] : x[r * K + k0 + k];
                amax = fmaxf(amax, fabsf(v[k]));
            }
            for (int k = 0; k < 16; k++) xh[r * K + k0 + k] = (double)eng_qb_act_q16_value(v[k], amax) * rs;
        }
    }
    const int glu = mode == KERN_SWIGLU || mode == KERN_GEGLU;
    int n_out = glu ? N / 2 : N;
    for (int r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {   /* for a GLU: gate | up, combined below */
            double s = 0;
            for (int k = 0; k < K; k++) s += W[(size_t)n * K + k] * xh[r * K + k];
            ref[(size_t)r * N + n] = s;
        }
    if (glu)
        for (int r = 0; r < R; r++)
            for (int i = 0; i < n_out; i++) {
                double g = ref[(size_t)r * N + i];
                ref[(size_t)r * n_out + i] = (mode == KERN_GEGLU ? gelu_tanh_ref(g) : silu(g)) *
                                             ref[(size_t)r * N + n_out + i];
                /* ENG_ACT_BF16: the GLU's output is the next product's input, rounded */
                if (g_ref_bf16)
                    ref[(size_t)r * n_out + i] = bf16_val(kern_f32_to_bf16((float)ref[(size_t)r * n_out + i]));
            }
}

/* One GEMV case; returns the relative error (inf on a device error).
 * wdt may carry KERN_GEMV_IN_BF16: then against the product of the input
 * rounded as gemv_ref's g_ref_bf16 says, and *plain gets the error
 * against the unrounded one. */
static double gemv_case_rb(int wdt, int R, int mode, int use_norm, int N, int K, int n_sms, double *plain);
static double gemv_case(int wdt, int R, int mode, int use_norm, int N, int K, int n_sms) {
    return gemv_case_rb(wdt, R, mode, use_norm, N, K, n_sms, NULL);
}
static double gemv_case_rb(int wdt, int R, int mode, int use_norm, int N, int K, int n_sms, double *plain) {
    const int rb = wdt & KERN_GEMV_IN_BF16;
    wdt &= ~KERN_GEMV_IN_BF16;
    size_t nw = (size_t)N * K;
    float *W = malloc(nw * 4), *x = malloc((size_t)R * K * 4), *nwt = malloc((size_t)K * 4);
    float *y0 = malloc((size_t)R * N * 4), *out = malloc((size_t)R * N * 4);
    uint16_t *Wb = malloc(nw * 2);
    double *ref = malloc((size_t)R * N * 8), *xh = malloc((size_t)R * K * 8);
    double err = INFINITY;
    const int glu = mode == KERN_SWIGLU || mode == KERN_GEGLU, n_out = glu ? N / 2 : N;
    if (!W || !x || !nwt || !y0 || !out || !Wb || !ref || !xh) goto done;
    for (size_t i = 0; i < nw; i++) {
        W[i] = nrand() / sqrtf((float)K);
        Wb[i] = kern_f32_to_bf16(W[i]);
        if (wdt == KERN_BF16) W[i] = bf16_val(Wb[i]);
    }
    gemv_inputs(x, nwt, y0, R, N, K);
    if (plain) gemv_ref(W, N, K, x, nwt, R, mode, use_norm, xh, ref);
    double *ref0 = plain ? malloc((size_t)R * N * 8) : NULL;
    if (ref0) memcpy(ref0, ref, (size_t)R * N * 8);
    g_ref_bf16 = rb;
    gemv_ref(W, N, K, x, nwt, R, mode, use_norm, xh, ref);
    g_ref_bf16 = 0;
    void *dW = wdt == KERN_BF16 ? dup_up(Wb, nw * 2) : dup_up(W, nw * 4);
    float *dx = dup_up(x, (size_t)R * K * 4), *dn = dup_up(nwt, (size_t)K * 4);
    float *dy = mode == KERN_RESID ? dup_up(y0, (size_t)R * N * 4) : dnew((size_t)R * n_out * 4);
    if (!dW || !dx || !dn || !dy || (plain && !ref0)) { free(ref0); goto done; }
    int e = kern_gemv(0, dW, wdt | rb, N, K, dx, R, use_norm ? dn : NULL, 1e-6f, mode, dy, n_sms, n_sms > 1);
    if (e || !sync_ok() || !down(out, dy, (size_t)R * n_out * 4)) { free(ref0); goto done; }
    if (mode == KERN_RESID)
        for (size_t i = 0; i < (size_t)R * N; i++) out[i] -= y0[i];
    err = rel_err(out, ref, (size_t)R * n_out);
    if (plain) *plain = rel_err(out, ref0, (size_t)R * n_out);
    free(ref0);
done:
    free(W); free(x); free(nwt); free(y0); free(out); free(Wb); free(ref); free(xh);
    dfree_all();
    return err;
}

static void test_gemv(void) {
    g_rng = 101;
    static const char *mname[] = {"store", "resid", "swiglu", "rope", "geglu"};
    int sms[3] = {1, 40, 132};
    int rows[3] = {1, 3, 8};
    const int modes[4] = {KERN_STORE, KERN_RESID, KERN_SWIGLU, KERN_GEGLU};
    for (int wdt = 0; wdt < 2; wdt++)
        for (int ri = 0; ri < 3; ri++)
            for (int mi = 0; mi < 4; mi++)
                for (int s = 0; s < 3; s++) {
                    int R = rows[ri], mode = modes[mi], norm = mode != KERN_RESID && s != 1;
                    double e = gemv_case(wdt, R, mode, norm, 1000, 520, sms[s]);
                    T_CHECKF(e <= 1e-5, "%s R=%d %s norm=%d sms=%d: rel err %.3g",
                             wdt ? "bf16" : "f32", R, mname[mode], norm, sms[s], e);
                }
    /* a real shape: Qwen2.5-1.5B's q|k|v, and an odd row count */
    double e = gemv_case(KERN_BF16, 1, KERN_STORE, 1, 2048, 1536, 132);
    T_CHECKF(e <= 1e-5, "2048x1536: rel err %.3g", e);
    e = gemv_case(KERN_BF16, 5, KERN_STORE, 0, 1027, 64, 132);
    T_CHECKF(e <= 1e-5, "1027x64: rel err %.3g", e);
    /* long rows (K split over 8 warps), in one round and in many */
    e = gemv_case(KERN_BF16, 2, KERN_RESID, 0, 1536, 8960, 40);
    T_CHECKF(e <= 1e-5, "1536x8960 R=2: rel err %.3g", e);
    e = gemv_case(KERN_BF16, 4, KERN_SWIGLU, 1, 1000, 4864, 1);
    T_CHECKF(e <= 1e-5, "1000x4864 R=4 swiglu, 1 SM: rel err %.3g", e);
    e = gemv_case(KERN_BF16, 3, KERN_GEGLU, 1, 2 * 2048, 640, 132);   /* Gemma 3 270M's gate|up */
    T_CHECKF(e <= 1e-5, "4096x640 R=3 geglu: rel err %.3g", e);
    T_CHECK(kern_gemv(0, NULL, KERN_BF16, 10, 12, NULL, 1, NULL, 0, 0, NULL, 1, 0) != 0);
    T_CHECK(kern_gemv(0, NULL, KERN_BF16, 10, 16, NULL, 9, NULL, 0, 0, NULL, 1, 0) != 0);
    /* inputs rounded to bf16 (KERN_GEMV_IN_BF16, ENG_ACT_BF16), 1-4 rows,
     * every mode, against the product of the rounded input (and a GLU's
     * output rounded): exact rounding without a norm or GLU (1e-5); with
     * one, the kernel's 1/rms (or f32 GLU output) and the reference's may
     * differ by a rounding, which can move an element across a bf16 edge
     * (one such: up to 2.6e-4 here), so 5e-4; the unrounded product is
     * ~1.7e-3 away, held above 1e-3 (the rounding happens) */
    for (int R = 1; R <= 4; R++)
        for (int mi = 0; mi < 4; mi++)
            for (int norm = 0; norm < 2; norm++) {
                const int mode = modes[mi];
                double un = 0;
                e = gemv_case_rb(KERN_BF16 | KERN_GEMV_IN_BF16, R, mode, norm, 1000, R == 4 ? 4864 : 520,
                                 R == 2 ? 40 : 132, &un);
                const int glu = mode == KERN_SWIGLU || mode == KERN_GEGLU;
                T_CHECKF(e <= (norm || glu ? 5e-4 : 1e-5) && un > 1e-3, "bf16 inputs R=%d %s norm=%d: rel err %.3g "
                         "(%.3g against the unrounded input)", R, mname[mode], norm, e, un);
            }
    T_CHECK(kern_gemv(0, NULL, KERN_F32 | KERN_GEMV_IN_BF16, 10, 16, NULL, 1, NULL, 0, 0, NULL, 1, 0) != 0);
    T_CHECK(kern_gemv(0, NULL, KERN_BF16 | KERN_GEMV_IN_BF16, 10, 16, NULL, 5, NULL, 0, 0, NULL, 1, 0) != 0);
}

/* ------------------------------------------------- quantized GEMV */
static const int qtypes[8] = {ENG_DT_Q8_0, ENG_DT_Q4_0, ENG_DT_Q4_1, ENG_DT_Q5_0,
                              ENG_DT_Q5_1, ENG_DT_Q4_K, ENG_DT_Q5_K, ENG_DT_Q6_K};

/* A quantized weight of n_seg segments (types[i], rows[i] rows of K):
 * random blocks (mkgguf: weights of sigma ~ 1/sqrt(K)) uploaded into *qw;
 * W [sum rows][K] gets them dequantized by the engine (engine/quant.c, the
 * CPU reference's own weights).  0 on failure. */
static int qweight(int n_seg, const int *types, const int *rows, int K, kern_qw *qw, float *W) {
    memset(qw, 0, sizeof *qw);
    int end = 0;
    for (int i = 0; i < n_seg; i++) {
        const int be = eng_dt_block(types[i]), bb = eng_dt_block_bytes(types[i]);
        const size_t nb = (size_t)rows[i] * (K / be), bytes = nb * bb;
        uint8_t *h = malloc(bytes);
        if (!h || mkg_random_blocks(types[i], h, nb, 1.0f / sqrtf((float)K), &g_rng)) {
            free(h);
            return 0;
        }
        eng_tensor t;
        memset(&t, 0, sizeof t);
        t.dtype = types[i];
        t.ndim = 1;
        t.shape[0] = (int64_t)nb * be;
        t.data = h;
        t.nbytes = bytes;
        eng_to_f32(&t, W + (size_t)end * K);
        /* the kernels' layout (kern_qpack_row) */
        const size_t db = kern_qrow_bytes(types[i], K);
        uint8_t *p = db ? malloc(db * rows[i]) : NULL;
        for (int r = 0; p && r < rows[i]; r++)
            kern_qpack_row(types[i], h + (size_t)r * (K / be) * bb, K, p + (size_t)r * db);
        void *d = p ? dup_up(p, db * rows[i]) : NULL;
        free(h);
        free(p);
        if (!d) return 0;
        end += rows[i];
        qw->w[i] = d;
        qw->type[i] = types[i];
        qw->end[i] = end;
        qw->row_bytes[i] = (int)db;
    }
    qw->n_seg = n_seg;
    return 1;
}

/* kern_qgemv on a weight of segments (types[i], rows[i]) against the double
 * product of the dequantized weights; the relative error (inf on a device
 * error).  q16: with kern_qw.q16, against the product of the rounded input
 * (g_ref_q16), and *plain gets the error against the unrounded one. */
static double qgemv_case_q16(int n_seg, const int *types, const int *rows, int R, int mode,
                             int use_norm, int K, int n_sms, int q16, double *plain);
static double qgemv_case(int n_seg, const int *types, const int *rows, int R, int mode,
                         int use_norm, int K, int n_sms);
static double qgemv_case(int n_seg, const int *types, const int *rows, int R, int mode,
                         int use_norm, int K, int n_sms) {
    return qgemv_case_q16(n_seg, types, rows, R, mode, use_norm, K, n_sms, 0, NULL);
}

static double qgemv_case_q16(int n_seg, const int *types, const int *rows, int R, int mode,
                             int use_norm, int K, int n_sms, int q16, double *plain) {
    int N = 0;
    for (int i = 0; i < n_seg; i++) N += rows[i];
    const int glu = mode == KERN_SWIGLU || mode == KERN_GEGLU, n_out = glu ? N / 2 : N;
    float *W = malloc((size_t)N * K * 4), *x = malloc((size_t)R * K * 4), *nwt = malloc((size_t)K * 4);
    float *y0 = malloc((size_t)R * N * 4), *out = malloc((size_t)R * N * 4);
    double *ref = malloc((size_t)R * N * 8), *xh = malloc((size_t)R * K * 8);
    double err = INFINITY;
    kern_qw qw;
    if (!W || !x || !nwt || !y0 || !out || !ref || !xh || !qweight(n_seg, types, rows, K, &qw, W))
        goto done;
    gemv_inputs(x, nwt, y0, R, N, K);
    g_ref_q16 = q16;
    gemv_ref(W, N, K, x, nwt, R, mode, use_norm, xh, ref);
    g_ref_q16 = 0;
    qw.q16 = q16;
    float *dx = dup_up(x, (size_t)R * K * 4), *dn = dup_up(nwt, (size_t)K * 4);
    float *dy = mode == KERN_RESID ? dup_up(y0, (size_t)R * N * 4) : dnew((size_t)R * n_out * 4);
    if (!dx || !dn || !dy) goto done;
    int e = kern_qgemv(0, &qw, N, K, dx, R, use_norm ? dn : NULL, 1e-6f, mode, dy, n_sms, n_sms > 1);
    if (e || !sync_ok() || !down(out, dy, (size_t)R * n_out * 4)) goto done;
    if (mode == KERN_RESID)
        for (size_t i = 0; i < (size_t)R * N; i++) out[i] -= y0[i];
    err = rel_err(out, ref, (size_t)R * n_out);
    if (plain) {
        gemv_ref(W, N, K, x, nwt, R, mode, use_norm, xh, ref);
        *plain = rel_err(out, ref, (size_t)R * n_out);
    }
done:
    free(W); free(x); free(nwt); free(y0); free(out); free(ref); free(xh);
    dfree_all();
    return err;
}

/* Every block type at 1..8 rows in every mode, against the double product
 * of the engine's dequantized weights: tolerance 1e-5 relative, as for the
 * f32 GEMV (the kernel factors each 8 elements' scale out of their sum,
 * a * sum(q x) + b * sum(x): the f32 rounding of a * q + b and the
 * summation order differ, ~1e-7).  Then mixed segments (Gemma 3 270M's q|k|v:
 * Q5_0, Q5_0, Q8_0; gate Q4_K | up Q6_K), long rows (8 warps per unit) and
 * refused shapes. */
static void test_qgemv(void) {
    g_rng = 707;
    static const char *mname[] = {"store", "resid", "swiglu", "rope", "geglu"};
    const int modes[4] = {KERN_STORE, KERN_RESID, KERN_SWIGLU, KERN_GEGLU}, sms[3] = {1, 40, 132};
    for (int t = 0; t < 8; t++)
        for (int R = 1; R <= 8; R++)
            for (int mi = 0; mi < 4; mi++) {
                const int mode = modes[mi], norm = mode != KERN_RESID && R % 2, rows = 260;
                double e = qgemv_case(1, &qtypes[t], &rows, R, mode, norm, 512, sms[(R + mi) % 3]);
                T_CHECKF(e <= 1e-5, "%s R=%d %s norm=%d: rel err %.3g", eng_dt_name(qtypes[t]), R,
                         mname[mode], norm, e);
            }
    const int gemma_t[3] = {ENG_DT_Q5_0, ENG_DT_Q5_0, ENG_DT_Q8_0}, gemma_r[3] = {1024, 256, 256};
    for (int R = 1; R <= 8; R += 3) {
        double e = qgemv_case(3, gemma_t, gemma_r, R, KERN_STORE, 1, 640, 132);
        T_CHECKF(e <= 1e-5, "q|k|v Q5_0/Q5_0/Q8_0 R=%d: rel err %.3g", R, e);
    }
    const int gu_t[2] = {ENG_DT_Q4_K, ENG_DT_Q6_K}, gu_r[2] = {512, 512};
    double e = qgemv_case(2, gu_t, gu_r, 4, KERN_SWIGLU, 1, 1536, 132);
    T_CHECKF(e <= 1e-5, "gate Q4_K | up Q6_K: rel err %.3g", e);
    e = qgemv_case(2, gu_t, gu_r, 2, KERN_GEGLU, 0, 1536, 7);
    T_CHECKF(e <= 1e-5, "gate Q4_K | up Q6_K geglu: rel err %.3g", e);
    const int long_r = 1536;
    for (int t = 5; t < 8; t++) {
        e = qgemv_case(1, &qtypes[t], &long_r, 2, KERN_RESID, 0, 8960, 132);
        T_CHECKF(e <= 1e-5, "%s 1536x8960: rel err %.3g", eng_dt_name(qtypes[t]), e);
    }
    e = qgemv_case(1, &qtypes[0], &long_r, 1, KERN_STORE, 1, 4864, 1);
    T_CHECKF(e <= 1e-5, "Q8_0 1536x4864 on 1 SM: rel err %.3g", e);
    /* one input row (qgemv1_kernel): long rows, segments of two types (a
     * gate Q4_K | up Q6_K unit mixes them and goes to the 2-8 row kernel;
     * Q8_0 | Q5_K units do not), the 7B down shape (activations staged in
     * over 48 KB of shared memory) */
    for (int t = 5; t < 8; t++) {
        e = qgemv_case(1, &qtypes[t], &long_r, 1, KERN_RESID, 0, 8960, 132);
        T_CHECKF(e <= 1e-5, "%s 1536x8960 R=1: rel err %.3g", eng_dt_name(qtypes[t]), e);
    }
    e = qgemv_case(2, gu_t, gu_r, 1, KERN_SWIGLU, 1, 1536, 132);
    T_CHECKF(e <= 1e-5, "gate Q4_K | up Q6_K R=1: rel err %.3g", e);
    const int k8_t[2] = {ENG_DT_Q8_0, ENG_DT_Q5_K}, k8_r[2] = {36, 60};
    e = qgemv_case(2, k8_t, k8_r, 1, KERN_STORE, 1, 2048, 3);
    T_CHECKF(e <= 1e-5, "Q8_0 | Q5_K R=1 on 3 SMs: rel err %.3g", e);
    const int down_r = 64;
    for (int t = 5; t < 8; t += 2) {
        e = qgemv_case(1, &qtypes[t], &down_r, 1, KERN_RESID, 0, 18944, 132);
        T_CHECKF(e <= 1e-5, "%s 64x18944 R=1: rel err %.3g", eng_dt_name(qtypes[t]), e);
    }
    e = qgemv_case(1, &qtypes[0], &down_r, 1, KERN_STORE, 1, 18944, 132);
    T_CHECKF(e <= 1e-5, "Q8_0 64x18944 R=1: rel err %.3g", e);
    /* ENG_ACT_Q16 (kern_qw.q16): 1 and 2 rows, each input row rounded per 16
     * elements while staged and summed in integers against the blocks;
     * against the double product of the same rounded input, as close as the
     * f32 kernel to its own (2e-6), and 3e-6 to 1e-4 from the unrounded
     * product (the rounding happened, and its second plane counts: without
     * it ~5e-3).  Three rows, or a gate | up of two types, are refused. */
    for (int t = 0; t < 8; t++)
        for (int R = 1; R <= 2; R++)
            for (int mi = 0; mi < 4; mi++) {
                const int mode = modes[mi], norm = mode != KERN_RESID, rows = 260;
                double un = 0;
                e = qgemv_case_q16(1, &qtypes[t], &rows, R, mode, norm, 512, sms[(R + mi) % 3], 1, &un);
                T_CHECKF(e <= 2e-6 && un > 3e-6 && un < 1e-4, "q16 %s R=%d %s norm=%d: rel err %.3g "
                         "(%.3g unrounded)", eng_dt_name(qtypes[t]), R, mname[mode], norm, e, un);
            }
    for (int t = 5; t < 8; t++)
        for (int R = 1; R <= 2; R++) {
            double un = 0;
            e = qgemv_case_q16(1, &qtypes[t], &down_r, R, KERN_RESID, 0, 18944, 132, 1, &un);
            T_CHECKF(e <= 2e-6 && un > 3e-6 && un < 1e-4, "q16 %s 64x18944 R=%d: rel err %.3g (%.3g "
                     "unrounded)", eng_dt_name(qtypes[t]), R, e, un);
        }
    e = qgemv_case_q16(1, &qtypes[5], &down_r, 3, KERN_RESID, 0, 18944, 132, 1, NULL);
    T_CHECKF(isinf(e), "q16 64x18944 at three rows: not refused (rel err %.3g)", e);
    {
        const int qkv_t[3] = {ENG_DT_Q4_K, ENG_DT_Q4_K, ENG_DT_Q6_K}, qkv_r[3] = {1536, 256, 256};
        double un = 0;
        e = qgemv_case_q16(3, qkv_t, qkv_r, 1, KERN_STORE, 1, 1536, 132, 1, &un);
        T_CHECKF(e <= 2e-6 && un > 3e-6 && un < 1e-4, "q16 q|k|v Q4_K/Q4_K/Q6_K: rel err %.3g (%.3g "
                 "unrounded)", e, un);
        const int r8 = 260;
        e = qgemv_case_q16(1, &qtypes[5], &r8, 3, KERN_STORE, 1, 512, 132, 1, NULL);
        T_CHECKF(isinf(e), "q16 at three rows: not refused (rel err %.3g)", e);
        e = qgemv_case_q16(2, gu_t, gu_r, 1, KERN_SWIGLU, 1, 1536, 132, 1, NULL);
        T_CHECKF(isinf(e), "q16 gate Q4_K | up Q6_K: not refused (rel err %.3g)", e);
    }
    /* refused: K not whole blocks, more than 8 rows, segments not covering N */
    kern_qw bad;
    memset(&bad, 0, sizeof bad);
    bad.n_seg = 1; bad.type[0] = ENG_DT_Q4_K; bad.end[0] = 16; bad.row_bytes[0] = 144;
    bad.w[0] = (void *)(uintptr_t)4096;
    T_CHECK(kern_qgemv(0, &bad, 16, 288, NULL, 1, NULL, 0, KERN_STORE, NULL, 1, 0) != 0);
    T_CHECK(kern_qgemv(0, &bad, 16, 256, NULL, 9, NULL, 0, KERN_STORE, NULL, 1, 0) != 0);
    T_CHECK(kern_qgemv(0, &bad, 17, 256, NULL, 1, NULL, 0, KERN_STORE, NULL, 1, 0) != 0);
    T_CHECK(kern_qgemv(0, &bad, 16, 256, NULL, 1, NULL, 0, KERN_ROPE, NULL, 1, 0) != 0);
    bad.type[0] = ENG_DT_F32;
    T_CHECK(kern_qgemv(0, &bad, 16, 256, NULL, 1, NULL, 0, KERN_STORE, NULL, 1, 0) != 0);
}

/* ---------------------------------------------------- cuBLASLt + to_act */
/* One product with activations of one part (amode: bf16 or f32) into dy;
 * its relative error against ref (INFINITY when a call fails). */
static double plain_gemm(kern_blas *bl, const void *dW, int wdt, int amode, const float *dx,
                         void *act, int N, int K, int R, float *dy, float *out, const double *ref) {
    eng_err err = {0};
    cudaMemset(dy, 0xFF, (size_t)R * N * 4);
    if (kern_to_act(0, dx, R, K, act, amode, 0) ||
        kern_blas_gemm(bl, 0, dW, wdt, N, K, act, amode == KERN_ACT_BF16, R, dy, &err)) {
        T_CHECKF(0, "product: %s", err.msg);
        return INFINITY;
    }
    return sync_ok() && down(out, dy, (size_t)R * N * 4) ? rel_err(out, ref, (size_t)R * N) : INFINITY;
}

static void test_gemm(void) {
    g_rng = 202;
    const int N = 768, K = 1024, R = 40;
    eng_err err = {0};
    kern_blas *bl = NULL;
    if (kern_blas_create(&bl, &err)) { T_CHECKF(0, "%s", err.msg); return; }
    float *W = malloc((size_t)N * K * 4), *x = malloc((size_t)R * K * 4);
    uint16_t *Wb = malloc((size_t)N * K * 2);
    double *ref = malloc((size_t)R * N * 8), *refb = malloc((size_t)R * N * 8);
    float *out = malloc((size_t)R * N * 4);
    if (!W || !x || !Wb || !ref || !refb || !out) { T_CHECK(0); goto done; }
    for (size_t i = 0; i < (size_t)N * K; i++) {
        W[i] = nrand() / 32.0f;
        Wb[i] = kern_f32_to_bf16(W[i]);
    }
    for (size_t i = 0; i < (size_t)R * K; i++) x[i] = nrand();
    for (int r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {
            double s = 0, sb = 0;
            for (int k = 0; k < K; k++) {
                s += (double)W[(size_t)n * K + k] * x[r * K + k];
                sb += (double)bf16_val(Wb[(size_t)n * K + k]) * x[r * K + k];
            }
            ref[(size_t)r * N + n] = s;
            refb[(size_t)r * N + n] = sb;
        }
    float *dx = dup_up(x, (size_t)R * K * 4), *dy = dnew(2 * (size_t)R * N * 4);
    void *dWb = dup_up(Wb, (size_t)N * K * 2), *dW = dup_up(W, (size_t)N * K * 4);
    void *act = dnew((size_t)R * K * 4);
    if (!dx || !dy || !dWb || !dW || !act) { T_CHECK(0); goto done; }
    /* hi/lo split: 2R rows through one product, summed on the device */
    T_CHECK(kern_to_act(0, dx, R, K, act, KERN_ACT_SPLIT, 1) == 0);
    int rc = kern_blas_gemm(bl, 0, dWb, KERN_BF16, N, K, act, 1, 2 * R, dy, &err);
    T_CHECKF(rc == 0, "%s", err.msg);
    T_CHECK(kern_add_rows(0, dy, dy + (size_t)R * N, (size_t)R * N, 1) == 0);
    double e = sync_ok() && down(out, dy, (size_t)R * N * 4) ? rel_err(out, refb, (size_t)R * N) : INFINITY;
    T_CHECKF(e <= 2e-5, "bf16 weights, hi/lo activations: rel err %.3g", e);
    /* the same in 4 K slices: 8 parts (slice s's high and low rows at 2s,
     * 2s + 1), added in order by add+norm (one row of R N, no norm) */
    float *dy4 = dnew((size_t)8 * R * N * 4);
    T_CHECK(dy4 != NULL);
    rc = dy4 ? kern_blas_gemm_sliced(bl, 0, dWb, KERN_BF16, N, K, act, 1, 2 * R, 4, dy4, &err) : -1;
    T_CHECKF(rc == 0, "sliced: %s", err.msg);
    T_CHECK(dy4 && kern_add_norm(0, dy4, dy4 + (size_t)R * N, 7, 1, R * N, NULL, NULL, 0.f, NULL, 0, 1) == 0);
    e = dy4 && sync_ok() && down(out, dy4, (size_t)R * N * 4) ? rel_err(out, refb, (size_t)R * N) : INFINITY;
    T_CHECKF(e <= 2e-5, "bf16, hi/lo, 4 K slices: rel err %.3g", e);
    T_CHECK(kern_blas_gemm_sliced(bl, 0, dWb, KERN_BF16, N, K, act, 1, 2 * R, 3, dy4, &err) == ENG_EINVAL);
    T_CHECK(kern_blas_splits(bl, KERN_BF16, N, K, 1, 2 * R, &err) >= 1);
    e = plain_gemm(bl, dWb, KERN_BF16, KERN_ACT_BF16, dx, act, N, K, R, dy, out, refb);
    T_CHECKF(e <= 1e-2, "bf16 weights and activations: rel err %.3g", e);
    e = plain_gemm(bl, dW, KERN_F32, KERN_ACT_F32, dx, act, N, K, R, dy, out, ref);
    T_CHECKF(e <= 1e-5, "f32: rel err %.3g", e);
    T_CHECK(kern_blas_gemm(bl, 0, dW, KERN_F32, N, K, act, 1, R, dy, &err) == ENG_EINVAL);
done:
    free(W); free(x); free(Wb); free(ref); free(refb); free(out);
    kern_blas_destroy(bl);
    dfree_all();
}

/* ------------------------------------------------------- kern_skinny */
/* A tensor-core product of weights W [N][K] (as floats, exactly what the
 * kernel multiplies) with R random rows split into bf16 high and low parts:
 * prod(ctx, act, parts, dy) launches it into parts partial products, which
 * are added in order and compared with the double product of W and high +
 * low; the relative error (inf on a device error, or when the kernel wrote
 * past its parts). */
typedef int (*tc_prod)(const void *ctx, const void *act, int parts, float *dy);
/* halves 0: the rows rounded to bf16 alone (KERN_ACT_BF16), the reference
 * the double product of W and those */
static double split_case_h(const float *W, int N, int K, int R, int parts, tc_prod prod, const void *ctx,
                           int halves) {
    float *x = malloc((size_t)R * K * 4), *out = malloc((size_t)R * N * 4);
    uint16_t *ab = malloc((size_t)2 * R * K * 2);
    double *ref = malloc((size_t)R * N * 8), e = INFINITY;
    uint32_t tail[16];
    if (!x || !out || !ab || !ref) goto done;
    for (size_t i = 0; i < (size_t)R * K; i++) x[i] = nrand();
    float *dx = dup_up(x, (size_t)R * K * 4), *dy = dnew((size_t)parts * R * N * 4 + 64);
    void *act = dnew((size_t)2 * R * K * 2);
    if (!dx || !dy || !act) goto done;
    if (kern_to_act(0, dx, R, K, act, halves ? KERN_ACT_SPLIT : KERN_ACT_BF16, 0) || !sync_ok() ||
        !down(ab, act, (size_t)(halves ? 2 : 1) * R * K * 2))
        goto done;
    for (int r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)W[(size_t)n * K + k] *
                     ((double)bf16_val(ab[(size_t)r * K + k]) + (halves ? bf16_val(ab[(size_t)(R + r) * K + k]) : 0.0));
            ref[(size_t)r * N + n] = s;
        }
    cudaMemset(dy, 0xFF, (size_t)parts * R * N * 4 + 64);
    if (prod(ctx, act, parts, dy)) goto done;
    if (parts > 1 && kern_add_norm(0, dy, dy + (size_t)R * N, parts - 1, 1, R * N, NULL, NULL, 0.f, NULL, 0, 1))
        goto done;
    if (!sync_ok() || !down(out, dy, (size_t)R * N * 4) ||
        !down(tail, dy + (size_t)parts * R * N, sizeof tail))
        goto done;
    for (int i = 0; i < 16; i++)
        if (tail[i] != 0xFFFFFFFFu) goto done;
    e = rel_err(out, ref, (size_t)R * N);
done:
    free(x); free(out); free(ab); free(ref);
    return e;
}
static double split_case(const float *W, int N, int K, int R, int parts, tc_prod prod, const void *ctx) {
    return split_case_h(W, N, K, R, parts, prod, ctx, 1);
}

/* ------------------------------------------------------- kern_skinny */
struct sk_ctx { const void *W; int N, K, R, n_sms, halves; };
static int sk_prod(const void *p, const void *act, int parts, float *dy) {
    const struct sk_ctx *c = p;
    return kern_skinny(0, c->W, c->N, c->K, act, c->R, c->halves, parts, dy, c->n_sms, 1);
}

/* kern_skinny's parts on random bf16 weights (split_case; halves 0: bf16
 * inputs alone).  Tolerance 1e-5 relative: the operands are exact in bf16,
 * the sums f32 over K <= 8960. */
static double skinny_case_h(int N, int K, int R, int parts, int n_sms, int halves) {
    uint16_t *Wb = malloc((size_t)N * K * 2);
    float *W = malloc((size_t)N * K * 4);
    double e = INFINITY;
    if (Wb && W) {
        for (size_t i = 0; i < (size_t)N * K; i++) {
            Wb[i] = kern_f32_to_bf16(nrand() / 32.0f);
            W[i] = bf16_val(Wb[i]);
        }
        struct sk_ctx c = {dup_up(Wb, (size_t)N * K * 2), N, K, R, n_sms, halves};
        if (c.W) e = split_case_h(W, N, K, R, parts, sk_prod, &c, halves);
    }
    free(Wb); free(W);
    dfree_all();
    return e;
}
static double skinny_case(int N, int K, int R, int parts, int n_sms) {
    return skinny_case_h(N, K, R, parts, n_sms, 1);
}

static void test_skinny(void) {
    g_rng = 212;
    /* shapes: 1.5B's o (16 parts), q/k/v rows not a multiple of 16, the
     * down product's long K, wgmma of 8-64 columns (17+ rows, or K <= 4096),
     * mma.sync's 1..2 column tiles (up to 16 rows with K > 4096), slices
     * not a multiple of 64, fewer weight rows than a wgmma unit */
    static const int c[][3] = {{1536, 1536, 32}, {2056, 896, 5}, {1536, 8960, 17},
                               {300, 4864, 64}, {130, 96, 40}, {4000, 1536, 8},
                               {2048, 1536, 30}, {100, 64, 33}, {2056, 896, 12},
                               {1536, 8960, 8}, {300, 4864, 13}, {2056, 4608, 5}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        for (int h = 1; h >= 0; h--) {   /* high and low halves, then bf16 inputs alone */
            const int N = c[i][0], K = c[i][1], R = c[i][2];
            const int parts = kern_skinny_parts(N, K, R, h, 132, 1000);
            T_CHECKF(parts >= 1, "%dx%d R=%d halves %d: no parts", N, K, R, h);
            if (parts < 1) continue;
            double e = skinny_case_h(N, K, R, parts, 132, h);
            T_CHECKF(e <= 1e-5, "%dx%d R=%d halves %d, %d parts: rel err %.3g", N, K, R, h, parts, e);
        }
    /* bf16 inputs alone: 1 row (every pass of ENG_ACT_BF16 takes kern_skinny),
     * and a slicing only they fit (a 768-wide slice at 64 rows: 192 KB of
     * halves, 96 KB alone, beside the 16 KB reduction buffer) */
    double e1 = skinny_case_h(2056, 896, 1, kern_skinny_parts(2056, 896, 1, 0, 132, 1000), 132, 0);
    T_CHECKF(e1 <= 1e-5, "2056x896 R=1 bf16 inputs: rel err %.3g", e1);
    T_CHECK(kern_skinny_parts(256, 768, 64, 1, 132, 1) == 0 && kern_skinny_parts(256, 768, 64, 0, 132, 1) == 1);
    e1 = skinny_case_h(256, 768, 64, 1, 132, 0);
    T_CHECKF(e1 <= 1e-5, "256x768 R=64 bf16 inputs, 1 part: rel err %.3g", e1);
    double e = skinny_case(700, 1024, 16, 1, 132);   /* one part: a 1024-wide slice */
    T_CHECKF(e <= 1e-5, "700x1024 R=16, 1 part: rel err %.3g", e);
    e = skinny_case(700, 512, 24, 1, 132);
    T_CHECKF(e <= 1e-5, "700x512 R=24, 1 part: rel err %.3g", e);
    e = skinny_case(700, 1024, 24, 11, 3);   /* 96-wide slices, the last 64; 3 SMs: many rounds */
    T_CHECKF(e <= 1e-5, "700x1024 R=24, 11 parts: rel err %.3g", e);
    T_CHECK(kern_skinny(0, NULL, 100, 100, NULL, 8, 1, 1, NULL, 132, 0) != 0);   /* K % 32 */
    T_CHECK(kern_skinny(0, NULL, 100, 128, NULL, 65, 1, 1, NULL, 132, 0) != 0);  /* too many rows */
    T_CHECK(kern_skinny(0, NULL, 100, 128, NULL, 8, 1, 3, NULL, 132, 0) != 0);   /* 3 parts of 64: 2 */
    T_CHECK(kern_skinny_parts(1536, 8960, 32, 1, 132, 4) == 0);
}

/* ------------------------------------------------------ kern_qskinny */
struct qs_ctx { const kern_qw *qw; int N, K, R, n_sms, stage; };
static int qs_prod(const void *p, const void *act, int parts, float *dy) {
    const struct qs_ctx *c = p;
    return kern_qskinny(0, c->qw, c->N, c->K, act, c->R, parts, dy, c->n_sms, 1, c->stage);
}

/* kern_qskinny's parts on a quantized weight of segments (types[i],
 * rows[i]) against the engine's dequantized weights (split_case). */
static double qskinny_case(int n_seg, const int *types, const int *rows, int K, int R, int parts,
                           int n_sms, int stage) {
    int N = 0;
    for (int i = 0; i < n_seg; i++) N += rows[i];
    float *W = malloc((size_t)N * K * 4);
    double e = INFINITY;
    kern_qw qw;
    if (W && qweight(n_seg, types, rows, K, &qw, W)) {
        struct qs_ctx c = {&qw, N, K, R, n_sms, stage};
        e = split_case(W, N, K, R, parts, qs_prod, &c);
    }
    free(W);
    dfree_all();
    return e;
}

/* Every block type at 1, 5, 8, 12, 20 and 32 rows (the 1, 2 and 4 column
 * tiles) and 33, 64, 70 (groups of 32, the last partial), one part, two and the parts kern_qskinny_parts picks; rows not
 * a multiple of the block's 128; K of partial chunks (576: 32-element
 * formats, slices of 288); Q4_K_M's q|k|v (Q4_K, Q4_K, Q6_K) and a Q8_0 | Q4_0 product;
 * few SMs (many slices per block row).  Tolerance 1e-5 relative: the
 * operands are exact (the blocks' integers, bf16 halves of x), the sums f32,
 * and a q + b per group is factored as a sum(q x) + b sum(x) (~1e-7). */
/* kern_dequant_halves: every element's hi and lo bit-identical to the
 * halves of the CPU's dequantized value, for every block type, K of whole
 * and partial 256-element chunks (576: SmolLM2), and a product of two
 * segments of different types; kern_embed_q's rows of the same weight
 * (unscaled and scaled) bit-identical to the CPU's embedding. */
static int dequant_case(int n_seg, const int *types, const int *rows, int K) {
    int N = 0;
    for (int i = 0; i < n_seg; i++) N += rows[i];
    float *W = malloc((size_t)N * K * 4);
    uint16_t *got = malloc((size_t)N * K * 4);
    kern_qw qw;
    int bad = -1;
    if (W && got && qweight(n_seg, types, rows, K, &qw, W)) {
        uint16_t *d = dnew((size_t)N * K * 4);
        if (d && !kern_dequant_halves(0, &qw, N, K, d) && sync_ok() && down(got, d, (size_t)N * K * 4)) {
            bad = 0;
            for (size_t i = 0; i < (size_t)N * K; i++) {
                const uint16_t h = eng_f32_to_bf16(W[i]);
                const uint16_t l = eng_f32_to_bf16(W[i] - eng_bf16_to_f32(h));
                if (got[i] != h || got[(size_t)N * K + i] != l) bad++;
            }
            /* kern_embed_q: rows of W by token, scaled as Gemma's */
            const int toks[5] = {N - 1, 0, 7 % N, 7 % N, N / 2};
            const float scale = sqrtf(640.0f);
            kern_step *st = make_step(5, toks, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL);
            float *dx = dnew((size_t)5 * K * 4), *x = (float *)got;
            for (int sc = 0; sc < 2; sc++) {
                const float f = sc ? scale : 1.0f;
                if (!st || !dx || kern_embed_q(0, &qw, N, K, st, 5, f, dx, 0) || !sync_ok() ||
                    !down(x, dx, (size_t)5 * K * 4)) {
                    bad = -1;
                    break;
                }
                for (int r = 0; r < 5; r++)
                    for (int k = 0; k < K; k++) {
                        const float w = W[(size_t)toks[r] * K + k];
                        bad += x[(size_t)r * K + k] != (sc ? w * scale : w);
                    }
            }
        }
    }
    free(W);
    free(got);
    dfree_all();
    return bad;
}

static void test_dequant(void) {
    for (int i = 0; i < 8; i++) {
        const int t = qtypes[i], rows = 48;
        const int Ks[3] = {512, 576, 2304};   /* 2304: 9 chunks, a warp's second round */
        for (int k = 0; k < 3; k++) {
            if (eng_dt_block(t) == 256 && Ks[k] % 256) continue;
            const int bad = dequant_case(1, &t, &rows, Ks[k]);
            T_CHECKF(bad == 0, "kern_dequant_halves / kern_embed_q %s K %d: %d elements differ (-1: failed)",
                     eng_dt_name(t), Ks[k], bad);
        }
    }
    const int mix[2] = {ENG_DT_Q4_K, ENG_DT_Q6_K}, mrows[2] = {32, 16};
    T_CHECKF(dequant_case(2, mix, mrows, 768) == 0, "kern_dequant_halves Q4_K | Q6_K");
    kern_qw none;
    memset(&none, 0, sizeof none);
    T_CHECK(kern_dequant_halves(0, &none, 16, 256, NULL) != 0);   /* no segments: refused */
    T_CHECK(kern_embed_q(0, &none, 16, 256, NULL, 1, 1.0f, NULL, 0) != 0);
}

static void test_qskinny(void) {
    g_rng = 313;
    static const int Rs[] = {1, 5, 8, 12, 20, 32, 33, 64, 70};
    /* stage 0: blocks loaded into registers; 1: staged in shared memory
     * (where K is a multiple of 256: K 576, stage 0's case for the 32-element
     * formats, is 1024 in stage 1) */
    for (int st = 0; st < 2; st++) {
        for (int ti = 0; ti < 8; ti++) {
            const int t = qtypes[ti], kf = eng_dt_block(t) == 256;
            for (int ri = 0; ri < 9; ri++) {
                const int R = Rs[ri], rows = ri % 2 ? 200 : 136, K = kf || st ? 1024 : (ri % 2 ? 576 : 1024);
                kern_qw probe;
                memset(&probe, 0, sizeof probe);
                const int parts = ri % 3 == 0 ? 1 : ri % 3 == 1 ? 2 : 0;   /* 0: kern_qskinny_parts's */
                int p = parts;
                if (!p) {   /* the shape's own choice (the weights are made below; the rule reads types) */
                    probe.n_seg = 1; probe.type[0] = t; probe.end[0] = rows;
                    probe.row_bytes[0] = (int)kern_qrow_bytes(t, K); probe.w[0] = (void *)(uintptr_t)4096;
                    p = kern_qskinny_parts(&probe, rows, K, R, 132, 64);
                }
                T_CHECKF(p >= 1, "type %d R=%d: no parts", t, R);
                if (p < 1) continue;
                double e = qskinny_case(1, &t, &rows, K, R, p, ri % 2 ? 132 : 7, st);
                T_CHECKF(e <= 1e-5, "type %d %dx%d R=%d, %d parts, stage %d: rel err %.3g", t, rows, K, R, p,
                         st, e);
            }
        }
        static const int qkv_t[3] = {ENG_DT_Q4_K, ENG_DT_Q4_K, ENG_DT_Q6_K}, qkv_r[3] = {512, 128, 128};
        double e = qskinny_case(3, qkv_t, qkv_r, 1536, 20, 2, 132, st);
        T_CHECKF(e <= 1e-5, "q|k|v Q4_K|Q4_K|Q6_K R=20, stage %d: rel err %.3g", st, e);
        e = qskinny_case(3, qkv_t, qkv_r, 2048, 7, 8, 132, st);
        T_CHECKF(e <= 1e-5, "q|k|v Q4_K|Q4_K|Q6_K R=7, 8 parts, stage %d: rel err %.3g", st, e);
        static const int mix_t[2] = {ENG_DT_Q8_0, ENG_DT_Q4_0}, mix_r[2] = {48, 80};
        e = qskinny_case(2, mix_t, mix_r, 768, 16, 1, 132, st);
        T_CHECKF(e <= 1e-5, "Q8_0|Q4_0 R=16, stage %d: rel err %.3g", st, e);
        e = qskinny_case(2, mix_t, mix_r, 640, 16, 1, 132, st);
        T_CHECKF(e <= 1e-5, "Q8_0|Q4_0 K 640 R=16, stage %d: rel err %.3g", st, e);
        static const int down_t = ENG_DT_Q6_K, down_r = 264;
        e = qskinny_case(1, &down_t, &down_r, 8960, 32, 6, 132, st);   /* 6 chunks a slice, the last 5 */
        T_CHECKF(e <= 1e-5, "Q6_K 264x8960 R=32, 6 parts, stage %d: rel err %.3g", st, e);
        static const int q5_t[2] = {ENG_DT_Q5_0, ENG_DT_Q5_1}, q5_r[2] = {64, 72};
        e = qskinny_case(2, q5_t, q5_r, 1536, 40, 3, 132, st);   /* qh planes, groups of 32 rows */
        T_CHECKF(e <= 1e-5, "Q5_0|Q5_1 R=40, 3 parts, stage %d: rel err %.3g", st, e);
        static const int big_t[2] = {ENG_DT_Q4_K, ENG_DT_Q8_0}, big_r = 136;
        for (int i = 0; i < 2; i++) {   /* 256 rows: 8 groups, the lean lm_head's launch */
            e = qskinny_case(1, &big_t[i], &big_r, 1024, 256, 1, 132, st);
            T_CHECKF(e <= 1e-5, "%s R=256, stage %d: rel err %.3g", eng_dt_name(big_t[i]), st, e);
        }
    }
    /* refused: a segment ending inside a warp's 16 rows, K not whole K blocks, 257 rows */
    kern_qw bad;
    memset(&bad, 0, sizeof bad);
    bad.n_seg = 2; bad.type[0] = bad.type[1] = ENG_DT_Q8_0; bad.end[0] = 8; bad.end[1] = 32;
    bad.row_bytes[0] = bad.row_bytes[1] = (int)kern_qrow_bytes(ENG_DT_Q8_0, 256);
    bad.w[0] = bad.w[1] = (void *)(uintptr_t)4096;
    T_CHECK(!kern_qskinny_ok(&bad, 32, 256));
    bad.end[0] = 16;
    T_CHECK(kern_qskinny_ok(&bad, 32, 256));
    T_CHECK(kern_qskinny(0, &bad, 32, 256, NULL, 257, 1, NULL, 132, 0, 0) != 0);
    bad.type[0] = bad.type[1] = ENG_DT_Q4_K;
    bad.row_bytes[0] = bad.row_bytes[1] = (int)kern_qrow_bytes(ENG_DT_Q4_K, 256);
    T_CHECK(!kern_qskinny_ok(&bad, 32, 288));
}

/* ------------------------------------------- norms, SwiGLU, embedding */
/* add_norm of P parts at widths that take its block sizes: 1536 (512
 * threads), 3000 and 3584 (1024 threads, in registers), 9000 (past 4096: the
 * looping path); P past PARTS_BATCH (4) and not a multiple of it.  With
 * post, the parts' sum is normalised (weights pw) before x adds it. */
static void check_add_norm_width(int R, int H, int P, int post) {
    float *x = malloc((size_t)R * H * 4), *y = malloc((size_t)P * R * H * 4), *nw = malloc(H * 4);
    float *o = malloc((size_t)R * H * 4), *pw = malloc(H * 4);
    double *rx = malloc((size_t)R * H * 8), *ra = malloc((size_t)R * H * 8);
    if (!x || !y || !nw || !o || !rx || !ra || !pw) { T_CHECK(0); goto done; }
    for (int i = 0; i < R * H; i++) x[i] = nrand();
    for (int i = 0; i < P * R * H; i++) y[i] = nrand();
    for (int k = 0; k < H; k++) nw[k] = 1.0f + 0.1f * nrand();
    for (int k = 0; k < H; k++) pw[k] = 1.0f + 0.3f * nrand();
    for (int r = 0; r < R; r++) {
        double ss = 0, sy = 0;
        for (int k = 0; k < H; k++) {
            double v = 0;
            for (int p = 0; p < P; p++) v += y[(size_t)p * R * H + r * H + k];
            rx[r * H + k] = v;
            sy += v * v;
        }
        for (int k = 0; k < H; k++) {
            double v = post ? rx[r * H + k] / sqrt(sy / H + 1e-6) * pw[k] : rx[r * H + k];
            rx[r * H + k] = v += x[r * H + k];
            ss += v * v;
        }
        for (int k = 0; k < H; k++) ra[r * H + k] = rx[r * H + k] / sqrt(ss / H + 1e-6) * nw[k];
    }
    float *dx = dup_up(x, (size_t)R * H * 4), *dy = dup_up(y, (size_t)P * R * H * 4);
    float *dn = dup_up(nw, H * 4), *dact = dnew((size_t)R * H * 4), *dpw = dup_up(pw, H * 4);
    if (!dx || !dy || !dn || !dact || !dpw) { T_CHECK(0); goto done; }
    T_CHECK(kern_add_norm(0, dx, dy, P, R, H, post ? dpw : NULL, dn, 1e-6f, dact, KERN_ACT_F32, 1) == 0);
    T_CHECK(sync_ok() && down(o, dx, (size_t)R * H * 4));
    double e1 = rel_err(o, rx, (size_t)R * H);
    T_CHECK(sync_ok() && down(o, dact, (size_t)R * H * 4));
    double e2 = rel_err(o, ra, (size_t)R * H);
    T_CHECKF(e1 <= (post ? 1e-5 : 1e-6) && e2 <= 1e-5, "add_norm H=%d, %d parts%s: x rel err %.3g, "
             "act rel err %.3g", H, P, post ? ", output norm" : "", e1, e2);
done:
    free(x); free(y); free(nw); free(o); free(rx); free(ra); free(pw);
    dfree_all();
}

/* SwiGLU (GeGLU with gelu) over [gate | up] given as P parts, added in order */
static void check_swiglu_parts(int R, int I, int P, int gelu) {
    const size_t n = (size_t)R * 2 * I;
    float *g = malloc(P * n * 4), *o = malloc((size_t)R * I * 4);
    double *ref = malloc((size_t)R * I * 8);
    if (!g || !o || !ref) { T_CHECK(0); goto done; }
    for (size_t i = 0; i < P * n; i++) g[i] = (i < n ? 2.0f : 0.3f) * nrand();
    for (int r = 0; r < R; r++)
        for (int i = 0; i < I; i++) {
            double gg = 0, uu = 0;
            for (int p = 0; p < P; p++) {
                gg += g[p * n + (size_t)r * 2 * I + i];
                uu += g[p * n + (size_t)r * 2 * I + I + i];
            }
            ref[r * I + i] = (gelu ? gelu_tanh_ref(gg) : silu(gg)) * uu;
        }
    float *dg = dup_up(g, P * n * 4), *dact = dnew((size_t)R * I * 4);
    T_CHECK(dg && dact && kern_swiglu(0, dg, P, R, I, gelu, dact, KERN_ACT_F32, 1) == 0);
    T_CHECK(sync_ok() && down(o, dact, (size_t)R * I * 4));
    double e = rel_err(o, ref, (size_t)R * I);
    T_CHECKF(e <= 1e-5, "%s, %d parts: rel err %.3g", gelu ? "geglu" : "swiglu", P, e);
done:
    free(g); free(o); free(ref);
    dfree_all();
}

static void test_add_norm_widths(void) {
    g_rng = 313;
    for (int post = 0; post < 2; post++) {
        check_add_norm_width(3, 3000, 1, post);
        check_add_norm_width(2, 9000, 1, post);
        check_add_norm_width(4, 1536, 9, post);
        check_add_norm_width(2, 3584, 6, post);
        check_add_norm_width(2, 9000, 5, post);
        check_add_norm_width(3, 640, 2, post);   /* Gemma 3 270M */
    }
    check_swiglu_parts(3, 700, 6, 0);
    check_swiglu_parts(3, 700, 6, 1);
}

static void test_rowwise(void) {
    g_rng = 303;
    const int R = 5, H = 896, I = 200, V = 300, He = 64;
    /* y: three parts of [R][H] (a product's K slices), added in order */
    float *x = malloc(R * H * 4), *y = malloc(3 * R * H * 4), *ylo = y ? y + R * H : NULL;
    float *nw = malloc(H * 4), *o1 = malloc(R * H * 4), *o2 = malloc(2 * R * H * 4);
    double *rx = malloc(R * H * 8), *ra = malloc(R * H * 8);
    float *g = malloc(2 * R * 2 * I * 4), *glo = g ? g + R * 2 * I : NULL;
    uint16_t *E = malloc(V * He * 2);
    if (!x || !y || !ylo || !nw || !o1 || !o2 || !rx || !ra || !g || !glo || !E) { T_CHECK(0); goto done; }
    for (int i = 0; i < R * H; i++) {
        x[i] = nrand(); y[i] = nrand(); ylo[i] = 1e-3f * nrand(); ylo[R * H + i] = 1e-2f * nrand();
    }
    for (int k = 0; k < H; k++) nw[k] = 1.0f + 0.1f * nrand();
    for (int r = 0; r < R; r++) {
        double ss = 0;
        for (int k = 0; k < H; k++) {
            rx[r * H + k] = (double)x[r * H + k] + y[r * H + k] + ylo[r * H + k] + ylo[R * H + r * H + k];
            ss += rx[r * H + k] * rx[r * H + k];
        }
        for (int k = 0; k < H; k++) ra[r * H + k] = rx[r * H + k] / sqrt(ss / H + 1e-5) * nw[k];
    }
    float *dx = dup_up(x, R * H * 4), *dy = dup_up(y, 3 * R * H * 4);
    float *dn = dup_up(nw, H * 4), *dact = dnew(2 * R * H * 4);
    if (!dx || !dy || !dn || !dact) { T_CHECK(0); goto done; }
    T_CHECK(kern_add_norm(0, dx, dy, 3, R, H, NULL, dn, 1e-5f, dact, KERN_ACT_F32, 1) == 0);
    T_CHECK(sync_ok() && down(o1, dx, R * H * 4) && down(o2, dact, R * H * 4));
    double e1 = rel_err(o1, rx, R * H), e2 = rel_err(o2, ra, R * H);
    T_CHECKF(e1 <= 1e-6 && e2 <= 1e-5, "add_norm: x rel err %.3g, act rel err %.3g", e1, e2);
    /* split output: high + low rows give the value to ~2^-16 */
    cudaMemset(dact, 0xFF, 2 * R * H * 4);
    T_CHECK(kern_add_norm(0, dx, NULL, 0, R, H, NULL, dn, 1e-5f, dact, KERN_ACT_SPLIT, 0) == 0);
    uint16_t *hb = (uint16_t *)o2;
    T_CHECK(sync_ok() && down(hb, dact, 2 * R * H * 2));
    for (int i = 0; i < R * H; i++) o1[i] = bf16_val(hb[i]) + bf16_val(hb[R * H + i]);
    e2 = rel_err(o1, ra, R * H);
    T_CHECKF(e2 <= 2e-5, "norm to hi/lo bf16: rel err %.3g", e2);
    /* gather + norm of out rows 4, 0, 2 */
    int rows[3] = {4, 0, 2};
    kern_step *st = make_step(0, NULL, NULL, NULL, NULL, 0, 0, 3, rows, NULL, NULL, NULL, NULL);
    cudaMemset(dact, 0xFF, 2 * R * H * 4);
    T_CHECK(st && kern_gather_norm(0, dx, st, 3, H, dn, 1e-5f, dact, KERN_ACT_F32, 1) == 0);
    T_CHECK(sync_ok() && down(o2, dact, 3 * H * 4));
    double *rg = malloc(3 * H * 8);
    if (rg) {
        for (int o = 0; o < 3; o++) memcpy(rg + o * H, ra + rows[o] * H, H * 8);
        e2 = rel_err(o2, rg, 3 * H);
        T_CHECKF(e2 <= 1e-5, "gather_norm: rel err %.3g", e2);
        free(rg);
    }
    /* SwiGLU over [gate | up] with low parts */
    for (int i = 0; i < R * 2 * I; i++) { g[i] = 2 * nrand(); glo[i] = 1e-3f * nrand(); }
    float *dg = dup_up(g, 2 * R * 2 * I * 4);
    cudaMemset(dact, 0xFF, 2 * R * H * 4);
    T_CHECK(dg && kern_swiglu(0, dg, 2, R, I, 0, dact, KERN_ACT_F32, 1) == 0);
    T_CHECK(sync_ok() && down(o2, dact, R * I * 4));
    for (int r = 0; r < R; r++)
        for (int i = 0; i < I; i++) {
            double gg = (double)g[r * 2 * I + i] + glo[r * 2 * I + i];
            double uu = (double)g[r * 2 * I + I + i] + glo[r * 2 * I + I + i];
            ra[r * I + i] = silu(gg) * uu;
        }
    e2 = rel_err(o2, ra, R * I);
    T_CHECKF(e2 <= 1e-5, "swiglu: rel err %.3g", e2);
    /* embedding rows of bf16 table */
    for (int i = 0; i < V * He; i++) E[i] = kern_f32_to_bf16(nrand());
    int toks[5] = {299, 0, 17, 17, 150};
    kern_step *st2 = make_step(5, toks, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL);
    void *dE = dup_up(E, V * He * 2);
    float *dxe = dnew(5 * He * 4);
    T_CHECK(st2 && dE && dxe && kern_embed(0, dE, KERN_BF16, He, st2, 5, 1.0f, dxe, 0) == 0);
    T_CHECK(sync_ok() && down(o1, dxe, 5 * He * 4));
    int bad = 0;
    for (int r = 0; r < 5; r++)
        for (int k = 0; k < He; k++) bad += o1[r * He + k] != bf16_val(E[toks[r] * He + k]);
    T_CHECKF(bad == 0, "embedding: %d wrong values", bad);
    /* scaled (Gemma: sqrt(hidden)), one f32 product per value */
    const float scale = sqrtf(640.0f);
    T_CHECK(kern_embed(0, dE, KERN_BF16, He, st2, 5, scale, dxe, 0) == 0);
    T_CHECK(sync_ok() && down(o1, dxe, 5 * He * 4));
    bad = 0;
    for (int r = 0; r < 5; r++)
        for (int k = 0; k < He; k++) bad += o1[r * He + k] != bf16_val(E[toks[r] * He + k]) * scale;
    T_CHECKF(bad == 0, "scaled embedding: %d wrong values", bad);
done:
    free(x); free(y); free(nw); free(o1); free(o2); free(rx); free(ra);
    free(g); free(E);
    dfree_all();
}

/* ------------------------------------------------------- RoPE + KV */
/* qk_norm: q and k heads RMS-normalised (per-dimension weights) before the
 * rotation; q_scale multiplies q after it.  dt: the pool's element type;
 * in bf16 k is checked within bf16's rounding (4e-3 relative) and v must be
 * the bf16 rounding of the f32 value exactly. */
static void rope_case(int nh, int nkv, int hd, int qk_norm, float q_scale, int dt) {
    enum { R = 5 };
    const int bs = 16, n_blocks = 8, n_layers = 2, layer = 1;
    int table[2][2] = {{3, 1}, {6, 6}}, seqs[R] = {0, 0, 1, 0, 1}, pos[R] = {0, 17, 5, 31, 15};
    const int width = (nh + 2 * nkv) * hd;
    size_t blk = (size_t)n_layers * 2 * nkv * bs * hd, pool = blk * n_blocks;
    float *qkv = malloc(R * width * 4), *bias = malloc(width * 4), *invf = malloc(hd / 2 * 4);
    float *q = malloc(R * nh * hd * 4), *kvh = malloc(pool * 4), *qn = malloc(hd * 4), *kn = malloc(hd * 4);
    if (!qkv || !bias || !invf || !q || !kvh || !qn || !kn) { T_CHECK(0); goto done; }
    for (int i = 0; i < R * width; i++) qkv[i] = nrand();
    for (int i = 0; i < width; i++) bias[i] = 0.2f * nrand();
    for (int i = 0; i < hd / 2; i++) invf[i] = (float)(1.0 / pow(10000.0, 2.0 * i / hd));
    for (int i = 0; i < hd; i++) { qn[i] = 1.0f + 0.3f * nrand(); kn[i] = 1.0f + 0.3f * nrand(); }
    kern_step *st = make_step(R, NULL, pos, seqs, &table[0][0], 2, 2, 0, NULL, NULL, NULL, NULL, NULL);
    float *dqkv = dup_up(qkv, R * width * 4), *db = dup_up(bias, width * 4), *dinv = dup_up(invf, hd * 2);
    const size_t eb = dt == KERN_BF16 ? 2 : 4;
    float *dq = dnew(R * nh * hd * 4);
    char *dkv = dnew(pool * eb);
    float *dqn = dup_up(qn, hd * 4), *dkn = dup_up(kn, hd * 4);
    if (!st || !dqkv || !db || !dinv || !dq || !dkv || !dqn || !dkn) { T_CHECK(0); goto done; }
    kern_kv kv = {dkv + (size_t)layer * 2 * nkv * bs * hd * eb, (long long)blk, nkv, hd, bs, 0, dt};
    T_CHECK(kern_rope_kv(0, dqkv, 1, db, st, R, nh, dinv, qk_norm ? dqn : NULL, qk_norm ? dkn : NULL,
                         1e-6f, q_scale, dq, kv, 1) == 0);
    T_CHECK(sync_ok() && down(q, dq, R * nh * hd * 4) && kv_down(kvh, dkv, pool, dt));
    double num = 0, den = 0;
    int bad_kv = 0;
    for (int r = 0; r < R; r++) {
        const float *row = qkv + r * width;
        int b = table[seqs[r]][pos[r] / bs], slot = pos[r] % bs;
        float *kb = kvh + (size_t)b * blk + (size_t)layer * 2 * nkv * bs * hd;
        for (int h = 0; h < nh + nkv; h++) {
            double rs = 1.0;   /* the head's RMS norm factor */
            if (qk_norm) {
                double ss = 0;
                for (int d = 0; d < hd; d++) {
                    double x = (double)row[h * hd + d] + bias[h * hd + d];
                    ss += x * x;
                }
                rs = 1.0 / sqrt(ss / hd + 1e-6);
            }
            const float *nw = h < nh ? qn : kn;
            double m = h < nh ? q_scale : 1.0;
            for (int i = 0; i < hd / 2; i++) {
                double x1 = (double)row[h * hd + i] + bias[h * hd + i];
                double x2 = (double)row[h * hd + i + hd / 2] + bias[h * hd + i + hd / 2];
                if (qk_norm) { x1 *= rs * nw[i]; x2 *= rs * nw[i + hd / 2]; }
                double a = pos[r] * (double)invf[i];
                double o1 = (x1 * cos(a) - x2 * sin(a)) * m, o2 = (x2 * cos(a) + x1 * sin(a)) * m;
                float g1, g2;
                if (h < nh) {
                    g1 = q[(r * nh + h) * hd + i]; g2 = q[(r * nh + h) * hd + i + hd / 2];
                } else {
                    float *kr = kb + ((size_t)(h - nh) * bs + slot) * hd;
                    g1 = kr[i]; g2 = kr[i + hd / 2];
                }
                num += (g1 - o1) * (g1 - o1) + (g2 - o2) * (g2 - o2);
                den += o1 * o1 + o2 * o2;
                if (!isfinite(g1) || !isfinite(g2)) num = INFINITY;
            }
        }
        for (int h = 0; h < nkv; h++)
            for (int d = 0; d < hd; d++) {
                float want = row[(nh + nkv + h) * hd + d] + bias[(nh + nkv + h) * hd + d];
                if (dt == KERN_BF16) want = bf16_val(kern_f32_to_bf16(want));
                bad_kv += kb[(size_t)nkv * bs * hd + ((size_t)h * bs + slot) * hd + d] != want;
            }
    }
    double e = sqrt(num / den);
    T_CHECKF(e <= (dt == KERN_BF16 ? 4e-3 : 1e-5), "nh=%d nkv=%d hd=%d qk_norm=%d q_scale=%g %s: q/k "
             "rel err %.3g", nh, nkv, hd, qk_norm, q_scale, dt_name(dt), e);
    T_CHECKF(bad_kv == 0, "%d wrong values in V", bad_kv);
    /* nothing else in the pool was written: it is all NaN bytes still */
    size_t finite = 0;
    for (size_t i = 0; i < pool; i++) finite += isfinite(kvh[i]) != 0;
    T_CHECKF(finite == (size_t)R * 2 * nkv * hd, "%zu finite floats in the pool, expected %d",
             finite, R * 2 * nkv * hd);
done:
    free(qkv); free(bias); free(invf); free(q); free(kvh); free(qn); free(kn);
    dfree_all();
}

static void test_rope_kv(void) {
    g_rng = 404;
    for (int dt = KERN_F32; dt <= KERN_BF16; dt++) {
        rope_case(4, 2, 16, 0, 1.0f, dt);
        rope_case(12, 2, 128, 0, 1.0f, dt);
        rope_case(14, 2, 64, 0, 1.0f, dt);
        rope_case(16, 8, 128, 1, 1.0f, dt);              /* Qwen3-0.6B's heads */
        rope_case(4, 1, 256, 1, 1.0f, dt);               /* Gemma 3 270M's */
        rope_case(2, 1, 32, 1, sqrtf(32.0f / 24), dt);   /* the tiny Gemma fixture's query scale */
    }
    /* one norm without the other is refused */
    T_CHECK(kern_rope_kv(0, NULL, 1, NULL, NULL, 1, 4, NULL, (const float *)16, NULL, 1e-6f, 1.0f,
                         NULL, (kern_kv){NULL, 0, 2, 16, 16, 0, KERN_F32}, 0) != 0);
}

/* kern_gemv_qkv (the q/k/v product with RoPE and the KV write as its
 * epilogue) against kern_gemv + kern_rope_kv on the same inputs.  Every
 * output row is summed in the same order by both, so the tolerance is 1e-6
 * relative (the rotation may be contracted into FMAs differently); the
 * pool cells that neither writes stay NaN. */
/* 1: qkv_case's quantized weights round their input (kern_qw.q16) */
static int g_qkv_q16;

static void qkv_case(int R, int nh, int nkv, int hd, int K, int wdt, int n_sms, int dt,
                     const int *qt) {
    const int bs = 16, n_blocks = 8, N = (nh + 2 * nkv) * hd;
    /* up to 8 rows, each its own KV cell (sequence, position) inside the table */
    int table[2][2] = {{3, 1}, {6, 2}}, seqs[8] = {0, 1, 0, 1, 0, 1, 0, 1};
    int pos[8] = {17, 5, 31, 20, 3, 9, 0, 30};
    if (R > 8) { T_CHECK(0); return; }
    size_t blk = (size_t)2 * nkv * bs * hd, pool = blk * n_blocks, nw = (size_t)N * K;
    float *W = malloc(nw * 4), *x = malloc((size_t)R * K * 4), *nwt = malloc(K * 4);
    float *bias = malloc(N * 4), *invf = malloc(hd / 2 * 4);
    float *q1 = malloc((size_t)R * nh * hd * 4), *q2 = malloc((size_t)R * nh * hd * 4);
    float *kv1 = malloc(pool * 4), *kv2 = malloc(pool * 4);
    uint16_t *Wb = malloc(nw * 2);
    if (!W || !x || !nwt || !bias || !invf || !q1 || !q2 || !kv1 || !kv2 || !Wb) { T_CHECK(0); goto done; }
    for (size_t i = 0; i < nw; i++) { Wb[i] = kern_f32_to_bf16(nrand() / sqrtf((float)K)); W[i] = bf16_val(Wb[i]); }
    /* qt: q, k and v segments of these block types instead */
    kern_qw qw;
    const int qrows[3] = {nh * hd, nkv * hd, nkv * hd};
    if (qt && !qweight(3, qt, qrows, K, &qw, W)) { T_CHECK(0); goto done; }
    qw.q16 = qt ? g_qkv_q16 : 0;
    for (int i = 0; i < R * K; i++) x[i] = nrand();
    for (int k = 0; k < K; k++) nwt[k] = 1.0f + 0.1f * nrand();
    for (int i = 0; i < N; i++) bias[i] = 0.2f * nrand();
    for (int i = 0; i < hd / 2; i++) invf[i] = (float)(1.0 / pow(1e6, 2.0 * i / hd));
    kern_step *st = make_step(R, NULL, pos, seqs, &table[0][0], 2, 2, 0, NULL, NULL, NULL, NULL, NULL);
    void *dW = wdt == KERN_BF16 ? dup_up(Wb, nw * 2) : dup_up(W, nw * 4);
    float *dx = dup_up(x, (size_t)R * K * 4), *dn = dup_up(nwt, K * 4), *db = dup_up(bias, N * 4);
    float *dinv = dup_up(invf, hd * 2), *dy = dnew((size_t)R * N * 4);
    float *dq1 = dnew((size_t)R * nh * hd * 4), *dq2 = dnew((size_t)R * nh * hd * 4);
    const size_t eb = dt == KERN_BF16 ? 2 : 4;
    void *dkv1 = dnew(pool * eb), *dkv2 = dnew(pool * eb);
    if (!st || !dW || !dx || !dn || !db || !dinv || !dy || !dq1 || !dq2 || !dkv1 || !dkv2) { T_CHECK(0); goto done; }
    kern_kv a = {dkv1, (long long)blk, nkv, hd, bs, 0, dt}, b = a;
    b.base = dkv2;
    T_CHECK((qt ? kern_qgemv(0, &qw, N, K, dx, R, dn, 1e-6f, KERN_STORE, dy, n_sms, 1)
                : kern_gemv(0, dW, wdt, N, K, dx, R, dn, 1e-6f, KERN_STORE, dy, n_sms, 1)) == 0);
    T_CHECK(kern_rope_kv(0, dy, 1, db, st, R, nh, dinv, NULL, NULL, 0.f, 1.0f, dq1, a, 1) == 0);
    T_CHECK((qt ? kern_qgemv_qkv(0, &qw, K, dx, R, dn, 1e-6f, db, st, nh, dinv, dq2, b, n_sms, 1)
                : kern_gemv_qkv(0, dW, wdt, K, dx, R, dn, 1e-6f, db, st, nh, dinv, dq2, b, n_sms, 1)) == 0);
    if (!sync_ok() || !down(q1, dq1, (size_t)R * nh * hd * 4) || !down(q2, dq2, (size_t)R * nh * hd * 4) ||
        !kv_down(kv1, dkv1, pool, dt) || !kv_down(kv2, dkv2, pool, dt)) { T_CHECK(0); goto done; }
    double num = 0, den = 0, numk = 0, denk = 0;
    size_t nan_mismatch = 0;
    for (int i = 0; i < R * nh * hd; i++) {
        num += ((double)q1[i] - q2[i]) * ((double)q1[i] - q2[i]);
        den += (double)q1[i] * q1[i];
        nan_mismatch += !isfinite(q1[i]) || !isfinite(q2[i]);
    }
    for (size_t i = 0; i < pool; i++) {
        if (isfinite(kv1[i]) != isfinite(kv2[i])) { nan_mismatch++; continue; }
        if (!isfinite(kv1[i])) continue;
        numk += ((double)kv1[i] - kv2[i]) * ((double)kv1[i] - kv2[i]);
        denk += (double)kv1[i] * kv1[i];
    }
    /* f32 pool: one sum, 1e-6; bf16 pool: a value 1e-6 apart may round to
     * neighbouring bf16 values (2^-8 apart), so the pool gets 1e-3 */
    double e = den > 0 ? sqrt(num / den) : INFINITY, ek = denk > 0 ? sqrt(numk / denk) : INFINITY;
    if (dt != KERN_BF16) { e = den + denk > 0 ? sqrt((num + numk) / (den + denk)) : INFINITY; ek = e; }
    T_CHECKF(e <= 1e-6 && ek <= (dt == KERN_BF16 ? 1e-3 : 1e-6) && nan_mismatch == 0,
             "R=%d nh=%d nkv=%d hd=%d K=%d %s sms=%d %s: rel err q %.3g, KV %.3g, %zu cells written by "
             "one only", R, nh, nkv, hd, K, qt ? eng_dt_name(qt[0]) : wdt ? "bf16" : "f32", n_sms,
             dt_name(dt), e, ek, nan_mismatch);
done:
    free(W); free(x); free(nwt); free(bias); free(invf); free(q1); free(q2); free(kv1); free(kv2); free(Wb);
    dfree_all();
}

static void test_gemv_qkv(void) {
    g_rng = 405;
    const int rs[5] = {1, 2, 3, 5, 8};
    for (int dt = KERN_F32; dt <= KERN_BF16; dt++)
        for (int ri = 0; ri < 5; ri++) {
            const int R = rs[ri];
            qkv_case(R, 12, 2, 128, 1536, KERN_BF16, 132, dt, NULL);   /* Qwen2.5-1.5B */
            qkv_case(R, 4, 2, 16, 64, KERN_F32, 132, dt, NULL);        /* the tiny fixture's shape */
            qkv_case(R, 14, 2, 64, 896, KERN_BF16, 40, dt, NULL);      /* Qwen2.5-0.5B, fewer SMs */
            qkv_case(R, 12, 2, 128, 1536, KERN_BF16, 1, dt, NULL);     /* one SM: blocks take many rounds */
        }
    /* quantized: Q4_K_M's q, k in Q4_K and v in Q6_K; Q8_0; SmolLM2's Q4_1 */
    const int km[3] = {ENG_DT_Q4_K, ENG_DT_Q4_K, ENG_DT_Q6_K}, q8[3] = {ENG_DT_Q8_0, ENG_DT_Q8_0, ENG_DT_Q8_0};
    const int q41[3] = {ENG_DT_Q4_1, ENG_DT_Q4_1, ENG_DT_Q4_1};
    for (int dt = KERN_F32; dt <= KERN_BF16; dt++)
        for (int R = 1; R <= 8; R += 2) {
            qkv_case(R, 12, 2, 128, 1536, KERN_F32, 132, dt, km);
            qkv_case(R, 12, 2, 128, 1536, KERN_F32, 40, dt, q8);
            qkv_case(R, 9, 3, 64, 576, KERN_F32, 132, dt, q41);
        }
    /* rounded inputs (ENG_ACT_Q16) at the rows kern_qgemv rounds: both
     * paths round alike and sum in the same order */
    g_qkv_q16 = 1;
    for (int R = 1; R <= 2; R++) {
        qkv_case(R, 12, 2, 128, 1536, KERN_F32, 132, KERN_BF16, km);
        qkv_case(R, 9, 3, 64, 576, KERN_F32, 40, KERN_F32, q41);
    }
    g_qkv_q16 = 0;
    T_CHECK(kern_gemv(0, NULL, KERN_BF16, 16, 16, NULL, 1, NULL, 0, KERN_ROPE, NULL, 1, 0) != 0);
}

/* ------------------------------------------------------- attention */
/* v2: run kern_attention2 (variant 2, default span) instead; window > 0:
 * each row sees its last window positions only (kern_attention); dt: the
 * pool's element type (the reference reads the values it holds). */
/* dst = the host's ENG_ACT_Q16 rounding (quant_block.h, the CPU
 * reference's rule) of src, n elements in whole groups of 16. */
static void q16_host(float *dst, const float *src, size_t n) {
    for (size_t g = 0; g < n; g += 16) {
        float amax = 0.f;
        for (int k = 0; k < 16; k++) amax = fmaxf(amax, fabsf(src[g + k]));
        for (int k = 0; k < 16; k++) dst[g + k] = eng_qb_act_q16_value(src[g + k], amax);
    }
}

/* Elements of the f32 rows got (n, whole groups of 16) that are not the
 * host's rounding of out, the same kernel's f32 output: an attention kernel
 * with KERN_ACT_Q16 must round its own output bit for bit (-1: got not
 * read). */
static long q16_diff(const void *dgot, const float *out, size_t n) {
    float *got = malloc(n * 4), *want = malloc(n * 4);
    long bad = -1;
    if (got && want && sync_ok() && down(got, dgot, n * 4)) {
        q16_host(want, out, n);
        bad = 0;
        for (size_t i = 0; i < n; i++) bad += got[i] != want[i];
    }
    free(got);
    free(want);
    return bad;
}

static void attn_case(int nh, int nkv, int hd, int splits, int v2, int window, int dt, int bs) {
    enum { NS = 3 };
    const int lens[NS] = {1, 17, 300}, n_blocks = 40;
    int stride = (300 + bs - 1) / bs;
    int *table = malloc(NS * stride * 4), perm[40];
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(rnd64() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j]; perm[j] = t;
    }
    int used = 0;
    for (int s = 0; s < NS; s++)
        for (int i = 0; i < stride; i++)
            table[s * stride + i] = i * bs < lens[s] ? perm[used++] : 0;
    /* rows: the last position of each sequence, then 10 prefill rows of seq 2 */
    int R = NS + 10, seqs[NS + 10], pos[NS + 10];
    for (int s = 0; s < NS; s++) { seqs[s] = s; pos[s] = lens[s] - 1; }
    for (int i = 0; i < 10; i++) { seqs[NS + i] = 2; pos[NS + i] = 250 + i; }
    size_t blk = (size_t)2 * nkv * bs * hd, pool = blk * n_blocks;
    float *kv = malloc(pool * 4), *q = malloc((size_t)R * nh * hd * 4), *out = malloc((size_t)R * nh * hd * 4);
    double *ref = malloc((size_t)R * nh * hd * 8), *sc = malloc(300 * 8);
    if (!table || !kv || !q || !out || !ref || !sc) { T_CHECK(0); goto done; }
    for (size_t i = 0; i < pool; i++) kv[i] = nrand();
    kv_round(kv, pool, dt);
    for (int i = 0; i < R * nh * hd; i++) q[i] = nrand();
    int G = nh / nkv;
    for (int r = 0; r < R; r++)
        for (int h = 0; h < nh; h++) {
            int kh = h / G, L = pos[r] + 1;
            int t0 = window > 0 && L > window ? L - window : 0;
            double mx = -1e300, sum = 0;
            for (int t = t0; t < L; t++) {
                const float *k = kv + (size_t)table[seqs[r] * stride + t / bs] * blk + ((size_t)kh * bs + t % bs) * hd;
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)q[(r * nh + h) * hd + i] * k[i];
                sc[t] = d / sqrt((double)hd);
                if (sc[t] > mx) mx = sc[t];
            }
            for (int t = t0; t < L; t++) { sc[t] = exp(sc[t] - mx); sum += sc[t]; }
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int t = t0; t < L; t++) {
                    const float *v = kv + (size_t)table[seqs[r] * stride + t / bs] * blk + (size_t)nkv * bs * hd +
                                     ((size_t)kh * bs + t % bs) * hd;
                    o += sc[t] * v[i];
                }
                ref[(r * nh + h) * hd + i] = o / sum;
            }
        }
    kern_step *st = make_step(R, NULL, pos, seqs, table, NS, stride, 0, NULL, NULL, NULL, NULL, NULL);
    void *dkv = kv_upload(kv, pool, dt);
    float *dq = dup_up(q, (size_t)R * nh * hd * 4);
    float *dout = dnew((size_t)R * nh * hd * 4);
    float *dpart = dnew(kern_attn_part_floats(R, nh, hd, splits) * 4 + 16);
    unsigned *dcnt = dnew((size_t)R * nkv * 4), cnt[64];
    uint16_t *dact = dnew((size_t)R * nh * hd * 4), *hact = malloc((size_t)R * nh * hd * 4);
    if (!st || !dkv || !dq || !dout || !dpart || !dcnt || !dact || !hact) { T_CHECK(0); free(hact); goto done; }
    cudaMemset(dcnt, 0, (size_t)R * nkv * 4);
    kern_kv k = {dkv, (long long)blk, nkv, hd, bs, window, dt};
    T_CHECK((v2 ? kern_attention2(0, dq, k, st, R, nh, splits, 0, dout, NULL, 0, dpart, dcnt, 1)
                 : kern_attention(0, dq, k, st, R, nh, splits, dout, NULL, 0, dpart, dcnt, 1)) == 0);
    double e = sync_ok() && down(out, dout, (size_t)R * nh * hd * 4) ? rel_err(out, ref, (size_t)R * nh * hd)
                                                                   : INFINITY;
    T_CHECKF(e <= 1e-5, "v%d nh=%d nkv=%d hd=%d splits=%d window=%d %s block %d: rel err %.3g", v2 ? 2 : 1,
             nh, nkv, hd, splits, window, dt_name(dt), bs, e);
    const int q16m = KERN_ACT_F32 | KERN_ACT_Q16;
    T_CHECK((v2 ? kern_attention2(0, dq, k, st, R, nh, splits, 0, NULL, dact, q16m, dpart, dcnt, 0)
                 : kern_attention(0, dq, k, st, R, nh, splits, NULL, dact, q16m, dpart, dcnt, 0)) == 0);
    long bad = q16_diff(dact, out, (size_t)R * nh * hd);
    T_CHECKF(bad == 0, "v%d nh=%d hd=%d splits=%d window=%d %s, KERN_ACT_Q16: %ld elements not rounded "
             "as the host rounds", v2 ? 2 : 1, nh, hd, splits, window, dt_name(dt), bad);
    /* the split counters are back at zero; the same into hi/lo bf16 rows */
    int nz = 0;
    if (down(cnt, dcnt, (size_t)R * nkv * 4))
        for (int i = 0; i < R * nkv; i++) nz += cnt[i] != 0;
    T_CHECKF(nz == 0, "%d split counters left non-zero", nz);
    T_CHECK((v2 ? kern_attention2(0, dq, k, st, R, nh, splits, 0, NULL, dact, KERN_ACT_SPLIT, dpart, dcnt, 0)
                 : kern_attention(0, dq, k, st, R, nh, splits, NULL, dact, KERN_ACT_SPLIT, dpart, dcnt, 0)) == 0);
    if (sync_ok() && down(hact, dact, (size_t)R * nh * hd * 4)) {
        size_t n = (size_t)R * nh * hd;
        for (size_t i = 0; i < n; i++) out[i] = bf16_val(hact[i]) + bf16_val(hact[n + i]);
        e = rel_err(out, ref, n);
    } else e = INFINITY;
    T_CHECKF(e <= 2e-5, "nh=%d hd=%d splits=%d %s into hi/lo bf16: rel err %.3g", nh, hd, splits,
             dt_name(dt), e);
    free(hact);
done:
    free(table); free(kv); free(q); free(out); free(ref); free(sc);
    dfree_all();
}

static void test_attention(void) {
    g_rng = 505;
    int cfg[4][3] = {{4, 2, 16}, {4, 1, 16}, {12, 2, 128}, {14, 2, 64}};
    int splits[3] = {1, 3, 64};
    for (int dt = KERN_F32; dt <= KERN_BF16; dt++)
        for (int c = 0; c < 4; c++)
            for (int s = 0; s < 3; s++) attn_case(cfg[c][0], cfg[c][1], cfg[c][2], splits[s], 0, 0, dt, 16);
    /* sliding windows (Gemma 3): inside one block, across blocks, longer
     * than some rows' contexts; head_dim 256 (Gemma 3 270M: 4 heads, 1 kv) */
    int windows[3] = {6, 100, 512};
    for (int dt = KERN_F32; dt <= KERN_BF16; dt++)
        for (int w = 0; w < 3; w++)
            for (int s = 0; s < 3; s++) {
                attn_case(4, 1, 16, splits[s], 0, windows[w], dt, 16);
                attn_case(4, 1, 256, splits[s], 0, windows[w], dt, 16);
            }
    T_CHECK(kern_attn_splits(1, 2, 132) > 1 && kern_attn_splits(256, 2, 132) == 1);
    /* the other attention kernels refuse a window */
    kern_kv win = {(float *)16, 1024, 1, 64, 16, 6, KERN_F32};
    T_CHECK(kern_attention2(0, NULL, win, NULL, 1, 4, 1, 0, NULL, NULL, 0, NULL, NULL, 0) != 0);
    T_CHECK(kern_attention3(0, NULL, win, NULL, 1, 4, 1, 0, NULL, NULL, 0, NULL, NULL, 0) != 0);
    T_CHECK(kern_attention_prefill(0, NULL, win, NULL, 1, 4, NULL, NULL, 0, 0) != 0);
    /* an element type other than f32 / bf16 is refused */
    kern_kv bad = {(float *)16, 1024, 1, 64, 16, 0, 7};
    T_CHECK(kern_attention(0, NULL, bad, NULL, 1, 4, 1, NULL, NULL, 0, NULL, NULL, 0) != 0);
    T_CHECK(kern_attention2(0, NULL, bad, NULL, 1, 4, 1, 0, NULL, NULL, 0, NULL, NULL, 0) != 0);
    T_CHECK(kern_attention3(0, NULL, bad, NULL, 1, 4, 1, 0, NULL, NULL, 0, NULL, NULL, 0) != 0);
    T_CHECK(kern_attention_prefill(0, NULL, bad, NULL, 1, 4, NULL, NULL, 0, 0) != 0);
}

/* ---------------------------------------- attention, variants 2 and 3 */
/* kern_attention2 and kern_attention3 against the same double-precision
 * reference and tolerances as kern_attention: sequences of 1, 15, 16, 17,
 * 1000 and 4000 tokens in one batch (their last positions plus prefill
 * rows of the longest), then each sequence alone (batch-1 decode, where
 * the context is split over blocks), with several split caps and spans. */
enum { A2_NS = 6 };
static const int a2_lens[A2_NS] = {1, 15, 16, 17, 1000, 4000};

typedef struct a2_fix {
    int nh, nkv, hd, bs, stride, n_blocks;
    int *table;
    float *kv, *q;      /* kv: the values the pool holds (bf16-rounded for a bf16 pool) */
    void *dkv;
    float *dq;
    int dt;             /* the pool's element type */
} a2_fix;

/* Reference output of one row (sequence seq at position pos): ref[nh*hd]. */
static void a2_ref(const a2_fix *f, int seq, int pos, const float *q, double *ref, double *sc) {
    int G = f->nh / f->nkv, hd = f->hd, bs = f->bs;
    size_t blk = (size_t)2 * f->nkv * bs * hd;
    for (int h = 0; h < f->nh; h++) {
        int kh = h / G, L = pos + 1;
        double mx = -1e300, sum = 0;
        for (int t = 0; t < L; t++) {
            const float *k = f->kv + (size_t)f->table[seq * f->stride + t / bs] * blk + ((size_t)kh * bs + t % bs) * hd;
            double d = 0;
            for (int i = 0; i < hd; i++) d += (double)q[h * hd + i] * k[i];
            sc[t] = d / sqrt((double)hd);
            if (sc[t] > mx) mx = sc[t];
        }
        for (int t = 0; t < L; t++) { sc[t] = exp(sc[t] - mx); sum += sc[t]; }
        for (int i = 0; i < hd; i++) ref[h * hd + i] = 0;
        for (int t = 0; t < L; t++) {
            const float *v = f->kv + (size_t)f->table[seq * f->stride + t / bs] * blk + (size_t)f->nkv * bs * hd +
                             ((size_t)kh * bs + t % bs) * hd;
            for (int i = 0; i < hd; i++) ref[h * hd + i] += sc[t] * v[i];
        }
        for (int i = 0; i < hd; i++) ref[h * hd + i] /= sum;
    }
}

typedef int (*attn_fn)(cudaStream_t, const float *, kern_kv, const kern_step *, int, int, int, int,
                       float *, void *, int, float *, unsigned *, int);

/* Runs variants 2 and 3 on R rows into f32 and into hi/lo bf16 with a
 * poisoned output each time; checks both and the counters. */
static void a2_run(const a2_fix *f, int R, const int *seqs, const int *pos, const double *ref,
                   int splits, int span, const char *what) {
    size_t n = (size_t)R * f->nh * f->hd;
    float *out = malloc(n * 4);
    uint16_t *hact = malloc(n * 4);
    unsigned cnt[64];
    const int mark = g_ndev;
    kern_step *st = make_step(R, NULL, pos, seqs, f->table, A2_NS, f->stride, 0, NULL, NULL, NULL, NULL, NULL);
    float *dout = dnew(n * 4), *dpart = dnew(kern_attn_part_floats(R, f->nh, f->hd, splits) * 4 + 16);
    unsigned *dcnt = dnew((size_t)R * f->nkv * 4);
    uint16_t *dact = dnew(n * 4);
    if (!out || !hact || !st || !dout || !dpart || !dcnt || !dact) { T_CHECK(0); goto done; }
    cudaMemset(dcnt, 0, (size_t)R * f->nkv * 4);
    kern_kv k = {f->dkv, (long long)2 * f->nkv * f->bs * f->hd, f->nkv, f->hd, f->bs, 0, f->dt};
    for (int v = 2; v <= 5; v++) {
        attn_fn fn = v == 2 ? kern_attention2 : v == 3 ? kern_attention3 : v == 4 ? kern_attention4
                                                                                  : kern_attention5;
        cudaMemset(dout, 0xFF, n * 4);
        T_CHECK(fn(0, f->dq, k, st, R, f->nh, splits, span, dout, NULL, 0, dpart, dcnt, 1) == 0);
        double e = sync_ok() && down(out, dout, n * 4) ? rel_err(out, ref, n) : INFINITY;
        T_CHECKF(e <= 1e-5, "attn%d %s nh=%d nkv=%d hd=%d splits=%d span=%d %s: rel err %.3g", v, what,
                 f->nh, f->nkv, f->hd, splits, span, dt_name(f->dt), e);
        int nz = 0;
        if (down(cnt, dcnt, (size_t)R * f->nkv * 4))
            for (int i = 0; i < R * f->nkv; i++) nz += cnt[i] != 0;
        T_CHECKF(nz == 0, "attn%d %s: %d split counters left non-zero", v, what, nz);
        cudaMemset(dact, 0xFF, n * 4);
        T_CHECK(fn(0, f->dq, k, st, R, f->nh, splits, span, NULL, dact, KERN_ACT_F32 | KERN_ACT_Q16, dpart,
                   dcnt, 0) == 0);
        const long bad = q16_diff(dact, out, n);
        T_CHECKF(bad == 0, "attn%d %s hd=%d splits=%d span=%d %s, KERN_ACT_Q16: %ld elements not rounded "
                 "as the host rounds", v, what, f->hd, splits, span, dt_name(f->dt), bad);
        cudaMemset(dact, 0xFF, n * 4);
        T_CHECK(fn(0, f->dq, k, st, R, f->nh, splits, span, NULL, dact, KERN_ACT_SPLIT, dpart, dcnt, 0) == 0);
        if (sync_ok() && down(hact, dact, n * 4)) {
            for (size_t i = 0; i < n; i++) out[i] = bf16_val(hact[i]) + bf16_val(hact[n + i]);
            e = rel_err(out, ref, n);
        } else e = INFINITY;
        T_CHECKF(e <= 2e-5, "attn%d %s nh=%d hd=%d splits=%d span=%d %s into hi/lo bf16: rel err %.3g", v,
                 what, f->nh, f->hd, splits, span, dt_name(f->dt), e);
    }
done:
    free(out); free(hact);
    dfree_to(mark);
}

/* kern_attention_prefill on prompt-like rows of the a2 fixture: runs of
 * consecutive positions of one sequence interleaved with other sequences'
 * rows (tiles hold several groups), against the double reference, into f32
 * and hi/lo bf16 (outputs poisoned with NaN first). */
static void pf_case(const a2_fix *f) {
    enum { MAXR = 160 };
    int seqs[MAXR], pos[MAXR], R = 0;
    const struct { int seq, from, n; } runs[] = {{4, 0, 50}, {1, 0, 15}, {4, 50, 50}, {0, 0, 1},
                                                 {5, 3980, 20}, {3, 16, 1}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
        for (int j = 0; j < runs[i].n; j++) { seqs[R] = runs[i].seq; pos[R] = runs[i].from + j; R++; }
    int nq = f->nh * f->hd;
    size_t n = (size_t)R * nq;
    float *q = malloc(n * 4), *out = malloc(n * 4);
    uint16_t *hact = malloc(n * 4);
    double *ref = malloc(n * 8), *sc = malloc(4000 * 8);
    kern_step *st = make_step(R, NULL, pos, seqs, f->table, A2_NS, f->stride, 0, NULL, NULL, NULL, NULL, NULL);
    if (!q || !out || !hact || !ref || !sc || !st) { T_CHECK(0); goto done; }
    for (size_t i = 0; i < n; i++) q[i] = nrand();
    for (int r = 0; r < R; r++) a2_ref(f, seqs[r], pos[r], q + (size_t)r * nq, ref + (size_t)r * nq, sc);
    float *dq = dup_up(q, n * 4), *dout = dnew(n * 4);
    uint16_t *dact = dnew(n * 4);
    if (!dq || !dout || !dact) { T_CHECK(0); goto done; }
    kern_kv k = {f->dkv, (long long)2 * f->nkv * f->bs * f->hd, f->nkv, f->hd, f->bs, 0, f->dt};
    T_CHECK(kern_attention_prefill(0, dq, k, st, R, f->nh, dout, NULL, 0, 1) == 0);
    double e = sync_ok() && down(out, dout, n * 4) ? rel_err(out, ref, n) : INFINITY;
    T_CHECKF(e <= 1e-5, "prefill attention nh=%d nkv=%d hd=%d %s: rel err %.3g", f->nh, f->nkv, f->hd,
             dt_name(f->dt), e);
    /* KERN_ACT_Q16: a group of 16 dims is one thread's (hd 128) or spans
     * 16 / (hd / 8) warps (hd 64, 32) */
    T_CHECK(kern_attention_prefill(0, dq, k, st, R, f->nh, NULL, dact, KERN_ACT_F32 | KERN_ACT_Q16, 0) == 0);
    const long bad = q16_diff(dact, out, n);
    T_CHECKF(bad == 0, "prefill attention hd=%d %s, KERN_ACT_Q16: %ld elements not rounded as the host "
             "rounds", f->hd, dt_name(f->dt), bad);
    T_CHECK(kern_attention_prefill(0, dq, k, st, R, f->nh, NULL, dact, KERN_ACT_SPLIT, 0) == 0);
    if (sync_ok() && down(hact, dact, n * 4)) {
        for (size_t j = 0; j < n; j++) out[j] = bf16_val(hact[j]) + bf16_val(hact[n + j]);
        e = rel_err(out, ref, n);
    } else e = INFINITY;
    T_CHECKF(e <= 2e-5, "prefill attention hd=%d into hi/lo bf16: rel err %.3g", f->hd, e);
done:
    free(q); free(out); free(hact); free(ref); free(sc);
}

/* The keys of rows (seqs, pos) of the a2 fixture for kern_attention_gemm:
 * every block each sequence needs, in order of first use, uploaded. */
static kern_keys gemm_keys_of(const a2_fix *f, int R, const int *seqs, const int *pos, int p0) {
    kern_keys k = {0};
    int need[A2_NS] = {0}, U = 0, *blk = malloc(4000 * 4), *valid = malloc(4000 * 4);
    int *index = malloc((size_t)A2_NS * 4000 * 4);
    if (!blk || !valid || !index) goto done;
    for (int r = 0; r < R; r++)
        if (pos[r] + 1 > need[seqs[r]]) need[seqs[r]] = pos[r] + 1;
    for (int i = 0; i < A2_NS * 4000; i++) index[i] = -1;
    for (int q = 0; q < A2_NS; q++)
        for (int j = 0; j * f->bs < need[q]; j++) {
            int pb = f->table[q * f->stride + j], v = need[q] - j * f->bs, u = 0;
            while (u < U && blk[u] != pb) u++;
            if (u == U) { blk[U] = pb; valid[U] = 0; U++; }
            if (v > f->bs) v = f->bs;
            if (v > valid[u]) valid[u] = v;
            index[q * 4000 + u] = j;
        }
    for (int q = 0; q < A2_NS; q++)   /* [n_seqs][U] */
        memmove(index + q * U, index + q * 4000, (size_t)U * 4);
    k.block = dup_up(blk, (size_t)U * 4);
    k.valid = dup_up(valid, (size_t)U * 4);
    k.index = dup_up(index, (size_t)A2_NS * U * 4);
    k.n_blocks = U;
    k.n_seqs = A2_NS;
    k.p0 = p0;
done:
    free(blk); free(valid); free(index);
    return k;
}

/* kern_attention_gemm against the double reference (output poisoned with
 * NaN first): prompt rows of the 4000-token sequence from position 0 (one
 * chunk) and from 3600 with a work buffer that only fits 32-row chunks,
 * then rows of three sequences in one pass (each row must see only its own
 * sequence's keys). */
static void gemm_case(const a2_fix *f) {
    enum { MAXR = 400 };
    const int seq = A2_NS - 1, from[2] = {0, 3600}, rows[2] = {300, 400};
    int nq = f->nh * f->hd, seqs[MAXR], pos[MAXR];
    size_t n = (size_t)MAXR * nq;
    float *q = malloc(n * 4), *out = malloc(n * 4);
    double *ref = malloc(n * 8), *sc = malloc(4000 * 8);
    kern_blas *bl = NULL;
    eng_err err = {0};
    if (!q || !out || !ref || !sc || kern_blas_create(&bl, &err)) { T_CHECK(0); goto done; }
    for (size_t i = 0; i < n; i++) q[i] = nrand();
    float *dq = dup_up(q, n * 4), *dout = dnew(n * 4);
    /* three sequences: 100 rows of the 1000-token one, 50 of the longest, all 15 of the short one */
    const struct { int seq, from, n; } mix[3] = {{4, 900, 100}, {5, 3950, 50}, {1, 0, 15}};
    int keys_all = 0;
    for (int i = 0; i < 3; i++) keys_all += (mix[i].from + mix[i].n + f->bs - 1) / f->bs * f->bs;
    size_t big = kern_attention_gemm_floats(f->nh, f->hd, keys_all, 1024);
    float *work = dnew(big * 4);
    if (!dq || !dout || !work) { T_CHECK(0); goto done; }
    kern_kv k = {f->dkv, (long long)2 * f->nkv * f->bs * f->hd, f->nkv, f->hd, f->bs, 0, f->dt};
    for (int c = 0; c < 3; c++) {
        int R = 0;
        if (c < 2)
            for (int r = 0; r < rows[c]; r++) { seqs[R] = seq; pos[R] = from[c] + r; R++; }
        else
            for (int i = 0; i < 3; i++)
                for (int r = 0; r < mix[i].n; r++) { seqs[R] = mix[i].seq; pos[R] = mix[i].from + r; R++; }
        for (int r = 0; r < R; r++) a2_ref(f, seqs[r], pos[r], q + (size_t)r * nq, ref + (size_t)r * nq, sc);
        kern_step *st = make_step(R, NULL, pos, seqs, f->table, A2_NS, f->stride, 0, NULL, NULL, NULL,
                                  NULL, NULL);
        kern_keys keys = gemm_keys_of(f, R, seqs, pos, c < 2 ? from[c] : -1);
        int nk = keys.n_blocks * f->bs;
        size_t wf = c == 1 ? kern_attention_gemm_floats(f->nh, f->hd, nk, 32) : big;
        cudaMemset(dout, 0xFF, n * 4);
        int rc = st && keys.block && keys.valid && keys.index
                     ? kern_attention_gemm(bl, 0, dq, k, st, keys, R, f->nh, work, wf, dout, 1, &err) : -1;
        T_CHECKF(rc == 0, "gemm attention case %d: %s", c, err.msg);
        double e = rc == 0 && sync_ok() && down(out, dout, (size_t)R * nq * 4)
                       ? rel_err(out, ref, (size_t)R * nq) : INFINITY;
        T_CHECKF(e <= 1e-5, "gemm attention nh=%d nkv=%d hd=%d %s case %d (%d rows, %d keys): rel err "
                 "%.3g", f->nh, f->nkv, f->hd, dt_name(f->dt), c, R, nk, e);
        /* a buffer under one 16-row chunk is refused, not overrun */
        T_CHECK(kern_attention_gemm(bl, 0, dq, k, st, keys, R, f->nh, work,
                                    kern_attention_gemm_floats(f->nh, f->hd, nk, 16) - 1, dout, 1,
                                    &err) == ENG_EINVAL);
    }
done:
    kern_blas_destroy(bl);
    free(q); free(out); free(ref); free(sc);
}

static void attn2_case(int nh, int nkv, int hd, int dt) {
    a2_fix f = {nh, nkv, hd, 16, (4000 + 15) / 16, 0, NULL, NULL, NULL, NULL, NULL, dt};
    for (int s = 0; s < A2_NS; s++) f.n_blocks += (a2_lens[s] + f.bs - 1) / f.bs;
    size_t blk = (size_t)2 * nkv * f.bs * hd, pool = blk * f.n_blocks;
    /* rows: each sequence's last position, then prefill rows of the longest */
    enum { NR = A2_NS + 4 };
    int seqs[NR], pos[NR], nq = nh * hd;
    for (int s = 0; s < A2_NS; s++) { seqs[s] = s; pos[s] = a2_lens[s] - 1; }
    const int pre[4] = {0, 15, 511, 2047};
    for (int i = 0; i < 4; i++) { seqs[A2_NS + i] = A2_NS - 1; pos[A2_NS + i] = pre[i]; }
    int *perm = malloc(f.n_blocks * 4);
    double *ref = malloc((size_t)NR * nq * 8), *sc = malloc(4000 * 8);
    f.table = calloc((size_t)A2_NS * f.stride, 4);
    f.kv = malloc(pool * 4);
    f.q = malloc((size_t)NR * nq * 4);
    if (!perm || !ref || !sc || !f.table || !f.kv || !f.q) { T_CHECK(0); goto done; }
    for (int i = 0; i < f.n_blocks; i++) perm[i] = i;
    for (int i = f.n_blocks - 1; i > 0; i--) {
        int j = (int)(rnd64() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j]; perm[j] = t;
    }
    int used = 0;
    for (int s = 0; s < A2_NS; s++)
        for (int i = 0; i * f.bs < a2_lens[s]; i++) f.table[s * f.stride + i] = perm[used++];
    for (size_t i = 0; i < pool; i++) f.kv[i] = nrand();
    kv_round(f.kv, pool, dt);
    for (int i = 0; i < NR * nq; i++) f.q[i] = nrand();
    for (int r = 0; r < NR; r++) a2_ref(&f, seqs[r], pos[r], f.q + (size_t)r * nq, ref + (size_t)r * nq, sc);
    f.dkv = kv_upload(f.kv, pool, dt);
    f.dq = dup_up(f.q, (size_t)NR * nq * 4);
    if (!f.dkv || !f.dq) { T_CHECK(0); goto done; }
    /* the whole batch: split caps as the backend picks them and forced */
    kern_kv shape = {f.dkv, (long long)2 * nkv * f.bs * hd, nkv, hd, f.bs, 0, dt};
    const int s4 = kern_attn4_splits(NR, shape, nh, 0, 4000, 132);
    T_CHECKF(s4 >= 1 && s4 <= 64, "kern_attn4_splits: %d", s4);
    const int s5 = kern_attn5_splits(NR, shape, nh, 0, 4000, 132);
    T_CHECKF(s5 >= 1 && s5 <= 64, "kern_attn5_splits: %d", s5);
    /* where variant 4 is meant to serve: 8 or 64 rows of 4,000 positions
     * (variant 3's 17 splits of 128, 3 of 256, leave each block several
     * chunks), not of 150, nor one row, nor past 64 rows */
    T_CHECK(kern_attn_long(8, shape, nh, 0, 4000, 132) == 1);
    T_CHECK(kern_attn_long(64, shape, nh, 0, 4000, 132) == 1);
    T_CHECK(kern_attn_long(8, shape, nh, 0, 150, 132) == 0);
    T_CHECK(kern_attn_long(1, shape, nh, 0, 16000, 132) == 0);
    T_CHECK(kern_attn_long(65, shape, nh, 0, 4000, 132) == 0);
    /* variant 5 in variant 4's place: a bf16 pool at 8-64 rows */
    T_CHECK(kern_attn5_takes(8, shape, nh) == (dt == KERN_BF16));
    T_CHECK(kern_attn5_takes(64, shape, nh) == (dt == KERN_BF16));
    T_CHECK(kern_attn5_takes(4, shape, nh) == 0 && kern_attn5_takes(65, shape, nh) == 0);
    /* spans: the defaults, and variant 5's 2-, 6- and 8-warp blocks */
    int caps[5] = {kern_attn_splits(NR, nkv, 132), 3, 64, s4, s5}, spans[4] = {0, 16, 100, 1000};
    for (int c = 0; c < 5; c++)
        for (int p = 0; p < 4; p++) a2_run(&f, NR, seqs, pos, ref, caps[c], spans[p], "batch");
    /* each sequence alone at batch 1 (its q row is row s of the batch) */
    float *dq_all = f.dq;
    for (int s = 0; s < A2_NS; s++) {
        char what[32];
        snprintf(what, sizeof what, "len %d alone", a2_lens[s]);
        f.dq = dq_all + (size_t)s * nq;
        for (int p = 0; p < 2; p++)
            a2_run(&f, 1, &seqs[s], &pos[s], ref + (size_t)s * nq, kern_attn_splits(1, nkv, 132),
                   spans[p], what);
    }
    f.dq = dq_all;
    pf_case(&f);
    gemm_case(&f);
done:
    free(perm); free(ref); free(sc); free(f.table); free(f.kv); free(f.q);
    dfree_all();
}

static void test_attention2(void) {
    g_rng = 506;
    /* GQA 6 and 7 (Qwen2.5 1.5B: 12/2, 0.5B: 14/2) at head_dim 64 and 128 */
    int cfg[4][3] = {{12, 2, 128}, {14, 2, 64}, {12, 2, 64}, {14, 2, 128}};
    for (int c = 0; c < 4; c++) attn2_case(cfg[c][0], cfg[c][1], cfg[c][2], KERN_F32);
    attn2_case(8, 2, 32, KERN_F32);   /* variant 3/4's smallest heads over an f32 pool */
    /* the original small cases: hd 16 falls back to kern_attention, the
     * GQA 6 / 7 cases run variant 2 on 1-, 17- and 300-token contexts */
    int small[4][3] = {{4, 2, 16}, {4, 1, 16}, {12, 2, 128}, {14, 2, 64}}, splits[3] = {1, 3, 64};
    for (int dt = KERN_F32; dt <= KERN_BF16; dt++)
        for (int c = 0; c < 4; c++)
            for (int s = 0; s < 3; s++) attn_case(small[c][0], small[c][1], small[c][2], splits[s], 1, 0, dt, 16);
    /* blocks of 12 positions (not a power of two): variant 2 steps a lane's
     * positions' block and slot by its group stride (8 positions at head_dim
     * 128: within a block; 16 at 64: a block and 4) */
    for (int c = 2; c < 4; c++)
        for (int s = 0; s < 3; s++) attn_case(small[c][0], small[c][1], small[c][2], splits[s], 1, 0, KERN_F32, 12);
}

/* Variants 2 and 3, the prefill and the cuBLAS attention over a bf16 pool:
 * the same cases and tolerances against a reference that reads the bf16
 * values (1.5B's and 0.5B's heads, and head_dim 32, variant 3's smallest). */
static void test_attention_kv_bf16(void) {
    g_rng = 507;
    attn2_case(12, 2, 128, KERN_BF16);
    attn2_case(14, 2, 64, KERN_BF16);
    attn2_case(8, 2, 32, KERN_BF16);
}

/* -------------------------------------------------------- sampling */
typedef struct rank_ent { float l; int id; } rank_ent;
static int rank_cmp(const void *a, const void *b) {
    const rank_ent *x = a, *y = b;
    if (x->l != y->l) return x->l > y->l ? -1 : 1;
    return x->id - y->id;
}

/* Checks the GPU's pick id for draw u against temperature / top-k / top-p
 * semantics computed here; returns 1 if consistent. */
static int sample_ok(const float *l, int V, float T, int k, float p, double u, int id,
                     const rank_ent *order, char *why, size_t whylen) {
    double m = order[0].l;
    int nk = (k > 0 && k < V) ? k : V;
    char *kept = calloc(V, 1);
    if (!kept) return 0;
    double W = 0;
    for (int i = 0; i < nk; i++) W += exp((order[i].l - m) / T);
    float tau = order[nk - 1].l;
    if (p > 0 && p < 1) {
        double cum = 0;
        for (int i = 0; i < nk; i++) {
            cum += exp((order[i].l - m) / T);
            if (cum >= p * W) { tau = order[i].l; break; }
        }
    }
    for (int i = 0; i < nk; i++)
        if (order[i].l >= tau) kept[order[i].id] = 1;
    double W2 = 0, lo = -1, hi = -1;
    for (int i = 0; i < V; i++)
        if (kept[i]) {
            double w = exp((l[i] - m) / T);
            if (i == id) { lo = W2; hi = W2 + w; }
            W2 += w;
        }
    int ok = id >= 0 && id < V && kept[id] && lo / W2 - 1e-6 <= u && u <= hi / W2 + 1e-6;
    if (!ok) snprintf(why, whylen, "id %d kept %d interval [%.6f, %.6f) u %.6f", id,
                      id >= 0 && id < V ? kept[id] : -1, lo / W2, hi / W2, u);
    free(kept);
    return ok;
}

static void sample_case(int V) {
    enum { O = 8 };
    float *l = malloc((size_t)O * V * 4);
    rank_ent *order = malloc((size_t)V * sizeof *order);
    if (!l || !order) { T_CHECK(0); free(l); free(order); return; }
    for (int i = 0; i < V; i++) l[i] = 2.0f * nrand();
    float mx = l[0];
    for (int i = 1; i < V; i++) if (l[i] > mx) mx = l[i];
    l[37] = l[V / 2] = mx + 1.0f;   /* a tie at the top: the lower id wins */
    for (int o = 1; o < O; o++) memcpy(l + (size_t)o * V, l, (size_t)V * 4);
    for (int i = 0; i < V; i++) { order[i].l = l[i]; order[i].id = i; }
    qsort(order, V, sizeof *order, rank_cmp);
    double m = order[0].l, s = 0, sl = 0;
    for (int i = 0; i < V; i++) s += exp(l[i] - m);
    for (int i = 0; i < V; i++) sl += exp(l[i] - m) / s * (l[i] - m - log(s));
    double logz = m + log(s), ent = -sl;
    struct { float T; int k; float p; } set[6] = {
        {0, 0, 1}, {0.7f, 0, 1}, {1, 50, 1}, {1.3f, 0, 0.9f}, {0.8f, 40, 0.8f}, {1, 1, 1}};
    float *dl = dup_up(l, (size_t)O * V * 4);
    int *dids = dnew(O * 4);
    float *dlp = dnew(O * 4), *dent = dnew(O * 4), *dscr = dnew(O * 16 * 16);
    unsigned *dcnt = dnew(O * 4);
    if (!dl || !dids || !dlp || !dent || !dscr || !dcnt) { T_CHECK(0); goto done; }
    cudaMemset(dcnt, 0, O * 4);
    for (int c = 0; c < 6; c++) {
        float temp[O], topp[O];
        int topk[O], rows[O], ids[O];
        double u[O];
        float lp[O], en[O];
        for (int o = 0; o < O; o++) {
            temp[o] = set[c].T; topk[o] = set[c].k; topp[o] = set[c].p; rows[o] = o;
            u[o] = o == 0 ? 0.0 : o == O - 1 ? 0.999999 : urand();
        }
        kern_step *st = make_step(0, NULL, NULL, NULL, NULL, 0, 0, O, rows, temp, topk, topp, u);
        cudaMemset(dids, 0xFF, O * 4);
        int blocks = c % 2 ? 7 : c == 4 ? 16 : 1;   /* first pass in 1, 7 or 16 blocks per row */
        T_CHECK(st && kern_sample(0, dl, NULL, O, V, st, dids, dlp, dent, blocks, dscr, dcnt, 1) == 0);
        unsigned cnt[O];
        if (!sync_ok() || !down(ids, dids, O * 4) || !down(lp, dlp, O * 4) || !down(en, dent, O * 4) ||
            !down(cnt, dcnt, O * 4)) {
            T_CHECK(0);
            break;
        }
        for (int o = 0; o < O; o++) T_CHECKF(cnt[o] == 0, "sampling counter %d left at %u", o, cnt[o]);
        for (int o = 0; o < O; o++) {
            char why[160] = "";
            if (set[c].T <= 0) T_CHECKF(ids[o] == 37, "V=%d greedy picked %d, want 37", V, ids[o]);
            else T_CHECKF(sample_ok(l, V, set[c].T, set[c].k, set[c].p, u[o], ids[o], order, why, sizeof why),
                          "V=%d T=%.2f k=%d p=%.2f: %s", V, set[c].T, set[c].k, set[c].p, why);
            if (ids[o] >= 0 && ids[o] < V) {
                double want = l[ids[o]] - logz;
                T_CHECKF(fabs(lp[o] - want) <= 1e-3, "logprob %.6f want %.6f", lp[o], want);
            }
            T_CHECKF(fabs(en[o] - ent) <= 1e-3, "entropy %.6f want %.6f", en[o], ent);
        }
        if (set[c].k == 1)
            for (int o = 0; o < O; o++) T_CHECKF(ids[o] == 37, "top-k 1 picked %d", ids[o]);
    }
done:
    free(l); free(order);
    dfree_all();
}

static void test_sample(void) {
    g_rng = 606;
    sample_case(1000);
    sample_case(151936);
}

/* ------------------------------------------------ whole-model fixtures */
#define MAXTOK 1100
#define NGEN 64

typedef struct fprompt { int *ids, n_ids, n_prompt, row_offset; } fprompt;
typedef struct fixture {
    const char *name;
    eng_model *m;
    int vocab, rows, n_prompts, tok_vocab;
    fprompt p[8];
    float *ref;
    int gen[3][8][NGEN];    /* CPU backend's greedy continuations: f32 KV, bf16 KV (f32 or q16
                               activations, one per fixture), bf16 activations (f32 KV) */
    int have_gen[3];
    int (*cpu_gen)[NGEN];   /* gen[gen_slot()]: set by fixture_cpu_gen */
} fixture;

#define N_FX 4
static fixture fx[N_FX] = {{.name = "tiny-qwen2"}, {.name = "tiny-llama"}, {.name = "tiny-qwen3"},
                           {.name = "tiny-gemma3"}};

static char *slurp(const char *path, size_t *len) {
    char *b = NULL;
    eng_read_file(path, 0, &b, len, NULL);
    return b;
}

static int json_int(const cJSON *o, const char *k, int *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valueint;
    return 1;
}

static int fixture_load(fixture *f) {
    if (f->m) return 1;
    char path[512];
    eng_err err = {0};
    snprintf(path, sizeof path, "tests/fixtures/%s", f->name);
    if (eng_model_load(path, &f->m, &err)) { printf("  %s: %s\n", path, err.msg); return 0; }
    snprintf(path, sizeof path, "tests/fixtures/%s/ref.json", f->name);
    char *js = slurp(path, NULL);
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    free(js);
    if (!root || !json_int(root, "vocab", &f->vocab) || !json_int(root, "rows", &f->rows)) {
        printf("  cannot read %s\n", path);
        cJSON_Delete(root);
        return 0;
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "prompts")) {
        if (f->n_prompts == 8) break;
        fprompt *q = &f->p[f->n_prompts];
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(p, "ids"), *id;
        q->n_ids = cJSON_GetArraySize(ids);
        q->ids = malloc(sizeof(int) * (q->n_ids + 1));
        if (!q->ids || !json_int(p, "n_prompt", &q->n_prompt) || !json_int(p, "row_offset", &q->row_offset))
            break;
        int i = 0;
        cJSON_ArrayForEach(id, ids) q->ids[i++] = id->valueint;
        f->n_prompts++;
    }
    cJSON_Delete(root);
    snprintf(path, sizeof path, "tests/fixtures/%s/ref_logits.bin", f->name);
    size_t len = 0;
    f->ref = (float *)slurp(path, &len);
    if (!f->ref || len != (size_t)f->rows * f->vocab * 4 || f->n_prompts < 1) {
        printf("  %s: bad reference logits\n", path);
        return 0;
    }
    f->tok_vocab = eng_tok_vocab_size(eng_model_tok(f->m));
    return eng_model_config(f->m)->vocab_size == f->vocab;
}

/* A sequence as the test's small driver keeps it. */
typedef struct tseq {
    int blk[128], nblk, len;      /* KV blocks, tokens already in the cache */
    int toks[MAXTOK], ntok;       /* every token known (processed or pending) */
} tseq;

typedef struct tdrv {
    eng_backend *b;
    int next_blk, n_blocks, bs, vocab;
} tdrv;

#define TBLOCKS 1024
#define TBS 16

/* > 0: drv_open's CUDA backends are split over this many GPUs through NCCL
 * (eng_backend_cuda_tp_create, default options; test_tp_backend). */
static int g_tp;
/* The KV format of every backend the fixture tests open, CPU and CUDA alike
 * (ENG_KV_F32 but in the bf16 KV tests, which compare the two in bf16). */
static int g_kv = ENG_KV_F32;
/* Logits of the two backends with bf16 KV pools: the same bf16 values
 * except where f32 results a rounding apart land on neighbouring bf16
 * values (1e-3 relative, vs 1e-4 with f32 pools); against transformers
 * within the CPU reference's own bf16 distance (test_engine: 5e-3 worst). */
#define TOL_KV_BF16 1e-3
#define TOL_KV_BF16_REF 1e-2
/* The activation format of every backend drv_open makes (ENG_ACT_Q16 in
 * test_act_q16 only). */
static int g_act = ENG_ACT_F32;
/* Logits of the two backends with ENG_ACT_Q16 over a long context: an
 * input whose f32 values on the two sides differ by a rounding and lie
 * across a q2 edge moves by a step, 1/(127 * 254) of its group's largest;
 * rare, but a 1000-token context's steps compound them (3x f32's 1e-4). */
#define TOL_ACT_Q16 3e-4
/* with ENG_ACT_BF16: an input whose f32 values on the two sides differ by
 * a rounding and lie across a bf16 rounding edge moves by a bf16 step
 * (2^-8 relative), as bf16 KV's values do */
#define TOL_ACT_BF16 1e-3
static double kv_tol(void) {
    return g_kv == ENG_KV_BF16 ? TOL_KV_BF16 : g_act == ENG_ACT_Q16 ? TOL_ACT_Q16
         : g_act == ENG_ACT_BF16 ? TOL_ACT_BF16 : 1e-4;
}
/* eng_cuda_opts.quant of the backends drv_open makes with default options
 * (on in test_quant_models, as the library's default; off elsewhere, where
 * the fixtures' files have no blocks to read). */
static int g_quant;
/* and their eng_cuda_opts.quant_wide (the library's default is 1; 0 but in
 * test_quant_models' rounds of 1 and 2, so that the other quantized cases
 * keep the f32 copy's wide passes covered) */
static int g_quant_wide;
/* > 0: their quant_tc_rows (else the library's default) */
static int g_quant_tc;

static int drv_open(tdrv *d, const eng_model *m, int cuda, const eng_cuda_opts *o, eng_err *err) {
    memset(d, 0, sizeof *d);
    d->n_blocks = TBLOCKS; d->bs = TBS; d->vocab = eng_model_config(m)->vocab_size;
    if (cuda && g_tp > 0) return eng_backend_cuda_tp_create(m, TBLOCKS, TBS, g_kv, g_tp, &d->b, err);
    if (!cuda) return eng_backend_cpu_create(m, TBLOCKS, TBS, g_kv, g_act, 2, &d->b, err);
    eng_cuda_opts oo;
    if (o) oo = *o;
    else {
        eng_cuda_opts_default(&oo);
        oo.quant = g_quant;
        oo.quant_wide = g_quant_wide;
        if (g_quant_tc > 0) oo.quant_tc_rows = g_quant_tc;
    }
    oo.kv_format = g_kv;
    oo.act = g_act;
    return eng_backend_cuda_create_opts(m, TBLOCKS, TBS, &oo, &d->b, err);
}
static void drv_close(tdrv *d) { if (d->b) d->b->destroy(d->b); d->b = NULL; }

/* One forward pass: sequence s processes nnew[s] of its pending tokens.
 * Samples greedily at each sequence's last new row (if it has one) and
 * appends the token; with logits != NULL, every new row's logits are kept
 * there, in row order.  Returns an ENG_* code. */
static int drv_pass(tdrv *d, tseq **sq, int ns, const int *nnew, float *logits, eng_err *err) {
    int R = 0;
    for (int s = 0; s < ns; s++) R += nnew[s];
    int *tok = malloc(R * 4), *pos = malloc(R * 4), *rs = malloc(R * 4), *outr = malloc(R * 4);
    int *slen = malloc(ns * 4), *last = malloc(ns * 4);
    const int **tab = malloc(ns * sizeof *tab);
    eng_token *smp = malloc(R * sizeof *smp);
    eng_sampling *sp = calloc(R, sizeof *sp);
    uint64_t *rng = calloc(R, 8);
    int rc = ENG_ENOMEM, r = 0, no = 0;
    if (!tok || !pos || !rs || !outr || !slen || !last || !tab || !smp || !sp || !rng) goto done;
    for (int s = 0; s < ns; s++) {
        tseq *q = sq[s];
        slen[s] = q->len + nnew[s];
        while (q->nblk * d->bs < slen[s]) {
            if (d->next_blk >= d->n_blocks || q->nblk >= 128) { rc = ENG_EFULL; goto done; }
            q->blk[q->nblk++] = d->next_blk++;
        }
        tab[s] = q->blk;
        last[s] = -1;
        for (int j = 0; j < nnew[s]; j++, r++) {
            tok[r] = q->toks[q->len + j]; pos[r] = q->len + j; rs[r] = s;
            if (logits) outr[no++] = r;
            if (j == nnew[s] - 1) { last[s] = r; if (!logits) outr[no++] = r; }
        }
    }
    eng_fwd_batch b = {R, tok, pos, rs, ns, slen, tab, no, outr, logits, smp, sp, rng, NULL};
    rc = d->b->forward(d->b, &b, err);
    if (rc) goto done;
    for (int s = 0; s < ns; s++) {
        sq[s]->len += nnew[s];
        if (last[s] < 0) continue;
        int oi = 0;
        while (outr[oi] != last[s]) oi++;
        if (sq[s]->ntok < MAXTOK) sq[s]->toks[sq[s]->ntok++] = smp[oi].id;
    }
done:
    free(tok); free(pos); free(rs); free(outr); free(slen); free(last); free(tab);
    free(smp); free(sp); free(rng);
    return rc;
}

static void seq_init(tseq *q, const int *ids, int n) {
    memset(q, 0, sizeof *q);
    memcpy(q->toks, ids, n * 4);
    q->ntok = n;
}

/* Greedy continuation of n_gen tokens for a prompt on one backend. */
static int gen_greedy(tdrv *d, const int *ids, int n, int n_gen, int *out, eng_err *err) {
    tseq *q = malloc(sizeof *q);
    if (!q) return ENG_ENOMEM;
    seq_init(q, ids, n);
    int nn = n, rc = ENG_OK;
    for (int g = 0; g < n_gen && !rc; g++) {
        rc = drv_pass(d, &q, 1, &nn, NULL, err);
        nn = 1;
    }
    if (!rc) memcpy(out, q->toks + n, n_gen * 4);
    free(q);
    return rc;
}

/* The CPU backend's greedy continuations in the KV format g_kv, computed
 * once per fixture and format; f->cpu_gen points to them. */
static int gen_slot(void) { return g_act == ENG_ACT_BF16 ? 2 : g_kv; }
static int fixture_cpu_gen(fixture *f) {
    const int slot = gen_slot();
    f->cpu_gen = f->gen[slot];
    if (f->have_gen[slot]) return 1;
    eng_err err = {0};
    for (int p = 0; p < f->n_prompts; p++) {
        tdrv d;
        if (drv_open(&d, f->m, 0, NULL, &err) ||
            gen_greedy(&d, f->p[p].ids, f->p[p].n_prompt, NGEN, f->cpu_gen[p], &err)) {
            printf("  CPU backend: %s\n", err.msg);
            drv_close(&d);
            return 0;
        }
        drv_close(&d);
    }
    f->have_gen[slot] = 1;
    return 1;
}

static void fixture_logits(fixture *f) {
    eng_err err = {0};
    eng_cuda_opts def, fast;
    eng_cuda_opts_default(&def);
    eng_cuda_opts_default(&fast);
    fast.bf16_weights = 1; fast.fast_gemm = 1;
    for (int mode = 0; mode < 2; mode++) {
        tdrv d, c;
        if (drv_open(&d, f->m, 1, mode ? &fast : &def, &err) || drv_open(&c, f->m, 0, NULL, &err)) {
            T_CHECKF(0, "%s: %s", f->name, err.msg);
            drv_close(&d);
            return;
        }
        double tol = mode ? 1e-2 : 1e-4;
        for (int p = 0; p < f->n_prompts; p++) {
            fprompt *pr = &f->p[p];
            size_t n = (size_t)pr->n_ids * f->vocab;
            float *lg = malloc(n * 4), *lc = malloc(n * 4);
            tseq *q = malloc(sizeof *q), *qc = malloc(sizeof *qc);
            if (!lg || !lc || !q || !qc) { T_CHECK(0); free(lg); free(lc); free(q); free(qc); break; }
            seq_init(q, pr->ids, pr->n_ids);
            seq_init(qc, pr->ids, pr->n_ids);
            memset(lg, 0xFF, n * 4);
            int rc = drv_pass(&d, &q, 1, &pr->n_ids, lg, &err);
            T_CHECKF(rc == 0, "%s: %s", f->name, err.msg);
            rc = drv_pass(&c, &qc, 1, &pr->n_ids, lc, &err);
            T_CHECKF(rc == 0, "%s CPU: %s", f->name, err.msg);
            double e = rel_err_f(lg, f->ref + (size_t)pr->row_offset * f->vocab, n);
            double ec = rel_err_f(lg, lc, n);
            T_CHECKF(e <= tol, "%s %s prompt %d prefill: rel err %.3g vs transformers", f->name,
                     mode ? "bf16" : "default", p, e);
            if (!mode) T_CHECKF(ec <= tol, "%s prompt %d prefill: rel err %.3g vs CPU backend", f->name, p, ec);
            printf("  %s %-7s prompt %d: prefill rel err %.2e vs transformers, %.2e vs CPU\n",
                   f->name, mode ? "bf16" : "default", p, e, ec);
            free(lg); free(lc); free(q); free(qc);
        }
        /* the decode path: prompt 0 one token at a time */
        fprompt *pr = &f->p[0];
        float *lg = malloc((size_t)pr->n_ids * f->vocab * 4);
        tseq *q = malloc(sizeof *q);
        if (lg && q) {
            seq_init(q, pr->ids, pr->n_ids);
            int one = 1, rc = 0;
            memset(lg, 0xFF, (size_t)pr->n_ids * f->vocab * 4);
            for (int i = 0; i < pr->n_ids && !rc; i++)
                rc = drv_pass(&d, &q, 1, &one, lg + (size_t)i * f->vocab, &err);
            T_CHECKF(rc == 0, "%s: %s", f->name, err.msg);
            double e = rel_err_f(lg, f->ref + (size_t)pr->row_offset * f->vocab, (size_t)pr->n_ids * f->vocab);
            T_CHECKF(e <= tol, "%s %s token-by-token: rel err %.3g", f->name, mode ? "bf16" : "default", e);
            printf("  %s %-7s token by token: rel err %.2e vs transformers\n", f->name,
                   mode ? "bf16" : "default", e);
        }
        free(lg); free(q);
        drv_close(&d);
        drv_close(&c);
    }
}

static void fixture_greedy(fixture *f) {
    if (!fixture_cpu_gen(f)) { T_CHECK(0); return; }
    eng_err err = {0};
    for (int p = 0; p < f->n_prompts; p++) {
        tdrv d;
        int got[NGEN];
        if (drv_open(&d, f->m, 1, NULL, &err) ||
            gen_greedy(&d, f->p[p].ids, f->p[p].n_prompt, NGEN, got, &err)) {
            T_CHECKF(0, "%s: %s", f->name, err.msg);
            drv_close(&d);
            return;
        }
        drv_close(&d);
        int i = 0;
        while (i < NGEN && got[i] == f->cpu_gen[p][i]) i++;
        T_CHECKF(i == NGEN, "%s prompt %d: token %d is %d, CPU backend %d", f->name, p, i,
                 i < NGEN ? got[i] : -1, i < NGEN ? f->cpu_gen[p][i] : -1);
        if (g_kv == ENG_KV_BF16 || g_act != ENG_ACT_F32) continue;   /* they may flip transformers' near-ties */
        int nh = f->p[p].n_ids - f->p[p].n_prompt, j = 0;
        while (j < nh && got[j] == f->p[p].ids[f->p[p].n_prompt + j]) j++;
        T_CHECKF(j == nh, "%s prompt %d: token %d differs from transformers' greedy", f->name, p, j);
    }
}

/* n sequences (prompt i % n_prompts) prefilled together then decoded
 * together; each must follow the CPU backend's greedy tokens. */
static void batched_opts(fixture *f, int n, const eng_cuda_opts *o) {
    eng_err err = {0};
    tdrv d;
    tseq *q = malloc(n * sizeof *q);
    tseq **qs = malloc(n * sizeof *qs);
    int *nn = malloc(n * 4);
    if (!q || !qs || !nn || drv_open(&d, f->m, 1, o, &err)) {
        T_CHECKF(0, "%s: %s", f->name, err.msg);
        free(q); free(qs); free(nn);
        return;
    }
    for (int s = 0; s < n; s++) {
        fprompt *pr = &f->p[s % f->n_prompts];
        seq_init(&q[s], pr->ids, pr->n_prompt);
        qs[s] = &q[s];
        nn[s] = pr->n_prompt;
    }
    int rc = 0;
    for (int g = 0; g < NGEN && !rc; g++) {
        rc = drv_pass(&d, qs, n, nn, NULL, &err);
        for (int s = 0; s < n; s++) nn[s] = 1;
    }
    T_CHECKF(rc == 0, "%s batch %d: %s", f->name, n, err.msg);
    for (int s = 0; s < n && !rc; s++) {
        fprompt *pr = &f->p[s % f->n_prompts];
        int i = 0;
        while (i < NGEN && q[s].toks[pr->n_prompt + i] == f->cpu_gen[s % f->n_prompts][i]) i++;
        T_CHECKF(i == NGEN, "%s batch %d seq %d: differs from CPU at token %d", f->name, n, s, i);
    }
    drv_close(&d);
    free(q); free(qs); free(nn);
}

static void batched_case(fixture *f, int n) { batched_opts(f, n, NULL); }

/* Sequences join one by one while others decode (mixed prefill and decode
 * rows, changing batch shapes); each must follow the CPU greedy tokens. */
static void continuous_case(fixture *f) {
    enum { NS = 7, NT = 40 };
    eng_err err = {0};
    tdrv d;
    tseq *q = malloc(NS * sizeof *q);
    if (!q || drv_open(&d, f->m, 1, NULL, &err)) { T_CHECKF(0, "%s", err.msg); free(q); return; }
    int done[NS] = {0}, rc = 0;
    for (int step = 0; step < 3 * NS + NT && !rc; step++) {
        tseq *qs[NS];
        int nn[NS], n = 0;
        for (int s = 0; s < NS; s++) {
            fprompt *pr = &f->p[s % f->n_prompts];
            if (step == 3 * s) seq_init(&q[s], pr->ids, pr->n_prompt);
            if (step < 3 * s || done[s]) continue;
            qs[n] = &q[s];
            nn[n++] = q[s].ntok - q[s].len;
        }
        if (n) rc = drv_pass(&d, qs, n, nn, NULL, &err);
        for (int s = 0; s < NS; s++)
            if (step >= 3 * s && q[s].ntok - f->p[s % f->n_prompts].n_prompt >= NT) done[s] = 1;
    }
    T_CHECKF(rc == 0, "%s: %s", f->name, err.msg);
    for (int s = 0; s < NS && !rc; s++) {
        int np = f->p[s % f->n_prompts].n_prompt, i = 0;
        while (i < NT && q[s].toks[np + i] == f->cpu_gen[s % f->n_prompts][i]) i++;
        T_CHECKF(i == NT, "%s seq %d: differs from CPU at token %d", f->name, s, i);
    }
    drv_close(&d);
    free(q);
}

/* Parent prefilled to a partial block, then forked: the child gets its own
 * copy of the partial block (copy_block) and continues with another token.
 * Both must match the CPU backend doing the same, and the parent must
 * match its unforked greedy run. */
static int fork_run(fixture *f, int cuda, int out[2][33], eng_err *err) {
    tdrv d;
    tseq *q = malloc(2 * sizeof *q);
    int rc = q ? drv_open(&d, f->m, cuda, NULL, err) : ENG_ENOMEM;
    if (rc) { free(q); return rc; }
    fprompt *pr = &f->p[1 % f->n_prompts];
    int np = pr->n_prompt, pre = np - 1;
    seq_init(&q[0], pr->ids, pre);
    tseq *a = &q[0], *b = &q[1];
    rc = drv_pass(&d, &a, 1, &pre, NULL, err);   /* samples a token we drop */
    a->ntok = pre;
    if (!rc) {
        *b = *a;
        if (a->len % d.bs) {
            b->blk[b->nblk - 1] = d.next_blk++;
            rc = d.b->copy_block(d.b, a->blk[a->nblk - 1], b->blk[b->nblk - 1], err);
        }
    }
    a->toks[a->ntok++] = pr->ids[np - 1];
    b->toks[b->ntok++] = (pr->ids[np - 1] + 1) % f->tok_vocab;
    tseq *both[2] = {a, b};
    int one[2] = {1, 1};
    for (int g = 0; g < 33 && !rc; g++) rc = drv_pass(&d, both, 2, one, NULL, err);
    if (!rc)
        for (int i = 0; i < 33; i++) { out[0][i] = a->toks[np + i]; out[1][i] = b->toks[np + i]; }
    drv_close(&d);
    free(q);
    return rc;
}

static void fork_case(fixture *f) {
    eng_err err = {0};
    int g[2][33], c[2][33];
    if (fork_run(f, 1, g, &err) || fork_run(f, 0, c, &err)) { T_CHECKF(0, "%s: %s", f->name, err.msg); return; }
    for (int s = 0; s < 2; s++) {
        int i = 0;
        while (i < 33 && g[s][i] == c[s][i]) i++;
        T_CHECKF(i == 33, "%s fork %s: differs from CPU at token %d", f->name, s ? "child" : "parent", i);
    }
    int i = 0;
    while (i < 33 && g[0][i] == f->cpu_gen[1 % f->n_prompts][i]) i++;
    T_CHECKF(i == 33, "%s fork: parent differs from its unforked run at token %d", f->name, i);
}

/* A 1000-token context in chunks of 300 rows, then decode steps with many
 * attention splits; logits against the CPU backend's. */
static void long_case(fixture *f) {
    eng_err err = {0};
    tdrv d, c;
    tseq *q = malloc(sizeof *q), *qc = malloc(sizeof *qc);
    /* logits of every row of the last two chunks: 300 rows (past 256
     * output rows: the lean lm_head's second launch), and 100 rows (decode
     * attention at 100 rows of ~1000 positions, several chunks a block) */
    float *lg = malloc((size_t)300 * f->vocab * 4), *lc = malloc((size_t)300 * f->vocab * 4);
    if (!q || !qc || !lg || !lc || drv_open(&d, f->m, 1, NULL, &err)) {
        T_CHECKF(0, "%s", err.msg);
        free(q); free(qc); free(lg); free(lc);
        return;
    }
    if (drv_open(&c, f->m, 0, NULL, &err)) {
        T_CHECKF(0, "%s", err.msg);
        drv_close(&d);
        free(q); free(qc); free(lg); free(lc);
        return;
    }
    int ids[1004];
    for (int i = 0; i < 1004; i++) ids[i] = (int)(rnd64() % (uint64_t)f->tok_vocab);
    seq_init(q, ids, 1004);
    seq_init(qc, ids, 1004);
    int chunks[4] = {300, 300, 300, 100}, rc = 0;
    double worst = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        float *a = i >= 2 ? lg : NULL, *b = i >= 2 ? lc : NULL;
        if (a) memset(a, 0xFF, (size_t)chunks[i] * f->vocab * 4);
        rc = drv_pass(&d, &q, 1, &chunks[i], a, &err);
        if (!rc) rc = drv_pass(&c, &qc, 1, &chunks[i], b, &err);
        q->ntok = qc->ntok = 1004;   /* drop the sampled tokens: the ids continue */
        if (!rc && a) {
            double e = rel_err_f(lg, lc, (size_t)chunks[i] * f->vocab);
            if (e > worst) worst = e;
        }
    }
    for (int i = 0; i < 4 && !rc; i++) {
        int one = 1;
        memset(lg, 0xFF, (size_t)f->vocab * 4);
        rc = drv_pass(&d, &q, 1, &one, lg, &err);
        if (!rc) rc = drv_pass(&c, &qc, 1, &one, lc, &err);
        q->ntok = qc->ntok = 1004;
        double e = rel_err_f(lg, lc, f->vocab);
        if (e > worst) worst = e;
    }
    T_CHECKF(rc == 0, "%s: %s", f->name, err.msg);
    T_CHECKF(worst <= kv_tol(), "%s 1000-token context, %s KV: rel err %.3g vs CPU", f->name,
             eng_kv_format_name(g_kv), worst);
    printf("  %s 1000-token context, %s KV: prompt (last 400 rows) and decode logits rel err %.2e vs CPU\n", f->name,
           eng_kv_format_name(g_kv), worst);
    drv_close(&d); drv_close(&c);
    free(q); free(qc); free(lg); free(lc);
}

/* Forks of one 300-token prompt decoding together (they share its full KV
 * blocks; the part-filled one is copied): every child's logits must match
 * the CPU backend's, for 6 and for 12 children. */
static int forks_run(fixture *f, tdrv *d, tseq *q, int k, const int *ids, int np,
                             int steps, float *lg, eng_err *err) {
    seq_init(&q[0], ids, np);
    int rc = drv_pass(d, &q, 1, &np, NULL, err);
    q[0].ntok = np;
    for (int i = 1; i < k && !rc; i++) {
        q[i] = q[0];
        if (q[0].len % d->bs) {   /* the part-filled block is copied, as a fork does on write */
            q[i].blk[q[i].nblk - 1] = d->next_blk++;
            rc = d->b->copy_block(d->b, q[0].blk[q[0].nblk - 1], q[i].blk[q[i].nblk - 1], err);
        }
    }
    if (!rc && q[0].len % d->bs) {
        q[0].blk[q[0].nblk - 1] = d->next_blk++;
        rc = d->b->copy_block(d->b, q[1].blk[q[1].nblk - 1], q[0].blk[q[0].nblk - 1], err);
    }
    tseq *qs[12];
    int one[12];
    for (int i = 0; i < k; i++) {
        qs[i] = &q[i];
        one[i] = 1;
        for (int t = 0; t < steps; t++) q[i].toks[np + t] = ids[np + (i * 7 + t) % 40];
    }
    for (int t = 0; t < steps && !rc; t++) {
        rc = drv_pass(d, qs, k, one, lg + (size_t)t * k * f->vocab, err);
        for (int i = 0; i < k; i++) q[i].ntok = np + steps;   /* the preset ids continue */
    }
    return rc;
}

static void forks_case(fixture *f) {
    enum { NP = 300, STEPS = 6 };
    static const int ks[2] = {6, 12};
    int ids[NP + 40];
    for (int i = 0; i < NP + 40; i++) ids[i] = (int)(rnd64() % (uint64_t)f->tok_vocab);
    for (int ki = 0; ki < 2; ki++) {
        const int k = ks[ki];
        eng_err err = {0};
        tdrv d, c;
        tseq *q = malloc(k * sizeof *q), *qc = malloc(k * sizeof *qc);
        float *lg = malloc((size_t)STEPS * k * f->vocab * 4), *lc = malloc((size_t)STEPS * k * f->vocab * 4);
        int rc = !q || !qc || !lg || !lc ? ENG_ENOMEM : drv_open(&d, f->m, 1, NULL, &err);
        if (!rc) {
            rc = drv_open(&c, f->m, 0, NULL, &err);
            if (!rc) {
                rc = forks_run(f, &d, q, k, ids, NP, STEPS, lg, &err);
                if (!rc) rc = forks_run(f, &c, qc, k, ids, NP, STEPS, lc, &err);
                drv_close(&c);
            }
            drv_close(&d);
        }
        T_CHECKF(rc == 0, "%s: %s", f->name, err.msg);
        if (!rc) {
            double e = rel_err_f(lg, lc, (size_t)STEPS * k * f->vocab);
            T_CHECKF(e <= kv_tol(), "%s %d forks of a %d-token prompt, %s KV: rel err %.3g vs CPU",
                     f->name, k, NP, eng_kv_format_name(g_kv), e);
            printf("  %s %d forks, %s KV: logits rel err %.2e vs CPU\n", f->name, k,
                   eng_kv_format_name(g_kv), e);
        }
        free(q); free(qc); free(lg); free(lc);
    }
}

static void errors_case(fixture *f) {
    eng_err err = {0};
    tdrv d;
    if (drv_open(&d, f->m, 1, NULL, &err)) { T_CHECKF(0, "%s", err.msg); return; }
    int tok = 5, pos = 0, rs = 0, len = 1, blk = 0, out = 0;
    const int *tab[1] = {&blk};
    eng_token t;
    eng_sampling sp = {0};
    uint64_t rng = 0;
    eng_fwd_batch b = {1, &tok, &pos, &rs, 1, &len, tab, 1, &out, NULL, &t, &sp, &rng, NULL};
    tok = f->vocab;
    T_CHECK(d.b->forward(d.b, &b, &err) == ENG_EINVAL);
    tok = 5; blk = TBLOCKS;
    T_CHECK(d.b->forward(d.b, &b, &err) == ENG_EINVAL);
    blk = 0; pos = 1;
    T_CHECK(d.b->forward(d.b, &b, &err) == ENG_EINVAL);
    pos = 0; out = 1;
    T_CHECK(d.b->forward(d.b, &b, &err) == ENG_EINVAL);
    out = 0; rs = 1;
    T_CHECK(d.b->forward(d.b, &b, &err) == ENG_EINVAL);
    rs = 0;
    T_CHECK(d.b->copy_block(d.b, -1, 0, &err) == ENG_EINVAL);
    T_CHECK(d.b->copy_block(d.b, 0, TBLOCKS, &err) == ENG_EINVAL);
    T_CHECKF(d.b->forward(d.b, &b, &err) == ENG_OK, "%s", err.msg);
    T_CHECK(t.id >= 0 && t.id < f->vocab && t.logprob <= 0 && t.entropy >= 0);
    /* a forced id: outside the vocabulary is refused; inside, it is the token,
     * with the log-prob and entropy the CPU computes from the same logits
     * (f32 log-sum-exp on the GPU vs double on the CPU: 1e-4 absolute) */
    int force = f->vocab;
    b.force = &force;
    T_CHECK(d.b->forward(d.b, &b, &err) == ENG_EINVAL);
    float *lg = malloc((size_t)f->vocab * 4);
    force = (t.id + 1) % f->vocab;
    b.logits = lg;
    if (lg && d.b->forward(d.b, &b, &err) == ENG_OK) {
        eng_token want = eng_token_of(lg, f->vocab, force);
        T_CHECKF(t.id == force && fabsf(t.logprob - want.logprob) < 1e-4f &&
                 fabsf(t.entropy - want.entropy) < 1e-4f, "forced %d: got %d lp %.6f ent %.6f, want lp %.6f "
                 "ent %.6f", force, t.id, t.logprob, t.entropy, want.logprob, want.entropy);
    } else T_CHECKF(0, "forced forward: %s", err.msg);
    free(lg);
    drv_close(&d);
    eng_backend *bb = NULL;
    T_CHECK(eng_backend_cuda_create(f->m, 0, 16, ENG_KV_F32, ENG_ACT_F32, 0, &bb, &err) == ENG_EINVAL && !bb);
    T_CHECK(eng_backend_cuda_create(f->m, 16, 16, 7, ENG_ACT_F32, 0, &bb, &err) == ENG_EINVAL && !bb);
}

/* Through the engine (eng_create with ENG_BACKEND_CUDA): greedy tokens of
 * every prompt in one batch, against the CPU backend's. */
/* eng_opts.quant of engine_case's engines */
static int g_quant_engine = ENG_QUANT_AUTO;

static void engine_case(fixture *f) {
    eng_err err = {0};
    eng_opts o = {0};
    o.backend = ENG_BACKEND_CUDA;
    o.kv_format = g_kv;
    o.act = g_act;
    o.quant = g_quant_engine;
    eng_engine *e = NULL;
    if (eng_create(f->m, &o, &e, &err)) { T_CHECKF(0, "%s eng_create: %s", f->name, err.msg); return; }
    eng_sampling sp = {0};
    int seq[8];
    for (int p = 0; p < f->n_prompts; p++)
        T_CHECKF(eng_seq_add(e, f->p[p].ids, f->p[p].n_prompt, &sp, &seq[p], &err) == 0, "%s", err.msg);
    int rc = 0;
    for (int g = 0; g < NGEN && !rc; g++) rc = eng_step(e, &err);
    T_CHECKF(rc == 0, "%s eng_step: %s", f->name, err.msg);
    for (int p = 0; p < f->n_prompts && !rc; p++) {
        const int *ids;
        int n;
        if (eng_seq_tokens(e, seq[p], &ids, &n) || n < f->p[p].n_prompt + NGEN) { T_CHECK(0); continue; }
        int i = 0;
        while (i < NGEN && ids[f->p[p].n_prompt + i] == f->cpu_gen[p][i]) i++;
        T_CHECKF(i == NGEN, "%s engine prompt %d: differs from CPU at token %d", f->name, p, i);
    }
    eng_destroy(e);
}

#define FIXTURE_TEST(fn, body) \
    static void fn(void) { \
        for (int i = 0; i < N_FX; i++) { \
            g_rng = 700 + i; \
            if (!fixture_load(&fx[i]) || !fixture_cpu_gen(&fx[i])) { T_CHECKF(0, "%s", fx[i].name); continue; } \
            body(&fx[i]); \
        } \
    }

static void batched_4(fixture *f) { batched_case(f, f->n_prompts); }
static void batched_20(fixture *f) { batched_case(f, 20); }
/* 20 rows through cuBLASLt (kern_skinny off; by default it takes bf16 weights) */
static void batched_20_cublas(fixture *f) {
    eng_cuda_opts o;
    eng_cuda_opts_default(&o);
    o.skinny_max_rows = 0;
    batched_opts(f, 20, &o);
}
FIXTURE_TEST(test_fixture_logits, fixture_logits)
FIXTURE_TEST(test_greedy_64, fixture_greedy)
FIXTURE_TEST(test_batched, batched_4)
FIXTURE_TEST(test_batched_20, batched_20)
FIXTURE_TEST(test_batched_cublas, batched_20_cublas)
FIXTURE_TEST(test_continuous, continuous_case)
FIXTURE_TEST(test_fork, fork_case)
FIXTURE_TEST(test_long_context, long_case)
FIXTURE_TEST(test_errors, errors_case)
FIXTURE_TEST(test_forks, forks_case)
FIXTURE_TEST(test_engine, engine_case)

/* The whole-backend checks again with BRISK_ATTN=1 (read at backend
 * creation): attention variant 1 must give the CPU backend's greedy tokens
 * alone, batched (GEMV and cuBLASLt paths), continuously batched, and the
 * CPU's logits on a 1000-token context. */
/* The whole-backend checks a variant must pass: greedy alone, batched (GEMV
 * and cuBLASLt paths), continuous batching and the 1000-token logits. */
static void backend_checks(fixture *f) {
    fixture_greedy(f);
    batched_case(f, f->n_prompts);
    batched_case(f, 20);
    continuous_case(f);
    long_case(f);
}

/* The whole-backend checks with BRISK_ATTN=v for every pass, after
 * checking that the backend took it. */
static void forced_variant_checks(fixture *f, int v) {
    char val[2] = {(char)('0' + v), 0};
    setenv("BRISK_ATTN", val, 1);
    eng_err err = {0};
    tdrv d;
    eng_cuda_info info = {0};
    if (drv_open(&d, f->m, 1, NULL, &err) == 0) {
        T_CHECKF(eng_cuda_get_info(d.b, &info) == 0 && info.attn_variant == v,
                 "%s: BRISK_ATTN=%d not taken (variant %d)", f->name, v, info.attn_variant);
        drv_close(&d);
    } else T_CHECKF(0, "%s: %s", f->name, err.msg);
    backend_checks(f);
    unsetenv("BRISK_ATTN");
}

static void attn1_backend(fixture *f) { forced_variant_checks(f, 1); }
FIXTURE_TEST(test_attn1_backend, attn1_backend)

/* The same with variant 3 (a lane per position) for every pass. */
static void attn3_backend(fixture *f) { forced_variant_checks(f, 3); }
FIXTURE_TEST(test_attn3_backend, attn3_backend)

/* The same with variant 4 (variant 3 double-buffered, a wave of blocks)
 * for every pass. */
static void attn4_backend(fixture *f) { forced_variant_checks(f, 4); }
FIXTURE_TEST(test_attn4_backend, attn4_backend)

/* The same with variant 5 (tensor cores over a bf16 pool; on f32 pools it
 * hands every pass to variant 4): run in the bf16-KV variants. */
static void attn5_backend(fixture *f) { forced_variant_checks(f, 5); }

/* The whole-backend checks with every pass of 3 rows or more through the
 * prefill attention kernel (BRISK_PREFILL_ATTN=always; by default only long
 * prompts take it): prompts, batches, continuous batching with decode rows
 * beside prompt rows, and the 1000-token logits check. */
static void pf_backend(fixture *f) {
    setenv("BRISK_PREFILL_ATTN", "always", 1);
    backend_checks(f);
    unsetenv("BRISK_PREFILL_ATTN");
}
FIXTURE_TEST(test_prefill_attn_backend, pf_backend)

/* Tensor parallelism through NCCL over every visible GPU the model's heads
 * allow (one rank on a single GPU: the split code path, the NCCL calls, the
 * vocabulary gather, with one share): the whole-backend checks again, plus
 * copy-on-write forks (each rank copies its KV heads' block). */
static void tp_backend(fixture *f) {
    int ndev = 0;
    cudaGetDeviceCount(&ndev);
    int n = ndev;
    eng_tp_slice sl;
    eng_err err = {0};
    while (n > 1 && (n > ENG_TP_MAX || eng_tp_slice_of(eng_model_config(f->m), n, 0, &sl, &err))) n--;
#ifndef BRISK_NCCL
    tdrv d;
    g_tp = 1;
    T_CHECKF(drv_open(&d, f->m, 1, NULL, &err) == ENG_EUNSUPPORTED && strstr(err.msg, "NCCL"),
             "%s: without NCCL: %s", f->name, err.msg);
    drv_close(&d);
    g_tp = 0;
    (void)n;
#else
    printf("  %s: %d rank%s on %d GPU%s\n", f->name, n, n == 1 ? "" : "s", ndev, ndev == 1 ? "" : "s");
    g_tp = n;
    backend_checks(f);
    fork_case(f);
    g_tp = ndev + 1;   /* more ranks than GPUs: refused */
    tdrv d;
    T_CHECKF(drv_open(&d, f->m, 1, NULL, &err) != ENG_OK && !d.b, "%s: %d ranks on %d GPUs", f->name,
             ndev + 1, ndev);
    drv_close(&d);
    g_tp = 0;
#endif
}
FIXTURE_TEST(test_tp_backend, tp_backend)
/* ------------------------------------------------------------ bf16 KV */
/* Both backends with bf16 KV pools (g_kv) or bf16 activations (g_act): the
 * pool's format, the activations and bytes per token as reported, prefill
 * logits of every prompt and token-by-token logits of prompt 0 against the
 * CPU backend (TOL_KV_BF16, TOL_ACT_BF16) and transformers (TOL_KV_BF16_REF;
 * 2e-2 with bf16 activations). */
static void bf16_logits(fixture *f) {
    eng_err err = {0};
    tdrv d, c;
    const char *fmt = g_act == ENG_ACT_BF16 ? "bf16 act" : "bf16 KV";
    const double tol = g_act == ENG_ACT_BF16 ? TOL_ACT_BF16 : TOL_KV_BF16;
    /* against transformers: the CPU reference's own distance in that
     * format (test_engine: 5.1e-3 worst with bf16 KV, 9.8e-3 with bf16
     * activations) */
    const double tol_ref = g_act == ENG_ACT_BF16 ? 2e-2 : TOL_KV_BF16_REF;
    if (drv_open(&d, f->m, 1, NULL, &err)) { T_CHECKF(0, "%s: %s", f->name, err.msg); return; }
    if (drv_open(&c, f->m, 0, NULL, &err)) { T_CHECKF(0, "%s: %s", f->name, err.msg); drv_close(&d); return; }
    const eng_config *g = eng_model_config(f->m);
    eng_cuda_info info = {0};
    const size_t eb = g_kv == ENG_KV_BF16 ? 2 : 4;
    T_CHECKF(eng_cuda_get_info(d.b, &info) == 0 && info.kv_format == g_kv && info.act == g_act &&
             info.kv_bytes_per_token == (size_t)g->n_layers * 2 * g->n_kv_heads * g->head_dim * eb,
             "%s: KV format %d, activations %d, %zu bytes per token", f->name, info.kv_format, info.act,
             info.kv_bytes_per_token);
    for (int p = 0; p <= f->n_prompts; p++) {   /* p == n_prompts: prompt 0 token by token */
        fprompt *pr = &f->p[p < f->n_prompts ? p : 0];
        size_t n = (size_t)pr->n_ids * f->vocab;
        float *lg = malloc(n * 4), *lc = malloc(n * 4);
        tseq *q = malloc(sizeof *q), *qc = malloc(sizeof *qc);
        int rc = !lg || !lc || !q || !qc ? ENG_ENOMEM : 0, one = 1;
        if (!rc) {
            seq_init(q, pr->ids, pr->n_ids);
            seq_init(qc, pr->ids, pr->n_ids);
            memset(lg, 0xFF, n * 4);
        }
        if (!rc && p < f->n_prompts) {
            rc = drv_pass(&d, &q, 1, &pr->n_ids, lg, &err);
            if (!rc) rc = drv_pass(&c, &qc, 1, &pr->n_ids, lc, &err);
        }
        for (int i = 0; !rc && p == f->n_prompts && i < pr->n_ids; i++) {
            rc = drv_pass(&d, &q, 1, &one, lg + (size_t)i * f->vocab, &err);
            if (!rc) rc = drv_pass(&c, &qc, 1, &one, lc + (size_t)i * f->vocab, &err);
        }
        T_CHECKF(rc == 0, "%s: %s", f->name, err.msg);
        if (!rc) {
            double ec = rel_err_f(lg, lc, n), e = rel_err_f(lg, f->ref + (size_t)pr->row_offset * f->vocab, n);
            const char *what = p < f->n_prompts ? "prefill" : "token by token";
            T_CHECKF(ec <= tol && e <= tol_ref, "%s %s prompt %d %s: rel err %.3g vs "
                     "CPU %s, %.3g vs transformers", f->name, fmt, p % f->n_prompts, what, ec, fmt, e);
            printf("  %s %s prompt %d %s: rel err %.2e vs CPU %s, %.2e vs transformers\n",
                   f->name, fmt, p % f->n_prompts, what, ec, fmt, e);
        }
        free(lg); free(lc); free(q); free(qc);
    }
    drv_close(&d);
    drv_close(&c);
}

/* Runs checks with bf16 pools on both backends (the CPU reference
 * regenerated in that format), then puts the f32 reference back. */
static void with_bf16_kv(fixture *f, void (*checks)(fixture *)) {
    g_kv = ENG_KV_BF16;
    if (fixture_cpu_gen(f)) checks(f);
    else T_CHECKF(0, "%s: CPU backend with bf16 KV", f->name);
    g_kv = ENG_KV_F32;
    fixture_cpu_gen(f);
}

/* The whole-backend checks with bf16 pools: greedy tokens identical to the
 * CPU's (alone, batched, continuous, forked with copy_block, through the
 * engine), logits of a 1000-token context (split decode attention) and of
 * forks. */
static void kv_bf16_checks(fixture *f) {
    bf16_logits(f);
    backend_checks(f);
    fork_case(f);
    forks_case(f);
    engine_case(f);
}
static void kv_bf16_backend(fixture *f) { with_bf16_kv(f, kv_bf16_checks); }
FIXTURE_TEST(test_kv_bf16_backend, kv_bf16_backend)

/* The same checks through attention variants 1, 3, 4 and 5 and the
 * prefill kernel for every pass, with bf16 pools. */
static void kv_bf16_variant_checks(fixture *f) {
    attn1_backend(f);
    attn3_backend(f);
    attn4_backend(f);
    attn5_backend(f);
    pf_backend(f);
}
static void kv_bf16_variants(fixture *f) { with_bf16_kv(f, kv_bf16_variant_checks); }
FIXTURE_TEST(test_kv_bf16_variants, kv_bf16_variants)

/* ---------------------------------------------------- bf16 activations */
/* ENG_ACT_BF16 on both backends: the products' inputs rounded to bf16 (on
 * CUDA by kern_gemv as it reads them at 1-4 rows, by the kernels that write
 * them for kern_skinny's and cuBLASLt's one bf16 product past that).  Logits within TOL_ACT_BF16 of the CPU's (and within 2e-2 of
 * transformers', the CPU reference's own distance), greedy tokens
 * identical to the CPU's alone, batched (4, 20 and 40 rows), under
 * continuous batching, after a 1000-token context, forked and through the
 * engine; the fixtures of bf16 weights only: an f32 checkpoint is refused
 * unless its weights are made bf16 (which the CPU reference does not do),
 * and so are a split and the quantized blocks (test_act_q16). */
static void act_bf16_backend(fixture *f) {
    if (!strcmp(f->name, "tiny-qwen2")) {   /* the one fixture of f32 weights */
        eng_err err = {0};
        eng_cuda_opts o;
        eng_cuda_opts_default(&o);
        o.act = ENG_ACT_BF16;
        o.quant = 0;
        eng_backend *b = NULL;
        T_CHECKF(eng_backend_cuda_create_opts(f->m, TBLOCKS, TBS, &o, &b, &err) == ENG_EUNSUPPORTED && !b &&
                 strstr(err.msg, "bf16 weights"), "%s: bf16 activations on f32 weights: %s", f->name, err.msg);
        if (b) b->destroy(b);
        o.bf16_weights = 1;
        T_CHECKF(eng_backend_cuda_create_opts(f->m, TBLOCKS, TBS, &o, &b, &err) == ENG_OK && b,
                 "%s: bf16 activations with bf16_weights: %s", f->name, err.msg);
        if (b) b->destroy(b);
        /* as a draft under a target's --act bf16: taken with f32 inputs
         * (its tokens only propose) */
        eng_opts eo = {.backend = ENG_BACKEND_CUDA, .n_blocks = 64, .act = ENG_ACT_BF16};
        eng_drafter *dr = NULL;
        T_CHECKF(eng_drafter_model_create(f->m, &eo, 4, &dr, &err) == ENG_OK && dr && eng_drafter_engine(dr) &&
                 eng_act(eng_drafter_engine(dr)) == ENG_ACT_F32, "%s: draft under --act bf16: %s", f->name, err.msg);
        if (dr) dr->destroy(dr);
        return;
    }
    g_act = ENG_ACT_BF16;
    if (fixture_cpu_gen(f)) {
        bf16_logits(f);
        backend_checks(f);
        batched_case(f, 40);
        fork_case(f);
        forks_case(f);
        engine_case(f);
    } else {
        T_CHECKF(0, "%s: CPU backend with bf16 activations", f->name);
    }
    g_act = ENG_ACT_F32;
    fixture_cpu_gen(f);
}
FIXTURE_TEST(test_act_bf16_backend, act_bf16_backend)

/* Tiny random GGUF models written at test time by mkgguf (what `brisk
 * mkmodel --format` writes): llama Q4_K_M (q|k|v of Q4_K, Q4_K, Q6_K in
 * some layers, ffn_down Q6_K in some, q/k rows reordered on upload, Q6_K
 * lm_head), qwen2 Q8_0 (q/k/v biases, tied Q8_0 lm_head), gemma3 Q4_0 (q/k
 * norms: the q|k|v product apart from RoPE; GeGLU; tied Q6_K lm_head).  The
 * CUDA backend reads the blocks in passes of up to 32 rows (one row:
 * kern_qgemv; 2..32: kern_qskinny) and the dense copy in wider ones:
 * greedy tokens identical to the CPU backend's alone, batched at 4, 8, 20
 * (kern_qskinny) and 40 rows (dense products), under continuous batching,
 * at 4 and 8 rows through kern_qgemv (quant_tc_rows 0) and with the
 * quantized path off; decode logits after a 1000-token context within 1e-4
 * of the CPU's. */
static const struct qmodel { const char *name; mkg_shape s; int format; } qmodels[] = {
    {"llama q4_k_m", {"llama", 512, 256, 512, 8, 4, 2, 64, 0, 0, 10000.0}, MKG_Q4_K_M},
    {"qwen2 q8_0", {"qwen2", 512, 256, 768, 4, 4, 2, 64, 1, 0, 1e6}, MKG_Q8_0},
    {"gemma3 q4_0", {"gemma3", 512, 256, 512, 3, 4, 1, 64, 1, 0, 1e6}, MKG_Q4_0},
};

/* qmodels[i] written and loaded into f (f->m with its f32 copy; *lazy
 * without it), with four random prompts; 0 (a failed check) on failure. */
static int qfixture_make(const struct qmodel *qm, int i, fixture *f, eng_model **lazy) {
    char path[256], msg[256];
    snprintf(path, sizeof path, "/tmp/brisk-test-cuda-%d-%d.gguf", (int)getpid(), i);
    memset(f, 0, sizeof *f);
    *lazy = NULL;
    if (mkg_write(path, &qm->s, qm->format, 77 + i, msg, sizeof msg)) {
        T_CHECKF(0, "%s: %s", qm->name, msg);
        return 0;
    }
    f->name = qm->name;
    eng_err err = {0};
    int rc = eng_model_load(path, &f->m, &err);
    if (!rc) rc = eng_model_load_blocks(path, lazy, &err);
    unlink(path);   /* the mappings stay */
    if (rc) {
        eng_model_free(f->m);
        eng_model_free(*lazy);
        T_CHECKF(0, "%s: %s", qm->name, err.msg);
        return 0;
    }
    f->vocab = f->tok_vocab = qm->s.vocab;
    f->n_prompts = 4;
    g_rng = 900 + i;
    for (int p = 0; p < f->n_prompts; p++) {
        fprompt *pr = &f->p[p];
        pr->n_ids = pr->n_prompt = 5 + 7 * p;
        pr->ids = malloc(sizeof(int) * pr->n_ids);
        for (int k = 0; pr->ids && k < pr->n_ids; k++) pr->ids[k] = (int)(rnd64() % (uint64_t)f->vocab);
        if (!pr->ids) f->n_prompts = p;
    }
    return 1;
}

static void qfixture_free(fixture *f, eng_model *lazy) {
    for (int p = 0; p < f->n_prompts; p++) free(f->p[p].ids);
    eng_model_free(f->m);
    eng_model_free(lazy);
}

static void quant_model(const struct qmodel *qm, int i) {
    fixture f;
    eng_model *lazy = NULL;
    if (!qfixture_make(qm, i, &f, &lazy)) return;
    eng_err err = {0};
    tdrv d;
    eng_cuda_info info = {0};
    if (f.n_prompts == 4 && fixture_cpu_gen(&f) && drv_open(&d, f.m, 1, NULL, &err) == 0) {
        T_CHECKF(eng_cuda_get_info(d.b, &info) == 0 && info.quant &&
                 info.weight_bytes * 3 < info.dense_weight_bytes,
                 "%s: quant %d, %zu bytes read per step against %zu dense", qm->name, info.quant,
                 info.weight_bytes, info.dense_weight_bytes);
        /* every product suits kern_qskinny: passes of 2..32 rows read the blocks */
        T_CHECKF(info.quant_rows == 96, "%s: quantized passes up to %d rows", qm->name, info.quant_rows);
        printf("  %s: %zu weight bytes per step (dense copy %zu)\n", qm->name, info.weight_bytes,
               info.dense_weight_bytes);
        drv_close(&d);
        fixture_greedy(&f);
        batched_case(&f, 4);
        batched_case(&f, 8);
        batched_case(&f, 20);
        batched_case(&f, 40);
        continuous_case(&f);
        long_case(&f);
        eng_cuda_opts o;
        eng_cuda_opts_default(&o);
        o.quant = 0;   /* the dense copy alone */
        batched_opts(&f, 4, &o);
        o.quant = 1;   /* kern_qgemv's 2-8 rows instead of kern_qskinny */
        o.quant_tc_rows = 0;
        batched_opts(&f, 4, &o);
        batched_opts(&f, 8, &o);
        /* quant_wide, with quant_tc_rows 32: passes past 32 rows (40-row
         * decode, the prompt passes: 62 rows in batched_case, 300 in
         * long_case) on the dense copy's bf16 halves (1), or on halves made
         * from the blocks per product (2: bit-identical halves; the lm_head
         * of passes past 32 output rows runs kern_qskinny's slices there,
         * not f32) */
        size_t held[3] = {0, 0, 0};
        g_quant_tc = 32;
        for (int qw = 1; qw <= 2; qw++) {
            g_quant_wide = qw;
            if (drv_open(&d, f.m, 1, NULL, &err) == 0) {
                T_CHECKF(eng_cuda_get_info(d.b, &info) == 0 && info.quant_wide == qw && info.quant,
                         "%s: quant_wide %d (wanted %d), quant %d", qm->name, info.quant_wide, qw,
                         info.quant);
                held[qw] = info.weights_held;
                eng_cuda_opts so;
                eng_cuda_opts_default(&so);
                so.quant = 0;   /* refused: the halves cannot serve the one-row kernels */
                T_CHECK(eng_cuda_set_opts(d.b, &so) == 0 && eng_cuda_get_info(d.b, &info) == 0 &&
                        info.quant);
                drv_close(&d);
            } else {
                T_CHECKF(0, "%s quant_wide %d: %s", qm->name, qw, err.msg);
            }
            batched_case(&f, 4);
            batched_case(&f, 40);
            continuous_case(&f);
            long_case(&f);
            /* quant_tc_rows 64: 33-64 row decode passes (and their lm_head)
             * through kern_qskinny's groups of 32 rows */
            eng_cuda_opts_default(&o);
            o.quant_wide = qw;
            o.quant_tc_rows = 64;
            batched_opts(&f, 40, &o);
            batched_opts(&f, 64, &o);
            o.quant_tc_stage = 1;   /* the blocks staged in shared memory */
            batched_opts(&f, 8, &o);
            batched_opts(&f, 40, &o);
        }
        g_quant_wide = 0;
        g_quant_tc = 0;
        /* the blocks alone: no dense layer copy, embedding or lm_head (the
         * fixtures' vocabulary is as wide as their layers: a third at most) */
        printf("  %s: weights hold %zu bytes with the halves, %zu with the blocks alone\n",
               qm->name, held[1], held[2]);
        T_CHECKF(held[2] > 0 && 3 * held[2] < held[1], "%s: %zu bytes held alone, %zu with the halves",
                 qm->name, held[2], held[1]);
        /* through the engine: its default (AUTO) reads the blocks, greedy
         * as the CPU; --no-quant does not; --quant-lean holds them alone */
        engine_case(&f);
        g_quant_engine = ENG_QUANT_LEAN;
        engine_case(&f);
        /* the same from a model loaded without the f32 copy: none is made */
        eng_model *eager = f.m;
        f.m = lazy;
        engine_case(&f);
        T_CHECKF(!eng_model_has_dense(lazy), "%s: the blocks alone made the f32 copy", qm->name);
        f.m = eager;
        g_quant_engine = ENG_QUANT_AUTO;
        for (int s = ENG_QUANT_AUTO; s <= ENG_QUANT_LEAN; s++) {
            eng_opts eo = {0};
            eo.backend = ENG_BACKEND_CUDA;
            eo.quant = s;
            eo.n_blocks = TBLOCKS;
            eng_engine *e = NULL;
            if (eng_create(f.m, &eo, &e, &err)) {
                T_CHECKF(0, "%s quant %d: %s", qm->name, s, err.msg);
                continue;
            }
            const int want = s == ENG_QUANT_OFF ? 0 : s == ENG_QUANT_LEAN ? 2 : 1;
            T_CHECKF(eng_quantized(e) == want, "%s quant %d: engine's eng_quantized %d, wanted %d",
                     qm->name, s, eng_quantized(e), want);
            /* the default activations (ENG_ACT_AUTO): Q16 wherever the blocks are read */
            const int act = s == ENG_QUANT_OFF ? ENG_ACT_F32 : ENG_ACT_Q16;
            T_CHECKF(eng_act(e) == act, "%s quant %d: engine's activations %s, wanted %s", qm->name, s,
                     eng_act_name(eng_act(e)), eng_act_name(act));
            eng_destroy(e);
        }
    } else {
        T_CHECKF(0, "%s: %s", qm->name, err.msg);
    }
    qfixture_free(&f, lazy);
}

static void test_quant_models(void) {
    g_quant = 1;
    for (int i = 0; i < (int)(sizeof qmodels / sizeof *qmodels); i++) quant_model(&qmodels[i], i);
    g_quant = 0;
}

/* kern_to_act with KERN_ACT_Q16 (the half-warp rounding the wide passes'
 * kernels share) against the host's rounding of the same f32
 * rows (the CPU reference's rule), in each layout: f32 bit for bit, bf16
 * and hi/lo the bf16 values of the same rounded floats; a group of zeros
 * stays zeros. */
static void act_q16_kernel_case(void) {
    enum { R = 3, K = 1024 };
    float *x = malloc(R * K * 4), *want = malloc(R * K * 4), *got = malloc(2 * R * K * 4);
    if (!x || !want || !got) { T_CHECK(0); free(x); free(want); free(got); return; }
    for (int i = 0; i < R * K; i++) x[i] = nrand() * (i % 97 == 0 ? 40.f : 1.f);
    for (int k = 32; k < 48; k++) x[K + k] = 0.f;
    q16_host(want, x, R * K);
    float *din = dup_up(x, R * K * 4);
    void *dact = dnew(2 * R * K * 4);
    int bad[3] = {0, 0, 0};
    for (int mode = KERN_ACT_F32; din && dact && mode <= KERN_ACT_SPLIT; mode++) {
        if (kern_to_act(0, din, R, K, dact, mode | KERN_ACT_Q16, 0) || !sync_ok() ||
            !down(got, dact, (size_t)(mode == KERN_ACT_SPLIT ? 2 : 1) * R * K * (mode ? 2 : 4))) {
            bad[mode] = -1;
            continue;
        }
        const uint16_t *h = (const uint16_t *)got;
        for (int i = 0; i < R * K; i++) {
            float v;
            if (mode == KERN_ACT_F32) v = got[i];
            else {
                v = bf16_val(h[i]);
                if (mode == KERN_ACT_SPLIT) v += bf16_val(h[R * K + i]);
            }
            const uint16_t hi = kern_f32_to_bf16(want[i]);
            const float w = mode == KERN_ACT_F32 ? want[i] : mode == KERN_ACT_BF16 ? bf16_val(hi)
                          : bf16_val(hi) + bf16_val(kern_f32_to_bf16(want[i] - bf16_val(hi)));
            bad[mode] += v != w;
        }
    }
    T_CHECKF(!bad[0] && !bad[1] && !bad[2], "kern_to_act with KERN_ACT_Q16: %d / %d / %d elements differ (f32, bf16, "
             "hi/lo; -1: failed)", bad[0], bad[1], bad[2]);
    T_CHECK(kern_to_act(0, din, R, 24, dact, KERN_ACT_F32 | KERN_ACT_Q16, 0) != 0);   /* K not whole groups */
    /* attention's output: a head size not of whole groups is refused */
    kern_kv hd8 = {(float *)16, 1024, 1, 8, 16, 0, KERN_F32};   /* else valid */
    T_CHECK(kern_attention(0, NULL, hd8, NULL, 1, 4, 1, NULL, dact, KERN_ACT_Q16, NULL, NULL, 0) != 0);
    dfree_all();
    free(x); free(want); free(got);
}

/* Prompt-pass logits (a wide pass: inputs rounded by the kernels that
 * write them) of the CUDA backend against the CPU's, both with ENG_ACT_Q16
 * (1e-4 relative, as f32), and the CPU's against its f32 logits (between
 * 1e-7 and 1e-3 apart: the rounding happened, and is fine). */
static void act_q16_logits(fixture *f) {
    const int act = ENG_ACT_Q16;
    const fprompt *pr = &f->p[f->n_prompts - 1];
    const int n = pr->n_prompt, V = f->vocab;
    float *l[3] = {malloc((size_t)n * V * 4), malloc((size_t)n * V * 4), malloc((size_t)n * V * 4)};
    double *ref = malloc((size_t)n * V * 8);
    eng_err err = {0};
    int ok = l[0] && l[1] && l[2] && ref;
    for (int k = 0; k < 3 && ok; k++) {   /* CPU q16, CUDA q16, CPU f32 */
        g_act = k < 2 ? act : ENG_ACT_F32;
        tdrv d;
        tseq q, *qs = &q;
        int nn = n;
        seq_init(&q, pr->ids, n);
        if (drv_open(&d, f->m, k == 1, NULL, &err) || drv_pass(&d, &qs, 1, &nn, l[k], &err)) {
            T_CHECKF(0, "%s q16 logits (%d): %s", f->name, k, err.msg);
            ok = 0;
        }
        drv_close(&d);
    }
    g_act = act;
    if (ok) {
        for (size_t i = 0; i < (size_t)n * V; i++) ref[i] = l[0][i];
        const double e = rel_err(l[1], ref, (size_t)n * V);
        for (size_t i = 0; i < (size_t)n * V; i++) ref[i] = l[2][i];
        const double moved = rel_err(l[0], ref, (size_t)n * V);
        const char *a = eng_act_name(act);
        printf("  %s %s: CUDA %.3g from the CPU, the CPU's %s %.3g from its f32\n", f->name, a, e, a, moved);
        T_CHECKF(e <= 1e-4 && moved > 1e-7 && moved < 1e-3,
                 "%s %s logits: CUDA %.3g from CPU, %.3g from f32", f->name, a, e, moved);
    }
    for (int k = 0; k < 3; k++) free(l[k]);
    free(ref);
}

/* ENG_ACT_Q16 end to end on the quantized fixtures (llama Q4_K_M, qwen2
 * Q8_0, gemma3 Q4_0: GeGLU, output norms, sliding layers): the CPU
 * reference and the CUDA backend with rounded inputs agree, greedy token
 * for token, on every path: one row and 2 rows (kern_qgemv rounds as it
 * stages), 4 and 8 rows (kern_qskinny), 40 rows and the 300-row prompt (the dense
 * copy, then the blocks alone), continuous batching and the engine (--act
 * q16); refused where the blocks are not on the device. */
static void test_act_q16(void) {
    act_q16_kernel_case();
    for (int i = 0; i < (int)(sizeof qmodels / sizeof *qmodels); i++) {
        const struct qmodel *qm = &qmodels[i];
        fixture f;
        eng_model *lazy = NULL;
        if (!qfixture_make(qm, i, &f, &lazy)) continue;
        g_quant = 1;
        g_act = ENG_ACT_Q16;
        if (fixture_cpu_gen(&f)) {
            act_q16_logits(&f);
            fixture_greedy(&f);
            batched_case(&f, 2);
            batched_case(&f, 4);
            batched_case(&f, 8);
            batched_case(&f, 40);
            continuous_case(&f);
            long_case(&f);
            g_quant_wide = 2;
            batched_case(&f, 40);
            long_case(&f);
            g_quant_wide = 0;
            engine_case(&f);
        } else {
            T_CHECKF(0, "%s: CPU backend with q16 activations", qm->name);
        }
        g_act = ENG_ACT_F32;
        g_quant = 0;
        eng_err err = {0};
        eng_cuda_opts o;
        eng_cuda_opts_default(&o);
        o.act = ENG_ACT_Q16;
        o.quant = 0;   /* no blocks on the device: refused */
        eng_backend *b = NULL;
        T_CHECKF(eng_backend_cuda_create_opts(f.m, TBLOCKS, TBS, &o, &b, &err) == ENG_EUNSUPPORTED && !b,
                 "%s: q16 without the blocks not refused", qm->name);
        if (b) b->destroy(b);
        b = NULL;
        o.act = ENG_ACT_BF16;   /* bf16 inputs are for dense products: refused beside the blocks */
        o.quant = 1;
        o.bf16_weights = 1;
        T_CHECKF(eng_backend_cuda_create_opts(f.m, TBLOCKS, TBS, &o, &b, &err) == ENG_EUNSUPPORTED && !b &&
                 strstr(err.msg, "--no-quant"), "%s: bf16 activations with the blocks: %s", qm->name, err.msg);
        if (b) b->destroy(b);
        qfixture_free(&f, lazy);
    }
}

int main(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1) {
        printf("SKIP: no CUDA device visible (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "none");
        T_DONE();
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        printf("device: %s, %d SMs, sm_%d%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);
    T_RUN(test_gemv);
    T_RUN(test_qgemv);
    T_RUN(test_gemm);
    T_RUN(test_skinny);
    T_RUN(test_qskinny);
    T_RUN(test_dequant);
    T_RUN(test_rowwise);
    T_RUN(test_rope_kv);
    T_RUN(test_add_norm_widths);
    T_RUN(test_gemv_qkv);
    T_RUN(test_attention);
    T_RUN(test_attention2);
    T_RUN(test_attention_kv_bf16);
    T_RUN(test_sample);
    T_RUN(test_fixture_logits);
    T_RUN(test_greedy_64);
    T_RUN(test_batched);
    T_RUN(test_batched_20);
    T_RUN(test_batched_cublas);
    T_RUN(test_continuous);
    T_RUN(test_fork);
    T_RUN(test_long_context);
    T_RUN(test_forks);
    T_RUN(test_errors);
    T_RUN(test_engine);
    T_RUN(test_attn1_backend);
    T_RUN(test_attn3_backend);
    T_RUN(test_attn4_backend);
    T_RUN(test_prefill_attn_backend);
    T_RUN(test_tp_backend);
    T_RUN(test_kv_bf16_backend);
    T_RUN(test_kv_bf16_variants);
    T_RUN(test_act_bf16_backend);
    T_RUN(test_quant_models);
    T_RUN(test_act_q16);
    for (int i = 0; i < N_FX; i++) {
        eng_model_free(fx[i].m);
        for (int p = 0; p < fx[i].n_prompts; p++) free(fx[i].p[p].ids);
        free(fx[i].ref);
    }
    T_DONE();
}
#endif
