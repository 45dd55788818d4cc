// The kernels of cuda/ops_attention.cu besides flash attention's own (cuda/flash_attention.cuh):
// the softmax passes of the batched-GEMM path and flash attention's helper passes (device code
// only: tests/test_kernels_sim.cpp also runs them on the CPU through cuda/tools/warp_sim.h).
#ifndef SWQ_ATTENTION_CUH
#define SWQ_ATTENTION_CUH
#include "cuda/device_common.cuh"
#include "cuda/flash_attention.cuh"

#define ATT_WARPS 8

// One warp per row of att (rows = B*NH*T, row t1 = row % T): in-place causal softmax; ab (bf16
// mode) gets the bf16 copy the next GEMM reads, so no separate conversion pass.
__global__ void causal_softmax_kernel(float *att, __nv_bfloat16 *ab, int rows, int T) {
    int row = blockIdx.x * ATT_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t = row % T;
    float *a = att + (size_t)row * T;
    float m = -INFINITY;
    for (int j = lane; j <= t; j += 32) m = fmaxf(m, a[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) {
        float e = expf(a[j] - m);
        a[j] = e;
        s += e;
    }
    float inv = 1.0f / warp_sum(s);
    __nv_bfloat16 *b = ab ? ab + (size_t)row * T : NULL;
    for (int j = lane; j < T; j += 32) {
        float p = j <= t ? a[j] * inv : 0.0f;
        a[j] = p;
        if (b) b[j] = __float2bfloat16_rn(p);
    }
}

// In place on d (= datt on entry): d = att * (d - sum_j att*d), 0 above the diagonal.
__global__ void softmax_bwd_kernel(float *d, __nv_bfloat16 *db, const float *att, int rows, int T) {
    int row = blockIdx.x * ATT_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t = row % T;
    const float *a = att + (size_t)row * T;
    float *g = d + (size_t)row * T;
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) s += a[j] * g[j];
    s = warp_sum(s);
    __nv_bfloat16 *b = db ? db + (size_t)row * T : NULL;
    for (int j = lane; j < T; j += 32) {
        float v = j <= t ? a[j] * (g[j] - s) : 0.0f;
        g[j] = v;
        if (b) b[j] = __float2bfloat16_rn(v);
    }
}

// D[bh, t] = sum_d dout[b,t,h,d] * out[b,t,h,d] (out: its bf16 copy, as the forward wrote it): a
// warp per row; dout's bf16 copy db [B*T, C] written on the way (the backward's operand), and the
// row's 64 dq columns of dqkv (rows 3C apart), which the backward accumulates by atomics, zeroed
// (a strided memset of the q columns cost ~0.1 ms a layer at B=32 T=1024).
__global__ void flash_bwd_dot_kernel(float *D, float *dqkv, __nv_bfloat16 *db, const float *dout,
                                     const __nv_bfloat16 *out, int B, int T, int C, int NH) {
    int r = blockIdx.x * 8 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= B * NH * T) return;
    int t = r % T, bh = r / T, b = bh / NH, h = bh % NH;
    size_t o = ((size_t)b * T + t) * C + h * FA + 2 * lane, q = ((size_t)b * T + t) * 3 * C + h * FA + 2 * lane;
    const float2 d = *(const float2 *)(dout + o), y = __bfloat1622float2(*(const __nv_bfloat162 *)(out + o));
    *(uint32_t *)(db + o) = pack_bf16x2(d.x, d.y);
    *(float2 *)(dqkv + q) = make_float2(0.0f, 0.0f);
    float s = warp_sum(d.x * y.x + d.y * y.y);
    if (lane == 0) D[r] = s;
}

// dst[p*ldd + j] = bf16(src[p*lds + j]), j < cols (two at a time: cols, lds, ldd even)
__global__ void q_cols_to_bf16_kernel(__nv_bfloat16 *dst, int ldd, const float *src, int lds, int rows, int cols) {
    const size_t n = (size_t)rows * (cols / 2);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t p = i / (cols / 2), j = 2 * (i % (cols / 2));
        float2 v = *(const float2 *)(src + p * lds + j);
        *(__nv_bfloat162 *)(dst + p * ldd + j) = __floats2bfloat162_rn(v.x, v.y);
    }
}
#endif
