// GPT-2 byte-level BPE: vocabulary and merges from Hugging Face or OpenAI files, GPT-2's
// pre-tokenizer pattern through PCRE2, merges applied per pre-token in rank order, and a cache
// of pre-token -> ids so that repeated words cost one hash lookup.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   // memmem
#endif
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "squad.h"   // swq_read_file
#include "tokenizer_bpe.h"

#define EOT_STRING "<|endoftext|>"
#define EOT_LEN (sizeof(EOT_STRING) - 1)
#define MAX_ID (1 << 24)
#define CACHE_MAX_WORDS (1u << 20)   // the cache is emptied when it holds this many words
#define CACHE_MAX_WORD_LEN 256        // longer pre-tokens are rare: not worth their cache memory

// GPT-2's pattern. \s is spelled out as Unicode White_Space (what Oniguruma, Rust regex and
// Python's regex module match): PCRE2's UCP \s lacks U+0085. (?![^WS]) is (?!\S).
#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char PRETOKEN_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

// ---- string -> (v0, v1) hash map, keys stored in one byte array -------------------------

typedef struct { uint64_t h; uint32_t koff, klen, v0, v1; } sm_ent;   // h == 0: empty slot
typedef struct { sm_ent *e; size_t cap, n; byte_vec keys; } strmap;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h | 1;
}

static sm_ent *sm_get(const strmap *m, const char *k, size_t n, uint64_t h) {
    if (!m->cap) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        sm_ent *e = &m->e[i];
        if (!e->h) return NULL;
        if (e->h == h && e->klen == n && memcmp(m->keys.v + e->koff, k, n) == 0) return e;
    }
}

static void sm_place(strmap *m, sm_ent ent) {
    size_t i = ent.h & (m->cap - 1);
    while (m->e[i].h) i = (i + 1) & (m->cap - 1);
    m->e[i] = ent;
}

// key must be absent
static void sm_put(strmap *m, const char *k, size_t n, uint64_t h, uint32_t v0, uint32_t v1) {
    if (2 * (m->n + 1) > m->cap) {
        size_t oc = m->cap;
        sm_ent *old = m->e;
        m->cap = oc ? 2 * oc : 1024;
        m->e = (sm_ent *)swq_xrealloc(NULL, m->cap * sizeof(sm_ent));
        memset(m->e, 0, m->cap * sizeof(sm_ent));
        for (size_t i = 0; i < oc; i++)
            if (old[i].h) sm_place(m, old[i]);
        free(old);
    }
    sm_ent e = { h, (uint32_t)m->keys.n, (uint32_t)n, v0, v1 };
    byte_vec_append(&m->keys, k, n);
    sm_place(m, e);
    m->n++;
}

static void sm_clear(strmap *m) {
    if (m->cap) memset(m->e, 0, m->cap * sizeof(sm_ent));
    m->n = 0;
    m->keys.n = 0;
}

static void sm_free(strmap *m) { free(m->e); byte_vec_free(&m->keys); memset(m, 0, sizeof *m); }

// ---- the tokenizer ---------------------------------------------------------------------

typedef struct {
    char *dec;            // bytes of token i: dec[dec_off[i] .. dec_off[i + 1])
    uint32_t *dec_off;
    int byte_id[256];
    uint64_t *pk;         // merge pair (a << 32 | b) + 1 -> rank pv; pk == 0: empty slot
    int32_t *pv;
    size_t pcap;
    int32_t *merge_result;   // [rank] id of the merged token
    pcre2_code *re;
    int parse_special;
    pthread_mutex_t lock;    // guards the cache
    strmap cache;            // pre-token bytes -> cache_ids[v0 .. v0 + v1)
    int_vec cache_ids;
} bpe;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

static int pair_rank(const bpe *b, int x, int y) {
    uint64_t k = ((uint64_t)(uint32_t)x << 32 | (uint32_t)y) + 1;
    for (size_t i = mix64(k) & (b->pcap - 1);; i = (i + 1) & (b->pcap - 1)) {
        if (b->pk[i] == k) return b->pv[i];
        if (!b->pk[i]) return -1;
    }
}

static void pair_set(bpe *b, int x, int y, int rank) {   // a repeated pair keeps its last rank, as HF
    uint64_t k = ((uint64_t)(uint32_t)x << 32 | (uint32_t)y) + 1;
    size_t i = mix64(k) & (b->pcap - 1);
    while (b->pk[i] && b->pk[i] != k) i = (i + 1) & (b->pcap - 1);
    b->pk[i] = k;
    b->pv[i] = rank;
}

