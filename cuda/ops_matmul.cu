// Linear layers through cuBLAS. Row-major X[N,IC] is column-major X^T with ld IC, so
//   out[N,OC] = inp @ W^T   is   out^T[OC,N] = W^T(as stored, op T) x inp^T   (T,N)
//   dinp[N,IC] += dout @ W  is   dinp^T[IC,N] = W^T x dout^T                   (N,N)
//   dW[OC,IC] += dout^T @ inp is dW^T[IC,OC] = inp^T x dout                     (N,T)
// The bias is added (unscaled) before the GEMM, which then accumulates with beta = 1.
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/matmul.cuh"

#define EW_BLOCK 256   // (bias_rows_kernel)

void cu_matmul_fwd(swq_backend *be, void *out, const void *inp, const void *w, const void *bias, int N, int IC,
                   int OC, double scale, int accumulate) {
    if (N <= 0 || OC <= 0) return;
    size_t n = (size_t)N * OC;
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias) {
        bias_rows_kernel<<<grid_for(n, EW_BLOCK), EW_BLOCK, 0, STREAM(be)>>>((float *)out, (const float *)bias, N,
                                                                            OC, accumulate);
        CUDA_LAUNCH_CHECK();
        beta = 1.0f;
    }
    if (IC <= 0) {   // no inner dimension: out is bias or 0 (or left as is)
        if (!bias && !accumulate) CUDA_CHECK(cudaMemsetAsync(out, 0, n * sizeof(float), STREAM(be)));
        return;
    }
    cu_gemm(be, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, (float)scale, (const float *)w, IC, 0, (const float *)inp,
            IC, 0, beta, (float *)out, OC, 0, 1);
}

void cu_matmul_bwd(swq_backend *be, void *dinp, void *dw, void *dbias, const void *dout, const void *inp,
                   const void *w, int N, int IC, int OC, double scale, int dinp_zero) {
    if (N <= 0 || OC <= 0) return;
    float b0 = dinp_zero ? 0.0f : 1.0f;   // dinp known zero: write, do not read
    if (dinp && IC > 0)
        cu_gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, (float)scale, (const float *)w, IC, 0,
                (const float *)dout, OC, 0, b0, (float *)dinp, IC, 0, 1);
    if (dw && IC > 0)
        cu_gemm(be, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, (float)scale, (const float *)inp, IC, 0,
                (const float *)dout, OC, 0, 1.0f, (float *)dw, IC, 0, 1);
    if (dbias) {
        int rows_per, lds = 0, ldb = 0;
        dim3 grid = col_sum_grid(CTX(be)->sm_count, N, OC, &rows_per), block(32, 8);
        cudaStream_t st = STREAM(be);
        // dout may exist only as its bf16 copy (lora_linear_bwd_gelu's dpre)
        const __nv_bfloat16 *sb = cu_bf16_sole_of(be, (const float *)dout, (size_t)N * OC, &lds, &ldb);
        if (sb) {
            int ld = ldb ? ldb : OC;
            if (OC % 4 == 0 && ld % 4 == 0 && (uintptr_t)sb % 8 == 0)
                col_sum_kernel<true><<<grid, block, 0, st>>>((float *)dbias, sb, ld, N, OC, rows_per);
            else
                col_sum_kernel<false><<<grid, block, 0, st>>>((float *)dbias, sb, ld, N, OC, rows_per);
        } else if (OC % 4 == 0 && (uintptr_t)dout % 16 == 0)
            col_sum_kernel<true><<<grid, block, 0, st>>>((float *)dbias, (const float *)dout, OC, N, OC, rows_per);
        else
            col_sum_kernel<false><<<grid, block, 0, st>>>((float *)dbias, (const float *)dout, OC, N, OC, rows_per);
        CUDA_LAUNCH_CHECK();
    }
}

// ---- linear with a LoRA adapter ----
// The CPU reference's order: the three products one by one (base, u = inp A^T, out += s u Bm^T;
// backward dinp, du, dB, dinp += du A, dA). The paths below fuse them per precision: in fp32 and
// tf32 (stop 24) the base product, u, then one pass for the bias, s u Bm^T and the GELU
// (lora_up_pack); backward dinp, du, dinp += du A, then dB and dA in one launch.
// SWQ_CUDA_LORA_MERGE=1: out = inp (w + s Bm A)^T with the adapter merged into a scratch copy of
// the weight (one pass over w, writing the bf16 copy too), so the forward is one GEMM instead of
// three and the backward's dinp one instead of two. Measured on an H100 it saves nothing at B=8
// T=512 bf16 and costs 7 ms at B=2 T=384 fp32 (the pass over every weight outweighs the rank-r
// products at few tokens), and in bf16 a delta below half a bf16 ulp of w vanishes from the
// forward, so it is off by default.

static const float *lora_merge(swq_backend *be, const void *w, const void *A, const void *Bm, int IC, int OC, int r,
                               double s) {
    cuda_ctx *c = CTX(be);
    size_t n = (size_t)OC * IC;
    cu_sole_in(be, w, n * sizeof(float));   // (an expanded weight's floats)
    cu_scratch(be, (void **)&c->lw, &c->lw_cap, n * sizeof(float), "merged LoRA weight scratch");
    __nv_bfloat16 *wb = (__nv_bfloat16 *)cu_bf16_slot(be, c->lw, n);
    if (!wb) cu_bf16_invalidate(be, c->lw, n * sizeof(float));
    int gx = (IC + 255) / 256;
    dim3 grid(gx, OC < 65535 ? OC : 65535);
    lora_merge_kernel<<<grid, 256, 0, c->stream>>>(c->lw, wb, (const float *)w, (const float *)A, (const float *)Bm,
                                                   IC, OC, r, (float)s);
    CUDA_LAUNCH_CHECK();
    return c->lw;
}

