// Finite-difference gradient checks of every backward op of the CPU backend in
// double (central differences), then float analytic gradients against double ones.
// Scalar losses are random projections L = sum(out * R). Backward outputs are
// pre-filled with nonzero values, so "+=" ops must accumulate and "=" ops must
// overwrite; NULL outputs must be skipped. Also: forward values against direct
// computations, xent_kl losses and teacher statistics by hand, one AdamW step by
// hand, and the small utility ops.
#include "check.h"
#include "model/backend.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- helpers

static uint64_t rng_state = 0x1234abcd5678ef01ULL;
static double urand(void) { return check_urand(&rng_state); }

// host arrays live until exit
static void *host_blocks[512];
static int n_host_blocks;
static double *hvec(size_t n) {
    double *p = calloc(n ? n : 1, sizeof *p);
    if (!p || n_host_blocks == (int)(sizeof host_blocks / sizeof host_blocks[0])) {
        printf("test_ops_gradcheck: out of host memory\n");
        exit(1);
    }
    host_blocks[n_host_blocks++] = p;
    return p;
}
static double *rvec(size_t n, double lo, double hi) {   // uniform in [lo, hi)
    double *p = hvec(n);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * urand();
    return p;
}

// CPU backend memory is host memory, so values move in the backend's own precision
// (the float `upload` would round the double reference).
static void *dev(swq_backend *be, const double *h, size_t n) {
    void *d = be->alloc(be, n * be->real_size, "test buffer");
    for (size_t i = 0; i < n; i++) {
        if (be->real_size == 4)
            ((float *)d)[i] = (float)h[i];
        else
            ((double *)d)[i] = h[i];
    }
    return d;
}
static void host(swq_backend *be, double *h, const void *d, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = be->real_size == 4 ? ((const float *)d)[i] : ((const double *)d)[i];
}
static double *host_new(swq_backend *be, const void *d, size_t n) {
    double *h = hvec(n);
    host(be, h, d, n);
    return h;
}
static double dot_dev(swq_backend *be, const void *d, const double *R, size_t n) {   // sum(d * R)
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (be->real_size == 4 ? ((const float *)d)[i] : ((const double *)d)[i]) * R[i];
    return s;
}
// max |a - b| / max(max |b|, tiny): normwise relative difference
static double rel_diff(const double *a, const double *b, size_t n) {
    double d = 0.0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        m = fmax(m, fabs(b[i]));
    }
    return d / m;
}
// result of a "+=" backward with prefill g0: the increment
static double *minus(const double *a, const double *g0, size_t n) {
    double *r = hvec(n);
    for (size_t i = 0; i < n; i++) r[i] = a[i] - g0[i];
    return r;
}
static int same_dev(swq_backend *be, const void *a, const void *b, size_t n) {
    return memcmp(a, b, n * be->real_size) == 0;
}

// ---------------------------------------------------------------- gradient-check driver

typedef double (*loss_fn)(swq_backend *be);             // scalar loss of the current inputs
typedef void (*grad_fn)(swq_backend *be, double **g);   // analytic gradients of the inputs

typedef struct {
    const char *name;
    int n_in;
    const char *in_name[4];
    double *in[4];   // host inputs (the driver perturbs them in place)
    size_t len[4];
    loss_fn loss;
    grad_fn grad;
} gradtest;

static swq_backend *be64, *be32;

static void gradcheck(const gradtest *t) {
    const double eps = 1e-6;
    double *g64[4], *g32[4];
    for (int k = 0; k < t->n_in; k++) {
        g64[k] = hvec(t->len[k]);
        g32[k] = hvec(t->len[k]);
    }
    t->grad(be64, g64);
    t->grad(be32, g32);
    for (int k = 0; k < t->n_in; k++) {
        size_t n = t->len[k];
        double *x = t->in[k], *num = hvec(n), scale = 0.0;
        for (size_t i = 0; i < n; i++) {
            double x0 = x[i];
            x[i] = x0 + eps;
            double lp = t->loss(be64);
            x[i] = x0 - eps;
            double lm = t->loss(be64);
            x[i] = x0;
            num[i] = (lp - lm) / (2 * eps);
            scale = fmax(scale, fabs(num[i]));
        }
        // elementwise relative error, with a floor of 1% of the tensor's largest gradient
        double err = 0.0;
        for (size_t i = 0; i < n; i++)
            err = fmax(err, fabs(g64[k][i] - num[i]) / fmax(fmax(fabs(g64[k][i]), fabs(num[i])), 1e-2 * scale + 1e-12));
        CHECK(scale > 0, "%s d%s: numerical gradient is all zero (test is vacuous)", t->name, t->in_name[k]);
        CHECK(err < 1e-6, "%s d%s: double analytic vs numerical rel error %.3g", t->name, t->in_name[k], err);
        double ef = rel_diff(g32[k], g64[k], n);
        CHECK(ef < 1e-4, "%s d%s: float vs double analytic rel diff %.3g", t->name, t->in_name[k], ef);
        if (getenv("SWQ_TEST_VERBOSE"))
            printf("  %-14s d%-6s fd err %.2e  f32 diff %.2e\n", t->name, t->in_name[k], err, ef);
    }
}

// ---------------------------------------------------------------- encoder

enum { EB = 2, ET = 3, EC = 4, EV = 5 };
static struct { double *wte, *wpe, *R; int tok[EB * ET]; } enc = {.tok = {1, 3, 1, 4, 1, 0}};

static double enc_loss(swq_backend *be) {
    void *wte = dev(be, enc.wte, EV * EC), *wpe = dev(be, enc.wpe, ET * EC);
    void *out = be->alloc(be, (size_t)EB * ET * EC * be->real_size, "out");
    be->encoder_fwd(be, out, enc.tok, wte, wpe, EB, ET, EC);
    double L = dot_dev(be, out, enc.R, EB * ET * EC);
    be->free(be, wte); be->free(be, wpe); be->free(be, out);
    return L;
}

static void enc_grad(swq_backend *be, double **g) {
    double *g0 = rvec(EV * EC, -1, 1), *g1 = rvec(ET * EC, -1, 1);
    void *R = dev(be, enc.R, EB * ET * EC);
    void *dwte = dev(be, g0, EV * EC), *dwpe = dev(be, g1, ET * EC);
    be->encoder_bwd(be, dwte, dwpe, R, enc.tok, EB, ET, EC);
    memcpy(g[0], minus(host_new(be, dwte, EV * EC), g0, EV * EC), EV * EC * sizeof(double));
    memcpy(g[1], minus(host_new(be, dwpe, ET * EC), g1, ET * EC), ET * EC * sizeof(double));
    // either output may be NULL
    void *dwte2 = dev(be, g0, EV * EC), *dwpe2 = dev(be, g1, ET * EC);
    be->encoder_bwd(be, dwte2, NULL, R, enc.tok, EB, ET, EC);
    be->encoder_bwd(be, NULL, dwpe2, R, enc.tok, EB, ET, EC);
    CHECK(same_dev(be, dwte, dwte2, EV * EC) && same_dev(be, dwpe, dwpe2, ET * EC),
          "%s encoder_bwd with a NULL output differs", be->name);
    be->free(be, R); be->free(be, dwte); be->free(be, dwpe); be->free(be, dwte2); be->free(be, dwpe2);
}

