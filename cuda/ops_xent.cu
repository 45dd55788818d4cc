// Fused softmax + cross-entropy + KL-to-teachers, in place on the logits (one block per
// row: an online max/sum pass keeping the row in shared memory, then one pass writing the
// gradient and teacher stats),
// and argmax per row.
#include <math.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/xent.cuh"

void cu_xent_kl(swq_backend *be, void *logits, const void *zin, int zf32, int ldz, const int *target, const int *len,
                const void *tS, const void *tH,
                int n_teachers, double beta, void *nS, void *nH, int nzero, double *acc, double weight,
                double grad_scale, int grad, int P, int V) {
    if (P <= 0 || V <= 0) return;
    if (zin && grad == 1) {
        fprintf(stderr, "swq cuda: xent_kl: padded logits given with an in-place gradient\n");
        exit(1);
    }
    // the gradient's bf16 copy (bf16 mode), read by the head's backward GEMMs; rows padded to
    // 64-element multiples (an odd leading dimension slows those GEMMs 3-4x) with room for the
    // head adapter's du columns (the backward concatenates them)
    int ldg = cu_pad_ld(V + CU_ROWS_SPARE);
    __nv_bfloat16 *gb = grad ? (__nv_bfloat16 *)cu_bf16_slot_padded(be, (const float *)logits, P, V, ldg) : NULL;
    // grad 2 (the gradient read only by the head's backward GEMMs, which read its bf16 copy):
    // only that copy is written
    const int zkeep = grad == 2 && gb;
    if (zkeep) cu_bf16_sole(be, (const float *)logits);
    // a row of up to XENT_ROW_MAX bytes (the GPT-2 vocabulary's 201 KB in floats) is read from memory once
    const int zb = zin && !zf32;   // bf16 logits
    size_t row = zb ? ((size_t)V + 8) * sizeof(__nv_bfloat16) : ((size_t)V + 4) * sizeof(float);
    static int row_ok = -1;
    if (row_ok < 0) {
        int dev = 0, optin = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        row_ok = optin >= XENT_ROW_MAX + 1024;
        if (row_ok) {
            const cudaFuncAttribute a = cudaFuncAttributeMaxDynamicSharedMemorySize;
            CUDA_CHECK(cudaFuncSetAttribute(xent_kl_kernel<true, float>, a, XENT_ROW_MAX));
            CUDA_CHECK(cudaFuncSetAttribute(xent_kl_kernel<true, __nv_bfloat16>, a, XENT_ROW_MAX));
            // all of an SM's shared memory: two kept bf16 rows of the GPT-2 vocabulary (100 KB each)
            CUDA_CHECK(cudaFuncSetAttribute(xent_kl_kernel<true, __nv_bfloat16>,
                                            cudaFuncAttributePreferredSharedMemoryCarveout, 100));
        }
    }
    const int keep = row_ok && row <= XENT_ROW_MAX, g = grad ? (zkeep ? 2 : 1) : 0;
    const float bnt = (float)(beta * n_teachers), gs = (float)(grad_scale * weight);
    if (zb) {
        auto kernel = keep ? xent_kl_kernel<true, __nv_bfloat16> : xent_kl_kernel<false, __nv_bfloat16>;
        kernel<<<P, keep ? XENT_ROW_BLOCK_BF16 : XENT_BLOCK, keep ? row : 0, STREAM(be)>>>(
            (float *)logits, (const __nv_bfloat16 *)zin, ldz, gb, ldg, target, len, (const float *)tS, (const float *)tH,
            bnt, (float)beta, (float *)nS, (float *)nH, nzero, acc, weight, gs, g, V);
    } else {
        auto kernel = keep ? xent_kl_kernel<true, float> : xent_kl_kernel<false, float>;
        kernel<<<P, keep ? XENT_ROW_BLOCK : XENT_BLOCK, keep ? row : 0, STREAM(be)>>>(
            (float *)logits, zin ? (const float *)zin : (const float *)logits, zin ? ldz : V, gb, ldg, target, len,
            (const float *)tS, (const float *)tH, bnt, (float)beta, (float *)nS, (float *)nH, nzero, acc, weight, gs, g,
            V);
    }
    CUDA_LAUNCH_CHECK();
}

void cu_argmax_rows(swq_backend *be, int *out_host, const void *logits, int P, int V) {
    if (P <= 0) return;
    cuda_ctx *c = CTX(be);
    cu_scratch(be, (void **)&c->argmax_dev, &c->argmax_cap, (size_t)P * sizeof(int), "argmax_rows output");
    argmax_rows_kernel<<<P, ARGMAX_BLOCK, 0, c->stream>>>(c->argmax_dev, (const float *)logits, V);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpyAsync(out_host, c->argmax_dev, (size_t)P * sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}
