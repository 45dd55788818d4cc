// Run settings: libconfig file -> --set overrides -> schema validation -> settings struct.
// Every setting is checked against a static schema; messages name the file and line
// ("FILE:LINE: key.path: problem") or the --set argument that introduced the value.
#include "settings.h"
#include <libconfig.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWQ_DEFAULT_PROMPT "Context: {context}\nQuestion: {question}\nAnswer:"
#define MAX_CONFIGS 64
#define HEAD_VOCAB_FOR_ORDER 257   // byte tokenizer vocabulary, when vocab_size is "from tokenizer"

enum { T_INT, T_FLOAT, T_BOOL, T_STR, T_U64 };
// range flags
enum { R_NOHI = 1, R_LO_OPEN = 2, R_HI_OPEN = 4, R_NONEMPTY = 8 };

typedef struct {
    const char *group, *key;
    int type;
    size_t off, size;       // field in settings; size for strings
    double lo, hi;
    int flags;
    const char *enums;      // "a|b|c" for strings restricted to a set
    double def_n;
    const char *def_s;
} key_def;

#define F(field) offsetof(settings, field), sizeof(((settings *)0)->field)
static const key_def schema[] = {
    {"model", "n_layer", T_INT, F(n_layer), 1, 96, 0, NULL, 2, NULL},
    {"model", "n_head", T_INT, F(n_head), 1, 128, 0, NULL, 4, NULL},
    {"model", "n_embd", T_INT, F(n_embd), 1, 16384, 0, NULL, 64, NULL},
    {"model", "n_ctx", T_INT, F(n_ctx), 1, 8192, 0, NULL, 160, NULL},
    {"model", "vocab_size", T_INT, F(vocab_size), 0, 1 << 24, 0, NULL, 0, NULL},
    {"model", "init_from", T_STR, F(init_from), 0, 0, 0, NULL, 0, ""},
    {"data", "task", T_STR, F(task), 0, 0, 0, "prompt|span|text", 0, "prompt"},
    {"data", "tokenizer", T_STR, F(tokenizer), 0, 0, R_NONEMPTY, NULL, 0, "byte"},
    {"data", "train_file", T_STR, F(train_file), 0, 0, R_NONEMPTY, NULL, 0, "synthetic"},
    {"data", "eval_file", T_STR, F(eval_file), 0, 0, R_NONEMPTY, NULL, 0, "synthetic"},
    {"data", "split_file", T_STR, F(split_file), 0, 0, 0, NULL, 0, ""},
    {"data", "prompt_template", T_STR, F(prompt_template), 0, 0, 0, NULL, 0, SWQ_DEFAULT_PROMPT},
    {"data", "synthetic_articles_train", T_INT, F(synthetic_articles_train), 1, 10000000, 0, NULL, 400, NULL},
    {"data", "synthetic_articles_eval", T_INT, F(synthetic_articles_eval), 1, 10000000, 0, NULL, 40, NULL},
    {"data", "synthetic_facts", T_INT, F(synthetic_facts), 1, 6, 0, NULL, 6, NULL},
    {"data", "seq_len", T_INT, F(seq_len), 0, 8192, 0, NULL, 0, NULL},
    {"data", "doc_stride", T_INT, F(doc_stride), 1, 8192, 0, NULL, 128, NULL},
    {"data", "max_answer_tokens", T_INT, F(max_answer_tokens), 1, 8192, 0, NULL, 16, NULL},
    {"train", "mode", T_STR, F(mode), 0, 0, 0, "cdt|single", 0, "cdt"},
    {"train", "finetune", T_STR, F(finetune), 0, 0, 0, "lora|full", 0, "lora"},
    {"train", "single_config", T_INT, F(single_config), 0, MAX_CONFIGS - 1, 0, NULL, 0, NULL},
    {"train", "steps", T_INT, F(steps), 0, 0, R_NOHI, NULL, 100, NULL},
    {"train", "batch_size", T_INT, F(batch_size), 1, 0, R_NOHI, NULL, 8, NULL},
    {"train", "lr", T_FLOAT, F(lr), 0, 0, R_NOHI, NULL, 2e-4, NULL},
    {"train", "beta1", T_FLOAT, F(beta1), 0, 1, R_HI_OPEN, NULL, 0.9, NULL},
    {"train", "beta2", T_FLOAT, F(beta2), 0, 1, R_HI_OPEN, NULL, 0.999, NULL},
    {"train", "eps", T_FLOAT, F(eps), 0, 0, R_NOHI | R_LO_OPEN, NULL, 1e-8, NULL},
    {"train", "weight_decay", T_FLOAT, F(weight_decay), 0, 0, R_NOHI, NULL, 0.0, NULL},
    {"train", "grad_clip", T_FLOAT, F(grad_clip), 0, 0, R_NOHI, NULL, 1.0, NULL},
    {"train", "warmup", T_INT, F(warmup), 0, 0, R_NOHI, NULL, 0, NULL},
    {"train", "schedule", T_STR, F(schedule), 0, 0, 0, "cosine|linear|constant", 0, "cosine"},
    {"train", "min_lr_frac", T_FLOAT, F(min_lr_frac), 0, 1, 0, NULL, 0.0, NULL},
    {"train", "beta", T_FLOAT, F(beta), 0, 0, R_NOHI, NULL, 1.0, NULL},
    {"train", "seed", T_U64, F(seed), 0, 0, R_NOHI, NULL, 1234, NULL},
    {"train", "log_every", T_INT, F(log_every), 0, 0, R_NOHI, NULL, 10, NULL},
    {"train", "eval_every", T_INT, F(eval_every), 0, 0, R_NOHI, NULL, 0, NULL},
    {"train", "ckpt_every", T_INT, F(ckpt_every), 0, 0, R_NOHI, NULL, 0, NULL},
    {"train", "stop_at", T_INT, F(stop_at), 0, 0, R_NOHI, NULL, 0, NULL},
    {"train", "threads", T_INT, F(threads), 0, 4096, 0, NULL, 0, NULL},
    {"eval", "max_questions", T_INT, F(eval_max_questions), 0, 0, R_NOHI, NULL, 0, NULL},
    {"eval", "batch_size", T_INT, F(eval_batch_size), 1, 0, R_NOHI, NULL, 16, NULL},
    {"run", "device", T_STR, F(device), 0, 0, 0, "cpu|cuda", 0, "cpu"},
    {"run", "precision", T_STR, F(precision), 0, 0, 0, "fp32|tf32|bf16", 0, "fp32"},
    {"run", "out_dir", T_STR, F(out_dir), 0, 0, R_NONEMPTY, NULL, 0, "runs/default"},
};
#undef F
#define N_SCHEMA ((int)(sizeof(schema) / sizeof(schema[0])))
static const char *scalar_groups[] = {"model", "data", "train", "eval", "run"};
#define N_SCALAR_GROUPS 5

