// GPT-2 BPE tokenizer: a tiny hand-made vocabulary (merge order, pre-tokenization, special
// token, loader errors), then, where ../shared holds GPT-2's files, ids equal to Hugging Face's
// GPT2TokenizerFast on the fixture (SQuAD dev contexts and questions plus hard strings, made by
// tools/bpe_fixture.py), round trips on random bytes, threads, and the encode speed.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   // mkdtemp, symlink
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <zstd.h>
#include "check.h"
#include "data/tokenizer_bpe.h"

#define GPT2_DIR "../shared/data/gpt2-tokenizer"
#define FIXTURE "tests/fixtures/bpe/bpe_fixture.bin.zst"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { printf("cannot write %s\n", path); return -1; }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}

static int ids_eq(const int_vec *v, const int *want, size_t n) {
    return v->n == n && (n == 0 || memcmp(v->v, want, n * sizeof(int)) == 0);
}

static void encode(const tokenizer *t, const char *s, size_t n, int_vec *out) {
    out->n = 0;
    t->encode(t, s, n, out);
}

static int round_trips(const tokenizer *t, const char *s, size_t n) {
    int_vec ids = {0};
    byte_vec back = {0};
    t->encode(t, s, n, &ids);
    for (size_t i = 0; i < ids.n; i++) t->decode(t, ids.v[i], &back);
    int ok = back.n == n && (n == 0 || memcmp(back.v, s, n) == 0);
    int_vec_free(&ids);
    byte_vec_free(&back);
    return ok;
}

static const char *fmt_ids(const int_vec *v) {
    static char buf[512];
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < v->n && o + 16 < sizeof buf; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%d", i ? "," : "", v->v[i]);
    return buf;
}

// ---- tiny vocabulary -------------------------------------------------------------------

// GPT-2's byte symbols: printable Latin-1 bytes stand for themselves, the rest for U+0100...
static void byte_symbol(int c, char out[3]) {
    static int cp[256], init;
    if (!init) {
        int extra = 0;
        for (int b = 0; b < 256; b++) {
            int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            cp[b] = keep ? b : 256 + extra++;
        }
        init = 1;
    }
    int p = cp[c];
    if (p < 0x80) { out[0] = (char)p; out[1] = 0; }
    else { out[0] = (char)(0xC0 | p >> 6); out[1] = (char)(0x80 | (p & 0x3F)); out[2] = 0; }
}

// ids 0..255 are the bytes; merges in this rank order
static const char *TINY_MERGES[] = { "h e", "l l", "he ll", "hell o", "Ġ w", "a a", "o r", "Ġw or",
                                     "b c", "a b", "Ġ Â" };
enum { T_HE = 256, T_LL, T_HELL, T_HELLO, T_GW, T_AA, T_OR, T_GWOR, T_BC, T_AB, T_GA, T_EOT, T_N };
static const char *TINY_EXTRA[] = { "he", "ll", "hell", "hello", "Ġw", "aa", "or", "Ġwor", "bc", "ab", "ĠÂ",
                                    "<|endoftext|>" };

