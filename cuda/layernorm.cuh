// LayerNorm's kernels (device code only: tests/test_kernels_sim.cpp also runs them on the CPU
// through cuda/tools/warp_sim.h).
#ifndef SWQ_LAYERNORM_CUH
#define SWQ_LAYERNORM_CUH
#include "cuda/device_common.cuh"

#define ROWS_PER_BLOCK 8   // warps per block

// ob (bf16 mode): the bf16 copy of out, for the GEMM that reads it next, rows ldb apart (>= C:
// padded where a K-extended reader asked, cu_bf16_want_rows).
__global__ void layernorm_fwd_kernel(float *out, __nv_bfloat16 *ob, int ldb, float *mean, float *rstd,
                                     const float *inp, const float *w, const float *b, int N, int C) {
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
    __nv_bfloat16 *obr = ob ? ob + (size_t)row * ldb : NULL;
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
__global__ void layernorm_fwd_vec_kernel(float *out, __nv_bfloat16 *ob, int ldb, float *mean, float *rstd,
                                         const float *inp, const float *w, const float *b, int N) {
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
        if (ob) store_bf16x4(ob + (size_t)row * ldb + 4 * i, y);
    }
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = r;
    }
}
// DWDB: also dw += sum dy * norm and db += sum dy over the rows, without reading dout and inp again
// (layernorm_bwd_dwdb_kernel's pass): the rows are grid-strided, each warp adds its rows' terms to
// its own slice of dynamic shared memory (2 C floats, LN_BWD_SMEM; the lane's columns), and the
// block sums the slices into dw, db by atomics.
#define LN_BWD_SMEM(C) ((size_t)ROWS_PER_BLOCK * 2 * (C) * sizeof(float))
template <int V4, bool DWDB>
__global__ void layernorm_bwd_dinp_vec_kernel(float *dinp, __nv_bfloat16 *ob, int ldb, float *dw, float *db,
                                              const float *dout, const float *inp, const float *w, const float *mean,
                                              const float *rstd, int N) {
    constexpr int C = 128 * V4;
    const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
    SWQ_DYNAMIC_SMEM(ln_smem);
    float4 *sw = (float4 *)ln_smem + (size_t)wid * (C / 2), *sb = sw + C / 4;
    if (DWDB)
#pragma unroll
        for (int k = 0; k < V4; k++) sw[lane + 32 * k] = sb[lane + 32 * k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int row = blockIdx.x * ROWS_PER_BLOCK + wid; row < N; row += gridDim.x * ROWS_PER_BLOCK) {
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
            if (DWDB) {
                float4 gw = sw[i], gb = sb[i];
                gw.x += dy.x * nm[k].x, gw.y += dy.y * nm[k].y, gw.z += dy.z * nm[k].z, gw.w += dy.w * nm[k].w;
                gb.x += dy.x, gb.y += dy.y, gb.z += dy.z, gb.w += dy.w;
                sw[i] = gw;
                sb[i] = gb;
            }
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
    if (DWDB) {
        __syncthreads();
        const float *sl = (const float *)ln_smem;
        for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) {
            float t = 0.0f;
#pragma unroll
            for (int k = 0; k < ROWS_PER_BLOCK; k++) t += sl[k * 2 * C + c];
            atomicAdd(c < C ? dw + c : db + (c - C), t);
        }
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
#endif
