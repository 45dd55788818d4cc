// The CUDA backend's hand-written reduction and pass kernels, run on the CPU through the warp
// simulator (cuda/tools/warp_sim.h) against the CPU backend (float) on the same inputs, or the
// definitions computed here in double:
// layernorm forward and backward (row kernels, their float4 forms, the dw/db column sums),
// the fused softmax + cross-entropy + KL (both block forms, masked rows and columns, teachers,
// the teacher sums updated in place, bf16-only gradients, unaligned rows), argmax with ties, and
// the pass after a linear's GEMM (bias, the adapter's up-product at every rank form, GELU, padded
// input rows, bf16 copies), bias rows, bias gradients and the merged LoRA weight, fake
// quantization (bit for bit), the attention path's softmax passes and flash attention's helper
// passes, the bf16 conversions and batched-GEMM pointer arrays, and the element-wise kernels (GELU
// both ways in float and float4 form, sums and scaling, AdamW, sum of squares, embeddings, rows
// and columns), their grid-stride loops run with a few blocks. Unwritten outputs start as NaN.
// (tests/test_kernels_covered.sh checks that every kernel in cuda/*.cuh is run by a simulator test.)
#define SWQ_WARP_SIM 1
#include "cuda/attention.cuh"
#include "cuda/convert.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/layernorm.cuh"
#include "cuda/matmul.cuh"
#include "cuda/quantize.cuh"
#include "cuda/xent.cuh"
#include <algorithm>
#include <vector>
extern "C" {
#include "model/backend.h"
#include "tests/check.h"
}
#include "tests/sim_check.h"

static uint64_t RNG = 4242;
static swq_backend *CPU;
static const float NaN = NAN;