static void test_encoder(void) {
    enc.wte = rvec(EV * EC, -1, 1);
    enc.wpe = rvec(ET * EC, -1, 1);
    enc.R = rvec(EB * ET * EC, -1, 1);
    gradtest t = {"encoder", 2, {"wte", "wpe"}, {enc.wte, enc.wpe}, {EV * EC, ET * EC}, enc_loss, enc_grad};
    gradcheck(&t);
    // forward values
    void *wte = dev(be64, enc.wte, EV * EC), *wpe = dev(be64, enc.wpe, ET * EC);
    void *out = be64->alloc(be64, EB * ET * EC * 8, "out");
    be64->encoder_fwd(be64, out, enc.tok, wte, wpe, EB, ET, EC);
    double err = 0.0;
    for (int b = 0; b < EB; b++)
        for (int t2 = 0; t2 < ET; t2++)
            for (int i = 0; i < EC; i++)
                err = fmax(err, fabs(((double *)out)[(b * ET + t2) * EC + i] -
                                     (enc.wte[enc.tok[b * ET + t2] * EC + i] + enc.wpe[t2 * EC + i])));
    CHECK(err == 0.0, "encoder_fwd: wrong values (err %g)", err);
    be64->free(be64, wte); be64->free(be64, wpe); be64->free(be64, out);
}

// ---------------------------------------------------------------- layernorm

enum { LN = 3, LC = 5 };
static struct { double *inp, *w, *b, *R; } ln;

static double ln_loss(swq_backend *be) {
    void *inp = dev(be, ln.inp, LN * LC), *w = dev(be, ln.w, LC), *b = dev(be, ln.b, LC);
    void *out = be->alloc(be, LN * LC * be->real_size, "out");
    void *mean = be->alloc(be, LN * be->real_size, "mean"), *rstd = be->alloc(be, LN * be->real_size, "rstd");
    be->layernorm_fwd(be, out, mean, rstd, inp, w, b, LN, LC);
    double L = dot_dev(be, out, ln.R, LN * LC);
    be->free(be, inp); be->free(be, w); be->free(be, b); be->free(be, out); be->free(be, mean); be->free(be, rstd);
    return L;
}

static void ln_grad(swq_backend *be, double **g) {
    void *inp = dev(be, ln.inp, LN * LC), *w = dev(be, ln.w, LC), *b = dev(be, ln.b, LC);
    void *out = be->alloc(be, LN * LC * be->real_size, "out"), *R = dev(be, ln.R, LN * LC);
    void *mean = be->alloc(be, LN * be->real_size, "mean"), *rstd = be->alloc(be, LN * be->real_size, "rstd");
    be->layernorm_fwd(be, out, mean, rstd, inp, w, b, LN, LC);
    double *g0 = rvec(LN * LC, -1, 1), *g1 = rvec(LC, -1, 1), *g2 = rvec(LC, -1, 1);
    void *dinp = dev(be, g0, LN * LC), *dw = dev(be, g1, LC), *db = dev(be, g2, LC);
    be->layernorm_bwd(be, dinp, dw, db, R, inp, w, mean, rstd, LN, LC);
    memcpy(g[0], minus(host_new(be, dinp, LN * LC), g0, LN * LC), LN * LC * sizeof(double));
    memcpy(g[1], minus(host_new(be, dw, LC), g1, LC), LC * sizeof(double));
    memcpy(g[2], minus(host_new(be, db, LC), g2, LC), LC * sizeof(double));
    void *dinp2 = dev(be, g0, LN * LC);
    be->layernorm_bwd(be, dinp2, NULL, NULL, R, inp, w, mean, rstd, LN, LC);
    CHECK(same_dev(be, dinp, dinp2, LN * LC), "%s layernorm_bwd with dw = db = NULL: dinp differs", be->name);
    void *dw2 = dev(be, g1, LC);
    be->layernorm_bwd(be, NULL, dw2, NULL, R, inp, w, mean, rstd, LN, LC);
    CHECK(same_dev(be, dw, dw2, LC), "%s layernorm_bwd with dinp = db = NULL: dw differs", be->name);
    be->free(be, inp); be->free(be, w); be->free(be, b); be->free(be, out); be->free(be, R);
    be->free(be, mean); be->free(be, rstd); be->free(be, dinp); be->free(be, dw); be->free(be, db);
    be->free(be, dinp2); be->free(be, dw2);
}

static void test_layernorm(void) {
    ln.inp = rvec(LN * LC, -2, 2);
    for (int i = 0; i < LC; i++) ln.inp[LC + i] += 3.0;   // a row with a large mean
    ln.w = rvec(LC, 0.5, 1.5);
    ln.b = rvec(LC, -0.5, 0.5);
    ln.R = rvec(LN * LC, -1, 1);
    gradtest t = {"layernorm", 3, {"inp", "w", "b"}, {ln.inp, ln.w, ln.b}, {LN * LC, LC, LC}, ln_loss, ln_grad};
    gradcheck(&t);
    // forward values and the saved statistics
    void *inp = dev(be64, ln.inp, LN * LC), *w = dev(be64, ln.w, LC), *b = dev(be64, ln.b, LC);
    void *out = be64->alloc(be64, LN * LC * 8, "out"), *mean = be64->alloc(be64, LN * 8, "mean"),
         *rstd = be64->alloc(be64, LN * 8, "rstd");
    be64->layernorm_fwd(be64, out, mean, rstd, inp, w, b, LN, LC);
    double err = 0.0;
    for (int n = 0; n < LN; n++) {
        double m = 0.0, v = 0.0;
        for (int i = 0; i < LC; i++) m += ln.inp[n * LC + i] / LC;
        for (int i = 0; i < LC; i++) v += (ln.inp[n * LC + i] - m) * (ln.inp[n * LC + i] - m) / LC;
        double s = 1.0 / sqrt(v + 1e-5);
        err = fmax(err, fabs(((double *)mean)[n] - m) + fabs(((double *)rstd)[n] - s));
        for (int i = 0; i < LC; i++)
            err = fmax(err, fabs(((double *)out)[n * LC + i] - ((ln.inp[n * LC + i] - m) * s * ln.w[i] + ln.b[i])));
    }
    CHECK(err < 1e-12, "layernorm_fwd: values/mean/rstd off by %g", err);
    be64->free(be64, inp); be64->free(be64, w); be64->free(be64, b); be64->free(be64, out);
    be64->free(be64, mean); be64->free(be64, rstd);
}

// ---------------------------------------------------------------- matmul

enum { MN = 3, MI = 4, MO = 5 };
static const double mm_scale = 0.7;
static struct { double *inp, *w, *bias, *R, *o0; } mm;

