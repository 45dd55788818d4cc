// Fused softmax + cross-entropy + KL-to-teachers, in place on the logits (one block per
// row: an online max/sum pass, then one pass writing the gradient and teacher stats),
// and argmax per row.
#include <math.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"

#define XENT_BLOCK 512
#define ARGMAX_BLOCK 256

__global__ void __launch_bounds__(XENT_BLOCK) xent_kl_kernel(
    float *logits, __nv_bfloat16 *gb, int ldg, const int *target, const int *len, const float *tS, const float *tH, float bnt, float beta,
    float *nS, float *nH, double *acc, double weight, float gscale, int grad, int V) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int p = blockIdx.x;
    float *z = logits + (size_t)p * V;
    int n = len ? len[p] : V;
    if (n > V) n = V;
    if (n <= 0) {   // no valid column: no loss, no teacher mass, zero gradient
        if (grad)
            for (int v = threadIdx.x; v < V; v += blockDim.x) {
                z[v] = 0.0f;
                if (gb) gb[(size_t)p * ldg + v] = __float2bfloat16_rn(0.0f);
            }
        return;
    }
    const int tgt = target ? target[p] : -1;
    const float *ts = tS ? tS + (size_t)p * V : NULL;

    // pass 1: running max and sum of exp
    float m = -INFINITY;
    double s = 0.0;
    for (int v = threadIdx.x; v < n; v += blockDim.x) {
        float x = z[v];
        if (x > m) {
            s = s * (double)expf(m - x) + 1.0;
            m = x;
        } else if (x > -INFINITY) {
            s += (double)expf(x - m);
        }
    }
    float zt = (tgt >= 0 && threadIdx.x == 0) ? z[tgt] : 0.0f;   // read before pass 2 overwrites it
    float M = block_max(m, shf);
    s = m == -INFINITY ? 0.0 : s * exp((double)m - (double)M);
    double S = block_sum<double>(s, shd);
    const double lse = (double)M + log(S);

    // pass 2: q, teacher statistics, gradient of weight * (ce + beta * kl) (a row without a
    // target has no CE term, so neither its onehot nor its q), and sum ts*z, sum ts for the KL
    // term (here, not in pass 1: the teacher row is read once)
    const float qcoef = (tgt >= 0 ? 1.0f : 0.0f) + bnt;
    double qlogq = 0.0, tz = 0.0, tsum = 0.0;
    float *ns = nS ? nS + (size_t)p * V : NULL;
    for (int v = threadIdx.x; v < n; v += blockDim.x) {
        float x = z[v];
        float logq = (float)((double)x - lse);
        float q = expf(logq);
        float tv = ts ? ts[v] : 0.0f;   // before ns: it may be ts
        if (ts) {
            tz += (double)tv * x;
            tsum += (double)tv;
        }
        if (ns) ns[v] += q;
        if (q > 0.0f) qlogq += (double)q * logq;
        if (grad) {
            float g = qcoef * q - (v == tgt ? 1.0f : 0.0f) - beta * tv;
            z[v] = gscale * g;
            if (gb) gb[(size_t)p * ldg + v] = __float2bfloat16_rn(gscale * g);
        }
    }
    if (grad)
        for (int v = n + threadIdx.x; v < V; v += blockDim.x) {
            z[v] = 0.0f;
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

void cu_xent_kl(swq_backend *be, void *logits, const int *target, const int *len, const void *tS, const void *tH,
                int n_teachers, double beta, void *nS, void *nH, double *acc, double weight, double grad_scale,
                int grad, int P, int V) {
    if (P <= 0 || V <= 0) return;
    // the gradient's bf16 copy (bf16 mode), read by the head's backward GEMMs; rows padded to
    // 16-byte multiples when V is not (an odd leading dimension slows those GEMMs 3-4x)
    int ldg = V % 8 ? cu_pad_ld(V) : V;
    __nv_bfloat16 *gb = !grad ? NULL
                        : ldg != V ? (__nv_bfloat16 *)cu_bf16_slot_padded(be, (const float *)logits, P, V, ldg)
                                   : (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)logits, (size_t)P * V);
    xent_kl_kernel<<<P, XENT_BLOCK, 0, STREAM(be)>>>(
        (float *)logits, gb, ldg, target, len, (const float *)tS, (const float *)tH, (float)(beta * n_teachers),
        (float)beta, (float *)nS, (float *)nH, acc, weight, (float)(grad_scale * weight), grad, V);
    CUDA_LAUNCH_CHECK();
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

void cu_argmax_rows(swq_backend *be, int *out_host, const void *logits, int P, int V) {
    if (P <= 0) return;
    cuda_ctx *c = CTX(be);
    if ((size_t)P > c->argmax_cap) {
        if (c->argmax_dev) CUDA_CHECK(cudaFree(c->argmax_dev));
        c->argmax_cap = (size_t)P;
        cudaError_t e = cudaMalloc(&c->argmax_dev, c->argmax_cap * sizeof(int));
        if (e != cudaSuccess) {
            fprintf(stderr, "argmax_rows output: cudaMalloc of %zu bytes failed: %s\n",
                    c->argmax_cap * sizeof(int), cudaGetErrorString(e));
            exit(1);
        }
    }
    argmax_rows_kernel<<<P, ARGMAX_BLOCK, 0, c->stream>>>(c->argmax_dev, (const float *)logits, V);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpyAsync(out_host, c->argmax_dev, (size_t)P * sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}