// quant keys (NULL-terminated lists)
static const char *quant_keys[] = {"defaults", "configs", NULL};
static const char *defaults_keys[] = {"act_bits", "bias_bits", "lora_bits", "bits", "lora_rank", "lora_alpha", NULL};
static const char *config_keys[] = {"name", "bits", "act_bits", "bias_bits", "lora_bits", "lora_rank",
                                    "lora_alpha", "components", "layers", "per_layer", "linears", NULL};
static const char *component_keys[] = {"attn", "mlp", "head", NULL};
static const char *layers_keys[] = {"blocks", "bits", "act_bits", NULL};
static const char *linears_keys[] = {"name", "w", "a", "b", "lora", NULL};

static int in_list(const char *const *list, const char *s) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0) return 1;
    return 0;
}

typedef struct {
    const char *file;   // path or label, for messages
    char *err;
    size_t errlen;
} ctx_t;

// ---------------------------------------------------------------------------------
// messages

static void append(char *buf, size_t n, const char *s) {
    size_t l = strlen(buf), m = strlen(s);
    if (l + m >= n) m = n - 1 - l;
    memcpy(buf + l, s, m);
    buf[l + m] = 0;
}

static void setting_path(const config_setting_t *s, char *buf, size_t n) {
    const config_setting_t *chain[64];
    int depth = 0;
    for (; s && !config_setting_is_root(s) && depth < 64; s = config_setting_parent(s)) chain[depth++] = s;
    buf[0] = 0;
    for (int i = depth - 1; i >= 0; i--) {
        char idx[24];
        const char *name = config_setting_name(chain[i]);
        if (!name) snprintf(idx, sizeof(idx), "[%d]", config_setting_index(chain[i]));
        if (buf[0]) append(buf, n, ".");
        append(buf, n, name ? name : idx);
    }
}

// "<where>: <path>: <problem>"; where = FILE:LINE, or the --set argument that made s
static int fail_at(ctx_t *c, const config_setting_t *s, const char *fmt, ...) {
    char path[512], where[1024], msg[512];
    setting_path(s, path, sizeof(path));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *set_arg = s ? (const char *)config_setting_get_hook(s) : NULL;
    if (set_arg) {
        size_t pl = strlen(path);
        snprintf(where, sizeof(where), "--set %s", set_arg);
        if (strncmp(set_arg, path, pl) == 0 && set_arg[pl] == '=')   // the path is in the argument already
            snprintf(c->err, c->errlen, "%s: %s", where, msg);
        else
            snprintf(c->err, c->errlen, "%s: %s: %s", where, path, msg);
        return -1;
    }
    const char *file = s && config_setting_source_file(s) ? config_setting_source_file(s) : c->file;
    if (s && config_setting_source_line(s) > 0)
        snprintf(where, sizeof(where), "%s:%d", file, (int)config_setting_source_line(s));
    else
        snprintf(where, sizeof(where), "%s", file);
    snprintf(c->err, c->errlen, "%s: %s: %s", where, path, msg);
    return -1;
}

// For a key that may be absent from the file (then only the file is named).
static int fail_key(ctx_t *c, config_t *cf, const char *key, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    config_setting_t *s = config_lookup(cf, key);
    if (s) return fail_at(c, s, "%s", msg);
    snprintf(c->err, c->errlen, "%s: %s: %s", c->file, key, msg);
    return -1;
}

static const char *type_name(const config_setting_t *s) {
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_GROUP: return "a group { ... }";
    case CONFIG_TYPE_LIST: return "a list ( ... )";
    case CONFIG_TYPE_ARRAY: return "an array [ ... ]";
    default: return "nothing";
    }
}

