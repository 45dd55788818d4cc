// gemm_probe: times bf16 GEMMs (fp32 or bf16 output, fp32 accumulation) of the shapes the CDT
// step runs, with cublasGemmEx and with every candidate cuBLASLt's heuristic offers (the first
// and the best), so a slow shape can be told apart from a slow algorithm choice. Random-ish
// operands, 3 warm-up and 20 timed calls each, CUDA events.
//   usage: gemm_probe        (prints one line per shape plus two cuBLASLt lines)
//          gemm_probe --epilogue   (the body linears' cuBLASLt epilogue GEMMs, K as the plain linear,
//                                   K-extended by a rank-16 adapter (3 x 16 columns), and that rounded up to 64)
#include <cublasLt.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"

__global__ void fill_kernel(__nv_bfloat16 *p, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16((float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f);
}

static cublasHandle_t handle;
static cublasLtHandle_t lt;
static void *ws, *A, *B, *C;
static size_t ws_bytes = (size_t)64 << 20;
static const int REPS = 20;

// Every candidate cuBLASLt's heuristic offers for op over (la, lb, lc; D = C, beta 0 or 1), timed:
// the first's and the best's ms (best_i its index), the number of candidates (0: none, *st says
// why). Destroys op and the layouts.
struct lt_times { int n, best_i; double first, best; cublasStatus_t st; };
static lt_times lt_candidates(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                              cublasLtMatrixLayout_t lc, float beta) {
    const float one = 1;
    lt_times r = {0, -1, 0, 1e30, CUBLAS_STATUS_SUCCESS};
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                     sizeof(ws_bytes)));
    cublasLtMatmulHeuristicResult_t res[16];
    r.st = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 16, res, &r.n);
    if (r.st != CUBLAS_STATUS_SUCCESS) r.n = 0;
    for (int a = 0; a < r.n; a++) {
        double t = cu_time_ms(0, 2, REPS, [&] {
            CUBLAS_CHECK(cublasLtMatmul(lt, op, &one, A, la, B, lb, &beta, C, lc, C, lc, &res[a].algo, ws, ws_bytes, 0));
        });
        if (a == 0) r.first = t;
        if (t < r.best) r.best = t, r.best_i = a;
    }
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lc));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
    return r;
}

