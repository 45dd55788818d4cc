// Settings: quickstart values, defaults, every error message (file, line, key), --set
// overrides, each quant syntax, precision ordering, and the resolved-text round trip.
#include "check.h"
#include "launch/settings.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/configs/"

static char err[1024];

static int load_file(const char *path, const char *const *sets, int nsets, settings *s) {
    err[0] = 0;
    return settings_load(path, NULL, NULL, sets, nsets, s, err, sizeof(err));
}
static int load_text(const char *text, const char *const *sets, int nsets, settings *s) {
    err[0] = 0;
    return settings_load(NULL, text, "inline", sets, nsets, s, err, sizeof(err));
}

// A config must fail with exactly this message.
static void expect_file_error(const char *path, const char *const *sets, int nsets, const char *want, int line) {
    settings s;
    int rc = load_file(path, sets, nsets, &s);
    if (rc == 0) settings_free(&s);
    CHECK(rc == -1 && strcmp(err, want) == 0, "(line %d) %s\n   got:  %s\n   want: %s", line, path, err, want);
    CHECK(s.qs == NULL && s.text == NULL, "cleared on failure");
}
static void expect_text_error(const char *text, const char *const *sets, int nsets, const char *want, int line) {
    settings s;
    int rc = load_text(text, sets, nsets, &s);
    if (rc == 0) settings_free(&s);
    CHECK(rc == -1 && strcmp(err, want) == 0, "(line %d)\n   got:  %s\n   want: %s", line, err, want);
}
#define FILE_ERR(path, want) expect_file_error(path, NULL, 0, want, __LINE__)
#define TEXT_ERR(text, want) expect_text_error(text, NULL, 0, want, __LINE__)
#define SET_ERR(text, set, want)                                 \
    do {                                                         \
        const char *sets_[] = {set};                             \
        expect_text_error(text, sets_, 1, want, __LINE__);       \
    } while (0)

// bits of linear l in config k, as "w/a/b/lora"
static int bits_are(const settings *s, int k, int l, int w, int a, int b, int lora) {
    const lin_bits *x = &s->qs->cfg[k].lin[l];
    return x->w == w && x->a == a && x->b == b && x->lora == lora;
}
static int w_all(const settings *s, int k, const int *w) {
    for (int l = 0; l < s->qs->n_linear; l++)
        if (s->qs->cfg[k].lin[l].w != w[l]) {
            fprintf(stderr, "  config %d linear %d: w %d, expected %d\n", k, l, s->qs->cfg[k].lin[l].w, w[l]);
            return 0;
        }
    return 1;
}

static int same_settings(const settings *a, const settings *b) {
    int ok = 1;
#define SAME_I(f) if (a->f != b->f) { fprintf(stderr, "  %s differs\n", #f); ok = 0; }
#define SAME_S(f) if (strcmp(a->f, b->f)) { fprintf(stderr, "  %s differs: '%s' '%s'\n", #f, a->f, b->f); ok = 0; }
    SAME_I(n_layer) SAME_I(n_head) SAME_I(n_embd) SAME_I(n_ctx) SAME_I(vocab_size) SAME_S(init_from)
    SAME_S(task) SAME_S(tokenizer) SAME_S(train_file) SAME_S(eval_file) SAME_S(split_file) SAME_S(prompt_template)
    SAME_I(synthetic_articles_train) SAME_I(synthetic_articles_eval) SAME_I(seq_len) SAME_I(doc_stride)
    SAME_I(max_answer_tokens) SAME_S(mode) SAME_S(finetune) SAME_I(single_config) SAME_I(steps) SAME_I(batch_size)
    SAME_I(lr) SAME_I(beta1) SAME_I(beta2) SAME_I(eps) SAME_I(weight_decay) SAME_I(grad_clip) SAME_I(warmup)
    SAME_S(schedule) SAME_I(min_lr_frac) SAME_I(beta) SAME_I(seed) SAME_I(log_every) SAME_I(eval_every)
    SAME_I(ckpt_every) SAME_I(stop_at) SAME_I(threads) SAME_I(eval_max_questions) SAME_I(eval_batch_size)
    SAME_S(device) SAME_S(out_dir)
#undef SAME_I
#undef SAME_S
    if (!a->qs || !b->qs || a->qs->K != b->qs->K || a->qs->n_linear != b->qs->n_linear) return 0;
    for (int k = 0; k < a->qs->K; k++) {
        const qconfig *x = &a->qs->cfg[k], *y = &b->qs->cfg[k];
        if (strcmp(x->name, y->name) || x->lora_rank != y->lora_rank || x->lora_alpha != y->lora_alpha ||
            memcmp(x->lin, y->lin, (size_t)a->qs->n_linear * sizeof(lin_bits)) != 0 ||
            a->qs->order[k] != b->qs->order[k]) {
            fprintf(stderr, "  config %d differs\n", k);
            ok = 0;
        }
    }
    return ok;
}

