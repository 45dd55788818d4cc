// cuda_ops_check: runs every op of the backend table on the CPU reference (float) and on
// the CUDA backend with the same fresh random inputs and prints ||gpu-cpu||/||cpu|| per op
// and case. Outputs of "=" ops are poisoned with NaN first (an unwritten element fails);
// outputs of "+=" ops start from random values (the accumulation is checked). Exits 1 if
// any case is over its tolerance, 2 if no CUDA backend can be made.
// --time instead times the GPU ops at GPT-2 small shapes (no CPU, no check); --attention runs
// (or times) only the attention cases. In bf16 the attention cases run again (or are timed) with
// each of flash attention's block shapes forced (SWQ_CUDA_FLASH_ROWS, SWQ_CUDA_FLASH_KEYS).
//   usage: cuda_ops_check [--small] [--time] [--attention] [--seed N] [--precision fp32|tf32|bf16|all]
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/backend_cuda.h"
#include "model/backend.h"
#include "model/rng.h"
#include "compare.h"

static swq_backend *CPU, *GPU;
static const char *PREC;   // precision of GPU
static swq_rng RNG;
static int n_fail, n_run;

// ---------------------------------------------------------------- paired buffers

typedef struct {
    void *c, *g;   // CPU and GPU copies
    size_t n;      // reals
} pbuf;

static pbuf pb_new(size_t n, const char *what) {
    pbuf b = {CPU->alloc(CPU, n * 4, what), GPU->alloc(GPU, n * 4, what), n};
    return b;
}
static void pb_free(pbuf *b) {
    CPU->free(CPU, b->c);
    GPU->free(GPU, b->g);
    b->c = b->g = NULL;
}
static float *hbuf(size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h) {
        fprintf(stderr, "cuda_ops_check: out of host memory (%zu floats)\n", n);
        exit(1);
    }
    return h;
}
static void pb_set(pbuf *b, const float *h) {
    CPU->upload(CPU, b->c, h, b->n);
    GPU->upload(GPU, b->g, h, b->n);
}
// x rounded to nearest (ties to even) without its `drop` low mantissa bits (tf32: 13, bf16: 16);
// NaN as it is
static float round_mantissa(float x, int drop) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x;
    u += ((1u << (drop - 1)) - 1u) + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1u);
    memcpy(&x, &u, 4);
    return x;
}
// Uniform in [-scale, scale). In tf32, values tf32 holds exactly: a GEMM's products of the inputs
// are then exact, and what is compared is the GPU's own arithmetic, not the rounding of random
// operands, which for a dot product with cancellation alone reaches 3e-4 (a seed in stop 20 and
// one in stop 22 did: du and dB of lora_linear_bwd, 3.81e-4 and 3.02e-4).
static void pb_rand(pbuf *b, float scale) {
    float *h = hbuf(b->n);
    const int t32 = !strcmp(PREC, "tf32");
    for (size_t i = 0; i < b->n; i++) {
        h[i] = (float)((2.0 * swq_rng_uniform(&RNG) - 1.0) * scale);
        if (t32) h[i] = round_mantissa(h[i], 13);
    }
    pb_set(b, h);
    free(h);
}
static void pb_poison(pbuf *b) {
    float *h = hbuf(b->n);
    for (size_t i = 0; i < b->n; i++) h[i] = NAN;
    pb_set(b, h);
    free(h);
}
// the CPU copy's content, copied to the GPU copy (e.g. a reference forward's output)
static void pb_sync_from_cpu(pbuf *b) {
    float *h = hbuf(b->n);
    CPU->download(CPU, h, b->c, b->n);
    GPU->upload(GPU, b->g, h, b->n);
    free(h);
}

static double pb_err(const pbuf *b) {
    float *hc = hbuf(b->n), *hg = hbuf(b->n);
    CPU->download(CPU, hc, b->c, b->n);
    GPU->synchronize(GPU);
    GPU->download(GPU, hg, b->g, b->n);
    double e = rel_err(hg, hc, b->n);
    free(hc);
    free(hg);
    return e;
}

typedef struct {
    int *c, *g;
    size_t n;
} ibuf;
static ibuf ib_new(const int *h, size_t n) {
    ibuf b = {CPU->alloc(CPU, n * sizeof(int), "ints"), GPU->alloc(GPU, n * sizeof(int), "ints"), n};
    CPU->upload_i32(CPU, b.c, h, n);
    GPU->upload_i32(GPU, b.g, h, n);
    return b;
}
static void ib_free(ibuf *b) {
    CPU->free(CPU, b->c);
    GPU->free(GPU, b->g);
}

typedef struct {
    double *c, *g;
    size_t n;
} dbuf;
// doubles have no upload op: zero both, then add the start values through sumsq on a 1-real buffer
static dbuf db_new(size_t n) {
    dbuf b = {CPU->alloc(CPU, n * sizeof(double), "acc"), GPU->alloc(GPU, n * sizeof(double), "acc"), n};
    CPU->zero(CPU, b.c, n * sizeof(double));
    GPU->zero(GPU, b.g, n * sizeof(double));
    return b;
}
static void db_start(dbuf *b, size_t i, float v) {   // acc[i] = v*v
    pbuf one = pb_new(1, "one");
    pb_set(&one, &v);
    CPU->sumsq(CPU, b->c + i, one.c, 1);
    GPU->sumsq(GPU, b->g + i, one.g, 1);
    pb_free(&one);
}
static double db_err(const dbuf *b, size_t i, size_t n) {
    double hc[8], hg[8];
    if (n > 8) n = 8;
    CPU->download_f64(CPU, hc, b->c + i, n);
    GPU->download_f64(GPU, hg, b->g + i, n);
    double num = 0, den = 0;
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(hg[k]) || !isfinite(hc[k])) return INFINITY;
        num += (hg[k] - hc[k]) * (hg[k] - hc[k]);
        den += hc[k] * hc[k];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static void db_free(dbuf *b) {
    CPU->free(CPU, b->c);
    GPU->free(GPU, b->g);
}

// ---------------------------------------------------------------- reporting

// Tolerance classes: plain float ops; one GEMM on the matrix units (matmul); two chained
// GEMMs with a softmax between (attention: the operand rounding errors of both add up,
// about sqrt(2) times one GEMM's, and tf32's one-GEMM error is already near 3e-4).
enum { K_EXACT = 0, K_GEMM = 1, K_GEMM2 = 2 };

static double tolerance(int kind) {
    if (kind != K_EXACT && !strcmp(PREC, "tf32")) return kind == K_GEMM ? 3e-4 : 6e-4;
    if (kind != K_EXACT && !strcmp(PREC, "bf16")) return 1e-2;
    return 1e-5;
}
static void report(const char *op, const char *what, double err, int kind) {
    double tol = tolerance(kind);
    int ok = err <= tol;   // NaN and inf fail
    n_run++;
    if (!ok) n_fail++;
    printf("%-17s %-44s %-4s %10.3e %7.0e %s\n", op, what, PREC, err, tol, ok ? "ok" : "FAIL");
    fflush(stdout);
}

static int *rand_ints(size_t n, int lo, int hi) {   // [lo, hi)
    int *h = malloc((n ? n : 1) * sizeof(int));
    if (!h) exit(1);
    for (size_t i = 0; i < n; i++) h[i] = lo + (int)swq_rng_below(&RNG, (uint64_t)(hi - lo));
    return h;
}

// ---------------------------------------------------------------- element-wise

