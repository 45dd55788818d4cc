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
    float *o = out ? out + (size_t)row * C : NULL;
    __nv_bfloat16 *obr = ob ? ob + (size_t)row * C : NULL;
    for (int i = lane; i < C; i += 32) {
        float y = (x[i] - m) * r * w[i] + b[i];
        if (o) o[i] = y;
        if (obr) obr[i] = __float2bfloat16_rn(y);
    }
    if (lane == 0) {   // NULL when not needed for backward
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = r;
    }
}

// The same with the row in registers, read and written as float4 (bf16 copy: 4 at a time): C =
// 128 * V4, 16-byte aligned rows (one pass over memory; the loops above read x three times with
// 4-byte loads: ~3x the bandwidth floor at GPT-2's C = 768).
template <int V4>
__global__ void layernorm_fwd_vec_kernel(float *out, __nv_bfloat16 *ob, float *mean, float *rstd, const float *inp,
                                         const float *w, const float *b, int N) {
    constexpr int C = 128 * V4;
    int row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const float4 *x4 = (const float4 *)(inp + (size_t)row * C);
    float4 x[V4];
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < V4; k++) {
        x[k] = x4[lane + 32 * k];
        s += (x[k].x + x[k].y) + (x[k].z + x[k].w);
    }
    const float m = warp_sum(s) / C;
    float v = 0.0f;
#pragma unroll
    for (int k = 0; k < V4; k++) {
        float a = x[k].x - m, bb = x[k].y - m, c = x[k].z - m, d = x[k].w - m;
        v += (a * a + bb * bb) + (c * c + d * d);
    }
    const float r = rsqrtf(warp_sum(v) / C + LN_EPS);
    float4 *o4 = out ? (float4 *)(out + (size_t)row * C) : NULL;
#pragma unroll
    for (int k = 0; k < V4; k++) {
        const int i = lane + 32 * k;
        float4 ww = ((const float4 *)w)[i], bv = ((const float4 *)b)[i], y;
        y.x = (x[k].x - m) * r * ww.x + bv.x;
        y.y = (x[k].y - m) * r * ww.y + bv.y;
        y.z = (x[k].z - m) * r * ww.z + bv.z;
        y.w = (x[k].w - m) * r * ww.w + bv.w;
        if (o4) o4[i] = y;
        if (ob) store_bf16x4(ob + (size_t)row * C + 4 * i, y);
    }
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = r;
    }
}
template <int V4>
__global__ void layernorm_bwd_dinp_vec_kernel(float *dinp, __nv_bfloat16 *ob, int ldb, const float *dout,
                                              const float *inp, const float *w, const float *mean, const float *rstd,
                                              int N) {
    constexpr int C = 128 * V4;
    int row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const float4 *x4 = (const float4 *)(inp + (size_t)row * C), *dy4 = (const float4 *)(dout + (size_t)row * C);
    const float m = mean[row], r = rstd[row];
    float4 dn[V4], nm[V4];   // w * dy, and the normalized input
    float a = 0.0f, bb = 0.0f;
#pragma unroll
    for (int k = 0; k < V4; k++) {
        const int i = lane + 32 * k;
        float4 x = x4[i], dy = dy4[i], ww = ((const float4 *)w)[i];
        dn[k] = make_float4(ww.x * dy.x, ww.y * dy.y, ww.z * dy.z, ww.w * dy.w);
        nm[k] = make_float4((x.x - m) * r, (x.y - m) * r, (x.z - m) * r, (x.w - m) * r);
        a += (dn[k].x + dn[k].y) + (dn[k].z + dn[k].w);
        bb += (dn[k].x * nm[k].x + dn[k].y * nm[k].y) + (dn[k].z * nm[k].z + dn[k].w * nm[k].w);
    }
    const float dnorm_mean = warp_sum(a) / C, dnorm_norm_mean = warp_sum(bb) / C;
    float4 *dx4 = (float4 *)(dinp + (size_t)row * C);
#pragma unroll
    for (int k = 0; k < V4; k++) {
        const int i = lane + 32 * k;
        float4 d = dx4[i];
        d.x += (dn[k].x - dnorm_mean - nm[k].x * dnorm_norm_mean) * r;
        d.y += (dn[k].y - dnorm_mean - nm[k].y * dnorm_norm_mean) * r;
        d.z += (dn[k].z - dnorm_mean - nm[k].z * dnorm_norm_mean) * r;
        d.w += (dn[k].w - dnorm_mean - nm[k].w * dnorm_norm_mean) * r;
        dx4[i] = d;
        if (ob) store_bf16x4(ob + (size_t)row * ldb + 4 * i, d);
    }
}
static int ln_vec(int C, const void *a, const void *b, const void *c, const void *d, const void *e) {
    if (C % 128 || C > 128 * 8) return 0;
    const void *p[5] = {a, b, c, d, e};
    for (int i = 0; i < 5; i++)
        if ((uintptr_t)p[i] % 16) return 0;
    return C / 128;
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

// Block (32, 8): 128 consecutive columns (4 a thread, float4 when V4: C % 4 == 0 and 16-byte
// aligned rows), rows split over threadIdx.y and blockIdx.y; partial sums land in dw/db by
// atomicAdd.
template <bool V4>
__global__ void layernorm_bwd_dwdb_kernel(float *dw, float *db, const float *dout, const float *inp,
                                          const float *mean, const float *rstd, int N, int C, int rows_per) {
    __shared__ float4 sw[8][32], sb[8][32];
    const int c = (blockIdx.x * 32 + threadIdx.x) * 4;
    const int r0 = blockIdx.y * rows_per, r1 = min(N, r0 + rows_per);
    float4 aw = make_float4(0.0f, 0.0f, 0.0f, 0.0f), ab = aw;
    auto ld = [&](const float *base, int r) { return load4_cols<V4>(base + (size_t)r * C + c, c, C); };
    if (c < C)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            float4 dy = ld(dout, r), x = ld(inp, r);
            float m = mean[r], rs = rstd[r];
            ab.x += dy.x, ab.y += dy.y, ab.z += dy.z, ab.w += dy.w;
            aw.x += dy.x * (x.x - m) * rs;
            aw.y += dy.y * (x.y - m) * rs;
            aw.z += dy.z * (x.z - m) * rs;
            aw.w += dy.w * (x.w - m) * rs;
        }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int y = 1; y < 8; y++) {
            float4 t = sw[y][threadIdx.x], u = sb[y][threadIdx.x];
            aw.x += t.x, aw.y += t.y, aw.z += t.z, aw.w += t.w;
            ab.x += u.x, ab.y += u.y, ab.z += u.z, ab.w += u.w;
        }
        float vw[4] = {aw.x, aw.y, aw.z, aw.w}, vb[4] = {ab.x, ab.y, ab.z, ab.w};
        for (int k = 0; k < 4 && c + k < C; k++) {
            if (dw) atomicAdd(&dw[c + k], vw[k]);
            if (db) atomicAdd(&db[c + k], vb[k]);
        }
    }
}

