// safetensors and Hugging Face GPT-2 directories (see hf_safetensors.h).
#include "hf_safetensors.h"
#include "ckpt_file.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------- safetensors read

static const struct { const char *name; int bytes; } st_dtypes[] = {
    { "F32", 4 }, { "F16", 2 }, { "BF16", 2 }, { "F64", 8 }, { "I64", 8 }, { "U64", 8 }, { "I32", 4 },
    { "U32", 4 }, { "I16", 2 }, { "U16", 2 }, { "I8", 1 }, { "U8", 1 }, { "BOOL", 1 },
    { "F8_E4M3", 1 }, { "F8_E5M2", 1 },
};

static int dtype_bytes(const char *d) {
    for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
        if (!strcmp(d, st_dtypes[i].name)) return st_dtypes[i].bytes;
    return 0;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void st_close(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) { free(f->meta_key[i]); free(f->meta_val[i]); }
    free(f->t); free(f->meta_key); free(f->meta_val); free(f->buf); free(f->path);
    memset(f, 0, sizeof(*f));
}

size_t st_numel(const st_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++) if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++) if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
    return NULL;
}

// a JSON number that is a non-negative integer below 2^53
static int json_count(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *v = (uint64_t)d;
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_tensor(st_file *f, const cJSON *e, st_tensor *t, size_t data_size, char *err, size_t errlen) {
    const char *p = f->path, *nm = e->string;
    if (!cJSON_IsObject(e)) { snprintf(err, errlen, "%s: tensor '%s': header entry is not an object", p, nm); return -1; }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) { snprintf(err, errlen, "%s: tensor '%s': missing dtype", p, nm); return -1; }
    int eb = dtype_bytes(dt->valuestring);
    if (!eb || strlen(dt->valuestring) >= sizeof(t->dtype)) {
        snprintf(err, errlen, "%s: tensor '%s': unknown dtype '%s'", p, nm, dt->valuestring);
        return -1;
    }
    strcpy(t->dtype, dt->valuestring);
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > ST_MAX_DIMS) {
        snprintf(err, errlen, "%s: tensor '%s': shape missing or not an array of at most %d sizes", p, nm, ST_MAX_DIMS);
        return -1;
    }
    t->ndim = 0;
    uint64_t numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        uint64_t v;
        if (json_count(d, &v) || (v && numel > UINT64_MAX / 16 / v)) {
            snprintf(err, errlen, "%s: tensor '%s': bad shape entry", p, nm);
            return -1;
        }
        t->shape[t->ndim++] = (int64_t)v;
        numel *= v;
    }
    uint64_t b, en;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || json_count(cJSON_GetArrayItem(of, 0), &b) ||
        json_count(cJSON_GetArrayItem(of, 1), &en) || en < b) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets must be [begin, end] with begin <= end", p, nm);
        return -1;
    }
    if (en > data_size) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] out of range (data section has %zu bytes)",
                 p, nm, (unsigned long long)b, (unsigned long long)en, data_size);
        return -1;
    }
    if (en - b != numel * (uint64_t)eb) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets hold %llu bytes, %s of %llu elements needs %llu",
                 p, nm, (unsigned long long)(en - b), t->dtype, (unsigned long long)numel,
                 (unsigned long long)(numel * eb));
        return -1;
    }
    t->begin = (size_t)b; t->end = (size_t)en;
    t->name = xstrdup(nm);
    if (!t->name) { snprintf(err, errlen, "%s: out of memory", p); return -1; }
    return 0;
}

