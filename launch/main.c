// swq: one program, subcommands. Every failure is one line on stderr and a non-zero exit.
#include "run.h"
#include "../checkpoints/model_ckpt.h"
#include "../dist/dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWQ_VERSION "0.1.0"
const char *swq_version_str = SWQ_VERSION;
int cmd_sweep(int argc, char **argv, swq_dist *d);   // cmd_sweep.c
int cmd_ckpt_diff(int argc, char **argv);
int cmd_bench(int argc, char **argv);   // cmd_bench.c
int cmd_export(int argc, char **argv);  // cmd_export.c

static const char *USAGE =
    "usage: swq <command> [options]\n"
    "\n"
    "commands:\n"
    "  train   train a switchable-precision model (CDT or single config)\n"
    "  eval    evaluate every precision config of a checkpoint\n"
    "  export  write a checkpoint as a Hugging Face GPT-2 directory (safetensors)\n"
    "  sweep   run a grid of train/eval jobs over the ranks of an MPI job\n"
    "  ckpt-diff  compare the parameters of two checkpoints\n"
    "  bench   time the CDT training step at GPT-2 124M shapes (GPU)\n"
    "  version print the version\n"
    "\n"
    "swq <command> --help lists the command's options.\n";

static const char *TRAIN_USAGE =
    "usage: swq train -c FILE [--set key=value]... [--out DIR] [--resume DIR]\n"
    "\n"
    "  -c, --config FILE   libconfig run file (e.g. configs/quickstart.cfg)\n"
    "  --set key=value     override a setting, e.g. --set train.lr=1e-4 --set quant.configs.[0].bits=8\n"
    "  --out DIR           run directory (default: run.out_dir); holds table.md, table.csv,\n"
    "                      metrics.json, evals.jsonl, train_log.csv, checkpoints/\n"
    "  --resume DIR        continue the run in DIR from its latest checkpoint, bit-exactly;\n"
    "                      -c is optional (the checkpoint holds the run's config)\n"
    "  -h, --help          this help\n";

static const char *EVAL_USAGE =
    "usage: swq eval [-c FILE] --checkpoint PATH [--set key=value]... [--out DIR]\n"
    "\n"
    "  -c, --config FILE   run file giving data and eval settings (default: the checkpoint's own)\n"
    "  --checkpoint PATH   a .swqc checkpoint, or a run directory (its latest checkpoint)\n"
    "  --set key=value     override a setting (e.g. --set eval.max_questions=0)\n"
    "  --out DIR           where table.md, table.csv, metrics.json go (default: run.out_dir)\n"
    "  -h, --help          this help\n";

typedef struct {
    const char *config, *out, *resume, *checkpoint;
    const char *sets[256];
    int nsets;
} cli;

static int parse(int argc, char **argv, cli *c, const char *usage, int allow_resume, int allow_ckpt) {
    memset(c, 0, sizeof(*c));
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(usage, stdout); exit(0); }
        else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && has_val) c->config = argv[++i];
        else if (!strcmp(a, "--set") && has_val) {
            if (c->nsets == 256) { fprintf(stderr, "swq: too many --set options (max 256)\n"); return -1; }
            c->sets[c->nsets++] = argv[++i];
        } else if (!strcmp(a, "--out") && has_val) c->out = argv[++i];
        else if (allow_resume && !strcmp(a, "--resume") && has_val) c->resume = argv[++i];
        else if (allow_ckpt && !strcmp(a, "--checkpoint") && has_val) c->checkpoint = argv[++i];
        else {
            fprintf(stderr, "swq %s: unknown option or missing value: '%s' (see swq %s --help)\n", argv[1], a, argv[1]);
            return -1;
        }
    }
    return 0;
}

static int load_settings(const cli *c, const char *ckpt_path, settings *s, char *err, size_t errlen) {
    if (c->config) return settings_load(c->config, NULL, NULL, c->sets, c->nsets, s, err, errlen);
    if (!ckpt_path) { snprintf(err, errlen, "no config given (-c FILE)"); return -1; }
    char *text = NULL;
    if (model_ckpt_config_text(ckpt_path, &text, err, errlen)) return -1;
    int rc = settings_load(NULL, text, ckpt_path, c->sets, c->nsets, s, err, errlen);
    free(text);
    return rc;
}

