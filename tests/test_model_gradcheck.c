// Whole-model gradient checks, in double precision, with quantized weights, activations,
// biases and LoRA active. The quantizer's straight-through gradient is checked exactly by
// wrapping the backend's quantize_rows: at the base point it records each quantization's
// offset Q(x0) - x0, then replays out = x + offset, a smooth function whose true gradient
// is the STE gradient. Also: the float backend agrees with the double one, the CDT losses
// agree with a hand computation, config switching is exact, cdt_step_grads sums the
// per-config gradients of the cascade, and a config without an adapter (LoRA rank 0) is
// checked the same way and computes exactly what a zero adapter computes.
#include "check.h"
#include "model/gpt2.h"
#include "model/cdt.h"
#include "model/optimizer.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- recording quantizer ----
typedef struct { const void *key; int rows, cols; double *off; } qrec;
static qrec recs[4096];
static int nrec, replay;
static void (*orig_quant)(swq_backend *, void *, const void *, int, int, int);

static void quant_wrap(swq_backend *be, void *out, const void *in, int rows, int cols, int bits) {
    size_t n = (size_t)rows * cols;
    if (!replay) {
        orig_quant(be, out, in, rows, cols, bits);
        int i;
        for (i = 0; i < nrec; i++) if (recs[i].key == in && recs[i].rows == rows) break;
        if (i == nrec) { recs[nrec].key = in; recs[nrec].rows = rows; recs[nrec].cols = cols; recs[nrec].off = malloc(n * sizeof(double)); nrec++; }
        for (size_t j = 0; j < n; j++) recs[i].off[j] = ((double *)out)[j] - ((const double *)in)[j];
        return;
    }
    for (int i = 0; i < nrec; i++)
        if (recs[i].key == in && recs[i].rows == rows) {
            for (size_t j = 0; j < n; j++) ((double *)out)[j] = ((const double *)in)[j] + recs[i].off[j];
            return;
        }
    if (bits >= 32) { memmove(out, in, n * sizeof(double)); return; }
    fprintf(stderr, "quant_wrap: unrecorded quantization of %p\n", in);
    exit(2);
}
static void recs_clear(void) { for (int i = 0; i < nrec; i++) free(recs[i].off); nrec = 0; }

// ---- a tiny model and batch ----
enum { L_ = 2, NH_ = 2, C_ = 8, T_ = 6, V_ = 13, B_ = 2, K_ = 3 };
// LoRA ranks of the three configs; rank 0 = no adapter (config 1 has 8-bit LoRA weights)
static const int RANKS[K_] = { 2, 3, 4 }, RANK0_MID[K_] = { 2, 0, 4 }, NO_LORA[K_] = { 0, 0, 0 };

static qconfig_set *make_configs(int act_bits, int tie, const int *rank) {
    qconfig_set *qs = qconfig_set_new(L_, K_);
    int wb[K_] = { 8, tie ? 8 : 5, 4 };
    for (int k = 0; k < K_; k++) {
        qs->cfg[k].lora_rank = rank[k];
        qs->cfg[k].lora_alpha = 2.0 * rank[k];
        for (int l = 0; l < qs->n_linear; l++)
            qs->cfg[k].lin[l] = (lin_bits){ (unsigned char)wb[k], (unsigned char)(k ? act_bits : 32),
                                            (unsigned char)(k == 2 ? 6 : 32), (unsigned char)(k == 1 ? 8 : 32) };
    }
    size_t lp[4 * L_ + 1];
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    gpt2_linear_params_all(&s, lp);
    qconfig_set_order(qs, lp);
    return qs;
}

typedef struct { int tokens[B_ * T_], rows[8], targets[8], start[B_], end[B_], len[B_]; int P; } host_batch;

static void make_batch(host_batch *h) {
    for (int i = 0; i < B_ * T_; i++) h->tokens[i] = (i * 7 + 3) % V_;
    int rows[] = { 2, 3, 4, 7, 8, 9, 10 };
    h->P = 7;
    for (int p = 0; p < h->P; p++) { h->rows[p] = rows[p]; h->targets[p] = (rows[p] * 5 + 1) % V_; }
    h->start[0] = 1; h->end[0] = 3; h->len[0] = T_;
    h->start[1] = 2; h->end[1] = 2; h->len[1] = 4;   // masked tail
}

static void upload_batch(swq_backend *be, const host_batch *h, swq_batch *b) {
    b->B = B_; b->T = T_; b->P = h->P;
    b->tokens = be->alloc(be, sizeof h->tokens, "t"); be->upload_i32(be, b->tokens, h->tokens, B_ * T_);
    b->rows = be->alloc(be, sizeof h->rows, "r"); be->upload_i32(be, b->rows, h->rows, h->P);
    b->targets = be->alloc(be, sizeof h->targets, "g"); be->upload_i32(be, b->targets, h->targets, h->P);
    b->start = be->alloc(be, sizeof h->start, "s"); be->upload_i32(be, b->start, h->start, B_);
    b->end = be->alloc(be, sizeof h->end, "e"); be->upload_i32(be, b->end, h->end, B_);
    b->len = be->alloc(be, sizeof h->len, "l"); be->upload_i32(be, b->len, h->len, B_);
    b->weight = 1.0 / (h->P ? h->P : 1);
}
static void free_batch(swq_backend *be, swq_batch *b) {
    be->free(be, b->tokens); be->free(be, b->rows); be->free(be, b->targets);
    be->free(be, b->start); be->free(be, b->end); be->free(be, b->len);
}

// Make all params non-trivial (LoRA B random too, so every path carries gradient).
static void randomize(gpt2 *m, uint64_t seed) {
    gpt2_init_random(m, seed);
    float *h = malloc(sizeof(float) * m->n_total);
    m->be->download(m->be, h, m->params, m->n_total);
    uint64_t z = seed;
    for (size_t i = 0; i < m->n_total; i++) {
        z = z * 6364136223846793005ULL + 1442695040888963407ULL;
        h[i] += (float)(((z >> 40) / 16777216.0 - 0.5) * 0.2);
    }
    m->be->upload(m->be, m->params, h, m->n_total);
    free(h);
}

typedef struct { void *tS, *tH; int nt; } teachers;