// flags: 1 no eot, 2 no byte 0, 4 duplicate id, 8 fractional id
static char *tiny_vocab_json(int flags) {
    cJSON *o = cJSON_CreateObject();
    char sym[3];
    for (int c = 0; c < 256; c++) {
        if (c == 0 && (flags & 2)) continue;
        byte_symbol(c, sym);
        cJSON_AddNumberToObject(o, sym, c);
    }
    for (int i = 0; i < T_N - 256; i++) {
        if (i == T_EOT - 256 && (flags & 1)) continue;
        cJSON_AddNumberToObject(o, TINY_EXTRA[i], 256 + i);
    }
    if (flags & 4) cJSON_AddNumberToObject(o, "xyz", 5);
    if (flags & 8) cJSON_AddNumberToObject(o, "xyz", 300.5);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *tiny_merges_txt(const char *extra_line) {
    byte_vec m = {0};
    byte_vec_puts(&m, "#version: 0.2\n");
    for (size_t i = 0; i < sizeof TINY_MERGES / sizeof *TINY_MERGES; i++) {
        byte_vec_puts(&m, TINY_MERGES[i]);
        byte_vec_puts(&m, "\n");
    }
    if (extra_line) byte_vec_puts(&m, extra_line);
    return m.v;
}

static char made_dirs[64][64];
static int n_made;

static int make_dir(char *tmpl) {
    if (!mkdtemp(tmpl)) return -1;
    if (n_made < 64) strcpy(made_dirs[n_made++], tmpl);
    return 0;
}

static void remove_made_dirs(void) {
    static const char *names[] = { "vocab.json", "merges.txt", "encoder.json", "vocab.bpe" };
    char path[160];
    for (int i = 0; i < n_made; i++) {
        for (int k = 0; k < 4; k++) {
            snprintf(path, sizeof path, "%.63s/%s", made_dirs[i], names[k]);
            unlink(path);   // absent files are expected
        }
        if (rmdir(made_dirs[i]) != 0) printf("note: cannot remove %s\n", made_dirs[i]);
    }
}

// writes a tiny tokenizer into a fresh /tmp folder under the given file names
static int tiny_dir(char *dir, const char *vname, const char *mname, int vflags, const char *extra_merge) {
    strcpy(dir, "/tmp/test_bpe_XXXXXX");
    if (make_dir(dir) != 0) { printf("mkdtemp failed\n"); return -1; }
    char *v = tiny_vocab_json(vflags), *m = tiny_merges_txt(extra_merge);
    int rc = (v && vname ? write_file(dir, vname, v) : 0) | (mname ? write_file(dir, mname, m) : 0);
    free(v);
    free(m);
    return rc;
}

static void expect_error(const char *what, int vflags, const char *extra_merge, const char *vname,
                         const char *mname, const char *want) {
    char dir[64], err[512] = "", full[600];
    if (tiny_dir(dir, vname, mname, vflags, extra_merge) != 0) { CHECK(0, "%s: setup", what); return; }
    tokenizer *t = tokenizer_bpe_load(dir, err, sizeof err);
    snprintf(full, sizeof full, "%s/%s", dir, want);
    CHECK(t == NULL && strstr(err, full) != NULL, "%s: want error containing \"%s\", got \"%s\"", what, full, err);
    if (t) t->destroy(t);
}

static void test_tiny(void) {
    char dir[64], err[512] = "";
    if (tiny_dir(dir, "vocab.json", "merges.txt", 0, NULL) != 0) { CHECK(0, "tiny setup"); return; }
    tokenizer *t = tokenizer_bpe_load(dir, err, sizeof err);
    CHECK(t != NULL, "tiny load: %s", err);
    if (!t) return;
    CHECK(t->vocab_size == T_N && t->eot == T_EOT && strcmp(t->kind, "bpe") == 0,
          "tiny vocab_size %d eot %d", t->vocab_size, t->eot);
    int_vec v = {0};
    struct { const char *s; int n; int ids[16]; } cases[] = {
        { "hello", 1, { T_HELLO } },
        { "hello world", 4, { T_HELLO, T_GWOR, 'l', 'd' } },
        { "aaa", 2, { T_AA, 'a' } },              // leftmost of equal ranks first
        { "aaaa", 2, { T_AA, T_AA } },
        { "abc", 2, { 'a', T_BC } },              // "b c" ranks before "a b"
        { "abd", 2, { T_AB, 'd' } },
        { "x<|endoftext|>y", 3, { 'x', T_EOT, 'y' } },
        { "<|endoftext|><|endoftext|>", 2, { T_EOT, T_EOT } },
        // U+0085 is White_Space (as in HF/tiktoken): "a", " ", "\x85", "b", not "a", " \x85", "b"
        { "a \xc2\x85" "b", 5, { 'a', ' ', 0xC2, 0x85, 'b' } },
        // a whitespace run ending the text stays whole: " \x85" -> "ĠÂ" merge applies
        { "a \xc2\x85", 3, { 'a', T_GA, 0x85 } },
        // invalid UTF-8: each bad byte its own pre-token, valid runs pre-tokenized on their own
        { "he\xffllo", 4, { T_HE, 0xFF, T_LL, 'o' } },
        { "", 0, { 0 } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        encode(t, cases[i].s, strlen(cases[i].s), &v);
        CHECK(ids_eq(&v, cases[i].ids, (size_t)cases[i].n), "tiny encode case %zu got [%s]", i, fmt_ids(&v));
        CHECK(round_trips(t, cases[i].s, strlen(cases[i].s)), "tiny round trip case %zu", i);
    }
    // with special-token parsing off the literal is ordinary text (no merges apply: its bytes)
    tokenizer_bpe_set_special(t, 0);
    const char *s = "x<|endoftext|>y";
    encode(t, s, strlen(s), &v);
    int same = v.n == strlen(s);
    for (size_t i = 0; same && i < v.n; i++) same = v.v[i] == (unsigned char)s[i];
    CHECK(same, "tiny plain-text eot got [%s]", fmt_ids(&v));
    CHECK(round_trips(t, s, strlen(s)), "tiny plain-text eot round trip");
    tokenizer_bpe_set_special(t, 1);

    // the OpenAI file names give the same tokenizer
    char dir2[64];
    if (tiny_dir(dir2, "encoder.json", "vocab.bpe", 0, NULL) != 0) { CHECK(0, "tiny openai setup"); }
    else {
        tokenizer *t2 = tokenizer_bpe_load(dir2, err, sizeof err);
        CHECK(t2 != NULL, "tiny load (encoder.json, vocab.bpe): %s", err);
        if (t2) {
            int_vec v2 = {0};
            s = "hello world abc aaa";
            encode(t, s, strlen(s), &v);
            encode(t2, s, strlen(s), &v2);
            CHECK(v.n == v2.n && memcmp(v.v, v2.v, v.n * sizeof(int)) == 0, "openai names encode differently");
            int_vec_free(&v2);
            t2->destroy(t2);
        }
    }
    int_vec_free(&v);
    t->destroy(t);

    expect_error("no files", 0, NULL, NULL, NULL, "vocab.json: not found");
    expect_error("no merges", 0, NULL, "vocab.json", NULL, "merges.txt: cannot open");
    expect_error("no vocab.bpe", 0, NULL, "encoder.json", NULL, "vocab.bpe: cannot open");
    expect_error("no eot", 1, NULL, "vocab.json", "merges.txt", "vocab.json: no \"<|endoftext|>\" token");
    expect_error("missing byte", 2, NULL, "vocab.json", "merges.txt", "vocab.json: byte 0x00 (symbol 'Ā') not in vocab");
    expect_error("duplicate id", 4, NULL, "vocab.json", "merges.txt", "vocab.json: duplicate id 5");
    expect_error("fractional id", 8, NULL, "vocab.json", "merges.txt", "vocab.json: token 'xyz' has id");
    expect_error("three symbols", 0, "h e l\n", "vocab.json", "merges.txt", "merges.txt:13: expected two symbols");
    expect_error("one symbol", 0, "hello\n", "vocab.json", "merges.txt", "merges.txt:13: expected two symbols");
    expect_error("result missing", 0, "x y\n", "vocab.json", "merges.txt", "merges.txt:13: merge result 'xy' not in vocab");
    expect_error("part missing", 0, "he zz\n", "vocab.json", "merges.txt", "merges.txt:13: merge part 'zz' not in vocab");
    if (tiny_dir(dir, NULL, "merges.txt", 0, NULL) == 0 && write_file(dir, "vocab.json", "{\"a\": 1,") == 0) {
        tokenizer *bad = tokenizer_bpe_load(dir, err, sizeof err);
        CHECK(bad == NULL && strstr(err, "vocab.json: invalid JSON"), "bad JSON: got \"%s\"", err);
        if (bad) bad->destroy(bad);
    } else CHECK(0, "bad JSON setup");
}

// ---- random bytes ----------------------------------------------------------------------

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 11); }

