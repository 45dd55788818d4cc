// Parity with transformers on the committed random-init fixture (tests/fixtures/hf_small,
// made by tools/hf_parity.py): logits, LM answer loss and QA span loss to 1e-5 relative,
// gradients of every parameter to 1e-4 (max-abs error over max-abs reference, per tensor),
// in the float and the double CPU backends; HF export round trips (fp32, merge-lora,
// fake-quant, sharded); broken safetensors/config files give errors naming file and tensor.
//
//   test_hf_parity [DIR]                the CI test on tests/fixtures/hf_small (or DIR)
//   test_hf_parity --parity DIR [--float-only]   parity only, on a fixture made by hf_parity.py
//   test_hf_parity --export SRC OUT     export SRC/lm and SRC/qa in every mode to OUT/<name>
//                                       with swq's logits (swq_ref.safetensors) for
//                                       `hf_parity.py check-export OUT`
#include "check.h"
#include "checkpoints/hf_safetensors.h"
#include "model/cdt.h"
#include "model/rng.h"
#include <cjson/cJSON.h>
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char err[1024];
static char tmpdir[256];

// ---------------------------------------------------------------- helpers

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END)) { fclose(f); return NULL; }
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET)) { fclose(f); return NULL; }
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    if (b) b[sz] = 0;
    if (n) *n = (size_t)sz;
    return b;
}

static int spit(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(d, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static void path_join(char *out, size_t n, const char *a, const char *b) {
    int r = snprintf(out, n, "%s/%s", a, b);
    if (r < 0 || (size_t)r >= n) { fprintf(stderr, "path too long: %s/%s\n", a, b); exit(1); }
}

// max |a - b| / max |b| over n elements
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;   // NaN propagates
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return mb > 0 ? md / mb : md;
}

typedef struct {
    int B, T, P;
    int *tokens, *rows, *targets, start[2], end[2];
    double lm_loss, qa_loss;
} fixture;

static int json_ints(const cJSON *root, const char *key, int **out, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key), *e;
    if (!cJSON_IsArray(a)) return -1;
    *n = cJSON_GetArraySize(a);
    *out = malloc(sizeof(int) * (*n ? *n : 1));
    int i = 0;
    cJSON_ArrayForEach(e, a) (*out)[i++] = (int)e->valuedouble;
    return 0;
}

static int fixture_read(const char *dir, fixture *fx) {
    char p[512];
    path_join(p, sizeof p, dir, "ref.json");
    char *t = slurp(p, NULL);
    if (!t) { printf("cannot read %s\n", p); return -1; }
    cJSON *r = cJSON_Parse(t);
    free(t);
    int n, *se = NULL, *en = NULL, nse, nen;
    memset(fx, 0, sizeof(*fx));
    int bad = !r;
    if (!bad) {
        fx->B = cJSON_GetObjectItem(r, "B")->valueint;
        fx->T = cJSON_GetObjectItem(r, "T")->valueint;
        fx->lm_loss = cJSON_GetObjectItem(r, "lm_loss")->valuedouble;
        fx->qa_loss = cJSON_GetObjectItem(r, "qa_loss")->valuedouble;
        bad = json_ints(r, "tokens", &fx->tokens, &n) || n != fx->B * fx->T ||
              json_ints(r, "rows", &fx->rows, &fx->P) || json_ints(r, "targets", &fx->targets, &n) || n != fx->P ||
              json_ints(r, "start", &se, &nse) || json_ints(r, "end", &en, &nen) || nse != 2 || nen != 2 || fx->B != 2;
    }
    if (!bad) for (int b = 0; b < 2; b++) { fx->start[b] = se[b]; fx->end[b] = en[b]; }
    free(se); free(en);
    cJSON_Delete(r);
    if (bad) printf("%s: malformed\n", p);
    return bad ? -1 : 0;
}

static void fixture_free(fixture *fx) { free(fx->tokens); free(fx->rows); free(fx->targets); }

typedef struct {
    swq_backend *be;
    qconfig_set *qs;
    gpt2 m;
    int loaded;
} model_t;

static qconfig_set *configs_32(int L, int K) {
    qconfig_set *qs = qconfig_set_new(L, K);
    for (int k = 0; k < K; k++) { qs->cfg[k].lora_rank = 2 + k; qs->cfg[k].lora_alpha = 4.0 + k; }
    return qs;
}

// config 1 quantized (weights, biases, LoRA; activations full precision so transformers can match)
static qconfig_set *configs_mixed(int L) {
    qconfig_set *qs = configs_32(L, 2);
    for (int l = 0; l < qs->n_linear; l++) {
        int head = l == qs->n_linear - 1;
        qs->cfg[1].lin[l] = (lin_bits){ (unsigned char)(head ? 6 : 4 + l % 3), 32, 8, 6 };
    }
    return qs;
}

static int model_open(model_t *mt, const char *dir, int real_size, qconfig_set *qs, int task) {
    memset(mt, 0, sizeof(*mt));
    gpt2_shape s;
    int has_qa;
    if (hf_read_config(dir, &s, &has_qa, err, sizeof err)) { printf("%s\n", err); return -1; }
    if (!qs) qs = configs_32(s.n_layer, 1);
    size_t lp[4096];
    gpt2_linear_params_all(&s, lp);
    qconfig_set_order(qs, lp);
    mt->qs = qs;
    mt->be = swq_backend_cpu(real_size);
    if (gpt2_create(&mt->m, s, qs, mt->be, err, sizeof err)) { printf("%s\n", err); return -1; }
    gpt2_init_random(&mt->m, 99);   // LoRA A random, B zero: LoRA adds exactly nothing
    if (hf_load_gpt2(dir, &mt->m, err, sizeof err)) { printf("%s\n", err); return -1; }
    mt->m.task = task;
    mt->m.train_base = 1;
    mt->loaded = 1;
    return 0;
}

