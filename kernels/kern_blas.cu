/* kern_blas.cu — matrix products through cuBLASLt for passes with many rows
 * (prefill, large decode batches).  Row-major Y[n][N] = act[n][K] W[N][K]^T
 * is column-major Y^T = W^T act^T: A = W (stored K x N, transposed), B = act
 * (K x n), D = Y^T (N x n).  bf16 weights meet bf16 activations with f32
 * accumulation and f32 output; f32 weights meet f32 activations in plain
 * f32 (no TF32).  Descriptors and the heuristic's choice are cached per
 * shape, and the workspace is fixed, so products can be captured in graphs.
 * A product can also run as a strided batch of K slices (partial products
 * for the consumer to add), in place of cuBLASLt's split-K and its reduce
 * kernel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cublasLt.h>
#include <cublas_v2.h>
#include "kern_common.cuh"

#define BLAS_WS_BYTES (32u << 20)
#define BLAS_CACHE 96

typedef struct blas_plan {
    int N, K, n, wdt, act_bf16, slices;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} blas_plan;

struct kern_blas {
    cublasLtHandle_t lt;
    cublasHandle_t h;   /* plain f32 batched products (kern_blas_sgemm_batched) */
    void *ws;
    blas_plan plan[BLAS_CACHE];
    int n_plan, next_evict;
};

static int lt_fail(eng_err *err, cublasStatus_t s, const char *what) {
    return eng_seterr(err, s == CUBLAS_STATUS_ALLOC_FAILED ? ENG_ENOMEM : ENG_EIO,
                      "cuBLASLt: %s failed (status %d)", what, (int)s);
}

#define LT(call, what) do { cublasStatus_t s_ = (call); \
    if (s_ != CUBLAS_STATUS_SUCCESS) return lt_fail(err, s_, what); } while (0)

extern "C" int kern_blas_create(kern_blas **out, eng_err *err) {
    *out = NULL;
    kern_blas *b = (kern_blas *)calloc(1, sizeof *b);
    if (!b) return eng_seterr(err, ENG_ENOMEM, "cuBLASLt wrapper: out of host memory");
    cublasStatus_t s = cublasLtCreate(&b->lt);
    if (s != CUBLAS_STATUS_SUCCESS) { free(b); return lt_fail(err, s, "cublasLtCreate"); }
    s = cublasCreate(&b->h);
    if (s != CUBLAS_STATUS_SUCCESS) { cublasLtDestroy(b->lt); free(b); return lt_fail(err, s, "cublasCreate"); }
    cudaError_t e = cudaMalloc(&b->ws, BLAS_WS_BYTES);
    if (e != cudaSuccess) {
        cublasDestroy(b->h);
        cublasLtDestroy(b->lt);
        free(b);
        return eng_seterr(err, ENG_ENOMEM, "cuBLASLt workspace: %s", cudaGetErrorString(e));
    }
    *out = b;
    return ENG_OK;
}

static void plan_free(blas_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

extern "C" void kern_blas_destroy(kern_blas *b) {
    if (!b) return;
    for (int i = 0; i < b->n_plan; i++) plan_free(&b->plan[i]);
    cudaFree(b->ws);
    cublasDestroy(b->h);
    cublasLtDestroy(b->lt);
    free(b);
}

/* Makes layout l a strided batch of count matrices, stride elements apart. */
static cublasStatus_t layout_batch(cublasLtMatrixLayout_t l, int32_t count, int64_t stride) {
    cublasStatus_t s = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                        &count, sizeof count);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    return cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                            sizeof stride);
}

static int plan_make(kern_blas *bl, blas_plan *p, eng_err *err) {
    cudaDataType_t in_t = p->wdt == KERN_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    LT(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT),
       "set TRANSA");
    LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN),
       "set TRANSB");
    const int ks = p->K / p->slices;   /* a slice: ks rows of A and B, leading dimension K */
    LT(cublasLtMatrixLayoutCreate(&p->a, in_t, ks, p->N, p->K), "layout A");
    LT(cublasLtMatrixLayoutCreate(&p->b, in_t, ks, p->n, p->K), "layout B");
    LT(cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, p->N, p->n, p->N), "layout D");
    if (p->slices > 1) {   /* slice i: A and B from element i ks on, D from i N n on */
        LT(layout_batch(p->a, p->slices, ks), "layout A batch");
        LT(layout_batch(p->b, p->slices, ks), "layout B batch");
        LT(layout_batch(p->d, p->slices, (int64_t)p->N * p->n), "layout D batch");
    }
    cublasLtMatmulPreference_t pref;
    LT(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
    size_t ws = BLAS_WS_BYTES;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (s == CUBLAS_STATUS_SUCCESS && p->slices > 1) {   /* the slices are the split */
        const uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                 &none, sizeof none);
    }
    cublasLtMatmulHeuristicResult_t res;
    int n_res = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(bl->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &res,
                                           &n_res);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS) return lt_fail(err, s, "AlgoGetHeuristic");
    if (n_res < 1)
        return eng_seterr(err, ENG_EUNSUPPORTED, "cuBLASLt: no algorithm for %dx%dx%d (%s)",
                          p->N, p->n, p->K, p->wdt == KERN_BF16 ? "bf16" : "f32");
    p->algo = res.algo;
    return ENG_OK;
}