// Under mpirun/srun every rank runs this; failures every rank sees alike (config) are reported
// once and all ranks return non-zero; any other failure of one rank aborts the job.
static int cmd_train(int argc, char **argv, swq_dist *d, int *collective) {
    cli c;
    char err[4096] = { 0 };
    if (parse(argc, argv, &c, TRAIN_USAGE, 1, 0)) return 2;
    if (!c.config && !c.resume) { fprintf(stderr, "swq train: -c FILE is required (see swq train --help)\n"); return 2; }
    settings s;
    char ckpt[4200];
    const char *ck = NULL;
    if (c.resume && !c.config) {
        if (model_ckpt_latest(c.resume, ckpt, sizeof(ckpt), err, sizeof(err))) { fprintf(stderr, "swq: %s\n", err); return 1; }
        ck = ckpt;
    }
    *collective = 1;
    if (dist_fail_any(d, load_settings(&c, ck, &s, err, sizeof(err)) != 0, err)) return 1;
    if (dist_check_same(d, "run config", s.text, SWQ_VERSION, err, sizeof(err))) {
        if (d->rank == 0) fprintf(stderr, "swq: %s\n", err);
        settings_free(&s);
        return 1;
    }
    *collective = 0;
    const char *out = c.resume ? c.resume : (c.out ? c.out : s.out_dir);
    if (c.resume && c.out && strcmp(c.out, c.resume)) {
        fprintf(stderr, "swq train: --resume continues in its own run directory; drop --out\n");
        settings_free(&s);
        return 2;
    }
    int rc = run_train(&s, out, c.resume, d->world > 1 ? d : NULL, err, sizeof(err));
    if (rc && d->world > 1) fprintf(stderr, "swq: rank %d: %s\n", d->rank, err);
    else if (rc) fprintf(stderr, "swq: %s\n", err);
    settings_free(&s);
    return rc ? 1 : 0;
}

static int cmd_eval(int argc, char **argv) {
    cli c;
    char err[4096] = { 0 };
    if (parse(argc, argv, &c, EVAL_USAGE, 0, 1)) return 2;
    if (!c.checkpoint) { fprintf(stderr, "swq eval: --checkpoint PATH is required (see swq eval --help)\n"); return 2; }
    char ckpt[4200];
    if (model_ckpt_resolve(c.checkpoint, ckpt, sizeof(ckpt), err, sizeof(err))) { fprintf(stderr, "swq: %s\n", err); return 1; }
    settings s;
    if (load_settings(&c, ckpt, &s, err, sizeof(err))) { fprintf(stderr, "swq: %s\n", err); return 1; }
    int rc = run_eval_checkpoint(&s, ckpt, c.out ? c.out : s.out_dir, err, sizeof(err));
    if (rc) fprintf(stderr, "swq: %s\n", err);
    settings_free(&s);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(USAGE, stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train") || !strcmp(argv[1], "sweep")) {
        swq_dist d;
        char err[4096] = { 0 };
        if (dist_init(&argc, &argv, &d, err, sizeof(err))) { fprintf(stderr, "swq: %s\n", err); return 1; }
        int collective = 1;
        int rc = !strcmp(argv[1], "train") ? cmd_train(argc, argv, &d, &collective) : cmd_sweep(argc, argv, &d);
        if (rc && !collective && d.world > 1) dist_abort(&d, rc);   // never leave ranks waiting in an all-reduce
        dist_finalize(&d);
        return rc;
    }
    if (!strcmp(argv[1], "ckpt-diff")) return cmd_ckpt_diff(argc, argv);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc, argv);
    if (!strcmp(argv[1], "export")) return cmd_export(argc, argv);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc, argv);
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) { printf("swq %s\n", SWQ_VERSION); return 0; }
    fprintf(stderr, "swq: unknown command '%s' (see swq --help)\n", argv[1]);
    return 2;
}
