// Device helpers shared by the kernels (vector loads and stores, GELU, warp and block
// reductions). No runtime API here, so cuda/tools/warp_sim.h can compile it for the CPU.
#ifndef SWQ_DEVICE_COMMON_CUH
#define SWQ_DEVICE_COMMON_CUH
#include <math.h>
#include <stdint.h>
#ifdef SWQ_WARP_SIM
#include "cuda/tools/warp_sim.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
// a kernel's dynamic shared memory (the launch's third argument), 16-byte aligned
#define SWQ_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

#define LN_EPS 1e-5f   // layernorm's (cuda/layernorm.cuh, and the fused form in cuda/matmul.cuh)

// Columns c..c+3 of a row at p (p points at column c): one float4 when V4 (16-byte aligned),
// else element by element, zeros from column lim on.
template <bool V4>
__device__ __forceinline__ float4 load4_cols(const float *p, int c, int lim) {
    if (V4) return *(const float4 *)p;
    return make_float4(p[0], c + 1 < lim ? p[1] : 0.0f, c + 2 < lim ? p[2] : 0.0f, c + 3 < lim ? p[3] : 0.0f);
}

// p[0..] += v (a float2 or float4) atomically (p aligned to v's size): one vector atomic on sm_90
template <typename V>
__device__ __forceinline__ void atomic_add_vec(float *p, V v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd((V *)p, v);
#else
    const float *x = (const float *)&v;
    for (int i = 0; i < (int)(sizeof(V) / sizeof(float)); i++) atomicAdd(p + i, x[i]);
#endif
}

// Two floats as a bf16 pair's bits (lo in the low half: the first in memory).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

// Values [S, S + VEC) of the 2 VEC bf16 values in a ++ b (VEC / 2 words each, lo half first), as
// VEC / 2 words; s (1..VEC-1) picks S at run time, each S a form of its own with constant indices.
template <int VEC, int S = 1>
__device__ __forceinline__ void bf16_window(uint32_t *o, const uint32_t *a, const uint32_t *b, int s) {
    if constexpr (S < VEC) {
        if (s != S) {
            bf16_window<VEC, S + 1>(o, a, b, s);
            return;
        }
        auto word = [&](int w) { return w < VEC / 2 ? a[w] : b[w - VEC / 2]; };
#pragma unroll
        for (int k = 0; k < VEC / 2; k++) {
            if (S % 2 == 0) o[k] = word(S / 2 + k);
            else o[k] = (word(S / 2 + k) >> 16) | (word(S / 2 + k + 1) << 16);
        }
    }
}

// W (2 or 4) 32-bit words at p (4 W-byte aligned), one load or store.
template <int W>
__device__ __forceinline__ void load_words(uint32_t *w, const void *p) {
    if constexpr (W == 4) {
        const uint4 v = *(const uint4 *)p;
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    } else {
        const uint2 v = *(const uint2 *)p;
        w[0] = v.x, w[1] = v.y;
    }
}
template <int W>
__device__ __forceinline__ void store_words(void *p, const uint32_t *w) {
    if constexpr (W == 4) *(uint4 *)p = make_uint4(w[0], w[1], w[2], w[3]);
    else *(uint2 *)p = make_uint2(w[0], w[1]);
}

// Four floats to bf16 at p (8-byte aligned), one store.
__device__ __forceinline__ void store_bf16x4(__nv_bfloat16 *p, float4 y) {
    uint2 u;
    u.x = pack_bf16x2(y.x, y.y);
    u.y = pack_bf16x2(y.z, y.w);
    *(uint2 *)p = u;
}

// GELU (tanh approximation, as GPT-2) and its derivative.
#define GELU_K 0.7978845608028654f   // sqrt(2/pi)
__device__ __forceinline__ float gelu_f(float x) {
    float cube = 0.044715f * x * x * x;
    return 0.5f * x * (1.0f + tanhf(GELU_K * (x + cube)));
}
__device__ __forceinline__ float gelu_grad(float x) {   // d gelu / dx
    float cube = 0.044715f * x * x * x;
    float th = tanhf(GELU_K * (x + cube));
    float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + x * 0.5f * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}
// Full-warp reductions.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Block-wide sum/max (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// `sh` is 32 elements of shared memory; the function syncs before reusing it.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : (T)0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(v);
}
#endif
