// Pretraining text: documents split on "<|endoftext|>" lines, zstd input, the token cache,
// bad input, and a short text-task training run.
#include "check.h"
#include "data/textdata.h"
#include "launch/run.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static void write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (fwrite(d, 1, n, f) != n) exit(2);
    fclose(f);
}

int main(void) {
    char dir[] = "/tmp/swq_text_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    const char *text = "First doc.\nline two\n<|endoftext|>\nSecond <doc>.\n<|endoftext|>\nThird.\n<|endoftext|>\n";
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, "%s/a.txt.zst", dir);
    size_t cap = ZSTD_compressBound(strlen(text));
    void *z = malloc(cap);
    size_t zn = ZSTD_compress(z, cap, text, strlen(text), 3);
    write_file(p1, z, zn);
    tokenizer *tok = tokenizer_byte();
    token_stream ts;
    char err[512];
    CHECK(textdata_load(dir, tok, NULL, &ts, 0, err, sizeof err) == 0, "%s", err);
    CHECK(ts.n_docs == 3, "docs %zu", ts.n_docs);
    // bytes of the three documents without the separator lines, each followed by eot
    const char *want[] = { "First doc.\nline two", "Second <doc>.", "Third." };
    size_t pos = 0;
    int same = 1;
    for (int d = 0; d < 3; d++) {
        for (const char *c = want[d]; *c; c++) same &= ts.tok[pos++] == (uint32_t)(unsigned char)*c;
        same &= ts.tok[pos++] == (uint32_t)tok->eot;
    }
    CHECK(same && pos == ts.n, "token stream (n=%zu, expected %zu)", ts.n, pos);
    // the cache was written next to the data and gives the same tokens
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s/*.tok >/dev/null 2>&1", dir);
    CHECK(system(cmd) == 0, "no cache file next to the data");
    token_stream t2;
    CHECK(textdata_load(p1, tok, NULL, &t2, 0, err, sizeof err) == 0, "%s", err);
    CHECK(t2.n == ts.n && !memcmp(t2.tok, ts.tok, ts.n * 4), "cached tokens differ");
    textdata_free(&t2);
    // bad input
    snprintf(p2, sizeof p2, "%s/missing.txt", dir);
    CHECK(textdata_load(p2, tok, NULL, &t2, 0, err, sizeof err) == -1 && strstr(err, "missing.txt"), "missing: %s", err);
    char p3[256];
    snprintf(p3, sizeof p3, "%s/bad.txt.zst", dir);
    write_file(p3, "not zstd at all", 15);
    CHECK(textdata_load(p3, tok, NULL, &t2, 0, err, sizeof err) == -1 && strstr(err, "bad.txt.zst"), "bad zstd: %s", err);
    unlink(p3);
    // a short pretraining run on a longer file
    char p4[256];
    snprintf(p4, sizeof p4, "%s/b.txt", dir);
    FILE *f = fopen(p4, "w");
    for (int i = 0; i < 200; i++) fprintf(f, "The river %d flows to the sea and the sea is blue.\n<|endoftext|>\n", i);
    fclose(f);
    char cfg[1024], out[300];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(cfg, sizeof cfg,
             "model = { n_layer = 1; n_head = 2; n_embd = 16; n_ctx = 32; };\n"
             "data = { task = \"text\"; train_file = \"%s\"; eval_file = \"holdout\"; };\n"
             "train = { steps = 30; batch_size = 4; lr = 3e-3; finetune = \"full\"; log_every = 0; threads = 1; };\n"
             "eval = { max_questions = 8; batch_size = 4; };\n"
             "quant = { configs = ( { name = \"fp\"; bits = 32; }, { name = \"4-bit\"; bits = 4; } ); };\n", p4);
    settings s;
    CHECK(settings_load(NULL, cfg, "text-test", NULL, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(run_train(&s, out, NULL, NULL, err, sizeof err) == 0, "text training: %s", err);
    settings_free(&s);
    char ev[400];
    snprintf(ev, sizeof ev, "%s/evals.jsonl", out);
    f = fopen(ev, "r");
    double l0 = NAN, l1 = NAN;
    char line[4096];
    if (f) {
        if (fgets(line, sizeof line, f)) { char *q = strstr(line, "\"loss\": "); if (q) l0 = atof(q + 8); }
        if (fgets(line, sizeof line, f)) { char *q = strstr(line, "\"loss\": "); if (q) l1 = atof(q + 8); }
        fclose(f);
    }
    CHECK(isfinite(l0) && isfinite(l1) && l1 < l0 - 0.5, "held-out loss should fall: %.3f -> %.3f", l0, l1);
    textdata_free(&ts);
    tokenizer_free(tok);
    free(z);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    return check_summary("test_textdata");
}