static int plan_get(kern_blas *bl, int N, int K, int n, int wdt, int act_bf16, int slices,
                    blas_plan **out, eng_err *err) {
    for (int i = 0; i < bl->n_plan; i++) {
        blas_plan *p = &bl->plan[i];
        if (p->N == N && p->K == K && p->n == n && p->wdt == wdt && p->act_bf16 == act_bf16 &&
            p->slices == slices) {
            *out = p;
            return ENG_OK;
        }
    }
    blas_plan *p;
    if (bl->n_plan < BLAS_CACHE) p = &bl->plan[bl->n_plan++];
    else {
        p = &bl->plan[bl->next_evict];
        bl->next_evict = (bl->next_evict + 1) % BLAS_CACHE;
        plan_free(p);
    }
    p->N = N; p->K = K; p->n = n; p->wdt = wdt; p->act_bf16 = act_bf16; p->slices = slices;
    int rc = plan_make(bl, p, err);
    if (rc) {
        plan_free(p);   /* leaves a zeroed slot that matches no shape */
        p->N = -1;
        return rc;
    }
    *out = p;
    return ENG_OK;
}

extern "C" int kern_blas_splits(kern_blas *b, int wdt, int N, int K, int act_is_bf16, int n,
                                eng_err *err) {
    blas_plan *p;
    if (N < 1 || K < 1 || n < 1) return eng_seterr(err, ENG_EINVAL, "cuBLASLt: bad shape"), 0;
    if (plan_get(b, N, K, n, wdt, act_is_bf16 != 0, 1, &p, err)) return 0;
    int32_t splits = 1;
    size_t got = 0;
    cublasStatus_t s = cublasLtMatmulAlgoConfigGetAttribute(
        &p->algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof splits, &got);
    if (s != CUBLAS_STATUS_SUCCESS) return lt_fail(err, s, "AlgoConfigGetAttribute"), 0;
    return splits > 1 ? splits : 1;
}

extern "C" int kern_blas_gemm(kern_blas *b, cudaStream_t s, const void *W, int wdt, int N, int K,
                              const void *act, int act_is_bf16, int n, float *Y, eng_err *err) {
    return kern_blas_gemm_sliced(b, s, W, wdt, N, K, act, act_is_bf16, n, 1, Y, err);
}

extern "C" int kern_blas_gemm_sliced(kern_blas *b, cudaStream_t s, const void *W, int wdt, int N,
                                     int K, const void *act, int act_is_bf16, int n, int slices,
                                     float *Y, eng_err *err) {
    if (N < 1 || K < 1 || n < 1 || slices < 1 || (slices > 1 && K % (8 * slices)))
        return eng_seterr(err, ENG_EINVAL, "cuBLASLt: bad shape %dx%dx%d in %d slices", N, n, K,
                          slices);
    if ((wdt == KERN_BF16) != (act_is_bf16 != 0))
        return eng_seterr(err, ENG_EINVAL, "cuBLASLt: weights and activations differ in type");
    blas_plan *p;
    int rc = plan_get(b, N, K, n, wdt, act_is_bf16 != 0, slices, &p, err);
    if (rc) return rc;
    const float one = 1.f, zero = 0.f;
    LT(cublasLtMatmul(b->lt, p->desc, &one, W, p->a, act, p->b, &zero, Y, p->d, Y, p->d, &p->algo,
                      b->ws, BLAS_WS_BYTES, s),
       "Matmul");
    return ENG_OK;
}

/* Column-major C_i = op(A_i) B_i for i < batch (A_i = A + i sA, ...), f32 in
 * and out with f32 arithmetic (cuBLAS's default math: no TF32). */
extern "C" int kern_blas_sgemm_batched(kern_blas *b, cudaStream_t s, int trans_a, int M, int N,
                                       int K, const float *A, int lda, long long sA,
                                       const float *B, int ldb, long long sB, float *C, int ldc,
                                       long long sC, int batch, eng_err *err) {
    if (M < 1 || N < 1 || K < 1 || batch < 1)
        return eng_seterr(err, ENG_EINVAL, "cuBLAS: bad batched shape %dx%dx%d x%d", M, N, K, batch);
    const float one = 1.f, zero = 0.f;
    LT(cublasSetStream(b->h, s), "SetStream");
    LT(cublasSgemmStridedBatched(b->h, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, M, N, K,
                                 &one, A, lda, sA, B, ldb, sB, &zero, C, ldc, sC, batch),
       "SgemmStridedBatched");
    return ENG_OK;
}