int st_open(const char *path, st_file *f, char *err, size_t errlen) {
    memset(f, 0, sizeof(*f));
    cJSON *root = NULL;
    st_tensor **sorted = NULL;
    f->path = xstrdup(path);
    FILE *fp = fopen(path, "rb");
    if (!fp) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); goto fail; }
    if (fseek(fp, 0, SEEK_END) || (long)(f->size = (size_t)ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET)) {
        snprintf(err, errlen, "%s: cannot determine the file size", path);
        fclose(fp);
        goto fail;
    }
    f->buf = malloc(f->size ? f->size : 1);
    if (!f->buf) { snprintf(err, errlen, "%s: cannot allocate %zu bytes", path, f->size); fclose(fp); goto fail; }
    if (fread(f->buf, 1, f->size, fp) != f->size) {
        snprintf(err, errlen, "%s: read error", path);
        fclose(fp);
        goto fail;
    }
    fclose(fp);
    if (f->size < 8) { snprintf(err, errlen, "%s: %zu bytes: too short for the header length", path, f->size); goto fail; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->buf[i];
    if (hlen > f->size - 8) {
        snprintf(err, errlen, "%s: header length %llu exceeds the file size (%zu bytes)", path,
                 (unsigned long long)hlen, f->size);
        goto fail;
    }
    f->data_start = 8 + (size_t)hlen;
    size_t data_size = f->size - f->data_start;
    root = cJSON_ParseWithLength((const char *)f->buf + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: header (%llu bytes) is not a valid JSON object", path, (unsigned long long)hlen);
        goto fail;
    }
    int n = cJSON_GetArraySize(root);
    f->t = calloc(n ? n : 1, sizeof(st_tensor));
    if (!f->t) { snprintf(err, errlen, "%s: out of memory", path); goto fail; }
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) { snprintf(err, errlen, "%s: __metadata__ is not an object", path); goto fail; }
            int nm = cJSON_GetArraySize(e);
            f->meta_key = calloc(nm ? nm : 1, sizeof(char *));
            f->meta_val = calloc(nm ? nm : 1, sizeof(char *));
            if (!f->meta_key || !f->meta_val) { snprintf(err, errlen, "%s: out of memory", path); goto fail; }
            const cJSON *kv;
            cJSON_ArrayForEach(kv, e) {
                if (!cJSON_IsString(kv)) {
                    snprintf(err, errlen, "%s: __metadata__ value of '%s' is not a string", path, kv->string);
                    goto fail;
                }
                f->meta_key[f->n_meta] = xstrdup(kv->string);
                f->meta_val[f->n_meta++] = xstrdup(kv->valuestring);
            }
            continue;
        }
        if (st_find(f, e->string)) { snprintf(err, errlen, "%s: tensor '%s' appears twice", path, e->string); goto fail; }
        if (parse_tensor(f, e, &f->t[f->n], data_size, err, errlen)) goto fail;
        f->n++;
    }
    sorted = malloc(sizeof(*sorted) * (f->n ? f->n : 1));
    if (!sorted) { snprintf(err, errlen, "%s: out of memory", path); goto fail; }
    for (int i = 0; i < f->n; i++) sorted[i] = &f->t[i];
    qsort(sorted, f->n, sizeof(*sorted), cmp_begin);
    for (int i = 0; i + 1 < f->n; i++) {
        const st_tensor *a = sorted[i], *b = sorted[i + 1];
        if (a->end > b->begin && a->end > a->begin && b->end > b->begin) {
            snprintf(err, errlen, "%s: tensor '%s' [%zu, %zu] overlaps tensor '%s' [%zu, %zu]", path, a->name,
                     a->begin, a->end, b->name, b->begin, b->end);
            goto fail;
        }
    }
    free(sorted);
    cJSON_Delete(root);
    return 0;