// Teacher statistics for the config at index i of the cascade, at the current params.
static teachers teachers_at(cdt_state *st, const swq_batch *b, int i) {
    gpt2 *m = st->m;
    swq_backend *be = m->be;
    qconfig_set *qs = m->qs;
    int streams = m->task == TASK_LM ? 1 : 2, R = m->task == TASK_LM ? b->P : b->B, V = m->task == TASK_LM ? V_ : T_;
    teachers t;
    t.tS = be->alloc(be, (size_t)streams * R * V * 8, "tS"); t.tH = be->alloc(be, (size_t)streams * R * 8, "tH");
    t.nt = 0;
    double *acc = be->alloc(be, 16, "acc");
    size_t lp[4 * L_ + 1];
    gpt2_linear_params_all(&m->s, lp);
    double ski = qconfig_score(qs, qs->order[i], lp);
    for (int j = 0; j < i; j++) {
        if (qconfig_score(qs, qs->order[j], lp) <= ski) continue;   // equal precision: not a teacher
        m->active = qs->order[j];
        gpt2_forward(m, b->tokens, b->B, b->T, b->rows, b->P);
        if (m->task == TASK_LM) be->xent_kl(be, m->a.logits, b->targets, NULL, NULL, NULL, 0, 0, t.tS, t.tH, acc, 1, 1, 0, R, V);
        else {
            be->xent_kl(be, m->a.qa_start, b->start, b->len, NULL, NULL, 0, 0, t.tS, t.tH, acc, 1, 1, 0, R, V);
            be->xent_kl(be, m->a.qa_end, b->end, b->len, NULL, NULL, 0, 0, swq_at(be, t.tS, (size_t)R * V), swq_at(be, t.tH, R), acc, 1, 1, 0, R, V);
        }
        t.nt++;
    }
    be->free(be, acc);
    return t;
}

// Loss of the config at index i of the cascade with fixed (detached) teachers,
// optionally leaving gradients.
static double config_loss(cdt_state *st, const swq_batch *b, int i, const teachers *t, double beta, int grad) {
    gpt2 *m = st->m;
    swq_backend *be = m->be;
    int R = m->task == TASK_LM ? b->P : b->B, V = m->task == TASK_LM ? V_ : T_, nt = t->nt;
    double *acc = be->alloc(be, 16, "acc");
    m->active = m->qs->order[i];
    gpt2_forward(m, b->tokens, b->B, b->T, b->rows, b->P);
    void *tS = nt ? t->tS : NULL, *tH = nt ? t->tH : NULL;
    if (m->task == TASK_LM)
        be->xent_kl(be, m->a.logits, b->targets, NULL, tS, tH, nt, beta, NULL, NULL, acc, b->weight, 1, grad, R, V);
    else {
        be->xent_kl(be, m->a.qa_start, b->start, b->len, tS, tH, nt, beta, NULL, NULL, acc, 0.5 * b->weight, 1, grad, R, V);
        be->xent_kl(be, m->a.qa_end, b->end, b->len, nt ? swq_at(be, tS, (size_t)R * V) : NULL, nt ? swq_at(be, tH, R) : NULL,
                    nt, beta, NULL, NULL, acc, 0.5 * b->weight, 1, grad, R, V);
    }
    if (grad) gpt2_backward(m);
    double a[2];
    be->download_f64(be, a, acc, 2);
    be->free(be, acc);
    return a[0] + beta * a[1];
}
static void teachers_free(swq_backend *be, teachers *t) { be->free(be, t->tS); be->free(be, t->tH); }

static void gradcheck(int task, int full, int act_bits, const int *rank) {
    swq_backend *be = swq_backend_cpu(8);
    orig_quant = be->quantize_rows;
    be->quantize_rows = quant_wrap;
    qconfig_set *qs = make_configs(act_bits, 0, rank);
    gpt2 m;
    char err[256];
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    CHECK(gpt2_create(&m, s, qs, be, err, sizeof err) == 0, "create: %s", err);
    m.task = task; m.train_base = full;
    randomize(&m, 42);
    host_batch hb; make_batch(&hb);
    swq_batch b; upload_batch(be, &hb, &b);
    if (task == TASK_QA) b.weight = 1.0 / B_;
    cdt_state st; cdt_init(&st, &m);
    double beta = 0.7;
    double *p = m.params, *g = m.grads;
    for (int i = 0; i < K_; i++) {
        // record the quantization offsets at the base point, then work on the surrogate
        replay = 0; recs_clear();
        teachers t = teachers_at(&st, &b, i);
        m.active = qs->order[i];   // record config i's own offsets last (keys are shared across configs)
        gpt2_forward(&m, b.tokens, B_, T_, b.rows, b.P);
        replay = 1;
        be->zero(be, m.grads, m.n_total * 8);
        config_loss(&st, &b, i, &t, beta, 1);
        double *an = malloc(sizeof(double) * m.n_total);
        memcpy(an, g, sizeof(double) * m.n_total);
        double num = 0, den = 0, maxe = 0;
        int nonzero_frozen = 0;
        for (size_t q = 0; q < m.n_total; q++) {
            double x0 = p[q], h = 1e-5;
            p[q] = x0 + h; double lp_ = config_loss(&st, &b, i, &t, beta, 0);
            p[q] = x0 - h; double lm = config_loss(&st, &b, i, &t, beta, 0);
            p[q] = x0;
            double fd = (lp_ - lm) / (2 * h);
            int trainable = q >= m.n_base || full || (task == TASK_QA && q >= m.tensor_off[P_QAW]);
            if (!trainable) { if (an[q] != 0) nonzero_frozen++; continue; }
            num += (fd - an[q]) * (fd - an[q]); den += fd * fd;
            if (fabs(fd - an[q]) > maxe) maxe = fabs(fd - an[q]);
        }
        double rel = sqrt(num / (den > 0 ? den : 1));
        CHECK(rel < 1e-6 && den > 0, "task %d full %d act %d rank %d config #%d: gradient rel err %.3g (max abs %.3g, |g| %.3g)",
              task, full, act_bits, rank[qs->order[i]], i, rel, maxe, sqrt(den));
        CHECK(nonzero_frozen == 0, "frozen base params got %d nonzero gradients", nonzero_frozen);
        free(an);
        teachers_free(be, &t);
    }
    replay = 0; recs_clear();
    cdt_free(&st);
    free_batch(be, &b);
    gpt2_destroy(&m);
    qconfig_set_free(qs);
    swq_backend_destroy(be);
}

