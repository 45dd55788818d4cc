// CUDA backend: device selection, memory ops, the cuBLAS GEMM helper and the op table.
#include <string.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/backend_cuda.h"

static const char CUDA_NAME[] = "cuda";

// ---- memory ----
static void rec_push(struct cu_alloc_rec **v, int *n, int *cap, struct cu_alloc_rec r) {
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 256;
        void *p = realloc(*v, (size_t)nc * sizeof(**v));
        if (!p) {
            fprintf(stderr, "cuda backend: out of host memory (allocation table)\n");
            exit(1);
        }
        *v = (struct cu_alloc_rec *)p;
        *cap = nc;
    }
    (*v)[(*n)++] = r;
}
static void *cu_alloc(swq_backend *be, size_t bytes, const char *what) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: cudaMalloc of %zu bytes failed: %s\n", what ? what : "buffer", bytes,
                cudaGetErrorString(e));
        exit(1);
    }
    cuda_ctx *c = CTX(be);
    rec_push(&c->allocs, &c->n_allocs, &c->cap_allocs, {p, bytes, NULL});
    if (what && !strncmp(what, "qcache.", 7)) rec_push(&c->frozen, &c->n_frozen, &c->cap_frozen, {p, bytes, NULL});
    c->mem_cur += bytes;
    if (c->mem_cur > c->mem_peak) c->mem_peak = c->mem_cur;
    return p;
}
static void cu_free(swq_backend *be, void *p) {
    if (!p) return;
    cuda_ctx *c = CTX(be);
    for (int i = c->n_allocs - 1; i >= 0; i--)
        if (c->allocs[i].p == p) {
            c->mem_cur -= c->allocs[i].bytes;
            c->allocs[i] = c->allocs[--c->n_allocs];
            break;
        }
    for (int i = c->n_frozen - 1; i >= 0; i--)
        if (c->frozen[i].p == p) {
            if (c->frozen[i].bf16) {
                CUDA_CHECK(cudaFree(c->frozen[i].bf16));
                c->mem_cur -= c->frozen[i].bytes / 2;
            }
            c->frozen[i] = c->frozen[--c->n_frozen];
            break;
        }
    CUDA_CHECK(cudaFree(p));
}
static void cu_upload(swq_backend *be, void *dst, const float *src, size_t n) {
    if (!n) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, STREAM(be)));
    CUDA_CHECK(cudaStreamSynchronize(STREAM(be)));
}
static void cu_download(swq_backend *be, float *dst, const void *src, size_t n) {
    if (!n) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, STREAM(be)));
    CUDA_CHECK(cudaStreamSynchronize(STREAM(be)));
}
static void cu_upload_i32(swq_backend *be, int *dst, const int *src, size_t n) {
    if (!n) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(int), cudaMemcpyHostToDevice, STREAM(be)));
    CUDA_CHECK(cudaStreamSynchronize(STREAM(be)));
}
static void cu_download_f64(swq_backend *be, double *dst, const double *src, size_t n) {
    if (!n) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(double), cudaMemcpyDeviceToHost, STREAM(be)));
    CUDA_CHECK(cudaStreamSynchronize(STREAM(be)));
}
static void cu_zero(swq_backend *be, void *dst, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, STREAM(be)));
}
static void cu_copy(swq_backend *be, void *dst, const void *src, size_t n) {
    if (n && dst != src)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, STREAM(be)));
}
static void cu_synchronize(swq_backend *be) { CUDA_CHECK(cudaStreamSynchronize(STREAM(be))); }

// ---- GEMM ----
__global__ void float_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

