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

// The two products that read dout, in one pass over it (a wide dout: qkv's, the MLP's first
// linear's, the LM head's):
//   du[t, j] += s sum_v D[t, v] Bm[v, j]   (du [N, r] floats, zeroed before: atomics)
//   dB[v, j] += s sum_t D[t, v] u[t, j]    (atomics where the rows are split: `atomic`)
// instead of the du GEMM and lora_grads_kernel's dB each reading all of D. D [N, OC] bf16 (rows
// ldd apart), Bm [OC, r], u [N, r] (rows ldu apart). A block owns LD_COLS columns of D for a
// slice of its rows, its LD_NW warps 64 each (dB and Bm's fragments kept in registers), and takes
// them LD_KC rows a chunk. Each warp's du sums of a chunk go to shared memory and out, added up, as
// float4 atomics the chunk after. (Measured on an H100 at the LM head's shape: 3 blocks an SM and
// short slices do best; 1024 columns a block with 8 warps, or 64 rows a chunk, were slower.)
#define LD_NW 4
#define LD_COLS (64 * LD_NW)
#define LD_KC 32
#define LD_STAGES 3
template <int R>
constexpr size_t ld_smem_bytes = LD_STAGES * (LD_KC * (LD_COLS + 8) + LD_KC * (R + 8)) * 2 + 2 * LD_NW * LD_KC * R * 4;

// grid (column blocks of LD_COLS, slices of rper rows, rper a multiple of LD_KC); dynamic shared
// memory ld_smem_bytes<R>
template <int R>
__global__ void __launch_bounds__(32 * LD_NW) lora_dout_grads_kernel(float *du, float *dB, const __nv_bfloat16 *D,
                                                                        int ldd, const __nv_bfloat16 *Bm,
                                                                        const __nv_bfloat16 *u, int ldu, int N, int OC,
                                                                        int r, int rper, float s, int atomic) {
    constexpr int NT = 32 * LD_NW, W = LD_COLS, LDS = W + 8, RL = R + 8;
    SWQ_DYNAMIC_SMEM(ld_smem);
    __nv_bfloat16 *Ds = (__nv_bfloat16 *)ld_smem, *Us = Ds + LD_STAGES * LD_KC * LDS;
    float *red = (float *)(Us + LD_STAGES * LD_KC * RL);   // [2][LD_NW][LD_KC][R]: du's sums of a chunk
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int v0 = blockIdx.x * W, c0 = w * 64, tb = blockIdx.y * rper, te = min(N, tb + rper);
    const int nch = (te - tb + LD_KC - 1) / LD_KC;
    // Bm's B fragments of the warp's 64 rows v (k) x R columns j (n): {Bm[k][n], Bm[k + 1][n]}
    uint32_t bf[4][R / 8][2];
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int n = 0; n < R / 8; n++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int v = v0 + c0 + kk * 16 + 2 * tq + 8 * h, j = n * 8 + g;
                const float x0 = v < OC && j < r ? __bfloat162float(Bm[(size_t)v * r + j]) : 0.0f;
                const float x1 = v + 1 < OC && j < r ? __bfloat162float(Bm[(size_t)(v + 1) * r + j]) : 0.0f;
                bf[kk][n][h] = pack_bf16x2(x0, x1);
            }
    auto load = [&](int ch, int st) {
        if (ch < nch) {
            const int t0 = tb + ch * LD_KC;
            for (int i = threadIdx.x; i < LD_KC * W / 8; i += NT) {
                const int tt = i / (W / 8), c = (i % (W / 8)) * 8;
                lg_seg(Ds + (st * LD_KC + tt) * LDS + c, D + (size_t)(t0 + tt) * ldd, v0 + c, OC, t0 + tt < te);
            }
            for (int i = threadIdx.x; i < LD_KC * R / 8; i += NT) {
                const int tt = i / (R / 8), c = (i % (R / 8)) * 8;
                const bool ok = t0 + tt < te && c < r;
                cp_async16(Us + (st * LD_KC + tt) * RL + c, u + (size_t)(ok ? t0 + tt : 0) * ldu + (ok ? c : 0), ok);
            }
        }
        cp_async_commit();
    };
    // chunk ch's du sums (red[ch & 1], complete past the barrier after it), added up, out to du
    auto flush = [&](int ch) {
        const float *rb = red + (ch & 1) * LD_NW * LD_KC * R;
        const int t0 = tb + ch * LD_KC;
        for (int i = threadIdx.x; i < LD_KC * R / 4; i += NT) {
            const int tt = i / (R / 4), j = (i % (R / 4)) * 4;
            if (t0 + tt >= te || j >= r) continue;
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int k = 0; k < LD_NW; k++) {
                const float4 y = *(const float4 *)(rb + (k * LD_KC + tt) * R + j);
                x.x += y.x, x.y += y.y, x.z += y.z, x.w += y.w;
            }
            atomic_add_vec(du + (size_t)(t0 + tt) * r + j, make_float4(s * x.x, s * x.y, s * x.z, s * x.w));
        }
    };
    float acc[4][R / 8][4];   // dB of the warp's 64 rows v (4 m-tiles) x R
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int n = 0; n < R / 8; n++) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;
    cp_ring<LD_STAGES>(nch, load, [&](int ch, int st) {
        const __nv_bfloat16 *ds = Ds + st * LD_KC * LDS, *us = Us + st * LD_KC * RL;
        if (ch > 0) flush(ch - 1);
        float pd[LD_KC / 16][R / 8][4];   // du's sums over the warp's columns
#pragma unroll
        for (int mt = 0; mt < LD_KC / 16; mt++)
#pragma unroll
            for (int n = 0; n < R / 8; n++) pd[mt][n][0] = pd[mt][n][1] = pd[mt][n][2] = pd[mt][n][3] = 0.0f;
        // dB += D^T u: A = D^T (rows v, k = t) by transposed loads
#pragma unroll
        for (int kk = 0; kk < LD_KC / 16; kk++) {
            uint32_t ub[R / 16][4];
#pragma unroll
            for (int jp = 0; jp < R / 16; jp++) mma_ldsm_t(ub[jp], frag_b_cols(us, RL, kk * 16, jp * 16));
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                uint32_t a[4];
                mma_ldsm_t(a, frag_a_t(ds, LDS, kk * 16, c0 + mt * 16));
#pragma unroll
                for (int jp = 0; jp < R / 16; jp++) {
                    mma_16816(acc[mt][2 * jp], a, ub[jp][0], ub[jp][1]);
                    mma_16816(acc[mt][2 * jp + 1], a, ub[jp][2], ub[jp][3]);
                }
            }
        }
        // du += D (rows t, k = v) Bm
#pragma unroll
        for (int mt = 0; mt < LD_KC / 16; mt++)
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                uint32_t a[4];
                mma_ldsm(a, frag_a(ds, LDS, mt * 16, c0 + kk * 16));
#pragma unroll
                for (int n = 0; n < R / 8; n++) mma_16816(pd[mt][n], a, bf[kk][n][0], bf[kk][n][1]);
            }
        float *rb = red + ((ch & 1) * LD_NW + w) * LD_KC * R;