static std::vector<float> rnd(size_t n, float lo, float hi) {
    std::vector<float> v(n);
    for (auto &x : v) x = (float)(lo + (hi - lo) * check_urand(&RNG));
    return v;
}
// the CPU backend's memory is host memory (upload/download keep the op table's protocol)
static void *up(const std::vector<float> &h) {
    void *p = CPU->alloc(CPU, h.size() * 4 + 4, "ref");
    CPU->upload(CPU, p, h.data(), h.size());
    return p;
}
static std::vector<float> down(void *p, size_t n) {
    std::vector<float> h(n);
    CPU->download(CPU, h.data(), p, n);
    CPU->free(CPU, p);
    return h;
}
// ---------------------------------------------------------------- layernorm
static void check_layernorm(int N, int C, int vec) {
    std::vector<float> x = rnd((size_t)N * C, -2, 3), w = rnd(C, 0.5f, 1.5f), b = rnd(C, -0.5f, 0.5f);
    std::vector<float> dy = rnd((size_t)N * C, -1, 1), dx0 = rnd((size_t)N * C, -1, 1);
    std::vector<float> dw0 = rnd(C, -1, 1), db0 = rnd(C, -1, 1);
    void *rx = up(x), *rw = up(w), *rb = up(b), *ro = up(std::vector<float>((size_t)N * C)), *rm = up(std::vector<float>(N)),
         *rr = up(std::vector<float>(N)), *rdy = up(dy), *rdx = up(dx0), *rdw = up(dw0), *rdb = up(db0);
    CPU->layernorm_fwd(CPU, ro, rm, rr, rx, rw, rb, N, C);
    CPU->layernorm_bwd(CPU, rdx, rdw, rdb, rdy, rx, rw, rm, rr, N, C);
    std::vector<float> eo = down(ro, (size_t)N * C), em = down(rm, N), er = down(rr, N), edx = down(rdx, (size_t)N * C),
                       edw = down(rdw, C), edb = down(rdb, C);
    for (void *p : {rx, rw, rb, rdy}) CPU->free(CPU, p);

    std::vector<float> out((size_t)N * C, NaN), mean(N, NaN), rstd(N, NaN);
    const int ldo = C + 8 * (N % 3);   // the copy's rows padded (for a K-extended reader) in some cases
    std::vector<__nv_bfloat16> ob((size_t)N * ldo, __float2bfloat16_rn(NaN));
    const unsigned nb = (N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    const sim_dim3 rows_block = {32 * ROWS_PER_BLOCK, 1, 1};
    warp_sim::run_grid(nb, 1, rows_block, 0, [&] {
        switch (vec) {
        case 0: layernorm_fwd_kernel(out.data(), ob.data(), ldo, mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C); break;
        case 1: layernorm_fwd_vec_kernel<1>(out.data(), ob.data(), ldo, mean.data(), rstd.data(), x.data(), w.data(), b.data(), N); break;
        case 2: layernorm_fwd_vec_kernel<2>(out.data(), ob.data(), ldo, mean.data(), rstd.data(), x.data(), w.data(), b.data(), N); break;
        default: layernorm_fwd_vec_kernel<6>(out.data(), ob.data(), ldo, mean.data(), rstd.data(), x.data(), w.data(), b.data(), N);
        }
    });
    const char *form = vec ? "float4" : "rows";
    CHECK(rel_l2(out.data(), eo.data(), out.size()) < 1e-5, "layernorm_fwd (%s) N=%d C=%d: out %.3g", form, N, C,
          rel_l2(out.data(), eo.data(), out.size()));
    CHECK(rel_l2(mean.data(), em.data(), N) < 1e-5 && rel_l2(rstd.data(), er.data(), N) < 1e-5,
          "layernorm_fwd (%s) N=%d C=%d: mean/rstd", form, N, C);
    size_t obad = 0;
    for (int r = 0; r < N; r++) {
        obad += bf16_mismatch(&ob[(size_t)r * ldo], &out[(size_t)r * C], C);
        for (int c = C; c < ldo; c++) obad += !std::isnan(__bfloat162float(ob[(size_t)r * ldo + c]));
    }
    CHECK(obad == 0, "layernorm_fwd (%s) N=%d C=%d: bf16 copy (rows %d apart): %zu wrong", form, N, C, ldo, obad);

    const int ldb = C + 24;   // the gradient's bf16 copy has spare columns per row
    std::vector<float> dx = dx0;
    std::vector<__nv_bfloat16> db16((size_t)N * ldb, __float2bfloat16_rn(NaN));
    warp_sim::run_grid(nb, 1, rows_block, 0, [&] {
        switch (vec) {
        case 0: layernorm_bwd_dinp_kernel(dx.data(), db16.data(), ldb, dy.data(), x.data(), w.data(), em.data(), er.data(), N, C); break;
        case 1: layernorm_bwd_dinp_vec_kernel<1, false>(dx.data(), db16.data(), ldb, nullptr, nullptr, dy.data(), x.data(), w.data(), em.data(), er.data(), N); break;
        case 2: layernorm_bwd_dinp_vec_kernel<2, false>(dx.data(), db16.data(), ldb, nullptr, nullptr, dy.data(), x.data(), w.data(), em.data(), er.data(), N); break;
        default: layernorm_bwd_dinp_vec_kernel<6, false>(dx.data(), db16.data(), ldb, nullptr, nullptr, dy.data(), x.data(), w.data(), em.data(), er.data(), N);
        }
    });
    CHECK(rel_l2(dx.data(), edx.data(), dx.size()) < 1e-5, "layernorm_bwd (%s) N=%d C=%d: dinp %.3g", form, N, C,
          rel_l2(dx.data(), edx.data(), dx.size()));
    size_t bad = 0;
    for (int r = 0; r < N; r++) bad += bf16_mismatch(&db16[(size_t)r * ldb], &dx[(size_t)r * C], C);
    CHECK(bad == 0, "layernorm_bwd (%s) N=%d C=%d: %zu bf16 copies of dinp wrong", form, N, C, bad);

    // dinp with dw, db in the same pass (plain training): a grid of fewer blocks than rows, each
    // striding over rows (2 blocks here: some warps get no row or several), slices summed by atomics
    if (vec) {
        std::vector<float> dx2 = dx0, dw = dw0, db = db0;
        std::vector<__nv_bfloat16> db2((size_t)N * ldb, __float2bfloat16_rn(NaN));
        warp_sim::run_grid(2, 1, rows_block, LN_BWD_SMEM(C), [&] {
            switch (vec) {
            case 1: layernorm_bwd_dinp_vec_kernel<1, true>(dx2.data(), db2.data(), ldb, dw.data(), db.data(), dy.data(), x.data(), w.data(), em.data(), er.data(), N); break;
            case 2: layernorm_bwd_dinp_vec_kernel<2, true>(dx2.data(), db2.data(), ldb, dw.data(), db.data(), dy.data(), x.data(), w.data(), em.data(), er.data(), N); break;
            default: layernorm_bwd_dinp_vec_kernel<6, true>(dx2.data(), db2.data(), ldb, dw.data(), db.data(), dy.data(), x.data(), w.data(), em.data(), er.data(), N);
            }
        });
        CHECK(rel_l2(dx2.data(), edx.data(), dx2.size()) < 1e-5 && memcmp(db2.data(), db16.data(), db2.size() * 2) == 0,
              "layernorm_bwd fused N=%d C=%d: dinp %.3g, or its bf16 copy differs from the unfused kernel's", N, C,
              rel_l2(dx2.data(), edx.data(), dx2.size()));
        CHECK(rel_l2(dw.data(), edw.data(), C) < 1e-5 && rel_l2(db.data(), edb.data(), C) < 1e-5,
              "layernorm_bwd fused dw/db N=%d C=%d: %.3g %.3g", N, C, rel_l2(dw.data(), edw.data(), C),
              rel_l2(db.data(), edb.data(), C));
    }
    // dw, db: column sums over row slices of rows_per (atomics between slices)
    for (int v4 = 0; v4 <= (C % 4 == 0); v4++) {
        std::vector<float> dw = dw0, db = db0;
        const int rows_per = 11, tiles = (C + 127) / 128, splits = (N + rows_per - 1) / rows_per;
        warp_sim::run_grid(tiles, splits, sim_dim3{32, 8, 1}, 0, [&] {
            if (v4) layernorm_bwd_dwdb_kernel<true>(dw.data(), db.data(), dy.data(), x.data(), em.data(), er.data(), N, C, rows_per);
            else layernorm_bwd_dwdb_kernel<false>(dw.data(), db.data(), dy.data(), x.data(), em.data(), er.data(), N, C, rows_per);
        });
        CHECK(rel_l2(dw.data(), edw.data(), C) < 1e-5 && rel_l2(db.data(), edb.data(), C) < 1e-5,
              "layernorm_bwd dw/db (%s) N=%d C=%d: %.3g %.3g", v4 ? "float4" : "scalar", N, C,
              rel_l2(dw.data(), edw.data(), C), rel_l2(db.data(), edb.data(), C));
    }
}

// ---------------------------------------------------------------- softmax + CE + KL, argmax
struct xent_case {
    int P, V, teachers, masked, grad, alias;   // alias: the new teacher sums are the old ones
    int pad;   // > 0: the logits are read from a bf16 copy with rows V + pad apart (the floats stay stale)
    int fpad = 0;  // > 0: read from a float copy with rows V + fpad apart (a lazy head's padded GEMM rows)
    int nzero = 0; // the new teacher sums taken as zeros (a pending zero taken over): they hold NaN
    int half = 0;  // teacher rows in fp16 (scaled; rows padded), with bf16 logits (pad) and a kept row only
};
static void check_xent(xent_case k, int row) {
    const int P = k.P, V = k.V;
    if (k.half && !row) return;
    std::vector<float> z = rnd((size_t)P * V, -4, 4), tS((size_t)P * V), tH(P), nS, nH;
    if (k.pad)   // values a bf16 copy holds exactly, so the float reference sees the kernel's input
        for (float &x : z) x = __bfloat162float(__float2bfloat16_rn(x));
    for (int p = 0; p < P; p++) {   // teacher sums: n_teachers probability rows summed, and sum p log p
        double h = 0;
        for (int t = 0; t < k.teachers; t++) {
            std::vector<float> q = rnd(V, 0, 1);
            double s = 0;
            for (float x : q) s += x;
            for (int v = 0; v < V; v++) {
                tS[(size_t)p * V + v] += (float)(q[v] / s);
                h += q[v] / s * log(q[v] / s);
            }
        }
        tH[p] = (float)h;
    }
    // fp16 teacher rows: stored times tin_s (read) and written times tout_s (another power of two),
    // the reference given the values they hold
    const float tin_s = 16384.0f, tout_s = 8192.0f;
    const int ldt = (V + 7) / 8 * 8 + 8;
    std::vector<__half> th;
    if (k.half) {
        th.assign((size_t)P * ldt, __float2half_rn(NaN));
        for (int p = 0; p < P; p++)
            for (int v = 0; v < V; v++) {
                const __half x = __float2half_rn(tS[(size_t)p * V + v] * tin_s);
                th[(size_t)p * ldt + v] = x;
                tS[(size_t)p * V + v] = __half2float(x) / tin_s;
            }
    }
    std::vector<int> tgt(P), len(P);
    for (int p = 0; p < P; p++) {
        len[p] = k.masked ? (p == 1 ? 0 : V - 1 - 7 * p) : V;
        tgt[p] = p == 2 || len[p] <= 0 ? -1 : (p * 37 + 5) % len[p];
    }
    nS = k.alias ? tS : k.nzero ? std::vector<float>((size_t)P * V, 0.0f) : rnd((size_t)P * V, 0, 1);
    std::vector<__half> nh;   // fp16 new sums (not aliased): from nS's values, or NaN (nzero)
    if (k.half && !k.alias) {
        nh.assign((size_t)P * ldt, __float2half_rn(NaN));
        if (!k.nzero)
            for (int p = 0; p < P; p++)
                for (int v = 0; v < V; v++) {
                    const __half x = __float2half_rn(nS[(size_t)p * V + v] * tin_s);
                    nh[(size_t)p * ldt + v] = x;
                    nS[(size_t)p * V + v] = __half2float(x) / tin_s;
                }
    }
    nH = k.alias ? tH : rnd(P, -1, 1);
    const double beta = 0.7, weight = 0.125, gscale = 2.0;
    // the reference
    void *rz = up(z), *rtS = up(tS), *rtH = up(tH), *rnS = k.alias ? rtS : up(nS), *rnH = k.alias ? rtH : up(nH);
    int *rt = (int *)CPU->alloc(CPU, P * sizeof(int), "t"), *rl = (int *)CPU->alloc(CPU, P * sizeof(int), "l");
    CPU->upload_i32(CPU, rt, tgt.data(), P);
    CPU->upload_i32(CPU, rl, len.data(), P);
    double *racc = (double *)CPU->alloc(CPU, 2 * sizeof(double), "acc");
    CPU->zero(CPU, racc, 2 * sizeof(double));
    const int nt = k.teachers;
    CPU->xent_kl(CPU, rz, rt, k.masked ? rl : NULL, nt ? rtS : NULL, nt ? rtH : NULL, nt, beta, rnS, rnH, racc, weight,
                 gscale, k.grad ? 1 : 0, P, V);
    double eacc[2];
    CPU->download_f64(CPU, eacc, racc, 2);
    std::vector<float> ez = down(rz, (size_t)P * V), enS = down(rnS, (size_t)P * V), enH = down(rnH, P);
    if (!k.alias) {
        CPU->free(CPU, rtS);
        CPU->free(CPU, rtH);
    }
    CPU->free(CPU, rt);
    CPU->free(CPU, rl);
    CPU->free(CPU, racc);

    // the kernel (the launch of cu_xent_kl)
    std::vector<float> zk = z, nSk = k.alias ? tS : k.nzero ? std::vector<float>((size_t)P * V, NaN) : nS,
                       nHk = k.alias ? tH : nH;
    const int ldz = V + k.pad + k.fpad;
    std::vector<__nv_bfloat16> zin;
    std::vector<float> zinf;
    if (k.pad) {
        zin.assign((size_t)P * ldz, __float2bfloat16_rn(NaN));
        for (int p = 0; p < P; p++)
            for (int v = 0; v < V; v++) zin[(size_t)p * ldz + v] = __float2bfloat16_rn(z[(size_t)p * V + v]);
        std::fill(zk.begin(), zk.end(), NaN);
    }
    if (k.fpad) {
        zinf.assign((size_t)P * ldz, NaN);
        for (int p = 0; p < P; p++)
            for (int v = 0; v < V; v++) zinf[(size_t)p * ldz + v] = z[(size_t)p * V + v];
        std::fill(zk.begin(), zk.end(), NaN);
    }
    const std::vector<float> z_before = zk;
    std::vector<float> &tSk = k.alias ? nSk : tS, &tHk = k.alias ? nHk : tH;
    const int ldg = V + 43;   // (its rows' frames not in step with the teacher rows')
    std::vector<__nv_bfloat16> gb((size_t)P * ldg, __float2bfloat16_rn(NaN));
    double acc[2] = {0, 0};
    const size_t smem = !row ? 0 : k.pad ? ((size_t)V + 8) * sizeof(__nv_bfloat16) : ((size_t)V + 4) * sizeof(float);
    const unsigned nt_block = !row ? XENT_BLOCK : k.pad ? XENT_ROW_BLOCK_BF16 : XENT_ROW_BLOCK;
    warp_sim::run_grid(P, 1, sim_dim3{nt_block, 1, 1}, smem, [&] {
        __nv_bfloat16 *g = k.grad ? gb.data() : nullptr;
        const int *l = k.masked ? len.data() : nullptr;
        const float bnt = (float)(beta * nt), gs = (float)(gscale * weight);
        if (k.half) {
            __half *out = k.alias ? th.data() : nh.data();
            xent_kl_kernel<true, __nv_bfloat16, __half>(zk.data(), zin.data(), ldz, g, ldg, tgt.data(), l,
                                                        nt ? th.data() : nullptr, ldt, 1.0f / tin_s,
                                                        nt ? tHk.data() : nullptr, bnt, (float)beta, out, tout_s,
                                                        nHk.data(), k.nzero, acc, weight, gs, k.grad, V);
        } else if (k.pad) {
            auto kern = row ? xent_kl_kernel<true, __nv_bfloat16> : xent_kl_kernel<false, __nv_bfloat16>;
            kern(zk.data(), zin.data(), ldz, g, ldg, tgt.data(), l, nt ? tSk.data() : nullptr, V, 1.0f,
                 nt ? tHk.data() : nullptr, bnt, (float)beta, nSk.data(), 1.0f, nHk.data(), k.nzero, acc, weight, gs,
                 k.grad, V);
        } else {
            auto kern = row ? xent_kl_kernel<true, float> : xent_kl_kernel<false, float>;
            kern(zk.data(), k.fpad ? zinf.data() : zk.data(), ldz, g, ldg, tgt.data(), l, nt ? tSk.data() : nullptr, V,
                 1.0f, nt ? tHk.data() : nullptr, bnt, (float)beta, nSk.data(), 1.0f, nHk.data(), k.nzero, acc, weight,
                 gs, k.grad, V);
        }
        if (k.half) {   // the fp16 sums as the floats they stand for (NaN where a padding column was written)
            const std::vector<__half> &o = k.alias ? th : nh;
            for (int p = 0; p < P; p++) {
                for (int v = 0; v < V; v++) nSk[(size_t)p * V + v] = __half2float(o[(size_t)p * ldt + v]) / tout_s;
                for (int v = V; v < ldt; v++)
                    if (!std::isnan(__half2float(o[(size_t)p * ldt + v]))) nSk[(size_t)p * V] = NaN;
            }
        }
    });
    char what[128];
    snprintf(what, sizeof what, "xent_kl (%s) P=%d V=%d teachers=%d masked=%d grad=%d alias=%d ldz=%d%s%s%s",
             row ? "row kept" : "row read twice", P, V, nt, k.masked, k.grad, k.alias, ldz, k.fpad ? " (floats)" : "",
             k.nzero ? " (sums from zero)" : "", k.half ? " (fp16 teacher rows)" : "");
    CHECK(fabs(acc[0] - eacc[0]) <= 1e-5 * fabs(eacc[0]) + 1e-9, "%s: CE %.9g vs %.9g", what, acc[0], eacc[0]);
    CHECK(fabs(acc[1] - eacc[1]) <= 1e-4 * fabs(eacc[1]) + 1e-7, "%s: KL %.9g vs %.9g", what, acc[1], eacc[1]);
    CHECK(rel_l2(nSk.data(), enS.data(), nSk.size()) < (k.half ? 1e-3 : 1e-5) && rel_l2(nHk.data(), enH.data(), P) < 1e-5,
          "%s: teacher sums %.3g %.3g", what, rel_l2(nSk.data(), enS.data(), nSk.size()), rel_l2(nHk.data(), enH.data(), P));
    if (k.grad) {
        std::vector<float> g((size_t)P * V);
        for (int p = 0; p < P; p++)
            for (int v = 0; v < V; v++) g[(size_t)p * V + v] = __bfloat162float(gb[(size_t)p * ldg + v]);
        CHECK(rel_l2(g.data(), ez.data(), g.size()) < 5e-3, "%s: bf16 gradient %.3g", what, rel_l2(g.data(), ez.data(), g.size()));
        // value by value (a value stored to the wrong column, or not at all, shows here)
        float gmax = 0.0f;
        for (float x : ez) gmax = fmaxf(gmax, fabsf(x));
        size_t off = 0;
        for (size_t i = 0; i < g.size(); i++) off += !(fabsf(g[i] - ez[i]) <= fabsf(ez[i]) / 128 + 1e-5f * gmax);
        CHECK(off == 0, "%s: %zu values of the bf16 gradient off", what, off);
        size_t past = 0;   // the columns past V are not the gradient's (the head adapter's du goes there)
        for (int p = 0; p < P; p++)
            for (int v = V; v < ldg; v++) past += !std::isnan(__bfloat162float(gb[(size_t)p * ldg + v]));
        CHECK(past == 0, "%s: %zu values written past the row's V columns", what, past);
        if (k.grad == 1) {
            CHECK(rel_l2(zk.data(), ez.data(), zk.size()) < 1e-5, "%s: gradient %.3g", what, rel_l2(zk.data(), ez.data(), zk.size()));
            size_t bad = 0;
            for (int p = 0; p < P; p++) bad += bf16_mismatch(&gb[(size_t)p * ldg], &zk[(size_t)p * V], V);
            CHECK(bad == 0, "%s: %zu bf16 copies of the gradient wrong", what, bad);
        } else {
            CHECK(memcmp(zk.data(), z_before.data(), z.size() * 4) == 0, "%s: grad 2 wrote the float logits", what);
        }
    } else {
        CHECK(memcmp(zk.data(), z_before.data(), z.size() * 4) == 0, "%s: no gradient asked, logits changed", what);
    }
}

// The simulator's fp16 rounding (the reference of the fp16 teacher rows too) on known values: ties
// to even, the largest finite value and the first that rounds to inf, subnormals, NaN.
static void check_half_rounding() {
    const struct { float x; uint16_t h; } k[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00},
        {1.0f + 1.0f / 2048, 0x3c00}, {1.0f + 3.0f / 2048, 0x3c02}, {6.103515625e-05f, 0x0400},
        {5.9604645e-08f, 0x0001}, {2.9802322e-08f, 0x0000}, {8.940697e-08f, 0x0002}, {-0.0f, 0x8000}, {1e-3f, 0x1419},
    };
    size_t bad = 0;
    for (const auto &c : k) bad += __float2half_rn(c.x).bits != c.h || (c.h != 0x7c00 && __half2float(__float2half_rn(c.x)) != __half2float(__half{c.h}));
    bad += !std::isnan(__half2float(__float2half_rn(NaN)));
    CHECK(bad == 0, "fp16 rounding of the simulator: %zu known values wrong", bad);
}

