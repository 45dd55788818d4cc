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
// In bf16 mode with 64-wide heads the forward and backward are fused flash-attention kernels
// instead (after FlashAttention-2): tiles of 64 queries x 64 keys on the tensor cores (WMMA,
// bf16 operands, fp32 accumulation), the causal upper triangle skipped, the probabilities
// recomputed in the backward from per-row log-sum-exps kept in att (no T x T buffer).
#include <math.h>
#include <cuda_bf16.h>
#include <mma.h>
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


// ---------------------------------------------------------------- flash attention (bf16, hs 64)
#define FA 64                 // head size, query tile, key tile
#define FA_THREADS 128        // 4 warps, 16 rows each
#define FA_LDB (FA + 8)       // padded smem rows (bf16 elements)
#define FA_LDF (FA + 4)       // (floats)
using namespace nvcuda;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa_arow;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> fa_acol;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa_brow;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fa_bcol;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> fa_acc;

// 64 rows x 64 bf16 of a head from rows r0.. (stride ld elements) into smem; rows >= T zero.
__device__ __forceinline__ void fa_load_tile(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int r0, int T,
                                             size_t ld) {
    for (int i = threadIdx.x; i < FA * FA / 8; i += FA_THREADS) {
        int r = i / (FA / 8), c = (i % (FA / 8)) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r0 + r < T) v = *(const uint4 *)(src + (size_t)(r0 + r) * ld + c);
        *(uint4 *)(dst + r * FA_LDB + c) = v;
    }
}

// warp w: D[16 x 64] (fp32 smem, ld FA_LDF) (+)= A[rows w*16.., 64] (bf16 row-major) x B, with B
// given as 64 x 64 row-major (brow) or its transpose stored row-major (bcol: D = A B^T).
template <bool TRANS_B, bool ACC = false>
__device__ __forceinline__ void fa_mm_rows(float *D, const __nv_bfloat16 *A, const __nv_bfloat16 *Bs) {
    int w = threadIdx.x / 32;
    fa_arow a[4];
#pragma unroll
    for (int k = 0; k < 4; k++) wmma::load_matrix_sync(a[k], A + (w * 16) * FA_LDB + k * 16, FA_LDB);
#pragma unroll
    for (int n = 0; n < 4; n++) {
        fa_acc acc;
        if (ACC) wmma::load_matrix_sync(acc, D + (w * 16) * FA_LDF + n * 16, FA_LDF, wmma::mem_row_major);
        else wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if (TRANS_B) {
                fa_bcol b;
                wmma::load_matrix_sync(b, Bs + (n * 16) * FA_LDB + k * 16, FA_LDB);
                wmma::mma_sync(acc, a[k], b, acc);
            } else {
                fa_brow b;
                wmma::load_matrix_sync(b, Bs + (k * 16) * FA_LDB + n * 16, FA_LDB);
                wmma::mma_sync(acc, a[k], b, acc);
            }
        }
        wmma::store_matrix_sync(D + (w * 16) * FA_LDF + n * 16, acc, FA_LDF, wmma::mem_row_major);
    }
}

// grid (query tiles, B*NH). out/outb [B,T,C]; lse [B*NH, T].
__global__ void __launch_bounds__(FA_THREADS) flash_fwd_kernel(float *out, __nv_bfloat16 *outb, float *lse,
                                                               const __nv_bfloat16 *qkv, int T, int C, int NH,
                                                               float sc) {
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)fa_smem, *Ks = Qs + FA * FA_LDB, *Vs = Ks + FA * FA_LDB,
                  *Ps = Vs + FA * FA_LDB;
    float *Ss = (float *)(Ps + FA * FA_LDB), *Os = Ss + FA * FA_LDF;
    const int qt = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH, q0 = qt * FA;
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t C3 = 3 * (size_t)C;
    const __nv_bfloat16 *base = qkv + (size_t)b * T * C3 + h * FA;
    fa_load_tile(Qs, base, q0, T, C3);
    for (int i = threadIdx.x; i < FA * FA_LDF; i += FA_THREADS) Os[i] = 0.0f;
    // running max and sum of the warp's 16 rows: lane r < 16 keeps row r's (a row is processed by
    // the whole warp, lanes over columns: no shared-memory bank conflicts)
    float m = -INFINITY, l = 0.0f;
    for (int kt = 0; kt <= qt; kt++) {
        __syncthreads();   // the previous tile's K, V are no longer read
        fa_load_tile(Ks, base + C, kt * FA, T, C3);
        fa_load_tile(Vs, base + 2 * C, kt * FA, T, C3);
        __syncthreads();
        fa_mm_rows<true>(Ss, Qs, Ks);   // S = Q K^T
        __syncwarp();
        for (int r = 0; r < 16; r++) {
            const int row = w * 16 + r, qi = q0 + row;
            float *srow = Ss + row * FA_LDF, *orow = Os + row * FA_LDF;
            float x0 = kt * FA + lane <= qi ? srow[lane] * sc : -INFINITY;
            float x1 = kt * FA + lane + 32 <= qi ? srow[lane + 32] * sc : -INFINITY;
            float mo = __shfl_sync(0xffffffffu, m, r), lo = __shfl_sync(0xffffffffu, l, r);
            float mn = fmaxf(mo, warp_max(fmaxf(x0, x1)));   // finite: key kt*64 <= qi
            float alpha = expf(mo - mn), p0 = expf(x0 - mn), p1 = expf(x1 - mn);
            Ps[row * FA_LDB + lane] = __float2bfloat16_rn(p0);
            Ps[row * FA_LDB + lane + 32] = __float2bfloat16_rn(p1);
            orow[lane] *= alpha;
            orow[lane + 32] *= alpha;
            float sum = warp_sum(p0 + p1);
            if (lane == r) {
                l = lo * alpha + sum;
                m = mn;
            }
        }
        __syncwarp();
        // O += P V (accumulators through smem: the rescale above needs them by row)
        fa_mm_rows<false, true>(Os, Ps, Vs);
        __syncwarp();
    }
    for (int r = 0; r < 16; r++) {
        const int row = w * 16 + r, qi = q0 + row;
        if (qi >= T) break;
        const float inv = 1.0f / __shfl_sync(0xffffffffu, l, r);
        const float *orow = Os + row * FA_LDF;
        size_t o = ((size_t)b * T + qi) * C + h * FA;
        for (int c = lane; c < FA; c += 32) {
            float v = orow[c] * inv;
            out[o + c] = v;
            if (outb) outb[o + c] = __float2bfloat16_rn(v);
        }
    }
    if (lane < 16 && q0 + w * 16 + lane < T) lse[(size_t)bh * T + q0 + w * 16 + lane] = m + logf(l);
}

