// CUDA backend: device selection, memory ops, the cuBLAS GEMM helper and the op table.
#include <string.h>
#include <time.h>
#include <cuda_bf16.h>
#include "cuda/cuda_common.h"
#include "cuda/convert.cuh"
#include "cuda/backend_cuda.h"
#include <cudaTypedefs.h>

static const char CUDA_NAME[] = "cuda";

// Host-side tables grow by doubling; running out of host memory ends the program.
static void *table_room(void *v, int n, int *cap, size_t elem, const char *what) {
    if (n < *cap) return v;
    int nc = *cap ? 2 * *cap : 256;
    void *p = realloc(v, (size_t)nc * elem);
    if (!p) {
        fprintf(stderr, "cuda backend: out of host memory (%s)\n", what);
        exit(1);
    }
    *cap = nc;
    return p;
}

static void graphs_clear(cuda_ctx *c);
static void expanded_floats(swq_backend *be, struct cu_alloc_rec *r);

// ---- SWQ_CUDA_TIMELINE ----
static double host_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static void tl_add(cuda_ctx *c, const struct cu_tl_mark *m, double ms) {
    for (int i = 0; i < c->tl_ns; i++) {
        struct cu_tl_sum *e = &c->tl_s[i];
        if (e->phase == m->phase && e->op == m->op && e->part == m->part) {
            e->ms += ms;
            e->n++;
            return;
        }
    }
    c->tl_s = (struct cu_tl_sum *)table_room(c->tl_s, c->tl_ns, &c->tl_cap_s, sizeof(*c->tl_s), "timeline");
    c->tl_s[c->tl_ns++] = {m->phase, m->op, m->part, ms, 1};
}
// Waits for the last mark and sums every interval but the last one's, which stays open.
static void tl_flush(cuda_ctx *c) {
    if (c->tl_n < 2) return;
    CUDA_CHECK(cudaEventSynchronize(c->tl_m[c->tl_n - 1].ev));
    for (int i = 0; i + 1 < c->tl_n; i++) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, c->tl_m[i].ev, c->tl_m[i + 1].ev));
        tl_add(c, &c->tl_m[i], ms);
    }
    struct cu_tl_mark last = c->tl_m[c->tl_n - 1];
    c->tl_m[c->tl_n - 1] = c->tl_m[0];
    c->tl_m[0] = last;
    c->tl_n = 1;
}
static void tl_record(cuda_ctx *c, const char *part) {
    if (c->tl_n == c->tl_cap) tl_flush(c);   // only when a step has more marks than the pool
    struct cu_tl_mark *m = &c->tl_m[c->tl_n++];
    m->phase = c->tl_phase;
    m->op = c->tl_op;
    m->part = part;
    CUDA_CHECK(cudaEventRecord(m->ev, c->stream));
}
void cu_tl_op(swq_backend *be, const char *phase, const char *op) {
    cuda_ctx *c = CTX(be);
    if (!c->tl) return;
    c->tl_phase = phase;
    c->tl_op = op;
    tl_record(c, "outside GEMMs");
}
void cu_tl_part(swq_backend *be, const char *part) {
    cuda_ctx *c = CTX(be);
    if (c->tl) tl_record(c, part);
}
// After the stream was synchronized: the GPU idles from here until the host's next op.
static void tl_synced(cuda_ctx *c) {
    if (!c->tl || !c->tl_n) return;
    c->tl_phase = "idle";
    c->tl_op = "GPU idle: host work after a synchronization";
    tl_record(c, "idle");
    tl_flush(c);
}
// What cannot be part of a CUDA graph recording.
static void not_capturing(cuda_ctx *c, const char *what) {
    if (!c->capturing) return;
    fprintf(stderr, "cuda backend: internal error: %s inside a recorded run (graph_begin/graph_end)\n", what);
    exit(1);
}
// Every synchronization of the stream: host time spent before it (enqueueing, since the last
// one ended) and waiting in it (SWQ_CUDA_TIMELINE=host: only this, no events).
static void stream_sync(cuda_ctx *c) {
    not_capturing(c, "a synchronization");
    double t = c->ht ? host_now() : 0;
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (c->ht) {
        double u = host_now();
        if (c->tl_host_t0 > 0) c->tl_host_busy += t - c->tl_host_t0;
        c->tl_host_wait += u - t;
        c->tl_host_t0 = u;
    }
    tl_synced(c);
}
// An op starts: the copies it uses from now on are not evicted until the next op starts (it may
// hold several at once: an operand's copy, then a slot for its output that forces evictions).
static inline void op_begin(swq_backend *be) {
    cuda_ctx *c = CTX(be);
    c->bfc_pin = c->bfc_clock + 1;
    cu_ln_flush(be);   // a pending layernorm not taken by its linear (lora_fwd takes it first)
}
#define TL(phase, op) (op_begin(be), cu_zero_flush(be), cu_tl_op(be, (phase), (op)))

// ---- memory ----
// The class of an allocation named `what`: its name up to the first '.' ("activations.qkv" ->
// "activations"); classes past the table's room share its last one.
static int mem_class(cuda_ctx *c, const char *what) {
    char k[32];
    size_t n = 0;
    if (!what) what = "other";
    while (what[n] && what[n] != '.' && n < sizeof(k) - 1) {
        k[n] = what[n];
        n++;
    }
    k[n] = 0;
    for (int i = 0; i < c->mem.n; i++)
        if (!strcmp(c->mem.name[i], k)) return i;
    if (c->mem.n == CU_MEM_CLASSES) return CU_MEM_CLASSES - 1;
    if (c->mem.n == CU_MEM_CLASSES - 1) snprintf(k, sizeof(k), "other");
    memcpy(c->mem.name[c->mem.n], k, sizeof(k));
    return c->mem.n++;
}
// mem_cur (and its class) grows or shrinks by `bytes`; a new peak keeps every class's bytes.
static void mem_add(cuda_ctx *c, int cls, size_t bytes, int grow) {
    if (grow) {
        c->mem_cur += bytes;
        c->mem.cur[cls] += bytes;
    } else {
        c->mem_cur -= bytes;
        c->mem.cur[cls] -= bytes;
    }
    if (grow && c->mem_cur > c->mem_peak) {
        c->mem_peak = c->mem_cur;
        memcpy(c->mem.at_peak, c->mem.cur, sizeof(c->mem.cur));
    }
}
#define MEM_BF16_COPIES "bf16 operand copies"
#define MEM_BF16_WEIGHTS "bf16 weight copies"

static void rec_push(struct cu_alloc_rec **v, int *n, int *cap, struct cu_alloc_rec r) {
    *v = (struct cu_alloc_rec *)table_room(*v, *n, cap, sizeof(**v), "allocation table");
    (*v)[(*n)++] = r;
}
static void *cu_alloc(swq_backend *be, size_t bytes, const char *what) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: cudaMalloc of %zu bytes failed: %s\n", what ? what : "buffer", bytes,
                cudaGetErrorString(e));
        exit(1);
    }
    cuda_ctx *c = CTX(be);
    struct cu_alloc_rec rec;
    memset(&rec, 0, sizeof(rec));
    rec.p = p;
    rec.bytes = bytes;
    rec.cls = mem_class(c, what);
    rec_push(&c->allocs, &c->n_allocs, &c->cap_allocs, rec);
    if (what && !strncmp(what, "qcache.", 7)) rec_push(&c->frozen, &c->n_frozen, &c->cap_frozen, rec);
    mem_add(c, rec.cls, bytes, 1);
    return p;
}
static void byte_range(const cuda_ctx *c, const void *p, size_t bytes, const char **lo, const char **hi);
static void zeros_out(swq_backend *be);
static void cu_free(swq_backend *be, void *p) {
    if (!p) return;
    cuda_ctx *c = CTX(be);
    cu_zero_flush(be);
    if (c->zl) {   // a pending zero of this buffer is dropped
        const char *lo, *hi;
        byte_range(c, p, 0, &lo, &hi);
        if ((const char *)c->zl >= lo && (const char *)c->zl < hi) c->zl = NULL;
    }
    not_capturing(c, "a free");
    graphs_clear(c);                // a recording may use p
    for (int i = 0; i < c->n_frozen; i++) {
        struct cu_alloc_rec *r = &c->frozen[i];
        if (r->p == p) r->x_active = 0;   // (its floats are not wanted)
        if (r->expanded && r->x_active && (r->x_codes == p || r->x_scales == p)) expanded_floats(be, r);   // while they exist
    }
    cu_bf16_invalidate(be, p, 0);   // the address may come back from the next cudaMalloc
    {   // an adapter freed: its rows are not to be refreshed (a_rows_refresh)
        const char *lo, *hi;
        byte_range(c, p, 0, &lo, &hi);
        for (int i = 0; i < c->n_frozen; i++)
            if ((const char *)c->frozen[i].a_src >= lo && (const char *)c->frozen[i].a_src < hi)
                c->frozen[i].a_src = NULL, c->frozen[i].a_ok = 0;
    }
    for (int i = c->n_allocs - 1; i >= 0; i--)
        if (c->allocs[i].p == p) {
            mem_add(c, c->allocs[i].cls, c->allocs[i].bytes, 0);
            c->allocs[i] = c->allocs[--c->n_allocs];
            break;
        }
    for (int i = c->n_frozen - 1; i >= 0; i--)
        if (c->frozen[i].p == p) {
            if (c->frozen[i].bf16) {
                CUDA_CHECK(cudaFree(c->frozen[i].bf16));
                mem_add(c, mem_class(c, MEM_BF16_WEIGHTS), c->frozen[i].bf_elems * sizeof(__nv_bfloat16), 0);
            }
            if (c->frozen[i].kx) {
                CUDA_CHECK(cudaFree(c->frozen[i].kx));
                mem_add(c, mem_class(c, MEM_BF16_WEIGHTS), c->frozen[i].kx_elems * sizeof(__nv_bfloat16), 0);
            }
            c->frozen[i] = c->frozen[--c->n_frozen];
            break;
        }
    CUDA_CHECK(cudaFree(p));
}
// Host <-> device transfers are synchronous for the caller (the host buffer is free to reuse).
static void h2d(swq_backend *be, void *dst, const void *src, size_t bytes) {
    zeros_out(be);
    if (!bytes) return;
    cu_bf16_invalidate(be, dst, bytes);
    TL("transfers", "upload");
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, STREAM(be)));
    stream_sync(CTX(be));
}
static void d2h(swq_backend *be, void *dst, const void *src, size_t bytes, const char *what) {
    zeros_out(be);
    if (!bytes) return;
    TL("transfers", what);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, STREAM(be)));
    stream_sync(CTX(be));
}
static void cu_upload(swq_backend *be, void *dst, const float *src, size_t n) { h2d(be, dst, src, n * sizeof(float)); }
static void cu_upload_i32(swq_backend *be, int *dst, const int *src, size_t n) { h2d(be, dst, src, n * sizeof(int)); }
static void cu_download(swq_backend *be, float *dst, const void *src, size_t n) {
    cu_sole_in(be, src, n * sizeof(float));
    d2h(be, dst, src, n * sizeof(float), "download");
}
static void cu_download_f64(swq_backend *be, double *dst, const double *src, size_t n) {
    d2h(be, dst, src, n * sizeof(double), "download (losses, norms)");
}
void cu_zero_flush(swq_backend *be) {
    cuda_ctx *c = CTX(be);
    if (!c->zp) return;
    void *p = c->zp;
    c->zp = NULL;
    CUDA_CHECK(cudaMemsetAsync(p, 0, c->zbytes, c->stream));
}
static void zero_lazy_flush(cuda_ctx *c) {
    if (!c->zl) return;
    void *p = c->zl;
    c->zl = NULL;
    CUDA_CHECK(cudaMemsetAsync(p, 0, c->zl_bytes, c->stream));
}
// Both pending zeros issued (the small one cu_zero keeps for a "+=" to take over, the large one for
// xent_kl's teacher sums): before transfers, synchronization, graph boundaries and the stream's hand-off.
static void zeros_out(swq_backend *be) {
    cu_zero_flush(be);
    zero_lazy_flush(CTX(be));
    cu_ln_flush(be);   // (and the pending layernorm)
    cu_ln_take_flush(be);
}
static void zero_lazy_meets(cuda_ctx *c, const char *lo, const char *hi) {
    if (c->zl && (const char *)c->zl < hi && lo < (const char *)c->zl + c->zl_bytes) zero_lazy_flush(c);
}
// Takes over the pending large zero if it is exactly [p, p + bytes) (the caller writes all of it
// from zero without reading it). 1 if taken; otherwise it stays pending.
static int zero_lazy_take(cuda_ctx *c, const void *p, size_t bytes) {
    if (!c->zl || c->zl != p || c->zl_bytes != bytes) return 0;
    c->zl = NULL;
    return 1;
}
// Takes over the pending zero if it is exactly [p, p + bytes) (the caller's "+=" into p becomes
// "="); otherwise issues it. 1 if taken. bf16 mode only: fp32 and tf32 keep the GEMMs (and their
// rounding) that were measured against the CPU reference.
static int zero_take(swq_backend *be, const void *p, size_t bytes) {
    cuda_ctx *c = CTX(be);
    if (c->zp && c->zp == p && c->zbytes == bytes && c->precision == CU_BF16) {
        c->zp = NULL;
        return 1;
    }
    cu_zero_flush(be);
    return 0;
}
// Scratch zeroed before a "+=" op (the backward's dinp buffers) is left pending for that op.
static void cu_zero(swq_backend *be, void *dst, size_t bytes) {
    if (!bytes) return;
    cu_bf16_invalidate(be, dst, bytes);
    int big = bytes >= ((size_t)256 << 20);
    TL("memsets and copies", big ? "zero >= 256 MiB (teacher sums, all grads)" : "zero < 256 MiB");
    if (big && !CTX(be)->ht) {   // (one at a time)
        zero_lazy_flush(CTX(be));
        CTX(be)->zl = dst;
        CTX(be)->zl_bytes = bytes;
    } else if (CTX(be)->ht) CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, STREAM(be)));
    else {
        CTX(be)->zp = dst;
        CTX(be)->zbytes = bytes;
    }
}
static void cu_copy(swq_backend *be, void *dst, const void *src, size_t n) {
    cu_zero_flush(be);
    if (!n || dst == src) return;
    cu_sole_in(be, src, n * sizeof(float));
    cu_bf16_invalidate(be, dst, n * sizeof(float));
    TL("memsets and copies", "copy");
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, STREAM(be)));
}
static void cu_synchronize(swq_backend *be) {
    zeros_out(be);
    stream_sync(CTX(be));
}