static size_t random_text(char *buf, size_t cap) {
    static const char *pieces[] = { " ", "  ", "\n", "\t", "a", "the", " world", "'s", "'ll", "42", " 7", "é",
                                    "中文", "😀", "\xe2\x80\x8d", "\xc2\x85", "\xc2\xa0", "<|endoftext|>", "<|end",
                                    "\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe4\xb8", "\xff", "\xf0\x9f" };
    size_t n = 0, want = rnd() % 120;
    while (n < want) {
        if (rnd() % 4 == 0) { if (n < cap) buf[n++] = (char)(rnd() & 0xFF); continue; }
        const char *p = pieces[rnd() % (sizeof pieces / sizeof *pieces)];
        size_t l = strlen(p);
        if (n + l > cap) break;
        memcpy(buf + n, p, l);
        n += l;
    }
    return n;
}

static void test_random(tokenizer *t, const char *name, int count) {
    char buf[1024];
    int bad = 0, bad_repeat = 0;
    int_vec a = {0}, b = {0};
    for (int i = 0; i < count; i++) {
        size_t n = random_text(buf, sizeof buf);
        tokenizer_bpe_set_special(t, i & 1);
        if (!round_trips(t, buf, n)) bad++;
        encode(t, buf, n, &a);
        encode(t, buf, n, &b);   // now from the cache
        if (a.n != b.n || (a.n && memcmp(a.v, b.v, a.n * sizeof(int)) != 0)) bad_repeat++;
    }
    tokenizer_bpe_set_special(t, 1);
    CHECK(bad == 0, "%s: %d of %d random byte strings do not round-trip", name, bad, count);
    CHECK(bad_repeat == 0, "%s: %d of %d random strings encode differently the second time", name, bad_repeat, count);
    int_vec_free(&a);
    int_vec_free(&b);
}

