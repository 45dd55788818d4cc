// Whole-file reads, with streaming zstd decompression for ".zst" paths (frames written by
// streaming compressors may not record their content size).
#include <errno.h>
#include <string.h>
#include <zstd.h>
#include "squad.h"
#include "vec.h"

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static char *read_raw(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = (char *)swq_xrealloc(NULL, cap);
    for (;;) {
        if (n + 1 >= cap) { cap *= 2; buf = (char *)swq_xrealloc(buf, cap); }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        free(buf); fclose(f); return NULL;
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        free(buf); return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static char *zstd_decompress(const char *path, const char *src, size_t n, size_t *len,
                             char *err, size_t errlen) {
    if (n == 0) { snprintf(err, errlen, "%s: not a valid zstd stream (empty file)", path); return NULL; }
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!ds) { snprintf(err, errlen, "%s: cannot create zstd decompression context", path); return NULL; }
    size_t r = ZSTD_initDStream(ds);
    if (ZSTD_isError(r)) {
        snprintf(err, errlen, "%s: zstd init failed: %s", path, ZSTD_getErrorName(r));
        ZSTD_freeDStream(ds); return NULL;
    }
    unsigned long long hint = ZSTD_getFrameContentSize(src, n);
    size_t cap = (hint != ZSTD_CONTENTSIZE_UNKNOWN && hint != ZSTD_CONTENTSIZE_ERROR && hint < (1ull << 34))
                     ? (size_t)hint + 1 : 4 * n + 1024;
    char *dst = (char *)swq_xrealloc(NULL, cap);
    ZSTD_inBuffer in = { src, n, 0 };
    size_t out_n = 0, last = 1;
    // decode all input, then flush whatever the decoder still holds for the current frame
    while (in.pos < in.size || last != 0) {
        int flushing = in.pos == in.size;
        if (cap - out_n < 1 + (1 << 16)) { cap = 2 * cap + (1 << 16); dst = (char *)swq_xrealloc(dst, cap); }
        ZSTD_outBuffer out = { dst + out_n, cap - out_n - 1, 0 };
        last = ZSTD_decompressStream(ds, &out, &in);
        if (ZSTD_isError(last)) {
            snprintf(err, errlen, "%s: not a valid zstd stream (%s)", path, ZSTD_getErrorName(last));
            free(dst); ZSTD_freeDStream(ds); return NULL;
        }
        out_n += out.pos;
        if (flushing && out.pos == 0 && last != 0) {
            snprintf(err, errlen, "%s: not a valid zstd stream (truncated)", path);
            free(dst); ZSTD_freeDStream(ds); return NULL;
        }
    }
    ZSTD_freeDStream(ds);
    dst[out_n] = 0;
    *len = out_n;
    return dst;
}

char *swq_read_file(const char *path, size_t *len, char *err, size_t errlen) {
    size_t n = 0, dummy;
    if (!len) len = &dummy;
    char *raw = read_raw(path, &n, err, errlen);
    if (!raw) return NULL;
    if (!has_suffix(path, ".zst")) { *len = n; return raw; }
    char *out = zstd_decompress(path, raw, n, len, err, errlen);
    free(raw);
    return out;
}
