#include "optimizer.h"
#include <math.h>
#include <string.h>

static void add_seg(adamw_state *o, size_t off, size_t n, int decay) {
    if (!n) return;
    opt_segment *last = o->nseg ? &o->seg[o->nseg - 1] : NULL;
    if (last && last->off + last->n == off && last->decay == decay) { last->n += n; }
    else o->seg[o->nseg++] = (opt_segment){ off, n, decay };
    o->n += n;
}

void optimizer_init(adamw_state *o, gpt2 *m, int single, double b1, double b2, double eps, double wd,
                    double clip) {
    memset(o, 0, sizeof(*o));
    o->m = m; o->b1 = b1; o->b2 = b2; o->eps = eps; o->wd = wd; o->clip = clip;
    for (int t = 0; t < GPT2_NUM_TENSORS; t++) {
        int qa = t == P_QAW || t == P_QAB;
        if (qa && m->task != TASK_QA) continue;
        if (!qa && !m->train_base) continue;
        int decay = t == P_WTE || t == P_WPE || t == P_QKVW || t == P_ATTPROJW || t == P_FCW ||
                    t == P_FCPROJW || t == P_QAW;
        add_seg(o, m->tensor_off[t], m->tensor_n[t], decay);
    }
    int NL = m->qs->n_linear;
    if (single >= 0) {
        size_t a = m->lora_off[(size_t)single * NL];
        size_t b = single + 1 < m->qs->K ? m->lora_off[(size_t)(single + 1) * NL] : m->n_lora;
        add_seg(o, m->n_base + a, b - a, 1);
    } else {
        add_seg(o, m->n_base, m->n_lora, 1);
    }
    swq_backend *be = m->be;
    o->mom1 = be->alloc(be, (o->n ? o->n : 1) * be->real_size, "optimizer.m");
    o->mom2 = be->alloc(be, (o->n ? o->n : 1) * be->real_size, "optimizer.v");
    be->zero(be, o->mom1, (o->n ? o->n : 1) * be->real_size);
    be->zero(be, o->mom2, (o->n ? o->n : 1) * be->real_size);
    o->acc = be->alloc(be, sizeof(double), "optimizer.norm");
}

void optimizer_free(adamw_state *o) {
    swq_backend *be = o->m->be;
    be->free(be, o->mom1); be->free(be, o->mom2); be->free(be, o->acc);
    memset(o, 0, sizeof(*o));
}

void optimizer_grad_range(const adamw_state *o, size_t *off, size_t *n) {
    if (!o->nseg) { *off = 0; *n = 0; return; }
    size_t lo = o->seg[0].off, hi = 0;
    for (int i = 0; i < o->nseg; i++) {
        if (o->seg[i].off < lo) lo = o->seg[i].off;
        if (o->seg[i].off + o->seg[i].n > hi) hi = o->seg[i].off + o->seg[i].n;
    }
    *off = lo; *n = hi - lo;
}

double optimizer_step(adamw_state *o, double lr) {
    gpt2 *m = o->m;
    swq_backend *be = m->be;
    be->zero(be, o->acc, sizeof(double));
    for (int i = 0; i < o->nseg; i++) be->sumsq(be, o->acc, gpt2_grad(m, o->seg[i].off), o->seg[i].n);
    double ss;
    be->download_f64(be, &ss, o->acc, 1);
    double norm = sqrt(ss);
    double gs = (o->clip > 0 && norm > o->clip) ? o->clip / norm : 1.0;
    o->t++;
    size_t mo = 0;
    for (int i = 0; i < o->nseg; i++) {
        opt_segment s = o->seg[i];
        be->adamw(be, swq_at(be, m->params, s.off), gpt2_grad(m, s.off), swq_at(be, o->mom1, mo),
                  swq_at(be, o->mom2, mo), s.n, lr, o->b1, o->b2, o->eps, s.decay ? o->wd : 0.0, o->t, gs);
        mo += s.n;
    }
    return norm;
}

double lr_at(const char *schedule, double lr, int warmup, int steps, double min_frac, int t) {
    if (warmup > 0 && t <= warmup) return lr * t / warmup;
    if (!strcmp(schedule, "constant") || steps <= warmup) return lr;
    double p = (double)(t - warmup) / (double)(steps - warmup);
    if (p > 1) p = 1;
    double min_lr = lr * min_frac;
    if (!strcmp(schedule, "linear")) return lr - (lr - min_lr) * p;
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * p));
}