// (also writes out's bf16 copy when a reader asked for one last time: attention reads qkv in bf16)
// act: also act = gelu(out), with act's bf16 copy (the next linear reads it). bf16 mode with act
// (the MLP's first linear): out and act are written only as their bf16 copies, marked sole: their
// readers (the next linear's GEMMs, the backward's GELU in the DGELU epilogue) read those, and any
// other reader gets the floats back first (cu_sole_in).
static void lora_up_pack(swq_backend *be, float *out, const float *o, int ldp, const float *bias, const float *u,
                         int ldu, float *uout, const float *Bm, int N, int OC, int r, float s, float *act) {
    dim3 grid((OC + LORA_UP_COLS - 1) / LORA_UP_COLS, (N + LORA_UP_ROWS - 1) / LORA_UP_ROWS);
    cudaStream_t st = STREAM(be);
    const size_t n = (size_t)N * OC;
    int sole = 0;
    __nv_bfloat16 *ob = (__nv_bfloat16 *)(act ? cu_bf16_slot(be, out, n) : cu_bf16_slot_auto(be, out, n, &sole));
    __nv_bfloat16 *ab = act ? (__nv_bfloat16 *)cu_bf16_slot(be, act, n) : NULL;
    if (act) sole = ob && ab && !CTX(be)->sole_off;
    if (sole) {   // (where the GEMM wrote its product into out, the floats there are stale now)
        cu_bf16_sole(be, out);
        if (act) cu_bf16_sole(be, act);
        out = act = NULL;
    }
#define UP_PACK(RR) lora_up_pack_kernel<RR><<<grid, LORA_UP_COLS, 0, st>>>(out, ob, o, ldp, bias, u, ldu, uout, Bm, N, OC, r, s, act, ab)
    if (r <= 0) UP_PACK(0);
    else if (r <= 8) UP_PACK(8);
    else if (r <= 16) UP_PACK(16);
    else UP_PACK(32);
#undef UP_PACK
    CUDA_LAUNCH_CHECK();
}

void cu_lazy_materialize(swq_backend *be) {
    cuda_ctx *c = CTX(be);
    if (!c->lazy.out) return;
    const struct cu_lazy z = c->lazy;
    c->lazy.out = NULL;
    if (z.f32)
        CUDA_CHECK(cudaMemcpy2DAsync(z.out, (size_t)z.cols * sizeof(float), z.o, (size_t)z.ldo * sizeof(float),
                                     (size_t)z.cols * sizeof(float), z.rows, cudaMemcpyDeviceToDevice, c->stream));
    else
        cu_bf16_rows_to_float(be, z.out, (const __nv_bfloat16 *)z.o, z.ldo, z.rows, z.cols);
}

// The shared memory of lora_down_kext_kernel (its ring: dk_rows_times_at), set once.
static void dk_setup(void) {
    static int done;
    if (done) return;
    const cudaFuncAttribute a = cudaFuncAttributeMaxDynamicSharedMemorySize;
    CUDA_CHECK(cudaFuncSetAttribute(lora_down_kext_kernel<16>, a, dk_smem_bytes<16>));
    CUDA_CHECK(cudaFuncSetAttribute(lora_down_kext_kernel<32>, a, dk_smem_bytes<32>));
    done = 1;
}

// layernorm_down_kext_kernel<R, V4> (a pending layernorm done by kext_input's launch; R = 16 or 32
// as rp): its shared memory allowed once per instantiation, then the launch
static void ldk_launch(swq_backend *be, int v4, int grid, __nv_bfloat16 *xe, int ldxe, int ke, float *mean,
                       float *rstd, const float *inp, const float *lw, const float *lb, const __nv_bfloat16 *A,
                       int lda, float *u, int r, int rp, float s, int N, int nxb, __nv_bfloat16 *we, const float *Bm,
                       int OC, __nv_bfloat16 *ub, __nv_bfloat16 *bb) {
    static int attr_set[2][9];
    const cudaFuncAttribute a = cudaFuncAttributeMaxDynamicSharedMemorySize;
    const int R = rp <= 16 ? 16 : 32;
    cudaStream_t st = STREAM(be);
#define LDK(RR, V)                                                                                                     \
    if (R == RR && v4 == V) {                                                                                          \
        const size_t smem = ldk_smem_bytes<RR>(128 * V);                                                               \
        if (!attr_set[RR / 32][V]) {                                                                                   \
            CUDA_CHECK(cudaFuncSetAttribute(layernorm_down_kext_kernel<RR, V>, a, (int)smem));                         \
            attr_set[RR / 32][V] = 1;                                                                                  \
        }                                                                                                              \
        layernorm_down_kext_kernel<RR, V><<<grid, LDK_THREADS, smem, st>>>(xe, ldxe, ke, mean, rstd, inp, lw, lb, A,   \
                                                                           lda, u, r, rp, s, N, nxb, we, Bm, OC, ub,   \
                                                                           bb);                                        \
        CUDA_LAUNCH_CHECK();                                                                                           \
        return;                                                                                                        \
    }
    LDK(16, 1) LDK(16, 2) LDK(16, 3) LDK(16, 4) LDK(16, 6) LDK(16, 8)
    LDK(32, 1) LDK(32, 2) LDK(32, 3) LDK(32, 4) LDK(32, 6) LDK(32, 8)
#undef LDK
    fprintf(stderr, "cuda backend: no fused layernorm kernel for R = %d, C = %d\n", R, 128 * v4);
    exit(1);
}

