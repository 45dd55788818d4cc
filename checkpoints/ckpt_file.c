// Checkpoint container (see ckpt_file.h) and the atomic file writer shared by every
// file swq produces: temp file in the same directory, fsync, rename, fsync directory.
#include "ckpt_file.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static const unsigned char ckpt_magic[8] = {'S', 'W', 'Q', 'C', 'K', 'P', 'T', 0};
#define HDR_BYTES 16     // magic, version, n_sections
#define ENTRY_BYTES 28   // tag, raw, stored, fnv
#define TRAILER_BYTES 8
#define MAX_SECTIONS (1 << 20)
// zstd cannot expand data by more than ~32K per input byte (RLE blocks); anything that
// claims more is corrupted, so we never allocate on the word of a damaged header.
#define MAX_RATIO 65536ULL

uint64_t swq_fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void tag_str(uint32_t tag, char *buf, size_t n) {
    unsigned char c[4];
    put_u32(c, tag);
    int printable = 1;
    for (int i = 0; i < 4; i++)
        if (c[i] < 32 || c[i] > 126) printable = 0;
    if (printable) snprintf(buf, n, "'%c%c%c%c'", c[0], c[1], c[2], c[3]);
    else snprintf(buf, n, "0x%08x", (unsigned)tag);
}

// ---------------------------------------------------------------------------------
// atomic write

typedef struct { const void *p; size_t n; } part;

static int write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) { errno = EIO; return -1; }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path) {
    char *dir = strdup(path);
    if (!dir) { errno = ENOMEM; return -1; }
    char *slash = strrchr(dir, '/');
    const char *d;
    if (!slash) d = ".";
    else if (slash == dir) d = "/";
    else { *slash = 0; d = dir; }
    int fd = open(d, O_RDONLY | O_DIRECTORY);
    if (fd < 0) { int e = errno; free(dir); errno = e; return -1; }
    int rc = fsync(fd);
    int e = errno;
    if (rc != 0 && (e == EINVAL || e == EROFS)) rc = 0;   // fs without directory fsync
    if (close(fd) != 0 && rc == 0) { rc = -1; e = errno; }
    free(dir);
    errno = e;
    return rc;
}