fail:
    free(sorted);
    cJSON_Delete(root);
    st_close(f);
    return -1;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 31, man = h & 1023, bits;
    if (ex == 0) {
        if (!man) bits = sign;
        else {   // subnormal: value = man * 2^-24
            float v = (float)man * 5.9604644775390625e-8f;
            return sign ? -v : v;
        }
    } else if (ex == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((ex + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void shape_str(const int64_t *s, int nd, char *buf, size_t n) {
    size_t o = 0;
    o += snprintf(buf + o, n - o, "[");
    for (int d = 0; d < nd && o < n; d++) o += snprintf(buf + o, n - o, d ? ", %lld" : "%lld", (long long)s[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

int st_read_f32(const st_file *f, const char *name, const int64_t *shape, int ndim, float *out,
                char *err, size_t errlen) {
    const st_tensor *t = st_find(f, name);
    if (!t) { snprintf(err, errlen, "%s: tensor '%s' not found", f->path, name); return -1; }
    if (shape) {
        int ok = t->ndim == ndim;
        for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
        if (!ok) {
            char a[128], b[128];
            shape_str(t->shape, t->ndim, a, sizeof a);
            shape_str(shape, ndim, b, sizeof b);
            snprintf(err, errlen, "%s: tensor '%s' has shape %s, expected %s", f->path, name, a, b);
            return -1;
        }
    }
    const unsigned char *p = f->buf + f->data_start + t->begin;
    size_t n = st_numel(t);
    if (!strcmp(t->dtype, "F32")) {
        for (size_t i = 0; i < n; i++, p += 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&out[i], &u, 4);
        }
    } else if (!strcmp(t->dtype, "F16")) {
        for (size_t i = 0; i < n; i++, p += 2) out[i] = half_to_float((uint16_t)(p[0] | p[1] << 8));
    } else if (!strcmp(t->dtype, "BF16")) {
        for (size_t i = 0; i < n; i++, p += 2) {
            uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
            memcpy(&out[i], &u, 4);
        }
    } else if (!strcmp(t->dtype, "F64")) {
        for (size_t i = 0; i < n; i++, p += 8) {
            uint64_t u = 0;
            for (int k = 7; k >= 0; k--) u = u << 8 | p[k];
            double d;
            memcpy(&d, &u, 8);
            out[i] = (float)d;
        }
    } else {
        snprintf(err, errlen, "%s: tensor '%s': dtype %s is not a floating-point type (F32, F16, BF16, F64)",
                 f->path, name, t->dtype);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- safetensors write

typedef struct { char *s; size_t n, cap; int oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + n;
        char *p = realloc(b->s, cap);
        if (!p) { b->oom = 1; return; }
        b->s = p; b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_json_str(sbuf *b, const char *s) {
    sb_str(b, "\"");
    for (; *s; s++) {
        char e[8];
        if (*s == '"' || *s == '\\') { e[0] = '\\'; e[1] = *s; sb_put(b, e, 2); }
        else if ((unsigned char)*s < 0x20) { snprintf(e, sizeof e, "\\u%04x", (unsigned char)*s); sb_str(b, e); }
        else sb_put(b, s, 1);
    }
    sb_str(b, "\"");
}

int st_write(const char *path, const st_out *t, int n, const char *const *meta_kv, int n_meta,
             char *err, size_t errlen) {
    sbuf h = { 0 };
    char num[96];
    sb_str(&h, "{");
    if (n_meta > 0) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_str(&h, meta_kv[2 * i]);
            sb_str(&h, ":");
            sb_json_str(&h, meta_kv[2 * i + 1]);
        }
        sb_str(&h, "}");
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (i || n_meta > 0) sb_str(&h, ",");
        sb_json_str(&h, t[i].name);
        sb_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t[i].shape[d]);
            sb_str(&h, num);
            numel *= (size_t)t[i].shape[d];
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + 4 * numel);
        sb_str(&h, num);
        off += 4 * numel;
    }
    sb_str(&h, "}");
    while (h.n % 8) sb_str(&h, " ");   // keeps the data section 8-byte aligned
    if (h.oom) { free(h.s); snprintf(err, errlen, "%s: out of memory", path); return -1; }
    size_t total = 8 + h.n + off;
    unsigned char *buf = malloc(total);
    if (!buf) { free(h.s); snprintf(err, errlen, "%s: cannot allocate %zu bytes", path, total); return -1; }
    uint64_t hl = h.n;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, h.s, h.n);
    unsigned char *p = buf + 8 + h.n;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        for (size_t j = 0; j < numel; j++, p += 4) {
            uint32_t u;
            memcpy(&u, &t[i].data[j], 4);
            p[0] = (unsigned char)u; p[1] = (unsigned char)(u >> 8); p[2] = (unsigned char)(u >> 16); p[3] = (unsigned char)(u >> 24);
        }
    }
    free(h.s);
    int rc = swq_write_atomic(path, buf, total, err, errlen);
    free(buf);
    return rc;
}

// ---------------------------------------------------------------- config.json

static char *read_text(const char *path, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (;;) {
        if (!s) { fclose(fp); snprintf(err, errlen, "%s: out of memory", path); return NULL; }
        n += fread(s + n, 1, cap - n - 1, fp);
        if (n < cap - 1) break;
        cap *= 2;
        char *q = realloc(s, cap);
        if (!q) free(s);
        s = q;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) { free(s); snprintf(err, errlen, "%s: read error", path); return NULL; }
    s[n] = 0;
    return s;
}

static int cfg_int(const cJSON *root, const char *path, const char *key, int *v, int required, char *err, size_t errlen) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) snprintf(err, errlen, "%s: missing key '%s'", path, key);
        return required ? -1 : 1;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < 1 || j->valuedouble > 1e9) {
        snprintf(err, errlen, "%s: key '%s' must be a positive integer", path, key);
        return -1;
    }
    *v = (int)j->valuedouble;
    return 0;
}

