// SQuAD v1.1 layout: loading (plain or .zst JSON), article split files,
// the embedded synthetic generator, and the official v1.1 metric.
#ifndef SWQ_SQUAD_H
#define SWQ_SQUAD_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *id, *title, *context, *question;   // UTF-8, NUL-terminated
    int n_answers;
    char **answers;                          // [n_answers]
    int *answer_start;                       // [n_answers] BYTE offsets into context (converted
                                             // from the file's code-point offsets); -1 if not found
} squad_qa;

typedef struct {
    int n;
    squad_qa *qa;
    int n_skipped;                            // entries dropped (reported by the loader)
} squad_set;

// Load a SQuAD-layout JSON file (".zst" suffix: zstd-compressed). If split_file is non-NULL,
// keep only articles whose title maps to `side` ("train" or "eval") in it ("title<TAB>side"
// lines). An answer whose text is not at answer_start in the context is searched for; if the
// text is not in the context at all that answer gets answer_start -1 (its text still counts
// for the metric); a question none of whose answers is in the context (or that has no
// answers) is skipped and counted in n_skipped. Articles not listed in the split file are
// dropped; a split file naming no article of the data is an error.
// Returns 0, or -1 with a one-line message "<path>: <problem>" in err.
int squad_load(const char *path, const char *split_file, const char *side, squad_set *out,
               char *err, size_t errlen);
void squad_free(squad_set *s);

// Read a whole file; ".zst" files are decompressed. Returns malloc'd NUL-terminated buffer
// (length in *len) or NULL with "<path>: <problem>" in err.
char *swq_read_file(const char *path, size_t *len, char *err, size_t errlen);

// Embedded generator: writes n_articles articles of templated facts (context, questions,
// answers) in SQuAD JSON layout to path (atomically). Deterministic in seed.
int synthqa_write(const char *path, int n_articles, uint64_t seed, char *err, size_t errlen);
// The same with at most max_facts (1..6; synthqa_write uses 6) facts per paragraph: shorter contexts.
int synthqa_write_facts(const char *path, int n_articles, uint64_t seed, int max_facts, char *err, size_t errlen);

// Official SQuAD v1.1 answer normalization: lower-case, remove punctuation (ASCII
// string.punctuation), remove articles a/an/the as words, collapse whitespace.
// Lower-casing folds ASCII only (non-ASCII bytes are kept as they are, unlike Python's
// str.lower()); whitespace is Python's str.split() set, Unicode spaces included.
// Returns malloc'd string.
char *squad_normalize(const char *s);
int squad_exact_match(const char *pred, char *const *answers, int n);   // max over answers, 0/1
double squad_f1(const char *pred, char *const *answers, int n);         // max over answers
#endif