// Rows kept for A after a cached weight's bf16 copy (cu_weight_ext): the forward and the
// backward must ask for the same number. A multiple of 8 (16-byte rows of the backward's
// [dout | du]); rx = r for the seeds' ranks, so that no zero rows or du columns are needed (the
// backward's du GEMM then writes its columns whole; padding K to 16 or 64 measured within 2%).
static int lora_ext_rows(int r) { return (r + 7) / 8 * 8; }
static_assert(CU_EXT_ROWS_MAX >= (LORA_UP_MAX_R + 7) / 8 * 8, "room for A's rows after an expanded weight");

// The extended K of a LoRA linear's forward: IC, then the adapter's three groups of rp columns.
static int kext_ld(int IC, int r) { return IC + 3 * ((r + 7) & ~7); }

// The input side of a K-extended GEMM and the adapter's columns of its weight side, by one launch
// (lora_down_kext_kernel): u = inp A^T (and u's bf16 copy where a reader asked for one last time:
// the backward's weight gradients; Bm's likewise: the backward's du GEMM), the scratch
// xe = [x | a_hi | a_lo | a_hi] (a = s u, x inp's bf16 copy; rows *ldxe apart), and we's columns after
// IC = [b_hi | b_hi | b_lo] (we: OC rows kext_ld apart). Where inp's copy has its rows padded that
// far (its producer asked to: cu_bf16_want_rows), xe is that copy, and only the adapter's columns
// are written; if inp is the output of a layernorm left pending (cu_layernorm_fwd), the same launch
// computes it there first (layernorm_down_kext_kernel, stop 22 of docs/PERF.md). w: the cached
// weight whose K-extended copy
// we is (else NULL): A's bf16 rows are then read from after its rows, where the backward's [w ; A]
// GEMM reads them (cu_weight_ext, made here: one conversion of A a step instead of two). xe, or
// NULL (nothing done) when inp's or A's bf16 copy is not 16-byte aligned or IC not a multiple of 8.
static __nv_bfloat16 *kext_input(swq_backend *be, const void *inp, const void *A, void *u, __nv_bfloat16 *we,
                                 const float *w, const void *Bm, int N, int IC, int OC, int r, double s, int *ldxe) {
    cuda_ctx *c = CTX(be);
    const int rp = (r + 7) & ~7, ke = kext_ld(IC, r);
    if (IC % 8) return NULL;   // (the callers issue a pending layernorm of inp where this is NULL)
    int ldx = IC;
    const void *xb = cu_bf16_rows_of(be, (const float *)inp, N, IC, &ldx);
    const int in_place = xb && ldx >= ke && ldx % 8 == 0;
    // inp's layernorm left pending for this launch (lora_fwd took it): done by it, in place, where
    // it can; else issued now, before anything reads inp
    const struct cu_ln_pend *lt = &c->ln_take;
    const int ln = lt->out == (const float *)inp && lt->N == N && lt->C == IC && cu_ln_fused_v4(IC) == lt->v4 &&
                   in_place && xb == lt->ob && ldx == lt->ldb;
    if (!ln) cu_ln_take_flush(be);
    if (!in_place) {   // (a copy with narrower padding is read as it is: the launch takes x's row distance)
        cu_bf16_want_rows(be, (const float *)inp, ke);
        if (!xb) xb = cu_bf16_copy(be, (const float *)inp, (size_t)N * IC), ldx = IC;
    }
    const void *ab = NULL;
    int lda = IC;
    if (w) {
        int ldw;
        const __nv_bfloat16 *base = (const __nv_bfloat16 *)cu_weight_ext(be, w, OC, IC, (const float *)A, r,
                                                                          lora_ext_rows(r), &ldw);
        if (base == we) ab = base + (size_t)OC * ldw, lda = ldw;
    }
    if (!ab) ab = cu_bf16_copy(be, (const float *)A, (size_t)r * IC);
    if (!xb || !ab || (uintptr_t)xb % 16 || (uintptr_t)ab % 16 || lda % 8 || ldx % 8) {
        cu_ln_take_flush(be);
        return NULL;
    }
    __nv_bfloat16 *xe = in_place ? (__nv_bfloat16 *)xb
                                 : (__nv_bfloat16 *)cu_scratch(be, &c->kext_x, &c->kext_x_cap,
                                                               (size_t)N * ke * sizeof(__nv_bfloat16),
                                                               "K-extended linear input");
    *ldxe = in_place ? ldx : ke;
    __nv_bfloat16 *ub = (__nv_bfloat16 *)cu_bf16_slot_wanted(be, (const float *)u, (size_t)N * r);
    __nv_bfloat16 *bb = (__nv_bfloat16 *)cu_bf16_slot_wanted(be, (const float *)Bm, (size_t)OC * r);
    dk_setup();
    const int wseg = OC * (3 * rp / 8), nwb = wseg / DK_THREADS + 1 < 128 ? wseg / DK_THREADS + 1 : 128;
    if (ln) {
        const struct cu_ln_pend q = *lt;
        c->ln_take.out = NULL;
        const int lb = (N + LDK_ROWS - 1) / LDK_ROWS;
        ldk_launch(be, q.v4, lb + nwb, xe, *ldxe, ke, q.mean, q.rstd, q.inp, q.w, q.b, (const __nv_bfloat16 *)ab, lda,
                   (float *)u, r, rp, (float)s, N, lb, we, (const float *)Bm, OC, ub, bb);
        return xe;
    }
    const int nxb = (N + DK_ROWS - 1) / DK_ROWS;
#define DOWN_KEXT(R)                                                                                                   \
    lora_down_kext_kernel<R><<<nxb + nwb, DK_THREADS, dk_smem_bytes<R>, c->stream>>>(                                  \
        xe, *ldxe, ke, (const __nv_bfloat16 *)xb, ldx, IC, (const __nv_bfloat16 *)ab, lda, (float *)u, r, rp, (float)s, \
        N,                                                                                                             \
        nxb, we, (const float *)Bm, OC, ub, bb)
    if (rp <= 16) DOWN_KEXT(16);
    else DOWN_KEXT(32);
#undef DOWN_KEXT
    CUDA_LAUNCH_CHECK();
    return xe;
}

