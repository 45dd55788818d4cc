// Byte-level tokenizer: every byte is its own token, plus <|endoftext|>.
#include "tokenizer.h"

#define EOT_STRING "<|endoftext|>"

static void byte_encode(const tokenizer *t, const char *s, size_t n, int_vec *out) {
    (void)t;
    for (size_t i = 0; i < n; i++) int_vec_push(out, (unsigned char)s[i]);
}

static void byte_decode(const tokenizer *t, int id, byte_vec *out) {
    if (id >= 0 && id < 256) { char c = (char)id; byte_vec_append(out, &c, 1); }
    else if (id == t->eot) byte_vec_puts(out, EOT_STRING);
    // ids outside the vocabulary decode to nothing
}

static void byte_destroy(tokenizer *t) { free(t); }

tokenizer *tokenizer_byte(void) {
    tokenizer *t = (tokenizer *)swq_xrealloc(NULL, sizeof(tokenizer));
    t->vocab_size = 257;
    t->eot = 256;
    t->kind = "byte";
    t->encode = byte_encode;
    t->decode = byte_decode;
    t->destroy = byte_destroy;
    t->impl = NULL;
    return t;
}

void tokenizer_free(tokenizer *t) {
    if (t && t->destroy) t->destroy(t);
}
