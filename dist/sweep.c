// Sweep definition, journal, child-process cells, collation, and the rank-0 work queue.
#include "sweep.h"
#include "dist.h"
#include "../checkpoints/ckpt_file.h"
#include "../checkpoints/model_ckpt.h"
#include <libconfig.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <math.h>
#include <time.h>
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/prctl.h>

extern const char *swq_version_str;   // launch/main.c (weak default below for tests)
__attribute__((weak)) const char *swq_version_str = "unknown";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *xstrdup(const char *s) {
    char *p = strdup(s ? s : "");
    if (!p) { fprintf(stderr, "swq: out of memory\n"); exit(1); }
    return p;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) { fprintf(stderr, "swq: out of memory\n"); exit(1); }
    return q;
}

static void push(char ***arr, int *n, const char *s) {
    *arr = xrealloc(*arr, sizeof(char *) * (size_t)(*n + 1));
    (*arr)[(*n)++] = xstrdup(s);
}

static void free_strs(char **a, int n) {
    for (int i = 0; i < n; i++) free(a[i]);
    free(a);
}

// ------------------------------------------------------------------ definition

typedef struct { const char *name, *key; int per_config; } axis_alias;
static const axis_alias ALIASES[] = {
    { "beta", "train.beta", 0 },           { "lr", "train.lr", 0 },
    { "steps", "train.steps", 0 },         { "mode", "train.mode", 0 },
    { "finetune", "train.finetune", 0 },   { "seed", "train.seed", 0 },
    { "batch_size", "train.batch_size", 0 },
    { "bits", "quant.configs.[%d].bits", 1 },
    { "attn_bits", "quant.configs.[%d].components.attn", 1 },
    { "mlp_bits", "quant.configs.[%d].components.mlp", 1 },
    { "head_bits", "quant.configs.[%d].components.head", 1 },
    { "act_bits", "quant.configs.[%d].act_bits", 1 },
    { "lora_rank", "quant.configs.[%d].lora_rank", 1 },
    { "lora_alpha", "quant.configs.[%d].lora_alpha", 1 },
};
#define N_ALIASES ((int)(sizeof(ALIASES) / sizeof(ALIASES[0])))

// A libconfig scalar as --set value text, and as shown in tables.
static int value_text(const config_setting_t *v, char *val, size_t nv, char *shown, size_t ns) {
    switch (config_setting_type(v)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        snprintf(val, nv, "%lld", (long long)config_setting_get_int64(v));
        snprintf(shown, ns, "%s", val);
        return 0;
    case CONFIG_TYPE_FLOAT: {
        double x = config_setting_get_float(v);
        snprintf(val, nv, "%.17g", x);
        if (!strpbrk(val, ".eEn")) strncat(val, ".0", nv - strlen(val) - 1);   // stays a float
        snprintf(shown, ns, "%g", x);
        return 0;
    }
    case CONFIG_TYPE_BOOL:
        snprintf(val, nv, "%s", config_setting_get_bool(v) ? "true" : "false");
        snprintf(shown, ns, "%s", val);
        return 0;
    case CONFIG_TYPE_STRING: {
        const char *s = config_setting_get_string(v);
        if (strchr(s, '"') || strchr(s, '\\')) return -1;
        snprintf(val, nv, "\"%s\"", s);
        snprintf(shown, ns, "%s", s);
        return 0;
    }
    default: return -1;
    }
}

static int load_fail(char *err, size_t errlen, const char *path, const config_setting_t *s, const char *fmt, const char *a) {
    char msg[600];
    snprintf(msg, sizeof(msg), fmt, a ? a : "");
    if (s && config_setting_source_line(s) > 0) snprintf(err, errlen, "%s:%d: %s", path, config_setting_source_line(s), msg);
    else snprintf(err, errlen, "%s: %s", path, msg);
    return -1;
}

static int col_of(sweep_def *sw, const char *key) {
    for (int c = 0; c < sw->ncols; c++)
        if (!strcmp(sw->col_key[c], key)) return c;
    return -1;
}