// ---- GEMM ----
static void convert_bf16(cudaStream_t s, __nv_bfloat16 *dst, const float *src, size_t n) {
    size_t n4 = ((uintptr_t)src % 16 == 0) ? n / 4 : 0;
    if (n4) {
        float4_to_bf16_kernel<<<grid_for(n4, 256), 256, 0, s>>>((__nv_bfloat162 *)dst, (const float4 *)src, n4);
        CUDA_LAUNCH_CHECK();
    }
    if (n > 4 * n4) {
        float_to_bf16_kernel<<<grid_for(n - 4 * n4, 256), 256, 0, s>>>(dst + 4 * n4, src + 4 * n4, n - 4 * n4);
        CUDA_LAUNCH_CHECK();
    }
}

// Frees slot i (rare: a source outgrew it, or beyond the limit); drops the recordings first if
// one uses it.
static void bfc_release(cuda_ctx *c, int i) {
    not_capturing(c, "a bf16 copy slot freed");
    struct cu_bf16_entry *e = &c->bfc[i];
    if (e->in_graph) graphs_clear(c);
    if (e->async) CUDA_CHECK(cudaFreeAsync(e->bf, c->stream));
    else CUDA_CHECK(cudaFree(e->bf));
    c->bfc_bytes -= e->cap * sizeof(__nv_bfloat16);
    mem_add(c, mem_class(c, MEM_BF16_COPIES), e->cap * sizeof(__nv_bfloat16), 0);
    c->bfc[i] = c->bfc[--c->n_bfc];
}

// [lo, hi) = [p, p + bytes); bytes 0: the whole allocation holding p (or, not one of ours, the
// element at p).
static void byte_range(const cuda_ctx *c, const void *p, size_t bytes, const char **lo, const char **hi) {
    *lo = (const char *)p;
    *hi = *lo + bytes;
    if (!bytes)
        for (int i = 0; i < c->n_allocs; i++) {
            const char *a = (const char *)c->allocs[i].p;
            if (*lo >= a && *lo < a + c->allocs[i].bytes) {
                *lo = a;
                *hi = a + c->allocs[i].bytes;
                break;
            }
        }
    if (*hi == *lo) *hi = *lo + 1;
}

// [lo, hi) meets the pending lazy output's floats
static int lazy_overlaps(const cuda_ctx *c, const char *lo, const char *hi) {
    const char *s = (const char *)c->lazy.out;
    return s && s < hi && lo < s + (size_t)c->lazy.rows * c->lazy.cols * sizeof(float);
}

// r is an active expanded record whose weight's floats meet [lo, hi)
static int expanded_meets(const struct cu_alloc_rec *r, const char *lo, const char *hi) {
    const char *s = (const char *)r->p, *t = s + (size_t)r->x_rows * r->x_cols * sizeof(float);
    return r->expanded && r->x_active && s < hi && lo < t;
}

// An expanded weight's floats, made from its codes where only its bf16 copy was written.
static void expanded_floats(swq_backend *be, struct cu_alloc_rec *r) {
    if (r->x_float_ok) return;
    cu_dequantize_rows(be, r->p, r->x_codes, r->x_scales, r->x_rows, r->x_cols, r->x_bits);
    r->x_float_ok = 1;
}

void cu_bf16_invalidate(swq_backend *be, const void *p, size_t bytes) {
    cuda_ctx *c = CTX(be);
    if (!p) return;
    const char *lo, *hi;
    byte_range(c, p, bytes, &lo, &hi);
    zero_lazy_meets(c, lo, hi);
    cu_teacher_half_meets(be, lo, hi, 1);
    if (lazy_overlaps(c, lo, hi)) c->lazy.out = NULL;   // overwritten: nothing to pack
    if (!c->n_bfc && !c->n_frozen) return;
    for (int i = 0; i < c->n_frozen; i++)   // floats written: no longer expanded
        if (expanded_meets(&c->frozen[i], lo, hi)) {
            expanded_floats(be, &c->frozen[i]);   // (a write of part of them keeps the rest)
            c->frozen[i].x_active = 0;
        }
    for (int i = 0; lo < c->a_hi && c->a_lo < hi && i < c->n_frozen; i++) {   // adapter rows after frozen weights
        struct cu_alloc_rec *r = &c->frozen[i];
        const char *a = (const char *)r->a_src;
        if (r->a_ok && a < hi && lo < a + r->a_elems * sizeof(float)) r->a_ok = 0;
    }
    for (int i = 0; i < c->n_bfc; i++) {
        struct cu_bf16_entry *e = &c->bfc[i];
        const char *s = (const char *)e->src, *t = s + e->n * sizeof(float);
        if (e->valid && s < hi && lo < t) e->valid = 0;
    }
}

static __nv_bfloat16 *bfc_new(cuda_ctx *c, const float *src, size_t n, int ld_src, int ld_bf,
                              unsigned long long now);

// The frozen buffer's record holding [src, src + n), or NULL.
// (An expanded record only while active, and only its weight's elements.)
static struct cu_alloc_rec *frozen_holding(cuda_ctx *c, const float *src, size_t n) {
    for (int i = 0; i < c->n_frozen; i++) {
        struct cu_alloc_rec *r = &c->frozen[i];
        const float *base = (const float *)r->p;
        size_t elems = r->expanded ? (r->x_active ? (size_t)r->x_rows * r->x_cols : 0) : r->bytes / sizeof(float);
        if (src >= base && src + n <= base + elems) return r;
    }
    return NULL;
}

// Record r's bf16 buffer with room for `elems` elements: made, or remade larger (its contents lost).
static void rec_bf16_room(cuda_ctx *c, struct cu_alloc_rec *r, size_t elems, const char *what) {
    if (r->bf16 && r->bf_elems >= elems) return;
    if (r->bf16) {
        char why[128];
        snprintf(why, sizeof(why), "%s regrown", what);
        not_capturing(c, why);
        graphs_clear(c);                 // a recording may read the old copy
        CUDA_CHECK(cudaFree(r->bf16));   // synchronizes
        mem_add(c, mem_class(c, MEM_BF16_WEIGHTS), r->bf_elems * sizeof(__nv_bfloat16), 0);
        r->bf16 = NULL;
        r->bf_elems = 0;
    }
    cudaError_t e = cudaMalloc(&r->bf16, elems * sizeof(__nv_bfloat16));
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: cudaMalloc of %zu bytes failed: %s\n", what, elems * sizeof(__nv_bfloat16),
                cudaGetErrorString(e));
        exit(1);
    }
    r->bf_elems = elems;
    mem_add(c, mem_class(c, MEM_BF16_WEIGHTS), elems * sizeof(__nv_bfloat16), 1);
}

// The kept bf16 copy of frozen buffer r with room for `elems` bf16 elements (its own first, see
// cu_weight_ext for the rest): made, or remade larger, and converted now when it has less.
static void frozen_copy(cuda_ctx *c, struct cu_alloc_rec *r, size_t elems) {
    if (r->bf16 && r->bf_elems >= elems) return;
    rec_bf16_room(c, r, elems, "bf16 copy of a cached weight");
    convert_bf16(c->stream, (__nv_bfloat16 *)r->bf16, (const float *)r->p, r->bytes / sizeof(float));
    r->a_ok = 0;
}

// bf16 copy of the n floats at src, read as a GEMM operand of `rows` contiguous elements per
// column, *ld apart (ld NULL: not a GEMM operand): the kept copy of a frozen buffer, a valid copy
// that contains [src, src + n) (a padded one if the operand's columns lie within its rows, *ld
// then its row distance), or a fresh one.
static const __nv_bfloat16 *bf16_of(swq_backend *be, const float *src, size_t n, int *ld, int rows) {
    cuda_ctx *c = CTX(be);
    struct cu_alloc_rec *r = frozen_holding(c, src, n);
    if (r) {
        if (!r->expanded) frozen_copy(c, r, r->bytes / sizeof(float));
        return (const __nv_bfloat16 *)r->bf16 + (src - (const float *)r->p);
    }
    unsigned long long now = ++c->bfc_clock;
    for (int i = 0; i < c->n_bfc; i++) {
        struct cu_bf16_entry *e = &c->bfc[i];
        if (!e->valid || src < e->src || src + n > e->src + e->n) continue;
        if (e->ld_bf) {
            size_t off = (size_t)(src - e->src), row = off / e->ld_src, col = off % e->ld_src;
            if (!ld || *ld != e->ld_src || col + rows > (size_t)e->ld_src) continue;
            e->used = now;
            e->in_graph |= c->capturing;
            *ld = e->ld_bf;
            return (const __nv_bfloat16 *)e->bf + row * e->ld_bf + col;
        }
        e->used = now;
        e->in_graph |= c->capturing;
        return (const __nv_bfloat16 *)e->bf + (src - e->src);
    }
    for (int i = 0; i < c->n_bfc; i++) {   // a sole copy it could not use (padded): its floats first
        const struct cu_bf16_entry *e = &c->bfc[i];
        if (e->valid && e->sole && src < e->src + e->n && e->src < src + n) {
            cu_sole_in(be, src, n * sizeof(float));
            break;
        }
    }
    __nv_bfloat16 *bf = bfc_new(c, src, n, 0, 0, now);
    convert_bf16(c->stream, bf, src, n);
    return bf;
}

// The largest row distance readers asked src's copies for (cu_bf16_want_rows), or 0.
static int want_ld_of(const cuda_ctx *c, const float *src) {
    int w = 0;
    for (int i = 0; i < c->n_bfc; i++)
        if (c->bfc[i].src == src && c->bfc[i].want_ld > w) w = c->bfc[i].want_ld;
    return w;
}

// A valid slot for [src, src + n) (contents left to the caller): the stale slot of the same
// source if it is large enough, else a new one, evicting least recently used slots (stale ones
// first) beyond the limit. While recording nothing is freed (the limit may be passed).
static __nv_bfloat16 *bfc_new(cuda_ctx *c, const float *src, size_t n, int ld_src, int ld_bf,
                              unsigned long long now) {
    size_t need = ld_bf ? n / ld_src * ld_bf : n;   // bf16 elements
    size_t bytes = need * sizeof(__nv_bfloat16);
    const int want_ld = want_ld_of(c, src);   // (kept across the source's slots)
    for (int i = 0; i < c->n_bfc; i++) {
        struct cu_bf16_entry *e = &c->bfc[i];
        if (!e->valid && e->src == src && e->ld_bf == ld_bf && e->cap >= need) {
            e->want_ld = want_ld;
            e->n = n;
            e->ld_src = ld_src;
            e->valid = 1;
            e->sole = 0;
            e->fread = 0;
            e->used = now;
            e->in_graph |= c->capturing;
            return (__nv_bfloat16 *)e->bf;
        }
    }
    if (!c->capturing) {
        for (int i = c->n_bfc - 1; i >= 0; i--)
            if (!c->bfc[i].valid && c->bfc[i].src == src) bfc_release(c, i);
        while (c->bfc_bytes + bytes > c->bfc_limit) {
            int v = -1;
            for (int i = 0; i < c->n_bfc; i++) {
                struct cu_bf16_entry *e = &c->bfc[i];
                if (e->used >= c->bfc_pin || (e->valid && e->sole)) continue;
                if (v < 0 || e->valid < c->bfc[v].valid || (e->valid == c->bfc[v].valid && e->used < c->bfc[v].used))
                    v = i;
            }
            if (v < 0) break;
            bfc_release(c, v);
        }
    }
    c->bfc = (struct cu_bf16_entry *)table_room(c->bfc, c->n_bfc, &c->cap_bfc, sizeof(*c->bfc), "bf16 copy table");
    void *bf = NULL;
    int async = !c->capturing;   // stream-ordered allocations would become the recording's own
    cudaError_t e = async ? cudaMallocAsync(&bf, bytes, c->stream) : cudaMalloc(&bf, bytes);
    if (e != cudaSuccess) {
        fprintf(stderr, "bf16 GEMM operand copy: %s of %zu bytes failed: %s\n", async ? "cudaMallocAsync" : "cudaMalloc",
                bytes, cudaGetErrorString(e));
        exit(1);
    }
    struct cu_bf16_entry ne;
    memset(&ne, 0, sizeof(ne));
    ne.src = src;
    ne.n = n;
    ne.cap = need;
    ne.ld_src = ld_src;
    ne.ld_bf = ld_bf;
    ne.bf = bf;
    ne.used = now;
    ne.want_ld = want_ld;
    ne.valid = 1;
    ne.async = (unsigned char)async;
    ne.in_graph = (unsigned char)c->capturing;
    c->bfc[c->n_bfc++] = ne;
    c->bfc_bytes += bytes;
    mem_add(c, mem_class(c, MEM_BF16_COPIES), bytes, 1);
    return (__nv_bfloat16 *)bf;
}