// length of the valid UTF-8 sequence at p, 0 if p starts no valid sequence
static size_t utf8_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F)) return 0;   // overlong, surrogate
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F)) return 0;   // overlong, > U+10FFFF
        return 4;
    }
    return 0;
}

// ---- BPE of one pre-token --------------------------------------------------------------

typedef struct { int rank, pos, a, b; } cand;   // mergeable neighbours: symbol pos and its next

static int cand_less(const cand *x, const cand *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(cand *h, int *n, cand c) {
    int i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = c;
}

static cand heap_pop(cand *h, int *n) {
    cand top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void push_pair(const bpe *b, cand *h, int *nh, const int *id, int p, int q) {
    int r = pair_rank(b, id[p], id[q]);
    if (r >= 0) heap_push(h, nh, (cand){ r, p, id[p], id[q] });
}

// Merges the bytes of w, lowest rank first and leftmost among equal ranks (as HF's BPE);
// writes the ids to ids[0..len) and returns their count.
static int bpe_word(const bpe *b, const char *w, int len, int *ids) {
    enum { SMALL = 64 };
    int id_s[SMALL], nx_s[SMALL], pv_s[SMALL];
    cand h_s[3 * SMALL];
    int *id = id_s, *nx = nx_s, *pv = pv_s;
    cand *h = h_s;
    char *scratch = NULL;
    if (len > SMALL) {
        scratch = (char *)swq_xrealloc(NULL, (size_t)len * (3 * sizeof(int) + 3 * sizeof(cand)));
        id = (int *)scratch; nx = id + len; pv = nx + len;
        h = (cand *)(pv + len);
    }
    int nh = 0;
    for (int i = 0; i < len; i++) {
        id[i] = b->byte_id[(unsigned char)w[i]];
        nx[i] = i + 1 < len ? i + 1 : -1;
        pv[i] = i - 1;
    }
    for (int i = 0; i + 1 < len; i++) push_pair(b, h, &nh, id, i, i + 1);
    while (nh) {
        cand c = heap_pop(h, &nh);
        int p = c.pos, q = nx[p];
        if (id[p] != c.a || q < 0 || id[q] != c.b) continue;   // stale: a neighbour was merged
        id[p] = b->merge_result[c.rank];
        id[q] = -1;
        nx[p] = nx[q];
        if (nx[p] >= 0) pv[nx[p]] = p;
        if (pv[p] >= 0) push_pair(b, h, &nh, id, pv[p], p);
        if (nx[p] >= 0) push_pair(b, h, &nh, id, p, nx[p]);
    }
    int n = 0;
    for (int i = 0; i >= 0; i = nx[i]) ids[n++] = id[i];
    free(scratch);
    return n;
}

static void emit_word(bpe *b, const char *w, size_t len, int_vec *out) {
    if (len == 1) { int_vec_push(out, b->byte_id[(unsigned char)w[0]]); return; }
    uint64_t h = hash_bytes(w, len);
    pthread_mutex_lock(&b->lock);
    sm_ent *e = sm_get(&b->cache, w, len, h);
    if (e) {
        for (uint32_t i = 0; i < e->v1; i++) int_vec_push(out, b->cache_ids.v[e->v0 + i]);
        pthread_mutex_unlock(&b->lock);
        return;
    }
    pthread_mutex_unlock(&b->lock);

    int ids_s[64];
    int *ids = len <= 64 ? ids_s : (int *)swq_xrealloc(NULL, len * sizeof(int));
    int n = bpe_word(b, w, (int)len, ids);
    for (int i = 0; i < n; i++) int_vec_push(out, ids[i]);

    pthread_mutex_lock(&b->lock);
    if (len <= CACHE_MAX_WORD_LEN && !sm_get(&b->cache, w, len, h)) {
        if (b->cache.n >= CACHE_MAX_WORDS) { sm_clear(&b->cache); b->cache_ids.n = 0; }
        sm_put(&b->cache, w, len, h, (uint32_t)b->cache_ids.n, (uint32_t)n);
        for (int i = 0; i < n; i++) int_vec_push(&b->cache_ids, ids[i]);
    }
    pthread_mutex_unlock(&b->lock);
    if (ids != ids_s) free(ids);
}

// s[0..n) is valid UTF-8 (checked by the caller)
static void encode_run(bpe *b, const char *s, size_t n, pcre2_match_data *md, int_vec *out) {
    size_t off = 0;
    while (off < n) {
        int rc = pcre2_match(b->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
        size_t end = 0;
        if (rc > 0) end = pcre2_get_ovector_pointer(md)[1];
        // every character matches some alternative; should the match fail anyway (a PCRE2
        // resource limit), the character becomes a pre-token of its own
        if (end <= off) end = off + utf8_len((const unsigned char *)s + off, n - off);
        emit_word(b, s + off, end - off, out);
        off = end;
    }
}

// maximal valid UTF-8 runs are pre-tokenized; every invalid byte is a pre-token of its own
static void encode_text(bpe *b, const char *s, size_t n, pcre2_match_data *md, int_vec *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0, i = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        size_t l = utf8_len(u + i, n - i);
        if (l) { i += l; continue; }
        if (i > run) encode_run(b, s + run, i - run, md, out);
        emit_word(b, s + i, 1, out);
        run = ++i;
    }
    if (n > run) encode_run(b, s + run, n - run, md, out);
}

static void bpe_encode(const tokenizer *t, const char *s, size_t n, int_vec *out) {
    bpe *b = (bpe *)t->impl;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(b->re, NULL);
    if (!md) { fprintf(stderr, "swq: out of host memory (pcre2 match data)\n"); exit(1); }
    size_t i = 0;
    if (b->parse_special) {
        for (;;) {
            const char *hit = (const char *)memmem(s + i, n - i, EOT_STRING, EOT_LEN);
            size_t end = hit ? (size_t)(hit - s) : n;
            encode_text(b, s + i, end - i, md, out);
            if (!hit) break;
            int_vec_push(out, t->eot);
            i = end + EOT_LEN;
        }
    } else {
        encode_text(b, s, n, md, out);
    }
    pcre2_match_data_free(md);
}

static void bpe_decode(const tokenizer *t, int id, byte_vec *out) {
    const bpe *b = (const bpe *)t->impl;
    if (id < 0 || id >= t->vocab_size) return;   // ids outside the vocabulary decode to nothing
    byte_vec_append(out, b->dec + b->dec_off[id], b->dec_off[id + 1] - b->dec_off[id]);
}

static void bpe_free(bpe *b) {
    if (!b) return;
    free(b->dec); free(b->dec_off); free(b->pk); free(b->pv); free(b->merge_result);
    if (b->re) pcre2_code_free(b->re);
    pthread_mutex_destroy(&b->lock);
    sm_free(&b->cache);
    int_vec_free(&b->cache_ids);
    free(b);
}

static void bpe_destroy(tokenizer *t) {
    bpe_free((bpe *)t->impl);
    free(t);
}

void tokenizer_bpe_set_special(tokenizer *t, int parse_special) {
    if (t && t->kind && strcmp(t->kind, "bpe") == 0) ((bpe *)t->impl)->parse_special = parse_special != 0;
}

// ---- loading ---------------------------------------------------------------------------

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
// for code points 256, 257, ... in byte order. Fills the UTF-8 form of each byte's symbol and
// the inverse map code point -> byte (-1: not a byte symbol).
static void byte_symbols(char sym[256][3], int cp_to_byte[324]) {
    int extra = 0;
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        int cp = keep ? c : 256 + extra++;
        cp_to_byte[cp] = c;
        if (cp < 0x80) { sym[c][0] = (char)cp; sym[c][1] = 0; }
        else { sym[c][0] = (char)(0xC0 | cp >> 6); sym[c][1] = (char)(0x80 | (cp & 0x3F)); sym[c][2] = 0; }
    }
}

// bytes a vocabulary string stands for; a string with characters outside the 256 byte symbols
// (not in GPT-2's files) stands for its own UTF-8 bytes
static void token_bytes(const char *s, const int cp_to_byte[324], byte_vec *out) {
    size_t n = strlen(s), start = out->n;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(u + i, n - i);
        int cp = l == 1 ? u[i] : l == 2 ? ((u[i] & 0x1F) << 6 | (u[i + 1] & 0x3F)) : -1;
        if (cp < 0 || cp >= 324 || cp_to_byte[cp] < 0) {
            out->n = start;
            byte_vec_append(out, s, n);
            return;
        }
        char c = (char)cp_to_byte[cp];
        byte_vec_append(out, &c, 1);
        i += l;
    }
}

