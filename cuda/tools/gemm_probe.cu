// gemm_probe: times bf16 GEMMs (fp32 or bf16 output, fp32 accumulation) of the shapes the CDT
// step runs, with cublasGemmEx and with every candidate cuBLASLt's heuristic offers (the first
// and the best), so a slow shape can be told apart from a slow algorithm choice. Random-ish
// operands, 3 warm-up and 20 timed calls each, CUDA events.
//   usage: gemm_probe        (prints one line per shape plus two cuBLASLt lines)
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>

#define PROBE_CHECK(call)                                                                       \
    do {                                                                                        \
        long long s_ = (long long)(call);                                                       \
        if (s_) {                                                                               \
            fprintf(stderr, "gemm_probe: %s failed with status %lld (line %d)\n", #call, s_, __LINE__); \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

__global__ void fill_kernel(__nv_bfloat16 *p, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16((float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f);
}

static cublasHandle_t handle;
static cublasLtHandle_t lt;
static void *ws, *A, *B, *C;
static size_t ws_bytes = (size_t)64 << 20;
static const int REPS = 20;

static double elapsed_ms(cudaEvent_t e0, cudaEvent_t e1) {
    float ms = 0;
    PROBE_CHECK(cudaEventSynchronize(e1));
    PROBE_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    return ms;
}

static void probe(const char *name, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda,
                  int ldb, int ldc, cudaDataType_t ct) {
    float one = 1, zero = 0;
    double flop = 2.0 * m * n * (double)k;
    cudaEvent_t e0, e1;
    PROBE_CHECK(cudaEventCreate(&e0));
    PROBE_CHECK(cudaEventCreate(&e1));
    for (int i = -3; i < REPS; i++) {
        if (i == 0) PROBE_CHECK(cudaEventRecord(e0));
        PROBE_CHECK(cublasGemmEx(handle, ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &zero, C, ct,
                                 ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    PROBE_CHECK(cudaEventRecord(e1));
    double ms = elapsed_ms(e0, e1) / REPS;
    printf("%-40s m=%6d n=%6d k=%6d ld=%6d/%6d/%6d %s  %.3f ms  %4.0f TFLOP/s\n", name, m, n, k, lda, ldb, ldc,
           ct == CUDA_R_32F ? "f32 out " : "bf16 out", ms, flop / ms / 1e9);
    cublasLtMatmulDesc_t op;
    PROBE_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    PROBE_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    PROBE_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    cublasLtMatrixLayout_t la, lb, lc;
    PROBE_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda));
    PROBE_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb));
    PROBE_CHECK(cublasLtMatrixLayoutCreate(&lc, ct, m, n, ldc));
    cublasLtMatmulPreference_t pref;
    PROBE_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    PROBE_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                     sizeof(ws_bytes)));
    cublasLtMatmulHeuristicResult_t res[16];
    int nres = 0;
    PROBE_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 16, res, &nres));
    double best = 1e30, first = 0;
    int best_i = -1;
    for (int a = 0; a < nres; a++) {
        for (int i = -2; i < REPS; i++) {
            if (i == 0) PROBE_CHECK(cudaEventRecord(e0));
            PROBE_CHECK(cublasLtMatmul(lt, op, &one, A, la, B, lb, &zero, C, lc, C, lc, &res[a].algo, ws, ws_bytes, 0));
        }
        PROBE_CHECK(cudaEventRecord(e1));
        double t = elapsed_ms(e0, e1) / REPS;
        if (a == 0) first = t;
        if (t < best) {
            best = t;
            best_i = a;
        }
    }
    if (nres)
        printf("    cuBLASLt: first candidate %.3f ms (%.0f TFLOP/s), best of %d: #%d %.3f ms (%.0f TFLOP/s)\n", first,
               flop / first / 1e9, nres, best_i, best, flop / best / 1e9);
    PROBE_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    PROBE_CHECK(cublasLtMatrixLayoutDestroy(la));
    PROBE_CHECK(cublasLtMatrixLayoutDestroy(lb));
    PROBE_CHECK(cublasLtMatrixLayoutDestroy(lc));
    PROBE_CHECK(cublasLtMatmulDescDestroy(op));
    PROBE_CHECK(cudaEventDestroy(e0));
    PROBE_CHECK(cudaEventDestroy(e1));
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "gemm_probe: no CUDA device found\n");
        return 2;
    }
    PROBE_CHECK(cublasCreate(&handle));
    PROBE_CHECK(cublasLtCreate(&lt));
    PROBE_CHECK(cudaMalloc(&ws, ws_bytes));
    PROBE_CHECK(cublasSetWorkspace(handle, ws, ws_bytes));
    size_t big = (size_t)50304 * 4096 * 2;   // elements: the largest operand and output below
    PROBE_CHECK(cudaMalloc(&A, big * 2));
    PROBE_CHECK(cudaMalloc(&B, big * 2));
    PROBE_CHECK(cudaMalloc(&C, big * 4));
    fill_kernel<<<4096, 256>>>((__nv_bfloat16 *)A, big);
    fill_kernel<<<4096, 256>>>((__nv_bfloat16 *)B, big);
    PROBE_CHECK(cudaGetLastError());
    PROBE_CHECK(cudaDeviceSynchronize());
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
    PROBE_CHECK(cudaFree(A));
    PROBE_CHECK(cudaFree(B));
    PROBE_CHECK(cudaFree(C));
    PROBE_CHECK(cudaFree(ws));
    PROBE_CHECK(cublasLtDestroy(lt));
    PROBE_CHECK(cublasDestroy(handle));
    return 0;
}
