#include "textdata.h"
#include "squad.h"
#include "vec.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE_MAGIC 0x4b4f5451u   // "QTOK"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

// Expand the spec into a sorted list of files.
static int list_files(const char *spec, char ***files, int *nf, char *err, size_t errlen) {
    char *copy = strdup(spec), *save = NULL;
    *files = NULL; *nf = 0;
    for (char *part = strtok_r(copy, ":", &save); part; part = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (stat(part, &st)) { snprintf(err, errlen, "%s: %s", part, strerror(errno)); free(copy); return -1; }
        if (!S_ISDIR(st.st_mode)) {
            *files = swq_xrealloc(*files, sizeof(char *) * (*nf + 1));
            (*files)[(*nf)++] = strdup(part);
            continue;
        }
        DIR *d = opendir(part);
        if (!d) { snprintf(err, errlen, "%s: %s", part, strerror(errno)); free(copy); return -1; }
        int first = *nf;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!ends_with(e->d_name, ".txt") && !ends_with(e->d_name, ".txt.zst")) continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", part, e->d_name);
            *files = swq_xrealloc(*files, sizeof(char *) * (*nf + 1));
            (*files)[(*nf)++] = strdup(path);
        }
        closedir(d);
        if (*nf == first) { snprintf(err, errlen, "%s: no *.txt or *.txt.zst files", part); free(copy); return -1; }
        qsort(*files + first, *nf - first, sizeof(char *), cmp_str);
    }
    free(copy);
    if (!*nf) { snprintf(err, errlen, "data.train_file: empty"); return -1; }
    return 0;
}

// Cache name: next to the file, keyed by the file's size and mtime and the tokenizer.
static void cache_path(const char *file, const char *dir, const tokenizer *tok, char *out, size_t n) {
    struct stat st;
    stat(file, &st);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char key[128];
    snprintf(key, sizeof key, "%s%d.%lld.%lld", tok->kind, tok->vocab_size, (long long)st.st_size, (long long)st.st_mtime);
    if (dir) snprintf(out, n, "%s/%s.%s.tok", dir, base, key);
    else snprintf(out, n, "%s.%s.tok", file, key);
}

static int read_cache(const char *path, uint32_t **tok, size_t *n, size_t *docs) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    uint32_t hdr[2]; uint64_t cnt[2];
    int ok = fread(hdr, 4, 2, f) == 2 && hdr[0] == CACHE_MAGIC && hdr[1] == 1 && fread(cnt, 8, 2, f) == 2;
    if (ok) {
        *tok = malloc(sizeof(uint32_t) * (cnt[0] ? cnt[0] : 1));
        ok = fread(*tok, 4, cnt[0], f) == cnt[0];
        if (!ok) { free(*tok); *tok = NULL; }
        *n = cnt[0]; *docs = cnt[1];
    }
    fclose(f);
    return ok ? 0 : -1;
}

// A folder counts as writable only if its mode says so too: root may write anywhere, but a
// folder marked read-only (a shared data set) is left alone.
static int dir_writable(const char *path) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0; else snprintf(dir, sizeof dir, ".");
    struct stat st;
    return !stat(dir, &st) && (st.st_mode & S_IWUSR) && !access(dir, W_OK);
}

static int write_cache(const char *path, const uint32_t *tok, size_t n, size_t docs) {
    if (!dir_writable(path)) return -1;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    uint32_t hdr[2] = { CACHE_MAGIC, 1 };
    uint64_t cnt[2] = { n, docs };
    int ok = fwrite(hdr, 4, 2, f) == 2 && fwrite(cnt, 8, 2, f) == 2 && fwrite(tok, 4, n, f) == n;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) { unlink(tmp); return -1; }
    return 0;
}

// Tokenize one file: documents separated by "\n<|endoftext|>\n" (or ending with it), each
// followed by eot in the stream.
static int tokenize_file(const char *path, const tokenizer *tok, int_vec *out, size_t *docs, char *err, size_t errlen) {
    size_t len;
    char *text = swq_read_file(path, &len, err, errlen);
    if (!text) return -1;
    const char *sep = "<|endoftext|>";
    size_t sl = strlen(sep);
    char *p = text, *end = text + len;
    while (p < end) {
        char *q = memmem(p, end - p, sep, sl);
        char *de = q ? q : end;
        // the separator sits on a line of its own: drop the newline before it
        size_t dl = de - p;
        if (q && dl && p[dl - 1] == '\n') dl--;
        int nonblank = 0;
        for (size_t i = 0; i < dl && !nonblank; i++) nonblank = p[i] != '\n' && p[i] != ' ';
        if (nonblank) {
            tok->encode(tok, p, dl, out);
            int_vec_push(out, tok->eot);
            (*docs)++;
        }
        if (!q) break;
        p = q + sl;
        if (p < end && *p == '\n') p++;
    }
    free(text);
    return 0;
}

int textdata_load(const char *spec, const tokenizer *tok, const char *cache_dir, token_stream *out,
                  int verbose, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    char **files; int nf;
    if (list_files(spec, &files, &nf, err, errlen)) return -1;
    int rc = 0;
    for (int i = 0; i < nf && !rc; i++) {
        char cp[4200];
        uint32_t *t = NULL; size_t n = 0, docs = 0;
        cache_path(files[i], NULL, tok, cp, sizeof cp);
        int hit = read_cache(cp, &t, &n, &docs) == 0;
        if (!hit && cache_dir) { cache_path(files[i], cache_dir, tok, cp, sizeof cp); hit = read_cache(cp, &t, &n, &docs) == 0; }
        if (!hit) {
            double t0 = (double)clock() / CLOCKS_PER_SEC;
            int_vec v = { 0 };
            if (tokenize_file(files[i], tok, &v, &docs, err, errlen)) { rc = -1; break; }
            n = v.n;
            t = malloc(sizeof(uint32_t) * (n ? n : 1));
            for (size_t j = 0; j < n; j++) t[j] = (uint32_t)v.v[j];
            int_vec_free(&v);
            cache_path(files[i], NULL, tok, cp, sizeof cp);
            int saved = write_cache(cp, t, n, docs) == 0;
            if (!saved && cache_dir) { cache_path(files[i], cache_dir, tok, cp, sizeof cp); saved = write_cache(cp, t, n, docs) == 0; }
            if (verbose)
                fprintf(stderr, "swq: tokenized %s: %zu documents, %zu tokens in %.1fs%s%s\n", files[i], docs, n,
                        (double)clock() / CLOCKS_PER_SEC - t0, saved ? ", cached in " : " (not cached)", saved ? cp : "");
        }
        out->tok = swq_xrealloc(out->tok, sizeof(uint32_t) * (out->n + n + 1));
        memcpy(out->tok + out->n, t, sizeof(uint32_t) * n);
        out->n += n; out->n_docs += docs;
        free(t);
    }
    out->n_files = nf;
    for (int i = 0; i < nf; i++) free(files[i]);
    free(files);
    if (!rc && out->n < 2) { snprintf(err, errlen, "%s: no text", spec); rc = -1; }
    if (rc) textdata_free(out);
    return rc;
}

void textdata_free(token_stream *s) {
    free(s->tok);
    memset(s, 0, sizeof(*s));
}
