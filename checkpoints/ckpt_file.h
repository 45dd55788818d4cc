// The checkpoint container: a versioned header, zstd-compressed sections, a checksum.
// Layout (little-endian):
//   "SWQCKPT\0"  u32 version  u32 n_sections
//   n_sections x { u32 tag, u64 raw_bytes, u64 stored_bytes, u64 fnv1a64(raw) }
//   the sections' zstd frames, in order
//   u64 fnv1a64 of every byte before it
// Writing goes to "<path>.tmp.<pid>", fsync, rename, fsync of the directory: a crash
// never replaces a good file with a broken one.
#ifndef SWQ_CKPT_FILE_H
#define SWQ_CKPT_FILE_H
#include <stddef.h>
#include <stdint.h>

#define SWQ_CKPT_VERSION 1

typedef struct { uint32_t tag; const void *data; size_t bytes; } ckpt_section;

typedef struct {
    int n;
    uint32_t *tags;
    void **data;      // decompressed, malloc'd
    size_t *bytes;
    uint32_t version;
} ckpt_file;

// Returns 0, or -1 with "<path>: <problem>" in err (and no file left behind).
int ckpt_file_write(const char *path, const ckpt_section *secs, int n, int zstd_level,
                    char *err, size_t errlen);
// Reads and verifies everything (magic, version, sizes, checksums). Returns 0 or -1 with
// "<path>: <problem>" (e.g. "truncated", "checksum mismatch in section 'params'").
int ckpt_file_read(const char *path, ckpt_file *out, char *err, size_t errlen);
// The section with tag, or NULL.
const void *ckpt_file_get(const ckpt_file *f, uint32_t tag, size_t *bytes);
void ckpt_file_free(ckpt_file *f);

uint64_t swq_fnv1a64(const void *data, size_t n, uint64_t h);   // start with h = SWQ_FNV_INIT
#define SWQ_FNV_INIT 0xcbf29ce484222325ULL
// Atomically write bytes to path (temp file, fsync, rename, fsync dir).
int swq_write_atomic(const char *path, const void *data, size_t n, char *err, size_t errlen);
#endif