// D[bh, t] = sum_d dout[b,t,h,d] * out[b,t,h,d]: a warp per row.
__global__ void flash_bwd_dot_kernel(float *D, const float *dout, const float *out, int B, int T, int C, int NH) {
    int r = blockIdx.x * 8 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= B * NH * T) return;
    int t = r % T, bh = r / T, b = bh / NH, h = bh % NH;
    size_t o = ((size_t)b * T + t) * C + h * FA;
    float s = dout[o + lane] * out[o + lane] + dout[o + lane + 32] * out[o + lane + 32];
    s = warp_sum(s);
    if (lane == 0) D[r] = s;
}

// grid (key tiles, B*NH): dK, dV of a key tile over the query tiles at or after it; dq by atomics
// (dqkv's q part zeroed before).
__global__ void __launch_bounds__(FA_THREADS) flash_bwd_kernel(float *dqkv, const __nv_bfloat16 *qkv,
                                                               const __nv_bfloat16 *dout, const float *lse,
                                                               const float *Dr, int T, int C, int NH, float sc) {
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)fa_smem, *Vs = Ks + FA * FA_LDB, *Qs = Vs + FA * FA_LDB,
                  *dOs = Qs + FA * FA_LDB, *Ps = dOs + FA * FA_LDB, *dSs = Ps + FA * FA_LDB;
    float *Ss = (float *)(dSs + FA * FA_LDB), *dPs = Ss + FA * FA_LDF, *St = dPs + FA * FA_LDF;
    __shared__ float lse_s[FA], d_s[FA];
    const int kt = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH, k0 = kt * FA;
    const int w = threadIdx.x / 32;
    const size_t C3 = 3 * (size_t)C;
    const __nv_bfloat16 *base = qkv + (size_t)b * T * C3 + h * FA, *dob = dout + (size_t)b * T * C + h * FA;
    fa_load_tile(Ks, base + C, k0, T, C3);
    fa_load_tile(Vs, base + 2 * C, k0, T, C3);
    fa_acc dK[4], dV[4];
