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

void cu_quantize_rows_codes(swq_backend *be, void *codes, void *scales, const void *in, int rows, int cols, int bits) {
    if ((size_t)rows * cols == 0) return;
    float qmax = (float)((1L << (bits - 1)) - 1);
    if (bits <= 8)
        quantize_codes_kernel<int8_t><<<rows, Q_BLOCK, 0, STREAM(be)>>>((int8_t *)codes, (float *)scales,
                                                                         (const float *)in, cols, qmax);
    else
        quantize_codes_kernel<int16_t><<<rows, Q_BLOCK, 0, STREAM(be)>>>((int16_t *)codes, (float *)scales,
                                                                          (const float *)in, cols, qmax);
    CUDA_LAUNCH_CHECK();
}

void cu_dequantize_rows(swq_backend *be, void *out, const void *codes, const void *scales, int rows, int cols,
                        int bits) {
    if ((size_t)rows * cols == 0) return;
    dim3 grid((cols + DQ_COLS * DQ_VEC - 1) / (DQ_COLS * DQ_VEC), rows);
    if (bits <= 8)
        dequantize_kernel<int8_t><<<grid, DQ_COLS, 0, STREAM(be)>>>((float *)out, (const int8_t *)codes,
                                                                    (const float *)scales, cols);
    else
        dequantize_kernel<int16_t><<<grid, DQ_COLS, 0, STREAM(be)>>>((float *)out, (const int16_t *)codes,
                                                                     (const float *)scales, cols);
    CUDA_LAUNCH_CHECK();
}

void cu_dequantize_rows_bf16(swq_backend *be, void *out, const void *codes, const void *scales, int rows, int cols,
                             int bits) {
    size_t n = (size_t)rows * cols;
    if (n == 0) return;
    size_t grid = (n + (size_t)DQ_COLS * DQ_VEC8 - 1) / ((size_t)DQ_COLS * DQ_VEC8);
    if (bits <= 8)
        dequantize_bf16_kernel<int8_t><<<grid, DQ_COLS, 0, STREAM(be)>>>((__nv_bfloat16 *)out, (const int8_t *)codes,
                                                                        (const float *)scales, cols, n);
    else
        dequantize_bf16_kernel<int16_t><<<grid, DQ_COLS, 0, STREAM(be)>>>((__nv_bfloat16 *)out, (const int16_t *)codes,
                                                                         (const float *)scales, cols, n);
    CUDA_LAUNCH_CHECK();
}
