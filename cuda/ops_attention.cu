// Causal multi-head attention with materialized probabilities (att[B,NH,T,T]).
// Each product is one pointer-array batched GEMM over all B*NH (batch, head) pairs (a head
// is a column slice of qkv, hs wide); the scores are computed for the full T x T square and
// masked by the softmax kernels (future positions: probability 0, gradient 0).
//   scores[t1,t2] = q[t1] . k[t2] / sqrt(hs)      column-major (T,N): K^T x Q
//   out[t1]       = sum_t2 att[t1,t2] v[t2]       (N,N): V^T x att^T
// Backward: datt = dout . v  (T,N);  dv = att^T dout  (N,T);  dpre = att * (datt - sum att*datt);
//   dq = dpre k / sqrt(hs)  (N,N);  dk = dpre^T q / sqrt(hs)  (N,T).
// In bf16 mode qkv, att and dout are converted once (whole buffers) and the copies reused by
// every GEMM that reads them, the backward's included.
// In bf16 mode with 64-wide heads the forward and backward are fused flash-attention kernels
// instead (cuda/flash_attention.cuh, after FlashAttention-2): tiles of queries x 64 keys
// (forward) and keys x 64 queries (backward) on the tensor cores (mma.sync, bf16 operands, fp32
// accumulation, register-resident), the causal upper triangle skipped, the probabilities
// recomputed in the backward from per-row log-sum-exps kept in att (no T x T buffer).
#include <math.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/attention.cuh"
#include "cuda/flash_wgmma.cuh"

int cu_wgmma_compiled(void) {
    int *d, ok = 0;
    CUDA_CHECK(cudaMalloc(&d, sizeof(int)));
    wgmma_available_kernel<<<1, 1>>>(d);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpy(&ok, d, sizeof(int), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaFree(d));
    return ok;
}

static void flash_setup(void) {
    static int done;
    if (done) return;
    const cudaFuncAttribute smem = cudaFuncAttributeMaxDynamicSharedMemorySize;
    CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel<1>, smem, (int)fa_fwd_smem(1)));
    CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel<2>, smem, (int)fa_fwd_smem(2)));
    CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel<4>, smem, (int)fa_bwd_smem(4)));
    CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel<8>, smem, (int)fa_bwd_smem(8)));
    CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_wgmma_kernel, smem, (int)fw_smem_bytes()));
    done = 1;
}

// A block's query rows (forward) or keys (backward) where no switch sets them: 128 once the grid
// at 128 is at least 8 blocks an SM (measured on an H200: 2-3% faster each way at B=32 T=1024,
// 3-12% slower at B=8 T=512, where the 128-row grid leaves SMs idle in its last wave)
static int flash_block(swq_backend *be, int set, int B, int NH, int T) {
    if (set) return set;
    return (long long)B * NH * ((T + 127) / 128) >= 8LL * CTX(be)->sm_count ? 128 : 64;
}

static void flash_fwd(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH) {
    flash_setup();
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)qkv, (size_t)B * T * 3 * C);
    // the output's bf16 copy (the projection's GEMMs and the backward read it), and its floats only
    // where a reader took them last time
    const size_t n = (size_t)B * T * C;
    int sole = 0;
    __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot_auto(be, (const float *)out, n, &sole);
    if (!ob) ob = (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)out, n), sole = 0;
    float *of = sole ? NULL : (float *)out;
    const float sc = (float)(1.0 / sqrt((double)FA));
    CUtensorMap tq, tk;
    // on an H100/H200 the TMA and wgmma form (the same values), unless a block shape was asked for
    if (CTX(be)->wgmma && !CTX(be)->flash_rows && cu_tmap_bf16(&tq, qb, 3ull * C, (unsigned long long)B * T, 3ull * C, 64, FW_BM) &&
        cu_tmap_bf16(&tk, qb, 3ull * C, (unsigned long long)B * T, 3ull * C, 64, FW_BN)) {
        flash_fwd_wgmma_kernel<<<dim3((T + FW_BM - 1) / FW_BM, B * NH), FW_THREADS, fw_smem_bytes(), STREAM(be)>>>(
            tq, tk, of, ob, (float *)att, T, C, NH, sc);
        CUDA_LAUNCH_CHECK();
        if (sole) cu_bf16_sole(be, (const float *)out);
        return;
    }
    const int rows = flash_block(be, CTX(be)->flash_rows, B, NH, T);
    dim3 grid((T + rows - 1) / rows, B * NH);
    if (rows == 64)
        flash_fwd_kernel<1><<<grid, FA_THREADS, fa_fwd_smem(1), STREAM(be)>>>(of, ob, (float *)att, qb, T, C, NH, sc);
    else
        flash_fwd_kernel<2><<<grid, FA_THREADS, fa_fwd_smem(2), STREAM(be)>>>(of, ob, (float *)att, qb, T, C, NH, sc);
    CUDA_LAUNCH_CHECK();
    if (sole) cu_bf16_sole(be, (const float *)out);
}

