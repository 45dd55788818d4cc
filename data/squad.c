// SQuAD v1.1 loader: JSON (plain or .zst) -> flat list of questions, optional article split.
#include <stdarg.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "squad.h"
#include "vec.h"

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = (char *)swq_xrealloc(NULL, n + 1);
    memcpy(d, s, n + 1);
    return d;
}

// byte offset of code point `cp` in s (Python str index), or -1 if past the end
static long cp_to_byte(const char *s, long cp) {
    if (cp < 0) return -1;
    long seen = 0;
    size_t i = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (seen == cp) return (long)i;
            seen++;
        }
    }
    return seen == cp ? (long)i : -1;
}

// ---- split file --------------------------------------------------------------------------

typedef struct { char *title; int eval; int used; } split_entry;
typedef struct { int n; split_entry *e; } split_map;

static void split_free(split_map *m) {
    for (int i = 0; i < m->n; i++) free(m->e[i].title);
    free(m->e);
    m->e = NULL; m->n = 0;
}

static int split_load(const char *path, split_map *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    size_t len;
    char *buf = swq_read_file(path, &len, err, errlen);
    if (!buf) return -1;
    if (strlen(buf) != len) { snprintf(err, errlen, "%s: split file contains NUL bytes", path); free(buf); return -1; }
    int lineno = 0, cap = 0;
    char *p = buf;
    while (*p) {
        char *nl = strchr(p, '\n');
        char *end = nl ? nl : p + strlen(p);
        lineno++;
        char *line = p;
        p = nl ? nl + 1 : end;
        if (end > line && end[-1] == '\r') end--;
        *end = 0;
        if (line[0] == 0) continue;                       // blank lines are allowed
        char *tab = strchr(line, '\t');
        if (!tab) {
            snprintf(err, errlen, "%s: line %d: expected 'title<TAB>train|eval'", path, lineno);
            goto fail;
        }
        *tab = 0;
        const char *side = tab + 1;
        int is_eval;
        if (strcmp(side, "train") == 0) is_eval = 0;
        else if (strcmp(side, "eval") == 0) is_eval = 1;
        else {
            snprintf(err, errlen, "%s: line %d: side must be 'train' or 'eval', got '%.40s'", path, lineno, side);
            goto fail;
        }
        if (line[0] == 0) { snprintf(err, errlen, "%s: line %d: empty title", path, lineno); goto fail; }
        for (int i = 0; i < m->n; i++)
            if (strcmp(m->e[i].title, line) == 0) {
                snprintf(err, errlen, "%s: line %d: title '%.60s' listed twice", path, lineno, line);
                goto fail;
            }
        if (m->n == cap) { cap = cap ? 2 * cap : 64; m->e = (split_entry *)swq_xrealloc(m->e, cap * sizeof(split_entry)); }
        m->e[m->n].title = xstrdup(line);
        m->e[m->n].eval = is_eval;
        m->e[m->n].used = 0;
        m->n++;
    }
    free(buf);
    if (m->n == 0) { snprintf(err, errlen, "%s: split file lists no articles", path); return -1; }
    return 0;
fail:
    free(buf);
    split_free(m);
    return -1;
}

// ---- loader ------------------------------------------------------------------------------