#pragma unroll
    for (int n = 0; n < 4; n++) {
        wmma::fill_fragment(dK[n], 0.0f);
        wmma::fill_fragment(dV[n], 0.0f);
    }
    const int nT = (T + FA - 1) / FA;
    for (int qt = kt; qt < nT; qt++) {
        const int q0 = qt * FA;
        __syncthreads();   // the previous tile's Q, dO, P, dS are no longer read
        fa_load_tile(Qs, base, q0, T, C3);
        fa_load_tile(dOs, dob, q0, T, C);
        if (threadIdx.x < FA) {
            int q = q0 + threadIdx.x;
            lse_s[threadIdx.x] = q < T ? lse[(size_t)bh * T + q] : INFINITY;
            d_s[threadIdx.x] = q < T ? Dr[(size_t)bh * T + q] : 0.0f;
        }
        __syncthreads();
        fa_mm_rows<true>(Ss, Qs, Ks);    // S = Q K^T      (query rows of warp w)
        fa_mm_rows<true>(dPs, dOs, Vs);  // dP = dO V^T
        __syncthreads();
        // P = exp(sc S - lse) (causal), dS = P (dP - D); thread: row i, 32 columns
        for (int e = threadIdx.x; e < FA * FA; e += FA_THREADS) {   // lanes over columns
            int i = e / FA, c = e % FA, qi = q0 + i;
            float p = (k0 + c <= qi && qi < T) ? expf(Ss[i * FA_LDF + c] * sc - lse_s[i]) : 0.0f;
            Ps[i * FA_LDB + c] = __float2bfloat16_rn(p);
            dSs[i * FA_LDB + c] = __float2bfloat16_rn(p * (dPs[i * FA_LDF + c] - d_s[i]));
        }
        __syncthreads();
        // dV[keys of warp w] += P^T dO;  dK += dS^T Q   (P^T: P read column-major)
#pragma unroll
        for (int k = 0; k < 4; k++) {
            fa_acol pt, dst;
            wmma::load_matrix_sync(pt, Ps + (k * 16) * FA_LDB + w * 16, FA_LDB);
            wmma::load_matrix_sync(dst, dSs + (k * 16) * FA_LDB + w * 16, FA_LDB);
#pragma unroll
            for (int n = 0; n < 4; n++) {
                fa_brow bo, bq;
                wmma::load_matrix_sync(bo, dOs + (k * 16) * FA_LDB + n * 16, FA_LDB);
                wmma::load_matrix_sync(bq, Qs + (k * 16) * FA_LDB + n * 16, FA_LDB);
                wmma::mma_sync(dV[n], pt, bo, dV[n]);
                wmma::mma_sync(dK[n], dst, bq, dK[n]);
            }
        }
        // dQ[query rows of warp w] += sc dS K
        fa_mm_rows<false>(St, dSs, Ks);
        __syncwarp();
        for (int e = threadIdx.x % 32; e < 16 * FA; e += 32) {
            int i = w * 16 + e / FA, d = e % FA, qi = q0 + i;
            if (qi < T) atomicAdd(&dqkv[((size_t)b * T + qi) * C3 + h * FA + d], sc * St[i * FA_LDF + d]);
        }
    }
    // dK (scaled), dV of this key tile
    __syncwarp();
#pragma unroll
    for (int part = 0; part < 2; part++) {
#pragma unroll
        for (int n = 0; n < 4; n++)
            wmma::store_matrix_sync(St + (w * 16) * FA_LDF + n * 16, part ? dV[n] : dK[n], FA_LDF,
                                    wmma::mem_row_major);
        __syncwarp();
        for (int e = threadIdx.x % 32; e < 16 * FA; e += 32) {
            int i = w * 16 + e / FA, d = e % FA, kj = k0 + i;
            if (kj < T)
                dqkv[((size_t)b * T + kj) * C3 + (part ? 2 : 1) * (size_t)C + h * FA + d] =
                    part ? St[i * FA_LDF + d] : sc * St[i * FA_LDF + d];
        }
        __syncwarp();
    }
}

static const size_t FA_FWD_SMEM = 4 * FA * FA_LDB * sizeof(__nv_bfloat16) + 2 * FA * FA_LDF * sizeof(float);
static const size_t FA_BWD_SMEM = 6 * FA * FA_LDB * sizeof(__nv_bfloat16) + 3 * FA * FA_LDF * sizeof(float);

static void flash_fwd(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH) {
    static int attr_done;
    if (!attr_done) {
        CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)FA_FWD_SMEM));
        CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)FA_BWD_SMEM));
        attr_done = 1;
    }
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)qkv, (size_t)B * T * 3 * C);
    __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)out, (size_t)B * T * C);
    dim3 grid((T + FA - 1) / FA, B * NH);
    flash_fwd_kernel<<<grid, FA_THREADS, FA_FWD_SMEM, STREAM(be)>>>((float *)out, ob, (float *)att, qb, T, C, NH,
                                                                    (float)(1.0 / sqrt((double)FA)));
    CUDA_LAUNCH_CHECK();
}

static void flash_bwd(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv, const void *out,
                      const void *att, int B, int T, int C, int NH) {
    int rows = B * NH * T;
    float *D = (float *)scratch;
    flash_bwd_dot_kernel<<<(rows + 7) / 8, 256, 0, STREAM(be)>>>(D, (const float *)dout, (const float *)out, B, T, C,
                                                                NH);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemsetAsync(dqkv, 0, (size_t)B * T * 3 * C * sizeof(float), STREAM(be)));
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)qkv, (size_t)B * T * 3 * C);
    const __nv_bfloat16 *db = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)dout, (size_t)B * T * C);
    dim3 grid((T + FA - 1) / FA, B * NH);
    flash_bwd_kernel<<<grid, FA_THREADS, FA_BWD_SMEM, STREAM(be)>>>((float *)dqkv, qb, db, (const float *)att, D, T,
                                                                    C, NH, (float)(1.0 / sqrt((double)FA)));
    CUDA_LAUNCH_CHECK();
}

void cu_attention_fwd(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return;
    if (cu_flash_attention(be, C, NH)) {
        flash_fwd(be, out, att, qkv, B, T, C, NH);
        return;
    }
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

void cu_attention_bwd(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv, const void *out,
                      const void *att, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return;
    if (cu_flash_attention(be, C, NH)) {
        flash_bwd(be, dqkv, scratch, dout, qkv, out, att, B, T, C, NH);
        return;
    }
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