static void model_close(model_t *mt) {
    if (mt->m.be) gpt2_destroy(&mt->m);
    if (mt->be) swq_backend_destroy(mt->be);
    if (mt->qs) qconfig_set_free(mt->qs);
    memset(mt, 0, sizeof(*mt));
}

typedef struct { int *tokens, *rows_all, *rows, *targets, *start, *end, *len; } dev_inputs;

static void inputs_upload(swq_backend *be, const fixture *fx, dev_inputs *d) {
    int N = fx->B * fx->T;
    int *all = malloc(sizeof(int) * N), lens[2] = { fx->T, fx->T };
    for (int i = 0; i < N; i++) all[i] = i;
#define UP(dst, src, n) do { dst = be->alloc(be, sizeof(int) * (n), #dst); be->upload_i32(be, dst, src, n); } while (0)
    UP(d->tokens, fx->tokens, N);
    UP(d->rows_all, all, N);
    UP(d->rows, fx->rows, fx->P);
    UP(d->targets, fx->targets, fx->P);
    UP(d->start, fx->start, 2);
    UP(d->end, fx->end, 2);
    UP(d->len, lens, 2);
#undef UP
    free(all);
}

static void inputs_free(swq_backend *be, dev_inputs *d) {
    int **p[] = { &d->tokens, &d->rows_all, &d->rows, &d->targets, &d->start, &d->end, &d->len };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) be->free(be, *p[i]);
}

// logits of every position (LM) or start/end logits [2, N] (QA), host floats (malloc'd)
static float *forward_all(gpt2 *m, const fixture *fx, const dev_inputs *d) {
    int N = fx->B * fx->T, V = m->s.vocab_size;
    float *out;
    if (m->task == TASK_LM) {
        gpt2_forward(m, d->tokens, fx->B, fx->T, d->rows_all, N);
        out = malloc(sizeof(float) * N * V);
        m->be->download(m->be, out, m->a.logits, (size_t)N * V);
    } else {
        gpt2_forward(m, d->tokens, fx->B, fx->T, d->rows_all, 1);
        out = malloc(sizeof(float) * 2 * N);
        m->be->download(m->be, out, m->a.qa_start, N);
        m->be->download(m->be, out + N, m->a.qa_end, N);
    }
    return out;
}

static const char *tname[GPT2_NUM_TENSORS] = { "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb", "qaw", "qab" };

// ---------------------------------------------------------------- parity

