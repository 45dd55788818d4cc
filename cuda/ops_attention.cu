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
// instead (after FlashAttention-2): tiles of 64 queries x 64 keys on the tensor cores (mma.sync,
// bf16 operands, fp32 accumulation, register-resident), the causal upper triangle skipped, the
// probabilities recomputed in the backward from per-row log-sum-exps kept in att (no T x T buffer).
#include <math.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/mma_bf16.cuh"

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
// FlashAttention-2's layout on mma.sync (m16n8k16, bf16 operands, fp32 accumulation): a block of
// 4 warps owns 64 rows (forward: queries; backward: keys), each warp 16 of them, and keeps its
// scores, probabilities and output accumulators in registers; shared memory holds only operand
// tiles (64 x 64 bf16, rows padded to 72 so ldmatrix is free of bank conflicts), loaded with
// cp.async one tile ahead. The S tile's accumulator layout is the next mma's A-operand layout,
// so P never leaves registers. Scores are taken in the log2 domain (exp2).
#define FA 64                 // head size, query tile, key tile
#define FA_THREADS 128        // 4 warps, 16 rows each
#define FA_LDB (FA + 8)       // padded smem rows (bf16 elements)
#define FA_TILE (FA * FA_LDB)
#define FA_LOG2E 1.4426950408889634f

// 64 rows x 64 bf16 of a head from rows r0.. (stride ld elements) into smem, asynchronously;
// rows >= T are zero-filled.
__device__ __forceinline__ void fa_tile_async(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int r0, int T,
                                              size_t ld) {
    for (int i = threadIdx.x; i < FA * FA / 8; i += FA_THREADS) {
        int r = i >> 3, c = (i & 7) * 8;
        bool ok = r0 + r < T;
        cp_async16(dst + r * FA_LDB + c, src + (size_t)(ok ? r0 + r : 0) * ld + c, ok);
    }
}

// acc[8][4] (16 rows x 64) += A-fragments a[4] (16 x 64, four k16 steps) times X^T (X: 64 rows
// of the tile, row-major: D = A X^T) or X (D = A X).
template <bool TRANS>
__device__ __forceinline__ void fa_mm(float acc[8][4], const uint32_t a[4][4], const __nv_bfloat16 *X) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t bf[4];
            if (TRANS) mma_ldsm(bf, frag_b_rows(X, FA_LDB, j * 16, kk * 16));
            else mma_ldsm_t(bf, frag_b_cols(X, FA_LDB, kk * 16, j * 16));
            mma_16816(acc[2 * j], a[kk], bf[0], bf[1]);
            mma_16816(acc[2 * j + 1], a[kk], bf[2], bf[3]);
        }
}

// A fragments of a warp's 16 rows x 64 columns from a tile in smem.
__device__ __forceinline__ void fa_load_a(uint32_t a[4][4], const __nv_bfloat16 *t, int row0) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) mma_ldsm(a[kk], frag_a(t, FA_LDB, row0, kk * 16));
}

__device__ __forceinline__ void fa_atomic_add2(float *p, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd((float2 *)p, make_float2(a, b));
#else
    atomicAdd(p, a);
    atomicAdd(p + 1, b);
#endif
}

