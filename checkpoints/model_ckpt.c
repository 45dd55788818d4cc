#include "model_ckpt.h"
#include "ckpt_file.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>

enum { TAG_CONFIG = 1, TAG_SHAPE = 2, TAG_PARAMS = 3, TAG_LORA = 4, TAG_OPT_M = 5, TAG_OPT_V = 6,
       TAG_PROGRESS = 7, TAG_OPT_T = 8 };

int model_ckpt_save(const char *path, const char *config_text, const gpt2 *m, const adamw_state *o,
                    const train_progress *p, char *err, size_t errlen) {
    swq_backend *be = m->be;
    int K = m->qs->K;
    size_t nshape = 7 + K;
    int64_t *shape = calloc(nshape, sizeof(int64_t));
    shape[0] = m->s.n_layer; shape[1] = m->s.n_head; shape[2] = m->s.n_embd; shape[3] = m->s.n_ctx;
    shape[4] = m->s.vocab_size; shape[5] = K; shape[6] = (int64_t)m->n_lora;
    for (int k = 0; k < K; k++) shape[7 + k] = m->qs->cfg[k].lora_rank;
    float *params = malloc(sizeof(float) * (m->n_total ? m->n_total : 1));
    be->download(be, params, m->params, m->n_total);
    float *m1 = NULL, *m2 = NULL;
    int64_t opt[2] = { 0, 0 };
    if (o) {
        m1 = malloc(sizeof(float) * (o->n ? o->n : 1)); m2 = malloc(sizeof(float) * (o->n ? o->n : 1));
        be->download(be, m1, o->mom1, o->n); be->download(be, m2, o->mom2, o->n);
        opt[0] = o->t; opt[1] = (int64_t)o->n;
    }
    uint64_t prog[3] = { (uint64_t)p->step, p->data_pos, p->rng };
    ckpt_section s[] = {
        { TAG_CONFIG, config_text, strlen(config_text) },
        { TAG_SHAPE, shape, nshape * sizeof(int64_t) },
        { TAG_PARAMS, params, m->n_base * sizeof(float) },
        { TAG_LORA, params + m->n_base, m->n_lora * sizeof(float) },
        { TAG_OPT_T, opt, sizeof(opt) },
        { TAG_OPT_M, m1, o ? o->n * sizeof(float) : 0 },
        { TAG_OPT_V, m2, o ? o->n * sizeof(float) : 0 },
        { TAG_PROGRESS, prog, sizeof(prog) },
    };
    int rc = ckpt_file_write(path, s, sizeof(s) / sizeof(s[0]), 3, err, errlen);
    free(shape); free(params); free(m1); free(m2);
    return rc;
}

static const void *need(const ckpt_file *f, const char *path, uint32_t tag, const char *name, size_t *bytes,
                        char *err, size_t errlen) {
    const void *d = ckpt_file_get(f, tag, bytes);
    if (!d) snprintf(err, errlen, "%s: checkpoint has no '%s' section", path, name);
    return d;
}

