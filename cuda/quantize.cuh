// The fake-quantization kernel of cuda/ops_quantize.cu (device code only: tests/test_kernels_sim.cpp
// also runs it on the CPU through cuda/tools/warp_sim.h).
#ifndef SWQ_QUANTIZE_CUH
#define SWQ_QUANTIZE_CUH
#include "cuda/device_common.cuh"

#define Q_BLOCK 256

__global__ void quantize_rows_kernel(float *out, const float *in, int cols, float qmax) {
    __shared__ float sh[32];
    const float *x = in + (size_t)blockIdx.x * cols;
    float *o = out + (size_t)blockIdx.x * cols;   // may equal x: o[c] depends on x[c] and the max only
    float m = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, fabsf(x[c]));
    m = block_max(m, sh);
    if (m == 0.0f) {
        for (int c = threadIdx.x; c < cols; c += blockDim.x) o[c] = 0.0f;
        return;
    }
    float a = m / qmax;   // same operations as the CPU reference: a * round(x / a)
    for (int c = threadIdx.x; c < cols; c += blockDim.x) o[c] = a * roundf(x[c] / a);
}

// The same quantization kept as codes (T: int8_t or int16_t) and row scales: code = round(x / a).
template <typename T>
__global__ void quantize_codes_kernel(T *codes, float *scales, const float *in, int cols, float qmax) {
    __shared__ float sh[32];
    const float *x = in + (size_t)blockIdx.x * cols;
    T *o = codes + (size_t)blockIdx.x * cols;
    float m = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, fabsf(x[c]));
    m = block_max(m, sh);
    const float a = m == 0.0f ? 0.0f : m / qmax;
    if (threadIdx.x == 0) scales[blockIdx.x] = a;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) o[c] = a == 0.0f ? (T)0 : (T)roundf(x[c] / a);
}

// out = scale * code, one row a block (y), DQ_COLS threads a block (x) and DQ_VEC columns a thread
// (written as one float4 where cols is a multiple of DQ_VEC, so rows stay 16-byte aligned): the
// float product of a and an integer of at most 16 bits is exact before its one rounding, as the
// CPU's in double.
#define DQ_COLS 256
#define DQ_VEC 4
template <typename T>
__global__ void dequantize_kernel(float *out, const T *codes, const float *scales, int cols) {
    const int c = (blockIdx.x * DQ_COLS + threadIdx.x) * DQ_VEC;
    if (c >= cols) return;
    const size_t i = (size_t)blockIdx.y * cols + c;
    const float a = scales[blockIdx.y];
    if (cols % DQ_VEC == 0) {
        *(float4 *)(out + i) = make_float4(a * (float)codes[i], a * (float)codes[i + 1], a * (float)codes[i + 2],
                                           a * (float)codes[i + 3]);
        return;
    }
    for (int j = 0; j < DQ_VEC && c + j < cols; j++) out[i + j] = a * (float)codes[i + j];
}

// The same values rounded to bf16 (as converting dequantize_rows' floats would): out[i] (bf16) for
// the n = rows x cols elements, DQ_VEC8 consecutive ones a thread over the whole matrix (a row of
// 768 would leave most of a row-per-block grid idle); where cols is a multiple of DQ_VEC8 they lie
// in one row: one 8- or 16-byte load and one 16-byte store.
#define DQ_VEC8 8
template <typename T> struct dq_vec8;
template <> struct dq_vec8<int8_t> { typedef uint2 t; };
template <> struct dq_vec8<int16_t> { typedef uint4 t; };
template <typename T>
__global__ void dequantize_bf16_kernel(__nv_bfloat16 *out, const T *codes, const float *scales, int cols, size_t n) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * DQ_VEC8;
    if (i >= n) return;
    if (cols % DQ_VEC8 == 0) {
        const float a = scales[i / cols];
        __align__(16) T q[DQ_VEC8];
        __align__(16) __nv_bfloat16 v[DQ_VEC8];
        *(typename dq_vec8<T>::t *)q = *(const typename dq_vec8<T>::t *)(codes + i);
        for (int j = 0; j < DQ_VEC8; j++) v[j] = __float2bfloat16_rn(a * (float)q[j]);
        *(uint4 *)(out + i) = *(const uint4 *)v;
        return;
    }
    for (size_t j = i; j < i + DQ_VEC8 && j < n; j++) out[j] = __float2bfloat16_rn(scales[j / cols] * (float)codes[j]);
}
#endif
