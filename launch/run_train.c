// swq train: CDT (or single-config) training with progress, periodic evaluation,
// checkpoints and exact resume; data-parallel through swq_dist hooks.
#include "run.h"
#include "../model/optimizer.h"
#include "../model/rng.h"
#include "../checkpoints/model_ckpt.h"
#include "../checkpoints/ckpt_file.h"
#include "../checkpoints/hf_safetensors.h"
#include <sys/stat.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <math.h>
#ifdef SWQ_HAVE_CUDA
#include "../cuda/backend_cuda.h"
#endif

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

swq_backend *run_backend(const settings *s, char *err, size_t errlen) {
    if (!strcmp(s->device, "cpu")) {
        int th = s->threads > 0 ? s->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (getenv("OPENBLAS_NUM_THREADS") && s->threads <= 0) th = atoi(getenv("OPENBLAS_NUM_THREADS"));
        openblas_set_num_threads(th > 0 ? th : 1);
        return swq_backend_cpu(4);
    }
#ifdef SWQ_HAVE_CUDA
    return swq_backend_cuda(0, s->precision, err, errlen);
#else
    snprintf(err, errlen, "%s: run.device = \"cuda\": this swq was built without the CUDA backend (SWQ_CUDA=OFF)", s->source);
    return NULL;
#endif
}

// The data stream: epoch e visits the train examples in a permutation seeded by (seed, e).
typedef struct { int n, epoch; int *perm; uint64_t seed; } data_stream;

static int stream_at(data_stream *ds, uint64_t pos) {
    int e = (int)(pos / ds->n);
    if (e != ds->epoch || !ds->perm) {
        if (!ds->perm) ds->perm = malloc(sizeof(int) * ds->n);
        swq_rng r = { ds->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)e + 1 };
        for (int i = 0; i < ds->n; i++) ds->perm[i] = i;
        for (int i = ds->n - 1; i > 0; i--) {
            int j = (int)swq_rng_below(&r, (uint64_t)i + 1);
            int t = ds->perm[i]; ds->perm[i] = ds->perm[j]; ds->perm[j] = t;
        }
        ds->epoch = e;
    }
    return ds->perm[pos % ds->n];
}

static void fmt_eta(double sec, char *buf, size_t n) {
    if (!isfinite(sec) || sec < 0) { snprintf(buf, n, "?"); return; }
    int s = (int)(sec + 0.5);
    if (s >= 3600) snprintf(buf, n, "%dh%02dm", s / 3600, (s / 60) % 60);
    else snprintf(buf, n, "%dm%02ds", s / 60, s % 60);
}

static int evaluate_and_report(settings *s, gpt2 *m, cdt_state *cs, const run_data *d, const char *out_dir,
                               const char *title, int step, char *err, size_t errlen) {
    int K = m->qs->K;
    eval_row *rows = calloc(K, sizeof(eval_row));
    double t0 = now_s();
    char pdir[4200];
    snprintf(pdir, sizeof(pdir), "%s/predictions", out_dir);
    if (run_evaluate(s, m, cs, d, rows, pdir, err, errlen)) { free(rows); return -1; }
    run_print_table(stdout, title, rows, K);
    printf("(evaluated %d %s per config in %.1fs)\n\n", rows[0].n_questions, d->text ? "windows" : "questions",
           now_s() - t0);
    // history: one JSON line per evaluation in evals.jsonl
    char path[4200];
    snprintf(path, sizeof(path), "%s/evals.jsonl", out_dir);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "{\"step\": %d, \"title\": \"%s\", \"configs\": [", step, title);
        for (int k = 0; k < K; k++)
            fprintf(f, "%s{\"config\": \"%s\", \"loss\": %.6f, \"em\": %.6f, \"f1\": %.6f, \"size_mb\": %.6f}",
                    k ? ", " : "", rows[k].name, rows[k].loss, rows[k].em, rows[k].f1, rows[k].size_mb);
        fprintf(f, "]}\n");
        fclose(f);
    }
    int rc = run_write_tables(out_dir, title, rows, K, NULL, err, errlen);
    free(rows);
    return rc;
}

