// gemm_probe: times bf16 GEMMs (fp32 or bf16 output, fp32 accumulation) of the shapes the CDT
// step runs, with cublasGemmEx and with every candidate cuBLASLt's heuristic offers (the first
// and the best), so a slow shape can be told apart from a slow algorithm choice. Random-ish
// operands, 3 warm-up and 20 timed calls each, CUDA events.
//   usage: gemm_probe        (prints one line per shape plus two cuBLASLt lines)
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
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                     sizeof(ws_bytes)));
    cublasLtMatmulHeuristicResult_t res[16];
    int nres = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 16, res, &nres));
    double best = 1e30, first = 0;
    int best_i = -1;
    for (int a = 0; a < nres; a++) {
        double t = cu_time_ms(0, 2, REPS, [&] {
            CUBLAS_CHECK(cublasLtMatmul(lt, op, &one, A, la, B, lb, &zero, C, lc, C, lc, &res[a].algo, ws, ws_bytes, 0));
        });
        if (a == 0) first = t;
        if (t < best) {
            best = t;
            best_i = a;
        }
    }
    if (nres)
        printf("    cuBLASLt: first candidate %.3f ms (%.0f TFLOP/s), best of %d: #%d %.3f ms (%.0f TFLOP/s)\n", first,
               flop / first / 1e9, nres, best_i, best, flop / best / 1e9);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lc));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
}

int main(void) {
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
    CUDA_CHECK(cudaFree(A));
    CUDA_CHECK(cudaFree(B));
    CUDA_CHECK(cudaFree(C));
    CUDA_CHECK(cudaFree(ws));
    CUBLAS_CHECK(cublasLtDestroy(lt));
    CUBLAS_CHECK(cublasDestroy(handle));
    return 0;
}