// fp16 teacher sums back into their floats (rows lds apart, times s): every value, nothing past them
static void check_teacher_half_back(int rows, int cols, int lds) {
    std::vector<__half> h((size_t)rows * lds);
    std::vector<float> e((size_t)rows * cols), out((size_t)rows * cols + 1, NaN);
    const float s = 1.0f / 8192;
    for (int p = 0; p < rows; p++)
        for (int j = 0; j < lds; j++) {
            h[(size_t)p * lds + j] = __float2half_rn(j < cols ? (float)(rand() % 65536) : NaN);
            if (j < cols) e[(size_t)p * cols + j] = __half2float(h[(size_t)p * lds + j]) * s;
        }
    warp_sim::run_grid(3, 1, sim_dim3{256, 1, 1}, 0,
                       [&] { teacher_half_to_float_kernel(out.data(), h.data(), lds, rows, cols, s); });
    CHECK(memcmp(out.data(), e.data(), e.size() * 4) == 0 && std::isnan(out[e.size()]),
          "teacher_half_to_float rows=%d cols=%d lds=%d", rows, cols, lds);
}

static void check_argmax(int P, int V) {
    std::vector<float> z = rnd((size_t)P * V, -1, 1);
    for (int p = 0; p < P; p++) {   // ties: the first maximum wins
        z[(size_t)p * V + (p * 13) % V] = 5.0f;
        z[(size_t)p * V + (p * 29 + 7) % V] = 5.0f;
    }
    void *rz = up(z);
    std::vector<int> e(P), out(P, -1);
    CPU->argmax_rows(CPU, e.data(), rz, P, V);
    CPU->free(CPU, rz);
    warp_sim::run_grid(P, 1, sim_dim3{ARGMAX_BLOCK, 1, 1}, 0, [&] { argmax_rows_kernel(out.data(), z.data(), V); });
    CHECK(out == e, "argmax_rows P=%d V=%d", P, V);
}

// ---------------------------------------------------------------- the pass after a linear's GEMM
// in_place: o is out itself (rows of OC) and u a buffer of its own; else o has padded rows
// (ldp = OC + pad, pad >= r) with u in the extra columns, as [o | u] = inp [w ; A]^T writes them.
static void check_up_pack(int N, int OC, int r, int pad, int with_bias, int with_act, int in_place) {
    const float s = 1.5f;
    const int ldp = in_place ? OC : OC + pad, R1 = r ? r : 1;
    std::vector<float> o = rnd((size_t)N * ldp, -2, 2), ub = rnd((size_t)N * R1, -1, 1), bias = rnd(OC, -1, 1),
                       Bm = rnd((size_t)OC * R1, -1, 1);
    const float *u = in_place ? ub.data() : o.data() + OC;
    const int ldu = in_place ? r : ldp;
    std::vector<float> e((size_t)N * OC), ea((size_t)N * OC);
    for (int p = 0; p < N; p++)
        for (int v = 0; v < OC; v++) {
            double x = (double)o[(size_t)p * ldp + v] + (with_bias ? bias[v] : 0.0f), a = 0;
            for (int j = 0; j < r; j++) a += (double)u[(size_t)p * ldu + j] * Bm[(size_t)v * r + j];
            x += s * a;
            e[(size_t)p * OC + v] = (float)x;
            const double c = 0.044715 * x * x * x;
            ea[(size_t)p * OC + v] = (float)(0.5 * x * (1 + tanh(0.7978845608028654 * (x + c))));
        }
    std::vector<float> out = in_place ? o : std::vector<float>((size_t)N * OC, NaN), act((size_t)N * OC, NaN),
                       uout((size_t)N * R1, NaN);
    std::vector<__nv_bfloat16> ob((size_t)N * OC, __float2bfloat16_rn(NaN)), ab(ob);
    const float *op = in_place ? out.data() : o.data();
    warp_sim::run_grid((OC + LORA_UP_COLS - 1) / LORA_UP_COLS, (N + LORA_UP_ROWS - 1) / LORA_UP_ROWS, sim_dim3{LORA_UP_COLS, 1, 1},
           0, [&] {
               float *a = with_act ? act.data() : nullptr, *uo = r ? uout.data() : nullptr;
               __nv_bfloat16 *abp = with_act ? ab.data() : nullptr;
               const float *bp = with_bias ? bias.data() : nullptr;
#define UP(RR) lora_up_pack_kernel<RR>(out.data(), ob.data(), op, ldp, bp, u, ldu, uo, Bm.data(), N, OC, r, s, a, abp)
               if (r <= 0) UP(0);
               else if (r <= 8) UP(8);
               else if (r <= 16) UP(16);
               else UP(32);
#undef UP
           });
    char what[128];
    snprintf(what, sizeof what, "lora_up_pack N=%d OC=%d r=%d ldp=%d bias=%d act=%d in_place=%d", N, OC, r, ldp,
             with_bias, with_act, in_place);
    CHECK(rel_l2(out.data(), e.data(), e.size()) < 1e-6, "%s: out %.3g", what, rel_l2(out.data(), e.data(), e.size()));
    CHECK(bf16_mismatch(ob.data(), out.data(), out.size()) == 0, "%s: bf16 copy of out", what);
    if (with_act) {
        CHECK(rel_l2(act.data(), ea.data(), ea.size()) < 1e-6, "%s: act %.3g", what, rel_l2(act.data(), ea.data(), ea.size()));
        CHECK(bf16_mismatch(ab.data(), act.data(), act.size()) == 0, "%s: bf16 copy of act", what);
    }
    size_t bad = 0;
    for (int p = 0; p < N; p++)
        for (int j = 0; j < r; j++) bad += uout[(size_t)p * r + j] != u[(size_t)p * ldu + j];
    CHECK(bad == 0, "%s: %zu values of u not copied out", what, bad);
}

