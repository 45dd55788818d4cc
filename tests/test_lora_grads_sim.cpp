// The CUDA kernel of the adapter's weight gradients (cuda/lora_grads.cuh: dB += s dout^T u and
// dA += du^T inp in one launch), run on the CPU through the warp simulator
// (cuda/tools/warp_sim.h), against the sums in double on the same bf16 inputs: ranks 8 to 32
// (both instantiations), output rows and reductions that leave partial tiles and chunks, row
// strides wider than the rows, one slice of the reduction (plain adds) and several (atomics); dA
// alone (no dB problem, as after lora_dout_grads_kernel).
// Also lora_grads_f32_kernel (the same in floats, for fp32 and tf32 mode: ranks 5 to 32, dB or dA
// alone), and lora_dout_grads_kernel (du = s dout Bm and dB += s dout^T u in one pass over dout):
// widths that leave partial 16-byte segments, column blocks and row chunks, ranks 8 to 32.
#define SWQ_WARP_SIM 1
#include "cuda/lora_grads.cuh"
#include <cmath>
#include <vector>
extern "C" {
#include "tests/check.h"
}
#include "tests/sim_check.h"

static uint64_t RNG = 777;
static std::vector<__nv_bfloat16> rand_bf16(size_t n) {
    std::vector<__nv_bfloat16> v(n);
    for (auto &x : v) x = __float2bfloat16_rn((float)(2 * check_urand(&RNG) - 1));
    return v;
}
static float f(__nv_bfloat16 b) { return __bfloat162float(b); }

static void check_case(int N, int OC, int IC, int r, int splits_wanted, bool da_only = false) {
    const int ldd = (OC + 7) / 8 * 8 + 8, ldu = r + 8, ldi = (IC + 7) / 8 * 8, lddu = r;
    const float s = 0.75f;
    std::vector<__nv_bfloat16> dout = rand_bf16((size_t)N * ldd), u = rand_bf16((size_t)N * ldu),
                               inp = rand_bf16((size_t)N * ldi), du = rand_bf16((size_t)N * lddu);
    std::vector<float> dB((size_t)OC * r), dA((size_t)r * IC);
    for (auto &x : dB) x = (float)(2 * check_urand(&RNG) - 1);   // += : the old values stay
    for (auto &x : dA) x = (float)(2 * check_urand(&RNG) - 1);
    std::vector<double> eB(dB.begin(), dB.end()), eA(dA.begin(), dA.end());
    for (int t = 0; t < N; t++) {
        for (int m = 0; m < OC && !da_only; m++)
            for (int j = 0; j < r; j++) eB[(size_t)m * r + j] += (double)s * f(dout[(size_t)t * ldd + m]) * f(u[(size_t)t * ldu + j]);
        for (int j = 0; j < r; j++)
            for (int m = 0; m < IC; m++) eA[(size_t)j * IC + m] += (double)f(inp[(size_t)t * ldi + m]) * f(du[(size_t)t * lddu + j]);
    }
    // the launch of cu_lora_weight_grads, with the number of slices given
    std::vector<float> duf((size_t)N * r + 1, std::nanf(""));   // du's floats (one guard value after them)
    lg_prob p0 = {dB.data(), dout.data(), u.data(), ldd, ldu, OC, 0, s, NULL};
    lg_prob p1 = {dA.data(), inp.data(), du.data(), ldi, lddu, IC, 1, 1.0f, duf.data()};
    const int mb0 = da_only ? 0 : (OC + 63) / 64, mb = mb0 + (IC + 63) / 64;   // (dA only: no blocks for p0)
    const int rper = ((N + splits_wanted - 1) / splits_wanted + LG_KC - 1) / LG_KC * LG_KC, splits = (N + rper - 1) / rper;
    warp_sim::run_grid(mb, splits, sim_dim3{128, 1, 1}, 0, [&] {
        if (r <= 16) lora_grads_kernel<16>(p0, p1, mb0, N, r, rper, splits > 1);
        else lora_grads_kernel<32>(p0, p1, mb0, N, r, rper, splits > 1);
    });
    double e0 = rel_l2(dB.data(), eB.data(), dB.size()), e1 = rel_l2(dA.data(), eA.data(), dA.size());
    printf("N=%d OC=%d IC=%d r=%d, %d slice(s)%s: dB %.2e dA %.2e\n", N, OC, IC, r, splits,
           da_only ? ", dA alone" : "", e0, e1);
    CHECK(e0 < 1e-5, "N=%d OC=%d IC=%d r=%d splits=%d: dB rel. error %.3g", N, OC, IC, r, splits, e0);
    CHECK(e1 < 1e-5, "N=%d OC=%d IC=%d r=%d splits=%d: dA rel. error %.3g", N, OC, IC, r, splits, e1);
    size_t bad = !std::isnan(duf[(size_t)N * r]);
    for (int t = 0; t < N; t++)
        for (int j = 0; j < r; j++) bad += duf[(size_t)t * r + j] != f(du[(size_t)t * lddu + j]);
    CHECK(bad == 0, "N=%d OC=%d IC=%d r=%d splits=%d: %zu of du's floats wrong", N, OC, IC, r, splits, bad);
}

