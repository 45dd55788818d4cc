// The kernels of cuda/ops_xent.cu (device code only: tests/test_kernels_sim.cpp also runs them on
// the CPU through cuda/tools/warp_sim.h).
#ifndef SWQ_XENT_CUH
#define SWQ_XENT_CUH
#include <type_traits>
#include "cuda/device_common.cuh"

#define XENT_BLOCK 512
#define XENT_ROW_MAX (212 * 1024)   // bytes of dynamic shared memory for a kept row
#define XENT_ROW_BLOCK 1024          // threads of a block that keeps its row of floats (one block per SM)
#define XENT_ROW_BLOCK_BF16 512      // threads of a block that keeps its row of bf16 (two blocks per SM)
#define ARGMAX_BLOCK 256

// ROW: the row is kept in dynamic shared memory from the first pass (V + 16 / sizeof(Z) values,
// at most XENT_ROW_MAX bytes), so the second pass reads it there instead of from memory again.
// The logits are read from zin, rows ldz apart (a GEMM output with padded rows, say), as Z: float,
// or bf16 (the LM head's output left in bf16 by its GEMM: half the bytes, and a kept row of half
// the size, two blocks an SM); with grad 1 zin must be logits itself (ldz = V), which the gradient
// then replaces. Vector loads are 16 bytes (4 floats or 8 bf16; teacher rows in floats, two float4
// to a vector of bf16 logits, or in fp16, one).
template <typename Z>
__device__ __forceinline__ float xent_f(Z x) { return (float)x; }
template <>
__device__ __forceinline__ float xent_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename Z>
__device__ __forceinline__ void xent_unpack(const uint4 &r, float *x) {   // 16 bytes: 4 floats or 8 bf16
    const uint32_t w[4] = { r.x, r.y, r.z, r.w };
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (sizeof(Z) == 4) {
            memcpy(&x[i], &w[i], 4);
        } else {
            const uint32_t lo = w[i] << 16, hi = w[i] & 0xffff0000u;
            memcpy(&x[2 * i], &lo, 4);
            memcpy(&x[2 * i + 1], &hi, 4);
        }
    }
}
template <typename Z>
struct xent_acc { typedef double t; };
template <>
struct xent_acc<__nv_bfloat16> { typedef float t; };
// threads a block, and blocks an SM the registers must allow (a kept bf16 row: two)
template <bool ROW, typename Z>
constexpr int xent_threads = ROW ? (sizeof(Z) == 4 ? XENT_ROW_BLOCK : XENT_ROW_BLOCK_BF16) : XENT_BLOCK;
template <bool ROW, typename Z>
constexpr int xent_blocks = ROW && sizeof(Z) == 2 ? 2 : 1;
// Teacher sums as TT: float, or fp16 scaled (a stored value is the sum times the scale: tin reads,
// tout writes; 1/2^k and 2^k, so that the largest sum stays below fp16's 65504 and small
// probabilities above its subnormals), loaded and stored VEC to a vector.
template <typename TT>
__device__ __forceinline__ float tt_get(TT x, float s) {
    if constexpr (sizeof(TT) == 4) return x;
    else return __half2float(x) * s;
}
template <typename TT>
__device__ __forceinline__ TT tt_put(float x, float s) {
    if constexpr (sizeof(TT) == 4) return x;
    else return __float2half_rn(x * s);
}
template <typename TT, int VEC>
__device__ __forceinline__ void tt_load(const TT *p, float *t, float s) {   // (16-byte aligned rows frame)
    if constexpr (sizeof(TT) == 4) {
#pragma unroll
        for (int k = 0; k < VEC / 4; k++) {
            const float4 v = ((const float4 *)p)[k];
            t[4 * k] = v.x, t[4 * k + 1] = v.y, t[4 * k + 2] = v.z, t[4 * k + 3] = v.w;
        }
    } else {
        uint32_t w[VEC / 2];
        load_words<VEC / 2>(w, p);
#pragma unroll
        for (int e = 0; e < VEC / 2; e++) {
            __half lo, hi;
            const uint16_t l = (uint16_t)(w[e] & 0xffffu), h = (uint16_t)(w[e] >> 16);
            memcpy(&lo, &l, 2);
            memcpy(&hi, &h, 2);
            t[2 * e] = __half2float(lo) * s;
            t[2 * e + 1] = __half2float(hi) * s;
        }
    }
}
template <typename TT, int VEC>
__device__ __forceinline__ void tt_store(TT *p, const float *t, float s) {
    if constexpr (sizeof(TT) == 4) {
#pragma unroll
        for (int k = 0; k < VEC / 4; k++) ((float4 *)p)[k] = make_float4(t[4 * k], t[4 * k + 1], t[4 * k + 2], t[4 * k + 3]);
    } else {
        uint32_t w[VEC / 2];
#pragma unroll
        for (int e = 0; e < VEC / 2; e++) {
            const __half lo = __float2half_rn(t[2 * e] * s), hi = __float2half_rn(t[2 * e + 1] * s);
            uint16_t l, h;
            memcpy(&l, &lo, 2);
            memcpy(&h, &hi, 2);
            w[e] = (uint32_t)l | ((uint32_t)h << 16);
        }
        store_words<VEC / 2>(p, w);
    }
}
template <bool ROW, typename Z, typename TT = float>
__global__ void __launch_bounds__(xent_threads<ROW, Z>, xent_blocks<ROW, Z>) xent_kl_kernel(
    float *logits, const Z *zin, int ldz, __nv_bfloat16 *gb, int ldg, const int *target, const int *len,
    const TT *tS, int ldt, float tin, const float *tH, float bnt, float beta, TT *nS, float tout, float *nH, int nzero,
    double *acc, double weight, float gscale, int grad, int V) {
    static_assert(sizeof(TT) == 4 || (ROW && sizeof(Z) == 2), "fp16 teacher rows with a kept row of bf16 logits only");
    // grad 1: the gradient replaces z (and goes to gb when given); 2: only to gb. nzero: nS starts
    // as zeros (not read; every value of its row written, zeros past the valid columns). Teacher
    // rows ldt apart.
    constexpr int VEC = 16 / sizeof(Z);
    __shared__ float shf[32];
    __shared__ double shd[32];
    SWQ_DYNAMIC_SMEM(xrow_bytes);
    Z *xrow = (Z *)xrow_bytes;
    const int p = blockIdx.x;
    float *z = logits + (size_t)p * V;
    const Z *zr = zin + (size_t)p * ldz;
    int n = len ? len[p] : V;
    if (n > V) n = V;
    // a column without teacher mass added: its sum stays (zero where nzero; fp16 sums rescaled)
    const bool restore = nS && (nzero || sizeof(TT) == 2);
    auto ns_stays = [&](TT *r, int v) { r[v] = tt_put<TT>(nzero ? 0.0f : tt_get(r[v], tin), tout); };
    if (n <= 0) {   // no valid column: no loss, no teacher mass, zero gradient
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            if (grad == 1) z[v] = 0.0f;
            if (grad && gb) gb[(size_t)p * ldg + v] = __float2bfloat16_rn(0.0f);
            if (restore) ns_stays(nS + (size_t)p * ldt, v);
        }
        return;
    }
    const int tgt = target ? target[p] : -1;
    const TT *ts = tS ? tS + (size_t)p * ldt : NULL;
    TT *ns = nS ? nS + (size_t)p * ldt : NULL;
    // 16-byte vectors over the row from its first 16-byte boundary (rows of V values start
    // anywhere); scalars before and after. Pass 1 reads zr so (h1); pass 2 goes in the teacher rows'
    // frame (h), which is zr's where float logits share it: else the kept row is stored in their
    // frame (a vector of logits against one float4 of teacher values, or two for bf16 logits), or
    // without one (!ROW) pass 2 takes scalars.
    auto head = [&](const void *q) { return (int)((16 - (uintptr_t)q % 16) % 16 / sizeof(Z)); };
    const TT *fr = ts ? ts : ns;
    const bool zbad = (uintptr_t)zr % sizeof(Z),
               tns = ts && ns && ((uintptr_t)ts - (uintptr_t)ns) % 16;   // teacher rows out of step
    // the teacher rows' frame: their floats before a 16-byte boundary (float logits in the same
    // frame: the same count, hf == h1)
    const int hf = fr ? (int)((16 - (uintptr_t)fr % 16) % 16 / sizeof(TT)) : 0;
    int h1 = zbad ? n : head(zr), h = zbad || tns ? n : !fr || (sizeof(Z) == 4 && hf == h1) ? h1 : ROW ? hf : n;
    if (h1 > n) h1 = n;
    if (h > n) h = n;
    const int nv1 = (n - h1) / VEC, t1 = h1 + VEC * nv1, nv = (n - h) / VEC, t0 = h + VEC * nv;
    const uint4 *zv = (const uint4 *)(zr + h1);
    // the kept row, shifted so that its vector part in pass 2's frame is 16-byte aligned (h < VEC
    // there); without it pass 2 reads zr again (zs is written only when ROW)
    const Z *zs = ROW ? xrow + (h < VEC ? (VEC - h) % VEC : 0) : zr;
    Z *zw = (Z *)zs;
    const uint4 *zsv = (const uint4 *)(zs + h);
    const bool vstore = (h1 - h) % VEC == 0;   // pass 1 stores whole vectors into the kept row
    const int lane = threadIdx.x & 31, wbase = threadIdx.x - lane;

    // pass 1: running max and sum of exp (four loads in flight per thread). bf16 logits: a vector's
    // values rescale the sum once, and a thread's sum is in float (~100 terms a thread: far below
    // bf16's own rounding). Float logits (fp32 mode, held to 1e-5 against the CPU over 20 steps of
    // full fine-tune, where any change of summation order moved the 20th step's loss by ~1e-5):
    // element by element in double, as before.
    using R = typename xent_acc<Z>::t;
    float m = -INFINITY;
    R s = 0;
    auto upd = [&](float x) {
        if (x > m) {
            s = s * (R)expf(m - x) + 1;
            m = x;
        } else if (x > -INFINITY) {
            s += (R)expf(x - m);
        }
    };
    auto updv = [&](const float *f) {
        float mx = f[0];
#pragma unroll
        for (int e = 1; e < VEC; e++) mx = fmaxf(mx, f[e]);
        if (mx > m) {
            s = s * (R)expf(m - mx);
            m = mx;
        }
        if (m > -INFINITY)
#pragma unroll
            for (int e = 0; e < VEC; e++) s += (R)expf(f[e] - m);
    };
    for (int v = threadIdx.x; v < h1; v += blockDim.x) {
        Z x = zr[v];
        if (ROW) zw[v] = x;
        upd(xent_f(x));
    }
    for (int i0 = threadIdx.x; i0 < nv1; i0 += 4 * blockDim.x) {
        uint4 x[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = i0 + j * blockDim.x;
            if (i < nv1) x[j] = zv[i];
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = i0 + j * blockDim.x;
            if (i < nv1) {
                if (ROW && vstore) ((uint4 *)(zw + h1))[i] = x[j];
                float f[VEC];
                xent_unpack<Z>(x[j], f);
                if (ROW && !vstore)
#pragma unroll
                    for (int e = 0; e < VEC; e++) {
                        if constexpr (sizeof(Z) == 4) zw[h1 + VEC * i + e] = f[e];
                        else zw[h1 + VEC * i + e] = __float2bfloat16_rn(f[e]);   // (exact: f came from bf16)
                    }
                if constexpr (sizeof(Z) == 2) updv(f);
                else
#pragma unroll
                    for (int e = 0; e < VEC; e++) upd(f[e]);
            }
        }
    }
    for (int v = t1 + threadIdx.x; v < n; v += blockDim.x) {
        Z x = zr[v];
        if (ROW) zw[v] = x;
        upd(xent_f(x));
    }
    float zt = (tgt >= 0 && threadIdx.x == 0) ? xent_f(zr[tgt]) : 0.0f;   // read before pass 2 overwrites it
    float M = block_max(m, shf);
    double S = block_sum<double>(m == -INFINITY ? 0.0 : (double)s * exp((double)m - (double)M), shd);
    const double lse = (double)M + log(S);

    // pass 2: q, teacher statistics, gradient of weight * (ce + beta * kl) (a row without a
    // target has no CE term, so neither its onehot nor its q), and sum ts*z, sum ts for the KL
    // term (here, not in pass 1: the teacher row is read once). The teacher value is read
    // before ns is updated: ns may be ts.
    const float qcoef = (tgt >= 0 ? 1.0f : 0.0f) + bnt;
    const R lse_r = (R)lse;
    double qlogq = 0.0, tz = 0.0, tsum = 0.0;
    // the sums' terms go straight into the doubles (A = double), or for bf16 logits a vector's
    // terms first into floats (A = float: 8 terms, then one conversion each instead of one per term)
    auto elem = [&](int v, float x, float tv, float &znew, auto &a_qlogq, auto &a_tz, auto &a_tsum) -> float {
        using A = typename std::remove_reference<decltype(a_tz)>::type;
        float logq = (float)((R)x - lse_r);
        float q = expf(logq);
        if (ts) {
            a_tz += (A)tv * (A)x;
            a_tsum += (A)tv;
        }
        if (nH && q > 0.0f) a_qlogq += (A)q * (A)logq;
        znew = x;
        if (grad) znew = gscale * (qcoef * q - (v == tgt ? 1.0f : 0.0f) - beta * tv);
        return q;
    };
    __nv_bfloat16 *gr = gb ? gb + (size_t)p * ldg : NULL;
    auto one = [&](int v) {
        float zn, q = elem(v, xent_f(zs[v]), ts ? tt_get(ts[v], tin) : 0.0f, zn, qlogq, tz, tsum);
        if (ns) ns[v] = tt_put<TT>((nzero ? 0.0f : tt_get(ns[v], tin)) + q, tout);
        if (grad == 1) z[v] = zn;
        if (grad && gr) gr[v] = __float2bfloat16_rn(zn);
    };
    for (int v = threadIdx.x; v < h; v += blockDim.x) one(v);
    // one vector of VEC values with its teacher values t (wv: its gradient's bf16 pairs); with
    // ns == ts the old sums are t itself
    const bool alias = ns && ns == ts;
    auto vec = [&](int i, const float *t, uint32_t *wv) {
        const int v = h + VEC * i;
        float x[VEC], q[VEC], zn[VEC];
        xent_unpack<Z>(zsv[i], x);
        if constexpr (sizeof(Z) == 2) {
            float fq = 0.0f, fz = 0.0f, fs = 0.0f;
#pragma unroll
            for (int e = 0; e < VEC; e++) q[e] = elem(v + e, x[e], t[e], zn[e], fq, fz, fs);
            qlogq += (double)fq;
            tz += (double)fz;
            tsum += (double)fs;
        } else {
#pragma unroll
            for (int e = 0; e < VEC; e++) q[e] = elem(v + e, x[e], t[e], zn[e], qlogq, tz, tsum);
        }
        if (ns) {
            float u[VEC];
            if (alias) {
#pragma unroll
                for (int e = 0; e < VEC; e++) u[e] = t[e];
            } else if (nzero) {
#pragma unroll
                for (int e = 0; e < VEC; e++) u[e] = 0.0f;
            } else {
                tt_load<TT, VEC>(ns + v, u, tin);
            }
#pragma unroll
            for (int e = 0; e < VEC; e++) u[e] += q[e];
            tt_store<TT, VEC>(ns + v, u, tout);
        }
        if (grad == 1)
#pragma unroll
            for (int k = 0; k < VEC / 4; k++)
                ((float4 *)(z + v))[k] = make_float4(zn[4 * k], zn[4 * k + 1], zn[4 * k + 2], zn[4 * k + 3]);
#pragma unroll
        for (int e = 0; e < VEC / 2; e++) wv[e] = pack_bf16x2(zn[2 * e], zn[2 * e + 1]);
    };
    // The gradient's bf16 copy of vector i (all lanes of the warp together; ok: i < nv). Its rows
    // are 16-byte aligned, pass 2's frame may not be: then a lane stores the aligned vector that
    // starts inside its own (its last gsh values, the next lane's first VEC - gsh), so that every
    // store is whole; a warp's first lane stores its first values, and a lane whose next vector
    // is not in its warp its last, one by one.
    const int gsh = gr ? (int)((uintptr_t)(gr + h) % (2 * VEC) / 2) : 0;
    auto gstore = [&](int i, bool ok, const uint32_t *wv) {
        const int v = h + VEC * i;
        auto one_bf16 = [&](int e) {   // value e of the vector
            const uint16_t b = (uint16_t)(e % 2 ? wv[e / 2] >> 16 : wv[e / 2] & 0xffffu);
            memcpy(gr + v + e, &b, 2);
        };
        if (gsh == 0) {
            if (ok) store_words<VEC / 2>(gr + v, wv);
            return;
        }
        uint32_t nx[VEC / 2];
#pragma unroll
        for (int e = 0; e < VEC / 2; e++) nx[e] = __shfl_down_sync(0xffffffffu, wv[e], 1);
        if (!ok) return;
        const int s = VEC - gsh;   // values before the aligned boundary
        if (lane == 0)
            for (int e = 0; e < s; e++) one_bf16(e);
        if (lane < 31 && i + 1 < nv) {
            uint32_t o[VEC / 2];
            bf16_window<VEC>(o, wv, nx, s);
            store_words<VEC / 2>(gr + v + s, o);
        } else {
            for (int e = s; e < VEC; e++) one_bf16(e);
        }
    };
    // two vectors' teacher values in flight before either is used (the thread's vectors in the
    // same order as one at a time: the same sums); the loop's bounds are the warp's, for gstore
    for (int b0 = wbase; b0 < nv; b0 += 2 * blockDim.x) {
        float t[2][VEC];
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const int i = b0 + lane + j * blockDim.x;
            if (ts && i < nv) tt_load<TT, VEC>(ts + h + VEC * i, t[j], tin);
            else
#pragma unroll
                for (int e = 0; e < VEC; e++) t[j][e] = 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const int i = b0 + lane + j * blockDim.x;
            uint32_t wv[VEC / 2] = {};
            if (i < nv) vec(i, t[j], wv);
            if (grad && gr) gstore(i, i < nv, wv);
        }
    }
    for (int v = t0 + threadIdx.x; v < n; v += blockDim.x) one(v);
    if (grad || restore)
        for (int v = n + threadIdx.x; v < V; v += blockDim.x) {
            if (grad == 1) z[v] = 0.0f;
            if (grad && gb) gb[(size_t)p * ldg + v] = __float2bfloat16_rn(0.0f);
            if (restore) ns_stays(ns, v);
        }
    if (ts) {
        tz = block_sum<double>(tz, shd);
        tsum = block_sum<double>(tsum, shd);
    }
    if (nH) qlogq = block_sum<double>(qlogq, shd);
    if (threadIdx.x == 0) {
        if (acc) {
            double ce = tgt >= 0 ? lse - (double)zt : 0.0;
            double kl = tH ? (double)tH[p] : 0.0;   // before nH: it may be tH
            if (ts) kl -= tz - lse * tsum;
            atomicAdd(&acc[0], ce * weight);
            atomicAdd(&acc[1], kl * weight);
        }
        if (nH) nH[p] += (float)qlogq;
    }
}

// dst[p*cols + j] = src[p*lds + j] * s: fp16 teacher sums back into their floats
__global__ void teacher_half_to_float_kernel(float *dst, const __half *src, int lds, size_t rows, int cols, float s) {
    const size_t n = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __half2float(src[i / cols * lds + i % cols]) * s;
}

// First maximum of each row: each thread keeps its first best, ties go to the lower index.
__global__ void argmax_rows_kernel(int *out, const float *logits, int V) {
    __shared__ float sv[ARGMAX_BLOCK];
    __shared__ int si[ARGMAX_BLOCK];
    const float *z = logits + (size_t)blockIdx.x * V;
    float best = -INFINITY;
    int bi = V;   // "none yet" sorts after every real index
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float x = z[v];
        if (bi == V || x > best) {
            best = x;
            bi = v;
        }
    }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) {
            float x = sv[threadIdx.x + o];
            int i = si[threadIdx.x + o];
            if (i < V && (si[threadIdx.x] == V || x > sv[threadIdx.x] ||
                          (x == sv[threadIdx.x] && i < si[threadIdx.x]))) {
                sv[threadIdx.x] = x;
                si[threadIdx.x] = i;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = si[0] == V ? 0 : si[0];
}
#endif