// cdt_step_grads = sum over the cascade of each config's gradient (teachers detached),
// losses match config_loss, ties are not teachers; and the float backend agrees.
static void cascade_and_float(int task, int tie, const int *rank) {
    swq_backend *bd = swq_backend_cpu(8), *bf = swq_backend_cpu(4);
    qconfig_set *qs = make_configs(8, tie, rank);
    gpt2 md, mf;
    char err[256];
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    gpt2_create(&md, s, qs, bd, err, sizeof err);
    gpt2_create(&mf, s, qs, bf, err, sizeof err);
    md.task = mf.task = task; md.train_base = mf.train_base = 1;
    randomize(&md, 7);
    float *hp = malloc(sizeof(float) * md.n_total);
    bd->download(bd, hp, md.params, md.n_total);
    bf->upload(bf, mf.params, hp, mf.n_total);
    bd->upload(bd, md.params, hp, md.n_total);   // identical (float-representable) params in both
    host_batch hb; make_batch(&hb);
    swq_batch b, bfl; upload_batch(bd, &hb, &b); upload_batch(bf, &hb, &bfl);
    if (task == TASK_QA) b.weight = bfl.weight = 1.0 / B_;
    cdt_state sd, sf; cdt_init(&sd, &md); cdt_init(&sf, &mf);
    double beta = 1.3;
    cdt_losses Ld, Lf;
    cdt_step_grads(&sd, &b, beta, -1, &Ld);
    double *gsum = malloc(sizeof(double) * md.n_total);
    memcpy(gsum, md.grads, sizeof(double) * md.n_total);
    double *acc = calloc(md.n_total, sizeof(double));
    double total = 0;
    for (int i = 0; i < K_; i++) {
        bd->zero(bd, md.grads, md.n_total * 8);
        teachers t = teachers_at(&sd, &b, i);
        double li = config_loss(&sd, &b, i, &t, beta, 1);
        teachers_free(bd, &t);
        int k = qs->order[i];
        CHECK(fabs(li - (Ld.ce[k] + beta * Ld.kl[k])) < 1e-10, "config %d loss %.12f vs cascade %.12f", k, li, Ld.ce[k] + beta * Ld.kl[k]);
        total += li;
        for (size_t q = 0; q < md.n_total; q++) acc[q] += ((double *)md.grads)[q];
    }
    CHECK(fabs(total - Ld.loss) < 1e-10, "total loss %.12f vs %.12f", total, Ld.loss);
    double num = 0, den = 0;
    for (size_t q = 0; q < md.n_total; q++) { num += (gsum[q] - acc[q]) * (gsum[q] - acc[q]); den += acc[q] * acc[q]; }
    CHECK(sqrt(num / den) < 1e-12, "cascade gradient differs from the sum of per-config gradients: %.3g", sqrt(num / den));
    // pending teacher sums exist only for a precision level of several configs
    CHECK((sd.pS != NULL) == (tie != 0), "pending teacher buffers %s with tie = %d", sd.pS ? "allocated" : "missing", tie);
    if (tie) {   // configs 0 and 1 have the same precision: the second gets no KL
        int second = qs->order[1];
        CHECK(Ld.kl[second] == 0.0, "tied config got KL %.6g", Ld.kl[second]);
        CHECK(Ld.kl[qs->order[2]] > 0, "lowest config has no KL");
    } else {
        CHECK(Ld.kl[qs->order[0]] == 0.0 && Ld.kl[qs->order[1]] > 0 && Ld.kl[qs->order[2]] > 0, "KL only for students");
    }
    cdt_step_grads(&sf, &bfl, beta, -1, &Lf);
    float *gf = malloc(sizeof(float) * mf.n_total);
    bf->download(bf, gf, mf.grads, mf.n_total);
    num = 0; den = 0;
    for (size_t q = 0; q < md.n_total; q++) { num += (gf[q] - gsum[q]) * (gf[q] - gsum[q]); den += gsum[q] * gsum[q]; }
    CHECK(sqrt(num / den) < 1e-4, "float vs double gradients: rel %.3g", sqrt(num / den));
    for (int k = 0; k < K_; k++) CHECK(fabs(Lf.ce[k] - Ld.ce[k]) < 1e-5 * fabs(Ld.ce[k]) + 1e-7, "float ce %d", k);
    free(gsum); free(acc); free(gf); free(hp);
    cdt_free(&sd); cdt_free(&sf);
    free_batch(bd, &b); free_batch(bf, &bfl);
    gpt2_destroy(&md); gpt2_destroy(&mf);
    qconfig_set_free(qs);
    swq_backend_destroy(bd); swq_backend_destroy(bf);
}

// The tiny LM on be with random params, and its batch.
static void tiny_lm(swq_backend *be, qconfig_set *qs, uint64_t seed, gpt2 *m, host_batch *hb, swq_batch *b) {
    char err[256];
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    CHECK(gpt2_create(m, s, qs, be, err, sizeof err) == 0, "create: %s", err);
    m->task = TASK_LM;
    randomize(m, seed);
    make_batch(hb);
    upload_batch(be, hb, b);
}

// tiny_lm with its own configs (8-bit activations, RANKS); the caller frees them.
static qconfig_set *tiny_lm_8bit(swq_backend *be, uint64_t seed, gpt2 *m, host_batch *hb, swq_batch *b) {
    qconfig_set *qs = make_configs(8, 0, RANKS);
    tiny_lm(be, qs, seed, m, hb, b);
    return qs;
}