int model_ckpt_read(const char *path, model_ckpt *c, char *err, size_t errlen) {
    memset(c, 0, sizeof(*c));
    ckpt_file f;
    if (ckpt_file_read(path, &f, err, errlen)) return -1;
    size_t nb;
    const void *d;
    int rc = -1;
    if (!(d = need(&f, path, TAG_CONFIG, "config", &nb, err, errlen))) goto out;
    c->config_text = malloc(nb + 1); memcpy(c->config_text, d, nb); c->config_text[nb] = 0;
    if (!(d = need(&f, path, TAG_SHAPE, "shape", &nb, err, errlen))) goto out;
    const int64_t *sh = d;
    if (nb < 7 * sizeof(int64_t) || sh[5] < 1 || sh[5] > 64 || nb != (size_t)(7 + sh[5]) * sizeof(int64_t)) {
        snprintf(err, errlen, "%s: malformed 'shape' section", path); goto out;
    }
    for (int i = 0; i < 5; i++) c->shape[i] = (int)sh[i];
    c->K = (int)sh[5];
    c->ranks = malloc(sizeof(int) * c->K);
    for (int k = 0; k < c->K; k++) c->ranks[k] = (int)sh[7 + k];
    size_t nbase, nlora;
    const void *pb = need(&f, path, TAG_PARAMS, "params", &nbase, err, errlen);
    if (!pb) goto out;
    const void *pl = need(&f, path, TAG_LORA, "lora", &nlora, err, errlen);
    if (!pl) goto out;
    c->n_base = nbase / sizeof(float); c->n_lora = nlora / sizeof(float);
    if ((int64_t)c->n_lora != sh[6]) { snprintf(err, errlen, "%s: malformed 'lora' section", path); goto out; }
    c->params = malloc(sizeof(float) * (c->n_base + c->n_lora + 1));
    memcpy(c->params, pb, nbase); memcpy(c->params + c->n_base, pl, nlora);
    const int64_t *ot = need(&f, path, TAG_OPT_T, "optimizer", &nb, err, errlen);
    if (!ot) goto out;
    if (nb != 2 * sizeof(int64_t)) { snprintf(err, errlen, "%s: malformed 'optimizer' section", path); goto out; }
    c->opt_t = (int)ot[0]; c->opt_n = (size_t)ot[1]; c->has_opt = ot[0] > 0 || ot[1] > 0;
    size_t n1, n2;
    const void *m1 = need(&f, path, TAG_OPT_M, "optimizer m", &n1, err, errlen);
    if (!m1) goto out;
    const void *m2 = need(&f, path, TAG_OPT_V, "optimizer v", &n2, err, errlen);
    if (!m2) goto out;
    if (n1 != c->opt_n * sizeof(float) || n2 != n1) { snprintf(err, errlen, "%s: malformed optimizer state", path); goto out; }
    c->mom1 = malloc(n1 + 4); c->mom2 = malloc(n2 + 4);
    memcpy(c->mom1, m1, n1); memcpy(c->mom2, m2, n2);
    const uint64_t *pr = need(&f, path, TAG_PROGRESS, "progress", &nb, err, errlen);
    if (!pr) goto out;
    if (nb != 3 * sizeof(uint64_t)) { snprintf(err, errlen, "%s: malformed 'progress' section", path); goto out; }
    c->prog.step = (int)pr[0]; c->prog.data_pos = pr[1]; c->prog.rng = pr[2];
    rc = 0;
out:
    ckpt_file_free(&f);
    if (rc) model_ckpt_free(c);
    return rc;
}

int model_ckpt_apply(const char *path, const model_ckpt *c, gpt2 *m, adamw_state *o, char *err, size_t errlen) {
    int want[5] = { m->s.n_layer, m->s.n_head, m->s.n_embd, m->s.n_ctx, m->s.vocab_size };
    if (memcmp(want, c->shape, sizeof(want))) {
        snprintf(err, errlen, "%s: checkpoint is for a model of n_layer=%d n_head=%d n_embd=%d n_ctx=%d vocab_size=%d, "
                 "the config asks for n_layer=%d n_head=%d n_embd=%d n_ctx=%d vocab_size=%d", path, c->shape[0],
                 c->shape[1], c->shape[2], c->shape[3], c->shape[4], want[0], want[1], want[2], want[3], want[4]);
        return -1;
    }
    if (c->n_base != m->n_base) { snprintf(err, errlen, "%s: parameter count %zu does not match the model's %zu", path, c->n_base, m->n_base); return -1; }
    swq_backend *be = m->be;
    be->upload(be, m->params, c->params, m->n_base);
    int same_bank = c->K == m->qs->K && c->n_lora == m->n_lora;
    for (int k = 0; same_bank && k < c->K; k++) same_bank = c->ranks[k] == m->qs->cfg[k].lora_rank;
    if (same_bank) be->upload(be, swq_at(be, m->params, m->n_base), c->params + c->n_base, m->n_lora);
    else if (o) {
        snprintf(err, errlen, "%s: LoRA bank (%d configs) does not match the config's (%d configs) and cannot be resumed",
                 path, c->K, m->qs->K);
        return -1;
    }
    if (o) {
        if (c->opt_n != o->n) {
            snprintf(err, errlen, "%s: optimizer state has %zu entries, this run trains %zu (changed finetune/mode?)",
                     path, c->opt_n, o->n);
            return -1;
        }
        be->upload(be, o->mom1, c->mom1, o->n); be->upload(be, o->mom2, c->mom2, o->n);
        o->t = c->opt_t;
    }
    return 0;
}

