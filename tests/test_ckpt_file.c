// Checkpoint container: round trip, corruption and truncation detection, atomic writes.
#include "check.h"
#include "checkpoints/ckpt_file.h"
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static uint32_t tag4(const char *s) {
    return (uint32_t)(unsigned char)s[0] | (uint32_t)(unsigned char)s[1] << 8 |
           (uint32_t)(unsigned char)s[2] << 16 | (uint32_t)(unsigned char)s[3] << 24;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    unsigned char *b = malloc((size_t)len + 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); fclose(f); return NULL; }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(b, 1, n, f) == n;
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}

// Number of directory entries other than . and .. (temp files would show up here).
static int count_entries(const char *d) {
    DIR *dp = opendir(d);
    if (!dp) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dp);
    return n;
}

static int has_tmp_file(const char *d) {
    DIR *dp = opendir(d);
    if (!dp) return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strstr(e->d_name, ".tmp.")) found = 1;
    closedir(dp);
    return found;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}

int main(void) {
    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof(dir), "%s/swq_test_ckpt_XXXXXX", tmpdir);
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/a.ckpt", dir);

    // fnv1a64 reference values
    CHECK(swq_fnv1a64("", 0, SWQ_FNV_INIT) == 0xcbf29ce484222325ULL, "empty");
    CHECK(swq_fnv1a64("a", 1, SWQ_FNV_INIT) == 0xaf63dc4c8601ec8cULL, "'a'");
    CHECK(swq_fnv1a64("foobar", 6, SWQ_FNV_INIT) == 0x85944171f73967e8ULL, "'foobar'");
    CHECK(swq_fnv1a64("bar", 3, swq_fnv1a64("foo", 3, SWQ_FNV_INIT)) == 0x85944171f73967e8ULL, "chained");

    // ---- round trip: small, empty, 5 MB (half random, half structured), text
    size_t big_n = 5u << 20;
    unsigned char *big = malloc(big_n);
    for (size_t i = 0; i < big_n; i++) big[i] = i < big_n / 2 ? (unsigned char)next_rand() : (unsigned char)(i % 251);
    float small[100];
    for (int i = 0; i < 100; i++) small[i] = (float)i * 0.5f - 3.0f;
    const char *text = "model = { n_layer = 2; };\n";
    ckpt_section secs[4] = {
        {tag4("SMAL"), small, sizeof(small)},
        {tag4("EMPT"), NULL, 0},
        {tag4("BIG_"), big, big_n},
        {tag4("TEXT"), text, strlen(text)},
    };
    int rc = ckpt_file_write(path, secs, 4, 3, err, sizeof(err));
    CHECK(rc == 0, "write: %s", err);
    CHECK(count_entries(dir) == 1, "only the checkpoint in the directory");
    ckpt_file f;
    rc = ckpt_file_read(path, &f, err, sizeof(err));
    CHECK(rc == 0, "read: %s", err);
    if (rc == 0) {
        CHECK(f.n == 4 && f.version == SWQ_CKPT_VERSION, "n=%d version=%u", f.n, f.version);
        for (int i = 0; i < 4 && i < f.n; i++) {
            CHECK(f.tags[i] == secs[i].tag, "tag %d", i);
            CHECK(f.bytes[i] == secs[i].bytes, "bytes %d: %zu vs %zu", i, f.bytes[i], secs[i].bytes);
            CHECK(secs[i].bytes == 0 || memcmp(f.data[i], secs[i].data, secs[i].bytes) == 0, "data %d", i);
        }
        size_t nb = 1;
        const void *p = ckpt_file_get(&f, tag4("EMPT"), &nb);
        CHECK(p != NULL && nb == 0, "empty section present with 0 bytes");
        p = ckpt_file_get(&f, tag4("BIG_"), &nb);
        CHECK(p != NULL && nb == big_n && memcmp(p, big, big_n) == 0, "get big");
        CHECK(ckpt_file_get(&f, tag4("NONE"), &nb) == NULL && nb == 0, "missing tag");
        ckpt_file_free(&f);
        CHECK(f.n == 0 && f.data == NULL, "free resets");
    }

    // zero sections is a valid file
    char path0[512];
    snprintf(path0, sizeof(path0), "%s/zero.ckpt", dir);
    CHECK(ckpt_file_write(path0, NULL, 0, 1, err, sizeof(err)) == 0, "zero sections: %s", err);
    CHECK(ckpt_file_read(path0, &f, err, sizeof(err)) == 0 && f.n == 0, "read zero sections: %s", err);
    ckpt_file_free(&f);
    unlink(path0);

    // ---- corruption: a small file (so it is cheap to rewrite ~60 times), every region
    char cpath[512], bad[512];
    snprintf(cpath, sizeof(cpath), "%s/c.ckpt", dir);
    snprintf(bad, sizeof(bad), "%s/bad.ckpt", dir);
    unsigned char mid[3000];
    for (size_t i = 0; i < sizeof(mid); i++) mid[i] = (unsigned char)next_rand();
    ckpt_section csecs[3] = {{tag4("AAAA"), small, sizeof(small)}, {tag4("BBBB"), NULL, 0}, {tag4("CCCC"), mid, sizeof(mid)}};
    CHECK(ckpt_file_write(cpath, csecs, 3, 1, err, sizeof(err)) == 0, "write small: %s", err);
    size_t clen = 0;
    unsigned char *cb = slurp(cpath, &clen);
    CHECK(cb != NULL && clen > 16 + 3 * 28 + 8, "slurp");
    if (cb) {
        size_t pos[80];
        int np = 0;
        for (size_t i = 0; i < 16; i += 2) pos[np++] = i;                       // magic, version, count
        for (size_t i = 16; i < 16 + 3 * 28; i += 7) pos[np++] = i;             // section table
        for (int k = 0; k < 30; k++) pos[np++] = 100 + (clen - 108) * (size_t)k / 30;   // frames
        for (size_t i = clen - 8; i < clen; i += 2) pos[np++] = i;              // trailer
        pos[np++] = clen - 1;
        int detected = 0;
        for (int k = 0; k < np; k++) {
            unsigned char save = cb[pos[k]];
            cb[pos[k]] ^= (unsigned char)(1u << (k % 8));
            if (spit(bad, cb, clen) != 0) { CHECK(0, "spit"); break; }
            cb[pos[k]] = save;
            err[0] = 0;
            int r = ckpt_file_read(bad, &f, err, sizeof(err));
            CHECK(r == -1, "flip at %zu of %zu not detected", pos[k], clen);
            CHECK(strncmp(err, bad, strlen(bad)) == 0 && err[strlen(bad)] == ':', "message names file: %s", err);
            if (r == -1) detected++;
            else ckpt_file_free(&f);
        }
        CHECK(detected == np && np >= 50, "%d of %d flips detected", detected, np);

        // specific messages
        unsigned char c2[64];
        memcpy(c2, cb, sizeof(c2));
        c2[0] = 'X';
        spit(bad, c2, sizeof(c2));
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1 && strstr(err, ": not an swq checkpoint"), "%s", err);
        spit(bad, "hello world, this is text and not a checkpoint\n", 47);
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1 && strstr(err, ": not an swq checkpoint"), "%s", err);
        spit(bad, "", 0);
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1 && strstr(err, ": not an swq checkpoint"), "%s", err);
        memcpy(c2, cb, sizeof(c2));
        c2[8] = 7;
        spit(bad, c2, sizeof(c2));
        char want[600];
        snprintf(want, sizeof(want), "%s: checkpoint version 7, this swq reads 1", bad);
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1 && strcmp(err, want) == 0, "%s", err);
        // a huge section count / stored size must not allocate or crash
        memcpy(c2, cb, sizeof(c2));
        c2[12] = c2[13] = c2[14] = c2[15] = 0xff;
        spit(bad, c2, sizeof(c2));
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1 && strstr(err, ": truncated"), "%s", err);
        unsigned char *c3 = malloc(clen);
        memcpy(c3, cb, clen);
        memset(c3 + 16 + 4, 0xff, 8);    // raw_bytes of section 0: 2^64-1
        spit(bad, c3, clen);
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1, "huge raw size");
        memcpy(c3, cb, clen);
        memset(c3 + 16 + 12, 0xff, 8);   // stored_bytes of section 0
        spit(bad, c3, clen);
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1, "huge stored size");
        // a consistent file (checksum recomputed) whose section checksum is wrong
        memcpy(c3, cb, clen);
        c3[16 + 2 * 28 + 20] ^= 1;       // fnv of section 2
        uint64_t h = swq_fnv1a64(c3, clen - 8, SWQ_FNV_INIT);
        for (int i = 0; i < 8; i++) c3[clen - 8 + i] = (unsigned char)(h >> (8 * i));
        spit(bad, c3, clen);
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1 && strstr(err, "checksum mismatch in section 2"), "%s", err);
        // ... and one whose decompressed size is wrong
        memcpy(c3, cb, clen);
        c3[16 + 0 * 28 + 4] ^= 4;        // raw_bytes of section 0
        h = swq_fnv1a64(c3, clen - 8, SWQ_FNV_INIT);
        for (int i = 0; i < 8; i++) c3[clen - 8 + i] = (unsigned char)(h >> (8 * i));
        spit(bad, c3, clen);
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1 && strstr(err, "section 0"), "%s", err);
        // trailing garbage
        memcpy(c3, cb, clen);
        FILE *fp = fopen(bad, "wb");
        fwrite(cb, 1, clen, fp); fwrite("x", 1, 1, fp); fclose(fp);
        CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1, "trailing byte");
        free(c3);

        // ---- truncation at many lengths
        int trunc_ok = 0, nt = 0;
        for (size_t L = 1; L < clen; L += (L < 140 ? 1 : 37)) {
            spit(bad, cb, L);
            int r = ckpt_file_read(bad, &f, err, sizeof(err));
            nt++;
            if (r == -1 && strstr(err, ": truncated")) trunc_ok++;
            else {
                CHECK(0, "truncation to %zu of %zu: rc %d, %s", L, clen, r, err);
                if (r == 0) ckpt_file_free(&f);
            }
        }
        CHECK(trunc_ok == nt && nt > 100, "%d of %d truncations reported", trunc_ok, nt);
        free(cb);
    }
    unlink(bad);
    CHECK(ckpt_file_read(bad, &f, err, sizeof(err)) == -1 && strstr(err, "cannot open"), "missing file: %s", err);

    // ---- failed writes leave nothing behind
    char nodir[512];
    snprintf(nodir, sizeof(nodir), "%s/no/such/dir/x.ckpt", dir);
    int before = count_entries(dir);
    err[0] = 0;
    CHECK(ckpt_file_write(nodir, secs, 1, 1, err, sizeof(err)) == -1, "write into missing dir");
    CHECK(strncmp(err, nodir, strlen(nodir)) == 0, "message names path: %s", err);
    CHECK(count_entries(dir) == before, "nothing created");
    CHECK(swq_write_atomic(nodir, "abc", 3, err, sizeof(err)) == -1, "atomic into missing dir");
    CHECK(count_entries(dir) == before, "nothing created");

    // temp file cannot be created (its name is taken): the old file stays intact
    char tmpname[600];
    snprintf(tmpname, sizeof(tmpname), "%s.tmp.%ld", path, (long)getpid());
    CHECK(mkdir(tmpname, 0755) == 0, "mkdir %s", tmpname);
    CHECK(ckpt_file_write(path, csecs, 3, 1, err, sizeof(err)) == -1, "write with blocked temp");
    rmdir(tmpname);
    CHECK(ckpt_file_read(path, &f, err, sizeof(err)) == 0 && f.n == 4 && f.bytes[2] == big_n, "old file intact: %s", err);
    ckpt_file_free(&f);

    // a write that fails half way (file size limit): old file intact, no temp file
    struct rlimit old_lim;
    if (getrlimit(RLIMIT_FSIZE, &old_lim) == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = old_lim;
        lim.rlim_cur = 1 << 20;
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            ckpt_section r1 = {tag4("RAND"), big, big_n / 2};   // random bytes: incompressible
            rc = ckpt_file_write(path, &r1, 1, 1, err, sizeof(err));
            CHECK(rc == -1, "write over the size limit should fail");
            CHECK(strstr(err, "write failed") != NULL, "%s", err);
            rc = swq_write_atomic(path, big, big_n, err, sizeof(err));
            CHECK(rc == -1, "atomic write over the size limit should fail");
            CHECK(setrlimit(RLIMIT_FSIZE, &old_lim) == 0, "restore limit");
            CHECK(!has_tmp_file(dir), "temp file removed");
            CHECK(ckpt_file_read(path, &f, err, sizeof(err)) == 0 && f.n == 4 && f.bytes[2] == big_n &&
                      memcmp(f.data[2], big, big_n) == 0, "old file intact: %s", err);
            ckpt_file_free(&f);
        }
    }

    // ---- swq_write_atomic replaces content
    char jpath[512];
    snprintf(jpath, sizeof(jpath), "%s/t.json", dir);
    CHECK(swq_write_atomic(jpath, "{\"a\":1}", 7, err, sizeof(err)) == 0, "%s", err);
    CHECK(swq_write_atomic(jpath, "{}", 2, err, sizeof(err)) == 0, "%s", err);
    size_t jn = 0;
    unsigned char *jb = slurp(jpath, &jn);
    CHECK(jb && jn == 2 && memcmp(jb, "{}", 2) == 0, "replaced");
    free(jb);
    CHECK(swq_write_atomic(jpath, NULL, 0, err, sizeof(err)) == 0, "empty file: %s", err);
    jb = slurp(jpath, &jn);
    CHECK(jb && jn == 0, "empty");
    free(jb);
    CHECK(!has_tmp_file(dir), "no temp files left");
    // a relative path (directory ".")
    char cwd[1024];
    if (getcwd(cwd, sizeof(cwd)) && chdir(dir) == 0) {
        CHECK(swq_write_atomic("rel.txt", "x", 1, err, sizeof(err)) == 0, "relative: %s", err);
        CHECK(access("rel.txt", F_OK) == 0, "relative file exists");
        unlink("rel.txt");
        CHECK(chdir(cwd) == 0, "chdir back");
    }

    unlink(jpath);
    unlink(path);
    unlink(cpath);
    CHECK(rmdir(dir) == 0, "test dir empty at the end: %s", strerror(errno));
    free(big);
    return check_summary("test_ckpt_file");
}
