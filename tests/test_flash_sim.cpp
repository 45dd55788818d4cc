// Flash attention's CUDA kernels (cuda/flash_attention.cuh), run on the CPU through the warp
// simulator (cuda/tools/warp_sim.h), against the CPU backend's attention in double on the same
// bf16-rounded inputs: every block shape the CUDA backend can pick (forward 64 or 128 query rows
// a block, backward 64 or 128 keys), sequence lengths that leave partial tiles, several heads and
// batches, dK/dV written as floats or into dqkv's bf16 copy. Unwritten outputs start as NaN.
// This checks the kernels' indexing, fragment layouts, causal masking and cp.async pipelining;
// cuda_ops_check checks the same on the GPU itself.
#define SWQ_WARP_SIM 1
#include "cuda/flash_attention.cuh"
#include <vector>
extern "C" {
#include "model/backend.h"
#include "tests/check.h"
}
#include "tests/sim_check.h"

static uint64_t RNG = 12345;
static float bf16r(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
static std::vector<float> rand_bf16(size_t n, float scale) {
    std::vector<float> v(n);
    for (auto &x : v) x = bf16r((float)((2 * check_urand(&RNG) - 1) * scale));
    return v;
}
static std::vector<__nv_bfloat16> to_bf16(const std::vector<float> &v) {
    std::vector<__nv_bfloat16> b(v.size());
    for (size_t i = 0; i < v.size(); i++) b[i] = __float2bfloat16_rn(v[i]);
    return b;
}
static void check_case(swq_backend *ref, int B, int T, int NH, int MT, int NW, int use_gb) {
    const int C = 64 * NH, C3 = 3 * C, N = B * T;
    const float sc = 0.125f;
    std::vector<float> qkv = rand_bf16((size_t)N * C3, 2.0f), dout = rand_bf16((size_t)N * C, 1.0f);
    std::vector<__nv_bfloat16> qb = to_bf16(qkv), db = to_bf16(dout);

    // the reference, in double
    const size_t natt = (size_t)B * NH * T * T;
    void *rq = ref->alloc(ref, qkv.size() * 8, "qkv"), *ro = ref->alloc(ref, (size_t)N * C * 8, "out");
    void *ra = ref->alloc(ref, natt * 8, "att"), *rs = ref->alloc(ref, natt * 8, "scratch");
    void *rd = ref->alloc(ref, (size_t)N * C * 8, "dout"), *rg = ref->alloc(ref, qkv.size() * 8, "dqkv");
    ref->upload(ref, rq, qkv.data(), qkv.size());
    ref->upload(ref, rd, dout.data(), dout.size());
    ref->attention_fwd(ref, ro, ra, rq, B, T, C, NH);
    ref->attention_bwd(ref, rg, rs, rd, rq, ro, ra, B, T, C, NH);
    std::vector<double> out_ref((size_t)N * C), dqkv_ref(qkv.size());
    ref->download_f64(ref, out_ref.data(), (const double *)ro, out_ref.size());   // reals are doubles here
    ref->download_f64(ref, dqkv_ref.data(), (const double *)rg, dqkv_ref.size());
    for (void *p : {rq, ro, ra, rs, rd, rg}) ref->free(ref, p);
    // log-sum-exps of the scaled scores
    std::vector<double> lse_ref((size_t)B * NH * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = &qkv[((size_t)b * T + t) * C3 + h * 64];
                std::vector<double> s(t + 1);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    const float *k = &qkv[((size_t)b * T + j) * C3 + C + h * 64];
                    double d = 0;
                    for (int e = 0; e < 64; e++) d += (double)q[e] * k[e];
                    s[j] = d * sc;
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j <= t; j++) sum += exp(s[j] - mx);
                lse_ref[((size_t)b * NH + h) * T + t] = mx + log(sum);
            }

    // forward
    const float NaN = NAN;
    std::vector<float> out((size_t)N * C, NaN), lse((size_t)B * NH * T, NaN);
    std::vector<__nv_bfloat16> outb((size_t)N * C, __float2bfloat16_rn(NaN));
    const int QT = 64 * MT;
    warp_sim::run_grid((T + QT - 1) / QT, B * NH, sim_dim3{FA_THREADS, 1, 1}, fa_fwd_smem(MT), [&] {
        if (MT == 1) flash_fwd_kernel<1>(out.data(), outb.data(), lse.data(), qb.data(), T, C, NH, sc);
        else flash_fwd_kernel<2>(out.data(), outb.data(), lse.data(), qb.data(), T, C, NH, sc);
    });
    char what[160];
    snprintf(what, sizeof what, "B=%d T=%d NH=%d, forward %d rows a block, backward %d keys a block, dK/dV %s", B, T,
             NH, QT, 16 * NW, use_gb ? "bf16" : "float");
    double e_out = rel_l2_by(out.size(), [&](size_t i, double &a, double &b) { a = out[i], b = out_ref[i]; });
    double e_lse = rel_l2_by(lse.size(), [&](size_t i, double &a, double &b) { a = lse[i], b = lse_ref[i]; });
    const size_t outb_bad = bf16_mismatch(outb.data(), out.data(), out.size());
    CHECK(e_out < 4e-3, "%s: out rel. error %.3g", what, e_out);
    CHECK(e_lse < 1e-5, "%s: log-sum-exp rel. error %.3g", what, e_lse);
    CHECK(outb_bad == 0, "%s: %zu bf16 outputs are not the rounded floats", what, outb_bad);

    // backward (D = rowsum(dout * out), as flash_bwd_dot_kernel)
    std::vector<float> D((size_t)B * NH * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                float s = 0;
                for (int e = 0; e < 64; e++) s += dout[((size_t)b * T + t) * C + h * 64 + e] * out[((size_t)b * T + t) * C + h * 64 + e];
                D[((size_t)b * NH + h) * T + t] = s;
            }
    std::vector<float> dqkv(qkv.size(), NaN);
    for (int p = 0; p < N; p++)
        for (int c = 0; c < C; c++) dqkv[(size_t)p * C3 + c] = 0.0f;   // dQ accumulates
    const int ldg = C3 + 24;   // rows of the bf16 copy with spare columns, as the backend's
    std::vector<__nv_bfloat16> gb(use_gb ? (size_t)N * ldg : 0, __float2bfloat16_rn(NaN));
    const int KB = 16 * NW;
    warp_sim::run_grid((T + KB - 1) / KB, B * NH, sim_dim3{32u * NW, 1, 1}, fa_bwd_smem(NW), [&] {
        __nv_bfloat16 *g = use_gb ? gb.data() : nullptr;
        if (NW == 4) flash_bwd_kernel<4>(dqkv.data(), g, ldg, qb.data(), db.data(), lse.data(), D.data(), T, C, NH, sc);
        else flash_bwd_kernel<8>(dqkv.data(), g, ldg, qb.data(), db.data(), lse.data(), D.data(), T, C, NH, sc);
    });
    const char *part[3] = {"dq", "dk", "dv"};
    printf("%s: out %.2e lse %.2e", what, e_out, e_lse);
    for (int k = 0; k < 3; k++) {
        double e = rel_l2_by((size_t)N * C, [&](size_t i, double &a, double &b) {
            size_t p = i / C, c = i % C, o = p * C3 + k * C + c;
            a = (use_gb && k) ? __bfloat162float(gb[p * ldg + k * C + c]) : dqkv[o];
            b = dqkv_ref[o];
        });
        CHECK(e < 1e-2, "%s: %s rel. error %.3g", what, part[k], e);
        printf(" %s %.2e", part[k], e);
    }
    printf("\n");
}

int main(void) {
    swq_backend *ref = swq_backend_cpu(8);
    if (!ref) return 2;
    // B, T, NH: one row; partial 64- and 128-row tiles; exact tiles; three heads
    const int shapes[][3] = {{1, 1, 1}, {1, 65, 1}, {2, 129, 1}, {1, 191, 2}, {1, 256, 1}, {2, 77, 3}};
    int si = 0;
    for (auto &s : shapes) {
        for (int MT = 1; MT <= 2; MT++)
            for (int NW = 4; NW <= 8; NW += 4) check_case(ref, s[0], s[1], s[2], MT, NW, (si + MT + NW / 4) & 1);
        si++;
    }
    swq_backend_destroy(ref);
    return check_summary("test_flash_sim");
}
