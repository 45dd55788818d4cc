// swq export: a checkpoint's model as a Hugging Face GPT-2 directory (config.json +
// model.safetensors) that transformers loads with from_pretrained.
#include "run.h"
#include "../checkpoints/model_ckpt.h"
#include "../checkpoints/hf_safetensors.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *EXPORT_USAGE =
    "usage: swq export --checkpoint PATH --out DIR [--mode fp32|merge-lora|fake-quant] [--config NAME]\n"
    "\n"
    "  --checkpoint PATH   a .swqc checkpoint, or a run directory (its latest checkpoint)\n"
    "  --out DIR           the Hugging Face directory to write\n"
    "  --mode MODE         fp32: base weights; merge-lora: W + (alpha/r)·B·A of the config;\n"
    "                      fake-quant: the config's quantized-dequantized weights with its LoRA\n"
    "                      merged (default fp32)\n"
    "  --config NAME       the precision config (name or index) for merge-lora / fake-quant\n"
    "  -h, --help          this help\n";

int cmd_export(int argc, char **argv) {
    const char *ck = NULL, *out = NULL, *mode = "fp32", *cfg = NULL;
    for (int i = 2; i < argc; i++) {
        int v = i + 1 < argc;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { fputs(EXPORT_USAGE, stdout); return 0; }
        else if (!strcmp(argv[i], "--checkpoint") && v) ck = argv[++i];
        else if (!strcmp(argv[i], "--out") && v) out = argv[++i];
        else if (!strcmp(argv[i], "--mode") && v) mode = argv[++i];
        else if (!strcmp(argv[i], "--config") && v) cfg = argv[++i];
        else { fprintf(stderr, "swq export: unknown option or missing value: '%s' (see swq export --help)\n", argv[i]); return 2; }
    }
    if (!ck || !out) { fprintf(stderr, "swq export: --checkpoint and --out are required (see swq export --help)\n"); return 2; }
    if (strcmp(mode, "fp32") && strcmp(mode, "merge-lora") && strcmp(mode, "fake-quant")) {
        fprintf(stderr, "swq export: --mode must be fp32, merge-lora or fake-quant, not '%s'\n", mode);
        return 2;
    }
    char err[4096] = { 0 }, path[4200];
    char *text = NULL;
    if (model_ckpt_resolve(ck, path, sizeof path, err, sizeof err) || model_ckpt_config_text(path, &text, err, sizeof err)) {
        fprintf(stderr, "swq: %s\n", err);
        return 1;
    }
    settings s;
    int rc = settings_load(NULL, text, path, NULL, 0, &s, err, sizeof err);
    free(text);
    if (rc) { fprintf(stderr, "swq: %s\n", err); return 1; }
    int k = 0;
    if (cfg) {
        k = -1;
        for (int i = 0; i < s.qs->K; i++) if (!strcmp(s.qs->cfg[i].name, cfg)) k = i;
        char *end;
        long idx = strtol(cfg, &end, 10);
        if (k < 0 && !*end && idx >= 0 && idx < s.qs->K) k = (int)idx;
        if (k < 0) { fprintf(stderr, "swq export: --config '%s': no such precision config in %s\n", cfg, path); settings_free(&s); return 1; }
    }
    model_ckpt c;
    if (model_ckpt_read(path, &c, err, sizeof err)) { fprintf(stderr, "swq: %s\n", err); settings_free(&s); return 1; }
    swq_backend *be = swq_backend_cpu(4);
    gpt2_shape shape = { s.n_layer, s.n_head, s.n_embd, s.n_ctx, c.shape[4] };
    gpt2 m;
    rc = 1;
    if (!gpt2_create(&m, shape, s.qs, be, err, sizeof err)) {
        m.task = !strcmp(s.task, "span") ? TASK_QA : TASK_LM;
        gpt2_keep_grads(&m, m.n_total);   // no gradients
        if (!model_ckpt_apply(path, &c, &m, NULL, err, sizeof err) && !hf_save_gpt2(out, &m, k, mode, err, sizeof err)) {
            printf("exported %s (%s%s%s) to %s\n", path, mode, strcmp(mode, "fp32") ? ", config " : "",
                   strcmp(mode, "fp32") ? s.qs->cfg[k].name : "", out);
            rc = 0;
        }
        gpt2_destroy(&m);
    }
    if (rc) fprintf(stderr, "swq: %s\n", err);
    model_ckpt_free(&c);
    swq_backend_destroy(be);
    settings_free(&s);
    return rc;
}
