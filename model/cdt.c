#include "cdt.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ensure_teachers(cdt_state *st, int streams, int rows, int cols) {
    if (st->tS && streams <= st->streams && rows <= st->cap_rows && cols <= st->cap_cols) return;
    swq_backend *be = st->m->be;
    be->free(be, st->tS); be->free(be, st->tH); be->free(be, st->pS); be->free(be, st->pH);
    st->streams = streams; st->cap_rows = rows; st->cap_cols = cols;
    size_t n = (size_t)streams * rows * cols, nh = (size_t)streams * rows;
    st->tS = be->alloc(be, n * be->real_size, "cdt.teacher_probs");
    st->pS = be->alloc(be, n * be->real_size, "cdt.pending_teacher_probs");
    st->tH = be->alloc(be, nh * be->real_size, "cdt.teacher_negentropy");
    st->pH = be->alloc(be, nh * be->real_size, "cdt.pending_teacher_negentropy");
}

void cdt_init(cdt_state *st, gpt2 *m) {
    memset(st, 0, sizeof(*st));
    st->m = m;
    st->acc = m->be->alloc(m->be, sizeof(double) * 2 * m->qs->K, "cdt.loss_accumulators");
}

void cdt_free(cdt_state *st) {
    swq_backend *be = st->m->be;
    be->free(be, st->tS); be->free(be, st->tH); be->free(be, st->pS); be->free(be, st->pH);
    be->free(be, st->acc);
    memset(st, 0, sizeof(*st));
}

// The loss of the active config on the forward just done; gradient left in place if grad.
static void head_loss(cdt_state *st, const swq_batch *b, int n_teachers, double beta, int commit,
                      double *acc, int grad) {
    gpt2 *m = st->m;
    swq_backend *be = m->be;
    int R, V;
    if (m->task == TASK_LM) { R = b->P; V = m->s.vocab_size; } else { R = b->B; V = b->T; }
    const void *tS = n_teachers ? st->tS : NULL, *tH = n_teachers ? st->tH : NULL;
    void *nS = commit ? st->pS : NULL, *nH = commit ? st->pH : NULL;
    if (m->task == TASK_LM) {
        be->xent_kl(be, m->a.logits, b->targets, NULL, tS, tH, n_teachers, beta, nS, nH, acc, b->weight, 1.0,
                    grad, R, V);
        return;
    }
    // span QA: start and end distributions are two streams, hard loss = (CE_s + CE_e)/2
    size_t off = (size_t)R * V, offh = R;
    void *logit[2] = { m->a.qa_start, m->a.qa_end };
    const int *lab[2] = { b->start, b->end };
    for (int s = 0; s < 2; s++)
        be->xent_kl(be, logit[s], lab[s], b->len,
                    tS ? swq_at(be, (void *)tS, s * off) : NULL, tH ? swq_at(be, (void *)tH, s * offh) : NULL,
                    n_teachers, beta, nS ? swq_at(be, nS, s * off) : NULL, nH ? swq_at(be, nH, s * offh) : NULL,
                    acc, 0.5 * b->weight, 1.0, grad, R, V);
}

void cdt_step_grads(cdt_state *st, const swq_batch *b, double beta, int single, cdt_losses *out) {
    gpt2 *m = st->m;
    swq_backend *be = m->be;
    qconfig_set *qs = m->qs;
    int K = qs->K;
    int streams = m->task == TASK_LM ? 1 : 2;
    int R = m->task == TASK_LM ? b->P : b->B, V = m->task == TASK_LM ? m->s.vocab_size : b->T;
    be->zero(be, m->grads, m->n_total * be->real_size);
    be->zero(be, st->acc, sizeof(double) * 2 * K);
    memset(out, 0, sizeof(*out));
    if (single >= 0) {
        m->active = single;
        gpt2_forward(m, b->tokens, b->B, b->T, b->rows, b->P);
        head_loss(st, b, 0, 0.0, 0, st->acc + 2 * single, 1);
        gpt2_backward(m);
    } else {
        ensure_teachers(st, streams, R, V);
        size_t n = (size_t)streams * R * V, nh = (size_t)streams * R;
        be->zero(be, st->tS, n * be->real_size); be->zero(be, st->tH, nh * be->real_size);
        be->zero(be, st->pS, n * be->real_size); be->zero(be, st->pH, nh * be->real_size);
        size_t *lp = malloc(sizeof(size_t) * qs->n_linear);
        gpt2_linear_params_all(&m->s, lp);
        int committed = 0, pending = 0;
        for (int i = 0; i < K; i++) {
            int k = qs->order[i];
            m->active = k;
            gpt2_forward(m, b->tokens, b->B, b->T, b->rows, b->P);
            int last = i == K - 1;
            head_loss(st, b, committed, beta, !last, st->acc + 2 * k, 1);
            gpt2_backward(m);
            pending++;
            // configs of equal precision do not teach each other: commit a level when it ends
            if (!last && qconfig_score(qs, qs->order[i + 1], lp) < qconfig_score(qs, k, lp)) {
                be->accumulate(be, st->tS, st->pS, n);
                be->accumulate(be, st->tH, st->pH, nh);
                be->zero(be, st->pS, n * be->real_size); be->zero(be, st->pH, nh * be->real_size);
                committed += pending; pending = 0;
            }
        }
        free(lp);
    }
    double acc[128];
    be->download_f64(be, acc, st->acc, 2 * K);
    for (int k = 0; k < K && k < 64; k++) {
        out->ce[k] = acc[2 * k]; out->kl[k] = acc[2 * k + 1];
        if (single < 0 || k == single) out->loss += acc[2 * k] + beta * acc[2 * k + 1];
    }
}

void cdt_eval_loss(cdt_state *st, const swq_batch *b, int k, double *ce_sum) {
    gpt2 *m = st->m;
    swq_backend *be = m->be;
    m->active = k;
    gpt2_forward(m, b->tokens, b->B, b->T, b->rows, b->P);
    be->zero(be, st->acc, sizeof(double) * 2);
    head_loss(st, b, 0, 0.0, 0, st->acc, 0);
    double acc[2];
    be->download_f64(be, acc, st->acc, 2);
    *ce_sum += acc[0];
}
