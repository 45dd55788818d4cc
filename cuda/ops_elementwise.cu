// Element-wise ops, GELU, AdamW, embeddings and row/column gather-scatter.
#include <math.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"

#define EW_BLOCK 256
#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
                               i += (size_t)gridDim.x * blockDim.x)

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
__global__ void add4_kernel(float4 *out, const float4 *a, const float4 *b, size_t n4) {
    GRID_STRIDE(i, n4) {
        float4 x = a[i], y = b[i];
        out[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    }
}
// Whether n floats at every given pointer go as float4 (n % 4 == 0, 16-byte aligned; bf16 copies
// 8-byte aligned, NULL allowed): the vector kernels move the same bytes in a quarter of the loads
// and stores.
static int ew_vec(size_t n, const void *a, const void *b, const void *c, const void *bf) {
    return n % 4 == 0 && (uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0 && (uintptr_t)c % 16 == 0 &&
           (uintptr_t)bf % 8 == 0;
}
__global__ void accumulate_kernel(float *dst, const float *src, size_t n) {
    GRID_STRIDE(i, n) dst[i] += src[i];
}
__global__ void scale_kernel(float *x, float s, size_t n) {
    GRID_STRIDE(i, n) x[i] *= s;
}
__global__ void sumsq_kernel(double *acc, const float *x, size_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    GRID_STRIDE(i, n) {
        double v = x[i];
        s += v * v;
    }
    s = block_sum<double>(s, sh);
    if (threadIdx.x == 0) atomicAdd(acc, s);
}

void cu_add(swq_backend *be, void *out, const void *a, const void *b, size_t n) {
    if (!n) return;
    if (ew_vec(n, out, a, b, NULL))
        add4_kernel<<<grid_for(n / 4, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float4 *)out, (const float4 *)a,
                                                                           (const float4 *)b, n / 4);
    else
        add_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)out, (const float *)a,
                                                                      (const float *)b, n);
    CUDA_LAUNCH_CHECK();
}
void cu_accumulate(swq_backend *be, void *dst, const void *src, size_t n) {
    if (!n) return;
    accumulate_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)dst, (const float *)src, n);
    CUDA_LAUNCH_CHECK();
}
void cu_scale(swq_backend *be, void *x, double s, size_t n) {
    if (!n) return;
    scale_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)x, (float)s, n);
    CUDA_LAUNCH_CHECK();
}
void cu_sumsq(swq_backend *be, double *acc, const void *x, size_t n) {
    if (!n) return;
    unsigned g = grid_for(n, EW_BLOCK), cap = (unsigned)CTX(be)->sm_count * 8;
    if (g > cap) g = cap;
    sumsq_kernel<<<g, EW_BLOCK, 0, STREAM(be)>>>(acc, (const float *)x, n);
    CUDA_LAUNCH_CHECK();
}

// ---- GELU (gelu_f, gelu_grad in cuda_common.h) ----
// ob (bf16 mode): the bf16 copy of the output, for the GEMM that reads it next.
__global__ void gelu_fwd_kernel(float *out, __nv_bfloat16 *ob, const float *inp, size_t n) {
    GRID_STRIDE(i, n) {
        float y = gelu_f(inp[i]);
        out[i] = y;
        if (ob) ob[i] = __float2bfloat16_rn(y);
    }
}
__global__ void gelu_fwd4_kernel(float4 *out, __nv_bfloat16 *ob, const float4 *inp, size_t n4) {
    GRID_STRIDE(i, n4) {
        float4 x = inp[i], y = make_float4(gelu_f(x.x), gelu_f(x.y), gelu_f(x.z), gelu_f(x.w));
        out[i] = y;
        if (ob) store_bf16x4(ob + 4 * i, y);
    }
}
__global__ void gelu_bwd_kernel(float *dinp, __nv_bfloat16 *ob, const float *inp, const float *dout, size_t n,
                                int overwrite) {
    GRID_STRIDE(i, n) {
        float g = gelu_grad(inp[i]);
        float y = overwrite ? g * dout[i] : dinp[i] + g * dout[i];
        dinp[i] = y;
        if (ob) ob[i] = __float2bfloat16_rn(y);
    }
}
__global__ void gelu_bwd4_kernel(float4 *dinp, __nv_bfloat16 *ob, const float4 *inp, const float4 *dout, size_t n4,
                                 int overwrite) {
    GRID_STRIDE(i, n4) {
        float4 x = inp[i], d = dout[i], y = overwrite ? make_float4(0.0f, 0.0f, 0.0f, 0.0f) : dinp[i];
        y.x += gelu_grad(x.x) * d.x;
        y.y += gelu_grad(x.y) * d.y;
        y.z += gelu_grad(x.z) * d.z;
        y.w += gelu_grad(x.w) * d.w;
        dinp[i] = y;
        if (ob) store_bf16x4(ob + 4 * i, y);
    }
}
void cu_gelu_fwd(swq_backend *be, void *out, const void *inp, size_t n) {
    if (!n) return;
    __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)out, n);
    if (ew_vec(n, out, inp, NULL, ob))
        gelu_fwd4_kernel<<<grid_for(n / 4, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float4 *)out, ob,
                                                                                (const float4 *)inp, n / 4);
    else
        gelu_fwd_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)out, ob, (const float *)inp, n);
    CUDA_LAUNCH_CHECK();
}
void cu_gelu_bwd(swq_backend *be, void *dinp, const void *inp, const void *dout, size_t n, int overwrite) {
    if (!n) return;
    __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)dinp, n);
    if (ew_vec(n, dinp, inp, dout, ob))
        gelu_bwd4_kernel<<<grid_for(n / 4, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>(
            (float4 *)dinp, ob, (const float4 *)inp, (const float4 *)dout, n / 4, overwrite);
    else
        gelu_bwd_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)dinp, ob, (const float *)inp,
                                                                           (const float *)dout, n, overwrite);
    CUDA_LAUNCH_CHECK();
}