static int parse_axes(sweep_def *sw, const config_setting_t *axes, char *err, size_t errlen) {
    const char *P = sw->path;
    int na = config_setting_length(axes);
    if (na == 0) return load_fail(err, errlen, P, axes, "axes is empty", NULL);
    int *nv = calloc((size_t)na, sizeof(int));
    char ***vals = calloc((size_t)na, sizeof(char **)), ***shown = calloc((size_t)na, sizeof(char **));
    int rc = -1;
    long total = 1;
    for (int a = 0; a < na; a++) {
        config_setting_t *ax = config_setting_get_elem(axes, (unsigned)a);
        if (!config_setting_is_group(ax)) { load_fail(err, errlen, P, ax, "axes: each axis is a group { name = ...; values = [...]; }", NULL); goto out; }
        const char *name = NULL, *key = NULL;
        config_setting_lookup_string(ax, "name", &name);
        config_setting_lookup_string(ax, "key", &key);
        if (!name || !*name) { load_fail(err, errlen, P, ax, "axis without a name", NULL); goto out; }
        char kbuf[512];
        if (!key) {
            int found = -1;
            for (int i = 0; i < N_ALIASES; i++)
                if (!strcmp(ALIASES[i].name, name)) found = i;
            if (found < 0) {
                char known[600] = "";
                for (int i = 0; i < N_ALIASES; i++) { strcat(known, i ? ", " : ""); strcat(known, ALIASES[i].name); }
                char msg[800];
                snprintf(msg, sizeof(msg), "axis '%s': unknown axis name (known: %s); give key = \"...\" for any other setting", name, known);
                load_fail(err, errlen, P, ax, "%s", msg);
                goto out;
            }
            int cfg = 0;
            config_setting_lookup_int(ax, "config", &cfg);
            if (ALIASES[found].per_config) snprintf(kbuf, sizeof(kbuf), ALIASES[found].key, cfg);
            else snprintf(kbuf, sizeof(kbuf), "%s", ALIASES[found].key);
            key = kbuf;
        }
        for (int c = 0; c < a; c++)
            if (!strcmp(sw->col_key[c], key)) { load_fail(err, errlen, P, ax, "axis key '%s' appears twice", key); goto out; }
        push(&sw->col_key, &sw->ncols, key);
        sw->ncols--;
        push(&sw->col_name, &sw->ncols, name);
        config_setting_t *v = config_setting_get_member(ax, "values");
        if (!v || !(config_setting_is_array(v) || config_setting_is_list(v))) {
            char msg[600]; snprintf(msg, sizeof(msg), "axis '%s': values = [ ... ] is missing", name);
            load_fail(err, errlen, P, ax, "%s", msg); goto out;
        }
        nv[a] = config_setting_length(v);
        if (nv[a] == 0) { char msg[600]; snprintf(msg, sizeof(msg), "axis '%s': values is empty", name); load_fail(err, errlen, P, v, "%s", msg); goto out; }
        vals[a] = calloc((size_t)nv[a], sizeof(char *));
        shown[a] = calloc((size_t)nv[a], sizeof(char *));
        for (int j = 0; j < nv[a]; j++) {
            char vt[600], st[600];
            if (value_text(config_setting_get_elem(v, (unsigned)j), vt, sizeof(vt), st, sizeof(st))) {
                char msg[600]; snprintf(msg, sizeof(msg), "axis '%s': value [%d] must be a number, string or boolean", name, j);
                load_fail(err, errlen, P, v, "%s", msg); goto out;
            }
            vals[a][j] = xstrdup(vt);
            shown[a][j] = xstrdup(st);
        }
        total *= nv[a];
        if (total > 1000000) { load_fail(err, errlen, P, axes, "the grid has more than 1000000 cells", NULL); goto out; }
    }
    sw->ncells = (int)total;
    sw->cells = calloc((size_t)total, sizeof(sweep_cell));
    for (long i = 0; i < total; i++) {
        sweep_cell *c = &sw->cells[i];
        c->shown = calloc((size_t)na, sizeof(char *));
        long r = i;
        int idx[64] = { 0 };
        for (int a = na - 1; a >= 0; a--) { idx[a] = (int)(r % nv[a]); r /= nv[a]; }   // first axis slowest
        for (int a = 0; a < na; a++) {
            char kv[1200];
            snprintf(kv, sizeof(kv), "%s=%s", sw->col_key[a], vals[a][idx[a]]);
            push(&c->sets, &c->nsets, kv);
            c->shown[a] = xstrdup(shown[a][idx[a]]);
        }
    }
    rc = 0;
out:
    for (int a = 0; a < na; a++) {
        if (vals[a]) free_strs(vals[a], nv[a]);
        if (shown[a]) free_strs(shown[a], nv[a]);
    }
    free(vals); free(shown); free(nv);
    return rc;
}

static int parse_cells(sweep_def *sw, const config_setting_t *cells, const config_setting_t *names, char *err, size_t errlen) {
    const char *P = sw->path;
    int n = config_setting_length(cells);
    if (n == 0) return load_fail(err, errlen, P, cells, "cells is empty", NULL);
    sw->ncells = n;
    sw->cells = calloc((size_t)n, sizeof(sweep_cell));
    for (int i = 0; i < n; i++) {
        config_setting_t *c = config_setting_get_elem(cells, (unsigned)i);
        if (!config_setting_is_array(c) && !config_setting_is_list(c))
            return load_fail(err, errlen, P, c, "cells: each cell is a list of \"key=value\" strings", NULL);
        for (int j = 0; j < config_setting_length(c); j++) {
            const char *kv = config_setting_get_string_elem(c, (unsigned)j);
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (!eq || eq == kv) return load_fail(err, errlen, P, c, "cells: '%s' is not \"key=value\"", kv ? kv : "(not a string)");
            char key[512];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
            if (col_of(sw, key) < 0) { push(&sw->col_key, &sw->ncols, key); sw->ncols--; push(&sw->col_name, &sw->ncols, key); }
            push(&sw->cells[i].sets, &sw->cells[i].nsets, kv);
        }
        if (sw->cells[i].nsets == 0) return load_fail(err, errlen, P, c, "cells: a cell has no settings", NULL);
    }
    if (names) {
        if (config_setting_length(names) != sw->ncols) {
            char msg[200]; snprintf(msg, sizeof(msg), "names has %d entries, the cells set %d keys", config_setting_length(names), sw->ncols);
            return load_fail(err, errlen, P, names, "%s", msg);
        }
        for (int c = 0; c < sw->ncols; c++) {
            const char *nm = config_setting_get_string_elem(names, (unsigned)c);
            if (!nm) return load_fail(err, errlen, P, names, "names must be strings", NULL);
            free(sw->col_name[c]);
            sw->col_name[c] = xstrdup(nm);
        }
    }
    for (int i = 0; i < n; i++) {
        sweep_cell *c = &sw->cells[i];
        c->shown = calloc((size_t)sw->ncols, sizeof(char *));
        for (int k = 0; k < sw->ncols; k++) c->shown[k] = xstrdup("");
        for (int j = 0; j < c->nsets; j++) {
            const char *eq = strchr(c->sets[j], '=');
            char key[512];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - c->sets[j]), c->sets[j]);
            int k = col_of(sw, key);
            const char *v = eq + 1;
            size_t L = strlen(v);
            free(c->shown[k]);
            if (L >= 2 && v[0] == '"' && v[L - 1] == '"') { c->shown[k] = xstrdup(v + 1); c->shown[k][L - 2] = 0; }
            else c->shown[k] = xstrdup(v);
        }
    }
    return 0;
}

static int read_str_list(sweep_def *sw, const config_setting_t *l, const char *what, char ***out, int *n, char *err, size_t errlen) {
    if (!config_setting_is_array(l) && !config_setting_is_list(l))
        return load_fail(err, errlen, sw->path, l, "%s must be a list of strings [ \"...\" ]", what);
    for (int i = 0; i < config_setting_length(l); i++) {
        const char *s = config_setting_get_string_elem(l, (unsigned)i);
        if (!s) return load_fail(err, errlen, sw->path, l, "%s must be a list of strings [ \"...\" ]", what);
        push(out, n, s);
    }
    return 0;
}