static void check_elementwise(size_t n) {
    char w[64];
    snprintf(w, sizeof w, "n=%zu", n);
    pbuf a = pb_new(n, "a"), b = pb_new(n, "b"), o = pb_new(n, "out");
    pb_rand(&a, 2);
    pb_rand(&b, 2);

    pb_poison(&o);
    CPU->add(CPU, o.c, a.c, b.c, n);
    GPU->add(GPU, o.g, a.g, b.g, n);
    report("add", w, pb_err(&o), K_EXACT);

    pb_rand(&o, 1);
    CPU->accumulate(CPU, o.c, a.c, n);
    GPU->accumulate(GPU, o.g, a.g, n);
    report("accumulate", w, pb_err(&o), K_EXACT);

    CPU->scale(CPU, o.c, -0.37, n);
    GPU->scale(GPU, o.g, -0.37, n);
    report("scale", w, pb_err(&o), K_EXACT);

    pb_poison(&o);
    CPU->copy(CPU, o.c, a.c, n);
    GPU->copy(GPU, o.g, a.g, n);
    report("copy", w, pb_err(&o), K_EXACT);

    pb_poison(&o);
    CPU->zero(CPU, o.c, n * 4);
    GPU->zero(GPU, o.g, n * 4);
    report("zero", w, pb_err(&o), K_EXACT);

    dbuf acc = db_new(1);
    db_start(&acc, 0, 1.5f);
    CPU->sumsq(CPU, acc.c, a.c, n);
    GPU->sumsq(GPU, acc.g, a.g, n);
    report("sumsq", w, db_err(&acc, 0, 1), K_EXACT);
    db_free(&acc);

    pb_poison(&o);
    CPU->gelu_fwd(CPU, o.c, a.c, n);
    GPU->gelu_fwd(GPU, o.g, a.g, n);
    report("gelu_fwd", w, pb_err(&o), K_EXACT);

    pb_rand(&o, 1);
    CPU->gelu_bwd(CPU, o.c, a.c, b.c, n);
    GPU->gelu_bwd(GPU, o.g, a.g, b.g, n);
    report("gelu_bwd +=", w, pb_err(&o), K_EXACT);

    // AdamW: param, m, v updated in place
    pbuf m = pb_new(n, "m"), v = pb_new(n, "v");
    pb_rand(&m, 0.1f);
    float *h = hbuf(n);
    for (size_t i = 0; i < n; i++) h[i] = (float)(0.01 * swq_rng_uniform(&RNG));
    pb_set(&v, h);
    free(h);
    pb_rand(&o, 1);
    CPU->adamw(CPU, o.c, a.c, m.c, v.c, n, 1e-3, 0.9, 0.999, 1e-8, 0.1, 3, 0.5);
    GPU->adamw(GPU, o.g, a.g, m.g, v.g, n, 1e-3, 0.9, 0.999, 1e-8, 0.1, 3, 0.5);
    report("adamw param", w, pb_err(&o), K_EXACT);
    report("adamw m", w, pb_err(&m), K_EXACT);
    report("adamw v", w, pb_err(&v), K_EXACT);
    pb_free(&m);
    pb_free(&v);
    pb_free(&a);
    pb_free(&b);
    pb_free(&o);
}

// ---------------------------------------------------------------- embeddings, rows, columns

static void check_encoder(int B, int T, int C, int vocab) {
    char w[96];
    snprintf(w, sizeof w, "B=%d T=%d C=%d vocab=%d", B, T, C, vocab);
    int *tok = rand_ints((size_t)B * T, 0, vocab);
    tok[0] = tok[1] = tok[B * T - 1];   // repeated tokens
    ibuf tk = ib_new(tok, (size_t)B * T);
    pbuf wte = pb_new((size_t)vocab * C, "wte"), wpe = pb_new((size_t)T * C, "wpe"),
         out = pb_new((size_t)B * T * C, "out");
    pb_rand(&wte, 1);
    pb_rand(&wpe, 1);
    pb_poison(&out);
    CPU->encoder_fwd(CPU, out.c, tk.c, wte.c, wpe.c, B, T, C);
    GPU->encoder_fwd(GPU, out.g, tk.g, wte.g, wpe.g, B, T, C);
    report("encoder_fwd", w, pb_err(&out), K_EXACT);

    pb_rand(&out, 1);   // dout
    for (int variant = 0; variant < 3; variant++) {   // both, dwte only, dwpe only
        pb_rand(&wte, 1);
        pb_rand(&wpe, 1);
        int dte = variant != 2, dpe = variant != 1;
        CPU->encoder_bwd(CPU, dte ? wte.c : NULL, dpe ? wpe.c : NULL, out.c, tk.c, B, T, C);
        GPU->encoder_bwd(GPU, dte ? wte.g : NULL, dpe ? wpe.g : NULL, out.g, tk.g, B, T, C);
        char v[128];
        snprintf(v, sizeof v, "%s %s", w, variant == 0 ? "" : variant == 1 ? "dwpe=NULL" : "dwte=NULL");
        report("encoder_bwd dwte", v, pb_err(&wte), K_EXACT);
        report("encoder_bwd dwpe", v, pb_err(&wpe), K_EXACT);
    }
    free(tok);
    ib_free(&tk);
    pb_free(&wte);
    pb_free(&wpe);
    pb_free(&out);
}

static void check_rows(int R, int P, int C) {
    char w[96];
    snprintf(w, sizeof w, "R=%d P=%d C=%d", R, P, C);
    int *idx = rand_ints((size_t)P, 0, R);
    if (P > 2) idx[1] = idx[0];   // a repeated row for scatter_add
    ibuf ix = ib_new(idx, (size_t)P);
    pbuf big = pb_new((size_t)R * C, "rows"), small = pb_new((size_t)P * C, "picked");
    pb_rand(&big, 1);
    pb_poison(&small);
    CPU->gather_rows(CPU, small.c, big.c, ix.c, P, C);
    GPU->gather_rows(GPU, small.g, big.g, ix.g, P, C);
    report("gather_rows", w, pb_err(&small), K_EXACT);
    pb_rand(&small, 1);
    CPU->scatter_add_rows(CPU, big.c, small.c, ix.c, P, C);
    GPU->scatter_add_rows(GPU, big.g, small.g, ix.g, P, C);
    report("scatter_add_rows", w, pb_err(&big), K_EXACT);

    // columns of a [R, C] matrix
    pbuf col = pb_new((size_t)R, "column");
    int c = C / 2 + 1 < C ? C / 2 + 1 : 0;
    pb_poison(&col);
    CPU->get_column(CPU, col.c, big.c, R, C, c);
    GPU->get_column(GPU, col.g, big.g, R, C, c);
    report("get_column", w, pb_err(&col), K_EXACT);
    pb_rand(&col, 1);
    CPU->add_to_column(CPU, big.c, col.c, R, C, c);
    GPU->add_to_column(GPU, big.g, col.g, R, C, c);
    report("add_to_column", w, pb_err(&big), K_EXACT);
    free(idx);
    ib_free(&ix);
    pb_free(&big);
    pb_free(&small);
    pb_free(&col);
}

// ---------------------------------------------------------------- layernorm

