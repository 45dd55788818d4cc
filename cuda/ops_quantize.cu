// Per-row symmetric MinMax fake quantization: one block per row.
#include "cuda/cuda_common.h"

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

void cu_quantize_rows(swq_backend *be, void *out, const void *in, int rows, int cols, int bits) {
    size_t n = (size_t)rows * cols;
    if (n == 0) return;
    if (bits >= 32) {
        if (out != in) CUDA_CHECK(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice, STREAM(be)));
        return;
    }
    float qmax = (float)((1L << (bits - 1)) - 1);
    quantize_rows_kernel<<<rows, Q_BLOCK, 0, STREAM(be)>>>((float *)out, (const float *)in, cols, qmax);
    CUDA_LAUNCH_CHECK();
}