static void flash_bwd(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv, const void *out,
                      const void *att, int B, int T, int C, int NH) {
    flash_setup();
    int rows = B * NH * T;
    float *D = (float *)scratch;
    // D from the output's bf16 copy, and dout's bf16 copy made on the way (dq accumulates by atomics:
    // its columns zeroed there; dk, dv are written whole)
    const __nv_bfloat16 *ob = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)out, (size_t)B * T * C);
    __nv_bfloat16 *db = (__nv_bfloat16 *)cu_bf16_slot(be, (const float *)dout, (size_t)B * T * C);
    flash_bwd_dot_kernel<<<(rows + 7) / 8, 256, 0, STREAM(be)>>>(D, (float *)dqkv, db, (const float *)dout, ob, B, T, C,
                                                                NH);
    CUDA_LAUNCH_CHECK();
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)qkv, (size_t)B * T * 3 * C);
    // bf16: dqkv is read only by the qkv linear's backward GEMMs, which read its bf16 copy: dK and dV
    // are written there directly, dQ (accumulated in fp32) converted after, and the copy is dqkv's
    // only form (rows with room for the adapter's du columns, as xent_kl's gradient)
    const int ldg = (3 * C + CU_ROWS_SPARE + 7) & ~7;
    __nv_bfloat16 *gb = CTX(be)->sole_off ? NULL
                                          : (__nv_bfloat16 *)cu_bf16_slot_padded(be, (const float *)dqkv, B * T,
                                                                                 3 * C, ldg);
    const int keys = flash_block(be, CTX(be)->flash_keys, B, NH, T);
    dim3 grid((T + keys - 1) / keys, B * NH);
    const float sc = (float)(1.0 / sqrt((double)FA));
    if (keys == 64)
        flash_bwd_kernel<4><<<grid, 128, fa_bwd_smem(4), STREAM(be)>>>((float *)dqkv, gb, ldg, qb, db, (const float *)att,
                                                                       D, T, C, NH, sc);
    else
        flash_bwd_kernel<8><<<grid, 256, fa_bwd_smem(8), STREAM(be)>>>((float *)dqkv, gb, ldg, qb, db, (const float *)att,
                                                                       D, T, C, NH, sc);
    CUDA_LAUNCH_CHECK();
    if (gb) {
        size_t n = (size_t)B * T * (C / 2);
        q_cols_to_bf16_kernel<<<grid_for(n, 256), 256, 0, STREAM(be)>>>(gb, ldg, (const float *)dqkv, 3 * C, B * T, C);
        CUDA_LAUNCH_CHECK();
        cu_bf16_sole(be, (const float *)dqkv);
    }
}

void cu_attention_fwd(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return;
    if (cu_flash_attention(be, C, NH)) {
        flash_fwd(be, out, att, qkv, B, T, C, NH);
        return;
    }
    const int hs = C / NH, C3 = 3 * C;
    const float sc = (float)(1.0 / sqrt((double)hs));
    const long long TT = (long long)T * T, sQ = (long long)T * C3, sO = (long long)T * C;
    const float *q = (const float *)qkv, *k = q + C, *v = q + 2 * C;
    float *a = (float *)att, *o = (float *)out;
    cu_bf16_prefetch(be, q, (size_t)B * T * C3);
    cu_gemm_bh(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, sc, k, C3, sQ, hs, q, C3, sQ, hs, 0.0f, a, T, NH * TT, TT, B,
               NH);
    int rows = B * NH * T;
    __nv_bfloat16 *ab = (__nv_bfloat16 *)cu_bf16_slot(be, a, (size_t)rows * T);
    causal_softmax_kernel<<<(rows + ATT_WARPS - 1) / ATT_WARPS, 32 * ATT_WARPS, 0, STREAM(be)>>>(a, ab, rows, T);
    CUDA_LAUNCH_CHECK();
    cu_gemm_bh(be, CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, 1.0f, v, C3, sQ, hs, a, T, NH * TT, TT, 0.0f, o, C, sO, hs, B,
               NH);
}

void cu_attention_bwd(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv, const void *out,
                      const void *att, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return;
    if (cu_flash_attention(be, C, NH)) {
        flash_bwd(be, dqkv, scratch, dout, qkv, out, att, B, T, C, NH);
        return;
    }
    const int hs = C / NH, C3 = 3 * C;
    const float sc = (float)(1.0 / sqrt((double)hs));
    const long long TT = (long long)T * T, sQ = (long long)T * C3, sO = (long long)T * C;
    const float *q = (const float *)qkv, *k = q + C, *v = q + 2 * C;
    float *dq = (float *)dqkv, *dk = dq + C, *dv = dq + 2 * C;
    const float *a = (const float *)att, *dO = (const float *)dout;
    float *d = (float *)scratch;
    cu_bf16_prefetch(be, q, (size_t)B * T * C3);
    // datt[t1,t2] = dout[t1] . v[t2]
    cu_gemm_bh(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, 1.0f, v, C3, sQ, hs, dO, C, sO, hs, 0.0f, d, T, NH * TT, TT, B,
               NH);
    // dv[t2] = sum_t1 att[t1,t2] dout[t1]
    cu_gemm_bh(be, CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, 1.0f, dO, C, sO, hs, a, T, NH * TT, TT, 0.0f, dv, C3, sQ, hs, B,
               NH);
    int rows = B * NH * T;
    __nv_bfloat16 *db = (__nv_bfloat16 *)cu_bf16_slot(be, d, (size_t)rows * T);
    softmax_bwd_kernel<<<(rows + ATT_WARPS - 1) / ATT_WARPS, 32 * ATT_WARPS, 0, STREAM(be)>>>(d, db, a, rows, T);
    CUDA_LAUNCH_CHECK();
    // dq[t1] = sc * sum_t2 dpre[t1,t2] k[t2];  dk[t2] = sc * sum_t1 dpre[t1,t2] q[t1]
    cu_gemm_bh(be, CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, sc, k, C3, sQ, hs, d, T, NH * TT, TT, 0.0f, dq, C3, sQ, hs, B,
               NH);
    cu_gemm_bh(be, CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, sc, q, C3, sQ, hs, d, T, NH * TT, TT, 0.0f, dk, C3, sQ, hs, B,
               NH);
}