static void parity(const char *dir, int real_size, int verbose) {
    fixture fx;
    if (fixture_read(dir, &fx)) { CHECK(0, "fixture %s", dir); return; }
    char sub[512], p[512];
    st_file ref;
    path_join(p, sizeof p, dir, "ref.safetensors");
    if (st_open(p, &ref, err, sizeof err)) { CHECK(0, "%s", err); fixture_free(&fx); return; }
    const char *bn = real_size == 8 ? "double" : "float";
    for (int task = 0; task < 2; task++) {
        model_t mt;
        path_join(sub, sizeof sub, dir, task == TASK_LM ? "lm" : "qa");
        if (model_open(&mt, sub, real_size, NULL, task)) { CHECK(0, "load %s", sub); model_close(&mt); continue; }
        gpt2 *m = &mt.m;
        swq_backend *be = mt.be;
        int N = fx.B * fx.T, V = m->s.vocab_size;
        dev_inputs d;
        inputs_upload(be, &fx, &d);
        // logits
        float *got = forward_all(m, &fx, &d);
        if (task == TASK_LM) {
            float *want = malloc(sizeof(float) * N * V);
            int64_t sh[2] = { N, V };
            CHECK(!st_read_f32(&ref, "logits", sh, 2, want, err, sizeof err), "%s", err);
            double e = rel_err(got, want, (size_t)N * V);
            CHECK(e <= 1e-5, "%s %s: LM logits rel err %.3e > 1e-5", dir, bn, e);
            if (verbose) printf("%s [%s] LM logits: max rel err %.3e\n", dir, bn, e);
            free(want);
        } else {
            float *want = malloc(sizeof(float) * 2 * N);
            int64_t sh[2] = { fx.B, fx.T };
            CHECK(!st_read_f32(&ref, "qa_start", sh, 2, want, err, sizeof err), "%s", err);
            CHECK(!st_read_f32(&ref, "qa_end", sh, 2, want + N, err, sizeof err), "%s", err);
            double e = rel_err(got, want, 2 * (size_t)N);
            CHECK(e <= 1e-5, "%s %s: QA start/end logits rel err %.3e > 1e-5", dir, bn, e);
            if (verbose) printf("%s [%s] QA start/end logits: max rel err %.3e\n", dir, bn, e);
            free(want);
        }
        free(got);
        // loss and gradients through the CDT step with one config
        swq_batch b = { .B = fx.B, .T = fx.T, .P = task == TASK_LM ? fx.P : 1, .tokens = d.tokens,
                        .rows = d.rows, .targets = d.targets, .start = d.start, .end = d.end, .len = d.len,
                        .weight = task == TASK_LM ? 1.0 / fx.P : 1.0 / fx.B };
        cdt_state st;
        cdt_init(&st, m);
        cdt_losses L;
        cdt_step_grads(&st, &b, 0.0, 0, &L);
        double want_loss = task == TASK_LM ? fx.lm_loss : fx.qa_loss;
        double le = fabs(L.ce[0] - want_loss) / fabs(want_loss);
        CHECK(le <= 1e-5, "%s %s: %s loss %.10f vs transformers %.10f (rel %.3e)", dir, bn,
              task == TASK_LM ? "LM" : "QA", L.ce[0], want_loss, le);
        if (verbose) printf("%s [%s] %s loss: swq %.10f transformers %.10f rel err %.3e\n", dir, bn,
                            task == TASK_LM ? "LM" : "QA", L.ce[0], want_loss, le);
        float *g = malloc(sizeof(float) * m->n_base), *gw = calloc(m->n_base, sizeof(float));
        be->download(be, g, m->grads, m->n_base);
        int found[GPT2_NUM_TENSORS];
        path_join(p, sizeof p, dir, task == TASK_LM ? "grads_lm.safetensors" : "grads_qa.safetensors");
        CHECK(!hf_read_params(p, m, gw, found, err, sizeof err), "%s", err);
        double worst = 0, gmax = 0;
        int worst_t = 0;
        for (size_t i = 0; i < m->n_base; i++) if (fabs(gw[i]) > gmax) gmax = fabs(gw[i]);
        for (int t = 0; t < GPT2_NUM_TENSORS; t++) {
            int want_found = task == TASK_QA || (t != P_QAW && t != P_QAB);
            CHECK(found[t] == want_found, "%s: gradient of %s %s", p, tname[t], found[t] ? "unexpected" : "missing");
            if (!found[t]) continue;
            // relative to the tensor's largest gradient, floored at 1e-3 of the largest of all: the
            // QA bias and ln_f bias gradients are exactly zero for span QA (softmax over positions)
            const float *a = g + m->tensor_off[t], *r = gw + m->tensor_off[t];
            double md = 0, mr = 1e-3 * gmax;
            for (size_t i = 0; i < m->tensor_n[t]; i++) {
                double dd = fabs((double)a[i] - r[i]);
                if (!(dd <= md)) md = dd;
                if (fabs(r[i]) > mr) mr = fabs(r[i]);
            }
            double e = md / mr;
            CHECK(e <= 1e-4, "%s %s: gradient of %s rel err %.3e > 1e-4", dir, bn, tname[t], e);
            if (e > worst || e != e) { worst = e; worst_t = t; }
        }
        if (verbose) printf("%s [%s] %s gradients: worst tensor %s rel err %.3e\n", dir, bn,
                            task == TASK_LM ? "LM" : "QA", tname[worst_t], worst);
        free(g); free(gw);
        cdt_free(&st);
        inputs_free(be, &d);
        model_close(&mt);
    }
    st_close(&ref);
    fixture_free(&fx);
}

// ---------------------------------------------------------------- export

static float *download_base(gpt2 *m) {
    float *h = malloc(sizeof(float) * m->n_base);
    m->be->download(m->be, h, m->params, m->n_base);
    return h;
}

// random LoRA B for every config and linear (the head's too if head_too)
static void randomize_lora_b(gpt2 *m, int head_too, uint64_t seed) {
    float *h = malloc(sizeof(float) * (m->n_lora ? m->n_lora : 1));
    m->be->download(m->be, h, swq_at(m->be, m->params, m->n_base), m->n_lora);
    swq_rng r = { seed };
    int NL = m->qs->n_linear;
    for (int k = 0; k < m->qs->K; k++)
        for (int l = 0; l < NL; l++) {
            if (l == NL - 1 && !head_too) continue;
            int rk = m->qs->cfg[k].lora_rank;
            size_t off = m->lora_off[(size_t)k * NL + l] + (size_t)rk * m->lin[l].IC;
            for (size_t i = 0; i < (size_t)m->lin[l].OC * rk; i++) h[off + i] = (float)(0.05 * swq_rng_normal(&r));
        }
    m->be->upload(m->be, swq_at(m->be, m->params, m->n_base), h, m->n_lora);
    free(h);
}