// ---- CUDA graphs ----
static void graphs_clear(cuda_ctx *c) {
    c->graph_last_key = 0;
    if (!c->n_graphs) return;
    CUDA_CHECK(cudaStreamSynchronize(c->stream));   // no replay still running
    for (int i = 0; i < c->n_graphs; i++) {
        CUDA_CHECK(cudaGraphExecDestroy(c->graphs[i].exec));
        free(c->graphs[i].snap);
    }
    c->n_graphs = 0;
    for (int i = 0; i < c->n_bfc; i++) c->bfc[i].in_graph = 0;
}

void cu_before_free(swq_backend *be, const char *what) {
    not_capturing(CTX(be), what);
    graphs_clear(CTX(be));
}

void *cu_scratch(swq_backend *be, void **p, size_t *cap, size_t bytes, const char *what) {
    cuda_ctx *c = CTX(be);
    if (c->lazy.out && *p == (const void *)c->lazy.o) cu_lazy_materialize(be);   // its next user overwrites it
    if (bytes <= *cap && *p) return *p;
    char why[160];
    snprintf(why, sizeof(why), "growing the %s", what);
    cu_before_free(be, why);
    if (*p) {
        cu_bf16_invalidate(be, *p, *cap);
        CUDA_CHECK(cudaFree(*p));   // synchronizes: nothing still reads it
        mem_add(c, mem_class(c, "backend scratch"), *cap, 0);
    }
    *p = NULL;
    *cap = 0;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: cudaMalloc of %zu bytes failed: %s\n", what, bytes, cudaGetErrorString(e));
        exit(1);
    }
    *cap = bytes;
    mem_add(c, mem_class(c, "backend scratch"), bytes, 1);
    return *p;
}

static int cu_graph_begin(swq_backend *be, unsigned long long key) {
    cuda_ctx *c = CTX(be);
    zeros_out(be);
    not_capturing(c, "graph_begin");
    if (!c->graphs_on) return 0;
    for (int i = 0; i < c->n_graphs; i++) {
        struct cu_graph *g = &c->graphs[i];
        if (g->key != key) continue;
        g->used = ++c->graph_clock;
        // the copy table as the recording leaves it
        for (int j = 0; j < c->n_bfc; j++) c->bfc[j].valid = 0;
        for (int k = 0; k < g->n_snap; k++)
            for (int j = 0; j < c->n_bfc; j++)
                if (c->bfc[j].bf == g->snap[k].bf) {
                    c->bfc[j].n = g->snap[k].n;
                    c->bfc[j].ld_src = g->snap[k].ld_src;
                    c->bfc[j].valid = 1;
                    break;
                }
        CUDA_CHECK(cudaGraphLaunch(g->exec, c->stream));
        c->n_graph_replays++;
        return 1;
    }
    if (key != c->graph_last_key) {
        c->graph_last_key = key;
        return 0;
    }
    // the second run in a row with this key: record it (relying on no copy made before it)
    for (int j = 0; j < c->n_bfc; j++) c->bfc[j].valid = 0;
    CUDA_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed));
    c->capturing = 1;
    c->capture_key = key;
    return 0;
}

static void cu_graph_end(swq_backend *be) {
    cuda_ctx *c = CTX(be);
    zeros_out(be);
    if (!c->capturing) return;
    cudaGraph_t graph = NULL;
    CUDA_CHECK(cudaStreamEndCapture(c->stream, &graph));
    c->capturing = 0;
    cudaGraphExec_t ex;
    CUDA_CHECK(cudaGraphInstantiate(&ex, graph, 0));
    CUDA_CHECK(cudaGraphDestroy(graph));
    if (c->n_graphs == CU_MAX_GRAPHS) {   // drop the least recently replayed
        int v = 0;
        for (int i = 1; i < c->n_graphs; i++)
            if (c->graphs[i].used < c->graphs[v].used) v = i;
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        CUDA_CHECK(cudaGraphExecDestroy(c->graphs[v].exec));
        free(c->graphs[v].snap);
        c->graphs[v] = c->graphs[--c->n_graphs];
    }
    struct cu_graph *g = &c->graphs[c->n_graphs++];
    memset(g, 0, sizeof(*g));
    g->key = c->capture_key;
    g->used = ++c->graph_clock;
    g->exec = ex;
    g->snap = (struct cu_bf16_entry *)malloc(sizeof(*g->snap) * (c->n_bfc ? c->n_bfc : 1));
    if (!g->snap) {
        fprintf(stderr, "cuda backend: out of host memory (graph)\n");
        exit(1);
    }
    for (int j = 0; j < c->n_bfc; j++)
        if (c->bfc[j].valid) g->snap[g->n_snap++] = c->bfc[j];
    CUDA_CHECK(cudaGraphLaunch(ex, c->stream));   // recording ran nothing
    c->n_graph_captures++;
}

// n floats at src; rows of ld floats stored ld_bf apart when ld_bf > 0.
static void *bf16_slot(swq_backend *be, const float *src, size_t n, int ld, int ld_bf) {
    cuda_ctx *c = CTX(be);
    if (c->precision != CU_BF16 || !n) return NULL;
    cu_bf16_invalidate(be, src, n * sizeof(float));
    return bfc_new(c, src, n, ld, ld_bf, ++c->bfc_clock);
}

void *cu_bf16_slot(swq_backend *be, const float *src, size_t n) { return bf16_slot(be, src, n, 0, 0); }

// The entry of an unpadded copy of exactly [src, src + n) (n 0: of any length from src), valid
// or stale, or NULL.
static struct cu_bf16_entry *plain_entry(cuda_ctx *c, const float *src, size_t n) {
    for (int i = 0; i < c->n_bfc; i++) {
        struct cu_bf16_entry *e = &c->bfc[i];
        if (e->src == src && (e->n == n || !n) && !e->ld_bf) return e;
    }
    return NULL;
}

int cu_bf16_wanted(swq_backend *be, const float *src, size_t n) {
    cuda_ctx *c = CTX(be);
    if (c->precision != CU_BF16 || !n) return 0;
    // (a copy of any length: the adapters of the CDT configs share each linear's u, N x r at a
    // time, and the ranks differ: 40% of the backward's u copies were made there, not by kext_input)
    struct cu_bf16_entry *e = plain_entry(c, src, 0);
    return e && !e->valid;
}

void *cu_bf16_slot_wanted(swq_backend *be, const float *src, size_t n) {
    return cu_bf16_wanted(be, src, n) ? bf16_slot(be, src, n, 0, 0) : NULL;
}

void *cu_bf16_slot_auto(swq_backend *be, const float *src, size_t n, int *sole) {
    cuda_ctx *c = CTX(be);
    *sole = 0;
    if (c->precision != CU_BF16 || !n) return NULL;
    struct cu_bf16_entry *e = plain_entry(c, src, n);
    if (!e || e->valid) return NULL;   // (valid: the caller did not drop it, so it is not a producer)
    *sole = !e->fread && !c->sole_off;
    return bf16_slot(be, src, n, 0, 0);
}

void *cu_bf16_slot_auto_rows(swq_backend *be, const float *src, int rows, int cols, int ld_bf, int *sole) {
    cuda_ctx *c = CTX(be);
    const size_t n = (size_t)rows * cols;
    *sole = 0;
    if (ld_bf == cols) return cu_bf16_slot_auto(be, src, n, sole);
    if (c->precision != CU_BF16 || !n) return NULL;
    const struct cu_bf16_entry *e = NULL;   // the last copy, plain or padded
    for (int i = 0; i < c->n_bfc && !e; i++)
        if (c->bfc[i].src == src && c->bfc[i].n == n) e = &c->bfc[i];
    if (!e || e->valid) return NULL;
    *sole = !e->fread && !c->sole_off;
    return bf16_slot(be, src, n, cols, ld_bf);
}

void *cu_bf16_slot_padded(swq_backend *be, const float *src, int rows, int ld, int ld_bf) {
    if (ld_bf == ld) return bf16_slot(be, src, (size_t)rows * ld, 0, 0);   // no padding: a plain copy
    return bf16_slot(be, src, (size_t)rows * ld, ld, ld_bf);
}

int cu_bf16_want_ld(swq_backend *be, const float *src, int cols) {
    const int w = want_ld_of(CTX(be), src);
    return w > cols && w % 8 == 0 ? w : cols;
}

void cu_bf16_want_rows(swq_backend *be, const float *src, int ld) {
    cuda_ctx *c = CTX(be);
    for (int i = 0; i < c->n_bfc; i++)
        if (c->bfc[i].src == src && c->bfc[i].want_ld < ld) c->bfc[i].want_ld = ld;
}

const __nv_bfloat16 *cu_bf16_rows_of(swq_backend *be, const float *src, int rows, int cols, int *ld) {
    cuda_ctx *c = CTX(be);
    if (c->precision != CU_BF16) return NULL;
    const size_t n = (size_t)rows * cols;
    for (int i = 0; i < c->n_bfc; i++) {
        struct cu_bf16_entry *e = &c->bfc[i];
        if (!e->valid || e->src != src || e->n != n || (e->ld_bf && e->ld_src != cols)) continue;
        e->used = ++c->bfc_clock;
        e->in_graph |= c->capturing;
        *ld = e->ld_bf ? e->ld_bf : cols;
        return (const __nv_bfloat16 *)e->bf;
    }
    return NULL;
}

void cu_bf16_sole(swq_backend *be, const float *src) {
    cuda_ctx *c = CTX(be);
    for (int i = 0; i < c->n_bfc; i++)
        if (c->bfc[i].valid && c->bfc[i].src == src) c->bfc[i].sole = 1;
}

const __nv_bfloat16 *cu_bf16_sole_of(swq_backend *be, const float *src, size_t n, int *ld_src, int *ld) {
    cuda_ctx *c = CTX(be);
    for (int i = 0; i < c->n_bfc; i++) {
        struct cu_bf16_entry *e = &c->bfc[i];
        if (!e->valid || !e->sole || src < e->src || src + n > e->src + e->n) continue;
        size_t off = (size_t)(src - e->src);
        *ld_src = e->ld_bf ? e->ld_src : 0;
        *ld = e->ld_bf;
        return (const __nv_bfloat16 *)e->bf + (e->ld_bf ? off / e->ld_src * e->ld_bf + off % e->ld_src : off);
    }
    return NULL;
}

void cu_sole_in(swq_backend *be, const void *p, size_t bytes) {
    cuda_ctx *c = CTX(be);
    if (!p) return;
    const char *lo, *hi;
    byte_range(c, p, bytes, &lo, &hi);
    zero_lazy_meets(c, lo, hi);
    cu_teacher_half_meets(be, lo, hi, 0);
    if (lazy_overlaps(c, lo, hi)) cu_lazy_materialize(be);
    for (int i = 0; i < c->n_frozen; i++)
        if (expanded_meets(&c->frozen[i], lo, hi)) expanded_floats(be, &c->frozen[i]);
    if (c->precision != CU_BF16 || !c->n_bfc) return;
    for (int i = 0; i < c->n_bfc; i++) {
        struct cu_bf16_entry *e = &c->bfc[i];
        const char *s = (const char *)e->src, *t = s + e->n * sizeof(float);
        if (!e->valid || !(s < hi && lo < t)) continue;
        e->fread = 1;
        if (!e->sole) continue;
        int cols = e->ld_bf ? e->ld_src : 1;
        cu_bf16_rows_to_float(be, (float *)e->src, (const __nv_bfloat16 *)e->bf, e->ld_bf ? e->ld_bf : 1,
                              e->n / cols, cols);
        e->sole = 0;
    }
}

void cu_bf16_rows_to_float(swq_backend *be, float *dst, const __nv_bfloat16 *src, int lds, size_t rows, int cols) {
    size_t n = rows * cols;
    if (!n) return;
    bf16_rows_to_float_kernel<<<grid_for(n, 256), 256, 0, STREAM(be)>>>(dst, src, lds, rows, cols);
    CUDA_LAUNCH_CHECK();
}

void cu_bf16_convert_rows(swq_backend *be, void *dst, int ldd, const float *src, int rows, int cols, int width) {
    size_t n = (size_t)rows * width;
    if (!n) return;
    float_to_bf16_rows_kernel<<<grid_for(n, 256), 256, 0, STREAM(be)>>>((__nv_bfloat16 *)dst, ldd, src, rows, cols,
                                                                         width);
    CUDA_LAUNCH_CHECK();
}