int hf_read_config(const char *dir, gpt2_shape *s, int *has_qa, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = read_text(path, err, errlen);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    int rc = -1;
    if (!root || !cJSON_IsObject(root)) { snprintf(err, errlen, "%s: not a valid JSON object", path); goto done; }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt2"))) {
        snprintf(err, errlen, "%s: model_type is '%s', only 'gpt2' is supported", path,
                 cJSON_IsString(mt) ? mt->valuestring : "?");
        goto done;
    }
    if (cfg_int(root, path, "n_layer", &s->n_layer, 1, err, errlen) ||
        cfg_int(root, path, "n_head", &s->n_head, 1, err, errlen) ||
        cfg_int(root, path, "n_embd", &s->n_embd, 1, err, errlen) ||
        cfg_int(root, path, "vocab_size", &s->vocab_size, 1, err, errlen))
        goto done;
    int r = cfg_int(root, path, "n_positions", &s->n_ctx, 0, err, errlen);
    if (r < 0) goto done;
    if (r > 0 && cfg_int(root, path, "n_ctx", &s->n_ctx, 1, err, errlen)) {
        snprintf(err, errlen, "%s: missing key 'n_positions'", path);
        goto done;
    }
    if (s->n_embd % s->n_head) {
        snprintf(err, errlen, "%s: n_embd %d is not divisible by n_head %d", path, s->n_embd, s->n_head);
        goto done;
    }
    int inner = 0;
    r = cfg_int(root, path, "n_inner", &inner, 0, err, errlen);
    if (r < 0) goto done;
    if (r == 0 && inner != 4 * s->n_embd) {
        snprintf(err, errlen, "%s: n_inner %d is not 4*n_embd (unsupported)", path, inner);
        goto done;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (act && (!cJSON_IsString(act) ||
                (strcmp(act->valuestring, "gelu_new") && strcmp(act->valuestring, "gelu_pytorch_tanh")))) {
        snprintf(err, errlen, "%s: activation_function '%s' is unsupported (swq uses tanh GELU, 'gelu_new')", path,
                 cJSON_IsString(act) ? act->valuestring : "?");
        goto done;
    }
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    if (eps && (!cJSON_IsNumber(eps) || fabs(eps->valuedouble - 1e-5) > 1e-12)) {
        snprintf(err, errlen, "%s: layer_norm_epsilon must be 1e-05 (swq's layernorm)", path);
        goto done;
    }
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "scale_attn_weights");
    const cJSON *sl = cJSON_GetObjectItemCaseSensitive(root, "scale_attn_by_inverse_layer_idx");
    if (cJSON_IsFalse(sw) || cJSON_IsTrue(sl)) {
        snprintf(err, errlen, "%s: %s is unsupported (swq scales attention by 1/sqrt(head size))", path,
                 cJSON_IsFalse(sw) ? "scale_attn_weights = false" : "scale_attn_by_inverse_layer_idx = true");
        goto done;
    }
    *has_qa = 0;
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures"), *a;
    if (cJSON_IsArray(arch))
        cJSON_ArrayForEach(a, arch) if (cJSON_IsString(a) && !strcmp(a->valuestring, "GPT2ForQuestionAnswering")) *has_qa = 1;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

// ---------------------------------------------------------------- GPT-2 tensor map

typedef struct {
    int p;             // our tensor
    const char *fmt;   // HF name (after "transformer."), %d = layer
    int layered;
    int transpose;     // Conv1D: HF [in, out] = our [out, in] transposed
    int qa;            // QA head (no "transformer." prefix)
} hf_entry;

static const hf_entry hf_map[GPT2_NUM_TENSORS] = {
    { P_WTE, "wte.weight", 0, 0, 0 },
    { P_WPE, "wpe.weight", 0, 0, 0 },
    { P_LN1W, "h.%d.ln_1.weight", 1, 0, 0 },
    { P_LN1B, "h.%d.ln_1.bias", 1, 0, 0 },
    { P_QKVW, "h.%d.attn.c_attn.weight", 1, 1, 0 },
    { P_QKVB, "h.%d.attn.c_attn.bias", 1, 0, 0 },
    { P_ATTPROJW, "h.%d.attn.c_proj.weight", 1, 1, 0 },
    { P_ATTPROJB, "h.%d.attn.c_proj.bias", 1, 0, 0 },
    { P_LN2W, "h.%d.ln_2.weight", 1, 0, 0 },
    { P_LN2B, "h.%d.ln_2.bias", 1, 0, 0 },
    { P_FCW, "h.%d.mlp.c_fc.weight", 1, 1, 0 },
    { P_FCB, "h.%d.mlp.c_fc.bias", 1, 0, 0 },
    { P_FCPROJW, "h.%d.mlp.c_proj.weight", 1, 1, 0 },
    { P_FCPROJB, "h.%d.mlp.c_proj.bias", 1, 0, 0 },
    { P_LNFW, "ln_f.weight", 0, 0, 0 },
    { P_LNFB, "ln_f.bias", 0, 0, 0 },
    { P_QAW, "qa_outputs.weight", 0, 0, 1 },
    { P_QAB, "qa_outputs.bias", 0, 0, 1 },
};

// HF shape of (one layer of) tensor p: our [rows, cols] per layer; Conv1D weights swap them.
static int hf_shape(const gpt2_shape *s, int p, int64_t *sh) {
    int64_t C = s->n_embd, V = s->vocab_size, T = s->n_ctx;
    switch (p) {
    case P_WTE: sh[0] = V; sh[1] = C; return 2;
    case P_WPE: sh[0] = T; sh[1] = C; return 2;
    case P_QKVW: sh[0] = C; sh[1] = 3 * C; return 2;
    case P_QKVB: sh[0] = 3 * C; return 1;
    case P_ATTPROJW: sh[0] = C; sh[1] = C; return 2;
    case P_FCW: sh[0] = C; sh[1] = 4 * C; return 2;
    case P_FCB: sh[0] = 4 * C; return 1;
    case P_FCPROJW: sh[0] = 4 * C; sh[1] = C; return 2;
    case P_QAW: sh[0] = 2; sh[1] = C; return 2;
    case P_QAB: sh[0] = 2; return 1;
    default: sh[0] = C; return 1;   // LN weights/biases, attention/MLP projection biases
    }
}