static void export_tests(const char *dir) {
    fixture fx;
    if (fixture_read(dir, &fx)) { CHECK(0, "fixture"); return; }
    char lmdir[512], qadir[512], out[512], p[512];
    path_join(lmdir, sizeof lmdir, dir, "lm");
    path_join(qadir, sizeof qadir, dir, "qa");
    // fp32 round trip, both architectures: identical parameters
    for (int task = 0; task < 2; task++) {
        model_t a, b;
        if (model_open(&a, task ? qadir : lmdir, 4, NULL, task)) { CHECK(0, "load"); model_close(&a); continue; }
        snprintf(out, sizeof out, "%s/rt%d", tmpdir, task);
        CHECK(!hf_save_gpt2(out, &a.m, 0, "fp32", err, sizeof err), "%s", err);
        gpt2_shape s;
        int has_qa = -1;
        CHECK(!hf_read_config(out, &s, &has_qa, err, sizeof err) && has_qa == task, "exported config: %s", err);
        if (model_open(&b, out, 4, NULL, task)) { CHECK(0, "reload %s", out); model_close(&a); model_close(&b); continue; }
        float *pa = download_base(&a.m), *pb = download_base(&b.m);
        CHECK(!memcmp(pa, pb, sizeof(float) * a.m.n_base), "fp32 export round trip (task %d) not identical", task);
        // the exported file holds the fixture's tensors bit for bit (HF layout, transposes undone)
        st_file f0, f1;
        char p0[512];
        path_join(p0, sizeof p0, task ? qadir : lmdir, "model.safetensors");
        path_join(p, sizeof p, out, "model.safetensors");
        if (!st_open(p0, &f0, err, sizeof err) && !st_open(p, &f1, err, sizeof err)) {
            const char *names[] = { "transformer.h.1.attn.c_attn.weight", "transformer.h.0.mlp.c_proj.weight",
                                    "transformer.wte.weight", "qa_outputs.weight" };
            for (int i = 0; i < (task ? 4 : 3); i++) {
                const st_tensor *t0 = st_find(&f0, names[i]), *t1 = st_find(&f1, names[i]);
                CHECK(t0 && t1 && t0->ndim == t1->ndim && st_numel(t0) == st_numel(t1) &&
                      !memcmp(t0->shape, t1->shape, sizeof(int64_t) * t0->ndim) && !strcmp(t1->dtype, "F32") &&
                      !memcmp(f0.buf + f0.data_start + t0->begin, f1.buf + f1.data_start + t1->begin, t0->end - t0->begin),
                      "%s: tensor %s differs from the fixture's", p, names[i]);
            }
            CHECK(st_meta(&f1, "format") && !strcmp(st_meta(&f1, "format"), "pt"), "metadata format");
            st_close(&f0); st_close(&f1);
        } else CHECK(0, "%s", err);
        free(pa); free(pb);
        model_close(&a); model_close(&b);
    }
    // merge-lora and fake-quant reproduce swq's logits after a reload (head LoRA zero: tied)
    {
        gpt2_shape s;
        int hq;
        hf_read_config(lmdir, &s, &hq, err, sizeof err);
        model_t a;
        if (!model_open(&a, lmdir, 4, configs_mixed(s.n_layer), TASK_LM)) {
            randomize_lora_b(&a.m, 0, 5);
            dev_inputs d;
            inputs_upload(a.be, &fx, &d);
            const char *modes[2] = { "merge-lora", "fake-quant" };
            for (int k = 0; k < 2; k++) {
                a.m.active = k;
                float *want = forward_all(&a.m, &fx, &d);
                snprintf(out, sizeof out, "%s/exp%d", tmpdir, k);
                CHECK(!hf_save_gpt2(out, &a.m, k, modes[k], err, sizeof err), "%s", err);
                model_t b;
                if (!model_open(&b, out, 4, NULL, TASK_LM)) {
                    dev_inputs db;
                    inputs_upload(b.be, &fx, &db);
                    float *got = forward_all(&b.m, &fx, &db);
                    size_t n = (size_t)fx.B * fx.T * s.vocab_size;
                    double e = rel_err(got, want, n), e0 = 0;
                    CHECK(e <= 1e-5, "%s export of config %d: reloaded logits rel err %.3e", modes[k], k, e);
                    if (k == 1) {   // the quantized config really differs from full precision
                        a.m.active = 0;
                        float *fp = forward_all(&a.m, &fx, &d);
                        e0 = rel_err(fp, want, n);
                        CHECK(e0 > 1e-3, "config 1 logits too close to config 0 (%.3e): quantization not exercised", e0);
                        free(fp);
                    }
                    free(got);
                    inputs_free(b.be, &db);
                } else CHECK(0, "reload %s", out);
                model_close(&b);
                free(want);
            }
            // a non-zero head LoRA unties the head
            randomize_lora_b(&a.m, 1, 6);
            snprintf(out, sizeof out, "%s/exp_untied", tmpdir);
            CHECK(!hf_save_gpt2(out, &a.m, 0, "merge-lora", err, sizeof err), "%s", err);
            path_join(p, sizeof p, out, "config.json");
            char *cj = slurp(p, NULL);
            cJSON *c = cj ? cJSON_Parse(cj) : NULL;
            CHECK(c && cJSON_IsFalse(cJSON_GetObjectItem(c, "tie_word_embeddings")), "untied export: tie_word_embeddings");
            cJSON_Delete(c); free(cj);
            path_join(p, sizeof p, out, "model.safetensors");
            st_file f;
            if (!st_open(p, &f, err, sizeof err)) {
                const st_tensor *h = st_find(&f, "lm_head.weight");
                CHECK(h && h->ndim == 2 && h->shape[0] == s.vocab_size && h->shape[1] == s.n_embd, "untied lm_head.weight");
                st_close(&f);
            } else CHECK(0, "%s", err);
            model_t b;
            CHECK(!model_open(&b, out, 4, NULL, TASK_LM), "untied export loads (head ignored with a note)");
            model_close(&b);
            CHECK(hf_save_gpt2(out, &a.m, 0, "int4", err, sizeof err) && strstr(err, "int4"), "bad mode: %s", err);
            CHECK(hf_save_gpt2(out, &a.m, 2, "fake-quant", err, sizeof err) && strstr(err, "config"), "bad k: %s", err);
            inputs_free(a.be, &d);
        } else CHECK(0, "load mixed");
        model_close(&a);
    }
    // sharded checkpoint (model.safetensors.index.json) loads the same parameters
    {
        model_t a, b;
        if (!model_open(&a, qadir, 4, NULL, TASK_QA)) {
            st_file f;
            path_join(p, sizeof p, qadir, "model.safetensors");
            snprintf(out, sizeof out, "%s/sharded", tmpdir);
            mkdir(out, 0755);
            if (!st_open(p, &f, err, sizeof err)) {
                st_out *o = calloc(f.n, sizeof(st_out));
                float **bufs = calloc(f.n, sizeof(float *));
                cJSON *idx = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(idx, "weight_map");
                for (int i = 0; i < f.n; i++) {
                    const st_tensor *t = &f.t[i];
                    bufs[i] = malloc(sizeof(float) * (st_numel(t) + 1));
                    st_read_f32(&f, t->name, NULL, 0, bufs[i], err, sizeof err);
                    o[i].name = t->name; o[i].data = bufs[i]; o[i].ndim = t->ndim;
                    memcpy(o[i].shape, t->shape, sizeof(int64_t) * t->ndim);
                    cJSON_AddStringToObject(wm, t->name, i < f.n / 2 ? "part-1.safetensors" : "part-2.safetensors");
                }
                char sp[512];
                path_join(sp, sizeof sp, out, "part-1.safetensors");
                CHECK(!st_write(sp, o, f.n / 2, NULL, 0, err, sizeof err), "%s", err);
                path_join(sp, sizeof sp, out, "part-2.safetensors");
                CHECK(!st_write(sp, o + f.n / 2, f.n - f.n / 2, NULL, 0, err, sizeof err), "%s", err);
                char *txt = cJSON_Print(idx);
                path_join(sp, sizeof sp, out, "model.safetensors.index.json");
                CHECK(!spit(sp, txt, strlen(txt)), "write index");
                free(txt); cJSON_Delete(idx);
                path_join(sp, sizeof sp, qadir, "config.json");
                char *cfg = slurp(sp, NULL);
                path_join(sp, sizeof sp, out, "config.json");
                CHECK(cfg && !spit(sp, cfg, strlen(cfg)), "copy config");
                free(cfg);
                for (int i = 0; i < f.n; i++) free(bufs[i]);
                free(bufs); free(o);
                st_close(&f);
                if (!model_open(&b, out, 4, NULL, TASK_QA)) {
                    float *pa = download_base(&a.m), *pb = download_base(&b.m);
                    CHECK(!memcmp(pa, pb, sizeof(float) * a.m.n_base), "sharded load differs");
                    free(pa); free(pb);
                } else CHECK(0, "sharded load");
                model_close(&b);
            } else CHECK(0, "%s", err);
        }
        model_close(&a);
    }
    fixture_free(&fx);
}