// A batch whose every position is a loss row in order, given as rows = NULL (the head reads the
// final layernorm's output in place), steps exactly as the same rows listed 0..N-1: losses and
// every gradient bit for bit, base frozen and trained.
static void all_rows_in_place(int full) {
    swq_backend *be = swq_backend_cpu(8);
    gpt2 m;
    host_batch hb;
    swq_batch listed7;   // (tiny_lm's batch of 7 listed rows: not this test's)
    qconfig_set *qs = tiny_lm_8bit(be, 5, &m, &hb, &listed7);
    free_batch(be, &listed7);
    m.train_base = full;
    enum { N = B_ * T_ };
    int tok[N], rows[N], tgt[N];
    for (int i = 0; i < N; i++) tok[i] = (i * 11 + 2) % V_, rows[i] = i, tgt[i] = (i * 3 + 1) % V_;
    swq_batch b = { B_, T_, N, NULL, NULL, NULL, NULL, NULL, NULL, 1.0 / N };
    b.tokens = be->alloc(be, sizeof tok, "t"); be->upload_i32(be, b.tokens, tok, N);
    b.targets = be->alloc(be, sizeof tgt, "g"); be->upload_i32(be, b.targets, tgt, N);
    swq_batch bl = b;
    bl.rows = be->alloc(be, sizeof rows, "r"); be->upload_i32(be, bl.rows, rows, N);
    cdt_state st; cdt_init(&st, &m);
    cdt_losses L0, L1;
    cdt_step_grads(&st, &bl, 0.9, -1, &L0);
    double *g0 = malloc(sizeof(double) * m.n_total);
    memcpy(g0, m.grads, sizeof(double) * m.n_total);
    be->zero(be, m.a.hx, (size_t)N * C_ * 8);   // (nothing may read the listed rows' copy now)
    cdt_step_grads(&st, &b, 0.9, -1, &L1);
    CHECK(L0.loss == L1.loss && L0.loss > 0, "full %d: loss %.17g with rows NULL, %.17g listed", full, L1.loss, L0.loss);
    size_t diff = 0;
    for (size_t q = 0; q < m.n_total; q++) diff += memcmp(&g0[q], &((double *)m.grads)[q], sizeof(double)) != 0;
    CHECK(diff == 0, "full %d: %zu of %zu gradients differ with rows NULL", full, diff, m.n_total);
    free(g0);
    cdt_free(&st);
    be->free(be, b.tokens); be->free(be, b.targets); be->free(be, bl.rows);
    gpt2_destroy(&m);
    qconfig_set_free(qs);
    swq_backend_destroy(be);
}

// The CDT loss by hand: logits of each config downloaded, softmax/CE/KL computed here.
static void cdt_by_hand(void) {
    swq_backend *be = swq_backend_cpu(8);
    qconfig_set *qs = make_configs(32, 0, RANKS);
    gpt2 m;
    host_batch hb;
    swq_batch b;
    tiny_lm(be, qs, 99, &m, &hb, &b);
    int P = hb.P;
    double logp[K_][8][V_];
    for (int k = 0; k < K_; k++) {
        m.active = k;
        gpt2_forward(&m, b.tokens, B_, T_, b.rows, P);
        const double *z = m.a.logits;
        for (int r = 0; r < P; r++) {
            double mx = -1e300, sum = 0;
            for (int v = 0; v < V_; v++) if (z[r * V_ + v] > mx) mx = z[r * V_ + v];
            for (int v = 0; v < V_; v++) sum += exp(z[r * V_ + v] - mx);
            for (int v = 0; v < V_; v++) logp[k][r][v] = z[r * V_ + v] - mx - log(sum);
        }
    }
    double beta = 0.5;
    cdt_state st; cdt_init(&st, &m);
    cdt_losses L;
    cdt_step_grads(&st, &b, beta, -1, &L);
    for (int i = 0; i < K_; i++) {
        int k = qs->order[i];
        double ce = 0, kl = 0;
        for (int r = 0; r < P; r++) {
            ce -= logp[k][r][hb.targets[r]];
            for (int j = 0; j < i; j++) {
                int t = qs->order[j];
                for (int v = 0; v < V_; v++) kl += exp(logp[t][r][v]) * (logp[t][r][v] - logp[k][r][v]);
            }
        }
        ce /= P; kl /= P;
        CHECK(fabs(ce - L.ce[k]) < 1e-10, "config %d CE by hand %.12f vs %.12f", k, ce, L.ce[k]);
        CHECK(fabs(kl - L.kl[k]) < 1e-10, "config %d KL by hand %.12f vs %.12f", k, kl, L.kl[k]);
    }
    // switching: outputs change with the config, switching back restores them bit for bit
    m.active = 0; gpt2_forward(&m, b.tokens, B_, T_, b.rows, P);
    double *z0 = malloc(sizeof(double) * P * V_); memcpy(z0, m.a.logits, sizeof(double) * P * V_);
    double *p0 = malloc(sizeof(double) * m.n_total); memcpy(p0, m.params, sizeof(double) * m.n_total);
    m.active = 2; gpt2_forward(&m, b.tokens, B_, T_, b.rows, P);
    CHECK(memcmp(z0, m.a.logits, sizeof(double) * P * V_) != 0, "config 2 gives the same logits as config 0");
    m.active = 0; gpt2_forward(&m, b.tokens, B_, T_, b.rows, P);
    CHECK(memcmp(z0, m.a.logits, sizeof(double) * P * V_) == 0, "switching back does not restore the logits exactly");
    CHECK(memcmp(p0, m.params, sizeof(double) * m.n_total) == 0, "switching changed the parameters");
    free(z0); free(p0);
    cdt_free(&st); free_batch(be, &b); gpt2_destroy(&m); qconfig_set_free(qs); swq_backend_destroy(be);
}

// The recorded-run protocol (backend.h graph_begin/graph_end) as cdt_step_grads uses it: the
// key repeats for a repeated step (other values in the same buffers) and changes with anything
// the op sequence depends on; after a replay the host-side state and the losses are those the
// issued ops would have left.
static unsigned long long rec_keys[64];
static int n_keys, n_ends, fake_replay;
static int rec_begin(swq_backend *be, unsigned long long key) {
    (void)be;
    if (n_keys < 64) rec_keys[n_keys] = key;
    n_keys++;
    return fake_replay;
}
static void rec_end(swq_backend *be) { (void)be; n_ends++; }