int sweep_load(const char *path, sweep_def *sw, char *err, size_t errlen) {
    memset(sw, 0, sizeof(*sw));
    snprintf(sw->path, sizeof(sw->path), "%s", path);
    sw->max_cells = SWEEP_DEFAULT_MAX_CELLS;
    config_t cf;
    config_init(&cf);
    int rc = -1;
    settings s;
    int have_s = 0;
    char *ck_text = NULL;
    if (config_read_file(&cf, path) != CONFIG_TRUE) {
        if (config_error_type(&cf) == CONFIG_ERR_FILE_IO) snprintf(err, errlen, "%s: cannot read the sweep file", path);
        else snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&cf), config_error_text(&cf));
        goto out;
    }
    static const char *known[] = { "base", "kind", "checkpoint", "sets", "axes", "cells", "names", "report", "out_dir", "max_cells", NULL };
    config_setting_t *root = config_root_setting(&cf);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *m = config_setting_get_elem(root, (unsigned)i);
        int ok = 0;
        for (int k = 0; known[k]; k++) ok |= !strcmp(known[k], config_setting_name(m));
        if (!ok) {
            load_fail(err, errlen, path, m, "unknown key '%s' (expected base, kind, checkpoint, sets, axes, cells, names, report, out_dir, max_cells)", config_setting_name(m));
            goto out;
        }
    }
    const char *str = NULL;
    snprintf(sw->kind, sizeof(sw->kind), "train");
    if (config_lookup_string(&cf, "kind", &str)) {
        if (strcmp(str, "train") && strcmp(str, "eval")) { load_fail(err, errlen, path, config_lookup(&cf, "kind"), "kind = \"%s\": expected \"train\" or \"eval\"", str); goto out; }
        snprintf(sw->kind, sizeof(sw->kind), "%s", str);
    } else if (config_lookup(&cf, "kind")) { load_fail(err, errlen, path, config_lookup(&cf, "kind"), "kind must be a string", NULL); goto out; }
    if (config_lookup_string(&cf, "base", &str)) snprintf(sw->base, sizeof(sw->base), "%s", str);
    if (config_lookup_string(&cf, "out_dir", &str)) snprintf(sw->out_dir, sizeof(sw->out_dir), "%s", str);
    config_lookup_int(&cf, "max_cells", &sw->max_cells);
    int is_eval = !strcmp(sw->kind, "eval");
    if (is_eval) {
        if (!config_lookup_string(&cf, "checkpoint", &str)) { load_fail(err, errlen, path, NULL, "kind = \"eval\" needs checkpoint = \"PATH\"", NULL); goto out; }
        if (model_ckpt_resolve(str, sw->checkpoint, sizeof(sw->checkpoint), err, errlen)) goto out;
    } else if (!sw->base[0]) {
        load_fail(err, errlen, path, NULL, "base = \"RUN.cfg\" is missing (the run config every cell starts from)", NULL);
        goto out;
    }
    config_setting_t *l;
    if ((l = config_lookup(&cf, "sets")) && read_str_list(sw, l, "sets", &sw->sets, &sw->nsets, err, errlen)) goto out;
    if ((l = config_lookup(&cf, "report")) && read_str_list(sw, l, "report", &sw->report, &sw->nreport, err, errlen)) goto out;
    config_setting_t *axes = config_lookup(&cf, "axes"), *cells = config_lookup(&cf, "cells");
    if (!!axes == !!cells) { load_fail(err, errlen, path, NULL, "give either axes = ( ... ) or cells = ( ... )", NULL); goto out; }
    if (axes) {
        if (!config_setting_is_list(axes)) { load_fail(err, errlen, path, axes, "axes must be a list ( { ... }, ... )", NULL); goto out; }
        if (config_setting_length(axes) > 64) { load_fail(err, errlen, path, axes, "more than 64 axes", NULL); goto out; }
        if (parse_axes(sw, axes, err, errlen)) goto out;
    } else {
        if (!config_setting_is_list(cells)) { load_fail(err, errlen, path, cells, "cells must be a list ( [ \"key=value\", ... ], ... )", NULL); goto out; }
        if (parse_cells(sw, cells, config_lookup(&cf, "names"), err, errlen)) goto out;
    }
    for (int i = 0; i < sw->ncells; i++) snprintf(sw->cells[i].id, sizeof(sw->cells[i].id), "c%04d", i);

    // the base run config, resolved with the fixed overrides
    char berr[1200];
    if (sw->base[0]) {
        if (settings_load(sw->base, NULL, NULL, (const char *const *)sw->sets, sw->nsets, &s, berr, sizeof(berr))) {
            snprintf(err, errlen, "%s: base: %s", path, berr);
            goto out;
        }
    } else {
        if (model_ckpt_config_text(sw->checkpoint, &ck_text, err, errlen)) goto out;
        if (settings_load(NULL, ck_text, sw->checkpoint, (const char *const *)sw->sets, sw->nsets, &s, berr, sizeof(berr))) {
            snprintf(err, errlen, "%s: base: %s", path, berr);
            goto out;
        }
    }
    have_s = 1;
    sw->base_text = xstrdup(s.text);
    if (sw->nreport == 0)
        for (int k = 0; k < s.qs->K; k++) push(&sw->report, &sw->nreport, s.qs->cfg[k].name);
    for (int r = 0; r < sw->nreport; r++) {
        int found = 0;
        for (int k = 0; k < s.qs->K; k++) found |= !strcmp(s.qs->cfg[k].name, sw->report[r]);
        if (!found) { load_fail(err, errlen, path, config_lookup(&cf, "report"), "report: the base config has no precision config named '%s'", sw->report[r]); goto out; }
    }

    // canonical text: what the journal and the ranks must agree on
    char *buf = NULL;
    size_t bl = 0;
    FILE *f = open_memstream(&buf, &bl);
    if (!f) { snprintf(err, errlen, "out of memory"); goto out; }
    fprintf(f, "swq-sweep 1\nkind %s\ncheckpoint %s\nreport", sw->kind, sw->checkpoint);
    for (int r = 0; r < sw->nreport; r++) fprintf(f, " [%s]", sw->report[r]);
    fprintf(f, "\ncolumns");
    for (int c = 0; c < sw->ncols; c++) fprintf(f, " [%s=%s]", sw->col_name[c], sw->col_key[c]);
    fprintf(f, "\n%d cells\n", sw->ncells);
    for (int i = 0; i < sw->ncells; i++) {
        fprintf(f, "%s", sw->cells[i].id);
        for (int j = 0; j < sw->cells[i].nsets; j++) fprintf(f, " [%s]", sw->cells[i].sets[j]);
        fprintf(f, "\n");
    }
    fprintf(f, "base:\n%s", sw->base_text);
    fclose(f);
    sw->canon = buf;
    sw->hash = dist_hash_text(buf, "");
    rc = 0;