__nv_bfloat16 *cu_bf16_rows_padded(swq_backend *be, const float *src, int rows, int cols, int min_ld, int *ld) {
    cuda_ctx *c = CTX(be);
    size_t n = (size_t)rows * cols;
    if (c->precision != CU_BF16 || !n) return NULL;
    if (frozen_holding(c, src, 1)) return NULL;
    for (int i = 0; i < c->n_bfc; i++) {
        struct cu_bf16_entry *e = &c->bfc[i];
        if (!e->valid || src + n <= e->src || e->src + e->n <= src) continue;
        if (e->src != src || e->n != n || e->ld_src != cols || e->ld_bf < min_ld) return NULL;   // another copy
        e->used = ++c->bfc_clock;
        e->in_graph |= c->capturing;
        *ld = e->ld_bf;
        return (__nv_bfloat16 *)e->bf;
    }
    int ldb = (min_ld + 7) & ~7;
    __nv_bfloat16 *bf = (__nv_bfloat16 *)bf16_slot(be, src, n, cols, ldb);
    cu_bf16_convert_rows(be, bf, ldb, src, rows, cols, cols);
    *ld = ldb;
    return bf;
}

const void *cu_bf16_copy(swq_backend *be, const float *p, size_t n) {
    cuda_ctx *c = CTX(be);
    if (c->precision != CU_BF16 || !n) return NULL;
    return bf16_of(be, p, n, NULL, 0);
}

static size_t span(int rows, int cols, int ld, long long stride, int batch);
static void prof_begin(cuda_ctx *c);
static void prof_mid(cuda_ctx *c);
static void prof_end(cuda_ctx *c, int cls, double flop);

// dequantize_rows in bf16 with SWQ_CUDA_WEIGHT_COPIES=0: the weight written only as the bf16
// copy of `out` (the same values its floats would round to), with room for CU_EXT_ROWS_MAX rows of
// an adapter's A after it (cu_weight_ext), in a record of the frozen table made on first use.
static void cu_expand_bf16(swq_backend *be, void *out, const void *codes, const void *scales, int rows, int cols,
                           int bits) {
    cuda_ctx *c = CTX(be);
    struct cu_alloc_rec *r = NULL;
    for (int i = 0; i < c->n_frozen && !r; i++)
        if (c->frozen[i].p == out && c->frozen[i].expanded) r = &c->frozen[i];
    if (!r) {
        const char *lo, *hi;
        byte_range(c, out, 0, &lo, &hi);   // the allocation holding out
        if (lo != (const char *)out || (size_t)(hi - lo) < (size_t)rows * cols * sizeof(float)) {
            fprintf(stderr, "cuda backend: dequantize_rows of %d x %d into %p, which does not start a buffer that large\n",
                    rows, cols, out);
            exit(1);
        }
        struct cu_alloc_rec rec;
        memset(&rec, 0, sizeof(rec));
        rec.p = out;
        rec.bytes = (size_t)(hi - lo);
        rec.expanded = 1;
        rec_push(&c->frozen, &c->n_frozen, &c->cap_frozen, rec);
        r = &c->frozen[c->n_frozen - 1];
    }
    r->x_active = 0;
    cu_bf16_invalidate(be, out, (size_t)rows * cols * sizeof(float));   // other copies of these floats
    rec_bf16_room(c, r, (size_t)rows * cols + (size_t)CU_EXT_ROWS_MAX * cols, "bf16 copy of an expanded weight");
    cu_dequantize_rows_bf16(be, r->bf16, codes, scales, rows, cols, bits);
    r->x_codes = codes;
    r->x_scales = (const float *)scales;
    r->x_rows = rows;
    r->x_cols = cols;
    r->x_bits = bits;
    r->x_float_ok = 0;
    r->a_ok = 0;   // A's rows (if any) were after a weight of another size
    r->x_active = 1;
}

// The adapter rows of every frozen weight whose A was written since they were made, where its
// K-extended copy still is the one they went to (a_rows), converted by one launch per BF16_JOBS:
// after the optimizer's step all of them are, and one launch costs what each of 245 did (3 us).
// A record's A that is not read again before its next write was converted in vain, nothing worse.
static void a_rows_refresh(swq_backend *be) {
    cuda_ctx *c = CTX(be);
    bf16_rows_jobs jobs;
    int n = 0;
    for (int i = 0; i <= c->n_frozen; i++) {
        struct cu_alloc_rec *r = i < c->n_frozen ? &c->frozen[i] : NULL;
        if (r && !r->a_ok && r->a_src && r->a_rows && r->kx && r->kx_ld == r->a_ld &&
            (char *)r->a_rows > (char *)r->kx && (char *)r->a_rows < (char *)r->kx + r->kx_elems * sizeof(__nv_bfloat16)) {
            int IC = (int)(r->a_elems / r->a_r);
            bf16_rows_job &j = jobs.j[n++];
            j.src = r->a_src, j.dst = (__nv_bfloat16 *)r->a_rows, j.ld = r->a_ld, j.rows = r->a_r, j.cols = IC;
            r->a_ok = 1;
        }
        if (n && (n == BF16_JOBS || !r)) {
            float_to_bf16_jobs_kernel<<<dim3(8, n), 256, 0, c->stream>>>(jobs);
            CUDA_LAUNCH_CHECK();
            n = 0;
        }
    }
}

const void *cu_weight_ext(swq_backend *be, const float *w, int OC, int IC, const float *A, int r, int rx, int *ld) {
    cuda_ctx *c = CTX(be);
    if (c->precision != CU_BF16 || r <= 0 || r > rx || rx > CU_EXT_ROWS_MAX || OC <= 0 || IC <= 0) return NULL;
    size_t m = (size_t)OC * IC, need = m + (size_t)rx * IC;
    struct cu_alloc_rec *rec = frozen_holding(c, w, m);
    if (!rec || rec->p != w) return NULL;
    __nv_bfloat16 *base;   // the weight's bf16 rows, *ld apart, with room for rx more after them
    if (rec->kx) {          // the K-extended copy (its only bf16 copy in the CDT step)
        base = (__nv_bfloat16 *)rec->kx;
        *ld = rec->kx_ld;
    } else {
        if (rec->expanded) {   // room made by dequantize_rows (cu_expand_bf16)
            if ((size_t)rec->x_rows * rec->x_cols != m || rec->bf_elems < need) return NULL;
        } else {
            if (rec->bytes != m * sizeof(float)) return NULL;
            if (!rec->bf16 || rec->bf_elems < need) {
                if (c->capturing) return NULL;
                frozen_copy(c, rec, need);
            }
        }
        base = (__nv_bfloat16 *)rec->bf16;
        *ld = IC;
    }
    size_t na = (size_t)r * IC;
    __nv_bfloat16 *rows = base + (size_t)OC * *ld;
    if (!rec->a_ok && rec->a_src == A && rec->a_elems == na && rec->a_rows == rows && rec->a_ld == *ld &&
        rec->a_r == r)   // (a_rows is set only for rows after a K-extended copy)
        a_rows_refresh(be);   // the same rows as last time: this and every other weight's, in one launch
    if (!rec->a_ok || rec->a_src != A || rec->a_elems != na) {   // A's rows, then zero rows up to rx
        rec->a_rows = NULL;
        if (*ld == IC) {
            cu_bf16_convert_rows(be, rows, 0, A, 1, r * IC, rx * IC);
        } else {
            cu_bf16_convert_rows(be, rows, *ld, A, r, IC, IC);
            if (rx > r)
                CUDA_CHECK(cudaMemset2DAsync(rows + (size_t)r * *ld, (size_t)*ld * sizeof(__nv_bfloat16), 0,
                                             (size_t)IC * sizeof(__nv_bfloat16), rx - r, c->stream));
        }
        rec->a_src = A;
        rec->a_elems = na;
        rec->a_ok = 1;
        if (*ld != IC) rec->a_rows = rows, rec->a_ld = *ld, rec->a_r = r;
        const char *a0 = (const char *)A, *a1 = a0 + na * sizeof(float);   // the span invalidation checks
        if (!c->a_hi || a0 < c->a_lo) c->a_lo = a0;
        if (a1 > c->a_hi) c->a_hi = a1;
    }
    return base;
}

__nv_bfloat16 *cu_weight_kext(swq_backend *be, const float *w, int OC, int IC, int ld) {
    cuda_ctx *c = CTX(be);
    if (c->precision != CU_BF16 || OC <= 0 || IC <= 0 || ld <= IC || ld % 8) return NULL;
    size_t m = (size_t)OC * IC;
    struct cu_alloc_rec *rec = frozen_holding(c, w, m);
    if (!rec || rec->p != w || rec->expanded || rec->bytes != m * sizeof(float)) return NULL;
    size_t elems = (size_t)(OC + CU_EXT_ROWS_MAX) * ld;   // (room for A's rows: cu_weight_ext)
    if (rec->kx && rec->kx_ld == ld && rec->kx_elems == elems) return (__nv_bfloat16 *)rec->kx;
    if (c->capturing) return NULL;
    if (rec->kx) {   // (another ld: an adapter of another rank over the same weight)
        graphs_clear(c);
        CUDA_CHECK(cudaFree(rec->kx));   // synchronizes
        mem_add(c, mem_class(c, MEM_BF16_WEIGHTS), rec->kx_elems * sizeof(__nv_bfloat16), 0);
        rec->kx = NULL;
    }
    cudaError_t e = cudaMalloc(&rec->kx, elems * sizeof(__nv_bfloat16));
    if (e != cudaSuccess) {
        fprintf(stderr, "K-extended bf16 copy of a cached weight: cudaMalloc of %zu bytes failed: %s\n",
                elems * sizeof(__nv_bfloat16), cudaGetErrorString(e));
        exit(1);
    }
    rec->kx_elems = elems;
    rec->kx_ld = ld;
    rec->a_ok = 0;   // A's rows go here from now on
    mem_add(c, mem_class(c, MEM_BF16_WEIGHTS), elems * sizeof(__nv_bfloat16), 1);
    cu_bf16_convert_rows(be, rec->kx, ld, w, OC, IC, IC);
    return (__nv_bfloat16 *)rec->kx;
}

// cuBLAS runs a large dimension that is not a multiple of 64 (the LM head's V = 50257) 4-6x
// slower than the same GEMM one tile smaller: gemm(m, n, k, A, B, beta, C) on an aligned main
// part, then on the rest (of k: accumulated). 1 if it split. E: the operands' element type, F C's.
template <typename E, typename F, typename G>
static int gemm_split_unaligned(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const E *A, int lda,
                                const E *B, int ldb, float beta, F *C, int ldc, G gemm) {
    const cublasOperation_t N_ = CUBLAS_OP_N;
    int q;
    if (m >= 4096 && (q = m & ~63) != m) {
        gemm(q, n, k, A, B, beta, C);
        gemm(m - q, n, k, ta == N_ ? A + q : A + (size_t)q * lda, B, beta, C + q);
        return 1;
    }
    if (n >= 4096 && (q = n & ~63) != n) {
        gemm(m, q, k, A, B, beta, C);
        gemm(m, n - q, k, A, tb == N_ ? B + (size_t)q * ldb : B + q, beta, C + (size_t)q * ldc);
        return 1;
    }
    if (k >= 4096 && (q = k & ~63) != k) {
        gemm(m, n, q, A, B, beta, C);
        gemm(m, n, k - q, ta == N_ ? A + (size_t)q * lda : A + q, tb == N_ ? B + q : B + (size_t)q * ldb, 1.0f, C);
        return 1;
    }
    return 0;
}

// C (F: float, or bf16 with fp32 accumulation, rounded once) = alpha op(A) op(B) + beta C
template <typename F>
static void gemm_bf16_to(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                         const void *A, int lda, const void *B, int ldb, float beta, F *C, int ldc) {
    cuda_ctx *c = CTX(be);
    if (m <= 0 || n <= 0 || k <= 0) return;
    if (gemm_split_unaligned(ta, tb, m, n, k, (const __nv_bfloat16 *)A, lda, (const __nv_bfloat16 *)B, ldb, beta, C,
                             ldc,
                             [&](int m_, int n_, int k_, const __nv_bfloat16 *a_, const __nv_bfloat16 *b_,
                                 float beta_, F *c_) {
                                 gemm_bf16_to(be, ta, tb, m_, n_, k_, alpha, a_, lda, b_, ldb, beta_, c_, ldc);
                             }))
        return;
    const cudaDataType_t ct = sizeof(F) == 4 ? CUDA_R_32F : CUDA_R_16BF;
    if (sizeof(F) == 4) cu_bf16_invalidate(be, C, span(m, n, ldc, 0, 1) * sizeof(float));
    prof_begin(c);
    prof_mid(c);
    cu_tl_part(be, "GEMM, other");
    CUBLAS_CHECK(cublasGemmEx(c->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &beta, C,
                              ct, ldc, c->compute, CUBLAS_GEMM_DEFAULT));
    cu_tl_part(be, "outside GEMMs");
    prof_end(c, 3, 2.0 * m * n * (double)k);
}