static void recorded_step(void) {
    swq_backend *be = swq_backend_cpu(8);
    be->graph_begin = rec_begin;
    be->graph_end = rec_end;
    gpt2 m;
    host_batch hb;
    swq_batch b;
    qconfig_set *qs = tiny_lm_8bit(be, 7, &m, &hb, &b);
    cdt_state st; cdt_init(&st, &m);
    cdt_losses L0, L1;
    cdt_step_grads(&st, &b, 0.5, -1, &L0);
    hb.tokens[0] = (hb.tokens[0] + 1) % V_;
    be->upload_i32(be, b.tokens, hb.tokens, B_ * T_);
    cdt_step_grads(&st, &b, 0.5, -1, &L1);
    CHECK(n_keys == 2 && n_ends == 2, "%d graph_begin and %d graph_end calls for 2 steps", n_keys, n_ends);
    CHECK(rec_keys[0] == rec_keys[1], "other token values in the same buffers changed the key");
    CHECK(L0.loss != L1.loss, "test: the changed token did not change the loss");
    unsigned long long k0 = rec_keys[0];
    struct { const char *what; int n; } changes[8];
    int nc = 0;
#define KEY_CHANGES(label, change, undo)                                   \
    do {                                                                  \
        change;                                                           \
        int before = n_keys;                                              \
        cdt_step_grads(&st, &b, beta, single, &L1);                       \
        changes[nc].what = label;                                         \
        changes[nc++].n = n_keys > before && rec_keys[before] != k0;      \
        undo;                                                             \
    } while (0)
    double beta = 0.5;
    int single = -1;
    KEY_CHANGES("beta", beta = 0.6, beta = 0.5);
    KEY_CHANGES("a single config", single = 1, single = -1);
    KEY_CHANGES("the batch weight", b.weight *= 2, b.weight /= 2);
    KEY_CHANGES("the head rows P", b.P = 5, b.P = hb.P);
    KEY_CHANGES("one linear's weight bits", qs->cfg[1].lin[3].w = 6, qs->cfg[1].lin[3].w = 5);
    KEY_CHANGES("a LoRA alpha", qs->cfg[2].lora_alpha = 1.0, qs->cfg[2].lora_alpha = 8.0);
    KEY_CHANGES("the task", m.task = TASK_QA, m.task = TASK_LM);
#undef KEY_CHANGES
    for (int i = 0; i < nc; i++) CHECK(changes[i].n, "changing %s kept the recorded-run key", changes[i].what);
    // a replay: the backend runs the recording itself; cdt reads the losses it left and sets
    // the host state the ops would have
    cdt_losses L2, L3;
    cdt_step_grads(&st, &b, 0.5, -1, &L2);
    int ends = n_ends;
    m.active = 0; m.B = m.T = m.P = 0;
    fake_replay = 1;
    cdt_step_grads(&st, &b, 0.5, -1, &L3);
    fake_replay = 0;
    CHECK(n_ends == ends, "graph_end called after a replay");
    CHECK(L3.loss == L2.loss && L3.ce[1] == L2.ce[1] && L3.kl[2] == L2.kl[2], "losses after a replay %.17g vs %.17g",
          L3.loss, L2.loss);
    CHECK(m.active == qs->order[K_ - 1] && m.B == B_ && m.T == T_ && m.P == b.P && m.a.rows == b.rows,
          "host state after a replay: active %d B %d T %d P %d", m.active, m.B, m.T, m.P);
    cdt_free(&st); free_batch(be, &b); gpt2_destroy(&m); qconfig_set_free(qs); swq_backend_destroy(be);
}

// A config without an adapter (rank 0) computes what the same bits with an adapter that adds
// nothing (B = 0) compute: the same logits, loss and base gradients, bit for bit. The LoRA bank
// and the size count no adapter for it.
static void rank0_is_no_adapter(void) {
    swq_backend *be = swq_backend_cpu(8);
    qconfig_set *qs = qconfig_set_new(L_, 2);
    int NL = qs->n_linear;
    for (int k = 0; k < 2; k++) {
        qs->cfg[k].lora_rank = k ? 3 : 0;
        qs->cfg[k].lora_alpha = k ? 6.0 : 0.0;
        for (int l = 0; l < NL; l++) qs->cfg[k].lin[l] = (lin_bits){ 5, 6, 6, 8 };
    }
    gpt2 m;
    host_batch hb;
    swq_batch b;
    tiny_lm(be, qs, 11, &m, &hb, &b);
    m.train_base = 1;
    size_t bank = 0;
    double lora_bits = 0;
    for (int l = 0; l < NL; l++) {
        bank += 3 * (size_t)(m.lin[l].IC + m.lin[l].OC);
        lora_bits += 8.0 * 3 * (m.lin[l].IC + m.lin[l].OC) + 32.0 * (3 + m.lin[l].OC);
    }
    CHECK(m.n_lora == bank && m.lora_off[NL] == 0, "LoRA bank %zu (config 1 at %zu), expected %zu at 0", m.n_lora,
          m.lora_off[NL], bank);
    double d = gpt2_size_bits(&m, 1) - gpt2_size_bits(&m, 0);
    CHECK(fabs(d - lora_bits) < 0.5, "size: the adapter of config 1 is %.0f bits, expected %.0f", d, lora_bits);
    double *p = m.params;
    for (int l = 0; l < NL; l++) {   // config 1's B = 0: its adapter adds nothing
        size_t bo = m.n_base + m.lora_off[NL + l] + 3 * (size_t)m.lin[l].IC;
        memset(p + bo, 0, sizeof(double) * 3 * m.lin[l].OC);
    }
    int P = hb.P;
    double *z0 = malloc(sizeof(double) * P * V_), *g0 = malloc(sizeof(double) * m.n_total);
    m.active = 0; gpt2_forward(&m, b.tokens, B_, T_, b.rows, P);
    memcpy(z0, m.a.logits, sizeof(double) * P * V_);
    int finite = 1;
    for (int i = 0; i < P * V_; i++) finite &= isfinite(z0[i]);
    m.active = 1; gpt2_forward(&m, b.tokens, B_, T_, b.rows, P);
    CHECK(finite && memcmp(z0, m.a.logits, sizeof(double) * P * V_) == 0, "rank 0 and a zero adapter: other logits");
    cdt_state st; cdt_init(&st, &m);
    cdt_losses L0, L1;
    cdt_step_grads(&st, &b, 0.0, 0, &L0);
    memcpy(g0, m.grads, sizeof(double) * m.n_total);
    cdt_step_grads(&st, &b, 0.0, 1, &L1);
    double *g1 = m.grads;
    CHECK(isfinite(L0.ce[0]) && L0.ce[0] > 0 && L0.ce[0] == L1.ce[1], "loss %.17g (rank 0) vs %.17g (zero adapter)",
          L0.ce[0], L1.ce[1]);
    size_t nz0 = 0, nz_lora0 = 0, nz_lora1 = 0;
    for (size_t q = 0; q < m.n_base; q++) nz0 += g0[q] != 0;
    for (size_t q = m.n_base; q < m.n_total; q++) { nz_lora0 += g0[q] != 0; nz_lora1 += g1[q] != 0; }
    CHECK(nz0 > m.n_base / 2 && memcmp(g0, g1, sizeof(double) * m.n_base) == 0,
          "base gradients differ (%zu of %zu nonzero)", nz0, m.n_base);
    CHECK(nz_lora0 == 0 && nz_lora1 > 0, "LoRA gradients: %zu nonzero for rank 0, %zu for config 1", nz_lora0, nz_lora1);
    free(z0); free(g0);
    cdt_free(&st); free_batch(be, &b); gpt2_destroy(&m); qconfig_set_free(qs); swq_backend_destroy(be);
}

