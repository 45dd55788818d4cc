// Fused softmax + cross-entropy + KL-to-teachers, in place on the logits (one block per
// row: an online max/sum pass keeping the row in shared memory, then one pass writing the
// gradient and teacher stats),
// and argmax per row.
#include <math.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/xent.cuh"

// A kept row's dynamic shared memory (V logits, bf16: zb, and room to shift them to a 16-byte frame).
static size_t xent_row_bytes(int zb, int V) {
    return zb ? ((size_t)V + 8) * sizeof(__nv_bfloat16) : ((size_t)V + 4) * sizeof(float);
}

// Whether a row of V logits (bf16: zb) is kept in shared memory (xent_kl_kernel's ROW form); sets
// the kernels' shared memory up the first time.
static int xent_keeps(int zb, int V) {
    const size_t row = xent_row_bytes(zb, V);
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
            CUDA_CHECK(cudaFuncSetAttribute(xent_kl_kernel<true, __nv_bfloat16, __half>, a, XENT_ROW_MAX));
            // all of an SM's shared memory: two kept bf16 rows of the GPT-2 vocabulary (100 KB each)
            CUDA_CHECK(cudaFuncSetAttribute(xent_kl_kernel<true, __nv_bfloat16>,
                                            cudaFuncAttributePreferredSharedMemoryCarveout, 100));
            CUDA_CHECK(cudaFuncSetAttribute(xent_kl_kernel<true, __nv_bfloat16, __half>,
                                            cudaFuncAttributePreferredSharedMemoryCarveout, 100));
        }
    }
    return row_ok && row <= XENT_ROW_MAX;
}

// The fp16 scale of sums of n probability rows: the largest power of two (at most 2^15) keeping n
// times it below fp16's largest value (65504), so that probabilities down to ~2e-9 (at n <= 1)
// stay above fp16's subnormals.
static float teacher_half_scale(int n) {
    float s = 1.0f;
    while (s < 32768.0f && 2.0f * s * (float)n <= 65504.0f) s *= 2.0f;
    return s;
}

int cu_xent_teacher_half(swq_backend *be, int zb, const void *tS, const void *nS, int nzero, int P, int V) {
    cuda_ctx *c = CTX(be);
    if (c->precision != CU_BF16 || c->teacher_f32 || P <= 0 || V <= 0 || !xent_keeps(1, V)) return 0;
    // the copy's memory from the first sums on, even where they cannot go through it yet (the step
    // that fills the weight caches has float logits, and may issue the pending zero): a scratch made
    // later would come in the step after, and put the recording of the step's graph a step later
    if (!tS && nS && c->lazy_head && !c->head_f32)   // (the modes whose LM logits come in bf16)
        cu_scratch(be, &c->th, &c->th_cap, (size_t)P * cu_pad_ld(V) * sizeof(__half), "fp16 teacher sums");
    if (!zb) return 0;
    if (!tS) return nS && nzero && (!c->th_valid || c->th_src == (const float *)nS);
    return c->th_valid && c->th_src == (const float *)tS && c->th_rows == P && c->th_cols == V && (!nS || nS == tS);
}

void cu_teacher_half_meets(swq_backend *be, const char *lo, const char *hi, int write) {
    cuda_ctx *c = CTX(be);
    if (!c->th_valid) return;
    const size_t n = (size_t)c->th_rows * c->th_cols;
    const char *s = (const char *)c->th_src, *e = s + n * sizeof(float);
    if (!(s < hi && lo < e)) return;
    c->th_valid = 0;
    if (write && lo <= s && e <= hi) return;   // all of them overwritten: nothing to keep
    teacher_half_to_float_kernel<<<grid_for(n, 256), 256, 0, c->stream>>>((float *)c->th_src, (const __half *)c->th,
                                                                          c->th_ld, (size_t)c->th_rows, c->th_cols,
                                                                          1.0f / c->th_scale);
    CUDA_LAUNCH_CHECK();
}

void cu_xent_kl(swq_backend *be, void *logits, const void *zin, int zf32, int ldz, const int *target, const int *len,
                const void *tS, const void *tH,
                int n_teachers, double beta, void *nS, void *nH, int nzero, int thalf, double *acc, double weight,
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
    const size_t row = xent_row_bytes(zb, V);
    const int keep = xent_keeps(zb, V), g = grad ? (zkeep ? 2 : 1) : 0;
    const float bnt = (float)(beta * n_teachers), gs = (float)(grad_scale * weight);
    if (thalf) {   // (cu_xent_teacher_half: zb, keep, bf16 mode)
        cuda_ctx *c = CTX(be);
        const int ld = cu_pad_ld(V);
        if (!tS) {   // new sums (into a pending zero: cu_xent_teacher_half made the scratch)
            c->th_src = (const float *)nS;
            c->th_rows = P;
            c->th_cols = V;
            c->th_ld = ld;
        }
        const float tin = tS ? 1.0f / c->th_scale : 1.0f, tout = nS ? teacher_half_scale(n_teachers + 1) : 1.0f;
        xent_kl_kernel<true, __nv_bfloat16, __half><<<P, XENT_ROW_BLOCK_BF16, row, STREAM(be)>>>(
            (float *)logits, (const __nv_bfloat16 *)zin, ldz, gb, ldg, target, len, tS ? (const __half *)c->th : NULL, ld,
            tin, (const float *)tH, bnt, (float)beta, nS ? (__half *)c->th : NULL, tout, (float *)nH, nzero, acc, weight,
            gs, g, V);
        CUDA_LAUNCH_CHECK();
        if (nS) {
            c->th_valid = 1;
            c->th_scale = tout;
        }
        return;
    }
    if (zb) {
        auto kernel = keep ? xent_kl_kernel<true, __nv_bfloat16> : xent_kl_kernel<false, __nv_bfloat16>;
        kernel<<<P, keep ? XENT_ROW_BLOCK_BF16 : XENT_BLOCK, keep ? row : 0, STREAM(be)>>>(
            (float *)logits, (const __nv_bfloat16 *)zin, ldz, gb, ldg, target, len, (const float *)tS, V, 1.0f,
            (const float *)tH, bnt, (float)beta, (float *)nS, 1.0f, (float *)nH, nzero, acc, weight, gs, g, V);
    } else {
        auto kernel = keep ? xent_kl_kernel<true, float> : xent_kl_kernel<false, float>;
        kernel<<<P, keep ? XENT_ROW_BLOCK : XENT_BLOCK, keep ? row : 0, STREAM(be)>>>(
            (float *)logits, zin ? (const float *)zin : (const float *)logits, zin ? ldz : V, gb, ldg, target, len,
            (const float *)tS, V, 1.0f, (const float *)tH, bnt, (float)beta, (float *)nS, 1.0f, (float *)nH, nzero, acc,
            weight, gs, g, V);
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