typedef struct { strmap tok; char sym[256][3]; int cp_to_byte[324]; } load_state;

static int load_vocab(tokenizer *t, bpe *b, load_state *L, const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = swq_read_file(path, &len, err, errlen);
    if (!text) return -1;
    cJSON *js = cJSON_ParseWithLength(text, len);
    int rc = -1;
    const char **tok_of_id = NULL;
    if (!js) {
        const char *at = cJSON_GetErrorPtr();
        snprintf(err, errlen, "%s: invalid JSON near byte %ld", path,
                 at && at >= text && at <= text + len ? (long)(at - text) : -1L);
        goto done;
    }
    if (!cJSON_IsObject(js)) { snprintf(err, errlen, "%s: expected a JSON object of token -> id", path); goto done; }
    int max_id = -1;
    for (cJSON *c = js->child; c; c = c->next) {
        double v = c->valuedouble;
        if (!cJSON_IsNumber(c) || !(v >= 0 && v < MAX_ID) || v != (double)(int)v) {
            snprintf(err, errlen, "%s: token '%.60s' has id %s, expected an integer in [0, %d)", path,
                     c->string, cJSON_IsNumber(c) ? "out of range or fractional" : "that is not a number", MAX_ID);
            goto done;
        }
        if ((int)v > max_id) max_id = (int)v;
    }
    if (max_id < 0) { snprintf(err, errlen, "%s: empty vocabulary", path); goto done; }
    t->vocab_size = max_id + 1;
    tok_of_id = (const char **)calloc((size_t)t->vocab_size, sizeof(char *));
    if (!tok_of_id) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    for (cJSON *c = js->child; c; c = c->next) {
        int id = (int)c->valuedouble;
        if (tok_of_id[id]) {
            snprintf(err, errlen, "%s: duplicate id %d ('%.60s' and '%.60s')", path, id, tok_of_id[id], c->string);
            goto done;
        }
        tok_of_id[id] = c->string;
        size_t n = strlen(c->string);
        uint64_t h = hash_bytes(c->string, n);
        if (sm_get(&L->tok, c->string, n, h)) {
            snprintf(err, errlen, "%s: duplicate token '%.60s'", path, c->string);
            goto done;
        }
        sm_put(&L->tok, c->string, n, h, (uint32_t)id, 0);
    }
    sm_ent *e = sm_get(&L->tok, EOT_STRING, EOT_LEN, hash_bytes(EOT_STRING, EOT_LEN));
    if (!e) { snprintf(err, errlen, "%s: no \"" EOT_STRING "\" token", path); goto done; }
    t->eot = (int)e->v0;
    for (int c = 0; c < 256; c++) {
        size_t n = strlen(L->sym[c]);
        e = sm_get(&L->tok, L->sym[c], n, hash_bytes(L->sym[c], n));
        if (!e) { snprintf(err, errlen, "%s: byte 0x%02x (symbol '%s') not in vocab", path, c, L->sym[c]); goto done; }
        b->byte_id[c] = (int)e->v0;
    }
    byte_vec dec = {0};
    b->dec_off = (uint32_t *)swq_xrealloc(NULL, ((size_t)t->vocab_size + 1) * sizeof(uint32_t));
    for (int id = 0; id < t->vocab_size; id++) {
        b->dec_off[id] = (uint32_t)dec.n;
        if (tok_of_id[id]) token_bytes(tok_of_id[id], L->cp_to_byte, &dec);
    }
    b->dec_off[t->vocab_size] = (uint32_t)dec.n;
    b->dec = dec.v ? dec.v : (char *)swq_xrealloc(NULL, 1);
    rc = 0;
done:
    free(tok_of_id);
    cJSON_Delete(js);
    free(text);
    return rc;
}

