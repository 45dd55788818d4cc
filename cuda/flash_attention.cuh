// Flash attention's kernels (bf16, 64-wide heads), after FlashAttention-2. Device code only, so
// that tests/test_flash_sim.cpp can also run them on the CPU through cuda/tools/warp_sim.h.
#ifndef SWQ_FLASH_ATTENTION_CUH
#define SWQ_FLASH_ATTENTION_CUH
#include "cuda/mma_bf16.cuh"

// FlashAttention-2's layout on mma.sync (m16n8k16, bf16 operands, fp32 accumulation): each warp
// owns 16-row slices (forward: queries, 64 MT of them a block of 4 warps; backward: keys, 16 NW a
// block of NW warps) and keeps its scores, probabilities and accumulators in registers; shared
// memory holds only operand tiles (rows of 64 bf16, padded to 72 so ldmatrix is free of bank
// conflicts), loaded with cp.async one tile ahead. The S tile's accumulator layout is the next
// mma's A-operand layout, so P never leaves registers. Scores are taken in the log2 domain (exp2).
#define FA 64                 // head size; key tile (forward), query tile (backward)
#define FA_THREADS 128        // the forward's 4 warps
#define FA_LDB (FA + 8)       // padded smem rows (bf16 elements)
#define FA_TILE (FA * FA_LDB)
#define FA_LOG2E 1.4426950408889634f

// Dynamic shared memory of a forward block of 64 MT query rows (Q, K and V twice) and of a
// backward block of 16 NW keys (K, V, dS^T; Q and dO twice; log-sum-exps and D twice).
static inline size_t fa_fwd_smem(int MT) { return (MT + 4) * FA_TILE * sizeof(__nv_bfloat16); }
static inline size_t fa_bwd_smem(int NW) {
    return (3 * (16 * NW / FA) + 4) * FA_TILE * sizeof(__nv_bfloat16) + 4 * FA * sizeof(float);
}

// ROWS rows x 64 bf16 of a head from rows r0.. (stride ld elements) into smem by NT threads,
// asynchronously; rows >= T are zero-filled.
template <int ROWS, int NT>
__device__ __forceinline__ void fa_tile_async(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int r0, int T, size_t ld) {
#pragma unroll
    for (int i = threadIdx.x; i < ROWS * FA / 8; i += NT) {
        int r = i >> 3, c = (i & 7) * 8;
        bool ok = r0 + r < T;
        cp_async16(dst + r * FA_LDB + c, src + (size_t)(ok ? r0 + r : 0) * ld + c, ok);
    }
}

// acc[m][8][4] (MT m-tiles of 16 rows x 64) += A-fragments a[m][4] (16 x 64, four k16 steps) times
// X^T (X: 64 rows of the tile, row-major: D = A X^T) or X (D = A X). Each B fragment loaded from
// shared memory feeds the m-tiles m_lo.. (warp-uniform; the ones before are left as they are).
template <bool TRANS, int MT>
__device__ __forceinline__ void fa_mm(float acc[MT][8][4], const uint32_t a[MT][4][4], const __nv_bfloat16 *X,
                                      int m_lo = 0) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t bf[4];
            if (TRANS) mma_ldsm(bf, frag_b_rows(X, FA_LDB, j * 16, kk * 16));
            else mma_ldsm_t(bf, frag_b_cols(X, FA_LDB, kk * 16, j * 16));
#pragma unroll
            for (int m = 0; m < MT; m++) {
                if (m < m_lo) continue;
                mma_16816(acc[m][2 * j], a[m][kk], bf[0], bf[1]);
                mma_16816(acc[m][2 * j + 1], a[m][kk], bf[2], bf[3]);
            }
        }
}

// A fragments of a warp's 16 rows x 64 columns from a tile in smem.
__device__ __forceinline__ void fa_load_a(uint32_t a[4][4], const __nv_bfloat16 *t, int row0) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) mma_ldsm(a[kk], frag_a(t, FA_LDB, row0, kk * 16));
}