static void hf_name(const hf_entry *e, int layer, int prefixed, char *buf, size_t n) {
    char base[128];
    snprintf(base, sizeof base, e->fmt, layer);
    snprintf(buf, n, "%s%s", prefixed && !e->qa ? "transformer." : "", base);
}

// a set of shards
typedef struct { int n; st_file *f; } st_set;

static void set_close(st_set *s) {
    for (int i = 0; i < s->n; i++) st_close(&s->f[i]);
    free(s->f);
    memset(s, 0, sizeof(*s));
}

static const st_file *set_find(const st_set *s, const char *name, const st_tensor **t) {
    for (int i = 0; i < s->n; i++)
        if ((*t = st_find(&s->f[i], name))) return &s->f[i];
    return NULL;
}

static int set_open(const char *dir, st_set *s, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if (!stat(path, &sb)) {
        s->f = calloc(1, sizeof(st_file));
        if (!s->f) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
        if (st_open(path, &s->f[0], err, errlen)) { set_close(s); return -1; }
        s->n = 1;
        return 0;
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (stat(path, &sb)) {
        snprintf(err, errlen, "%s: no model.safetensors (nor model.safetensors.index.json)", dir);
        return -1;
    }
    char *text = read_text(path, err, errlen);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL, *e;
    if (!cJSON_IsObject(wm)) {
        snprintf(err, errlen, "%s: no weight_map object", path);
        cJSON_Delete(root);
        return -1;
    }
    int cap = cJSON_GetArraySize(wm);
    char **files = calloc(cap ? cap : 1, sizeof(char *));
    int nf = 0, rc = 0;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
            snprintf(err, errlen, "%s: weight_map entry '%s' is not a file name", path, e->string);
            rc = -1;
            break;
        }
        int k;
        for (k = 0; k < nf; k++) if (!strcmp(files[k], e->valuestring)) break;
        if (k == nf) files[nf++] = e->valuestring;
    }
    if (!rc) {
        s->f = calloc(nf ? nf : 1, sizeof(st_file));
        for (int k = 0; k < nf && !rc; k++) {
            char sp[4096];
            snprintf(sp, sizeof sp, "%s/%s", dir, files[k]);
            if (st_open(sp, &s->f[k], err, errlen)) rc = -1;
            else s->n++;
        }
    }
    free(files);
    cJSON_Delete(root);
    if (rc) set_close(s);
    return rc;
}

static int is_ignored_buffer(const char *name) {
    size_t n = strlen(name);
    return (n >= 10 && !strcmp(name + n - 10, ".attn.bias")) || (n >= 17 && !strcmp(name + n - 17, ".attn.masked_bias"));
}