static void check_layernorm(int N, int C) {
    char w[96];
    snprintf(w, sizeof w, "N=%d C=%d", N, C);
    pbuf inp = pb_new((size_t)N * C, "inp"), out = pb_new((size_t)N * C, "out"), mean = pb_new(N, "mean"),
         rstd = pb_new(N, "rstd"), wt = pb_new(C, "w"), bs = pb_new(C, "b");
    float *h = hbuf((size_t)N * C);   // rows with an offset, as real activations
    for (int n = 0; n < N; n++) {
        float off = (float)(4 * swq_rng_uniform(&RNG) - 2);
        for (int i = 0; i < C; i++) h[(size_t)n * C + i] = off + (float)(2 * swq_rng_uniform(&RNG) - 1);
    }
    pb_set(&inp, h);
    free(h);
    pb_rand(&wt, 1);
    pb_rand(&bs, 1);
    pb_poison(&out);
    pb_poison(&mean);
    pb_poison(&rstd);
    CPU->layernorm_fwd(CPU, out.c, mean.c, rstd.c, inp.c, wt.c, bs.c, N, C);
    GPU->layernorm_fwd(GPU, out.g, mean.g, rstd.g, inp.g, wt.g, bs.g, N, C);
    report("layernorm_fwd out", w, pb_err(&out), K_EXACT);
    report("layernorm_fwd mean", w, pb_err(&mean), K_EXACT);
    report("layernorm_fwd rstd", w, pb_err(&rstd), K_EXACT);
    pb_poison(&out);
    CPU->layernorm_fwd(CPU, out.c, NULL, NULL, inp.c, wt.c, bs.c, N, C);
    GPU->layernorm_fwd(GPU, out.g, NULL, NULL, inp.g, wt.g, bs.g, N, C);
    char v[128];
    snprintf(v, sizeof v, "%s mean=rstd=NULL", w);
    report("layernorm_fwd out", v, pb_err(&out), K_EXACT);

    // backward from the CPU's saved statistics
    pb_sync_from_cpu(&mean);
    pb_sync_from_cpu(&rstd);
    pbuf dout = pb_new((size_t)N * C, "dout"), dinp = pb_new((size_t)N * C, "dinp"), dw = pb_new(C, "dw"),
         db = pb_new(C, "db");
    pb_rand(&dout, 1);
    for (int variant = 0; variant < 2; variant++) {
        pb_rand(&dinp, 1);
        pb_rand(&dw, 1);
        pb_rand(&db, 1);
        CPU->layernorm_bwd(CPU, dinp.c, variant ? NULL : dw.c, variant ? NULL : db.c, dout.c, inp.c, wt.c,
                           mean.c, rstd.c, N, C);
        GPU->layernorm_bwd(GPU, dinp.g, variant ? NULL : dw.g, variant ? NULL : db.g, dout.g, inp.g, wt.g,
                           mean.g, rstd.g, N, C);
        snprintf(v, sizeof v, "%s%s", w, variant ? " dw=db=NULL" : "");
        report("layernorm_bwd dinp", v, pb_err(&dinp), K_EXACT);
        report("layernorm_bwd dw", v, pb_err(&dw), K_EXACT);
        report("layernorm_bwd db", v, pb_err(&db), K_EXACT);
    }
    pb_free(&inp);
    pb_free(&out);
    pb_free(&mean);
    pb_free(&rstd);
    pb_free(&wt);
    pb_free(&bs);
    pb_free(&dout);
    pb_free(&dinp);
    pb_free(&dw);
    pb_free(&db);
}

// ---------------------------------------------------------------- quantization

static void check_quantize(int rows, int cols, int bits, int inplace) {
    char w[96];
    snprintf(w, sizeof w, "%dx%d bits=%d%s", rows, cols, bits, inplace ? " in-place" : "");
    size_t n = (size_t)rows * cols;
    pbuf in = pb_new(n, "in"), out = pb_new(n, "out");
    float *h = hbuf(n);
    for (int r = 0; r < rows; r++) {
        float sc = (float)(0.01 + 3 * swq_rng_uniform(&RNG));
        for (int c = 0; c < cols; c++)
            h[(size_t)r * cols + c] = r == 1 ? 0.0f : (float)((2 * swq_rng_uniform(&RNG) - 1) * sc);
    }
    if (rows > 2 && cols > 4) {   // exact ties: x/a = k + 0.5 must round away from zero
        float a = 1.0f;           // row 2 with max 127 at 8 bits gives a = 1 exactly
        h[2 * (size_t)cols + 0] = 127.0f * a;
        h[2 * (size_t)cols + 1] = 2.5f;
        h[2 * (size_t)cols + 2] = -3.5f;
        h[2 * (size_t)cols + 3] = 0.5f;
        for (int c = 4; c < cols; c++) h[2 * (size_t)cols + c] = (float)(int)(h[2 * (size_t)cols + c] * 10) + 0.5f;
    }
    pb_set(&in, h);
    free(h);
    if (inplace) {
        CPU->quantize_rows(CPU, in.c, in.c, rows, cols, bits);
        GPU->quantize_rows(GPU, in.g, in.g, rows, cols, bits);
        report("quantize_rows", w, pb_err(&in), K_EXACT);
    } else {
        pb_poison(&out);
        CPU->quantize_rows(CPU, out.c, in.c, rows, cols, bits);
        GPU->quantize_rows(GPU, out.g, in.g, rows, cols, bits);
        report("quantize_rows", w, pb_err(&out), K_EXACT);
    }
    if (!inplace && bits <= 16) {   // the codes form (a cached weight): scales, then the expansion
        pbuf sc = pb_new((size_t)rows, "scales"), dq = pb_new(n, "dequantized");
        void *cc = CPU->alloc(CPU, n * swq_code_bytes(bits), "codes"), *gc = GPU->alloc(GPU, n * swq_code_bytes(bits), "codes");
        pb_poison(&sc);
        pb_poison(&dq);
        CPU->quantize_rows_codes(CPU, cc, sc.c, in.c, rows, cols, bits);
        GPU->quantize_rows_codes(GPU, gc, sc.g, in.g, rows, cols, bits);
        report("quantize_rows_codes scales", w, pb_err(&sc), K_EXACT);
        CPU->dequantize_rows(CPU, dq.c, cc, sc.c, rows, cols, bits);
        GPU->dequantize_rows(GPU, dq.g, gc, sc.g, rows, cols, bits);
        report("dequantize_rows", w, pb_err(&dq), K_EXACT);
        float *ha = hbuf(n), *hb = hbuf(n);
        CPU->download(CPU, ha, dq.c, n);
        CPU->download(CPU, hb, out.c, n);
        report("dequantize_rows = quantize_rows (CPU)", w, rel_err(ha, hb, n), K_EXACT);
        free(ha);
        free(hb);
        CPU->free(CPU, cc);
        GPU->free(GPU, gc);
        pb_free(&sc);
        pb_free(&dq);
    }
    pb_free(&in);
    pb_free(&out);
}

// ---------------------------------------------------------------- matmul

static void check_matmul(int N, int IC, int OC) {
    char w[96], v[160];
    snprintf(w, sizeof w, "N=%d IC=%d OC=%d", N, IC, OC);
    pbuf inp = pb_new((size_t)N * IC, "inp"), wt = pb_new((size_t)OC * IC, "w"), bias = pb_new(OC, "bias"),
         out = pb_new((size_t)N * OC, "out");
    pb_rand(&inp, 1);
    pb_rand(&wt, 0.1f);
    pb_rand(&bias, 1);
    for (int variant = 0; variant < 4; variant++) {   // bias x accumulate
        int hb = !(variant & 1), accu = variant >> 1;
        double scale = variant == 3 ? 0.5 : 1.0;
        if (accu) pb_rand(&out, 1);
        else pb_poison(&out);
        CPU->matmul_fwd(CPU, out.c, inp.c, wt.c, hb ? bias.c : NULL, N, IC, OC, scale, accu);
        GPU->matmul_fwd(GPU, out.g, inp.g, wt.g, hb ? bias.g : NULL, N, IC, OC, scale, accu);
        snprintf(v, sizeof v, "%s %s %s s=%.1f", w, hb ? "bias" : "nobias", accu ? "+=" : "=", scale);
        report("matmul_fwd", v, pb_err(&out), K_GEMM);
    }
    pbuf dout = pb_new((size_t)N * OC, "dout"), dinp = pb_new((size_t)N * IC, "dinp"),
         dw = pb_new((size_t)OC * IC, "dw"), db = pb_new(OC, "dbias");
    pb_rand(&dout, 1);
    for (int variant = 0; variant < 3; variant++) {   // all; dinp only; dw + dbias only
        int hi = variant != 2, hw = variant != 1, hb = variant != 1;
        double scale = variant == 0 ? 1.0 : 0.25;
        pb_rand(&dinp, 1);
        pb_rand(&dw, 1);
        pb_rand(&db, 1);
        CPU->matmul_bwd(CPU, hi ? dinp.c : NULL, hw ? dw.c : NULL, hb ? db.c : NULL, dout.c, inp.c, wt.c, N, IC,
                        OC, scale);
        GPU->matmul_bwd(GPU, hi ? dinp.g : NULL, hw ? dw.g : NULL, hb ? db.g : NULL, dout.g, inp.g, wt.g, N, IC,
                        OC, scale);
        snprintf(v, sizeof v, "%s s=%.2f%s", w, scale, variant == 1 ? " dw=db=NULL" : variant == 2 ? " dinp=NULL" : "");
        report("matmul_bwd dinp", v, pb_err(&dinp), K_GEMM);
        report("matmul_bwd dw", v, pb_err(&dw), K_GEMM);
        report("matmul_bwd dbias", v, pb_err(&db), K_EXACT);
    }
    pb_free(&inp);
    pb_free(&wt);
    pb_free(&bias);
    pb_free(&out);
    pb_free(&dout);
    pb_free(&dinp);
    pb_free(&dw);
    pb_free(&db);
}