// A key tile's online-softmax step for a warp's 16 rows (the thread's rows g and g + 8): s, the
// scores (log2 domain after sl2 = scale log2 e), becomes the probabilities; m and l, the rows'
// maxima and sums, move on to this tile; o, the output's accumulators, is rescaled to the new maxima.
__device__ __forceinline__ void fa_softmax_step(float s[8][4], float o[8][4], float m[2], float l[2], float sl2) {
    float x0 = m[0], x1 = m[1];   // new maxima, log2 units (finite: key 0 <= row)
#pragma unroll
    for (int n = 0; n < 8; n++) {
        x0 = fmaxf(x0, fmaxf(s[n][0], s[n][1]) * sl2);
        x1 = fmaxf(x1, fmaxf(s[n][2], s[n][3]) * sl2);
    }
    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1));
    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1));
    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
    const float a0 = exp2f(m[0] - x0), a1 = exp2f(m[1] - x1);
    m[0] = x0;
    m[1] = x1;
    l[0] *= a0;
    l[1] *= a1;
#pragma unroll
    for (int n = 0; n < 8; n++) {
        o[n][0] *= a0;
        o[n][1] *= a0;
        o[n][2] *= a1;
        o[n][3] *= a1;
        s[n][0] = exp2f(s[n][0] * sl2 - x0);
        s[n][1] = exp2f(s[n][1] * sl2 - x0);
        s[n][2] = exp2f(s[n][2] * sl2 - x1);
        s[n][3] = exp2f(s[n][3] * sl2 - x1);
        l[0] += s[n][0] + s[n][1];   // this thread's columns; the row's 4 threads summed at the end
        l[1] += s[n][2] + s[n][3];
    }
}

// A warp's 16 finished rows r0, r0 + 8 (those below T) of head h: O / l into out (floats) and
// outb (bf16), either may be NULL, at columns h FA + 8 n + 2 (lane % 4) of batch b's rows C apart;
// their log-sum-exps (natural log) into lse_bh [T].
__device__ __forceinline__ void fa_fwd_rows_out(const float o[8][4], const float m[2], const float l[2], float *out,
                                                __nv_bfloat16 *outb, float *lse_bh, int b, int h, int T, int C,
                                                int r0) {
    const int tq = threadIdx.x & 3;
    float l0 = l[0], l1 = l[1];
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
            const int r = r0 + 8 * half;
            if (r >= T) continue;
            const float inv = half ? i1 : i0;
            const float v0 = o[n][2 * half] * inv, v1 = o[n][2 * half + 1] * inv;
            const size_t k = ((size_t)b * T + r) * C + col;
            if (out) *(float2 *)(out + k) = make_float2(v0, v1);
            if (outb) *(__nv_bfloat162 *)(outb + k) = __floats2bfloat162_rn(v0, v1);
        }
    }
    if (tq == 0) {
        const float LN2 = 0.6931471805599453f;
        if (r0 < T) lse_bh[r0] = (m[0] + log2f(l0)) * LN2;
        if (r0 + 8 < T) lse_bh[r0 + 8] = (m[1] + log2f(l1)) * LN2;
    }
}

