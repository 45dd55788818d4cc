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
#endif
