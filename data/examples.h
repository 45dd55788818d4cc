// Turning SQuAD questions into token sequences for the two task formulations.
#ifndef SWQ_EXAMPLES_H
#define SWQ_EXAMPLES_H
#include "tokenizer.h"
#include "squad.h"

// Prompt completion (seed 000): ids = prompt + target, target = " " answer + <|endoftext|>.
// The prompt is the template with {context} and {question} replaced; the context is
// truncated (tokens dropped from its end, or from its start if that keeps the answer) so
// that prompt + target fits in max_len. Loss is on the target tokens only.
typedef struct {
    int *ids; int n;        // full sequence
    int prompt_len;         // ids[0..prompt_len) is the prompt
    int qa;                 // index of the question in its squad_set
} prompt_example;

// Span QA (seed 001): ids = question tokens + context tokens (a window of them), start/end
// are token positions of the first answer inside the sequence, or 0/0 when the window does
// not contain it. tok_begin/tok_end give each token's byte range in the context (-1 for
// question tokens) so a predicted span maps back to context text.
typedef struct {
    int *ids; int n;
    int start, end;
    int ctx_first;          // first context token position
    int *tok_begin, *tok_end;
    int qa;
} span_example;

// n_skipped: questions left out (prompt: " "+answer longer than max_answer_tokens, or no room
// for any context in max_len; span: question alone fills max_len).
typedef struct { int n; prompt_example *ex; int n_skipped; } prompt_examples;
typedef struct { int n; span_example *ex; int n_skipped; } span_examples;

#define SWQ_DEFAULT_PROMPT "Context: {context}\nQuestion: {question}\nAnswer:"

// The label answer is the first answer found in the context (answer_start >= 0).
// max_answer_tokens caps the tokens of " "+answer (the <|endoftext|> after it is not counted;
// <= 0: no cap). Returns -1 if the template lacks a slot or no question fits.
int prompt_examples_build(const squad_set *s, const tokenizer *tok, const char *tmpl, int max_len,
                          int max_answer_tokens, prompt_examples *out, char *err, size_t errlen);
// windows of max_len with the given stride over long contexts (each window one example):
// `stride` is the overlap in context tokens between consecutive windows (clamped to half a
// window). tok_begin/tok_end are half-open byte ranges [begin, end) into the context.
int span_examples_build(const squad_set *s, const tokenizer *tok, int max_len, int stride,
                        span_examples *out, char *err, size_t errlen);
void prompt_examples_free(prompt_examples *e);
void span_examples_free(span_examples *e);
#endif
