// GPT-2 with switchable-precision linears and a LoRA bank (one adapter per config).
// One contiguous parameter buffer: [base params | LoRA bank], and a gradient buffer
// of the same layout, so a data-parallel step all-reduces one range of one buffer.
// The QA head sits last among the base params so that, in LoRA mode, the trainable
// parameters (QA head + LoRA bank) are one contiguous suffix.
#ifndef SWQ_GPT2_H
#define SWQ_GPT2_H
#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "qconfig.h"

typedef struct { int n_layer, n_head, n_embd, n_ctx, vocab_size; } gpt2_shape;

enum { P_WTE, P_WPE, P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_ATTPROJW, P_ATTPROJB, P_LN2W, P_LN2B,
       P_FCW, P_FCB, P_FCPROJW, P_FCPROJB, P_LNFW, P_LNFB, P_QAW, P_QAB, GPT2_NUM_TENSORS };

enum { TASK_LM = 0, TASK_QA = 1 };   // LM head on selected rows / start-end span head

typedef struct {
    void *w, *b;      // base weight [OC, IC] and bias [OC] (b NULL for the LM head)
    void *dw, *db;
    int IC, OC;
} gpt2_linear;

typedef struct {
    int B, T, P, rmax;
    void *encoded, *lnf, *lnf_mean, *lnf_rstd;
    void **ln1, **ln1_mean, **ln1_rstd, **qkv, **atty, **att, **res2;
    void **ln2, **ln2_mean, **ln2_rstd, **fch, **fch_gelu, **res3;
    void *proj;       // [N,C] a projection's output before its residual add (no backward reads it),
                      // only where the backend has no lora_linear_res_fwd
    void **xq;        // [n_linear] quantized inputs kept for backward: only the attention output's (the
                      // attention backward reads it unquantized); other inputs are quantized in place
                      // (gpt2.c xq_of), NULL where activations are 32-bit
    void *emb;        // [N,C] the tokens' rows of wte, quantized after the lookup (NULL while unused)
    int *pos_rows;    // [N] 0..N-1 (backend ints), the rows of emb in order, for encoder_fwd
    void **u;         // [n_linear] LoRA intermediate x @ A^T, [rows, rmax]
    void *hx, *logits;          // LM head input rows [P,C] and logits [P,V] (gradient in place)
    void *qa_out, *qa_start, *qa_end;   // [N,2], [B,T], [B,T] (gradients in place in start/end)
    // backward scratch
    void *dres, *dln, *dbig, *dbig2, *dqkv, *datt_scratch, *du, *dhx, *dqa;
    // quantization scratch (wq, bq, wte_q made on first use: quantized on the fly, not cached)
    void *wq, *bq, *wte_q, *aq, *bq_lora;
    const int *tokens, *rows;   // of the last forward (backend memory)
} gpt2_acts;

typedef struct {
    gpt2_shape s;
    swq_backend *be;
    qconfig_set *qs;            // owned by the caller
    int active;                 // index of the active precision config
    int train_base;             // 1: full fine-tune (base weights get gradients)
    int task;                   // TASK_LM or TASK_QA

    size_t tensor_off[GPT2_NUM_TENSORS], tensor_n[GPT2_NUM_TENSORS];
    size_t n_base, n_lora, n_total;
    size_t *lora_off;           // [K * n_linear]: offset of A (B follows A) inside the LoRA bank
    void *params;               // [n_total]
    void *grads;                // [n_total - grad_lo]: element off's gradient at off - grad_lo (gpt2_grad)
    size_t grad_lo;             // 0 unless gpt2_keep_grads
    gpt2_linear *lin;           // [n_linear]
    gpt2_acts a;                // capacity: a.B, a.T, a.P
    int B, T, P;                // shape of the last forward
    int qcache;                 // gpt2_qcache_enable: reuse each config's quantized base weights
    void **qc_w, **qc_b;        // [K * n_linear] cached quantized weight / bias (NULL until made)
    void **qc_s;                // [K * n_linear] the weight's row scales where qc_w holds codes (qc_get), else NULL
} gpt2;

// Sets up offsets and allocates params/grads on be (params zeroed: call gpt2_init_random or load).
int gpt2_create(gpt2 *m, gpt2_shape s, qconfig_set *qs, swq_backend *be, char *err, size_t errlen);
void gpt2_destroy(gpt2 *m);
// Keeps gradients for elements from.. only (n_total: none), reallocated and zeroed. What LoRA mode
// trains is a suffix (gpt2_trainable_from: [QA head |] LoRA bank), so the frozen base needs no
// gradient buffer (0.5 GB at 124M). Set train_base and task first.
void gpt2_keep_grads(gpt2 *m, size_t from);
size_t gpt2_trainable_from(const gpt2 *m);   // 0 when train_base
void *gpt2_grad(const gpt2 *m, size_t off);  // the gradient of element off (>= grad_lo)
// GPT-2 init (N(0,0.02), residual projections scaled by 1/sqrt(2L), LN = 1/0); LoRA A ~ N(0,1/IC), B = 0.
void gpt2_init_random(gpt2 *m, uint64_t seed);
// Re-initialize only the LoRA bank (A random, B zero).
void gpt2_init_lora(gpt2 *m, uint64_t seed);
size_t gpt2_linear_params(const gpt2 *m, int l);   // weights of linear l (for qconfig ordering, size)
void gpt2_linear_params_all(const gpt2_shape *s, size_t *out);   // [4L+1]

// Forward on tokens [B,T] (backend int buffer). TASK_LM: logits for the P rows listed in
// rows (indices into B*T) -> a.logits [P,V]; rows NULL: every position in order (P = B*T), the
// head reading the final layernorm's output itself instead of a gathered copy. TASK_QA:
// a.qa_start/a.qa_end [B,T].
void gpt2_forward(gpt2 *m, const int *tokens, int B, int T, const int *rows, int P);
// Activation buffers for batches up to B x T with P head rows (gpt2_forward does this too).
void gpt2_reserve(gpt2 *m, int B, int T, int P);
// The host-side record of a forward on these inputs (what gpt2_backward reads), for callers
// that had the backend replay a recorded forward instead of calling gpt2_forward.
void gpt2_note_forward(gpt2 *m, const int *tokens, int B, int T, const int *rows, int P);
// Backward from the gradient left in a.logits (LM) or a.qa_start/a.qa_end (QA);
// accumulates into m->grads (base weights only if train_base; LoRA of the active config).
void gpt2_backward(gpt2 *m);

// LoRA mode (train_base == 0) freezes the base, so each config's quantized weights and biases
// can be made once (on first use) and reused: O(1) precision switching, at the cost of one
// quantized copy per config. Off by default. Results are identical to quantizing on the fly.
// Call gpt2_invalidate_qcache after changing base params (a load) while it is on.
void gpt2_qcache_enable(gpt2 *m, int on);
void gpt2_invalidate_qcache(gpt2 *m);

// Model size in bits of config k (see README "Model size"): quantized weights and
// biases at their bits plus one fp32 scale per quantized row, full-precision parts at 32,
// the config's LoRA adapter at its bits; the QA head counts for TASK_QA only.
double gpt2_size_bits(const gpt2 *m, int k);
#endif