// grid (query tiles of 64 MT rows, last first: the causal work is largest there; B*NH).
// out/outb [B,T,C] (either may be NULL); lse [B*NH, T] (natural log). Warp w owns rows 64 m + 16 w .. +15 of the tile
// (m < MT), so the B fragments of K and V are loaded once for MT m-tiles. Thread (lane) holds rows
// g = lane/4 and g + 8 of each m-tile, columns 2*(lane%4) + {0,1} of each n8 tile.
template <int MT>
__global__ void __launch_bounds__(FA_THREADS) flash_fwd_kernel(float *out, __nv_bfloat16 *outb, float *lse,
                                                               const __nv_bfloat16 *qkv, int T, int C, int NH,
                                                               float sc) {
    SWQ_DYNAMIC_SMEM(fa_smem);
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)fa_smem, *Ks = Qs + MT * FA_TILE, *Vs = Ks + 2 * FA_TILE;
    const int QT = MT * FA, nQ = (T + QT - 1) / QT, qt = nQ - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int q0 = qt * QT, w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int nK = min((q0 + QT + FA - 1) / FA, (T + FA - 1) / FA);   // key tiles at or before the last row
    const size_t C3 = 3 * (size_t)C;
    const float sl2 = sc * FA_LOG2E;
    const __nv_bfloat16 *base = qkv + (size_t)b * T * C3 + h * FA;
    fa_tile_async<MT * FA, FA_THREADS>(Qs, base, q0, T, C3);
    fa_tile_async<FA, FA_THREADS>(Ks, base + C, 0, T, C3);
    fa_tile_async<FA, FA_THREADS>(Vs, base + 2 * C, 0, T, C3);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[MT][4][4];
    float o[MT][8][4], m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        fa_load_a(qf[mt], Qs, mt * FA + w * 16);
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
        for (int n = 0; n < 8; n++) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
    }
    const int r0 = q0 + w * 16 + g;   // m-tile mt's rows: r0 + 64 mt and r0 + 64 mt + 8
    for (int kt = 0; kt < nK; kt++) {
        const __nv_bfloat16 *Kb = Ks + (kt & 1) * FA_TILE, *Vb = Vs + (kt & 1) * FA_TILE;
        if (kt + 1 < nK) {   // the next tile's K, V into the other buffers (read last iteration, synced since)
            fa_tile_async<FA, FA_THREADS>(Ks + ((kt + 1) & 1) * FA_TILE, base + C, (kt + 1) * FA, T, C3);
            fa_tile_async<FA, FA_THREADS>(Vs + ((kt + 1) & 1) * FA_TILE, base + 2 * C, (kt + 1) * FA, T, C3);
            cp_async_commit();
        }
        float s[MT][8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int n = 0; n < 8; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
        const int m_lo = MT > 1 && kt * FA >= q0 + FA;   // the first 64 rows all before this tile: skipped
        fa_mm<true, MT>(s, qf, Kb, m_lo);     // S = Q K^T
        if ((kt + 1) * FA > q0)       // tiles reaching past the block's first row: causal mask
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int n = 0; n < 8; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (kt * FA + n * 8 + 2 * tq + (e & 1) > r0 + mt * FA + (e < 2 ? 0 : 8)) s[mt][n][e] = -INFINITY;
        uint32_t pf[MT][4][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            if (mt < m_lo) continue;
            fa_softmax_step(s[mt], o[mt], m[mt], l[mt], sl2);
            mma_acc_to_a<4>(pf[mt], s[mt]);
        }
        fa_mm<false, MT>(o, pf, Vb, m_lo);   // O += P V
        if (kt + 1 < nK) cp_async_wait<0>();
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) fa_fwd_rows_out(o[mt], m[mt], l[mt], out, outb, lse + (size_t)bh * T, b, h, T, C, r0 + mt * FA);
}

// Rows q0.. of a query tile's log-sum-exps (log2 units; +inf past T: probability 0) and D.
__device__ __forceinline__ void fa_load_rows(float *ls, float *ds, const float *lse, const float *Dr, int q0, int T) {
    if (threadIdx.x < FA) {
        int q = q0 + threadIdx.x;
        ls[threadIdx.x] = q < T ? lse[q] * FA_LOG2E : INFINITY;
        ds[threadIdx.x] = q < T ? Dr[q] : 0.0f;
    }
}

// Two consecutive values at p, as floats or as a bf16 pair.
__device__ __forceinline__ void fa_store2(float *p, float x, float y) { *(float2 *)p = make_float2(x, y); }
__device__ __forceinline__ void fa_store2(__nv_bfloat16 *p, float x, float y) { *(uint32_t *)p = pack_bf16x2(x, y); }

// A backward warp's dK (scaled by sc) and dV of keys key0 and key0 + 8 into the k and v parts of
// rows ld elements apart (dqkv's floats, or its bf16 copy), columns col + 8 n of each n8 tile.
template <typename E>
__device__ __forceinline__ void fa_store_dkdv(E *dst, size_t ld, const float dk[1][8][4], const float dv[1][8][4],
                                              float sc, int b, int T, int C, int key0, int col) {
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int key = key0 + 8 * half;
            if (key >= T) continue;
            E *p = dst + ((size_t)b * T + key) * ld + col + n * 8;
            fa_store2(p + C, sc * dk[0][n][2 * half], sc * dk[0][n][2 * half + 1]);
            fa_store2(p + 2 * (size_t)C, dv[0][n][2 * half], dv[0][n][2 * half + 1]);
        }
}

