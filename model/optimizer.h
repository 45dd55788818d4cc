// AdamW over the trainable segments of the parameter buffer, with global-norm
// gradient clipping and the learning-rate schedule.
#ifndef SWQ_OPTIMIZER_H
#define SWQ_OPTIMIZER_H
#include "gpt2.h"

typedef struct { size_t off, n; int decay; } opt_segment;

typedef struct {
    gpt2 *m;
    int nseg;
    opt_segment seg[GPT2_NUM_TENSORS + 2];
    size_t n;                 // total trainable elements (moments are packed over the segments)
    void *mom1, *mom2;        // backend [n]
    double *acc;              // backend [1]
    int t;                    // completed optimizer steps
    double b1, b2, eps, wd, clip;
} adamw_state;

// Trainable: full mode -> every base tensor (the QA head only for TASK_QA) + LoRA; LoRA mode ->
// QA head (TASK_QA) + LoRA. LoRA of config `single` only if single >= 0, else all configs.
void optimizer_init(adamw_state *o, gpt2 *m, int single, double b1, double b2, double eps, double wd,
                    double clip);
void optimizer_free(adamw_state *o);
// The contiguous range of the gradient buffer holding every trainable gradient (to all-reduce).
void optimizer_grad_range(const adamw_state *o, size_t *off, size_t *n);
// Clip (if clip > 0) and update. Returns the gradient norm before clipping.
double optimizer_step(adamw_state *o, double lr);
// Learning rate at 1-based step t of `steps`: linear warmup, then cosine/linear/constant
// decay to min_frac*lr.
double lr_at(const char *schedule, double lr, int warmup, int steps, double min_frac, int t);
#endif