// parse s->text again: same values, same text
static void check_round_trip(const settings *s, int line) {
    settings r;
    int rc = settings_load(NULL, s->text, "ckpt", NULL, 0, &r, err, sizeof(err));
    CHECK(rc == 0, "(line %d) reparse: %s", line, err);
    if (rc != 0) return;
    CHECK(same_settings(s, &r), "(line %d) round trip values", line);
    CHECK(strcmp(s->text, r.text) == 0, "(line %d) text is a fixed point", line);
    CHECK(strcmp(r.source, "ckpt") == 0, "label as source");
    settings_free(&r);
}

static void test_qconfig(void) {
    char name[64];
    int L = 3;
    for (int l = 0; l < 4 * L + 1; l++) {
        qconfig_linear_name(L, l, name, sizeof(name));
        CHECK(qconfig_linear_index(L, name) == l, "name %s -> %d", name, l);
    }
    qconfig_linear_name(L, 6, name, sizeof(name));
    CHECK(strcmp(name, "h.1.mlp_in") == 0, "%s", name);
    qconfig_linear_name(L, 12, name, sizeof(name));
    CHECK(strcmp(name, "lm_head") == 0, "%s", name);
    qconfig_linear_name(12, 4 * 10 + 3, name, sizeof(name));
    CHECK(strcmp(name, "h.10.mlp_out") == 0, "%s", name);
    CHECK(qconfig_linear_index(12, "h.10.mlp_out") == 43, "two digits");
    const char *bad[] = {"h.3.mlp_in", "h.01.mlp_in", "h.0.mlp", "lm_head2", "h..mlp_in", "h.-1.mlp_in", "", "h.0",
                         "x.0.mlp_in", "h.0.mlp_in.", "h.99999999999999999999.mlp_in"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(qconfig_linear_index(L, bad[i]) == -1, "'%s' must be unknown", bad[i]);
    CHECK(qconfig_component(L, 0) == COMP_ATTN && qconfig_component(L, 1) == COMP_ATTN, "attn");
    CHECK(qconfig_component(L, 2) == COMP_MLP && qconfig_component(L, 11) == COMP_MLP, "mlp");
    CHECK(qconfig_component(L, 12) == COMP_HEAD, "head");
    CHECK(qconfig_component_index("attn") == COMP_ATTN && qconfig_component_index("mlp") == COMP_MLP &&
              qconfig_component_index("head") == COMP_HEAD && qconfig_component_index("ffn") == -1,
          "component names");

    qconfig_set *qs = qconfig_set_new(1, 4);
    CHECK(qs && qs->n_linear == 5 && qs->K == 4, "new");
    if (!qs) return;
    CHECK(qs->cfg[2].lora_rank == 8 && qs->cfg[2].lora_alpha == 16.0 && qs->cfg[3].lin[4].w == 32 &&
              qs->cfg[3].lin[4].lora == 32,
          "new defaults");
    size_t lp[5] = {100, 10, 10, 10, 1000};
    // 0: head 4 bit; 1: head 8 bit; 2 = 1 but higher activations; 3 = exact tie with 1
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < 5; l++) qs->cfg[k].lin[l] = (lin_bits){8, 8, 32, 32};
    qs->cfg[0].lin[4].w = 4;
    qs->cfg[2].lin[0].a = 16;
    qconfig_set_order(qs, lp);
    int want[4] = {2, 1, 3, 0};
    CHECK(memcmp(qs->order, want, sizeof(want)) == 0, "order %d %d %d %d", qs->order[0], qs->order[1], qs->order[2],
          qs->order[3]);
    CHECK(qconfig_score(qs, 1, lp) == 8.0 * 1130, "score %g", qconfig_score(qs, 1, lp));
    // heavier weights count more: 16 bits on a tiny linear loses to 8 bits on the head
    qs->cfg[0].lin[4].w = 16;
    qs->cfg[3].lin[1].w = 32;
    qconfig_set_order(qs, lp);
    int want2[4] = {0, 3, 2, 1};
    CHECK(memcmp(qs->order, want2, sizeof(want2)) == 0, "order2 %d %d %d %d", qs->order[0], qs->order[1],
          qs->order[2], qs->order[3]);
    qconfig_set_free(qs);
    CHECK(qconfig_set_new(2, 0) == NULL, "K=0 refused");
}