static double mm_loss(swq_backend *be) {   // accumulate into a nonzero out
    void *inp = dev(be, mm.inp, MN * MI), *w = dev(be, mm.w, MO * MI), *bias = dev(be, mm.bias, MO);
    void *out = dev(be, mm.o0, MN * MO);
    be->matmul_fwd(be, out, inp, w, bias, MN, MI, MO, mm_scale, 1);
    double L = dot_dev(be, out, mm.R, MN * MO);
    be->free(be, inp); be->free(be, w); be->free(be, bias); be->free(be, out);
    return L;
}

static void mm_grad(swq_backend *be, double **g) {
    void *inp = dev(be, mm.inp, MN * MI), *w = dev(be, mm.w, MO * MI), *R = dev(be, mm.R, MN * MO);
    double *g0 = rvec(MN * MI, -1, 1), *g1 = rvec(MO * MI, -1, 1), *g2 = rvec(MO, -1, 1);
    void *dinp = dev(be, g0, MN * MI), *dw = dev(be, g1, MO * MI), *db = dev(be, g2, MO);
    be->matmul_bwd(be, dinp, dw, db, R, inp, w, MN, MI, MO, mm_scale);
    memcpy(g[0], minus(host_new(be, dinp, MN * MI), g0, MN * MI), MN * MI * sizeof(double));
    memcpy(g[1], minus(host_new(be, dw, MO * MI), g1, MO * MI), MO * MI * sizeof(double));
    memcpy(g[2], minus(host_new(be, db, MO), g2, MO), MO * sizeof(double));
    // each output alone (the others NULL) gives the same result
    void *a = dev(be, g0, MN * MI), *b = dev(be, g1, MO * MI), *c = dev(be, g2, MO);
    be->matmul_bwd(be, a, NULL, NULL, R, inp, w, MN, MI, MO, mm_scale);
    be->matmul_bwd(be, NULL, b, NULL, R, inp, w, MN, MI, MO, mm_scale);
    be->matmul_bwd(be, NULL, NULL, c, R, inp, w, MN, MI, MO, mm_scale);
    CHECK(same_dev(be, a, dinp, MN * MI) && same_dev(be, b, dw, MO * MI) && same_dev(be, c, db, MO),
          "%s matmul_bwd with NULL outputs differs", be->name);
    be->free(be, inp); be->free(be, w); be->free(be, R); be->free(be, dinp); be->free(be, dw);
    be->free(be, db); be->free(be, a); be->free(be, b); be->free(be, c);
}

static void test_matmul(void) {
    mm.inp = rvec(MN * MI, -1, 1);
    mm.w = rvec(MO * MI, -1, 1);
    mm.bias = rvec(MO, -1, 1);
    mm.R = rvec(MN * MO, -1, 1);
    mm.o0 = rvec(MN * MO, -1, 1);
    gradtest t = {"matmul", 3, {"inp", "w", "bias"}, {mm.inp, mm.w, mm.bias}, {MN * MI, MO * MI, MO}, mm_loss, mm_grad};
    gradcheck(&t);
    // forward values: =, += and no bias, against a direct triple loop
    for (int r = 0; r < 2; r++) {
        swq_backend *be = r ? be32 : be64;
        double tol = r ? 1e-6 : 1e-14;
        void *inp = dev(be, mm.inp, MN * MI), *w = dev(be, mm.w, MO * MI), *bias = dev(be, mm.bias, MO);
        double *garbage = rvec(MN * MO, 100, 200);
        void *o1 = dev(be, garbage, MN * MO), *o2 = dev(be, mm.o0, MN * MO), *o3 = dev(be, garbage, MN * MO);
        be->matmul_fwd(be, o1, inp, w, bias, MN, MI, MO, mm_scale, 0);
        be->matmul_fwd(be, o2, inp, w, bias, MN, MI, MO, mm_scale, 1);
        be->matmul_fwd(be, o3, inp, w, NULL, MN, MI, MO, mm_scale, 0);
        double *h1 = host_new(be, o1, MN * MO), *h2 = host_new(be, o2, MN * MO), *h3 = host_new(be, o3, MN * MO);
        double e1 = 0, e2 = 0, e3 = 0;
        for (int n = 0; n < MN; n++)
            for (int o = 0; o < MO; o++) {
                double s = 0.0;
                for (int i = 0; i < MI; i++) s += mm.inp[n * MI + i] * mm.w[o * MI + i];
                e1 = fmax(e1, fabs(h1[n * MO + o] - (mm_scale * s + mm.bias[o])));
                e2 = fmax(e2, fabs(h2[n * MO + o] - (mm.o0[n * MO + o] + mm_scale * s + mm.bias[o])));
                e3 = fmax(e3, fabs(h3[n * MO + o] - mm_scale * s));
            }
        CHECK(e1 < tol, "%s matmul_fwd (=, bias): off by %g", be->name, e1);
        CHECK(e2 < tol, "%s matmul_fwd (+=, bias): off by %g", be->name, e2);
        CHECK(e3 < tol, "%s matmul_fwd (=, no bias): off by %g", be->name, e3);
        be->free(be, inp); be->free(be, w); be->free(be, bias); be->free(be, o1); be->free(be, o2); be->free(be, o3);
    }
}

// ---------------------------------------------------------------- linear with a LoRA adapter

enum { LR = 2 };
static const double lo_scale = 1.5;
static struct { double *inp, *w, *bias, *A, *Bm, *R, *junk; } lo;   // junk: >= MN*MO values in [100, 200)

static double lo_loss(swq_backend *be) {   // out is "=": prefilled with garbage
    void *inp = dev(be, lo.inp, MN * MI), *w = dev(be, lo.w, MO * MI), *bias = dev(be, lo.bias, MO);
    void *A = dev(be, lo.A, LR * MI), *Bm = dev(be, lo.Bm, MO * LR);
    void *out = dev(be, lo.junk, MN * MO), *u = dev(be, lo.junk, MN * LR);
    be->lora_linear_fwd(be, out, u, inp, w, bias, A, Bm, MN, MI, MO, LR, lo_scale);
    double L = dot_dev(be, out, lo.R, MN * MO);
    be->free(be, inp); be->free(be, w); be->free(be, bias); be->free(be, A); be->free(be, Bm);
    be->free(be, out); be->free(be, u);
    return L;
}