// ---------------------------------------------------------------- bad input

// copy config.json of src into dst and write bytes as dst/model.safetensors
static void make_broken(const char *src, const char *dst, const void *bytes, size_t n) {
    char p[512], q[512];
    mkdir(dst, 0755);
    path_join(p, sizeof p, src, "config.json");
    path_join(q, sizeof q, dst, "config.json");
    size_t cn;
    char *c = slurp(p, &cn);
    CHECK(c && !spit(q, c, cn), "copy %s", p);
    free(c);
    path_join(q, sizeof q, dst, "model.safetensors");
    CHECK(!spit(q, bytes, n), "write %s", q);
}

// hf_load_gpt2 on dir must fail with a message holding the file and every needle
static void expect_load_error(const char *dir, const char *needle1, const char *needle2) {
    model_t mt;
    memset(&mt, 0, sizeof mt);
    gpt2_shape s;
    int hq;
    if (hf_read_config(dir, &s, &hq, err, sizeof err)) { CHECK(0, "%s", err); return; }
    mt.qs = configs_32(s.n_layer, 1);
    mt.be = swq_backend_cpu(4);
    if (gpt2_create(&mt.m, s, mt.qs, mt.be, err, sizeof err)) { CHECK(0, "%s", err); model_close(&mt); return; }
    err[0] = 0;
    int rc = hf_load_gpt2(dir, &mt.m, err, sizeof err);
    char file[512];
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    CHECK(rc == -1 && strstr(err, file) && strstr(err, needle1) && (!needle2 || strstr(err, needle2)),
          "%s: expected an error naming the file, '%s'%s%s; got rc %d '%s'", dir, needle1, needle2 ? " and " : "",
          needle2 ? needle2 : "", rc, err);
    model_close(&mt);
}

// raw safetensors from a header string and n data bytes
static unsigned char *raw_st(const char *header, const void *data, size_t nd, size_t *n) {
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + nd);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    memcpy(b + 8 + hl, data, nd);
    *n = 8 + hl + nd;
    return b;
}

static void expect_open_error(const char *name, const char *header, size_t nd, const char *n1, const char *n2) {
    unsigned char data[64] = { 0 };
    size_t n;
    unsigned char *b = raw_st(header, data, nd, &n);
    char p[512];
    snprintf(p, sizeof p, "%s/%s.safetensors", tmpdir, name);
    CHECK(!spit(p, b, n), "write %s", p);
    free(b);
    st_file f;
    err[0] = 0;
    int rc = st_open(p, &f, err, sizeof err);
    CHECK(rc == -1 && strstr(err, p) && strstr(err, n1) && (!n2 || strstr(err, n2)), "%s: got rc %d '%s'", name, rc, err);
    if (!rc) st_close(&f);
}