static void probe(const char *name, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda,
                  int ldb, int ldc, cudaDataType_t ct) {
    float one = 1, zero = 0;
    double flop = 2.0 * m * n * (double)k;
    double ms = cu_time_ms(0, 3, REPS, [&] {
        CUBLAS_CHECK(cublasGemmEx(handle, ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &zero, C, ct,
                                  ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
    printf("%-40s m=%6d n=%6d k=%6d ld=%6d/%6d/%6d %s  %.3f ms  %4.0f TFLOP/s\n", name, m, n, k, lda, ldb, ldc,
           ct == CUDA_R_32F ? "f32 out " : "bf16 out", ms, flop / ms / 1e9);
    cublasLtMatmulDesc_t op;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    cublasLtMatrixLayout_t la, lb, lc;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, ct, m, n, ldc));
    lt_times t = lt_candidates(op, la, lb, lc, zero);
    if (t.n)
        printf("    cuBLASLt: first candidate %.3f ms (%.0f TFLOP/s), best of %d: #%d %.3f ms (%.0f TFLOP/s)\n", t.first,
               flop / t.first / 1e9, t.n, t.best_i, t.best, flop / t.best / 1e9);
}

// cuBLASLt D[m,n] = op(A) B (op(A) [m, k]: A stored [k, m] for ta = T, [m, k] for N, rows lda apart;
// B [k, n], ldb) with epilogue ep, D in dt (ld ldd), C = D read (beta 1) when with_c; a bias (BIAS,
// GELU_AUX_BIAS) of bias_type, an aux (GELU_AUX_BIAS, DGELU) bf16 with ld m: the heuristic's
// candidates, first and best.
static int bias_type = CUDA_R_32F;   // -1: the attribute not set (the bias takes D's type)
static void probe_lt(const char *name, cublasOperation_t ta, cublasLtEpilogue_t ep, int m, int n, int k, int lda,
                     int ldb, int ldd, cudaDataType_t dt, int with_c) {
    const cublasOperation_t tb = CUBLAS_OP_N;
    double flop = 2.0 * m * n * (double)k;
    cublasLtMatmulDesc_t op;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
    const cudaDataType_t bt = (cudaDataType_t)bias_type;
    void *bias = (char *)C + (size_t)ldd * n * 4, *aux = (char *)bias + (size_t)m * 4 + 256;
    if (ep == CUBLASLT_EPILOGUE_BIAS || ep == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
        if (bias_type >= 0)
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    if (ep == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || ep == CUBLASLT_EPILOGUE_DGELU) {
        const int64_t ld_aux = m;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof(ld_aux)));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    }
    cublasLtMatrixLayout_t la, lb, lc;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ta == CUBLAS_OP_T ? k : m, ta == CUBLAS_OP_T ? m : k, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, n, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, dt, m, n, ldd));
    lt_times t = lt_candidates(op, la, lb, lc, with_c ? 1.0f : 0.0f);
    if (!t.n)
        printf("%-34s m=%5d n=%5d k=%5d lda=%5d: no cuBLASLt algorithm (%s)\n", name, m, n, k, lda,
               t.st == CUBLAS_STATUS_SUCCESS ? "none offered" : cublasGetStatusString(t.st));
    else
        printf("%-34s m=%5d n=%5d k=%5d lda=%5d %s: first %.4f ms (%3.0f TFLOP/s), best of %d #%d %.4f ms\n", name, m,
               n, k, lda, dt == CUDA_R_32F ? "f32 " : "bf16", t.first, flop / t.first / 1e9, t.n, t.best_i, t.best);
}

// A forward linear's GEMM, A^T B with both operands' rows ld apart, D's rows m apart.
static void probe_ep(const char *name, cublasLtEpilogue_t ep, int m, int n, int k, int ld, cudaDataType_t dt,
                     int with_c) {
    probe_lt(name, CUBLAS_OP_T, ep, m, n, k, ld, ld, m, dt, with_c);
}

