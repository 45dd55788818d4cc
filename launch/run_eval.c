// Evaluation of every precision config: answer loss, exact match / F1 (greedy decoding
// for prompt completion, best span over windows for span QA), model size.
#include "run.h"
#include "../checkpoints/ckpt_file.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <math.h>

static char *strip(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

// Greedy decoding of the eval questions idx[0..n) under the active config; writes the
// predicted answer texts (malloc'd) into pred[i].
static void greedy_decode(const settings *s, gpt2 *m, const run_data *d, const int *idx, int n, batch_buf *bb,
                          char **pred) {
    swq_backend *be = m->be;
    const prompt_examples *px = &d->peval;
    int maxgen = s->max_answer_tokens, nctx = m->s.n_ctx;
    int **seq = malloc(sizeof(int *) * n), *len = malloc(sizeof(int) * n), *done = calloc(n, sizeof(int));
    int *plen = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        const prompt_example *e = &px->ex[idx[i]];
        seq[i] = malloc(sizeof(int) * (e->prompt_len + maxgen + 1));
        memcpy(seq[i], e->ids, sizeof(int) * e->prompt_len);
        len[i] = plen[i] = e->prompt_len;
    }
    int *act = malloc(sizeof(int) * n), *next = malloc(sizeof(int) * n);
    for (int g = 0; g < maxgen; g++) {
        int na = 0, T = 1;
        for (int i = 0; i < n; i++)
            if (!done[i] && len[i] < nctx) { act[na++] = i; if (len[i] > T) T = len[i]; }
        if (!na) break;
        batch_buf_reserve(bb, be, na * T, na, na);
        for (int a = 0; a < na; a++) {
            int i = act[a];
            for (int t = 0; t < T; t++) bb->h_tokens[a * T + t] = t < len[i] ? seq[i][t] : d->tok->eot;
            bb->h_rows[a] = a * T + len[i] - 1;
        }
        be->upload_i32(be, bb->b.tokens, bb->h_tokens, (size_t)na * T);
        be->upload_i32(be, bb->d_rows, bb->h_rows, na);
        gpt2_forward(m, bb->b.tokens, na, T, bb->d_rows, na);
        be->argmax_rows(be, next, m->a.logits, na, m->s.vocab_size);
        for (int a = 0; a < na; a++) {
            int i = act[a];
            if (next[a] == d->tok->eot) done[i] = 1;
            else seq[i][len[i]++] = next[a];
        }
    }
    for (int i = 0; i < n; i++) {
        byte_vec out = { 0 };
        byte_vec_append(&out, "", 0);
        for (int t = plen[i]; t < len[i]; t++) d->tok->decode(d->tok, seq[i][t], &out);
        char *st = strip(out.v);
        pred[i] = strdup(st);
        byte_vec_free(&out);
        free(seq[i]);
    }
    free(seq); free(len); free(done); free(plen); free(act); free(next);
}

static void score(const squad_qa *q, const char *pred, double *em, double *f1) {
    *em += squad_exact_match(pred, q->answers, q->n_answers);
    *f1 += squad_f1(pred, q->answers, q->n_answers);
}

static int eval_prompt(const settings *s, gpt2 *m, cdt_state *cs, const run_data *d, int k, eval_row *row, cJSON *preds) {
    int n = d->peval.n;
    if (s->eval_max_questions > 0 && s->eval_max_questions < n) n = s->eval_max_questions;
    int bs = s->eval_batch_size;
    batch_buf bb = { 0 };
    double ce = 0, count = 0, em = 0, f1 = 0;
    int *idx = malloc(sizeof(int) * bs);
    char **pred = malloc(sizeof(char *) * bs);
    for (int i0 = 0; i0 < n; i0 += bs) {
        int nb = i0 + bs <= n ? bs : n - i0;
        for (int j = 0; j < nb; j++) idx[j] = i0 + j;
        int P = batch_build(&bb, m->be, d, 1, idx, nb);
        bb.b.weight = 1.0;
        cdt_eval_loss(cs, &bb.b, k, &ce);
        count += P;
        m->active = k;
        greedy_decode(s, m, d, idx, nb, &bb, pred);
        for (int j = 0; j < nb; j++) {
            const squad_qa *qa = &d->eval_set.qa[d->peval.ex[idx[j]].qa];
            score(qa, pred[j], &em, &f1);
            cJSON_AddStringToObject(preds, qa->id, pred[j]);
            free(pred[j]);
        }
    }
    row->loss = count ? ce / count : NAN;
    row->em = n ? em / n : NAN;
    row->f1 = n ? f1 / n : NAN;
    row->n_questions = n;
    free(idx); free(pred);
    batch_buf_free(&bb);
    return 0;
}