// all five gradients (inp, w, bias, A, Bm); the "+=" outputs prefilled, du with garbage
static void lo_grad_all(swq_backend *be, double **g) {
    void *inp = dev(be, lo.inp, MN * MI), *w = dev(be, lo.w, MO * MI), *bias = dev(be, lo.bias, MO);
    void *A = dev(be, lo.A, LR * MI), *Bm = dev(be, lo.Bm, MO * LR), *R = dev(be, lo.R, MN * MO);
    void *out = be->alloc(be, MN * MO * be->real_size, "out"), *u = be->alloc(be, MN * LR * be->real_size, "u");
    be->lora_linear_fwd(be, out, u, inp, w, bias, A, Bm, MN, MI, MO, LR, lo_scale);
    size_t len[5] = {MN * MI, MO * MI, MO, LR * MI, MO * LR};
    double *g0[5];
    void *d[5];
    for (int k = 0; k < 5; k++) {
        g0[k] = rvec(len[k], -1, 1);
        d[k] = dev(be, g0[k], len[k]);
    }
    void *du = dev(be, lo.junk, MN * LR);
    be->lora_linear_bwd(be, d[0], d[1], d[2], d[3], d[4], du, R, inp, u, w, A, Bm, MN, MI, MO, LR, lo_scale);
    for (int k = 0; k < 5; k++) memcpy(g[k], minus(host_new(be, d[k], len[k]), g0[k], len[k]), len[k] * sizeof(double));
    // du = s * dout @ Bm, overwritten
    double e = 0.0, *hu = host_new(be, du, MN * LR);
    for (int n = 0; n < MN; n++)
        for (int j = 0; j < LR; j++) {
            double x = 0.0;
            for (int o = 0; o < MO; o++) x += lo.R[n * MO + o] * lo.Bm[o * LR + j];
            e = fmax(e, fabs(hu[n * LR + j] - lo_scale * x));
        }
    CHECK(e < 1e-5, "%s lora_linear_bwd: du off by %g", be->name, e);
    // dw and dbias NULL: the other gradients are unchanged
    void *a = dev(be, g0[0], len[0]), *b3 = dev(be, g0[3], len[3]), *b4 = dev(be, g0[4], len[4]);
    be->lora_linear_bwd(be, a, NULL, NULL, b3, b4, du, R, inp, u, w, A, Bm, MN, MI, MO, LR, lo_scale);
    CHECK(same_dev(be, a, d[0], len[0]) && same_dev(be, b3, d[3], len[3]) && same_dev(be, b4, d[4], len[4]),
          "%s lora_linear_bwd with NULL dw, dbias differs", be->name);
    for (int k = 0; k < 5; k++) be->free(be, d[k]);
    be->free(be, inp); be->free(be, w); be->free(be, bias); be->free(be, A); be->free(be, Bm); be->free(be, R);
    be->free(be, out); be->free(be, u); be->free(be, du); be->free(be, a); be->free(be, b3); be->free(be, b4);
}
// Gradients of lora_linear picked out of lo_grad_all's five (dinp, dw, dbias, dA, dB).
static void lo_grad_pick(swq_backend *be, double **g, const int *which, const size_t *n, int count) {
    double *all[5];
    for (int k = 0; k < 5; k++) all[k] = hvec(MO * MI > MN * MI ? MO * MI : MN * MI);
    lo_grad_all(be, all);
    for (int i = 0; i < count; i++) memcpy(g[i], all[which[i]], n[i] * sizeof(double));
}
static void lo_grad_base(swq_backend *be, double **g) {
    const int which[] = { 0, 1, 2 };
    const size_t n[] = { MN * MI, MO * MI, MO };
    lo_grad_pick(be, g, which, n, 3);
}
static void lo_grad_adapter(swq_backend *be, double **g) {
    const int which[] = { 3, 4 };
    const size_t n[] = { LR * MI, MO * LR };
    lo_grad_pick(be, g, which, n, 2);
}

static void test_lora_linear(void) {
    lo.inp = rvec(MN * MI, -1, 1);
    lo.w = rvec(MO * MI, -1, 1);
    lo.bias = rvec(MO, -1, 1);
    lo.A = rvec(LR * MI, -1, 1);
    lo.Bm = rvec(MO * LR, -1, 1);
    lo.R = rvec(MN * MO, -1, 1);
    lo.junk = rvec(MN * MO, 100, 200);
    gradtest t1 = {"lora_linear", 3, {"inp", "w", "bias"}, {lo.inp, lo.w, lo.bias}, {MN * MI, MO * MI, MO},
                   lo_loss, lo_grad_base};
    gradcheck(&t1);
    gradtest t2 = {"lora_linear", 2, {"A", "B"}, {lo.A, lo.Bm}, {LR * MI, MO * LR}, lo_loss, lo_grad_adapter};
    gradcheck(&t2);
    // forward values (out and the saved u) against direct loops
    for (int r = 0; r < 2; r++) {
        swq_backend *be = r ? be32 : be64;
        double tol = r ? 1e-5 : 1e-13;
        void *inp = dev(be, lo.inp, MN * MI), *w = dev(be, lo.w, MO * MI), *bias = dev(be, lo.bias, MO);
        void *A = dev(be, lo.A, LR * MI), *Bm = dev(be, lo.Bm, MO * LR);
        void *out = dev(be, lo.junk, MN * MO), *u = dev(be, lo.junk, MN * LR);
        be->lora_linear_fwd(be, out, u, inp, w, bias, A, Bm, MN, MI, MO, LR, lo_scale);
        double *ho = host_new(be, out, MN * MO), *hu = host_new(be, u, MN * LR), eo = 0.0, eu = 0.0;
        for (int n = 0; n < MN; n++) {
            double uu[LR];
            for (int j = 0; j < LR; j++) {
                uu[j] = 0.0;
                for (int i = 0; i < MI; i++) uu[j] += lo.inp[n * MI + i] * lo.A[j * MI + i];
                eu = fmax(eu, fabs(hu[n * LR + j] - uu[j]));
            }
            for (int o = 0; o < MO; o++) {
                double x = lo.bias[o];
                for (int i = 0; i < MI; i++) x += lo.inp[n * MI + i] * lo.w[o * MI + i];
                for (int j = 0; j < LR; j++) x += lo_scale * uu[j] * lo.Bm[o * LR + j];
                eo = fmax(eo, fabs(ho[n * MO + o] - x));
            }
        }
        CHECK(eo < tol && eu < tol, "%s lora_linear_fwd: out off by %g, u by %g", be->name, eo, eu);
        be->free(be, inp); be->free(be, w); be->free(be, bias); be->free(be, A); be->free(be, Bm);
        be->free(be, out); be->free(be, u);
    }
}

// ---------------------------------------------------------------- attention

enum { AB = 2, AT = 4, AC = 6, AH = 2 };
static struct { double *qkv, *R; } at;

static double at_loss(swq_backend *be) {
    void *qkv = dev(be, at.qkv, AB * AT * 3 * AC);
    void *out = be->alloc(be, AB * AT * AC * be->real_size, "out");
    void *att = be->alloc(be, AB * AH * AT * AT * be->real_size, "att");
    be->attention_fwd(be, out, att, qkv, AB, AT, AC, AH);
    double L = dot_dev(be, out, at.R, AB * AT * AC);
    be->free(be, qkv); be->free(be, out); be->free(be, att);
    return L;
}