void cu_layernorm_fwd(swq_backend *be, void *out, void *mean, void *rstd, const void *inp, const void *w,
                      const void *b, int N, int C) {
    if (N <= 0) return;
    // bf16: out only as its copy where no op read its floats last time (the GEMMs read the copy)
    int sole = 0;
    __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot_auto(be, (const float *)out, (size_t)N * C, &sole);
    if (!ob) ob = (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)out, (size_t)N * C);
    if (sole) {
        cu_bf16_sole(be, (const float *)out);
        out = NULL;
    }
    const unsigned nb = (N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, nt = 32 * ROWS_PER_BLOCK;
    cudaStream_t st = STREAM(be);
    switch (ln_vec(C, out, inp, w, b, ob)) {
#define LN_FWD(V)                                                                                               \
    case V:                                                                                                     \
        layernorm_fwd_vec_kernel<V><<<nb, nt, 0, st>>>((float *)out, ob, (float *)mean, (float *)rstd,         \
                                                       (const float *)inp, (const float *)w, (const float *)b, N); \
        CUDA_LAUNCH_CHECK();                                                                                    \
        return;
        LN_FWD(1) LN_FWD(2) LN_FWD(3) LN_FWD(4) LN_FWD(5) LN_FWD(6) LN_FWD(7) LN_FWD(8)
#undef LN_FWD
    default: break;
    }
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
        const unsigned nb = (N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, nt = 32 * ROWS_PER_BLOCK;
        cudaStream_t st = STREAM(be);
        switch (ln_vec(C, dinp, dout, inp, w, ob)) {
#define LN_BWD(V)                                                                                                \
    case V:                                                                                                      \
        layernorm_bwd_dinp_vec_kernel<V><<<nb, nt, 0, st>>>((float *)dinp, ob, ldb, (const float *)dout,        \
                                                            (const float *)inp, (const float *)w,                \
                                                            (const float *)mean, (const float *)rstd, N);        \
        break;
            LN_BWD(1) LN_BWD(2) LN_BWD(3) LN_BWD(4) LN_BWD(5) LN_BWD(6) LN_BWD(7) LN_BWD(8)
#undef LN_BWD
        default:
            layernorm_bwd_dinp_kernel<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0,
                                    STREAM(be)>>>((float *)dinp, ob, ldb, (const float *)dout, (const float *)inp,
                                                  (const float *)w, (const float *)mean, (const float *)rstd,
                                                  N, C);
        }
        CUDA_LAUNCH_CHECK();
    }
    if (dw || db) {
        int rows_per;
        dim3 grid = col_sum_grid(CTX(be)->sm_count, N, C, &rows_per), block(32, 8);
        if (C % 4 == 0 && (uintptr_t)dout % 16 == 0 && (uintptr_t)inp % 16 == 0)
            layernorm_bwd_dwdb_kernel<true><<<grid, block, 0, STREAM(be)>>>(
                (float *)dw, (float *)db, (const float *)dout, (const float *)inp, (const float *)mean,
                (const float *)rstd, N, C, rows_per);
        else
            layernorm_bwd_dwdb_kernel<false><<<grid, block, 0, STREAM(be)>>>(
                (float *)dw, (float *)db, (const float *)dout, (const float *)inp, (const float *)mean,
                (const float *)rstd, N, C, rows_per);
        CUDA_LAUNCH_CHECK();
    }
}