// Fill host [n_base] from the set; strict: every non-QA tensor must be present and every
// tensor of the files must be known.
static int load_set(const st_set *set, const gpt2 *m, float *host, int *found, int strict, const char *where,
                    char *err, size_t errlen) {
    const gpt2_shape *s = &m->s;
    int L = s->n_layer;
    size_t tmpn = (size_t)s->vocab_size * s->n_embd;
    if ((size_t)s->n_ctx * s->n_embd > tmpn) tmpn = (size_t)s->n_ctx * s->n_embd;
    if ((size_t)4 * s->n_embd * s->n_embd > tmpn) tmpn = (size_t)4 * s->n_embd * s->n_embd;
    float *tmp = malloc(tmpn * sizeof(float));
    int total = 0;
    for (int i = 0; i < set->n; i++) total += set->f[i].n;
    char *used = calloc(total ? total : 1, 1);
    if (!tmp || !used) { free(tmp); free(used); snprintf(err, errlen, "%s: out of memory", where); return -1; }
    int rc = -1;
    for (int p = 0; p < GPT2_NUM_TENSORS; p++) {
        const hf_entry *e = &hf_map[p];
        int64_t sh[2];
        int nd = hf_shape(s, p, sh);
        size_t per = e->layered ? m->tensor_n[p] / L : m->tensor_n[p];
        int nl = e->layered ? L : 1, got = 0;
        for (int l = 0; l < nl; l++) {
            char name[160];
            const st_tensor *t = NULL;
            const st_file *f;
            hf_name(e, l, 1, name, sizeof name);
            f = set_find(set, name, &t);
            if (!f) { hf_name(e, l, 0, name, sizeof name); f = set_find(set, name, &t); }
            if (!f) {
                if (!strict || e->qa) continue;
                hf_name(e, l, 0, name, sizeof name);
                snprintf(err, errlen, "%s: missing tensor '%s' (nor 'transformer.%s')", where, name, name);
                goto done;
            }
            if (st_read_f32(f, t->name, sh, nd, tmp, err, errlen)) goto done;
            for (int i = 0, base = 0; i < set->n; base += set->f[i].n, i++)
                if (f == &set->f[i]) used[base + (t - f->t)] = 1;
            float *dst = host + m->tensor_off[p] + (size_t)l * per;
            if (e->transpose)   // HF [in = sh0, out = sh1] -> ours [out, in]
                for (int64_t i = 0; i < sh[0]; i++)
                    for (int64_t o = 0; o < sh[1]; o++) dst[o * sh[0] + i] = tmp[i * sh[1] + o];
            else memcpy(dst, tmp, per * sizeof(float));
            got++;
        }
        if (found) found[p] = got == nl;
    }
    if (strict) {
        if (found && found[P_QAW] != found[P_QAB]) {
            snprintf(err, errlen, "%s: missing tensor '%s'", where, found[P_QAW] ? "qa_outputs.bias" : "qa_outputs.weight");
            goto done;
        }
        for (int i = 0, base = 0; i < set->n; base += set->f[i].n, i++)
            for (int j = 0; j < set->f[i].n; j++) {
                const st_tensor *t = &set->f[i].t[j];
                if (used[base + j] || is_ignored_buffer(t->name)) continue;
                if (!strcmp(t->name, "lm_head.weight")) {
                    int64_t sh[2] = { s->vocab_size, s->n_embd };
                    if (st_read_f32(&set->f[i], t->name, sh, 2, tmp, err, errlen)) goto done;
                    if (memcmp(tmp, host + m->tensor_off[P_WTE], (size_t)sh[0] * sh[1] * sizeof(float)))
                        fprintf(stderr, "note: %s: lm_head.weight differs from wte (untied head); ignored: "
                                "swq ties the LM head to wte\n", set->f[i].path);
                    continue;
                }
                snprintf(err, errlen, "%s: unexpected tensor '%s' (not a GPT-2 parameter)", set->f[i].path, t->name);
                goto done;
            }
    }
    rc = 0;
done:
    free(tmp);
    free(used);
    return rc;
}

int hf_read_params(const char *path, const gpt2 *m, float *out, int *found, char *err, size_t errlen) {
    st_set set = { 0 };
    set.f = calloc(1, sizeof(st_file));
    if (!set.f) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
    if (st_open(path, &set.f[0], err, errlen)) { free(set.f); return -1; }
    set.n = 1;
    int rc = load_set(&set, m, out, found, 0, path, err, errlen);
    set_close(&set);
    return rc;
}

int hf_load_gpt2(const char *dir, gpt2 *m, char *err, size_t errlen) {
    gpt2_shape s;
    int has_qa;
    if (hf_read_config(dir, &s, &has_qa, err, errlen)) return -1;
    const gpt2_shape *ms = &m->s;
    if (s.n_layer != ms->n_layer || s.n_head != ms->n_head || s.n_embd != ms->n_embd || s.n_ctx != ms->n_ctx ||
        s.vocab_size != ms->vocab_size) {
        snprintf(err, errlen, "%s/config.json: shape n_layer=%d n_head=%d n_embd=%d n_positions=%d vocab_size=%d "
                 "differs from the model's n_layer=%d n_head=%d n_embd=%d n_ctx=%d vocab_size=%d", dir,
                 s.n_layer, s.n_head, s.n_embd, s.n_ctx, s.vocab_size,
                 ms->n_layer, ms->n_head, ms->n_embd, ms->n_ctx, ms->vocab_size);
        return -1;
    }
    st_set set;
    if (set_open(dir, &set, err, errlen)) return -1;
    float *host = malloc(m->n_base * sizeof(float));
    if (!host) { set_close(&set); snprintf(err, errlen, "%s: out of memory", dir); return -1; }
    // tensors the file lacks (the QA head of an LM checkpoint) keep their current values
    m->be->download(m->be, host, m->params, m->n_base);
    int found[GPT2_NUM_TENSORS] = { 0 };
    char where[4200];
    snprintf(where, sizeof where, "%s/%s", dir, set.n == 1 ? "model.safetensors" : "model.safetensors.index.json");
    int rc = load_set(&set, m, host, found, 1, where, err, errlen);
    if (!rc) m->be->upload(m->be, m->params, host, m->n_base);
    free(host);
    set_close(&set);
    return rc;
}

// ---------------------------------------------------------------- export