static void check_dout_case(int N, int OC, int r, int splits_wanted) {
    const int ldd = (OC + 7) / 8 * 8 + 16, ldu = r + 8;
    const float s = 0.625f;
    std::vector<__nv_bfloat16> dout = rand_bf16((size_t)N * ldd), u = rand_bf16((size_t)N * ldu), bm = rand_bf16((size_t)OC * r);
    std::vector<float> dB((size_t)OC * r), du((size_t)N * r + 4, 0.0f);
    for (auto &x : dB) x = (float)(2 * check_urand(&RNG) - 1);
    du[(size_t)N * r] = 7.0f;   // a guard after du
    std::vector<double> eB(dB.begin(), dB.end()), eu((size_t)N * r, 0.0);
    for (int t = 0; t < N; t++)
        for (int v = 0; v < OC; v++) {
            const double d = f(dout[(size_t)t * ldd + v]);
            for (int j = 0; j < r; j++) {
                eB[(size_t)v * r + j] += s * d * f(u[(size_t)t * ldu + j]);
                eu[(size_t)t * r + j] += s * d * f(bm[(size_t)v * r + j]);
            }
        }
    const int vb = (OC + LD_COLS - 1) / LD_COLS;
    const int rper = ((N + splits_wanted - 1) / splits_wanted + LD_KC - 1) / LD_KC * LD_KC, splits = (N + rper - 1) / rper;
    warp_sim::run_grid(vb, splits, sim_dim3{32 * LD_NW, 1, 1}, r <= 16 ? ld_smem_bytes<16> : ld_smem_bytes<32>, [&] {
        if (r <= 16) lora_dout_grads_kernel<16>(du.data(), dB.data(), dout.data(), ldd, bm.data(), u.data(), ldu, N, OC, r, rper, s, splits > 1);
        else lora_dout_grads_kernel<32>(du.data(), dB.data(), dout.data(), ldd, bm.data(), u.data(), ldu, N, OC, r, rper, s, splits > 1);
    });
    double e0 = rel_l2(dB.data(), eB.data(), dB.size()), e1 = rel_l2(du.data(), eu.data(), eu.size());
    printf("dout pass N=%d OC=%d r=%d, %d slice(s): dB %.2e du %.2e\n", N, OC, r, splits, e0, e1);
    CHECK(e0 < 1e-5, "dout pass N=%d OC=%d r=%d splits=%d: dB rel. error %.3g", N, OC, r, splits, e0);
    CHECK(e1 < 1e-5, "dout pass N=%d OC=%d r=%d splits=%d: du rel. error %.3g", N, OC, r, splits, e1);
    CHECK(du[(size_t)N * r] == 7.0f, "dout pass N=%d OC=%d r=%d: written past du", N, OC, r);
}

