// swq checkpoints of a switchable model: run config, shape, base parameters, LoRA bank,
// optimizer moments, training progress (step, data position, RNG), in the container of
// ckpt_file.h. Files are named <run>/checkpoints/step_NNNNNNNN.swqc; "latest" names the newest.
#ifndef SWQ_MODEL_CKPT_H
#define SWQ_MODEL_CKPT_H
#include <stdint.h>
#include "../model/gpt2.h"
#include "../model/optimizer.h"

typedef struct {
    int step;               // optimizer steps done
    uint64_t data_pos;      // examples consumed from the data stream
    uint64_t rng;           // training RNG state
} train_progress;

typedef struct {
    char *config_text;      // the run's resolved config
    int shape[5];           // n_layer, n_head, n_embd, n_ctx, vocab_size
    int K;
    int *ranks;             // [K] LoRA ranks
    size_t n_base, n_lora;
    float *params;          // [n_base + n_lora]
    int has_opt, opt_t;
    size_t opt_n;
    float *mom1, *mom2;     // [opt_n]
    train_progress prog;
} model_ckpt;

int model_ckpt_save(const char *path, const char *config_text, const gpt2 *m, const adamw_state *o,
                    const train_progress *p, char *err, size_t errlen);
int model_ckpt_read(const char *path, model_ckpt *c, char *err, size_t errlen);
// Copy params (and optimizer state if o != NULL) into a model built from the same shape;
// a mismatch is an error naming the path and both shapes.
int model_ckpt_apply(const char *path, const model_ckpt *c, gpt2 *m, adamw_state *o, char *err, size_t errlen);
void model_ckpt_free(model_ckpt *c);
// Path of the newest checkpoint of a run directory (reads <dir>/checkpoints/latest), or -1.
int model_ckpt_latest(const char *run_dir, char *path, size_t n, char *err, size_t errlen);
// A checkpoint path from a file path or a run directory (its latest checkpoint).
int model_ckpt_resolve(const char *path_or_dir, char *path, size_t n, char *err, size_t errlen);
// Just the run config stored in a checkpoint (malloc'd text).
int model_ckpt_config_text(const char *path, char **text, char *err, size_t errlen);
// Write <dir>/checkpoints/step_N.swqc and update "latest" (both atomically).
int model_ckpt_save_run(const char *run_dir, const char *config_text, const gpt2 *m, const adamw_state *o,
                        const train_progress *p, char *path_out, size_t n, char *err, size_t errlen);
#endif