// The LM head with its adapter in bf16 (rows of OC floats off 16-byte multiples: V = 50257):
// logits = [x | a] [w | b]^T, a = s u, u = inp A^T (the backward reads it), the adapter's columns
// split in bf16 pairs (kext_input), by one GEMM into the padded scratch, left there (cu_lazy) for
// xent_kl. Instead of the [w ; A] GEMM and the fused pass reading its padded rows and writing
// N x OC floats (3.5 ms of a CDT step at B=8 T=512 on an H100). The logits are
// written in bf16 (as the head without adapter, and PyTorch's autocast, write them), which halves
// the GEMM's writes and xent_kl's reads; SWQ_CUDA_HEAD_F32=1 keeps floats. A cached weight
// keeps its K-extended copy (cu_weight_kext); any other is copied into scratch rows kext_ld apart
// every time. 0 if it cannot.
static int lora_head_kext(swq_backend *be, void *out, void *u, const void *inp, const void *w, const void *A,
                          const void *Bm, int N, int IC, int OC, int r, double s) {
    cuda_ctx *c = CTX(be);
    const int ke = kext_ld(IC, r), ldo = cu_pad_ld(OC);
    __nv_bfloat16 *we = cu_weight_kext(be, (const float *)w, OC, IC, ke);
    const void *wb = NULL;
    if (!we) {
        wb = cu_bf16_copy(be, (const float *)w, (size_t)OC * IC);
        if (!wb) return 0;
        we = (__nv_bfloat16 *)cu_scratch(be, &c->kext_w, &c->kext_w_cap, (size_t)OC * ke * sizeof(__nv_bfloat16),
                                         "K-extended head weight");
    }
    int ldxe;
    const __nv_bfloat16 *xe = kext_input(be, inp, A, u, we, wb ? NULL : (const float *)w, Bm, N, IC, OC, r, s, &ldxe);
    if (!xe) return 0;
    if (wb)   // the weight's own columns (kext_input wrote the adapter's after them)
        CUDA_CHECK(cudaMemcpy2DAsync(we, (size_t)ke * sizeof(__nv_bfloat16), wb, (size_t)IC * sizeof(__nv_bfloat16),
                                     (size_t)IC * sizeof(__nv_bfloat16), OC, cudaMemcpyDeviceToDevice, c->stream));
    const size_t es = c->head_f32 ? sizeof(float) : sizeof(__nv_bfloat16);
    void *o = cu_scratch(be, (void **)&c->pad, &c->pad_cap, (size_t)N * ldo * es, "padded GEMM output scratch");
    if (c->head_f32) cu_gemm_bf16(be, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, ke, 1.0f, we, ke, xe, ldxe, 0.0f, (float *)o, ldo);
    else cu_gemm_bf16_out(be, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, ke, 1.0f, we, ke, xe, ldxe, (__nv_bfloat16 *)o, ldo);
    c->lazy = (struct cu_lazy){(float *)out, o, ldo, N, OC, c->head_f32};
    return 1;
}

// A body linear with its adapter in bf16 (a cached weight, a bias, rows of 16-byte multiples):
// out = [x | a] [w | b]^T + bias by one cuBLASLt GEMM, a = s u, u = inp A^T (the backward reads
// it), the adapter's columns split in bf16 pairs after x's copy in scratch and after the weight's
// rows in its K-extended copy (cu_weight_kext): u and both extensions by one launch
// (kext_input); then the GEMM, whose epilogue adds the bias and either the GELU (act: out and act
// written only as their bf16 copies), or the residual (res, as the GEMM's C: *res_done), or
// neither (out's bf16 copy alone where its readers take only that, as attention does qkv's). Instead of the [w ; A] GEMM into padded fp32
// rows and the fused pass reading them back (lora_up_pack) and, with res, an add. -1 if it cannot;
// else what lora_linear_fwd_paths returns.
static int lora_body_kext(swq_backend *be, void *out, void *act, void *u, const void *inp, const void *w,
                          const void *bias, const void *A, const void *Bm, int N, int IC, int OC, int r, double s,
                          const float *res, int *res_done) {
    cuda_ctx *c = CTX(be);
    const int ke = kext_ld(IC, r);
    if (!c->body_kext || c->lt_off || !bias || (uintptr_t)bias % 16 || OC % 8) return -1;
    if (act && (res || c->sole_off)) return -1;
    __nv_bfloat16 *we = IC % 8 ? NULL : cu_weight_kext(be, (const float *)w, OC, IC, ke);
    int ldxe = ke;
    const __nv_bfloat16 *xe = we ? kext_input(be, inp, A, u, we, (const float *)w, Bm, N, IC, OC, r, s, &ldxe) : NULL;
    if (!xe) return -1;
    const size_t n = (size_t)N * OC;
    if (act) {
        // act's copy with its rows as far apart as its K-extended reader (the MLP's second linear)
        // asked, so that its adapter's columns go in place (kext_input)
        const int ld_act = cu_bf16_want_ld(be, (const float *)act, OC);
        void *ob = cu_bf16_slot(be, (const float *)out, n);
        void *abf = cu_bf16_slot_padded(be, (const float *)act, N, OC, ld_act);
        if (ob && abf && cu_gemm_gelu_lt(be, OC, N, ke, we, ke, xe, ldxe, (const float *)bias, ob, abf, ld_act)) {
            cu_bf16_sole(be, (const float *)out);
            cu_bf16_sole(be, (const float *)act);
            return 1;
        }
        cu_bf16_invalidate(be, out, n * sizeof(float));   // the slots were not filled
        cu_bf16_invalidate(be, act, n * sizeof(float));
    } else if (res) {
        if (cu_gemm_bias_lt(be, OC, N, ke, we, ke, xe, ldxe, (const float *)bias, res, (float *)out, OC)) {
            *res_done = 1;
            return 0;
        }
    } else {
        int sole;
        void *ob = cu_bf16_slot_auto(be, (const float *)out, n, &sole);
        if (ob && sole && cu_gemm_bias_bf16_lt(be, OC, N, ke, we, ke, xe, ldxe, (const float *)bias, ob, OC)) {
            cu_bf16_sole(be, (const float *)out);
            return 0;
        }
        if (ob) cu_bf16_invalidate(be, out, n * sizeof(float));
        if (cu_gemm_bias_lt(be, OC, N, ke, we, ke, xe, ldxe, (const float *)bias, NULL, (float *)out, OC)) return 0;
    }
    // no cuBLASLt plan for the shape: the product in floats, then the bias (and GELU) pass
    cu_gemm_bf16(be, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, ke, 1.0f, we, ke, xe, ldxe, 0.0f, (float *)out, OC);
    lora_up_pack(be, (float *)out, (const float *)out, OC, (const float *)bias, NULL, 0, NULL, NULL, N, OC, 0, 0.0f,
                 (float *)act);
    return 1;
}

