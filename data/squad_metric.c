// Official SQuAD v1.1 metric (evaluate-v1.1.py) on UTF-8 byte strings.
// normalize_answer = white_space_fix(remove_articles(remove_punc(lower(s)))).
// Differences from Python, by design: lower() only folds ASCII A-Z (other bytes are kept as
// they are); the \b word test treats non-ASCII code points as word characters except
// Unicode whitespace and the common punctuation/symbol blocks. Whitespace splitting uses
// exactly Python's str.split() set, including the non-ASCII spaces.
#include <string.h>
#include "squad.h"
#include "vec.h"

static const char *PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

// decode one UTF-8 code point at s[i] (n bytes left); invalid bytes decode as themselves
static unsigned decode_cp(const unsigned char *s, size_t n, size_t *len) {
    unsigned c = s[0];
    int k = c >= 0xF8 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (c < 0x80 || k == 0 || (size_t)k >= n) { *len = 1; return c; }
    unsigned cp = c & (0x3F >> k);
    for (int j = 1; j <= k; j++) {
        if ((s[j] & 0xC0) != 0x80) { *len = 1; return c; }
        cp = (cp << 6) | (s[j] & 0x3F);
    }
    *len = (size_t)k + 1;
    return cp;
}

// Python str.isspace() for the characters str.split() splits on
static int py_space(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// re's \w for str patterns, approximated outside ASCII
static int py_word(unsigned cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (py_space(cp)) return 0;
    if (cp >= 0xA1 && cp <= 0xBF)   // Latin-1 symbols; a few are letters or digits
        return cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 || cp == 0xB9 || cp == 0xBA ||
               (cp >= 0xBC && cp <= 0xBE);
    if (cp == 0xD7 || cp == 0xF7) return 0;
    if (cp >= 0x2000 && cp <= 0x206F) return 0;   // general punctuation
    if (cp >= 0x20A0 && cp <= 0x20CF) return 0;   // currency
    if (cp >= 0x2190 && cp <= 0x23FF) return 0;   // arrows, math operators, technical
    if (cp >= 0x2500 && cp <= 0x27BF) return 0;   // box drawing, shapes, dingbats
    if (cp >= 0x3000 && cp <= 0x3004) return 0;   // CJK punctuation
    if (cp >= 0x3008 && cp <= 0x3020) return 0;
    if (cp >= 0xFF01 && cp <= 0xFF0F) return 0;   // fullwidth punctuation
    return 1;
}

char *squad_normalize(const char *in) {
    size_t n = strlen(in);
    // lower + remove_punc
    char *a = (char *)swq_xrealloc(NULL, n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if ((unsigned char)c < 0x80 && c != 0 && strchr(PUNCT, c)) continue;
        a[m++] = c;
    }
    a[m] = 0;
    // remove_articles: a maximal run of word characters equal to a/an/the becomes one space
    byte_vec b = {0};
    byte_vec_append(&b, "", 0);
    const unsigned char *u = (const unsigned char *)a;
    size_t i = 0;
    while (i < m) {
        size_t len;
        unsigned cp = decode_cp(u + i, m - i, &len);
        if (!py_word(cp)) { byte_vec_append(&b, a + i, len); i += len; continue; }
        size_t j = i;
        while (j < m) {
            size_t l2;
            unsigned c2 = decode_cp(u + j, m - j, &l2);
            if (!py_word(c2)) break;
            j += l2;
        }
        size_t w = j - i;
        if ((w == 1 && a[i] == 'a') || (w == 2 && !memcmp(a + i, "an", 2)) || (w == 3 && !memcmp(a + i, "the", 3)))
            byte_vec_append(&b, " ", 1);
        else
            byte_vec_append(&b, a + i, w);
        i = j;
    }
    free(a);
    // white_space_fix: ' '.join(s.split())
    char *o = (char *)swq_xrealloc(NULL, b.n + 1);
    size_t k = 0;
    int pending = 0;
    u = (const unsigned char *)b.v;
    for (i = 0; i < b.n;) {
        size_t len;
        unsigned cp = decode_cp(u + i, b.n - i, &len);
        if (py_space(cp)) { pending = k > 0; i += len; continue; }
        if (pending) { o[k++] = ' '; pending = 0; }
        memcpy(o + k, b.v + i, len);
        k += len; i += len;
    }
    o[k] = 0;
    byte_vec_free(&b);
    return o;
}

int squad_exact_match(const char *pred, char *const *answers, int n) {
    char *p = squad_normalize(pred);
    int best = 0;
    for (int i = 0; i < n && !best; i++) {
        char *g = squad_normalize(answers[i]);
        best = strcmp(p, g) == 0;
        free(g);
    }
    free(p);
    return best;
}

// split a normalized string (single spaces) into tokens; returns count, tokens point into s
static int split_tokens(char *s, char ***out) {
    int n = 0, cap = 0;
    char **t = NULL;
    for (char *p = s; *p;) {
        char *sp = strchr(p, ' ');
        if (n == cap) { cap = cap ? 2 * cap : 16; t = (char **)swq_xrealloc(t, (size_t)cap * sizeof(char *)); }
        t[n++] = p;
        if (!sp) break;
        *sp = 0;
        p = sp + 1;
    }
    *out = t;
    return n;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static double f1_one(char **pt, int np, const char *gold) {
    char *g = squad_normalize(gold);
    char **gt = NULL;
    int ng = split_tokens(g, &gt);
    qsort(gt, (size_t)ng, sizeof(char *), cmp_str);
    // Counter intersection = merge of the two sorted token lists
    int i = 0, j = 0, same = 0;
    while (i < np && j < ng) {
        int c = strcmp(pt[i], gt[j]);
        if (c == 0) { same++; i++; j++; }
        else if (c < 0) i++;
        else j++;
    }
    double f1 = 0.0;
    if (same > 0) {
        double prec = (double)same / np, rec = (double)same / ng;
        f1 = 2.0 * prec * rec / (prec + rec);
    }
    free(gt); free(g);
    return f1;
}

double squad_f1(const char *pred, char *const *answers, int n) {
    char *p = squad_normalize(pred);
    char **pt = NULL;
    int np = split_tokens(p, &pt);
    qsort(pt, (size_t)np, sizeof(char *), cmp_str);
    double best = 0.0;
    for (int i = 0; i < n; i++) {
        double f = f1_one(pt, np, answers[i]);
        if (f > best) best = f;
    }
    free(pt); free(p);
    return best;
}
