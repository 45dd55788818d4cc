// Tokenizers: one interface, a byte-level one for the embedded default and
// GPT-2 byte-level BPE for real checkpoints.
#ifndef SWQ_TOKENIZER_H
#define SWQ_TOKENIZER_H
#include <stddef.h>
#include "vec.h"

typedef struct tokenizer tokenizer;
struct tokenizer {
    int vocab_size;
    int eot;                 // id of <|endoftext|>
    const char *kind;        // "byte", "bpe"
    // append the ids of s[0..n) to out (the byte tokenizer parses no special tokens; BPE
    // parses "<|endoftext|>" as the special token, as Hugging Face does)
    void (*encode)(const tokenizer *t, const char *s, size_t n, int_vec *out);
    // append the bytes of token `id` to out (eot decodes to "<|endoftext|>")
    void (*decode)(const tokenizer *t, int id, byte_vec *out);
    void (*destroy)(tokenizer *t);
    void *impl;
};

// bytes 0..255 are ids 0..255, <|endoftext|> is 256; vocab_size 257
tokenizer *tokenizer_byte(void);
void tokenizer_free(tokenizer *t);
#endif
