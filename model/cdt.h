// Cascade Distillation Training: one step's gradients over every precision config,
// from most to least precise, L_k = hard_k + beta * sum_{j more precise} KL(p_j || p_k),
// teachers detached (their probabilities summed in tS/tH as the cascade goes down).
#ifndef SWQ_CDT_H
#define SWQ_CDT_H
#include "gpt2.h"

// A batch in backend memory. LM task: P loss rows (indices into B*T) with next-token
// targets. QA task: per sample start/end labels and the number of valid positions.
typedef struct {
    int B, T, P;
    int *tokens;              // [B*T]
    int *rows, *targets;      // [P]          (TASK_LM; rows NULL: every position in order, P = B*T)
    int *start, *end, *len;   // [B]          (TASK_QA)
    double weight;            // 1 / (number of loss terms in the global batch): LM target tokens, QA samples
} swq_batch;

typedef struct {
    gpt2 *m;
    int cap_rows, cap_cols, streams;    // teacher buffers: streams x [rows, cols]
    void *tS, *tH, *pS, *pH;           // committed teachers, pending (current precision level)
    double *acc;                       // [2*K]: ce, kl per config (backend memory)
} cdt_state;

typedef struct {
    double ce[64], kl[64];             // per config index (file order): hard loss, summed KL
    double loss;                       // sum over trained configs of ce + beta*kl
} cdt_losses;

void cdt_init(cdt_state *st, gpt2 *m);
void cdt_free(cdt_state *st);
// Zero the gradients, then run every config of m->qs in precision order (or just config
// `single` if single >= 0, hard loss only), accumulating gradients. Losses per config out.
void cdt_step_grads(cdt_state *st, const swq_batch *b, double beta, int single, cdt_losses *out);
// Forward only: losses (no gradients) of config k on a batch, added to ce/kl sums
// (weights as in the batch). Used by evaluation.
void cdt_eval_loss(cdt_state *st, const swq_batch *b, int k, double *ce_sum);
#endif
