// swq sweep: a grid of jobs over the ranks of an MPI job (dist/sweep.h); swq ckpt-diff:
// compare the parameters of two checkpoints (the data-parallel test uses it).
#include "run.h"
#include "../dist/dist.h"
#include "../dist/sweep.h"
#include "../checkpoints/model_ckpt.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static const char *SWEEP_USAGE =
    "usage: [mpirun -np N] swq sweep -c SWEEP.cfg [--out DIR] [--force] [--slice I/N] [--collate]\n"
    "\n"
    "  -c, --config FILE   sweep file: base run config, fixed sets, axes (a grid) or cells (a list)\n"
    "  --out DIR           sweep directory (default: the file's out_dir, else runs/sweep-<name>);\n"
    "                      holds journal*.jsonl, cells/<id>/, table.md, table.csv, table.json\n"
    "  --force             run a grid larger than max_cells (default 256)\n"
    "  --slice I/N         run only the cells with index % N == I (a job-array task); its journal\n"
    "                      is journal.slice-I-of-N.jsonl\n"
    "  --collate           run nothing: build the tables from every journal in DIR\n"
    "  -h, --help          this help\n"
    "\n"
    "Rank 0 coordinates and collates; finished cells are skipped on a re-launch (any rank count).\n";

static const char *DIFF_USAGE =
    "usage: swq ckpt-diff A.swqc B.swqc [--tol X]\n"
    "  exit 0 if every parameter satisfies |a-b| <= X*(1+|a|) (default X = 1e-5), else 1\n";

int cmd_sweep(int argc, char **argv, swq_dist *d) {
    const char *cfg = NULL, *out = NULL, *slice = NULL;
    int force = 0, collate = 0, root = d->rank == 0;
    char err[4096] = { 0 };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { if (root) fputs(SWEEP_USAGE, stdout); return 0; }
        else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && has) cfg = argv[++i];
        else if (!strcmp(a, "--out") && has) out = argv[++i];
        else if (!strcmp(a, "--slice") && has) slice = argv[++i];
        else if (!strcmp(a, "--force")) force = 1;
        else if (!strcmp(a, "--collate")) collate = 1;
        else {
            if (root) fprintf(stderr, "swq sweep: unknown option or missing value: '%s' (see swq sweep --help)\n", a);
            return 2;
        }
    }
    if (!cfg) { if (root) fprintf(stderr, "swq sweep: -c SWEEP.cfg is required (see swq sweep --help)\n"); return 2; }
    int si = 0, sn = 1;
    if (slice) {
        char tail = 0;
        if (sscanf(slice, "%d/%d%c", &si, &sn, &tail) != 2 || sn < 1 || si < 0 || si >= sn) {
            if (root) fprintf(stderr, "swq sweep: --slice %s: expected I/N with 0 <= I < N\n", slice);
            return 2;
        }
    }
    sweep_def sw;
    int bad = sweep_load(cfg, &sw, err, sizeof(err)) != 0;
    if (dist_fail_any(d, bad, err)) { if (!bad) sweep_free(&sw); return 1; }
    char outbuf[1024];
    if (!out) {
        if (sw.out_dir[0]) out = sw.out_dir;
        else {
            const char *b = strrchr(cfg, '/');
            b = b ? b + 1 : cfg;
            snprintf(outbuf, sizeof(outbuf), "runs/sweep-%.*s", (int)strcspn(b, "."), b);
            out = outbuf;
        }
    }
    extern const char *swq_version_str;
    bad = dist_check_same(d, "sweep definition (sweep file + base config)", sw.canon, swq_version_str, err, sizeof(err)) != 0;
    if (bad) {
        if (root) fprintf(stderr, "swq: %s\n", err);
        sweep_free(&sw);
        return 1;
    }
    // rank 0 checks everything before any work: grid limit, every cell's keys, the journals
    char **rows = calloc((size_t)sw.ncells, sizeof(char *)), **pre = calloc((size_t)sw.ncells, sizeof(char *));
    bad = 0;
    if (root) bad = sweep_validate(&sw, force || collate, pre, err, sizeof(err)) || sweep_journal_load(&sw, out, rows, err, sizeof(err));
    int rc = 1;
    if (dist_fail_any(d, bad, err)) goto done;
    if (collate) {
        rc = 0;
        if (root) {
            int missing = 0;
            for (int i = 0; i < sw.ncells; i++) missing += !rows[i];
            if (sweep_write_tables(&sw, out, rows, err, sizeof(err))) { fprintf(stderr, "swq: %s\n", err); rc = 1; }
            else if (missing) {
                fprintf(stderr, "swq sweep: %d of %d cells have no result yet (table marks them 'not run'); "
                        "re-launch the sweep or its slices to finish\n", missing, sw.ncells);
                rc = 1;
            } else printf("collated %d cells: %s/table.md, %s/table.csv, %s/table.json\n", sw.ncells, out, out, out);
        }
        goto done;
    }
    if (sweep_run(&sw, out, si, sn, d, err, sizeof(err))) {
        fprintf(stderr, "swq: %s%s\n", root ? "" : "worker: ", err);
        for (int i = 0; i < sw.ncells; i++) { free(rows[i]); free(pre[i]); }
        free(rows); free(pre);
        sweep_free(&sw);
        dist_abort(d, 1);   // the queue is gone: end every rank (their cells die with them)
    }
    rc = 0;
