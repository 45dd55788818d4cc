// Data layer: synthetic generator, SQuAD loader (plain/.zst, split files, bad inputs),
// byte tokenizer, prompt and span example builders.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <zstd.h>
#include <cjson/cJSON.h>
#include "check.h"
#include "data/squad.h"
#include "data/tokenizer.h"
#include "data/examples.h"

static char tmpdir[64];
static char *tpath(const char *name) {             // path in the scratch dir (static ring)
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}
static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) { printf("cannot write %s\n", path); exit(2); }
}
static void write_str(const char *path, const char *s) { write_file(path, s, strlen(s)); }
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static char *decode_range(const tokenizer *t, const int *ids, int a, int b) {   // ids[a..b)
    byte_vec v = {0};
    byte_vec_append(&v, "", 0);
    for (int i = a; i < b; i++) t->decode(t, ids[i], &v);
    return v.v;
}

// ---- synthetic generator ---------------------------------------------------------------

static void test_synth(void) {
    char err[512];
    size_t n1, n2, n3;
    CHECK(synthqa_write(tpath("s7a.json"), 60, 7, err, sizeof err) == 0, "synth write: %s", err);
    CHECK(synthqa_write(tpath("s7b.json"), 60, 7, err, sizeof err) == 0, "synth write: %s", err);
    CHECK(synthqa_write(tpath("s8.json"), 60, 8, err, sizeof err) == 0, "synth write: %s", err);
    char *a = swq_read_file(tpath("s7a.json"), &n1, err, sizeof err);
    char *b = swq_read_file(tpath("s7b.json"), &n2, err, sizeof err);
    char *c = swq_read_file(tpath("s8.json"), &n3, err, sizeof err);
    CHECK(a && b && c, "read back synthetic files");
    if (!a || !b || !c) { free(a); free(b); free(c); return; }
    CHECK(n1 == n2 && memcmp(a, b, n1) == 0, "same seed gives byte-identical files");
    CHECK(n1 != n3 || memcmp(a, c, n1) != 0, "different seeds give different files");
    struct stat st;
    CHECK(stat(tpath("s7a.json.tmp"), &st) != 0, "no temp file left behind");
    CHECK(synthqa_write(tpath("no/such/dir/x.json"), 5, 1, err, sizeof err) == -1 && strstr(err, "no/such/dir"),
          "unwritable path is an error naming it: %s", err);
    CHECK(synthqa_write(tpath("zero.json"), 0, 1, err, sizeof err) == -1, "0 articles is an error");

    // every answer_start (code points; the text is ASCII) points at the answer text
    cJSON *root = cJSON_Parse(a);
    CHECK(root != NULL, "synthetic file is valid JSON");
    int nq = 0, bad_start = 0, non_ascii = 0, long_ctx = 0, nctx = 0, bad_words = 0, nart = 0;
    int max_prompt = 0;
    const cJSON *data = cJSON_GetObjectItem(root, "data"), *art, *para, *qa;
    cJSON_ArrayForEach(art, data) {
        nart++;
        cJSON_ArrayForEach(para, cJSON_GetObjectItem(art, "paragraphs")) {
            const char *ctx = cJSON_GetObjectItem(para, "context")->valuestring;
            nctx++;
            if (strlen(ctx) > 140) long_ctx++;
            for (const char *p = ctx; *p; p++) non_ascii += (unsigned char)*p >= 0x80;
            int nqp = 0;
            cJSON_ArrayForEach(qa, cJSON_GetObjectItem(para, "qas")) {
                const cJSON *ans = cJSON_GetArrayItem(cJSON_GetObjectItem(qa, "answers"), 0);
                const char *t = cJSON_GetObjectItem(ans, "text")->valuestring;
                const char *q = cJSON_GetObjectItem(qa, "question")->valuestring;
                int st0 = cJSON_GetObjectItem(ans, "answer_start")->valueint;
                if (st0 < 0 || (size_t)st0 + strlen(t) > strlen(ctx) || strncmp(ctx + st0, t, strlen(t)) != 0) bad_start++;
                int words = 1;
                for (const char *p = t; *p; p++) words += *p == ' ';
                if (words > 3 || !t[0]) bad_words++;
                // byte prompt: template (28 bytes) + context + question + " " + answer + eot
                int plen = 28 + (int)strlen(ctx) + (int)strlen(q) + 1 + (int)strlen(t) + 1;
                if (plen > max_prompt) max_prompt = plen;
                nq++; nqp++;
            }
            CHECK(nqp >= 3 && nqp <= 6, "paragraph has 3-6 questions (one per fact), got %d", nqp);
        }
    }
    cJSON_Delete(root);
    CHECK(nart == 60, "60 articles, got %d", nart);
    CHECK(nq > 60 * 3, "questions: %d", nq);
    CHECK(bad_start == 0, "%d answer_start values do not point at the answer", bad_start);
    CHECK(bad_words == 0, "%d answers are not 1-3 words", bad_words);
    CHECK(non_ascii == 0, "synthetic text is ASCII");
    CHECK(long_ctx * 10 <= nctx, "%d of %d contexts longer than 140 bytes", long_ctx, nctx);
    CHECK(max_prompt <= 220, "longest byte-level prompt example is %d tokens", max_prompt);

    // loader round trip: all questions load, at the generator's offsets
    squad_set s;
    CHECK(squad_load(tpath("s7a.json"), NULL, NULL, &s, err, sizeof err) == 0, "load synthetic: %s", err);
    CHECK(s.n == nq && s.n_skipped == 0, "loaded %d of %d questions (%d skipped)", s.n, nq, s.n_skipped);
    int dup = 0, mism = 0;
    for (int i = 0; i < s.n; i++) {
        const squad_qa *q = &s.qa[i];
        if (q->n_answers != 1 || q->answer_start[0] < 0 ||
            strncmp(q->context + q->answer_start[0], q->answers[0], strlen(q->answers[0])) != 0) mism++;
        if (i && strcmp(s.qa[i - 1].id, q->id) == 0) dup++;
        if (!strstr(q->question, q->title) && !strchr(q->title, '_')) mism++;   // city questions name the city
    }
    CHECK(mism == 0, "%d loaded questions do not match the file", mism);
    CHECK(dup == 0, "question ids are distinct");
    squad_free(&s);

    // the same file compressed with zstd (streaming, no content size in the frame) loads the same
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    size_t cap = ZSTD_compressBound(n1);
    char *z = malloc(cap);
    ZSTD_inBuffer in = { a, n1, 0 };
    ZSTD_outBuffer out = { z, cap, 0 };
    size_t r = ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);
    ZSTD_freeCCtx(cc);
    CHECK(r == 0, "zstd compress");
    CHECK(ZSTD_getFrameContentSize(z, out.pos) == ZSTD_CONTENTSIZE_UNKNOWN, "frame has no content size");
    write_file(tpath("s7.json.zst"), z, out.pos);
    size_t nz;
    char *dz = swq_read_file(tpath("s7.json.zst"), &nz, err, sizeof err);
    CHECK(dz && nz == n1 && memcmp(dz, a, n1) == 0, "zstd stream decompresses to the original: %s", dz ? "" : err);
    free(dz);
    squad_set sz;
    CHECK(squad_load(tpath("s7.json.zst"), NULL, NULL, &sz, err, sizeof err) == 0 && sz.n == nq, "load .zst: %s", err);
    squad_free(&sz);
    // truncated and garbage .zst
    write_file(tpath("trunc.json.zst"), z, out.pos / 2);
    CHECK(squad_load(tpath("trunc.json.zst"), NULL, NULL, &sz, err, sizeof err) == -1 &&
          strstr(err, tpath("trunc.json.zst")) && strstr(err, "zstd"), "truncated .zst: %s", err);
    write_str(tpath("garbage.json.zst"), "{\"data\": []}");
    CHECK(swq_read_file(tpath("garbage.json.zst"), &nz, err, sizeof err) == NULL &&
          strstr(err, "not a valid zstd stream") && strstr(err, "garbage.json.zst"), "plain text named .zst: %s", err);
    free(z);
    free(a); free(b); free(c);
}