#pragma unroll
        for (int mt = 0; mt < LD_KC / 16; mt++)
#pragma unroll
            for (int n = 0; n < R / 8; n++) {
                *(float2 *)(rb + (mt * 16 + g) * R + n * 8 + 2 * tq) = make_float2(pd[mt][n][0], pd[mt][n][1]);
                *(float2 *)(rb + (mt * 16 + g + 8) * R + n * 8 + 2 * tq) = make_float2(pd[mt][n][2], pd[mt][n][3]);
            }
    });
    __syncthreads();
    if (nch > 0) flush(nch - 1);
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int n = 0; n < R / 8; n++)
#pragma unroll
            for (int h = 0; h < 2; h++) {   // rows g, g + 8; columns j, j + 1 (r is even)
                const int v = v0 + c0 + mt * 16 + g + 8 * h, j = n * 8 + 2 * tq;
                if (v >= OC || j >= r) continue;
                float *o = dB + (size_t)v * r + j;
                const float2 x = make_float2(s * acc[mt][n][2 * h], s * acc[mt][n][2 * h + 1]);
                if (atomic) atomic_add_vec(o, x);
                else o[0] += x.x, o[1] += x.y;
            }
}
// fp32 and tf32 mode: the same two products in one launch, on floats and the FP32 units
// (lora_grads_f32_kernel), instead of two cuBLAS GEMMs and their split-K reductions (~25 us a
// linear at B=2 T=384 on an H100, mostly latency). out[m, j] (TRANS: out[j, m]) += alpha * sum_t
// X[t, m] Y[t, j]; X [N, M] and Y [N, r] floats with rows ldx and ldy apart (no alignment asked).
// A block owns LGF_M outputs m of one product for a slice of the N rows, taken LGF_KC rows a chunk
// through shared memory; its 256 threads are 4 groups of LGF_M, each group R / 4 columns j.
#define LGF_M 64
#define LGF_KC 32
struct lgf_prob {
    float *out;
    const float *X, *Y;
    int ldx, ldy, M, trans;
    float alpha;
};

// grid (mb0 + mb1 blocks of LGF_M m, N slices of rper rows); block 256 threads
template <int R>
__global__ void __launch_bounds__(256) lora_grads_f32_kernel(lgf_prob p0, lgf_prob p1, int mb0, int N, int r,
                                                             int rper, int atomic) {
    constexpr int JP = R / 4;
    __shared__ float Xs[LGF_KC][LGF_M], Ys[LGF_KC][R];
    const bool second = (int)blockIdx.x >= mb0;
    const lgf_prob P = second ? p1 : p0;
    const int m0 = (second ? blockIdx.x - mb0 : blockIdx.x) * LGF_M, tb = blockIdx.y * rper, te = min(N, tb + rper);
    const int mi = threadIdx.x % LGF_M, j0 = threadIdx.x / LGF_M * JP;
    float acc[JP];
#pragma unroll
    for (int q = 0; q < JP; q++) acc[q] = 0.0f;
    for (int t0 = tb; t0 < te; t0 += LGF_KC) {
        for (int i = threadIdx.x; i < LGF_KC * LGF_M; i += 256) {
            const int tt = i / LGF_M, c = i % LGF_M, t = t0 + tt, m = m0 + c;
            Xs[tt][c] = t < te && m < P.M ? P.X[(size_t)t * P.ldx + m] : 0.0f;
        }
        for (int i = threadIdx.x; i < LGF_KC * R; i += 256) {
            const int tt = i / R, j = i % R, t = t0 + tt;
            Ys[tt][j] = t < te && j < r ? P.Y[(size_t)t * P.ldy + j] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int tt = 0; tt < LGF_KC; tt++) {
            const float x = Xs[tt][mi];
#pragma unroll
            for (int q = 0; q < JP; q++) acc[q] = fmaf(x, Ys[tt][j0 + q], acc[q]);
        }
        __syncthreads();
    }
    const int m = m0 + mi;
    if (m >= P.M) return;
#pragma unroll
    for (int q = 0; q < JP; q++) {
        const int j = j0 + q;
        if (j >= r) continue;
        float *o = P.out + (P.trans ? (size_t)j * P.M + m : (size_t)m * r + j);
        if (atomic) atomicAdd(o, P.alpha * acc[q]);
        else *o += P.alpha * acc[q];
    }
}

#endif
