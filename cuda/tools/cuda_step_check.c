// cuda_step_check: whole CDT training steps (cdt_step_grads + optimizer_step) on the CPU
// reference (float) and on the CUDA backend, from identical params and batches. Per variant
// (model shape, task, activation bits, LoRA or full fine-tune) it compares, after the first
// step, every config's losses, the gradients (per config's LoRA adapter and the trainable
// base/QA-head part), the gradient norm and the trainable params; then runs `steps` steps on
// both and compares the loss of every step. Relative errors are ||gpu-cpu|| / ||cpu||.
// Bounds (losses / gradients and params after the first step):
//   fp32 1e-5 / 1e-5;  tf32 3e-4 / 2e-3;  bf16 1e-2 / 1e-2;
//   with quantized activations at least 3e-3 / 3e-2.
// Why the two wider ones: TF32 rounds GEMM operands to 10 mantissa bits (~5e-4 per product),
// and a backward through every layer compounds it; a quantized activation is discontinuous
// (a value within float rounding of a rounding boundary lands one quantum, 1/127 of the row's
// max at 8 bits, apart), so any two implementations differ there by more than rounding.
// The AdamW update (params after - before) and the params after all steps are printed for
// information: an AdamW step is ~lr*sign(g) elementwise, so it amplifies rounding in
// near-zero gradients, and the runs drift apart at that rate; the losses stay together.
// Exits 1 if anything is over its bound, 2 if no GPU. --self runs CPU against CPU (every
// error must be 0: checks this tool and the quantized-weight cache, on for the "GPU" side).
// Five configs as the seeds: weight bits 16/8/6/5/4, LoRA ranks 8/8/8/16/16, alpha 2r (4r at 4 bits).
//   usage: cuda_step_check [--precision fp32|tf32|bf16|all] [--variants a,b,...] [--steps N]
//                          [--steps-124m N] [--bt-124m B:T] [--self]
//   variants: small small-full small-plain small-act8 small-qa 124m 124m-plain (default: all)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/backend_cuda.h"
#include "model/backend.h"
#include "model/cdt.h"
#include "model/gpt2.h"
#include "model/optimizer.h"
#include "model/qconfig.h"
#include "model/rng.h"
#include "compare.h"

typedef struct {
    const char *name;
    gpt2_shape s;
    int task, act_bits, full, B, T, big, plain;   // plain: one config, 32 bits, no adapter (plain training)
} variant;

static const variant VARIANTS[] = {
    {"small", {2, 4, 64, 64, 512}, TASK_LM, 32, 0, 2, 32, 0, 0},
    {"small-full", {2, 4, 64, 64, 512}, TASK_LM, 32, 1, 2, 32, 0, 0},
    {"small-plain", {2, 4, 64, 64, 512}, TASK_LM, 32, 1, 2, 32, 0, 1},
    {"small-act8", {2, 4, 64, 64, 512}, TASK_LM, 8, 0, 2, 32, 0, 0},
    {"small-qa", {2, 4, 64, 64, 512}, TASK_QA, 8, 0, 2, 32, 0, 0},
    {"124m", {12, 12, 768, 1024, 50257}, TASK_LM, 32, 0, 1, 32, 1, 0},
    {"124m-plain", {12, 12, 768, 1024, 50257}, TASK_LM, 32, 1, 1, 32, 1, 1},   // the head's padded-row paths
};
#define NVAR ((int)(sizeof(VARIANTS) / sizeof(VARIANTS[0])))