// ---------------------------------------------------------------- attention

static void check_attention(int B, int T, int C, int NH) {
    char w[96];
    snprintf(w, sizeof w, "B=%d T=%d C=%d NH=%d", B, T, C, NH);
    size_t natt = (size_t)B * NH * T * T;
    pbuf qkv = pb_new((size_t)B * T * 3 * C, "qkv"), out = pb_new((size_t)B * T * C, "out"),
         att = pb_new(natt, "att");
    pb_rand(&qkv, 2);
    pb_poison(&out);
    pb_poison(&att);
    CPU->attention_fwd(CPU, out.c, att.c, qkv.c, B, T, C, NH);
    GPU->attention_fwd(GPU, out.g, att.g, qkv.g, B, T, C, NH);
    report("attention_fwd out", w, pb_err(&out), K_GEMM2);
    // flash attention keeps per-row log-sum-exps in att: checked through the backward, which
    // then starts from the GPU's own forward; otherwise from the CPU's probabilities
    int flash = swq_backend_cuda_flash_attention(GPU, C, NH);
    if (flash && swq_backend_cuda_wgmma(GPU, -1)) {
        // the TMA / wgmma forward against the mma.sync one (the simulated kernel): the same values
        // bit for bit (out compared as bf16, which is what either may have kept of it)
        size_t nl = (size_t)B * NH * T;
        float *o1 = hbuf(out.n), *o2 = hbuf(out.n), *l1 = hbuf(nl), *l2 = hbuf(nl);
        GPU->synchronize(GPU);
        GPU->download(GPU, o1, out.g, out.n);
        GPU->download(GPU, l1, att.g, nl);
        const int was = swq_backend_cuda_wgmma(GPU, 0);
        GPU->attention_fwd(GPU, out.g, att.g, qkv.g, B, T, C, NH);
        swq_backend_cuda_wgmma(GPU, was);
        GPU->synchronize(GPU);
        GPU->download(GPU, o2, out.g, out.n);
        GPU->download(GPU, l2, att.g, nl);
        size_t diff = 0;
        for (size_t i = 0; i < out.n; i++) {
            const float a = round_mantissa(o1[i], 16), c = round_mantissa(o2[i], 16);
            diff += memcmp(&a, &c, sizeof a) != 0;
        }
        for (size_t i = 0; i < nl; i++) diff += memcmp(&l1[i], &l2[i], sizeof(float)) != 0;
        report("attention_fwd wgmma = mma.sync", w, (double)diff, K_EXACT);
        free(o1), free(o2), free(l1), free(l2);
    }
    if (!flash) {
        report("attention_fwd att", w, pb_err(&att), K_GEMM2);
        pb_sync_from_cpu(&att);
    }
    pbuf dqkv = pb_new((size_t)B * T * 3 * C, "dqkv"), scratch = pb_new(natt, "scratch"),
         dout = pb_new((size_t)B * T * C, "dout");
    pb_rand(&dout, 1);
    pb_poison(&dqkv);
    pb_poison(&scratch);
    CPU->attention_bwd(CPU, dqkv.c, scratch.c, dout.c, qkv.c, out.c, att.c, B, T, C, NH);
    GPU->attention_bwd(GPU, dqkv.g, scratch.g, dout.g, qkv.g, out.g, att.g, B, T, C, NH);
    char v[128];
    snprintf(v, sizeof v, "%s%s", w, flash ? " (flash)" : "");
    report("attention_bwd dqkv", v, pb_err(&dqkv), K_GEMM2);
    pb_free(&dout);
    pb_free(&qkv);
    pb_free(&out);
    pb_free(&att);
    pb_free(&dqkv);
    pb_free(&scratch);
}

// ---------------------------------------------------------------- softmax + CE + KL, argmax

// Teacher sums: of nt softmax distributions over each row's len (NULL: V) valid columns, and their
// sum p log p.
static void teacher_rows(pbuf *tS, pbuf *tH, int P, int V, const int *len, int nt) {
    float *hs = hbuf((size_t)P * V), *hh = hbuf(P), *e = hbuf(V);
    for (int p = 0; p < P; p++) {
        int L = len ? len[p] : V;
        hh[p] = 0;
        for (int v = 0; v < V; v++) hs[(size_t)p * V + v] = 0;
        for (int j = 0; j < nt; j++) {
            double s = 0;
            for (int v = 0; v < L; v++) {
                e[v] = (float)exp(3 * (2 * swq_rng_uniform(&RNG) - 1));
                s += e[v];
            }
            for (int v = 0; v < L; v++) {
                double q = e[v] / s;
                hs[(size_t)p * V + v] += (float)q;
                hh[p] += (float)(q * log(q));
            }
        }
    }
    pb_set(tS, hs);
    pb_set(tH, hh);
    free(hs);
    free(hh);
    free(e);
}

// variant 0: targets (some -1), len (one row 0, some short), 2 teachers, nS/nH, grad
// variant 1: all targets, no len, no teachers, no nS/nH, grad
// variant 2: target NULL, teachers, nS/nH, no grad (logits unchanged)
static void check_xent(int P, int V, int variant) {
    char w[96];
    snprintf(w, sizeof w, "P=%d V=%d %s", P, V,
             variant == 0 ? "tgt+len+2 teachers+nS" : variant == 1 ? "tgt only" : "grad=0 tgt=NULL");
    size_t n = (size_t)P * V;
    pbuf z = pb_new(n, "logits");
    pb_rand(&z, 4);
    int *len = rand_ints((size_t)P, 1, V + 1), *tgt = malloc(P * sizeof(int));
    if (!tgt) exit(1);
    for (int p = 0; p < P; p++) {
        if (p % 3) len[p] = V;
        if (p == 1) len[p] = 0;
        int L = variant == 1 ? V : len[p];
        tgt[p] = L > 0 ? (int)swq_rng_below(&RNG, (uint64_t)L) : -1;
        if (variant == 0 && p % 5 == 4) tgt[p] = -1;
    }
    ibuf lb = ib_new(len, (size_t)P), tb = ib_new(tgt, (size_t)P);
    int nt = variant == 1 ? 0 : 2;
    pbuf tS = pb_new(n, "tS"), tH = pb_new(P, "tH"), nS = pb_new(n, "nS"), nH = pb_new(P, "nH");
    if (nt) teacher_rows(&tS, &tH, P, V, len, nt);
    pb_rand(&nS, 0.5f);
    pb_rand(&nH, 1);
    dbuf acc = db_new(2);
    db_start(&acc, 0, 0.5f);
    db_start(&acc, 1, 0.7f);
    int hasS = variant != 1, grad = variant != 2;
    double beta = 0.7, weight = 0.5, gs = 1.0 / P;
#define XENT_ARGS(X)                                                                                        \
    z.X, variant == 2 ? NULL : tb.X, variant == 1 ? NULL : lb.X, nt ? tS.X : NULL, nt ? tH.X : NULL, nt, \
        beta, hasS ? nS.X : NULL, hasS ? nH.X : NULL, acc.X, weight, gs, grad, P, V
    CPU->xent_kl(CPU, XENT_ARGS(c));
    GPU->xent_kl(GPU, XENT_ARGS(g));
#undef XENT_ARGS
    report("xent_kl logits", w, pb_err(&z), K_EXACT);
    report("xent_kl acc ce", w, db_err(&acc, 0, 1), K_EXACT);
    report("xent_kl acc kl", w, db_err(&acc, 1, 1), K_EXACT);
    if (hasS) {
        report("xent_kl nS", w, pb_err(&nS), K_EXACT);
        report("xent_kl nH", w, pb_err(&nH), K_EXACT);
    }
    free(len);
    free(tgt);
    ib_free(&lb);
    ib_free(&tb);
    db_free(&acc);
    pb_free(&z);
    pb_free(&tS);
    pb_free(&tH);
    pb_free(&nS);
    pb_free(&nH);
}