// bias rows (= and +=), bias gradients by column sums (float and bf16 rows, scalar and float4
// loads, one slice or several), the merged LoRA weight w + s Bm A (with its bf16 copy)
static void check_matmul_passes(int N, int OC, int ld, int splits) {
    std::vector<float> bias = rnd(OC, -1, 1), out0 = rnd((size_t)N * OC, -1, 1), dout = rnd((size_t)N * ld, -1, 1);
    for (int acc = 0; acc <= 1; acc++) {
        std::vector<float> out = acc ? out0 : std::vector<float>((size_t)N * OC, NaN), e((size_t)N * OC);
        for (size_t i = 0; i < e.size(); i++) e[i] = (acc ? out0[i] : 0.0f) + bias[i % OC];
        warp_sim::run_grid(3, 1, sim_dim3{256, 1, 1}, 0, [&] { bias_rows_kernel(out.data(), bias.data(), N, OC, acc); });
        CHECK(rel_l2(out.data(), e.data(), e.size()) == 0, "bias_rows N=%d OC=%d accumulate=%d", N, OC, acc);
    }
    std::vector<__nv_bfloat16> db(dout.size());
    for (size_t i = 0; i < dout.size(); i++) db[i] = __float2bfloat16_rn(dout[i]);
    const int rows_per = (N + splits - 1) / splits, gy = (N + rows_per - 1) / rows_per, tiles = (OC + 127) / 128;
    for (int bf = 0; bf <= 1; bf++)
        for (int v4 = 0; v4 <= (OC % 4 == 0 && ld % 4 == 0); v4++) {
            std::vector<float> dbias = bias, e(OC);
            for (int c = 0; c < OC; c++) {
                double t = bias[c];
                for (int r = 0; r < N; r++) t += bf ? __bfloat162float(db[(size_t)r * ld + c]) : dout[(size_t)r * ld + c];
                e[c] = (float)t;
            }
            warp_sim::run_grid(tiles, gy, sim_dim3{32, 8, 1}, 0, [&] {
                if (bf && v4) col_sum_kernel<true>(dbias.data(), db.data(), ld, N, OC, rows_per);
                else if (bf) col_sum_kernel<false>(dbias.data(), db.data(), ld, N, OC, rows_per);
                else if (v4) col_sum_kernel<true>(dbias.data(), dout.data(), ld, N, OC, rows_per);
                else col_sum_kernel<false>(dbias.data(), dout.data(), ld, N, OC, rows_per);
            });
            CHECK(rel_l2(dbias.data(), e.data(), OC) < 1e-6, "col_sum N=%d OC=%d ld=%d slices=%d %s %s: %.3g", N, OC, ld, gy,
                  bf ? "bf16" : "float", v4 ? "float4" : "scalar", rel_l2(dbias.data(), e.data(), OC));
        }
    const int IC = ld, r = 5;
    const float s = 0.7f;
    std::vector<float> w = rnd((size_t)OC * IC, -1, 1), A = rnd((size_t)r * IC, -1, 1), Bm = rnd((size_t)OC * r, -1, 1);
    std::vector<float> wm(w.size(), NaN), e(w.size());
    std::vector<__nv_bfloat16> wb(w.size(), __float2bfloat16_rn(NaN));
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < IC; i++) {
            double t = 0;
            for (int j = 0; j < r; j++) t += (double)Bm[(size_t)o * r + j] * A[(size_t)j * IC + i];
            e[(size_t)o * IC + i] = (float)(w[(size_t)o * IC + i] + s * t);
        }
    warp_sim::run_grid((IC + 255) / 256, 7, sim_dim3{256, 1, 1}, 0,
           [&] { lora_merge_kernel(wm.data(), wb.data(), w.data(), A.data(), Bm.data(), IC, OC, r, s); });
    CHECK(rel_l2(wm.data(), e.data(), e.size()) < 1e-6 && bf16_mismatch(wb.data(), wm.data(), wm.size()) == 0,
          "lora_merge OC=%d IC=%d r=%d: %.3g", OC, IC, r, rel_l2(wm.data(), e.data(), e.size()));
}

// Row i of a K-extended input side (row, ldxe >= ke wide) against the bf16 input row xr (C values):
// xr's values, the columns past ke untouched (NaN), u (ui) against double sums (worst relative
// error kept), u's bf16 copy (ubi) and the adapter's hi/lo columns bit-exact from u.
static void kext_row_check(const __nv_bfloat16 *row, const __nv_bfloat16 *xr, int C, int ke, int ldxe,
                           const __nv_bfloat16 *A, int lda, const float *ui, const __nv_bfloat16 *ubi, int r, int rp,
                           float s, size_t &bad, double &worst) {
    for (int c = 0; c < C; c++) bad += row[c].bits != xr[c].bits;
    for (int c = ke; c < ldxe; c++) bad += !std::isnan(__bfloat162float(row[c]));
    for (int j = 0; j < rp; j++) {
        float uj = 0.0f;
        if (j < r) {
            double want = 0, mag = 0;
            for (int k = 0; k < C; k++) {
                double t = (double)__bfloat162float(xr[k]) * __bfloat162float(A[(size_t)j * lda + k]);
                want += t;
                mag += fabs(t);
            }
            uj = ui[j];
            worst = std::max(worst, fabs(uj - want) / (mag > 0 ? mag : 1));
            bad += ubi[j].bits != __float2bfloat16_rn(uj).bits;   // u's bf16 copy
        }
        const float a = s * uj;
        const __nv_bfloat16 hi = __float2bfloat16_rn(a), lo = __float2bfloat16_rn(a - __bfloat162float(hi));
        bad += row[C + j].bits != hi.bits;
        bad += row[C + rp + j].bits != lo.bits;
        bad += row[C + 2 * rp + j].bits != hi.bits;
    }
}
// The weight side of a K-extension: each of the OC rows of we (ke apart) keeps its first C values
// (w0's), then [b_hi | b_hi | b_lo] of Bm's row (zeros past r), and Bm's bf16 copy bb, bit-exact.
static void kext_weight_check(const __nv_bfloat16 *we, const __nv_bfloat16 *w0, const float *Bm,
                              const __nv_bfloat16 *bb, int OC, int C, int ke, int r, int rp, size_t &bad) {
    for (int o = 0; o < OC; o++) {
        const __nv_bfloat16 *row = &we[(size_t)o * ke];
        for (int c = 0; c < C; c++) bad += row[c].bits != w0[(size_t)o * ke + c].bits;
        for (int j = 0; j < rp; j++) {
            const float b = j < r ? Bm[(size_t)o * r + j] : 0.0f;
            const __nv_bfloat16 hi = __float2bfloat16_rn(b), lo = __float2bfloat16_rn(b - __bfloat162float(hi));
            bad += row[C + j].bits != hi.bits;
            bad += row[C + rp + j].bits != hi.bits;
            bad += row[C + 2 * rp + j].bits != lo.bits;
            if (j < r) bad += bb[(size_t)o * r + j].bits != hi.bits;   // Bm's bf16 copy
        }
    }
}