// gpt2_keep_grads(m, gpt2_trainable_from(m)): a model that keeps gradients only for what it
// trains (LoRA mode: [QA head |] LoRA bank) takes the same steps, bit for bit, as one that keeps
// them all; its gradients are that suffix of the other's.
static void kept_grads_suffix(int task, int full, const int *rank) {
    swq_backend *be = swq_backend_cpu(4);
    qconfig_set *qs = make_configs(8, 0, rank);
    gpt2 ma, mb;
    char err[256];
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    CHECK(gpt2_create(&ma, s, qs, be, err, sizeof err) == 0 && gpt2_create(&mb, s, qs, be, err, sizeof err) == 0,
          "create: %s", err);
    ma.task = mb.task = task;
    ma.train_base = mb.train_base = full;
    size_t from = gpt2_trainable_from(&mb);
    size_t want = full ? 0 : task == TASK_QA ? mb.tensor_off[P_QAW] : mb.n_base;
    CHECK(from == want, "task %d full %d: trainable from %zu, expected %zu", task, full, from, want);
    gpt2_keep_grads(&mb, from);
    randomize(&ma, 5);
    randomize(&mb, 5);
    host_batch hb; make_batch(&hb);
    swq_batch b; upload_batch(be, &hb, &b);
    if (task == TASK_QA) b.weight = 1.0 / B_;
    cdt_state sa, sb; cdt_init(&sa, &ma); cdt_init(&sb, &mb);
    adamw_state oa, ob;
    optimizer_init(&oa, &ma, -1, 0.9, 0.999, 1e-8, 0.01, 1.0);
    optimizer_init(&ob, &mb, -1, 0.9, 0.999, 1e-8, 0.01, 1.0);
    size_t n = ma.n_total - from;
    for (int step = 0; step < 3; step++) {
        cdt_losses La, Lb;
        cdt_step_grads(&sa, &b, 0.7, -1, &La);
        cdt_step_grads(&sb, &b, 0.7, -1, &Lb);
        CHECK(memcmp(&La, &Lb, sizeof La) == 0, "task %d full %d step %d: losses differ", task, full, step);
        CHECK(memcmp(gpt2_grad(&ma, from), mb.grads, n * sizeof(float)) == 0,
              "task %d full %d step %d: the kept gradients differ", task, full, step);
        double na = optimizer_step(&oa, 1e-2), nb = optimizer_step(&ob, 1e-2);
        CHECK(na == nb, "task %d full %d step %d: gradient norms %g and %g", task, full, step, na, nb);
    }
    CHECK(memcmp(ma.params, mb.params, ma.n_total * sizeof(float)) == 0, "task %d full %d: parameters differ", task,
          full);
    optimizer_free(&oa); optimizer_free(&ob);
    cdt_free(&sa); cdt_free(&sb); free_batch(be, &b);
    gpt2_destroy(&ma); gpt2_destroy(&mb); qconfig_set_free(qs); swq_backend_destroy(be);
}

// What a step allocates: in LoRA mode, cached quantized weights as codes expanded into one scratch
// (reals and no scratch where the backend keeps copies), gradients for the LoRA bank only; one
// projection scratch for all layers (the CPU has no fused residual linear); quantizing on the fly
// uses the same scratch.
static struct { char what[64]; size_t bytes; } allocs[512];
static int n_allocs;
static void *(*orig_alloc)(swq_backend *, size_t, const char *);
static void *alloc_rec(swq_backend *be, size_t bytes, const char *what) {
    if (n_allocs < 512) {
        snprintf(allocs[n_allocs].what, sizeof allocs[0].what, "%s", what ? what : "");
        allocs[n_allocs++].bytes = bytes;
    }
    return orig_alloc(be, bytes, what);
}
static int allocated(const char *what, size_t *bytes) {
    int k = 0;
    for (int i = 0; i < n_allocs; i++)
        if (!strcmp(allocs[i].what, what)) {
            k++;
            if (bytes) *bytes = allocs[i].bytes;
        }
    return k;
}
static void step_allocations(void) {
    swq_backend *be = swq_backend_cpu(4);
    orig_alloc = be->alloc;
    be->alloc = alloc_rec;
    gpt2 m;
    host_batch hb;
    swq_batch b;
    qconfig_set *qs = tiny_lm_8bit(be, 3, &m, &hb, &b);
    m.train_base = 0;
    gpt2_keep_grads(&m, gpt2_trainable_from(&m));
    gpt2_qcache_enable(&m, 1);
    n_allocs = 0;
    cdt_state st; cdt_init(&st, &m);
    cdt_losses L;
    cdt_step_grads(&st, &b, 0.5, -1, &L);
    size_t gb = 0, cb = 0, nl = (size_t)qs->K * qs->n_linear;
    // cached as codes (all of these configs' weights have at most 8 bits): one int8 per weight and
    // one real per row, expanded into the scratch, made once each
    CHECK(allocated("scratch.quantized_weight", NULL) == 1 && allocated("scratch.quantized_wte", NULL) == 1 &&
          allocated("scratch.quantized_bias", NULL) == 0, "a cached LoRA step made the expansion scratch %d/%d/%d times",
          allocated("scratch.quantized_weight", NULL), allocated("scratch.quantized_wte", NULL),
          allocated("scratch.quantized_bias", NULL));
    size_t want = 0;
    for (int i = 0; i < n_allocs; i++) cb += strcmp(allocs[i].what, "qcache.codes") ? 0 : allocs[i].bytes;
    for (int l = 0; l < qs->n_linear; l++) want += (size_t)qs->K * m.lin[l].OC * m.lin[l].IC;
    CHECK((size_t)allocated("qcache.codes", NULL) == nl && (size_t)allocated("qcache.scales", NULL) == nl &&
          allocated("qcache.weight", NULL) == 0 && cb == want,
          "codes cache: %d code and %d scale buffers for %zu weights, %d as reals, %zu bytes of codes for %zu weights",
          allocated("qcache.codes", NULL), allocated("qcache.scales", NULL), nl, allocated("qcache.weight", NULL), cb, want);
    CHECK(allocated("scratch.projection", NULL) == 1, "projection scratch made %d times",
          allocated("scratch.projection", NULL));
    n_allocs = 0;
    gpt2_keep_grads(&m, gpt2_trainable_from(&m));
    CHECK(allocated("gradients", &gb) == 1 && gb == m.n_lora * sizeof(float), "LoRA-mode gradients: %zu bytes for %zu",
          gb, m.n_lora);
    gpt2_qcache_enable(&m, 0);
    n_allocs = 0;
    cdt_step_grads(&st, &b, 0.5, -1, &L);
    cdt_step_grads(&st, &b, 0.5, -1, &L);
    CHECK(allocated("scratch.quantized_weight", NULL) == 0 && allocated("scratch.quantized_wte", NULL) == 0,
          "quantizing on the fly: the expansion scratch reused, yet weight scratch made %d times, wte %d times",
          allocated("scratch.quantized_weight", NULL), allocated("scratch.quantized_wte", NULL));
    // a backend keeping its own copies of cached weights (CUDA bf16): cached as reals, no scratch
    gpt2_destroy(&m);
    be->keeps_weight_copies = 1;
    n_allocs = 0;
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    char err[256];
    CHECK(gpt2_create(&m, s, qs, be, err, sizeof err) == 0, "create: %s", err);
    randomize(&m, 3);
    gpt2_keep_grads(&m, gpt2_trainable_from(&m));
    gpt2_qcache_enable(&m, 1);
    cdt_free(&st); cdt_init(&st, &m);
    cdt_step_grads(&st, &b, 0.5, -1, &L);
    CHECK((size_t)allocated("qcache.weight", NULL) == nl && allocated("qcache.codes", NULL) == 0 &&
          allocated("scratch.quantized_weight", NULL) == 0 && allocated("scratch.quantized_wte", NULL) == 0,
          "a backend keeping weight copies: %d weights cached as reals (of %zu), %d as codes, scratch %d/%d",
          allocated("qcache.weight", NULL), nl, allocated("qcache.codes", NULL),
          allocated("scratch.quantized_weight", NULL), allocated("scratch.quantized_wte", NULL));
    cdt_free(&st); free_batch(be, &b); gpt2_destroy(&m); qconfig_set_free(qs); swq_backend_destroy(be);
}

