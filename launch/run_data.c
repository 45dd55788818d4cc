// Datasets of a run and batches made of them.
#include "run.h"
#include "../data/tokenizer_bpe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>

int swq_mkdir_p(const char *path, char *err, size_t errlen) {
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p; *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) {
                snprintf(err, errlen, "%s: cannot create directory: %s", buf, strerror(errno));
                return -1;
            }
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

static int load_side(const settings *s, const char *out_dir, int eval, squad_set *set, char *err, size_t errlen) {
    const char *file = eval ? s->eval_file : s->train_file;
    if (!strcmp(file, "synthetic")) {
        char dir[4096], path[4200];
        snprintf(dir, sizeof(dir), "%s/data", out_dir);
        if (swq_mkdir_p(dir, err, errlen)) return -1;
        snprintf(path, sizeof(path), "%s/synthetic_%s.json", dir, eval ? "eval" : "train");
        int n = eval ? s->synthetic_articles_eval : s->synthetic_articles_train;
        if (synthqa_write_facts(path, n, s->seed * 2 + (eval ? 1 : 0) + 1, s->synthetic_facts, err, errlen)) return -1;
        return squad_load(path, NULL, NULL, set, err, errlen);
    }
    const char *split = s->split_file[0] ? s->split_file : NULL;
    if (squad_load(file, split, split ? (eval ? "eval" : "train") : NULL, set, err, errlen)) return -1;
    if (set->n_skipped)
        fprintf(stderr, "swq: %s: skipped %d questions whose answer is not in the context\n", file, set->n_skipped);
    if (set->n == 0) { snprintf(err, errlen, "%s: no questions%s", file, split ? " on this side of the split" : ""); return -1; }
    return 0;
}

// Pretraining: consecutive windows of T tokens (+1 for the last target) over the stream; the
// eval side is data.eval_file, or the last 5% of the windows when it is "holdout".
static int load_text(const settings *s, const char *out_dir, run_data *d, char *err, size_t errlen) {
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/cache", out_dir);
    if (swq_mkdir_p(cache, err, errlen)) return -1;
    d->text = 1;
    d->text_T = s->seq_len ? s->seq_len : s->n_ctx;
    if (textdata_load(s->train_file, d->tok, cache, &d->ttrain, 1, err, errlen)) return -1;
    size_t T = d->text_T, nw = (d->ttrain.n - 1) / T;
    if (!strcmp(s->eval_file, "holdout")) {
        size_t ne = nw / 20 ? nw / 20 : 1;
        if (nw < 2) { snprintf(err, errlen, "%s: %zu tokens are too few for windows of %zu", s->train_file, d->ttrain.n, T); return -1; }
        d->n_train = (int)(nw - ne); d->n_eval = (int)ne; d->eval_first = nw - ne;
    } else {
        if (textdata_load(s->eval_file, d->tok, cache, &d->teval, 1, err, errlen)) return -1;
        d->n_train = (int)nw; d->n_eval = (int)((d->teval.n - 1) / T); d->eval_first = 0;
    }
    if (d->n_train < 1 || d->n_eval < 1) { snprintf(err, errlen, "%s: too little text for windows of %zu tokens", s->train_file, T); return -1; }
    return 0;
}

int run_data_load(const settings *s, const char *out_dir, run_data *d, char *err, size_t errlen) {
    memset(d, 0, sizeof(*d));
    d->task = !strcmp(s->task, "span") ? TASK_QA : TASK_LM;
    if (!strcmp(s->tokenizer, "byte")) d->tok = tokenizer_byte();
    else if (!(d->tok = tokenizer_bpe_load(s->tokenizer, err, errlen))) return -1;
    if (!strcmp(s->task, "text")) return load_text(s, out_dir, d, err, errlen);
    if (load_side(s, out_dir, 0, &d->train_set, err, errlen)) return -1;
    if (load_side(s, out_dir, 1, &d->eval_set, err, errlen)) return -1;
    int T = s->seq_len ? s->seq_len : s->n_ctx;
    if (d->task == TASK_LM) {
        if (prompt_examples_build(&d->train_set, d->tok, s->prompt_template, T, s->max_answer_tokens, &d->ptrain, err, errlen)) return -1;
        if (prompt_examples_build(&d->eval_set, d->tok, s->prompt_template, T, s->max_answer_tokens, &d->peval, err, errlen)) return -1;
        d->n_train = d->ptrain.n; d->n_eval = d->peval.n;
    } else {
        int stride = s->doc_stride < T ? s->doc_stride : T / 2;
        if (span_examples_build(&d->train_set, d->tok, T, stride, &d->strain, err, errlen)) return -1;
        if (span_examples_build(&d->eval_set, d->tok, T, stride, &d->seval, err, errlen)) return -1;
        d->n_train = d->strain.n; d->n_eval = d->seval.n;
    }
    if (d->n_train == 0 || d->n_eval == 0) {
        snprintf(err, errlen, "%s: no usable %s examples (answers longer than data.max_answer_tokens, or contexts too long?)",
                 d->n_train ? s->eval_file : s->train_file, d->n_train ? "eval" : "train");
        return -1;
    }
    return 0;
}

