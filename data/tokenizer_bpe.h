// GPT-2 byte-level BPE (the `tokenizer` interface of tokenizer.h), matching Hugging Face's
// GPT2TokenizerFast id for id (tests/test_bpe.c checks it on the SQuAD dev set).
//
// Text handling, as GPT2TokenizerFast does it:
//  - "<|endoftext|>" in the text becomes the eot id (HF matches its special token before
//    pre-tokenizing; the pieces around it are encoded on their own). tokenizer_bpe_set_special
//    (t, 0) turns this off: the literal is then encoded as ordinary text (tiktoken's
//    encode_ordinary, OpenAI's encoder.py). Either way decode(encode(s)) == s.
//  - Pre-tokens come from GPT-2's pattern (PCRE2, UTF + UCP), with \s spelled out as Unicode
//    White_Space, which is what Oniguruma (HF), Rust regex (tiktoken) and `regex` (OpenAI) use;
//    PCRE2's own \s leaves out U+0085.
//  - Invalid UTF-8 (which a Python str cannot hold) is defined as: the text is cut into maximal
//    valid UTF-8 runs, each run is pre-tokenized on its own, and every invalid byte is a
//    pre-token of its own (one byte token). So decode(encode(bytes)) == bytes for any bytes.
// encode is safe to call from several threads at once (the word cache takes a lock).
#ifndef SWQ_TOKENIZER_BPE_H
#define SWQ_TOKENIZER_BPE_H
#include "tokenizer.h"

// Reads dir/vocab.json + dir/merges.txt (Hugging Face names) or, if vocab.json is absent,
// dir/encoder.json + dir/vocab.bpe (OpenAI names). Returns NULL with "<file>: <problem>" in err.
tokenizer *tokenizer_bpe_load(const char *dir, char *err, size_t errlen);

// 1 (the default, as HF): "<|endoftext|>" in text encodes to eot; 0: it is ordinary text.
void tokenizer_bpe_set_special(tokenizer *t, int parse_special);
#endif