static int is_int(const config_setting_t *s) {
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

// ---------------------------------------------------------------------------------
// typed, range-checked readers

static int read_int(ctx_t *c, const config_setting_t *s, long long lo, long long hi, long long *v) {
    if (!is_int(s)) return fail_at(c, s, "expected an integer, got %s", type_name(s));
    long long x = config_setting_get_int64(s);
    if (x < lo || x > hi) {
        if (hi >= INT_MAX) return fail_at(c, s, "%lld is out of range (must be >= %lld)", x, lo);
        return fail_at(c, s, "%lld is out of range %lld..%lld", x, lo, hi);
    }
    *v = x;
    return 0;
}

static int read_bits(ctx_t *c, const config_setting_t *s, unsigned char *v) {
    long long x = 0;
    if (read_int(c, s, 2, 32, &x)) return -1;
    *v = (unsigned char)x;
    return 0;
}

static int read_num(ctx_t *c, const config_setting_t *s, double lo, double hi, int flags, double *v) {
    if (!config_setting_is_number(s)) return fail_at(c, s, "expected a number, got %s", type_name(s));
    double x = is_int(s) ? (double)config_setting_get_int64(s) : config_setting_get_float(s);
    if (!isfinite(x)) return fail_at(c, s, "expected a finite number");
    int bad = (flags & R_LO_OPEN) ? !(x > lo) : !(x >= lo);
    if (!(flags & R_NOHI)) bad |= (flags & R_HI_OPEN) ? !(x < hi) : !(x <= hi);
    if (bad) {
        if (flags & R_NOHI) return fail_at(c, s, "%g is out of range (must be %s %g)", x, (flags & R_LO_OPEN) ? ">" : ">=", lo);
        return fail_at(c, s, "%g is out of range %s%g, %g%s", x, (flags & R_LO_OPEN) ? "(" : "[", lo, hi,
                       (flags & R_HI_OPEN) ? ")" : "]");
    }
    *v = x;
    return 0;
}

static int read_str(ctx_t *c, const config_setting_t *s, size_t cap, char *dst) {
    if (config_setting_type(s) != CONFIG_TYPE_STRING) return fail_at(c, s, "expected a string, got %s", type_name(s));
    const char *v = config_setting_get_string(s);
    if (strlen(v) >= cap) return fail_at(c, s, "too long (%zu characters, at most %zu)", strlen(v), cap - 1);
    snprintf(dst, cap, "%s", v);
    return 0;
}

// members of group s must all be in keys
static int check_group(ctx_t *c, const config_setting_t *s, const char *const *keys) {
    if (!config_setting_is_group(s)) return fail_at(c, s, "expected a group { ... }, got %s", type_name(s));
    for (int i = 0; i < config_setting_length(s); i++) {
        config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        if (!in_list(keys, config_setting_name(m))) return fail_at(c, m, "unknown key");
    }
    return 0;
}

// ---------------------------------------------------------------------------------
// scalar groups

static const key_def *find_key(const char *group, const char *key) {
    for (int i = 0; i < N_SCHEMA; i++)
        if (strcmp(schema[i].group, group) == 0 && strcmp(schema[i].key, key) == 0) return &schema[i];
    return NULL;
}

static void store_default(settings *out, const key_def *d) {
    char *p = (char *)out + d->off;
    switch (d->type) {
    case T_INT: *(int *)p = (int)d->def_n; break;
    case T_FLOAT: *(double *)p = d->def_n; break;
    case T_BOOL: *(int *)p = d->def_n != 0; break;
    case T_U64: *(uint64_t *)p = (uint64_t)d->def_n; break;
    case T_STR: snprintf(p, d->size, "%s", d->def_s); break;
    }
}

static int read_key(ctx_t *c, const config_setting_t *s, const key_def *d, settings *out) {
    char *p = (char *)out + d->off;
    long long hi = (d->flags & R_NOHI) ? LLONG_MAX : (long long)d->hi;
    long long iv;
    switch (d->type) {
    case T_INT:
        if (d->flags & R_NOHI) hi = INT_MAX;
        if (read_int(c, s, (long long)d->lo, hi, &iv)) return -1;
        *(int *)p = (int)iv;
        return 0;
    case T_U64:
        if (read_int(c, s, (long long)d->lo, hi, &iv)) return -1;
        *(uint64_t *)p = (uint64_t)iv;
        return 0;
    case T_FLOAT: return read_num(c, s, d->lo, d->hi, d->flags, (double *)p);
    case T_BOOL:
        if (config_setting_type(s) != CONFIG_TYPE_BOOL) return fail_at(c, s, "expected true or false, got %s", type_name(s));
        *(int *)p = config_setting_get_bool(s);
        return 0;
    case T_STR:
        if (read_str(c, s, d->size, p)) return -1;
        if ((d->flags & R_NONEMPTY) && !p[0]) return fail_at(c, s, "must not be empty");
        if (d->enums) {
            size_t n = strlen(p);
            const char *e = d->enums;
            int ok = 0;
            while (*e) {
                size_t m = strcspn(e, "|");
                if (m == n && n > 0 && strncmp(e, p, n) == 0) ok = 1;
                e += m + (e[m] == '|');
            }
            if (!ok) {
                char alts[128];
                size_t o = 0;
                for (const char *q = d->enums; *q && o + 3 < sizeof(alts); q++) {
                    if (*q == '|') { alts[o++] = ','; alts[o++] = ' '; }
                    else alts[o++] = *q;
                }
                alts[o] = 0;
                return fail_at(c, s, "'%s' is not one of %s", p, alts);
            }
        }
        return 0;
    }
    return 0;
}

static int read_scalar_groups(ctx_t *c, config_t *cf, settings *out) {
    config_setting_t *root = config_root_setting(cf);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *g = config_setting_get_elem(root, (unsigned)i);
        const char *gname = config_setting_name(g);
        int scalar = 0;
        for (int j = 0; j < N_SCALAR_GROUPS; j++)
            if (strcmp(gname, scalar_groups[j]) == 0) scalar = 1;
        if (!scalar && strcmp(gname, "quant") != 0) return fail_at(c, g, "unknown key");
        if (!config_setting_is_group(g)) return fail_at(c, g, "expected a group { ... }, got %s", type_name(g));
        if (!scalar) continue;
        for (int k = 0; k < config_setting_length(g); k++) {
            config_setting_t *s = config_setting_get_elem(g, (unsigned)k);
            const key_def *d = find_key(gname, config_setting_name(s));
            if (!d) return fail_at(c, s, "unknown key");
            if (read_key(c, s, d, out)) return -1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------
// quant

typedef struct {
    unsigned char w, a, b, lora;
    int rank;
    double alpha;
    int has_alpha;
} qdefaults;

static int block_range(ctx_t *c, const config_setting_t *blocks, int L, int *first, int *last) {
    int t = config_setting_type(blocks);
    if (is_int(blocks)) {
        long long b = config_setting_get_int64(blocks);
        if (b < 0 || b >= L) return fail_at(c, blocks, "block %lld is out of range 0..%d (model has %d blocks)", b, L - 1, L);
        *first = *last = (int)b;
        return 0;
    }
    if ((t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) || config_setting_length(blocks) < 1 ||
        config_setting_length(blocks) > 2)
        return fail_at(c, blocks, "expected [first, last], got %s", type_name(blocks));
    int v[2];
    int n = config_setting_length(blocks);
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(blocks, (unsigned)i);
        if (!is_int(e)) return fail_at(c, e, "expected an integer, got %s", type_name(e));
        long long b = config_setting_get_int64(e);
        if (b < 0 || b >= L) return fail_at(c, e, "block %lld is out of range 0..%d (model has %d blocks)", b, L - 1, L);
        v[i] = (int)b;
    }
    if (n == 1) v[1] = v[0];
    if (v[0] > v[1]) return fail_at(c, blocks, "first block %d is after last block %d", v[0], v[1]);
    *first = v[0];
    *last = v[1];
    return 0;
}

static int read_defaults(ctx_t *c, const config_setting_t *d, qdefaults *q) {
    *q = (qdefaults){32, 32, 32, 32, 8, 16.0, 0};
    if (!d) return 0;
    if (check_group(c, d, defaults_keys)) return -1;
    config_setting_t *s;
    long long r;
    if ((s = config_setting_get_member(d, "bits")) && read_bits(c, s, &q->w)) return -1;
    if ((s = config_setting_get_member(d, "act_bits")) && read_bits(c, s, &q->a)) return -1;
    if ((s = config_setting_get_member(d, "bias_bits")) && read_bits(c, s, &q->b)) return -1;
    if ((s = config_setting_get_member(d, "lora_bits")) && read_bits(c, s, &q->lora)) return -1;
    if ((s = config_setting_get_member(d, "lora_rank"))) {
        if (read_int(c, s, 0, 4096, &r)) return -1;
        q->rank = (int)r;
    }
    if ((s = config_setting_get_member(d, "lora_alpha"))) {
        if (read_num(c, s, 0, 0, R_NOHI | R_LO_OPEN, &q->alpha)) return -1;
        q->has_alpha = 1;
    }
    return 0;
}

static int read_config(ctx_t *c, const config_setting_t *g, const qdefaults *dq, qconfig_set *qs, int k) {
    int L = qs->n_layer, NL = qs->n_linear;
    qconfig *q = &qs->cfg[k];
    if (check_group(c, g, config_keys)) return -1;
    config_setting_t *s;
    long long r;

    if ((s = config_setting_get_member(g, "name"))) {
        if (read_str(c, s, sizeof(q->name), q->name)) return -1;
        if (!q->name[0]) return fail_at(c, s, "must not be empty");
        for (int j = 0; j < k; j++)
            if (strcmp(qs->cfg[j].name, q->name) == 0)
                return fail_at(c, s, "name '%s' is already used by config [%d]", q->name, j);
    } else {
        snprintf(q->name, sizeof(q->name), "c%d", k);
        for (int j = 0; j < k; j++)
            if (strcmp(qs->cfg[j].name, q->name) == 0)
                return fail_at(c, g, "default name '%s' is already used by config [%d]", q->name, j);
    }
    lin_bits base = {dq->w, dq->a, dq->b, dq->lora};
    if ((s = config_setting_get_member(g, "bits")) && read_bits(c, s, &base.w)) return -1;
    if ((s = config_setting_get_member(g, "act_bits")) && read_bits(c, s, &base.a)) return -1;
    if ((s = config_setting_get_member(g, "bias_bits")) && read_bits(c, s, &base.b)) return -1;
    if ((s = config_setting_get_member(g, "lora_bits")) && read_bits(c, s, &base.lora)) return -1;
    q->lora_rank = dq->rank;
    if ((s = config_setting_get_member(g, "lora_rank"))) {
        if (read_int(c, s, 0, 4096, &r)) return -1;
        q->lora_rank = (int)r;
    }
    q->lora_alpha = dq->has_alpha ? dq->alpha : 2.0 * q->lora_rank;
    if ((s = config_setting_get_member(g, "lora_alpha")) &&
        read_num(c, s, 0, 0, R_NOHI | R_LO_OPEN, &q->lora_alpha))
        return -1;
    if (q->lora_rank == 0) q->lora_alpha = 0;   // no adapter: alpha has nothing to scale
    for (int l = 0; l < NL; l++) q->lin[l] = base;

    if ((s = config_setting_get_member(g, "components"))) {
        if (!config_setting_is_group(s)) return fail_at(c, s, "expected a group { ... }, got %s", type_name(s));
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
            int comp = qconfig_component_index(config_setting_name(m));
            if (comp < 0)
                return fail_at(c, m, "unknown component '%s' (expected attn, mlp or head)", config_setting_name(m));
            unsigned char b;
            if (read_bits(c, m, &b)) return -1;
            for (int l = 0; l < NL; l++)
                if (qconfig_component(L, l) == comp) q->lin[l].w = b;
        }
    }
    if ((s = config_setting_get_member(g, "layers"))) {
        if (!config_setting_is_list(s)) return fail_at(c, s, "expected a list ( ... ), got %s", type_name(s));
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (check_group(c, e, layers_keys)) return -1;
            config_setting_t *bl = config_setting_get_member(e, "blocks");
            if (!bl) return fail_at(c, e, "missing 'blocks = [first, last]'");
            int first = 0, last = 0;
            if (block_range(c, bl, L, &first, &last)) return -1;
            unsigned char wb = 0, ab = 0;
            config_setting_t *m;
            if ((m = config_setting_get_member(e, "bits")) && read_bits(c, m, &wb)) return -1;
            if ((m = config_setting_get_member(e, "act_bits")) && read_bits(c, m, &ab)) return -1;
            for (int b = first; b <= last; b++)
                for (int j = 0; j < LIN_PER_BLOCK; j++) {
                    if (wb) q->lin[b * LIN_PER_BLOCK + j].w = wb;
                    if (ab) q->lin[b * LIN_PER_BLOCK + j].a = ab;
                }
        }
    }
    if ((s = config_setting_get_member(g, "per_layer"))) {
        if (!config_setting_is_array(s) && !config_setting_is_list(s))
            return fail_at(c, s, "expected an array [ ... ], got %s", type_name(s));
        if (config_setting_length(s) != NL)
            return fail_at(c, s, "has %d values, expected %d (4*n_layer+1)", config_setting_length(s), NL);
        for (int l = 0; l < NL; l++)
            if (read_bits(c, config_setting_get_elem(s, (unsigned)l), &q->lin[l].w)) return -1;
    }
    if ((s = config_setting_get_member(g, "linears"))) {
        if (!config_setting_is_list(s)) return fail_at(c, s, "expected a list ( ... ), got %s", type_name(s));
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (check_group(c, e, linears_keys)) return -1;
            config_setting_t *nm = config_setting_get_member(e, "name");
            if (!nm) return fail_at(c, e, "missing 'name'");
            char name[64];
            if (read_str(c, nm, sizeof(name), name)) return -1;
            int l = qconfig_linear_index(L, name);
            if (l < 0) return fail_at(c, nm, "unknown layer '%s' (model has %d blocks)", name, L);
            config_setting_t *m;
            if ((m = config_setting_get_member(e, "w")) && read_bits(c, m, &q->lin[l].w)) return -1;
            if ((m = config_setting_get_member(e, "a")) && read_bits(c, m, &q->lin[l].a)) return -1;
            if ((m = config_setting_get_member(e, "b")) && read_bits(c, m, &q->lin[l].b)) return -1;
            if ((m = config_setting_get_member(e, "lora")) && read_bits(c, m, &q->lin[l].lora)) return -1;
        }
    }
    return 0;
}

