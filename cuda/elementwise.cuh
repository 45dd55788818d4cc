// The kernels of cuda/ops_elementwise.cu (device code only: tests/test_kernels_sim.cpp also runs
// them on the CPU through cuda/tools/warp_sim.h).
#ifndef SWQ_ELEMENTWISE_CUH
#define SWQ_ELEMENTWISE_CUH
#include "cuda/device_common.cuh"

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

// ---- GELU (gelu_f, gelu_grad in device_common.cuh) ----
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
#endif
