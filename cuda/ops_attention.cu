// Causal multi-head attention with materialized probabilities (att[B,NH,T,T]).
// Each product is one pointer-array batched GEMM over all B*NH (batch, head) pairs (a head
// is a column slice of qkv, hs wide); the scores are computed for the full T x T square and
// masked by the softmax kernels (future positions: probability 0, gradient 0).
//   scores[t1,t2] = q[t1] . k[t2] / sqrt(hs)      column-major (T,N): K^T x Q
//   out[t1]       = sum_t2 att[t1,t2] v[t2]       (N,N): V^T x att^T
// Backward: datt = dout . v  (T,N);  dv = att^T dout  (N,T);  dpre = att * (datt - sum att*datt);
//   dq = dpre k / sqrt(hs)  (N,N);  dk = dpre^T q / sqrt(hs)  (N,T).
// In bf16 mode qkv, att and dout are converted once (whole buffers) and the copies reused by
// every GEMM that reads them, the backward's included.
#include <math.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"

#define WARPS 8

// One warp per row of att (rows = B*NH*T, row t1 = row % T): in-place causal softmax; ab (bf16
// mode) gets the bf16 copy the next GEMM reads, so no separate conversion pass.
__global__ void causal_softmax_kernel(float *att, __nv_bfloat16 *ab, int rows, int T) {
    int row = blockIdx.x * WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t = row % T;
    float *a = att + (size_t)row * T;
    float m = -INFINITY;
    for (int j = lane; j <= t; j += 32) m = fmaxf(m, a[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) {
        float e = expf(a[j] - m);
        a[j] = e;
        s += e;
    }
    float inv = 1.0f / warp_sum(s);
    __nv_bfloat16 *b = ab ? ab + (size_t)row * T : NULL;
    for (int j = lane; j < T; j += 32) {
        float p = j <= t ? a[j] * inv : 0.0f;
        a[j] = p;
        if (b) b[j] = __float2bfloat16_rn(p);
    }
}

// In place on d (= datt on entry): d = att * (d - sum_j att*d), 0 above the diagonal.
__global__ void softmax_bwd_kernel(float *d, __nv_bfloat16 *db, const float *att, int rows, int T) {
    int row = blockIdx.x * WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t = row % T;
    const float *a = att + (size_t)row * T;
    float *g = d + (size_t)row * T;
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) s += a[j] * g[j];
    s = warp_sum(s);
    __nv_bfloat16 *b = db ? db + (size_t)row * T : NULL;
    for (int j = lane; j < T; j += 32) {
        float v = j <= t ? a[j] * (g[j] - s) : 0.0f;
        g[j] = v;
        if (b) b[j] = __float2bfloat16_rn(v);
    }
}

void cu_attention_fwd(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return;
    const int hs = C / NH, C3 = 3 * C;
    const float sc = (float)(1.0 / sqrt((double)hs));
    const long long TT = (long long)T * T, sQ = (long long)T * C3, sO = (long long)T * C;
    const float *q = (const float *)qkv, *k = q + C, *v = q + 2 * C;
    float *a = (float *)att, *o = (float *)out;
    cu_bf16_prefetch(be, q, (size_t)B * T * C3);
    cu_gemm_bh(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, sc, k, C3, sQ, hs, q, C3, sQ, hs, 0.0f, a, T, NH * TT, TT, B,
               NH);
    int rows = B * NH * T;
    __nv_bfloat16 *ab = (__nv_bfloat16 *)cu_bf16_slot(be, a, (size_t)rows * T);
    causal_softmax_kernel<<<(rows + WARPS - 1) / WARPS, 32 * WARPS, 0, STREAM(be)>>>(a, ab, rows, T);
    CUDA_LAUNCH_CHECK();
    cu_gemm_bh(be, CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, 1.0f, v, C3, sQ, hs, a, T, NH * TT, TT, 0.0f, o, C, sO, hs, B,
               NH);
}

void cu_attention_bwd(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv,
                      const void *att, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return;
    const int hs = C / NH, C3 = 3 * C;
    const float sc = (float)(1.0 / sqrt((double)hs));
    const long long TT = (long long)T * T, sQ = (long long)T * C3, sO = (long long)T * C;
    const float *q = (const float *)qkv, *k = q + C, *v = q + 2 * C;
    float *dq = (float *)dqkv, *dk = dq + C, *dv = dq + 2 * C;
    const float *a = (const float *)att, *dO = (const float *)dout;
    float *d = (float *)scratch;
    cu_bf16_prefetch(be, q, (size_t)B * T * C3);
    // datt[t1,t2] = dout[t1] . v[t2]
    cu_gemm_bh(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, 1.0f, v, C3, sQ, hs, dO, C, sO, hs, 0.0f, d, T, NH * TT, TT, B,
               NH);
    // dv[t2] = sum_t1 att[t1,t2] dout[t1]
    cu_gemm_bh(be, CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, 1.0f, dO, C, sO, hs, a, T, NH * TT, TT, 0.0f, dv, C3, sQ, hs, B,
               NH);
    int rows = B * NH * T;
    __nv_bfloat16 *db = (__nv_bfloat16 *)cu_bf16_slot(be, d, (size_t)rows * T);
    softmax_bwd_kernel<<<(rows + WARPS - 1) / WARPS, 32 * WARPS, 0, STREAM(be)>>>(d, db, a, rows, T);
    CUDA_LAUNCH_CHECK();
    // dq[t1] = sc * sum_t2 dpre[t1,t2] k[t2];  dk[t2] = sc * sum_t1 dpre[t1,t2] q[t1]
    cu_gemm_bh(be, CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, sc, k, C3, sQ, hs, d, T, NH * TT, TT, 0.0f, dq, C3, sQ, hs, B,
               NH);
    cu_gemm_bh(be, CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, sc, q, C3, sQ, hs, d, T, NH * TT, TT, 0.0f, dk, C3, sQ, hs, B,
               NH);
}