static int lookup(const load_state *L, const char *s, size_t n) {
    sm_ent *e = sm_get(&L->tok, s, n, hash_bytes(s, n));
    return e ? (int)e->v0 : -1;
}

static int load_merges(bpe *b, const load_state *L, const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = swq_read_file(path, &len, err, errlen);
    if (!text) return -1;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    for (b->pcap = 1024; b->pcap < 2 * lines; b->pcap *= 2) {}
    b->pk = (uint64_t *)calloc(b->pcap, sizeof(uint64_t));
    b->pv = (int32_t *)calloc(b->pcap, sizeof(int32_t));
    b->merge_result = (int32_t *)calloc(lines, sizeof(int32_t));
    if (!b->pk || !b->pv || !b->merge_result) { snprintf(err, errlen, "%s: out of memory", path); free(text); return -1; }
    byte_vec both = {0};
    int rc = -1, rank = 0, ln = 0;
    for (char *p = text, *end = text + len; p < end;) {
        char *nl = (char *)memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        ln++;
        size_t n = (size_t)(le - p);
        if (n && p[n - 1] == '\r') n--;
        if (n >= 8 && memcmp(p, "#version", 8) == 0) { p = nl ? nl + 1 : end; continue; }
        char *sp = (char *)memchr(p, ' ', n);
        if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', (size_t)(p + n - sp - 1))) {
            snprintf(err, errlen, "%s:%d: expected two symbols separated by one space, got '%.*s'", path, ln,
                     (int)(n < 60 ? n : 60), p);
            goto done;
        }
        size_t na = (size_t)(sp - p), nb = n - na - 1;
        int a = lookup(L, p, na), c = lookup(L, sp + 1, nb);
        if (a < 0 || c < 0) {
            snprintf(err, errlen, "%s:%d: merge part '%.*s' not in vocab", path, ln,
                     a < 0 ? (int)na : (int)nb, a < 0 ? p : sp + 1);
            goto done;
        }
        both.n = 0;
        byte_vec_append(&both, p, na);
        byte_vec_append(&both, sp + 1, nb);
        int r = lookup(L, both.v, both.n);
        if (r < 0) { snprintf(err, errlen, "%s:%d: merge result '%.120s' not in vocab", path, ln, both.v); goto done; }
        pair_set(b, a, c, rank);
        b->merge_result[rank++] = r;
        p = nl ? nl + 1 : end;
    }
    rc = 0;