static void check_argmax(int P, int V) {
    char w[96];
    snprintf(w, sizeof w, "P=%d V=%d (ties)", P, V);
    size_t n = (size_t)P * V;
    float *h = hbuf(n);
    for (size_t i = 0; i < n; i++) h[i] = (float)(2 * swq_rng_uniform(&RNG) - 1);
    for (int p = 0; p < P; p += 2) {   // ties at the max: the first one wins
        int j1 = (int)swq_rng_below(&RNG, (uint64_t)V), j2 = (int)swq_rng_below(&RNG, (uint64_t)V);
        h[(size_t)p * V + j1] = h[(size_t)p * V + j2] = 5.0f;
    }
    pbuf z = pb_new(n, "logits");
    pb_set(&z, h);
    free(h);
    int *oc = malloc(P * sizeof(int)), *og = malloc(P * sizeof(int));
    if (!oc || !og) exit(1);
    CPU->argmax_rows(CPU, oc, z.c, P, V);
    GPU->argmax_rows(GPU, og, z.g, P, V);
    int bad = 0;
    for (int p = 0; p < P; p++) bad += oc[p] != og[p];
    report("argmax_rows", w, (double)bad / P, K_EXACT);
    free(oc);
    free(og);
    pb_free(&z);
}

// The LM head without adapter or bias (plain training) feeding xent_kl, then evaluation's
// xent_kl without gradient and argmax: with SWQ_CUDA_LAZY_HEAD=1 the output stays in its padded
// GEMM rows, xent_kl reads it there, and argmax (or a download) packs it first.
static void check_head_xent(int P, int C, int V) {
    char w[96];
    snprintf(w, sizeof w, "P=%d C=%d V=%d head, no adapter", P, C, V);
    pbuf x = pb_new((size_t)P * C, "x"), wt = pb_new((size_t)V * C, "w"), out = pb_new((size_t)P * V, "logits");
    pbuf u = pb_new((size_t)P, "u");
    pb_rand(&x, 1);
    pb_rand(&wt, 0.1f);
    int *tgt = rand_ints((size_t)P, 0, V);
    ibuf tb = ib_new(tgt, (size_t)P);
    for (int grad = 2; grad >= 0; grad -= 2) {
        dbuf acc = db_new(2);
        CPU->lora_linear_fwd(CPU, out.c, u.c, x.c, wt.c, NULL, NULL, NULL, P, C, V, 0, 0.0);
        GPU->lora_linear_fwd(GPU, out.g, u.g, x.g, wt.g, NULL, NULL, NULL, P, C, V, 0, 0.0);
        CPU->xent_kl(CPU, out.c, tb.c, NULL, NULL, NULL, 0, 0.0, NULL, NULL, acc.c, 1.0 / P, 1.0, grad, P, V);
        GPU->xent_kl(GPU, out.g, tb.g, NULL, NULL, NULL, 0, 0.0, NULL, NULL, acc.g, 1.0 / P, 1.0, grad, P, V);
        report(grad ? "head + xent_kl ce" : "head + xent (no grad) ce", w, db_err(&acc, 0, 1), K_GEMM);
        if (grad) {
            report("head + xent_kl gradient", w, pb_err(&out), K_GEMM2);
        } else {
            // argmax on the GPU's own logits (the CPU's may order near-ties differently)
            int *og = malloc(P * sizeof(int)), bad = 0;
            float *hg = hbuf((size_t)P * V);
            if (!og) exit(1);
            GPU->argmax_rows(GPU, og, out.g, P, V);
            GPU->download(GPU, hg, out.g, (size_t)P * V);
            for (int p = 0; p < P; p++) {
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (hg[(size_t)p * V + v] > hg[(size_t)p * V + best]) best = v;
                bad += og[p] != best;
            }
            report("head + argmax_rows", w, (double)bad / P, K_EXACT);
            report("head logits after argmax", w, pb_err(&out), K_GEMM);
            free(og);
            free(hg);
        }
        db_free(&acc);
    }
    free(tgt);
    ib_free(&tb);
    pbuf *all[] = {&x, &wt, &out, &u};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) pb_free(all[i]);
}

// The LM head with its adapter (the CDT step's: no bias) feeding xent_kl with teachers and new
// teacher sums, the gradient only as its bf16 copy (grad 2); in bf16 the logits stay in the
// head GEMM's padded rows (lora_head_kext) and xent_kl reads them there. Then again with the
// logits read back first (the pending output packed), and xent_kl without gradient.
static void check_head_lora_xent(int P, int C, int V, int r) {
    char w[96];
    snprintf(w, sizeof w, "P=%d C=%d V=%d r=%d head with adapter, 2 teachers", P, C, V, r);
    const double s = 2.0;
    pbuf x = pb_new((size_t)P * C, "x"), wt = pb_new((size_t)V * C, "w"), out = pb_new((size_t)P * V, "logits");
    pbuf u = pb_new((size_t)P * r, "u"), A = pb_new((size_t)r * C, "A"), Bm = pb_new((size_t)V * r, "Bm");
    pbuf tS = pb_new((size_t)P * V, "tS"), tH = pb_new(P, "tH"), nS = pb_new((size_t)P * V, "nS"), nH = pb_new(P, "nH");
    pb_rand(&x, 1);
    pb_rand(&wt, 0.1f);
    pb_rand(&A, 0.1f);
    pb_rand(&Bm, 0.1f);
    teacher_rows(&tS, &tH, P, V, NULL, 2);
    int *tgt = rand_ints((size_t)P, 0, V);
    ibuf tb = ib_new(tgt, (size_t)P);
    for (int pass = 0; pass < 2; pass++) {
        const int grad = pass ? 0 : 2;
        char v[160];
        snprintf(v, sizeof v, "%s%s", w, pass ? ", logits read back, no grad" : "");
        dbuf acc = db_new(2);
        pb_rand(&nS, 0.5f);
        pb_rand(&nH, 1);
        pb_poison(&u);
        CPU->lora_linear_fwd(CPU, out.c, u.c, x.c, wt.c, NULL, A.c, Bm.c, P, C, V, r, s);
        GPU->lora_linear_fwd(GPU, out.g, u.g, x.g, wt.g, NULL, A.g, Bm.g, P, C, V, r, s);
        if (pass) report("head logits (read back)", v, pb_err(&out), K_GEMM2);
        CPU->xent_kl(CPU, out.c, tb.c, NULL, tS.c, tH.c, 2, 0.7, nS.c, nH.c, acc.c, 1.0 / P, 1.0, grad, P, V);
        GPU->xent_kl(GPU, out.g, tb.g, NULL, tS.g, tH.g, 2, 0.7, nS.g, nH.g, acc.g, 1.0 / P, 1.0, grad, P, V);
        report("head + xent_kl ce", v, db_err(&acc, 0, 1), K_GEMM);
        report("head + xent_kl kl", v, db_err(&acc, 1, 1), K_GEMM);
        report("head + xent_kl nS", v, pb_err(&nS), K_GEMM);
        report("head + xent_kl nH", v, pb_err(&nH), K_GEMM);
        report("head u", v, pb_err(&u), K_GEMM);
        if (grad) report("head + xent_kl gradient", v, pb_err(&out), K_GEMM2);
        else report("head logits after xent (no grad)", v, pb_err(&out), K_GEMM2);
        db_free(&acc);
    }
    free(tgt);
    ib_free(&tb);
    pbuf *all[] = {&x, &wt, &out, &u, &A, &Bm, &tS, &tH, &nS, &nH};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) pb_free(all[i]);
}