// ---- GPT-2 and the fixture -------------------------------------------------------------

typedef struct { int mode; const char *text; size_t len; int n_ids; const uint16_t *ids; } fx_rec;
typedef struct { char *buf; size_t len; int n; fx_rec *r; } fixture;

static int u32_at(const char *p) { uint32_t x; memcpy(&x, p, 4); return (int)x; }

static int fixture_load(fixture *fx) {
    memset(fx, 0, sizeof *fx);
    FILE *f = fopen(FIXTURE, "rb");
    if (!f) { printf("%s: cannot open\n", FIXTURE); return -1; }
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    size_t cap = 1 << 22;
    fx->buf = malloc(cap);
    char in[1 << 16];
    int rc = dc && fx->buf ? 0 : -1;
    size_t got;
    while (rc == 0 && (got = fread(in, 1, sizeof in, f)) > 0) {
        ZSTD_inBuffer ib = { in, got, 0 };
        while (rc == 0 && ib.pos < ib.size) {
            if (cap - fx->len < (1 << 20)) { cap *= 2; fx->buf = swq_xrealloc(fx->buf, cap); }
            ZSTD_outBuffer ob = { fx->buf + fx->len, cap - fx->len, 0 };
            size_t z = ZSTD_decompressStream(dc, &ob, &ib);
            if (ZSTD_isError(z)) { printf("%s: %s\n", FIXTURE, ZSTD_getErrorName(z)); rc = -1; }
            fx->len += ob.pos;
        }
    }
    if (ferror(f)) rc = -1;
    fclose(f);
    ZSTD_freeDCtx(dc);
    if (rc) return -1;
    const char *p = fx->buf, *end = fx->buf + fx->len;
    if (fx->len < 12 || memcmp(p, "SWQBPEF1", 8) != 0) { printf("%s: bad header\n", FIXTURE); return -1; }
    fx->n = u32_at(p + 8);
    p += 12;
    fx->r = calloc((size_t)fx->n, sizeof(fx_rec));
    for (int i = 0; i < fx->n; i++) {
        if (end - p < 5) goto trunc;
        fx->r[i].mode = (unsigned char)p[0];
        fx->r[i].len = (size_t)u32_at(p + 1);
        p += 5;
        if ((size_t)(end - p) < fx->r[i].len + 4) goto trunc;
        fx->r[i].text = p;
        p += fx->r[i].len;
        fx->r[i].n_ids = u32_at(p);
        p += 4;
        if ((size_t)(end - p) < 2 * (size_t)fx->r[i].n_ids) goto trunc;
        fx->r[i].ids = (const uint16_t *)p;   // may be unaligned: read with memcpy
        p += 2 * (size_t)fx->r[i].n_ids;
    }
    return 0;
trunc:
    printf("%s: truncated\n", FIXTURE);
    return -1;
}