// The forward's paths; 1 where the fused pass wrote act too, 0 where gelu_fwd still has to. res
// (lora_linear_res_fwd): *res_done = 1 where the path added it: only the cuBLASLt bias GEMM, which
// reads it as its C (adding it in the fused pass instead measured 1.3 ms slower a CDT step than
// the separate add at B=8 T=512 bf16: the pass is latency-bound).
static int lora_linear_fwd_paths(swq_backend *be, void *out, void *act, void *u, const void *inp, const void *w,
                                 const void *bias, const void *A, const void *Bm, int N, int IC, int OC, int r,
                                 double s, const float *res, int *res_done) {
    cuda_ctx *c = CTX(be);
    const int bf = c->precision == CU_BF16;
    *res_done = 0;
    // Rows of OC floats that are not 16-byte multiples (the LM head, V = 50257) slow the bf16 GEMM
    // 6x: there the product goes to a scratch with padded rows; without bias, GELU or residual (the
    // head) it may stay there for xent_kl (cu_lazy), else a pass packs it into out. (fp32 and tf32
    // GEMMs take the same time at V and at padded rows, H100, stop 24: no scratch there.)
    const int pad = bf && OC % 4 && (size_t)N * OC >= ((size_t)1 << 20);
    const int lazy = pad && !bias && !act && !res && c->lazy_head;
    // (a pending layernorm of inp that kext_input did not take is issued before any other path reads inp)
    if (bf && IC > 0 && 0 < r && r <= LORA_UP_MAX_R && !c->lora_merge) {
        if (lazy && lora_head_kext(be, out, u, inp, w, A, Bm, N, IC, OC, r, s)) return 1;
        int k = pad ? -1 : lora_body_kext(be, out, act, u, inp, w, bias, A, Bm, N, IC, OC, r, s, res, res_done);
        if (k >= 0) return k;
        cu_ln_take_flush(be);
        // the base and down products as one GEMM, [o | u] = inp [w ; A]^T, over the kept bf16 copy
        // of a cached weight with A's rows after it (u from a separate rank-r GEMM cost more than
        // the 16 extra rows), then the fused pass (bias, s u Bm^T, u saved for the backward)
        const int rx = lora_ext_rows(r), M = OC + rx;
        int ldw;
        const void *we = cu_weight_ext(be, (const float *)w, OC, IC, (const float *)A, r, rx, &ldw);
        const void *xb = we ? cu_bf16_copy(be, (const float *)inp, (size_t)N * IC) : NULL;
        if (xb) {
            int ldo = (size_t)N * M >= ((size_t)1 << 20) ? cu_pad_ld(M) : (M + 3) & ~3;
            float *o = (float *)cu_scratch(be, (void **)&c->pad, &c->pad_cap, (size_t)N * ldo * sizeof(float),
                                           "padded GEMM output scratch");
            cu_gemm_bf16(be, CUBLAS_OP_T, CUBLAS_OP_N, M, N, IC, 1.0f, we, ldw, xb, IC, 0.0f, o, ldo);
            lora_up_pack(be, (float *)out, o, ldo, (const float *)bias, o + OC, ldo, (float *)u, (const float *)Bm, N,
                         OC, r, (float)s, (float *)act);
            return 1;
        }
    }
    cu_ln_take_flush(be);
    if ((bf || c->f32_fuse) && IC > 0 && r <= LORA_UP_MAX_R && !c->lora_merge) {
        // the base product (beta 0), then one pass adding the bias and the adapter's s u Bm^T (in
        // fp32) in place (from the padded scratch where pad), with the GELU where act, instead of
        // a bias pass, two GEMMs reading and writing out and a GELU pass. fp32 and tf32 since stop
        // 24 (SWQ_CUDA_F32_FUSE=0: the CPU reference's order below).
        // bf16, no adapter, with the GELU (plain training's MLP-in): bias and GELU in the GEMM's
        // epilogue, out and act written only as their bf16 copies (sole, as in lora_up_pack)
        if (bf && r <= 0 && act && bias && !pad && !c->sole_off) {
            const void *wb = cu_bf16_copy(be, (const float *)w, (size_t)OC * IC);
            const void *xb = cu_bf16_copy(be, (const float *)inp, (size_t)N * IC);
            void *ob = cu_bf16_slot(be, (const float *)out, (size_t)N * OC);
            void *ab = cu_bf16_slot(be, (const float *)act, (size_t)N * OC);
            if (ob && ab && cu_gemm_gelu_lt(be, OC, N, IC, wb, IC, xb, IC, (const float *)bias, ob, ab, OC)) {
                cu_bf16_sole(be, (const float *)out);
                cu_bf16_sole(be, (const float *)act);
                return 1;
            }
            cu_bf16_invalidate(be, out, (size_t)N * OC * sizeof(float));   // the slots were not filled
            cu_bf16_invalidate(be, act, (size_t)N * OC * sizeof(float));
        }
        // no adapter (plain training): the bias in the GEMM's epilogue, unless the output's bf16
        // copy is wanted (the fused pass below writes it on the way)
        if (bf && r <= 0 && bias && !pad && !cu_bf16_wanted(be, (const float *)out, (size_t)N * OC)) {
            const void *wb = cu_bf16_copy(be, (const float *)w, (size_t)OC * IC);
            const void *xb = cu_bf16_copy(be, (const float *)inp, (size_t)N * IC);
            if (cu_gemm_bias_lt(be, OC, N, IC, wb, IC, xb, IC, (const float *)bias, res, (float *)out, OC)) {
                *res_done = 1;
                return 0;
            }
        }
        int ldo = pad ? cu_pad_ld(OC) : OC;
        if (lazy && r <= 0) {   // left in bf16 in the padded rows (cu_lazy; bf16 only, as pad)
            __nv_bfloat16 *ob = (__nv_bfloat16 *)cu_scratch(be, (void **)&c->pad, &c->pad_cap,
                                                            (size_t)N * ldo * sizeof(__nv_bfloat16),
                                                            "padded GEMM output scratch");
            const void *wb = cu_bf16_copy(be, (const float *)w, (size_t)OC * IC);
            const void *xb = cu_bf16_copy(be, (const float *)inp, (size_t)N * IC);
            cu_gemm_bf16_out(be, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, 1.0f, wb, IC, xb, IC, ob, ldo);
            c->lazy = (struct cu_lazy){(float *)out, ob, ldo, N, OC, 0};
            return 1;
        }
        float *o = pad ? (float *)cu_scratch(be, (void **)&c->pad, &c->pad_cap, (size_t)N * ldo * sizeof(float),
                                             "padded GEMM output scratch")
                       : (float *)out;
        cu_gemm(be, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, 1.0f, (const float *)w, IC, 0, (const float *)inp, IC, 0,
                0.0f, o, ldo, 0, 1);
        if (r > 0) cu_matmul_fwd(be, u, inp, A, NULL, N, IC, r, 1.0, 0);
        if (pad || r > 0 || bias || act) {
            lora_up_pack(be, (float *)out, o, ldo, (const float *)bias, (const float *)u, r, NULL, (const float *)Bm,
                         N, OC, r, (float)s, (float *)act);
            return 1;
        }
        return 0;
    }
    if (IC <= 0 || r <= 0 || !CTX(be)->lora_merge) {   // in the CPU reference's order
        cu_matmul_fwd(be, out, inp, w, bias, N, IC, OC, 1.0, 0);
        if (r <= 0) return 0;
        cu_matmul_fwd(be, u, inp, A, NULL, N, IC, r, 1.0, 0);
        cu_matmul_fwd(be, out, u, Bm, NULL, N, r, OC, s, 1);
        return 0;
    }
    const float *wm = lora_merge(be, w, A, Bm, IC, OC, r, s);
    cu_matmul_fwd(be, out, inp, wm, bias, N, IC, OC, 1.0, 0);
    cu_matmul_fwd(be, u, inp, A, NULL, N, IC, r, 1.0, 0);
    return 0;
}

