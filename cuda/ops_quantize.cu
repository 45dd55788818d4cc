// Per-row symmetric MinMax fake quantization: one block per row.
#include "cuda/cuda_common.h"
#include "cuda/quantize.cuh"

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