void cu_gemm_bf16(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                  const void *A, int lda, const void *B, int ldb, float beta, float *C, int ldc) {
    gemm_bf16_to(be, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cu_gemm_bf16_out(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                      const void *A, int lda, const void *B, int ldb, __nv_bfloat16 *C, int ldc) {
    gemm_bf16_to(be, ta, tb, m, n, k, alpha, A, lda, B, ldb, 0.0f, C, ldc);
}

// CU_LT_BIAS: C (fp32) = A^T B + bias (CU_LT_BIAS_BF16: bf16); CU_LT_DGELU: D (bf16) = gelu'(aux) * (A B), aux ld m;
// CU_LT_GELU_AUX_BIAS: aux (bf16, ld m) = A^T B + bias, D (bf16) = gelu(aux).
static struct cu_lt_plan *lt_plan(cuda_ctx *c, int kind, int m, int n, int k, int lda, int ldb, int ldc) {
    for (int i = 0; i < c->n_lt; i++) {
        struct cu_lt_plan *p = &c->lt_plans[i];
        if (p->kind == kind && p->m == m && p->n == n && p->k == k && p->lda == lda && p->ldb == ldb &&
            p->ldc == ldc)
            return p;
    }
    c->lt_plans = (struct cu_lt_plan *)table_room(c->lt_plans, c->n_lt, &c->cap_lt, sizeof(*c->lt_plans),
                                                  "cuBLASLt plan table");
    struct cu_lt_plan *p = &c->lt_plans[c->n_lt++];
    memset(p, 0, sizeof(*p));
    p->kind = kind, p->m = m, p->n = n, p->k = k, p->lda = lda, p->ldb = ldb, p->ldc = ldc;
    const int dg = kind == CU_LT_DGELU;
    const cublasOperation_t ta = dg ? CUBLAS_OP_N : CUBLAS_OP_T, N = CUBLAS_OP_N;
    const int bias_only = kind == CU_LT_BIAS || kind == CU_LT_BIAS_BF16;
    const cublasLtEpilogue_t ep = bias_only ? CUBLASLT_EPILOGUE_BIAS
                                  : dg      ? CUBLASLT_EPILOGUE_DGELU
                                            : CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    // (with bf16 D cuBLASLt takes only a bf16 bias: measured, CUDA 13.0 on an H100, gemm_probe --epilogue)
    const cudaDataType_t ct = kind == CU_LT_BIAS ? CUDA_R_32F : CUDA_R_16BF, bt = ct;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &N, sizeof(N)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
    if (!dg)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
    if (!bias_only) {
        const int64_t ld_aux = m;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux,
                                                    sizeof(ld_aux)));
    }
    if (dg) CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, m, k, lda));
    else CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, k, m, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, k, n, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, ct, m, n, ldc));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &c->cublas_ws_bytes, sizeof(c->cublas_ws_bytes)));
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    if (cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &nres) ==
            CUBLAS_STATUS_SUCCESS && nres > 0) {
        p->algo = res.algo;
        p->ok = 1;
    }
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    return p;
}

// Runs plan p: D = A B (+ C, beta 1, when Cin is given) through its epilogue. 1 if done; on a
// failure (not expected: the heuristic offered the algorithm) says so once and turns the plan
// off, so the caller's other path serves that shape from then on.
static int lt_run(swq_backend *be, struct cu_lt_plan *p, const char *what, const void *A, const void *B,
                  const void *Cin, void *D, int m, int n, int k) {
    cuda_ctx *c = CTX(be);
    const float one = 1.0f, zero = 0.0f;
    prof_begin(c);
    prof_mid(c);
    cu_tl_part(be, "GEMM, other");
    cublasStatus_t st = cublasLtMatmul(c->lt, p->op, &one, A, p->la, B, p->lb, Cin ? &one : &zero, Cin ? Cin : D,
                                       p->lc, D, p->lc, &p->algo, c->cublas_ws, c->cublas_ws_bytes, c->stream);
    cu_tl_part(be, "outside GEMMs");
    prof_end(c, 3, 2.0 * m * n * (double)k);
    if (st == CUBLAS_STATUS_SUCCESS) return 1;
    fprintf(stderr, "swq cuda: cuBLASLt %s GEMM %dx%dx%d: %s; using cuBLAS and a separate pass instead\n", what, m, n,
            k, cublasGetStatusString(st));
    p->ok = 0;
    return 0;
}

int cu_gemm_bias_lt(swq_backend *be, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                    const float *bias, const float *R, float *C, int ldc) {
    cuda_ctx *c = CTX(be);
    if (c->lt_off || c->precision != CU_BF16 || m <= 0 || n <= 0 || k <= 0 || !bias || (uintptr_t)bias % 16)
        return 0;
    struct cu_lt_plan *p = lt_plan(c, CU_LT_BIAS, m, n, k, lda, ldb, ldc);
    if (!p->ok) return 0;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    cu_bf16_invalidate(be, C, span(m, n, ldc, 0, 1) * sizeof(float));
    return lt_run(be, p, "bias", A, B, R, C, m, n, k);
}

// Plan p's bias as the bf16 copy of the m floats at bias (a bf16 D takes only that); 0 where p has
// no algorithm or the copy is not 16-byte aligned.
static int lt_bias_bf16(swq_backend *be, struct cu_lt_plan *p, const float *bias, int m) {
    if (!p->ok || !(bias = (const float *)cu_bf16_copy(be, bias, m)) || (uintptr_t)bias % 16) return 0;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    return 1;
}

int cu_gemm_bias_bf16_lt(swq_backend *be, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                         const float *bias, void *D, int ldd) {
    cuda_ctx *c = CTX(be);
    if (c->lt_off || c->precision != CU_BF16 || m <= 0 || n <= 0 || k <= 0 || m % 8 || !bias || (uintptr_t)bias % 16 ||
        (uintptr_t)D % 16)
        return 0;
    struct cu_lt_plan *p = lt_plan(c, CU_LT_BIAS_BF16, m, n, k, lda, ldb, ldd);
    if (!lt_bias_bf16(be, p, bias, m)) return 0;
    return lt_run(be, p, "bias (bf16 out)", A, B, NULL, D, m, n, k);
}

int cu_gemm_dgelu_lt(swq_backend *be, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                     const void *aux, void *D, int ldd) {
    cuda_ctx *c = CTX(be);
    if (c->lt_off || c->precision != CU_BF16 || m <= 0 || n <= 0 || k <= 0 || m % 8 || (uintptr_t)aux % 16 ||
        (uintptr_t)D % 16)
        return 0;
    struct cu_lt_plan *p = lt_plan(c, CU_LT_DGELU, m, n, k, lda, ldb, ldd);
    if (!p->ok) return 0;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    return lt_run(be, p, "DGELU", A, B, NULL, D, m, n, k);
}

int cu_gemm_gelu_lt(swq_backend *be, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                    const float *bias, void *aux, void *D, int ldd) {
    cuda_ctx *c = CTX(be);
    if (c->lt_off || c->precision != CU_BF16 || m <= 0 || n <= 0 || k <= 0 || m % 8 || ldd < m || ldd % 8 || !bias ||
        (uintptr_t)bias % 16 || (uintptr_t)aux % 16 || (uintptr_t)D % 16)
        return 0;
    struct cu_lt_plan *p = lt_plan(c, CU_LT_GELU_AUX_BIAS, m, n, k, lda, ldb, ldd);
    if (!lt_bias_bf16(be, p, bias, m)) return 0;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    return lt_run(be, p, "GELU", A, B, NULL, D, m, n, k);
}

int swq_backend_cuda_flash_attention(swq_backend *be, int C, int NH) { return cu_flash_attention(be, C, NH); }

int swq_backend_cuda_wgmma(swq_backend *be, int on) {
    cuda_ctx *c = CTX(be);
    const int was = c->wgmma;
    if (on >= 0) c->wgmma = on && c->wgmma_able;
    return was;
}

int cu_flash_attention(swq_backend *be, int C, int NH) {
    return CTX(be)->precision == CU_BF16 && NH > 0 && C == 64 * NH && !CTX(be)->no_flash;
}

void cu_bf16_prefetch(swq_backend *be, const float *p, size_t n) {
    cuda_ctx *c = CTX(be);
    if (c->precision != CU_BF16 || !n) return;
    (void)bf16_of(be, p, n, NULL, 0);
}

// Elements spanned by a stored (column-major) operand of rows x cols with leading dimension
// ld, batch matrices `stride` apart.
static size_t span(int rows, int cols, int ld, long long stride, int batch) {
    return (size_t)(batch - 1) * (size_t)stride + (size_t)(cols - 1) * ld + rows;
}

static void prof_begin(cuda_ctx *c) {
    if (c->prof) CUDA_CHECK(cudaEventRecord(c->ev[0], c->stream));
}
static void prof_mid(cuda_ctx *c) {
    if (c->prof) CUDA_CHECK(cudaEventRecord(c->ev[1], c->stream));
}
static void prof_end(cuda_ctx *c, int cls, double flop) {
    if (!c->prof) return;
    CUDA_CHECK(cudaEventRecord(c->ev[2], c->stream));
    CUDA_CHECK(cudaEventSynchronize(c->ev[2]));
    float t0 = 0, t1 = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t0, c->ev[0], c->ev[1]));
    CUDA_CHECK(cudaEventElapsedTime(&t1, c->ev[1], c->ev[2]));
    c->prof_ms[0] += t0;
    c->prof_calls[0] += c->precision == CU_BF16;
    c->prof_ms[cls] += t1;
    c->prof_calls[cls]++;
    c->prof_flop[cls - 1] += flop;
}