// grid (query tiles, last first: the causal work is largest there; B*NH). out/outb [B,T,C];
// lse [B*NH, T] (natural log). Thread (lane) holds rows g = lane/4 and g + 8 of its warp's 16,
// columns 2*(lane%4) + {0,1} of each n8 tile.
__global__ void __launch_bounds__(FA_THREADS) flash_fwd_kernel(float *out, __nv_bfloat16 *outb, float *lse,
                                                               const __nv_bfloat16 *qkv, int T, int C, int NH,
                                                               float sc) {
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)fa_smem, *Ks = Qs + FA_TILE, *Vs = Ks + 2 * FA_TILE;
    const int nT = (T + FA - 1) / FA, qt = nT - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int q0 = qt * FA, w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t C3 = 3 * (size_t)C;
    const float sl2 = sc * FA_LOG2E;
    const __nv_bfloat16 *base = qkv + (size_t)b * T * C3 + h * FA;
    fa_tile_async(Qs, base, q0, T, C3);
    fa_tile_async(Ks, base + C, 0, T, C3);
    fa_tile_async(Vs, base + 2 * C, 0, T, C3);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[4][4];
    fa_load_a(qf, Qs, w * 16);
    float o[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const int r0 = q0 + w * 16 + g, r1 = r0 + 8;
    for (int kt = 0; kt <= qt; kt++) {
        const __nv_bfloat16 *Kb = Ks + (kt & 1) * FA_TILE, *Vb = Vs + (kt & 1) * FA_TILE;
        if (kt < qt) {   // the next tile's K, V into the other buffers (read last iteration, synced since)
            fa_tile_async(Ks + ((kt + 1) & 1) * FA_TILE, base + C, (kt + 1) * FA, T, C3);
            fa_tile_async(Vs + ((kt + 1) & 1) * FA_TILE, base + 2 * C, (kt + 1) * FA, T, C3);
            cp_async_commit();
        }
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
        fa_mm<true>(s, qf, Kb);   // S = Q K^T
        if (kt == qt)
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (kt * FA + n * 8 + 2 * tq + (e & 1) > (e < 2 ? r0 : r1)) s[n][e] = -INFINITY;
        float x0 = m0, x1 = m1;   // new maxima, log2 units (finite: key kt*64 <= row)
#pragma unroll
        for (int n = 0; n < 8; n++) {
            x0 = fmaxf(x0, fmaxf(s[n][0], s[n][1]) * sl2);
            x1 = fmaxf(x1, fmaxf(s[n][2], s[n][3]) * sl2);
        }
        x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1));
        x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
        x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1));
        x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
        const float a0 = exp2f(m0 - x0), a1 = exp2f(m1 - x1);
        m0 = x0;
        m1 = x1;
        l0 *= a0;
        l1 *= a1;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            o[n][0] *= a0;
            o[n][1] *= a0;
            o[n][2] *= a1;
            o[n][3] *= a1;
            s[n][0] = exp2f(s[n][0] * sl2 - m0);
            s[n][1] = exp2f(s[n][1] * sl2 - m0);
            s[n][2] = exp2f(s[n][2] * sl2 - m1);
            s[n][3] = exp2f(s[n][3] * sl2 - m1);
            l0 += s[n][0] + s[n][1];   // this thread's columns; the row's 4 threads are summed at the end
            l1 += s[n][2] + s[n][3];
        }
        uint32_t pf[4][4];
        mma_acc_to_a<4>(pf, s);
        fa_mm<false>(o, pf, Vb);   // O += P V
        if (kt < qt) cp_async_wait<0>();
        __syncthreads();
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
#pragma unroll
    for (int n = 0; n < 8; n++) {
        const int col = h * FA + n * 8 + 2 * tq;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int r = half ? r1 : r0;
            if (r >= T) continue;
            const float inv = half ? i1 : i0;
            const float v0 = o[n][2 * half] * inv, v1 = o[n][2 * half + 1] * inv;
            const size_t k = ((size_t)b * T + r) * C + col;
            *(float2 *)(out + k) = make_float2(v0, v1);
            if (outb) *(__nv_bfloat162 *)(outb + k) = __floats2bfloat162_rn(v0, v1);
        }
    }
    if (tq == 0) {
        const float LN2 = 0.6931471805599453f;
        if (r0 < T) lse[(size_t)bh * T + r0] = (m0 + log2f(l0)) * LN2;
        if (r1 < T) lse[(size_t)bh * T + r1] = (m1 + log2f(l1)) * LN2;
    }
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

// Rows q0.. of a query tile's log-sum-exps (log2 units; +inf past T: probability 0) and D.
__device__ __forceinline__ void fa_load_rows(float *ls, float *ds, const float *lse, const float *Dr, int q0, int T) {
    if (threadIdx.x < FA) {
        int q = q0 + threadIdx.x;
        ls[threadIdx.x] = q < T ? lse[q] * FA_LOG2E : INFINITY;
        ds[threadIdx.x] = q < T ? Dr[q] : 0.0f;
    }
}