// The K-extended operands of a LoRA linear (lora_down_kext_kernel): u = x A^T (against double sums),
// x's copy and the hi/lo columns of s u (bit-exact from the u it wrote), the weight side's B columns
// (bit-exact) after its own, which stay as they were, nothing past the N and OC rows written; and the
// extension's part of a product of an input row with a weight row against the adapter's term
// s u B^T (the hi/lo split: ~2^-16 of it).
// inplace: x is the first IC columns of xe's rows (a producer's padded copy, rows ldxe > ke apart):
// x stays, the adapter's columns are added, the columns past ke are not touched
static void check_down_kext(int N, int IC, int OC, int r, bool inplace = false) {
    const int rp = (r + 7) & ~7, ke = IC + 3 * rp, R = rp <= 16 ? 16 : 32, ldxe = inplace ? ke + 16 : ke;
    const int lda = IC + 24;   // A's rows as after a weight's K-extended rows (NaN between them)
    const float s = 1.5f;
    std::vector<__nv_bfloat16> x((size_t)N * IC), A((size_t)r * lda, __float2bfloat16_rn(NaN));
    for (auto &v : x) v = __float2bfloat16_rn((float)(rand() % 2001 - 1000) / 300);
    for (int j = 0; j < r; j++)
        for (int k = 0; k < IC; k++) A[(size_t)j * lda + k] = __float2bfloat16_rn((float)(rand() % 2001 - 1000) / 3000);
    std::vector<float> Bm = rnd((size_t)OC * r, -0.1f, 0.1f), u((size_t)N * r, NaN);
    std::vector<__nv_bfloat16> ub((size_t)N * r, __float2bfloat16_rn(NaN)), bb((size_t)OC * r + 1, __float2bfloat16_rn(NaN));
    // (one guard row after each side's rows)
    std::vector<__nv_bfloat16> xe((size_t)(N + 1) * ldxe, __float2bfloat16_rn(NaN)), we((size_t)(OC + 1) * ke), w0;
    for (auto &v : we) v = __float2bfloat16_rn((float)(rand() % 2001 - 1000) / 300);
    w0 = we;
    if (inplace)
        for (int i = 0; i < N; i++) std::copy(&x[(size_t)i * IC], &x[(size_t)i * IC] + IC, &xe[(size_t)i * ldxe]);
    const __nv_bfloat16 *xin = inplace ? xe.data() : x.data();
    const int ldx = inplace ? ldxe : IC;
    const int nxb = (N + DK_ROWS - 1) / DK_ROWS, nwb = 3;
    warp_sim::run_grid(nxb + nwb, 1, sim_dim3{DK_THREADS, 1, 1}, R == 16 ? dk_smem_bytes<16> : dk_smem_bytes<32>, [&] {
        if (R == 16)
            lora_down_kext_kernel<16>(xe.data(), ldxe, ke, xin, ldx, IC, A.data(), lda, u.data(), r, rp, s, N, nxb,
                                      we.data(), Bm.data(), OC, ub.data(), bb.data());
        else
            lora_down_kext_kernel<32>(xe.data(), ldxe, ke, xin, ldx, IC, A.data(), lda, u.data(), r, rp, s, N, nxb,
                                      we.data(), Bm.data(), OC, ub.data(), bb.data());
    });
    size_t bad = 0;
    double worst = 0;
    for (int i = 0; i < N; i++)
        kext_row_check(&xe[(size_t)i * ldxe], &x[(size_t)i * IC], IC, ke, ldxe, A.data(), lda, &u[(size_t)i * r],
                       &ub[(size_t)i * r], r, rp, s, bad, worst);
    kext_weight_check(we.data(), w0.data(), Bm.data(), bb.data(), OC, IC, ke, r, rp, bad);
    bad += !std::isnan(__bfloat162float(bb[(size_t)OC * r]));
    for (int c = 0; c < ke; c++) {   // the guard rows
        bad += !std::isnan(__bfloat162float(xe[(size_t)N * ldxe + c]));
        bad += we[(size_t)OC * ke + c].bits != w0[(size_t)OC * ke + c].bits;
    }
    double worst_ext = 0;
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double ext = 0, want = 0, mag = 0;
            for (int c = IC; c < ke; c++)
                ext += (double)__bfloat162float(xe[(size_t)i * ldxe + c]) * __bfloat162float(we[(size_t)o * ke + c]);
            for (int j = 0; j < r; j++) {
                double t = (double)(s * u[(size_t)i * r + j]) * Bm[(size_t)o * r + j];
                want += t;
                mag += fabs(t);
            }
            worst_ext = std::max(worst_ext, fabs(ext - want) / (mag > 0 ? mag : 1));
        }
    CHECK(bad == 0 && worst < 1e-5 && worst_ext < 3e-5,
          "lora_down_kext N=%d IC=%d OC=%d r=%d%s: %zu values wrong, u off by %.3g, adapter term off by %.3g", N, IC, OC,
          r, inplace ? " (in place)" : "", bad, worst, worst_ext);
}

// layernorm_down_kext_kernel (a pending layernorm done by the K-extended linear's launch): x's
// rows normalized bit for bit as layernorm_fwd_vec_kernel writes them (bf16 into xe's first C
// columns, mean and rstd), u = y A^T from those bf16 values (against double sums), the adapter's
// columns bit-exact from the u it wrote, the weight side as lora_down_kext_kernel's; the columns
// past ke and the rows past N untouched.
static void check_ln_down_kext(int N, int C, int OC, int r) {
    const int rp = (r + 7) & ~7, ke = C + 3 * rp, R = rp <= 16 ? 16 : 32, ldxe = ke + 8, lda = C + 24, V4 = C / 128;
    const float s = 0.75f;
    std::vector<float> x = rnd((size_t)N * C, -2, 2), lw = rnd(C, 0.5f, 1.5f), lb = rnd(C, -0.5f, 0.5f);
    for (int i = 0; i < N; i++)   // rows off zero mean
        for (int c = 0; c < C; c++) x[(size_t)i * C + c] += (float)(i % 5);
    std::vector<__nv_bfloat16> A((size_t)r * lda, __float2bfloat16_rn(NaN));
    for (int j = 0; j < r; j++)
        for (int k = 0; k < C; k++) A[(size_t)j * lda + k] = __float2bfloat16_rn((float)(rand() % 2001 - 1000) / 3000);
    std::vector<float> Bm = rnd((size_t)OC * r, -0.1f, 0.1f), u((size_t)N * r, NaN), mean(N, NaN), rstd(N, NaN);
    std::vector<__nv_bfloat16> ub((size_t)N * r, __float2bfloat16_rn(NaN)), bb((size_t)OC * r, __float2bfloat16_rn(NaN));
    std::vector<__nv_bfloat16> xe((size_t)(N + 1) * ldxe, __float2bfloat16_rn(NaN)), we((size_t)OC * ke), w0;
    for (auto &v : we) v = __float2bfloat16_rn((float)(rand() % 2001 - 1000) / 300);
    w0 = we;
    // the reference: the unfused layernorm kernel
    std::vector<float> yo((size_t)N * C), em(N), er(N);
    std::vector<__nv_bfloat16> yb((size_t)N * C);
    warp_sim::run_grid((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 1, sim_dim3{32 * ROWS_PER_BLOCK, 1, 1}, 0, [&] {
        if (V4 == 1) layernorm_fwd_vec_kernel<1>(yo.data(), yb.data(), C, em.data(), er.data(), x.data(), lw.data(), lb.data(), N);
        else layernorm_fwd_vec_kernel<6>(yo.data(), yb.data(), C, em.data(), er.data(), x.data(), lw.data(), lb.data(), N);
    });
    const int nxb = (N + LDK_ROWS - 1) / LDK_ROWS, nwb = 2;
    warp_sim::run_grid(nxb + nwb, 1, sim_dim3{LDK_THREADS, 1, 1}, R == 16 ? ldk_smem_bytes<16>(C) : ldk_smem_bytes<32>(C), [&] {
#define LDKC(RR, V)                                                                                                    \
    layernorm_down_kext_kernel<RR, V>(xe.data(), ldxe, ke, mean.data(), rstd.data(), x.data(), lw.data(), lb.data(),   \
                                      A.data(), lda, u.data(), r, rp, s, N, nxb, we.data(), Bm.data(), OC, ub.data(),  \
                                      bb.data())
        if (R == 16 && V4 == 1) LDKC(16, 1);
        else if (R == 16) LDKC(16, 6);
        else if (V4 == 1) LDKC(32, 1);
        else LDKC(32, 6);
#undef LDKC
    });
    size_t bad = 0;
    double worst = 0;
    for (int i = 0; i < N; i++) {
        kext_row_check(&xe[(size_t)i * ldxe], &yb[(size_t)i * C], C, ke, ldxe, A.data(), lda, &u[(size_t)i * r],
                       &ub[(size_t)i * r], r, rp, s, bad, worst);
        bad += mean[i] != em[i] || rstd[i] != er[i];
    }
    for (int c = 0; c < ldxe; c++) bad += !std::isnan(__bfloat162float(xe[(size_t)N * ldxe + c]));   // the guard row
    kext_weight_check(we.data(), w0.data(), Bm.data(), bb.data(), OC, C, ke, r, rp, bad);
    CHECK(bad == 0 && worst < 1e-5, "layernorm_down_kext N=%d C=%d OC=%d r=%d: %zu values wrong, u off by %.3g", N, C,
          OC, r, bad, worst);
}

// the batched-GEMM attention's causal softmax and its backward, flash attention's D =
// rowsum(dout out) and dq-columns-to-bf16 passes (against their definitions)
static void check_attention_passes(int B, int NH, int T) {
    const int rows = B * NH * T;
    std::vector<float> sc = rnd((size_t)rows * T, -3, 3), d = rnd((size_t)rows * T, -1, 1);
    std::vector<float> att = sc, e((size_t)rows * T), eg((size_t)rows * T);
    std::vector<__nv_bfloat16> ab((size_t)rows * T, __float2bfloat16_rn(NaN)), gb(ab);
    for (int r = 0; r < rows; r++) {
        const int t = r % T;
        const float *x = &sc[(size_t)r * T];
        double m = -INFINITY, z = 0, dot = 0;
        for (int j = 0; j <= t; j++) m = fmax(m, x[j]);
        for (int j = 0; j <= t; j++) z += exp(x[j] - m);
        for (int j = 0; j < T; j++) e[(size_t)r * T + j] = j <= t ? (float)(exp(x[j] - m) / z) : 0.0f;
        for (int j = 0; j <= t; j++) dot += (double)e[(size_t)r * T + j] * d[(size_t)r * T + j];
        for (int j = 0; j < T; j++) eg[(size_t)r * T + j] = j <= t ? (float)(e[(size_t)r * T + j] * (d[(size_t)r * T + j] - dot)) : 0.0f;
    }
    const unsigned nb = (rows + ATT_WARPS - 1) / ATT_WARPS;
    warp_sim::run_grid(nb, 1, sim_dim3{32 * ATT_WARPS, 1, 1}, 0, [&] { causal_softmax_kernel(att.data(), ab.data(), rows, T); });
    std::vector<float> g = d;
    warp_sim::run_grid(nb, 1, sim_dim3{32 * ATT_WARPS, 1, 1}, 0, [&] { softmax_bwd_kernel(g.data(), gb.data(), e.data(), rows, T); });
    CHECK(rel_l2(att.data(), e.data(), e.size()) < 1e-6 && bf16_mismatch(ab.data(), att.data(), att.size()) == 0,
          "causal_softmax B=%d NH=%d T=%d: %.3g", B, NH, T, rel_l2(att.data(), e.data(), e.size()));
    CHECK(rel_l2(g.data(), eg.data(), eg.size()) < 1e-5 && bf16_mismatch(gb.data(), g.data(), g.size()) == 0,
          "softmax_bwd B=%d NH=%d T=%d: %.3g", B, NH, T, rel_l2(g.data(), eg.data(), eg.size()));
    // flash helpers, 64-wide heads
    const int C = 64 * NH, N = B * T;
    std::vector<float> dout = rnd((size_t)N * C, -1, 1), out = rnd((size_t)N * C, -1, 1), D(rows, NaN), eD(rows);
    std::vector<__nv_bfloat16> outb((size_t)N * C), doutb((size_t)N * C, __float2bfloat16_rn(NaN));
    for (size_t i = 0; i < out.size(); i++) {   // the forward's bf16 copy of out: the values D is taken over
        outb[i] = __float2bfloat16_rn(out[i]);
        out[i] = __bfloat162float(outb[i]);
    }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double acc = 0;
                for (int k = 0; k < 64; k++) acc += (double)dout[((size_t)b * T + t) * C + h * 64 + k] * out[((size_t)b * T + t) * C + h * 64 + k];
                eD[((size_t)b * NH + h) * T + t] = (float)acc;
            }
    std::vector<float> dq = rnd((size_t)N * 3 * C, 1, 2), edq = dq;   // the q columns zeroed, k and v kept
    for (size_t i = 0; i < edq.size(); i++)
        if (i % (3 * C) < (size_t)C) edq[i] = 0.0f;
    warp_sim::run_grid((rows + 7) / 8, 1, sim_dim3{256, 1, 1}, 0, [&] {
        flash_bwd_dot_kernel(D.data(), dq.data(), doutb.data(), dout.data(), outb.data(), B, T, C, NH);
    });
    CHECK(rel_l2(D.data(), eD.data(), rows) < 1e-6, "flash_bwd_dot B=%d NH=%d T=%d: %.3g", B, NH, T, rel_l2(D.data(), eD.data(), rows));
    CHECK(dq == edq, "flash_bwd_dot B=%d NH=%d T=%d: dqkv's q columns not zeroed, or k/v columns touched", B, NH, T);
    CHECK(bf16_mismatch(doutb.data(), dout.data(), dout.size()) == 0, "flash_bwd_dot B=%d NH=%d T=%d: dout's bf16 copy", B,
          NH, T);
    const int ldd = 3 * C + 24;
    std::vector<float> q = rnd((size_t)N * 3 * C, -1, 1);
    std::vector<__nv_bfloat16> qb((size_t)N * ldd, __float2bfloat16_rn(NaN));
    warp_sim::run_grid(2, 1, sim_dim3{256, 1, 1}, 0, [&] { q_cols_to_bf16_kernel(qb.data(), ldd, q.data(), 3 * C, N, C); });
    size_t bad = 0;
    for (int p = 0; p < N; p++) bad += bf16_mismatch(&qb[(size_t)p * ldd], &q[(size_t)p * 3 * C], C);
    CHECK(bad == 0, "q_cols_to_bf16 N=%d C=%d: %zu wrong", N, C, bad);
}