// Teacher sums are made only where a config has teachers: plain training's single config (and a
// cascade of one precision level) has none, so its step makes, zeroes and reads none (at GPT-2's
// vocabulary and the pretraining batch they were 6.6 GB), with the same loss as its single-config step;
// a cascade of distinct levels makes tS/tH and no pending sums, one with a shared level makes both.
static void teacher_buffers(void) {
    swq_backend *be = swq_backend_cpu(4);
    orig_alloc = be->alloc;
    be->alloc = alloc_rec;
    const char *tS = "cdt.teacher_probs", *pS = "cdt.pending_teacher_probs";
    qconfig_set *one = qconfig_set_new(L_, 1);
    for (int l = 0; l < one->n_linear; l++) one->cfg[0].lin[l] = (lin_bits){ 32, 32, 32, 32 };
    size_t lp[4 * L_ + 1];
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    gpt2_linear_params_all(&s, lp);
    qconfig_set_order(one, lp);
    qconfig_set *sets[4] = { one, make_configs(32, 0, RANKS), make_configs(32, 1, RANKS), NULL };
    int want_t[3] = { 0, 1, 1 }, want_p[3] = { 0, 0, 1 };
    for (int i = 0; sets[i]; i++) {
        gpt2 m;
        host_batch hb;
        swq_batch b;
        n_allocs = 0;
        tiny_lm(be, sets[i], 11, &m, &hb, &b);
        cdt_state st; cdt_init(&st, &m);
        cdt_losses L, L1;
        cdt_step_grads(&st, &b, 0.5, -1, &L);
        cdt_step_grads(&st, &b, 0.5, -1, &L1);
        CHECK(allocated(tS, NULL) == want_t[i] && allocated(pS, NULL) == want_p[i] && (st.tS != NULL) == want_t[i],
              "set %d: teacher sums made %d times (want %d), pending %d (want %d)", i, allocated(tS, NULL), want_t[i],
              allocated(pS, NULL), want_p[i]);
        CHECK(L.loss == L1.loss && L.loss > 0, "set %d: the same step gave losses %.17g and %.17g", i, L.loss, L1.loss);
        if (i == 0) {
            cdt_step_grads(&st, &b, 0.5, 0, &L1);
            CHECK(L.loss == L1.loss && L.kl[0] == 0, "one config: cascade loss %.17g (KL %g), its own step %.17g",
                  L.loss, L.kl[0], L1.loss);
        } else
            CHECK(L.kl[sets[i]->order[sets[i]->K - 1]] > 0, "set %d: the least precise config has no KL", i);
        cdt_free(&st); free_batch(be, &b); gpt2_destroy(&m); qconfig_set_free(sets[i]);
    }
    swq_backend_destroy(be);
}