int run_train(settings *s, const char *out_dir, const char *resume_dir, swq_dist *dist, char *err, size_t errlen) {
    int rank = dist ? dist->rank : 0, world = dist ? dist->world : 1, root = rank == 0;
    int rc = -1;
    model_ckpt ck = { 0 };
    char ckpath[4200] = { 0 };
    if (resume_dir) {
        if (model_ckpt_latest(resume_dir, ckpath, sizeof(ckpath), err, errlen)) return -1;
        if (model_ckpt_read(ckpath, &ck, err, errlen)) return -1;
    }
    if (s->batch_size < world) {
        snprintf(err, errlen, "%s: train.batch_size = %d is smaller than the number of ranks (%d)", s->source, s->batch_size, world);
        model_ckpt_free(&ck);
        return -1;
    }
    swq_backend *be = NULL;
    run_data d;
    if (!(be = run_backend(s, err, errlen))) { model_ckpt_free(&ck); return -1; }   // before any output
    if (run_data_load(s, out_dir, &d, err, errlen)) goto out_data;
    if (swq_mkdir_p(out_dir, err, errlen)) goto out_data;
    gpt2_shape shape = { s->n_layer, s->n_head, s->n_embd, s->n_ctx, s->vocab_size ? s->vocab_size : d.tok->vocab_size };
    if (shape.vocab_size < d.tok->vocab_size) {
        snprintf(err, errlen, "%s: model.vocab_size = %d is smaller than the tokenizer's %d", s->source, shape.vocab_size, d.tok->vocab_size);
        goto out_data;
    }
    gpt2 m;
    if (gpt2_create(&m, shape, s->qs, be, err, errlen)) goto out_data;
    m.task = d.task;
    m.train_base = !strcmp(s->finetune, "full");
    gpt2_keep_grads(&m, gpt2_trainable_from(&m));   // LoRA mode: none for the frozen base
    gpt2_init_random(&m, s->seed);
    if (s->init_from[0] && !resume_dir) {   // a Hugging Face GPT-2 directory or an swq checkpoint
        struct stat st;
        if (!stat(s->init_from, &st) && S_ISDIR(st.st_mode)) {
            if (hf_load_gpt2(s->init_from, &m, err, errlen)) goto out_model;
        } else {
            model_ckpt base;
            if (model_ckpt_read(s->init_from, &base, err, errlen)) goto out_model;
            int r = model_ckpt_apply(s->init_from, &base, &m, NULL, err, errlen);
            model_ckpt_free(&base);
            if (r) goto out_model;
        }
    }
    int single = !strcmp(s->mode, "single") ? s->single_config : -1;
    adamw_state opt;
    optimizer_init(&opt, &m, single, s->beta1, s->beta2, s->eps, s->weight_decay, s->grad_clip);
    cdt_state cs;
    cdt_init(&cs, &m);
    int start = 0;
    if (resume_dir) {
        if (model_ckpt_apply(ckpath, &ck, &m, &opt, err, errlen)) goto out_opt;
        start = ck.prog.step;
        if (root) printf("resuming from %s at step %d\n", ckpath, start);
    }
    int K = s->qs->K;
    if (root) {
        printf("swq train: %s | task %s | %d configs | mode %s | finetune %s | %d blocks, %d embd, %zu params + %zu LoRA | "
               "%d train / %d eval examples | %d rank%s\n", s->source, s->task, K, s->mode, s->finetune, s->n_layer,
               s->n_embd, m.n_base, m.n_lora, d.n_train, d.n_eval, world, world > 1 ? "s" : "");
        fflush(stdout);
        if (start == 0 && evaluate_and_report(s, &m, &cs, &d, out_dir, "untrained (step 0)", 0, err, errlen)) goto out_opt;
    }
    signal(SIGTERM, on_signal);
    signal(SIGUSR1, on_signal);
    signal(SIGINT, on_signal);
    char logpath[4200];
    snprintf(logpath, sizeof(logpath), "%s/train_log.csv", out_dir);
    FILE *logf = NULL;
    if (root) {
        logf = fopen(logpath, start == 0 ? "w" : "a");
        if (!logf) { snprintf(err, errlen, "%s: cannot write", logpath); goto out_opt; }
        if (start == 0) {
            fprintf(logf, "step,loss,lr,grad_norm,tokens_per_s,allreduce_ms");
            for (int k = 0; k < K; k++) fprintf(logf, ",ce_%s,kl_%s", s->qs->cfg[k].name, s->qs->cfg[k].name);
            fprintf(logf, "\n");
        }
    }
    data_stream ds = { d.n_train, -1, NULL, s->seed };
    int G = s->batch_size, lo = (int)((long)G * rank / world), hi = (int)((long)G * (rank + 1) / world);
    int *idx = malloc(sizeof(int) * G);
    batch_buf bb = { 0 };
    // train.stop_at simulates an interruption; a resumed run past it goes on to the end
    int end = s->stop_at > start && s->stop_at < s->steps ? s->stop_at : s->steps;
    double t_last = now_s(), tok_acc = 0, ema_step = 0;
    int steps_acc = 0;
    size_t goff, gn;
    optimizer_grad_range(&opt, &goff, &gn);
    int step = start;
    for (step = start; step < end; ) {
        uint64_t pos = (uint64_t)step * G;
        for (int i = lo; i < hi; i++) idx[i - lo] = stream_at(&ds, pos + i);
        double count = batch_build(&bb, be, &d, 0, idx, hi - lo), ar_ms = 0;
        double tokens = (double)bb.b.B * bb.b.T;
        double red[2] = { count, tokens };
        if (world > 1 && dist->allreduce_f64(dist, red, 2)) { snprintf(err, errlen, "rank %d: all-reduce failed", rank); goto out_loop; }
        bb.b.weight = 1.0 / red[0];
        cdt_losses L;
        cdt_step_grads(&cs, &bb.b, s->beta, single, &L);
        if (world > 1) {
            // the losses were downloaded, so the backend is idle: time the reduction alone
            double ta = now_s();
            if (dist->allreduce_grads(dist, be, gpt2_grad(&m, goff), gn)) { snprintf(err, errlen, "rank %d: gradient all-reduce failed", rank); goto out_loop; }
            be->synchronize(be);
            ar_ms = 1e3 * (now_s() - ta);
            // losses for the log, and whether any rank was signalled: all ranks stop together
            double lv[130];
            for (int k = 0; k < K; k++) { lv[2 * k] = L.ce[k]; lv[2 * k + 1] = L.kl[k]; }
            lv[2 * K] = L.loss;
            lv[2 * K + 1] = g_stop_signal ? 1 : 0;
            if (dist->allreduce_f64(dist, lv, 2 * K + 2)) { snprintf(err, errlen, "rank %d: all-reduce failed", rank); goto out_loop; }
            for (int k = 0; k < K; k++) { L.ce[k] = lv[2 * k]; L.kl[k] = lv[2 * k + 1]; }
            L.loss = lv[2 * K];
            if (lv[2 * K + 1] > 0 && !g_stop_signal) g_stop_signal = SIGTERM;
        }
        double lr = lr_at(s->schedule, s->lr, s->warmup, s->steps, s->min_lr_frac, step + 1);
        double gnorm = optimizer_step(&opt, lr);
        step++;
        double t = now_s(), dt = t - t_last;
        t_last = t;
        tok_acc += red[1]; steps_acc++;
        ema_step = ema_step == 0 ? dt : 0.9 * ema_step + 0.1 * dt;
        if (!isfinite(L.loss)) {
            snprintf(err, errlen, "step %d: loss is %f (diverged); lower train.lr or check the data", step, L.loss);
            goto out_loop;
        }
        if (root) {
            fprintf(logf, "%d,%.9g,%.9g,%.9g,%.1f,%.3f", step, L.loss, lr, gnorm, red[1] / dt, ar_ms);
            for (int k = 0; k < K; k++) fprintf(logf, ",%.9g,%.9g", L.ce[k], L.kl[k]);
            fprintf(logf, "\n");
            fflush(logf);
            if (s->log_every > 0 && (step % s->log_every == 0 || step == end || step == start + 1)) {
                char eta[32];
                fmt_eta(ema_step * (end - step), eta, sizeof(eta));
                printf("step %5d/%d | loss %8.4f |", step, s->steps, L.loss);
                for (int i = 0; i < K; i++) {
                    int k = s->qs->order[i];
                    if (single >= 0 && k != single) continue;
                    printf(" %s %.3f", s->qs->cfg[k].name, L.ce[k]);
                }
                printf(" | lr %.2e | %.0f tok/s", lr, tok_acc / (steps_acc * ema_step));
                if (world > 1) printf(" | all-reduce %.1f ms", ar_ms);
                printf(" | ETA %s\n", eta);
                fflush(stdout);
                tok_acc = 0; steps_acc = 0;
            }
        }
        int last = step == end;
        if (root && ((s->ckpt_every > 0 && step % s->ckpt_every == 0) || last || g_stop_signal)) {
            train_progress p = { step, (uint64_t)step * G, s->seed };
            char cp[4200];
            if (model_ckpt_save_run(out_dir, s->text, &m, &opt, &p, cp, sizeof(cp), err, errlen)) goto out_loop;
            printf("checkpoint: %s\n", cp);
            fflush(stdout);
        }
        if (g_stop_signal) {
            snprintf(err, errlen, "stopped by signal %d at step %d; continue with: swq train --resume %s", (int)g_stop_signal, step, out_dir);
            goto out_loop;
        }
        if (root && s->eval_every > 0 && step % s->eval_every == 0 && !last) {
            char title[64];
            snprintf(title, sizeof(title), "step %d", step);
            if (evaluate_and_report(s, &m, &cs, &d, out_dir, title, step, err, errlen)) goto out_loop;
        }
    }
    if (root && end == s->steps && step > 0) {
        char title[64];
        snprintf(title, sizeof(title), "trained (step %d)", step);
        if (evaluate_and_report(s, &m, &cs, &d, out_dir, title, step, err, errlen)) goto out_loop;
        printf("results: %s/table.md, %s/table.csv, %s/metrics.json\n", out_dir, out_dir, out_dir);
    }
    rc = 0;
out_loop:
    if (logf) fclose(logf);
    free(idx); free(ds.perm);
    batch_buf_free(&bb);
out_opt:
    cdt_free(&cs);
    optimizer_free(&opt);
out_model:
    gpt2_destroy(&m);
out_data:
    run_data_free(&d);
    model_ckpt_free(&ck);
    swq_backend_destroy(be);
    return rc;
}