static void bad_input_tests(const char *dir) {
    char lmdir[512], src[512], bad[512];
    path_join(lmdir, sizeof lmdir, dir, "lm");
    path_join(src, sizeof src, lmdir, "model.safetensors");
    size_t n;
    unsigned char *orig = (unsigned char *)slurp(src, &n);
    if (!orig || n < 16) { CHECK(0, "read %s", src); free(orig); return; }
    unsigned char *b = malloc(n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | orig[i];
    // header length beyond the file
    memcpy(b, orig, n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)(n + 100) >> (8 * i));
    snprintf(bad, sizeof bad, "%s/bad_hlen", tmpdir);
    make_broken(lmdir, bad, b, n);
    expect_load_error(bad, "header length", NULL);
    // a file shorter than the length field
    make_broken(lmdir, bad, orig, 5);
    expect_load_error(bad, "too short", NULL);
    // header that is not JSON
    memcpy(b, orig, n);
    b[8] = 'x';
    snprintf(bad, sizeof bad, "%s/bad_json", tmpdir);
    make_broken(lmdir, bad, b, n);
    expect_load_error(bad, "not a valid JSON", NULL);
    // unknown dtype on transformer.ln_f.weight
    memcpy(b, orig, n);
    char *h = malloc(hl + 1);
    memcpy(h, b + 8, hl);
    h[hl] = 0;
    char *at = strstr(h, "\"transformer.ln_f.weight\"");
    char *dt = at ? strstr(at, "\"F32\"") : NULL;
    CHECK(dt != NULL, "fixture header lacks transformer.ln_f.weight F32");
    if (dt) {
        b[8 + (dt - h) + 1] = 'Q';
        snprintf(bad, sizeof bad, "%s/bad_dtype", tmpdir);
        make_broken(lmdir, bad, b, n);
        expect_load_error(bad, "unknown dtype 'Q32'", "transformer.ln_f.weight");
    }
    free(h);
    // wrong shape, missing tensor, unexpected tensor: rewritten through the writer
    st_file f;
    if (!st_open(src, &f, err, sizeof err)) {
        st_out *o = calloc(f.n + 1, sizeof(st_out));
        float **bufs = calloc(f.n + 1, sizeof(float *));
        int no = 0;
        for (int i = 0; i < f.n; i++) {
            bufs[i] = malloc(sizeof(float) * (st_numel(&f.t[i]) + 1));
            st_read_f32(&f, f.t[i].name, NULL, 0, bufs[i], err, sizeof err);
            o[no].name = f.t[i].name; o[no].data = bufs[i]; o[no].ndim = f.t[i].ndim;
            memcpy(o[no].shape, f.t[i].shape, sizeof(int64_t) * f.t[i].ndim);
            no++;
        }
        char q[512];
        snprintf(bad, sizeof bad, "%s/bad_shape", tmpdir);
        mkdir(bad, 0755);
        path_join(q, sizeof q, bad, "model.safetensors");
        int w = -1, miss = -1;
        for (int i = 0; i < no; i++) {
            if (!strcmp(o[i].name, "transformer.h.1.attn.c_proj.weight")) w = i;
            if (!strcmp(o[i].name, "transformer.h.1.mlp.c_fc.bias")) miss = i;
        }
        CHECK(w >= 0 && miss >= 0, "fixture tensor names");
        if (w >= 0 && miss >= 0) {
            o[w].shape[0] -= 1;   // [C-1, C]: fewer rows
            make_broken(lmdir, bad, "", 0);
            CHECK(!st_write(q, o, no, NULL, 0, err, sizeof err), "%s", err);
            expect_load_error(bad, "transformer.h.1.attn.c_proj.weight", "has shape");
            o[w].shape[0] += 1;
            st_out keep = o[miss];
            o[miss] = o[no - 1];
            snprintf(bad, sizeof bad, "%s/bad_missing", tmpdir);
            mkdir(bad, 0755);
            path_join(q, sizeof q, bad, "model.safetensors");
            make_broken(lmdir, bad, "", 0);
            CHECK(!st_write(q, o, no - 1, NULL, 0, err, sizeof err), "%s", err);
            expect_load_error(bad, "missing tensor", "h.1.mlp.c_fc.bias");
            o[miss] = keep;
            float extra[3] = { 1, 2, 3 };
            o[no] = (st_out){ .name = "transformer.h.0.attn.rotary", .data = extra, .ndim = 1, .shape = { 3 } };
            snprintf(bad, sizeof bad, "%s/bad_extra", tmpdir);
            mkdir(bad, 0755);
            path_join(q, sizeof q, bad, "model.safetensors");
            make_broken(lmdir, bad, "", 0);
            CHECK(!st_write(q, o, no + 1, NULL, 0, err, sizeof err), "%s", err);
            expect_load_error(bad, "unexpected tensor", "transformer.h.0.attn.rotary");
        }
        for (int i = 0; i < f.n; i++) free(bufs[i]);
        free(bufs); free(o);
        st_close(&f);
    } else CHECK(0, "%s", err);
    free(b); free(orig);
    // a model of another shape
    {
        model_t mt;
        memset(&mt, 0, sizeof mt);
        gpt2_shape s;
        int hq;
        CHECK(!hf_read_config(lmdir, &s, &hq, err, sizeof err), "%s", err);
        s.n_layer += 1;
        mt.qs = configs_32(s.n_layer, 1);
        mt.be = swq_backend_cpu(4);
        if (!gpt2_create(&mt.m, s, mt.qs, mt.be, err, sizeof err)) {
            int rc = hf_load_gpt2(lmdir, &mt.m, err, sizeof err);
            CHECK(rc == -1 && strstr(err, "config.json") && strstr(err, "differs"), "shape mismatch: '%s'", err);
        }
        model_close(&mt);
    }
    // hand-made headers: offsets out of range, overlapping, size mismatch, bad JSON types
    expect_open_error("range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 24, "'b'", "out of range");
    expect_open_error("overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, "overlaps", "'b'");
    expect_open_error("size", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16, "'w'", "needs 16");
    expect_open_error("dtype", "{\"w\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, "'w'",
                      "unknown dtype 'F17'");
    expect_open_error("offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 16, "'w'", "data_offsets");
    expect_open_error("shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 16, "'w'", "shape");
    expect_open_error("dup", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "'w'", "twice");
    // F16 / BF16 / F64 decode; integer tensors refused on read; metadata
    {
        unsigned char d[40] = { 0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0x01, 0x00,    // F16 1, -2, 0.5, 2^-24
                                0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40, 0x00, 0x00 };  // BF16 1, -2, 3.140625, 0
        double dv = -0.375;
        memcpy(d + 16, &dv, 8);
        int32_t iv[4] = { 1, 2, 3, 4 };
        memcpy(d + 24, iv, 16);
        size_t nb;
        unsigned char *raw = raw_st("{\"__metadata__\":{\"format\":\"pt\"},"
                                    "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]},"
                                    "\"d\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[16,24]},"
                                    "\"i\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[24,40]}}", d, 40, &nb);
        char p[512];
        snprintf(p, sizeof p, "%s/dtypes.safetensors", tmpdir);
        CHECK(!spit(p, raw, nb), "write");
        free(raw);
        st_file f;
        if (!st_open(p, &f, err, sizeof err)) {
            float v[4];
            int64_t s4[1] = { 4 }, s22[2] = { 2, 2 };
            CHECK(!st_read_f32(&f, "h", s4, 1, v, err, sizeof err) && v[0] == 1.0f && v[1] == -2.0f && v[2] == 0.5f &&
                  v[3] == 5.9604644775390625e-8f, "F16 decode %g %g %g %g", v[0], v[1], v[2], v[3]);
            CHECK(!st_read_f32(&f, "b", s22, 2, v, err, sizeof err) && v[0] == 1.0f && v[1] == -2.0f &&
                  v[2] == 3.140625f && v[3] == 0.0f, "BF16 decode %g %g %g %g", v[0], v[1], v[2], v[3]);
            CHECK(!st_read_f32(&f, "d", NULL, 0, v, err, sizeof err) && v[0] == -0.375f, "F64 decode %g", v[0]);
            CHECK(st_read_f32(&f, "i", s4, 1, v, err, sizeof err) == -1 && strstr(err, "'i'") && strstr(err, p),
                  "I32 refused: %s", err);
            CHECK(st_read_f32(&f, "b", s4, 1, v, err, sizeof err) == -1 && strstr(err, "[2, 2]") && strstr(err, "[4]"),
                  "shape check: %s", err);
            CHECK(st_read_f32(&f, "zz", NULL, 0, v, err, sizeof err) == -1 && strstr(err, "'zz'") && strstr(err, "not found"),
                  "missing: %s", err);
            CHECK(st_meta(&f, "format") && !strcmp(st_meta(&f, "format"), "pt"), "metadata");
            st_close(&f);
        } else CHECK(0, "%s", err);
    }
    // config.json of every GPT-2 size, and bad ones
    {
        const int sizes[4][3] = { { 24, 16, 1024 }, { 36, 20, 1280 }, { 48, 25, 1600 }, { 12, 12, 768 } };
        char d[512], p[512], txt[1024];
        snprintf(d, sizeof d, "%s/cfg", tmpdir);
        mkdir(d, 0755);
        path_join(p, sizeof p, d, "config.json");
        for (int i = 0; i < 4; i++) {
            snprintf(txt, sizeof txt, "{\"architectures\":[\"GPT2LMHeadModel\"],\"model_type\":\"gpt2\","
                     "\"activation_function\":\"gelu_new\",\"layer_norm_epsilon\":1e-05,\"n_ctx\":1024,"
                     "\"n_embd\":%d,\"n_head\":%d,\"n_layer\":%d,\"n_positions\":1024,\"n_inner\":null,"
                     "\"vocab_size\":50257}", sizes[i][2], sizes[i][1], sizes[i][0]);
            spit(p, txt, strlen(txt));
            gpt2_shape s;
            int hq = -1;
            CHECK(!hf_read_config(d, &s, &hq, err, sizeof err) && s.n_layer == sizes[i][0] && s.n_head == sizes[i][1] &&
                  s.n_embd == sizes[i][2] && s.n_ctx == 1024 && s.vocab_size == 50257 && hq == 0, "size %d: %s", i, err);
        }
        const char *bads[][2] = {
            { "{\"n_head\":2,\"n_embd\":32,\"n_positions\":64,\"vocab_size\":300}", "'n_layer'" },
            { "{\"n_layer\":2,\"n_head\":3,\"n_embd\":32,\"n_positions\":64,\"vocab_size\":300}", "divisible" },
            { "{\"n_layer\":2,\"n_head\":2,\"n_embd\":32,\"n_positions\":64,\"vocab_size\":\"300\"}", "'vocab_size'" },
            { "{\"n_layer\":2,\"n_head\":2,\"n_embd\":32,\"vocab_size\":300}", "'n_positions'" },
            { "{\"n_layer\":2,\"n_head\":2,\"n_embd\":32,\"n_positions\":64,\"vocab_size\":300,"
              "\"activation_function\":\"relu\"}", "relu" },
            { "{\"model_type\":\"llama\",\"n_layer\":2}", "llama" },
            { "{\"n_layer\":2,", "JSON" },
        };
        for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
            spit(p, bads[i][0], strlen(bads[i][0]));
            gpt2_shape s;
            int hq;
            err[0] = 0;
            CHECK(hf_read_config(d, &s, &hq, err, sizeof err) == -1 && strstr(err, p) && strstr(err, bads[i][1]),
                  "bad config %zu: '%s'", i, err);
        }
        snprintf(d, sizeof d, "%s/nonexistent", tmpdir);
        gpt2_shape s;
        int hq;
        CHECK(hf_read_config(d, &s, &hq, err, sizeof err) == -1 && strstr(err, "config.json"), "no config: %s", err);
    }
}

// ---------------------------------------------------------------- export for transformers

static int write_swq_ref(const char *dir, gpt2 *m, const fixture *fx, const float *vals) {
    int N = fx->B * fx->T;
    char p[512];
    st_out o[2];
    int no;
    if (m->task == TASK_LM) {
        o[0] = (st_out){ .name = "logits", .data = vals, .ndim = 2, .shape = { N, m->s.vocab_size } };
        no = 1;
    } else {
        o[0] = (st_out){ .name = "qa_start", .data = vals, .ndim = 2, .shape = { fx->B, fx->T } };
        o[1] = (st_out){ .name = "qa_end", .data = vals + N, .ndim = 2, .shape = { fx->B, fx->T } };
        no = 2;
    }
    path_join(p, sizeof p, dir, "swq_ref.safetensors");
    if (st_write(p, o, no, NULL, 0, err, sizeof err)) { printf("%s\n", err); return -1; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "B", fx->B);
    cJSON_AddNumberToObject(j, "T", fx->T);
    cJSON_AddItemToObject(j, "tokens", cJSON_CreateIntArray(fx->tokens, N));
    char *t = cJSON_Print(j);
    cJSON_Delete(j);
    path_join(p, sizeof p, dir, "swq_tokens.json");
    int rc = spit(p, t, strlen(t));
    free(t);
    return rc;
}

static int export_for_transformers(const char *src, const char *outdir) {
    fixture fx;
    if (fixture_read(src, &fx)) return 1;
    mkdir(outdir, 0755);
    char dir[512], d[512];
    int bad = 0;
    for (int task = 0; task < 2; task++) {
        path_join(dir, sizeof dir, src, task ? "qa" : "lm");
        gpt2_shape s;
        int hq;
        if (hf_read_config(dir, &s, &hq, err, sizeof err)) { printf("%s\n", err); return 1; }
        model_t a;
        if (model_open(&a, dir, 4, configs_mixed(s.n_layer), task)) return 1;
        dev_inputs di;
        inputs_upload(a.be, &fx, &di);
        struct { const char *name, *mode; int k; } ex[3] = {
            { "fp32", "fp32", 0 }, { "merge_lora_c0", "merge-lora", 0 }, { "fake_quant_c1", "fake-quant", 1 } };
        for (int e = 0; e < 3; e++) {
            if (e == 1) randomize_lora_b(&a.m, 1, 77);   // LoRA everywhere, the LM head's too (untied export)
            a.m.active = ex[e].k;
            float *v = forward_all(&a.m, &fx, &di);
            snprintf(d, sizeof d, "%s/%s_%s", outdir, task ? "qa" : "lm", ex[e].name);
            if (hf_save_gpt2(d, &a.m, ex[e].k, ex[e].mode, err, sizeof err)) { printf("%s\n", err); bad = 1; }
            else if (write_swq_ref(d, &a.m, &fx, v)) bad = 1;
            else printf("exported %s (%s, config %d)\n", d, ex[e].mode, ex[e].k);
            free(v);
        }
        inputs_free(a.be, &di);
        model_close(&a);
    }
    fixture_free(&fx);
    return bad;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--parity")) {
        parity(argv[2], 4, 1);
        if (!(argc >= 4 && !strcmp(argv[3], "--float-only"))) parity(argv[2], 8, 1);
        return check_summary("test_hf_parity --parity");
    }
    if (argc >= 4 && !strcmp(argv[1], "--export")) return export_for_transformers(argv[2], argv[3]);
    const char *dir = argc >= 2 && argv[1][0] != '-' ? argv[1] : "tests/fixtures/hf_small";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/swq_test_hf_%d", (int)getpid());
    if (mkdir(tmpdir, 0755)) { printf("cannot create %s\n", tmpdir); return 1; }
    parity(dir, 4, 1);
    parity(dir, 8, 1);
    export_tests(dir);
    bad_input_tests(dir);
    rm_rf(tmpdir);
    return check_summary("test_hf_parity");
}
