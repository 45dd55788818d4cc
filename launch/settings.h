// Run settings: read from a libconfig file, overridden by --set key=value, validated
// against a schema (unknown key, wrong type, out-of-range value -> "FILE:LINE: key: problem").
#ifndef SWQ_SETTINGS_H
#define SWQ_SETTINGS_H
#include <stdint.h>
#include "../model/qconfig.h"

typedef struct {
    // model { ... }
    int n_layer, n_head, n_embd, n_ctx, vocab_size;   // vocab_size 0 = from tokenizer
    char init_from[512];       // "" = random init; else a checkpoint path (or HF dir later)
    // data { ... }
    char task[16];             // "prompt" | "span" | "text"
    char tokenizer[512];       // "byte" or a directory with BPE files
    char train_file[512];      // SQuAD JSON (.zst ok) or "synthetic"
    char eval_file[512];
    char split_file[512];      // optional "title<TAB>train|eval"
    char prompt_template[512];
    int synthetic_articles_train, synthetic_articles_eval;
    int synthetic_facts;       // at most this many facts (and questions) per generated paragraph
    int seq_len;               // training sequence length (<= n_ctx)
    int doc_stride;            // span QA window stride
    int max_answer_tokens;     // prompt completion: target budget; span: max answer length
    // train { ... }
    char mode[16];             // "cdt" | "single"
    char finetune[16];         // "lora" | "full"
    int single_config;         // config index for mode "single"
    int steps, batch_size;
    double lr, beta1, beta2, eps, weight_decay, grad_clip;
    int warmup;
    char schedule[16];         // "cosine" | "linear" | "constant"
    double min_lr_frac;
    double beta;               // distillation weight
    uint64_t seed;
    int log_every, eval_every, ckpt_every, stop_at;   // stop_at 0 = run to `steps`
    int threads;               // 0 = all cores
    // eval { ... }
    int eval_max_questions;    // 0 = all
    int eval_batch_size;
    // run { ... }
    char device[16];           // "cpu" | "cuda"
    char precision[16];        // CUDA compute: "fp32" | "tf32" | "bf16" (CPU is always fp32)
    char out_dir[512];
    // quant { configs = ( ... ) }
    qconfig_set *qs;

    char source[512];          // the config file path (for messages)
    char *text;                // the full resolved config as libconfig text (saved in checkpoints)
} settings;

// Load FILE (or, if path is NULL, parse `text` as the config, labelled `label` in messages),
// apply `sets` ("key=value", libconfig value syntax; bare words are strings), validate.
// Returns 0, or -1 with a one-line message in err.
int settings_load(const char *path, const char *text, const char *label, const char *const *sets,
                  int nsets, settings *out, char *err, size_t errlen);
void settings_free(settings *s);
#endif
