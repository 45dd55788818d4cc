// CPU reference backend: every op of backend.h as plain single-threaded loops
// (matmuls through OpenBLAS), in float ("cpu") or double ("cpu-f64", the
// gradient-check reference). The op bodies live in cpu_ops.inc, included once per
// element type. Backend memory is host memory.
#include "model/backend.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#define GELU_SCALING 0.7978845608028654   // sqrt(2/pi)

// ---------------------------------------------------------------- type-independent ops

static void *cpu_alloc(swq_backend *be, size_t bytes, const char *what) {
    void *p = calloc(1, bytes > 0 ? bytes : 1);
    if (!p) {
        fprintf(stderr, "%s: cannot allocate %zu bytes\n", what ? what : "cpu alloc", bytes);
        exit(1);
    }
    return p;
}

static void cpu_free(swq_backend *be, void *p) { free(p); }

static void cpu_upload_i32(swq_backend *be, int *dst, const int *src, size_t n) {
    if (n > 0 && dst != src) memmove(dst, src, n * sizeof(int));
}

static void cpu_download_f64(swq_backend *be, double *dst, const double *src, size_t n) {
    if (n > 0 && dst != src) memmove(dst, src, n * sizeof(double));
}

static void cpu_zero(swq_backend *be, void *dst, size_t bytes) {
    if (bytes > 0) memset(dst, 0, bytes);
}

static void cpu_synchronize(swq_backend *be) {}

// ---------------------------------------------------------------- typed ops

#define real float
#define FN(name) name##_f32
#define GEMM cblas_sgemm
#include "cpu_ops.inc"
#undef real
#undef FN
#undef GEMM

#define real double
#define FN(name) name##_f64
#define GEMM cblas_dgemm
#include "cpu_ops.inc"
#undef real
#undef FN
#undef GEMM

swq_backend *swq_backend_cpu(int real_size) {
    if (real_size != 4 && real_size != 8) {
        fprintf(stderr, "swq_backend_cpu: real_size must be 4 or 8, got %d\n", real_size);
        return NULL;
    }
    swq_backend *be = cpu_alloc(NULL, sizeof *be, "cpu backend");
    be->name = real_size == 4 ? "cpu" : "cpu-f64";
    be->ctx = NULL;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload_i32 = cpu_upload_i32;
    be->download_f64 = cpu_download_f64;
    be->zero = cpu_zero;
    be->synchronize = cpu_synchronize;
    if (real_size == 4)
        set_ops_f32(be);
    else
        set_ops_f64(be);
    return be;
}

void swq_backend_destroy(swq_backend *be) {
    if (!be) return;
    if (be->destroy) be->destroy(be);
    else free(be);   // the CPU backend has no ctx
}