void model_ckpt_free(model_ckpt *c) {
    free(c->config_text); free(c->ranks); free(c->params); free(c->mom1); free(c->mom2);
    memset(c, 0, sizeof(*c));
}

int model_ckpt_latest(const char *run_dir, char *path, size_t n, char *err, size_t errlen) {
    char lp[4096];
    snprintf(lp, sizeof(lp), "%s/checkpoints/latest", run_dir);
    FILE *f = fopen(lp, "r");
    if (!f) { snprintf(err, errlen, "%s: no checkpoint to resume from (%s)", run_dir, strerror(errno)); return -1; }
    char name[1024] = { 0 };
    if (!fgets(name, sizeof(name), f)) { fclose(f); snprintf(err, errlen, "%s: empty", lp); return -1; }
    fclose(f);
    name[strcspn(name, "\r\n")] = 0;
    if (!name[0] || strchr(name, '/')) { snprintf(err, errlen, "%s: malformed", lp); return -1; }
    snprintf(path, n, "%s/checkpoints/%s", run_dir, name);
    return 0;
}

int model_ckpt_save_run(const char *run_dir, const char *config_text, const gpt2 *m, const adamw_state *o,
                        const train_progress *p, char *path_out, size_t n, char *err, size_t errlen) {
    char dir[4096], name[64], path[4200], lp[4200];
    snprintf(dir, sizeof(dir), "%s/checkpoints", run_dir);
    if (mkdir(dir, 0755) && errno != EEXIST) { snprintf(err, errlen, "%s: cannot create: %s", dir, strerror(errno)); return -1; }
    snprintf(name, sizeof(name), "step_%08d.swqc", p->step);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (model_ckpt_save(path, config_text, m, o, p, err, errlen)) return -1;
    char line[80];
    int len = snprintf(line, sizeof(line), "%s\n", name);
    snprintf(lp, sizeof(lp), "%s/latest", dir);
    if (swq_write_atomic(lp, line, (size_t)len, err, errlen)) return -1;
    if (path_out) snprintf(path_out, n, "%s", path);
    return 0;
}

int model_ckpt_resolve(const char *path_or_dir, char *path, size_t n, char *err, size_t errlen) {
    struct stat st;
    if (stat(path_or_dir, &st)) { snprintf(err, errlen, "%s: %s", path_or_dir, strerror(errno)); return -1; }
    if (S_ISDIR(st.st_mode)) return model_ckpt_latest(path_or_dir, path, n, err, errlen);
    snprintf(path, n, "%s", path_or_dir);
    return 0;
}

int model_ckpt_config_text(const char *path, char **text, char *err, size_t errlen) {
    ckpt_file f;
    if (ckpt_file_read(path, &f, err, errlen)) return -1;
    size_t nb;
    const void *d = need(&f, path, TAG_CONFIG, "config", &nb, err, errlen);
    if (d) { *text = malloc(nb + 1); memcpy(*text, d, nb); (*text)[nb] = 0; }
    ckpt_file_free(&f);
    return d ? 0 : -1;
}