static void epilogue_probes(void) {
    const cudaDataType_t F = CUDA_R_32F, H = CUDA_R_16BF;
    const cublasLtEpilogue_t NONE = CUBLASLT_EPILOGUE_DEFAULT, BIAS = CUBLASLT_EPILOGUE_BIAS,
                             GELU = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    struct { const char *name; int oc, ic; } lin[] = {{"qkv", 2304, 768}, {"attn proj", 768, 768}, {"mlp in", 3072, 768},
                                                     {"mlp out", 768, 3072}};
    const int bts[3] = {CUDA_R_32F, CUDA_R_16BF, -1};
    const char *btn[3] = {"fp32", "bf16", "unset (D's type)"};
    for (int b = 0; b < 3; b++) {
        bias_type = bts[b];
        printf("bias data type %s:\n", btn[b]);
        probe_ep("mlp in gelu_aux_bias bf16", GELU, 3072, 4096, 832, 832, H, 0);
        probe_ep("mlp in gelu_aux_bias bf16", GELU, 3072, 4096, 768, 768, H, 0);
        probe_ep("qkv bias bf16", BIAS, 2304, 4096, 832, 832, H, 0);
        probe_ep("mlp out bias+C f32", BIAS, 768, 4096, 3136, 3136, F, 1);
    }
    bias_type = -1;   // (D's type, as the backend passes it)
    for (int i = 0; i < 4; i++) {
        int oc = lin[i].oc, ic = lin[i].ic, ke = ic + 48, k64 = (ke + 63) & ~63;
        char nm[64];
        snprintf(nm, sizeof nm, "%s [w;A], f32 out", lin[i].name);
        probe_ep(nm, NONE, oc + 16, 4096, ic, ic, F, 0);
        int ks[3] = {ic, ke, k64};
        for (int j = 0; j < 3; j++) {
            snprintf(nm, sizeof nm, "%s bias+C f32", lin[i].name);
            probe_ep(nm, BIAS, oc, 4096, ks[j], ks[j], F, 1);
            snprintf(nm, sizeof nm, "%s bias bf16", lin[i].name);
            probe_ep(nm, BIAS, oc, 4096, ks[j], ks[j], H, 0);
            snprintf(nm, sizeof nm, "%s gelu_aux_bias bf16", lin[i].name);
            probe_ep(nm, GELU, oc, 4096, ks[j], ks[j], H, 0);
        }
    }
    probe_ep("u = x A^T r=16 (Lt, f32)", NONE, 16, 4096, 768, 768, F, 0);
    probe_ep("u = x A^T r=16 (Lt, f32), k 3072", NONE, 16, 4096, 3072, 3072, F, 0);
    // the backward's [dout | du] [w ; A] at B=8 T=512, r = 16: the weight's rows IC apart (its plain
    // copy) or IC + 48 (the K-extended one); the MLP-out linear's with DGELU into bf16 rows padded for
    // the next adapter's du columns (3088), the others into fp32
    const cublasLtEpilogue_t DG = CUBLASLT_EPILOGUE_DGELU;
    for (int l = 3072; l <= 3120; l += 48) {
        probe_lt("mlp out bwd dgelu bf16", CUBLAS_OP_N, DG, 3072, 4096, 784, l, 784, 3088, H, 0);
        probe_lt("mlp out bwd (no epilogue) bf16", CUBLAS_OP_N, NONE, 3072, 4096, 784, l, 784, 3088, H, 0);
        probe(l == 3072 ? "mlp out bwd GemmEx bf16, lda IC" : "mlp out bwd GemmEx bf16, lda IC+48", CUBLAS_OP_N,
              CUBLAS_OP_N, 3072, 4096, 784, l, 784, 3088, H);
    }
    for (int l = 768; l <= 816; l += 48) {
        probe(l == 768 ? "qkv bwd GemmEx f32, lda IC" : "qkv bwd GemmEx f32, lda IC+48", CUBLAS_OP_N, CUBLAS_OP_N, 768,
              4096, 2320, l, 2320, 768, F);
        probe(l == 768 ? "mlp in bwd GemmEx f32, lda IC" : "mlp in bwd GemmEx f32, lda IC+48", CUBLAS_OP_N, CUBLAS_OP_N,
              768, 4096, 3088, l, 3088, 768, F);
    }
    // the input-gradient GEMMs into fp32 (qkv, attention projection, MLP in) by cuBLASLt, and with K
    // (the du columns) rounded up to 32 and 64
    const int bk[3][3] = {{2320, 2336, 2368}, {784, 800, 832}, {3088, 3104, 3136}};
    const char *bn[3] = {"qkv", "attn proj", "mlp in"};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            char nm[96];
            snprintf(nm, sizeof nm, "%s bwd k=%d Lt f32", bn[i], bk[i][j]);
            probe_lt(nm, CUBLAS_OP_N, NONE, 768, 4096, bk[i][j], 816, bk[i][j], 768, F, 0);
            snprintf(nm, sizeof nm, "%s bwd k=%d GemmEx f32", bn[i], bk[i][j]);
            probe(nm, CUBLAS_OP_N, CUBLAS_OP_N, 768, 4096, bk[i][j], 816, bk[i][j], 768, F);
        }
}

