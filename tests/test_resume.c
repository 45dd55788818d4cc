// Bit-exact resume on CPU: N steps straight vs N/2 steps, stop, --resume, N/2 steps give
// identical losses (train_log.csv) and identical parameters and optimizer moments.
#include "check.h"
#include "launch/run.h"
#include "checkpoints/model_ckpt.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *CFG =
    "model = { n_layer = 1; n_head = 2; n_embd = 16; n_ctx = 224; };\n"
    "data = { task = \"prompt\"; synthetic_articles_train = 12; synthetic_articles_eval = 3; max_answer_tokens = 16; };\n"
    "train = { mode = \"cdt\"; finetune = \"full\"; steps = 6; batch_size = 4; lr = 1e-3; warmup = 2;\n"
    "          weight_decay = 0.01; grad_clip = 1.0; ckpt_every = 3; log_every = 0; seed = 7; threads = 1; };\n"
    "eval = { max_questions = 3; batch_size = 3; };\n"
    "quant = { configs = ( { name = \"8\"; bits = 8; lora_rank = 2; }, { name = \"6\"; bits = 6; act_bits = 8; lora_rank = 2; },\n"
    "                      { name = \"4\"; bits = 4; lora_rank = 4; lora_alpha = 16.0; } ); };\n";

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
    char *b = calloc(n + 1, 1);
    if (fread(b, 1, n, f) != (size_t)n) { fclose(f); free(b); return NULL; }
    fclose(f);
    return b;
}

// train_log.csv without the tokens/s column (timing, not state)
static char *losses(const char *dir) {
    char p[512]; snprintf(p, sizeof p, "%s/train_log.csv", dir);
    char *t = slurp(p);
    if (!t) return strdup("");
    char *out = calloc(strlen(t) + 1, 1), *o = out;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        int col = 0;
        for (char *c = line; *c; c++) {
            if (*c == ',') col++;
            if (col != 4 || (*c == ',' && col == 4)) *o++ = *c;
        }
        *o++ = '\n';
    }
    free(t);
    return out;
}

static int train(const char *dir, const char *const *sets, int nsets, const char *resume) {
    settings s;
    char err[1024];
    if (settings_load(NULL, CFG, "resume-test", sets, nsets, &s, err, sizeof err)) { printf("%s\n", err); return -1; }
    int rc = run_train(&s, dir, resume, NULL, err, sizeof err);
    if (rc) printf("train: %s\n", err);
    settings_free(&s);
    return rc;
}

int main(void) {
    char a[] = "/tmp/swq_resume_a_XXXXXX", b[] = "/tmp/swq_resume_b_XXXXXX";
    if (!mkdtemp(a) || !mkdtemp(b)) return 1;
    CHECK(train(a, NULL, 0, NULL) == 0, "straight run");
    const char *stop[] = { "train.stop_at=3" };
    CHECK(train(b, stop, 1, NULL) == 0, "first half");
    char p[512]; snprintf(p, sizeof p, "%s/checkpoints/step_00000006.swqc", b);
    CHECK(access(p, F_OK) != 0, "first half must stop at step 3");
    CHECK(train(b, NULL, 0, b) == 0, "resumed half");
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/checkpoints/step_00000006.swqc", a);
    snprintf(pb, sizeof pb, "%s/checkpoints/step_00000006.swqc", b);
    model_ckpt ca, cb;
    char err[1024];
    CHECK(model_ckpt_read(pa, &ca, err, sizeof err) == 0, "%s", err);
    CHECK(model_ckpt_read(pb, &cb, err, sizeof err) == 0, "%s", err);
    CHECK(ca.n_base == cb.n_base && ca.n_lora == cb.n_lora && ca.opt_n == cb.opt_n, "sizes");
    CHECK(memcmp(ca.params, cb.params, sizeof(float) * (ca.n_base + ca.n_lora)) == 0, "parameters differ after resume");
    CHECK(memcmp(ca.mom1, cb.mom1, sizeof(float) * ca.opt_n) == 0 && memcmp(ca.mom2, cb.mom2, sizeof(float) * ca.opt_n) == 0,
          "optimizer moments differ after resume");
    CHECK(ca.prog.step == 6 && cb.prog.step == 6 && ca.opt_t == 6 && cb.opt_t == 6, "step counters");
    char *la = losses(a), *lb = losses(b);
    CHECK(strlen(la) > 50 && strcmp(la, lb) == 0, "losses differ:\n%s\nvs\n%s", la, lb);
    // the run is not a no-op: parameters moved from step 3
    snprintf(p, sizeof p, "%s/checkpoints/step_00000003.swqc", b);
    model_ckpt c3;
    CHECK(model_ckpt_read(p, &c3, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(c3.params, cb.params, sizeof(float) * cb.n_base) != 0, "training did not change the parameters");
    // a fresh run with the same seed is identical too (determinism)
    char c[] = "/tmp/swq_resume_c_XXXXXX";
    if (!mkdtemp(c)) return 1;
    CHECK(train(c, NULL, 0, NULL) == 0, "repeat run");
    char *lc = losses(c);
    CHECK(strcmp(la, lc) == 0, "same seed, different losses");
    free(la); free(lb); free(lc);
    model_ckpt_free(&ca); model_ckpt_free(&cb); model_ckpt_free(&c3);
    char cmd[256]; snprintf(cmd, sizeof cmd, "rm -rf %s %s %s", a, b, c);
    if (system(cmd)) {}
    return check_summary("test_resume");
}