static const int BITS[5] = {16, 8, 6, 5, 4}, RANKS[5] = {8, 8, 8, 16, 16};
static int n_fail, self_test;   // --self: CPU against CPU (checks this tool: every error must be 0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "cuda_step_check: out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static qconfig_set *make_configs(int n_layer, int act_bits, const gpt2_shape *s, int plain) {
    qconfig_set *qs = qconfig_set_new(n_layer, plain ? 1 : 5);
    if (!qs) {
        fprintf(stderr, "cuda_step_check: qconfig_set_new failed\n");
        exit(1);
    }
    for (int k = 0; k < qs->K; k++) {
        qconfig *c = &qs->cfg[k];
        int bits = plain ? 32 : BITS[k];
        snprintf(c->name, sizeof(c->name), "w%d", bits);
        c->lora_rank = plain ? 0 : RANKS[k];
        c->lora_alpha = plain ? 0.0 : RANKS[k] * (BITS[k] == 4 ? 4.0 : 2.0);
        for (int l = 0; l < qs->n_linear; l++)
            c->lin[l] = (lin_bits){(unsigned char)bits, (unsigned char)act_bits, (unsigned char)bits, 32};
    }
    size_t *lp = xmalloc(sizeof(size_t) * qs->n_linear);
    gpt2_linear_params_all(s, lp);
    qconfig_set_order(qs, lp);
    free(lp);
    return qs;
}

static double rel_scalar(double g, double c) {
    if (!isfinite(g) || !isfinite(c)) return INFINITY;
    return fabs(g - c) / (fabs(c) > 1e-6 ? fabs(c) : 1e-6);
}

static void report(const char *what, double err, double tol) {
    int bad = !(err <= tol);
    n_fail += bad;
    printf("  %-34s %.3e  (tol %.0e) %s\n", what, err, tol, bad ? "FAIL" : "ok");
}

// One model + batch buffers on one backend.
typedef struct {
    swq_backend *be;
    gpt2 m;
    cdt_state cs;
    adamw_state opt;
    swq_batch b;
} side;

static void side_batch_alloc(side *sd, int task, int B, int T) {
    swq_backend *be = sd->be;
    int N = B * T;
    sd->b.B = B;
    sd->b.T = T;
    sd->b.P = task == TASK_LM ? N : 0;
    sd->b.tokens = be->alloc(be, sizeof(int) * N, "batch.tokens");
    if (task == TASK_LM) {
        sd->b.rows = be->alloc(be, sizeof(int) * N, "batch.rows");
        sd->b.targets = be->alloc(be, sizeof(int) * N, "batch.targets");
    } else {
        sd->b.start = be->alloc(be, sizeof(int) * B, "batch.start");
        sd->b.end = be->alloc(be, sizeof(int) * B, "batch.end");
        sd->b.len = be->alloc(be, sizeof(int) * B, "batch.len");
    }
}
static void side_batch_free(side *sd) {
    swq_backend *be = sd->be;
    be->free(be, sd->b.tokens);
    be->free(be, sd->b.rows);
    be->free(be, sd->b.targets);
    be->free(be, sd->b.start);
    be->free(be, sd->b.end);
    be->free(be, sd->b.len);
    memset(&sd->b, 0, sizeof(sd->b));
}

// A fresh random batch (same on both sides).
static void make_batch(side *sd, int nsd, int task, int B, int T, int V, swq_rng *r) {
    int N = B * T;
    int *tok = xmalloc(sizeof(int) * N), *rows = xmalloc(sizeof(int) * N), *tgt = xmalloc(sizeof(int) * N);
    int st[64], en[64], len[64];
    for (int i = 0; i < N; i++) {
        tok[i] = (int)swq_rng_below(r, (uint64_t)V);
        rows[i] = i;
        tgt[i] = (int)swq_rng_below(r, (uint64_t)V);
    }
    for (int b = 0; b < B && b < 64; b++) {
        len[b] = T / 2 + (int)swq_rng_below(r, (uint64_t)(T - T / 2 + 1));
        st[b] = (int)swq_rng_below(r, (uint64_t)len[b]);
        en[b] = st[b] + (int)swq_rng_below(r, (uint64_t)(len[b] - st[b]));
    }
    for (int i = 0; i < nsd; i++) {
        swq_backend *be = sd[i].be;
        be->upload_i32(be, sd[i].b.tokens, tok, N);
        if (task == TASK_LM) {
            be->upload_i32(be, sd[i].b.rows, rows, N);
            be->upload_i32(be, sd[i].b.targets, tgt, N);
            sd[i].b.weight = 1.0 / N;
        } else {
            be->upload_i32(be, sd[i].b.start, st, B);
            be->upload_i32(be, sd[i].b.end, en, B);
            be->upload_i32(be, sd[i].b.len, len, B);
            sd[i].b.weight = 1.0 / B;
        }
    }
    free(tok);
    free(rows);
    free(tgt);
}