// ---- AdamW ----
__global__ void adamw_kernel(float *p, const float *grad, float *m, float *v, size_t n, float lr, float b1,
                             float b2, float eps, float wd, float bc1, float bc2, float gs) {
    GRID_STRIDE(i, n) {
        float g = grad[i] * gs;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mh = mi / bc1, vh = vi / bc2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}
void cu_adamw(swq_backend *be, void *param, const void *grad, void *m, void *v, size_t n, double lr,
              double b1, double b2, double eps, double wd, int t, double grad_scale) {
    if (!n) return;
    float bc1 = (float)(1.0 - pow(b1, t)), bc2 = (float)(1.0 - pow(b2, t));
    adamw_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>(
        (float *)param, (const float *)grad, (float *)m, (float *)v, n, (float)lr, (float)b1, (float)b2,
        (float)eps, (float)wd, bc1, bc2, (float)grad_scale);
    CUDA_LAUNCH_CHECK();
}

// ---- embeddings ----
__global__ void encoder_fwd_kernel(float *out, const int *tok, const float *wte, const float *wpe, int B,
                                   int T, int C) {
    size_t n = (size_t)B * T * C;
    GRID_STRIDE(i, n) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        out[i] = wte[(size_t)tok[bt] * C + c] + wpe[(size_t)t * C + c];
    }
}
// dwte rows can repeat (the same token twice): atomics.
__global__ void encoder_bwd_wte_kernel(float *dwte, const float *dout, const int *tok, int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    GRID_STRIDE(i, n) {
        size_t bt = i / C;
        int c = (int)(i % C);
        atomicAdd(&dwte[(size_t)tok[bt] * C + c], dout[i]);
    }
}
// dwpe[t,c]: one thread sums over the batch, no atomics.
__global__ void encoder_bwd_wpe_kernel(float *dwpe, const float *dout, int B, int T, int C) {
    size_t n = (size_t)T * C;
    GRID_STRIDE(i, n) {
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += dout[(size_t)b * T * C + i];
        dwpe[i] += s;
    }
}
void cu_encoder_fwd(swq_backend *be, void *out, const int *tok, const void *wte, const void *wpe, int B,
                    int T, int C) {
    size_t n = (size_t)B * T * C;
    if (!n) return;
    encoder_fwd_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>(
        (float *)out, tok, (const float *)wte, (const float *)wpe, B, T, C);
    CUDA_LAUNCH_CHECK();
}
void cu_encoder_bwd(swq_backend *be, void *dwte, void *dwpe, const void *dout, const int *tok, int B, int T,
                    int C) {
    size_t n = (size_t)B * T * C;
    if (!n) return;
    if (dwte) {
        encoder_bwd_wte_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>(
            (float *)dwte, (const float *)dout, tok, B, T, C);
        CUDA_LAUNCH_CHECK();
    }
    if (dwpe) {
        size_t m = (size_t)T * C;
        encoder_bwd_wpe_kernel<<<grid_for(m, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>(
            (float *)dwpe, (const float *)dout, B, T, C);
        CUDA_LAUNCH_CHECK();
    }
}

// ---- rows and columns ----
__global__ void gather_rows_kernel(float *out, const float *in, const int *idx, int P, int C) {
    size_t n = (size_t)P * C;
    GRID_STRIDE(i, n) {
        size_t p = i / C;
        out[i] = in[(size_t)idx[p] * C + i % C];
    }
}
__global__ void scatter_add_rows_kernel(float *dst, const float *src, const int *idx, int P, int C) {
    size_t n = (size_t)P * C;
    GRID_STRIDE(i, n) {
        size_t p = i / C;
        atomicAdd(&dst[(size_t)idx[p] * C + i % C], src[i]);
    }
}
__global__ void get_column_kernel(float *out, const float *in, int N, int K, int c) {
    GRID_STRIDE(i, (size_t)N) out[i] = in[i * K + c];
}
__global__ void add_to_column_kernel(float *dst, const float *src, int N, int K, int c) {
    GRID_STRIDE(i, (size_t)N) dst[i * K + c] += src[i];
}
void cu_gather_rows(swq_backend *be, void *out, const void *in, const int *idx, int P, int C) {
    size_t n = (size_t)P * C;
    if (!n) return;
    gather_rows_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)out, (const float *)in,
                                                                          idx, P, C);
    CUDA_LAUNCH_CHECK();
}
void cu_scatter_add_rows(swq_backend *be, void *dst, const void *src, const int *idx, int P, int C) {
    size_t n = (size_t)P * C;
    if (!n) return;
    scatter_add_rows_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>(
        (float *)dst, (const float *)src, idx, P, C);
    CUDA_LAUNCH_CHECK();
}
void cu_get_column(swq_backend *be, void *out, const void *in, int N, int K, int c) {
    if (N <= 0) return;
    get_column_kernel<<<grid_for(N, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)out, (const float *)in, N,
                                                                         K, c);
    CUDA_LAUNCH_CHECK();
}
void cu_add_to_column(swq_backend *be, void *dst, const void *src, int N, int K, int c) {
    if (N <= 0) return;
    add_to_column_kernel<<<grid_for(N, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)dst,
                                                                            (const float *)src, N, K, c);
    CUDA_LAUNCH_CHECK();
}