void run_data_free(run_data *d) {
    if (d->tok) tokenizer_free(d->tok);
    squad_free(&d->train_set); squad_free(&d->eval_set);
    prompt_examples_free(&d->ptrain); prompt_examples_free(&d->peval);
    span_examples_free(&d->strain); span_examples_free(&d->seval);
    textdata_free(&d->ttrain); textdata_free(&d->teval);
    memset(d, 0, sizeof(*d));
}

void batch_buf_free(batch_buf *bb) {
    if (bb->be) {
        swq_backend *be = bb->be;
        be->free(be, bb->b.tokens); be->free(be, bb->d_rows); be->free(be, bb->b.targets);
        be->free(be, bb->b.start); be->free(be, bb->b.end); be->free(be, bb->b.len);
    }
    free(bb->h_tokens); free(bb->h_rows); free(bb->h_targets); free(bb->h_start); free(bb->h_end); free(bb->h_len);
    memset(bb, 0, sizeof(*bb));
}

void batch_buf_reserve(batch_buf *bb, swq_backend *be, int BT, int P, int B) {
    if (bb->be && BT <= bb->capBT && P <= bb->capP && B <= bb->capB) return;
    int cBT = BT > bb->capBT ? BT : bb->capBT, cP = P > bb->capP ? P : bb->capP, cB = B > bb->capB ? B : bb->capB;
    batch_buf_free(bb);
    bb->be = be; bb->capBT = cBT; bb->capP = cP < 1 ? 1 : cP; bb->capB = cB;
    bb->h_tokens = malloc(sizeof(int) * cBT);
    bb->h_rows = malloc(sizeof(int) * bb->capP); bb->h_targets = malloc(sizeof(int) * bb->capP);
    bb->h_start = malloc(sizeof(int) * cB); bb->h_end = malloc(sizeof(int) * cB); bb->h_len = malloc(sizeof(int) * cB);
    bb->b.tokens = be->alloc(be, sizeof(int) * cBT, "batch.tokens");
    bb->b.rows = bb->d_rows = be->alloc(be, sizeof(int) * bb->capP, "batch.rows");
    bb->b.targets = be->alloc(be, sizeof(int) * bb->capP, "batch.targets");
    bb->b.start = be->alloc(be, sizeof(int) * cB, "batch.start");
    bb->b.end = be->alloc(be, sizeof(int) * cB, "batch.end");
    bb->b.len = be->alloc(be, sizeof(int) * cB, "batch.len");
}

int batch_build(batch_buf *bb, swq_backend *be, const run_data *d, int eval_side, const int *idx, int n) {
    int T = 1, P = 0;
    if (d->text) {   // every position predicts the next token
        T = d->text_T; P = n * T;
        batch_buf_reserve(bb, be, n * T, P, n);
        const token_stream *ts = eval_side && d->teval.n ? &d->teval : &d->ttrain;
        size_t first = eval_side ? d->eval_first : 0;
        for (int i = 0; i < n; i++) {
            const uint32_t *w = ts->tok + (first + (size_t)idx[i]) * T;
            for (int t = 0; t < T; t++) {
                bb->h_tokens[i * T + t] = (int)w[t];
                bb->h_targets[i * T + t] = (int)w[t + 1];
            }
        }
        bb->b.rows = NULL;   // every position predicts: the head reads the layernorm's rows in place
        be->upload_i32(be, bb->b.targets, bb->h_targets, P);
    } else if (d->task == TASK_LM) {
        const prompt_examples *px = eval_side ? &d->peval : &d->ptrain;
        for (int i = 0; i < n; i++) {
            const prompt_example *e = &px->ex[idx[i]];
            if (e->n > T) T = e->n;
            P += e->n - e->prompt_len;
        }
        batch_buf_reserve(bb, be, n * T, P, n);
        int p = 0;
        for (int i = 0; i < n; i++) {
            const prompt_example *e = &px->ex[idx[i]];
            for (int t = 0; t < T; t++) bb->h_tokens[i * T + t] = t < e->n ? e->ids[t] : d->tok->eot;
            for (int t = e->prompt_len - 1; t < e->n - 1; t++) {
                bb->h_rows[p] = i * T + t;
                bb->h_targets[p] = e->ids[t + 1];
                p++;
            }
        }
        bb->b.rows = bb->d_rows;
        be->upload_i32(be, bb->b.rows, bb->h_rows, P);
        be->upload_i32(be, bb->b.targets, bb->h_targets, P);
    } else {
        const span_examples *sx = eval_side ? &d->seval : &d->strain;
        for (int i = 0; i < n; i++) if (sx->ex[idx[i]].n > T) T = sx->ex[idx[i]].n;
        batch_buf_reserve(bb, be, n * T, 1, n);
        for (int i = 0; i < n; i++) {
            const span_example *e = &sx->ex[idx[i]];
            for (int t = 0; t < T; t++) bb->h_tokens[i * T + t] = t < e->n ? e->ids[t] : d->tok->eot;
            bb->h_start[i] = e->start; bb->h_end[i] = e->end; bb->h_len[i] = e->n;
        }
        be->upload_i32(be, bb->b.start, bb->h_start, n);
        be->upload_i32(be, bb->b.end, bb->h_end, n);
        be->upload_i32(be, bb->b.len, bb->h_len, n);
        P = n;
    }
    be->upload_i32(be, bb->b.tokens, bb->h_tokens, (size_t)n * T);
    bb->b.B = n; bb->b.T = T; bb->b.P = d->task == TASK_LM ? P : 0;
    return P;
}