static int write_parts_atomic(const char *path, const part *parts, int nparts, char *err, size_t errlen) {
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    const char *what = NULL;
    for (int i = 0; i < nparts && !what; i++)
        if (write_all(fd, parts[i].p, parts[i].n) != 0) what = "write failed";
    if (!what && fsync(fd) != 0) what = "fsync failed";
    int e = errno;
    if (close(fd) != 0 && !what) { what = "close failed"; e = errno; }
    if (!what && rename(tmp, path) != 0) { what = "rename failed"; e = errno; }
    if (what) {
        snprintf(err, errlen, "%s: %s: %s", path, what, strerror(e));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    if (fsync_dir_of(path) != 0) {
        snprintf(err, errlen, "%s: fsync of its directory failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int swq_write_atomic(const char *path, const void *data, size_t n, char *err, size_t errlen) {
    if (!data && n > 0) { snprintf(err, errlen, "%s: no data to write", path); return -1; }
    part p = {data ? data : "", n};
    return write_parts_atomic(path, &p, 1, err, errlen);
}

// ---------------------------------------------------------------------------------
// checkpoint write

int ckpt_file_write(const char *path, const ckpt_section *secs, int n, int zstd_level,
                    char *err, size_t errlen) {
    if (n < 0 || n > MAX_SECTIONS || (n > 0 && !secs)) {
        snprintf(err, errlen, "%s: bad section count %d", path, n);
        return -1;
    }
    int rc = -1;
    size_t hdr_bytes = HDR_BYTES + (size_t)n * ENTRY_BYTES;
    unsigned char *hdr = malloc(hdr_bytes);
    void **frames = calloc((size_t)n + 1, sizeof(void *));
    part *parts = malloc(((size_t)n + 2) * sizeof(part));
    unsigned char trailer[TRAILER_BYTES];
    if (!hdr || !frames || !parts) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    memcpy(hdr, ckpt_magic, 8);
    put_u32(hdr + 8, SWQ_CKPT_VERSION);
    put_u32(hdr + 12, (uint32_t)n);
    parts[0] = (part){hdr, hdr_bytes};
    for (int i = 0; i < n; i++) {
        const ckpt_section *s = &secs[i];
        char tb[16];
        tag_str(s->tag, tb, sizeof(tb));
        if (!s->data && s->bytes > 0) {
            snprintf(err, errlen, "%s: section %d (%s) has no data", path, i, tb);
            goto done;
        }
        size_t bound = ZSTD_compressBound(s->bytes);
        if (ZSTD_isError(bound)) {
            snprintf(err, errlen, "%s: section %d (%s): %s", path, i, tb, ZSTD_getErrorName(bound));
            goto done;
        }
        frames[i] = malloc(bound);
        if (!frames[i]) {
            snprintf(err, errlen, "%s: section %d (%s): cannot allocate %zu bytes", path, i, tb, bound);
            goto done;
        }
        size_t z = ZSTD_compress(frames[i], bound, s->data ? s->data : "", s->bytes, zstd_level);
        if (ZSTD_isError(z)) {
            snprintf(err, errlen, "%s: section %d (%s): zstd: %s", path, i, tb, ZSTD_getErrorName(z));
            goto done;
        }
        unsigned char *e = hdr + HDR_BYTES + (size_t)i * ENTRY_BYTES;
        put_u32(e, s->tag);
        put_u64(e + 4, (uint64_t)s->bytes);
        put_u64(e + 12, (uint64_t)z);
        put_u64(e + 20, swq_fnv1a64(s->data ? s->data : "", s->bytes, SWQ_FNV_INIT));
        parts[i + 1] = (part){frames[i], z};
    }
    uint64_t h = SWQ_FNV_INIT;
    for (int i = 0; i <= n; i++) h = swq_fnv1a64(parts[i].p, parts[i].n, h);
    put_u64(trailer, h);
    parts[n + 1] = (part){trailer, TRAILER_BYTES};
    rc = write_parts_atomic(path, parts, n + 2, err, errlen);
done:
    if (frames)
        for (int i = 0; i < n; i++) free(frames[i]);
    free(frames);
    free(parts);
    free(hdr);
    return rc;
}

// ---------------------------------------------------------------------------------
// checkpoint read

static int read_whole(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = malloc(n ? n : 1);
    if (!b) {
        snprintf(err, errlen, "%s: cannot allocate %zu bytes to read it", path, n);
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            snprintf(err, errlen, "%s: read failed: %s", path, strerror(errno));
            free(b);
            close(fd);
            return -1;
        }
        if (r == 0) break;   // shrank while reading
        got += (size_t)r;
    }
    if (close(fd) != 0) {
        snprintf(err, errlen, "%s: close failed: %s", path, strerror(errno));
        free(b);
        return -1;
    }
    *buf = b;
    *len = got;
    return 0;
}

int ckpt_file_read(const char *path, ckpt_file *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    unsigned char *b = NULL;
    size_t len = 0;
    if (read_whole(path, &b, &len, err, errlen) != 0) return -1;
    int rc = -1;
    size_t m = len < 8 ? len : 8;
    if (memcmp(b, ckpt_magic, m) != 0 || len == 0) {
        snprintf(err, errlen, "%s: not an swq checkpoint", path);
        goto fail;
    }
    if (len < HDR_BYTES) { snprintf(err, errlen, "%s: truncated", path); goto fail; }
    uint32_t version = get_u32(b + 8);
    if (version != SWQ_CKPT_VERSION) {
        snprintf(err, errlen, "%s: checkpoint version %u, this swq reads %d", path, (unsigned)version,
                 SWQ_CKPT_VERSION);
        goto fail;
    }
    uint64_t n = get_u32(b + 12);
    // sizes are validated against the file length before anything is allocated
    uint64_t need = HDR_BYTES + n * ENTRY_BYTES + TRAILER_BYTES;
    if (need > len) { snprintf(err, errlen, "%s: truncated", path); goto fail; }
    if (n > MAX_SECTIONS) { snprintf(err, errlen, "%s: %llu sections (corrupted)", path, (unsigned long long)n); goto fail; }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t stored = get_u64(b + HDR_BYTES + i * ENTRY_BYTES + 12);
        if (stored > len || need + stored > len) {
            snprintf(err, errlen, "%s: truncated", path);
            goto fail;
        }
        need += stored;
    }
    uint64_t sum = swq_fnv1a64(b, len - TRAILER_BYTES, SWQ_FNV_INIT);
    if (need != len || sum != get_u64(b + len - TRAILER_BYTES)) {
        snprintf(err, errlen, "%s: checksum mismatch (corrupted)", path);
        goto fail;
    }
    out->version = version;
    out->n = (int)n;
    out->tags = calloc(n + 1, sizeof(uint32_t));
    out->data = calloc(n + 1, sizeof(void *));
    out->bytes = calloc(n + 1, sizeof(size_t));
    if (!out->tags || !out->data || !out->bytes) { snprintf(err, errlen, "%s: out of memory", path); goto fail; }
    size_t off = HDR_BYTES + (size_t)n * ENTRY_BYTES;
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char *e = b + HDR_BYTES + i * ENTRY_BYTES;
        uint32_t tag = get_u32(e);
        uint64_t raw = get_u64(e + 4), stored = get_u64(e + 12), fnv = get_u64(e + 20);
        char tb[16];
        tag_str(tag, tb, sizeof(tb));
        unsigned long long content = ZSTD_getFrameContentSize(b + off, stored);
        if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != raw ||
            raw > stored * MAX_RATIO || raw > (uint64_t)SIZE_MAX / 2) {
            snprintf(err, errlen, "%s: section %d (%s): size mismatch (corrupted)", path, (int)i, tb);
            goto fail;
        }
        out->tags[i] = tag;
        out->data[i] = malloc(raw ? raw : 1);
        if (!out->data[i]) {
            snprintf(err, errlen, "%s: section %d (%s): cannot allocate %llu bytes", path, (int)i, tb,
                     (unsigned long long)raw);
            goto fail;
        }
        size_t z = ZSTD_decompress(out->data[i], raw, b + off, stored);
        if (ZSTD_isError(z)) {
            snprintf(err, errlen, "%s: section %d (%s): zstd: %s", path, (int)i, tb, ZSTD_getErrorName(z));
            goto fail;
        }
        if (z != raw) {
            snprintf(err, errlen, "%s: section %d (%s): size mismatch (corrupted)", path, (int)i, tb);
            goto fail;
        }
        if (swq_fnv1a64(out->data[i], raw, SWQ_FNV_INIT) != fnv) {
            snprintf(err, errlen, "%s: checksum mismatch in section %d (%s)", path, (int)i, tb);
            goto fail;
        }
        out->bytes[i] = raw;
        off += stored;
    }
    rc = 0;
fail:
    free(b);
    if (rc != 0) ckpt_file_free(out);
    return rc;
}

const void *ckpt_file_get(const ckpt_file *f, uint32_t tag, size_t *bytes) {
    for (int i = 0; i < f->n; i++)
        if (f->tags[i] == tag) {
            if (bytes) *bytes = f->bytes[i];
            return f->data[i];
        }
    if (bytes) *bytes = 0;
    return NULL;
}

void ckpt_file_free(ckpt_file *f) {
    if (!f) return;
    if (f->data)
        for (int i = 0; i < f->n; i++) free(f->data[i]);
    free(f->data);
    free(f->tags);
    free(f->bytes);
    memset(f, 0, sizeof(*f));
}