// grid (key tiles, first = most query tiles; B*NH): a warp owns 16 keys of the block's 64 and
// accumulates their dK, dV in registers over the query tiles at or after the key tile; dQ of
// each query tile goes through shared memory (dS) and float2 atomics (dqkv's q part zeroed before).
// gb: dK and dV go to dqkv's bf16 copy (rows ldg apart) instead of dqkv.
__global__ void __launch_bounds__(FA_THREADS) flash_bwd_kernel(float *dqkv, __nv_bfloat16 *gb, int ldg,
                                                               const __nv_bfloat16 *qkv,
                                                               const __nv_bfloat16 *dout, const float *lse,
                                                               const float *Dr, int T, int C, int NH, float sc) {
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)fa_smem, *Vs = Ks + FA_TILE, *Qs = Vs + FA_TILE, *dOs = Qs + 2 * FA_TILE,
                  *dSs = dOs + 2 * FA_TILE;
    float *ls = (float *)(dSs + FA_TILE), *ds = ls + 2 * FA;
    const int nT = (T + FA - 1) / FA, kt = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH, k0 = kt * FA;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t C3 = 3 * (size_t)C;
    const float sl2 = sc * FA_LOG2E;
    const __nv_bfloat16 *base = qkv + (size_t)b * T * C3 + h * FA, *dob = dout + (size_t)b * T * C + h * FA;
    const float *lse_bh = lse + (size_t)bh * T, *D_bh = Dr + (size_t)bh * T;
    fa_tile_async(Ks, base + C, k0, T, C3);
    fa_tile_async(Vs, base + 2 * C, k0, T, C3);
    fa_tile_async(Qs, base, k0, T, C3);
    fa_tile_async(dOs, dob, k0, T, C);
    fa_load_rows(ls, ds, lse_bh, D_bh, k0, T);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float dk[8][4], dv[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++) dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.0f;
    const int key0 = k0 + w * 16 + g, key1 = key0 + 8;
    for (int qt = kt; qt < nT; qt++) {
        const int q0 = qt * FA, buf = (qt - kt) & 1;
        const __nv_bfloat16 *Qb = Qs + buf * FA_TILE, *dOb = dOs + buf * FA_TILE;
        const float *lsb = ls + buf * FA, *dsb = ds + buf * FA;
        if (qt + 1 < nT) {
            fa_tile_async(Qs + (buf ^ 1) * FA_TILE, base, q0 + FA, T, C3);
            fa_tile_async(dOs + (buf ^ 1) * FA_TILE, dob, q0 + FA, T, C);
            fa_load_rows(ls + (buf ^ 1) * FA, ds + (buf ^ 1) * FA, lse_bh, D_bh, q0 + FA, T);
            cp_async_commit();
        }
        float st[8][4], dp[8][4];   // S^T = K Q^T and dP^T = V dO^T for the warp's 16 keys
#pragma unroll
        for (int n = 0; n < 8; n++) st[n][0] = st[n][1] = st[n][2] = st[n][3] = dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.0f;
        {
            uint32_t af[4][4];
            fa_load_a(af, Ks, w * 16);
            fa_mm<true>(st, af, Qb);
            fa_load_a(af, Vs, w * 16);
            fa_mm<true>(dp, af, dOb);
        }
        // P^T = exp(sc S^T - lse) (causal), dS^T = P^T (dP^T - D)
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int qc = n * 8 + 2 * tq + (e & 1);
                float p = exp2f(st[n][e] * sl2 - lsb[qc]);
                if (qt == kt && (e < 2 ? key0 : key1) > q0 + qc) p = 0.0f;
                st[n][e] = p;
                dp[n][e] = p * (dp[n][e] - dsb[qc]);
            }
        {
            uint32_t af[4][4];
            mma_acc_to_a<4>(af, st);
            fa_mm<false>(dv, af, dOb);   // dV += P^T dO
            mma_acc_to_a<4>(af, dp);
            fa_mm<false>(dk, af, Qb);    // dK += dS^T Q
        }
#pragma unroll
        for (int n = 0; n < 8; n++) {
            *(uint32_t *)(dSs + (w * 16 + g) * FA_LDB + n * 8 + 2 * tq) = mma_pack(dp[n][0], dp[n][1]);
            *(uint32_t *)(dSs + (w * 16 + g + 8) * FA_LDB + n * 8 + 2 * tq) = mma_pack(dp[n][2], dp[n][3]);
        }
        __syncthreads();
        // dQ[the warp's 16 queries] = sc dS K: A = dS (query rows) from dS^T in smem (transposed loads)
        float dq[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;
        {
            uint32_t af[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++) mma_ldsm_t(af[kk], frag_a_t(dSs, FA_LDB, kk * 16, w * 16));
            fa_mm<false>(dq, af, Ks);
        }
        const int qr0 = q0 + w * 16 + g, qr1 = qr0 + 8;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            const int col = h * FA + n * 8 + 2 * tq;
            if (qr0 < T) fa_atomic_add2(dqkv + ((size_t)b * T + qr0) * C3 + col, sc * dq[n][0], sc * dq[n][1]);
            if (qr1 < T) fa_atomic_add2(dqkv + ((size_t)b * T + qr1) * C3 + col, sc * dq[n][2], sc * dq[n][3]);
        }
        if (qt + 1 < nT) cp_async_wait<0>();
        __syncthreads();
    }
    if (gb) {
#pragma unroll
        for (int n = 0; n < 8; n++) {
            const int col = h * FA + n * 8 + 2 * tq;
            if (key0 < T) {
                __nv_bfloat16 *p = gb + ((size_t)b * T + key0) * ldg + col;
                *(uint32_t *)(p + C) = mma_pack(sc * dk[n][0], sc * dk[n][1]);
                *(uint32_t *)(p + 2 * (size_t)C) = mma_pack(dv[n][0], dv[n][1]);
            }
            if (key1 < T) {
                __nv_bfloat16 *p = gb + ((size_t)b * T + key1) * ldg + col;
                *(uint32_t *)(p + C) = mma_pack(sc * dk[n][2], sc * dk[n][3]);
                *(uint32_t *)(p + 2 * (size_t)C) = mma_pack(dv[n][2], dv[n][3]);
            }
        }
        return;
    }