out:
    if (have_s) settings_free(&s);
    free(ck_text);
    config_destroy(&cf);
    return rc;
}

void sweep_free(sweep_def *sw) {
    for (int i = 0; i < sw->ncells; i++) {
        free_strs(sw->cells[i].sets, sw->cells[i].nsets);
        if (sw->cells[i].shown) free_strs(sw->cells[i].shown, sw->ncols);
    }
    free(sw->cells);
    free_strs(sw->sets, sw->nsets);
    free_strs(sw->col_key, sw->ncols);
    free_strs(sw->col_name, sw->ncols);
    free_strs(sw->report, sw->nreport);
    free(sw->base_text);
    free(sw->canon);
    memset(sw, 0, sizeof(*sw));
}

static const char *label_of(const sweep_def *sw) { return sw->base[0] ? sw->base : sw->checkpoint; }

int sweep_cell_config(const sweep_def *sw, int i, char **text, char *err, size_t errlen) {
    settings s;
    if (settings_load(NULL, sw->base_text, label_of(sw), (const char *const *)sw->cells[i].sets, sw->cells[i].nsets, &s, err, errlen))
        return -1;
    *text = xstrdup(s.text);
    settings_free(&s);
    return 0;
}

// A --set error about the key itself rather than its value.
static int is_key_error(const char *e) {
    static const char *pat[] = { ": unknown key", ": bad key '", " has no element ", " is not a list", ", not a group",
                                 "expected key=value", "key too long", NULL };
    for (int i = 0; pat[i]; i++)
        if (strstr(e, pat[i])) return 1;
    return 0;
}

int sweep_validate(const sweep_def *sw, int force, char **cell_err, char *err, size_t errlen) {
    if (sw->ncells > sw->max_cells && !force) {
        snprintf(err, errlen, "%s: the sweep has %d cells, more than the limit of %d; pass --force to run it anyway", sw->path,
                 sw->ncells, sw->max_cells);
        return -1;
    }
    for (int i = 0; i < sw->ncells; i++) {
        char e[1200];
        char *t = NULL;
        cell_err[i] = NULL;
        if (sweep_cell_config(sw, i, &t, e, sizeof(e))) {
            if (is_key_error(e)) {
                snprintf(err, errlen, "%s: cell %s: %s", sw->path, sw->cells[i].id, e);
                for (int j = 0; j <= i; j++) { free(cell_err[j]); cell_err[j] = NULL; }
                return -1;
            }
            cell_err[i] = xstrdup(e);
        }
        free(t);
    }
    return 0;
}

// ------------------------------------------------------------------ journal

static int journal_header_hash(const char *path, uint64_t *hash, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno)); return -1; }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    cJSON *j = n > 0 ? cJSON_Parse(line) : NULL;
    free(line);
    cJSON *h = j ? cJSON_GetObjectItem(j, "sweep_hash") : NULL;
    int rc = -1;
    if (cJSON_IsString(h)) { *hash = strtoull(h->valuestring, NULL, 16); rc = 0; }
    else snprintf(err, errlen, "%s: not a swq sweep journal (no header line)", path);
    cJSON_Delete(j);
    return rc;
}

static int is_journal_name(const char *n) {
    size_t L = strlen(n);
    return !strncmp(n, "journal", 7) && L > 6 && !strcmp(n + L - 6, ".jsonl");
}

int sweep_journal_load(const sweep_def *sw, const char *out, char **rows, char *err, size_t errlen) {
    DIR *dir = opendir(out);
    if (!dir) return 0;   // no output yet
    struct dirent *de;
    char **names = NULL;
    int nn = 0;
    while ((de = readdir(dir)))
        if (is_journal_name(de->d_name)) push(&names, &nn, de->d_name);
    closedir(dir);
    int rc = 0;
    for (int k = 0; k < nn && !rc; k++) {
        char path[1600];
        snprintf(path, sizeof(path), "%s/%s", out, names[k]);
        uint64_t h = 0;
        if (journal_header_hash(path, &h, err, errlen)) { rc = -1; break; }
        if (h != sw->hash) {
            snprintf(err, errlen, "%s: journal of a different sweep (hash %016llx, %s is %016llx); use another --out or remove it",
                     path, (unsigned long long)h, sw->path, (unsigned long long)sw->hash);
            rc = -1;
            break;
        }
        FILE *f = fopen(path, "r");
        if (!f) { snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno)); rc = -1; break; }
        char *line = NULL;
        size_t cap = 0;
        int ln = 0;
        while (getline(&line, &cap, f) > 0) {
            if (ln++ == 0) continue;
            cJSON *j = cJSON_Parse(line);
            if (!j) continue;   // a line cut by a crash: that cell runs again
            cJSON *c = cJSON_GetObjectItem(j, "cell"), *id = cJSON_GetObjectItem(j, "id");
            if (cJSON_IsNumber(c) && cJSON_IsString(id) && c->valueint >= 0 && c->valueint < sw->ncells &&
                !strcmp(id->valuestring, sw->cells[c->valueint].id) && !rows[c->valueint]) {
                size_t L = strlen(line);
                while (L && (line[L - 1] == '\n' || line[L - 1] == '\r')) line[--L] = 0;
                rows[c->valueint] = xstrdup(line);
            }
            cJSON_Delete(j);
        }
        free(line);
        fclose(f);
    }
    free_strs(names, nn);
    return rc;
}

static int write_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        s += w; n -= (size_t)w;
    }
    return 0;
}

int sweep_journal_open(const sweep_def *sw, const char *out, int slice_i, int slice_n, char *err, size_t errlen) {
    if (swq_mkdir_p(out, err, errlen)) return -1;
    char path[1600];
    if (slice_n > 1) snprintf(path, sizeof(path), "%s/journal.slice-%d-of-%d.jsonl", out, slice_i, slice_n);
    else snprintf(path, sizeof(path), "%s/journal.jsonl", out);
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        // a new journal appears with its header whole (written to a temp file, then renamed into
        // place): a job-array task beside this one reading the directory never finds it without one
        char tmp[1700], hdr[2048];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
        snprintf(hdr, sizeof(hdr), "{\"sweep_hash\": \"%016llx\", \"sweep\": \"%s\", \"cells\": %d, \"swq\": \"%s\"}\n",
                 (unsigned long long)sw->hash, sw->path, sw->ncells, swq_version_str);
        int t = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (t < 0) { snprintf(err, errlen, "%s: cannot open: %s", tmp, strerror(errno)); return -1; }
        if (write_all(t, hdr, strlen(hdr)) || fsync(t) || close(t) || rename(tmp, path)) {
            snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
            unlink(tmp);
            return -1;
        }
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    }
    if (fd < 0) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    return fd;
}

