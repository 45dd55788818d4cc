// The backend's conversion kernels (floats to bf16 copies and back, padded rows) and the pointer
// arrays of batched GEMMs (device code only: tests/test_kernels_sim.cpp also runs them on the CPU
// through cuda/tools/warp_sim.h).
#ifndef SWQ_CONVERT_CUH
#define SWQ_CONVERT_CUH
#include "cuda/device_common.cuh"

__global__ void float_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

// src 16-byte aligned: four floats a load.
__global__ void float4_to_bf16_kernel(__nv_bfloat162 *dst, const float4 *src, size_t n4) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 v = src[i];
        dst[2 * i] = __floats2bfloat162_rn(v.x, v.y);
        dst[2 * i + 1] = __floats2bfloat162_rn(v.z, v.w);
    }
}

// dst[p*cols + j] = src[p*lds + j] (rows of cols bf16 lds apart, to packed floats)
__global__ void bf16_rows_to_float_kernel(float *dst, const __nv_bfloat16 *src, int lds, size_t rows, int cols) {
    size_t n = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i / cols * lds + i % cols]);
}

// dst[p*ldd + j] = bf16(src[p*cols + j]) for j < cols and 0 for cols <= j < width, rows p < rows
__global__ void float_to_bf16_rows_kernel(__nv_bfloat16 *dst, int ldd, const float *src, int rows, int cols,
                                          int width) {
    size_t n = (size_t)rows * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t p = i / width, j = i % width;
        dst[p * ldd + j] = __float2bfloat16_rn(j < (size_t)cols ? src[p * cols + j] : 0.0f);
    }
}

// Several float matrices into bf16 rows at once (cu_weight_ext's adapter rows after the cached
// weights, all of a step's at the first use): job blockIdx.y, dst[p*ld + j] = bf16(src[p*cols + j]).
// By value (4 KB of parameters), so a recorded graph keeps them.
#define BF16_JOBS 128
struct bf16_rows_job { const float *src; __nv_bfloat16 *dst; int ld, rows, cols, pad_; };
struct bf16_rows_jobs { bf16_rows_job j[BF16_JOBS]; };
__global__ void float_to_bf16_jobs_kernel(bf16_rows_jobs jobs) {
    const bf16_rows_job &jb = jobs.j[blockIdx.y];
    const size_t n = (size_t)jb.rows * jb.cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        jb.dst[i / jb.cols * jb.ld + i % jb.cols] = __float2bfloat16_rn(jb.src[i]);
}

// ptrs[0..cnt) = A matrices, [cnt..2cnt) = B, [2cnt..3cnt) = C; offsets in bytes.
__global__ void bh_ptrs_kernel(void **ptrs, const char *a, const char *b, char *cm, long long sbA, long long shA,
                               long long sbB, long long shB, long long sbC, long long shC, int nb, int nh) {
    int cnt = nb * nh;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cnt; i += gridDim.x * blockDim.x) {
        long long bi = i / nh, hi = i % nh;
        ptrs[i] = (void *)(a + bi * sbA + hi * shA);
        ptrs[cnt + i] = (void *)(b + bi * sbB + hi * shB);
        ptrs[2 * cnt + i] = (void *)(cm + bi * sbC + hi * shC);
    }
}
#endif
