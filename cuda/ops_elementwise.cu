// Element-wise ops, GELU, AdamW, embeddings and row/column gather-scatter.
#include <math.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/elementwise.cuh"

// Whether n floats at every given pointer go as float4 (n % 4 == 0, 16-byte aligned; bf16 copies
// 8-byte aligned, NULL allowed): the vector kernels move the same bytes in a quarter of the loads
// and stores.
static int ew_vec(size_t n, const void *a, const void *b, const void *c, const void *bf) {
    return n % 4 == 0 && (uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0 && (uintptr_t)c % 16 == 0 &&
           (uintptr_t)bf % 8 == 0;
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

void cu_adamw(swq_backend *be, void *param, const void *grad, void *m, void *v, size_t n, double lr,
              double b1, double b2, double eps, double wd, int t, double grad_scale) {
    if (!n) return;
    float bc1 = (float)(1.0 - pow(b1, t)), bc2 = (float)(1.0 - pow(b2, t));
    adamw_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>(
        (float *)param, (const float *)grad, (float *)m, (float *)v, n, (float)lr, (float)b1, (float)b2,
        (float)eps, (float)wd, bc1, bc2, (float)grad_scale);
    CUDA_LAUNCH_CHECK();
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