int sweep_journal_append(int fd, const char *row, char *err, size_t errlen) {
    size_t n = strlen(row);
    char *line = malloc(n + 2);
    if (!line) { snprintf(err, errlen, "out of memory"); return -1; }
    memcpy(line, row, n);
    line[n] = '\n';
    int rc = write_all(fd, line, n + 1) || fsync(fd);   // one write: a crash leaves at most a cut last line
    free(line);
    if (rc) { snprintf(err, errlen, "journal: cannot write: %s", strerror(errno)); return -1; }
    return 0;
}

// ------------------------------------------------------------------ cells

static int g_rank;   // the rank that runs cells here (recorded in each row)

static char *row_json(const sweep_def *sw, int i, const char *status, const char *error, double secs, cJSON *configs) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "cell", i);
    cJSON_AddNumberToObject(o, "rank", g_rank);
    cJSON_AddStringToObject(o, "id", sw->cells[i].id);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddStringToObject(o, "error", error ? error : "");
    cJSON_AddNumberToObject(o, "seconds", round(secs * 1000) / 1000);
    if (!configs) configs = cJSON_CreateArray();
    cJSON_AddItemToObject(o, "configs", configs);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        buf = xrealloc(buf, cap = cap ? 2 * cap : 65536);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0 || n < cap - 1) break;
    }
    buf[n] = 0;
    fclose(f);
    return buf;
}

// The last line of the cell's log that says what went wrong.
static void log_error(const char *dir, char *out, size_t n) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/log.txt", dir);
    char *t = read_text(path);
    snprintf(out, n, "failed (see %s)", path);
    if (!t) return;
    char *best = NULL, *last = NULL;
    for (char *p = strtok(t, "\n"); p; p = strtok(NULL, "\n")) {
        if (!*p) continue;
        last = p;
        if (!strncmp(p, "swq", 3) || strstr(p, "rror")) best = p;
    }
    if (best || last) snprintf(out, n, "%s", best ? best : last);
    free(t);
}

int sweep_cell_start(const sweep_def *sw, const char *out, int i, const char *pre_err, sweep_job *job, char **row) {
    memset(job, 0, sizeof(*job));
    job->cell = i;
    job->pid = -1;
    job->t0 = now_s();
    snprintf(job->dir, sizeof(job->dir), "%s/cells/%s", out, sw->cells[i].id);
    char err[2048];
    if (pre_err) { *row = row_json(sw, i, "failed", pre_err, 0, NULL); return -1; }
    char *text = NULL;
    if (sweep_cell_config(sw, i, &text, err, sizeof(err))) { *row = row_json(sw, i, "failed", err, 0, NULL); return -1; }
    char cfg[1200], logp[1200], latest[1200];
    snprintf(cfg, sizeof(cfg), "%s/config.cfg", job->dir);
    snprintf(logp, sizeof(logp), "%s/log.txt", job->dir);
    snprintf(latest, sizeof(latest), "%s/checkpoints/latest", job->dir);
    if (swq_mkdir_p(job->dir, err, sizeof(err)) || swq_write_atomic(cfg, text, strlen(text), err, sizeof(err))) {
        free(text);
        *row = row_json(sw, i, "failed", err, 0, NULL);
        return -1;
    }
    free(text);
    char metrics[1200];
    snprintf(metrics, sizeof(metrics), "%s/metrics.json", job->dir);
    unlink(metrics);
    int resume = !strcmp(sw->kind, "train") && access(latest, R_OK) == 0;   // an interrupted cell continues
    char *argv[16];
    int a = 0;
    argv[a++] = "swq";
    if (!strcmp(sw->kind, "train")) {
        argv[a++] = "train"; argv[a++] = "-c"; argv[a++] = cfg;
        argv[a++] = resume ? "--resume" : "--out"; argv[a++] = job->dir;
    } else {
        argv[a++] = "eval"; argv[a++] = "-c"; argv[a++] = cfg;
        argv[a++] = "--checkpoint"; argv[a++] = (char *)sw->checkpoint; argv[a++] = "--out"; argv[a++] = job->dir;
    }
    argv[a] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, sizeof(err), "fork failed: %s", strerror(errno));
        *row = row_json(sw, i, "failed", err, 0, NULL);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   // a dead worker takes its cell with it
        if (getppid() != parent) _exit(127);
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); if (fd > 2) close(fd); }
        setenv("SWQ_NO_MPI", "1", 1);       // the cell is one process, not a rank of the job
        execv("/proc/self/exe", argv);
        fprintf(stderr, "swq: cannot run /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    job->pid = pid;
    return pid;
}

static cJSON *metrics_configs(const char *dir, char *err, size_t errlen) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/metrics.json", dir);
    char *t = read_text(path);
    if (!t) { snprintf(err, errlen, "%s: missing after a successful run", path); return NULL; }
    cJSON *j = cJSON_Parse(t);
    free(t);
    cJSON *c = j ? cJSON_DetachItemFromObject(j, "configs") : NULL;
    cJSON_Delete(j);
    if (!cJSON_IsArray(c)) { cJSON_Delete(c); snprintf(err, errlen, "%s: no configs array", path); return NULL; }
    return c;
}

int sweep_cell_finish(const sweep_def *sw, sweep_job *job, int block, char **row) {
    int st = 0;
    pid_t r;
    do r = waitpid(job->pid, &st, block ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0) return 0;
    double secs = now_s() - job->t0;
    char err[2048];
    if (r < 0) {
        snprintf(err, sizeof(err), "waitpid: %s", strerror(errno));
        *row = row_json(sw, job->cell, "failed", err, secs, NULL);
    } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        cJSON *c = metrics_configs(job->dir, err, sizeof(err));
        *row = c ? row_json(sw, job->cell, "ok", "", secs, c) : row_json(sw, job->cell, "failed", err, secs, NULL);
    } else {
        if (WIFSIGNALED(st)) snprintf(err, sizeof(err), "killed by signal %d", WTERMSIG(st));
        else log_error(job->dir, err, sizeof(err));
        *row = row_json(sw, job->cell, "failed", err, secs, NULL);
    }
    job->pid = -1;
    return 1;
}