static int read_quant(ctx_t *c, config_t *cf, settings *out) {
    config_setting_t *quant = config_lookup(cf, "quant");
    config_setting_t *configs = NULL;
    qdefaults dq;
    if (quant) {
        if (check_group(c, quant, quant_keys)) return -1;
        if (read_defaults(c, config_setting_get_member(quant, "defaults"), &dq)) return -1;
        configs = config_setting_get_member(quant, "configs");
    } else if (read_defaults(c, NULL, &dq)) {
        return -1;
    }
    int L = out->n_layer;
    int K = 1;
    if (configs) {
        if (!config_setting_is_list(configs))
            return fail_at(c, configs, "expected a list ( { ... }, ... ), got %s", type_name(configs));
        K = config_setting_length(configs);
        if (K < 1 || K > MAX_CONFIGS) return fail_at(c, configs, "has %d configs, expected 1..%d", K, MAX_CONFIGS);
    }
    out->qs = qconfig_set_new(L, K);
    if (!out->qs) {
        snprintf(c->err, c->errlen, "%s: out of memory for %d precision configs", c->file, K);
        return -1;
    }
    if (!configs) {   // nothing given: one full-precision config
        qconfig *q = &out->qs->cfg[0];
        snprintf(q->name, sizeof(q->name), "fp32");
        q->lora_rank = dq.rank;
        q->lora_alpha = dq.has_alpha ? dq.alpha : 2.0 * dq.rank;
        if (q->lora_rank == 0) q->lora_alpha = 0;
    }
    for (int k = 0; configs && k < K; k++)
        if (read_config(c, config_setting_get_elem(configs, (unsigned)k), &dq, out->qs, k)) return -1;

    size_t C = (size_t)out->n_embd, V = out->vocab_size ? (size_t)out->vocab_size : HEAD_VOCAB_FOR_ORDER;
    size_t *lp = malloc((size_t)out->qs->n_linear * sizeof(size_t));
    if (!lp) {
        snprintf(c->err, c->errlen, "%s: out of memory", c->file);
        return -1;
    }
    for (int l = 0; l < out->qs->n_linear; l++) {
        if (l == L * LIN_PER_BLOCK) lp[l] = V * C;
        else switch (l % LIN_PER_BLOCK) {
            case LIN_QKV: lp[l] = 3 * C * C; break;
            case LIN_ATTN_PROJ: lp[l] = C * C; break;
            default: lp[l] = 4 * C * C; break;
            }
    }
    qconfig_set_order(out->qs, lp);
    free(lp);
    return 0;
}