static int ensure_dir(const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0755) && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

// out = Q_bits(src) of a [rows, cols] backend tensor, as host floats (backend quantizer: the
// exact values swq's forward uses).
static void quantized_host(const gpt2 *m, void *scratch, const void *src, int rows, int cols, int bits, float *out) {
    swq_backend *be = m->be;
    be->quantize_rows(be, scratch, src, rows, cols, bits);
    be->download(be, out, scratch, (size_t)rows * cols);
}

static int write_config(const char *dir, const gpt2 *m, int tied, char *err, size_t errlen) {
    const gpt2_shape *s = &m->s;
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(m->task == TASK_QA ? "GPT2ForQuestionAnswering" : "GPT2LMHeadModel"));
    cJSON_AddStringToObject(c, "model_type", "gpt2");
    cJSON_AddStringToObject(c, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(c, "attn_pdrop", 0.1);
    cJSON_AddNumberToObject(c, "embd_pdrop", 0.1);
    cJSON_AddNumberToObject(c, "resid_pdrop", 0.1);
    cJSON_AddNumberToObject(c, "initializer_range", 0.02);
    cJSON_AddNumberToObject(c, "layer_norm_epsilon", 1e-5);
    cJSON_AddNumberToObject(c, "n_ctx", s->n_ctx);
    cJSON_AddNumberToObject(c, "n_positions", s->n_ctx);
    cJSON_AddNumberToObject(c, "n_embd", s->n_embd);
    cJSON_AddNumberToObject(c, "n_head", s->n_head);
    cJSON_AddNumberToObject(c, "n_layer", s->n_layer);
    cJSON_AddNumberToObject(c, "vocab_size", s->vocab_size);
    int eot = s->vocab_size > 50256 ? 50256 : s->vocab_size - 1;
    cJSON_AddNumberToObject(c, "bos_token_id", eot);
    cJSON_AddNumberToObject(c, "eos_token_id", eot);
    cJSON_AddBoolToObject(c, "scale_attn_weights", 1);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", tied);
    cJSON_AddBoolToObject(c, "use_cache", 1);
    cJSON_AddStringToObject(c, "torch_dtype", "float32");
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    if (!text) { snprintf(err, errlen, "%s: out of memory", dir); return -1; }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = swq_write_atomic(path, text, strlen(text), err, errlen);
    free(text);
    return rc;
}

