// Growable arrays used across the project.
#ifndef SWQ_VEC_H
#define SWQ_VEC_H
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

typedef struct { int *v; size_t n, cap; } int_vec;
typedef struct { char *v; size_t n, cap; } byte_vec;   // v is kept NUL-terminated

static inline void *swq_xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) { fprintf(stderr, "swq: out of host memory (%zu bytes)\n", bytes); exit(1); }
    return q;
}
static inline void int_vec_push(int_vec *a, int x) {
    if (a->n == a->cap) { a->cap = a->cap ? 2 * a->cap : 16; a->v = (int *)swq_xrealloc(a->v, a->cap * sizeof(int)); }
    a->v[a->n++] = x;
}
static inline void byte_vec_append(byte_vec *a, const char *s, size_t n) {
    if (a->n + n + 1 > a->cap) {
        while (a->n + n + 1 > a->cap) a->cap = a->cap ? 2 * a->cap : 64;
        a->v = (char *)swq_xrealloc(a->v, a->cap);
    }
    memcpy(a->v + a->n, s, n); a->n += n; a->v[a->n] = 0;
}
static inline void byte_vec_puts(byte_vec *a, const char *s) { byte_vec_append(a, s, strlen(s)); }
static inline void int_vec_free(int_vec *a) { free(a->v); a->v = NULL; a->n = a->cap = 0; }
static inline void byte_vec_free(byte_vec *a) { free(a->v); a->v = NULL; a->n = a->cap = 0; }
#endif
