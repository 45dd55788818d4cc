// The kernel of cuda/ops_lora_grads.cu (device code only, so that tests/test_lora_grads_sim.cpp can
// also run it on the CPU through cuda/tools/warp_sim.h).
#ifndef SWQ_LORA_GRADS_CUH
#define SWQ_LORA_GRADS_CUH
#include "cuda/mma_bf16.cuh"

#define LG_KC 64             // rows of the reduction per pipeline stage
#define LG_LD (LG_KC + 8)    // padded shared-memory rows (bf16)
#define LG_STAGES 3          // 43 KB of static shared memory at r = 32

// out[m, j] (TRANS: out[j, m]) += alpha * sum_t X[t, m] Y[t, j]; yf: Y's values also as floats
// [N, r] (written by the problem's first 64 m, from its tiles in shared memory), or NULL
struct lg_prob {
    float *out;
    const __nv_bfloat16 *X, *Y;
    int ldx, ldy, M, trans;
    float alpha;
    float *yf;
};

// 16-byte segment [col, col + 8) of row `src` into dst: cp.async when it lies below `lim`, element
// by element (zeros from lim on) when lim cuts it, zeros when it starts at or past lim or !row_ok.
__device__ __forceinline__ void lg_seg(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int col, int lim, bool row_ok) {
    if (row_ok && col + 8 <= lim) {
        cp_async16(dst, src + col, true);
        return;
    }
#pragma unroll
    for (int e = 0; e < 8; e++) dst[e] = (row_ok && col + e < lim) ? src[col + e] : __float2bfloat16_rn(0.0f);
}

// grid (mb0 + mb1 blocks of 64 m, N slices of rper rows); block 4 warps x 16 of the 64 m
template <int R>
__global__ void __launch_bounds__(128) lora_grads_kernel(lg_prob p0, lg_prob p1, int mb0, int N, int r, int rper,
                                                         int atomic) {
    __shared__ __align__(16) __nv_bfloat16 Xs[LG_STAGES][LG_KC * LG_LD], Ys[LG_STAGES][LG_KC * (R + 8)];
    const bool second = (int)blockIdx.x >= mb0;
    const lg_prob P = second ? p1 : p0;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int m0 = (second ? blockIdx.x - mb0 : blockIdx.x) * 64, tb = blockIdx.y * rper, te = min(N, tb + rper);
    const int nch = (te - tb + LG_KC - 1) / LG_KC;
    auto load = [&](int ch, int st) {
        if (ch < nch) {
            const int t0 = tb + ch * LG_KC;
            for (int i = threadIdx.x; i < LG_KC * 64 / 8; i += 128) {
                int tt = i >> 3, c = (i & 7) * 8;
                lg_seg(Xs[st] + tt * LG_LD + c, P.X + (size_t)(t0 + tt) * P.ldx, m0 + c, P.M, t0 + tt < te);
            }
            for (int i = threadIdx.x; i < LG_KC * R / 8; i += 128) {
                int tt = i / (R / 8), c = (i % (R / 8)) * 8;
                bool ok = t0 + tt < te && c < r;
                cp_async16(Ys[st] + tt * (R + 8) + c, P.Y + (size_t)(ok ? t0 + tt : 0) * P.ldy + (ok ? c : 0), ok);
            }
        }
        cp_async_commit();   // (empty past the end: the group count stays uniform)
    };
    float acc[R / 8][4];
#pragma unroll
    for (int n = 0; n < R / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    cp_ring<LG_STAGES>(nch, load, [&](int ch, int st) {
        const __nv_bfloat16 *xs = Xs[st], *ys = Ys[st];
        if (P.yf && m0 == 0) {
            const int t0 = tb + ch * LG_KC;
            for (int i = threadIdx.x; i < LG_KC * R; i += 128) {
                const int tt = i / R, j = i % R;
                if (j < r && t0 + tt < te) P.yf[(size_t)(t0 + tt) * r + j] = __bfloat162float(ys[tt * (R + 8) + j]);
            }
        }
#pragma unroll
        for (int kk = 0; kk < LG_KC / 16; kk++) {
            uint32_t a[4];
            mma_ldsm_t(a, frag_a_t(xs, LG_LD, kk * 16, w * 16));
#pragma unroll
            for (int jp = 0; jp < R / 16; jp++) {
                uint32_t b[4];
                mma_ldsm_t(b, frag_b_cols(ys, R + 8, kk * 16, jp * 16));
                mma_16816(acc[2 * jp], a, b[0], b[1]);
                mma_16816(acc[2 * jp + 1], a, b[2], b[3]);
            }
        }
    });
#pragma unroll
    for (int n = 0; n < R / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int m = m0 + w * 16 + g + (e >= 2 ? 8 : 0), j = n * 8 + 2 * tq + (e & 1);
            if (m >= P.M || j >= r) continue;
            float *o = P.out + (P.trans ? (size_t)j * P.M + m : (size_t)m * r + j);
            if (atomic) atomicAdd(o, P.alpha * acc[n][e]);
            else *o += P.alpha * acc[n][e];
        }
}
#endif
