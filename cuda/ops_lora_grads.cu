// The adapter's two weight gradients of a LoRA linear's backward in one launch (bf16 mode):
//   dB[OC, r] += s dout^T u        dA[r, IC] += du^T inp
// Both are products with a long reduction (the N token rows) and a skinny output; cuBLAS takes
// ~12 us each at GPT-2 shapes, mostly latency, so one grid runs both in about the time of one.
// Each block owns 64 output rows m of one product and a slice of the N rows, reading X [N, M]
// and Y [N, r] (bf16, 16-byte aligned rows) through a 3-stage cp.async pipeline into mma.sync;
// slices add into the output with atomics (the order, hence the rounding, varies from run to
// run, as in flash attention's dq). duf: du's floats, written from its bf16 tiles (where the
// backward made du only in bf16). fp32 and tf32 mode: the same in floats on the FP32 units
// (lora_grads_f32_kernel; also atomics where the rows are split).
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/lora_grads.cuh"

static int lg_aligned(const void *p, int ld) { return p && (uintptr_t)p % 16 == 0 && ld % 8 == 0; }

// The grid of the weight-gradient launches: mb blocks of outputs times slices of the N rows, about
// four blocks per SM (measured on an H100 at B=8 T=512 bf16: 1 and 8 slower, 2 in between), each
// slice at least 128 rows and a multiple of kc (*rper)
static dim3 lg_grid(const cuda_ctx *c, int mb, int N, int kc, int *rper) {
    int splits = (4 * c->sm_count + mb - 1) / mb, maxs = (N + 127) / 128;
    if (splits > maxs) splits = maxs;
    if (splits < 1) splits = 1;
    *rper = ((N + splits - 1) / splits + kc - 1) / kc * kc;
    return dim3(mb, (N + *rper - 1) / *rper);
}

int cu_lora_weight_grads(swq_backend *be, float *dB, const void *doutb, int ldd, const void *ub, int ldu, float *dA,
                         const void *inpb, int ldi, const void *dub, int lddu, float *duf, int N, int OC, int IC, int r,
                         float s) {
    cuda_ctx *c = CTX(be);
    if (c->lora_grads_off || c->precision != CU_BF16 || r <= 0 || r > 32 || r % 8 || N <= 0 || OC <= 0 || IC <= 0)
        return 0;
    if (dB && (!lg_aligned(doutb, ldd) || !lg_aligned(ub, ldu))) return 0;
    if (!lg_aligned(inpb, ldi) || !lg_aligned(dub, lddu)) return 0;
    lg_prob p0 = {dB, (const __nv_bfloat16 *)doutb, (const __nv_bfloat16 *)ub, ldd, ldu, OC, 0, s, NULL};
    lg_prob p1 = {dA, (const __nv_bfloat16 *)inpb, (const __nv_bfloat16 *)dub, ldi, lddu, IC, 1, 1.0f, duf};
    int mb0 = dB ? (OC + 63) / 64 : 0, rper;
    const dim3 grid = lg_grid(c, mb0 + (IC + 63) / 64, N, LG_KC, &rper);
    const int atomic = grid.y > 1;
    cu_tl_part(be, "LoRA weight gradients (one launch)");
    if (r <= 16)
        lora_grads_kernel<16><<<grid, 128, 0, c->stream>>>(p0, p1, mb0, N, r, rper, atomic);
    else
        lora_grads_kernel<32><<<grid, 128, 0, c->stream>>>(p0, p1, mb0, N, r, rper, atomic);
    CUDA_LAUNCH_CHECK();
    cu_tl_part(be, "outside GEMMs");
    return 1;
}