// grid (key blocks of 16 NW keys, first = most query tiles; B*NH): warp w owns keys 16 w .. +15 of
// the block and accumulates their dK, dV in registers over the query tiles (64 rows) at or after
// the block's first key. dQ of each query tile goes through shared memory (dS^T) and float4
// atomics (dqkv's q part zeroed before): warp w takes its rows 16 (w % 4) .. +15, columns
// (w / 4) 64 / (NW / 4) .. of the tile, summed over the block's keys.
// gb: dK and dV go to dqkv's bf16 copy (rows ldg apart) instead of dqkv.
template <int NW>
__global__ void __launch_bounds__(32 * NW) flash_bwd_kernel(float *dqkv, __nv_bfloat16 *gb, int ldg,
                                                            const __nv_bfloat16 *qkv, const __nv_bfloat16 *dout,
                                                            const float *lse, const float *Dr, int T, int C, int NH,
                                                            float sc) {
    constexpr int NT = 32 * NW, KB = 16 * NW, DN = 8 / (NW / 4);   // threads, keys, dQ n8 tiles a warp
    SWQ_DYNAMIC_SMEM(fa_smem);
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)fa_smem, *Vs = Ks + (KB / FA) * FA_TILE, *Qs = Vs + (KB / FA) * FA_TILE,
                  *dOs = Qs + 2 * FA_TILE, *dSs = dOs + 2 * FA_TILE;
    float *ls = (float *)(dSs + (KB / FA) * FA_TILE), *ds = ls + 2 * FA;
    const int nT = (T + FA - 1) / FA, k0 = blockIdx.x * KB, qs = k0 / FA, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const size_t C3 = 3 * (size_t)C;
    const float sl2 = sc * FA_LOG2E;
    const __nv_bfloat16 *base = qkv + (size_t)b * T * C3 + h * FA, *dob = dout + (size_t)b * T * C + h * FA;
    const float *lse_bh = lse + (size_t)bh * T, *D_bh = Dr + (size_t)bh * T;
    fa_tile_async<KB, NT>(Ks, base + C, k0, T, C3);
    fa_tile_async<KB, NT>(Vs, base + 2 * C, k0, T, C3);
    fa_tile_async<FA, NT>(Qs, base, k0, T, C3);
    fa_tile_async<FA, NT>(dOs, dob, k0, T, C);
    fa_load_rows(ls, ds, lse_bh, D_bh, k0, T);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float dk[1][8][4], dv[1][8][4];
