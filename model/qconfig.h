// Precision configs: for each of the 4*n_layer+1 linears (per block: qkv, attention
// projection, MLP in, MLP out; then the LM head) the bits of its weights, input
// activations, bias and LoRA weights (32 = not quantized), plus the LoRA rank/alpha
// of that config's adapter. Selecting a config is setting an index (gpt2.active).
#ifndef SWQ_QCONFIG_H
#define SWQ_QCONFIG_H
#include <stddef.h>

enum { LIN_QKV = 0, LIN_ATTN_PROJ = 1, LIN_MLP_IN = 2, LIN_MLP_OUT = 3, LIN_PER_BLOCK = 4 };
enum { COMP_ATTN = 0, COMP_MLP = 1, COMP_HEAD = 2 };

typedef struct {
    unsigned char w, a, b, lora;   // bits: weights, input activations, bias, LoRA A/B; 2..32
} lin_bits;

typedef struct {
    char name[64];
    lin_bits *lin;       // [n_linear]
    int lora_rank;       // >= 0; 0 = no adapter
    double lora_alpha;   // scale = alpha / rank (0 without an adapter)
} qconfig;

typedef struct {
    int n_layer, n_linear;   // n_linear = 4*n_layer + 1
    int K;                   // number of configs
    qconfig *cfg;            // [K], in file order
    int *order;              // [K] config indices from most to least precise (stable)
} qconfig_set;

// "h.<i>.attn_qkv", "h.<i>.attn_proj", "h.<i>.mlp_in", "h.<i>.mlp_out" (i 0-based), "lm_head"
void qconfig_linear_name(int n_layer, int l, char *buf, size_t n);
int qconfig_linear_index(int n_layer, const char *name);   // -1 if unknown
int qconfig_component(int n_layer, int l);                 // COMP_*
int qconfig_component_index(const char *name);             // "attn","mlp","head" -> COMP_*, else -1

qconfig_set *qconfig_set_new(int n_layer, int K);          // all bits 32, rank 8, alpha 16
void qconfig_set_free(qconfig_set *qs);
// Fill `order` by descending precision score (parameter-weighted weight bits, then
// activation bits); ties keep file order. `linear_params[l]` = weights of linear l.
void qconfig_set_order(qconfig_set *qs, const size_t *linear_params);
double qconfig_score(const qconfig_set *qs, int k, const size_t *linear_params);
#endif
