// LayerNorm forward/backward (eps 1e-5): one warp per row; dw/db by column sums.
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/layernorm.cuh"

static int ln_vec(int C, const void *a, const void *b, const void *c, const void *d, const void *e) {
    if (C % 128 || C > 128 * 8) return 0;
    const void *p[5] = {a, b, c, d, e};
    for (int i = 0; i < 5; i++)
        if ((uintptr_t)p[i] % 16) return 0;
    return C / 128;
}

static void ln_fwd_launch(swq_backend *be, void *out, __nv_bfloat16 *ob, int ldb, void *mean, void *rstd,
                          const void *inp, const void *w, const void *b, int N, int C, int v4);

void cu_layernorm_fwd(swq_backend *be, void *out, void *mean, void *rstd, const void *inp, const void *w,
                      const void *b, int N, int C) {
    if (N <= 0) return;
    // bf16: out only as its copy where no op read its floats last time (the GEMMs read the copy),
    // its rows as far apart as a K-extended reader asked (the adapter's columns then go after them)
    int sole = 0;
    const float *key = (const float *)out;
    const int ldb = cu_bf16_want_ld(be, (const float *)out, C);
    __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot_auto_rows(be, (const float *)out, N, C, ldb, &sole);
    if (!ob) ob = (__nv_bfloat16 *)cu_bf16_slot_padded(be, (const float *)out, N, C, ldb);
    if (sole) {
        cu_bf16_sole(be, (const float *)out);
        out = NULL;
    }
    cuda_ctx *c = CTX(be);
    const int v4 = ln_vec(C, out, inp, w, b, ob);
    if (c->ln_fuse && !out && ob && cu_ln_fused_v4(C) && v4 && ldb % 8 == 0) {
        // left pending: the K-extended linear that reads it next does it in its own launch (kext_input)
        cu_ln_flush(be);   // (one at a time)
        c->lnp = (struct cu_ln_pend){key, ob, ldb, N, C, v4, (float *)mean, (float *)rstd, (const float *)inp,
                                     (const float *)w, (const float *)b};
        return;
    }
    ln_fwd_launch(be, out, ob, ldb, mean, rstd, inp, w, b, N, C, v4);
}

int cu_ln_fused_v4(int C) {
    return C % 128 == 0 && (C / 128 <= 4 || C / 128 == 6 || C / 128 == 8) ? C / 128 : 0;
}

static void ln_pend_issue(swq_backend *be, struct cu_ln_pend *p) {
    if (!p->out) return;
    struct cu_ln_pend q = *p;
    p->out = NULL;
    ln_fwd_launch(be, NULL, q.ob, q.ldb, q.mean, q.rstd, q.inp, q.w, q.b, q.N, q.C, q.v4);
}
void cu_ln_flush(swq_backend *be) { ln_pend_issue(be, &CTX(be)->lnp); }
void cu_ln_take_flush(swq_backend *be) { ln_pend_issue(be, &CTX(be)->ln_take); }

