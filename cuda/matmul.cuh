// The kernels of cuda/ops_matmul.cu: bias rows, bias gradients (column sums), the merged LoRA
// weight and the fused pass after a linear's GEMM (device code only: tests/test_kernels_sim.cpp
// also runs them on the CPU through cuda/tools/warp_sim.h).
#ifndef SWQ_MATMUL_CUH
#define SWQ_MATMUL_CUH
#include "cuda/mma_bf16.cuh"

__global__ void bias_rows_kernel(float *out, const float *bias, int N, int OC, int accumulate) {
    size_t n = (size_t)N * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float b = bias[i % OC];
        out[i] = accumulate ? out[i] + b : b;
    }
}

// Four columns from c of a bf16 row (V4: one 8-byte load), as floats; zero past lim.
template <bool V4>
__device__ __forceinline__ float4 load4_cols(const __nv_bfloat16 *p, int c, int lim) {
    if (V4) {
        uint2 u = *(const uint2 *)p;
        float2 lo = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x), hi = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
        return make_float4(lo.x, lo.y, hi.x, hi.y);
    }
    auto f = [&](int k) { return c + k < lim ? __bfloat162float(p[k]) : 0.0f; };
    return make_float4(f(0), f(1), f(2), f(3));
}

// dbias[c] += sum_r dout[r,c] (rows ld apart; float, or a sole bf16 copy): block (32, 8) over 128
// columns (4 a thread, vector loads when OC and ld are multiples of 4 and dout is 16-byte aligned),
// rows split over y and blockIdx.y, four rows' loads in flight.
template <bool V4, typename E>
__global__ void col_sum_kernel(float *dbias, const E *dout, int ld, int N, int OC, int rows_per) {
    __shared__ float4 sh[8][32];
    const int c = (blockIdx.x * 32 + threadIdx.x) * 4;
    const int r0 = blockIdx.y * rows_per, r1 = min(N, r0 + rows_per);
    float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    auto row = [&](int r) { return load4_cols<V4>(dout + (size_t)r * ld + c, c, OC); };
    if (c < OC) {
        int r = r0 + threadIdx.y;
        for (; r + 24 < r1; r += 32) {
            float4 a = row(r), b = row(r + 8), d = row(r + 16), e = row(r + 24);
            s.x += (a.x + b.x) + (d.x + e.x);
            s.y += (a.y + b.y) + (d.y + e.y);
            s.z += (a.z + b.z) + (d.z + e.z);
            s.w += (a.w + b.w) + (d.w + e.w);
        }
        for (; r < r1; r += 8) {
            float4 a = row(r);
            s.x += a.x, s.y += a.y, s.z += a.z, s.w += a.w;
        }
    }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < OC) {
        for (int y = 1; y < 8; y++) {
            float4 t = sh[y][threadIdx.x];
            s.x += t.x, s.y += t.y, s.z += t.z, s.w += t.w;
        }
        float v[4] = {s.x, s.y, s.z, s.w};
        for (int k = 0; k < 4 && c + k < OC; k++) {
            if (gridDim.y == 1) dbias[c + k] += v[k];
            else atomicAdd(&dbias[c + k], v[k]);
        }
    }
}

// wm[o,i] = w[o,i] + s sum_j Bm[o,j] A[j,i]; block (256) over i, grid.y over rows o.
__global__ void lora_merge_kernel(float *wm, __nv_bfloat16 *wb, const float *w, const float *A, const float *Bm,
                                  int IC, int OC, int r, float s) {
    for (int o = blockIdx.y; o < OC; o += gridDim.y) {
        const float *b = Bm + (size_t)o * r;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < IC; i += gridDim.x * blockDim.x) {
            float acc = 0.0f;
            for (int j = 0; j < r; j++) acc += b[j] * A[(size_t)j * IC + i];
            size_t k = (size_t)o * IC + i;
            float v = w[k] + s * acc;
            wm[k] = v;
            if (wb) wb[k] = __float2bfloat16_rn(v);
        }
    }
}