// bf16 copy of the n floats at src in workspace slot (0 = A, 1 = B); a frozen buffer's
// copy is made once and kept.
static const __nv_bfloat16 *bf16_copy(swq_backend *be, int slot, const float *src, size_t n) {
    cuda_ctx *c = CTX(be);
    for (int i = 0; i < c->n_frozen; i++) {
        struct cu_alloc_rec *r = &c->frozen[i];
        if (r->p != (const void *)src || n > r->bytes / sizeof(float)) continue;
        if (!r->bf16) {
            size_t m = r->bytes / sizeof(float);
            cudaError_t e = cudaMalloc(&r->bf16, m * sizeof(__nv_bfloat16));
            if (e != cudaSuccess) {
                fprintf(stderr, "bf16 copy of a cached weight: cudaMalloc of %zu bytes failed: %s\n",
                        m * sizeof(__nv_bfloat16), cudaGetErrorString(e));
                exit(1);
            }
            c->mem_cur += m * sizeof(__nv_bfloat16);
            if (c->mem_cur > c->mem_peak) c->mem_peak = c->mem_cur;
            float_to_bf16_kernel<<<grid_for(m, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)r->bf16, src, m);
            CUDA_LAUNCH_CHECK();
        }
        return (const __nv_bfloat16 *)r->bf16;
    }
    if (n > c->bf16_cap[slot]) {
        if (c->bf16_ws[slot]) {
            CUDA_CHECK(cudaFree(c->bf16_ws[slot]));
            c->mem_cur -= c->bf16_cap[slot] * sizeof(__nv_bfloat16);
        }
        cudaError_t e = cudaMalloc(&c->bf16_ws[slot], n * sizeof(__nv_bfloat16));
        if (e != cudaSuccess) {
            fprintf(stderr, "bf16 GEMM operand workspace: cudaMalloc of %zu bytes failed: %s\n",
                    n * sizeof(__nv_bfloat16), cudaGetErrorString(e));
            exit(1);
        }
        c->bf16_cap[slot] = n;
        c->mem_cur += n * sizeof(__nv_bfloat16);
        if (c->mem_cur > c->mem_peak) c->mem_peak = c->mem_cur;
    }
    __nv_bfloat16 *dst = (__nv_bfloat16 *)c->bf16_ws[slot];
    float_to_bf16_kernel<<<grid_for(n, 256), 256, 0, c->stream>>>(dst, src, n);
    CUDA_LAUNCH_CHECK();
    return dst;
}

// Elements spanned by a stored (column-major) operand of rows x cols with leading dimension
// ld, batch matrices `stride` apart.
static size_t span(int rows, int cols, int ld, long long stride, int batch) {
    return (size_t)(batch - 1) * (size_t)stride + (size_t)(cols - 1) * ld + rows;
}

