// Hopper (sm_90a) building blocks for the hand-written kernels that use the TMA and wgmma:
// mbarriers, 2-D tensor-map loads into shared memory, shared-memory matrix descriptors (128-byte
// swizzle, as the TMA writes them) and warpgroup matrix products (bf16 operands, fp32
// accumulation). Device code only. The bodies exist only in an sm_90a compile (WG_HAVE_WGMMA);
// elsewhere the kernels that use them are empty, and the host asks wgmma_available_kernel
// before launching any (cu_wgmma_ready).
#ifndef SWQ_WGMMA_CUH
#define SWQ_WGMMA_CUH
#include <cuda.h>
#include <stdint.h>
#include "cuda/device_common.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WG_HAVE_WGMMA 1
#endif

// *ok = 1 where this compile has the wgmma kernels' bodies for the running GPU
__global__ void wgmma_available_kernel(int *ok) {
#ifdef WG_HAVE_WGMMA
    *ok = 1;
#else
    *ok = 0;
#endif
}

#ifdef WG_HAVE_WGMMA
__device__ __forceinline__ uint32_t wg_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *b, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(wg_smem(b)), "r"(count));
}
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(wg_smem(b)), "r"(bytes));
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(wg_smem(b)));
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, int parity) {
    asm volatile("{\n.reg .pred p;\nWAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra WAIT_%=;\n}\n" ::"r"(wg_smem(b)),
                 "r"(parity));
}
// the box at (c0 inner, c1 outer) of tensor map tm into dst, completing on bar
__device__ __forceinline__ void tma_load_2d(void *dst, const CUtensorMap *tm, int c0, int c1, uint64_t *bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            wg_smem(dst)),
        "l"((uint64_t)tm), "r"(c0), "r"(c1), "r"(wg_smem(bar))
        : "memory");
}
// A tile with 128-byte rows, 128-byte swizzle (1024-byte aligned): K-major operands step 16
// elements of k by 32 bytes of start address (lbo unused, sbo 1024: 8 rows); an MN-major one
// steps 16 rows of k by 16 rows of the tile (lbo: between 64-wide column blocks, sbo 1024).
__device__ __forceinline__ uint64_t wg_desc(const void *p, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((wg_smem(p) & 0x3FFFF) >> 4) | (uint64_t)(lbo >> 4) << 16 | (uint64_t)(sbo >> 4) << 32 |
           1ull << 62;
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// The 32 accumulator registers of an m64n64 product: operands %0..%31 of the asm below.
#define WG_ACC32_REGS                                                                                                \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29," \
    "%30,%31}"
#define WG_ACC32_OUT(d)                                                                                              \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),      \
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),       \
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),      \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])

// d[64 x 64] (+)= A B: A and B from shared memory (descriptors; TB: B MN-major); acc 0: d = A B.
// Accumulator layout of warp w of the warpgroup, lane = 4 g + t: d[4 j + e] = row 16 w + g
// (+ 8 for e >= 2), column 8 j + 2 t + (e & 1), as mma.sync's m16n8 tiles side by side.
template <int TB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], uint64_t da, uint64_t db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_ACC32_REGS ", %32, %33, p, 1, 1, 0, %35;\n}\n"
                 : WG_ACC32_OUT(d)
                 : "l"(da), "l"(db), "r"(acc), "n"(TB));
}
// d[64 x 64] (+)= A B with A from registers: warp w's rows 16 w.., in mma.sync's m16n8k16
// A-fragment layout (mma_acc_to_a); B from shared memory (TB: MN-major).
template <int TB>
__device__ __forceinline__ void wgmma_m64n64k16_ra(float (&d)[32], const uint32_t (&a)[4], uint64_t db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_ACC32_REGS
                 ", {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
                 : WG_ACC32_OUT(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc), "n"(TB));
}
#endif
#endif