// ------------------------------------------------------------------ tables

typedef struct { int ok; const char *status, *error; cJSON *j; } parsed_row;

static const cJSON *find_config(const cJSON *row, const char *name) {
    const cJSON *arr = cJSON_GetObjectItem(row, "configs"), *c;
    cJSON_ArrayForEach(c, arr) {
        const cJSON *n = cJSON_GetObjectItem(c, "config");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return c;
    }
    return NULL;
}

static double num(const cJSON *c, const char *k) {
    const cJSON *v = c ? cJSON_GetObjectItem(c, k) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void csv_field(FILE *f, const char *s) {
    if (strpbrk(s, ",\"\n")) {
        fputc('"', f);
        for (; *s; s++) { if (*s == '"') fputc('"', f); fputc(*s == '\n' ? ' ' : *s, f); }
        fputc('"', f);
    } else fputs(s, f);
}

static void md_field(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s == '\n' ? ' ' : *s, f);
    }
}

// Two-column sweeps (a 2-axis grid, or cells over two keys) as a heatmap of the first reported
// config's EM (or loss where EM does not apply): rows = first column's values, columns =
// the second's, in order of first appearance; failed or missing cells are grey.
static int value_index(char **vals, int *nv, const char *v) {
    for (int i = 0; i < *nv; i++) if (!strcmp(vals[i], v)) return i;
    vals[*nv] = (char *)v;
    return (*nv)++;
}

static char *heatmap_svg(const sweep_def *sw, const double *v, int is_em) {
    int n = sw->ncells, nr = 0, nc = 0;
    char **rv = calloc((size_t)(n > 0 ? n : 1), sizeof(char *)), **cv = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    int *ri = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1)), *ci = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        ri[i] = value_index(rv, &nr, sw->cells[i].shown[0]);
        ci[i] = value_index(cv, &nc, sw->cells[i].shown[1]);
        if (isfinite(v[i])) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i]; }
    }
    const int cw = 90, ch = 40, L = 120, Tp = 70;
    int W = L + nc * cw + 20, H = Tp + nr * ch + 40;
    char *buf = NULL; size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"13\">%s of %s (%s)</text>\n", is_em ? "EM (%)" : "loss", sw->report[0],
            is_em ? "darker is better" : "darker is lower");
    fprintf(f, "<text x=\"%d\" y=\"45\" text-anchor=\"middle\">%s</text>\n", L + nc * cw / 2, sw->col_name[1]);
    fprintf(f, "<text x=\"10\" y=\"%d\">%s</text>\n", Tp - 8, sw->col_name[0]);
    for (int c = 0; c < nc; c++) fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", L + c * cw + cw / 2, Tp - 8, cv[c]);
    for (int r = 0; r < nr; r++) fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", L - 8, Tp + r * ch + ch / 2 + 4, rv[r]);
    for (int i = 0; i < n; i++) {
        int x = L + ci[i] * cw, y = Tp + ri[i] * ch;
        char fill[16] = "#cccccc", label[32] = "-";
        if (isfinite(v[i])) {
            double t = hi > lo ? (v[i] - lo) / (hi - lo) : 1.0;
            if (!is_em) t = 1.0 - t;   // lower loss is better: darker
            int g = (int)(235 - 160 * t), b = (int)(245 - 60 * t);
            snprintf(fill, sizeof(fill), "#%02x%02x%02x", g / 2, g, b);
            snprintf(label, sizeof(label), is_em ? "%.1f" : "%.4f", v[i]);
        }
        fprintf(f, "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"white\"/>\n", x, y, cw, ch, fill);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x + cw / 2, y + ch / 2 + 4, label);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
    free(rv); free(cv); free(ri); free(ci);
    return buf;
}