static const char *get_string(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void qa_free(squad_qa *q) {
    free(q->id); free(q->title); free(q->context); free(q->question);
    for (int j = 0; j < q->n_answers; j++) free(q->answers[j]);
    free(q->answers); free(q->answer_start);
}

static void layout_err(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    int k = snprintf(err, errlen, "%s: not SQuAD layout: ", path);
    if (k < 0 || (size_t)k >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
}
#define LAYOUT(...) do { layout_err(err, errlen, path, __VA_ARGS__); goto fail; } while (0)

int squad_load(const char *path, const char *split_file, const char *side, squad_set *out,
               char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    split_map split = {0};
    int want_eval = 0;
    if (split_file) {
        if (!side || (strcmp(side, "train") != 0 && strcmp(side, "eval") != 0)) {
            snprintf(err, errlen, "%s: split side must be 'train' or 'eval', got '%s'", split_file, side ? side : "(null)");
            return -1;
        }
        want_eval = strcmp(side, "eval") == 0;
        if (split_load(split_file, &split, err, errlen)) return -1;
    }
    size_t len;
    char *text = swq_read_file(path, &len, err, errlen);
    if (!text) { split_free(&split); return -1; }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    squad_set s = {0};
    size_t cap = 0;
    if (!root) LAYOUT("not valid JSON");
    if (!cJSON_IsObject(root)) LAYOUT("top level is not an object");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!data) LAYOUT("no 'data' array");
    if (!cJSON_IsArray(data)) LAYOUT("'data' is not an array");
    int ai = 0;
    for (const cJSON *art = data->child; art; art = art->next, ai++) {
        if (!cJSON_IsObject(art)) LAYOUT("data[%d] is not an object", ai);
        const char *title = get_string(art, "title");
        if (!title) LAYOUT("data[%d] has no string 'title'", ai);
        const cJSON *paras = cJSON_GetObjectItemCaseSensitive(art, "paragraphs");
        if (!cJSON_IsArray(paras)) LAYOUT("data[%d] has no 'paragraphs' array", ai);
        int keep = 1;
        if (split_file) {
            keep = 0;
            for (int i = 0; i < split.n; i++)
                if (strcmp(split.e[i].title, title) == 0) {
                    split.e[i].used = 1;
                    keep = split.e[i].eval == want_eval;
                    break;
                }
        }
        int pi = 0;
        for (const cJSON *para = paras->child; para; para = para->next, pi++) {
            if (!cJSON_IsObject(para)) LAYOUT("data[%d].paragraphs[%d] is not an object", ai, pi);
            const char *ctx = get_string(para, "context");
            if (!ctx) LAYOUT("data[%d].paragraphs[%d] has no string 'context'", ai, pi);
            const cJSON *qas = cJSON_GetObjectItemCaseSensitive(para, "qas");
            if (!cJSON_IsArray(qas)) LAYOUT("data[%d].paragraphs[%d] has no 'qas' array", ai, pi);
            int qi = 0;
            for (const cJSON *qa = qas->child; qa; qa = qa->next, qi++) {
                if (!cJSON_IsObject(qa)) LAYOUT("data[%d].paragraphs[%d].qas[%d] is not an object", ai, pi, qi);
                const char *id = get_string(qa, "id");
                const char *question = get_string(qa, "question");
                const cJSON *answers = cJSON_GetObjectItemCaseSensitive(qa, "answers");
                if (!id) LAYOUT("data[%d].paragraphs[%d].qas[%d] has no string 'id'", ai, pi, qi);
                if (!question) LAYOUT("data[%d].paragraphs[%d].qas[%d] has no string 'question'", ai, pi, qi);
                if (!answers) LAYOUT("data[%d].paragraphs[%d].qas[%d] has no 'answers'", ai, pi, qi);
                if (!cJSON_IsArray(answers)) LAYOUT("data[%d].paragraphs[%d].qas[%d]: 'answers' is not an array", ai, pi, qi);
                int na = cJSON_GetArraySize(answers), j = 0;
                for (const cJSON *a = answers->child; a; a = a->next, j++) {
                    const cJSON *st = cJSON_GetObjectItemCaseSensitive(a, "answer_start");
                    if (!cJSON_IsObject(a) || !get_string(a, "text"))
                        LAYOUT("data[%d].paragraphs[%d].qas[%d].answers[%d] has no string 'text'", ai, pi, qi, j);
                    if (!cJSON_IsNumber(st))
                        LAYOUT("data[%d].paragraphs[%d].qas[%d].answers[%d] has no number 'answer_start'", ai, pi, qi, j);
                }
                if (!keep) continue;
                // locate each answer; the question survives if at least one answer is in the context
                squad_qa q = {0};
                q.n_answers = na;
                q.answers = (char **)swq_xrealloc(NULL, (size_t)(na ? na : 1) * sizeof(char *));
                q.answer_start = (int *)swq_xrealloc(NULL, (size_t)(na ? na : 1) * sizeof(int));
                int found = 0;
                j = 0;
                for (const cJSON *a = answers->child; a; a = a->next, j++) {
                    const char *t = get_string(a, "text");
                    double cpd = cJSON_GetObjectItemCaseSensitive(a, "answer_start")->valuedouble;
                    long b = (cpd >= 0 && cpd < 1e9) ? cp_to_byte(ctx, (long)cpd) : -1;
                    size_t tl = strlen(t);
                    if (tl == 0) b = -1;
                    else if (b < 0 || strncmp(ctx + b, t, tl) != 0) {
                        const char *hit = strstr(ctx, t);
                        b = hit ? (long)(hit - ctx) : -1;
                    }
                    q.answers[j] = xstrdup(t);
                    q.answer_start[j] = (int)b;
                    if (b >= 0) found = 1;
                }
                if (!found) { qa_free(&q); s.n_skipped++; continue; }
                q.id = xstrdup(id);
                q.title = xstrdup(title);
                q.context = xstrdup(ctx);
                q.question = xstrdup(question);
                if ((size_t)s.n == cap) { cap = cap ? 2 * cap : 1024; s.qa = (squad_qa *)swq_xrealloc(s.qa, cap * sizeof(squad_qa)); }
                s.qa[s.n++] = q;
            }
        }
    }
    if (split_file) {
        int used = 0;
        for (int i = 0; i < split.n; i++) used += split.e[i].used;
        if (!used) {
            snprintf(err, errlen, "%s: names no article of %s", split_file, path);
            goto fail;
        }
    }
    cJSON_Delete(root);
    split_free(&split);
    *out = s;
    return 0;
fail:
    cJSON_Delete(root);
    split_free(&split);
    squad_free(&s);
    return -1;
}

void squad_free(squad_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) qa_free(&s->qa[i]);
    free(s->qa);
    s->qa = NULL; s->n = 0; s->n_skipped = 0;
}