static void ln_fwd_launch(swq_backend *be, void *out, __nv_bfloat16 *ob, int ldb, void *mean, void *rstd,
                          const void *inp, const void *w, const void *b, int N, int C, int v4) {
    const unsigned nb = (N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, nt = 32 * ROWS_PER_BLOCK;
    cudaStream_t st = STREAM(be);
    switch (v4) {
#define LN_FWD(V)                                                                                               \
    case V:                                                                                                     \
        layernorm_fwd_vec_kernel<V><<<nb, nt, 0, st>>>((float *)out, ob, ldb, (float *)mean, (float *)rstd,    \
                                                       (const float *)inp, (const float *)w, (const float *)b, N); \
        CUDA_LAUNCH_CHECK();                                                                                    \
        return;
        LN_FWD(1) LN_FWD(2) LN_FWD(3) LN_FWD(4) LN_FWD(5) LN_FWD(6) LN_FWD(7) LN_FWD(8)
#undef LN_FWD
    default: break;
    }
    layernorm_fwd_kernel<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0, STREAM(be)>>>(
        (float *)out, ob, ldb, (float *)mean, (float *)rstd, (const float *)inp, (const float *)w, (const float *)b, N, C);
    CUDA_LAUNCH_CHECK();
}

// layernorm_bwd_dinp_vec_kernel<V4, true>'s grid: the blocks that fit on the GPU at once (one wave,
// each striding over rows), its shared memory above the default 48 KB allowed (C = 1024)
static unsigned ln_fused_grid(swq_backend *be, int V4, int N) {
    static int per_sm[9];
    const int smem = (int)LN_BWD_SMEM(128 * V4), nt = 32 * ROWS_PER_BLOCK;
    const cudaFuncAttribute a = cudaFuncAttributeMaxDynamicSharedMemorySize;
    if (!per_sm[V4]) {
        switch (V4) {
#define LN_ATTR(V)                                                                                 \
    case V:                                                                                        \
        CUDA_CHECK(cudaFuncSetAttribute(layernorm_bwd_dinp_vec_kernel<V, true>, a, smem));         \
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(                                  \
            &per_sm[V4], layernorm_bwd_dinp_vec_kernel<V, true>, nt, smem));                       \
        break;
            LN_ATTR(1) LN_ATTR(2) LN_ATTR(3) LN_ATTR(4) LN_ATTR(5) LN_ATTR(6) LN_ATTR(7) LN_ATTR(8)
#undef LN_ATTR
        }
        if (per_sm[V4] < 1) per_sm[V4] = 1;
    }
    unsigned nb = (N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, most = (unsigned)per_sm[V4] * CTX(be)->sm_count;
    return nb < most ? nb : most;
}

void cu_layernorm_bwd(swq_backend *be, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                      const void *w, const void *mean, const void *rstd, int N, int C) {
    if (N <= 0) return;
    int fuse = 0;
    if (dinp) {
        // rows with room for a LoRA linear's du columns (its backward concatenates them)
        const int ldb = (C + CU_ROWS_SPARE + 7) & ~7;
        __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_bf16_slot_padded(be, (const float *)dinp, N, C, ldb);
        const unsigned nb = (N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, nt = 32 * ROWS_PER_BLOCK;
        cudaStream_t st = STREAM(be);
        // with dw and db (plain training): their column sums in the same pass
        const int v4 = ln_vec(C, dinp, dout, inp, w, ob);
        fuse = v4 && dw && db;
        const unsigned gb = fuse ? ln_fused_grid(be, v4, N) : nb;
        const size_t smem = fuse ? LN_BWD_SMEM(C) : 0;
        switch (fuse ? v4 : -v4) {
#define LN_BWD(V, F)                                                                                             \
    case (F ? V : -V):                                                                                            \
        layernorm_bwd_dinp_vec_kernel<V, F><<<gb, nt, smem, st>>>((float *)dinp, ob, ldb, (float *)dw, (float *)db, \
                                                               (const float *)dout, (const float *)inp,            \
                                                               (const float *)w, (const float *)mean,              \
                                                               (const float *)rstd, N);                            \
        break;
            LN_BWD(1, 0) LN_BWD(2, 0) LN_BWD(3, 0) LN_BWD(4, 0) LN_BWD(5, 0) LN_BWD(6, 0) LN_BWD(7, 0) LN_BWD(8, 0)
            LN_BWD(1, 1) LN_BWD(2, 1) LN_BWD(3, 1) LN_BWD(4, 1) LN_BWD(5, 1) LN_BWD(6, 1) LN_BWD(7, 1) LN_BWD(8, 1)
#undef LN_BWD
        default:
            layernorm_bwd_dinp_kernel<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0,
                                    STREAM(be)>>>((float *)dinp, ob, ldb, (const float *)dout, (const float *)inp,
                                                  (const float *)w, (const float *)mean, (const float *)rstd,
                                                  N, C);
        }
        CUDA_LAUNCH_CHECK();
    }
    if ((dw || db) && !fuse) {
        int rows_per;
        dim3 grid = col_sum_grid(CTX(be)->sm_count, N, C, &rows_per), block(32, 8);
        if (C % 4 == 0 && (uintptr_t)dout % 16 == 0 && (uintptr_t)inp % 16 == 0)
            layernorm_bwd_dwdb_kernel<true><<<grid, block, 0, STREAM(be)>>>(
                (float *)dw, (float *)db, (const float *)dout, (const float *)inp, (const float *)mean,
                (const float *)rstd, N, C, rows_per);
        else
            layernorm_bwd_dwdb_kernel<false><<<grid, block, 0, STREAM(be)>>>(
                (float *)dw, (float *)db, (const float *)dout, (const float *)inp, (const float *)mean,
                (const float *)rstd, N, C, rows_per);
        CUDA_LAUNCH_CHECK();
    }
}