// ---------------------------------------------------------------------------------
// --set key=value

// Split "a.b.[2].c" / "a.b[2].c" into components; "[2]" stays as is. Returns count or -1.
static int split_path(const char *key, char comps[][64], int maxc) {
    int n = 0;
    const char *p = key;
    while (*p) {
        if (n == maxc) return -1;
        size_t m;
        if (*p == '[') {
            const char *q = p + 1;
            while (*q >= '0' && *q <= '9') q++;
            if (q == p + 1 || *q != ']' || q - p > 10) return -1;
            m = (size_t)(q - p + 1);
        } else {
            m = strcspn(p, ".[");
            if (m == 0) return -1;
            if (!((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z') || p[0] == '*')) return -1;
            for (size_t i = 0; i < m; i++) {
                char ch = p[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '_' || ch == '-' || ch == '*'))
                    return -1;
            }
        }
        if (m >= 64) return -1;
        memcpy(comps[n], p, m);
        comps[n][m] = 0;
        n++;
        p += m;
        if (*p == '.') {
            p++;
            if (!*p) return -1;
        } else if (*p && *p != '[') {
            return -1;
        }
    }
    return n;
}

static int is_index(const char *comp) { return comp[0] == '['; }

// Does the schema allow this path? (element indices are not checked here)
static int schema_allows(char comps[][64], int n) {
    const char *c0 = comps[0];
    if (is_index(c0)) return 0;
    for (int j = 0; j < N_SCALAR_GROUPS; j++)
        if (strcmp(c0, scalar_groups[j]) == 0) return n == 1 || (n == 2 && find_key(c0, comps[1]));
    if (strcmp(c0, "quant") != 0) return 0;
    if (n == 1) return 1;
    if (strcmp(comps[1], "defaults") == 0) return n == 2 || (n == 3 && in_list(defaults_keys, comps[2]));
    if (strcmp(comps[1], "configs") != 0) return 0;
    if (n == 2) return 1;
    if (!is_index(comps[2])) return 0;
    if (n == 3) return 1;
    const char *k = comps[3];
    if (!in_list(config_keys, k)) return 0;
    if (n == 4) return 1;
    if (strcmp(k, "components") == 0) return n == 5 && in_list(component_keys, comps[4]);
    if (!is_index(comps[4])) return 0;
    if (strcmp(k, "per_layer") == 0) return n == 5;
    if (strcmp(k, "layers") == 0) {
        if (n == 5) return 1;
        if (!in_list(layers_keys, comps[5])) return 0;
        if (n == 6) return 1;
        return n == 7 && strcmp(comps[5], "blocks") == 0 && is_index(comps[6]);
    }
    if (strcmp(k, "linears") == 0) return n == 5 || (n == 6 && in_list(linears_keys, comps[5]));
    return 0;
}

static void mark(config_setting_t *s, const char *arg) {
    config_setting_set_hook(s, (void *)arg);
    if (config_setting_is_aggregate(s))
        for (int i = 0; i < config_setting_length(s); i++) mark(config_setting_get_elem(s, (unsigned)i), arg);
}

// Copy the value of src into dst (same type; dst freshly created or emptied).
static int copy_value(config_setting_t *dst, const config_setting_t *src) {
    switch (config_setting_type(src)) {
    case CONFIG_TYPE_INT: return config_setting_set_int(dst, config_setting_get_int(src)) ? 0 : -1;
    case CONFIG_TYPE_INT64: return config_setting_set_int64(dst, config_setting_get_int64(src)) ? 0 : -1;
    case CONFIG_TYPE_FLOAT: return config_setting_set_float(dst, config_setting_get_float(src)) ? 0 : -1;
    case CONFIG_TYPE_BOOL: return config_setting_set_bool(dst, config_setting_get_bool(src)) ? 0 : -1;
    case CONFIG_TYPE_STRING: return config_setting_set_string(dst, config_setting_get_string(src)) ? 0 : -1;
    default:
        for (int i = 0; i < config_setting_length(src); i++) {
            config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
            config_setting_t *d = config_setting_add(dst, config_setting_is_group(dst) ? config_setting_name(e) : NULL,
                                                     config_setting_type(e));
            if (!d || copy_value(d, e)) return -1;
        }
        return 0;
    }
}

static int set_fail(ctx_t *c, const char *arg, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "--set %s: %s", arg, msg);
    return -1;
}

static int apply_set(ctx_t *c, config_t *cf, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) return set_fail(c, arg, "expected key=value");
    char key[512];
    if ((size_t)(eq - arg) >= sizeof(key)) return set_fail(c, arg, "key too long");
    memcpy(key, arg, (size_t)(eq - arg));
    key[eq - arg] = 0;
    const char *val = eq + 1;
    char comps[16][64];
    int n = split_path(key, comps, 16);
    if (n < 1) return set_fail(c, arg, "bad key '%s'", key);
    if (!schema_allows(comps, n)) return set_fail(c, arg, "unknown key");

    // the value: libconfig syntax, or else a bare word taken as a string
    config_t vc;
    config_init(&vc);
    size_t vl = strlen(val) + 16;
    char *vtext = malloc(vl);
    if (!vtext) { config_destroy(&vc); return set_fail(c, arg, "out of memory"); }
    snprintf(vtext, vl, "v = %s;", val);
    int parsed = config_read_string(&vc, vtext) == CONFIG_TRUE && config_setting_length(config_root_setting(&vc)) == 1 &&
                 config_lookup(&vc, "v");
    free(vtext);
    if (!parsed) {
        config_destroy(&vc);
        config_init(&vc);
        config_setting_t *v = config_setting_add(config_root_setting(&vc), "v", CONFIG_TYPE_STRING);
        if (!v || !config_setting_set_string(v, val)) { config_destroy(&vc); return set_fail(c, arg, "out of memory"); }
    }
    config_setting_t *v = config_lookup(&vc, "v");

    int rc = -1;
    config_setting_t *cur = config_root_setting(cf);
    char sofar[512] = "";
    for (int i = 0; i < n; i++) {
        int last = i == n - 1;
        const char *comp = comps[i];
        if (is_index(comp)) {
            unsigned idx = (unsigned)strtoul(comp + 1, NULL, 10);
            if (!config_setting_is_list(cur) && !config_setting_is_array(cur)) {
                set_fail(c, arg, "%s is not a list", sofar);
                goto done;
            }
            config_setting_t *e = config_setting_get_elem(cur, idx);
            if (!e) {
                set_fail(c, arg, "%s has no element %s (it has %d)", sofar, comp, config_setting_length(cur));
                goto done;
            }
            if (last) {
                int te = config_setting_type(e), tv = config_setting_type(v);
                int ints = (te == CONFIG_TYPE_INT || te == CONFIG_TYPE_INT64) && is_int(v);
                if (te != tv && !ints) {
                    set_fail(c, arg, "%s.%s is %s; an element cannot change its type", sofar, comp, type_name(e));
                    goto done;
                }
                if (config_setting_is_aggregate(e))
                    while (config_setting_length(e) > 0) config_setting_remove_elem(e, 0);
                if (ints && te != tv) {
                    if (!config_setting_set_int64(e, config_setting_get_int64(v))) {
                        set_fail(c, arg, "cannot set element");
                        goto done;
                    }
                } else if (copy_value(e, v)) {
                    set_fail(c, arg, "cannot set element");
                    goto done;
                }
                mark(e, arg);
            }
            cur = e;
        } else {
            if (!config_setting_is_group(cur)) {
                set_fail(c, arg, "%s is %s, not a group", sofar, type_name(cur));
                goto done;
            }
            config_setting_t *m = config_setting_get_member(cur, comp);
            if (last) {
                if (m && config_setting_remove(cur, comp) != CONFIG_TRUE) {
                    set_fail(c, arg, "cannot replace %s", key);
                    goto done;
                }
                m = config_setting_add(cur, comp, config_setting_type(v));
                if (!m || copy_value(m, v)) {
                    set_fail(c, arg, "cannot set %s", key);
                    goto done;
                }
                mark(m, arg);
            } else if (!m) {
                if (is_index(comps[i + 1])) {
                    set_fail(c, arg, "%s%s%s has no element %s", sofar, sofar[0] ? "." : "", comp, comps[i + 1]);
                    goto done;
                }
                m = config_setting_add(cur, comp, CONFIG_TYPE_GROUP);
                if (!m) {
                    set_fail(c, arg, "cannot create %s", comp);
                    goto done;
                }
                mark(m, arg);
            }
            cur = m;
        }
        if (sofar[0]) append(sofar, sizeof(sofar), ".");
        append(sofar, sizeof(sofar), comp);
    }
    rc = 0;
done:
    config_destroy(&vc);
    return rc;
}