void cu_gemm(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
             float alpha, const float *A, int lda, long long sA, const float *B, int ldb,
             long long sB, float beta, float *C, int ldc, long long sC, int batch) {
    cuda_ctx *c = CTX(be);
    if (m <= 0 || n <= 0 || batch <= 0) return;
    if (k <= 0) {
        fprintf(stderr, "%s:%d: cu_gemm with k = %d\n", __FILE__, __LINE__, k);
        exit(1);
    }
    // bf16 mode only: fp32 and tf32 keep one GEMM, as measured against the CPU reference
    if (batch == 1 && c->precision == CU_BF16 &&
        gemm_split_unaligned(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc,
                             [&](int m_, int n_, int k_, const float *a_, const float *b_, float beta_, float *c_) {
                                 cu_gemm(be, ta, tb, m_, n_, k_, alpha, a_, lda, 0, b_, ldb, 0, beta_, c_, ldc, 0, 1);
                             }))
        return;
    const void *a = A, *b = B;
    cudaDataType_t ab_type = CUDA_R_32F;
    prof_begin(c);
    int cls = batch > 1 ? 2 : (m <= 32 || n <= 32 || k <= 32) ? 1 : 3;
    static const char *const gemm_part[4] = {"", "GEMM, a dim <= 32 (LoRA, QA head)", "GEMM, strided batched",
                                             "GEMM, other"};
    if (c->precision == CU_BF16) {   // bf16 operands, fp32 accumulation and output
        cu_tl_part(be, "bf16 operand conversion");
        cu_bf16_invalidate(be, C, span(m, n, ldc, sC, batch) * sizeof(float));
            // a padded copy (batch 1 only) changes the leading dimension
        int *la = batch == 1 ? &lda : NULL, *lb = batch == 1 ? &ldb : NULL;
        int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
        a = bf16_of(be, A, span(ra, ta == CUBLAS_OP_N ? k : m, lda, sA, batch), la, ra);
        b = bf16_of(be, B, span(rb, tb == CUBLAS_OP_N ? n : k, ldb, sB, batch), lb, rb);
        ab_type = CUDA_R_16BF;
    }
    prof_mid(c);
    cu_tl_part(be, gemm_part[cls]);
    // tf32: the adapter's forward products (a dimension <= 32, inside lora_linear_fwd) in full fp32:
    // the tf32 error of u = inp A^T alone reached the 3e-4 bound on one H100 (3.03e-4), and in
    // fp32 it is ~1e-6. The backward's stay tf32 (within bounds; fp32 for all of them cost 8% of a
    // tf32 step at B=2 T=384)
    cublasComputeType_t ct =
        cls == 1 && c->skinny_fp32 && c->compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? CUBLAS_COMPUTE_32F : c->compute;
    if (batch == 1)
        CUBLAS_CHECK(cublasGemmEx(c->cublas, ta, tb, m, n, k, &alpha, a, ab_type, lda, b, ab_type, ldb, &beta, C,
                                  CUDA_R_32F, ldc, ct, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(c->cublas, ta, tb, m, n, k, &alpha, a, ab_type, lda, sA, b, ab_type,
                                                ldb, sB, &beta, C, CUDA_R_32F, ldc, sC, batch, c->compute,
                                                CUBLAS_GEMM_DEFAULT));
    cu_tl_part(be, "outside GEMMs");
    prof_end(c, cls, 2.0 * m * n * (double)k * batch);
}

void cu_gemm_bh(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                const float *A, int lda, long long sbA, long long shA, const float *B, int ldb, long long sbB,
                long long shB, float beta, float *C, int ldc, long long sbC, long long shC, int nb, int nh) {
    cuda_ctx *c = CTX(be);
    int cnt = nb * nh;
    if (m <= 0 || n <= 0 || cnt <= 0) return;
    if (k <= 0) {
        fprintf(stderr, "%s:%d: cu_gemm_bh with k = %d\n", __FILE__, __LINE__, k);
        exit(1);
    }
    const void *a = A, *b = B;
    cudaDataType_t ab_type = CUDA_R_32F;
    size_t es = sizeof(float);
    prof_begin(c);
    cu_tl_part(be, "bf16 operand conversion");
    if (c->precision == CU_BF16) {
        size_t sc = (size_t)(nb - 1) * sbC + (size_t)(nh - 1) * shC + span(m, n, ldc, 0, 1);
        cu_bf16_invalidate(be, C, sc * sizeof(float));
            size_t sa = (size_t)(nb - 1) * sbA + (size_t)(nh - 1) * shA +
                    span(ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, 0, 1);
        size_t sb = (size_t)(nb - 1) * sbB + (size_t)(nh - 1) * shB +
                    span(tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, 0, 1);
        a = bf16_of(be, A, sa, NULL, 0);
        b = bf16_of(be, B, sb, NULL, 0);
        ab_type = CUDA_R_16BF;
        es = sizeof(__nv_bfloat16);
    }
    cu_scratch(be, (void **)&c->ptrs, &c->ptrs_cap, (size_t)3 * cnt * sizeof(void *), "batched GEMM pointer arrays");
    bh_ptrs_kernel<<<(cnt + 255) / 256, 256, 0, c->stream>>>(c->ptrs, (const char *)a, (const char *)b, (char *)C,
                                                              sbA * (long long)es, shA * (long long)es,
                                                              sbB * (long long)es, shB * (long long)es,
                                                              sbC * (long long)sizeof(float),
                                                              shC * (long long)sizeof(float), nb, nh);
    CUDA_LAUNCH_CHECK();
    prof_mid(c);
    cu_tl_part(be, "GEMM, attention (B*NH batched)");
    CUBLAS_CHECK(cublasGemmBatchedEx(c->cublas, ta, tb, m, n, k, &alpha, (const void *const *)c->ptrs, ab_type, lda,
                                     (const void *const *)(c->ptrs + cnt), ab_type, ldb, &beta, c->ptrs + 2 * cnt,
                                     CUDA_R_32F, ldc, cnt, c->compute, CUBLAS_GEMM_DEFAULT));
    cu_tl_part(be, "outside GEMMs");
    prof_end(c, 2, 2.0 * m * n * (double)k * cnt);
}

// The switchable linear's kind, from its shape (GPT-2: qkv 3C, proj C, fc 4C, fcproj C/4).
static void lin_mark(swq_backend *be, int IC, int OC, int fwd) {
    op_begin(be);
    if (!CTX(be)->tl) return;
    const char *k;
    if (OC == 3 * IC) k = fwd ? "lora_linear_fwd qkv" : "lora_linear_bwd qkv";
    else if (OC == IC) k = fwd ? "lora_linear_fwd attn proj" : "lora_linear_bwd attn proj";
    else if (OC == 4 * IC) k = fwd ? "lora_linear_fwd mlp in" : "lora_linear_bwd mlp in";
    else if (IC == 4 * OC) k = fwd ? "lora_linear_fwd mlp out" : "lora_linear_bwd mlp out";
    else {
        cu_tl_op(be, fwd ? "head: forward" : "head: backward", fwd ? "lora_linear_fwd head" : "lora_linear_bwd head");
        return;
    }
    cu_tl_op(be, fwd ? "forward: body" : "backward: body", k);
}

// ---- the op table: every op first drops the bf16 copies its outputs overlap, and gets the floats
// back of inputs its kernels read as floats that exist only as bf16 copies (IN) ----
#define INV(p, bytes) cu_bf16_invalidate(be, (p), (bytes))
#define IN(p, bytes) cu_sole_in(be, (p), (bytes))
#define F4 sizeof(float)
static void w_add(swq_backend *be, void *out, const void *a, const void *b, size_t n) {
    TL("forward: body", "add (residual)");
    IN(a, n * F4);
    IN(b, n * F4);
    INV(out, n * F4);
    cu_add(be, out, a, b, n);
}
static void w_accumulate(swq_backend *be, void *dst, const void *src, size_t n) {
    TL("CDT teacher sums", "accumulate");
    IN(src, n * F4);
    IN(dst, n * F4);
    INV(dst, n * F4);
    cu_accumulate(be, dst, src, n);
}
static void w_scale(swq_backend *be, void *x, double s, size_t n) {
    TL("optimizer", "scale");
    IN(x, n * F4);
    INV(x, n * F4);
    cu_scale(be, x, s, n);
}
static void w_sumsq(swq_backend *be, double *acc, const void *x, size_t n) {
    TL("optimizer", "sumsq (grad norm)");
    IN(x, n * F4);
    INV(acc, sizeof(double));
    cu_sumsq(be, acc, x, n);
}
static void w_encoder_fwd(swq_backend *be, void *out, const int *tok, const void *wte, const void *wpe, int B, int T,
                          int C) {
    TL("forward: body", "encoder_fwd");
    INV(out, (size_t)B * T * C * F4);
    cu_encoder_fwd(be, out, tok, wte, wpe, B, T, C);
}
static void w_encoder_bwd(swq_backend *be, void *dwte, void *dwpe, const void *dout, const int *tok, int B, int T,
                          int C) {
    TL("backward: body", "encoder_bwd");
    IN(dout, (size_t)B * T * C * F4);
    INV(dwte, 0);
    INV(dwpe, (size_t)T * C * F4);
    cu_encoder_bwd(be, dwte, dwpe, dout, tok, B, T, C);
}
static void w_layernorm_fwd(swq_backend *be, void *out, void *mean, void *rstd, const void *inp, const void *w,
                            const void *b, int N, int C) {
    TL("forward: body", "layernorm_fwd");
    IN(inp, (size_t)N * C * F4);
    INV(out, (size_t)N * C * F4);
    INV(mean, (size_t)N * F4);
    INV(rstd, (size_t)N * F4);
    cu_layernorm_fwd(be, out, mean, rstd, inp, w, b, N, C);
}
static void w_layernorm_bwd(swq_backend *be, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                            const void *w, const void *mean, const void *rstd, int N, int C) {
    TL("backward: body", "layernorm_bwd");
    IN(dout, (size_t)N * C * F4);
    IN(inp, (size_t)N * C * F4);
    IN(dinp, (size_t)N * C * F4);
    INV(dinp, (size_t)N * C * F4);
    INV(dw, (size_t)C * F4);
    INV(db, (size_t)C * F4);
    cu_layernorm_bwd(be, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
static void w_quantize_rows(swq_backend *be, void *out, const void *in, int rows, int cols, int bits) {
    TL("forward: body", "quantize_rows");
    IN(in, (size_t)rows * cols * F4);
    INV(out, (size_t)rows * cols * F4);
    cu_quantize_rows(be, out, in, rows, cols, bits);
}
static void w_quantize_rows_codes(swq_backend *be, void *codes, void *scales, const void *in, int rows, int cols,
                                  int bits) {
    TL("forward: body", "quantize_rows_codes");
    IN(in, (size_t)rows * cols * F4);
    INV(scales, (size_t)rows * F4);
    cu_quantize_rows_codes(be, codes, scales, in, rows, cols, bits);
}
static void w_dequantize_rows(swq_backend *be, void *out, const void *codes, const void *scales, int rows, int cols,
                              int bits) {
    TL("forward: body", "dequantize_rows");
    if (CTX(be)->precision == CU_BF16 && !CTX(be)->weight_copies && rows > 0 && cols > 0) {
        cu_expand_bf16(be, out, codes, scales, rows, cols, bits);
        return;
    }
    INV(out, (size_t)rows * cols * F4);
    cu_dequantize_rows(be, out, codes, scales, rows, cols, bits);
}
static void w_matmul_fwd(swq_backend *be, void *out, const void *inp, const void *w, const void *bias, int N, int IC,
                         int OC, double scale, int accumulate) {
    TL("head: forward", "matmul_fwd");
    if (accumulate) IN(out, (size_t)N * OC * F4);
    INV(out, (size_t)N * OC * F4);
    cu_matmul_fwd(be, out, inp, w, bias, N, IC, OC, scale, accumulate);
}
static void w_matmul_bwd(swq_backend *be, void *dinp, void *dw, void *dbias, const void *dout, const void *inp,
                         const void *w, int N, int IC, int OC, double scale) {
    int dinp_zero = dinp && N > 0 && IC > 0 && OC > 0 && zero_take(be, dinp, (size_t)N * IC * F4);
    TL("head: backward", "matmul_bwd");
    IN(dinp, (size_t)N * IC * F4);
    INV(dinp, (size_t)N * IC * F4);
    INV(dw, (size_t)OC * IC * F4);
    INV(dbias, (size_t)OC * F4);
    cu_matmul_bwd(be, dinp, dw, dbias, dout, inp, w, N, IC, OC, scale, dinp_zero);
}
// act: lora_linear_gelu_fwd's GELU output, res: lora_linear_res_fwd's residual (NULL for lora_linear_fwd)
static void lora_fwd(swq_backend *be, void *out, void *act, void *u, const void *inp, const void *w, const void *bias,
                     const void *A, const void *Bm, int N, int IC, int OC, int r, double s, const void *res) {
    cuda_ctx *c = CTX(be);
    if (c->lnp.out && c->lnp.out == (const float *)inp) {   // the layernorm of its input, left pending: kext_input's
        c->ln_take = c->lnp;
        c->lnp.out = NULL;
    }
    cu_zero_flush(be);
    lin_mark(be, IC, OC, 1);
    IN(res, (size_t)N * OC * F4);
    INV(out, (size_t)N * OC * F4);
    INV(act, (size_t)N * OC * F4);
    INV(u, (size_t)N * r * F4);
    CTX(be)->skinny_fp32 = 1;
    cu_lora_linear_fwd(be, out, act, u, inp, w, bias, A, Bm, N, IC, OC, r, s, res);
    CTX(be)->skinny_fp32 = 0;
    cu_ln_take_flush(be);   // (every path reading inp took or issued it before)
}
static void w_lora_linear_fwd(swq_backend *be, void *out, void *u, const void *inp, const void *w, const void *bias,
                              const void *A, const void *Bm, int N, int IC, int OC, int r, double s) {
    lora_fwd(be, out, NULL, u, inp, w, bias, A, Bm, N, IC, OC, r, s, NULL);
}
static void w_lora_linear_res_fwd(swq_backend *be, void *out, const void *res, void *u, const void *inp, const void *w,
                                  const void *bias, const void *A, const void *Bm, int N, int IC, int OC, int r,
                                  double s) {
    lora_fwd(be, out, NULL, u, inp, w, bias, A, Bm, N, IC, OC, r, s, res);
}
static void w_lora_linear_gelu_fwd(swq_backend *be, void *out, void *act, void *u, const void *inp, const void *w,
                                   const void *bias, const void *A, const void *Bm, int N, int IC, int OC, int r,
                                   double s) {
    lora_fwd(be, out, act, u, inp, w, bias, A, Bm, N, IC, OC, r, s, NULL);
}
// A LoRA linear's backward starts: its outputs' copies dropped (dinp's floats back first where it adds to them)
static void lora_bwd_begin(swq_backend *be, void *dinp, int adds, void *dw, void *dbias, void *dA, void *dB, void *du,
                           int N, int IC, int OC, int r) {
    lin_mark(be, IC, OC, 0);
    if (adds) IN(dinp, (size_t)N * IC * F4);
    INV(dinp, (size_t)N * IC * F4);
    INV(dw, (size_t)OC * IC * F4);
    INV(dbias, (size_t)OC * F4);
    INV(dA, (size_t)r * IC * F4);
    INV(dB, (size_t)OC * r * F4);
    INV(du, (size_t)N * r * F4);
}
static void w_lora_linear_bwd(swq_backend *be, void *dinp, void *dw, void *dbias, void *dA, void *dB, void *du,
                              const void *dout, const void *inp, const void *u, const void *w, const void *A,
                              const void *Bm, int N, int IC, int OC, int r, double s) {
    int dinp_zero = dinp && N > 0 && IC > 0 && OC > 0 && zero_take(be, dinp, (size_t)N * IC * F4);
    lora_bwd_begin(be, dinp, 1, dw, dbias, dA, dB, du, N, IC, OC, r);
    cu_lora_linear_bwd(be, dinp, dw, dbias, dA, dB, du, dout, inp, u, w, A, Bm, N, IC, OC, r, s, dinp_zero);
}
static void w_lora_linear_bwd_gelu(swq_backend *be, void *dpre, void *scratch, const void *pre, void *dw,
                                   void *dbias, void *dA, void *dB, void *du, const void *dout, const void *inp,
                                   const void *u, const void *w, const void *A, const void *Bm, int N, int IC, int OC,
                                   int r, double s) {
    cu_zero_flush(be);
    lora_bwd_begin(be, dpre, 0, dw, dbias, dA, dB, du, N, IC, OC, r);
    INV(scratch, (size_t)N * IC * F4);
    cu_lora_linear_bwd_gelu(be, dpre, scratch, pre, dw, dbias, dA, dB, du, dout, inp, u, w, A, Bm, N, IC, OC, r, s);
}
static size_t w_attention_buffer_elems(swq_backend *be, int B, int T, int C, int NH) {
    return (size_t)B * NH * T * (cu_flash_attention(be, C, NH) ? 1 : (size_t)T);   // flash: log-sum-exps
}
static void w_attention_fwd(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH) {
    TL("forward: body", "attention_fwd");
    if (!cu_flash_attention(be, C, NH)) IN(qkv, (size_t)B * T * 3 * C * F4);
    INV(out, (size_t)B * T * C * F4);
    INV(att, w_attention_buffer_elems(be, B, T, C, NH) * F4);
    cu_attention_fwd(be, out, att, qkv, B, T, C, NH);
}
static void w_attention_bwd(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv, const void *out,
                            const void *att, int B, int T, int C, int NH) {
    TL("backward: body", "attention_bwd");
    const int flash = cu_flash_attention(be, C, NH);   // (it reads qkv's and out's bf16 copies)
    if (!flash) IN(qkv, (size_t)B * T * 3 * C * F4);
    IN(dout, (size_t)B * T * C * F4);
    if (!flash) IN(out, (size_t)B * T * C * F4);
    INV(dqkv, (size_t)B * T * 3 * C * F4);
    INV(scratch, w_attention_buffer_elems(be, B, T, C, NH) * F4);
    cu_attention_bwd(be, dqkv, scratch, dout, qkv, out, att, B, T, C, NH);
}
static void w_gelu_fwd(swq_backend *be, void *out, const void *inp, size_t n) {
    TL("forward: body", "gelu_fwd");
    IN(inp, n * F4);
    INV(out, n * F4);
    cu_gelu_fwd(be, out, inp, n);
}
static void w_gelu_bwd(swq_backend *be, void *dinp, const void *inp, const void *dout, size_t n) {
    int fresh = n && zero_take(be, dinp, n * F4);
    TL("backward: body", "gelu_bwd");
    IN(inp, n * F4);
    IN(dout, n * F4);
    if (!fresh) IN(dinp, n * F4);
    INV(dinp, n * F4);
    cu_gelu_bwd(be, dinp, inp, dout, n, fresh);
}
static void w_gather_rows(swq_backend *be, void *out, const void *in, const int *idx, int P, int C) {
    TL("head: forward", "gather_rows");
    IN(in, 0);
    INV(out, (size_t)P * C * F4);
    cu_gather_rows(be, out, in, idx, P, C);
}
static void w_scatter_add_rows(swq_backend *be, void *dst, const void *src, const int *idx, int P, int C) {
    TL("head: backward", "scatter_add_rows");
    IN(src, (size_t)P * C * F4);
    IN(dst, 0);
    INV(dst, 0);
    cu_scatter_add_rows(be, dst, src, idx, P, C);
}
static void w_get_column(swq_backend *be, void *out, const void *in, int N, int K, int c) {
    TL("head: forward", "get_column");
    IN(in, (size_t)N * K * F4);
    INV(out, (size_t)N * F4);
    cu_get_column(be, out, in, N, K, c);
}
static void w_add_to_column(swq_backend *be, void *dst, const void *src, int N, int K, int c) {
    TL("head: backward", "add_to_column");
    IN(src, (size_t)N * F4);
    IN(dst, (size_t)N * K * F4);
    INV(dst, (size_t)N * K * F4);
    cu_add_to_column(be, dst, src, N, K, c);
}
static void w_xent_kl(swq_backend *be, void *logits, const int *target, const int *len, const void *tS,
                      const void *tH, int n_teachers, double beta, void *nS, void *nH, double *acc, double weight,
                      double grad_scale, int grad, int P, int V) {
    TL("head: xent_kl", "xent_kl");
    // logits left in the padded GEMM output (cu_lazy): read there, unless the gradient is to
    // replace them (grad 1)
    const cuda_ctx *c = CTX(be);
    const void *zin = NULL;
    int ldz = V;
    if (c->lazy.out == logits && c->lazy.rows == P && c->lazy.cols == V && grad != 1) {
        zin = c->lazy.o;
        ldz = c->lazy.ldo;
    } else {
        IN(logits, (size_t)P * V * F4);
    }
    // the first teacher rows into just-zeroed sums (the CDT step's first config): a pending zero
    // of exactly them is taken over, not issued (their 0.8 GB not written and read back at B=8 T=512)
    const int nzero = nS && !tS && zero_lazy_take(CTX(be), nS, (size_t)P * V * F4);
    // bf16 logits: the teacher sums through their fp16 copy where they can (their floats then
    // neither read nor invalidated)
    const int thalf = cu_xent_teacher_half(be, zin && !c->lazy.f32, tS, nS, nzero, P, V);
    if (tS && !thalf) IN(tS, (size_t)P * V * F4);
    if (tH) IN(tH, (size_t)P * F4);
    if (grad || !zin) INV(logits, (size_t)P * V * F4);   // (grad 0 keeps a pending lazy output pending)
    if (!thalf) INV(nS, (size_t)P * V * F4);
    INV(nH, (size_t)P * F4);
    INV(acc, 2 * sizeof(double));
    cu_xent_kl(be, logits, zin, c->lazy.f32, ldz, target, len, tS, tH, n_teachers, beta, nS, nH, nzero, thalf, acc, weight, grad_scale, grad, P,
               V);
}
static void w_argmax_rows(swq_backend *be, int *out_host, const void *logits, int P, int V) {
    op_begin(be);
    cu_zero_flush(be);
    IN(logits, (size_t)P * V * F4);
    cu_argmax_rows(be, out_host, logits, P, V);
}
static void w_adamw(swq_backend *be, void *param, const void *grad, void *m, void *v, size_t n, double lr, double b1,
                    double b2, double eps, double wd, int t, double grad_scale) {
    TL("optimizer", "adamw");
    INV(param, n * F4);
    INV(m, n * F4);
    INV(v, n * F4);
    cu_adamw(be, param, grad, m, v, n, lr, b1, b2, eps, wd, t, grad_scale);
}
#undef INV
#undef F4

// ---- construction ----
// An optional environment switch that is 64 or 128; unset, 0 (chosen per launch: flash_block).
static int env_64_or_128(const char *name, int *v, char *err, size_t errlen) {
    const char *e = getenv(name);
    *v = 0;
    if (!e || !*e) return 1;
    if (!strcmp(e, "64") || !strcmp(e, "128")) {
        *v = atoi(e);
        return 1;
    }
    snprintf(err, errlen, "%s = \"%s\": expected 64 or 128", name, e);
    return 0;
}

static PFN_cuTensorMapEncodeTiled_v12000 tmap_encode;

int cu_tmap_bf16(CUtensorMap *m, const void *p, unsigned long long inner, unsigned long long outer,
                 unsigned long long ld, unsigned box_inner, unsigned box_outer) {
    if (!tmap_encode || (uintptr_t)p % 16 || (ld * 2) % 16) return 0;
    cuuint64_t dims[2] = {inner, outer}, strides[1] = {ld * 2};
    cuuint32_t box[2] = {box_inner, box_outer}, es[2] = {1, 1};
    return tmap_encode(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)p, dims, strides, box, es,
                       CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                       CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

swq_backend *swq_backend_cuda(int device_ordinal, const char *precision, char *err, size_t errlen) {
    int prec, flash_rows, flash_keys;
    if (!env_64_or_128("SWQ_CUDA_FLASH_ROWS", &flash_rows, err, errlen) ||
        !env_64_or_128("SWQ_CUDA_FLASH_KEYS", &flash_keys, err, errlen))
        return NULL;
    if (!precision || !strcmp(precision, "fp32")) prec = CU_FP32;
    else if (!strcmp(precision, "tf32")) prec = CU_TF32;
    else if (!strcmp(precision, "bf16")) prec = CU_BF16;
    else {
        snprintf(err, errlen, "run.precision = \"%s\": expected \"fp32\", \"tf32\" or \"bf16\"", precision);
        return NULL;
    }
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        (void)cudaGetLastError();   // clear the sticky "no device" error
        if (e != cudaSuccess)
            snprintf(err, errlen, "run.device = cuda: no CUDA device found (cudaGetDeviceCount: %s)",
                     cudaGetErrorString(e));
        else
            snprintf(err, errlen, "run.device = cuda: no CUDA device found");
        return NULL;
    }
    if (device_ordinal < 0 || device_ordinal >= ndev) {
        snprintf(err, errlen, "run.device = cuda: device %d does not exist (%d found)", device_ordinal, ndev);
        return NULL;
    }
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device_ordinal));
    if (prop.major < 8) {
        snprintf(err, errlen, "run.device = cuda: device %d (%s) has compute capability %d.%d, need >= 8.0",
                 device_ordinal, prop.name, prop.major, prop.minor);
        return NULL;
    }
    CUDA_CHECK(cudaSetDevice(device_ordinal));

    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof(cuda_ctx));
    swq_backend *be = (swq_backend *)calloc(1, sizeof(swq_backend));
    if (!c || !be) {
        free(c);
        free(be);
        snprintf(err, errlen, "cuda backend: out of host memory");
        return NULL;
    }
    c->device = device_ordinal;
    c->precision = prec;
    c->sm_count = prop.multiProcessorCount;
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    {   // bf16 operand copies: stream-ordered allocations from a pool that keeps its memory
        size_t fb = 0, tb = 0;
        CUDA_CHECK(cudaMemGetInfo(&fb, &tb));
        c->bfc_limit = tb / 8 < ((size_t)4 << 30) ? tb / 8 : ((size_t)4 << 30);
        const char *lim = getenv("SWQ_CUDA_BF16_CACHE_MB");
        if (lim && *lim) c->bfc_limit = (size_t)strtoull(lim, NULL, 10) << 20;
        cudaMemPool_t pool;
        CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_ordinal));
        uint64_t thr = UINT64_MAX;
        CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &thr));
    }
    CUBLAS_CHECK(cublasCreate(&c->cublas));
    CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
    {   // 32 MiB, as cuBLAS recommends for Hopper
        size_t ws = (size_t)32 << 20;
        cudaError_t we = cudaMalloc(&c->cublas_ws, ws);
        if (we != cudaSuccess) {
            fprintf(stderr, "cuBLAS workspace: cudaMalloc of %zu bytes failed: %s\n", ws, cudaGetErrorString(we));
            exit(1);
        }
        mem_add(c, mem_class(c, "cuBLAS workspace"), ws, 1);
        CUBLAS_CHECK(cublasSetWorkspace(c->cublas, c->cublas_ws, ws));
        c->cublas_ws_bytes = ws;
    }
    CUBLAS_CHECK(cublasLtCreate(&c->lt));
    const char *lte = getenv("SWQ_CUDA_LT");
    c->lt_off = lte && *lte && !strcmp(lte, "0");
    // The compute type alone picks fp32 / tf32 / bf16 tensor-core math.
    CUBLAS_CHECK(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
    // bf16 mode converts the operands itself (FAST_16BF on fp32 operands was seen to give
    // tf32-level errors on an H100, i.e. not bf16 math).
    c->compute = prec == CU_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const char *lh = getenv("SWQ_CUDA_LAZY_HEAD");
    c->lazy_head = !(lh && *lh && !strcmp(lh, "0"));   // measured 4.2 ms off 83.3 a pretraining step (docs/PERF.md)
    const char *bk = getenv("SWQ_CUDA_BODY_KEXT");
    c->body_kext = !(bk && *bk && !strcmp(bk, "0"));
    const char *tf = getenv("SWQ_CUDA_TEACHER_F32");
    c->teacher_f32 = tf && *tf && strcmp(tf, "0");
    const char *hf = getenv("SWQ_CUDA_HEAD_F32");
    c->head_f32 = hf && *hf && strcmp(hf, "0");
    const char *fl = getenv("SWQ_CUDA_FLASH");
    c->no_flash = fl && *fl && !strcmp(fl, "0");
    c->flash_rows = flash_rows;
    c->flash_keys = flash_keys;
    const char *wg = getenv("SWQ_CUDA_WGMMA");
    if (!(wg && *wg && !strcmp(wg, "0")) && prop.major == 9 && prop.minor == 0 && cu_wgmma_compiled()) {
        cudaDriverEntryPointQueryResult q;
        void *fn = NULL;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) ==
                cudaSuccess && q == cudaDriverEntryPointSuccess && fn) {
            tmap_encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
            c->wgmma = c->wgmma_able = 1;
        } else
            (void)cudaGetLastError();
    }
    const char *lm = getenv("SWQ_CUDA_LORA_MERGE");
    c->lora_merge = lm && *lm && strcmp(lm, "0");   // opt-in: measured no faster (docs/PERF.md)
    const char *so = getenv("SWQ_CUDA_SOLE");
    c->sole_off = so && *so && !strcmp(so, "0");
    const char *wc = getenv("SWQ_CUDA_WEIGHT_COPIES");
    c->weight_copies = !(wc && *wc && !strcmp(wc, "0"));
    const char *lg = getenv("SWQ_CUDA_LORA_GRADS");
    c->lora_grads_off = lg && *lg && !strcmp(lg, "0");
    const char *ff = getenv("SWQ_CUDA_F32_FUSE");
    c->f32_fuse = !(ff && *ff && !strcmp(ff, "0"));
    const char *dg = getenv("SWQ_CUDA_DOUT_GRADS_OC");
    c->dout_grads_oc = dg && *dg ? atoi(dg) : 2304;   // qkv, the MLP's first linear, the LM head (docs/PERF.md, stop 21)
    const char *lf = getenv("SWQ_CUDA_LN_FUSE");
    c->ln_fuse = !(lf && *lf && !strcmp(lf, "0"));
    const char *pe = getenv("SWQ_CUDA_PROFILE");
    c->prof = pe && *pe && strcmp(pe, "0");
    if (c->prof)
        for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventCreate(&c->ev[i]));
    const char *tle = getenv("SWQ_CUDA_TIMELINE");
    c->tl = tle && *tle && strcmp(tle, "0") && strcmp(tle, "host");
    c->ht = tle && *tle && strcmp(tle, "0");
    const char *ge = getenv("SWQ_CUDA_GRAPHS");
    c->graphs_on = !(ge && *ge && !strcmp(ge, "0")) && !c->prof && !c->ht;   // timing needs every op issued
    if (c->tl) {
        c->tl_cap = 1 << 16;
        c->tl_m = (struct cu_tl_mark *)calloc((size_t)c->tl_cap, sizeof(*c->tl_m));
        if (!c->tl_m) {
            fprintf(stderr, "cuda backend: out of host memory (timeline)\n");
            exit(1);
        }
        for (int i = 0; i < c->tl_cap; i++) CUDA_CHECK(cudaEventCreate(&c->tl_m[i].ev));
    }

    be->name = CUDA_NAME;
    be->real_size = sizeof(float);
    be->ctx = c;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->upload = cu_upload;
    be->download = cu_download;
    be->upload_i32 = cu_upload_i32;
    be->download_f64 = cu_download_f64;
    be->zero = cu_zero;
    be->copy = cu_copy;
    be->synchronize = cu_synchronize;
    be->destroy = swq_backend_cuda_destroy;
    be->graph_begin = cu_graph_begin;
    be->graph_end = cu_graph_end;
    be->add = w_add;
    be->accumulate = w_accumulate;
    be->scale = w_scale;
    be->sumsq = w_sumsq;
    be->encoder_fwd = w_encoder_fwd;
    be->encoder_bwd = w_encoder_bwd;
    be->layernorm_fwd = w_layernorm_fwd;
    be->layernorm_bwd = w_layernorm_bwd;
    be->quantize_rows = w_quantize_rows;
    be->quantize_rows_codes = w_quantize_rows_codes;
    be->dequantize_rows = w_dequantize_rows;
    be->keeps_weight_copies = prec == CU_BF16 && c->weight_copies;
    be->matmul_fwd = w_matmul_fwd;
    be->matmul_bwd = w_matmul_bwd;
    be->lora_linear_fwd = w_lora_linear_fwd;
    be->lora_linear_gelu_fwd = w_lora_linear_gelu_fwd;
    be->lora_linear_bwd_gelu = w_lora_linear_bwd_gelu;
    be->lora_linear_res_fwd = w_lora_linear_res_fwd;
    be->lora_linear_bwd = w_lora_linear_bwd;
    be->attention_fwd = w_attention_fwd;
    be->attention_bwd = w_attention_bwd;
    be->attention_buffer_elems = w_attention_buffer_elems;
    be->gelu_fwd = w_gelu_fwd;
    be->gelu_bwd = w_gelu_bwd;
    be->gather_rows = w_gather_rows;
    be->scatter_add_rows = w_scatter_add_rows;
    be->get_column = w_get_column;
    be->add_to_column = w_add_to_column;
    be->xent_kl = w_xent_kl;
    be->argmax_rows = w_argmax_rows;
    be->adamw = w_adamw;
    return be;
}