void cu_gemm(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
             float alpha, const float *A, int lda, long long sA, const float *B, int ldb,
             long long sB, float beta, float *C, int ldc, long long sC, int batch) {
    cuda_ctx *c = CTX(be);
    if (m <= 0 || n <= 0 || batch <= 0) return;
    if (k <= 0) {
        fprintf(stderr, "%s:%d: cu_gemm with k = %d\n", __FILE__, __LINE__, k);
        exit(1);
    }
    const void *a = A, *b = B;
    cudaDataType_t ab_type = CUDA_R_32F;
    if (c->prof) CUDA_CHECK(cudaEventRecord(c->ev[0], c->stream));
    if (c->precision == CU_BF16) {   // bf16 operands, fp32 accumulation and output
        a = bf16_copy(be, 0, A, span(ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, sA, batch));
        b = bf16_copy(be, 1, B, span(tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, sB, batch));
        ab_type = CUDA_R_16BF;
    }
    if (c->prof) CUDA_CHECK(cudaEventRecord(c->ev[1], c->stream));
    if (batch == 1)
        CUBLAS_CHECK(cublasGemmEx(c->cublas, ta, tb, m, n, k, &alpha, a, ab_type, lda, b, ab_type, ldb, &beta, C,
                                  CUDA_R_32F, ldc, c->compute, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(c->cublas, ta, tb, m, n, k, &alpha, a, ab_type, lda, sA, b, ab_type,
                                                ldb, sB, &beta, C, CUDA_R_32F, ldc, sC, batch, c->compute,
                                                CUBLAS_GEMM_DEFAULT));
    if (c->prof) {
        CUDA_CHECK(cudaEventRecord(c->ev[2], c->stream));
        CUDA_CHECK(cudaEventSynchronize(c->ev[2]));
        float t0 = 0, t1 = 0;
        CUDA_CHECK(cudaEventElapsedTime(&t0, c->ev[0], c->ev[1]));
        CUDA_CHECK(cudaEventElapsedTime(&t1, c->ev[1], c->ev[2]));
        int cls = batch > 1 ? 2 : (m <= 32 || n <= 32 || k <= 32) ? 1 : 3;
        c->prof_ms[0] += t0;
        c->prof_calls[0] += c->precision == CU_BF16;
        c->prof_ms[cls] += t1;
        c->prof_calls[cls]++;
        c->prof_flop[cls - 1] += 2.0 * m * n * (double)k * batch;
    }
}

// ---- construction ----
swq_backend *swq_backend_cuda(int device_ordinal, const char *precision, char *err, size_t errlen) {
    int prec;
    if (!precision || !strcmp(precision, "fp32")) prec = CU_FP32;
    else if (!strcmp(precision, "tf32")) prec = CU_TF32;
    else if (!strcmp(precision, "bf16")) prec = CU_BF16;
    else {
        snprintf(err, errlen, "run.precision = \"%s\": expected \"fp32\", \"tf32\" or \"bf16\"", precision);
        return NULL;
    }
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        (void)cudaGetLastError();   // clear the sticky "no device" error
        if (e != cudaSuccess)
            snprintf(err, errlen, "run.device = cuda: no CUDA device found (cudaGetDeviceCount: %s)",
                     cudaGetErrorString(e));
        else
            snprintf(err, errlen, "run.device = cuda: no CUDA device found");
        return NULL;
    }
    if (device_ordinal < 0 || device_ordinal >= ndev) {
        snprintf(err, errlen, "run.device = cuda: device %d does not exist (%d found)", device_ordinal, ndev);
        return NULL;
    }
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device_ordinal));
    if (prop.major < 8) {
        snprintf(err, errlen, "run.device = cuda: device %d (%s) has compute capability %d.%d, need >= 8.0",
                 device_ordinal, prop.name, prop.major, prop.minor);
        return NULL;
    }
    CUDA_CHECK(cudaSetDevice(device_ordinal));

    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof(cuda_ctx));
    swq_backend *be = (swq_backend *)calloc(1, sizeof(swq_backend));
    if (!c || !be) {
        free(c);
        free(be);
        snprintf(err, errlen, "cuda backend: out of host memory");
        return NULL;
    }
    c->device = device_ordinal;
    c->precision = prec;
    c->sm_count = prop.multiProcessorCount;
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&c->cublas));
    CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
    // The compute type alone picks fp32 / tf32 / bf16 tensor-core math.
    CUBLAS_CHECK(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
    // bf16 mode converts the operands itself (FAST_16BF on fp32 operands was seen to give
    // tf32-level errors on an H100, i.e. not bf16 math).
    c->compute = prec == CU_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const char *pe = getenv("SWQ_CUDA_PROFILE");
    c->prof = pe && *pe && strcmp(pe, "0");
    if (c->prof)
        for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventCreate(&c->ev[i]));

    be->name = CUDA_NAME;
    be->real_size = sizeof(float);
    be->ctx = c;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->upload = cu_upload;
    be->download = cu_download;
    be->upload_i32 = cu_upload_i32;
    be->download_f64 = cu_download_f64;
    be->zero = cu_zero;
    be->copy = cu_copy;
    be->synchronize = cu_synchronize;
    be->destroy = swq_backend_cuda_destroy;
    be->add = cu_add;
    be->accumulate = cu_accumulate;
    be->scale = cu_scale;
    be->sumsq = cu_sumsq;
    be->encoder_fwd = cu_encoder_fwd;
    be->encoder_bwd = cu_encoder_bwd;
    be->layernorm_fwd = cu_layernorm_fwd;
    be->layernorm_bwd = cu_layernorm_bwd;
    be->quantize_rows = cu_quantize_rows;
    be->matmul_fwd = cu_matmul_fwd;
    be->matmul_bwd = cu_matmul_bwd;
    be->attention_fwd = cu_attention_fwd;
    be->attention_bwd = cu_attention_bwd;
    be->gelu_fwd = cu_gelu_fwd;
    be->gelu_bwd = cu_gelu_bwd;
    be->gather_rows = cu_gather_rows;
    be->scatter_add_rows = cu_scatter_add_rows;
    be->get_column = cu_get_column;
    be->add_to_column = cu_add_to_column;
    be->xent_kl = cu_xent_kl;
    be->argmax_rows = cu_argmax_rows;
    be->adamw = cu_adamw;
    return be;
}

int swq_backend_is_cuda(const swq_backend *be) { return be && be->name == CUDA_NAME; }

void *swq_backend_cuda_stream(swq_backend *be) { return (void *)CTX(be)->stream; }

void swq_backend_cuda_mem(swq_backend *be, size_t *cur, size_t *peak) {
    if (cur) *cur = CTX(be)->mem_cur;
    if (peak) *peak = CTX(be)->mem_peak;
}