// ---------------------------------------------------------------------------------
// the resolved text: every scalar key written out (defaults included)

static int fill_defaults(config_t *cf) {
    config_setting_t *root = config_root_setting(cf);
    for (int i = 0; i < N_SCHEMA; i++) {
        const key_def *d = &schema[i];
        config_setting_t *g = config_setting_get_member(root, d->group);
        if (!g && !(g = config_setting_add(root, d->group, CONFIG_TYPE_GROUP))) return -1;
        if (config_setting_get_member(g, d->key)) continue;
        config_setting_t *s;
        switch (d->type) {
        case T_INT:
            if (!(s = config_setting_add(g, d->key, CONFIG_TYPE_INT)) || !config_setting_set_int(s, (int)d->def_n)) return -1;
            break;
        case T_U64:
            if (!(s = config_setting_add(g, d->key, CONFIG_TYPE_INT64)) ||
                !config_setting_set_int64(s, (long long)d->def_n))
                return -1;
            break;
        case T_FLOAT:
            if (!(s = config_setting_add(g, d->key, CONFIG_TYPE_FLOAT)) || !config_setting_set_float(s, d->def_n)) return -1;
            break;
        case T_BOOL:
            if (!(s = config_setting_add(g, d->key, CONFIG_TYPE_BOOL)) || !config_setting_set_bool(s, d->def_n != 0)) return -1;
            break;
        case T_STR:
            if (!(s = config_setting_add(g, d->key, CONFIG_TYPE_STRING)) || !config_setting_set_string(s, d->def_s)) return -1;
            break;
        }
    }
    return 0;
}