// floats to bf16 (scalar and float4), bf16 rows back to packed floats, floats to padded bf16 rows
// (zeros in the padding), and the batched GEMM's pointer arrays
static void check_conversions(int rows, int cols) {
    const size_t n = (size_t)rows * cols;
    const sim_dim3 blk = {256, 1, 1};
    std::vector<float> x = rnd(n, -5, 5);
    std::vector<__nv_bfloat16> b1(n, __float2bfloat16_rn(NaN)), b4(b1);
    warp_sim::run_grid(2, 1, blk, 0, [&] { float_to_bf16_kernel(b1.data(), x.data(), n); });
    warp_sim::run_grid(2, 1, blk, 0, [&] { float4_to_bf16_kernel((__nv_bfloat162 *)b4.data(), (const float4 *)x.data(), n / 4); });
    CHECK(bf16_mismatch(b1.data(), x.data(), n) == 0 && bf16_mismatch(b4.data(), x.data(), n / 4 * 4) == 0,
          "float_to_bf16 n=%zu", n);
    const int width = cols + 5, ldd = cols + 8;
    std::vector<__nv_bfloat16> pr((size_t)rows * ldd, __float2bfloat16_rn(NaN));
    warp_sim::run_grid(2, 1, blk, 0, [&] { float_to_bf16_rows_kernel(pr.data(), ldd, x.data(), rows, cols, width); });
    std::vector<float> back(n, NaN);
    warp_sim::run_grid(2, 1, blk, 0, [&] { bf16_rows_to_float_kernel(back.data(), pr.data(), ldd, rows, cols); });
    size_t bad = 0;
    for (int p = 0; p < rows; p++) {
        bad += bf16_mismatch(&pr[(size_t)p * ldd], &x[(size_t)p * cols], cols);
        for (int j = cols; j < width; j++) bad += pr[(size_t)p * ldd + j].bits != 0;
        for (int j = 0; j < cols; j++)
            bad += back[(size_t)p * cols + j] != __bfloat162float(__float2bfloat16_rn(x[(size_t)p * cols + j]));
    }
    CHECK(bad == 0, "bf16 rows %dx%d (padded to %d, %d apart) and back: %zu wrong", rows, cols, width, ldd, bad);
    const int nb = 3, nh = 5, cnt = nb * nh;
    std::vector<void *> ptrs(3 * cnt, nullptr);
    static char base[3];
    warp_sim::run_grid(1, 1, sim_dim3{32, 1, 1}, 0, [&] {
        bh_ptrs_kernel(ptrs.data(), base, base + 1, base + 2, 1000, 10, 2000, 20, 3000, 30, nb, nh);
    });
    bad = 0;
    for (int i = 0; i < cnt; i++) {
        long long bi = i / nh, hi = i % nh;
        bad += ptrs[i] != (void *)(base + bi * 1000 + hi * 10);
        bad += ptrs[cnt + i] != (void *)(base + 1 + bi * 2000 + hi * 20);
        bad += ptrs[2 * cnt + i] != (void *)(base + 2 + bi * 3000 + hi * 30);
    }
    CHECK(bad == 0, "bh_ptrs: %zu wrong", bad);
}

// Several matrices into bf16 rows by one launch (jobs of different shapes and row distances):
// every value in its place, the columns past each row's and the rows past each job's untouched.
static void check_conversion_jobs() {
    const int shapes[3][3] = {{8, 40, 48}, {3, 17, 24}, {16, 9, 9}};   // rows, cols, ld
    std::vector<std::vector<float>> src(3);
    std::vector<std::vector<__nv_bfloat16>> dst(3);
    bf16_rows_jobs jobs;
    for (int k = 0; k < 3; k++) {
        const int rows = shapes[k][0], cols = shapes[k][1], ld = shapes[k][2];
        src[k] = rnd((size_t)rows * cols, -3, 3);
        dst[k].assign((size_t)(rows + 1) * ld, __float2bfloat16_rn(NaN));
        jobs.j[k].src = src[k].data(), jobs.j[k].dst = dst[k].data(), jobs.j[k].ld = ld, jobs.j[k].rows = rows,
        jobs.j[k].cols = cols;
    }
    warp_sim::run_grid(2, 3, sim_dim3{64, 1, 1}, 0, [&] { float_to_bf16_jobs_kernel(jobs); });
    size_t bad = 0;
    for (int k = 0; k < 3; k++) {
        const int rows = shapes[k][0], cols = shapes[k][1], ld = shapes[k][2];
        for (int p = 0; p <= rows; p++)
            for (int j = 0; j < ld; j++) {
                const __nv_bfloat16 v = dst[k][(size_t)p * ld + j];
                if (p < rows && j < cols)
                    bad += v.bits != __float2bfloat16_rn(src[k][(size_t)p * cols + j]).bits;
                else bad += !std::isnan(__bfloat162float(v));
            }
    }
    CHECK(bad == 0, "float_to_bf16_jobs (3 jobs): %zu wrong", bad);
}

// ---------------------------------------------------------------- quantization, element-wise
static void check_quantize(int rows, int cols, int bits) {
    std::vector<float> x = rnd((size_t)rows * cols, -3, 3);
    for (int c = 0; c < cols; c++) x[c] = 0.0f;   // an all-zero row
    if (rows > 2) x[2 * cols + 1] = 7.5f;          // an outlier
    void *rx = up(x), *ro = up(std::vector<float>(x.size()));
    CPU->quantize_rows(CPU, ro, rx, rows, cols, bits);
    std::vector<float> e = down(ro, x.size()), out(x.size(), NaN), inplace = x;
    CPU->free(CPU, rx);
    const float qmax = (float)((1L << (bits - 1)) - 1);
    warp_sim::run_grid(rows, 1, sim_dim3{Q_BLOCK, 1, 1}, 0, [&] { quantize_rows_kernel(out.data(), x.data(), cols, qmax); });
    warp_sim::run_grid(rows, 1, sim_dim3{Q_BLOCK, 1, 1}, 0, [&] { quantize_rows_kernel(inplace.data(), inplace.data(), cols, qmax); });
    CHECK(memcmp(out.data(), e.data(), e.size() * 4) == 0 && memcmp(inplace.data(), e.data(), e.size() * 4) == 0,
          "quantize_rows %dx%d at %d bits: not the CPU's values bit for bit", rows, cols, bits);
}