int main(void) {
    settings s;
    test_qconfig();

    // ---- quickstart
    int rc = load_file("tests/fixtures/configs/quickstart_v1.cfg", NULL, 0, &s);
    CHECK(rc == 0, "quickstart: %s", err);
    if (rc == 0) {
        CHECK(s.n_layer == 2 && s.n_head == 4 && s.n_embd == 64 && s.n_ctx == 160 && s.vocab_size == 0, "model");
        CHECK(!strcmp(s.task, "prompt") && !strcmp(s.tokenizer, "byte") && !strcmp(s.train_file, "synthetic") &&
                  !strcmp(s.eval_file, "synthetic") && s.split_file[0] == 0,
              "data strings");
        CHECK(!strcmp(s.prompt_template, "Context: {context}\nQuestion: {question}\nAnswer:"), "template default");
        CHECK(s.synthetic_articles_train == 400 && s.synthetic_articles_eval == 40 && s.seq_len == 160 &&
                  s.max_answer_tokens == 16 && s.doc_stride == 128,
              "data ints");
        CHECK(!strcmp(s.mode, "cdt") && !strcmp(s.finetune, "full") && s.steps == 600 && s.batch_size == 16 &&
                  s.lr == 3e-3 && s.weight_decay == 0.0 && s.grad_clip == 1.0 && s.warmup == 30 &&
                  !strcmp(s.schedule, "cosine") && s.beta == 1.0 && s.seed == 1234 && s.log_every == 25 &&
                  s.eval_every == 0 && s.ckpt_every == 300,
              "train");
        CHECK(s.beta1 == 0.9 && s.beta2 == 0.999 && s.eps == 1e-8 && s.min_lr_frac == 0.0 && s.stop_at == 0 &&
                  s.threads == 0 && s.single_config == 0,
              "train defaults");
        CHECK(s.eval_max_questions == 200 && s.eval_batch_size == 32, "eval");
        CHECK(!strcmp(s.device, "cpu") && !strcmp(s.out_dir, "runs/quickstart"), "run");
        CHECK(!strcmp(s.source, "tests/fixtures/configs/quickstart_v1.cfg"), "source %s", s.source);
        CHECK(s.qs && s.qs->K == 5 && s.qs->n_layer == 2 && s.qs->n_linear == 9, "K");
        const char *names[5] = {"16-bit", "8-bit", "6-bit", "5-bit", "4-bit"};
        int bits[5] = {16, 8, 6, 5, 4}, rank[5] = {8, 8, 8, 16, 16};
        double alpha[5] = {16, 16, 16, 32, 64};
        for (int k = 0; s.qs && k < 5 && k < s.qs->K; k++) {
            CHECK(!strcmp(s.qs->cfg[k].name, names[k]), "name %d %s", k, s.qs->cfg[k].name);
            CHECK(s.qs->cfg[k].lora_rank == rank[k] && s.qs->cfg[k].lora_alpha == alpha[k], "lora %d", k);
            int ok = 1;
            for (int l = 0; l < 9; l++) ok &= bits_are(&s, k, l, bits[k], 32, 32, 32);
            CHECK(ok, "bits of config %d", k);
            CHECK(s.qs->order[k] == k, "order %d", k);
        }
        CHECK(s.text && strstr(s.text, "n_layer") && strstr(s.text, "beta2"), "text has defaults");
        check_round_trip(&s, __LINE__);
        settings_free(&s);
        CHECK(s.qs == NULL && s.text == NULL, "free clears");
    }

    // ---- empty config: every default
    rc = load_text("", NULL, 0, &s);
    CHECK(rc == 0, "empty: %s", err);
    if (rc == 0) {
        CHECK(s.n_layer == 2 && s.n_head == 4 && s.n_embd == 64 && s.n_ctx == 160 && s.seq_len == 160, "model");
        CHECK(!strcmp(s.finetune, "lora") && s.steps == 100 && s.batch_size == 8 && s.lr == 2e-4 && s.log_every == 10 &&
                  s.ckpt_every == 0 && s.warmup == 0,
              "train");
        CHECK(s.eval_max_questions == 0 && s.eval_batch_size == 16 && !strcmp(s.out_dir, "runs/default"), "eval/run");
        CHECK(s.init_from[0] == 0 && !strcmp(s.source, "inline"), "init_from/source");
        CHECK(s.qs && s.qs->K == 1 && !strcmp(s.qs->cfg[0].name, "fp32") && bits_are(&s, 0, 8, 32, 32, 32, 32) &&
                  s.qs->cfg[0].lora_rank == 8 && s.qs->cfg[0].lora_alpha == 16,
              "fp32");
        check_round_trip(&s, __LINE__);
        settings_free(&s);
    }
    rc = load_file(FIX "int_for_float.cfg", NULL, 0, &s);
    CHECK(rc == 0 && s.lr == 1.0 && s.grad_clip == 0.0 && s.beta1 == 0.0 && s.n_layer == 1 && s.vocab_size == 300 &&
              s.seq_len == 64 && s.qs->n_linear == 5,
          "int accepted for float: %s", err);
    if (rc == 0) settings_free(&s);

    // ---- file errors: file, line, key path, problem
    FILE_ERR(FIX "bad_type.cfg", FIX "bad_type.cfg:4: train.lr: expected a number, got a string");
    FILE_ERR(FIX "unknown_key.cfg", FIX "unknown_key.cfg:3: model.n_layr: unknown key");
    FILE_ERR(FIX "unknown_group.cfg", FIX "unknown_group.cfg:3: optim: unknown key");
    FILE_ERR(FIX "bad_bits.cfg", FIX "bad_bits.cfg:5: quant.configs.[1].bits: 1 is out of range 2..32");
    FILE_ERR(FIX "syntax.cfg", FIX "syntax.cfg:4: syntax error");
    FILE_ERR(FIX "bad_enum.cfg", FIX "bad_enum.cfg:3: train.schedule: 'cosin' is not one of cosine, linear, constant");
    FILE_ERR(FIX "bad_range.cfg", FIX "bad_range.cfg:3: train.beta2: 1 is out of range [0, 1)");
    FILE_ERR(FIX "float_for_int.cfg", FIX "float_for_int.cfg:2: train.steps: expected an integer, got a float");
    FILE_ERR(FIX "not_divisible.cfg", FIX "not_divisible.cfg:3: model.n_embd: 66 is not divisible by model.n_head (4)");
    FILE_ERR(FIX "seq_len.cfg", FIX "seq_len.cfg:3: data.seq_len: 65 is out of range 0..64 (model.n_ctx)");
    FILE_ERR(FIX "bad_component.cfg", FIX "bad_component.cfg:5: quant.configs.[0].components.ffn: unknown component "
                                          "'ffn' (expected attn, mlp or head)");
    FILE_ERR(FIX "bad_linear.cfg", FIX "bad_linear.cfg:8: quant.configs.[1].linears.[1].name: unknown layer "
                                       "'h.9.mlp_in' (model has 2 blocks)");
    FILE_ERR(FIX "bad_blocks.cfg", FIX "bad_blocks.cfg:5: quant.configs.[0].layers.[0].blocks.[1]: block 2 is out of "
                                       "range 0..1 (model has 2 blocks)");
    FILE_ERR(FIX "bad_per_layer.cfg",
             FIX "bad_per_layer.cfg:4: quant.configs.[0].per_layer: has 8 values, expected 9 (4*n_layer+1)");
    FILE_ERR(FIX "dup_name.cfg", FIX "dup_name.cfg:5: quant.configs.[2].name: name 'x' is already used by config [0]");
    FILE_ERR(FIX "single_config.cfg", FIX "single_config.cfg:3: train.single_config: 2 is out of range 0..1 (2 configs)");
    FILE_ERR(FIX "group_type.cfg", FIX "group_type.cfg:1: model: expected a group { ... }, got an integer");
    FILE_ERR(FIX "no_such_file.cfg", FIX "no_such_file.cfg: cannot open: No such file or directory");

    // ---- text errors (labelled "inline")
    TEXT_ERR("model = { n_layer = 0; };", "inline:1: model.n_layer: 0 is out of range 1..96");
    TEXT_ERR("model = {\n n_layer = 97; };", "inline:2: model.n_layer: 97 is out of range 1..96");
    TEXT_ERR("model = { n_head = 129; };", "inline:1: model.n_head: 129 is out of range 1..128");
    TEXT_ERR("model = { n_ctx = 8193; };", "inline:1: model.n_ctx: 8193 is out of range 1..8192");
    TEXT_ERR("model = { n_head = 3; };", "inline:1: model.n_head: model.n_embd (64) is not divisible by 3");
    TEXT_ERR("train = { batch_size = 0; };", "inline:1: train.batch_size: 0 is out of range (must be >= 1)");
    TEXT_ERR("train = { steps = -1; };", "inline:1: train.steps: -1 is out of range (must be >= 0)");
    TEXT_ERR("train = { lr = -0.1; };", "inline:1: train.lr: -0.1 is out of range (must be >= 0)");
    TEXT_ERR("train = { grad_clip = -1.0; };", "inline:1: train.grad_clip: -1 is out of range (must be >= 0)");
    TEXT_ERR("train = { beta1 = -0.5; };", "inline:1: train.beta1: -0.5 is out of range [0, 1)");
    TEXT_ERR("train = { mode = \"multi\"; };", "inline:1: train.mode: 'multi' is not one of cdt, single");
    TEXT_ERR("train = { finetune = \"qlora\"; };", "inline:1: train.finetune: 'qlora' is not one of lora, full");
    TEXT_ERR("data = { task = \"chat\"; };", "inline:1: data.task: 'chat' is not one of prompt, span, text");
    TEXT_ERR("run = { device = \"gpu\"; };", "inline:1: run.device: 'gpu' is not one of cpu, cuda");
    TEXT_ERR("run = { out_dir = \"\"; };", "inline:1: run.out_dir: must not be empty");
    TEXT_ERR("train = { seed = true; };", "inline:1: train.seed: expected an integer, got a boolean");
    TEXT_ERR("data = { tokenizer = 5; };", "inline:1: data.tokenizer: expected a string, got an integer");
    TEXT_ERR("train = { lr = [1]; };", "inline:1: train.lr: expected a number, got an array [ ... ]");
    TEXT_ERR("model = { n_layer = 2; }\nmodel = { n_layer = 3; };", "inline:2: duplicate setting name");
    TEXT_ERR("model = { n_layer = 2;", "inline:1: syntax error");
    {
        char longdir[700];
        memset(longdir, 'a', sizeof(longdir));
        memcpy(longdir, "run = { out_dir = \"", 19);
        strcpy(longdir + 600, "\"; };");
        TEXT_ERR(longdir, "inline:1: run.out_dir: too long (581 characters, at most 511)");
    }
    TEXT_ERR("quant = { configs = (); };", "inline:1: quant.configs: has 0 configs, expected 1..64");
    TEXT_ERR("quant = { configs = { bits = 8; }; };",
             "inline:1: quant.configs: expected a list ( { ... }, ... ), got a group { ... }");
    TEXT_ERR("quant = { configs = ( 8 ); };", "inline:1: quant.configs.[0]: expected a group { ... }, got an integer");
    TEXT_ERR("quant = { configs = ( { bits = 8; wbits = 4; } ); };", "inline:1: quant.configs.[0].wbits: unknown key");
    TEXT_ERR("quant = { config = ( { bits = 8; } ); };", "inline:1: quant.config: unknown key");
    TEXT_ERR("quant = { defaults = { bits = 33; }; };", "inline:1: quant.defaults.bits: 33 is out of range 2..32");
    TEXT_ERR("quant = { defaults = { rank = 4; }; };", "inline:1: quant.defaults.rank: unknown key");
    TEXT_ERR("quant = { configs = ( { lora_rank = -1; } ); };",
             "inline:1: quant.configs.[0].lora_rank: -1 is out of range 0..4096");
    TEXT_ERR("quant = { defaults = { lora_rank = 4097; }; };",
             "inline:1: quant.defaults.lora_rank: 4097 is out of range 0..4096");
    TEXT_ERR("quant = { configs = ( { lora_alpha = 0; } ); };",
             "inline:1: quant.configs.[0].lora_alpha: 0 is out of range (must be > 0)");
    TEXT_ERR("quant = { configs = ( { act_bits = 1; } ); };",
             "inline:1: quant.configs.[0].act_bits: 1 is out of range 2..32");
    TEXT_ERR("quant = { configs = ( { components = ( 4 ); } ); };",
             "inline:1: quant.configs.[0].components: expected a group { ... }, got a list ( ... )");
    TEXT_ERR("quant = { configs = ( { layers = ( { bits = 4; } ); } ); };",
             "inline:1: quant.configs.[0].layers.[0]: missing 'blocks = [first, last]'");
    TEXT_ERR("quant = { configs = ( { layers = ( { blocks = [1, 0]; bits = 4; } ); } ); };",
             "inline:1: quant.configs.[0].layers.[0].blocks: first block 1 is after last block 0");
    TEXT_ERR("quant = { configs = ( { layers = ( { blocks = [0, 1]; w = 4; } ); } ); };",
             "inline:1: quant.configs.[0].layers.[0].w: unknown key");
    TEXT_ERR("quant = { configs = ( { per_layer = [8,8,8,8,8,8,8,8,40]; } ); };",
             "inline:1: quant.configs.[0].per_layer.[8]: 40 is out of range 2..32");
    TEXT_ERR("quant = { configs = ( { linears = ( { w = 4; } ); } ); };",
             "inline:1: quant.configs.[0].linears.[0]: missing 'name'");
    TEXT_ERR("quant = { configs = ( { linears = ( { name = \"h.0.mlp\"; w = 4; } ); } ); };",
             "inline:1: quant.configs.[0].linears.[0].name: unknown layer 'h.0.mlp' (model has 2 blocks)");
    TEXT_ERR("quant = { configs = ( { name = \"c1\"; }, { bits = 8; } ); };",
             "inline:1: quant.configs.[1]: default name 'c1' is already used by config [0]");
    {
        char many[4096] = "quant = { configs = (";
        for (int k = 0; k < 65; k++) strcat(many, k ? ", { bits = 8; }" : " { bits = 8; }");
        strcat(many, "); };");
        TEXT_ERR(many, "inline:1: quant.configs: has 65 configs, expected 1..64");
    }
    settings t;
    err[0] = 0;
    rc = settings_load(NULL, "model = { n_layer = 0; };", NULL, NULL, 0, &t, err, sizeof(err));
    CHECK(rc == -1 && strncmp(err, "<config>:1:", 11) == 0, "no label: %s", err);

    // ---- lora_rank = 0: no adapter, only with train.finetune = "full"
    rc = load_text("train = { finetune = \"full\"; };\n"
                   "quant = { configs = ( { name = \"fp32\"; bits = 32; lora_rank = 0; },\n"
                   "  { name = \"q4\"; bits = 4; lora_bits = 8; lora_rank = 0; lora_alpha = 16.0; }, { bits = 8; } ); };",
                   NULL, 0, &s);
    CHECK(rc == 0, "rank 0 with finetune full: %s", err);
    if (rc == 0) {
        CHECK(s.qs->K == 3 && s.qs->cfg[0].lora_rank == 0 && s.qs->cfg[0].lora_alpha == 0.0, "rank 0, alpha 0");
        CHECK(s.qs->cfg[1].lora_rank == 0 && s.qs->cfg[1].lora_alpha == 0.0, "rank 0 ignores a given alpha: %g",
              s.qs->cfg[1].lora_alpha);
        CHECK(s.qs->cfg[2].lora_rank == 8 && s.qs->cfg[2].lora_alpha == 16.0, "other configs keep the default rank");
        check_round_trip(&s, __LINE__);
        settings_free(&s);
    }
    rc = load_text("train = { finetune = \"full\"; }; quant = { defaults = { lora_rank = 0; lora_alpha = 4.0; }; };",
                   NULL, 0, &s);
    CHECK(rc == 0 && s.qs->K == 1 && s.qs->cfg[0].lora_rank == 0 && s.qs->cfg[0].lora_alpha == 0.0,
          "defaults rank 0 for the implicit fp32 config: %s", err);
    if (rc == 0) settings_free(&s);
    rc = load_file("configs/pretrain_124m.cfg", NULL, 0, &s);
    CHECK(rc == 0 && !strcmp(s.finetune, "full") && s.qs->K == 1 && s.qs->cfg[0].lora_rank == 0,
          "pretrain_124m.cfg trains without an adapter: %s", err);
    if (rc == 0) settings_free(&s);
    TEXT_ERR("quant = { configs = ( { bits = 8; lora_rank = 0; } ); };",
             "inline:1: quant.configs.[0].lora_rank: 0 (no adapter) needs train.finetune = \"full\" (in LoRA mode "
             "config 'c0' would have nothing to train)");
    TEXT_ERR("train = { finetune = \"lora\"; };\nquant = { configs = ( { name = \"a\"; bits = 8; },\n"
             "  { name = \"fp\"; lora_rank = 0; } ); };",
             "inline:3: quant.configs.[1].lora_rank: 0 (no adapter) needs train.finetune = \"full\" (in LoRA mode "
             "config 'fp' would have nothing to train)");
    TEXT_ERR("quant = {\n defaults = { lora_rank = 0; };\n configs = ( { bits = 8; lora_rank = 4; }, { bits = 4; } ); };",
             "inline:2: quant.defaults.lora_rank: 0 (no adapter) needs train.finetune = \"full\" (in LoRA mode "
             "config 'c1' would have nothing to train)");
    TEXT_ERR("quant = { defaults = { lora_rank = 0; }; };",
             "inline:1: quant.defaults.lora_rank: 0 (no adapter) needs train.finetune = \"full\" (in LoRA mode "
             "config 'fp32' would have nothing to train)");
    SET_ERR("train = { finetune = \"full\"; };\nquant = { configs = ( { bits = 8; lora_rank = 0; } ); };",
            "train.finetune=lora",
            "inline:2: quant.configs.[0].lora_rank: 0 (no adapter) needs train.finetune = \"full\" (in LoRA mode "
            "config 'c0' would have nothing to train)");
    SET_ERR("quant = { configs = ( { bits = 8; }, { bits = 4; } ); };", "quant.configs.[1].lora_rank=0",
            "--set quant.configs.[1].lora_rank=0: 0 (no adapter) needs train.finetune = \"full\" (in LoRA mode "
            "config 'c1' would have nothing to train)");

    // ---- quant syntaxes, per linear (mixed.cfg: n_layer 3 -> 13 linears)
    rc = load_file(FIX "mixed.cfg", NULL, 0, &s);
    CHECK(rc == 0, "mixed: %s", err);
    if (rc == 0) {
        CHECK(s.qs->K == 5 && s.qs->n_linear == 13, "shape");
        int uni[13] = {6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6};
        int comp[13] = {4, 4, 8, 8, 4, 4, 8, 8, 4, 4, 8, 8, 16};
        int lay[13] = {8, 8, 8, 8, 3, 3, 3, 3, 2, 2, 2, 2, 8};
        int per[13] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
        int named[13] = {3, 7, 7, 7, 5, 5, 5, 5, 5, 5, 5, 5, 32};
        CHECK(w_all(&s, 0, uni), "uniform");
        CHECK(w_all(&s, 1, comp), "components");
        CHECK(w_all(&s, 2, lay), "layers");
        CHECK(w_all(&s, 3, per), "per_layer");
        CHECK(w_all(&s, 4, named), "linears");
        int act_ok = 1;
        for (int l = 0; l < 13; l++) {
            int a_lay = (l >= 4 && l < 12) ? 6 : 8;
            act_ok &= s.qs->cfg[0].lin[l].a == 8 && s.qs->cfg[2].lin[l].a == a_lay && s.qs->cfg[3].lin[l].b == 32 &&
                      s.qs->cfg[3].lin[l].lora == 32;
            if (l != 0) act_ok &= bits_are(&s, 4, l, named[l], 8, 16, 8);
        }
        CHECK(act_ok, "act/bias/lora bits");
        CHECK(bits_are(&s, 4, 0, 3, 4, 12, 6), "named linear overrides every field");
        CHECK(s.qs->cfg[0].lora_rank == 4 && s.qs->cfg[0].lora_alpha == 8.0, "defaults rank, alpha = 2*rank");
        CHECK(s.qs->cfg[4].lora_rank == 16 && s.qs->cfg[4].lora_alpha == 8.5, "config rank/alpha");
        CHECK(!strcmp(s.qs->cfg[2].name, "lay"), "name");
        // C = 16, V = 257: per-block params 768+256+1024+1024, head 4112 (hand computed scores:
        // named 180736, per 128992, comp 127232, uniform6 79968, lay 72832)
        int want[5] = {4, 3, 1, 0, 2};
        CHECK(memcmp(s.qs->order, want, sizeof(want)) == 0, "order %d %d %d %d %d", s.qs->order[0], s.qs->order[1],
              s.qs->order[2], s.qs->order[3], s.qs->order[4]);
        check_round_trip(&s, __LINE__);
        settings_free(&s);
    }
    // a larger vocabulary moves the head-heavy config up
    {
        const char *sets[] = {"model.vocab_size=50257"};
        rc = load_file(FIX "mixed.cfg", sets, 1, &s);
        CHECK(rc == 0 && s.vocab_size == 50257, "%s", err);
        if (rc == 0) {
            // head weights dominate: named (32) > comp (16) > per (14) > lay (8) > uniform (6)
            int want[5] = {4, 1, 3, 2, 0};
            CHECK(memcmp(s.qs->order, want, sizeof(want)) == 0, "order %d %d %d %d %d", s.qs->order[0],
                  s.qs->order[1], s.qs->order[2], s.qs->order[3], s.qs->order[4]);
            settings_free(&s);
        }
    }

    // ---- --set
    {
        const char *sets[] = {"train.lr=1e-3", "train.steps=5", "run.out_dir=runs/x", "data.task=\"span\"",
                              "train.beta1=0.8", "model.vocab_size=300", "quant.configs.[1].bits=4",
                              "quant.configs.[0].lora_rank=32", "quant.configs[2].act_bits=8", "train.steps=7",
                              "data.prompt_template=Q: {question} A:", "eval.batch_size=3"};
        int ns = (int)(sizeof(sets) / sizeof(sets[0]));
        rc = load_file("tests/fixtures/configs/quickstart_v1.cfg", sets, ns, &s);
        CHECK(rc == 0, "sets: %s", err);
        if (rc == 0) {
            CHECK(s.lr == 1e-3 && s.steps == 7 && !strcmp(s.out_dir, "runs/x") && !strcmp(s.task, "span"), "existing");
            CHECK(s.beta1 == 0.8 && s.vocab_size == 300 && s.eval_batch_size == 3, "new keys");
            CHECK(!strcmp(s.prompt_template, "Q: {question} A:"), "bare words with spaces: %s", s.prompt_template);
            CHECK(bits_are(&s, 1, 0, 4, 32, 32, 32) && bits_are(&s, 1, 8, 4, 32, 32, 32), "list element");
            CHECK(s.qs->cfg[0].lora_rank == 32 && s.qs->cfg[0].lora_alpha == 16.0, "new member in element");
            CHECK(bits_are(&s, 2, 3, 6, 8, 32, 32), "a[2] form");
            CHECK(s.batch_size == 16 && s.warmup == 30, "untouched");
            // 16 > 6 > 5 > 4 = 4: configs 1 and 4 tie exactly and keep file order
            int want[5] = {0, 2, 3, 1, 4};
            CHECK(memcmp(s.qs->order, want, sizeof(want)) == 0, "order %d %d %d %d %d", s.qs->order[0],
                  s.qs->order[1], s.qs->order[2], s.qs->order[3], s.qs->order[4]);
            check_round_trip(&s, __LINE__);
            settings_free(&s);
        }
        const char *sets2[] = {"quant.configs=({name=\"only\"; bits=3;})", "train.steps=7", "model.n_layer=4"};
        rc = load_text("", sets2, 3, &s);
        CHECK(rc == 0 && s.qs->K == 1 && !strcmp(s.qs->cfg[0].name, "only") && s.qs->cfg[0].lin[16].w == 3 &&
                  s.steps == 7 && s.n_layer == 4 && s.qs->n_linear == 17,
              "set groups into an empty config: %s", err);
        if (rc == 0) settings_free(&s);
        const char *sets3[] = {"quant.configs.[3].per_layer.[0]=16", "quant.configs.[3].per_layer.[12]=20",
                               "quant.configs.[1].components.mlp=5", "quant.configs.[2].layers.[0].blocks.[0]=0"};
        rc = load_file(FIX "mixed.cfg", sets3, 4, &s);
        CHECK(rc == 0, "array elements: %s", err);
        if (rc == 0) {
            int per[13] = {16, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 20};
            int comp[13] = {4, 4, 5, 5, 4, 4, 5, 5, 4, 4, 5, 5, 16};
            int lay[13] = {3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 8};
            CHECK(w_all(&s, 3, per) && w_all(&s, 1, comp) && w_all(&s, 2, lay), "element overrides");
            check_round_trip(&s, __LINE__);
            settings_free(&s);
        }
    }
    SET_ERR("", "train.lr=abc", "--set train.lr=abc: expected a number, got a string");
    SET_ERR("", "train.steps=1.5", "--set train.steps=1.5: expected an integer, got a float");
    SET_ERR("", "train.lrr=1", "--set train.lrr=1: unknown key");
    SET_ERR("", "optim.lr=1", "--set optim.lr=1: unknown key");
    SET_ERR("", "quant.configs.[0].foo=1", "--set quant.configs.[0].foo=1: unknown key");
    SET_ERR("", "train.lr", "--set train.lr: expected key=value");
    SET_ERR("", "train..lr=1", "--set train..lr=1: bad key 'train..lr'");
    SET_ERR("", "=1", "--set =1: expected key=value");
    SET_ERR("", "train.batch_size=0", "--set train.batch_size=0: 0 is out of range (must be >= 1)");
    SET_ERR("", "quant.configs.[0].bits=4", "--set quant.configs.[0].bits=4: quant.configs has no element [0]");
    SET_ERR("quant = { configs = ( { bits = 8; }, { bits = 4; } ); };", "quant.configs.[1].bits=1",
            "--set quant.configs.[1].bits=1: 1 is out of range 2..32");
    SET_ERR("quant = { configs = ( { bits = 8; }, { bits = 4; } ); };", "quant.configs.[2].bits=4",
            "--set quant.configs.[2].bits=4: quant.configs has no element [2] (it has 2)");
    SET_ERR("", "model={n_layr=2;}", "--set model={n_layr=2;}: model.n_layr: unknown key");
    SET_ERR("", "model.n_embd=65", "--set model.n_embd=65: 65 is not divisible by model.n_head (4)");
    SET_ERR("", "run.device=tpu", "--set run.device=tpu: 'tpu' is not one of cpu, cuda");
    SET_ERR("", "train.stop_at=true", "--set train.stop_at=true: expected an integer, got a boolean");
    SET_ERR("quant = { configs = ( { per_layer = [8,8,8,8,8,8,8,8,8]; } ); };", "quant.configs.[0].per_layer.[1]=6.5",
            "--set quant.configs.[0].per_layer.[1]=6.5: quant.configs.[0].per_layer.[1] is an integer; an element "
            "cannot change its type");
    {
        // the file's own errors still point into the file when --set touched other keys
        const char *sets[] = {"train.steps=3"};
        expect_file_error(FIX "bad_bits.cfg", sets, 1, FIX "bad_bits.cfg:5: quant.configs.[1].bits: 1 is out of range 2..32",
                          __LINE__);
        const char *fix[] = {"quant.configs.[1].bits=2"};
        rc = load_file(FIX "bad_bits.cfg", fix, 1, &s);
        CHECK(rc == 0 && s.qs->cfg[1].lin[0].w == 2, "--set repairs the file: %s", err);
        if (rc == 0) settings_free(&s);
    }

    return check_summary("test_settings");
}