static int rec_matches(const fx_rec *r, const int_vec *v) {
    if (v->n != (size_t)r->n_ids) return 0;
    for (int j = 0; j < r->n_ids; j++) {
        uint16_t x;
        memcpy(&x, (const char *)r->ids + 2 * j, 2);
        if (v->v[j] != x) return 0;
    }
    return 1;
}

typedef struct { tokenizer *t; const fixture *fx; int start, bad; } thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    int_vec v = {0};
    for (int k = 0; k < a->fx->n; k++) {
        const fx_rec *r = &a->fx->r[(a->start + k) % a->fx->n];
        if (r->mode != 0) continue;
        encode(a->t, r->text, r->len, &v);
        if (!rec_matches(r, &v)) a->bad++;
    }
    int_vec_free(&v);
    return NULL;
}

static void test_gpt2(void) {
    char err[512] = "";
    tokenizer *t = tokenizer_bpe_load(GPT2_DIR, err, sizeof err);
    CHECK(t != NULL, "load %s: %s", GPT2_DIR, err);
    if (!t) return;
    CHECK(t->vocab_size == 50257 && t->eot == 50256, "vocab_size %d eot %d", t->vocab_size, t->eot);
    int_vec v = {0};
    static const int hello[] = { 15496, 995 }, hello2[] = { 18435, 11, 995, 0 };
    encode(t, "Hello world", 11, &v);
    CHECK(ids_eq(&v, hello, 2), "\"Hello world\" -> [%s]", fmt_ids(&v));
    encode(t, " Hello, world!", 14, &v);
    CHECK(ids_eq(&v, hello2, 4), "\" Hello, world!\" -> [%s]", fmt_ids(&v));
    // invalid byte between valid runs: "ab" | 0xFF | "cd"
    int_vec w = {0};
    encode(t, "ab\xff" "cd", 5, &v);
    encode(t, "ab", 2, &w);
    t->encode(t, "\xff", 1, &w);
    t->encode(t, "cd", 2, &w);
    CHECK(v.n == w.n && memcmp(v.v, w.v, v.n * sizeof(int)) == 0, "invalid byte split: [%s]", fmt_ids(&v));
    byte_vec d = {0};
    t->decode(t, t->eot, &d);
    t->decode(t, -1, &d);
    t->decode(t, t->vocab_size, &d);
    CHECK(strcmp(d.v, "<|endoftext|>") == 0, "decode(eot) and out-of-range ids: \"%s\"", d.v);
    byte_vec_free(&d);

    // OpenAI file names (symlinks in a temporary folder) give the same ids
    char dir[64] = "/tmp/test_bpe_XXXXXX", a[600], b[600];
    tokenizer *t2 = NULL;
    if (make_dir(dir) == 0) {
        char cwd[400];
        if (getcwd(cwd, sizeof cwd)) {
            snprintf(a, sizeof a, "%s/%s/encoder.json", cwd, GPT2_DIR);
            snprintf(b, sizeof b, "%s/encoder.json", dir);
            int ok = symlink(a, b) == 0;
            snprintf(a, sizeof a, "%s/%s/vocab.bpe", cwd, GPT2_DIR);
            snprintf(b, sizeof b, "%s/vocab.bpe", dir);
            ok = ok && symlink(a, b) == 0;
            if (ok) t2 = tokenizer_bpe_load(dir, err, sizeof err);
        }
    }
    CHECK(t2 != NULL, "load encoder.json + vocab.bpe: %s", err);

    fixture fx;
    if (fixture_load(&fx) != 0) {
        CHECK(0, "fixture %s unreadable", FIXTURE);
    } else {
        // the whole fixture on a fresh tokenizer: cold (cache filling) then warm
        int bad = 0, bad_rt = 0, bad_openai = 0;
        size_t tokens = 0, bytes = 0;
        double t0 = now_s();
        for (int i = 0; i < fx.n; i++) {
            const fx_rec *r = &fx.r[i];
            tokenizer_bpe_set_special(t, r->mode == 0);
            encode(t, r->text, r->len, &v);
            tokens += v.n;
            bytes += r->len;
            if (!rec_matches(r, &v)) {
                if (++bad <= 10) printf("  fixture record %d (mode %d) \"%.60s\": got [%s]\n", i, r->mode, r->text, fmt_ids(&v));
            }
        }
        double cold = now_s() - t0;
        t0 = now_s();
        for (int i = 0; i < fx.n; i++) {
            tokenizer_bpe_set_special(t, fx.r[i].mode == 0);
            encode(t, fx.r[i].text, fx.r[i].len, &v);
        }
        double warm = now_s() - t0;
        for (int i = 0; i < fx.n; i++) {
            tokenizer_bpe_set_special(t, fx.r[i].mode == 0);
            if (!round_trips(t, fx.r[i].text, fx.r[i].len)) bad_rt++;
            if (t2 && i % 7 == 0) {
                tokenizer_bpe_set_special(t2, fx.r[i].mode == 0);
                encode(t2, fx.r[i].text, fx.r[i].len, &v);
                if (!rec_matches(&fx.r[i], &v)) bad_openai++;
            }
        }
        tokenizer_bpe_set_special(t, 1);
        CHECK(bad == 0, "%d of %d fixture records differ from Hugging Face", bad, fx.n);
        CHECK(bad_rt == 0, "%d of %d fixture texts do not round-trip", bad_rt, fx.n);
        CHECK(bad_openai == 0, "%d fixture records differ when loaded from encoder.json + vocab.bpe", bad_openai);
        printf("fixture: %d records, %zu bytes, %zu tokens, all ids equal to HF: %s\n", fx.n, bytes, tokens,
               bad ? "NO" : "yes");
        printf("encode speed (one core): cold cache %.3f s = %.0f tokens/s (%.1f MB/s), warm cache %.3f s = %.0f tokens/s\n",
               cold, tokens / cold, bytes / cold / 1e6, warm, tokens / warm);

        // two threads share a fresh tokenizer (and its cache)
        tokenizer *t3 = tokenizer_bpe_load(GPT2_DIR, err, sizeof err);
        CHECK(t3 != NULL, "reload: %s", err);
        if (t3) {
            thread_arg ta[2] = { { t3, &fx, 0, 0 }, { t3, &fx, fx.n / 2, 0 } };
            pthread_t th[2];
            int started = 0;
            for (int k = 0; k < 2; k++) started += pthread_create(&th[k], NULL, thread_main, &ta[k]) == 0;
            CHECK(started == 2, "pthread_create");
            for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
            CHECK(started == 2 && ta[0].bad == 0 && ta[1].bad == 0, "threads: %d and %d records differ", ta[0].bad, ta[1].bad);
            t3->destroy(t3);
        }
    }
    free(fx.buf);
    free(fx.r);
    test_random(t, "gpt2", 3000);
    if (t2) t2->destroy(t2);
    int_vec_free(&v);
    int_vec_free(&w);
    t->destroy(t);
}

int main(void) {
    test_tiny();
    char dir[64], err[512];
    if (tiny_dir(dir, "vocab.json", "merges.txt", 0, NULL) == 0) {
        tokenizer *t = tokenizer_bpe_load(dir, err, sizeof err);
        CHECK(t != NULL, "tiny load: %s", err);
        if (t) { test_random(t, "tiny", 3000); t->destroy(t); }
    }
    if (access(GPT2_DIR "/vocab.json", R_OK) == 0) test_gpt2();
    else printf("note: %s not found; GPT-2 fixture checks skipped (tiny vocabulary only)\n", GPT2_DIR);
    remove_made_dirs();
    return check_summary("test_bpe");
}