// The codes form: the kernel's codes and scales are the CPU's bit for bit, and expanding them
// (on the CPU and in the kernel) gives quantize_rows' values (a zero may lose its sign).
template <typename T>
static void check_quantize_codes(int rows, int cols, int bits) {
    std::vector<float> x = rnd((size_t)rows * cols, -3, 3);
    for (int c = 0; c < cols; c++) x[c] = 0.0f;   // an all-zero row
    if (rows > 2) x[2 * cols + 1] = -7.5f;         // an outlier
    const size_t n = x.size();
    void *rx = up(x), *rq = up(std::vector<float>(n)), *rs = up(std::vector<float>(rows));
    void *rc = CPU->alloc(CPU, n * swq_code_bytes(bits), "codes"), *rd = up(std::vector<float>(n));
    CPU->quantize_rows(CPU, rq, rx, rows, cols, bits);
    CPU->quantize_rows_codes(CPU, rc, rs, rx, rows, cols, bits);
    CPU->dequantize_rows(CPU, rd, rc, rs, rows, cols, bits);
    std::vector<float> eq = down(rq, n), es = down(rs, rows), ed = down(rd, n);
    std::vector<T> ec((const T *)rc, (const T *)rc + n);   // (down frees what it reads)
    CPU->free(CPU, rx);
    CPU->free(CPU, rc);
    const float qmax = (float)((1L << (bits - 1)) - 1);
    std::vector<T> codes(n, (T)99);
    std::vector<float> scales(rows, NaN), out(n, NaN);
    warp_sim::run_grid(rows, 1, sim_dim3{Q_BLOCK, 1, 1}, 0,
                       [&] { quantize_codes_kernel<T>(codes.data(), scales.data(), x.data(), cols, qmax); });
    warp_sim::run_grid((cols + DQ_COLS * DQ_VEC - 1) / (DQ_COLS * DQ_VEC), rows, sim_dim3{DQ_COLS, 1, 1}, 0,
                       [&] { dequantize_kernel<T>(out.data(), codes.data(), scales.data(), cols); });
    std::vector<__nv_bfloat16> ob(n, __float2bfloat16_rn(NaN));
    warp_sim::run_grid((n + DQ_COLS * DQ_VEC8 - 1) / (DQ_COLS * DQ_VEC8), 1, sim_dim3{DQ_COLS, 1, 1}, 0,
                       [&] { dequantize_bf16_kernel<T>(ob.data(), codes.data(), scales.data(), cols, n); });
    size_t bad = 0, big = 0;
    for (size_t i = 0; i < n; i++) {
        bad += !(ed[i] == eq[i]) + !(out[i] == eq[i]);
        bad += !(__bfloat162float(ob[i]) == __bfloat162float(__float2bfloat16_rn(eq[i])));   // their bf16 copy (a zero may lose its sign)
        big += ec[i] < -qmax || ec[i] > qmax;
    }
    CHECK(memcmp(codes.data(), ec.data(), n * sizeof(T)) == 0 && memcmp(scales.data(), es.data(), rows * 4) == 0 &&
          bad == 0 && big == 0 && es[0] == 0.0f,
          "quantize_rows_codes / dequantize_rows %dx%d at %d bits: %zu values differ, %zu codes out of range", rows,
          cols, bits, bad, big);
}

static void check_elementwise(size_t n) {
    const unsigned g = 3;   // a few blocks: the grid-stride loops go round
    const sim_dim3 blk = {EW_BLOCK, 1, 1};
    std::vector<float> x = rnd(n, -4, 4), d = rnd(n, -1, 1), acc0 = rnd(n, -1, 1);
    void *rx = up(x), *rd = up(d), *ry = up(std::vector<float>(n)), *rg = up(acc0);
    CPU->gelu_fwd(CPU, ry, rx, n);
    CPU->gelu_bwd(CPU, rg, rx, rd, n);
    std::vector<float> ey = down(ry, n), eg = down(rg, n);
    for (int v4 = 0; v4 <= (n % 4 == 0); v4++) {
        std::vector<float> y(n, NaN), gr = acc0, g0(n, NaN);
        std::vector<__nv_bfloat16> yb(n, __float2bfloat16_rn(NaN)), gb(yb);
        warp_sim::run_grid(g, 1, blk, 0, [&] {
            if (v4) gelu_fwd4_kernel((float4 *)y.data(), yb.data(), (const float4 *)x.data(), n / 4);
            else gelu_fwd_kernel(y.data(), yb.data(), x.data(), n);
        });
        warp_sim::run_grid(g, 1, blk, 0, [&] {
            if (v4) gelu_bwd4_kernel((float4 *)gr.data(), gb.data(), (const float4 *)x.data(), (const float4 *)d.data(), n / 4, 0);
            else gelu_bwd_kernel(gr.data(), gb.data(), x.data(), d.data(), n, 0);
        });
        warp_sim::run_grid(g, 1, blk, 0, [&] {   // overwrite: g0's NaNs must not be read
            if (v4) gelu_bwd4_kernel((float4 *)g0.data(), nullptr, (const float4 *)x.data(), (const float4 *)d.data(), n / 4, 1);
            else gelu_bwd_kernel(g0.data(), nullptr, x.data(), d.data(), n, 1);
        });
        std::vector<float> eg0(n);
        for (size_t i = 0; i < n; i++) eg0[i] = eg[i] - acc0[i];
        const char *form = v4 ? "float4" : "scalar";
        CHECK(rel_l2(y.data(), ey.data(), n) < 1e-6 && bf16_mismatch(yb.data(), y.data(), n) == 0, "gelu_fwd (%s) n=%zu: %.3g",
              form, n, rel_l2(y.data(), ey.data(), n));
        CHECK(rel_l2(gr.data(), eg.data(), n) < 1e-6 && bf16_mismatch(gb.data(), gr.data(), n) == 0, "gelu_bwd (%s) n=%zu: %.3g",
              form, n, rel_l2(gr.data(), eg.data(), n));
        CHECK(rel_l2(g0.data(), eg0.data(), n) < 1e-5, "gelu_bwd overwrite (%s) n=%zu: %.3g", form, n,
              rel_l2(g0.data(), eg0.data(), n));
    }
    // add (scalar and float4), accumulate, scale
    {
        void *ra = up(std::vector<float>(n)), *racc = up(acc0), *rsc = up(x);
        CPU->add(CPU, ra, rx, rd, n);
        CPU->accumulate(CPU, racc, rx, n);
        CPU->scale(CPU, rsc, -0.375, n);
        std::vector<float> ea = down(ra, n), eacc = down(racc, n), esc = down(rsc, n);
        for (int v4 = 0; v4 <= (n % 4 == 0); v4++) {
            std::vector<float> a(n, NaN);
            warp_sim::run_grid(g, 1, blk, 0, [&] {
                if (v4) add4_kernel((float4 *)a.data(), (const float4 *)x.data(), (const float4 *)d.data(), n / 4);
                else add_kernel(a.data(), x.data(), d.data(), n);
            });
            CHECK(rel_l2(a.data(), ea.data(), n) == 0, "add (%s) n=%zu", v4 ? "float4" : "scalar", n);
        }
        std::vector<float> ac = acc0, sc = x;
        warp_sim::run_grid(g, 1, blk, 0, [&] { accumulate_kernel(ac.data(), x.data(), n); });
        warp_sim::run_grid(g, 1, blk, 0, [&] { scale_kernel(sc.data(), -0.375f, n); });
        CHECK(rel_l2(ac.data(), eacc.data(), n) == 0 && rel_l2(sc.data(), esc.data(), n) == 0, "accumulate / scale n=%zu", n);
    }
    // AdamW (step 3, gradient scale), sum of squares
    std::vector<float> p0 = rnd(n, -1, 1), m0 = rnd(n, -0.1f, 0.1f), v0 = rnd(n, 0, 0.01f);
    void *rp = up(p0), *rm = up(m0), *rv = up(v0);
    CPU->adamw(CPU, rp, rd, rm, rv, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 3, 0.5);
    std::vector<float> ep = down(rp, n), em = down(rm, n), ev = down(rv, n), pp = p0, mm = m0, vv = v0;
    const float bc1 = (float)(1.0 - pow(0.9, 3)), bc2 = (float)(1.0 - pow(0.95, 3));
    warp_sim::run_grid(g, 1, blk, 0, [&] { adamw_kernel(pp.data(), d.data(), mm.data(), vv.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, bc1, bc2, 0.5f); });
    CHECK(rel_l2(pp.data(), ep.data(), n) < 1e-6 && rel_l2(mm.data(), em.data(), n) < 1e-6 && rel_l2(vv.data(), ev.data(), n) < 1e-6,
          "adamw n=%zu: %.3g %.3g %.3g", n, rel_l2(pp.data(), ep.data(), n), rel_l2(mm.data(), em.data(), n),
          rel_l2(vv.data(), ev.data(), n));
    double *racc = (double *)CPU->alloc(CPU, sizeof(double), "acc"), eacc, acc = 0.25;
    CPU->zero(CPU, racc, sizeof(double));
    CPU->sumsq(CPU, racc, rx, n);
    CPU->download_f64(CPU, &eacc, racc, 1);
    warp_sim::run_grid(g, 1, blk, 0, [&] { sumsq_kernel(&acc, x.data(), n); });
    CHECK(fabs(acc - 0.25 - eacc) <= 1e-12 * eacc, "sumsq n=%zu: %.15g vs %.15g", n, acc - 0.25, eacc);
    for (void *q : {rx, rd, (void *)racc}) CPU->free(CPU, q);
}