static char *write_text(config_t *cf) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    config_write(cf, f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) { free(buf); return NULL; }
    return buf;
}

// ---------------------------------------------------------------------------------

static int load(ctx_t *c, config_t *cf, const char *path, const char *text, const char *const *sets, int nsets,
                settings *out) {
    if (path) {
        FILE *f = fopen(path, "r");
        if (!f) {
            snprintf(c->err, c->errlen, "%s: cannot open: %s", path, strerror(errno));
            return -1;
        }
        fclose(f);
    }
    int ok = path ? config_read_file(cf, path) : config_read_string(cf, text ? text : "");
    if (ok != CONFIG_TRUE) {
        const char *file = config_error_file(cf) ? config_error_file(cf) : c->file;
        if (config_error_type(cf) == CONFIG_ERR_FILE_IO)
            snprintf(c->err, c->errlen, "%s: cannot read: %s", file, config_error_text(cf));
        else
            snprintf(c->err, c->errlen, "%s:%d: %s", file, config_error_line(cf), config_error_text(cf));
        return -1;
    }
    for (int i = 0; i < nsets; i++)
        if (apply_set(c, cf, sets[i])) return -1;

    for (int i = 0; i < N_SCHEMA; i++) store_default(out, &schema[i]);
    if (read_scalar_groups(c, cf, out)) return -1;
    if (out->n_embd % out->n_head != 0) {
        if (config_lookup(cf, "model.n_embd"))
            return fail_key(c, cf, "model.n_embd", "%d is not divisible by model.n_head (%d)", out->n_embd, out->n_head);
        return fail_key(c, cf, "model.n_head", "model.n_embd (%d) is not divisible by %d", out->n_embd, out->n_head);
    }
    if (out->seq_len > out->n_ctx)
        return fail_key(c, cf, "data.seq_len", "%d is out of range 0..%d (model.n_ctx)", out->seq_len, out->n_ctx);
    if (out->seq_len == 0) out->seq_len = out->n_ctx;
    if (read_quant(c, cf, out)) return -1;
    if (out->single_config >= out->qs->K)
        return fail_key(c, cf, "train.single_config", "%d is out of range 0..%d (%d configs)", out->single_config,
                        out->qs->K - 1, out->qs->K);
    for (int k = 0; k < out->qs->K && !strcmp(out->finetune, "lora"); k++) {
        if (out->qs->cfg[k].lora_rank) continue;
        char key[64];
        snprintf(key, sizeof(key), "quant.configs.[%d].lora_rank", k);
        if (!config_lookup(cf, key)) snprintf(key, sizeof(key), "quant.defaults.lora_rank");
        return fail_key(c, cf, key, "0 (no adapter) needs train.finetune = \"full\" (in LoRA mode config '%s' would have "
                        "nothing to train)", out->qs->cfg[k].name);
    }

    if (fill_defaults(cf)) {
        snprintf(c->err, c->errlen, "%s: cannot build the resolved config", c->file);
        return -1;
    }
    out->text = write_text(cf);
    if (!out->text) {
        snprintf(c->err, c->errlen, "%s: cannot write the resolved config: %s", c->file, strerror(errno));
        return -1;
    }
    return 0;
}

int settings_load(const char *path, const char *text, const char *label, const char *const *sets,
                  int nsets, settings *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    const char *file = path ? path : (label ? label : "<config>");
    snprintf(out->source, sizeof(out->source), "%s", file);
    ctx_t c = {out->source, err, errlen};
    if (errlen) err[0] = 0;
    config_t cf;
    config_init(&cf);
    int rc = load(&c, &cf, path, text, sets, nsets, out);
    config_destroy(&cf);
    if (rc != 0) {
        char source[sizeof(out->source)];
        memcpy(source, out->source, sizeof(source));
        settings_free(out);
        memcpy(out->source, source, sizeof(source));
    }
    return rc;
}

void settings_free(settings *s) {
    if (!s) return;
    qconfig_set_free(s->qs);
    free(s->text);
    memset(s, 0, sizeof(*s));
}