// A GEMM's K extended by a LoRA adapter's up-product: each row of x (the input side) and of w (the
// weight side) is followed by three groups of rp (a multiple of 8) columns from a = s u[i, :r] and
// b = Bm[o, :r] (zero beyond r), each value split into bf16 hi = rn(a) and lo = rn(a - hi): the
// input side [x | a_hi | a_lo | a_hi], the weight side [w | b_hi | b_hi | b_lo], whose product adds
// x w^T + a_hi b_hi + a_lo b_hi + a_hi b_lo = x w^T + a b^T - a_lo b_lo^T: the adapter's term to
// ~2^-16 of itself, as the fp32 pass it replaces.
__device__ __forceinline__ float kext_rest(float a) { return a - __bfloat162float(__float2bfloat16_rn(a)); }
// The weight side's extension columns t..t+7 (t a multiple of 8, < 3 rp) of row `row` of v [rows, r],
// packed for one 16-byte store.
__device__ __forceinline__ uint4 kext_segment(const float *v, int row, int r, int rp, int t) {
    const int j0 = t % rp;
    const bool lo = t / rp == 2;
    uint32_t w[4];
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float x[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int j = j0 + 2 * e + h;
            const float b = j < r ? v[(size_t)row * r + j] : 0.0f;
            x[h] = lo ? kext_rest(b) : b;
        }
        w[e] = pack_bf16x2(x[0], x[1]);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// The weight side of a K-extension, by the blocks from nxb on: [b_hi | b_hi | b_lo] after the IC
// columns of each of we's OC rows (ke apart) from Bm [OC, r], and Bm's bf16 copy bb [OC, r] where given.
__device__ __forceinline__ void kext_weight_side(__nv_bfloat16 *we, int ke, int IC, const float *Bm, int OC, int r,
                                                 int rp, __nv_bfloat16 *bb, int nxb) {
    const int ct = 3 * rp / 8;
    const size_t n = (size_t)OC * ct;
    for (size_t i = (size_t)(blockIdx.x - nxb) * blockDim.x + threadIdx.x; i < n;
         i += (size_t)(gridDim.x - nxb) * blockDim.x) {
        const int row = (int)(i / ct), c = (int)(i % ct);
        *(uint4 *)(we + (size_t)row * ke + IC + 8 * c) = kext_segment(Bm, row, r, rp, 8 * c);
        if (bb && 8 * c < rp)   // the b_hi group: B's bf16 copy
            for (int j = 8 * c; j < 8 * c + 8 && j < r; j++)
                bb[(size_t)row * r + j] = __float2bfloat16_rn(Bm[(size_t)row * r + j]);
    }
}

// The input side's adapter columns of rows m0 .. m0 + rows - 1 from their sums u (row rr's column
// j at sum[rr (R + 1) + j]): u [N, r] and its bf16 copy ub (where given), then [a_hi | a_lo | a_hi]
// (a = s u, zero from r to rp) after the IC columns of xe's rows (ldxe apart).
template <int R>
__device__ __forceinline__ void kext_input_cols(const float *sum, int rows, int m0, int N, __nv_bfloat16 *xe, int ldxe,
                                                int IC, float *u, __nv_bfloat16 *ub, int r, int rp, float s) {
    for (int i = threadIdx.x; i < rows * R; i += blockDim.x) {
        const int rr = i / R, j = i % R, m = m0 + rr;
        if (m >= N || j >= rp) continue;
        float v = 0.0f;
        if (j < r) {
            v = sum[rr * (R + 1) + j];
            u[(size_t)m * r + j] = v;
            if (ub) ub[(size_t)m * r + j] = __float2bfloat16_rn(v);
        }
        const float a = s * v;
        const __nv_bfloat16 hi = __float2bfloat16_rn(a), lo = __float2bfloat16_rn(kext_rest(a));
        __nv_bfloat16 *row = xe + (size_t)m * ldxe + IC;
        row[j] = hi;
        row[rp + j] = lo;
        row[2 * rp + j] = hi;
    }
}

// u = x A^T for DK_ROWS rows of x [N, K] (bf16, rows ldx apart, K a multiple of 8; A [r, K] bf16,
// rows lda apart (a multiple of 8), R >= r columns, zero past r), through a DK_STAGES-deep cp.async ring of DK_KC-column
// chunks: DK_THREADS threads, 8 warps, two 16-row groups of 4 warps that split each chunk's k16
// steps, their partial sums added at the end. Every block reads all of A, so block b starts at
// chunk b % nch and wraps around: the blocks' requests spread over A's lines instead of meeting on
// the same ones in L2 (an H100 at N = 4096, K = 3072, r = 16: a skinny operand's loads alone took
// 19 us in chunk order, 14 us staggered). chunk(ch, xs) runs on each chunk of x in shared memory
// (rows DK_LD apart), every thread past the barrier. Returns the sums in shared memory, row rr's
// column j at [rr (R + 1) + j] (every thread past a barrier), in the ring's own space.
#define DK_ROWS 32
#define DK_THREADS 256
#ifndef DK_KC
#define DK_KC 128
#endif
#ifndef DK_STAGES
#define DK_STAGES 4
#endif
#define DK_LD (DK_KC + 8)
// dynamic shared memory of a launch
template <int R>
constexpr int dk_smem_bytes = DK_STAGES * (DK_ROWS + R) * DK_LD * 2;
static_assert(4 * DK_ROWS * (32 + 1) * 4 <= dk_smem_bytes<32> && 4 * DK_ROWS * (16 + 1) * 4 <= dk_smem_bytes<16>,
              "room for the warps' partial sums in the ring's shared memory");
template <int R, typename F>
__device__ __forceinline__ const float *dk_rows_times_at(unsigned char *smem, const __nv_bfloat16 *x, int ldx, int K,
                                                        const __nv_bfloat16 *A, int lda, int r, int m0, int N, F chunk) {
    __nv_bfloat16 *Xs = (__nv_bfloat16 *)smem, *As = Xs + DK_STAGES * DK_ROWS * DK_LD;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int rg = w >> 2, wk = w & 3;   // the warp's 16-row group and its share of the k16 steps
    const int nch = (K + DK_KC - 1) / DK_KC, first = (int)(blockIdx.x % nch);
    constexpr int SEGS = DK_KC / 8;   // 16-byte segments a tile row
    auto load = [&](int ch, int st) {
        if (ch < nch) {
            const int k0 = (ch + first) % nch * DK_KC;
            __nv_bfloat16 *xs = Xs + st * DK_ROWS * DK_LD, *as = As + st * R * DK_LD;
            for (int i = threadIdx.x; i < DK_ROWS * SEGS; i += blockDim.x) {
                const int rr = i / SEGS, c = (i % SEGS) * 8;
                const bool ok = m0 + rr < N && k0 + c < K;
                cp_async16(xs + rr * DK_LD + c, x + (ok ? (size_t)(m0 + rr) * ldx + k0 + c : 0), ok);
            }
            for (int i = threadIdx.x; i < R * SEGS; i += blockDim.x) {
                const int j = i / SEGS, c = (i % SEGS) * 8;
                const bool ok = j < r && k0 + c < K;
                cp_async16(as + j * DK_LD + c, A + (ok ? (size_t)j * lda + k0 + c : 0), ok);
            }
        }
        cp_async_commit();   // (empty past the end: the group count stays uniform)
    };
    float acc[R / 8][4];
#pragma unroll
    for (int n = 0; n < R / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    cp_ring<DK_STAGES>(nch, load, [&](int ch, int st) {
        const __nv_bfloat16 *xs = Xs + st * DK_ROWS * DK_LD, *as = As + st * R * DK_LD;
        chunk((ch + first) % nch, xs);
#pragma unroll
        for (int q = 0; q < DK_KC / 64; q++) {   // warp w: the chunk's k16 steps wk, wk + 4, ...
            const int kk = (4 * q + wk) * 16;
            uint32_t a[4];
            mma_ldsm(a, frag_a(xs, DK_LD, rg * 16, kk));
#pragma unroll
            for (int jp = 0; jp < R / 16; jp++) {
                uint32_t b[4];
                mma_ldsm(b, frag_b_rows(as, DK_LD, jp * 16, kk));
                mma_16816(acc[2 * jp], a, b[0], b[1]);
                mma_16816(acc[2 * jp + 1], a, b[2], b[3]);
            }
        }
    });
    __syncthreads();   // every warp is done with the ring: its space takes the partial sums
    float (*red)[DK_ROWS][R + 1] = (float (*)[DK_ROWS][R + 1])smem;
#pragma unroll
    for (int n = 0; n < R / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) red[wk][rg * 16 + g + (e >= 2 ? 8 : 0)][n * 8 + 2 * tq + (e & 1)] = acc[n][e];
    __syncthreads();
    for (int i = threadIdx.x; i < DK_ROWS * (R + 1); i += blockDim.x) {
        const int rr = i / (R + 1), j = i % (R + 1);
        red[0][rr][j] = (red[0][rr][j] + red[1][rr][j]) + (red[2][rr][j] + red[3][rr][j]);
    }
    __syncthreads();
    return &red[0][0][0];
}

// A body linear's K extension in one launch (lora_body_kext): for the N rows of x [N, IC] (bf16,
// rows ldx apart, IC a multiple of 8), u = x A^T (A [r, IC] bf16, rows lda apart, by mma with fp32 accumulation;
// written [N, r], and as ub, its bf16 copy, where ub is given: the backward's weight gradients read
// that) and xe = [x | a_hi | a_lo | a_hi] (rows ldxe apart, a = s u; xe may be x itself, its rows
// padded by the producer (ldxe = ldx): then only the adapter's columns are written);
// blocks from nxb on write the weight side's extension [b_hi | b_hi | b_lo] after the IC columns of
// each of we's OC rows (ke apart) from Bm [OC, r], and Bm's bf16 copy bb [OC, r] where given (the
// backward's du = s dout Bm GEMM reads that). Instead of a rank-r cuBLAS GEMM (9 us at N = 4096,
// IC = 768 on an H100: it reads x at a third of the bandwidth) and a copying pass.
// R (16 or 32) >= rp.
template <int R>
__global__ void __launch_bounds__(DK_THREADS) lora_down_kext_kernel(__nv_bfloat16 *xe, int ldxe, int ke, const __nv_bfloat16 *x, int ldx,
                                                             int IC, const __nv_bfloat16 *A, int lda, float *u, int r, int rp,
                                                             float s, int N, int nxb, __nv_bfloat16 *we,
                                                             const float *Bm, int OC, __nv_bfloat16 *ub,
                                                             __nv_bfloat16 *bb) {
    SWQ_DYNAMIC_SMEM(smem);
    if ((int)blockIdx.x >= nxb) {
        kext_weight_side(we, ke, IC, Bm, OC, r, rp, bb, nxb);
        return;
    }
    const int m0 = blockIdx.x * DK_ROWS;
    const float *sum = dk_rows_times_at<R>(smem, x, ldx, IC, A, lda, r, m0, N, [&](int ch, const __nv_bfloat16 *xs) {
        const int k0 = ch * DK_KC;
        if (xe == x) return;   // (in place)
        for (int i = threadIdx.x; i < DK_ROWS * (DK_KC / 8); i += blockDim.x) {   // x's columns into xe
            const int rr = i / (DK_KC / 8), c = (i % (DK_KC / 8)) * 8;
            if (m0 + rr < N && k0 + c < IC)
                *(uint4 *)(xe + (size_t)(m0 + rr) * ldxe + k0 + c) = *(const uint4 *)(xs + rr * DK_LD + c);
        }
    });
    kext_input_cols<R>(sum, DK_ROWS, m0, N, xe, ldxe, IC, u, ub, r, rp, s);
}

// Layernorm's forward fused with the input side of the K-extended linear that reads its output
// (a deferred layernorm_fwd taken by kext_input: qkv's and the MLP-in's), instead of the two
// launches, the second reading the rows back. 16 rows a block, two a warp (C = 128 V4 floats a
// row in registers, the same arithmetic as layernorm_fwd_vec_kernel): y = LN(x) into xe's first C
// columns (bf16, rows ldxe apart; mean and rstd for the backward) and into shared memory; then
// u = y A^T by mma, the 8 warps splitting C's k16 steps (A [r, C] bf16, rows lda apart, loaded into
// shared memory while the rows are normalized), and the adapter's columns (kext_input_cols).
// Blocks from nxb on: the weight side (kext_weight_side).
#define LDK_ROWS 16
#define LDK_THREADS 256
template <int R>
constexpr size_t ldk_smem_bytes(int C) {
    return (size_t)(LDK_ROWS + R) * (C + 8) * 2 + (size_t)(LDK_THREADS / 32) * LDK_ROWS * (R + 1) * 4;
}
template <int R, int V4>
__global__ void __launch_bounds__(LDK_THREADS) layernorm_down_kext_kernel(
    __nv_bfloat16 *xe, int ldxe, int ke, float *mean, float *rstd, const float *inp, const float *lw, const float *lb,
    const __nv_bfloat16 *A, int lda, float *u, int r, int rp, float s, int N, int nxb, __nv_bfloat16 *we,
    const float *Bm, int OC, __nv_bfloat16 *ub, __nv_bfloat16 *bb) {
    constexpr int C = 128 * V4, LD = C + 8, NW = LDK_THREADS / 32;
    SWQ_DYNAMIC_SMEM(smem);
    if ((int)blockIdx.x >= nxb) {
        kext_weight_side(we, ke, C, Bm, OC, r, rp, bb, nxb);
        return;
    }
    __nv_bfloat16 *Xs = (__nv_bfloat16 *)smem, *As = Xs + LDK_ROWS * LD;
    float(*red)[LDK_ROWS][R + 1] = (float(*)[LDK_ROWS][R + 1])(As + R * LD);
    const int m0 = blockIdx.x * LDK_ROWS, w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    // A's rows (zeros past r), each block starting at its own segment (all blocks read all of A
    // at once: in one order their requests meet on the same lines in L2, as lora_down_kext_kernel's)
    constexpr int NSEG = R * (C / 8);
    for (int q = threadIdx.x; q < NSEG; q += LDK_THREADS) {
        const int i = (q + (int)(blockIdx.x % 32) * (NSEG / 32)) % NSEG, j = i / (C / 8), c = (i % (C / 8)) * 8;
        cp_async16(As + j * LD + c, A + (j < r ? (size_t)j * lda + c : 0), j < r);
    }
    cp_async_commit();
    float4 x[2][V4];   // the warp's two rows, both loaded before either is normalized
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = m0 + 2 * w + h;
#pragma unroll
        for (int k = 0; k < V4; k++)
            x[h][k] = row < N ? ((const float4 *)(inp + (size_t)row * C))[lane + 32 * k] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int rr = 2 * w + h, row = m0 + rr;
        float sm = 0.0f;
#pragma unroll
        for (int k = 0; k < V4; k++) sm += (x[h][k].x + x[h][k].y) + (x[h][k].z + x[h][k].w);
        const float m = warp_sum(sm) / C;
        float v = 0.0f;
#pragma unroll
        for (int k = 0; k < V4; k++) {
            float a = x[h][k].x - m, bq = x[h][k].y - m, c = x[h][k].z - m, d = x[h][k].w - m;
            v += (a * a + bq * bq) + (c * c + d * d);
        }
        const float rs = rsqrtf(warp_sum(v) / C + LN_EPS);
#pragma unroll
        for (int k = 0; k < V4; k++) {
            const int i = lane + 32 * k;
            float4 ww = ((const float4 *)lw)[i], bv = ((const float4 *)lb)[i], y;
            y.x = (x[h][k].x - m) * rs * ww.x + bv.x;
            y.y = (x[h][k].y - m) * rs * ww.y + bv.y;
            y.z = (x[h][k].z - m) * rs * ww.z + bv.z;
            y.w = (x[h][k].w - m) * rs * ww.w + bv.w;
            if (row >= N) y = make_float4(0.f, 0.f, 0.f, 0.f);
            else store_bf16x4(xe + (size_t)row * ldxe + 4 * i, y);
            store_bf16x4(Xs + rr * LD + 4 * i, y);
        }
        if (lane == 0 && row < N) {
            if (mean) mean[row] = m;
            if (rstd) rstd[row] = rs;
        }
    }
    cp_async_wait<0>();
    __syncthreads();
    float acc[R / 8][4];
#pragma unroll
    for (int n = 0; n < R / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    for (int kk = w; kk < C / 16; kk += NW) {
        uint32_t a[4];
        mma_ldsm(a, frag_a(Xs, LD, 0, kk * 16));
#pragma unroll
        for (int jp = 0; jp < R / 16; jp++) {
            uint32_t b[4];
            mma_ldsm(b, frag_b_rows(As, LD, jp * 16, kk * 16));
            mma_16816(acc[2 * jp], a, b[0], b[1]);
            mma_16816(acc[2 * jp + 1], a, b[2], b[3]);
        }
    }
#pragma unroll
    for (int n = 0; n < R / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) red[w][g + (e >= 2 ? 8 : 0)][n * 8 + 2 * tq + (e & 1)] = acc[n][e];
    __syncthreads();
    for (int i = threadIdx.x; i < LDK_ROWS * (R + 1); i += LDK_THREADS) {
        const int rr = i / (R + 1), j = i % (R + 1);
        float t = 0.0f;
#pragma unroll
        for (int q = 0; q < NW; q++) t += red[q][rr][j];
        red[0][rr][j] = t;
    }
    __syncthreads();
    kext_input_cols<R>(&red[0][0][0], LDK_ROWS, m0, N, xe, ldxe, C, u, ub, r, rp, s);
}

// out[p, v] = o[p, v] (rows ldp apart; o may be out, ldp = OC) + bias[v] + s * sum_j u[p, j] Bm[v, j],
// r <= R (R a multiple of 4, <= LORA_UP_MAX_R): a thread per column v keeps its row of Bm in
// registers over LORA_UP_ROWS rows p, whose u rows sit in shared memory (zero beyond r).
#define LORA_UP_MAX_R 32
#define LORA_UP_COLS 256
#define LORA_UP_ROWS 32
// u rows are read ldu apart (u may be the GEMM output's extra columns: [out | u] = inp [w ; A]^T),
// and copied to uout [N, r] when uout is given.
template <int R>
__global__ void __launch_bounds__(LORA_UP_COLS) lora_up_pack_kernel(float *out, __nv_bfloat16 *ob, const float *o,
                                                                    int ldp, const float *bias, const float *u,
                                                                    int ldu, float *uout, const float *Bm, int N,
                                                                    int OC, int r, float s, float *act,
                                                                    __nv_bfloat16 *ab) {
    __shared__ float4 us[LORA_UP_ROWS][R / 4 > 0 ? R / 4 : 1];
    int v = blockIdx.x * LORA_UP_COLS + threadIdx.x, p0 = blockIdx.y * LORA_UP_ROWS;
    constexpr int RR = R > 0 ? R : 1;
    float *uf = (float *)us;
    for (int i = threadIdx.x; i < LORA_UP_ROWS * R; i += LORA_UP_COLS) {
        int pr = i / RR, j = i % RR;
        float x = (j < r && p0 + pr < N) ? u[(size_t)(p0 + pr) * ldu + j] : 0.0f;
        uf[i] = x;
        if (uout && blockIdx.x == 0 && j < r && p0 + pr < N) uout[(size_t)(p0 + pr) * r + j] = x;
    }
    __syncthreads();
    if (v >= OC) return;
    float b[R > 0 ? R : 1];
#pragma unroll
    for (int j = 0; j < R; j++) b[j] = j < r ? Bm[(size_t)v * r + j] : 0.0f;
    const float bv = bias ? bias[v] : 0.0f;
    auto emit = [&](int p, float x) {
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < R / 4; j++) {
            float4 q = us[p - p0][j];
            acc += q.x * b[4 * j] + q.y * b[4 * j + 1] + q.z * b[4 * j + 2] + q.w * b[4 * j + 3];
        }
        if (bias) x += bv;
        x = R ? x + s * acc : x;
        if (out) out[(size_t)p * OC + v] = x;
        if (ob) ob[(size_t)p * OC + v] = __float2bfloat16_rn(x);
        if (act || ab) {
            float y = gelu_f(x);
            if (act) act[(size_t)p * OC + v] = y;
            if (ab) ab[(size_t)p * OC + v] = __float2bfloat16_rn(y);
        }
    };
    // eight rows' loads in flight before any store (one at a time: ~1.7 TB/s at the MLP's shape
    // on an H100, ~2.6 TB/s with eight)
    int p1 = min(N, p0 + LORA_UP_ROWS), p = p0;
    for (; p + 8 <= p1; p += 8) {
        float x[8];
#pragma unroll
        for (int k = 0; k < 8; k++) x[k] = o[(size_t)(p + k) * ldp + v];
#pragma unroll
        for (int k = 0; k < 8; k++) emit(p + k, x[k]);
    }
    for (; p < p1; p++) emit(p, o[(size_t)p * ldp + v]);
}
#endif