// fp32 and tf32: lora_grads_f32_kernel, the slices as cu_lora_weight_grads's
int cu_lora_weight_grads_f32(swq_backend *be, float *dB, const float *dout, int ldd, const float *u, int ldu,
                             float *dA, const float *inp, int ldi, const float *du, int lddu, int N, int OC, int IC,
                             int r, float s) {
    cuda_ctx *c = CTX(be);
    if (c->lora_grads_off || c->precision == CU_BF16 || r <= 0 || r > 32 || N <= 0 || (!dB && !dA)) return 0;
    if ((dB && OC <= 0) || (dA && IC <= 0)) return 0;
    lgf_prob p0 = {dB, dout, u, ldd, ldu, OC, 0, s};
    lgf_prob p1 = {dA, inp, du, ldi, lddu, IC, 1, 1.0f};
    int mb0 = dB ? (OC + LGF_M - 1) / LGF_M : 0, rper;
    const dim3 grid = lg_grid(c, mb0 + (dA ? (IC + LGF_M - 1) / LGF_M : 0), N, LGF_KC, &rper);
    const int atomic = grid.y > 1;
    cu_tl_part(be, "LoRA weight gradients (one launch)");
    if (r <= 8) lora_grads_f32_kernel<8><<<grid, 256, 0, c->stream>>>(p0, p1, mb0, N, r, rper, atomic);
    else if (r <= 16) lora_grads_f32_kernel<16><<<grid, 256, 0, c->stream>>>(p0, p1, mb0, N, r, rper, atomic);
    else lora_grads_f32_kernel<32><<<grid, 256, 0, c->stream>>>(p0, p1, mb0, N, r, rper, atomic);
    CUDA_LAUNCH_CHECK();
    cu_tl_part(be, "outside GEMMs");
    return 1;
}

// One pass over dout for du and dB (lora_dout_grads_kernel): slices of the rows for about ten
// waves of blocks (measured on an H100 at the LM head's shape: 199 us at 22 slices, 228 at 8 for
// r = 16), each slice at least 128 rows (dB's atomics).
template <int R>
static void dout_grads_launch(cuda_ctx *c, float *du, float *dB, const void *doutb, int ldd, const void *bmb,
                              const void *ub, int ldu, int N, int OC, int r, float s) {
    static int per_sm;
    if (!per_sm) {
        CUDA_CHECK(cudaFuncSetAttribute(lora_dout_grads_kernel<R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)ld_smem_bytes<R>));
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, lora_dout_grads_kernel<R>, 32 * LD_NW,
                                                                 ld_smem_bytes<R>));
        if (per_sm < 1) per_sm = 1;
    }
    const int vb = (OC + LD_COLS - 1) / LD_COLS;
    int splits = (10 * per_sm * c->sm_count + vb - 1) / vb, maxs = (N + 127) / 128;
    if (splits > maxs) splits = maxs;
    if (splits < 1) splits = 1;
    int rper = ((N + splits - 1) / splits + LD_KC - 1) / LD_KC * LD_KC;
    splits = (N + rper - 1) / rper;
    const size_t smem = ld_smem_bytes<R>;
    lora_dout_grads_kernel<R><<<dim3(vb, splits), 32 * LD_NW, smem, c->stream>>>(
        du, dB, (const __nv_bfloat16 *)doutb, ldd, (const __nv_bfloat16 *)bmb, (const __nv_bfloat16 *)ub, ldu, N, OC,
        r, rper, s, splits > 1);
    CUDA_LAUNCH_CHECK();
}

int cu_lora_dout_grads(swq_backend *be, float *du, float *dB, const void *doutb, int ldd, const void *bmb,
                       const void *ub, int ldu, int N, int OC, int r, float s) {
    cuda_ctx *c = CTX(be);
    if (c->lora_grads_off || c->precision != CU_BF16 || r <= 0 || r > 32 || r % 8 || N <= 0 || OC <= 0) return 0;
    if (!lg_aligned(doutb, ldd) || !lg_aligned(ub, ldu) || !lg_aligned(bmb, r) || (uintptr_t)du % 16 || (uintptr_t)dB % 8)
        return 0;   // (du: float4 atomics; dB: float2)
    cu_tl_part(be, "LoRA du and dB (one pass over dout)");
    CUDA_CHECK(cudaMemsetAsync(du, 0, (size_t)N * r * sizeof(float), c->stream));
    if (r <= 16) dout_grads_launch<16>(c, du, dB, doutb, ldd, bmb, ub, ldu, N, OC, r, s);
    else dout_grads_launch<32>(c, du, dB, doutb, ldd, bmb, ub, ldu, N, OC, r, s);
    cu_tl_part(be, "outside GEMMs");
    return 1;
}
