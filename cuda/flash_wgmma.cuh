// Flash attention's forward on the Hopper's TMA and wgmma (bf16, 64-wide heads, causal): the
// same tiling and the same arithmetic in the same order as flash_fwd_kernel<1> (64-key tiles,
// scores and the online softmax in the log2 domain), so its outputs are those of that kernel bit
// for bit (cuda_ops_check --attention checks it on the GPU; the warp simulator cannot run the
// TMA or wgmma). Device code only, sm_90a (cuda/wgmma.cuh).
#ifndef SWQ_FLASH_WGMMA_CUH
#define SWQ_FLASH_WGMMA_CUH
#include "cuda/flash_attention.cuh"
#include "cuda/wgmma.cuh"

#define FW_BM 128       // query rows a block: two warpgroups of 64
#define FW_BN FA        // keys a tile
#define FW_STAGES 3     // K and V tiles in flight
#define FW_THREADS 256
// dynamic shared memory: Q, then K and V per stage (1024-byte aligned tiles), then the barriers
static inline size_t fw_smem_bytes() { return 1024 + (size_t)(FW_BM + 2 * FW_STAGES * FW_BN) * 64 * 2 + 8 * (1 + 2 * FW_STAGES); }

// grid (query tiles of 128 rows, last first: the causal work is largest there; B*NH). tq, tk:
// tensor maps of qkv's bf16 copy [B*T, 3C] with boxes of 64 columns x 128 rows (Q) and x 64 rows
// (K, V), 128-byte swizzle. Warpgroup c owns query rows 64 c.. of the tile; thread 0 also issues
// the loads: Q once, then K and V STAGES tiles ahead, a stage again once all 8 warps are done with
// it. out/outb [B,T,C] (either may be NULL); lse [B*NH, T] (natural log).
__global__ void __launch_bounds__(FW_THREADS, 2) flash_fwd_wgmma_kernel(const __grid_constant__ CUtensorMap tq,
                                                                        const __grid_constant__ CUtensorMap tk,
                                                                        float *out, __nv_bfloat16 *outb, float *lse,
                                                                        int T, int C, int NH, float sc) {
#ifdef WG_HAVE_WGMMA
    extern __shared__ uint8_t fw_raw[];
    uint8_t *base = (uint8_t *)(((uintptr_t)fw_raw + 1023) & ~(uintptr_t)1023);
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)base, *Ks = Qs + FW_BM * 64, *Vs = Ks + FW_STAGES * FW_BN * 64;
    uint64_t *qfull = (uint64_t *)(Vs + FW_STAGES * FW_BN * 64), *full = qfull + 1, *empty = full + FW_STAGES;
    const int nQ = (T + FW_BM - 1) / FW_BM, qt = nQ - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int q0 = qt * FW_BM, rb = b * T;
    const int nK = min((q0 + FW_BM + FW_BN - 1) / FW_BN, (T + FW_BN - 1) / FW_BN);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    auto load_kv = [&](int kt) {
        const int s = kt % FW_STAGES;
        mbar_expect_tx(&full[s], 2 * FW_BN * 64 * 2);
        tma_load_2d(Ks + s * FW_BN * 64, &tk, C + h * 64, rb + kt * FW_BN, &full[s]);
        tma_load_2d(Vs + s * FW_BN * 64, &tk, 2 * C + h * 64, rb + kt * FW_BN, &full[s]);
    };
    if (threadIdx.x == 0) {
        mbar_init(qfull, 1);
        for (int s = 0; s < FW_STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], 8);
        mbar_init_fence();
        mbar_expect_tx(qfull, FW_BM * 64 * 2);
        tma_load_2d(Qs, &tq, h * 64, rb + q0, qfull);
        for (int kt = 0; kt < FW_STAGES && kt < nK; kt++) load_kv(kt);
    }
    __syncthreads();
    const int wgc = warp / 4, w = warp % 4, g = lane / 4, tq4 = lane % 4;
    const float sl2 = sc * FA_LOG2E;
    const int r0 = q0 + wgc * 64 + w * 16 + g;   // the thread's rows r0 and r0 + 8
    float o[32], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};   // o: the [8][4] accumulator layout
#pragma unroll
    for (int i = 0; i < 32; i++) o[i] = 0.0f;
    mbar_wait(qfull, 0);
    const __nv_bfloat16 *qs = Qs + wgc * 64 * 64;
    for (int kt = 0; kt < nK; kt++) {
        const int s = kt % FW_STAGES;
        mbar_wait(&full[s], (kt / FW_STAGES) & 1);
        const __nv_bfloat16 *ks = Ks + s * FW_BN * 64, *vs = Vs + s * FW_BN * 64;
        float sv[32];   // S = Q K^T
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            wgmma_m64n64k16<0>(sv, wg_desc(qs + kk * 16, 16, 1024), wg_desc(ks + kk * 16, 16, 1024), kk > 0);
        wgmma_commit();
        wgmma_wait<0>();
        if (kt * FW_BN + FW_BN - 1 > q0 + wgc * 64)   // keys past some of these rows: causal mask
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (kt * FW_BN + 8 * j + 2 * tq4 + (e & 1) > r0 + (e >= 2 ? 8 : 0)) sv[4 * j + e] = -INFINITY;
        uint32_t pa[4][4];   // P as the A fragments of O += P V
        fa_softmax_step((float(*)[4])sv, (float(*)[4])o, m, l, sl2);
        mma_acc_to_a<4>(pa, (const float(*)[4])sv);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_m64n64k16_ra<1>(o, pa[kk], wg_desc(vs + kk * 16 * 64, 8192, 1024), 1);
        wgmma_commit();
        wgmma_wait<0>();
        if (lane == 0) mbar_arrive(&empty[s]);
        if (threadIdx.x == 0 && kt + FW_STAGES < nK) {
            mbar_wait(&empty[s], (kt / FW_STAGES) & 1);
            load_kv(kt + FW_STAGES);
        }
    }
    fa_fwd_rows_out((const float(*)[4])o, m, l, out, outb, lse + (size_t)bh * T, b, h, T, C, r0);
#endif
}
#endif