static void at_grad(swq_backend *be, double **g) {
    void *qkv = dev(be, at.qkv, AB * AT * 3 * AC), *R = dev(be, at.R, AB * AT * AC);
    void *out = be->alloc(be, AB * AT * AC * be->real_size, "out");
    void *att = be->alloc(be, AB * AH * AT * AT * be->real_size, "att");
    be->attention_fwd(be, out, att, qkv, AB, AT, AC, AH);
    // dqkv is overwritten and scratch is workspace: fill both with garbage
    void *dqkv = dev(be, rvec(AB * AT * 3 * AC, 50, 60), AB * AT * 3 * AC);
    void *scratch = dev(be, rvec(AB * AH * AT * AT, -70, 70), AB * AH * AT * AT);
    be->attention_bwd(be, dqkv, scratch, R, qkv, out, att, AB, AT, AC, AH);
    host(be, g[0], dqkv, AB * AT * 3 * AC);
    // saved probabilities: causal rows summing to one
    double *a = host_new(be, att, AB * AH * AT * AT), err = 0.0;
    int future_zero = 1;
    for (int r = 0; r < AB * AH * AT; r++) {
        int t = r % AT;
        double s = 0.0;
        for (int t2 = 0; t2 < AT; t2++) {
            if (t2 > t) future_zero &= a[r * AT + t2] == 0.0;
            else s += a[r * AT + t2];
        }
        err = fmax(err, fabs(s - 1.0));
    }
    CHECK(future_zero && err < 1e-6, "%s attention_fwd: att not causal/normalized (sum err %g)", be->name, err);
    be->free(be, qkv); be->free(be, R); be->free(be, out); be->free(be, att); be->free(be, dqkv); be->free(be, scratch);
}

static void test_attention(void) {
    at.qkv = rvec(AB * AT * 3 * AC, -1.5, 1.5);
    at.R = rvec(AB * AT * AC, -1, 1);
    gradtest t = {"attention", 1, {"qkv"}, {at.qkv}, {AB * AT * 3 * AC}, at_loss, at_grad};
    gradcheck(&t);
    // forward values against a direct computation of softmax(q k^T / sqrt(hs)) v
    const int hs = AC / AH;
    void *qkv = dev(be64, at.qkv, AB * AT * 3 * AC);
    void *out = be64->alloc(be64, AB * AT * AC * 8, "out"), *att = be64->alloc(be64, AB * AH * AT * AT * 8, "att");
    be64->attention_fwd(be64, out, att, qkv, AB, AT, AC, AH);
    double err = 0.0;
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < AH; h++)
            for (int t = 0; t < AT; t++) {
                double w[AT], s = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    double d = 0.0;
                    for (int i = 0; i < hs; i++)
                        d += at.qkv[(b * AT + t) * 3 * AC + h * hs + i] * at.qkv[(b * AT + t2) * 3 * AC + AC + h * hs + i];
                    w[t2] = exp(d / sqrt((double)hs));
                    s += w[t2];
                }
                for (int i = 0; i < hs; i++) {
                    double o = 0.0;
                    for (int t2 = 0; t2 <= t; t2++) o += w[t2] / s * at.qkv[(b * AT + t2) * 3 * AC + 2 * AC + h * hs + i];
                    err = fmax(err, fabs(((double *)out)[(b * AT + t) * AC + h * hs + i] - o));
                }
            }
    CHECK(err < 1e-13, "attention_fwd: values off by %g", err);
    be64->free(be64, qkv); be64->free(be64, out); be64->free(be64, att);
}

// ---------------------------------------------------------------- GELU

enum { GN = 9 };
static struct { double *inp, *R; } ge;

static double ge_loss(swq_backend *be) {
    void *inp = dev(be, ge.inp, GN), *out = be->alloc(be, GN * be->real_size, "out");
    be->gelu_fwd(be, out, inp, GN);
    double L = dot_dev(be, out, ge.R, GN);
    be->free(be, inp); be->free(be, out);
    return L;
}

static void ge_grad(swq_backend *be, double **g) {
    double *g0 = rvec(GN, -1, 1);
    void *inp = dev(be, ge.inp, GN), *R = dev(be, ge.R, GN), *dinp = dev(be, g0, GN);
    be->gelu_bwd(be, dinp, inp, R, GN);
    memcpy(g[0], minus(host_new(be, dinp, GN), g0, GN), GN * sizeof(double));
    be->free(be, inp); be->free(be, R); be->free(be, dinp);
}

static void test_gelu(void) {
    ge.inp = rvec(GN, -4, 4);
    ge.inp[0] = 0.0;
    ge.R = rvec(GN, -1, 1);
    gradtest t = {"gelu", 1, {"inp"}, {ge.inp}, {GN}, ge_loss, ge_grad};
    gradcheck(&t);
    void *inp = dev(be64, ge.inp, GN), *out = be64->alloc(be64, GN * 8, "out");
    be64->gelu_fwd(be64, out, inp, GN);
    double err = 0.0;
    for (int i = 0; i < GN; i++) {
        double x = ge.inp[i];
        err = fmax(err, fabs(((double *)out)[i] - 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)))));
    }
    CHECK(err < 1e-14, "gelu_fwd: values off by %g", err);
    be64->free(be64, inp); be64->free(be64, out);
}

// ---------------------------------------------------------------- gather / scatter, columns

enum { SM = 5, SP = 4, SC = 3 };
static const int sidx[SP] = {2, 0, 2, 4};   // a repeated row must accumulate
static struct { double *in, *src, *dst0, *Rg, *Rs; } sg;

static double gather_loss(swq_backend *be) {
    void *in = dev(be, sg.in, SM * SC), *out = be->alloc(be, SP * SC * be->real_size, "out");
    be->gather_rows(be, out, in, sidx, SP, SC);
    double L = dot_dev(be, out, sg.Rg, SP * SC);
    be->free(be, in); be->free(be, out);
    return L;
}
static void gather_grad(swq_backend *be, double **g) {   // backward of gather = scatter_add (+=)
    double *g0 = rvec(SM * SC, -1, 1);
    void *R = dev(be, sg.Rg, SP * SC), *d = dev(be, g0, SM * SC);
    be->scatter_add_rows(be, d, R, sidx, SP, SC);
    memcpy(g[0], minus(host_new(be, d, SM * SC), g0, SM * SC), SM * SC * sizeof(double));
    be->free(be, R); be->free(be, d);
}
static double scatter_loss(swq_backend *be) {
    void *src = dev(be, sg.src, SP * SC), *dst = dev(be, sg.dst0, SM * SC);
    be->scatter_add_rows(be, dst, src, sidx, SP, SC);
    double L = dot_dev(be, dst, sg.Rs, SM * SC);
    be->free(be, src); be->free(be, dst);
    return L;
}
static void scatter_grad(swq_backend *be, double **g) {   // backward of scatter_add = gather (=)
    void *R = dev(be, sg.Rs, SM * SC), *d = dev(be, rvec(SP * SC, 10, 20), SP * SC);
    be->gather_rows(be, d, R, sidx, SP, SC);
    host(be, g[0], d, SP * SC);
    be->free(be, R); be->free(be, d);
}

enum { CN = 4, CK = 3, CCOL = 1 };
static struct { double *in, *src, *dst0, *Rg, *Ra; } co;