done:
    for (int i = 0; i < sw.ncells; i++) { free(rows[i]); free(pre[i]); }
    free(rows); free(pre);
    sweep_free(&sw);
    return rc;
}

int cmd_ckpt_diff(int argc, char **argv) {
    const char *a = NULL, *b = NULL;
    double tol = 1e-5;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { fputs(DIFF_USAGE, stdout); return 0; }
        if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            char *end = NULL;
            tol = strtod(argv[++i], &end);
            if (!end || *end || !(tol >= 0)) { fprintf(stderr, "swq ckpt-diff: --tol %s: expected a number >= 0\n", argv[i]); return 2; }
        } else if (!a) a = argv[i];
        else if (!b) b = argv[i];
        else { fprintf(stderr, "swq ckpt-diff: unexpected '%s' (see swq ckpt-diff --help)\n", argv[i]); return 2; }
    }
    if (!a || !b) { fputs(DIFF_USAGE, stderr); return 2; }
    char err[4096], pa[4200], pb[4200];
    model_ckpt x = { 0 }, y = { 0 };
    if (model_ckpt_resolve(a, pa, sizeof(pa), err, sizeof(err)) || model_ckpt_resolve(b, pb, sizeof(pb), err, sizeof(err)) ||
        model_ckpt_read(pa, &x, err, sizeof(err))) {
        fprintf(stderr, "swq: %s\n", err);
        return 2;
    }
    if (model_ckpt_read(pb, &y, err, sizeof(err))) { fprintf(stderr, "swq: %s\n", err); model_ckpt_free(&x); return 2; }
    int rc = 0;
    if (memcmp(x.shape, y.shape, sizeof(x.shape)) || x.K != y.K || x.n_base != y.n_base || x.n_lora != y.n_lora) {
        printf("%s and %s: different shapes\n", pa, pb);
        rc = 1;
    } else {
        size_t n = x.n_base + x.n_lora, worst = 0, nbad = 0;
        double maxd = 0, maxr = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)x.params[i] - (double)y.params[i]), r = d / (1 + fabs((double)x.params[i]));
            if (!(r <= tol)) nbad++;
            if (r > maxr || isnan(r)) { maxr = r; worst = i; }
            if (d > maxd) maxd = d;
        }
        printf("%zu params (step %d vs %d): max |a-b| = %.3g, max |a-b|/(1+|a|) = %.3g at [%zu] (%.9g vs %.9g); %zu over tol %.3g\n",
               n, x.prog.step, y.prog.step, maxd, maxr, worst, n ? x.params[worst] : 0.0, n ? y.params[worst] : 0.0, nbad, tol);
        if (nbad || x.prog.step != y.prog.step) rc = 1;
    }
    model_ckpt_free(&x);
    model_ckpt_free(&y);
    return rc;
}