int swq_backend_is_cuda(const swq_backend *be) { return be && be->name == CUDA_NAME; }

void *swq_backend_cuda_stream(swq_backend *be) {
    zeros_out(be);   // the caller queues its own work (NCCL) after everything issued so far
    return (void *)CTX(be)->stream;
}

void swq_backend_cuda_mem(swq_backend *be, size_t *cur, size_t *peak) {
    if (cur) *cur = CTX(be)->mem_cur;
    if (peak) *peak = CTX(be)->mem_peak;
}

int swq_backend_cuda_mem_at_peak(swq_backend *be, const char **names, size_t *bytes, int max) {
    const struct cu_mem *m = &CTX(be)->mem;
    int n = 0;
    for (int i = 0; i < m->n && n < max; i++)
        if (m->at_peak[i]) {
            names[n] = m->name[i];
            bytes[n++] = m->at_peak[i];
        }
    return n;
}

void swq_backend_cuda_graph_stats(swq_backend *be, long *captures, long *replays) {
    if (captures) *captures = CTX(be)->n_graph_captures;
    if (replays) *replays = CTX(be)->n_graph_replays;
}

void swq_backend_cuda_device_name(swq_backend *be, char *buf, size_t n) {
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, CTX(be)->device));
    snprintf(buf, n, "%s", prop.name);
}