// ---------------------------------------------------------------- timing (--time, GPU only)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static void *grand(size_t n, float scale) {   // a random GPU buffer
    float *h = hbuf(n);
    for (size_t i = 0; i < n; i++) h[i] = (float)((2 * swq_rng_uniform(&RNG) - 1) * scale);
    void *g = GPU->alloc(GPU, n * 4, "timing buffer");
    GPU->upload(GPU, g, h, n);
    free(h);
    return g;
}
// Median-free but warm: one warm-up call, then the mean of `reps` calls.
#define TIME_OP(label, flops, bytes, call)                                                          \
    do {                                                                                            \
        call;                                                                                       \
        GPU->synchronize(GPU);                                                                      \
        double t0_ = now_s();                                                                       \
        for (int r_ = 0; r_ < reps; r_++) call;                                                     \
        GPU->synchronize(GPU);                                                                      \
        double ms_ = (now_s() - t0_) / reps * 1e3;                                                  \
        printf("%-34s %-4s %9.3f ms %8.1f TFLOP/s %8.1f GB/s\n", label, PREC, ms_,                  \
               (flops) / (ms_ * 1e-3) / 1e12, (bytes) / (ms_ * 1e-3) / 1e9);                         \
        fflush(stdout);                                                                             \
    } while (0)

// flops: the full T x T products (the causal half is what the kernels do)
static void time_attention(int B, int T, int C, int NH) {
    const int reps = 20, N = B * T;
    size_t natt = swq_backend_cuda_flash_attention(GPU, C, NH) ? (size_t)B * NH * T : (size_t)B * NH * T * T;
    float *x = grand((size_t)N * 3 * C, 1), *y = grand((size_t)N * 3 * C, 1);
    float *att = grand(natt, 1), *scr = grand(natt > (size_t)B * NH * T ? natt : (size_t)B * NH * T, 1);
    double fa = 4.0 * B * NH * (double)T * T * (C / NH);
    char lab[64];
    snprintf(lab, sizeof lab, "attention_fwd B=%d T=%d", B, T);
    TIME_OP(lab, fa, 4.0 * (N * 4.0 * C + 2.0 * natt), GPU->attention_fwd(GPU, y, att, x, B, T, C, NH));
    snprintf(lab, sizeof lab, "attention_bwd B=%d T=%d", B, T);
    TIME_OP(lab, 2 * fa, 4.0 * (N * 7.0 * C + 4.0 * natt), GPU->attention_bwd(GPU, y, scr, x, x, x, att, B, T, C, NH));
    GPU->free(GPU, x);
    GPU->free(GPU, y);
    GPU->free(GPU, att);
    GPU->free(GPU, scr);
}

static void run_timing(void) {
    const int reps = 20, B = 8, T = 1024, C = 768, NH = 12, V = 50257, N = B * T;
    printf("timing: B=%d T=%d C=%d NH=%d V=%d (GPT-2 small shapes)\n", B, T, C, NH, V);
    float *x = grand((size_t)N * 4 * C, 1), *y = grand((size_t)N * 4 * C, 1), *w = grand((size_t)4 * C * C, 0.1f);
    float *bias = grand(4 * C, 1), *dw = grand((size_t)4 * C * C, 1), *db = grand(4 * C, 1);
    double f = 2.0 * N * C * 4 * C;
    TIME_OP("matmul_fwd 768->3072 +bias", f, 4.0 * (N * C + 4.0 * C * C + N * 4.0 * C),
            GPU->matmul_fwd(GPU, y, x, w, bias, N, C, 4 * C, 1.0, 0));
    TIME_OP("matmul_bwd 768->3072 all", 2 * f, 4.0 * (3 * N * 4.0 * C + 3.0 * N * C),
            GPU->matmul_bwd(GPU, x, dw, db, y, x, w, N, C, 4 * C, 1.0));
    float *mean = grand(N, 1), *rstd = grand(N, 1);
    TIME_OP("layernorm_fwd", 0, 4.0 * 2 * N * C, GPU->layernorm_fwd(GPU, y, mean, rstd, x, w, bias, N, C));
    TIME_OP("layernorm_bwd", 0, 4.0 * 3 * N * C, GPU->layernorm_bwd(GPU, y, dw, db, x, x, w, mean, rstd, N, C));
    TIME_OP("gelu_fwd", 0, 4.0 * 2 * N * 4 * C, GPU->gelu_fwd(GPU, y, x, (size_t)N * 4 * C));
    TIME_OP("quantize_rows 3072x768 w", 0, 4.0 * 2 * 4 * C * C, GPU->quantize_rows(GPU, dw, w, 4 * C, C, 4));
    TIME_OP("quantize_rows act N x 768", 0, 4.0 * 2 * N * C, GPU->quantize_rows(GPU, y, x, N, C, 8));
    GPU->free(GPU, mean);
    GPU->free(GPU, rstd);
    time_attention(B, T, C, NH);
    int P = 2048;
    float *z = grand((size_t)P * V, 4), *tS = grand((size_t)P * V, 1e-4f), *nS = grand((size_t)P * V, 1e-4f);
    float *tH = grand(P, 1), *nH = grand(P, 1);
    int *tg = rand_ints(P, 0, V), *tgd = GPU->alloc(GPU, P * sizeof(int), "targets");
    GPU->upload_i32(GPU, tgd, tg, P);
    double *acc = GPU->alloc(GPU, 2 * sizeof(double), "acc");
    GPU->zero(GPU, acc, 2 * sizeof(double));
    char lab[64];
    snprintf(lab, sizeof lab, "xent_kl P=%d CE only", P);
    TIME_OP(lab, 0, 4.0 * 2 * P * V,
            GPU->xent_kl(GPU, z, tgd, NULL, NULL, NULL, 0, 0, NULL, NULL, acc, 1, 1, 1, P, V));
    snprintf(lab, sizeof lab, "xent_kl P=%d teachers+nS", P);
    TIME_OP(lab, 0, 4.0 * 5 * P * V,
            GPU->xent_kl(GPU, z, tgd, NULL, tS, tH, 2, 1, nS, nH, acc, 1, 1, 1, P, V));
    int *am = malloc(P * sizeof(int));
    TIME_OP("argmax_rows", 0, 4.0 * P * V, GPU->argmax_rows(GPU, am, z, P, V));
    free(am);
    free(tg);
    GPU->free(GPU, tgd);
    GPU->free(GPU, acc);
    GPU->free(GPU, z);
    GPU->free(GPU, tS);
    GPU->free(GPU, nS);
    GPU->free(GPU, tH);
    GPU->free(GPU, nH);
    size_t np = 124000000;
    float *p = grand(np, 1), *g = grand(np, 1), *m = grand(np, 0.1f), *v = grand(np, 0.01f);
    TIME_OP("adamw 124M", 0, 4.0 * 7 * np, GPU->adamw(GPU, p, g, m, v, np, 1e-4, 0.9, 0.95, 1e-8, 0, 10, 1));
    GPU->free(GPU, p);
    GPU->free(GPU, g);
    GPU->free(GPU, m);
    GPU->free(GPU, v);
    GPU->free(GPU, x);
    GPU->free(GPU, y);
    GPU->free(GPU, w);
    GPU->free(GPU, bias);
    GPU->free(GPU, dw);
    GPU->free(GPU, db);
}