void cu_lora_linear_fwd(swq_backend *be, void *out, void *act, void *u, const void *inp, const void *w,
                        const void *bias, const void *A, const void *Bm, int N, int IC, int OC, int r, double s,
                        const void *res) {
    if (N <= 0 || OC <= 0) return;
    int res_done;
    if (!lora_linear_fwd_paths(be, out, act, u, inp, w, bias, A, Bm, N, IC, OC, r, s, (const float *)res,
                               &res_done) && act)
        cu_gelu_fwd(be, act, out, (size_t)N * OC);
    if (res && !res_done) cu_add(be, out, out, res, (size_t)N * OC);   // (fp32 sums commute: as the model's add)
}

// lora_linear_bwd_gelu's input gradient (bf16): dpre = gelu'(pre) * (A B) (A [IC, K], B [K, N] bf16
// column-major) by one cuBLASLt GEMM with the DGELU epilogue, written only as dpre's bf16 copy, its
// rows padded for the du columns of the next backward (rx > 0: the next linear's adapter rows,
// as cu_bf16_rows_padded makes them), instead of the product in fp32 and a GELU pass reading it
// back with pre. Without a cuBLASLt plan: exactly those two steps, through scratch.
struct gelu_dinp { const __nv_bfloat16 *preb; const float *pre; float *dpre, *scratch; };