double swq_backend_cuda_gemm_tflops(swq_backend *be, int n, int reps) {
    cuda_ctx *c = CTX(be);
    size_t bytes = (size_t)n * n * sizeof(__nv_bfloat16);
    void *a = NULL, *b = NULL, *d = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
        cudaMalloc(&d, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        if (a) CUDA_CHECK(cudaFree(a));
        if (b) CUDA_CHECK(cudaFree(b));
        return -1;
    }
    // random-ish operands (zeros run faster than real data)
    float *tmp = NULL;
    CUDA_CHECK(cudaMalloc(&tmp, (size_t)n * n * sizeof(float)));
    size_t nn = (size_t)n * n;
    float *h = (float *)malloc(4096 * sizeof(float));
    if (!h) exit(1);
    for (int i = 0; i < 4096; i++) h[i] = (float)((i * 2654435761u % 2001) / 1000.0 - 1.0);
    for (size_t o = 0; o < nn; o += 4096)
        CUDA_CHECK(cudaMemcpyAsync(tmp + o, h, (nn - o < 4096 ? nn - o : 4096) * sizeof(float),
                                   cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    free(h);
    float_to_bf16_kernel<<<grid_for(nn, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)a, tmp, nn);
    CUDA_LAUNCH_CHECK();
    float_to_bf16_kernel<<<grid_for(nn, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)b, tmp, nn);
    CUDA_LAUNCH_CHECK();
    float one = 1.0f, zero = 0.0f;
    double ms = cu_time_ms(c->stream, 2, reps, [&] {
        CUBLAS_CHECK(cublasGemmEx(c->cublas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b,
                                  CUDA_R_16BF, n, &zero, d, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
    CUDA_CHECK(cudaFree(tmp));
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    CUDA_CHECK(cudaFree(d));
    return 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12;
}

double swq_backend_cuda_copy_gbs(swq_backend *be, size_t bytes, int reps) {
    cuda_ctx *c = CTX(be);
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        if (a) CUDA_CHECK(cudaFree(a));
        return -1;
    }
    CUDA_CHECK(cudaMemsetAsync(a, 1, bytes, c->stream));
    double ms = cu_time_ms(c->stream, 1, reps,
                           [&] { CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream)); });
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

void swq_backend_cuda_destroy(swq_backend *be) {
    if (!be) return;
    cuda_ctx *c = CTX(be);
    if (c) {
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        if (c->prof) {
            const char *nm[4] = {"bf16 operand conversion", "GEMM with a dim <= 32 (LoRA, QA head)",
                                 "batched GEMM (attention)", "other GEMM"};
            for (int i = 0; i < 4; i++) {
                fprintf(stderr, "swq cuda profile: %-40s %9.2f ms in %7ld calls", nm[i], c->prof_ms[i], c->prof_calls[i]);
                if (i && c->prof_ms[i] > 0)
                    fprintf(stderr, ", %.1f TFLOP/s", c->prof_flop[i - 1] / (c->prof_ms[i] * 1e-3) / 1e12);
                fprintf(stderr, "\n");
            }
            for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventDestroy(c->ev[i]));
        }
        if (c->tl) {
            for (int i = 0; i < c->tl_cap; i++) CUDA_CHECK(cudaEventDestroy(c->tl_m[i].ev));
            free(c->tl_m);
            free(c->tl_s);
        }
        for (int i = 0; i < c->n_frozen; i++) {
            if (c->frozen[i].bf16) CUDA_CHECK(cudaFree(c->frozen[i].bf16));
            if (c->frozen[i].kx) CUDA_CHECK(cudaFree(c->frozen[i].kx));
        }
        free(c->allocs);
        free(c->frozen);
        if (c->argmax_dev) CUDA_CHECK(cudaFree(c->argmax_dev));
        graphs_clear(c);
        while (c->n_bfc) bfc_release(c, c->n_bfc - 1);
        if (c->cublas_ws) CUDA_CHECK(cudaFree(c->cublas_ws));
        free(c->bfc);
        if (c->ptrs) CUDA_CHECK(cudaFree(c->ptrs));
        if (c->lw) CUDA_CHECK(cudaFree(c->lw));
        if (c->pad) CUDA_CHECK(cudaFree(c->pad));
        if (c->kext_x) CUDA_CHECK(cudaFree(c->kext_x));
        if (c->kext_w) CUDA_CHECK(cudaFree(c->kext_w));
        if (c->th) CUDA_CHECK(cudaFree(c->th));
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        for (int i = 0; i < c->n_lt; i++) {
            CUBLAS_CHECK(cublasLtMatmulDescDestroy(c->lt_plans[i].op));
            CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(c->lt_plans[i].la));
            CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(c->lt_plans[i].lb));
            CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(c->lt_plans[i].lc));
        }
        free(c->lt_plans);
        CUBLAS_CHECK(cublasLtDestroy(c->lt));
        CUBLAS_CHECK(cublasDestroy(c->cublas));
        CUDA_CHECK(cudaStreamDestroy(c->stream));
        free(c);
    }
    free(be);
}

// ---- SWQ_CUDA_TIMELINE report ----
void swq_backend_cuda_timeline_reset(swq_backend *be) {
    cuda_ctx *c = CTX(be);
    if (!c->ht) return;
    stream_sync(c);
    c->tl_ns = 0;
    c->tl_host_busy = c->tl_host_wait = 0;
}

struct tl_row { const char *a, *b; double ms; long n; };
static int tl_row_cmp(const void *x, const void *y) {
    double d = ((const struct tl_row *)y)->ms - ((const struct tl_row *)x)->ms;
    return d > 0 ? 1 : d < 0 ? -1 : 0;
}
// Sums by key (a, b) (b may be NULL for all), largest first.
static void tl_print(cuda_ctx *c, const char *title, int key, double steps, double total, int max_rows) {
    struct tl_row *r = (struct tl_row *)calloc((size_t)c->tl_ns + 1, sizeof(*r));
    if (!r) return;
    int n = 0;
    for (int i = 0; i < c->tl_ns; i++) {
        const struct cu_tl_sum *e = &c->tl_s[i];
        const char *a = key == 0 ? e->phase : key == 1 ? e->op : key == 2 ? e->part : e->op;
        const char *b = key == 3 ? e->part : NULL;
        int j = 0;
        while (j < n && !(r[j].a == a && r[j].b == b)) j++;
        if (j == n) r[n++] = {a, b, 0, 0};
        r[j].ms += e->ms;
        r[j].n += e->n;
    }
    qsort(r, (size_t)n, sizeof(*r), tl_row_cmp);
    fprintf(stderr, "swq cuda timeline: by %s (ms per step, share, marks per step)\n", title);
    for (int j = 0; j < n && j < max_rows; j++)
        fprintf(stderr, "  %-48s %-36s %9.2f %5.1f%% %8.0f\n", r[j].a, r[j].b ? r[j].b : "", r[j].ms / steps,
                100 * r[j].ms / total, r[j].n / steps);
    free(r);
}

void swq_backend_cuda_timeline_report(swq_backend *be, int steps) {
    cuda_ctx *c = CTX(be);
    if (!c->ht || steps < 1) return;
    stream_sync(c);
    fprintf(stderr, "swq cuda timeline: host per step: %.2f ms enqueueing (from the end of one synchronization "
                    "to the start of the next), %.2f ms waiting in synchronizations\n",
            1e3 * c->tl_host_busy / steps, 1e3 * c->tl_host_wait / steps);
    double total = 0;
    for (int i = 0; i < c->tl_ns; i++) total += c->tl_s[i].ms;
    if (!c->tl) return;
    fprintf(stderr, "swq cuda timeline: %.2f ms of GPU time per step over %d steps (events between ops, none "
                    "synchronized)\n", total / steps, steps);
    if (total <= 0) return;
    tl_print(c, "phase", 0, steps, total, 40);
    tl_print(c, "op", 1, steps, total, 60);
    tl_print(c, "part (GEMM class, bf16 operand conversion, outside GEMMs: the op's own kernels)", 2, steps, total, 40);
    tl_print(c, "op and part", 3, steps, total, 60);
}
