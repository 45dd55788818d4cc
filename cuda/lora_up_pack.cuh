// The fused pass after a linear's GEMM (device code only: tests/test_kernels_sim.cpp also runs it
// on the CPU through cuda/tools/warp_sim.h).
#ifndef SWQ_LORA_UP_PACK_CUH
#define SWQ_LORA_UP_PACK_CUH
#include "cuda/device_common.cuh"

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