static void check_rows_cols(int B, int T, int C, int Vv) {
    const int N = B * T, P = 5, K = 3;
    std::vector<int> tok(N), idx = {3, 0, Vv - 1, 3, 7 % Vv};   // rows of wte (gather) and dwte (scatter)
    for (int i = 0; i < N; i++) tok[i] = (i * 7 + 1) % Vv;
    tok[N - 1] = tok[0];   // a token twice: dwte rows add up
    std::vector<float> wte = rnd((size_t)Vv * C, -1, 1), wpe = rnd((size_t)T * C, -1, 1), dy = rnd((size_t)N * C, -1, 1);
    std::vector<float> dwte0 = rnd(wte.size(), -1, 1), dwpe0 = rnd(wpe.size(), -1, 1), kin = rnd((size_t)N * K, -1, 1);
    int *rt = (int *)CPU->alloc(CPU, N * sizeof(int), "tok"), *ri = (int *)CPU->alloc(CPU, P * sizeof(int), "idx");
    CPU->upload_i32(CPU, rt, tok.data(), N);
    CPU->upload_i32(CPU, ri, idx.data(), P);
    void *rwte = up(wte), *rwpe = up(wpe), *ro = up(std::vector<float>((size_t)N * C)), *rdy = up(dy), *rdwte = up(dwte0),
         *rdwpe = up(dwpe0), *rg = up(std::vector<float>((size_t)P * C)), *rs = up(dwte0), *rk = up(kin),
         *rc = up(std::vector<float>(N)), *rk2 = up(kin);
    CPU->encoder_fwd(CPU, ro, rt, rwte, rwpe, B, T, C);
    CPU->encoder_bwd(CPU, rdwte, rdwpe, rdy, rt, B, T, C);
    CPU->gather_rows(CPU, rg, rwte, ri, P, C);
    CPU->scatter_add_rows(CPU, rs, rdy, ri, P, C);
    CPU->get_column(CPU, rc, rk, N, K, 1);
    CPU->add_to_column(CPU, rk2, rdy, N, K, 2);
    std::vector<float> eo = down(ro, (size_t)N * C), edwte = down(rdwte, wte.size()), edwpe = down(rdwpe, wpe.size()),
                       eg = down(rg, (size_t)P * C), es = down(rs, wte.size()), ec = down(rc, N), ek2 = down(rk2, kin.size());
    for (void *q : {rwte, rwpe, rdy, rk, (void *)rt, (void *)ri}) CPU->free(CPU, q);
    const sim_dim3 blk = {EW_BLOCK, 1, 1};
    std::vector<float> o((size_t)N * C, NaN), dwte = dwte0, dwpe = dwpe0, gth((size_t)P * C, NaN), sc = dwte0, col(N, NaN),
                       k2 = kin;
    warp_sim::run_grid(2, 1, blk, 0, [&] { encoder_fwd_kernel(o.data(), tok.data(), wte.data(), wpe.data(), B, T, C); });
    warp_sim::run_grid(2, 1, blk, 0, [&] { encoder_bwd_wte_kernel(dwte.data(), dy.data(), tok.data(), B, T, C); });
    warp_sim::run_grid(2, 1, blk, 0, [&] { encoder_bwd_wpe_kernel(dwpe.data(), dy.data(), B, T, C); });
    warp_sim::run_grid(2, 1, blk, 0, [&] { gather_rows_kernel(gth.data(), wte.data(), idx.data(), P, C); });
    warp_sim::run_grid(2, 1, blk, 0, [&] { scatter_add_rows_kernel(sc.data(), dy.data(), idx.data(), P, C); });
    warp_sim::run_grid(1, 1, blk, 0, [&] { get_column_kernel(col.data(), kin.data(), N, K, 1); });
    warp_sim::run_grid(1, 1, blk, 0, [&] { add_to_column_kernel(k2.data(), dy.data(), N, K, 2); });
    CHECK(rel_l2(o.data(), eo.data(), o.size()) < 1e-6, "encoder_fwd B=%d T=%d C=%d", B, T, C);
    CHECK(rel_l2(dwte.data(), edwte.data(), dwte.size()) < 1e-6 && rel_l2(dwpe.data(), edwpe.data(), dwpe.size()) < 1e-6,
          "encoder_bwd B=%d T=%d C=%d", B, T, C);
    CHECK(rel_l2(gth.data(), eg.data(), gth.size()) == 0 && rel_l2(sc.data(), es.data(), sc.size()) < 1e-6,
          "gather_rows / scatter_add_rows P=%d C=%d", P, C);
    CHECK(rel_l2(col.data(), ec.data(), N) == 0 && rel_l2(k2.data(), ek2.data(), k2.size()) < 1e-6, "get_column / add_to_column N=%d",
          N);
}

int main(void) {
    CPU = swq_backend_cpu(4);
    for (int bits = 2; bits <= 16; bits += 2) check_quantize(5, 300, bits);
    check_quantize(3, 1001, 5);
    for (int bits = 2; bits <= 8; bits += 3) check_quantize_codes<int8_t>(5, 300, bits);
    for (int bits = 9; bits <= 16; bits += 7) check_quantize_codes<int16_t>(4, 1001, bits);
    check_quantize_codes<int8_t>(3, 2052, 4);     // float4 rows, more than one block a row
    check_quantize_codes<int16_t>(2, 1027, 12);   // rows of an odd length
    check_quantize_codes<int8_t>(2, 4104, 5);     // 8-column bf16 stores, more than one block a row
    check_quantize_codes<int16_t>(3, 776, 16);    // 16-byte int16 loads
    check_elementwise(10000);
    check_elementwise(1001);
    check_rows_cols(2, 9, 24, 17);
    check_matmul_passes(37, 300, 300, 1);
    check_matmul_passes(70, 256, 264, 3);
    check_matmul_passes(19, 130, 131, 2);
    check_attention_passes(2, 3, 37);
    check_attention_passes(1, 1, 70);
    check_conversions(13, 100);
    check_conversions(7, 64);
    check_conversion_jobs();
    if (!CPU) return 2;
    check_layernorm(13, 100, 0);
    check_layernorm(19, 128, 1);
    check_layernorm(17, 256, 2);
    check_layernorm(12, 768, 3);
    check_layernorm(21, 768, 0);
    const xent_case xc[] = {
        {4, 1000, 0, 0, 1, 0, 0}, {5, 1001, 2, 1, 1, 0, 0}, {5, 1001, 2, 1, 2, 0, 0}, {4, 777, 1, 0, 0, 0, 0},
        {5, 1003, 3, 1, 1, 1, 0}, {3, 4099, 2, 0, 2, 1, 0},
        {5, 1001, 0, 0, 2, 0, 23}, {4, 1001, 0, 1, 0, 0, 63}, {3, 50, 0, 0, 2, 0, 14},   // bf16 padded rows
        {6, 1001, 0, 1, 2, 0, 4}, {3, 4099, 0, 0, 0, 0, 3},   // rows starting off 16-byte boundaries
        // float padded rows (16-byte aligned, or not), the teacher rows in another frame
        {5, 1001, 2, 1, 2, 0, 0, 3}, {3, 4099, 2, 0, 2, 1, 0, 61}, {4, 777, 1, 0, 0, 0, 0, 7},
        {6, 1001, 3, 1, 2, 0, 0, 2}, {4, 1000, 0, 0, 2, 0, 0, 24},
        // bf16 padded rows with teacher rows (the LoRA head's logits in CDT): frames in step or not
        {5, 1001, 2, 1, 2, 0, 23}, {3, 4099, 2, 0, 2, 1, 3}, {4, 777, 1, 0, 0, 0, 7}, {6, 1001, 3, 1, 2, 0, 4},
        {4, 1000, 1, 0, 2, 0, 24}, {3, 1003, 2, 1, 0, 1, 5},
        // rows of more vectors than a block has threads (a second vector a thread, a second round)
        {4, 9001, 2, 1, 2, 1, 9}, {3, 9001, 1, 0, 2, 0, 0, 5},
        // the first teacher rows into sums taken as zeros (masked rows and columns: zeros written)
        {5, 1001, 0, 1, 2, 0, 23, 0, 1}, {4, 1000, 0, 1, 1, 0, 0, 0, 1}, {3, 777, 0, 0, 0, 0, 0, 7, 1},
        // fp16 teacher rows (scaled, rows padded): first sums from zero, sums added to in place, read
        // with new sums elsewhere, read only (no gradient), more vectors than threads
        {5, 1001, 0, 1, 2, 0, 23, 0, 1, 1}, {4, 1000, 2, 1, 2, 1, 24, 0, 0, 1}, {3, 777, 1, 0, 2, 0, 9, 0, 0, 1},
        {3, 1003, 3, 0, 0, 1, 5, 0, 0, 1}, {3, 9001, 2, 1, 2, 1, 7, 0, 0, 1},
    };
    for (const xent_case &k : xc)
        for (int row = 0; row <= 1; row++) check_xent(k, row);
    check_half_rounding();
    check_teacher_half_back(5, 1001, 1024);
    check_argmax(5, 1000);
    check_argmax(3, 37);
    check_up_pack(70, 300, 0, 4, 1, 0, 1);    // no adapter: bias only, in place
    check_up_pack(70, 300, 5, 12, 1, 0, 0);   // [o | u] rows
    check_up_pack(33, 260, 16, 20, 0, 1, 0);  // GELU, no bias
    check_up_pack(40, 100, 20, 36, 1, 1, 1);  // r = 20 (the 32 form), in place
    check_up_pack(9, 1001, 8, 31, 1, 0, 0);
    check_down_kext(37, 200, 29, 8);    // a partial chunk (IC % 128), partial row block
    check_down_kext(16, 64, 5, 13);     // r off a multiple of 8: zero columns up to rp
    check_down_kext(50, 392, 40, 32);   // R = 32
    check_down_kext(20, 136, 11, 20);   // rp = 24 < R = 32
    check_down_kext(18, 1000, 7, 16);   // more chunks than stages: the ring wraps
    check_down_kext(37, 200, 29, 8, true);   // in place: x's rows padded by its producer
    check_down_kext(100, 392, 21, 16);  // more row blocks than chunks: each block's first chunk
    check_ln_down_kext(37, 768, 29, 16);   // a partial row block, a partial row pair
    check_ln_down_kext(16, 128, 5, 13);    // r off a multiple of 8
    check_ln_down_kext(33, 768, 11, 32);   // R = 32
    check_ln_down_kext(20, 128, 7, 20);    // rp = 24 < R = 32
    swq_backend_destroy(CPU);
    return check_summary("test_kernels_sim");
}