static double getcol_loss(swq_backend *be) {
    void *in = dev(be, co.in, CN * CK), *out = be->alloc(be, CN * be->real_size, "out");
    be->get_column(be, out, in, CN, CK, CCOL);
    double L = dot_dev(be, out, co.Rg, CN);
    be->free(be, in); be->free(be, out);
    return L;
}
static void getcol_grad(swq_backend *be, double **g) {   // backward of get_column = add_to_column (+=)
    double *g0 = rvec(CN * CK, -1, 1);
    void *R = dev(be, co.Rg, CN), *d = dev(be, g0, CN * CK);
    be->add_to_column(be, d, R, CN, CK, CCOL);
    memcpy(g[0], minus(host_new(be, d, CN * CK), g0, CN * CK), CN * CK * sizeof(double));
    be->free(be, R); be->free(be, d);
}
static double addcol_loss(swq_backend *be) {
    void *src = dev(be, co.src, CN), *dst = dev(be, co.dst0, CN * CK);
    be->add_to_column(be, dst, src, CN, CK, CCOL);
    double L = dot_dev(be, dst, co.Ra, CN * CK);
    be->free(be, src); be->free(be, dst);
    return L;
}
static void addcol_grad(swq_backend *be, double **g) {   // backward of add_to_column = get_column (=)
    void *R = dev(be, co.Ra, CN * CK), *d = dev(be, rvec(CN, 10, 20), CN);
    be->get_column(be, d, R, CN, CK, CCOL);
    host(be, g[0], d, CN);
    be->free(be, R); be->free(be, d);
}

static void test_rows_columns(void) {
    sg.in = rvec(SM * SC, -1, 1);
    sg.src = rvec(SP * SC, -1, 1);
    sg.dst0 = rvec(SM * SC, -1, 1);
    sg.Rg = rvec(SP * SC, -1, 1);
    sg.Rs = rvec(SM * SC, -1, 1);
    gradtest t1 = {"gather_rows", 1, {"in"}, {sg.in}, {SM * SC}, gather_loss, gather_grad};
    gradtest t2 = {"scatter_add", 1, {"src"}, {sg.src}, {SP * SC}, scatter_loss, scatter_grad};
    gradcheck(&t1);
    gradcheck(&t2);
    co.in = rvec(CN * CK, -1, 1);
    co.src = rvec(CN, -1, 1);
    co.dst0 = rvec(CN * CK, -1, 1);
    co.Rg = rvec(CN, -1, 1);
    co.Ra = rvec(CN * CK, -1, 1);
    gradtest t3 = {"get_column", 1, {"in"}, {co.in}, {CN * CK}, getcol_loss, getcol_grad};
    gradtest t4 = {"add_to_column", 1, {"src"}, {co.src}, {CN}, addcol_loss, addcol_grad};
    gradcheck(&t3);
    gradcheck(&t4);
    // forward values
    void *in = dev(be64, sg.in, SM * SC), *out = be64->alloc(be64, SP * SC * 8, "out");
    be64->gather_rows(be64, out, in, sidx, SP, SC);
    int ok = 1;
    for (int p = 0; p < SP; p++)
        for (int c = 0; c < SC; c++) ok &= ((double *)out)[p * SC + c] == sg.in[sidx[p] * SC + c];
    CHECK(ok, "gather_rows: wrong values");
    void *cin = dev(be64, co.in, CN * CK), *col = be64->alloc(be64, CN * 8, "col");
    be64->get_column(be64, col, cin, CN, CK, 2);
    ok = 1;
    for (int n = 0; n < CN; n++) ok &= ((double *)col)[n] == co.in[n * CK + 2];
    CHECK(ok, "get_column: wrong values");
    be64->free(be64, in); be64->free(be64, out); be64->free(be64, cin); be64->free(be64, col);
}

// ---------------------------------------------------------------- xent_kl

enum { XP = 4, XV = 6, XNT = 2 };
static const int xtarget[XP] = {2, -1, 0, 3};
static const int xlen[XP] = {6, 4, 6, 5};
static const double xbeta = 0.7, xweight = 0.9, xgscale = 1.3;
static struct {
    double *z, *tz[XNT];   // student and teacher logits
    double *tS, *tH;       // teacher statistics by hand
    int with_teachers;
} xk;

// masked log-softmax by hand; columns >= len get -inf
static void log_softmax(const double *z, int len, double *lq) {
    double m = -INFINITY, s = 0.0;
    for (int v = 0; v < len; v++) m = fmax(m, z[v]);
    for (int v = 0; v < len; v++) s += exp(z[v] - m);
    for (int v = 0; v < XV; v++) lq[v] = v < len ? z[v] - m - log(s) : -INFINITY;
}

static double xk_loss(swq_backend *be) {   // grad_scale * weight * sum(ce + beta * kl)
    int nt = xk.with_teachers ? XNT : 0;
    void *z = dev(be, xk.z, XP * XV);
    void *tS = nt ? dev(be, xk.tS, XP * XV) : NULL, *tH = nt ? dev(be, xk.tH, XP) : NULL;
    double *acc = be->alloc(be, 2 * sizeof(double), "acc");
    be->xent_kl(be, z, xtarget, xlen, tS, tH, nt, xbeta, NULL, NULL, acc, xweight, xgscale, 0, XP, XV);
    double L = xgscale * (acc[0] + xbeta * acc[1]);
    be->free(be, z); be->free(be, acc);
    if (nt) { be->free(be, tS); be->free(be, tH); }
    return L;
}

static void xk_grad(swq_backend *be, double **g) {
    int nt = xk.with_teachers ? XNT : 0;
    void *z = dev(be, xk.z, XP * XV);
    void *tS = nt ? dev(be, xk.tS, XP * XV) : NULL, *tH = nt ? dev(be, xk.tH, XP) : NULL;
    double *acc = be->alloc(be, 2 * sizeof(double), "acc");
    be->xent_kl(be, z, xtarget, xlen, tS, tH, nt, xbeta, NULL, NULL, acc, xweight, xgscale, 1, XP, XV);
    host(be, g[0], z, XP * XV);
    int masked_zero = 1;
    for (int p = 0; p < XP; p++)
        for (int v = xlen[p]; v < XV; v++) masked_zero &= g[0][p * XV + v] == 0.0;
    CHECK(masked_zero, "%s xent_kl: masked columns got a nonzero gradient", be->name);
    // grad = 0 leaves the logits alone
    void *z2 = dev(be, xk.z, XP * XV), *z3 = dev(be, xk.z, XP * XV);
    be->xent_kl(be, z2, xtarget, xlen, tS, tH, nt, xbeta, NULL, NULL, acc, xweight, xgscale, 0, XP, XV);
    CHECK(same_dev(be, z2, z3, XP * XV), "%s xent_kl with grad = 0 changed the logits", be->name);
    // grad = 2 (the gradient only goes on to a linear's backward) is the same gradient here
    void *z4 = dev(be, xk.z, XP * XV);
    be->xent_kl(be, z4, xtarget, xlen, tS, tH, nt, xbeta, NULL, NULL, acc, xweight, xgscale, 2, XP, XV);
    CHECK(same_dev(be, z4, z, XP * XV), "%s xent_kl with grad = 2 gives another gradient than grad = 1", be->name);
    be->free(be, z4);
    be->free(be, z); be->free(be, z2); be->free(be, z3); be->free(be, acc);
    if (nt) { be->free(be, tS); be->free(be, tH); }
}