int sweep_write_tables(const sweep_def *sw, const char *out, char *const *rows, char *err, size_t errlen) {
    static const char *MK[] = { "loss", "em", "f1", "size_mb" };
    static const char *MLABEL[] = { "Loss", "EM", "F1", "Size (MB)" };
    int n = sw->ncells, nok = 0, nfail = 0, nmiss = 0;
    cJSON **pj = calloc((size_t)n, sizeof(cJSON *));
    double *hv = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));   // heatmap value per cell
    int hv_em = 1;
    for (int i = 0; i < n; i++) {
        hv[i] = NAN;
        pj[i] = rows[i] ? cJSON_Parse(rows[i]) : NULL;
        const cJSON *s = pj[i] ? cJSON_GetObjectItem(pj[i], "status") : NULL;
        if (!pj[i]) nmiss++;
        else if (cJSON_IsString(s) && !strcmp(s->valuestring, "ok")) nok++;
        else nfail++;
    }
    char *md = NULL, *csv = NULL;
    size_t mdl = 0, csvl = 0;
    FILE *m = open_memstream(&md, &mdl), *c = open_memstream(&csv, &csvl);
    cJSON *root = cJSON_CreateObject();
    if (!m || !c || !root) { snprintf(err, errlen, "out of memory"); return -1; }
    fprintf(m, "### Sweep %s (%s, %d cells: %d ok, %d failed, %d not run)\n\n", sw->path, sw->kind, n, nok, nfail, nmiss);
    fprintf(m, "| Cell |");
    fprintf(c, "cell,id");
    for (int k = 0; k < sw->ncols; k++) { fprintf(m, " "); md_field(m, sw->col_name[k]); fprintf(m, " |"); fputc(',', c); csv_field(c, sw->col_name[k]); }
    for (int r = 0; r < sw->nreport; r++)
        for (int q = 0; q < 4; q++) {
            if (sw->nreport > 1) { fprintf(m, " "); md_field(m, sw->report[r]); fprintf(m, " %s |", MLABEL[q]); }
            else fprintf(m, " %s |", MLABEL[q]);
            fputc(',', c);
            char h[200];
            snprintf(h, sizeof(h), "%s %s", sw->report[r], MK[q]);
            csv_field(c, h);
        }
    fprintf(m, " Status |\n|---|");
    fprintf(c, ",status,error\n");
    for (int k = 0; k < sw->ncols; k++) fprintf(m, "---|");
    for (int r = 0; r < sw->nreport * 4; r++) fprintf(m, "---:|");
    fprintf(m, "---|\n");
    cJSON_AddStringToObject(root, "sweep", sw->path);
    char hs[32];
    snprintf(hs, sizeof(hs), "%016llx", (unsigned long long)sw->hash);
    cJSON_AddStringToObject(root, "sweep_hash", hs);
    cJSON_AddStringToObject(root, "kind", sw->kind);
    cJSON *cols = cJSON_AddArrayToObject(root, "columns");
    for (int k = 0; k < sw->ncols; k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", sw->col_name[k]);
        cJSON_AddStringToObject(o, "key", sw->col_key[k]);
        cJSON_AddItemToArray(cols, o);
    }
    cJSON *rep = cJSON_AddArrayToObject(root, "report");
    for (int r = 0; r < sw->nreport; r++) cJSON_AddItemToArray(rep, cJSON_CreateString(sw->report[r]));
    cJSON *jrows = cJSON_AddArrayToObject(root, "rows");
    for (int i = 0; i < n; i++) {
        const cJSON *st = pj[i] ? cJSON_GetObjectItem(pj[i], "status") : NULL, *er = pj[i] ? cJSON_GetObjectItem(pj[i], "error") : NULL;
        const char *status = !pj[i] ? "not run" : cJSON_IsString(st) ? st->valuestring : "failed";
        const char *error = cJSON_IsString(er) ? er->valuestring : "";
        int ok = !strcmp(status, "ok");
        cJSON *jo = cJSON_CreateObject();
        cJSON_AddNumberToObject(jo, "cell", i);
        cJSON_AddStringToObject(jo, "id", sw->cells[i].id);
        cJSON *vals = cJSON_AddObjectToObject(jo, "values");
        fprintf(m, "| %s |", sw->cells[i].id);
        fprintf(c, "%d,%s", i, sw->cells[i].id);
        for (int k = 0; k < sw->ncols; k++) {
            fprintf(m, " "); md_field(m, sw->cells[i].shown[k]); fprintf(m, " |");
            fputc(',', c); csv_field(c, sw->cells[i].shown[k]);
            cJSON_AddStringToObject(vals, sw->col_name[k], sw->cells[i].shown[k]);
        }
        cJSON *mets = cJSON_AddObjectToObject(jo, "metrics");
        if (ok && sw->nreport > 0) {
            const cJSON *cfg0 = find_config(pj[i], sw->report[0]);
            double em = num(cfg0, "em");
            if (isfinite(em)) hv[i] = 100 * em;
            else { hv[i] = num(cfg0, "loss"); hv_em = 0; }
        }
        for (int r = 0; r < sw->nreport; r++) {
            const cJSON *cfg = ok ? find_config(pj[i], sw->report[r]) : NULL;
            cJSON *mo = cfg ? cJSON_AddObjectToObject(mets, sw->report[r]) : NULL;
            for (int q = 0; q < 4; q++) {
                double v = num(cfg, MK[q]);
                if (!cfg || !isfinite(v)) { fprintf(m, " – |"); fputc(',', c); continue; }
                if (q == 0) fprintf(m, " %.4f |", v);
                else if (q < 3) fprintf(m, " %.1f%% |", 100 * v);
                else fprintf(m, " %.3f |", v);
                fprintf(c, ",%.6f", v);
                cJSON_AddNumberToObject(mo, MK[q], v);
            }
        }
        if (ok) fprintf(m, " ok |\n");
        else if (!pj[i]) fprintf(m, " not run |\n");
        else { fprintf(m, " **FAILED**: "); md_field(m, error); fprintf(m, " |\n"); }
        fputc(',', c); csv_field(c, status); fputc(',', c); csv_field(c, error); fputc('\n', c);
        cJSON_AddStringToObject(jo, "status", status);
        cJSON_AddStringToObject(jo, "error", error);
        cJSON_AddItemToArray(jrows, jo);
    }
    fclose(m);
    fclose(c);
    char *js = cJSON_Print(root);
    cJSON_Delete(root);
    for (int i = 0; i < n; i++) cJSON_Delete(pj[i]);
    free(pj);
    char path[1600];
    int rc = swq_mkdir_p(out, err, errlen);
    snprintf(path, sizeof(path), "%s/table.md", out);
    if (!rc) rc = swq_write_atomic(path, md, strlen(md), err, errlen);
    snprintf(path, sizeof(path), "%s/table.csv", out);
    if (!rc) rc = swq_write_atomic(path, csv, strlen(csv), err, errlen);
    snprintf(path, sizeof(path), "%s/table.json", out);
    if (!rc) rc = swq_write_atomic(path, js, strlen(js), err, errlen);
    if (!rc && sw->ncols == 2 && sw->nreport > 0) {
        char *svg = heatmap_svg(sw, hv, hv_em);
        snprintf(path, sizeof(path), "%s/heatmap.svg", out);
        rc = swq_write_atomic(path, svg, strlen(svg), err, errlen);
        free(svg);
    }
    free(md); free(csv); free(js); free(hv);
    return rc;
}

// ------------------------------------------------------------------ the work queue

static void fmt_eta(double sec, char *buf, size_t n) {
    if (!isfinite(sec) || sec < 0) { snprintf(buf, n, "?"); return; }
    int s = (int)(sec + 0.5);
    if (s >= 3600) snprintf(buf, n, "%dh%02dm", s / 3600, (s / 60) % 60);
    else snprintf(buf, n, "%dm%02ds", s / 60, s % 60);
}

typedef struct {
    const sweep_def *sw;
    char **rows;
    int fd, total, done, failed, running, done_now;
    double t0, busy;   // time spent in cells finished in this launch
    int workers;
} progress;

static int is_failed(const char *row) { return !strstr(row, "\"status\":\"ok\""); }