static void gelu_dinp_gemm(swq_backend *be, const struct gelu_dinp *g, int IC, int N, int K, const void *Ab, int lda,
                           const void *Bb, int ldb, int rx) {
    int ldp = rx ? (IC + rx + 7) & ~7 : IC;
    void *db = cu_bf16_slot_padded(be, g->dpre, N, IC, ldp);
    if (db && cu_gemm_dgelu_lt(be, IC, N, K, Ab, lda, Bb, ldb, g->preb, db, ldp)) {
        cu_bf16_sole(be, g->dpre);
        return;
    }
    cu_bf16_invalidate(be, g->dpre, (size_t)N * IC * sizeof(float));   // the slot was not filled
    cu_sole_in(be, g->pre, (size_t)N * IC * sizeof(float));
    cu_gemm_bf16(be, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, K, 1.0f, Ab, lda, Bb, ldb, 0.0f, g->scratch, IC);
    cu_gelu_bwd(be, g->dpre, g->pre, g->scratch, (size_t)N * IC, 1);
}

static void lora_bwd(swq_backend *be, void *dinp, void *dw, void *dbias, void *dA, void *dB, void *du,
                     const void *dout, const void *inp, const void *u, const void *w, const void *A, const void *Bm,
                     int N, int IC, int OC, int r, double s, int dinp_zero, const struct gelu_dinp *g);

// The model's unfused steps for lora_linear_bwd_gelu: the input gradient into scratch (written, not
// added to), then the GELU pass into dpre.
static void gelu_bwd_unfused(swq_backend *be, const struct gelu_dinp *g, void *dw, void *dbias, void *dA, void *dB,
                             void *du, const void *dout, const void *inp, const void *u, const void *w, const void *A,
                             const void *Bm, int N, int IC, int OC, int r, double s) {
    const size_t n = (size_t)N * IC;
    cu_sole_in(be, g->pre, n * sizeof(float));
    if (OC > 0) lora_bwd(be, g->scratch, dw, dbias, dA, dB, du, dout, inp, u, w, A, Bm, N, IC, OC, r, s, 1, NULL);
    else CUDA_CHECK(cudaMemsetAsync(g->scratch, 0, n * sizeof(float), STREAM(be)));
    cu_gelu_bwd(be, g->dpre, g->pre, g->scratch, n, 1);
}

void cu_lora_linear_bwd_gelu(swq_backend *be, void *dpre, void *scratch, const void *pre, void *dw, void *dbias,
                             void *dA, void *dB, void *du, const void *dout, const void *inp, const void *u,
                             const void *w, const void *A, const void *Bm, int N, int IC, int OC, int r, double s) {
    if (N <= 0 || IC <= 0) return;
    cuda_ctx *c = CTX(be);
    struct gelu_dinp g = {NULL, (const float *)pre, (float *)dpre, (float *)scratch};
    if (c->precision == CU_BF16 && !c->lt_off && !c->lora_merge && OC > 0 && IC % 8 == 0 && r <= LORA_UP_MAX_R)
        g.preb = (const __nv_bfloat16 *)cu_bf16_copy(be, (const float *)pre, (size_t)N * IC);
    if (g.preb) lora_bwd(be, dpre, dw, dbias, dA, dB, du, dout, inp, u, w, A, Bm, N, IC, OC, r, s, 1, &g);
    else gelu_bwd_unfused(be, &g, dw, dbias, dA, dB, du, dout, inp, u, w, A, Bm, N, IC, OC, r, s);
}

void cu_lora_linear_bwd(swq_backend *be, void *dinp, void *dw, void *dbias, void *dA, void *dB, void *du,
                        const void *dout, const void *inp, const void *u, const void *w, const void *A,
                        const void *Bm, int N, int IC, int OC, int r, double s, int dinp_zero) {
    lora_bwd(be, dinp, dw, dbias, dA, dB, du, dout, inp, u, w, A, Bm, N, IC, OC, r, s, dinp_zero, NULL);
}