// Losses and teacher statistics of xent_kl against a hand computation; teachers enter
// through nS/nH of earlier calls, which must equal the explicit sums over teachers.
static void xent_by_hand(swq_backend *be) {
    const double tol = be->real_size == 4 ? 2e-6 : 1e-13;
    double lq[XP][XV], lp[XNT][XP][XV];
    for (int p = 0; p < XP; p++) {
        log_softmax(xk.z + p * XV, xlen[p], lq[p]);
        for (int j = 0; j < XNT; j++) log_softmax(xk.tz[j] + p * XV, xlen[p], lp[j][p]);
    }
    // teacher rows: nS/nH accumulate over two calls (with grad on: statistics are of q, not of the gradient)
    void *nS = dev(be, rvec(XP * XV, 0, 0), XP * XV), *nH = dev(be, rvec(XP, 0, 0), XP);
    double *acc = be->alloc(be, 2 * sizeof(double), "acc");
    double ce_teachers = 0.0;
    for (int j = 0; j < XNT; j++) {
        void *tz = dev(be, xk.tz[j], XP * XV);
        be->xent_kl(be, tz, xtarget, xlen, NULL, NULL, 0, xbeta, nS, nH, acc, xweight, xgscale, j == 0, XP, XV);
        for (int p = 0; p < XP; p++)
            if (xtarget[p] >= 0) ce_teachers -= lp[j][p][xtarget[p]];
        be->free(be, tz);
    }
    CHECK(fabs(acc[0] - xweight * ce_teachers) < tol * fabs(ce_teachers) && acc[1] == 0.0,
          "%s xent_kl teacher calls: acc = (%.15g, %g), expected (%.15g, 0)", be->name, acc[0], acc[1],
          xweight * ce_teachers);
    double *hS = host_new(be, nS, XP * XV), *hH = host_new(be, nH, XP), eS = 0.0, eH = 0.0;
    for (int p = 0; p < XP; p++) {
        double h = 0.0;
        for (int v = 0; v < XV; v++) {
            double s = 0.0;
            for (int j = 0; j < XNT; j++)
                if (v < xlen[p]) {
                    s += exp(lp[j][p][v]);
                    h += exp(lp[j][p][v]) * lp[j][p][v];
                }
            eS = fmax(eS, fabs(hS[p * XV + v] - s));
        }
        eH = fmax(eH, fabs(hH[p] - h));
    }
    CHECK(eS < tol && eH < tol * 10, "%s xent_kl nS/nH: off from the sum over teachers by %g / %g", be->name, eS, eH);

    // student row with those teachers: acc (pre-filled) += weight * (ce, sum_j KL(p_j || q))
    double ce = 0.0, kl = 0.0;
    for (int p = 0; p < XP; p++) {
        if (xtarget[p] >= 0) ce -= lq[p][xtarget[p]];
        for (int j = 0; j < XNT; j++)
            for (int v = 0; v < xlen[p]; v++) kl += exp(lp[j][p][v]) * (lp[j][p][v] - lq[p][v]);
    }
    acc[0] = 1.5;
    acc[1] = -2.0;
    void *z = dev(be, xk.z, XP * XV);
    be->xent_kl(be, z, xtarget, xlen, nS, nH, XNT, xbeta, NULL, NULL, acc, xweight, xgscale, 1, XP, XV);
    CHECK(fabs(acc[0] - 1.5 - xweight * ce) < tol * 10 && fabs(acc[1] + 2.0 - xweight * kl) < tol * 10,
          "%s xent_kl: acc increments (%.15g, %.15g), expected (%.15g, %.15g)", be->name, acc[0] - 1.5,
          acc[1] + 2.0, xweight * ce, xweight * kl);
    CHECK(kl > 0, "xent_kl test: KL by hand should be positive (%g)", kl);
    // the gradient by backend.h's formula (the CE part, q - onehot, only where target >= 0)
    double *gz = host_new(be, z, XP * XV), eg = 0.0;
    for (int p = 0; p < XP; p++)
        for (int v = 0; v < XV; v++) {
            double want = 0.0;
            if (v < xlen[p]) {
                double s = 0.0;
                for (int j = 0; j < XNT; j++) s += exp(lp[j][p][v]);
                want = xgscale * xweight * (((xtarget[p] >= 0) + xbeta * XNT) * exp(lq[p][v]) - (v == xtarget[p]) - xbeta * s);
            }
            eg = fmax(eg, fabs(gz[p * XV + v] - want));
        }
    CHECK(eg < tol * 10, "%s xent_kl: gradient off from the documented formula by %g", be->name, eg);
    be->free(be, nS); be->free(be, nH); be->free(be, acc); be->free(be, z);
}

// nS/nH may be tS/tH (CDT adds a one-config precision level straight into the teachers): the
// same gradient and losses as with separate buffers, and the teachers end as tS + q, tH + sum q log q.
static void xent_alias(swq_backend *be) {
    double *acc = be->alloc(be, 4 * sizeof(double), "acc");
    be->zero(be, acc, 4 * sizeof(double));
    void *z1 = dev(be, xk.z, XP * XV), *tS1 = dev(be, xk.tS, XP * XV), *tH1 = dev(be, xk.tH, XP);
    void *nS1 = dev(be, rvec(XP * XV, 0, 0), XP * XV), *nH1 = dev(be, rvec(XP, 0, 0), XP);
    be->xent_kl(be, z1, xtarget, xlen, tS1, tH1, XNT, xbeta, nS1, nH1, acc, xweight, xgscale, 1, XP, XV);
    void *z2 = dev(be, xk.z, XP * XV), *tS2 = dev(be, xk.tS, XP * XV), *tH2 = dev(be, xk.tH, XP);
    be->xent_kl(be, z2, xtarget, xlen, tS2, tH2, XNT, xbeta, tS2, tH2, acc + 2, xweight, xgscale, 1, XP, XV);
    CHECK(same_dev(be, z1, z2, XP * XV), "%s xent_kl with nS = tS: a different gradient", be->name);
    CHECK(acc[0] == acc[2] && acc[1] == acc[3], "%s xent_kl with nS = tS: losses (%.17g, %.17g) against (%.17g, %.17g)",
          be->name, acc[2], acc[3], acc[0], acc[1]);
    be->accumulate(be, tS1, nS1, XP * XV);
    be->accumulate(be, tH1, nH1, XP);
    CHECK(same_dev(be, tS1, tS2, XP * XV) && same_dev(be, tH1, tH2, XP),
          "%s xent_kl with nS = tS: the teachers are not tS + q, tH + sum q log q", be->name);
    void *all[] = {z1, tS1, tH1, nS1, nH1, z2, tS2, tH2, acc};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) be->free(be, all[i]);
}