done:
    byte_vec_free(&both);
    free(text);
    return rc;
}

tokenizer *tokenizer_bpe_load(const char *dir, char *err, size_t errlen) {
    char vpath[4096], mpath[4096];
    snprintf(vpath, sizeof vpath, "%s/vocab.json", dir);
    snprintf(mpath, sizeof mpath, "%s/merges.txt", dir);
    if (access(vpath, F_OK) != 0) {
        snprintf(vpath, sizeof vpath, "%s/encoder.json", dir);
        snprintf(mpath, sizeof mpath, "%s/vocab.bpe", dir);
        if (access(vpath, F_OK) != 0) {
            snprintf(err, errlen, "%s/vocab.json: not found (nor encoder.json)", dir);
            return NULL;
        }
    }
    tokenizer *t = (tokenizer *)swq_xrealloc(NULL, sizeof(tokenizer));
    bpe *b = (bpe *)calloc(1, sizeof(bpe));
    load_state *L = (load_state *)calloc(1, sizeof(load_state));
    if (!b || !L || pthread_mutex_init(&b->lock, NULL) != 0) {
        snprintf(err, errlen, "%s: cannot allocate the tokenizer", vpath);
        free(b); free(L); free(t);
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->kind = "bpe";
    t->encode = bpe_encode;
    t->decode = bpe_decode;
    t->destroy = bpe_destroy;
    t->impl = b;
    b->parse_special = 1;
    byte_symbols(L->sym, L->cp_to_byte);
    int rc = load_vocab(t, b, L, vpath, err, errlen);
    if (rc == 0) rc = load_merges(b, L, mpath, err, errlen);
    sm_free(&L->tok);
    free(L);
    if (rc == 0) {
        int ec;
        PCRE2_SIZE eo;
        b->re = pcre2_compile((PCRE2_SPTR)PRETOKEN_PATTERN, PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &ec, &eo, NULL);
        if (!b->re) {
            PCRE2_UCHAR msg[160];
            if (pcre2_get_error_message(ec, msg, sizeof msg) < 0) strcpy((char *)msg, "unknown error");
            snprintf(err, errlen, "pre-tokenizer pattern: %s at offset %zu", (const char *)msg, (size_t)eo);
            rc = -1;
        } else {
            // no JIT on this build or CPU: pcre2_match then runs the interpreter, same results
            (void)pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE);
        }
    }
    if (rc != 0) { bpe_destroy(t); return NULL; }
    return t;
}