// Quantized weights cached as codes (int8 or int16 and row scales, expanded before each use) take
// the same steps, bit for bit, as cached as reals (a backend keeping its own copies) and as
// quantized on the fly; a width codes cannot hold (24 bits) stays cached as reals.
static void qcache_codes_same_steps(int task) {
    swq_backend *be[3] = { swq_backend_cpu(4), swq_backend_cpu(4), swq_backend_cpu(4) };
    be[1]->keeps_weight_copies = 1;
    qconfig_set *qs = make_configs(8, 0, RANKS);
    for (int l = 0; l < qs->n_linear; l++) qs->cfg[0].lin[l].w = l % 3 == 0 ? 16 : l % 3 == 1 ? 12 : 24;
    size_t lp[4 * L_ + 1];
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    gpt2_linear_params_all(&s, lp);
    qconfig_set_order(qs, lp);
    gpt2 m[3];
    cdt_state st[3];
    adamw_state o[3];
    swq_batch b[3];
    host_batch hb;
    make_batch(&hb);
    char err[256];
    for (int i = 0; i < 3; i++) {
        CHECK(gpt2_create(&m[i], s, qs, be[i], err, sizeof err) == 0, "create: %s", err);
        m[i].task = task;
        randomize(&m[i], 9);
        gpt2_keep_grads(&m[i], gpt2_trainable_from(&m[i]));
        gpt2_qcache_enable(&m[i], i < 2);
        upload_batch(be[i], &hb, &b[i]);
        if (task == TASK_QA) b[i].weight = 1.0 / B_;
        cdt_init(&st[i], &m[i]);
        optimizer_init(&o[i], &m[i], -1, 0.9, 0.999, 1e-8, 0.01, 1.0);
    }
    for (int step = 0; step < 3; step++) {
        cdt_losses L[3];
        double norm[3];
        for (int i = 0; i < 3; i++) cdt_step_grads(&st[i], &b[i], 0.7, -1, &L[i]);
        for (int i = 0; i < 3; i++) norm[i] = optimizer_step(&o[i], 1e-2);
        for (int i = 1; i < 3; i++)
            CHECK(memcmp(&L[0], &L[i], sizeof L[0]) == 0 && norm[0] == norm[i],
                  "task %d step %d: codes cache and %s differ (loss %.9g / %.9g)", task, step,
                  i == 1 ? "reals cache" : "on the fly", L[0].ce[0], L[i].ce[0]);
    }
    for (int i = 1; i < 3; i++)
        CHECK(memcmp(m[0].params, m[i].params, m[0].n_total * sizeof(float)) == 0, "task %d: parameters differ (%d)",
              task, i);
    int NL = qs->n_linear, k0 = qs->order[0], codes = 0, reals = 0;
    for (int l = 0; l < NL; l++) {
        size_t i = (size_t)k0 * NL + l;
        codes += m[0].qc_s[i] != NULL;
        reals += m[1].qc_s[i] != NULL;
    }
    CHECK(codes == NL - NL / 3 && reals == 0, "config 0: %d of %d weights as codes (expected %d), %d with copies kept",
          codes, NL, NL - NL / 3, reals);
    for (int i = 0; i < 3; i++) {
        optimizer_free(&o[i]); cdt_free(&st[i]); free_batch(be[i], &b[i]); gpt2_destroy(&m[i]);
        swq_backend_destroy(be[i]);
    }
    qconfig_set_free(qs);
}

// Span QA has no LM head: the forward quantizes only the tokens' rows of wte after the lookup,
// which must give exactly the lookup into the whole quantized matrix (the quantization is per
// row), without quantizing, caching or expanding the whole matrix. Linear inputs are quantized in
// place except the attention output's (the attention backward reads it unquantized).
static void qa_embedding_rows(void) {
    swq_backend *be = swq_backend_cpu(4);
    orig_alloc = be->alloc;
    be->alloc = alloc_rec;
    qconfig_set *qs = make_configs(6, 0, RANKS);
    gpt2_shape s = { L_, NH_, C_, T_, V_ };
    gpt2 m;
    char err[256];
    CHECK(gpt2_create(&m, s, qs, be, err, sizeof err) == 0, "create: %s", err);
    m.task = TASK_QA;
    randomize(&m, 5);
    gpt2_keep_grads(&m, gpt2_trainable_from(&m));
    gpt2_qcache_enable(&m, 1);
    host_batch hb;
    make_batch(&hb);
    swq_batch b;
    upload_batch(be, &hb, &b);
    n_allocs = 0;
    int NL = qs->n_linear, N = B_ * T_;
    float *qwte = be->alloc(be, sizeof(float) * V_ * C_, "test"), *ref = be->alloc(be, sizeof(float) * N * C_, "test");
    for (int i = 0; i < K_; i++) {
        m.active = qs->order[i];
        gpt2_forward(&m, b.tokens, B_, T_, b.rows, 0);
        int bits = qs->cfg[m.active].lin[NL - 1].w;
        be->quantize_rows(be, qwte, m.params, V_, C_, bits);
        be->encoder_fwd(be, ref, b.tokens, qwte, (float *)m.params + m.tensor_off[P_WPE], B_, T_, C_);
        CHECK(bits < 32 && memcmp(ref, m.a.encoded, sizeof(float) * N * C_) == 0,
              "config %d (%d-bit wte): the quantized rows after the lookup differ from the lookup into the quantized "
              "matrix", m.active, bits);
        CHECK(m.qc_w[(size_t)m.active * NL + NL - 1] == NULL, "config %d: span QA cached the whole quantized wte",
              m.active);
    }
    CHECK(allocated("scratch.quantized_wte", NULL) == 0 && allocated("activations.embedding_rows", NULL) == 1,
          "span QA: whole-wte scratch made %d times, the rows' buffer %d times", allocated("scratch.quantized_wte", NULL),
          allocated("activations.embedding_rows", NULL));
    n_allocs = 0;
    gpt2_reserve(&m, B_ * 2, T_, 1);
    CHECK(allocated("activations.quantized_input", NULL) == L_, "%d quantized-input buffers for %d layers",
          allocated("activations.quantized_input", NULL), L_);
    be->free(be, qwte); be->free(be, ref);
    free_batch(be, &b); gpt2_destroy(&m); qconfig_set_free(qs); swq_backend_destroy(be);
}

int main(void) {
    qa_embedding_rows();
    step_allocations();
    teacher_buffers();
    qcache_codes_same_steps(TASK_LM);
    qcache_codes_same_steps(TASK_QA);
    kept_grads_suffix(TASK_LM, 0, RANKS);
    kept_grads_suffix(TASK_QA, 0, RANKS);
    kept_grads_suffix(TASK_LM, 0, RANK0_MID);
    kept_grads_suffix(TASK_LM, 1, RANKS);
    gradcheck(TASK_LM, 1, 32, RANKS);
    gradcheck(TASK_LM, 1, 6, RANKS);
    gradcheck(TASK_LM, 0, 6, RANKS);
    gradcheck(TASK_QA, 1, 6, RANKS);
    gradcheck(TASK_QA, 0, 32, RANKS);
    gradcheck(TASK_LM, 1, 6, RANK0_MID);   // full fine-tune, one config without an adapter
    gradcheck(TASK_QA, 1, 32, NO_LORA);
    cascade_and_float(TASK_LM, 0, RANKS);
    cascade_and_float(TASK_LM, 1, RANKS);
    cascade_and_float(TASK_QA, 0, RANKS);
    cascade_and_float(TASK_LM, 0, RANK0_MID);
    rank0_is_no_adapter();
    cdt_by_hand();
    all_rows_in_place(0);
    all_rows_in_place(1);
    recorded_step();
    return check_summary("test_model_gradcheck");
}