#pragma unroll
    for (int n = 0; n < 8; n++)
        dk[0][n][0] = dk[0][n][1] = dk[0][n][2] = dk[0][n][3] = dv[0][n][0] = dv[0][n][1] = dv[0][n][2] = dv[0][n][3] = 0.0f;
    const int key0 = k0 + w * 16 + g, key1 = key0 + 8;
    // 64-key blocks (4 warps, 172 registers): the warp's K and V fragments stay in registers across
    // the query tiles; 128-key blocks (232 registers) load them again each tile
    constexpr bool KV_REGS = NW == 4;
    uint32_t kf[1][KV_REGS ? 4 : 1][4], vf[1][KV_REGS ? 4 : 1][4];
    if constexpr (KV_REGS) {
        fa_load_a(kf[0], Ks, w * 16);
        fa_load_a(vf[0], Vs, w * 16);
    }
    for (int qt = qs; qt < nT; qt++) {
        const int q0 = qt * FA, buf = (qt - qs) & 1;
        const __nv_bfloat16 *Qb = Qs + buf * FA_TILE, *dOb = dOs + buf * FA_TILE;
        const float *lsb = ls + buf * FA, *dsb = ds + buf * FA;
        if (qt + 1 < nT) {
            fa_tile_async<FA, NT>(Qs + (buf ^ 1) * FA_TILE, base, q0 + FA, T, C3);
            fa_tile_async<FA, NT>(dOs + (buf ^ 1) * FA_TILE, dob, q0 + FA, T, C);
            fa_load_rows(ls + (buf ^ 1) * FA, ds + (buf ^ 1) * FA, lse_bh, D_bh, q0 + FA, T);
            cp_async_commit();
        }
        if (k0 + w * 16 <= q0 + FA - 1) {   // some of the warp's keys are at or before the tile's last query
            float st[1][8][4], dp[1][8][4];   // S^T = K Q^T and dP^T = V dO^T for the warp's 16 keys
#pragma unroll
            for (int n = 0; n < 8; n++)
                st[0][n][0] = st[0][n][1] = st[0][n][2] = st[0][n][3] = dp[0][n][0] = dp[0][n][1] = dp[0][n][2] =
                    dp[0][n][3] = 0.0f;
            if constexpr (KV_REGS) {
                fa_mm<true, 1>(st, kf, Qb);
                fa_mm<true, 1>(dp, vf, dOb);
            } else {
                uint32_t af[1][4][4];
                fa_load_a(af[0], Ks, w * 16);
                fa_mm<true, 1>(st, af, Qb);
                fa_load_a(af[0], Vs, w * 16);
                fa_mm<true, 1>(dp, af, dOb);
            }
            // P^T = exp(sc S^T - lse) (causal), dS^T = P^T (dP^T - D)
            const bool diag = k0 + KB - 1 > q0;
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int qc = n * 8 + 2 * tq + (e & 1);
                    float p = exp2f(st[0][n][e] * sl2 - lsb[qc]);
                    if (diag && (e < 2 ? key0 : key1) > q0 + qc) p = 0.0f;
                    st[0][n][e] = p;
                    dp[0][n][e] = p * (dp[0][n][e] - dsb[qc]);
                }
            {
                uint32_t af[1][4][4];
                mma_acc_to_a<4>(af[0], st[0]);
                fa_mm<false, 1>(dv, af, dOb);   // dV += P^T dO
                mma_acc_to_a<4>(af[0], dp[0]);
                fa_mm<false, 1>(dk, af, Qb);   // dK += dS^T Q
            }
#pragma unroll
            for (int n = 0; n < 8; n++) {
                *(uint32_t *)(dSs + (w * 16 + g) * FA_LDB + n * 8 + 2 * tq) = pack_bf16x2(dp[0][n][0], dp[0][n][1]);
                *(uint32_t *)(dSs + (w * 16 + g + 8) * FA_LDB + n * 8 + 2 * tq) = pack_bf16x2(dp[0][n][2], dp[0][n][3]);
            }
        } else {   // all of the warp's keys are after the tile's queries: dS^T = 0
#pragma unroll
            for (int n = 0; n < 8; n++) {
                *(uint32_t *)(dSs + (w * 16 + g) * FA_LDB + n * 8 + 2 * tq) = 0u;
                *(uint32_t *)(dSs + (w * 16 + g + 8) * FA_LDB + n * 8 + 2 * tq) = 0u;
            }
        }
        __syncthreads();
        // dQ[16 queries x 8 DN columns] = sc dS K: A = dS (query rows) from dS^T in smem (transposed loads)
        const int qw = (w & 3) * 16, c0 = (w >> 2) * DN * 8;
        float dq[DN][4];
#pragma unroll
        for (int n = 0; n < DN; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KB / 16; kk++) {
            uint32_t af[4];
            mma_ldsm_t(af, frag_a_t(dSs, FA_LDB, kk * 16, qw));
#pragma unroll
            for (int j = 0; j < DN / 2; j++) {
                uint32_t bf[4];
                mma_ldsm_t(bf, frag_b_cols(Ks, FA_LDB, kk * 16, c0 + j * 16));
                mma_16816(dq[2 * j], af, bf[0], bf[1]);
                mma_16816(dq[2 * j + 1], af, bf[2], bf[3]);
            }
        }
        // lane pairs swap halves: the even lane adds row g's 4 columns, the odd lane row g + 8's
        const int odd = tq & 1, qr = q0 + qw + g + 8 * odd;
#pragma unroll
        for (int n = 0; n < DN; n++) {
            const float x0 = __shfl_xor_sync(0xffffffffu, odd ? dq[n][0] : dq[n][2], 1);
            const float x1 = __shfl_xor_sync(0xffffffffu, odd ? dq[n][1] : dq[n][3], 1);
            const float4 v = odd ? make_float4(sc * x0, sc * x1, sc * dq[n][2], sc * dq[n][3])
                                 : make_float4(sc * dq[n][0], sc * dq[n][1], sc * x0, sc * x1);
            if (qr < T) atomic_add_vec(dqkv + ((size_t)b * T + qr) * C3 + h * FA + c0 + n * 8 + 2 * (tq & 2), v);
        }
        if (qt + 1 < nT) cp_async_wait<0>();
        __syncthreads();
    }
    if (gb) fa_store_dkdv(gb, ldg, dk, dv, sc, b, T, C, key0, h * FA + 2 * tq);
    else fa_store_dkdv(dqkv, C3, dk, dv, sc, b, T, C, key0, h * FA + 2 * tq);
}

#endif