static int run_variant(const variant *v, const char *prec, int steps) {
    double tol = !strcmp(prec, "fp32") ? 1e-5 : !strcmp(prec, "tf32") ? 3e-4 : 1e-2;
    double gtol = !strcmp(prec, "tf32") ? 2e-3 : tol;
    if (v->act_bits < 32) {
        tol = fmax(tol, 3e-3);
        gtol = fmax(gtol, 3e-2);
    }
    char err[512];
    side sd[2];
    memset(sd, 0, sizeof(sd));
    sd[0].be = swq_backend_cpu(4);
    sd[1].be = self_test ? swq_backend_cpu(4) : swq_backend_cuda(0, prec, err, sizeof(err));
    if (!sd[1].be) {
        fprintf(stderr, "cuda_step_check: %s\n", err);
        exit(2);
    }
    qconfig_set *qs = make_configs(v->s.n_layer, v->act_bits, &v->s, v->plain);
    printf("== %s (%s, bounds loss %.0e, grads/params %.0e): L=%d C=%d V=%d B=%d T=%d task=%s act_bits=%d %s, %d steps\n", v->name, prec,
           tol, gtol, v->s.n_layer, v->s.n_embd, v->s.vocab_size, v->B, v->T, v->task == TASK_LM ? "lm" : "qa", v->act_bits,
           v->plain ? "plain training" : v->full ? "full fine-tune" : "LoRA (qcache)", steps);
    double t0 = now_s();
    for (int i = 0; i < 2; i++) {
        if (gpt2_create(&sd[i].m, v->s, qs, sd[i].be, err, sizeof(err))) {
            fprintf(stderr, "cuda_step_check: %s\n", err);
            exit(1);
        }
        sd[i].m.task = v->task;
        sd[i].m.train_base = v->full;
        gpt2_init_random(&sd[i].m, 1234);
        // the GPU side always caches quantized weights; the CPU side only for the big model
        // (so the small variants also check the cache against on-the-fly quantization)
        if (i == 1 || v->big) gpt2_qcache_enable(&sd[i].m, 1);
    }
    gpt2 *mc = &sd[0].m;
    size_t nt = mc->n_total;
    // LoRA B random too (init leaves it zero), and a nonzero QA head bias: every gradient is live
    float *hp = xmalloc(sizeof(float) * nt), *hg = xmalloc(sizeof(float) * nt), *hc = xmalloc(sizeof(float) * nt);
    sd[0].be->download(sd[0].be, hp, mc->params, nt);
    swq_rng r = {777};
    int NL = qs->n_linear;
    for (int k = 0; k < qs->K; k++)
        for (int l = 0; l < NL; l++) {
            size_t off = mc->n_base + mc->lora_off[(size_t)k * NL + l];
            size_t na = (size_t)qs->cfg[k].lora_rank * mc->lin[l].IC, nb = (size_t)qs->cfg[k].lora_rank * mc->lin[l].OC;
            for (size_t i = 0; i < nb; i++) hp[off + na + i] = (float)(0.02 * swq_rng_normal(&r));
        }
    if (v->task == TASK_QA)
        for (size_t i = 0; i < mc->tensor_n[P_QAB]; i++) hp[mc->tensor_off[P_QAB] + i] = 0.1f * (float)(i + 1);
    for (int i = 0; i < 2; i++) {
        sd[i].be->upload(sd[i].be, sd[i].m.params, hp, nt);
        gpt2_invalidate_qcache(&sd[i].m);
        cdt_init(&sd[i].cs, &sd[i].m);
        optimizer_init(&sd[i].opt, &sd[i].m, -1, 0.9, 0.95, 1e-8, 0.01, 1.0);
        side_batch_alloc(&sd[i], v->task, v->B, v->T);
    }
    size_t toff, tn;   // the trainable range
    optimizer_grad_range(&sd[0].opt, &toff, &tn);
    swq_rng br = {4242};
    // The 124M variants at the learning rates of the shipped 124M configs: 2e-4 for LoRA CDT
    // (configs/squad_prompt_124m.cfg), 1e-4 for plain training (pretrain_124m.cfg's 6e-4 is still
    // warming up then). At 1e-3, plain training of every 124M weight on random tokens overshoots
    // (the loss rises from step ~10) and the runs' rounding differences grow ~10x every 3 steps
    // (fp32: 9e-5 by step 18, old and new code alike, stop 24); AdamW's sign-like updates make the
    // drift of LoRA CDT in tf32 grow with the rate too (8.8e-4 at step 16).
    double beta = 1.0, lr = v->big ? (v->full ? 1e-4 : 2e-4) : 1e-3;
    cdt_losses L[2];
    float *p0 = xmalloc(sizeof(float) * nt);
    memcpy(p0, hp, sizeof(float) * nt);
    double max_loss_err = 0;
    int worst_step = 0;
    for (int step = 1; step <= steps; step++) {
        make_batch(sd, 2, v->task, v->B, v->T, v->s.vocab_size, &br);
        for (int i = 0; i < 2; i++) cdt_step_grads(&sd[i].cs, &sd[i].b, beta, -1, &L[i]);
        if (step == 1) {
            char what[96];
            for (int k = 0; k < qs->K; k++) {
                snprintf(what, sizeof(what), "step1 loss ce[%s]", qs->cfg[k].name);
                report(what, rel_scalar(L[1].ce[k], L[0].ce[k]), tol);
                if (L[0].kl[k] != 0 || L[1].kl[k] != 0) {
                    snprintf(what, sizeof(what), "step1 loss kl[%s] (/ce+kl)", qs->cfg[k].name);
                    // relative to the config's whole loss: a small KL is ill-conditioned alone
                    double d = fabs(L[1].kl[k] - L[0].kl[k]), den = fabs(L[0].ce[k]) + fabs(L[0].kl[k]);
                    report(what, isfinite(L[1].kl[k]) ? d / (den > 1e-6 ? den : 1e-6) : INFINITY, tol);
                }
            }
            sd[0].be->download(sd[0].be, hc, sd[0].m.grads, nt);
            sd[1].be->download(sd[1].be, hg, sd[1].m.grads, nt);
            for (int k = 0; k < qs->K; k++) {
                size_t a = mc->n_base + mc->lora_off[(size_t)k * NL];
                size_t b = k + 1 < qs->K ? mc->n_base + mc->lora_off[(size_t)(k + 1) * NL] : nt;
                if (b == a) continue;   // no adapter (plain training)
                snprintf(what, sizeof(what), "step1 grad lora[%s]", qs->cfg[k].name);
                report(what, rel_err(hg + a, hc + a, b - a), gtol);
            }
            if (v->full) {
                for (int t = 0; t < GPT2_NUM_TENSORS; t++) {
                    if (t == P_QAW || t == P_QAB) continue;
                    snprintf(what, sizeof(what), "step1 grad base tensor %d", t);
                    report(what, rel_err(hg + mc->tensor_off[t], hc + mc->tensor_off[t], mc->tensor_n[t]), gtol);
                }
            }
            if (v->task == TASK_QA) {
                size_t o = mc->tensor_off[P_QAW], n = mc->tensor_n[P_QAW] + mc->tensor_n[P_QAB];
                report("step1 grad qa head", rel_err(hg + o, hc + o, n), gtol);
            }
        }
        double lerr = rel_scalar(L[1].loss, L[0].loss);
        if (lerr > max_loss_err || step == 1) {
            max_loss_err = lerr;
            worst_step = step;
        }
        double gn[2];
        for (int i = 0; i < 2; i++) gn[i] = optimizer_step(&sd[i].opt, lr);
        if (step == 1) {
            report("step1 grad norm", rel_scalar(gn[1], gn[0]), gtol);
            sd[0].be->download(sd[0].be, hc, sd[0].m.params, nt);
            sd[1].be->download(sd[1].be, hg, sd[1].m.params, nt);
            report("step1 trainable params", rel_err(hg + toff, hc + toff, tn), gtol);
            for (size_t i = 0; i < nt; i++) {   // updates
                hc[i] -= p0[i];
                hg[i] -= p0[i];
            }
            printf("  %-34s %.3e  (information)\n", "step1 param update (AdamW)", rel_err(hg, hc, nt));
        }
        if (step == 1 || step == steps || step % 5 == 0)
            printf("  step %2d: loss cpu %.7f gpu %.7f  rel %.2e\n", step, L[0].loss, L[1].loss, lerr);
    }
    char what[96];
    snprintf(what, sizeof(what), "loss, worst of %d steps (step %d)", steps, worst_step);
    report(what, max_loss_err, tol);
    sd[0].be->download(sd[0].be, hc, sd[0].m.params, nt);
    sd[1].be->download(sd[1].be, hg, sd[1].m.params, nt);
    printf("  %-34s %.3e  (information)\n", "trainable params after the steps", rel_err(hg + toff, hc + toff, tn));
    for (size_t i = 0; i < nt; i++) {
        hc[i] -= p0[i];
        hg[i] -= p0[i];
    }
    printf("  %-34s %.3e  (information)\n", "param change (AdamW updates)", rel_err(hg, hc, nt));
    if (!self_test) {
        long rec = 0, rep = 0;
        swq_backend_cuda_graph_stats(sd[1].be, &rec, &rep);
        printf("  CUDA graphs: %ld recorded, %ld replayed of %d steps\n", rec, rep, steps);
    }
    printf("  (%.1f s)\n", now_s() - t0);
    for (int i = 0; i < 2; i++) {
        side_batch_free(&sd[i]);
        optimizer_free(&sd[i].opt);
        cdt_free(&sd[i].cs);
        gpt2_destroy(&sd[i].m);
        swq_backend_destroy(sd[i].be);
    }
    qconfig_set_free(qs);
    free(hp);
    free(hg);
    free(hc);
    free(p0);
    return 0;
}

