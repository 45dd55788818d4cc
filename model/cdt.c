#include "cdt.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

// Teacher sums tS/tH, and the pending ones pS/pH only when `pending` (a precision level of
// several configs; at GPT-2's vocabulary pS alone is 4 bytes per logit).
static void ensure_teachers(cdt_state *st, int streams, int rows, int cols, int pending) {
    swq_backend *be = st->m->be;
    int fits = st->tS && streams <= st->streams && rows <= st->cap_rows && cols <= st->cap_cols;
    if (fits && (!pending || st->pS)) return;
    if (!fits) {
        be->free(be, st->tS); be->free(be, st->tH); be->free(be, st->pS); be->free(be, st->pH);
        st->pS = st->pH = NULL;
        st->streams = streams; st->cap_rows = rows; st->cap_cols = cols;
        st->tS = be->alloc(be, (size_t)streams * rows * cols * be->real_size, "cdt.teacher_probs");
        st->tH = be->alloc(be, (size_t)streams * rows * be->real_size, "cdt.teacher_negentropy");
    }
    if (pending) {
        size_t n = (size_t)st->streams * st->cap_rows * st->cap_cols, nh = (size_t)st->streams * st->cap_rows;
        st->pS = be->alloc(be, n * be->real_size, "cdt.pending_teacher_probs");
        st->pH = be->alloc(be, nh * be->real_size, "cdt.pending_teacher_negentropy");
    }
}

// Whether the precision level of the i-th config in order ends with it (the next config, if
// any, is less precise): configs of equal precision do not teach each other.
static int level_ends_at(const qconfig_set *qs, int i, const size_t *lp) {
    return i + 1 < qs->K && qconfig_score(qs, qs->order[i + 1], lp) < qconfig_score(qs, qs->order[i], lp);
}