// The switchable linear's three products (the LM head's shape takes the padded-row path).
// cached 1: the weight is allocated as a quantized-weight cache entry ("qcache." name: written once,
// then read only), which the CUDA backend keeps in bf16 with the adapter's A rows after it; 2: the
// weight is 8-bit quantized, and on the GPU expanded from its codes by dequantize_rows into a plain
// buffer (bf16: written only as its bf16 copy, with room for the A rows)
static void check_lora_linear(int N, int IC, int OC, int r, int cached) {
    char w[96];
    snprintf(w, sizeof w, "N=%d IC=%d OC=%d r=%d%s", N, IC, OC, r,
             cached == 1 ? " cached w" : cached == 2 ? " w from codes" : "");
    double s = 2.0;
    pbuf inp = pb_new((size_t)N * IC, "inp"), wt = pb_new((size_t)OC * IC, cached == 1 ? "qcache.weight" : "w"),
         A = pb_new((size_t)r * IC, "A"),
         Bm = pb_new((size_t)OC * r, "Bm"), out = pb_new((size_t)N * OC, "out"), u = pb_new((size_t)N * r, "u");
    pb_rand(&inp, 1);
    pb_rand(&wt, 0.1f);
    void *codes = NULL, *scales = NULL;
    if (cached == 2) {
        codes = GPU->alloc(GPU, (size_t)OC * IC, "qcache.codes");
        scales = GPU->alloc(GPU, (size_t)OC * sizeof(float), "qcache.scales");
        CPU->quantize_rows(CPU, wt.c, wt.c, OC, IC, 8);
        GPU->quantize_rows_codes(GPU, codes, scales, wt.g, OC, IC, 8);
        GPU->dequantize_rows(GPU, wt.g, codes, scales, OC, IC, 8);
    }
    pb_rand(&A, 0.1f);
    pb_rand(&Bm, 0.1f);
    pbuf bias = pb_new(OC, "bias");
    pb_rand(&bias, 1);
    for (int hb = 1; hb >= 0; hb--) {   // with a bias, then without (the forward the backward uses)
        char v[128];
        snprintf(v, sizeof v, "%s %s", w, hb ? "bias" : "nobias");
        pb_poison(&out);
        pb_poison(&u);
        CPU->lora_linear_fwd(CPU, out.c, u.c, inp.c, wt.c, hb ? bias.c : NULL, A.c, Bm.c, N, IC, OC, r, s);
        GPU->lora_linear_fwd(GPU, out.g, u.g, inp.g, wt.g, hb ? bias.g : NULL, A.g, Bm.g, N, IC, OC, r, s);
        report("lora_linear_fwd out", v, pb_err(&out), K_GEMM2);
        report("lora_linear_fwd u", v, pb_err(&u), K_GEMM);
        if (GPU->lora_linear_gelu_fwd) {   // the fused MLP-in form against the CPU's two ops
            pbuf act = pb_new((size_t)N * OC, "act");
            pb_poison(&act);
            pb_poison(&out);
            pb_poison(&u);
            CPU->lora_linear_fwd(CPU, out.c, u.c, inp.c, wt.c, hb ? bias.c : NULL, A.c, Bm.c, N, IC, OC, r, s);
            CPU->gelu_fwd(CPU, act.c, out.c, (size_t)N * OC);
            GPU->lora_linear_gelu_fwd(GPU, out.g, act.g, u.g, inp.g, wt.g, hb ? bias.g : NULL, A.g, Bm.g, N, IC, OC, r,
                                      s);
            report("lora_linear_gelu_fwd out", v, pb_err(&out), K_GEMM2);
            report("lora_linear_gelu_fwd act", v, pb_err(&act), K_GEMM2);
            report("lora_linear_gelu_fwd u", v, pb_err(&u), K_GEMM);
            pb_free(&act);
        }
        if (GPU->lora_linear_res_fwd) {   // with the residual add, against the CPU's linear and add
            pbuf res = pb_new((size_t)N * OC, "res"), tmp = pb_new((size_t)N * OC, "tmp");
            pb_rand(&res, 1);
            pb_poison(&out);
            pb_poison(&u);
            CPU->lora_linear_fwd(CPU, tmp.c, u.c, inp.c, wt.c, hb ? bias.c : NULL, A.c, Bm.c, N, IC, OC, r, s);
            CPU->add(CPU, out.c, res.c, tmp.c, (size_t)N * OC);
            GPU->lora_linear_res_fwd(GPU, out.g, res.g, u.g, inp.g, wt.g, hb ? bias.g : NULL, A.g, Bm.g, N, IC, OC, r,
                                     s);
            report("lora_linear_res_fwd out", v, pb_err(&out), K_GEMM2);
            report("lora_linear_res_fwd u", v, pb_err(&u), K_GEMM);
            pb_free(&res);
            pb_free(&tmp);
        }
    }
    pb_free(&bias);
    pbuf dout = pb_new((size_t)N * OC, "dout"), dinp = pb_new((size_t)N * IC, "dinp"), dA = pb_new((size_t)r * IC, "dA"),
         dB = pb_new((size_t)OC * r, "dB"), du = pb_new((size_t)N * r, "du");
    pb_rand(&dout, 1);
    pb_rand(&dinp, 1);
    pb_rand(&dA, 1);
    pb_rand(&dB, 1);
    pb_poison(&du);
    pb_sync_from_cpu(&u);
    CPU->lora_linear_bwd(CPU, dinp.c, NULL, NULL, dA.c, dB.c, du.c, dout.c, inp.c, u.c, wt.c, A.c, Bm.c, N, IC, OC, r,
                         s);
    GPU->lora_linear_bwd(GPU, dinp.g, NULL, NULL, dA.g, dB.g, du.g, dout.g, inp.g, u.g, wt.g, A.g, Bm.g, N, IC, OC, r,
                         s);
    report("lora_linear_bwd dinp", w, pb_err(&dinp), K_GEMM2);
    report("lora_linear_bwd dA", w, pb_err(&dA), K_GEMM2);
    report("lora_linear_bwd dB", w, pb_err(&dB), K_GEMM);
    report("lora_linear_bwd du", w, pb_err(&du), K_GEMM);
    if (GPU->lora_linear_bwd_gelu && IC % 8 == 0) {
        // the MLP-out form (input gradient through the GELU of pre) against the CPU's two ops; without
        // an adapter as plain training (the weight's gradients too)
        char v[128];
        snprintf(v, sizeof v, "%s (input gelu)", w);
        size_t n = (size_t)N * IC;
        int plain = r == 0;
        pbuf pre = pb_new(n, "pre"), scr = pb_new(n, "scratch"), dpre = pb_new(n, "dpre"),
             dw = pb_new((size_t)OC * IC, "dw"), dbias = pb_new(OC, "dbias");
        pb_rand(&pre, 3);
        pb_rand(&dA, 1);
        pb_rand(&dB, 1);
        pb_rand(&dw, 1);
        pb_rand(&dbias, 1);
        pb_poison(&du);
        pb_poison(&dpre);
        pb_poison(&scr);
        CPU->zero(CPU, scr.c, n * 4);
        CPU->lora_linear_bwd(CPU, scr.c, plain ? dw.c : NULL, plain ? dbias.c : NULL, dA.c, dB.c, du.c, dout.c, inp.c,
                             u.c, wt.c, A.c, Bm.c, N, IC, OC, r, s);
        CPU->zero(CPU, dpre.c, n * 4);
        CPU->gelu_bwd(CPU, dpre.c, pre.c, scr.c, n);
        GPU->lora_linear_bwd_gelu(GPU, dpre.g, scr.g, pre.g, plain ? dw.g : NULL, plain ? dbias.g : NULL, dA.g, dB.g,
                                  du.g, dout.g, inp.g, u.g, wt.g, A.g, Bm.g, N, IC, OC, r, s);
        report("lora_linear_bwd_gelu dpre", v, pb_err(&dpre), K_GEMM2);
        if (r > 0) {
            report("lora_linear_bwd_gelu dA", v, pb_err(&dA), K_GEMM2);
            report("lora_linear_bwd_gelu dB", v, pb_err(&dB), K_GEMM);
            report("lora_linear_bwd_gelu du", v, pb_err(&du), K_GEMM);
        } else {
            report("lora_linear_bwd_gelu dw", v, pb_err(&dw), K_GEMM2);
            report("lora_linear_bwd_gelu dbias", v, pb_err(&dbias), K_GEMM2);
        }
        pbuf *g[] = {&pre, &scr, &dpre, &dw, &dbias};
        for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) pb_free(g[i]);
    }
    if (cached == 2) {   // the expanded weight's floats after all those GEMMs, made at the latest when the codes go
        GPU->free(GPU, codes);
        GPU->free(GPU, scales);
        report("expanded weight (floats read back)", w, pb_err(&wt), K_EXACT);
    }
    pbuf *all[] = {&inp, &wt, &A, &Bm, &out, &u, &dout, &dinp, &dA, &dB, &du};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) pb_free(all[i]);
}

