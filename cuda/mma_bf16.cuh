// Tensor-core building blocks for the hand-written bf16 kernels (sm_80+): ldmatrix, mma.sync
// m16n8k16 (bf16 operands, fp32 accumulation), cp.async, and the fragment addresses of 16 x 16
// blocks in padded shared-memory tiles (rows `ld` bf16 apart; ld*2 a multiple of 16 bytes, and
// not of 128, so the 8 rows of an 8x8 matrix fall in distinct banks).
// Accumulator layout of a 16 x 8 tile, lane = 4 g + t: c[0..1] = row g, columns 2t, 2t+1;
// c[2..3] = row g + 8. That is the A-operand layout of the next product (mma_acc_to_a).
// With SWQ_WARP_SIM defined (a C++ host build), the primitives are cuda/tools/warp_sim.h's CPU
// stand-ins and the rest of this file is unchanged.
#ifndef SWQ_MMA_BF16_CUH
#define SWQ_MMA_BF16_CUH
#include <stdint.h>
#include "cuda/device_common.cuh"
#ifndef SWQ_WARP_SIM
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
// four 8x8 matrices; lanes 8i..8i+7 give the row addresses of matrix i
__device__ __forceinline__ void mma_ldsm(uint32_t r[4], const __nv_bfloat16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void mma_ldsm_t(uint32_t r[4], const __nv_bfloat16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
// c[16x8] += a[16x16] b[16x8]
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 16 bytes global -> shared, asynchronously; zero-filled when !valid (src is then not read)
__device__ __forceinline__ void cp_async16(__nv_bfloat16 *dst, const __nv_bfloat16 *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
#endif

// ldmatrix.x4 row addresses for a 16 x 16 block:
//  frag_a:      A operand, stored [m][k] (row-major), block at (m0, k0)            -> mma_ldsm
//  frag_b_rows: B operands of two n8 tiles, stored [n][k] (D = A X^T), at (n0, k0)  -> mma_ldsm
//               regs 0,1: n0..n0+7; regs 2,3: n0+8..n0+15
//  frag_b_cols: B operands of two n8 tiles, stored [k][n] (D = A X), at (k0, n0)    -> mma_ldsm_t
//  frag_a_t:    A operand stored transposed, [k][m], at (k0, m0)                    -> mma_ldsm_t
__device__ __forceinline__ const __nv_bfloat16 *frag_a(const __nv_bfloat16 *t, int ld, int m0, int k0) {
    int lane = threadIdx.x & 31;
    return t + (m0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + k0 + (lane >> 4) * 8;
}
__device__ __forceinline__ const __nv_bfloat16 *frag_b_rows(const __nv_bfloat16 *t, int ld, int n0, int k0) {
    int lane = threadIdx.x & 31;
    return t + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8;
}
__device__ __forceinline__ const __nv_bfloat16 *frag_b_cols(const __nv_bfloat16 *t, int ld, int k0, int n0) {
    int lane = threadIdx.x & 31;
    return t + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
}
__device__ __forceinline__ const __nv_bfloat16 *frag_a_t(const __nv_bfloat16 *t, int ld, int k0, int m0) {
    int lane = threadIdx.x & 31;
    return t + (k0 + (lane & 7) + (lane >> 4) * 8) * ld + m0 + ((lane >> 3) & 1) * 8;
}

// The cp.async ring of the mma kernels: chunks 0 .. nch-1 through STAGES shared-memory stages.
// load(ch, st) issues chunk ch's copies into stage st and commits them (also past the end, so the
// group count stays uniform); body(ch, st) runs once chunk ch is in, every thread of the block past
// the barrier, so each stage is reloaded only after all warps are done with it.
template <int STAGES, typename L, typename F>
__device__ __forceinline__ void cp_ring(int nch, L load, F body) {
#pragma unroll
    for (int st = 0; st < STAGES - 1; st++) load(st, st);
    for (int ch = 0; ch < nch; ch++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();   // chunk ch is in; every warp is done with the stage loaded next
        load(ch + STAGES - 1, (ch + STAGES - 1) % STAGES);
        body(ch, ch % STAGES);
    }
}

// Accumulators of a 16 x (16 KS) tile as bf16 A fragments (its columns become the k index).
template <int KS>
__device__ __forceinline__ void mma_acc_to_a(uint32_t a[KS][4], const float c[2 * KS][4]) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        a[kk][0] = pack_bf16x2(c[2 * kk][0], c[2 * kk][1]);
        a[kk][1] = pack_bf16x2(c[2 * kk][2], c[2 * kk][3]);
        a[kk][2] = pack_bf16x2(c[2 * kk + 1][0], c[2 * kk + 1][1]);
        a[kk][3] = pack_bf16x2(c[2 * kk + 1][2], c[2 * kk + 1][3]);
    }
}
#endif