// lora_grads_f32_kernel (fp32 and tf32 mode): the same two products on floats, against double
// sums of the same floats; dB or dA alone (the other problem's blocks absent)
static void check_f32_case(int N, int OC, int IC, int r, int splits_wanted, int which = 3) {
    const int ldd = OC + 3, ldu = r + 1, ldi = IC, lddu = r;
    const float s = 0.75f;
    auto rnd = [](size_t n) {
        std::vector<float> v(n);
        for (auto &x : v) x = (float)(2 * check_urand(&RNG) - 1);
        return v;
    };
    std::vector<float> dout = rnd((size_t)N * ldd), u = rnd((size_t)N * ldu), inp = rnd((size_t)N * ldi),
                       du = rnd((size_t)N * lddu), dB = rnd((size_t)OC * r + 1), dA = rnd((size_t)r * IC + 1);
    std::vector<double> eB(dB.begin(), dB.end()), eA(dA.begin(), dA.end());   // (+1: a guard after each)
    for (int t = 0; t < N; t++) {
        for (int m = 0; m < OC && (which & 1); m++)
            for (int j = 0; j < r; j++) eB[(size_t)m * r + j] += (double)s * dout[(size_t)t * ldd + m] * u[(size_t)t * ldu + j];
        for (int j = 0; j < r && (which & 2); j++)
            for (int m = 0; m < IC; m++) eA[(size_t)j * IC + m] += (double)inp[(size_t)t * ldi + m] * du[(size_t)t * lddu + j];
    }
    // the launch of cu_lora_weight_grads_f32, with the number of slices given
    lgf_prob p0 = {dB.data(), dout.data(), u.data(), ldd, ldu, OC, 0, s};
    lgf_prob p1 = {dA.data(), inp.data(), du.data(), ldi, lddu, IC, 1, 1.0f};
    const int mb0 = which & 1 ? (OC + LGF_M - 1) / LGF_M : 0, mb = mb0 + (which & 2 ? (IC + LGF_M - 1) / LGF_M : 0);
    const int rper = ((N + splits_wanted - 1) / splits_wanted + LGF_KC - 1) / LGF_KC * LGF_KC, splits = (N + rper - 1) / rper;
    warp_sim::run_grid(mb, splits, sim_dim3{256, 1, 1}, 0, [&] {
        if (r <= 8) lora_grads_f32_kernel<8>(p0, p1, mb0, N, r, rper, splits > 1);
        else if (r <= 16) lora_grads_f32_kernel<16>(p0, p1, mb0, N, r, rper, splits > 1);
        else lora_grads_f32_kernel<32>(p0, p1, mb0, N, r, rper, splits > 1);
    });
    double e0 = rel_l2(dB.data(), eB.data(), dB.size()), e1 = rel_l2(dA.data(), eA.data(), dA.size());
    printf("f32 N=%d OC=%d IC=%d r=%d, %d slice(s), problems %d: dB %.2e dA %.2e\n", N, OC, IC, r, splits, which, e0, e1);
    CHECK(e0 < 1e-6, "f32 N=%d OC=%d IC=%d r=%d splits=%d: dB rel. error %.3g", N, OC, IC, r, splits, e0);
    CHECK(e1 < 1e-6, "f32 N=%d OC=%d IC=%d r=%d splits=%d: dA rel. error %.3g", N, OC, IC, r, splits, e1);
    CHECK(dB.back() == (float)eB.back() && dA.back() == (float)eA.back(), "f32 N=%d OC=%d IC=%d r=%d: written past dB or dA",
          N, OC, IC, r);
}

int main(void) {
    // N, OC, IC, r, slices: both kernels (the fp32 one also at r = 5, which bf16's does not take)
    static const int cases[][5] = {{64, 64, 64, 16, 1},   {200, 100, 72, 8, 1}, {300, 100, 72, 8, 3},
                                   {300, 130, 200, 24, 2}, {257, 96, 40, 32, 1}, {129, 13, 70, 16, 2}};
    for (auto &k : cases) {
        check_case(k[0], k[1], k[2], k[3], k[4]);
        check_f32_case(k[0], k[1], k[2], k[3], k[4]);
    }
    check_case(200, 100, 72, 8, 3, true);
    check_case(97, 10, 130, 24, 1, true);
    check_dout_case(64, 256, 16, 1);
    check_dout_case(100, 301, 8, 1);
    check_dout_case(130, 1100, 16, 3);
    check_dout_case(77, 517, 24, 2);
    check_dout_case(33, 1030, 32, 1);
    check_dout_case(40, 2049, 8, 2);
    check_f32_case(300, 100, 72, 5, 3);
    check_f32_case(200, 100, 72, 8, 3, 2);
    check_f32_case(97, 10, 130, 12, 1, 1);
    return check_summary("test_lora_grads_sim");
}