// ---------------------------------------------------------------- main

static void run_attention_checks(void);

static void run_gemm_checks(int small) {
    if (small) {
        check_matmul(32, 48, 40);
        check_matmul(33, 17, 29);
        check_lora_linear(33, 17, 29, 4, 0);
        check_lora_linear(33, 17, 29, 4, 1);
        check_lora_linear(33, 17, 29, 4, 2);
        check_lora_linear(40, 64, 96, 8, 1);   // a body linear's K-extended GEMM (rows of 16-byte multiples)
        check_attention(2, 16, 32, 2);
        check_attention(1, 13, 24, 3);
        return;
    }
    check_matmul(2 * 64, 64, 192);       // B=2 T=64 C=64 qkv
    check_matmul(2 * 384, 768, 2304);    // B=2 T=384 C=768 qkv
    check_matmul(2 * 384, 3072, 768);    // MLP out
    check_matmul(77, 101, 123);          // odd sizes
    check_matmul(2 * 64, 768, 50257);    // LM head
    for (int cached = 0; cached <= 2; cached++) {
        check_lora_linear(2 * 384, 768, 3072, 16, cached);   // MLP in
        check_lora_linear(2 * 64, 768, 50257, 8, cached);    // LM head: padded rows, split GEMMs
        check_lora_linear(4096, 768, 50257, 16, cached);     // LM head at B=8 T=512
        check_lora_linear(77, 3072, 768, 32, cached);        // MLP out, r = 32
        check_lora_linear(4096, 768, 2304, 5, cached);       // qkv at B=8 T=512, an odd rank
        check_lora_linear(200, 64, 1000, 16, cached);
    }
    check_lora_linear(2 * 384, 768, 3072, 0, 0);   // no adapter: the bias in the GEMM epilogue (bf16)
    check_lora_linear(77, 3072, 768, 0, 0);
    check_lora_linear(2 * 64, 768, 50257, 0, 0);
    run_attention_checks();
}

static void run_attention_checks(void) {
    check_attention(2, 64, 64, 4);
    check_attention(2, 384, 768, 12);
    check_attention(2, 77, 96, 3);
    check_attention(1, 1024, 768, 12);
    check_attention(2, 77, 128, 2);      // flash: a partial tile
    check_attention(3, 200, 192, 3);
    check_attention(1, 1, 64, 1);
    check_attention(1, 65, 64, 1);       // flash: partial 128-row forward and backward blocks
    check_attention(2, 129, 64, 1);
    check_attention(1, 191, 128, 2);
    check_attention(2, 255, 64, 1);
}

static void run_other_checks(int small) {
    if (small) {
        check_elementwise(10007);
        check_encoder(2, 16, 32, 50);
        check_rows(40, 9, 33);
        check_layernorm(32, 48);
        check_layernorm(7, 33);
        for (int bits = 2; bits <= 32; bits *= 2) check_quantize(9, 37, bits, 0);
        check_quantize(9, 37, 4, 1);
        check_xent(6, 1000, 0);
        check_xent(6, 1000, 1);
        check_xent(6, 1000, 2);
        check_argmax(6, 1000);
        check_head_lora_xent(21, 64, 50257, 8);   // (P x V >= 2^20: the padded head)
        return;
    }
    check_elementwise(1000003);
    check_elementwise(2 * 384 * 3072);
    check_encoder(2, 64, 64, 1000);
    check_encoder(2, 384, 768, 50257);
    check_rows(1000, 300, 768);
    check_rows(50257, 97, 64);
    check_layernorm(2 * 64, 64);
    check_layernorm(2 * 384, 768);
    check_layernorm(77, 100);
    check_layernorm(16 * 1024, 768);
    int bitsv[] = {2, 3, 4, 5, 6, 8, 16, 32};
    for (int i = 0; i < 8; i++) check_quantize(768, 768, bitsv[i], 0);
    check_quantize(768, 3072, 4, 1);
    check_quantize(77, 101, 8, 0);
    check_quantize(1, 50257, 8, 0);   // a bias row
    check_quantize(50257, 768, 6, 0); // LM head weights
    check_xent(128, 50257, 0);
    check_xent(128, 50257, 1);
    check_xent(128, 50257, 2);
    check_xent(2 * 384, 50257, 0);
    check_xent(37, 1001, 0);
    check_argmax(128, 50257);
    check_argmax(37, 1001);
    check_head_xent(64, 768, 50257);   // rows padded for the GEMM (V odd, P x V >= 2^20)
    check_head_xent(37, 64, 1001);     // unpadded
    check_head_lora_xent(64, 768, 50257, 16);
    check_head_lora_xent(37, 64, 1001, 8);   // unpadded
}

static int make_gpu(const char *prec) {
    char err[256];
    GPU = swq_backend_cuda(0, prec, err, sizeof err);
    if (!GPU) fprintf(stderr, "%s\n", err);
    return GPU != NULL;
}

int main(int argc, char **argv) {
    int small = 0, timing = 0, attention = 0;
    const char *only = "all";
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--small")) small = 1;
        else if (!strcmp(argv[i], "--time")) timing = 1;
        else if (!strcmp(argv[i], "--attention")) attention = 1;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--small] [--time] [--attention] [--seed N] [--precision fp32|tf32|bf16|all]\n", argv[0]);
            return 2;
        }
    }
    RNG.s = seed;
    printf("cuda_ops_check: seed %llu, %s shapes\n", (unsigned long long)seed, small ? "small" : "full");
    CPU = swq_backend_cpu(4);
    if (!CPU) return 2;
    const char *precs[] = {"fp32", "tf32", "bf16"};
    for (int k = 0; k < 3; k++) {
        if (strcmp(only, "all") && strcmp(only, precs[k])) continue;
        PREC = precs[k];
        if (!make_gpu(precs[k])) return 2;
        if (timing && attention) {
            time_attention(8, 512, 768, 12);
            time_attention(32, 1024, 768, 12);
        } else if (timing) {
            run_timing();
        } else {
            printf("%-17s %-44s %-4s %10s %7s\n", "op", "case", "prec", "rel.err", "tol");
            if (attention) {
                run_attention_checks();
            } else {
                run_gemm_checks(small);
                if (k == 0 || strcmp(only, "all")) run_other_checks(small);   // no GEMM inside: precision-independent
            }
        }
        swq_backend_cuda_destroy(GPU);
        GPU = NULL;
        if (k != 2 || (timing && !attention) || small) continue;
        // bf16: flash attention's block shapes, each forced (query rows a forward block, keys a
        // backward one; unset, the run above, picks them per launch)
        const char *shape[][2] = {{"64", "64"}, {"128", "64"}, {"64", "128"}, {"128", "128"}};
        for (int i = 0; i < 4; i++) {
            setenv("SWQ_CUDA_FLASH_ROWS", shape[i][0], 1);
            setenv("SWQ_CUDA_FLASH_KEYS", shape[i][1], 1);
            if (!make_gpu(precs[k])) return 2;
            printf("flash attention blocks: SWQ_CUDA_FLASH_ROWS=%s SWQ_CUDA_FLASH_KEYS=%s\n", shape[i][0], shape[i][1]);
            if (timing) {
                time_attention(8, 512, 768, 12);
                time_attention(32, 1024, 768, 12);
            } else {
                run_attention_checks();
            }
            swq_backend_cuda_destroy(GPU);
            GPU = NULL;
        }
        unsetenv("SWQ_CUDA_FLASH_ROWS");
        unsetenv("SWQ_CUDA_FLASH_KEYS");
    }
    swq_backend_destroy(CPU);
    printf("cuda_ops_check: %d of %d checks failed\n", n_fail, n_run);
    return n_fail ? 1 : 0;
}