int hf_save_gpt2(const char *dir, const gpt2 *m, int config_k, const char *mode, char *err, size_t errlen) {
    int fq = !strcmp(mode, "fake-quant"), ml = !strcmp(mode, "merge-lora");
    if (!fq && !ml && strcmp(mode, "fp32")) {
        snprintf(err, errlen, "hf export: unknown mode '%s' (fp32, merge-lora, fake-quant)", mode);
        return -1;
    }
    const qconfig_set *qs = m->qs;
    if ((fq || ml) && (config_k < 0 || config_k >= qs->K)) {
        snprintf(err, errlen, "hf export: config index %d out of range (%d configs)", config_k, qs->K);
        return -1;
    }
    if (ensure_dir(dir, err, errlen)) return -1;
    swq_backend *be = m->be;
    const gpt2_shape *s = &m->s;
    int L = s->n_layer, NL = qs->n_linear, C = s->n_embd, V = s->vocab_size;
    const qconfig *cf = (fq || ml) ? &qs->cfg[config_k] : NULL;
    if (fq) {
        int act = 32;
        for (int l = 0; l < NL; l++) if (cf->lin[l].a < act) act = cf->lin[l].a;
        if (act < 32)
            fprintf(stderr, "note: hf export of config '%s': its activations are quantized (down to %d bits); "
                    "the exported weights run with full-precision activations in transformers\n", cf->name, act);
    }
    float *host = malloc(m->n_total * sizeof(float));
    float *head = NULL;   // untied LM head [V, C]
    float *A = NULL, *Bm = NULL;
    void *scratch = NULL;
    int rc = -1, tied = 1;
    if (!host) { snprintf(err, errlen, "%s: out of memory", dir); return -1; }
    be->download(be, host, m->params, m->n_total);
    if (fq || ml) {
        int r = cf->lora_rank;
        double sc = r > 0 ? cf->lora_alpha / r : 0.0;
        size_t wmax = (size_t)V * C > (size_t)4 * C * C ? (size_t)V * C : (size_t)4 * C * C;
        size_t lmax = (size_t)r * (V > 4 * C ? V : 4 * C);
        scratch = be->alloc(be, (wmax > lmax ? wmax : lmax) * be->real_size, "hf export scratch");
        A = malloc((lmax ? lmax : 1) * sizeof(float));
        Bm = malloc((lmax ? lmax : 1) * sizeof(float));
        head = malloc((size_t)V * C * sizeof(float));
        if (!A || !Bm || !head) { snprintf(err, errlen, "%s: out of memory", dir); goto done; }
        for (int l = 0; l < NL; l++) {
            const gpt2_linear *li = &m->lin[l];
            lin_bits lb = cf->lin[l];
            int hd = l == NL - 1;
            float *W = hd ? host + m->tensor_off[P_WTE]
                          : host + ((const char *)li->w - (const char *)m->params) / be->real_size;
            if (fq && lb.w < 32) quantized_host(m, scratch, li->w, li->OC, li->IC, lb.w, W);
            if (fq && li->b && lb.b < 32) {
                float *b = host + ((const char *)li->b - (const char *)m->params) / be->real_size;
                quantized_host(m, scratch, li->b, 1, li->OC, lb.b, b);
            }
            if (r == 0) continue;   // no adapter to merge
            size_t lo = m->n_base + m->lora_off[(size_t)config_k * NL + l];
            size_t na = (size_t)r * li->IC, nb = (size_t)li->OC * r;
            if (fq && lb.lora < 32) {
                quantized_host(m, scratch, (char *)m->params + lo * be->real_size, r, li->IC, lb.lora, A);
                quantized_host(m, scratch, (char *)m->params + (lo + na) * be->real_size, li->OC, r, lb.lora, Bm);
            } else {
                memcpy(A, host + lo, na * sizeof(float));
                memcpy(Bm, host + lo + na, nb * sizeof(float));
            }
            float *dst = W;
            if (hd) {   // the head's LoRA must not change the embedding lookup
                memcpy(head, W, (size_t)V * C * sizeof(float));
                dst = head;
                for (size_t i = 0; i < nb && tied; i++) if (Bm[i] != 0 && m->task == TASK_LM) tied = 0;
                if (tied) continue;
            }
            // delta W [OC, IC] = sc * B [OC, r] @ A [r, IC]
            for (int o = 0; o < li->OC; o++) {
                float *row = dst + (size_t)o * li->IC;
                for (int i = 0; i < li->IC; i++) {
                    double acc = 0;
                    for (int j = 0; j < r; j++) acc += (double)Bm[(size_t)o * r + j] * A[(size_t)j * li->IC + i];
                    row[i] = (float)(row[i] + sc * acc);
                }
            }
        }
    }
    // assemble HF tensors
    int per_model = m->task == TASK_QA ? GPT2_NUM_TENSORS : P_QAW;
    int nt = 0, cap = GPT2_NUM_TENSORS * L + 1;
    st_out *outs = calloc(cap, sizeof(st_out));
    char (*names)[160] = calloc(cap, sizeof(*names));
    float **bufs = calloc(cap, sizeof(float *));
    if (!outs || !names || !bufs) { snprintf(err, errlen, "%s: out of memory", dir); goto done_out; }
    for (int p = 0; p < per_model; p++) {
        const hf_entry *e = &hf_map[p];
        int nl = e->layered ? L : 1;
        size_t per = e->layered ? m->tensor_n[p] / L : m->tensor_n[p];
        for (int l = 0; l < nl; l++) {
            st_out *o = &outs[nt];
            hf_name(e, l, 1, names[nt], sizeof names[nt]);
            o->name = names[nt];
            o->ndim = hf_shape(s, p, o->shape);
            const float *src = host + m->tensor_off[p] + (size_t)l * per;
            if (e->transpose) {
                int64_t in = o->shape[0], out = o->shape[1];
                float *t = bufs[nt] = malloc(per * sizeof(float));
                if (!t) { snprintf(err, errlen, "%s: out of memory", dir); goto done_out; }
                for (int64_t i = 0; i < in; i++)
                    for (int64_t j = 0; j < out; j++) t[i * out + j] = src[j * in + i];
                o->data = t;
            } else o->data = src;
            nt++;
        }
    }
    if (!tied) {
        st_out *o = &outs[nt++];
        o->name = "lm_head.weight";
        o->ndim = 2; o->shape[0] = V; o->shape[1] = C;
        o->data = head;
    }
    {
        char path[4096], cfgname[80];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        snprintf(cfgname, sizeof cfgname, "%s", cf ? cf->name : "");
        const char *meta[] = { "format", "pt", "swq_export", mode, "swq_config", cfgname };
        if (st_write(path, outs, nt, meta, cf ? 3 : 2, err, errlen)) goto done_out;
        if (write_config(dir, m, tied, err, errlen)) goto done_out;
    }
    rc = 0;
done_out:
    for (int i = 0; bufs && i < nt + 1 && i < cap; i++) free(bufs[i]);
    free(bufs); free(names); free(outs);
done:
    if (scratch) be->free(be, scratch);
    free(A); free(Bm); free(head); free(host);
    return rc;
}