static void default_probes(void) {
    const cublasOperation_t T = CUBLAS_OP_T, N = CUBLAS_OP_N;
    const cudaDataType_t F = CUDA_R_32F;
    // reference; the LM head at B=8 T=512 (V = 50257 and its aligned neighbours); body linears
    probe("8192^3 (reference)", N, N, 8192, 8192, 8192, 8192, 8192, 8192, F);
    probe("head fwd m=V", T, N, 50257, 4096, 768, 768, 768, 50257, F);
    probe("head fwd m=V, ldc padded", T, N, 50257, 4096, 768, 768, 768, 50304, F);
    probe("head fwd m=50240, ldc V", T, N, 50240, 4096, 768, 768, 768, 50257, F);
    probe("head fwd m=50240, ldc padded", T, N, 50240, 4096, 768, 768, 768, 50304, F);
    probe("head fwd m=50304", T, N, 50304, 4096, 768, 768, 768, 50304, F);
    probe("head fwd m=50304, bf16 out", T, N, 50304, 4096, 768, 768, 768, 50304, CUDA_R_16BF);
    probe("head fwd remainder m=17", T, N, 17, 4096, 768, 768, 768, 50257, F);
    probe("head bwd dinp k=V", N, N, 768, 4096, 50257, 768, 50257, 768, F);
    probe("head bwd dinp k=V, ldb padded", N, N, 768, 4096, 50257, 768, 50304, 768, F);
    probe("head bwd dinp k=50240, ldb padded", N, N, 768, 4096, 50240, 768, 50304, 768, F);
    probe("head bwd dinp k=50240, ldb V", N, N, 768, 4096, 50240, 768, 50257, 768, F);
    probe("head LoRA dB n=V", N, T, 16, 50257, 4096, 16, 50257, 16, F);
    probe("head LoRA dB n=50240, ldb padded", N, T, 16, 50240, 4096, 16, 50304, 16, F);
    probe("head LoRA du k=V", N, N, 16, 4096, 50257, 16, 50257, 16, F);
    probe("head LoRA du k=50240, ldb padded", N, N, 16, 4096, 50240, 16, 50304, 16, F);
    probe("qkv fwd", T, N, 2304, 4096, 768, 768, 768, 2304, F);
    probe("mlp in fwd", T, N, 3072, 4096, 768, 768, 768, 3072, F);
    probe("mlp out fwd", T, N, 768, 4096, 3072, 3072, 3072, 768, F);
    probe("mlp in bwd dinp", N, N, 768, 4096, 3072, 768, 3072, 768, F);
    probe("LoRA up (out += u B^T), r=16", T, N, 3072, 4096, 16, 16, 16, 3072, F);
    probe("LoRA down (u = x A^T), r=16", T, N, 16, 4096, 768, 768, 768, 16, F);
    probe("LoRA dB (dout^T u), r=16", N, T, 16, 3072, 4096, 16, 3072, 16, F);
    probe("LoRA dA (du^T x), r=16", N, T, 768, 16, 4096, 768, 16, 768, F);
    probe("LoRA down (u = x A^T), r=16, k 3072", T, N, 16, 4096, 3072, 3072, 3072, 16, F);
}

int main(int argc, char **argv) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "gemm_probe: no CUDA device found\n");
        return 2;
    }
    CUBLAS_CHECK(cublasCreate(&handle));
    CUBLAS_CHECK(cublasLtCreate(&lt));
    CUDA_CHECK(cudaMalloc(&ws, ws_bytes));
    CUBLAS_CHECK(cublasSetWorkspace(handle, ws, ws_bytes));
    size_t big = (size_t)50304 * 4096 * 2;   // elements: the largest operand and output below
    CUDA_CHECK(cudaMalloc(&A, big * 2));
    CUDA_CHECK(cudaMalloc(&B, big * 2));
    CUDA_CHECK(cudaMalloc(&C, big * 4));
    fill_kernel<<<4096, 256>>>((__nv_bfloat16 *)A, big);
    fill_kernel<<<4096, 256>>>((__nv_bfloat16 *)B, big);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
    if (argc > 1 && !strcmp(argv[1], "--epilogue")) epilogue_probes();
    else default_probes();
    CUDA_CHECK(cudaFree(A));
    CUDA_CHECK(cudaFree(B));
    CUDA_CHECK(cudaFree(C));
    CUDA_CHECK(cudaFree(ws));
    CUBLAS_CHECK(cublasLtDestroy(lt));
    CUBLAS_CHECK(cublasDestroy(handle));
    return 0;
}