#pragma unroll
    for (int n = 0; n < 8; n++) {
        const int col = h * FA + n * 8 + 2 * tq;
        if (key0 < T) {
            float *p = dqkv + ((size_t)b * T + key0) * C3 + col;
            *(float2 *)(p + C) = make_float2(sc * dk[n][0], sc * dk[n][1]);
            *(float2 *)(p + 2 * (size_t)C) = make_float2(dv[n][0], dv[n][1]);
        }
        if (key1 < T) {
            float *p = dqkv + ((size_t)b * T + key1) * C3 + col;
            *(float2 *)(p + C) = make_float2(sc * dk[n][2], sc * dk[n][3]);
            *(float2 *)(p + 2 * (size_t)C) = make_float2(dv[n][2], dv[n][3]);
        }
    }
}

static const size_t FA_FWD_SMEM = 5 * FA_TILE * sizeof(__nv_bfloat16);
static const size_t FA_BWD_SMEM = 7 * FA_TILE * sizeof(__nv_bfloat16) + 4 * FA * sizeof(float);

static void flash_setup(void) {
    static int done;
    if (done) return;
    CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)FA_FWD_SMEM));
    CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)FA_BWD_SMEM));
    done = 1;
}

static void flash_fwd(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH) {
    flash_setup();
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)qkv, (size_t)B * T * 3 * C);
    __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)out, (size_t)B * T * C);
    dim3 grid((T + FA - 1) / FA, B * NH);
    flash_fwd_kernel<<<grid, FA_THREADS, FA_FWD_SMEM, STREAM(be)>>>((float *)out, ob, (float *)att, qb, T, C, NH,
                                                                    (float)(1.0 / sqrt((double)FA)));
    CUDA_LAUNCH_CHECK();
}

// dst[p*ldd + j] = bf16(src[p*lds + j]), j < cols (two at a time: cols, lds, ldd even)
__global__ void q_cols_to_bf16_kernel(__nv_bfloat16 *dst, int ldd, const float *src, int lds, int rows, int cols) {
    const size_t n = (size_t)rows * (cols / 2);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t p = i / (cols / 2), j = 2 * (i % (cols / 2));
        float2 v = *(const float2 *)(src + p * lds + j);
        *(__nv_bfloat162 *)(dst + p * ldd + j) = __floats2bfloat162_rn(v.x, v.y);
    }
}

static void flash_bwd(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv, const void *out,
                      const void *att, int B, int T, int C, int NH) {
    flash_setup();
    int rows = B * NH * T;
    float *D = (float *)scratch;
    flash_bwd_dot_kernel<<<(rows + 7) / 8, 256, 0, STREAM(be)>>>(D, (const float *)dout, (const float *)out, B, T, C,
                                                                NH);
    CUDA_LAUNCH_CHECK();
    // dq accumulates by atomics: zero the q columns (dk, dv are written whole)
    CUDA_CHECK(cudaMemset2DAsync(dqkv, (size_t)3 * C * sizeof(float), 0, (size_t)C * sizeof(float), (size_t)B * T,
                                 STREAM(be)));
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)qkv, (size_t)B * T * 3 * C);
    const __nv_bfloat16 *db = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)dout, (size_t)B * T * C);
    // bf16: dqkv is read only by the qkv linear's backward GEMMs, which read its bf16 copy: dK and dV
    // are written there directly, dQ (accumulated in fp32) converted after, and the copy is dqkv's
    // only form (rows with room for the adapter's du columns, as xent_kl's gradient)
    const int ldg = (3 * C + CU_ROWS_SPARE + 7) & ~7;
    __nv_bfloat16 *gb = CTX(be)->sole_off ? NULL
                                          : (__nv_bfloat16 *)cu_bf16_slot_padded(be, (const float *)dqkv, B * T,
                                                                                 3 * C, ldg);
    dim3 grid((T + FA - 1) / FA, B * NH);
    flash_bwd_kernel<<<grid, FA_THREADS, FA_BWD_SMEM, STREAM(be)>>>((float *)dqkv, gb, ldg, qb, db, (const float *)att,
                                                                    D, T, C, NH, (float)(1.0 / sqrt((double)FA)));
    CUDA_LAUNCH_CHECK();
    if (gb) {
        size_t n = (size_t)B * T * (C / 2);
        q_cols_to_bf16_kernel<<<grid_for(n, 256), 256, 0, STREAM(be)>>>(gb, ldg, (const float *)dqkv, 3 * C, B * T, C);
        CUDA_LAUNCH_CHECK();
        cu_bf16_sole(be, (const float *)dqkv);
    }
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