static int eval_span(const settings *s, gpt2 *m, cdt_state *cs, const run_data *d, int k, eval_row *row, cJSON *preds) {
    const span_examples *sx = &d->seval;
    int nq = d->eval_set.n;
    if (s->eval_max_questions > 0 && s->eval_max_questions < nq) nq = s->eval_max_questions;
    double *best = malloc(sizeof(double) * nq);
    int *bw = malloc(sizeof(int) * nq), *bs_ = malloc(sizeof(int) * nq), *be_ = malloc(sizeof(int) * nq);
    for (int q = 0; q < nq; q++) { best[q] = -INFINITY; bw[q] = -1; }
    int bsz = s->eval_batch_size, maxlen = s->max_answer_tokens;
    batch_buf bb = { 0 };
    int *idx = malloc(sizeof(int) * bsz);
    double ce = 0, count = 0;
    float *st = NULL, *en = NULL;
    int nwin = 0;
    for (int i = 0; i < sx->n; i++) if (sx->ex[i].qa < nq) nwin = i + 1;
    for (int i0 = 0; i0 < nwin; i0 += bsz) {
        int nb = i0 + bsz <= nwin ? bsz : nwin - i0;
        for (int j = 0; j < nb; j++) idx[j] = i0 + j;
        batch_build(&bb, m->be, d, 1, idx, nb);
        bb.b.weight = 1.0;
        cdt_eval_loss(cs, &bb.b, k, &ce);
        count += nb;
        int T = bb.b.T;
        st = realloc(st, sizeof(float) * nb * T); en = realloc(en, sizeof(float) * nb * T);
        m->be->download(m->be, st, m->a.qa_start, (size_t)nb * T);
        m->be->download(m->be, en, m->a.qa_end, (size_t)nb * T);
        for (int j = 0; j < nb; j++) {
            const span_example *e = &sx->ex[idx[j]];
            int q = e->qa;
            if (q >= nq) continue;
            for (int a = e->ctx_first; a < e->n; a++)
                for (int b = a; b < e->n && b - a + 1 <= maxlen; b++) {
                    double sc = (double)st[j * T + a] + en[j * T + b];
                    if (sc > best[q]) { best[q] = sc; bw[q] = idx[j]; bs_[q] = a; be_[q] = b; }
                }
        }
    }
    double em = 0, f1 = 0;
    for (int q = 0; q < nq; q++) {
        const squad_qa *qa = &d->eval_set.qa[q];
        char *pred = strdup("");
        if (bw[q] >= 0) {
            const span_example *e = &sx->ex[bw[q]];
            int b0 = e->tok_begin[bs_[q]], b1 = e->tok_end[be_[q]];
            if (b0 >= 0 && b1 >= b0) { free(pred); pred = strndup(qa->context + b0, b1 - b0); }
        }
        score(qa, strip(pred), &em, &f1);
        cJSON_AddStringToObject(preds, qa->id, strip(pred));
        free(pred);
    }
    row->loss = count ? ce / count : NAN;
    row->em = nq ? em / nq : NAN;
    row->f1 = nq ? f1 / nq : NAN;
    row->n_questions = nq;
    free(best); free(bw); free(bs_); free(be_); free(idx); free(st); free(en);
    batch_buf_free(&bb);
    return 0;
}

// Pretraining: mean next-token loss over the eval windows (EM/F1 do not apply).
static void eval_text(const settings *s, gpt2 *m, cdt_state *cs, const run_data *d, int k, eval_row *row) {
    int n = d->n_eval, bs = s->eval_batch_size;
    if (s->eval_max_questions > 0 && s->eval_max_questions < n) n = s->eval_max_questions;
    batch_buf bb = { 0 };
    int *idx = malloc(sizeof(int) * bs);
    double ce = 0, count = 0;
    for (int i0 = 0; i0 < n; i0 += bs) {
        int nb = i0 + bs <= n ? bs : n - i0;
        for (int j = 0; j < nb; j++) idx[j] = i0 + j;
        count += batch_build(&bb, m->be, d, 1, idx, nb);
        bb.b.weight = 1.0;
        cdt_eval_loss(cs, &bb.b, k, &ce);
    }
    row->loss = ce / count;
    row->em = row->f1 = NAN;
    row->n_questions = n;
    free(idx);
    batch_buf_free(&bb);
}

int run_evaluate(const settings *s, gpt2 *m, cdt_state *cs, const run_data *d, eval_row *rows,
                 const char *pred_dir, char *err, size_t errlen) {
    int rc = 0;
    if (pred_dir && swq_mkdir_p(pred_dir, err, errlen)) return -1;
    int K = m->qs->K, NL = m->qs->n_linear;
    size_t *lp = malloc(sizeof(size_t) * NL);
    gpt2_linear_params_all(&m->s, lp);
    for (int k = 0; k < K; k++) {
        eval_row *r = &rows[k];
        memset(r, 0, sizeof(*r));
        snprintf(r->name, sizeof(r->name), "%s", m->qs->cfg[k].name);
        double wb = 0, np = 0;
        for (int l = 0; l < NL; l++) { wb += (double)m->qs->cfg[k].lin[l].w * lp[l]; np += lp[l]; }
        r->avg_w_bits = wb / np;
        r->size_mb = gpt2_size_bits(m, k) / 8.0 / 1e6;
        if (d->text) { eval_text(s, m, cs, d, k, r); continue; }
        cJSON *preds = cJSON_CreateObject();
        if (m->task == TASK_LM) eval_prompt(s, m, cs, d, k, r, preds);
        else eval_span(s, m, cs, d, k, r, preds);
        if (pred_dir && !rc) {   // {question id: predicted text}, the official evaluation script's input
            char path[4400];
            snprintf(path, sizeof(path), "%s/%s.json", pred_dir, r->name);
            char *js = cJSON_Print(preds);
            rc = swq_write_atomic(path, js, strlen(js), err, errlen);
            free(js);
        }
        cJSON_Delete(preds);
    }
    free(lp);
    return rc;
}
