// Hugging Face GPT-2 checkpoints: a safetensors reader/writer (8-byte little-endian
// header length, JSON header, raw little-endian tensors) and the mapping between a
// transformers GPT-2 directory (config.json + model.safetensors, GPT2LMHeadModel or
// GPT2ForQuestionAnswering) and swq's parameter buffer.
// HF Conv1D weights are stored [in, out]; ours are [out, in] (transposed on the way).
#ifndef SWQ_HF_SAFETENSORS_H
#define SWQ_HF_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "../model/gpt2.h"

// ---- safetensors ----
enum { ST_MAX_DIMS = 8 };

typedef struct {
    char *name;
    char dtype[16];           // "F32", "F16", "BF16", "F64", "I64", ...
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t begin, end;        // byte range inside the data section
} st_tensor;

typedef struct {
    char *path;
    unsigned char *buf;       // the whole file
    size_t size, data_start;  // data section = buf + data_start
    int n;
    st_tensor *t;
    int n_meta;
    char **meta_key, **meta_val;   // __metadata__ (string -> string)
} st_file;

// Reads and validates the whole file: header length, JSON, dtypes, shapes against
// byte sizes, offsets in range and not overlapping. Errors name the file (and tensor).
int st_open(const char *path, st_file *f, char *err, size_t errlen);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key);   // NULL if absent
size_t st_numel(const st_tensor *t);
// Tensor `name` converted to float (F32, F16, BF16, F64). If shape != NULL the tensor must
// have exactly that shape (ndim dims). Missing tensor, wrong shape, integer dtype: error.
int st_read_f32(const st_file *f, const char *name, const int64_t *shape, int ndim, float *out,
                char *err, size_t errlen);

typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} st_out;

// Writes F32 tensors (in the order given) and optional metadata pairs, atomically (temp + rename).
int st_write(const char *path, const st_out *t, int n, const char *const *meta_kv, int n_meta,
             char *err, size_t errlen);

// ---- GPT-2 directories ----
// Shape from <dir>/config.json (n_layer, n_head, n_embd, n_positions -> n_ctx, vocab_size);
// has_qa = 1 when architectures names GPT2ForQuestionAnswering.
int hf_read_config(const char *dir, gpt2_shape *s, int *has_qa, char *err, size_t errlen);
// Loads <dir>/model.safetensors (or a sharded model.safetensors.index.json) into the base
// parameters of m (created with the config's shape). Names with or without "transformer.";
// attn.bias / attn.masked_bias buffers ignored; lm_head.weight must equal wte (else it is
// ignored with a note on stderr); qa_outputs.* go to the QA head, which is left as it is
// when the file has none. The LoRA bank is not touched.
int hf_load_gpt2(const char *dir, gpt2 *m, char *err, size_t errlen);
// The base parameters in swq layout ([m->n_base] host floats) from one HF-named safetensors
// file (e.g. gradients saved with HF names); tensors absent from the file are left as they
// are in out; *found (optional) gets a per-tensor flag [GPT2_NUM_TENSORS].
int hf_read_params(const char *path, const gpt2 *m, float *out, int *found, char *err, size_t errlen);
// Exports m to <dir> (created if needed) as config.json + model.safetensors, each written
// atomically. m->task picks GPT2LMHeadModel or GPT2ForQuestionAnswering. mode:
//  "fp32"       base weights (config_k unused)
//  "merge-lora" W + (alpha/r) B A with the LoRA of config config_k
//  "fake-quant" weights/biases of config config_k quantized-dequantized at its bits, plus
//               its LoRA (at its LoRA bits) merged; the tied wte at the LM head's bits.
// A non-zero LM-head LoRA unties the head: lm_head.weight is written and the config says
// tie_word_embeddings = false. Quantized activations cannot be expressed (note on stderr).
int hf_save_gpt2(const char *dir, const gpt2 *m, int config_k, const char *mode, char *err, size_t errlen);
#endif