int run_eval_checkpoint(settings *s, const char *ckpt, const char *out_dir, char *err, size_t errlen) {
    model_ckpt ck;
    if (model_ckpt_read(ckpt, &ck, err, errlen)) return -1;
    int rc = -1;
    run_data d = { 0 };
    swq_backend *be = run_backend(s, err, errlen);
    if (!be) { model_ckpt_free(&ck); return -1; }
    // the model first, so that a mismatched checkpoint fails before any output is written
    gpt2_shape shape = { s->n_layer, s->n_head, s->n_embd, s->n_ctx, s->vocab_size ? s->vocab_size : ck.shape[4] };
    gpt2 m;
    if (gpt2_create(&m, shape, s->qs, be, err, errlen)) goto out;
    if (model_ckpt_apply(ckpt, &ck, &m, NULL, err, errlen)) goto out_model;
    if (run_data_load(s, out_dir, &d, err, errlen)) goto out_model;
    if (d.tok->vocab_size > shape.vocab_size) {
        snprintf(err, errlen, "%s: model vocabulary (%d) is smaller than the tokenizer's (%d)", ckpt, shape.vocab_size, d.tok->vocab_size);
        goto out_model;
    }
    if (swq_mkdir_p(out_dir, err, errlen)) goto out_model;
    m.task = d.task;
    gpt2_keep_grads(&m, m.n_total);   // evaluation only: no gradients
    cdt_state cs;
    cdt_init(&cs, &m);
    char title[4300];
    snprintf(title, sizeof(title), "eval of %s (step %d)", ckpt, ck.prog.step);
    eval_row *rows = calloc(s->qs->K, sizeof(eval_row));
    char pdir[4200];
    snprintf(pdir, sizeof(pdir), "%s/predictions", out_dir);
    rc = run_evaluate(s, &m, &cs, &d, rows, pdir, err, errlen);
    if (!rc) run_print_table(stdout, title, rows, s->qs->K);
    if (!rc) rc = run_write_tables(out_dir, title, rows, s->qs->K, NULL, err, errlen);
    if (!rc) printf("results: %s/table.md, %s/table.csv, %s/metrics.json\n", out_dir, out_dir, out_dir);
    free(rows);
    cdt_free(&cs);
out_model:
    gpt2_destroy(&m);
out:
    run_data_free(&d);
    model_ckpt_free(&ck);
    swq_backend_destroy(be);
    return rc;
}