// Whether any config has teachers (a precision level ends before the last config: plain
// training's single config has none, so no teacher sums are made, zeroed or read), and in
// *shared whether a level holds more than one config: the rows of such a level gather in
// pS/pH until it ends (see step_ops).
static int teacher_levels(const gpt2 *m, int *shared) {
    const qconfig_set *qs = m->qs;
    size_t *lp = malloc(sizeof(size_t) * qs->n_linear);
    if (!lp) {
        fprintf(stderr, "cdt: out of host memory\n");
        exit(1);
    }
    gpt2_linear_params_all(&m->s, lp);
    int taught = 0;
    *shared = 0;
    for (int i = 0; i + 1 < qs->K; i++) {
        int ends = level_ends_at(qs, i, lp);
        taught |= ends;
        *shared |= !ends;
    }
    free(lp);
    return taught;
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

// The head's loss rows: LM one stream of P rows over the vocabulary; span QA two streams
// (start, end) of B rows over the T positions. streams may be NULL.
static void loss_shape(const gpt2 *m, const swq_batch *b, int *streams, int *rows, int *cols) {
    int lm = m->task == TASK_LM;
    if (streams) *streams = lm ? 1 : 2;
    *rows = lm ? b->P : b->B;
    *cols = lm ? m->s.vocab_size : b->T;
}

// The loss of the active config on the forward just done; gradient left in place if grad.
// commit: 0 keep its rows to itself, 1 add them to the pending teachers (pS/pH), 2 straight to
// the teachers (tS/tH).
static void head_loss(cdt_state *st, const swq_batch *b, int n_teachers, double beta, int commit,
                      double *acc, int grad) {
    gpt2 *m = st->m;
    swq_backend *be = m->be;
    int R, V;
    loss_shape(m, b, NULL, &R, &V);
    const void *tS = n_teachers ? st->tS : NULL, *tH = n_teachers ? st->tH : NULL;
    void *nS = commit == 2 ? st->tS : commit ? st->pS : NULL, *nH = commit == 2 ? st->tH : commit ? st->pH : NULL;
    if (m->task == TASK_LM) {
        // the logits' gradient goes only to the head's backward (grad 2)
        be->xent_kl(be, m->a.logits, b->targets, NULL, tS, tH, n_teachers, beta, nS, nH, acc, b->weight, 1.0,
                    grad ? 2 : 0, R, V);
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

// FNV-1a over bytes.
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}

// Everything the step's op sequence depends on besides buffer contents: a backend may replay
// a recording of the sequence for a step with the same key.
static uint64_t step_key(const cdt_state *st, const swq_batch *b, double beta, int single) {
    const gpt2 *m = st->m;
    const qconfig_set *qs = m->qs;
    struct {
        const void *p[12];
        int i[12];
        double d[2];
    } k;
    memset(&k, 0, sizeof(k));
    const void *p[12] = { b->tokens, b->rows, b->targets, b->start, b->end, b->len, m->params, m->grads,
                          st->tS, st->pS, st->acc, m->a.logits };
    memcpy(k.p, p, sizeof(p));
    int i[12] = { b->B, b->T, b->P, single, m->task, m->train_base, m->qcache, qs->K, qs->n_linear,
                  m->a.B, m->a.T, m->a.P };
    memcpy(k.i, i, sizeof(i));
    k.d[0] = beta;
    k.d[1] = b->weight;
    uint64_t h = fnv(1469598103934665603ULL, &k, sizeof(k));
    h = fnv(h, qs->order, sizeof(int) * qs->K);
    for (int c = 0; c < qs->K; c++) {
        h = fnv(h, qs->cfg[c].lin, sizeof(lin_bits) * qs->n_linear);
        h = fnv(h, &qs->cfg[c].lora_rank, sizeof(int));
        h = fnv(h, &qs->cfg[c].lora_alpha, sizeof(double));
    }
    return h;
}

// The step's ops from zeroed gradients to the last config's backward; taught: whether any config
// has teachers (teacher_levels).
static void step_ops(cdt_state *st, const swq_batch *b, double beta, int single, int taught) {
    gpt2 *m = st->m;
    swq_backend *be = m->be;
    qconfig_set *qs = m->qs;
    int K = qs->K;
    int streams, R, V;
    loss_shape(m, b, &streams, &R, &V);
    be->zero(be, m->grads, (m->n_total - m->grad_lo) * be->real_size);
    be->zero(be, st->acc, sizeof(double) * 2 * K);
    if (single >= 0) {
        m->active = single;
        gpt2_forward(m, b->tokens, b->B, b->T, b->rows, b->P);
        head_loss(st, b, 0, 0.0, 0, st->acc + 2 * single, 1);
        gpt2_backward(m);
    } else {   // the teacher buffers were sized by cdt_step_grads (where any config has teachers)
        size_t n = (size_t)streams * R * V, nh = (size_t)streams * R;
        if (taught) { be->zero(be, st->tS, n * be->real_size); be->zero(be, st->tH, nh * be->real_size); }
        size_t *lp = malloc(sizeof(size_t) * qs->n_linear);
        gpt2_linear_params_all(&m->s, lp);
        int committed = 0, pending = 0, pending_clean = 0;
        for (int i = 0; i < K; i++) {
            int k = qs->order[i];
            m->active = k;
            gpt2_forward(m, b->tokens, b->B, b->T, b->rows, b->P);
            int last = i == K - 1;
            // configs of equal precision do not teach each other: a precision level's rows join
            // the teachers when the level ends. A level of one config adds them straight in (its
            // own teacher terms are read first); a longer one gathers them in pS/pH until it ends.
            int level_ends = level_ends_at(qs, i, lp);
            int direct = level_ends && pending == 0;
            if (taught && !last && !direct && !pending_clean) {
                be->zero(be, st->pS, n * be->real_size); be->zero(be, st->pH, nh * be->real_size);
                pending_clean = 1;
            }
            head_loss(st, b, committed, beta, last || !taught ? 0 : direct ? 2 : 1, st->acc + 2 * k, 1);
            gpt2_backward(m);
            pending++;
            if (level_ends) {
                if (!direct) {
                    be->accumulate(be, st->tS, st->pS, n);
                    be->accumulate(be, st->tH, st->pH, nh);
                    pending_clean = 0;
                }
                committed += pending; pending = 0;
            }
        }
        free(lp);
    }
}

void cdt_step_grads(cdt_state *st, const swq_batch *b, double beta, int single, cdt_losses *out) {
    gpt2 *m = st->m;
    swq_backend *be = m->be;
    int K = m->qs->K;
    memset(out, 0, sizeof(*out));
    // buffers sized first, so a recorded step allocates nothing
    int taught = 0;
    if (single < 0) {
        int streams, R, V, shared;
        loss_shape(m, b, &streams, &R, &V);
        taught = teacher_levels(m, &shared);
        if (taught) ensure_teachers(st, streams, R, V, shared);
    }
    gpt2_reserve(m, b->B, b->T, b->P);
    if (be->graph_begin && be->graph_begin(be, step_key(st, b, beta, single))) {
        // replayed: the host-side state the ops would have left
        gpt2_note_forward(m, b->tokens, b->B, b->T, b->rows, b->P);
        m->active = single >= 0 ? single : m->qs->order[K - 1];
    } else {
        step_ops(st, b, beta, single, taught);
        if (be->graph_end) be->graph_end(be);
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