// ---- loader: code points, split files, bad inputs --------------------------------------

static void test_loader(void) {
    char err[512];
    squad_set s;
    // code-point answer_start: "é" and "€" are 2 and 3 bytes; the answer text occurs twice and
    // the offset points at the second occurrence
    const char *uni =
        "{\"version\":\"1.1\",\"data\":[{\"title\":\"Uni\",\"paragraphs\":[{\"context\":\"Caf\\u00e9 \\u20ac5, Paris. Paris again.\","
        "\"qas\":[{\"id\":\"q1\",\"question\":\"Where again?\",\"answers\":[{\"text\":\"Paris\",\"answer_start\":16},"
        "{\"text\":\"Paris\",\"answer_start\":3}]},"
        "{\"id\":\"q2\",\"question\":\"Missing?\",\"answers\":[{\"text\":\"London\",\"answer_start\":0}]},"
        "{\"id\":\"q3\",\"question\":\"Price?\",\"answers\":[{\"text\":\"\\u20ac5\",\"answer_start\":5},{\"text\":\"Rome\",\"answer_start\":1}]}]}]}]}";
    write_str(tpath("uni.json"), uni);
    CHECK(squad_load(tpath("uni.json"), NULL, NULL, &s, err, sizeof err) == 0, "load uni: %s", err);
    if (s.n == 2) {
        // "Café €5, Paris. Paris again.": code point 16 = 2nd Paris = byte 19; first Paris at byte 12
        CHECK(s.qa[0].answer_start[0] == 19, "code point 16 -> byte 19, got %d", s.qa[0].answer_start[0]);
        CHECK(s.qa[0].answer_start[1] == 12, "wrong offset -> first occurrence (byte 12), got %d", s.qa[0].answer_start[1]);
        CHECK(s.qa[1].answer_start[0] == 6, "code point 5 -> byte 6, got %d", s.qa[1].answer_start[0]);
        CHECK(s.qa[1].answer_start[1] == -1 && s.qa[1].n_answers == 2, "answer not in context: -1, question kept");
        CHECK(strcmp(s.qa[0].title, "Uni") == 0 && strcmp(s.qa[1].id, "q3") == 0, "fields");
    }
    CHECK(s.n == 2 && s.n_skipped == 1, "question whose answer is not in the context skipped and counted: n=%d skipped=%d", s.n, s.n_skipped);
    squad_free(&s);

    struct { const char *name, *text, *want; } bad[] = {
        { "notjson.json", "this is not json", "not valid JSON" },
        { "nodata.json", "{\"version\":\"1.1\"}", "no 'data'" },
        { "dataobj.json", "{\"data\":{}}", "'data' is not an array" },
        { "noanswers.json", "{\"data\":[{\"title\":\"T\",\"paragraphs\":[{\"context\":\"c\",\"qas\":[{\"id\":\"1\",\"question\":\"q\",\"answers\":[{\"text\":\"c\",\"answer_start\":0}]},{\"id\":\"2\",\"question\":\"q\"}]}]}]}", "data[0].paragraphs[0].qas[1] has no 'answers'" },
        { "noquestion.json", "{\"data\":[{\"title\":\"T\",\"paragraphs\":[{\"context\":\"c\",\"qas\":[{\"id\":\"1\",\"answers\":[]}]}]}]}", "has no string 'question'" },
        { "ctxnum.json", "{\"data\":[{\"title\":\"T\",\"paragraphs\":[{\"context\":5,\"qas\":[]}]}]}", "data[0].paragraphs[0] has no string 'context'" },
        { "startstr.json", "{\"data\":[{\"title\":\"T\",\"paragraphs\":[{\"context\":\"c\",\"qas\":[{\"id\":\"1\",\"question\":\"q\",\"answers\":[{\"text\":\"c\",\"answer_start\":\"0\"}]}]}]}]}", "answer_start" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = tpath(bad[i].name);
        write_str(p, bad[i].text);
        int rc = squad_load(p, NULL, NULL, &s, err, sizeof err);
        CHECK(rc == -1 && strstr(err, p) && strstr(err, bad[i].want) && strstr(err, "not SQuAD layout"),
              "%s: rc=%d err='%s' (want '%s')", bad[i].name, rc, err, bad[i].want);
        CHECK(s.n == 0 && s.qa == NULL, "failed load leaves an empty set");
    }
    const char *missing = tpath("missing.json");
    CHECK(squad_load(missing, NULL, NULL, &s, err, sizeof err) == -1 && strstr(err, missing) &&
          strstr(err, "cannot open: No such file or directory"), "missing file: %s", err);

    // split files, on a synthetic file whose titles we read back
    CHECK(synthqa_write(tpath("sp.json"), 10, 99, err, sizeof err) == 0, "synth: %s", err);
    squad_set all;
    CHECK(squad_load(tpath("sp.json"), NULL, NULL, &all, err, sizeof err) == 0, "load: %s", err);
    byte_vec sp = {0};
    byte_vec_append(&sp, "", 0);
    int n_train_want = 0, n_art = 0;
    for (int i = 0; i < all.n; i++) {
        if (i && strcmp(all.qa[i].title, all.qa[i - 1].title) == 0) { if (n_art <= 6) n_train_want++; continue; }
        n_art++;
        if (n_art <= 6) n_train_want++;
        byte_vec_puts(&sp, all.qa[i].title);
        byte_vec_puts(&sp, n_art <= 6 ? "\ttrain\r\n" : "\teval\n");   // CRLF tolerated
    }
    write_str(tpath("sp.split"), sp.v);
    byte_vec_free(&sp);
    squad_set tr, ev;
    CHECK(squad_load(tpath("sp.json"), tpath("sp.split"), "train", &tr, err, sizeof err) == 0, "split train: %s", err);
    CHECK(squad_load(tpath("sp.json"), tpath("sp.split"), "eval", &ev, err, sizeof err) == 0, "split eval: %s", err);
    CHECK(tr.n == n_train_want && tr.n + ev.n == all.n, "split sizes %d + %d of %d (want %d train)", tr.n, ev.n, all.n, n_train_want);
    squad_free(&tr); squad_free(&ev); squad_free(&all);
    struct { const char *name, *text, *want; } badsplit[] = {
        { "notab.split", "Title train\n", "line 1" },
        { "side.split", "A\ttrain\nB\ttest\n", "line 2" },
        { "none.split", "Nowhere\ttrain\nElsewhere\teval\n", "names no article" },
        { "empty.split", "\n", "no articles" },
    };
    for (size_t i = 0; i < sizeof badsplit / sizeof badsplit[0]; i++) {
        const char *p = tpath(badsplit[i].name);
        write_str(p, badsplit[i].text);
        int rc = squad_load(tpath("sp.json"), p, "train", &s, err, sizeof err);
        CHECK(rc == -1 && strstr(err, p) && strstr(err, badsplit[i].want), "%s: rc=%d err='%s'", badsplit[i].name, rc, err);
    }
    CHECK(squad_load(tpath("sp.json"), tpath("nosuch.split"), "train", &s, err, sizeof err) == -1 &&
          strstr(err, "nosuch.split: cannot open"), "missing split file: %s", err);
    CHECK(squad_load(tpath("sp.json"), tpath("sp.split"), "test", &s, err, sizeof err) == -1, "bad side: %s", err);
}

static void test_dev_set(void) {
    struct stat st;
    if (stat("../shared/data", &st) != 0) { printf("SKIP dev-set checks: ../shared/data is absent\n"); return; }
    char err[512];
    squad_set s;
    double t0 = now();
    int rc = squad_load("../shared/data/squad-v1.1-dev.json.zst", NULL, NULL, &s, err, sizeof err);
    double dt = now() - t0;
    CHECK(rc == 0, "dev: %s", err);
    if (rc) return;
    CHECK(s.n == 10570 && s.n_skipped == 0, "dev questions %d (skipped %d)", s.n, s.n_skipped);
    CHECK(dt < 3.0, "dev load took %.2f s", dt);
    int bad = 0, total = 0;
    for (int i = 0; i < s.n; i++)
        for (int j = 0; j < s.qa[i].n_answers; j++, total++)
            if (s.qa[i].answer_start[j] < 0 ||
                strncmp(s.qa[i].context + s.qa[i].answer_start[j], s.qa[i].answers[j], strlen(s.qa[i].answers[j])) != 0) bad++;
    CHECK(total == 34726 && bad == 0, "dev answers %d, %d not at their offset", total, bad);
    CHECK(strcmp(s.qa[0].title, "Super_Bowl_50") == 0, "first article %s", s.qa[0].title);
    squad_free(&s);
    squad_set tr, ev;
    CHECK(squad_load("../shared/data/squad-v1.1-dev.json.zst", "../shared/data/squad-v1.1-dev-split.txt", "train", &tr, err, sizeof err) == 0, "%s", err);
    CHECK(squad_load("../shared/data/squad-v1.1-dev.json.zst", "../shared/data/squad-v1.1-dev-split.txt", "eval", &ev, err, sizeof err) == 0, "%s", err);
    CHECK(tr.n == 8582 && ev.n == 1988, "dev split %d / %d", tr.n, ev.n);
    squad_free(&tr); squad_free(&ev);
}

// ---- tokenizers and examples -----------------------------------------------------------

// a test tokenizer with multi-byte tokens of varying length (1-3 bytes), to check that the
// example builders track byte offsets through decode lengths
static void chunk_encode(const tokenizer *t, const char *s, size_t n, int_vec *out) {
    for (size_t i = 0; i < n;) {
        size_t len = 1 + (unsigned char)s[i] % 3;
        if (len > n - i) len = n - i;
        int id = (int)len << 24;
        for (size_t k = 0; k < len; k++) id |= (unsigned char)s[i + k] << (8 * k);
        int_vec_push(out, id);
        i += len;
    }
}
static void chunk_decode(const tokenizer *t, int id, byte_vec *out) {
    if (id == t->eot) { byte_vec_puts(out, "<|endoftext|>"); return; }
    for (int k = 0; k < (id >> 24); k++) { char c = (char)((id >> (8 * k)) & 0xff); byte_vec_append(out, &c, 1); }
}
static void chunk_destroy(tokenizer *t) { (void)t; }

static squad_set one_question(const char *ctx, const char *q, const char *ans) {
    squad_set s = { 1, calloc(1, sizeof(squad_qa)), 0 };
    s.qa->id = strdup("x1"); s.qa->title = strdup("T"); s.qa->context = strdup(ctx); s.qa->question = strdup(q);
    s.qa->n_answers = 1;
    s.qa->answers = malloc(sizeof(char *)); s.qa->answers[0] = strdup(ans);
    s.qa->answer_start = malloc(sizeof(int));
    const char *hit = strstr(ctx, ans);
    s.qa->answer_start[0] = hit ? (int)(hit - ctx) : -1;
    return s;
}

static void test_examples(void) {
    char err[512];
    tokenizer *tok = tokenizer_byte();
    CHECK(tok->vocab_size == 257 && tok->eot == 256 && strcmp(tok->kind, "byte") == 0, "byte tokenizer shape");
    int_vec ids = {0};
    tok->encode(tok, "h\xc3\xa9", 3, &ids);
    CHECK(ids.n == 3 && ids.v[0] == 'h' && ids.v[1] == 0xc3 && ids.v[2] == 0xa9, "bytes are ids");
    int_vec_push(&ids, 256);
    char *d = decode_range(tok, ids.v, 0, 4);
    CHECK(strcmp(d, "h\xc3\xa9<|endoftext|>") == 0, "decode: %s", d);
    free(d); int_vec_free(&ids);

    // prompt layout
    squad_set s = one_question("Zorvath is a city in Quelmar. It was founded in 1843.", "When was Zorvath founded?", "1843");
    prompt_examples pe;
    CHECK(prompt_examples_build(&s, tok, SWQ_DEFAULT_PROMPT, 200, 16, &pe, err, sizeof err) == 0, "prompt build: %s", err);
    if (pe.n == 1) {
        prompt_example *e = &pe.ex[0];
        char *p = decode_range(tok, e->ids, 0, e->prompt_len), *t = decode_range(tok, e->ids, e->prompt_len, e->n);
        CHECK(strcmp(p, "Context: Zorvath is a city in Quelmar. It was founded in 1843.\nQuestion: When was Zorvath founded?\nAnswer:") == 0, "prompt: %s", p);
        CHECK(strcmp(t, " 1843<|endoftext|>") == 0, "target: %s", t);
        CHECK(e->ids[e->n - 1] == tok->eot && e->qa == 0, "ends with eot");
        free(p); free(t);
    }
    CHECK(pe.n == 1 && pe.n_skipped == 0, "one example");
    prompt_examples_free(&pe);
    // question before context in the template
    CHECK(prompt_examples_build(&s, tok, "Q: {question} C: {context} A:", 200, 16, &pe, err, sizeof err) == 0, "%s", err);
    if (pe.n == 1) {
        char *p = decode_range(tok, pe.ex[0].ids, 0, pe.ex[0].prompt_len);
        CHECK(strcmp(p, "Q: When was Zorvath founded? C: Zorvath is a city in Quelmar. It was founded in 1843. A:") == 0, "prompt: %s", p);
        free(p);
    }
    prompt_examples_free(&pe);
    CHECK(prompt_examples_build(&s, tok, "Context: {context}\nAnswer:", 200, 16, &pe, err, sizeof err) == -1 &&
          strstr(err, "{question}"), "template without {question}: %s", err);
    // answer longer than max_answer_tokens: skipped and counted (here: the only question -> error)
    CHECK(prompt_examples_build(&s, tok, NULL, 200, 4, &pe, err, sizeof err) == -1, "all skipped is an error");
    squad_set s2 = { 2, calloc(2, sizeof(squad_qa)), 0 };
    squad_set tmp = one_question("The export is copper and tin.", "What is exported?", "copper and tin");
    s2.qa[0] = s.qa[0]; s2.qa[1] = tmp.qa[0];
    CHECK(prompt_examples_build(&s2, tok, NULL, 200, 5, &pe, err, sizeof err) == 0 && pe.n == 1 && pe.n_skipped == 1 &&
          pe.ex[0].qa == 0, "long answer skipped: n=%d skipped=%d", pe.n, pe.n_skipped);
    prompt_examples_free(&pe);
    squad_free(&tmp);

    // truncation: long context, answer near the end / near the start
    byte_vec ctx = {0};
    for (int i = 0; i < 30; i++) byte_vec_puts(&ctx, "Filler words go here. ");
    byte_vec_puts(&ctx, "The mayor is Tilda Brask. ");
    for (int i = 0; i < 3; i++) byte_vec_puts(&ctx, "More filler text. ");
    squad_set late = one_question(ctx.v, "Who is the mayor?", "Tilda Brask");
    const int ML = 120;
    CHECK(prompt_examples_build(&late, tok, NULL, ML, 16, &pe, err, sizeof err) == 0 && pe.n == 1, "late build: %s", err);
    if (pe.n == 1) {
        prompt_example *e = &pe.ex[0];
        char *p = decode_range(tok, e->ids, 0, e->prompt_len);
        CHECK(e->n == ML, "truncated example fills max_len: %d", e->n);
        CHECK(strstr(p, "Tilda Brask") != NULL, "answer kept in the truncated context: %s", p);
        const char *c0 = p + strlen("Context: "), *c1 = strstr(p, "\nQuestion: ");
        char *piece = strndup(c0, (size_t)(c1 - c0));
        CHECK(strstr(ctx.v, piece) != NULL && strlen(piece) < strlen(ctx.v), "prompt holds a window of the context");
        CHECK(strcmp(c1, "\nQuestion: Who is the mayor?\nAnswer:") == 0, "question and template intact");
        free(piece); free(p);
    }
    prompt_examples_free(&pe);
    squad_free(&late);
    squad_set early = one_question(ctx.v, "What words go here?", "Filler words");
    CHECK(prompt_examples_build(&early, tok, NULL, ML, 16, &pe, err, sizeof err) == 0 && pe.n == 1, "early: %s", err);
    if (pe.n == 1) {
        char *p = decode_range(tok, pe.ex[0].ids, 0, pe.ex[0].prompt_len);
        CHECK(strncmp(p, "Context: Filler words go here.", 30) == 0 && pe.ex[0].n <= ML, "answer at the start: context cut at its end");
        free(p);
    }
    prompt_examples_free(&pe);
    squad_free(&early);
    CHECK(prompt_examples_build(&s, tok, NULL, 40, 16, &pe, err, sizeof err) == -1, "no room for context is an error when nothing fits");

    // span examples, byte tokenizer and the multi-byte test tokenizer
    tokenizer chunk = { 1 << 26, 0x7fffffff, "chunk", chunk_encode, chunk_decode, chunk_destroy, NULL };
    const tokenizer *toks[2] = { tok, &chunk };
    squad_set sl = one_question(ctx.v, "Who is the mayor?", "Tilda Brask");
    int ans_b = sl.qa->answer_start[0], ans_e = ans_b + (int)strlen("Tilda Brask");
    for (int k = 0; k < 2; k++) {
        const tokenizer *T = toks[k];
        span_examples se;
        const int SL = 100, STRIDE = 20;
        CHECK(span_examples_build(&sl, T, SL, STRIDE, &se, err, sizeof err) == 0, "span build: %s", err);
        int with_answer = 0, bad_off = 0, bad_overlap = 0;
        int covered_to = 0;   // context bytes [0, covered_to) seen so far
        for (int w = 0; w < se.n; w++) {
            span_example *e = &se.ex[w];
            CHECK(e->n <= SL && e->qa == 0, "[%s] window %d: n=%d", T->kind, w, e->n);
            char *q = decode_range(T, e->ids, 0, e->ctx_first);
            CHECK(strcmp(q, "Who is the mayor?") == 0, "[%s] question tokens first: %s", T->kind, q);
            free(q);
            for (int i = 0; i < e->n; i++) {
                if (i < e->ctx_first) { if (e->tok_begin[i] != -1 || e->tok_end[i] != -1) bad_off++; continue; }
                char *tokb = decode_range(T, e->ids, i, i + 1);
                if (e->tok_end[i] - e->tok_begin[i] != (int)strlen(tokb) ||
                    strncmp(ctx.v + e->tok_begin[i], tokb, strlen(tokb)) != 0) bad_off++;
                free(tokb);
            }
            if (e->tok_begin[e->ctx_first] > covered_to) covered_to = -1000000;   // gap
            if (e->tok_end[e->n - 1] > covered_to) covered_to = e->tok_end[e->n - 1];
            if (w + 1 < se.n) {
                // the next window starts STRIDE context tokens before this one ends
                span_example *f = &se.ex[w + 1];
                if (e->n != SL || f->tok_begin[f->ctx_first] != e->tok_begin[e->n - STRIDE]) bad_overlap++;
            }
            if (e->start || e->end) {
                with_answer++;
                CHECK(e->start >= e->ctx_first && e->end >= e->start && e->end < e->n, "[%s] label inside the window", T->kind);
                CHECK(e->tok_begin[e->start] <= ans_b && e->tok_end[e->start] > ans_b &&
                      e->tok_begin[e->end] < ans_e && e->tok_end[e->end] >= ans_e, "[%s] label tokens cover the answer bytes", T->kind);
                char *a = decode_range(T, e->ids, e->start, e->end + 1);
                if (T == tok) CHECK(strcmp(a, "Tilda Brask") == 0, "span decodes to the answer: '%s'", a);
                else CHECK(strstr(a, "Tilda Brask") != NULL, "[chunk] span decodes around the answer: '%s'", a);
                free(a);
            }
        }
        CHECK(se.n >= 5, "[%s] long context gives several windows: %d", T->kind, se.n);
        CHECK(with_answer >= 1, "[%s] some window holds the answer", T->kind);
        CHECK(bad_off == 0, "[%s] %d tokens with wrong byte ranges", T->kind, bad_off);
        CHECK(bad_overlap == 0, "[%s] %d window pairs without the %d-token overlap", T->kind, bad_overlap, STRIDE);
        CHECK(covered_to == (int)ctx.n, "[%s] windows cover the context: %d of %zu bytes", T->kind, covered_to, ctx.n);
        span_examples_free(&se);
    }
    // short context: one window holding everything, label decodes to the answer
    span_examples se;
    CHECK(span_examples_build(&s, tok, 384, 128, &se, err, sizeof err) == 0 && se.n == 1, "short context: one window");
    if (se.n == 1) {
        char *a = decode_range(tok, se.ex[0].ids, se.ex[0].start, se.ex[0].end + 1);
        CHECK(strcmp(a, "1843") == 0 && se.ex[0].ctx_first == (int)strlen("When was Zorvath founded?"), "span label '%s'", a);
        free(a);
    }
    span_examples_free(&se);

    // synthetic data through both builders: every byte-level prompt fits in 220 tokens uncut
    CHECK(synthqa_write(tpath("ex.json"), 50, 3, err, sizeof err) == 0, "%s", err);
    squad_set syn;
    CHECK(squad_load(tpath("ex.json"), NULL, NULL, &syn, err, sizeof err) == 0, "%s", err);
    CHECK(prompt_examples_build(&syn, tok, NULL, 220, 16, &pe, err, sizeof err) == 0 && pe.n == syn.n && pe.n_skipped == 0,
          "synthetic prompts: %d of %d", pe.n, syn.n);
    int wrong = 0;
    for (int i = 0; i < pe.n; i++) {
        const squad_qa *q = &syn.qa[pe.ex[i].qa];
        char *p = decode_range(tok, pe.ex[i].ids, 0, pe.ex[i].prompt_len);
        char *t = decode_range(tok, pe.ex[i].ids, pe.ex[i].prompt_len, pe.ex[i].n);
        if (!strstr(p, q->context) || strncmp(t + 1, q->answers[0], strlen(q->answers[0])) != 0) wrong++;
        free(p); free(t);
    }
    CHECK(wrong == 0, "%d synthetic prompt examples lost context or answer", wrong);
    prompt_examples_free(&pe);
    CHECK(span_examples_build(&syn, tok, 256, 64, &se, err, sizeof err) == 0 && se.n == syn.n, "synthetic spans");
    wrong = 0;
    for (int i = 0; i < se.n; i++) {
        char *a = decode_range(tok, se.ex[i].ids, se.ex[i].start, se.ex[i].end + 1);
        if (strcmp(a, syn.qa[se.ex[i].qa].answers[0]) != 0) wrong++;
        free(a);
    }
    CHECK(wrong == 0, "%d synthetic span labels wrong", wrong);
    span_examples_free(&se);
    squad_free(&syn);

    byte_vec_free(&ctx);
    squad_free(&sl);
    free(s2.qa);   // its entries belong to s
    squad_free(&s);
    tokenizer_free(tok);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/swq_test_data.XXXXXX");
    if (!mkdtemp(tmpdir)) { CHECK(0, "cannot create a scratch directory"); return check_summary("test_data"); }
    test_synth();
    test_loader();
    test_dev_set();
    test_examples();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    return check_summary("test_data");
}
