// The kernels of cuda/ops_xent.cu (device code only: tests/test_kernels_sim.cpp also runs them on
// the CPU through cuda/tools/warp_sim.h).
#ifndef SWQ_XENT_CUH
#define SWQ_XENT_CUH
#include "cuda/device_common.cuh"

#define XENT_BLOCK 512
#define XENT_ROW_MAX (212 * 1024)   // bytes of dynamic shared memory for a kept row
#define XENT_ROW_BLOCK 1024          // threads of a block that keeps its row (one block per SM)
#define ARGMAX_BLOCK 256

// ROW: the row is kept in dynamic shared memory from the first pass (V floats, at most
// XENT_ROW_MAX), so the second pass reads it there instead of from memory again. The logits are
// read from zin, rows ldz apart (a GEMM output with padded rows, say); with grad 1 zin must be
// logits itself (ldz = V), which the gradient then replaces.
template <bool ROW>
__global__ void __launch_bounds__(ROW ? XENT_ROW_BLOCK : XENT_BLOCK) xent_kl_kernel(
    float *logits, const float *zin, int ldz, __nv_bfloat16 *gb, int ldg, const int *target, const int *len, const float *tS, const float *tH, float bnt, float beta,
    float *nS, float *nH, double *acc, double weight, float gscale, int grad, int V) {
    // grad 1: the gradient replaces z (and goes to gb when given); 2: only to gb
    __shared__ float shf[32];
    __shared__ double shd[32];
    SWQ_DYNAMIC_SMEM(xrow_bytes);
    float *xrow = (float *)xrow_bytes;
    const int p = blockIdx.x;
    float *z = logits + (size_t)p * V;
    const float *zr = zin + (size_t)p * ldz;
    int n = len ? len[p] : V;
    if (n > V) n = V;
    if (n <= 0) {   // no valid column: no loss, no teacher mass, zero gradient
        if (grad)
            for (int v = threadIdx.x; v < V; v += blockDim.x) {
                if (grad == 1) z[v] = 0.0f;
                if (gb) gb[(size_t)p * ldg + v] = __float2bfloat16_rn(0.0f);
            }
        return;
    }
    const int tgt = target ? target[p] : -1;
    const float *ts = tS ? tS + (size_t)p * V : NULL;
    float *ns = nS ? nS + (size_t)p * V : NULL;
    // float4 over the row from its first 16-byte boundary when the teacher rows share the
    // logits row's alignment (rows of V floats start anywhere); scalars before and after
    int h = (int)((16 - (uintptr_t)zr % 16) % 16 / 4);
    if ((ts && ((uintptr_t)ts - (uintptr_t)zr) % 16) || (ns && ((uintptr_t)ns - (uintptr_t)zr) % 16) || (uintptr_t)zr % 4)
        h = n;
    if (h > n) h = n;
    const int n4 = (n - h) / 4, t0 = h + 4 * n4;
    const float4 *z4 = (const float4 *)(zr + h);
    // the kept row, shifted so that its float4 part is 16-byte aligned as zr's is (h < 4 there);
    // without it pass 2 reads zr again (zs is written only when ROW)
    float *zs = ROW ? xrow + (h < 4 ? (4 - h) & 3 : 0) : (float *)zr;
    float4 *zs4 = (float4 *)(zs + h);

    // pass 1: running max and sum of exp (four loads in flight per thread)
    float m = -INFINITY;
    double s = 0.0;
    auto upd = [&](float x) {
        if (x > m) {
            s = s * (double)expf(m - x) + 1.0;
            m = x;
        } else if (x > -INFINITY) {
            s += (double)expf(x - m);
        }
    };
    for (int v = threadIdx.x; v < h; v += blockDim.x) {
        float x = zr[v];
        if (ROW) zs[v] = x;
        upd(x);
    }
    for (int i0 = threadIdx.x; i0 < n4; i0 += 4 * blockDim.x) {
        float4 x[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = i0 + j * blockDim.x;
            if (i < n4) x[j] = z4[i];
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = i0 + j * blockDim.x;
            if (i < n4) {
                if (ROW) zs4[i] = x[j];
                upd(x[j].x);
                upd(x[j].y);
                upd(x[j].z);
                upd(x[j].w);
            }
        }
    }
    for (int v = t0 + threadIdx.x; v < n; v += blockDim.x) {
        float x = zr[v];
        if (ROW) zs[v] = x;
        upd(x);
    }
    float zt = (tgt >= 0 && threadIdx.x == 0) ? zr[tgt] : 0.0f;   // read before pass 2 overwrites it
    float M = block_max(m, shf);
    s = m == -INFINITY ? 0.0 : s * exp((double)m - (double)M);
    double S = block_sum<double>(s, shd);
    const double lse = (double)M + log(S);

    // pass 2: q, teacher statistics, gradient of weight * (ce + beta * kl) (a row without a
    // target has no CE term, so neither its onehot nor its q), and sum ts*z, sum ts for the KL
    // term (here, not in pass 1: the teacher row is read once). The teacher value is read
    // before ns is updated: ns may be ts.
    const float qcoef = (tgt >= 0 ? 1.0f : 0.0f) + bnt;
    double qlogq = 0.0, tz = 0.0, tsum = 0.0;
    auto elem = [&](int v, float x, float tv, float &znew) -> float {   // returns q
        float logq = (float)((double)x - lse);
        float q = expf(logq);
        if (ts) {
            tz += (double)tv * x;
            tsum += (double)tv;
        }
        if (q > 0.0f) qlogq += (double)q * logq;
        znew = x;
        if (grad) {
            znew = gscale * (qcoef * q - (v == tgt ? 1.0f : 0.0f) - beta * tv);
            if (gb) gb[(size_t)p * ldg + v] = __float2bfloat16_rn(znew);
        }
        return q;
    };
    auto one = [&](int v) {
        float zn, q = elem(v, zs[v], ts ? ts[v] : 0.0f, zn);
        if (ns) ns[v] += q;
        if (grad == 1) z[v] = zn;
    };
    for (int v = threadIdx.x; v < h; v += blockDim.x) one(v);
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        const int v = h + 4 * i;
        float4 x = zs4[i], t = ts ? ((const float4 *)(ts + h))[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f), zn, q;
        q.x = elem(v, x.x, t.x, zn.x);
        q.y = elem(v + 1, x.y, t.y, zn.y);
        q.z = elem(v + 2, x.z, t.z, zn.z);
        q.w = elem(v + 3, x.w, t.w, zn.w);
        if (ns) {
            float4 *a = (float4 *)(ns + h) + i, u = *a;
            u.x += q.x;
            u.y += q.y;
            u.z += q.z;
            u.w += q.w;
            *a = u;
        }
        if (grad == 1) ((float4 *)(z + h))[i] = zn;
    }
    for (int v = t0 + threadIdx.x; v < n; v += blockDim.x) one(v);
    if (grad)
        for (int v = n + threadIdx.x; v < V; v += blockDim.x) {
            if (grad == 1) z[v] = 0.0f;
            if (gb) gb[(size_t)p * ldg + v] = __float2bfloat16_rn(0.0f);
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