static void test_xent_kl(void) {
    xk.z = rvec(XP * XV, -3, 3);
    for (int j = 0; j < XNT; j++) xk.tz[j] = rvec(XP * XV, -3, 3);
    for (int p = 0; p < XP; p++)   // garbage in masked columns must not matter
        for (int v = xlen[p]; v < XV; v++) xk.z[p * XV + v] = 1e3;
    xk.tS = hvec(XP * XV);
    xk.tH = hvec(XP);
    for (int j = 0; j < XNT; j++)
        for (int p = 0; p < XP; p++) {
            double lp[XV];
            log_softmax(xk.tz[j] + p * XV, xlen[p], lp);
            for (int v = 0; v < xlen[p]; v++) {
                xk.tS[p * XV + v] += exp(lp[v]);
                xk.tH[p] += exp(lp[v]) * lp[v];
            }
        }
    xk.with_teachers = 0;
    gradtest t0 = {"xent", 1, {"logits"}, {xk.z}, {XP * XV}, xk_loss, xk_grad};
    gradcheck(&t0);
    xk.with_teachers = 1;
    gradtest t1 = {"xent_kl", 1, {"logits"}, {xk.z}, {XP * XV}, xk_loss, xk_grad};
    gradcheck(&t1);
    xent_by_hand(be64);
    xent_by_hand(be32);
    xent_alias(be64);
    xent_alias(be32);
}

// ---------------------------------------------------------------- AdamW

static void test_adamw(swq_backend *be) {
    enum { N = 7 };
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, gs = 0.5;
    const int t = 3;
    double *p = rvec(N, -1, 1), *g = rvec(N, -2, 2), *m = rvec(N, -0.1, 0.1), *v = rvec(N, 0, 0.05);
    void *dp = dev(be, p, N), *dg = dev(be, g, N), *dm = dev(be, m, N), *dv = dev(be, v, N);
    be->adamw(be, dp, dg, dm, dv, N, lr, b1, b2, eps, wd, t, gs);
    double *hp = host_new(be, dp, N), *hm = host_new(be, dm, N), *hv = host_new(be, dv, N), err = 0.0;
    for (int i = 0; i < N; i++) {
        double gi = g[i] * gs;
        double mi = b1 * m[i] + (1 - b1) * gi, vi = b2 * v[i] + (1 - b2) * gi * gi;
        double mhat = mi / (1 - pow(b1, t)), vhat = vi / (1 - pow(b2, t));
        double pi = p[i] - lr * (mhat / (sqrt(vhat) + eps) + wd * p[i]);
        err = fmax(err, fabs(hp[i] - pi) + fabs(hm[i] - mi) + fabs(hv[i] - vi));
    }
    CHECK(err < (be->real_size == 4 ? 1e-6 : 1e-15), "%s adamw: one step off from the hand computation by %g",
          be->name, err);
    be->free(be, dp); be->free(be, dg); be->free(be, dm); be->free(be, dv);
}

// ---------------------------------------------------------------- utility ops

static void test_misc(swq_backend *be) {
    enum { N = 10 };
    float hf[N], back[N];
    for (int i = 0; i < N; i++) hf[i] = (float)(urand() * 4 - 2);
    void *a = be->alloc(be, N * be->real_size, "a");
    int zeroed = 1;
    for (size_t i = 0; i < N * be->real_size; i++) zeroed &= ((unsigned char *)a)[i] == 0;
    CHECK(zeroed, "%s alloc: memory not zeroed", be->name);
    be->upload(be, a, hf, N);
    be->download(be, back, a, N);
    CHECK(memcmp(hf, back, sizeof hf) == 0, "%s upload/download: float round trip not exact", be->name);
    void *b = be->alloc(be, N * be->real_size, "b"), *c = be->alloc(be, N * be->real_size, "c");
    be->copy(be, b, a, N);
    CHECK(same_dev(be, a, b, N), "%s copy: differs", be->name);
    be->scale(be, b, -2.0, N);
    be->add(be, c, a, b, N);   // c = a - 2a = -a
    be->accumulate(be, c, a, N);   // c = 0
    double *hc = host_new(be, c, N), *hb = host_new(be, b, N), e = 0.0;
    for (int i = 0; i < N; i++) e = fmax(e, fabs(hc[i]) + fabs(hb[i] + 2.0 * hf[i]));
    CHECK(e == 0.0, "%s scale/add/accumulate: wrong values (err %g)", be->name, e);
    double acc[1] = {0.25}, ss = 0.0;
    for (int i = 0; i < N; i++) ss += (double)hf[i] * hf[i];
    be->sumsq(be, acc, a, N);
    CHECK(fabs(acc[0] - 0.25 - ss) < 1e-12, "%s sumsq: %.15g, expected %.15g", be->name, acc[0] - 0.25, ss);
    be->zero(be, a, N * be->real_size);
    double *ha = host_new(be, a, N), z = 0.0;
    for (int i = 0; i < N; i++) z = fmax(z, fabs(ha[i]));
    CHECK(z == 0.0, "%s zero: not zeroed", be->name);
    int hi[4] = {3, -1, 7, 0}, di[4] = {0}, *ib = be->alloc(be, sizeof hi, "ints");
    be->upload_i32(be, ib, hi, 4);
    memcpy(di, ib, sizeof di);
    CHECK(memcmp(hi, di, sizeof hi) == 0, "%s upload_i32: differs", be->name);
    double hd[2] = {1.0 / 3.0, -1e300}, dd[2] = {0};
    be->download_f64(be, dd, hd, 2);
    CHECK(memcmp(hd, dd, sizeof hd) == 0, "%s download_f64: not exact", be->name);
    // argmax: first of equal maxima
    double lz[3 * 4] = {1, 5, 5, 2, -3, -1, -2, -1, 0, 0, 0, 0};
    void *dz = dev(be, lz, 12);
    int am[3] = {-9, -9, -9};
    be->argmax_rows(be, am, dz, 3, 4);
    CHECK(am[0] == 1 && am[1] == 1 && am[2] == 0, "%s argmax_rows: got %d %d %d, expected 1 1 0", be->name, am[0],
          am[1], am[2]);
    be->synchronize(be);
    be->free(be, a); be->free(be, b); be->free(be, c); be->free(be, ib); be->free(be, dz);
}

int main(void) {
    be64 = swq_backend_cpu(8);
    be32 = swq_backend_cpu(4);
    CHECK(be64 && be32, "swq_backend_cpu returned NULL");
    if (!be64 || !be32) return 1;
    CHECK(be64->real_size == 8 && be32->real_size == 4 && !strcmp(be64->name, "cpu-f64") && !strcmp(be32->name, "cpu"),
          "backend real_size/name wrong");
    CHECK(swq_backend_cpu(2) == NULL, "swq_backend_cpu(2) should fail");
    test_encoder();
    test_layernorm();
    test_matmul();
    test_lora_linear();
    test_attention();
    test_gelu();
    test_rows_columns();
    test_xent_kl();
    test_adamw(be64);
    test_adamw(be32);
    test_misc(be64);
    test_misc(be32);
    swq_backend_destroy(be64);
    swq_backend_destroy(be32);
    for (int i = 0; i < n_host_blocks; i++) free(host_blocks[i]);
    return check_summary("test_ops_gradcheck");
}