static int record(progress *p, char *row, char *err, size_t errlen) {
    cJSON *j = cJSON_Parse(row);
    cJSON *c = j ? cJSON_GetObjectItem(j, "cell") : NULL, *s = j ? cJSON_GetObjectItem(j, "seconds") : NULL;
    if (!cJSON_IsNumber(c) || c->valueint < 0 || c->valueint >= p->sw->ncells) {
        cJSON_Delete(j);
        free(row);
        snprintf(err, errlen, "a worker sent a malformed result row");
        return -1;
    }
    int i = c->valueint;
    if (cJSON_IsNumber(s)) p->busy += s->valuedouble;
    cJSON *e = cJSON_GetObjectItem(j, "error");
    int failed = is_failed(row);
    if (failed) printf("sweep: cell %s failed: %s\n", p->sw->cells[i].id, cJSON_IsString(e) ? e->valuestring : "?");
    cJSON_Delete(j);
    if (sweep_journal_append(p->fd, row, err, errlen)) { free(row); return -1; }
    free(p->rows[i]);
    p->rows[i] = row;
    p->done++;
    p->done_now++;
    p->failed += failed;
    p->running--;
    char eta[32];
    int left = p->total - p->done;
    double per = p->done_now ? p->busy / p->done_now : NAN;
    fmt_eta(per * left / (p->workers > 0 ? p->workers : 1), eta, sizeof(eta));
    printf("sweep: %d/%d cells done, %d running, %d failed | %.0fs | ETA %s\n", p->done, p->total, p->running, p->failed,
           now_s() - p->t0, left ? eta : "0m00s");
    fflush(stdout);
    return 0;
}

int sweep_run(const sweep_def *sw, const char *out, int slice_i, int slice_n, swq_dist *d, char *err, size_t errlen) {
    int rank = d ? d->rank : 0, world = d ? d->world : 1;
    g_rank = rank;
    if (rank != 0) {
        // worker: ask, run, answer with the row, until told to stop
        char *row = NULL;
        for (;;) {
            if (dist_send_str(d, 0, DIST_TAG_REQUEST, row ? row : "", err, errlen)) { free(row); return -1; }
            free(row);
            row = NULL;
            int cell = -1;
            if (dist_recv_int(d, 0, DIST_TAG_ASSIGN, &cell, err, errlen)) return -1;
            if (cell < 0) return 0;
            if (cell >= sw->ncells) { snprintf(err, errlen, "rank %d: assigned cell %d of %d", rank, cell, sw->ncells); return -1; }
            sweep_job job;
            if (sweep_cell_start(sw, out, cell, NULL, &job, &row) >= 0) sweep_cell_finish(sw, &job, 1, &row);
        }
    }
    int n = sw->ncells, rc = -1;
    char **rows = calloc((size_t)n, sizeof(char *)), **pre = calloc((size_t)n, sizeof(char *));
    int *queue = malloc(sizeof(int) * (size_t)n), nq = 0, qh = 0;
    progress p = { sw, rows, -1, 0, 0, 0, 0, 0, now_s(), 0, world };
    int stopped = 0;   // workers told to stop
    sweep_job local = { .pid = -1 };
    if (sweep_journal_load(sw, out, rows, err, errlen) || sweep_validate(sw, 1, pre, err, errlen)) goto stop_all;
    for (int i = 0; i < n; i++) {
        if (i % slice_n != slice_i) continue;
        p.total++;
        if (rows[i]) { p.done++; p.failed += is_failed(rows[i]); }
        else queue[nq++] = i;
    }
    if ((p.fd = sweep_journal_open(sw, out, slice_i, slice_n, err, errlen)) < 0) goto stop_all;
    printf("sweep %s: %d cells%s, %d finished before, %d to run on %d rank%s -> %s\n", sw->path, p.total,
           slice_n > 1 ? " in this slice" : "", p.done, nq, world, world > 1 ? "s" : "", out);
    fflush(stdout);
    while (stopped < world - 1 || local.pid > 0 || qh < nq) {
        int busy = 0;
        if (world > 1) {
            int src = 0;
            char *msg = NULL;
            int got = dist_try_recv_str(d, DIST_TAG_REQUEST, &src, &msg, err, errlen);
            if (got < 0) goto stop_all;
            if (got) {
                busy = 1;
                if (*msg) { if (record(&p, msg, err, errlen)) goto stop_all; }
                else free(msg);
                // a cell refused at validation is recorded here without running it
                while (qh < nq && pre[queue[qh]]) {
                    char *row = NULL;
                    sweep_job j;
                    int cell = queue[qh++];
                    sweep_cell_start(sw, out, cell, pre[cell], &j, &row);
                    p.running++;
                    if (record(&p, row, err, errlen)) goto stop_all;
                }
                int cell = qh < nq ? queue[qh++] : -1;
                if (dist_send_int(d, src, DIST_TAG_ASSIGN, cell, err, errlen)) goto stop_all;
                if (cell >= 0) p.running++;
                else stopped++;
            }
        }
        if (local.pid > 0) {
            char *row = NULL;
            if (sweep_cell_finish(sw, &local, 0, &row)) {
                busy = 1;
                if (record(&p, row, err, errlen)) goto stop_all;
            }
        }
        // rank 0 works too when it is alone or more cells wait than there are workers
        if (local.pid <= 0 && qh < nq && (world == 1 || nq - qh > world - 1 - stopped)) {
            int cell = queue[qh++];
            char *row = NULL;
            p.running++;
            busy = 1;
            if (sweep_cell_start(sw, out, cell, pre[cell], &local, &row) < 0 && record(&p, row, err, errlen)) goto stop_all;
        }
        if (!busy) usleep(world > 1 ? 5000 : 20000);
    }
    if (slice_n == 1) {
        if (sweep_write_tables(sw, out, rows, err, errlen)) goto out;
        printf("sweep done: %d cells, %d failed | %s/table.md, %s/table.csv, %s/table.json\n", p.total, p.failed, out, out, out);
    } else {
        printf("sweep slice %d/%d done: %d cells, %d failed; collate with: swq sweep -c %s --out %s --collate\n", slice_i,
               slice_n, p.total, p.failed, sw->path, out);
    }
    fflush(stdout);
    rc = 0;
    goto out;
stop_all:
    // an error of the sweep itself: the caller aborts the job (workers and their cells die with it)
    if (local.pid > 0) { kill(local.pid, SIGTERM); char *row = NULL; sweep_cell_finish(sw, &local, 1, &row); free(row); }
out:
    if (p.fd >= 0) close(p.fd);
    free_strs(rows, n);
    free_strs(pre, n);
    free(queue);
    return rc;
}
