// Pretraining text: documents separated by a line "<|endoftext|>" in plain or zstd files,
// tokenized once into a cache file (next to the data when that folder is writable, else in
// the given cache folder), served as consecutive windows of T tokens.
#ifndef SWQ_TEXTDATA_H
#define SWQ_TEXTDATA_H
#include <stddef.h>
#include <stdint.h>
#include "tokenizer.h"

typedef struct {
    uint32_t *tok;     // all tokens, documents joined with eot
    size_t n;
    int n_files;
    size_t n_docs;
} token_stream;

// `spec`: a file, a directory (every *.txt and *.txt.zst in it, sorted by name), or several of
// those separated by ':'. Returns 0 or -1 with "<path>: <problem>".
int textdata_load(const char *spec, const tokenizer *tok, const char *cache_dir, token_stream *out,
                  int verbose, char *err, size_t errlen);
void textdata_free(token_stream *s);
#endif