void swq_backend_cuda_device_name(swq_backend *be, char *buf, size_t n) {
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, CTX(be)->device));
    snprintf(buf, n, "%s", prop.name);
}

double swq_backend_cuda_gemm_tflops(swq_backend *be, int n, int reps) {
    cuda_ctx *c = CTX(be);
    size_t bytes = (size_t)n * n * sizeof(__nv_bfloat16);
    void *a = NULL, *b = NULL, *d = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
        cudaMalloc(&d, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        if (a) CUDA_CHECK(cudaFree(a));
        if (b) CUDA_CHECK(cudaFree(b));
        return -1;
    }
    // random-ish operands (zeros run faster than real data)
    float *tmp = NULL;
    CUDA_CHECK(cudaMalloc(&tmp, (size_t)n * n * sizeof(float)));
    size_t nn = (size_t)n * n;
    float *h = (float *)malloc(4096 * sizeof(float));
    if (!h) exit(1);
    for (int i = 0; i < 4096; i++) h[i] = (float)((i * 2654435761u % 2001) / 1000.0 - 1.0);
    for (size_t o = 0; o < nn; o += 4096)
        CUDA_CHECK(cudaMemcpyAsync(tmp + o, h, (nn - o < 4096 ? nn - o : 4096) * sizeof(float),
                                   cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    free(h);
    float_to_bf16_kernel<<<grid_for(nn, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)a, tmp, nn);
    CUDA_LAUNCH_CHECK();
    float_to_bf16_kernel<<<grid_for(nn, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)b, tmp, nn);
    CUDA_LAUNCH_CHECK();
    float one = 1.0f, zero = 0.0f;
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int r = -2; r < reps; r++) {
        if (r == 0) CUDA_CHECK(cudaEventRecord(e0, c->stream));
        CUBLAS_CHECK(cublasGemmEx(c->cublas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b,
                                  CUDA_R_16BF, n, &zero, d, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    CUDA_CHECK(cudaEventRecord(e1, c->stream));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaFree(tmp));
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    CUDA_CHECK(cudaFree(d));
    return 2.0 * n * (double)n * n * reps / (ms * 1e-3) / 1e12;
}

double swq_backend_cuda_copy_gbs(swq_backend *be, size_t bytes, int reps) {
    cuda_ctx *c = CTX(be);
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        if (a) CUDA_CHECK(cudaFree(a));
        return -1;
    }
    CUDA_CHECK(cudaMemsetAsync(a, 1, bytes, c->stream));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int r = -1; r < reps; r++) {
        if (r == 0) CUDA_CHECK(cudaEventRecord(e0, c->stream));
        CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream));
    }
    CUDA_CHECK(cudaEventRecord(e1, c->stream));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    return 2.0 * bytes * reps / (ms * 1e-3) / 1e9;
}

void swq_backend_cuda_destroy(swq_backend *be) {
    if (!be) return;
    cuda_ctx *c = CTX(be);
    if (c) {
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        if (c->prof) {
            const char *nm[4] = {"bf16 operand conversion", "GEMM with a dim <= 32 (LoRA, QA head)",
                                 "batched GEMM (attention)", "other GEMM"};
            for (int i = 0; i < 4; i++) {
                fprintf(stderr, "swq cuda profile: %-40s %9.2f ms in %7ld calls", nm[i], c->prof_ms[i], c->prof_calls[i]);
                if (i && c->prof_ms[i] > 0)
                    fprintf(stderr, ", %.1f TFLOP/s", c->prof_flop[i - 1] / (c->prof_ms[i] * 1e-3) / 1e12);
                fprintf(stderr, "\n");
            }
            for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventDestroy(c->ev[i]));
        }
        for (int i = 0; i < c->n_frozen; i++)
            if (c->frozen[i].bf16) CUDA_CHECK(cudaFree(c->frozen[i].bf16));
        free(c->allocs);
        free(c->frozen);
        if (c->argmax_dev) CUDA_CHECK(cudaFree(c->argmax_dev));
        for (int i = 0; i < 2; i++)
            if (c->bf16_ws[i]) CUDA_CHECK(cudaFree(c->bf16_ws[i]));
        CUBLAS_CHECK(cublasDestroy(c->cublas));
        CUDA_CHECK(cudaStreamDestroy(c->stream));
        free(c);
    }
    free(be);
}