int main(int argc, char **argv) {
    const char *prec = "all", *vars = NULL;
    int steps = 20, steps_big = 20, bbig = 1, tbig = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--precision") && i + 1 < argc) prec = argv[++i];
        else if (!strcmp(argv[i], "--variants") && i + 1 < argc) vars = argv[++i];
        else if (!strcmp(argv[i], "--self")) self_test = 1;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps-124m") && i + 1 < argc) steps_big = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bt-124m") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d:%d", &bbig, &tbig) != 2 || bbig < 1 || tbig < 2) {
                fprintf(stderr, "cuda_step_check: --bt-124m wants B:T, got '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: cuda_step_check [--precision fp32|tf32|bf16|all] [--variants a,b] [--steps N] "
                            "[--steps-124m N] [--bt-124m B:T]\n");
            return 2;
        }
    }
    if (steps < 1 || steps_big < 1) {
        fprintf(stderr, "cuda_step_check: --steps must be >= 1\n");
        return 2;
    }
    const char *precs[3] = {"fp32", "tf32", "bf16"};
    for (int p = 0; p < 3; p++) {
        if (strcmp(prec, "all") && strcmp(prec, precs[p])) continue;
        for (int i = 0; i < NVAR; i++) {
            if (vars) {   // comma-separated list of names
                const char *s = vars;
                size_t n = strlen(VARIANTS[i].name);
                int found = 0;
                while (*s) {
                    const char *e = strchr(s, ',');
                    size_t len = e ? (size_t)(e - s) : strlen(s);
                    if (len == n && !strncmp(s, VARIANTS[i].name, n)) found = 1;
                    s += len + (e ? 1 : 0);
                }
                if (!found) continue;
            }
            variant v = VARIANTS[i];
            if (v.big) {
                v.B = bbig;
                v.T = tbig;
            }
            run_variant(&v, precs[p], v.big ? steps_big : steps);
        }
    }
    printf("cuda_step_check: %s\n", n_fail ? "FAILED" : "all ok");
    if (n_fail) printf("cuda_step_check: %d checks over tolerance\n", n_fail);
    return n_fail ? 1 : 0;
}