// g: dinp is lora_linear_bwd_gelu's dpre (see gelu_dinp_gemm)
static void lora_bwd(swq_backend *be, void *dinp, void *dw, void *dbias, void *dA, void *dB, void *du,
                     const void *dout, const void *inp, const void *u, const void *w, const void *A, const void *Bm,
                     int N, int IC, int OC, int r, double s, int dinp_zero, const struct gelu_dinp *g) {
    if (N <= 0 || OC <= 0) return;
    cuda_ctx *c = CTX(be);
    int merge = c->lora_merge && IC > 0 && r > 0 && dinp;
    // bf16, a cached weight: dinp (+)= [dout | du] [w ; A] as one GEMM (K = OC + rx) over the weight's
    // copy with A's rows (see the forward) and dout's bf16 copy with du in its spare columns (made
    // here, before the du GEMM reads dout), instead of the base GEMM and a rank-r one reading and
    // writing all of dinp again
    const int rx = lora_ext_rows(r);
    const void *we = NULL;
    __nv_bfloat16 *db = NULL;
    int ldd = 0, ldw = IC;
    if (c->precision == CU_BF16 && 0 < r && r <= LORA_UP_MAX_R && IC > 0 && !dw && !dbias && !merge) {
        if (dinp) we = cu_weight_ext(be, (const float *)w, OC, IC, (const float *)A, r, rx, &ldw);
        // (no dinp: the same operand for the weight gradients' launches, du in its spare columns)
        if (we || !dinp) db = cu_bf16_rows_padded(be, (const float *)dout, N, OC, OC + rx, &ldd);
    }
    if (g && !db && r > 0) {   // no concatenated GEMM to put the GELU in
        gelu_bwd_unfused(be, g, dw, dbias, dA, dB, du, dout, inp, u, w, A, Bm, N, IC, OC, r, s);
        return;
    }
    if (g && !db) {   // no adapter: the weight's gradients, then the input's with the GELU in its epilogue
        cu_matmul_bwd(be, NULL, dw, dbias, dout, inp, w, N, IC, OC, 1.0, 0);
        const void *wb = cu_bf16_copy(be, (const float *)w, (size_t)OC * IC);
        const void *ob = cu_bf16_copy(be, (const float *)dout, (size_t)N * OC);
        gelu_dinp_gemm(be, g, IC, N, OC, wb, IC, ob, OC, 0);
        return;
    }
    if (!db) {
        const void *wd = merge ? lora_merge(be, w, A, Bm, IC, OC, r, s) : w;
        cu_matmul_bwd(be, dinp, dw, dbias, dout, inp, wd, N, IC, OC, 1.0, dinp_zero);
    }
    if (r <= 0) return;
    // du = s dout Bm (beta 0: overwritten), then dB += s dout^T u and dA += du^T inp (bf16: both
    // in one launch, dout and du read from the concatenated operand where there is one), then dinp.
    // There, with rx = r and that launch to come, du goes straight into the operand's spare columns
    // in bf16, and its floats come from the launch (which reads those columns anyway), instead of a
    // float GEMM and a converting pass.
    // A wide dout (qkv's, the MLP's first linear's, the LM head's): du and dB by one pass over it
    // (cu_lora_dout_grads), then dA alone.
    const int lg = IC > 0 && c->precision == CU_BF16 && !c->lora_grads_off && r % 8 == 0 && r <= 32;
    const void *ub = lg ? cu_bf16_copy(be, (const float *)u, (size_t)N * r) : NULL;
    int dg = 0;
    if (lg && db && c->dout_grads_oc > 0 && OC >= c->dout_grads_oc) {
        const void *bmb = cu_bf16_copy(be, (const float *)Bm, (size_t)OC * r);
        dg = bmb && ub && cu_lora_dout_grads(be, (float *)du, (float *)dB, db, ldd, bmb, ub, r, N, OC, r, (float)s);
    }
    const void *bb = !dg && db && lg && rx == r && OC % 8 == 0 ? cu_bf16_copy(be, (const float *)Bm, (size_t)OC * r) : NULL;
    if (bb)
        cu_gemm_bf16_out(be, CUBLAS_OP_N, CUBLAS_OP_N, r, N, OC, (float)s, bb, r, db, ldd, db + OC, ldd);
    else if (!dg)
        cu_gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, r, N, OC, (float)s, (const float *)Bm, r, 0, (const float *)dout, OC, 0,
                0.0f, (float *)du, r, 0, 1);
    if (IC > 0 && db && !bb) cu_bf16_convert_rows(be, db + OC, ldd, (const float *)du, N, r, rx);
    // the weight gradients before the input's GEMM: dout's copy is still in L2 from the du GEMM
    int lg_done = 0;
    if (lg) {
        int ldo = ldd, ldu = ldd;
        const void *ob = db, *dub = db && OC % 8 == 0 ? db + OC : NULL;
        if (!ob) ob = cu_bf16_rows_padded(be, (const float *)dout, N, OC, OC, &ldo);
        if (!ob) ob = cu_bf16_copy(be, (const float *)dout, (size_t)N * OC), ldo = OC;
        if (!dub) dub = cu_bf16_copy(be, (const float *)du, (size_t)N * r), ldu = r;
        int ldi = IC;   // (the input's copy may have its rows padded: the forward's K-extended operand)
        const void *ib = cu_bf16_rows_of(be, (const float *)inp, N, IC, &ldi);
        if (!ib) ib = cu_bf16_copy(be, (const float *)inp, (size_t)N * IC), ldi = IC;
        lg_done = cu_lora_weight_grads(be, dg ? NULL : (float *)dB, ob, ldo, ub, r, (float *)dA, ib, ldi, dub, ldu,
                                       bb ? (float *)du : NULL, N, OC, IC, r, (float)s);
    }
    if (IC > 0 && db && dinp) {
        if (g) gelu_dinp_gemm(be, g, IC, N, OC + rx, we, ldw, db, ldd, rx);
        else
            cu_gemm_bf16(be, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC + rx, 1.0f, we, ldw, db, ldd,
                         dinp_zero ? 0.0f : 1.0f, (float *)dinp, IC);
    } else if (IC > 0 && !merge && dinp)
        cu_gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, r, 1.0f, (const float *)A, IC, 0, (const float *)du, r, 0, 1.0f,
                (float *)dinp, IC, 0, 1);
    if (lg_done) return;
    if (bb) cu_bf16_rows_to_float(be, (float *)du, db + OC, ldd, N, r);   // (the launch was not taken: du's floats)
    // fp32 and tf32: dB and dA in one launch (not in bf16 mode, where alone dg can be set)
    if (cu_lora_weight_grads_f32(be, (float *)dB, (const float *)dout, OC, (const float *)u, r,
                                 IC > 0 ? (float *)dA : NULL, (const float *)inp, IC, (const float *)du, r, N, OC, IC,
                                 r, (float)s))
        return;
    if (!dg)
        cu_gemm(be, CUBLAS_OP_N, CUBLAS_OP_T, r, OC, N, (float)s, (const float *)u, r, 0, (const float *)dout, OC, 0,
                1.0f, (float *)dB, r, 0, 1);
    if (IC > 0)
        cu_gemm(be, CUBLAS_OP_N, CUBLAS_OP_T, IC, r, N, 1.0f, (const float *)inp, IC, 0, (const float *)du, r, 0, 1.0f,
                (float *)dA, IC, 0, 1);
}
