// LayerNorm forward/backward (eps 1e-5): one warp per row; dw/db by column sums.
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"

#define LN_EPS 1e-5f
#define ROWS_PER_BLOCK 8   // warps per block

// ob (bf16 mode): the bf16 copy of out, for the GEMM that reads it next.
__global__ void layernorm_fwd_kernel(float *out, __nv_bfloat16 *ob, float *mean, float *rstd, const float *inp,
                                     const float *w, const float *b, int N, int C) {
    int row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int i = lane; i < C; i += 32) s += x[i];
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float d = x[i] - m;
        v += d * d;
    }
    float r = rsqrtf(warp_sum(v) / C + LN_EPS);
    float *o = out + (size_t)row * C;
    __nv_bfloat16 *obr = ob ? ob + (size_t)row * C : NULL;
    for (int i = lane; i < C; i += 32) {
        float y = (x[i] - m) * r * w[i] + b[i];
        o[i] = y;
        if (obr) obr[i] = __float2bfloat16_rn(y);
    }
    if (lane == 0) {   // NULL when not needed for backward
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = r;
    }
}

// ob (bf16 mode): the bf16 copy of the updated dinp (the residual stream's gradient, which a
// linear's backward reads next as its GEMM operand).
__global__ void layernorm_bwd_dinp_kernel(float *dinp, __nv_bfloat16 *ob, int ldb, const float *dout,
                                          const float *inp, const float *w, const float *mean, const float *rstd,
                                          int N, int C) {
    int row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float m = mean[row], r = rstd[row];
    float a = 0.0f, bb = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float dn = w[i] * dy[i];
        a += dn;
        bb += dn * (x[i] - m) * r;
    }
    float dnorm_mean = warp_sum(a) / C, dnorm_norm_mean = warp_sum(bb) / C;
    float *dx = dinp + (size_t)row * C;
    __nv_bfloat16 *obr = ob ? ob + (size_t)row * ldb : NULL;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * r;
        float v = dx[i] + (w[i] * dy[i] - dnorm_mean - norm * dnorm_norm_mean) * r;
        dx[i] = v;
        if (obr) obr[i] = __float2bfloat16_rn(v);
    }
}

// Block (32, 8): 32 consecutive columns, rows split over threadIdx.y and blockIdx.y;
// partial sums land in dw/db by atomicAdd.
__global__ void layernorm_bwd_dwdb_kernel(float *dw, float *db, const float *dout, const float *inp,
                                          const float *mean, const float *rstd, int N, int C, int rows_per) {
    __shared__ float sw[8][33], sb[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per, r1 = min(N, r0 + rows_per);
    float aw = 0.0f, ab = 0.0f;
    if (c < C) {
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            float dy = dout[(size_t)r * C + c];
            ab += dy;
            aw += dy * (inp[(size_t)r * C + c] - mean[r]) * rstd[r];
        }
    }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int y = 1; y < 8; y++) {
            aw += sw[y][threadIdx.x];
            ab += sb[y][threadIdx.x];
        }
        if (dw) atomicAdd(&dw[c], aw);
        if (db) atomicAdd(&db[c], ab);
    }
}

void cu_layernorm_fwd(swq_backend *be, void *out, void *mean, void *rstd, const void *inp, const void *w,
                      const void *b, int N, int C) {
    if (N <= 0) return;
    __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)out, (size_t)N * C);
    layernorm_fwd_kernel<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0, STREAM(be)>>>(
        (float *)out, ob, (float *)mean, (float *)rstd, (const float *)inp, (const float *)w, (const float *)b, N, C);
    CUDA_LAUNCH_CHECK();
}

void cu_layernorm_bwd(swq_backend *be, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                      const void *w, const void *mean, const void *rstd, int N, int C) {
    if (N <= 0) return;
    if (dinp) {
        // rows with room for a LoRA linear's du columns (its backward concatenates them)
        const int ldb = (C + CU_ROWS_SPARE + 7) & ~7;
        __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot_padded(be, (const float *)dinp, N, C, ldb);
        layernorm_bwd_dinp_kernel<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0,
                                    STREAM(be)>>>((float *)dinp, ob, ldb, (const float *)dout, (const float *)inp,
                                                  (const float *)w, (const float *)mean, (const float *)rstd,
                                                  N, C);
        CUDA_LAUNCH_CHECK();
    }
    if (dw || db) {
        int tiles = (C + 31) / 32;
        int want = (2 * CTX(be)->sm_count + tiles - 1) / tiles;   // about two waves of blocks
        int max_splits = (N + 63) / 64;                            // at least 64 rows each
        int splits = want < max_splits ? want : max_splits;
        if (splits < 1) splits = 1;
        int rows_per = (N + splits - 1) / splits;
        splits = (N + rows_per - 1) / rows_per;
        dim3 grid(tiles, splits), block(32, 8);
        layernorm_bwd_dwdb_kernel<<<grid, block, 0, STREAM(be)>>>((float *)dw, (float *)db, (const float *)dout,
                                                                  (const float *)inp, (const float *)mean,
                                                                  (const float *)rstd, N, C, rows_per);
        CUDA_LAUNCH_CHECK();
    }
}
