// Running jobs: data preparation, training (CDT or single), evaluation, result tables.
// The swq command (main.c) and the distributed layers call these.
#ifndef SWQ_RUN_H
#define SWQ_RUN_H
#include <stdint.h>
#include "settings.h"
#include "../model/gpt2.h"
#include "../model/cdt.h"
#include "../data/tokenizer.h"
#include "../data/examples.h"
#include "../data/textdata.h"

// How a data-parallel job reduces across ranks. NULL hooks = one process.
typedef struct swq_dist {
    int rank, world;
    void *ctx;
    // sum n reals of a backend buffer across ranks, in place
    int (*allreduce_grads)(struct swq_dist *d, swq_backend *be, void *buf, size_t n);
    // sum n host doubles across ranks, in place
    int (*allreduce_f64)(struct swq_dist *d, double *x, int n);
} swq_dist;

typedef struct {
    int task;                  // TASK_LM / TASK_QA
    tokenizer *tok;
    squad_set train_set, eval_set;
    prompt_examples ptrain, peval;
    span_examples strain, seval;
    int text;                  // pretraining on text: windows of text_T tokens
    token_stream ttrain, teval;
    size_t eval_first;         // first eval window (held-out tail of ttrain when teval is empty)
    int text_T;
    int n_train, n_eval;       // examples (windows for span QA and text)
} run_data;

// Load (or, for "synthetic", generate into <out_dir>/data/) the datasets of s.
int run_data_load(const settings *s, const char *out_dir, run_data *d, char *err, size_t errlen);
void run_data_free(run_data *d);

// Host staging + backend buffers for batches.
typedef struct {
    swq_batch b;         // b.rows: d_rows, or NULL where every position is a loss row in order
    int *d_rows;
    int capBT, capP, capB;
    int *h_tokens, *h_rows, *h_targets, *h_start, *h_end, *h_len;
    swq_backend *be;
} batch_buf;
void batch_buf_free(batch_buf *bb);
void batch_buf_reserve(batch_buf *bb, swq_backend *be, int BT, int P, int B);   // grow capacity
// Build a batch of the examples idx[0..n) (train or eval side); returns the number of loss
// terms (LM: target tokens, QA: samples). The weight is set by the caller.
int batch_build(batch_buf *bb, swq_backend *be, const run_data *d, int eval_side, const int *idx, int n);

typedef struct {
    char name[64];
    double loss, em, f1, size_mb, avg_w_bits;
    int n_questions;
} eval_row;

// Evaluate every config of m on the eval side of d. rows[K]. If pred_dir is set, the
// predictions of config k go to <pred_dir>/<name>.json as {question id: answer text}.
int run_evaluate(const settings *s, gpt2 *m, cdt_state *cs, const run_data *d, eval_row *rows,
                 const char *pred_dir, char *err, size_t errlen);
// Markdown table to stdout (with a title) and table.md/table.csv/metrics.json in dir.
int run_write_tables(const char *dir, const char *title, const eval_row *rows, int K, const char *json_extra,
                     char *err, size_t errlen);
void run_print_table(FILE *f, const char *title, const eval_row *rows, int K);

swq_backend *run_backend(const settings *s, char *err, size_t errlen);
int run_train(settings *s, const char *out_dir, const char *resume_dir, swq_dist *dist, char *err, size_t errlen);
int run_eval_checkpoint(settings *s, const char *ckpt, const char *out_dir, char *err, size_t errlen);
int swq_mkdir_p(const char *path, char *err, size_t errlen);
#endif
